"""Damaged inputs never end in a traceback: latency tables, arch files, run folders (config,
journal, best.json) and one-shot checkpoints, truncated, overwritten with random bytes or with
values of the wrong type, either still work (a torn journal line is recovered) or end with one
line on stderr and exit code 2. Property-based, a few dozen cases per file kind; the shapes of
damage are the ones a crash, a bad copy or a hand edit leave."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hwnas.cli.main import main

from conftest import REPO

SETTINGS = dict(max_examples=15, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
WRONG_VALUES = [None, "x", -1, 0, 1e308, [], {}, True, [1, "a"], {"a": None}]


def run(argv: list[str]) -> tuple[int, str]:
    """Exit code and stderr of one command, in this process (any exception but SystemExit fails the test)."""
    import io
    from contextlib import redirect_stderr, redirect_stdout

    # the CLI's consoles write to whatever sys.stdout / sys.stderr are at the time (never pin
    # their files: later tests capture through those)
    buf, out = io.StringIO(), io.StringIO()
    with redirect_stderr(buf), redirect_stdout(out):
        try:
            main(argv)
            code = 0
        except SystemExit as e:
            code = int(e.code or 0)
    return code, buf.getvalue()


def assert_clean(code: int, err: str, ok_codes: tuple[int, ...] = (0,)) -> None:
    assert "Traceback" not in err, err
    if code == 2:  # one error line, the last (progress lines of the work before it may precede it)
        lines = err.strip().splitlines()
        assert lines and lines[-1].startswith("error: ") and sum(ln.startswith("error:") for ln in lines) == 1, err
    else:
        assert code in ok_codes, (code, err)


# ---- ways to damage a file ------------------------------------------------------------------
def _paths(obj, prefix=()):
    """Every (path, value) inside a JSON value, depth first."""
    yield prefix, obj
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj[:4]):  # the first few items stand for the rest
            yield from _paths(v, (*prefix, i))


def _replace(obj, path, value):
    if not path:
        return value
    obj = json.loads(json.dumps(obj))
    cur = obj
    for k in path[:-1]:
        cur = cur[k]
    cur[path[-1]] = value
    return obj


@st.composite
def damaged(draw, data: bytes) -> bytes:
    """``data`` truncated, with random bytes written over part of it, or (JSON) one value replaced
    by one of the wrong type or a key dropped."""
    kind = draw(st.sampled_from(["truncate", "bytes", "value", "drop"] if data[:1] in (b"{", b"[") else ["truncate", "bytes"]))
    if kind == "truncate":
        return data[:draw(st.integers(0, max(len(data) - 1, 0)))]
    if kind == "bytes":
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        junk = draw(st.binary(min_size=1, max_size=64))
        return data[:at] + junk + data[at + len(junk):]
    obj = json.loads(data)
    paths = [p for p, _ in _paths(obj) if p]
    path = draw(st.sampled_from(paths))
    if kind == "drop" and isinstance(path[-1], str):
        parent = obj
        for k in path[:-1]:
            parent = parent[k]
        parent = dict(parent)
        parent.pop(path[-1])
        return json.dumps(_replace(obj, path[:-1], parent) if path[:-1] else parent).encode()
    return json.dumps(_replace(obj, path, draw(st.sampled_from(WRONG_VALUES)))).encode()


def _small_table() -> bytes:
    """The reference table with its entries cut to a few (the damage lands in every part of it)."""
    d = json.loads((REPO / "profiles" / "mbv3-32_torch-cpu_t1_b1.json").read_text())
    d["entries"] = d["entries"][:3]
    for part in ("calibration", "validation"):
        if isinstance(d.get(part), dict) and "networks" in d[part]:
            d[part]["networks"] = d[part]["networks"][:2]
    return json.dumps(d).encode()


def fresh_copy(folder: Path, to: Path) -> Path:
    """An intact copy of a run folder (each example damages its own; tmp_path is shared by them)."""
    if to.exists():
        shutil.rmtree(to)
    shutil.copytree(folder, to)
    return to


# ---- the commands ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def archs(tmp_path_factory) -> Path:
    import random

    from hwnas.space import get_space

    p = tmp_path_factory.mktemp("fuzz") / "archs.jsonl"
    space = get_space("mbv3-32")
    p.write_text("".join(space.sample(random.Random(i)).to_json() + "\n" for i in range(2)))
    return p


@settings(**SETTINGS)
@given(data=st.data())
def test_a_damaged_latency_table_is_one_line(tmp_path, archs, data):
    table = tmp_path / "t.json"
    table.write_bytes(data.draw(damaged(_small_table())))
    code, err = run(["latency", "--profile", str(table), "--arch", str(archs), "--json"])
    assert_clean(code, err)


@settings(**SETTINGS)
@given(data=st.data())
def test_a_damaged_arch_file_is_one_line(tmp_path, archs, data):
    arch_line = archs.read_text().splitlines()[0].encode()
    bad = tmp_path / "a.jsonl"
    bad.write_bytes(data.draw(damaged(arch_line)) + b"\n")
    code, err = run(["latency", "--profile", str(REPO / "profiles" / "mbv3-32_torch-cpu_t1_b1.json"), "--arch", str(bad)])
    assert_clean(code, err)


@pytest.fixture(scope="module")
def nb201_run(tmp_path_factory, nb201_csv) -> tuple[Path, list[str]]:
    folder = tmp_path_factory.mktemp("fuzzrun") / "run"
    argv = ["search", "--space", "nb201", "--profile", f"table:{nb201_csv}#lat_pixel3", "--latency-ms", "10",
            "--evaluator", f"table:{nb201_csv}#c10_test", "--budget-evals", "6", "--seed", "1", "--out", str(folder)]
    code, err = run(argv)
    assert code == 0, err
    return folder, argv


def test_load_run_reads_back_what_the_search_wrote(nb201_run):
    from hwnas.search.run_folder import load_run

    folder, _ = nb201_run
    run = load_run(folder)
    assert run.config["space"]["name"] == "nb201" and run.config["budgets"]["latency_budget_ms"] == 10
    assert len(run.records) == 6 and run.best["id"] in {r["id"] for r in run.records}
    assert run.best == json.loads((folder / "best.json").read_text())


def test_a_folder_from_before_the_budget_had_one_name_still_reads_and_resumes(tmp_path, nb201_run):
    """Folders written before the budget was ``latency_budget_ms`` everywhere said ``latency_ms``
    in config.json's budgets: they load with the new name, and resume as if written today."""
    from hwnas.search.run_folder import load_run

    folder, argv = nb201_run
    old = fresh_copy(folder, tmp_path / "old")
    cfg = json.loads((old / "config.json").read_text())
    cfg["budgets"] = {("latency_ms" if k == "latency_budget_ms" else k): v for k, v in cfg["budgets"].items()}
    (old / "config.json").write_text(json.dumps(cfg))
    assert load_run(old).latency_budget_ms == 10 and "latency_ms" not in load_run(old).config["budgets"]
    lines = (old / "journal.jsonl").read_text().splitlines(keepends=True)
    (old / "journal.jsonl").write_text("".join(lines[:4]))  # stopped after 4 of 6 evaluations
    resumed = [a if a != str(folder) else str(old) for a in argv]
    code, err = run([*resumed, "--resume"])
    assert code == 0, err
    assert (old / "journal.jsonl").read_text() == (folder / "journal.jsonl").read_text()
    # a different budget is still a different configuration
    code, err = run([*[a if a != "10" else "11" for a in resumed], "--resume"])
    assert code == 2 and "latency_budget_ms was 10" in err, err


