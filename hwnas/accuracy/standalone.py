"""Stand-alone training of one arch from scratch: the reference the supernet is checked against."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from hwnas.accuracy.progress import progress_bar
from hwnas.accuracy.runtime import cosine_lr, resolve_device, step_seed
from hwnas.accuracy.subnet_eval import accuracy
from hwnas.accuracy.supernet import _init_weights
from hwnas.data import Dataset
from hwnas.errors import UserError
from hwnas.space import Arch, SearchSpace


@dataclass
class StandaloneConfig:
    epochs: int = 10
    batch_size: int = 64
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 4e-5
    label_smoothing: float = 0.1
    seed: int = 0
    device: str = "auto"

    def check(self) -> None:
        if self.epochs < 1:
            raise UserError(f"--epochs must be at least 1, got {self.epochs}")


def train_standalone(space: SearchSpace, arch: Arch, ds: Dataset, cfg: StandaloneConfig,
                     progress: bool = False, split: str = "val") -> float:
    """Train ``space.build(arch)`` with the supernet's recipe (minus the sandwich) and return
    its accuracy on ``split``."""
    cfg.check()
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    model = space.build(arch, num_classes=ds.num_classes)
    _init_weights(model)
    model.to(device).train()
    decay = [p for p in model.parameters() if p.dim() > 1]
    no_decay = [p for p in model.parameters() if p.dim() <= 1]
    opt = torch.optim.SGD([{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
                          lr=cfg.lr, momentum=cfg.momentum, nesterov=True)
    steps = max(1, len(ds.train_y) // cfg.batch_size)
    total = cfg.epochs * steps
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda"
                else torch.autocast("cpu", enabled=False))
    with progress_bar(progress) as bar:
        task = bar.add_task(f"train {arch.id}", total=total, info="")
        for epoch in range(cfg.epochs):
            order = torch.randperm(len(ds.train_y), generator=torch.Generator().manual_seed(step_seed(cfg.seed, epoch, -1)))
            for step in range(steps):
                s = step_seed(cfg.seed, epoch, step)
                idx = order[step * cfg.batch_size:(step + 1) * cfg.batch_size]
                x = ds.prepare(ds.train_x[idx], augment=True, generator=torch.Generator().manual_seed(s)).to(device)
                y = ds.train_y[idx].to(device)
                for g in opt.param_groups:
                    g["lr"] = cosine_lr(cfg.lr, epoch * steps + step, total)
                opt.zero_grad(set_to_none=True)
                with autocast:
                    loss = F.cross_entropy(model(x).float(), y, label_smoothing=cfg.label_smoothing)
                loss.backward()
                opt.step()
                bar.update(task, advance=1, info=f"loss {float(loss.detach()):.3f}")
    return accuracy(model, ds, split, device=device)
