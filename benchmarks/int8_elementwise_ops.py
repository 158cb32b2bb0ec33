"""Per-node time of ONNX Runtime's quantized elementwise operators on uint8 feature maps.

An INT8 hard-swish is one QLinearAdd (the hard-sigmoid's ``x + 3``, clipped by its output
range) and one QLinearMul; this measures them, and ``QLinearLeakyRelu`` (a 256-entry lookup
table in ORT) as a candidate for the first, on the feature-map shapes of a 32x32 MBConv network.
Each graph is a chain of ``--chain`` nodes of one operator, so that the call overhead is shared;
the figure is the 10th percentile of ``--calls`` calls divided by the chain length.

    OMP_NUM_THREADS=1 python benchmarks/int8_elementwise_ops.py
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np

SHAPES = [(1, 96, 32, 32), (1, 144, 16, 16), (1, 240, 8, 8), (1, 480, 4, 4)]
OPS = ("QLinearAdd", "QLinearLeakyRelu", "QLinearMul")


def chain_model(op: str, shape: tuple[int, ...], n: int) -> bytes:
    from onnx import TensorProto, helper, numpy_helper

    inits = [numpy_helper.from_array(np.array(0.05, np.float32), "s"),
             numpy_helper.from_array(np.array(128, np.uint8), "z"),
             numpy_helper.from_array(np.array(60, np.uint8), "c")]
    nodes, cur = [], "x"
    for i in range(n):
        out = f"y{i}"
        if op == "QLinearAdd":  # plus a constant, as the hard-sigmoid's + 3
            ins = [cur, "s", "z", "c", "s", "z", "s", "z"]
            attrs = {}
        elif op == "QLinearMul":  # a map times a map, as the hard-swish's product
            ins = [cur, "s", "z", cur, "s", "z", "s", "z"]
            attrs = {}
        else:
            ins = [cur, "s", "z", "s", "z"]
            attrs = {"alpha": 0.0}
        nodes.append(helper.make_node(op, ins, [out], domain="com.microsoft", **attrs))
        cur = out
    used = {"s", "z"} | ({"c"} if op == "QLinearAdd" else set())
    graph = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.UINT8, shape)],
                              [helper.make_tensor_value_info(cur, TensorProto.UINT8, shape)],
                              [t for t in inits if t.name in used])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
    return model.SerializeToString()


def per_node_us(op: str, shape: tuple[int, ...], chain: int, calls: int, threads: int) -> float:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(chain_model(op, shape, chain), opts, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).integers(0, 256, size=shape, dtype=np.uint8)
    for _ in range(20):
        sess.run(None, {"x": x})
    times = []
    for _ in range(calls):
        t = time.perf_counter()
        sess.run(None, {"x": x})
        times.append(time.perf_counter() - t)
    return float(np.percentile(times, 10)) / chain * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--chain", type=int, default=20, help="nodes per graph")
    ap.add_argument("--calls", type=int, default=200, help="timed calls per graph")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    import onnxruntime as ort

    print(f"onnxruntime {ort.__version__}, {platform.processor() or platform.machine()}, {args.threads} thread(s); "
          f"us per node (10th percentile of {args.calls} calls / {args.chain} nodes)")
    print("| shape | " + " | ".join(OPS) + " |")
    print("|---|" + "---|" * len(OPS))
    for shape in SHAPES:
        vals = [per_node_us(op, shape, args.chain, args.calls, args.threads) for op in OPS]
        print(f"| {'x'.join(map(str, shape[1:]))} | " + " | ".join(f"{v:.2f}" for v in vals) + " |")


if __name__ == "__main__":
    main()
