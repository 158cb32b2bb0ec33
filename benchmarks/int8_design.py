"""The INT8 design's proof: search for the network that is fast in the format it ships in.

Three pipelines on the same data, evaluator recipe and latency budget B, on this machine's
ONNX Runtime CPU backend (1 thread, batch 1):

  (a) FP32 table of the space          -> search under B -> export FP32
  (b) the same search                  -> export INT8 (the usual INT8 export of an FP32 search)
  (c) INT8 table of the extended space -> search under B (and under B / SPEEDUP) -> export INT8
      (extended: fused blocks, ReLU/h-swish and SE on/off chosen per stage, ``block_kinds``,
      ``act_choices``, ``se_choices``)

B is a quantile of the FP32 table's predictions over random archs of the space. Each exported
file is timed plainly in a fresh process (median of 300 calls; ``hwnas export --plain``), so
the latencies of all pipelines are in the same units, and each export's test top-1 is read in
ONNX Runtime. Goal (issue 18): (c) at least 1.3x faster than (a) at equal accuracy (within 0.5
point), and the chosen arch's INT8/FP32 ratio at most 0.7.

Everything goes under --out (tables, supernets, runs, models); a rerun reuses what exists.

    python benchmarks/int8_design.py --out /tmp/int8-design --json benchmarks/results/int8_design_digits.json

Needs a quiet machine: the tables and the plain timings are latency measurements.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

EXTENDED = {"block_kinds": ["mbconv", "fused"], "act_choices": ["relu", "hswish"], "se_choices": [False, True]}
# the proof's base menu: mbv3-32 with two kernels and two expand ratios, so that the extended
# space's INT8 table (8x the blocks: 1,636) builds in minutes on two cores
BASE = {"kernels": [3, 5], "expands": [3, 6]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="working folder (tables, supernets, runs, models)")
    ap.add_argument("--data", default="digits")
    ap.add_argument("--base", default=json.dumps(BASE), help="mbv3-32 settings shared by every pipeline (JSON)")
    ap.add_argument("--extended", default=json.dumps(EXTENDED), help="settings (c) adds to --base (JSON)")
    ap.add_argument("--epochs", type=int, default=8, help="supernet epochs")
    ap.add_argument("--evals", type=int, default=40, help="evaluations per search")
    ap.add_argument("--quantile", type=float, default=0.4, help="budget: this quantile of random archs' FP32 latency")
    ap.add_argument("--speedup", type=float, default=1.3, help="(c) also searches under budget / SPEEDUP")
    ap.add_argument("--calibrate", type=int, default=None, help="table calibration networks [space default]")
    ap.add_argument("--validate", type=int, default=20, help="table validation networks")
    ap.add_argument("--finetune-steps", type=int, default=None, help="cap export fine-tuning steps")
    ap.add_argument("--train-limit", type=int, default=None, help="supernet training images (default: all)")
    ap.add_argument("--val-limit", type=int, default=None, help="validation images the search scores on (default: all)")
    ap.add_argument("--train-threads", type=int, default=None, help="supernet training threads (default: all cores)")
    ap.add_argument("--pipelines", default="a,c", help="a: the FP32 pipelines (a) and (b) alone, the table, supernet and "
                    "run other benchmarks compare with (oneshot_mbconv.py); a,c: all")
    ap.add_argument("--json", default=None, help="write the results here")
    args = ap.parse_args()

    import torch

    from hwnas.accuracy.supernet.train import SupernetTrainConfig, train_supernet
    from hwnas.errors import UserError
    from hwnas.exporters.run_export import RunExportConfig, export_run
    from hwnas.latency import LatencyPredictor, load_table
    from hwnas.latency.backends import get_backend
    from hwnas.latency.profiler import profile
    from hwnas.search.runner import SearchConfig, run
    from hwnas.space import get_space

    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    base = json.loads(args.base)
    settings = {"a": base, "c": {**base, **json.loads(args.extended)}}
    wanted = args.pipelines.split(",")
    if wanted not in (["a"], ["a", "c"]):
        raise SystemExit(f"--pipelines is a or a,c, got {args.pipelines!r}")
    settings = {k: v for k, v in settings.items() if k in wanted}
    spaces = {k: get_space("mbv3-32", **v) for k, v in settings.items()}
    t0 = time.perf_counter()
    seconds: dict[str, float] = {}

    def step(name: str, fn) -> None:
        t = time.perf_counter()
        print(f"[{time.perf_counter() - t0:7.0f} s] {name}", flush=True)
        fn()
        seconds[name] = round(time.perf_counter() - t, 1)

    tables = {"a": out / "fp32.json", "c": out / "int8-extended.json"}
    for k, dtype in (("a", "float32"), ("c", "int8")):
        if k in spaces and not tables[k].is_file():
            step(f"profile {k} ({dtype}, {len(spaces[k].all_latency_terms())} blocks)",
                 lambda k=k, dtype=dtype: profile(spaces[k], get_backend("ort-cpu", dtype=dtype), tables[k],
                                                  n_calibrate=args.calibrate, n_validate=args.validate, force=True))
    supernets = {k: out / f"supernet-{k}.pt" for k in spaces}
    for k in spaces:
        if not supernets[k].is_file():
            step(f"supernet {k}", lambda k=k: train_supernet(
                spaces[k], SupernetTrainConfig(data=args.data, epochs=args.epochs, seed=0, device="cpu", lr=0.1,
                                               threads=args.train_threads, train_limit=args.train_limit,
                                               val_limit=args.val_limit),
                supernets[k], force=True))
    pred = LatencyPredictor(load_table(tables["a"]), spaces["a"])
    rng = random.Random(0)
    budget = float(np.quantile([pred.predict(spaces["a"].sample(rng)) for _ in range(500)], args.quantile))
    searches = {"a": ("a", budget), "c": ("c", budget), "c_fast": ("c", budget / args.speedup)}
    searches = {name: v for name, v in searches.items() if v[0] in spaces}
    infeasible: dict[str, str] = {}
    for name, (k, ms) in searches.items():
        if not (out / f"run-{name}" / "best.json").is_file():
            try:
                step(f"search {name} under {ms:.4f} ms", lambda name=name, k=k, ms=ms: run(SearchConfig(
                    space="mbv3-32", profile=str(tables[k]), evaluator=f"supernet:{supernets[k]}", strategy="evolution",
                    budget_evals=args.evals, seed=0, latency_budget_ms=ms, space_settings=settings[k],
                    strategy_options={"population": min(16, args.evals), "sample_size": 4}), out=out / f"run-{name}",
                    force=True))
            except UserError as e:  # e.g. INT8 slower than FP32 here: the budget is below the INT8 table's minimum
                infeasible[name] = str(e)
                print(f"  {name}: {e}", flush=True)
    exports = {"a": ("a", "none"), "b": ("a", "int8"), "c": ("c", "int8"), "c_fast": ("c_fast", "int8")}
    rows = []
    for name, (run_name, quantize) in exports.items():
        if run_name in infeasible or run_name not in searches:
            continue
        model = out / f"model-{name}.onnx"
        k = searches[run_name][0]
        holder: dict = {}
        step(f"export {name} ({quantize})", lambda: holder.update(res=export_run(out / f"run-{run_name}", model, RunExportConfig(
            quantize=quantize, calibration="minmax", finetune_epochs=1, seed=0, force=True, plain=True,
            max_steps=args.finetune_steps, latency_budget_ms=searches[run_name][1], check_profile=False))))
        r = holder["res"].report
        shipped = "int8" if quantize == "int8" else "fp32"
        plain = (r.get("plain") or {}).get(shipped) or {}
        best = json.loads((out / f"run-{run_name}" / "best.json").read_text())
        rows.append({
            "pipeline": name, "table": "INT8, extended space" if k == "c" else "FP32", "file": shipped,
            "latency_budget_ms": searches[run_name][1], "arch_id": best["id"], "arch": best["arch"],
            "search_accuracy": best.get("accuracy"), "predicted_ms": r.get("predicted_ms"),
            "top1": r[shipped].get("top1"), "plain_median_ms": plain.get("median_ms"), "plain_p90_ms": plain.get("p90_ms"),
            "fp32_plain_median_ms": ((r.get("plain") or {}).get("fp32") or {}).get("median_ms"),
            "int8_over_fp32_paired": ((r.get("int8_vs_fp32") or {}).get("latency_ratio_paired") or {}).get("ratio"),
            "int8_top1_drop_points": (r.get("int8_vs_fp32") or {}).get("top1_drop_points"),
            "deploy": (r.get("deploy") or {}).get("precision"), "meets_budget_plain": r.get("meets_budget"),
            "size_bytes": r[shipped].get("size_bytes"),
        })
    a = rows[0]
    for r in rows:
        r["speedup_vs_a"] = a["plain_median_ms"] / r["plain_median_ms"] if r["plain_median_ms"] else None
        r["top1_vs_a_points"] = 100 * (r["top1"] - a["top1"]) if r["top1"] is not None else None
    print("\n| pipeline | table | file | budget ms | test top-1 % | plain ms | vs (a) | INT8/FP32 (paired) | deploy |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        ratio = f"{r['int8_over_fp32_paired']:.2f}" if r["int8_over_fp32_paired"] else "-"
        print(f"| {r['pipeline']} | {r['table']} | {r['file']} | {r['latency_budget_ms']:.4f} | {100 * r['top1']:.2f} | "
              f"{r['plain_median_ms']:.4f} | {r['speedup_vs_a']:.2f}x, {r['top1_vs_a_points']:+.2f} pt | {ratio} | {r['deploy']} |")
    from hwnas.latency.fingerprint import device_fingerprint

    result = {"machine": device_fingerprint(), "platform": platform.platform(),
              "settings": settings, "data": args.data, "epochs": args.epochs, "evals": args.evals,
              "train_limit": args.train_limit, "val_limit": args.val_limit, "finetune_steps": args.finetune_steps,
              "quantile": args.quantile, "speedup": args.speedup, "latency_budget_ms": budget, "rows": rows, "infeasible": infeasible,
              "seconds": seconds, "total_seconds": round(time.perf_counter() - t0, 1),
              "tables": {k: {"validation_within_10pct": load_table(p).validation.get("within_10pct"),
                             "kendall_tau": load_table(p).validation.get("kendall_tau"),
                             "entries": len(load_table(p).entries)} for k, p in tables.items() if k in spaces},
              "command": " ".join(["python", "benchmarks/int8_design.py",
                                   *(("OUT" if a == args.out else Path(a).name if a == args.json else a)
                                     for a in sys.argv[1:])])}
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
