"""The one-shot (gradient) methods by name, their options, and which spaces have a mixed-op form.

Importing this module does not import torch: the CLI and ``hwnas.search.run`` look names up here
before anything heavy is loaded.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Optional

from hwnas.errors import UserError

METHODS = {
    "gdas": "GDAS: Gumbel-softmax sample per step, one operation per edge (nb201) or one subnet of the MBConv "
            "supernet (kernel, expand, depth, width, kind/act/SE) in the forward pass (straight-through)",
    "darts": "DARTS (first order): softmax mixture of every operation on every edge (nb201); on MBConv spaces "
             "ProxylessNAS' binarized one-path approximation (a path drawn from softmax(alpha), its gates straight-through)",
}
# spaces whose networks have a mixed-op (supernet) form that gradient methods train; any MBConv
# space (these presets or their --space-settings variants) has one
MIXED_OP_SPACES = ("nb201", "mbv3-32", "mbv3-32-int8", "mbv3-224")
LATENCY_FORMS = ("penalty", "multiplicative", "multiplicative-hard", "absolute")
# default lambda per form: the penalty's weight; the multiplicative forms' exponent, MnasNet's
# soft constraint (reward ACC * (LAT / T) ** -0.07, here the loss CE * (E[lat] / T) ** 0.07) and
# its hard one (-1 over the budget, 0 within it); the absolute form's weight (TuNAS)
DEFAULT_LAMBDA = {"penalty": 1.0, "multiplicative": 0.07, "multiplicative-hard": 1.0, "absolute": 1.0}


def is_oneshot(name: str) -> bool:
    return name in METHODS


def list_methods() -> list[str]:
    return sorted(METHODS)


@dataclass
class OneShotOptions:
    """What a one-shot search trains and how (``SearchConfig.strategy_options``)."""

    epochs: int = 10
    data: str = "digits"
    batch_size: int = 64
    lr: float = 0.025  # network weights: SGD with momentum, cosine schedule (DARTS' recipe)
    weight_decay: float = 5e-4
    arch_lr: float = 3e-4  # architecture logits: Adam, betas (0.5, 0.999), as DARTS and GDAS
    arch_weight_decay: float = 1e-3
    # the latency term of the architecture loss: "penalty", lambda * max(0, E[lat] / budget - 1),
    # "multiplicative" (MnasNet's soft form), loss * (E[lat] / budget) ** lambda, or
    # "multiplicative-hard", loss * max(1, E[lat] / budget) ** lambda; "absolute" (TuNAS), loss +
    # lambda * |E[lat] / budget - 1|, which holds the expected latency at the budget from both
    # sides; lambda defaults per form
    latency_form: str = "penalty"
    latency_lambda: Optional[float] = None
    # epochs at the start that train only the network weights (paths drawn from the initial, near
    # uniform logits), so that the logits move once the weights can tell the choices apart
    warmup_epochs: int = 0
    # the final arch: 0 takes the argmax of every decision (repaired into the budget); K > 0 draws
    # K distinct archs within the budget from the learned distribution (FBNet's derivation), adds
    # the argmax, and keeps the one the trained supernet scores best on val
    derive_samples: int = 0
    tau_max: float = 10.0  # GDAS: Gumbel-softmax temperature, annealed linearly per epoch
    tau_min: float = 0.1
    train_limit: Optional[int] = None  # training images (half train the weights, half the architecture)
    val_limit: Optional[int] = None
    # how to run, not what is computed: may differ on --resume
    device: str = "auto"
    threads: Optional[int] = None

    RUNTIME = ("device", "threads")
    # options added after run folders existed, and the default under which those folders ran
    LATER = {"latency_form": "penalty", "warmup_epochs": 0, "derive_samples": 0}

    @classmethod
    def from_dict(cls, method: str, options: dict[str, Any]) -> "OneShotOptions":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise UserError(f"strategy {method!r} has no option(s) {', '.join(unknown)}; its options are: {', '.join(sorted(known))}")
        opts = cls(**{k: v for k, v in options.items() if v is not None})
        opts.check()
        return opts

    def __post_init__(self) -> None:
        if self.latency_form not in LATENCY_FORMS:
            raise UserError(f"--latency-form must be one of {', '.join(LATENCY_FORMS)}, got {self.latency_form!r}")
        if self.latency_lambda is None:
            self.latency_lambda = DEFAULT_LAMBDA[self.latency_form]

    def check(self) -> None:
        if not isinstance(self.epochs, int) or self.epochs < 1:
            raise UserError(f"--epochs must be at least 1, got {self.epochs}")
        if not isinstance(self.warmup_epochs, int) or not 0 <= self.warmup_epochs < self.epochs:
            raise UserError(f"--warmup-epochs must be 0 or more and below --epochs ({self.epochs}), got {self.warmup_epochs}")
        if not isinstance(self.derive_samples, int) or self.derive_samples < 0:
            raise UserError(f"--derive-samples must be 0 (the argmax) or a number of archs to draw, got {self.derive_samples}")
        if self.batch_size < 1:
            raise UserError(f"--batch-size must be at least 1, got {self.batch_size}")
        for name in ("lr", "arch_lr", "tau_max", "tau_min"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise UserError(f"{name} must be a positive number, got {v}")
        if self.tau_min > self.tau_max:
            raise UserError(f"tau_min ({self.tau_min}) must not exceed tau_max ({self.tau_max})")
        for name in ("weight_decay", "arch_weight_decay", "latency_lambda"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                raise UserError(f"--{name.replace('_', '-')} must be 0 or more, got {v}")
        if self.train_limit is not None and self.train_limit < 2:
            raise UserError(f"--train-limit must be at least 2 (half trains the weights, half the architecture), got {self.train_limit}")
        if self.threads is not None and self.threads < 1:
            raise UserError(f"--threads must be at least 1, got {self.threads}")

    def identity(self) -> dict[str, Any]:
        """The options that determine the result (checked on resume); those added after the first
        run folders only where they differ from their defaults (``LATER``), as in those folders."""
        return {k: v for k, v in dataclasses.asdict(self).items()
                if k not in self.RUNTIME and not (k in self.LATER and v == self.LATER[k])}


def check_mixed_form(method: str, space: Any) -> None:
    from hwnas.space import MBConvSpace, NB201Space

    if not isinstance(space, (NB201Space, MBConvSpace)):
        raise UserError(f"strategy {method!r} trains a mixed-op supernet, which space {space.name!r} does not have; "
                        f"use it with --space {', '.join(MIXED_OP_SPACES)} (or another MBConv space's settings), or pick another --strategy")
