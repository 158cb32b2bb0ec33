"""Does a table's prediction hold when the user times the network the plain way?

For each table: N fresh random networks of its space (a seed no table build uses), each timed
in a fresh process by a plain loop (warm-up, median of 300 calls, as ``hwnas.latency.plain``),
against the table's prediction; the share within +-5% and +-10%, median and worst error,
Kendall tau. Then the stale-table check: a copy of the table rescaled by 1/STALE (it predicts
STALE times too fast) is checked with `hwnas profile check`, rescaled with ``--rescale``, and
checked again.

    python benchmarks/latency_plain.py --table T1.json --table T2.json [--networks 20] [--json out.json]
    python benchmarks/latency_plain.py --table T1.json --sessions 5 --no-stale   # median of 5 fresh sessions

Run it on a quiet machine: a plain loop sees everything else the machine does (that is the
point of it: it is what the user sees).
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hwnas.latency import LatencyPredictor, load_table  # noqa: E402
from hwnas.latency.units import backend_of, check_table, latency_units, rescale_table  # noqa: E402

SEED = 9_001  # not a seed `hwnas profile` uses for its calibration or validation networks


def fidelity(table, n: int, seed: int, sessions: int = 1) -> dict:
    """``sessions`` > 1: each network timed in that many fresh processes, the median of their
    medians (what a careful user's check of a budget would read). The sessions go round by round
    (every network once, then again), so a slow minute of the host falls on one session of
    several networks, not on every session of one."""
    from contextlib import ExitStack

    from hwnas.latency.plain import PlainFiles, combine_sessions

    space, backend = table.get_space(), backend_of(table)
    pred = LatencyPredictor(table)
    rng = random.Random(seed)
    archs = [space.sample(rng) for _ in range(n)]
    with ExitStack() as stack:
        files = []
        for a in archs:  # one fresh process per network and session: independent timings
            files.append(stack.enter_context(PlainFiles()))
            backend.add_plain(files[-1], space.build(a), space.input_shape)
        runs = []
        for k in range(sessions):
            runs.append([f.run()[0] for f in files])
            print(f"  session {k + 1}/{sessions} done", file=sys.stderr, flush=True)
    rows = []
    for i, a in enumerate(archs):
        t = combine_sessions([r[i] for r in runs])
        p = float(pred.predict(a))
        rows.append({"id": a.id, "predicted_ms": p, "plain_median_ms": t["median_ms"], "plain_p90_ms": t["p90_ms"],
                     "error": t["median_ms"] / p - 1, "session_medians_ms": [r[i]["median_ms"] for r in runs]})
        print(f"  {i + 1:2d}/{n} {a.id} predicted {p:.4f} ms, plain {t['median_ms']:.4f} ms ({rows[-1]['error']:+.1%})",
              file=sys.stderr, flush=True)
    from scipy.stats import kendalltau

    err = np.array([r["error"] for r in rows])
    return {"n": n, "within_5pct": float(np.mean(np.abs(err) <= 0.05)), "within_10pct": float(np.mean(np.abs(err) <= 0.10)),
            "median_error": float(np.median(err)), "median_abs_error": float(np.median(np.abs(err))),
            "worst_error": float(err[np.argmax(np.abs(err))]),
            "kendall_tau": float(kendalltau([r["predicted_ms"] for r in rows], [r["plain_median_ms"] for r in rows]).statistic),
            "networks": rows}


def stale_check(table, stale: float) -> dict:
    with tempfile.TemporaryDirectory() as d:
        bad = rescale_table(table, 1 / stale)
        first = check_table(bad, str(Path(d) / "stale.json"))
        fixed = rescale_table(bad, 1 + first["drift"])
        again = check_table(fixed, str(Path(d) / "fixed.json"))
    return {"stale_factor": stale, "drift_found": first["drift"], "flagged": first["stale"],
            "drift_after_rescale": again["drift"], "within_3pct": bool(abs(again["drift"]) <= 0.03)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--table", action="append", required=True, help="latency table (repeat for several)")
    ap.add_argument("--networks", type=int, default=20)
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--stale", type=float, default=1.3, help="factor the stale copy predicts too fast")
    ap.add_argument("--sessions", type=int, default=1, help="fresh processes per network (the median of their medians)")
    ap.add_argument("--no-stale", action="store_true", help="skip the stale-table check")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    out = {"machine": {"cpu": platform.processor() or platform.machine(), "python": platform.python_version()},
           "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "tables": {}}
    for path in args.table:
        table = load_table(path)
        name = f"{table.space_name} {table.backend['name']}"
        print(f"{path}: {name}, units {latency_units(table)}", file=sys.stderr)
        t0 = time.perf_counter()
        res = {"units": latency_units(table), "sessions": args.sessions,
               "fidelity": fidelity(table, args.networks, args.seed, args.sessions)}
        res["stale"] = None if args.no_stale else stale_check(table, args.stale)
        res["seconds"] = time.perf_counter() - t0
        out["tables"][path] = res
        f, s = res["fidelity"], res["stale"]
        stale = f"{s['drift_found']:+.1%} | {s['drift_after_rescale']:+.1%}" if s else "- | -"
        print(f"| {Path(path).name} | {f['n']} | {f['within_5pct']:.0%} | {f['within_10pct']:.0%} | "
              f"{f['median_error']:+.1%} | {f['worst_error']:+.1%} | {f['kendall_tau']:.3f} | {stale} |")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
