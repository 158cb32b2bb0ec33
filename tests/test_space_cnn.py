"""The plain layer-chain space ``cnn``: parsing, shapes, sampling, latency terms, profiling, export."""

import json
import random

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hwnas.errors import UserError
from hwnas.space import SearchSpace, get_space, list_spaces, space_from_config

from latency_helpers import FAST

# digits-sized, every menu value once or twice, small enough to enumerate (4,096 genomes)
TINY = dict(image_size=8, depths=[1, 2], channels=[4, 8], kernels=[1, 3], strides=[1, 2], pools=["none", "max2"],
            acts=["relu", "tanh"], fc_units=[0, 4], min_resolution=1)
# the whole menu on 8x8 one-channel inputs
FULL_DIGITS = dict(image_size=8, in_channels=1, depths=[2, 3, 4], channels=[8, 16], kernels=[3, 5, 7],
                   pools=["none", "max2", "avg2"], acts=["relu", "hswish", "sigmoid", "tanh"], fc_units=[0, 32],
                   min_resolution=1)


def genomes(space):
    return st.tuples(*(st.integers(0, len(d.choices) - 1) for d in space.decisions())).map(list)


def arch_dict(depth, **over):
    d = {"depth": depth, "channels": [16] * depth, "kernels": [3] * depth, "strides": [1] * depth,
         "pools": ["none"] * depth, "acts": ["relu"] * depth, "fc_units": 0}
    d.update(over)
    return d


def forward(space, arch, batch=2):
    model = space.build(arch).eval()
    with torch.no_grad():
        y = model(torch.randn(batch, *space.input_shape))
    assert y.shape == (batch, space.num_classes) and torch.isfinite(y).all()


def test_registered_with_a_profilable_table():
    assert "cnn" in list_spaces()
    space = get_space("cnn")
    assert space.input_shape == (3, 32, 32) and space.num_classes == 10
    terms = space.all_latency_terms()
    assert len(terms) == 528 and len({b.key for b in terms}) == len(terms)
    assert {b.op for b in terms} == {"conv", "fc"}
    # resolutions walked from 32 by halvings down to the preset's 4x4 floor
    assert {b.input_shape[1] for b in terms} == {32, 16, 8, 4}


@pytest.mark.parametrize("settings_", [{}, FULL_DIGITS], ids=["cnn", "digits"])
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_any_genome_decodes_to_a_valid_arch_that_round_trips(settings_, data):
    space = get_space("cnn", **settings_)
    arch = space.decode(data.draw(genomes(space)))
    text = arch.to_json()
    again = space.parse(text)  # parse checks the shapes: a repaired genome is a valid arch
    assert again == arch and again.id == arch.id
    assert space.decode(space.encode(arch)) == arch
    assert len(space.encode(arch)) == len(space.decisions())
    shuffled = dict(reversed(list(json.loads(text).items())))
    assert space.parse(json.dumps(shuffled)).id == arch.id
    assert all(len(arch[f]) == arch["depth"] for f in ("channels", "kernels", "strides", "pools", "acts"))


def test_inactive_genes_are_ignored_and_encode_to_zero():
    space = get_space("cnn")
    layer = [1, 1, 0, 1, 1]  # 32 channels, kernel 5, stride 1, max pooling, h-swish
    g = [0] + layer * space.max_depth + [1]  # depth 2: only the first two layers count
    arch = space.decode(g)
    assert arch["depth"] == 2 and list(arch["pools"]) == ["max2", "max2"]
    enc = space.encode(arch)
    assert enc[1:11] == layer * 2 and enc[11:-1] == [0] * (len(enc) - 12) and enc[-1] == 1
    # the surrogate's features do not see the ignored genes either
    X = space.genome_features([g, enc])
    assert X.shape[0] == 2 and np.array_equal(X[0], X[1])


@pytest.mark.parametrize("change,needle", [
    ({"kernels": [3, 4]}, "kernels[1] = 4"),
    ({"channels": [16, 99]}, "channels[1] = 99"),
    ({"pools": ["none", "max3"]}, "pools[1] = 'max3'"),
    ({"acts": ["relu", "gelu"]}, "acts[1] = 'gelu'"),
    ({"strides": [1, 3]}, "strides[1] = 3"),
    ({"fc_units": 100}, "fc_units = 100"),
    ({"depth": 9}, "depth = 9"),
    ({"depth": True}, "depth = True"),
])
def test_value_not_among_choices_names_field_and_allowed_values(change, needle):
    space = get_space("cnn")
    d = {**arch_dict(2), **change}
    with pytest.raises(UserError) as e:
        space.parse(d)
    assert needle in str(e.value) and "choose one of" in str(e.value)


def test_equal_values_parse_to_the_same_arch():
    space = get_space("cnn")
    assert space.parse(arch_dict(2, kernels=[3.0, 3], fc_units=0.0)).id == space.parse(arch_dict(2)).id


