"""``supernet:CKPT``: accuracy read from a trained supernet (extract, recalibrate BN, val accuracy).

Results are cached per (checkpoint contents, data, split, recalibration size, arch) in a
JSON-lines file under the cache directory, so a search that asks for the same arch twice, or a
resumed search, pays once.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any, Sequence

from hwnas.accuracy import EVALUATORS, Evaluator
from hwnas.accuracy.supernet.subnet_eval import accuracy, recalibrate_bn
from hwnas.accuracy.supernet.train import load_supernet
from hwnas.data import load_dataset
from hwnas.data.cache import cache_dir
from hwnas.errors import UserError
from hwnas.fileio import Journal, read_journal
from hwnas.space import Arch, SearchSpace


def file_digest(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


@EVALUATORS.register("supernet", "accuracy read from a trained supernet checkpoint: supernet:CKPT")
class SupernetEvaluator(Evaluator):
    def __init__(self, arg: str, space: SearchSpace, data: str | None = None, bn_images: int = 500,
                 split: str = "val", device: str = "cpu", cache: bool = True, **_: Any) -> None:
        if not arg:
            raise UserError("the supernet evaluator needs a checkpoint: supernet:PATH (from `hwnas train-supernet`)")
        self.spec = f"supernet:{arg}"
        self.path = Path(arg)
        self.space = space
        self.model, self.meta = load_supernet(self.path, space, device)
        self.device = device
        train = self.meta["train"]
        self.data_spec = data or train["data"]
        self.ds = load_dataset(self.data_spec, image_size=space.input_shape[-1], split_seed=train.get("split_seed", 0),
                               train_limit=train.get("train_limit"), val_limit=train.get("val_limit"))
        if self.ds.num_classes != self.model.num_classes:
            raise UserError(f"{self.data_spec} has {self.ds.num_classes} classes but the supernet was trained for "
                            f"{self.model.num_classes}; evaluate on the data it was trained on")
        self.bn_images, self.split = bn_images, split
        self.digest = file_digest(self.path)
        self._cache: dict[str, float] = {}
        self._journal: Journal | None = None
        self.seconds_per_arch: list[float] = []
        if cache:
            key = hashlib.sha1(f"{self.data_spec}|{split}|{bn_images}|{self.ds.describe()['val']}".encode()).hexdigest()[:8]
            folder = cache_dir() / "evals"
            folder.mkdir(parents=True, exist_ok=True)
            jpath = folder / f"{self.digest}-{key}.jsonl"
            for rec in read_journal(jpath)[0]:
                if isinstance(rec.get("accuracy"), (int, float)) and isinstance(rec.get("id"), str):
                    self._cache[rec["id"]] = float(rec["accuracy"])
            self._journal = Journal(jpath)

    def evaluate(self, archs: Sequence[Arch]) -> list[float]:
        out = []
        for a in archs:
            arch = self.space.parse(a)
            if arch.id not in self._cache:
                t0 = time.perf_counter()
                model = self.model.extract(arch).to(self.device)
                recalibrate_bn(model, self.ds, self.bn_images, device=self.device)
                acc = accuracy(model, self.ds, self.split, device=self.device)
                self.seconds_per_arch.append(time.perf_counter() - t0)
                self._cache[arch.id] = acc
                if self._journal is not None:
                    self._journal.append({"id": arch.id, "accuracy": acc})
            out.append(self._cache[arch.id])
        return out

    def describe(self) -> dict[str, Any]:
        return {"spec": self.spec, "checkpoint_sha256_16": self.digest, "data": self.data_spec, "split": self.split,
                "bn_images": self.bn_images}
