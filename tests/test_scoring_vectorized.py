"""The batched scoring paths (one-hot features from genomes, MBConv latency over genomes) give
exactly what the per-arch paths give."""

import copy
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from hwnas.accuracy.predictor import AccuracyPredictor, one_hot
from hwnas.errors import UserError
from hwnas.latency import LatencyPredictor, load_table
from hwnas.space import get_space

PROFILE = Path(__file__).resolve().parent.parent / "profiles" / "mbv3-32_ort-cpu_t1_b1.json"


def _archs(space, n, seed):
    rng = random.Random(seed)
    out = [space.sample(rng) for _ in range(n)]
    if hasattr(space, "smallest"):
        out += [space.smallest(), space.largest()]
    return out


@pytest.mark.parametrize("space_name", ["mbv3-32", "nb201"])
def test_features_equal_per_arch_one_hot(space_name):
    space = get_space(space_name)
    archs = _archs(space, 400, 1)
    pred = AccuracyPredictor(space, hidden=(32, 32))
    old = torch.tensor([one_hot(space, space.parse(a)) for a in archs], dtype=torch.float32)
    assert torch.equal(pred.features(archs), old)
    # dicts and JSON strings go through parsing, as before
    assert torch.equal(pred.features([a.to_dict() for a in archs[:10]] + [a.to_json() for a in archs[10:20]]), old[:20])
    assert pred.features([]).shape == (0, pred.n_in)


def test_predict_equals_per_arch_path():
    space = get_space("mbv3-32")
    archs = _archs(space, 300, 2)
    pred = AccuracyPredictor(space, hidden=(64, 64))
    pred.fit(archs[:40], [random.Random(i).random() for i in range(40)], epochs=3)
    with torch.no_grad():
        x = torch.tensor([one_hot(space, space.parse(a)) for a in archs], dtype=torch.float32)
        want = (pred.net(x).squeeze(1) * pred.y_std + pred.y_mean).clamp(0.0, 1.0).tolist()
    assert pred.predict(archs) == want


def test_features_reject_invalid_archs():
    space = get_space("mbv3-32")
    pred = AccuracyPredictor(space, hidden=(8,))
    bad = space.largest().to_dict()
    bad["kernels"][0][0] = 4
    with pytest.raises(UserError, match="kernels"):
        pred.features([space.smallest(), bad])
    with pytest.raises(UserError, match="space"):
        pred.features([get_space("nb201").largest()])


def test_latency_predict_many_equals_predict():
    space = get_space("mbv3-32")
    pred = LatencyPredictor(load_table(PROFILE), space)
    assert pred._mbconv_plan() is not None  # the vectorized path is the one under test
    archs = _archs(space, 2000, 3)
    got = pred.predict_many(archs)
    assert np.array_equal(got, np.array([pred.predict(a) for a in archs]))
    assert np.array_equal(pred.predict_many([a.to_dict() for a in archs[:5]]), got[:5])
    assert pred.predict_many([]).shape == (0,)


def test_latency_predict_many_reports_missing_entries():
    space = get_space("mbv3-32")
    table = copy.deepcopy(load_table(PROFILE))
    big = space.largest()
    missing = space.latency_terms(big)[-2].key
    del table.entries[missing]
    pred = LatencyPredictor(table, space)
    ok = [a for a in _archs(space, 50, 4) if missing not in {b.key for b in space.latency_terms(a)}]
    assert np.array_equal(pred.predict_many(ok), [pred.predict(a) for a in ok])
    with pytest.raises(UserError, match="no entry"):
        pred.predict_many(ok + [big])


def test_a_fit_with_a_large_negative_offset_predicts_no_less_than_one_empty_call():
    """Two noisy calibration networks can fit an offset that takes the smallest archs to zero or
    below; no network runs faster than an empty call, so predictions stop there, in both paths,
    and the space's minimum (what a budget is checked against) stays positive."""
    space = get_space("mbv3-32")
    table = copy.deepcopy(load_table(PROFILE))
    pred0 = LatencyPredictor(table, space)
    archs = _archs(space, 300, 6)
    before = pred0.predict_many(archs)
    table.calibration = {**table.calibration, "offset_ms": float(table.calibration["offset_ms"]) - float(np.median(before))}
    pred = LatencyPredictor(table, space)
    got = pred.predict_many(archs)
    assert pred.floor_ms > 0 and pred.base_ms + min(before) - pred0.base_ms < 0  # the shifted fit goes below zero
    assert np.array_equal(got, np.array([pred.predict(a) for a in archs]))
    assert got.min() == pred.floor_ms and (got > pred.floor_ms).sum() > 0
    above = got > pred.floor_ms  # the rest are the old predictions, shifted
    assert np.allclose(got[above], (before - (pred0.base_ms - pred.base_ms))[above], rtol=0, atol=1e-12)
    assert pred.min_latency()[0] == pred.floor_ms
    # an ordinary table's predictions are all above the floor: it changes nothing there
    assert before.min() > pred0.floor_ms


def test_latency_predict_many_equals_predict_with_searched_block_styles(tmp_path):
    """Fused blocks, activation and SE searched per stage: the vectorized path indexes each
    stage's style from its genes and still gives predict's floats."""
    from hwnas.latency.backends import get_backend
    from hwnas.latency.profiler import profile
    from latency_helpers import FAST

    space = get_space("mbv3-32", strides=(1, 2), widths=((8, 16), (16,)), se=(False, True), acts=("relu", "hswish"),
                      depths=(1, 2), kernels=(3,), expands=(3,), stem_channels=8, head_channels=32, image_size=8,
                      block_kinds=("mbconv", "fused"), act_choices=("relu", "hswish"), se_choices=(False, True))
    table = profile(space, get_backend("ort-cpu"), tmp_path / "t.json", n_calibrate=2, n_validate=0, protocol=FAST,
                    plain_units_step=False)
    pred = LatencyPredictor(table, space)
    assert pred._mbconv_plan() is not None
    archs = _archs(space, 300, 5)
    assert len({tuple(a["kinds"]) + tuple(a["acts"]) + tuple(a["se"]) for a in archs}) > 20
    assert np.array_equal(pred.predict_many(archs), np.array([pred.predict(a) for a in archs]))
