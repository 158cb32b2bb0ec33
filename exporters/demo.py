"""``hwnas demo``: the whole pipeline on the embedded ``digits`` data, in minutes on two CPU cores.

profile this machine (ort-cpu, 1 thread) -> train a small supernet -> measure how fast INT8 runs
relative to FP32 here -> where INT8 is faster, profile again for INT8 files (``--dtype int8``) ->
search under a latency budget on the table of the file that ships -> export INT8 ONNX with a
measured check of the budget -> compare the found arch with the two smallest hand-designed
baselines of the zoo (``hwnas compare``: each trained from scratch with one recipe, timed on the
profile). Everything goes under one folder; a second run reuses the profile, the supernet and the
comparison rows it finds there.

The space is mbv3-32's family at digits' native 8x8 resolution with fewer choices, so that
profiling and supernet training fit the time; ``--space-settings`` style overrides are in
``DemoConfig.space_settings``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from hwnas.errors import UserError
from hwnas.fileio import atomic_write_json, atomic_write_text, make_parents
from hwnas.space.ref import SpaceRef

DEMO_SPACE = "mbv3-32"
DEMO_SETTINGS: dict[str, Any] = {
    "image_size": 8, "strides": [1, 2, 2], "stem_channels": 16,
    "widths": [[16, 24], [24, 32], [32, 48]], "se": [False, True, True], "acts": ["relu", "hswish", "hswish"],
    "depths": [1, 2], "kernels": [3, 5], "expands": [3, 6], "head_channels": 128,
}
# the zoo's two smallest networks by parameters at 8x8 (0.35M and 0.41M; the next,
# mobilenet_v2_x0_5, has 0.70M): small enough to train in seconds on digits
DEMO_BASELINES = ("shufflenet_v2_x0_5", "mobilenet_v2_x0_35")
COMPARE_FOLDER = "compare"


@dataclass
class DemoConfig:
    out: str = "hwnas-demo"
    epochs: int = 6
    search_evals: int = 40
    budget_quantile: float = 0.4  # the budget: this quantile of the predicted latencies of random archs
    search_margin: float = 0.95  # the search aims this far below the budget (a table predicts within ~10%)
    prune: float | None = None
    seed: int = 0
    force: bool = False
    space_settings: dict[str, Any] = field(default_factory=lambda: json.loads(json.dumps(DEMO_SETTINGS)))
    # smaller settings make a quick run (tests): profile networks, calibration, fine-tuning steps
    profile_calibrate: int = 6
    profile_validate: int = 6
    calibration: str = "auto"
    calibration_images: int = 256
    finetune_max_steps: int | None = None
    protocol: Any = None  # hwnas.latency.protocol.Protocol for profiling and export; None: the demo's quick one
    # the found arch against small baselines, each trained from scratch (`hwnas compare`, into out/compare/)
    compare: bool = True
    compare_baselines: tuple[str, ...] = DEMO_BASELINES
    compare_epochs: int = 5  # digits: the baselines reach 93-96% top-1 after 5 epochs (3: 49-79%)
    compare_max_steps: int | None = None  # cap each network's training steps (tests)


@dataclass
class DemoResult:
    folder: Path
    profile: Path
    supernet: Path
    run: Path
    model: Path
    latency_budget_ms: float
    int8_factor: float  # INT8 / FP32 latency on this machine, measured on a few archs of the space
    report: dict[str, Any]
    stages: dict[str, float]
    # the budget the search ran under (pareto.png's line): the budget with a margin, on the
    # predictions of the table of the precision that ships
    search_latency_budget_ms: float | None = None
    compare: Any = None  # hwnas.compare.run.CompareResult, None with compare=False
    search_profile: Path | None = None  # profile-int8.json where INT8 is the faster file here, else the profile


Phase = Callable[[str, int, int], None]  # (phase, done, total)


def demo_budgets(pred, space, cfg: DemoConfig) -> tuple[float, float, float]:
    """The demo's budget (a quantile of the predicted latencies of 200 random archs), the budget the
    search aims at (that times the margin) and the cheapest latency the table knows.

    The margin never takes the search below the cheapest arch: a table fitted on few networks may
    put most random archs on its floor (one empty call), and the quantile with them."""
    import random

    import numpy as np

    rng = random.Random(cfg.seed)
    lat = np.array([pred.predict(space.sample(rng)) for _ in range(200)])
    budget = float(np.quantile(lat, cfg.budget_quantile))
    floor_ms = pred.min_latency()[0]
    return budget, max(budget * cfg.search_margin, floor_ms), floor_ms


def run_demo(cfg: DemoConfig, phase: Phase | None = None, log: Callable[[str], None] | None = None) -> DemoResult:
    import random
    import time

    import torch

    from hwnas.accuracy.supernet.train import SupernetTrainConfig, train_supernet
    from hwnas.exporters.run_export import RunExportConfig, export_run
    from hwnas.latency import LatencyPredictor, load_table
    from hwnas.latency.backends import get_backend
    from hwnas.latency.profiler import profile
    from hwnas.latency.protocol import Protocol
    from hwnas.search.runner import SearchConfig, run
    from hwnas.space import get_space

    say = log or (lambda s: None)
    tick = phase or (lambda p, d, t: None)
    torch.set_num_threads(1)  # two shared cores: one for the work, one for everyone else
    folder = Path(cfg.out)
    if folder.exists() and not folder.is_dir():
        raise UserError(f"--out {str(folder)!r} is a file; give a folder")
    model_path = folder / "model.onnx"
    if model_path.exists() and not cfg.force:
        raise UserError(f"{str(model_path)!r} exists; pass --force to redo the demo there, or choose another --out")
    make_parents(folder, "demo folder")  # the demo's folder is its own: missing folders above it are made too
    folder.mkdir(exist_ok=True)
    space = get_space(DEMO_SPACE, **cfg.space_settings)
    stages: dict[str, float] = {}

    t = time.perf_counter()
    prof = folder / "profile.json"
    fast = cfg.protocol or Protocol(warmup=3, warmup_seconds=0.002, round_size=10, min_repeats=20, max_repeats=40,
                                    max_seconds=0.08, sessions=2)
    if not _reusable_profile(prof, space):
        say("profiling this machine (ort-cpu, 1 thread)")
        profile(space, get_backend("ort-cpu", threads=1, batch=1), prof, n_calibrate=cfg.profile_calibrate,
                n_validate=cfg.profile_validate, seed=cfg.seed, protocol=fast, force=True,
                on_progress=lambda p, d, n: tick(f"profile: {p}", d, n))
    stages["profile"] = time.perf_counter() - t

    t = time.perf_counter()
    ckpt = folder / "supernet.pt"
    tcfg = SupernetTrainConfig(data="digits", epochs=cfg.epochs, seed=cfg.seed, device="cpu", lr=0.1)
    if not _reusable_supernet(ckpt, space, tcfg):
        say(f"training the supernet ({cfg.epochs} epochs on digits)")
        train_supernet(space, tcfg, ckpt, force=True, progress=True)
    stages["supernet"] = time.perf_counter() - t

    t = time.perf_counter()
    # which file ships decides which table the search reads: INT8 where it runs faster here
    # (on 8x8 inputs on x86 without VNNI it is slower), measured on a few archs of the space
    say("measuring INT8 vs FP32 latency on this machine")
    factor = int8_factor(space, [space.smallest(), space.largest(), space.sample(random.Random(cfg.seed))],
                         load_table(prof), fast, cfg.seed)
    stages["int8 factor"] = time.perf_counter() - t
    precision = "int8" if factor < 1.0 else "fp32"
    search_prof = prof
    if precision == "int8":
        t = time.perf_counter()
        search_prof = folder / "profile-int8.json"
        if not _reusable_profile(search_prof, space, "int8"):
            say("profiling this machine for INT8 files (ort-cpu, 1 thread, the export's quantizer)")
            profile(space, get_backend("ort-cpu", threads=1, batch=1, dtype="int8"), search_prof,
                    n_calibrate=cfg.profile_calibrate, n_validate=cfg.profile_validate, seed=cfg.seed, protocol=fast,
                    force=True, on_progress=lambda p, d, n: tick(f"INT8 profile: {p}", d, n))
        stages["int8 profile"] = time.perf_counter() - t
    budget, search_ms, floor_ms = demo_budgets(LatencyPredictor(load_table(search_prof), space), space, cfg)
    say(f"budget {budget:.4f} ms for the {precision.upper()} model (the {cfg.budget_quantile:.0%} quantile of random "
        f"archs on the {precision.upper()} table; INT8 runs at {factor:.2f}x FP32 here); searching under {search_ms:.4f} ms"
        + (" (the cheapest arch on this table: the margin would go below it)" if search_ms == floor_ms else ""))

    t = time.perf_counter()
    run_dir = folder / "search"
    run(SearchConfig(space=DEMO_SPACE, profile=str(search_prof), evaluator=f"supernet:{ckpt}", strategy="evolution",
                     budget_evals=cfg.search_evals, seed=cfg.seed, latency_budget_ms=search_ms, space_settings=cfg.space_settings,
                     strategy_options={"population": min(12, cfg.search_evals), "sample_size": min(4, cfg.search_evals)}),
        out=run_dir, force=True, progress=lambda p: tick("search", p.evaluated, p.budget))
    stages["search"] = time.perf_counter() - t

    t = time.perf_counter()
    say("exporting INT8 ONNX and measuring it")
    res = export_run(run_dir, model_path, RunExportConfig(
        prune=cfg.prune, finetune_epochs=1, seed=cfg.seed, force=True, calibration=cfg.calibration,
        calibration_images=cfg.calibration_images, latency_budget_ms=budget, max_steps=cfg.finetune_max_steps,
        protocol=cfg.protocol, extra_metadata={"demo_int8_factor": factor}), log=say)
    stages["export"] = time.perf_counter() - t

    report, cmp = res.report, None
    if cfg.compare:
        t = time.perf_counter()
        cmp = compare_found(cfg, prof, run_dir, folder / COMPARE_FOLDER, fast, say)
        stages["compare"] = time.perf_counter() - t
        report = add_compare_to_report(res.report, cmp, cfg, stages["compare"])
    return DemoResult(folder, prof, ckpt, run_dir, model_path, budget, factor, report, stages, search_ms, cmp,
                      search_prof)


def compare_found(cfg: DemoConfig, profile: Path, run_dir: Path, out: Path, protocol: Any, say: Callable[[str], None]):
    """The search's best arch and the demo's baselines, each trained from scratch with one recipe
    on digits and timed on the demo's profile (``hwnas.compare.compare``). Rows of an earlier
    demo in the same folder are kept where its profile, data and recipe are the same."""
    from hwnas.compare.run import CompareConfig, compare

    say(f"comparing the found arch with {' and '.join(cfg.compare_baselines)} "
        f"({cfg.compare_epochs} epochs each, from scratch)")
    try:
        return compare(CompareConfig(profile=str(profile), data="digits", epochs=cfg.compare_epochs,
                                     baselines=list(cfg.compare_baselines), runs=[str(run_dir)], threads=1,
                                     device="cpu", max_steps=cfg.compare_max_steps, protocol=protocol),
                       out=out, force=True, reuse=True, progress=True)
    except UserError as e:
        raise UserError(f"{e} (the model is exported; rerun with --force --no-compare to skip the comparison)") from None


def compare_summary(result, epochs: int, seconds: float | None = None) -> dict[str, Any]:
    """The demo's short form of a comparison: name, kind, top-1, measured latency and params of
    each network, and whether the found one dominates the baselines."""
    from hwnas.compare.report import verdict

    rows = [{k: r.get(k) for k in ("name", "kind", "top1", "latency_ms", "params")} for r in result.rows]
    found = [r for r in rows if r["kind"] == "found"]
    baselines = [r for r in rows if r["kind"] == "baseline"]
    dominates, sentence = verdict(found[0], baselines) if found else (False, "no found network was compared.")
    folder = result.out
    return {"folder": str(folder) if folder is not None else None, "epochs": epochs, "rows": rows,
            "dominates": dominates, "verdict": sentence, "seconds": seconds,
            "files": [str(folder / n) for n in ("compare.json", "compare.md", "compare.png")] if folder else [],
            "kept_rows": result.resumed_rows}


def compare_markdown(summary: dict[str, Any]) -> str:
    lines = ["## Against hand-designed baselines", "",
             f"Each network trained from scratch on digits with one recipe ({summary['epochs']} epochs), FP32 latency "
             f"measured on the demo's profile (`{summary['folder']}/compare.md` has the full table, "
             f"`compare.png` the picture).", "",
             "| network | kind | top-1 % | latency ms | params |", "|---|---|---|---|---|"]
    for r in summary["rows"]:
        lines.append(f"| {r['name']} | {r['kind']} | {100 * r['top1']:.2f} | {r['latency_ms']:.4f} | {r['params']:,} |")
    lines += ["", summary["verdict"], ""]
    return "\n".join(lines)


def add_compare_to_report(report: dict[str, Any], result, cfg: DemoConfig, seconds: float) -> dict[str, Any]:
    """The export's report with the comparison added (report.json's ``compare``, a section of report.md)."""
    from hwnas.exporters.report import report_markdown

    summary = compare_summary(result, cfg.compare_epochs, seconds)
    report = {**report, "compare": summary}
    files = report.get("files") or {}
    base = {k: v for k, v in report.items() if k != "compare"}
    if files.get("report_json"):
        atomic_write_json(files["report_json"], report)
    if files.get("report_md"):
        atomic_write_text(files["report_md"], report_markdown(base).rstrip("\n") + "\n\n" + compare_markdown(summary))
    return report


def int8_factor(space, archs, table, protocol, seed: int = 0) -> float:
    """Median INT8 / FP32 latency of ``archs`` (fresh weights, real digits images for the BN
    statistics and the INT8 calibration), each INT8 model timed against its FP32 model call by call
    on the table's backend."""
    import numpy as np
    import torch

    from hwnas.data import load_dataset
    from hwnas.exporters.measure import LatencySetup, paired_ratio
    from hwnas.exporters.onnx_io import to_onnx
    from hwnas.latency.int8 import QuantizeOptions, quantize_int8
    from hwnas.latency.onnx_rewrites import compact_bytes

    ds = load_dataset("digits", image_size=space.input_shape[-1])
    g = torch.Generator().manual_seed(seed)
    images = ds.prepare(ds.train_x[torch.randperm(len(ds.train_y), generator=g)[:128]])
    setup = LatencySetup.from_table(table)
    ratios = []
    for arch in archs:
        torch.manual_seed(seed)
        model = space.build(arch, num_classes=ds.num_classes).train()
        with torch.no_grad():
            model(images)  # BatchNorm statistics from real images
        model.eval()
        fp32 = compact_bytes(to_onnx(model, images[:1]), drop_zero_points=False)
        int8 = quantize_int8(fp32, images.numpy(), QuantizeOptions(method="minmax"))
        ratios.append(paired_ratio(int8, fp32, space.input_shape, setup, protocol)["ratio"])
    return float(np.median(ratios))


def _reusable_profile(path: Path, space, dtype: str = "float32") -> bool:
    if not path.is_file():
        return False
    try:
        from hwnas.latency import load_table

        t = load_table(path)
        return SpaceRef.from_record(t.space).mismatch(space) is None and t.backend.get("dtype", "float32") == dtype
    except (UserError, KeyError, ValueError):
        return False


def _reusable_supernet(path: Path, space, tcfg) -> bool:
    if not path.is_file():
        return False
    try:
        from hwnas.accuracy.supernet.checkpoint import load_checkpoint

        meta, _, _ = load_checkpoint(path)
        train = meta.get("train", {})
        return (SpaceRef.from_record(meta).mismatch(space) is None and train.get("epochs") == tcfg.epochs
                and bool(meta.get("done")) and train.get("seed") == tcfg.seed and train.get("lr") == tcfg.lr)
    except (UserError, KeyError, ValueError):
        return False
