"""Shape inference and validation of IR nodes (edgenet.ir)."""
from __future__ import annotations

import copy

import numpy as np
import pytest

from edgenet import ir
from edgenet.errors import ModelError
from edgenet.format import pack
from tests.helpers import check_coverage


def W(*shape):
    return pack("f32", np.zeros(shape, dtype=np.float32))


def node(op, inputs, attrs=None, name="n1"):
    return {"name": name, "op": op, "inputs": list(inputs), "outputs": [name + ".y"],
            "attrs": attrs or {}}


def conv(x=(2, 3, 8, 8), w=(4, 3, 3, 3), b=4, g=1, strides=(1, 1), pads=(1, 1, 1, 1),
         dil=(1, 1), act=None, residual=None):
    consts = {"w": W(*w)}
    ins = ["x", "w"]
    shapes = [x, None]
    if b is not None:
        consts["b"] = W(b)
        ins.append("b")
        shapes.append(None)
    if residual is not None:
        if b is None:
            ins.append("")
            shapes.append(None)
        ins.append("r")
        shapes.append(residual)
    n = node("Conv", ins, {"strides": list(strides), "pads": list(pads),
                           "dilations": list(dil), "group": g, "activation": act})
    return n, shapes, consts


def pool(op="MaxPool", x=(1, 2, 8, 8), k=(3, 3), s=(2, 2), p=(1, 1, 1, 1), cm=0, cip=0, d=None):
    attrs = {"kernel": list(k), "strides": list(s), "pads": list(p), "ceil_mode": cm}
    if op == "MaxPool":
        attrs["dilations"] = list(d or (1, 1))
    else:
        attrs["count_include_pad"] = cip
        if d:
            attrs["dilations"] = list(d)
    return node(op, ["x"], attrs), [x], {}


def resize(x=(1, 2, 4, 6), scales=(2.0, 2.0), sizes=None, mode="nearest",
           ctm="asymmetric", nm="floor", **more):
    return node("Resize", ["x"], {
        "mode": mode, "coordinate_transformation_mode": ctm, "nearest_mode": nm,
        "scales": None if scales is None else list(scales),
        "sizes": None if sizes is None else list(sizes), **more}), [x], {}


# ------------------------------------------------------------------ shape inference

