"""The run folder, the contract between ``hwnas search`` and its readers (export, compare, the
demo): its file names, its format version, and ``load_run``, which checks what a reader relies
on before it is used, so that a damaged or foreign folder is one clear error, not a traceback.

    config.json    what was searched: space, profile, evaluator, strategy, budgets, seed (format 1)
    journal.jsonl  one evaluated candidate per line (id, arch, accuracy, latency_ms, ...; in a
                   multi-fidelity search one line per evaluation, with its rung and epochs)
    pareto.json    the front within the budgets; best.json the best candidate; pareto.png

``load_for_resume`` reads a folder back for ``hwnas search --resume``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from hwnas.errors import UserError
from hwnas.fileio import atomic_write_text, read_journal, read_json
from hwnas.search.paths import resolve_evaluator_spec, resolve_profile_spec

CONFIG_FILE = "config.json"
JOURNAL_FILE = "journal.jsonl"
PARETO_FILE = "pareto.json"
BEST_FILE = "best.json"
PLOT_FILE = "pareto.png"
RUN_FILES = (CONFIG_FILE, JOURNAL_FILE, PARETO_FILE, BEST_FILE, PLOT_FILE)
READ_FILES = (CONFIG_FILE, BEST_FILE, JOURNAL_FILE)  # what a reader needs
FORMAT_VERSION = 1
LATENCY_BUDGET = "latency_budget_ms"  # config.json's budgets key; folders before it said "latency_ms"


@dataclass
class RunFolder:
    folder: Path
    config: dict[str, Any]
    records: list[dict]
    best: dict[str, Any]

    @property
    def latency_budget_ms(self) -> float | None:
        """The search's latency budget (``--latency-ms``), None when it had none."""
        return (self.config.get("budgets") or {}).get(LATENCY_BUDGET)


def _number_or_none(v: Any) -> bool:
    return v is None or (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v))


def check_config(cfg: Any, where: str) -> None:
    """What a reader of ``config.json`` relies on, checked; one UserError naming the field otherwise."""
    def bad(field: str, want: str) -> UserError:
        return UserError(f"run config {where!r}: {field} should be {want}; the folder is damaged or from another tool "
                         f"(rerun the search)")

    if not isinstance(cfg, dict):
        raise bad("the file", "a JSON object")
    if cfg.get("format") != FORMAT_VERSION:
        raise UserError(f"run config {where!r} has format {cfg.get('format')!r}, this hwnas reads format "
                        f"{FORMAT_VERSION}; rerun the search with this version")
    for key in ("space", "profile", "evaluator"):
        if not isinstance(cfg.get(key), dict):
            raise bad(key, "an object")
    space = cfg["space"]
    if not isinstance(space.get("name"), str):
        raise bad("space.name", "a space name")
    if not isinstance(space.get("settings") or {}, dict):
        raise bad("space.settings", "an object")
    if not isinstance(space.get("config_hash") or "", str):
        raise bad("space.config_hash", "a string")
    for key in ("profile", "evaluator"):
        if not isinstance(cfg[key].get("spec", ""), str):
            raise bad(f"{key}.spec", "a string")
        if not isinstance(cfg[key].get("typed") or "", str):
            raise bad(f"{key}.typed", "a string")
    if not isinstance(cfg["evaluator"].get("data") or "", str):
        raise bad("evaluator.data", "a dataset name")
    budgets = cfg.get("budgets") or {}
    if not isinstance(budgets, dict):
        raise bad("budgets", "an object")
    for key, v in budgets.items():
        if not _number_or_none(v):
            raise bad(f"budgets.{key}", "a number or null")
    if not isinstance(cfg.get("strategy") or {}, dict):
        raise bad("strategy", "an object")


def check_record(r: Any, where: str) -> None:
    """A journal record or best.json as a reader uses it: an id, an arch object, finite figures."""
    if not isinstance(r, dict) or not isinstance(r.get("id"), str) or not isinstance(r.get("arch"), dict):
        raise UserError(f"{where} is not an evaluated arch (needs an id and an arch); the folder is damaged, rerun the search")
    for key in ("accuracy", "latency_ms"):
        if key in r and not _number_or_none(r[key]):
            raise UserError(f"{where}: {key} should be a number, got {r[key]!r}; the folder is damaged, rerun the search")
    for key in ("rung", "epochs"):  # a multi-fidelity search's records
        v = r.get(key, 0)
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise UserError(f"{where}: {key} should be a whole number, got {v!r}; the folder is damaged, rerun the search")


