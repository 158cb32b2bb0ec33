"""gdas and darts: the expected latency from a device table, a tiny search on digits, resume from
its epoch checkpoint, the run folder `hwnas export` reads, and the refusals of bad input."""

import functools
import json
import random

import numpy as np
import pytest
import torch

from conftest import run_cli
from latency_helpers import FAST

from hwnas.search import run
from hwnas.space import get_space

SETTINGS = {"channels": [8, 16, 16], "cells_per_stage": 1, "image_size": 8}  # digits at their native 8x8
FILES = ["config.json", "journal.jsonl", "pareto.json", "best.json", "pareto.png", "oneshot.ckpt"]
QUICK = {"data": "digits", "threads": 1, "batch_size": 32, "lr": 0.1, "arch_lr": 0.01}


def tiny_space():
    return get_space("nb201", **SETTINGS)


@pytest.fixture(scope="module")
def profile_path(tmp_path_factory):
    """A real table of the tiny space, measured on eager torch with the fast protocol."""
    from hwnas.latency.backends import get_backend
    from hwnas.latency.profiler import profile

    out = tmp_path_factory.mktemp("oneshot") / "tiny-nb201.json"
    profile(tiny_space(), get_backend("torch-cpu", threads=1), out, n_calibrate=4, n_validate=0, protocol=FAST)
    return out


@pytest.fixture(scope="module")
def recalibrated(profile_path, tmp_path_factory):
    """The same table with every calibration term non-trivial: a scale per op kind, a time per
    block, a time per activation megabyte, an offset."""
    d = json.loads(profile_path.read_text())
    rng = random.Random(7)
    ops = sorted({e["op"] for e in d["entries"]})
    d["calibration"].update({"scale": 0.9, "offset_ms": 0.013, "ms_per_act_mb": 0.37,
                             "op_scales": {op: rng.uniform(0.5, 1.5) for op in ops},
                             "op_block_ms": {op: rng.uniform(-0.002, 0.01) for op in ops}})
    for e in d["entries"]:
        e["act_mb"] = rng.uniform(0.0, 0.05)
    out = tmp_path_factory.mktemp("oneshot") / "recalibrated.json"
    out.write_text(json.dumps(d))
    return out


@functools.lru_cache(maxsize=None)
def _expected(path):
    from hwnas.latency.sources import get_latency_model
    from hwnas.search.oneshot.latency import ExpectedLatency

    space = tiny_space()
    model = get_latency_model(str(path), space)
    return space, model.predictor, ExpectedLatency(space, model)


def expected_latency(path):
    return _expected(str(path))


def one_hot(genome):
    return torch.nn.functional.one_hot(torch.tensor(genome), 5).double()


@pytest.mark.parametrize("table", ["profile_path", "recalibrated"])
def test_expected_latency_equals_the_tables_prediction_for_one_hot_probabilities(table, request):
    space, predictor, E = expected_latency(request.getfixturevalue(table))
    rng = random.Random(0)
    genomes = [space.encode(space.smallest()), space.encode(space.largest())]
    genomes += [[rng.randrange(5) for _ in range(6)] for _ in range(40)]
    for g in genomes:
        want = predictor.predict(space.decode(g))
        assert float(E(one_hot(g))) == want, g
    # a mixture is the probability-weighted mean of the cells' predictions, not one cell's
    p = torch.full((6, 5), 0.2, dtype=torch.float64)
    assert float(E(p)) == pytest.approx(float(E.latencies.mean()), rel=1e-12)
    assert E.latencies.min() < float(E(p)) < E.latencies.max()


