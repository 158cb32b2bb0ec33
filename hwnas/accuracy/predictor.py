"""Accuracy predictor: an MLP (OFA's 3 x 400) over a one-hot arch encoding, fitted on supernet
evaluations, and the ``predictor:FILE`` evaluator that reads it or a few-shot predictor
(``hwnas.accuracy.fewshot``).

Saved as one ``torch.save`` file holding a state dict and a JSON header (space, config hash,
layer sizes, target scaling, held-out figures); loaded with ``weights_only=True``.
"""

from __future__ import annotations

import io
import json
import random
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from hwnas.accuracy import EVALUATORS, Evaluator
from hwnas.errors import UserError
from hwnas.fileio import atomic_write_bytes
from hwnas.space import Arch, SearchSpace
from hwnas.space.ref import SpaceRef

FORMAT = "hwnas-accuracy-predictor/1"


def one_hot(space: SearchSpace, arch: Arch) -> list[float]:
    """One block of one-hot bits per decision; decisions an arch does not use (kernels and
    expands of blocks beyond a stage's depth) are all zeros rather than a fake choice."""
    genome = space.encode(arch)
    depths = arch["depths"] if "depths" in set(arch.keys()) else None
    feats: list[float] = []
    for d, g in zip(space.decisions(), genome):
        bits = [0.0] * len(d.choices)
        used = True
        if depths is not None and (d.name.startswith("kernel") or d.name.startswith("expand")):
            s, b = (int(v) for v in re.sub(r"^[a-z]+", "", d.name).split("."))
            used = b < depths[s]
        if used:
            bits[g] = 1.0
        feats += bits
    return feats


