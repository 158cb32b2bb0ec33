"""REINFORCE (Williams 1992) with a per-decision categorical policy and a moving-average
baseline, rewarded as in MnasNet: ``ACC * (LAT / T) ** w``.

- ``reward="soft"``: ``w = -0.07`` everywhere (MnasNet's soft constraint);
- ``reward="hard"``: ``w = 0`` within the latency budget and ``-1`` over it.

Candidates over a hard budget are never evaluated (like every hwnas strategy): they are drawn
again. With ``penalize_rejects`` the policy is also told a reward of 0 for them (free, the
strongest penalty); on the NAS-Bench-201 benchmark that pushed the policy toward tiny cells and
doubled the regret, so it is off by default. The advantage is divided by a running standard
deviation of the reward, so one learning rate fits tasks whose accuracies differ by tenths of a
point or by tens.
"""

from __future__ import annotations

import math

import numpy as np

from hwnas.errors import UserError
from hwnas.search.problem import Genome, Values
from hwnas.search.strategy import STRATEGIES, Strategy

REWARDS = ("soft", "hard")
# draws per ask before falling back to a uniform feasible candidate: a policy that has drifted
# onto over-budget cells would otherwise spin
_MAX_DRAWS = 200


@STRATEGIES.register("reinforce", "REINFORCE policy over the decisions with a MnasNet latency-aware reward")
class Reinforce(Strategy):
    name = "reinforce"
    # tuned on the NAS-Bench-201 benchmark (benchmarks/search_nb201.py, BENCHMARKS.md)
    defaults = {"reward": "soft", "w": -0.07, "lr": 0.05, "baseline_decay": 0.95, "max_repeats": 20,
                "penalize_rejects": False}

    def setup(self) -> None:
        self.reward_form = str(self.options["reward"])
        if self.reward_form not in REWARDS:
            raise UserError(f"reinforce reward must be one of: {', '.join(REWARDS)} (got {self.reward_form!r})")
        self.w = float(self.options["w"])
        self.lr = float(self.options["lr"])
        self.decay = float(self.options["baseline_decay"])
        if not 0.0 <= self.decay < 1.0:
            raise UserError(f"reinforce baseline_decay must be in [0, 1), got {self.decay}")
        self.max_repeats = int(self.options["max_repeats"])
        width = int(self.cards.max())
        self.logits = np.zeros((len(self.cards), width))
        # impossible choices of short decisions get -inf so they are never sampled
        self.mask = np.arange(width)[None, :] < self.cards[:, None]
        self.logits[~self.mask] = -np.inf
        self.baseline: float | None = None
        self.var = 0.0

    def reward(self, values: Values) -> float:
        acc = float(values["accuracy"])
        t = self.problem.latency_budget
        if t is None or "latency_ms" not in values:
            return acc
        ratio = max(float(values["latency_ms"]), 1e-9) / t
        if self.reward_form == "hard":
            w = 0.0 if ratio <= 1.0 else -1.0
        else:
            w = self.w
        return acc * ratio ** w

    def _probs(self) -> np.ndarray:
        z = self.logits - self.logits.max(axis=1, keepdims=True)
        p = np.exp(z)
        return p / p.sum(axis=1, keepdims=True)

    def _sample(self) -> Genome:
        p = self._probs()
        u = self.rng.random(len(self.cards))
        idx = (p.cumsum(axis=1) < u[:, None]).sum(axis=1)
        return self.problem.canonical(tuple(int(min(i, c - 1)) for i, c in zip(idx, self.cards)))

    def _update(self, g: Genome, r: float) -> None:
        if self.baseline is None:
            self.baseline = r
        adv = r - self.baseline
        self.var = self.decay * self.var + (1 - self.decay) * adv * adv
        scaled = float(np.clip(adv / (math.sqrt(self.var) + 1e-8), -3.0, 3.0))
        p = self._probs()
        grad = -p
        grad[np.arange(len(g)), list(g)] += 1.0
        grad[~self.mask] = 0.0
        self.logits += self.lr * scaled * grad
        self.baseline = self.decay * self.baseline + (1 - self.decay) * r

    def ask(self) -> Genome:
        repeats = 0
        for _ in range(_MAX_DRAWS):
            g = self._sample()
            if not self.problem.feasible(g):
                if self.options["penalize_rejects"]:
                    self._update(g, 0.0)  # over budget: penalized, never evaluated
                continue
            if g in self.known:
                if repeats >= self.max_repeats:
                    # the policy has (nearly) converged on known candidates: explore instead of
                    # spending the evaluation on a repeat
                    break
                # already evaluated: learn from it again for free and draw another
                repeats += 1
                self._update(g, self.reward(self.known[g]))
                continue
            return g
        return self.random_feasible()

    def on_tell(self, genome: Genome, values: Values) -> None:
        self._update(genome, self.reward(values))
