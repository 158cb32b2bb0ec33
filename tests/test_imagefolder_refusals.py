"""A folder that is not an image dataset is refused before the long work of reading it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hwnas.data import load_dataset
from hwnas.errors import UserError


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HWNAS_CACHE", str(tmp_path / "cache"))


def _png(path: Path, value: int) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8, 3), value, dtype=np.uint8)).save(path)


def test_files_that_only_look_like_images_are_refused_before_the_rest_decode(tmp_path, monkeypatch):
    import hwnas.data.sources as sources

    for i in range(40):
        _png(tmp_path / "d" / "train" / "ant" / f"{i:03d}.png", i)
    (tmp_path / "d" / "train" / "bee").mkdir()
    for i in range(3):
        (tmp_path / "d" / "train" / "bee" / f"{i}.jpg").write_text("not an image")
    decoded = []
    real = sources._decode
    monkeypatch.setattr(sources, "_decode", lambda data, size: (decoded.append(1), real(data, size))[1])
    with pytest.raises(UserError, match="cannot decode an image of class 'bee'"):
        load_dataset(f"imagefolder:{tmp_path / 'd'}", image_size=8)
    assert len(decoded) <= 2  # one of each class, not all 40 of the first


def test_a_folder_is_not_walked_below_the_dataset_layouts(tmp_path, monkeypatch):
    (tmp_path / "repo" / "src" / "deep" / "er").mkdir(parents=True)
    (tmp_path / "repo" / "src" / "deep" / "er" / "x.png").write_text("x")
    (tmp_path / "repo" / "README.md").write_text("x")

    def walked(self, pattern):
        raise AssertionError(f"walked all of {self}")

    monkeypatch.setattr(Path, "rglob", walked)
    with pytest.raises(UserError, match="not in a layout hwnas reads"):
        load_dataset(f"imagefolder:{tmp_path / 'repo'}", image_size=8)
    # both layouts still read
    for split in ("train", "test"):
        for c in ("ant", "bee"):
            for i in range(6):
                _png(tmp_path / "ok" / split / c / f"{i}.png", 10 * i)
    ds = load_dataset(f"imagefolder:{tmp_path / 'ok'}", image_size=8)
    assert ds.classes == ["ant", "bee"] and len(ds.test_y) == 12
