"""Export: prune, fine-tune, ONNX, INT8 and measured proof of the budget.

    from hwnas.exporters import export, ExportData, ExportOptions      # any torch.nn.Module
    from hwnas.exporters import export_run                              # a search run folder

Importing this package is cheap; torch and onnx load on first use.
"""

from __future__ import annotations

from typing import Any

_LAZY = {
    "export": "hwnas.exporters.pipeline", "ExportData": "hwnas.exporters.pipeline",
    "ExportOptions": "hwnas.exporters.pipeline", "ExportResult": "hwnas.exporters.pipeline",
    "FinetuneConfig": "hwnas.exporters.finetune", "LatencySetup": "hwnas.exporters.measure",
    "prune_channels": "hwnas.exporters.prune", "quantize_int8": "hwnas.latency.int8",
    "export_run": "hwnas.exporters.run_export", "RunExportConfig": "hwnas.exporters.run_export",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(name)


__all__ = sorted(_LAZY)
