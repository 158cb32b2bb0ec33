"""Configuration of the MBConv spaces: the settings, their validation and the presets.

The settings are described in ``hwnas.space.mbconv``'s docstring.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, NamedTuple, Sequence

from hwnas.errors import UserError
from hwnas.space.base import check_choice

BLOCK_KINDS = ("mbconv", "fused")
ACTIVATIONS = ("relu", "hswish")


class StageStyle(NamedTuple):
    """What every block of one stage is made of (or, from ``stage_choices``, what it may be)."""

    kind: Any
    act: Any
    se: Any


# per-stage settings: the arch field, the decision's name prefix and the config field of choices
STAGE_FIELDS = StageStyle("kinds", "acts", "se")
STAGE_PREFIXES = StageStyle("kind", "act", "se")
STAGE_SETTINGS = StageStyle("block_kinds", "act_choices", "se_choices")
# which choice is the smaller network, for smallest() and largest()
CAPACITY = {"mbconv": 0, "fused": 1, "relu": 0, "hswish": 1, False: 0, True: 1}


@dataclass(frozen=True)
class MBConvConfig:
    image_size: int
    num_classes: int
    stem_channels: int
    stem_stride: int
    strides: tuple[int, ...]
    widths: tuple[tuple[int, ...], ...]
    se: tuple[bool, ...]
    acts: tuple[str, ...]
    depths: tuple[int, ...] = (1, 2, 3, 4)
    kernels: tuple[int, ...] = (3, 5, 7)
    expands: tuple[int, ...] = (3, 4, 6)
    head_channels: int = 512
    head_hidden: int = 0  # MobileNetV3's extra linear layer after pooling (0: none)
    dropout: float = 0.0
    block_kinds: tuple[str, ...] = ("mbconv",)
    act_choices: tuple[str, ...] = ()  # empty: each stage's fixed entry of ``acts``
    se_choices: tuple[bool, ...] = ()  # empty: each stage's fixed entry of ``se``

    def __post_init__(self) -> None:
        n = len(self.strides)
        if not (len(self.widths) == len(self.se) == len(self.acts) == n):
            raise ValueError("strides, widths, se and acts must have one entry per stage")
        for a in self.acts:
            if a not in ACTIVATIONS:
                raise ValueError(f"unknown activation {a!r}")
        _check_options("block_kinds", self.block_kinds, BLOCK_KINDS, required=True)
        _check_options("act_choices", self.act_choices, ACTIVATIONS)
        _check_options("se_choices", self.se_choices, (False, True))

    def stage_choices(self, stage: int) -> StageStyle:
        """The choices of each per-stage setting (tuples; a fixed setting has one)."""
        return StageStyle(self.block_kinds, self.act_choices or (self.acts[stage],),
                          self.se_choices or (self.se[stage],))

    def searched(self) -> tuple[int, ...]:
        """Positions in ``StageStyle`` of the per-stage settings that are decisions."""
        return tuple(i for i, name in enumerate(STAGE_SETTINGS) if len(getattr(self, name)) > 1)


def _check_options(name: str, values: tuple, allowed: tuple, required: bool = False) -> None:
    # bools are compared by type: 0 and 1 from a JSON file are not SE settings
    if not isinstance(values, tuple) or (required and not values):
        raise ValueError(f"{name} must be a list of choices from {', '.join(map(str, allowed))}")
    for v in values:
        if type(v) is not type(allowed[0]) or v not in allowed:
            raise ValueError(f"{name}: {v!r} is not one of {', '.join(map(str, allowed))}")
    if len(set(values)) != len(values):
        raise ValueError(f"{name} lists a choice twice: {list(values)}")


MBV3_32 = MBConvConfig(
    image_size=32,
    num_classes=10,
    stem_channels=16,
    stem_stride=1,  # CIFAR-style: keep 32x32 in the first stage, then 16, 8, 4
    strides=(1, 2, 2, 2, 1),
    widths=((16, 24, 32), (24, 32, 40), (40, 48, 64), (64, 80, 96), (96, 112, 128)),
    se=(False, True, False, True, True),
    acts=("relu", "relu", "hswish", "hswish", "hswish"),
    head_channels=512,
)

# mbv3-32 with the INT8-friendly choices searched in every stage
MBV3_32_INT8 = replace(MBV3_32, block_kinds=("mbconv", "fused"), act_choices=("relu", "hswish"),
                       se_choices=(False, True))

MBV3_224 = MBConvConfig(
    image_size=224,
    num_classes=1000,
    stem_channels=16,
    stem_stride=2,  # 224 -> 112 -> 56 -> 28 -> 14 -> 14 -> 7, as MobileNetV3-Large
    strides=(2, 2, 2, 1, 2),
    widths=((16, 24, 32), (32, 40, 48), (64, 80, 96), (96, 112, 128), (136, 160, 184)),
    se=(False, True, False, True, True),
    acts=("relu", "relu", "hswish", "hswish", "hswish"),
    head_channels=960,
    head_hidden=1280,
)


def check_stage_choice(field: str, value: Any, allowed: Sequence[Any]) -> Any:
    if isinstance(allowed[0], bool):  # SE on/off: JSON true/false only (check_choice refuses bools)
        if not isinstance(value, bool) or value not in allowed:
            shown = ", ".join("true" if a else "false" for a in allowed)
            raise UserError(f"invalid arch: {field} = {value!r} is not allowed; choose one of: {shown}")
        return value
    return check_choice(field, value, allowed)
