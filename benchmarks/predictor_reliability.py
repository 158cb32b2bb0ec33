"""How far supernet accuracies can be ranked at all: the ceiling on an accuracy predictor's tau.

Reproduces ``hwnas predictor fit``'s sample and split (same seed), fits the MLP on the training
part, then re-evaluates the held-out archs on the supernet's *whole* val split, image by image,
and reports Kendall tau between: two disjoint random halves of those images; the supernet's
usual evaluation (its --val-limit images, from the evaluator's cache) and the whole split; the
predictor and each of them. Run ``hwnas predictor fit`` (or ``hwnas evaluate``) on the same
supernet first so the N evaluations come from the cache.

    OMP_NUM_THREADS=1 python benchmarks/predictor_reliability.py --supernet c10.pt --n 300 --out rel.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--supernet", required=True)
    ap.add_argument("--n", type=int, default=300, help="as given to `hwnas predictor fit`")
    ap.add_argument("--seed", type=int, default=0, help="as given to `hwnas predictor fit`")
    ap.add_argument("--test-fraction", type=float, default=0.2)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.set_num_threads(1)

    from hwnas.accuracy import get_evaluator
    from hwnas.accuracy.supernet.checkpoint import load_checkpoint
    from hwnas.accuracy.predictor import AccuracyPredictor, kendall_tau, sample_and_split
    from hwnas.accuracy.supernet.subnet_eval import recalibrate_bn
    from hwnas.data import load_dataset
    from hwnas.space import space_from_config

    meta, _, _ = load_checkpoint(args.supernet)
    space = space_from_config(meta["space"], meta["space_config"])
    pool, order, n_test = sample_and_split(space, args.n, args.seed, args.test_fraction)  # as fit_predictor
    test, train = order[:n_test], order[n_test:]

    ev = get_evaluator(f"supernet:{args.supernet}", space)  # cached evaluations on the usual val images
    usual = np.array(ev.evaluate(pool))
    pred = AccuracyPredictor(space)
    pred.fit([pool[i] for i in train], usual[train].tolist(), seed=args.seed)
    predicted = np.array(pred.predict([pool[i] for i in test]))

    tr = meta["train"]
    ds = load_dataset(tr["data"], image_size=space.input_shape[-1], split_seed=tr.get("split_seed", 0),
                      train_limit=tr.get("train_limit"), val_limit=None)
    x, y = ds.split("val")
    correct = []
    for i in test:
        model = ev.model.extract(pool[i])
        recalibrate_bn(model, ds, ev.bn_images)
        model.eval()
        with torch.no_grad():
            guess = torch.cat([model(ds.prepare(x[s:s + 500])).argmax(1) for s in range(0, len(y), 500)])
        correct.append((guess == y).numpy())
    c = np.array(correct, dtype=float)
    halves = np.random.default_rng(args.seed).permutation(c.shape[1])
    a_half, b_half = halves[: len(halves) // 2], halves[len(halves) // 2:]
    whole = c.mean(1)
    result = {
        "supernet": str(args.supernet), "n": len(pool), "held_out": len(test), "val_images_usual": len(ev.ds.val_y),
        "val_images_whole": int(c.shape[1]),
        "usual_accuracy": {"mean": float(usual.mean()), "std": float(usual.std()), "min": float(usual.min()), "max": float(usual.max())},
        "whole_accuracy_held_out": {"mean": float(whole.mean()), "std": float(whole.std()), "min": float(whole.min()),
                                    "max": float(whole.max())},
        "tau_half_vs_half": kendall_tau(c[:, a_half].mean(1), c[:, b_half].mean(1)),
        "tau_usual_vs_whole": kendall_tau(usual[test], whole),
        "tau_predictor_vs_usual": kendall_tau(predicted, usual[test]),
        "tau_predictor_vs_whole": kendall_tau(predicted, whole),
    }
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
