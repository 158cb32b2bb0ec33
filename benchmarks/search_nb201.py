"""Judge the search strategies exactly on NAS-Bench-201 with latencies measured on real devices.

For each device and each latency budget (a percentile of the device's latency column) every
strategy runs with many seeds; accuracy comes from the table (CIFAR-10 test accuracy), latency
from the device column. Reported per (device, budget, strategy, evaluations):

- regret: the best accuracy under the budget in the whole table minus the best the strategy
  found (points), median and IQR over seeds;
- for every strategy, the hypervolume of the found (accuracy, latency) front over that of the
  true front under the budget. The reference point is the true front's nadir (its worst
  accuracy, the budget's latency): ``hv``. Because the nadir accuracy is that of a degenerate
  cell (~10%), a second ratio ``hv80`` puts the reference accuracy at 80% to weigh the part
  of the front anyone would deploy.

The strategies are the library's own (``hwnas.search``), driven through the same ask/tell
loop as ``hwnas search``; only the evaluation is a table lookup. numpy only, no torch.

    python benchmarks/search_nb201.py                      # full: 20 seeds, all strategies
    python benchmarks/search_nb201.py --seeds 3 --strategies evolution,random --devices pixel3
    python benchmarks/search_nb201.py --json results.json  # also write every number
    python benchmarks/search_nb201.py --workers 2          # the same numbers, two processes

Tuning uses other devices and seeds than the reported table, e.g.
``--devices gold_6240,samsung_a50,silver_4210r,titan_rtx_1 --seed-start 100 --seeds 10
--checkpoints 300 --option evolution.population=20``.

Three baselines are not the library's: Optuna's own ``TPESampler(seed=seed)`` (Optuna's defaults,
which in Optuna 5 means the multivariate TPE for one objective) driven directly through
Optuna's ask/tell API, each of the 6 edges a ``suggest_categorical`` over the 5 ops, the study
maximising the table's accuracy. Nothing repairs a cell into the budget or screens it: every cell
Optuna asks for is evaluated and counts as one evaluation, over budget or not, and so does a
repeat of a cell already evaluated (Optuna does not de-duplicate; the repeat is told the same
value). What the study is told about a cell over the latency budget:

- ``optuna-tpe``: the value 0.0, the penalty a typical user returns for a broken constraint;
- ``optuna-tpe-c``: its true accuracy, with ``trial.set_constraint("latency", latency - budget)``
  (Optuna 5's constraint API, which replaced ``TPESampler(constraints_func=...)``; the sampler
  then ranks it below every feasible trial);
- ``optuna-tpe-i``: as ``optuna-tpe`` with ``TPESampler(seed=seed, multivariate=False)``, the
  independent (per-edge) TPE, which is what the library's ``tpe`` models (without repair).

Their regret is taken over the cells within the budget that they evaluated (the same as every
strategy's); ``distinct`` and ``over_budget`` in their JSON rows are how many of the evaluations
were distinct cells and how many were over the budget. Optuna (``pip install optuna``) is not a
dependency of hwnas::

    python benchmarks/search_nb201.py --strategies optuna-tpe,optuna-tpe-c,optuna-tpe-i,reinforce,random \
        --seeds 5 --checkpoints 100,300 --json benchmarks/results/search_nb201_optuna.json

With ``--estimator`` the search sees only what a user without a GPU has: a zero-cost proxy of
the untrained cell on real CIFAR-10 images (``zc:NAME``, ``zc:ensemble``) or the few-shot
predictor fitted on N cells of known accuracy (``predictor:N``, trees on the proxies, the N
drawn per seed). The cell it returns, its best by that estimate, is then scored by the table's
true ``c10_test``: ``regret`` is the true optimum under the budget minus that cell's true
accuracy, and ``regret_oracle`` what picking the truly best of the evaluated cells would give.
Proxies are cached under the hwnas cache directory (a rerun pays only for new cells)::

    python benchmarks/search_nb201.py --estimator zc:ensemble --strategies evolution --seeds 3 \
        --checkpoints 100,300 --json benchmarks/results/search_nb201_zc.json

The data file is ``$HWNAS_SHARED_DATA/nb201/nb201_acc_latency.csv`` (``HWNAS_SHARED_DATA``
defaults to ``../shared/data`` relative to the repository root) or ``--csv PATH``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hwnas.search.loop import drive  # noqa: E402
from hwnas.search.pareto import hypervolume, pareto_front_2d  # noqa: E402
from hwnas.search.problem import Problem  # noqa: E402
from hwnas.search.strategy import make_strategy  # noqa: E402
from hwnas.space import get_space  # noqa: E402
from hwnas.space.nb201 import OPS, parse_cell  # noqa: E402

# the devices; --devices takes any lat_<device> column of the file
DEVICES = ("pixel3", "raspi4", "fpga", "eyeriss", "gold_6226")
STRATEGIES = ("random", "evolution", "nsga2", "reinforce", "anneal", "gp", "tpe")
# baselines outside the library: Optuna's own TPE sampler driven directly (no repair, no screening,
# no de-duplication); Optuna is imported only when one of them is asked for
OPTUNA_STRATEGIES = ("optuna-tpe", "optuna-tpe-c", "optuna-tpe-i")
CHECKPOINTS = (100, 300, 1000)
PERCENTILES = (25, 50)
# strategies whose behaviour depends on the evaluation budget (a schedule) run once per checkpoint
BUDGET_AWARE = {"anneal"}


def default_csv() -> Path:
    base = os.environ.get("HWNAS_SHARED_DATA", str(ROOT.parent / "shared" / "data"))
    return Path(base) / "nb201" / "nb201_acc_latency.csv"


@dataclass
class Bench:
    acc: np.ndarray  # by genome code (base-5 number of the 6 op indices), percent
    lat: dict[str, np.ndarray]  # device -> ms by genome code


def load(path: Path, devices: list[str]) -> Bench:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    n = len(OPS) ** 6
    if len(rows) != n:
        raise SystemExit(f"{path}: expected {n} rows, found {len(rows)}")
    acc = np.full(n, np.nan)
    lat = {d: np.full(n, np.nan) for d in devices}
    weights = len(OPS) ** np.arange(5, -1, -1)
    for r in rows:
        code = int(np.dot([OPS.index(o) for o in parse_cell(r["arch_str"])], weights))
        acc[code] = float(r["c10_test"])
        for d in devices:
            lat[d][code] = float(r["lat_" + d])
    if np.isnan(acc).any():
        raise SystemExit(f"{path}: some cells are missing")
    return Bench(acc, lat)


@dataclass
class Task:
    device: str
    percentile: int
    latency_budget_ms: float
    feasible: np.ndarray
    best_acc: float
    true_front: np.ndarray  # (k, 2) minimization: (-acc, lat)


def make_task(b: Bench, device: str, pct: int) -> Task:
    lat = b.lat[device]
    T = float(np.percentile(lat, pct))
    feas = lat <= T
    F = np.stack([-b.acc[feas], lat[feas]], axis=1)
    front = F[pareto_front_2d(F)]
    return Task(device, pct, T, feas, float(b.acc[feas].max()), front)


class CpuEstimator:
    """What the search sees instead of the table: a proxy score, or a few-shot prediction, by
    genome code; scores are mapped into (0, 1] (the geometric mean of the proxies' rank fractions
    among the reference sample), so the strategies see an accuracy-like objective."""

    def __init__(self, spec: str, b: Bench, data: str = "cifar10", proxy_seed: int = 0, batch: int = 64,
                 predictor_proxies: str | None = None, predictor_features: str = "proxies") -> None:
        from hwnas.accuracy.fewshot import DEFAULT_PROXIES
        from hwnas.accuracy.proxy_ensemble import ENSEMBLE_NAME, ENSEMBLE_PROXIES, reference_sample
        from hwnas.accuracy.zc_evaluator import ProxyScorer, proxy_names

        kind, _, arg = spec.partition(":")
        self.space, self.b, self.spec = get_space("nb201"), b, spec
        if kind == "zc":
            if arg not in proxy_names():
                raise SystemExit(f"error: unknown proxy {arg!r}; choose one of {', '.join(proxy_names())}")
            self.names = tuple(ENSEMBLE_PROXIES) if arg == ENSEMBLE_NAME else (arg,)
            self.n_fit = 0
        elif kind == "predictor":
            try:
                self.n_fit = int(arg)
            except ValueError:
                raise SystemExit(f"error: predictor:N wants a number of cells, got {arg!r}") from None
            self.names = tuple(predictor_proxies.split(",")) if predictor_proxies else DEFAULT_PROXIES
            if predictor_features not in ("proxies", "both"):
                raise SystemExit(f"error: --predictor-features takes proxies or both, got {predictor_features!r}")
        else:
            raise SystemExit(f"error: --estimator takes zc:NAME or predictor:N, got {spec!r}")
        self.scorer = ProxyScorer(self.space, data, proxy_seed, batch)
        self.reference = self.scorer.values(reference_sample(self.space), self.names)
        self.with_genome = kind == "predictor" and predictor_features == "both"
        self.forest = None
        self.memo: dict[int, float] = {}

    def arch(self, code: int):
        digits = [(code // 5 ** k) % 5 for k in range(5, -1, -1)]
        return self.space.decode(digits)

    def features(self, code: int) -> np.ndarray:
        from hwnas.accuracy.proxy_ensemble import log_ranks

        f = log_ranks(self.scorer.values([self.arch(code)], self.names), self.reference)[0]
        if not self.with_genome:
            return f
        digits = np.array([[(code // 5 ** k) % 5 for k in range(5, -1, -1)]])
        return np.concatenate([f, np.asarray(self.space.genome_features(digits), dtype=np.float64)[0]])

    def for_seed(self, seed: int) -> None:
        """The predictor of one search seed: fitted on ``n_fit`` cells drawn with that seed."""
        if not self.n_fit:
            return
        from hwnas.accuracy.fewshot import FewShotPredictor

        codes = np.random.default_rng(10_000 + seed).choice(len(self.b.acc), self.n_fit, replace=False)
        x = np.array([self.features(int(c)) for c in codes])
        self.forest = FewShotPredictor._trees(x, self.b.acc[codes] / 100.0, seed)
        self.memo = {}

    def __call__(self, code: int) -> float:
        if code not in self.memo:
            f = self.features(code)
            self.memo[code] = float(self.forest.predict(f[None])[0]) if self.forest is not None else float(np.exp(f.mean()))
        return self.memo[code]


_ESTIMATOR: "CpuEstimator | None" = None


def run_one(b: Bench, task: Task, strategy: str, seed: int, evals: int, **options) -> tuple[np.ndarray, np.ndarray]:
    """(accuracies, latencies) of the evaluated candidates, in order: true accuracies, or with an
    estimator, (estimated, true) stacked as a 2 x n array."""
    weights = len(OPS) ** np.arange(5, -1, -1)
    feas, acc, lat = task.feasible, b.acc, b.lat[task.device]

    def code(g) -> int:
        return int(g[0] * 3125 + g[1] * 625 + g[2] * 125 + g[3] * 25 + g[4] * 5 + g[5])

    assert int(np.dot([1, 2, 3, 4, 0, 1], weights)) == code((1, 2, 3, 4, 0, 1))
    problem = Problem(cards=(len(OPS),) * 6, feasible=lambda g: bool(feas[code(g)]), latency_budget_ms=task.latency_budget_ms,
                      features=get_space("nb201").genome_features)
    st = make_strategy(strategy, problem, seed, evals, **options)

    est = _ESTIMATOR
    if est is not None:
        est.for_seed(seed)

    def evaluate(g):
        c = code(g)
        seen = est(c) if est is not None else acc[c] / 100.0
        return {"accuracy": seen, "latency_ms": lat[c], "code": c}

    res = drive(st, evaluate, evals)
    a = np.array([acc[v["code"]] for v in res.values])
    l = np.array([v["latency_ms"] for v in res.values])
    if est is not None:
        return np.stack([np.array([v["accuracy"] for v in res.values]), a]), l
    return a, l


def run_optuna(b: Bench, task: Task, strategy: str, seed: int, evals: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(accuracies, latencies, genome codes) of the ``evals`` cells Optuna's TPE asked for, in
    order, over budget and repeated ones included (see the module's docstring)."""
    import warnings

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    acc, lat = b.acc, b.lat[task.device]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = optuna.samplers.TPESampler(seed=seed, **({"multivariate": False} if strategy == "optuna-tpe-i" else {}))
        study = optuna.create_study(direction="maximize", sampler=sampler)
        codes = []
        for _ in range(evals):
            trial = study.ask()
            ops = [trial.suggest_categorical(f"edge{i}", list(OPS)) for i in range(6)]
            c = int(sum(OPS.index(o) * 5 ** (5 - i) for i, o in enumerate(ops)))
            codes.append(c)
            value = acc[c] / 100.0
            if strategy == "optuna-tpe-c":
                trial.set_constraint("latency", float(lat[c] - task.latency_budget_ms))
            elif lat[c] > task.latency_budget_ms:
                value = 0.0
            study.tell(trial, value)
    codes_a = np.array(codes)
    return acc[codes_a], lat[codes_a], codes_a


