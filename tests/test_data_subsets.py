"""--val-limit takes a seeded random subset of the val split, not its first images: image
folders list their images class by class, so the first N would hold only the first classes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hwnas.data import load_dataset


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HWNAS_CACHE", str(tmp_path / "cache"))


def test_val_limit_draws_from_every_class_and_is_repeatable(tmp_path):
    from PIL import Image

    classes = ("a", "b", "c", "d")
    for k, c in enumerate(classes):
        for i in range(30):
            p = tmp_path / "imgs" / "train" / c / f"{i:03d}.png"
            p.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full((8, 8, 3), 40 * k + i, dtype=np.uint8)).save(p)
    spec = f"imagefolder:{tmp_path / 'imgs'}"
    full = load_dataset(spec, image_size=8)
    n_val = len(full.val_y)
    assert n_val >= 10 and len(torch.unique(full.val_y)) == 4
    small = load_dataset(spec, image_size=8, val_limit=8)
    assert len(small.val_y) == 8
    assert len(torch.unique(small.val_y)) >= 3, small.val_y  # the first 8 sorted indices hold 1-2 classes
    again = load_dataset(spec, image_size=8, val_limit=8)
    assert torch.equal(again.val_x, small.val_x) and torch.equal(again.val_y, small.val_y)
    assert small.describe()["val_subset"] == "seeded random"
    assert "val_subset" not in full.describe()
