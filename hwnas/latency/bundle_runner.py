"""Time a profile bundle on this device: numpy and onnxruntime only, no torch.

    python -m hwnas.latency.bundle_runner BUNDLE_DIR --out table.json [--provider P] [--threads T]

does what ``hwnas profile run-bundle`` does, for devices where only these two libraries (and
this package's pure-Python files) are installed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hwnas.errors import UserError
from hwnas.fileio import check_output_path, read_json
from hwnas.latency.fingerprint import device_fingerprint
from hwnas.latency.ort_runner import check_provider, ort_runner
from hwnas.latency.profiling import ProgressFn, Task, interleave_networks, partial_path, profile_tasks
from hwnas.latency.protocol import Protocol, clock_for
from hwnas.latency.table import LatencyTable

BUNDLE_SCHEMA = "hwnas.profile-bundle"
BUNDLE_VERSION = 1


def read_manifest(bundle: str | Path) -> dict:
    d = Path(bundle)
    mpath = d / "manifest.json"
    if not mpath.is_file():
        raise UserError(f"{str(d)!r} is not a profile bundle (no manifest.json); make one with `hwnas profile bundle`")
    manifest = read_json(mpath, "bundle manifest")
    if not isinstance(manifest, dict) or manifest.get("schema") != BUNDLE_SCHEMA:
        raise UserError(f"{str(mpath)!r} is not an hwnas profile bundle manifest")
    for key in ("space", "batch", "overhead", "blocks", "calibration", "validation"):
        if key not in manifest:
            raise UserError(f"bundle manifest {str(mpath)!r} is missing {key!r}; make the bundle again")
    missing = [e["file"] for e in [manifest["overhead"], *manifest["blocks"], *manifest["calibration"], *manifest["validation"]]
               if not (d / e["file"]).is_file()]
    if missing:
        raise UserError(f"bundle {str(d)!r} is incomplete: {len(missing)} ONNX file(s) missing, e.g. {missing[0]}; copy the whole folder")
    return manifest


def run_bundle(bundle: str | Path, out: str | Path, *, provider: str = "CPUExecutionProvider", threads: int = 1,
               clock: str = "auto", protocol: Protocol = Protocol(), force: bool = False,
               on_progress: ProgressFn | None = None) -> LatencyTable:
    if threads < 1:
        raise UserError(f"--threads must be a positive integer, got {threads}")
    check_output_path(out, force=force, what="table")
    manifest = read_manifest(bundle)
    check_provider(provider)
    d = Path(bundle)
    batch = int(manifest["batch"])
    clock = clock_for(threads, provider == "CPUExecutionProvider", clock)
    backend = {"name": "ort-cpu" if provider == "CPUExecutionProvider" else "ort", "provider": provider,
               "threads": threads, "batch": batch, "dtype": manifest.get("dtype", "float32"), "clock": clock}

    def runner(entry: dict, shape: list[int]):
        model = d / entry["file"]
        return lambda: (lambda: ort_runner(model, shape, provider, threads, 0, clock))

    tasks = [Task("overhead", "overhead", runner(manifest["overhead"], manifest["overhead"]["input_shape"]))]
    for b in manifest["blocks"]:
        tasks.append(Task("block", b["key"], runner(b, [batch, *b["input_shape"]]),
                          {"op": b["op"], "input_shape": b["input_shape"], "params": b.get("params", {}),
                           "act_mb": b.get("act_mb")}))
    net_shape = [batch, *manifest["overhead"]["input_shape"][1:]]
    nets = {kind: [Task(kind, n["id"], runner(n, net_shape), {"arch": n["arch"], "terms": n["terms"]})
                   for n in manifest[kind]] for kind in ("calibration", "validation")}
    tasks += interleave_networks(nets["calibration"], nets["validation"])
    header = {"space": manifest["space"], "backend": backend, "protocol": protocol.to_dict(),
              "bundle": str(d.resolve().name), "calibrate": len(nets["calibration"]), "validate": len(nets["validation"])}
    table = profile_tasks(tasks, header=header, space=manifest["space"], backend=backend,
                          fingerprint=device_fingerprint(), protocol=protocol, out=out, fresh=force,
                          on_progress=on_progress)
    if manifest.get("int8"):
        table.extra["int8"] = manifest["int8"]  # how the bundle's INT8 files were quantized
    # calibrated on plain timings (plain_calibration.py), FP32 and INT8, as `hwnas profile` does
    # for ONNX Runtime (profiler.plain_by_default)
    _calibrate_on_plain(table, d, manifest, net_shape, provider, threads, on_progress)
    table.save(out)
    partial_path(out).unlink(missing_ok=True)
    return table


def _plain_jobs(d: Path, nets: list[dict], shape: list[int], provider: str, threads: int) -> list[dict]:
    """Plain-timing jobs (``plain.run_plain``) for the bundle's network files ``nets``."""
    return [{"kind": "onnx", "path": str(d / n["file"]), "shape": shape, "provider": provider, "threads": threads}
            for n in nets]


def _calibrate_on_plain(table: LatencyTable, d: Path, manifest: dict, shape: list[int], provider: str, threads: int,
                        on_progress: ProgressFn | None) -> None:
    """Refit a bundle's table on plain timings of all its calibration and validation files."""
    from hwnas.latency.plain import run_plain
    from hwnas.latency.plain_calibration import PLAIN_CALIBRATION_SESSIONS, refit_on_plain

    by_id = {n["id"]: n for kind in ("calibration", "validation") for n in manifest[kind]}
    nets = [by_id[r["id"]] for r in (table.calibration.get("networks") or []) + (table.validation.get("networks") or [])]
    times = run_plain(_plain_jobs(d, nets, shape, provider, threads), sessions=PLAIN_CALIBRATION_SESSIONS,
                      on_session=(lambda k, n: on_progress("plain", k, n)) if on_progress else None)
    refit_on_plain(table, [n["terms"] for n in nets], times, PLAIN_CALIBRATION_SESSIONS)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m hwnas.latency.bundle_runner", description=__doc__.splitlines()[0])
    ap.add_argument("bundle")
    ap.add_argument("--out", required=True)
    ap.add_argument("--provider", default="CPUExecutionProvider")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--force", action="store_true")
    args = ap.parse_args(argv)

    def progress(phase: str, done: int, total: int) -> None:
        print(f"\r{phase}: {done}/{total}", end="", file=sys.stderr, flush=True)

    try:
        table = run_bundle(args.bundle, args.out, provider=args.provider, threads=args.threads, force=args.force,
                           on_progress=progress)
    except UserError as e:
        print(f"\nerror: {e}", file=sys.stderr)
        return 2
    v = table.validation
    print(f"\nwrote {args.out}: {len(table.entries)} entries; validation n={v.get('n')} "
          f"within 10%={v.get('within_10pct', float('nan')):.0%} kendall tau={v.get('kendall_tau', float('nan')):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
