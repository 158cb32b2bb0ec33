"""Multi-objective hardware-aware search: strategies behind one ask/tell interface, objectives
and budgets, Pareto fronts and hypervolume, the run journal and resume.

    from hwnas.search import run
    res = run(space="nb201", profile="table:nb201#lat_pixel3", latency_budget_ms=6.0,
              evaluator="table:nb201#c10_test", strategy="evolution", budget_evals=300,
              seed=0, out="runs/nb201")

Strategies (``list_strategies()``): random, evolution, nsga2, reinforce, anneal, gp, tpe. Each
works on genomes (``space.encode``: one choice index per decision) through ``ask()``/``tell()``.
"""

from hwnas.search.loop import LoopResult, drive
from hwnas.search.pareto import crowding_distance, hypervolume, non_dominated_mask, non_dominated_sort
from hwnas.search.problem import ACCURACY, FLOPS, LATENCY, PARAMS, Objective, Problem
from hwnas.search.runner import Progress, SearchConfig, SearchResult, run
from hwnas.search.strategy import STRATEGIES, Strategy, list_strategies, make_strategy

__all__ = [
    "ACCURACY", "FLOPS", "LATENCY", "PARAMS", "LoopResult", "Objective", "Problem", "Progress",
    "STRATEGIES", "SearchConfig", "SearchResult", "Strategy", "crowding_distance", "drive",
    "hypervolume", "list_strategies", "make_strategy", "non_dominated_mask", "non_dominated_sort", "run",
]
