"""Joint architecture + hyperparameter search (``hwnas search --hparams``): the spec's grids and
refusals, hyperparameters in the genome, the journal, best.json and pareto.json, the train
evaluator and export training with them, a hyperparameter-only search on a fixed arch, resume.

Real training runs on a tiny NAS-Bench-201 space at digits' native 8x8 with a made-up latency
column (as tests/test_search_fidelity.py does); results are cached per test.
"""

import json

import numpy as np
import pytest

from hwnas.accuracy.hparams import parse_hparams
from hwnas.errors import UserError
from hwnas.search import run

from conftest import run_cli
from tiny_nb201 import BUDGET_MS, SETTINGS, lat_csv, small_and_quiet  # noqa: F401  (fixtures)

HP = {"lr": {"kind": "log", "low": 0.01, "high": 0.2, "steps": 4},
      "optimizer": ["sgd", "adamw"],
      "epochs": {"kind": "int", "low": 1, "high": 2},
      "label_smoothing": {"kind": "float", "low": 0.0, "high": 0.2, "steps": 3}}
CELL = "|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|skip_connect~0|none~1|avg_pool_3x3~2|"


def config(lat_csv, **extra):
    kw = dict(space="nb201", space_settings=SETTINGS, profile=f"table:{lat_csv}#lat", latency_budget_ms=BUDGET_MS,
              evaluator="train:1", hparams=HP, budget_evals=6, seed=3, strategy="random")
    return {**kw, **extra}


def cli_args(lat_csv, out, *extra):
    return ["search", "--space", "nb201", "--space-settings", json.dumps(SETTINGS), "--profile", f"table:{lat_csv}#lat",
            "--latency-ms", str(BUDGET_MS), "--evaluator", "train:1", "--out", str(out), "--seed", "3", *extra]


def journal(folder):
    return [json.loads(line) for line in (folder / "journal.jsonl").read_text().splitlines()]


# ---- the spec -----------------------------------------------------------------------------

def test_grids_of_each_kind():
    hp = parse_hparams(json.dumps({**HP, "batch_size": [32, 64], "weight_decay": {"kind": "log", "low": 1e-5, "high": 1e-3}}))
    assert hp.names == ("batch_size", "epochs", "label_smoothing", "lr", "optimizer", "weight_decay")  # gene order
    grids = {p.name: p.values for p in hp.params}
    assert grids["lr"][0] == 0.01 and grids["lr"][-1] == 0.2 and len(grids["lr"]) == 4
    assert np.allclose(np.diff(np.log(grids["lr"])), np.log(20) / 3, rtol=1e-4)  # log spaced
    assert grids["label_smoothing"] == (0.0, 0.1, 0.2)
    assert grids["epochs"] == (1, 2) and grids["batch_size"] == (32, 64) and grids["optimizer"] == ("sgd", "adamw")
    assert len(grids["weight_decay"]) == 8  # the default number of log steps
    assert parse_hparams({"epochs": {"kind": "int", "low": 2, "high": 8, "step": 3}}).params[0].values == (2, 5, 8)
    # values <-> genes, and the surrogate's features: a numeric grid as a position, a categorical one-hot
    genes = (1, 0, 2, 3, 1, 7)
    values = hp.values(genes)
    assert values["optimizer"] == "adamw" and values["lr"] == 0.2 and hp.genes(values) == genes
    f = hp.features(np.array([genes, (0,) * 6]))
    assert f.shape == (2, 5 + 2) and f.min() >= 0 and f.max() <= 1
    assert list(f[0]) == [1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0]


@pytest.mark.parametrize("spec,needle", [
    ({"lr": {"kind": "gauss", "low": 0.1, "high": 1}}, "unknown kind 'gauss'"),
    ({"lr": {"kind": "log", "low": 0.3, "high": 0.1}}, "low 0.3 is above its high 0.1"),
    ({"lr": {"kind": "log", "low": 0.1, "high": 0.1}}, "range is empty"),
    ({"optimizer": {"kind": "categorical", "choices": []}}, "non-empty list of choices"),
    ({"optimizer": ["sgd", "lamb"]}, "'lamb' is not one of sgd, adamw"),
    ({"learning_rate": [0.1]}, "unknown hyperparameter 'learning_rate'"),
    ({"resolution": [24, 32]}, "decision of the space"),
    ({"lr": {"kind": "int", "low": 1, "high": 2}}, "use kind log or float"),
    ({"batch_size": {"kind": "log", "low": 16, "high": 128}}, "use kind int or categorical"),
    ({"lr": {"kind": "log", "low": 0.0, "high": 0.1}}, "low must be above 0"),
    ({"lr": {"kind": "float", "low": 0.0, "high": 0.1}}, "lr must be above 0"),
    ({"momentum": {"kind": "float", "low": 0.5, "high": 1.0}}, "momentum must be below 1"),
    ({"lr": {"kind": "log", "low": 0.01, "high": 0.1, "steps": 0}}, "steps must be a positive integer"),
    ({"lr": {"kind": "log", "low": 0.01}}, "needs low and high"),
    ({"lr": {"kind": "log", "low": 0.01, "high": 0.1, "choices": [1]}}, "not choices"),
    ({"batch_size": [32, 32]}, "lists a choice twice"),
    ({}, "at least one hyperparameter"),
    ("not json", "neither a JSON object nor a file"),
    ("{bad", "not valid JSON"),
])
def test_bad_specs_are_one_line_user_errors(spec, needle):
    with pytest.raises(UserError) as e:
        parse_hparams(spec if isinstance(spec, str) else json.dumps(spec))
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_augment_strength_scales_the_crop_padding():
    from hwnas.accuracy.batches import ResidentImages
    from hwnas.data import load_dataset

    ds = load_dataset("digits", image_size=8)
    pads = {s: ResidentImages(ds, "train", augment=s) for s in (0.0, 1.0, 2.0)}
    assert pads[0.0].pad == 0 and not pads[0.0].flip
    assert pads[2.0].pad == 2 * pads[1.0].pad > 0
    assert ResidentImages(ds, "train", augment=True).pad == pads[1.0].pad  # True: the dataset's default


