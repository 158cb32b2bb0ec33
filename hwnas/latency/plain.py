"""Plain timing: what a user's own loop reads, in a fresh process.

This is the meaning of ``latency_ms`` everywhere in hwnas: the steady-state median wall-clock
time of one call in a fresh session, as a plain loop sees it (create the session, warm up,
time a few hundred calls one by one, take the median; the 90th percentile beside it). It is
what a user reads when they check a budget on the exported file themselves.

The profiler's paired, noise-resistant protocol (``protocol.py``) stays the way block tables
are *estimated* on a busy machine: it keeps the fastest of several sessions and a low
percentile, which reads 13-18% below a plain loop for the same network. Tables built now are
calibrated to plain timings of whole networks (``units``), so their predictions are in plain
milliseconds.

Each timing runs in a fresh subprocess (``python -m hwnas.latency.plain``), so that nothing of
the caller (its threads, its allocator's state, other sessions) colours the result. numpy and
onnxruntime only for ONNX models (usable on edge devices); torch models need torch.
"""

from __future__ import annotations

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
WARMUP_CALLS = 20
WARMUP_SECONDS = 0.2  # and at least this long, so caches and clocks settle
TIMEOUT_S = 600.0


def plain_loop(call: Callable[[], object], calls: int = CALLS, warmup: int = WARMUP_CALLS,
               warmup_seconds: float = WARMUP_SECONDS) -> dict[str, float]:
    """Warm up, then time ``calls`` calls one by one on the wall clock: median, p90, mean (ms)."""
    t_end = time.perf_counter() + warmup_seconds
    for _ in range(max(1, warmup)):
        call()
    while time.perf_counter() < t_end:
        call()
    times = np.empty(max(1, calls))
    for i in range(len(times)):
        t0 = time.perf_counter()
        call()
        times[i] = (time.perf_counter() - t0) * 1e3
    return {"median_ms": float(np.median(times)), "p90_ms": float(np.percentile(times, 90)),
            "mean_ms": float(times.mean()), "calls": int(len(times))}


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


def run_plain(jobs: list[dict], timeout_s: float = TIMEOUT_S) -> list[dict[str, float]]:
    """Time each job (``kind`` onnx|torch, ``path``, ``shape``, ``threads``, ``provider``, ``calls``)
    in one fresh subprocess, each model in a session of its own, one after another."""
    if not jobs:
        return []
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    try:
        proc = subprocess.run([sys.executable, "-m", "hwnas.latency.plain"], input=json.dumps(jobs), text=True,
                              capture_output=True, timeout=timeout_s, env=env)
    except subprocess.TimeoutExpired:
        raise UserError(f"plain timing did not finish within {timeout_s:.0f} s; is the machine overloaded?") from None
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise UserError(f"plain timing failed in its subprocess: {last}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


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

    def run(self, timeout_s: float = TIMEOUT_S) -> list[dict[str, float]]:
        return run_plain(self.jobs, timeout_s)


def main() -> int:
    jobs = json.loads(sys.stdin.read())
    print(json.dumps(_worker(jobs)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
