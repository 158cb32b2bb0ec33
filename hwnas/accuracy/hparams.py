"""Training hyperparameters as searchable decisions: ``hwnas search --hparams FILE|JSON``.

    {"lr": {"kind": "log", "low": 0.01, "high": 0.3, "steps": 6},
     "weight_decay": {"kind": "log", "low": 1e-5, "high": 1e-3},
     "optimizer": {"kind": "categorical", "choices": ["sgd", "adamw"]},
     "batch_size": [32, 64, 128],
     "epochs": {"kind": "int", "low": 2, "high": 8, "step": 2},
     "label_smoothing": {"kind": "float", "low": 0.0, "high": 0.2, "steps": 5},
     "augment": {"kind": "float", "low": 0.0, "high": 2.0, "steps": 5}}

Each hyperparameter becomes one more decision of the genome with a finite grid of values:
``log`` and ``float`` ranges are ``steps`` points from ``low`` to ``high`` (both included; log
spaced or evenly spaced), ``int`` ranges every ``step``-th integer, ``categorical`` its list (a
plain list is shorthand for it). A grid, rather than a continuous value, keeps every strategy,
the repair step, the surrogates and the journal working on one index per decision, exactly as
for architecture choices; raise ``steps`` for a finer grid.

The names are the shared training loop's (``TrainRecipe``): ``augment`` scales the dataset's
crop padding (0: no augmentation, 1: the dataset's default, 2: twice its padding; flips stay on
above 0). Input resolution and width change the network and so its latency: they are decisions
of the space (``--space-settings``), where the latency table prices them, not training settings.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from hwnas.errors import UserError

KINDS = ("log", "float", "int", "categorical")
_DEFAULT_STEPS = {"log": 8, "float": 5}


@dataclass(frozen=True)
class _Known:
    """What a TrainRecipe field accepts."""

    type: type
    low: float | None = None  # inclusive unless ``open_low``
    high: float | None = None  # exclusive
    open_low: bool = False
    choices: tuple[Any, ...] | None = None


KNOWN: dict[str, _Known] = {
    "lr": _Known(float, 0.0, None, open_low=True),
    "weight_decay": _Known(float, 0.0),
    "momentum": _Known(float, 0.0, 1.0),
    "label_smoothing": _Known(float, 0.0, 1.0),
    "augment": _Known(float, 0.0),
    "batch_size": _Known(int, 1),
    "epochs": _Known(int, 1),
    "warmup_epochs": _Known(int, 0),
    "optimizer": _Known(str, choices=("sgd", "adamw")),
}
_IN_THE_SPACE = {"resolution", "image_size", "width", "width_mult", "width_multiplier"}


@dataclass(frozen=True)
class HParam:
    name: str
    kind: str
    values: tuple[Any, ...]

    @property
    def ordered(self) -> bool:
        """Numeric values (a surrogate reads them as a position on their range, not as labels)."""
        return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in self.values)


class HParamSpace:
    """The declared hyperparameters, in the order of their genes (sorted by name)."""

    def __init__(self, params: Sequence[HParam]) -> None:
        self.params = tuple(sorted(params, key=lambda p: p.name))

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)

    @property
    def cards(self) -> tuple[int, ...]:
        return tuple(len(p.values) for p in self.params)

    def values(self, genes: Sequence[int]) -> dict[str, Any]:
        """The hyperparameters one genome's hparam genes stand for."""
        return {p.name: p.values[int(i)] for p, i in zip(self.params, genes)}

    def genes(self, values: Mapping[str, Any]) -> tuple[int, ...]:
        """The genes of ``values`` (each one of its grid's values)."""
        out = []
        for p in self.params:
            v = values.get(p.name)
            if v not in p.values:
                raise UserError(f"hyperparameter {p.name}={v!r} is not on its grid {list(p.values)}")
            out.append(p.values.index(v))
        return tuple(out)

    def features(self, genes: np.ndarray) -> np.ndarray:
        """N x F surrogate features: a numeric grid as its position in [0, 1], a categorical one one-hot."""
        genes = np.asarray(genes, dtype=np.int64).reshape(-1, len(self.params))
        cols = []
        for j, p in enumerate(self.params):
            g = genes[:, j]
            if p.ordered:
                cols.append((g / max(1, len(p.values) - 1)).astype(np.float64)[:, None])
            else:
                cols.append(np.eye(len(p.values), dtype=np.float64)[g])
        return np.hstack(cols) if cols else np.zeros((len(genes), 0))

    def describe(self) -> dict[str, Any]:
        """The spec as recorded in config.json (grids spelled out: a resume must match them)."""
        return {p.name: {"kind": p.kind, "values": list(p.values)} for p in self.params}


def parse_hparams(spec: str | Path | Mapping[str, Any]) -> HParamSpace:
    """An ``HParamSpace`` from a JSON object, a JSON text or a JSON file; UserError on bad input."""
    raw: Any = spec
    if isinstance(spec, (str, Path)):
        text = str(spec).strip()
        if not text.startswith("{"):
            path = Path(text)
            if not path.is_file():
                raise UserError(f"--hparams {text!r} is neither a JSON object nor a file; pass '{{\"lr\": "
                                f"{{\"kind\": \"log\", \"low\": 0.01, \"high\": 0.3}}}}' or the path of such a file")
            text = path.read_text()
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as e:
            raise UserError(f"--hparams is not valid JSON ({e.msg} at line {e.lineno} column {e.colno}); fix it") from None
    if not isinstance(raw, Mapping) or not raw:
        raise UserError("--hparams must be a JSON object with at least one hyperparameter, e.g. "
                        "{\"lr\": {\"kind\": \"log\", \"low\": 0.01, \"high\": 0.3}}")
    return HParamSpace([_param(str(name), body) for name, body in raw.items()])


