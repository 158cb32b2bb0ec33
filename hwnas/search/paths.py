"""File paths inside the profile and evaluator specs a run folder records.

A user types paths relative to where they stand (``--profile my.json``, ``supernet:sn.pt``);
the run folder is read later, often from elsewhere (``hwnas export /abs/runs/mine``). So a run
records each path resolved when it is written, with the spec as typed beside it, and a reader
looks for a recorded path in the places it can have meant.
"""

from __future__ import annotations

from pathlib import Path

# evaluator kinds whose argument is a file
FILE_KINDS = ("supernet", "predictor")
# table:CSV#COLUMN names the shared NAS-Bench-201 file by this word, found through HWNAS_SHARED_DATA
TABLE_KEYWORDS = ("nb201",)


def _resolve(path: str) -> str:
    p = Path(path).expanduser()
    return str(p.resolve()) if p.exists() else path


def _resolve_table(arg: str) -> str:
    csv, sep, column = arg.rpartition("#")
    if not sep or not csv or csv in TABLE_KEYWORDS:
        return arg
    return f"{_resolve(csv)}#{column}"


def resolve_profile_spec(spec: str) -> str:
    """A latency table path made absolute (``table:CSV#COLUMN`` with its CSV path); a path that
    does not exist stays as typed, so that the error about it names what the user wrote."""
    if spec.startswith("table:"):
        return "table:" + _resolve_table(spec[len("table:"):])
    from hwnas.latency.reference import resolve_table_path

    return _resolve(str(resolve_table_path(spec)))  # a registered reference table's name: its file


def resolve_evaluator_spec(spec: str) -> str:
    """``supernet:CKPT`` and ``predictor:FILE`` with absolute paths, ``table:CSV#COLUMN`` with an
    absolute CSV path; other kinds unchanged."""
    kind, sep, arg = spec.partition(":")
    if not sep or not arg:
        return spec
    if kind in FILE_KINDS:
        return f"{kind}:{_resolve(arg)}"
    if kind == "table":
        return "table:" + _resolve_table(arg)
    return spec


def locate(recorded: str, run_folder: str | Path, typed: str | None = None) -> Path:
    """The file a run folder's recorded path means: the path itself (absolute, or relative to the
    current folder as older run folders stored it), else the path as typed or as recorded taken
    relative to the run folder or one of the folders above it (the search ran in one of them, or
    the tree was moved as a whole). The recorded path when nothing is found, for the error."""
    first = Path(recorded).expanduser()
    if first.exists():
        return first
    names = [n for n in dict.fromkeys([typed, recorded]) if n and not Path(n).is_absolute()]
    base = Path(run_folder).expanduser().resolve()
    for folder in (base, *base.parents):
        for name in names:
            candidate = folder / name
            if candidate.exists():
                return candidate
    return first


def spec_path(spec: str) -> str:
    """The file part of a profile or evaluator spec (``supernet:sn.pt`` -> ``sn.pt``,
    ``table:a.csv#col`` -> ``a.csv``, ``my.json`` -> ``my.json``)."""
    kind, sep, arg = spec.partition(":")
    if sep and kind == "table":
        return arg.rpartition("#")[0] or arg
    if sep and kind in FILE_KINDS:
        return arg
    return spec
