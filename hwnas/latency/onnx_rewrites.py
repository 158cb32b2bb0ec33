"""ONNX graph rewrites around ONNX Runtime's INT8 quantizer (``int8.quantize_int8``), all measured
(BENCHMARKS.md, "Export").

- global average pooling written as ``ReduceMean`` over H, W (what torch's ``x.mean((2, 3))``
  exports to) becomes ``GlobalAveragePool`` before quantization: ORT has no quantized
  ReduceMean in QDQ form and left every SE block's and the head's pooling in float between a
  Dequantize and a Quantize; ``GlobalAveragePool`` runs as ``QLinearGlobalAveragePool``;
- hard-sigmoid and hard-swish become Add, Clip and Mul (``hard_activations_to_int8_ops``), so
  that they run as QLinearAdd and QLinearMul instead of in float between Dequantize and Quantize;
  after quantization the multiply by 1/6 is folded into a Dequantize scale
  (``fold_scales_into_dequantize``): one QLinearAdd and one QLinearMul per hard-swish; an SE
  block's gate gets its ``+ 3`` from its convolution's bias, so it costs no operator at all;
- the file is compacted (``compact``): tensor names shortened to a few characters (the QDQ
  graph has three to four times as many tensors as the float one, and their generated names
  were about a tenth of a model's file), and all-zero zero points of convolution weights and
  biases dropped (they are optional and default to zero; ORT still fuses each Conv into
  ``QLinearConv``).

The quantized graph stays standard ONNX in QDQ form; ONNX Runtime fuses it into QLinearConv,
QLinearAdd, QLinearMul, QLinearGlobalAveragePool and QGemm when it loads the model, with no
float operation left between the first Quantize and the last Dequantize of an MBConv network.
"""

from __future__ import annotations

import numpy as np


def spatial_means_to_global_pool(model):
    """``ReduceMean`` over axes (2, 3) of a 4-D tensor -> ``GlobalAveragePool`` (then ``Flatten``
    when the mean dropped the axes). Returns the number of nodes rewritten; ``model`` changes in place."""
    from onnx import helper, numpy_helper

    g = model.graph
    consts = {t.name: t for t in g.initializer}
    consts.update({n.output[0]: a.t for n in g.node if n.op_type == "Constant" for a in n.attribute if a.name == "value"})

    def replace(n):
        if n.op_type != "ReduceMean":
            return None
        attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        axes = attrs.get("axes")
        if axes is None and len(n.input) > 1 and n.input[1] in consts:
            axes = numpy_helper.to_array(consts[n.input[1]]).tolist()
        if axes is None or sorted(int(a) for a in axes) not in ([2, 3], [-2, -1]) or attrs.get("noop_with_empty_axes"):
            return None
        if attrs.get("keepdims", 1):
            return [helper.make_node("GlobalAveragePool", [n.input[0]], list(n.output), name=n.name)]
        pooled = n.output[0] + "_pooled"
        return [helper.make_node("GlobalAveragePool", [n.input[0]], [pooled], name=n.name),
                helper.make_node("Flatten", [pooled], list(n.output), name=n.name + "_flatten", axis=1)]

    # (an axes initializer nothing reads any more is dropped with the node)
    return _rewrite_nodes(g, replace)


def unit_batchnorms_to_adds(model) -> int:
    """A 4-D ``BatchNormalization`` with scale 1, mean 0, variance 1 and epsilon 0 -> an ``Add``
    of its bias (the same values). That is how an nb201 cell writes a per-channel shift for ONNX
    Runtime's blocked float layout (``add_channel_shift``); ORT's quantizer would leave it in
    float between a Dequantize and a Quantize, while an Add runs as QLinearAdd. Returns the
    number of nodes rewritten; ``model`` changes in place."""
    from onnx import helper, numpy_helper

    g = model.graph
    inits = {t.name: t for t in g.initializer}
    ranks = {v.name: len(v.type.tensor_type.shape.dim) for v in list(g.value_info) + list(g.input)
             if v.type.tensor_type.HasField("shape")}

    def replace(n):
        if (n.op_type != "BatchNormalization" or len(n.output) != 1 or len(n.input) != 5
                or not all(i in inits for i in n.input[1:]) or ranks.get(n.input[0]) != 4):
            return None
        eps = next((helper.get_attribute_value(a) for a in n.attribute if a.name == "epsilon"), 1e-5)
        scale, bias, mean, var = (numpy_helper.to_array(inits[i]) for i in n.input[1:])
        if not (eps == 0 and np.all(scale == 1) and np.all(mean == 0) and np.all(var == 1)):
            return None
        name = f"{n.output[0]}_shift"
        g.initializer.append(numpy_helper.from_array(bias.reshape(1, -1, 1, 1), name))
        return [helper.make_node("Add", [n.input[0], name], list(n.output), name=n.name)]

    return _rewrite_nodes(g, replace)


def _rewrite_nodes(g, replace) -> int:
    """Replace each node of ``g`` for which ``replace(node)`` returns a list of nodes by that list
    (None keeps the node); then drop initializers nothing reads. Returns how many were replaced."""
    nodes, done = [], 0
    for n in g.node:
        new = replace(n)
        if new is None:
            nodes.append(n)
        else:
            nodes.extend(new)
            done += 1
    if done:
        _replace_nodes(g, nodes)
    return done


