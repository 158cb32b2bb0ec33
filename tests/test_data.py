"""Datasets load offline, split deterministically and record their preprocessing."""

from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from hwnas.data import load_dataset
from hwnas.data.base import Augmentation, random_crop_flip
from hwnas.data.cache import shared_data_dir
from hwnas.errors import UserError


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HWNAS_CACHE", str(tmp_path / "cache"))


def test_digits_loads_with_fixed_split_and_preprocessing():
    a = load_dataset("digits", image_size=32)
    b = load_dataset("digits", image_size=32)
    assert a.num_classes == 10
    assert a.train_x.dtype == torch.uint8 and a.train_x.shape[1:] == (3, 8, 8)
    n = len(a.train_y) + len(a.val_y) + len(a.test_y)
    assert n == 1797
    assert torch.equal(a.val_y, b.val_y) and torch.equal(a.train_x, b.train_x)
    c = load_dataset("digits", image_size=32, split_seed=1)
    assert not torch.equal(a.val_x, c.val_x)
    # test is held out independently of split_seed: final reports never move with it
    assert torch.equal(a.test_x, c.test_x)
    prep = a.preprocessing.to_dict()
    assert prep["input_size"] == 32 and prep["channel_order"] == "RGB" and len(prep["mean"]) == 3
    x, y = next(a.batches("train", 500))
    assert x.shape == (500, 3, 32, 32) and x.dtype == torch.float32
    assert abs(float(x.mean())) < 0.2 and 0.7 < float(x.std()) < 1.3  # normalized with its own statistics


def test_batches_shard_across_ranks():
    ds = load_dataset("digits", image_size=8)
    whole = torch.cat([y for _, y in ds.batches("val", 32)])
    r0 = [y for _, y in ds.batches("val", 32, rank=0, world=2)]
    r1 = [y for _, y in ds.batches("val", 32, rank=1, world=2)]
    merged = torch.cat([torch.stack([a, b], 1).flatten() if len(a) == len(b) else torch.cat([a, b]) for a, b in zip(r0, r1)])
    assert sorted(merged.tolist()) == sorted(whole.tolist())


def test_crop_flip_keeps_shape_and_changes_images():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 255, (16, 3, 8, 8), dtype=torch.uint8)
    y = random_crop_flip(x, Augmentation(pad=2, flip=True), g)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert not torch.equal(x, y)
    assert torch.equal(random_crop_flip(x, Augmentation(pad=0, flip=False), g), x)


def _write_tree(root: Path, split_dirs: bool = True) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("test", 2)):
        for cls in ("cat", "ant"):
            d = root / split / cls if split_dirs else root / cls
            if not split_dirs and split == "test":
                continue
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 255, (10, 12, 3), dtype=np.uint8)).save(d / f"{i}.png")


def test_imagefolder_layouts_and_tarball(tmp_path):
    _write_tree(tmp_path / "tree")
    ds = load_dataset(f"imagefolder:{tmp_path / 'tree'}", image_size=16, val_fraction=0.25)
    assert ds.classes == ["ant", "cat"]  # sorted, as ImageFolder labels them
    assert len(ds.test_y) == 4 and len(ds.train_y) + len(ds.val_y) == 12
    assert ds.train_x.shape[1:] == (3, 16, 16)
    with tarfile.open(tmp_path / "tree.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "tree", arcname="tree")
    dt = load_dataset(f"imagefolder:{tmp_path / 'tree.tar.gz'}", image_size=16, val_fraction=0.25)
    assert torch.equal(dt.train_x, ds.train_x) and torch.equal(dt.test_y, ds.test_y)
    _write_tree(tmp_path / "flat", split_dirs=False)
    flat = load_dataset(f"imagefolder:{tmp_path / 'flat'}", image_size=16, val_fraction=0.25)
    assert flat.classes == ["ant", "cat"] and len(flat.test_y) > 0


def test_bad_datasets_say_what_is_wrong(tmp_path):
    with pytest.raises(UserError, match="unknown dataset"):
        load_dataset("mnist")
    with pytest.raises(UserError, match="does not exist"):
        load_dataset(f"imagefolder:{tmp_path / 'missing'}")
    (tmp_path / "deep" / "a" / "b" / "c").mkdir(parents=True)
    with pytest.raises(UserError, match="ImageFolder layout"):
        load_dataset(f"imagefolder:{tmp_path / 'deep'}")
    with pytest.raises(UserError, match="CIFAR-10 not found"):
        load_dataset(f"cifar10:{tmp_path / 'nothing'}")


CIFAR = shared_data_dir() / "cifar10" / "cifar10-jpeg.tar.gz"


@pytest.mark.skipif(not CIFAR.is_file(), reason=f"shared CIFAR-10 copy not found at {CIFAR} (set HWNAS_SHARED_DATA)")
def test_cifar10_from_shared_copy(monkeypatch):
    monkeypatch.delenv("HWNAS_CACHE")  # decode once into the user's cache, as users do
    ds = load_dataset("cifar10", image_size=32, train_limit=1000)
    assert ds.classes[0] == "airplane" and ds.classes[-1] == "truck"
    assert len(ds.train_y) == 1000 and len(ds.val_y) == 5000 and len(ds.test_y) == 10000
    assert ds.train_x.shape[1:] == (3, 32, 32)
    assert torch.bincount(ds.test_y).tolist() == [1000] * 10
    assert ds.preprocessing.mean == pytest.approx((0.4914, 0.4822, 0.4465), abs=1e-3)
