"""The NAS-Bench-201 cell space: 5 operations on the 6 edges of a 4-node cell (15,625 cells).

The network is the benchmark's skeleton: a 3x3 conv stem, three stages of ``cells_per_stage``
cells at 16/32/64 channels joined by residual reduction blocks, then BN-ReLU, global pooling
and a linear classifier. Arch strings use NAS-Bench-201 notation, e.g.
``|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from hwnas.errors import UserError
from hwnas.space.arch import Arch
from hwnas.space.base import Block, Decision, SearchSpace, configured

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
# (to_node, from_node) of each edge, in the order the arch string lists them
EDGES = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))


@dataclass(frozen=True)
class NB201Config:
    image_size: int = 32
    num_classes: int = 10
    channels: tuple[int, ...] = (16, 32, 64)
    cells_per_stage: int = 5


def parse_cell(text: str) -> tuple[str, ...]:
    """NAS-Bench-201 string -> the 6 edge ops in EDGES order; errors name what is wrong."""
    s = text.strip()
    nodes = s.split("+")
    if len(nodes) != 3:
        raise UserError(f"invalid nb201 arch string {s!r}: expected 3 nodes separated by '+', like |nor_conv_3x3~0|+|skip_connect~0|none~1|+|...~0|...~1|...~2|")
    ops: list[str] = []
    for j, node in enumerate(nodes, start=1):
        node = node.strip()
        if not (node.startswith("|") and node.endswith("|")):
            raise UserError(f"invalid nb201 arch string {s!r}: node {j} must be written |op~i|...|")
        parts = node[1:-1].split("|")
        if len(parts) != j:
            raise UserError(f"invalid nb201 arch string {s!r}: node {j} must have {j} inputs, has {len(parts)}")
        for i, part in enumerate(parts):
            op, sep, src = part.partition("~")
            if not sep or src != str(i):
                raise UserError(f"invalid nb201 arch string {s!r}: input {i} of node {j} must be written op~{i}")
            if op not in OPS:
                raise UserError(f"invalid arch: edge {i}->{j} op {op!r} is not allowed; choose one of: {', '.join(OPS)}")
            ops.append(op)
    return tuple(ops)


def format_cell(ops: Sequence[str]) -> str:
    nodes = []
    k = 0
    for j in range(1, 4):
        parts = []
        for i in range(j):
            parts.append(f"{ops[k]}~{i}")
            k += 1
        nodes.append("|" + "|".join(parts) + "|")
    return "+".join(nodes)


def live_edges(ops: Sequence[str]) -> list[tuple[int, int, str]]:
    """(to, from, op) of the edges whose result can reach the cell output (node 3).

    Edges into a node that feeds nothing are dead code; dropping them does not change the
    cell's function, and no real runtime would pay for them.
    """
    feeds_output = {3}
    for (j, i), op in sorted(zip(EDGES, ops), key=lambda e: -e[0][0]):
        if op != "none" and j in feeds_output:
            feeds_output.add(i)
    return [(j, i, op) for (j, i), op in zip(EDGES, ops) if op != "none" and j in feeds_output]


# the cell's input-to-output paths as genome positions (EDGES order): 0->3, 0->1->3, 0->2->3, 0->1->2->3
PATHS = ((3,), (0, 4), (1, 5), (0, 2, 5))
PATH_FEATURES = sum((len(OPS) - 1) ** len(p) for p in PATHS)  # 4 + 16 + 16 + 64 = 100


def path_features(genomes: Any) -> Any:
    """NAS-Bench-201's path encoding (BANANAS, White et al. 2021): one column per (path, the
    sequence of operations along it) for each input-to-output path with no ``none`` on it.
    Cells with the same live paths compute the same function whatever their dead edges, and a
    linear model on these columns sees "a 3x3 convolution between input and output" as one
    feature wherever the edges that carry it are. Genomes (N x 6) -> N x 100 array."""
    G = np.asarray(genomes, dtype=np.int64).reshape(-1, len(EDGES))
    X = np.zeros((len(G), PATH_FEATURES))
    rows = np.arange(len(G))
    offset = 0
    for path in PATHS:
        ops = G[:, list(path)]
        live = (ops > 0).all(axis=1)  # OPS[0] is "none"
        idx = np.zeros(len(G), dtype=np.int64)
        for k in range(len(path)):
            idx = idx * (len(OPS) - 1) + (ops[:, k] - 1)
        X[rows[live], offset + idx[live]] = 1.0
        offset += (len(OPS) - 1) ** len(path)
    return X


def needs_zero(ops: Sequence[str]) -> bool:
    """Whether the cell computes a zero tensor: a live edge reads a node with no live input, or
    the output node has none."""
    live = live_edges(ops)
    fed = {j for j, _, _ in live}
    return 3 not in fed or any(i != 0 and i not in fed for _, i, _ in live)


def conv_kernel(op: str) -> int:
    """The kernel size of a ``nor_conv_KxK`` op."""
    return int(op.rsplit("_", 1)[1].split("x")[0])


def zero_folding(ops: Sequence[str]) -> dict[int, dict[str, list[tuple[int, str]]]] | None:
    """The cell as inference runs it once zero nodes are folded away, or None where they cannot be.

    A node with no live input holds zeros. An edge that skips or pools it adds nothing, and a
    ReLU-conv-BN edge that reads it adds only its BatchNorm's shift (the convolution of zeros
    is zero), a per-channel constant that a graph runtime folds into a neighbouring
    convolution's bias. Computing the zeros (``x * 0``) instead costs a full-size operation
    and, on ONNX Runtime, keeps the node's neighbours out of the blocked layout.

    Returns, per node 1-3, its ``"dynamic"`` inputs ``(from, op)`` and its ``"shift"`` inputs
    (convolutions of a zero node). None where the output node would not depend on the input, or
    where some edge reads a node that holds only shifts (a spatially constant map, which a
    padded convolution would not keep constant): those cells are computed as written.
    """
    live = live_edges(ops)
    state = {0: "dynamic"}
    plan: dict[int, dict[str, list[tuple[int, str]]]] = {}
    for j in (1, 2, 3):
        dynamic, shift = [], []
        for to, i, op in live:
            if to != j:
                continue
            src = state.get(i, "zero")
            if src == "dynamic":
                dynamic.append((i, op))
            elif src == "zero":
                if op.startswith("nor_conv"):
                    shift.append((i, op))
            else:
                return None
        state[j] = "dynamic" if dynamic else ("constant" if shift else "zero")
        plan[j] = {"dynamic": dynamic, "shift": shift}
    return plan if state[3] == "dynamic" else None


class NB201Space(SearchSpace):
    # its cells are sums of tiny operations whose in-network cost is not their cost timed alone
    # (per-node overhead, additions): the calibration fits a per-block time for each of its op
    # kinds, which needs more networks than a scale per kind (cross-validation on ONNX Runtime:
    # 83% of fresh networks within 10% with 50, 86-88% with 100)
    calibration_networks = 100

    def __init__(self, name: str, config: NB201Config) -> None:
        self.name = name
        self.config = config

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (3, self.config.image_size, self.config.image_size)

    # ---- genomes --------------------------------------------------------------------
    def decisions(self) -> list[Decision]:
        return [Decision(f"edge{i}->{j}", OPS) for j, i in EDGES]

    def decode(self, genome: Sequence[int]) -> Arch:
        if len(genome) != len(EDGES):
            raise ValueError(f"genome has {len(genome)} genes, expected {len(EDGES)}")
        return Arch.make(self.name, cell=format_cell([OPS[g] for g in genome]))

    def encode(self, arch: Arch) -> list[int]:
        return [OPS.index(op) for op in parse_cell(arch["cell"])]

    def from_dict(self, d: dict[str, Any]) -> Arch:
        if set(d) != {"cell"}:
            raise UserError("invalid arch: nb201 archs have exactly one field, cell (a NAS-Bench-201 string)")
        if not isinstance(d["cell"], str):
            raise UserError("invalid arch: cell must be a NAS-Bench-201 string such as |nor_conv_3x3~0|+|...|")
        return Arch.make(self.name, cell=format_cell(parse_cell(d["cell"])))

    def parse(self, obj: Any) -> Arch:
        if isinstance(obj, str) and obj.strip().startswith("|"):
            return self.from_dict({"cell": obj})
        return super().parse(obj)

    def ops(self, arch: Arch) -> tuple[str, ...]:
        return parse_cell(arch["cell"])

    def genome_features(self, genomes: Any) -> Any:
        """One-hot choices plus the path encoding (``path_features``)."""
        return np.hstack([super().genome_features(genomes), path_features(genomes)])

    def largest(self) -> Arch:
        """The most expensive cell: a 3x3 convolution on every edge."""
        return self.from_dict({"cell": format_cell(["nor_conv_3x3"] * len(EDGES))})

    def smallest(self) -> Arch:
        """The cheapest cell: every edge "none" (the output is cut off from the input)."""
        return self.from_dict({"cell": format_cell(["none"] * len(EDGES))})

    # ---- latency terms --------------------------------------------------------------
    def stage_shapes(self) -> list[tuple[int, int]]:
        """(channels, resolution) of each stage."""
        r = self.config.image_size
        out = []
        for c in self.config.channels:
            out.append((c, r))
            r = -(-r // 2)
        return out

    def cell_terms(self, ops: Sequence[str], c: int, r: int) -> list[Block]:
        """The operations a cell runs, as a graph runtime runs them.

        A node's ReLU is computed once for every convolution that reads the node, and its
        average pooling once for every edge that pools it (the modules share them, and ONNX
        Runtime's common-subexpression elimination would merge them anyway). A node sum has
        ``inputs - 1`` additions; up to one per convolution among its inputs is ``add_conv``,
        an addition a runtime can fuse into that convolution's output (ONNX Runtime on CPU
        does), the rest are plain ``add``. Both are timed alike; the calibration tells them apart.
        """
        terms = []
        live = live_edges(ops)
        has_zero = needs_zero(ops)
        folded = zero_folding(ops) if has_zero else None
        if folded is not None:
            # inference folds the zero nodes away: only edges from live tensors run, and a
            # node that read a zero node through a convolution adds that BatchNorm's shift
            # (``shift_conv`` where a convolution among its inputs can take it into its bias)
            # (one term per such edge, holding that edge's weights, so that parameter counts
            # add up to the network's)
            live = [(j, i, op) for j in (1, 2, 3) for i, op in folded[j]["dynamic"]]
            for j in (1, 2, 3):
                has_conv = any(op.startswith("nor_conv") for _, op in folded[j]["dynamic"])
                for _, op in folded[j]["shift"]:
                    terms.append(Block.make("shift_conv" if has_conv else "shift", (c, r, r), k=conv_kernel(op)))
        elif has_zero:
            terms.append(Block.make("zero", (c, r, r)))
        relu_done: set[int] = set()
        pool_done: set[int] = set()
        for j, i, op in live:
            if op.startswith("nor_conv"):
                if i not in relu_done:
                    relu_done.add(i)
                    terms.append(Block.make("relu", (c, r, r)))
                terms.append(Block.make(op, (c, r, r)))
            elif op == "avg_pool_3x3":
                if i not in pool_done:
                    pool_done.add(i)
                    terms.append(Block.make(op, (c, r, r)))
            else:
                terms.append(Block.make(op, (c, r, r)))
        for j in (1, 2, 3):
            into = [op for (to, _, op) in live if to == j]
            n_add = max(0, len(into) - 1)
            fused = min(n_add, sum(op.startswith("nor_conv") for op in into))
            terms += [Block.make("add_conv", (c, r, r))] * fused + [Block.make("add", (c, r, r))] * (n_add - fused)
        return terms

    def _skeleton_terms(self, stage_terms) -> list[Block]:
        """Stem, then per stage a reduction block (after the first) and ``stage_terms(c, r)``, then the head."""
        cfg = self.config
        stages = self.stage_shapes()
        terms = [Block.make("stem", self.input_shape, c_out=cfg.channels[0])]
        for s, (c, r) in enumerate(stages):
            if s > 0:
                c_prev, r_prev = stages[s - 1]
                terms.append(Block.make("resblock", (c_prev, r_prev, r_prev), c_out=c))
            terms += stage_terms(c, r)
        c, r = stages[-1]
        terms.append(Block.make("head", (c, r, r), classes=cfg.num_classes))
        return terms

    def latency_terms(self, arch: Arch) -> list[Block]:
        ops = self.ops(arch)
        n = self.config.cells_per_stage
        return self._skeleton_terms(lambda c, r: self.cell_terms(ops, c, r) * n)

    def all_latency_terms(self) -> list[Block]:
        return self._skeleton_terms(lambda c, r: [Block.make(op, (c, r, r)) for op in OPS[1:] + ("relu", "add", "add_conv", "zero")]
                                   + [Block.make(op, (c, r, r), k=k) for op in ("shift", "shift_conv") for k in (1, 3)])

    # ---- modules --------------------------------------------------------------------
    def build_block(self, block: Block):
        from hwnas.space import nb201_modules as m

        c = block.input_shape[0]
        if block.op == "stem":
            return m.Stem(c, block.param("c_out"))
        if block.op == "resblock":
            return m.ResBlock(c, block.param("c_out"))
        if block.op == "head":
            return m.Head(c, block.param("classes"))
        if block.op in ("add", "add_conv"):
            return m.AddTwo()
        if block.op == "relu":
            return m.nn.ReLU()
        if block.op.startswith("nor_conv"):  # its ReLU is the separate "relu" term
            return m.nn.Sequential(*list(m.make_op(block.op, c))[1:])
        if block.op == "zero":
            return m.Zero()
        if block.op in ("shift", "shift_conv"):
            return m.Shift(c, block.param("k"), in_sum=block.op == "shift")
        return m.make_op(block.op, c)

    def build(self, arch: Arch, num_classes: int | None = None):
        from hwnas.space import nb201_modules as m

        arch = self.parse(arch)
        cfg = self.config
        return m.NB201Net(self.ops(arch), cfg.channels, cfg.cells_per_stage,
                          num_classes if num_classes is not None else cfg.num_classes)


def make_nb201_space(name: str, base: NB201Config, **overrides: Any) -> NB201Space:
    return NB201Space(name, configured(name, base, overrides))
