"""Supernet training: sandwich rule with in-place distillation, cosine schedule, label smoothing,
a checkpoint every epoch (and on Ctrl-C), exact resume, and torchrun data parallelism."""

from __future__ import annotations

import dataclasses
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from hwnas.accuracy.checkpoint import check_space, load_checkpoint, save_checkpoint
from hwnas.accuracy.progress import progress_bar
from hwnas.accuracy.runtime import Runtime, cosine_lr, init_runtime, step_seed
from hwnas.accuracy.supernet import Supernet
from hwnas.data import Dataset, load_dataset
from hwnas.errors import UserError
from hwnas.fileio import check_output_path
from hwnas.space import SearchSpace, space_from_config


@dataclass
class SupernetTrainConfig:
    data: str = "digits"
    epochs: int = 10
    batch_size: int = 64
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 4e-5
    label_smoothing: float = 0.1
    num_random: int = 2  # random subnets per step besides the largest and the smallest
    kernel_transform: bool = False  # OFA's learned kernel transform instead of a plain centre crop
    sort_channels: bool = True  # reorder middle channels by importance at each epoch start
    warmup_epochs: int = 0
    seed: int = 0
    split_seed: int = 0
    train_limit: int | None = None
    val_limit: int | None = None
    device: str = "auto"

    # fields a resumed run may change without changing what is being trained
    RESUMABLE_CHANGES = ("epochs", "device")

    def check(self) -> None:
        if self.epochs < 1:
            raise UserError(f"--epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 1:
            raise UserError(f"--batch-size must be at least 1, got {self.batch_size}")
        if self.lr <= 0:
            raise UserError(f"--lr must be positive, got {self.lr}")


@dataclass
class TrainResult:
    path: Path
    meta: dict[str, Any] = field(default_factory=dict)


def data_for(space: SearchSpace, cfg: SupernetTrainConfig, download: bool = False) -> Dataset:
    return load_dataset(cfg.data, image_size=space.input_shape[-1], split_seed=cfg.split_seed,
                        train_limit=cfg.train_limit, val_limit=cfg.val_limit, download=download)


def sandwich(space: SearchSpace, rng: random.Random, num_random: int) -> list:
    return [space.largest(), space.smallest()] + [space.sample(rng) for _ in range(num_random)]


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    # no weight decay on BN, biases and kernel transforms: it only pulls them off their identity/init
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (decay if p.dim() == 4 or (p.dim() == 2 and "transforms" not in name) else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def train_supernet(space: SearchSpace, cfg: SupernetTrainConfig, out: str | Path, *, resume: bool = False,
                   force: bool = False, progress: bool = True, dataset: Dataset | None = None,
                   download: bool = False, stop_after_steps: int | None = None) -> TrainResult:
    """Train (or resume) a supernet into the checkpoint ``out``.

    ``stop_after_steps`` raises KeyboardInterrupt after that many steps (tests of Ctrl-C).
    """
    cfg.check()
    out = Path(out)
    rt = init_runtime(cfg.device)
    try:
        return _train(space, cfg, out, rt, resume, force, progress, dataset, download, stop_after_steps)
    finally:
        rt.close()


def _train(space: SearchSpace, cfg: SupernetTrainConfig, out: Path, rt: Runtime, resume: bool, force: bool,
           progress: bool, dataset: Dataset | None, download: bool, stop_after_steps: int | None) -> TrainResult:
    state = None
    if resume and out.exists():
        meta, model_sd, opt_sd = load_checkpoint(out)
        check_space(meta, space, out)
        stored = SupernetTrainConfig(**{k: v for k, v in meta["train"].items() if k in SupernetTrainConfig.__dataclass_fields__})
        diffs = [f for f in dataclasses.asdict(cfg) if f not in cfg.RESUMABLE_CHANGES
                 and getattr(cfg, f) != getattr(stored, f)]
        if diffs:
            raise UserError(f"--resume with settings that differ from the checkpoint's: {', '.join(diffs)}; "
                            f"use the original settings or train into a new --out")
        state = (meta, model_sd, opt_sd)
    else:  # every rank checks, so that under torchrun no rank waits forever for one that refused
        check_output_path(out, force=force, what="checkpoint")

    torch.manual_seed(cfg.seed)
    ds = dataset if dataset is not None else data_for(space, cfg, download)
    model = Supernet(space, kernel_transform=cfg.kernel_transform, num_classes=ds.num_classes).to(rt.device)
    opt = torch.optim.SGD(_param_groups(model, cfg.weight_decay), lr=cfg.lr, momentum=cfg.momentum, nesterov=True)
    steps_per_epoch = max(1, len(ds.train_y) // cfg.batch_size)  # drop_last: equal-sized steps
    epoch, step0, history = 0, 0, []
    if state is not None:
        meta, model_sd, opt_sd = state
        model.load_state_dict(model_sd)
        if opt_sd is not None:
            opt.load_state_dict(opt_sd)
        epoch, step0, history = int(meta["epoch"]), int(meta["step"]), list(meta.get("history", []))
    total = cfg.epochs * steps_per_epoch
    warmup = cfg.warmup_epochs * steps_per_epoch
    local_batch = max(1, cfg.batch_size // rt.world)

    def meta_now(ep: int, st: int) -> dict[str, Any]:
        return {
            "space": space.name, "space_config": space.config_dict(), "config_hash": space.config_hash(),
            "train": {k: v for k, v in dataclasses.asdict(cfg).items()},
            "epoch": ep, "step": st, "done": ep >= cfg.epochs, "world": rt.world,
            "num_classes": ds.num_classes, "kernel_transform": cfg.kernel_transform,
            "dataset": ds.describe(), "preprocessing": ds.preprocessing.to_dict(), "history": history,
        }

    def save(ep: int, st: int) -> None:
        in_sync = rt.replicas_identical(model)
        if rt.is_main:
            sd = {k: v.detach().cpu() for k, v in model.state_dict().items()}
            save_checkpoint(out, {**meta_now(ep, st), "replicas_identical": in_sync}, sd, _cpu_state(opt.state_dict()))
        rt.barrier()

    params = [p for p in model.parameters()]
    steps_done = 0
    model.train()
    with progress_bar(progress and rt.is_main) as bar:
        pos = step0
        task = bar.add_task("supernet", total=total, completed=epoch * steps_per_epoch + step0, info="")
        try:
            while epoch < cfg.epochs:
                order = torch.randperm(len(ds.train_y), generator=torch.Generator().manual_seed(step_seed(cfg.seed, epoch, -1)))
                if step0 == 0 and epoch > 0 and cfg.sort_channels:
                    model.sort_channels(opt)
                loss_sum, seen, t0 = 0.0, 0, time.perf_counter()
                pos = step0
                for step in range(step0, steps_per_epoch):
                    s = step_seed(cfg.seed, epoch, step)
                    idx = order[step * cfg.batch_size:(step + 1) * cfg.batch_size][rt.rank::rt.world][:local_batch]
                    x = ds.prepare(ds.train_x[idx], augment=True, generator=torch.Generator().manual_seed(s))
                    x, y = x.to(rt.device, non_blocking=True), ds.train_y[idx].to(rt.device, non_blocking=True)
                    torch.manual_seed(s)  # dropout
                    lr = cosine_lr(cfg.lr, epoch * steps_per_epoch + step, total, warmup)
                    for g in opt.param_groups:
                        g["lr"] = lr
                    opt.zero_grad(set_to_none=True)
                    teacher = None
                    for i, arch in enumerate(sandwich(space, random.Random(s), cfg.num_random)):
                        model.set_active(arch)
                        with rt.autocast():
                            logits = model(x).float()
                        if teacher is None:
                            loss = F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
                            teacher = logits.detach().softmax(-1)
                            loss_sum += float(loss.detach())
                        else:  # in-place distillation: smaller subnets learn the largest's soft labels
                            loss = -(teacher * logits.log_softmax(-1)).sum(-1).mean()
                        loss.backward()
                        seen += len(y)
                    rt.average_gradients(params)
                    opt.step()
                    steps_done += 1
                    rate = seen * rt.world / max(1e-9, time.perf_counter() - t0)
                    bar.update(task, advance=1, info=f"epoch {epoch + 1}/{cfg.epochs} loss {loss_sum / (step - step0 + 1):.3f} "
                                                     f"{rate:.0f} img/s")
                    pos = step + 1
                    if stop_after_steps is not None and steps_done >= stop_after_steps:
                        raise KeyboardInterrupt
                history.append({"epoch": epoch + 1, "loss": loss_sum / max(1, steps_per_epoch - step0),
                                "images_per_s": seen * rt.world / max(1e-9, time.perf_counter() - t0), "lr": lr})
                epoch, step0 = epoch + 1, 0
                save(epoch, 0)
        except KeyboardInterrupt:
            # leave a checkpoint at the last finished step: --resume replays from there exactly
            if epoch < cfg.epochs:
                save(epoch + 1, 0) if pos >= steps_per_epoch else save(epoch, pos)
            raise
    meta, _, _ = load_checkpoint(out) if rt.is_main else (meta_now(epoch, 0), None, None)
    return TrainResult(out, meta)


def _cpu_state(sd: dict[str, Any]) -> dict[str, Any]:
    def move(v: Any) -> Any:
        if torch.is_tensor(v):
            return v.detach().cpu()
        if isinstance(v, dict):
            return {k: move(x) for k, x in v.items()}
        if isinstance(v, list):
            return [move(x) for x in v]
        return v

    return move(sd)


def load_supernet(path: str | Path, space: SearchSpace | None = None, device: str | torch.device = "cpu"
                  ) -> tuple[Supernet, dict[str, Any]]:
    """A trained supernet and its checkpoint header; ``space`` (if given) must be the checkpoint's."""
    meta, model_sd, _ = load_checkpoint(path)
    if space is None:
        space = space_from_config(meta["space"], meta["space_config"])
    check_space(meta, space, path)
    model = Supernet(space, kernel_transform=bool(meta.get("kernel_transform")), num_classes=int(meta["num_classes"]))
    try:
        model.load_state_dict(model_sd)
    except RuntimeError:
        raise UserError(f"checkpoint {str(path)!r} does not match its space's supernet; it is damaged, retrain it") from None
    return model.to(device).eval(), meta
