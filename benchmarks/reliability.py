"""SIGKILL at random points of the long commands, then resume: is anything finished lost, and does
the resumed result equal an uninterrupted run's?

SIGKILL is the hard case (a crash, an out-of-memory kill, a pulled plug): nothing runs on the way
out, so only what was written atomically or flushed before counts. For each command the sweep
runs it once uninterrupted, then K times killed after a random delay (each kill point drawn from
a seeded generator within the command's running time) and resumed, as often as needed, until it
finishes. A kill point is drawn in units of the command's own progress (journal lines, finished
epochs, measurements), from a seeded generator, plus up to one unit's time, so that kills land
throughout the work, not mostly in its start-up or its last writes; then it compares:

- ``search`` (NAS-Bench-201 table, evolution): the resumed journal equals the uninterrupted one,
  line for line; the records already journaled at the kill are all in it.
- ``train-supernet`` (digits, a small space): the final checkpoint's weights equal the
  uninterrupted run's, tensor for tensor (the loop resumes exactly from its last checkpoint).
- ``profile`` (nb201, eager torch, 8 calibration networks): the measurements kept at the kill are all in the
  final table's build (none re-measured), the table is complete and loads. Timings themselves
  differ run to run, so they are not compared.

- ``export`` (the chain profile -> train-supernet -> search on a tiny space and digits, built
  once): export has no resume, a rerun redoes it; at each kill every file in the output folder
  is complete under its real name or absent (unfinished atomic writes only as ``.NAME.*.tmp``),
  the run folder it reads is unchanged, and the rerun's ONNX files equal the uninterrupted
  export's byte for byte but for the metadata that records measured latencies. Kill points are drawn in
  time, uniformly over the uninterrupted run's length.

Damaged-input cases are in tests/test_fuzz_inputs.py.

    python benchmarks/reliability.py --kills 5 --json benchmarks/results/reliability.json
    python benchmarks/reliability.py --commands search --kills 3        # the quick one

Prints one table row per command: kill points tried, how many held, what was checked.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TINY = {"strides": [1, 2], "widths": [[8, 16], [16]], "se": [False, True], "acts": ["relu", "hswish"],
        "depths": [1, 2], "kernels": [3], "expands": [3], "stem_channels": 8, "head_channels": 32, "image_size": 8}


def hwnas(args: list[str], cwd: Path, env: dict | None = None) -> subprocess.Popen:
    """``hwnas ARGS`` as a child process of its own group (so that a kill reaches its children)."""
    e = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.Popen([sys.executable, "-m", "hwnas.cli", *args], cwd=cwd, env=e, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def run_to_end(args: list[str], cwd: Path, timeout: float = 900) -> tuple[int, float, str]:
    t = time.perf_counter()
    p = hwnas(args, cwd)
    _, err = p.communicate(timeout=timeout)
    return p.returncode, time.perf_counter() - t, err


def kill_after(args: list[str], cwd: Path, delay: float, timeout: float = 900) -> tuple[bool, str]:
    """Start, SIGKILL the whole group after ``delay`` s; True if it was still running then."""
    p = hwnas(args, cwd)
    try:
        p.wait(timeout=delay)
        return False, p.stderr.read() if p.stderr else ""
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait(timeout=timeout)
        return True, ""


def progress_of(name: str, out: Path) -> int:
    """How far a command has got, from what it has written: journal lines (search), finished
    epochs in the checkpoint (train-supernet), measurements in the partial file (profile)."""
    try:
        if name == "export":
            return 0  # no unit of progress on disk: its kill points are drawn in time
        if name == "search":
            p = out / "journal.jsonl"
            return len(p.read_text().splitlines()) if p.is_file() else 0
        if name == "train-supernet":
            if not out.is_file():
                return 0
            from hwnas.accuracy.supernet.checkpoint import load_checkpoint

            return int(load_checkpoint(out)[0].get("epoch", 0))
        partial = out.with_name(out.name + ".partial.jsonl")
        if partial.is_file():
            return max(len(partial.read_text().splitlines()) - 1, 0)
        return 10**9 if out.is_file() else 0
    except Exception:  # caught mid-write (the files are replaced atomically, but a read can race a rename)
        return 0


def timed_run(name: str, args: list[str], out: Path, cwd: Path) -> tuple[int, float, int]:
    """The uninterrupted run, watched: exit code, seconds, and the progress it reached (its last
    reading before the end, i.e. the units a kill point is drawn from)."""
    t = time.perf_counter()
    p = hwnas(args, cwd)
    last = 0
    while p.poll() is None:
        now = progress_of(name, out)
        if now < 10**9:  # not yet the finished table (profile), whose reading stands for "done"
            last = max(last, now)
        time.sleep(0.1)
    return p.returncode, time.perf_counter() - t, last


def kill_at(name: str, args: list[str], out: Path, cwd: Path, target: int, extra_s: float, limit_s: float) -> bool:
    """Start, wait until the command's progress reaches ``target``, wait ``extra_s`` more, then
    SIGKILL the whole group; True if it was still running then."""
    p = hwnas(args, cwd)
    t = time.perf_counter()
    while p.poll() is None and progress_of(name, out) < target and time.perf_counter() - t < limit_s:
        time.sleep(0.05)
    if p.poll() is None and extra_s > 0:
        try:
            p.wait(timeout=extra_s)
        except subprocess.TimeoutExpired:
            pass
    if p.poll() is not None:
        return False
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    return True


def nb201_csv() -> Path:
    base = Path(os.environ.get("HWNAS_SHARED_DATA", ROOT.parent / "shared" / "data"))
    return base / "nb201" / "nb201_acc_latency.csv"


# ---- one command each -----------------------------------------------------------------------
def search_case(work: Path, evals: int = 400):
    csv = nb201_csv()
    if not csv.is_file():
        return None

    def args(out: str, resume: bool = False) -> list[str]:
        a = ["search", "--space", "nb201", "--profile", f"table:{csv}#lat_pixel3", "--latency-ms", "10",
             "--evaluator", f"table:{csv}#c10_test", "--budget-evals", str(evals), "--seed", "2", "--out", out]
        return a + (["--resume"] if resume else ["--force"])

    def journal(folder: Path) -> list[str]:
        p = folder / "journal.jsonl"
        return p.read_text().splitlines() if p.is_file() else []

    def check(ref: Path, got: Path, kept: list[str]) -> str | None:
        want, have = journal(ref), journal(got)
        if have != want:
            return f"journal differs from the uninterrupted run's ({len(have)} vs {len(want)} lines)"
        if [ln for ln in kept if ln.strip() and ln not in want[:len(kept)]]:
            return "a record journaled before the kill was lost or changed"
        return None

    return args, journal, check, "journal equal, line for line"


def supernet_case(work: Path, epochs: int = 3):
    def args(out: str, resume: bool = False) -> list[str]:
        a = ["train-supernet", "--space", "mbv3-32", "--space-settings", json.dumps(TINY), "--data", "digits",
             "--epochs", str(epochs), "--train-limit", "512", "--threads", "1", "--no-progress", "--out", out]
        return a + (["--resume"] if resume else ["--force"])

    def state(path: Path) -> list[str]:
        return [path.name] if path.is_file() else []

    def check(ref: Path, got: Path, kept: list[str]) -> str | None:
        import torch

        from hwnas.accuracy.supernet.checkpoint import load_checkpoint

        _, a, _ = load_checkpoint(ref)
        meta, b, _ = load_checkpoint(got)
        if not meta.get("done"):
            return "the resumed run did not finish"
        if a.keys() != b.keys() or any(not torch.equal(a[k], b[k]) for k in a):
            return "final weights differ from the uninterrupted run's"
        return None

    return args, state, check, "final weights equal, tensor for tensor"


def profile_case(work: Path):
    def args(out: str, resume: bool = False) -> list[str]:
        return ["profile", "--space", "nb201", "--backend", "torch-cpu", "--calibrate", "8", "--validate", "2",
                "--out", out] + ([] if resume else ["--force"])

    def kept(path: Path) -> list[str]:
        partial = path.with_name(path.name + ".partial.jsonl")
        return partial.read_text().splitlines()[1:] if partial.is_file() else []

    def check(ref: Path, got: Path, kept_lines: list[str]) -> str | None:
        from hwnas.latency import load_table

        table = load_table(got)
        if len(table.entries) != len(load_table(ref).entries):
            return "the resumed table lacks entries"
        return None

    return args, kept, check, "table complete, kept measurements reused"


def export_case(work: Path):
    """A real chain to export from (profile -> train-supernet -> search, on the tiny space and
    digits), built once; export has no resume, so "resume" is the same command again."""
    run = work / "export-run"
    if not (run / "best.json").is_file():
        prof, sn = work / "export-profile.json", work / "export-supernet.pt"
        tiny = ["--space", "mbv3-32", "--space-settings", json.dumps(TINY)]
        for step in (["profile", *tiny, "--backend", "ort-cpu", "--calibrate", "4", "--validate", "0", "--out", str(prof), "--force"],
                     ["train-supernet", *tiny, "--data", "digits", "--epochs", "2", "--train-limit", "512", "--threads", "1",
                      "--no-progress", "--out", str(sn), "--force"],
                     ["search", *tiny, "--profile", str(prof), "--evaluator", f"supernet:{sn}", "--budget-evals", "12",
                      "--seed", "0", "--out", str(run), "--force"]):
            code, _, err = run_to_end(step, work)
            if code != 0:
                raise SystemExit(f"export: setting up its run folder failed at `hwnas {step[0]}`: {err.strip()[-300:]}")
    before = _digest_tree(run)

    def args(out: str, resume: bool = False) -> list[str]:
        Path(out).mkdir(exist_ok=True)  # export writes files into a folder that exists
        return ["export", str(run), "--out", str(Path(out) / "model.onnx"), "--finetune-epochs", "1",
                "--calibration", "minmax", "--int8-weights", "8", "--calibration-images", "128",
                "--no-check-profile", "--seed", "0", "--force"]

    def observe(out: Path) -> list[str]:
        """What the killed export left, file by file: complete ('ok:NAME'), or not ('bad:NAME: why')."""
        import onnx

        seen = []
        for f in sorted(out.iterdir()) if out.is_dir() else []:
            try:
                if f.name.endswith(".tmp"):
                    seen.append(f"tmp:{f.name}")  # an unfinished atomic write: never under the real name
                    continue
                if f.suffix == ".onnx":
                    onnx.checker.check_model(onnx.load(str(f)))
                elif f.suffix == ".json":
                    json.loads(f.read_text())
                elif not f.read_bytes():
                    raise ValueError("empty")
                seen.append(f"ok:{f.name}")
            except Exception as e:  # noqa: BLE001 - any failure to read is what is being looked for
                seen.append(f"bad:{f.name}: {type(e).__name__}")
        return seen

    def check(ref: Path, got: Path, kept: list[str]) -> str | None:
        bad = [k for k in kept if k.startswith("bad:")]
        if bad:
            return f"a half-written file under its real name at the kill: {bad}"
        if _digest_tree(run) != before:
            return "the run folder exported from changed"
        for name in ("model.onnx", "model.fp32.onnx"):
            if _graph_bytes(got / name) != _graph_bytes(ref / name):
                return f"{name} differs from the uninterrupted export's"
        a, b = (json.loads((d / "report.json").read_text()) for d in (ref, got))
        if (a.get("int8") or {}).get("top1") != (b.get("int8") or {}).get("top1") or a.get("deployed") != b.get("deployed"):
            return "the report's accuracy or deployed form differs from the uninterrupted export's"
        return None

    return args, observe, check, "files complete or absent at the kill; the rerun's ONNX files equal but for measured latencies"


def _graph_bytes(path: Path) -> bytes:
    """An ONNX file as bytes, less the metadata that records timings (measured again each run)."""
    import onnx

    m = onnx.load(str(path))
    kept = [(p.key, p.value) for p in m.metadata_props if p.key not in MEASURED_METADATA]
    del m.metadata_props[:]
    for k, v in kept:
        m.metadata_props.add(key=k, value=v)
    return m.SerializeToString()


MEASURED_METADATA = ("hwnas.latency_ms", "hwnas.deploy")


def _digest_tree(folder: Path) -> dict[str, str]:
    import hashlib

    return {str(f.relative_to(folder)): hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(folder.rglob("*")) if f.is_file()}


CASES = {"search": search_case, "train-supernet": supernet_case, "profile": profile_case, "export": export_case}


def sweep(name: str, kills: int, seed: int, work: Path) -> dict:
    made = CASES[name](work)
    if made is None:
        return {"command": name, "skipped": "shared data not found"}
    args, observe, check, what = made
    ext = {"train-supernet": ".pt", "profile": ".json"}.get(name, "")  # search and export: a folder
    ref = work / f"{name}-ref{ext}"
    run_to_end(args(str(work / f"{name}-warm{ext}")), work)  # first-run costs (caches, compiled files) out of the way
    code, seconds, total = timed_run(name, args(str(ref)), ref, work)
    if code != 0:
        raise SystemExit(f"{name}: the uninterrupted run failed (exit {code})")
    rng = random.Random(seed)
    unit_s = seconds / max(total, 1)
    points = []
    for k in range(kills):
        out = work / f"{name}-kill{k}{ext}"
        # a kill point: after a random share of the work's units, plus up to one unit's time
        target = rng.randint(0, max(total - 1, 0))
        extra = rng.uniform(0, unit_s)
        delay = target * unit_s + extra
        killed = kill_at(name, args(str(out)), out, work, target, extra, 3 * seconds + 30)
        was_killed = killed
        kept = observe(out)
        resumes = 0
        while killed and resumes < 3:  # killed again during the resume now and then: it must still hold
            if name == "profile" and out.is_file() and not out.with_name(out.name + ".partial.jsonl").exists():
                killed = False  # killed after the table was written (printing its validation): it had finished
                continue
            resumes += 1
            again = rng.random() < 0.3
            if again:
                killed, _ = kill_after(args(str(out), resume=True), work, rng.uniform(0.2, 0.8) * seconds)
                continue
            started = out.exists() or out.with_name(out.name + ".partial.jsonl").exists()
            code, _, err = run_to_end(args(str(out), resume=started), work)  # killed before writing: start again
            if code != 0:
                points.append({"delay_s": round(delay, 2), "progress_target": target, "of": total, "killed": was_killed,
                               "kept_at_kill": len(kept), "resumes": resumes, "held": False,
                               "why": f"resume failed: {err.strip()[-300:]}"})
                break
            killed = False
        else:
            if killed:  # three kills in a row: finish it
                started = out.exists() or out.with_name(out.name + ".partial.jsonl").exists()
                run_to_end(args(str(out), resume=started), work)
            why = check(ref, out, kept)
            points.append({"delay_s": round(delay, 2), "progress_target": target, "of": total, "killed": was_killed,
                           "kept_at_kill": len(kept), "resumes": resumes, "held": why is None, "why": why,
                           **({"left_at_kill": kept} if name == "export" else {})})
    return {"command": name, "uninterrupted_s": round(seconds, 1), "progress_units": total, "kills": kills,
            "held": sum(p["held"] for p in points), "checked": what, "points": points}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--commands", default=",".join(CASES))
    ap.add_argument("--kills", type=int, default=5, help="kill points per command")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="hwnas_reliability_") as tmp:
        for name in args.commands.split(","):
            r = sweep(name, args.kills, args.seed, Path(tmp))
            rows.append(r)
            if "skipped" in r:
                print(f"{name}: skipped ({r['skipped']})", flush=True)
                continue
            print(f"{name}: {r['held']}/{r['kills']} kill points held ({r['checked']}; uninterrupted {r['uninterrupted_s']} s)",
                  flush=True)
            for p in r["points"]:
                if not p["held"]:
                    print(f"  kill at {p['delay_s']} s: {p['why']}", flush=True)
    print("\n| command | kill points | held | checked |\n|---|---|---|---|")
    for r in rows:
        if "skipped" not in r:
            print(f"| {r['command']} | {r['kills']} | {r['held']} | {r['checked']} |")
    if args.json:
        import platform

        args.json.write_text(json.dumps({"machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()},
                                         "seed": args.seed, "rows": rows}, indent=1))
    return 0 if all(r.get("held", 0) == r.get("kills", 0) for r in rows if "skipped" not in r) else 1


if __name__ == "__main__":
    sys.exit(main())
