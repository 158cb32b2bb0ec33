"""torch modules of the NAS-Bench-201 skeleton (as in the benchmark's reference code)."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from hwnas.space.nb201 import live_edges, needs_zero, zero_folding


class ReLUConvBN(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, k: int, stride: int = 1) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, k, stride, k // 2, bias=False),
            nn.BatchNorm2d(c_out),
        )


def make_op(op: str, c: int) -> nn.Module:
    if op == "skip_connect":
        return nn.Identity()
    if op == "nor_conv_1x1":
        return ReLUConvBN(c, c, 1)
    if op == "nor_conv_3x3":
        return ReLUConvBN(c, c, 3)
    if op == "avg_pool_3x3":
        return nn.AvgPool2d(3, 1, 1, count_include_pad=False)
    raise ValueError(f"unknown nb201 op {op!r}")


def add_channel_shift(x: torch.Tensor, shift: torch.Tensor, c: int) -> torch.Tensor:
    """``x + shift`` for a per-channel constant ``shift`` of shape (1, c, 1, 1).

    In an ONNX export it is written as a BatchNormalization with unit scale, zero mean, unit
    variance and zero epsilon, which gives the same values bit for bit. ONNX Runtime keeps that
    node in its blocked (NCHWc) layout as a 1x1 depthwise convolution and fuses the adds around
    it, where a broadcast Add of a constant takes the tensor out of the blocked layout and every
    convolution after it back in: 30 layout conversions over the 15 cells of a network whose
    node sums carry a shift, and 14-28% of such a network's time. Eager torch keeps the Add (its
    batch-norm kernel costs such a network 6-8% more)."""
    if not torch.onnx.is_in_onnx_export():
        return x + shift
    zeros = torch.zeros(c, dtype=x.dtype, device=x.device)
    ones = torch.ones(c, dtype=x.dtype, device=x.device)
    return F.batch_norm(x, zeros, ones, None, shift.reshape(c), False, 0.0, 0.0)


class AddTwo(nn.Module):
    """The node sum, timed alone: x + x stands for adding two tensors of this shape."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + x


