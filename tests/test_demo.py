"""`hwnas demo` end to end on a tiny configuration: the files it writes and the report they hold."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import onnxruntime as ort

from hwnas.exporters.demo import DemoConfig, run_demo
from hwnas.exporters.onnx_io import read_metadata
from test_export import FAST, SETTINGS


# the export tests' tiny space, with a second kernel size: 36 archs, so that a search under the
# budget has unseen feasible candidates to ask for (with 4 archs in all it has none after the first)
TINY = {**SETTINGS, "kernels": [3, 5]}


def test_demo_tiny_end_to_end(tmp_path):
    out = tmp_path / "demo"
    phases: list[str] = []
    res = run_demo(DemoConfig(out=str(out), epochs=1, search_evals=4, space_settings=TINY, profile_calibrate=2,
                              profile_validate=0, calibration="minmax", calibration_images=64, finetune_max_steps=5,
                              protocol=FAST), phase=lambda p, d, n: phases.append(p))
    for name in ("profile.json", "supernet.pt", "search/best.json", "search/journal.jsonl", "model.onnx",
                 "model.fp32.onnx", "report.json", "report.md"):
        assert (out / name).is_file(), name
    r = json.loads((out / "report.json").read_text())
    assert r == json.loads(json.dumps(res.report))
    assert r["budget_ms"] == res.budget_ms > 0 and isinstance(r["meets_budget"], bool)
    for prec in ("fp32", "int8"):
        assert r[prec]["size_bytes"] > 0 and r[prec]["latency_ms"] > 0 and 0.0 <= r[prec]["top1"] <= 1.0
    assert r["int8"]["size_bytes"] < r["fp32"]["size_bytes"]
    # the deployed model is never the slower form: INT8 only where it is faster than FP32
    assert r["deployed"] == ("int8" if r["int8_vs_fp32"]["latency_ratio"] < 1.0
                             and r["int8_vs_fp32"]["top1_drop_points"] <= 1.0 else "fp32"), r["deploy"]
    assert r["int8_vs_fp32"]["latency_ratio_paired"]["ratio"] > 0 and res.int8_factor > 0
    assert r["metadata"]["arch_id"] == json.loads((out / "search" / "best.json").read_text())["id"]
    assert "Budget:" in (out / "report.md").read_text()
    assert {"profile", "supernet", "int8 factor", "search", "export"} <= set(res.stages)
    assert any(p.startswith("profile") for p in phases) and "search" in phases
    meta = read_metadata(str(out / "model.onnx"))
    assert meta["hwnas.precision"] == "int8" and json.loads(meta["hwnas.budget_ms"]) == res.budget_ms
    sess = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    x = __import__("numpy").zeros((2, 3, 8, 8), dtype="float32")
    assert sess.run(None, {sess.get_inputs()[0].name: x})[0].shape == (2, 10)


def test_demo_refuses_a_file_as_out_folder(tmp_path: Path):
    f = tmp_path / "file"
    f.write_text("x")
    res = subprocess.run([sys.executable, "-m", "hwnas.cli", "demo", "--out", str(f)], capture_output=True, text=True,
                         env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"})
    assert res.returncode == 2
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "is a file" in lines[0]
