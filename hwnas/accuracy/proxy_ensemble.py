"""``zc:ensemble``: several zero-cost proxies combined by rank, needing no trained network.

Each proxy's value is turned into its rank among a fixed reference sample of the space (random
archs drawn with a seeded generator, scored once and cached like any other arch), and the
ensemble is the sum of the log ranks, as AZ-NAS aggregates its proxies (Lee and Ham, CVPR
2024): an arch must do well on every proxy, and one proxy's outlier cannot carry it. Ranks
against a fixed sample, rather than among the archs being scored, make the score a function
of the arch alone, so a search that scores one candidate at a time sees the same values as a
benchmark that scores thousands at once.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from hwnas.space import Arch

if TYPE_CHECKING:
    from hwnas.accuracy.zc_evaluator import ProxyScorer

ENSEMBLE_NAME = "ensemble"
# chosen on NAS-Bench-201 CIFAR-10 (benchmarks/accuracy_nb201.py): of all sums of 2-4 proxies'
# log ranks, the best on 300 tuning cells (tau 0.79 there, 0.788 on the 1,000 evaluation cells):
# size (FLOPs) and how differently the net responds to different images (jacov) carry
# different signals, and sums with more proxies add correlated ones
ENSEMBLE_PROXIES = ("flops", "jacov")
REFERENCE_ARCHS = 128
REFERENCE_SEED = 20_240_601


def distinct_archs(space: Any, n: int, seed: int) -> list[Arch]:
    """Up to ``n`` distinct random archs of ``space`` drawn with ``random.Random(seed)`` (fewer
    where 50 n draws find fewer: a small space), in the order first drawn."""
    rng = random.Random(seed)
    seen: dict[str, Arch] = {}
    for _ in range(n * 50):
        a = space.sample(rng)
        seen.setdefault(a.id, a)
        if len(seen) == n:
            break
    return list(seen.values())


def reference_sample(space: Any, n: int = REFERENCE_ARCHS, seed: int = REFERENCE_SEED) -> list[Arch]:
    """The ensemble's fixed reference sample: ``n`` distinct random archs, always the same."""
    return distinct_archs(space, n, seed)


def log_ranks(values: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """log of each value's mid-rank among ``reference`` (per column), in (log 1/(R+1), 0]."""
    values, reference = np.atleast_2d(values), np.atleast_2d(reference)
    out = np.empty(values.shape)
    R = reference.shape[0]
    for j in range(values.shape[1]):
        ref = np.sort(reference[:, j])
        below = np.searchsorted(ref, values[:, j], side="left")
        not_above = np.searchsorted(ref, values[:, j], side="right")
        out[:, j] = np.log((below + not_above) / 2.0 + 1.0) - np.log(R + 1.0)
    return out


class ProxyEnsemble:
    def __init__(self, scorer: "ProxyScorer", proxies: Sequence[str] = ENSEMBLE_PROXIES,
                 reference: int = REFERENCE_ARCHS) -> None:
        self.scorer, self.proxies, self.n_reference = scorer, tuple(proxies), reference
        self._reference: np.ndarray | None = None

    def reference_values(self) -> np.ndarray:
        if self._reference is None:
            archs = reference_sample(self.scorer.space, self.n_reference)
            self._reference = self.scorer.values(archs, self.proxies)
        return self._reference

    def score(self, archs: Sequence[Arch]) -> np.ndarray:
        ref = self.reference_values()
        return log_ranks(self.scorer.values(archs, self.proxies), ref).sum(axis=1)

    def describe(self) -> dict[str, Any]:
        return {"proxies": list(self.proxies), "reference_archs": self.n_reference, "reference_seed": REFERENCE_SEED}
