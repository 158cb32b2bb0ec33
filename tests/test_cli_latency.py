"""The CLI of the foundation: list, sample, profile, latency, and one-line errors for bad input."""

import json

import pytest

from hwnas.latency.backends import get_backend
from hwnas.latency.profiler import profile

from latency_helpers import FAST, tiny_mbconv
from conftest import run_cli as run


@pytest.fixture(scope="module")
def tiny_table(tmp_path_factory):
    out = tmp_path_factory.mktemp("prof") / "tiny.json"
    profile(tiny_mbconv(), get_backend("ort-cpu"), out, n_calibrate=3, n_validate=3, protocol=FAST)
    return out


def test_list(capsys):
    code, out, _ = run(capsys, "list", "spaces", "--json")
    assert code == 0
    names = {json.loads(line)["name"] for line in out.splitlines()}
    assert {"mbv3-32", "mbv3-224", "nb201"} <= names
    code, out, _ = run(capsys, "list", "backends", "--json")
    rows = {json.loads(line)["name"]: json.loads(line) for line in out.splitlines()}
    assert {"torch-cpu", "torch-cuda", "ort-cpu", "ort"} <= set(rows)
    assert rows["ort-cpu"]["available"] is True


def test_sample_is_deterministic_jsonl(capsys):
    code, out1, _ = run(capsys, "sample", "--space", "mbv3-32", "--n", "4", "--seed", "3")
    code2, out2, _ = run(capsys, "sample", "--space", "mbv3-32", "--n", "4", "--seed", "3")
    assert code == code2 == 0 and out1 == out2
    lines = [json.loads(line) for line in out1.splitlines()]
    assert len(lines) == 4 and all(line["space"] == "mbv3-32" for line in lines)


def test_latency_predict_and_measure(capsys, tmp_path, tiny_table):
    space = tiny_mbconv()
    archs = tmp_path / "a.jsonl"
    archs.write_text("\n".join(space.sample(i).to_json() for i in range(3)) + "\n")
    code, out, err = run(capsys, "latency", "--profile", str(tiny_table), "--arch", str(archs), "--json")
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["id"] for r in rows] == [space.sample(i).id for i in range(3)]
    assert all(r["predicted_ms"] > 0 for r in rows)
    nb = tmp_path / "nb.jsonl"
    nb.write_text('{"space": "nb201", "cell": "|nor_conv_1x1~0|+|none~0|skip_connect~1|+|none~0|none~1|avg_pool_3x3~2|"}\n')
    code, out, err = run(capsys, "latency", "--space", "nb201", "--backend", "ort-cpu", "--measure", "--arch", str(nb), "--json")
    assert code == 0, err
    row = json.loads(out)
    assert row["measured_ms"] > 0 and row["iqr_ms"] >= 0 and len(row["id"]) == 12


def test_profile_cli_writes_table_and_prints_validation(capsys, tmp_path):
    out = tmp_path / "nb.json"
    code, stdout, err = run(capsys, "profile", "--space", "nb201", "--backend", "torch-cpu", "--calibrate", "3",
                            "--validate", "2", "--plain-sessions", "1", "--out", str(out))
    assert code == 0, err
    assert out.is_file() and "Kendall tau" in stdout and "within ±10%" in stdout
    assert json.loads(out.read_text())["units"]["sessions"] == 1


BAD = [
    (["profile", "--space", "nope", "--out", "{tmp}/t.json"], "unknown space"),
    (["profile", "--space", "nb201", "--backend", "tpu", "--out", "{tmp}/t.json"], "unknown backend"),
    (["profile", "--space", "nb201", "--backend", "ort", "--provider", "FooExecutionProvider", "--out", "{tmp}/t.json"], "not available"),
    (["profile", "--space", "nb201", "--threads", "0", "--out", "{tmp}/t.json"], "--threads"),
    (["profile", "--space", "nb201", "--plain-sessions", "0", "--out", "{tmp}/t.json"], "--plain-sessions"),
    (["profile", "--space", "nb201", "--out", "{tmp}/missing/t.json"], "does not exist"),
    (["latency", "--profile", "{tmp}/truncated.json", "--arch", "{tmp}/ok.jsonl"], "not valid JSON"),
    (["latency", "--profile", "{table}", "--space", "nb201", "--arch", "{tmp}/ok.jsonl"], "not 'nb201'"),
    (["latency", "--profile", "{table}", "--arch", "{tmp}/badchoice.jsonl"], "line 1"),
    (["latency", "--profile", "{table}", "--arch", "{tmp}/notjson.jsonl"], "not JSON"),
    (["latency", "--space", "nb201", "--measure", "--threads", "0", "--arch", "{tmp}/nb.jsonl"], "--threads"),
    (["sample", "--space", "nope"], "unknown space"),
    (["list", "things"], "things"),
]


