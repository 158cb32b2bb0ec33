"""gdas and darts on MBConv spaces: the expected latency from a device table (exact for one-hot
probabilities, pulling towards cheaper choices), the repair into the budget, a tiny search on
digits, resume from its epoch checkpoint, `hwnas export` of the run, and bad input."""

import functools
import json
import random

import numpy as np
import pytest
import torch

from conftest import run_cli
from latency_helpers import FAST

from hwnas.search import run
from hwnas.space import get_space

# two stages on digits' native 8x8: two widths a stage, depth 1 or 2, two kernels and expands, SE searched
SETTINGS = {"image_size": 8, "strides": [1, 2], "widths": [[8, 16], [16, 24]], "se": [False, True],
            "acts": ["relu", "hswish"], "depths": [1, 2], "kernels": [3, 5], "expands": [2, 3],
            "stem_channels": 8, "head_channels": 32, "se_choices": [False, True]}
# every per-stage setting searched, three stages (the first block of stage 2 reads stage 1's width)
STYLED = {**SETTINGS, "strides": [1, 2, 1], "widths": [[8, 16], [16, 24], [24, 32]], "se": [False, True, True],
          "acts": ["relu", "hswish", "hswish"], "depths": [1, 2, 3], "block_kinds": ["mbconv", "fused"],
          "act_choices": ["relu", "hswish"]}
QUICK = {"data": "digits", "threads": 1, "batch_size": 16, "lr": 0.2, "arch_lr": 0.05, "train_limit": 1000}
FILES = ["config.json", "journal.jsonl", "pareto.json", "best.json", "pareto.png", "oneshot.ckpt", "supernet.pt"]


@pytest.fixture(autouse=True)
def _env(tmp_path, monkeypatch):
    monkeypatch.setenv("HWNAS_CACHE", str(tmp_path / "cache"))
    torch.set_num_threads(1)


