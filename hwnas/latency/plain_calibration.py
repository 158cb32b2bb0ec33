"""Calibrating a table directly on plain timings of its whole networks (INT8 tables by default).

A table's block entries are estimated with the paired protocol. Its calibration is normally
fitted on the protocol's readings of whole networks, then converted to plain milliseconds by a
line fitted on 12 of them (``units``). That works where the protocol and a plain loop see a
network alike (FP32 on ONNX Runtime: 100% of 20 fresh networks within ±10% on the EPYC VM).
It fails for INT8 networks of ONNX Runtime there: a plain loop read 1.02x to 1.54x the protocol
(5th-95th percentile over 50 networks of the extended mbv3-32 space; 0.56x for its small
reference network), varying from network to network, so no one line maps the one onto the
other. Refitting that table's calibration on plain medians (5 fresh processes each) of the same
30 calibration networks raised its 20 validation networks, also timed plainly, from 60% to 80%
within ±10% (and random 30/20 splits of the 50 from 78% to 88%); that table rebuilt this way
predicted 100% of its validation networks and 85% and 90% of 20 fresh ones within ±10%.

With ``calibrate_on_plain`` every calibration and validation network (and the reference) is timed
plainly, each the median of ``sessions`` fresh processes; the grouped calibration is refitted on
those medians, the validation is scored against them, and the table's units record a direct fit
(``plain_factor`` 1, offset 0, ``fit: "direct"``). Its predictions are then plain milliseconds by
construction, and ``profile check`` compares them with the machine as for any plain table.

Several sessions per network, because on the EPYC VM one INT8 file, timed in one fresh process
after another, ran about 1.3x slower in 3-4 of 10 processes (three files of the extended space),
and two of them in none of 10 with address-space randomization turned off (``setarch -R``):
where the layout puts a process's buffers decides it (``benchmarks/int8_speed_modes.py``). The
median of five fresh processes lands on the common mode most of the time.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Sequence

import numpy as np

from hwnas.latency.predictor import fit_grouped_calibration, predict_from_costs
from hwnas.latency.profiling import network_features
from hwnas.latency.stats import fidelity
from hwnas.latency.table import LatencyTable

PLAIN_CALIBRATION_SESSIONS = 5
DIRECT = "direct"


def _plain_row(row: dict[str, Any], t: dict[str, Any]) -> None:
    """Put a network row on its plain timing, keeping the protocol's reading beside it."""
    row["protocol_ms"] = row["measured_ms"]
    row["measured_ms"] = float(t["median_ms"])
    row["plain_p90_ms"] = float(t["p90_ms"])
    if "session_medians_ms" in t:
        row["session_medians_ms"] = list(t["session_medians_ms"])


def calibrate_on_plain(table: LatencyTable, backend: Any, sessions: int = PLAIN_CALIBRATION_SESSIONS,
                       on_progress: Callable[[str, int, int], None] | None = None, calls: int | None = None) -> None:
    """Time the reference, calibration and validation networks of a freshly built ``table`` plainly
    on ``backend`` (each the median of ``sessions`` fresh processes), then ``refit_on_plain``."""
    from hwnas.latency.units import check_archs, plain_times_on

    space = table.get_space()
    reference = check_archs(table, 1)[0][1]
    rows = list(table.calibration.get("networks") or []) + list(table.validation.get("networks") or [])
    archs = [reference] + [space.parse(r["arch"]) for r in rows]
    times = plain_times_on(backend, space, archs, calls, on_progress=on_progress, sessions=sessions)
    terms = [[b.key for b in space.latency_terms(a)] for a in archs]
    refit_on_plain(table, terms[1:], times[1:], sessions, reference=(reference.id, terms[0], times[0]), calls=calls)


def refit_on_plain(table: LatencyTable, terms: Sequence[Sequence[str]], times: Sequence[dict[str, Any]], sessions: int,
                   reference: tuple[str, Sequence[str], dict[str, Any]] | None = None, calls: int | None = None) -> None:
    """Refit ``table``'s calibration on plain timings of its calibration networks and score its
    validation networks against theirs (module doc); the table is changed in place. ``terms`` and
    ``times`` are the latency-term keys and plain timings of the calibration networks, then the
    validation networks, in the table's order; ``reference`` (id, terms, timing) is recorded
    among the units' networks. numpy only: a profile bundle's runner calls this on its device."""
    from hwnas.latency.plain import CALLS
    from hwnas.latency.units import PLAIN

    calib = list(table.calibration.get("networks") or [])
    valid = list(table.validation.get("networks") or [])
    if len(terms) != len(calib) + len(valid) or len(times) != len(terms):
        raise ValueError("one list of terms and one plain timing per calibration and validation network")
    for row, t in zip(calib + valid, times):
        _plain_row(row, t)
    overhead = table.call_overhead_ms
    feats = [network_features(table.entries, k, overhead) for k in terms]
    cal_feats = feats[:len(calib)]
    acts = [f[2] for f in cal_feats]
    fit = fit_grouped_calibration([f[0] for f in cal_feats], [r["measured_ms"] for r in calib], overhead,
                                  counts=[f[1] for f in cal_feats], act_mb=None if any(a is None for a in acts) else acts)
    for row, (costs, counts, act) in zip(calib + valid, feats):
        row["predicted_ms"] = predict_from_costs(costs, fit, overhead, counts, act)
    table.calibration = {**fit, "k": len(calib), "fit_mape": _mape(calib), "target": PLAIN, "sessions": sessions,
                         "networks": calib}
    if valid:
        validation: dict[str, Any] = fidelity([v["predicted_ms"] for v in valid], [v["measured_ms"] for v in valid])
        validation["measurement_spread"] = table.validation.get("measurement_spread", 0.0)
        validation["session_spread"] = float(np.median([_spread(v) for v in valid]))
        validation["target"] = PLAIN
        validation["networks"] = valid
        table.validation = validation
    shown = [("calibration", r["id"], r["predicted_ms"], {"median_ms": r["measured_ms"], "p90_ms": r["plain_p90_ms"]})
             for r in calib]
    if reference is not None:
        ref_id, ref_terms, ref_time = reference
        costs, counts, act = network_features(table.entries, ref_terms, overhead)
        shown.insert(0, ("reference", ref_id, predict_from_costs(costs, fit, overhead, counts, act), ref_time))
    table.extra["units"] = {
        "latency": PLAIN, "plain_factor": 1.0, "plain_offset_ms": 0.0, "fit": DIRECT, "calls": calls or CALLS,
        "sessions": sessions, "measured": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "networks": [{"id": i, "role": role, "predicted_ms": p, "plain_median_ms": float(t["median_ms"]),
                      "plain_p90_ms": float(t["p90_ms"]), "ratio": float(t["median_ms"]) / p if p > 0 else float("inf")}
                     for role, i, p, t in shown]}


def _mape(rows: Sequence[dict[str, Any]]) -> float:
    return float(np.mean([abs(r["predicted_ms"] / r["measured_ms"] - 1.0) for r in rows]))


def _spread(row: dict[str, Any]) -> float:
    """(slowest - fastest) / fastest session, as the protocol's rows state it; 0 for one session."""
    meds = row.get("session_medians_ms") or []
    return (max(meds) - min(meds)) / min(meds) if len(meds) > 1 and min(meds) > 0 else 0.0
