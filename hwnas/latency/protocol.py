"""The measurement protocol: warm up, then timed repeats until the median is stable.

A *runner* is a callable that performs one inference and returns its duration in
milliseconds (wall clock on CPUs, CUDA events on GPUs), so the same protocol serves every
backend. numpy only: this runs on edge devices without torch.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np

from hwnas.latency.stats import low_percentile, median_iqr

Runner = Callable[[], float]


@dataclass(frozen=True)
class Protocol:
    warmup: int = 5
    warmup_seconds: float = 0.005  # and at least this long, so caches and clocks settle
    round_size: int = 8
    min_repeats: int = 24
    max_repeats: int = 100
    max_seconds: float = 0.3  # per session, not counting warm-up
    rel_tol: float = 0.01  # stop once two successive rounds move the median by less than this
    noisy_iqr_ratio: float = 0.2  # IQR / median above this: remeasure, then flag
    sessions: int = 4  # fresh sessions (new memory placement) per measurement
    pair_every: int = 1  # when paired: one reference call after every this many model calls

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Protocol":
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})


@dataclass(frozen=True)
class Measurement:
    """One measurement.

    ``latency_ms`` is the value tables and reports use. Unpaired, it is the 10th percentile
    of the fastest session. Paired with a reference model (see ``measure_sessions``), it is
    ``ratio`` (the model's time over the reference's, call by call) times ``ref_ms``, the
    reference's own low latency; a profile rescales all its measurements to the lowest
    ``ref_ms`` seen in the run. Median and IQR are the chosen session's: raw times unpaired,
    the median ratio and its IQR in reference milliseconds when paired.
    """

    median_ms: float
    iqr_ms: float
    count: int
    latency_ms: float = 0.0
    session_spread: float = 0.0  # (slowest - fastest session) / fastest
    ratio: float | None = None
    ref_ms: float | None = None

    @property
    def spread(self) -> float:
        return self.iqr_ms / self.median_ms if self.median_ms > 0 else 0.0

    def to_dict(self) -> dict:
        return {"latency_ms": self.latency_ms, "median_ms": self.median_ms, "iqr_ms": self.iqr_ms,
                "count": self.count, "session_spread": self.session_spread, "ratio": self.ratio,
                "ref_ms": self.ref_ms}


def _warm(runner: Runner, protocol: Protocol) -> None:
    t_end = time.perf_counter() + protocol.warmup_seconds
    for _ in range(max(1, protocol.warmup)):
        runner()
    while time.perf_counter() < t_end:
        runner()


def measure(runner: Runner, protocol: Protocol = Protocol(), reference: Runner | None = None) -> Measurement:
    """Time one runner (one session) in rounds until the median is stable.

    With a ``reference`` runner, calls alternate between the two (one reference call per
    ``pair_every`` model calls) and the statistic is the median of the ratios: a slow spell of
    the machine, which lasts seconds, slows both sides of a pair alike and cancels out.
    """
    _warm(runner, protocol)
    if reference is not None:
        _warm(reference, protocol)
    samples: list[float] = []
    ref: list[float] = []
    ratios: list[float] = []
    deadline = time.perf_counter() + protocol.max_seconds
    prev = None
    stable_rounds = 0
    k = max(1, protocol.pair_every)
    chunk: list[float] = []
    while len(samples) < protocol.max_repeats:
        for _ in range(protocol.round_size):
            t = runner()
            samples.append(t)
            chunk.append(t)
            if reference is not None and len(chunk) >= k:
                # one reference call per k model calls: cheaper when the reference is much slower
                r = reference()
                ref.append(r)
                ratios.append(float(np.median(chunk)) / r if r > 0 else float("inf"))
                chunk = []
        stat, _ = median_iqr(ratios if reference is not None else samples)
        if prev is not None and len(samples) >= protocol.min_repeats:
            if abs(stat - prev) <= protocol.rel_tol * prev:
                stable_rounds += 1
                if stable_rounds >= 2:
                    break
            else:
                stable_rounds = 0
        prev = stat
        if time.perf_counter() > deadline and len(samples) >= protocol.min_repeats:
            break
    med, iqr = median_iqr(samples)
    if reference is None:
        return Measurement(med, iqr, len(samples), low_percentile(samples))
    ratio, ratio_iqr = median_iqr(ratios)
    ref_low = low_percentile(ref)
    # the spread that matters for a paired measurement is that of the ratios
    return Measurement(ratio * ref_low, ratio_iqr * ref_low, len(samples), ratio * ref_low, ratio=ratio, ref_ms=ref_low)


def measure_sessions(make_runner: Callable[[], Runner], protocol: Protocol = Protocol(),
                     reference: Runner | None = None) -> Measurement:
    """Time ``protocol.sessions`` fresh sessions of the same model; keep the fastest session.

    Two kinds of noise dominate on shared machines. Where a session's buffers land in memory
    decides how they share the caches: the same model runs in one of two or three speed modes
    that differ by 20-50% from one session to the next, while repeats inside a session agree.
    And other tenants' work slows the whole machine for seconds at a time. The fastest
    session takes care of the first; pairing every call with a call of a fixed reference
    model (``reference``) takes care of the second, or, unpaired, a low percentile softens it.
    """
    best: Measurement | None = None
    values = []
    count = 0
    ref_low = None
    for _ in range(max(1, protocol.sessions)):
        m = measure(make_runner(), protocol, reference)
        key = m.ratio if m.ratio is not None else m.latency_ms
        values.append(key)
        count += m.count
        if m.ref_ms is not None:
            ref_low = m.ref_ms if ref_low is None else min(ref_low, m.ref_ms)
        if best is None or key < (best.ratio if best.ratio is not None else best.latency_ms):
            best = m
    assert best is not None
    spread = (max(values) - min(values)) / min(values) if min(values) > 0 else 0.0
    if best.ratio is None:
        return Measurement(best.median_ms, best.iqr_ms, count, best.latency_ms, spread)
    assert ref_low is not None
    return Measurement(best.median_ms, best.iqr_ms, count, best.ratio * ref_low, spread, best.ratio, ref_low)


def measure_with_retry(make_runner: Callable[[], Runner], protocol: Protocol = Protocol(),
                       reference: Runner | None = None) -> tuple[Measurement, bool]:
    """Measure; if the spread is too wide, measure again and keep the tighter one.

    Returns the measurement and whether it is still noisy after the retry.
    """
    m = measure_sessions(make_runner, protocol, reference)
    if m.spread <= protocol.noisy_iqr_ratio:
        return m, False
    m2 = measure_sessions(make_runner, protocol, reference)
    best = m2 if m2.spread < m.spread else m
    return best, best.spread > protocol.noisy_iqr_ratio


def fastest_session(make_runner: Callable[[], Runner], protocol: Protocol = Protocol(), tries: int = 5) -> Runner:
    """Of ``tries`` fresh sessions, the one in the fastest memory-placement mode (the reference)."""
    best, best_t = None, float("inf")
    for _ in range(tries):
        r = make_runner()
        t = measure(r, protocol).latency_ms
        if t < best_t:
            best, best_t = r, t
    assert best is not None
    return best


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
