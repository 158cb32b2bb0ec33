"""Pareto fronts, non-dominated sorting, crowding distance and hypervolume.

Everything here works on a matrix ``F`` of shape (n, m) in which every objective is to be
*minimized*; callers negate maximized objectives (accuracy) first (see ``to_minimization``).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def to_minimization(values: np.ndarray, maximize: Sequence[bool]) -> np.ndarray:
    F = np.asarray(values, dtype=np.float64).copy()
    for j, mx in enumerate(maximize):
        if mx:
            F[:, j] = -F[:, j]
    return F


def dominates(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(np.all(a <= b) and np.any(a < b))


def non_dominated_mask(F: np.ndarray) -> np.ndarray:
    """True for points no other point dominates (duplicates of a front point are all kept)."""
    F = np.asarray(F, dtype=np.float64)
    n = len(F)
    if n == 0:
        return np.zeros(0, dtype=bool)
    le = np.all(F[:, None, :] <= F[None, :, :], axis=2)  # le[i, j]: i <= j everywhere
    lt = np.any(F[:, None, :] < F[None, :, :], axis=2)
    dominated = np.any(le & lt, axis=0)
    return ~dominated


def pareto_front_2d(F: np.ndarray) -> np.ndarray:
    """Indices of the non-dominated points of a 2-objective matrix, O(n log n)."""
    F = np.asarray(F, dtype=np.float64)
    order = np.lexsort((F[:, 1], F[:, 0]))
    keep = []
    best_y = np.inf
    prev = None
    for i in order:
        x, y = F[i]
        if y < best_y:
            keep.append(i)
            best_y = y
            prev = (x, y)
        elif prev is not None and x == prev[0] and y == prev[1]:
            keep.append(i)  # an exact duplicate of a front point
    return np.array(sorted(keep), dtype=np.int64)


def non_dominated_sort(F: np.ndarray) -> list[np.ndarray]:
    """Fronts (arrays of indices), best first: NSGA-II's fast non-dominated sort."""
    F = np.asarray(F, dtype=np.float64)
    n = len(F)
    if n == 0:
        return []
    le = np.all(F[:, None, :] <= F[None, :, :], axis=2)
    lt = np.any(F[:, None, :] < F[None, :, :], axis=2)
    dom = le & lt  # dom[i, j]: i dominates j
    count = dom.sum(axis=0)  # how many dominate j
    fronts = []
    current = np.flatnonzero(count == 0)
    remaining = count.copy()
    while len(current):
        fronts.append(current)
        remaining[current] = -1
        remaining = remaining - dom[current].sum(axis=0)
        remaining[np.concatenate(fronts)] = -1
        current = np.flatnonzero(remaining == 0)
    return fronts


def crowding_distance(F: np.ndarray) -> np.ndarray:
    """NSGA-II crowding distance of the points of one front (boundary points get inf)."""
    F = np.asarray(F, dtype=np.float64)
    n, m = F.shape
    d = np.zeros(n)
    if n <= 2:
        return np.full(n, np.inf)
    for j in range(m):
        order = np.argsort(F[:, j], kind="stable")
        lo, hi = F[order[0], j], F[order[-1], j]
        d[order[0]] = d[order[-1]] = np.inf
        if hi > lo:
            d[order[1:-1]] += (F[order[2:], j] - F[order[:-2], j]) / (hi - lo)
    return d


def hypervolume(F: np.ndarray, ref: Sequence[float]) -> float:
    """Volume dominated by the points of ``F`` and bounded by the reference point ``ref``.

    Points that do not strictly dominate ``ref`` contribute nothing. Exact: a sweep in 2-D,
    slicing along the last objective (HSO) in more dimensions; meant for fronts of at most a
    few hundred points.
    """
    F = np.asarray(F, dtype=np.float64)
    r = np.asarray(ref, dtype=np.float64)
    if F.size == 0:
        return 0.0
    F = F[np.all(F < r, axis=1)]
    if len(F) == 0:
        return 0.0
    F = F[non_dominated_mask(F)]
    return _hv(F, r)


def _hv(F: np.ndarray, r: np.ndarray) -> float:
    m = F.shape[1]
    if m == 1:
        return float(r[0] - F[:, 0].min())
    if m == 2:
        order = np.argsort(F[:, 0], kind="stable")
        vol = 0.0
        best_y = r[1]
        for i in order:
            x, y = F[i]
            if y < best_y:
                vol += (r[0] - x) * (best_y - y)
                best_y = y
        return float(vol)
    # slice along the last objective: between consecutive levels the dominated region is the
    # (m-1)-dimensional hypervolume of the points at or below the level
    order = np.argsort(F[:, -1], kind="stable")
    levels = F[order, -1]
    vol = 0.0
    for k in range(len(order)):
        upper = levels[k + 1] if k + 1 < len(order) else r[-1]
        if upper <= levels[k]:
            continue
        sub = F[order[: k + 1], :-1]
        sub = sub[non_dominated_mask(sub)]
        vol += _hv(sub, r[:-1]) * (upper - levels[k])
    return float(vol)
