"""The ask -> evaluate -> tell loop, free of files and spaces (the benchmark drives it directly).

A candidate evaluated before is told its known values again without spending an evaluation;
a strategy that keeps proposing known candidates (a converged policy, an exhausted feasible
region) ends the run early instead of looping forever.

``drive_ahead`` is the same loop with several candidates asked before the first is told (a
parallel search, ``search/parallel.py``); its tells keep ask order, so its result depends on how
many are asked ahead, never on which evaluation finished first.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Optional, Protocol

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
                res.stopped_early = _stopped(max_repeats)
                break
            continue
        repeats = 0
        _evaluated(res, cache, strategy, g, evaluate(g), on_evaluated)
    return res


def _stopped(max_repeats: int) -> str:
    return (f"the strategy proposed only already evaluated candidates {max_repeats} times in a row "
            f"(converged, or no new candidate fits the budgets)")


def _evaluated(res: LoopResult, cache: dict[Genome, Values], strategy: Strategy, g: Genome, v: Values,
               on_evaluated: Callable[[int, Genome, Values], None] | None) -> None:
    """A new evaluation's values: recorded, handed to ``on_evaluated`` (the journal), then told."""
    cache[g] = v
    res.genomes.append(g)
    res.values.append(v)
    if on_evaluated is not None:
        on_evaluated(len(res.genomes) - 1, g, v)
    strategy.tell(g, v)


class Evaluations(Protocol):
    """Where ``drive_ahead`` sends candidates: ``submit`` starts the evaluation of the ``index``-th
    distinct candidate (it may run at once, later, or elsewhere), ``result`` waits for its values.
    ``result`` is called once per index, in index order."""

    def submit(self, index: int, genome: Genome) -> None: ...

    def result(self, index: int) -> Values: ...


def drive_ahead(
    strategy: Strategy,
    evaluations: Evaluations,
    budget_evals: int,
    in_flight: int,
    on_evaluated: Callable[[int, Genome, Values], None] | None = None,
    max_repeats: int = MAX_REPEATS,
) -> LoopResult:
    """``drive`` with up to ``in_flight`` candidates asked before the first of them is told.

    The strategy is asked until ``in_flight`` asks wait for their values (or the budget is
    submitted); then the oldest is waited for and told, and asking resumes. Tells (and
    ``on_evaluated``, hence the journal) follow ask order whatever order evaluations finish
    in, so the result is a function of the seed and ``in_flight`` alone: how many evaluations
    really run at once (``--workers``) cannot change it. With ``in_flight=1`` this is ``drive``.

    An ask that repeats a known candidate, or one still being evaluated, takes a place in the
    queue and is told that candidate's values in its turn without a new evaluation; as in
    ``drive``, ``max_repeats`` such tells in a row end the run, after the evaluations already
    started are told (they are not thrown away).
    """
    if in_flight < 1:
        raise ValueError(f"in_flight must be at least 1, got {in_flight}")
    res = LoopResult()
    cache: dict[Genome, Values] = {}
    queue: deque[tuple[Genome, Optional[int]]] = deque()  # (genome, its index if a new evaluation)
    started: set[Genome] = set()
    submitted = 0
    repeats = 0
    while True:
        while res.stopped_early is None and len(queue) < in_flight and submitted < budget_evals:
            g = strategy.ask()
            if g in started:
                queue.append((g, None))
            else:
                started.add(g)
                evaluations.submit(submitted, g)
                queue.append((g, submitted))
                submitted += 1
        if not queue:
            return res
        g, index = queue.popleft()
        if index is None:
            strategy.tell(g, cache[g])  # its evaluation was ahead in the queue: done by now
            if res.stopped_early is None:
                repeats += 1
                if repeats >= max_repeats:
                    res.stopped_early = _stopped(max_repeats)
            continue
        repeats = 0
        _evaluated(res, cache, strategy, g, evaluations.result(index), on_evaluated)
