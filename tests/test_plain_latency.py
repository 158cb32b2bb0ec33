"""One meaning of latency_ms: plain timing in a fresh process, tables in plain units, older
tables converted, `hwnas profile check` and its rescale, the export's deploy choice and --plain."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from hwnas.latency import LatencyPredictor, load_table
from hwnas.latency.backends import export_onnx_bytes, get_backend
from hwnas.latency.plain import PlainFiles, plain_loop
from hwnas.latency.profiler import profile
from hwnas.latency.units import PLAIN, PROTOCOL, latency_units, plain_line, rescale_table, units_note

from latency_helpers import FAST, tiny_mbconv
from conftest import run_cli as run


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    """A tiny ORT table in plain units by the line conversion (``--calibrate-on protocol``) and the
    same build without the plain step (older units)."""
    d = tmp_path_factory.mktemp("plain")
    plain = profile(tiny_mbconv(), get_backend("ort-cpu"), d / "plain.json", n_calibrate=4, n_validate=0, protocol=FAST,
                    calibrate_on="protocol")
    old = profile(tiny_mbconv(), get_backend("ort-cpu"), d / "old.json", n_calibrate=4, n_validate=0, protocol=FAST,
                  plain_units_step=False)
    return d, plain, old


def _conv_onnx():
    import torch

    m = torch.nn.Sequential(torch.nn.Conv2d(3, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(32, 32, 3, padding=1))
    return export_onnx_bytes(m.eval(), (1, 3, 32, 32))


def test_plain_loop_times_every_call_on_the_wall_clock():
    r = plain_loop(lambda: time.sleep(0.002), calls=20, warmup=2, warmup_seconds=0.0)
    assert r["calls"] == 20
    assert r["median_ms"] >= 2.0  # a sleep never returns early
    assert r["p90_ms"] >= r["median_ms"]


def test_plain_timer_in_a_fresh_process_agrees_with_a_hand_timed_loop():
    from hwnas.latency.ort_runner import make_session

    model = _conv_onnx()
    sess = make_session(model)
    feed = {sess.get_inputs()[0].name: np.zeros((1, 3, 32, 32), np.float32)}

    def by_hand() -> float:
        for _ in range(20):
            sess.run(None, feed)
        t = []
        for _ in range(200):
            t0 = time.perf_counter()
            sess.run(None, feed)
            t.append(time.perf_counter() - t0)
        return float(np.median(t)) * 1e3

    before = by_hand()
    with PlainFiles() as files:
        files.add_onnx(model, (1, 3, 32, 32), calls=200)
        (plain,) = files.run()
    after = by_hand()
    hand = (before + after) / 2
    assert plain["calls"] == 200 and plain["p90_ms"] >= plain["median_ms"] > 0
    # the same loop in another process: equal up to the machine's noise (ratios, not times)
    assert 0.5 < plain["median_ms"] / hand < 2.0, (plain, before, after)


def test_several_sessions_are_the_median_of_their_medians():
    from hwnas.latency.plain import combine_sessions

    one = combine_sessions([{"median_ms": 1.0, "p90_ms": 1.2, "calls": 300}])
    assert one["median_ms"] == 1.0 and one["sessions"] == 1 and "session_spread" not in one
    r = combine_sessions([{"median_ms": m, "p90_ms": m + 0.1, "calls": 300} for m in (1.0, 1.6, 1.1)])
    assert r["median_ms"] == pytest.approx(1.1) and r["p90_ms"] == pytest.approx(1.2)
    assert r["sessions"] == 3 and r["session_medians_ms"] == [1.0, 1.6, 1.1]
    assert r["session_spread"] == pytest.approx(1.6)  # slowest / fastest session


def test_plain_timing_in_several_fresh_processes():
    with PlainFiles() as files:
        files.add_onnx(_conv_onnx(), (1, 3, 32, 32), calls=50)
        (r,) = files.run(sessions=2)
    assert r["sessions"] == 2 and len(r["session_medians_ms"]) == 2
    assert min(r["session_medians_ms"]) <= r["median_ms"] <= max(r["session_medians_ms"])
    assert r["session_spread"] >= 1.0
    from hwnas.errors import UserError

    with pytest.raises(UserError, match="at least one session"):
        files.run(sessions=0)


def test_new_tables_are_in_plain_units_and_predictions_carry_the_factor(tables):
    _, plain, old = tables
    assert latency_units(plain) == PLAIN and units_note(plain, "p.json") is None
    u = plain.extra["units"]
    assert len(u["networks"]) == 5 and u["networks"][0]["role"] == "reference"
    assert u["sessions"] == 3 and all(len(r["session_medians_ms"]) == 3 for r in u["networks"])
    f, b, how = plain_line([r["predicted_ms"] for r in u["networks"]], [r["plain_median_ms"] for r in u["networks"]])
    assert (u["plain_factor"], u["plain_offset_ms"], u["fit"]) == (f, b, how)
    # the block entries are the protocol's; predictions are them converted by the line
    space = plain.get_space()
    unconverted = dict(plain.extra)
    unconverted.pop("units")
    bare = type(plain)(**{**plain.__dict__, "extra": unconverted})
    for arch in (space.smallest(), space.largest()):
        assert LatencyPredictor(plain).predict(arch) == pytest.approx(f * LatencyPredictor(bare).predict(arch) + b)
        assert LatencyPredictor(plain).protocol_ms(arch) == pytest.approx(LatencyPredictor(bare).predict(arch))


def test_the_plain_conversion_is_a_robust_line():
    x = np.array([0.25, 0.55, 0.7, 0.8, 1.0, 1.4])
    f, b, how = plain_line(x, 1.3 * x - 0.15)
    assert how == "line" and f == pytest.approx(1.3) and b == pytest.approx(-0.15)
    y = 1.3 * x - 0.15
    y[3] *= 1.6  # one slow session: the line stays where the others are
    f, b, _ = plain_line(x, y)
    assert f == pytest.approx(1.3, rel=0.05) and b == pytest.approx(-0.15, abs=0.03)
    f, b, how = plain_line([1.0, 1.1, 1.2], [1.2, 1.3, 1.5])  # too narrow a span for a line: the median ratio
    assert how == "ratio" and b == 0.0 and f == pytest.approx(np.median([1.2, 1.3 / 1.1, 1.25]))
    # a line that would not stay positive over the networks is not used
    assert plain_line([0.1, 0.2, 2.0], [0.5, 0.02, 3.0])[2] == "ratio"


def test_rescaling_a_table_scales_its_plain_line(tables):
    _, plain, _ = tables
    t = rescale_table(plain, 1.0)
    t.extra["units"] = {**t.extra["units"], "plain_factor": 1.25, "plain_offset_ms": -0.05}
    space = t.get_space()
    archs = [space.smallest(), space.largest()]
    before = LatencyPredictor(t).predict_many(archs)
    np.testing.assert_allclose(LatencyPredictor(rescale_table(t, 1.3)).predict_many(archs), 1.3 * before, rtol=1e-12)


def test_an_older_table_loads_says_its_units_and_converts(tables):
    d, _, old = tables
    assert "units" not in old.extra and latency_units(old) == PROTOCOL
    assert "protocol units" in units_note(old, "old.json")
    space = old.get_space()
    archs = [space.smallest(), space.largest()]
    before = LatencyPredictor(old).predict_many(archs)
    conv = rescale_table(old, 1.17, {"drift": 0.17})
    conv.save(d / "converted.json")
    again = load_table(d / "converted.json")
    assert latency_units(again) == PLAIN and again.extra["units"]["converted_from"] == PROTOCOL
    np.testing.assert_allclose(LatencyPredictor(again).predict_many(archs), 1.17 * before, rtol=1e-12)
    assert again.extra["reference"]["latency_ms"] == pytest.approx(1.17 * old.extra["reference"]["latency_ms"])
    assert latency_units(old) == PROTOCOL  # the original is left as it was


def test_profile_check_flags_a_stale_table_and_rescale_restores_it(tables, capsys):
    d, plain, _ = tables
    stale = d / "stale.json"
    rescale_table(plain, 1 / 3).save(stale)  # predicts 3x faster than this machine runs
    code, out, err = run(capsys, "profile", "check", str(stale), "--json")
    assert code == 0, err
    r = json.loads(out)
    assert r["stale"] is True and r["drift"] > 0.5, r
    assert len(r["networks"]) == 5 and r["units"] == PLAIN  # the reference and the 4 calibration networks
    assert r["sessions"] == 3 and all(len(n["session_medians_ms"]) == 3 for n in r["networks"])
    fixed = d / "fixed.json"
    code, out, err = run(capsys, "profile", "check", str(stale), "--rescale", "--out", str(fixed), "--json")
    assert code == 0, err
    r2 = json.loads(out)
    factor = r2["rescaled"]["factor"]
    assert factor == pytest.approx(1 + r2["drift"])
    arch = plain.get_space().largest()
    assert LatencyPredictor(load_table(fixed)).predict(arch) == pytest.approx(
        factor * LatencyPredictor(load_table(stale)).predict(arch), rel=1e-9)
    code, out, err = run(capsys, "profile", "check", str(fixed), "--json")
    assert code == 0, err
    assert abs(json.loads(out)["drift"]) < abs(r["drift"]) / 2


def test_search_warns_about_a_stale_table_before_it_starts(tables, capsys):
    d, plain, _ = tables
    stale = d / "stale_for_search.json"
    rescale_table(plain, 1 / 3).save(stale)
    settings = {"strides": [1, 2], "widths": [[8, 16], [16]], "se": [False, True], "acts": ["relu", "hswish"],
                "depths": [1, 2], "kernels": [3], "expands": [3], "stem_channels": 8, "head_channels": 32}  # tiny_mbconv
    base = ["search", "--space", "mbv3-32", "--space-settings", json.dumps(settings), "--profile", str(stale),
            "--evaluator", "zc:params", "--budget-evals", "2"]
    code, out, err = run(capsys, *base, "--out", str(d / "run_checked"))
    assert code == 0, err
    warnings = [line for line in err.splitlines() if line.startswith("warning: this machine runs")]
    assert len(warnings) == 1 and "slower" in warnings[0] and "hwnas profile check" in warnings[0], err
    code, out, err = run(capsys, *base, "--out", str(d / "run_unchecked"), "--no-check-profile")
    assert code == 0, err
    assert "this machine runs" not in err
    code, out, err = run(capsys, *base[:-2], "--budget-evals", "0", "--out", str(d / "run_bad"))
    assert code == 2 and len(err.strip().splitlines()) == 1, err  # bad input: one line, no check first


def test_profile_check_refusals(tables, capsys):
    d, plain, _ = tables
    other = plain.to_dict()
    other["fingerprint"] = {**other["fingerprint"], "cpu_model": "Some Other CPU"}
    (d / "other.json").write_text(json.dumps(other))
    code, _, err = run(capsys, "profile", "check", str(d / "other.json"), "--rescale", "--out", str(d / "o2.json"))
    assert code == 2 and "another device" in err and len(err.strip().splitlines()) == 1
    assert not (d / "o2.json").exists()
    noref = plain.to_dict()
    noref.pop("reference")
    (d / "noref.json").write_text(json.dumps(noref))
    code, _, err = run(capsys, "profile", "check", str(d / "noref.json"))
    assert code == 2 and "no reference network" in err
    code, _, err = run(capsys, "profile", "check", str(d / "plain.json"), "--rescale")
    assert code == 2 and "--out" in err
    code, _, err = run(capsys, "profile", "check", str(d / "plain.json"), "--sessions", "0")
    assert code == 2 and "--sessions must be at least 1" in err and len(err.strip().splitlines()) == 1
    code, _, err = run(capsys, "profile", "check", str(d / "plain.json"), "--rescale", "--out", str(d / "plain.json"))
    assert code == 2 and "new file" in err


def test_latency_measure_plain(tables, capsys, tmp_path):
    from hwnas.space import get_space

    space = get_space("mbv3-32")
    archs = tmp_path / "a.jsonl"
    archs.write_text("\n".join(json.dumps(a.to_dict()) for a in (space.smallest(), space.smallest())) + "\n")
    code, out, err = run(capsys, "latency", "--arch", str(archs), "--space", "mbv3-32", "--measure", "--plain",
                         "--sessions", "2", "--json")
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert len(rows) == 2 and all(r["plain_p90_ms"] >= r["plain_median_ms"] > 0 for r in rows)
    assert all(r["session_spread"] >= 1.0 for r in rows)  # two fresh processes each
    for r in rows:  # each session's median shown, the reported time their median
        assert len(r["session_medians_ms"]) == 2
        assert r["plain_median_ms"] == pytest.approx(sum(r["session_medians_ms"]) / 2)
        assert r["session_spread"] == pytest.approx(max(r["session_medians_ms"]) / min(r["session_medians_ms"]))
    # the same network twice, each in a session of its own: the same time up to the noise
    assert 0.5 < rows[0]["plain_median_ms"] / rows[1]["plain_median_ms"] < 2.0
    code, _, err = run(capsys, "latency", "--arch", str(archs), "--profile", str(tables[0] / "plain.json"), "--plain")
    assert code == 2 and "--measure" in err
    code, _, err = run(capsys, "latency", "--arch", str(archs), "--space", "mbv3-32", "--measure", "--plain", "--sessions", "0")
    assert code == 2 and "--sessions must be at least 1" in err


def test_deploy_choice_picks_the_faster_truth():
    from hwnas.exporters.pipeline import deploy_choice

    base = {"fp32": {}, "int8": {}}
    slower = {**base, "int8_vs_fp32": {"latency_ratio": 1.34, "top1_drop_points": 0.1}}
    key, why = deploy_choice(slower, latency_budget_ms=2.0)
    assert key == "fp32" and "1.34x" in why
    faster = {**base, "int8_vs_fp32": {"latency_ratio": 0.7, "top1_drop_points": 0.3}}
    assert deploy_choice(faster, latency_budget_ms=2.0)[0] == "int8"
    lossy = {**base, "int8_vs_fp32": {"latency_ratio": 0.7, "top1_drop_points": 3.0}}
    key, why = deploy_choice(lossy, latency_budget_ms=2.0)
    assert key == "fp32" and "3.00 points" in why
    assert deploy_choice(slower, latency_budget_ms=None)[0] == "int8"  # no latency budget: the smaller file
    assert deploy_choice({"fp32": {}}, latency_budget_ms=2.0)[0] == "fp32"


def test_eager_torch_is_timed_with_a_steady_allocator():
    """Eager torch allocates every activation on every call; with glibc's dynamic thresholds some
    sessions return that memory to the OS after each call and fault it in again (1.2-2x slower).
    The plain timing's process fixes the thresholds, so a call with MBs of activations faults
    (almost) no pages in steady state."""
    import platform

    import torch

    from hwnas.latency.plain import steady_allocator

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        pytest.skip("the steady allocator is glibc's mallopt")
    assert steady_allocator() is True
    m = torch.nn.Sequential(torch.nn.Conv2d(3, 64, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(64, 64, 3, padding=1))
    with PlainFiles() as files:
        files.add_torch(m.eval(), (1, 3, 96, 96), calls=60)  # 2.4 MB per activation: 580 pages each
        (r,) = files.run()
    # steady: none, or one late growth of the heap (~1,150 faults in all); returning the memory to
    # the OS after every call, as glibc's default thresholds do here: about 2,200 per call
    assert r["calls"] == 60 and r["page_faults_per_call"] < 200, r
