"""A rich progress bar on stderr (stdout stays clean for --json), or nothing."""

from __future__ import annotations

import contextlib
from typing import Any, Iterator


class _Silent:
    def add_task(self, *a: Any, **k: Any) -> int:
        return 0

    def update(self, *a: Any, **k: Any) -> None:
        pass

    def advance(self, *a: Any, **k: Any) -> None:
        pass


@contextlib.contextmanager
def progress_bar(enabled: bool) -> Iterator[Any]:
    if not enabled:
        yield _Silent()
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  TextColumn("{task.fields[info]}"), console=Console(stderr=True), transient=False) as p:
        yield p
