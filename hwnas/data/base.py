"""What a loaded dataset is: uint8 image arrays split into train/val/test, plus its preprocessing."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Iterator

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Preprocessing:
    """Everything an exported model needs to reproduce the inputs it was trained on.

    Images are RGB, scaled to [0, 1], resized (bilinear) to ``input_size`` and normalized per
    channel: ``(x / 255 - mean) / std``, laid out NCHW.
    """

    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    input_size: int
    channel_order: str = "RGB"
    layout: str = "NCHW"
    scale: float = 1.0 / 255.0
    resize: str = "bilinear"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d


@dataclass(frozen=True)
class Augmentation:
    """Training-time augmentation: random crop after zero padding, optional horizontal flip."""

    pad: int  # in pixels of the stored (native) images
    flip: bool


@dataclass
class Dataset:
    """Images as uint8 tensors (N, 3, H, W) at their stored size, labels as int64 tensors.

    ``val`` is carved from the original training set with a fixed seed (search reads val);
    ``test`` is the dataset's own test set (or a fixed held-out part) for final reports only.
    """

    spec: str
    classes: list[str]
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    preprocessing: Preprocessing
    augmentation: Augmentation
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def describe(self) -> dict[str, Any]:
        return {
            "spec": self.spec,
            "classes": len(self.classes),
            "train": int(self.train_y.numel()),
            "val": int(self.val_y.numel()),
            "test": int(self.test_y.numel()),
            "preprocessing": self.preprocessing.to_dict(),
            **self.info,
        }

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        if name not in ("train", "val", "test"):
            raise ValueError(f"unknown split {name!r}")
        return getattr(self, f"{name}_x"), getattr(self, f"{name}_y")

    # ---- batches --------------------------------------------------------------------
    def prepare(self, x: torch.Tensor, augment: bool = False, generator: torch.Generator | None = None) -> torch.Tensor:
        """uint8 (N, 3, h, w) -> normalized float (N, 3, S, S) at the model's input size."""
        if augment:
            x = random_crop_flip(x, self.augmentation, generator)
        xf = x.float().mul_(self.preprocessing.scale)
        size = self.preprocessing.input_size
        if xf.shape[-1] != size or xf.shape[-2] != size:
            xf = F.interpolate(xf, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        mean = torch.tensor(self.preprocessing.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.preprocessing.std).view(1, 3, 1, 1)
        return (xf - mean) / std

    def batches(self, split: str, batch_size: int, *, shuffle: bool = False, augment: bool = False,
                seed: int = 0, rank: int = 0, world: int = 1, drop_last: bool = False,
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batches of (inputs, labels); with ``world > 1`` each rank gets its share of each global batch."""
        x, y = self.split(split)
        g = torch.Generator().manual_seed(seed)
        order = torch.randperm(len(y), generator=g) if shuffle else torch.arange(len(y))
        for start in range(0, len(y), batch_size):
            idx = order[start:start + batch_size]
            if drop_last and len(idx) < batch_size:
                break
            idx = idx[rank::world]
            yield self.prepare(x[idx], augment, g if augment else None), y[idx]


def random_crop_flip(x: torch.Tensor, aug: Augmentation, generator: torch.Generator | None) -> torch.Tensor:
    n, _, h, w = x.shape
    p = aug.pad
    if p > 0:
        padded = F.pad(x, (p, p, p, p))
        offs = torch.randint(0, 2 * p + 1, (n, 2), generator=generator)
        rows = (offs[:, 0:1] + torch.arange(h)).view(n, 1, h, 1).expand(n, x.shape[1], h, w + 2 * p)
        padded = padded.gather(2, rows)
        cols = (offs[:, 1:2] + torch.arange(w)).view(n, 1, 1, w).expand(n, x.shape[1], h, w)
        x = padded.gather(3, cols)
    if aug.flip:
        flip = torch.rand(n, generator=generator) < 0.5
        x = torch.where(flip.view(n, 1, 1, 1), x.flip(3), x)
    return x


def seeded_split(n: int, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(kept, carved) index sets: ``fraction`` of ``n`` carved out by a fixed seeded permutation."""
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(n, generator=g)
    k = int(round(n * fraction))
    return order[k:].sort().values, order[:k].sort().values
