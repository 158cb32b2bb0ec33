"""`hwnas export RUN_DIR`: a run folder exported end to end; budget misses and bad input refused."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hwnas.space import get_space
from test_export import FAST, SETTINGS


def _hwnas(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-m", "hwnas.cli", *args], capture_output=True, text=True, cwd=cwd, env=env)


def _make_run(d: Path, backend: str, dtype: str = "float32"):
    """A run folder of one searched arch (the tiny space's largest), profiled on ``backend``;
    returns the profile's table."""
    from hwnas.latency.backends import get_backend
    from hwnas.latency.profiler import profile

    space = get_space("mbv3-32", **SETTINGS)
    prof = d / "profile.json"
    table = profile(space, get_backend(backend, threads=1, dtype=dtype), prof, n_calibrate=2, n_validate=0, protocol=FAST)
    arch = space.largest()
    cfg = {"format": 1, "space": {"name": "mbv3-32", "config_hash": space.config_hash(), "settings": SETTINGS},
           "profile": {"spec": str(prof)}, "evaluator": {"spec": "train:1", "data": "digits"},
           "budgets": {"latency_ms": 1000.0}}
    rec = {"i": 0, "id": arch.id, "arch": arch.to_dict(), "accuracy": 0.5, "latency_ms": 0.1}
    (d / "config.json").write_text(json.dumps(cfg))
    (d / "journal.jsonl").write_text(json.dumps(rec) + "\n")
    (d / "best.json").write_text(json.dumps(rec))
    return table


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("run")
    _make_run(d, "ort-cpu")
    return d


def test_export_run_folder_and_budget_miss(run_dir, tmp_path):
    common = ["--scratch-epochs", "1", "--calibration", "minmax", "--calibration-images", "64"]
    ok = _hwnas("export", str(run_dir), "--out", str(tmp_path / "m.onnx"), *common, cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    r = json.loads((tmp_path / "m.report.json").read_text())
    assert r["meets_budget"] is True and r["latency_budget_ms"] == 1000.0 and r["predicted_ms"] > 0
    assert r["metadata"]["arch_id"] and r["metadata"]["preprocessing"]["input_size"] == 8
    over = _hwnas("export", str(run_dir), "--out", str(tmp_path / "o.onnx"), "--latency-ms", "0.000001", *common, cwd=tmp_path)
    assert over.returncode != 0
    assert over.returncode == 3 and "budget 1e-06 ms" in over.stderr and "measured 0." in over.stderr
    allowed = _hwnas("export", str(run_dir), "--out", str(tmp_path / "a.onnx"), "--budget-ms", "0.000001",
                     "--allow-over-budget", *common, cwd=tmp_path)
    assert allowed.returncode == 0


def _bad(run_dir: Path, tmp: Path, *args: str) -> str:
    res = _hwnas("export", *args, cwd=tmp)
    assert res.returncode == 2, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:")
    assert not list(tmp.glob("*.onnx"))
    return lines[0]


def test_bad_inputs(run_dir, tmp_path):
    assert "does not exist" in _bad(run_dir, tmp_path, str(tmp_path / "none"), "--out", "m.onnx")
    inc = tmp_path / "inc"
    inc.mkdir()
    (inc / "config.json").write_text(json.loads(json.dumps("{}")))
    assert "incomplete" in _bad(run_dir, tmp_path, str(inc), "--out", "m.onnx")
    old = tmp_path / "old"
    old.mkdir()
    for n in ("journal.jsonl", "best.json"):
        (old / n).write_text((run_dir / n).read_text())
    (old / "config.json").write_text(json.dumps({"format": 0}))
    assert "format" in _bad(run_dir, tmp_path, str(old), "--out", "m.onnx")
    assert "not in run" in _bad(run_dir, tmp_path, str(run_dir), "--arch", "nosuchid", "--out", "m.onnx")
    for ratio in ("0", "1", "1.5", "-0.2"):
        assert "between 0 and 1" in _bad(run_dir, tmp_path, str(run_dir), "--prune", ratio, "--out", "m.onnx")
    assert "does not exist" in _bad(run_dir, tmp_path, str(run_dir), "--out", str(tmp_path / "no" / "m.onnx"))
    assert "--int8-weights must be auto, 7 or 8" in _bad(run_dir, tmp_path, str(run_dir), "--int8-weights", "6",
                                                        "--out", "m.onnx")


@pytest.mark.skipif(not hasattr(__import__("os"), "geteuid") or __import__("os").geteuid() == 0,
                    reason="root writes into read-only folders")
def test_unwritable_output_folder(run_dir, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        assert "not writable" in _bad(run_dir, tmp_path, str(run_dir), "--out", str(ro / "m.onnx"))
        assert list(ro.iterdir()) == []
    finally:
        ro.chmod(0o700)


def test_a_torch_profile_checks_the_budget_on_eager_torch(tmp_path):
    """With a profile of eager PyTorch, the budget is checked on the exported torch model timed
    on that backend in the table's units, not on the ONNX file in ONNX Runtime (several times
    faster, so it would pass any torch budget)."""
    from hwnas.exporters.run_export import RunExportConfig, export_run

    space = get_space("mbv3-32", **SETTINGS)
    run = tmp_path / "run"
    run.mkdir()
    table = _make_run(run, "torch-cpu")
    res = export_run(run, tmp_path / "m.onnx", RunExportConfig(scratch_epochs=1, calibration="minmax",
                                                               calibration_images=64, max_steps=5, protocol=FAST))
    r = json.loads((tmp_path / "m.report.json").read_text())
    on_torch = r["profile_backend"]
    assert on_torch["backend"] == "torch-cpu" and on_torch["paired"] is True
    assert on_torch["reference_table_ms"] == table.extra["reference"]["latency_ms"]
    assert r["latency_ms"] == on_torch["latency_ms"] > 0 and r["meets_budget"] is True
    assert "torch-cpu" in r["budget_checked_on"] and "torch-cpu" in (tmp_path / "m.report.md").read_text()
    assert "malloc thresholds fixed" in (tmp_path / "m.report.md").read_text()  # how to serve it at that speed
    assert r["int8"]["latency_ms"] > 0  # the ONNX files are still timed (ONNX Runtime), beside it
    # timing resets BatchNorm statistics: it works on a copy, the model handed back is the exported one
    import numpy as np
    import onnxruntime as ort
    import torch

    x = torch.randn(4, *space.input_shape)
    sess = ort.InferenceSession(str(tmp_path / "m.fp32.onnx"), providers=["CPUExecutionProvider"])
    onnx_out = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    with torch.no_grad():
        np.testing.assert_allclose(res.model.eval()(x).numpy(), onnx_out, rtol=1e-3, atol=1e-4)


def test_an_int8_profile_checks_the_int8_file_and_refuses_an_fp32_export(tmp_path):
    """A run searched on an INT8 table budgets INT8 files: the export times its files paired with
    the table's INT8 reference, says which precision the table times, and refuses --quantize none."""
    from hwnas.exporters.run_export import RunExportConfig, export_run

    run = tmp_path / "run"
    run.mkdir()
    table = _make_run(run, "ort-cpu", dtype="int8")
    bad = _hwnas("export", str(run), "--quantize", "none", "--out", str(tmp_path / "f.onnx"), cwd=tmp_path)
    assert bad.returncode == 2 and "INT8 table" in bad.stderr and "--quantize none" in bad.stderr
    assert "Traceback" not in bad.stderr and not (tmp_path / "f.onnx").exists()
    export_run(run, tmp_path / "m.onnx", RunExportConfig(scratch_epochs=1, calibration="minmax", calibration_images=64,
                                                         max_steps=5, protocol=FAST, check_profile=False))
    r = json.loads((tmp_path / "m.report.json").read_text())
    assert r["profile_precision"] == "int8" and r["int8"]["latency_ms"] > 0
    from hwnas.latency import LatencyPredictor

    predicted = LatencyPredictor(table).predict(get_space("mbv3-32", **SETTINGS).largest())
    assert r["predicted_ms"] == pytest.approx(predicted)  # the INT8 table's prediction of the INT8 file
    assert ("profile_note" in r["deploy"]) == (r["deployed"] == "fp32")

