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
from hwnas.latency.units import PLAIN, PROTOCOL, latency_units, rescale_table, units_note

from latency_helpers import FAST, tiny_mbconv
from conftest import run_cli as run


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    """A tiny ORT table in plain units and the same build without the plain step (older units)."""
    d = tmp_path_factory.mktemp("plain")
    plain = profile(tiny_mbconv(), get_backend("ort-cpu"), d / "plain.json", n_calibrate=4, n_validate=0, protocol=FAST)
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


def test_new_tables_are_in_plain_units_and_predictions_carry_the_factor(tables):
    _, plain, old = tables
    assert latency_units(plain) == PLAIN and units_note(plain, "p.json") is None
    u = plain.extra["units"]
    assert len(u["networks"]) == 5 and u["networks"][0]["role"] == "reference"
    assert u["plain_factor"] == pytest.approx(np.median([r["ratio"] for r in u["networks"]]))
    # the block entries are the protocol's; predictions are them times the factor
    space = plain.get_space()
    arch = space.largest()
    unconverted = dict(plain.extra)
    unconverted.pop("units")
    bare = type(plain)(**{**plain.__dict__, "extra": unconverted})
    assert LatencyPredictor(plain).predict(arch) == pytest.approx(u["plain_factor"] * LatencyPredictor(bare).predict(arch))


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
    code, _, err = run(capsys, "profile", "check", str(d / "plain.json"), "--rescale", "--out", str(d / "plain.json"))
    assert code == 2 and "new file" in err


def test_latency_measure_plain(tables, capsys, tmp_path):
    from hwnas.space import get_space

    space = get_space("mbv3-32")
    archs = tmp_path / "a.jsonl"
    archs.write_text("\n".join(json.dumps(a.to_dict()) for a in (space.smallest(), space.smallest())) + "\n")
    code, out, err = run(capsys, "latency", "--arch", str(archs), "--space", "mbv3-32", "--measure", "--plain", "--json")
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert len(rows) == 2 and all(r["plain_p90_ms"] >= r["plain_median_ms"] > 0 for r in rows)
    # the same network twice, each in a session of its own: the same time up to the noise
    assert 0.5 < rows[0]["plain_median_ms"] / rows[1]["plain_median_ms"] < 2.0
    code, _, err = run(capsys, "latency", "--arch", str(archs), "--profile", str(tables[0] / "plain.json"), "--plain")
    assert code == 2 and "--measure" in err


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
