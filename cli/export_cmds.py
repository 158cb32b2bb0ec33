"""``hwnas export`` and ``hwnas demo``: thin wrappers over ``hwnas.exporters`` (torch loads inside)."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Callable, Iterator, Optional, TextIO

import typer

from hwnas.cli.common import err, out
from hwnas.errors import UserError


def _threads() -> None:
    import torch

    torch.set_num_threads(1)


@contextmanager
def export_progress(stream: TextIO | None = None) -> Iterator[tuple[Callable[[str], None], Callable[[int, float], None]]]:
    """(log, on_step) for the export's stages and training steps: a spinner on a terminal;
    otherwise plain lines (``hwnas.accuracy.progress.PlainLines``) that a log file or a pipe
    shows as they happen: each stage as it starts, training steps every 10 s."""
    from hwnas.accuracy.progress import PlainLines

    stream = stream or sys.stderr
    if stream is sys.stderr and err.is_terminal:
        with err.status("exporting") as status:
            current = {"text": "exporting"}

            def log(text: str) -> None:
                current["text"] = text
                status.update(text)

            def on_step(step: int, loss: float) -> None:
                status.update(f"{current['text']} (step {step}, loss {loss:.3f})")

            yield log, on_step
        return
    stages = PlainLines(stream, every=0.0)  # every stage line is printed
    stage = stages.add_task("export")
    steps = PlainLines(stream)
    step_task: dict[str, int] = {}

    def plain_log(text: str) -> None:
        stages.update(stage, advance=1, stage=text)
        step_task.clear()  # a stage that trains counts its own steps

    def plain_step(step: int, loss: float) -> None:
        if "task" not in step_task:
            step_task["task"] = steps.add_task("  training step")
        steps.update(step_task["task"], completed=step, loss=f"loss {loss:.3f}")

    yield plain_log, plain_step


def _print_report(r: dict) -> None:
    from rich.table import Table

    from hwnas.exporters.report import plain_how, size_parts_text

    cols = [k for k in ("unpruned", "fp32", "int8") if k in r]
    t = Table(title="export: measured on " + (
        f"ORT {r['latency_setup']['provider']}, {r['latency_setup']['threads']} thread(s), batch {r['latency_setup']['batch']}"
        if "latency_setup" in r else "-"))
    t.add_column("")
    for c in cols:
        t.add_column(c, justify="right")

    def cell(c: str, key: str, fmt: str) -> str:
        v = r[c].get(key) if key != "params" else (r[c].get("params") if c == "unpruned" else r.get("params"))
        return "-" if v is None else format(v, fmt)

    for label, key, fmt in (("size (KB)", "size_bytes", ".1f"), ("latency (ms)", "latency_ms", ".4f"),
                            ("top-1 (test)", "top1", ".4f"), ("params", "params", ",d")):
        vals = [cell(c, key, fmt) if key != "size_bytes" else
                (f"{r[c]['size_bytes'] / 1024:.1f}" if "size_bytes" in r[c] else "-") for c in cols]
        t.add_row(label, *vals)
    out.print(t)
    if "int8_vs_fp32" in r:
        q = r["int8_vs_fp32"]
        sep = q.get("latency_ratio_separate")
        how = (" (timed against each other call by call" + (f"; one after the other x{sep:.3f})" if sep is not None else ")")
               if q.get("latency_ratio_paired") else "")
        out.print(f"INT8/FP32: size x{q['size_ratio']:.3f}, latency x{q.get('latency_ratio', float('nan')):.3f}{how}, "
                  f"top-1 drop {q.get('top1_drop_points', float('nan')):.2f} points; calibration "
                  f"{r['calibration']['chosen']}, {r['calibration'].get('weight_bits', 7)}-bit weights", markup=False)
        parts = size_parts_text(r)
        if parts:
            out.print(parts, markup=False)
        if q.get("note"):
            out.print(f"note: {q['note']}", markup=False)
    out.print(f"parity (torch vs ORT, max abs diff): {r['parity_max_abs_diff']:.2e}", markup=False)
    if r.get("latency_budget_ms") is not None:
        verdict = "PASS" if r["meets_budget"] else "FAIL"
        pred = f", predicted {r['predicted_ms']:.4f} ms" if r.get("predicted_ms") is not None else ""
        out.print(f"budget {verdict}: measured {r['latency_ms']:.4f} ms ({r.get('budget_checked_on') or r['deployed']}) vs budget "
                  f"{r['latency_budget_ms']:.4f} ms{pred}", markup=False)
    elif r.get("budget_note"):
        out.print(f"note: {r['budget_note']}", markup=False)
    if r.get("plain"):
        out.print(f"plain timing ({plain_how(r['plain'])}; median / p90 of a plain loop): " + ", ".join(
            f"{k} {v['median_ms']:.4f} / {v['p90_ms']:.4f} ms" for k, v in r["plain"].items()), markup=False)
    if r.get("deploy"):
        out.print(f"deploy: {r['deploy']['file']} ({r['deploy']['why']})", markup=False)
    files = r["files"]
    out.print(f"wrote {files['model']}" + (f", {files['fp32']}" if files.get("fp32") else "") +
              f", {files['report_json']}, {files['report_md']}", markup=False)


def _print_compare(c: dict) -> None:
    """The demo's comparison block: each network's top-1, measured latency and params, and the verdict."""
    from rich import box
    from rich.table import Table

    t = Table(title=f"against hand-designed baselines: each trained from scratch on digits, {c['epochs']} epochs, one "
                    f"recipe; FP32 latency measured on the demo's profile", box=box.SIMPLE_HEAD, title_justify="left")
    for col in ("network", "kind", "top-1 %", "latency (ms)", "params"):
        t.add_column(col, justify="left" if col in ("network", "kind") else "right", no_wrap=col == "network")
    for r in c["rows"]:
        t.add_row(r["name"], r["kind"], f"{100 * r['top1']:.2f}", f"{r['latency_ms']:.4f}", f"{r['params']:,}")
    out.print(t)
    kept = f"; {c['kept_rows']} row(s) kept from the earlier run" if c.get("kept_rows") else ""
    out.print(f"{c['verdict']} (compare: {c['seconds']:.0f} s{kept}; {c['folder']}: compare.json, compare.md, compare.png)",
              markup=False)


def register(app: typer.Typer) -> None:
    @app.command("export")
    def export_cmd(
        run_dir: str = typer.Argument(..., help="run folder written by `hwnas search --out`"),
        out_path: str = typer.Option(..., "--out", help="ONNX file to write; beside it go the FP32 model and the report "
                                                        "(report.json/.md for model.onnx, else STEM.report.json/.md)"),
        arch: str = typer.Option("best", "--arch", help="best, or an arch id from the run's journal"),
        finetune_epochs: int = typer.Option(1, "--finetune-epochs", help="fine-tuning epochs (distilled from the supernet's largest subnet)"),
        prune: Optional[float] = typer.Option(None, "--prune", help="fraction of channels to remove, in (0, 1)"),
        quantize: str = typer.Option("int8", "--quantize", help="int8 (static QDQ, per-channel) or none"),
        calibration: str = typer.Option("auto", "--calibration", help="auto (best of minmax/percentile/entropy on val), minmax, percentile or entropy"),
        int8_weights: str = typer.Option("auto", "--int8-weights", help="INT8 weight range: auto (7-bit and 8-bit compared on val), 7 or 8"),
        calibration_images: int = typer.Option(512, "--calibration-images", help="real training images for INT8 calibration"),
        data: Optional[str] = typer.Option(None, "--data", help="dataset override (needed when the run's evaluator names none)"),
        latency_budget_ms: Optional[float] = typer.Option(None, "--latency-ms", "--budget-ms", help="latency budget in ms, as hwnas search takes it (default: the run's); --budget-ms is its older name"),
        scratch_epochs: int = typer.Option(10, "--scratch-epochs", help="epochs when the run has no supernet weights"),
        opset: int = typer.Option(17, "--opset", help="ONNX opset (17 or newer)"),
        seed: int = typer.Option(0, "--seed", help="seed of fine-tuning (or training from scratch) and of the calibration images"),
        allow_over_budget: bool = typer.Option(False, "--allow-over-budget", help="exit 0 even when the measured latency misses the budget"),
        plain: bool = typer.Option(False, "--plain", help="also time the files with a plain loop in a fresh process (as a user "
                                   "checks a budget) and check the budget on that timing"),
        plain_sessions: int = typer.Option(3, "--plain-sessions", help="with --plain: fresh processes; each file's time is "
                                           "the median of their medians"),
        check_profile: bool = typer.Option(True, "--check-profile/--no-check-profile", help="quick check of the run's profile "
                                           "against this machine first (warns past 5% drift)"),
        force: bool = typer.Option(False, "--force", help="overwrite existing output files"),
    ) -> None:
        """Fine-tune, prune, export to ONNX, quantize to INT8 and measure the chosen arch of a search run."""
        from hwnas.exporters.prune import check_ratio
        from hwnas.latency.int8 import check_weight_range

        if prune is not None:
            check_ratio(prune)
        if quantize not in ("int8", "none"):
            raise UserError(f"--quantize must be int8 or none, got {quantize!r}")
        check_weight_range(int8_weights)
        if plain_sessions < 1:
            raise UserError(f"--plain-sessions must be at least 1, got {plain_sessions}")
        if calibration_images < 1:
            raise UserError(f"--calibration-images must be at least 1, got {calibration_images}")
        _threads()
        from hwnas.exporters.run_export import RunExportConfig, budget_message, export_run

        cfg = RunExportConfig(arch=arch, finetune_epochs=finetune_epochs, prune=prune, quantize=quantize,
                              calibration=calibration, int8_weights=int8_weights, calibration_images=calibration_images, data=data,
                              latency_budget_ms=latency_budget_ms, scratch_epochs=scratch_epochs, opset=opset, seed=seed, force=force,
                              plain=plain, plain_sessions=plain_sessions, check_profile=check_profile)
        with export_progress() as (log, on_step):
            res = export_run(run_dir, out_path, cfg, log=log, on_step=on_step)
        _print_report(res.report)
        if res.report.get("meets_budget") is False:
            if allow_over_budget:
                err.print(f"warning: {budget_message(res.report)} (--allow-over-budget)", markup=False)
            else:
                err.print(f"error: {budget_message(res.report)}; the files are written for inspection; "
                          f"pass --allow-over-budget to accept, or export with --prune", markup=False)
                # typer.Exit's code is lost under standalone_mode=False in main(); exit directly
                sys.exit(3)

    @app.command("demo")
    def demo_cmd(
        out_dir: str = typer.Option("hwnas-demo", "--out", help="folder for everything the demo writes"),
        epochs: int = typer.Option(6, "--epochs", help="supernet training epochs"),
        evals: int = typer.Option(40, "--evals", help="candidates the search evaluates"),
        prune: Optional[float] = typer.Option(None, "--prune", help="also prune this fraction of channels"),
        seed: int = typer.Option(0, "--seed", help="seed of every stage: sampled networks, training, search"),
        force: bool = typer.Option(False, "--force", help="redo the demo in an existing folder"),
        compare: bool = typer.Option(True, "--compare/--no-compare",
                                     help="compare the found model with two small hand-designed baselines (OUT/compare/)"),
    ) -> None:
        """The whole pipeline on the embedded digits data: profile, supernet, search, INT8 export, compare (minutes, CPU)."""
        import time

        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        if epochs < 1 or evals < 1:
            raise UserError("--epochs and --evals must be at least 1")
        from hwnas.exporters.prune import check_ratio

        if prune is not None:
            check_ratio(prune)
        _threads()
        from hwnas.exporters.demo import DemoConfig, run_demo

        t0 = time.perf_counter()
        bars = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        console=err, transient=False)
        tasks: dict[str, int] = {}

        def phase(name: str, done: int, total: int) -> None:
            key = name.split(":")[0]
            if key not in tasks:
                tasks[key] = bars.add_task(name, total=total)
            bars.update(tasks[key], completed=done, total=total, description=name)

        def log(msg: str) -> None:
            bars.console.print(f"[dim]{msg}[/dim]")

        with bars:
            res = run_demo(DemoConfig(out=out_dir, epochs=epochs, search_evals=evals, prune=prune, seed=seed,
                                      force=force, compare=compare), phase, log)
        _print_report(res.report)
        if res.report.get("compare"):
            _print_compare(res.report["compare"])
        out.print("stages: " + ", ".join(f"{k} {v:.0f} s" for k, v in res.stages.items())
                  + f"; total {time.perf_counter() - t0:.0f} s", markup=False)
        precision = "INT8" if res.int8_factor < 1.0 else "FP32"
        out.print(f"INT8 runs at {res.int8_factor:.2f}x FP32 on this machine at this input size (measured on three "
                  f"archs of the space), so the search read the {precision} table {res.search_profile} and ran under "
                  f"{res.search_latency_budget_ms:.4f} ms (the line in pareto.png) for a budget of {res.latency_budget_ms:.4f} ms",
                  markup=False)
        out.print(f"profile {res.profile}\nsupernet {res.supernet}\nsearch run {res.run} (best.json, pareto.png)\n"
                  f"model {res.model} (report: {res.report['files']['report_md']})", markup=False)
        out.print(f"next: hwnas export {res.run} --prune 0.25 --out {res.folder / 'model-pruned.onnx'}", markup=False)
