"""Multi-fidelity search: successive halving over training epochs.

    hwnas search ... --evaluator train --fidelity epochs:1,3,9 --eta 3

The strategy proposes candidates one at a time, as in every search, and each is trained at rung
0 (1 epoch). Every ``eta ** (rungs - 1)`` rung-0 candidates form a batch (9 here); once the
batch's last one is evaluated, its best ``ceil(n / eta)`` by rung-0 accuracy are trained at rung
1 (3 epochs), the best ``ceil(n / eta**2)`` of those by rung-1 accuracy at rung 2 (9 epochs),
and so on. A batch cut short by the budget or an early stop is promoted alike with its ``n``.
Ties go to the lower latency, then to the earlier candidate; promoted candidates are evaluated
best first. Every candidate evaluated met the budgets, so every one can be promoted.

The strategy is told each candidate's rung-0 values, and only those: it compares like with like
(higher rungs exist only for the better ones, so mixing them would favour candidates for having
been promoted), it is told right after each ask exactly as without fidelity (so every ask/tell
strategy works unchanged, and none is left waiting for a batch to finish), and its state stays a
function of its seed and the sequence of rung-0 results, which is what resuming replays.
``budget_evals`` counts candidates started at rung 0.

Nothing here knows files or evaluators: ``drive_halving`` takes ``evaluate(genome, rung)``, so
the benchmark can drive it with array lookups as it drives ``loop.drive``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

from hwnas.errors import UserError
from hwnas.search.loop import MAX_REPEATS, LoopResult, drive
from hwnas.search.problem import Genome, Values
from hwnas.search.strategy import Strategy

DEFAULT_ETA = 3
# evaluator kinds whose training length a rung can set (TrainEvaluator.evaluate(..., epochs=))
EPOCH_EVALUATORS = ("train",)
_FORM = "epochs:A,B,... (training epochs per rung, increasing positive integers, e.g. epochs:1,3,9)"


@dataclass(frozen=True)
class Fidelity:
    """The rungs' training epochs and the promotion rate."""

    epochs: tuple[int, ...]
    eta: int = DEFAULT_ETA

    @property
    def rungs(self) -> int:
        return len(self.epochs)

    @property
    def batch(self) -> int:
        """Rung-0 candidates per batch: enough that the top rung gets one."""
        return self.eta ** (self.rungs - 1)

    @property
    def spec(self) -> str:
        return "epochs:" + ",".join(str(e) for e in self.epochs)

    def counts(self, n: int) -> list[int]:
        """Evaluations per rung for a batch of ``n``: ``ceil(n / eta**k)`` at rung k."""
        return [-(-n // self.eta ** k) for k in range(self.rungs)]  # integer ceil, exact

    def describe(self) -> dict[str, Any]:
        return {"spec": self.spec, "epochs": list(self.epochs), "eta": self.eta, "batch": self.batch}


def parse_fidelity(text: Optional[str], eta: Optional[int] = None, evaluator: Optional[str] = None) -> Optional[Fidelity]:
    """``--fidelity`` and ``--eta`` checked (with the evaluator they need); None without ``--fidelity``."""
    if text is None:
        if eta is not None:
            raise UserError(f"--eta {eta} needs --fidelity (e.g. --fidelity epochs:1,3,9 --eta {eta}); drop --eta or add --fidelity")
        return None
    kind, sep, rest = str(text).strip().partition(":")
    parts = [p.strip() for p in rest.split(",")] if sep else []
    if kind.strip() != "epochs" or not parts or not all(p.isascii() and p.isdigit() for p in parts):
        raise UserError(f"--fidelity {text!r} is not of the form {_FORM}")
    epochs = tuple(int(p) for p in parts)
    if epochs[0] < 1 or any(b <= a for a, b in zip(epochs, epochs[1:])):
        raise UserError(f"--fidelity {text!r} must list increasing positive numbers of epochs, e.g. epochs:1,3,9")
    if eta is None:
        eta = DEFAULT_ETA
    if isinstance(eta, bool) or not isinstance(eta, int) or eta < 2:
        raise UserError(f"--eta must be an integer of at least 2 (the best 1/eta of a rung go up to the next), got {eta!r}")
    if evaluator is not None:
        kind = evaluator.partition(":")[0]
        if kind not in EPOCH_EVALUATORS:
            raise UserError(f"--fidelity {text} sets training epochs, but evaluator {evaluator!r} does not train; "
                            f"use --evaluator train (each rung replaces its epochs) or drop --fidelity")
    return Fidelity(epochs, eta)


def check_resume(stored: Any, described: dict, where: str) -> None:
    """A resume must use the fidelity the run was started with (said before any other difference)."""
    before = stored.get("fidelity") if isinstance(stored, dict) else None
    now = described.get("fidelity")
    if before != now:
        def said(d: Any) -> str:
            return f"--fidelity {d['spec']} --eta {d['eta']}" if isinstance(d, dict) and "spec" in d else "no --fidelity"

        raise UserError(f"cannot resume {where!r}: it was searched with {said(before)}, this command gives {said(now)}; "
                        f"rerun with the run's own options or use a new --out")


def drive_halving(
    strategy: Strategy,
    evaluate: Callable[[Genome, int], Values],
    budget_evals: int,
    fidelity: Fidelity,
    on_evaluated: Callable[[int, Genome, Values, int], None] | None = None,
    max_repeats: int = MAX_REPEATS,
) -> LoopResult:
    """``loop.drive`` over rung 0 (``budget_evals`` distinct candidates), each batch promoted
    up the rungs once complete. ``evaluate(genome, rung)`` gives a candidate's values at a rung;
    ``on_evaluated(i, genome, values, rung)`` follows every evaluation (i counts them all) before
    anything else is evaluated or asked. The result's genomes and values are rung 0's."""
    batch: list[tuple[Genome, Values]] = []
    done = [0]

    def evaluated(g: Genome, v: Values, rung: int) -> None:
        if on_evaluated is not None:
            on_evaluated(done[0], g, v, rung)
        done[0] += 1

    def promote() -> None:
        n, current = len(batch), list(batch)
        batch.clear()
        for rung in range(1, fidelity.rungs):
            current = top(current, fidelity.counts(n)[rung], strategy.problem.fitness)
            nxt = []
            for g, _ in current:
                v = evaluate(g, rung)
                evaluated(g, v, rung)
                nxt.append((g, v))
            current = nxt

    def rung0(_: int, g: Genome, v: Values) -> None:
        evaluated(g, v, 0)
        batch.append((g, v))
        if len(batch) == fidelity.batch:
            promote()  # before this candidate is told: the strategy sees none of it

    res = drive(strategy, lambda g: evaluate(g, 0), budget_evals, rung0, max_repeats)
    if batch:
        promote()
    return res


def top(cands: Sequence[tuple[Genome, Values]], k: int, fitness: Callable[[Values], float]) -> list[tuple[Genome, Values]]:
    """The ``k`` best by ``fitness`` (accuracy), ties to the lower latency, then the earlier; best first."""
    order = sorted(range(len(cands)), key=lambda j: (-fitness(cands[j][1]), float(cands[j][1].get("latency_ms", 0.0)), j))
    return [cands[j] for j in order[:k]]


def top_rung(records: Sequence[dict]) -> list[dict]:
    """The records at the highest rung any reached: what ``best.json`` and ``pareto.json`` are
    made of (all records in a search without fidelity, which have no rung)."""
    if not records:
        return []
    high = max(int(r.get("rung", 0)) for r in records)
    return [r for r in records if int(r.get("rung", 0)) == high]


def report(records: Sequence[dict], fidelity: Fidelity) -> dict[str, Any]:
    """What a multi-fidelity search spent and where its results come from (in best.json and
    pareto.json): evaluations and epochs per rung, and their total (each evaluation counted at
    its rung's epochs, whether or not the evaluator's cache served it)."""
    per_rung = [0] * fidelity.rungs
    for r in records:
        per_rung[int(r["rung"])] += 1
    reached = max((k for k, n in enumerate(per_rung) if n), default=0)
    spent = [n * e for n, e in zip(per_rung, fidelity.epochs)]
    return {**fidelity.describe(), "top_rung": reached, "top_epochs": fidelity.epochs[reached],
            "candidates": per_rung[0], "evaluations_per_rung": per_rung, "epochs_per_rung": spent,
            "total_epochs": sum(spent)}


__all__ = ["DEFAULT_ETA", "EPOCH_EVALUATORS", "Fidelity", "check_resume", "drive_halving", "parse_fidelity", "report",
           "top", "top_rung"]
