"""Datasets, registered by name and loaded offline: ``digits``, ``cifar10[:PATH]``, ``imagefolder:PATH``.

    from hwnas.data import load_dataset
    ds = load_dataset("digits", image_size=32)
    for x, y in ds.batches("train", 64, shuffle=True, augment=True, seed=0): ...

Every dataset gets a fixed, seeded train/val split carved from its training set (search reads
val); ``test`` is kept for final reports. The preprocessing is recorded on the dataset so that
exporters can write it into the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from hwnas.data.base import Augmentation, Dataset, Preprocessing, seeded_split
from hwnas.data.cache import shared_data_dir
from hwnas.data.sources import CIFAR10_CLASSES, read_digits, read_image_tree, read_torchvision_cifar10
from hwnas.errors import UserError
from hwnas.registry import Registry

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


@dataclass(frozen=True)
class DataOptions:
    """How to load: the split is fixed by ``split_seed`` (not the training seed) so that every
    run of a project reads the same val images."""

    image_size: int = 32
    val_fraction: float = 0.1
    split_seed: int = 0
    train_limit: int | None = None  # use only the first N training images (seeded order)
    val_limit: int | None = None
    download: bool = False


Loader = Callable[[str, DataOptions], Dataset]
DATASETS: Registry[Dataset] = Registry("dataset")


def _finish(spec: str, arrays: dict[str, np.ndarray], classes: list[str], opts: DataOptions,
            mean: tuple[float, ...] | None, std: tuple[float, ...] | None, aug: Augmentation,
            test_fraction: float = 0.0, info: dict[str, Any] | None = None) -> Dataset:
    x = torch.from_numpy(np.ascontiguousarray(arrays["train_x"]))
    y = torch.from_numpy(np.ascontiguousarray(arrays["train_y"])).long()
    if "test_x" in arrays:
        tx = torch.from_numpy(np.ascontiguousarray(arrays["test_x"]))
        ty = torch.from_numpy(np.ascontiguousarray(arrays["test_y"])).long()
    else:  # no test set of its own: hold one out with a fixed seed, independent of split_seed
        keep, held = seeded_split(len(y), test_fraction, 12345)
        x, y, tx, ty = x[keep], y[keep], x[held], y[held]
    if not 0.0 < opts.val_fraction < 1.0:
        raise UserError(f"val fraction must be between 0 and 1, got {opts.val_fraction}")
    keep, val = seeded_split(len(y), opts.val_fraction, opts.split_seed)
    # a seeded order of the remaining training images, so that --train-limit takes a random subset
    order = keep[torch.randperm(len(keep), generator=torch.Generator().manual_seed(opts.split_seed + 1))]
    if opts.train_limit:
        order = order[: opts.train_limit]
    if opts.val_limit and opts.val_limit < len(val):
        # a seeded random subset: the carved indices are sorted, and sources list images class by
        # class, so the first N would hold only the first few classes
        pick = torch.randperm(len(val), generator=torch.Generator().manual_seed(opts.split_seed + 2))[: opts.val_limit]
        val = val[pick].sort().values
        info = {**(info or {}), "val_subset": "seeded random"}  # results cached under the old rule are not reused
    train_x, train_y = x[order], y[order]
    if mean is None or std is None:  # measured on the training split, recorded for export
        f = train_x.float() / 255.0
        mean = tuple(float(v) for v in f.mean((0, 2, 3)))
        std = tuple(max(float(v), 1e-3) for v in f.std((0, 2, 3)))
    prep = Preprocessing(mean=tuple(mean), std=tuple(std), input_size=opts.image_size)  # type: ignore[arg-type]
    return Dataset(spec, classes, train_x, train_y, x[val], y[val], tx, ty, prep, aug, info or {})


@DATASETS.register("digits", "scikit-learn's 8x8 handwritten digits (1,797 images, 10 classes), embedded")
def _digits(arg: str, opts: DataOptions) -> Dataset:
    arrays = read_digits()
    # digits are not mirror-symmetric: crop jitter only, one pixel of the 8x8 original
    return _finish("digits", arrays, [str(i) for i in range(10)], opts, None, None,
                   Augmentation(pad=1, flip=False), test_fraction=0.2)


@DATASETS.register("cifar10", "CIFAR-10: cifar10[:PATH], PATH a torchvision folder, an ImageFolder folder or its tar.gz")
def _cifar10(arg: str, opts: DataOptions) -> Dataset:
    if arg:
        path = Path(arg).expanduser()
    else:
        base = shared_data_dir() / "cifar10"
        tarball = base / "cifar10-jpeg.tar.gz"
        path = tarball if tarball.is_file() else base
    if (path / "cifar-10-batches-py").is_dir() or (opts.download and not path.exists()) or (
            opts.download and path.is_dir() and not any(path.iterdir())):
        path.mkdir(parents=True, exist_ok=True)
        arrays, classes = read_torchvision_cifar10(path, opts.download), list(CIFAR10_CLASSES)
    elif path.exists():
        arrays, classes = read_image_tree(path, None)
        if len(classes) != 10:
            raise UserError(f"{path} holds {len(classes)} classes, CIFAR-10 has 10; use imagefolder:{path} for other data")
    else:
        raise UserError(f"CIFAR-10 not found at {path}; pass cifar10:PATH (torchvision folder with cifar-10-batches-py/, "
                        f"or ImageFolder layout train/<class>/*.jpg), set HWNAS_SHARED_DATA, or add --download")
    return _finish("cifar10" + (f":{arg}" if arg else ""), arrays, classes, opts, CIFAR10_MEAN, CIFAR10_STD,
                   Augmentation(pad=4, flip=True), info={"source": str(path)})


@DATASETS.register("imagefolder", "your own images: imagefolder:PATH in ImageFolder layout (or a .tar.gz of it)")
def _imagefolder(arg: str, opts: DataOptions) -> Dataset:
    if not arg:
        raise UserError("imagefolder needs a path: imagefolder:PATH with PATH/train/<class>/<image> (or PATH/<class>/<image>)")
    path = Path(arg).expanduser()
    arrays, classes = read_image_tree(path, opts.image_size)
    if len(classes) < 2:
        raise UserError(f"{path} holds {len(classes)} class folder(s); a classification dataset needs at least 2")
    pad = max(1, opts.image_size // 8)
    return _finish(f"imagefolder:{arg}", arrays, classes, opts, None, None, Augmentation(pad=pad, flip=True),
                   test_fraction=0.0 if "test_x" in arrays else 0.1, info={"source": str(path)})


def load_dataset(spec: str, image_size: int = 32, **options: Any) -> Dataset:
    """Load ``NAME[:ARG]`` (see ``list_datasets``); options as in ``DataOptions``."""
    name, _, arg = spec.partition(":")
    opts = DataOptions(image_size=image_size, **options)
    return DATASETS.create(name, arg, opts)


def list_datasets() -> list[str]:
    return DATASETS.names()


__all__ = ["DATASETS", "Augmentation", "DataOptions", "Dataset", "Preprocessing", "list_datasets", "load_dataset"]
