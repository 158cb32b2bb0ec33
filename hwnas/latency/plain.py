"""Plain timing: what a user's own loop reads, in a fresh process.

This is the meaning of ``latency_ms`` everywhere in hwnas: the steady-state median wall-clock
time of one call in a fresh session, as a plain loop sees it (create the session, warm up,
time a few hundred calls one by one, take the median; the 90th percentile beside it). It is
what a user reads when they check a budget on the exported file themselves.

The profiler's paired, noise-resistant protocol (``protocol.py``) stays the way block tables
are *estimated* on a busy machine: it keeps the fastest of several sessions and a low
percentile, which reads below a plain loop for the same network (by a line, not a factor).
Tables built now are calibrated to plain timings of whole networks (``units``), so their
predictions are in plain milliseconds.

Each timing runs in a fresh subprocess (``python -m hwnas.latency.plain``), so that nothing of
the caller (its threads, its allocator's state, other sessions) colours the result; one fresh
session varies on a VM, so callers take the median of several (``sessions``). Eager torch runs
with glibc's malloc thresholds fixed (``steady_allocator``). numpy and onnxruntime only for ONNX
models (usable on edge devices); torch models need torch.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from hwnas.errors import UserError

CALLS = 300  # timed calls per model, as a plain check does
# glibc malloc thresholds for eager torch: keep freed memory instead of returning it to the OS
MMAP_THRESHOLD = 32 * 2**20  # glibc's largest; fixing it also stops the dynamic threshold
TRIM_THRESHOLD = 2**31 - 1
STEADY_ALLOCATOR_ENV = f"GLIBC_TUNABLES=glibc.malloc.mmap_threshold={MMAP_THRESHOLD}:glibc.malloc.trim_threshold={TRIM_THRESHOLD}"
WARMUP_CALLS = 20
WARMUP_SECONDS = 0.2  # and at least this long, so caches and clocks settle
TIMEOUT_S = 600.0


@functools.cache
def steady_allocator() -> bool:
    """Fix glibc malloc's mmap and trim thresholds in this process (``mallopt``), as
    ``STEADY_ALLOCATOR_ENV`` does for a process started with it; True where it applied.

    Eager torch allocates every activation on every call. With glibc's default, dynamic
    thresholds, some fresh processes hand those blocks back to the OS after each call and fault
    them in again on the next: 400-1,000 page faults per call instead of 19 for a 6 ms
    mbv3-32 network on the EPYC VM, which ran it 1.2-2x slower than other sessions of the same
    file. With the thresholds fixed no call faults, and 8 fresh sessions agreed within 1.17x.
    Not for ONNX Runtime, whose arena keeps its memory anyway. No-op off glibc."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # musl and others: no mallopt
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return mallopt(m_mmap_threshold, MMAP_THRESHOLD) == 1 and mallopt(m_trim_threshold, TRIM_THRESHOLD) == 1


def _minor_faults() -> int | None:
    try:
        import resource
    except ImportError:  # not on Windows
        return None
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_minflt)


def plain_loop(call: Callable[[], object], calls: int = CALLS, warmup: int = WARMUP_CALLS,
               warmup_seconds: float = WARMUP_SECONDS) -> dict[str, float]:
    """Warm up, then time ``calls`` calls one by one on the wall clock: median, p90, mean (ms)."""
    t_end = time.perf_counter() + warmup_seconds
    for _ in range(max(1, warmup)):
        call()
    while time.perf_counter() < t_end:
        call()
    times = np.empty(max(1, calls))
    faults = _minor_faults()
    for i in range(len(times)):
        t0 = time.perf_counter()
        call()
        times[i] = (time.perf_counter() - t0) * 1e3
    after = _minor_faults()
    out = {"median_ms": float(np.median(times)), "p90_ms": float(np.percentile(times, 90)),
           "mean_ms": float(times.mean()), "calls": int(len(times))}
    if faults is not None and after is not None:  # the allocator's page faults per call: 0-20 when steady
        out["page_faults_per_call"] = (after - faults) / len(times)
    return out


def _onnx_call(path: str, shape: Sequence[int], provider: str, threads: int) -> Callable[[], object]:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    sess = ort.InferenceSession(path, sess_options=opts, providers=[provider])
    feed = {sess.get_inputs()[0].name: np.random.default_rng(0).standard_normal(tuple(shape)).astype(np.float32)}
    return lambda: sess.run(None, feed)


def _torch_call(path: str, shape: Sequence[int], threads: int, device: str = "cpu") -> Callable[[], object]:
    import torch

    steady_allocator()
    torch.set_num_threads(threads)
    module = torch.load(path, weights_only=False, map_location=device).eval()
    x = torch.randn(tuple(shape), generator=torch.Generator().manual_seed(0)).to(device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)

    def call() -> None:
        with torch.inference_mode():
            module(x)
        sync()

    return call