def hv_ratio(task: Task, a: np.ndarray, l: np.ndarray, ref_acc: float | None) -> float:
    ref_a = -task.true_front[:, 0].max() if ref_acc is None else ref_acc
    # the reference latency sits just past the budget, so a point exactly at the budget counts
    ref = np.array([-ref_a, task.latency_budget_ms * (1 + 1e-9)])
    F = np.stack([-a, l], axis=1)
    return hypervolume(F[pareto_front_2d(F)], ref) / hypervolume(task.true_front, ref)


def parse_options(items: list[str]) -> dict[str, dict]:
    """``strategy.key=value`` (value parsed as JSON where it can be) -> {strategy: {key: value}}."""
    out: dict[str, dict] = {}
    for item in items:
        name, _, value = item.partition("=")
        strategy, _, key = name.partition(".")
        if not key or not _:
            raise SystemExit(f"--option wants strategy.key=value, got {item!r}")
        try:
            out.setdefault(strategy, {})[key] = json.loads(value)
        except json.JSONDecodeError:
            out[strategy][key] = value
    return out


_BENCH: Bench | None = None


def _init_worker(path: Path, devices: list[str]) -> None:
    global _BENCH
    _BENCH = load(path, devices)


def seed_scores(task: Task, strategy: str, seed: int, checkpoints: list[int], options: dict) -> dict[int, tuple]:
    """(regret, hv, hv80) at every checkpoint for one seed."""
    b = _BENCH
    assert b is not None
    if strategy in OPTUNA_STRATEGIES:
        a_all, l_all, codes = run_optuna(b, task, strategy, seed, checkpoints[-1])
        out = {}
        for c in checkpoints:
            a, l = a_all[:c], l_all[:c]
            ok = l <= task.latency_budget_ms
            # nothing within the budget found: regret as if 0% were found, hypervolume 0
            found = float(a[ok].max()) if ok.any() else 0.0
            hv = (hv_ratio(task, a[ok], l[ok], None), hv_ratio(task, a[ok], l[ok], 80.0)) if ok.any() else (0.0, 0.0)
            out[c] = (task.best_acc - found, *hv, float(len(set(codes[:c].tolist()))), float((~ok).sum()))
        return out
    runs = ([(c, run_one(b, task, strategy, seed, c, **options)) for c in checkpoints] if strategy in BUDGET_AWARE
            else [(None, run_one(b, task, strategy, seed, checkpoints[-1], **options))])
    out = {}
    for c in checkpoints:
        a, l = next(r for cc, r in runs if cc in (c, None))
        if a.ndim == 2:  # (estimated, true): the search returns its best by the estimate
            seen, true = a[0, :c], a[1, :c]
            l = l[:c]
            picked = float(true[int(np.argmax(seen))])
            out[c] = (task.best_acc - picked, hv_ratio(task, true, l, None), hv_ratio(task, true, l, 80.0),
                      task.best_acc - float(true.max()))
            continue
        a, l = a[:c], l[:c]
        assert np.all(l <= task.latency_budget_ms), "a strategy evaluated an over-budget candidate"
        out[c] = (task.best_acc - float(a.max()), hv_ratio(task, a, l, None), hv_ratio(task, a, l, 80.0))
    return out


