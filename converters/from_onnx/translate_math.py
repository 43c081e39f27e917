"""Translators of the elementwise-math, variadic, reduction and normalization ONNX ops
(issue 13) onto the IR ops Unary, BinaryMath, Reduce, Add/Sub/Mul/Div and Affine
(edgenet/shapes_math.py). Registered in ``translate.TRANSLATORS``.

LayerNormalization, InstanceNormalization and LogSoftmax are emitted as their formulas
(mean/variance by Reduce, then elementwise ops); Sum/Mean/Max/Min as chains of binary ops.
"""
from __future__ import annotations

import numpy as np

from .graph import node_error

UNARY = {"Neg": "neg", "Abs": "abs", "Sqrt": "sqrt", "Exp": "exp", "Log": "log",
         "Reciprocal": "reciprocal", "Erf": "erf", "Softplus": "softplus", "Mish": "mish",
         "Floor": "floor", "Ceil": "ceil", "Sin": "sin", "Cos": "cos", "Softsign": "softsign"}
REDUCE = {"ReduceMean": "mean", "ReduceSum": "sum", "ReduceMax": "max", "ReduceMin": "min",
          "ReduceProd": "prod", "ReduceSumSquare": "sumsquare", "ReduceL1": "l1",
          "ReduceL2": "l2", "ReduceLogSum": "logsum", "ReduceLogSumExp": "logsumexp"}
# opset from which an op takes its axes as input 1 instead of an attribute
_AXES_INPUT_FROM = {"ReduceSum": 13}


def _rank(ctx, x, n):
    return len(ctx.shape(x, n))


def _unary(ctx, name, x, fn, out):
    ctx.emit(name, "Unary", [x], [out], {"fn": fn})
    return out


def _reduce(ctx, name, x, fn, axes, keepdims, out):
    ctx.emit(name, "Reduce", [x], [out], {"fn": fn, "axes": sorted(axes),
                                          "keepdims": int(keepdims)})
    return out


def unary(ctx, n, name, at):
    _unary(ctx, name, ctx.act_in(n, 0), UNARY[n.op_type], n.output[0])


def Gelu(ctx, n, name, at):
    approx = at.get("approximate", "none")
    if approx not in ("none", "tanh"):
        raise node_error(n, f"Gelu approximate={approx!r}")
    _unary(ctx, name, ctx.act_in(n, 0), "gelu" if approx == "none" else "gelu_tanh",
           n.output[0])


def Pow(ctx, n, name, at):
    e = ctx.cin(n, 1)
    if e is not None and not np.issubdtype(np.asarray(e).dtype, np.floating):
        # an integer exponent (ONNX allows it): as a float32 constant
        b = ctx.add_const(np.asarray(e, np.float32), n.input[1] + "::f32")
        if np.size(e) != 1 or ctx.fe.const(n.input[0], n) is not None:
            ctx.emit(name, "BinaryMath", [ctx.operand(n, 0), b], [n.output[0]], {"fn": "pow"})
            return
        e = np.asarray(e, np.float32)
    if e is not None and np.size(e) == 1 and ctx.fe.const(n.input[0], n) is None:
        v = float(np.asarray(e).reshape(-1)[0])
        x = ctx.act_in(n, 0)
        if v == 1.0:
            ctx.alias[n.output[0]] = x
            return
        if v == 2.0:
            ctx.emit(name, "Mul", [x, x], [n.output[0]], {"activation": None})
            return
        if v == 0.5:
            _unary(ctx, name, x, "sqrt", n.output[0])
            return
        if v == -1.0:
            _unary(ctx, name, x, "reciprocal", n.output[0])
            return
    a = ctx.operand(n, 0)
    if e is not None:
        b = ctx.add_const(np.asarray(e, np.float32), n.input[1] + "::f32")
    else:
        b = ctx.operand(n, 1)
    ctx.emit(name, "BinaryMath", [a, b], [n.output[0]], {"fn": "pow"})


def _chain(ctx, n, name, op, attrs):
    ins = [i for i in range(len(n.input)) if n.input[i]]
    if len(ins) == 1:
        ctx.alias[n.output[0]] = ctx.act_in(n, ins[0])
        return None
    acc = ctx.operand(n, ins[0])
    for k, i in enumerate(ins[1:]):
        last = k == len(ins) - 2
        out = n.output[0] if last else ctx.tmp(f"{n.output[0]}::{k}")
        ctx.emit(name if last else f"{name}::{k}", op, [acc, ctx.operand(n, i)], [out],
                 dict(attrs))
        acc = out
    return acc


def Max(ctx, n, name, at):
    _chain(ctx, n, name, "BinaryMath", {"fn": "max"})


