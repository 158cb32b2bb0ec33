"""Judge every cheap accuracy estimator against NAS-Bench-201's real CIFAR-10 test accuracies.

For ``--cells`` cells sampled with a fixed seed (numpy ``default_rng(seed).choice``), each
zero-cost proxy is computed on a batch of real CIFAR-10 training images (the ``zc:`` evaluator's
code and cache), and compared with the table's fully trained ``c10_test``:

- Kendall tau and Spearman rho of each proxy, beside the published anchors (AZ-NAS, CVPR 2024,
  over all 15,625 cells);
- rank ensembles (sums of log ranks against the fixed reference sample of ``zc:ensemble``):
  the combination is *chosen* on a separate tuning sample of ``--tune`` other cells and then
  judged on the evaluation cells, so the reported tau is not the maximum of many tries on the
  same data; the shipped ``zc:ensemble`` default is reported too;
- the few-shot predictor (``hwnas predictor fit``'s trees) fitted on N = 25, 50, 100, 200 of
  the evaluation cells and judged on all the others, median and range over ``--splits``
  random splits, for each feature set (proxies, the space's genome features, both);
- each proxy's cost: median seconds per cell, timed afresh (no cache) on ``--cost-cells`` cells.

    python benchmarks/accuracy_nb201.py                         # 1000 cells + 300 tuning cells
    python benchmarks/accuracy_nb201.py --json benchmarks/results/accuracy_nb201.json
    python benchmarks/accuracy_nb201.py --cells 200 --tune 100  # a quicker look

Proxies take 1-2 s per cell for all seven on a 2-core CPU; they are cached under the hwnas
cache directory, so a rerun only recomputes what is missing. Needs the shared NAS-Bench-201
table (``$HWNAS_SHARED_DATA/nb201``) and CIFAR-10 (``$HWNAS_SHARED_DATA/cifar10``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from scipy.stats import kendalltau, spearmanr  # noqa: E402

from hwnas.accuracy.fewshot import FewShotPredictor  # noqa: E402
from hwnas.accuracy.proxies import PROXIES  # noqa: E402
from hwnas.accuracy.proxy_ensemble import ENSEMBLE_PROXIES, log_ranks, reference_sample  # noqa: E402
from hwnas.data.benchmark_csv import load_csv_table, resolve_csv  # noqa: E402
from hwnas.accuracy.zc_evaluator import DEFAULT_BATCH, ProxyScorer  # noqa: E402
from hwnas.space import get_space  # noqa: E402

# Kendall tau over all NAS-Bench-201 CIFAR-10 cells as published (AZ-NAS, Lee and Ham, CVPR 2024, Table 1)
PUBLISHED = {"params": 0.578, "flops": 0.578, "synflow": 0.571, "naswot": 0.557, "snip": 0.454,
             "grad_norm": 0.357, "jacov": None, "AZ-NAS": 0.741}
NS = (25, 50, 100, 200)


def sample_cells(n_rows: int, cells: int, tune: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    evaluation = np.random.default_rng(seed).choice(n_rows, cells, replace=False)
    taken = set(evaluation.tolist())
    others = [r for r in np.random.default_rng(seed + 1).permutation(n_rows).tolist() if r not in taken]
    return evaluation, np.array(others[:tune], dtype=np.int64)


def corr(score: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    return float(kendalltau(score, truth).statistic), float(spearmanr(score, truth).statistic)


def proxy_values(scorer: ProxyScorer, archs: list, names: list[str], label: str) -> np.ndarray:
    from rich.progress import Progress

    out = np.empty((len(archs), len(names)))
    with Progress(transient=True) as bar:
        task = bar.add_task(label, total=len(archs))
        for i, a in enumerate(archs):
            out[i] = scorer.values([a], names)[0]
            bar.advance(task)
    return out


def proxy_costs(space, data: str, seed: int, batch: int, archs: list, names: list[str]) -> dict[str, dict[str, float]]:
    fresh = ProxyScorer(space, data, seed, batch, cache=False, dataset=None)
    for a in archs:
        for n in names:  # one at a time: snip and grad_norm would otherwise share a backward pass
            fresh.values([a], [n])
            fresh.values_cache.clear()
    return {n: {"median_s": float(np.median(v)), "p90_s": float(np.percentile(v, 90))} for n, v in fresh.seconds.items()}


def best_combination(logr: np.ndarray, truth: np.ndarray, names: list[str], max_size: int = 4) -> tuple[tuple[str, ...], float]:
    best: tuple[float, tuple[str, ...]] = (-2.0, ())
    for k in range(2, max_size + 1):
        for combo in itertools.combinations(range(len(names)), k):
            tau = float(kendalltau(logr[:, list(combo)].sum(axis=1), truth).statistic)
            best = max(best, (tau, tuple(names[i] for i in combo)))
    return best[1], best[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", type=int, default=1000, help="evaluation cells")
    ap.add_argument("--tune", type=int, default=300, help="other cells on which the ensemble's proxies are chosen")
    ap.add_argument("--seed", type=int, default=0, help="seed of the cell samples")
    ap.add_argument("--proxy-seed", type=int, default=0, help="seed of the proxies' image batch and initial weights")
    ap.add_argument("--batch", type=int, default=DEFAULT_BATCH, help="images per proxy batch")
    ap.add_argument("--data", default="cifar10", help="dataset whose images the proxies see")
    ap.add_argument("--column", default="c10_test", help="the table's ground-truth column")
    ap.add_argument("--splits", type=int, default=5, help="random splits per predictor size")
    ap.add_argument("--ns", default=",".join(map(str, NS)), help="predictor training sizes")
    ap.add_argument("--cost-cells", type=int, default=10, help="cells timed afresh for each proxy's cost")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    ap.add_argument("--json", type=Path, default=None, help="write every number here")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    space = get_space("nb201")
    table = load_csv_table(resolve_csv("nb201"), space)
    truth_all = table.column(args.column)
    ev_rows, tune_rows = sample_cells(len(table.archs), args.cells, args.tune, args.seed)
    names = PROXIES.names()
    scorer = ProxyScorer(space, args.data, args.proxy_seed, args.batch)
    t0 = time.time()
    ref = proxy_values(scorer, reference_sample(space), names, "reference cells")
    x_ev = proxy_values(scorer, [table.archs[r] for r in ev_rows], names, "evaluation cells")
    x_tune = proxy_values(scorer, [table.archs[r] for r in tune_rows], names, "tuning cells")
    scorer.close()
    y_ev, y_tune = truth_all[ev_rows], truth_all[tune_rows]
    costs = proxy_costs(space, args.data, args.proxy_seed, args.batch,
                        [table.archs[r] for r in ev_rows[:args.cost_cells]], names)

    result: dict = {"machine": {"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
                                "torch": torch.__version__},
                    "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                    "cells": len(ev_rows), "tune_cells": len(tune_rows), "proxies": {}, "ensembles": {}, "predictor": {}}
    print(f"NAS-Bench-201 {args.column}: {len(ev_rows)} evaluation cells, {len(tune_rows)} tuning cells, "
          f"proxies on {args.data} (batch {args.batch}, seed {args.proxy_seed}), {torch.get_num_threads()} threads\n")
    print("| estimator | Kendall tau | Spearman rho | published tau | s / cell |")
    print("|---|---|---|---|---|")
    for j, n in enumerate(names):
        tau, rho = corr(x_ev[:, j], y_ev)
        result["proxies"][n] = {"kendall_tau": tau, "spearman": rho, "published_tau": PUBLISHED.get(n), **costs.get(n, {})}
        pub = PUBLISHED.get(n)
        print(f"| zc:{n} | {tau:.3f} | {rho:.3f} | {pub if pub is not None else '-'} | {costs[n]['median_s']:.3f} |")

    logr_ev, logr_tune = log_ranks(x_ev, ref), log_ranks(x_tune, ref)
    chosen, tune_tau = best_combination(logr_tune, y_tune, names)
    for label, combo in (("chosen on the tuning cells", chosen), ("zc:ensemble as shipped", tuple(ENSEMBLE_PROXIES)),
                         ("all seven", tuple(names))):
        idx = [names.index(c) for c in combo]
        tau, rho = corr(logr_ev[:, idx].sum(axis=1), y_ev)
        cost = sum(costs[c]["median_s"] for c in combo)
        result["ensembles"][label] = {"proxies": list(combo), "kendall_tau": tau, "spearman": rho, "s_per_cell": cost}
        print(f"| log-rank sum of {'+'.join(combo)} ({label}) | {tau:.3f} | {rho:.3f} | AZ-NAS {PUBLISHED['AZ-NAS']} | {cost:.3f} |")
    result["ensembles"]["chosen on the tuning cells"]["tune_tau"] = tune_tau

    genomes = np.array([space.encode(table.archs[r]) for r in ev_rows], dtype=np.int64)
    feats = {"proxies": logr_ev, "genome": np.asarray(space.genome_features(genomes), dtype=np.float64),
             "both": np.hstack([logr_ev, np.asarray(space.genome_features(genomes), dtype=np.float64)])}
    print("\n| predictor features | " + " | ".join(f"N={n}" for n in map(int, args.ns.split(","))) + " |")
    print("|---|" + "---|" * len(args.ns.split(",")))
    for fname, F in feats.items():
        cells = []
        result["predictor"][fname] = {}
        for n in map(int, args.ns.split(",")):
            taus = []
            for s in range(args.splits):
                perm = np.random.default_rng(1000 + s).permutation(len(y_ev))
                tr, te = perm[:n], perm[n:]
                forest = FewShotPredictor._trees(F[tr], y_ev[tr], s)
                taus.append(float(kendalltau(forest.predict(F[te]), y_ev[te]).statistic))
            result["predictor"][fname][str(n)] = {"median_tau": float(np.median(taus)), "min": min(taus), "max": max(taus),
                                                  "taus": taus}
            cells.append(f"{np.median(taus):.3f} ({min(taus):.3f}-{max(taus):.3f})")
        print(f"| {fname} | " + " | ".join(cells) + " |")
    result["seconds"] = time.time() - t0
    print(f"\n{result['seconds']:.0f} s in all (cached proxies are not recomputed); machine: {result['machine']}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
