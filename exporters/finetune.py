"""Fine-tuning after extraction or pruning, with optional knowledge distillation.

The student learns from the labels and, when a teacher is given, from the teacher's softened
outputs (Hinton et al.): a supernet's largest subnet, or the model before pruning, knows more
about the data than the hard labels say.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from hwnas.accuracy.runtime import cosine_lr
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

    def check(self) -> None:
        if self.epochs < 0:
            raise UserError(f"--finetune-epochs must be 0 or more, got {self.epochs}")


def dataset_batches(ds, batch_size: int = 64, seed: int = 0) -> Batches:
    """Augmented, shuffled training batches of an hwnas ``Dataset``, a new order each epoch."""

    def epoch(e: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return ds.batches("train", batch_size, shuffle=True, augment=True, seed=seed * 1000 + e, drop_last=True)

    return epoch


def finetune(model: nn.Module, batches: Batches, cfg: FinetuneConfig, teacher: nn.Module | None = None,
             on_step: Callable[[int, float], None] | None = None) -> int:
    """Train ``model`` in place; returns the number of steps taken."""
    cfg.check()
    if cfg.epochs == 0:
        return 0
    torch.manual_seed(cfg.seed)
    steps_per_epoch = sum(1 for _ in batches(0))
    total = cfg.epochs * steps_per_epoch
    if cfg.max_steps is not None:
        total = min(total, cfg.max_steps)
    decay = [p for p in model.parameters() if p.dim() > 1]
    no_decay = [p for p in model.parameters() if p.dim() <= 1]
    opt = torch.optim.SGD([{"params": decay, "weight_decay": cfg.weight_decay},
                           {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, momentum=cfg.momentum, nesterov=True)
    if teacher is not None:
        teacher.eval()
    model.train()
    step = 0
    T = cfg.kd_temperature
    for e in range(cfg.epochs):
        for x, y in batches(e):
            if step >= total:
                break
            for g in opt.param_groups:
                g["lr"] = cosine_lr(cfg.lr, step, total)
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            if teacher is not None:
                with torch.no_grad():
                    soft = F.softmax(teacher(x) / T, dim=1)
                kd = F.kl_div(F.log_softmax(logits / T, dim=1), soft, reduction="batchmean") * T * T
                loss = (1 - cfg.kd_alpha) * loss + cfg.kd_alpha * kd
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            if on_step is not None:
                on_step(step, float(loss.detach()))
    model.eval()
    return step
