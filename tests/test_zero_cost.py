"""Zero-cost proxies, their ensemble, the few-shot predictor, `hwnas evaluate` for every
evaluator kind, and the shared training loop's channels_last path."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from hwnas.accuracy import Evaluator, get_evaluator
from hwnas.accuracy.fewshot import Forest, FewShotPredictor, fit_fewshot
from hwnas.accuracy.proxies import PROXIES, compute_proxy
from hwnas.accuracy.zc_evaluator import ProxyScorer, proxy_batch
from hwnas.data import load_dataset
from hwnas.errors import UserError
from hwnas.space import get_space

TINY_NB201 = dict(image_size=8, channels=(4, 8, 8), cells_per_stage=1)
GRADIENT_PROXIES = ("grad_norm", "snip", "synflow", "naswot", "jacov")


@pytest.fixture(autouse=True)
def _env(tmp_path, monkeypatch):
    monkeypatch.setenv("HWNAS_CACHE", str(tmp_path / "cache"))
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def space():
    return get_space("nb201", **TINY_NB201)


@pytest.fixture(scope="module")
def batch(space):
    return proxy_batch(load_dataset("digits", image_size=8), 16, seed=0)


def _net(space, arch, seed=0):
    torch.manual_seed(seed)
    return space.build(arch, num_classes=10)


CONV_CELL = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
SMALL_CELL = "|nor_conv_1x1~0|+|none~0|skip_connect~1|+|none~0|none~1|skip_connect~2|"


def test_each_proxy_is_finite_seeded_and_repeatable(space, batch):
    arch = space.parse(CONV_CELL)
    for name in PROXIES.names():
        a = compute_proxy(name, _net(space, arch), batch)
        b = compute_proxy(name, _net(space, arch), batch)
        assert math.isfinite(a) and a == b, name
    # another seed's initial weights give another value (the counts excepted)
    for name in GRADIENT_PROXIES:
        assert compute_proxy(name, _net(space, arch, 1), batch) != compute_proxy(name, _net(space, arch), batch), name


def test_zeroed_weights_score_lowest_and_counts_order_sizes(space, batch):
    arch = space.parse(CONV_CELL)
    for name in GRADIENT_PROXIES:
        dead = _net(space, arch)
        with torch.no_grad():
            for p in dead.parameters():
                p.zero_()
        others = [compute_proxy(name, _net(space, space.sample(s), s), batch) for s in range(4)]
        others.append(compute_proxy(name, _net(space, arch), batch))
        assert compute_proxy(name, dead, batch) < min(others), name
    for name in ("params", "flops"):
        big = compute_proxy(name, _net(space, arch), batch)
        small = compute_proxy(name, _net(space, space.parse(SMALL_CELL)), batch)
        assert big > small, name


def test_scorer_caches_per_arch_and_refuses_bad_names(space):
    sc = ProxyScorer(space, "digits", seed=0, batch_size=16)
    archs = [space.sample(i) for i in range(3)]
    first = sc.values(archs, ["synflow", "params"])
    sc.close()
    again = ProxyScorer(space, "digits", seed=0, batch_size=16)
    assert np.array_equal(again.values(archs, ["synflow", "params"]), first)
    assert again.seconds == {}  # every value came from the cache file
    other_seed = ProxyScorer(space, "digits", seed=1, batch_size=16)
    assert not np.array_equal(other_seed.values(archs, ["synflow"]), first[:, :1])
    with pytest.raises(UserError, match="unknown zero-cost proxy"):
        again.values(archs, ["nope"])
    with pytest.raises(UserError, match="unknown zero-cost proxy"):
        get_evaluator("zc:nope", space)


def test_naswot_on_a_net_without_activations_says_why():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.LazyLinear(10))
    x = torch.randn(4, 3, 8, 8)
    net(x)
    from hwnas.accuracy.proxies import ProxyBatch

    with pytest.raises(UserError, match="no activation modules"):
        compute_proxy("naswot", net, ProxyBatch(x, torch.zeros(4, dtype=torch.long), 10))


def test_ensemble_is_a_function_of_the_arch_alone(space):
    ev = get_evaluator("zc:ensemble", space, data="digits", batch_size=16)
    assert not ev.estimates_accuracy
    archs = [space.parse(CONV_CELL), space.parse(SMALL_CELL), space.sample(3)]
    together = ev.evaluate(archs)
    alone = [ev.evaluate([a])[0] for a in reversed(archs)][::-1]
    assert together == alone
    assert together[0] > together[1]  # six 3x3 convolutions beat a mostly cut-off cell
    assert all(v <= 0.0 for v in together)  # sums of log ranks


def test_forest_arrays_predict_as_sklearn_does():
    from sklearn.ensemble import ExtraTreesRegressor

    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 4))
    y = x[:, 0] - 2 * x[:, 1] + rng.normal(scale=0.1, size=60)
    model = ExtraTreesRegressor(20, random_state=0).fit(x, y)
    f = Forest.from_sklearn(model)
    q = rng.normal(size=(25, 4))
    assert np.allclose(f.predict(q), model.predict(q))
    g = Forest.from_tensors(f.tensors())
    assert np.allclose(g.predict(q), model.predict(q))


class _ByParams(Evaluator):
    """Synthetic truth: accuracy rises with the parameter count (a known monotone function)."""

    def __init__(self, space):
        self.space, self.spec = space, "synthetic"

    def evaluate(self, archs):
        return [0.5 + 0.4 * math.tanh(sum(p.numel() for p in self.space.build(a, num_classes=10).parameters()) / 4000)
                for a in archs]


def test_fewshot_predictor_fit_held_out_and_round_trip(space, tmp_path):
    truth = _ByParams(space)
    pred, report, records = fit_fewshot(space, truth, 40, proxies=("params", "synflow"), data="digits", batch_size=16)
    assert report.n_train == 40 and len(records) == 40 and report.n_holdout == 0
    assert report.cv_kendall_tau > 0.8, report
    held = [space.sample(1000 + i) for i in range(30)]
    from scipy.stats import kendalltau

    assert kendalltau(pred.predict(held), truth.evaluate(held)).statistic > 0.8
    pred.save(tmp_path / "p.pt")
    ev = get_evaluator(f"predictor:{tmp_path / 'p.pt'}", space)
    assert ev.evaluate(held) == pred.predict(held)
    assert ev.describe()["fit"]["cv_kendall_tau"] == pytest.approx(report.cv_kendall_tau)
    with pytest.raises(UserError, match="was fitted for (space|another)"):
        get_evaluator(f"predictor:{tmp_path / 'p.pt'}", get_space("nb201"))
    with pytest.raises(UserError, match="computes its proxies on"):
        get_evaluator(f"predictor:{tmp_path / 'p.pt'}", space, data="cifar10")
    # the genome alone cannot see the parameter count as well, but must still learn something
    g, g_report, _ = fit_fewshot(space, truth, 40, features="genome")
    assert g.proxies == () and g_report.cv_kendall_tau > 0.3
    with pytest.raises(UserError, match="gives scores"):
        fit_fewshot(space, get_evaluator("zc:params", space, batch_size=16), 20)
    with pytest.raises(UserError, match="at least"):
        fit_fewshot(space, truth, 5)
    with pytest.raises(UserError, match="unknown predictor features"):
        FewShotPredictor(space, features="paths")


def _cli(argv, capsys):
    from hwnas.cli.main import main

    with pytest.raises(SystemExit) as e:
        main(argv)
    cap = capsys.readouterr()
    return e.value.code, cap.out, cap.err


def _table(space, path, n=40):
    truth = _ByParams(space)
    archs = list({a.id: a for a in (space.sample(i) for i in range(n * 2))}.values())[:n]
    lines = ["arch_str,acc"] + [f"{a['cell']},{100 * v:.4f}" for a, v in zip(archs, truth.evaluate(archs))]
    path.write_text("\n".join(lines) + "\n")
    return archs


def test_evaluate_command_for_every_evaluator_kind(space, tmp_path, capsys):
    csv = tmp_path / "t.csv"
    archs = _table(space, csv)
    arch_file = tmp_path / "a.jsonl"
    arch_file.write_text("".join(a.to_json() + "\n" for a in archs[:3]))
    settings = json.dumps(TINY_NB201)
    common = ["--space", "nb201", "--space-settings", settings, "--arch", str(arch_file), "--json"]
    pred_file = tmp_path / "p.pt"
    code, out, err = _cli(["predictor", "fit", "--truth", f"table:{csv}#acc", "--space", "nb201", "--space-settings",
                           settings, "--n", "25", "--holdout", "10", "--proxies", "params,flops", "--out", str(pred_file),
                           "--json", "--no-progress"], capsys)
    assert code == 0, err
    fit = json.loads(out)
    assert fit["n_train"] == 25 and fit["n_holdout"] == 10 and fit["holdout_kendall_tau"] > 0.5
    specs = {f"table:{csv}#acc": "accuracy", "train:1": "accuracy", f"predictor:{pred_file}": "accuracy",
             "zc:synflow": "score", "zc:ensemble": "score"}
    for spec, key in specs.items():
        extra = ["--data", "digits", "--train-limit", "64"] if spec.startswith("train") else []
        code, out, err = _cli(["evaluate", "--evaluator", spec, *common, *extra], capsys)
        assert code == 0, (spec, err)
        rows = [json.loads(line) for line in out.splitlines()]
        assert [r["id"] for r in rows] == [a.id for a in archs[:3]], spec
        assert all(set(r) == {"id", key} and math.isfinite(r[key]) for r in rows), (spec, rows)
        if key == "accuracy":
            assert all(0.0 <= r["accuracy"] <= 1.0 for r in rows)
    # the predictor file names its space: --space may be left out
    code, out, _ = _cli(["evaluate", "--evaluator", f"predictor:{pred_file}", "--arch", str(arch_file), "--json"], capsys)
    assert code == 0 and len(out.splitlines()) == 3


def test_evaluate_and_fit_refuse_bad_input_in_one_line(space, tmp_path, capsys):
    csv = tmp_path / "t.csv"
    archs = _table(space, csv, n=12)
    arch_file = tmp_path / "a.jsonl"
    arch_file.write_text(archs[0].to_json() + "\n")
    settings = json.dumps(TINY_NB201)
    sp = ["--space", "nb201", "--space-settings", settings]
    out_file = tmp_path / "p.pt"
    cases = [
        ["evaluate", "--evaluator", "nope:1", *sp, "--arch", str(arch_file)],
        ["evaluate", "--evaluator", "zc:nope", *sp, "--arch", str(arch_file)],
        ["evaluate", "--evaluator", "zc:synflow", *sp, "--arch", str(arch_file), "--data", "nope"],
        ["evaluate", "--evaluator", "zc:synflow", *sp, "--arch", str(arch_file), "--data", f"imagefolder:{tmp_path / 'no'}"],
        ["evaluate", "--evaluator", "zc:synflow", "--arch", str(arch_file)],  # no space
        ["evaluate", "--evaluator", f"predictor:{tmp_path / 'none.pt'}", "--arch", str(arch_file)],
        ["predictor", "fit", "--truth", f"table:{csv}#acc", *sp, "--n", "13", "--out", str(out_file)],  # N > rows
        ["predictor", "fit", "--truth", "zc:params", *sp, "--n", "10", "--out", str(out_file)],
        ["predictor", "fit", "--truth", f"table:{csv}#acc", *sp, "--n", "10", "--proxies", "x", "--out", str(out_file)],
        ["predictor", "fit", "--truth", f"table:{csv}#acc", *sp, "--n", "10", "--features", "x", "--out", str(out_file)],
        ["predictor", "fit", "--truth", f"table:{csv}#acc", *sp, "--n", "10", "--out", str(tmp_path / "no" / "p.pt")],
    ]
    for argv in cases:
        code, _, err = _cli(argv, capsys)
        assert code == 2, (argv, err)
        assert err.startswith("error: ") and len(err.strip().splitlines()) == 1, (argv, err)
    assert not out_file.exists()


def test_channels_last_step_equals_the_plain_one():
    from hwnas.accuracy.training import TrainRecipe, train_classifier

    space = get_space("mbv3-32", image_size=8, depths=(1, 2), kernels=(3, 5), expands=(3, 4),
                      widths=((16, 24), (24, 32), (40, 48), (64, 80), (96, 112)))
    ds = load_dataset("digits", image_size=8, train_limit=64, val_limit=16)
    states = []
    for cl in (False, True):
        torch.manual_seed(0)
        model = space.build(space.largest(), num_classes=10)
        recipe = TrainRecipe(epochs=1, batch_size=32, lr=0.1, seed=0, device="cpu", threads=1, channels_last=cl, max_steps=1)
        result = train_classifier(model, ds, recipe)
        assert result.steps == 1
        states.append({k: v.detach().clone() for k, v in model.state_dict().items()})
    torch.manual_seed(0)
    before = space.build(space.largest(), num_classes=10).state_dict()
    moved = 0
    for k, v in states[0].items():
        if v.is_floating_point():
            assert torch.allclose(v, states[1][k].contiguous(), atol=1e-5, rtol=1e-4), k
            moved += int(not torch.equal(v, before[k]))
    assert moved > 10  # the step changed the weights, so the comparison means something


def test_arch_files_from_devices_folders_and_bad_bytes(space, tmp_path):
    from hwnas.cli.common import read_archs

    with pytest.raises(UserError, match="holds no archs"):  # /dev/null exists: it is empty, not missing
        read_archs("/dev/null", space)
    with pytest.raises(UserError, match="is a folder"):
        read_archs(str(tmp_path), space)
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b"\xff\xfe\x00not text")
    with pytest.raises(UserError, match="not UTF-8"):
        read_archs(str(bad), space)
    import os

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    import threading

    def feed():
        with open(fifo, "w") as f:
            f.write(space.parse(CONV_CELL).to_json() + "\n")

    t = threading.Thread(target=feed)
    t.start()
    got = read_archs(str(fifo), space)
    t.join()
    assert [a.id for a in got] == [space.parse(CONV_CELL).id]
