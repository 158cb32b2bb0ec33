"""``hwnas.search.run``: a whole search with its run folder, as ``hwnas search`` does it.

    from hwnas.search import SearchConfig, run
    res = run(SearchConfig(space="nb201", profile="table:nb201#lat_pixel3", latency_ms=6.0,
                           evaluator="table:nb201#c10_test", strategy="evolution",
                           budget_evals=300, seed=0), out="runs/nb201")
    res.best["accuracy"], res.pareto

The run folder holds ``config.json``, ``journal.jsonl`` (one record per evaluated candidate,
flushed before the next is asked for), ``pareto.json``, ``best.json`` and ``pareto.png``.
Resuming replays the journal through the strategy (whose state is a function of its seed and
what it was told), so a resumed run ends exactly where an uninterrupted one would.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from hwnas.errors import UserError
from hwnas.fileio import Journal, atomic_write_bytes, atomic_write_json, atomic_write_text, read_journal
from hwnas.search.loop import drive
from hwnas.search.pareto import non_dominated_mask
from hwnas.search.paths import resolve_evaluator_spec, resolve_profile_spec
from hwnas.search.problem import KNOWN_OBJECTIVES, Genome, Problem, Values
from hwnas.search.strategy import make_strategy

from hwnas.search.run_folder import (  # noqa: F401  (the run folder's names, owned there; re-exported)
    BEST_FILE, CONFIG_FILE, FORMAT_VERSION, JOURNAL_FILE, PARETO_FILE, PLOT_FILE, RUN_FILES,
)


@dataclass
class SearchConfig:
    """Everything that determines a search's result (what ``hwnas search`` takes)."""

    space: str
    profile: str
    evaluator: str
    strategy: str = "evolution"
    budget_evals: int = 100
    seed: int = 0
    latency_ms: Optional[float] = None
    params_max: Optional[float] = None
    flops_max: Optional[float] = None
    objectives: tuple[str, ...] = ("accuracy", "latency_ms")
    strategy_options: dict[str, Any] = field(default_factory=dict)
    space_settings: dict[str, Any] = field(default_factory=dict)


@dataclass
class SearchResult:
    records: list[dict]
    pareto: list[dict]
    best: Optional[dict]
    out: Optional[Path]
    stopped_early: Optional[str] = None
    notes: list[str] = field(default_factory=list)
    resumed_from: int = 0


@dataclass(frozen=True)
class Progress:
    evaluated: int
    budget: int
    best: Optional[dict]
    replayed: bool


def _check_config(cfg: SearchConfig) -> None:
    if cfg.budget_evals < 1:
        raise UserError(f"--budget-evals must be at least 1, got {cfg.budget_evals}")
    for name, v in (("--latency-ms", cfg.latency_ms), ("--params-max", cfg.params_max), ("--flops-max", cfg.flops_max)):
        if v is not None and not (math.isfinite(v) and v > 0):
            raise UserError(f"{name} must be a positive number, got {v}")
    objs = tuple(cfg.objectives)
    unknown = [o for o in objs if o not in KNOWN_OBJECTIVES]
    if unknown:
        raise UserError(f"unknown objective(s) {', '.join(unknown)}; choose from: {', '.join(KNOWN_OBJECTIVES)}")
    if not objs or objs[0] != "accuracy" or len(set(objs)) != len(objs):
        raise UserError(f"objectives must start with accuracy and list each objective once, got {','.join(objs)}")


