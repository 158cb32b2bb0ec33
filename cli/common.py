"""Helpers shared by the CLI commands: one-line errors, consoles, reading arch files."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from hwnas.errors import UserError

if TYPE_CHECKING:
    from hwnas.space import Arch, SearchSpace

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def fail(message: str) -> "NoReturn":  # type: ignore[name-defined]
    raise UserError(message)


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, with the line that says what was kept and how to continue (already printed)."""


def interrupted(how_to_continue: str) -> "NoReturn":  # type: ignore[name-defined]
    """Say on stderr what a Ctrl-C left and how to go on, as every long command does, and end
    with the interrupt's exit code (130)."""
    err.print(f"interrupted; {how_to_continue}", markup=False)
    raise Interrupted()


def parse_space_settings(text: "str | None") -> dict:
    """``--space-settings``: a JSON object of space config fields ({} when not given)."""
    import json

    if not text:
        return {}
    try:
        settings = json.loads(text)
    except json.JSONDecodeError as e:
        raise UserError(f"--space-settings is not JSON ({e.msg}); pass an object such as '{{\"depths\": [1, 2]}}'") from None
    if not isinstance(settings, dict):
        raise UserError("--space-settings must be a JSON object of config fields")
    return settings


def read_archs(path: str, space: "SearchSpace") -> list["Arch"]:
    """Read an arch file: one JSON object (or NAS-Bench-201 string) per line; '-' is stdin."""
    if path == "-":
        text = sys.stdin.read()
    else:
        p = Path(path)
        if not p.exists():
            raise UserError(f"arch file {path!r} does not exist; write one JSON object per line, as `hwnas sample` does")
        if p.is_dir():
            raise UserError(f"arch file {path!r} is a folder; pass a file with one JSON object per line")
        try:  # not only regular files: /dev/stdin, a named pipe
            text = p.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise UserError(f"arch file {path!r} is not UTF-8 text; write one JSON object per line") from None
        except OSError as e:
            raise UserError(f"cannot read arch file {path!r}: {e.strerror}") from None
    archs = []
    for lineno, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if not s:
            continue
        try:
            archs.append(space.parse(s))
        except UserError as e:
            raise UserError(f"{path} line {lineno}: {e}") from None
    if not archs:
        raise UserError(f"arch file {path!r} holds no archs; write one JSON object per line, as `hwnas sample` does")
    return archs