class Zero(nn.Module):
    """The zero tensor a node with no inputs holds ("none" on every edge into it)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mul(0.0)


class Shift(nn.Module):
    """What a ReLU-conv-BN edge reading a zero node adds in inference (see ``Cell``), timed
    alone: its BatchNorm's shift. It holds the edge's convolution too, which a zero input never
    reaches, so that its parameters are the edge's."""

    def __init__(self, c: int, k: int, in_sum: bool = False) -> None:
        super().__init__()
        self.c = c
        self.in_sum = in_sum  # a node sum with no convolution to take the shift into its bias
        self.conv = nn.Conv2d(c, c, k, 1, k // 2, bias=False)
        self.bn = nn.BatchNorm2d(c)
        nn.init.normal_(self.bn.bias, std=0.1)  # a trained shift is not zero; a runtime could drop an all-zero one

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bn = self.bn  # in eval form whatever the mode: the statistics of a 1x1 map of zeros are not a batch's
        zeros = torch.zeros((1, self.c, 1, 1), dtype=x.dtype, device=x.device)
        shift = F.batch_norm(zeros, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)
        return add_channel_shift(x, shift, self.c) if self.in_sum else x + shift


class Cell(nn.Module):
    def __init__(self, ops: Sequence[str], c: int) -> None:
        super().__init__()
        self.c = c
        self.edges = [(j, i) for j, i, _ in live_edges(ops)]
        self.ops = nn.ModuleDict({f"{i}->{j}": make_op(op, c) for j, i, op in live_edges(ops)})
        # in inference, zero nodes are folded away (same function; see ``zero_folding``)
        self.folded = zero_folding(ops) if needs_zero(ops) else None

    def _edge(self, i: int, j: int, src: torch.Tensor, relu: dict[int, torch.Tensor],
              pool: dict[int, torch.Tensor]) -> torch.Tensor:
        op = self.ops[f"{i}->{j}"]
        if isinstance(op, ReLUConvBN):
            if i not in relu:
                relu[i] = op[0](src)
            return op[2](op[1](relu[i]))
        if isinstance(op, nn.AvgPool2d):
            if i not in pool:
                pool[i] = op(src)
            return pool[i]
        return op(src)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.folded is not None and not self.training:
            return self._forward_folded(x)
        nodes: list[torch.Tensor | None] = [x, None, None, None]
        zero: torch.Tensor | None = None  # computed once per cell, where some node is zero
        relu: dict[int, torch.Tensor] = {}  # a node's ReLU, shared by the convolutions that read it
        pool: dict[int, torch.Tensor] = {}  # a node's average pooling, shared by the edges that pool it
        for j in (1, 2, 3):
            acc = None
            for (to, i) in self.edges:
                if to != j:
                    continue
                src = nodes[i]
                if src is None:  # a node with no inputs is zero ("none" on every edge into it)
                    zero = x.mul(0.0) if zero is None else zero
                    src = zero
                y = self._edge(i, j, src, relu, pool)
                acc = y if acc is None else acc + y
            nodes[j] = acc
        if nodes[3] is None:
            return x.mul(0.0) if zero is None else zero
        return nodes[3]

    def _forward_folded(self, x: torch.Tensor) -> torch.Tensor:
        """Inference without zero tensors: a convolution of a zero node adds its BatchNorm's
        shift (a per-channel constant) to the first convolution among the node's inputs, where a
        runtime folds it into that convolution's bias, or else to the node's sum."""
        nodes: list[torch.Tensor | None] = [x, None, None, None]
        relu: dict[int, torch.Tensor] = {}
        pool: dict[int, torch.Tensor] = {}
        # the channel count from the module, not from x: an export with a dynamic batch axis
        # would otherwise compute these zeros (and the shifts from them) at run time
        zeros = torch.zeros((1, self.c, 1, 1), dtype=x.dtype, device=x.device)
        for j in (1, 2, 3):
            plan = self.folded[j]
            ys, first_conv = [], None
            for i, op in plan["dynamic"]:
                if first_conv is None and op.startswith("nor_conv"):
                    first_conv = len(ys)
                ys.append(self._edge(i, j, nodes[i], relu, pool))
            shift = sum(self.ops[f"{i}->{j}"][2](zeros) for i, _ in plan["shift"]) if plan["shift"] else None
            if shift is not None and first_conv is not None:
                ys[first_conv] = ys[first_conv] + shift
                shift = None
            total = sum(ys[1:], ys[0]) if ys else None
            if shift is not None:  # no convolution among the node's inputs to take it
                total = shift if total is None else add_channel_shift(total, shift, self.c)
            nodes[j] = total
        return nodes[3]


class ResBlock(nn.Module):
    """The residual reduction block: two 3x3 ReLU-conv-BN (first stride 2) + pooled 1x1 shortcut."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, 2)
        self.conv_b = ReLUConvBN(c_out, c_out, 3, 1)
        self.downsample = nn.Sequential(nn.AvgPool2d(2, 2), nn.Conv2d(c_in, c_out, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.downsample(x) + self.conv_b(self.conv_a(x))


class Stem(nn.Sequential):
    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__(nn.Conv2d(c_in, c_out, 3, 1, 1, bias=False), nn.BatchNorm2d(c_out))


class Head(nn.Module):
    def __init__(self, c: int, classes: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(c)
        self.classifier = nn.Linear(c, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.relu(self.bn(x)).mean((2, 3)))


class NB201Net(nn.Module):
    def __init__(self, ops: Sequence[str], channels: Sequence[int], cells_per_stage: int, num_classes: int) -> None:
        super().__init__()
        layers: list[nn.Module] = [Stem(3, channels[0])]
        for s, c in enumerate(channels):
            if s > 0:
                layers.append(ResBlock(channels[s - 1], c))
            layers += [Cell(ops, c) for _ in range(cells_per_stage)]
        self.stem = layers[0]
        self.cells = nn.Sequential(*layers[1:])
        self.head = Head(channels[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.cells(self.stem(x)))