def test_malformed_archs_are_one_line_user_errors():
    space = get_space("cnn")
    cases = [
        ({**arch_dict(2), "width": 3}, "unknown field(s) width"),
        ({k: v for k, v in arch_dict(2).items() if k != "pools"}, "missing field(s) pools"),
        (arch_dict(3, kernels=[3, 3]), "kernels must list one value per layer (3, the depth), got 2 values"),
        (arch_dict(2, acts="relu"), "acts must list one value per layer (2, the depth), got str"),
        ('{"space": "nb201", "cell": "x"}', "belongs to space 'nb201'"),
        ("not json", "not JSON"),
    ]
    for bad, needle in cases:
        with pytest.raises(UserError) as e:
            space.parse(bad)
        assert needle in str(e.value) and "\n" not in str(e.value)


def test_a_map_shrunk_below_the_floor_is_refused_naming_the_layer():
    space = get_space("cnn")  # 32x32, floor 4x4
    # 32 -> 16 -> 8 -> 4 -> 2: the fourth layer (index 3) goes too far
    with pytest.raises(UserError) as e:
        space.parse(arch_dict(5, strides=[2, 2, 2, 2, 1]))
    msg = str(e.value)
    assert "layer 3 (stride 2, pool none)" in msg and "4x4 map to 2x2" in msg and "smallest allowed 4x4" in msg
    assert "use stride 1 or pool none" in msg and "\n" not in msg
    # stride and pool together: 32 -> 8 -> 2
    with pytest.raises(UserError, match="layer 1 \\(stride 2, pool max2\\)"):
        space.parse(arch_dict(2, strides=[2, 2], pools=["max2", "max2"]))
    space.parse(arch_dict(3, strides=[2, 2, 2]))  # down to exactly 4x4 is fine
    # without a floor, a 2x2 pool of a 1x1 map is what cannot exist
    digits = get_space("cnn", **FULL_DIGITS)
    with pytest.raises(UserError, match="layer 3 \\(stride 1, pool avg2\\) shrinks the 1x1 map to 0x0"):
        digits.parse(arch_dict(4, channels=[8] * 4, pools=["max2", "max2", "max2", "avg2"], fc_units=0))


def test_decode_repairs_downsampling_past_the_floor():
    space = get_space("cnn")
    g = [space.config.depths.index(8)]
    for _ in range(8):  # every layer asks for stride 2 and a pool
        g += [0, 0, space.config.strides.index(2), space.config.pools.index("max2"), 0]
    arch = space.decode(g + [0])
    # 32 -> 8 (stride and pool); on 8x8 the pool goes (2x2 < 4x4), then on 4x4 the stride too
    assert list(arch["strides"]) == [2, 2] + [1] * 6
    assert list(arch["pools"]) == ["max2"] + ["none"] * 7
    assert space.latency_terms(arch)[-1].input_shape == (16, 4, 4)


def test_sampled_mutated_and_crossed_archs_are_valid_and_build():
    space = get_space("cnn")
    rng = random.Random(0)
    archs = [space.sample(rng) for _ in range(200)]
    assert len({a.id for a in archs}) == 200
    assert [space.sample(7).id] * 2 == [space.sample(7).id, space.sample(7).id]
    for i, a in enumerate(archs[:40]):
        m = space.mutate(a, i)
        c = space.crossover(a, archs[i + 1], i)
        assert m != a and space.parse(m.to_json()) == m and space.parse(c.to_json()) == c
    for a in archs[:4] + [space.smallest(), space.largest()]:
        forward(space, a)
    digits = get_space("cnn", **FULL_DIGITS)
    assert digits.input_shape == (1, 8, 8)
    for seed in range(4):
        forward(digits, digits.sample(seed))
    model = space.build(archs[0], num_classes=3).eval()
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 3)


@pytest.mark.parametrize("settings_", [{}, FULL_DIGITS, TINY], ids=["cnn", "digits", "tiny"])
def test_latency_terms_are_in_the_table_and_cover_every_module(settings_):
    from hwnas.search.objectives import CostModel

    space = get_space("cnn", **settings_)
    keys = {b.key for b in space.all_latency_terms()}
    rng = random.Random(1)
    used: set[str] = set()
    for _ in range(500):
        a = space.sample(rng)
        terms = space.latency_terms(a)
        assert len(terms) == a["depth"] + 1 and terms[-1].op == "fc"
        used |= {b.key for b in terms}
    assert used <= keys
    for a in (space.smallest(), space.largest()):
        assert {b.key for b in space.latency_terms(a)} <= keys
    # every module of a network belongs to exactly one term: parameters and FLOPs add up
    arch = space.sample(3)
    assert CostModel(space)(arch) == CostModel(space, whole=True)(arch)


