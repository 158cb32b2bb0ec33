"""INT8 tables: every block and network timed as the export's INT8 file (`hwnas profile --dtype int8`)."""

import copy
import json

import numpy as np
import onnx
import pytest

from hwnas.errors import UserError
from hwnas.latency import LatencyPredictor, load_table
from hwnas.latency.backends import get_backend, timing_onnx
from hwnas.latency.profiler import int8_calibration_images, profile
from hwnas.latency.profiling import partial_path

from conftest import run_cli as run
from latency_helpers import FAST, tiny_mbconv


def _graph(model: bytes) -> tuple:
    """Nodes (type, inputs, outputs) and initializer values: what runs, without producer metadata."""
    from onnx import numpy_helper

    g = onnx.load_from_string(model).graph
    return ([(n.op_type, list(n.input), list(n.output)) for n in g.node],
            {t.name: numpy_helper.to_array(t).tobytes() for t in g.initializer})


def _ops(model: bytes) -> set[str]:
    return {n.op_type for n in onnx.load_from_string(model).graph.node}


def test_int8_needs_an_onnx_runtime_backend():
    with pytest.raises(UserError, match="ONNX Runtime.*--backend ort-cpu"):
        get_backend("torch-cpu", dtype="int8")
    with pytest.raises(UserError, match="float32 or int8"):
        get_backend("ort-cpu", dtype="fp16")
    assert get_backend("ort-cpu", dtype="int8").describe()["dtype"] == "int8"


def test_a_block_is_timed_as_the_export_quantizes_it():
    from hwnas.latency.backends import prepare_for_timing
    from hwnas.latency.int8 import quantize_int8, synthetic_calibration
    from hwnas.latency.onnx_export import export_onnx_bytes

    space = tiny_mbconv()
    block = space.all_latency_terms()[1]
    built = space.build_block(block)
    fp32 = timing_onnx(copy.deepcopy(built), block.input_shape)
    int8 = timing_onnx(copy.deepcopy(built), block.input_shape, dtype="int8")
    assert "QuantizeLinear" not in _ops(fp32) and {"QuantizeLinear", "DequantizeLinear"} <= _ops(int8)
    # the same serializer (dynamic batch axis, as the exported file) and the same quantizer call
    module = prepare_for_timing(copy.deepcopy(built), block.input_shape)
    expected = quantize_int8(export_onnx_bytes(module, (1, *block.input_shape), dynamic_batch=True),
                             synthetic_calibration(block.input_shape))
    assert _graph(int8) == _graph(expected)
    dim = onnx.load_from_string(int8).graph.input[0].type.tensor_type.shape.dim[0]
    assert dim.dim_param == "batch"


def test_whole_networks_calibrate_on_real_images():
    space = tiny_mbconv()
    images = int8_calibration_images(space, "digits", seed=0)
    assert images.shape == (32, *space.input_shape) and images.std() > 0.1
    # digits are not noise: the real images give other activation ranges, hence other scales
    built = space.build(space.sample(0))
    real = timing_onnx(copy.deepcopy(built), space.input_shape, dtype="int8", images=images)
    noise = timing_onnx(copy.deepcopy(built), space.input_shape, dtype="int8")
    assert real != noise and _ops(real) == _ops(noise)


def test_int8_table_builds_predicts_and_resumes_only_as_int8(tmp_path):
    space = tiny_mbconv()
    out = tmp_path / "int8.json"

    def stop(phase, done, total):
        if phase == "block" and done == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        profile(space, get_backend("ort-cpu", dtype="int8"), out, n_calibrate=3, n_validate=2, protocol=FAST,
                on_progress=stop)
    header = json.loads(partial_path(out).read_text().splitlines()[0])["header"]
    assert header["backend"]["dtype"] == "int8" and header["int8"]["calibration_data"] == "digits"
    # the unfinished INT8 run is not continued as a float32 table
    with pytest.raises(UserError):
        profile(space, get_backend("ort-cpu"), out, n_calibrate=3, n_validate=2, protocol=FAST)
    table = profile(space, get_backend("ort-cpu", dtype="int8"), out, n_calibrate=3, n_validate=2, protocol=FAST,
                    plain_sessions=2)
    loaded = load_table(out)
    assert loaded.backend["dtype"] == "int8" and loaded.extra["int8"]["images"] == 32
    assert set(loaded.entries) == {b.key for b in space.all_latency_terms()}
    assert LatencyPredictor(loaded).predict(space.sample(1)) > 0
    # an INT8 table is calibrated on plain timings of its networks, not converted by a line
    units = loaded.extra["units"]
    assert units["latency"] == "plain" and units["fit"] == "direct" and units["sessions"] == 2
    assert (units["plain_factor"], units["plain_offset_ms"]) == (1.0, 0.0)
    assert [n["role"] for n in units["networks"]] == ["reference", "calibration", "calibration", "calibration"]
    assert loaded.calibration["target"] == "plain" and loaded.validation["target"] == "plain"
    pred = LatencyPredictor(loaded)
    for row in loaded.calibration["networks"] + loaded.validation["networks"]:
        # the plain median of its sessions is what the fit saw, the protocol's reading kept beside it
        assert row["measured_ms"] == pytest.approx(float(np.median(row["session_medians_ms"])))
        assert row["protocol_ms"] > 0 and row["measured_ms"] != row["protocol_ms"]
        assert pred.predict(space.parse(row["arch"])) == pytest.approx(row["predicted_ms"])
    errors = [abs(v["predicted_ms"] / v["measured_ms"] - 1) for v in loaded.validation["networks"]]
    assert loaded.validation["mape"] == pytest.approx(float(np.mean(errors)))
    # the table's own backend, rebuilt from the file, is INT8 with the same calibration images
    from hwnas.latency.units import backend_of

    be = backend_of(table)
    assert be.dtype == "int8" and np.array_equal(be.calibration_images, int8_calibration_images(space, "digits", 0))


