"""Few-shot accuracy predictor: an extremely randomised tree ensemble over zero-cost proxies (and
optionally the space's ``genome_features``), fitted on N archs whose accuracy is known.

The N accuracies come from any evaluator that estimates accuracy: a benchmark table
(``table:CSV#COL``), short stand-alone training (``train:E``) or a supernet. Each proxy enters
as its log rank among the ensemble's fixed reference sample (``hwnas.accuracy.proxy_ensemble``),
so a feature means the same for every arch and every file. Trees suit the few-shot regime:
they need no scaling, ignore features that do not help, and at N = 25 already rank better than
any single proxy (BENCHMARKS.md, NAS-Bench-201).

A fitted predictor is one ``torch.save`` file, loaded with ``weights_only=True``: the trees as
flat node arrays, the reference proxy values, and a JSON header naming the space (with its
config hash), the proxies, the data, seed and batch they are computed on, and the fit report
(out-of-fold Kendall tau over the N points, and on held-out archs where the truth had more).
"""

from __future__ import annotations

import io
import json
from dataclasses import asdict, dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch

from hwnas.accuracy import Evaluator
from hwnas.errors import UserError
from hwnas.fileio import atomic_write_bytes
from hwnas.space import Arch, SearchSpace
from hwnas.space.ref import SpaceRef

FORMAT = "hwnas-accuracy-predictor/2"
FEATURE_SETS = ("proxies", "genome", "both")
# on NAS-Bench-201 CIFAR-10 every proxy adds to the trees' held-out tau at N = 100
DEFAULT_PROXIES = ("params", "flops", "synflow", "naswot", "snip", "grad_norm", "jacov")
DEFAULT_TREES = 300
MIN_POINTS = 10


class Forest:
    """Regression trees as flat node arrays (children, split feature and threshold, leaf value):
    what sklearn fits, kept in a form that saves as plain tensors and predicts in numpy."""

    def __init__(self, left: np.ndarray, right: np.ndarray, feature: np.ndarray, threshold: np.ndarray,
                 value: np.ndarray, roots: np.ndarray) -> None:
        self.left, self.right, self.feature = left, right, feature
        self.threshold, self.value, self.roots = threshold, value, roots

    @classmethod
    def from_sklearn(cls, model: Any) -> "Forest":
        parts: dict[str, list[np.ndarray]] = {k: [] for k in ("left", "right", "feature", "threshold", "value")}
        roots, offset = [], 0
        for est in model.estimators_:
            t = est.tree_
            is_leaf = t.children_left < 0
            parts["left"].append(np.where(is_leaf, -1, t.children_left + offset))
            parts["right"].append(np.where(is_leaf, -1, t.children_right + offset))
            parts["feature"].append(np.where(is_leaf, 0, t.feature))
            parts["threshold"].append(t.threshold)
            parts["value"].append(t.value.reshape(t.node_count, -1)[:, 0])
            roots.append(offset)
            offset += t.node_count
        cat = {k: np.concatenate(v) for k, v in parts.items()}
        return cls(cat["left"].astype(np.int64), cat["right"].astype(np.int64), cat["feature"].astype(np.int64),
                   cat["threshold"].astype(np.float64), cat["value"].astype(np.float64), np.array(roots, dtype=np.int64))

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Mean of the trees' leaf values for each row of ``x``."""
        x = np.asarray(x, dtype=np.float64)
        node = np.broadcast_to(self.roots[:, None], (len(self.roots), len(x))).copy()
        rows = np.broadcast_to(np.arange(len(x))[None, :], node.shape)
        while True:
            inner = self.left[node] >= 0
            if not inner.any():
                break
            go_left = x[rows, self.feature[node]] <= self.threshold[node]
            node = np.where(inner, np.where(go_left, self.left[node], self.right[node]), node)
        return self.value[node].mean(axis=0)

    def tensors(self) -> dict[str, torch.Tensor]:
        return {k: torch.from_numpy(np.ascontiguousarray(getattr(self, k)))
                for k in ("left", "right", "feature", "threshold", "value", "roots")}

    @classmethod
    def from_tensors(cls, t: dict[str, torch.Tensor]) -> "Forest":
        return cls(*(t[k].numpy() for k in ("left", "right", "feature", "threshold", "value", "roots")))


@dataclass
class FewShotFit:
    n_train: int
    cv_kendall_tau: float  # out-of-fold predictions over the N points (5 folds)
    n_holdout: int
    holdout_kendall_tau: float | None  # on archs outside the N, where the truth had them
    holdout_spearman: float | None
    truth: str
    proxies: list[str]
    features: str


