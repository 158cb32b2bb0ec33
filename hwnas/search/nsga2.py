"""NSGA-II (Deb et al. 2002): non-dominated sorting and crowding distance over any number of
objectives, binary tournaments, uniform crossover and one-gene mutation.

Implemented here on genomes rather than wrapping optuna's or pymoo's NSGA-II: both would need
their own trial storage to be replayed on resume, optuna costs milliseconds per trial (the
benchmark runs a million), and neither repairs infeasible offspring before evaluation, which
every hwnas strategy must. The operators are the textbook ones (see pareto.py).
"""

from __future__ import annotations

import numpy as np

from hwnas.errors import UserError
from hwnas.search.pareto import crowding_distance, non_dominated_sort
from hwnas.search.problem import Genome, Values
from hwnas.search.strategy import STRATEGIES, Strategy


@STRATEGIES.register("nsga2", "NSGA-II: non-dominated sorting and crowding distance, any number of objectives")
class NSGA2(Strategy):
    name = "nsga2"
    # tuned on the NAS-Bench-201 benchmark (benchmarks/search_nb201.py; docs/notes/2026-11-search-defaults-tuning.md)
    defaults = {"population": 50, "crossover_prob": 0.5}

    def setup(self) -> None:
        self.pop_size = int(self.options["population"])
        self.cx_prob = float(self.options["crossover_prob"])
        if self.pop_size < 4:
            raise UserError(f"nsga2 needs --population >= 4, got {self.pop_size}")
        if not 0.0 <= self.cx_prob <= 1.0:
            raise UserError(f"nsga2 crossover_prob must be in [0, 1], got {self.cx_prob}")
        self.parents: list[tuple[Genome, Values]] = []
        self.offspring: list[tuple[Genome, Values]] = []
        self.rank = np.zeros(0)
        self.crowd = np.zeros(0)

    def _tournament(self) -> Genome:
        i, j = (int(x) for x in self.rng.integers(len(self.parents), size=2))
        better = i if (self.rank[i], -self.crowd[i]) <= (self.rank[j], -self.crowd[j]) else j
        return self.parents[better][0]

    def _child(self) -> Genome:
        a = self._tournament()
        if self.rng.random() < self.cx_prob:
            b = self._tournament()
            a = self.crossover(a, b)
        return self.mutate(a)

    def ask(self) -> Genome:
        if not self.parents:
            return self.random_feasible()
        return self.propose(self._child)

    def on_tell(self, genome: Genome, values: Values) -> None:
        if not self.parents:
            self.offspring.append((genome, values))
            if len(self.offspring) >= self.pop_size:
                self._select(self.offspring)
            return
        self.offspring.append((genome, values))
        if len(self.offspring) >= self.pop_size:
            self._select(self.parents + self.offspring)

    def _select(self, pool: list[tuple[Genome, Values]]) -> None:
        # a genome can appear twice when the space runs out of new feasible candidates
        unique: dict[Genome, Values] = {}
        for g, v in pool:
            unique.setdefault(g, v)
        pool = list(unique.items())
        F = self.problem.objective_matrix([v for _, v in pool])
        chosen: list[int] = []
        ranks: list[int] = []
        crowds: list[float] = []
        for r, front in enumerate(non_dominated_sort(F)):
            d = crowding_distance(F[front])
            if len(chosen) + len(front) <= self.pop_size:
                chosen += [int(i) for i in front]
                ranks += [r] * len(front)
                crowds += list(d)
            else:
                k = self.pop_size - len(chosen)
                order = np.argsort(-d, kind="stable")[:k]
                chosen += [int(front[i]) for i in order]
                ranks += [r] * k
                crowds += list(d[order])
            if len(chosen) >= self.pop_size:
                break
        self.parents = [pool[i] for i in chosen]
        self.rank = np.array(ranks, dtype=np.float64)
        self.crowd = np.array(crowds, dtype=np.float64)
        self.offspring = []