@pytest.mark.parametrize("args,needle", BAD)
def test_bad_input_is_one_line_and_exit_2(capsys, tmp_path, tiny_table, args, needle):
    space = tiny_mbconv()
    text = tiny_table.read_text()
    (tmp_path / "truncated.json").write_text(text[: len(text) // 3])
    (tmp_path / "ok.jsonl").write_text(space.sample(0).to_json() + "\n")
    d = space.sample(0).to_dict()
    d["kernels"][0] = [9] * len(d["kernels"][0])
    (tmp_path / "badchoice.jsonl").write_text(json.dumps(d) + "\n")
    (tmp_path / "notjson.jsonl").write_text("depths: 1\n")
    (tmp_path / "nb.jsonl").write_text('"|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"\n')
    before = set(p.name for p in tmp_path.iterdir())
    argv = [a.format(tmp=tmp_path, table=tiny_table) for a in args]
    code, out, err = run(capsys, *argv)
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], err
    assert "Traceback" not in err
    assert set(p.name for p in tmp_path.iterdir()) == before  # nothing half-written


def test_profile_output_says_whether_the_activation_term_is_used(capsys, tiny_table):
    from hwnas.cli.latency_cmds import print_validation
    from hwnas.latency import load_table

    table = load_table(tiny_table)
    table.calibration = {**table.calibration, "ms_per_act_mb": 0.0706,
                         "act_term": {"kept": True, "loo_mape_without": 0.030, "loo_mape_with": 0.025, "fitted_ms_per_mb": 0.0706}}
    print_validation(table, "t.json")
    assert "70.6 us (leave-one-out 3.0% -> 2.5%)" in capsys.readouterr().out
    table.calibration["act_term"] = {"kept": False, "loo_mape_without": 0.026, "loo_mape_with": 0.025, "fitted_ms_per_mb": -0.14}
    print_validation(table, "t.json")
    assert "not used (fitted -140.0 us)" in capsys.readouterr().out


def test_sample_and_measure_take_space_settings(capsys, tmp_path):
    """A changed space (as profiled and searched with --space-settings) can be sampled and its
    archs measured: its archs do not parse in the preset."""
    settings = json.dumps({"strides": [1, 2], "widths": [[8, 16], [16]], "se": [False, True], "acts": ["relu", "hswish"],
                           "depths": [1, 2], "kernels": [3], "expands": [3], "stem_channels": 8, "head_channels": 32})
    code, sampled, err = run(capsys, "sample", "--space", "mbv3-32", "--space-settings", settings, "--n", "2", "--seed", "1")
    assert code == 0, err
    from hwnas.space import as_rng

    space, rng = tiny_mbconv(), as_rng(1)
    assert [json.loads(line)["id"] for line in sampled.splitlines()] == [space.sample(rng).id for _ in range(2)]
    archs = tmp_path / "a.jsonl"
    archs.write_text(sampled)
    code, out, err = run(capsys, "latency", "--space", "mbv3-32", "--space-settings", settings, "--measure",
                         "--arch", str(archs), "--json")
    assert code == 0, err
    assert [json.loads(line)["id"] for line in out.splitlines()] == [json.loads(line)["id"] for line in sampled.splitlines()]
    code, _, err = run(capsys, "latency", "--space", "mbv3-32", "--measure", "--arch", str(archs), "--json")
    assert code == 2 and len(err.strip().splitlines()) == 1  # the preset's choices do not hold these archs
    code, _, err = run(capsys, "sample", "--space", "mbv3-32", "--space-settings", "{bad")
    assert code == 2 and "--space-settings is not JSON" in err
