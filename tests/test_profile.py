"""Real profiles of a tiny space: the whole flow in seconds, resume, bundles without torch."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from hwnas.errors import UserError
from hwnas.latency import LatencyPredictor, load_table
from hwnas.latency.backends import get_backend
from hwnas.latency.bundle import write_bundle
from hwnas.latency.profiler import profile
from hwnas.latency.profiling import partial_path

from latency_helpers import FAST, tiny_mbconv


@pytest.mark.parametrize("backend", ["ort-cpu", "torch-cpu"])
def test_real_profile_of_a_tiny_space(tmp_path, backend):
    space = tiny_mbconv()
    out = tmp_path / "t.json"
    table = profile(space, get_backend(backend), out, n_calibrate=4, n_validate=4, protocol=FAST, plain_sessions=1)
    assert out.is_file() and not partial_path(out).exists()
    loaded = load_table(out)
    assert set(loaded.entries) == {b.key for b in space.all_latency_terms()}
    assert all(e.latency_ms > 0 and e.count > 0 for e in loaded.entries.values())
    assert all(e.act_mb > 0 for e in loaded.entries.values())  # activation traffic recorded per block
    v = loaded.validation
    assert v["n"] == 4 and 0 <= v["within_10pct"] <= 1 and -1 <= v["kendall_tau"] <= 1
    assert {n["id"] for n in v["networks"]}.isdisjoint({n["id"] for n in loaded.calibration["networks"]})
    assert loaded.backend["name"] == backend and loaded.backend["threads"] == 1
    for key in ("cpu_model", "cores", "os", "torch", "onnxruntime"):
        assert key in loaded.fingerprint
    pred = LatencyPredictor(loaded)  # rebuilds the tiny space from the stored configuration
    assert pred.predict(space.sample(0)) > 0
    # existing output is not overwritten without force
    with pytest.raises(UserError, match="already exists"):
        profile(space, get_backend(backend), out, protocol=FAST, plain_sessions=1)


def test_interrupted_profile_resumes_where_it_stopped(tmp_path):
    space = tiny_mbconv()
    out = tmp_path / "t.json"
    seen = []

    def stop_after_some(phase, done, total):
        seen.append((phase, done))
        if phase == "block" and done == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        profile(space, get_backend("ort-cpu"), out, n_calibrate=3, n_validate=2, protocol=FAST, plain_sessions=1,
                on_progress=stop_after_some)
    assert not out.exists()
    journal = [json.loads(line) for line in partial_path(out).read_text().splitlines()]
    assert "header" in journal[0] and len([r for r in journal if r.get("kind") == "block"]) == 5

    measured_again = []

    def count(phase, done, total):
        measured_again.append((phase, done, total))

    table = profile(space, get_backend("ort-cpu"), out, n_calibrate=3, n_validate=2, protocol=FAST, plain_sessions=1, on_progress=count)
    n_blocks = len(space.all_latency_terms())
    # progress restarts at the 5 kept entries: only the rest were measured
    block_events = [d for p, d, t in measured_again if p == "block"]
    assert block_events[0] == 5 and block_events[-1] == n_blocks
    # kept measurements are reused, expressed on the run's one reference scale
    ref_ms = table.extra["reference"]["latency_ms"]
    kept = {r["key"]: r["ratio"] for r in journal if r.get("kind") == "block"}
    assert all(table.entries[k].latency_ms == pytest.approx(v * ref_ms) for k, v in kept.items())
    assert not partial_path(out).exists()


def test_resume_with_other_settings_is_refused(tmp_path):
    space = tiny_mbconv()
    out = tmp_path / "t.json"

    def stop(phase, done, total):
        if phase == "block" and done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        profile(space, get_backend("ort-cpu"), out, protocol=FAST, plain_sessions=1, n_calibrate=3, n_validate=2, on_progress=stop)
    with pytest.raises(UserError, match="other settings"):
        profile(space, get_backend("torch-cpu"), out, protocol=FAST, plain_sessions=1, n_calibrate=3, n_validate=2)
    # --force starts over
    profile(space, get_backend("torch-cpu"), out, protocol=FAST, plain_sessions=1, n_calibrate=3, n_validate=2, force=True)
    assert load_table(out).backend["name"] == "torch-cpu"


NO_TORCH = textwrap.dedent("""
    import sys
    class _Block:
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ImportError("torch is not installed on this device")
    sys.meta_path.insert(0, _Block())