class _Setup:
    """The space, models and problem of one configuration (built before anything is written)."""

    def __init__(self, cfg: SearchConfig) -> None:
        from hwnas.accuracy import get_evaluator
        from hwnas.latency.sources import get_latency_model
        from hwnas.search.objectives import CostModel
        from hwnas.space import get_space

        _check_config(cfg)
        self.cfg = cfg
        # paths as absolute as they are when the run is written: the run folder is read from elsewhere
        self.profile_spec = resolve_profile_spec(cfg.profile)
        self.evaluator_spec = resolve_evaluator_spec(cfg.evaluator)
        self.space = get_space(cfg.space, **cfg.space_settings)
        shared_table = shared_csv_table(cfg)
        self.latency = get_latency_model(self.profile_spec, self.space, table=shared_table)
        self.costs = CostModel(self.space)
        self._check_budgets()  # before the evaluator, which may load a dataset or a supernet for minutes
        options = {"table": shared_table} if shared_table is not None and cfg.evaluator.startswith("table:") else {}
        self.evaluator = get_evaluator(self.evaluator_spec, self.space, **options)
        self._lat: dict[Genome, float] = {}
        self._canon: dict[Genome, Genome] = {}
        self.problem = Problem(
            cards=tuple(len(d.choices) for d in self.space.decisions()),
            objectives=tuple(KNOWN_OBJECTIVES[o] for o in cfg.objectives),
            feasible=self.feasible,
            canonical=self.canonical,
            latency_budget=cfg.latency_ms,
            features=self.space.genome_features,
        )
        self.strategy = make_strategy(cfg.strategy, self.problem, cfg.seed, cfg.budget_evals, **cfg.strategy_options)

    def _check_budgets(self) -> None:
        cfg = self.cfg
        if cfg.latency_ms is not None:
            ms, arch = self.latency.min_latency()
            if cfg.latency_ms < ms:
                raise UserError(f"--latency-ms {cfg.latency_ms:g} is below the smallest latency the space reaches on this profile, "
                                f"{ms:.4g} ms (arch {arch.id}); raise the budget")
        for name, limit, fld in (("--params-max", cfg.params_max, "params"), ("--flops-max", cfg.flops_max, "flops")):
            if limit is not None:
                v, arch = self.costs.minimum(fld)
                if limit < v:
                    raise UserError(f"{name} {limit:g} is below the smallest {fld} the space reaches, {v:.6g} (arch {arch.id}); raise the budget")

    # ---- genome-level functions the strategy calls ------------------------------------
    def canonical(self, g: Genome) -> Genome:
        hit = self._canon.get(g)
        if hit is None:
            hit = self._canon[g] = tuple(self.space.encode(self.space.decode(g)))
        return hit

    def latency_of(self, g: Genome) -> float:
        hit = self._lat.get(g)
        if hit is None:
            hit = self._lat[g] = float(self.latency.predict_many([self.space.decode(g)])[0])
        return hit

    def feasible(self, g: Genome) -> bool:
        cfg = self.cfg
        if cfg.latency_ms is not None and self.latency_of(g) > cfg.latency_ms:
            return False
        if cfg.params_max is not None or cfg.flops_max is not None:
            cost = self.costs(self.space.decode(g))
            if cfg.params_max is not None and cost.params > cfg.params_max:
                return False
            if cfg.flops_max is not None and cost.flops > cfg.flops_max:
                return False
        return True

    def evaluate(self, g: Genome) -> dict[str, Any]:
        arch = self.space.decode(g)
        acc = float(self.evaluator.evaluate([arch])[0])
        cost = self.costs(arch)
        return {
            "id": arch.id, "arch": arch.to_dict(), "genome": list(g), "accuracy": acc,
            "latency_ms": self.latency_of(g), "params": cost.params, "flops": cost.flops,
            "model_bytes": cost.model_bytes,
        }

    def describe(self) -> dict[str, Any]:
        cfg = self.cfg
        return {
            "format": FORMAT_VERSION,
            "space": {"name": self.space.name, "config_hash": self.space.config_hash(), "settings": cfg.space_settings},
            "profile": {**self.latency.describe(), "typed": cfg.profile},
            "evaluator": {**self.evaluator.describe(), "typed": cfg.evaluator},
            "strategy": self.strategy.describe(),
            "budget_evals": cfg.budget_evals,
            "seed": cfg.seed,
            "budgets": {"latency_ms": cfg.latency_ms, "params_max": cfg.params_max, "flops_max": cfg.flops_max},
            "objectives": list(cfg.objectives),
        }


def _identity(d: Any) -> Any:
    """What must match on resume: a file's hash stands for it, whatever path reached it, and
    the path as typed does not count (it depends on where the command was typed)."""
    if isinstance(d, dict):
        hashed = any("sha256" in k for k in d)
        return {k: _identity(v) for k, v in d.items() if k != "typed" and not (k == "spec" and hashed)}
    return d


def _as_written_now(stored: dict) -> dict:
    """Older run folders recorded specs as typed (relative to where the search ran, which is
    where a resume runs): resolve them as a new run would."""
    out = dict(stored)
    for key, resolve in (("profile", resolve_profile_spec), ("evaluator", resolve_evaluator_spec)):
        d = out.get(key)
        if isinstance(d, dict) and "typed" not in d and isinstance(d.get("spec"), str):
            out[key] = {**d, "spec": resolve(d["spec"])}
    return out