GOOD = [
    ("conv_same", conv(), (2, 4, 8, 8)),
    ("conv_dyn_batch", conv(x=(None, 3, 8, 8)), (None, 4, 8, 8)),
    ("conv_stride_asym", conv(x=(1, 3, 7, 8), strides=(2, 3), pads=(0, 1, 2, 0)), (1, 4, 4, 3)),
    ("conv_dilation", conv(x=(1, 3, 10, 11), dil=(2, 3), pads=(0, 0, 0, 0)), (1, 4, 6, 5)),
    ("conv_groups", conv(x=(1, 6, 5, 5), w=(4, 3, 3, 3), g=2), (1, 4, 5, 5)),
    ("conv_depthwise", conv(x=(1, 6, 5, 5), w=(6, 1, 3, 3), b=6, g=6, strides=(2, 2)), (1, 6, 3, 3)),
    ("conv_1x1_map", conv(x=(1, 3, 1, 1)), (1, 4, 1, 1)),
    ("conv_residual", conv(residual=(2, 4, 8, 8)), (2, 4, 8, 8)),
    ("conv_residual_nobias", conv(b=None, residual=(2, 4, 8, 8)), (2, 4, 8, 8)),
    ("convtranspose", (node("ConvTranspose", ["x", "w"], {
        "strides": [2, 2], "pads": [1, 1, 1, 1], "dilations": [1, 1], "group": 1,
        "output_padding": [1, 1], "activation": None}), [(1, 3, 4, 4), None],
        {"w": W(5, 3, 3, 3)}), (1, 5, 8, 8)),
    ("convtranspose_groups", (node("ConvTranspose", ["x", "w", "b"], {
        "strides": [2, 1], "pads": [0, 0, 1, 0], "dilations": [2, 1], "group": 2,
        "output_padding": [0, 0], "activation": None}), [(1, 4, 3, 3), None, None],
        {"w": W(6, 2, 3, 2), "b": W(6)}), (1, 6, 8, 4)),
    ("gemm", (node("Gemm", ["x", "w", "b"]), [(5, 7), None, None], {"w": W(3, 7), "b": W(3)}),
     (5, 3)),
    ("matmul_broadcast", (node("MatMul", ["a", "b"]), [(2, 1, 3, 4), (5, 4, 6)], {}), (2, 5, 3, 6)),
    ("affine", (node("Affine", ["x", "s", "t"]), [(2, 3, 4, 4), None, None],
                {"s": W(3), "t": W(3)}), (2, 3, 4, 4)),
    ("prelu_shared", (node("PRelu", ["x", "s"]), [(2, 3, 4, 4), None], {"s": W(1)}), (2, 3, 4, 4)),
    ("act", (node("Act", ["x"], {"activation": {"kind": "Relu"}}), [(3, 4)], {}), (3, 4)),
    ("maxpool", pool(), (1, 2, 4, 4)),
    ("maxpool_ceil", pool(x=(1, 2, 7, 7), k=(2, 2), p=(0, 0, 0, 0), cm=1), (1, 2, 4, 4)),
    ("maxpool_ceil_drops_last", pool(x=(1, 2, 5, 5), k=(2, 2), p=(1, 1, 1, 1), cm=1), (1, 2, 3, 3)),
    ("avgpool_dilation", pool("AveragePool", x=(1, 2, 9, 9), s=(1, 1), d=(2, 2)), (1, 2, 7, 7)),
    ("gap", (node("GlobalAveragePool", ["x"]), [(2, 3, 5, 4)], {}), (2, 3, 1, 1)),
    ("add_broadcast", (node("Add", ["a", "c"], {"activation": None}), [(2, 3, 4, 4), None],
                       {"c": W(3, 1, 1)}), (2, 3, 4, 4)),
    ("mul_dyn", (node("Mul", ["a", "b"]), [(None, 3, 1, 4), (1, 3, 5, 1)], {}), (None, 3, 5, 4)),
    ("concat", (node("Concat", ["a", "b"], {"axis": 1}), [(2, 3, 4, 4), (2, 5, 4, 4)], {}),
     (2, 8, 4, 4)),
    ("concat_dyn", (node("Concat", ["a", "b"], {"axis": 1}), [(None, 3, 4), (None, 5, 4)], {}),
     (None, 8, 4)),
    ("flatten", (node("Flatten", ["x"], {"axis": 1}), [(2, 3, 4, 5)], {}), (2, 60)),
    ("flatten_axis_rank", (node("Flatten", ["x"], {"axis": 4}), [(2, 3, 4, 5)], {}), (120, 1)),
    ("flatten_dyn", (node("Flatten", ["x"], {"axis": 1}), [(None, 3, 4, 5)], {}), (None, 60)),
    ("reshape", (node("Reshape", ["x"], {"shape": [0, -1, 2]}), [(2, 3, 4)], {}), (2, 6, 2)),
    ("reshape_dyn", (node("Reshape", ["x"], {"shape": [0, -1]}), [(None, 3, 4)], {}), (None, 12)),
    ("transpose", (node("Transpose", ["x"], {"perm": [0, 2, 3, 1]}), [(2, 3, 4, 5)], {}),
     (2, 4, 5, 3)),
    ("softmax", (node("Softmax", ["x"], {"axis": 1}), [(2, 10)], {}), (2, 10)),
    ("pad", (node("Pad", ["x"], {"pads": [0, 0, 1, 2, 0, 0, 3, 4], "mode": "reflect", "value": 0.0}),
             [(1, 2, 5, 5)], {}), (1, 2, 9, 11)),
    ("resize_scales", resize(scales=(1.5, 0.5)), (1, 2, 6, 3)),
    ("resize_scales_floor", resize(x=(1, 2, 3, 3), scales=(1.5, 2.5)), (1, 2, 4, 7)),
    ("resize_sizes", resize(scales=None, sizes=(7, 2), mode="linear", nm=None), (1, 2, 7, 2)),
    ("resize_not_larger", resize(scales=None, sizes=(7, 8), keep_aspect_ratio_policy="not_larger"),
     (1, 2, 5, 8)),
    ("resize_not_smaller", resize(x=(1, 2, 4, 5), scales=None, sizes=(3, 3),
                                  keep_aspect_ratio_policy="not_smaller"), (1, 2, 3, 4)),
    ("d2s", (node("DepthToSpace", ["x"], {"blocksize": 2, "mode": "CRD"}), [(1, 8, 3, 3)], {}),
     (1, 2, 6, 6)),
    ("slice", (node("Slice", ["x"], {"starts": [1, 0], "ends": [5, 7], "axes": [2, 3],
                                      "steps": [2, 3]}), [(1, 2, 6, 7)], {}), (1, 2, 2, 3)),
    ("slice_negative", (node("Slice", ["x"], {"starts": [5], "ends": [-1], "axes": [3],
                                               "steps": [-2]}), [(1, 2, 6, 6)], {}), (1, 2, 6, 3)),
    ("slice_onnx_bounds", (node("Slice", ["x"], {"starts": [1, -1], "ends": [-1, -100],
                                                  "axes": [2, 3], "steps": [1, -2],
                                                  "onnx_bounds": 1}), [(1, 2, 6, 7)], {}),
     (1, 2, 4, 4)),
]


