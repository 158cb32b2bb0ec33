"""The measurement protocol: warm up, then timed repeats until the median is stable.

A *runner* is a callable that performs one inference and returns its duration in
milliseconds (wall clock on CPUs, CUDA events on GPUs), so the same protocol serves every
backend. numpy only: this runs on edge devices without torch.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Callable

from hwnas.latency.stats import low_percentile, median_iqr

Runner = Callable[[], float]


@dataclass(frozen=True)
class Protocol:
    warmup: int = 5
    warmup_seconds: float = 0.005  # and at least this long, so caches and clocks settle
    round_size: int = 10
    min_repeats: int = 30
    max_repeats: int = 100
    max_seconds: float = 0.3  # per session, not counting warm-up
    rel_tol: float = 0.01  # stop once two successive rounds move the median by less than this
    noisy_iqr_ratio: float = 0.15  # IQR / median above this: remeasure, then flag
    sessions: int = 5  # fresh sessions (new memory placement) per measurement

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Protocol":
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})


@dataclass(frozen=True)
class Measurement:
    """One measurement. ``latency_ms`` is the value tables and reports use: the 10th
    percentile of the fastest session (see ``measure_sessions``); median and IQR are that
    session's."""

    median_ms: float
    iqr_ms: float
    count: int
    latency_ms: float = 0.0
    session_spread: float = 0.0  # (slowest - fastest session) / fastest

    @property
    def spread(self) -> float:
        return self.iqr_ms / self.median_ms if self.median_ms > 0 else 0.0

    def to_dict(self) -> dict:
        return {"latency_ms": self.latency_ms, "median_ms": self.median_ms, "iqr_ms": self.iqr_ms,
                "count": self.count, "session_spread": self.session_spread}


def measure(runner: Runner, protocol: Protocol = Protocol()) -> Measurement:
    """Time one runner (one session): the median and IQR of single-call samples."""
    t_end = time.perf_counter() + protocol.warmup_seconds
    for i in range(max(1, protocol.warmup)):
        runner()
    while time.perf_counter() < t_end:
        runner()
    samples: list[float] = []
    deadline = time.perf_counter() + protocol.max_seconds
    prev_median = None
    stable_rounds = 0
    while len(samples) < protocol.max_repeats:
        for _ in range(protocol.round_size):
            samples.append(runner())
        med, _ = median_iqr(samples)
        if prev_median is not None and len(samples) >= protocol.min_repeats:
            if abs(med - prev_median) <= protocol.rel_tol * prev_median:
                stable_rounds += 1
                if stable_rounds >= 2:
                    break
            else:
                stable_rounds = 0
        prev_median = med
        if time.perf_counter() > deadline and len(samples) >= protocol.min_repeats:
            break
    med, iqr = median_iqr(samples)
    return Measurement(med, iqr, len(samples), low_percentile(samples))


def measure_sessions(make_runner: Callable[[], Runner], protocol: Protocol = Protocol()) -> Measurement:
    """Time ``protocol.sessions`` fresh sessions of the same model; keep the fastest session.

    Two kinds of noise dominate on shared machines. Where a session's buffers land in memory
    decides how they share the caches: the same model runs in one of two or three speed modes
    that differ by 20-50% from one session to the next. And other tenants' work only ever
    adds time. Both are one-sided, so a low statistic is the repeatable one: the 10th
    percentile of the fastest of five sessions repeated within 3% across rounds on a machine
    where medians of single sessions moved by 13% (see BENCHMARKS.md).
    """
    best: Measurement | None = None
    lows = []
    count = 0
    for _ in range(max(1, protocol.sessions)):
        m = measure(make_runner(), protocol)
        lows.append(m.latency_ms)
        count += m.count
        if best is None or m.latency_ms < best.latency_ms:
            best = m
    assert best is not None
    spread = (max(lows) - min(lows)) / min(lows) if min(lows) > 0 else 0.0
    return Measurement(best.median_ms, best.iqr_ms, count, best.latency_ms, spread)


def measure_with_retry(make_runner: Callable[[], Runner], protocol: Protocol = Protocol()) -> tuple[Measurement, bool]:
    """Measure; if the spread is too wide, measure again and keep the tighter one.

    Returns the measurement and whether it is still noisy after the retry.
    """
    m = measure_sessions(make_runner, protocol)
    if m.spread <= protocol.noisy_iqr_ratio:
        return m, False
    m2 = measure_sessions(make_runner, protocol)
    best = m2 if m2.spread < m.spread else m
    return best, best.spread > protocol.noisy_iqr_ratio


CLOCKS = ("wall", "thread")


def clock_for(threads: int, on_cpu: bool, requested: str = "auto") -> str:
    """Which clock times a CPU inference.

    ``thread`` (CPU time of the calling thread) equals wall time on an idle device when the
    whole inference runs on the calling thread (one intra-op thread on the CPU), and it leaves
    out the time the OS gives other processes, so measurements on a shared machine stay
    stable. With more threads or a GPU only the wall clock is right.
    """
    if requested not in ("auto",) + CLOCKS:
        raise ValueError(f"unknown clock {requested!r}")
    if requested == "auto":
        return "thread" if (threads == 1 and on_cpu) else "wall"
    return requested


def wall_clock_runner(call: Callable[[], object], clock: str = "wall") -> Runner:
    now = time.thread_time if clock == "thread" else time.perf_counter

    def run() -> float:
        t0 = now()
        call()
        return (now() - t0) * 1e3

    return run