def summarize(x: list[float]) -> tuple[float, float, float]:
    q = np.percentile(np.asarray(x, dtype=float), [25, 50, 75])
    return float(q[1]), float(q[0]), float(q[2])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--csv", type=Path, default=None)
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--strategies", default=",".join(STRATEGIES))
    ap.add_argument("--devices", default=",".join(DEVICES))
    ap.add_argument("--percentiles", default=",".join(map(str, PERCENTILES)))
    ap.add_argument("--checkpoints", default=",".join(map(str, CHECKPOINTS)))
    ap.add_argument("--seed-start", type=int, default=0, help="first seed (tuning uses seeds the table does not)")
    ap.add_argument("--option", action="append", default=[], metavar="STRATEGY.KEY=VALUE",
                    help="a strategy option other than its default (repeatable)")
    ap.add_argument("--workers", type=int, default=1, help="processes running seeds in parallel")
    ap.add_argument("--json", type=Path, default=None, help="write all results here")
    ap.add_argument("--estimator", default=None, help="what the search sees instead of the table: zc:NAME "
                    "(a proxy, or zc:ensemble) or predictor:N (few-shot trees fitted on N cells per seed)")
    ap.add_argument("--predictor-proxies", default=None, help="with predictor:N, its proxies (comma-separated)")
    ap.add_argument("--predictor-features", default="proxies",
                    help="with predictor:N, proxies (their log ranks) or both (and the genome's features)")
    ap.add_argument("--proxy-data", default="cifar10", help="dataset whose images the proxies see")
    args = ap.parse_args(argv)
    path = args.csv or default_csv()
    if not path.is_file():
        print(f"error: {path} does not exist; pass --csv or set HWNAS_SHARED_DATA", file=sys.stderr)
        return 2
    devices = args.devices.split(",")
    strategies = args.strategies.split(",")
    checkpoints = sorted(int(c) for c in args.checkpoints.split(","))
    if any(s in OPTUNA_STRATEGIES for s in strategies):
        if args.estimator:
            print("error: the optuna-* baselines run on the table only; drop --estimator", file=sys.stderr)
            return 2
        import importlib.util

        if importlib.util.find_spec("optuna") is None:
            print("error: the optuna-* baselines need Optuna, which hwnas does not depend on: pip install optuna", file=sys.stderr)
            return 2
    t0 = time.perf_counter()
    options = parse_options(args.option)
    b = load(path, devices)
    global _BENCH, _ESTIMATOR
    _BENCH = b
    if args.estimator:
        if args.workers > 1:
            print("error: --estimator runs in one process (its proxy cache is a single file); drop --workers", file=sys.stderr)
            return 2
        _ESTIMATOR = CpuEstimator(args.estimator, b, args.proxy_data, predictor_proxies=args.predictor_proxies,
                                  predictor_features=args.predictor_features)
    pool = None
    if args.workers > 1:
        import multiprocessing

        pool = multiprocessing.get_context("fork").Pool(args.workers, _init_worker, (path, devices))
    seeds = list(range(args.seed_start, args.seed_start + args.seeds))
    results = []
    for device in devices:
        for pct in (int(p) for p in args.percentiles.split(",")):
            task = make_task(b, device, pct)
            for strategy in strategies:
                t1 = time.perf_counter()
                keys = (("regret", "hv", "hv80") + (("regret_oracle",) if args.estimator else ())
                        + (("distinct", "over_budget") if strategy in OPTUNA_STRATEGIES else ()))
                per_cp: dict[int, dict[str, list[float]]] = {c: {k: [] for k in keys} for c in checkpoints}
                jobs = [(task, strategy, seed, checkpoints, options.get(strategy, {})) for seed in seeds]
                for scores in (pool.starmap(seed_scores, jobs) if pool else [seed_scores(*j) for j in jobs]):
                    for c in checkpoints:
                        for k, v in zip(keys, scores[c]):
                            per_cp[c][k].append(v)
                secs = time.perf_counter() - t1
                for c in checkpoints:
                    row = {"device": device, "percentile": pct, "latency_budget_ms": task.latency_budget_ms, "strategy": strategy,
                           "options": options.get(strategy, {}), "evals": c, "seeds": args.seeds,
                           "seed_start": args.seed_start, "true_best": task.best_acc, "seconds": secs,
                           "estimator": args.estimator or "table"}
                    for k, v in per_cp[c].items():
                        med, q1, q3 = summarize(v)
                        row[k] = {"median": med, "q1": q1, "q3": q3}
                    results.append(row)
                print(f"{device:10s} p{pct} {strategy:10s} " + "  ".join(
                    f"@{c}: regret {np.median(per_cp[c]['regret']):.3f} hv {np.median(per_cp[c]['hv']):.4f}" for c in checkpoints)
                    + f"  ({secs:.1f}s)", file=sys.stderr, flush=True)
    if pool:
        pool.close()
    total = time.perf_counter() - t0
    print_tables(results, strategies, checkpoints)
    print(f"\n{len(devices)} devices x {len(args.percentiles.split(','))} budgets x {len(strategies)} strategies x "
          f"{args.seeds} seeds, up to {checkpoints[-1]} evaluations each: {total:.0f} s")
    if args.json:
        args.json.write_text(json.dumps({"results": results, "seconds": total}, indent=1))
    return 0


