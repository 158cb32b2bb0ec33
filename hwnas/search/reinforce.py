"""REINFORCE (Williams 1992) with a per-decision categorical policy and a moving-average
baseline, rewarded as in MnasNet: ``ACC * (LAT / T) ** w``.

- ``reward="hard"`` (default): ``w = 0`` within the latency budget and ``-1`` over it;
- ``reward="soft"``: ``w = -0.07`` everywhere (MnasNet's soft constraint). Since no candidate
  over a hard budget is ever evaluated, the soft form only pays for being faster than the
  budget, which is not what a search for the most accurate network under a budget wants: on
  the NAS-Bench-201 benchmark it gave 1.6 to 1.9 times the regret at 300 evaluations.

The policy learns from batches of ``batch_size`` evaluated candidates. Advantages (reward minus
the moving-average baseline) are divided by the batch's reward standard deviation, so one
learning rate fits tasks whose accuracies differ by tenths of a point or by tens. Each
batch gives ``pg_steps`` Adam steps on the policy gradient, plus ``entropy`` times the gradient
of the policy's entropy, plus ``elite_weight`` times the gradient of the log-likelihood of the
``elite`` best candidates seen so far (priority-queue training, Abolafia et al. 2018). The last
term is what made the policy competitive on the benchmark: it keeps the policy centred on the
best cells found, so that its new draws are their near neighbours, where better cells are.

With probability ``swap_prob`` an ask is not drawn from the policy but is one of those best
candidates with the values of two genes exchanged (``Strategy.swap``, see evolution.py): a
product of per-decision categoricals cannot put mass on "move this operation there" without
also drawing the cells in between, so the policy alone reaches such neighbours slowly. The
policy learns from these candidates like from its own draws (an off-policy bias, like the
priority-queue term's); on the benchmark's tuning tasks swap_prob 0.1-0.3 all lowered the regret
at 300 evaluations (BENCHMARKS.md).

Screening (``screen``, on by default, as in evolution.py): after ``screen_after`` evaluations
an ask draws ``screen`` candidates as above plus ``screen_random`` uniform feasible ones and
evaluates the one a linear surrogate over everything told so far scores highest (upper
confidence bound). The policy learns from whatever is evaluated, as with the swaps.

Candidates over a hard budget are never evaluated (like every hwnas strategy), and since an
evaluation is deterministic, neither is a candidate evaluated before: such draws are drawn
again, up to ``max_draws`` per ask, then a uniform feasible candidate is taken. With
``penalize_rejects`` the policy is also told a reward of 0 for over-budget draws (free, the
strongest penalty); on the NAS-Bench-201 benchmark that pushed the policy toward tiny cells
and doubled the regret, so it is off by default.
"""

from __future__ import annotations

import numpy as np

from hwnas.errors import UserError
from hwnas.search.problem import Genome, Values
from hwnas.search.strategy import STRATEGIES, Strategy

REWARDS = ("soft", "hard")


