import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hwnas.errors import UserError
from hwnas.space import get_space, list_spaces
from hwnas.space.nb201 import OPS, format_cell, live_edges, parse_cell

from latency_helpers import tiny_mbconv

SPACES = ["mbv3-32", "mbv3-224", "nb201"]


def genomes(space):
    return st.tuples(*(st.integers(0, len(d.choices) - 1) for d in space.decisions())).map(list)


@pytest.mark.parametrize("name", SPACES)
def test_registered(name):
    assert name in list_spaces()
    assert get_space(name).name == name


@pytest.mark.parametrize("name", SPACES)
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_arch_round_trips_through_json(name, data):
    space = get_space(name)
    arch = space.decode(data.draw(genomes(space)))
    text = arch.to_json()
    again = space.parse(text)
    assert again == arch and again.id == arch.id
    assert space.parse(json.loads(text)) == arch
    assert space.decode(space.encode(arch)) == arch
    # canonical: key order in the input does not change the id
    shuffled = dict(reversed(list(json.loads(text).items())))
    assert space.parse(json.dumps(shuffled)).id == arch.id


def test_ids_differ_between_archs():
    space = get_space("mbv3-32")
    ids = {space.sample(i).id for i in range(200)}
    assert len(ids) == 200
    assert all(len(i) == 12 for i in ids)


@pytest.mark.parametrize("field,value,needle", [
    ("kernels", [[4], [3], [3], [3], [3]], "kernels[0][0] = 4"),
    ("widths", [99, 24, 40, 64, 96], "widths[0] = 99"),
    ("depths", [0, 1, 1, 1, 1], "depths[0] = 0"),
])
def test_invalid_choice_names_field_and_allowed_values(field, value, needle):
    space = get_space("mbv3-32")
    d = space.smallest().to_dict()
    d[field] = value
    with pytest.raises(UserError) as e:
        space.parse(d)
    assert needle in str(e.value) and "choose one of" in str(e.value)


def test_invalid_inputs_are_user_errors():
    space = get_space("mbv3-32")
    for bad in ["not json", "[1, 2]", '{"space": "nb201", "cell": "x"}', '{"depths": [1]}', '{"depths": true}']:
        with pytest.raises(UserError):
            space.parse(bad)
    d = space.smallest().to_dict()
    d["kernels"][0] = [3, 3]  # more kernels than the stage's depth
    with pytest.raises(UserError, match="kernels\\[0\\]"):
        space.parse(d)
    with pytest.raises(UserError, match="unknown space"):
        get_space("nope")


def test_sample_is_seeded():
    space = get_space("nb201")
    assert [space.sample(7).id for _ in range(3)] == [space.sample(7).id] * 3


@pytest.mark.parametrize("name", SPACES)
def test_mutate_and_crossover_give_valid_distinct_archs(name):
    space = get_space(name)
    a, b = space.sample(1), space.sample(2)
    for seed in range(20):
        m = space.mutate(a, seed)
        assert m != a
        assert space.parse(m.to_json()) == m
        c = space.crossover(a, b, seed)
        assert space.parse(c.to_json()) == c


def _forward(space, arch, batch=2):
    model = space.build(arch).eval()
    with torch.no_grad():
        y = model(torch.randn(batch, *space.input_shape))
    assert y.shape == (batch, space.num_classes)
    assert torch.isfinite(y).all()


def test_every_mbv3_32_choice_builds_and_runs():
    space = get_space("mbv3-32")
    c = space.config
    n = len(c.strides)
    seen = {"depth": set(), "width": set(), "kernel": set(), "expand": set()}
    # one arch per depth choice; kernels, expands and widths rotate so every value of every
    # stage appears in some block
    for i, depth in enumerate(c.depths):
        arch = space.from_dict({
            "depths": [depth] * n,
            "widths": [w[(i + s) % len(w)] for s, w in enumerate(c.widths)],
            "kernels": [[c.kernels[(i + s + b) % len(c.kernels)] for b in range(depth)] for s in range(n)],
            "expands": [[c.expands[(i + 2 * s + b) % len(c.expands)] for b in range(depth)] for s in range(n)],
        })
        _forward(space, arch)
        seen["depth"].add(depth)
        seen["width"].update((s, w) for s, w in enumerate(arch["widths"]))
        seen["kernel"].update(k for row in arch["kernels"] for k in row)
        seen["expand"].update(e for row in arch["expands"] for e in row)
    assert seen["depth"] == set(c.depths)
    assert seen["kernel"] == set(c.kernels) and seen["expand"] == set(c.expands)
    assert seen["width"] == {(s, w) for s, ws in enumerate(c.widths) for w in ws}
    _forward(space, space.largest())


def test_mbv3_224_builds_and_runs():
    space = get_space("mbv3-224")
    _forward(space, space.smallest(), batch=1)
    _forward(space, space.sample(3), batch=1)


