"""Bayesian optimisation with a Gaussian process over the space's genome features.

The first ``init`` candidates are uniform feasible draws. Afterwards each ask fits a Gaussian
process to everything told so far and evaluates the candidate of a pool that maximises the
acquisition: expected improvement over the best value seen (``acquisition="ei"``, the default;
``xi`` is an improvement, in the target's units, that does not count) or the upper confidence
bound, mean + ``beta`` standard deviations (``"ucb"``). The predicted standard deviation
includes the fitted noise, which keeps some exploration when the data are exact.

The model: scikit-learn's ``GaussianProcessRegressor`` on the space's ``genome_features``
(one-hot choices, plus for ``nb201`` the operations along each input-to-output path), kernel
constant x Matern 5/2 (or RBF, ``kernel="rbf"``) with one length scale, plus a white-noise term
(a tabular benchmark is exact, but a trained network's accuracy is not, and NAS-Bench-201's
isomorphic cells differ by their training noise), targets normalised. The target is the
screening surrogate's: ``-log(1 - accuracy + 0.005)`` (search/surrogate.py), so differences
near the top are not drowned by broken cells.

The pool (``pool`` candidates, all feasible and not evaluated before): a ``local`` fraction are
neighbours of the ``top`` best candidates seen (one-gene changes, or with probability one half
an exchange of two genes' values, ``Strategy.swap``: see evolution.py for why), the rest uniform
feasible draws. Candidates over a budget are never in the pool, so none is ever evaluated.

Cost: a refit is cubic in the training set. The kernel's hyperparameters are optimised (warm
started from the last ones) every ``refit_every`` tells and kept fixed in between, and the
training set is capped at ``max_train`` points: past it, the half with the best values and
the most recent of the rest. BLAS runs on one thread during fits, so a replayed run computes
the same numbers bit for bit whatever the machine's thread settings, and resumes exactly.
On the NAS-Bench-201 benchmark a run of 300 evaluations takes about 7 s on one core, one of
1000 about 50 s.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from hwnas.errors import UserError
from hwnas.search.problem import Genome, Values
from hwnas.search.strategy import STRATEGIES, Strategy
from hwnas.search.surrogate import one_hot_features, surrogate_target

ACQUISITIONS = ("ei", "ucb")
KERNELS = ("matern", "rbf")


@STRATEGIES.register("gp", "Bayesian optimisation: a Gaussian process, expected improvement over feasible candidates")
class GaussianProcessBO(Strategy):
    name = "gp"
    defaults = {"acquisition": "ei", "beta": 2.0, "xi": 0.0, "kernel": "matern", "init": 10, "pool": 400,
                "local": 0.5, "top": 10, "max_train": 400, "refit_every": 5}

    def setup(self) -> None:
        o = self.options
        if o["acquisition"] not in ACQUISITIONS:
            raise UserError(f"gp acquisition must be one of {', '.join(ACQUISITIONS)}, got {o['acquisition']!r}")
        if o["kernel"] not in KERNELS:
            raise UserError(f"gp kernel must be one of {', '.join(KERNELS)}, got {o['kernel']!r}")
        self.init, self.pool_size, self.top = int(o["init"]), int(o["pool"]), int(o["top"])
        self.max_train, self.refit_every = int(o["max_train"]), int(o["refit_every"])
        self.local, self.beta, self.xi = float(o["local"]), float(o["beta"]), float(o["xi"])
        if self.init < 2 or self.pool_size < 1 or self.top < 1 or self.max_train < 2 or self.refit_every < 1:
            raise UserError(f"gp needs init >= 2, pool >= 1, top >= 1, max_train >= 2 and refit_every >= 1, got "
                            f"{self.init}, {self.pool_size}, {self.top}, {self.max_train} and {self.refit_every}")
        if not 0.0 <= self.local <= 1.0 or self.beta < 0 or self.xi < 0:
            raise UserError(f"gp needs 0 <= local <= 1, beta >= 0 and xi >= 0, got {self.local}, {self.beta} and {self.xi}")
        self.features = self.problem.features or one_hot_features(self._cards)
        self.genomes: list[Genome] = []
        self.targets: list[float] = []
        self._rows: list[np.ndarray] = []
        self._index: dict[Genome, int] = {}
        self._kernel: Any = None  # the last fitted kernel (hyperparameters warm start the next fit)
        self._fitted_at = -1
        self._threads: Any = None

    # ---- the model ---------------------------------------------------------------------
    def _initial_kernel(self) -> Any:
        from sklearn.gaussian_process.kernels import RBF, ConstantKernel, Matern, WhiteKernel

        width = self._rows[0].shape[0]
        scale = math.sqrt(max(width, 1) / 2.0)  # a typical distance between binary feature rows
        shape = (Matern(length_scale=scale, length_scale_bounds=(1e-2, 1e3), nu=2.5) if self.options["kernel"] == "matern"
                 else RBF(length_scale=scale, length_scale_bounds=(1e-2, 1e3)))
        return (ConstantKernel(1.0, (1e-3, 1e3)) * shape + WhiteKernel(0.1, (1e-6, 1.0)))

    def _training_set(self) -> tuple[np.ndarray, np.ndarray]:
        y = np.asarray(self.targets)
        idx = np.arange(len(y))
        if len(y) > self.max_train:
            order = np.argsort(-y, kind="stable")
            best = order[: self.max_train // 2]
            rest = np.setdiff1d(idx, best)  # ascending: the most recent are last
            idx = np.sort(np.concatenate([best, rest[len(rest) - (self.max_train - len(best)):]]))
        return np.stack([self._rows[i] for i in idx]), y[idx]

    def _fit(self) -> Any:
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.gaussian_process import GaussianProcessRegressor

        X, y = self._training_set()
        optimise = self._kernel is None or self.n_told - self._fitted_at >= self.refit_every
        kernel = self._kernel if self._kernel is not None else self._initial_kernel()
        gp = GaussianProcessRegressor(kernel=kernel, normalize_y=True, optimizer="fmin_l_bfgs_b" if optimise else None,
                                      n_restarts_optimizer=0, copy_X_train=False)
        with warnings.catch_warnings():
            # a length scale or noise at its bound is a fine answer here
            warnings.simplefilter("ignore", ConvergenceWarning)
            gp.fit(X, y)
        if optimise:
            self._kernel = gp.kernel_
            self._fitted_at = self.n_told
        return gp, float(y.max())

    def acquisition(self, genomes: list[Genome]) -> np.ndarray:
        """The acquisition of each candidate under the model of everything told so far."""
        gp, best = self._fit()
        X = np.asarray(self.features(np.asarray(genomes, dtype=np.int64)), dtype=np.float64)
        mean, std = gp.predict(X, return_std=True)
        std = np.maximum(std, 1e-12)
        if self.options["acquisition"] == "ucb":
            return mean + self.beta * std
        from scipy.stats import norm

        z = (mean - best - self.xi) / std
        return (mean - best - self.xi) * norm.cdf(z) + std * norm.pdf(z)

    # ---- the pool ----------------------------------------------------------------------
    def _neighbour(self, parents: list[Genome]) -> Genome:
        g = parents[int(self.rng.integers(len(parents)))]
        return self.swap(g) if self.rng.random() < 0.5 else self.mutate(g)

    def candidate_pool(self) -> list[Genome]:
        """Feasible candidates not evaluated before, in a deterministic order (no repeats)."""
        n_local = int(round(self.local * self.pool_size))
        order = np.argsort(-np.asarray(self.targets), kind="stable")[: self.top]
        parents = [self.genomes[int(i)] for i in order]
        pool: dict[Genome, None] = {}
        for _ in range(4 * n_local):  # neighbours of good candidates are often over the budget or seen
            if len(pool) >= n_local:
                break
            g = self._neighbour(parents)
            if g not in pool and self.usable(g):
                pool[g] = None
        want = self.pool_size - len(pool)
        drawn = 0
        while want > 0 and drawn < 20 * self.pool_size and not self._exhausted:
            # uniform draws a batch at a time (one call per batch keeps pools of hundreds cheap)
            batch = (self.rng.random((2 * want, len(self._cards))) * self.cards).astype(np.int64)
            drawn += len(batch)
            for row in batch.tolist():
                g = self.problem.canonical(tuple(row))
                if g not in pool and self.usable(g):
                    pool[g] = None
                    want -= 1
                    if want == 0:
                        break
        return list(pool)

    # ---- ask/tell ----------------------------------------------------------------------
    def ask(self) -> Genome:
        if self.n_told < self.init or len(set(self.targets)) < 2:
            return self.random_feasible()
        pool = self.candidate_pool()
        if not pool:
            return self.random_feasible()
        if len(pool) == 1:
            return pool[0]
        with self._one_thread():
            score = self.acquisition(pool)
        return pool[int(np.argmax(score))]

    def _one_thread(self) -> Any:
        # BLAS on one thread: the same numbers whatever the machine's thread settings (exact
        # replay), and no thread start-up cost on matrices this small
        if self._threads is None:
            from threadpoolctl import ThreadpoolController

            self._threads = ThreadpoolController()
        return self._threads.limit(limits=1, user_api="blas")

    def on_tell(self, genome: Genome, values: Values) -> None:
        if genome in self._index:
            return  # a repeat told again by the loop: the model has it already
        self._index[genome] = len(self.genomes)
        self.genomes.append(genome)
        self.targets.append(surrogate_target(self.problem, values))
        self._rows.append(np.asarray(self.features(np.asarray([genome], dtype=np.int64)), dtype=np.float64)[0])

