"""The README's examples work as written: cheap commands are run from an empty folder (as a fresh
clone would run them), and every command and option of the others, in the README and in docs/,
exists."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from conftest import REPO, nb201_csv_path

README = REPO / "README.md"
DOCS = sorted((REPO / "docs").glob("*.md"))


def guide_text() -> str:
    """The README and every docs/ page: the commands a user is shown."""
    return "\n\n".join(p.read_text() for p in [README, *DOCS])


def code_blocks(text: str) -> list[list[str]]:
    """The README's indented code blocks, continuation lines joined."""
    blocks, current = [], []
    for line in text.splitlines():
        if line.startswith("    ") and (current or not line.strip().startswith("|")):
            current.append(line[4:])
        elif current and not line.strip():
            current.append("")
        else:
            if current:
                blocks.append(current)
            current = []
    if current:
        blocks.append(current)
    out = []
    for block in blocks:
        joined, pending = [], ""
        for line in block:
            if line.rstrip().endswith("\\"):
                pending += line.rstrip()[:-1] + " "
                continue
            joined.append((pending + line.strip()).strip())
            pending = ""
        out.append([ln for ln in joined if ln])
    return out


def hwnas_commands(text: str) -> list[list[str]]:
    """argv (after `hwnas`) of every hwnas command in code blocks and in inline code."""
    lines = [ln for block in code_blocks(text) for ln in block]
    lines += re.findall(r"`(hwnas [^`]+)`", text)
    cmds = []
    for line in lines:
        line = line.split(" # ")[0].split("  #")[0]
        if not re.search(r"(^|[\s/])hwnas\s", line) or line.startswith(("from ", "import ", "#")):
            continue
        for part in line.split("&&"):
            words = shlex.split(part.replace("\\|", "|"))
            for i, w in enumerate(words):
                if w == "hwnas" or w.endswith("/hwnas"):
                    cmds.append(words[i + 1:])
                    break
    return cmds


def _click_command(argv: list[str]):
    from hwnas.cli.main import app

    cmd = typer.main.get_command(app)
    rest = list(argv)
    while rest and getattr(cmd, "commands", None) and rest[0] in cmd.commands:
        cmd = cmd.commands[rest.pop(0)]
    return cmd, rest


def test_every_readme_command_and_option_exists():
    assert {p.name for p in DOCS} >= {"latency.md", "accuracy.md", "search.md", "export.md", "compare.md"}
    cmds = hwnas_commands(guide_text())
    assert len(cmds) >= 30, "the README's and docs' examples were not found"
    problems = []
    for argv in cmds:
        cmd, rest = _click_command(argv)
        if getattr(cmd, "commands", None) and cmd.callback is None:
            problems.append(f"hwnas {' '.join(argv)}: {rest[:1]} is not a command")
            continue
        known = {o for p in cmd.params for o in (*p.opts, *getattr(p, "secondary_opts", []))} | {"--help"}
        for w in rest:
            w = w.strip("[]")
            if w.startswith("--") and w.split("=")[0] not in known:
                problems.append(f"hwnas {' '.join(argv)}: no option {w}")
        if argv[:1] == ["list"]:  # `hwnas list spaces|backends|...`
            from hwnas.cli.main import ListWhat

            problems += [f"hwnas list {w}: not listable" for w in rest[0].split("|") if w not in ListWhat.__members__]
    assert not problems, problems


def _run(capsys, argv):
    from hwnas.cli.main import main

    with pytest.raises(SystemExit) as e:
        main(argv)
    cap = capsys.readouterr()
    return e.value.code, cap.out, cap.err


def test_the_cheap_readme_commands_run_as_written_from_an_empty_folder(tmp_path, monkeypatch, capsys):
    """`list`, `sample` and the NAS-Bench-201 search (shortened to 20 evaluations: the rest is the same
    loop) run from a folder that holds only the clone's profiles/; the search's runs/ does not exist."""
    shutil.copytree(REPO / "profiles", tmp_path / "profiles")
    monkeypatch.chdir(tmp_path)
    csv = nb201_csv_path()
    monkeypatch.setenv("HWNAS_SHARED_DATA", str(csv.parent.parent))
    ran, searched = 0, False
    seen: set[tuple[str, ...]] = set()
    for argv in hwnas_commands(guide_text()):
        if tuple(argv) in seen:  # the README and a docs page may show the same command
            continue
        seen.add(tuple(argv))
        if argv[:1] == ["list"]:
            for what in argv[1].split("|"):
                code, out, err = _run(capsys, ["list", what, *argv[2:]])
                assert code == 0 and out.strip(), (what, err)
                ran += 1
        elif argv[:1] == ["sample"] and len(argv) > 1:  # not a mention of the bare command in prose
            code, out, err = _run(capsys, argv)
            assert code == 0 and len(out.splitlines()) == int(argv[argv.index("--n") + 1]), err
            ran += 1
        elif argv[:1] == ["search"] and "table:nb201#c10_test" in argv and csv.is_file() and (
                "cifar10" not in argv or (csv.parent.parent / "cifar10").is_dir()):
            short = list(argv)
            if "--budget-evals" in short:
                short[short.index("--budget-evals") + 1] = "20"
            else:  # a gradient method: one epoch on a few images (the rest is the same loop)
                short[short.index("--epochs") + 1] = "1"
                short[short.index("--train-limit") + 1] = "256"
            code, out, err = _run(capsys, short)
            assert code == 0, err
            out_dir = Path(short[short.index("--out") + 1])
            assert out_dir.parent.name == "runs" and (out_dir / "best.json").is_file()
            searched = True
    assert ran >= 5
    assert searched or not csv.is_file(), "the README's NAS-Bench-201 search was not found"


def test_the_readme_search_space_example_runs():
    blocks = [b for b in code_blocks((REPO / "docs" / "search.md").read_text()) if b and b[0].startswith("from hwnas.space")]
    assert blocks
    exec("\n".join(blocks[0]), {})


def test_every_readme_python_import_works():
    for block in code_blocks(guide_text()):
        for line in block:
            if line.startswith(("from hwnas", "import hwnas")):
                exec(line, {})


def test_the_device_side_bundle_runner_takes_the_readme_options():
    res = subprocess.run([sys.executable, "-m", "hwnas.latency.bundle_runner", "--help"], capture_output=True, text=True)
    assert res.returncode == 0 and "--out" in res.stdout
