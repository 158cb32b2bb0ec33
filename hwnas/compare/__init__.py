"""Found networks against hand-designed ones, on the user's device and data.

    from hwnas.compare import compare, CompareConfig, build_baseline, list_baselines
    result = compare(CompareConfig(profile="my-device.json", data="digits", epochs=10,
                                   baselines=["mobilenet_v2_x0_5", "resnet18"], runs=["runs/c10"]),
                     out="cmp")
    result.rows          # one dict per (network, seed): latency_ms, params, flops, top1, macro_f1, ...

On NAS-Bench-201 (no training: accuracies and device latencies from the table):

    from hwnas.compare import compare_nb201, NB201CompareConfig
    res = compare_nb201(NB201CompareConfig(profile="table:nb201#lat_pixel3"), out="cmp201")
    res.summary["equal_latency"]["gain_points"], res.summary["equal_accuracy"]["speedup"]

Nothing below this package imports it.
"""

from __future__ import annotations

from typing import Any

from hwnas.compare.zoo import (BASELINES, BaselineInfo, baseline_info, build_baseline, describe_baselines,
                               list_baselines, parse_baselines)

_LAZY = {
    "compare": "hwnas.compare.run", "CompareConfig": "hwnas.compare.run", "CompareResult": "hwnas.compare.run",
    "compare_nb201": "hwnas.compare.nb201", "NB201CompareConfig": "hwnas.compare.nb201",
    "RESNET_CELL": "hwnas.compare.nb201",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(name)


__all__ = ["BASELINES", "BaselineInfo", "baseline_info", "build_baseline", "describe_baselines",
           "list_baselines", "parse_baselines", *sorted(_LAZY)]