def mlp(n_in: int, hidden: Sequence[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for h in hidden:
        layers += [nn.Linear(n_in, h), nn.ReLU()]
        n_in = h
    layers.append(nn.Linear(n_in, 1))
    return nn.Sequential(*layers)


def kendall_tau(a: Sequence[float], b: Sequence[float]) -> float:
    from scipy.stats import kendalltau

    return float(kendalltau(a, b).statistic)


@dataclass
class _OneHotPlan:
    """Where each decision's bits start in ``one_hot``, and which kernel/expand decisions are
    switched off by their stage's depth (decision index, stage, block), for whole batches."""

    offsets: np.ndarray
    uses_depths: bool
    gated: np.ndarray
    gate_stage: np.ndarray
    gate_block: np.ndarray
    depth_genes: np.ndarray
    depth_values: np.ndarray  # stages x max choices: the depth each depth gene's index means

    @classmethod
    def of(cls, space: SearchSpace) -> "_OneHotPlan":
        decisions = space.decisions()
        cards = [len(d.choices) for d in decisions]
        offsets = np.cumsum([0] + cards[:-1]).astype(np.int64)
        probe = space.decode([0] * len(decisions))
        uses_depths = "depths" in set(probe.keys())
        gated, stage, block = [], [], []
        index = {d.name: i for i, d in enumerate(decisions)}
        if uses_depths:
            for i, d in enumerate(decisions):
                if d.name.startswith("kernel") or d.name.startswith("expand"):
                    s, b = (int(v) for v in re.sub(r"^[a-z]+", "", d.name).split("."))
                    gated.append(i), stage.append(s), block.append(b)
        n_stages = max(stage) + 1 if stage else 0
        depth_genes = np.array([index[f"depth{s}"] for s in range(n_stages)], dtype=np.int64)
        width = max((cards[i] for i in depth_genes), default=1)
        depth_values = np.zeros((n_stages, width), dtype=np.int64)
        for s, i in enumerate(depth_genes):
            depth_values[s, :cards[i]] = decisions[i].choices
        return cls(offsets, uses_depths, np.array(gated, dtype=np.int64), np.array(stage, dtype=np.int64),
                   np.array(block, dtype=np.int64), depth_genes, depth_values)


@dataclass
class PredictorFit:
    n_train: int
    n_test: int
    kendall_tau: float
    spearman: float
    rmse: float  # accuracy points (fraction)


class AccuracyPredictor:
    def __init__(self, space: SearchSpace, hidden: Sequence[int] = (400, 400, 400)) -> None:
        self.space = space
        self.hidden = tuple(hidden)
        self.n_in = len(one_hot(space, space.largest()))
        self.net = mlp(self.n_in, self.hidden)
        self.y_mean, self.y_std = 0.0, 1.0
        self.fit_report: dict[str, Any] = {}

    def features(self, archs: Sequence[Arch]) -> torch.Tensor:
        """The ``one_hot`` rows of ``archs``, built from their genomes in a few numpy operations
        (a per-arch Python loop limited scoring to about a thousand candidates per second)."""
        plan = self._plan()
        genomes = np.array([self._genome(a) for a in archs], dtype=np.int64).reshape(len(archs), len(plan.offsets))
        x = np.zeros((len(archs), self.n_in), dtype=np.float32)
        used = np.ones(genomes.shape, dtype=bool)
        if plan.gated.size and plan.uses_depths:
            depth = plan.depth_values[np.arange(len(plan.depth_genes)), genomes[:, plan.depth_genes]]  # N x stages
            used[:, plan.gated] = depth[:, plan.gate_stage] > plan.gate_block
        rows = np.broadcast_to(np.arange(len(archs))[:, None], genomes.shape)
        x[rows[used], (genomes + plan.offsets)[used]] = 1.0
        return torch.from_numpy(x)

    def _genome(self, arch: Any) -> list[int]:
        # Arch values of this space come from its parse/decode/sample, which validate them, so
        # their genome is taken as is; anything else is parsed (and validated) first, as before
        if isinstance(arch, Arch) and arch.space == self.space.name:
            try:
                g = self.space.encode(arch)
                if len(g) == len(self._plan().offsets):
                    return g
            except (ValueError, KeyError, IndexError, TypeError):
                pass
        return self.space.encode(self.space.parse(arch))

    def _plan(self) -> "_OneHotPlan":
        if getattr(self, "_plan_cache", None) is None:
            self._plan_cache = _OneHotPlan.of(self.space)
        return self._plan_cache

    def fit(self, archs: Sequence[Arch], accs: Sequence[float], seed: int = 0, epochs: int = 500, lr: float = 1e-3) -> None:
        torch.manual_seed(seed)
        self.net = mlp(self.n_in, self.hidden)
        x = self.features(archs)
        y = torch.tensor(accs, dtype=torch.float32)
        self.y_mean, self.y_std = float(y.mean()), float(y.std().clamp_min(1e-4))
        yt = (y - self.y_mean) / self.y_std
        opt = torch.optim.Adam(self.net.parameters(), lr=lr, weight_decay=1e-4)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
        g = torch.Generator().manual_seed(seed)
        for _ in range(epochs):
            for idx in torch.randperm(len(y), generator=g).split(64):
                opt.zero_grad()
                loss = ((self.net(x[idx]).squeeze(1) - yt[idx]) ** 2).mean()
                loss.backward()
                opt.step()
            sched.step()

    @torch.no_grad()
    def predict(self, archs: Sequence[Arch]) -> list[float]:
        if not archs:
            return []
        self.net.eval()
        y = self.net(self.features(archs)).squeeze(1) * self.y_std + self.y_mean
        return [float(v) for v in y.clamp(0.0, 1.0)]

    def save(self, path: str | Path) -> None:
        header = {**SpaceRef.of(self.space).flat(),
                  "hidden": list(self.hidden), "n_in": self.n_in, "y_mean": self.y_mean, "y_std": self.y_std,
                  "fit": self.fit_report}
        buf = io.BytesIO()
        torch.save({"format": FORMAT, "header": json.dumps(header), "state_dict": self.net.state_dict()}, buf)
        atomic_write_bytes(path, buf.getvalue())

    @classmethod
    def load(cls, path: str | Path, space: SearchSpace | None = None) -> "AccuracyPredictor":
        pred = load_predictor(path, space)
        if not isinstance(pred, cls):
            raise UserError(f"{str(path)!r} is a few-shot predictor, not an MLP one; read it with load_predictor")
        return pred


def _read_predictor_file(path: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The saved object and its JSON header, for either format; one clear error otherwise."""
    from hwnas.accuracy.fewshot import FORMAT as FEWSHOT_FORMAT

    p = Path(path)
    if not p.is_file():
        raise UserError(f"predictor {str(p)!r} does not exist; build one with `hwnas predictor fit`")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
        ok = isinstance(obj, dict) and obj.get("format") in (FORMAT, FEWSHOT_FORMAT)
        header = json.loads(obj["header"]) if ok else None
    except Exception:
        header = None
    if header is None:
        raise UserError(f"{str(p)!r} is not an hwnas accuracy predictor or is corrupt; rebuild it with `hwnas predictor fit`")
    return obj, header


def predictor_space(path: str | Path) -> SearchSpace:
    """The search space (with its settings) a predictor file was fitted for."""
    from hwnas.space import space_from_config

    _, header = _read_predictor_file(path)
    return space_from_config(header["space"], header["space_config"])


def load_predictor(path: str | Path, space: SearchSpace | None = None) -> Any:
    """An ``AccuracyPredictor`` (MLP on the genome) or a ``FewShotPredictor`` (trees on proxies),
    whichever the file holds; refuses a file fitted for another space or other settings."""
    from hwnas.accuracy.fewshot import FORMAT as FEWSHOT_FORMAT, FewShotPredictor

    obj, header = _read_predictor_file(path)
    if space is None:
        from hwnas.space import space_from_config

        space = space_from_config(header["space"], header["space_config"])
    SpaceRef.from_record(header).check(space, f"predictor {str(path)!r}", "fit one for this space with `hwnas predictor fit`",
                                       made="fitted")
    if obj["format"] == FEWSHOT_FORMAT:
        return FewShotPredictor.from_saved(obj, header, space)
    pred = AccuracyPredictor(space, header["hidden"])
    pred.net.load_state_dict(obj["state_dict"])
    pred.y_mean, pred.y_std, pred.fit_report = header["y_mean"], header["y_std"], header.get("fit", {})
    return pred


def sample_and_split(space: SearchSpace, n: int, seed: int = 0,
                     test_fraction: float = 0.2) -> tuple[list[Arch], list[int], int]:
    """The ``n`` distinct archs ``fit_predictor`` samples with ``seed``, a seeded shuffled order of
    their indices, and how many of the first in that order are held out."""
    if n < 10:
        raise UserError(f"--n must be at least 10 to hold some archs out, got {n}")
    from hwnas.accuracy.proxy_ensemble import distinct_archs

    pool = distinct_archs(space, n, seed)
    order = list(range(len(pool)))
    random.Random(seed + 1).shuffle(order)
    return pool, order, max(2, int(round(len(pool) * test_fraction)))


def fit_predictor(space: SearchSpace, evaluator: Evaluator, n: int, seed: int = 0, test_fraction: float = 0.2,
                  hidden: Sequence[int] = (400, 400, 400), epochs: int = 500) -> tuple[AccuracyPredictor, PredictorFit, list[dict]]:
    """Sample ``n`` distinct archs, evaluate them, fit on (1 - test_fraction) and report the rest."""
    pool, order, n_test = sample_and_split(space, n, seed, test_fraction)
    accs = evaluator.evaluate(pool)
    test, train = order[:n_test], order[n_test:]
    pred = AccuracyPredictor(space, hidden)
    pred.fit([pool[i] for i in train], [accs[i] for i in train], seed=seed, epochs=epochs)
    got = pred.predict([pool[i] for i in test])
    truth = [accs[i] for i in test]
    from scipy.stats import spearmanr

    report = PredictorFit(len(train), len(test), kendall_tau(got, truth), float(spearmanr(got, truth).statistic),
                          float(np.sqrt(np.mean((np.array(got) - np.array(truth)) ** 2))))
    pred.fit_report = {**asdict(report), "evaluator": evaluator.describe(), "seed": seed}
    pred.fit([pool[i] for i in order], [accs[i] for i in order], seed=seed, epochs=epochs)  # final model uses all
    records = [{"id": a.id, "arch": a.to_dict(), "accuracy": acc} for a, acc in zip(pool, accs)]
    return pred, report, records


@EVALUATORS.register("predictor", "accuracy from a fitted predictor: predictor:FILE (`hwnas predictor fit`: "
                                  "few-shot trees on proxies, or an MLP on supernet accuracies)")
class PredictorEvaluator(Evaluator):
    def __init__(self, arg: str, space: SearchSpace, data: str | None = None, **_: Any) -> None:
        if not arg:
            raise UserError("the predictor evaluator needs a file: predictor:PATH (from `hwnas predictor fit`)")
        self.spec = f"predictor:{arg}"
        self.space = space
        self.pred = load_predictor(arg, space)
        fitted_on = getattr(self.pred, "data", None)
        if data is not None and fitted_on is not None and data != fitted_on:
            raise UserError(f"predictor {arg!r} computes its proxies on {fitted_on!r}, not {data!r}; "
                            "drop --data or fit a predictor on that data")

    def evaluate(self, archs: Sequence[Arch]) -> list[float]:
        return self.pred.predict([self.space.parse(a) for a in archs])

    def describe(self) -> dict[str, Any]:
        return {"spec": self.spec, "fit": self.pred.fit_report}
