"""hwnas compare: the baseline zoo, the training comparison on digits (files, fields, resume,
refusals) and the NAS-Bench-201 comparison on a hand-made slice of the table."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from hwnas.compare import build_baseline, describe_baselines, list_baselines, parse_baselines
from hwnas.compare.zoo import BASELINES, removed_downsamplings
from hwnas.errors import UserError
from hwnas.latency.protocol import Protocol

REPO = Path(__file__).resolve().parents[1]
PROFILE = REPO / "profiles" / "mbv3-32_ort-cpu_t1_b1.json"
FAST = Protocol(warmup=2, warmup_seconds=0.0, round_size=4, min_repeats=8, max_repeats=16, max_seconds=0.02, sessions=1)
SMALL = ["shufflenet_v2_x0_5", "mobilenet_v2_x0_35"]
EXPECTED = {"mobilenet_v2_x0_35", "mobilenet_v2_x0_5", "mobilenet_v2_x1_0", "mobilenet_v3_small", "mobilenet_v3_large",
            "shufflenet_v2_x0_5", "shufflenet_v2_x1_0", "mnasnet0_5", "resnet18", "resnet50", "densenet121"}


# ---- the zoo --------------------------------------------------------------------------------
def test_zoo_lists_every_baseline_and_flags_mnasnet():
    assert set(list_baselines()) == EXPECTED
    rows = {r["name"]: r for r in describe_baselines()}
    assert rows["mnasnet0_5"]["found_by_nas"] and not rows["resnet18"]["found_by_nas"]
    assert all(r["description"] for r in rows.values())
    assert parse_baselines("all") == list_baselines()
    assert parse_baselines(" resnet18, mnasnet0_5,resnet18") == ["resnet18", "mnasnet0_5"]
    with pytest.raises(UserError, match="unknown baseline.*resnet19"):
        parse_baselines("resnet18,resnet19")


def test_stems_downsample_as_cifar_networks_do():
    assert removed_downsamplings(224) == 0  # the ImageNet network as published: 224 -> 7
    assert removed_downsamplings(32) == 2  # 32 -> 16 -> 8 -> 4
    assert removed_downsamplings(8) == 4


def _last_feature_px(model, size: int) -> int:
    seen = []
    hooks = [m.register_forward_hook(lambda m, i, o: seen.append(o.shape[-1]))
             for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    with torch.no_grad():
        model(torch.zeros(1, 3, size, size))
    for h in hooks:
        h.remove()
    return min(s for s in seen if s > 1)  # SE blocks' 1x1 squeezes aside


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_baseline_builds_at_32_and_224_and_runs_in_onnx_runtime(name):
    from hwnas.exporters.onnx_io import ort_logits, session, to_onnx

    torch.manual_seed(0)
    model = build_baseline(name, num_classes=7, image_size=32).eval()
    assert isinstance(model, torch.nn.Module) and model.num_classes == 7
    assert {m.momentum for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)} == {0.1}  # as the found nets
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        ref = model(x)
    assert ref.shape == (1, 7)
    assert _last_feature_px(model, 32) == 4  # CIFAR-style: never down to 1x1
    got = ort_logits(session(to_onnx(model, x)), x.numpy())
    np.testing.assert_allclose(got, ref.numpy(), rtol=1e-3, atol=1e-4)

    big = build_baseline(name, num_classes=7, image_size=224).eval()
    with torch.no_grad():
        assert big(torch.zeros(1, 3, 224, 224)).shape == (1, 7)
    assert _last_feature_px(big, 224) == 7  # the ImageNet stem at 224 px


# ---- the training comparison ------------------------------------------------------------------
ROW_KEYS = ("name", "kind", "latency_ms", "params", "flops", "model_bytes", "top1", "macro_f1", "train_seconds",
            "epochs", "seed", "per_class_f1")


def _cfg(**kw):
    from hwnas.compare import CompareConfig

    base = dict(profile=str(PROFILE), data="digits", epochs=1, train_limit=64, batch_size=32, threads=1,
                device="cpu", protocol=FAST)
    base.update(kw)
    return CompareConfig(**base)


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    """A tiny mbv3-32 search on the reference profile (the params proxy as its accuracy)."""
    from hwnas.search import SearchConfig, run

    out = tmp_path_factory.mktemp("runs") / "tiny"
    run(SearchConfig(space="mbv3-32", profile=str(PROFILE), evaluator="zc:params", strategy="random", budget_evals=2,
                     seed=0, latency_budget_ms=10.0), out=out)
    return out


def test_tiny_compare_writes_all_three_files_with_every_field(tmp_path, run_folder):
    from hwnas.compare import compare

    out = tmp_path / "cmp"
    res = compare(_cfg(baselines=SMALL, runs=[str(run_folder)]), out=out)
    assert [r["name"] for r in res.rows][:2] == SMALL
    found = res.rows[2]
    assert found["kind"] == "found" and found["name"].startswith("tiny:") and found["latency_budget_ms"] == 10.0
    best = json.loads((run_folder / "best.json").read_text())
    assert found["arch_id"] == best["id"]
    doc = json.loads((out / "compare.json").read_text())
    assert len(doc["rows"]) == 3 and doc["latency_budgets_ms"] == [10.0]
    for r in doc["rows"]:
        for k in ROW_KEYS:
            assert r.get(k) is not None, (r["name"], k)
        assert r["latency_ms"] > 0 and r["params"] > 0 and r["flops"] > 0 and r["model_bytes"] > 1000
        assert 0 <= r["top1"] <= 1 and 0 <= r["macro_f1"] <= 1 and len(r["per_class_f1"]) == 10
        assert r["epochs"] == 1 and r["seed"] == 0 and r["train_seconds"] > 0
    assert {r["kind"] for r in doc["rows"]} == {"baseline", "found"}
    assert {b["name"] for b in doc["baselines"]} == set(SMALL)
    for b in doc["baselines"]:
        assert {"dominated_by", "gain_points", "speedup", "goal_met"} <= set(b)
    assert res.standing == doc["baselines"]
    md = (out / "compare.md").read_text()
    assert all(n in md for n in SMALL) and "| network | kind | top-1 %" in md
    assert "Each baseline against the found networks" in md and "of 2 baselines" in md
    assert (out / "compare.png").read_bytes()[:4] == b"\x89PNG"


def test_resume_keeps_finished_rows(tmp_path, monkeypatch):
    import hwnas.compare.run as cr
    from hwnas.latency.profiler import reference_arch
    from hwnas.space import get_space

    arch = reference_arch(get_space("mbv3-32")).to_dict()
    cfg = _cfg(baselines=["shufflenet_v2_x0_5"], archs=[arch], max_steps=1)
    out = tmp_path / "cmp"
    real = cr._one_row
    calls = []

    def interrupted_after_first(c, *a, **k):
        calls.append(c.name)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(c, *a, **k)

    monkeypatch.setattr(cr, "_one_row", interrupted_after_first)
    with pytest.raises(KeyboardInterrupt):
        cr.compare(cfg, out=out)
    journal = (out / cr.JOURNAL_FILE).read_text().splitlines()
    first_trained, interrupted = calls
    assert len(journal) == 2 and json.loads(journal[1])["row"]["name"] == first_trained  # the header and the finished row
    assert not (out / "compare.json").exists()
    with pytest.raises(UserError, match="--resume"):
        cr.compare(cfg, out=out)  # neither overwritten nor mixed without asking
    with pytest.raises(UserError, match="other settings.*epochs"):
        cr.compare(_cfg(baselines=["shufflenet_v2_x0_5"], archs=[arch], max_steps=1, epochs=2), out=out, resume=True)

    calls.clear()
    res = cr.compare(cfg, out=out, resume=True)
    assert calls == [interrupted]  # only the unfinished row was trained
    assert res.resumed_rows == 1
    first = json.loads(journal[1])["row"]
    assert [r for r in res.rows if r["name"] == first_trained] == [first]
    doc = json.loads((out / "compare.json").read_text())
    assert [r["name"] for r in doc["rows"]] == ["shufflenet_v2_x0_5", get_space("mbv3-32").parse(arch).id]


def test_rows_timed_on_another_machine_are_timed_again_here_not_mixed(tmp_path, monkeypatch):
    import hwnas.compare.run as cr
    from hwnas.latency.profiler import reference_arch
    from hwnas.space import get_space

    arch = reference_arch(get_space("mbv3-32")).to_dict()
    cfg = _cfg(baselines=["shufflenet_v2_x0_5"], archs=[arch], max_steps=1)
    out = tmp_path / "cmp"
    first = cr.compare(cfg, out=out)
    here = first.rows[0]["timed_on"]
    assert here["cores"] and here["cpu_model"] and all(r["timed_on"] == here for r in first.rows)
    path = out / cr.JOURNAL_FILE
    lines = path.read_text().splitlines()
    row = json.loads(lines[1])
    row["row"]["timed_on"] = {**here, "cpu_model": "Another CPU", "isa": ["avx2"]}
    moved = "\n".join([lines[0], json.dumps(row), *lines[2:]]) + "\n"
    path.write_text(moved)
    with pytest.raises(UserError, match=r"1 finished row\(s\) .* timed on another machine \(Another CPU.*--retime"):
        cr.compare(cfg, out=out, resume=True)
    assert path.read_text() == moved  # nothing written

    events = []
    real_row, real_retime = cr._one_row, cr._retime
    monkeypatch.setattr(cr, "_one_row", lambda c, *a, **k: events.append(c.name) or real_row(c, *a, **k))
    monkeypatch.setattr(cr, "_retime", lambda rows, *a, **k: events.append(("retime", len(rows))) or real_retime(rows, *a, **k))
    cfg2 = _cfg(baselines=["shufflenet_v2_x0_5", "mobilenet_v2_x0_35"], archs=[arch], max_steps=1, retime=True)
    res = cr.compare(cfg2, out=out, resume=True)
    assert events == ["mobilenet_v2_x0_35", ("retime", 3)]  # the new row is trained, then every row is timed in one sitting
    by_name = {r["name"]: r for r in first.rows}
    for r in res.rows:
        assert r["timed_on"] == here and r["retimed"] is True and r["latency_ms"] > 0
        if r["name"] in by_name:
            assert r["top1"] == by_name[r["name"]]["top1"] and r["model_bytes"] == by_name[r["name"]]["model_bytes"]
    assert "every row again in one sitting" in (out / "compare.md").read_text()
    assert json.loads(path.read_text().splitlines()[1])["row"]["timed_on"]["cpu_model"] == "Another CPU"  # the journal keeps what happened

    events.clear()  # a pipeline that reuses its folder (the demo) starts over, as it does after other settings
    res = cr.compare(cfg, out=out, force=True, reuse=True)
    assert sorted(events) == sorted(["shufflenet_v2_x0_5", res.rows[1]["name"]]) and res.resumed_rows == 0
    assert all(r["timed_on"] == here and not r.get("retimed") for r in res.rows)


def test_prior_rows_count_as_finished_and_are_journalled_first(tmp_path, monkeypatch):
    import hwnas.compare.run as cr

    cfg = _cfg(baselines=SMALL, max_steps=1)
    earlier = cr.compare(cfg, out=tmp_path / "earlier")
    kept = [r for r in json.loads((tmp_path / "earlier" / "compare.json").read_text())["rows"] if r["name"] == SMALL[0]]
    calls = []
    real = cr._one_row
    monkeypatch.setattr(cr, "_one_row", lambda c, *a, **k: calls.append(c.name) or real(c, *a, **k))
    out = tmp_path / "cmp"
    res = cr.compare(cfg, out=out, prior_rows=kept)
    assert calls == [SMALL[1]] and res.resumed_rows == 1
    journal = [json.loads(line)["row"] for line in (out / cr.JOURNAL_FILE).read_text().splitlines()[1:]]
    assert [r["key"] for r in journal] == [f"{SMALL[0]}#0", f"{SMALL[1]}#0"]
    assert res.rows[0]["top1"] == earlier.rows[0]["top1"]
    for bad, match in (([{**kept[0], "name": "resnet19"}], "names no network of this comparison"),
                       ([{k: v for k, v in kept[0].items() if k != "top1"}], "lacks top1")):
        with pytest.raises(UserError, match=match):
            cr.compare(cfg, out=tmp_path / "never", prior_rows=bad)
        assert not (tmp_path / "never" / cr.JOURNAL_FILE).exists()


def test_cheapest_networks_train_first_seed_by_seed_and_the_tables_keep_the_order_given(tmp_path, monkeypatch):
    import hwnas.compare.run as cr

    order = ["mobilenet_v2_x0_35", "shufflenet_v2_x0_5"]  # 31 and 22 MFLOPs
    real = cr._one_row
    calls = []

    def recorded(c, seed, *a, **k):
        calls.append((c.name, seed))
        return real(c, seed, *a, **k)

    monkeypatch.setattr(cr, "_one_row", recorded)
    out = tmp_path / "cmp"
    res = cr.compare(_cfg(baselines=order, seeds=2, max_steps=1), out=out)
    assert calls == [("shufflenet_v2_x0_5", 0), ("mobilenet_v2_x0_35", 0), ("shufflenet_v2_x0_5", 1),
                     ("mobilenet_v2_x0_35", 1)]
    journal = [json.loads(line)["row"]["key"] for line in (out / cr.JOURNAL_FILE).read_text().splitlines()[1:]]
    assert journal == [f"{n}#{s}" for n, s in calls]  # each row is kept the moment it is finished
    assert [(r["name"], r["seed"]) for r in res.rows] == [(n, s) for s in (0, 1) for n in order]
    doc = json.loads((out / "compare.json").read_text())
    assert [(r["name"], r["seed"]) for r in doc["rows"]] == [(n, s) for s in (0, 1) for n in order]


def test_each_baseline_is_set_against_the_found_networks_by_hand_computable_numbers():
    from hwnas.compare.report import baseline_standing, mean_rows, standing_summary, standing_markdown

    rows = [{"name": "small", "kind": "baseline", "latency_ms": 1.0, "top1": 0.70, "seed": 0},
            {"name": "small", "kind": "baseline", "latency_ms": 1.2, "top1": 0.72, "seed": 1},  # mean 1.1 ms, 71%
            {"name": "big", "kind": "baseline", "latency_ms": 4.0, "top1": 0.80, "seed": 0},
            {"name": "huge", "kind": "baseline", "latency_ms": 9.0, "top1": 0.90, "seed": 0},
            {"name": "fA", "kind": "found", "latency_ms": 1.0, "top1": 0.715, "seed": 0},
            {"name": "fB", "kind": "found", "latency_ms": 2.0, "top1": 0.81, "seed": 0}]
    st = {s["name"]: s for s in baseline_standing(mean_rows(rows))}
    small, big, huge = st["small"], st["big"], st["huge"]
    assert small["dominated_by"] == ["fA"] and small["gain_by"] == "fA"
    assert small["gain_points"] == pytest.approx(0.5)  # fA is the only one as fast
    assert small["speedup"] == pytest.approx(1.1) and small["speedup_by"] == "fA"
    assert not small["goal_met"]  # +0.5 point, 1.1x: neither reaches +1 point or 1.5x
    assert big["dominated_by"] == ["fB"] and big["gain_points"] == pytest.approx(1.0) and big["gain_by"] == "fB"
    assert big["speedup"] == pytest.approx(2.0) and big["goal_met"]
    assert huge["dominated_by"] == [] and huge["speedup"] is None  # nothing found is as accurate
    assert huge["gain_points"] == pytest.approx(-9.0) and huge["gain_by"] == "fB" and not huge["goal_met"]
    text = standing_summary(list(st.values()))
    assert "dominate 2 of 3 baselines" in text and "1 of 3" in text and "(not: small, huge)" in text
    table = "\n".join(standing_markdown(list(st.values())))
    assert "| big | 4 | 80.00 | fB | +1.00 (fB) | 2.00x (fB) | yes |" in table
    assert "| huge | 9 | 90.00 | - | -9.00 (fB) | - | no |" in table
    assert baseline_standing(mean_rows(rows[:4]))[0]["gain_points"] is None  # no found network: nothing to set against


def test_close_seeds_go_to_the_pairs_within_a_point_and_resume_trains_nothing_again(tmp_path, monkeypatch):
    import hwnas.compare.run as cr
    from hwnas.latency.profiler import reference_arch
    from hwnas.space import get_space

    space = get_space("mbv3-32")
    found = space.parse(reference_arch(space).to_dict()).id
    top1 = {("shufflenet_v2_x0_5", 0): 0.800, ("shufflenet_v2_x0_5", 1): 0.796, ("mobilenet_v2_x0_35", 0): 0.900,
            (found, 0): 0.805, (found, 1): 0.830}  # seed 0: the found network is 0.5 point from shufflenet
    calls = []

    def fake_row(c, seed, cfg, *a, **k):
        calls.append((c.name, seed))
        return {"name": c.name, "kind": c.kind, "latency_ms": 1.0 + len(calls), "top1": top1[(c.name, seed)],
                "seed": seed, "epochs": cfg.epochs, **c.info}

    monkeypatch.setattr(cr, "_one_row", fake_row)
    cfg = _cfg(baselines=SMALL, archs=[reference_arch(space).to_dict()], close_seeds=2)
    out = tmp_path / "cmp"
    res = cr.compare(cfg, out=out)
    first = calls[:3]
    assert sorted(first) == sorted([("shufflenet_v2_x0_5", 0), ("mobilenet_v2_x0_35", 0), (found, 0)])
    assert sorted(calls[3:]) == sorted([("shufflenet_v2_x0_5", 1), (found, 1)])  # not mobilenet_v2_x0_35: 9.5 points off
    assert [(r["name"], r["seed"]) for r in res.rows] == [(n, 0) for n in [*SMALL, found]] + \
        [("shufflenet_v2_x0_5", 1), (found, 1)]
    doc = json.loads((out / "compare.json").read_text())
    assert len(doc["rows"]) == 5
    calls.clear()
    res = cr.compare(cfg, out=out, resume=True)
    assert calls == [] and res.resumed_rows == 5 and len(res.rows) == 5  # the close seeds are kept rows too
    with pytest.raises(UserError, match="--close-seeds must be more than --seeds"):
        cr.compare(_cfg(baselines=SMALL, seeds=2, close_seeds=2), out=tmp_path / "other")


def test_bad_input_is_refused_before_anything_is_written(tmp_path, run_folder, monkeypatch):
    from hwnas.compare import compare

    out = tmp_path / "never"
    with pytest.raises(UserError, match="unknown baseline"):
        compare(_cfg(baselines=["resnet19"]), out=out)
    with pytest.raises(UserError, match="--epochs must be at least 1"):
        compare(_cfg(baselines=SMALL, epochs=0), out=out)
    with pytest.raises(UserError, match="nothing to compare"):
        compare(_cfg(), out=out)
    for field, value, match in (("space", {"name": "nb201"}, "searched in space 'nb201'"),
                                ("evaluator", {"spec": "zc:params", "data": "cifar10"}, "searched on data 'cifar10'")):
        other = tmp_path / f"other-{field}"
        shutil.copytree(run_folder, other)
        cfg = json.loads((other / "config.json").read_text())
        cfg[field] = {**cfg[field], **value}
        (other / "config.json").write_text(json.dumps(cfg))
        with pytest.raises(UserError, match=match):
            compare(_cfg(runs=[str(other)]), out=out)

    class Unsupported(torch.nn.Module):  # an operator the ONNX exporter has no mapping for
        def __init__(self, num_classes):
            super().__init__()
            self.fc = torch.nn.Linear(3, num_classes)

        def forward(self, x):
            return self.fc(torch.special.bessel_j0(x.mean((2, 3))))

    monkeypatch.setitem(BASELINES._factories, "odd_net", lambda k, size: Unsupported(k))
    monkeypatch.setitem(__import__("hwnas.compare.zoo", fromlist=["_INFO"])._INFO, "odd_net",
                        __import__("hwnas.compare.zoo", fromlist=["BaselineInfo"]).BaselineInfo("odd_net", "test"))
    with pytest.raises(UserError, match=r"odd_net cannot run on the profile's backend .*operator.*bessel"):
        compare(_cfg(baselines=["shufflenet_v2_x0_5", "odd_net"]), out=out)
    assert not out.exists()


def test_cli_compare_prints_each_verdict_and_how_the_baselines_stand(tmp_path, capsys):
    from hwnas.cli.main import main
    from hwnas.latency.profiler import reference_arch
    from hwnas.space import get_space

    archs = tmp_path / "archs.jsonl"
    archs.write_text(json.dumps(reference_arch(get_space("mbv3-32")).to_dict()) + "\n")
    out = tmp_path / "cmp"
    try:
        main(["compare", "--profile", str(PROFILE), "--data", "digits", "--epochs", "1", "--train-limit", "32",
              "--batch-size", "32", "--threads", "1", "--device", "cpu", "--baselines", "shufflenet_v2_x0_5",
              "--arch", str(archs), "--out", str(out)])
    except SystemExit as e:
        assert e.code in (0, None)
    text = capsys.readouterr().out
    assert "the baseline" in text and "The found networks dominate" in text and "of 1 baseline;" in text
    doc = json.loads((out / "compare.json").read_text())
    assert [b["name"] for b in doc["baselines"]] == ["shufflenet_v2_x0_5"]


def test_cli_refusals_are_one_line_with_exit_code_2(tmp_path, capsys):
    from hwnas.cli.main import main

    for argv, match in ((["--baselines", "resnet19"], "unknown baseline"), (["--baselines", "resnet18", "--epochs", "0"], "--epochs"),
                        (["--baselines", "resnet18", "--front"], "--front compares the Pareto front of each --run")):
        with pytest.raises(SystemExit) as e:
            main(["compare", "--profile", str(PROFILE), "--out", str(tmp_path / "x"), *argv])
        assert e.value.code == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and match in lines[0]
    assert not (tmp_path / "x").exists()
    with pytest.raises(SystemExit) as e:
        main(["list", "baselines", "--json"])
    assert e.value.code == 0
    names = [json.loads(line)["name"] for line in capsys.readouterr().out.splitlines()]
    assert set(names) == EXPECTED


# ---- a run's whole Pareto front -------------------------------------------------------------
@pytest.fixture(scope="module")
def front_folder(tmp_path_factory):
    """A tiny mbv3-32 search whose Pareto front holds three archs (the params proxy as its score)."""
    from hwnas.search import SearchConfig, run

    out = tmp_path_factory.mktemp("runs") / "fronted"
    run(SearchConfig(space="mbv3-32", profile=str(PROFILE), evaluator="zc:params", strategy="random", budget_evals=4,
                     seed=0, latency_budget_ms=10.0), out=out)
    return out


def _spy_figure(monkeypatch) -> list[dict]:
    import hwnas.compare.report as rep

    calls, real = [], rep.figure_png

    def spy(*a, **k):
        calls.append(k)
        return real(*a, **k)

    monkeypatch.setattr(rep, "figure_png", spy)
    return calls


def test_front_trains_and_draws_every_arch_of_the_runs_front(tmp_path, front_folder, monkeypatch):
    from hwnas.compare import compare

    front = json.loads((front_folder / "pareto.json").read_text())["front"]
    best = json.loads((front_folder / "best.json").read_text())["id"]
    assert len(front) == 3 and best in {r["id"] for r in front}
    figures = _spy_figure(monkeypatch)
    out = tmp_path / "cmp"
    res = compare(_cfg(baselines=["shufflenet_v2_x0_5"], runs=[str(front_folder)], front=True, max_steps=1), out=out)
    doc = json.loads((out / "compare.json").read_text())
    assert doc["front"] is True and [r["name"] for r in doc["rows"]] == [r["name"] for r in res.rows]
    found = [r for r in doc["rows"] if r["kind"] == "found"]
    assert [r["arch_id"] for r in found] == [r["id"] for r in front]  # in the front's order (predicted latency)
    for r in found:
        assert r["name"] == f"fronted:{r['arch_id']}" and r["front"] is True and r["run"] == str(front_folder)
        assert r["best"] is (r["arch_id"] == best) and r["latency_budget_ms"] == 10.0
        assert r["search_latency_ms"] == next(f["latency_ms"] for f in front if f["id"] == r["arch_id"])
    for r in doc["rows"]:
        for k in ROW_KEYS:
            assert r.get(k) is not None, (r["name"], k)
    # the measured front is one connected line through the three trained archs; the search's own
    # front is not drawn on the top-1 axis, since its evaluator gives scores, not accuracies
    (fig,) = figures
    (line,) = fig["measured_fronts"]
    assert sorted(line) == sorted((r["latency_ms"], 100 * r["top1"]) for r in found)
    assert fig["fronts"] == []
    assert doc["search_fronts"][0]["accuracy_is_estimate"] is False and len(doc["search_fronts"][0]["points"]) == 3
    md = (out / "compare.md").read_text()
    assert "search's Pareto front (measured)" in md and "(3 archs of pareto.json)" in md and "ranking scores" in md
    assert md.count("| found (front) |") == 2 and md.count("| found (best, front) |") == 1
    assert res.verdicts and res.verdicts[0]["name"] == f"fronted:{best}" and res.verdicts[0]["sentence"] in md
    assert (out / "compare.png").read_bytes()[:4] == b"\x89PNG"


def test_resume_with_front_keeps_finished_rows(tmp_path, front_folder, monkeypatch):
    import hwnas.compare.run as cr

    out = tmp_path / "cmp"
    cfg = _cfg(baselines=["shufflenet_v2_x0_5"], runs=[str(front_folder)], max_steps=1)
    first = cr.compare(cfg, out=out)  # the baseline and the run's best
    assert [r["kind"] for r in first.rows] == ["baseline", "found"] and first.rows[1]["best"]
    assert "--front trains and measures" in (out / "compare.md").read_text()

    real, calls = cr._one_row, []

    def interrupted_after_first(c, *a, **k):
        calls.append(c.name)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(c, *a, **k)

    monkeypatch.setattr(cr, "_one_row", interrupted_after_first)
    fronted = _cfg(baselines=["shufflenet_v2_x0_5"], runs=[str(front_folder)], max_steps=1, front=True)
    with pytest.raises(KeyboardInterrupt):
        cr.compare(fronted, out=out, resume=True)  # the front's first arch is trained, the second interrupted
    journal = (out / cr.JOURNAL_FILE).read_text().splitlines()
    assert len(journal) == 4  # the header and three finished rows: the front rows count as rows
    calls.clear()
    res = cr.compare(fronted, out=out, resume=True)
    assert len(calls) == 1 and res.resumed_rows == 3
    kept = {json.loads(line)["row"]["key"]: json.loads(line)["row"] for line in journal[1:]}
    for r in res.rows:
        if r["key"] in kept:
            assert r["train_seconds"] == kept[r["key"]]["train_seconds"] and r["top1"] == kept[r["key"]]["top1"]
    assert sum(r.get("front", False) for r in res.rows) == 3 and sum(r.get("best", False) for r in res.rows) == 1
    doc = json.loads((out / "compare.json").read_text())
    assert len(doc["rows"]) == 4 and doc["front"] is True
    assert "search's Pareto front (measured)" in (out / "compare.md").read_text()


def test_front_notes_draw_an_accuracy_estimate_and_say_which_front_it_is(tmp_path):
    from hwnas.compare.report import figure_png, verdict
    from hwnas.compare.contenders import SearchFront
    from hwnas.compare.run import _front_notes

    base = {"kind": "baseline", "seed": 0}
    rows = [{**base, "name": "small", "latency_ms": 2.0, "top1": 0.90}, {**base, "name": "big", "latency_ms": 4.0, "top1": 0.95},
            {"name": "r:a", "kind": "found", "run": "r", "front": True, "best": False, "latency_ms": 1.0, "top1": 0.91, "seed": 0},
            {"name": "r:b", "kind": "found", "run": "r", "front": True, "best": True, "latency_ms": 1.5, "top1": 0.96, "seed": 0}]
    sf = SearchFront("r", "supernet:s.pt", True, [{"arch_id": "a", "latency_ms": 0.9, "accuracy": 0.93},
                                                 {"arch_id": "b", "latency_ms": 1.4, "accuracy": 0.97}])
    lines, estimates, measured, verdicts = _front_notes(rows, False, [sf])
    assert estimates == [[(0.9, 93.0), (1.4, 97.0)]] and measured == []
    assert "faint line" in lines[0] and "estimate" in lines[0] and "not measured here" in lines[0]
    lines, estimates, measured, verdicts = _front_notes(rows, True, [sf])
    assert measured == [[(1.0, 91.0), (1.5, 96.0)]] and estimates == [[(0.9, 93.0), (1.4, 97.0)]]
    assert "2 of them stay non-dominated" in lines[0]
    assert verdicts == [{"name": "r:b", "dominates_baselines": True,
                         "sentence": "r:b dominates both baselines: faster than each and at least as accurate."}]
    ok, text = verdict(rows[2], rows[:2])
    assert not ok and "does not dominate big (less accurate: 91.00% vs 95.00%)" in text and "it does dominate small" in text
    png = figure_png(rows, "t", [3.0], fronts=estimates, front_label="estimate", measured_fronts=measured)
    assert png[:4] == b"\x89PNG"


# ---- NAS-Bench-201 --------------------------------------------------------------------------
RESNET = "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|"
# cell -> (c10_test %, lat_dev ms): a slice whose answers can be worked out by hand
SLICE = {
    RESNET: (90.0, 10.0),
    "|nor_conv_1x1~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|": (91.0, 9.0),  # A
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|": (92.0, 12.0),  # B
    "|nor_conv_1x1~0|+|none~0|nor_conv_1x1~1|+|skip_connect~0|none~1|skip_connect~2|": (89.0, 4.0),  # C
    "|nor_conv_3x3~0|+|none~0|skip_connect~1|+|skip_connect~0|none~1|nor_conv_1x1~2|": (90.5, 6.0),  # D
    "|skip_connect~0|+|none~0|skip_connect~1|+|skip_connect~0|none~1|skip_connect~2|": (80.0, 2.0),  # E
}


@pytest.fixture()
def nb201_slice(tmp_path):
    p = tmp_path / "slice.csv"
    lines = ["arch_str,c10_test,lat_dev"] + [f"{a},{acc},{lat}" for a, (acc, lat) in SLICE.items()]
    p.write_text("\n".join(lines) + "\n")
    return p


def test_nb201_comparison_on_a_slice_gives_hand_computed_numbers(tmp_path, nb201_slice):
    from hwnas.compare import compare_nb201

    cells = [a for a in SLICE if a != RESNET]
    out = tmp_path / "cmp"
    res = compare_nb201(profile=f"table:{nb201_slice}#lat_dev", evaluator=f"table:{nb201_slice}#c10_test",
                        archs=cells, budgets=(1.0, 0.5, 0.1), out=out)
    s = res.summary
    assert s["resnet_cell"]["top1"] == pytest.approx(0.90) and s["resnet_cell"]["latency_ms"] == 10.0
    given = s["groups"]["given"]
    # equal latency: the best within 10 ms is A (91 %, 9 ms): +1 point
    assert given["equal_latency"]["gain_points"] == pytest.approx(1.0)
    assert given["equal_latency"]["latency_ms"] == 9.0
    # equal accuracy: the fastest at least 90 % is D (90.5 %, 6 ms): 10 / 6
    assert given["equal_accuracy"]["speedup"] == pytest.approx(10 / 6)
    found = {r["name"]: r for r in res.rows if r["kind"] == "found"}
    assert found["given@1x"]["top1"] == pytest.approx(0.91) and found["given@0.5x"]["top1"] == pytest.approx(0.89)
    assert "given@0.1x" not in found and any("below the fastest cell" in n for n in res.notes)  # 1 ms < E's 2 ms
    assert s["table_optimum"]["equal_latency"]["gain_points"] == pytest.approx(1.0)
    assert s["table_optimum"]["equal_accuracy"]["speedup"] == pytest.approx(10 / 6)
    doc = json.loads((out / "compare.json").read_text())
    assert doc["rows"][0]["name"] == "resnet_cell" and doc["rows"][0]["kind"] == "baseline"
    for r in doc["rows"]:
        assert all(k in r for k in ROW_KEYS[:-1])
    assert "+1.00" in (out / "compare.md").read_text() and (out / "compare.png").stat().st_size > 1000


def test_nb201_comparison_runs_the_library_search_on_the_table(tmp_path, nb201_csv, capsys):
    from hwnas.cli.main import main

    out = tmp_path / "cmp"
    with pytest.raises(SystemExit) as e:
        main(["compare", "--space", "nb201", "--evaluator", "table:nb201#c10_test", "--profile",
              f"table:{nb201_csv}#lat_pixel3", "--budget-evals", "20", "--budgets", "1", "--out", str(out)])
    assert e.value.code == 0
    doc = json.loads((out / "compare.json").read_text())
    ref = doc["summary"]["resnet_cell"]
    found = [r for r in doc["rows"] if r["kind"] == "found"]
    assert found and all(r["latency_ms"] <= ref["latency_ms"] for r in found)
    assert doc["summary"]["table_optimum"]["equal_latency"]["gain_points"] >= 0
    assert "ResNet cell" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        main(["compare", "--space", "nb201", "--profile", f"table:{nb201_csv}#lat_pixel3", "--epochs", "3",
              "--out", str(tmp_path / "y")])
    assert e.value.code == 2
