"""Tabular benchmark lookup: ``table:CSV#COLUMN`` gives each arch the value stored in a CSV
(``hwnas.data.benchmark_csv`` reads it; the latency room reads ``lat_<device>`` columns of the
same files). Accuracy columns are in percent (as NAS-Bench-201 stores them) and are returned as
fractions.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from hwnas.accuracy import EVALUATORS, Evaluator
from hwnas.data.benchmark_csv import CsvTable, load_csv_table, resolve_csv, split_spec
from hwnas.errors import UserError
from hwnas.space import Arch, SearchSpace


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