def _replace_nodes(g, nodes, prune_dead: bool = False) -> None:
    """Give graph ``g`` these ``nodes``; with ``prune_dead``, first drop every node whose outputs
    nothing reads (repeatedly). Initializers no node reads any more are dropped as well."""
    outputs = {o.name for o in g.output}
    while prune_dead:
        used = {i for n in nodes for i in n.input} | outputs
        live = [n for n in nodes if any(o in used for o in n.output)]
        prune_dead = len(live) < len(nodes)
        nodes = live
    del g.node[:]
    g.node.extend(nodes)
    used = {i for n in g.node for i in n.input}
    kept = [t for t in g.initializer if t.name in used]
    del g.initializer[:]
    g.initializer.extend(kept)


def _graph_index(g) -> tuple[dict, dict, dict[str, list]]:
    """Initializers by name, the node producing each tensor, and the nodes reading each tensor."""
    producer = {o: n for n in g.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    return {t.name: t for t in g.initializer}, producer, consumers


FOLD_PREFIX = "hwnas_fold_scale_"  # Mul-by-constant nodes that fold_scales_into_dequantize removes


def hard_activations_to_int8_ops(model) -> int:
    """``HardSigmoid(x) = clip(alpha * x + beta, 0, 1)`` as ``clip(x + beta / alpha, 0, 1 / alpha)``
    times ``alpha``, and ``HardSwish(x)`` as ``x * HardSigmoid(x)`` (alpha 1/6, beta 1/2): Add,
    Clip and Mul, exact in float. ORT has no quantized hard-sigmoid: it stayed in float between a
    Dequantize and a Quantize, four nodes per hard-swish; Add runs as QLinearAdd with the Clip
    folded into its quantization range, and the final multiply by the constant ``alpha`` is
    removed after quantization by ``fold_scales_into_dequantize`` (the integers of ``x + 3`` read
    with ``alpha`` times their scale are ``alpha * (x + 3)``), so a hard-swish costs one
    QLinearAdd and one QLinearMul. A hard-sigmoid whose input is a convolution's output read by
    nothing else (the SE gate) has the shift added to that convolution's bias instead of an Add.
    Returns the number of nodes rewritten; ``model`` changes in place."""
    from onnx import helper, numpy_helper

    g = model.graph
    nodes, done = [], 0
    inits, producer, consumers = _graph_index(g)
    graph_outputs = {o.name for o in g.output}

    def const(name: str, value: float) -> str:
        g.initializer.append(numpy_helper.from_array(np.array(value, dtype=np.float32), name))
        return name

    def shift_conv_bias(x: str, shift: float, name: str) -> bool:
        """Add ``shift`` to the bias of the convolution that computes ``x``, when nothing else
        reads ``x``: the SE block's gate, whose ``+ 3`` then costs nothing at run time (a
        hard-swish reads its input twice and keeps its Add)."""
        conv = producer.get(x)
        if conv is None or conv.op_type != "Conv" or len(consumers.get(x, [])) != 1 or x in graph_outputs:
            return False
        w = inits.get(conv.input[1])
        has_bias = len(conv.input) > 2 and conv.input[2] != ""
        if w is None or (has_bias and conv.input[2] not in inits):
            return False
        bias = (numpy_helper.to_array(inits[conv.input[2]]).astype(np.float32) if has_bias
                else np.zeros(w.dims[0], dtype=np.float32))
        g.initializer.append(numpy_helper.from_array(bias + np.float32(shift), name))
        if has_bias:
            conv.input[2] = name
        else:
            conv.input.append(name)
        return True

    for n in g.node:
        if n.op_type not in ("HardSigmoid", "HardSwish"):
            nodes.append(n)
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        alpha, beta = (attrs.get("alpha", 0.2), attrs.get("beta", 0.5)) if n.op_type == "HardSigmoid" else (1 / 6, 0.5)
        p = f"hardact{done}_"
        x, out = n.input[0], n.output[0]
        gate = out if n.op_type == "HardSigmoid" else p + "gate"
        if n.op_type == "HardSigmoid" and shift_conv_bias(x, beta / alpha, p + "bias"):
            shifted = x
        else:
            shifted = p + "shifted"
            nodes.append(helper.make_node("Add", [x, const(p + "shift", beta / alpha)], [shifted]))
        nodes += [helper.make_node("Clip", [shifted, const(p + "lo", 0.0), const(p + "hi", 1.0 / alpha)], [p + "clipped"]),
                  helper.make_node("Mul", [p + "clipped", const(p + "alpha", alpha)], [gate], name=f"{FOLD_PREFIX}{done}")]
        if n.op_type == "HardSwish":
            nodes.append(helper.make_node("Mul", [x, gate], [out]))
        done += 1
    if done:
        _replace_nodes(g, nodes)  # also drops the biases replaced above
    return done


def fold_scales_into_dequantize(model) -> int:
    """Remove each ``FOLD_PREFIX`` Mul by a positive constant ``c`` from a QDQ graph, with the
    Quantize after it: ``Dequantize(q, s, z) -> Mul(c) -> Quantize(s2, z2) -> Dequantize(s2, z2)``
    becomes ``Dequantize(q, c * s, z)`` for each consumer, which gives the same values without
    requantizing (one elementwise node fewer at run time, and one rounding fewer). Mul nodes not in
    that pattern stay. Returns the number removed; ``model`` changes in place."""
    from onnx import numpy_helper

    g = model.graph
    inits, producer, consumers = _graph_index(g)

    def scalar(name: str) -> float | None:
        if name in inits:
            a = numpy_helper.to_array(inits[name])
            return float(a) if a.size == 1 else None
        n = producer.get(name)  # a constant the quantizer stored as int8 behind a Dequantize
        if n is not None and n.op_type == "DequantizeLinear" and all(i in inits for i in n.input):
            v, s = (numpy_helper.to_array(inits[i]).astype(np.float64) for i in n.input[:2])
            z = numpy_helper.to_array(inits[n.input[2]]).astype(np.float64) if len(n.input) > 2 else 0.0
            return float((v - z) * s) if np.size(v) == 1 and np.size(s) == 1 else None
        return None

    removed: set[int] = set()
    done = 0
    for m in g.node:
        if m.op_type != "Mul" or not m.name.startswith(FOLD_PREFIX):
            continue
        src = next((i for i in m.input if producer.get(i) is not None and producer[i].op_type == "DequantizeLinear"
                    and producer[i].input[0] not in inits), None)
        other = [i for i in m.input if i != src]
        c = scalar(other[0]) if src is not None and len(other) == 1 else None
        outs = consumers.get(m.output[0], [])
        if c is None or c <= 0 or len(outs) != 1 or outs[0].op_type != "QuantizeLinear":
            continue
        d1, q2 = producer[src], outs[0]
        dqs = consumers.get(q2.output[0], [])
        if not dqs or any(d.op_type != "DequantizeLinear" for d in dqs) or len(d1.input) < 2 or d1.input[1] not in inits:
            continue
        s = numpy_helper.to_array(inits[d1.input[1]])
        if s.size != 1:
            continue
        scale = numpy_helper.from_array((s * np.float32(c)).astype(s.dtype), m.name + "_scale")
        g.initializer.append(scale)
        for d in dqs:
            d.input[0] = d1.input[0]
            d.input[1] = scale.name
            if len(d1.input) > 2:
                if len(d.input) > 2:
                    d.input[2] = d1.input[2]
                else:
                    d.input.append(d1.input[2])
            elif len(d.input) > 2:
                del d.input[2]
        removed.update({id(m), id(q2)})
        if len(consumers.get(src, [])) == 1:
            removed.add(id(d1))
        done += 1
    if done:  # dead nodes: the constant's own Dequantize, and anything else only the removed nodes read
        _replace_nodes(g, [n for n in g.node if id(n) not in removed], prune_dead=True)
    return done


def compact(model, drop_zero_points: bool = True):
    """Shorten every internal tensor name, drop node names, doc strings, value_info and unused
    opset imports; with ``drop_zero_points``, remove all-zero zero points of the Dequantize nodes
    that feed convolutions (weights and biases). The graph's input and output names stay.
    ``model`` changes in place and is returned."""
    from onnx import numpy_helper

    g = model.graph
    if drop_zero_points:
        inits = {t.name: t for t in g.initializer}
        conv_inputs = {i for n in g.node if n.op_type == "Conv" for i in n.input}
        for n in g.node:
            if (n.op_type == "DequantizeLinear" and n.output[0] in conv_inputs and len(n.input) == 3
                    and n.input[0] in inits and n.input[2] in inits
                    and not numpy_helper.to_array(inits[n.input[2]]).any()):
                del n.input[2]
    keep = {v.name for v in g.input} | {v.name for v in g.output}
    names: dict[str, str] = {}

    def short(name: str) -> str:
        if name == "" or name in keep:
            return name
        if name not in names:
            names[name] = format(len(names), "x")
        return names[name]

    for n in g.node:
        for i, v in enumerate(n.input):
            n.input[i] = short(v)
        for i, v in enumerate(n.output):
            n.output[i] = short(v)
        n.name = ""
        n.doc_string = ""
    used = {i for n in g.node for i in n.input} | keep
    kept = []
    for t in g.initializer:
        if t.name in names or t.name in used:
            t.name = short(t.name)
            t.doc_string = ""
            kept.append(t)
    del g.initializer[:]
    g.initializer.extend(kept)
    del g.value_info[:]
    domains = {n.domain for n in g.node} | {""}
    ops = [o for o in model.opset_import if o.domain in domains or o.domain == "ai.onnx"]
    del model.opset_import[:]
    model.opset_import.extend(ops)
    model.doc_string = ""
    g.doc_string = ""
    return model


def compact_bytes(data: bytes, drop_zero_points: bool = True) -> bytes:
    import onnx

    return compact(onnx.load_from_string(data), drop_zero_points).SerializeToString()
