"""The hand-designed ResNet cell against what a search finds, on NAS-Bench-201 (no training:
accuracies and device latencies come from the benchmark's table).

The cell space holds the ResNet cell (two 3x3 convolutions in series beside a skip). On one
device column ``lat_X`` this places it beside the cells the library's strategies find, run
through ``hwnas.search.run`` exactly as ``hwnas search`` runs them, at the ResNet cell's own
latency and at lower budgets (fractions of it). For each strategy and seed, the candidates are
the Pareto fronts of its searches (every budget): the most accurate of them within a budget is
what the search found there.

- equal latency: the most accurate candidate within the ResNet cell's latency, its gain in
  points of accuracy over the ResNet cell;
- equal accuracy: the fastest candidate at least as accurate as the ResNet cell, the ResNet
  cell's latency over its latency (the speed-up);
- beside them, the same two numbers for the whole table (the best any search could reach).

``runs`` (search run folders) or ``archs`` replace the searches: their cells are the candidates.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from hwnas.errors import UserError
from hwnas.fileio import Journal

RESNET_CELL = "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|"
DEFAULT_BUDGETS = (1.0, 0.75, 0.5)


@dataclass
class NB201CompareConfig:
    profile: str  # table:CSV#lat_X (a device column)
    evaluator: str = "table:nb201#c10_test"
    space: str = "nb201"
    strategies: Sequence[str] = ("evolution",)
    budget_evals: int = 100
    seeds: int = 1
    budgets: Sequence[float] = DEFAULT_BUDGETS  # fractions of the ResNet cell's latency
    runs: Sequence[str] = ()
    archs: Sequence[Any] = ()
    baseline_cell: str = RESNET_CELL

    def check(self) -> None:
        if not str(self.profile).startswith("table:"):
            raise UserError(f"the NAS-Bench-201 comparison reads latencies from a table column: pass --profile "
                            f"table:nb201#lat_DEVICE, not {self.profile!r}")
        if not str(self.evaluator).startswith("table:"):
            raise UserError(f"the NAS-Bench-201 comparison reads accuracies from the table: pass --evaluator "
                            f"table:nb201#c10_test, not {self.evaluator!r}")
        if self.seeds < 1:
            raise UserError(f"--seeds must be at least 1, got {self.seeds}")
        if self.budget_evals < 1:
            raise UserError(f"--budget-evals must be at least 1, got {self.budget_evals}")
        bad = [b for b in self.budgets if not (math.isfinite(b) and 0 < b <= 1)]
        if not self.budgets or bad:
            raise UserError(f"--budgets are fractions of the ResNet cell's latency in (0, 1], got {list(self.budgets)}")
        if not (self.runs or self.archs or self.strategies):
            raise UserError("nothing to compare: pass --strategies, --run DIR or --arch FILE")


@dataclass
class NB201CompareResult:
    rows: list[dict]
    summary: dict[str, Any]
    out: Path | None
    notes: list[str] = field(default_factory=list)


class _Lookup:
    """Accuracy (fraction) and latency (ms) of cells from the table, params and FLOPs from the space."""

    def __init__(self, cfg: NB201CompareConfig) -> None:
        from hwnas.accuracy import get_evaluator
        from hwnas.data.benchmark_csv import load_csv_table, resolve_csv, split_spec
        from hwnas.latency.sources import get_latency_model
        from hwnas.search.objectives import CostModel
        from hwnas.space import get_space

        self.space = get_space(cfg.space)
        p_csv, _ = split_spec(cfg.profile[6:], "latency profile table:")
        e_csv, _ = split_spec(cfg.evaluator[6:], "table evaluator")
        shared = load_csv_table(resolve_csv(p_csv), self.space)
        acc_table = shared if resolve_csv(e_csv).resolve() == resolve_csv(p_csv).resolve() else None
        self.latency = get_latency_model(cfg.profile, self.space, table=shared)
        self.evaluator = get_evaluator(cfg.evaluator, self.space, **({"table": acc_table} if acc_table else {}))
        self.costs = CostModel(self.space)

    def record(self, arch) -> dict[str, Any]:
        arch = self.space.parse(arch)
        cost = self.costs(arch)
        return {"arch": arch.to_dict(), "arch_id": arch.id, "arch_str": _cell_text(self.space, arch),
                "latency_ms": float(self.latency.predict_many([arch])[0]),
                "top1": float(self.evaluator.evaluate([arch])[0]), "params": cost.params, "flops": cost.flops,
                "model_bytes": cost.model_bytes}


def _cell_text(space, arch) -> str:
    d = arch.to_dict()
    return str(d.get("cell") or d.get("arch_str") or arch.to_json())


def equal_latency(candidates: Sequence[dict], ref: dict) -> dict[str, Any] | None:
    """The most accurate candidate within the reference's latency, and its gain (points)."""
    within = [c for c in candidates if c["latency_ms"] <= ref["latency_ms"]]
    if not within:
        return None
    best = max(within, key=lambda c: (c["top1"], -c["latency_ms"]))
    return {"arch_id": best["arch_id"], "top1": best["top1"], "latency_ms": best["latency_ms"],
            "gain_points": 100 * (best["top1"] - ref["top1"])}


