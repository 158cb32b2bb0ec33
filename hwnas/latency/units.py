"""What a table's milliseconds mean, and whether they still hold on this machine.

``latency_ms`` in hwnas is a plain timing (``plain.py``): the median of a plain loop in a fresh
session. A table's block entries are estimated with the paired protocol, which reads lower
than a plain loop; the table's ``units`` record says how they convert:

    "units": {"latency": "plain", "plain_factor": f, "plain_offset_ms": b, "networks": [...], "calls": 300}

A plain median is ``f * protocol-calibrated prediction + b``, a line fitted (Theil-Sen: the
median of pairwise slopes, robust to one odd session) through the table's reference network and
a few calibration networks, each timed plainly as the median of three fresh processes when the
table is built. The conversion is a line, not a factor: on the EPYC VM a plain loop reads 0.75x
the protocol's estimate for a 0.2 ms network and 1.2x for a 1.6 ms one (the protocol's paired,
fastest-session reading shrinks with a network's size less than a plain loop's does), and a
single factor left half of 20 fresh networks more than 10% off. Where the networks span too
little for a line, or the line would not be positive over them, ``f`` is the median ratio and
``b`` is 0 (as in tables built before the line, which load unchanged). ``LatencyPredictor``
applies it, so predictions, search budgets and the export's checks are in plain milliseconds.
Tables built before any of this load as ``"protocol"`` units (factor 1): commands say so, and
``hwnas profile check TABLE --rescale --out NEW`` converts them. INT8 tables are instead
calibrated on plain timings of all their networks (``plain_calibration``; ``fit: "direct"``,
factor 1, offset 0): no line maps the protocol's INT8 readings onto a plain loop's.

``check_table`` re-times the table's reference network and a few calibration networks plainly
and reports the drift, ``median(plain now / predicted) - 1``: positive when this machine runs
slower than the table says. ``rescale_table`` writes a copy whose predictions are scaled by a
factor (every time in the table, so pairing with the reference stays on the table's scale).
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
from typing import Any, Sequence

import numpy as np

from hwnas.errors import UserError
from hwnas.latency.table import LatencyTable

PLAIN = "plain"
PROTOCOL = "protocol"
CHECK_NETWORKS = 6  # the reference network and 5 calibration networks: under a minute on CPU
UNITS_NETWORKS = 12  # at build time: the reference and 11 calibration networks, for the line
DRIFT_WARN = 0.05
CHECK_SESSIONS = 3  # fresh processes per check: one session's speed varies too much on a VM
QUICK_NETWORKS = 3
QUICK_CALLS = 150
QUICK_CACHE_SECONDS = 3600.0


def latency_units(table: LatencyTable) -> str:
    return str((table.extra.get("units") or {}).get("latency") or PROTOCOL)


def plain_factor(table: LatencyTable) -> float:
    return float((table.extra.get("units") or {}).get("plain_factor") or 1.0)


def plain_offset_ms(table: LatencyTable) -> float:
    return float((table.extra.get("units") or {}).get("plain_offset_ms") or 0.0)


def to_plain(ms: float, table: LatencyTable) -> float:
    """A protocol-calibrated time in the table's units."""
    return plain_factor(table) * ms + plain_offset_ms(table)


def units_label(units: dict[str, Any]) -> str:
    """The conversion in words, for the table summary."""
    if units.get("fit") == "direct":
        return f"plain median (calibrated on plain timings, {units.get('sessions')} fresh processes per network)"
    f, b = float(units.get("plain_factor", 1.0)), float(units.get("plain_offset_ms") or 0.0)
    line = f"x{f:.3f}" + (f" {'+' if b >= 0 else '-'} {abs(b):.4f} ms" if b else "")
    return f"plain median ({line} the protocol's estimate)"


