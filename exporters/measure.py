"""What an exported model does: top-1 and per-class precision/recall/F1 in ONNX Runtime, latency
with the profiler's protocol on the profile's backend, and file size."""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np

from hwnas.exporters.onnx_io import ort_logits, session


@dataclass(frozen=True)
class LatencySetup:
    """The backend a latency is measured on: the search profile's, so that numbers compare."""

    provider: str = "CPUExecutionProvider"
    threads: int = 1
    batch: int = 1
    clock: str = "wall"
    # the profile itself, when there is one: its reference network puts measurements on the
    # table's scale, so that they compare with its predictions and the budget set from them
    table: Any = field(default=None, compare=False, hash=False, repr=False)

    @classmethod
    def from_table(cls, table) -> "LatencySetup":
        b = table.backend
        if not str(b.get("name", "")).startswith("ort"):
            # a torch-backend profile: the ONNX file is timed in ORT with the same threads/batch
            return cls("CPUExecutionProvider", int(b.get("threads", 1)), int(b.get("batch", 1)), str(b.get("clock", "wall")))
        return cls(str(b.get("provider") or "CPUExecutionProvider"), int(b.get("threads", 1)), int(b.get("batch", 1)),
                   str(b.get("clock", "wall")), table)


@dataclass
class Scores:
    top1: float
    per_class: list[dict[str, Any]] = field(default_factory=list)
    macro_f1: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def scores(predicted: np.ndarray, labels: np.ndarray, classes: Sequence[str]) -> Scores:
    from sklearn.metrics import precision_recall_fscore_support

    ids = list(range(len(classes)))
    p, r, f, n = precision_recall_fscore_support(labels, predicted, labels=ids, zero_division=0)
    rows = [{"class": str(c), "precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(n[i])}
            for i, c in enumerate(classes)]
    return Scores(float(np.mean(predicted == labels)), rows, float(np.mean(f)))


def evaluate(model: bytes | str, x: np.ndarray, y: np.ndarray, classes: Sequence[str]) -> Scores:
    logits = ort_logits(session(model), x.astype(np.float32))
    return scores(logits.argmax(1), y, classes)


def top1(model: bytes | str, x: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(ort_logits(session(model), x.astype(np.float32)).argmax(1) == y))


def latency(model: bytes | str, input_shape: Sequence[int], setup: LatencySetup, protocol=None) -> dict[str, float]:
    """The profiler's estimate (``latency_ms``) plus median and IQR of the chosen session.

    With an ORT profile whose space takes this input shape, the model is timed paired with
    the profile's reference network and expressed on the profile's scale."""
    from hwnas.latency.ort_runner import ort_runner
    from hwnas.latency.protocol import Protocol, measure_sessions

    table = setup.table
    if table is not None and tuple(table.get_space().input_shape) == tuple(input_shape):
        from hwnas.latency.measure import measure_onnx_for_table

        m = measure_onnx_for_table(model, table, protocol or Protocol())
        return {"latency_ms": m["latency_ms"], "median_ms": m["median_ms"], "iqr_ms": m["iqr_ms"]}

    shape = (setup.batch, *tuple(input_shape))
    m = measure_sessions(lambda: ort_runner(model, shape, setup.provider, setup.threads, 0, setup.clock),
                         protocol or Protocol())
    return {"latency_ms": m.latency_ms, "median_ms": m.median_ms, "iqr_ms": m.iqr_ms}


def paired_ratio(model: bytes | str, reference: bytes | str, input_shape: Sequence[int], setup: LatencySetup,
                 protocol=None) -> dict[str, float]:
    """``model``'s time over ``reference``'s, call by call in one loop (the profiler's pairing):
    the median ratio of the fastest of several fresh sessions, its IQR and the spread between
    sessions. A slow spell of the machine slows both calls of a pair and cancels out."""
    from hwnas.latency.ort_runner import ort_runner
    from hwnas.latency.protocol import Protocol, fastest_session, measure_sessions

    p = protocol or Protocol()
    shape = (setup.batch, *tuple(input_shape))
    ref = fastest_session(lambda: ort_runner(reference, shape, setup.provider, setup.threads, 0, setup.clock), p,
                          tries=max(1, p.sessions))
    m = measure_sessions(lambda: ort_runner(model, shape, setup.provider, setup.threads, 0, setup.clock), p, ref)
    ref_ms = m.ref_ms or 1.0
    return {"ratio": float(m.ratio), "iqr": m.iqr_ms / ref_ms, "session_spread": m.session_spread,
            "reference_ms": m.ref_ms, "count": m.count}


def plain_times(fp32: bytes, int8: bytes | None, module: Any | None, input_shape: Sequence[int],
                setup: LatencySetup, module_backend: str | None = None, sessions: int = 1) -> dict[str, Any]:
    """Plain timings (median and p90 of a plain loop, fresh process) of the ONNX files in ONNX
    Runtime with the profile's settings, and of the torch module where the profile is eager torch;
    each the median of ``sessions`` fresh processes."""
    from hwnas.latency.plain import PlainFiles

    shape = (setup.batch, *tuple(input_shape))
    with PlainFiles() as files:
        names = ["fp32"] + (["int8"] if int8 is not None else [])
        for b in [fp32] + ([int8] if int8 is not None else []):
            files.add_onnx(b, shape, setup.provider, setup.threads)
        if module is not None:
            names.append("torch")
            files.add_torch(copy.deepcopy(module).eval(), shape, setup.threads,
                            device="cuda" if module_backend == "torch-cuda" else "cpu")
        times = files.run(sessions=sessions)
    return dict(zip(names, times))
