"""The latency lookup table (LUT) file: schema, loading with checks, saving atomically.

numpy/stdlib only, so that ``run-bundle`` can write tables on devices without torch.
See docs/latency.md, "Latency table format (JSON)", for the fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hwnas.errors import UserError
from hwnas.fileio import atomic_write_json, read_json

SCHEMA = "hwnas.latency-table"
SCHEMA_VERSION = 1


@dataclass
class TableEntry:
    key: str
    op: str
    input_shape: list[int]
    params: dict[str, Any]
    latency_ms: float  # the protocol's estimate: what predictions add up
    median_ms: float
    iqr_ms: float
    count: int
    noisy: bool = False
    session_spread: float = 0.0
    # megabytes the block's convolutions write for one image (its activation traffic); None in
    # tables built before it was recorded
    act_mb: float | None = None

    def to_dict(self) -> dict[str, Any]:
        d = {"key": self.key, "op": self.op, "input_shape": self.input_shape, "params": self.params,
             "latency_ms": self.latency_ms, "median_ms": self.median_ms, "iqr_ms": self.iqr_ms,
             "count": self.count, "noisy": self.noisy, "session_spread": self.session_spread}
        if self.act_mb is not None:
            d["act_mb"] = self.act_mb
        return d


@dataclass
class LatencyTable:
    space: dict[str, Any]  # name, config_hash, config
    backend: dict[str, Any]  # name, provider, threads, batch, dtype
    fingerprint: dict[str, Any]
    protocol: dict[str, Any]
    call_overhead_ms: float
    entries: dict[str, TableEntry]
    calibration: dict[str, Any]  # scale, offset_ms, k, networks
    validation: dict[str, Any]  # n, mape, within_5pct, within_10pct, kendall_tau, networks
    created: str = ""
    build_seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def space_name(self) -> str:
        return self.space["name"]

    def get_space(self):
        """The search space this table was built for (rebuilt from its stored configuration)."""
        from hwnas.space.ref import SpaceRef

        return SpaceRef.from_record(self.space).resolve("latency table", "rebuild it with `hwnas profile`")

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "schema_version": SCHEMA_VERSION,
            "created": self.created,
            "space": self.space,
            "backend": self.backend,
            "fingerprint": self.fingerprint,
            "protocol": self.protocol,
            "build_seconds": self.build_seconds,
            "call_overhead_ms": self.call_overhead_ms,
            "calibration": self.calibration,
            "validation": self.validation,
            "entries": [e.to_dict() for e in self.entries.values()],
            **self.extra,
        }

    def save(self, path: str | Path) -> None:
        atomic_write_json(path, self.to_dict())


def _require(d: dict, key: str, types: type | tuple[type, ...], where: str, path: str) -> Any:
    if not isinstance(d, dict) or key not in d:
        raise UserError(f"latency table {path!r} is malformed: {where}{key} is missing; rebuild it with `hwnas profile`")
    v = d[key]
    allowed = types if isinstance(types, tuple) else (types,)
    if not isinstance(v, allowed) or (isinstance(v, bool) and bool not in allowed):
        raise UserError(f"latency table {path!r} is malformed: {where}{key} has the wrong type; rebuild it with `hwnas profile`")
    return v


def _optional_number(d: dict, key: str, where: str, path: str) -> float | None:
    if d.get(key) is None:
        return None
    v = d[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
        raise UserError(f"latency table {path!r} is malformed: {where}{key} must be a number >= 0; rebuild it with `hwnas profile`")
    return float(v)


def table_from_dict(d: Any, path: str = "<table>") -> LatencyTable:
    if not isinstance(d, dict) or d.get("schema") != SCHEMA:
        raise UserError(f"{path!r} is not an hwnas latency table (no \"schema\": \"{SCHEMA}\"); make one with `hwnas profile`")
    version = d.get("schema_version")
    if version != SCHEMA_VERSION:
        raise UserError(f"latency table {path!r} has schema version {version!r}; this hwnas reads version {SCHEMA_VERSION}: rebuild it with `hwnas profile`")
    num = (int, float)
    space = _require(d, "space", dict, "", path)
    for k in ("name", "config_hash", "config"):
        _require(space, k, (str, dict) if k == "config" else str, "space.", path)
    backend = _require(d, "backend", dict, "", path)
    _require(backend, "name", str, "backend.", path)
    _require(backend, "threads", int, "backend.", path)
    _require(backend, "batch", int, "backend.", path)
    fingerprint = _require(d, "fingerprint", dict, "", path)
    calibration = _require(d, "calibration", dict, "", path)
    _require(calibration, "scale", num, "calibration.", path)
    _require(calibration, "offset_ms", num, "calibration.", path)
    validation = _require(d, "validation", dict, "", path)
    overhead = _require(d, "call_overhead_ms", num, "", path)
    raw_entries = _require(d, "entries", list, "", path)
    entries: dict[str, TableEntry] = {}
    for i, e in enumerate(raw_entries):
        where = f"entries[{i}]."
        key = _require(e, "key", str, where, path)
        med = _require(e, "median_ms", num, where, path)
        lat = _require(e, "latency_ms", num, where, path)
        if not (med >= 0 and lat >= 0):
            raise UserError(f"latency table {path!r} is malformed: {where} has a negative latency; rebuild it with `hwnas profile`")
        entries[key] = TableEntry(
            latency_ms=float(lat),
            session_spread=float(e.get("session_spread", 0.0)),
            key=key,
            op=_require(e, "op", str, where, path),
            input_shape=list(_require(e, "input_shape", list, where, path)),
            params=dict(e.get("params", {})),
            median_ms=float(med),
            iqr_ms=float(_require(e, "iqr_ms", num, where, path)),
            count=int(_require(e, "count", int, where, path)),
            noisy=bool(e.get("noisy", False)),
            act_mb=_optional_number(e, "act_mb", where, path),
        )
    if not entries:
        raise UserError(f"latency table {path!r} has no entries; rebuild it with `hwnas profile`")
    known = {"schema", "schema_version", "created", "space", "backend", "fingerprint", "protocol", "build_seconds",
             "call_overhead_ms", "calibration", "validation", "entries"}
    return LatencyTable(
        space=space, backend=backend, fingerprint=fingerprint, protocol=dict(d.get("protocol", {})),
        call_overhead_ms=float(overhead), entries=entries, calibration=calibration, validation=validation,
        created=str(d.get("created", "")), build_seconds=float(d.get("build_seconds", 0.0)),
        extra={k: v for k, v in d.items() if k not in known},
    )


def load_table(path: str | Path) -> LatencyTable:
    """A table file, or a registered reference table by name (``mbv3-32/ort-cpu``; ``hwnas list profiles``)."""
    from hwnas.latency.reference import resolve_table_path

    p = resolve_table_path(path)
    if not p.is_file():
        raise UserError(f"latency table {str(p)!r} does not exist; make one with `hwnas profile` or name a reference "
                        f"table (hwnas list profiles)")
    return table_from_dict(read_json(p, "latency table"), str(p))
