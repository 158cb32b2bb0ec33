"""Where an INT8 model's time goes, layer kind by layer kind, against its FP32 form.

Runs both ONNX files in ONNX Runtime (CPU, 1 thread, batch 1) with its profiler on, sums the
per-node kernel times of ``--calls`` calls and groups them: the stem convolution (the one that
reads the image), pointwise and depthwise convolutions, elementwise operators (QLinearAdd,
QLinearMul, ...) and the rest. Convolutions are matched in graph order, which ORT keeps for
both files; ``--repeats`` alternates the two files that many times and reports the mean.

    OMP_NUM_THREADS=1 python benchmarks/int8_per_layer.py OUT/model.fp32.onnx OUT/model.onnx

(OUT: a folder written by ``benchmarks/export_int8.py`` or ``hwnas export``.) Times under the
profiler are a little higher than without it; the ratios between kinds are what it is for.
"""

from __future__ import annotations

import argparse
import collections
import json
import platform
import tempfile
from pathlib import Path

import numpy as np

ELEMENTWISE = ("Add", "Mul", "QLinearAdd", "QLinearMul", "HardSigmoid", "HardSwish", "Clip", "Relu", "Sigmoid")


def conv_kinds(fp32_path: str) -> list[str]:
    """stem / depthwise / pointwise for each Conv of the FP32 file, in graph order."""
    import onnx

    m = onnx.load(fp32_path)
    dims = {i.name: list(i.dims) for i in m.graph.initializer}
    kinds = []
    for n in m.graph.node:
        if n.op_type != "Conv":
            continue
        group = next((a.i for a in n.attribute if a.name == "group"), 1)
        w = dims.get(n.input[1], [0, 0])
        kinds.append("stem" if w[1] == 3 and group == 1 else "depthwise" if group > 1 else "pointwise")
    return kinds


def node_times(path: str, shape: tuple[int, ...], calls: int) -> list[tuple[str, float]]:
    """(operator, microseconds per call) of every node ORT ran, in execution order."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.enable_profiling = True
    with tempfile.TemporaryDirectory(prefix="hwnas-prof-") as tmp:
        so.profile_file_prefix = str(Path(tmp) / "p")
        s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        feed = {s.get_inputs()[0].name: np.random.default_rng(0).standard_normal(shape).astype(np.float32)}
        for _ in range(calls):
            s.run(None, feed)
        events = json.loads(Path(s.end_profiling()).read_text())
    per: dict[str, list] = {}
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            rec = per.setdefault(e["name"], [e["args"]["op_name"], 0.0])
            rec[1] += e["dur"] / calls
    return [(op, us) for op, us in per.values()]


def by_kind(nodes: list[tuple[str, float]], kinds: list[str]) -> dict[str, float]:
    out: dict[str, float] = collections.defaultdict(float)
    convs = iter(kinds)
    for op, us in nodes:
        if op in ("Conv", "FusedConv", "QLinearConv", "NchwcConv"):
            out[next(convs, "conv")] += us
        elif op in ELEMENTWISE:
            out["elementwise"] += us
        else:
            out["other"] += us
    return dict(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("fp32")
    ap.add_argument("int8")
    ap.add_argument("--shape", default="1,3,32,32")
    ap.add_argument("--calls", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", help="results JSON")
    args = ap.parse_args()
    shape = tuple(int(v) for v in args.shape.split(","))
    kinds = conv_kinds(args.fp32)
    sums = {"fp32": collections.defaultdict(float), "int8": collections.defaultdict(float)}
    counts = {}
    for _ in range(args.repeats):
        for label, path in (("fp32", args.fp32), ("int8", args.int8)):
            nodes = node_times(path, shape, args.calls)
            counts[label] = collections.Counter(op for op, _ in nodes)
            for k, us in by_kind(nodes, kinds).items():
                sums[label][k] += us / args.repeats
    rows = []
    print(f"{'kind':12s} {'FP32 us':>9s} {'INT8 us':>9s} {'ratio':>6s}")
    for k in ("stem", "pointwise", "depthwise", "elementwise", "other"):
        f, i = sums["fp32"].get(k, 0.0), sums["int8"].get(k, 0.0)
        rows.append({"kind": k, "convs": kinds.count(k) if k in ("stem", "pointwise", "depthwise") else None,
                     "fp32_us": f, "int8_us": i, "ratio": i / f if f else None})
        print(f"{k:12s} {f:9.0f} {i:9.0f} {i / f if f else float('nan'):6.2f}")
    tf, ti = sum(sums["fp32"].values()), sum(sums["int8"].values())
    print(f"{'total':12s} {tf:9.0f} {ti:9.0f} {ti / tf:6.2f}")
    print("nodes run: FP32 " + ", ".join(f"{op} {n}" for op, n in counts["fp32"].most_common())
          + "; INT8 " + ", ".join(f"{op} {n}" for op, n in counts["int8"].most_common()))
    if args.out:
        Path(args.out).write_text(json.dumps({"fp32": Path(args.fp32).name, "int8": Path(args.int8).name,
                                              "shape": shape, "calls": args.calls, "repeats": args.repeats,
                                              "platform": platform.platform(), "processor": platform.processor(),
                                              "kinds": rows, "total_fp32_us": tf, "total_int8_us": ti,
                                              "nodes": {k: dict(v) for k, v in counts.items()}}, indent=1))


if __name__ == "__main__":
    main()