def units_note(table: LatencyTable, path: str) -> str | None:
    """A warning for a table whose predictions are not in plain milliseconds, else None."""
    if latency_units(table) == PLAIN:
        return None
    return (f"latency table {path!r} predicts in the older protocol units (fastest session, low percentile), "
            f"which read about 15% below a plain timing loop; convert it on the machine it describes with "
            f"`hwnas profile check {path} --rescale --out NEW.json`")


def backend_of(table: LatencyTable):
    """The backend ``table`` was measured on, as this machine can run it (for INT8 tables, with the
    real images its whole networks were calibrated on)."""
    from hwnas.latency.backends import get_backend

    b = table.backend
    backend = get_backend(str(b["name"]), threads=int(b.get("threads", 1)), batch=int(b.get("batch", 1)),
                          provider=b.get("provider"), clock=str(b.get("clock") or "auto"),
                          dtype=str(b.get("dtype") or "float32"))
    if backend.dtype == "int8":
        from hwnas.latency.profiler import int8_calibration_images

        rec = table.extra.get("int8") or {}
        backend.calibration_images = int8_calibration_images(table.get_space(), rec.get("calibration_data"),
                                                             int(rec.get("seed", 0)))
    return backend


def other_device(table: LatencyTable) -> list[str]:
    """How this machine differs from the one the table was measured on (empty: the same)."""
    from hwnas.latency.fingerprint import device_fingerprint, fingerprint_differences

    return fingerprint_differences(table.fingerprint, device_fingerprint(gpu=table.fingerprint.get("gpu")))


def check_archs(table: LatencyTable, n: int) -> list[tuple[str, Any]]:
    """(label, arch) of the table's reference network and its first ``n - 1`` calibration networks."""
    space = table.get_space()
    rec = table.extra.get("reference") or {}
    if not rec.get("arch") and not rec.get("block"):
        raise UserError("latency table has no reference network (it was built before tables recorded one); "
                        "rebuild it with `hwnas profile`")
    try:
        # a table paired with a reference block (eager torch) is checked on the space's reference
        # network: the one an ONNX Runtime table of the same space pairs with
        out = [("reference", space.parse(rec["arch"]) if rec.get("arch") else space.decode([0] * len(space.decisions())))]
        for net in (table.calibration.get("networks") or [])[:max(0, n - 1)]:
            out.append(("calibration", space.parse(net["arch"])))
    except (UserError, KeyError, TypeError, ValueError) as e:
        raise UserError(f"latency table's reference or calibration networks do not fit its space ({e}); rebuild it") from None
    return out


def plain_times_on(backend: Any, space: Any, archs: Sequence[Any], calls: int | None = None,
                   on_progress: Any = None, sessions: int = 1) -> list[dict[str, Any]]:
    """Plain timings of whole networks of ``space`` on ``backend``, in one fresh process (or the
    median of ``sessions`` fresh processes); ``on_progress(phase, done, total)`` hears the
    exports, then the timing."""
    from hwnas.latency.plain import PlainFiles

    with PlainFiles() as files:
        for i, a in enumerate(archs):
            backend.add_plain(files, space.build(a), space.input_shape, calls)
            if on_progress:
                on_progress("export", i + 1, len(archs))
        if on_progress:
            on_progress("plain", 0, sessions)
        return files.run(sessions=sessions, on_session=(lambda k, n: on_progress("plain", k, n)) if on_progress else None)


def _ratios(table: LatencyTable, labelled: Sequence[tuple[str, Any]], calls: int | None,
            plain: bool, sessions: int = 1, on_progress: Any = None) -> list[dict[str, Any]]:
    """Plain timings of ``labelled`` networks against the table's predictions: in its units
    (``plain``), or the protocol-calibrated ones before the plain conversion (a table being built)."""
    from hwnas.latency.predictor import LatencyPredictor

    pred = LatencyPredictor(table)
    times = plain_times_on(backend_of(table), table.get_space(), [a for _, a in labelled], calls,
                           on_progress=on_progress, sessions=sessions)
    rows = []
    for (label, a), t in zip(labelled, times):
        p = float(pred.predict(a)) if plain else pred.protocol_ms(a)
        rows.append({"id": a.id, "role": label, "predicted_ms": p, "plain_median_ms": t["median_ms"],
                     "plain_p90_ms": t["p90_ms"], "ratio": t["median_ms"] / p if p > 0 else float("inf"),
                     **({"session_medians_ms": t["session_medians_ms"]} if "session_medians_ms" in t else {})})
    return rows