def check_features(features: str) -> str:
    if features not in FEATURE_SETS:
        raise UserError(f"unknown predictor features {features!r}; choose one of: {', '.join(FEATURE_SETS)}")
    return features


class FewShotPredictor:
    """Predicts accuracy from proxies of the untrained net (and the genome), computed with ``scorer``."""

    def __init__(self, space: SearchSpace, proxies: Sequence[str] = DEFAULT_PROXIES, features: str = "proxies",
                 data: str = "digits", seed: int = 0, batch_size: int = 64) -> None:
        from hwnas.accuracy.proxies import PROXIES

        self.space, self.features_kind = space, check_features(features)
        self.proxies = tuple(proxies) if features != "genome" else ()
        for p in self.proxies:
            PROXIES.get(p)  # an unknown name fails here, before any work
        if features != "genome" and not self.proxies:
            raise UserError("the predictor needs at least one proxy (--proxies) unless --features genome")
        self.data, self.seed, self.batch_size = data, seed, batch_size
        self.reference: np.ndarray | None = None
        self.forest: Forest | None = None
        self.fit_report: dict[str, Any] = {}
        self._scorer: Any = None

    # ---- features ----------------------------------------------------------------------
    def scorer(self) -> Any:
        if self._scorer is None and self.proxies:
            from hwnas.accuracy.zc_evaluator import ProxyScorer

            self._scorer = ProxyScorer(self.space, self.data, self.seed, self.batch_size)
        return self._scorer

    def use_scorer(self, scorer: Any) -> None:
        """Share an existing ``ProxyScorer`` (same space, data, seed and batch) and its cache."""
        if (scorer.space.config_hash(), scorer.data_spec, scorer.seed, scorer.batch_size) != \
                (self.space.config_hash(), self.data, self.seed, self.batch_size):
            raise ValueError("the scorer computes proxies on other settings than this predictor's")
        self._scorer = scorer

    def _reference(self) -> np.ndarray:
        if self.reference is None:
            from hwnas.accuracy.proxy_ensemble import reference_sample

            self.reference = self.scorer().values(reference_sample(self.space), self.proxies)
        return self.reference

    def feature_matrix(self, archs: Sequence[Arch]) -> np.ndarray:
        blocks = []
        if self.proxies:
            from hwnas.accuracy.proxy_ensemble import log_ranks

            blocks.append(log_ranks(self.scorer().values(archs, self.proxies), self._reference()))
        if self.features_kind in ("genome", "both"):
            genomes = np.array([self.space.encode(self.space.parse(a)) for a in archs], dtype=np.int64)
            blocks.append(np.asarray(self.space.genome_features(genomes), dtype=np.float64).reshape(len(archs), -1))
        return np.hstack(blocks)

    # ---- fit and predict ---------------------------------------------------------------
    @staticmethod
    def _trees(x: np.ndarray, y: np.ndarray, seed: int) -> Forest:
        from sklearn.ensemble import ExtraTreesRegressor

        model = ExtraTreesRegressor(n_estimators=DEFAULT_TREES, random_state=seed, n_jobs=1)
        model.fit(x, y)
        return Forest.from_sklearn(model)

    def fit_matrix(self, x: np.ndarray, y: Sequence[float]) -> float:
        """Fit on feature rows ``x``; returns the out-of-fold Kendall tau (5 folds) over them."""
        from scipy.stats import kendalltau

        y = np.asarray(y, dtype=np.float64)
        if len(y) < MIN_POINTS:
            raise UserError(f"the predictor needs at least {MIN_POINTS} archs with known accuracy, got {len(y)}")
        order = np.random.default_rng(self.seed).permutation(len(y))
        oof = np.empty(len(y))
        for fold in np.array_split(order, 5):
            train = np.setdiff1d(order, fold)
            oof[fold] = self._trees(x[train], y[train], self.seed).predict(x[fold])
        self.forest = self._trees(x, y, self.seed)
        return float(kendalltau(oof, y).statistic)

    def predict_matrix(self, x: np.ndarray) -> np.ndarray:
        if self.forest is None:
            raise RuntimeError("the predictor is not fitted")
        return self.forest.predict(x)

    def predict(self, archs: Sequence[Arch]) -> list[float]:
        if not archs:
            return []
        return [float(v) for v in np.clip(self.predict_matrix(self.feature_matrix(archs)), 0.0, 1.0)]

    # ---- file --------------------------------------------------------------------------
    def header(self) -> dict[str, Any]:
        return {"kind": "fewshot", **SpaceRef.of(self.space).flat(), "proxies": list(self.proxies), "features": self.features_kind,
                "data": self.data, "seed": self.seed, "batch_size": self.batch_size, "fit": self.fit_report}

    def save(self, path: Any) -> None:
        if self.forest is None:
            raise RuntimeError("the predictor is not fitted")
        ref = torch.from_numpy(self._reference() if self.proxies else np.zeros((0, 0)))
        buf = io.BytesIO()
        torch.save({"format": FORMAT, "header": json.dumps(self.header()), "forest": self.forest.tensors(),
                    "reference": ref}, buf)
        atomic_write_bytes(path, buf.getvalue())

    @classmethod
    def from_saved(cls, obj: dict[str, Any], header: dict[str, Any], space: SearchSpace) -> "FewShotPredictor":
        pred = cls(space, header["proxies"], header["features"], header["data"], header["seed"], header["batch_size"])
        pred.forest = Forest.from_tensors(obj["forest"])
        pred.reference = obj["reference"].numpy() if pred.proxies else None
        pred.fit_report = header.get("fit", {})
        return pred


