"""Latency backends, registered by name: how a torch module becomes a runner on the target.

- ``torch-cpu``: eager PyTorch in inference mode, ``threads`` intra-op threads.
- ``torch-cuda``: eager PyTorch on a CUDA device, timed with CUDA events.
- ``ort-cpu``: exported to ONNX, run by ONNX Runtime's CPU execution provider.
- ``ort``: ONNX Runtime with any execution provider it reports (``provider=...``).
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from hwnas.errors import UserError
from hwnas.latency.protocol import Runner, clock_for, wall_clock_runner
from hwnas.registry import Registry


@dataclass
class Backend:
    name: str
    threads: int = 1
    batch: int = 1
    provider: str | None = None
    dtype: str = "float32"
    clock: str = "wall"
    # pair every timed call with a call of a fixed reference (see protocol.measure), which
    # cancels the host's drift. ``reference``: what that is, "network" (the space's reference
    # network) or "block" (the space's reference block: eager torch, where even the smallest
    # network costs milliseconds and pairing with it made a table take ten times longer)
    paired: bool = True
    pair_every: int = 1
    reference: str = "network"
    # protocol settings this backend needs where the caller kept Protocol()'s defaults
    protocol_defaults: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "provider": self.provider, "threads": self.threads, "batch": self.batch,
                "dtype": self.dtype, "clock": self.clock}

    def gpu_name(self) -> str | None:
        return None

    def sessions(self, module, input_shape: Sequence[int], seed: int = 0) -> Callable[[], Runner]:
        """Prepare ``module`` once (statistics, export); return a factory of fresh sessions.

        Each session times one forward pass on a batch of ``input_shape`` inputs; the protocol
        measures several sessions because memory placement changes the speed.
        """
        raise NotImplementedError

    def runner(self, module, input_shape: Sequence[int], seed: int = 0) -> Runner:
        """One session timing ``module`` (see ``sessions``)."""
        return self.sessions(module, input_shape, seed)()

    def add_plain(self, files, module, input_shape: Sequence[int], calls: int | None = None, seed: int = 0) -> None:
        """Queue ``module`` in ``files`` (a ``plain.PlainFiles``) for a plain timing on this backend:
        the same preparation as ``sessions``, timed by a plain loop in a fresh process."""
        from hwnas.latency.plain import CALLS

        prepared = prepare_for_timing(module, input_shape, seed)
        shape = (self.batch, *input_shape)
        if self.name.startswith("torch"):
            files.add_torch(prepared, shape, self.threads, calls or CALLS, "cuda" if self.name == "torch-cuda" else "cpu")
        else:
            files.add_onnx(export_onnx_bytes(prepared, shape), shape, self.provider or "CPUExecutionProvider",
                           self.threads, calls or CALLS)


BACKENDS: Registry[Backend] = Registry("backend")


def _check_threads(threads: int) -> int:
    if not isinstance(threads, int) or threads < 1:
        raise UserError(f"--threads must be a positive integer, got {threads}")
    return threads


def _check_batch(batch: int) -> int:
    if not isinstance(batch, int) or batch < 1:
        raise UserError(f"--batch must be a positive integer, got {batch}")
    return batch


def prepare_for_timing(module, input_shape: Sequence[int], seed: int = 0):
    """Give a freshly initialised module the activation statistics of a trained one.

    With random weights and default BatchNorm statistics, activations shrink layer after
    layer towards denormal numbers, which CPUs process many times slower: timing such a
    network measures an artefact. One pass in training mode over random inputs sets every
    BatchNorm's statistics, so each layer's output is normalised as after training.
    """
    import torch

    bns = [m for m in module.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if bns:
        for bn in bns:
            bn.reset_running_stats()
            bn.momentum = None  # cumulative average: one batch sets the statistics exactly
        g = torch.Generator().manual_seed(seed)
        module.train()
        with torch.no_grad():
            module(torch.randn((8, *input_shape), generator=g))
    return module.eval()


# Eager torch's calls jitter more than ONNX Runtime's (IQR 3-8% of the median inside one session
# on a shared 2-core VM: Python dispatch between ~200 kernels per network). With the default
# 24-100 calls, two runs over the same 100 networks ranked each other at Kendall tau 0.88-0.91;
# with 64-300 calls and up to 1 s per measurement, at 0.92 (BENCHMARKS.md, the Xeon). The table
# build stays within 3 minutes on 2 cores (90 s for mbv3-32).
TORCH_CPU_PROTOCOL = {"sessions": 1, "min_repeats": 64, "max_repeats": 300, "max_seconds": 1.0, "rel_tol": 0.003}


def activation_mb(module, input_shape: Sequence[int]) -> float:
    """Megabytes the convolutions of ``module`` write in one forward pass on one float32 input
    of ``input_shape``: its activation traffic. A block timed alone keeps its activations in
    the caches from call to call; inside a network they meet the other blocks' data, and eager
    torch on a 2-core Xeon ran slower than its blocks add up in proportion to this traffic
    (BENCHMARKS.md). The calibration may fit a time per megabyte from it."""
    import torch

    total = [0]

    def count(_m, _i, out) -> None:
        total[0] += out.numel()

    hooks = [m.register_forward_hook(count) for m in module.modules() if isinstance(m, torch.nn.Conv2d)]
    try:
        with torch.no_grad():
            module.eval()(torch.zeros((1, *input_shape)))
    finally:
        for h in hooks:
            h.remove()
    return total[0] * 4 / 1e6


class TorchCPU(Backend):
    def __init__(self, threads: int = 1, batch: int = 1, provider: str | None = None, clock: str = "auto") -> None:
        if provider:
            raise UserError("--provider applies to the ort backend only")
        threads = _check_threads(threads)
        # paired with the space's reference block: unpaired, the windowed latency of a network
        # varied by 8-9% (coefficient of variation over 3 s windows; range 45% over a minute),
        # its ratio to the block by 1-2%. One session per measurement: deep copies of eager
        # modules showed no speed modes (8 sessions of one network or block within 1-4%, as
        # close as one session measured twice), unlike ONNX Runtime sessions (~45% apart)
        super().__init__("torch-cpu", threads, _check_batch(batch), clock=clock_for(threads, True, clock), paired=True,
                         reference="block", protocol_defaults=TORCH_CPU_PROTOCOL)

    def sessions(self, module, input_shape, seed: int = 0) -> Callable[[], Runner]:
        import copy

        import torch

        torch.set_num_threads(self.threads)
        prepared = prepare_for_timing(module, input_shape, seed)

        def session() -> Runner:
            # a deep copy puts weights and activations at new addresses, as a new process would
            m = copy.deepcopy(prepared)
            x = torch.randn((self.batch, *input_shape), generator=torch.Generator().manual_seed(seed))

            def call() -> None:
                with torch.inference_mode():
                    m(x)

            return wall_clock_runner(call, self.clock)

        return session


class TorchCUDA(Backend):
    def __init__(self, threads: int = 1, batch: int = 1, provider: str | None = None, clock: str = "auto") -> None:
        import torch

        if provider:
            raise UserError("--provider applies to the ort backend only")
        if not torch.cuda.is_available():
            raise UserError("backend torch-cuda needs a CUDA GPU and a CUDA build of torch; none is available here (use torch-cpu or ort-cpu)")
        super().__init__("torch-cuda", _check_threads(threads), _check_batch(batch), paired=False)

    def gpu_name(self) -> str | None:
        import torch

        return torch.cuda.get_device_name(0)

    def sessions(self, module, input_shape, seed: int = 0) -> Callable[[], Runner]:
        import copy

        import torch

        dev = torch.device("cuda", 0)
        prepared = prepare_for_timing(module, input_shape, seed)

        def session() -> Runner:
            m = copy.deepcopy(prepared).to(dev)
            g = torch.Generator(device=dev).manual_seed(seed)
            x = torch.randn((self.batch, *input_shape), generator=g, device=dev)
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)

            def run() -> float:
                # events bracket the kernels on the stream; synchronizing on the end event makes
                # the sample the device time of this one forward pass, launch overhead included
                with torch.inference_mode():
                    start.record()
                    m(x)
                    end.record()
                end.synchronize()
                return float(start.elapsed_time(end))

            return run

        return session


class ORT(Backend):
    def __init__(self, threads: int = 1, batch: int = 1, provider: str | None = None, clock: str = "auto",
                 name: str = "ort") -> None:
        from hwnas.latency.ort_runner import check_provider

        provider = provider or "CPUExecutionProvider"
        check_provider(provider)
        threads = _check_threads(threads)
        super().__init__(name, threads, _check_batch(batch), provider,
                         clock=clock_for(threads, provider == "CPUExecutionProvider", clock))

    def sessions(self, module, input_shape, seed: int = 0) -> Callable[[], Runner]:
        from hwnas.latency.ort_runner import ort_runner

        model = export_onnx_bytes(prepare_for_timing(module, input_shape, seed), (self.batch, *input_shape))
        shape = (self.batch, *input_shape)
        provider = self.provider or "CPUExecutionProvider"
        return lambda: ort_runner(model, shape, provider, self.threads, seed, self.clock)


class ORTCPU(ORT):
    def __init__(self, threads: int = 1, batch: int = 1, provider: str | None = None, clock: str = "auto") -> None:
        if provider and provider != "CPUExecutionProvider":
            raise UserError("ort-cpu always uses CPUExecutionProvider; use --backend ort --provider NAME for others")
        super().__init__(threads, batch, "CPUExecutionProvider", clock, name="ort-cpu")


def export_onnx_bytes(module, full_input_shape: Sequence[int], opset: int = 17, dynamic_batch: bool = False) -> bytes:
    """Export a module with the TorchScript-based exporter (fast: milliseconds per block).

    The dynamo exporter gives the same ORT outputs but takes seconds per model, too slow for
    hundreds of table entries.
    """
    import torch

    module = module.eval()
    x = torch.randn(tuple(full_input_shape))
    buf = io.BytesIO()
    kwargs: dict[str, Any] = {}
    if dynamic_batch:
        kwargs["dynamic_axes"] = {"input": {0: "batch"}, "output": {0: "batch"}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (x,), buf, input_names=["input"], output_names=["output"], opset_version=opset,
                          dynamo=False, do_constant_folding=True, **kwargs)
    return buf.getvalue()


@BACKENDS.register("torch-cpu", "eager PyTorch on the CPU (inference mode)")
def _torch_cpu(**kw: Any) -> Backend:
    return TorchCPU(**kw)


@BACKENDS.register("torch-cuda", "eager PyTorch on a CUDA GPU, timed with CUDA events")
def _torch_cuda(**kw: Any) -> Backend:
    return TorchCUDA(**kw)


@BACKENDS.register("ort-cpu", "ONNX Runtime, CPU execution provider")
def _ort_cpu(**kw: Any) -> Backend:
    return ORTCPU(**kw)


@BACKENDS.register("ort", "ONNX Runtime with --provider NAME (any provider onnxruntime reports)")
def _ort(**kw: Any) -> Backend:
    return ORT(**kw)


def get_backend(name: str, threads: int = 1, batch: int = 1, provider: str | None = None, clock: str = "auto") -> Backend:
    """A backend by name; ``clock`` is auto (thread CPU time for one CPU thread, else wall), wall or thread."""
    if clock not in ("auto", "wall", "thread"):
        raise UserError(f"unknown clock {clock!r}; choose auto, wall or thread")
    return BACKENDS.create(name, threads=threads, batch=batch, provider=provider, clock=clock)


def available_backends() -> list[dict[str, Any]]:
    """Each backend with whether it can run here (and the ORT providers it can use)."""
    rows = []
    for name in BACKENDS.names():
        usable, note = True, ""
        if name == "torch-cuda":
            try:
                import torch

                usable = torch.cuda.is_available()
                note = torch.cuda.get_device_name(0) if usable else "no CUDA device"
            except ImportError:
                usable, note = False, "torch not installed"
        elif name.startswith("ort"):
            try:
                from hwnas.latency.ort_runner import available_providers

                note = ", ".join(available_providers()) if name == "ort" else "CPUExecutionProvider"
            except ImportError:
                usable, note = False, "onnxruntime not installed"
        rows.append({"name": name, "available": usable, "notes": note, "description": BACKENDS.help(name)})
    return rows
