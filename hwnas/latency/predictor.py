"""Predict a network's latency from a table: sum of block entries, then the fitted calibration.

Each block entry was timed alone and so includes one inference call's fixed overhead; a whole
network pays it once. The raw estimate therefore subtracts the measured call overhead from
every entry and adds it back once:

    cost(block)     = max(entry - overhead, 0)
    raw(arch)       = overhead + sum over the arch's blocks of cost(block)
    predicted(arch) = scale * overhead + offset
                      + sum over op kinds g of (scale_g * (sum of cost over g) + ms_g * n_g)

``n_g`` is how many blocks of kind g the arch has. ``scale_g`` (one per op kind: stem, mbconv,
head, nor_conv_3x3, add, ...), ``ms_g`` and ``offset`` are fitted on K whole networks measured
end to end. One scale per op kind absorbs what timing a block alone gets wrong in proportion to
its cost (layout reorders at a lone block's edges). The per-block time ``ms_g`` absorbs what it
gets wrong per block regardless of its size: a block whose lone timing is all call overhead
(a skip, an addition, a zero tensor: cost 0) still costs a graph node's dispatch inside a
network. On NAS-Bench-201 cells, made of such tiny operations, the per-block times raised the
share of networks predicted within 10% from about 58% to 76% in cross-validation over 100
measured networks (40 for the fit). The scales are pulled towards a single common scale and the
per-block times towards zero (ridge), so kinds the calibration networks barely vary keep the
common scale; with a single kind it is the plain ``scale * raw + offset`` fit.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Iterable, Mapping, Sequence

import numpy as np

from hwnas.errors import UserError
from hwnas.latency.stats import fit_linear
from hwnas.latency.table import LatencyTable
from hwnas.space.ref import SpaceRef

RIDGE = 0.05  # strength of the pull of every op kind's scale towards the common scale
# strength of the pull of every op kind's per-block time towards zero: 0.1 rather than 0.01
# raised nb201 / ONNX Runtime cross-validation (fit on 100 of 170 measured networks, 20
# splits) from 86% to 88% within 10% and left mbv3-32 unchanged (96% ORT, 100% torch)
COUNT_RIDGE = 0.1


def raw_from_terms(term_ms: Iterable[float], overhead_ms: float) -> float:
    return overhead_ms + sum(max(t - overhead_ms, 0.0) for t in term_ms)


def cost_by_op(terms: Iterable[tuple[str, float]], overhead_ms: float) -> dict[str, float]:
    """Sum of overhead-free block costs per op kind, from (op, entry latency) pairs."""
    out: dict[str, float] = defaultdict(float)
    for op, ms in terms:
        out[op] += max(ms - overhead_ms, 0.0)
    return dict(out)


def fit_calibration(raw_ms: Sequence[float], measured_ms: Sequence[float]) -> tuple[float, float]:
    return fit_linear(raw_ms, measured_ms)


def count_by_op(ops: Iterable[str]) -> dict[str, int]:
    """How many blocks of each op kind a network has."""
    out: dict[str, int] = defaultdict(int)
    for op in ops:
        out[op] += 1
    return dict(out)


def fit_grouped_calibration(costs: Sequence[Mapping[str, float]], measured_ms: Sequence[float],
                            overhead_ms: float, ridge: float = RIDGE,
                            counts: Sequence[Mapping[str, int]] | None = None,
                            count_ridge: float = COUNT_RIDGE, act_mb: Sequence[float] | None = None) -> dict:
    """Fit ``measured = scale*overhead + sum_g (scale_g * cost_g + ms_g * n_g) + offset`` (module doc).

    ``counts`` (blocks per op kind and network) adds the per-block terms ``ms_g`` for the op
    kinds whose count varies across the calibration networks; without it they are all zero.
    ``act_mb`` (each network's activation megabytes, the sum of its blocks') offers one more
    term, ``ms_per_act_mb``: kept only when it is positive and lowers the leave-one-out error
    over the calibration networks, else zero (``act_term`` records the comparison)."""
    y = np.asarray(measured_ms, dtype=float)
    raw = np.array([overhead_ms + sum(c.values()) for c in costs])
    scale, offset = fit_linear(raw, y)
    ops = sorted({op for c in costs for op in c} | {op for n in (counts or []) for op in n})
    if len(ops) <= 1 or len(y) < 4:
        return {"scale": scale, "offset_ms": offset, "op_scales": {op: scale for op in ops}, "op_block_ms": {}}
    X = np.array([[c.get(op, 0.0) for op in ops] for c in costs])
    N = np.array([[n.get(op, 0) for op in ops] for n in counts], dtype=float) if counts else np.zeros((len(y), 0))
    varying = [i for i in range(N.shape[1]) if np.ptp(N[:, i]) > 0]
    N = N[:, varying]
    ones = np.ones((len(y), 1))
    # design matrices without and with the activation column: one scale per op kind, one
    # per-block time per varying op kind, [the time per activation MB,] then the offset
    designs = {False: np.c_[X, N, ones]}
    if act_mb is not None:
        designs[True] = np.c_[X, N, np.asarray(act_mb, dtype=float)[:, None], ones]

    def solve(rows: np.ndarray, with_act: bool) -> np.ndarray:
        # the overhead term uses the common scale; rows weighted by 1/measured so that the fit
        # minimises relative error, as fit_linear does. Scales are pulled towards the common
        # scale, per-block times towards zero; the activation term and the offset are not pulled.
        wts = 1.0 / np.maximum(y[rows], 1e-12)
        A = designs[with_act][rows] * wts[:, None]
        b = (y[rows] - scale * overhead_ms) * wts
        norms = np.maximum((A[:, :len(ops) + N.shape[1]] ** 2).sum(axis=0), 1e-12)
        lam = np.r_[ridge * norms[:len(ops)], count_ridge * norms[len(ops):]]
        A_aug = np.r_[A, np.c_[np.diag(np.sqrt(lam)), np.zeros((len(lam), A.shape[1] - len(lam)))]]
        b_aug = np.r_[b, np.sqrt(lam[:len(ops)]) * scale, np.zeros(N.shape[1])]
        return np.linalg.lstsq(A_aug, b_aug, rcond=None)[0]

    def loo_error(with_act: bool) -> float:
        D, every = designs[with_act], np.arange(len(y))
        return float(np.mean([abs(scale * overhead_ms + D[i] @ solve(every[every != i], with_act) - y[i]) / y[i]
                              for i in every]))

    all_rows = np.arange(len(y))
    w = solve(all_rows, False)
    act_term = None
    if act_mb is not None and len(y) >= 8 and np.ptp(act_mb) > 0:
        w_act = solve(all_rows, True)
        without, with_ = loo_error(False), loo_error(True)
        kept = bool(w_act[-2] > 0 and with_ < without)
        act_term = {"kept": kept, "loo_mape_without": without, "loo_mape_with": with_,
                    "fitted_ms_per_mb": float(w_act[-2])}
        if kept:
            w = w_act
    op_scales = {op: float(max(v, 0.0)) for op, v in zip(ops, w[:len(ops)])}
    op_block_ms = {ops[i]: float(v) for i, v in zip(varying, w[len(ops):len(ops) + len(varying)])}
    fit = {"scale": scale, "offset_ms": float(w[-1]), "op_scales": op_scales, "op_block_ms": op_block_ms}
    if act_term is not None:
        fit["ms_per_act_mb"] = float(w[-2]) if act_term["kept"] else 0.0
        fit["act_term"] = act_term
    return fit


def predict_from_costs(costs: Mapping[str, float], calibration: Mapping, overhead_ms: float,
                       counts: Mapping[str, int] | None = None, act_mb: float | None = None) -> float:
    scale = float(calibration["scale"])
    op_scales = calibration.get("op_scales") or {}
    block_ms = calibration.get("op_block_ms") or {}
    total = scale * overhead_ms + float(calibration["offset_ms"])
    for op, c in costs.items():
        total += float(op_scales.get(op, scale)) * c
    for op, n in (counts or {}).items():
        total += float(block_ms.get(op, 0.0)) * n
    return total + float(calibration.get("ms_per_act_mb") or 0.0) * float(act_mb or 0.0)


class LatencyPredictor:
    """Latency of archs of one space from one table (checked to match the space)."""

    def __init__(self, table: LatencyTable, space=None) -> None:
        if space is None:
            space = table.get_space()
        SpaceRef.from_record(table.space).check(space, "latency table", f"profile this space (`hwnas profile --space "
                                                                    f"{space.name}`) or pick a matching table", made="built")
        self.table = table
        self.space = space
        self.overhead = table.call_overhead_ms
        self.calibration = table.calibration
        scale = float(table.calibration["scale"])
        op_scales = table.calibration.get("op_scales") or {}
        block_ms = table.calibration.get("op_block_ms") or {}
        act = float(table.calibration.get("ms_per_act_mb") or 0.0)
        # protocol-calibrated milliseconds -> plain ones: f * ms + b (1 and 0 for tables in the
        # older units; b 0 for tables converted by a factor alone)
        from hwnas.latency.units import plain_factor, plain_offset_ms

        self.units_factor = f = plain_factor(table)
        self.units_offset_ms = plain_offset_ms(table)
        # per-term cost: call overhead removed, its op kind's scale applied, its per-block time and
        # its activation traffic's time added
        self._cost = {k: f * (max(e.latency_ms - self.overhead, 0.0) * float(op_scales.get(e.op, scale))
                              + float(block_ms.get(e.op, 0.0)) + act * float(e.act_mb or 0.0))
                      for k, e in table.entries.items()}
        # what every network costs besides its blocks' terms: one call's overhead and the offset
        self.base_ms = f * (scale * self.overhead + float(table.calibration["offset_ms"])) + self.units_offset_ms
        # no network runs faster than one call of an empty one: a fit whose offset is negative
        # (a noisy or small calibration set) would otherwise extrapolate the smallest archs to
        # zero or below, and a budget check against the space's minimum would pass anything
        self.floor_ms = f * self.overhead + max(self.units_offset_ms, 0.0)

    def term_cost(self, key: str) -> float:
        try:
            return self._cost[key]
        except KeyError:
            raise UserError(f"latency table has no entry for block {key!r}; it is incomplete for this space: rebuild it with `hwnas profile`") from None

    def raw_ms(self, arch) -> float:
        """The uncalibrated estimate: call overhead plus the blocks' overhead-free entries."""
        entries = self.table.entries
        return raw_from_terms((entries[b.key].latency_ms for b in self.space.latency_terms(arch) if b.key in entries),
                              self.overhead)

    def predict(self, arch) -> float:
        return max(self.base_ms + sum(self.term_cost(b.key) for b in self.space.latency_terms(arch)), self.floor_ms)

    def protocol_ms(self, arch) -> float:
        """The prediction before the conversion to plain milliseconds (the protocol's scale)."""
        return (self.predict(arch) - self.units_offset_ms) / self.units_factor

    def predict_many(self, archs: Sequence) -> np.ndarray:
        """``predict`` of every arch, equal to it bit for bit. MBConv spaces take a vectorized
        path over genomes (per-arch term lists limited a search to a few thousand candidates per
        second); rows it cannot score (an arch it cannot encode, a term the table lacks) go
        through ``predict``, which says what is wrong."""
        plan = self._mbconv_plan()
        if plan is None or len(archs) == 0:
            return np.array([self.predict(a) for a in archs], dtype=float)
        out = np.full(len(archs), np.nan)
        rows, genomes = [], []
        for i, a in enumerate(archs):
            try:
                g = self.space.encode(a)
            except (ValueError, KeyError, IndexError, TypeError, AttributeError):
                continue
            if len(g) == plan.n_genes:
                rows.append(i)
                genomes.append(g)
        if genomes:
            out[rows] = np.maximum(plan.predict(np.array(genomes, dtype=np.int64), self.base_ms), self.floor_ms)
        for i in np.flatnonzero(np.isnan(out)):
            out[i] = self.predict(archs[i])
        return out

    def _mbconv_plan(self) -> "_MBConvPlan | None":
        if not hasattr(self, "_plan"):
            self._plan = _MBConvPlan.of(self)
        return self._plan

    def min_latency(self) -> tuple[float, object]:
        """The smallest latency the space can reach under this table, and an arch that reaches it.

        Computed once per predictor: for small spaces it enumerates every arch."""
        if not hasattr(self, "_min"):
            arch = self.space.cheapest(lambda b: self.term_cost(b.key))
            self._min = (self.predict(arch), arch)
        return self._min