@pytest.mark.parametrize("name", ["config.json", "journal.jsonl"])
@settings(**SETTINGS)
@given(data=st.data())
def test_a_damaged_run_folder_resumes_or_is_one_line(tmp_path, nb201_run, name, data):
    folder, argv = nb201_run
    copy = fresh_copy(folder, tmp_path / "run")
    original = (folder / name).read_bytes()
    if name == "journal.jsonl":  # damage one line of the journal (a torn write, a hand edit)
        lines = original.splitlines()
        k = data.draw(st.integers(0, len(lines) - 1))
        lines[k] = data.draw(damaged(lines[k]))
        (copy / name).write_bytes(b"\n".join(lines) + b"\n")
    else:
        (copy / name).write_bytes(data.draw(damaged(original)))
    argv = [*argv[:-1], str(copy), "--resume"]
    argv[argv.index("--budget-evals") + 1] = "8"
    code, err = run(argv)
    assert_clean(code, err)


@pytest.mark.parametrize("name", ["config.json", "best.json"])
@settings(**{**SETTINGS, "max_examples": 10})
@given(data=st.data())
def test_export_of_a_damaged_run_folder_is_one_line_before_any_work(tmp_path, nb201_run, name, data):
    folder, _ = nb201_run
    copy = fresh_copy(folder, tmp_path / "run")
    (copy / name).write_bytes(data.draw(damaged((folder / name).read_bytes())))
    out = tmp_path / "x"
    out.mkdir(exist_ok=True)
    # nb201 runs carry no supernet: an intact folder would train from scratch, so the data is
    # left unset and a folder that survives the damage stops at "needs --data" (exit 2) as well
    code, err = run(["export", str(copy), "--out", str(out / "m.onnx"), "--no-check-profile"])
    assert_clean(code, err)
    assert not (out / "m.onnx").exists() or code == 0


