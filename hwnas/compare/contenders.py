"""What a comparison trains: the zoo's baselines and the archs a search found (a run folder's
best, its Pareto front, or an arch list), with the profile and the front as the search saw it."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from hwnas.errors import UserError
from hwnas.space.ref import SpaceRef


@dataclass
class Contender:
    """One network to train: a baseline of the zoo or an arch a search found."""

    name: str
    kind: str  # baseline | found
    build: Callable[[int], Any]  # num_classes -> freshly initialised nn.Module
    info: dict[str, Any]
    latency_budget_ms: float | None = None


# ---- inputs -------------------------------------------------------------------------------
def load_profile(spec: str):
    from hwnas.latency import load_table

    if spec.startswith("table:"):
        raise UserError(f"--profile {spec} is a benchmark column, not a backend to time networks on; give a latency "
                        f"table from `hwnas profile`, or compare on the benchmark with --space nb201 --evaluator table:...")
    p = Path(spec)
    if not p.is_file():
        raise UserError(f"profile {spec!r} does not exist; write one with `hwnas profile` (or use profiles/)")
    return load_table(p), hashlib.sha256(p.read_bytes()).hexdigest()


def _data_name(spec: str | None) -> str | None:
    return None if not spec else str(spec).partition(":")[0]


@dataclass
class SearchFront:
    """A run folder's Pareto front as its search saw it: the evaluator's accuracy (or score)
    against the profile's predicted latency, from ``pareto.json``."""

    run: str
    evaluator: str
    is_accuracy: bool  # False for ranking scores (zero-cost proxies): not drawn on the top-1 axis
    points: list[dict]  # arch_id, latency_ms (predicted), accuracy (the evaluator's)

    def to_dict(self) -> dict[str, Any]:
        return {"run": self.run, "evaluator": self.evaluator, "accuracy_is_estimate": self.is_accuracy,
                "points": self.points}


def _estimates_accuracy(spec: str) -> bool:
    """Whether an evaluator spec gives accuracies (fractions) rather than ranking scores."""
    from hwnas.accuracy import EVALUATORS, describe_evaluators

    kind = spec.partition(":")[0]
    if kind not in EVALUATORS:
        describe_evaluators()  # imports every evaluator kind's module, which registers it
    try:
        return bool(getattr(EVALUATORS.get(kind), "estimates_accuracy", True))
    except UserError:
        return False  # an evaluator this hwnas does not know: nothing says its values are accuracies


def _read_front(folder: str, required: bool) -> list[dict]:
    from hwnas.fileio import read_json
    from hwnas.search.runner import PARETO_FILE

    path = Path(folder) / PARETO_FILE
    if not path.is_file():
        if required:
            raise UserError(f"run folder {folder!r} holds no {PARETO_FILE}; finish the search with `hwnas search ... "
                            f"--resume`, or compare without --front")
        return []
    doc = read_json(path, "Pareto front")
    front = doc.get("front") if isinstance(doc, dict) else None
    if not isinstance(front, list) or not all(isinstance(r, dict) and "arch" in r for r in front):
        if required:
            raise UserError(f"{str(path)!r} is not a Pareto front of `hwnas search` (no list of archs under 'front'); "
                            f"rerun the search, or compare without --front")
        return []
    return front


def found_from_run(folder: str, space_name: str, image_size: int, data: str,
                    front: bool = False) -> tuple[list[Contender], SearchFront]:
    """The run's best arch (with ``front``: every arch of its Pareto front, then the best where it
    is not on it), and the front as the search estimated it."""
    from hwnas.accuracy.supernet import _init_weights
    from hwnas.exporters.run_export import read_run

    run = read_run(folder)
    s = run.config["space"]
    if s.get("name") != space_name:
        raise UserError(f"run folder {folder!r} was searched in space {s.get('name')!r}, this comparison is in "
                        f"{space_name!r}; compare runs of one space (pass --space or another profile)")
    space = SpaceRef.from_record(s).resolve(f"run folder {folder!r}", "rerun the search")
    if space.input_shape[-1] != image_size:
        raise UserError(f"run folder {folder!r} searched {space.input_shape[-1]} px networks, this comparison trains at "
                        f"{image_size} px; compare runs of the profile's input size")
    run_data = run.config["evaluator"].get("data")
    if run_data and _data_name(run_data) != _data_name(data):
        raise UserError(f"run folder {folder!r} was searched on data {run_data!r}, this comparison trains on {data!r}; "
                        f"pass --data {run_data} or a run searched on {data}")
    budget = run.latency_budget_ms
    records = _read_front(folder, required=front)
    best = space.parse(run.best["arch"])
    front_archs = []
    for r in records:
        try:
            front_archs.append((space.parse(r["arch"]), r))
        except UserError as e:
            raise UserError(f"{str(Path(folder) / 'pareto.json')!r} holds an arch this space cannot build ({e}); "
                            f"rerun the search") from None
    on_front = {a.id for a, _ in front_archs}
    picked = list(front_archs) if front else []
    if best.id not in {a.id for a, _ in picked}:
        picked.append((best, run.best))
    picked.sort(key=lambda ar: (ar[1].get("latency_ms") is None, ar[1].get("latency_ms") or 0.0))

    out, seen = [], set()
    for arch, rec in picked:
        if arch.id in seen:
            continue
        seen.add(arch.id)

        def build(num_classes: int, arch=arch):
            model = space.build(arch, num_classes=num_classes)
            _init_weights(model)  # as stand-alone training of an arch initialises it
            return model

        out.append(Contender(f"{Path(folder).name}:{arch.id}", "found", build, {
            "arch": arch.to_dict(), "arch_id": arch.id, "space": space.name, "run": str(Path(folder)),
            "search_accuracy": rec.get("accuracy"), "search_latency_ms": rec.get("latency_ms"),
            "front": arch.id in on_front, "best": arch.id == best.id}, budget))
    spec = str(run.config["evaluator"].get("spec") or run.config["evaluator"].get("typed") or "")
    estimate = SearchFront(str(Path(folder)), spec, _estimates_accuracy(spec),
                           [{"arch_id": a.id, "latency_ms": r.get("latency_ms"), "accuracy": r.get("accuracy")}
                            for a, r in front_archs])
    return out, estimate


def found_archs(archs: Sequence[Any], space) -> list[Contender]:
    from hwnas.accuracy.supernet import _init_weights

    out, seen = [], set()
    for a in archs:
        arch = space.parse(a)
        if arch.id in seen:
            continue
        seen.add(arch.id)

        def build(num_classes: int, arch=arch):
            model = space.build(arch, num_classes=num_classes)
            _init_weights(model)
            return model

        out.append(Contender(arch.id, "found", build, {"arch": arch.to_dict(), "arch_id": arch.id, "space": space.name}))
    return out


def baseline_contenders(names: Sequence[str], image_size: int) -> list[Contender]:
    from hwnas.compare.zoo import baseline_info, build_baseline, parse_baselines

    names = parse_baselines(",".join(names)) if names else []
    out = []
    for n in names:
        info = baseline_info(n)
        out.append(Contender(n, "baseline", lambda k, n=n: build_baseline(n, k, image_size),
                             {"description": info.description, "found_by_nas": info.found_by_nas}))
    return out


# ---- the backend: can it run a network, and how fast -------------------------------------
