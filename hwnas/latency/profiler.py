"""``hwnas profile``: build a latency table for a space on a backend of this machine."""

from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import Any

from hwnas.errors import UserError
from hwnas.fileio import check_output_path
from hwnas.latency.backends import ORT, Backend
from hwnas.latency.fingerprint import device_fingerprint
from hwnas.latency.profiling import ProgressFn, Task, interleave_networks, open_partial, partial_path, profile_tasks
from hwnas.latency.protocol import Protocol
from hwnas.latency.table import LatencyTable


def overhead_module():
    """The cheapest possible graph: what one inference call costs with (almost) no work in it."""
    import torch

    class Overhead(torch.nn.Module):
        def forward(self, x):
            return torch.relu(x[:, :1, :1, :1])

    return Overhead()


def sample_networks(space, n_calibrate: int, n_validate: int, seed: int) -> tuple[list, list]:
    """Distinct random archs: calibration and validation sets that never share a network."""
    from hwnas.space import as_rng

    rng = as_rng(seed)
    seen: set = set()
    archs = []
    tries = 0
    while len(archs) < n_calibrate + n_validate and tries < 100 * (n_calibrate + n_validate):
        a = space.sample(rng)
        tries += 1
        if a not in seen:
            seen.add(a)
            archs.append(a)
    return archs[:n_calibrate], archs[n_calibrate:]


CALIBRATE_ON = ("auto", "plain", "protocol")
INT8_CALIBRATION_DATA = "digits"  # embedded, so an INT8 table builds offline
INT8_CALIBRATION_IMAGES = 32


def plain_by_default(backend: Backend) -> bool:
    """Whether ``--calibrate-on auto`` fits a table on plain timings: for ONNX Runtime, FP32 and
    INT8. A line from the protocol's readings does not convert INT8 networks, and for FP32 a line
    fitted on random networks of 0.35-1.8 ms read 0.2 ms networks 24-38% low where the plain fit
    read them 1-6% low (BENCHMARKS.md); ONNX Runtime's plain sessions agree within a few percent.
    Eager torch keeps the line: its plain level moves by 10% within minutes on a shared host, and
    its table follows the protocol."""
    return isinstance(backend, ORT)


def int8_calibration_images(space, data: str | None = None, seed: int = 0, n: int = INT8_CALIBRATION_IMAGES):
    """Real training images (preprocessed, numpy, read-only) of ``data`` at ``space``'s input shape:
    what an INT8 table's whole networks are calibrated on, as the export calibrates the file it
    ships. Kept per (shape, data, seed, n): every measurement in an INT8 table's units rebuilds the
    table's backend (``units.backend_of``), and would otherwise load the dataset again each time."""
    return _calibration_images(tuple(space.input_shape), space.name, data or INT8_CALIBRATION_DATA, seed, n)


@functools.lru_cache(maxsize=8)
def _calibration_images(shape: tuple[int, ...], space_name: str, spec: str, seed: int, n: int):
    import torch

    from hwnas.data import load_dataset

    ds = load_dataset(spec, image_size=shape[1])
    idx = torch.randperm(len(ds.train_y), generator=torch.Generator().manual_seed(seed))[:n]
    images = ds.prepare(ds.train_x[idx]).numpy()
    if tuple(images.shape[1:]) != shape:
        raise UserError(f"--calibration-data {spec} gives images of shape {tuple(images.shape[1:])}, the space "
                        f"{space_name} takes {shape}; name a dataset of that shape")
    images.flags.writeable = False
    return images


def int8_record(data: str | None, seed: int) -> dict[str, Any]:
    """What an INT8 table (or bundle) records of how it was quantized."""
    return {"calibration_data": data or INT8_CALIBRATION_DATA, "images": INT8_CALIBRATION_IMAGES, "seed": seed,
            "blocks": "seeded normal noise of each block's input shape"}


