"""INT8 vs FP32 of an exported mbv3-32 model at 32x32: size, ORT CPU latency, top-1.

Trains one fixed architecture of the space from scratch on real data (a stated budget), exports
it with ``hwnas.exporters.export`` (INT8 QDQ, per-channel, calibration chosen on val), then
times the INT8 file paired call by call with the FP32 file (ONNX Runtime, CPU, 1 thread,
batch 1 or each of ``--batches``, the profiler's protocol), ``--repeats`` times with fresh
sessions, and reports the median and range of the ratios. Example (BENCHMARKS.md, "Export"):

    OMP_NUM_THREADS=1 python benchmarks/export_int8.py --data cifar10 --epochs 3 --train-limit 10000 --out c10
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def paired_ratios(fp32: bytes, int8: bytes, shape: tuple[int, ...], repeats: int, batch: int = 1) -> dict:
    """INT8 time over FP32 time, call by call, ``repeats`` times with fresh sessions each time,
    on inputs of ``batch`` images (the exported files have a dynamic batch axis)."""
    from hwnas.exporters.measure import LatencySetup, paired_ratio

    # one thread: CPU time of the inference thread, as profiles use
    setup = LatencySetup(clock="thread", batch=batch)
    runs = [paired_ratio(int8, fp32, shape[1:], setup) for _ in range(repeats)]
    ratios = [r["ratio"] for r in runs]
    fp_ms = [r["reference_ms"] for r in runs]
    return {"ratio_median": float(np.median(ratios)), "ratio_min": float(min(ratios)), "ratio_max": float(max(ratios)),
            "ratios": ratios, "fp32_ms_median": float(np.median(fp_ms)),
            "int8_ms_median": float(np.median([r * f for r, f in zip(ratios, fp_ms)]))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="digits", help="digits or cifar10[:PATH]")
    ap.add_argument("--arch-seed", type=int, default=0, help="the architecture: space.sample(seed)")
    ap.add_argument("--arch", default=None, help="an arch as JSON instead of --arch-seed")
    ap.add_argument("--space-settings", default="{}",
                    help='changes to the mbv3-32 preset as JSON, e.g. \'{"acts": ["relu", "relu", "relu", "relu", "relu"], '
                         '"se": [false, false, false, false, false]}\' (MobileNetV3-minimalistic style)')
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--train-limit", type=int, default=None)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--prune", type=float, default=None,
                    help="also prune this share of channels before export (then fine-tune, distilled from the unpruned model)")
    ap.add_argument("--finetune-epochs", type=int, default=2, help="fine-tuning epochs after pruning")
    ap.add_argument("--finetune-lr", type=float, default=0.01)
    ap.add_argument("--profile", default=None,
                    help="a latency table of the space (e.g. profiles/mbv3-32_ort-cpu_t1_b1.json): latencies are "
                         "measured in its units and compared with its prediction for the arch")
    ap.add_argument("--latency-ms", "--budget-ms", dest="latency_budget_ms", type=float, default=None, help="a latency budget to check the exported model against")
    ap.add_argument("--batches", default="1",
                    help="comma-separated batch sizes for the paired INT8/FP32 ratio (the report itself uses the profile's)")
    ap.add_argument("--out", required=True, help="folder for model.onnx, model.fp32.onnx, report.json/md, int8.json")
    args = ap.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    if not batches or min(batches) < 1:
        ap.error(f"--batches takes positive batch sizes, got {args.batches!r}")

    import torch

    from hwnas.accuracy.supernet import _init_weights
    from hwnas.data import load_dataset
    from hwnas.exporters import ExportData, ExportOptions, FinetuneConfig, LatencySetup, export
    from hwnas.exporters.finetune import dataset_batches, finetune
    from hwnas.space import get_space

    torch.set_num_threads(1)
    torch.manual_seed(0)
    space = get_space("mbv3-32", **json.loads(args.space_settings))
    arch = space.parse(args.arch) if args.arch else space.sample(args.arch_seed)
    ds = load_dataset(args.data, image_size=32, train_limit=args.train_limit)
    model = space.build(arch, num_classes=ds.num_classes)
    _init_weights(model)
    t0 = time.perf_counter()
    steps = finetune(model, dataset_batches(ds), FinetuneConfig(epochs=args.epochs, lr=args.lr))
    train_s = time.perf_counter() - t0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(0)
    idx = torch.randperm(len(ds.train_y), generator=g)[:512]
    data = ExportData(calibration=ds.prepare(ds.train_x[idx]), test=(ds.prepare(ds.test_x), ds.test_y),
                      val=(ds.prepare(ds.val_x), ds.val_y), classes=ds.classes)
    if args.prune is not None:
        data.train = dataset_batches(ds, seed=1)
    setup, predicted = LatencySetup(), None
    if args.profile:
        from hwnas.latency import LatencyPredictor, load_table

        table = load_table(args.profile)
        setup = LatencySetup.from_table(table)
        predicted = float(LatencyPredictor(table, space).predict(arch))
    t0 = time.perf_counter()
    res = export(model, data, out / "model.onnx", ExportOptions(
        quantize="int8", calibration="auto", latency=setup, force=True, prune=args.prune,
        latency_budget_ms=args.latency_budget_ms, predicted_ms=predicted,
        finetune=FinetuneConfig(epochs=args.finetune_epochs if args.prune is not None else 0, lr=args.finetune_lr),
        metadata={"arch": arch.to_dict(), "arch_id": arch.id, "dataset": ds.spec}))
    export_s = time.perf_counter() - t0
    r = res.report
    fp32, int8 = res.paths.fp32.read_bytes(), res.paths.model.read_bytes()
    by_batch = {b: paired_ratios(fp32, int8, (b, *space.input_shape), args.repeats, b) for b in batches}
    paired = by_batch[batches[0]]
    summary = {
        "data": ds.spec, "space_settings": json.loads(args.space_settings), "arch_id": arch.id, "arch": arch.to_dict(), "params": r["params"],
        "training": {"epochs": args.epochs, "train_images": len(ds.train_y), "steps": steps, "lr": args.lr,
                     "batch": 64, "seconds": train_s},
        "fp32": {k: r["fp32"].get(k) for k in ("size_bytes", "top1", "latency_ms")},
        "int8": {k: r["int8"].get(k) for k in ("size_bytes", "top1", "latency_ms", "calibration")},
        "size_ratio": r["int8_vs_fp32"]["size_ratio"], "top1_drop_points": r["int8_vs_fp32"]["top1_drop_points"],
        "latency_ratio_report": r["int8_vs_fp32"].get("latency_ratio"),
        "latency_ratio_report_separate": r["int8_vs_fp32"].get("latency_ratio_separate"), "latency_ratio_paired": paired,
        "latency_ratio_paired_by_batch": {str(b): v for b, v in by_batch.items()},
        "test_images": len(ds.test_y), "calibration": r["calibration"], "export_seconds": export_s,
        "profile": args.profile, "predicted_ms": predicted, "latency_budget_ms": args.latency_budget_ms,
        "meets_budget": r.get("meets_budget"),
    }
    if "pruning" in r:
        p = r["pruning"]
        summary["pruning"] = {k: p.get(k) for k in ("ratio", "params_before", "params_after", "latency_ratio",
                                                     "latency_ratio_separate", "top1_change")}
        summary["pruning"]["finetune"] = r.get("finetune")
        summary["unpruned"] = {k: r["unpruned"].get(k) for k in ("size_bytes", "top1", "latency_ms")}
    (out / "int8.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps({k: summary[k] for k in ("data", "arch_id", "params", "training", "fp32", "int8", "size_ratio",
                                               "top1_drop_points", "latency_ratio_report")}, indent=1))
    if "pruning" in summary:
        p = summary["pruning"]
        print(f"pruning {p['ratio']:.0%}: params {p['params_before']} -> {p['params_after']}, FP32 latency ratio "
              f"{p['latency_ratio']:.3f} (paired), top-1 {summary['unpruned']['top1']:.4f} -> {summary['fp32']['top1']:.4f} "
              f"({100 * p['top1_change']:+.2f} points) after {args.finetune_epochs} distilled epoch(s)")
    if predicted is not None:
        key = "unpruned" if "unpruned" in summary else "fp32"
        got = summary[key]["latency_ms"]
        print(f"table prediction for the arch {predicted:.4f} ms; measured ({key} FP32, table units) {got:.4f} ms "
              f"({100 * (got / predicted - 1):+.1f}%); deployed INT8 {summary['int8']['latency_ms']:.4f} ms"
              + (f", budget {args.latency_budget_ms:.4f} ms: {'met' if r.get('meets_budget') else 'missed'}" if args.latency_budget_ms else ""))
    for b, pr in by_batch.items():
        print(f"batch {b}: paired latency ratio INT8/FP32: median {pr['ratio_median']:.3f} "
              f"(range {pr['ratio_min']:.3f}-{pr['ratio_max']:.3f} over {args.repeats} repeats); "
              f"FP32 {pr['fp32_ms_median']:.3f} ms, INT8 {pr['int8_ms_median']:.3f} ms per batch")


if __name__ == "__main__":
    main()
