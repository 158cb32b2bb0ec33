"""Multi-fidelity search (successive halving over training epochs): rungs and promotions, the
journal's rung records, best and front from the top rung, epochs spent, resume from the middle
of a rung, every ask/tell strategy, and the refusals of bad input.

Real training runs on a tiny NAS-Bench-201 space at digits' native 8x8 (one cell per stage,
8-16 channels), a latency column written here for every cell, and 1-3 epochs per rung; results
are cached per test (HWNAS_CACHE), so a rerun of the same evaluation costs nothing.
"""

import json

import numpy as np
import pytest

from hwnas.errors import UserError
from hwnas.search import Problem, make_strategy, run
from hwnas.search.fidelity import Fidelity, drive_halving, parse_fidelity

from tiny_nb201 import BUDGET_MS, SETTINGS, lat_csv, small_and_quiet  # noqa: F401  (fixtures)

ALL = ["random", "evolution", "nsga2", "reinforce", "anneal", "gp", "tpe"]


def config(lat_csv, **extra):
    kw = dict(space="nb201", space_settings=SETTINGS, profile=f"table:{lat_csv}#lat", latency_budget_ms=BUDGET_MS,
              evaluator="train", fidelity="epochs:1,2,3", eta=3, budget_evals=10, seed=1)
    return {**kw, **extra}


def cli_args(lat_csv, out, *extra, evaluator="train"):
    return ["search", "--space", "nb201", "--space-settings", json.dumps(SETTINGS), "--profile", f"table:{lat_csv}#lat",
            "--latency-ms", str(BUDGET_MS), "--evaluator", evaluator, "--out", str(out), "--seed", "1", *extra]


def cli(argv, capsys):
    from hwnas.cli.main import main

    with pytest.raises(SystemExit) as e:
        main(argv)
    cap = capsys.readouterr()
    return e.value.code, cap.out, cap.err


def journal(folder):
    return [json.loads(line) for line in (folder / "journal.jsonl").read_text().splitlines()]


def batches(entries, key_rung):
    """Split evaluations (in journal order) into batches: a run of rung-0 entries, then its promotions."""
    out = []
    for e in entries:
        if key_rung(e) == 0 and (not out or key_rung(out[-1][-1]) != 0):
            out.append([])
        out[-1].append(e)
    return out


def check_halving(groups, fid, budget, rung_of, values_of, genome_of):
    """Counts per rung are ceil(n / eta**k) of each batch; the promoted are the top of the rung below."""
    left = budget
    for group in groups:
        by_rung = [[e for e in group if rung_of(e) == k] for k in range(fid.rungs)]
        n = len(by_rung[0])
        assert n == min(fid.batch, left)
        left -= n
        assert [len(r) for r in by_rung] == fid.counts(n)
        assert [rung_of(e) for e in group] == sorted(rung_of(e) for e in group)  # a rung after the one below
        for k in range(1, fid.rungs):
            below = by_rung[k - 1]  # ranked by accuracy, ties to the lower latency, then the earlier
            ranked = sorted(range(len(below)), key=lambda j: (-values_of(below[j])["accuracy"],
                                                              values_of(below[j])["latency_ms"], j))
            want = [genome_of(below[j]) for j in ranked[:len(by_rung[k])]]
            assert [genome_of(e) for e in by_rung[k]] == want  # the top ones, best first
    assert left == 0


# ---- parsing and refusals -------------------------------------------------------------


def test_parse_fidelity_and_its_refusals():
    f = parse_fidelity("epochs:1,3,9", None, "train:5")
    assert f == Fidelity((1, 3, 9), 3) and f.batch == 9 and f.spec == "epochs:1,3,9"
    assert f.counts(9) == [9, 3, 1] and f.counts(2) == [2, 1, 1] and f.counts(7) == [7, 3, 1]
    assert parse_fidelity("epochs: 2, 4", 2, "train").counts(5) == [5, 3]
    assert parse_fidelity(None, None, "zc:synflow") is None
    bad = [("epochs", 3, "is not of the form"), ("epochs:", 3, "is not of the form"), ("steps:1,3", 3, "is not of the form"),
           ("1,3,9", 3, "is not of the form"), ("epochs:1,x", 3, "is not of the form"), ("epochs:-1,2", 3, "is not of the form"),
           ("epochs:1.5,3", 3, "is not of the form"), ("epochs:3,1", 3, "increasing positive"),
           ("epochs:1,1", 3, "increasing positive"), ("epochs:0,2", 3, "increasing positive"),
           ("epochs:1,3", 1, "--eta must be"), ("epochs:1,3", 0, "--eta must be"), ("epochs:1,3", True, "--eta must be")]
    for text, eta, needle in bad:
        with pytest.raises(UserError, match=needle):
            parse_fidelity(text, eta, "train")
    with pytest.raises(UserError, match="needs --fidelity"):
        parse_fidelity(None, 3, "train")
    for spec in ("zc:synflow", "supernet:sn.pt", "table:nb201#c10_test", "predictor:p.pt"):
        with pytest.raises(UserError, match="does not train.*--evaluator train"):
            parse_fidelity("epochs:1,3", 3, spec)


