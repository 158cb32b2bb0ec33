"""Training and evaluation throughput of the shared loop against the loop the project had before.

"before" is the stand-alone loop as it was (channels-first, one thread, each step building its
batch with ``Dataset.prepare`` and a fresh generator); "after" is ``hwnas.accuracy.training``
with its defaults (channels_last, all cores, resident data, one-gather augmentation), plus the
variants that tell the gains apart. Each variant trains the same random ``mbv3-32`` arch at
32 px, batch 64, for ``--steps`` timed steps after ``--warmup``; variants are interleaved over
``--repeats`` rounds so that a slow spell of the machine hits all of them, and the ratios are
formed within each round. Evaluation: images per second over the val split.

    python benchmarks/train_throughput.py                        # CIFAR-10 from ../shared/data, else digits
    python benchmarks/train_throughput.py --data digits --repeats 5 --json benchmarks/results/train_throughput.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hwnas.accuracy.runtime import Runtime, cosine_lr, step_seed  # noqa: E402
from hwnas.accuracy.supernet.subnet_eval import accuracy as old_accuracy  # noqa: E402
from hwnas.accuracy.supernet import _init_weights  # noqa: E402
from hwnas.accuracy.training import (ResidentImages, TrainRecipe, available_cores, cross_entropy_step,  # noqa: E402
                                     evaluate, make_optimizer, prepare_model, train, use_threads)
from hwnas.data import load_dataset  # noqa: E402
from hwnas.space import get_space  # noqa: E402


def old_loop(model, ds, steps: int, warmup: int, batch: int = 64) -> float:
    """The stand-alone loop as the project trained before (its per-step work kept as it was)."""
    decay = [p for p in model.parameters() if p.dim() > 1]
    no_decay = [p for p in model.parameters() if p.dim() <= 1]
    opt = torch.optim.SGD([{"params": decay, "weight_decay": 4e-5}, {"params": no_decay, "weight_decay": 0.0}],
                          lr=0.05, momentum=0.9, nesterov=True)
    order = torch.randperm(len(ds.train_y), generator=torch.Generator().manual_seed(step_seed(0, 0, -1)))
    total = warmup + steps
    t0 = 0.0
    for step in range(total):
        if step == warmup:
            t0 = time.perf_counter()
        s = step_seed(0, 0, step)
        idx = order[(step * batch) % (len(order) - batch):][:batch]
        x = ds.prepare(ds.train_x[idx], augment=True, generator=torch.Generator().manual_seed(s))
        y = ds.train_y[idx]
        for g in opt.param_groups:
            g["lr"] = cosine_lr(0.05, step, total)
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x).float(), y, label_smoothing=0.1)
        loss.backward()
        opt.step()
    return steps * batch / (time.perf_counter() - t0)


def new_loop(model, ds, steps: int, warmup: int, threads: int | None, channels_last: bool, batch: int = 64) -> float:
    recipe = TrainRecipe(epochs=1, batch_size=batch, threads=threads, channels_last=channels_last, device="cpu",
                         max_steps=warmup + steps, compile=False)
    rt = Runtime(torch.device("cpu"))
    with use_threads(threads):
        prepare_model(model, recipe, rt.device)
        data = ResidentImages(ds, "train", rt.device, channels_last)
        stamps: list[float] = []
        train(model, data, recipe, cross_entropy_step(model, rt, 0.1), make_optimizer(model, recipe), rt,
              on_step=lambda e, k: stamps.append(time.perf_counter()))
    return steps * batch / (stamps[-1] - stamps[warmup - 1])


def eval_rate(model, ds, new: bool, threads: int | None) -> float:
    with use_threads(threads):
        t0 = time.perf_counter()
        if new:
            evaluate(model, ds, "val", "cpu", channels_last=True)
        else:
            model.to(memory_format=torch.contiguous_format)
            old_accuracy(model, ds, "val")
        return len(ds.val_y) / (time.perf_counter() - t0)


def fresh(space, arch, ds):
    torch.manual_seed(0)
    m = space.build(arch, num_classes=ds.num_classes)
    _init_weights(m)
    return m


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None, help="dataset spec (default: cifar10 if the shared copy exists, else digits)")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--arch-seed", type=int, default=0)
    ap.add_argument("--json", default=None, help="write every number here")
    args = ap.parse_args()
    data = args.data
    if data is None:
        from hwnas.data.cache import shared_data_dir

        data = "cifar10" if (shared_data_dir() / "cifar10").exists() else "digits"
    space = get_space("mbv3-32")
    ds = load_dataset(data, image_size=32)
    arch = space.sample(args.arch_seed)
    cores = available_cores()
    variants = {
        "before (NCHW, 1 thread)": lambda: old_loop(fresh(space, arch, ds), ds, args.steps, args.warmup),
        f"before, {cores} threads": lambda: _with_threads(cores, lambda: old_loop(fresh(space, arch, ds), ds, args.steps, args.warmup)),
        "shared loop, channels-first, 1 thread": lambda: new_loop(fresh(space, arch, ds), ds, args.steps, args.warmup, 1, False),
        "shared loop, channels_last, 1 thread": lambda: new_loop(fresh(space, arch, ds), ds, args.steps, args.warmup, 1, True),
        f"shared loop (defaults: channels_last, {cores} threads)": lambda: new_loop(fresh(space, arch, ds), ds, args.steps, args.warmup, None, True),
    }
    rates: dict[str, list[float]] = {k: [] for k in variants}
    evals = {"before (NCHW, 1 thread)": [], "shared loop (defaults)": []}
    ratios: list[float] = []
    for r in range(args.repeats):
        torch.set_num_threads(1)
        for name, fn in variants.items():
            rates[name].append(fn())
        ratios.append(rates[list(variants)[-1]][-1] / rates[list(variants)[0]][-1])
        model = fresh(space, arch, ds)
        evals["before (NCHW, 1 thread)"].append(eval_rate(model, ds, False, 1))
        evals["shared loop (defaults)"].append(eval_rate(model, ds, True, None))
        print(f"round {r + 1}/{args.repeats}: " + ", ".join(f"{v[-1]:.1f}" for v in rates.values()), flush=True)
    print(f"\nmbv3-32 arch {arch.id} at 32 px, batch 64, {data} ({len(ds.train_y)} train images); "
          f"{platform.processor() or platform.machine()}, {cores} cores, torch {torch.__version__}")
    print(f"{'training variant':<52} {'img/s median':>13} {'min-max':>15}")
    for name, v in rates.items():
        print(f"{name:<52} {statistics.median(v):>13.1f} {min(v):>7.1f}-{max(v):<7.1f}")
    print(f"\nspeed-up of the defaults over before, per round: {', '.join(f'{x:.2f}' for x in ratios)} "
          f"(median {statistics.median(ratios):.2f}x)")
    for name, v in evals.items():
        print(f"evaluation, {name:<40} {statistics.median(v):>9.0f} img/s")
    if args.json:
        from hwnas.latency.fingerprint import device_fingerprint

        Path(args.json).write_text(json.dumps({
            "arch": arch.to_dict(), "data": data, "steps": args.steps, "warmup": args.warmup, "batch": 64,
            "train_img_per_s": rates, "eval_img_per_s": evals, "speedup_per_round": ratios,
            "speedup_median": statistics.median(ratios), "machine": device_fingerprint(),
        }, indent=1) + "\n")


def _with_threads(n: int, fn):
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        return fn()
    finally:
        torch.set_num_threads(before)


if __name__ == "__main__":
    main()
