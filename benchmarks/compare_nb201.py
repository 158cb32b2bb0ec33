"""The hand-designed ResNet cell against the cells a search finds, on every device column of
NAS-Bench-201 (accuracies and latencies from the table; no training).

For each device column ``lat_*`` the library's strategies search at the ResNet cell's latency
and at lower budgets (fractions of it); per seed, the candidates are every cell those searches
evaluated. The strategies run through the same ask/tell loop and on the same problem as
``hwnas search`` (genome, feasibility under the budget, canonical genomes, the space's surrogate
features); only the evaluation is a lookup in the table, loaded once (``hwnas compare --space
nb201`` runs whole searches instead, a few seconds more each). The figures are computed by
``hwnas.compare.nb201``'s functions, as ``hwnas compare`` computes them.

- equal latency: the most accurate candidate within the ResNet cell's latency; its gain in
  points of CIFAR-10 test accuracy over the ResNet cell (median over seeds);
- equal accuracy: the fastest candidate at least as accurate as the ResNet cell; the ResNet
  cell's latency over its latency (median over seeds);
- "table": the same two numbers for the best cell of the whole table (what a perfect search reaches).

    python benchmarks/compare_nb201.py                        # every lat_* column, 3 seeds
    python benchmarks/compare_nb201.py --devices pixel3,raspi4 --seeds 5 --evals 300
    python benchmarks/compare_nb201.py --json results.json   # also write every number

The data file is ``$HWNAS_SHARED_DATA/nb201/nb201_acc_latency.csv`` (``HWNAS_SHARED_DATA``
defaults to ``../shared/data`` relative to the repository root) or ``--csv PATH``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from hwnas.data.benchmark_csv import load_csv_table  # noqa: E402
from hwnas.compare.nb201 import RESNET_CELL, equal_accuracy, equal_latency, optimum  # noqa: E402
from hwnas.search.loop import drive  # noqa: E402
from hwnas.search.problem import ACCURACY, LATENCY, Problem  # noqa: E402
from hwnas.search.strategy import make_strategy  # noqa: E402
from hwnas.space import get_space  # noqa: E402


def default_csv() -> Path:
    base = os.environ.get("HWNAS_SHARED_DATA", str(ROOT.parent / "shared" / "data"))
    return Path(base) / "nb201" / "nb201_acc_latency.csv"


def device_columns(path: Path) -> list[str]:
    with open(path, newline="") as f:
        header = next(csv.reader(f))
    return [c[len("lat_"):] for c in header if c.startswith("lat_")]


class Table:
    """The benchmark file once: accuracy (fraction) and every latency column by table row, the
    row of each canonical genome."""

    def __init__(self, path: Path) -> None:
        self.space = get_space("nb201")
        t = load_csv_table(path, self.space)
        self.table = t
        self.acc = t.column("c10_test") / 100.0
        self.ids = [a.id for a in t.archs]
        self.row = {tuple(self.space.encode(a)): i for i, a in enumerate(t.archs)}
        self.cards = tuple(len(d.choices) for d in self.space.decisions())
        self._canon: dict[tuple, tuple] = {}

    def canonical(self, g: tuple) -> tuple:
        hit = self._canon.get(g)
        if hit is None:
            hit = self._canon[g] = tuple(self.space.encode(self.space.decode(g)))
        return hit

    def record(self, i: int, lat: np.ndarray) -> dict:
        return {"arch_id": self.ids[i], "top1": float(self.acc[i]), "latency_ms": float(lat[i])}


def search(t: Table, lat: np.ndarray, strategy: str, seed: int, latency_budget_ms: float, evals: int) -> list[dict]:
    """One search under ``latency_budget_ms``: the cells it evaluated, as ``hwnas search`` would have."""
    problem = Problem(cards=t.cards, objectives=(ACCURACY, LATENCY),
                      feasible=lambda g: bool(lat[t.row[t.canonical(g)]] <= latency_budget_ms), canonical=t.canonical,
                      latency_budget_ms=latency_budget_ms, features=t.space.genome_features)
    st = make_strategy(strategy, problem, seed, evals)

    def evaluate(g):
        i = t.row[t.canonical(g)]
        return {"accuracy": float(t.acc[i]), "latency_ms": float(lat[i]), "row": i}

    res = drive(st, evaluate, evals)
    return [t.record(v["row"], lat) for v in res.values]


def compare_device(t: Table, device: str, strategies: list[str], seeds: int, budgets: tuple[float, ...],
                   evals: int) -> dict:
    import statistics as st

    lat = t.table.column("lat_" + device)
    r = t.row[tuple(t.space.encode(t.space.parse(RESNET_CELL)))]
    ref = t.record(r, lat)
    usable = [f for f in budgets if f * ref["latency_ms"] >= float(lat.min())]
    groups, median = {}, {}
    for s in strategies:
        per_seed = []
        for seed in range(seeds):
            cands = [c for f in usable for c in search(t, lat, s, seed, f * ref["latency_ms"], evals)]
            per_seed.append({"equal_latency": equal_latency(cands, ref), "equal_accuracy": equal_accuracy(cands, ref)})
        groups[s] = per_seed
        gains = [x["equal_latency"]["gain_points"] for x in per_seed if x["equal_latency"]]
        speeds = [x["equal_accuracy"]["speedup"] for x in per_seed if x["equal_accuracy"]]
        median[s] = {"gain_points": st.median(gains) if gains else None, "speedup": st.median(speeds) if speeds else None,
                     "seeds": seeds, "no_cell_as_accurate": seeds - len(speeds)}
    return {"resnet_cell": ref, "latency_budgets_ms": [f * ref["latency_ms"] for f in usable], "groups": groups,
            "median": median, "table_optimum": optimum(t.acc, lat, t.ids, ref)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--csv", type=Path, default=None)
    ap.add_argument("--devices", default=None, help="comma-separated device names (lat_<name> columns); default: all")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--evals", type=int, default=100, help="evaluations per search")
    ap.add_argument("--budgets", default="1,0.75,0.5", help="fractions of the ResNet cell's latency")
    ap.add_argument("--strategies", default="evolution")
    ap.add_argument("--json", type=Path, default=None, help="write every number here")
    args = ap.parse_args(argv)
    path = (args.csv or default_csv()).resolve()
    if not path.is_file():
        print(f"error: {path} does not exist; pass --csv or set HWNAS_SHARED_DATA", file=sys.stderr)
        return 2
    devices = args.devices.split(",") if args.devices else device_columns(path)
    strategies = args.strategies.split(",")
    budgets = tuple(float(b) for b in args.budgets.split(","))
    t0 = time.perf_counter()
    table = Table(path)
    results = []
    for device in devices:
        t1 = time.perf_counter()
        s = compare_device(table, device, strategies, args.seeds, budgets, args.evals)
        results.append({"device": device, **s, "seconds": time.perf_counter() - t1})
        m = s["median"]
        print(f"{device:18s} " + "  ".join(f"{k}: gain {v['gain_points']:+.2f} speed-up {'-' if v['speedup'] is None else format(v['speedup'], '.2f')}x"
                                           for k, v in m.items()) + f"  ({time.perf_counter() - t1:.0f} s)",
              file=sys.stderr, flush=True)
    total = time.perf_counter() - t0
    print_table(results, strategies, args)
    print(f"\n{len(devices)} devices x {len(strategies)} strategies x {args.seeds} seeds x {len(budgets)} budgets, "
          f"{args.evals} evaluations per search: {total:.0f} s")
    if args.json:
        args.json.write_text(json.dumps({"results": results, "seconds": total, "resnet_cell": RESNET_CELL}, indent=1))
    return 0


def print_table(results: list[dict], strategies: list[str], args) -> None:
    print(f"\nThe ResNet cell against found cells, CIFAR-10 test accuracy (table), median over {args.seeds} seeds:")
    print("| device | ResNet cell | strategy | gain at equal latency (points) | table's best gain | "
          "speed-up at equal accuracy | table's best speed-up |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        ref, opt = r["resnet_cell"], r["table_optimum"]
        for s in strategies:
            m = r["median"][s]
            speed = "none as accurate" if m["speedup"] is None else f"{m['speedup']:.2f}x"
            if m["speedup"] is not None and m["no_cell_as_accurate"]:
                speed += f" ({m['seeds'] - m['no_cell_as_accurate']} of {m['seeds']} seeds)"
            print(f"| {r['device']} | {100 * ref['top1']:.2f}% @ {ref['latency_ms']:.4g} ms | {s} | {m['gain_points']:+.2f} | "
                  f"{opt['equal_latency']['gain_points']:+.2f} | {speed} | {opt['equal_accuracy']['speedup']:.2f}x |")
    print("\nOver all devices (median of the per-device medians; min and max in brackets):")
    print("| strategy | gain at equal latency (points) | speed-up at equal accuracy |")
    print("|---|---|---|")
    for s in strategies:
        g = [r["median"][s]["gain_points"] for r in results if r["median"][s]["gain_points"] is not None]
        v = [r["median"][s]["speedup"] for r in results if r["median"][s]["speedup"] is not None]
        gain = f"{statistics.median(g):+.2f} [{min(g):+.2f}, {max(g):+.2f}]" if g else "-"
        speed = f"{statistics.median(v):.2f}x [{min(v):.2f}, {max(v):.2f}]" if v else "-"
        if len(v) < len(results):
            speed += f" ({len(results) - len(v)} device(s) with no found cell as accurate)"
        print(f"| {s} | {gain} | {speed} |")
    g = [r["table_optimum"]["equal_latency"]["gain_points"] for r in results]
    v = [r["table_optimum"]["equal_accuracy"]["speedup"] for r in results]
    print(f"| whole table (optimum) | {statistics.median(g):+.2f} [{min(g):+.2f}, {max(g):+.2f}] | "
          f"{statistics.median(v):.2f}x [{min(v):.2f}, {max(v):.2f}] |")


if __name__ == "__main__":
    sys.exit(main())
