"""SIGKILL during a search, then --resume: the journal equals an uninterrupted run's and nothing
journaled before the kill is lost (two seeded kill points; the long sweep over every command is
benchmarks/reliability.py)."""

from __future__ import annotations

import sys

import pytest

from conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import reliability  # noqa: E402


def test_a_killed_search_resumes_to_the_uninterrupted_journal(tmp_path, nb201_csv, monkeypatch):
    monkeypatch.setenv("HWNAS_SHARED_DATA", str(nb201_csv.parent.parent))
    r = reliability.sweep("search", kills=2, seed=1, work=tmp_path)
    assert "skipped" not in r
    assert r["held"] == r["kills"] == 2, r["points"]
    assert all(p["why"] is None for p in r["points"])
    assert any(p["killed"] and 0 < p["kept_at_kill"] < p["of"] for p in r["points"]), r["points"]  # killed mid-way


@pytest.mark.parametrize("name", ["search"])
def test_the_check_itself_notices_a_lost_record(tmp_path, nb201_csv, monkeypatch, name):
    """The sweep's comparison fails when a journal line goes missing (so a pass means something)."""
    monkeypatch.setenv("HWNAS_SHARED_DATA", str(nb201_csv.parent.parent))
    args, journal, check, _ = reliability.search_case(tmp_path, evals=30)
    ref, got = tmp_path / "ref", tmp_path / "got"
    for out in (ref, got):
        code, _, err = reliability.run_to_end(args(str(out)), tmp_path)
        assert code == 0, err
    assert check(ref, got, journal(got)[:5]) is None
    lines = (got / "journal.jsonl").read_text().splitlines()
    (got / "journal.jsonl").write_text("\n".join(lines[:10] + lines[11:]) + "\n")
    assert check(ref, got, lines[:12]) is not None
