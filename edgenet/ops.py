"""The IR op spec: one record per op (docs/IR.md, "Ops"). Everything that used to be a
parallel list derives from ``SPEC``: the IR validator's tables (edgenet/ir.py), the
runtime's graph checks, the converter's final IR check and fusion targets, the backend
coverage test (tests/test_ir.py) and the test lists.

A record says, per input, whether it is an activation (``ACT``), a stored tensor
(``CONST``: weights, biases, per-channel parameters) or either (``ANY``), whether it may be
absent (``""``) and whether it repeats (Concat); the attributes with their defaults
(``REQUIRED`` when there is none); whether the op takes a fused ``activation`` epilogue;
and its shape rule (edgenet/shapes.py), which also validates the node.

Adding an op: docs/IR.md "Adding an operator".
"""
from __future__ import annotations

from typing import Callable, NamedTuple

from . import shapes as S
from .shapes import REQUIRED

ACT, CONST, ANY = "act", "const", "any"


class In(NamedTuple):
    """One input position."""

    name: str
    kind: str = ACT           # ACT, CONST or ANY
    optional: bool = False    # may be "" (absent)
    variadic: bool = False    # repeats: one or more (only the last input)


class OpSpec(NamedTuple):
    name: str
    inputs: tuple             # of In
    attrs: dict               # attribute -> default (REQUIRED: none)
    activation: bool          # takes a fused activation epilogue (attribute "activation")
    shape: Callable           # shape rule: Ctx -> [output shape]
    doc: str = ""

    @property
    def n_inputs(self) -> tuple:
        """(min, max) input count; max None when the last input repeats."""
        lo = sum(1 for i in self.inputs if not i.optional)
        hi = None if self.inputs and self.inputs[-1].variadic else len(self.inputs)
        return lo, hi

    def input_at(self, pos: int) -> In:
        """The input record of position ``pos`` (a variadic last input covers the rest)."""
        return self.inputs[min(pos, len(self.inputs) - 1)]

    def defaults(self) -> dict:
        """Attributes that have a default value."""
        return {k: v for k, v in self.attrs.items() if v is not REQUIRED}


R = REQUIRED
_ACT = {"activation": None}
_CONV = {"strides": R, "pads": R, "dilations": R, "group": R}
_POOL = {"kernel": R, "strides": R, "pads": R, "dilations": [1, 1]}


def _op(name, inputs, attrs=None, activation=False, shape=None, doc=""):
    attrs = dict(attrs or {})
    if activation:
        attrs.setdefault("activation", None)
    return OpSpec(name, tuple(inputs), attrs, activation, shape, doc)


_X = In("X")

