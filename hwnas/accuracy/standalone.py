"""Stand-alone training of one arch from scratch: the reference the supernet is checked against."""

from __future__ import annotations

import torch

from hwnas.accuracy.supernet import _init_weights
from hwnas.accuracy.training import TrainRecipe, evaluate, train_classifier, use_threads
from hwnas.data import Dataset
from hwnas.space import Arch, SearchSpace


def train_standalone(space: SearchSpace, arch: Arch, ds: Dataset, recipe: TrainRecipe,
                     progress: bool = False, split: str = "val") -> float:
    """Train ``space.build(arch)`` on the shared loop with ``recipe`` and return its top-1 on ``split``."""
    recipe.check()
    torch.manual_seed(recipe.seed)
    model = space.build(arch, num_classes=ds.num_classes)
    _init_weights(model)
    train_classifier(model, ds, recipe, progress=progress, label=f"train {arch.id}")
    with use_threads(recipe.threads):
        return evaluate(model, ds, split, next(model.parameters()).device, recipe.channels_last).top1
