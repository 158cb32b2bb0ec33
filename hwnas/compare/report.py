"""compare.md (the table) and compare.png (accuracy against measured latency)."""

from __future__ import annotations

import io
from collections import defaultdict
from typing import Any, Sequence

import numpy as np


def _fmt(v: Any, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def mean_rows(rows: Sequence[dict]) -> list[dict]:
    """One row per network: numbers averaged over its seeds (``n`` seeds, ``top1_sd`` beside)."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        groups[r["name"]].append(r)
    out = []
    for name, rs in groups.items():
        m = dict(rs[0])
        for k in ("latency_ms", "top1", "macro_f1", "train_seconds", "int8_latency_ms", "int8_top1"):
            vals = [r[k] for r in rs if r.get(k) is not None]
            m[k] = float(np.mean(vals)) if vals else None
        tops = [r["top1"] for r in rs if r.get("top1") is not None]
        m["top1_sd"] = float(np.std(tops)) if len(tops) > 1 else None
        m["n"] = len(rs)
        out.append(m)
    return sorted(out, key=lambda r: (r["latency_ms"] is None, r["latency_ms"] or 0.0))


def _label(r: dict) -> str:
    return r["name"] + (" (NAS)" if r.get("found_by_nas") else "")


def kind_cell(r: dict, marks: bool) -> str:
    """The kind cell; with ``marks`` (a comparison of whole fronts) a run's front archs and its best say so."""
    if not marks or r.get("kind") != "found":
        return r["kind"]
    tags = [t for t, on in (("best", r.get("best")), ("front", r.get("front"))) if on]
    return "found" + (f" ({', '.join(tags)})" if tags else "")


def dominates(a: dict, b: dict) -> bool:
    """``a`` is faster than ``b`` (measured) and at least as accurate (top-1)."""
    return a["latency_ms"] < b["latency_ms"] and a["top1"] >= b["top1"]


def non_dominated(rows: Sequence[dict]) -> list[dict]:
    """The rows no other row beats on both measured latency and top-1 (ties keep both)."""
    return [r for r in rows if not any(o is not r and o["latency_ms"] <= r["latency_ms"] and o["top1"] >= r["top1"]
                                       and (o["latency_ms"] < r["latency_ms"] or o["top1"] > r["top1"]) for o in rows)]


def verdict(found: dict, baselines: Sequence[dict]) -> tuple[bool, str]:
    """Whether ``found`` dominates every baseline (faster and at least as accurate), and one
    sentence that says so, naming where it does not."""
    name = found["name"]
    if not baselines:
        return False, f"{name} has no baseline to be compared with."
    misses = []
    for b in baselines:
        why = []
        if not found["latency_ms"] < b["latency_ms"]:
            why.append(f"not faster: {found['latency_ms']:.4g} vs {b['latency_ms']:.4g} ms")
        if not found["top1"] >= b["top1"]:
            why.append(f"less accurate: {100 * found['top1']:.2f}% vs {100 * b['top1']:.2f}%")
        if why:
            misses.append(f"{b['name']} ({', '.join(why)})")
    every = "both baselines" if len(baselines) == 2 else ("the baseline" if len(baselines) == 1 else
                                                          f"all {len(baselines)} baselines")
    if not misses:
        return True, f"{name} dominates {every}: faster than each and at least as accurate."
    beaten = [b["name"] for b in baselines if dominates(found, b)]
    return False, (f"{name} does not dominate {'; '.join(misses)}"
                   + (f"; it does dominate {', '.join(beaten)}." if beaten else "."))


GAIN_GOAL_POINTS = 1.0  # at a baseline's latency, a found network this many top-1 points better
SPEEDUP_GOAL = 1.5  # or, at its accuracy, this many times faster


def baseline_standing(means: Sequence[dict]) -> list[dict]:
    """Each baseline against the found networks (rows averaged over seeds, as ``mean_rows``
    gives them): which found networks dominate it; the most top-1 points a found network gains
    at no more than its latency; the largest speed-up of a found network at no less than its
    accuracy; and whether either reaches the goal (+1 point, or 1.5x faster)."""
    ok = [m for m in means if m.get("latency_ms") is not None and m.get("top1") is not None]
    found = [m for m in ok if m["kind"] == "found"]
    out = []
    for b in (m for m in ok if m["kind"] == "baseline"):
        as_fast = [f for f in found if f["latency_ms"] <= b["latency_ms"]]
        as_good = [f for f in found if f["top1"] >= b["top1"]]
        g = max(as_fast, key=lambda f: f["top1"], default=None)
        s = min(as_good, key=lambda f: f["latency_ms"], default=None)
        gain = None if g is None else 100 * (g["top1"] - b["top1"])
        speedup = None if s is None else b["latency_ms"] / s["latency_ms"]
        out.append({"name": b["name"], "latency_ms": b["latency_ms"], "top1": b["top1"],
                    "dominated_by": [f["name"] for f in found if dominates(f, b)],
                    "gain_points": gain, "gain_by": None if g is None else g["name"],
                    "speedup": speedup, "speedup_by": None if s is None else s["name"],
                    "goal_met": bool((gain is not None and gain >= GAIN_GOAL_POINTS)
                                     or (speedup is not None and speedup >= SPEEDUP_GOAL))})
    return out


def standing_summary(standing: Sequence[dict]) -> str:
    """One sentence: how many baselines the found networks dominate and how many reach the goal."""
    n = len(standing)
    dom = [s["name"] for s in standing if s["dominated_by"]]
    met = [s["name"] for s in standing if s["goal_met"]]
    missed = [s["name"] for s in standing if not s["goal_met"]]
    return (f"the found networks dominate {len(dom)} of {n} baseline{'s' if n != 1 else ''}; {len(met)} of {n} "
            f"{'are' if n != 1 else 'is'} beaten by at least "
            f"{GAIN_GOAL_POINTS:g} point at no more than their latency or by {SPEEDUP_GOAL:g}x at no less than their "
            f"accuracy" + (f" (not: {', '.join(missed)})" if missed else ""))


def standing_markdown(standing: Sequence[dict]) -> list[str]:
    """compare.md's second table: each baseline against the found networks."""
    if not standing:
        return []
    lines = ["", "Each baseline against the found networks (means over seeds):", "",
             "| baseline | latency ms | top-1 % | dominated by | top-1 gain at <= its latency | speed-up at >= its "
             "accuracy | +1 point or 1.5x |", "|---|---|---|---|---|---|---|"]
    for s in standing:
        gain = "-" if s["gain_points"] is None else f"{s['gain_points']:+.2f} ({s['gain_by']})"
        speed = "-" if s["speedup"] is None else f"{s['speedup']:.2f}x ({s['speedup_by']})"
        lines.append(f"| {s['name']} | {s['latency_ms']:.4g} | {100 * s['top1']:.2f} | "
                     f"{', '.join(s['dominated_by']) or '-'} | {gain} | {speed} | {'yes' if s['goal_met'] else 'no'} |")
    return lines


def markdown(rows: Sequence[dict], title: str, notes: Sequence[str] = (), int8: bool = False, marks: bool = False,
             standing: Sequence[dict] = ()) -> str:
    """The table: one line per network and seed, sorted by latency; with several seeds, their means below.
    ``marks``: the kind cell names a run's best and its front archs."""
    head = ["network", "kind", "top-1 %", "macro-F1", "latency ms", "params", "MFLOPs", "model MB", "train s",
            "epochs", "seed"]
    if int8:
        head[5:5] = ["INT8 top-1 %", "INT8 ms"]
    lines = [f"# {title}", ""]
    lines += [f"- {n}" for n in notes]
    if notes:
        lines.append("")

    def line(r: dict, seed: str) -> str:
        cells = [_label(r), kind_cell(r, marks), _fmt(None if r.get("top1") is None else 100 * r["top1"], ".2f"),
                 _fmt(r.get("macro_f1"), ".4f"), _fmt(r.get("latency_ms"), ".4g"), _fmt(r.get("params"), ","),
                 _fmt(None if r.get("flops") is None else r["flops"] / 1e6, ".1f"),
                 _fmt(None if r.get("model_bytes") is None else r["model_bytes"] / 1e6, ".2f"),
                 _fmt(r.get("train_seconds"), ".1f"), _fmt(r.get("epochs"), "d"), seed]
        if int8:
            cells[5:5] = [_fmt(None if r.get("int8_top1") is None else 100 * r["int8_top1"], ".2f"),
                          _fmt(r.get("int8_latency_ms"), ".4g")]
        return "| " + " | ".join(cells) + " |"

    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    ordered = sorted(rows, key=lambda r: (r.get("latency_ms") is None, r.get("latency_ms") or 0.0, r["name"], r.get("seed") or 0))
    lines += [line(r, "-" if r.get("seed") is None else str(r["seed"])) for r in ordered]
    means = mean_rows(rows)
    if any(m["n"] > 1 for m in means):
        lines += ["", "Mean over seeds (top-1 standard deviation in brackets):", "",
                  "| " + " | ".join(head[:-1] + ["seeds"]) + " |", "|" + "---|" * len(head)]
        for m in means:
            text = line(m, str(m["n"]))
            if m.get("top1_sd") is not None:
                top = f"{100 * m['top1']:.2f}"
                text = text.replace(f"| {top} |", f"| {top} ({100 * m['top1_sd']:.2f}) |", 1)
            lines.append(text)
    lines += standing_markdown(standing)
    return "\n".join(lines) + "\n"


def figure_png(rows: Sequence[dict], title: str, budgets: Sequence[float] = (), xlabel: str = "latency (ms, measured)",
               ylabel: str = "top-1 on the test split (%)", fronts: Sequence[Sequence[tuple[float, float]]] = (),
               front_label: str = "search's Pareto front",
               measured_fronts: Sequence[Sequence[tuple[float, float]]] = ()) -> bytes:
    """Accuracy against latency: baselines grey and labelled, found networks red stars, each
    budget a dashed line; ``fronts`` (latency, accuracy %) drawn faintly under them as
    ``front_label``; ``measured_fronts`` (the same, trained and timed here) as connected red lines.
    A run's front archs other than its best are left unlabelled (the table names them)."""
    import matplotlib

    matplotlib.use("Agg")  # files only; never open a window
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.2, 4.8), dpi=120)
    ax = fig.add_subplot(1, 1, 1)
    for k, front in enumerate(fronts):
        pts = sorted(front)
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], ".-", ms=3, lw=0.8, c="#f4a6ad", zorder=1,
                    label=front_label if k == 0 else None)
    for k, front in enumerate(measured_fronts):
        pts = sorted(front)
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "-", lw=1.6, c="#d1495b", alpha=0.85, zorder=2,
                    label="search's Pareto front (measured)" if k == 0 else None)
    measured = [r for r in rows if r.get("latency_ms") is not None and r.get("top1") is not None]
    for kind, style in (("baseline", dict(marker="o", s=30, c="#6c7a89")), ("found", dict(marker="*", s=110, c="#d1495b"))):
        pts = [r for r in measured if r["kind"] == kind]
        if pts:
            ax.scatter([r["latency_ms"] for r in pts], [100 * r["top1"] for r in pts], zorder=3,
                       label="hand-designed" if kind == "baseline" else "found by the search", **style)
    for m in mean_rows(measured):
        if m["kind"] == "found" and m.get("front") and not m.get("best"):
            continue
        ax.annotate(_label(m), (m["latency_ms"], 100 * m["top1"]), fontsize=7, xytext=(4, 3), textcoords="offset points",
                    color="#2e4057" if m["kind"] == "baseline" else "#a4161a")
    for k, b in enumerate(sorted(set(budgets))):
        ax.axvline(b, ls="--", c="#2e4057", lw=1, label=f"budget {b:.4g} ms" if k < 3 else None)
    lats = [r["latency_ms"] for r in measured]
    if lats and max(lats) / max(1e-12, min(lats)) > 20:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.margins(x=0.12, y=0.08)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
