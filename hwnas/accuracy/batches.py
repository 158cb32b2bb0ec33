"""What the training loop trains on: one split resident on the device (``ResidentImages``: crops
and flips gathered in one indexing operation per step, from a plan that is a function of
(seed, epoch)), or any ``epoch -> batches`` callable (``CallableBatches``)."""

from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator, Protocol

import torch
import torch.nn.functional as F

from hwnas.accuracy.runtime import step_seed
from hwnas.errors import UserError

class Batches(Protocol):
    """What the loop trains on: batches of one epoch, possibly from a step on."""

    def steps_per_epoch(self, batch_size: int) -> int: ...

    def epoch(self, seed: int, epoch: int, batch_size: int, start: int = 0, rank: int = 0,
              world: int = 1) -> Iterator[tuple[torch.Tensor, torch.Tensor]]: ...


class ResidentImages:
    """One split of an ``hwnas.data.Dataset`` resident on a device, ready for fast batches.

    Images already at the model's input size stay uint8 (padded with zeros, normalised per
    batch); others (digits' 8x8 at 32) are resized once to float, padding scaled alike, so
    ``prepare``'s crop-then-resize becomes resize-then-crop.
    """

    def __init__(self, ds: Any, split: str = "train", device: torch.device | str = "cpu",
                 channels_last: bool = True, augment: bool | float = True) -> None:
        x, y = ds.split(split)
        if len(y) == 0:
            raise UserError(f"the {split} split of {ds.spec} holds no images")
        prep = ds.preprocessing
        size = prep.input_size
        self.device = torch.device(device)
        self.channels_last = channels_last
        self.size = size
        self.y = y.to(self.device)
        mean = torch.tensor(prep.mean, dtype=torch.float32).view(1, 3, 1, 1)
        std = torch.tensor(prep.std, dtype=torch.float32).view(1, 3, 1, 1)
        aug = ds.augmentation
        native = x.shape[-1]
        strength = float(augment)  # a multiple of the dataset's crop padding (True: 1)
        self.flip = bool(aug.flip) and strength > 0
        if native == size and x.shape[-2] == size:
            self.pad = int(round(aug.pad * strength))
            self.store = F.pad(x, (self.pad,) * 4).to(self.device)  # uint8, zero border as prepare pads
            self.scale = (prep.scale / std).to(self.device)
            self.shift = (-mean / std).to(self.device)
        else:
            self.pad = int(round(aug.pad * strength * size / native))
            chunks = [ds.prepare(x[i:i + 2048]) for i in range(0, len(y), 2048)]
            full = torch.cat(chunks)
            border = (-mean / std)  # a zero pixel, normalised
            padded = border.expand(len(y), 3, size + 2 * self.pad, size + 2 * self.pad).clone()
            padded[:, :, self.pad:self.pad + size, self.pad:self.pad + size] = full
            self.store = padded.to(self.device)
            self.scale = self.shift = None
        self._arange = torch.arange(size, device=self.device)
        self._channels = torch.arange(3, device=self.device).view(1, 3, 1, 1)

    def __len__(self) -> int:
        return int(self.y.numel())

    def steps_per_epoch(self, batch_size: int) -> int:
        return max(1, len(self) // batch_size)  # drop_last: equal-sized steps

    def _finish(self, x: torch.Tensor) -> torch.Tensor:
        if self.scale is not None:
            x = x.float().mul_(self.scale).add_(self.shift)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x.contiguous()

    def plan(self, seed: int, epoch: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(order, crop offsets N x 2, flips) of one epoch, a function of (seed, epoch) only."""
        g = torch.Generator().manual_seed(step_seed(seed, epoch, -1))
        n = len(self)
        order = torch.randperm(n, generator=g)
        offs = torch.randint(0, 2 * self.pad + 1, (n, 2), generator=g)
        flips = torch.rand(n, generator=g) < 0.5
        return order.to(self.device), offs.to(self.device), flips.to(self.device)

    def crops(self, idx: torch.Tensor, offs: torch.Tensor, flips: torch.Tensor) -> torch.Tensor:
        """Crops (and flips) of images ``idx`` in one gather."""
        s, ar = self.size, self._arange
        rows = offs[:, 0:1] + ar  # B x S
        cols = offs[:, 1:2] + torch.where(flips[:, None], s - 1 - ar, ar) if self.flip else offs[:, 1:2] + ar
        x = self.store[idx.view(-1, 1, 1, 1), self._channels, rows[:, None, :, None], cols[:, None, None, :]]
        return self._finish(x)

    def epoch(self, seed: int, epoch: int, batch_size: int, start: int = 0, rank: int = 0,
              world: int = 1) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order, offs, flips = self.plan(seed, epoch)
        local = max(1, batch_size // world)
        for step in range(start, self.steps_per_epoch(batch_size)):
            sel = torch.arange(step * batch_size, (step + 1) * batch_size, device=self.device)[rank::world][:local]
            idx = order[sel]
            yield self.crops(idx, offs[idx], flips[idx]), self.y[idx]

    def in_order(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Unaugmented batches in stored order (evaluation)."""
        p = self.pad
        for i in range(0, len(self), batch_size):
            x = self.store[i:i + batch_size, :, p:p + self.size, p:p + self.size]
            yield self._finish(x), self.y[i:i + batch_size]


class CallableBatches:
    """Adapts ``epoch -> iterable of (x, y)`` (the exporter API's fine-tuning data) to ``Batches``."""

    def __init__(self, fn: Callable[[int], Iterable[tuple[torch.Tensor, torch.Tensor]]], device: torch.device,
                 channels_last: bool) -> None:
        self.fn, self.device, self.channels_last = fn, device, channels_last
        self._steps: int | None = None

    def steps_per_epoch(self, batch_size: int) -> int:
        if self._steps is None:
            self._steps = sum(1 for _ in self.fn(0))
        return self._steps

    def epoch(self, seed: int, epoch: int, batch_size: int, start: int = 0, rank: int = 0,
              world: int = 1) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for k, (x, y) in enumerate(self.fn(epoch)):
            if k < start:
                continue
            x = x.to(self.device, non_blocking=True)
            x = x.contiguous(memory_format=torch.channels_last) if self.channels_last and x.dim() == 4 else x
            yield x, y.to(self.device, non_blocking=True)


