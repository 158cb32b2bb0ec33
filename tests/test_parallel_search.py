"""Parallel evaluation (`hwnas search --workers/--in-flight/--ray-address`, search/parallel.py)
and the Ray Tune searcher: the result depends on the seed and in_flight only, a stopped
parallel run resumes to the same result without evaluating again what had finished, bad input
is one line."""

import json
import shutil
import socket
import sys
import time

import pytest

from hwnas.errors import UserError
from hwnas.search import parallel, run
from hwnas.search.loop import drive, drive_ahead
from hwnas.search.problem import Problem
from hwnas.search.strategy import make_strategy

from conftest import run_cli  # noqa: E402

try:
    import ray  # noqa: F401
    HAVE_RAY = True
except ImportError:
    HAVE_RAY = False
needs_ray = pytest.mark.skipif(not HAVE_RAY, reason="Ray is not installed (pip install 'hwnas[distributed]')")


# a made-up accuracy and latency per operation: what these tests check is the mechanics of
# parallel evaluation, which any fixed table shows, so they run without the shared data too
_ACC = {"none": 0.0, "skip_connect": 3.0, "nor_conv_1x1": 8.0, "nor_conv_3x3": 12.0, "avg_pool_3x3": 2.0}
_LAT = {"none": 0.0, "skip_connect": 0.1, "nor_conv_1x1": 0.8, "nor_conv_3x3": 1.6, "avg_pool_3x3": 0.4}


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    """Every NAS-Bench-201 cell with a made-up c10_test and lat_pixel3 (a budget of 8 ms cuts the
    cells with many 3x3 convolutions); ties are broken by the cell's position."""
    import itertools

    from hwnas.space.nb201 import OPS, format_cell

    path = tmp_path_factory.mktemp("nb201") / "made_up.csv"
    rows = ["arch_str,c10_test,lat_pixel3"]
    for i, ops in enumerate(itertools.product(OPS, repeat=6)):
        acc = 10 + sum(_ACC[o] for o in ops) + (i * 7919 % 1000) / 1000
        rows.append(f"{format_cell(ops)},{acc:.3f},{1.0 + sum(_LAT[o] for o in ops):.3f}")
    path.write_text("\n".join(rows) + "\n")
    return path


def stop_at(n):
    """A progress callback that interrupts the search once ``n`` candidates were evaluated (Ctrl-C)."""
    def progress(p):
        if p.evaluated == n:
            raise KeyboardInterrupt
    return progress


def kw(table, **extra):
    return {**dict(space="nb201", profile=f"table:{table}#lat_pixel3", evaluator=f"table:{table}#c10_test",
                   strategy="evolution", budget_evals=24, seed=4, latency_budget_ms=8.0), **extra}


def cli_args(table, out, *extra):
    return ["search", "--space", "nb201", "--profile", f"table:{table}#lat_pixel3", "--latency-ms", "8",
            "--evaluator", f"table:{table}#c10_test", "--budget-evals", "24", "--seed", "4", "--out", str(out), *extra]


def files(out):
    return {n: (out / n).read_text() for n in ("journal.jsonl", "best.json", "pareto.json")}


# ---- the loop ----------------------------------------------------------------------------
def toy_problem():
    # 18 genomes: a budget of 30 runs out of new candidates, so the repeat rule ends the run
    return Problem(cards=(3, 3, 2))


def toy_values(g):
    return {"accuracy": 0.1 * g[0] + 0.03 * g[1] + 0.01 * g[2], "latency_ms": 1.0 + g[0] + 0.5 * g[2]}


class Immediate:
    """Evaluations computed when their result is asked for, counting them."""

    def __init__(self):
        self.genomes, self.submitted = {}, []

    def submit(self, index, genome):
        self.submitted.append(index)
        self.genomes[index] = genome

    def result(self, index):
        return toy_values(self.genomes.pop(index))


@pytest.mark.parametrize("strategy", ["random", "evolution", "anneal", "reinforce", "nsga2"])
def test_one_in_flight_is_the_sequential_loop(strategy):
    seq = drive(make_strategy(strategy, toy_problem(), 3, 30), toy_values, 30, max_repeats=10)
    ahead = drive_ahead(make_strategy(strategy, toy_problem(), 3, 30), Immediate(), 30, 1, max_repeats=10)
    assert ahead.genomes == seq.genomes and ahead.values == seq.values
    assert ahead.stopped_early == seq.stopped_early


