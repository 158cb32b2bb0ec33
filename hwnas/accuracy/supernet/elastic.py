"""Elastic (dynamic) ops of the weight-sharing supernet.

Each op holds the weights of the largest choice and runs a smaller one by taking the first
channels (channels are kept sorted by importance, so the first k are the ones worth keeping)
and, for depthwise and regular (Fused-MBConv) kxk kernels, the centre of the largest kernel,
optionally through OFA's learned kernel transformation. Parameter names mirror
``hwnas.space.mbconv_modules`` so that a subnet's state dict is the supernet's tensors sliced to
the subnet's shapes.
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


def centre_kernel(weight: torch.Tensor, kernels: tuple[int, ...], k: int,
                  transforms: nn.ParameterDict | None) -> torch.Tensor:
    """The k x k centre of an (O, I, K, K) kernel, stepping down through ``kernels`` (largest
    first); with ``transforms`` each step passes the crop through that size's learned matrix,
    shared by every (O, I) pair (OFA)."""
    w = weight
    size = kernels[0]
    for nxt in kernels[1:]:
        if size == k:
            break
        start = (size - nxt) // 2
        w = w[:, :, start:start + nxt, start:start + nxt]
        if transforms is not None:
            m = transforms[str(nxt)]
            w = (w.reshape(-1, nxt * nxt) @ m.t()).reshape(w.shape[0], w.shape[1], nxt, nxt)
        size = nxt
    if size != k:
        raise ValueError(f"kernel {k} is not one of {kernels}")
    return w


class _ElasticKernel(nn.Module):
    """The weight of the largest kernel and, with ``transform=True``, one learned (k*k x k*k)
    matrix per smaller kernel, initialised to identity."""

    def __init__(self, shape: tuple[int, int], kernels: tuple[int, ...], stride: int, transform: bool) -> None:
        super().__init__()
        self.kernels = tuple(sorted(set(kernels), reverse=True))
        self.k_max = self.kernels[0]
        self.stride = stride
        self.weight = nn.Parameter(torch.empty(*shape, self.k_max, self.k_max))
        nn.init.kaiming_normal_(self.weight, mode="fan_out")
        self.transform = transform
        self.transforms = nn.ParameterDict()
        if transform:
            for k in self.kernels[1:]:
                self.transforms[str(k)] = nn.Parameter(torch.eye(k * k))

    def _crop(self, weight: torch.Tensor, k: int) -> torch.Tensor:
        return centre_kernel(weight, self.kernels, k, self.transforms if self.transform else None)


class ElasticDepthwise(_ElasticKernel):
    """Depthwise kxk convolution whose smaller kernels are the centre of the largest one.

    With ``transform=True`` each step down (7 -> 5 -> 3) passes the cropped kernel through a
    learned (k*k x k*k) matrix shared by the layer's channels, initialised to identity (OFA);
    otherwise the crop is used as is.
    """

    def __init__(self, channels: int, kernels: tuple[int, ...], stride: int, transform: bool) -> None:
        super().__init__((channels, 1), kernels, stride, transform)

    def kernel(self, k: int, channels: int) -> torch.Tensor:
        return self._crop(self.weight[:channels], k)

    def forward(self, x: torch.Tensor, k: int) -> torch.Tensor:
        c = x.shape[1]
        return F.conv2d(x, self.kernel(k, c), None, self.stride, k // 2, 1, c)


class ElasticConv(_ElasticKernel):
    """Regular kxk convolution (a Fused-MBConv block's): input channels follow the input, output
    channels are chosen per call, smaller kernels are the centre of the largest (as depthwise)."""

    def __init__(self, c_in: int, c_out: int, kernels: tuple[int, ...], stride: int, transform: bool) -> None:
        super().__init__((c_out, c_in), kernels, stride, transform)

    def kernel(self, k: int, c_out: int, c_in: int) -> torch.Tensor:
        return self._crop(self.weight[:c_out, :c_in], k)

    def forward(self, x: torch.Tensor, k: int, c_out: int) -> torch.Tensor:
        return F.conv2d(x, self.kernel(k, c_out, x.shape[1]), None, self.stride, k // 2)


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
