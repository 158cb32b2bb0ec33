"""The ask/tell interface every strategy implements, its registry, and the shared repair step.

A strategy's state is a deterministic function of its seed and the sequence of ``tell`` calls:
replaying a journal through ``ask``/``tell`` rebuilds it exactly, which is how a run resumes.
Candidates that break a hard constraint are repaired (re-proposed) before they are returned by
``ask``, so no strategy ever spends an evaluation on one.
"""

from __future__ import annotations

import itertools
from abc import ABC, abstractmethod
from typing import Any, Callable

import numpy as np

from hwnas.errors import UserError
from hwnas.registry import Registry
from hwnas.search.problem import Genome, Problem, Values
from hwnas.search.surrogate import LinearUCB, one_hot_features, surrogate_target

STRATEGIES: Registry["Strategy"] = Registry("strategy")

# how many random draws a repair may take before concluding nothing feasible and unseen is left;
# once that happened, later repairs take only a few draws (the feasible region does not grow,
# and without this a run that exhausted it spent minutes drawing before the loop ended it)
_RANDOM_TRIES = 20_000
_RANDOM_TRIES_EXHAUSTED = 200


class Strategy(ABC):
    """Optuna-style ask/tell over genomes. Subclasses set ``defaults`` (option -> value)."""

    defaults: dict[str, Any] = {}

    def __init__(self, problem: Problem, seed: int, budget_evals: int, **options: Any) -> None:
        unknown = set(options) - set(self.defaults)
        if unknown:
            known = ", ".join(sorted(self.defaults)) or "none"
            raise UserError(f"strategy {self.name!r} has no option(s) {', '.join(sorted(unknown))}; its options are: {known}")
        self.options = {**self.defaults, **{k: v for k, v in options.items() if v is not None}}
        self.problem = problem
        self.seed = int(seed)
        self.budget_evals = int(budget_evals)
        self.rng = np.random.default_rng(self.seed)
        self.cards = np.asarray(problem.cards, dtype=np.int64)
        self._cards = [int(c) for c in problem.cards]
        self._free = [i for i, c in enumerate(self._cards) if c > 1]  # genes that can change
        self.known: dict[Genome, Values] = {}  # everything told so far
        self.n_told = 0
        self._exhausted = False  # random draws found nothing feasible and new (see random_feasible)
        self.setup()

    name = "strategy"

    def setup(self) -> None:
        """Validate options and build the initial state."""

    @abstractmethod
    def ask(self) -> Genome:
        """The next candidate to evaluate (feasible; usually not evaluated before)."""

    def tell(self, genome: Genome, values: Values) -> None:
        """Report the objective values of a candidate returned by ``ask``."""
        self.known[genome] = values
        self.n_told += 1
        self.on_tell(genome, values)

    @abstractmethod
    def on_tell(self, genome: Genome, values: Values) -> None:
        """Update the strategy's state."""

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, **self.options}

    # ---- shared variation operators on genomes -----------------------------------------
    def random_genome(self) -> Genome:
        return self.problem.canonical(tuple(int(x) for x in (self.rng.random(len(self.cards)) * self.cards).astype(np.int64)))

    def mutate(self, g: Genome, rate: float = 0.0) -> Genome:
        """Change one gene to another of its values (NAS-Bench-201's REA mutation), plus every
        other gene with probability ``rate``: larger jumps leave local optima of the feasible region."""
        free = self._free
        if not free:
            return g
        out = list(g)
        forced = free[int(self.rng.integers(len(free)))]
        extra = self.rng.random(len(out)).tolist() if rate > 0 else None
        for i in free:
            if i == forced or (extra is not None and extra[i] < rate):
                v = int(self.rng.integers(self._cards[i] - 1))
                out[i] = v if v < g[i] else v + 1
        return self.problem.canonical(tuple(out))

    def swap(self, g: Genome) -> Genome:
        """Exchange the values of two genes with the same number of choices that differ. In a
        cell or block space this moves an operation elsewhere while keeping the set of
        operations, so the cost barely changes: it links good candidates that a one-gene
        change cannot reach without passing through worse or over-budget ones. ``g`` itself
        when no such pair exists."""
        pairs = getattr(self, "_swap_pairs", None)
        if pairs is None:
            pairs = self._swap_pairs = [(i, j) for i in self._free for j in self._free
                                        if i < j and self._cards[i] == self._cards[j]]
        cand = [(i, j) for i, j in pairs if g[i] != g[j]]
        if not cand:
            return g
        i, j = cand[int(self.rng.integers(len(cand)))]
        out = list(g)
        out[i], out[j] = g[j], g[i]
        return self.problem.canonical(tuple(out))

    def crossover(self, a: Genome, b: Genome) -> Genome:
        pick = self.rng.random(len(a)) < 0.5
        return self.problem.canonical(tuple(int(x) if p else int(y) for x, y, p in zip(a, b, pick)))

    # ---- surrogate screening (search/surrogate.py) ------------------------------------
    # options of the strategies that screen: screen (own proposals per ask, 0 = off),
    # screen_random (uniform feasible candidates added), screen_beta (UCB weight),
    # screen_after (evaluations before the first screened ask)
    SCREEN_DEFAULTS = {"screen": 20, "screen_random": 20, "screen_beta": 4.0, "screen_after": 20}

    def check_screen_options(self) -> None:
        o = self.options
        if int(o["screen"]) < 0 or int(o["screen_random"]) < 0 or int(o["screen_after"]) < 1 or float(o["screen_beta"]) < 0:
            raise UserError(f"{self.name} needs screen >= 0, screen_random >= 0, screen_after >= 1 and screen_beta >= 0, "
                            f"got {o['screen']}, {o['screen_random']}, {o['screen_after']} and {o['screen_beta']}")

    def screening(self) -> bool:
        return int(self.options.get("screen", 0)) > 0 and self.n_told >= int(self.options.get("screen_after", 0))

    def screened(self, make: Callable[[], Genome]) -> Genome:
        """``make()`` when screening is off; otherwise the candidate with the best upper
        confidence bound among ``screen`` calls of ``make`` and ``screen_random`` uniform
        feasible candidates (all new and feasible). Deterministic given the seed and the tells."""
        if not self.screening():
            return make()
        pool = [make() for _ in range(int(self.options["screen"]))]
        pool += self._random_pool(int(self.options["screen_random"]))
        pool = [g for g in dict.fromkeys(pool) if self.usable(g)]
        if not pool:
            return self.random_feasible()
        if len(pool) == 1:
            return pool[0]
        scores = self._surrogate().ucb(pool, float(self.options["screen_beta"]))
        return pool[int(np.argmax(scores))]

    def _random_pool(self, n: int) -> list[Genome]:
        out: list[Genome] = []
        if n <= 0 or self._exhausted:
            return out
        for _ in range(20 * n):
            g = self.random_genome()
            if self.usable(g):
                out.append(g)
                if len(out) >= n:
                    break
        return out

    def _surrogate(self) -> LinearUCB:
        """The model over everything told so far, updated incrementally."""
        model = getattr(self, "_model", None)
        if model is None:
            features = self.problem.features or one_hot_features(self._cards)
            width = np.asarray(features(np.zeros((1, len(self._cards)), dtype=np.int64))).shape[1]
            model = self._model = LinearUCB(features, width)
            self._modelled = 0
        for g, v in itertools.islice(self.known.items(), self._modelled, None):
            model.add(g, surrogate_target(self.problem, v))
        self._modelled = len(self.known)
        return model

    def usable(self, g: Genome) -> bool:
        return g not in self.known and self.problem.feasible(g)

    def propose(self, make: Callable[[], Genome], tries: int = 50) -> Genome:
        """Repair: re-draw from ``make`` until feasible and new; then fall back to random draws;
        if nothing new is feasible any more, a feasible known genome (the run ends on repeats)."""
        for _ in range(tries):
            g = make()
            if self.usable(g):
                return g
        return self.random_feasible()

    def random_feasible(self) -> Genome:
        fallback = None
        exhausted = self._exhausted
        for _ in range(_RANDOM_TRIES_EXHAUSTED if exhausted else _RANDOM_TRIES):
            g = self.random_genome()
            if g not in self.known:
                if self.problem.feasible(g):
                    return g
            elif fallback is None:
                fallback = g  # known genomes were feasible when evaluated
        if fallback is not None:
            self._exhausted = True
            return fallback
        if exhausted:  # known genomes exist (the region was feasible before); draw them for real
            return next(iter(self.known))
        raise UserError(f"found no candidate within the budgets in {_RANDOM_TRIES} random draws; relax --latency-ms/--params-max/--flops-max")


def make_strategy(name: str, problem: Problem, seed: int, budget_evals: int, **options: Any) -> Strategy:
    _load_builtin()
    return STRATEGIES.create(name, problem, seed, budget_evals, **options)


def list_strategies() -> list[str]:
    _load_builtin()
    return STRATEGIES.names()


def _load_builtin() -> None:
    # importing the modules registers them; kept here so that importing this module stays cheap
    from hwnas.search import anneal, evolution, gp, nsga2, random_search, reinforce, tpe  # noqa: F401
