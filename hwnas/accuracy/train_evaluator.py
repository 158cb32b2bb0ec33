"""``train[:EPOCHS]``: each arch trained from scratch (small spaces, and checking the supernet)."""

from __future__ import annotations

from typing import Any, Sequence

from hwnas.accuracy import EVALUATORS, Evaluator
from hwnas.accuracy.standalone import StandaloneConfig, train_standalone
from hwnas.data import load_dataset
from hwnas.errors import UserError
from hwnas.space import Arch, SearchSpace


@EVALUATORS.register("train", "each arch trained from scratch for E epochs: train[:E] (options data=, seed=)")
class TrainEvaluator(Evaluator):
    def __init__(self, arg: str, space: SearchSpace, data: str = "digits", epochs: int | None = None, seed: int = 0,
                 batch_size: int = 64, lr: float = 0.05, device: str = "auto", split: str = "val",
                 train_limit: int | None = None, val_limit: int | None = None, progress: bool = False, **_: Any) -> None:
        if arg:
            try:
                epochs = int(arg)
            except ValueError:
                raise UserError(f"train evaluator: {arg!r} is not a number of epochs; use train:E") from None
        epochs = 10 if epochs is None else epochs
        self.spec = f"train:{epochs}"
        self.space = space
        self.cfg = StandaloneConfig(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, device=device)
        self.cfg.check()
        self.data_spec, self.split, self.progress = data, split, progress
        self.ds = load_dataset(data, image_size=space.input_shape[-1], train_limit=train_limit, val_limit=val_limit)

    def evaluate(self, archs: Sequence[Arch]) -> list[float]:
        return [train_standalone(self.space, self.space.parse(a), self.ds, self.cfg, self.progress, self.split)
                for a in archs]

    def describe(self) -> dict[str, Any]:
        return {"spec": self.spec, "data": self.data_spec, "split": self.split, "seed": self.cfg.seed,
                "epochs": self.cfg.epochs, "batch_size": self.cfg.batch_size, "lr": self.cfg.lr}