def test_gradient_moves_probability_to_cheaper_choices(profile_path):
    from hwnas.search.oneshot.latency import latency_penalty
    from hwnas.space.nb201 import OPS

    _, _, E = expected_latency(profile_path)
    alpha = torch.zeros(6, 5, dtype=torch.float64, requires_grad=True)
    budget = float(np.quantile(E.latencies, 0.2))
    before = E(alpha.softmax(-1))
    loss = latency_penalty(before, budget, 1.0)
    assert loss.item() > 0
    loss.backward()
    g = alpha.grad
    assert torch.all(g.abs().sum(-1) > 0), "every edge's logits get a gradient"
    conv3, none = OPS.index("nor_conv_3x3"), OPS.index("none")
    assert torch.all(g[:, conv3] > 0) and torch.all(g[:, none] < 0), g  # descent: less 3x3 convolution, more "none"
    with torch.no_grad():
        after = E((alpha - 0.5 * g / g.abs().max()).softmax(-1))
    assert after.item() < before.item()
    # inside the budget the penalty is zero and pulls nowhere
    alpha.grad = None
    inside = latency_penalty(E(alpha.softmax(-1)), float(E.latencies.max()), 1.0)
    inside.backward()
    assert inside.item() == 0 and torch.all(alpha.grad == 0)


def test_the_multiplicative_form_pulls_towards_cheaper_choices_inside_the_budget_too(profile_path):
    from hwnas.search.oneshot.latency import with_latency_loss
    from hwnas.search.oneshot.methods import DEFAULT_LAMBDA, OneShotOptions
    from hwnas.space.nb201 import OPS

    _, _, E = expected_latency(profile_path)
    ce = torch.tensor(1.7, dtype=torch.float64)
    at = torch.tensor(2.0, dtype=torch.float64)
    # MnasNet's form: the loss itself at the budget, scaled by (E / T) ** lambda elsewhere
    assert with_latency_loss(ce, at, 2.0, "multiplicative", 0.07).item() == pytest.approx(1.7)
    assert with_latency_loss(ce, 2 * at, 2.0, "multiplicative", 0.07).item() == pytest.approx(1.7 * 2 ** 0.07)
    assert with_latency_loss(ce, at, 1.0, "penalty", 1.0).item() == pytest.approx(1.7 + 1.0)
    # the hard form: the loss itself within the budget, the soft form's factor over it
    assert with_latency_loss(ce, at, 4.0, "multiplicative-hard", 1.0).item() == pytest.approx(1.7)
    assert with_latency_loss(ce, 2 * at, 2.0, "multiplicative-hard", 1.0).item() == pytest.approx(1.7 * 2)
    for budget in (float(np.quantile(E.latencies, 0.2)), float(E.latencies.max())):  # over it, then inside it
        alpha = torch.zeros(6, 5, dtype=torch.float64, requires_grad=True)
        before = E(alpha.softmax(-1))
        with_latency_loss(ce, before, budget, "multiplicative", 0.07).backward()
        g = alpha.grad
        assert torch.all(g[:, OPS.index("none")] < 0), g  # descent: more of the free operation on every edge
        with torch.no_grad():
            assert E((alpha - 0.5 * g / g.abs().max()).softmax(-1)).item() < before.item()
    alpha = torch.zeros(6, 5, dtype=torch.float64, requires_grad=True)  # the hard form pulls nowhere inside
    with_latency_loss(ce, E(alpha.softmax(-1)), float(E.latencies.max()), "multiplicative-hard", 1.0).backward()
    assert torch.all(alpha.grad == 0)
    opts = OneShotOptions(latency_form="multiplicative")
    assert opts.latency_lambda == DEFAULT_LAMBDA["multiplicative"] == 0.07
    assert opts.identity()["latency_form"] == "multiplicative"
    # the penalty is the default and, as in run folders from before the choice, not named
    assert OneShotOptions().latency_lambda == 1.0 and "latency_form" not in OneShotOptions().identity()
    assert OneShotOptions(latency_lambda=3.0, latency_form="multiplicative").latency_lambda == 3.0
    assert OneShotOptions(latency_form="multiplicative-hard").latency_lambda == 1.0


