"""The plain layer-chain space ``cnn``: what most NAS tutorials start from.

A chain of ``depth`` conv layers (conv -> BatchNorm -> activation -> optional 2x2 pooling),
then global average pooling, an optional hidden fully connected layer and the classifier.
Per layer: output channels, kernel, stride, pooling and activation; per network: the depth
and the hidden FC width (0: none).

Arch fields: ``depth`` (an int), ``channels``, ``kernels``, ``strides``, ``pools`` and
``acts`` (one value per layer, so each list's length equals the depth) and ``fc_units``.

Shapes: a conv layer keeps ``ceil(r / stride)`` (same padding, odd kernels), a 2x2 pool
halves with floor rounding. No layer may leave a map smaller than ``min_resolution``: parsing
refuses such archs naming the layer, and genomes are repaired on decoding (the layer drops its
pool, then its stride), so sampling, mutation and crossover only give valid archs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from hwnas.errors import UserError
from hwnas.space.arch import Arch
from hwnas.space.base import Block, Decision, SearchSpace, check_choice, configured, one_hot_features

POOLS = ("none", "max2", "avg2")
ACTS = ("relu", "hswish", "sigmoid", "tanh")
LAYER_FIELDS = ("channels", "kernels", "strides", "pools", "acts")
ARCH_FIELDS = ("depth",) + LAYER_FIELDS + ("fc_units",)


@dataclass(frozen=True)
class CNNConfig:
    image_size: int = 32
    in_channels: int = 3
    num_classes: int = 10
    depths: tuple[int, ...] = (2, 3, 4, 5, 6, 7, 8)
    # three widths and two kernels, poolings and activations keep the table profilable, 528
    # blocks (mbv3-32 has 463): every added choice multiplies it (with all four activations,
    # three kernels, three poolings and four widths it holds 3,616)
    channels: tuple[int, ...] = (16, 32, 64)
    kernels: tuple[int, ...] = (3, 5)
    strides: tuple[int, ...] = (1, 2)
    pools: tuple[str, ...] = ("none", "max2")
    acts: tuple[str, ...] = ("relu", "hswish")
    fc_units: tuple[int, ...] = (0, 64, 128, 256)
    # the smallest map a layer may leave; 4 for 32x32 inputs as CIFAR networks stop at 4x4
    # (reaching 1x1 loses accuracy and realistic latency), and it bounds the table's resolutions
    min_resolution: int = 4

    def __post_init__(self) -> None:
        for name in ("depths", "channels", "kernels", "strides", "pools", "acts", "fc_units"):
            values = getattr(self, name)
            if not isinstance(values, tuple) or not values:
                raise ValueError(f"{name} must be a non-empty list")
            if len(set(values)) != len(values):
                raise ValueError(f"{name} lists a value twice: {list(values)}")
        for name in ("image_size", "in_channels", "num_classes", "min_resolution"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        _positive_ints("depths", self.depths)
        _positive_ints("channels", self.channels)
        _positive_ints("strides", self.strides)
        _positive_ints("kernels", self.kernels)
        if any(k % 2 == 0 for k in self.kernels):
            raise ValueError(f"kernels must be odd (same padding keeps ceil(size / stride)), got {list(self.kernels)}")
        if any(isinstance(u, bool) or not isinstance(u, int) or u < 0 for u in self.fc_units):
            raise ValueError(f"fc_units must be integers >= 0 (0: no hidden layer), got {list(self.fc_units)}")
        for name, values, known in (("pools", self.pools, POOLS), ("acts", self.acts, ACTS)):
            bad = [v for v in values if v not in known]
            if bad:
                raise ValueError(f"unknown {name} {bad}; choose from {list(known)}")
        # a layer that keeps the map's size must exist, or deep genomes could not be repaired
        if 1 not in self.strides or "none" not in self.pools:
            raise ValueError("strides must include 1 and pools must include none (a layer that keeps the map's size)")
        if self.min_resolution > self.image_size:
            raise ValueError(f"min_resolution {self.min_resolution} is larger than image_size {self.image_size}")


def _positive_ints(name: str, values: Sequence[Any]) -> None:
    if any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in values):
        raise ValueError(f"{name} must be positive integers, got {list(values)}")


CNN_32 = CNNConfig()


def _choice(field: str, value: Any, allowed: Sequence[Any]) -> Any:
    """The allowed value itself (3, not 3.0 from a hand-written arch: the id hashes the JSON)."""
    return allowed[list(allowed).index(check_choice(field, value, allowed))]


def conv_out(size: int, stride: int) -> int:
    """Output size of a same-padded conv with an odd kernel: ceil(size / stride)."""
    return -(-size // stride)


def pool_out(size: int, pool: str) -> int:
    return size if pool == "none" else size // 2


def layer_out(size: int, stride: int, pool: str) -> int:
    return pool_out(conv_out(size, stride), pool)


@dataclass(frozen=True)
class Layer:
    """One conv layer's choices."""

    channels: int
    kernel: int
    stride: int
    pool: str
    act: str


