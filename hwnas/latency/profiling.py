"""The profiling flow shared by ``hwnas profile`` and ``hwnas profile run-bundle``.

Time the call overhead, every table entry, then K calibration and N validation networks end
to end (interleaved, so a slow spell biases neither set). Each measurement is appended to a
journal beside the output and flushed, so an interrupted run resumes where it stopped. Then fit
the calibration, score the validation networks and assemble the table.

numpy only: the torch side (building modules, exporting ONNX) lives in the task factories.
"""

from __future__ import annotations

import datetime as _dt
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from hwnas.errors import UserError
from hwnas.fileio import Journal, read_journal
from hwnas.latency.predictor import cost_by_op, count_by_op, fit_grouped_calibration, predict_from_costs, raw_from_terms
from hwnas.latency.protocol import Protocol, Runner, fastest_session, measure_with_retry
from hwnas.latency.stats import fidelity
from hwnas.latency.table import LatencyTable, TableEntry

ProgressFn = Callable[[str, int, int], None]


@dataclass
class Task:
    kind: str  # "overhead", "block", "calibration" or "validation"
    key: str  # the block key, or the network's arch id
    prepare: Callable[[], Callable[[], Runner]]  # heavy preparation once -> factory of fresh sessions
    info: dict[str, Any] = field(default_factory=dict)  # block: op/input_shape/params; network: arch, terms


def partial_path(out: str | Path) -> Path:
    p = Path(out)
    return p.with_name(p.name + ".partial.jsonl")


def _load_partial(path: Path, header: dict, fresh: bool) -> dict[tuple[str, str], dict]:
    if fresh and path.exists():
        path.unlink()
    records, dropped = read_journal(path)
    if not records:
        return {}
    if records[0].get("header") != header:
        old = records[0].get("header", {})
        diffs = [k for k in sorted(set(old) | set(header)) if old.get(k) != header.get(k)]
        raise UserError(f"unfinished profile {str(path)!r} was started with other settings ({', '.join(diffs) or 'unknown'}); "
                        f"rerun with the same settings to resume, or pass --force to start over")
    done = {}
    for r in records[1:]:
        if "kind" in r and "key" in r:
            done[(r["kind"], r["key"])] = r
    return done


def open_partial(path: Path, header: dict, fresh: bool = False) -> dict[tuple[str, str], dict]:
    """The measurements an unfinished run with these settings kept (an unfinished run with other
    settings is refused); a new journal gets the settings first thing, before anything is
    measured, so that a run interrupted at any point refuses other settings the next time."""
    done = _load_partial(path, header, fresh)
    if not path.exists() or path.stat().st_size == 0:
        with Journal(path) as journal:
            journal.append({"header": header})
    return done


def kept_measurements(out: str | Path) -> int | None:
    """How many measurements the unfinished run of ``out`` kept; None when it kept no journal."""
    path = partial_path(out)
    if not path.is_file():
        return None
    records, _ = read_journal(path)
    return sum(1 for r in records if "kind" in r and "key" in r)


def run_tasks(tasks: list[Task], header: dict, protocol: Protocol, journal_path: Path, fresh: bool = False,
              on_progress: ProgressFn | None = None, reference: Task | None = None) -> dict[tuple[str, str], dict]:
    """Measure every task not already in the journal; returns all results keyed by (kind, key).

    With a ``reference`` task, every call of every task is paired with a call of that one
    reference session (see ``measure_sessions``).
    """
    done = open_partial(journal_path, header, fresh)
    ref_runner = None
    if reference is not None and any((t.kind, t.key) not in done for t in tasks):
        ref_runner = fastest_session(reference.prepare(), protocol)
    phases = ["overhead", "block", "network"]
    totals = {p: sum(1 for t in tasks if _phase(t.kind) == p) for p in phases}
    counts = {p: sum(1 for t in tasks if _phase(t.kind) == p and (t.kind, t.key) in done) for p in phases}
    with Journal(journal_path) as journal:
        for t in tasks:
            ph = _phase(t.kind)
            if on_progress:
                on_progress(ph, counts[ph], totals[ph])
            if (t.kind, t.key) in done:
                continue
            m, noisy = measure_with_retry(t.prepare(), protocol, ref_runner)
            rec = {"kind": t.kind, "key": t.key, **m.to_dict(), "noisy": noisy}
            journal.append(rec)
            done[(t.kind, t.key)] = rec
            counts[ph] += 1
            if on_progress:
                on_progress(ph, counts[ph], totals[ph])
    return done


