"""torch modules of the MBConv spaces (stem, MBConv and Fused-MBConv blocks, head, whole network)."""

from __future__ import annotations

import torch
from torch import nn


def activation(name: str) -> nn.Module:
    if name == "relu":
        return nn.ReLU(inplace=True)
    if name == "hswish":
        return nn.Hardswish(inplace=True)
    raise ValueError(f"unknown activation {name!r}")


def activate(name: str, x: torch.Tensor) -> torch.Tensor:
    """``activation(name)(x)`` without a module: for the supernet, whose activation is chosen per call."""
    if name == "relu":
        return torch.relu(x)
    if name == "hswish":
        return nn.functional.hardswish(x)
    raise ValueError(f"unknown activation {name!r}")


class ConvBNAct(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, k: int, stride: int = 1, groups: int = 1, act: str | None = "relu") -> None:
        layers: list[nn.Module] = [
            nn.Conv2d(c_in, c_out, k, stride, k // 2, groups=groups, bias=False),
            nn.BatchNorm2d(c_out),
        ]
        if act is not None:
            layers.append(activation(act))
        super().__init__(*layers)


class SqueezeExcite(nn.Module):
    """MobileNetV3's SE: pool, reduce by 4, ReLU, expand, hard-sigmoid gate."""

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        from hwnas.space.mbconv import make_divisible

        mid = make_divisible(channels / reduction, 8)
        self.reduce = nn.Conv2d(channels, mid, 1)
        self.expand = nn.Conv2d(mid, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        s = torch.relu(self.reduce(s))
        return x * nn.functional.hardsigmoid(self.expand(s))


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand, kxk depthwise, optional SE, 1x1 project (+ identity)."""

    def __init__(self, c_in: int, c_out: int, k: int, stride: int, expand: int, se: bool, act: str) -> None:
        super().__init__()
        mid = c_in * expand
        self.expand = ConvBNAct(c_in, mid, 1, act=act) if expand != 1 else nn.Identity()
        self.depthwise = ConvBNAct(mid, mid, k, stride, groups=mid, act=act)
        self.se = SqueezeExcite(mid) if se else nn.Identity()
        self.project = ConvBNAct(mid, c_out, 1, act=None)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.se(self.depthwise(self.expand(x))))
        return x + y if self.residual else y


class FusedMBConv(nn.Module):
    """EfficientNetV2's Fused-MBConv: kxk regular conv to ``c_in * expand`` (the block's stride),
    optional SE, 1x1 project (+ identity). A regular conv runs well in INT8 where a depthwise one
    does not. ``expand == 1`` keeps the projection, so the supernet shares one kxk weight
    across every expand ratio."""

    def __init__(self, c_in: int, c_out: int, k: int, stride: int, expand: int, se: bool, act: str) -> None:
        super().__init__()
        mid = c_in * expand
        self.conv = ConvBNAct(c_in, mid, k, stride, act=act)
        self.se = SqueezeExcite(mid) if se else nn.Identity()
        self.project = ConvBNAct(mid, c_out, 1, act=None)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.se(self.conv(x)))
        return x + y if self.residual else y


class Stem(ConvBNAct):
    def __init__(self, c_in: int, c_out: int, stride: int, act: str) -> None:
        super().__init__(c_in, c_out, 3, stride, act=act)


class PooledClassifier(nn.Module):
    """``self.conv`` (set by the subclass: plain, or the supernet's elastic one) to ``c_mid``
    channels, global average pool, optional hidden linear layer, dropout, classifier."""

    def _classifier(self, c_mid: int, hidden: int, classes: int, dropout: float) -> None:
        feat = c_mid
        self.hidden: nn.Module = nn.Identity()
        if hidden:
            self.hidden = nn.Sequential(nn.Linear(c_mid, hidden), nn.Hardswish(inplace=True))
            feat = hidden
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.classifier = nn.Linear(feat, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x).mean((2, 3))
        return self.classifier(self.dropout(self.hidden(x)))


class Head(PooledClassifier):
    """1x1 conv to ``c_mid``, global average pool, optional hidden linear layer, classifier."""

    def __init__(self, c_in: int, c_mid: int, hidden: int, classes: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.conv = ConvBNAct(c_in, c_mid, 1, act="hswish")
        self._classifier(c_mid, hidden, classes, dropout)


class MBConvNet(nn.Module):
    def __init__(self, stem: nn.Module, blocks: list[nn.Module], head: nn.Module) -> None:
        super().__init__()
        self.stem = stem
        self.blocks = nn.Sequential(*blocks)
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)))