""")


def test_bundle_runs_without_torch(tmp_path):
    space = tiny_mbconv()
    bundle = write_bundle(space, tmp_path / "bundle", n_calibrate=3, n_validate=3)
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert len(manifest["blocks"]) == len(space.all_latency_terms())
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(NO_TORCH)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    # the block really works: importing torch fails in that interpreter
    probe = subprocess.run([sys.executable, "-c", "import torch"], env=env, capture_output=True, text=True)
    assert probe.returncode != 0 and "not installed on this device" in probe.stderr
    out = tmp_path / "device.json"
    code = ("import sys; from hwnas.cli.main import main; main(sys.argv[1:])")
    r = subprocess.run([sys.executable, "-c", code, "profile", "run-bundle", str(bundle), "--out", str(out)],
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "torch" not in r.stderr.lower() or "not installed" not in r.stderr
    table = load_table(out)
    assert set(table.entries) == {b["key"] for b in manifest["blocks"]}
    assert all(table.entries[b["key"]].act_mb == b["act_mb"] > 0 for b in manifest["blocks"])
    assert table.validation["n"] == 3
    assert LatencyPredictor(table, space).predict(space.sample(1)) > 0
    # the standalone runner (numpy + onnxruntime only) writes the same format
    out2 = tmp_path / "device2.json"
    r = subprocess.run([sys.executable, "-m", "hwnas.latency.bundle_runner", str(bundle), "--out", str(out2)],
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert set(load_table(out2).entries) == set(table.entries)


def test_bundle_errors(tmp_path):
    from hwnas.latency.bundle_runner import run_bundle

    with pytest.raises(UserError, match="not a profile bundle"):
        run_bundle(tmp_path, tmp_path / "t.json")
    space = tiny_mbconv()
    bundle = write_bundle(space, tmp_path / "b", n_calibrate=2, n_validate=0)
    (bundle / "blocks" / "0000.onnx").unlink()
    with pytest.raises(UserError, match="incomplete"):
        run_bundle(bundle, tmp_path / "t.json")
    with pytest.raises(UserError, match="already exists"):
        write_bundle(space, bundle)


def test_exported_model_is_measured_on_the_tables_scale(tmp_path):
    from hwnas.latency.backends import export_onnx_bytes, prepare_for_timing
    from hwnas.latency.measure import measure_onnx_for_table

    space = tiny_mbconv()
    table = profile(space, get_backend("ort-cpu"), tmp_path / "t.json", n_calibrate=4, n_validate=0, protocol=FAST, plain_sessions=1)
    assert table.extra["reference"]["latency_ms"] > 0
    arch = space.sample(5)
    model = export_onnx_bytes(prepare_for_timing(space.build(arch), space.input_shape), (1, *space.input_shape))
    m = measure_onnx_for_table(model, load_table(tmp_path / "t.json"), FAST)
    assert m["paired"] and m["latency_ms"] > 0 and m["reference_table_ms"] == table.extra["reference"]["latency_ms"]
    predicted = LatencyPredictor(table, space).predict(arch)
    assert 0.3 < m["latency_ms"] / predicted < 3  # same scale: no unit or overhead mix-up


def test_eager_torch_pairs_with_the_spaces_reference_block(tmp_path):
    from hwnas.latency.profiler import reference_task, with_backend_pairing
    from hwnas.latency.protocol import Protocol

    space = tiny_mbconv()
    torch_cpu, ort_cpu = get_backend("torch-cpu"), get_backend("ort-cpu")
    assert torch_cpu.paired and reference_task(space, torch_cpu).info == {"block": space.reference_block().to_dict()}
    # ONNX Runtime keeps its reference network and its protocol
    assert "arch" in reference_task(space, ort_cpu).info
    assert with_backend_pairing(Protocol(), ort_cpu) == Protocol()
    # eager torch: one session unless the caller chose otherwise
    assert with_backend_pairing(Protocol(), torch_cpu).sessions == 1
    assert with_backend_pairing(Protocol(sessions=3), torch_cpu).sessions == 3
    # and more calls per measurement than ONNX Runtime (its calls jitter more), unless chosen
    longer = with_backend_pairing(Protocol(), torch_cpu)
    assert longer.max_repeats > Protocol().max_repeats and longer.min_repeats > Protocol().min_repeats
    assert with_backend_pairing(Protocol(max_repeats=10, min_repeats=5), torch_cpu).max_repeats == 10

    out = tmp_path / "t.json"
    table = profile(space, torch_cpu, out, n_calibrate=4, n_validate=2, protocol=FAST, plain_sessions=1)
    ref = load_table(out).extra["reference"]
    assert ref["block"] == space.reference_block().to_dict() and ref["arch"] is None and ref["latency_ms"] > 0
    # every entry is a ratio to the reference block times its fastest time in the build
    assert all(e.latency_ms > 0 for e in table.entries.values())


def test_torch_module_is_measured_on_the_tables_scale(tmp_path):
    from hwnas.latency.measure import measure_module_for_table, measure_onnx_for_table

    space = tiny_mbconv()
    table = profile(space, get_backend("torch-cpu"), tmp_path / "t.json", n_calibrate=4, n_validate=0, protocol=FAST, plain_sessions=1)
    arch = space.sample(5)
    m = measure_module_for_table(space.build(arch), load_table(tmp_path / "t.json"), FAST)
    assert m["paired"] and m["reference_table_ms"] == table.extra["reference"]["latency_ms"]
    assert 0.3 < m["latency_ms"] / LatencyPredictor(table, space).predict(arch) < 3
    # a torch table from before pairing (no reference) measures unpaired, in ms of now
    table.extra = {"reference": {"arch": None, "latency_ms": None}}
    assert measure_module_for_table(space.build(arch), table, FAST)["paired"] is False
    # a reference block that the space cannot build is a clear error
    table.extra = {"reference": {"arch": None, "block": {"op": "warp", "input_shape": [8, 32, 32]}, "latency_ms": 0.5}}
    with pytest.raises(UserError, match="reference block does not fit"):
        measure_module_for_table(space.build(arch), table, FAST)
    # ONNX tables only: an eager-torch table is not paired with an ONNX Runtime reference
    with pytest.raises(UserError, match="measure_onnx_for_table"):
        measure_module_for_table(space.build(arch), load_table_ort(tmp_path, space), FAST)
    assert measure_onnx_for_table(_onnx(space, arch), load_table(tmp_path / "t.json"), FAST)["paired"] is False


def load_table_ort(tmp_path, space):
    profile(space, get_backend("ort-cpu"), tmp_path / "ort.json", n_calibrate=3, n_validate=0, protocol=FAST, plain_sessions=1)
    return load_table(tmp_path / "ort.json")


def _onnx(space, arch):
    from hwnas.latency.backends import export_onnx_bytes, prepare_for_timing

    return export_onnx_bytes(prepare_for_timing(space.build(arch), space.input_shape), (1, *space.input_shape))


def test_an_ort_table_takes_its_scale_beside_whole_networks(tmp_path, monkeypatch):
    # the reference network runs slower beside a network than beside a block (caches); the
    # table's milliseconds follow the networks, as `measure_archs` measures them later
    import hwnas.latency.profiling as profiling

    seen = {}
    real = profiling.rescale_to_reference

    def spy(results, kinds=None):
        ref = real(results, kinds)
        seen["kinds"], seen["ref"] = kinds, ref
        seen["network_refs"] = [r["ref_ms"] for k, r in results.items()
                                if k[0] in profiling.NETWORK_KINDS and r.get("ref_ms")]
        return ref

    monkeypatch.setattr(profiling, "rescale_to_reference", spy)
    table = profile(tiny_mbconv(), get_backend("ort-cpu"), tmp_path / "t.json", n_calibrate=3, n_validate=2, protocol=FAST, plain_sessions=1)
    assert seen["kinds"] == profiling.NETWORK_KINDS and len(seen["network_refs"]) == 5
    assert table.extra["reference"]["latency_ms"] == seen["ref"] == min(seen["network_refs"])


def test_profile_and_bundle_take_space_settings_as_every_command_does(tmp_path, capsys):
    """`--space-settings` on `hwnas profile` (and `profile bundle`): the table is of the changed
    space, and a search with the same settings accepts it."""
    from hwnas.cli.main import main
    from hwnas.space import get_space

    settings = {"strides": [1, 2], "widths": [[8, 16], [16]], "se": [False, True], "acts": ["relu", "hswish"],
                "depths": [1, 2], "kernels": [3], "expands": [3], "stem_channels": 8, "head_channels": 32,
                "image_size": 16}
    want = get_space("mbv3-32", **settings).config_hash()
    out = tmp_path / "t.json"

    def cli(*args):
        with pytest.raises(SystemExit) as e:
            main(list(args))
        return e.value.code, capsys.readouterr().err

    code, err = cli("profile", "--space", "mbv3-32", "--space-settings", json.dumps(settings), "--backend", "torch-cpu",
                    "--calibrate", "2", "--validate", "1", "--out", str(out))
    assert code in (0, None), err
    assert load_table(out).space["config_hash"] == want
    code, err = cli("search", "--space", "mbv3-32", "--space-settings", json.dumps(settings), "--profile", str(out),
                    "--evaluator", "zc:params", "--budget-evals", "2", "--no-check-profile", "--out", str(tmp_path / "run"))
    assert code in (0, None), err
    code, err = cli("profile", "bundle", "--space", "mbv3-32", "--space-settings", json.dumps(settings), "--calibrate", "1",
                    "--validate", "0", "--out", str(tmp_path / "bundle"))
    assert code in (0, None), err
    assert want in (tmp_path / "bundle" / "manifest.json").read_text()
    code, err = cli("profile", "--space", "mbv3-32", "--space-settings", "{bad", "--out", str(tmp_path / "x.json"))
    assert code == 2 and len(err.strip().splitlines()) == 1 and not (tmp_path / "x.json").exists(), err
