"""The one torch-to-ONNX serializer: tables, bundles and the export all time or ship graphs made here.

The TorchScript-based exporter (``dynamo=False``) keeps every weight inside the file and takes
milliseconds per block; the dynamo exporter gives the same ORT outputs but takes seconds per
model, too slow for the hundreds of entries of a table. Graphs have the input ``input`` and the
output ``output``; ``dynamic_batch`` names the batch axis ``batch`` (the exported file's form).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import sys
import warnings
from typing import Any, Sequence

from hwnas.errors import UserError

INPUT_NAME = "input"
OUTPUT_NAME = "output"
MIN_OPSET = 17


def export_onnx_bytes(module, full_input_shape: Sequence[int], opset: int = MIN_OPSET,
                      dynamic_batch: bool = False) -> bytes:
    """``module`` (put in eval mode) as ONNX bytes, traced on a random input of ``full_input_shape``
    (batch included). An operator the exporter cannot handle is one line naming it."""
    import torch

    if opset < MIN_OPSET:
        raise UserError(f"--opset must be {MIN_OPSET} or newer, got {opset}")
    module = module.eval()
    x = torch.randn(tuple(full_input_shape), generator=torch.Generator().manual_seed(0))
    buf = io.BytesIO()
    kwargs: dict[str, Any] = {}
    if dynamic_batch:
        kwargs["dynamic_axes"] = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}}
    try:
        with warnings.catch_warnings(), _stdout_fd_silenced():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, (x,), buf, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                              opset_version=opset, dynamo=False, do_constant_folding=True, **kwargs)
    except Exception as e:  # the exporter names the operator it cannot handle; pass that on in one line
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        op = re.search(r"operator '?([\w:.]+)'?", msg)
        what = f"operator {op.group(1)}" if op else "an operator"
        raise UserError(f"ONNX export (opset {opset}) cannot handle {what} in this model: {msg[:200]}; "
                        f"replace that layer or try a newer --opset") from None
    return buf.getvalue()


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