def _param(name: str, body: Any) -> HParam:
    if name in _IN_THE_SPACE:
        raise UserError(f"--hparams: {name} changes the network and its latency, so it is a decision of the space: "
                        f"set it with --space-settings (e.g. image_size, or the stages' width choices), not as a training setting")
    known = KNOWN.get(name)
    if known is None:
        raise UserError(f"--hparams: unknown hyperparameter {name!r}; choose from: {', '.join(KNOWN)}")
    if isinstance(body, list):
        body = {"kind": "categorical", "choices": body}
    if not isinstance(body, Mapping):
        raise UserError(f"--hparams: {name} must be an object with a kind (one of {', '.join(KINDS)}) or a list of values")
    kind = body.get("kind")
    if kind not in KINDS:
        raise UserError(f"--hparams: {name} has unknown kind {kind!r}; use one of: {', '.join(KINDS)}")
    allowed = {"categorical": {"kind", "choices"}, "int": {"kind", "low", "high", "step"}}.get(
        kind, {"kind", "low", "high", "steps"})
    extra = set(body) - allowed
    if extra:
        raise UserError(f"--hparams: {name} ({kind}) takes {', '.join(sorted(allowed))}, "
                        f"not {', '.join(sorted(extra))}")
    if kind == "categorical":
        values = _categorical(name, body.get("choices"), known)
    else:
        if known.type is str:
            raise UserError(f"--hparams: {name} is categorical: give its choices, e.g. {list(known.choices or ())}")
        values = _grid(name, kind, body, known)
    for v in values:
        _check_value(name, v, known)
    return HParam(name, kind, values)


def _number(name: str, what: str, v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise UserError(f"--hparams: {name}'s {what} must be a finite number, got {v!r}")
    return float(v)


def _grid(name: str, kind: str, body: Mapping[str, Any], known: _Known) -> tuple[Any, ...]:
    if "low" not in body or "high" not in body:
        raise UserError(f"--hparams: {name} ({kind}) needs low and high")
    low, high = _number(name, "low", body["low"]), _number(name, "high", body["high"])
    if low > high:
        raise UserError(f"--hparams: {name}'s low {low:g} is above its high {high:g}; swap them")
    if kind == "int":
        if known.type is not int:
            raise UserError(f"--hparams: {name} is a real number: use kind log or float, not int")
        step = body.get("step", 1)
        if isinstance(step, bool) or not isinstance(step, int) or step < 1:
            raise UserError(f"--hparams: {name}'s step must be a positive integer, got {step!r}")
        if low != int(low) or high != int(high):
            raise UserError(f"--hparams: {name} (int) needs integer low and high, got {low:g} and {high:g}")
        return tuple(range(int(low), int(high) + 1, step))
    if known.type is int:
        raise UserError(f"--hparams: {name} is an integer: use kind int or categorical, not {kind}")
    steps = body.get("steps", _DEFAULT_STEPS[kind])
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise UserError(f"--hparams: {name}'s steps must be a positive integer, got {steps!r}")
    if low == high or steps == 1:
        if steps > 1:
            raise UserError(f"--hparams: {name}'s range is empty (low = high = {low:g}); widen it or give steps 1")
        return (low,)
    if kind == "log":
        if low <= 0:
            raise UserError(f"--hparams: {name} is log-spaced: its low must be above 0, got {low:g}; use kind float")
        grid = np.geomspace(low, high, steps)
    else:
        grid = np.linspace(low, high, steps)
    # rounded to 6 significant digits: values read back from the journal compare equal
    return tuple(float(f"{v:.6g}") for v in grid)


def _categorical(name: str, choices: Any, known: _Known) -> tuple[Any, ...]:
    if not isinstance(choices, list) or not choices:
        raise UserError(f"--hparams: {name} (categorical) needs a non-empty list of choices")
    if len({json.dumps(c) for c in choices}) != len(choices):
        raise UserError(f"--hparams: {name} lists a choice twice: {choices}")
    out = []
    for c in choices:
        if known.type is float and isinstance(c, int) and not isinstance(c, bool):
            c = float(c)
        out.append(c)
    return tuple(out)


def _check_value(name: str, v: Any, known: _Known) -> None:
    if known.choices is not None:
        if v not in known.choices:
            raise UserError(f"--hparams: {name} {v!r} is not one of {', '.join(map(str, known.choices))}")
        return
    if known.type is int and (isinstance(v, bool) or not isinstance(v, int)):
        raise UserError(f"--hparams: {name} takes integers, got {v!r}")
    if known.type is float and (isinstance(v, bool) or not isinstance(v, (int, float))):
        raise UserError(f"--hparams: {name} takes numbers, got {v!r}")
    lo, hi = known.low, known.high
    if lo is not None and (v <= lo if known.open_low else v < lo):
        raise UserError(f"--hparams: {name} must be {'above' if known.open_low else 'at least'} {lo:g}, got {v!r}")
    if hi is not None and v >= hi:
        raise UserError(f"--hparams: {name} must be below {hi:g}, got {v!r}")
