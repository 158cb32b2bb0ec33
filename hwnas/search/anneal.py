"""Simulated annealing: a one-gene neighbour is accepted if better, or with probability
exp(delta / T) if worse; T falls geometrically from ``t_start`` to ``t_end`` over the budget.

Temperatures are in units of the fitness (accuracy as a fraction: 0.01 = one point).

A neighbour is, with probability ``swap_prob``, the current point with the values of two genes
exchanged (``Strategy.swap``, see evolution.py for why), otherwise a one-gene change.
"""

from __future__ import annotations

import math

from hwnas.errors import UserError
from hwnas.search.problem import Genome, Values
from hwnas.search.strategy import STRATEGIES, Strategy


@STRATEGIES.register("anneal", "simulated annealing with a geometric temperature schedule")
class SimulatedAnnealing(Strategy):
    name = "anneal"
    # tuned on the NAS-Bench-201 benchmark (benchmarks/search_nb201.py; docs/notes/2026-11-search-defaults-tuning.md)
    defaults = {"t_start": 0.01, "t_end": 0.0005, "restart_after": 50, "swap_prob": 0.5}

    def setup(self) -> None:
        t0, t1 = float(self.options["t_start"]), float(self.options["t_end"])
        if not 0 < t1 <= t0:
            raise UserError(f"anneal needs 0 < t_end <= t_start, got t_start={t0}, t_end={t1}")
        self.t0, self.t1 = t0, t1
        self.restart_after = int(self.options["restart_after"])
        self.current: tuple[Genome, float] | None = None
        self.best: tuple[Genome, float] | None = None
        self.since_improvement = 0

    def temperature(self) -> float:
        frac = min(1.0, self.n_told / max(1, self.budget_evals - 1))
        return self.t0 * (self.t1 / self.t0) ** frac

    def ask(self) -> Genome:
        if self.current is None:
            return self.random_feasible()
        g = self.current[0]
        swap = float(self.options["swap_prob"])
        return self.propose(lambda: self.swap(g) if swap > 0 and self.rng.random() < swap else self.mutate(g))

    def on_tell(self, genome: Genome, values: Values) -> None:
        f = self.problem.fitness(values)
        if self.best is None or f > self.best[1]:
            self.best = (genome, f)
            self.since_improvement = 0
        else:
            self.since_improvement += 1
        if self.current is None:
            self.current = (genome, f)
            return
        delta = f - self.current[1]
        # one uniform draw per tell whatever the outcome, so that replays stay in step
        u = float(self.rng.random())
        if delta >= 0 or u < math.exp(delta / self.temperature()):
            self.current = (genome, f)
        if self.restart_after > 0 and self.since_improvement >= self.restart_after:
            # stuck: go back to the best point found (a restart that keeps what was learned)
            self.current = self.best
            self.since_improvement = 0
