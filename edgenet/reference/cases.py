"""A shared table of small one-node test cases for every IR op.

``cases()`` yields ``(id, node, inputs, consts)``:

* ``node``: an IR node dict (``name``, ``op``, ``inputs``, ``outputs``, normalized
  ``attrs``),
* ``inputs``: a list aligned with ``node["inputs"]``: a float32 C-contiguous array for
  each activation input, ``None`` at constant and absent (``""``) inputs: exactly the
  ``inputs`` argument of ``OpImpl.run``,
* ``consts``: ``{name: edgenet.format.Packed}``.

Every case is deterministic (fixed seeds) and small (< 5k output elements). Compare a
backend with the reference like::

    from edgenet.reference import run_node
    from edgenet.reference.cases import cases
    for cid, node, inputs, consts in cases():
        want = run_node(node, inputs, consts)
        got = run_node(node, inputs, consts, backend=my_backend.OPS, policy="packed")
"""
from __future__ import annotations

import zlib

import numpy as np

from .. import ir
from ..format import pack


def _rng(key: str):
    return np.random.default_rng(zlib.crc32(key.encode()))


def _x(rng, *shape, lo=-2.0, hi=2.0):
    return np.ascontiguousarray(rng.uniform(lo, hi, size=shape).astype(np.float32))


def _weight(rng, enc, shape):
    """A Packed weight of the given encoding (levels + per-row scale for quantized)."""
    o = shape[0]
    if enc == "f32":
        return pack("f32", rng.normal(0, 0.5, size=shape).astype(np.float32))
    if enc == "f16":
        return pack("f16", rng.normal(0, 0.5, size=shape).astype(np.float16))
    lim = {"t2": 1, "q3": 2, "i8": 127}[enc]
    lv = rng.integers(-lim, lim + 1, size=shape)
    scale = rng.uniform(0.05, 0.5, size=o).astype(np.float32) / (lim ** 0.5)
    return pack(enc, lv, scale)


def _f32(a):
    return pack("f32", np.asarray(a, dtype=np.float32))


def _node(name, op, inputs, attrs):
    return {"name": name, "op": op, "inputs": list(inputs), "outputs": [name + ".out"],
            "attrs": attrs}


ACT_EXAMPLES = [
    None,
    ir.act_desc("None"),
    ir.act_desc("Relu"),
    ir.act_desc("LeakyRelu", 0.1),
    ir.act_desc("Elu", 0.7),
    ir.act_desc("Selu"),
    ir.act_desc("Sigmoid"),
    ir.act_desc("Tanh"),
    ir.act_desc("Clip", 0.0, 6.0),
    ir.act_desc("Clip", -0.5, 0.75),
    ir.act_desc("Clip"),  # absent min/max: +-FLT_MAX
    ir.act_desc("HardSigmoid", 0.25, 0.4),
    ir.act_desc("HardSwish"),
]


def _act_id(a):
    if a is None:
        return "null"
    return f"{a['kind']}_{a['alpha']:g}_{a['beta']:g}".replace("-", "m").replace("+", "")


# ------------------------------------------------------------------------ per op