def _differences(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            out += _differences(a.get(k), b.get(k), f"{prefix}{k}.")
        return out
    return [] if a == b else [f"{prefix.rstrip('.')} was {a!r}, now {b!r}"]


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
    return {k: r[k] for k in ("id", "arch", "accuracy", "latency_ms", "params", "flops", "model_bytes", "i")}


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


def shared_csv_table(cfg: SearchConfig, space: Any = None) -> Any:
    """The parsed CSV when the profile and the evaluator read the same one (``table:`` both), so
    that they share one copy; else None."""
    if not (cfg.profile.startswith("table:") and (cfg.evaluator or "").startswith("table:")):
        return None
    from hwnas.data.benchmark_csv import shared_csv_table as shared

    if space is None:
        from hwnas.space import get_space

        space = get_space(cfg.space, **cfg.space_settings)
    return shared(cfg.profile, cfg.evaluator or "", space)


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
    from hwnas.search.oneshot.methods import is_oneshot

    if is_oneshot(config.strategy):  # gradient methods train a supernet instead of asking and telling
        from hwnas.search.oneshot.run import run_oneshot

        return run_oneshot(config, out=out, resume=resume, force=force, progress=progress)
    out_path = Path(out) if out is not None else None
    if out_path is not None:
        _prepare_out(out_path, resume, force)
    setup = _Setup(config)  # every input error surfaces here, before anything is written
    described = setup.describe()
    notes: list[str] = []
    replay: list[dict] = []
    if out_path is not None and resume:
        replay, notes = _load_for_resume(out_path, described)
    elif out_path is not None:
        out_path.mkdir(parents=True, exist_ok=True)
        for name in RUN_FILES:
            (out_path / name).unlink(missing_ok=True)
        atomic_write_json(out_path / CONFIG_FILE, described)

    journal = Journal(out_path / JOURNAL_FILE) if out_path is not None else None
    records: list[dict] = []
    n_replay = len(replay)
    best: Optional[dict] = None

    def evaluate(g: Genome) -> Values:
        i = len(records)
        if i < n_replay:
            rec = replay[i]
            arch_id = setup.space.decode(g).id
            if rec.get("id") != arch_id:
                raise UserError(f"journal record {i} holds arch {rec.get('id')} but the replayed search asks for {arch_id}; "
                                f"the journal was not written by this configuration: start a new run folder")
        else:
            rec = {"i": i, **setup.evaluate(g)}
        return rec

    def on_evaluated(i: int, g: Genome, rec: Values) -> None:
        nonlocal best
        rec = dict(rec)
        records.append(rec)
        if journal is not None and i >= n_replay:
            journal.append(rec)  # flushed and fsynced before the next ask
        if best is None or (rec["accuracy"], -rec["latency_ms"]) > (best["accuracy"], -best["latency_ms"]):
            best = rec
        if progress is not None:
            progress(Progress(len(records), config.budget_evals, best, i < n_replay))

    try:
        loop = drive(setup.strategy, evaluate, config.budget_evals, on_evaluated)
    finally:
        if journal is not None:
            journal.close()
    if len(records) < n_replay:
        notes.append(f"the journal holds {n_replay} records but this search ends after {len(records)}")
    front = _front(records, setup.problem)
    best_rec = _best(records)
    result = SearchResult(records, [_summary(r) for r in front], _summary(best_rec) if best_rec else None,
                          out_path, loop.stopped_early, notes, n_replay)
    if out_path is not None:
        _write_outputs(out_path, result, config, setup.space)
    return result


def _load_for_resume(out: Path, described: dict) -> tuple[list[dict], list[str]]:
    from hwnas.fileio import read_json

    stored = read_json(out / CONFIG_FILE, "run config")
    if isinstance(stored, dict):
        stored = _as_written_now(stored)
    diffs = _differences(_identity(stored), _identity(json_roundtrip(described)))
    if diffs:
        raise UserError(f"cannot resume {str(out)!r}: its journal comes from a different configuration ({'; '.join(diffs[:4])}); "
                        f"rerun with the same options or use a new --out")
    records, dropped = read_journal(out / JOURNAL_FILE)
    notes = []
    if dropped:
        # keep only the valid prefix on disk too, so new records follow a clean line
        import json

        atomic_write_text(out / JOURNAL_FILE, "".join(json.dumps(r, sort_keys=True) + "\n" for r in records))
        notes.append(f"journal {str(out / JOURNAL_FILE)!r} ended in {dropped} unreadable line(s) (an interrupted write); "
                     f"recovered the {len(records)} valid record(s) before it")
    for k, r in enumerate(records):
        if r.get("i") != k or "id" not in r or "accuracy" not in r:
            raise UserError(f"journal {str(out / JOURNAL_FILE)!r} record {k} is not a search record; start a new run folder")
    return records, notes


def json_roundtrip(obj: Any) -> Any:
    import json

    return json.loads(json.dumps(obj))


def space_label(space: Any, settings: dict[str, Any]) -> str:
    """The space as a reader of a plot needs it named: a changed preset is not the preset."""
    shape = "x".join(str(v) for v in tuple(space.input_shape)[-2:])
    if not settings:
        return space.name
    return f"{space.name} changed by --space-settings ({shape} input, config {space.config_hash()[:8]})"


def _write_outputs(out: Path, result: SearchResult, cfg: SearchConfig, space: Any) -> None:
    from hwnas.search.plot import pareto_png

    atomic_write_json(out / PARETO_FILE, {"objectives": list(cfg.objectives), "front": result.pareto})
    atomic_write_json(out / BEST_FILE, result.best if result.best is not None else {})
    title = (f"{space_label(space, cfg.space_settings)}\n{cfg.strategy} | {len(result.records)} evals | "
             f"latency from {cfg.profile}")
    atomic_write_bytes(out / PLOT_FILE, pareto_png(result.records, result.pareto, cfg.latency_ms, title))


def true_front_hypervolume_ratio(found: np.ndarray, true: np.ndarray, ref: np.ndarray) -> float:
    """Hypervolume of a found front over that of the true front (minimization convention)."""
    from hwnas.search.pareto import hypervolume

    hv_true = hypervolume(true, ref)
    return hypervolume(found, ref) / hv_true if hv_true > 0 else float("nan")
