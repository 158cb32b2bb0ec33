"""The ask -> evaluate -> tell loop, free of files and spaces (the benchmark drives it directly).

A candidate evaluated before is told its known values again without spending an evaluation;
a strategy that keeps proposing known candidates (a converged policy, an exhausted feasible
region) ends the run early instead of looping forever.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

from hwnas.search.problem import Genome, Values
from hwnas.search.strategy import Strategy

MAX_REPEATS = 200


@dataclass
class LoopResult:
    genomes: list[Genome] = field(default_factory=list)
    values: list[Values] = field(default_factory=list)
    stopped_early: Optional[str] = None


def drive(
    strategy: Strategy,
    evaluate: Callable[[Genome], Values],
    budget_evals: int,
    on_evaluated: Callable[[int, Genome, Values], None] | None = None,
    max_repeats: int = MAX_REPEATS,
) -> LoopResult:
    """Run ``strategy`` until ``budget_evals`` distinct candidates were evaluated.

    ``on_evaluated(i, genome, values)`` is called after each evaluation and before the next
    ``ask`` (the run journal appends there).
    """
    res = LoopResult()
    cache: dict[Genome, Values] = {}
    repeats = 0
    while len(res.genomes) < budget_evals:
        g = strategy.ask()
        if g in cache:
            strategy.tell(g, cache[g])
            repeats += 1
            if repeats >= max_repeats:
                res.stopped_early = (f"the strategy proposed only already evaluated candidates {max_repeats} times in a row "
                                     f"(converged, or no new candidate fits the budgets)")
                break
            continue
        repeats = 0
        v = evaluate(g)
        cache[g] = v
        res.genomes.append(g)
        res.values.append(v)
        if on_evaluated is not None:
            on_evaluated(len(res.genomes) - 1, g, v)
        strategy.tell(g, v)
    return res
