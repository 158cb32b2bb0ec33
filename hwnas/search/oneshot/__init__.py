"""One-shot (gradient-based) hardware-aware search: GDAS and DARTS on a mixed-op supernet, with
the expected latency from the device's table as a differentiable loss.

    from hwnas.search import run
    res = run(space="nb201", profile="table:nb201#lat_pixel3", latency_budget_ms=6.0, evaluator="table:nb201#c10_test",
              strategy="gdas", strategy_options={"data": "cifar10", "epochs": 10}, out="runs/gdas")

``hwnas.search.run`` hands ``gdas`` and ``darts`` to ``run_oneshot``; the run folder is the same
as every search's. Importing this package does not import torch.
"""

from hwnas.search.oneshot.methods import METHODS, MIXED_OP_SPACES, OneShotOptions, is_oneshot, list_methods


def run_oneshot(*args, **kwargs):
    """See ``hwnas.search.oneshot.run.run_oneshot``."""
    from hwnas.search.oneshot.run import run_oneshot as _run

    return _run(*args, **kwargs)


__all__ = ["METHODS", "MIXED_OP_SPACES", "OneShotOptions", "is_oneshot", "list_methods", "run_oneshot"]
