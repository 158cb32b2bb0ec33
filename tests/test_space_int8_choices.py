"""INT8-friendly per-stage choices of the MBConv spaces (block kind, activation, SE): the default
space is exactly as before, the extended space parses, searches, times, trains and exports."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from hwnas.accuracy.supernet import Supernet
from hwnas.errors import UserError
from hwnas.space import SearchSpace, get_space, space_from_config
from test_supernet import _scramble  # non-trivial weights and BN statistics

PROFILE = Path(__file__).resolve().parent.parent / "profiles" / "mbv3-32_ort-cpu_t1_b1.json"
INT8 = dict(block_kinds=["mbconv", "fused"], act_choices=["relu", "hswish"], se_choices=[False, True])
# two stages (8 px, then 4 px), two widths, two kernels and expands: everything in seconds
TINY = dict(image_size=8, strides=[1, 2], widths=[[8, 16], [16, 24]], se=[False, True], acts=["relu", "hswish"],
            depths=[1, 2], kernels=[3, 5], expands=[2, 3], stem_channels=8, head_channels=32)


def tiny(**kw):
    return get_space("mbv3-32", **{**TINY, **INT8, **kw})


@pytest.fixture(autouse=True)
def _env(tmp_path, monkeypatch):
    monkeypatch.setenv("HWNAS_CACHE", str(tmp_path / "cache"))
    torch.set_num_threads(1)


def _with(arch, **fields):
    d = arch.to_dict()
    d.update(fields)
    return d


# ---- the default space is unchanged --------------------------------------------------------

def test_default_spaces_are_unchanged():
    space = get_space("mbv3-32")
    # values computed before the per-stage settings existed
    assert space.config_hash() == "7a48767d9ef0" and get_space("mbv3-224").config_hash() == "3debf142e979"
    assert len(space.decisions()) == 50 and space.size() == 5319711531271382400000
    assert not {"block_kinds", "act_choices", "se_choices"} & set(space.config_dict())
    fixed = '{"depths":[1,1,1,1,1],"expands":[[3],[3],[3],[3],[3]],"kernels":[[3],[3],[3],[3],[3]],' \
            '"space":"mbv3-32","widths":[16,24,40,64,96]}'
    assert space.parse(fixed).id == "1ab03c8040fe" == space.smallest().id
    assert set(space.largest().keys()) == {"depths", "widths", "kernels", "expands"}
    assert space.reference_block().key == "mbconv|in=16x32x32|act=relu|c_out=16|e=3|k=3|s=1|se=0"
    keys = sorted(b.key for b in space.all_latency_terms())
    assert len(keys) == 463 and hashlib.sha1("\n".join(keys).encode()).hexdigest()[:12] == "c41565ab68d4"
    # the settings at their defaults, given explicitly, are the same space
    assert get_space("mbv3-32", block_kinds=["mbconv"], act_choices=[], se_choices=[]).config_hash() == "7a48767d9ef0"
    # the reference tables still load and cover the space
    from hwnas.latency import LatencyPredictor, load_table

    table = load_table(PROFILE)
    assert LatencyPredictor(table, space).predict(space.smallest()) > 0
    assert set(keys) <= set(table.entries)


def test_default_supernet_parameters_are_unchanged():
    sd = Supernet(get_space("mbv3-32")).state_dict()
    names = json.dumps([(k, list(v.shape)) for k, v in sd.items()])
    assert len(sd) == 422 and hashlib.sha1(names.encode()).hexdigest()[:12] == "c01cc8988795"


# ---- the extended space --------------------------------------------------------------------

def test_preset_and_settings_give_the_extended_space():
    preset = get_space("mbv3-32-int8")
    n = preset.num_stages
    names = [d.name for d in preset.decisions()]
    assert len(names) == 50 + 3 * n
    assert names[:50] == [d.name for d in get_space("mbv3-32").decisions()]  # old genes keep their place
    assert names[50:] == [f"{p}{s}" for p in ("kind", "act", "se") for s in range(n)]
    assert get_space("mbv3-32", **INT8).config == preset.config
    assert preset.size() == get_space("mbv3-32").size() * 8**n
    assert set(preset.sample(0).keys()) == {"depths", "widths", "kernels", "expands", "kinds", "acts", "se"}
    assert space_from_config("mbv3-32-int8", preset.config_dict()).config_hash() == preset.config_hash()
    # one choice fixes every stage and adds no field
    relu_only = get_space("mbv3-32", act_choices=["relu"])
    assert len(relu_only.decisions()) == 50 and "acts" not in set(relu_only.sample(0).keys())
    assert {b.param("act") for b in relu_only.latency_terms(relu_only.largest()) if b.op == "mbconv"} == {"relu"}
    for bad in (dict(block_kinds=["depthwise"]), dict(block_kinds=[]), dict(se_choices=[0, 1]),
                dict(act_choices=["relu", "relu"]), dict(act_choices="relu")):
        with pytest.raises(UserError) as e:
            get_space("mbv3-32", **bad)
        assert str(e.value).startswith("invalid mbv3-32 settings") and "\n" not in str(e.value)


def test_spaces_that_search_fused_blocks_calibrate_their_tables_on_more_networks():
    """Fused and MBConv blocks get a calibration scale each: a table of a space searching both
    is fitted on 50 whole networks by default, one with a single block kind on 30."""
    assert get_space("mbv3-32").calibration_networks == 30
    assert get_space("mbv3-32-int8").calibration_networks == 50
    assert get_space("mbv3-32", block_kinds=["mbconv", "fused"]).calibration_networks == 50
    assert get_space("mbv3-32", block_kinds=["fused"]).calibration_networks == 30
    assert get_space("mbv3-32", act_choices=["relu", "hswish"], se_choices=[False, True]).calibration_networks == 30


def test_archs_round_trip_and_vary():
    space = tiny()
    seen = set()
    for seed in range(60):
        arch = space.sample(seed)
        assert space.parse(arch.to_json()) == arch and space.parse(json.loads(arch.to_json())).id == arch.id
        assert space.decode(space.encode(arch)) == arch
        assert len(space.encode(arch)) == len(space.decisions())
        m, c = space.mutate(arch, seed), space.crossover(arch, space.sample(seed + 100), seed)
        assert m != arch and space.parse(m.to_json()) == m and space.parse(c.to_json()) == c
        seen.update((f, v) for f in ("kinds", "acts", "se") for v in arch[f])
    assert seen == {("kinds", "mbconv"), ("kinds", "fused"), ("acts", "relu"), ("acts", "hswish"),
                    ("se", False), ("se", True)}
    assert space.smallest()["kinds"] == ("mbconv", "mbconv") and space.largest()["kinds"] == ("fused", "fused")
    assert space.smallest()["se"] == (False, False) and space.largest()["acts"] == ("hswish", "hswish")


@pytest.mark.parametrize("field,value,needle", [
    ("kinds", ["mbconv", "depthwise"], "kinds[1] = 'depthwise' is not allowed; choose one of: mbconv, fused"),
    ("acts", ["gelu", "relu"], "acts[0] = 'gelu' is not allowed; choose one of: relu, hswish"),
    ("se", [1, True], "se[0] = 1 is not allowed; choose one of: false, true"),
    ("kinds", ["fused"], "kinds must be a list with one entry per stage (2)"),
    ("acts", "relu", "acts must be a list with one entry per stage (2)"),
])
def test_invalid_stage_choices_are_one_line_user_errors(field, value, needle):
    space = tiny()
    with pytest.raises(UserError) as e:
        space.parse(_with(space.smallest(), **{field: value}))
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_fields_of_unsearched_settings_are_refused():
    space = tiny(act_choices=["hswish"])  # one activation: acts is no decision
    d = _with(space.smallest(), acts=["hswish", "hswish"])
    with pytest.raises(UserError, match="unknown field.*acts"):
        space.parse(d)
    d = space.smallest().to_dict()
    del d["kinds"]
    with pytest.raises(UserError, match="missing field.*kinds"):
        space.parse(d)
    with pytest.raises(UserError, match="unknown field.*kinds"):
        get_space("mbv3-32").parse(_with(get_space("mbv3-32").smallest(), kinds=["fused"] * 5))


def test_cheapest_is_exact_over_kinds_activations_and_se():
    space = tiny(expands=[3])
    assert space.size() < 20_000
    cost = lambda b: (sum(map(ord, b.key)) % 97) / 97.0  # arbitrary non-negative costs
    total = lambda a: sum(cost(b) for b in space.latency_terms(a))
    brute = SearchSpace.cheapest(space, cost)  # the base class enumerates every genome
    assert total(space.cheapest(cost)) == pytest.approx(total(brute))
    # a cost that only prices the style: the exact minimum takes the cheap one in every stage
    style_cost = lambda b: 0.0 if b.op in ("stem", "head") else (b.op == "mbconv") + 2 * (b.param("act") == "hswish") + 4 * b.param("se")
    best = space.cheapest(style_cost)
    assert best["kinds"] == ("fused", "fused") and best["acts"] == ("relu", "relu") and best["se"] == (False, False)


def test_latency_terms_key_the_kind_activation_and_se():
    space = tiny()
    base = space.parse(_with(space.smallest(), kinds=["mbconv", "mbconv"], acts=["relu", "relu"], se=[False, False]))
    variants = {
        "kind": _with(base, kinds=["fused", "mbconv"]),
        "act": _with(base, acts=["hswish", "relu"]),
        "se": _with(base, se=[True, False]),
    }
    first = space.latency_terms(base)[1]
    assert first.op == "mbconv" and first.param("act") == "relu" and first.param("se") == 0
    keys = {first.key}
    for what, d in variants.items():
        b = space.latency_terms(space.parse(d))[1]
        keys.add(b.key)
        assert (b.op, b.param("act"), b.param("se")) == {"kind": ("fused", "relu", 0), "act": ("mbconv", "hswish", 0),
                                                         "se": ("mbconv", "relu", 1)}[what]
        assert space.latency_terms(space.parse(d))[2] == space.latency_terms(base)[2]  # stage 1 untouched
    assert len(keys) == 4
    every = {b.key for b in space.all_latency_terms()}
    assert len(every) == len(space.all_latency_terms())
    assert {"fused", "mbconv"} <= {b.op for b in space.all_latency_terms()}
    for seed in range(30):
        assert {b.key for b in space.latency_terms(space.sample(seed))} <= every


def test_blocks_and_networks_build_with_the_right_shapes():
    space = tiny()
    for b in space.all_latency_terms():
        if b.op in ("mbconv", "fused") and b.param("k") == 5 and b.param("e") == 3:
            y = space.build_block(b).eval()(torch.randn(1, *b.input_shape))
            r = -(-b.input_shape[1] // b.param("s"))
            assert y.shape == (1, b.param("c_out"), r, r)
    for arch in [space.largest(), space.smallest(), space.sample(1)]:
        model = space.build(arch).eval()
        with torch.no_grad():
            y = model(torch.randn(2, *space.input_shape))
        assert y.shape == (2, space.num_classes) and torch.isfinite(y).all()
    fused = space.build(space.largest())
    assert type(fused.blocks[0]).__name__ == "FusedMBConv" and fused.blocks[1].residual


# ---- supernet and export -------------------------------------------------------------------

def _archs(space):
    mixed = space.parse(_with(space.largest(), kinds=["fused", "mbconv"], acts=["relu", "hswish"], se=[True, False],
                              depths=[2, 2], kernels=[[5, 3], [3, 5]], expands=[[2, 3], [3, 2]]))
    return [space.largest(), space.smallest(), mixed] + [space.sample(i) for i in range(3)]


@pytest.mark.parametrize("transform", [False, True])
def test_extracted_subnet_equals_supernet(transform):
    space = tiny()
    net = Supernet(space, kernel_transform=transform)
    _scramble(net)
    net.eval()
    assert any(".fused.conv.0.weight" in k for k in net.state_dict()) and any(".mbconv.se." in k for k in net.state_dict())
    x = torch.randn(3, *space.input_shape, generator=torch.Generator().manual_seed(2))
    outs = []
    for arch in _archs(space):
        net.set_active(arch)
        want = net(x)
        got = net.extract(arch).eval()(x)
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
        outs.append(want)
    # the kind, activation and SE each change the function (so each branch really runs)
    base = _archs(space)[2]
    for change in (dict(kinds=["mbconv", "mbconv"]), dict(acts=["hswish", "hswish"]), dict(se=[False, False])):
        net.set_active(_with(base, **change))
        assert not torch.allclose(net(x), outs[2])


def test_channel_sorting_keeps_the_largest_function_of_both_kinds():
    space = tiny()
    net = Supernet(space)
    _scramble(net)
    net.eval()
    x = torch.randn(2, *space.input_shape)
    largest_mbconv = _with(space.largest(), kinds=["mbconv", "mbconv"])
    before = []
    for arch in (space.largest(), largest_mbconv):
        net.set_active(arch)
        before.append(net(x))
    net.sort_channels()
    for arch, want in zip((space.largest(), largest_mbconv), before):
        net.set_active(arch)
        torch.testing.assert_close(net(x), want, rtol=1e-4, atol=1e-4)


def test_supernet_trains_and_rates_subnets(tmp_path):
    from hwnas.accuracy.supernet.subnet_eval import accuracy, recalibrate_bn
    from hwnas.accuracy.supernet.train import SupernetTrainConfig, load_supernet, train_supernet
    from hwnas.data import load_dataset

    space = tiny()
    cfg = SupernetTrainConfig(data="digits", epochs=1, batch_size=32, lr=0.1, train_limit=96, seed=0, device="cpu")
    before = Supernet(space).state_dict()
    train_supernet(space, cfg, tmp_path / "sn.pt", progress=False)
    net, meta = load_supernet(tmp_path / "sn.pt")  # the space is rebuilt from the checkpoint's config
    assert net.space.config == space.config and meta["config_hash"] == space.config_hash()
    after = net.state_dict()
    for branch in ("mbconv", "fused"):  # the sandwich trains both kinds
        k = f"blocks.0.{branch}.project.0.weight"
        assert not torch.equal(before[k], after[k]), k
    ds = load_dataset("digits", image_size=8)
    for arch in (space.largest(), space.smallest()):
        model = net.extract(arch)
        recalibrate_bn(model, ds, 100)
        assert 0.0 <= accuracy(model, ds) <= 1.0


def test_extracted_subnet_exports_to_onnx_and_runs_in_ort():
    import io

    import onnxruntime as ort

    space = tiny()
    net = Supernet(space)
    _scramble(net)
    net.eval()
    arch = _archs(space)[2]  # fused + MBConv, ReLU + h-swish, SE on + off
    model = net.extract(arch).eval()
    x = torch.randn(2, *space.input_shape)
    buf = io.BytesIO()
    torch.onnx.export(model, (x[:1],), buf, input_names=["input"], output_names=["output"], opset_version=17,
                      dynamo=False, dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})
    sess = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"input": x.numpy()})[0]
    with torch.no_grad():
        net.set_active(arch)
        want = net(x).numpy()
    assert np.abs(got - want).max() < 1e-4