def with_backend_pairing(protocol: Protocol, backend: Backend) -> Protocol:
    """``protocol`` with the backend's pairing cadence and, for each setting the caller left at
    ``Protocol()``'s default, the backend's own default (eager torch: one session)."""
    import dataclasses

    default = Protocol()
    tuned = {k: v for k, v in backend.protocol_defaults.items() if getattr(protocol, k) == getattr(default, k)}
    return dataclasses.replace(protocol, pair_every=backend.pair_every, **tuned)


def reference_arch(space):
    """The fixed network every measurement is paired with: the first choice of every decision
    (a small but complete network of the space, so pairing costs little)."""
    return space.decode([0] * len(space.decisions()))


def reference_task(space, backend: Backend) -> Task:
    """What ``backend`` pairs every timed call with: the space's reference network, or its
    reference block where the backend asks for one and the space defines it."""
    block = space.reference_block() if backend.reference == "block" else None
    if block is not None:
        return Task("reference", block.key, lambda: backend.sessions(space.build_block(block), block.input_shape, 1),
                    {"block": block.to_dict()})
    arch = reference_arch(space)
    return Task("reference", arch.id, lambda: backend.sessions(space.build(arch), space.input_shape, 1),
                {"arch": arch.to_dict()})


def network_task(kind: str, space, arch, backend: Backend, seed: int = 0) -> Task:
    return Task(kind, arch.id, lambda: backend.sessions(space.build(arch), space.input_shape, seed),
                {"arch": arch.to_dict(), "terms": [b.key for b in space.latency_terms(arch)]})


def space_header(space) -> dict[str, Any]:
    from hwnas.space.ref import SpaceRef

    return SpaceRef.of(space).table_record()