def _conv_cases():
    # (id, N, C, H, W, O, kh, kw, strides, pads, dilations, group, enc, bias, residual, act)
    relu = ir.act_desc("Relu")
    specs = [
        ("basic_3x3", 1, 3, 8, 8, 4, 3, 3, [1, 1], [1, 1, 1, 1], [1, 1], 1, "f32", True, False, relu),
        ("1x1_spatial_k1", 1, 4, 1, 1, 3, 1, 1, [1, 1], [0, 0, 0, 0], [1, 1], 1, "f32", True, False, None),
        ("1x1_spatial_k3_pad1", 2, 2, 1, 1, 3, 3, 3, [1, 1], [1, 1, 1, 1], [1, 1], 1, "f32", True, False, None),
        ("stride_gt_kernel", 1, 2, 9, 10, 3, 2, 2, [3, 3], [0, 0, 0, 0], [1, 1], 1, "f32", True, False, None),
        ("asym_pads_s2", 1, 3, 7, 8, 4, 3, 3, [2, 2], [0, 1, 2, 0], [1, 1], 1, "f32", True, False, None),
        ("asym_strides", 1, 2, 8, 9, 3, 3, 2, [1, 3], [1, 0, 0, 1], [1, 1], 1, "f32", True, False, None),
        ("dilation", 1, 2, 10, 11, 3, 3, 3, [1, 1], [2, 1, 2, 3], [2, 3], 1, "f32", True, False, None),
        ("dilation_stride", 1, 3, 12, 12, 2, 3, 3, [2, 2], [2, 2, 2, 2], [2, 2], 1, "f32", False, False, None),
        ("groups2", 1, 4, 6, 6, 6, 3, 3, [1, 1], [1, 1, 1, 1], [1, 1], 2, "f32", True, False, None),
        ("depthwise_s2_relu6", 1, 6, 9, 9, 6, 3, 3, [2, 2], [1, 1, 1, 1], [1, 1], 6, "f32", True, False,
         ir.act_desc("Clip", 0.0, 6.0)),
        ("depthwise_mult2", 1, 3, 6, 7, 6, 3, 3, [1, 1], [1, 1, 1, 1], [1, 1], 3, "f32", True, False, None),
        ("batch3", 3, 3, 6, 6, 4, 3, 3, [1, 1], [1, 1, 1, 1], [1, 1], 1, "f32", True, False,
         ir.act_desc("LeakyRelu", 0.1)),
        ("residual_relu", 2, 4, 5, 5, 4, 3, 3, [1, 1], [1, 1, 1, 1], [1, 1], 1, "f32", True, True, relu),
        ("residual_nobias", 1, 4, 5, 5, 4, 1, 1, [1, 1], [0, 0, 0, 0], [1, 1], 1, "f32", False, True, None),
        ("nobias_sigmoid", 1, 3, 5, 5, 2, 3, 3, [1, 1], [0, 0, 0, 0], [1, 1], 1, "f32", False, False,
         ir.act_desc("Sigmoid")),
        ("conv1d_as_2d", 2, 3, 1, 16, 4, 1, 3, [1, 2], [0, 1, 0, 1], [1, 1], 1, "f32", True, False, None),
        ("kernel_eq_input", 1, 3, 4, 4, 5, 4, 4, [1, 1], [0, 0, 0, 0], [1, 1], 1, "f32", True, False, None),
        ("t2_basic", 1, 8, 6, 6, 8, 3, 3, [1, 1], [1, 1, 1, 1], [1, 1], 1, "t2", True, False, relu),
        ("t2_groups_stride", 2, 8, 7, 7, 4, 3, 3, [2, 2], [1, 1, 1, 1], [1, 1], 2, "t2", True, False, None),
        ("t2_k1_odd_row", 1, 5, 4, 4, 3, 1, 1, [1, 1], [0, 0, 0, 0], [1, 1], 1, "t2", True, False, None),
        ("q3_basic", 1, 7, 6, 6, 5, 3, 3, [1, 1], [1, 1, 1, 1], [1, 1], 1, "q3", True, False, None),
        ("q3_depthwise", 1, 6, 6, 6, 6, 3, 3, [1, 1], [0, 1, 1, 0], [1, 1], 6, "q3", True, False, relu),
        ("q3_residual", 1, 4, 5, 5, 4, 3, 3, [1, 1], [1, 1, 1, 1], [1, 1], 1, "q3", True, True, relu),
        ("i8_basic", 1, 3, 7, 7, 4, 3, 3, [2, 1], [1, 1, 1, 1], [1, 2], 1, "i8", True, False, None),
        ("f16_basic", 1, 3, 6, 6, 4, 3, 3, [1, 1], [1, 1, 1, 1], [1, 1], 1, "f16", True, False,
         ir.act_desc("HardSwish")),
    ]
    for (cid, n, c, h, w, o, kh, kw, st, pads, dil, g, enc, bias, res, act) in specs:
        rng = _rng("conv" + cid)
        name = f"conv_{cid}"
        consts = {name + ".w": _weight(rng, enc, (o, c // g, kh, kw))}
        ins = [name + ".x", name + ".w", "", ""]
        if bias:
            consts[name + ".b"] = _f32(rng.normal(0, 0.5, size=o))
            ins[2] = name + ".b"
        attrs = {"strides": st, "pads": pads, "dilations": dil, "group": g, "activation": act}
        node = _node(name, "Conv", ins, attrs)
        x = _x(rng, n, c, h, w)
        inputs = [x, None, None, None]
        if res:
            probe = dict(node, inputs=ins[:3])
            (oshape,) = ir.infer_shapes(probe, [x.shape, None, None], consts)
            node["inputs"][3] = name + ".r"
            inputs[3] = _x(rng, *oshape)
        else:
            node["inputs"] = ins[:3] if bias else ins[:2]
            inputs = inputs[:len(node["inputs"])]
        yield name, node, inputs, consts


def _convtranspose_cases():
    # (id, N, C, H, W, O, kh, kw, strides, pads, dilations, group, output_padding, enc, bias, act)
    specs = [
        ("s2_k3_p1_op1", 1, 4, 4, 4, 3, 3, 3, [2, 2], [1, 1, 1, 1], [1, 1], 1, [1, 1], "f32", True, None),
        ("s2_k2_unet", 2, 4, 3, 4, 2, 2, 2, [2, 2], [0, 0, 0, 0], [1, 1], 1, [0, 0], "f32", True,
         ir.act_desc("Relu")),
        ("s1_k3_nopad", 1, 3, 4, 5, 2, 3, 3, [1, 1], [0, 0, 0, 0], [1, 1], 1, [0, 0], "f32", False, None),
        ("groups2_dil2_asym", 1, 4, 4, 4, 6, 3, 3, [2, 1], [1, 0, 0, 2], [2, 2], 2, [1, 0], "f32", True,
         None),
        ("depthwise_s3", 1, 3, 3, 3, 3, 2, 2, [3, 3], [0, 0, 0, 0], [1, 1], 3, [0, 0], "f32", True, None),
        ("stride_gt_kernel_1x1map", 2, 2, 1, 1, 3, 2, 2, [3, 3], [0, 0, 0, 0], [1, 1], 1, [1, 2], "f32",
         True, None),
        ("t2_s2", 1, 8, 4, 4, 4, 3, 3, [2, 2], [1, 1, 1, 1], [1, 1], 1, [1, 1], "t2", True,
         ir.act_desc("Relu")),
        ("q3_groups", 2, 4, 3, 3, 4, 3, 3, [2, 2], [0, 0, 0, 0], [1, 1], 2, [0, 0], "q3", True, None),
        ("i8_s2", 1, 3, 4, 4, 3, 4, 4, [2, 2], [1, 1, 1, 1], [1, 1], 1, [0, 0], "i8", True, None),
        ("f16_s2", 1, 3, 4, 4, 2, 3, 3, [2, 2], [1, 1, 1, 1], [1, 1], 1, [1, 1], "f16", False,
         ir.act_desc("Tanh")),
    ]
    for (cid, n, c, h, w, o, kh, kw, st, pads, dil, g, op, enc, bias, act) in specs:
        rng = _rng("convt" + cid)
        name = f"convtranspose_{cid}"
        consts = {name + ".w": _weight(rng, enc, (o, c // g, kh, kw))}
        ins = [name + ".x", name + ".w"]
        if bias:
            consts[name + ".b"] = _f32(rng.normal(0, 0.5, size=o))
            ins.append(name + ".b")
        attrs = {"strides": st, "pads": pads, "dilations": dil, "group": g,
                 "output_padding": op, "activation": act}
        yield name, _node(name, "ConvTranspose", ins, attrs), \
            [_x(rng, n, c, h, w)] + [None] * (len(ins) - 1), consts


def _gemm_cases():
    specs = [("f32_bias", 2, 16, 10, "f32", True, None),
             ("f32_nobias_relu", 1, 7, 5, "f32", False, ir.act_desc("Relu")),
             ("batch4_sigmoid", 4, 12, 9, "f32", True, ir.act_desc("Sigmoid")),
             ("t2", 3, 37, 11, "t2", True, None),
             ("q3", 2, 29, 6, "q3", True, ir.act_desc("Relu")),
             ("i8", 2, 20, 7, "i8", True, None),
             ("f16", 2, 16, 4, "f16", False, None),
             ("k1", 3, 1, 4, "f32", True, None)]
    for cid, n, k, o, enc, bias, act in specs:
        rng = _rng("gemm" + cid)
        name = f"gemm_{cid}"
        consts = {name + ".w": _weight(rng, enc, (o, k))}
        ins = [name + ".x", name + ".w"]
        if bias:
            consts[name + ".b"] = _f32(rng.normal(0, 0.5, size=o))
            ins.append(name + ".b")
        yield name, _node(name, "Gemm", ins, {"activation": act}), \
            [_x(rng, n, k)] + [None] * (len(ins) - 1), consts


def _matmul_cases():
    for cid, sa, sb in [("2d", (3, 4), (4, 5)), ("4d_by_2d", (2, 3, 4, 5), (5, 6)),
                        ("batch_broadcast", (2, 1, 3, 4), (3, 4, 2)),
                        ("3d_3d", (2, 4, 3), (2, 3, 5))]:
        rng = _rng("mm" + cid)
        name = f"matmul_{cid}"
        yield name, _node(name, "MatMul", [name + ".a", name + ".b"], {}), \
            [_x(rng, *sa), _x(rng, *sb)], {}
    # a stored B of rank > 2 (batched, broadcasting against A's batch dims)
    for cid, sa, sb in [("const_3d", (2, 3, 4), (2, 4, 3)),
                        ("const_bcast", (3, 1, 3, 4), (1, 2, 4, 2))]:
        rng = _rng("mm" + cid)
        name = f"matmul_{cid}"
        yield name, _node(name, "MatMul", [name + ".a", name + ".b"], {}), \
            [_x(rng, *sa), None], {name + ".b": _f32(_x(rng, *sb))}


def _affine_cases():
    for cid, shape, act in [("4d_relu", (2, 3, 4, 5), ir.act_desc("Relu")),
                            ("2d", (3, 6), None), ("1x1", (1, 5, 1, 1), ir.act_desc("Tanh"))]:
        rng = _rng("affine" + cid)
        name = f"affine_{cid}"
        c = shape[1]
        consts = {name + ".s": _f32(rng.uniform(0.5, 2, size=c)),
                  name + ".t": _f32(rng.normal(0, 1, size=c))}
        yield name, _node(name, "Affine", [name + ".x", name + ".s", name + ".t"],
                          {"activation": act}), [_x(rng, *shape), None, None], consts


def _act_cases():
    for act in ACT_EXAMPLES[1:]:
        aid = _act_id(act)
        rng = _rng("act" + aid)
        name = f"act_{aid}"
        x = _x(rng, 2, 3, 4, 5, lo=-8, hi=8)
        x.flat[:5] = [0.0, -0.0, 3.0, -3.0, 0.5]
        yield name, _node(name, "Act", [name + ".x"], {"activation": act}), [x], {}
    rng = _rng("act2d")
    yield "act_Relu_2d", _node("act_Relu_2d", "Act", ["x"], {"activation": ir.act_desc("Relu")}), \
        [_x(rng, 3, 7)], {}


def _prelu_cases():
    for cid, shape, slope_n in [("per_channel", (2, 4, 3, 3), 4), ("shared", (1, 3, 4, 4), 1),
                                ("2d", (3, 5), 5)]:
        rng = _rng("prelu" + cid)
        name = f"prelu_{cid}"
        consts = {name + ".slope": _f32(rng.uniform(-0.5, 0.5, size=slope_n))}
        yield name, _node(name, "PRelu", [name + ".x", name + ".slope"], {}), \
            [_x(rng, *shape), None], consts


def _pool_cases():
    # (id, op, shape, kernel, strides, pads, dilations, ceil_mode, count_include_pad)
    specs = [
        ("k3s2p1", "MaxPool", (1, 3, 8, 8), [3, 3], [2, 2], [1, 1, 1, 1], [1, 1], 0, None),
        ("k2s2", "MaxPool", (2, 2, 6, 7), [2, 2], [2, 2], [0, 0, 0, 0], [1, 1], 0, None),
        ("ceil", "MaxPool", (1, 2, 7, 7), [2, 2], [2, 2], [0, 0, 0, 0], [1, 1], 1, None),
        ("ceil_k3s2p1", "MaxPool", (1, 2, 8, 9), [3, 3], [2, 2], [1, 1, 1, 1], [1, 1], 1, None),
        ("ceil_drops_last", "MaxPool", (1, 2, 5, 5), [2, 2], [2, 2], [1, 1, 1, 1], [1, 1], 1, None),
        ("stride_gt_kernel", "MaxPool", (1, 2, 10, 9), [2, 2], [3, 4], [0, 0, 0, 0], [1, 1], 0, None),
        ("asym_pads", "MaxPool", (1, 2, 6, 6), [3, 2], [1, 2], [0, 1, 2, 0], [1, 1], 0, None),
        ("dilation", "MaxPool", (1, 2, 9, 9), [3, 3], [1, 1], [1, 1, 1, 1], [2, 2], 0, None),
        ("1x1_k1", "MaxPool", (2, 3, 1, 1), [1, 1], [1, 1], [0, 0, 0, 0], [1, 1], 0, None),
        ("1x1_k3_pad1", "MaxPool", (1, 3, 1, 1), [3, 3], [1, 1], [1, 1, 1, 1], [1, 1], 0, None),
        ("k3s2p1_cip0", "AveragePool", (1, 3, 8, 8), [3, 3], [2, 2], [1, 1, 1, 1], [1, 1], 0, 0),
        ("k3s2p1_cip1", "AveragePool", (1, 3, 8, 8), [3, 3], [2, 2], [1, 1, 1, 1], [1, 1], 0, 1),
        ("k2s2", "AveragePool", (2, 2, 6, 6), [2, 2], [2, 2], [0, 0, 0, 0], [1, 1], 0, 0),
        ("ceil_cip0", "AveragePool", (1, 2, 7, 7), [3, 3], [2, 2], [1, 1, 1, 1], [1, 1], 1, 0),
        ("ceil_cip1", "AveragePool", (1, 2, 7, 7), [3, 3], [2, 2], [1, 1, 1, 1], [1, 1], 1, 1),
        ("ceil_nopad_cip1", "AveragePool", (1, 2, 6, 7), [3, 3], [2, 2], [0, 0, 0, 0], [1, 1], 1, 1),
        ("asym_pads_cip1", "AveragePool", (1, 2, 6, 5), [3, 2], [2, 1], [2, 0, 0, 1], [1, 1], 0, 1),
        ("asym_pads_cip0", "AveragePool", (1, 2, 6, 5), [3, 2], [2, 1], [2, 0, 0, 1], [1, 1], 0, 0),
        ("stride_gt_kernel", "AveragePool", (1, 2, 9, 9), [2, 2], [3, 3], [0, 0, 0, 0], [1, 1], 0, 0),
        ("1x1_k3_pad1_cip1", "AveragePool", (2, 2, 1, 1), [3, 3], [1, 1], [1, 1, 1, 1], [1, 1], 0, 1),
        ("1x1_k3_pad1_cip0", "AveragePool", (2, 2, 1, 1), [3, 3], [1, 1], [1, 1, 1, 1], [1, 1], 0, 0),
        ("dilation_cip0", "AveragePool", (1, 2, 9, 8), [3, 2], [1, 2], [2, 1, 1, 1], [2, 3], 0, 0),
        ("dilation_cip1", "AveragePool", (1, 2, 9, 8), [3, 2], [2, 1], [1, 1, 2, 0], [2, 2], 0, 1),
        ("dilation_ceil", "AveragePool", (1, 2, 8, 8), [2, 2], [2, 2], [0, 0, 0, 0], [2, 2], 1, 0),
    ]
    for cid, op, shape, k, st, pads, dil, cm, cip in specs:
        rng = _rng(op + cid)
        name = f"{op.lower()}_{cid}"
        attrs = {"kernel": k, "strides": st, "pads": pads, "dilations": dil, "ceil_mode": cm}
        if op == "AveragePool":
            attrs["count_include_pad"] = cip
            if dil == [1, 1]:
                del attrs["dilations"]  # the IR lists no dilations for AveragePool
        yield name, _node(name, op, [name + ".x"], attrs), [_x(rng, *shape)], {}
    for op in ("GlobalAveragePool", "GlobalMaxPool"):
        for cid, shape in [("basic", (2, 3, 5, 4)), ("1x1", (1, 4, 1, 1)), ("wide", (1, 2, 1, 9))]:
            rng = _rng(op + cid)
            name = f"{op.lower()}_{cid}"
            yield name, _node(name, op, [name + ".x"], {}), [_x(rng, *shape)], {}


def _binary_cases():
    specs = [  # (id, shape a, shape b, b constant?, activation)
        ("same", (2, 3, 4, 4), (2, 3, 4, 4), False, None),
        ("chan_const", (1, 4, 3, 3), (1, 4, 1, 1), True, None),
        ("chan3d_const_relu", (2, 3, 2, 5), (3, 1, 1), True, ir.act_desc("Relu")),
        ("scalar_const", (1, 3, 4, 4), (1,), True, None),
        ("broadcast_both", (2, 1, 4, 1), (1, 3, 1, 5), False, ir.act_desc("Sigmoid")),
        ("rank_mismatch", (2, 3, 4), (4,), False, None),
        ("2d", (3, 5), (3, 5), False, ir.act_desc("Clip", -1.0, 1.0)),
        # a runtime per-channel operand (squeeze-excitation's scale), on either side
        ("chan_runtime", (2, 5, 3, 4), (1, 5, 1, 1), False, ir.act_desc("HardSwish")),
        ("chan_runtime_left", (1, 5, 1, 1), (2, 5, 3, 4), False, None),
    ]
    for op in ("Add", "Sub", "Mul", "Div"):
        for cid, sa, sb, const, act in specs:
            rng = _rng(op + cid)
            name = f"{op.lower()}_{cid}"
            a = _x(rng, *sa)
            b = _x(rng, *sb)
            if op == "Div":  # keep denominators away from 0
                b = np.where(b >= 0, b + 0.5, b - 0.5).astype(np.float32)
            consts = {}
            inputs = [a, b]
            if const:
                consts[name + ".b"] = _f32(b)
                inputs = [a, None]
            yield name, _node(name, op, [name + ".a", name + ".b"], {"activation": act}), \
                inputs, consts
    # constant on the left
    rng = _rng("sub_const_left")
    name = "sub_const_left"
    yield name, _node(name, "Sub", [name + ".a", name + ".b"], {"activation": None}), \
        [None, _x(rng, 1, 3, 2, 2)], {name + ".a": _f32(_x(rng, 3, 1, 1))}


def _layout_cases():
    rng = _rng("layout")
    for cid, shapes, axis in [("axis1", [(1, 2, 3, 3), (1, 3, 3, 3), (1, 1, 3, 3)], 1),
                              ("axis0", [(1, 3, 2, 2), (2, 3, 2, 2)], 0),
                              ("axis3", [(2, 2, 3, 1), (2, 2, 3, 4)], 3),
                              ("single", [(2, 3)], 1)]:
        name = f"concat_{cid}"
        yield name, _node(name, "Concat", [f"{name}.x{i}" for i in range(len(shapes))],
                          {"axis": axis}), [_x(rng, *s) for s in shapes], {}
    for axis in (0, 1, 2, 4):
        name = f"flatten_axis{axis}"
        yield name, _node(name, "Flatten", [name + ".x"], {"axis": axis}), [_x(rng, 2, 3, 2, 2)], {}
    for cid, shape, target in [("copy0_infer", (2, 3, 4, 2), [0, -1]),
                               ("explicit", (2, 12), [2, 3, 2, 2]),
                               ("infer_mid", (2, 3, 4), [2, -1, 3]),
                               ("copy_inner0", (2, 3, 4), [0, 0, 2, 2])]:
        name = f"reshape_{cid}"
        yield name, _node(name, "Reshape", [name + ".x"], {"shape": target}), [_x(rng, *shape)], {}
    for cid, shape, perm in [("nchw_nhwc", (2, 3, 4, 5), [0, 2, 3, 1]),
                             ("3d", (2, 3, 4), [2, 0, 1]), ("2d", (3, 5), [1, 0])]:
        name = f"transpose_{cid}"
        yield name, _node(name, "Transpose", [name + ".x"], {"perm": perm}), [_x(rng, *shape)], {}
    for cid, shape, axis in [("2d_axis1", (4, 10), 1), ("4d_axis1", (2, 5, 3, 3), 1),
                             ("4d_axis3", (2, 3, 2, 6), 3), ("axis0", (5, 3), 0)]:
        name = f"softmax_{cid}"
        yield name, _node(name, "Softmax", [name + ".x"], {"axis": axis}), \
            [_x(rng, *shape, lo=-10, hi=10)], {}
    yield "softmax_large_values", _node("softmax_large_values", "Softmax", ["x"], {"axis": 1}), \
        [_x(rng, 3, 6, lo=80, hi=120)], {}
    for cid, shape, pads, mode, value in [
            ("const_hw", (1, 2, 3, 4), [0, 0, 1, 2, 0, 0, 2, 1], "constant", 0.0),
            ("const_value", (2, 2, 3, 3), [0, 1, 0, 1, 0, 0, 1, 0], "constant", -1.5),
            ("reflect", (1, 2, 4, 5), [0, 0, 2, 1, 0, 0, 1, 3], "reflect", 0.0),
            ("edge", (1, 2, 3, 3), [0, 0, 2, 2, 0, 0, 1, 3], "edge", 0.0),
            ("edge_1x1", (1, 2, 1, 1), [0, 0, 1, 1, 0, 0, 2, 2], "edge", 0.0),
            ("const_2d", (3, 4), [1, 0, 0, 2], "constant", 2.0)]:
        name = f"pad_{cid}"
        yield name, _node(name, "Pad", [name + ".x"], {"pads": pads, "mode": mode, "value": value}), \
            [_x(rng, *shape)], {}
    for cid, shape, b, mode in [("dcr_b2", (1, 8, 3, 3), 2, "DCR"), ("crd_b2", (2, 8, 2, 3), 2, "CRD"),
                                ("dcr_b3", (1, 9, 2, 2), 3, "DCR"), ("crd_b3", (1, 18, 2, 2), 3, "CRD")]:
        name = f"depthtospace_{cid}"
        yield name, _node(name, "DepthToSpace", [name + ".x"], {"blocksize": b, "mode": mode}), \
            [_x(rng, *shape)], {}
    for cid, shape, starts, ends, axes, steps in [
            ("hw", (1, 3, 6, 7), [1, 2], [5, 7], [2, 3], [1, 1]),
            ("step2", (2, 4, 5, 5), [0, 1], [4, 5], [1, 3], [2, 2]),
            ("neg_step_to_start", (1, 2, 5, 6), [4], [-1], [3], [-1]),
            ("neg_step2", (1, 2, 7, 3), [6, 2], [0, 0], [2, 3], [-2, -1]),
            ("channels", (2, 6, 2, 2), [2], [5], [1], [1])]:
        name = f"slice_{cid}"
        yield name, _node(name, "Slice", [name + ".x"], {"starts": starts, "ends": ends,
                                                          "axes": axes, "steps": steps}), \
            [_x(rng, *shape)], {}
    # ONNX's own bounds, normalized per plan (onnx_bounds=1): negative from the end, clamped
    for cid, shape, starts, ends, axes, steps in [
            ("onnx_neg", (1, 2, 6, 7), [1, -1], [-1, -2 ** 31 + 1], [2, 3], [1, -2]),
            ("onnx_clamp", (2, 3, 5, 4), [-100, 2], [100, -1], [1, 3], [2, 1])]:
        rng = _rng("slice" + cid)
        name = f"slice_{cid}"
        yield name, _node(name, "Slice", [name + ".x"], {
            "starts": starts, "ends": ends, "axes": axes, "steps": steps,
            "onnx_bounds": 1}), [_x(rng, *shape)], {}


def _resize_cases():
    rng = _rng("resize")
    geoms = [("up2", (1, 2, 3, 4), [2.0, 2.0], None),
             ("sizes_mixed", (1, 2, 5, 3), None, [7, 2]),
             ("down_scales", (2, 1, 8, 6), [0.5, 0.75], None),
             ("odd_scales", (1, 2, 3, 3), [1.5, 2.5], None),
             ("sizes_to_1", (1, 2, 4, 3), None, [1, 1])]
    base_ctms = ("half_pixel", "asymmetric", "align_corners", "pytorch_half_pixel")

    def node(name, **a):
        a.setdefault("nearest_mode", None)
        return _node(name, "Resize", [name + ".x"], a)

    for gid, shape, scales, sizes in geoms:
        x = _x(rng, *shape)
        for ctm in base_ctms:
            name = f"resize_linear_{ctm}_{gid}"
            yield name, node(name, mode="linear", coordinate_transformation_mode=ctm,
                             scales=scales, sizes=sizes), [x], {}
            for nm in ir.RESIZE_NEAREST_MODES:
                if gid in ("sizes_to_1",) and nm != "floor":
                    continue
                name = f"resize_nearest_{ctm}_{nm}_{gid}"
                yield name, node(name, mode="nearest", coordinate_transformation_mode=ctm,
                                 nearest_mode=nm, scales=scales, sizes=sizes), [x], {}
    # cubic, antialias, exclude_outside, the newer coordinate modes, aspect policies
    # (one tap table per axis: edgenet/resize.py)
    more = [
        ("cubic_hp_up", (1, 2, 4, 5), [2.0, 1.5], None, dict(mode="cubic")),
        ("cubic_ac_down", (1, 2, 8, 7), None, [3, 5],
         dict(mode="cubic", coordinate_transformation_mode="align_corners")),
        ("cubic_asym_a05_excl", (2, 1, 5, 6), [1.6, 0.6], None,
         dict(mode="cubic", coordinate_transformation_mode="asymmetric",
              cubic_coeff_a=-0.5, exclude_outside=1)),
        ("cubic_aa_down", (1, 2, 9, 11), [0.4, 0.6], None, dict(mode="cubic", antialias=1)),
        ("linear_aa_down", (1, 2, 10, 7), None, [3, 4], dict(mode="linear", antialias=1)),
        ("linear_aa_up_down", (1, 1, 4, 12), [1.75, 0.3], None,
         dict(mode="linear", antialias=1)),
        ("linear_hps", (1, 2, 5, 7), [0.6, 1.3], None,
         dict(mode="linear", coordinate_transformation_mode="half_pixel_symmetric")),
        ("nearest_tfnn", (1, 2, 5, 4), [1.7, 0.8], None,
         dict(mode="nearest", coordinate_transformation_mode="tf_half_pixel_for_nn",
              nearest_mode="round_prefer_floor")),
        ("linear_crop", (1, 2, 6, 7), None, [4, 9],
         dict(mode="linear", coordinate_transformation_mode="tf_crop_and_resize",
              roi=[0.2, -0.3, 0.7, 1.2], extrapolation_value=5.0)),
        ("cubic_crop", (1, 1, 6, 6), None, [3, 5],
         dict(mode="cubic", coordinate_transformation_mode="tf_crop_and_resize",
              roi=[0.1, 0.25, 0.9, 0.75])),
        ("nearest_not_larger", (1, 2, 4, 6), None, [7, 8],
         dict(mode="nearest", nearest_mode="round_prefer_ceil",
              keep_aspect_ratio_policy="not_larger")),
        ("cubic_pytorch_half_pixel_to_1", (1, 2, 5, 4), None, [1, 3],
         dict(mode="cubic", coordinate_transformation_mode="pytorch_half_pixel")),
        ("linear_not_smaller", (1, 2, 6, 4), None, [3, 5],
         dict(mode="linear", keep_aspect_ratio_policy="not_smaller")),
    ]
    for cid, shape, scales, sizes, a in more:
        name = f"resize_{cid}"
        a.setdefault("coordinate_transformation_mode", "half_pixel")
        yield name, node(name, scales=scales, sizes=sizes, **a), [_x(rng, *shape)], {}


def _math_cases():
    """Unary / BinaryMath / Reduce (edgenet/shapes_math.py)."""
    rng = np.random.default_rng(13)
    for fn in ("neg", "abs", "sqrt", "exp", "log", "reciprocal", "erf", "softplus", "mish",
               "gelu", "gelu_tanh", "floor", "ceil", "sin", "cos", "softsign", "silu"):
        name = f"unary_{fn}"
        lo = 0.1 if fn in ("sqrt", "log") else -3.0
        yield name, _node(name, "Unary", [name + ".x"], {"fn": fn}), \
            [_x(rng, 2, 3, 4, 5, lo=lo, hi=3.0)], {}
    for fn in ("max", "min", "pow"):
        name = f"binarymath_{fn}_bcast"
        lo = 0.1 if fn == "pow" else -2.0
        yield name, _node(name, "BinaryMath", [name + ".a", name + ".b"], {"fn": fn}), \
            [_x(rng, 2, 3, 4, lo=lo), _x(rng, 3, 1)], {}
    name = "binarymath_pow_const"
    yield name, _node(name, "BinaryMath", [name + ".a", "e"], {"fn": "pow"}), \
        [_x(rng, 2, 5, lo=0.1), None], {"e": pack("f32", np.array([2.0, 0.5, -1.0, 3.0, 1.5],
                                                                 np.float32))}
    for fn, axes, keep in [("mean", [3], 1), ("sum", [1], 0), ("max", [2, 3], 1),
                           ("min", [0, 2], 0), ("prod", [3], 0), ("sumsquare", [1, 3], 1),
                           ("l1", [2], 1), ("l2", [0, 1, 2, 3], 0), ("logsum", [1], 1),
                           ("logsumexp", [1, 2], 0)]:
        name = f"reduce_{fn}_{'_'.join(map(str, axes))}_k{keep}"
        lo = 0.1 if fn == "logsum" else -2.0
        x = _x(rng, 2, 3, 4, 5, lo=lo)
        if fn == "prod":
            x = _x(rng, 2, 3, 4, 5, lo=0.7, hi=1.3)
        yield name, _node(name, "Reduce", [name + ".x"],
                          {"fn": fn, "axes": axes, "keepdims": keep}), [x], {}
    for axis, shape in ((2, (2, 3, 7)), (1, (2, 3, 4, 5))):
        name = f"layernorm_axis{axis}"
        x = _x(rng, *shape) + np.float32(3.0)          # an offset mean: one-pass variance
        yield name, _node(name, "LayerNorm", [name + ".x", "s", "b"],
                          {"axis": axis, "epsilon": 1e-5}), [x, None, None], \
            {"s": pack("f32", _x(rng, *shape[axis:])), "b": pack("f32", _x(rng, *shape[axis:]))}


def _concat_const_cases():
    """Concat with a stored-tensor operand (input kind ANY)."""
    rng = np.random.default_rng(17)
    name = "concat_const_operand"
    yield name, _node(name, "Concat", [name + ".x", "c"], {"axis": 1}), \
        [_x(rng, 2, 3, 4), None], {"c": pack("f32", _x(rng, 2, 2, 4))}


def _rnn_cases():
    """LSTM (edgenet/shapes_rnn.py): bidirectional with B, activation initial states and the
    Y_h / Y_c rows; forward with peepholes and no B (tests/test_rnn.py has the rest)."""
    rng = np.random.default_rng(19)
    T, N, I, H = 3, 2, 4, 5
    name = "lstm_bidir_states"
    yield name, _node(name, "LSTM", [name + ".x", "w", "r", "b", name + ".h0", name + ".c0"],
                      {"hidden_size": H, "direction": "bidirectional", "with_states": 1}), \
        [_x(rng, T, N, I), None, None, None, _x(rng, 2, N, H, lo=-0.5, hi=0.5),
         _x(rng, 2, N, H, lo=-0.5, hi=0.5)], \
        {"w": pack("f32", _x(rng, 2, 4 * H, I, lo=-0.6, hi=0.6)),
         "r": pack("f32", _x(rng, 2, 4 * H, H, lo=-0.6, hi=0.6)),
         "b": pack("f32", _x(rng, 2, 8 * H, lo=-0.3, hi=0.3))}
    name = "lstm_forward_peepholes"
    yield name, _node(name, "LSTM", [name + ".x", "w", "r", "", "", "", "p"],
                      {"hidden_size": H, "direction": "forward", "with_states": 0}), \
        [_x(rng, T, N, I), None, None, None, None, None, None], \
        {"w": pack("f32", _x(rng, 1, 4 * H, I, lo=-0.6, hi=0.6)),
         "r": pack("f32", _x(rng, 1, 4 * H, H, lo=-0.6, hi=0.6)),
         "p": pack("f32", _x(rng, 1, 3 * H, lo=-0.5, hi=0.5))}


def cases():
    """Yield (id, node, inputs, consts) for every op and its edge cases."""
    for gen in (_conv_cases, _convtranspose_cases, _gemm_cases, _matmul_cases, _affine_cases,
                _act_cases, _prelu_cases, _pool_cases, _binary_cases, _layout_cases,
                _resize_cases, _math_cases, _concat_const_cases, _rnn_cases):
        yield from gen()