def sample_truth(space: SearchSpace, truth: Evaluator, n: int, holdout: int, seed: int) -> tuple[list[Arch], list[Arch]]:
    """``n`` training archs and up to ``holdout`` others, distinct, drawn with ``seed``: rows of the
    truth's table where it is one (only those have an accuracy), random archs of the space otherwise."""
    table = getattr(truth, "table", None)
    if table is not None:
        pool = table.archs
        if n > len(pool):
            raise UserError(f"--n {n} is more than the {len(pool)} archs table {str(table.path)!r} holds; use --n {len(pool)} or less")
        idx = np.random.default_rng(seed).permutation(len(pool))
        chosen = [pool[i] for i in idx[:n + holdout]]
        return chosen[:n], chosen[n:]
    from hwnas.accuracy.proxy_ensemble import distinct_archs

    archs = distinct_archs(space, n, seed)
    if len(archs) < n:
        raise UserError(f"--n {n} is more than the distinct archs space {space.name!r} yields ({len(archs)} found); use a smaller --n")
    return archs, []


def fit_fewshot(space: SearchSpace, truth: Evaluator, n: int, proxies: Sequence[str] = DEFAULT_PROXIES,
                features: str = "proxies", data: str = "digits", seed: int = 0, batch_size: int = 64,
                holdout: int = 200, on_arch: Callable[[int, int], None] | None = None
                ) -> tuple[FewShotPredictor, FewShotFit, list[dict]]:
    """Fit on ``n`` archs whose accuracy ``truth`` gives; held-out figures on up to ``holdout`` more
    where the truth is a table (free to read), none otherwise (``on_arch(done, total)`` reports)."""
    if not truth.estimates_accuracy:
        raise UserError(f"the predictor is fitted on accuracies, and {truth.spec!r} gives scores; "
                        "use table:CSV#COL, train:E or supernet:CKPT as --truth")
    from hwnas.accuracy.proxy_ensemble import reference_sample

    if n < MIN_POINTS:
        raise UserError(f"--n must be at least {MIN_POINTS}, got {n}")
    pred = FewShotPredictor(space, proxies, features, data, seed, batch_size)
    train, held = sample_truth(space, truth, n, holdout, seed)
    reference = reference_sample(space) if pred.proxies else []
    total = len(reference) + len(train) + len(held)
    done = 0
    if reference:
        ref_rows = []
        for a in reference:  # one at a time, so a long fit shows its progress
            ref_rows.append(pred.scorer().values([a], pred.proxies)[0])
            done += 1
            if on_arch is not None:
                on_arch(done, total)
        pred.reference = np.array(ref_rows)
    rows_x: list[np.ndarray] = []
    accs: list[float] = []
    for k, a in enumerate(train + held):
        rows_x.append(pred.feature_matrix([a])[0])
        if k < len(train):
            accs.append(truth.evaluate([a])[0])
        done += 1
        if on_arch is not None:
            on_arch(done, total)
    x = np.array(rows_x)
    cv = pred.fit_matrix(x[:len(train)], accs)
    tau = rho = None
    if held:
        from scipy.stats import kendalltau, spearmanr

        truth_held = truth.evaluate(held)
        got = pred.predict_matrix(x[len(train):])
        tau, rho = float(kendalltau(got, truth_held).statistic), float(spearmanr(got, truth_held).statistic)
    report = FewShotFit(len(train), cv, len(held), tau, rho, truth.spec, list(pred.proxies), features)
    pred.fit_report = {**asdict(report), "truth_describe": truth.describe()}
    records = [{"id": a.id, "arch": a.to_dict(), "accuracy": acc} for a, acc in zip(train, accs)]
    return pred, report, records
