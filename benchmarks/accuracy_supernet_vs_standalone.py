"""How far the supernet's accuracy estimates can be trusted: supernet vs stand-alone training.

Trains a supernet (or reuses --checkpoint), reads N diverse archs from it (extract + BN
recalibration + val accuracy, timed), trains the same archs from scratch for the same number of
epochs, and writes both sets of accuracies, their differences and Kendall tau as JSON.

    OMP_NUM_THREADS=1 python benchmarks/accuracy_supernet_vs_standalone.py --data digits \
        --space-settings '{"image_size": 8}' --epochs 8 --archs 6 --out digits.json
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import torch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--space", default="mbv3-32")
    ap.add_argument("--space-settings", default="{}")
    ap.add_argument("--data", default="digits")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--standalone-epochs", type=int, default=None, help="default: --epochs")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--train-limit", type=int, default=None)
    ap.add_argument("--val-limit", type=int, default=None)
    ap.add_argument("--archs", type=int, default=6, help="archs compared (largest, smallest and random ones)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--checkpoint", default=None, help="reuse this supernet instead of training one")
    ap.add_argument("--diverse", action="store_true",
                    help="pick the random archs at evenly spaced FLOPs quantiles of 300 samples (a spread of sizes) "
                         "instead of the first random ones")
    ap.add_argument("--kernel-transform", action="store_true")
    ap.add_argument("--standalone-from", nargs="+", default=[],
                    help="reuse the stand-alone accuracies of earlier results or shards (same archs, same recipe)")
    ap.add_argument("--standalone-only", default=None, metavar="I/K",
                    help="only train shard I of K of the archs stand-alone (no supernet) and write their rows; "
                         "shards run side by side and are merged with --checkpoint ... --standalone-from")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.set_num_threads(1)

    from hwnas.accuracy import get_evaluator
    from hwnas.accuracy.predictor import kendall_tau
    from hwnas.accuracy.standalone import train_standalone
    from hwnas.accuracy.training import TrainRecipe
    from hwnas.accuracy.supernet.train import SupernetTrainConfig, data_for, train_supernet
    from hwnas.space import get_space

    space = get_space(args.space, **json.loads(args.space_settings))
    cfg = SupernetTrainConfig(data=args.data, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                              train_limit=args.train_limit, val_limit=args.val_limit, seed=args.seed,
                              kernel_transform=args.kernel_transform, device="cpu")
    rng = random.Random(args.seed + 100)
    archs = [space.largest(), space.smallest()]
    if args.diverse:
        from hwnas.search.objectives import CostModel

        cost = CostModel(space)
        pool = sorted({a.id: a for a in (space.sample(rng) for _ in range(300))}.values(), key=lambda a: cost(a).flops)
        k = args.archs - 2
        archs += [pool[round((i + 0.5) * (len(pool) - 1) / k)] for i in range(k)]
    while len(archs) < args.archs:
        a = space.sample(rng)
        if a not in archs:
            archs.append(a)
    ds = data_for(space, cfg)
    scfg = TrainRecipe(epochs=args.standalone_epochs or args.epochs, batch_size=args.batch_size, lr=args.lr,
                            seed=args.seed, device="cpu")
    if args.standalone_only:
        i, k = (int(v) for v in args.standalone_only.split("/"))
        rows = []
        for a in archs[i::k]:
            t1 = time.perf_counter()
            acc = train_standalone(space, a, ds, scfg)
            rows.append({"id": a.id, "standalone": acc, "standalone_s": time.perf_counter() - t1})
            print(json.dumps(rows[-1]), flush=True)
        Path(args.out).write_text(json.dumps({"standalone_epochs": scfg.epochs, "rows": rows}, indent=1) + "\n")
        return

    ckpt = Path(args.checkpoint or Path(args.out).with_suffix(".supernet.pt"))
    t0 = time.perf_counter()
    if not args.checkpoint:
        train_supernet(space, cfg, ckpt, force=True, progress=False)
    supernet_s = time.perf_counter() - t0
    ev = get_evaluator(f"supernet:{ckpt}", space, cache=False)
    est = ev.evaluate(archs)
    known = {}
    for f in args.standalone_from:
        known.update({r["id"]: (r["standalone"], r["standalone_s"]) for r in json.loads(Path(f).read_text())["rows"]})
    rows = []
    for a, e in zip(archs, est):
        t1 = time.perf_counter()
        acc = known[a.id][0] if a.id in known else train_standalone(space, a, ds, scfg)
        rows.append({"id": a.id, "arch": a.to_dict(), "supernet": e, "standalone": acc,
                     "diff_points": 100 * (e - acc), "standalone_s": known[a.id][1] if a.id in known else time.perf_counter() - t1})
        print(json.dumps({k: v for k, v in rows[-1].items() if k != "arch"}), flush=True)
    result = {
        "space": args.space, "space_settings": json.loads(args.space_settings), "data": args.data,
        "dataset": ds.describe(), "epochs": args.epochs, "standalone_epochs": scfg.epochs,
        "batch_size": args.batch_size, "lr": args.lr,
        # a reused checkpoint says how it was trained; the flags above describe the stand-alone runs
        "supernet_training": supernet_meta(ckpt),
        "diverse": args.diverse,
        "supernet_train_s": None if args.checkpoint else supernet_s, "eval_s_per_arch": ev.seconds_per_arch,
        "kendall_tau": kendall_tau([r["supernet"] for r in rows], [r["standalone"] for r in rows]),
        "max_abs_diff_points": max(abs(r["diff_points"]) for r in rows), "rows": rows,
    }
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k not in ("rows", "dataset")}))


def supernet_meta(ckpt: Path) -> dict:
    from hwnas.accuracy.supernet.checkpoint import load_checkpoint

    meta, _, _ = load_checkpoint(ckpt)
    return {"train": meta.get("train"), "kernel_transform": meta.get("kernel_transform"), "epochs_done": meta.get("epoch"),
            "history": meta.get("history")}


if __name__ == "__main__":
    main()
