"""Joint architecture + hyperparameter search against searching either alone, at equal training epochs.

On digits, with the `train` evaluator (every candidate trained from scratch for E epochs on the
shared loop, val accuracy), three searches of N candidates each, so each spends N * E epochs:

  (a) arch:    the architecture searched, the training recipe the default one (TrainRecipe:
               SGD lr 0.05, weight decay 4e-5, batch 64, label smoothing 0.1, crop augmentation);
  (b) hparams: the hyperparameters searched (`--hparams`, `--fixed-arch`) for a fixed good
               architecture: the one (a) found with seed 0, i.e. the second stage of a two-stage
               pipeline that is given its first stage for free;
  (c) joint:   both at once (`--hparams`);
  (d) joint-2n (with ``--modes ...,joint-2n``): joint search with 2N candidates, the epochs of
               the whole two-stage pipeline (a) then (b).

The best candidate of each (by val accuracy) is then trained again with its own recipe, and its
top-1 on the test split is reported (the same training: seeded, so the test network is the
one the search measured on val). Spaces: `cnn` and `mbv3-32` at digits' native 8x8 (small
menus; latency plays no part: the budget admits every candidate), or at 32x32 on a CIFAR-10
subset (``--data cifar10 --train-limit N``).

    python benchmarks/search_joint.py --seeds 3 --json benchmarks/results/search_joint_digits.json
    python benchmarks/search_joint.py --data cifar10 --train-limit 2000 --spaces cnn \
        --modes arch,hparams,joint,joint-2n --json benchmarks/results/search_joint_cifar10.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SPACES_32 = {  # the same menus at 32x32 (CIFAR-10)
    "cnn": {"depths": [2, 3, 4], "channels": [16, 32], "kernels": [3, 5], "fc_units": [0, 64]},
}
SPACES = {
    "cnn": {"image_size": 8, "depths": [2, 3], "channels": [8, 16], "kernels": [3, 5], "fc_units": [0, 32],
            "min_resolution": 2},
    "mbv3-32": {"image_size": 8, "strides": [1, 2, 2], "stem_channels": 16, "widths": [[16, 24], [24, 32], [32, 48]],
                "se": [False, True, True], "acts": ["relu", "hswish", "hswish"], "depths": [1, 2], "kernels": [3, 5],
                "expands": [3, 6], "head_channels": 128},
}
HPARAMS = {
    "lr": {"kind": "log", "low": 0.005, "high": 0.5, "steps": 8},
    "weight_decay": {"kind": "log", "low": 1e-5, "high": 1e-2, "steps": 4},
    "optimizer": ["sgd", "adamw"],
    "batch_size": [32, 64, 128],
    "label_smoothing": {"kind": "float", "low": 0.0, "high": 0.2, "steps": 3},
    "augment": {"kind": "float", "low": 0.0, "high": 2.0, "steps": 3},
}
MODES = ("arch", "hparams", "joint", "joint-2n")


def share_loaded_datasets() -> None:
    """Every search here builds its own train evaluator, which loads its dataset (CIFAR-10: most
    of a minute); one loaded copy per (spec, options) serves them all."""
    import hwnas.accuracy.train_evaluator as te

    loaded: dict = {}
    load = te.load_dataset

    def shared(spec, **options):
        key = (spec, tuple(sorted(options.items())))
        if key not in loaded:
            loaded[key] = load(spec, **options)
        return loaded[key]

    te.load_dataset = shared


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spaces", default="cnn,mbv3-32")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--candidates", type=int, default=16, help="N: candidates per search")
    ap.add_argument("--epochs", type=int, default=6, help="E: training epochs per candidate")
    ap.add_argument("--strategy", default="tpe")
    ap.add_argument("--modes", default="arch,hparams,joint", help=f"of {', '.join(MODES)}")
    ap.add_argument("--data", default="digits", help="digits (8x8 spaces) or cifar10[:PATH] (32x32 spaces)")
    ap.add_argument("--train-limit", type=int, default=None, help="train on the first N training images only")
    ap.add_argument("--val-limit", type=int, default=None, help="judge candidates on the first N val images only")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    import numpy as np
    import torch

    from hwnas.accuracy.train_evaluator import TrainEvaluator
    from hwnas.latency.backends import get_backend
    from hwnas.latency.fingerprint import device_fingerprint
    from hwnas.latency.profiler import profile
    from hwnas.search.runner import SearchConfig, run
    from hwnas.space import get_space

    torch.set_num_threads(1)
    options = {"tpe": {"init": 6}, "gp": {"init": 6}, "evolution": {"population": 6, "sample_size": 3}}.get(args.strategy, {})
    modes = args.modes.split(",")
    if "hparams" in modes and "arch" not in modes:
        raise SystemExit("the hparams mode searches for the arch the arch mode found: list arch before it")
    data = {"data": args.data, **({"train_limit": args.train_limit} if args.train_limit else {}),
            **({"val_limit": args.val_limit} if args.val_limit else {})}
    share_loaded_datasets()
    table = SPACES if args.data == "digits" else SPACES_32
    rows: list[dict] = []
    t_all = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.spaces.split(","):
            settings = table[name]
            space = get_space(name, **settings)
            prof = Path(tmp) / f"{name}.json"
            profile(space, get_backend("ort-cpu"), prof, n_calibrate=10, n_validate=0, plain_units_step=False)
            fixed = None  # (b)'s arch: what (a) finds with seed 0
            for seed in range(args.seeds):
                for mode in modes:
                    t0 = time.perf_counter()
                    cfg = SearchConfig(space=name, space_settings=settings, profile=str(prof), strategy=args.strategy,
                                       strategy_options=options, seed=seed, latency_budget_ms=1e3,
                                       evaluator=f"train:{args.epochs}", evaluator_options=data,
                                       budget_evals=args.candidates * (2 if mode == "joint-2n" else 1),
                                       hparams=HPARAMS if mode != "arch" else None,
                                       fixed_arch=fixed if mode == "hparams" else None)
                    res = run(cfg, out=Path(tmp) / f"{name}-{mode}-{seed}")
                    if mode == "arch" and seed == 0:
                        fixed = json.dumps(res.best["arch"])
                    hp = res.best.get("hparams") or {}
                    test = TrainEvaluator(str(args.epochs), space, split="test", **data).evaluate([space.parse(res.best["arch"])],
                                                                                          hparams=hp or None)[0]
                    rows.append({"space": name, "seed": seed, "mode": mode, "candidates": len(res.records),
                                 "epochs_spent": len(res.records) * args.epochs, "best_id": res.best["id"],
                                 "best_hparams": hp, "best_val_top1": res.best["accuracy"], "best_test_top1": test,
                                 "seconds": round(time.perf_counter() - t0, 1)})
                    print(json.dumps(rows[-1]), flush=True)
    summary = {}
    for name in args.spaces.split(","):
        per = {m: [r for r in rows if r["space"] == name and r["mode"] == m] for m in modes}
        summary[name] = {m: {"test_top1_per_seed": [round(r["best_test_top1"], 4) for r in rs],
                             "median_test_top1": float(np.median([r["best_test_top1"] for r in rs])),
                             "mean_test_top1": float(np.mean([r["best_test_top1"] for r in rs])),
                             "median_val_top1": float(np.median([r["best_val_top1"] for r in rs]))}
                         for m, rs in per.items()}
        if {"joint", "arch", "hparams"} <= set(per):
            joint = [r["best_test_top1"] for r in per["joint"]]
            summary[name]["joint_beats_both_on_seeds"] = sum(
                j > max(a["best_test_top1"], b["best_test_top1"]) for j, a, b in zip(joint, per["arch"], per["hparams"]))
    print(json.dumps(summary, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps({
            "machine": device_fingerprint(), "platform": platform.platform(), "spaces": {s: table[s] for s in summary},
            "data": data,
            "hparams": HPARAMS, "strategy": args.strategy, "strategy_options": options, "epochs": args.epochs,
            "candidates": args.candidates, "rows": rows, "summary": summary,
            "seconds": round(time.perf_counter() - t_all, 1),
            "command": " ".join(["python", "benchmarks/search_joint.py", *sys.argv[1:]])}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
