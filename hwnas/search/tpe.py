"""Tree-structured Parzen Estimator (Bergstra et al. 2011) for categorical decisions.

The first ``init`` candidates are uniform feasible draws. Afterwards the candidates told so far
are split into the good ones (the best ``gamma`` fraction, at least one and at most
``good_max``) and the rest. Each split is modelled per decision by smoothed choice frequencies,
as Optuna's categorical Parzen estimator does: every candidate in it contributes a kernel with
its own choice plus ``prior_weight / n`` on every choice, and a uniform prior of weight
``prior_weight`` joins the mixture, so no choice ever has probability zero. Each ask draws
``candidates`` genomes from the good model (one choice per decision, independently), keeps
those that are feasible and not evaluated before (re-drawing a few times when the budget cuts
most of them), and evaluates the one with the highest ratio l(x) / g(x) of its likelihoods
under the good and the other model. ``multivariate=True`` uses joint kernels instead (draw one
good candidate, then each choice from its kernel; likelihoods are mixtures over whole genomes),
which did worse on the NAS-Bench-201 benchmark's tasks than the per-decision model.

Implemented here rather than through Optuna's sampler: candidates must be repaired against
the budgets before they are evaluated, and a strategy's state must be a function of its seed
and its tells so that replaying the journal resumes exactly; both are direct in the ask/tell
base, and no dependency is added.
"""

from __future__ import annotations

import math

import numpy as np

from hwnas.errors import UserError
from hwnas.search.problem import Genome, Values
from hwnas.search.strategy import STRATEGIES, Strategy

# how many batches of ``candidates`` draws an ask may make to find usable ones
_DRAW_ROUNDS = 20


@STRATEGIES.register("tpe", "Tree-structured Parzen Estimator over the choices, candidates repaired to the budgets")
class TreeParzen(Strategy):
    name = "tpe"
    defaults = {"init": 20, "gamma": 0.15, "good_max": 25, "prior_weight": 1.0, "candidates": 24, "multivariate": False}

    def setup(self) -> None:
        o = self.options
        self.init, self.good_max, self.n_candidates = int(o["init"]), int(o["good_max"]), int(o["candidates"])
        self.gamma, self.prior_weight = float(o["gamma"]), float(o["prior_weight"])
        self.multivariate = bool(o["multivariate"])
        if self.init < 2 or self.good_max < 1 or self.n_candidates < 1:
            raise UserError(f"tpe needs init >= 2, good_max >= 1 and candidates >= 1, got {self.init}, "
                            f"{self.good_max} and {self.n_candidates}")
        if not 0.0 < self.gamma < 1.0 or self.prior_weight <= 0:
            raise UserError(f"tpe needs 0 < gamma < 1 and prior_weight > 0, got {self.gamma} and {self.prior_weight}")
        self.genomes: list[Genome] = []
        self.fitness: list[float] = []
        self._index: set[Genome] = set()

    def n_good(self) -> int:
        n = len(self.genomes)
        return max(1, min(self.good_max, math.ceil(self.gamma * n), n - 1))

    def split(self) -> tuple[np.ndarray, np.ndarray]:
        """The good and the other genomes (rows)."""
        order = np.argsort(-np.asarray(self.fitness), kind="stable")  # ties: the earlier counts as better
        G = np.asarray(self.genomes, dtype=np.int64)
        k = self.n_good()
        return G[order[:k]], G[order[k:]]

    def _kernels(self, rows: np.ndarray) -> list[np.ndarray]:
        """Per decision, one categorical distribution per observation (rows: observations, then
        the uniform prior): its own choice plus ``prior_weight / n`` on every choice, normalised."""
        n = len(rows)
        out = []
        for i, card in enumerate(self._cards):
            K = np.full((n + 1, card), self.prior_weight / n)
            K[np.arange(n), rows[:, i]] += 1.0
            K[n] = 1.0
            out.append(K / K.sum(axis=1, keepdims=True))
        return out

    def _weights(self, n: int) -> np.ndarray:
        w = np.ones(n + 1)
        w[n] = self.prior_weight
        return w / w.sum()

    def log_density(self, rows: np.ndarray, genomes: np.ndarray) -> np.ndarray:
        """log p(genome) of the Parzen model of ``rows``: per decision the mixture of the
        observations' kernels (their smoothed choice frequencies), multiplied over decisions;
        ``multivariate``: the mixture of the observations' joint kernels instead."""
        kernels, w = self._kernels(rows), self._weights(len(rows))
        if self.multivariate:
            log_k = sum(np.log(K[:, genomes[:, i]]) for i, K in enumerate(kernels))  # components x genomes
            top = log_k.max(axis=0)
            return top + np.log(w @ np.exp(log_k - top))
        return sum(np.log(w @ K[:, genomes[:, i]]) for i, K in enumerate(kernels))

    def sample_good(self, good: np.ndarray, n: int) -> np.ndarray:
        """``n`` genomes drawn from the good model (one component per genome, or per decision
        when univariate, then one choice from that component's kernel)."""
        kernels, w = self._kernels(good), self._weights(len(good))
        D = len(self._cards)
        comp = np.searchsorted(np.cumsum(w), self.rng.random((n, 1 if self.multivariate else D)), side="right")
        comp = np.minimum(comp, len(w) - 1)
        u = self.rng.random((n, D))
        out = np.empty((n, D), dtype=np.int64)
        for i, K in enumerate(kernels):
            c = comp[:, 0] if self.multivariate else comp[:, i]
            cum = np.cumsum(K[c], axis=1)
            out[:, i] = np.minimum((cum < u[:, i:i + 1]).sum(axis=1), self._cards[i] - 1)
        return out

    def ask(self) -> Genome:
        if self.n_told < self.init or len(self.genomes) < 2:
            return self.random_feasible()
        good, rest = self.split()
        pool: dict[Genome, None] = {}
        for _ in range(_DRAW_ROUNDS):
            for row in self.sample_good(good, self.n_candidates).tolist():
                g = self.problem.canonical(tuple(row))
                if g not in pool and self.usable(g):
                    pool[g] = None
            if len(pool) >= self.n_candidates:
                break
        if not pool:
            return self.random_feasible()
        cands = list(pool)
        G = np.asarray(cands, dtype=np.int64)
        score = self.log_density(good, G) - self.log_density(rest, G)
        return cands[int(np.argmax(score))]

    def on_tell(self, genome: Genome, values: Values) -> None:
        if genome in self._index:
            return  # a repeat told again by the loop
        self._index.add(genome)
        self.genomes.append(genome)
        self.fitness.append(self.problem.fitness(values))
