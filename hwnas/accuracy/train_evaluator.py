"""``train[:EPOCHS]``: each arch trained from scratch on the shared loop (small spaces, checking
the supernet, ground truth for the proxies and the few-shot predictor).

Results are cached per (space, arch, data, split, recipe) in JSON lines under the cache
directory: training is the expensive evaluator, and a benchmark rerun or a resumed search
should not pay twice.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from typing import Any, Sequence

from hwnas.accuracy import EVALUATORS, Evaluator
from hwnas.accuracy.standalone import train_standalone
from hwnas.accuracy.training import TrainRecipe
from hwnas.data import load_dataset
from hwnas.data.cache import cache_dir
from hwnas.errors import UserError
from hwnas.fileio import Journal, read_journal
from hwnas.space import Arch, SearchSpace

# recipe fields that change what is learned (threads, device and compilation do not, beyond noise)
_RESULT_FIELDS = ("epochs", "batch_size", "lr", "momentum", "weight_decay", "label_smoothing", "optimizer",
                  "warmup_epochs", "seed", "max_steps")


def _result_key(recipe: TrainRecipe) -> dict[str, Any]:
    """The recipe fields a result depends on; ``augment`` only where it differs from the default,
    so that the caches written before it existed keep their names."""
    key = {k: getattr(recipe, k) for k in _RESULT_FIELDS}
    if recipe.augment != 1.0:
        key["augment"] = recipe.augment
    return key


@EVALUATORS.register("train", "each arch trained from scratch for E epochs on the shared loop: train:E "
                              "(options data=, seed=, train_limit=)")
class TrainEvaluator(Evaluator):
    # ``evaluate(..., hparams=)`` trains with a candidate's own hyperparameters (hwnas search --hparams)
    accepts_hparams = True

    def __init__(self, arg: str, space: SearchSpace, data: str = "digits", epochs: int | None = None, seed: int = 0,
                 batch_size: int = 64, lr: float = 0.05, device: str = "auto", split: str = "val",
                 train_limit: int | None = None, val_limit: int | None = None, progress: bool = False,
                 threads: int | None = None, cache: bool = True, recipe: TrainRecipe | None = None, **_: Any) -> None:
        if arg:
            try:
                epochs = int(arg)
            except ValueError:
                raise UserError(f"train evaluator: {arg!r} is not a number of epochs; use train:E") from None
        epochs = 10 if epochs is None else epochs
        self.spec = f"train:{epochs}"
        self.space = space
        if recipe is None:
            recipe = TrainRecipe(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, device=device, threads=threads)
        else:
            recipe = dataclasses.replace(recipe, epochs=epochs)
        self.cfg = recipe
        self.cfg.check()
        if split not in ("val", "test"):
            raise UserError(f"the train evaluator measures val or test, not {split!r}")
        self.data_spec, self.split, self.progress = data, split, progress
        self.train_limit, self.val_limit = train_limit, val_limit
        self.ds = load_dataset(data, image_size=space.input_shape[-1], train_limit=train_limit, val_limit=val_limit)
        self.seconds_per_arch: list[float] = []
        self.use_cache = cache
        # one cache per recipe (a multi-fidelity search trains an arch at several epochs, a joint
        # search with several hyperparameters)
        self._caches: dict[str, tuple[dict[str, float], Journal | None]] = {}
        self._cache_for(recipe)  # the recipe's own cache opens now, as it always did

    def _cache_for(self, recipe: TrainRecipe) -> tuple[dict[str, float], Journal | None]:
        key = json.dumps(_result_key(recipe), sort_keys=True)
        hit = self._caches.get(key)
        if hit is not None:
            return hit
        results: dict[str, float] = {}
        journal = None
        if self.use_cache:
            blob = json.dumps({"space": self.space.config_hash(), "data": self.ds.describe(), "split": self.split,
                               "recipe": _result_key(recipe)}, sort_keys=True)
            folder = cache_dir() / "evals"
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"train-{self.space.name}-{hashlib.sha1(blob.encode()).hexdigest()[:16]}.jsonl"
            for rec in read_journal(path)[0]:
                if isinstance(rec.get("id"), str) and isinstance(rec.get("accuracy"), (int, float)):
                    results[rec["id"]] = float(rec["accuracy"])
            journal = Journal(path)
        self._caches[key] = (results, journal)
        return results, journal

    def evaluate(self, archs: Sequence[Arch], epochs: int | None = None,
                 hparams: dict[str, Any] | None = None) -> list[float]:
        """Accuracies of ``archs``; ``epochs`` replaces the recipe's for this call (the rung of a
        multi-fidelity search: ``hwnas search --fidelity epochs:1,3,9``). Each arch is trained
        from scratch for that many epochs (the schedule depends on the length, so a longer run
        does not continue a shorter one). ``hparams`` (TrainRecipe fields: a joint search's
        candidate, ``hwnas.accuracy.hparams``) replace the recipe's own for this call."""
        recipe = self.cfg
        if hparams:
            recipe = dataclasses.replace(recipe, **hparams)
            recipe.check()
        if epochs is not None and epochs != recipe.epochs:
            if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
                raise UserError(f"train evaluator: epochs must be a positive integer, got {epochs!r}")
            recipe = dataclasses.replace(recipe, epochs=epochs)
        results, journal = self._cache_for(recipe)
        out = []
        for a in archs:
            arch = self.space.parse(a)
            if arch.id not in results:
                t0 = time.perf_counter()
                acc = train_standalone(self.space, arch, self.ds, recipe, self.progress, self.split)
                self.seconds_per_arch.append(time.perf_counter() - t0)
                results[arch.id] = acc
                if journal is not None:
                    journal.append({"id": arch.id, "accuracy": acc})
            out.append(results[arch.id])
        return out

    def describe(self) -> dict[str, Any]:
        limits = {k: v for k, v in (("train_limit", self.train_limit), ("val_limit", self.val_limit)) if v is not None}
        return {"spec": self.spec, "data": self.data_spec, "split": self.split, "seed": self.cfg.seed,
                "epochs": self.cfg.epochs, "batch_size": self.cfg.batch_size, "lr": self.cfg.lr, **limits}
