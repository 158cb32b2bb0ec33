"""ONNX emission (one self-contained file, dynamic batch axis), checking, metadata and parity."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import torch
from torch import nn

from hwnas.latency.onnx_export import INPUT_NAME, MIN_OPSET, OUTPUT_NAME, export_onnx_bytes

__all__ = ["INPUT_NAME", "OUTPUT_NAME", "MIN_OPSET", "to_onnx", "check", "with_metadata", "read_metadata", "session",
           "ort_logits", "parity", "size_parts"]

SIZE_PARTS = ("weights", "biases", "quantization", "graph")


def to_onnx(model: nn.Module, sample_input: torch.Tensor, opset: int = MIN_OPSET) -> bytes:
    """Serialize ``model`` to ONNX bytes with a dynamic batch axis (the latency room's serializer,
    which tables are profiled with too); ``onnx.checker`` must pass."""
    data = export_onnx_bytes(model, (1, *sample_input.shape[1:]), opset, dynamic_batch=True)
    check(data)
    return data


def check(data: bytes) -> None:
    import onnx

    onnx.checker.check_model(onnx.load_from_string(data), full_check=True)


def with_metadata(data: bytes, metadata: dict[str, Any]) -> bytes:
    """The same model with ``metadata_props`` set (strings; non-strings as JSON)."""
    import onnx

    m = onnx.load_from_string(data)
    del m.metadata_props[:]
    for k, v in metadata.items():
        p = m.metadata_props.add()
        p.key = k
        p.value = v if isinstance(v, str) else json.dumps(v, sort_keys=True)
    m.producer_name = "hwnas"
    return m.SerializeToString()


def size_parts(data: bytes) -> dict[str, int]:
    """Where a model file's bytes go: ``weights`` (initializers of two or more dimensions, the
    convolution and linear kernels), ``biases`` (the kernels' bias vectors, float or int32),
    ``quantization`` (every other initializer: the scales and zero points of Quantize and
    Dequantize nodes, per channel or per tensor) and ``graph`` (the rest: nodes, names,
    attributes, metadata). The parts add up to ``len(data)`` up to a few bytes of framing."""
    import onnx

    m = onnx.load_from_string(data)
    g = m.graph
    dq_source = {n.output[0]: n.input[0] for n in g.node if n.op_type == "DequantizeLinear" and n.input}
    bias_inputs = {n.input[2] for n in g.node if n.op_type in ("Conv", "Gemm", "ConvTranspose") and len(n.input) > 2}
    biases = bias_inputs | {dq_source[b] for b in bias_inputs if b in dq_source}
    parts = dict.fromkeys(SIZE_PARTS, 0)
    for t in g.initializer:
        n = len(t.SerializeToString())
        kind = "weights" if len(t.dims) >= 2 else "biases" if t.name in biases else "quantization"
        parts[kind] += n
    parts["graph"] = max(0, len(data) - sum(parts[k] for k in SIZE_PARTS[:3]))
    return parts


def read_metadata(path_or_bytes: str | bytes) -> dict[str, str]:
    import onnx

    m = onnx.load_from_string(path_or_bytes) if isinstance(path_or_bytes, bytes) else onnx.load(path_or_bytes)
    return {p.key: p.value for p in m.metadata_props}


def session(data: bytes | str, threads: int = 1):
    from hwnas.latency.ort_runner import make_session

    return make_session(data, "CPUExecutionProvider", threads)


def ort_logits(sess, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    name = sess.get_inputs()[0].name
    outs = [sess.run(None, {name: x[i:i + batch_size]})[0] for i in range(0, len(x), batch_size)]
    return np.concatenate(outs, 0)


def parity(model: nn.Module, data: bytes, inputs: torch.Tensor) -> float:
    """Max abs difference between torch and ONNX Runtime logits on ``inputs`` (real images)."""
    model.eval()
    with torch.no_grad():
        ref = model(inputs).numpy()
    got = ort_logits(session(data), inputs.numpy().astype(np.float32))
    return float(np.max(np.abs(ref - got)))
