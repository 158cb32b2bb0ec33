"""Static INT8 quantization with ONNX Runtime: QDQ format, per-channel weights, real calibration images.

Dynamic quantization is never used: it quantizes activations at run time and makes
convolutions about ten times slower on CPU. Activations are unsigned 8-bit and weights signed
8-bit (U8S8), the combination ORT's x86 kernels are fastest with. Weights use the reduced
range [-64, 63] by default (``reduce_range``): x86 CPUs without VNNI multiply U8S8 pairs with
an instruction that adds two products into a saturating 16-bit sum (255 * 127 * 2 overflows
it), which cost a 2.1M-parameter model 5.3 points of top-1 on digits on this kind of CPU (all
three calibration methods alike; ORT's unfused reference math lost nothing); 7-bit weights
cannot overflow and cost 0.3 points. U8U8 avoids it too but ran 1.15x slower than FP32. On CPUs
with VNNI (or AMX, or ARM's dot-product instructions) full-range weights are exact and can keep
more accuracy; the export compares both ranges on val (``weight_bits``; ties keep 8-bit on such a
CPU, 7-bit elsewhere). Val is measured with ORT on this machine, so a range that overflows here
loses on val and is not chosen.

The graph rewrites around ORT's quantizer are in ``onnx_rewrites``. Latency tables built
with ``--dtype int8`` time every block and network through this same function, so a table
predicts the INT8 file the export writes.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hwnas.errors import UserError
from hwnas.latency.onnx_rewrites import (compact, fold_scales_into_dequantize, hard_activations_to_int8_ops,
                                         spatial_means_to_global_pool, unit_batchnorms_to_adds)

CALIBRATION_METHODS = ("minmax", "percentile", "entropy")
WEIGHT_RANGES = ("auto", "7", "8")
# CPU features with an exact 8-bit dot product (no saturating 16-bit pair sums): x86 VNNI and AMX,
# ARM's dot-product and int8 matrix-multiply extensions
INT8_DOT_FLAGS = ("amx_int8", "avx512_vnni", "avx_vnni", "i8mm", "asimddp")


def check_weight_range(value: str) -> None:
    if value not in WEIGHT_RANGES:
        raise UserError(f"--int8-weights must be auto, 7 or 8 (bits of weight range), got {value!r}")


def weight_bits(value: str) -> tuple[int, ...]:
    """The weight ranges to compare for ``value``. Auto: both, and ties keep the first: full 8-bit
    where this CPU (the one the export measures on, i.e. the target) has an exact 8-bit dot
    product, else 7-bit, which is exact on every x86 CPU."""
    check_weight_range(value)
    if value != "auto":
        return (int(value),)
    return (8, 7) if cpu_int8_dot_product() else (7, 8)


def cpu_int8_dot_product() -> str | None:
    """The first feature of this CPU that multiplies 8-bit pairs exactly, or None (then full-range
    U8S8 weights can overflow ORT's x86 kernels; see the module text)."""
    from hwnas.latency.fingerprint import cpu_flags

    flags = cpu_flags()
    return next((f for f in INT8_DOT_FLAGS if f in flags), None)


@dataclass(frozen=True)
class QuantizeOptions:
    method: str = "minmax"
    per_channel: bool = True
    percentile: float = 99.999
    batch_size: int = 32
    compact: bool = True  # short tensor names, no all-zero weight/bias zero points
    reduce_range: bool = True  # 7-bit weights: no U8S8 overflow on x86 without VNNI


SYNTHETIC_CALIBRATION = 16  # inputs that calibrate a table's block (its scales, not its speed)


def synthetic_calibration(input_shape, seed: int = 0, n: int = SYNTHETIC_CALIBRATION) -> np.ndarray:
    """Seeded standard-normal inputs of ``input_shape``: what a block inside a network reads (the
    batch-normalized output of the block before it), for quantizing blocks timed on their own."""
    return np.random.default_rng(seed).standard_normal((n, *tuple(input_shape))).astype(np.float32)


def _reader(images: np.ndarray, input_name: str, batch_size: int):
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(range(0, len(images), batch_size))

        def get_next(self):
            i = next(self._it, None)
            return None if i is None else {input_name: images[i:i + batch_size].astype(np.float32)}

    return Reader()


def quantize_int8(fp32: bytes, calibration: np.ndarray, opts: QuantizeOptions = QuantizeOptions()) -> bytes:
    """INT8 QDQ model bytes from FP32 model bytes, calibrated on ``calibration`` (preprocessed images)."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if opts.method not in CALIBRATION_METHODS:
        raise UserError(f"unknown calibration method {opts.method!r}; choose one of {', '.join(CALIBRATION_METHODS)}")
    if len(calibration) == 0:
        raise UserError("INT8 calibration needs at least one real image")
    method = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
              "entropy": CalibrationMethod.Entropy}[opts.method]
    extra = {"CalibPercentile": opts.percentile} if opts.method == "percentile" else {}
    with tempfile.TemporaryDirectory(prefix="hwnas-quant-") as tmp:
        src, pre, dst = (Path(tmp) / n for n in ("fp32.onnx", "pre.onnx", "int8.onnx"))
        model = onnx.load_from_string(fp32)
        spatial_means_to_global_pool(model)
        onnx.save(model, str(src))
        # shape inference + constant folding first, so that every tensor has a calibrated range
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        model = onnx.load(str(pre))
        unit_batchnorms_to_adds(model)
        hard_activations_to_int8_ops(model)
        onnx.save(model, str(pre))
        input_name = model.graph.input[0].name
        cwd = os.getcwd()
        os.chdir(tmp)  # the calibrators write scratch models into the working directory
        try:  # the calibrators print progress to stdout, which belongs to the CLI's --json output
            with contextlib.redirect_stdout(io.StringIO()):
                quantize_static(str(pre), str(dst), _reader(calibration, input_name, opts.batch_size),
                                quant_format=QuantFormat.QDQ, per_channel=opts.per_channel,
                                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                                reduce_range=opts.reduce_range, calibrate_method=method, extra_options=extra)
        finally:
            os.chdir(cwd)
        model = onnx.load(str(dst))
    fold_scales_into_dequantize(model)
    return (compact(model) if opts.compact else model).SerializeToString()
