"""Ctrl-C in a long command: one line saying what was kept and how to go on, exit code 130, and
the next run refusing what it must."""

from __future__ import annotations

import json

import pytest

from hwnas.cli.main import main
from hwnas.latency.profiling import partial_path

from conftest import nb201_csv_path


def cli(capsys, *args):
    with pytest.raises(SystemExit) as e:
        main(list(args))
    cap = capsys.readouterr()
    return e.value.code, cap.out, cap.err


def _profile_args(out, *extra):
    return ["profile", "--space", "nb201", "--backend", "ort-cpu", "--out", str(out), *extra]


def test_ctrl_c_before_the_first_measurement_says_so_and_other_settings_are_refused_next(tmp_path, capsys, monkeypatch):
    import hwnas.latency.profiler as profiler

    out = tmp_path / "t.json"

    def ctrl_c(*a, **k):  # while the blocks are being built, before anything is timed
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(profiler, "build_tasks", ctrl_c)
        code, _, err = cli(capsys, *_profile_args(out))
    assert code == 130
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("interrupted; nothing was measured yet")
    assert partial_path(out).is_file() and str(partial_path(out)) in lines[0]
    def no_work(*a, **k):
        raise AssertionError("blocks were built before other settings were refused")

    monkeypatch.setattr(profiler, "build_tasks", no_work)
    code, _, err = cli(capsys, *_profile_args(out, "--seed", "1"))
    assert code == 2 and "other settings" in err and "seed" in err and len(err.strip().splitlines()) == 1


def test_ctrl_c_before_any_journal_claims_none(tmp_path, capsys, monkeypatch):
    import hwnas.latency.profiler as profiler

    out = tmp_path / "t.json"

    def ctrl_c(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(profiler, "device_fingerprint", ctrl_c)
    code, _, err = cli(capsys, *_profile_args(out))
    assert code == 130 and "nothing was measured or kept" in err and "partial.jsonl" not in err
    assert not partial_path(out).exists()


def test_ctrl_c_after_measurements_counts_them(tmp_path):
    from hwnas.cli.latency_cmds import kept_text

    out = tmp_path / "t.json"
    partial_path(out).write_text("\n".join(json.dumps(r) for r in (
        {"header": {}}, {"kind": "block", "key": "a"}, {"kind": "block", "key": "b"})) + "\n")
    assert kept_text(str(out)).startswith(f"2 measurement(s) are kept in {partial_path(out)}")


def test_ctrl_c_during_search_says_how_to_resume(tmp_path, capsys, monkeypatch):
    csv = nb201_csv_path()
    if not csv.is_file():
        pytest.skip(f"NAS-Bench-201 table not found at {csv} (set HWNAS_SHARED_DATA)")
    from hwnas.search.setup import SearchSetup

    out = tmp_path / "runs" / "cut"
    argv = ["search", "--space", "nb201", "--profile", f"table:{csv}#lat_pixel3", "--latency-ms", "8",
            "--evaluator", f"table:{csv}#c10_test", "--strategy", "random", "--budget-evals", "6", "--out", str(out)]
    evaluate = SearchSetup.evaluate
    calls = {"n": 0}

    def stop_at_the_fourth(self, g):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return evaluate(self, g)

    with monkeypatch.context() as m:
        m.setattr(SearchSetup, "evaluate", stop_at_the_fourth)
        code, _, err = cli(capsys, *argv)
    assert code == 130
    lines = err.strip().splitlines()
    assert lines[-1].startswith("interrupted; 3 evaluated candidate(s) are kept in") and "--resume" in lines[-1]
    assert "\ninterrupted\n" not in err + "\n"  # said once
    code, _, err = cli(capsys, *argv, "--resume")
    assert code == 0, err
    assert len((out / "journal.jsonl").read_text().splitlines()) == 6
