"""Export the chosen network of a search run folder (``hwnas search --out DIR``).

The run's config.json names the space, the latency profile, the accuracy evaluator and the
budget; the weights come from the supernet checkpoint the evaluator read (fine-tuned with
distillation from the supernet's largest subnet), or from training from scratch when the run
used another evaluator. Latency is measured on the profile's backend and checked against the
run's budget.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from hwnas.errors import UserError
from hwnas.search.run_folder import RunFolder, load_run

@dataclass
class RunExportConfig:
    arch: str = "best"  # best, or an arch id from the run's journal
    finetune_epochs: int = 1
    finetune_lr: float = 0.01
    scratch_epochs: int = 10  # when the run has no supernet to inherit weights from
    prune: float | None = None
    quantize: str = "int8"
    calibration: str = "auto"
    calibration_images: int = 512
    int8_weights: str = "auto"  # auto (7-bit and 8-bit compared on val), "7" or "8"
    data: str | None = None  # override (needed for table: evaluators, which name no data)
    latency_budget_ms: float | None = None  # override the run's budget
    opset: int = 17
    seed: int = 0
    force: bool = False
    max_steps: int | None = None  # cap fine-tuning steps (tests, the demo)
    protocol: Any = None
    extra_metadata: dict[str, Any] = field(default_factory=dict)
    plain: bool = False  # also time plainly in a fresh process and check the budget on that
    plain_sessions: int = 3  # fresh processes for --plain: the median of their medians
    check_profile: bool = True  # a quick check of the profile against this machine (warns past 5% drift)


RunInfo = RunFolder  # the checked run folder (hwnas.search.run_folder owns its format)


def read_run(folder: str | Path) -> RunInfo:
    return load_run(folder)


def pick_arch(run: RunInfo, which: str) -> dict[str, Any]:
    if which == "best":
        return run.best
    for r in run.records:
        if r.get("id") == which:
            return r
    ids = ", ".join(r["id"] for r in run.records[:5] if "id" in r)
    raise UserError(f"arch {which!r} is not in run {str(run.folder)!r}; use best or one of its ids (e.g. {ids})")


def run_file(run: RunInfo, key: str, what: str) -> Path:
    """The file the run's ``key`` (profile or evaluator) spec names, wherever the run is read from."""
    from hwnas.search.paths import locate, spec_path

    d = run.config[key]
    recorded = spec_path(str(d.get("spec", "")))
    typed = spec_path(str(d["typed"])) if isinstance(d.get("typed"), str) else None
    path = locate(recorded, run.folder, typed)
    if not path.is_file():
        shown = typed if typed and typed != recorded else recorded
        raise UserError(f"the run's {what} {shown!r} is missing (looked for {recorded!r} and beside the run folder "
                        f"{str(run.folder)!r}); put it back or rerun the search")
    return path


def _space(run: RunInfo):
    from hwnas.space.ref import SpaceRef

    return SpaceRef.from_record(run.config["space"]).resolve(f"run {str(run.folder)!r}", "rerun the search")