def Min(ctx, n, name, at):
    _chain(ctx, n, name, "BinaryMath", {"fn": "min"})


def Sum(ctx, n, name, at):
    _chain(ctx, n, name, "Add", {"activation": None})


def Mean(ctx, n, name, at):
    k = len([i for i in n.input if i])
    if k == 1:
        ctx.alias[n.output[0]] = ctx.act_in(n, 0)
        return
    s = ctx.tmp(n.output[0] + "::sum")
    orig = n.output[0]
    # sum into a temporary, then scale by 1/k
    acc = ctx.operand(n, 0)
    for i in range(1, len(n.input)):
        out = s if i == len(n.input) - 1 else ctx.tmp(f"{orig}::{i}")
        ctx.emit(f"{name}::add{i}", "Add", [acc, ctx.operand(n, i)], [out],
                 {"activation": None})
        acc = out
    ctx.emit(name, "Mul", [s, ctx.add_const(np.float32(1.0 / k).reshape(1), name + "::inv")],
             [orig], {"activation": None})


def _reduce_axes(ctx, n, at, x):
    r = _rank(ctx, x, n)
    if ctx.opset >= _AXES_INPUT_FROM.get(n.op_type, 18):
        ax = ctx.cin(n, 1)
        if ax is None and len(n.input) > 1 and n.input[1]:
            raise node_error(n, "reduction axes must be constants")
        axes = None if ax is None else [int(a) for a in np.asarray(ax).reshape(-1)]
    else:
        axes = at.get("axes")
    if not axes:
        if int(at.get("noop_with_empty_axes", 0)):
            return None
        axes = list(range(r))
    return sorted({int(a) % r for a in axes})


def reduce(ctx, n, name, at):
    x = ctx.act_in(n, 0)
    axes = _reduce_axes(ctx, n, at, x)
    if axes is None:
        ctx.alias[n.output[0]] = x
        return
    _reduce(ctx, name, x, REDUCE[n.op_type], axes, int(at.get("keepdims", 1)), n.output[0])


def _normalize(ctx, n, name, x, axes, eps, mean_out=None, inv_std_out=None):
    """(x - mean) / sqrt(var + eps) over ``axes`` (population variance); returns the name.
    ``mean_out`` / ``inv_std_out``: also write the mean and 1/std there (keepdims)."""
    mean = _reduce(ctx, name + "::mean", x, "mean", axes, 1,
                   mean_out or ctx.tmp(n.output[0] + "::mean"))
    d = ctx.tmp(n.output[0] + "::centered")
    ctx.emit(name + "::center", "Sub", [x, mean], [d], {"activation": None})
    sq = ctx.tmp(n.output[0] + "::sq")
    ctx.emit(name + "::square", "Mul", [d, d], [sq], {"activation": None})
    var = _reduce(ctx, name + "::var", sq, "mean", axes, 1, ctx.tmp(n.output[0] + "::var"))
    ve = ctx.tmp(n.output[0] + "::var_eps")
    ctx.emit(name + "::eps", "Add", [var, ctx.add_const(np.float32(eps).reshape(1),
                                                        name + "::epsilon")],
             [ve], {"activation": None})
    sd = _unary(ctx, name + "::sqrt", ve, "sqrt", ctx.tmp(n.output[0] + "::std"))
    if inv_std_out:
        _unary(ctx, name + "::inv_std", sd, "reciprocal", inv_std_out)
    y = ctx.tmp(n.output[0] + "::normed")
    ctx.emit(name + "::div", "Div", [d, sd], [y], {"activation": None})
    return y


def LayerNormalization(ctx, n, name, at):
    x = ctx.act_in(n, 0)
    r = _rank(ctx, x, n)
    ax = int(at.get("axis", -1)) % r
    if int(at.get("stash_type", 1)) != 1:
        raise node_error(n, "LayerNormalization stash_type other than float32")
    extra = list(n.output[1:3]) + [""] * (3 - len(n.output))
    y = _normalize(ctx, n, name, x, list(range(ax, r)), float(at.get("epsilon", 1e-5)),
                   mean_out=extra[0] or None, inv_std_out=extra[1] or None)
    scale = ctx.cin(n, 1)
    bias = ctx.cin(n, 2)
    if scale is None or (len(n.input) > 2 and n.input[2] and bias is None):
        raise node_error(n, "LayerNormalization scale/bias must be constants")
    out = n.output[0]
    ys = out if bias is None else ctx.tmp(out + "::scaled")
    ctx.emit(name + "::scale", "Mul", [y, ctx.add_const(scale, name + "::gamma")], [ys],
             {"activation": None})
    if bias is not None:
        ctx.emit(name, "Add", [ys, ctx.add_const(bias, name + "::beta")], [out],
                 {"activation": None})


