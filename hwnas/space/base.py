"""What every search space provides: parsing, sampling, variation, latency terms, building."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import random
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Sequence

from hwnas.errors import UserError
from hwnas.space.arch import Arch

if TYPE_CHECKING:  # torch is imported only where a module is built
    import torch.nn as nn


def as_rng(seed_or_rng: Any = None) -> random.Random:
    """Accept a seed, a ``random.Random`` or a ``numpy.random.Generator``; return a ``random.Random``."""
    if isinstance(seed_or_rng, random.Random):
        return seed_or_rng
    if seed_or_rng is None or isinstance(seed_or_rng, int):
        return random.Random(seed_or_rng)
    if hasattr(seed_or_rng, "integers"):  # numpy Generator: derive a stable seed from it
        return random.Random(int(seed_or_rng.integers(0, 2**63 - 1)))
    raise TypeError(f"expected a seed or a random generator, got {type(seed_or_rng).__name__}")


@dataclass(frozen=True)
class Decision:
    """One categorical choice of a space (a gene): its name and allowed values."""

    name: str
    choices: tuple[Any, ...]


@dataclass(frozen=True)
class Block:
    """One latency term: a piece of a network that is timed alone and keyed in the table.

    ``params`` holds everything that changes the cost (channels, kernel, stride, ...);
    ``input_shape`` is (C, H, W) without the batch axis.
    """

    op: str
    params: tuple[tuple[str, Any], ...]
    input_shape: tuple[int, int, int]

    @classmethod
    def make(cls, op: str, input_shape: Sequence[int], **params: Any) -> "Block":
        return cls(op, tuple(sorted(params.items())), tuple(int(x) for x in input_shape))

    def param(self, name: str) -> Any:
        return dict(self.params)[name]

    @functools.cached_property
    def key(self) -> str:  # cached: predictors look it up for every block of every candidate
        c, h, w = self.input_shape
        fields = [f"in={c}x{h}x{w}"] + [f"{k}={v}" for k, v in self.params]
        return f"{self.op}|" + "|".join(fields)

    def to_dict(self) -> dict[str, Any]:
        return {"op": self.op, "input_shape": list(self.input_shape), **dict(self.params)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Block":
        """The inverse of ``to_dict``."""
        params = {k: v for k, v in d.items() if k not in ("op", "input_shape")}
        return cls.make(str(d["op"]), d["input_shape"], **params)


def one_hot_features(cards: Sequence[int]) -> Callable[[Any], Any]:
    """One column per (decision, choice): the default genome features (N x decisions -> N x
    sum(cards) numpy array) that the search's surrogate reads."""
    import numpy as np

    offsets = np.concatenate([[0], np.cumsum(cards)[:-1]]).astype(np.int64)
    width = int(sum(cards))

    def features(genomes: np.ndarray) -> np.ndarray:
        G = np.asarray(genomes, dtype=np.int64).reshape(-1, len(offsets))
        X = np.zeros((len(G), width))
        X[np.arange(len(G))[:, None], G + offsets] = 1.0
        return X

    return features