def export_run(folder: str | Path, out: str | Path, cfg: RunExportConfig | None = None,
               log: Callable[[str], None] | None = None, on_step: Callable[[int, float], None] | None = None):
    """Export one arch of a run folder; returns ``hwnas.exporters.pipeline.ExportResult``.

    ``log`` hears each stage as it starts; ``on_step(step, loss)`` each training step (training
    from scratch and fine-tuning)."""
    import torch

    from hwnas.accuracy.supernet.subnet_eval import recalibrate_bn
    from hwnas.exporters.finetune import FinetuneConfig, dataset_batches, finetune
    from hwnas.exporters.measure import LatencySetup
    from hwnas.exporters.pipeline import ExportData, ExportOptions, check_outputs, export
    from hwnas.exporters.prune import check_ratio

    cfg = cfg or RunExportConfig()
    say = log or (lambda s: None)
    if cfg.prune is not None:
        check_ratio(cfg.prune)
    check_outputs(out, cfg.quantize, cfg.force)  # before minutes of loading and fine-tuning
    run = read_run(folder)
    rec = pick_arch(run, cfg.arch)
    space = _space(run)
    arch = space.parse(rec["arch"])
    table, predicted, latency_setup, profile_note = _profile(run, space, arch)
    if table is not None and table.backend.get("dtype") == "int8" and cfg.quantize == "none":
        raise UserError(f"the run searched on an INT8 table ({run.config['profile'].get('spec')}): its budget and "
                        f"predictions are for the INT8 file, and --quantize none ships FP32; export INT8 (leave out "
                        f"--quantize none) or search again on an FP32 table")
    profile_warnings: list[str] = []
    if table is not None and cfg.check_profile:
        from hwnas.latency.units import drift_warnings

        say("checking the profile against this machine")
        profile_warnings = drift_warnings(table, str(run_file(run, "profile", "latency profile")))
        for w in profile_warnings:
            say(f"warning: {w}")
    budget = cfg.latency_budget_ms if cfg.latency_budget_ms is not None else run.latency_budget_ms
    if latency_setup is None and budget is not None:
        say(profile_note)
    ev = run.config["evaluator"]
    spec = str(ev.get("spec", ""))
    torch.manual_seed(cfg.seed)
    teacher = None
    if spec.startswith("supernet:"):
        from hwnas.accuracy.supernet.train import load_supernet
        from hwnas.data import load_dataset

        ckpt = str(run_file(run, "evaluator", "supernet checkpoint"))
        supernet, meta = load_supernet(ckpt, space)
        train = meta["train"]
        ds = load_dataset(cfg.data or ev.get("data") or train["data"], image_size=space.input_shape[-1],
                          split_seed=train.get("split_seed", 0), train_limit=train.get("train_limit"))
        say(f"extracting {arch.id} from {ckpt}")
        model = supernet.extract(arch)
        recalibrate_bn(model, ds)
        teacher = supernet.extract(space.largest())
        recalibrate_bn(teacher, ds)
        source = {"weights": "supernet", "checkpoint": ckpt, "checkpoint_sha256_16": ev.get("checkpoint_sha256_16")}
        ft_epochs = cfg.finetune_epochs
    else:
        from hwnas.data import load_dataset

        data_spec = cfg.data or ev.get("data")
        if not data_spec:
            raise UserError(f"run {str(run.folder)!r} used evaluator {spec!r}, which names no dataset; pass --data")
        ds = load_dataset(data_spec, image_size=space.input_shape[-1])
        model = space.build(arch, num_classes=ds.num_classes)
        from hwnas.accuracy.supernet import _init_weights

        _init_weights(model)
        hp = rec.get("hparams")
        if hp:  # a joint search: train as the search trained this candidate
            recipe = scratch_recipe(ev, hp, cfg)
            say(f"training {arch.id} from scratch with its searched hyperparameters ({recipe.epochs} epochs, "
                + ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in sorted(hp.items())) + ")")
            scratch = FinetuneConfig(epochs=recipe.epochs, seed=recipe.seed, recipe=recipe)
        else:
            say(f"training {arch.id} from scratch ({cfg.scratch_epochs} epochs): the run has no supernet weights")
            scratch = FinetuneConfig(epochs=cfg.scratch_epochs, lr=0.05, seed=cfg.seed, max_steps=cfg.max_steps)
        finetune(model, dataset_batches(ds, seed=cfg.seed), scratch, on_step=on_step)
        source = {"weights": "trained from scratch", "epochs": scratch.epochs, **({"hparams": hp} if hp else {})}
        ft_epochs = cfg.finetune_epochs if cfg.prune is not None else 0
    g = torch.Generator().manual_seed(cfg.seed)
    idx = torch.randperm(len(ds.train_y), generator=g)[: cfg.calibration_images]
    data = ExportData(calibration=ds.prepare(ds.train_x[idx]), test=(ds.prepare(ds.test_x), ds.test_y),
                      val=(ds.prepare(ds.val_x), ds.val_y), train=dataset_batches(ds, seed=cfg.seed),
                      classes=ds.classes)
    metadata = {
        "arch": arch.to_dict(), "arch_id": arch.id, "space": run.config["space"],
        "dataset": ds.spec, "preprocessing": ds.preprocessing.to_dict(), "classes": ds.classes,
        "search_accuracy": rec.get("accuracy"), "predicted_latency_ms": predicted,
        "profile": run.config["profile"], "profile_fingerprint": table.fingerprint if table is not None else None,
        "source": source, **cfg.extra_metadata,
    }
    opts = ExportOptions(
        prune=cfg.prune, quantize=cfg.quantize, calibration=cfg.calibration, int8_weights=cfg.int8_weights,
        opset=cfg.opset,
        finetune=FinetuneConfig(epochs=ft_epochs, lr=cfg.finetune_lr, seed=cfg.seed, max_steps=cfg.max_steps),
        latency=latency_setup or LatencySetup(), protocol=cfg.protocol,
        latency_budget_ms=budget if latency_setup is not None else None, predicted_ms=predicted,
        metadata=metadata, force=cfg.force, plain=cfg.plain,
        plain_sessions=cfg.plain_sessions, profile_warnings=profile_warnings,
        profile_precision=None if table is None else ("int8" if table.backend.get("dtype") == "int8" else "fp32"),
        **_profile_measure(table, cfg.protocol))
    result = export(model, data, out, opts, teacher=teacher, log=say, on_step=on_step)
    if latency_setup is None and budget is not None:
        result.report["budget_note"] = profile_note
    return result