NETWORK_KINDS = ("calibration", "validation")


def _phase(kind: str) -> str:
    return "network" if kind in NETWORK_KINDS else kind


def rescale_to_reference(results: dict[tuple[str, str], dict], kinds: tuple[str, ...] | None = None) -> float | None:
    """Express paired measurements in milliseconds of the reference at its fastest in this run.

    Each record's ratio is exact relative to the reference; the reference's own latency is
    taken as the lowest it showed during the whole run (or, with ``kinds``, while paired with
    the records of those kinds, where there are any), so every record uses one scale.
    """
    paired = {k: r for k, r in results.items() if r.get("ratio") is not None and r.get("ref_ms")}
    refs = [r["ref_ms"] for k, r in paired.items() if kinds is None or k[0] in kinds]
    if not refs:
        refs = [r["ref_ms"] for r in paired.values()]
    if not refs:
        return None
    ref_ms = min(refs)
    for r in results.values():
        if r.get("ratio") is not None:
            r["latency_ms"] = r["ratio"] * ref_ms
    return ref_ms


def assemble_table(tasks: list[Task], results: dict[tuple[str, str], dict], *, space: dict, backend: dict,
                   fingerprint: dict, protocol: Protocol, build_seconds: float,
                   reference: Task | None = None) -> LatencyTable:
    # The reference runs slower beside a whole network, which pushes its data out of the caches
    # between its calls, than beside a block: a reference block ~9% (median over 30 networks of
    # one mbv3-32/torch-cpu build), the ONNX Runtime reference network 7% by its fastest time
    # and 13% by its median (mbv3-32 on a 2-core Xeon with AVX-512). Its fastest time beside the
    # calibration and validation networks sets the scale, so that the table's milliseconds are
    # those of whole networks measured as `measure_archs` measures them; the blocks' ratios
    # carry the difference, and the calibration's scale absorbs it.
    ref_ms = rescale_to_reference(results, NETWORK_KINDS)
    overhead_task = next(t for t in tasks if t.kind == "overhead")
    overhead = float(results[("overhead", overhead_task.key)]["latency_ms"])
    entries: dict[str, TableEntry] = {}
    for t in tasks:
        if t.kind != "block":
            continue
        r = results[("block", t.key)]
        entries[t.key] = TableEntry(key=t.key, op=t.info["op"], input_shape=list(t.info["input_shape"]),
                                    params=dict(t.info.get("params", {})), latency_ms=r["latency_ms"],
                                    median_ms=r["median_ms"], iqr_ms=r["iqr_ms"], count=r["count"], noisy=r["noisy"],
                                    session_spread=r.get("session_spread", 0.0), act_mb=t.info.get("act_mb"))

    def network_rows(kind: str) -> list[dict]:
        rows = []
        for t in tasks:
            if t.kind == kind:
                r = results[(kind, t.key)]
                costs, counts, act = network_features(entries, t.info["terms"], overhead)
                rows.append({"id": t.key, "arch": t.info["arch"], "measured_ms": r["latency_ms"],
                             "median_ms": r["median_ms"], "iqr_ms": r["iqr_ms"],
                             "session_spread": r.get("session_spread", 0.0),
                             "raw_ms": raw_from_terms((entries[k].latency_ms for k in t.info["terms"]), overhead),
                             "costs": costs, "counts": counts, "act_mb": act})
        return rows

    calib = network_rows("calibration")
    if len(calib) < 2:
        raise UserError("calibration needs at least 2 networks; raise --calibrate")
    acts = [c["act_mb"] for c in calib]
    fit = fit_grouped_calibration([c["costs"] for c in calib], [c["measured_ms"] for c in calib], overhead,
                                  counts=[c["counts"] for c in calib],
                                  act_mb=None if any(a is None for a in acts) else acts)
    valid = network_rows("validation")
    for row in calib + valid:
        row["predicted_ms"] = predict_from_costs(row.pop("costs"), fit, overhead, row.pop("counts"), row["act_mb"])
    if valid:
        validation: dict[str, Any] = fidelity([v["predicted_ms"] for v in valid], [v["measured_ms"] for v in valid])
        validation["measurement_spread"] = float(np.median([v["iqr_ms"] / v["median_ms"] for v in valid]))
        validation["session_spread"] = float(np.median([v["session_spread"] for v in valid]))
    else:
        validation = {"n": 0}
    validation["networks"] = valid
    calib_fit = fidelity([c["predicted_ms"] for c in calib], [c["measured_ms"] for c in calib])
    return LatencyTable(
        space=space, backend=backend, fingerprint=fingerprint, protocol=protocol.to_dict(),
        call_overhead_ms=overhead, entries=entries,
        calibration={**fit, "k": len(calib), "fit_mape": calib_fit["mape"], "networks": calib},
        validation=validation,
        created=_dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
        build_seconds=round(build_seconds, 2),
        extra={"reference": _reference_record(reference, ref_ms)},
    )