def test_the_absolute_form_pulls_the_expected_latency_to_the_budget_from_both_sides(profile_path):
    from hwnas.search.oneshot.latency import with_latency_loss
    from hwnas.search.oneshot.methods import DEFAULT_LAMBDA, OneShotOptions

    _, _, E = expected_latency(profile_path)
    ce = torch.tensor(1.7, dtype=torch.float64)
    # TuNAS' absolute reward as a loss: lambda * |E / T - 1| on top of the loss, 0 exactly at the budget
    assert with_latency_loss(ce, torch.tensor(3.0, dtype=torch.float64), 2.0, "absolute", 0.5).item() == pytest.approx(1.7 + 0.25)
    assert with_latency_loss(ce, torch.tensor(1.0, dtype=torch.float64), 2.0, "absolute", 0.5).item() == pytest.approx(1.7 + 0.25)
    assert with_latency_loss(ce, torch.tensor(2.0, dtype=torch.float64), 2.0, "absolute", 0.5).item() == pytest.approx(1.7)
    uniform = E(torch.full((6, 5), 0.2, dtype=torch.float64)).item()
    for budget, direction in ((0.6 * uniform, -1), (1.4 * uniform, +1)):  # over the budget down, under it up
        alpha = torch.zeros(6, 5, dtype=torch.float64, requires_grad=True)
        before = E(alpha.softmax(-1))
        with_latency_loss(ce, before, budget, "absolute", 1.0).backward()
        g = alpha.grad
        assert g.abs().sum() > 0
        with torch.no_grad():
            after = E((alpha - 0.5 * g / g.abs().max()).softmax(-1)).item()
        assert direction * (after - before.item()) > 0, (budget, before.item(), after)
    assert OneShotOptions(latency_form="absolute").latency_lambda == DEFAULT_LAMBDA["absolute"] == 1.0
    assert OneShotOptions(latency_form="absolute").identity()["latency_form"] == "absolute"


