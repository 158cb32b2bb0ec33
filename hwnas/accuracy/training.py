"""The one training loop: stand-alone training, the supernet, export's fine-tuning and
``hwnas compare`` all train through ``train``.

What makes it fast on the machine it runs on:

- the training split lives on the device as one tensor, padded once for crop augmentation;
  each step gathers its crops and flips in one indexing operation (no per-image Python, no
  per-step generators), from an epoch plan drawn once per epoch;
- ``channels_last`` memory format for model and batches (on a 2-core CPU: 2.4x with two
  threads against channels-first with one);
- all cores by default (``threads``), restored afterwards;
- on CUDA: bf16 autocast, data resident on the GPU, no host synchronisation per step, and
  ``torch.compile`` for plain models (``compile``; not for the supernet, whose graph changes
  every step).

The plan of each epoch (order, crop offsets, flips) is a function of (seed, epoch), so a run
resumed at any step computes exactly what the uninterrupted run would have.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from hwnas.accuracy.batches import Batches, CallableBatches, ResidentImages  # noqa: F401  (re-exported)
from hwnas.accuracy.runtime import Runtime, cosine_lr, resolve_device, step_seed
from hwnas.errors import UserError

OPTIMIZERS = ("sgd", "adamw")


@dataclass
class TrainRecipe:
    """How a network is trained; every user of the loop takes one."""

    epochs: int = 10
    batch_size: int = 64
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 4e-5
    label_smoothing: float = 0.1
    optimizer: str = "sgd"
    warmup_epochs: int = 0
    augment: float = 1.0  # crop padding as a multiple of the dataset's (0: no augmentation; flips above 0)
    seed: int = 0
    device: str = "auto"
    threads: int | None = None  # CPU threads; None: every core this process may use
    channels_last: bool = True
    compile: bool | None = None  # torch.compile; None: on CUDA for plain models
    max_steps: int | None = None  # stop early (tests, demos)

    def check(self) -> None:
        if self.epochs < 1:
            raise UserError(f"--epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 1:
            raise UserError(f"--batch-size must be at least 1, got {self.batch_size}")
        if not self.lr > 0:
            raise UserError(f"--lr must be positive, got {self.lr}")
        if not (self.augment >= 0):
            raise UserError(f"augment must be 0 or more (a multiple of the dataset's crop padding), got {self.augment}")
        if self.optimizer not in OPTIMIZERS:
            raise UserError(f"unknown optimizer {self.optimizer!r}; choose one of: {', '.join(OPTIMIZERS)}")
        if self.threads is not None and self.threads < 1:
            raise UserError(f"--threads must be at least 1, got {self.threads}")


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


@contextlib.contextmanager
def use_threads(n: int | None) -> Iterator[int]:
    """torch's intra-op threads set to ``n`` (None: all cores) for the block, then restored."""
    before = torch.get_num_threads()
    want = n or available_cores()
    torch.set_num_threads(want)
    try:
        yield want
    finally:
        torch.set_num_threads(before)


# ---- data: hwnas.accuracy.batches (re-exported: the loop's inputs) ----------------------


# ---- steps --------------------------------------------------------------------------------
# a step computes the loss of one batch and its gradients (backward inside), returning the
# detached loss; the loop sets the learning rate, zeroes and applies the gradients
Step = Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]


def cross_entropy_step(model: Callable[[torch.Tensor], torch.Tensor], runtime: Runtime,
                       label_smoothing: float = 0.0) -> Step:
    def step(x: torch.Tensor, y: torch.Tensor, seed: int) -> torch.Tensor:
        with runtime.autocast():
            logits = model(x)
        loss = F.cross_entropy(logits.float(), y, label_smoothing=label_smoothing)
        loss.backward()
        return loss.detach()

    return step


def distillation_step(model: Callable[[torch.Tensor], torch.Tensor], teacher: nn.Module, runtime: Runtime,
                      alpha: float, temperature: float) -> Step:
    """Labels and the teacher's softened outputs (Hinton et al.), weighted ``1 - alpha`` : ``alpha``."""
    T = temperature
    teacher.eval()

    def step(x: torch.Tensor, y: torch.Tensor, seed: int) -> torch.Tensor:
        with runtime.autocast():
            logits = model(x).float()
            with torch.no_grad():
                soft = F.softmax(teacher(x).float() / T, dim=1)
        kd = F.kl_div(F.log_softmax(logits / T, dim=1), soft, reduction="batchmean") * T * T
        loss = (1 - alpha) * F.cross_entropy(logits, y) + alpha * kd
        loss.backward()
        return loss.detach()

    return step


