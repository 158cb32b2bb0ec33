"""pareto.png: accuracy against latency of every evaluated candidate, the front highlighted,
the latency budget drawn as a vertical line."""

from __future__ import annotations

import io
from typing import Sequence


def pareto_png(records: Sequence[dict], front: Sequence[dict], latency_budget_ms: float | None, title: str) -> bytes:
    fig = pareto_figure(records, front, latency_budget_ms, title)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def pareto_figure(records: Sequence[dict], front: Sequence[dict], latency_budget_ms: float | None, title: str):
    import matplotlib

    matplotlib.use("Agg")  # files only; never open a window
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.4), dpi=120)
    ax = fig.add_subplot(1, 1, 1)
    ax.scatter([r["latency_ms"] for r in records], [100 * r["accuracy"] for r in records],
               s=9, c="#9aa5b1", label=f"evaluated ({len(records)})")
    pts = sorted(front, key=lambda r: r["latency_ms"])
    ax.plot([r["latency_ms"] for r in pts], [100 * r["accuracy"] for r in pts], "o-", ms=4,
            c="#d1495b", label=f"Pareto front ({len(pts)})")
    if latency_budget_ms is not None:
        # the search's budget on the profile's predicted latency (an export may be held to another,
        # e.g. the demo's INT8 budget)
        ax.axvline(latency_budget_ms, ls="--", c="#2e4057", label=f"search budget {latency_budget_ms:.4g} ms (predicted)")
    ax.set_xlabel("latency (ms, predicted by the profile)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig
