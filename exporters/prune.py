"""Structured channel pruning with torch-pruning's dependency graph.

Channels are removed from the tensors themselves (a pruned conv is a smaller conv), so the
exported graph does less work; masks would leave every kernel its original size. Coupled
layers (a residual add, the depthwise conv behind an expansion, an SE block's gates) are
pruned together because the dependency graph groups them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from hwnas.errors import UserError


@dataclass(frozen=True)
class PruneResult:
    ratio: float
    params_before: int
    params_after: int


def check_ratio(ratio: float) -> float:
    if not (0.0 < float(ratio) < 1.0):
        raise UserError(f"--prune must be a fraction of channels strictly between 0 and 1, got {ratio:g}")
    return float(ratio)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def output_layers(model: nn.Module) -> list[nn.Module]:
    """The layers whose output channels are the model's outputs (never pruned): the last
    Linear or Conv2d in module order, the classifier in every network hwnas builds."""
    last = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    return last[-1:]


def prune_channels(model: nn.Module, sample_input: torch.Tensor, ratio: float, *,
                   ignored: list[nn.Module] | None = None, round_to: int | None = None) -> PruneResult:
    """Remove ``ratio`` of the prunable channels of ``model`` in place, smallest L1 norm first."""
    import torch_pruning as tp

    ratio = check_ratio(ratio)
    model.eval()
    before = count_params(model)
    with torch.no_grad():
        shape_before = tuple(model(sample_input).shape)
    pruner = tp.pruner.MetaPruner(
        model, sample_input,
        importance=tp.importance.MagnitudeImportance(p=1),
        pruning_ratio=ratio,
        ignored_layers=list(ignored) if ignored is not None else output_layers(model),
        round_to=round_to,
        global_pruning=False,  # the same share from every layer keeps the shape of the design the search chose
    )
    pruner.step()
    after = count_params(model)
    with torch.no_grad():
        shape_after = tuple(model(sample_input).shape)
    if shape_after != shape_before:  # never expected; a broken model must not be exported silently
        raise RuntimeError(f"pruning changed the output shape {shape_before} -> {shape_after}")
    return PruneResult(ratio, before, after)
