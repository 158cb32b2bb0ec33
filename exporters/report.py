"""The export report as Markdown: FP32 and INT8 side by side, the budget verdict with both numbers."""

from __future__ import annotations

from typing import Any


def _f(v: Any, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def plain_how(plain: dict[str, Any]) -> str:
    """How the report's plain timings were taken: one fresh process, or the median of several
    with the widest spread between their sessions."""
    n = max(int(v.get("sessions", 1)) for v in plain.values())
    if n <= 1:
        return "one fresh process"
    spread = max(float(v.get("session_spread", 1.0)) for v in plain.values())
    return f"median of {n} fresh processes, sessions within x{spread:.2f} of each other"


def size_parts_text(r: dict) -> str | None:
    """One line: where the INT8 file's bytes go, each part as a share of the FP32 file (so the
    shares add up to the size ratio), beside the FP32 file's own parts."""
    f, q = (r.get(k, {}).get("size_parts") for k in ("fp32", "int8"))
    if not f or not q:
        return None
    total = r["fp32"]["size_bytes"]
    shares = ", ".join(f"{'scales and zero points' if k == 'quantization' else k} {v / total:.3f}"
                       for k, v in q.items() if v)
    return (f"INT8 size as a share of the FP32 file: {shares} (FP32: weights {f['weights'] / total:.3f}, "
            f"biases {f['biases'] / total:.3f}, graph {f['graph'] / total:.3f}).")


def report_markdown(r: dict[str, Any]) -> str:
    lines = ["# hwnas export report", ""]
    arch = r.get("metadata", {}).get("arch_id")
    if arch:
        lines += [f"Arch `{arch}`, dataset `{r['metadata'].get('dataset', '?')}`.", ""]
    source = r.get("metadata", {}).get("source") or {}
    if source.get("hparams"):  # a joint search: the recipe it chose is part of what ships
        recipe = ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in sorted(source["hparams"].items()))
        lines += [f"Trained from scratch for {source.get('epochs')} epochs with the searched hyperparameters: {recipe}.", ""]
    if r.get("latency_budget_ms") is not None:
        verdict = "PASS" if r.get("meets_budget") else "FAIL"
        lines += [f"**Budget: {verdict}**: measured {_f(r.get('latency_ms'), '.4f')} ms "
                  f"({r.get('budget_checked_on') or r.get('deployed')}) "
                  f"vs budget {r['latency_budget_ms']:.4f} ms" + (f"; the profile predicted {r['predicted_ms']:.4f} ms"
                                                          if r.get("predicted_ms") is not None else "") + ".", ""]
    if r.get("deploy"):
        lines += [f"**Deploy**: `{r['deploy']['file']}` ({r['deploy']['why']})."
                  + (f" Note: {r['deploy']['profile_note']}." if r["deploy"].get("profile_note") else ""), ""]
    if r.get("plain"):
        lines += [f"Plain timing (a plain loop, as a user checks a budget, {plain_how(r['plain'])}; median / p90): " + ", ".join(
            f"{k} {v['median_ms']:.4f} / {v['p90_ms']:.4f} ms" for k, v in r["plain"].items()) + ".", ""]
    cols = [k for k in ("unpruned", "fp32", "int8") if k in r]
    lines += ["| | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    rows = [("size (bytes)", "size_bytes", "d"), ("latency (ms)", "latency_ms", ".4f"),
            ("raw median (ms)", "median_ms", ".4f"), ("raw IQR (ms)", "iqr_ms", ".4f"), ("top-1", "top1", ".4f"),
            ("macro F1", "macro_f1", ".4f"), ("params", "params", "d")]
    for label, key, fmt in rows:
        vals = [r[c].get(key) if key != "params" or c == "unpruned" else r.get("params") for c in cols]
        if all(v is None for v in vals):
            continue
        lines.append(f"| {label} | " + " | ".join(_f(v, fmt) for v in vals) + " |")
    lines.append("")
    lines += _latency_legend(r)
    if "int8_vs_fp32" in r:
        q = r["int8_vs_fp32"]
        lines += [f"INT8 / FP32: size {_f(q.get('size_ratio'), '.3f')}, latency {_ratio_text(q)}, "
                  f"top-1 drop {_f(q.get('top1_drop_points'), '.2f')} points.", ""]
        parts = size_parts_text(r)
        if parts:
            lines += [parts, ""]
        if q.get("note"):
            lines += [f"**Note**: {q['note']}.", ""]
    if "pruning" in r:
        p = r["pruning"]
        lines += [f"Pruning {p['ratio']:.0%} of channels: params {p['params_before']} -> {p['params_after']}, "
                  f"latency ratio {_ratio_text(p)}, top-1 change {_f(p.get('top1_change'), '+.4f')}.", ""]
    if "calibration" in r:
        c = r["calibration"]
        bits = c.get("weight_bits", 7)
        dot = c.get("cpu_int8_dot_product")
        lines += [f"INT8 calibration on {c['images']} training images; chosen: **{c['chosen']}**, **{bits}-bit** weights "
                  f"(on {c['chosen_on']}; this CPU's exact 8-bit dot product: {dot or 'none'}).", "",
                  "| method | weights | val top-1 | test top-1 |", "|---|---|---|---|"]
        lines += [f"| {row['method']} | {row.get('weight_bits', 7)}-bit | {_f(row.get('val_top1'), '.4f')} | "
                  f"{_f(row.get('test_top1'), '.4f')} |" for row in c["compared"]]
        if bits == 8:
            lines += ["", "8-bit weights are exact on CPUs with VNNI, AMX or ARM dot-product instructions; on x86 "
                          "without them ORT's U8S8 kernels can saturate: re-export with `--int8-weights 7` for such a device."]
        lines.append("")
    lines += [f"Parity (max abs diff, torch vs ONNX Runtime FP32): {r['parity_max_abs_diff']:.2e}.", ""]
    if "latency_setup" in r:
        s = r["latency_setup"]
        lines += [f"Latency: ONNX Runtime {s['provider']}, {s['threads']} thread(s), batch {s['batch']}, {s['clock']} clock, "
                  f"the profiler's protocol (the fastest of several sessions, paired with the profile's reference), in the "
                  f"profile's units (plain milliseconds for tables that record the conversion).", ""]
    per = {k: r[k].get("per_class") for k in ("fp32", "int8") if k in r and r[k].get("per_class")}
    if per:
        keys = list(per)
        lines += ["Per class (test split):", "",
                  "| class | " + " | ".join(f"{k} P | {k} R | {k} F1" for k in keys) + " | support |",
                  "|---|" + "---|---|---|" * len(keys) + "---|"]
        for i, row in enumerate(per[keys[0]]):
            cells = []
            for k in keys:
                c = per[k][i]
                cells += [f"{c['precision']:.3f}", f"{c['recall']:.3f}", f"{c['f1']:.3f}"]
            lines.append(f"| {row['class']} | " + " | ".join(cells) + f" | {row['support']} |")
        lines.append("")
    return "\n".join(lines)


