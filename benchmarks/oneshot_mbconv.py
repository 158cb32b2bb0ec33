"""Gradient search (gdas, darts) on an MBConv space against evolution on a trained supernet, at
one latency budget, on digits (or a CIFAR-10 subset): each found arch exported (fine-tuned one epoch from the weights
its search trained) and measured: test top-1 in ONNX Runtime and plain latency of the FP32 file
(fresh process, median of 300 calls), all files timed in one process at the end.

    python benchmarks/oneshot_mbconv.py --profile FP32_TABLE.json --evolution-run RUN --budget-ms 0.698 \
        --out OUT --json benchmarks/results/oneshot_mbconv_digits.json
    python benchmarks/oneshot_mbconv.py --profile FP32_TABLE.json --evolution-run RUN --budget-ms 0.849 \
        --data cifar10 --train-limit 2500 --val-limit 1000 --finetune-steps 100 --out OUT

``--derive-samples K`` derives each gradient run's final arch by samples (the supernet's best of
the argmax and K archs drawn within the budget); its argmax arch is then exported and measured
as well, so one training gives both derivations.

``--evolution-run`` is a run folder of `hwnas search --strategy evolution` on the same space,
profile and budget (benchmarks/int8_design.py's run-a is one); the space settings are read from
the profile. Half the training images train the weights and half the architecture logits, as
the one-shot methods do.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", required=True)
    ap.add_argument("--evolution-run", required=True)
    ap.add_argument("--latency-ms", "--budget-ms", dest="latency_budget_ms", type=float, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--methods", default="gdas,darts")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--arch-lr", type=float, default=0.01)
    ap.add_argument("--data", default="digits", help="the evolution run's data (cifar10: its supernet's subset)")
    ap.add_argument("--train-limit", type=int, default=None, help="training images of the gradient searches")
    ap.add_argument("--val-limit", type=int, default=None)
    ap.add_argument("--latency-form", default="penalty")
    ap.add_argument("--latency-lambda", type=float, default=None, help="[the form's default]")
    ap.add_argument("--warmup-epochs", type=int, default=0, help="epochs that train only the weights first")
    ap.add_argument("--derive-samples", type=int, default=0, help="the final arch: 0 the argmax; K the supernet's best "
                    "of the argmax and K archs drawn within the budget")
    ap.add_argument("--finetune-steps", type=int, default=None, help="cap each export's fine-tuning steps")
    ap.add_argument("--finetune-epochs", type=int, default=1, help="fine-tuning epochs of each export")
    ap.add_argument("--cross-score", action="store_true", help="also score every pick on the evolution run's supernet "
                    "(val accuracy with its weights): the arch judged apart from the weights its search trained")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    import numpy as np
    import torch

    from hwnas.exporters.run_export import RunExportConfig, export_run
    from hwnas.latency import load_table
    from hwnas.latency.fingerprint import device_fingerprint
    from hwnas.latency.plain import PlainFiles
    from hwnas.search.runner import SearchConfig, run

    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table = load_table(args.profile)
    settings = {k: v for k, v in table.space["config"].items()}
    base = json.loads(json.dumps(settings))
    runs = [("evolution", 0, Path(args.evolution_run), 0.0)]
    for method in args.methods.split(","):
        for seed in range(args.seeds):
            folder = out / f"{method}-{seed}"
            t0 = time.perf_counter()
            if not (folder / "best.json").is_file():
                run(SearchConfig(space=table.space_name, profile=str(Path(args.profile).resolve()), evaluator="",
                                 strategy=method, seed=seed, latency_budget_ms=args.latency_budget_ms, space_settings=base,
                                 strategy_options={"epochs": args.epochs, "data": args.data, "lr": args.lr,
                                                   "arch_lr": args.arch_lr, "threads": 1,
                                                   "latency_form": args.latency_form, "latency_lambda": args.latency_lambda,
                                                   "warmup_epochs": args.warmup_epochs, "train_limit": args.train_limit,
                                                   "val_limit": args.val_limit, "derive_samples": args.derive_samples}),
                    out=folder, force=True)
            runs.append((method, seed, folder, time.perf_counter() - t0))
    rows = []
    for method, seed, folder, seconds in runs:
        journal = [json.loads(line) for line in (folder / "journal.jsonl").read_text().splitlines()]
        final = journal[-1] if journal[-1].get("kind") == "final" else json.loads((folder / "best.json").read_text())
        samples = [r for r in journal if r.get("kind") == "sample"]
        # with the derivation by samples, the run's argmax arch (sample 0) is exported too: the
        # same training, derived both ways
        picks = [("sampled", "best", final)] + ([("argmax", samples[0]["id"], samples[0])] if samples else [])
        for derive, which, rec in picks:
            model = out / f"model-{method}-{seed}{'-argmax' if derive == 'argmax' else ''}.onnx"
            res = export_run(folder, model, RunExportConfig(arch=which, quantize="none", finetune_epochs=args.finetune_epochs, seed=0,
                                                            force=True, max_steps=args.finetune_steps,
                                                            latency_budget_ms=args.latency_budget_ms, check_profile=False))
            rows.append({"method": method, "seed": seed, "derive": "-" if method == "evolution" else derive if samples else "argmax",
                         "arch_id": res.report["metadata"]["arch_id"], "arch": rec.get("arch"),
                         "search_accuracy": rec.get("accuracy"), "supernet_accuracy": rec.get("supernet_accuracy"),
                         "derived_from": rec.get("derived_from"), "samples_scored": len(samples),
                         "predicted_ms": res.report.get("predicted_ms"),
                         "test_top1": res.report["fp32"]["top1"], "search_seconds": round(seconds, 1), "model": model})
    with PlainFiles() as files:
        for _ in range(3):
            for r in rows:
                files.add_onnx(str(r["model"]), (1, *table.get_space().input_shape))
        times = files.run()
    for j, r in enumerate(rows):
        r["plain_median_ms"] = float(np.median([times[i * len(rows) + j]["median_ms"] for i in range(3)]))
        r["meets_budget"] = r["plain_median_ms"] <= args.latency_budget_ms
        del r["model"]
    if args.cross_score:
        from hwnas.accuracy import get_evaluator
        from hwnas.exporters.run_export import read_run, run_file

        space = table.get_space()
        ckpt = run_file(read_run(args.evolution_run), "evaluator", "supernet checkpoint")
        scores = get_evaluator(f"supernet:{ckpt}", space).evaluate([space.parse(r["arch"]) for r in rows])
        for r, v in zip(rows, scores):
            r["evolution_supernet_val"] = float(v)
    cross = " on evolution's supernet |" if args.cross_score else ""
    print(f"| method | seed | derive | test top-1 | predicted ms | plain ms | search s |{cross}\n|---|---|---|---|---|---|---|"
          + ("---|" if cross else ""))
    for r in rows:
        extra = f" {100 * r['evolution_supernet_val']:.2f} |" if cross else ""
        print(f"| {r['method']} | {r['seed']} | {r['derive']} | {100 * r['test_top1']:.2f} | {r['predicted_ms']:.4f} | "
              f"{r['plain_median_ms']:.4f} | {r['search_seconds']:.0f} |{extra}")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "machine": device_fingerprint(), "platform": platform.platform(), "latency_budget_ms": args.latency_budget_ms,
            "space": table.space_name, "settings": settings, "data": args.data, "train_limit": args.train_limit,
            "val_limit": args.val_limit, "latency_form": args.latency_form,
            "latency_lambda": args.latency_lambda, "warmup_epochs": args.warmup_epochs, "derive_samples": args.derive_samples,
            "finetune_epochs": args.finetune_epochs, "epochs": args.epochs, "lr": args.lr, "arch_lr": args.arch_lr, "rows": rows,
            "command": " ".join(["python", "benchmarks/oneshot_mbconv.py", *(
                Path(a).name if a in (args.out, args.profile, args.evolution_run, args.json) else a
                for a in sys.argv[1:])])}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
