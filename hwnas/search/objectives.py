"""The size objectives and constraints of a search: parameters, FLOPs and model bytes from the
torch module the space builds, FLOPs counted by torch's ``FlopCounterMode`` on one input;
computed once per arch id and cached. Latency comes from the latency room
(``hwnas.latency.sources``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hwnas.space import Arch, SearchSpace


@dataclass(frozen=True)
class ModelCost:
    params: int
    flops: int
    model_bytes: int


class CostModel:
    """Parameters, FLOPs (one input, batch 1) and fp32 model bytes of an arch, cached by id.

    By default the sum over the arch's latency terms, each built alone and counted once
    (every module of a network belongs to exactly one term, so the sum equals the whole
    network's count; tests check this against ``whole=True``, which builds the network).
    Summing cached terms costs microseconds instead of a build and a traced forward pass.
    """

    def __init__(self, space: SearchSpace, whole: bool = False) -> None:
        self.space = space
        self.whole = whole
        self._cache: dict[str, ModelCost] = {}

    def __call__(self, arch: Arch) -> ModelCost:
        hit = self._cache.get(arch.id)
        if hit is None:
            hit = self._cache[arch.id] = self._measure(arch) if self.whole else self._sum_terms(arch)
        return hit

    def _sum_terms(self, arch: Arch) -> ModelCost:
        costs = [self.block_cost(b) for b in self.space.latency_terms(arch)]
        return ModelCost(sum(c.params for c in costs), sum(c.flops for c in costs), sum(c.model_bytes for c in costs))

    def _measure(self, arch: Arch) -> ModelCost:
        import torch
        from torch.utils.flop_counter import FlopCounterMode

        model = self.space.build(arch).eval()
        params = sum(p.numel() for p in model.parameters())
        nbytes = sum(p.numel() * p.element_size() for p in model.parameters())
        nbytes += sum(b.numel() * b.element_size() for b in model.buffers())
        x = torch.zeros(1, *self.space.input_shape)
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x)
        return ModelCost(int(params), int(counter.get_total_flops()), int(nbytes))

    def block_cost(self, block: Any) -> ModelCost:
        """Parameters and FLOPs of one latency term, built alone on its input shape."""
        key = "block:" + block.key
        hit = self._cache.get(key)
        if hit is None:
            import torch
            from torch.utils.flop_counter import FlopCounterMode

            module = self.space.build_block(block).eval()
            params = sum(p.numel() for p in module.parameters())
            nbytes = sum(p.numel() * p.element_size() for p in module.parameters())
            nbytes += sum(b.numel() * b.element_size() for b in module.buffers())
            x = torch.zeros(1, *block.input_shape)
            with torch.no_grad(), FlopCounterMode(display=False) as counter:
                try:
                    module(x)
                except TypeError:  # two-input terms (additions) cost no FLOPs worth counting
                    pass
            hit = self._cache[key] = ModelCost(int(params), int(counter.get_total_flops()), int(nbytes))
        return hit

    def minimum(self, field: str) -> tuple[float, Arch]:
        """The smallest ``field`` (params or flops) any arch of the space has.

        Both add up over an arch's latency terms (every module of a network belongs to one
        term), so the space's exact cheapest-arch search applies with per-term costs.
        """
        arch = self.space.cheapest(lambda b: float(getattr(self.block_cost(b), field)))
        return float(getattr(self(arch), field)), arch
