"""Latency backends, registered by name: how a torch module becomes a runner on the target.

- ``torch-cpu``: eager PyTorch in inference mode, ``threads`` intra-op threads.
- ``torch-cuda``: eager PyTorch on a CUDA device, timed with CUDA events.
- ``ort-cpu``: exported to ONNX, run by ONNX Runtime's CPU execution provider.
- ``ort``: ONNX Runtime with any execution provider it reports (``provider=...``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from hwnas.errors import UserError
from hwnas.latency.onnx_export import export_onnx_bytes
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
        files.add_torch(prepared, (self.batch, *input_shape), self.threads, calls or CALLS,
                        "cuda" if self.name == "torch-cuda" else "cpu")


DTYPES = ("float32", "int8")


def check_dtype(dtype: str, backend: str) -> str:
    if dtype not in DTYPES:
        raise UserError(f"--dtype must be float32 or int8, got {dtype!r}")
    if dtype == "int8" and not backend.startswith("ort"):
        raise UserError(f"INT8 tables are timed in ONNX Runtime, where the exported INT8 file runs; backend {backend} "
                        f"runs float32 only: use --backend ort-cpu (or ort --provider NAME) with --dtype int8")
    return dtype


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
# with 64-300 calls and up to 1 s per measurement, at 0.92 (docs/notes/2026-12-02-xeon-eager-torch-and-nb201.md). The table
# build stays within 3 minutes on 2 cores (90 s for mbv3-32).
TORCH_CPU_PROTOCOL = {"sessions": 1, "min_repeats": 64, "max_repeats": 300, "max_seconds": 1.0, "rel_tol": 0.003}


def activation_mb(module, input_shape: Sequence[int]) -> float:
    """Megabytes the convolutions of ``module`` write in one forward pass on one float32 input
    of ``input_shape``: its activation traffic. A block timed alone keeps its activations in
    the caches from call to call; inside a network they meet the other blocks' data, and eager
    torch on a 2-core Xeon ran slower than its blocks add up in proportion to this traffic
    (docs/notes/2026-12-02-xeon-eager-torch-and-nb201.md). The calibration may fit a time per megabyte from it."""
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


def timing_onnx(module, input_shape: Sequence[int], *, batch: int = 1, dtype: str = "float32", images: Any = None,
                seed: int = 0) -> bytes:
    """The ONNX file ``module`` is timed as: statistics of a trained network (``prepare_for_timing``),
    the export's serializer with its dynamic batch axis, and for ``int8`` the export's quantizer,
    calibrated on ``images`` when they have ``input_shape`` (real images, for whole networks), else
    on seeded noise (a block; see ``ORT``)."""
    model = export_onnx_bytes(prepare_for_timing(module, input_shape, seed), (batch, *input_shape), dynamic_batch=True)
    if dtype != "int8":
        return model
    from hwnas.latency.int8 import quantize_int8, synthetic_calibration

    if images is None or tuple(images.shape[1:]) != tuple(input_shape):
        images = synthetic_calibration(input_shape, seed)
    return quantize_int8(model, images)


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

        from hwnas.latency.plain import steady_allocator

        steady_allocator()  # as the plain timing's process: no page faults per call (plain.py)
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
    """ONNX Runtime. With ``dtype="int8"`` every module is timed as the export ships it: serialized
    by the same code, then quantized by the export's static QDQ quantizer (``int8.quantize_int8``,
    its default settings), so a table of INT8 blocks predicts the exported INT8 file.

    ``calibration_images`` (real, preprocessed images of the space's input shape) calibrate whole
    networks; a block inside a network sees activations, not images, and is calibrated on
    seeded normal noise of its input shape, which is what its batch-normalized input looks like
    (quantization scales change values, not the integer kernels that run, so not the time).
    """

    def __init__(self, threads: int = 1, batch: int = 1, provider: str | None = None, clock: str = "auto",
                 name: str = "ort", dtype: str = "float32") -> None:
        from hwnas.latency.ort_runner import check_provider

        provider = provider or "CPUExecutionProvider"
        check_provider(provider)
        threads = _check_threads(threads)
        super().__init__(name, threads, _check_batch(batch), provider, dtype=check_dtype(dtype, name),
                         clock=clock_for(threads, provider == "CPUExecutionProvider", clock))
        self.calibration_images: Any = None  # numpy (N, *input_shape), set by the profiler for INT8 tables

    def onnx_model(self, module, input_shape: Sequence[int], seed: int = 0) -> bytes:
        return timing_onnx(module, input_shape, batch=self.batch, dtype=self.dtype, images=self.calibration_images,
                           seed=seed)

    def sessions(self, module, input_shape, seed: int = 0) -> Callable[[], Runner]:
        from hwnas.latency.ort_runner import ort_runner

        model = self.onnx_model(module, input_shape, seed)
        shape = (self.batch, *input_shape)
        provider = self.provider or "CPUExecutionProvider"
        return lambda: ort_runner(model, shape, provider, self.threads, seed, self.clock)

    def add_plain(self, files, module, input_shape: Sequence[int], calls: int | None = None, seed: int = 0) -> None:
        from hwnas.latency.plain import CALLS

        files.add_onnx(self.onnx_model(module, input_shape, seed), (self.batch, *input_shape),
                       self.provider or "CPUExecutionProvider", self.threads, calls or CALLS)


class ORTCPU(ORT):
    def __init__(self, threads: int = 1, batch: int = 1, provider: str | None = None, clock: str = "auto",
                 dtype: str = "float32") -> None:
        if provider and provider != "CPUExecutionProvider":
            raise UserError("ort-cpu always uses CPUExecutionProvider; use --backend ort --provider NAME for others")
        super().__init__(threads, batch, "CPUExecutionProvider", clock, name="ort-cpu", dtype=dtype)


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


def get_backend(name: str, threads: int = 1, batch: int = 1, provider: str | None = None, clock: str = "auto",
                dtype: str = "float32") -> Backend:
    """A backend by name; ``clock`` is auto (thread CPU time for one CPU thread, else wall), wall or
    thread; ``dtype`` float32, or int8 (ONNX Runtime backends: modules timed as the export's INT8 file)."""
    if clock not in ("auto", "wall", "thread"):
        raise UserError(f"unknown clock {clock!r}; choose auto, wall or thread")
    check_dtype(dtype, name)
    kw: dict[str, Any] = {"dtype": dtype} if dtype != "float32" else {}
    return BACKENDS.create(name, threads=threads, batch=batch, provider=provider, clock=clock, **kw)


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
