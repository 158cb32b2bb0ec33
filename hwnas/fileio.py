"""Atomic writes and flushed JSON-lines journals: nothing half-written, nothing lost."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

from hwnas.errors import UserError


def check_output_path(path: str | os.PathLike, force: bool = False, what: str = "output") -> Path:
    """Refuse outputs in missing folders, and existing outputs unless ``force``."""
    p = Path(path)
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise UserError(f"{what} folder {str(parent)!r} does not exist; create it first or choose another path")
    if not os.access(parent, os.W_OK):
        raise UserError(f"{what} folder {str(parent)!r} is not writable; choose another path")
    if p.exists() and not force:
        raise UserError(f"{what} {str(p)!r} already exists; pass --force to overwrite it")
    return p


def missing_parents(path: str | os.PathLike, what: str = "output folder") -> list[Path]:
    """The missing folders above ``path``, outermost first, after checking that they can be
    created (refused when a path above is a file or cannot be written); nothing is created."""
    p = Path(path)
    missing: list[Path] = []
    ancestor = p.parent if str(p.parent) else Path(".")
    while not ancestor.exists() and ancestor != ancestor.parent:
        missing.append(ancestor)
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise UserError(f"{what} {str(p)!r} lies under {str(ancestor)!r}, which is not a folder; choose another path")
    if not os.access(ancestor, os.W_OK):
        raise UserError(f"cannot create {what} {str(p)!r}: {str(ancestor)!r} is not writable; choose another path")
    missing.reverse()
    return missing


def make_parents(path: str | os.PathLike, what: str = "output folder") -> list[Path]:
    """Create the missing folders above ``path``, for outputs that are folders the command owns
    (``--out runs/x`` before ``runs/`` exists), as ``missing_parents`` checks them. Returns the
    folders it created, outermost first, for ``remove_folders`` on failure."""
    missing = missing_parents(path, what)
    for d in missing:
        d.mkdir(exist_ok=True)
    return missing


def remove_folders(folders: list[Path]) -> None:
    """Remove the folders ``make_parents`` created, where they are still empty."""
    for d in reversed(folders):
        try:
            d.rmdir()
        except OSError:
            pass


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write via a temp file in the same folder and rename, so readers never see a partial file."""
    p = Path(path)
    fd, tmp = tempfile.mkstemp(dir=p.parent if str(p.parent) else ".", prefix=f".{p.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=1, sort_keys=False) + "\n")


def read_json(path: str | os.PathLike, what: str = "file") -> Any:
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{what} {str(p)!r} does not exist")
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise UserError(f"{what} {str(p)!r} is not valid JSON (line {e.lineno}: {e.msg}); it may be truncated, rebuild it") from None
    except UnicodeDecodeError:
        raise UserError(f"{what} {str(p)!r} is not a UTF-8 text file") from None


class Journal:
    """An append-only JSON-lines file; each record is flushed and fsynced before returning."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._f = None

    def append(self, record: dict) -> None:
        if self._f is None:
            self._f = open(self.path, "a", encoding="utf-8")
        self._f.write(json.dumps(record, sort_keys=True) + "\n")
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None

    def __enter__(self) -> "Journal":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_journal(path: str | os.PathLike) -> tuple[list[dict], int]:
    """Read the valid prefix of a journal.

    Returns the records and the number of lines dropped: a crash can leave the last line
    truncated, and everything from the first unreadable line on is ignored.
    """
    records: list[dict] = []
    p = Path(path)
    if not p.exists():
        return records, 0
    lines = p.read_text(encoding="utf-8", errors="replace").splitlines()
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            return records, len(lines) - i
        if not isinstance(rec, dict):
            return records, len(lines) - i
        records.append(rec)
    return records, 0


def iter_jsonl_objects(text: str, what: str) -> Iterator[tuple[int, Any]]:
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            yield lineno, json.loads(line)
        except json.JSONDecodeError as e:
            raise UserError(f"{what} line {lineno} is not JSON ({e.msg}); expect one JSON object per line, as `hwnas sample` writes") from None
