"""``check_budget``: which measurement a latency budget is checked on, and the verdict.

One rule, used once by export: the budget is in the profile's units, so it is checked on the
runtime the profile timed. A table of a torch backend timed torch modules, so the shipped
network is checked as a torch module on that backend; a table of an ONNX Runtime backend timed
ONNX files, so the file that ships (FP32 or INT8) is checked in ONNX Runtime. A plain timing
(a plain loop in fresh processes, ``--plain``), where there is one, is what a user would see
and replaces the protocol's estimate; the estimate is kept beside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

PLAIN_NOTE = " (plain timing: a plain loop's median in fresh processes, the median over the sessions)"


@dataclass(frozen=True)
class BudgetCheck:
    latency_ms: Optional[float]  # what the budget is compared with
    checked_on: str  # on what, in words (the report says it beside the verdict)
    meets: Optional[bool]  # None without a budget or without a measurement
    protocol_latency_ms: Optional[float] = None  # the protocol's estimate, where a plain timing replaced it


def check_budget(latency_budget_ms: Optional[float], shipped: str, onnx_ms: Optional[float],
                 torch_backend: Optional[str] = None, torch_ms: Optional[float] = None,
                 plain_ms: Optional[float] = None) -> BudgetCheck:
    """``shipped``: the precision of the file that ships (fp32 or int8) and ``onnx_ms`` its time in
    ONNX Runtime; ``torch_backend``/``torch_ms``: the profile's torch backend and the FP32 module's
    time on it, where the profile timed torch; ``plain_ms``: the plain timing of what is checked."""
    if torch_backend is not None:
        ms, on = torch_ms, f"the FP32 torch model on {torch_backend} (the profile's backend)"
    else:
        ms, on = onnx_ms, f"the {shipped.upper()} ONNX file in ONNX Runtime"
    protocol = None
    if plain_ms is not None:
        ms, protocol, on = plain_ms, ms, on + PLAIN_NOTE
    meets = None if latency_budget_ms is None or ms is None else bool(ms <= latency_budget_ms)
    return BudgetCheck(ms, on, meets, protocol)
