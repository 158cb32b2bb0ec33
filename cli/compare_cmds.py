"""`hwnas compare`: found networks against hand-designed baselines on one device and data."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from hwnas.cli.common import err, interrupted, out, read_archs
from hwnas.errors import UserError


def _floats(text: str, flag: str) -> tuple[float, ...]:
    try:
        return tuple(float(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise UserError(f"{flag} takes comma-separated numbers, got {text!r}") from None


def compare_cmd(
    profile: str = typer.Option(..., "--profile", help="latency table from `hwnas profile` (its backend times every network), or table:CSV#lat_DEVICE with --space nb201"),
    out_dir: str = typer.Option(..., "--out", help="folder to write (compare.json, compare.md, compare.png and the journal)"),
    data: str = typer.Option("digits", "--data", help="dataset: digits, cifar10[:PATH] or imagefolder:PATH"),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="training epochs of every network (default 10)"),
    baselines: Optional[str] = typer.Option(None, "--baselines", help="comma-separated baselines or all (hwnas list baselines)"),
    runs: Optional[List[str]] = typer.Option(None, "--run", help="search run folder: its best arch is compared (with --front, its whole Pareto front; repeatable)"),
    front: bool = typer.Option(False, "--front", help="compare every arch of each --run's Pareto front (pareto.json), not only its best"),
    arch: Optional[str] = typer.Option(None, "--arch", help="arch file (one JSON object or NAS-Bench-201 string per line) of --space"),
    space: Optional[str] = typer.Option(None, "--space", help="space of --arch (default: the profile's); nb201 for the NAS-Bench-201 comparison"),
    seeds: int = typer.Option(1, "--seeds", help="seeds per network (0 .. K-1)"),
    close_seeds: Optional[int] = typer.Option(None, "--close-seeds", help="seeds (0 .. K-1) for every found network and baseline whose mean top-1 are within --close-points of each other, added until no such pair has fewer"),
    close_points: float = typer.Option(1.0, "--close-points", help="with --close-seeds: how close in top-1 points a pair must be to get more seeds"),
    int8: bool = typer.Option(False, "--int8", help="also quantize each network to INT8 (static QDQ) and time it"),
    train_limit: Optional[int] = typer.Option(None, "--train-limit", help="train on the first N training images only"),
    threads: Optional[int] = typer.Option(None, "--threads", help="training threads (default: all cores)"),
    batch_size: int = typer.Option(64, "--batch-size", help="training batch size"),
    lr: float = typer.Option(0.05, "--lr", help="peak learning rate (SGD, cosine schedule)"),
    device: str = typer.Option("auto", "--device", help="training device: auto, cpu or cuda"),
    evaluator: Optional[str] = typer.Option(None, "--evaluator", help="NAS-Bench-201: accuracy column, e.g. table:nb201#c10_test"),
    strategies: str = typer.Option("evolution", "--strategies", help="NAS-Bench-201: comma-separated strategies to run"),
    budget_evals: int = typer.Option(100, "--budget-evals", help="NAS-Bench-201: evaluations per search"),
    budgets: str = typer.Option("1,0.75,0.5", "--budgets", help="NAS-Bench-201: latency budgets as fractions of the ResNet cell's"),
    resume: bool = typer.Option(False, "--resume", help="continue the comparison in --out, keeping its finished rows"),
    retime: bool = typer.Option(False, "--retime", help="time every row again on this machine, in one sitting, after the training (top-1 is kept): for rows timed on another machine"),
    force: bool = typer.Option(False, "--force", help="start the comparison in --out over"),
) -> None:
    """Train baselines and found networks with one recipe, time them on the profile's backend, tabulate and plot."""
    nb201 = evaluator is not None or profile.startswith("table:") or space == "nb201"
    try:
        if nb201:
            _nb201(profile, evaluator, space, runs or [], arch, seeds, strategies, budget_evals, budgets, out_dir,
                   resume, force, unused={"--baselines": baselines, "--epochs": epochs, "--train-limit": train_limit,
                                          "--int8": int8 or None, "--front": front or None,
                                          "--close-seeds": close_seeds, "--retime": retime or None})
        else:
            _train(profile, data, 10 if epochs is None else epochs, baselines, runs or [], front, arch, space, seeds,
                   int8, train_limit, threads, batch_size, lr, device, out_dir, resume, force, close_seeds, close_points,
                   retime)
    except KeyboardInterrupt:
        interrupted(_kept_text(out_dir))


def _kept_text(out_dir: str) -> str:
    from hwnas.compare.run import JOURNAL_FILE
    from hwnas.fileio import read_journal

    path = Path(out_dir) / JOURNAL_FILE
    if not path.is_file():
        return f"the comparison had not started; nothing was written to {out_dir}"
    n = max(0, len(read_journal(path)[0]) - 1)
    return f"{n} finished row(s) are kept in {path}; continue with --resume (the same command with --resume added)"