def equal_accuracy(candidates: Sequence[dict], ref: dict) -> dict[str, Any] | None:
    """The fastest candidate at least as accurate as the reference, and the speed-up over it."""
    good = [c for c in candidates if c["top1"] >= ref["top1"]]
    if not good:
        return None
    best = min(good, key=lambda c: (c["latency_ms"], -c["top1"]))
    return {"arch_id": best["arch_id"], "top1": best["top1"], "latency_ms": best["latency_ms"],
            "speedup": ref["latency_ms"] / best["latency_ms"] if best["latency_ms"] > 0 else math.inf}


def best_within(candidates: Sequence[dict], latency_budget_ms: float) -> dict | None:
    within = [c for c in candidates if c["latency_ms"] <= latency_budget_ms]
    return max(within, key=lambda c: (c["top1"], -c["latency_ms"])) if within else None


def optimum(acc: np.ndarray, lat: np.ndarray, ids: Sequence[str], ref: dict) -> dict[str, Any]:
    """The two figures over every cell of a table (accuracy fractions, latencies in ms): what a
    perfect search would report."""
    out: dict[str, Any] = {}
    within = np.flatnonzero(lat <= ref["latency_ms"])
    i = int(within[np.argmax(acc[within])])
    out["equal_latency"] = {"arch_id": ids[i], "top1": float(acc[i]), "latency_ms": float(lat[i]),
                            "gain_points": 100 * (float(acc[i]) - ref["top1"])}
    good = np.flatnonzero(acc >= ref["top1"])
    j = int(good[np.argmin(lat[good])])
    out["equal_accuracy"] = {"arch_id": ids[j], "top1": float(acc[j]), "latency_ms": float(lat[j]),
                             "speedup": ref["latency_ms"] / float(lat[j])}
    return out


def table_optimum(look: _Lookup, ref: dict) -> dict[str, Any]:
    archs = look.latency.table.archs
    acc = look.evaluator.accuracy[look.evaluator.table.rows(archs)]  # the accuracy table may order rows otherwise
    return optimum(acc, look.latency.values, [a.id for a in archs], ref)


def _median(vals: list[float]) -> float | None:
    vals = [v for v in vals if v is not None]
    return float(statistics.median(vals)) if vals else None