# ---- searching ----------------------------------------------------------------------------

def test_joint_search_trains_each_candidate_with_its_hyperparameters(lat_csv, tmp_path, monkeypatch):
    import hwnas.accuracy.train_evaluator as te

    used = []
    real = te.train_standalone

    def spy(space, arch, ds, recipe, progress=False, split="val"):
        used.append((arch.id, recipe))
        return real(space, arch, ds, recipe, progress, split)

    monkeypatch.setattr(te, "train_standalone", spy)
    res = run(out=tmp_path / "run", **config(lat_csv))
    recs = journal(tmp_path / "run")
    assert len(recs) == 6 and len(used) == 6
    n_arch = 6  # the cell's edges, then the hyperparameters in name order
    for rec, (arch_id, recipe) in zip(recs, used):
        hp = rec["hparams"]
        assert set(hp) == set(HP) and rec["id"] == arch_id and len(rec["genome"]) == n_arch + 4
        assert (recipe.lr, recipe.optimizer, recipe.epochs, recipe.label_smoothing) == \
            (hp["lr"], hp["optimizer"], hp["epochs"], hp["label_smoothing"])
        assert parse_hparams(HP).values(rec["genome"][n_arch:]) == hp
    assert len({json.dumps(r["hparams"], sort_keys=True) for r in recs}) > 1  # the hyperparameters were searched
    best = json.loads((tmp_path / "run" / "best.json").read_text())
    assert best["hparams"] == res.best["hparams"] and best["i"] in [r["i"] for r in recs]
    assert best["hparams"] == recs[best["i"]]["hparams"]
    front = json.loads((tmp_path / "run" / "pareto.json").read_text())["front"]
    assert front and all("hparams" in r for r in front)
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert cfg["hparams"]["lr"]["values"] == list(parse_hparams(HP).params[2].values)


def test_a_search_without_hparams_records_none(lat_csv, tmp_path):
    run(out=tmp_path / "run", **config(lat_csv, hparams=None, budget_evals=2))
    assert all("hparams" not in r and len(r["genome"]) == 6 for r in journal(tmp_path / "run"))
    assert "hparams" not in json.loads((tmp_path / "run" / "config.json").read_text())


@pytest.mark.parametrize("strategy", ["evolution", "gp", "tpe"])
def test_model_based_and_evolutionary_strategies_search_the_joint_genome(lat_csv, tmp_path, strategy):
    options = {"evolution": {"population": 3, "sample_size": 2}, "gp": {"init": 3}, "tpe": {"init": 3}}[strategy]
    res = run(out=None, **config(lat_csv, strategy=strategy, strategy_options=options, budget_evals=5))
    assert len(res.records) == 5 and len({tuple(r["genome"]) for r in res.records}) == 5
    assert all(r["latency_ms"] <= BUDGET_MS for r in res.records)


def test_fixed_arch_searches_only_the_hyperparameters(lat_csv, tmp_path):
    arch = json.dumps({"cell": CELL})
    res = run(out=tmp_path / "run", **config(lat_csv, fixed_arch=arch, budget_evals=4))
    recs = journal(tmp_path / "run")
    assert len({r["id"] for r in recs}) == 1 and len({json.dumps(r["hparams"]) for r in recs}) == 4
    assert all(len(r["genome"]) == 4 for r in recs)
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert cfg["fixed_arch"]["cell"] == CELL
    # a run's best.json names an arch as well
    again = run(out=None, **config(lat_csv, fixed_arch=str(tmp_path / "run" / "best.json"), budget_evals=1))
    assert again.records[0]["id"] == res.best["id"]


def test_resume_after_interrupt_equals_uninterrupted(lat_csv, tmp_path):
    kw = config(lat_csv, strategy="evolution", strategy_options={"population": 3, "sample_size": 2}, budget_evals=6)

    def stop(p):
        if p.evaluated == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(out=tmp_path / "cut", progress=stop, **kw)
    assert len(journal(tmp_path / "cut")) == 4
    resumed = run(out=tmp_path / "cut", resume=True, **kw)
    run(out=tmp_path / "full", **kw)
    assert resumed.resumed_from == 4
    for name in ("journal.jsonl", "best.json", "pareto.json"):
        assert (tmp_path / "cut" / name).read_text() == (tmp_path / "full" / name).read_text()


