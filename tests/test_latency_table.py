import json

import numpy as np
import pytest

from hwnas.errors import UserError
from hwnas.latency import LatencyPredictor, load_table
from hwnas.latency.predictor import fit_grouped_calibration, predict_from_costs, raw_from_terms
from hwnas.latency.protocol import Measurement, Protocol, measure, measure_sessions
from hwnas.latency.stats import fidelity, fit_linear, kendall_tau
from hwnas.latency.table import LatencyTable, TableEntry
from hwnas.space import get_space

from latency_helpers import tiny_mbconv


def synthetic_table(space, scale=1.1, offset=0.05, overhead=0.01) -> LatencyTable:
    """A table with made-up but deterministic entries for every term of ``space``."""
    entries = {}
    for i, b in enumerate(space.all_latency_terms()):
        v = 0.02 + 0.001 * (i % 17)
        entries[b.key] = TableEntry(b.key, b.op, list(b.input_shape), dict(b.params), v, v, 0.001, 30)
    return LatencyTable(
        space={"name": space.name, "config_hash": space.config_hash(), "config": space.config_dict()},
        backend={"name": "ort-cpu", "provider": "CPUExecutionProvider", "threads": 1, "batch": 1, "dtype": "float32"},
        fingerprint={"cpu_model": "x"}, protocol=Protocol().to_dict(), call_overhead_ms=overhead, entries=entries,
        calibration={"scale": scale, "offset_ms": offset, "k": 10}, validation={"n": 0})


def test_table_round_trip(tmp_path):
    space = tiny_mbconv()
    t = synthetic_table(space)
    path = tmp_path / "t.json"
    t.save(path)
    again = load_table(path)
    assert again.to_dict() == t.to_dict()
    assert again.get_space().config_hash() == space.config_hash()


def test_table_round_trip_keeps_the_reference_block(tmp_path):
    from hwnas.space.base import Block

    space = tiny_mbconv()
    block = space.reference_block()
    assert Block.from_dict(block.to_dict()) == block and block in space.all_latency_terms()
    t = synthetic_table(space)
    t.backend = {**t.backend, "name": "torch-cpu", "provider": None}
    t.extra = {"reference": {"arch": None, "block": block.to_dict(), "latency_ms": 0.5}}
    t.save(tmp_path / "t.json")
    again = load_table(tmp_path / "t.json")
    assert again.to_dict() == t.to_dict()
    assert Block.from_dict(again.extra["reference"]["block"]) == block
    # a table from before the reference block (none, or a network only) still loads
    d = t.to_dict()
    del d["reference"]
    (tmp_path / "old.json").write_text(json.dumps(d))
    assert load_table(tmp_path / "old.json").extra == {}


def test_rescale_to_reference_can_take_the_scale_from_some_kinds():
    from hwnas.latency.profiling import rescale_to_reference

    results = {("block", "a"): {"ratio": 2.0, "ref_ms": 0.40}, ("calibration", "n"): {"ratio": 10.0, "ref_ms": 0.44},
               ("overhead", "o"): {"ratio": None, "ref_ms": None, "latency_ms": 0.02}}
    assert rescale_to_reference({k: dict(v) for k, v in results.items()}) == 0.40
    scaled = {k: dict(v) for k, v in results.items()}
    assert rescale_to_reference(scaled, ("calibration", "validation")) == 0.44
    assert scaled[("block", "a")]["latency_ms"] == pytest.approx(0.88)  # one scale for every record
    assert scaled[("overhead", "o")]["latency_ms"] == 0.02
    # no record of those kinds: the whole run's fastest
    only_blocks = {k: dict(v) for k, v in results.items() if k[0] != "calibration"}
    assert rescale_to_reference(only_blocks, ("calibration",)) == 0.40


def test_predictor_math():
    space = tiny_mbconv()
    t = synthetic_table(space, scale=1.25, offset=0.1, overhead=0.021)
    pred = LatencyPredictor(t, space)
    arch = space.sample(3)
    terms = [t.entries[b.key].latency_ms for b in space.latency_terms(arch)]
    raw = 0.021 + sum(max(v - 0.021, 0.0) for v in terms)
    assert raw_from_terms(terms, 0.021) == pytest.approx(raw)
    assert pred.predict(arch) == pytest.approx(1.25 * raw + 0.1)
    archs = [space.sample(i) for i in range(5)]
    assert np.allclose(pred.predict_many(archs), [pred.predict(a) for a in archs])
    ms, cheapest = pred.min_latency()
    assert all(pred.predict(space.sample(i)) >= ms - 1e-12 for i in range(50))
    assert pred.predict(cheapest) == pytest.approx(ms)


def _write(tmp_path, obj):
    p = tmp_path / "bad.json"
    p.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    return p