@pytest.mark.parametrize("spec", [g[1] for g in GOOD], ids=[g[0] for g in GOOD])
def test_infer_shapes(spec):
    want = dict((id(g[1]), g[2]) for g in GOOD)[id(spec)]
    n, shapes, consts = spec
    assert ir.infer_shapes(n, shapes, consts) == [want]
    ir.validate(n, shapes, consts)  # no exception


def test_tables_derive_from_the_spec():
    from edgenet.ops import CONST, SPEC
    assert set(ir.SHAPES) == set(ir.OPS) == set(ir.CONST_INPUTS) == set(SPEC)
    assert ir.CONST_INPUTS["Conv"] == {1, 2}
    assert ir.CONST_INPUTS["Gemm"] == {1, 2}
    assert ir.CONST_INPUTS["Affine"] == {1, 2}
    assert ir.CONST_INPUTS["PRelu"] == {1}
    assert ir.OPTIONAL_INPUTS["Conv"] == {2, 3}
    assert ir.N_INPUTS["Concat"] == (1, None) and ir.N_INPUTS["Conv"] == (2, 4)
    assert ir.CONST_OK_INPUTS["Add"] == {0, 1} and ir.CONST_OK_INPUTS["Concat"] == {0}   # variadic ANY: every position
    assert ir.ACT_OPS == {op for op, s in SPEC.items() if "activation" in s.attrs}
    for op, s in SPEC.items():
        assert s.name == op and callable(s.shape), op
        assert [i.variadic for i in s.inputs[:-1]] == [False] * (len(s.inputs) - 1), op
        # a must-be-constant input is a weight-like parameter: never variadic
        assert not any(i.kind == CONST and i.variadic for i in s.inputs), op


def test_spec_defaults_reach_the_shape_rules():
    """An attribute with a spec default may be omitted; a required one may not."""
    from edgenet.ops import SPEC, node_attrs
    n = node("AveragePool", ["x"], {"kernel": [2, 2], "strides": [2, 2], "pads": [0, 0, 0, 0],
                                    "count_include_pad": 0})
    assert ir.infer_shapes(n, [(1, 1, 4, 4)], {}) == [(1, 1, 2, 2)]
    assert node_attrs(n)["ceil_mode"] == SPEC["AveragePool"].attrs["ceil_mode"] == 0
    m = dict(n, op="MaxPool")
    with pytest.raises(ModelError, match="missing attribute 'ceil_mode'"):
        ir.validate(m, [(1, 1, 4, 4)], {})


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_every_op_has_an_implementation_or_a_stated_exclusion(backend):
    import importlib
    from edgenet.ops import SPEC
    mod = importlib.import_module(f"edgenet.{backend}")
    check_coverage(mod.OPS, mod.EXCLUDED, SPEC)


