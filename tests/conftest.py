"""Shared fixtures: where the shared (never committed) data lives, skipping when it is absent."""

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    return Path(os.environ.get("HWNAS_SHARED_DATA", REPO.parent / "shared" / "data"))


def nb201_csv_path() -> Path:
    return shared_data_dir() / "nb201" / "nb201_acc_latency.csv"


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
