"""hwnas's spaces and strategies as a Ray Tune searcher, for code written around ``tune.run``.

    from ray import tune
    from hwnas.integrations.ray_tune import HwnasSearcher, arch_of

    searcher = HwnasSearcher(space="nb201", profile="table:nb201#lat_pixel3", latency_budget_ms=6.5,
                             strategy="evolution", budget=50, seed=0)

    def trainable(config):
        arch = arch_of(config, "nb201")           # the hwnas Arch (config["arch"] is its JSON)
        return {"accuracy": my_training(arch)}    # your own training; any metric name

    tuner = tune.Tuner(trainable, tune_config=tune.TuneConfig(
        search_alg=searcher, metric="accuracy", mode="max", num_samples=50))
    best = tuner.fit().get_best_result().config["arch"]
    # or, as older code does it:
    tune.run(trainable, search_alg=searcher, metric="accuracy", mode="max", num_samples=50)

Each suggestion is a candidate the strategy asked for that meets the budgets on the latency
profile (``latency_budget_ms``, ``params_max``, ``flops_max``; never one over them): its arch as JSON,
its arch id, its genome and its predicted latency. A finished trial's metric is told back to the
strategy with the candidate's latency, parameters and FLOPs, as ``hwnas search`` tells its
evaluator's accuracy (``mode="min"`` metrics are told negated: strategies maximize). Trials
finish in whatever order Tune runs them, so unlike ``hwnas search --workers`` a Tune run is not
reproducible from its seed; ``hwnas search`` is the tool for that. A candidate the strategy
asks again is told its known value without a new trial; a failed trial is not told (the
strategy may propose its arch again, which is then asked past). ``budget`` bounds the trials
suggested (``Searcher.FINISHED`` after it, or once the strategy proposes nothing new).
"""

from __future__ import annotations

import json
from typing import Any, Optional

from hwnas.errors import UserError
from hwnas.search.loop import MAX_REPEATS
from hwnas.search.problem import ACCURACY, LATENCY, Genome, Problem

try:
    from ray.tune.search import Searcher
except ImportError as e:  # the adapter needs Ray Tune; hwnas itself does not
    raise ImportError("hwnas.integrations.ray_tune needs Ray Tune: pip install 'hwnas[distributed]' "
                      "(or pip install 'ray[tune]')") from e


