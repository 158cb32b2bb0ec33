"""Measure a finished model in the units of a latency table.

Results are in plain milliseconds where the table is (its ``units``: the protocol's estimate
converted by the table's plain line, ``units.to_plain``), so that they compare with its predictions.

A table's entries are times relative to its reference (a network of the space for ONNX
Runtime, one block of it for eager torch), expressed in milliseconds of that reference at its
fastest during the table's build. Measuring an exported model the same
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
    from hwnas.latency.ort_runner import ort_runner
    from hwnas.latency.units import backend_of

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
        return _in_table_units({"latency_ms": m.latency_ms, "median_ms": m.median_ms, "iqr_ms": m.iqr_ms,
                                "paired": False}, table)
    # the reference as the table timed it (for an INT8 table, quantized like its entries)
    ref_runner = fastest_session(reference_sessions(table, backend_of(table)), protocol)
    m = measure_sessions(lambda: ort_runner(model, shape, provider, threads, 0, clock), protocol, ref_runner)
    return _in_table_units(_on_table_scale(m, float(ref["latency_ms"])), table)


def measure_module_for_table(module, table: LatencyTable, protocol: Protocol = Protocol()) -> dict[str, Any]:
    """Time a torch module (a network of the table's space, or one cut down from it) on the
    table's eager-torch backend, paired with the table's reference (its reference block, for
    tables built since pairing came to eager torch) the way the table's entries were.

    Returns what ``measure_onnx_for_table`` returns; ``paired`` is False for a table without a
    reference (built unpaired), whose ``latency_ms`` is then this machine's milliseconds now.
    """
    from hwnas.latency.profiler import with_backend_pairing
    from hwnas.latency.units import backend_of

    name = str(table.backend.get("name", ""))
    if not name.startswith("torch"):
        raise UserError(f"latency table is for backend {name!r}; time the exported ONNX file with measure_onnx_for_table")
    backend = backend_of(table)
    protocol = with_backend_pairing(protocol, backend)  # as the profiler measures on this backend
    space = table.get_space()
    sessions = backend.sessions(module, space.input_shape)
    ref = table.extra.get("reference") or {}
    if not ref.get("latency_ms") or not (ref.get("arch") or ref.get("block")):
        m = measure_sessions(sessions, protocol)
        return _in_table_units({"latency_ms": m.latency_ms, "median_ms": m.median_ms, "iqr_ms": m.iqr_ms,
                                "paired": False}, table)
    ref_runner = fastest_session(reference_sessions(table, backend), protocol)
    return _in_table_units(_on_table_scale(measure_sessions(sessions, protocol, ref_runner), float(ref["latency_ms"])), table)


def reference_sessions(table: LatencyTable, backend):
    """A factory of sessions of the table's reference (block or network) on ``backend``."""
    from hwnas.space.base import Block

    space = table.get_space()
    ref = table.extra.get("reference") or {}
    if ref.get("block"):
        try:
            block = Block.from_dict(ref["block"])
            module = space.build_block(block)
        except (KeyError, TypeError, ValueError) as e:
            raise UserError(f"latency table's reference block does not fit its space ({e}); rebuild the table") from None
        return backend.sessions(module, block.input_shape, 1)
    try:
        ref_arch = space.parse(ref["arch"])
    except UserError as e:
        raise UserError(f"latency table's reference network does not fit its space ({e}); rebuild the table") from None
    return backend.sessions(space.build(ref_arch), space.input_shape, 1)


def _on_table_scale(m, scale: float) -> dict[str, Any]:
    assert m.ratio is not None
    return {"latency_ms": m.ratio * scale, "median_ms": m.median_ms / m.ref_ms * scale if m.ref_ms else m.median_ms,
            "iqr_ms": m.iqr_ms / m.ref_ms * scale if m.ref_ms else m.iqr_ms, "paired": True,
            "reference_now_ms": m.ref_ms, "reference_table_ms": scale}


def _in_table_units(m: dict[str, Any], table: LatencyTable) -> dict[str, Any]:
    """The protocol's estimate converted to the table's units (plain milliseconds for tables
    that record the conversion; unchanged for older ones)."""
    from hwnas.latency.units import latency_units, to_plain

    out = dict(m)
    out["protocol_ms"] = m["latency_ms"]
    out["latency_ms"] = to_plain(m["latency_ms"], table)
    out["units"] = latency_units(table)
    return out
