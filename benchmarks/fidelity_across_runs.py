"""How far a table's fidelity figures are held down by the measurements themselves.

    python benchmarks/fidelity_across_runs.py benchmarks/results/latency_fidelity_A.json \
        benchmarks/results/latency_fidelity_B.json [...]

Takes two or more result files of ``latency_fidelity.py`` over the same fresh networks (the
same ``--seed`` and ``--n``; the same table or different ones) and reports, in milliseconds
and in table units:

- each run: its predictions against its own measurements (the figures the run printed);
- measurement against measurement: how often two runs' measurements of the same network agree
  within 10%, and their Kendall tau. No table can be shown to rank fresh networks better
  against one run than another run of the same measurements does;
- each run's predictions against the geometric mean of all runs' measurements, which holds
  less of any one run's noise.
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import numpy as np

from hwnas.latency.stats import fidelity

UNITS = (("ms", "measured_ms"), ("table units", "table_units_ms"))


def _fit(pred, meas) -> dict[str, float]:
    """Share within 10% of ``meas`` and Kendall tau, as ``hwnas.latency.stats.fidelity`` counts them."""
    f = fidelity(pred, meas)
    return {"within_10pct": f["within_10pct"], "kendall_tau": f["kendall_tau"]}


def compare(runs: list[dict]) -> dict:
    """The figures above for result dicts whose ``networks`` list the same ids in the same order."""
    ids = [n["id"] for n in runs[0]["networks"]]
    for r in runs[1:]:
        if [n["id"] for n in r["networks"]] != ids:
            raise SystemExit("error: the result files measured different networks; rerun with the same --seed and --n")
    out: dict = {"n": len(ids), "runs": len(runs), "units": {}}
    for label, key in UNITS:
        if not all(all(key in n for n in r["networks"]) for r in runs):
            continue
        meas = [np.array([n[key] for n in r["networks"]], dtype=float) for r in runs]
        pred = [np.array([n["predicted_ms"] for n in r["networks"]], dtype=float) for r in runs]
        mean = np.exp(np.mean(np.log(meas), axis=0))
        pairs = list(itertools.combinations(range(len(runs)), 2))
        out["units"][label] = {
            "per_run": [_fit(p, m) for p, m in zip(pred, meas)],
            "run_vs_run": [{"runs": [i, j], **_fit(meas[i], meas[j])} for i, j in pairs],
            "vs_mean_of_runs": [_fit(p, mean) for p in pred],
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", nargs="+", help="two or more latency_fidelity result files over the same networks")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = ap.parse_args()
    if len(args.results) < 2:
        ap.error("give at least two result files")
    runs = []
    for p in args.results:
        try:
            runs.append(json.loads(Path(p).read_text()))
        except (OSError, ValueError) as e:
            raise SystemExit(f"error: cannot read {p}: {e}") from None
    res = compare(runs)
    if args.json:
        print(json.dumps(res, indent=1))
        return
    print(f"{res['n']} networks, {res['runs']} runs: " + ", ".join(Path(p).name for p in args.results))
    for label, u in res["units"].items():
        print(f"[{label}]")
        for i, (own, mean) in enumerate(zip(u["per_run"], u["vs_mean_of_runs"])):
            print(f"  run {i}: predictions vs this run {own['within_10pct']:.0%} within 10%, tau {own['kendall_tau']:.3f}; "
                  f"vs the mean of all runs {mean['within_10pct']:.0%}, tau {mean['kendall_tau']:.3f}")
        for rr in u["run_vs_run"]:
            i, j = rr["runs"]
            print(f"  measurements, run {i} vs run {j}: agree within 10% {rr['within_10pct']:.0%}, tau {rr['kendall_tau']:.3f}")


if __name__ == "__main__":
    main()