def test_every_op_has_a_cuda_implementation_or_a_stated_exclusion():
    """The CUDA table, loaded under the simulator in a fresh process (numba reads
    NUMBA_ENABLE_CUDASIM when it is first imported)."""
    import os
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = ("import edgenet.cuda as c\n"
            "from edgenet.ops import SPEC\n"
            "from tests.helpers import check_coverage\n"
            "check_coverage(c.OPS, c.EXCLUDED, SPEC)\n")
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1", PYTHONPATH=root)
    r = subprocess.run([sys.executable, "-c", code], env=env, cwd=root, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]


# ------------------------------------------------------------------ rejection

def _mut(spec, fn):
    n, shapes, consts = copy.deepcopy(spec)
    fn(n, shapes, consts)
    return n, shapes, consts


def _set(key, value):
    def f(n, shapes, consts):
        n["attrs"][key] = value
    return f


def _shape(i, value):
    def f(n, shapes, consts):
        shapes[i] = value
    return f


C = conv()
BAD = [
    ("unknown_op", _mut(C, lambda n, s, c: n.update(op="Conv3D")), "unknown op"),
    ("too_few_inputs", _mut(C, lambda n, s, c: (n.update(inputs=["x"]), s.__delitem__(slice(1, None)))),
     "inputs"),
    ("too_many_inputs", (node("Add", ["a", "b", "c"]), [(1,), (1,), (1,)], {}), "inputs"),
    ("shape_count", _mut(C, lambda n, s, c: s.pop()), "input shapes"),
    ("x_rank", _mut(C, _shape(0, (3, 8, 8))), "rank"),
    ("w_rank", conv(w=(4, 3, 3)), "rank"),
    ("w_channels", conv(w=(4, 2, 3, 3)), "input channels"),
    ("group_c", conv(x=(1, 5, 8, 8), w=(4, 2, 3, 3), g=2), "not divisible by group"),
    ("group_o", conv(x=(1, 4, 8, 8), w=(3, 2, 3, 3), g=2, b=3), "not divisible by group"),
    ("group_zero", conv(g=0), "group"),
    ("stride_zero", conv(strides=(0, 1)), "strides"),
    ("dilation_neg", conv(dil=(1, -1)), "dilations"),
    ("pads_neg", conv(pads=(0, -1, 0, 0)), "pads"),
    ("pads_len", _mut(C, _set("pads", [1, 1])), "pads"),
    ("strides_not_ints", _mut(C, _set("strides", [1.5, 1])), "strides"),
    ("missing_attr", _mut(C, lambda n, s, c: n["attrs"].pop("dilations")), "dilations"),
    ("kernel_too_big", conv(x=(1, 3, 2, 2), pads=(0, 0, 0, 0)), "empty output"),
    ("kernel_empty", conv(w=(4, 3, 0, 3)), "kernel"),
    ("bias_len", conv(b=5), "bias"),
    ("residual_shape", conv(residual=(2, 4, 8, 7)), "residual"),
    ("weight_not_const", _mut(C, lambda n, s, c: (c.pop("w"), s.__setitem__(1, (4, 3, 3, 3)))),
     "must be a constant"),
    ("required_absent", _mut(C, lambda n, s, c: n["inputs"].__setitem__(1, "")), "absent"),
    ("bias_not_const", _mut(C, lambda n, s, c: c.pop("b")), "must be a constant"),
    ("no_shape", (node("Add", ["a", "b"]), [(2, 3), None], {}), "no shape"),
    ("act_kind", conv(act={"kind": "Swish"}), "activation kind"),
    ("act_malformed", conv(act="Relu"), "activation"),
    ("act_alpha", conv(act={"kind": "LeakyRelu", "alpha": "x"}), "alpha"),
    ("act_on_pool", _mut(pool(), _set("activation", {"kind": "Relu"})), "no activation"),
    ("act_null", (node("Act", ["x"], {"activation": None}), [(2, 3)], {}), "null"),
    ("convt_channels", (node("ConvTranspose", ["x", "w"], {
        "strides": [2, 2], "pads": [0, 0, 0, 0], "dilations": [1, 1], "group": 1,
        "output_padding": [0, 0], "activation": None}), [(1, 3, 4, 4), None],
        {"w": W(3, 5, 3, 3)}), "input channels"),
    ("convt_empty", (node("ConvTranspose", ["x", "w"], {
        "strides": [1, 1], "pads": [2, 0, 1, 0], "dilations": [1, 1], "group": 1,
        "output_padding": [0, 0], "activation": None}), [(1, 3, 1, 1), None],
        {"w": W(2, 3, 2, 2)}), "empty"),
    ("convt_outpad_neg", (node("ConvTranspose", ["x", "w"], {
        "strides": [1, 1], "pads": [0, 0, 0, 0], "dilations": [1, 1], "group": 1,
        "output_padding": [-1, 0], "activation": None}), [(1, 3, 4, 4), None],
        {"w": W(2, 3, 2, 2)}), "output_padding"),
    ("gemm_k", (node("Gemm", ["x", "w"]), [(2, 7), None], {"w": W(3, 6)}), "K"),
    ("gemm_rank", (node("Gemm", ["x", "w"]), [(7,), None], {"w": W(3, 7)}), "rank"),
    ("gemm_nd_k", (node("Gemm", ["x", "w"]), [(2, 7, 1), None], {"w": W(3, 7)}), "K = 1"),
    ("matmul_inner", (node("MatMul", ["a", "b"]), [(2, 3), (4, 5)], {}), "inner"),
    ("matmul_rank", (node("MatMul", ["a", "b"]), [(3,), (3, 5)], {}), "rank"),
    ("matmul_batch", (node("MatMul", ["a", "b"]), [(2, 3, 4), (3, 4, 5)], {}), "broadcast"),
    ("affine_len", (node("Affine", ["x", "s", "t"]), [(2, 3, 4, 4), None, None],
                    {"s": W(3), "t": W(4)}), "shift"),
    ("prelu_len", (node("PRelu", ["x", "s"]), [(2, 3, 4, 4), None], {"s": W(2)}), "slope"),
    ("pool_rank", pool(x=(2, 8, 8)), "rank"),
    ("pool_kernel_zero", pool(k=(0, 3)), "kernel"),
    ("pool_stride_zero", pool(s=(1, 0)), "strides"),
    ("pool_ceil_mode", pool(cm=2), "ceil_mode"),
    ("pool_cip", pool("AveragePool", cip=3), "count_include_pad"),
    ("pool_too_big", pool(x=(1, 2, 2, 2), p=(0, 0, 0, 0)), "empty output"),
    ("pool_all_padding", pool(k=(2, 2), s=(1, 1), p=(2, 0, 0, 0)), "entirely in the padding"),
    ("pool_dilated_all_padding", pool(x=(1, 1, 2, 2), k=(2, 2), s=(1, 1), p=(1, 1, 1, 1),
                                      d=(3, 3)), "entirely in the padding"),
    ("gap_rank", (node("GlobalMaxPool", ["x"]), [(2, 3)], {}), "rank"),
    ("broadcast", (node("Add", ["a", "b"]), [(2, 3, 4), (2, 4, 4)], {}), "broadcast"),
    ("broadcast_const", (node("Mul", ["a", "c"]), [(2, 3, 4, 4), None], {"c": W(4, 1, 1)}),
     "broadcast"),
    ("concat_dims", (node("Concat", ["a", "b"], {"axis": 1}), [(2, 3, 4), (2, 3, 5)], {}), "axis 2"),
    ("concat_rank", (node("Concat", ["a", "b"], {"axis": 0}), [(2, 3), (2, 3, 1)], {}), "rank"),
    ("concat_axis", (node("Concat", ["a"], {"axis": 2}), [(2, 3)], {}), "axis"),
    ("concat_axis_neg", (node("Concat", ["a"], {"axis": -1}), [(2, 3)], {}), "axis"),
    ("flatten_axis", (node("Flatten", ["x"], {"axis": 5}), [(2, 3, 4, 5)], {}), "axis"),
    ("reshape_count", (node("Reshape", ["x"], {"shape": [5, 5]}), [(2, 12)], {}), "reshape"),
    ("reshape_infer", (node("Reshape", ["x"], {"shape": [5, -1]}), [(2, 12)], {}), "reshape"),
    ("reshape_two_minus1", (node("Reshape", ["x"], {"shape": [-1, -1]}), [(2, 12)], {}), "-1"),
    ("reshape_bad_entry", (node("Reshape", ["x"], {"shape": [-2, 12]}), [(2, 12)], {}), "invalid"),
    ("reshape_zero_oob", (node("Reshape", ["x"], {"shape": [24, 0, 0]}), [(2, 12)], {}), "copies"),
    ("perm_dup", (node("Transpose", ["x"], {"perm": [0, 0, 1]}), [(2, 3, 4)], {}), "perm"),
    ("perm_len", (node("Transpose", ["x"], {"perm": [1, 0]}), [(2, 3, 4)], {}), "perm"),
    ("softmax_axis", (node("Softmax", ["x"], {"axis": 2}), [(2, 3)], {}), "axis"),
    ("pad_len", (node("Pad", ["x"], {"pads": [1, 1], "mode": "constant", "value": 0.0}),
                 [(2, 3)], {}), "pads"),
    ("pad_neg", (node("Pad", ["x"], {"pads": [0, -1, 0, 0], "mode": "constant", "value": 0.0}),
                 [(2, 3)], {}), "pads"),
    ("pad_mode", (node("Pad", ["x"], {"pads": [0, 1, 0, 0], "mode": "wrap", "value": 0.0}),
                  [(2, 3)], {}), "mode"),
    ("pad_reflect_big", (node("Pad", ["x"], {"pads": [0, 3, 0, 0], "mode": "reflect", "value": 0.0}),
                         [(2, 3)], {}), "reflect"),
    ("resize_both", resize(sizes=(8, 8)), "exactly one"),
    ("resize_neither", resize(scales=None), "exactly one"),
    ("resize_scale_zero", resize(scales=(0.0, 2.0)), "positive"),
    ("resize_scale_nan", resize(scales=(float("nan"), 2.0)), "positive"),
    ("resize_empty", resize(x=(1, 2, 1, 4), scales=(0.5, 1.0)), "empty"),
    ("resize_sizes_zero", resize(scales=None, sizes=(0, 4)), "sizes"),
    ("resize_mode", resize(mode="bicubic"), "mode"),
    ("resize_ctm", resize(ctm="tf_legacy"), "coordinate_transformation_mode"),
    ("resize_crop_no_roi", resize(ctm="tf_crop_and_resize"), "roi"),
    ("resize_roi_unused", resize(roi=[0, 0, 1, 1]), "roi"),
    ("resize_nearest_antialias", resize(antialias=1), "antialias"),
    ("resize_policy_scales", resize(keep_aspect_ratio_policy="not_larger"), "'sizes' only"),
    ("resize_policy", resize(scales=None, sizes=(2, 2), keep_aspect_ratio_policy="fit"),
     "keep_aspect_ratio_policy"),
    ("resize_nearest_mode", resize(nm="round"), "nearest_mode"),
    ("resize_rank", resize(x=(2, 4, 6)), "rank"),
    ("d2s_div", (node("DepthToSpace", ["x"], {"blocksize": 2, "mode": "DCR"}), [(1, 6, 3, 3)], {}),
     "divisible"),
    ("d2s_mode", (node("DepthToSpace", ["x"], {"blocksize": 2, "mode": "XYZ"}), [(1, 8, 3, 3)], {}),
     "mode"),
    ("d2s_block0", (node("DepthToSpace", ["x"], {"blocksize": 0, "mode": "DCR"}), [(1, 8, 3, 3)], {}),
     "blocksize"),
    ("slice_step0", (node("Slice", ["x"], {"starts": [0], "ends": [2], "axes": [1], "steps": [0]}),
                     [(2, 3)], {}), "steps"),
    ("slice_unnormalized", (node("Slice", ["x"], {"starts": [0], "ends": [2 ** 62], "axes": [1],
                                                  "steps": [1]}), [(2, 3)], {}), "normalized"),
    ("slice_empty", (node("Slice", ["x"], {"starts": [2], "ends": [1], "axes": [1], "steps": [1]}),
                     [(2, 3)], {}), "empty"),
    ("slice_onnx_empty", (node("Slice", ["x"], {"starts": [-1], "ends": [-2], "axes": [1],
                                                 "steps": [1], "onnx_bounds": 1}), [(2, 3)], {}),
     "empty"),
    ("slice_onnx_flag", (node("Slice", ["x"], {"starts": [0], "ends": [1], "axes": [1],
                                                "steps": [1], "onnx_bounds": 2}), [(2, 3)], {}),
     "onnx_bounds"),
    ("slice_axes", (node("Slice", ["x"], {"starts": [0, 0], "ends": [1, 1], "axes": [1, 1],
                                          "steps": [1, 1]}), [(2, 3)], {}), "axes"),
    ("slice_lens", (node("Slice", ["x"], {"starts": [0], "ends": [1, 1], "axes": [1],
                                          "steps": [1]}), [(2, 3)], {}), "ends"),
    ("dyn_non_batch", (node("Act", ["x"], {"activation": {"kind": "Relu"}}), [(2, None)], {}),
     "dynamic"),
    ("two_outputs", _mut(C, lambda n, s, c: n.update(outputs=["a", "b"])), "output"),
]


