"""``hwnas compare``: hand-designed baselines and found networks trained with one recipe on the
shared loop, timed end to end on the profile's backend, in one table and one picture.

Every network of a comparison sees the same data split, recipe, epochs and seeds. Each finished
(network, seed) row is appended to ``compare.journal.jsonl`` in the output folder before the
next starts (its first line records the settings), so an interrupted comparison continues with
``resume=True`` and keeps every finished row. Rows are trained seed by seed, the cheapest
networks (FLOPs) first, so an interruption keeps the most rows; the tables keep the order given.
``compare.json``, ``compare.md`` and
``compare.png`` are written at the end, atomically.

Top-1 is a fact of the training; latency is a fact of the machine. Every row records the machine
that timed it (``timed_on``), and a comparison never mixes machines silently: resuming rows timed
on another machine asks for ``retime=True``, which times every row again on this one, in one
sitting, after the training (the trained weights are not needed: an untrained copy of each
network runs the same graph). Rows finished in an earlier folder with the same settings (a copy
kept with the results, say) come in with ``prior_rows``.

A run folder gives its best arch, or with ``front=True`` every arch of its Pareto front
(``pareto.json``; the best too where it is not on it): those rows carry ``front`` and ``best``
flags and the ``run`` they came from, and compare.png draws each run's front as measured here.
Without ``front`` it draws the search's own estimate of the front (its evaluator's accuracy
against predicted latency) faintly, where the evaluator gives accuracies.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from hwnas.compare.bench import Bench, model_costs
from hwnas.compare.contenders import (Contender, SearchFront, baseline_contenders, found_archs, found_from_run,
                                      load_profile)
from hwnas.errors import UserError
from hwnas.fileio import Journal, atomic_write_bytes, atomic_write_json, atomic_write_text, read_journal

FORMAT = 1
JOURNAL_FILE = "compare.journal.jsonl"
JSON_FILE = "compare.json"
MD_FILE = "compare.md"
PNG_FILE = "compare.png"
OUTPUT_FILES = (JSON_FILE, MD_FILE, PNG_FILE)
ROW_FIELDS = ("name", "kind", "latency_ms", "params", "flops", "model_bytes", "top1", "macro_f1", "train_seconds",
              "epochs", "seed")
CALIBRATION_IMAGES = 256  # INT8 calibration: training images, seeded


@dataclass
class CompareConfig:
    """What ``hwnas compare`` takes (the training comparison)."""

    profile: str  # latency table JSON from `hwnas profile`: its backend times every network
    data: str = "digits"
    epochs: int = 10
    baselines: Sequence[str] = ()
    runs: Sequence[str] = ()  # search run folders: the best arch of each (with `front`, every arch of its front)
    front: bool = False  # train and time every arch of each run's Pareto front, not only its best
    archs: Sequence[Any] = ()  # archs of `space` (dicts, JSON strings, Arch values)
    space: str | None = None  # the archs' space; default: the profile's
    seeds: int = 1
    # more seeds (0 .. close_seeds-1) for every found network and baseline whose mean top-1 are
    # within close_points of each other, added until no pair is left with fewer
    close_seeds: int | None = None
    close_points: float = 1.0
    int8: bool = False
    train_limit: int | None = None
    threads: int | None = None
    batch_size: int = 64
    lr: float = 0.05
    device: str = "auto"
    max_steps: int | None = None  # cap training steps (tests)
    protocol: Any = None  # hwnas.latency.protocol.Protocol for the timing; None: the profiler's default
    retime: bool = False  # time every row again on this machine, in one sitting, after the training

    def check(self) -> None:
        self.recipe(0).check()
        if self.seeds < 1:
            raise UserError(f"--seeds must be at least 1, got {self.seeds}")
        if self.close_seeds is not None and self.close_seeds <= self.seeds:
            raise UserError(f"--close-seeds must be more than --seeds ({self.seeds}), got {self.close_seeds}")
        if not (self.close_points > 0):
            raise UserError(f"--close-points must be a positive number of top-1 points, got {self.close_points}")
        if self.train_limit is not None and self.train_limit < 1:
            raise UserError(f"--train-limit must be at least 1 image, got {self.train_limit}")
        if self.front and not self.runs:
            raise UserError("--front compares the Pareto front of each --run folder; pass --run DIR")
        if not (self.baselines or self.runs or self.archs):
            raise UserError("nothing to compare: pass --baselines (a list or all), --run DIR or --arch FILE")

    def recipe(self, seed: int):
        from hwnas.accuracy.training import TrainRecipe

        return TrainRecipe(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, seed=seed, device=self.device,
                           threads=self.threads, max_steps=self.max_steps)


@dataclass
class CompareResult:
    rows: list[dict]
    out: Path | None
    resumed_rows: int = 0  # rows kept from the journal (resume, or reuse of a comparison with the same settings)
    notes: list[str] = field(default_factory=list)
    search_fronts: list[SearchFront] = field(default_factory=list)
    # each run's best (and each --arch network) against the baselines: name, dominates_baselines, sentence
    verdicts: list[dict] = field(default_factory=list)
    # each baseline against the found networks (report.baseline_standing); empty without found networks
    standing: list[dict] = field(default_factory=list)


def _prepare_out(out: Path, resume: bool, force: bool) -> None:
    """Refuse an output folder that cannot be used, before anything is loaded or written."""

    if resume and force:
        raise UserError("--resume and --force exclude each other: resume continues a comparison, force starts it over")
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {str(out)!r} exists and is not a folder; choose another path")
    journal = out / JOURNAL_FILE
    if resume:
        if not journal.is_file():
            raise UserError(f"nothing to resume in {str(out)!r}: it holds no {JOURNAL_FILE}; run without --resume")
        return
    if out.exists() and any(out.iterdir()) and not force:
        if journal.is_file() or any((out / n).exists() for n in OUTPUT_FILES):
            raise UserError(f"comparison folder {str(out)!r} already holds results; pass --resume to continue it or "
                            f"--force to start over")
    if not out.exists():  # the folder is the command's own: it and missing folders above it are created
        from hwnas.fileio import missing_parents

        missing_parents(out, "comparison folder")


def _differences(a: dict, b: dict) -> list[str]:
    return [f"{k} was {a.get(k)!r}, now {b.get(k)!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def _open_journal(out: Path, header: dict, resume: bool) -> tuple[dict[str, dict], list[str]]:
    """Rows already finished (by key) and notes; a resumed journal must come from the same settings."""
    import json

    path = out / JOURNAL_FILE
    if not resume:
        out.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        for n in OUTPUT_FILES:
            (out / n).unlink(missing_ok=True)
        with Journal(path) as j:
            j.append({"header": header})
        return {}, []
    records, dropped = read_journal(path)
    if not records or "header" not in records[0]:
        raise UserError(f"{str(path)!r} is not a comparison journal; start over with --force")
    stored = json.loads(json.dumps(records[0]["header"]))
    diffs = _differences(stored, json.loads(json.dumps(header)))
    if diffs:
        raise UserError(f"cannot resume {str(out)!r}: it was started with other settings ({'; '.join(diffs[:3])}); "
                        f"rerun with the same options, or use another --out")
    notes = []
    if dropped:
        atomic_write_text(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in records))
        notes.append(f"{str(path)!r} ended in {dropped} unreadable line(s) (an interrupted write); kept the "
                     f"{len(records) - 1} finished row(s) before it")
    done = {r["row"]["key"]: r["row"] for r in records[1:] if isinstance(r.get("row"), dict) and "key" in r["row"]}
    return done, notes


# ---- the comparison -------------------------------------------------------------------------
def compare(config: CompareConfig | None = None, out: str | Path | None = None, resume: bool = False,
            force: bool = False, progress: bool = False, reuse: bool = False, prior_rows: Sequence[dict] = (),
            **kwargs: Any) -> CompareResult:
    """Train, score and time every baseline and found network; write the comparison folder.

    ``kwargs`` are ``CompareConfig`` fields when ``config`` is None. With ``out=None`` nothing
    is written (and nothing can be resumed). ``reuse=True`` (with ``force``, for a pipeline that
    reruns itself) keeps the finished rows of an earlier comparison in ``out`` when it ran with the
    same settings (profile, data, recipe, ...) and starts over when it did not. ``prior_rows`` are
    rows finished by an earlier comparison with the same settings (as its ``compare.json`` or
    journal holds them): each counts as done and is written to the journal first; the caller
    vouches for the settings they were trained with.
    """
    import torch

    from hwnas.accuracy.progress import progress_bar
    from hwnas.data import load_dataset
    from hwnas.space import get_space

    cfg = config if config is not None else CompareConfig(**kwargs)
    if config is not None and kwargs:
        cfg = dataclasses.replace(config, **kwargs)
    cfg.check()
    out_path = Path(out) if out is not None else None
    if out_path is not None:
        _prepare_out(out_path, resume, force)
    table, profile_sha = load_profile(cfg.profile)
    space = get_space(cfg.space) if cfg.space else table.get_space()
    input_shape = tuple(space.input_shape)
    image_size = int(input_shape[-1])
    contenders = baseline_contenders(cfg.baselines, image_size)
    search_fronts = []
    for r in cfg.runs:
        found, estimate = found_from_run(str(r), space.name, image_size, cfg.data, cfg.front)
        contenders += found
        search_fronts.append(estimate)
    contenders += found_archs(cfg.archs, space)
    names = [c.name for c in contenders]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise UserError(f"{', '.join(dup)} named twice; pass each network once")
    ds = load_dataset(cfg.data, image_size=image_size, train_limit=cfg.train_limit)
    bench = Bench(table, input_shape, cfg.protocol)
    recipe = {k: v for k, v in dataclasses.asdict(cfg.recipe(0)).items() if k not in ("seed", "device", "threads", "compile")}
    header = {"format": FORMAT, "profile_sha256": profile_sha, "backend": bench.describe(), "space": space.name,
              "image_size": image_size, "data": ds.describe(), "recipe": recipe, "int8": cfg.int8}
    jobs = [(c, seed) for seed in range(cfg.seeds) for c in contenders]

    def key(c: Contender, seed: int) -> str:
        return f"{c.name}#{seed}"

    done: dict[str, dict] = {}
    notes: list[str] = []
    continuing = resume
    if out_path is not None and resume:
        done, notes = _open_journal(out_path, header, True)
    elif out_path is not None and reuse and (out_path / JOURNAL_FILE).is_file():
        try:
            done, notes = _open_journal(out_path, header, True)
            continuing = True
        except UserError:
            pass  # a comparison with other settings (or a damaged journal): it starts over below
    here = this_machine(bench)
    if continuing and not resume and not cfg.retime and _timed_elsewhere(list(done.values()), here):
        done, notes, continuing = {}, [], False  # reused rows timed on another machine: start over, as with other settings
    fresh = _take_prior_rows(prior_rows, contenders, done)
    notes += _machine_check(list(done.values()), here, cfg.retime)
    todo = [(c, s) for c, s in jobs if key(c, s) not in done]
    # every network the backend cannot run is refused before hours of training the others
    flops: dict[str, int] = {}

    def cost(c: Contender, check: bool = False) -> int:
        if c.name not in flops:
            torch.manual_seed(0)
            model = c.build(ds.num_classes)
            flops[c.name] = model_costs(model, input_shape)[1]
            if check:
                bench.preflight(model, c.name)
        return flops[c.name]

    for c, _ in todo:
        cost(c, check=True)
    if out_path is not None and not continuing:
        _open_journal(out_path, header, False)
    resumed = sum(1 for c, s in jobs if key(c, s) in done)
    journal = Journal(out_path / JOURNAL_FILE) if out_path is not None else None
    rows_by_key = dict(done)
    if journal is not None:
        for row in fresh:
            journal.append({"row": row})
    try:
        with progress_bar(progress) as bar:
            overall = bar.add_task("compare", total=len(jobs), completed=resumed, info=f"{resumed} kept" if resumed else "")
            task = bar.add_task("train", total=1, info="")
            trainer = _Trainer(cfg, ds)
            finished = resumed
            while True:  # once, or with close_seeds until no close pair lacks seeds (a resume replays it)
                # seed by seed, the cheapest networks first: an interrupted comparison holds the most
                # rows, and every network's first seed before any second (the tables keep the order given)
                todo.sort(key=lambda cs: (cs[1], cost(cs[0])))
                for c, seed in todo:
                    bar.update(overall, info=f"{c.name} seed {seed}")
                    row = _one_row(c, seed, cfg, ds, bench, trainer, bar, task)
                    row["key"], row["timed_on"] = key(c, seed), here
                    rows_by_key[row["key"]] = row
                    if journal is not None:
                        journal.append({"row": row})  # flushed before the next network starts
                    finished += 1
                    bar.update(overall, completed=finished)
                if cfg.close_seeds is None:
                    break
                # pairs of a found network and a baseline within close_points get more seeds
                close = _close_names([rows_by_key[key(c, s)] for c, s in jobs], cfg.close_points)
                planned = {key(c, s) for c, s in jobs}
                more = [(c, s) for s in range(cfg.seeds, cfg.close_seeds) for c in contenders
                        if c.name in close and key(c, s) not in planned]
                if not more:
                    break
                jobs += more
                todo = [(c, s) for c, s in more if key(c, s) not in done]
                finished += len(more) - len(todo)
                bar.update(overall, total=len(jobs), completed=finished)
            if cfg.retime:
                _retime([rows_by_key[key(c, s)] for c, s in jobs], {c.name: c for c in contenders}, cfg.int8, ds,
                        bench, here, bar, task)
    finally:
        if journal is not None:
            journal.close()
    rows = []
    for c, s in jobs:
        row = rows_by_key[key(c, s)]
        # where an arch sits in its run is a fact of the run folder, not of the training: a row
        # kept from a comparison without --front gets its flags from the folder as it is now
        rows.append({**row, **{k: c.info[k] for k in ("front", "best", "run") if k in c.info}})
    from hwnas.compare.report import baseline_standing, mean_rows

    clean = [{k: v for k, v in r.items() if k != "key"} for r in rows]
    standing = baseline_standing(mean_rows(clean)) if any(r["kind"] == "found" for r in clean) else []
    result = CompareResult(rows, out_path, sum(1 for c, s in jobs if key(c, s) in done), notes, search_fronts,
                           _front_notes(clean, cfg.front, search_fronts)[3], standing)
    if out_path is not None:
        write_outputs(out_path, rows, header, cfg, [c.latency_budget_ms for c in contenders if c.latency_budget_ms is not None],
                      search_fronts, standing)
    return result


def this_machine(bench: Bench) -> dict:
    """The machine that times rows here: what tells two devices apart, not software versions."""
    from hwnas.latency.fingerprint import device_fingerprint

    on_gpu = "cuda" in bench.backend.lower() or "cuda" in str(bench.setup.provider).lower()
    gpu = bench.table.fingerprint.get("gpu") if on_gpu else None
    fp = device_fingerprint(gpu=gpu)
    return {k: fp[k] for k in ("cpu_model", "isa", "cores", "machine", "gpu")}


def machine_label(m: dict) -> str:
    isa = ", ".join(m.get("isa") or [])
    return f"{m.get('gpu') or m.get('cpu_model')} ({m.get('cores')} cores{', ' + isa if isa else ''})"


def _take_prior_rows(prior: Sequence[dict], contenders: Sequence[Contender], done: dict[str, dict]) -> list[dict]:
    """Add ``prior`` rows not yet in ``done`` (keyed name#seed); return those added, in order."""
    names = {c.name for c in contenders}
    fresh = []
    for r in prior:
        missing = [k for k in ("name", "kind", "seed", "top1", "latency_ms") if k not in r]
        if missing:
            raise UserError(f"a prior row ({r.get('name', 'unnamed')}) lacks {', '.join(missing)}: pass rows as "
                            f"compare.json holds them")
        if r["name"] not in names:
            raise UserError(f"prior row {r['name']!r} names no network of this comparison (its networks: "
                            f"{', '.join(sorted(names))}); leave it out or add that network")
        k = f"{r['name']}#{int(r['seed'])}"
        if k not in done:
            row = {**r, "key": k}
            done[k] = row
            fresh.append(row)
    return fresh


def _timed_elsewhere(rows: Sequence[dict], here: dict) -> list[dict]:
    from hwnas.latency.fingerprint import fingerprint_differences

    return [r for r in rows if r.get("timed_on") and fingerprint_differences(r["timed_on"], here)]


def _machine_check(rows: Sequence[dict], here: dict, retime: bool) -> list[str]:
    """Refuse to mix latencies of two machines: rows timed elsewhere need ``retime``. Returns notes."""
    from hwnas.latency.fingerprint import fingerprint_differences

    if retime:
        return []
    elsewhere = _timed_elsewhere(rows, here)
    if elsewhere:
        diffs = fingerprint_differences(elsewhere[0]["timed_on"], here)
        names = ", ".join(sorted({r["name"] for r in elsewhere})[:3]) + (", ..." if len(elsewhere) > 3 else "")
        raise UserError(f"{len(elsewhere)} finished row(s) ({names}) were timed on another machine "
                        f"({machine_label(elsewhere[0]['timed_on'])}; {diffs[0]}): pass --retime to time every row "
                        f"again on this one ({machine_label(here)}; their top-1 is kept), or resume on that machine")
    unknown = sum(1 for r in rows if not r.get("timed_on"))
    return [f"{unknown} kept row(s) do not record the machine that timed them (an older journal); --retime times "
            f"every row again here"] if unknown else []


def retime_rows(rows: Sequence[dict], contenders: Sequence[Contender], profile: str, data: str,
                train_limit: int | None = None, int8: bool = False, progress: bool = False,
                protocol: Any = None) -> dict:
    """Time finished ``rows`` (as a journal or compare.json holds them) again on this machine, in
    one sitting, in place; ``contenders`` build their networks by name. Returns the machine."""
    from hwnas.accuracy.progress import progress_bar
    from hwnas.data import load_dataset
    from hwnas.space import get_space

    table, _ = load_profile(profile)
    named = next((r["space"] for r in rows if r.get("space")), None)
    space = get_space(named) if named else table.get_space()
    ds = load_dataset(data, image_size=int(space.input_shape[-1]), train_limit=train_limit)
    bench = Bench(table, tuple(space.input_shape), protocol)
    by_name = {c.name: c for c in contenders}
    missing = sorted({r["name"] for r in rows} - set(by_name))
    if missing:
        raise UserError(f"no network to build for row(s) {', '.join(missing)}; pass the baselines and run folders "
                        f"the comparison had")
    here = this_machine(bench)
    with progress_bar(progress) as bar:
        _retime(rows, by_name, int8, ds, bench, here, bar, bar.add_task("time", total=len(rows), info=""))
    return here


def _retime(rows: Sequence[dict], by_name: dict[str, Contender], int8: bool, ds, bench: Bench, here: dict,
            bar, task) -> None:
    """Time every row again on this machine, one after another: an untrained copy of each network
    (seeded as its training was) runs the same graph, so the trained weights are not needed."""
    import numpy as np
    import torch

    bar.update(task, description="time every row here", total=len(rows), completed=0, info=machine_label(here))
    for i, row in enumerate(rows):
        c = by_name[row["name"]]
        torch.manual_seed(int(row["seed"]))
        model = c.build(ds.num_classes).to("cpu").eval()
        data = bench.onnx(model, c.name)
        row.update(bench.latency(model, data, c.name))
        if int8 and "int8_latency_ms" in row:
            from hwnas.latency.int8 import quantize_int8

            g = torch.Generator().manual_seed(int(row["seed"]))
            idx = torch.randperm(len(ds.train_y), generator=g)[:CALIBRATION_IMAGES]
            q = quantize_int8(data, ds.prepare(ds.train_x[idx]).numpy().astype(np.float32))
            row["int8_latency_ms"] = bench.int8_latency(q, c.name)
        row["timed_on"], row["retimed"] = here, True
        bar.update(task, completed=i + 1)


def _close_names(rows: Sequence[dict], points: float) -> set[str]:
    """Found networks and baselines whose mean top-1 (over the seeds so far) are within
    ``points`` of a network of the other kind."""
    from hwnas.compare.report import mean_rows

    means = [m for m in mean_rows(rows) if m.get("top1") is not None]
    found = [m for m in means if m["kind"] == "found"]
    base = [m for m in means if m["kind"] == "baseline"]
    return {n for f in found for b in base if abs(f["top1"] - b["top1"]) * 100 < points for n in (f["name"], b["name"])}


class _Trainer:
    """The shared training loop with the comparison's one recipe; the training split is made
    resident once and reused by every network."""

    def __init__(self, cfg: CompareConfig, ds) -> None:
        from hwnas.accuracy.training import training_runtime

        self.cfg, self.ds = cfg, ds
        self.rt = training_runtime(cfg.recipe(0))
        self._data = None

    def __call__(self, model, seed: int, bar, task, label: str):
        from hwnas.accuracy.training import (ResidentImages, cross_entropy_step, evaluate, make_optimizer,
                                             maybe_compile, prepare_model, train, use_threads)

        recipe = self.cfg.recipe(seed)
        with use_threads(recipe.threads):
            if self._data is None:
                self._data = ResidentImages(self.ds, "train", self.rt.device, recipe.channels_last)
            prepare_model(model, recipe, self.rt.device)
            opt = make_optimizer(model, recipe)
            step = cross_entropy_step(maybe_compile(model, recipe, self.rt.device), self.rt, recipe.label_smoothing)
            total = recipe.epochs * self._data.steps_per_epoch(recipe.batch_size)
            if recipe.max_steps is not None:
                total = min(total, recipe.max_steps)
            bar.update(task, description=f"train {label}", total=total, completed=0, info="")
            result = train(model, self._data, recipe, step, opt, self.rt, bar=bar, task=task)
            scores = evaluate(model, self.ds, "test", self.rt.device, recipe.channels_last)
        return result, scores


def _one_row(c: Contender, seed: int, cfg: CompareConfig, ds, bench: Bench, trainer: _Trainer, bar, task) -> dict:
    import numpy as np
    import torch

    torch.manual_seed(seed)
    model = c.build(ds.num_classes)
    result, scores = trainer(model, seed, bar, task, f"{c.name} seed {seed}")
    model = model.to("cpu").to(memory_format=torch.contiguous_format).eval()
    params, flops = model_costs(model, bench.input_shape)
    bar.update(task, info="measuring latency")
    data = bench.onnx(model, c.name)
    row: dict[str, Any] = {"name": c.name, "kind": c.kind, **bench.latency(model, data, c.name), "params": params,
                           "flops": flops, "model_bytes": len(data), "top1": scores.top1, "macro_f1": scores.macro_f1,
                           "per_class_f1": scores.per_class_f1, "test_images": scores.n,
                           "train_seconds": result.seconds, "epochs": cfg.epochs, "steps": result.steps, "seed": seed,
                           **c.info}
    if c.latency_budget_ms is not None:
        row["latency_budget_ms"] = c.latency_budget_ms
    if cfg.int8:
        from hwnas.exporters.measure import evaluate as ort_evaluate
        from hwnas.latency.int8 import quantize_int8

        bar.update(task, info="quantizing to INT8")
        g = torch.Generator().manual_seed(seed)
        idx = torch.randperm(len(ds.train_y), generator=g)[:CALIBRATION_IMAGES]
        int8 = quantize_int8(data, ds.prepare(ds.train_x[idx]).numpy().astype(np.float32))
        s8 = ort_evaluate(int8, ds.prepare(ds.test_x).numpy(), ds.test_y.numpy(), ds.classes)
        row.update({"int8_latency_ms": bench.int8_latency(int8, c.name), "int8_model_bytes": len(int8),
                    "int8_top1": s8.top1, "int8_macro_f1": s8.macro_f1})
    return row


def write_outputs(out: Path, rows: list[dict], header: dict, cfg: CompareConfig, budgets: Sequence[float],
                  search_fronts: Sequence[SearchFront] = (), standing: Sequence[dict] = ()) -> None:
    """``standing``: each baseline against the found networks, as ``CompareResult.standing``."""
    from hwnas.compare.report import figure_png, markdown, standing_summary

    clean = [{k: v for k, v in r.items() if k != "key"} for r in rows]
    lines, estimates, measured, verdicts = _front_notes(clean, cfg.front, search_fronts)
    atomic_write_json(out / JSON_FILE, {"format": FORMAT, "profile": str(cfg.profile), **header,
                                        "latency_budgets_ms": sorted(set(budgets)), "front": cfg.front,
                                        "search_fronts": [f.to_dict() for f in search_fronts],
                                        "verdicts": verdicts, "baselines": list(standing),
                                        "rows": clean})
    d = header["data"]
    b = header["backend"]
    title = (f"{d['spec']} ({d['train']} training images, {cfg.epochs} epoch{'s' if cfg.epochs != 1 else ''}) on {b['backend']} "
             f"({b['threads']} thread{'s' if b['threads'] != 1 else ''}, batch {b['batch']})")
    machines = {machine_label(r["timed_on"]) for r in clean if r.get("timed_on")}
    timed = (f"; timed on {', '.join(sorted(machines))}" if machines else "") + (
        ", every row again in one sitting after the training" if clean and all(r.get("retimed") for r in clean) else "")
    notes = [f"profile `{cfg.profile}`: latency in its units (end to end, the profiler's protocol){timed}",
             "top-1 and macro-F1 on the test split; every network trained with the same recipe, split and epochs",
             "(NAS): itself found by a search (MnasNet), not hand-designed", *lines,
             *(v["sentence"] for v in verdicts), *([standing_summary(standing)] if standing else [])]
    atomic_write_text(out / MD_FILE, markdown(clean, f"Comparison: {title}", notes, int8=cfg.int8, marks=cfg.front,
                                              standing=standing))
    atomic_write_bytes(out / PNG_FILE, figure_png(clean, title, budgets,
                                                  xlabel=f"latency (ms on the profile, {b['backend']})",
                                                  fronts=estimates, front_label=ESTIMATE_LABEL,
                                                  measured_fronts=measured))


ESTIMATE_LABEL = "search's estimate (its evaluator's accuracy, predicted latency)"


def _front_notes(rows: list[dict], front: bool, search_fronts: Sequence[SearchFront]):
    """compare.md's lines about each run's front, the estimated and the measured fronts to draw
    (latency, top-1 %), and whether each found network dominates the baselines."""
    from hwnas.compare.report import mean_rows, non_dominated, verdict

    means = [m for m in mean_rows(rows) if m.get("latency_ms") is not None and m.get("top1") is not None]
    lines, estimates, measured = [], [], []
    for sf in search_fronts:
        pts = [(p["latency_ms"], 100 * p["accuracy"]) for p in sf.points
               if p.get("latency_ms") is not None and p.get("accuracy") is not None]
        drawn = sf.is_accuracy and bool(pts)
        if drawn:
            estimates.append(pts)
        estimate = (f"the faint line is the search's own estimate of it ({sf.evaluator} accuracy against the profile's "
                    f"predicted latency, {len(pts)} archs)" if drawn else
                    f"the search's own estimate is not drawn ({sf.evaluator} gives ranking scores, not accuracies)"
                    if not sf.is_accuracy else "the run's pareto.json holds no front to draw")
        if front:
            mine = [m for m in means if m["kind"] == "found" and m.get("run") == sf.run and m.get("front")]
            measured.append([(m["latency_ms"], 100 * m["top1"]) for m in mine])
            lines.append(f"`{sf.run}`: its Pareto front ({len(mine)} archs of pareto.json) trained and measured here is "
                         f"the red line in compare.png (\"search's Pareto front (measured)\"); {len(non_dominated(mine))} "
                         f"of them stay non-dominated on measured latency and top-1; {estimate}")
        elif drawn:
            lines.append(f"`{sf.run}`: its best arch is trained and measured here; the faint line in compare.png is the "
                         f"search's own estimate of its Pareto front ({sf.evaluator} accuracy against the profile's "
                         f"predicted latency, {len(pts)} archs), not measured here (--front trains and measures it)")
        else:
            lines.append(f"`{sf.run}`: its best arch is trained and measured here; {estimate}; --front trains and "
                         f"measures the whole front")
    baselines = [m for m in means if m["kind"] == "baseline"]
    verdicts = []
    for m in means:
        if m["kind"] == "found" and (m.get("best") or "run" not in m) and baselines:
            ok, sentence = verdict(m, baselines)
            verdicts.append({"name": m["name"], "dominates_baselines": ok, "sentence": sentence})
    return lines, estimates, measured, verdicts
