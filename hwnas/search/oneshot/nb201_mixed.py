"""The NAS-Bench-201 supernet: every edge of the cell holds all five operations.

One set of architecture weights (6 edges x 5 operations, from the logits the search holds
beside the network) is shared by every cell, as in NAS-Bench-201's own DARTS and GDAS
baselines. ``forward(x, weights, index)``:

- DARTS: ``weights`` is ``softmax(alpha)`` and each edge returns the weighted sum of its
  operations (``index`` is None);
- GDAS: ``weights`` is a straight-through Gumbel-softmax sample (one-hot forward, soft
  gradients) and ``index`` the chosen operation per edge; each edge computes only its chosen
  operation, scaled by its weight (1 in the forward pass), so the step costs about what one
  cell of the space costs and the gradient reaches ``alpha`` through that weight.

The stem, reduction blocks, head and operations are the space's own modules, so a cell chosen
here is the cell ``space.build`` trains.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from hwnas.space.nb201 import EDGES, OPS
from hwnas.space.nb201_modules import Head, ReLUConvBN, ResBlock, Stem, make_op


class MixedCell(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        # "none" (OPS[0]) contributes zeros and holds no module
        self.edges = nn.ModuleList(nn.ModuleList(make_op(op, c) for op in OPS[1:]) for _ in EDGES)

    def _op(self, e: int, k: int, src: torch.Tensor, relu: dict[int, torch.Tensor], i: int) -> torch.Tensor:
        op = self.edges[e][k - 1]
        if isinstance(op, ReLUConvBN):  # the node's ReLU is shared by every convolution reading it
            if i not in relu:
                relu[i] = op[0](src)
            return op[2](op[1](relu[i]))
        return op(src)

    def forward(self, x: torch.Tensor, weights: torch.Tensor, index: Sequence[int] | None = None) -> torch.Tensor:
        nodes = [x]
        relu: dict[int, torch.Tensor] = {}
        for j in (1, 2, 3):
            acc = None
            for e, (to, i) in enumerate(EDGES):
                if to != j:
                    continue
                src = nodes[i]
                if index is not None:  # GDAS: the chosen operation only
                    k = int(index[e])
                    y = weights[e, k] * (src.mul(0.0) if k == 0 else self._op(e, k, src, relu, i))
                else:  # DARTS: the weighted mixture ("none" adds zero)
                    y = sum(weights[e, k] * self._op(e, k, src, relu, i) for k in range(1, len(OPS)))
                acc = y if acc is None else acc + y
            nodes.append(acc)
        return nodes[3]


class MixedNB201Net(nn.Module):
    """The benchmark's skeleton with ``MixedCell``s. Its parameters are the network weights only:
    the architecture logits live outside it, so the weight optimizer never sees them."""

    def __init__(self, channels: Sequence[int], cells_per_stage: int, num_classes: int) -> None:
        super().__init__()
        self.stem = Stem(3, channels[0])
        layers: list[nn.Module] = []
        for s, c in enumerate(channels):
            if s > 0:
                layers.append(ResBlock(channels[s - 1], c))
            layers += [MixedCell(c) for _ in range(cells_per_stage)]
        self.layers = nn.ModuleList(layers)
        self.head = Head(channels[-1], num_classes)

    def forward(self, x: torch.Tensor, weights: torch.Tensor, index: Sequence[int] | None = None) -> torch.Tensor:
        x = self.stem(x)
        for layer in self.layers:
            x = layer(x, weights, index) if isinstance(layer, MixedCell) else layer(x)
        return self.head(x)


class FixedPath(nn.Module):
    """The supernet restricted to one cell (a genome), as a plain ``model(x)`` for evaluation."""

    def __init__(self, net: MixedNB201Net, genome: Sequence[int]) -> None:
        super().__init__()
        self.net = net
        self.index = [int(g) for g in genome]
        self.register_buffer("onehot", torch.nn.functional.one_hot(torch.tensor(self.index), len(OPS)).float(),
                             persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x, self.onehot.to(x.device), self.index)