# ---- refusals -----------------------------------------------------------------------------

@pytest.mark.parametrize("extra,needle", [
    (["--hparams", json.dumps({"lr": {"kind": "log", "low": 0.2, "high": 0.1}})], "above its high"),
    (["--hparams", json.dumps({"epochs": [1, 2]}), "--fidelity", "epochs:1,2"], "leave epochs out of --hparams"),
    (["--fixed-arch", json.dumps({"cell": CELL})], "pass --hparams too"),
    (["--hparams", json.dumps(HP), "--fixed-arch", json.dumps({"cell": "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|"
                                                                        "+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"})],
     "over --latency-ms"),
    (["--hparams", json.dumps(HP), "--fixed-arch", "missing.json"], "neither an arch as JSON nor a file"),
])
def test_bad_joint_inputs_are_one_line_exit_2_and_write_nothing(lat_csv, tmp_path, capsys, extra, needle):
    out = tmp_path / "run"
    code, stdout, err = run_cli(capsys, *cli_args(lat_csv, out, *extra))
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()


def test_hparams_need_a_training_evaluator(lat_csv, tmp_path, capsys):
    args = cli_args(lat_csv, tmp_path / "run", "--hparams", json.dumps(HP))
    args[args.index("train:1")] = "zc:synflow"
    code, _, err = run_cli(capsys, *args)
    assert code == 2 and "needs an evaluator that trains" in err and not (tmp_path / "run").exists()


def test_resume_with_other_hparams_is_refused_and_keeps_the_run(lat_csv, tmp_path, capsys):
    out = tmp_path / "run"
    code, stdout, err = run_cli(capsys, *cli_args(lat_csv, out, "--hparams", json.dumps(HP), "--budget-evals", "2",
                                                  "--strategy", "random"))
    assert code == 0, err
    hp = json.loads((out / "best.json").read_text())["hparams"]
    assert f"trained with epochs {hp['epochs']}, label_smoothing {hp['label_smoothing']:g}, lr {hp['lr']:g}" in stdout
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    other = {**HP, "lr": {"kind": "log", "low": 0.01, "high": 0.2, "steps": 5}}
    code, _, err = run_cli(capsys, *cli_args(lat_csv, out, "--hparams", json.dumps(other), "--budget-evals", "3",
                                             "--strategy", "random", "--resume"))
    assert code == 2 and "different configuration" in err and "hparams.lr" in err, err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


# ---- export -------------------------------------------------------------------------------

def test_export_trains_from_scratch_with_the_searched_hyperparameters(lat_csv, tmp_path, monkeypatch):
    from hwnas.exporters import finetune as ft
    from hwnas.exporters.run_export import RunExportConfig, export_run

    run(out=tmp_path / "run", **config(lat_csv, budget_evals=3))
    best = json.loads((tmp_path / "run" / "best.json").read_text())
    seen = []
    real = ft.finetune

    def spy(model, batches, cfg, teacher=None, on_step=None):
        seen.append(cfg)
        return real(model, batches, cfg, teacher, on_step)

    monkeypatch.setattr(ft, "finetune", spy)
    res = export_run(tmp_path / "run", tmp_path / "model.onnx",
                     RunExportConfig(quantize="none", data="digits", finetune_epochs=0, check_profile=False))
    recipe = seen[0].recipe
    hp = best["hparams"]
    assert (recipe.lr, recipe.optimizer, recipe.epochs, recipe.label_smoothing) == \
        (hp["lr"], hp["optimizer"], hp["epochs"], hp["label_smoothing"])
    assert res.report["metadata"]["source"] == {"weights": "trained from scratch", "epochs": hp["epochs"], "hparams": hp}
    assert f"with the searched hyperparameters: epochs {hp['epochs']}, label_smoothing" in \
        (tmp_path / "report.md").read_text()


# ---- what the train evaluator trains on ---------------------------------------------------

def test_data_and_train_limit_reach_the_train_evaluator(lat_csv, tmp_path, capsys):
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, *cli_args(lat_csv, out, "--data", "digits", "--train-limit", "300",
                                             "--strategy", "random", "--budget-evals", "2"))
    assert code == 0, err
    ev = json.loads((out / "config.json").read_text())["evaluator"]
    assert ev["data"] == "digits" and ev["train_limit"] == 300
    # a resume with another training subset is another configuration
    code, _, err = run_cli(capsys, *cli_args(lat_csv, out, "--data", "digits", "--train-limit", "200",
                                             "--strategy", "random", "--budget-evals", "3", "--resume"))
    assert code == 2 and "evaluator.train_limit was 300, now 200" in err, err
    args = cli_args(lat_csv, tmp_path / "zc", "--train-limit", "300")
    args[args.index("train:1")] = "zc:synflow"
    code, _, err = run_cli(capsys, *args)
    assert code == 2 and "--train-limit sets what --evaluator train trains on" in err
