"""Reference latency tables shipped with hwnas, registered by name (``SPACE/BACKEND[@MACHINE]``).

    --profile mbv3-32/ort-cpu          # the table of profiles/mbv3-32_ort-cpu_t1_b1.json
    hwnas list profiles                # every name with its machine, date, units and fidelity

A name is resolved only where no file of that name exists, so a user's own ``mbv3-32/ort-cpu``
file (a folder ``mbv3-32`` with a file ``ort-cpu`` in it) wins over the registered table. Each
entry's description (machine, date, units, how well it predicted fresh networks) is read from the
table itself, so it cannot disagree with it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hwnas.errors import UserError

# name -> file in profiles/ (the repository's folder; installed as package data beside hwnas)
# (a name without @MACHINE is the AVX-512 EPYC of 3-4 Dec, whose tables most figures in BENCHMARKS.md cite;
# the newer epyc-zen4 tables convert to plain units by a line; profiles/README.md has them all)
REFERENCE_PROFILES: dict[str, str] = {
    "mbv3-32/ort-cpu": "mbv3-32_ort-cpu_t1_b1_epyc-avx512.json",
    "mbv3-32/torch-cpu": "mbv3-32_torch-cpu_t1_b1_epyc-avx512.json",
    "mbv3-32/ort-cpu-int8": "mbv3-32_ort-cpu-int8_t1_b1_epyc-avx512.json",  # the export's INT8 files
    "mbv3-32/ort-cpu@epyc-avx2": "mbv3-32_ort-cpu_t1_b1.json",
    "mbv3-32/torch-cpu@epyc-avx2": "mbv3-32_torch-cpu_t1_b1.json",
    "mbv3-32/ort-cpu@xeon": "mbv3-32_ort-cpu_t1_b1_xeon.json",
    "mbv3-32/torch-cpu@xeon": "mbv3-32_torch-cpu_t1_b1_xeon.json",
    "mbv3-32/ort-cpu@epyc-zen4": "mbv3-32_ort-cpu_t1_b1_epyc-zen4.json",  # units: a line, 3 sessions per network
    "mbv3-32/torch-cpu@epyc-zen4": "mbv3-32_torch-cpu_t1_b1_epyc-zen4.json",  # timed with the steady allocator
    "mbv3-32/ort-cpu-int8@epyc-zen4": "mbv3-32_ort-cpu-int8_t1_b1_epyc-zen4.json",  # calibrated on plain timings
    "mbv3-32/ort-cpu@xeon-plain": "mbv3-32_ort-cpu_t1_b1_xeon-plain.json",  # the AMX Xeon, calibrated on plain timings
}


def profiles_dir() -> Path:
    """Where the reference tables are: ``profiles/`` of a source checkout (or an editable
    install), else the copy installed inside the package."""
    import hwnas

    here = Path(hwnas.__file__).resolve().parent
    for candidate in (here.parent / "profiles", here / "profiles"):
        if candidate.is_dir():
            return candidate
    return here.parent / "profiles"


def reference_path(name: str) -> Path:
    """The file of a registered reference table."""
    if name not in REFERENCE_PROFILES:
        raise UserError(f"unknown reference profile {name!r}; choose one of: {', '.join(REFERENCE_PROFILES)} (hwnas list profiles)")
    path = profiles_dir() / REFERENCE_PROFILES[name]
    if not path.is_file():
        raise UserError(f"reference profile {name!r} should be {str(path)!r}, which is missing; reinstall hwnas "
                        f"or pass a table file to --profile")
    return path


def resolve_table_path(spec: str | Path) -> Path:
    """A table path as given, or the file of a registered name when no such file exists."""
    p = Path(spec)
    if not p.exists() and str(spec) in REFERENCE_PROFILES:
        return reference_path(str(spec))
    return p


def describe_profiles() -> list[dict[str, Any]]:
    """One row per registered table: name, file, space, backend, machine, date, units, fidelity."""
    rows = []
    for name, file in REFERENCE_PROFILES.items():
        path = profiles_dir() / file
        row: dict[str, Any] = {"name": name, "file": f"profiles/{file}"}
        try:
            d = json.loads(path.read_text())
        except (OSError, ValueError):
            rows.append({**row, "missing": True})
            continue
        fp, backend, val = d.get("fingerprint", {}), d.get("backend", {}), d.get("validation") or {}
        units = d.get("units") or {}
        row.update({
            "space": d.get("space", {}).get("name"),
            "backend": f"{backend.get('name')} t{backend.get('threads')} b{backend.get('batch')}"
                       + (" int8" if backend.get("dtype") == "int8" else ""),
            "machine": f"{_short_cpu(str(fp.get('cpu_model')))}, {fp.get('cores')} cores",
            "created": str(d.get("created", ""))[:10],
            "units": units.get("latency", "protocol"),
            "within_10pct": val.get("within_10pct"),
            "kendall_tau": None if val.get("kendall_tau") is None else round(float(val["kendall_tau"]), 3),
        })
        rows.append(row)
    return rows


def _short_cpu(model: str) -> str:
    for noise in ("(R)", "(TM)", " CPU", " Processor"):
        model = model.replace(noise, "")
    return " ".join(model.split()[:3])