def test_bad_inputs_are_one_line_exit_2_and_write_nothing(lat_csv, tmp_path, capsys):
    out = tmp_path / "x"
    cases = [
        (["--fidelity", "epochs"], "is not of the form epochs:A,B"),
        (["--fidelity", "epochs:3,1"], "increasing positive"),
        (["--fidelity", "epochs:1,1,2"], "increasing positive"),
        (["--fidelity", "epochs:0,1"], "increasing positive"),
        (["--fidelity", "steps:1,3"], "is not of the form"),
        (["--fidelity", "epochs:1,3", "--eta", "1"], "--eta must be an integer of at least 2"),
        (["--eta", "3"], "needs --fidelity"),
        (["--fidelity", "epochs:1,3", "--strategy", "gdas"], "ask/tell strategies"),
    ]
    cases = [(extra, "train", needle) for extra, needle in cases]
    cases += [(["--fidelity", "epochs:1,3"], spec, "does not train") for spec in ("zc:synflow", f"table:{lat_csv}#lat")]
    for extra, evaluator, needle in cases:
        code, _, err = cli(cli_args(lat_csv, out, *extra, evaluator=evaluator), capsys)
        assert code == 2, extra
        assert needle in err and len(err.strip().splitlines()) == 1, err
        assert not out.exists(), "bad input left output behind"


def test_resume_with_other_fidelity_is_refused_and_writes_nothing(lat_csv, tmp_path, capsys):
    out = tmp_path / "r"
    base = ["--strategy", "random", "--budget-evals", "3"]
    assert cli(cli_args(lat_csv, out, *base, "--fidelity", "epochs:1,2"), capsys)[0] == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    for extra, needle in ((["--fidelity", "epochs:1,3"], "--fidelity epochs:1,2 --eta 3, this command gives --fidelity epochs:1,3"),
                          (["--fidelity", "epochs:1,2", "--eta", "2"], "this command gives --fidelity epochs:1,2 --eta 2"),
                          ([], "this command gives no --fidelity")):
        code, _, err = cli(cli_args(lat_csv, out, *base, *extra, "--resume"), capsys)
        assert code == 2 and "cannot resume" in err and needle in err and len(err.strip().splitlines()) == 1, err
        assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    # and a search without fidelity does not resume as one with it
    plain = tmp_path / "plain"
    assert cli(cli_args(lat_csv, plain, "--strategy", "random", "--budget-evals", "2", evaluator="train:1"), capsys)[0] == 0
    code, _, err = cli(cli_args(lat_csv, plain, "--strategy", "random", "--budget-evals", "2", "--fidelity", "epochs:1,2",
                                "--resume", evaluator="train:1"), capsys)
    assert code == 2 and "searched with no --fidelity" in err


# ---- the loop, every strategy, no training -----------------------------------------------


def code_of(g):
    return int(np.dot(g, 5 ** np.arange(5, -1, -1)))


def toy():
    """A 6x5 landscape whose rungs disagree: the noise of an accuracy shrinks with the rung."""
    rng = np.random.default_rng(0)
    base = rng.random(5 ** 6) * 0.5 + 0.4
    lat = np.array([sum(int(d) for d in np.base_repr(c, 5).zfill(6)) for c in range(5 ** 6)], dtype=float)
    problem = Problem(cards=(5,) * 6, feasible=lambda g: lat[code_of(g)] <= 12.0, latency_budget_ms=12.0)

    def evaluate(g, rung):
        c = code_of(g)
        noise = np.random.default_rng([c, rung]).normal(0.0, 0.1 / (rung + 1))
        return {"accuracy": float(base[c] + noise), "latency_ms": float(lat[c])}

    return problem, evaluate


@pytest.mark.parametrize("name", ALL)
def test_every_strategy_halves_and_is_told_rung_0(name):
    problem, evaluate = toy()
    fid, budget = Fidelity((1, 3, 9), 3), 22  # batches of 9, 9 and 4

    def one_run():
        strategy = make_strategy(name, problem, 4, budget)
        told, log = [], []
        tell = strategy.tell
        strategy.tell = lambda g, v: (told.append((g, dict(v))), tell(g, v))[-1]
        res = drive_halving(strategy, evaluate, budget, fid, lambda i, g, v, rung: log.append((i, g, dict(v), rung)))
        return res, told, log

    res, told, log = one_run()
    assert [e[0] for e in log] == list(range(len(log)))
    rung0 = [e for e in log if e[3] == 0]
    assert len(rung0) == budget and len({e[1] for e in rung0}) == budget and res.genomes == [e[1] for e in rung0]
    assert all(problem.feasible(e[1]) for e in log)  # infeasible candidates are never evaluated
    check_halving(batches(log, lambda e: e[3]), fid, budget, lambda e: e[3], lambda e: e[2], lambda e: e[1])
    assert len(log) == budget + (3 + 3 + 2) + (1 + 1 + 1)
    # the strategy hears each candidate's rung-0 values, never a higher rung's
    at0 = {e[1]: e[2] for e in rung0}
    assert {g for g, _ in told} == set(at0) and all(v == at0[g] for g, v in told)
    assert one_run()[2] == log  # deterministic for a seed


