"""A Bayesian linear surrogate that picks which of several candidates to evaluate next.

``evolution`` and ``reinforce`` use it to screen their own proposals (``Strategy.screened``):
each ask, the strategy proposes ``screen`` candidates the usual way (tournament children, policy
draws) and ``screen_random`` uniform feasible ones, and the one with the highest upper
confidence bound ``mean + beta * std`` of this model is evaluated. The model is a ridge
regression over the space's genome features (``SearchSpace.genome_features``: one-hot choices,
plus for ``nb201`` the operations along each input-to-output path) fitted to everything told
so far; ``std`` is its posterior standard deviation, which is large for feature combinations
not seen yet. This is what OFA's evolution finder does with its accuracy predictor and what
predictor-guided NAS (BANANAS, White et al. 2021) does with path encodings, kept to what is
cheap to refit on every ask: the sufficient statistics are updated on each tell, and a refit
is one solve of a (features + 1)-square system.

Accuracy is modelled as ``-log(1 - accuracy + 0.005)``: errors shrink by factors as cells get
better, so the differences that matter near the top (tenths of a point) are not drowned by
the tens of points between a broken cell and a working one.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np

from hwnas.search.problem import Genome, Problem, Values
from hwnas.space.base import one_hot_features  # noqa: F401  (the default features; re-exported)

FeatureFn = Callable[[np.ndarray], np.ndarray]


class LinearUCB:
    """Ridge regression with an intercept on features, refitted from running sums.

    ``add`` takes one observation; ``ucb`` scores candidates. Prior precision ``lam`` on every
    weight; the noise variance is the fit's residual variance.
    """

    def __init__(self, features: FeatureFn, n_features: int, lam: float = 1.0) -> None:
        self.features = features
        self.lam = float(lam)
        d = n_features + 1  # + intercept column
        self.n = 0
        self.sum_y = 0.0
        self.sum_yy = 0.0
        self.sum_x = np.zeros(d)
        self.xtx = np.zeros((d, d))
        self.xty = np.zeros(d)

    def _design(self, genomes: Sequence[Genome]) -> np.ndarray:
        X = self.features(np.asarray(genomes, dtype=np.int64))
        return np.hstack([X, np.ones((len(X), 1))])

    def add(self, genome: Genome, y: float) -> None:
        x = self._design([genome])[0]
        self.n += 1
        self.sum_y += y
        self.sum_yy += y * y
        self.sum_x += x
        self.xtx += np.outer(x, x)
        self.xty += x * y

    def fit(self) -> tuple[np.ndarray, np.ndarray, float]:
        """(weights, inverse posterior precision, noise variance) for y centred on its mean."""
        mu = self.sum_y / self.n
        A = self.xtx + self.lam * np.eye(len(self.xty))
        Ai = np.linalg.inv(A)
        b = self.xty - mu * self.sum_x  # X^T (y - mu)
        w = Ai @ b
        # residual sum of squares of (y - mu) - X w, from the sums
        rss = (self.sum_yy - self.n * mu * mu) - 2.0 * float(w @ b) + float(w @ self.xtx @ w)
        s2 = max(rss / max(self.n - 1, 1), 1e-6)
        return w, Ai, s2

    def ucb(self, genomes: Sequence[Genome], beta: float) -> np.ndarray:
        """Posterior mean plus ``beta`` posterior standard deviations, per candidate (the common
        offset, y's mean, left out: only the order matters)."""
        w, Ai, s2 = self.fit()
        X = self._design(genomes)
        mean = X @ w
        var = np.einsum("ij,jk,ik->i", X, Ai, X) * s2
        return mean + beta * np.sqrt(np.maximum(var, 0.0))


def surrogate_target(problem: Problem, values: Values) -> float:
    """What the surrogate models: log error for an accuracy in [0, 1], else the fitness."""
    o = problem.objectives[0]
    v = float(values[o.name])
    if o.name == "accuracy" and 0.0 <= v <= 1.0:
        return -math.log(1.0 - v + 0.005)
    return problem.fitness(values)
