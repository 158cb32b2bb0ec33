"""Parallel evaluation: several candidates of one search evaluated at once, in Ray.

    hwnas search ... --workers 2                   # two at once on this machine
    hwnas search ... --workers 8 --ray-address HOST:6379   # on a running Ray cluster

**What a result depends on.** Strategies are sequential ask/tell. A parallel search asks
``in_flight`` candidates ahead before it tells the first of them, and tells them in ask order
(``loop.drive_ahead``), so its journal and best arch are a function of the seed and
``in_flight`` alone. ``--workers`` only says how many evaluations run at once: ``--workers 2``
gives exactly what ``--workers 1 --in-flight 2`` gives (``in_flight`` defaults to ``workers``), and
``in_flight`` is part of the run's identity (``config.json``), ``workers`` and ``ray_address`` are
not: a resume may use other workers, but not another ``in_flight``. With ``in_flight`` 1 (the
default) the search is the sequential one, untouched. An evaluator whose values depend on the
number of threads it runs on (training on CPU sums in another order) can differ in its last
digits between worker counts, since each worker trains on its share of the cores.

**Workers.** One Ray actor per worker builds the search's setup once from the ``SearchConfig``
(``setup.SearchSetup``: space, latency model, evaluator with its dataset or supernet) and evaluates
genomes with ``setup.evaluate``. Each is pinned to its own ``cores // workers`` cores (at least
one) of its node: the OpenMP/MKL/OpenBLAS thread variables are set before its process imports
torch, its CPU affinity is set to its slice (which is what the training loop's "all cores"
then means), and torch's intra-op threads to the slice's size, so N workers share the cores
instead of each starting a thread per core. Candidates wait in a queue on this side and go to
the first idle worker, so a slow evaluation does not hold up the ones behind it.

**Nothing lost.** The journal keeps ask order: record i is appended before i + 1, after the
candidates before it were told, so a journal is always a replayable prefix. An evaluation that
finishes before the ones asked earlier cannot be appended yet; it goes at once (flushed and
fsynced) into a side file of the run folder, ``ahead.jsonl``, each line the finished record
with the identity of the run's configuration. A resume (with any ``--workers``) reads it back
and uses a record there instead of evaluating again when the replayed search asks the same
genome at the same position; the file is removed when a search ends normally (every record in
it is in the journal by then). A crash therefore loses only evaluations still running. The
alternative, appending records in completion order and sorting them on resume, would make the
journal a non-prefix that every reader (export, compare, the sequential resume) must learn to
reorder; the side file keeps the journal's contract as it is.

**Successive halving** (``--fidelity``) is refused with ``--workers``/``--in-flight`` above 1:
its promotions evaluate whole batches between asks, a different schedule this module does not
implement. Gradient strategies (gdas, darts) train one supernet and are refused too.

The Ray side (is it installed, does ``--ray-address`` answer, the pool of pinned workers) is in
``search/ray_pool.py``. Ray is imported only when a search needs it (``workers > 1`` or a ``ray_address``): without Ray
installed ``hwnas search`` works as before, and asking for workers says how to get it
(``pip install 'hwnas[distributed]'``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any, Callable, Optional

from hwnas.errors import UserError
from hwnas.fileio import Journal, atomic_write_text, read_journal
from hwnas.search.loop import LoopResult, drive_ahead
from hwnas.search.problem import Genome, Values
from hwnas.search.ray_pool import RayPool, check_reachable, require_ray
from hwnas.search.run_folder import journal_record

AHEAD_FILE = "ahead.jsonl"


# ---- the configuration ----------------------------------------------------------------
def in_flight_of(cfg: Any) -> int:
    """Candidates asked ahead of the first told: ``in_flight``, else ``workers``."""
    return int(cfg.in_flight) if cfg.in_flight is not None else int(cfg.workers)


def uses_ray(cfg: Any) -> bool:
    return int(cfg.workers) > 1 or cfg.ray_address is not None


def is_parallel(cfg: Any) -> bool:
    """Whether the search asks ahead (else it is the sequential ``loop.drive``)."""
    return in_flight_of(cfg) > 1 or uses_ray(cfg)


def check_config(cfg: Any) -> None:
    """``--workers``, ``--in-flight`` and ``--ray-address`` checked, before anything is written:
    one UserError each (Ray missing, an address that does not answer within seconds)."""
    from hwnas.search.oneshot.methods import is_oneshot

    for flag, v in (("--workers", cfg.workers), ("--in-flight", cfg.in_flight)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise UserError(f"{flag} must be a whole number of at least 1, got {v!r}")
    address = cfg.ray_address
    if address is not None and (not isinstance(address, str) or not address.strip()):
        raise UserError(f"--ray-address must be a Ray cluster address such as HOST:6379, ray://HOST:10001 or auto, got {address!r}")
    if not is_parallel(cfg):
        return
    said = _flags(cfg)
    if is_oneshot(cfg.strategy):
        raise UserError(f"{said} evaluate candidates of the ask/tell strategies in parallel; {cfg.strategy} trains one "
                        f"supernet: drop {said} or choose another --strategy")
    if cfg.fidelity is not None:
        raise UserError(f"{said} cannot be combined with --fidelity (successive halving evaluates its rungs one by one); "
                        f"drop one of them")
    if uses_ray(cfg):
        require_ray(said)
    if address is not None:
        check_reachable(address.strip())


def _flags(cfg: Any) -> str:
    parts = []
    if int(cfg.workers) > 1:
        parts.append(f"--workers {cfg.workers}")
    if cfg.in_flight is not None and int(cfg.in_flight) > 1:
        parts.append(f"--in-flight {cfg.in_flight}")
    if cfg.ray_address is not None:
        parts.append(f"--ray-address {cfg.ray_address}")
    return " and ".join(parts) or "--workers"


def describe(cfg: Any) -> dict[str, Any]:
    """What a parallel search adds to the run's identity (``config.json``): ``in_flight`` when
    above 1 (it changes the result); nothing for a sequential search, whose config stays as it was."""
    k = in_flight_of(cfg)
    return {"in_flight": k} if k > 1 else {}


def check_resume(stored: Any, described: dict, where: str) -> None:
    """A resume must ask as far ahead as the run did (said before any other difference)."""
    before = (stored.get("in_flight") if isinstance(stored, dict) else None) or 1
    now = described.get("in_flight") or 1
    if before != now:
        raise UserError(f"cannot resume {where!r}: it was searched with {before} candidate(s) in flight, this command gives "
                        f"{now} (--in-flight, which defaults to --workers); add --in-flight {before} (any --workers can resume it)")


# ---- finished evaluations not yet in the journal -----------------------------------------
def run_key(described: dict) -> str:
    """The identity of a run's configuration, as resume compares it, in a few characters."""
    from hwnas.search.run_folder import _identity, json_roundtrip

    blob = json.dumps(_identity(json_roundtrip(described)), sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class AheadFile:
    """``ahead.jsonl``: evaluations that finished before the candidates asked earlier, kept so
    that a crash does not lose them (see the module docstring). ``path=None``: nothing kept."""

    def __init__(self, path: Optional[Path], key: str, resume: bool, first_new: int = 0) -> None:
        self.path, self.key = path, key
        self.kept: dict[int, dict] = {}
        self._journal: Optional[Journal] = None
        if path is None:
            return
        if resume:
            lines, _ = read_journal(path)  # a torn last line is dropped: that evaluation is redone
            for line in lines:
                rec = line.get("record")
                if line.get("run") == key and isinstance(rec, dict) and isinstance(rec.get("i"), int) and rec["i"] >= first_new:
                    self.kept[rec["i"]] = rec  # (those before first_new are in the journal already)
        if self.kept:  # rewritten to what is still of use, so that new lines follow a clean one
            atomic_write_text(path, "".join(self._line(r) for r in self.kept.values()))
        else:
            path.unlink(missing_ok=True)
        self._journal = Journal(path)

    def _line(self, rec: dict) -> str:
        return json.dumps({"run": self.key, "record": rec}, sort_keys=True) + "\n"

    def take(self, index: int, genome: Genome) -> Optional[dict]:
        """The kept record of the ``index``-th candidate if it is this genome's, else None."""
        rec = self.kept.pop(index, None)
        return rec if rec is not None and rec.get("genome") == list(genome) else None

    def keep(self, rec: dict) -> None:
        if self._journal is not None:
            self._journal.append({"run": self.key, "record": rec})

    def close(self, finished: bool) -> None:
        if self._journal is not None:
            self._journal.close()
        if finished and self.path is not None:
            self.path.unlink(missing_ok=True)  # every record in it is in the journal now


# ---- evaluations for drive_ahead -----------------------------------------------------------
class Evaluations:
    """``loop.Evaluations`` for a run: replayed and locally evaluated candidates go through the
    runner's own ``evaluate`` in their turn; kept ones come from the side file; the rest go to
    the workers (``pool``), and results that arrive before their turn are kept at once."""

    def __init__(self, evaluate: Callable[[Genome], Values], n_replay: int, ahead: AheadFile, pool: Any = None) -> None:
        self.evaluate, self.n_replay, self.ahead, self.pool = evaluate, n_replay, ahead, pool
        self._local: dict[int, Genome] = {}
        self._done: dict[int, dict] = {}

    def submit(self, index: int, genome: Genome) -> None:
        if index < self.n_replay:
            self._local[index] = genome  # the journal's record, checked by the runner in its turn
            return
        kept = self.ahead.take(index, genome)
        if kept is not None:
            self._done[index] = kept
        elif self.pool is None:
            self._local[index] = genome
        else:
            self.pool.submit(index, genome)

    def result(self, index: int) -> Values:
        if index in self._local:
            return self.evaluate(self._local.pop(index))
        while index not in self._done:
            i, values = self.pool.next_done()
            rec = journal_record(i, values)
            self._done[i] = rec
            if i != index:
                self.ahead.keep(rec)
        return self._done.pop(index)


def drive_parallel(setup: Any, cfg: Any, evaluate: Callable[[Genome], Values],
                   on_evaluated: Callable[[int, Genome, Values], None], n_replay: int,
                   out: Optional[Path], described: dict, resume: bool) -> LoopResult:
    """``runner.run``'s loop for a parallel search: ``loop.drive_ahead`` over the workers (in
    this process when ``workers`` is 1), the side file in ``out``, Ray shut down at the end."""
    ahead = AheadFile(out / AHEAD_FILE if out is not None else None, run_key(described), resume, n_replay)
    pool = None
    finished = False
    try:
        if uses_ray(cfg) and cfg.budget_evals > n_replay:
            try:
                pool = RayPool(_worker_config(setup, cfg), int(cfg.workers), cfg.ray_address)
            except UserError:
                if out is not None and not resume:  # nothing evaluated yet: leave no run behind
                    from hwnas.search.run_folder import CONFIG_FILE

                    (out / CONFIG_FILE).unlink(missing_ok=True)
                raise
        evaluations = Evaluations(evaluate, n_replay, ahead, pool)
        res = drive_ahead(setup.strategy, evaluations, cfg.budget_evals, in_flight_of(cfg), on_evaluated)
        finished = True
        return res
    finally:
        ahead.close(finished)
        if pool is not None:
            pool.close()


def _worker_config(setup: Any, cfg: Any) -> Any:
    # the specs as resolved here (absolute paths): a worker's process may stand elsewhere
    return dataclasses.replace(cfg, profile=setup.profile_spec, evaluator=setup.evaluator_spec,
                               workers=1, in_flight=None, ray_address=None)
