"""A tiny NAS-Bench-201 space at digits' native 8x8 (one cell per stage, 8-16 channels) with a
made-up latency for every cell, for tests that really train candidates in seconds (multi-fidelity
and joint hyperparameter search). Import the fixtures into a test module to use them."""

import itertools

import pytest

from hwnas.space.nb201 import OPS, format_cell

SETTINGS = {"channels": [8, 16, 16], "cells_per_stage": 1, "image_size": 8}  # digits at their native 8x8
COST = {"none": 0.0, "skip_connect": 0.05, "nor_conv_1x1": 0.4, "nor_conv_3x3": 1.0, "avg_pool_3x3": 0.2}
BUDGET_MS = 3.0  # cuts the cells with many 3x3 convolutions (their latency here reaches 6.5)


@pytest.fixture(autouse=True)
def small_and_quiet(tmp_path, monkeypatch):
    """A cache of trained results per test; training on one thread (the suite runs beside others)."""
    import hwnas.accuracy.training as training

    monkeypatch.setenv("HWNAS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(training, "available_cores", lambda: 1)


@pytest.fixture(scope="module")
def lat_csv(tmp_path_factory):
    """A made-up latency for every cell: a cost per operation (what matters is that it is fixed)."""
    path = tmp_path_factory.mktemp("tiny_nb201") / "lat.csv"
    rows = ["arch_str,lat"] + [f"{format_cell(ops)},{0.5 + sum(COST[o] for o in ops):.4f}"
                               for ops in itertools.product(OPS, repeat=6)]
    path.write_text("\n".join(rows) + "\n")
    return path
