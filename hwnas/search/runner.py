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
``fidelity="epochs:1,3,9"`` makes it a successive-halving search (``search/fidelity.py``): a
journal record per evaluation at each rung, best and front from the highest rung reached.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from hwnas.errors import UserError
from hwnas.fileio import Journal, atomic_write_bytes, atomic_write_json
from hwnas.search.fidelity import check_resume, drive_halving, parse_fidelity, top_rung
from hwnas.search.fidelity import report as fidelity_report
from hwnas.search.loop import drive
from hwnas.search.pareto import non_dominated_mask
from hwnas.search.paths import resolve_evaluator_spec, resolve_profile_spec
from hwnas.search.problem import KNOWN_OBJECTIVES, Genome, Problem, Values
from hwnas.search.strategy import make_strategy

from hwnas.search.run_folder import (  # noqa: F401  (the run folder's names, owned there; re-exported)
    BEST_FILE, CONFIG_FILE, FORMAT_VERSION, JOURNAL_FILE, PARETO_FILE, PLOT_FILE, RUN_FILES,
    _differences, _identity, json_roundtrip, load_for_resume,
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
    fidelity: Optional[str] = None  # "epochs:1,3,9": successive halving over training epochs (search/fidelity.py)
    eta: Optional[int] = None  # the best 1/eta of a rung go up to the next (default 3; only with fidelity)
    # training hyperparameters searched with the arch (hwnas.accuracy.hparams: a JSON object, text or file)
    hparams: Optional[Any] = None
    fixed_arch: Optional[Any] = None  # an arch (dict or JSON): search only the hyperparameters, for it


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
        self.fidelity = parse_fidelity(cfg.fidelity, cfg.eta, cfg.evaluator)
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
        self.hparams, self.fixed_arch = self._joint()  # before the evaluator: its errors are cheap to find
        self.evaluator = get_evaluator(self.evaluator_spec, self.space, **options)
        if self.hparams is not None and not getattr(self.evaluator, "accepts_hparams", False):
            raise UserError(f"--hparams needs an evaluator that trains each candidate (train:E); {cfg.evaluator!r} does not "
                            f"train with a candidate's hyperparameters")
        self._lat: dict[Genome, float] = {}
        self._canon: dict[Genome, Genome] = {}
        # the genome: the arch's decisions (none with a fixed arch), then the hyperparameters'
        arch_cards = () if self.fixed_arch is not None else tuple(len(d.choices) for d in self.space.decisions())
        self.n_arch = len(arch_cards)
        self.problem = Problem(
            cards=arch_cards + (self.hparams.cards if self.hparams is not None else ()),
            objectives=tuple(KNOWN_OBJECTIVES[o] for o in cfg.objectives),
            feasible=self.feasible,
            canonical=self.canonical,
            latency_budget=cfg.latency_ms,
            features=self.space.genome_features if self.hparams is None else self._joint_features,
        )
        self.strategy = make_strategy(cfg.strategy, self.problem, cfg.seed, cfg.budget_evals, **cfg.strategy_options)

    def _joint(self) -> tuple[Any, Any]:
        """The hyperparameter space and the fixed arch of a joint (or hyperparameter-only) search."""
        cfg = self.cfg
        if cfg.hparams is None:
            if cfg.fixed_arch is not None:
                raise UserError("--fixed-arch leaves only hyperparameters to search: pass --hparams too")
            return None, None
        from hwnas.accuracy.hparams import parse_hparams

        hp = parse_hparams(cfg.hparams)
        if "epochs" in hp.names and self.fidelity is not None:
            raise UserError("--fidelity sets the training epochs of each rung: leave epochs out of --hparams, or drop --fidelity")
        if not cfg.evaluator.startswith("train"):
            raise UserError(f"--hparams needs an evaluator that trains each candidate (train:E); {cfg.evaluator!r} does not train")
        fixed = None
        if cfg.fixed_arch is not None:
            fixed = _read_fixed_arch(self.space, cfg.fixed_arch)
            if cfg.latency_ms is not None:
                ms = float(self.latency.predict_many([fixed])[0])
                if ms > cfg.latency_ms:
                    raise UserError(f"--fixed-arch {fixed.id} takes {ms:.4g} ms on this profile, over --latency-ms "
                                    f"{cfg.latency_ms:g}; choose another arch or raise the budget")
        return hp, fixed

    def arch_of(self, g: Genome) -> Any:
        return self.fixed_arch if self.fixed_arch is not None else self.space.decode(g[:self.n_arch])

    def hparams_of(self, g: Genome) -> Optional[dict[str, Any]]:
        return None if self.hparams is None else self.hparams.values(g[self.n_arch:])

    def _joint_features(self, G: Any) -> Any:
        G = np.asarray(G, dtype=np.int64).reshape(-1, len(self.problem.cards))
        hp = self.hparams.features(G[:, self.n_arch:])
        if self.n_arch == 0:
            return hp
        return np.hstack([np.asarray(self.space.genome_features(G[:, :self.n_arch]), dtype=np.float64), hp])

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
            arch = () if self.n_arch == 0 else tuple(self.space.encode(self.space.decode(g[:self.n_arch])))
            hit = self._canon[g] = arch + tuple(g[self.n_arch:])
        return hit

    def latency_of(self, g: Genome) -> float:
        key = g[:self.n_arch]  # hyperparameters do not change the network
        hit = self._lat.get(key)
        if hit is None:
            hit = self._lat[key] = float(self.latency.predict_many([self.arch_of(g)])[0])
        return hit

    def feasible(self, g: Genome) -> bool:
        cfg = self.cfg
        if cfg.latency_ms is not None and self.latency_of(g) > cfg.latency_ms:
            return False
        if cfg.params_max is not None or cfg.flops_max is not None:
            cost = self.costs(self.arch_of(g))
            if cfg.params_max is not None and cost.params > cfg.params_max:
                return False
            if cfg.flops_max is not None and cost.flops > cfg.flops_max:
                return False
        return True

    def evaluate(self, g: Genome, rung: Optional[int] = None) -> dict[str, Any]:
        arch = self.arch_of(g)
        hp = self.hparams_of(g)
        at = {} if rung is None else {"rung": rung, "epochs": self.fidelity.epochs[rung]}
        kw: dict[str, Any] = {"hparams": hp} if hp is not None else {}
        if at:  # a rung of a multi-fidelity search: its epochs replace the train evaluator's
            kw["epochs"] = at["epochs"]
        acc = float(self.evaluator.evaluate([arch], **kw)[0])
        cost = self.costs(arch)
        return {
            "id": arch.id, "arch": arch.to_dict(), "genome": list(g), "accuracy": acc,
            "latency_ms": self.latency_of(g), "params": cost.params, "flops": cost.flops,
            "model_bytes": cost.model_bytes, **at, **({"hparams": hp} if hp is not None else {}),
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
            **({"fidelity": self.fidelity.describe()} if self.fidelity else {}),
            **({"hparams": self.hparams.describe()} if self.hparams is not None else {}),
            **({"fixed_arch": self.fixed_arch.to_dict()} if self.fixed_arch is not None else {}),
        }


def _read_fixed_arch(space: Any, given: Any) -> Any:
    """An arch from a dict, JSON text, or a file holding one (an ``hwnas sample`` line, best.json)."""
    if isinstance(given, (str, Path)) and not str(given).lstrip().startswith("{"):
        path = Path(given)
        if not path.is_file():
            raise UserError(f"--fixed-arch {str(given)!r} is neither an arch as JSON nor a file; pass the arch's JSON "
                            f"or a file holding it (an `hwnas sample` line, or a run's best.json)")
        text = path.read_text(encoding="utf-8").strip()
        try:  # one JSON document (best.json), else the file's first line (an arch file)
            given = json.loads(text)
        except json.JSONDecodeError:
            given = text.splitlines()[0] if text else ""
    try:
        return space.parse(given)
    except UserError as e:
        raise UserError(f"--fixed-arch: {e}") from None


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
        if config.fidelity is not None or config.eta is not None:
            raise UserError(f"--fidelity and --eta work with the ask/tell strategies; {config.strategy} trains one "
                            f"supernet: drop them or choose another --strategy")
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
        replay, notes = load_for_resume(out_path, described, check_resume)
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
            arch_id = setup.arch_of(g).id
            if rec.get("id") != arch_id or rec.get("rung") != rung or rec.get("hparams") != setup.hparams_of(g):
                held, asked = (f" at rung {r}" if r is not None else "" for r in (rec.get("rung"), rung))
                raise UserError(f"journal record {i} holds arch {rec.get('id')}{held} but the replayed search asks for "
                                f"{arch_id}{asked}; the journal was not written by this configuration: start a new run folder")
        else:  # (one argument without fidelity: tests wrap _Setup.evaluate)
            rec = {"i": i, **(setup.evaluate(g) if rung is None else setup.evaluate(g, rung))}
            # as the journal gives it back (keys sorted), so that a resumed run writes the same files
            rec = json.loads(json.dumps(rec, sort_keys=True))
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
        if setup.fidelity is None:
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
    atomic_write_bytes(out / PLOT_FILE, pareto_png(shown, result.pareto, cfg.latency_ms, title))


def true_front_hypervolume_ratio(found: np.ndarray, true: np.ndarray, ref: np.ndarray) -> float:
    """Hypervolume of a found front over that of the true front (minimization convention)."""
    from hwnas.search.pareto import hypervolume

    hv_true = hypervolume(true, ref)
    return hypervolume(found, ref) / hv_true if hv_true > 0 else float("nan")
