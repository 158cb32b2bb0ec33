"""What a strategy searches over: the genome layout, the objectives and the hard constraints.

Strategies see only this: genomes (one choice index per decision of the space), a feasibility
test that is cheap and known *before* evaluation (latency from a table, parameters, FLOPs),
and the objective values told back after evaluation. This keeps them independent of spaces,
evaluators and files, and lets the benchmark drive them with plain array lookups.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

Genome = tuple[int, ...]
Values = Mapping[str, float]


@dataclass(frozen=True)
class Objective:
    name: str
    maximize: bool


ACCURACY = Objective("accuracy", True)
LATENCY = Objective("latency_ms", False)
PARAMS = Objective("params", False)
FLOPS = Objective("flops", False)
MODEL_BYTES = Objective("model_bytes", False)
KNOWN_OBJECTIVES = {o.name: o for o in (ACCURACY, LATENCY, PARAMS, FLOPS, MODEL_BYTES)}


def _always(_: Genome) -> bool:
    return True


def _identity(g: Genome) -> Genome:
    return g


@dataclass
class Problem:
    """``cards[i]`` choices for decision i; ``objectives[0]`` is the one single-objective strategies
    maximize (accuracy); ``feasible`` holds the hard constraints; ``canonical`` maps genomes that
    decode to the same arch (unused genes) to one representative."""

    cards: tuple[int, ...]
    objectives: tuple[Objective, ...] = (ACCURACY, LATENCY)
    feasible: Callable[[Genome], bool] = _always
    canonical: Callable[[Genome], Genome] = _identity
    latency_budget_ms: float | None = None  # the MnasNet reward's target T
    # genomes (N x decisions) -> features (N x F) for the surrogate that screens candidates
    # (search/surrogate.py); None: one-hot choices. Spaces supply theirs (genome_features).
    features: Callable[["object"], "object"] | None = None
    extra: dict = field(default_factory=dict)

    def fitness(self, values: Values) -> float:
        """The scalar single-objective strategies maximize: the first objective."""
        o = self.objectives[0]
        v = float(values[o.name])
        return v if o.maximize else -v

    def objective_matrix(self, values: Sequence[Values]) -> "object":
        """Rows of objective values, all to be minimized (for Pareto sorting)."""
        import numpy as np

        F = np.array([[float(v[o.name]) for o in self.objectives] for v in values], dtype=np.float64)
        F = F.reshape(len(values), len(self.objectives))
        for j, o in enumerate(self.objectives):
            if o.maximize:
                F[:, j] = -F[:, j]
        return F