# ---- real runs ------------------------------------------------------------------------


def test_cli_search_with_fidelity(lat_csv, tmp_path, capsys):
    out = tmp_path / "run"
    code, stdout, err = cli(cli_args(lat_csv, out, "--strategy", "evolution", "--population", "4", "--sample-size", "2",
                                     "--budget-evals", "10", "--fidelity", "epochs:1,2,3", "--eta", "3"), capsys)
    assert code == 0, err
    recs = journal(out)
    fid = Fidelity((1, 2, 3), 3)
    assert [r["i"] for r in recs] == list(range(len(recs)))
    assert all(r["epochs"] == fid.epochs[r["rung"]] for r in recs)
    assert all(r["latency_ms"] <= BUDGET_MS for r in recs)
    check_halving(batches(recs, lambda r: r["rung"]), fid, 10, lambda r: r["rung"], lambda r: r, lambda r: r["id"])
    per_rung = [sum(1 for r in recs if r["rung"] == k) for k in range(3)]
    assert per_rung == [10, 4, 2]  # batches of 9 (9, 3, 1) and 1 (1, 1, 1)
    total = sum(r["epochs"] for r in recs)
    assert total == 10 * 1 + 4 * 2 + 2 * 3
    # best and front: the top rung's results only
    top_recs = [r for r in recs if r["rung"] == 2]
    best = json.loads((out / "best.json").read_text())
    assert best["rung"] == 2 and best["epochs"] == 3
    assert best["accuracy"] == max(r["accuracy"] for r in top_recs)
    assert best["id"] in {r["id"] for r in top_recs} and best["i"] in {r["i"] for r in top_recs}
    pareto = json.loads((out / "pareto.json").read_text())
    assert pareto["front"] and {r["i"] for r in pareto["front"]} <= {r["i"] for r in top_recs}
    for block in (best["fidelity"], pareto["fidelity"]):
        assert block["total_epochs"] == total and block["evaluations_per_rung"] == per_rung
        assert block["epochs_per_rung"] == [10, 8, 6] and block["top_rung"] == 2 and block["candidates"] == 10
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["fidelity"] == {"spec": "epochs:1,2,3", "epochs": [1, 2, 3], "eta": 3, "batch": 9}
    assert f"{total} training epochs in all" in stdout and "of 2 evaluated at 3 epochs" in stdout
    # the export reads the folder like any run's
    from hwnas.search.run_folder import load_run

    assert load_run(out).best["id"] == best["id"]


@pytest.mark.parametrize("strategy,options,cut", [
    ("evolution", {"population": 4, "sample_size": 2}, 11),  # in the middle of the first batch's rung 1
    ("random", {}, 13),  # the first batch promoted to the top, the next not asked for yet
    ("gp", {"init": 4}, 15),  # in the middle of the second batch's rung 0, the GP fitted
])
def test_resume_after_interrupt_equals_uninterrupted(lat_csv, tmp_path, monkeypatch, strategy, options, cut):
    from hwnas.accuracy.train_evaluator import TrainEvaluator

    kw = config(lat_csv, strategy=strategy, strategy_options=options, budget_evals=12)
    seen = []

    def stop_at_cut(p):
        # every evaluation is in the journal before anything else is evaluated
        assert len((tmp_path / "cut" / "journal.jsonl").read_text().splitlines()) == p.evaluations
        seen.append((p.evaluated, p.rung))
        if p.evaluations == cut:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(out=tmp_path / "cut", progress=stop_at_cut, **kw)
    assert len(journal(tmp_path / "cut")) == cut
    assert seen[8] == (9, 0) and seen[9] == (9, 1)  # progress counts candidates started, with the rung

    trained = []
    evaluate = TrainEvaluator.evaluate

    def counted(self, archs, epochs=None):
        trained.extend([epochs] * len(archs))
        return evaluate(self, archs, epochs)

    monkeypatch.setattr(TrainEvaluator, "evaluate", counted)
    resumed = run(out=tmp_path / "cut", resume=True, **kw)
    assert resumed.resumed_from == cut
    recs = journal(tmp_path / "cut")
    assert trained == [r["epochs"] for r in recs[cut:]]  # nothing journalled is evaluated again

    full = run(out=tmp_path / "full", **kw)
    assert (tmp_path / "cut" / "journal.jsonl").read_text() == (tmp_path / "full" / "journal.jsonl").read_text()
    for name in ("best.json", "pareto.json"):
        assert (tmp_path / "cut" / name).read_text() == (tmp_path / "full" / name).read_text()
    assert resumed.best == full.best and resumed.pareto == full.pareto and resumed.fidelity == full.fidelity
    assert len(recs) == 12 + 4 + 2 and full.fidelity["total_epochs"] == sum(r["epochs"] for r in recs) == 12 + 8 + 6
