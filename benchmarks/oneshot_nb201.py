"""GDAS and DARTS on NAS-Bench-201, judged exactly: the true CIFAR-10 test accuracy of the found cell.

Each run is ``hwnas search --strategy gdas|darts`` (``hwnas.search.run``): a supernet trained on
real CIFAR-10 images (half of the training images for the weights, half for the architecture),
its final cell read from the NAS-Bench-201 table (``c10_test``, the accuracy of the cell trained
for 200 epochs) and its latency from a device column. Two settings per method and seed:

- ``free``: no budget (the published setting; DARTS is known to collapse to parameter-free
  cells there, ~54% published, GDAS ~93.5%, the table's best cell 94.37%);
- ``budget``: the latency loss on one device column (``--latency-device``, default ``pixel3``)
  at a percentile of that column (``--percentile``, default 50): share of seeds whose found
  cell meets the budget, and the regret (best ``c10_test`` within the budget minus the found
  cell's).

On a CPU the supernet is a reduced proxy of the benchmark's skeleton (``--space-settings``:
16 px inputs, one cell per stage) trained on a subset (``--train-limit``) for a few epochs; the
cells are those of the full space, so the table judges them as it judges any. ``--device cuda``
selects the full-length settings instead (the benchmark's skeleton at 32 px, all 45,000
training images, more epochs; see ``GPU``), sized to fit one GPU session: ``--wall-budget-s``
(default 450 s with ``--device cuda``) first times one epoch of each method, then gives each
run the most epochs (up to the preset's) that keep the whole job within the budget. Every
number is written to ``--json`` after each run, so a job cut short keeps what it finished.

    python benchmarks/oneshot_nb201.py --seeds 3 --json benchmarks/results/oneshot_nb201_cpu.json
    python benchmarks/oneshot_nb201.py --device cuda --seeds 3 --json benchmarks/results/oneshot_nb201_gpu.json
    python benchmarks/oneshot_nb201.py --device cuda --seeds 3 --wall-budget-s 0 ...   # the preset's epochs in full
    python benchmarks/oneshot_nb201.py --methods gdas --settings budget --seeds 1 --epochs 2   # a quick look
    python benchmarks/oneshot_nb201.py --settings budget --latency-form multiplicative --seeds 3 --json out.json

Every run's folder is kept under ``--runs`` (a temporary folder by default).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PUBLISHED = {"darts": 54.30, "gdas": 93.51, "best": 94.37}  # NAS-Bench-201 paper, CIFAR-10 test (first-order DARTS, GDAS)

# what a 2-core CPU affords in a few minutes per run
CPU = {"space_settings": {"image_size": 16, "cells_per_stage": 1}, "train_limit": 10000, "epochs": 8,
       "batch_size": 64, "lr": 0.05, "arch_lr": 3e-3, "threads": 1}
# full length on one GPU: the benchmark's skeleton and data, NAS-Bench-201's search recipe with
# fewer epochs (GDAS ran 250, DARTS 50 in the paper); not measured on these machines
GPU = {"space_settings": {}, "train_limit": None, "epochs": 30, "batch_size": 64, "lr": 0.025, "arch_lr": 3e-4,
       "threads": None}
GPU_EPOCHS = {"gdas": 30, "darts": 10}  # DARTS computes every operation: about three times GDAS' step


def table_truth(column: str):
    """(accuracy in percent, latency in ms) of every cell, by arch id."""
    from hwnas.data.benchmark_csv import load_csv_table, resolve_csv
    from hwnas.space import get_space

    t = load_csv_table(resolve_csv("nb201"), get_space("nb201"))
    acc = t.column("c10_test")
    lat = t.column(column)
    return {a.id: (float(acc[i]), float(lat[i])) for i, a in enumerate(t.archs)}, acc, lat


def one_run(method: str, seed: int, budget: float | None, column: str, opts: dict, out: Path, truth: dict) -> dict:
    from hwnas.search import run

    strategy_options = {k: opts[k] for k in ("train_limit", "epochs", "batch_size", "lr", "arch_lr", "threads")
                        if opts.get(k) is not None}
    strategy_options.update(data="cifar10", device=opts["device"], latency_lambda=opts["latency_lambda"],
                            latency_form=opts.get("latency_form", "penalty"), derive_samples=opts.get("derive_samples", 0))
    if method in opts.get("epochs_by_method", {}):
        strategy_options["epochs"] = opts["epochs_by_method"][method]
    t0 = time.perf_counter()
    res = run(space="nb201", space_settings=opts["space_settings"], profile=f"table:nb201#{column}",
              evaluator="table:nb201#c10_test", strategy=method, seed=seed, latency_budget_ms=budget,
              strategy_options=strategy_options, out=out, force=True)
    seconds = time.perf_counter() - t0
    final = res.records[-1]
    return {"method": method, "seed": seed, "latency_budget_ms": budget, "id": final["id"], "cell": final["arch"]["cell"],
            "c10_test": 100 * final["accuracy"], "latency_ms": final["latency_ms"],
            "repaired_from": final.get("repaired_from"), "supernet_val": final["supernet_accuracy"],
            "argmax_c10_by_epoch": [round(100 * r["accuracy"], 2) for r in res.records if r["kind"] == "argmax"],
            "last_loss": [r.get("loss") for r in res.records if r["kind"] == "argmax"][-1],
            "derived_from": final.get("derived_from"),
            # with the derivation by samples: the argmax cell's (sample 0) true accuracy, for comparison
            "argmax_c10_test": next((truth[r["id"]][0] for r in res.records if r["kind"] == "sample"), None),
            "seconds": seconds, "epochs": strategy_options["epochs"]}


def fit_epochs(methods, settings, args, opts, budget, column, runs_root, truth, wall: float) -> dict:
    """Time one epoch of each method (a probe run on the first seed and setting), then set each
    method's epochs so that every run of the job gets an equal share of what is left of ``wall``.

    A probe run's time includes what does not grow with the epochs (loading the images, the final
    evaluation), so the epochs it allows are on the safe side. Returns the probes' seconds."""
    from hwnas.data import load_dataset
    from hwnas.space import get_space

    t_start = time.perf_counter()
    # the first load of the images decodes and caches them: outside the probes, or the first
    # method's epoch would read several times its length
    load_dataset("cifar10", image_size=get_space("nb201", **opts["space_settings"]).input_shape[-1],
                 train_limit=opts["train_limit"])
    preset = dict(opts.get("epochs_by_method") or {m: opts["epochs"] for m in methods})
    probe_opts = {**opts, "epochs": 1, "epochs_by_method": {}, "derive_samples": 0}
    probes = {}
    for method in methods:
        b = budget if settings[0] == "budget" else None
        probes[method] = one_run(method, args.seed_start, b, column, probe_opts, runs_root / f"probe-{method}", truth)["seconds"]
    runs_per_method = len(settings) * args.seeds
    share = (wall - (time.perf_counter() - t_start)) / (runs_per_method * len(methods))
    fitted = {m: max(1, min(preset.get(m, opts["epochs"]), int(share // probes[m]))) for m in methods}
    opts["epochs_by_method"] = fitted
    print(f"wall budget {wall:.0f} s: one epoch took {', '.join(f'{m} {t:.1f} s' for m, t in probes.items())}; "
          f"{runs_per_method * len(methods)} runs of {share:.0f} s each get epochs {fitted} (preset {preset})", flush=True)
    for m in methods:
        if share < probes[m]:
            print(f"warning: one epoch of {m} ({probes[m]:.0f} s) is longer than a run's share ({share:.0f} s); "
                  f"the job will run past {wall:.0f} s: pass fewer --seeds or --settings", flush=True)
    return probes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", default="gdas,darts")
    ap.add_argument("--settings", default="free,budget", help="free (no budget), budget (latency loss), or both")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--seed-start", type=int, default=0)
    ap.add_argument("--device", default="cpu", help="cpu (reduced proxy) or cuda (full length)")
    ap.add_argument("--latency-device", default="pixel3", help="the lat_<device> column of the latency loss")
    ap.add_argument("--percentile", type=float, default=50.0)
    ap.add_argument("--latency-form", default="penalty", help="penalty or multiplicative (MnasNet's)")
    ap.add_argument("--latency-lambda", type=float, default=None, help="default: 1 for penalty, 0.07 for multiplicative")
    ap.add_argument("--derive-samples", type=int, default=0, help="the final cell: 0 the argmax; K the supernet's best of "
                    "the argmax and K cells drawn (within the budget) from the learned distribution")
    ap.add_argument("--epochs", type=int, help="override the preset's epochs (every method)")
    ap.add_argument("--train-limit", type=int, help="override the preset's number of training images")
    ap.add_argument("--arch-lr", type=float, help="override the preset's architecture learning rate")
    ap.add_argument("--space-settings", help="override the preset's proxy skeleton (JSON)")
    ap.add_argument("--wall-budget-s", type=float, help="size the epochs so that the whole job fits this many seconds "
                    "(one probe epoch per method first); default 450 with --device cuda, none on a CPU; 0: the preset's epochs")
    ap.add_argument("--runs", help="folder for the run folders (default: a temporary one)")
    ap.add_argument("--json", help="write every number here")
    args = ap.parse_args()

    gpu = args.device.startswith("cuda")
    opts = dict(GPU if gpu else CPU)
    if gpu:
        opts["epochs_by_method"] = dict(GPU_EPOCHS)
    for key in ("epochs", "train_limit", "arch_lr"):
        if getattr(args, key) is not None:
            opts[key] = getattr(args, key)
            if key == "epochs":
                opts.pop("epochs_by_method", None)
    if args.space_settings:
        opts["space_settings"] = json.loads(args.space_settings)
    opts.update(device=args.device, latency_lambda=args.latency_lambda, latency_form=args.latency_form,
                derive_samples=args.derive_samples)
    if opts["threads"] == 1:
        os.environ.setdefault("OMP_NUM_THREADS", "1")
    column = f"lat_{args.latency_device}"
    truth, acc, lat = table_truth(column)
    budget = float(np.percentile(lat, args.percentile))
    best_within = float(acc[lat <= budget].max())
    runs_root = Path(args.runs) if args.runs else Path(tempfile.mkdtemp(prefix="oneshot_nb201_"))
    settings = [s.strip() for s in args.settings.split(",") if s.strip()]
    print(f"device {args.device}; proxy {opts['space_settings'] or 'full skeleton'}; train images "
          f"{opts['train_limit'] or 'all'}; epochs {opts.get('epochs_by_method') or opts['epochs']}; "
          f"{column} p{args.percentile:g} budget {budget:.4g} ms (best c10_test within it {best_within:.2f}%); runs in {runs_root}")
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    wall = args.wall_budget_s if args.wall_budget_s is not None else (450.0 if gpu else None)
    wall = wall or None  # 0: the preset's epochs, however long they take
    probes = {}
    if wall is not None:
        probes = fit_epochs(methods, settings, args, opts, budget, column, runs_root, truth, wall)
    rows = []

    def write_json(complete: bool) -> None:
        if args.json:
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(json.dumps({"options": {k: v for k, v in opts.items()}, "column": column,
                                                   "percentile": args.percentile, "latency_budget_ms": budget,
                                                   "best_within_budget": best_within, "published": PUBLISHED,
                                                   "wall_budget_s": wall, "probes": probes, "complete": complete,
                                                   "runs": rows}, indent=1))

    for setting in settings:
        for method in methods:
            for seed in range(args.seed_start, args.seed_start + args.seeds):
                b = budget if setting == "budget" else None
                r = one_run(method, seed, b, column, opts, runs_root / f"{setting}-{method}-{seed}", truth)
                r["setting"] = setting
                if b is not None:
                    r["meets_budget"] = r["latency_ms"] <= b
                    r["regret"] = best_within - r["c10_test"]
                rows.append(r)
                extra = f"  {'meets' if r.get('meets_budget') else 'MISSES'} budget, regret {r['regret']:.2f}" if b else ""
                if r["argmax_c10_test"] is not None:
                    extra += f"  (the argmax cell: {r['argmax_c10_test']:.2f}%)"
                print(f"{setting:6s} {method:5s} seed {seed}: c10_test {r['c10_test']:.2f}%  {column} {r['latency_ms']:.4g} ms  "
                      f"{r['cell']}  ({r['seconds']:.0f} s){extra}", flush=True)
                write_json(complete=False)
    print()
    print("| setting | method | seeds | c10_test mean (min-max) | published | meets budget | regret median | s/run |")
    print("|---|---|---|---|---|---|---|---|")
    for setting in settings:
        for method in sorted({r["method"] for r in rows}):
            rs = [r for r in rows if r["setting"] == setting and r["method"] == method]
            if not rs:
                continue
            accs = [r["c10_test"] for r in rs]
            meets = f"{sum(r['meets_budget'] for r in rs)}/{len(rs)}" if setting == "budget" else "-"
            regret = f"{statistics.median(r['regret'] for r in rs):.2f}" if setting == "budget" else "-"
            print(f"| {setting} | {method} | {len(rs)} | {statistics.mean(accs):.2f} ({min(accs):.2f}-{max(accs):.2f}) | "
                  f"{PUBLISHED[method]:.2f} | {meets} | {regret} | {statistics.mean(r['seconds'] for r in rs):.0f} |")
    print(f"table best: {PUBLISHED['best']:.2f}% (free), {best_within:.2f}% within {budget:.4g} ms on {column}")
    write_json(complete=True)


if __name__ == "__main__":
    main()
