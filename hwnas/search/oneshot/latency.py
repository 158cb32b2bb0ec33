"""Expected latency under the architecture distribution, differentiable in its probabilities.

With independent choices ``p[d, k]`` (decision d takes choice k) the expected latency is

    E[lat] = sum over genomes g of prod_d p[d, g_d] * lat(g)

where ``lat(g)`` is what the search's latency model predicts for the arch (a device table:
``base + sum of its terms' calibrated costs``; or a benchmark column). Because the table's
prediction is a sum of per-term costs, this is the same as weighting every table entry by its
expected number of uses, ``base + sum_t cost_t * E[n_t]``, with the table's calibration applied
exactly as ``predict`` applies it. For a NAS-Bench-201 cell the terms are not a sum over edges
(a node's ReLU is shared, zero nodes fold away, dead edges cost nothing, a node sum has one
addition fewer than inputs), so a per-edge weighted sum would be wrong even for one-hot
probabilities; the space is small enough (15,625 cells) to take the expectation over every
cell exactly. For one-hot probabilities the sum has one non-zero term and equals the table's
prediction bit for bit; its gradient with respect to ``p[d, k]`` is the expected latency given
that decision d takes choice k, so moving probability to cheaper choices lowers it.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import torch


class ExpectedLatency:
    """``E[lat]`` of a product distribution over the genomes of a small space."""

    def __init__(self, space: Any, latency: Any) -> None:
        cards = [len(d.choices) for d in space.decisions()]
        genomes = list(itertools.product(*(range(c) for c in cards)))
        archs = [space.decode(g) for g in genomes]
        lat = _nb201_table_latencies(space, latency, archs)
        if lat is None:
            lat = np.asarray(latency.predict_many(archs), dtype=np.float64)
        self.cards = tuple(cards)
        # row-major over the genome, so reshaping to ``cards`` indexes it by choice per decision
        self.table = torch.from_numpy(lat.reshape(self.cards))
        self.genomes = np.asarray(genomes, dtype=np.int64)
        self.latencies = lat
        self._on: dict = {}

    def __call__(self, probs: torch.Tensor) -> torch.Tensor:
        """``probs``: decisions x choices (rows summing to one). Returns a float64 scalar."""
        p = probs.to(torch.float64)
        t = self._on.get(p.device)
        if t is None:  # one copy per device, not one per step
            t = self._on[p.device] = self.table.to(p.device)
        for d in range(len(self.cards)):  # contract one decision at a time: exact, no 15,625 x 6 products
            t = torch.tensordot(p[d], t, dims=([0], [0]))
        return t

    def of_genome(self, genome) -> float:
        return float(self.table[tuple(int(g) for g in genome)])

    def most_probable_within(self, log_probs: np.ndarray, budget: float | None) -> tuple[int, ...] | None:
        """The genome of highest probability (sum of its choices' log-probabilities) whose
        latency is within ``budget``; None if none is. Ties go to the lower latency."""
        score = log_probs[np.arange(len(self.cards)), self.genomes].sum(axis=1)
        ok = np.ones(len(score), dtype=bool) if budget is None else self.latencies <= budget
        if not ok.any():
            return None
        order = np.lexsort((self.latencies[ok], -score[ok]))
        return tuple(int(v) for v in self.genomes[ok][order[0]])


def latency_penalty(expected_ms: torch.Tensor, latency_budget_ms: float, weight: float) -> torch.Tensor:
    """``weight * max(0, E[lat] / budget - 1)``: zero inside the budget, linear outside."""
    return weight * torch.relu(expected_ms / latency_budget_ms - 1.0)


def with_latency_loss(loss: torch.Tensor, expected_ms: torch.Tensor, latency_budget_ms: float, form: str,
                      lam: float) -> torch.Tensor:
    """The architecture's loss with its latency term (``methods.LATENCY_FORMS``): ``penalty`` adds
    ``latency_penalty``; ``multiplicative`` is MnasNet's soft form, ``loss * (E[lat] / budget) **
    lam``: below the budget it lowers the loss, above it raises it, so it always favours the faster
    of two equally accurate choices (the penalty is indifferent inside the budget);
    ``multiplicative-hard`` is MnasNet's hard form, ``loss * max(1, E[lat] / budget) ** lam``;
    ``absolute`` is TuNAS' absolute reward (Bender et al., 2020), ``loss + lam * |E[lat] / budget -
    1|``: it holds the expected latency at the budget from both sides, where the penalty pulls it
    down and then lets it be. The argmax arch follows only where the logits leave uniform (on
    the MBConv spaces: a larger arch lr; BENCHMARKS.md, "The absolute latency form").
    The soft form's pull is ``lam * loss`` per unit of log-latency at any latency, so on NAS-Bench-201,
    where a cell of ``none`` edges costs almost nothing, it drove gdas and darts to such cells
    (10% accuracy, 3 of 3 seeds each; BENCHMARKS.md)."""
    if form == "multiplicative":
        return loss * (expected_ms / latency_budget_ms) ** lam
    if form == "multiplicative-hard":  # MnasNet's hard constraint: the exponent is 0 inside the budget
        return loss * torch.clamp(expected_ms / latency_budget_ms, min=1.0) ** lam
    if form == "absolute":
        return loss + lam * torch.abs(expected_ms / latency_budget_ms - 1.0)
    return loss + latency_penalty(expected_ms, latency_budget_ms, lam)


def _nb201_table_latencies(space: Any, latency: Any, archs: list) -> np.ndarray | None:
    """``predict`` of every NAS-Bench-201 cell from a device table, the same floats in a
    fraction of the time: a cell's terms are listed once (not once per cell of the network and
    per stage) and looked up per stage, then summed in ``predict``'s order. Checked against
    ``predict`` on a few cells; None (use ``predict_many``) where it differs or does not apply."""
    from hwnas.space import Block, NB201Space

    predictor = getattr(latency, "predictor", None)
    if not isinstance(space, NB201Space) or predictor is None or not hasattr(predictor, "base_ms"):
        return None
    skeleton = space.latency_terms(space.smallest())
    stages = space.stage_shapes()
    n = space.config.cells_per_stage
    c0, r0 = stages[0]
    by_stage: list[dict] = [{} for _ in stages]

    def cost(s: int, b: Any) -> float:
        tpl = (b.op, b.params)
        hit = by_stage[s].get(tpl)
        if hit is None:
            c, r = stages[s]
            hit = by_stage[s][tpl] = predictor.term_cost(Block(b.op, b.params, (c, r, r)).key)
        return hit

    stem, head = predictor.term_cost(skeleton[0].key), predictor.term_cost(skeleton[-1].key)
    res = [predictor.term_cost(b.key) for b in skeleton if b.op == "resblock"]
    if len(res) != len(stages) - 1:
        return None
    base = predictor.base_ms
    out = np.empty(len(archs))
    cells: dict = {}
    for k, arch in enumerate(archs):
        ops = space.ops(arch)
        hit = cells.get(ops)
        if hit is None:
            blocks = space.cell_terms(ops, c0, r0)
            terms = [stem]
            for s in range(len(stages)):
                if s > 0:
                    terms.append(res[s - 1])
                terms += [cost(s, b) for b in blocks] * n
            terms.append(head)
            hit = cells[ops] = base + sum(terms)
        out[k] = hit
    probe = np.linspace(0, len(archs) - 1, 25).astype(int)
    want = np.array([predictor.predict(archs[i]) for i in probe])
    return out if np.array_equal(out[probe], want) else None
