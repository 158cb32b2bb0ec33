"""Supernet training: sandwich rule with in-place distillation, cosine schedule, label smoothing,
a checkpoint every epoch (and on Ctrl-C), exact resume, and torchrun data parallelism."""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from hwnas.accuracy.supernet.checkpoint import check_space, cpu_state, load_checkpoint, save_checkpoint
from hwnas.accuracy.progress import progress_bar
from hwnas.accuracy.runtime import Runtime, init_runtime
from hwnas.accuracy.training import ResidentImages, TrainRecipe, make_optimizer, prepare_model, train, use_threads
from hwnas.accuracy.supernet import Supernet
from hwnas.data import Dataset, load_dataset
from hwnas.errors import UserError
from hwnas.fileio import check_output_path
from hwnas.space import SearchSpace, space_from_config
from hwnas.space.ref import SpaceRef


@dataclass
class SupernetTrainConfig(TrainRecipe):
    """The shared loop's recipe (epochs, batch size, lr, optimizer, ... as ``TrainRecipe`` has
    them) and what supernet training adds: its data and the sandwich rule's settings."""

    data: str = "digits"
    num_random: int = 2  # random subnets per step besides the largest and the smallest
    kernel_transform: bool = False  # OFA's learned kernel transform instead of a plain centre crop
    sort_channels: bool = True  # reorder middle channels by importance at each epoch start
    split_seed: int = 0
    train_limit: int | None = None
    val_limit: int | None = None

    # fields a resumed run may change without changing what is being trained
    RESUMABLE_CHANGES = ("epochs", "device", "threads", "channels_last")

    def recipe(self) -> TrainRecipe:
        """The shared loop's recipe for these settings (the supernet is never compiled: its
        graph changes with every subnet)."""
        own = {f.name: getattr(self, f.name) for f in dataclasses.fields(TrainRecipe)}
        return TrainRecipe(**{**own, "compile": False})


@dataclass
class TrainResult:
    path: Path
    meta: dict[str, Any] = field(default_factory=dict)


def data_for(space: SearchSpace, cfg: SupernetTrainConfig, download: bool = False) -> Dataset:
    return load_dataset(cfg.data, image_size=space.input_shape[-1], split_seed=cfg.split_seed,
                        train_limit=cfg.train_limit, val_limit=cfg.val_limit, download=download)


def sandwich(space: SearchSpace, rng: random.Random, num_random: int) -> list:
    return [space.largest(), space.smallest()] + [space.sample(rng) for _ in range(num_random)]


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
    recipe = cfg.recipe()
    with use_threads(recipe.threads):
        return _loop(space, cfg, recipe, out, rt, state, ds, progress, stop_after_steps)


def _loop(space: SearchSpace, cfg: SupernetTrainConfig, recipe: TrainRecipe, out: Path, rt: Runtime, state: Any,
          ds: Dataset, progress: bool, stop_after_steps: int | None) -> TrainResult:
    model = Supernet(space, kernel_transform=cfg.kernel_transform, num_classes=ds.num_classes)
    prepare_model(model, recipe, rt.device)
    opt = make_optimizer(model, recipe)
    data = ResidentImages(ds, "train", rt.device, recipe.channels_last)
    steps_per_epoch = data.steps_per_epoch(cfg.batch_size)
    epoch, step0, history = 0, 0, []
    if state is not None:
        meta, model_sd, opt_sd = state
        model.load_state_dict(model_sd)
        if opt_sd is not None:
            opt.load_state_dict(opt_sd)
        epoch, step0, history = int(meta["epoch"]), int(meta["step"]), list(meta.get("history", []))
    total = cfg.epochs * steps_per_epoch

    def meta_now(ep: int, st: int) -> dict[str, Any]:
        return {
            **SpaceRef.of(space).flat(),
            "train": {k: v for k, v in dataclasses.asdict(cfg).items()},
            "epoch": ep, "step": st, "done": ep >= cfg.epochs, "world": rt.world,
            "num_classes": ds.num_classes, "kernel_transform": cfg.kernel_transform,
            "dataset": ds.describe(), "preprocessing": ds.preprocessing.to_dict(), "history": history,
        }

    def save(ep: int, st: int) -> None:
        in_sync = rt.replicas_identical(model)
        if rt.is_main:
            sd = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
            save_checkpoint(out, {**meta_now(ep, st), "replicas_identical": in_sync}, sd, cpu_state(opt.state_dict()))
        rt.barrier()

    def sandwich_step(x: torch.Tensor, y: torch.Tensor, s: int) -> torch.Tensor:
        teacher, first = None, None
        for arch in sandwich(space, random.Random(s), cfg.num_random):
            model.set_active(arch)
            with rt.autocast():
                logits = model(x).float()
            if teacher is None:
                loss = F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
                teacher = logits.detach().softmax(-1)
                first = loss.detach()
            else:  # in-place distillation: smaller subnets learn the largest's soft labels
                loss = -(teacher * logits.log_softmax(-1)).sum(-1).mean()
            loss.backward()
        return first

    params = list(model.parameters())
    where = {"epoch": epoch, "step": step0, "done": 0}

    def on_epoch_start(ep: int, first_step: int) -> None:
        where["epoch"], where["step"] = ep, first_step
        if first_step == 0 and ep > 0 and cfg.sort_channels:
            model.sort_channels(opt)

    def on_step(ep: int, pos: int) -> None:
        where["epoch"], where["step"] = ep, pos
        where["done"] += 1
        if stop_after_steps is not None and where["done"] >= stop_after_steps:
            raise KeyboardInterrupt

    def on_epoch_end(ep_done: int, record: dict[str, Any]) -> None:
        history.append(record)
        save(ep_done, 0)

    with progress_bar(progress and rt.is_main) as bar:
        task = bar.add_task("supernet", total=total, completed=epoch * steps_per_epoch + step0, info="")
        try:
            train(model, data, recipe, sandwich_step, opt, rt, start_epoch=epoch, start_step=step0,
                  on_epoch_start=on_epoch_start, on_epoch_end=on_epoch_end,
                  after_backward=lambda: rt.average_gradients(params), on_step=on_step, bar=bar, task=task)
        except KeyboardInterrupt:
            # leave a checkpoint at the last finished step: --resume replays from there exactly
            ep, pos = where["epoch"], where["step"]
            if ep < cfg.epochs:
                save(ep + 1, 0) if pos >= steps_per_epoch else save(ep, pos)
            raise
    meta, _, _ = load_checkpoint(out) if rt.is_main else (meta_now(cfg.epochs, 0), None, None)
    return TrainResult(out, meta)


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
