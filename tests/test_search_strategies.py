"""The strategies through their ask/tell interface: determinism, repair, early stop, quality.

Quality is judged on a fixed slice of the NAS-Bench-201 table (CIFAR-10 accuracy and the
Pixel 3 latency column, every cell) under the Pixel 3 median-latency budget.
"""

import csv
import os
from pathlib import Path

import numpy as np
import pytest

from hwnas.errors import UserError
from hwnas.search import Problem, drive, list_strategies, make_strategy
from hwnas.search.reinforce import Reinforce
from hwnas.space.nb201 import OPS, parse_cell

ALL = ["random", "evolution", "nsga2", "reinforce", "anneal"]
ROOT = Path(__file__).resolve().parent.parent


def nb201_csv() -> Path:
    base = os.environ.get("HWNAS_SHARED_DATA", str(ROOT.parent / "shared" / "data"))
    return Path(base) / "nb201" / "nb201_acc_latency.csv"


@pytest.fixture(scope="module")
def nb201_arrays():
    path = nb201_csv()
    if not path.is_file():
        pytest.skip(f"NAS-Bench-201 table not found at {path} (set HWNAS_SHARED_DATA)")
    acc = np.zeros(5 ** 6)
    lat = np.zeros(5 ** 6)
    w = 5 ** np.arange(5, -1, -1)
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            c = int(np.dot([OPS.index(o) for o in parse_cell(r["arch_str"])], w))
            acc[c], lat[c] = float(r["c10_test"]), float(r["lat_pixel3"])
    return acc, lat


def code(g):
    return int(np.dot(g, 5 ** np.arange(5, -1, -1)))


def table_problem(acc, lat, budget):
    problem = Problem(cards=(5,) * 6, feasible=lambda g: lat[code(g)] <= budget, latency_budget_ms=budget)

    def evaluate(g):
        return {"accuracy": acc[code(g)] / 100, "latency_ms": float(lat[code(g)])}

    return problem, evaluate


def toy_problem():
    """A synthetic 6x5 landscape: accuracy and latency grow with the genes; budget cuts half."""
    rng = np.random.default_rng(0)
    acc = rng.random(5 ** 6) * 0.1 + 0.8
    lat = np.array([sum(int(d) for d in np.base_repr(c, 5).zfill(6)) for c in range(5 ** 6)], dtype=float)
    return table_problem(acc * 100, lat, 12.0), lat


def test_registry_lists_all_strategies():
    assert set(ALL) <= set(list_strategies())


@pytest.mark.parametrize("name", ALL)
def test_deterministic_for_a_seed(name):
    (problem, evaluate), _ = toy_problem()
    runs = [drive(make_strategy(name, problem, seed, 80), evaluate, 80).genomes for seed in (3, 3, 4)]
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


@pytest.mark.parametrize("name", ALL)
def test_never_evaluates_over_budget_or_twice(name):
    (problem, evaluate), lat = toy_problem()
    asked = []
    res = drive(make_strategy(name, problem, 0, 150), lambda g: asked.append(g) or evaluate(g), 150)
    assert len(res.genomes) == 150
    assert all(lat[code(g)] <= 12.0 for g in asked)
    assert len(set(asked)) == len(asked)


def test_evolution_repairs_mutants_of_a_parent_at_the_budget_edge():
    # genes sum to <= 2: almost every mutant of a feasible parent breaks the budget
    rng_acc = np.linspace(0.5, 0.9, 5 ** 6)
    lat = np.array([sum(int(d) for d in np.base_repr(c, 5).zfill(6)) for c in range(5 ** 6)], dtype=float)
    problem, evaluate = table_problem(rng_acc * 100, lat, 2.0)
    asked = []
    assert sum(lat <= 2.0) == 28
    st = make_strategy("evolution", problem, 1, 25, population=5, sample_size=2)
    res = drive(st, lambda g: asked.append(g) or evaluate(g), 25)
    assert len(res.genomes) == 25 and all(lat[code(g)] <= 2.0 for g in asked)


@pytest.mark.parametrize("name", ["random", "evolution", "anneal", "reinforce", "nsga2"])
def test_drive_stops_when_nothing_new_fits(name):
    # 4 genomes in all, 2 feasible: the run ends early instead of spinning, and once the random
    # draws found nothing new they stop drawing thousands of times per ask
    checks = []
    problem = Problem(cards=(2, 2), feasible=lambda g: checks.append(g) or g[0] == 0)
    st = make_strategy(name, problem, 0, 10, **({"population": 2, "sample_size": 1} if name == "evolution" else {}))
    res = drive(st, lambda g: {"accuracy": 0.5, "latency_ms": 1.0}, 10, max_repeats=20)
    assert sorted(res.genomes) == [(0, 0), (0, 1)]
    assert res.stopped_early
    assert len(checks) < 40_000  # one exhausting search (20,000 draws), then a few hundred per ask


def test_infeasible_everywhere_is_a_user_error():
    problem = Problem(cards=(3, 3), feasible=lambda g: False)
    with pytest.raises(UserError, match="relax"):
        make_strategy("random", problem, 0, 5).ask()


def test_unknown_option_and_bad_values_are_user_errors():
    problem = Problem(cards=(3, 3))
    with pytest.raises(UserError, match="no option"):
        make_strategy("random", problem, 0, 5, population=3)
    with pytest.raises(UserError, match="sample-size"):
        make_strategy("evolution", problem, 0, 5, population=4, sample_size=9)
    with pytest.raises(UserError, match="reward"):
        make_strategy("reinforce", problem, 0, 5, reward="medium")
    with pytest.raises(UserError, match="screen >= 0"):
        make_strategy("evolution", problem, 0, 5, screen=-1)
    with pytest.raises(UserError, match="screen_after >= 1"):
        make_strategy("reinforce", problem, 0, 5, screen_after=0)
    with pytest.raises(UserError, match="unknown strategy"):
        make_strategy("hill-climb", problem, 0, 5)