def plain_line(x: Sequence[float], y: Sequence[float]) -> tuple[float, float, str]:
    """``(f, b, how)`` with ``y ~ f * x + b``: the Theil-Sen line (the median of the pairwise
    slopes, then the median intercept) where the ``x`` span at least 1.5x and the line stays
    positive and within a factor of two of every point; else the median ratio ``y / x``, b = 0."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    ratio = float(np.median(y / x))
    if len(x) >= 3 and x.min() > 0 and x.max() / x.min() >= 1.5:
        i, j = np.triu_indices(len(x), 1)
        keep = x[j] != x[i]
        f = float(np.median((y[j] - y[i])[keep] / (x[j] - x[i])[keep]))
        b = float(np.median(y - f * x))
        fit = f * x + b
        if f > 0 and np.all(fit > 0) and np.all(fit / y < 2.0) and np.all(y / fit < 2.0):
            return f, b, "line"
    return ratio, 0.0, "ratio"


def units_record(rows: Sequence[dict[str, Any]], calls: int | None = None) -> dict[str, Any]:
    """A table's ``units``: plain medians of whole networks against its protocol-calibrated
    predictions (``rows`` with ``predicted_ms``, ``plain_median_ms`` and ``ratio`` each), and the
    line through them (``plain_line``)."""
    from hwnas.latency.plain import CALLS

    f, b, how = plain_line([r["predicted_ms"] for r in rows], [r["plain_median_ms"] for r in rows])
    return {"latency": PLAIN, "plain_factor": f, "plain_offset_ms": b, "fit": how, "calls": calls or CALLS,
            "networks": list(rows), "measured": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def plain_units(table: LatencyTable, n: int = UNITS_NETWORKS, calls: int | None = None,
                sessions: int = CHECK_SESSIONS) -> dict[str, Any]:
    """The ``units`` record of a freshly built table: plain timings of its reference and
    calibration networks (each the median of ``sessions`` fresh processes) against its
    protocol-calibrated predictions."""
    rec = units_record(_ratios(table, check_archs(table, n), calls, plain=False, sessions=sessions), calls)
    rec["sessions"] = sessions
    return rec


def checkable(table: LatencyTable, path: str = "<table>", n: int = CHECK_NETWORKS) -> list[tuple[str, Any]]:
    """The networks ``check_table`` re-times; refuses a table of another device, or one without
    a reference network, before any work."""
    diffs = other_device(table)
    if diffs:
        raise UserError(f"latency table {path!r} was measured on another device ({'; '.join(diffs)}); "
                        f"profile check compares a table with the machine it describes: run it there, or build a table here")
    return check_archs(table, n)


def check_table(table: LatencyTable, path: str = "<table>", n: int = CHECK_NETWORKS, calls: int | None = None,
                sessions: int = CHECK_SESSIONS, on_progress: Any = None) -> dict[str, Any]:
    """Re-time the table's reference and calibration networks plainly (each the median of
    ``sessions`` fresh processes); the drift against its predictions."""
    rows = _ratios(table, checkable(table, path, n), calls, plain=True, sessions=sessions, on_progress=on_progress)
    r = np.array([x["ratio"] for x in rows])
    q1, q3 = np.percentile(r, [25, 75])
    drift = float(np.median(r) - 1.0)
    return {"table": path, "drift": drift, "units": latency_units(table), "threshold": DRIFT_WARN,
            "stale": bool(abs(drift) > DRIFT_WARN), "ratio_iqr": float(q3 - q1), "sessions": sessions, "networks": rows}


def rescale_table(table: LatencyTable, factor: float, note: dict[str, Any] | None = None) -> LatencyTable:
    """A copy whose every time (entries, call overhead, calibration offsets, reference) is scaled
    by ``factor``, so that its predictions are ``factor`` times the original's. A table in the
    older protocol units becomes a plain one (its factor then folded into the entries)."""
    if not factor > 0:
        raise UserError(f"a table can only be rescaled by a positive factor, got {factor}")
    t = copy.deepcopy(table)
    for e in t.entries.values():
        e.latency_ms *= factor
        e.median_ms *= factor
        e.iqr_ms *= factor
    t.call_overhead_ms *= factor
    c = t.calibration
    c["offset_ms"] = float(c["offset_ms"]) * factor
    c["op_block_ms"] = {k: float(v) * factor for k, v in (c.get("op_block_ms") or {}).items()}
    if c.get("ms_per_act_mb"):
        c["ms_per_act_mb"] = float(c["ms_per_act_mb"]) * factor
    ref = t.extra.get("reference")
    if isinstance(ref, dict) and ref.get("latency_ms"):
        ref["latency_ms"] = float(ref["latency_ms"]) * factor
    units = dict(t.extra.get("units") or {})
    if latency_units(table) != PLAIN:
        units = {"latency": PLAIN, "plain_factor": 1.0, "converted_from": PROTOCOL}
    elif units.get("plain_offset_ms"):  # the line's offset is in milliseconds too
        units["plain_offset_ms"] = float(units["plain_offset_ms"]) * factor
    units.setdefault("rescaled", []).append({"factor": factor, "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                                             **(note or {})})
    t.extra["units"] = units
    return t


def _table_key(table: LatencyTable) -> str:
    return hashlib.sha256(json.dumps(table.to_dict(), sort_keys=True, default=str).encode()).hexdigest()[:16]


def quick_drift(table: LatencyTable) -> float | None:
    """The drift from a short check (the reference and two calibration networks, fewer calls),
    remembered for an hour per table; None when the table's backend is not on this machine."""
    if other_device(table):
        return None
    try:
        backend_of(table)
    except UserError:
        return None
    from hwnas.data.cache import cache_dir

    path = cache_dir() / "drift" / f"{_table_key(table)}.json"
    try:
        rec = json.loads(path.read_text())
        if time.time() - float(rec["time"]) < QUICK_CACHE_SECONDS:
            return float(rec["drift"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    drift = check_table(table, n=QUICK_NETWORKS, calls=QUICK_CALLS, sessions=1)["drift"]
    from hwnas.fileio import atomic_write_json

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, {"drift": drift, "time": time.time()})
    return drift


def drift_warnings(table: LatencyTable, path: str) -> list[str]:
    """What ``hwnas search`` and ``hwnas export`` print before they use a table: its units when
    they are the older ones, and its drift when a quick check here finds it past 5%."""
    note = units_note(table, path)
    if note:  # a check would also measure the gap between the units: say that instead
        return [note]
    try:
        drift = quick_drift(table)
    except UserError as e:
        return [f"could not check latency table {path!r} against this machine: {e}"]
    out = []
    if drift is not None and abs(drift) > DRIFT_WARN:
        side = "slower" if drift > 0 else "faster"
        out.append(f"this machine runs {abs(drift):.0%} {side} than latency table {path!r} predicts (quick check); "
                   f"measure it with `hwnas profile check {path}` and refresh it with `--rescale --out NEW.json`")
    return out


def profile_warnings(path: str) -> list[str]:
    """``drift_warnings`` of the table at ``path``; nothing when it cannot be read (the command
    that uses it says what is wrong with it)."""
    from hwnas.latency.table import load_table

    try:
        table = load_table(path)
    except UserError:
        return []
    return drift_warnings(table, path)