SPEC = {s.name: s for s in (
    _op("Conv", [_X, In("W", CONST), In("B", CONST, optional=True),
                 In("R", optional=True)], _CONV, True, S.shape_conv,
        "y = act(conv(X, W) + B + R); R: residual with the output's shape"),
    _op("ConvTranspose", [_X, In("W", CONST), In("B", CONST, optional=True)],
        {**_CONV, "output_padding": R}, True, S.shape_convtranspose,
        "W output-channel-major (O, C/g, kh, kw)"),
    _op("Gemm", [_X, In("W", CONST), In("B", CONST, optional=True)], {}, True,
        S.shape_gemm, "y = act(X · Wᵀ + B)"),
    _op("MatMul", [In("A"), In("B", ANY)], {}, False, S.shape_matmul,
        "numpy.matmul (rank >= 2); B an activation or a stored tensor"),
    _op("Affine", [_X, In("S", CONST), In("T", CONST)], {}, True, S.shape_affine,
        "y = act(X·S[c] + T[c]), channel axis 1"),
    _op("Act", [_X], {"activation": R}, True, S.shape_act, "elementwise activation"),
    _op("PRelu", [_X, In("slope", CONST)], {}, False, S.shape_prelu,
        "x if x >= 0 else slope[c]·x"),
    _op("MaxPool", [_X], {**_POOL, "ceil_mode": R}, False, S.shape_pool),
    _op("AveragePool", [_X], {**_POOL, "ceil_mode": 0, "count_include_pad": R}, False,
        S.shape_pool),
    _op("GlobalAveragePool", [_X], {}, False, S.shape_global_pool),
    _op("GlobalMaxPool", [_X], {}, False, S.shape_global_pool),
    _op("Add", [In("A", ANY), In("B", ANY)], {}, True, S.shape_binary, "broadcasting"),
    _op("Sub", [In("A", ANY), In("B", ANY)], {}, True, S.shape_binary, "broadcasting"),
    _op("Mul", [In("A", ANY), In("B", ANY)], {}, True, S.shape_binary, "broadcasting"),
    _op("Div", [In("A", ANY), In("B", ANY)], {}, True, S.shape_binary, "broadcasting"),
    _op("Concat", [In("X", ANY, variadic=True)], {"axis": R}, False, S.shape_concat),
    _op("Flatten", [_X], {"axis": R}, False, S.shape_flatten),
    _op("Reshape", [_X], {"shape": R}, False, S.shape_reshape),
    _op("Transpose", [_X], {"perm": R}, False, S.shape_transpose),
    _op("Softmax", [_X], {"axis": R}, False, S.shape_softmax),
    _op("Pad", [_X], {"pads": R, "mode": R, "value": 0.0}, False, S.shape_pad),
    _op("Resize", [_X], {"mode": R, "coordinate_transformation_mode": R,
                         "nearest_mode": None, "scales": None, "sizes": None,
                         "cubic_coeff_a": -0.75, "exclude_outside": 0, "antialias": 0,
                         "roi": None, "extrapolation_value": 0.0,
                         "keep_aspect_ratio_policy": "stretch"}, False,
        S.shape_resize, "ONNX Resize on H, W; nearest_mode is required when mode is "
        "nearest; roi [y0, x0, y1, x1] with tf_crop_and_resize only"),
    _op("DepthToSpace", [_X], {"blocksize": R, "mode": R}, False, S.shape_depth_to_space),
    _op("Slice", [_X], {"starts": R, "ends": R, "axes": R, "steps": R, "onnx_bounds": 0},
        False,
        S.shape_slice),
)}


def node_attrs(node) -> dict:
    """The node's attributes with the spec's defaults filled in (what a kernel reads)."""
    spec = SPEC[node["op"]]
    return {**spec.defaults(), **(node.get("attrs") or {})}


# Elementwise math and reductions (issue 13; shape rules and function codes in
# edgenet/shapes_math.py).
def _math_ops():
    from . import shapes_math as M
    return (
        _op("Unary", [_X], {"fn": R}, False, M.shape_unary,
            "y = fn(x) elementwise; fn in shapes_math.UNARY_FNS"),
        _op("BinaryMath", [In("A", ANY), In("B", ANY)], {"fn": R}, False,
            M.shape_binary_math, "y = max/min/pow(a, b), broadcasting"),
        _op("Reduce", [_X], {"fn": R, "axes": R, "keepdims": R}, False, M.shape_reduce,
            "reduce over sorted axes; fn in shapes_math.REDUCE_FNS"),
        _op("LayerNorm", [_X, In("S", CONST), In("B", CONST)], {"axis": R, "epsilon": R},
            False, M.shape_layernorm,
            "(x - mean) / sqrt(var + epsilon) · S + B over the axes [axis, rank)"),
    )


SPEC.update({s.name: s for s in _math_ops()})


# Recurrent ops (issue 13; shape rule in edgenet/shapes_rnn.py).
def _rnn_ops():
    from . import shapes_rnn as N
    return (
        _op("LSTM", [_X, In("W", CONST), In("R", CONST), In("B", CONST, optional=True),
                     In("initial_h", ANY, optional=True), In("initial_c", ANY, optional=True),
                     In("P", CONST, optional=True)],
            {"hidden_size": R, "direction": R, "with_states": 0}, False, N.shape_lstm,
            "ONNX LSTM (layout 0, default activations); output Y, or Y then Y_h, Y_c rows"),
    )


SPEC.update({s.name: s for s in _rnn_ops()})
