"""`hwnas sample`, `hwnas profile` (with `bundle` and `run-bundle`) and `hwnas latency`.

torch is imported inside the commands that need it, never at module level: `hwnas profile
run-bundle` must run on devices that have only numpy and onnxruntime.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

import typer

from hwnas.cli.common import err, interrupted, out, parse_space_settings, read_archs
from hwnas.errors import UserError

PHASE_LABELS = {"overhead": "call overhead", "block": "blocks", "network": "whole networks", "export": "export ONNX",
                "measure": "measure", "plain": "plain timing"}


@contextmanager
def progress_bars() -> Iterator:
    """A rich progress display with one bar per phase; yields the callback the library takes."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    bars: dict[str, int] = {}
    progress = Progress(TextColumn("{task.description:<16}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        TimeRemainingColumn(), console=err, transient=False)

    def update(phase: str, done: int, total: int) -> None:
        if not bars:  # shown from the first step on: input refused before any work leaves no blank line
            progress.start()
        if phase not in bars:
            bars[phase] = progress.add_task(PHASE_LABELS.get(phase, phase), total=total)
        progress.update(bars[phase], completed=done, total=total)

    try:
        yield update
    finally:
        if bars:
            progress.stop()


def kept_text(out_path: str) -> str:
    """What an interrupted profile kept, and how to go on: only what is true of the journal."""
    from hwnas.latency.profiling import kept_measurements, partial_path

    n = kept_measurements(out_path)
    journal = partial_path(out_path)
    if n is None:
        return "nothing was measured or kept; run the command again to start over"
    if n == 0:
        return (f"nothing was measured yet; {journal} records the settings: run the same command again to start, "
                f"or add --force to start over with other settings")
    return (f"{n} measurement(s) are kept in {journal}: run the same command again to resume "
            f"(other settings need --force, which starts over)")


def print_validation(table, path: str) -> None:
    from rich.table import Table

    v = table.validation
    cal = table.calibration
    t = Table(title=f"latency table {path}: {table.space['name']} on {table.backend['name']}"
                    f" ({table.backend.get('threads')} thread(s), batch {table.backend.get('batch')}"
                    f"{', INT8' if table.backend.get('dtype') == 'int8' else ''})")
    t.add_column("measure")
    t.add_column("value", justify="right")
    t.add_row("entries", str(len(table.entries)))
    t.add_row("noisy entries", str(sum(e.noisy for e in table.entries.values())))
    t.add_row("call overhead", f"{table.call_overhead_ms * 1e3:.1f} us")
    t.add_row("calibration", f"x{cal['scale']:.3f} {cal['offset_ms']:+.4f} ms on {cal['k']} networks")
    if cal.get("op_scales") and len(cal["op_scales"]) > 1:
        t.add_row("scale per block kind", ", ".join(f"{op} x{s:.2f}" for op, s in sorted(cal["op_scales"].items())))
    if cal.get("op_block_ms"):
        t.add_row("time per block", ", ".join(f"{op} {ms * 1e3:+.1f} us" for op, ms in sorted(cal["op_block_ms"].items())))
    act = cal.get("act_term") or {}
    if "loo_mape_with" in act:
        loo = f"leave-one-out {act['loo_mape_without']:.1%} -> {act['loo_mape_with']:.1%}"
        if act["kept"]:
            shown = f"{cal['ms_per_act_mb'] * 1e3:.1f} us ({loo})"
        elif act["fitted_ms_per_mb"] <= 0:
            shown = f"not used (fitted {act['fitted_ms_per_mb'] * 1e3:.1f} us)"
        else:
            shown = f"not used ({loo})"
        t.add_row("time per MB of activations", shown)
    if v.get("n"):
        t.add_row("validation networks", str(v["n"]))
        t.add_row("within ±5%", f"{v['within_5pct']:.0%}")
        t.add_row("within ±10%", f"{v['within_10pct']:.0%}")
        t.add_row("mean abs. error", f"{v['mape']:.1%}")
        t.add_row("worst error", f"{v['max_error']:.1%}")
        t.add_row("Kendall tau", f"{v['kendall_tau']:.3f}")
        if v.get("target") == "plain":
            t.add_row("validated on", f"plain timings (median of {table.calibration.get('sessions')} fresh processes)")
            t.add_row("session spread (median)", f"{v['session_spread']:.1%}")
        else:
            t.add_row("measurement spread (IQR/median)", f"{v['measurement_spread']:.1%}")
        ms = [n["measured_ms"] for n in v["networks"]]
        t.add_row("measured range", f"{min(ms):.3f} - {max(ms):.3f} ms")
    units = table.extra.get("units") or {}
    if units.get("latency") == "plain":
        from hwnas.latency.units import units_label

        t.add_row("units", units_label(units))
    else:
        t.add_row("units", "protocol (older tables: fastest session, low percentile)")
    int8 = table.extra.get("int8")
    if int8:
        t.add_row("INT8", f"the export's static QDQ quantizer; networks calibrated on {int8['images']} "
                          f"{int8['calibration_data']} images")
    t.add_row("build time", f"{table.build_seconds:.0f} s")
    out.print(t)


def register(app: typer.Typer) -> None:
    @app.command("sample")
    def sample_cmd(
        space: str = typer.Option(..., "--space", help="search space name (hwnas list spaces)"),
        space_settings: Optional[str] = typer.Option(None, "--space-settings", help="JSON object changing the space's "
                                                     "config, as for hwnas profile and search"),
        n: int = typer.Option(10, "--n", help="how many archs"),
        seed: int = typer.Option(0, "--seed", help="random seed"),
    ) -> None:
        """Print N random archs of a space, one JSON object per line."""
        from hwnas.space import as_rng, get_space

        if n < 1:
            raise UserError(f"--n must be a positive integer, got {n}")
        sp = get_space(space, **parse_space_settings(space_settings))
        rng = as_rng(seed)
        for _ in range(n):
            a = sp.sample(rng)
            out.print(json.dumps({"id": a.id, **a.to_dict()}, sort_keys=True), markup=False)

    profile_app = typer.Typer(help="Measure this device: build a latency table for a space.", no_args_is_help=False)

    @profile_app.callback(invoke_without_command=True)
    def profile_cmd(
        ctx: typer.Context,
        space: Optional[str] = typer.Option(None, "--space", help="search space (hwnas list spaces)"),
        space_settings: Optional[str] = typer.Option(None, "--space-settings", help="JSON object overriding the space's config "
                                                     "(e.g. '{\"image_size\": 64}'; search and export then take the same)"),
        backend: str = typer.Option("ort-cpu", "--backend", help="latency backend (hwnas list backends)"),
        provider: Optional[str] = typer.Option(None, "--provider", help="ONNX Runtime execution provider (backend ort)"),
        threads: int = typer.Option(1, "--threads", help="intra-op threads"),
        batch: int = typer.Option(1, "--batch", help="batch size"),
        calibrate: Optional[int] = typer.Option(None, "--calibrate", help="whole networks measured to fit the calibration (default: the space's: 30 for the MBConv spaces, 50 where they search fused blocks, 100 for nb201)"),
        validate: int = typer.Option(20, "--validate", help="fresh whole networks measured to validate the table"),
        seed: int = typer.Option(0, "--seed", help="seed for the calibration and validation networks"),
        clock: str = typer.Option("auto", "--clock", help="auto, wall or thread (CPU time of the inference thread)"),
        dtype: str = typer.Option("float32", "--dtype", help="float32, or int8: time every block and network as "
                                  "the export's INT8 file (ONNX Runtime backends)"),
        calibration_data: Optional[str] = typer.Option(None, "--calibration-data", help="dataset whose real images "
                                                       "calibrate an INT8 table's networks (default: digits)"),
        calibrate_on: str = typer.Option("auto", "--calibrate-on", help="plain: fit the calibration on plain timings "
                                         "of the whole networks; protocol: on the profiler's protocol, converted to plain "
                                         "milliseconds by a line; auto: plain for ONNX Runtime tables, protocol for eager torch"),
        plain_sessions: Optional[int] = typer.Option(None, "--plain-sessions", help="fresh processes per network timed "
                                                     "plainly (the median of their medians) (default: 5 where the "
                                                     "table is fitted on plain timings, else 3)"),
        out_path: Optional[str] = typer.Option(None, "--out", help="table file to write (JSON)"),
        force: bool = typer.Option(False, "--force", help="overwrite FILE and discard an unfinished run"),
    ) -> None:
        """Build a latency table: time every block, calibrate on whole networks, validate on fresh ones.

        With --dtype int8 the table predicts the INT8 file `hwnas export --quantize int8` writes.
        An interrupted run resumes when the same command is run again.
        """
        if ctx.invoked_subcommand is not None:
            return
        if space is None or out_path is None:
            raise UserError("hwnas profile needs --space and --out (or a subcommand: bundle, run-bundle)")
        from hwnas.latency.backends import get_backend
        from hwnas.latency.profiler import profile
        from hwnas.space import get_space

        sp = get_space(space, **parse_space_settings(space_settings))
        be = get_backend(backend, threads=threads, batch=batch, provider=provider, clock=clock, dtype=dtype)
        if calibration_data is not None and dtype != "int8":
            raise UserError("--calibration-data calibrates INT8 tables; add --dtype int8 or leave it out")
        if plain_sessions is not None and plain_sessions < 1:
            raise UserError(f"--plain-sessions must be at least 1, got {plain_sessions}")
        try:
            with progress_bars() as update:
                table = profile(sp, be, out_path, n_calibrate=calibrate, n_validate=validate, seed=seed, force=force,
                                on_progress=update, calibration_data=calibration_data, plain_sessions=plain_sessions,
                                calibrate_on=calibrate_on)
        except KeyboardInterrupt:
            interrupted(kept_text(out_path))
        print_validation(table, out_path)

    @profile_app.command("bundle")
    def bundle_cmd(
        space: str = typer.Option(..., "--space", help="search space (hwnas list spaces)"),
        space_settings: Optional[str] = typer.Option(None, "--space-settings", help="JSON object overriding the space's config"),
        out_dir: str = typer.Option(..., "--out", help="bundle folder to write"),
        batch: int = typer.Option(1, "--batch", help="batch size"),
        calibrate: Optional[int] = typer.Option(None, "--calibrate", help="calibration networks (default: the space's, as for hwnas profile)"),
        validate: int = typer.Option(20, "--validate", help="validation networks"),
        seed: int = typer.Option(0, "--seed", help="seed for the networks"),
        dtype: str = typer.Option("float32", "--dtype", help="float32, or int8: the files are the export's INT8 form"),
        calibration_data: Optional[str] = typer.Option(None, "--calibration-data", help="dataset whose real images "
                                                       "calibrate the INT8 networks (default: digits)"),
        force: bool = typer.Option(False, "--force", help="replace an existing bundle folder"),
    ) -> None:
        """Write every block and the calibration/validation networks as ONNX files, for a device without torch."""
        from hwnas.latency.bundle import write_bundle
        from hwnas.space import get_space

        sp = get_space(space, **parse_space_settings(space_settings))
        if calibration_data is not None and dtype != "int8":
            raise UserError("--calibration-data calibrates INT8 bundles; add --dtype int8 or leave it out")
        with progress_bars() as update:
            path = write_bundle(sp, out_dir, batch=batch, n_calibrate=calibrate, n_validate=validate, seed=seed,
                                force=force, on_progress=update, dtype=dtype, calibration_data=calibration_data)
        n = sum(1 for _ in Path(path).rglob("*.onnx"))
        size = sum(p.stat().st_size for p in Path(path).rglob("*"))
        out.print(f"wrote {path}: {n} ONNX files, {size / 1e6:.1f} MB. On the device run:\n"
                  f"  hwnas profile run-bundle {path} --out table.json\n"
                  f"or, with only numpy and onnxruntime installed:\n"
                  f"  python -m hwnas.latency.bundle_runner {path} --out table.json", markup=False)

    @profile_app.command("run-bundle")
    def run_bundle_cmd(
        bundle: str = typer.Argument(..., help="bundle folder made by `hwnas profile bundle`"),
        out_path: str = typer.Option(..., "--out", help="table file to write (JSON)"),
        provider: str = typer.Option("CPUExecutionProvider", "--provider", help="ONNX Runtime execution provider"),
        threads: int = typer.Option(1, "--threads", help="intra-op threads"),
        clock: str = typer.Option("auto", "--clock", help="auto, wall or thread"),
        force: bool = typer.Option(False, "--force", help="overwrite FILE and discard an unfinished run"),
    ) -> None:
        """Time a bundle on this device with onnxruntime only (no torch) and write the table."""
        from hwnas.latency.bundle_runner import run_bundle

        if clock not in ("auto", "wall", "thread"):
            raise UserError(f"unknown clock {clock!r}; choose auto, wall or thread")
        try:
            with progress_bars() as update:
                table = run_bundle(bundle, out_path, provider=provider, threads=threads, clock=clock, force=force,
                                   on_progress=update)
        except KeyboardInterrupt:
            interrupted(kept_text(out_path))
        print_validation(table, out_path)

    @profile_app.command("check")
    def check_cmd(
        table_path: str = typer.Argument(..., help="latency table to check against this machine"),
        as_json: bool = typer.Option(False, "--json", help="print the result as one JSON object"),
        rescale: bool = typer.Option(False, "--rescale", help="write a copy rescaled to this machine (needs --out)"),
        out_path: Optional[str] = typer.Option(None, "--out", help="where --rescale writes the rescaled table"),
        networks: int = typer.Option(6, "--networks", help="networks re-timed: the reference and N-1 calibration networks"),
        sessions: int = typer.Option(3, "--sessions", help="fresh processes per network; each network's time is the median "
                                     "of their medians (one session's speed varies on a VM)"),
        force: bool = typer.Option(False, "--force", help="let --out replace an existing file"),
    ) -> None:
        """Re-time a table's reference and a few calibration networks plainly: is the table stale here?

        Drift is median(plain time now / table's prediction) - 1: positive when this machine runs
        slower than the table says. Past 5% the table is stale; --rescale --out NEW writes a copy
        whose predictions match this machine (an older table is converted to plain units).
        """
        from hwnas.fileio import check_output_path
        from hwnas.latency import load_table
        from hwnas.latency.units import DRIFT_WARN, check_table, checkable, rescale_table

        if rescale != (out_path is not None):
            raise UserError("--rescale and --out go together: `hwnas profile check TABLE --rescale --out NEW.json`")
        if networks < 1:
            raise UserError(f"--networks must be at least 1, got {networks}")
        if sessions < 1:
            raise UserError(f"--sessions must be at least 1, got {sessions}")
        if out_path is not None:
            if Path(out_path).resolve() == Path(table_path).resolve():
                raise UserError("--out must name a new file, not the table being checked (it stays as it is)")
            check_output_path(out_path, force=force, what="table")
        table = load_table(table_path)
        checkable(table, table_path, networks)  # refusals before the progress bar
        with progress_bars() as update:
            result = check_table(table, table_path, n=networks, sessions=sessions, on_progress=update)
        if rescale:
            factor = 1.0 + result["drift"]
            rescale_table(table, factor, {"from": Path(table_path).name, "drift": result["drift"]}).save(out_path)
            result["rescaled"] = {"out": out_path, "factor": factor}
        if as_json:
            out.print(json.dumps(result), markup=False)
            return
        d = result["drift"]
        verdict = (f"stale: this machine runs {abs(d):.1%} {'slower' if d > 0 else 'faster'} than the table predicts"
                   if result["stale"] else f"current: within {DRIFT_WARN:.0%} ({d:+.1%})")
        out.print(f"{table_path}: {verdict} (median of {len(result['networks'])} networks, plain timing in "
                  f"{sessions} fresh session{'s' if sessions > 1 else ''} each, "
                  f"spread of the ratios {result['ratio_iqr']:.1%}; table units: {result['units']})", markup=False)
        for r in result["networks"]:
            out.print(f"  {r['role']:<12} {r['id']}  predicted {r['predicted_ms']:.4f} ms  plain {r['plain_median_ms']:.4f} ms"
                      f" (p90 {r['plain_p90_ms']:.4f})  x{r['ratio']:.3f}", markup=False)
        if rescale:
            out.print(f"wrote {out_path}: predictions x{1 + d:.3f}", markup=False)
        elif result["stale"] or result["units"] != "plain":
            out.print(f"refresh it: hwnas profile check {table_path} --rescale --out NEW.json", markup=False)

    app.add_typer(profile_app, name="profile")

    @app.command("latency")
    def latency_cmd(
        arch: str = typer.Option(..., "--arch", help="arch file: one JSON object per line ('-' for stdin)"),
        profile_path: Optional[str] = typer.Option(None, "--profile", help="latency table to predict from"),
        space: Optional[str] = typer.Option(None, "--space", help="space of the archs (with --measure)"),
        space_settings: Optional[str] = typer.Option(None, "--space-settings", help="with --measure: JSON object "
                                                     "changing the space's config (the archs' space as profiled)"),
        backend: str = typer.Option("ort-cpu", "--backend", help="backend to measure on (with --measure)"),
        provider: Optional[str] = typer.Option(None, "--provider", help="ONNX Runtime execution provider"),
        threads: int = typer.Option(1, "--threads", help="intra-op threads"),
        batch: int = typer.Option(1, "--batch", help="batch size"),
        clock: str = typer.Option("auto", "--clock", help="auto, wall or thread"),
        measure_flag: bool = typer.Option(False, "--measure", help="measure end to end instead of predicting"),
        dtype: str = typer.Option("float32", "--dtype", help="with --measure: float32, or int8 (each arch as the "
                                  "export's INT8 file, calibrated on digits images; ONNX Runtime backends)"),
        plain: bool = typer.Option(False, "--plain", help="with --measure: time each arch with a plain loop (fresh "
                                   "process, warm-up, median and p90 of 300 calls), as a user checks a file"),
        sessions: int = typer.Option(3, "--sessions", help="with --plain: fresh processes per arch; its time is the median "
                                     "of their medians, with their spread beside it"),
        as_json: bool = typer.Option(False, "--json", help="one JSON object per line"),
    ) -> None:
        """Predict archs' latency from a table, or measure them end to end (--measure).

        Predictions and --plain are in plain milliseconds (a plain loop's median); --measure alone
        uses the profiler's noise-resistant protocol (fastest session, paired), which reads lower.
        """
        from rich.table import Table

        if plain and not measure_flag:
            raise UserError("--plain times archs: use it with --measure (and --space)")
        if sessions < 1:
            raise UserError(f"--sessions must be at least 1, got {sessions}")
        if dtype != "float32" and not measure_flag:
            raise UserError("--dtype applies to --measure; a table predicts in its own precision (hwnas profile --dtype)")
        if measure_flag:
            if space is None:
                raise UserError("--measure needs --space (and optionally --backend, --threads)")
            from hwnas.latency.backends import get_backend
            from hwnas.space import get_space

            sp = get_space(space, **parse_space_settings(space_settings))
            be = get_backend(backend, threads=threads, batch=batch, provider=provider, clock=clock, dtype=dtype)
            if dtype == "int8":
                from hwnas.latency.profiler import int8_calibration_images

                be.calibration_images = int8_calibration_images(sp)
            archs = read_archs(arch, sp)
        if measure_flag and plain:
            from hwnas.latency.units import plain_times_on

            with progress_bars() as update:
                times = plain_times_on(be, sp, archs, on_progress=update, sessions=sessions)
            rows = [{"id": a.id, "plain_median_ms": t["median_ms"], "plain_p90_ms": t["p90_ms"],
                     **{k: t[k] for k in ("session_medians_ms", "session_spread") if k in t}} for a, t in zip(archs, times)]
        elif measure_flag:
            from hwnas.latency.profiler import measure_archs

            with progress_bars() as update:
                rows = measure_archs(sp, be, archs, on_progress=update)
            rows = [{"id": r["id"], "measured_ms": r["measured_ms"], "iqr_ms": r["iqr_ms"]} for r in rows]
        else:
            if profile_path is None:
                raise UserError("hwnas latency needs --profile TABLE (to predict) or --space with --measure")
            from hwnas.latency import LatencyPredictor, load_table, warn_if_other_device

            table = load_table(profile_path)
            sp = table.get_space()
            if space is not None and space != sp.name:
                raise UserError(f"table {profile_path!r} is for space {sp.name!r}, not {space!r}")
            from hwnas.latency.units import units_note

            for line in warn_if_other_device(table) + [n for n in [units_note(table, profile_path)] if n]:
                err.print(f"warning: {line}", markup=False)
            pred = LatencyPredictor(table, sp)
            archs = read_archs(arch, sp)
            rows = [{"id": a.id, "predicted_ms": p} for a, p in zip(archs, pred.predict_many(archs))]
        if as_json:
            for r in rows:
                out.print(json.dumps(r), markup=False)
            return
        t = Table()
        for k in rows[0]:
            t.add_column(k)
        for r in rows:
            t.add_row(*(f"{v:.4f}" if isinstance(v, float) else str(v) for v in r.values()))
        out.print(t)
