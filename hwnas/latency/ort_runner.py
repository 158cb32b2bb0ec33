"""ONNX Runtime sessions as runners (numpy + onnxruntime only: usable on edge devices)."""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from hwnas.errors import UserError
from hwnas.latency.protocol import Runner, wall_clock_runner


def available_providers() -> list[str]:
    import onnxruntime as ort

    return list(ort.get_available_providers())


def check_provider(provider: str) -> str:
    known = available_providers()
    if provider not in known:
        raise UserError(f"execution provider {provider!r} is not available here; onnxruntime reports: {', '.join(known)}")
    return provider


def make_session(model: bytes | str | os.PathLike, provider: str = "CPUExecutionProvider", threads: int = 1):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    src = model if isinstance(model, (bytes, bytearray)) else str(model)
    return ort.InferenceSession(src, sess_options=opts, providers=[provider])


def ort_runner(model: bytes | str | os.PathLike, input_shape: Sequence[int], provider: str = "CPUExecutionProvider",
               threads: int = 1, seed: int = 0, clock: str = "wall") -> Runner:
    """A runner for one ONNX model; the input is bound once so each call times only the run."""
    sess = make_session(model, provider, threads)
    inp = sess.get_inputs()[0]
    x = np.random.default_rng(seed).standard_normal(tuple(input_shape)).astype(np.float32)
    binding = sess.io_binding()
    binding.bind_cpu_input(inp.name, x)
    for o in sess.get_outputs():
        binding.bind_output(o.name)
    if provider != "CPUExecutionProvider":
        # device providers: run synchronously so the wall clock covers the device work
        def call() -> None:
            binding.synchronize_inputs()
            sess.run_with_iobinding(binding)
            binding.synchronize_outputs()

        return wall_clock_runner(call, "wall")
    return wall_clock_runner(lambda: sess.run_with_iobinding(binding), clock)