# ---- the loop -----------------------------------------------------------------------------
@dataclass
class TrainResult:
    steps: int
    seconds: float
    images: int
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def images_per_s(self) -> float:
        return self.images / max(1e-9, self.seconds)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on convolution and linear weights only: on BatchNorm, biases and kernel
    transforms it only pulls them off their identity or their initialisation."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (decay if p.dim() == 4 or (p.dim() == 2 and "transforms" not in name) else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(model: nn.Module, recipe: TrainRecipe) -> torch.optim.Optimizer:
    groups = param_groups(model, recipe.weight_decay)
    if recipe.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=recipe.lr, foreach=True)
    return torch.optim.SGD(groups, lr=recipe.lr, momentum=recipe.momentum, nesterov=recipe.momentum > 0, foreach=True)


def prepare_model(model: nn.Module, recipe: TrainRecipe, device: torch.device) -> nn.Module:
    model.to(device)
    if recipe.channels_last:
        model.to(memory_format=torch.channels_last)
    return model


def maybe_compile(model: nn.Module, recipe: TrainRecipe, device: torch.device) -> Callable[[torch.Tensor], torch.Tensor]:
    use = recipe.compile if recipe.compile is not None else device.type == "cuda"
    return torch.compile(model) if use else model


def train(model: nn.Module, batches: Batches, recipe: TrainRecipe, step: Step, optimizer: torch.optim.Optimizer,
          runtime: Runtime, *, start_epoch: int = 0, start_step: int = 0,
          on_epoch_start: Callable[[int, int], None] | None = None,
          on_epoch_end: Callable[[int, dict[str, Any]], None] | None = None,
          after_backward: Callable[[], None] | None = None,
          on_step: Callable[[int, int], None] | None = None,
          bar: Any = None, task: Any = None) -> TrainResult:
    """Train ``model`` in place with ``step`` over ``recipe.epochs`` epochs of ``batches``.

    ``on_epoch_start(epoch, first_step)`` runs before an epoch's first step (``first_step`` > 0
    when resuming inside it); ``on_step(epoch, steps_done_in_epoch)`` after each optimizer step;
    ``after_backward`` before it (gradient averaging across processes). The caller has set the
    threads, placed the model and made the optimizer; ``bar``/``task``, if given, advance per step.
    """
    steps_per_epoch = batches.steps_per_epoch(recipe.batch_size)
    total = recipe.epochs * steps_per_epoch
    if recipe.max_steps is not None:
        total = min(total, recipe.max_steps)
    warmup = recipe.warmup_epochs * steps_per_epoch
    result = TrainResult(0, 0.0, 0)
    model.train()
    t_start = time.perf_counter()
    epoch, first = start_epoch, start_step
    while epoch < recipe.epochs:
        if epoch * steps_per_epoch + first >= total:
            break
        if on_epoch_start is not None:
            on_epoch_start(epoch, first)
        loss_sum = torch.zeros((), device=runtime.device)
        seen, t0, lr, k = 0, time.perf_counter(), recipe.lr, 0
        for k, (x, y) in enumerate(batches.epoch(recipe.seed, epoch, recipe.batch_size, first,
                                                  runtime.rank, runtime.world), start=first):
            global_step = epoch * steps_per_epoch + k
            if global_step >= total:
                break
            s = step_seed(recipe.seed, epoch, k)
            torch.manual_seed(s)  # dropout, random subnets
            lr = cosine_lr(recipe.lr, global_step, total, warmup)
            for g in optimizer.param_groups:
                g["lr"] = lr
            optimizer.zero_grad(set_to_none=True)
            loss_sum += step(x, y, s)
            if after_backward is not None:
                after_backward()
            optimizer.step()
            seen += len(y) * runtime.world
            result.steps += 1
            if bar is not None and (k % 10 == 0 or runtime.device.type != "cuda"):
                rate = seen / max(1e-9, time.perf_counter() - t0)
                bar.update(task, completed=global_step + 1,
                           info=f"epoch {epoch + 1}/{recipe.epochs} loss {float(loss_sum) / (k - first + 1):.3f} {rate:.0f} img/s")
            if on_step is not None:
                on_step(epoch, k + 1)
        done_steps = max(0, k - first + 1) if seen else 0
        dt = time.perf_counter() - t0
        result.images += seen
        record = {"epoch": epoch + 1, "loss": float(loss_sum) / max(1, done_steps), "images_per_s": seen / max(1e-9, dt),
                  "lr": lr}
        result.history.append(record)
        epoch, first = epoch + 1, 0
        if on_epoch_end is not None:
            on_epoch_end(epoch, record)
    result.seconds = time.perf_counter() - t_start
    model.eval()
    return result


