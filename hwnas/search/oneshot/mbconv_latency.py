"""Expected latency of an MBConv space under independent choice probabilities, and the most
probable arch within a budget.

The device table predicts ``base + stem + sum of block terms + head``, and every block term is
fixed by a handful of decisions: the first block of stage s by (style_s, width_{s-1}, width_s,
kernel_{s,0}, expand_{s,0}), a later block b by (style_s, width_s, kernel_{s,b}, expand_{s,b})
and by whether the stage is deep enough to hold it (depth_s > b); the head by the last width.
With the decisions independent, the expectation of each term is the probability-weighted sum
of its table entries (the previous stage's width is one more independent factor), so

    E[lat] = base + stem
             + sum_s sum P(style) P(w_{s-1}) P(w_s) P(k_{s,0}) P(e_{s,0}) first_s[style, w_{s-1}, w_s, k, e]
             + sum_s sum_{b >= 1} P(depth_s > b) sum P(style) P(w_s) P(k_{s,b}) P(e_{s,b}) rest_s[style, w_s, k, e]
             + sum_w P(w_last = w) head[w]

exactly (no sampling), differentiable in the probabilities. A stage's style is its block kind,
activation and SE (``MBConvSpace.stage_styles``' product order); fixed settings count as one
choice of probability one. For one-hot probabilities every product is one table entry times
ones and the sums run in ``predict``'s order, so the value is ``LatencyPredictor.predict``'s.

``most_probable_within`` discretises: the genome maximising the summed log-probabilities of its
choices with latency within the budget. That is a knapsack; it is solved through its Lagrangian
(maximise log-probability minus ``lam`` times latency, exact by dynamic programming over the
width chain, as ``MBConvSpace.cheapest``), with ``lam`` raised until the result fits.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np
import torch

from hwnas.errors import UserError


class MBConvLayout:
    """Which row of the architecture logits (``space.decisions()`` order) holds which decision."""

    def __init__(self, space: Any) -> None:
        c = space.config
        n, m = space.num_stages, space.max_depth
        self.n, self.m = n, m
        self.cards = tuple(len(d.choices) for d in space.decisions())
        self.depth = list(range(n))
        self.width = [n + s for s in range(n)]
        self.kernel = [[2 * n + s * m + b for b in range(m)] for s in range(n)]
        self.expand = [[2 * n + n * m + s * m + b for b in range(m)] for s in range(n)]
        searched = c.searched()
        # per stage: (position in StageStyle, row) of each searched per-stage setting
        self.style = [[(i, 2 * n + 2 * n * m + j * n + s) for j, i in enumerate(searched)] for s in range(n)]
        self.style_counts = [tuple(len(ch) for ch in c.stage_choices(s)) for s in range(n)]


class MBConvExpectedLatency:
    """``E[lat]`` of an MBConv space from a device table's per-term costs (module docstring)."""

    def __init__(self, space: Any, predictor: Any) -> None:
        from hwnas.space.mbconv import _conv_out

        c = space.config
        if min(c.depths) < 1:
            raise UserError(f"gradient search needs every stage of {space.name} to keep at least one block "
                            f"(depths {list(c.depths)}); drop depth 0 from the space's depths")
        self.space, self.predictor = space, predictor
        self.layout = L = MBConvLayout(space)
        self.cards = L.cards
        cost = lambda b: predictor.term_cost(b.key)  # noqa: E731  (an incomplete table says so here)
        res = space.stage_resolutions()
        self.base, self.stem = float(predictor.base_ms), cost(space.stem_term())
        self.first, self.rest = [], []  # numpy, as _MBConvPlan: [style, prev width, width, k, e], [style, width, k, e]
        prev = (c.stem_channels,)
        for s in range(L.n):
            r_after, styles = _conv_out(res[s], c.strides[s]), space.stage_styles(s)
            self.first.append(np.array([[[[[cost(space.block_term(s, ci, w, res[s], c.strides[s], k, e, st))
                                            for e in c.expands] for k in c.kernels] for w in c.widths[s]]
                                          for ci in prev] for st in styles], dtype=np.float64))
            if L.m > 1:
                self.rest.append(np.array([[[[cost(space.block_term(s, w, w, r_after, 1, k, e, st))
                                              for e in c.expands] for k in c.kernels] for w in c.widths[s]]
                                            for st in styles], dtype=np.float64))
            prev = c.widths[s]
        self.head = np.array([cost(space.head_term(w)) for w in prev], dtype=np.float64)
        self.depths = np.array(c.depths)
        self._on: dict = {}

    # ---- the expectation ------------------------------------------------------------------
    def _tensors(self, device: Any) -> dict:
        t = self._on.get(device)
        if t is None:  # one copy per device, not one per step
            as_t = lambda a: torch.from_numpy(a).to(device)  # noqa: E731
            t = self._on[device] = {"first": [as_t(a) for a in self.first], "rest": [as_t(a) for a in self.rest],
                                    "head": as_t(self.head), "depths": as_t(self.depths)}
        return t

    def style_probs(self, p: torch.Tensor, s: int) -> torch.Tensor:
        """P(style) of stage s, over ``stage_styles(s)``: the product of its settings' probabilities."""
        L = self.layout
        rows = dict(L.style[s])
        factors = [p[rows[i], :L.style_counts[s][i]] if i in rows else p.new_ones(1) for i in range(3)]
        return torch.einsum("a,b,c->abc", *factors).reshape(-1)

    def __call__(self, probs: torch.Tensor) -> torch.Tensor:
        """``probs``: decisions x (most choices), each row's first ``cards[d]`` entries summing to
        one (padding ignored). Returns a float64 scalar."""
        L, p = self.layout, probs.to(torch.float64)
        t = self._tensors(p.device)

        def row(r: int) -> torch.Tensor:
            return p[r, :L.cards[r]]

        depths = t["depths"]
        total = p.new_tensor(self.stem)
        prev = p.new_ones(1)
        for s in range(L.n):
            ps, pw = self.style_probs(p, s), row(L.width[s])
            total = total + torch.einsum("t,p,w,k,e,tpwke->", ps, prev, pw, row(L.kernel[s][0]), row(L.expand[s][0]),
                                         t["first"][s])
            pd = row(L.depth[s])
            for b in range(1, L.m):
                alive = pd[depths > b].sum()  # P(the stage holds block b)
                total = total + alive * torch.einsum("t,w,k,e,twke->", ps, pw, row(L.kernel[s][b]),
                                                     row(L.expand[s][b]), t["rest"][s])
            prev = pw
        total = total + prev @ t["head"]
        return self.base + total

    def of_genome(self, genome: Sequence[int]) -> float:
        return float(self.predictor.predict(self.space.decode([int(g) for g in genome])))

    # ---- discretising within a budget -----------------------------------------------------
    def best_for(self, log_p: Sequence[np.ndarray], lam: float) -> tuple[int, ...]:
        """The genome minimising ``-sum log p(choice) + lam * latency`` (exact). ``log_p[d]``: the
        log-probabilities of decision d's choices. A block beyond its stage's depth takes its most
        probable kernel and expand ratio (they change nothing)."""
        L = self.layout
        lp = [np.asarray(v, dtype=np.float64)[:c] for v, c in zip(log_p, L.cards)]
        genome = [0] * len(L.cards)
        # value[w]: best cost of the stages so far ending in width index w; back[s]: how each was reached
        value = np.array([lam * self.stem])
        back = []
        for s in range(L.n):
            counts = L.style_counts[s]
            styles = list(np.ndindex(*counts))
            rows = dict(L.style[s])
            style_cost = np.array([-sum(lp[rows[i]][idx[i]] for i in rows) for idx in styles])
            ke = lambda b: -lp[L.kernel[s][b]][:, None] - lp[L.expand[s][b]][None, :]  # noqa: E731
            # first block: [style, prev, width] after choosing its kernel and expand
            f = ke(0)[None, None, None] + lam * self.first[s]
            f_flat = f.reshape(*f.shape[:3], -1)
            f_arg, f_cost = f_flat.argmin(-1), f_flat.min(-1)
            # later blocks: [b, style, width]
            rest_arg, rest_cost, free = [], [], []
            for b in range(1, L.m):
                r = (ke(b)[None, None] + lam * self.rest[s]).reshape(len(styles), -1, ke(b).size)
                rest_arg.append(r.argmin(-1))
                rest_cost.append(r.min(-1))
                free.append(-lp[L.kernel[s][b]].max() - lp[L.expand[s][b]].max())
            # depth: the first d blocks active, the others free
            d_cost = []
            for di, d in enumerate(self.depths):
                acc = -lp[L.depth[s]][di] + sum(rest_cost[b - 1] for b in range(1, d)) + sum(free[b - 1] for b in range(d, L.m))
                d_cost.append(np.broadcast_to(acc, (len(styles), len(lp[L.width[s]]))))
            d_cost = np.array(d_cost)  # [depth, style, width]
            d_arg, d_best = d_cost.argmin(0), d_cost.min(0)
            stage = style_cost[:, None, None] + f_cost + d_best[:, None, :] - lp[L.width[s]][None, None, :]
            stage = stage + value[None, :, None]  # [style, prev, width]
            flat = stage.reshape(-1, stage.shape[-1])
            arg = flat.argmin(0)
            value = flat.min(0)
            back.append((arg, stage.shape[:2], styles, f_arg, rest_arg, d_arg))
        total = value + lam * self.head
        w = int(total.argmin())
        for s in reversed(range(L.n)):
            arg, shape, styles, f_arg, rest_arg, d_arg = back[s]
            t, pw = np.unravel_index(int(arg[w]), shape)
            genome[L.width[s]] = w
            for i, r in L.style[s]:
                genome[r] = int(styles[t][i])
            di = int(d_arg[t, w])
            genome[L.depth[s]] = di
            n_e = L.cards[L.expand[s][0]]
            k, e = divmod(int(f_arg[t, pw, w]), n_e)
            genome[L.kernel[s][0]], genome[L.expand[s][0]] = k, e
            for b in range(1, L.m):
                if b < self.depths[di]:
                    k, e = divmod(int(rest_arg[b - 1][t, w]), n_e)
                else:
                    k, e = int(lp[L.kernel[s][b]].argmax()), int(lp[L.expand[s][b]].argmax())
                genome[L.kernel[s][b]], genome[L.expand[s][b]] = k, e
            w = int(pw)
        return tuple(genome)

    def most_probable_within(self, log_p: Sequence[np.ndarray], budget: Optional[float],
                             fallback: Any = None) -> Optional[tuple[int, ...]]:
        """The most probable genome (by the Lagrangian, module docstring) whose predicted latency
        is within ``budget``; ``fallback`` (an arch, e.g. the table's cheapest) where no
        ``lam`` finds one; None if neither fits."""
        first = self.best_for(log_p, 0.0)
        if budget is None or self.of_genome(first) <= budget:
            return first
        lam, hit = 1.0 / max(budget, 1e-9), None
        for _ in range(64):  # raise lam until the arch fits
            g = self.best_for(log_p, lam)
            if self.of_genome(g) <= budget:
                hit = (lam, g)
                break
            lam *= 4.0
        if hit is None:
            if fallback is not None and self.predictor.predict(fallback) <= budget:
                return tuple(self.space.encode(fallback))
            return None
        lo, (hi, best) = (lam / 4.0 if lam > 1.0 / max(budget, 1e-9) else 0.0), hit
        for _ in range(40):  # the smallest lam that fits: the least probability given up
            mid = 0.5 * (lo + hi)
            g = self.best_for(log_p, mid)
            if self.of_genome(g) <= budget:
                hi, best = mid, g
            else:
                lo = mid
            if hi - lo <= 1e-9 * hi:
                break
        return best