def test_table_schema_errors(tmp_path):
    good = synthetic_table(tiny_mbconv()).to_dict()
    text = json.dumps(good)
    cases = {
        "truncated": text[: len(text) // 2],
        "not a table": {"hello": 1},
        "old version": {**good, "schema_version": 0},
        "no entries": {k: v for k, v in good.items() if k != "entries"},
        "entry without latency": {**good, "entries": [{k: v for k, v in good["entries"][0].items() if k != "latency_ms"}]},
        "negative": {**good, "entries": [{**good["entries"][0], "latency_ms": -1.0}]},
        "threads not int": {**good, "backend": {**good["backend"], "threads": "one"}},
    }
    for name, obj in cases.items():
        with pytest.raises(UserError) as e:
            load_table(_write(tmp_path, obj))
        assert "\n" not in str(e.value), name
    with pytest.raises(UserError, match="does not exist"):
        load_table(tmp_path / "missing.json")


def test_table_of_another_space_or_config_is_refused():
    t = synthetic_table(tiny_mbconv())
    with pytest.raises(UserError, match="another mbv3-32 configuration"):
        LatencyPredictor(t, get_space("mbv3-32"))
    with pytest.raises(UserError, match="built for space 'mbv3-32', not 'nb201'"):
        LatencyPredictor(t, get_space("nb201"))


def test_incomplete_table_names_missing_block():
    space = tiny_mbconv()
    t = synthetic_table(space)
    arch = space.sample(0)
    del t.entries[space.latency_terms(arch)[1].key]
    with pytest.raises(UserError, match="no entry for block"):
        LatencyPredictor(t, space).predict(arch)


def test_statistics():
    from scipy.stats import kendalltau

    rng = np.random.default_rng(0)
    x = rng.normal(size=40)
    y = x + rng.normal(scale=0.5, size=40)
    y[3] = y[4]  # a tie
    assert kendall_tau(x, y) == pytest.approx(kendalltau(x, y).statistic)
    s, o = fit_linear([1, 2, 3, 4], [2.5, 4.5, 6.5, 8.5])
    assert (s, o) == (pytest.approx(2.0), pytest.approx(0.5))
    f = fidelity([1.0, 2.0, 3.3], [1.0, 2.1, 3.0])
    assert f["within_5pct"] == pytest.approx(2 / 3) and f["within_10pct"] == pytest.approx(1.0)
    assert f["mape"] == pytest.approx((0 + 0.1 / 2.1 + 0.1) / 3)


def test_protocol_stops_when_stable_and_keeps_fastest_session():
    calls = []

    def runner():
        calls.append(1)
        return 1.0

    m = measure(runner, Protocol(warmup=3, warmup_seconds=0.0, min_repeats=20, max_repeats=200))
    assert m.median_ms == 1.0 and m.iqr_ms == 0.0
    assert 20 <= m.count < 200  # stopped once stable, not at the cap

    speeds = iter([3.0, 1.0, 2.0])

    def make():
        v = next(speeds)
        return lambda: v

    m = measure_sessions(make, Protocol(warmup=1, warmup_seconds=0.0, min_repeats=10, sessions=3))
    assert m.latency_ms == 1.0 and m.session_spread == pytest.approx(2.0)


def test_pairing_with_a_reference_cancels_a_slow_spell():
    import itertools

    # the machine alternates between normal speed and a 40% slower spell every 7 calls; the
    # model costs 2 units and the reference 1 unit at normal speed
    clock = itertools.count()

    def speed():
        return 1.4 if (next(clock) // 7) % 2 else 1.0

    model = lambda: 2.0 * speed()
    reference = lambda: 1.0 * speed()
    proto = Protocol(warmup=1, warmup_seconds=0.0, min_repeats=40, max_repeats=200, sessions=1)
    unpaired = measure(model, proto)
    paired = measure(model, proto, reference)
    assert paired.ratio == pytest.approx(2.0, rel=0.25)
    assert paired.ref_ms == pytest.approx(1.0)
    assert paired.latency_ms == pytest.approx(2.0, rel=0.25)
    # the raw samples do see the spell
    assert unpaired.iqr_ms > 0.5


def test_grouped_calibration_fits_per_block_times():
    """Blocks whose lone timing is all call overhead (cost 0) still cost time per block in a
    network: the fit recovers that from whole networks, and the plain fit cannot."""
    rng = np.random.default_rng(0)
    costs, counts, measured = [], [], []
    for _ in range(40):
        n_conv, n_skip = int(rng.integers(0, 15)), int(rng.integers(0, 15))
        c = {"conv": 0.05 * n_conv, "skip": 0.0}
        n = {"conv": n_conv, "skip": n_skip}
        costs.append(c)
        counts.append(n)
        measured.append(0.1 + 0.8 * c["conv"] + 0.004 * n_skip + 0.001 * n_conv)
    # a weak pull towards zero recovers the per-block time of noise-free data; the default,
    # stronger pull (chosen on noisy measurements) shrinks it but keeps most of it
    fit = fit_grouped_calibration(costs, measured, 0.02, counts=counts, count_ridge=0.01)
    assert fit["op_block_ms"]["skip"] == pytest.approx(0.004, rel=0.1)
    default = fit_grouped_calibration(costs, measured, 0.02, counts=counts)
    assert 0.5 * 0.004 < default["op_block_ms"]["skip"] < fit["op_block_ms"]["skip"]
    pred = np.array([predict_from_costs(c, fit, 0.02, n) for c, n in zip(costs, counts)])
    assert np.max(np.abs(pred / np.array(measured) - 1)) < 0.01
    plain = fit_grouped_calibration(costs, measured, 0.02)
    assert plain["op_block_ms"] == {}
    pred_plain = np.array([predict_from_costs(c, plain, 0.02) for c in costs])
    assert np.max(np.abs(pred_plain / np.array(measured) - 1)) > 0.05


def _act_networks(act_ms_per_mb: float, seed: int = 0):
    """Networks of two op kinds whose measured time depends on activation MB as given."""
    rng = np.random.default_rng(seed)
    costs, counts, acts, measured = [], [], [], []
    for _ in range(30):
        n_a, n_b = int(rng.integers(1, 10)), int(rng.integers(1, 10))
        c = {"a": 0.05 * n_a, "b": 0.03 * n_b}
        act = float(rng.uniform(1.0, 8.0))
        costs.append(c)
        counts.append({"a": n_a, "b": n_b})
        acts.append(act)
        measured.append(0.1 + 0.9 * (c["a"] + c["b"]) + act_ms_per_mb * act)
    return costs, counts, acts, measured


def test_calibration_keeps_an_activation_term_only_where_it_predicts_better():
    costs, counts, acts, measured = _act_networks(0.05)
    fit = fit_grouped_calibration(costs, measured, 0.02, counts=counts, act_mb=acts)
    assert fit["act_term"]["kept"] and fit["ms_per_act_mb"] == pytest.approx(0.05, rel=0.1)
    assert fit["act_term"]["loo_mape_with"] < fit["act_term"]["loo_mape_without"]
    pred = np.array([predict_from_costs(c, fit, 0.02, n, a) for c, n, a in zip(costs, counts, acts)])
    assert np.max(np.abs(pred / np.array(measured) - 1)) < 0.01
    # times that do not depend on activation traffic: the term is dropped (zero)
    costs, counts, acts, measured = _act_networks(0.0)
    fit = fit_grouped_calibration(costs, measured, 0.02, counts=counts, act_mb=acts)
    assert not fit["act_term"]["kept"] and fit["ms_per_act_mb"] == 0.0
    # a negative time per MB (faster with more traffic) is never kept
    costs, counts, acts, measured = _act_networks(-0.01)
    fit = fit_grouped_calibration(costs, measured, 0.02, counts=counts, act_mb=acts)
    assert fit["act_term"]["fitted_ms_per_mb"] < 0 and fit["ms_per_act_mb"] == 0.0
    # without activation data the fit is the one it always was
    assert "ms_per_act_mb" not in fit_grouped_calibration(costs, measured, 0.02, counts=counts)


def test_predictor_adds_each_blocks_activation_time(tmp_path):
    space = tiny_mbconv()
    t = synthetic_table(space)
    for i, e in enumerate(t.entries.values()):
        e.act_mb = 0.1 * (i % 5)
    arch = space.sample(0)
    before = LatencyPredictor(t, space).predict(arch)
    t.calibration = {**t.calibration, "ms_per_act_mb": 0.2}
    t.save(tmp_path / "t.json")
    again = load_table(tmp_path / "t.json")
    assert [e.act_mb for e in again.entries.values()] == [e.act_mb for e in t.entries.values()]
    pred = LatencyPredictor(again, space)
    extra = 0.2 * sum(t.entries[b.key].act_mb for b in space.latency_terms(arch))
    assert pred.predict(arch) == pytest.approx(before + extra)
    archs = [space.sample(s) for s in range(20)]
    assert np.array_equal(pred.predict_many(archs), np.array([pred.predict(a) for a in archs]))
    # a bad value is a schema error
    d = again.to_dict()
    d["entries"][0]["act_mb"] = "big"
    (tmp_path / "bad.json").write_text(json.dumps(d))
    with pytest.raises(UserError, match="act_mb"):
        load_table(tmp_path / "bad.json")


def test_activation_mb_counts_what_the_convolutions_write():
    import torch

    from hwnas.latency.backends import activation_mb

    m = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 4, 1, stride=2))
    assert activation_mb(m, (3, 16, 16)) == pytest.approx((8 * 16 * 16 + 4 * 8 * 8) * 4 / 1e6)