def network_features(entries: dict[str, TableEntry], terms: Sequence[str], overhead_ms: float) -> tuple[dict[str, float], dict[str, int], float | None]:
    """What the calibration sees of a network, from the keys of its latency terms: the
    overhead-free cost per op kind, the blocks per op kind, and its activation megabytes (None
    where an entry lacks them)."""
    used = [entries[k] for k in terms]
    mbs = [e.act_mb for e in used]
    return (cost_by_op(((e.op, e.latency_ms) for e in used), overhead_ms), count_by_op(e.op for e in used),
            None if any(v is None for v in mbs) else float(sum(mbs)))


def _reference_record(reference: Task | None, ref_ms: float | None) -> dict[str, Any]:
    """The table's ``reference``: what every measurement was paired with (``arch``, a network of
    the space, or ``block``, one latency term) and its fastest time during the build, so that a
    later measurement can be paired with the same thing and put on the table's scale."""
    rec: dict[str, Any] = {"arch": reference.info.get("arch") if reference else None, "latency_ms": ref_ms}
    if reference is not None and reference.info.get("block"):
        rec["block"] = reference.info["block"]
    return rec


def interleave_networks(calibration: list[Task], validation: list[Task]) -> list[Task]:
    out: list[Task] = []
    for i in range(max(len(calibration), len(validation))):
        if i < len(calibration):
            out.append(calibration[i])
        if i < len(validation):
            out.append(validation[i])
    return out


def profile_tasks(tasks: list[Task], *, header: dict, space: dict, backend: dict, fingerprint: dict,
                  protocol: Protocol, out: str | Path, fresh: bool = False,
                  on_progress: ProgressFn | None = None, reference: Task | None = None) -> LatencyTable:
    """Run (or resume) every task, assemble the table; the journal is removed once the table is built."""
    journal_path = partial_path(out)
    t0 = time.perf_counter()
    results = run_tasks(tasks, header, protocol, journal_path, fresh=fresh, on_progress=on_progress,
                        reference=reference)
    table = assemble_table(tasks, results, space=space, backend=backend, fingerprint=fingerprint,
                           protocol=protocol, build_seconds=time.perf_counter() - t0, reference=reference)
    return table
