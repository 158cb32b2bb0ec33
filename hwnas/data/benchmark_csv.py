"""Tabular benchmark CSVs (NAS-Bench-201 and the like): one reader for the accuracy room's
``table:CSV#COLUMN`` evaluator and the latency room's ``table:CSV#COLUMN`` latency source.

The CSV needs an ``arch_str`` column (NAS-Bench-201 notation for the nb201 space, or any
string the space's ``parse`` accepts) and numeric columns. ``CSV`` may be a path, or ``nb201``
for ``$HWNAS_SHARED_DATA/nb201/nb201_acc_latency.csv`` (``HWNAS_SHARED_DATA`` defaults to
``../shared/data`` beside the repository root; ``cache.shared_data_dir``).
"""

from __future__ import annotations

import csv
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from hwnas.data.cache import shared_data_dir
from hwnas.errors import UserError

ARCH_COLUMN = "arch_str"
NB201_FILE = Path("nb201") / "nb201_acc_latency.csv"


def resolve_csv(path: str) -> Path:
    """``nb201`` -> the shared NAS-Bench-201 file; anything else is a path."""
    p = shared_data_dir() / NB201_FILE if path == "nb201" else Path(path)
    if not p.is_file():
        hint = " (set HWNAS_SHARED_DATA to the folder holding nb201/)" if path == "nb201" else ""
        raise UserError(f"table file {str(p)!r} does not exist{hint}; give the path of a CSV with an {ARCH_COLUMN} column")
    return p


def split_spec(arg: str, what: str) -> tuple[str, str]:
    """``CSV#COLUMN`` -> (CSV, COLUMN)."""
    path, sep, column = arg.rpartition("#")
    if not sep or not path or not column:
        raise UserError(f"{what} {arg!r} must be written CSV#COLUMN, e.g. nb201#c10_test or data.csv#lat_pixel3")
    return path, column


@dataclass
class CsvTable:
    """The rows of a benchmark CSV, keyed by the canonical arch id of the given space."""

    path: Path
    sha256: str
    archs: list[Any]  # hwnas.space.Arch, in the file's order
    columns: dict[str, np.ndarray]
    row_of: dict[str, int] = field(default_factory=dict)  # arch id -> row

    def column(self, name: str) -> np.ndarray:
        if name not in self.columns:
            known = ", ".join(sorted(self.columns))
            raise UserError(f"table {str(self.path)!r} has no numeric column {name!r}; choose one of: {known}")
        return self.columns[name]

    def rows(self, archs: Sequence[Any]) -> np.ndarray:
        out = np.empty(len(archs), dtype=np.int64)
        for k, a in enumerate(archs):
            r = self.row_of.get(a.id)
            if r is None:
                raise UserError(f"arch {a.to_json()} is not in table {str(self.path)!r} ({len(self.archs)} archs); search a space the table covers")
            out[k] = r
        return out


def load_csv_table(path: str | os.PathLike, space: Any) -> CsvTable:
    """Read and validate the CSV; every arch string must parse for ``space``."""
    p = Path(path)
    raw = p.read_bytes()
    text = raw.decode("utf-8", errors="replace")
    reader = csv.reader(text.splitlines())
    try:
        header = next(reader)
    except StopIteration:
        raise UserError(f"table {str(p)!r} is empty; expected a CSV header with an {ARCH_COLUMN} column") from None
    if ARCH_COLUMN not in header:
        raise UserError(f"table {str(p)!r} has no {ARCH_COLUMN} column; its columns are: {', '.join(header[:8])}")
    a_col = header.index(ARCH_COLUMN)
    archs: list[Any] = []
    values: list[list[str]] = []
    for lineno, row in enumerate(reader, start=2):
        if not row:
            continue
        if len(row) != len(header):
            raise UserError(f"table {str(p)!r} line {lineno} has {len(row)} fields, the header has {len(header)}; the file is damaged")
        try:
            archs.append(space.parse(row[a_col]))
        except UserError as e:
            raise UserError(f"table {str(p)!r} line {lineno}: its arch string does not fit space {space.name!r} ({e}); use a table built for this space") from None
        values.append(row)
    if not archs:
        raise UserError(f"table {str(p)!r} holds no rows")
    columns: dict[str, np.ndarray] = {}
    for j, name in enumerate(header):
        if j == a_col:
            continue
        try:
            columns[name] = np.array([float(r[j]) for r in values], dtype=np.float64)
        except ValueError:
            continue  # not a numeric column
    row_of: dict[str, int] = {}
    for i, a in enumerate(archs):
        if a.id in row_of:
            raise UserError(f"table {str(p)!r} lists arch {a.to_json()} twice (lines {row_of[a.id] + 2} and {i + 2})")
        row_of[a.id] = i
    return CsvTable(p, hashlib.sha256(raw).hexdigest(), archs, columns, row_of)


def shared_csv_table(profile: str, evaluator: str, space: Any) -> CsvTable | None:
    """The parsed CSV when a latency profile and an evaluator both read the same one
    (``table:CSV#COLUMN`` both), so that they share one copy; else None."""
    if not (profile.startswith("table:") and evaluator.startswith("table:")):
        return None
    p1, _ = split_spec(profile[len("table:"):], "latency profile table:")
    p2, _ = split_spec(evaluator[len("table:"):], "table evaluator")
    if resolve_csv(p1).resolve() != resolve_csv(p2).resolve():
        return None
    return load_csv_table(resolve_csv(p1), space)
