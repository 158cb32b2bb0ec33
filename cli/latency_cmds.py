"""`hwnas sample`, `hwnas profile` (and its bundle / run-bundle), `hwnas latency`."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    pass