def InstanceNormalization(ctx, n, name, at):
    x = ctx.act_in(n, 0)
    r = _rank(ctx, x, n)
    if r < 3:
        raise node_error(n, "InstanceNormalization needs rank >= 3 (N, C, spatial...)")
    scale, bias = ctx.cin(n, 1), ctx.cin(n, 2)
    if scale is None or bias is None:
        raise node_error(n, "InstanceNormalization scale/bias must be constants")
    y = _normalize(ctx, n, name, x, list(range(2, r)), float(at.get("epsilon", 1e-5)))
    ctx.emit(name, "Affine", [y, ctx.add_const(np.asarray(scale).reshape(-1), name + "::scale"),
                              ctx.add_const(np.asarray(bias).reshape(-1), name + "::shift")],
             [n.output[0]], {"activation": None})


def LogSoftmax(ctx, n, name, at):
    """x - max - log(sum(exp(x - max))) over the axis (opset < 13: over axes [axis, rank))."""
    x = ctx.act_in(n, 0)
    r = _rank(ctx, x, n)
    if ctx.opset >= 13:
        axes = [int(at.get("axis", -1)) % r]
    else:
        axes = list(range(int(at.get("axis", 1)) % r, r))
    out = n.output[0]
    m = _reduce(ctx, name + "::max", x, "max", axes, 1, ctx.tmp(out + "::max"))
    z = ctx.tmp(out + "::shifted")
    ctx.emit(name + "::shift", "Sub", [x, m], [z], {"activation": None})
    e = _unary(ctx, name + "::exp", z, "exp", ctx.tmp(out + "::exp"))
    s = _reduce(ctx, name + "::sum", e, "sum", axes, 1, ctx.tmp(out + "::sum"))
    ls = _unary(ctx, name + "::log", s, "log", ctx.tmp(out + "::logsum"))
    ctx.emit(name, "Sub", [z, ls], [out], {"activation": None})


def LRN(ctx, n, name, at):
    """y = x / (bias + alpha/size · Σ_window x²)^beta over channels: x² moved to
    (N, H, W, C), a (1, size) AveragePool with zero padding and count_include_pad (= the
    window sum / size), moved back, then the elementwise formula."""
    x = ctx.act_in(n, 0)
    if _rank(ctx, x, n) != 4:
        raise node_error(n, "LRN of a non-4-D tensor is not supported")
    size = int(at["size"])
    alpha, beta = float(at.get("alpha", 1e-4)), float(at.get("beta", 0.75))
    bias = float(at.get("bias", 1.0))
    out = n.output[0]
    t = lambda k: ctx.tmp(f"{out}::{k}")  # noqa: E731
    sq, sqt, avg, avgb, den, pw = t("sq"), t("sq_nhwc"), t("avg_nhwc"), t("avg"), t("den"), \
        t("pow")
    ctx.emit(name + "::sq", "Mul", [x, x], [sq], {"activation": None})
    ctx.emit(name + "::to_nhwc", "Transpose", [sq], [sqt], {"perm": [0, 2, 3, 1]})
    lo, hi = (size - 1) // 2, size - 1 - (size - 1) // 2
    ctx.emit(name + "::window", "AveragePool", [sqt], [avg],
             {"kernel": [1, size], "strides": [1, 1], "pads": [0, lo, 0, hi],
              "ceil_mode": 0, "count_include_pad": 1})
    ctx.emit(name + "::to_nchw", "Transpose", [avg], [avgb], {"perm": [0, 3, 1, 2]})
    scaled = t("scaled")
    ctx.emit(name + "::scale", "Mul",
             [avgb, ctx.add_const(np.float32(alpha).reshape(1), name + "::alpha")], [scaled],
             {"activation": None})
    ctx.emit(name + "::bias", "Add",
             [scaled, ctx.add_const(np.float32(bias).reshape(1), name + "::bias")], [den],
             {"activation": None})
    ctx.emit(name + "::pow", "BinaryMath",
             [den, ctx.add_const(np.float32(beta).reshape(1), name + "::beta")], [pw],
             {"fn": "pow"})
    ctx.emit(name, "Div", [x, pw], [out], {"activation": None})


MATH_TRANSLATORS = {
    "LRN": LRN,
    **{op: unary for op in UNARY},
    **{op: reduce for op in REDUCE},
    "Gelu": Gelu,
    "Pow": Pow,
    "Max": Max,
    "Min": Min,
    "Sum": Sum,
    "Mean": Mean,
    "LayerNormalization": LayerNormalization,
    "InstanceNormalization": InstanceNormalization,
    "LogSoftmax": LogSoftmax,
}
