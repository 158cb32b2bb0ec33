"""Zero-cost proxies: scores of an untrained network, computed on a few real images, that rank
architectures by how well they will train.

Each proxy takes a freshly initialised module (torch's default initialisation, seeded) and one
``ProxyBatch`` of real, unaugmented training images, and returns a float (higher: better):

- ``naswot``: log-determinant of the kernel of binary activation patterns over the batch
  (Mellor et al., "Neural Architecture Search without Training", ICML 2021).
- ``synflow``: sum of |theta * dR/dtheta| of the sign-linearised network on an all-ones input,
  in float64 (Tanaka et al. 2020; Abdelfattah et al., "Zero-Cost Proxies", ICLR 2021).
- ``snip``: sum of |theta * dL/dtheta| of the cross-entropy loss (Lee et al. 2019).
- ``grad_norm``: sum over weight tensors of the L2 norm of dL/dtheta.
- ``jacov``: how uncorrelated the input Jacobians of different images are (Mellor et al. 2020).
- ``params`` and ``flops``: the counts, as the baselines every proxy must beat.

Weights are those of convolutions and linear layers. Proxies are deterministic for a given
module, batch and thread count.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from hwnas.errors import UserError
from hwnas.registry import Registry


@dataclass
class ProxyBatch:
    """Normalised images (N, 3, S, S) and their labels."""

    x: torch.Tensor
    y: torch.Tensor
    num_classes: int


ProxyFn = Callable[[nn.Module, ProxyBatch], float]
PROXIES: Registry[ProxyFn] = Registry("zero-cost proxy")



def _weights(model: nn.Module) -> list[torch.Tensor]:
    return [m.weight for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)) and m.weight.requires_grad]


def _loss_gradients(model: nn.Module, batch: ProxyBatch) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    model.train()
    model.zero_grad(set_to_none=True)
    loss = F.cross_entropy(model(batch.x), batch.y)
    loss.backward()
    ws = _weights(model)
    grads = [w.grad if w.grad is not None else torch.zeros_like(w) for w in ws]
    return ws, grads


def gradient_scores(model: nn.Module, batch: ProxyBatch) -> dict[str, float]:
    """``snip`` and ``grad_norm`` from one backward pass of the cross-entropy loss."""
    ws, grads = _loss_gradients(model, batch)
    return {"grad_norm": float(sum(g.norm(2) for g in grads)),
            "snip": float(sum((w.detach() * g).abs().sum() for w, g in zip(ws, grads)))}


@PROXIES.register("grad_norm", "sum over weight tensors of the L2 norm of the loss gradient")
def grad_norm(model: nn.Module, batch: ProxyBatch) -> float:
    return gradient_scores(model, batch)["grad_norm"]


@PROXIES.register("snip", "connection sensitivity: sum of |weight x loss gradient|")
def snip(model: nn.Module, batch: ProxyBatch) -> float:
    return gradient_scores(model, batch)["snip"]


@PROXIES.register("synflow", "synaptic flow of the sign-linearised net on an all-ones input (float64)")
def synflow(model: nn.Module, batch: ProxyBatch) -> float:
    net = copy.deepcopy(model).double()
    # BatchNorm in eval form with fresh statistics is (almost) the identity: a batch of one
    # constant image would otherwise be normalised to zero and every score would be 0
    net.eval()
    with torch.no_grad():
        for p in net.parameters():
            p.abs_()
        for m in net.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.reset_running_stats()
    net.zero_grad(set_to_none=True)
    ones = torch.ones((1, *batch.x.shape[1:]), dtype=torch.float64, device=batch.x.device)
    net(ones).sum().backward()
    total = 0.0
    for w in _weights(net):
        if w.grad is not None:
            total += float((w.detach() * w.grad).abs().sum())
    return total


class _ActivationCodes:
    """Accumulates NASWOT's kernel K[i, j] = units where images i and j are on the same side of
    zero at the input of every activation (ReLU, hard-swish, tanh, ...: all switch at zero)."""

    KINDS = (nn.ReLU, nn.ReLU6, nn.Hardswish, nn.LeakyReLU, nn.SiLU, nn.GELU, nn.Tanh, nn.Sigmoid)

    def __init__(self, model: nn.Module, n: int) -> None:
        self.K = torch.zeros((n, n), dtype=torch.float64)
        self.handles = [m.register_forward_hook(self._hook) for m in model.modules() if isinstance(m, self.KINDS)]

    def _hook(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        x = inputs[0] if not getattr(module, "inplace", False) else output
        c = (x.detach().reshape(x.shape[0], -1) > 0).double()
        self.K += c @ c.t() + (1.0 - c) @ (1.0 - c).t()

    def close(self) -> None:
        for h in self.handles:
            h.remove()


@PROXIES.register("naswot", "log-determinant of the kernel of binary activation patterns (NASWOT)")
@torch.no_grad()
def naswot(model: nn.Module, batch: ProxyBatch) -> float:
    model.train()
    codes = _ActivationCodes(model, batch.x.shape[0])
    if not codes.handles:
        codes.close()
        raise UserError("naswot reads activation patterns, and this network has no activation modules "
                        "(nn.ReLU, nn.Hardswish, ...); use another proxy")
    try:
        model(batch.x)
    finally:
        codes.close()
    sign, logdet = torch.linalg.slogdet(codes.K)
    # a singular kernel (two images with identical patterns, or no activations at all) is the
    # worst score, not an error
    return float(logdet) if float(sign) > 0 and math.isfinite(float(logdet)) else -1e9


@PROXIES.register("jacov", "how uncorrelated the input Jacobians of the batch's images are")
def jacov(model: nn.Module, batch: ProxyBatch) -> float:
    model.train()
    model.zero_grad(set_to_none=True)
    x = batch.x.clone().requires_grad_(True)
    model(x).sum().backward()
    jac = x.grad.reshape(x.shape[0], -1).double()
    if not torch.isfinite(jac).all() or float(jac.abs().max()) == 0.0:
        return -1e9
    corr = torch.corrcoef(jac)
    corr = torch.nan_to_num(corr, nan=1.0)  # a constant Jacobian row is maximally uninformative
    v = torch.linalg.eigvalsh(corr)
    k = 1e-5
    return float(-torch.sum(torch.log(v.clamp_min(0) + k) + 1.0 / (v.clamp_min(0) + k)))


@PROXIES.register("params", "number of parameters (a baseline)")
def params(model: nn.Module, batch: ProxyBatch) -> float:
    return float(sum(p.numel() for p in model.parameters()))


@PROXIES.register("flops", "FLOPs of one image (a baseline)")
@torch.no_grad()
def flops(model: nn.Module, batch: ProxyBatch) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    model.eval()
    with FlopCounterMode(display=False) as counter:
        model(batch.x[:1])
    return float(counter.get_total_flops())


def compute_proxy(name: str, model: nn.Module, batch: ProxyBatch) -> float:
    """``PROXIES[name]`` on ``model`` (changed in place: gradients, BN statistics)."""
    value = PROXIES.get(name)(model, batch)
    if not math.isfinite(value):
        value = 1e300 if value > 0 else -1e9  # synflow of a huge net overflows float64
    return value


def list_proxies() -> list[str]:
    return PROXIES.names()
