"""Evaluators share one interface; the predictor round-trips safely; the CLI gives one-line errors."""

from __future__ import annotations

import json
import random

import pytest
import torch

from hwnas.accuracy import Evaluator, get_evaluator, list_evaluators
from hwnas.accuracy.predictor import AccuracyPredictor, fit_predictor, kendall_tau
from hwnas.accuracy.supernet.train import SupernetTrainConfig, train_supernet
from hwnas.errors import UserError
from hwnas.space import get_space

TINY = dict(image_size=8, depths=(1, 2), kernels=(3, 5), expands=(3, 4),
            widths=((16, 24), (24, 32), (40, 48), (64, 80), (96, 112)))


@pytest.fixture(autouse=True)
def _env(tmp_path, monkeypatch):
    monkeypatch.setenv("HWNAS_CACHE", str(tmp_path / "cache"))
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    space = get_space("mbv3-32", **TINY)
    path = tmp_path_factory.mktemp("sn") / "sn.pt"
    cfg = SupernetTrainConfig(data="digits", epochs=1, batch_size=32, lr=0.1, train_limit=128, val_limit=64, device="cpu")
    train_supernet(space, cfg, path, progress=False)
    return space, path


def _check_interface(ev: Evaluator, space) -> list[float]:
    archs = [space.largest(), space.smallest(), space.sample(0)]
    accs = ev.evaluate(archs)
    assert isinstance(accs, list) and len(accs) == 3
    assert all(isinstance(a, float) and 0.0 <= a <= 1.0 for a in accs)
    assert ev.evaluate([]) == []
    assert ev.describe()["spec"] == ev.spec
    return accs


def test_evaluators_are_registered():
    assert {"supernet", "train", "predictor"} <= set(list_evaluators())


def test_supernet_evaluator_interface_and_cache(trained, tmp_path):
    space, path = trained
    ev = get_evaluator(f"supernet:{path}", space, bn_images=64)
    accs = _check_interface(ev, space)
    assert len(ev.seconds_per_arch) == 3
    again = get_evaluator(f"supernet:{path}", space, bn_images=64)
    assert again.evaluate([space.largest(), space.smallest(), space.sample(0)]) == accs
    assert again.seconds_per_arch == []  # read from the cache, not recomputed
    with pytest.raises(UserError, match="belongs to space"):
        ev.evaluate([get_space("nb201").sample(0)])
    with pytest.raises(UserError, match="not allowed"):
        ev.evaluate([get_space("mbv3-32").largest().to_dict() | {"space": "mbv3-32"}])
    with pytest.raises(UserError, match="was trained for (space|another)"):
        get_evaluator(f"supernet:{path}", get_space("mbv3-32"))


def test_train_evaluator_interface():
    space = get_space("mbv3-32", **TINY)
    ev = get_evaluator("train:1", space, data="digits", train_limit=64, val_limit=32, device="cpu")
    _check_interface(ev, space)
    with pytest.raises(UserError, match="epochs"):
        get_evaluator("train:0", space)


def _synthetic(space, archs):
    # a known smooth function of the arch: bigger is better, plus a little noise
    rng = random.Random(0)
    return [0.5 + 0.02 * sum(a["depths"]) + 0.0005 * sum(a["widths"]) + 0.003 * sum(map(sum, a["expands"]))
            + rng.gauss(0, 0.002) for a in archs]


class _Synthetic(Evaluator):
    def __init__(self, space):
        self.space, self.spec = space, "synthetic"

    def evaluate(self, archs):
        return _synthetic(self.space, archs)


def test_predictor_learns_ranks_and_round_trips(tmp_path):
    space = get_space("mbv3-32", **TINY)
    pred, report, records = fit_predictor(space, _Synthetic(space), 120, seed=0, epochs=150, hidden=(64, 64))
    assert len(records) == 120 and report.n_test == 24
    assert report.kendall_tau > 0.5, report
    pred.save(tmp_path / "p.pt")
    ev = get_evaluator(f"predictor:{tmp_path / 'p.pt'}", space)
    accs = _check_interface(ev, space)
    assert accs == pred.predict([space.largest(), space.smallest(), space.sample(0)])
    assert ev.describe()["fit"]["kendall_tau"] == pytest.approx(report.kendall_tau)
    with pytest.raises(UserError, match="was fitted for (space|another)"):
        AccuracyPredictor.load(tmp_path / "p.pt", get_space("mbv3-32"))
    (tmp_path / "bad.pt").write_bytes(b"not a predictor")
    with pytest.raises(UserError, match="corrupt"):
        get_evaluator(f"predictor:{tmp_path / 'bad.pt'}", space)


def test_kendall_tau():
    assert kendall_tau([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert kendall_tau([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)


def _cli(argv, capsys):
    from hwnas.cli.main import main

    with pytest.raises(SystemExit) as e:
        main(argv)
    cap = capsys.readouterr()
    return e.value.code, cap.out, cap.err


def test_cli_evaluate_and_bad_input(trained, tmp_path, capsys):
    space, path = trained
    archs = tmp_path / "archs.jsonl"
    archs.write_text("\n".join(space.sample(i).to_json() for i in range(2)) + "\n")
    code, out, _ = _cli(["evaluate", "--supernet", str(path), "--arch", str(archs), "--json"], capsys)
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["id"] for r in rows] == [space.sample(i).id for i in range(2)]
    assert all(0.0 <= r["accuracy"] <= 1.0 for r in rows)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(get_space("mbv3-32").largest().to_json() + "\n")
    for argv in (["evaluate", "--supernet", str(path), "--arch", str(bad), "--json"],
                 ["evaluate", "--supernet", str(tmp_path / "none.pt"), "--arch", str(archs)],
                 ["train-supernet", "--epochs", "0", "--out", str(tmp_path / "o.pt")],
                 ["train-supernet", "--data", "nope", "--out", str(tmp_path / "o.pt")],
                 ["train-supernet", "--data", f"imagefolder:{tmp_path / 'no'}", "--out", str(tmp_path / "o.pt")],
                 ["train", "--arch", str(archs), "--epochs", "0"]):
        code, out, err = _cli(argv, capsys)
        assert code == 2, argv
        assert err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "o.pt").exists()


def test_cli_predictor_fit(trained, tmp_path, capsys):
    _, path = trained
    out_file = tmp_path / "pred.pt"
    code, out, _ = _cli(["predictor", "fit", "--supernet", str(path), "--n", "12", "--epochs", "5",
                         "--out", str(out_file), "--json"], capsys)
    assert code == 0 and out_file.is_file()
    report = json.loads(out)
    assert report["n_train"] + report["n_test"] == 12 and -1.0 <= report["kendall_tau"] <= 1.0
    code, _, err = _cli(["predictor", "fit", "--supernet", str(path), "--n", "12", "--out", str(out_file)], capsys)
    assert code == 2 and "already exists" in err
