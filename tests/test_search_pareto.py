"""Pareto sorting, crowding distance and hypervolume against hand-computed cases and brute force."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwnas.search.pareto import (crowding_distance, hypervolume, non_dominated_mask, non_dominated_sort,
                                 pareto_front_2d, to_minimization)


def test_non_dominated_mask_hand_case():
    F = np.array([[1, 3], [2, 2], [3, 1], [2, 3], [3, 3], [1, 3]])
    # (2,3) and (3,3) are dominated; the duplicate (1,3) stays on the front
    assert non_dominated_mask(F).tolist() == [True, True, True, False, False, True]
    assert pareto_front_2d(F).tolist() == [0, 1, 2, 5]


def test_non_dominated_sort_layers():
    F = np.array([[1, 1], [2, 2], [3, 3], [1, 2], [2, 1]])
    fronts = [sorted(f.tolist()) for f in non_dominated_sort(F)]
    # (1,2) and (2,1) are beaten only by (1,1); (2,2) by those two; (3,3) by everything
    assert fronts == [[0], [3, 4], [1], [2]]


def test_crowding_distance_hand_case():
    F = np.array([[0.0, 4.0], [1.0, 2.0], [2.0, 1.0], [4.0, 0.0]])
    d = crowding_distance(F)
    assert np.isinf(d[0]) and np.isinf(d[3])
    # point 1: (2-0)/4 + (4-1)/4 = 1.25; point 2: (4-1)/4 + (2-0)/4 = 1.25
    assert d[1] == pytest.approx(1.25) and d[2] == pytest.approx(1.25)


def test_hypervolume_2d_hand_case():
    F = np.array([[1, 3], [2, 2], [3, 1]])
    assert hypervolume(F, [4, 4]) == pytest.approx(6.0)
    # a dominated point and a point outside the reference box change nothing
    assert hypervolume(np.vstack([F, [[3, 3], [5, 0]]]), [4, 4]) == pytest.approx(6.0)
    assert hypervolume(np.zeros((0, 2)), [1, 1]) == 0.0


def test_hypervolume_3d_hand_case():
    assert hypervolume(np.array([[1, 1, 1]]), [2, 3, 4]) == pytest.approx(6.0)
    # boxes of volume 4 and 2 overlapping in a unit cube
    assert hypervolume(np.array([[0, 0, 1], [1, 1, 0]]), [2, 2, 2]) == pytest.approx(5.0)


def test_to_minimization_negates_maximized():
    F = to_minimization(np.array([[0.9, 3.0]]), [True, False])
    assert F.tolist() == [[-0.9, 3.0]]


def _grid_volume(points, ref):
    """Brute force: count unit cells dominated by some point (integer coordinates)."""
    ranges = [range(0, r) for r in ref]
    count = 0
    for cell in np.array(np.meshgrid(*ranges, indexing="ij")).reshape(len(ref), -1).T:
        if any(np.all(p <= cell) for p in points):
            count += 1
    return count


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 5), st.integers(0, 5)), min_size=1, max_size=7))
def test_hypervolume_matches_brute_force(points):
    P = np.array(points, dtype=float)
    ref = (6, 6, 6)
    assert hypervolume(P, ref) == pytest.approx(_grid_volume(P, ref))
    # the 2-D sweep against the same brute force on the first two objectives
    assert hypervolume(P[:, :2], ref[:2]) == pytest.approx(_grid_volume(P[:, :2], ref[:2]))