@pytest.mark.parametrize("in_flight", [2, 5])
def test_asking_ahead_evaluates_each_candidate_once_and_tells_in_ask_order(in_flight):
    told = []
    strat = make_strategy("evolution", toy_problem(), 1, 30)
    original = strat.tell
    strat.tell = lambda g, v: (told.append(g), original(g, v))
    ev = Immediate()
    seen = []
    res = drive_ahead(strat, ev, 12, in_flight, lambda i, g, v: seen.append(i))
    assert len(res.genomes) == 12 == len(set(res.genomes))
    assert ev.submitted == list(range(12)) and seen == list(range(12))
    # every first tell of a candidate follows the order of the journal
    first = list(dict.fromkeys(told))
    assert first == res.genomes


def test_asking_ahead_ends_on_repeats_after_telling_what_was_started():
    res = drive_ahead(make_strategy("random", toy_problem(), 0, 30), Immediate(), 30, 3, max_repeats=10)
    assert res.stopped_early and "already evaluated" in res.stopped_early
    assert len(res.genomes) == len(set(res.genomes)) <= 18


# ---- runs with workers that finish out of order (no Ray needed) ---------------------------
class LastFirstPool:
    """Stands in for RayPool: evaluates in this process, always finishing the candidate
    submitted last first, so every earlier one waits behind it."""

    made = []

    def __init__(self, cfg, workers, address=None):
        from hwnas.search.setup import SearchSetup

        self.setup, self.pending, self.evaluated = SearchSetup(cfg), [], []
        LastFirstPool.made.append(self)

    def submit(self, index, genome):
        self.pending.append((index, genome))

    def next_done(self):
        index, genome = self.pending.pop()
        self.evaluated.append(index)
        return index, self.setup.evaluate(genome)

    def close(self):
        pass


@pytest.fixture
def last_first(monkeypatch):
    LastFirstPool.made = []
    monkeypatch.setattr(parallel, "RayPool", LastFirstPool)
    monkeypatch.setattr(parallel, "require_ray", lambda said: None)
    return LastFirstPool


def test_out_of_order_workers_give_the_in_process_result(table, tmp_path, last_first):
    ref = run(out=tmp_path / "ref", **kw(table, in_flight=2))
    par = run(out=tmp_path / "par", **kw(table, workers=2))
    assert files(tmp_path / "par") == files(tmp_path / "ref")
    assert par.best == ref.best and len(par.records) == 24
    assert last_first.made and len(last_first.made[0].evaluated) == 24
    assert not (tmp_path / "par" / parallel.AHEAD_FILE).exists()  # all of it is in the journal now
    cfg = json.loads((tmp_path / "par" / "config.json").read_text())
    assert cfg["in_flight"] == 2 and cfg == json.loads((tmp_path / "ref" / "config.json").read_text())
    # a sequential run's config stays as it was, without in_flight
    run(out=tmp_path / "seq", **kw(table, budget_evals=3))
    assert "in_flight" not in json.loads((tmp_path / "seq" / "config.json").read_text())


def test_stopped_parallel_run_resumes_without_evaluating_finished_ones_again(table, tmp_path, last_first):
    ref = run(out=tmp_path / "ref", **kw(table, in_flight=2))

    cut = tmp_path / "cut"
    with pytest.raises(KeyboardInterrupt):
        run(out=cut, progress=stop_at(7), **kw(table, workers=2))
    assert len((cut / "journal.jsonl").read_text().splitlines()) == 7
    kept = [json.loads(l)["record"] for l in (cut / parallel.AHEAD_FILE).read_text().splitlines()]
    assert 7 in [r["i"] for r in kept]  # finished while record 6 was awaited, not yet in the journal
    tampered = tmp_path / "tampered"
    shutil.copytree(cut, tampered)

    last_first.made = []
    resumed = run(out=cut, resume=True, **kw(table, workers=2))
    assert resumed.resumed_from == 7
    assert 7 not in last_first.made[0].evaluated  # taken from the side file, not evaluated again
    assert files(cut) == files(tmp_path / "ref") and resumed.best == ref.best
    assert not (cut / parallel.AHEAD_FILE).exists()

    # the kept record really is what the resume uses (any --workers: here one, in this process)
    lines = [json.loads(l) for l in (tampered / parallel.AHEAD_FILE).read_text().splitlines()]
    for line in lines:
        if line["record"]["i"] == 7:
            line["record"]["accuracy"] = 0.123
    (tampered / parallel.AHEAD_FILE).write_text("".join(json.dumps(l) + "\n" for l in lines))
    run(out=tampered, resume=True, **kw(table, in_flight=2))
    assert json.loads((tampered / "journal.jsonl").read_text().splitlines()[7])["accuracy"] == 0.123