def print_tables(results: list[dict], strategies: list[str], checkpoints: list[int]) -> None:
    print("\nMedian regret (points of CIFAR-10 test accuracy) [IQR], over all device/budget tasks:")
    print("| device | budget | strategy | " + " | ".join(f"regret @{c}" for c in checkpoints) + f" | hv ratio @{checkpoints[-1]} | hv80 ratio @{checkpoints[-1]} |")
    print("|---|---|---|" + "---|" * (len(checkpoints) + 2))
    for r in results:
        if r["evals"] != checkpoints[0]:
            continue
        same = [x for x in results if x["device"] == r["device"] and x["percentile"] == r["percentile"] and x["strategy"] == r["strategy"]]
        cells = []
        for c in checkpoints:
            x = next(s for s in same if s["evals"] == c)["regret"]
            cells.append(f"{x['median']:.3f} [{x['q1']:.3f}, {x['q3']:.3f}]")
        last = next(s for s in same if s["evals"] == checkpoints[-1])
        print(f"| {r['device']} | p{r['percentile']} ({r['latency_budget_ms']:.3g} ms) | {r['strategy']} | " + " | ".join(cells)
              + f" | {last['hv']['median']:.4f} | {last['hv80']['median']:.4f} |")
    print("\nMedian over tasks of the per-task median regret:")
    print("| strategy | " + " | ".join(f"@{c}" for c in checkpoints) + f" | hv @{checkpoints[-1]} (min over tasks) |")
    print("|---|" + "---|" * (len(checkpoints) + 1))
    for s in strategies:
        cells = []
        for c in checkpoints:
            v = [r["regret"]["median"] for r in results if r["strategy"] == s and r["evals"] == c]
            cells.append(f"{np.median(v):.3f} (max {np.max(v):.3f})")
        hv = [r["hv"]["median"] for r in results if r["strategy"] == s and r["evals"] == checkpoints[-1]]
        print(f"| {s} | " + " | ".join(cells) + f" | {np.median(hv):.4f} ({np.min(hv):.4f}) |")
    if any("regret_oracle" in r for r in results):
        print("\nWith the estimator: median over tasks of the per-task median regret of the cell the search returns "
              "(its best by the estimate), and of the truly best cell it evaluated (oracle pick):")
        print("| strategy | estimator | " + " | ".join(f"returned @{c} | oracle @{c}" for c in checkpoints) + " |")
        print("|---|---|" + "---|---|" * len(checkpoints))
        for s in strategies:
            cells = []
            for c in checkpoints:
                rows = [r for r in results if r["strategy"] == s and r["evals"] == c]
                cells += [f"{np.median([r['regret']['median'] for r in rows]):.3f}",
                          f"{np.median([r['regret_oracle']['median'] for r in rows]):.3f}"]
            print(f"| {s} | {results[0]['estimator']} | " + " | ".join(cells) + " |")
        return
    print_targets(results, strategies)


