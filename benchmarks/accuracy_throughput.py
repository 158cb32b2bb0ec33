"""Training throughput of the supernet running a subnet vs a plain model of that subnet.

For the largest subnet and N random ones: images/s of forward+backward (batch B, 1 thread),
alternating supernet and plain model so that machine noise hits both alike. The ratio
plain/supernet is the overhead of the elastic ops (slicing, kernel crops, per-call channel
counts).

    OMP_NUM_THREADS=1 python benchmarks/accuracy_throughput.py --image-size 32 --archs 4 --out tp.json
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from pathlib import Path

import torch


def rate(model: torch.nn.Module, x: torch.Tensor, reps: int) -> float:
    t0 = time.perf_counter()
    for _ in range(reps):
        model.zero_grad(set_to_none=True)
        model(x).sum().backward()
    return reps * len(x) / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--space", default="mbv3-32")
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--archs", type=int, default=4)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--kernel-transform", action="store_true")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.set_num_threads(1)
    from hwnas.accuracy.supernet import Supernet
    from hwnas.space import get_space

    space = get_space(args.space, image_size=args.image_size)
    net = Supernet(space, kernel_transform=args.kernel_transform).train()
    rng = random.Random(0)
    archs = [("largest", space.largest())] + [(f"random{i}", space.sample(rng)) for i in range(args.archs)]
    x = torch.randn(args.batch_size, *space.input_shape)
    rows = []
    for name, arch in archs:
        plain = space.build(arch).train()
        net.set_active(arch)
        rate(net, x, 1), rate(plain, x, 1)  # warm-up
        s, p = [], []
        for _ in range(args.rounds):
            s.append(rate(net, x, args.reps))
            p.append(rate(plain, x, args.reps))
        row = {"arch": name, "id": arch.id, "supernet_img_s": statistics.median(s), "plain_img_s": statistics.median(p)}
        row["overhead"] = row["plain_img_s"] / row["supernet_img_s"]
        rows.append(row)
        print(json.dumps(row), flush=True)
    result = {"space": args.space, "image_size": args.image_size, "batch_size": args.batch_size, "threads": 1,
              "kernel_transform": args.kernel_transform, "rows": rows,
              "median_overhead": statistics.median(r["overhead"] for r in rows)}
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "rows"}))


if __name__ == "__main__":
    main()