def _latency_legend(r: dict[str, Any]) -> list[str]:
    """Which of the table's latencies the budget is checked on, and what the raw ones are."""
    if not any("median_ms" in r.get(c, {}) for c in ("unpruned", "fp32", "int8")):
        return []
    text = ("*latency* is the measured estimate in the profile's units (where the profile's space takes this input, "
            "each model is timed call by call against the profile's reference network); *raw median* and *raw IQR* "
            "are the plain per-call times of the session measured, which this machine's load of the moment moves.")
    if r.get("latency_budget_ms") is not None:
        pb = r.get("profile_backend")
        if isinstance(pb, dict):
            text += (f" The budget is checked on {r.get('budget_checked_on')}: {_f(pb.get('latency_ms'), '.4f')} ms, "
                     f"not on this table's ONNX Runtime latencies.")
            if str(pb.get("backend", "")).startswith("torch-cpu"):
                from hwnas.latency.plain import STEADY_ALLOCATOR_ENV

                text += (f" Eager torch was timed with glibc's malloc thresholds fixed; serve it the same way "
                         f"(`{STEADY_ALLOCATOR_ENV}`, or jemalloc), or some processes run it 1.2-2x slower "
                         f"(docs/latency.md).")
        else:
            text += (f" The budget is checked on the {str(r.get('deployed', 'int8')).upper()} column's *latency* "
                     f"({_f(r.get('latency_ms'), '.4f')} ms vs {r['latency_budget_ms']:.4f} ms).")
    return [text, ""]


def _ratio_text(ratios: dict) -> str:
    """The latency ratio, saying how it was measured."""
    paired = ratios.get("latency_ratio_paired") or {}
    if paired.get("ratio") is None:
        return _f(ratios.get("latency_ratio"), ".3f")
    text = f"{paired['ratio']:.3f} (the two models timed against each other call by call, IQR {paired['iqr']:.3f}"
    if ratios.get("latency_ratio_separate") is not None:
        text += f"; measured one after the other: {ratios['latency_ratio_separate']:.3f}"
    return text + ")"