def _worker(jobs: list[dict]) -> list[dict]:
    out = []
    for j in jobs:
        if j["kind"] == "onnx":
            call = _onnx_call(j["path"], j["shape"], j.get("provider", "CPUExecutionProvider"), int(j.get("threads", 1)))
        else:
            call = _torch_call(j["path"], j["shape"], int(j.get("threads", 1)), j.get("device", "cpu"))
        out.append(plain_loop(call, int(j.get("calls", CALLS)), int(j.get("warmup", WARMUP_CALLS))))
        del call
    return out


def _one_session(jobs: list[dict], env: dict[str, str], timeout_s: float) -> list[dict[str, float]]:
    try:
        proc = subprocess.run([sys.executable, "-m", "hwnas.latency.plain"], input=json.dumps(jobs), text=True,
                              capture_output=True, timeout=timeout_s, env=env)
    except subprocess.TimeoutExpired:
        raise UserError(f"plain timing did not finish within {timeout_s:.0f} s; is the machine overloaded?") from None
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise UserError(f"plain timing failed in its subprocess: {last}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def combine_sessions(per_session: Sequence[dict[str, float]]) -> dict[str, Any]:
    """One model's timing from several fresh sessions: the median of their medians (and of their
    p90s), each session's median, and the spread (slowest / fastest session median)."""
    meds = [float(t["median_ms"]) for t in per_session]
    out: dict[str, Any] = {"median_ms": float(np.median(meds)),
                           "p90_ms": float(np.median([float(t["p90_ms"]) for t in per_session])),
                           "mean_ms": float(np.median([float(t.get("mean_ms", t["median_ms"])) for t in per_session])),
                           "calls": int(per_session[0].get("calls", CALLS)), "sessions": len(meds)}
    faults = [t["page_faults_per_call"] for t in per_session if "page_faults_per_call" in t]
    if faults:
        out["page_faults_per_call"] = float(np.median(faults))
    if len(meds) > 1:
        out["session_medians_ms"] = meds
        out["session_spread"] = max(meds) / min(meds) if min(meds) > 0 else float("inf")
    return out


def run_plain(jobs: list[dict], timeout_s: float = TIMEOUT_S, sessions: int = 1,
              on_session: Callable[[int, int], None] | None = None) -> list[dict[str, Any]]:
    """Time each job (``kind`` onnx|torch, ``path``, ``shape``, ``threads``, ``provider``, ``calls``)
    in a fresh subprocess, each model in a session of its own, one after another.

    ``sessions`` > 1 repeats that in as many fresh subprocesses and reports, per model, the median
    of the session medians with each session's median and their spread: on a VM one fresh
    session can run a network 10-80% slower than the next (where its buffers land), so a careful
    check of a budget reads several. ``on_session(done, sessions)`` hears each one finish."""
    if sessions < 1:
        raise UserError(f"plain timing needs at least one session, got {sessions}")
    if not jobs:
        return []
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    runs = []
    for k in range(sessions):
        runs.append(_one_session(jobs, env, timeout_s))
        if on_session:
            on_session(k + 1, sessions)
    if sessions == 1:
        return runs[0]
    return [combine_sessions([r[i] for r in runs]) for i in range(len(jobs))]


class PlainFiles:
    """A temporary folder of models to time plainly (ONNX bytes or torch modules), removed on exit."""

    def __init__(self) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="hwnas-plain-")
        self.jobs: list[dict] = []

    def __enter__(self) -> "PlainFiles":
        return self

    def __exit__(self, *exc: Any) -> None:
        self._dir.cleanup()

    def add_onnx(self, model: bytes | str | os.PathLike, shape: Sequence[int], provider: str = "CPUExecutionProvider",
                 threads: int = 1, calls: int = CALLS) -> None:
        if isinstance(model, (bytes, bytearray)):
            path = Path(self._dir.name) / f"m{len(self.jobs)}.onnx"
            path.write_bytes(model)
            model = path
        self.jobs.append({"kind": "onnx", "path": str(model), "shape": list(shape), "provider": provider,
                          "threads": threads, "calls": calls})

    def add_torch(self, module, shape: Sequence[int], threads: int = 1, calls: int = CALLS, device: str = "cpu") -> None:
        import torch

        path = Path(self._dir.name) / f"m{len(self.jobs)}.pt"
        torch.save(module, path)
        self.jobs.append({"kind": "torch", "path": str(path), "shape": list(shape), "threads": threads,
                          "calls": calls, "device": device})

    def run(self, timeout_s: float = TIMEOUT_S, sessions: int = 1,
            on_session: Callable[[int, int], None] | None = None) -> list[dict[str, Any]]:
        return run_plain(self.jobs, timeout_s, sessions, on_session)


def main() -> int:
    jobs = json.loads(sys.stdin.read())
    print(json.dumps(_worker(jobs)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