def build_tasks(space, backend: Backend, n_calibrate: int, n_validate: int, seed: int) -> list[Task]:
    """The overhead, then every block and network in a seeded random order, networks spread
    evenly among the blocks.

    In space order, the blocks of one stage are timed within the same few seconds, so a slow
    stretch of the host shifts them all alike and their errors add up in every network that
    uses that stage; shuffled, errors of the blocks of one network are independent and largely
    cancel. Spreading the calibration networks over the whole build lets the calibration see
    the same conditions the blocks were timed in.
    """
    import random

    from hwnas.latency.backends import activation_mb

    blocks = [Task("block", b.key, (lambda b=b: backend.sessions(space.build_block(b), b.input_shape)),
                   {"op": b.op, "input_shape": list(b.input_shape), "params": dict(b.params),
                    "act_mb": activation_mb(space.build_block(b), b.input_shape)})
              for b in space.all_latency_terms()]
    random.Random(seed).shuffle(blocks)
    calib, valid = sample_networks(space, n_calibrate, n_validate, seed)
    networks = interleave_networks([network_task("calibration", space, a, backend) for a in calib],
                                   [network_task("validation", space, a, backend) for a in valid])
    tasks = [Task("overhead", "overhead", lambda: backend.sessions(overhead_module(), space.input_shape))]
    every = max(1, len(blocks) // max(1, len(networks)))
    for i, b in enumerate(blocks):
        tasks.append(b)
        if (i + 1) % every == 0 and networks:
            tasks.append(networks.pop(0))
    return tasks + networks


def profile(space, backend: Backend, out: str | Path, *, n_calibrate: int | None = None, n_validate: int = 20, seed: int = 0,
            protocol: Protocol = Protocol(), force: bool = False, on_progress: ProgressFn | None = None,
            paired: bool | None = None, plain_units_step: bool = True,
            calibration_data: str | None = None, plain_sessions: int | None = None,
            calibrate_on: str = "auto") -> LatencyTable:
    """Measure every block of ``space`` on ``backend``, calibrate, validate, time the reference and
    a few calibration networks with a plain loop (the table's ``units``), write ``out`` atomically.

    ``calibrate_on``: ``protocol`` fits the calibration on the protocol's readings of whole
    networks and converts to plain milliseconds by a line (``units``); ``plain`` times every
    calibration and validation network plainly and fits on that (``plain_calibration``); ``auto``
    (the default) is ``plain`` for ONNX Runtime tables (``plain_by_default``), else ``protocol``.

    On an INT8 backend (``backend.dtype``) every block and network is timed as the export's INT8
    file, whole networks calibrated on real images of ``calibration_data`` (default: digits).
    An unfinished run with the same settings resumes from ``out``'s ``.partial.jsonl`` journal.
    """
    check_output_path(out, force=force, what="table")
    if calibrate_on not in CALIBRATE_ON:
        raise UserError(f"--calibrate-on must be one of {', '.join(CALIBRATE_ON)}, got {calibrate_on!r}")
    if n_calibrate is None:
        n_calibrate = space.calibration_networks
    if n_calibrate < 2:
        raise UserError("--calibrate must be at least 2 (the calibration fits a scale and an offset)")
    if n_validate < 0:
        raise UserError("--validate must be 0 or more")
    fingerprint = device_fingerprint(gpu=backend.gpu_name())
    paired = backend.paired if paired is None else paired
    protocol = with_backend_pairing(protocol, backend)
    reference = reference_task(space, backend) if paired else None
    header = {"space": space_header(space), "backend": backend.describe(), "protocol": protocol.to_dict(),
              "calibrate": n_calibrate, "validate": n_validate, "seed": seed, "paired": paired}
    if reference is not None and "block" in reference.info:
        header["reference"] = reference.key  # absent for a reference network, as in older journals
    int8 = None
    if backend.dtype == "int8":
        int8 = int8_record(calibration_data, seed)
        backend.calibration_images = int8_calibration_images(space, int8["calibration_data"], seed)
        header["int8"] = int8  # absent for float32, as in older journals
    # other settings than an unfinished run's are refused now, not after building every block
    open_partial(partial_path(out), header, fresh=force)
    tasks = build_tasks(space, backend, n_calibrate, n_validate, seed)
    table = profile_tasks(tasks, header=header, space=space_header(space), backend=backend.describe(),
                          fingerprint=fingerprint, protocol=protocol, out=out, fresh=False, on_progress=on_progress,
                          reference=reference)
    if int8 is not None:
        table.extra["int8"] = int8
    if plain_units_step and paired:
        # latency_ms means a plain loop's median: fit on plain timings of the networks, or time
        # the reference and a few calibration networks that way and record the conversion
        t0 = time.perf_counter()
        if calibrate_on == "plain" or (calibrate_on == "auto" and plain_by_default(backend)):
            from hwnas.latency.plain_calibration import PLAIN_CALIBRATION_SESSIONS, calibrate_on_plain

            calibrate_on_plain(table, backend, sessions=plain_sessions or PLAIN_CALIBRATION_SESSIONS, on_progress=on_progress)
        else:
            from hwnas.latency.units import CHECK_SESSIONS, plain_units

            if on_progress:
                on_progress("plain", 0, 1)
            table.extra["units"] = plain_units(table, sessions=plain_sessions or CHECK_SESSIONS)
            if on_progress:
                on_progress("plain", 1, 1)
        table.build_seconds = round(table.build_seconds + time.perf_counter() - t0, 2)  # the plain timing too
    table.save(out)
    partial_path(out).unlink(missing_ok=True)
    return table


def measure_archs(space, backend: Backend, archs, protocol: Protocol = Protocol(), on_progress=None,
                  paired: bool | None = None) -> list[dict]:
    """End-to-end latency of whole networks with the profiler's protocol (paired with the
    backend's reference, all rescaled to the reference's fastest time in this run)."""
    from hwnas.latency.profiling import rescale_to_reference
    from hwnas.latency.protocol import fastest_session, measure_with_retry

    paired = backend.paired if paired is None else paired
    protocol = with_backend_pairing(protocol, backend)
    ref = fastest_session(reference_task(space, backend).prepare(), protocol) if paired else None
    rows = []
    for i, arch in enumerate(archs):
        m, noisy = measure_with_retry(backend.sessions(space.build(arch), space.input_shape), protocol, ref)
        rows.append({"id": arch.id, **m.to_dict(), "noisy": noisy})
        if on_progress:
            on_progress("measure", i + 1, len(archs))
    rescale_to_reference({(r["id"], str(i)): r for i, r in enumerate(rows)})
    for r in rows:
        r["measured_ms"] = r["latency_ms"]
    return rows