def load_run(folder: str | Path) -> RunFolder:
    """A finished (or stopped) search's folder, checked: its config, journal and best arch."""
    d = Path(folder)
    if not d.is_dir():
        raise UserError(f"run folder {str(d)!r} does not exist; pass the --out folder of `hwnas search`")
    missing = [n for n in READ_FILES if not (d / n).is_file()]
    if missing:
        raise UserError(f"run folder {str(d)!r} is incomplete (missing {', '.join(missing)}); "
                        f"finish the search with `hwnas search ... --resume` first")
    cfg = read_json(d / CONFIG_FILE, "run config")
    check_config(cfg, str(d / CONFIG_FILE))
    cfg = _budgets_as_written_now(cfg)
    records, _ = read_journal(d / JOURNAL_FILE)
    for k, r in enumerate(records):
        check_record(r, f"journal {str(d / JOURNAL_FILE)!r} line {k + 1}")
    best = read_json(d / BEST_FILE, "best arch")
    if not records or best is None:
        raise UserError(f"run folder {str(d)!r} holds no evaluated arch; run the search longer")
    check_record(best, f"best arch {str(d / BEST_FILE)!r}")
    return RunFolder(d, cfg, records, best)


# ---- resume -------------------------------------------------------------------------
def _identity(d: Any) -> Any:
    """What must match on resume: a file's hash stands for it, whatever path reached it, and
    the path as typed does not count (it depends on where the command was typed)."""
    if isinstance(d, dict):
        hashed = any("sha256" in k for k in d)
        return {k: _identity(v) for k, v in d.items() if k != "typed" and not (k == "spec" and hashed)}
    return d


def _budgets_as_written_now(cfg: dict) -> dict:
    """Older run folders named the latency budget ``latency_ms`` in ``budgets``."""
    budgets = cfg.get("budgets")
    if isinstance(budgets, dict) and "latency_ms" in budgets and LATENCY_BUDGET not in budgets:
        budgets = {(LATENCY_BUDGET if k == "latency_ms" else k): v for k, v in budgets.items()}
        return {**cfg, "budgets": budgets}
    return cfg


def _as_written_now(stored: dict) -> dict:
    """Older run folders recorded specs as typed (relative to where the search ran, which is
    where a resume runs) and the latency budget under another name: read them as a new run
    would have written them."""
    out = _budgets_as_written_now(dict(stored))
    for key, resolve in (("profile", resolve_profile_spec), ("evaluator", resolve_evaluator_spec)):
        d = out.get(key)
        if isinstance(d, dict) and "typed" not in d and isinstance(d.get("spec"), str):
            out[key] = {**d, "spec": resolve(d["spec"])}
    return out


def _differences(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            out += _differences(a.get(k), b.get(k), f"{prefix}{k}.")
        return out
    return [] if a == b else [f"{prefix.rstrip('.')} was {a!r}, now {b!r}"]


def load_for_resume(out: Path, described: dict,
                    check: Callable[[Any, dict, str], None] | None = None) -> tuple[list[dict], list[str]]:
    """The journal of the run folder ``out`` to replay, after checking that its config is the
    one ``described`` now (``check(stored, described, where)`` first, for a clearer message
    about one part); notes about what was recovered."""
    stored = read_json(out / CONFIG_FILE, "run config")
    if isinstance(stored, dict):
        stored = _as_written_now(stored)
    if check is not None:
        check(stored, described, str(out))
    diffs = _differences(_identity(stored), _identity(json_roundtrip(described)))
    if diffs:
        raise UserError(f"cannot resume {str(out)!r}: its journal comes from a different configuration ({'; '.join(diffs[:4])}); "
                        f"rerun with the same options or use a new --out")
    records, dropped = read_journal(out / JOURNAL_FILE)
    notes = []
    if dropped:
        # keep only the valid prefix on disk too, so new records follow a clean line
        atomic_write_text(out / JOURNAL_FILE, "".join(json.dumps(r, sort_keys=True) + "\n" for r in records))
        notes.append(f"journal {str(out / JOURNAL_FILE)!r} ended in {dropped} unreadable line(s) (an interrupted write); "
                     f"recovered the {len(records)} valid record(s) before it")
    for k, r in enumerate(records):
        if r.get("i") != k or "id" not in r or "accuracy" not in r:
            raise UserError(f"journal {str(out / JOURNAL_FILE)!r} record {k} is not a search record; start a new run folder")
    return records, notes


def json_roundtrip(obj: Any) -> Any:
    return json.loads(json.dumps(obj))


def journal_record(index: int, values: Any) -> dict:
    """Record ``index`` of a journal as the journal gives it back (keys sorted), so that a resumed
    run, which reads its records from the file, writes the same files as an uninterrupted one."""
    return json.loads(json.dumps({"i": index, **values}, sort_keys=True))