def synthetic_table(space, path, seed=0, calibrated=True, noise=0.1):
    """A table of every latency term of ``space`` with made-up but plausible costs (more channels,
    larger kernels, SE, h-swish and fused blocks cost more) and, with ``calibrated``, every
    calibration term non-trivial: no timing, so that a space with every setting searched is cheap."""
    rng = random.Random(seed)
    entries = []
    for b in space.all_latency_terms():
        p, (c, r, _) = dict(b.params), b.input_shape
        if b.op in ("mbconv", "fused"):
            mid, ro = c * p["e"], -(-r // p["s"])
            work = (c * mid * r * r + mid * p["k"] ** 2 * ro * ro * (c if b.op == "fused" else 1) + mid * p["c_out"] * ro * ro)
            ms = 0.004 + 2e-7 * work * (1.3 if p["se"] else 1.0) * (1.15 if p["act"] == "hswish" else 1.0)
        else:
            ms = 0.004 + 1e-7 * c * r * r * 8
        ms *= rng.uniform(1 - noise, 1 + noise)
        entries.append({"key": b.key, "op": b.op, "input_shape": list(b.input_shape), "params": p, "latency_ms": ms,
                        "median_ms": ms, "iqr_ms": 0.0, "count": 5, "act_mb": rng.uniform(0.0, 0.01) * noise})
    ops = sorted({e["op"] for e in entries})
    calibration = {"scale": 1.0, "offset_ms": 0.0}
    if calibrated:
        calibration = {"scale": 0.9, "offset_ms": 0.013, "ms_per_act_mb": 0.37,
                       "op_scales": {op: rng.uniform(0.5, 1.5) for op in ops},
                       "op_block_ms": {op: rng.uniform(0.0, 0.004) for op in ops}}
    from hwnas.latency.profiler import space_header

    table = {"schema": "hwnas.latency-table", "schema_version": 1, "space": space_header(space),
             "backend": {"name": "torch-cpu", "threads": 1, "batch": 1}, "fingerprint": {}, "protocol": {},
             "call_overhead_ms": 0.003, "calibration": calibration, "validation": {}, "entries": entries}
    path.write_text(json.dumps(table))
    return path


@functools.lru_cache(maxsize=None)
def _expected(settings_json, path):
    from hwnas.latency.sources import get_latency_model
    from hwnas.search.oneshot.forms import mixed_form

    space = get_space("mbv3-32", **json.loads(settings_json))
    model = get_latency_model(path, space)
    return space, model.predictor, mixed_form(space, model)


def form_of(settings, path):
    return _expected(json.dumps(settings), str(path))


@pytest.fixture(scope="module")
def styled_table(tmp_path_factory):
    return synthetic_table(get_space("mbv3-32", **STYLED), tmp_path_factory.mktemp("mb") / "styled.json")


@pytest.fixture(scope="module")
def profile_path(tmp_path_factory):
    """A real table of the search space, measured on eager torch with the fast protocol."""
    from hwnas.latency.backends import get_backend
    from hwnas.latency.profiler import profile

    out = tmp_path_factory.mktemp("mb") / "tiny-mbconv.json"
    torch.set_num_threads(1)
    profile(get_space("mbv3-32", **SETTINGS), get_backend("torch-cpu", threads=1), out, n_calibrate=3, n_validate=0,
            protocol=FAST)
    return out


def one_hot(form, genome):
    p = torch.zeros(len(form.cards), max(form.cards), dtype=torch.float64)
    p[torch.arange(len(genome)), torch.tensor(genome)] = 1.0
    return p


@pytest.mark.parametrize("which", ["styled", "plain"])
def test_expected_latency_equals_the_tables_prediction_for_one_hot_probabilities(which, styled_table, tmp_path):
    settings = STYLED if which == "styled" else {k: v for k, v in SETTINGS.items() if k != "se_choices"}
    path = styled_table if which == "styled" else synthetic_table(get_space("mbv3-32", **settings), tmp_path / "p.json",
                                                                  calibrated=False)
    space, predictor, form = form_of(settings, path)
    rng = random.Random(0)
    archs = [space.smallest(), space.largest()] + [space.sample(rng) for _ in range(60)]
    L = form.expected.layout
    for a in archs:
        g = space.encode(a)
        for s, d in enumerate(a["depths"]):  # the genes of blocks past a stage's depth change nothing
            for b in range(d, space.max_depth):
                for r in (L.kernel[s][b], L.expand[s][b]):
                    g[r] = rng.randrange(form.cards[r])
        assert space.decode(g) == a
        assert float(form.expected(one_hot(form, g))) == pytest.approx(predictor.predict(a), rel=1e-12, abs=1e-12)
    # a mixture is the mean over archs drawn from it (Monte Carlo, loosely)
    torch.manual_seed(0)
    alpha = torch.randn(len(form.cards), max(form.cards), dtype=torch.float64)
    p = form.probs(alpha)
    draws = torch.multinomial(p, 2000, replacement=True).T
    mc = np.mean([predictor.predict(space.decode(d.tolist())) for d in draws])
    assert float(form.expected(p)) == pytest.approx(mc, rel=0.02)


def test_gradient_moves_probability_to_cheaper_choices(tmp_path):
    from hwnas.search.oneshot.latency import latency_penalty

    # costs without noise or per-kind calibration, so that every larger choice costs more
    path = synthetic_table(get_space("mbv3-32", **STYLED), tmp_path / "monotone.json", calibrated=False, noise=0.0)
    space, predictor, form = form_of(STYLED, path)
    L = form.expected.layout
    alpha = torch.zeros(len(form.cards), max(form.cards), dtype=torch.float64, requires_grad=True)
    before = form.expected(form.probs(alpha))
    budget = 0.5 * float(before.detach())
    loss = latency_penalty(before, budget, 1.0)
    loss.backward()
    g = alpha.grad
    c = space.config
    for s in range(space.num_stages):  # descent: shallower, narrower, smaller kernels and expands, no SE, mbconv
        assert g[L.depth[s], 0] < 0 < g[L.depth[s], len(c.depths) - 1]
        assert g[L.width[s], 0] < 0 < g[L.width[s], 1]
        for b in range(space.max_depth):
            assert g[L.kernel[s][b], 0] < 0 < g[L.kernel[s][b], 1]
            assert g[L.expand[s][b], 0] < 0 < g[L.expand[s][b], 1]
        rows = dict(L.style[s])
        for i in rows:  # kind (mbconv, fused), act (relu, hswish), SE (False, True): the first is cheaper
            assert g[rows[i], 0] < 0 < g[rows[i], 1], (s, i)
    assert torch.all(g.abs().sum(-1) > 0)  # every decision's logits are pulled, padding is not
    assert all(torch.all(g[d, c:] == 0) for d, c in enumerate(form.cards))
    with torch.no_grad():
        after = form.expected(form.probs(alpha - 0.5 * g / g.abs().max()))
    assert after.item() < before.item()


def test_repair_finds_the_most_probable_arch_within_the_budget(styled_table):
    """On a space small enough to enumerate, the Lagrangian repair is feasible and close to the
    exact most probable arch within the budget; every lam's arch is exactly optimal for it."""
    small = {**STYLED, "strides": [1, 2], "widths": [[8, 16], [16, 24]], "se": [False, True], "acts": ["relu", "hswish"],
             "depths": [1, 2], "kernels": [3], "expands": [2, 3], "block_kinds": ["mbconv"]}
    import itertools

    from hwnas.latency.sources import get_latency_model

    space = get_space("mbv3-32", **small)
    path = synthetic_table(space, styled_table.parent / "small.json")
    _, predictor, form = form_of(small, path)
    E = form.expected
    genomes = list(itertools.product(*(range(c) for c in form.cards)))
    lat = get_latency_model(str(path), space).predict_many([space.decode(g) for g in genomes])
    rng = np.random.default_rng(1)
    log_p = [np.log(rng.dirichlet(np.ones(c))) for c in form.cards]
    for v in log_p:  # favour the larger (costlier) choices: the argmax misses the budget
        v[-1] += 2.0
    score = np.array([sum(log_p[d][g[d]] for d in range(len(g))) for g in genomes])
    for lam in (0.0, 3.0, 300.0):
        g = E.best_for(log_p, lam)
        obj = -score + lam * lat
        assert -sum(log_p[d][g[d]] for d in range(len(g))) + lam * E.of_genome(g) == pytest.approx(obj.min(), abs=1e-9)
    budget = float(np.quantile(lat, 0.3))
    g = E.most_probable_within(log_p, budget)
    assert E.of_genome(g) <= budget
    best = score[lat <= budget].max()
    assert sum(log_p[d][g[d]] for d in range(len(g))) >= best - 1.0  # within a nat of the exact optimum
    assert E.of_genome(E.best_for(log_p, 0.0)) > budget  # the repair had work to do
    assert E.most_probable_within(log_p, float(lat.min()) / 2) is None


@pytest.mark.parametrize("method", ["gdas", "darts"])
def test_the_sampled_path_s_gates_carry_the_loss_to_the_decisions_it_uses(method, styled_table):
    """Steps on the space with every per-stage setting searched: the loss of the sampled subnet
    reaches the logits of the kernel and expand ratio of every residual block it runs, the width
    and kind/activation/SE of every stage that runs one, and the depth of every stage deeper than
    the shallowest; never a block past its stage's depth nor the padding. The forward pass is
    the subnet's own function."""
    space, predictor, form = form_of(STYLED, styled_table)
    L, c = form.expected.layout, space.config
    torch.manual_seed(3)
    net = form.make_net(10).train()
    with torch.no_grad():  # residual branches start at zero (their last BN's weight): give them a say
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
    alpha = torch.nn.Parameter(0.1 * torch.randn(len(form.cards), max(form.cards)))
    x, y = torch.randn(8, 3, 8, 8), torch.randint(0, 10, (8,))
    seen = set()
    for _ in range(6):
        w, index = form.sample(alpha, method, 1.0)
        (g,) = torch.autograd.grad(torch.nn.functional.cross_entropy(net(x, w, index), y), [alpha])
        arch = space.decode(index)
        assert all(torch.all(g[d, k:] == 0) for d, k in enumerate(form.cards))
        width_in = c.stem_channels
        for s, d in enumerate(arch["depths"]):
            residual = [b for b in range(d) if (b > 0 or c.strides[s] == 1) and (b > 0 or width_in == arch["widths"][s])]
            for b in range(space.max_depth):
                for r in (L.kernel[s][b], L.expand[s][b]):
                    if b >= d:
                        assert torch.all(g[r] == 0), (s, b)
                    elif b in residual:
                        assert g[r].abs().sum() > 0, (s, b)
                        seen.add("block")
            if residual:
                for r in [L.width[s]] + [r for _, r in L.style[s]]:
                    assert g[r].abs().sum() > 0, (s, r)
                    seen.add("stage")
            if d > min(c.depths):
                assert g[L.depth[s]].abs().sum() > 0, s
                seen.add("depth")
            else:
                assert torch.all(g[L.depth[s]] == 0), s
            width_in = arch["widths"][s]
    assert seen == {"block", "stage", "depth"}
    net.eval()
    with torch.no_grad():
        net.set_active(arch)
        assert torch.allclose(net(x, w.detach(), index), net(x), atol=1e-5)
        assert torch.allclose(net(x), net.extract(arch).eval()(x), atol=1e-5)


def search(profile_path, out, method="gdas", epochs=2, budget=None, strategy_options_extra=None, **kw):
    space, predictor, form = form_of(SETTINGS, profile_path)
    if budget is None:  # between the cheapest arch and the largest
        lo, hi = form.min_latency()[0], predictor.predict(space.largest())
        budget = lo + 0.3 * (hi - lo)
    return run(space="mbv3-32", profile=str(profile_path), latency_budget_ms=budget, evaluator="", strategy=method,
               strategy_options={**QUICK, "epochs": epochs, **(strategy_options_extra or {})}, space_settings=SETTINGS,
               seed=1, out=out, **kw), budget


def test_tiny_gdas_run_on_digits_lowers_the_loss_meets_the_budget_and_exports(profile_path, tmp_path):
    from hwnas.exporters.run_export import RunExportConfig, export_run, read_run
    from hwnas.accuracy.supernet.train import load_supernet

    out = tmp_path / "gdas"
    res, budget = search(profile_path, out, epochs=3)
    assert sorted(p.name for p in out.iterdir()) == sorted(FILES)
    journal = [json.loads(line) for line in (out / "journal.jsonl").read_text().splitlines()]
    assert [r["kind"] for r in journal] == ["argmax"] * 3 + ["final"]
    assert journal[-2]["loss"] < journal[0]["loss"] and journal[-1]["accuracy"] > 0.3  # the supernet learned
    space, predictor, form = form_of(SETTINGS, profile_path)
    best = json.loads((out / "best.json").read_text())
    assert best["id"] == journal[-1]["id"] == res.best["id"]
    arch = space.parse(best["arch"])
    assert best["latency_ms"] == predictor.predict(arch) <= budget and journal[-1]["within_budget"]
    assert 0.0 <= best["accuracy"] <= 1.0 and best["params"] > 0
    for r in journal:  # one row per decision, each its own length and summing to one
        assert [len(p) for p in r["probs"]] == list(form.cards)
        assert all(abs(sum(p) - 1) < 1e-5 for p in r["probs"])
        if r["kind"] == "argmax":  # the most probable choice of each decision; the journal rounds the
            # probabilities to 6 decimals, which can tie or swap two choices less than 1e-6 apart
            assert all(p[g] >= max(p) - 2e-6 for g, p in zip(r["genome"], r["probs"]))
    # the trained supernet is a supernet checkpoint: export inherits the found arch's weights
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["evaluator"]["spec"] == f"supernet:{(out / 'supernet.pt').resolve()}"
    supernet, meta = load_supernet(out / "supernet.pt", space)
    assert meta["train"]["data"] == "digits" and meta["train"]["train_limit"] == QUICK["train_limit"]
    assert supernet.extract(arch)(torch.zeros(2, 3, 8, 8)).shape == (2, 10)
    report = export_run(out, tmp_path / "m.onnx", RunExportConfig(quantize="none", max_steps=3, protocol=FAST,
                                                                   check_profile=False)).report
    assert report["metadata"]["source"]["weights"] == "supernet" and report["metadata"]["arch_id"] == arch.id
    assert report["predicted_ms"] == pytest.approx(best["latency_ms"])
    assert read_run(out).best["id"] == arch.id


def test_a_final_arch_over_the_budget_is_repaired_into_it(profile_path, tmp_path):
    """Without the latency loss the argmax drifts past a tight budget; the final arch is the most
    probable one within it."""
    space, predictor, form = form_of(SETTINGS, profile_path)
    lo = form.min_latency()[0]
    res, budget = search(profile_path, tmp_path / "r", epochs=2, budget=lo * 1.01,
                         strategy_options_extra={"latency_lambda": 0.0})
    final = res.records[-1]
    assert final["kind"] == "final" and final["repaired_from"] is not None
    assert predictor.predict(space.parse(final["arch"])) == final["latency_ms"] <= budget


def test_resume_from_an_epoch_checkpoint_gives_the_same_arch(profile_path, tmp_path):
    from hwnas.search.oneshot.run import run_oneshot
    from hwnas.search.runner import SearchConfig

    full, budget = search(profile_path, tmp_path / "full", method="darts", epochs=2)
    cfg = SearchConfig(space="mbv3-32", profile=str(profile_path), evaluator="", strategy="darts", seed=1,
                       latency_budget_ms=budget, strategy_options={**QUICK, "epochs": 2}, space_settings=SETTINGS)
    cut = tmp_path / "cut"
    from hwnas.data import load_dataset

    n = len(load_dataset("digits", image_size=8, train_limit=QUICK["train_limit"]).train_y)
    steps_per_epoch = n // 2 // QUICK["batch_size"]
    with pytest.raises(KeyboardInterrupt):  # Ctrl-C in the middle of the second epoch
        run_oneshot(cfg, out=cut, stop_after_steps=steps_per_epoch + 2)
    assert [json.loads(line)["epoch"] for line in (cut / "journal.jsonl").read_text().splitlines()] == [1]
    assert not (cut / "supernet.pt").exists()
    meta = json.loads(torch.load(cut / "oneshot.ckpt", weights_only=True)["meta"])
    assert (meta["epoch"], meta["step"]) == (1, 2)
    resumed = run_oneshot(cfg, out=cut, resume=True)
    assert resumed.resumed_from == 1 and resumed.best == full.best
    assert (cut / "journal.jsonl").read_text() == (tmp_path / "full" / "journal.jsonl").read_text()
    a = torch.load(cut / "supernet.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "full" / "supernet.pt", weights_only=True)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_derivation_by_samples_keeps_the_supernets_best_of_the_argmax_and_k_draws_and_resumes(profile_path, tmp_path):
    """--derive-samples K: the argmax (repaired into the budget) and K distinct archs drawn within
    the budget from the learned distribution, each scored by the supernet and journaled; the final
    arch is the best scored. Interrupted among the samples, a resumed run journals the same."""
    from hwnas.search.oneshot.run import run_oneshot
    from hwnas.search.runner import SearchConfig

    space, predictor, form = form_of(SETTINGS, profile_path)
    k = 6
    argmax_only, budget = search(profile_path, tmp_path / "argmax", epochs=2)
    full, _ = search(profile_path, tmp_path / "full", epochs=2, strategy_options_extra={"derive_samples": k})
    journal = [json.loads(line) for line in (tmp_path / "full" / "journal.jsonl").read_text().splitlines()]
    kinds = [r["kind"] for r in journal]
    samples = [r for r in journal if r["kind"] == "sample"]
    assert kinds == ["argmax"] * 2 + ["sample"] * len(samples) + ["final"] and 3 <= len(samples) <= k + 1
    assert [r["sample"] for r in samples] == list(range(len(samples)))
    # the training is the argmax run's: the same argmax records; the first sample is its final arch
    assert journal[:2] == [json.loads(line) for line in (tmp_path / "argmax" / "journal.jsonl").read_text().splitlines()][:2]
    assert samples[0]["id"] == argmax_only.best["id"]
    assert len({r["id"] for r in samples}) == len(samples)
    assert all(r["within_budget"] and predictor.predict(space.parse(r["arch"])) == r["latency_ms"] <= budget for r in samples)
    top = max(samples, key=lambda r: (r["supernet_accuracy"], r["log_prob"], -r["sample"]))
    final = journal[-1]
    assert final["id"] == top["id"] == full.best["id"] and final["derived_from"]["sample"] == top["sample"]
    assert final["supernet_accuracy"] == top["supernet_accuracy"] >= samples[0]["supernet_accuracy"]
    assert json.loads((tmp_path / "full" / "config.json").read_text())["strategy"]["derive_samples"] == k
    assert "derive_samples" not in json.loads((tmp_path / "argmax" / "config.json").read_text())["strategy"]

    cfg = SearchConfig(space="mbv3-32", profile=str(profile_path), evaluator="", strategy="gdas", seed=1,
                       latency_budget_ms=budget, strategy_options={**QUICK, "epochs": 2, "derive_samples": k},
                       space_settings=SETTINGS)

    def stop_at_the_third_sample(p):
        if p.argmax is not None and p.argmax.get("kind") == "sample" and p.argmax["sample"] == 2:
            raise KeyboardInterrupt

    cut = tmp_path / "cut"
    with pytest.raises(KeyboardInterrupt):
        run_oneshot(cfg, out=cut, progress=stop_at_the_third_sample)
    assert [json.loads(line)["kind"] for line in (cut / "journal.jsonl").read_text().splitlines()] == ["argmax"] * 2 + ["sample"] * 3
    resumed = run_oneshot(cfg, out=cut, resume=True)
    assert resumed.resumed_from == 5 and resumed.best == full.best
    assert (cut / "journal.jsonl").read_text() == (tmp_path / "full" / "journal.jsonl").read_text()


def test_draws_within_the_budget_are_distinct_seeded_and_follow_the_distribution(profile_path):
    from types import SimpleNamespace

    from hwnas.search.oneshot.run import draw_within_budget

    space, predictor, form = form_of(SETTINGS, profile_path)
    lo, hi = form.min_latency()[0], predictor.predict(space.largest())
    budget = lo + 0.5 * (hi - lo)
    setup = SimpleNamespace(form=form, space=space, latency=SimpleNamespace(predict_many=predictor.predict_many),
                            cfg=SimpleNamespace(latency_budget_ms=budget))
    cards = np.asarray(form.cards)
    log_p = np.where(np.arange(max(cards))[None, :] < cards[:, None], 0.0, -np.inf)
    log_p = log_p - np.log(cards)[:, None]  # uniform over each decision's own choices
    drawn, draws = draw_within_budget(setup, log_p, 40, seed=3)
    assert len(drawn) == 40 and draws >= 40
    archs = [space.decode(list(g)) for g in drawn]
    assert len({a.id for a in archs}) == 40 and max(predictor.predict_many(archs)) <= budget
    assert all(0 <= g[j] < cards[j] for g in drawn for j in range(len(cards)))
    assert draw_within_budget(setup, log_p, 40, seed=3) == (drawn, draws)
    assert draw_within_budget(setup, log_p, 40, seed=4)[0] != drawn
    # a decision whose first choice holds all the mass: every draw takes it
    j = int(np.argmax(cards))
    peaked = log_p.copy()
    peaked[j, :] = -np.inf
    peaked[j, 0] = 0.0
    assert all(g[j] == 0 for g in draw_within_budget(setup, peaked, 20, seed=3)[0])


def test_bad_inputs_are_one_line_exit_2_and_write_nothing(profile_path, tmp_path, capsys):
    space, predictor, form = form_of(SETTINGS, profile_path)
    lowest = form.min_latency()[0]
    out = tmp_path / "x"
    tiny = ["--space", "mbv3-32", "--space-settings", json.dumps(SETTINGS), "--profile", str(profile_path)]
    cases = [
        ([*tiny, "--strategy", "gdas", "--latency-ms", f"{lowest * 0.9:.6g}"],
         f"below the smallest latency the space reaches on this profile, {lowest:.4g} ms"),
        ([*tiny, "--strategy", "gdas", "--epochs", "0"], "--epochs must be at least 1"),
        ([*tiny, "--strategy", "darts", "--epochs", "0"], "--epochs must be at least 1"),
        ([*tiny, "--strategy", "gdas", "--resume"], "nothing to resume"),
        (["--space", "cnn", "--profile", str(profile_path), "--strategy", "gdas"], "space 'cnn' does not have"),
    ]
    for argv, needle in cases:
        code, _, err = run_cli(capsys, "search", *argv, "--out", str(out))
        assert code == 2, (argv, err)
        assert needle in err and len(err.strip().splitlines()) == 1, err
        assert not out.exists(), "bad input left output behind"