def compare_nb201(config: NB201CompareConfig | None = None, out: str | Path | None = None, resume: bool = False,
                  force: bool = False, progress: bool = False, **kwargs: Any) -> NB201CompareResult:
    """Place the ResNet cell beside the found cells on one device column; write the folder."""
    import dataclasses

    from hwnas.accuracy.progress import progress_bar
    from hwnas.compare.run import JOURNAL_FILE, _open_journal, _prepare_out

    cfg = config if config is not None else NB201CompareConfig(**kwargs)
    if config is not None and kwargs:
        cfg = dataclasses.replace(config, **kwargs)
    cfg.check()
    out_path = Path(out) if out is not None else None
    if out_path is not None:
        _prepare_out(out_path, resume, force)
    look = _Lookup(cfg)
    ref = {"name": "resnet_cell", "kind": "baseline", **look.record(cfg.baseline_cell),
           "description": "the hand-designed ResNet cell (two 3x3 convolutions in series beside a skip)"}
    budgets = sorted({float(f) for f in cfg.budgets}, reverse=True)
    min_ms, min_arch = look.latency.min_latency()
    notes = []
    usable = [f for f in budgets if f * ref["latency_ms"] >= min_ms]
    for f in budgets:
        if f not in usable:
            notes.append(f"budget {f:g} x the ResNet cell's latency ({f * ref['latency_ms']:.4g} ms) is below the "
                         f"fastest cell of the table ({min_ms:.4g} ms, {min_arch.id}); left out")
    if not usable:
        raise UserError(f"every budget is below the fastest cell of the table ({min_ms:.4g} ms); raise --budgets")

    # the candidates of each group (a strategy and seed, or the given runs / archs)
    groups: dict[str, list[dict]] = {}
    if cfg.runs or cfg.archs:
        given = [look.record(a) for a in cfg.archs]
        for folder in cfg.runs:
            given += [look.record(r["arch"]) for r in _run_candidates(folder, look)]
        groups["given"] = given
        jobs: list[tuple[str, int, float]] = []
    else:
        from hwnas.search.strategy import list_strategies, make_strategy  # noqa: F401  (registers the strategies)

        unknown = [s for s in cfg.strategies if s not in list_strategies()]
        if unknown:
            raise UserError(f"unknown strategy {', '.join(unknown)}; choose from: {', '.join(list_strategies())}")
        jobs = [(s, seed, f) for s in cfg.strategies for seed in range(cfg.seeds) for f in usable]
    header = {"format": 1, "mode": "nb201", "profile": cfg.profile, "evaluator": cfg.evaluator,
              "table_sha256": look.latency.table.sha256, "baseline_cell": cfg.baseline_cell,
              "budget_evals": cfg.budget_evals, "budgets": usable}
    done: dict[str, dict] = {}
    if out_path is not None:
        done, more = _open_journal(out_path, header, resume)
        notes += more
    journal = Journal(out_path / JOURNAL_FILE) if out_path is not None else None
    try:
        with progress_bar(progress and bool(jobs)) as bar:
            task = bar.add_task("search", total=len(jobs), info="")
            for k, (strategy, seed, f) in enumerate(jobs):
                key = f"{strategy}#{seed}#{f:g}"
                if key not in done:
                    bar.update(task, info=f"{strategy} seed {seed} at {f:g} x {ref['latency_ms']:.4g} ms")
                    done[key] = _search(cfg, strategy, seed, f * ref["latency_ms"], look, key)
                    if journal is not None:
                        journal.append({"row": done[key]})
                bar.update(task, completed=k + 1)
    finally:
        if journal is not None:
            journal.close()
    for strategy, seed, f in jobs:
        groups.setdefault(f"{strategy} seed {seed}", []).extend(done[f"{strategy}#{seed}#{f:g}"]["front"])

    rows = [ref]
    per_group = {}
    for g, cands in groups.items():
        strategy, _, seed = g.partition(" seed ")
        for f in usable:
            b = best_within(cands, f * ref["latency_ms"])
            if b is not None:
                rows.append({"name": f"{strategy}@{f:g}x", "kind": "found", **b, "latency_budget_ms": f * ref["latency_ms"],
                             "budget_fraction": f, "strategy": strategy if seed else None,
                             "seed": int(seed) if seed else None})
        per_group[g] = {"strategy": strategy, "seed": int(seed) if seed else None,
                        "equal_latency": equal_latency(cands, ref), "equal_accuracy": equal_accuracy(cands, ref),
                        "candidates": len(cands)}
    for r in rows:
        r.setdefault("seed", None)
        r.update({"macro_f1": None, "train_seconds": None, "epochs": None})
    summary = {"device": cfg.profile.rpartition("#")[2], "resnet_cell": {k: ref[k] for k in ("arch_id", "top1", "latency_ms")},
               "groups": per_group, "table_optimum": table_optimum(look, ref), "budget_evals": cfg.budget_evals,
               "latency_budgets_ms": [f * ref["latency_ms"] for f in usable]}
    by_strategy: dict[str, list[dict]] = {}
    for s in per_group.values():
        by_strategy.setdefault(s["strategy"], []).append(s)
    summary["median"] = {
        s: {"gain_points": _median([(x["equal_latency"] or {}).get("gain_points") for x in xs]),
            "speedup": _median([(x["equal_accuracy"] or {}).get("speedup") for x in xs]),
            "seeds": len(xs),
            "no_cell_as_accurate": sum(1 for x in xs if x["equal_accuracy"] is None)}
        for s, xs in by_strategy.items()}
    result = NB201CompareResult(rows, summary, out_path, notes)
    if out_path is not None:
        _write(out_path, result, cfg, header, groups)
    return result


