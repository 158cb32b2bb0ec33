"""Accuracy evaluators, registered by kind and looked up by a spec string ``KIND[:ARG]``.

    from hwnas.accuracy import get_evaluator
    ev = get_evaluator("table:../shared/data/nb201/nb201_acc_latency.csv#c10_test", space)
    ev.evaluate([arch, ...])   # -> accuracies as fractions in [0, 1]

Each kind's module registers itself in ``EVALUATORS`` when imported; ``get_evaluator``
imports the known modules lazily so that importing this package stays cheap.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from typing import Any, Sequence

from hwnas.errors import UserError
from hwnas.registry import Registry
from hwnas.space import Arch, SearchSpace


class Evaluator(ABC):
    """Gives archs of one space an accuracy (fraction in [0, 1], higher is better)."""

    spec: str
    space: SearchSpace
    # False for scores that only rank archs (zero-cost proxies): they are not fractions
    estimates_accuracy: bool = True

    @abstractmethod
    def evaluate(self, archs: Sequence[Arch]) -> list[float]:
        """Accuracies of ``archs`` in order (for ranking-only evaluators: their scores)."""

    def describe(self) -> dict[str, Any]:
        """What identifies this evaluator's results (written into run configs, checked on resume)."""
        return {"spec": self.spec}


EVALUATORS: Registry[Evaluator] = Registry("evaluator")

# kind -> module that registers it (imported on first use)
_EVALUATOR_MODULES: dict[str, str] = {}


def register_evaluator_module(kind: str, module: str) -> None:
    _EVALUATOR_MODULES[kind] = module


def get_evaluator(spec: str, space: SearchSpace, **options: Any) -> Evaluator:
    kind, _, arg = spec.partition(":")
    if kind in _EVALUATOR_MODULES and kind not in EVALUATORS:
        importlib.import_module(_EVALUATOR_MODULES[kind])
    if kind not in EVALUATORS and kind not in _EVALUATOR_MODULES:
        known = ", ".join(sorted(set(EVALUATORS.names()) | set(_EVALUATOR_MODULES))) or "none"
        raise UserError(f"unknown evaluator {kind!r} in {spec!r}; choose one of: {known} (as KIND:ARG)")
    return EVALUATORS.create(kind, arg, space, **options)


def list_evaluators() -> list[str]:
    return sorted(set(EVALUATORS.names()) | set(_EVALUATOR_MODULES))


def describe_evaluators() -> dict[str, str]:
    """Each evaluator kind with its one-line help; imports every kind's module (torch with it)."""
    for module in _EVALUATOR_MODULES.values():
        importlib.import_module(module)
    return {kind: EVALUATORS.help(kind) for kind in list_evaluators()}


__all__ = ["EVALUATORS", "Evaluator", "describe_evaluators", "get_evaluator", "list_evaluators",
           "register_evaluator_module"]
register_evaluator_module("table", "hwnas.accuracy.table")
register_evaluator_module("supernet", "hwnas.accuracy.supernet.evaluator")
register_evaluator_module("train", "hwnas.accuracy.train_evaluator")
register_evaluator_module("predictor", "hwnas.accuracy.predictor")
register_evaluator_module("zc", "hwnas.accuracy.zc_evaluator")
