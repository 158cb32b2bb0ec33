"""ONNX emission (one self-contained file, dynamic batch axis), checking, metadata and parity."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import sys
import warnings
from typing import Any

import numpy as np
import torch
from torch import nn

from hwnas.errors import UserError

INPUT_NAME = "input"
OUTPUT_NAME = "output"
MIN_OPSET = 17


def to_onnx(model: nn.Module, sample_input: torch.Tensor, opset: int = MIN_OPSET) -> bytes:
    """Serialize ``model`` to ONNX bytes with a dynamic batch axis; ``onnx.checker`` must pass.

    The TorchScript exporter (``dynamo=False``) keeps every weight inside the file and takes
    milliseconds; its outputs match the dynamo exporter's in ORT.
    """
    import onnx

    if opset < MIN_OPSET:
        raise UserError(f"--opset must be {MIN_OPSET} or newer, got {opset}")
    model = model.eval()
    buf = io.BytesIO()
    try:
        with warnings.catch_warnings(), _stdout_fd_silenced():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (sample_input[:1],), buf, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                              opset_version=opset, dynamo=False, do_constant_folding=True,
                              dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}})
    except Exception as e:  # the exporter names the operator it cannot handle; pass that on in one line
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        op = re.search(r"operator '?([\w:.]+)'?", msg)
        what = f"operator {op.group(1)}" if op else "an operator"
        raise UserError(f"ONNX export (opset {opset}) cannot handle {what} in this model: {msg[:200]}; "
                        f"replace that layer or try a newer --opset") from None
    data = buf.getvalue()
    check(data)
    return data


@contextlib.contextmanager
def _stdout_fd_silenced():
    """The TorchScript exporter prints the whole IR graph to file descriptor 1 (from C++) when an
    operator fails; the one-line error says what matters, and stdout belongs to the CLI's output."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # captured or replaced stdout: nothing to silence
        yield
        return
    sys.stdout.flush()
    saved = os.dup(fd)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), fd)
            yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)


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
