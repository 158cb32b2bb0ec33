"""How well a latency table predicts whole networks, measured end to end.

    python benchmarks/latency_fidelity.py --space mbv3-32 --backend ort-cpu --n 120 \
        --table profiles/mbv3-32_ort-cpu_t1_b1.json

Builds the table (unless --table names an existing one; then it is reused), then measures
N fresh random networks (never used for the table's calibration) end to end with the
profiler's protocol, and compares. A second pass re-measures the first --noise networks to
give the noise floor: how often two measurements of the same network agree within 5 / 10%.

Two units for "measured". A paired backend times every call against a fixed reference: ONNX
Runtime against the space's reference network, eager torch against its reference block.
``fidelity`` compares predictions with each network's ratio to the reference times the
reference's fastest time in this pass: milliseconds of today's machine at the reference's
quiet speed (a pass that runs slow throughout is slow in these units too). ``fidelity_table_units`` compares them with the same ratios
times the table's reference milliseconds (the reference's fastest during the build): the
units in which ``hwnas export`` checks a model against a budget. The second inherits the speed
mode of the one reference session each pass uses (sessions of the same network differ by a
few percent with where their buffers land), the first cancels it. The noise floor is given in
both units. Unpaired backends (torch-cuda, and torch-cpu tables built before it was paired)
have only the first.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

from hwnas.latency import LatencyPredictor, load_table
from hwnas.latency.backends import get_backend
from hwnas.latency.fingerprint import device_fingerprint
from hwnas.latency.profiler import measure_archs, profile
from hwnas.latency.stats import fidelity
from hwnas.latency.units import backend_of
from hwnas.space import as_rng, get_space


def _shown(path: Path) -> str:
    """The table's path as results record it: relative to the project when inside it, else its
    file name alone (a scratch folder of one machine means nothing to a reader)."""
    try:
        return str(path.resolve().relative_to(Path(__file__).resolve().parents[1]))
    except ValueError:
        return path.name


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", default="mbv3-32")
    ap.add_argument("--backend", default="ort-cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--dtype", default="float32", help="float32 or int8 (the table of INT8 files, ONNX Runtime)")
    ap.add_argument("--n", type=int, default=120, help="fresh networks measured end to end")
    ap.add_argument("--noise", type=int, default=30, help="networks measured a second time")
    ap.add_argument("--repeats", type=int, default=1,
                    help="independent end-to-end measurements per network, in separate passes; the median "
                         "is the measured latency (the noise floor compares two such medians)")
    ap.add_argument("--table", help="table to reuse, or where to write the one built here")
    ap.add_argument("--seed", type=int, default=12345, help="seed of the fresh networks")
    ap.add_argument("--out", help="results JSON (default benchmarks/results/latency_fidelity_<space>_<backend>.json)")
    args = ap.parse_args()

    space = get_space(args.space)
    backend = get_backend(args.backend, threads=args.threads, dtype=args.dtype)
    table_path = Path(args.table or f"benchmarks/results/{args.space}_{args.backend}.table.json")
    build_seconds = None
    if table_path.exists():
        table = load_table(table_path)
        backend = backend_of(table)  # the table's own backend (INT8 tables: quantized the same way)
        print(f"reusing {table_path}")
    else:
        t0 = time.perf_counter()
        table = profile(space, backend, table_path, on_progress=_progress)
        build_seconds = time.perf_counter() - t0
        print(f"\nbuilt {table_path} in {build_seconds:.0f} s")
    pred = LatencyPredictor(table, space)

    used = {n["id"] for n in table.calibration["networks"]}
    rng = as_rng(args.seed)
    archs = []
    while len(archs) < args.n:
        a = space.sample(rng)
        if a.id not in used:
            used.add(a.id)
            archs.append(a)
    predicted = pred.predict_many(archs)
    table_ref_ms = (table.extra.get("reference") or {}).get("latency_ms")
    t0 = time.perf_counter()
    rows = measure_repeated(space, backend, archs, args.repeats, table_ref_ms)
    measure_seconds = time.perf_counter() - t0
    measured = np.array([r["run_ms"] for r in rows])
    table_units = np.array([r["table_units_ms"] for r in rows])
    fid = fidelity(predicted, measured)
    fid_table = fidelity(predicted, table_units)

    again = measure_repeated(space, backend, archs[: args.noise], args.repeats, table_ref_ms)
    m2 = np.array([r["run_ms"] for r in again])
    noise = {
        **agreement(measured[: args.noise], m2),
        "table_units": agreement(table_units[: args.noise], np.array([r["table_units_ms"] for r in again])),
        "again_ms": [float(v) for v in m2],
        "again_table_units_ms": [float(r["table_units_ms"]) for r in again],
        "again_reference_ms": sorted({round(float(r["run_ref_ms"]), 6) for r in again if r.get("run_ref_ms")}),
        "median_iqr_over_median": float(np.median([r["iqr_ms"] / r["median_ms"] for r in rows])),
        "median_session_spread": float(np.median([r["session_spread"] for r in rows])),
    }
    result = {
        "space": args.space, "backend": table.backend, "machine": device_fingerprint(), "platform": platform.platform(),
        "table": _shown(table_path), "table_build_seconds": build_seconds if build_seconds is not None else table.build_seconds,
        "table_entries": len(table.entries), "table_validation": {k: v for k, v in table.validation.items() if k != "networks"},
        "repeats": args.repeats,
        "paired": bool(table_ref_ms and all(r.get("ratio") for r in rows)),
        "fidelity": fid, "fidelity_table_units": fid_table, "noise_floor": noise,
        "measure_seconds_per_network": measure_seconds / len(archs),
        "table_reference_ms": table_ref_ms,
        "run_reference_ms": sorted({round(float(r["run_ref_ms"]), 6) for r in rows if r.get("run_ref_ms")}),
        "networks": [{"id": a.id, "arch": a.to_dict(), "predicted_ms": float(p), "measured_ms": r["run_ms"],
                      "table_units_ms": r["table_units_ms"], "ratio": r.get("ratio"), "median_ms": r["median_ms"],
                      "iqr_ms": r["iqr_ms"]}
                     for a, p, r in zip(archs, predicted, rows)],
    }
    out = Path(args.out or f"benchmarks/results/latency_fidelity_{args.space}_{args.backend}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"\n{args.space} on {args.backend}: n={fid['n']} within 10% {fid['within_10pct']:.1%}, within 5% "
          f"{fid['within_5pct']:.1%}, MAPE {fid['mape']:.1%}, worst {fid['max_error']:.1%}, Kendall tau {fid['kendall_tau']:.3f}; "
          f"range {measured.min():.3f}-{measured.max():.3f} ms; table {result['table_build_seconds']:.0f} s, "
          f"{len(table.entries)} entries")
    if result["paired"]:
        print(f"in the table's reference units ({table_ref_ms:.4f} ms in the table; this run's passes: "
              f"{', '.join(f'{v:.4f}' for v in result['run_reference_ms'])} ms): within 10% "
              f"{fid_table['within_10pct']:.1%}, MAPE {fid_table['mape']:.1%}, Kendall tau {fid_table['kendall_tau']:.3f}")
    for label, nf in (("", noise), (" in table units", noise["table_units"])):
        print(f"noise floor{label} (same network measured twice, n={nf['n']}): median diff {nf['median_abs_diff']:.1%}, "
              f"p90 {nf['p90_abs_diff']:.1%}, agree within 10% {nf['agree_within_10pct']:.0%}, within 5% "
              f"{nf['agree_within_5pct']:.0%}")
        if not result["paired"]:
            break
    print(f"wrote {out}")


def agreement(first: np.ndarray, second: np.ndarray) -> dict:
    """How often two measurements of the same networks agree."""
    rel = np.abs(second - first) / first
    return {"n": int(len(rel)), "median_abs_diff": float(np.median(rel)), "p90_abs_diff": float(np.percentile(rel, 90)),
            "agree_within_5pct": float(np.mean(rel <= 0.05)), "agree_within_10pct": float(np.mean(rel <= 0.10)),
            "median_second_over_first": float(np.median(second / first))}


def measure_repeated(space, backend, archs, repeats: int, table_ref_ms: float | None = None) -> list[dict]:
    """``repeats`` passes over all archs (so that a slow stretch of the host hits one pass, not one
    network's every measurement); per network the pass with the median latency. ``run_ms`` is in
    the pass's own reference milliseconds; ``table_units_ms`` in the table's when the measurement
    was paired and the table has a reference time, else the same as ``run_ms``."""
    passes = []
    for _ in range(max(1, repeats)):
        rows = measure_archs(space, backend, archs, on_progress=_progress)
        for r in rows:
            r["run_ms"] = r["measured_ms"]
            r["run_ref_ms"] = r["latency_ms"] / r["ratio"] if r.get("ratio") else None
            r["table_units_ms"] = r["ratio"] * table_ref_ms if table_ref_ms and r.get("ratio") else r["run_ms"]
        passes.append(rows)
    out = []
    for i in range(len(archs)):
        runs = sorted((p[i] for p in passes), key=lambda r: r["run_ms"])
        out.append({**runs[len(runs) // 2], "passes_ms": [r["run_ms"] for r in runs],
                    "table_units_ms": float(np.median([r["table_units_ms"] for r in runs]))})
    return out


def _progress(phase: str, done: int, total: int) -> None:
    print(f"\r{phase}: {done}/{total}   ", end="", flush=True)


if __name__ == "__main__":
    main()
