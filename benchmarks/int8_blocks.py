"""INT8 against FP32 per layer kind: which block styles gain from INT8 on this CPU.

For each style (block kind mbconv|fused x activation relu|hswish x SE off|on), one network of
the space whose every stage uses that style (two blocks per stage, kernel 3, expand ratio 6,
middle widths), and the blocks of that network alone: the FP32 and the INT8 file (the export's
serializer and quantizer, calibrated on digits; what `hwnas profile --dtype int8` times), each
INT8 file timed against its FP32 file call by call (paired protocol, fastest of several
sessions). A ratio below 1 means INT8 is faster.

    python benchmarks/int8_blocks.py --json benchmarks/results/int8_blocks.json

Needs a quiet machine (latency measurements).
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default='{"kernels": [3, 5], "expands": [3, 6]}', help="mbv3-32 settings (JSON)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    import copy

    from hwnas.latency.backends import timing_onnx
    from hwnas.latency.fingerprint import device_fingerprint
    from hwnas.latency.ort_runner import ort_runner
    from hwnas.latency.profiler import int8_calibration_images
    from hwnas.latency.protocol import Protocol, fastest_session, measure_sessions
    from hwnas.space import get_space

    space = get_space("mbv3-32", **json.loads(args.base), block_kinds=["mbconv", "fused"],
                      act_choices=["relu", "hswish"], se_choices=[False, True])
    c = space.config
    images = int8_calibration_images(space)
    protocol = Protocol()

    def ratio(module, shape, use_images) -> dict:
        fp32 = timing_onnx(copy.deepcopy(module), shape)
        int8 = timing_onnx(copy.deepcopy(module), shape, dtype="int8", images=images if use_images else None)
        full = (1, *shape)
        ref = fastest_session(lambda: ort_runner(fp32, full, "CPUExecutionProvider", 1, 0, "auto"), protocol, tries=3)
        m = measure_sessions(lambda: ort_runner(int8, full, "CPUExecutionProvider", 1, 0, "auto"), protocol, ref)
        return {"fp32_ms": m.ref_ms, "int8_ms": m.median_ms, "int8_over_fp32": float(m.ratio)}

    rows = []
    n = space.num_stages
    for kind, act, se in itertools.product(("mbconv", "fused"), ("relu", "hswish"), (False, True)):
        arch = space.from_dict({"depths": [2] * n, "widths": [w[len(w) // 2] for w in c.widths],
                                "kernels": [[3, 3]] * n, "expands": [[6, 6]] * n,
                                "kinds": [kind] * n, "acts": [act] * n, "se": [se] * n})
        row = {"kind": kind, "act": act, "se": se, "network": ratio(space.build(arch), space.input_shape, True)}
        blocks = [b for b in space.latency_terms(arch) if b.op in ("mbconv", "fused")]
        row["blocks"] = [{"input_shape": list(b.input_shape), "c_out": b.param("c_out"), "s": b.param("s"),
                          **ratio(space.build_block(b), b.input_shape, False)} for b in blocks[::2]]
        row["blocks_median_ratio"] = float(np.median([b["int8_over_fp32"] for b in row["blocks"]]))
        rows.append(row)
        print(f"{kind:6} {act:6} se={int(se)}  network {row['network']['fp32_ms']:.3f} -> {row['network']['int8_ms']:.3f} ms "
              f"(x{row['network']['int8_over_fp32']:.2f}); first blocks of each stage: "
              + ", ".join(f"{b['input_shape'][1]}px x{b['int8_over_fp32']:.2f}" for b in row["blocks"]), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": device_fingerprint(), "platform": platform.platform(),
                                               "base": json.loads(args.base), "rows": rows,
                                               "command": " ".join(["python", "benchmarks/int8_blocks.py", *sys.argv[1:]])},
                                              indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
