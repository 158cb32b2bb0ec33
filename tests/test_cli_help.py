"""The CLI's self-description: `hwnas list` for every registry, and --help that reads right."""

import json
import re

import pytest
import typer

from hwnas.cli.main import app
from conftest import run_cli as run

EXEMPT_MODULES: set[str] = set()


def commands():
    """(path, click command) of every command of the app, subcommands included."""
    def walk(cmd, path):
        for name, sub in (getattr(cmd, "commands", None) or {}).items():
            yield from walk(sub, [*path, name])
        if cmd.callback is not None and path:
            yield path, cmd

    return list(walk(typer.main.get_command(app), []))


def test_list_strategies_table_and_json(capsys):
    code, out, err = run(capsys, "list", "strategies")
    assert code == 0, err
    for name in ("random", "evolution", "nsga2", "reinforce", "anneal", "gp", "tpe"):
        assert name in out
    code, out, err = run(capsys, "list", "strategies", "--json")
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert {r["name"] for r in rows} == {"random", "evolution", "nsga2", "reinforce", "anneal", "gp", "tpe", "gdas", "darts"}
    assert all(r["description"] for r in rows)
    assert {r["name"] for r in rows if r["kind"] == "oneshot"} == {"gdas", "darts"}
    assert all(r["spaces"] == "nb201, mbv3-32, mbv3-32-int8, mbv3-224" for r in rows if r["kind"] == "oneshot")


def test_list_evaluators_names_every_kind_with_its_help(capsys):
    code, out, err = run(capsys, "list", "evaluators", "--json")
    assert code == 0, err
    rows = {json.loads(line)["name"]: json.loads(line)["description"] for line in out.splitlines()}
    assert set(rows) >= {"table", "supernet", "train", "predictor", "zc"}
    from hwnas.accuracy import EVALUATORS

    for kind in ("table", "supernet", "train", "predictor", "zc"):
        assert rows[kind] and rows[kind] == EVALUATORS.help(kind)
    code, out, _ = run(capsys, "list", "evaluators")
    assert code == 0 and all(kind in out for kind in ("table", "supernet", "train", "predictor", "zc"))


@pytest.mark.parametrize("path", [["search"], ["profile"], ["export"], ["train-supernet"]])
def test_help_shows_flags_without_a_value_type(capsys, path):
    code, out, _ = run(capsys, *path, "--help")
    assert code == 0
    assert "<bool>" not in out
    assert re.search(r"--force\s", out) and re.search(r"--help\s", out)
    assert "<str>" in out or "<int>" in out  # options that take a value still show its type


def test_every_option_has_one_line_of_help():
    missing = []
    for path, cmd in commands():
        if cmd.callback.__module__ in EXEMPT_MODULES:
            continue
        if not (cmd.help or "").strip():
            missing.append(f"hwnas {' '.join(path)}: no command help")
        for p in cmd.params:
            if not (getattr(p, "help", None) or "").strip():
                missing.append(f"hwnas {' '.join(path)} {'/'.join(p.opts)}")
    assert not missing, missing


def test_no_help_text_is_lost_to_rich_markup():
    """--help renders through rich, which reads ``[words]`` as a style tag and drops it: a default
    written as ``[default: X]`` in a help string never reaches the user."""
    from rich.markup import render

    lost = []
    for path, cmd in commands():
        for p in cmd.params:
            text = getattr(p, "help", None) or ""
            if text and render(text).plain != text.replace("\\[", "["):
                lost.append(f"hwnas {' '.join(path)} {'/'.join(p.opts)}: {text!r}")
    assert not lost, lost