# ---- evaluation ---------------------------------------------------------------------------
@dataclass
class Scores:
    """Top-1 and F1 scores of a classifier on one split."""

    top1: float
    macro_f1: float
    per_class_f1: list[float]
    n: int

    def to_dict(self) -> dict[str, Any]:
        return {"top1": self.top1, "macro_f1": self.macro_f1, "per_class_f1": self.per_class_f1, "n": self.n}


def scores_from_predictions(pred: torch.Tensor, y: torch.Tensor, num_classes: int) -> Scores:
    pred, y = pred.cpu().long(), y.cpu().long()
    conf = torch.bincount(y * num_classes + pred, minlength=num_classes * num_classes).view(num_classes, num_classes)
    tp = conf.diag().double()
    precision_den = conf.sum(0).double()
    recall_den = conf.sum(1).double()
    f1 = torch.where(precision_den + recall_den > 0, 2 * tp / (precision_den + recall_den).clamp_min(1), torch.zeros_like(tp))
    present = recall_den > 0  # macro F1 over the classes the split holds, as scikit-learn's labels=present
    macro = float(f1[present].mean()) if bool(present.any()) else 0.0
    return Scores(float(tp.sum() / max(1, len(y))), macro, [float(v) for v in f1], int(len(y)))


@torch.inference_mode()
def predict(model: nn.Module, data: ResidentImages, batch_size: int = 500) -> torch.Tensor:
    model.eval()
    preds = [model(x).argmax(1) for x, _ in data.in_order(batch_size)]
    return torch.cat(preds) if preds else torch.zeros(0, dtype=torch.long)


def evaluate(model: nn.Module, ds: Any, split: str = "val", device: torch.device | str = "cpu",
             channels_last: bool = True, batch_size: int = 500) -> Scores:
    """Top-1 and F1 of ``model`` on a split of ``ds``, in the training loop's memory format."""
    data = ResidentImages(ds, split, device, channels_last, augment=False)
    dev = torch.device(device)
    model.to(dev)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    return scores_from_predictions(predict(model, data, batch_size), data.y, ds.num_classes)


def training_runtime(recipe: TrainRecipe) -> Runtime:
    return Runtime(resolve_device(recipe.device))


def train_classifier(model: nn.Module, ds: Any, recipe: TrainRecipe, *, progress: bool = False,
                     label: str = "train", teacher: nn.Module | None = None, kd_alpha: float = 0.5,
                     kd_temperature: float = 2.0, batches: Batches | None = None) -> TrainResult:
    """Train any classifier on the training split of ``ds`` (or on ``batches``) with ``recipe``:
    cross-entropy with label smoothing, or distillation from ``teacher``. The model is left on
    the recipe's device in eval mode."""
    from hwnas.accuracy.progress import progress_bar

    recipe.check()
    rt = training_runtime(recipe)
    with use_threads(recipe.threads):
        prepare_model(model, recipe, rt.device)
        data = batches if batches is not None else ResidentImages(ds, "train", rt.device, recipe.channels_last,
                                                                  augment=recipe.augment)
        opt = make_optimizer(model, recipe)
        forward = maybe_compile(model, recipe, rt.device)
        if teacher is not None:
            prepare_model(teacher, recipe, rt.device)
            step = distillation_step(forward, teacher, rt, kd_alpha, kd_temperature)
        else:
            step = cross_entropy_step(forward, rt, recipe.label_smoothing)
        total = recipe.epochs * data.steps_per_epoch(recipe.batch_size)
        if recipe.max_steps is not None:
            total = min(total, recipe.max_steps)
        with progress_bar(progress) as bar:
            task = bar.add_task(label, total=total, info="")
            return train(model, data, recipe, step, opt, rt, bar=bar, task=task)