def _run_candidates(folder: str, look: _Lookup) -> list[dict]:
    """A run folder's Pareto front and best (refused when searched in another space or table)."""
    from hwnas.exporters.run_export import read_run
    from hwnas.fileio import read_json

    run = read_run(folder)
    s = run.config["space"]
    if s.get("name") != look.space.name:
        raise UserError(f"run folder {folder!r} was searched in space {s.get('name')!r}, not {look.space.name!r}; "
                        f"pass runs of the NAS-Bench-201 space")
    front_file = Path(folder) / "pareto.json"
    front = (read_json(front_file, "Pareto front").get("front") or []) if front_file.is_file() else []
    return [r for r in [*front, run.best] if isinstance(r, dict) and "arch" in r]


def _search(cfg: NB201CompareConfig, strategy: str, seed: int, latency_budget_ms: float, look: _Lookup, key: str) -> dict:
    from hwnas.search import SearchConfig, run

    res = run(SearchConfig(space=cfg.space, profile=cfg.profile, evaluator=cfg.evaluator, strategy=strategy,
                           budget_evals=cfg.budget_evals, seed=seed, latency_budget_ms=latency_budget_ms), out=None)
    front = [look.record(r["arch"]) for r in res.pareto]
    return {"key": key, "strategy": strategy, "seed": seed, "latency_budget_ms": latency_budget_ms, "front": front,
            "best_id": res.best["id"] if res.best else None, "evaluated": len(res.records)}


def _write(out: Path, result: NB201CompareResult, cfg: NB201CompareConfig, header: dict,
           groups: dict[str, list[dict]]) -> None:
    from hwnas.compare.report import figure_png, markdown
    from hwnas.compare.run import JSON_FILE, MD_FILE, PNG_FILE
    from hwnas.fileio import atomic_write_bytes, atomic_write_json, atomic_write_text

    s = result.summary
    atomic_write_json(out / JSON_FILE, {**header, "rows": result.rows, "summary": s, "notes": result.notes})
    ref = s["resnet_cell"]
    notes = [f"device column `{s['device']}` of `{cfg.profile}`; accuracy `{cfg.evaluator}` (fully trained, from the table)",
             f"the ResNet cell `{cfg.baseline_cell}`: {100 * ref['top1']:.2f}% at {ref['latency_ms']:.4g} ms",
             f"found: the most accurate cell the searches ({cfg.budget_evals} evaluations each) evaluated within each "
             f"budget; budgets are fractions of the ResNet cell's latency"]
    text = markdown(result.rows, f"NAS-Bench-201: the ResNet cell against found cells ({s['device']})", notes)
    lines = ["", "| strategy | seeds | gain at equal latency (points, median) | speed-up at equal accuracy (median) |",
             "|---|---|---|---|"]
    for strat, m in s["median"].items():
        gain = "-" if m["gain_points"] is None else f"{m['gain_points']:+.2f}"
        speed = "-" if m["speedup"] is None else f"{m['speedup']:.2f}x"
        lines.append(f"| {strat} | {m['seeds']} | {gain} | {speed} |")
    opt = s["table_optimum"]
    lines.append(f"| whole table (optimum) | - | {opt['equal_latency']['gain_points']:+.2f} | "
                 f"{opt['equal_accuracy']['speedup']:.2f}x |")
    atomic_write_text(out / MD_FILE, text + "\n".join(lines) + "\n")
    fronts = [[(c["latency_ms"], 100 * c["top1"]) for c in cands] for cands in groups.values()]
    rows = [dict(r, name="ResNet cell") if r["kind"] == "baseline" else r for r in result.rows]
    atomic_write_bytes(out / PNG_FILE, figure_png(rows, f"NAS-Bench-201 on {s['device']}", s["latency_budgets_ms"],
                                                  xlabel=f"latency (ms, {s['device']})",
                                                  ylabel="CIFAR-10 test accuracy (%, table)", fronts=fronts))
