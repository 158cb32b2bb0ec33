"""How well each cheap estimator ranks MBConv (``mbv3-32``) archs on CIFAR-10, against stand-alone
training, with the seed-to-seed agreement of that training as the noise floor.

``--archs`` archs spread over FLOPs (the largest, the smallest, and evenly spaced FLOPs
quantiles of 300 random samples) are each trained from scratch with the shared loop twice
(``--seeds``), on the same images and recipe. Their mean accuracy is the reference; the Kendall
tau between the two seeds' accuracies is the noise floor (no estimator can be judged more
finely than training agrees with itself). Judged against the reference:

- the supernet (trained here with the same images, or ``--checkpoint``), read by ``supernet:``;
- every zero-cost proxy and ``zc:ensemble`` on the same data;
- the few-shot predictor (trees on the proxies), leave-one-out over the archs: each arch is
  predicted by a predictor fitted on the others' reference accuracies.

CPU (state the budget; a 2-core machine trains about 100 images per second)::

    python benchmarks/accuracy_mbconv_cifar10.py --train-limit 2500 --val-limit 2000 --epochs 4 \\
        --supernet-epochs 6 --json benchmarks/results/accuracy_mbconv_cifar10_cpu.json

One GPU, full length (all 45,000 training images and 5,000 val; data resident on the device,
bf16 autocast, channels_last, ``torch.compile``). Sized for about 8 minutes on one H100-class
GPU by arithmetic (24 trainings x 5 epochs + a 15-epoch supernet, about 8 million images at an
assumed 20,000 img/s), not yet run on one: check the first arch's img/s and adjust ``--epochs``::

    python benchmarks/accuracy_mbconv_cifar10.py --device cuda --train-limit 0 --val-limit 0 \
        --batch-size 256 --lr 0.2 --epochs 5 --supernet-epochs 15 \
        --json benchmarks/results/accuracy_mbconv_cifar10_gpu.json

Stand-alone results are cached under the hwnas cache directory (per arch, data and recipe), so an
interrupted run continues where it stopped.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from scipy.stats import kendalltau, spearmanr  # noqa: E402


def pick_archs(space, n: int, seed: int) -> list:
    from hwnas.search.objectives import CostModel

    rng = random.Random(seed)
    cost = CostModel(space)
    pool = sorted({a.id: a for a in (space.sample(rng) for _ in range(300))}.values(), key=lambda a: cost(a).flops)
    archs = [space.largest(), space.smallest()]
    k = n - 2
    archs += [pool[round((i + 0.5) * (len(pool) - 1) / k)] for i in range(k)]
    return list({a.id: a for a in archs}.values())


def tau_rho(a, b) -> dict[str, float]:
    return {"kendall_tau": float(kendalltau(a, b).statistic), "spearman": float(spearmanr(a, b).statistic)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--archs", type=int, default=12)
    ap.add_argument("--seeds", type=int, default=2, help="stand-alone trainings per arch")
    ap.add_argument("--data", default="cifar10")
    ap.add_argument("--train-limit", type=int, default=2500, help="training images (seeded subset); 0: all 45,000")
    ap.add_argument("--val-limit", type=int, default=2000, help="val images; 0: all 5,000")
    ap.add_argument("--epochs", type=int, default=4, help="stand-alone epochs")
    ap.add_argument("--supernet-epochs", type=int, default=6)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all cores)")
    ap.add_argument("--checkpoint", type=Path, default=None, help="reuse this supernet instead of training one")
    ap.add_argument("--skip-supernet", action="store_true", help="leave the supernet out")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from hwnas.accuracy import get_evaluator
    from hwnas.accuracy.fewshot import FewShotPredictor
    from hwnas.accuracy.proxies import PROXIES
    from hwnas.accuracy.proxy_ensemble import log_ranks, reference_sample
    from hwnas.accuracy.supernet.train import SupernetTrainConfig, train_supernet
    from hwnas.accuracy.training import TrainRecipe
    from hwnas.accuracy.zc_evaluator import ProxyScorer
    from hwnas.data.cache import cache_dir
    from hwnas.space import get_space

    t0 = time.time()
    space = get_space("mbv3-32")
    archs = pick_archs(space, args.archs, seed=100)
    limits = {"train_limit": args.train_limit or None, "val_limit": args.val_limit or None}
    result: dict = {"machine": {"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
                                "device": args.device, "cuda": torch.cuda.get_device_name(0) if args.device == "cuda" else None,
                                "torch": torch.__version__},
                    "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                    "archs": [a.to_dict() for a in archs], "estimators": {}}

    # stand-alone training, twice per arch (cached per arch and recipe)
    per_seed = []
    for seed in range(args.seeds):
        recipe = TrainRecipe(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=seed, device=args.device,
                             threads=args.threads)
        ev = get_evaluator(f"train:{args.epochs}", space, data=args.data, recipe=recipe, progress=True, **limits)
        accs = []
        for i, a in enumerate(archs):
            accs.append(ev.evaluate([a])[0])
            print(f"seed {seed} arch {i + 1}/{len(archs)}: {100 * accs[-1]:.2f}%", file=sys.stderr, flush=True)
        per_seed.append(accs)
        result.setdefault("train_seconds_per_arch", []).extend(ev.seconds_per_arch)
    acc = np.mean(per_seed, axis=0)
    result["standalone"] = {"per_seed": per_seed, "mean": acc.tolist()}
    if args.seeds >= 2:
        result["noise_floor"] = tau_rho(per_seed[0], per_seed[1])

    # the supernet, trained on the same images
    if not args.skip_supernet:
        ckpt = args.checkpoint or (cache_dir() / "bench" / f"mbv3-32-cifar10-{args.train_limit}-{args.supernet_epochs}.pt")
        t1 = time.time()
        if args.checkpoint is None:
            ckpt.parent.mkdir(parents=True, exist_ok=True)
            cfg = SupernetTrainConfig(data=args.data, epochs=args.supernet_epochs, batch_size=args.batch_size, lr=args.lr,
                                      device=args.device, threads=args.threads, **limits)
            train_supernet(space, cfg, ckpt, resume=ckpt.exists(), force=not ckpt.exists(), progress=True)
        sn = get_evaluator(f"supernet:{ckpt}", space)
        est = sn.evaluate(archs)
        result["estimators"]["supernet"] = {**tau_rho(est, acc), "values": est, "seconds": time.time() - t1}

    # proxies and their ensemble
    scorer = ProxyScorer(space, args.data, 0, 64)
    names = PROXIES.names()
    x = scorer.values(archs, names)
    ref = scorer.values(reference_sample(space), names)
    for j, n in enumerate(names):
        result["estimators"][f"zc:{n}"] = {**tau_rho(x[:, j], acc), "values": x[:, j].tolist()}
    ens = get_evaluator("zc:ensemble", space, data=args.data)
    e = ens.evaluate(archs)
    result["estimators"]["zc:ensemble"] = {**tau_rho(e, acc), "values": e, "proxies": ens.describe()["ensemble"]["proxies"]}

    # few-shot predictor, leave-one-out over the archs
    feats = log_ranks(x, ref)
    loo = []
    for i in range(len(archs)):
        rest = [k for k in range(len(archs)) if k != i]
        loo.append(float(FewShotPredictor._trees(feats[rest], acc[rest], 0).predict(feats[i:i + 1])[0]))
    result["estimators"]["predictor (leave-one-out)"] = {**tau_rho(loo, acc), "values": loo}
    result["seconds"] = time.time() - t0

    print(f"\n{len(archs)} mbv3-32 archs on {args.data}: {args.train_limit or 45000} training images, {args.epochs} epochs, "
          f"{args.seeds} seeds; reference = mean stand-alone val top-1 ({100 * acc.min():.1f}-{100 * acc.max():.1f}%)")
    if "noise_floor" in result:
        nf = result["noise_floor"]
        print(f"noise floor (seed 0 vs seed 1): Kendall tau {nf['kendall_tau']:.3f}, Spearman {nf['spearman']:.3f}")
    print("| estimator | Kendall tau | Spearman rho |\n|---|---|---|")
    for k, v in result["estimators"].items():
        print(f"| {k} | {v['kendall_tau']:.3f} | {v['spearman']:.3f} |")
    print(f"{result['seconds']:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