def test_calibrate_on_protocol_keeps_the_line_and_bad_values_are_refused(tmp_path):
    space = tiny_mbconv()
    table = profile(space, get_backend("ort-cpu", dtype="int8"), tmp_path / "p.json", n_calibrate=3, n_validate=0,
                    protocol=FAST, plain_sessions=1, calibrate_on="protocol")
    assert table.extra["units"]["fit"] in ("line", "ratio") and "target" not in table.calibration
    with pytest.raises(UserError, match="--calibrate-on must be one of auto, plain, protocol"):
        profile(space, get_backend("ort-cpu"), tmp_path / "q.json", calibrate_on="line")
    assert not (tmp_path / "q.json").exists() and not partial_path(tmp_path / "q.json").exists()


def test_auto_calibrates_onnx_runtime_tables_on_plain_timings_and_eager_torch_on_the_protocol(tmp_path):
    space = tiny_mbconv()
    ort = profile(space, get_backend("ort-cpu"), tmp_path / "o.json", n_calibrate=3, n_validate=0, protocol=FAST,
                  plain_sessions=1)
    assert ort.extra["units"]["fit"] == "direct" and ort.calibration["target"] == "plain"
    assert all("protocol_ms" in r and r["plain_p90_ms"] >= r["measured_ms"] for r in ort.calibration["networks"])
    torch_table = profile(space, get_backend("torch-cpu"), tmp_path / "t.json", n_calibrate=3, n_validate=0,
                          protocol=FAST, plain_sessions=1)
    assert torch_table.extra["units"]["fit"] in ("line", "ratio") and "target" not in torch_table.calibration


def test_int8_bundle_carries_int8_files(tmp_path):
    from hwnas.latency.bundle import write_bundle
    from hwnas.latency.bundle_runner import run_bundle

    space = tiny_mbconv()
    bundle = write_bundle(space, tmp_path / "b", n_calibrate=2, n_validate=1, dtype="int8")
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["dtype"] == "int8" and manifest["int8"]["calibration_data"] == "digits"
    assert "QuantizeLinear" in _ops((bundle / manifest["blocks"][0]["file"]).read_bytes())
    assert "QuantizeLinear" in _ops((bundle / manifest["calibration"][0]["file"]).read_bytes())
    table = run_bundle(bundle, tmp_path / "t.json")
    assert table.backend["dtype"] == "int8" and table.extra["int8"] == manifest["int8"]
    # calibrated on the device on plain timings of every network file, as `hwnas profile --dtype int8`
    assert table.extra["units"]["fit"] == "direct" and table.calibration["target"] == "plain"
    assert all(len(r["session_medians_ms"]) == 5 for r in table.calibration["networks"] + table.validation["networks"])


def test_cli_int8_refusals(tmp_path, capsys):
    code, _, err = run(capsys, "profile", "--space", "mbv3-32", "--backend", "torch-cpu", "--dtype", "int8",
                       "--out", str(tmp_path / "t.json"))
    assert code == 2 and "ONNX Runtime" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    code, _, err = run(capsys, "profile", "--space", "mbv3-32", "--calibration-data", "digits", "--out",
                       str(tmp_path / "t.json"))
    assert code == 2 and "--dtype int8" in err
    assert not (tmp_path / "t.json").exists()
