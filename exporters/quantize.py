"""Static INT8 quantization with ONNX Runtime: QDQ format, per-channel weights, real calibration images.

Dynamic quantization is never used: it quantizes activations at run time and makes
convolutions about ten times slower on CPU. Activations are unsigned 8-bit and weights signed
8-bit (U8S8), the combination ORT's x86 kernels are fastest with.
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

CALIBRATION_METHODS = ("minmax", "percentile", "entropy")


@dataclass(frozen=True)
class QuantizeOptions:
    method: str = "minmax"
    per_channel: bool = True
    percentile: float = 99.999
    batch_size: int = 32


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
        src.write_bytes(fp32)
        # shape inference + BN/constant folding first, so that every tensor has a calibrated range
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        import onnx

        input_name = onnx.load(str(pre)).graph.input[0].name
        cwd = os.getcwd()
        os.chdir(tmp)  # the calibrators write scratch models into the working directory
        try:  # the calibrators print progress to stdout, which belongs to the CLI's --json output
            with contextlib.redirect_stdout(io.StringIO()):
                quantize_static(str(pre), str(dst), _reader(calibration, input_name, opts.batch_size),
                                quant_format=QuantFormat.QDQ, per_channel=opts.per_channel,
                                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                                calibrate_method=method, extra_options=extra)
        finally:
            os.chdir(cwd)
        return dst.read_bytes()
