"""`hwnas export` with stderr in a file or a pipe: plain progress lines as the work happens."""

from __future__ import annotations

import io

import pytest
import torch

from hwnas.cli.export_cmds import export_progress
from hwnas.cli.main import main
from hwnas.errors import UserError


def test_plain_lines_appear_as_each_stage_starts():
    stream = io.StringIO()
    with export_progress(stream) as (log, on_step):
        log("fine-tuning 1 epoch(s) with distillation")
        assert stream.getvalue() == "export: 1 fine-tuning 1 epoch(s) with distillation\n"  # at once, not at the end
        on_step(1, 0.75)
        assert stream.getvalue().endswith("training step: 1 loss 0.750\n")
        for step in range(2, 100):
            on_step(step, 0.5)  # steps are printed every few seconds, not each
        log("exporting FP32 ONNX")
    lines = stream.getvalue().splitlines()
    assert lines[-1] == "export: 2 exporting FP32 ONNX" and len(lines) < 10


def test_the_export_command_prints_its_stages_when_stderr_is_not_a_terminal(capsys, monkeypatch, tmp_path):
    import hwnas.exporters.run_export as run_export

    def fake_export_run(run_dir, out, cfg, log=None, on_step=None):
        log("extracting the arch")
        on_step(1, 2.0)
        raise UserError("stop here")

    monkeypatch.setattr(run_export, "export_run", fake_export_run)
    with pytest.raises(SystemExit) as e:
        main(["export", str(tmp_path), "--out", str(tmp_path / "m.onnx")])
    err = capsys.readouterr().err
    assert e.value.code == 2
    assert err.splitlines()[:3] == ["export: 1 extracting the arch", "  training step: 1 loss 2.000", "error: stop here"]


def test_export_reports_its_fine_tuning_steps(tmp_path):
    from hwnas.data import load_dataset
    from hwnas.exporters import ExportData, ExportOptions, FinetuneConfig, export
    from hwnas.exporters.finetune import dataset_batches
    from hwnas.space import get_space

    space = get_space("mbv3-32", image_size=8, strides=[1, 2], widths=[[16], [32]], se=[False, False],
                      acts=["relu", "relu"], depths=[1], kernels=[3], expands=[3], stem_channels=8, head_channels=32)
    ds = load_dataset("digits", image_size=8)
    torch.manual_seed(0)
    model = space.build(space.largest(), num_classes=10)
    data = ExportData(calibration=ds.prepare(ds.train_x[:16]), train=dataset_batches(ds), classes=ds.classes)
    steps, stages = [], []
    export(model, data, tmp_path / "m.onnx",
           ExportOptions(quantize="none", latency=None, finetune=FinetuneConfig(epochs=1, max_steps=3)),
           log=stages.append, on_step=lambda s, loss: steps.append(s))
    assert steps == [1, 2, 3] and any(s.startswith("fine-tuning") for s in stages)
