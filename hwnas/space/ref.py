"""``SpaceRef``: which space, in which configuration, a file was made for.

Latency tables, supernet checkpoints, accuracy predictors, run folders and one-shot records all
name the space they belong to, and everything that reads one must refuse it for another space
or another configuration of the same space. This module owns that contract: how the reference
is read from each file's record, how it is written back, how it becomes a space again, and the
one check (with its one-line message) that a file and a space agree.

Files keep the forms they have always had, so every existing file still reads:

- latency tables: ``"space": {"name", "config_hash", "config"}`` (the whole configuration);
- run folders: ``"space": {"name", "config_hash", "settings"}`` (the preset's changes, as typed);
- checkpoints, predictors, one-shot results: ``"space"``, ``"space_config"`` and
  ``"config_hash"`` beside the file's other keys (``flat``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional

from hwnas.errors import UserError


@dataclass(frozen=True)
class SpaceRef:
    name: str
    config_hash: Optional[str] = None  # None in records older than the hash: the name alone is checked
    config: Optional[dict[str, Any]] = None  # the whole configuration (space_from_config)
    settings: Optional[dict[str, Any]] = None  # changes to the preset (get_space(name, **settings))

    # ---- from a space, and from and to the records files hold ---------------------------
    @classmethod
    def of(cls, space: Any, settings: Optional[Mapping[str, Any]] = None) -> "SpaceRef":
        return cls(space.name, space.config_hash(), space.config_dict(), dict(settings or {}))

    @classmethod
    def from_record(cls, d: Mapping[str, Any]) -> "SpaceRef":
        """From a nested record (``{"name", "config_hash", "config" or "settings"}``) or a flat one
        (``{"space": NAME, "space_config", "config_hash", ...}``)."""
        if isinstance(d.get("space"), str):  # flat
            return cls(d["space"], d.get("config_hash"), d.get("space_config"))
        return cls(str(d.get("name")), d.get("config_hash"), d.get("config"), d.get("settings"))

    def table_record(self) -> dict[str, Any]:
        return {"name": self.name, "config_hash": self.config_hash, "config": self.config}

    def run_record(self) -> dict[str, Any]:
        return {"name": self.name, "config_hash": self.config_hash, "settings": self.settings or {}}

    def flat(self) -> dict[str, Any]:
        return {"space": self.name, "space_config": self.config, "config_hash": self.config_hash}

    # ---- back to a space, and the check ---------------------------------------------------
    def resolve(self, what: str = "the file", fix: str = "make it again with this hwnas") -> Any:
        """The space the reference names, checked against its hash (a preset this hwnas builds
        differently is refused, not silently used)."""
        from hwnas.space import get_space, space_from_config

        space = (space_from_config(self.name, self.config) if self.config is not None
                 else get_space(self.name, **(self.settings or {})))
        if self.config_hash and space.config_hash() != self.config_hash:
            raise UserError(f"{what} was made for a {self.name} configuration ({self.config_hash}) this hwnas builds "
                            f"differently ({space.config_hash()}); {fix}")
        return space

    def mismatch(self, space: Any) -> Optional[str]:
        """Why ``space`` is not the one referenced, or None when it is."""
        if self.name != space.name:
            return f"space {self.name!r}, not {space.name!r}"
        if self.config_hash and self.config_hash != space.config_hash():
            return f"another {self.name} configuration (config {self.config_hash}, this space {space.config_hash()})"
        return None

    def check(self, space: Any, what: str, fix: str, made: str = "made") -> None:
        """One line when ``space`` is not the referenced one: ``{what} was {made} for ...; {fix}``
        (``made``: how the file came about: built, trained, fitted)."""
        why = self.mismatch(space)
        if why is not None:
            raise UserError(f"{what} was {made} for {why}; {fix}")
