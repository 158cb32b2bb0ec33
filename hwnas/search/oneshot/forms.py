"""A space's one-shot form: what ``run_oneshot`` needs to train and discretise it.

A form has ``cards`` (choices per decision; the logits are decisions x most choices) and

- ``logits(alpha)`` / ``probs(alpha)`` / ``prob_rows(alpha)``: alpha with rows of fewer choices
  masked, its softmax, and that as JSON rows of each decision's own length;
- ``expected(probs)``: the expected latency, differentiable; ``min_latency()``: the smallest
  latency the space reaches and an arch that reaches it;
- ``sample(alpha, method, tau)``: gate weights and the chosen index per decision;
- ``make_net(num_classes)`` (``net(x, weights, index)``) and ``fixed_path(net, genome)`` (a plain
  ``model(x)`` computing one arch, for evaluation);
- ``genome_latency(genome)`` and ``repair(log_p, budget)``: the most probable genome within the
  budget (None if none is);
- ``save_supernet``: None, or how to save the trained network for ``hwnas export``.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np
import torch


def gumbel_sample(logits: torch.Tensor, tau: float) -> tuple[torch.Tensor, list[int]]:
    """A Gumbel-softmax sample: hard one-hot in the forward pass with the soft sample's
    gradient (straight-through), and the chosen index per row."""
    while True:  # a Gumbel draw of exactly 0 or 1 gives an infinite logit; draw again (as GDAS does)
        gumbel = -torch.empty_like(logits).exponential_().log()
        soft = ((logits.log_softmax(-1) + gumbel) / tau).softmax(-1)
        if torch.isfinite(soft).all():
            break
    index = soft.argmax(-1)
    hard = torch.zeros_like(soft).scatter_(-1, index[:, None], 1.0)
    return hard - soft.detach() + soft, index.tolist()


class NB201Form:
    """The NAS-Bench-201 cell: five operations on six edges, every cell's latency listed."""

    kind = "nb201"
    save_supernet = None  # its mixed cells are not a space's network: export trains from scratch

    def __init__(self, space: Any, latency: Any) -> None:
        from hwnas.search.oneshot.latency import ExpectedLatency

        self.space = space
        self.expected = ExpectedLatency(space, latency)  # every cell's latency, once
        self.cards = self.expected.cards

    def min_latency(self) -> tuple[float, Any]:
        cheapest = int(np.argmin(self.expected.latencies))
        return float(self.expected.latencies[cheapest]), self.space.decode(self.expected.genomes[cheapest])

    def logits(self, alpha: torch.Tensor) -> torch.Tensor:
        return alpha

    def probs(self, alpha: torch.Tensor) -> torch.Tensor:
        return alpha.softmax(-1)

    def prob_rows(self, alpha: torch.Tensor) -> list[list[float]]:
        return [[round(float(v), 6) for v in row] for row in alpha.detach().softmax(-1).cpu()]

    def sample(self, alpha: torch.Tensor, method: str, tau: float) -> tuple[torch.Tensor, Optional[list[int]]]:
        """DARTS: the softmax mixture (no index); GDAS: a Gumbel-softmax sample."""
        if method == "darts":
            return alpha.softmax(-1), None
        return gumbel_sample(alpha, tau)

    def make_net(self, num_classes: int) -> Any:
        from hwnas.search.oneshot.nb201_mixed import MixedNB201Net

        sc = self.space.config
        return MixedNB201Net(sc.channels, sc.cells_per_stage, num_classes)

    def fixed_path(self, model: Any, genome: Sequence[int]) -> Any:
        from hwnas.search.oneshot.nb201_mixed import FixedPath

        return FixedPath(model, genome)

    def genome_latency(self, genome: Sequence[int]) -> float:
        return self.expected.of_genome(genome)

    def repair(self, log_p: np.ndarray, budget: float) -> Optional[tuple[int, ...]]:
        return self.expected.most_probable_within(log_p, budget)


def mixed_form(space: Any, latency: Any) -> Any:
    """The space's one-shot form (the space was checked by ``check_mixed_form``)."""
    from hwnas.space import MBConvSpace

    if isinstance(space, MBConvSpace):
        from hwnas.search.oneshot.mbconv_mixed import MBConvForm

        return MBConvForm(space, latency)
    return NB201Form(space, latency)