def test_reinforce_reward_forms():
    problem = Problem(cards=(3, 3), latency_budget_ms=2.0)
    soft = make_strategy("reinforce", problem, 0, 5, reward="soft")
    hard = make_strategy("reinforce", problem, 0, 5, reward="hard")
    assert isinstance(soft, Reinforce)
    v_fast, v_slow = {"accuracy": 0.8, "latency_ms": 1.0}, {"accuracy": 0.8, "latency_ms": 4.0}
    assert soft.reward(v_fast) == pytest.approx(0.8 * 0.5 ** -0.07)
    assert soft.reward(v_slow) == pytest.approx(0.8 * 2.0 ** -0.07)
    assert hard.reward(v_fast) == pytest.approx(0.8)
    assert hard.reward(v_slow) == pytest.approx(0.4)


def test_reinforce_policy_learns_the_rewarded_choice():
    # the reward is the fraction of genes set to choice 2: the policy must come to prefer it
    # (the policy's own gradient, so without the surrogate choosing among its draws)
    problem = Problem(cards=(4,) * 5)
    st = make_strategy("reinforce", problem, 0, 400, screen=0)
    drive(st, lambda g: {"accuracy": sum(x == 2 for x in g) / 5}, 300)
    p = st._probs()
    assert np.all(p.argmax(axis=1) == 2)


def test_reinforce_swap_asks_are_two_gene_exchanges_of_the_best_seen():
    problem = Problem(cards=(5,) * 6)
    st = make_strategy("reinforce", problem, 0, 100, batch_size=2, elite=2, swap_prob=1.0)
    for g, a in [((0, 1, 2, 3, 4, 0), 0.9), ((4, 4, 4, 4, 4, 4), 0.1), ((1, 1, 0, 0, 2, 2), 0.8), ((3, 3, 3, 3, 3, 3), 0.2)]:
        st.tell(g, {"accuracy": a})
    elites = [e[1] for e in st.elites]
    assert sorted(elites) == [(0, 1, 2, 3, 4, 0), (1, 1, 0, 0, 2, 2)]
    for _ in range(30):
        g = st.ask()
        assert g not in st.known
        assert any(sorted(g) == sorted(e) and sum(x != y for x, y in zip(g, e)) == 2 for e in elites)
    # without swaps the policy's draws are not all such exchanges
    st0 = make_strategy("reinforce", problem, 0, 100, batch_size=2, elite=2, swap_prob=0.0)
    for g in elites:
        st0.tell(g, {"accuracy": 0.9})
    draws = [st0.ask() for _ in range(30)]
    assert not all(any(sorted(g) == sorted(e) for e in elites) for g in draws)


@pytest.mark.parametrize("name", ["evolution", "nsga2", "reinforce", "anneal"])
def test_beats_random_on_nb201_slice(nb201_arrays, name):
    """Single-objective strategies by median regret, NSGA-II by what it optimizes: the
    hypervolume of the (accuracy, latency) front under the budget; 16 seeds, 300 evaluations."""
    from hwnas.search import hypervolume

    acc, lat = nb201_arrays
    budget = float(np.percentile(lat, 50))
    problem, evaluate = table_problem(acc, lat, budget)
    best = acc[lat <= budget].max()
    ref = [-80.0, budget * (1 + 1e-9)]

    def score(strategy):
        scores = []
        for seed in range(16):
            res = drive(make_strategy(strategy, problem, seed, 300), evaluate, 300)
            assert all(v["latency_ms"] <= budget for v in res.values)
            if name == "nsga2":
                F = np.array([[-100 * v["accuracy"], v["latency_ms"]] for v in res.values])
                scores.append(-hypervolume(F, ref))
            else:
                scores.append(best - 100 * max(v["accuracy"] for v in res.values))
        return float(np.median(scores))

    assert score(name) < score("random")


@pytest.mark.parametrize("space_name", ["nb201", "mbv3-32"])
def test_cost_model_term_sum_equals_whole_network(space_name):
    import torch

    from hwnas.search.objectives import CostModel
    from hwnas.space import get_space

    torch.set_num_threads(1)
    space = get_space(space_name)
    fast, whole = CostModel(space), CostModel(space, whole=True)
    archs = [space.sample(seed) for seed in range(2)]
    if space_name == "nb201":  # a zero node read by two convolutions, one folded shift each
        archs.append(space.parse("|none~0|+|nor_conv_1x1~0|nor_conv_3x3~1|+|avg_pool_3x3~0|nor_conv_1x1~1|nor_conv_1x1~2|"))
    for arch in archs:
        assert fast(arch) == whole(arch)


def test_swap_exchanges_two_genes_of_the_same_kind():
    problem = Problem(cards=(5, 5, 3, 5, 1))
    st = make_strategy("evolution", problem, 0, 10)
    g = (0, 1, 2, 3, 0)
    for _ in range(50):
        s = st.swap(g)
        changed = [i for i in range(5) if s[i] != g[i]]
        assert len(changed) == 2 and 2 not in changed and 4 not in changed
        assert sorted(s) == sorted(g)
    assert st.swap((4, 4, 1, 4, 0)) == (4, 4, 1, 4, 0)  # nothing to exchange
