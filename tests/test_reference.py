"""The NumPy reference backend against onnxruntime and onnx.reference.ReferenceEvaluator.

Every case of edgenet.reference.cases is turned back into a small ONNX model (the IR's
normalized attributes mapped onto ONNX ops; fused activations and residuals become
separate ONNX nodes) and run by both.
"""
from __future__ import annotations

import numpy as np
import pytest

from edgenet import ir
from edgenet.reference import OPS, run_node
from edgenet.reference.cases import cases
from tests.helpers import activation_descs, special_values

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

OPSET = 19
CASES = list(cases())
IDS = [c[0] for c in CASES]


# ------------------------------------------------------------------ IR node -> ONNX

class _B:
    def __init__(self):
        self.nodes, self.inits, self.n = [], [], 0

    def tmp(self, base="t"):
        self.n += 1
        return f"_{base}{self.n}"

    def const(self, arr, dtype=None, name=None):
        name = name or self.tmp("c")
        arr = np.asarray(arr, dtype=dtype)
        self.inits.append(numpy_helper.from_array(arr, name))
        return name

    def add(self, op, ins, out=None, **attrs):
        out = out or self.tmp()
        self.nodes.append(helper.make_node(op, ins, [out], **attrs))
        return out


def _act_nodes(b, x, desc):
    code, a, be = ir.act_code(desc)
    if code == 0:
        return x
    kind = desc["kind"]
    if kind == "Relu":
        return b.add("Relu", [x])
    if kind == "LeakyRelu":
        return b.add("LeakyRelu", [x], alpha=a)
    if kind == "Elu":
        return b.add("Elu", [x], alpha=a)
    if kind == "Selu":
        return b.add("Selu", [x], alpha=a, gamma=be)
    if kind in ("Sigmoid", "Tanh", "HardSwish"):
        return b.add(kind, [x])
    if kind == "Clip":
        return b.add("Clip", [x, b.const(np.float32(a)), b.const(np.float32(be))])
    if kind == "HardSigmoid":
        return b.add("HardSigmoid", [x], alpha=a, beta=be)
    raise AssertionError(kind)