@pytest.mark.parametrize("spec,needle", [(b[1], b[2]) for b in BAD], ids=[b[0] for b in BAD])
def test_validate_rejects(spec, needle):
    n, shapes, consts = spec
    for fn in (ir.validate, ir.infer_shapes):
        with pytest.raises(ModelError) as ei:
            fn(n, shapes, consts)
        msg = str(ei.value)
        assert msg.startswith(f"node '{n['name']}' ({n['op']}): "), msg
        assert needle in msg, msg


def test_conv_accepts_any_weight_encoding():
    for enc, vals in [("t2", np.ones((4, 3, 3, 3))), ("q3", np.full((4, 3, 3, 3), 2)),
                      ("i8", np.full((4, 3, 3, 3), -7)), ("f16", np.ones((4, 3, 3, 3)))]:
        w = pack(enc, vals, None if enc == "f16" else np.ones(4))
        n, shapes, consts = conv()
        consts["w"] = w
        assert ir.infer_shapes(n, shapes, consts) == [(2, 4, 8, 8)]


def test_act_code_and_defaults():
    assert ir.act_code(None) == (0, 0.0, 0.0)
    assert ir.act_code({"kind": "Clip"}) == (7, -ir.FLT_MAX, ir.FLT_MAX)
    assert ir.act_code({"kind": "LeakyRelu", "alpha": 0.2}) == (2, 0.2, 0.0)


def test_every_spec_op_is_documented():
    import os
    doc = open(os.path.join(os.path.dirname(__file__), "..", "docs", "IR.md")).read()
    from edgenet.ops import SPEC
    assert not [op for op in SPEC if f"`{op}`" not in doc]
