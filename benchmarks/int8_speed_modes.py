"""Do INT8 files run at one speed from one fresh process to the next? And does the address-space
layout decide it?

For N random networks of a space (INT8 files as `hwnas export` writes them, and their FP32
files), each file is timed by a plain loop in K fresh processes (one per session for all the files, or
with ``--per-file`` one per file and session) with address-space layout
randomization as the system has it, then K more with it turned off (``setarch -R``, Linux). For
each file: every session's median, the spread (slowest / fastest session) and how many sessions
ran more than 15% slower than the fastest. The sessions go round by round over all the files, so
a slow minute of the host falls on one session of many files.

    python benchmarks/int8_speed_modes.py --networks 4 --sessions 8 [--space-settings JSON] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hwnas.latency.backends import get_backend  # noqa: E402
from hwnas.latency.fingerprint import device_fingerprint  # noqa: E402
from hwnas.latency.plain import CALLS  # noqa: E402
from hwnas.latency.profiler import int8_calibration_images  # noqa: E402
from hwnas.space import get_space  # noqa: E402

SLOW = 1.15  # a session this much slower than the file's fastest counts as the slow mode


def one_session(jobs: list[dict], no_aslr: bool) -> list[float]:
    cmd = [sys.executable, "-m", "hwnas.latency.plain"]
    if no_aslr:
        cmd = ["setarch", platform.machine(), "-R", *cmd]
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(cmd, input=json.dumps(jobs), text=True, capture_output=True, env=env, check=True)
    return [float(r["median_ms"]) for r in json.loads(proc.stdout.strip().splitlines()[-1])]


def summary(meds: list[float]) -> dict:
    m = np.asarray(meds)
    return {"session_medians_ms": [round(v, 4) for v in meds], "spread": float(m.max() / m.min()),
            "slow_sessions": int(np.sum(m > SLOW * m.min())), "median_ms": float(np.median(m))}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", default="mbv3-32")
    ap.add_argument("--space-settings", default=None, help="JSON object changing the space's config")
    ap.add_argument("--networks", type=int, default=4)
    ap.add_argument("--sessions", type=int, default=8)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--per-file", action="store_true", help="one fresh process per file and session (else one per session)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    can_disable = sys.platform.startswith("linux") and shutil.which("setarch") is not None
    space = get_space(args.space, **json.loads(args.space_settings or "{}"))
    rng = random.Random(args.seed)
    archs = [space.sample(rng) for _ in range(args.networks)]
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        jobs, labels = [], []
        for dtype in ("int8", "float32"):
            be = get_backend("ort-cpu", dtype=dtype)
            if dtype == "int8":
                be.calibration_images = int8_calibration_images(space)
            for a in archs:
                path = Path(tmp) / f"{a.id}_{dtype}.onnx"
                path.write_bytes(be.onnx_model(space.build(a), space.input_shape))
                jobs.append({"kind": "onnx", "path": str(path), "shape": [1, *space.input_shape], "threads": 1,
                             "calls": CALLS})
                labels.append((a.id, dtype))
        modes = ["aslr"] + (["no_aslr"] if can_disable else [])
        runs: dict[str, list[list[float]]] = {m: [] for m in modes}
        for k in range(args.sessions):
            for m in modes:  # interleaved, so both see the same minutes of the host
                if args.per_file:
                    runs[m].append([one_session([j], m == "no_aslr")[0] for j in jobs])
                else:
                    runs[m].append(one_session(jobs, m == "no_aslr"))
            print(f"  session {k + 1}/{args.sessions} done", file=sys.stderr, flush=True)
    rows = []
    for i, (arch_id, dtype) in enumerate(labels):
        row = {"id": arch_id, "dtype": dtype}
        for m in modes:
            row[m] = summary([r[i] for r in runs[m]])
        rows.append(row)
        shown = "  ".join(f"{m}: spread {row[m]['spread']:.2f}, {row[m]['slow_sessions']}/{args.sessions} slow" for m in modes)
        print(f"{arch_id} {dtype:7s} median {row['aslr']['median_ms']:.3f} ms  {shown}")
    for dtype in ("int8", "float32"):
        for m in modes:
            slow = sum(r[m]["slow_sessions"] for r in rows if r["dtype"] == dtype)
            print(f"{dtype:7s} {m:8s}: {slow} of {args.sessions * args.networks} sessions in the slow mode")
    if args.json:
        args.json.write_text(json.dumps({"machine": device_fingerprint(), "when": time.strftime("%Y-%m-%d %H:%M"),
                                         "space": args.space, "space_settings": json.loads(args.space_settings or "{}"),
                                         "sessions": args.sessions, "per_file": args.per_file, "slow_threshold": SLOW, "rows": rows,
                                         "seconds": round(time.time() - t0, 1),
                                         "command": "python benchmarks/int8_speed_modes.py " + " ".join(sys.argv[1:])},
                                        indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