def _train(profile, data, epochs, baselines, runs, front, arch, space, seeds, int8, train_limit, threads, batch_size,
           lr, device, out_dir, resume, force, close_seeds=None, close_points=1.0, retime=False) -> None:
    from hwnas.compare.run import CompareConfig, compare
    from hwnas.compare.zoo import parse_baselines

    names = parse_baselines(baselines)  # unknown names before anything loads
    archs = []
    if arch is not None:
        from hwnas.space import get_space

        if space is not None:
            sp = get_space(space)
        else:
            from hwnas.compare.contenders import load_profile

            sp = load_profile(profile)[0].get_space()
        archs = read_archs(arch, sp)
    cfg = CompareConfig(profile=profile, data=data, epochs=epochs, baselines=names, runs=runs, front=front, archs=archs,
                        space=space, seeds=seeds, int8=int8, train_limit=train_limit, threads=threads,
                        batch_size=batch_size, lr=lr, device=device, close_seeds=close_seeds, close_points=close_points,
                        retime=retime)
    result = compare(cfg, out=out_dir, resume=resume, force=force, progress=True)
    for note in result.notes:
        err.print(f"warning: {note}", markup=False)
    _print_rows(result.rows, int8, front)
    for v in result.verdicts:
        out.print(v["sentence"], markup=False)
    if result.standing:
        from hwnas.compare.report import standing_summary

        text = standing_summary(result.standing)
        out.print(text[0].upper() + text[1:] + ".", markup=False)
    out.print(f"wrote {Path(out_dir) / 'compare.json'}, compare.md and compare.png"
              + (f" ({result.resumed_rows} row(s) kept from before)" if result.resumed_rows else ""), markup=False)


def _nb201(profile, evaluator, space, runs, arch, seeds, strategies, budget_evals, budgets, out_dir, resume, force,
           unused) -> None:
    from hwnas.compare.nb201 import NB201CompareConfig, compare_nb201
    from hwnas.space import get_space

    given = [k for k, v in unused.items() if v is not None]
    if given:
        raise UserError(f"{', '.join(given)} train networks, which the NAS-Bench-201 comparison does not (its accuracies "
                        f"come from the table); leave {'it' if len(given) == 1 else 'them'} out")
    if space is not None and space != "nb201":
        raise UserError(f"the table comparison runs in the nb201 space, not {space!r}")
    archs = read_archs(arch, get_space("nb201")) if arch is not None else []
    cfg = NB201CompareConfig(profile=profile, evaluator=evaluator or "table:nb201#c10_test",
                             strategies=tuple(s.strip() for s in strategies.split(",") if s.strip()),
                             budget_evals=budget_evals, seeds=seeds, budgets=_floats(budgets, "--budgets"),
                             runs=runs, archs=archs)
    result = compare_nb201(cfg, out=out_dir, resume=resume, force=force, progress=True)
    for note in result.notes:
        err.print(f"note: {note}", markup=False)
    _print_rows(result.rows, False)
    s = result.summary
    ref = s["resnet_cell"]
    out.print(f"ResNet cell: {100 * ref['top1']:.2f}% at {ref['latency_ms']:.4g} ms ({s['device']})", markup=False)
    for strat, m in s["median"].items():
        gain = "-" if m["gain_points"] is None else f"{m['gain_points']:+.2f} points"
        speed = "no cell as accurate" if m["speedup"] is None else f"{m['speedup']:.2f}x"
        out.print(f"{strat}: at equal latency {gain}, at equal accuracy {speed} (median over {m['seeds']})", markup=False)
    opt = s["table_optimum"]
    out.print(f"whole table: at equal latency {opt['equal_latency']['gain_points']:+.2f} points, at equal accuracy "
              f"{opt['equal_accuracy']['speedup']:.2f}x", markup=False)
    out.print(f"wrote {Path(out_dir) / 'compare.json'}, compare.md and compare.png", markup=False)


def _print_rows(rows, int8: bool, front: bool = False) -> None:
    from hwnas.compare.report import kind_cell

    from rich import box
    from rich.table import Table

    t = Table(title="comparison", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    cols = ["network", "kind", "top-1 %", "ms", "M params", "MFLOPs"] + (["INT8 ms"] if int8 else []) + ["seed"]
    width = max([len(r["name"]) + (6 if r.get("found_by_nas") else 0) for r in rows] + [7])
    for c in cols:
        t.add_column(c, justify="left" if c in ("network", "kind") else "right", no_wrap=c in ("network", "kind"),
                     min_width=width if c == "network" else None)
    for r in sorted(rows, key=lambda r: (r.get("latency_ms") or 0.0, r["name"])):
        cells = [r["name"] + (" (NAS)" if r.get("found_by_nas") else ""), kind_cell(r, front),
                 "-" if r.get("top1") is None else f"{100 * r['top1']:.2f}", f"{r['latency_ms']:.4g}",
                 f"{r['params'] / 1e6:.2f}", f"{r['flops'] / 1e6:.1f}"]
        if int8:
            cells.append("-" if r.get("int8_latency_ms") is None else f"{r['int8_latency_ms']:.4g}")
        cells.append("-" if r.get("seed") is None else str(r["seed"]))
        t.add_row(*cells)
    out.print(t)


def register(app: typer.Typer) -> None:
    app.command("compare")(compare_cmd)
