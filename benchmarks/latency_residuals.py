"""What a table's prediction errors correlate with: a search for memory effects.

Takes a table and one or more `latency_fidelity.py` result files measured with it (same
networks), averages the runs' measurements (geometric mean, table units), and reports how the
relative residual log(measured / predicted) correlates with each network's activation traffic
(bytes written by its convolutions for one image) and its weight bytes. Then it tries one
candidate fix out of sample: fit ``measured = a * predicted + b * activation_MB + c`` on the
table's own calibration networks and score the fresh networks of each run with and without it.

    python benchmarks/latency_residuals.py profiles/mbv3-32_torch-cpu_t1_b1_xeon.json \
        benchmarks/results/latency_fidelity_mbv3-32_torch-cpu_xeon_long*.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def traffic_mb(space, arch) -> tuple[float, float]:
    """(activation MB written by the convolutions, weight MB) of one float32 forward pass."""
    import torch

    model = space.build(arch).eval()
    total = [0]
    hooks = [m.register_forward_hook(lambda m, i, o: total.__setitem__(0, total[0] + o.numel()))
             for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    with torch.no_grad():
        model(torch.zeros(1, *space.input_shape))
    for h in hooks:
        h.remove()
    return total[0] * 4 / 1e6, sum(p.numel() for p in model.parameters()) * 4 / 1e6


def fit_relative(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    w, *_ = np.linalg.lstsq(X / y[:, None], np.ones_like(y), rcond=None)
    return w


def main() -> None:
    from scipy.stats import pearsonr

    from hwnas.latency import LatencyPredictor, load_table
    from hwnas.latency.stats import fidelity

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("table")
    ap.add_argument("results", nargs="+")
    args = ap.parse_args()
    table = load_table(args.table)
    space = table.get_space()
    pred = LatencyPredictor(table, space)
    runs = [json.loads(Path(f).read_text())["networks"] for f in args.results]
    ids = [n["id"] for n in runs[0]]
    if any([n["id"] for n in r] != ids for r in runs):
        raise SystemExit("the result files must cover the same networks in the same order (same --seed and --n)")
    archs = [space.parse(n["arch"]) for n in runs[0]]
    y = np.exp(np.mean([np.log([n["table_units_ms"] for n in r]) for r in runs], axis=0))
    p = pred.predict_many(archs)
    resid = np.log(y / p)
    act, wts = np.array([traffic_mb(space, a) for a in archs]).T
    print(f"{len(archs)} networks, {len(runs)} run(s); residual sd {resid.std():.3f}")
    for name, v in (("activation MB", act), ("weight MB", wts), ("activation MB per predicted ms", act / p)):
        print(f"  residual vs {name}: r = {pearsonr(v, resid)[0]:+.3f} (range {v.min():.2f}-{v.max():.2f})")

    raw = json.loads(Path(args.table).read_text())
    cal = raw["calibration"]["networks"]
    c_archs = [space.parse(n["arch"]) for n in cal]
    cy = np.array([n["measured_ms"] for n in cal])
    cp = pred.predict_many(c_archs)
    c_act = np.array([traffic_mb(space, a)[0] for a in c_archs])
    w = fit_relative(np.c_[cp, c_act, np.ones_like(cp)], cy)
    print(f"activation term fitted on the table's {len(cal)} calibration networks: "
          f"{w[0]:.3f} x predicted + {w[1]:.4f} ms per MB + {w[2]:.4f} ms")
    with_act = np.c_[p, act, np.ones_like(p)] @ w
    for f, r in zip(args.results, runs):
        for unit in ("measured_ms", "table_units_ms"):
            m = np.array([n[unit] for n in r])
            a, b = fidelity(p, m), fidelity(with_act, m)
            print(f"  {Path(f).name} [{unit}]: within 10% {a['within_10pct']:.0%} -> {b['within_10pct']:.0%}, "
                  f"tau {a['kendall_tau']:.3f} -> {b['kendall_tau']:.3f}")


if __name__ == "__main__":
    main()
