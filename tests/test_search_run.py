"""`hwnas search` and `hwnas.search.run`: the run folder, resume after a kill, bad inputs."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from hwnas.search import run

FILES = ["config.json", "journal.jsonl", "pareto.json", "best.json", "pareto.png"]


from conftest import nb201_search_slice  # noqa: E402  (one place knows where shared data lives)


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    """A fixed slice of the shared table: its three columns a search needs, every cell."""
    return nb201_search_slice(tmp_path_factory)


def args(table, out, *extra):
    return ["search", "--space", "nb201", "--profile", f"table:{table}#lat_pixel3", "--latency-ms", "8",
            "--evaluator", f"table:{table}#c10_test", "--out", str(out), "--seed", "3", *extra]


def cli(argv, capsys):
    from hwnas.cli.main import main

    with pytest.raises(SystemExit) as e:
        main(argv)
    cap = capsys.readouterr()
    return e.value.code, cap.out, cap.err


def test_cli_writes_every_file(table, tmp_path, capsys):
    out = tmp_path / "run"
    code, stdout, _ = cli(args(table, out, "--strategy", "evolution", "--budget-evals", "30", "--population", "10",
                               "--sample-size", "3"), capsys)
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(FILES)
    journal = [json.loads(l) for l in (out / "journal.jsonl").read_text().splitlines()]
    assert len(journal) == 30 and [r["i"] for r in journal] == list(range(30))
    assert all(r["latency_ms"] <= 8 for r in journal)
    best = json.loads((out / "best.json").read_text())
    assert set(best) >= {"arch", "id", "accuracy", "latency_ms", "params", "flops"}
    assert best["accuracy"] == max(r["accuracy"] for r in journal)
    assert best["params"] > 0 and best["flops"] > 0
    front = json.loads((out / "pareto.json").read_text())["front"]
    assert best["id"] in {r["id"] for r in front}
    assert (out / "pareto.png").read_bytes()[:4] == b"\x89PNG"
    assert "best within budgets" in stdout
    # an existing run folder is not overwritten without --force
    code, _, err = cli(args(table, out, "--budget-evals", "30"), capsys)
    assert code == 2 and "--force" in err
    code, _, _ = cli(args(table, out, "--budget-evals", "5", "--force"), capsys)
    assert code == 0 and len((out / "journal.jsonl").read_text().splitlines()) == 5


@pytest.mark.parametrize("strategy", ["nsga2", "reinforce"])
def test_resume_after_interrupt_matches_uninterrupted(table, tmp_path, strategy):
    kw = dict(space="nb201", profile=f"table:{table}#lat_pixel3", evaluator=f"table:{table}#c10_test",
              strategy=strategy, budget_evals=30, seed=5, latency_budget_ms=8.0)
    full = run(out=tmp_path / "full", **kw)

    def stop_at_13(p):
        if p.evaluated == 13:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(out=tmp_path / "cut", progress=stop_at_13, **kw)
    assert len((tmp_path / "cut" / "journal.jsonl").read_text().splitlines()) == 13
    resumed = run(out=tmp_path / "cut", resume=True, **kw)
    assert resumed.resumed_from == 13
    assert (tmp_path / "cut" / "journal.jsonl").read_text() == (tmp_path / "full" / "journal.jsonl").read_text()
    assert resumed.best == full.best and resumed.pareto == full.pareto


def test_resume_after_kill_with_torn_last_line(table, tmp_path, capsys):
    out = tmp_path / "killed"
    # enough evaluations that the kill lands mid-run; a kill after the last journal line (while
    # the process writes its plots) must be recovered from just the same
    extra = ["--strategy", "evolution", "--budget-evals", "200", "--population", "10", "--sample-size", "3"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "hwnas.cli", *args(table, out, *extra)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    journal = out / "journal.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if journal.exists() and len(journal.read_text().splitlines()) >= 10:
            break
        time.sleep(0.05)
    killed = proc.poll() is None
    if killed:
        proc.send_signal(signal.SIGKILL)
    proc.wait()
    if not killed:
        pytest.skip("the run finished before it could be killed")
    n = len(journal.read_text().splitlines())
    assert 10 <= n <= 200
    with open(journal, "a") as f:
        f.write('{"accuracy": 0.9, "arch": {"cel')  # a write torn by the crash
    code, _, err = cli(args(table, out, *extra, "--resume"), capsys)
    assert code == 0
    assert f"recovered the {n} valid record(s)" in err
    ref = tmp_path / "ref"
    assert cli(args(table, ref, *extra), capsys)[0] == 0
    assert journal.read_text() == (ref / "journal.jsonl").read_text()
    assert (out / "best.json").read_text() == (ref / "best.json").read_text()


def test_bad_inputs_are_one_line_exit_2(table, tmp_path, capsys):
    out = tmp_path / "x"
    cases = [
        (args(table, out, "--strategy", "hillclimb"), "unknown strategy 'hillclimb'"),
        (args(table, out, "--evaluator", "oracle:x"), "unknown evaluator 'oracle'"),
        (["search", "--space", "nb201", "--profile", f"table:{table}#lat_pixel3", "--latency-ms", "0.001",
          "--evaluator", f"table:{table}#c10_test", "--out", str(out)], "smallest latency the space reaches"),
        (["search", "--space", "mbv3-32", "--profile", f"table:{table}#lat_pixel3",
          "--evaluator", f"table:{table}#c10_test", "--out", str(out)], "does not fit space 'mbv3-32'"),
        (args(table, out, "--resume"), "nothing to resume"),
        (args(table, out, "--strategy", "random", "--population", "5"), "does not take --population"),
        (args(table, out, "--strategy", "nsga2", "--screen", "5"), "does not take --screen"),
        (args(table, out, "--screen", "-1"), "--screen must be 0 (off)"),
    ]
    for argv, needle in cases:
        code, _, err = cli(argv, capsys)
        assert code == 2, argv
        assert needle in err and len(err.strip().splitlines()) == 1, err
        assert not out.exists(), "bad input left output behind"


def test_resume_with_other_configuration_is_refused(table, tmp_path, capsys):
    out = tmp_path / "r"
    assert cli(args(table, out, "--budget-evals", "8", "--strategy", "random"), capsys)[0] == 0
    code, _, err = cli(args(table, out, "--budget-evals", "8", "--strategy", "anneal", "--resume"), capsys)
    assert code == 2 and "different configuration" in err and "strategy.name" in err


def test_space_settings_are_recorded_and_checked_on_resume(table, tmp_path, capsys):
    out = tmp_path / "s"
    settings = '{"cells_per_stage": 3}'
    code, _, _ = cli(args(table, out, "--budget-evals", "6", "--strategy", "random", "--space-settings", settings), capsys)
    assert code == 0
    space = json.loads((out / "config.json").read_text())["space"]
    assert space["settings"] == {"cells_per_stage": 3}
    from hwnas.space import get_space

    assert space["config_hash"] == get_space("nb201", cells_per_stage=3).config_hash() != get_space("nb201").config_hash()
    # the same settings resume; other settings, or none, are refused with what differs
    code, _, _ = cli(args(table, out, "--budget-evals", "6", "--strategy", "random", "--space-settings", settings, "--resume"), capsys)
    assert code == 0 and len((out / "journal.jsonl").read_text().splitlines()) == 6
    code, _, err = cli(args(table, out, "--budget-evals", "6", "--strategy", "random", "--resume"), capsys)
    assert code == 2 and "different configuration" in err and "settings" in err
    code, _, err = cli(args(table, out, "--budget-evals", "6", "--strategy", "random", "--resume", "--space-settings",
                            '{"cells_per_stage": 2}'), capsys)
    assert code == 2 and "cells_per_stage" in err
    for bad, needle in (("[1, 2]", "JSON object"), ("{depths", "not JSON"), ('{"nope": 1}', "nope")):
        code, _, err = cli(args(table, tmp_path / "bad", "--budget-evals", "4", "--space-settings", bad), capsys)
        assert code == 2 and needle in err and len(err.strip().splitlines()) == 1, err
        assert not (tmp_path / "bad").exists()
