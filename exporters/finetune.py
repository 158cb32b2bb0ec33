"""Fine-tuning after extraction or pruning, with optional knowledge distillation, on the shared
training loop (``hwnas.accuracy.training``).

The student learns from the labels and, when a teacher is given, from the teacher's softened
outputs (Hinton et al.): a supernet's largest subnet, or the model before pruning, knows more
about the data than the hard labels say.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

import torch
from torch import nn

from hwnas.accuracy.training import (CallableBatches, ResidentImages, TrainRecipe, distillation_step,
                                     cross_entropy_step, make_optimizer, prepare_model, train, use_threads)
from hwnas.accuracy.runtime import Runtime
from hwnas.errors import UserError

Batches = Callable[[int], Iterable[tuple[torch.Tensor, torch.Tensor]]]  # epoch -> (inputs, labels)


@dataclass
class FinetuneConfig:
    epochs: int = 3
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 4e-5
    kd_alpha: float = 0.5  # weight of the distillation term (only with a teacher)
    kd_temperature: float = 2.0
    max_steps: int | None = None  # stop early (tests, demos)
    seed: int = 0
    threads: int | None = None  # CPU threads (None: all cores)
    # train with this recipe (a joint search's hyperparameters) instead of the one the fields above
    # make; its epochs, max_steps and threads win, and its label smoothing and augmentation apply
    recipe: TrainRecipe | None = None

    def check(self) -> None:
        if self.epochs < 0:
            raise UserError(f"--finetune-epochs must be 0 or more, got {self.epochs}")


class DatasetBatches:
    """Augmented, shuffled training batches of an hwnas ``Dataset``, a new order each epoch.

    Callable as ``epoch -> iterable of (x, y)`` like any ``Batches``; ``finetune`` recognises it
    and trains from the data resident in the loop's fast layout instead."""

    def __init__(self, ds: Any, batch_size: int = 64, seed: int = 0) -> None:
        self.ds, self.batch_size, self.seed = ds, batch_size, seed
        self._resident: ResidentImages | None = None
        self._augment = 1.0

    def resident(self, channels_last: bool = True, augment: float = 1.0) -> ResidentImages:
        if self._resident is None or (self._resident.channels_last, self._augment) != (channels_last, augment):
            self._resident = ResidentImages(self.ds, "train", "cpu", channels_last, augment=augment)
            self._augment = augment
        return self._resident

    def __call__(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self.resident(False).epoch(self.seed, epoch, self.batch_size)


def dataset_batches(ds: Any, batch_size: int = 64, seed: int = 0) -> DatasetBatches:
    return DatasetBatches(ds, batch_size, seed)


def finetune(model: nn.Module, batches: Batches, cfg: FinetuneConfig, teacher: nn.Module | None = None,
             on_step: Callable[[int, float], None] | None = None) -> int:
    """Train ``model`` in place (on the device it is on); returns the number of steps taken."""
    cfg.check()
    device = next(model.parameters()).device
    if cfg.recipe is not None:
        recipe = dataclasses.replace(cfg.recipe, device=str(device), compile=False)
    else:
        recipe = TrainRecipe(epochs=cfg.epochs, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                             label_smoothing=0.0, device=str(device), threads=cfg.threads, compile=False,
                             max_steps=cfg.max_steps,
                             batch_size=batches.batch_size if isinstance(batches, DatasetBatches) else 1,
                             seed=batches.seed if isinstance(batches, DatasetBatches) else cfg.seed)
    if recipe.epochs == 0:
        return 0
    if cfg.recipe is not None:  # a searched recipe (its own fields checked; this config's are by cfg.check)
        recipe.check()
    torch.manual_seed(cfg.seed)
    rt = Runtime(device)
    with use_threads(recipe.threads):
        prepare_model(model, recipe, device)
        data = (batches.resident(recipe.channels_last, recipe.augment) if isinstance(batches, DatasetBatches)
                else CallableBatches(batches, device, recipe.channels_last))
        if teacher is not None:
            prepare_model(teacher, recipe, device)
            inner = distillation_step(model, teacher, rt, cfg.kd_alpha, cfg.kd_temperature)
        else:
            inner = cross_entropy_step(model, rt, recipe.label_smoothing)
        last = {"loss": 0.0}

        def step(x: torch.Tensor, y: torch.Tensor, s: int) -> torch.Tensor:
            loss = inner(x, y, s)
            last["loss"] = float(loss)
            return loss

        counted = {"n": 0}

        def after(epoch: int, pos: int) -> None:
            counted["n"] += 1
            if on_step is not None:
                on_step(counted["n"], last["loss"])

        result = train(model, data, recipe, step, make_optimizer(model, recipe), rt, on_step=after)
    # back to the default layout: pruning and ONNX export expect contiguous weights
    model.to(memory_format=torch.contiguous_format)
    if teacher is not None:
        teacher.to(memory_format=torch.contiguous_format)
    return result.steps