def to_onnx(node, inputs, consts):
    """One IR node -> (ModelProto, feeds)."""
    b = _B()
    a = node.get("attrs") or {}
    op = node["op"]
    names, feeds, graph_inputs = [], {}, []
    for i, nm in enumerate(node["inputs"]):
        if nm == "":
            names.append("")
        elif nm in consts:
            w = consts[nm].dequantize()
            if op == "ConvTranspose" and i == 1:  # ours (O, C/g, kh, kw) -> ONNX (C, O/g, kh, kw)
                g = a["group"]
                o, cg, kh, kw = w.shape
                w = w.reshape(g, o // g, cg, kh, kw).transpose(0, 2, 1, 3, 4) \
                    .reshape(g * cg, o // g, kh, kw)
            names.append(b.const(np.ascontiguousarray(w, dtype=np.float32), name=nm))
        else:
            feeds[nm] = inputs[i]
            graph_inputs.append(helper.make_tensor_value_info(nm, TensorProto.FLOAT,
                                                              list(inputs[i].shape)))
            names.append(nm)
    x = names[0]
    act = a.get("activation")
    if op == "Conv":
        out = b.add("Conv", [n for n in names[:3] if n != ""] if names[2:3] != [""]
                    else names[:2], kernel_shape=list(consts[node["inputs"][1]].shape[2:]),
                    strides=a["strides"], pads=a["pads"], dilations=a["dilations"],
                    group=a["group"])
        if len(names) > 3 and names[3]:
            out = b.add("Add", [out, names[3]])
        out = _act_nodes(b, out, act)
    elif op == "ConvTranspose":
        out = b.add("ConvTranspose", [n for n in names if n],
                    kernel_shape=list(consts[node["inputs"][1]].shape[2:]),
                    strides=a["strides"], pads=a["pads"], dilations=a["dilations"],
                    group=a["group"], output_padding=a["output_padding"])
        out = _act_nodes(b, out, act)
    elif op == "Gemm":
        out = b.add("Gemm", [n for n in names if n], transB=1)
        out = _act_nodes(b, out, act)
    elif op == "MatMul":
        out = b.add("MatMul", names)
    elif op == "Affine":
        r = len(inputs[0].shape)
        s = consts[node["inputs"][1]].dequantize().reshape((1, -1) + (1,) * (r - 2))
        t = consts[node["inputs"][2]].dequantize().reshape((1, -1) + (1,) * (r - 2))
        out = b.add("Add", [b.add("Mul", [x, b.const(s)]), b.const(t)])
        out = _act_nodes(b, out, act)
    elif op == "Act":
        out = _act_nodes(b, x, act)
        if out == x:
            out = b.add("Identity", [x])
    elif op == "PRelu":
        r = len(inputs[0].shape)
        s = consts[node["inputs"][1]].dequantize().reshape((-1,) + (1,) * (r - 2))
        out = b.add("PRelu", [x, b.const(s)])
    elif op == "MaxPool":
        out = b.add("MaxPool", [x], kernel_shape=a["kernel"], strides=a["strides"],
                    pads=a["pads"], dilations=a.get("dilations", [1, 1]),
                    ceil_mode=a["ceil_mode"])
    elif op == "AveragePool":
        kw = {}
        if a.get("dilations") and a["dilations"] != [1, 1]:
            kw["dilations"] = a["dilations"]
        out = b.add("AveragePool", [x], kernel_shape=a["kernel"], strides=a["strides"],
                    pads=a["pads"], ceil_mode=a["ceil_mode"],
                    count_include_pad=a["count_include_pad"], **kw)
    elif op in ("GlobalAveragePool", "GlobalMaxPool", "Add", "Sub", "Mul", "Div"):
        out = b.add(op, names)
        out = _act_nodes(b, out, act)
    elif op == "Concat":
        out = b.add("Concat", names, axis=a["axis"])
    elif op == "Flatten":
        out = b.add("Flatten", [x], axis=a["axis"])
    elif op == "Reshape":
        out = b.add("Reshape", [x, b.const(np.array(a["shape"], dtype=np.int64))])
    elif op == "Transpose":
        out = b.add("Transpose", [x], perm=a["perm"])
    elif op == "Softmax":
        out = b.add("Softmax", [x], axis=a["axis"])
    elif op == "Pad":
        out = b.add("Pad", [x, b.const(np.array(a["pads"], dtype=np.int64)),
                            b.const(np.float32(a.get("value") or 0.0))], mode=a["mode"])
    elif op == "Resize":
        kw = {"mode": a["mode"],
              "coordinate_transformation_mode": a["coordinate_transformation_mode"]}
        if a["mode"] == "nearest":
            kw["nearest_mode"] = a["nearest_mode"]
        for k in ("cubic_coeff_a", "exclude_outside", "antialias", "extrapolation_value",
                  "keep_aspect_ratio_policy"):
            if a.get(k) is not None:
                kw[k] = a[k]
        roi = ""
        if a.get("roi") is not None:
            r = a["roi"]
            roi = b.const(np.array([0, 0, r[0], r[1], 1, 1, r[2], r[3]], dtype=np.float32))
        if a.get("scales") is not None:
            sc = b.const(np.array([1, 1] + list(a["scales"]), dtype=np.float32))
            out = b.add("Resize", [x, roi, sc], **kw)
        else:
            n, c = inputs[0].shape[:2]
            if a.get("keep_aspect_ratio_policy", "stretch") != "stretch":
                # the policy applies to the axes given: H and W only
                kw["axes"] = [2, 3]
                sz = b.const(np.array(list(a["sizes"]), dtype=np.int64))
                if a.get("roi") is not None:
                    r = a["roi"]
                    roi = b.const(np.array(r, dtype=np.float32))
            else:
                sz = b.const(np.array([n, c] + list(a["sizes"]), dtype=np.int64))
            out = b.add("Resize", [x, roi, "", sz], **kw)
    elif op == "DepthToSpace":
        out = b.add("DepthToSpace", [x], blocksize=a["blocksize"], mode=a["mode"])
    elif op == "Slice":
        # normalized ends: -1 with a negative step means "through index 0", which ONNX
        # spells with a very negative end
        ends = a["ends"] if a.get("onnx_bounds") else \
            [(-(2 ** 62) if (e == -1 and s < 0) else e) for e, s in zip(a["ends"], a["steps"])]
        out = b.add("Slice", [x] + [b.const(np.array(v, dtype=np.int64)) for v in
                                    (a["starts"], ends, a["axes"], a["steps"])])
    elif op == "Unary":
        fn = a["fn"]
        onnx_op = {"neg": "Neg", "abs": "Abs", "sqrt": "Sqrt", "exp": "Exp", "log": "Log",
                   "reciprocal": "Reciprocal", "erf": "Erf", "softplus": "Softplus",
                   "mish": "Mish", "floor": "Floor", "ceil": "Ceil", "sin": "Sin",
                   "cos": "Cos", "softsign": "Softsign"}.get(fn)
        if onnx_op:
            out = b.add(onnx_op, [x])
        elif fn == "silu":
            out = b.add("Mul", [x, b.add("Sigmoid", [x])])
        else:   # gelu (erf form) / gelu_tanh, written out (Gelu is opset 20)
            if fn == "gelu":
                inner = b.add("Erf", [b.add("Mul", [x, b.const(np.float32(0.7071067811865476))])])
            else:
                x3 = b.add("Mul", [b.add("Mul", [x, x]), x])
                u = b.add("Add", [x, b.add("Mul", [x3, b.const(np.float32(0.044715))])])
                inner = b.add("Tanh", [b.add("Mul", [u, b.const(np.float32(0.7978845608028654))])])
            out = b.add("Mul", [b.add("Mul", [x, b.const(np.float32(0.5))]),
                                b.add("Add", [inner, b.const(np.float32(1.0))])])
    elif op == "BinaryMath":
        out = b.add({"max": "Max", "min": "Min", "pow": "Pow"}[a["fn"]], names)
    elif op == "Reduce":
        onnx_op = {"mean": "ReduceMean", "sum": "ReduceSum", "max": "ReduceMax",
                   "min": "ReduceMin", "prod": "ReduceProd", "sumsquare": "ReduceSumSquare",
                   "l1": "ReduceL1", "l2": "ReduceL2", "logsum": "ReduceLogSum",
                   "logsumexp": "ReduceLogSumExp"}[a["fn"]]
        out = b.add(onnx_op, [x, b.const(np.array(a["axes"], np.int64))],
                    keepdims=a["keepdims"])
    elif op == "LayerNorm":
        out = b.add("LayerNormalization", names, axis=a["axis"], epsilon=a["epsilon"])
    elif op == "LSTM":   # IR inputs X W R B h0 c0 P; ONNX has sequence_lens after B
        ins = (names + [""] * 7)[:7]
        ins = ins[:4] + [""] + ins[4:]
        while ins[-1] == "":
            ins.pop()
        outs = [f"{node['name']}.{k}" for k in ("Y", "Y_h", "Y_c")]
        b.nodes.append(helper.make_node("LSTM", ins, outs, hidden_size=a["hidden_size"],
                                        direction=a["direction"]))
        out = outs[0]
        if a["with_states"]:
            ax = b.const(np.array([0], np.int64))
            out = b.add("Concat", [out, b.add("Unsqueeze", [outs[1], ax]),
                                   b.add("Unsqueeze", [outs[2], ax])], axis=0)
    else:
        raise AssertionError(op)
    b.nodes.append(helper.make_node("Identity", [out], ["y"]))
    graph = helper.make_graph(b.nodes, node["name"], graph_inputs,
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              b.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 9
    return model, feeds


def _ort(model, feeds):
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), so,
                                providers=["CPUExecutionProvider"])
    return sess.run(["y"], feeds)[0]


# Cases where onnx.reference.ReferenceEvaluator (onnx 1.23) is known to deviate from the
# ONNX spec / onnxruntime; onnxruntime is still checked for them.
def _first(node):
    return next(c for c in CASES if c[1] is node)[2][0]


def _ref_eval_skip(cid, node):
    a = node.get("attrs") or {}
    if node["op"] == "ConvTranspose" and a["group"] > 1:
        return "ReferenceEvaluator ConvTranspose handles only group == 1"
    if node["op"] == "Resize" and a["coordinate_transformation_mode"] == "tf_half_pixel_for_nn":
        return "ReferenceEvaluator lacks tf_half_pixel_for_nn (opset 11-12 only)"
    if node["op"] == "Resize" and a["coordinate_transformation_mode"] == "pytorch_half_pixel" \
            and a["mode"] == "cubic" and 1 in (a.get("sizes") or ()):
        # a length-1 axis: the spec's text (and onnxruntime) read coordinate 0, the
        # ReferenceEvaluator -0.5 (the same for nearest and linear, not for cubic)
        return "ReferenceEvaluator puts -0.5, not the spec's 0, for pytorch_half_pixel to 1"
    return None


def _ort_skip(cid, node):
    a = node.get("attrs") or {}
    if node["op"] == "Resize" and a["coordinate_transformation_mode"] in (
            "align_corners", "tf_crop_and_resize") and a.get("scales") is not None and any(
                d * s != int(d * s) for d, s in zip(np.shape(_first(node))[2:], a["scales"])):
        # ONNX (spec and reference, and the node tests) put length_resized = in * scale
        # (not floored) into these formulas; onnxruntime uses the integer output length
        return "onnxruntime uses the output length, not in * scale, for align_corners"
    return None


def _tol(node):
    return dict(rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_against_onnxruntime(case):
    cid, node, inputs, consts = case
    why = _ort_skip(cid, node)
    if why:
        pytest.skip(why)
    (got,) = run_node(node, inputs, consts)
    model, feeds = to_onnx(node, inputs, consts)
    want = _ort(model, feeds)
    assert got.dtype == np.float32 and got.flags.c_contiguous
    assert got.shape == want.shape, (got.shape, want.shape)
    np.testing.assert_allclose(got, want, **_tol(node))


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_against_onnx_reference_evaluator(case):
    from onnx.reference import ReferenceEvaluator
    cid, node, inputs, consts = case
    why = _ref_eval_skip(cid, node)
    if why:
        pytest.skip(why)
    (got,) = run_node(node, inputs, consts)
    model, feeds = to_onnx(node, inputs, consts)
    want = ReferenceEvaluator(model).run(None, feeds)[0]
    assert got.shape == want.shape, (got.shape, want.shape)
    np.testing.assert_allclose(got, np.asarray(want, dtype=np.float32), **_tol(node))


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_run_writes_every_element_in_place(case):
    """run() must fill the caller's buffers (prefilled with NaN here), not rebind them."""
    cid, node, inputs, consts = case
    impl = OPS[node["op"]]
    shapes = ir.infer_shapes(node, [None if x is None else x.shape for x in inputs], consts)
    outs = [np.full(s, np.nan, dtype=np.float32) for s in shapes]
    ids = [id(o) for o in outs]
    for policy in ("expanded", "packed"):
        state = impl.prepare(node, consts, policy)
        impl.run(node, state, inputs, outs)
        assert [id(o) for o in outs] == ids
        assert not np.isnan(outs[0]).any()
    (again,) = run_node(node, inputs, consts)
    np.testing.assert_array_equal(outs[0], again)


def test_cases_cover_every_op_and_stay_small():
    ops = {node["op"] for _, node, _, _ in CASES}
    assert ops == ir.OPS
    assert len(set(IDS)) == len(IDS)
    encs = {c.encoding.value for _, node, _, consts in CASES for c in consts.values()
            if node["op"] in ("Conv", "ConvTranspose", "Gemm")}
    assert {"f32", "f16", "i8", "t2", "q3"} <= encs
    assert any(x is not None and x.ndim == 4 and x.shape[0] > 1
               for _, _, inputs, _ in CASES for x in inputs)
    for cid, node, inputs, consts in CASES:
        (s,) = ir.infer_shapes(node, [None if x is None else x.shape for x in inputs], consts)
        assert int(np.prod(s)) < 5000, cid
        for x in inputs:
            assert x is None or (x.dtype == np.float32 and x.flags.c_contiguous)


def test_activation_formulas():
    x = np.array([-3.0, -1.0, -0.0, 0.0, 0.5, 2.0, 7.0], dtype=np.float32)
    ref = {
        "Relu": np.maximum(x, 0),
        "LeakyRelu": np.where(x >= 0, x, 0.01 * x),
        "Elu": np.where(x > 0, x, np.exp(x.astype(np.float64)) - 1),
        "Sigmoid": 1 / (1 + np.exp(-x.astype(np.float64))),
        "Tanh": np.tanh(x.astype(np.float64)),
        "HardSigmoid": np.clip(0.2 * x + 0.5, 0, 1),
        "HardSwish": x * np.clip(x / 6 + 0.5, 0, 1),
        "Clip": x,
    }
    for kind, want in ref.items():
        node = {"name": "a", "op": "Act", "inputs": ["x"], "outputs": ["y"],
                "attrs": {"activation": {"kind": kind}}}
        (got,) = run_node(node, [x], {})
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7, err_msg=kind)


@pytest.mark.parametrize("desc", activation_descs(), ids=lambda d: d["kind"])
def test_scalar_activation_agrees_with_numpy_nan_included(desc):
    """edgenet.activation.act_scalar, the one function the CPU and CUDA kernels compile,
    run as plain Python (what the CUDA simulator runs) against the NumPy reference."""
    from edgenet.activation import act_numpy, act_scalar
    x = special_values().reshape(-1)
    code, a, b = ir.act_code(desc)
    with np.errstate(over="ignore", invalid="ignore"):
        want = act_numpy(x, code, a, b)
        got = np.array([act_scalar(v, code, np.float32(a), np.float32(b)) for v in x],
                       dtype=np.float32)
    assert np.isnan(got[np.isnan(x)]).all(), "NaN in, NaN out"
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))   # HardSwish(-inf) too
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-7, err_msg=desc["kind"])
