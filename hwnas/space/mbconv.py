"""MBConv spaces in the MobileNetV3 / Once-for-All family.

A fixed stem, ``len(stages)`` stages of inverted-residual (MBConv) blocks and a fixed head.
Per stage: a depth and a width (output channels); per block: depthwise kernel and expand
ratio. Later stages use squeeze-and-excitation and h-swish, as MobileNetV3 does.

Arch fields: ``depths`` (one per stage), ``widths`` (one per stage), ``kernels`` and
``expands`` (per stage, one value per active block, so the list length equals the depth).

INT8-friendly choices, searched per stage (ONNX Runtime's INT8 depthwise kernels and unfused
h-swish are slow on x86 at batch 1, while regular convolutions gain from INT8; MobileDets,
EfficientNet-Lite and EfficientNetV2 let the hardware choose):

- ``block_kinds``: the block kinds a stage may use, from ``("mbconv", "fused")``; default
  ``("mbconv",)``. ``fused`` is EfficientNetV2's Fused-MBConv: a kxk regular convolution
  ``c_in -> c_in * e`` with the block's stride, BN, activation, optional SE, then a 1x1
  projection to ``c_out`` with BN and no activation (identity residual when the stride is 1
  and ``c_in == c_out``). The block's kernel and expand ratio apply to both kinds; ``e == 1``
  keeps the same shape (kxk conv to ``c_in``, then the projection), so one weight tensor per
  block slot serves every expand ratio in the supernet.
- ``act_choices``: the activations a stage may use, from ``("relu", "hswish")``; empty (the
  default): each stage keeps its fixed entry of ``acts``.
- ``se_choices``: whether a stage's blocks use SE, from ``(False, True)``; empty (the default):
  each stage keeps its fixed entry of ``se``.

A setting with more than one choice is a decision per stage (``kind{s}``, ``act{s}``,
``se{s}``, appended after the existing decisions so that old genomes keep their meaning) and
an arch field with one entry per stage (``kinds``, ``acts``, ``se``); with one choice it fixes
every stage and adds nothing to the arch. At their defaults the settings are left out of the
configuration, so the space, its hash and its archs' ids are the ones from before they existed.
A block's latency term is keyed by its kind (the op: ``mbconv`` or ``fused``), activation and SE.
"""

from __future__ import annotations

import itertools
from typing import Any, Callable, Sequence

from hwnas.errors import UserError
from hwnas.space.arch import Arch
from hwnas.space.base import Block, Decision, SearchSpace, check_choice, configured
from hwnas.space.mbconv_config import (
    ACTIVATIONS, BLOCK_KINDS, CAPACITY, MBV3_32, MBV3_32_INT8, MBV3_224, STAGE_FIELDS, STAGE_PREFIXES,
    STAGE_SETTINGS, MBConvConfig, StageStyle, check_stage_choice)

# the configuration lives in mbconv_config; its names stay importable from here
__all__ = ["ACTIVATIONS", "BLOCK_KINDS", "MBV3_32", "MBV3_32_INT8", "MBV3_224", "MBConvConfig", "MBConvSpace",
           "StageStyle", "make_divisible", "make_mbconv_space"]


def make_divisible(v: float, divisor: int = 8) -> int:
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