def test_every_nb201_op_builds_and_runs():
    space = get_space("nb201")
    for op in OPS:
        _forward(space, space.parse(format_cell([op] * 6)))
    for seed in range(2):
        _forward(space, space.sample(seed))


def test_nb201_string_round_trip_and_errors():
    s = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
    assert format_cell(parse_cell(s)) == s
    space = get_space("nb201")
    assert space.parse(s)["cell"] == s
    for bad in ["|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|", "|none~0|+|none~0|", "|none~1|+|none~0|none~1|+|none~0|none~1|none~2|"]:
        with pytest.raises(UserError):
            space.parse(bad)


def test_nb201_all_table_strings_round_trip(nb201_csv):
    import csv

    space = get_space("nb201")
    with open(nb201_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 15625
    cells = set()
    for r in rows:
        assert format_cell(parse_cell(r["arch_str"])) == r["arch_str"]
        cells.add(space.parse(r["arch_str"]).id)
    assert len(cells) == 15625 == space.size()


def test_nb201_dead_edges_are_dropped():
    # node 1 feeds nothing (edges 1->2 and 1->3 are none), so the conv on 0->1 is dead code
    ops = parse_cell("|nor_conv_3x3~0|+|skip_connect~0|none~1|+|none~0|none~1|nor_conv_1x1~2|")
    assert [(j, i) for j, i, _ in live_edges(ops)] == [(2, 0), (3, 2)]


def test_latency_terms_are_in_the_enumeration():
    for space in [get_space("mbv3-32"), get_space("nb201"), tiny_mbconv()]:
        keys = {b.key for b in space.all_latency_terms()}
        for seed in range(30):
            assert {b.key for b in space.latency_terms(space.sample(seed))} <= keys


def test_cheapest_is_exact_on_a_tiny_space():
    import itertools

    space = tiny_mbconv()
    cost = lambda b: (sum(map(ord, b.key)) % 97) / 97.0  # arbitrary non-negative costs
    best = space.cheapest(cost)
    total = lambda a: sum(cost(b) for b in space.latency_terms(a))
    brute = min(total(space.decode(g)) for g in itertools.product(*(range(len(d.choices)) for d in space.decisions())))
    assert total(best) == pytest.approx(brute)


def test_settings_change_the_config_hash():
    assert get_space("mbv3-32").config_hash() == get_space("mbv3-32").config_hash()
    assert tiny_mbconv().config_hash() != get_space("mbv3-32").config_hash()
    with pytest.raises(UserError, match="unknown mbv3-32 setting"):
        get_space("mbv3-32", colour="red")


def test_nb201_cell_shares_relu_and_pooling_per_node():
    """A node's ReLU and average pooling are computed once however many edges read them: the
    output equals the edge-by-edge sum, and the latency terms count each once."""
    from hwnas.space.nb201_modules import Cell

    space = get_space("nb201")
    for seed in range(20):
        ops = parse_cell(space.sample(seed)["cell"])
        cell = Cell(ops, 8).eval()
        x = torch.randn(2, 8, 6, 6)
        nodes = [x, None, None, None]
        for j in (1, 2, 3):
            ys = [cell.ops[f"{i}->{j}"](nodes[i] if nodes[i] is not None else x * 0) for (to, i) in cell.edges if to == j]
            nodes[j] = sum(ys[1:], ys[0]) if ys else None
        expected = nodes[3] if nodes[3] is not None else x * 0
        assert torch.allclose(cell(x), expected, atol=1e-6)
    cell = "|avg_pool_3x3~0|+|avg_pool_3x3~0|nor_conv_1x1~1|+|avg_pool_3x3~0|nor_conv_3x3~1|skip_connect~2|"
    ops = [b.op for b in space.latency_terms(space.parse(cell))]
    per_cell = {op: ops.count(op) // (3 * space.config.cells_per_stage) for op in set(ops) - {"stem", "resblock", "head"}}
    # pooling of node 0 once (3 edges read it), one ReLU of node 1 for its two convolutions;
    # node 2 = pool + conv (one fusable addition), node 3 = pool + conv + skip (one fusable, one plain)
    assert per_cell == {"avg_pool_3x3": 1, "relu": 1, "nor_conv_1x1": 1, "nor_conv_3x3": 1, "skip_connect": 1,
                        "add_conv": 2, "add": 1}


def _written_cell(cell, x):
    """The cell computed edge by edge as written, zero nodes as ``x * 0``."""
    nodes = [x, None, None, None]
    for j in (1, 2, 3):
        ys = [cell.ops[f"{i}->{j}"](nodes[i] if nodes[i] is not None else x * 0) for (to, i) in cell.edges if to == j]
        nodes[j] = sum(ys[1:], ys[0]) if ys else None
    return nodes[3] if nodes[3] is not None else x * 0


def test_nb201_zero_nodes_fold_away_in_inference():
    """In eval mode a cell with a zero node computes no zeros (skips and poolings of it vanish,
    a convolution of it adds its BatchNorm's shift) and gives the written cell's output; in
    training mode it runs as written."""
    import itertools
    import random

    from hwnas.space.nb201 import needs_zero, zero_folding
    from hwnas.space.nb201_modules import Cell

    cells = [ops for ops in itertools.product(OPS, repeat=6) if needs_zero(ops)]
    foldable = [ops for ops in cells if zero_folding(ops) is not None]
    assert 0 < len(foldable) < len(cells)  # cut-off outputs and convolutions of constants stay as written
    torch.manual_seed(0)
    for ops in random.Random(0).sample(foldable, 40) + random.Random(1).sample(cells, 10):
        cell = Cell(ops, 8)
        for bn in (m for m in cell.modules() if isinstance(m, torch.nn.BatchNorm2d)):
            bn.running_mean.normal_()
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.data.normal_()
            bn.bias.data.normal_()
        x = torch.randn(2, 8, 6, 6)
        with torch.no_grad():
            assert torch.allclose(cell.eval()(x), _written_cell(cell, x), atol=1e-5)
    # a zero node (node 1) read by a 3x3 convolution and a 1x1 convolution: the graph keeps
    # only the two convolutions of live tensors and multiplies nothing by zero
    import onnx

    from hwnas.latency.backends import export_onnx_bytes

    ops = parse_cell("|none~0|+|nor_conv_1x1~0|nor_conv_3x3~1|+|avg_pool_3x3~0|nor_conv_1x1~1|nor_conv_1x1~2|")
    kinds = [n.op_type for n in onnx.load_from_string(export_onnx_bytes(Cell(ops, 8).eval(), (1, 8, 6, 6))).graph.node]
    assert "Mul" not in kinds and kinds.count("Conv") == 2
    # its latency terms: no zero tensor and no convolution of it, two shifts into nodes with a
    # convolution among their inputs
    space = get_space("nb201")
    terms = [b.op for b in space.cell_terms(ops, 16, 32)]
    assert sorted(terms) == sorted(["nor_conv_1x1", "nor_conv_1x1", "relu", "relu", "avg_pool_3x3",
                                    "add_conv", "shift_conv", "shift_conv"])
    assert sorted(b.param("k") for b in space.cell_terms(ops, 16, 32) if b.op == "shift_conv") == [1, 3]
    # training runs the cell as written (BatchNorm statistics of the zero node's convolutions)
    cell = Cell(ops, 8).train()
    x = torch.randn(4, 8, 6, 6)
    assert torch.allclose(cell(x), _written_cell(cell, x), atol=1e-5)


def test_nb201_shift_in_a_sum_without_convolution_exports_as_batchnorm(tmp_path):
    """Where a node sum has a shift but no convolution to take it into its bias, the ONNX graph
    carries it as a BatchNormalization (kept in ONNX Runtime's blocked layout) rather than an
    Add of a broadcast constant; values stay those of the written cell. With a dynamic batch
    axis nothing is computed from the input's shape."""
    import numpy as np
    import onnx
    import onnxruntime as ort

    from hwnas.exporters.onnx_io import to_onnx
    from hwnas.latency.backends import export_onnx_bytes
    from hwnas.latency.ort_runner import make_session
    from hwnas.space.nb201_modules import Cell

    # node 1 is zero; node 3 = skip(x) + conv3x3(node 1) + skip(node 2): its shift has no
    # convolution among the node's live inputs
    ops = parse_cell("|none~0|+|nor_conv_1x1~0|nor_conv_1x1~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|")
    torch.manual_seed(0)
    cell = Cell(ops, 8)
    for bn in (m for m in cell.modules() if isinstance(m, torch.nn.BatchNorm2d)):
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2.0)
        bn.bias.data.normal_()
    cell.eval()
    x = torch.randn(1, 8, 6, 6)
    with torch.no_grad():
        want = _written_cell(cell, x)
        assert torch.allclose(cell(x), want, atol=1e-5)
    data = export_onnx_bytes(cell, (1, 8, 6, 6))
    # the graph after ONNX Runtime's basic (layout-free) rewrites: the shift of node 2 in its
    # 1x1 convolution's bias, the one of node 3 a BatchNormalization after the node's sum
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    opts.optimized_model_filepath = str(tmp_path / "basic.onnx")
    ort.InferenceSession(data, sess_options=opts, providers=["CPUExecutionProvider"])
    kinds = sorted(n.op_type for n in onnx.load(str(tmp_path / "basic.onnx")).graph.node)
    assert kinds == ["Add", "BatchNormalization", "Conv", "Relu"]
    got = make_session(data).run(None, {"input": x.numpy()})[0]
    assert np.abs(got - want.numpy()).max() < 1e-5
    dynamic = onnx.load_from_string(to_onnx(cell, x))
    assert not {"Shape", "ConstantOfShape"} & {n.op_type for n in dynamic.graph.node}