def test_size_and_cheapest_match_brute_force_on_a_tiny_space():
    space = get_space("cnn", **TINY)
    brute = {space.decode(g) for g in _all_genomes(space)}
    assert space.size() == len(brute)
    # made-up additive costs, seeded, some negative (the programme is exact for any sign)
    rng = random.Random(0)
    table = {b.key: rng.uniform(-0.2, 1.0) for b in space.all_latency_terms()}
    for cost in (lambda b: table[b.key], lambda b: 1.0 + 0.0 * table[b.key], lambda b: -table[b.key]):
        total = lambda a: sum(cost(b) for b in space.latency_terms(a))  # noqa: E731
        want = min(total(a) for a in brute)
        assert total(space.cheapest(cost)) == pytest.approx(want, abs=1e-12)
        assert total(SearchSpace.cheapest(space, cost)) == pytest.approx(want, abs=1e-12)
    big = get_space("cnn")
    assert big.size() > 10**12
    assert big.cheapest(lambda b: 1.0)["depth"] == 2  # fewest blocks


def _all_genomes(space):
    import itertools

    return itertools.product(*(range(len(d.choices)) for d in space.decisions()))


def test_bad_settings_are_user_errors():
    for bad, needle in [({"channel": [8]}, "unknown cnn setting(s): channel"),
                        ({"kernels": [3, 4]}, "kernels must be odd"),
                        ({"strides": [2]}, "strides must include 1"),
                        ({"pools": ["max2"]}, "pools must include none"),
                        ({"acts": ["gelu"]}, "unknown acts"),
                        ({"fc_units": [-1]}, "fc_units must be integers >= 0"),
                        ({"min_resolution": 64}, "larger than image_size")]:
        with pytest.raises(UserError, match="invalid cnn settings|unknown cnn setting") as e:
            get_space("cnn", **bad)
        assert needle in str(e.value)


def test_tiny_profile_predicts_a_sampled_arch(tmp_path):
    from hwnas.latency import LatencyPredictor, load_table
    from hwnas.latency.backends import get_backend
    from hwnas.latency.profiler import profile

    space = get_space("cnn", image_size=8, depths=[2, 3], channels=[8, 16], kernels=[3], strides=[1, 2],
                      pools=["none", "max2"], acts=["relu"], fc_units=[0, 16], min_resolution=4)
    assert len(space.all_latency_terms()) == 30
    out = tmp_path / "cnn.json"
    profile(space, get_backend("ort-cpu"), out, n_calibrate=4, n_validate=3, protocol=FAST)
    table = load_table(out)
    assert set(table.entries) == {b.key for b in space.all_latency_terms()}
    assert table.validation["n"] == 3
    assert space_from_config("cnn", table.space["config"]).config_hash() == space.config_hash()
    pred = LatencyPredictor(table)  # rebuilds the space from the stored configuration
    arch = space.sample(5)
    assert pred.predict(arch) > 0
    ms, cheapest = pred.min_latency()
    assert 0 < ms <= pred.predict(arch) + 1e-12


def test_onnx_export_runs_in_onnxruntime(tmp_path):
    import onnxruntime as ort

    space = get_space("cnn", **FULL_DIGITS)
    arch = space.parse(arch_dict(4, channels=[8, 16, 16, 8], kernels=[3, 5, 7, 3], strides=[1, 2, 1, 1],
                                 pools=["max2", "none", "avg2", "none"], acts=["relu", "hswish", "sigmoid", "tanh"],
                                 fc_units=32))
    torch.manual_seed(0)
    model = space.build(arch).eval()
    x = torch.randn(2, *space.input_shape)
    path = tmp_path / "cnn.onnx"
    torch.onnx.export(model, (x,), str(path), dynamo=False, input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "n"}, "y": {0: "n"}})
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (y,) = sess.run(None, {"x": x.numpy()})
    with torch.no_grad():
        want = model(x).numpy()
    assert y.shape == (2, 10) and np.allclose(y, want, atol=1e-5)


def test_a_hidden_fc_layer_trains_under_the_shared_loop():
    from hwnas.accuracy import get_evaluator

    # the shared loop's init gives every nn.Linear N(0, 0.01); the hidden FC layer must still learn
    # (with an nn.Linear hidden layer this arch reached 16%, chance being 10%)
    space = get_space("cnn", image_size=8, depths=[2], channels=[16], kernels=[3], pools=["none", "max2"],
                      acts=["relu"], fc_units=[32], min_resolution=2)
    arch = space.parse(arch_dict(2, pools=["max2", "none"], fc_units=32))
    ev = get_evaluator("train:10", space, data="digits", cache=False, threads=1)
    assert ev.evaluate([arch])[0] > 0.6


@pytest.mark.parametrize("image_size", [28, 9])
def test_term_input_shapes_are_the_shapes_the_network_computes(image_size):
    # odd sizes: convs round up (ceil), pools round down (floor); the table must key what runs
    space = get_space("cnn", **{**FULL_DIGITS, "image_size": image_size, "depths": [4, 6]})
    for seed in range(6):
        arch = space.sample(seed)
        model = space.build(arch).eval()
        seen = []
        parts = list(model.layers) + [model.head]
        hooks = [p.register_forward_pre_hook(lambda m, args: seen.append(tuple(args[0].shape[1:]))) for p in parts]
        with torch.no_grad():
            model(torch.randn(1, *space.input_shape))
        for h in hooks:
            h.remove()
        assert seen == [b.input_shape for b in space.latency_terms(arch)]
