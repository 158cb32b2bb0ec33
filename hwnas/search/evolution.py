"""Regularized (aging) evolution, Real et al. 2019, with tournament selection.

The first ``population`` candidates are random; afterwards each candidate is a child of the
best of ``sample_size`` members drawn from the population, and the oldest member dies. A child
is, with probability ``swap_prob``, the parent with the values of two of its genes exchanged
(``Strategy.swap``), otherwise a one-gene mutation (plus each other gene with probability
``mutation_rate``). Children that break a budget or were evaluated already are re-drawn (OFA's
finder repairs the same way), so every evaluation is spent on a new feasible candidate.

The swap is what lifted this strategy on the NAS-Bench-201 benchmark: the best cells under a
latency budget sit at the budget, in separate basins that differ by where the same operations
are (latency depends mostly on which operations a cell has, much less on where). A one-gene
change cannot move an operation without passing through a slower (infeasible) or worse cell;
a swap moves it in one step at nearly the same latency.

Screening (``screen``, on by default; ``Strategy.screened`` and search/surrogate.py): after
``screen_after`` random members, each ask makes ``screen`` children as above (each of its own
tournament) and draws ``screen_random`` uniform feasible candidates, and evaluates the one a
linear surrogate fitted to everything told so far scores highest (mean plus ``screen_beta``
standard deviations). The children keep the search local; the random candidates the model
finds promising or unexplored let it leave a basin whose better neighbours are several genes
away, which one-gene and swap moves alone did not do within 300 evaluations on the benchmark's
latency-trap tasks (BENCHMARKS.md). ``screen=0`` is the plain algorithm.
"""

from __future__ import annotations

from collections import deque

from hwnas.errors import UserError
from hwnas.search.problem import Genome, Values
from hwnas.search.strategy import STRATEGIES, Strategy


@STRATEGIES.register("evolution", "regularized (aging) evolution with tournament selection and constraint repair")
class RegularizedEvolution(Strategy):
    name = "evolution"
    # tuned on the NAS-Bench-201 benchmark (benchmarks/search_nb201.py; docs/notes/2026-11-search-defaults-tuning.md)
    defaults = {"population": 50, "sample_size": 10, "mutation_rate": 0.0, "crossover_prob": 0.0, "swap_prob": 0.5,
                **Strategy.SCREEN_DEFAULTS}

    def setup(self) -> None:
        p, s = int(self.options["population"]), int(self.options["sample_size"])
        if p < 2 or not 1 <= s <= p:
            raise UserError(f"evolution needs --population >= 2 and 1 <= --sample-size <= population, got {p} and {s}")
        self.population_size, self.sample_size = p, s
        self.check_screen_options()
        self.population: deque[tuple[Genome, float]] = deque()

    def ask(self) -> Genome:
        # with screening the population fills with screened children once screen_after random
        # members are told; tournaments then draw from the members there are
        if not self.screening() and self.n_told < self.population_size:
            return self.random_feasible()
        members = list(self.population)
        if not members:
            return self.random_feasible()
        size = min(self.sample_size, len(members))
        rate = float(self.options["mutation_rate"])
        cx = float(self.options["crossover_prob"])
        swap = float(self.options["swap_prob"])

        def winner() -> Genome:
            picks = self.rng.choice(len(members), size=size, replace=False)
            return max((members[int(i)] for i in picks), key=lambda m: m[1])[0]

        def offspring() -> Genome:
            parent = winner()

            def child() -> Genome:
                g = parent
                if cx > 0 and self.rng.random() < cx:
                    g = self.crossover(g, winner())
                if swap > 0 and self.rng.random() < swap:
                    return self.swap(g)
                return self.mutate(g, rate)

            return self.propose(child)

        return self.screened(offspring)

    def on_tell(self, genome: Genome, values: Values) -> None:
        self.population.append((genome, self.problem.fitness(values)))
        if len(self.population) > self.population_size:
            self.population.popleft()
