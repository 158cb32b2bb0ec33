"""What identifies the device a table was measured on (no torch import unless already loaded)."""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _cpuinfo(prefixes: tuple[str, ...]) -> str | None:
    """The value of the first /proc/cpuinfo line starting with one of ``prefixes`` (lower case)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith(prefixes):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_model() -> str:
    return _cpuinfo(("model name", "hardware", "processor\t: arm")) or platform.processor() or platform.machine()


def cpu_flags() -> set[str]:
    """The CPU's feature flags as Linux lists them (x86 ``flags``, ARM ``Features``); empty elsewhere."""
    return set((_cpuinfo(("flags", "features")) or "").split())


# vector and matrix extensions that change what a network costs: two machines with one model name
# (cloud VMs often report a bare "AMD EPYC") can differ in them and run a table 2x apart
ISA_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_bf16", "amx_int8",
             "asimd", "asimddp", "i8mm", "sve", "sve2")


def cpu_isa() -> list[str]:
    flags = cpu_flags()
    return [f for f in ISA_FLAGS if f in flags]


def device_fingerprint(gpu: str | None = None) -> dict:
    return {
        "cpu_model": cpu_model(),
        "isa": cpu_isa(),
        "cores": os.cpu_count(),
        "machine": platform.machine(),
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "torch": _version("torch"),
        "onnxruntime": _version("onnxruntime") or _version("onnxruntime-gpu"),
        "gpu": gpu,
    }


# fields whose difference means "measured on another device" (versions only change the software)
DEVICE_FIELDS = ("cpu_model", "cores", "machine", "gpu")


def fingerprint_differences(a: dict, b: dict) -> list[str]:
    out = [f"{k}: {a.get(k)!r} vs {b.get(k)!r}" for k in DEVICE_FIELDS if a.get(k) != b.get(k)]
    if "isa" in a and "isa" in b and list(a["isa"]) != list(b["isa"]):  # older tables do not record it
        only_a, only_b = sorted(set(a["isa"]) - set(b["isa"])), sorted(set(b["isa"]) - set(a["isa"]))
        out.append(f"isa: {'+' + ' +'.join(only_a) if only_a else ''}{' ' if only_a and only_b else ''}"
                   f"{'-' + ' -'.join(only_b) if only_b else ''} (vector extensions)")
    return out
