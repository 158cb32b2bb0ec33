"""Export: pruning, ONNX parity and metadata, INT8 QDQ, the report, and `hwnas export`'s refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from hwnas.data import load_dataset
from hwnas.exporters import ExportData, ExportOptions, FinetuneConfig, LatencySetup, export
from hwnas.exporters.finetune import dataset_batches, finetune
from hwnas.exporters.onnx_io import read_metadata
from hwnas.exporters.prune import count_params, prune_channels
from hwnas.latency.protocol import Protocol
from hwnas.space import get_space

FAST = Protocol(warmup=2, warmup_seconds=0.0, round_size=5, min_repeats=5, max_repeats=10, max_seconds=0.05, sessions=1)
SETTINGS = {"image_size": 8, "strides": [1, 2], "widths": [[32], [64]], "se": [False, True], "acts": ["relu", "hswish"],
            "depths": [1, 2], "kernels": [3], "expands": [4], "stem_channels": 16, "head_channels": 256}


@pytest.fixture(scope="module")
def space():
    return get_space("mbv3-32", **SETTINGS)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", image_size=8)


@pytest.fixture(scope="module")
def trained(space, digits):
    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = space.build(space.largest(), num_classes=10)
    finetune(model, dataset_batches(digits), FinetuneConfig(epochs=2, lr=0.05))
    return model


def _data(ds):
    return ExportData(calibration=ds.prepare(ds.train_x[:128]), test=(ds.prepare(ds.test_x), ds.test_y),
                      val=(ds.prepare(ds.val_x), ds.val_y), train=dataset_batches(ds), classes=ds.classes)


def test_pruning_removes_channels_and_keeps_output_shape(trained, digits):
    import copy

    m = copy.deepcopy(trained)
    x = digits.prepare(digits.train_x[:4])
    before = m(x).shape
    res = prune_channels(m, x[:1], 0.25)
    assert res.params_after < res.params_before == count_params(trained)
    assert count_params(m) == res.params_after
    assert m(x).shape == before
    convs = [mod for mod in m.modules() if isinstance(mod, torch.nn.Conv2d)]
    assert any(c.out_channels < o.out_channels for c, o in
               zip(convs, [mod for mod in trained.modules() if isinstance(mod, torch.nn.Conv2d)]))


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.1, 1.5])
def test_prune_ratio_outside_0_1_is_refused(trained, digits, bad):
    from hwnas.errors import UserError

    with pytest.raises(UserError, match="between 0 and 1"):
        prune_channels(trained, digits.prepare(digits.train_x[:1]), bad)


def test_export_end_to_end(trained, digits, tmp_path):
    import onnx
    import onnxruntime as ort

    import time

    out = tmp_path / "m.onnx"
    cpu0 = time.process_time()
    res = export(trained, _data(digits), out, ExportOptions(
        prune=0.25, finetune=FinetuneConfig(epochs=1, max_steps=10), calibration="auto",
        latency=LatencySetup(), protocol=FAST, latency_budget_ms=1000.0, metadata={"dataset": "digits"}))
    assert time.process_time() - cpu0 < 60  # CPU time: the wall clock on a shared machine measures the neighbours
    r = json.loads(res.paths.report_json.read_text())
    for key in ("latency_budget_ms", "meets_budget"):
        assert key in r
    for prec in ("fp32", "int8"):
        for key in ("size_bytes", "latency_ms", "top1"):
            assert r[prec][key] is not None
        assert len(r[prec]["per_class"]) == 10
    assert r["meets_budget"] is True
    assert r["parity_max_abs_diff"] < 1e-4
    assert r["pruning"]["params_after"] < r["pruning"]["params_before"]
    # an INT8 export keeps pruned channel counts in multiples of 16 (the integer kernels' block)
    assert r["pruning"]["channels_multiple_of"] == 16
    widths = [m.out_channels for m in res.model.modules() if isinstance(m, torch.nn.Conv2d) and m.out_channels != 10]
    assert widths and all(w % 16 == 0 for w in widths), widths
    # headline ratios are the call-by-call ones; the quotient of the separate measurements stays beside
    for ratios in (r["pruning"], r["int8_vs_fp32"]):
        assert ratios["latency_ratio"] == ratios["latency_ratio_paired"]["ratio"] > 0
        assert ratios["latency_ratio_separate"] > 0
    assert "timed against each other call by call" in res.paths.report_md.read_text()
    # an INT8 model measured slower than its FP32 form says so, in the report and its Markdown
    # with a latency budget the faster truth is deployed: INT8 only where it is faster and keeps top-1
    slower = r["int8_vs_fp32"]["latency_ratio"] >= 1.0
    lossy = r["int8_vs_fp32"]["top1_drop_points"] > 1.0
    assert r["deployed"] == ("fp32" if slower or lossy else "int8"), r["deploy"]
    assert r["deploy"]["file"] == r["files"]["fp32" if r["deployed"] == "fp32" else "model"]
    assert r["deploy"]["why"] in res.paths.report_md.read_text()
    assert "note" not in r["int8_vs_fp32"]  # the slower-INT8 note is for a deployed INT8 file only
    # auto compares every calibration method with 7-bit and full 8-bit weights and keeps the val best
    compared = r["calibration"]["compared"]
    assert {(c["method"], c["weight_bits"]) for c in compared} == {
        (m, b) for m in ("minmax", "percentile", "entropy") for b in (7, 8)}
    best = max(c["val_top1"] for c in compared)
    first_best = next(c for c in compared if c["val_top1"] == best)  # ties keep the first
    assert (r["calibration"]["chosen"], r["calibration"]["weight_bits"]) == (first_best["method"], first_best["weight_bits"])
    assert r["int8"]["weights"] == ("int8 (7-bit range)" if first_best["weight_bits"] == 7 else "int8")
    assert r["int8"]["size_bytes"] < r["fp32"]["size_bytes"]
    assert out.stat().st_size < res.paths.fp32.stat().st_size
    model = onnx.load(str(out))
    onnx.checker.check_model(model)
    assert any(d.domain in ("", "ai.onnx") and d.version >= 17 for d in model.opset_import)
    ops = {n.op_type for n in model.graph.node}
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops and "DynamicQuantizeLinear" not in ops
    meta = read_metadata(str(out))
    assert meta["hwnas.dataset"] == "digits" and "hwnas.version" in meta and "hwnas.latency_budget_ms" in meta
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    x = digits.prepare(digits.test_x[:3]).numpy()
    assert sess.run(None, {sess.get_inputs()[0].name: x})[0].shape == (3, 10)  # dynamic batch
    assert "| fp32 | int8 |" in res.paths.report_md.read_text().replace("unpruned | ", "")
    assert r["int8"]["size_parts"]["weights"] < r["fp32"]["size_parts"]["weights"] / 3  # the pruned model's kernels, quantized
    assert "INT8 size as a share of the FP32 file" in res.paths.report_md.read_text()


def test_int8_weight_range_choice(trained, digits, tmp_path, monkeypatch):
    from hwnas.errors import UserError
    from hwnas.latency import int8 as q

    assert q.weight_bits("8") == (8,) and q.weight_bits("7") == (7,)
    with pytest.raises(UserError, match="auto, 7 or 8"):
        q.weight_bits("16")
    # ties keep 7-bit where U8S8 pair sums can saturate, 8-bit where the CPU multiplies exactly
    monkeypatch.setattr("hwnas.latency.fingerprint.cpu_flags", lambda: {"avx2", "fma"})
    assert q.cpu_int8_dot_product() is None and q.weight_bits("auto") == (7, 8)
    monkeypatch.setattr("hwnas.latency.fingerprint.cpu_flags", lambda: {"avx2", "avx512_vnni"})
    assert q.cpu_int8_dot_product() == "avx512_vnni" and q.weight_bits("auto") == (8, 7)
    # a fixed range is the only one tried, and full-range weights differ from 7-bit ones
    fp32 = export(trained, _data(digits), tmp_path / "f.onnx", ExportOptions(quantize="none", latency=None)).paths.model
    calib = digits.prepare(digits.train_x[:64]).numpy()
    seven = q.quantize_int8(fp32.read_bytes(), calib, q.QuantizeOptions(reduce_range=True))
    eight = q.quantize_int8(fp32.read_bytes(), calib, q.QuantizeOptions(reduce_range=False))
    assert seven != eight and abs(len(seven) - len(eight)) < 0.01 * len(seven)
    res = export(trained, _data(digits), tmp_path / "m.onnx", ExportOptions(
        calibration="minmax", int8_weights="8", latency=None))
    assert [(c["method"], c["weight_bits"]) for c in res.report["calibration"]["compared"]] == [("minmax", 8)]
    assert res.report["int8"]["weights"] == "int8" and "8-bit** weights" in res.paths.report_md.read_text()
    with pytest.raises(UserError, match="auto, 7 or 8"):
        export(trained, _data(digits), tmp_path / "x.onnx", ExportOptions(int8_weights="6", latency=None))
    assert not (tmp_path / "x.onnx").exists()


def test_over_budget_is_reported_and_refused_outputs_stay_clean(trained, digits, tmp_path):
    res = export(trained, _data(digits), tmp_path / "m.onnx",
                 ExportOptions(quantize="none", protocol=FAST, latency_budget_ms=1e-6))
    assert res.report["meets_budget"] is False and res.report["latency_ms"] > 1e-6
    from hwnas.errors import UserError

    with pytest.raises(UserError, match="exists"):  # no overwrite without force
        export(trained, _data(digits), tmp_path / "m.onnx", ExportOptions(quantize="none", latency=None))
    with pytest.raises(UserError, match="does not exist"):
        export(trained, _data(digits), tmp_path / "nope" / "m.onnx", ExportOptions(quantize="none", latency=None))
    assert not (tmp_path / "nope").exists()
    # what an export killed mid-write leaves (hidden, beside its outputs) goes with --force; nothing else does
    left = [tmp_path / ".m.onnx.k3j2.tmp", tmp_path / ".m.report.json.x9.tmp"]
    other = tmp_path / ".notes.txt.a1.tmp"
    for f in [*left, other]:
        f.write_bytes(b"half")
    export(trained, _data(digits), tmp_path / "m.onnx", ExportOptions(quantize="none", latency=None, force=True))
    assert not any(f.exists() for f in left) and other.exists()


def test_unsupported_operator_is_one_clear_error(tmp_path, digits):
    from hwnas.errors import UserError

    class Weird(torch.nn.Module):
        def forward(self, x):
            return torch.linalg.eigvals(x[:, 0]).real.sum(-1)

    with pytest.raises(UserError, match="cannot handle operator aten::linalg_eigvals"):
        export(Weird(), _data(digits), tmp_path / "w.onnx", ExportOptions(quantize="none", latency=None))
    assert list(tmp_path.iterdir()) == []


def test_report_files_are_named_after_the_model(tmp_path):
    from hwnas.exporters.pipeline import ExportPaths

    p = ExportPaths.for_output(tmp_path / "model.onnx", quantized=True)
    assert (p.fp32.name, p.report_json.name, p.report_md.name) == ("model.fp32.onnx", "report.json", "report.md")
    p = ExportPaths.for_output(tmp_path / "small.onnx", quantized=False)
    assert (p.fp32, p.report_json.name, p.report_md.name) == (None, "small.report.json", "small.report.md")


def test_int8_graph_runs_as_qlinear_ops_and_compaction_changes_nothing(trained, digits, tmp_path):
    """Pooling and hard activations are quantized (no float ReduceMean or HardSigmoid left between
    Dequantize and Quantize), every conv becomes QLinearConv in ORT, and the file's compaction
    leaves the outputs bit for bit the same."""
    import collections

    import onnx
    import onnxruntime as ort

    from hwnas.exporters.onnx_io import to_onnx
    from hwnas.latency.int8 import QuantizeOptions, quantize_int8
    from hwnas.latency.onnx_rewrites import compact_bytes

    x = digits.prepare(digits.train_x[:64])
    fp32 = to_onnx(trained, x[:1])
    small = compact_bytes(fp32, drop_zero_points=False)
    q_plain = quantize_int8(small, x.numpy(), QuantizeOptions(compact=False))
    q = compact_bytes(q_plain)
    assert len(small) < len(fp32) and len(q) < len(q_plain)
    onnx.checker.check_model(onnx.load_from_string(q), full_check=True)

    def run(model: bytes, optimized: Path | None = None):
        so = ort.SessionOptions()
        if optimized is not None:
            so.optimized_model_filepath = str(optimized)
        s = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
        return s.run(None, {s.get_inputs()[0].name: x.numpy()})[0]

    assert np.array_equal(run(fp32), run(small))
    assert np.array_equal(run(q_plain), run(q))
    opt = tmp_path / "opt.onnx"
    run(q, opt)
    ops = collections.Counter(n.op_type for n in onnx.load(str(opt)).graph.node)
    convs = sum(1 for n in onnx.load_from_string(fp32).graph.node if n.op_type == "Conv")
    assert ops["QLinearConv"] == convs and ops["QLinearGlobalAveragePool"] >= 1
    assert "ReduceMean" not in ops and "Conv" not in ops
    assert "HardSigmoid" not in ops and "Mul" not in ops  # hard-swish and the SE gate run as QLinear ops too
    # the hard activations' multiply by 1/6 is folded into a Dequantize scale: one QLinearMul per
    # hard-swish (x * gate) and per SE scaling, none per hard-sigmoid
    fp_ops = collections.Counter(n.op_type for n in onnx.load_from_string(fp32).graph.node)
    assert fp_ops["HardSwish"] + fp_ops["HardSigmoid"] > 0
    assert ops["QLinearMul"] == fp_ops["HardSwish"] + fp_ops["Mul"]
    # the SE gate's + 3 is in its convolution's bias: QLinearAdd only for residuals and hard-swish
    assert fp_ops["HardSigmoid"] > 0 and ops["QLinearAdd"] == fp_ops["Add"] + fp_ops["HardSwish"]
    qg = onnx.load_from_string(q_plain).graph
    read = {i for n in qg.node for i in n.input} | {o.name for o in qg.output}
    assert all(any(o in read for o in n.output) for n in qg.node)  # no dead node left behind


def test_size_parts_say_where_the_int8_bytes_go(trained, digits):
    """The parts add up to the file; INT8 kernels take a quarter of the FP32 kernels' bytes, int32
    biases as many as float ones, and the scales and zero points exist only in the INT8 file."""
    from hwnas.exporters.onnx_io import size_parts, to_onnx
    from hwnas.exporters.report import size_parts_text
    from hwnas.latency.int8 import QuantizeOptions, quantize_int8
    from hwnas.latency.onnx_rewrites import compact_bytes

    x = digits.prepare(digits.train_x[:64])
    fp32 = compact_bytes(to_onnx(trained, x[:1]), drop_zero_points=False)
    q = quantize_int8(fp32, x.numpy(), QuantizeOptions())
    f, i = size_parts(fp32), size_parts(q)
    for parts, data in ((f, fp32), (i, q)):
        assert abs(sum(parts.values()) - len(data)) <= 16 and all(v >= 0 for v in parts.values())
    assert f["quantization"] == 0 and i["quantization"] > 0
    assert f["weights"] > 0.9 * len(fp32)
    assert 0.24 < i["weights"] / f["weights"] < 0.27  # one byte for four, plus each tensor's framing
    assert 0.8 < i["biases"] / f["biases"] < 1.2
    assert i["graph"] > f["graph"]  # Quantize and Dequantize nodes
    r = {"fp32": {"size_bytes": len(fp32), "size_parts": f}, "int8": {"size_bytes": len(q), "size_parts": i}}
    text = size_parts_text(r)
    assert f"weights {i['weights'] / len(fp32):.3f}" in text and "scales and zero points" in text
    assert size_parts_text({"fp32": {"size_bytes": 1}}) is None


def test_hard_activations_rewritten_for_int8_compute_the_same_in_float(trained, digits):
    """Add/Clip/Mul for hard-sigmoid and hard-swish, and the SE gate's shift moved into its
    convolution's bias, give the float model's outputs (before any quantization)."""
    import collections

    import onnx
    import onnxruntime as ort

    from hwnas.exporters.onnx_io import to_onnx
    from hwnas.latency.onnx_rewrites import hard_activations_to_int8_ops

    x = digits.prepare(digits.train_x[:32]).numpy()
    fp32 = to_onnx(trained, torch.from_numpy(x[:1]))
    model = onnx.load_from_string(fp32)
    before = collections.Counter(n.op_type for n in model.graph.node)
    assert before["HardSigmoid"] > 0 and before["HardSwish"] > 0  # SE gates and hard-swish both present
    assert hard_activations_to_int8_ops(model) == before["HardSwish"] + before["HardSigmoid"]
    after = collections.Counter(n.op_type for n in model.graph.node)
    assert "HardSigmoid" not in after and "HardSwish" not in after
    assert after["Add"] == before["Add"] + before["HardSwish"]  # no Add for an SE gate
    onnx.checker.check_model(model, full_check=True)

    def run(m: bytes):
        sess = ort.InferenceSession(m, providers=["CPUExecutionProvider"])
        return sess.run(None, {sess.get_inputs()[0].name: x})[0]

    np.testing.assert_allclose(run(model.SerializeToString()), run(fp32), rtol=1e-4, atol=1e-4)


def test_folding_a_constant_multiply_into_the_dequantize_scale_keeps_the_values():
    """Dequantize -> Mul(c) -> Quantize -> Dequantize equals Dequantize with c times the scale,
    on every uint8 input value, without the requantization step."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from hwnas.latency.onnx_rewrites import FOLD_PREFIX, fold_scales_into_dequantize

    def init(name, v, dtype):
        return numpy_helper.from_array(np.array(v, dtype=dtype), name)

    c, s, z, s2, z2 = 1 / 6, 6 / 255, 0, 1 / 255, 0
    nodes = [helper.make_node("DequantizeLinear", ["q", "s", "z"], ["x"]),
             helper.make_node("Mul", ["x", "c"], ["y"], name=FOLD_PREFIX + "0"),
             helper.make_node("QuantizeLinear", ["y", "s2", "z2"], ["q2"]),
             helper.make_node("DequantizeLinear", ["q2", "s2", "z2"], ["out"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("q", TensorProto.UINT8, [256])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [256])],
                              [init("s", s, np.float32), init("z", z, np.uint8), init("c", c, np.float32),
                               init("s2", s2, np.float32), init("z2", z2, np.uint8)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    q = np.arange(256, dtype=np.uint8)

    def run(m):
        sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
        return sess.run(None, {"q": q})[0]

    before = run(model)
    assert fold_scales_into_dequantize(model) == 1
    assert [n.op_type for n in model.graph.node] == ["DequantizeLinear"]
    onnx.checker.check_model(model)
    after = run(model)
    np.testing.assert_allclose(after, q * s * c, rtol=1e-6)
    assert np.abs(after - before).max() <= s2 / 2 + 1e-7  # only the dropped requantization's rounding


def test_unwritable_output_folder_is_refused_before_any_work(trained, digits, tmp_path, monkeypatch):
    import os

    from hwnas.errors import UserError

    ro = tmp_path / "ro"
    ro.mkdir()
    real = os.access
    monkeypatch.setattr("hwnas.fileio.os.access", lambda p, mode: False if Path(p) == ro else real(p, mode))
    with pytest.raises(UserError, match="not writable"):
        export(trained, _data(digits), ro / "m.onnx", ExportOptions(quantize="none", latency=None))
    assert list(ro.iterdir()) == []


def test_int8_slower_than_fp32_is_said_with_the_way_out(tmp_path):
    from hwnas.exporters.pipeline import int8_slower_note

    assert int8_slower_note({"size_ratio": 0.4, "latency_ratio": 0.83}, tmp_path / "m.fp32.onnx") is None
    assert int8_slower_note({"size_ratio": 0.4}, None) is None  # latency not measured
    note = int8_slower_note({"size_ratio": 0.4, "latency_ratio": 1.36}, tmp_path / "m.fp32.onnx")
    assert "1.36x" in note and "x0.40" in note and "m.fp32.onnx" in note
    assert "--quantize none" in int8_slower_note({"size_ratio": 0.4, "latency_ratio": 1.2}, None)


def test_an_nb201_shift_quantizes_as_an_integer_add():
    """The BatchNormalization an nb201 cell writes for a shift in a sum with no convolution
    (unit scale and variance, zero mean and epsilon) becomes an Add before quantization: the
    INT8 graph keeps no float BatchNormalization and computes what the float one does."""
    import onnx
    import onnxruntime as ort

    from hwnas.exporters.onnx_io import to_onnx
    from hwnas.latency.int8 import QuantizeOptions, quantize_int8
    from hwnas.space.nb201 import parse_cell
    from hwnas.space.nb201_modules import Cell

    ops = parse_cell("|none~0|+|nor_conv_1x1~0|nor_conv_1x1~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|")
    torch.manual_seed(0)
    cell = Cell(ops, 8)
    for bn in (m for m in cell.modules() if isinstance(m, torch.nn.BatchNorm2d)):
        bn.bias.data.normal_()
    cell.eval()
    x = torch.randn(64, 8, 6, 6)
    fp32 = to_onnx(cell, x)
    assert "BatchNormalization" in {n.op_type for n in onnx.load_from_string(fp32).graph.node}
    int8 = quantize_int8(fp32, x.numpy(), QuantizeOptions(method="minmax"))
    kinds = {n.op_type for n in onnx.load_from_string(int8).graph.node}
    assert "BatchNormalization" not in kinds and "Add" in kinds
    got = ort.InferenceSession(int8, providers=["CPUExecutionProvider"]).run(None, {"input": x.numpy()})[0]
    with torch.no_grad():
        want = cell(x).numpy()
    assert np.abs(got - want).max() < 0.05 * np.abs(want).max()


def test_plain_timing_checks_the_budget_in_the_users_units(trained, digits, tmp_path):
    res = export(trained, _data(digits), tmp_path / "m.onnx", ExportOptions(quantize="none", protocol=FAST,
                                                                           latency_budget_ms=1000.0, plain=True))
    r = json.loads(res.paths.report_json.read_text())
    p = r["plain"]["fp32"]
    assert p["calls"] == 300 and p["p90_ms"] >= p["median_ms"] > 0
    assert p["sessions"] == 3 and min(p["session_medians_ms"]) <= p["median_ms"] <= max(p["session_medians_ms"])
    # the verdict is on the plain median; the protocol's estimate stays beside it
    assert r["latency_ms"] == p["median_ms"] and r["latency_protocol_ms"] == r["fp32"]["latency_ms"]
    assert "plain timing" in r["budget_checked_on"] and r["meets_budget"] is True
    assert "Plain timing" in res.paths.report_md.read_text() and "median of 3 fresh processes" in res.paths.report_md.read_text()
