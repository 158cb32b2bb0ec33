"""Tabular benchmark lookup: ``table:CSV#COLUMN`` gives each arch the value stored in a CSV.

The CSV needs an ``arch_str`` column (NAS-Bench-201 notation for the nb201 space, or any
string the space's ``parse`` accepts) and numeric columns. Accuracy columns are in percent
(as NAS-Bench-201 stores them) and are returned as fractions. The same reader serves latency
columns (``lat_<device>``, milliseconds) to the search's table latency model.

``CSV`` may be a path, or ``nb201`` for ``$HWNAS_SHARED_DATA/nb201/nb201_acc_latency.csv``
(``HWNAS_SHARED_DATA`` defaults to ``../shared/data`` relative to the working directory).
"""

from __future__ import annotations

import csv
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from hwnas.accuracy import EVALUATORS, Evaluator
from hwnas.errors import UserError
from hwnas.space import Arch, SearchSpace

ARCH_COLUMN = "arch_str"
NB201_FILE = Path("nb201") / "nb201_acc_latency.csv"


def shared_data_dir() -> Path:
    """``$HWNAS_SHARED_DATA``, else ``../shared/data`` beside the repository root (the datasets' rule),
    so ``table:nb201`` means the same file from any working directory."""
    from hwnas.data.cache import shared_data_dir as data_dir

    return data_dir()


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
    archs: list[Arch]
    columns: dict[str, np.ndarray]
    row_of: dict[str, int] = field(default_factory=dict)  # arch id -> row

    def column(self, name: str) -> np.ndarray:
        if name not in self.columns:
            known = ", ".join(sorted(self.columns))
            raise UserError(f"table {str(self.path)!r} has no numeric column {name!r}; choose one of: {known}")
        return self.columns[name]

    def rows(self, archs: Sequence[Arch]) -> np.ndarray:
        out = np.empty(len(archs), dtype=np.int64)
        for k, a in enumerate(archs):
            r = self.row_of.get(a.id)
            if r is None:
                raise UserError(f"arch {a.to_json()} is not in table {str(self.path)!r} ({len(self.archs)} archs); search a space the table covers")
            out[k] = r
        return out


def load_csv_table(path: str | os.PathLike, space: SearchSpace) -> CsvTable:
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
    archs: list[Arch] = []
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


@EVALUATORS.register("table", "accuracy looked up in a benchmark CSV: table:CSV#COLUMN (percent in the file), "
                            "e.g. table:nb201#c10_test")
class TableEvaluator(Evaluator):
    """Accuracy looked up in a benchmark CSV: table:CSV#COLUMN (percent in the file -> fraction)."""

    def __init__(self, arg: str, space: SearchSpace, table: CsvTable | None = None, **options: Any) -> None:
        if options:
            raise UserError(f"the table evaluator takes no options, got: {', '.join(sorted(options))}")
        path, column = split_spec(arg, "table evaluator")
        self.spec = f"table:{arg}"
        self.space = space
        self.table = table if table is not None else load_csv_table(resolve_csv(path), space)
        values = self.table.column(column)
        if np.nanmax(values) > 100.0 or np.nanmin(values) < 0.0:
            raise UserError(f"column {column!r} of {str(self.table.path)!r} is not an accuracy in percent (values outside 0..100)")
        self.column = column
        self.accuracy = values / 100.0

    def evaluate(self, archs: Sequence[Arch]) -> list[float]:
        return [float(x) for x in self.accuracy[self.table.rows(archs)]]

    def describe(self) -> dict[str, Any]:
        return {"spec": self.spec, "column": self.column, "sha256": self.table.sha256}
