"""How many candidates per second a search can score with a latency table plus an accuracy
predictor (the issue's target: at least 5,000/s on 2 cores), batched as a strategy's
population or a predictor-driven search would batch them.

Candidates are decoded from random genomes (as strategies produce them); latency comes from a
device latency table through ``hwnas.latency.LatencyPredictor``; accuracy from the accuracy
issue's ``AccuracyPredictor`` (OFA's 3x400 MLP; fitted for a few epochs on random targets, since
only its speed matters here).

    OMP_NUM_THREADS=2 python benchmarks/search_throughput.py --space nb201 \\
        --table benchmarks/results/nb201_ort-cpu.table.json --batch 1024
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


class GenomeMLP:
    """OFA's 3x400 MLP over a one-hot of the genome, batched: the accuracy predictor's compute."""

    def __init__(self, space) -> None:
        import torch

        from hwnas.accuracy.predictor import mlp

        self.space = space
        self.cards = [len(d.choices) for d in space.decisions()]
        self.offsets = [sum(self.cards[:i]) for i in range(len(self.cards))]
        torch.manual_seed(0)
        self.net = mlp(sum(self.cards), (400, 400, 400)).eval()

    def predict(self, archs):
        import torch

        x = torch.zeros(len(archs), sum(self.cards))
        rows, cols = [], []
        for r, a in enumerate(archs):
            for o, g in zip(self.offsets, self.space.encode(a)):
                rows.append(r)
                cols.append(o + g)
        x[rows, cols] = 1.0
        with torch.no_grad():
            return self.net(x).squeeze(1).tolist()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", default="nb201")
    ap.add_argument("--table", required=True, help="latency table JSON for the space")
    ap.add_argument("--candidates", type=int, default=20000)
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)

    import torch

    from hwnas.accuracy.predictor import AccuracyPredictor
    from hwnas.latency import LatencyPredictor, load_table
    from hwnas.space import get_space

    torch.set_num_threads(args.threads)
    space = get_space(args.space)
    latency = LatencyPredictor(load_table(args.table), space)
    rng = random.Random(0)
    fit_archs = [space.sample(rng) for _ in range(64)]
    try:
        acc = AccuracyPredictor(space)
        acc.fit(fit_archs, [rng.random() for _ in fit_archs], epochs=2)
    except AttributeError:
        acc = GenomeMLP(space)  # the predictor does not support this space yet: same MLP on genomes
    genomes = [space.random_genome(rng) for _ in range(args.candidates)]

    t0 = time.perf_counter()
    scored = 0
    for k in range(0, len(genomes), args.batch):
        archs = [space.decode(g) for g in genomes[k:k + args.batch]]
        lat = latency.predict_many(archs)
        accs = acc.predict(archs)
        scored += len(archs)
        assert len(lat) == len(accs) == len(archs)
    secs = time.perf_counter() - t0
    # the same split for the two halves, to see which one limits
    archs = [space.decode(g) for g in genomes[: args.batch * 4]]
    t1 = time.perf_counter()
    latency.predict_many(archs)
    t2 = time.perf_counter()
    for k in range(0, len(archs), args.batch):
        acc.predict(archs[k:k + args.batch])
    t3 = time.perf_counter()
    print(f"{args.space}: {scored} candidates in {secs:.2f} s = {scored / secs:,.0f} candidates/s "
          f"(batch {args.batch}, {args.threads} threads); latency alone {len(archs) / (t2 - t1):,.0f}/s, "
          f"accuracy predictor alone {len(archs) / (t3 - t2):,.0f}/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
