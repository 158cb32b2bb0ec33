"""The surrogate that screens evolution's and REINFORCE's proposals: the model, the nb201 path
encoding, and what screening may and may not return."""

import numpy as np
import pytest

from hwnas.search import Problem, drive, make_strategy
from hwnas.search.surrogate import LinearUCB, one_hot_features, surrogate_target
from hwnas.space import get_space
from hwnas.space.nb201 import OPS, PATH_FEATURES, path_features


def test_one_hot_features_mark_one_column_per_decision():
    f = one_hot_features([2, 3, 4])
    X = f(np.array([[1, 0, 3], [0, 2, 0]]))
    assert X.shape == (2, 9)
    assert X[0].nonzero()[0].tolist() == [1, 2, 8]
    assert X[1].nonzero()[0].tolist() == [0, 4, 5]


def test_running_sums_give_the_batch_ridge_fit():
    rng = np.random.default_rng(0)
    cards = [3, 4, 2]
    feats = one_hot_features(cards)
    model = LinearUCB(feats, sum(cards), lam=0.5)
    G = [tuple(int(rng.integers(c)) for c in cards) for _ in range(40)]
    y = rng.normal(size=len(G))
    for g, v in zip(G, y):
        model.add(g, float(v))
    w, Ai, s2 = model.fit()
    X = np.hstack([feats(np.array(G)), np.ones((len(G), 1))])
    yc = y - y.mean()
    w_ref = np.linalg.solve(X.T @ X + 0.5 * np.eye(X.shape[1]), X.T @ yc)
    assert np.allclose(w, w_ref)
    res = yc - X @ w_ref
    assert s2 == pytest.approx(float(res @ res) / (len(y) - 1))


def test_ucb_ranks_a_linear_landscape_and_prefers_the_unseen():
    cards = [4] * 4
    feats = one_hot_features(cards)
    model = LinearUCB(feats, 16, lam=1e-3)
    rng = np.random.default_rng(1)
    value = np.array([0.0, 1.0, 2.0, 0.5])  # choice 2 is best for every gene
    seen = set()
    for _ in range(60):
        g = tuple(int(x) for x in rng.integers(0, 3, size=4))  # choice 3 never seen
        seen.add(g)
        model.add(g, float(value[list(g)].sum() + rng.normal() * 0.01))
    cand = [(2, 2, 2, 2), (1, 1, 1, 1), (0, 0, 0, 0)]
    m = model.ucb(cand, beta=0.0)
    assert m[0] > m[1] > m[2]
    # same mean, but a choice never seen has the larger posterior spread
    known, novel = (2, 2, 2, 0), (2, 2, 2, 3)
    spread = model.ucb([known, novel], beta=1.0) - model.ucb([known, novel], beta=0.0)
    assert spread[1] > 5 * spread[0]


def test_surrogate_target_is_log_error_for_accuracy():
    p = Problem(cards=(2,))
    assert surrogate_target(p, {"accuracy": 0.9}) > surrogate_target(p, {"accuracy": 0.8})
    assert surrogate_target(p, {"accuracy": 0.995}) == pytest.approx(-np.log(0.01))


def test_nb201_path_features_by_hand():
    g = np.array([[OPS.index("nor_conv_3x3"), 0, 0, 0, OPS.index("skip_connect"), 0]])  # 0->1 conv, 1->3 skip
    X = path_features(g)
    assert X.shape == (1, PATH_FEATURES)
    # path 0->1->3 (second path, columns 4-19): (conv3x3, skip) = (2, 0) in ops-without-none
    assert X[0].nonzero()[0].tolist() == [4 + 2 * 4 + 0]
    # a dead edge (into node 2, which feeds nothing) changes no path feature
    dead = g.copy()
    dead[0, 1] = OPS.index("nor_conv_1x1")  # 0->2, but 2->3 is none
    assert np.array_equal(path_features(dead), X)
    # ... but the one-hot part of the space's features sees it
    space = get_space("nb201")
    assert not np.array_equal(space.genome_features(dead), space.genome_features(g))
    # every edge a 3x3 conv: all four paths live
    assert path_features(np.full((1, 6), OPS.index("nor_conv_3x3"))).sum() == 4
    assert path_features(np.zeros((1, 6), dtype=int)).sum() == 0


@pytest.mark.parametrize("name", ["evolution", "reinforce"])
def test_screened_asks_are_new_and_feasible_and_change_the_choice(name):
    rng = np.random.default_rng(0)
    acc = rng.random(5 ** 6) * 0.2 + 0.7
    w = 5 ** np.arange(5, -1, -1)
    cost = np.array([sum(int(d) for d in np.base_repr(c, 5).zfill(6)) for c in range(5 ** 6)], dtype=float)
    problem = Problem(cards=(5,) * 6, feasible=lambda g: cost[int(np.dot(g, w))] <= 12)

    def evaluate(g):
        return {"accuracy": float(acc[int(np.dot(g, w))])}

    asked = []
    st = make_strategy(name, problem, 0, 120)
    drive(st, lambda g: asked.append(g) or evaluate(g), 120)
    assert len(set(asked)) == 120 and all(cost[int(np.dot(g, w))] <= 12 for g in asked)
    off = make_strategy(name, problem, 0, 120, screen=0)
    plain = drive(off, evaluate, 120).genomes
    # the first screen_after asks are the same draws; afterwards the surrogate picks others
    after = int(st.options["screen_after"])
    assert asked[:after] == plain[:after]
    assert asked[after:] != plain[after:]
