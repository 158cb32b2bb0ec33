"""Wall-time speed-up of `hwnas search --workers 2` over `--workers 1`, and the per-task overhead.

The same search twice: NAS-Bench-201 cells trained from scratch on digits (``train:1``, one
to a few seconds an evaluation on one core), latency from the benchmark's Pixel 3 column,
``--in-flight K`` (default 2) both times so that the strategy asks, and is told, exactly the same
candidates (a K above the workers keeps a worker busy while an earlier candidate is still out). ``--workers 1`` evaluates them one after the other in this process on every core;
``--workers 2`` in two Ray workers on one core each. Each search gets an empty evaluation
cache (the train evaluator would otherwise hand the second search the first one's results).

The speed-up is the ratio of the two wall times (each search from its start to its files
written; ``--workers 2`` includes starting Ray and its workers), and the same with that start
left out. Overhead: in the two-worker search, the start of its workers and, per evaluation,
the time from sending it to a worker to its result here less the time spent inside the worker;
on two fresh workers of the same configuration,
the round trip of a call that does nothing and of an evaluation that costs nothing (an arch
trained already, served from the evaluation cache: submit, dispatch, result back).

    python benchmarks/search_workers.py --budget-evals 24 --json benchmarks/results/search_workers.json

Needs Ray (``pip install 'hwnas[distributed]'``) and the shared NAS-Bench-201 table; run it on a
quiet machine (another process on the cores makes the two-thread run much slower still).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget-evals", type=int, default=24)
    ap.add_argument("--evaluator", default="train:1")
    ap.add_argument("--strategy", default="evolution")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--latency-ms", type=float, default=8.0)
    ap.add_argument("--round-trips", type=int, default=20)
    ap.add_argument("--in-flight", type=int, default=2)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    from hwnas.latency.fingerprint import device_fingerprint
    from hwnas.search import parallel
    from hwnas.search.parallel import _worker_config
    from hwnas.accuracy.training import available_cores
    from hwnas.search.ray_pool import RayPool
    from hwnas.search.runner import SearchConfig, run
    from hwnas.search.setup import SearchSetup

    pools: list[RayPool] = []

    class Recorded(RayPool):  # the search's own pool, kept for its start time and task times
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            pools.append(self)

    parallel.RayPool = Recorded

    cfg = SearchConfig(space="nb201", profile="table:nb201#lat_pixel3", evaluator=args.evaluator, strategy=args.strategy,
                       budget_evals=args.budget_evals, seed=args.seed, latency_budget_ms=args.latency_ms, in_flight=args.in_flight,
                       strategy_options={"population": 8, "sample_size": 3} if args.strategy == "evolution" else {})
    runs: dict[int, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for workers in (1, 2):
            os.environ["HWNAS_CACHE"] = str(Path(tmp) / f"cache-{workers}")  # before Ray starts: its workers inherit it
            t0 = time.perf_counter()
            res = run(dataclasses.replace(cfg, workers=workers), out=Path(tmp) / f"workers-{workers}")
            wall = time.perf_counter() - t0
            journal = (Path(tmp) / f"workers-{workers}" / "journal.jsonl").read_text()
            runs[workers] = {"wall_s": round(wall, 2), "evaluations": len(res.records), "best_id": res.best["id"],
                             "best_accuracy": res.best["accuracy"], "journal": journal}
            if workers > 1:
                pool = pools[-1]
                runs[workers].update({
                    "start_workers_s": round(pool.ready_seconds, 2),
                    "evaluation_s_median": round(statistics.median(pool.task_seconds), 3),
                    # per evaluation: sent to a worker until its result is here, less the time inside it
                    "overhead_per_evaluation_ms_median": round(1e3 * statistics.median(pool.overhead_seconds), 3),
                    "overhead_per_evaluation_ms_max": round(1e3 * max(pool.overhead_seconds), 3),
                })
            print(f"--workers {workers}: {wall:.1f} s for {len(res.records)} evaluations, best {res.best['id']}", flush=True)

        # overhead, on two workers of the same configuration (with a warm evaluation cache)
        os.environ["HWNAS_CACHE"] = str(Path(tmp) / "cache-2")
        setup = SearchSetup(cfg)
        first = tuple(json.loads(runs[2]["journal"].splitlines()[0])["genome"])
        t0 = time.perf_counter()
        with RayPool(_worker_config(setup, cfg), 2) as pool:
            ready = time.perf_counter() - t0
            pings = pool.round_trip_seconds(args.round_trips)
            cached = []
            for k in range(args.round_trips):
                t1 = time.perf_counter()
                pool.submit(k, first)
                pool.next_done()
                cached.append(time.perf_counter() - t1)
            threads = pool.threads

    same = runs[1]["journal"] == runs[2]["journal"]
    ratio = runs[1]["wall_s"] / runs[2]["wall_s"]
    after_start = runs[1]["wall_s"] / (runs[2]["wall_s"] - runs[2]["start_workers_s"])
    result = {
        "machine": device_fingerprint(), "platform": platform.platform(), "cores": available_cores(),
        "command": " ".join(["python", "benchmarks/search_workers.py", *sys.argv[1:]]),
        "search": {k: v for k, v in dataclasses.asdict(cfg).items() if k in ("space", "profile", "evaluator", "strategy",
                                                                                "budget_evals", "seed", "latency_ms", "in_flight")},
        "workers_1": {k: v for k, v in runs[1].items() if k != "journal"},
        "workers_2": {k: v for k, v in runs[2].items() if k != "journal"},
        "speedup_workers_2_over_1": round(ratio, 3),
        "speedup_after_workers_started": round(after_start, 3),  # the workers' start (Ray, setup) left out
        "same_journal": same,  # the train evaluator on 1 thread against 2 can differ in the last digits
        "threads_per_worker": threads,
        "overhead": {
            "start_two_workers_s": round(ready, 2),
            "noop_round_trip_ms_median": round(1e3 * statistics.median(pings), 3),
            "cached_evaluation_round_trip_ms_median": round(1e3 * statistics.median(cached), 3),
        },
    }
    print(json.dumps(result, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