def test_warm_up_epochs_hold_the_logits_then_release_them(profile_path, tmp_path):
    from hwnas.search.oneshot.methods import OneShotOptions

    out = tmp_path / "warm"
    res, budget = search(profile_path, out, epochs=3, strategy_options_extra={"warmup_epochs": 2})
    journal = [json.loads(line) for line in (out / "journal.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in journal] == [1, 2, 3, 3]
    p1, p2, p3 = (np.array(r["probs"]) for r in journal[:3])
    # the logits start at 1e-3 * N(0, 1): near uniform, and untouched through both warm-up epochs
    assert np.allclose(p1, 0.2, atol=2e-3) and np.array_equal(p1, p2)
    assert np.abs(p3 - p2).max() > 1e-3  # the first epoch after it moves them
    assert journal[1]["loss"] < journal[0]["loss"]  # the weights trained meanwhile
    assert json.loads((out / "config.json").read_text())["strategy"]["warmup_epochs"] == 2
    assert res.best["latency_ms"] <= budget
    # a run without warm-up names no such option, as run folders from before it
    assert "warmup_epochs" not in OneShotOptions().identity()


def test_most_probable_arch_within_the_budget_is_exact(profile_path):
    _, _, E = expected_latency(profile_path)
    rng = np.random.default_rng(3)
    log_p = np.log(rng.dirichlet(np.ones(5), size=6))
    log_p[:, 3] += 2.0  # a distribution that favours 3x3 convolutions everywhere: its argmax is expensive
    budget = float(np.quantile(E.latencies, 0.3))
    g = E.most_probable_within(log_p, budget)
    assert E.of_genome(g) <= budget
    score = log_p[np.arange(6), E.genomes].sum(1)
    feasible = E.latencies <= budget
    assert np.isclose(score[feasible].max(), log_p[np.arange(6), list(g)].sum())
    assert E.of_genome(tuple(log_p.argmax(-1))) > budget  # so the repair had something to do
    assert E.most_probable_within(log_p, float(E.latencies.min()) / 2) is None


def search(profile_path, out, method="gdas", epochs=4, budget=None, strategy_options_extra=None, **kw):
    _, _, E = expected_latency(profile_path)
    budget = budget if budget is not None else float(np.quantile(E.latencies, 0.4))
    return run(space="nb201", profile=str(profile_path), latency_budget_ms=budget, evaluator="", strategy=method,
               strategy_options={**QUICK, "epochs": epochs, **(strategy_options_extra or {})}, space_settings=SETTINGS,
               seed=1, out=out, **kw), budget


def test_tiny_gdas_run_on_digits_lowers_the_loss_and_meets_the_budget(profile_path, tmp_path):
    from hwnas.exporters.run_export import _space, pick_arch, read_run

    out = tmp_path / "gdas"
    res, budget = search(profile_path, out)
    assert sorted(p.name for p in out.iterdir()) == sorted(FILES)
    journal = [json.loads(line) for line in (out / "journal.jsonl").read_text().splitlines()]
    assert [r["kind"] for r in journal] == ["argmax"] * 4 + ["final"]
    assert [r["i"] for r in journal] == list(range(5)) and [r["epoch"] for r in journal] == [1, 2, 3, 4, 4]
    assert journal[-2]["loss"] < journal[0]["loss"]  # the supernet learned
    best = json.loads((out / "best.json").read_text())
    final = journal[-1]
    assert best["id"] == final["id"] == res.best["id"]
    space = tiny_space()
    arch = space.parse(best["arch"])  # a valid arch of the space
    _, predictor, _ = expected_latency(profile_path)
    assert best["latency_ms"] == predictor.predict(arch) <= budget
    assert 0.0 <= best["accuracy"] <= 1.0 and best["params"] > 0
    assert space.build(arch, num_classes=10)(torch.zeros(2, 3, 8, 8)).shape == (2, 10)
    for r in journal:  # every epoch's probabilities are rows summing to one, the argmax their mode
        p = np.array(r["probs"])
        assert np.allclose(p.sum(1), 1.0, atol=1e-5)
        if r["kind"] == "argmax":  # within the journal's 6-decimal rounding of the probabilities
            assert all(row[g] >= row.max() - 2e-6 for g, row in zip(r["genome"], p))
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["strategy"]["name"] == "gdas" and cfg["strategy"]["kind"] == "oneshot"
    assert cfg["evaluator"]["data"] == "digits" and cfg["budgets"]["latency_budget_ms"] == budget
    # what `hwnas export` reads from a run folder
    r = read_run(out)
    assert pick_arch(r, "best")["id"] == best["id"] and _space(r).config_hash() == space.config_hash()
    # an existing run folder is not overwritten without --force
    from hwnas.errors import UserError

    with pytest.raises(UserError, match="--force"):
        search(profile_path, out)


def test_resume_from_an_epoch_checkpoint_gives_the_same_arch(profile_path, tmp_path):
    from hwnas.search.oneshot.run import run_oneshot
    from hwnas.search.runner import SearchConfig

    full, budget = search(profile_path, tmp_path / "full", method="darts", epochs=3)
    cfg = SearchConfig(space="nb201", profile=str(profile_path), evaluator="", strategy="darts", seed=1, latency_budget_ms=budget,
                       strategy_options={**QUICK, "epochs": 3}, space_settings=SETTINGS)
    cut = tmp_path / "cut"
    steps_per_epoch = (len(__import__("hwnas.data", fromlist=["x"]).load_dataset("digits", image_size=8).train_y) // 2) // 32
    with pytest.raises(KeyboardInterrupt):  # Ctrl-C in the middle of the second epoch
        run_oneshot(cfg, out=cut, stop_after_steps=steps_per_epoch + 3)
    kept = [json.loads(line) for line in (cut / "journal.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in kept] == [1]
    assert not [p for p in cut.iterdir() if p.name.endswith(".tmp")]
    meta = json.loads(torch.load(cut / "oneshot.ckpt", weights_only=True)["meta"])
    assert (meta["epoch"], meta["step"]) == (1, 3)
    resumed = run_oneshot(cfg, out=cut, resume=True)
    assert resumed.resumed_from == 1
    assert resumed.best == full.best
    assert (cut / "journal.jsonl").read_text() == (tmp_path / "full" / "journal.jsonl").read_text()
    # resuming a finished run changes nothing
    again = run_oneshot(cfg, out=cut, resume=True)
    assert again.best == full.best and (cut / "journal.jsonl").read_text() == (tmp_path / "full" / "journal.jsonl").read_text()
    # other settings are refused with what differs
    from hwnas.errors import UserError

    with pytest.raises(UserError, match="different configuration.*epochs"):
        run_oneshot(SearchConfig(**{**cfg.__dict__, "strategy_options": {**QUICK, "epochs": 4}}), out=cut, resume=True)


def test_bad_inputs_are_one_line_exit_2_and_write_nothing(profile_path, tmp_path, capsys):
    from conftest import REPO

    out = tmp_path / "x"
    tiny = ["--space", "nb201", "--space-settings", json.dumps(SETTINGS), "--profile", str(profile_path)]
    # MBConv spaces have a one-shot form too (tests/test_oneshot_mbconv.py); a plain conv chain has none
    other = ["--space", "cnn", "--profile", str(REPO / "profiles" / "mbv3-32_ort-cpu_t1_b1.json")]
    cases = [
        ([*other, "--strategy", "darts"], "space 'cnn' does not have"),
        ([*tiny, "--strategy", "gdas", "--epochs", "0"], "--epochs must be at least 1"),
        ([*tiny, "--strategy", "gdas", "--latency-ms", "0.001"], "below the smallest latency the space reaches"),
        ([*tiny, "--strategy", "gdas", "--resume"], "nothing to resume"),
        ([*tiny, "--strategy", "gdas", "--params-max", "1000"], "latency budget only"),
        ([*tiny, "--strategy", "gdas", "--data", "nosuchdata"], "unknown dataset"),
        ([*tiny, "--strategy", "evolution"], "needs --evaluator"),
        ([*tiny, "--strategy", "evolution", "--evaluator", "train:1", "--epochs", "3"], "does not take --epochs"),
        ([*tiny, "--strategy", "gdass"], "unknown strategy 'gdass'"),
        ([*tiny, "--strategy", "gdas", "--lr", "0"], "lr must be a positive number"),
        ([*tiny, "--strategy", "darts", "--batch-size", "0"], "--batch-size must be at least 1"),
        ([*tiny, "--strategy", "gdas", "--latency-form", "additive"], "--latency-form must be one of penalty, multiplicative, multiplicative-hard"),
        ([*tiny, "--strategy", "gdas", "--latency-form", "multiplicative", "--latency-lambda", "-1"], "--latency-lambda must be 0 or more"),
        ([*tiny, "--strategy", "gdas", "--epochs", "2", "--warmup-epochs", "2"], "--warmup-epochs must be 0 or more and below --epochs (2)"),
        ([*tiny, "--strategy", "darts", "--derive-samples", "-1"], "--derive-samples must be 0 (the argmax) or a number"),
        ([*tiny, "--strategy", "evolution", "--evaluator", "train:1", "--derive-samples", "8"], "does not take --derive-samples"),
        ([*tiny, "--strategy", "evolution", "--evaluator", "train:1", "--lr", "0.1"], "searched with --hparams"),
    ]
    for argv, needle in cases:
        code, _, err = run_cli(capsys, "search", *argv, "--out", str(out))
        assert code == 2, (argv, err)
        assert needle in err and len(err.strip().splitlines()) == 1, err
        assert not out.exists(), "bad input left output behind"


def test_lr_batch_size_and_latency_form_reach_a_one_shot_run(profile_path, tmp_path, capsys):
    out = tmp_path / "lr"
    _, _, E = expected_latency(profile_path)
    budget = float(np.quantile(E.latencies, 0.4))
    code, _, err = run_cli(capsys, "search", "--space", "nb201", "--space-settings", json.dumps(SETTINGS),
                           "--profile", str(profile_path), "--strategy", "gdas", "--epochs", "1", "--train-limit", "64",
                           "--threads", "1", "--lr", "0.07", "--batch-size", "16", "--latency-ms", str(budget),
                           "--latency-form", "multiplicative", "--out", str(out))
    assert code == 0, err
    strategy = json.loads((out / "config.json").read_text())["strategy"]
    assert strategy["lr"] == 0.07 and strategy["batch_size"] == 16
    assert strategy["latency_form"] == "multiplicative" and strategy["latency_lambda"] == 0.07
    assert json.loads((out / "best.json").read_text())["latency_ms"] <= budget
