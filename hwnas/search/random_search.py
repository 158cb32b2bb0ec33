"""Uniform random search over the feasible region: the baseline every strategy must beat."""

from __future__ import annotations

from hwnas.search.problem import Genome, Values
from hwnas.search.strategy import STRATEGIES, Strategy


@STRATEGIES.register("random", "uniform random sampling of feasible, not yet evaluated candidates")
class RandomSearch(Strategy):
    name = "random"
    defaults: dict = {}

    def ask(self) -> Genome:
        return self.random_feasible()

    def on_tell(self, genome: Genome, values: Values) -> None:
        pass
