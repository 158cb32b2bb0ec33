"""Profile bundles for devices without torch.

On the host, ``write_bundle`` exports every table entry, the call-overhead probe and the
calibration and validation networks as ONNX files with a manifest. On the device,
``hwnas profile run-bundle`` (or ``python -m hwnas.latency.bundle_runner``) times them with
numpy and onnxruntime only and writes the same table format as ``hwnas profile``.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from hwnas.errors import UserError
from hwnas.fileio import atomic_write_bytes, atomic_write_json, make_parents, remove_folders
from hwnas.latency.backends import activation_mb, check_dtype, timing_onnx
from hwnas.latency.bundle_runner import BUNDLE_SCHEMA, BUNDLE_VERSION
from hwnas.latency.profiler import int8_calibration_images, int8_record, overhead_module, sample_networks, space_header


def write_bundle(space, out_dir: str | Path, *, batch: int = 1, n_calibrate: int | None = None, n_validate: int = 20,
                 seed: int = 0, force: bool = False, on_progress=None, dtype: str = "float32",
                 calibration_data: str | None = None) -> Path:
    """Write the bundle into ``out_dir`` (built in a temp folder beside it, then renamed). With
    ``dtype="int8"`` every file is the export's INT8 form (``backends.timing_onnx``), whole networks
    calibrated on real images of ``calibration_data`` (default: digits); the device then times INT8
    as it will run it."""
    check_dtype(dtype, "ort")
    images = int8_calibration_images(space, calibration_data, seed) if dtype == "int8" else None
    out = Path(out_dir)
    parent = out.parent if str(out.parent) else Path(".")
    if out.exists() and not force:
        raise UserError(f"bundle folder {str(out)!r} already exists; pass --force to replace it")
    if batch < 1:
        raise UserError(f"--batch must be a positive integer, got {batch}")
    created = make_parents(out, "bundle folder")  # the bundle is a folder the command owns
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=parent))
    except BaseException:
        remove_folders(created)
        raise
    try:
        (tmp / "blocks").mkdir()
        (tmp / "networks").mkdir()
        blocks = space.all_latency_terms()
        if n_calibrate is None:
            n_calibrate = space.calibration_networks
        calib, valid = sample_networks(space, n_calibrate, n_validate, seed)
        total = len(blocks) + len(calib) + len(valid) + 1
        done = 0

        def emit(module, input_shape, rel: str) -> str:
            nonlocal done
            atomic_write_bytes(tmp / rel, timing_onnx(module, input_shape, batch=batch, dtype=dtype,
                                                      images=images, seed=seed))
            done += 1
            if on_progress:
                on_progress("export", done, total)
            return rel

        manifest = {
            "schema": BUNDLE_SCHEMA,
            "schema_version": BUNDLE_VERSION,
            "space": space_header(space),
            "batch": batch,
            "dtype": dtype,
            "seed": seed,
            "overhead": {"file": emit(overhead_module(), space.input_shape, "overhead.onnx"),
                         "input_shape": [batch, *space.input_shape]},
            "blocks": [],
            "calibration": [],
            "validation": [],
        }
        if dtype == "int8":
            manifest["int8"] = int8_record(calibration_data, seed)
        for i, b in enumerate(blocks):
            module = space.build_block(b)
            manifest["blocks"].append({
                "key": b.key, "op": b.op, "input_shape": list(b.input_shape), "params": dict(b.params),
                "act_mb": activation_mb(module, b.input_shape),
                "file": emit(module, b.input_shape, f"blocks/{i:04d}.onnx"),
            })
        for kind, archs in (("calibration", calib), ("validation", valid)):
            for i, a in enumerate(archs):
                manifest[kind].append({
                    "id": a.id, "arch": a.to_dict(), "terms": [t.key for t in space.latency_terms(a)],
                    "file": emit(space.build(a), space.input_shape, f"networks/{kind}_{i:03d}.onnx"),
                })
        atomic_write_json(tmp / "manifest.json", manifest)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        remove_folders(created)
        raise
    return out
