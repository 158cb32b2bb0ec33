"""ONNX emission (one self-contained file, dynamic batch axis), checking, metadata and parity."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import torch
from torch import nn

from hwnas.latency.onnx_export import INPUT_NAME, MIN_OPSET, OUTPUT_NAME, export_onnx_bytes

__all__ = ["INPUT_NAME", "OUTPUT_NAME", "MIN_OPSET", "to_onnx", "check", "with_metadata", "read_metadata", "session",
           "ort_logits", "parity"]


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
