"""The weight-sharing supernet of an MBConv space (elastic depth, width, kernel, expand ratio,
and, where the space searches them, block kind, activation and SE per stage).

``Supernet(space).set_active(arch)`` makes the supernet compute ``arch``; ``extract(arch)``
returns ``space.build(arch)`` holding the subnet's weights, computing the same function.
Block ``i`` of stage ``s`` in the supernet is ``blocks.{s * max_depth + i}``; a subnet keeps the
first ``depths[s]`` blocks of each stage (elastic depth), the first ``widths[s]`` output
channels of each stage, the first ``c_in * expand`` middle channels of each block and the
centre of each depthwise or fused kxk kernel.

A space with several block kinds gives each block slot one branch per kind with its own weights
(``blocks.{j}.mbconv.*``, ``blocks.{j}.fused.*``): a fused conv and a depthwise conv compute
different features, so they share nothing. A slot of a single kind is that kind's block itself,
so the default space's parameter names (and old checkpoints) are unchanged. SE weights exist in
every stage whose SE can be on and are skipped when the arch turns it off; the activation is
chosen per call and has no weights.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from hwnas.accuracy.supernet.elastic import ElasticBatchNorm, ElasticConv, ElasticDepthwise, ElasticPointwise, ElasticSE
from hwnas.errors import UserError
from hwnas.space import Arch, MBConvSpace, SearchSpace
from hwnas.space.mbconv import StageStyle
from hwnas.space.mbconv_modules import PooledClassifier, Stem, activate, activation


class ElasticConvBN(nn.Module):
    """conv + BN (+ activation), named ``0``/``1``/``2`` as ``ConvBNAct`` so state dicts line up."""

    def __init__(self, conv: nn.Module, channels: int, act: str | None) -> None:
        super().__init__()
        self.add_module("0", conv)
        self.add_module("1", ElasticBatchNorm(channels))
        if act is not None:
            self.add_module("2", activation(act))

    def __getitem__(self, i: int) -> nn.Module:
        return list(self._modules.values())[i]

    def forward(self, x: torch.Tensor, *conv_args: Any, act: str | None = None) -> torch.Tensor:
        """``act``: the activation of this call (None: the one built in)."""
        mods = list(self._modules.values())
        x = mods[1](mods[0](x, *conv_args))
        if len(mods) <= 2:
            return x
        return mods[2](x) if act is None else activate(act, x)


class ElasticMBConv(nn.Module):
    """MBConv slot; ``se``: SE weights exist (the stage's SE can be on)."""

    def __init__(self, c_in_max: int, c_out_max: int, kernels: tuple[int, ...], expand_max: int, stride: int,
                 se: bool, act: str, kernel_transform: bool) -> None:
        super().__init__()
        mid = c_in_max * expand_max
        self.stride = stride
        self.always_residual = stride == 1 and c_in_max == c_out_max  # later blocks of a stage
        self.expand = ElasticConvBN(ElasticPointwise(c_in_max, mid), mid, act)
        self.depthwise = ElasticConvBN(ElasticDepthwise(mid, kernels, stride, kernel_transform), mid, act)
        self.se = ElasticSE(mid) if se else None
        self.project = ElasticConvBN(ElasticPointwise(mid, c_out_max), c_out_max, None)

    def forward(self, x: torch.Tensor, k: int, e: int, c_out: int, style: StageStyle | None = None) -> torch.Tensor:
        """``style`` None: the activation and SE the slot was built with."""
        c_in = x.shape[1]
        act = style.act if style is not None else None
        h = self.expand(x, c_in * e, act=act) if e != 1 else x
        h = self.depthwise(h, k, act=act)
        if self.se is not None and (style is None or style.se):
            h = self.se(h)
        y = self.project(h, c_out)
        return x + y if self.stride == 1 and c_in == c_out else y

    def middle_layers(self) -> list[tuple[torch.Tensor, int]]:
        """(tensor, axis) of everything indexed by the middle channels, for channel sorting."""
        return [(self.expand[0].weight, 0), *_bn_layers(self.expand[1]), (self.depthwise[0].weight, 0),
                *_bn_layers(self.depthwise[1]), *_se_layers(self.se), (self.project[0].weight, 1)]


class ElasticFusedMBConv(nn.Module):
    """Fused-MBConv slot: kxk regular conv to the middle channels (elastic kernel by centre crop,
    elastic expand by channel slicing), optional SE, 1x1 project; names as ``FusedMBConv``."""

    def __init__(self, c_in_max: int, c_out_max: int, kernels: tuple[int, ...], expand_max: int, stride: int,
                 se: bool, act: str, kernel_transform: bool) -> None:
        super().__init__()
        mid = c_in_max * expand_max
        self.stride = stride
        self.always_residual = stride == 1 and c_in_max == c_out_max
        self.conv = ElasticConvBN(ElasticConv(c_in_max, mid, kernels, stride, kernel_transform), mid, act)
        self.se = ElasticSE(mid) if se else None
        self.project = ElasticConvBN(ElasticPointwise(mid, c_out_max), c_out_max, None)

    def forward(self, x: torch.Tensor, k: int, e: int, c_out: int, style: StageStyle | None = None) -> torch.Tensor:
        c_in = x.shape[1]
        h = self.conv(x, k, c_in * e, act=style.act if style is not None else None)
        if self.se is not None and (style is None or style.se):
            h = self.se(h)
        y = self.project(h, c_out)
        return x + y if self.stride == 1 and c_in == c_out else y

    def middle_layers(self) -> list[tuple[torch.Tensor, int]]:
        return [(self.conv[0].weight, 0), *_bn_layers(self.conv[1]), *_se_layers(self.se),
                (self.project[0].weight, 1)]


ELASTIC_BLOCKS: dict[str, type[nn.Module]] = {"mbconv": ElasticMBConv, "fused": ElasticFusedMBConv}


class ElasticChoice(nn.Module):
    """A block slot of a space with several block kinds: one branch per kind, named by the kind."""

    def __init__(self, branches: dict[str, nn.Module]) -> None:
        super().__init__()
        for kind, branch in branches.items():
            self.add_module(kind, branch)

    def branch(self, kind: str) -> nn.Module:
        return self._modules[kind]

    def forward(self, x: torch.Tensor, k: int, e: int, c_out: int, style: StageStyle) -> torch.Tensor:
        return self._modules[style.kind](x, k, e, c_out, style)


def _slot(kinds: tuple[str, ...], *args: Any) -> nn.Module:
    """One block slot: the kind's elastic block, or a choice between kinds."""
    branches = {kind: ELASTIC_BLOCKS[kind](*args) for kind in kinds}
    return branches[kinds[0]] if len(kinds) == 1 else ElasticChoice(branches)


def _branches(slot: nn.Module) -> list[nn.Module]:
    return list(slot.children()) if isinstance(slot, ElasticChoice) else [slot]


def _bn_layers(bn: nn.BatchNorm2d) -> list[tuple[torch.Tensor, int]]:
    return [(t, 0) for t in (bn.weight, bn.bias, bn.running_mean, bn.running_var)]


def _se_layers(se: ElasticSE | None) -> list[tuple[torch.Tensor, int]]:
    return [] if se is None else [(se.reduce.weight, 1), (se.expand.weight, 0), (se.expand.bias, 0)]


class ElasticHead(PooledClassifier):
    def __init__(self, c_in_max: int, c_mid: int, hidden: int, classes: int, dropout: float) -> None:
        super().__init__()
        self.conv = ElasticConvBN(ElasticPointwise(c_in_max, c_mid), c_mid, "hswish")
        self._classifier(c_mid, hidden, classes, dropout)


class Supernet(nn.Module):
    def __init__(self, space: SearchSpace, kernel_transform: bool = False, num_classes: int | None = None) -> None:
        super().__init__()
        if not isinstance(space, MBConvSpace):
            raise UserError(f"a supernet needs an MBConv space (mbv3-32, mbv3-224), not {space.name!r}")
        self.space = space
        c = space.config
        self.kernel_transform = kernel_transform
        self.num_classes = num_classes or c.num_classes
        self.max_depth = max(c.depths)
        self.stem = Stem(3, c.stem_channels, c.stem_stride, "hswish")
        blocks = []
        c_in = c.stem_channels
        for s in range(len(c.strides)):
            w = max(c.widths[s])
            choices = c.stage_choices(s)
            for b in range(self.max_depth):
                blocks.append(_slot(choices.kind, c_in if b == 0 else w, w, c.kernels, max(c.expands),
                                    c.strides[s] if b == 0 else 1, True in choices.se, choices.act[0],
                                    kernel_transform))
            c_in = w
        self.blocks = nn.ModuleList(blocks)
        self.head = ElasticHead(c_in, c.head_channels, c.head_hidden, self.num_classes, c.dropout)
        self._active: Arch = space.largest()
        _init_weights(self)

    # ---- which subnet runs ----------------------------------------------------------
    def set_active(self, arch: Arch | dict | str) -> Arch:
        self._active = self.space.parse(arch)
        return self._active

    @property
    def active(self) -> Arch:
        return self._active

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self._active
        x = self.stem(x)
        for s, (d, w) in enumerate(zip(a["depths"], a["widths"])):
            style = self.space.stage_style(a, s)
            for b in range(d):
                x = self.blocks[s * self.max_depth + b](x, a["kernels"][s][b], a["expands"][s][b], w, style)
        return self.head(x)

    # ---- subnets --------------------------------------------------------------------
    def active_blocks(self, arch: Arch) -> list[tuple[int, int, int, str]]:
        """(subnet block index, supernet block index, kernel, block kind) of each block the arch uses."""
        out, i = [], 0
        for s, d in enumerate(arch["depths"]):
            kind = self.space.stage_style(arch, s).kind
            for b in range(d):
                out.append((i, s * self.max_depth + b, arch["kernels"][s][b], kind))
                i += 1
        return out

    def _source(self, sup: int, kind: str) -> tuple[nn.Module, str]:
        """The branch of supernet block ``sup`` that computes ``kind``, and its state-dict prefix."""
        slot = self.blocks[sup]
        if isinstance(slot, ElasticChoice):
            return slot.branch(kind), f"blocks.{sup}.{kind}."
        return slot, f"blocks.{sup}."

    def subnet_state_dict(self, arch: Arch | dict | str) -> dict[str, torch.Tensor]:
        arch = self.space.parse(arch)
        target = self.space.build(arch, num_classes=self.num_classes)
        wanted = target.state_dict()
        mine = self.state_dict()
        blocks = {sub: (sup, k, kind) for sub, sup, k, kind in self.active_blocks(arch)}
        out: dict[str, torch.Tensor] = {}
        with torch.no_grad():
            for name, t in wanted.items():
                src_name = name
                if name.startswith("blocks."):
                    _, idx, rest = name.split(".", 2)
                    sup, k, kind = blocks[int(idx)]
                    branch, prefix = self._source(sup, kind)
                    src_name = prefix + rest
                    if rest == "depthwise.0.weight":
                        out[name] = branch.depthwise[0].kernel(k, t.shape[0]).detach().clone()
                        continue
                    if rest == "conv.0.weight":  # a fused block's kxk conv
                        out[name] = branch.conv[0].kernel(k, t.shape[0], t.shape[1]).detach().clone()
                        continue
                src = mine[src_name]
                out[name] = src[tuple(slice(0, n) for n in t.shape)].clone() if src.dim() else src.clone()
                if out[name].shape != t.shape:
                    raise RuntimeError(f"supernet tensor {src_name} {tuple(src.shape)} cannot give {name} {tuple(t.shape)}")
        return out

    def extract(self, arch: Arch | dict | str) -> nn.Module:
        """A stand-alone ``space.build(arch)`` holding the subnet's weights and BN statistics."""
        arch = self.space.parse(arch)
        model = self.space.build(arch, num_classes=self.num_classes)
        model.load_state_dict(self.subnet_state_dict(arch), strict=True)
        return model

    # ---- channel order --------------------------------------------------------------
    @torch.no_grad()
    def sort_channels(self, optimizer: torch.optim.Optimizer | None = None) -> None:
        """Reorder each block's middle channels by importance (L1 norm of the projection's
        weights on them), so that a smaller expand ratio keeps the most important channels.
        The largest subnet's function is unchanged; optimizer state moves with its parameters."""
        for slot in self.blocks:
            for blk in _branches(slot):
                importance = blk.project[0].weight.abs().sum((0, 2, 3))
                perm = torch.argsort(importance, descending=True)
                for t, dim in blk.middle_layers():
                    _permute(t, perm, dim, optimizer)


def _permute(p: torch.Tensor, perm: torch.Tensor, dim: int, optimizer: torch.optim.Optimizer | None) -> None:
    p.copy_(p.index_select(dim, perm))
    if optimizer is not None and isinstance(p, nn.Parameter):
        for v in optimizer.state.get(p, {}).values():
            if torch.is_tensor(v) and v.shape == p.shape:
                v.copy_(v.index_select(dim, perm))


def _init_weights(model: nn.Module) -> None:
    """Kaiming convs, small classifier, and the last BN of every residual block at zero, so a
    deep subnet starts as a shallow one (BigNAS: needed for training from scratch without a
    pretrained largest network)."""
    from hwnas.space.mbconv_modules import FusedMBConv, MBConv

    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)
    for m in model.modules():
        if ((isinstance(m, (ElasticMBConv, ElasticFusedMBConv)) and m.always_residual)
                or (isinstance(m, (MBConv, FusedMBConv)) and m.residual)):
            nn.init.zeros_(m.project[1].weight)
