"""Timing and sizing of finished networks on a comparison's profile (``Bench``)."""

from __future__ import annotations

import copy
import re
from typing import Any, Sequence

from hwnas.errors import UserError


def _op_from_message(msg: str) -> str | None:
    for pattern in (r"implementation for (\w+)\(", r"op_type[=: ]+'?(\w+)", r"operator '?([\w:.]+)'?", r"node .*?\((\w+)\)"):
        m = re.search(pattern, msg)
        if m:
            return m.group(1)
    return None


class Bench:
    """Times finished networks on the profile's backend with the profiler's protocol, in the
    profile's units (ONNX Runtime: the exported file, paired with the profile's reference;
    eager torch: the module itself)."""

    def __init__(self, table, input_shape: Sequence[int], protocol: Any = None) -> None:
        from hwnas.exporters.measure import LatencySetup
        from hwnas.latency.protocol import Protocol

        self.protocol = protocol or Protocol()
        self.table = table
        self.input_shape = tuple(input_shape)
        self.backend = str(table.backend.get("name", ""))
        self.setup = LatencySetup.from_table(table)
        self.on_ort = not self.backend.startswith("torch")

    def describe(self) -> dict[str, Any]:
        return {"backend": self.backend, "provider": self.setup.provider, "threads": self.setup.threads,
                "batch": self.setup.batch}

    def onnx(self, model, name: str) -> bytes:
        import torch

        from hwnas.exporters.onnx_io import to_onnx

        model = model.to("cpu").to(memory_format=torch.contiguous_format).eval()
        try:
            return to_onnx(model, torch.zeros(1, *self.input_shape))
        except UserError as e:
            raise UserError(f"{name} cannot run on the profile's backend ({self.backend}): {e}") from None

    def check_runs(self, data: bytes, name: str) -> None:
        """Open a session on the profile's execution provider: the backend names what it cannot run."""
        from hwnas.latency.ort_runner import make_session

        try:
            make_session(data, self.setup.provider, self.setup.threads)
        except Exception as e:  # onnxruntime raises its own exception types, one per failure kind
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            op = _op_from_message(msg)
            what = f"operator {op}" if op else "an operator"
            raise UserError(f"the profile's backend ({self.backend}, {self.setup.provider}) cannot run {name}: {what} is "
                            f"not supported ({msg[:160]}); leave {name} out or use another profile") from None

    def preflight(self, model, name: str) -> None:
        import torch

        if self.on_ort:
            self.check_runs(self.onnx(model, name), name)
            return
        try:
            with torch.inference_mode():
                model.eval()(torch.zeros(1, *self.input_shape))
        except Exception as e:
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise UserError(f"the profile's backend ({self.backend}) cannot run {name}: {msg[:200]}") from None

    def latency(self, model, data: bytes, name: str) -> dict[str, Any]:
        from hwnas.exporters.measure import latency

        try:
            if self.on_ort:
                m = latency(data, self.input_shape, self.setup, self.protocol)
            else:
                from hwnas.latency.measure import measure_module_for_table

                m = measure_module_for_table(copy.deepcopy(model), self.table, self.protocol)  # timing resets BN statistics
        except UserError:
            raise
        except Exception as e:
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            op = _op_from_message(msg)
            raise UserError(f"the profile's backend ({self.backend}) failed to run {name}"
                            f"{f' at operator {op}' if op else ''}: {msg[:160]}") from None
        return {"latency_ms": float(m["latency_ms"]), "latency_median_ms": float(m["median_ms"]),
                "latency_iqr_ms": float(m["iqr_ms"])}

    def int8_latency(self, data: bytes, name: str) -> float:
        from hwnas.exporters.measure import LatencySetup, latency

        setup = self.setup if self.on_ort else LatencySetup.from_table(self.table)
        self.check_runs(data, f"{name} (INT8)")
        return float(latency(data, self.input_shape, setup, self.protocol)["latency_ms"])


def model_costs(model, input_shape: Sequence[int]) -> tuple[int, int]:
    """Parameters and FLOPs of one image (torch's FlopCounterMode, as the search counts them)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    model = model.to("cpu").eval()
    params = sum(p.numel() for p in model.parameters())
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, *input_shape))
    return int(params), int(counter.get_total_flops())


# ---- the output folder ----------------------------------------------------------------------
