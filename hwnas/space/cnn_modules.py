"""torch modules of the plain layer-chain space ``cnn``: one conv layer, the fully connected
head, the whole network."""

from __future__ import annotations

import torch
from torch import nn


def activation(name: str) -> nn.Module:
    if name == "relu":
        return nn.ReLU(inplace=True)
    if name == "hswish":
        return nn.Hardswish(inplace=True)
    if name == "sigmoid":
        return nn.Sigmoid()
    if name == "tanh":
        return nn.Tanh()
    raise ValueError(f"unknown activation {name!r}")


def pooling(name: str) -> nn.Module | None:
    # 2x2 windows with stride 2 and floor rounding (torch's default): odd sizes lose their last
    # row and column, which is what the space's shape walk (cnn.pool_out) assumes
    if name == "none":
        return None
    if name == "max2":
        return nn.MaxPool2d(2)
    if name == "avg2":
        return nn.AvgPool2d(2)
    raise ValueError(f"unknown pooling {name!r}")


class ConvLayer(nn.Sequential):
    """Conv (same padding, no bias) -> BatchNorm -> activation -> optional 2x2 pooling.

    BatchNorm keeps deep plain chains trainable with sigmoid/tanh too, and an exported graph
    folds it into the convolution, so the timed block is what inference runs."""

    def __init__(self, c_in: int, c_out: int, k: int, stride: int, pool: str, act: str) -> None:
        layers: list[nn.Module] = [
            nn.Conv2d(c_in, c_out, k, stride, k // 2, bias=False),
            nn.BatchNorm2d(c_out),
            activation(act),
        ]
        p = pooling(pool)
        if p is not None:
            layers.append(p)
        super().__init__(*layers)


class FCHead(nn.Module):
    """Global average pooling, an optional hidden fully connected layer with ReLU, the classifier.

    Pooling globally (rather than flattening) makes the classifier's input the last layer's
    channel count whatever the strides and pools did to the map, so the FC part has a few
    sizes instead of one per reachable resolution times channels.

    The hidden layer is a 1x1 convolution on the pooled 1x1 map, as MobileNetV3's head does:
    the same function as a linear layer, but the shared training loop's initialisation gives
    convolutions Kaiming weights and every ``nn.Linear`` the classifier's N(0, 0.01), under
    which a hidden linear layer barely trains (digits, 10 epochs: chance accuracy)."""

    def __init__(self, c_in: int, units: int, classes: int) -> None:
        super().__init__()
        self.hidden: nn.Module = nn.Identity()
        feat = c_in
        if units:
            self.hidden = nn.Sequential(nn.Conv2d(c_in, units, 1), nn.ReLU(inplace=True))
            feat = units
        self.classifier = nn.Linear(feat, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.hidden(x.mean((2, 3), keepdim=True)).flatten(1))


class CNNNet(nn.Module):
    def __init__(self, layers: list[nn.Module], head: nn.Module) -> None:
        super().__init__()
        self.layers = nn.Sequential(*layers)
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.layers(x))
