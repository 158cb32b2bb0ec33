"""Elastic (dynamic) ops of the weight-sharing supernet.

Each op holds the weights of the largest choice and runs a smaller one by taking the first
channels (channels are kept sorted by importance, so the first k are the ones worth keeping)
and, for depthwise kernels, the centre of the largest kernel, optionally through OFA's learned
kernel transformation. Parameter names mirror ``hwnas.space.mbconv_modules`` so that a subnet's
state dict is the supernet's tensors sliced to the subnet's shapes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ElasticPointwise(nn.Conv2d):
    """1x1 convolution; input channels follow the input, output channels are chosen per call."""

    def __init__(self, c_in: int, c_out: int, bias: bool = False) -> None:
        super().__init__(c_in, c_out, 1, bias=bias)

    def forward(self, x: torch.Tensor, c_out: int | None = None) -> torch.Tensor:  # type: ignore[override]
        c_out = c_out or self.out_channels
        w = self.weight[:c_out, : x.shape[1]]
        b = self.bias[:c_out] if self.bias is not None else None
        return F.conv2d(x, w, b)


class ElasticDepthwise(nn.Module):
    """Depthwise kxk convolution whose smaller kernels are the centre of the largest one.

    With ``transform=True`` each step down (7 -> 5 -> 3) passes the cropped kernel through a
    learned (k*k x k*k) matrix shared by the layer's channels, initialised to identity (OFA);
    otherwise the crop is used as is.
    """

    def __init__(self, channels: int, kernels: tuple[int, ...], stride: int, transform: bool) -> None:
        super().__init__()
        self.kernels = tuple(sorted(set(kernels), reverse=True))
        self.k_max = self.kernels[0]
        self.stride = stride
        self.weight = nn.Parameter(torch.empty(channels, 1, self.k_max, self.k_max))
        nn.init.kaiming_normal_(self.weight, mode="fan_out")
        self.transform = transform
        self.transforms = nn.ParameterDict()
        if transform:
            for k in self.kernels[1:]:
                self.transforms[str(k)] = nn.Parameter(torch.eye(k * k))

    def kernel(self, k: int, channels: int) -> torch.Tensor:
        w = self.weight[:channels]
        size = self.k_max
        for nxt in self.kernels[1:]:
            if size == k:
                break
            start = (size - nxt) // 2
            w = w[:, :, start:start + nxt, start:start + nxt]
            if self.transform:
                m = self.transforms[str(nxt)]
                w = (w.reshape(channels, nxt * nxt) @ m.t()).reshape(channels, 1, nxt, nxt)
            size = nxt
        if size != k:
            raise ValueError(f"kernel {k} is not one of {self.kernels}")
        return w

    def forward(self, x: torch.Tensor, k: int) -> torch.Tensor:
        c = x.shape[1]
        return F.conv2d(x, self.kernel(k, c), None, self.stride, k // 2, 1, c)


class ElasticBatchNorm(nn.BatchNorm2d):
    """BatchNorm over the first C channels; running statistics of those channels are updated in place."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        c = x.shape[1]
        if c == self.num_features:
            return super().forward(x)
        training = self.training or not self.track_running_stats
        momentum = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:
                momentum = 1.0 / float(self.num_batches_tracked)
        return F.batch_norm(
            x,
            self.running_mean[:c] if self.running_mean is not None else None,
            self.running_var[:c] if self.running_var is not None else None,
            self.weight[:c], self.bias[:c], training, momentum, self.eps)


class ElasticSE(nn.Module):
    """MobileNetV3 squeeze-and-excitation over the first C channels; its middle width follows C
    exactly as ``SqueezeExcite(C)`` computes it."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        from hwnas.space.mbconv import make_divisible

        self.reduce = ElasticPointwise(channels, make_divisible(channels / 4, 8), bias=True)
        self.expand = ElasticPointwise(make_divisible(channels / 4, 8), channels, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from hwnas.space.mbconv import make_divisible

        c = x.shape[1]
        s = x.mean((2, 3), keepdim=True)
        s = torch.relu(self.reduce(s, make_divisible(c / 4, 8)))
        return x * F.hardsigmoid(self.expand(s, c))
