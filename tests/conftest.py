"""Shared fixtures: where the shared (never committed) data lives, skipping when it is absent."""

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    return Path(os.environ.get("HWNAS_SHARED_DATA", REPO.parent / "shared" / "data"))


def nb201_csv_path() -> Path:
    return shared_data_dir() / "nb201" / "nb201_acc_latency.csv"


def nb201_search_slice(tmp_path_factory) -> Path:
    """The shared table's three columns a search needs (arch_str, c10_test, lat_pixel3), every
    cell, as a small CSV of its own; skips where the shared data is absent."""
    import csv

    src = nb201_csv_path()
    if not src.is_file():
        pytest.skip(f"NAS-Bench-201 table not found at {src} (set HWNAS_SHARED_DATA)")
    dst = tmp_path_factory.mktemp("nb201") / "slice.csv"
    with open(src, newline="") as f, open(dst, "w", newline="") as g:
        w = csv.writer(g)
        w.writerow(["arch_str", "c10_test", "lat_pixel3"])
        for r in csv.DictReader(f):
            w.writerow([r["arch_str"], r["c10_test"], r["lat_pixel3"]])
    return dst


@pytest.fixture(scope="session")
def nb201_csv() -> Path:
    p = nb201_csv_path()
    if not p.is_file():
        pytest.skip(f"NAS-Bench-201 table not found at {p} (set HWNAS_SHARED_DATA)")
    return p


def run_cli(capsys, *args):
    """``hwnas ARGS`` in this process: (exit code, stdout, stderr)."""
    from hwnas.cli.main import main

    with pytest.raises(SystemExit) as e:
        main(list(args))
    cap = capsys.readouterr()
    return e.value.code, cap.out, cap.err