def print_targets(results: list[dict], strategies: list[str], evals: int = 300) -> None:
    """The issue's per-task target at 300 evaluations: median regret at most 0.1 point and at
    most half of random's on the same task (needs random among the strategies)."""
    at = [r for r in results if r["evals"] == evals]
    rnd = {(r["device"], r["percentile"]): r["regret"]["median"] for r in at if r["strategy"] == "random"}
    if not rnd:
        return
    print(f"\nTarget at {evals} evaluations (median regret <= 0.1 and <= half of random's), per task:")
    for s in strategies:
        if s == "random":
            continue
        rows = [r for r in at if r["strategy"] == s and (r["device"], r["percentile"]) in rnd]
        missed = [r for r in rows if not (r["regret"]["median"] <= 0.1 + 1e-9
                                          and r["regret"]["median"] <= rnd[(r["device"], r["percentile"])] / 2 + 1e-9)]
        print(f"- {s}: met on {len(rows) - len(missed)} of {len(rows)}" + ("; missed: " + ", ".join(
            f"{r['device']} p{r['percentile']} ({r['regret']['median']:.3f} vs random "
            f"{rnd[(r['device'], r['percentile'])]:.3f})" for r in missed) if missed else ""))


if __name__ == "__main__":
    raise SystemExit(main())
