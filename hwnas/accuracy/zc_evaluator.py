"""``zc:NAME``: a zero-cost proxy of the untrained network as the evaluator (a score that ranks
archs, not an accuracy), and ``ProxyScorer``, which computes and caches the raw proxies.

Scores are a function of (space, arch, dataset, seed, batch size): the seed picks the batch of
real training images and the initial weights. They are cached in JSON lines under the cache
directory, one record per (arch, proxy), so a search or a benchmark that asks again pays once.

``zc:ensemble`` combines several proxies by rank (``hwnas.accuracy.proxy_ensemble``).
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any, Sequence

import numpy as np
import torch

from hwnas.accuracy import EVALUATORS, Evaluator
from hwnas.accuracy.proxies import PROXIES, ProxyBatch, compute_proxy
from hwnas.data import Dataset, load_dataset
from hwnas.data.cache import cache_dir
from hwnas.errors import UserError
from hwnas.fileio import Journal, read_journal
from hwnas.space import Arch, SearchSpace

DEFAULT_BATCH = 64


def proxy_batch(ds: Dataset, batch_size: int, seed: int) -> ProxyBatch:
    """``batch_size`` training images chosen with ``seed``, unaugmented, at the model's input size."""
    n = min(batch_size, len(ds.train_y))
    idx = torch.randperm(len(ds.train_y), generator=torch.Generator().manual_seed(seed))[:n]
    return ProxyBatch(ds.prepare(ds.train_x[idx]), ds.train_y[idx].clone(), ds.num_classes)


class ProxyScorer:
    """Raw proxy values of archs of ``space`` on a dataset, computed on demand and cached."""

    def __init__(self, space: SearchSpace, data: str = "digits", seed: int = 0, batch_size: int = DEFAULT_BATCH,
                 cache: bool = True, dataset: Dataset | None = None) -> None:
        if batch_size < 2:
            raise UserError(f"the proxies' batch size must be at least 2 images, got {batch_size}")
        self.space, self.data_spec, self.seed, self.batch_size = space, data, seed, batch_size
        self.ds = dataset if dataset is not None else load_dataset(data, image_size=space.input_shape[-1])
        self.batch = proxy_batch(self.ds, batch_size, seed)
        self.values_cache: dict[tuple[str, str], float] = {}
        self.seconds: dict[str, list[float]] = {}
        self._journal: Journal | None = None
        if cache:
            blob = json.dumps({"space": space.name, "config": space.config_hash(), "data": self.ds.describe(),
                               "seed": seed, "batch": batch_size, "torch": torch.__version__.split("+")[0]}, sort_keys=True)
            folder = cache_dir() / "zc"
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"{space.name}-{hashlib.sha1(blob.encode()).hexdigest()[:16]}.jsonl"
            for rec in read_journal(path)[0]:
                if isinstance(rec.get("id"), str) and isinstance(rec.get("proxy"), str) and isinstance(rec.get("value"), (int, float)):
                    self.values_cache[(rec["id"], rec["proxy"])] = float(rec["value"])
            self._journal = Journal(path)

    def describe(self) -> dict[str, Any]:
        return {"data": self.data_spec, "seed": self.seed, "batch_size": self.batch_size}

    def _fresh(self, arch: Arch) -> torch.nn.Module:
        torch.manual_seed(self.seed)  # the same initial weights for every proxy of an arch
        return self.space.build(arch, num_classes=self.ds.num_classes)

    def _compute(self, arch: Arch, names: Sequence[str]) -> dict[str, float]:
        out: dict[str, float] = {}
        todo = [n for n in names if (arch.id, n) not in self.values_cache]
        if "snip" in todo and "grad_norm" in todo:  # one backward pass serves both
            t0 = time.perf_counter()
            from hwnas.accuracy.proxies import gradient_scores

            out.update(gradient_scores(self._fresh(arch), self.batch))
            dt = (time.perf_counter() - t0) / 2
            self.seconds.setdefault("snip", []).append(dt)
            self.seconds.setdefault("grad_norm", []).append(dt)
            todo = [n for n in todo if n not in ("snip", "grad_norm")]
        for n in todo:
            t0 = time.perf_counter()
            out[n] = compute_proxy(n, self._fresh(arch), self.batch)
            self.seconds.setdefault(n, []).append(time.perf_counter() - t0)
        for n, v in out.items():
            self.values_cache[(arch.id, n)] = v
            if self._journal is not None:
                self._journal.append({"id": arch.id, "proxy": n, "value": v})
        return out

    def values(self, archs: Sequence[Arch], names: Sequence[str]) -> np.ndarray:
        """len(archs) x len(names) raw values (higher: better)."""
        for n in names:
            PROXIES.get(n)  # unknown names fail before any work
        out = np.empty((len(archs), len(names)))
        for i, a in enumerate(archs):
            arch = self.space.parse(a)
            self._compute(arch, names)
            out[i] = [self.values_cache[(arch.id, n)] for n in names]
        return out

    def close(self) -> None:
        if self._journal is not None:
            self._journal.close()


def proxy_names() -> list[str]:
    from hwnas.accuracy.proxy_ensemble import ENSEMBLE_NAME

    return PROXIES.names() + [ENSEMBLE_NAME]


@EVALUATORS.register("zc", "zero-cost proxy of the untrained net on real images: zc:NAME "
                           "(naswot, synflow, snip, grad_norm, jacov, params, flops, ensemble); a score, not an accuracy")
class ZeroCostEvaluator(Evaluator):
    estimates_accuracy = False

    def __init__(self, arg: str, space: SearchSpace, data: str | None = None, seed: int = 0,
                 batch_size: int = DEFAULT_BATCH, cache: bool = True, dataset: Dataset | None = None, **_: Any) -> None:
        from hwnas.accuracy.proxy_ensemble import ENSEMBLE_NAME, ProxyEnsemble

        names = proxy_names()
        if arg not in names:
            raise UserError(f"unknown zero-cost proxy {arg!r}; choose one of: {', '.join(names)} (as zc:NAME)")
        self.spec, self.space, self.name = f"zc:{arg}", space, arg
        self.scorer = ProxyScorer(space, data or "digits", seed, batch_size, cache, dataset)
        self.ensemble = ProxyEnsemble(self.scorer) if arg == ENSEMBLE_NAME else None

    def evaluate(self, archs: Sequence[Arch]) -> list[float]:
        if not archs:
            return []
        if self.ensemble is not None:
            return [float(v) for v in self.ensemble.score(archs)]
        return [float(v) for v in self.scorer.values(archs, [self.name])[:, 0]]

    def describe(self) -> dict[str, Any]:
        d = {"spec": self.spec, **self.scorer.describe()}
        if self.ensemble is not None:
            d["ensemble"] = self.ensemble.describe()
        return d
