"""The ``Arch`` value: one point of a search space, frozen and JSON-round-trippable."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Iterator


def _freeze(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value


def _thaw(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    return value


@dataclass(frozen=True)
class Arch:
    """An architecture: the space's name plus its choices (field name -> value).

    Values are ints, strings or nested tuples of them. ``to_json`` is canonical (sorted keys,
    no spaces), so equal archs have equal JSON and the same ``id``.
    """

    space: str
    genes: tuple[tuple[str, Any], ...]

    @classmethod
    def make(cls, space: str, **genes: Any) -> "Arch":
        return cls(space, tuple(sorted((k, _freeze(v)) for k, v in genes.items())))

    def __getitem__(self, name: str) -> Any:
        for k, v in self.genes:
            if k == name:
                return v
        raise KeyError(name)

    def keys(self) -> Iterator[str]:
        return (k for k, _ in self.genes)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"space": self.space}
        d.update((k, _thaw(v)) for k, v in self.genes)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @property
    def id(self) -> str:
        """Stable short id: the first 12 hex digits of the SHA-1 of the canonical JSON."""
        return hashlib.sha1(self.to_json().encode("utf-8")).hexdigest()[:12]

    def __str__(self) -> str:
        return self.to_json()