class HwnasSearcher(Searcher):
    """A Ray Tune ``Searcher`` asking an hwnas strategy for architectures within latency budgets."""

    def __init__(self, space: str, profile: str, latency_budget_ms: Optional[float] = None, strategy: str = "evolution",
                 budget: int = 100, seed: int = 0, metric: Optional[str] = None, mode: Optional[str] = None,
                 max_concurrent: Optional[int] = None, params_max: Optional[float] = None,
                 flops_max: Optional[float] = None, space_settings: Optional[dict[str, Any]] = None,
                 strategy_options: Optional[dict[str, Any]] = None) -> None:
        super().__init__(metric=metric, mode=mode)
        from hwnas.latency.sources import get_latency_model
        from hwnas.search.objectives import CostModel
        from hwnas.search.paths import resolve_profile_spec
        from hwnas.search.strategy import make_strategy
        from hwnas.space import get_space

        if budget < 1:
            raise UserError(f"budget must be at least 1 trial, got {budget}")
        if max_concurrent is not None and max_concurrent < 1:
            raise UserError(f"max_concurrent must be at least 1, got {max_concurrent}")
        self.space = get_space(space, **(space_settings or {}))
        self.latency = get_latency_model(resolve_profile_spec(profile), self.space)
        self.costs = CostModel(self.space)
        self.latency_budget_ms, self.params_max, self.flops_max = latency_budget_ms, params_max, flops_max
        if latency_budget_ms is not None:
            ms, arch = self.latency.min_latency()
            if latency_budget_ms < ms:
                raise UserError(f"latency_budget_ms {latency_budget_ms:g} is below the smallest latency the space reaches on this profile, "
                                f"{ms:.4g} ms (arch {arch.id}); raise the budget")
        self.problem = Problem(
            cards=tuple(len(d.choices) for d in self.space.decisions()), objectives=(ACCURACY, LATENCY),
            feasible=self._feasible, canonical=self._canonical, latency_budget_ms=latency_budget_ms,
            features=self.space.genome_features)
        self.strategy = make_strategy(strategy, self.problem, seed, budget, **(strategy_options or {}))
        self.budget, self.max_concurrent = int(budget), max_concurrent
        self._lat: dict[Genome, float] = {}
        self._live: dict[str, Genome] = {}  # trial id -> its candidate, until the trial completes
        self._told: dict[Genome, dict[str, float]] = {}
        self._failed: set[Genome] = set()
        self.suggested = 0

    # ---- the genome-level functions the strategy calls ------------------------------------
    def _canonical(self, g: Genome) -> Genome:
        return tuple(self.space.encode(self.space.decode(g)))

    def latency_of(self, g: Genome) -> float:
        hit = self._lat.get(g)
        if hit is None:
            hit = self._lat[g] = float(self.latency.predict_many([self.space.decode(g)])[0])
        return hit

    def _feasible(self, g: Genome) -> bool:
        if self.latency_budget_ms is not None and self.latency_of(g) > self.latency_budget_ms:
            return False
        if self.params_max is not None or self.flops_max is not None:
            cost = self.costs(self.space.decode(g))
            if (self.params_max is not None and cost.params > self.params_max) or \
                    (self.flops_max is not None and cost.flops > self.flops_max):
                return False
        return True

    # ---- Ray Tune's Searcher interface ---------------------------------------------------------
    def set_search_properties(self, metric: Optional[str], mode: Optional[str], config: dict, **spec: Any) -> bool:
        if metric is not None:
            self._metric = metric
        if mode is not None:
            self._mode = mode
        return True

    def suggest(self, trial_id: str) -> Optional[dict]:
        if self.suggested >= self.budget:
            return Searcher.FINISHED
        if self.max_concurrent is not None and len(self._live) >= self.max_concurrent:
            return None  # Tune asks again once a trial completes
        live = set(self._live.values())
        for _ in range(MAX_REPEATS):
            g = self.strategy.ask()
            if g in self._told:
                self.strategy.tell(g, self._told[g])  # known: its value again, no trial spent
            elif g not in live and g not in self._failed:
                break
        else:
            return Searcher.FINISHED  # the strategy proposes nothing new (converged or region exhausted)
        self._live[trial_id] = g
        self.suggested += 1
        arch = self.space.decode(g)
        return {"arch": json.dumps(arch.to_dict(), sort_keys=True), "arch_id": arch.id, "genome": list(g),
                "latency_ms": self.latency_of(g)}

    def on_trial_complete(self, trial_id: str, result: Optional[dict] = None, error: bool = False) -> None:
        g = self._live.pop(trial_id, None)
        if g is None:
            return
        metric = self.metric or "accuracy"
        if error or not result or metric not in result:
            self._failed.add(g)
            return
        score = float(result[metric])
        arch = self.space.decode(g)
        cost = self.costs(arch)
        values = {"accuracy": score if (self.mode or "max") == "max" else -score, "latency_ms": self.latency_of(g),
                  "params": float(cost.params), "flops": float(cost.flops), "model_bytes": float(cost.model_bytes)}
        self._told[g] = values
        self.strategy.tell(g, values)

    def arch_of(self, config: dict) -> Any:
        """The hwnas ``Arch`` of a config this searcher suggested."""
        return self.space.parse(json.loads(config["arch"]))


def arch_of(config: dict, space: Any, **space_settings: Any) -> Any:
    """The hwnas ``Arch`` of a suggested config, in a trainable (which should not carry the
    searcher): ``space`` is the space's name (with its settings) or the space itself; build the
    network with ``get_space(...).build(arch)``."""
    if isinstance(space, str):
        from hwnas.space import get_space

        space = get_space(space, **space_settings)
    return space.parse(json.loads(config["arch"]))


__all__ = ["HwnasSearcher", "arch_of"]