class _MBConvPlan:
    """Per-stage cost arrays of an MBConv space, indexed by genes, so that a batch of genomes
    is scored in a few numpy operations. The sums run in ``predict``'s order (stem, blocks in
    order, head, then the base added last) so that the results are the same floats. A stage's
    style (block kind, activation, SE; one style where the space searches none) is one more
    axis, its index built from the stage's style genes (``MBConvSpace.stage_styles``' order)."""

    def __init__(self, space, cost) -> None:
        from hwnas.space.mbconv import _conv_out

        c = space.config
        self.n, self.m = space.num_stages, space.max_depth
        searched = c.searched()
        self.n_genes = 2 * self.n + 2 * self.n * self.m + self.n * len(searched)
        self.depths = np.array(c.depths, dtype=np.int64)
        # style index = sum over searched settings of gene * stride, strides of the product order
        counts = [len(ch) for ch in c.stage_choices(0)]
        self.style_genes = [(2 * self.n + 2 * self.n * self.m + j * self.n, int(np.prod(counts[i + 1:])))
                            for j, i in enumerate(searched)]
        res = space.stage_resolutions()
        self.stem = cost(space.stem_term())
        # first[s][style, prev width, width, kernel, expand]; rest[s][style, width, kernel, expand]
        self.first, self.rest = [], []
        prev = (c.stem_channels,)
        for s in range(self.n):
            r_after = _conv_out(res[s], c.strides[s])
            styles = space.stage_styles(s)
            self.first.append(np.array([[[[[cost(space.block_term(s, ci, w, res[s], c.strides[s], k, e, st))
                                            for e in c.expands] for k in c.kernels] for w in c.widths[s]]
                                          for ci in prev] for st in styles]))
            self.rest.append(np.array([[[[cost(space.block_term(s, w, w, r_after, 1, k, e, st))
                                          for e in c.expands] for k in c.kernels] for w in c.widths[s]]
                                        for st in styles]))
            prev = c.widths[s]
        self.head = np.array([cost(space.head_term(w)) for w in prev])

    @classmethod
    def of(cls, pred: "LatencyPredictor") -> "_MBConvPlan | None":
        """The plan for the predictor's space, or None where it does not apply (another kind of
        space, a stage that may be skipped) or does not reproduce ``predict`` on a few archs."""
        import random

        from hwnas.space.mbconv import MBConvSpace

        space = pred.space
        if not isinstance(space, MBConvSpace) or min(space.config.depths) < 1:
            return None
        nan = float("nan")
        plan = cls(space, lambda b: pred._cost.get(b.key, nan))
        rng = random.Random(0)
        probe = [space.smallest(), space.largest()] + [space.sample(rng) for _ in range(8)]
        try:
            want = np.array([pred.predict(a) for a in probe])
        except UserError:  # an incomplete table: predict() reports it where it matters
            return plan
        got = np.maximum(plan.predict(np.array([space.encode(a) for a in probe], dtype=np.int64), pred.base_ms), pred.floor_ms)
        return plan if np.array_equal(got, want) else None

    def predict(self, genomes: np.ndarray, base: float) -> np.ndarray:
        n, m = self.n, self.m
        total = np.zeros(len(genomes)) + self.stem
        prev = np.zeros(len(genomes), dtype=np.int64)
        for s in range(n):
            depth = self.depths[genomes[:, s]]
            w = genomes[:, n + s]
            style = np.zeros(len(genomes), dtype=np.int64)
            for g0, stride in self.style_genes:
                style = style + genomes[:, g0 + s] * stride
            for b in range(m):
                k, e = genomes[:, 2 * n + s * m + b], genomes[:, 2 * n + n * m + s * m + b]
                if b == 0:
                    total = total + self.first[s][style, prev, w, k, e]
                else:  # adding 0.0 for a block beyond the depth leaves the sum unchanged
                    total = total + np.where(b < depth, self.rest[s][style, w, k, e], 0.0)
            prev = w
        total = total + self.head[prev]
        return base + total