@STRATEGIES.register("reinforce", "REINFORCE policy over the decisions with a MnasNet latency-aware reward")
class Reinforce(Strategy):
    name = "reinforce"
    # tuned on the NAS-Bench-201 benchmark (benchmarks/search_nb201.py; docs/notes/2026-11-search-defaults-tuning.md)
    defaults = {"reward": "hard", "w": -0.07, "lr": 0.05, "baseline_decay": 0.9, "batch_size": 10, "pg_steps": 4,
                "entropy": 0.0, "elite": 3, "elite_weight": 2.0, "max_draws": 100,
                "penalize_rejects": False, "swap_prob": 0.2, **Strategy.SCREEN_DEFAULTS}

    def setup(self) -> None:
        self.reward_form = str(self.options["reward"])
        if self.reward_form not in REWARDS:
            raise UserError(f"reinforce reward must be one of: {', '.join(REWARDS)} (got {self.reward_form!r})")
        self.w = float(self.options["w"])
        self.lr = float(self.options["lr"])
        self.decay = float(self.options["baseline_decay"])
        if not 0.0 <= self.decay < 1.0:
            raise UserError(f"reinforce baseline_decay must be in [0, 1), got {self.decay}")
        self.batch_size = int(self.options["batch_size"])
        self.pg_steps = int(self.options["pg_steps"])
        if self.batch_size < 1 or self.pg_steps < 1:
            raise UserError(f"reinforce needs batch_size >= 1 and pg_steps >= 1, got {self.batch_size} and {self.pg_steps}")
        self.entropy = float(self.options["entropy"])
        self.check_screen_options()
        self.max_draws = max(1, int(self.options["max_draws"]))
        self.n_elite = int(self.options["elite"])
        self.elite_weight = float(self.options["elite_weight"])
        self.elites: list[tuple[float, Genome]] = []  # the best rewards seen so far
        width = int(self.cards.max())
        self.logits = np.zeros((len(self.cards), width))
        # impossible choices of short decisions get -inf so they are never sampled
        self.mask = np.arange(width)[None, :] < self.cards[:, None]
        self.logits[~self.mask] = -np.inf
        self._adam_m = np.zeros_like(self.logits)
        self._adam_v = np.zeros_like(self.logits)
        self._adam_t = 0
        self.baseline: float | None = None
        self.batch: list[tuple[Genome, float]] = []

    def reward(self, values: Values) -> float:
        acc = float(values["accuracy"])
        t = self.problem.latency_budget_ms
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

    def _sample(self, cum: np.ndarray) -> Genome:
        u = self.rng.random(len(self.cards))
        idx = (cum < u[:, None]).sum(axis=1)
        return self.problem.canonical(tuple(int(min(i, c - 1)) for i, c in zip(idx, self.cards)))

    def _learn(self, genomes: list[Genome], rewards: list[float]) -> None:
        r = np.asarray(rewards, dtype=float)
        if self.baseline is None:
            self.baseline = float(r.mean())
        spread = float(r.std())
        adv = (r - self.baseline) / spread if spread > 0 else np.zeros_like(r)
        adv = np.clip(adv, -3.0, 3.0) / len(r)
        G = np.asarray(genomes, dtype=np.int64)
        rows = np.arange(len(self.cards))
        chosen = np.zeros_like(self.logits)  # sum over the batch of adv_i * onehot(g_i)
        for g, a in zip(G, adv):
            chosen[rows, g] += a
        elite = np.zeros_like(self.logits)  # mean over the elites of onehot(g)
        if self.n_elite > 0:
            for rr, g in zip(r, G):
                self.elites.append((float(rr), tuple(int(x) for x in g)))
            self.elites = sorted(self.elites, key=lambda e: (-e[0], e[1]))[:self.n_elite]
            for _, g in self.elites:
                elite[rows, list(g)] += self.elite_weight / len(self.elites)
        for _ in range(self.pg_steps):
            p = self._probs()
            grad = chosen - p * adv.sum()  # gradient of sum_i adv_i log pi(g_i)
            if self.n_elite > 0:  # priority-queue training: log-likelihood of the best seen so far
                grad += elite - p * self.elite_weight
            if self.entropy > 0:
                logp = np.log(np.where(self.mask, p, 1.0))
                h = -(np.where(self.mask, p * logp, 0.0)).sum(axis=1, keepdims=True)
                grad += self.entropy * -p * (logp + h)
            grad[~self.mask] = 0.0
            self._adam_step(grad)
        self.baseline = self.decay * self.baseline + (1 - self.decay) * float(r.mean())

    def _adam_step(self, grad: np.ndarray, b1: float = 0.9, b2: float = 0.999) -> None:
        self._adam_t += 1
        self._adam_m = b1 * self._adam_m + (1 - b1) * grad
        self._adam_v = b2 * self._adam_v + (1 - b2) * grad * grad
        m_hat = self._adam_m / (1 - b1 ** self._adam_t)
        v_hat = self._adam_v / (1 - b2 ** self._adam_t)
        step = self.lr * m_hat / (np.sqrt(v_hat) + 1e-8)
        self.logits = np.where(self.mask, self.logits + step, -np.inf)

    def ask(self) -> Genome:
        return self.screened(self._draw)

    def _draw(self) -> Genome:
        swap = float(self.options["swap_prob"])
        if swap > 0 and self.elites and self.rng.random() < swap:
            # a move the per-decision policy cannot represent: two genes of a best-so-far exchanged
            for _ in range(self.max_draws):
                g = self.swap(self.elites[int(self.rng.integers(len(self.elites)))][1])
                if self.usable(g):
                    return g
        cum = self._probs().cumsum(axis=1)
        for _ in range(self.max_draws):
            g = self._sample(cum)
            if g in self.known:
                continue  # evaluations are deterministic: a repeat would teach nothing new
            if self.problem.feasible(g):
                return g
            if self.options["penalize_rejects"] and self._record(g, 0.0):  # over budget: penalized, never evaluated
                cum = self._probs().cumsum(axis=1)
        return self.random_feasible()

    def on_tell(self, genome: Genome, values: Values) -> None:
        self._record(genome, self.reward(values))

    def _record(self, genome: Genome, reward: float) -> bool:
        """Add to the batch; learn from it once full (returns whether the policy changed)."""
        self.batch.append((genome, reward))
        if len(self.batch) < self.batch_size:
            return False
        genomes, rewards = zip(*self.batch)
        self.batch = []
        self._learn(list(genomes), list(rewards))
        return True
