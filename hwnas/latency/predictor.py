"""Predict a network's latency from a table: sum of block entries, then the fitted calibration.

Each block entry was timed alone and so includes one inference call's fixed overhead; a whole
network pays it once. The raw estimate therefore subtracts the measured call overhead from
every entry and adds it back once:

    raw(arch)       = overhead + sum_b max(entry_b - overhead, 0)
    predicted(arch) = scale * raw(arch) + offset

``scale`` and ``offset`` are fitted on K whole networks measured end to end; they absorb what
block-level timing misses (fusion across blocks, cache effects, framework glue).
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

from hwnas.errors import UserError
from hwnas.latency.stats import fit_linear
from hwnas.latency.table import LatencyTable


def raw_from_terms(term_ms: Iterable[float], overhead_ms: float) -> float:
    return overhead_ms + sum(max(t - overhead_ms, 0.0) for t in term_ms)


def fit_calibration(raw_ms: Sequence[float], measured_ms: Sequence[float]) -> tuple[float, float]:
    return fit_linear(raw_ms, measured_ms)


class LatencyPredictor:
    """Latency of archs of one space from one table (checked to match the space)."""

    def __init__(self, table: LatencyTable, space=None) -> None:
        if space is None:
            space = table.get_space()
        if table.space["name"] != space.name:
            raise UserError(f"latency table was built for space {table.space['name']!r}, not {space.name!r}; profile {space.name} or pick a matching table")
        if table.space["config_hash"] != space.config_hash():
            raise UserError(
                f"latency table was built for another {space.name} configuration (hash {table.space['config_hash']}, "
                f"this space {space.config_hash()}); rebuild it with `hwnas profile --space {space.name}`")
        self.table = table
        self.space = space
        self.overhead = table.call_overhead_ms
        self.scale = float(table.calibration["scale"])
        self.offset = float(table.calibration["offset_ms"])
        # per-term cost with the call overhead already removed
        self._cost = {k: max(e.latency_ms - self.overhead, 0.0) for k, e in table.entries.items()}

    def term_cost(self, key: str) -> float:
        try:
            return self._cost[key]
        except KeyError:
            raise UserError(f"latency table has no entry for block {key!r}; it is incomplete for this space: rebuild it with `hwnas profile`") from None

    def raw_ms(self, arch) -> float:
        return self.overhead + sum(self.term_cost(b.key) for b in self.space.latency_terms(arch))

    def predict(self, arch) -> float:
        return self.scale * self.raw_ms(arch) + self.offset

    def predict_many(self, archs: Sequence) -> np.ndarray:
        return np.array([self.predict(a) for a in archs], dtype=float)

    def min_latency(self) -> tuple[float, object]:
        """The smallest latency the space can reach under this table, and an arch that reaches it."""
        arch = self.space.cheapest(lambda b: self.term_cost(b.key))
        return self.predict(arch), arch
