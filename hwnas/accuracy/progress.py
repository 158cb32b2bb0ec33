"""Progress on stderr (stdout stays clean for --json): a rich bar on a terminal, plain lines
every few seconds when stderr is a file or a pipe (a log shows progress as it happens), or nothing."""

from __future__ import annotations

import contextlib
import sys
import time
from typing import Any, Iterator, TextIO


class _Silent:
    def add_task(self, *a: Any, **k: Any) -> int:
        return 0

    def update(self, *a: Any, **k: Any) -> None:
        pass

    def advance(self, *a: Any, **k: Any) -> None:
        pass


class PlainLines:
    """The ``rich.progress.Progress`` calls the loops make, written as one line per update at
    most every ``every`` seconds (and when a task completes)."""

    def __init__(self, stream: TextIO, every: float = 10.0) -> None:
        self.stream, self.every = stream, every
        self.tasks: dict[int, dict[str, Any]] = {}

    def add_task(self, description: str, total: float | None = None, completed: float = 0, **fields: Any) -> int:
        k = len(self.tasks)
        self.tasks[k] = {"description": description, "total": total, "completed": completed, "fields": fields,
                         "printed": 0.0, "done": False}
        return k

    def advance(self, task: int, advance: float = 1) -> None:
        self.update(task, advance=advance)

    def update(self, task: int, *, completed: float | None = None, advance: float | None = None,
               total: float | None = None, description: str | None = None, **fields: Any) -> None:
        t = self.tasks[task]
        if total is not None:
            t["total"] = total
        if description is not None:
            t["description"] = description
        if completed is not None:
            t["completed"] = completed
        if advance is not None:
            t["completed"] += advance
        t["fields"].update(fields)
        now = time.monotonic()
        finished = t["total"] is not None and t["completed"] >= t["total"]
        if (finished and not t["done"]) or now - t["printed"] >= self.every:
            t["printed"], t["done"] = now, finished
            info = " ".join(str(v) for v in t["fields"].values() if v not in (None, ""))
            total_text = f"/{t['total']:g}" if t["total"] is not None else ""
            self.stream.write(f"{t['description']}: {t['completed']:g}{total_text} {info}".rstrip() + "\n")
            self.stream.flush()


@contextlib.contextmanager
def progress_bar(enabled: bool, stream: TextIO | None = None) -> Iterator[Any]:
    if not enabled:
        yield _Silent()
        return
    stream = stream or sys.stderr
    if not stream.isatty():
        yield PlainLines(stream)
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  TextColumn("{task.fields[info]}"), console=Console(file=stream), transient=False) as p:
        yield p
