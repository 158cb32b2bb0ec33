"""Seconds per subnet evaluation (BatchNorm recalibration + val top-1), NCHW against channels_last.

What a supernet-scored search spends per candidate: extract the subnet, re-estimate its BN
statistics on 500 training images, score the val split. Each random arch is timed in both
memory formats, alternating (NCHW, channels_last, NCHW, channels_last) so that the host's noise
falls on both alike; the two must give the same accuracy.

    python benchmarks/supernet_eval_speed.py --data cifar10 --val-limit 2000 --archs 5 --json out.json

Without ``--checkpoint`` a supernet is trained for one short epoch first (its weights do not
change the cost of scoring it).
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", default="mbv3-32")
    ap.add_argument("--data", default="cifar10")
    ap.add_argument("--checkpoint", help="a trained supernet (default: train one for a short epoch)")
    ap.add_argument("--val-limit", type=int, default=2000)
    ap.add_argument("--archs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json")
    args = ap.parse_args()

    import torch

    from hwnas.accuracy.supernet.subnet_eval import accuracy, recalibrate_bn
    from hwnas.accuracy.supernet.train import SupernetTrainConfig, load_supernet, train_supernet
    from hwnas.data import load_dataset
    from hwnas.space import get_space

    torch.set_num_threads(args.threads)
    space = get_space(args.space)
    ds = load_dataset(args.data, image_size=space.input_shape[-1], train_limit=2000, val_limit=args.val_limit)
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = args.checkpoint or str(Path(tmp) / "sn.pt")
        if not args.checkpoint:
            train_supernet(space, SupernetTrainConfig(data=args.data, epochs=1, train_limit=300, threads=args.threads),
                           ckpt, force=True, progress=False)
        model, _ = load_supernet(ckpt, space, "cpu")
    rng = random.Random(0)
    rows = []
    for a in [space.sample(rng) for _ in range(args.archs)]:
        t = {False: [], True: []}
        acc = {}
        for cl in (False, True, False, True):
            m = model.extract(a)
            t0 = time.perf_counter()
            recalibrate_bn(m, ds, 500, channels_last=cl)
            acc.setdefault(cl, set()).add(accuracy(m, ds, "val", channels_last=cl))
            t[cl].append(time.perf_counter() - t0)
        rows.append({"arch": a.id, "nchw_s": min(t[False]), "channels_last_s": min(t[True]),
                     "speedup": min(t[False]) / min(t[True]), "same_accuracy": acc[False] == acc[True]})
        r = rows[-1]
        print(f"{a.id}: NCHW {r['nchw_s']:.2f} s, channels_last {r['channels_last_s']:.2f} s ({r['speedup']:.2f}x), "
              f"accuracy {'the same' if r['same_accuracy'] else 'DIFFERS'}", flush=True)
    speed = [r["speedup"] for r in rows]
    print(f"median {statistics.median(speed):.2f}x (min {min(speed):.2f}, max {max(speed):.2f}); "
          f"{sum(r['same_accuracy'] for r in rows)}/{len(rows)} the same accuracy; {args.threads} threads, "
          f"{len(ds.split('val')[1])} val images, {platform.processor() or platform.machine()}")
    if args.json:
        Path(args.json).write_text(json.dumps({"space": args.space, "data": args.data, "threads": args.threads,
                                               "val_images": len(ds.split("val")[1]), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
