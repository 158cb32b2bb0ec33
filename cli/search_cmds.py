"""`hwnas search`: run or resume a hardware-aware search into a run folder."""

from __future__ import annotations

from typing import Optional

import typer

from hwnas.cli.common import err, interrupted, out, parse_space_settings


def _parse_objectives(text: str) -> tuple[str, ...]:
    return tuple(s.strip() for s in text.split(",") if s.strip())


TRAIN_EVALUATOR_OPTIONS = ("data", "train_limit", "threads", "device")


def search_cmd(
    space: str = typer.Option(..., "--space", help="search space name (hwnas list spaces)"),
    space_settings: Optional[str] = typer.Option(None, "--space-settings", help="JSON object overriding the space's config (recorded in config.json; must match on --resume)"),
    profile: str = typer.Option(..., "--profile", help="latency table JSON from `hwnas profile`, or table:CSV#COLUMN (e.g. table:nb201#lat_pixel3)"),
    evaluator: Optional[str] = typer.Option(None, "--evaluator", help="accuracy evaluator KIND:ARG, e.g. table:nb201#c10_test (gdas/darts: optional, default the supernet's own val accuracy)"),
    out_dir: str = typer.Option(..., "--out", help="run folder to write (config.json, journal.jsonl, pareto.json, best.json, pareto.png)"),
    strategy: str = typer.Option("evolution", "--strategy", help="random, evolution, nsga2, reinforce, anneal, the Bayesian optimisers gp and tpe, or the gradient methods gdas and darts (hwnas list strategies)"),
    budget_evals: int = typer.Option(100, "--budget-evals", help="number of distinct candidates to evaluate (with --fidelity: started at its first rung)"),
    fidelity: Optional[str] = typer.Option(None, "--fidelity", help="successive halving over training epochs, e.g. epochs:1,3,9: each candidate "
                                           "trains 1 epoch, the best 1/eta of every batch 3, the best 1/eta of those 9 (needs --evaluator train; "
                                           "best.json and pareto.json come from the top rung)"),
    hparams: Optional[str] = typer.Option(None, "--hparams", help="training hyperparameters searched with the arch (train evaluator): "
                                          "a JSON object or file, e.g. '{\"lr\": {\"kind\": \"log\", \"low\": 0.01, \"high\": 0.3}, "
                                          "\"optimizer\": [\"sgd\", \"adamw\"]}' (kinds log, float, int, categorical; docs/search.md)"),
    fixed_arch: Optional[str] = typer.Option(None, "--fixed-arch", help="with --hparams: search only the hyperparameters, for this arch "
                                             "(JSON, an arch file or a run's best.json)"),
    eta: Optional[int] = typer.Option(None, "--eta", help="with --fidelity: the best 1/eta of each rung go up to the next (default 3)"),
    seed: int = typer.Option(0, "--seed", help="random seed (a run is a deterministic function of it)"),
    latency_ms: Optional[float] = typer.Option(None, "--latency-ms", help="latency budget in ms on the profile"),
    params_max: Optional[float] = typer.Option(None, "--params-max", help="parameter budget"),
    flops_max: Optional[float] = typer.Option(None, "--flops-max", help="FLOPs budget (batch 1)"),
    objectives: str = typer.Option("accuracy,latency_ms", "--objectives", help="comma-separated, accuracy first; also params, flops, model_bytes (used by nsga2 and the Pareto front)"),
    population: Optional[int] = typer.Option(None, "--population", help="evolution / nsga2 population size"),
    sample_size: Optional[int] = typer.Option(None, "--sample-size", help="evolution tournament size"),
    reward: Optional[str] = typer.Option(None, "--reward", help="reinforce reward: soft (ACC*(LAT/T)^-0.07) or hard (w=0 within budget, -1 over)"),
    screen: Optional[int] = typer.Option(None, "--screen", help="evolution / reinforce: own proposals per ask that a surrogate chooses among (default 20; 0 = off)"),
    data: Optional[str] = typer.Option(None, "--data", help="gdas/darts and --evaluator train: the dataset the supernet or each candidate trains on (digits, cifar10[:PATH], imagefolder:PATH; default digits)"),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="gdas/darts: training epochs of the supernet and its architecture (default 10)"),
    latency_form: Optional[str] = typer.Option(None, "--latency-form", help="gdas/darts: the latency term of the architecture loss: penalty, "
                                               "loss + lambda * max(0, E\\[latency] / budget - 1); multiplicative (MnasNet's soft form), "
                                               "loss * (E\\[latency] / budget) ** lambda; multiplicative-hard, "
                                               "loss * max(1, E\\[latency] / budget) ** lambda; absolute (TuNAS), "
                                               "loss + lambda * |E\\[latency] / budget - 1|, which holds E\\[latency] at the budget (default penalty)"),
    latency_lambda: Optional[float] = typer.Option(None, "--latency-lambda", help="gdas/darts: lambda of --latency-form (default 1 for "
                                                   "penalty, multiplicative-hard and absolute, 0.07 for multiplicative, MnasNet's soft constraint)"),
    warmup_epochs: Optional[int] = typer.Option(None, "--warmup-epochs", help="gdas/darts: first epochs that train only the network "
                                                "weights, the architecture logits held (default 0)"),
    derive_samples: Optional[int] = typer.Option(None, "--derive-samples", help="gdas/darts: the final arch; 0 takes the "
                                                 "argmax of every decision (repaired into the budget); K draws K distinct archs "
                                                 "within the budget from the learned distribution, adds the argmax, and keeps "
                                                 "the one the trained supernet scores best on val (FBNet's derivation; default 0)"),
    lr: Optional[float] = typer.Option(None, "--lr", help="gdas/darts: SGD learning rate of the network weights (default 0.025; "
                                       "the train evaluator's is searched with --hparams)"),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="gdas/darts: images per step (default 64)"),
    arch_lr: Optional[float] = typer.Option(None, "--arch-lr", help="gdas/darts: Adam learning rate of the architecture logits (default 3e-4)"),
    train_limit: Optional[int] = typer.Option(None, "--train-limit", help="gdas/darts and --evaluator train: use only N training images (gdas/darts: half train the weights, half the architecture)"),
    threads: Optional[int] = typer.Option(None, "--threads", help="gdas/darts and --evaluator train: CPU threads (default all cores)"),
    device: Optional[str] = typer.Option(None, "--device", help="gdas/darts and --evaluator train: auto, cpu, cuda or cuda:N (default auto)"),
    workers: int = typer.Option(1, "--workers", help="evaluate this many candidates at once, each in a Ray worker on its share of "
                                "the cores (needs the distributed extra: pip install 'hwnas\\[distributed]'); the result does not depend on it"),
    in_flight: Optional[int] = typer.Option(None, "--in-flight", help="candidates asked before the first is told (default --workers); "
                                            "the result is a function of the seed and this, so --workers 2 equals --workers 1 --in-flight 2"),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help="run the workers on this running Ray cluster (HOST:6379, "
                                              "ray://HOST:10001 or auto) instead of this machine"),
    resume: bool = typer.Option(False, "--resume", help="continue the run in --out from its journal (gdas/darts: from its epoch checkpoint)"),
    force: bool = typer.Option(False, "--force", help="overwrite an existing run folder"),
    check_profile: bool = typer.Option(True, "--check-profile/--no-check-profile", help="quick check of the profile against "
                                       "this machine first (warns past 5% drift; only where the profile's backend is here)"),
) -> None:
    """Search for the most accurate architectures within the budgets; write the run folder."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from hwnas.errors import UserError
    from hwnas.search import SearchConfig, run

    if resume and force:
        raise UserError("--resume and --force exclude each other: resume continues a run folder, force starts it over")
    if screen is not None and screen < 0:
        raise UserError(f"--screen must be 0 (off) or a positive number of proposals, got {screen}")
    options = {"population": population, "sample_size": sample_size, "reward": reward, "screen": screen,
               "data": data, "epochs": epochs, "latency_form": latency_form, "latency_lambda": latency_lambda, "warmup_epochs": warmup_epochs,
               "derive_samples": derive_samples, "lr": lr, "batch_size": batch_size, "arch_lr": arch_lr,
               "train_limit": train_limit, "threads": threads, "device": device}
    options = {k: v for k, v in options.items() if v is not None}
    evaluator_options: dict = {}
    from hwnas.search.oneshot.methods import OneShotOptions, is_oneshot, list_methods
    from hwnas.search.strategy import make_strategy  # noqa: F401  (registers the strategies)
    from hwnas.search.strategy import STRATEGIES, list_strategies

    if strategy not in list_strategies() and not is_oneshot(strategy):
        raise UserError(f"unknown strategy {strategy!r}; choose one of: {', '.join(list_strategies() + list_methods())}")
    if is_oneshot(strategy) and (hparams is not None or fixed_arch is not None):
        raise UserError(f"--hparams and --fixed-arch work with the ask/tell strategies; {strategy} trains one supernet "
                        f"with one recipe: drop them or choose another --strategy")
    if is_oneshot(strategy) and (workers != 1 or in_flight is not None or ray_address is not None):
        raise UserError(f"--workers, --in-flight and --ray-address evaluate candidates of the ask/tell strategies in parallel; "
                        f"{strategy} trains one supernet: drop them or choose another --strategy")
    if is_oneshot(strategy) and (fidelity is not None or eta is not None):
        raise UserError(f"--fidelity and --eta work with the ask/tell strategies; {strategy} trains one supernet: "
                        f"drop them or choose another --strategy")
    if is_oneshot(strategy):
        import dataclasses

        accepted = {f.name for f in dataclasses.fields(OneShotOptions)}
    else:
        accepted = set(STRATEGIES.get(strategy).defaults)
        if evaluator is None:
            raise UserError(f"strategy {strategy!r} needs --evaluator (e.g. table:nb201#c10_test, supernet:sn.pt, train:8)")
        # what the train evaluator trains on and with (the other evaluators read their data from their files)
        for k in TRAIN_EVALUATOR_OPTIONS:
            if k in options:
                if evaluator.partition(":")[0] != "train":
                    raise UserError(f"--{k.replace('_', '-')} sets what --evaluator train trains on; {evaluator!r} does not "
                                    f"train: drop it")
                evaluator_options[k] = options.pop(k)
    rejected = sorted(k for k in options if k not in accepted)
    if rejected:
        flags = ", ".join("--" + k.replace("_", "-") for k in rejected)
        hint = ("; the train evaluator's recipe is searched with --hparams (e.g. --hparams '{\"lr\": [0.05, 0.1]}')"
                if {"lr", "batch_size"} & set(rejected) else "")
        raise UserError(f"strategy {strategy!r} does not take {flags}{hint}")
    if is_oneshot(strategy):
        return _oneshot(SearchConfig(space=space, profile=profile, evaluator=evaluator or "", strategy=strategy,
                                     seed=seed, latency_budget_ms=latency_ms, params_max=params_max, flops_max=flops_max,
                                     objectives=_parse_objectives(objectives), strategy_options=options,
                                     space_settings=parse_space_settings(space_settings)), out_dir, resume, force, check_profile)
    cfg = SearchConfig(space=space, profile=profile, evaluator=evaluator, strategy=strategy,
                       budget_evals=budget_evals, seed=seed, latency_budget_ms=latency_ms, params_max=params_max,
                       flops_max=flops_max, objectives=_parse_objectives(objectives), strategy_options=options,
                       space_settings=parse_space_settings(space_settings), fidelity=fidelity, eta=eta,
                       hparams=hparams, fixed_arch=fixed_arch, evaluator_options=evaluator_options, workers=workers, in_flight=in_flight, ray_address=ray_address)

    def best_text(best: Optional[dict]) -> str:
        if best is None:
            return "best: -"
        return f"best {100 * best['accuracy']:.2f}% @ {best['latency_ms']:.3g} ms"

    bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[best]}"), TimeElapsedColumn(), console=err, transient=False)
    task = bar.add_task(f"{strategy}", total=budget_evals, best="best: -")
    started = False

    def on_progress(p) -> None:
        nonlocal started
        if not started:  # only once the inputs are validated: errors stay one line
            _warn_about_profile(profile, check_profile)
            bar.start()
            started = True
        rung = f" rung {p.rung}" if p.rung is not None else ""
        bar.update(task, completed=p.evaluated, best=best_text(p.best),
                   description=f"{strategy}{rung} (replay)" if p.replayed else f"{strategy}{rung}")

    try:
        result = run(cfg, out=out_dir, resume=resume, force=force, progress=on_progress)
    except KeyboardInterrupt:
        if started:
            bar.stop()
            started = False
        interrupted(_kept_text(out_dir))
    finally:
        if started:
            bar.stop()
    for note in result.notes:
        err.print(f"warning: {note}", markup=False)
    if result.stopped_early:
        err.print(f"note: stopped after {len(result.records)} evaluations: {result.stopped_early}", markup=False)
    _print_summary(result, cfg)


def _warn_about_profile(profile: str, check_profile: bool) -> None:
    """The quick drift check of a profile table whose backend is on this machine (warnings only)."""
    if not check_profile or profile.startswith("table:"):
        return
    from hwnas.latency.units import profile_warnings

    for line in profile_warnings(profile):
        err.print(f"warning: {line}", markup=False)


def _oneshot(cfg, out_dir: str, resume: bool, force: bool, check_profile: bool) -> None:
    """gdas/darts: a progress bar over the training steps, the same summary as every search."""
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from hwnas.search.oneshot import run_oneshot

    bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                   TimeElapsedColumn(), TimeRemainingColumn(), console=err, transient=False)
    task = None

    def on_progress(p) -> None:
        nonlocal task
        if task is None:  # only once the inputs are validated: errors stay one line
            _warn_about_profile(cfg.profile, check_profile)
            bar.start()
            task = bar.add_task(cfg.strategy, total=p.total_steps, info="")
        info = [f"epoch {min(p.epoch + 1, p.epochs)}/{p.epochs}"]
        if p.expected_ms is not None:
            info.append(escape(f"E[lat] {p.expected_ms:.4g} ms"))
        if p.argmax is not None:
            info.append(f"argmax {p.argmax['id']} {100 * p.argmax['accuracy']:.1f}% @ {p.argmax['latency_ms']:.3g} ms")
        bar.update(task, completed=p.step, info="  ".join(info))

    try:
        result = run_oneshot(cfg, out=out_dir, resume=resume, force=force, progress=on_progress)
    except KeyboardInterrupt:
        if task is not None:
            bar.stop()
            task = None
        interrupted(_kept_checkpoint_text(out_dir))
    finally:
        if task is not None:
            bar.stop()
    for note in result.notes:
        err.print(f"warning: {note}", markup=False)
    final = result.records[-1]
    if final.get("repaired_from"):
        err.print(f"note: the most probable arch {final['repaired_from']} misses the budget; "
                  f"the most probable arch within it is {final['id']}", markup=False)
    _print_summary(result, cfg)


def _kept_checkpoint_text(out_dir: str) -> str:
    from pathlib import Path

    from hwnas.search.oneshot.checkpoint import CHECKPOINT_FILE
    from hwnas.search.runner import CONFIG_FILE

    folder = Path(out_dir)
    if not (folder / CONFIG_FILE).is_file():
        return f"the search had not started; nothing was written to {out_dir}"
    if not (folder / CHECKPOINT_FILE).is_file():
        return "no epoch had finished; run the same command again (with --force) to start over"
    return (f"the training state is kept in {folder / CHECKPOINT_FILE}; continue with --resume "
            f"(the same command with --resume added)")


def _kept_text(out_dir: str) -> str:
    """What an interrupted search left in its run folder, and how to go on."""
    from pathlib import Path

    from hwnas.fileio import read_journal
    from hwnas.search.runner import CONFIG_FILE, JOURNAL_FILE

    folder = Path(out_dir)
    if not (folder / CONFIG_FILE).is_file():
        return f"the search had not started; nothing was written to {out_dir}"
    records = read_journal(folder / JOURNAL_FILE)[0]
    what = "evaluation(s) (every rung's)" if any("rung" in r for r in records) else "evaluated candidate(s)"
    return (f"{len(records)} {what} are kept in {folder / JOURNAL_FILE}; continue with --resume "
            f"(the same command with --resume added)")


def _print_summary(result, cfg) -> None:
    from rich.table import Table

    spent = result.fidelity  # a multi-fidelity search: the front is its top rung's
    at = f" at {spent['top_epochs']} epochs" if spent else ""
    shown = spent["evaluations_per_rung"][spent["top_rung"]] if spent else len(result.records)
    table = Table(title=f"Pareto front ({len(result.pareto)} of {shown} evaluated{at})")
    for col in ("id", "accuracy %", "latency ms", "params", "MFLOPs", ""):
        table.add_column(col, justify="right" if col not in ("id", "") else "left")
    best_id = result.best["id"] if result.best else None
    for r in result.pareto:
        table.add_row(r["id"], f"{100 * r['accuracy']:.2f}", f"{r['latency_ms']:.4g}", f"{r['params']:,}",
                      f"{r['flops'] / 1e6:.1f}", "best" if r["id"] == best_id else "")
    out.print(table)
    if result.best:
        b = result.best
        out.print(f"best within budgets: {b['id']}  accuracy {100 * b['accuracy']:.2f}%  latency {b['latency_ms']:.4g} ms  "
                  f"params {b['params']:,}  -> {result.out}/best.json", markup=False)
        if b.get("hparams"):
            out.print("  trained with " + ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}"
                                                     for k, v in sorted(b["hparams"].items())), markup=False)
    if spent:
        rungs = ", ".join(f"{n} x {e}" for n, e in zip(spent["evaluations_per_rung"], spent["epochs"]))
        out.print(f"fidelity {spent['spec']} eta {spent['eta']}: {spent['candidates']} candidates, evaluations x epochs per rung "
                  f"{rungs}; {spent['total_epochs']} training epochs in all", markup=False)


def register(app: typer.Typer) -> None:
    app.command("search")(search_cmd)
