"""Ray underneath a parallel search (``hwnas/search/parallel.py``): whether Ray is installed,
whether a ``--ray-address`` answers (one line within seconds), and the pool of workers, one Ray
actor each, pinned to its share of the cores, that evaluate candidates for ``drive_parallel``.

Ray is imported only inside these functions: importing this module costs nothing without it.
"""

from __future__ import annotations

import os
import socket
import time
from collections import deque
from typing import Any, Optional

from hwnas.errors import UserError
from hwnas.search.problem import Genome

INSTALL_HINT = "pip install 'hwnas[distributed]' (or pip install 'ray[tune]')"
# how long --ray-address may take to answer, and workers on a cluster to start
CONNECT_TIMEOUT_S = 3.0
START_TIMEOUT_S = 300.0
_THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
_HAS_AFFINITY = hasattr(os, "sched_setaffinity")


def require_ray(said: str) -> None:
    try:
        import ray  # noqa: F401
    except ImportError:
        raise UserError(f"{said} runs evaluations in Ray, which is not installed here; {INSTALL_HINT}") from None


def check_reachable(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """A wrong ``--ray-address`` as one line within seconds, not a minute of Ray's retries: a TCP
    connection to HOST:PORT first, then (for a GCS address, not ``ray://``) a Ray client of that
    address made in a child process, which tells a Ray cluster from something else listening
    there and from one that refuses this client's token. ``auto`` and ``local`` are left to
    ``ray.init``, which answers at once when no cluster runs here."""
    if address in ("auto", "local"):
        return
    scheme, _, hostport = address.rpartition("://")
    host, sep, port = hostport.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise UserError(f"--ray-address {address!r} is not HOST:PORT (e.g. 10.0.0.5:6379 or ray://10.0.0.5:10001) or auto")
    hint = "start one with `ray start --head` or check the address"
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as e:
        raise UserError(f"--ray-address {address}: nothing answers there within {timeout:g} s ({e.strerror or e}); {hint}") from None
    if scheme:  # ray://: Ray Client's own server, which ray.init checks quickly itself
        return
    import subprocess
    import sys

    try:
        probe = subprocess.run([sys.executable, "-c", _PROBE, address], capture_output=True, text=True, timeout=3 * timeout)
    except subprocess.TimeoutExpired:
        raise UserError(f"--ray-address {address}: no Ray cluster answered within {3 * timeout:g} s; {hint}") from None
    said = probe.stdout.strip()
    if probe.returncode == 3:
        raise UserError(f"--ray-address {address}: what answers there is not a Ray cluster ({said}); {hint}")
    if probe.returncode == 4:
        raise UserError(f"--ray-address {address}: the Ray cluster refuses this client's token ({said}); set RAY_AUTH_MODE=token "
                        f"and RAY_AUTH_TOKEN (or ~/.ray/auth_token) as the cluster's nodes have them")


# run in a child process (Ray's client prints its own warnings and may retry): exit 3 when
# something other than a Ray cluster answers, 4 when the cluster refuses the token, else 0
_PROBE = """
import sys
try:
    from ray._raylet import GcsClient
    from ray.exceptions import AuthenticationError, RpcError
except Exception:
    sys.exit(0)
try:
    GcsClient(address=sys.argv[1])
except AuthenticationError as e:
    print(str(e).strip().splitlines()[0][:160]); sys.exit(4)
except RpcError as e:
    print(str(e).strip().splitlines()[0][:160]); sys.exit(3)
except Exception:
    sys.exit(0)
"""


# ---- Ray ------------------------------------------------------------------------------------
class _Worker:
    """One worker process: its thread variables are set (through the actor's runtime env)
    before anything imports torch; ``pin`` then gives it its cores and ``build`` its setup."""

    def __init__(self, cwd: str) -> None:
        if os.path.isdir(cwd):  # relative paths in settings mean what they meant to the driver
            os.chdir(cwd)
        self.setup: Any = None

    def where(self) -> tuple[str, list[int]]:
        import ray

        cores = sorted(os.sched_getaffinity(0)) if _HAS_AFFINITY else list(range(os.cpu_count() or 1))
        return ray.get_runtime_context().get_node_id(), cores

    def pin(self, cores: list[int]) -> int:
        if _HAS_AFFINITY:  # (Linux) what the training loop's "all cores" means from now on
            os.sched_setaffinity(0, cores)
        import torch

        torch.set_num_threads(len(cores))
        return len(cores)

    def build(self, cfg: Any) -> float:
        t0 = time.perf_counter()
        from hwnas.search.setup import SearchSetup

        self.setup = SearchSetup(cfg)
        return time.perf_counter() - t0

    def evaluate(self, index: int, genome: list[int]) -> tuple[int, dict, float]:
        t0 = time.perf_counter()
        values = self.setup.evaluate(tuple(genome))
        return index, values, time.perf_counter() - t0

    def ping(self) -> float:
        return time.perf_counter()


def slices(cores: list[int], workers: int) -> list[list[int]]:
    """Each of ``workers`` on one node its own ``len(cores) // workers`` cores (at least one;
    more workers than cores share them round-robin)."""
    per = max(1, len(cores) // workers)
    return [[cores[(k * per + j) % len(cores)] for j in range(per)] for k in range(workers)]


class RayPool:
    """``workers`` Ray actors evaluating genomes; a local Ray of ``workers`` CPUs, or the
    cluster at ``address``. Candidates wait here and go to the first idle worker."""

    def __init__(self, cfg: Any, workers: int, address: Optional[str] = None) -> None:
        import ray

        self.ray = ray
        self.started = time.perf_counter()
        self._own = not ray.is_initialized()  # a session the caller opened is theirs to close
        self._queue: deque[tuple[int, Genome]] = deque()
        self._idle: deque[Any] = deque()
        self._running: dict[Any, Any] = {}
        self.task_seconds: list[float] = []  # inside the workers, per evaluation
        self.overhead_seconds: list[float] = []  # per evaluation, dispatch to result here less the time inside
        try:
            if self._own:
                self._init(address, workers)
            if address is None:  # the local Ray has one CPU per worker; each gets its share of the cores
                from hwnas.accuracy.training import available_cores

                cpus, threads = 1, max(1, available_cores() // workers)
            else:
                cpus = threads = self._cpus_per_worker(workers, address)
            env = {"env_vars": {v: str(threads) for v in _THREAD_VARIABLES}}
            actor = ray.remote(_Worker).options(num_cpus=cpus, runtime_env=env)
            self.actors = [actor.remote(os.getcwd()) for _ in range(workers)]
            self.threads = self._pin()
            built = [a.build.remote(cfg) for a in self.actors]
            self._wait_started(built, workers)
            self.build_seconds = ray.get(built)
        except BaseException:
            self.close()
            raise
        self._idle.extend(self.actors)
        self.ready_seconds = time.perf_counter() - self.started

    def _init(self, address: Optional[str], workers: int) -> None:
        import logging

        ray = self.ray
        quiet = {"include_dashboard": False, "logging_level": logging.ERROR, "log_to_driver": False}
        if address is None:
            ray.init(address="local", num_cpus=workers, **quiet)  # a new instance, whatever else runs here
            return
        try:
            ray.init(address=address, **quiet)
        except (ConnectionError, RuntimeError, ValueError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise UserError(f"--ray-address {address}: could not join the Ray cluster ({first}); check the address "
                            f"or start one with `ray start --head`") from None

    def _cpus_per_worker(self, workers: int, address: str) -> int:
        ray = self.ray
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        biggest = max((int(n.get("Resources", {}).get("CPU", 0)) for n in nodes), default=0)
        total = int(ray.cluster_resources().get("CPU", 0))
        if biggest < 1:
            raise UserError(f"--ray-address {address}: the cluster has no CPUs to run workers on")
        return max(1, min(biggest, total // workers))

    def _pin(self) -> list[int]:
        """Each worker its slice of its node's cores; the threads each got."""
        ray = self.ray
        wheres = [a.where.remote() for a in self.actors]
        self._wait_started(wheres, len(self.actors))
        places = ray.get(wheres)
        by_node: dict[str, list[int]] = {}
        for k, (node, _) in enumerate(places):
            by_node.setdefault(node, []).append(k)
        pins = []
        for node, members in by_node.items():
            cores = places[members[0]][1]
            for k, cores_k in zip(members, slices(cores, len(members))):
                pins.append(self.actors[k].pin.remote(cores_k))
        return ray.get(pins)

    def _wait_started(self, built: list[Any], workers: int) -> None:
        ray = self.ray
        ready, _ = ray.wait(built, num_returns=len(built), timeout=START_TIMEOUT_S)
        if len(ready) < len(built):
            free = ray.available_resources().get("CPU", 0)
            raise UserError(f"only {len(ready)} of {workers} workers started within {START_TIMEOUT_S:g} s "
                            f"({free:g} CPUs free on the cluster); use fewer --workers")
        for ref in ready:
            self._get(ref)  # an error while building a worker's setup surfaces here

    def _get(self, ref: Any) -> Any:
        from ray.exceptions import RayTaskError

        try:
            return self.ray.get(ref)
        except RayTaskError as e:
            cause = getattr(e, "cause", None)
            if isinstance(cause, UserError):
                raise UserError(str(cause)) from None
            raise

    def submit(self, index: int, genome: Genome) -> None:
        self._queue.append((index, genome))
        self._dispatch()

    def _dispatch(self) -> None:
        while self._idle and self._queue:
            actor = self._idle.popleft()
            index, genome = self._queue.popleft()
            self._running[actor.evaluate.remote(index, list(genome))] = (actor, time.perf_counter())

    def next_done(self) -> tuple[int, dict]:
        """The next evaluation to finish, whichever it is: (its index, its values)."""
        if not self._running:
            raise RuntimeError("no evaluation is running")
        ready: list[Any] = []
        while not ready:  # in short waits, so that Ctrl-C is seen
            ready, _ = self.ray.wait(list(self._running), num_returns=1, timeout=0.5)
        ref = ready[0]
        actor, sent = self._running.pop(ref)
        index, values, seconds = self._get(ref)
        self.task_seconds.append(seconds)
        self.overhead_seconds.append(time.perf_counter() - sent - seconds)
        self._idle.append(actor)
        self._dispatch()
        return index, values

    def round_trip_seconds(self, n: int = 20) -> list[float]:
        """Submit-to-result times of a call that does nothing, on an idle worker: the per-task overhead."""
        out = []
        for _ in range(n):
            t0 = time.perf_counter()
            self.ray.get(self.actors[0].ping.remote())
            out.append(time.perf_counter() - t0)
        return out

    def close(self) -> None:
        ray = self.ray
        for a in getattr(self, "actors", []):
            try:
                ray.kill(a)
            except Exception:  # noqa: BLE001  (an actor already gone)
                pass
        self.actors = []
        if self._own and ray.is_initialized():
            ray.shutdown()

    def __enter__(self) -> "RayPool":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