class CNNSpace(SearchSpace):
    def __init__(self, name: str, config: CNNConfig) -> None:
        self.name = name
        self.config = config

    # ---- shape ----------------------------------------------------------------------
    @property
    def input_shape(self) -> tuple[int, int, int]:
        c = self.config
        return (c.in_channels, c.image_size, c.image_size)

    @property
    def max_depth(self) -> int:
        return max(self.config.depths)

    def _fits(self, size: int, stride: int, pool: str) -> bool:
        return layer_out(size, stride, pool) >= self.config.min_resolution

    def _moves(self, size: int) -> list[tuple[int, str, int]]:
        """(stride, pool, output size) of every downsampling choice valid on a ``size`` map."""
        c = self.config
        return [(s, p, layer_out(size, s, p)) for s in c.strides for p in c.pools if self._fits(size, s, p)]

    # ---- genomes --------------------------------------------------------------------
    def decisions(self) -> list[Decision]:
        c = self.config
        out = [Decision("depth", c.depths)]
        for i in range(self.max_depth):
            out += [Decision(f"channels{i}", c.channels), Decision(f"kernel{i}", c.kernels),
                    Decision(f"stride{i}", c.strides), Decision(f"pool{i}", c.pools), Decision(f"act{i}", c.acts)]
        out.append(Decision("fc_units", c.fc_units))
        return out

    def _n_genes(self) -> int:
        return 2 + len(LAYER_FIELDS) * self.max_depth

    def decode(self, genome: Sequence[int]) -> Arch:
        """Genome -> arch; genes of layers beyond the depth are ignored, and a layer whose
        stride and pool would shrink the map below ``min_resolution`` drops its pool, then its
        stride (deterministic, so equal genomes give equal archs)."""
        c = self.config
        n = self._n_genes()
        if len(genome) != n:
            raise ValueError(f"genome has {len(genome)} genes, expected {n}")
        depth = c.depths[genome[0]]
        layers, size = [], c.image_size
        for i in range(depth):
            g = genome[1 + len(LAYER_FIELDS) * i: 1 + len(LAYER_FIELDS) * (i + 1)]
            stride, pool = c.strides[g[2]], c.pools[g[3]]
            if not self._fits(size, stride, pool):
                pool = "none"
            if not self._fits(size, stride, pool):
                stride = 1
            layers.append(Layer(c.channels[g[0]], c.kernels[g[1]], stride, pool, c.acts[g[4]]))
            size = layer_out(size, stride, pool)
        return self._make(layers, c.fc_units[genome[-1]])

    def encode(self, arch: Arch) -> list[int]:
        c = self.config
        g = [c.depths.index(arch["depth"])]
        for layer in self.layers(arch):
            g += [c.channels.index(layer.channels), c.kernels.index(layer.kernel), c.strides.index(layer.stride),
                  c.pools.index(layer.pool), c.acts.index(layer.act)]
        g += [0] * (len(LAYER_FIELDS) * (self.max_depth - arch["depth"]))
        return g + [c.fc_units.index(arch["fc_units"])]

    def genome_features(self, genomes: Any) -> Any:
        """One column per (decision, choice), all zeros for the genes of layers beyond the
        depth (they do not change the network, so the surrogate should not see them)."""
        c = self.config
        cards = [len(d.choices) for d in self.decisions()]
        X = one_hot_features(cards)(genomes)
        G = np.asarray(genomes, dtype=np.int64).reshape(-1, len(cards))
        depth = np.asarray(c.depths)[G[:, 0]]
        offsets = np.concatenate([[0], np.cumsum(cards)])
        per_layer = len(LAYER_FIELDS)
        for i in range(self.max_depth):
            lo, hi = offsets[1 + per_layer * i], offsets[1 + per_layer * (i + 1)]
            X[depth <= i, lo:hi] = 0.0
        return X

    # ---- arch values ----------------------------------------------------------------
    def _make(self, layers: Sequence[Layer], fc_units: int) -> Arch:
        return Arch.make(self.name, depth=len(layers), channels=[l.channels for l in layers],
                         kernels=[l.kernel for l in layers], strides=[l.stride for l in layers],
                         pools=[l.pool for l in layers], acts=[l.act for l in layers], fc_units=fc_units)

    @staticmethod
    def layers(arch: Arch) -> list[Layer]:
        return [Layer(*vals) for vals in zip(*(arch[f] for f in LAYER_FIELDS))]

    def from_dict(self, d: dict[str, Any]) -> Arch:
        c = self.config
        unknown = set(d) - set(ARCH_FIELDS)
        if unknown:
            raise UserError(f"invalid arch: unknown field(s) {', '.join(sorted(unknown))}; "
                            f"{self.name} archs have {', '.join(ARCH_FIELDS)}")
        missing = [f for f in ARCH_FIELDS if f not in d]
        if missing:
            raise UserError(f"invalid arch: missing field(s) {', '.join(missing)}")
        depth = _choice("depth", d["depth"], c.depths)
        choices = {"channels": c.channels, "kernels": c.kernels, "strides": c.strides, "pools": c.pools, "acts": c.acts}
        values: dict[str, list[Any]] = {}
        for f in LAYER_FIELDS:
            row = d[f]
            if not isinstance(row, (list, tuple)) or len(row) != depth:
                got = f"{len(row)} values" if isinstance(row, (list, tuple)) else type(row).__name__
                raise UserError(f"invalid arch: {f} must list one value per layer ({depth}, the depth), got {got}")
            values[f] = [_choice(f"{f}[{i}]", v, choices[f]) for i, v in enumerate(row)]
        fc = _choice("fc_units", d["fc_units"], c.fc_units)
        layers = [Layer(*vals) for vals in zip(*(values[f] for f in LAYER_FIELDS))]
        self._check_shapes(layers)
        return self._make(layers, fc)

    def _check_shapes(self, layers: Sequence[Layer]) -> None:
        m, size = self.config.min_resolution, self.config.image_size
        for i, layer in enumerate(layers):
            out = layer_out(size, layer.stride, layer.pool)
            if out < m:
                raise UserError(
                    f"invalid arch: layer {i} (stride {layer.stride}, pool {layer.pool}) shrinks the {size}x{size} map "
                    f"to {out}x{out}, below the smallest allowed {m}x{m}; use stride 1 or pool none there, "
                    f"or downsample less in the layers before it")
            size = out

    def smallest(self) -> Arch:
        """The least of every choice: fewest layers, fewest channels, smallest kernels, stride
        1 and no pooling (always valid), the first activation, the smallest FC part. Not
        necessarily the cheapest network (downsampling early is cheaper): see ``cheapest``."""
        c = self.config
        layer = Layer(min(c.channels), min(c.kernels), 1, "none", c.acts[0])
        return self._make([layer] * min(c.depths), min(c.fc_units))

    def largest(self) -> Arch:
        """The most compute: deepest, widest, largest kernels, all at full resolution (stride
        1, no pooling), the widest FC part."""
        c = self.config
        layer = Layer(max(c.channels), max(c.kernels), 1, "none", c.acts[0])
        return self._make([layer] * self.max_depth, max(c.fc_units))

    def size(self) -> int:
        """Exact number of valid archs: per depth, the number of valid stride/pool sequences
        (counted by map size) times the free per-layer choices, times the FC choices."""
        c = self.config
        free = len(c.channels) * len(c.kernels) * len(c.acts)
        counts = {c.image_size: 1}
        total = 0
        for i in range(1, self.max_depth + 1):
            nxt: dict[int, int] = {}
            for size, n in counts.items():
                for _, _, out in self._moves(size):
                    nxt[out] = nxt.get(out, 0) + n * free
            counts = nxt
            if i in c.depths:
                total += sum(counts.values()) * len(c.fc_units)
        return total

    # ---- latency terms --------------------------------------------------------------
    def _conv_block(self, c_in: int, size: int, layer: Layer) -> Block:
        # the same few hundred blocks recur in every arch: build each once (and its key once)
        args = (c_in, size, layer)
        cache = self.__dict__.setdefault("_block_cache", {})
        block = cache.get(args)
        if block is None:
            block = cache[args] = Block.make("conv", (c_in, size, size), c_out=layer.channels, k=layer.kernel,
                                             s=layer.stride, pool=layer.pool, act=layer.act)
        return block

    def _fc_block(self, c_in: int, size: int, units: int, classes: int | None = None) -> Block:
        # keyed by the map it pools (the global pooling's cost grows with it) and its widths
        return Block.make("fc", (c_in, size, size), units=units,
                          classes=self.config.num_classes if classes is None else classes)

    def reference_block(self) -> Block:
        """The first layer at its cheapest-looking choices (for ``cnn``: 3 -> 16 channels at
        32x32, kernel 3, stride 1, no pooling, ReLU): one small conv, as the networks are made of."""
        c = self.config
        first = Layer(min(c.channels), min(c.kernels), 1, "none", c.acts[0])
        return self._conv_block(c.in_channels, c.image_size, first)

    def latency_terms(self, arch: Arch) -> list[Block]:
        c = self.config
        terms, c_in, size = [], c.in_channels, c.image_size
        for layer in self.layers(arch):
            terms.append(self._conv_block(c_in, size, layer))
            c_in, size = layer.channels, layer_out(size, layer.stride, layer.pool)
        terms.append(self._fc_block(c_in, size, arch["fc_units"]))
        return terms

    def _layer_options(self, size: int) -> Iterator[tuple[Layer, int]]:
        """Every layer valid on a ``size`` map, with its output size."""
        c = self.config
        for s, p, out in self._moves(size):
            for ch in c.channels:
                for k in c.kernels:
                    for a in c.acts:
                        yield Layer(ch, k, s, p, a), out

    def _reachable(self) -> list[set[tuple[int, int]]]:
        """(channels, size) of the map entering layer i, for i = 0 .. max depth (the last: what
        the deepest network hands its FC part), walking every valid stride and pool."""
        c = self.config
        states = [{(c.in_channels, c.image_size)}]
        for _ in range(self.max_depth):
            states.append({(layer.channels, out) for _, size in states[-1] for layer, out in self._layer_options(size)})
        return states

    def all_latency_terms(self) -> list[Block]:
        seen: dict[str, Block] = {}
        states = self._reachable()
        for c_in, size in set().union(*states[:-1]):
            for layer, _ in self._layer_options(size):
                b = self._conv_block(c_in, size, layer)
                seen.setdefault(b.key, b)
        heads = set().union(*(states[d] for d in self.config.depths))
        for c_in, size in heads:
            for units in self.config.fc_units:
                b = self._fc_block(c_in, size, units)
                seen.setdefault(b.key, b)
        return sorted(seen.values(), key=lambda b: (b.op != "conv", b.key))

    def cheapest(self, cost: Callable[[Block], float]) -> Arch:
        """Exact minimum of an additive per-block cost (any sign).

        A layer's cost depends only on the map it reads (channels, size) and its own choices,
        so the cheapest chain of i layers ending in each map state extends to i + 1 layers by
        one dynamic-programming step; every allowed depth closes with its cheapest FC part.
        """
        c = self.config
        memo: dict[str, float] = {}

        def cost_of(b: Block) -> float:
            hit = memo.get(b.key)
            if hit is None:
                hit = memo[b.key] = float(cost(b))
            return hit

        # state (channels, size) -> (cost so far, layers so far)
        best: dict[tuple[int, int], tuple[float, list[Layer]]] = {(c.in_channels, c.image_size): (0.0, [])}
        winner: tuple[float, list[Layer], int] | None = None
        for i in range(1, self.max_depth + 1):
            nxt: dict[tuple[int, int], tuple[float, list[Layer]]] = {}
            for (c_in, size), (acc, hist) in best.items():
                for layer, out in self._layer_options(size):
                    total = acc + cost_of(self._conv_block(c_in, size, layer))
                    key = (layer.channels, out)
                    if key not in nxt or total < nxt[key][0]:
                        nxt[key] = (total, hist + [layer])
            best = nxt
            if i in c.depths:
                for (c_in, size), (acc, hist) in best.items():
                    for units in c.fc_units:
                        total = acc + cost_of(self._fc_block(c_in, size, units))
                        if winner is None or total < winner[0]:
                            winner = (total, hist, units)
        assert winner is not None
        return self._make(winner[1], winner[2])

    # ---- modules --------------------------------------------------------------------
    def build_block(self, block: Block):
        from hwnas.space import cnn_modules as m

        p = dict(block.params)
        c_in = block.input_shape[0]
        if block.op == "conv":
            return m.ConvLayer(c_in, p["c_out"], p["k"], p["s"], p["pool"], p["act"])
        if block.op == "fc":
            return m.FCHead(c_in, p["units"], p["classes"])
        raise ValueError(f"unknown block op {block.op!r}")

    def build(self, arch: Arch, num_classes: int | None = None):
        from hwnas.space import cnn_modules as m

        terms = self.build_terms(arch, num_classes)
        return m.CNNNet([self.build_block(b) for b in terms[:-1]], self.build_block(terms[-1]))


def make_cnn_space(name: str, base: CNNConfig, **overrides: Any) -> CNNSpace:
    return CNNSpace(name, configured(name, base, overrides))
