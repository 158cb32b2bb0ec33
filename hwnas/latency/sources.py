"""Latency sources of a search, registered by kind: a device profile (a latency table JSON,
predicted by ``LatencyPredictor``) or, for benchmarks, a column of a tabular benchmark
(``table:CSV#COLUMN``, read by ``hwnas.data.benchmark_csv``). Both sit behind one small
interface: ``predict_many``, ``min_latency``, ``describe``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Protocol, Sequence

import numpy as np

from hwnas.data.benchmark_csv import load_csv_table, resolve_csv, split_spec
from hwnas.errors import UserError
from hwnas.registry import Registry


class LatencyModel(Protocol):
    def predict_many(self, archs: Sequence[Any]) -> np.ndarray: ...

    def min_latency(self) -> tuple[float, Any]: ...

    def describe(self) -> dict[str, Any]: ...


class TableLatency:
    """Latency (ms) read from a benchmark CSV column, e.g. ``table:nb201#lat_pixel3``."""

    def __init__(self, arg: str, space: Any, table: Any = None) -> None:
        path, column = split_spec(arg, "latency profile table:")
        self.spec = f"table:{arg}"
        self.table = table if table is not None else load_csv_table(resolve_csv(path), space)
        self.column = column
        self.values = self.table.column(column)
        if np.any(self.values < 0):
            raise UserError(f"column {column!r} of {str(self.table.path)!r} holds negative values; it is not a latency in ms")

    def predict_many(self, archs: Sequence[Any]) -> np.ndarray:
        return self.values[self.table.rows(archs)]

    def min_latency(self) -> tuple[float, Any]:
        i = int(np.argmin(self.values))
        return float(self.values[i]), self.table.archs[i]

    def describe(self) -> dict[str, Any]:
        return {"spec": self.spec, "column": self.column, "sha256": self.table.sha256}


class ProfileLatency:
    """Latency predicted from a device profile (latency table JSON written by ``hwnas profile``)."""

    def __init__(self, path: str, space: Any) -> None:
        from hwnas.latency import LatencyPredictor, load_table

        p = Path(path)
        if not p.is_file():
            raise UserError(f"profile {path!r} does not exist; write one with `hwnas profile` or use table:CSV#COLUMN")
        self.path = p
        self.sha256 = hashlib.sha256(p.read_bytes()).hexdigest()
        self.predictor = LatencyPredictor(load_table(p), space)

    def predict_many(self, archs: Sequence[Any]) -> np.ndarray:
        return np.asarray(self.predictor.predict_many(archs), dtype=np.float64)

    def min_latency(self) -> tuple[float, Any]:
        ms, arch = self.predictor.min_latency()
        return float(ms), arch

    def describe(self) -> dict[str, Any]:
        return {"spec": str(self.path), "sha256": self.sha256}


LATENCY_SOURCES: Registry[LatencyModel] = Registry("latency source")


@LATENCY_SOURCES.register("table", "a column of a tabular benchmark: table:CSV#COLUMN, e.g. table:nb201#lat_pixel3")
def _table_source(arg: str, space: Any, table: Any = None) -> LatencyModel:
    return TableLatency(arg, space, table=table)


@LATENCY_SOURCES.register("profile", "a device profile: the path (or registered name) of a latency table JSON")
def _profile_source(arg: str, space: Any, table: Any = None) -> LatencyModel:
    return ProfileLatency(arg, space)


def get_latency_model(spec: str, space: Any, table: Any = None) -> LatencyModel:
    """``table:CSV#COLUMN`` or the path of a latency table JSON; ``table`` is a CSV already read
    (``benchmark_csv.shared_csv_table``) for a ``table:`` spec."""
    kind, arg = ("table", spec[len("table:"):]) if spec.startswith("table:") else ("profile", spec)
    return LATENCY_SOURCES.create(kind, arg, space, table=table)
