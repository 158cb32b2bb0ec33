"""Latency: backends that time modules or ONNX graphs, the measurement protocol, the lookup
table file, the predictor built on it, and its validation against end-to-end measurements.

    from hwnas.latency import load_table, LatencyPredictor
    table = load_table("profiles/mbv3-32_ort-cpu_t1_b1.json")
    pred = LatencyPredictor(table)           # checks the table matches the space
    pred.predict(arch)                        # milliseconds

Importing this package does not import torch (edge devices profile with onnxruntime only).
"""

from __future__ import annotations

from hwnas.latency.fingerprint import device_fingerprint, fingerprint_differences
from hwnas.latency.predictor import LatencyPredictor
from hwnas.latency.protocol import Measurement, Protocol, measure
from hwnas.latency.table import LatencyTable, load_table


def warn_if_other_device(table: LatencyTable) -> list[str]:
    """Warnings (not errors) when the table was measured on another device than this one."""
    diffs = fingerprint_differences(table.fingerprint, device_fingerprint(gpu=table.fingerprint.get("gpu")))
    if not diffs:
        return []
    return [f"latency table was measured on another device ({'; '.join(diffs)}); predictions describe that device"]


__all__ = ["LatencyPredictor", "LatencyTable", "Measurement", "Protocol", "load_table", "measure",
           "warn_if_other_device"]