def scratch_recipe(evaluator: dict[str, Any], hparams: dict[str, Any], cfg: RunExportConfig) -> Any:
    """The recipe a joint search's train evaluator trained a candidate with: its base recipe
    (config.json's evaluator record), the candidate's hyperparameters on top; ``--scratch-epochs``
    where the hyperparameters name no epochs."""
    import dataclasses

    from hwnas.accuracy.training import TrainRecipe

    base = TrainRecipe(epochs=cfg.scratch_epochs, batch_size=int(evaluator.get("batch_size") or 64),
                       lr=float(evaluator.get("lr") or 0.05), seed=cfg.seed, max_steps=cfg.max_steps)
    return dataclasses.replace(base, **hparams)


def _profile(run: RunInfo, space, arch):
    """(table, predicted ms, latency setup, note): the setup is None when the run's latencies
    come from a benchmark column (another device), which cannot be measured here."""
    from hwnas.exporters.measure import LatencySetup

    spec = str(run.config["profile"].get("spec", ""))
    if spec.startswith("table:"):
        return None, None, None, (f"the run's latencies come from {spec} (a device that is not this one): "
                                  f"the budget cannot be checked by measurement here; latencies are ORT CPU on this machine")
    from hwnas.latency import LatencyPredictor, load_table

    path = run_file(run, "profile", "latency profile")
    table = load_table(path)
    predicted = float(LatencyPredictor(table, space).predict(arch))
    return table, predicted, LatencySetup.from_table(table), ""


def _profile_measure(table, protocol) -> dict:
    """For a profile of eager PyTorch: time the exported torch model on it, in its units, so that
    the budget is checked on the runtime the search's latencies came from (the ONNX files run in
    ONNX Runtime, several times faster than eager torch, and would pass any torch budget)."""
    if table is None or not str(table.backend.get("name", "")).startswith("torch"):
        return {}
    from hwnas.latency.measure import measure_module_for_table
    from hwnas.latency.protocol import Protocol

    return {"profile_measure": lambda m: measure_module_for_table(m, table, protocol or Protocol()),
            "profile_backend": str(table.backend["name"])}


def budget_message(report: dict) -> str:
    return (f"the exported model misses the latency budget: measured {report['latency_ms']:.4g} ms "
            f"({report.get('budget_checked_on') or report['deployed']}) > budget {report['latency_budget_ms']:.4g} ms")


def summary_json(report: dict) -> str:
    keys = ("latency_budget_ms", "meets_budget", "latency_ms", "predicted_ms", "deployed", "budget_checked_on", "deploy")
    return json.dumps({k: report.get(k) for k in keys})
