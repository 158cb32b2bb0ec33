"""A search's configuration and what it builds: ``SearchConfig`` (everything that determines a
result) and ``SearchSetup`` (the space, the latency and cost models, the evaluator, the problem
and the strategy of one configuration, with the genome-level functions the strategy calls).

The genome is the architecture's decisions, then those of the training hyperparameters of a
joint search (``--hparams``, hwnas.accuracy.hparams); with ``--fixed-arch`` only the latter.
Every input error surfaces while a ``SearchSetup`` is built, before a run writes anything.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from hwnas.errors import UserError
from hwnas.search.fidelity import parse_fidelity
from hwnas.search.paths import resolve_evaluator_spec, resolve_profile_spec
from hwnas.search.problem import KNOWN_OBJECTIVES, Genome, Problem
from hwnas.search.run_folder import FORMAT_VERSION
from hwnas.search.strategy import make_strategy
from hwnas.space.ref import SpaceRef


@dataclass
class SearchConfig:
    """Everything that determines a search's result (what ``hwnas search`` takes)."""

    space: str
    profile: str
    evaluator: str
    strategy: str = "evolution"
    budget_evals: int = 100
    seed: int = 0
    latency_budget_ms: Optional[float] = None
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
    # the evaluator's keyword options: what the train evaluator trains on (data, train_limit, threads, device)
    evaluator_options: dict[str, Any] = field(default_factory=dict)
    # parallel evaluation (search/parallel.py): candidates asked ahead of the first told (default
    # workers; it changes the result), evaluations at once in Ray, an existing cluster's address
    # (neither of these two changes the result: a resume may use others)
    workers: int = 1
    in_flight: Optional[int] = None
    ray_address: Optional[str] = None


def _check_config(cfg: SearchConfig) -> None:
    if cfg.budget_evals < 1:
        raise UserError(f"--budget-evals must be at least 1, got {cfg.budget_evals}")
    for name, v in (("--latency-ms", cfg.latency_budget_ms), ("--params-max", cfg.params_max), ("--flops-max", cfg.flops_max)):
        if v is not None and not (math.isfinite(v) and v > 0):
            raise UserError(f"{name} must be a positive number, got {v}")
    objs = tuple(cfg.objectives)
    unknown = [o for o in objs if o not in KNOWN_OBJECTIVES]
    if unknown:
        raise UserError(f"unknown objective(s) {', '.join(unknown)}; choose from: {', '.join(KNOWN_OBJECTIVES)}")
    if not objs or objs[0] != "accuracy" or len(set(objs)) != len(objs):
        raise UserError(f"objectives must start with accuracy and list each objective once, got {','.join(objs)}")


class SearchSetup:
    """The space, models and problem of one configuration (built before anything is written):
    what ``run`` drives, and what each parallel worker builds for itself."""

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
        self.evaluator = get_evaluator(self.evaluator_spec, self.space, **options, **cfg.evaluator_options)
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
            latency_budget_ms=cfg.latency_budget_ms,
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
            if cfg.latency_budget_ms is not None:
                ms = float(self.latency.predict_many([fixed])[0])
                if ms > cfg.latency_budget_ms:
                    raise UserError(f"--fixed-arch {fixed.id} takes {ms:.4g} ms on this profile, over --latency-ms "
                                    f"{cfg.latency_budget_ms:g}; choose another arch or raise the budget")
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
        if cfg.latency_budget_ms is not None:
            ms, arch = self.latency.min_latency()
            if cfg.latency_budget_ms < ms:
                raise UserError(f"--latency-ms {cfg.latency_budget_ms:g} is below the smallest latency the space reaches on this profile, "
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
        if cfg.latency_budget_ms is not None and self.latency_of(g) > cfg.latency_budget_ms:
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
            "space": SpaceRef.of(self.space, cfg.space_settings).run_record(),
            "profile": {**self.latency.describe(), "typed": cfg.profile},
            "evaluator": {**self.evaluator.describe(), "typed": cfg.evaluator},
            "strategy": self.strategy.describe(),
            "budget_evals": cfg.budget_evals,
            "seed": cfg.seed,
            "budgets": {"latency_budget_ms": cfg.latency_budget_ms, "params_max": cfg.params_max, "flops_max": cfg.flops_max},
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