@pytest.fixture(scope="module")
def gdas_run(tmp_path_factory, nb201_csv) -> tuple[Path, list[str]]:
    folder = tmp_path_factory.mktemp("fuzzgdas") / "run"
    argv = ["search", "--space", "nb201", "--space-settings", '{"image_size": 8, "cells_per_stage": 1}',
            "--strategy", "gdas", "--profile", f"table:{nb201_csv}#lat_pixel3", "--latency-ms", "10.7",
            "--evaluator", f"table:{nb201_csv}#c10_test", "--data", "digits", "--epochs", "1",
            "--train-limit", "256", "--threads", "1", "--out", str(folder)]
    code, err = run(argv)
    assert code == 0, err
    return folder, argv


@settings(**{**SETTINGS, "max_examples": 8})
@given(data=st.data())
def test_a_damaged_oneshot_checkpoint_is_one_line(tmp_path, gdas_run, data):
    folder, argv = gdas_run
    copy = fresh_copy(folder, tmp_path / "run")
    ckpt = copy / "oneshot.ckpt"
    raw = ckpt.read_bytes()
    kind = data.draw(st.sampled_from(["truncate", "bytes", "empty"]))
    if kind == "truncate":
        ckpt.write_bytes(raw[:data.draw(st.integers(0, len(raw) - 1))])
    elif kind == "bytes":
        at = data.draw(st.integers(0, len(raw) - 64))
        ckpt.write_bytes(raw[:at] + data.draw(st.binary(min_size=16, max_size=64)) + raw[at + 64:])
    else:
        ckpt.write_bytes(b"")
    code, err = run([*argv[:-1], str(copy), "--resume"])
    assert_clean(code, err)


@pytest.mark.parametrize("after", [0, 3])
def test_a_full_disk_is_one_line_and_the_run_resumes(tmp_path, nb201_csv, monkeypatch, after):
    """The disk fills up at the config (``after`` 0) or mid-journal: one line and exit 2, no
    traceback; once there is space again, --resume ends on the uninterrupted run's journal."""
    import errno

    folder = tmp_path / "run"
    argv = ["search", "--space", "nb201", "--profile", f"table:{nb201_csv}#lat_pixel3", "--latency-ms", "10",
            "--evaluator", f"table:{nb201_csv}#c10_test", "--budget-evals", "6", "--seed", "1", "--out", str(folder)]
    real_fsync, calls = os.fsync, {"n": 0}

    def fsync(fd):
        calls["n"] += 1
        if calls["n"] > after:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    code, err = run(argv)
    assert code == 2 and "No space left on device" in err, err
    assert_clean(code, err)
    monkeypatch.setattr(os, "fsync", real_fsync)
    code, err = run([*argv, "--resume"] if (folder / "config.json").is_file() else argv)
    assert code == 0, err
    ref = tmp_path / "ref"
    assert run([*argv[:-1], str(ref)])[0] == 0
    assert (folder / "journal.jsonl").read_text() == (ref / "journal.jsonl").read_text()
