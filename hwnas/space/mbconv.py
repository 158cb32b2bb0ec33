"""MBConv spaces in the MobileNetV3 / Once-for-All family.

A fixed stem, ``len(stages)`` stages of inverted-residual (MBConv) blocks and a fixed head.
Per stage: a depth and a width (output channels); per block: depthwise kernel and expand
ratio. Later stages use squeeze-and-excitation and h-swish, as MobileNetV3 does.

Arch fields: ``depths`` (one per stage), ``widths`` (one per stage), ``kernels`` and
``expands`` (per stage, one value per active block, so the list length equals the depth).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Sequence

from hwnas.errors import UserError
from hwnas.space.arch import Arch
from hwnas.space.base import Block, Decision, SearchSpace, check_choice


@dataclass(frozen=True)
class MBConvConfig:
    image_size: int
    num_classes: int
    stem_channels: int
    stem_stride: int
    strides: tuple[int, ...]
    widths: tuple[tuple[int, ...], ...]
    se: tuple[bool, ...]
    acts: tuple[str, ...]
    depths: tuple[int, ...] = (1, 2, 3, 4)
    kernels: tuple[int, ...] = (3, 5, 7)
    expands: tuple[int, ...] = (3, 4, 6)
    head_channels: int = 512
    head_hidden: int = 0  # MobileNetV3's extra linear layer after pooling (0: none)
    dropout: float = 0.0

    def __post_init__(self) -> None:
        n = len(self.strides)
        if not (len(self.widths) == len(self.se) == len(self.acts) == n):
            raise ValueError("strides, widths, se and acts must have one entry per stage")
        for a in self.acts:
            if a not in ("relu", "hswish"):
                raise ValueError(f"unknown activation {a!r}")


MBV3_32 = MBConvConfig(
    image_size=32,
    num_classes=10,
    stem_channels=16,
    stem_stride=1,  # CIFAR-style: keep 32x32 in the first stage, then 16, 8, 4
    strides=(1, 2, 2, 2, 1),
    widths=((16, 24, 32), (24, 32, 40), (40, 48, 64), (64, 80, 96), (96, 112, 128)),
    se=(False, True, False, True, True),
    acts=("relu", "relu", "hswish", "hswish", "hswish"),
    head_channels=512,
)

MBV3_224 = MBConvConfig(
    image_size=224,
    num_classes=1000,
    stem_channels=16,
    stem_stride=2,  # 224 -> 112 -> 56 -> 28 -> 14 -> 14 -> 7, as MobileNetV3-Large
    strides=(2, 2, 2, 1, 2),
    widths=((16, 24, 32), (32, 40, 48), (64, 80, 96), (96, 112, 128), (136, 160, 184)),
    se=(False, True, False, True, True),
    acts=("relu", "relu", "hswish", "hswish", "hswish"),
    head_channels=960,
    head_hidden=1280,
)


def make_divisible(v: float, divisor: int = 8) -> int:
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


class MBConvSpace(SearchSpace):
    # 30 rather than 10: calibrated on k networks of a fidelity run and checked on that run's
    # other 50 (four mbv3-32 / ONNX Runtime runs, 30 random splits each), 10 networks put
    # 94-98% within 10%, 30 put 96-99%; a table builds in about 150 s instead of 128 s
    calibration_networks = 30

    def __init__(self, name: str, config: MBConvConfig) -> None:
        self.name = name
        self.config = config

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

    def _resolutions(self) -> list[int]:
        """Input resolution of each stage's first block."""
        r = _conv_out(self.config.image_size, self.config.stem_stride)
        out = []
        for s in self.config.strides:
            out.append(r)
            r = _conv_out(r, s)
        return out

    def final_resolution(self) -> int:
        r = self._resolutions()[-1]
        return _conv_out(r, self.config.strides[-1])

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
        return out

    def decode(self, genome: Sequence[int]) -> Arch:
        c, n, m = self.config, self.num_stages, self.max_depth
        if len(genome) != n * 2 + n * m * 2:
            raise ValueError(f"genome has {len(genome)} genes, expected {n * 2 + n * m * 2}")
        depths = [c.depths[genome[s]] for s in range(n)]
        widths = [c.widths[s][genome[n + s]] for s in range(n)]
        k0, e0 = 2 * n, 2 * n + n * m
        kernels = [[c.kernels[genome[k0 + s * m + b]] for b in range(depths[s])] for s in range(n)]
        expands = [[c.expands[genome[e0 + s * m + b]] for b in range(depths[s])] for s in range(n)]
        return Arch.make(self.name, depths=depths, widths=widths, kernels=kernels, expands=expands)

    def encode(self, arch: Arch) -> list[int]:
        c, n, m = self.config, self.num_stages, self.max_depth
        g = [c.depths.index(d) for d in arch["depths"]]
        g += [c.widths[s].index(w) for s, w in enumerate(arch["widths"])]
        for key, choices in (("kernels", c.kernels), ("expands", c.expands)):
            for s in range(n):
                vals = list(arch[key][s])
                g += [choices.index(v) for v in vals] + [0] * (m - len(vals))
        return g

    # ---- validation -----------------------------------------------------------------
    def from_dict(self, d: dict[str, Any]) -> Arch:
        c, n = self.config, self.num_stages
        expected = {"depths", "widths", "kernels", "expands"}
        unknown = set(d) - expected
        if unknown:
            raise UserError(f"invalid arch: unknown field(s) {', '.join(sorted(unknown))}; {self.name} archs have {', '.join(sorted(expected))}")
        missing = expected - set(d)
        if missing:
            raise UserError(f"invalid arch: missing field(s) {', '.join(sorted(missing))}")
        for key in ("depths", "widths", "kernels", "expands"):
            if not isinstance(d[key], (list, tuple)) or len(d[key]) != n:
                raise UserError(f"invalid arch: {key} must be a list with one entry per stage ({n})")
        depths = [check_choice(f"depths[{s}]", v, c.depths) for s, v in enumerate(d["depths"])]
        widths = [check_choice(f"widths[{s}]", v, c.widths[s]) for s, v in enumerate(d["widths"])]
        lists: dict[str, list[list[int]]] = {}
        for key, choices in (("kernels", c.kernels), ("expands", c.expands)):
            rows = []
            for s, row in enumerate(d[key]):
                if not isinstance(row, (list, tuple)) or len(row) != depths[s]:
                    raise UserError(f"invalid arch: {key}[{s}] must list one value per block ({depths[s]}, the stage's depth)")
                rows.append([check_choice(f"{key}[{s}][{b}]", v, choices) for b, v in enumerate(row)])
            lists[key] = rows
        return Arch.make(self.name, depths=depths, widths=widths, **lists)

    def smallest(self) -> Arch:
        c = self.config
        n = self.num_stages
        return self.from_dict({
            "depths": [min(c.depths)] * n,
            "widths": [min(w) for w in c.widths],
            "kernels": [[min(c.kernels)] * min(c.depths) for _ in range(n)],
            "expands": [[min(c.expands)] * min(c.depths) for _ in range(n)],
        })

    def largest(self) -> Arch:
        c = self.config
        n = self.num_stages
        return self.from_dict({
            "depths": [max(c.depths)] * n,
            "widths": [max(w) for w in c.widths],
            "kernels": [[max(c.kernels)] * max(c.depths) for _ in range(n)],
            "expands": [[max(c.expands)] * max(c.depths) for _ in range(n)],
        })

    def size(self) -> int:
        c = self.config
        per_block = len(c.kernels) * len(c.expands)
        per_stage_depth = sum(per_block**d for d in c.depths)
        n = 1
        for s in range(self.num_stages):
            n *= per_stage_depth * len(c.widths[s])
        return n

    def cheapest(self, cost) -> Arch:
        """Exact minimum of an additive per-block cost (costs must be >= 0).

        Blocks cost nothing negative, so every stage takes its smallest depth; the stage widths
        form a chain (a stage's first block reads the previous stage's width), solved by
        dynamic programming over the width of each stage.
        """
        c = self.config
        d = min(c.depths)
        res = self._resolutions()
        ke = [(k, e) for k in c.kernels for e in c.expands]
        # best[w] = (cost so far ending with stage width w, choices so far)
        best: dict[int, tuple[float, list]] = {c.stem_channels: (cost(self._stem_block()), [])}
        for s in range(self.num_stages):
            r_after = _conv_out(res[s], c.strides[s])
            nxt: dict[int, tuple[float, list]] = {}
            for w in c.widths[s]:
                for w_prev, (acc, hist) in best.items():
                    k0, e0 = min(ke, key=lambda p: cost(self._mbconv_block(s, w_prev, w, res[s], c.strides[s], *p)))
                    first = cost(self._mbconv_block(s, w_prev, w, res[s], c.strides[s], k0, e0))
                    rest = [min(ke, key=lambda p: cost(self._mbconv_block(s, w, w, r_after, 1, *p)))] * (d - 1)
                    total = acc + first + sum(cost(self._mbconv_block(s, w, w, r_after, 1, *p)) for p in rest)
                    if w not in nxt or total < nxt[w][0]:
                        nxt[w] = (total, hist + [(w, [(k0, e0)] + rest)])
            best = nxt
        total_best, hist_best = min(
            ((acc + cost(self._head_block(w)), hist) for w, (acc, hist) in best.items()), key=lambda t: t[0])
        return self.from_dict({
            "depths": [d] * self.num_stages,
            "widths": [w for w, _ in hist_best],
            "kernels": [[k for k, _ in blocks] for _, blocks in hist_best],
            "expands": [[e for _, e in blocks] for _, blocks in hist_best],
        })

    # ---- latency terms --------------------------------------------------------------
    def _stem_block(self) -> Block:
        c = self.config
        return Block.make("stem", self.input_shape, c_out=c.stem_channels, k=3, s=c.stem_stride, act="hswish")

    def _mbconv_block(self, stage: int, c_in: int, c_out: int, res: int, stride: int, k: int, e: int) -> Block:
        # the same few hundred blocks recur in every arch: build each once (and its key once)
        args = (stage, c_in, c_out, res, stride, k, e)
        cache = self.__dict__.setdefault("_block_cache", {})
        block = cache.get(args)
        if block is None:
            c = self.config
            block = cache[args] = Block.make("mbconv", (c_in, res, res), c_out=c_out, k=k, s=stride, e=e,
                                             se=int(c.se[stage]), act=c.acts[stage])
        return block

    def _head_block(self, c_in: int) -> Block:
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
        return self._mbconv_block(0, c.stem_channels, c.widths[0][0], self._resolutions()[0], c.strides[0],
                                  c.kernels[0], c.expands[0])

    def latency_terms(self, arch: Arch) -> list[Block]:
        c = self.config
        blocks = [self._stem_block()]
        c_in = c.stem_channels
        for s, res in enumerate(self._resolutions()):
            w = arch["widths"][s]
            for b in range(arch["depths"][s]):
                stride = c.strides[s] if b == 0 else 1
                r = res if b == 0 else _conv_out(res, c.strides[s])
                blocks.append(self._mbconv_block(s, c_in, w, r, stride, arch["kernels"][s][b], arch["expands"][s][b]))
                c_in = w
        blocks.append(self._head_block(c_in))
        return blocks

    def all_latency_terms(self) -> list[Block]:
        c = self.config
        seen: dict[str, Block] = {}

        def add(b: Block) -> None:
            seen.setdefault(b.key, b)

        add(self._stem_block())
        prev_widths: tuple[int, ...] = (c.stem_channels,)
        for s, res in enumerate(self._resolutions()):
            r_after = _conv_out(res, c.strides[s])
            for w in c.widths[s]:
                for k in c.kernels:
                    for e in c.expands:
                        for c_in in prev_widths:
                            add(self._mbconv_block(s, c_in, w, res, c.strides[s], k, e))
                        if max(c.depths) > 1:
                            add(self._mbconv_block(s, w, w, r_after, 1, k, e))
            prev_widths = c.widths[s]
        for w in prev_widths:
            add(self._head_block(w))
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
        if block.op == "head":
            return m.Head(c_in, p["c_mid"], p["hidden"], p["classes"], self.config.dropout)
        raise ValueError(f"unknown block op {block.op!r}")

    def build(self, arch: Arch, num_classes: int | None = None):
        from hwnas.space import mbconv_modules as m

        arch = self.parse(arch)
        terms = self.latency_terms(arch)
        if num_classes is not None and num_classes != self.config.num_classes:
            head = terms[-1]
            terms[-1] = Block.make("head", head.input_shape, **{**dict(head.params), "classes": num_classes})
        return m.MBConvNet(
            stem=self.build_block(terms[0]),
            blocks=[self.build_block(b) for b in terms[1:-1]],
            head=self.build_block(terms[-1]),
        )


def _conv_out(size: int, stride: int) -> int:
    # 'same' padding: ceil(size / stride)
    return -(-size // stride)


def make_mbconv_space(name: str, base: MBConvConfig, **overrides: Any) -> MBConvSpace:
    fields = {f for f in MBConvConfig.__dataclass_fields__}
    bad = set(overrides) - fields
    if bad:
        raise UserError(f"unknown {name} setting(s): {', '.join(sorted(bad))}; known: {', '.join(sorted(fields))}")
    norm = {k: _tupleize(v) for k, v in overrides.items()}
    try:
        config = replace(base, **norm)
    except (ValueError, TypeError) as e:
        raise UserError(f"invalid {name} settings: {e}") from None
    return MBConvSpace(name, config)


def _tupleize(v: Any) -> Any:
    if isinstance(v, list):
        return tuple(_tupleize(x) for x in v)
    return v
