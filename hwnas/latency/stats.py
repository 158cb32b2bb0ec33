"""Small statistics used by the profiler and its validation (numpy only)."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def median_iqr(samples: Sequence[float]) -> tuple[float, float]:
    a = np.asarray(samples, dtype=float)
    q25, q50, q75 = np.percentile(a, [25, 50, 75])
    return float(q50), float(q75 - q25)


def low_percentile(samples: Sequence[float], q: float = 10.0) -> float:
    return float(np.percentile(np.asarray(samples, dtype=float), q))


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b (ties handled), O(n^2): fine for the few hundred points we validate on."""
    a = np.asarray(x, dtype=float)
    b = np.asarray(y, dtype=float)
    if a.shape != b.shape or a.size < 2:
        raise ValueError("kendall_tau needs two sequences of the same length >= 2")
    da = np.sign(a[:, None] - a[None, :])
    db = np.sign(b[:, None] - b[None, :])
    iu = np.triu_indices(a.size, k=1)
    da, db = da[iu], db[iu]
    concordant_minus_discordant = float(np.sum(da * db))
    n_a = float(np.sum(da != 0))
    n_b = float(np.sum(db != 0))
    if n_a == 0 or n_b == 0:
        return 0.0
    return concordant_minus_discordant / np.sqrt(n_a * n_b)


def fidelity(predicted: Sequence[float], measured: Sequence[float]) -> dict[str, float]:
    """How well predictions match measurements: MAPE, share within 5 / 10 %, Kendall tau."""
    p = np.asarray(predicted, dtype=float)
    m = np.asarray(measured, dtype=float)
    rel = np.abs(p - m) / m
    return {
        "n": int(m.size),
        "mape": float(np.mean(rel)),
        "max_error": float(np.max(rel)),
        "within_5pct": float(np.mean(rel <= 0.05)),
        "within_10pct": float(np.mean(rel <= 0.10)),
        "kendall_tau": float(kendall_tau(p, m)) if m.size >= 2 else 0.0,
    }


def fit_linear(x: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
    """y = scale * x + offset minimising the *relative* squared error (rows weighted by 1/y),
    which is what "within 10%" judges: small networks count as much as large ones. Falls back
    to a pure scale when the fit is degenerate."""
    a = np.asarray(x, dtype=float)
    b = np.asarray(y, dtype=float)
    w = 1.0 / np.maximum(np.abs(b), 1e-12)
    if a.size >= 2 and np.ptp(a) > 0:
        (scale, offset), *_ = np.linalg.lstsq(np.c_[a * w, w], b * w, rcond=None)
        if scale > 0:
            return float(scale), float(offset)
    return float(np.sum(a * b * w * w) / max(np.sum(a * a * w * w), 1e-30)), 0.0
