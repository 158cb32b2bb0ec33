"""Outputs that are folders the command owns get their missing parent folders; files do not."""

from __future__ import annotations

import pytest

from hwnas.errors import UserError
from hwnas.fileio import check_output_path, make_parents, remove_folders

from latency_helpers import tiny_mbconv


def test_make_parents_creates_what_is_missing_and_refuses_under_a_file(tmp_path):
    created = make_parents(tmp_path / "a" / "b" / "run")
    assert created == [tmp_path / "a", tmp_path / "a" / "b"] and (tmp_path / "a" / "b").is_dir()
    remove_folders(created)
    assert not (tmp_path / "a").exists()
    (tmp_path / "f").write_text("x")
    with pytest.raises(UserError, match="not a folder"):
        make_parents(tmp_path / "f" / "b" / "run")
    # a single output file still needs its folder: a typo there is caught, not created
    with pytest.raises(UserError, match="does not exist"):
        check_output_path(tmp_path / "typo" / "table.json")


def test_a_bundle_folder_gets_its_parents(tmp_path):
    from hwnas.latency.bundle import write_bundle

    out = write_bundle(tiny_mbconv(), tmp_path / "new" / "bundle", n_calibrate=2, n_validate=0)
    assert (out / "manifest.json").is_file() and out.parent == tmp_path / "new"


def test_the_demo_refuses_a_folder_under_a_file_before_any_work(tmp_path):
    from hwnas.exporters.demo import DemoConfig, run_demo

    (tmp_path / "f").write_text("x")
    with pytest.raises(UserError, match="not a folder"):
        run_demo(DemoConfig(out=str(tmp_path / "f" / "demo")))
