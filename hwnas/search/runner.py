"""``hwnas.search.run``: a whole search with its run folder, as ``hwnas search`` does it.

    from hwnas.search import SearchConfig, run
    res = run(SearchConfig(space="nb201", profile="table:nb201#lat_pixel3", latency_budget_ms=6.0,
                           evaluator="table:nb201#c10_test", strategy="evolution",
                           budget_evals=300, seed=0), out="runs/nb201")
    res.best["accuracy"], res.pareto

The run folder holds ``config.json``, ``journal.jsonl`` (one record per evaluated candidate,
flushed before the next is asked for), ``pareto.json``, ``best.json`` and ``pareto.png``.
Resuming replays the journal through the strategy (whose state is a function of its seed and
what it was told), so a resumed run ends exactly where an uninterrupted one would.
``fidelity="epochs:1,3,9"`` makes it a successive-halving search (``search/fidelity.py``): a
journal record per evaluation at each rung, best and front from the highest rung reached.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from hwnas.errors import UserError
from hwnas.fileio import Journal, atomic_write_bytes, atomic_write_json
from hwnas.search.fidelity import check_resume, drive_halving, top_rung
from hwnas.search.fidelity import report as fidelity_report
from hwnas.search.loop import drive
from hwnas.search.pareto import non_dominated_mask
from hwnas.search.problem import Genome, Problem, Values

from hwnas.search.setup import SearchConfig, SearchSetup, shared_csv_table  # noqa: F401  (re-exported)
from hwnas.search.run_folder import (  # noqa: F401  (the run folder's names, owned there; re-exported)
    BEST_FILE, CONFIG_FILE, FORMAT_VERSION, JOURNAL_FILE, PARETO_FILE, PLOT_FILE, RUN_FILES,
    _differences, _identity, journal_record, json_roundtrip, load_for_resume,
)


@dataclass
class SearchResult:
    records: list[dict]
    pareto: list[dict]
    best: Optional[dict]
    out: Optional[Path]
    stopped_early: Optional[str] = None
    notes: list[str] = field(default_factory=list)
    resumed_from: int = 0
    fidelity: Optional[dict] = None  # a multi-fidelity search's evaluations and epochs per rung (fidelity.report)


@dataclass(frozen=True)
class Progress:
    evaluated: int  # candidates started (at rung 0 in a multi-fidelity search), out of budget
    budget: int
    best: Optional[dict]
    replayed: bool
    rung: Optional[int] = None  # the rung of the evaluation just done (multi-fidelity search)
    evaluations: int = 0  # journal records so far, every rung counted


def _best(records: list[dict]) -> Optional[dict]:
    # every evaluated candidate met the budgets (infeasible ones are never evaluated)
    if not records:
        return None
    return max(records, key=lambda r: (r["accuracy"], -r["latency_ms"], -r["i"]))


def _front(records: list[dict], problem: Problem) -> list[dict]:
    if not records:
        return []
    F = problem.objective_matrix(records)
    keep = non_dominated_mask(F)
    return sorted((r for r, k in zip(records, keep) if k), key=lambda r: (r["latency_ms"], -r["accuracy"]))


def _summary(r: dict) -> dict:
    out = {k: r[k] for k in ("id", "arch", "accuracy", "latency_ms", "params", "flops", "model_bytes", "i")}
    return {**out, **{k: r[k] for k in ("rung", "epochs", "hparams") if k in r}}


def _prepare_out(out: Path, resume: bool, force: bool) -> None:
    if resume:
        if not (out / CONFIG_FILE).is_file():
            raise UserError(f"nothing to resume in {str(out)!r}: it holds no {CONFIG_FILE}; run without --resume")
        return
    if out.exists():
        if not out.is_dir():
            raise UserError(f"--out {str(out)!r} exists and is not a folder; choose another path")
        if any(out.iterdir()) and not force:
            raise UserError(f"run folder {str(out)!r} already exists; pass --resume to continue it or --force to overwrite it")
    else:  # the run folder is the command's own: missing folders above it are created too
        from hwnas.fileio import missing_parents

        missing_parents(out, "run folder")


def run(
    config: SearchConfig | None = None,
    out: str | Path | None = None,
    resume: bool = False,
    force: bool = False,
    progress: Callable[[Progress], None] | None = None,
    **kwargs: Any,
) -> SearchResult:
    """Run (or resume) a search; ``kwargs`` are ``SearchConfig`` fields when ``config`` is None.

    With ``out=None`` nothing is written (notebooks); otherwise see the module docstring.
    """
    if config is None:
        config = SearchConfig(**kwargs)
    elif kwargs:
        config = dataclasses.replace(config, **kwargs)
    from hwnas.search import parallel
    from hwnas.search.oneshot.methods import is_oneshot

    parallel.check_config(config)  # --workers/--in-flight/--ray-address, before anything is built or written
    if is_oneshot(config.strategy):  # gradient methods train a supernet instead of asking and telling
        if config.fidelity is not None or config.eta is not None:
            raise UserError(f"--fidelity and --eta work with the ask/tell strategies; {config.strategy} trains one "
                            f"supernet: drop them or choose another --strategy")
        from hwnas.search.oneshot.run import run_oneshot

        return run_oneshot(config, out=out, resume=resume, force=force, progress=progress)
    out_path = Path(out) if out is not None else None
    if out_path is not None:
        _prepare_out(out_path, resume, force)
    setup = SearchSetup(config)  # every input error surfaces here, before anything is written
    described = {**setup.describe(), **parallel.describe(config)}
    notes: list[str] = []
    replay: list[dict] = []
    if out_path is not None and resume:
        replay, notes = load_for_resume(out_path, described, lambda *a: (check_resume(*a), parallel.check_resume(*a)))
    elif out_path is not None:
        out_path.mkdir(parents=True, exist_ok=True)
        for name in RUN_FILES:
            (out_path / name).unlink(missing_ok=True)
        atomic_write_json(out_path / CONFIG_FILE, described)

    journal = Journal(out_path / JOURNAL_FILE) if out_path is not None else None
    records: list[dict] = []
    n_replay = len(replay)
    best: Optional[dict] = None
    started = 0

    def evaluate(g: Genome, rung: Optional[int] = None) -> Values:
        i = len(records)
        if i < n_replay:
            rec = replay[i]
            arch_id, hp = setup.arch_of(g).id, setup.hparams_of(g)
            if rec.get("id") != arch_id or rec.get("rung") != rung or rec.get("hparams") != hp:
                held, asked = (f" at rung {r}" if r is not None else "" for r in (rec.get("rung"), rung))
                held += f" with hyperparameters {rec.get('hparams')}" if rec.get("hparams") != hp else ""
                asked += f" with {hp}" if rec.get("hparams") != hp else ""
                raise UserError(f"journal record {i} holds arch {rec.get('id')}{held} but the replayed search asks for "
                                f"{arch_id}{asked}; the journal was not written by this configuration: start a new run folder")
        else:  # (one argument without fidelity: tests wrap SearchSetup.evaluate)
            rec = journal_record(i, setup.evaluate(g) if rung is None else setup.evaluate(g, rung))
        return rec

    def on_evaluated(_: int, g: Genome, rec: Values, rung: Optional[int] = None) -> None:
        nonlocal best, started
        rec = dict(rec)
        replayed = len(records) < n_replay
        records.append(rec)
        if not rung:  # a candidate started (rung 0, or no fidelity)
            started += 1
        if journal is not None and not replayed:
            journal.append(rec)  # flushed and fsynced before the next ask (or the next rung's evaluation)
        # the best so far at the highest rung reached so far (every record is rung 0 without fidelity)
        key = (rung or 0, rec["accuracy"], -rec["latency_ms"])
        if best is None or key > (best.get("rung", 0), best["accuracy"], -best["latency_ms"]):
            best = rec
        if progress is not None:
            progress(Progress(started, config.budget_evals, best, replayed, rung, len(records)))

    try:
        if setup.fidelity is None and parallel.is_parallel(config):
            loop = parallel.drive_parallel(setup, config, evaluate, on_evaluated, n_replay, out_path, described, resume)
        elif setup.fidelity is None:
            loop = drive(setup.strategy, evaluate, config.budget_evals, on_evaluated)
        else:
            loop = drive_halving(setup.strategy, evaluate, config.budget_evals, setup.fidelity, on_evaluated)
    finally:
        if journal is not None:
            journal.close()
    if len(records) < n_replay:
        notes.append(f"the journal holds {n_replay} records but this search ends after {len(records)}")
    top = top_rung(records)  # all of them without fidelity
    front, best_rec = _front(top, setup.problem), _best(top)
    result = SearchResult(records, [_summary(r) for r in front], _summary(best_rec) if best_rec else None,
                          out_path, loop.stopped_early, notes, n_replay,
                          fidelity_report(records, setup.fidelity) if setup.fidelity else None)
    if out_path is not None:
        _write_outputs(out_path, result, config, setup.space)
    return result


def space_label(space: Any, settings: dict[str, Any]) -> str:
    """The space as a reader of a plot needs it named: a changed preset is not the preset."""
    shape = "x".join(str(v) for v in tuple(space.input_shape)[-2:])
    if not settings:
        return space.name
    return f"{space.name} changed by --space-settings ({shape} input, config {space.config_hash()[:8]})"


def _write_outputs(out: Path, result: SearchResult, cfg: SearchConfig, space: Any) -> None:
    from hwnas.search.plot import pareto_png

    spent = {"fidelity": result.fidelity} if result.fidelity else {}  # what a multi-fidelity search spent
    atomic_write_json(out / PARETO_FILE, {"objectives": list(cfg.objectives), "front": result.pareto, **spent})
    atomic_write_json(out / BEST_FILE, {**result.best, **spent} if result.best is not None else {})
    shown = top_rung(result.records)
    evals = f"{len(shown)} evals" + (f" at {result.fidelity['top_epochs']} epochs" if result.fidelity else "")
    title = f"{space_label(space, cfg.space_settings)}\n{cfg.strategy} | {evals} | latency from {cfg.profile}"
    atomic_write_bytes(out / PLOT_FILE, pareto_png(shown, result.pareto, cfg.latency_budget_ms, title))


def true_front_hypervolume_ratio(found: np.ndarray, true: np.ndarray, ref: np.ndarray) -> float:
    """Hypervolume of a found front over that of the true front (minimization convention)."""
    from hwnas.search.pareto import hypervolume

    hv_true = hypervolume(true, ref)
    return hypervolume(found, ref) / hv_true if hv_true > 0 else float("nan")
