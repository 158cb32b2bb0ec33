"""Run folders: paths recorded so that the folder reads from anywhere, folders the command owns
created, and refusals that come before the work."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hwnas.errors import UserError
from hwnas.exporters.run_export import _profile, read_run, run_file
from hwnas.search import SearchConfig, run
from hwnas.space import get_space

from latency_helpers import FAST

SETTINGS = {"image_size": 8, "strides": [1, 2], "widths": [[16, 32], [32]], "se": [False, True], "acts": ["relu", "hswish"],
            "depths": [1, 2], "kernels": [3], "expands": [3], "stem_channels": 8, "head_channels": 64}


@pytest.fixture(scope="module")
def profile_json(tmp_path_factory) -> Path:
    from hwnas.latency.backends import get_backend
    from hwnas.latency.profiler import profile

    p = tmp_path_factory.mktemp("prof") / "my.json"
    profile(get_space("mbv3-32", **SETTINGS), get_backend("ort-cpu", threads=1), p, n_calibrate=2, n_validate=0,
            protocol=FAST)
    return p


def _config(profile: str, **kw) -> SearchConfig:
    base = dict(space="mbv3-32", profile=profile, evaluator="zc:params", strategy="random", budget_evals=3, seed=0,
                space_settings=SETTINGS)
    return SearchConfig(**{**base, **kw})


def test_run_records_resolved_paths_and_reads_them_from_elsewhere(profile_json, tmp_path, monkeypatch):
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "my.json").write_bytes(profile_json.read_bytes())
    monkeypatch.chdir(proj)
    run(_config("my.json"), out="runs/mine")  # runs/ does not exist yet: the run folder's parent is created
    folder = proj / "runs" / "mine"
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["profile"]["spec"] == str((proj / "my.json").resolve()) and cfg["profile"]["typed"] == "my.json"
    assert cfg["evaluator"]["typed"] == "zc:params"

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    r = read_run(folder)
    space = get_space("mbv3-32", **SETTINGS)
    table, predicted, setup, _ = _profile(r, space, space.parse(r.best["arch"]))
    assert table is not None and predicted > 0 and setup is not None
    # resuming from another folder, with the profile named another way, is the same configuration
    res = run(_config(str(proj / "my.json")), out=folder, resume=True)
    assert len(res.records) == 3 and res.resumed_from == 3


def test_older_run_folders_with_paths_as_typed_are_read_beside_the_run(profile_json, tmp_path, monkeypatch):
    proj = tmp_path / "proj"
    (proj / "runs" / "old").mkdir(parents=True)
    (proj / "my.json").write_bytes(profile_json.read_bytes())
    (proj / "sn.pt").write_bytes(b"")
    folder = proj / "runs" / "old"
    cfg = {"format": 1, "space": {"name": "mbv3-32", "settings": SETTINGS}, "profile": {"spec": "my.json"},
           "evaluator": {"spec": "supernet:sn.pt"}}
    rec = {"i": 0, "id": "x", "arch": {}, "accuracy": 0.5, "latency_ms": 0.1}
    (folder / "config.json").write_text(json.dumps(cfg))
    (folder / "journal.jsonl").write_text(json.dumps(rec) + "\n")
    (folder / "best.json").write_text(json.dumps(rec))
    monkeypatch.chdir(tmp_path)
    r = read_run(folder)
    assert run_file(r, "profile", "latency profile") == proj / "my.json"
    assert run_file(r, "evaluator", "supernet checkpoint") == proj / "sn.pt"
    (proj / "my.json").unlink()
    with pytest.raises(UserError, match="latency profile 'my.json' is missing"):
        run_file(r, "profile", "latency profile")


def test_run_folder_under_a_file_is_refused_and_nothing_is_created(profile_json, tmp_path):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(UserError, match="not a folder"):
        run(_config(str(profile_json)), out=tmp_path / "afile" / "runs" / "x")
    assert (tmp_path / "afile").read_text() == "x"


def test_a_budget_below_the_minimum_is_refused_before_the_evaluator_loads(profile_json, tmp_path):
    # the checkpoint does not exist: had the evaluator been built first, that would be the error
    cfg = _config(str(profile_json), evaluator=f"supernet:{tmp_path / 'absent.pt'}", latency_budget_ms=1e-6)
    with pytest.raises(UserError, match="below the smallest latency"):
        run(cfg, out=tmp_path / "runs" / "low")
    assert not (tmp_path / "runs").exists()


def test_an_existing_export_target_is_refused_before_the_run_is_read(tmp_path, monkeypatch):
    import hwnas.exporters.run_export as run_export

    (tmp_path / "m.onnx").write_bytes(b"kept")

    def no_work(*a, **k):
        raise AssertionError("the run was read before the existing output was refused")

    monkeypatch.setattr(run_export, "read_run", no_work)
    with pytest.raises(UserError, match="already exists; pass --force"):
        run_export.export_run(tmp_path / "run", tmp_path / "m.onnx")
    assert (tmp_path / "m.onnx").read_bytes() == b"kept"