def test_side_file_of_another_configuration_is_not_used(table, tmp_path, last_first):
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        run(out=out, progress=stop_at(5), **kw(table, workers=2))
    lines = [json.loads(l) for l in (out / parallel.AHEAD_FILE).read_text().splitlines()]
    assert lines
    (out / parallel.AHEAD_FILE).write_text("".join(json.dumps({**l, "run": "0" * 16}) + "\n" for l in lines))
    last_first.made = []
    run(out=out, resume=True, **kw(table, workers=2))
    assert 5 in last_first.made[0].evaluated  # evaluated again: the kept record was not this run's
    assert len((out / "journal.jsonl").read_text().splitlines()) == 24


def test_resume_with_other_in_flight_is_refused_other_workers_are_not(table, tmp_path, capsys, last_first):
    out = tmp_path / "run"
    assert run_cli(capsys, *cli_args(table, out, "--workers", "2"))[0] == 0
    code, _, err = run_cli(capsys, *cli_args(table, out, "--resume"))
    assert code == 2 and "--in-flight 2" in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli(capsys, *cli_args(table, out, "--in-flight", "2", "--resume"))
    assert code == 0, err


# ---- bad input ----------------------------------------------------------------------------
@pytest.mark.parametrize("extra, said", [
    (["--workers", "0"], "--workers must be a whole number of at least 1, got 0"),
    (["--in-flight", "0"], "--in-flight must be a whole number of at least 1, got 0"),
    (["--workers", "2", "--fidelity", "epochs:1,3"], "cannot be combined with --fidelity"),
    (["--in-flight", "2", "--strategy", "gdas"], "gdas trains one supernet"),
    (["--ray-address", "nowhere"], "is not HOST:PORT"),
])
def test_bad_parallel_options_are_one_line_exit_2(table, tmp_path, capsys, monkeypatch, extra, said):
    monkeypatch.setattr(parallel, "require_ray", lambda said: None)
    out = tmp_path / "x"
    code, _, err = run_cli(capsys, *cli_args(table, out, *extra))
    assert code == 2 and said in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_workers_without_ray_say_how_to_get_it(table, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as if not installed
    out = tmp_path / "x"
    code, _, err = run_cli(capsys, *cli_args(table, out, "--workers", "2"))
    assert code == 2 and "pip install 'hwnas[distributed]'" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
    with pytest.raises(UserError, match="not installed"):
        run(out=None, **kw(table, workers=3))
    assert run(out=None, **kw(table, budget_evals=3)).best is not None  # a sequential search needs no Ray


def test_workers_that_cannot_start_leave_no_run_behind(table, tmp_path, capsys, monkeypatch):
    class NoCluster:
        def __init__(self, *a, **k):
            raise UserError("--ray-address 10.0.0.9:6379: could not join the Ray cluster (gone); check the address")

    monkeypatch.setattr(parallel, "RayPool", NoCluster)
    monkeypatch.setattr(parallel, "require_ray", lambda said: None)
    out = tmp_path / "x"
    code, _, err = run_cli(capsys, *cli_args(table, out, "--workers", "2"))
    assert code == 2 and "could not join" in err and len(err.strip().splitlines()) == 1
    assert not out.exists() or not any(out.iterdir())  # the same command can simply be run again


@needs_ray
def test_unreachable_ray_address_is_one_line_within_seconds(table, tmp_path, capsys):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "x"
    t0 = time.monotonic()
    code, _, err = run_cli(capsys, *cli_args(table, out, "--workers", "2", "--ray-address", f"127.0.0.1:{port}"))
    assert time.monotonic() - t0 < 15
    assert code == 2 and f"127.0.0.1:{port}" in err and "ray start --head" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


# ---- Ray itself ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ray_session():
    """One local Ray for the tests below that do not check a search's own start and shutdown
    (a search uses a session that is already open, and leaves it open)."""
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@needs_ray
def test_two_ray_workers_give_the_result_of_one_with_two_in_flight(table, tmp_path, capsys):
    code, _, err = run_cli(capsys, *cli_args(table, tmp_path / "w2", "--workers", "2"))
    assert code == 0, err
    assert run_cli(capsys, *cli_args(table, tmp_path / "w1", "--in-flight", "2"))[0] == 0
    assert files(tmp_path / "w2") == files(tmp_path / "w1")
    import ray

    assert not ray.is_initialized()  # the search shut its Ray down


@needs_ray
def test_ray_run_stopped_midway_resumes_to_the_same_result(table, tmp_path, ray_session):
    ref = run(out=tmp_path / "ref", **kw(table, in_flight=2))

    cut = tmp_path / "cut"
    with pytest.raises(KeyboardInterrupt):
        run(out=cut, progress=stop_at(9), **kw(table, workers=2))
    assert len((cut / "journal.jsonl").read_text().splitlines()) == 9
    resumed = run(out=cut, resume=True, **kw(table, in_flight=2))  # another --workers may resume it
    assert files(cut) == files(tmp_path / "ref") and resumed.best == ref.best
    assert ray_session.is_initialized()  # the caller's session stays open


@pytest.mark.skipif(not HAVE_RAY, reason="Ray Tune is not installed (pip install 'hwnas[distributed]')")
def test_ray_tune_runs_trials_the_searcher_suggests(table, tmp_path, ray_session):
    pytest.importorskip("ray.tune", reason="Ray Tune is not installed (pip install 'hwnas[distributed]')")
    from ray import tune

    from hwnas.integrations.ray_tune import HwnasSearcher, arch_of

    searcher = HwnasSearcher(space="nb201", profile=f"table:{table}#lat_pixel3", latency_budget_ms=6.0, strategy="evolution",
                             budget=6, seed=0, strategy_options={"population": 4, "sample_size": 2})

    def trainable(config):
        arch = arch_of(config, "nb201")
        assert arch.id == config["arch_id"]
        return {"score": sum(config["genome"]) / 30.0}

    results = tune.Tuner(trainable, tune_config=tune.TuneConfig(search_alg=searcher, metric="score", mode="max",
                                                                num_samples=10),
                         run_config=tune.RunConfig(storage_path=str(tmp_path / "tune"), verbose=0)).fit()
    assert len(results) == 6  # the budget, not num_samples
    configs = [r.config for r in results]
    assert all(c["latency_ms"] <= 6.0 for c in configs)
    assert len({c["arch_id"] for c in configs}) == 6
    best = results.get_best_result()
    assert best.metrics["score"] == max(sum(c["genome"]) / 30.0 for c in configs)


def test_ray_tune_searcher_protocol(table):
    pytest.importorskip("ray.tune", reason="Ray Tune is not installed (pip install 'hwnas[distributed]')")
    from ray.tune.search import Searcher

    from hwnas.integrations.ray_tune import HwnasSearcher

    s = HwnasSearcher(space="nb201", profile=f"table:{table}#lat_pixel3", latency_budget_ms=6.0, strategy="random",
                      budget=3, seed=1, metric="loss", mode="min", max_concurrent=2)
    a, b = s.suggest("a"), s.suggest("b")
    assert s.suggest("c") is None  # two trials running already
    assert a["arch_id"] != b["arch_id"] and max(a["latency_ms"], b["latency_ms"]) <= 6.0
    s.on_trial_complete("b", {"loss": 0.25})  # in whatever order Tune finishes them
    assert s.strategy.n_told == 1 and s.strategy.known[tuple(b["genome"])]["accuracy"] == -0.25  # min: told negated
    c = s.suggest("c")
    s.on_trial_complete("a", error=True)  # a failed trial is not told
    s.on_trial_complete("c", {"loss": 0.5})
    assert s.strategy.n_told == 2 and c["arch_id"] not in (a["arch_id"], b["arch_id"])
    assert s.suggest("d") == Searcher.FINISHED  # the budget: three suggestions
    with pytest.raises(UserError, match="below the smallest latency"):
        HwnasSearcher(space="nb201", profile=f"table:{table}#lat_pixel3", latency_budget_ms=0.001)
