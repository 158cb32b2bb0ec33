"""The demo's and the export's figures say which number is which."""

from __future__ import annotations

from hwnas.exporters.report import report_markdown
from hwnas.search.plot import pareto_figure
from hwnas.search.runner import space_label
from hwnas.space import get_space


def _report(**kw):
    r = {"latency_budget_ms": 1.0, "meets_budget": True, "latency_ms": 0.8071, "deployed": "int8",
         "budget_checked_on": "the INT8 ONNX file in ONNX Runtime", "parity_max_abs_diff": 1e-6,
         "fp32": {"size_bytes": 10, "latency_ms": 0.7, "median_ms": 0.9, "iqr_ms": 0.01},
         "int8": {"size_bytes": 5, "latency_ms": 0.8071, "median_ms": 1.0942, "iqr_ms": 0.02}}
    return {**r, **kw}


def test_the_report_says_which_int8_latency_the_budget_is_checked_on():
    md = report_markdown(_report())
    assert "| raw median (ms) |" in md and "| median (ms) |" not in md
    assert "checked on the INT8 column's *latency* (0.8071 ms vs 1.0000 ms)" in md
    torch_profile = report_markdown(_report(profile_backend={"backend": "torch-cpu", "latency_ms": 0.95},
                                            budget_checked_on="the FP32 torch model on torch-cpu (the profile's backend)"))
    assert "checked on the FP32 torch model on torch-cpu (the profile's backend): 0.9500 ms" in torch_profile


def test_the_pareto_plot_names_the_changed_space_and_says_its_budget_is_the_predicted_one():
    settings = {"image_size": 8, "strides": [1, 2], "widths": [[16], [32]], "se": [False, False],
                "acts": ["relu", "relu"], "depths": [1], "kernels": [3], "expands": [3], "stem_channels": 8,
                "head_channels": 32}
    space = get_space("mbv3-32", **settings)
    label = space_label(space, settings)
    assert label.startswith("mbv3-32 changed by --space-settings (8x8 input") and space.config_hash()[:8] in label
    assert space_label(get_space("mbv3-32"), {}) == "mbv3-32"
    rec = {"latency_ms": 0.5, "accuracy": 0.9}
    fig = pareto_figure([rec], [rec], 0.6123, label)
    ax = fig.axes[0]
    assert ax.get_title() == label
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "search budget 0.6123 ms (predicted)" in legend
