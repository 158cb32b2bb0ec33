"""Measure a finished model in the units of a latency table.

A table's entries are times relative to its reference network, expressed in milliseconds of
that reference at its fastest during the table's build. Measuring an exported model the same
way (paired with the same reference, scaled by the same milliseconds) makes the measured
latency comparable with the table's predictions and with a budget set from them, even when
the machine is slower or faster at the moment of the measurement.
"""

from __future__ import annotations

import os
from typing import Any

from hwnas.errors import UserError
from hwnas.latency.protocol import Protocol, fastest_session, measure_sessions
from hwnas.latency.table import LatencyTable


def measure_onnx_for_table(model: bytes | str | os.PathLike, table: LatencyTable,
                           protocol: Protocol = Protocol()) -> dict[str, Any]:
    """Time an ONNX model on the table's backend (ONNX Runtime, same provider, threads, batch and
    clock), paired with the table's reference network when the table has one.

    Returns ``latency_ms`` (comparable with the table's predictions), the session's
    ``median_ms`` and ``iqr_ms``, and ``paired`` (whether the reference scale was used).
    """
    from hwnas.latency.backends import get_backend
    from hwnas.latency.ort_runner import ort_runner

    b = table.backend
    provider = b.get("provider") or "CPUExecutionProvider"
    threads, batch = int(b.get("threads", 1)), int(b.get("batch", 1))
    clock = b.get("clock", "auto")
    space = table.get_space()
    shape = (batch, *space.input_shape)
    ref = table.extra.get("reference") or {}
    paired = bool(ref.get("arch")) and bool(ref.get("latency_ms")) and str(b.get("name", "")).startswith("ort")
    if not paired:
        m = measure_sessions(lambda: ort_runner(model, shape, provider, threads, 0, clock), protocol)
        return {"latency_ms": m.latency_ms, "median_ms": m.median_ms, "iqr_ms": m.iqr_ms, "paired": False}
    backend = get_backend("ort", threads=threads, batch=batch, provider=provider, clock=clock)
    try:
        ref_arch = space.parse(ref["arch"])
    except UserError as e:
        raise UserError(f"latency table's reference network does not fit its space ({e}); rebuild the table") from None
    ref_runner = fastest_session(backend.sessions(space.build(ref_arch), space.input_shape, 1), protocol)
    m = measure_sessions(lambda: ort_runner(model, shape, provider, threads, 0, clock), protocol, ref_runner)
    assert m.ratio is not None
    scale = float(ref["latency_ms"])
    return {"latency_ms": m.ratio * scale, "median_ms": m.median_ms / m.ref_ms * scale if m.ref_ms else m.median_ms,
            "iqr_ms": m.iqr_ms / m.ref_ms * scale if m.ref_ms else m.iqr_ms, "paired": True,
            "reference_now_ms": m.ref_ms, "reference_table_ms": scale}
