"""``export``: any torch module to a deployable ONNX file, with proof of what it does.

    from hwnas.exporters import export, ExportData, ExportOptions
    result = export(model, ExportData(calibration=train_images, test=(x, y), train=batches),
                    "model.onnx", ExportOptions(prune=0.25, quantize="int8", latency_budget_ms=1.5))
    result.report["meets_budget"]

Steps: (prune + fine-tune) -> FP32 ONNX -> parity in ORT -> INT8 QDQ (calibration method chosen
on held-out images) -> accuracy, latency and size of both -> files written only at the end,
each by temp file + rename, so a failure leaves nothing half-written at the output paths.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from hwnas.errors import UserError
from hwnas.exporters.finetune import Batches, FinetuneConfig, finetune
from hwnas.exporters.measure import LatencySetup, evaluate, latency, paired_ratio, plain_times, top1
from hwnas.exporters.onnx_io import parity, size_parts, to_onnx, with_metadata
from hwnas.exporters.prune import check_ratio, count_params, prune_channels
from hwnas.exporters.report import report_markdown
from hwnas.fileio import atomic_write_bytes, atomic_write_json, atomic_write_text, check_output_path
from hwnas.latency.budget import check_budget
from hwnas.latency.int8 import (CALIBRATION_METHODS, QuantizeOptions, check_weight_range, cpu_int8_dot_product,
                               quantize_int8, weight_bits)
from hwnas.latency.onnx_rewrites import compact_bytes

Log = Callable[[str], None]
DEFAULT_STEM = "model"  # model.onnx: the report files are plain report.json / report.md


PRUNE_ROUND = 8  # pruned channel counts are multiples of this (FP32 export)
PRUNE_ROUND_INT8 = 16  # ... and of this for an INT8 export


@dataclass
class ExportData:
    """Real, preprocessed images (float NCHW, as the model takes them) and labels."""

    calibration: torch.Tensor  # training images for INT8 calibration (and the pruner's sample)
    test: tuple[torch.Tensor, torch.Tensor] | None = None  # reported accuracy
    val: tuple[torch.Tensor, torch.Tensor] | None = None  # choosing the calibration method
    train: Batches | None = None  # fine-tuning batches (epoch -> iterable of (x, y))
    classes: Sequence[str] | None = None


@dataclass
class ExportOptions:
    prune: float | None = None
    finetune: FinetuneConfig = field(default_factory=lambda: FinetuneConfig(epochs=0))
    quantize: str = "int8"  # int8 or none
    calibration: str = "auto"  # auto (best of minmax/percentile/entropy on val), or one of them
    # INT8 weight range: auto (7-bit and full 8-bit compared on val; see quantize.weight_bits), "7" or "8"
    int8_weights: str = "auto"
    opset: int = 17
    latency: LatencySetup | None = field(default_factory=LatencySetup)  # None: do not time
    protocol: Any = None  # hwnas.latency.protocol.Protocol; None: the profiler's default
    latency_budget_ms: float | None = None
    predicted_ms: float | None = None  # the profile's prediction for the exported arch
    metadata: dict[str, Any] = field(default_factory=dict)
    force: bool = False
    # when the profile times another runtime than ONNX Runtime (eager torch): times the final
    # torch module on it, in the profile's units; the budget is then checked on that number,
    # and the ONNX files' ORT latencies are reported beside it
    profile_measure: Callable[[nn.Module], dict[str, Any]] | None = field(default=None, compare=False, repr=False)
    profile_backend: str | None = None  # its name, for the report
    parity_images: int = 256
    # also time the files (and the torch model, on a torch profile) with a plain loop in a fresh
    # process, as a user checks a budget, and check the budget on that number
    plain: bool = False
    plain_sessions: int = 3  # fresh processes: the median of their medians, with their spread
    # with a latency budget, INT8 is deployed only when it is faster than FP32 and loses at most
    # this many points of top-1 on the test split
    int8_tolerance_points: float = 1.0
    profile_warnings: list[str] = field(default_factory=list)  # what a check of the profile found, for the report
    profile_precision: str | None = None  # "int8" or "fp32": the files the profile's table times

    def check(self) -> None:
        if self.prune is not None:
            check_ratio(self.prune)
        if self.quantize not in ("int8", "none"):
            raise UserError(f"--quantize must be int8 or none, got {self.quantize!r}")
        if self.calibration not in ("auto", *CALIBRATION_METHODS):
            raise UserError(f"--calibration must be auto, {', '.join(CALIBRATION_METHODS)}; got {self.calibration!r}")
        check_weight_range(self.int8_weights)
        if self.latency_budget_ms is not None and self.latency_budget_ms <= 0:
            raise UserError(f"the latency budget must be positive, got {self.latency_budget_ms:g} ms")
        self.finetune.check()


@dataclass
class ExportPaths:
    model: Path  # the deployable model (INT8 when quantized)
    fp32: Path | None  # the FP32 model beside it, when the deployable one is INT8
    report_json: Path
    report_md: Path

    @classmethod
    def for_output(cls, out: str | Path, quantized: bool) -> "ExportPaths":
        """``model.onnx`` gets ``report.json`` and ``report.md`` beside it; any other name gets
        ``<stem>.report.json`` and ``<stem>.report.md``, so that several models can share a folder."""
        p = Path(out)
        stem = p.name[:-5] if p.name.endswith(".onnx") else p.name
        prefix = "" if stem == DEFAULT_STEM else f"{stem}."
        return cls(p, p.with_name(f"{stem}.fp32.onnx") if quantized else None,
                   p.with_name(f"{prefix}report.json"), p.with_name(f"{prefix}report.md"))

    def all(self) -> list[Path]:
        return [q for q in (self.model, self.fp32, self.report_json, self.report_md) if q is not None]


@dataclass
class ExportResult:
    paths: ExportPaths
    report: dict[str, Any]
    model: nn.Module  # the (pruned, fine-tuned) torch model that was exported

    @property
    def meets_budget(self) -> bool | None:
        return self.report.get("meets_budget")


def check_outputs(out: str | Path, quantize: str, force: bool) -> ExportPaths:
    """The files an export to ``out`` writes, refused when one exists (without ``force``) or its
    folder is missing."""
    paths = ExportPaths.for_output(out, quantize == "int8")
    for p in paths.all():
        check_output_path(p, force, "export output")
    if force:  # an export killed while writing left its unfinished file hidden beside the real one
        for p in paths.all():
            for stale in p.parent.glob(f".{p.name}.*.tmp"):
                stale.unlink(missing_ok=True)
    return paths


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.float32)


def export(model: nn.Module, data: ExportData, out: str | Path, options: ExportOptions | None = None,
           teacher: nn.Module | None = None, log: Log | None = None,
           on_step: Callable[[int, float], None] | None = None) -> ExportResult:
    """Prune, fine-tune, export, quantize and measure ``model``; write the files; return the report.

    ``model`` is not modified (a copy is pruned). ``teacher`` (default: the unpruned model when
    pruning) guides fine-tuning by distillation. ``log`` hears each stage as it starts,
    ``on_step(step, loss)`` each fine-tuning step.
    """
    opts = options or ExportOptions()
    opts.check()
    say = log or (lambda s: None)
    quantized = opts.quantize == "int8"
    paths = check_outputs(out, opts.quantize, opts.force)  # refuse before any work, not after minutes of it
    if len(data.calibration) == 0:
        raise UserError("export needs real calibration images (at least one)")
    t_start = time.perf_counter()
    sample = data.calibration[:1].float()
    input_shape = tuple(sample.shape[1:])
    work = copy.deepcopy(model).cpu().eval()
    report: dict[str, Any] = {"format": "hwnas-export/1", "input_shape": list(input_shape), "opset": opts.opset,
                              "latency_budget_ms": opts.latency_budget_ms, "predicted_ms": opts.predicted_ms}
    test = (_np(data.test[0]), data.test[1].cpu().numpy()) if data.test is not None else None
    classes = list(data.classes) if data.classes is not None else (
        [str(i) for i in range(int(work(sample).shape[1]))])

    params_before = count_params(work)
    report["params_before_pruning"] = params_before
    if opts.prune is not None:
        say(f"pruning {opts.prune:.0%} of channels")
        unpruned = _onnx(work, sample, opts.opset)
        report["unpruned"] = {"params": params_before, "size_bytes": len(unpruned)}
        if test is not None:
            report["unpruned"]["top1"] = top1(unpruned, *test)
        if opts.latency is not None:
            report["unpruned"].update(latency(unpruned, input_shape, opts.latency, opts.protocol))
        guide = teacher if teacher is not None else copy.deepcopy(work)
        # channel counts stay multiples of 8: ONNX Runtime computes float convolutions in blocks
        # of 8 channels on x86, and ragged counts made a 25%-pruned model slower than the
        # original; of 16 for an INT8 export: on mbv3-32 at 32 px, 25% pruned, the INT8 model ran
        # at 1.04x its FP32 form with counts rounded to 8 and at 0.95x rounded to 16
        round_to = PRUNE_ROUND_INT8 if quantized else PRUNE_ROUND
        pr = prune_channels(work, sample, opts.prune, round_to=round_to)
        report["pruning"] = {"ratio": pr.ratio, "params_before": pr.params_before, "params_after": pr.params_after,
                             "channels_multiple_of": round_to,
                             "method": "torch-pruning MetaPruner, L1 magnitude, classifier kept"}
        teacher = guide
    if opts.finetune.epochs > 0 and data.train is not None:
        say(f"fine-tuning {opts.finetune.epochs} epoch(s)" + (" with distillation" if teacher is not None else ""))
        steps = finetune(work, data.train, opts.finetune, teacher, on_step=on_step)
        report["finetune"] = {"epochs": opts.finetune.epochs, "steps": steps, "lr": opts.finetune.lr,
                              "distillation": teacher is not None, "kd_alpha": opts.finetune.kd_alpha,
                              "kd_temperature": opts.finetune.kd_temperature}
    work.eval()
    report["params"] = count_params(work)

    say("exporting FP32 ONNX")
    fp32 = _onnx(work, sample, opts.opset)
    check_inputs = data.test[0][: opts.parity_images] if data.test is not None else data.calibration[: opts.parity_images]
    report["parity_max_abs_diff"] = parity(work, fp32, check_inputs.float())
    report["fp32"] = {"size_bytes": len(fp32), "size_parts": size_parts(fp32)}
    if test is not None:
        s = evaluate(fp32, *test, classes)
        report["fp32"].update(top1=s.top1, macro_f1=s.macro_f1, per_class=s.per_class)

    int8: bytes | None = None
    if quantized:
        calib = _np(data.calibration)
        chooser = (_np(data.val[0]), data.val[1].cpu().numpy()) if data.val is not None else None
        methods = CALIBRATION_METHODS if opts.calibration == "auto" else (opts.calibration,)
        bits = weight_bits(opts.int8_weights)
        if chooser is None:  # nothing to choose on: the range a tie would keep
            bits = bits[:1]
        compared = []
        variants = [(method, b) for method in methods for b in bits]
        for k, (method, b) in enumerate(variants, 1):
            say(f"INT8 calibration, trying {k}/{len(variants)}: {method}, {b}-bit weights")
            q = quantize_int8(fp32, calib, QuantizeOptions(method=method, reduce_range=b == 7))
            row: dict[str, Any] = {"method": method, "weight_bits": b, "size_bytes": len(q)}
            if chooser is not None:
                row["val_top1"] = top1(q, *chooser)
            if test is not None:
                row["test_top1"] = top1(q, *test)
            compared.append((row, q))
        # chosen on val only (test stays for the report); ties keep the first: MinMax before the
        # others; 8-bit weights before 7-bit where this CPU multiplies 8-bit pairs exactly (VNNI,
        # AMX, ARM dot product), else 7-bit (exact on every x86 CPU) first
        best_row, int8 = max(compared, key=lambda rq: rq[0].get("val_top1", 0.0))
        report["calibration"] = {"images": len(calib), "chosen": best_row["method"],
                                 "weight_bits": best_row["weight_bits"],
                                 "chosen_on": "val" if chooser is not None else "first method (no val data)",
                                 "cpu_int8_dot_product": cpu_int8_dot_product(),
                                 "compared": [r for r, _ in compared]}
        report["int8"] = {"size_bytes": len(int8), "size_parts": size_parts(int8), "calibration": best_row["method"], "format": "QDQ",
                          "per_channel": True, "activations": "uint8",
                          "weights": "int8 (7-bit range)" if best_row["weight_bits"] == 7 else "int8"}
        if test is not None:
            s = evaluate(int8, *test, classes)
            report["int8"].update(top1=s.top1, macro_f1=s.macro_f1, per_class=s.per_class)

    if opts.latency is not None:
        say("measuring latency")
        report["latency_setup"] = {"provider": opts.latency.provider, "threads": opts.latency.threads,
                                   "batch": opts.latency.batch, "clock": opts.latency.clock}
        report["fp32"].update(latency(fp32, input_shape, opts.latency, opts.protocol))
        if int8 is not None:
            report["int8"].update(latency(int8, input_shape, opts.latency, opts.protocol))
    if int8 is not None:
        report["int8_vs_fp32"] = _ratios(report["fp32"], report["int8"])
        if opts.latency is not None:
            _pair(report["int8_vs_fp32"], paired_ratio(int8, fp32, input_shape, opts.latency, opts.protocol))
    deployed_key, why = deploy_choice(report, opts.latency_budget_ms, opts.int8_tolerance_points)
    report["deployed"] = deployed_key
    report["deploy"] = {"precision": deployed_key, "file": str(paths.model if deployed_key == "int8" or paths.fp32 is None
                                                               else paths.fp32), "why": why}
    if opts.profile_precision:
        report["profile_precision"] = opts.profile_precision
        if opts.profile_precision != deployed_key:  # the search chose for the other file's speed
            report["deploy"]["profile_note"] = (f"the profile times {opts.profile_precision.upper()} files, so the search "
                                                f"chose for their speed; the {deployed_key.upper()} file ships")
    if opts.profile_measure is not None:
        say(f"measuring the torch model on the profile's backend ({opts.profile_backend})")
        report["profile_backend"] = {"backend": opts.profile_backend, "model": "fp32 torch module",
                                     **opts.profile_measure(copy.deepcopy(work))}  # timing resets BN statistics
    if int8 is not None:
        note = int8_slower_note(report["int8_vs_fp32"], paths.fp32)
        if note and deployed_key == "int8":
            report["int8_vs_fp32"]["note"] = note
    plain_ms = None
    if opts.plain and opts.latency is not None:
        say(f"timing plainly in {opts.plain_sessions} fresh process{'es' if opts.plain_sessions > 1 else ''}")
        report["plain"] = plain_times(fp32, int8, work if opts.profile_measure is not None else None, input_shape,
                                      opts.latency, opts.profile_backend, opts.plain_sessions)
        plain_ms = report["plain"]["torch" if opts.profile_measure is not None else deployed_key]["median_ms"]
    if "unpruned" in report and "latency_ms" in report["unpruned"]:
        report["pruning"]["latency_ratio"] = report["fp32"]["latency_ms"] / report["unpruned"]["latency_ms"]
        _pair(report["pruning"], paired_ratio(fp32, unpruned, input_shape, opts.latency, opts.protocol))
        if "top1" in report["unpruned"] and "top1" in report["fp32"]:
            report["pruning"]["top1_change"] = report["fp32"]["top1"] - report["unpruned"]["top1"]
    torch_side = report.get("profile_backend")
    check = check_budget(opts.latency_budget_ms, deployed_key, report[deployed_key].get("latency_ms"),
                         opts.profile_backend if torch_side is not None else None,
                         torch_side.get("latency_ms") if torch_side is not None else None, plain_ms)
    report["budget_checked_on"] = check.checked_on
    report["latency_ms"] = check.latency_ms
    if check.protocol_latency_ms is not None:
        report["latency_protocol_ms"] = check.protocol_latency_ms
    report["meets_budget"] = check.meets
    from hwnas import __version__

    report["hwnas_version"] = __version__
    if opts.profile_warnings:
        report["profile_warnings"] = list(opts.profile_warnings)
    report["seconds"] = time.perf_counter() - t_start
    report["metadata"] = opts.metadata

    meta = _model_metadata(report, opts.metadata)
    files: dict[Path, bytes] = {paths.model: with_metadata(int8 if int8 is not None else fp32,
                                                {**meta, "hwnas.precision": "int8" if int8 is not None else "fp32"})}
    if paths.fp32 is not None:
        files[paths.fp32] = with_metadata(fp32, {**meta, "hwnas.precision": "fp32"})
    report["files"] = {"model": str(paths.model), "fp32": str(paths.fp32) if paths.fp32 else None,
                       "report_json": str(paths.report_json), "report_md": str(paths.report_md)}
    for p, b in files.items():
        atomic_write_bytes(p, b)
    atomic_write_json(paths.report_json, report)
    atomic_write_text(paths.report_md, report_markdown(report))
    return ExportResult(paths, report, work)


def _onnx(model: nn.Module, sample: torch.Tensor, opset: int) -> bytes:
    # the same short tensor names as the INT8 file, so that the size ratio compares weights, not naming
    return compact_bytes(to_onnx(model, sample, opset), drop_zero_points=False)


def _ratios(fp32: dict, int8: dict) -> dict[str, float]:
    r: dict[str, float] = {"size_ratio": int8["size_bytes"] / fp32["size_bytes"]}
    if "latency_ms" in fp32 and "latency_ms" in int8:
        r["latency_ratio"] = int8["latency_ms"] / fp32["latency_ms"]
    if "top1" in fp32 and "top1" in int8:
        r["top1_drop_points"] = 100.0 * (fp32["top1"] - int8["top1"])
    return r


def deploy_choice(report: dict, latency_budget_ms: float | None, tolerance_points: float = 1.0) -> tuple[str, str]:
    """Which file to deploy, FP32 or INT8, and why. With a latency budget the faster truth
    decides: INT8 where it is faster than FP32 (the call-by-call ratio) and within
    ``tolerance_points`` of its top-1, else FP32. Without a budget, INT8 (the smaller file)."""
    if "int8" not in report:
        return "fp32", "not quantized"
    ratios = report.get("int8_vs_fp32") or {}
    ratio, drop = ratios.get("latency_ratio"), ratios.get("top1_drop_points")
    if latency_budget_ms is None or ratio is None:
        why = "no latency budget: INT8 is the smaller file" if latency_budget_ms is None else "latency not measured: INT8 is the smaller file"
        return "int8", why
    if ratio >= 1.0:
        return "fp32", f"INT8 runs {ratio:.2f}x FP32's time on this backend: FP32 is the faster file"
    if drop is not None and drop > tolerance_points:
        return "fp32", f"INT8 is faster (x{ratio:.2f}) but loses {drop:.2f} points of top-1 (tolerance {tolerance_points:g})"
    kept = f", top-1 within {tolerance_points:g} point(s)" if drop is not None else ""
    return "int8", f"INT8 is faster (x{ratio:.2f} FP32's time){kept}"


def int8_slower_note(ratios: dict, fp32_path: Path | None) -> str | None:
    """What to say when the INT8 model measured no faster than its FP32 form (tiny inputs, or
    an x86 CPU without VNNI, where the integer kernels have no edge and the graph runs about
    twice as many nodes): it is still the smaller file, but a user choosing by latency should
    deploy the FP32 one. None when INT8 is faster or latency was not measured."""
    ratio = ratios.get("latency_ratio")
    if ratio is None or ratio <= 1.0:
        return None
    where = f"deploy {fp32_path}" if fp32_path is not None else "export with --quantize none"
    return (f"INT8 ran {ratio:.2f}x the FP32 model's time here: smaller (x{ratios['size_ratio']:.2f}) but not "
            f"faster on this backend; where latency matters more than size, {where}")


def _pair(ratios: dict, paired: dict) -> None:
    """Make the call-by-call ratio the headline ``latency_ratio``.

    The two latencies in a report are measured one after the other (each against the profile's
    reference network when there is one); their quotient carries the noise of both
    measurements, and on a shared machine it was off by up to a third. Timing the two models
    against each other, call by call, cancels the machine's drift: that ratio is the one to
    read, the quotient stays beside it as ``latency_ratio_separate``."""
    if "latency_ratio" in ratios:
        ratios["latency_ratio_separate"] = ratios["latency_ratio"]
    ratios["latency_ratio"] = paired["ratio"]
    ratios["latency_ratio_paired"] = paired


def _model_metadata(report: dict, extra: dict[str, Any]) -> dict[str, Any]:
    """What a deployment needs to know, carried inside the file (metadata_props)."""
    meta: dict[str, Any] = {f"hwnas.{k}": v for k, v in extra.items()}
    meta["hwnas.version"] = report["hwnas_version"]
    meta["hwnas.input_shape"] = report["input_shape"]
    meta["hwnas.accuracy"] = {k: report[k].get("top1") for k in ("fp32", "int8") if k in report}
    meta["hwnas.latency_ms"] = {k: report[k].get("latency_ms") for k in ("fp32", "int8") if k in report}
    meta["hwnas.latency_setup"] = report.get("latency_setup")
    meta["hwnas.latency_budget_ms"] = report.get("latency_budget_ms")
    meta["hwnas.meets_budget"] = report.get("meets_budget")
    meta["hwnas.budget_checked_on"] = report.get("budget_checked_on")
    meta["hwnas.deploy"] = report.get("deploy")
    return meta