class SearchSpace(ABC):
    """Base class of the registered spaces.

    Subclasses define ``decisions``, ``decode``/``encode`` between archs and genomes (one
    choice index per decision), validation of a parsed dict, the latency terms of an arch,
    and building torch modules.
    """

    name: str
    config: Any  # a frozen dataclass
    # whole networks a latency table's calibration measures by default: enough for the fit's
    # unknowns (a scale and a per-block time per op kind that varies, and an offset)
    calibration_networks: int = 10

    # ---- identity -------------------------------------------------------------------
    def config_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self.config)))

    def config_hash(self) -> str:
        blob = json.dumps({"space": self.name, "config": self.config_dict()}, sort_keys=True)
        return hashlib.sha1(blob.encode()).hexdigest()[:12]

    @property
    @abstractmethod
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one input image."""

    @property
    def num_classes(self) -> int:
        return int(self.config.num_classes)

    # ---- genomes --------------------------------------------------------------------
    @abstractmethod
    def decisions(self) -> list[Decision]:
        """All categorical choices, in a fixed order."""

    @abstractmethod
    def decode(self, genome: Sequence[int]) -> Arch:
        """Genome (one choice index per decision) -> arch. Unused genes are ignored."""

    @abstractmethod
    def encode(self, arch: Arch) -> list[int]:
        """Arch -> genome; genes that the arch does not use are 0."""

    # ---- parsing and validation -----------------------------------------------------
    @abstractmethod
    def from_dict(self, d: dict[str, Any]) -> Arch:
        """Validate a dict of choices (without ``space``) and return the canonical arch."""

    def parse(self, obj: Any) -> Arch:
        """Accept an ``Arch``, a dict, a JSON string or one line of ``hwnas sample`` output."""
        if isinstance(obj, Arch):
            obj = obj.to_dict()
        if isinstance(obj, (bytes, bytearray)):
            obj = obj.decode("utf-8")
        if isinstance(obj, str):
            text = obj.strip()
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as e:
                raise UserError(f"arch is not JSON ({e.msg}): {text[:60]!r}") from None
        if not isinstance(obj, dict):
            raise UserError(f"arch must be a JSON object, got {type(obj).__name__}")
        d = dict(obj)
        if "arch" in d and isinstance(d["arch"], dict):  # a journal/result record wrapping an arch
            d = dict(d["arch"])
        space = d.pop("space", self.name)
        if space != self.name:
            raise UserError(f"arch belongs to space {space!r}, not {self.name!r}")
        d.pop("id", None)
        return self.from_dict(d)

    # ---- sampling and variation -----------------------------------------------------
    def sample(self, rng: Any = None) -> Arch:
        r = as_rng(rng)
        return self.decode([r.randrange(len(d.choices)) for d in self.decisions()])

    def genome_features(self, genomes: Any) -> Any:
        """Numeric features of genomes (N x decisions -> N x F numpy array) for the surrogate
        that screens search candidates (``hwnas.search.surrogate``): one column per
        (decision, choice). Spaces with structure a linear model should see override this."""
        return one_hot_features([len(d.choices) for d in self.decisions()])(genomes)

    def random_genome(self, rng: Any = None) -> list[int]:
        r = as_rng(rng)
        return [r.randrange(len(d.choices)) for d in self.decisions()]

    def mutate(self, arch: Arch, rng: Any = None, prob: float | None = None) -> Arch:
        """Resample each gene with probability ``prob`` (default 1/#decisions); never returns ``arch`` itself
        unless the space has a single point."""
        r = as_rng(rng)
        decisions = self.decisions()
        p = prob if prob is not None else 1.0 / len(decisions)
        genome = self.encode(arch)
        for _ in range(100):
            child = [
                (r.randrange(len(d.choices)) if r.random() < p else g) for g, d in zip(genome, decisions)
            ]
            out = self.decode(child)
            if out != arch:
                return out
            # force one change on an active gene on the next try
            i = r.randrange(len(decisions))
            genome2 = list(genome)
            genome2[i] = r.randrange(len(decisions[i].choices))
            out = self.decode(genome2)
            if out != arch:
                return out
        return arch

    def crossover(self, a: Arch, b: Arch, rng: Any = None) -> Arch:
        """Uniform crossover of the two genomes."""
        r = as_rng(rng)
        ga, gb = self.encode(a), self.encode(b)
        return self.decode([x if r.random() < 0.5 else y for x, y in zip(ga, gb)])

    def size(self) -> int:
        """Number of distinct archs (counted exactly where the space is small)."""
        n = 1
        for d in self.decisions():
            n *= len(d.choices)
        return n

    def cheapest(self, cost: "Callable[[Block], float]") -> Arch:
        """The arch whose latency terms have the smallest total ``cost``.

        The base version enumerates every genome (fine for spaces of a few tens of thousands
        of points); large spaces override it with an exact dynamic programme.
        """
        import itertools

        if self.size() > 200_000:
            raise NotImplementedError(f"{self.name} is too large to enumerate; override cheapest()")
        best, best_cost = None, float("inf")
        seen: set[Arch] = set()
        for genome in itertools.product(*(range(len(d.choices)) for d in self.decisions())):
            arch = self.decode(genome)
            if arch in seen:
                continue
            seen.add(arch)
            c = sum(cost(b) for b in self.latency_terms(arch))
            if c < best_cost:
                best, best_cost = arch, c
        assert best is not None
        return best

    # ---- latency terms and modules --------------------------------------------------
    @abstractmethod
    def latency_terms(self, arch: Arch) -> list[Block]:
        """The pieces whose table entries add up to the arch's latency."""

    @abstractmethod
    def all_latency_terms(self) -> list[Block]:
        """Every distinct term any arch of the space can use (what a table must hold)."""

    @abstractmethod
    def build_block(self, block: Block) -> "nn.Module":
        """A module computing one latency term on inputs of ``block.input_shape``."""

    def reference_block(self) -> Block | None:
        """A small, fixed latency term that backends with a costly whole reference network
        (eager torch) pair every timed call with instead; None: use the reference network."""
        return None

    def build_terms(self, arch: Arch, num_classes: int | None = None) -> list[Block]:
        """The latency terms a network is built from (one module each), the last one, the
        classifier, with ``num_classes`` outputs where that differs from the space's."""
        terms = self.latency_terms(self.parse(arch))
        if num_classes is not None and num_classes != self.num_classes:
            head = terms[-1]
            terms[-1] = Block.make(head.op, head.input_shape, **{**dict(head.params), "classes": num_classes})
        return terms

    @abstractmethod
    def build(self, arch: Arch, num_classes: int | None = None) -> "nn.Module":
        """A plain ``torch.nn.Module`` taking (N, *input_shape) inputs."""


def check_choice(field: str, value: Any, allowed: Sequence[Any]) -> Any:
    if isinstance(value, bool) or value not in allowed:
        shown = ", ".join(str(a) for a in allowed)
        raise UserError(f"invalid arch: {field} = {value!r} is not allowed; choose one of: {shown}")
    return value


def configured(name: str, base: Any, overrides: dict[str, Any]) -> Any:
    """The preset configuration ``base`` (a frozen dataclass) with ``overrides`` (JSON lists become
    tuples): an unknown setting or an invalid value is one line naming the space."""
    fields = set(type(base).__dataclass_fields__)
    bad = set(overrides) - fields
    if bad:
        raise UserError(f"unknown {name} setting(s): {', '.join(sorted(bad))}; known: {', '.join(sorted(fields))}")
    try:
        return dataclasses.replace(base, **{k: _tupleize(v) for k, v in overrides.items()})
    except (ValueError, TypeError) as e:
        raise UserError(f"invalid {name} settings: {e}") from None


def _tupleize(v: Any) -> Any:
    return tuple(_tupleize(x) for x in v) if isinstance(v, list) else v