class MBConvSpace(SearchSpace):
    @property
    def calibration_networks(self) -> int:
        """Whole networks a table's calibration is fitted on.

        30 rather than 10: calibrated on k networks of a fidelity run and checked on that run's
        other 50 (four mbv3-32 / ONNX Runtime runs, 30 random splits each), 10 networks put
        94-98% within 10%, 30 put 96-99%; a table builds in about 150 s instead of 128 s.
        50 where fused blocks are searched too: the fit has a scale per block kind, and the
        extended space's INT8 table put 85-90% of 20 fresh networks within 10% on 30 networks,
        95-100% on 50 (BENCHMARKS.md, "INT8 tables calibrated on plain timings")."""
        return 50 if len(self.config.block_kinds) > 1 else 30

    def __init__(self, name: str, config: MBConvConfig) -> None:
        self.name = name
        self.config = config
        # looked up for every block of every candidate: worked out once
        self._searched = config.searched()
        self._fixed = [StageStyle(*(ch[0] for ch in config.stage_choices(s))) for s in range(len(config.strides))]

    def config_dict(self) -> dict[str, Any]:
        # the per-stage settings appear only where they differ from their defaults, so that a
        # space from before they existed keeps its hash (and its tables and checkpoints)
        d = super().config_dict()
        for name in STAGE_SETTINGS:
            if getattr(self.config, name) == MBConvConfig.__dataclass_fields__[name].default:
                d.pop(name)
        return d

    # ---- shape ----------------------------------------------------------------------
    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (3, self.config.image_size, self.config.image_size)

    @property
    def num_stages(self) -> int:
        return len(self.config.strides)

    @property
    def max_depth(self) -> int:
        return max(self.config.depths)

    def stage_resolutions(self) -> list[int]:
        """Input resolution of each stage's first block."""
        r = _conv_out(self.config.image_size, self.config.stem_stride)
        out = []
        for s in self.config.strides:
            out.append(r)
            r = _conv_out(r, s)
        return out

    def final_resolution(self) -> int:
        r = self.stage_resolutions()[-1]
        return _conv_out(r, self.config.strides[-1])

    # ---- per-stage kind, activation and SE ------------------------------------------
    def stage_style(self, arch: Arch, stage: int) -> StageStyle:
        """The kind, activation and SE of the arch's blocks in ``stage``."""
        fixed = self._fixed[stage]
        if not self._searched:
            return fixed
        return StageStyle(*(arch[STAGE_FIELDS[i]][stage] if i in self._searched else fixed[i] for i in range(3)))

    def stage_styles(self, stage: int) -> list[StageStyle]:
        """Every (kind, activation, SE) ``stage`` may use, in ``itertools.product`` order of
        ``config.stage_choices``: style index = (kind index * acts + act index) * ses + SE index."""
        return [StageStyle(*t) for t in itertools.product(*self.config.stage_choices(stage))]

    # ---- genomes --------------------------------------------------------------------
    def decisions(self) -> list[Decision]:
        c = self.config
        out = [Decision(f"depth{s}", c.depths) for s in range(self.num_stages)]
        out += [Decision(f"width{s}", c.widths[s]) for s in range(self.num_stages)]
        for s in range(self.num_stages):
            for b in range(self.max_depth):
                out.append(Decision(f"kernel{s}.{b}", c.kernels))
        for s in range(self.num_stages):
            for b in range(self.max_depth):
                out.append(Decision(f"expand{s}.{b}", c.expands))
        for i in c.searched():
            out += [Decision(f"{STAGE_PREFIXES[i]}{s}", c.stage_choices(s)[i]) for s in range(self.num_stages)]
        return out

    def decode(self, genome: Sequence[int]) -> Arch:
        c, n, m = self.config, self.num_stages, self.max_depth
        want = n * 2 + n * m * 2 + n * len(c.searched())
        if len(genome) != want:
            raise ValueError(f"genome has {len(genome)} genes, expected {want}")
        depths = [c.depths[genome[s]] for s in range(n)]
        widths = [c.widths[s][genome[n + s]] for s in range(n)]
        k0, e0 = 2 * n, 2 * n + n * m
        kernels = [[c.kernels[genome[k0 + s * m + b]] for b in range(depths[s])] for s in range(n)]
        expands = [[c.expands[genome[e0 + s * m + b]] for b in range(depths[s])] for s in range(n)]
        styles: dict[str, list] = {}
        for j, i in enumerate(c.searched()):
            g0 = 2 * n + 2 * n * m + j * n
            styles[STAGE_FIELDS[i]] = [c.stage_choices(s)[i][genome[g0 + s]] for s in range(n)]
        return Arch.make(self.name, depths=depths, widths=widths, kernels=kernels, expands=expands, **styles)

    def encode(self, arch: Arch) -> list[int]:
        c, n, m = self.config, self.num_stages, self.max_depth
        g = [c.depths.index(d) for d in arch["depths"]]
        g += [c.widths[s].index(w) for s, w in enumerate(arch["widths"])]
        for key, choices in (("kernels", c.kernels), ("expands", c.expands)):
            for s in range(n):
                vals = list(arch[key][s])
                g += [choices.index(v) for v in vals] + [0] * (m - len(vals))
        for i in c.searched():
            g += [c.stage_choices(s)[i].index(v) for s, v in enumerate(arch[STAGE_FIELDS[i]])]
        return g

    # ---- validation -----------------------------------------------------------------
    def _arch_fields(self) -> list[str]:
        return ["depths", "widths", "kernels", "expands"] + [STAGE_FIELDS[i] for i in self.config.searched()]

    def from_dict(self, d: dict[str, Any]) -> Arch:
        c, n = self.config, self.num_stages
        expected = set(self._arch_fields())
        unknown = set(d) - expected
        if unknown:
            raise UserError(f"invalid arch: unknown field(s) {', '.join(sorted(unknown))}; {self.name} archs have {', '.join(sorted(expected))}")
        missing = expected - set(d)
        if missing:
            raise UserError(f"invalid arch: missing field(s) {', '.join(sorted(missing))}")
        for key in self._arch_fields():
            if not isinstance(d[key], (list, tuple)) or len(d[key]) != n:
                raise UserError(f"invalid arch: {key} must be a list with one entry per stage ({n})")
        depths = [check_choice(f"depths[{s}]", v, c.depths) for s, v in enumerate(d["depths"])]
        widths = [check_choice(f"widths[{s}]", v, c.widths[s]) for s, v in enumerate(d["widths"])]
        lists: dict[str, list] = {}
        for key, choices in (("kernels", c.kernels), ("expands", c.expands)):
            rows = []
            for s, row in enumerate(d[key]):
                if not isinstance(row, (list, tuple)) or len(row) != depths[s]:
                    raise UserError(f"invalid arch: {key}[{s}] must list one value per block ({depths[s]}, the stage's depth)")
                rows.append([check_choice(f"{key}[{s}][{b}]", v, choices) for b, v in enumerate(row)])
            lists[key] = rows
        for i in c.searched():
            key = STAGE_FIELDS[i]
            lists[key] = [check_stage_choice(f"{key}[{s}]", v, c.stage_choices(s)[i]) for s, v in enumerate(d[key])]
        return Arch.make(self.name, depths=depths, widths=widths, **lists)

    def _extreme(self, depth: int, kernel: int, expand: int, pick: Callable) -> Arch:
        c, n = self.config, self.num_stages
        d: dict[str, Any] = {
            "depths": [depth] * n,
            "widths": [pick(w) for w in c.widths],
            "kernels": [[kernel] * depth for _ in range(n)],
            "expands": [[expand] * depth for _ in range(n)],
        }
        for i in c.searched():
            d[STAGE_FIELDS[i]] = [pick(c.stage_choices(s)[i], key=CAPACITY.__getitem__) for s in range(n)]
        return self.from_dict(d)

    def smallest(self) -> Arch:
        """Every choice at its smallest; searched stages use MBConv blocks, ReLU and no SE."""
        c = self.config
        return self._extreme(min(c.depths), min(c.kernels), min(c.expands), min)

    def largest(self) -> Arch:
        """Every choice at its largest; searched stages use fused blocks, h-swish and SE."""
        c = self.config
        return self._extreme(max(c.depths), max(c.kernels), max(c.expands), max)

    def size(self) -> int:
        c = self.config
        per_block = len(c.kernels) * len(c.expands)
        per_stage_depth = sum(per_block**d for d in c.depths)
        n = 1
        for s in range(self.num_stages):
            n *= per_stage_depth * len(c.widths[s]) * len(self.stage_styles(s))
        return n

    def cheapest(self, cost) -> Arch:
        """Exact minimum of an additive per-block cost (costs must be >= 0).

        Blocks cost nothing negative, so every stage takes its smallest depth; the stage widths
        form a chain (a stage's first block reads the previous stage's width), solved by
        dynamic programming over the width of each stage. A stage's kind, activation and SE
        apply to its blocks only, so each (previous width, width) pair takes its best style.
        """
        c = self.config
        d = min(c.depths)
        res = self.stage_resolutions()
        # best[w] = (cost so far ending with stage width w, choices so far)
        best: dict[int, tuple[float, list]] = {c.stem_channels: (cost(self.stem_term()), [])}
        for s in range(self.num_stages):
            nxt: dict[int, tuple[float, list]] = {}
            for w in c.widths[s]:
                for w_prev, (acc, hist) in best.items():
                    for style in self.stage_styles(s):
                        first, rest, blocks = self._cheapest_stage(cost, s, w_prev, w, res[s], d, style)
                        total = acc + first + rest
                        if w not in nxt or total < nxt[w][0]:
                            nxt[w] = (total, hist + [(w, style, blocks)])
            best = nxt
        total_best, hist_best = min(
            ((acc + cost(self.head_term(w)), hist) for w, (acc, hist) in best.items()), key=lambda t: t[0])
        arch: dict[str, Any] = {
            "depths": [d] * self.num_stages,
            "widths": [w for w, _, _ in hist_best],
            "kernels": [[k for k, _ in blocks] for _, _, blocks in hist_best],
            "expands": [[e for _, e in blocks] for _, _, blocks in hist_best],
        }
        for i in c.searched():
            arch[STAGE_FIELDS[i]] = [style[i] for _, style, _ in hist_best]
        return self.from_dict(arch)

    def _cheapest_stage(self, cost, s: int, w_prev: int, w: int, res: int, depth: int, style: StageStyle
                        ) -> tuple[float, float, list[tuple[int, int]]]:
        """(first block's cost, the other blocks' cost, (kernel, expand) of each block) of the
        cheapest stage ``s`` of ``depth`` blocks from ``w_prev`` to ``w`` channels in ``style``."""
        c = self.config
        stride, r_after = c.strides[s], _conv_out(res, c.strides[s])
        ke = [(k, e) for k in c.kernels for e in c.expands]
        k0, e0 = min(ke, key=lambda p: cost(self.block_term(s, w_prev, w, res, stride, *p, style)))
        first = cost(self.block_term(s, w_prev, w, res, stride, k0, e0, style))
        rest = [min(ke, key=lambda p: cost(self.block_term(s, w, w, r_after, 1, *p, style)))] * (depth - 1)
        rest_cost = sum(cost(self.block_term(s, w, w, r_after, 1, *p, style)) for p in rest)
        return first, rest_cost, [(k0, e0)] + rest

    # ---- latency terms --------------------------------------------------------------
    def stem_term(self) -> Block:
        c = self.config
        return Block.make("stem", self.input_shape, c_out=c.stem_channels, k=3, s=c.stem_stride, act="hswish")

    def block_term(self, stage: int, c_in: int, c_out: int, res: int, stride: int, k: int, e: int,
                   style: StageStyle | None = None) -> Block:
        """The latency term of one block (what tables time and predictors add up); ``style``
        None: the stage's fixed style (its first choices). The op is the block kind, so that
        today's MBConv blocks keep today's keys."""
        if style is None:
            style = self._fixed[stage]
        # the same few hundred blocks recur in every arch: build each once (and its key once)
        args = (stage, c_in, c_out, res, stride, k, e, style)
        cache = self.__dict__.setdefault("_block_cache", {})
        block = cache.get(args)
        if block is None:
            block = cache[args] = Block.make(style.kind, (c_in, res, res), c_out=c_out, k=k, s=stride, e=e,
                                             se=int(style.se), act=style.act)
        return block

    def head_term(self, c_in: int) -> Block:
        c = self.config
        r = self.final_resolution()
        return Block.make("head", (c_in, r, r), c_mid=c.head_channels, hidden=c.head_hidden,
                          classes=c.num_classes)

    def reference_block(self) -> Block:
        """The first block of the first stage at its smallest choices (for mbv3-32: 16 -> 16
        channels at 32x32, kernel 3, expand 3; about 0.5 ms in eager torch on one core): a
        handful of small eager ops, as the networks are made of, at a tenth of the cost of the
        smallest network."""
        c = self.config
        return self.block_term(0, c.stem_channels, c.widths[0][0], self.stage_resolutions()[0], c.strides[0],
                                  c.kernels[0], c.expands[0])

    def latency_terms(self, arch: Arch) -> list[Block]:
        c = self.config
        blocks = [self.stem_term()]
        c_in = c.stem_channels
        for s, res in enumerate(self.stage_resolutions()):
            w = arch["widths"][s]
            style = self.stage_style(arch, s)
            for b in range(arch["depths"][s]):
                stride = c.strides[s] if b == 0 else 1
                r = res if b == 0 else _conv_out(res, c.strides[s])
                blocks.append(self.block_term(s, c_in, w, r, stride, arch["kernels"][s][b], arch["expands"][s][b],
                                                 style))
                c_in = w
        blocks.append(self.head_term(c_in))
        return blocks

    def all_latency_terms(self) -> list[Block]:
        c = self.config
        seen: dict[str, Block] = {}

        def add(b: Block) -> None:
            seen.setdefault(b.key, b)

        add(self.stem_term())
        prev_widths: tuple[int, ...] = (c.stem_channels,)
        for s, res in enumerate(self.stage_resolutions()):
            r_after = _conv_out(res, c.strides[s])
            for style in self.stage_styles(s):
                for w in c.widths[s]:
                    for k in c.kernels:
                        for e in c.expands:
                            for c_in in prev_widths:
                                add(self.block_term(s, c_in, w, res, c.strides[s], k, e, style))
                            if max(c.depths) > 1:
                                add(self.block_term(s, w, w, r_after, 1, k, e, style))
            prev_widths = c.widths[s]
        for w in prev_widths:
            add(self.head_term(w))
        return list(seen.values())

    # ---- modules --------------------------------------------------------------------
    def build_block(self, block: Block):
        from hwnas.space import mbconv_modules as m

        p = dict(block.params)
        c_in = block.input_shape[0]
        if block.op == "stem":
            return m.Stem(c_in, p["c_out"], p["s"], p["act"])
        if block.op == "mbconv":
            return m.MBConv(c_in, p["c_out"], p["k"], p["s"], p["e"], bool(p["se"]), p["act"])
        if block.op == "fused":
            return m.FusedMBConv(c_in, p["c_out"], p["k"], p["s"], p["e"], bool(p["se"]), p["act"])
        if block.op == "head":
            return m.Head(c_in, p["c_mid"], p["hidden"], p["classes"], self.config.dropout)
        raise ValueError(f"unknown block op {block.op!r}")

    def build(self, arch: Arch, num_classes: int | None = None):
        from hwnas.space import mbconv_modules as m

        terms = self.build_terms(arch, num_classes)
        return m.MBConvNet(
            stem=self.build_block(terms[0]),
            blocks=[self.build_block(b) for b in terms[1:-1]],
            head=self.build_block(terms[-1]),
        )


def _conv_out(size: int, stride: int) -> int:
    # 'same' padding: ceil(size / stride)
    return -(-size // stride)


def make_mbconv_space(name: str, base: MBConvConfig, **overrides: Any) -> MBConvSpace:
    return MBConvSpace(name, configured(name, base, overrides))
