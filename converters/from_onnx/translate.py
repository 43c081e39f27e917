"""Translation of ONNX nodes into IR nodes: one function per ONNX op, named like the op,
and the explicit table ``TRANSLATORS`` (ONNX op -> function).

A translator reads the node's inputs through the :class:`~.builder.Builder` (``ctx``):
``act_in`` for activations, ``cin`` for folded constants, ``operand`` for either; and
emits IR nodes with ``ctx.emit``. Ops that only rename (Identity, Dropout, Cast, a no-op
Pad or Slice) record an alias instead.
"""
from __future__ import annotations

import numpy as np

from edgenet.errors import ConversionError, UnsupportedOpError
from edgenet.ir import FLT_MAX, act_desc

from .fold import dyn_target
from .graph import node_error, np_dtype, onnx_attrs
from .translate_layout import LAYOUT_TRANSLATORS
from .translate_math import MATH_TRANSLATORS
from .translate_rnn import RNN_TRANSLATORS


def Identity(ctx, n, name, at):
    ctx.alias[n.output[0]] = ctx.r(n.input[0])


def Dropout(ctx, n, name, at):
    if len(n.output) > 1 and n.output[1]:
        raise node_error(n, "Dropout mask output is used")
    ctx.alias[n.output[0]] = ctx.r(n.input[0])


def Cast(ctx, n, name, at):
    if np_dtype(at["to"]) != np.float32:
        raise node_error(n, "Cast of an activation to a type other than float32")
    ctx.alias[n.output[0]] = ctx.r(n.input[0])


def act(ctx, n, name, at):
    x = ctx.act_in(n, 0)
    op = n.op_type
    if op == "Clip":
        if ctx.opset < 11:
            lo, hi = at.get("min", -FLT_MAX), at.get("max", FLT_MAX)
        else:
            lo_c, hi_c = ctx.cin(n, 1), ctx.cin(n, 2)
            for k, idx in ((lo_c, 1), (hi_c, 2)):
                if k is None and len(n.input) > idx and n.input[idx]:
                    raise node_error(n, "Clip bounds must be constants")
            lo = -FLT_MAX if lo_c is None else float(lo_c)
            hi = FLT_MAX if hi_c is None else float(hi_c)
        lo = min(lo, hi)           # ONNX: min > max clips everything to max
        desc = act_desc("Clip", max(lo, -FLT_MAX), min(hi, FLT_MAX))
    elif op in ("LeakyRelu", "Elu", "HardSigmoid"):
        desc = act_desc(op, at.get("alpha"), at.get("beta"))
    elif op == "Selu":
        desc = act_desc(op, at.get("alpha"), at.get("gamma"))
    else:
        desc = act_desc(op)
    ctx.emit(name, "Act", [x], [n.output[0]], {"activation": desc})


def _same_pads(auto, in_hw, k, s, d):
    b, e = [], []
    for i in range(len(k)):
        out = -(-in_hw[i] // s[i])
        tot = max(0, (out - 1) * s[i] + (k[i] - 1) * d[i] + 1 - in_hw[i])
        small = tot // 2
        if auto == "SAME_UPPER":
            b.append(small), e.append(tot - small)
        else:
            b.append(tot - small), e.append(small)
    return b + e


def _spatial_pads(ctx, n, at, x, k, s, d):
    """Explicit pads of a Conv/pool; SAME pads are computed under both dim assignments and
    must agree (they do for stride 1, or a static spatial size)."""
    auto = at.get("auto_pad", "NOTSET")
    r = len(k)
    if auto in ("NOTSET", ""):
        p = list(at.get("pads", [0] * (2 * r)))
        return p
    if auto == "VALID":
        return [0] * (2 * r)
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        xa, xb = ctx.fe.shape_ab(x, n)
        pa = _same_pads(auto, list(xa[2:]), k, s, d)
        if pa != _same_pads(auto, list(xb[2:]), k, s, d):
            raise node_error(n, f"auto_pad {auto} with stride {s} depends on the symbolic "
                             "input size; freeze it at conversion (--input-shape)")
        return pa
    raise node_error(n, f"unknown auto_pad {auto!r}")


def Conv(ctx, n, name, at):
    x = ctx.act_in(n, 0)
    W = ctx.cin(n, 1)
    if W is None:
        raise node_error(n, "weights must be constant")
    W = W.astype(np.float32)
    xs = ctx.shape(x, n)
    r = W.ndim - 2
    if r not in (1, 2):
        raise node_error(n, f"{r}-D convolution is not supported (1-D and 2-D only)")
    k = list(W.shape[2:])
    s = list(at.get("strides", [1] * r))
    d = list(at.get("dilations", [1] * r))
    p = _spatial_pads(ctx, n, at, x, k, s, d)
    g = int(at.get("group", 1))
    o = W.shape[0]
    if r == 1:
        wir = W.reshape(W.shape[0], W.shape[1], 1, W.shape[2])
        wn = ctx.weight(n, 1, "Conv", wir, lambda a, sh=W.shape: a.reshape(sh))
        x4 = ctx.tmp(x + "::4d")
        ctx.emit(name + "::to2d", "Reshape", [x], [x4], {"shape": [0, 0, 1, -1]})
        y4 = ctx.tmp(n.output[0] + "::4d")
        ctx.emit(name, "Conv", [x4, wn, ctx.bias(n, 2, o), ""], [y4],
                 {"strides": [1, s[0]], "pads": [0, p[0], 0, p[1]],
                  "dilations": [1, d[0]], "group": g, "activation": None})
        ctx.emit(name + "::to1d", "Reshape", [y4], [n.output[0]], {"shape": [0, 0, -1]})
        return
    wn = ctx.weight(n, 1, "Conv", W, lambda a: a)
    ctx.emit(name, "Conv", [x, wn, ctx.bias(n, 2, o), ""], [n.output[0]],
             {"strides": s, "pads": [p[0], p[1], p[2], p[3]], "dilations": d,
              "group": g, "activation": None})


def ConvTranspose(ctx, n, name, at):
    x = ctx.act_in(n, 0)
    W = ctx.cin(n, 1)
    if W is None:
        raise node_error(n, "weights must be constant")
    W = W.astype(np.float32)
    if W.ndim not in (3, 4):
        raise node_error(n, "only 1-D and 2-D ConvTranspose are supported")
    xs = ctx.shape(x, n)
    out = n.output[0]
    src_shape = W.shape
    if W.ndim == 3:
        # 1-D: a 2-D ConvTranspose over (N, C, 1, L), as 1-D Conv is mapped
        W = W[:, :, None, :]
        xs = (xs[0], xs[1], 1, xs[2])
        at = dict(at)
        for key, one in (("strides", 1), ("dilations", 1), ("output_padding", 0)):
            if key in at:
                at[key] = [one] + list(at[key])
        if "pads" in at:
            at["pads"] = [0, at["pads"][0], 0, at["pads"][1]]
        if "output_shape" in at:
            at["output_shape"] = [1, list(at["output_shape"])[-1]]
        x4 = ctx.tmp(x + "::4d")
        ctx.emit(name + "::to2d", "Reshape", [x], [x4], {"shape": [0, 0, 1, -1]})
        x, out = x4, ctx.tmp(out + "::4d")
    g = int(at.get("group", 1))
    C, Og, kh, kw = W.shape
    O = Og * g
    wir = W.reshape(g, C // g, Og, kh, kw).transpose(0, 2, 1, 3, 4).reshape(O, C // g, kh, kw)

    def to_src(a, g=g, C=C, Og=Og, kh=kh, kw=kw, sh=src_shape):
        return a.reshape(g, Og, C // g, kh, kw).transpose(0, 2, 1, 3, 4).reshape(sh)

    s = list(at.get("strides", [1, 1]))
    d = list(at.get("dilations", [1, 1]))
    op_ = list(at.get("output_padding", [0, 0]))
    k = [kh, kw]
    auto = at.get("auto_pad", "NOTSET")
    if "output_shape" in at or auto in ("SAME_UPPER", "SAME_LOWER"):
        outs = list(at["output_shape"])[-2:] if "output_shape" in at else \
            [xs[2] * s[0], xs[3] * s[1]]
        b, e = [], []
        for i in range(2):
            tot = s[i] * (xs[2 + i] - 1) + op_[i] + ((k[i] - 1) * d[i] + 1) - outs[i]
            if tot < 0:
                # an output_shape larger than the natural output: ONNX's reference extends
                # it at the end (no input reaches there: zeros + bias), as output_padding
                op_[i] -= tot
                tot = 0
            if auto == "SAME_UPPER":
                b.append(tot // 2), e.append(tot - tot // 2)
            else:
                b.append(tot - tot // 2), e.append(tot // 2)
        p = b + e
    elif auto == "VALID":
        p = [0, 0, 0, 0]
    else:
        p = list(at.get("pads", [0, 0, 0, 0]))
    wn = ctx.weight(n, 1, "ConvTranspose", wir, to_src)
    ctx.emit(name, "ConvTranspose", [x, wn, ctx.bias(n, 2, O)], [out],
             {"strides": s, "pads": p, "dilations": d, "group": g,
              "output_padding": op_, "activation": None})
    if out != n.output[0]:
        ctx.emit(name + "::to1d", "Reshape", [out], [n.output[0]], {"shape": [0, 0, -1]})


def Gemm(ctx, n, name, at):
    B = ctx.cin(n, 1)
    if B is None:
        raise node_error(n, "Gemm with a non-constant B is not supported")
    if ctx.fe.const(n.input[0], n) is not None:
        raise node_error(n, "Gemm with a constant A is not supported")
    x = ctx.act_in(n, 0)
    B = B.astype(np.float32)
    if at.get("transA", 0):
        xt = ctx.tmp(x + "::T")
        ctx.emit(name + "::transA", "Transpose", [x], [xt], {"perm": [1, 0]})
        x = xt
    if at.get("transB", 0):
        wir, to_src = B, (lambda a: a)
    else:
        wir, to_src = B.T, (lambda a: np.ascontiguousarray(a.T))
    o = wir.shape[0]
    wn = ctx.weight(n, 1, "Gemm", wir, to_src)
    alpha, beta = float(at.get("alpha", 1.0)), float(at.get("beta", 1.0))
    ctx.weights[wn].mult *= alpha
    bias = ""
    C = ctx.cin(n, 2)
    if C is None and len(n.input) > 2 and n.input[2]:
        raise node_error(n, "Gemm C must be a constant")
    if C is not None:
        C = np.asarray(C, np.float32)
        if C.size == 1:
            C = np.full(o, C.reshape(-1)[0], np.float32)
        elif C.shape in ((o,), (1, o)):
            C = C.reshape(o)
        else:
            # a matrix (or column) C: Gemm without bias, then a broadcasting Add
            y = ctx.tmp(n.output[0] + "::gemm")
            ctx.emit(name + "::gemm", "Gemm", [x, wn, ""], [y], {"activation": None})
            ctx.emit(name, "Add", [y, ctx.add_const(C * np.float32(beta), n.input[2])],
                     [n.output[0]], {"activation": None})
            return
        bias = ctx.add_const(C * np.float32(beta), n.input[2])
    ctx.emit(name, "Gemm", [x, wn, bias], [n.output[0]], {"activation": None})


def MatMul(ctx, n, name, at):
    B = ctx.cin(n, 1)
    if ctx.fe.const(n.input[0], n) is not None:
        raise node_error(n, "MatMul with a constant A is not supported")
    a = ctx.act_in(n, 0)
    if B is None:
        ctx.emit(name, "MatMul", [a, ctx.act_in(n, 1)], [n.output[0]], {})
        return
    B = B.astype(np.float32)
    ash = ctx.shape(a, n)
    if B.ndim == 0 or len(ash) == 0:
        raise node_error(n, "MatMul of a scalar is not defined")
    out = n.output[0]
    vec = len(ash) == 1 or B.ndim == 1     # numpy.matmul's 1-D promotion, then dropped
    if len(ash) == 1:
        a1 = ctx.tmp(a + "::row")
        ctx.emit(name + "::row", "Reshape", [a], [a1], {"shape": [1, int(ash[0])]})
        a, ash = a1, (1, ash[0])
    if B.ndim == 1:
        B = B.reshape(-1, 1)
    y = ctx.tmp(out + "::mm") if vec else out
    if B.ndim > 2:
        # batched constant B: the IR MatMul with a constant operand (broadcasting)
        ctx.emit(name, "MatMul", [a, ctx.add_const(B, n.input[1])], [y], {})
    else:
        wn = ctx.weight(n, 1, "Gemm", B.T, lambda m: np.ascontiguousarray(m.T))
        # rank > 2: the IR Gemm applies along the last axis (any symbolic leading dims);
        # "_nd" keeps BatchNormalization (channel axis 1) from being folded into it
        nd = {"_nd": True} if len(ash) > 2 else {}
        ctx.emit(name, "Gemm", [a, wn, ""], [y], {"activation": None, **nd})
    if vec:
        # kept dims sit at the same positions in y and the output (symbolic ones: copy)
        tgt = [0 if d is None else int(d) for d in ctx.shape(out, n)]
        ctx.emit(name + "::vec", "Reshape", [y], [out], {"shape": tgt})


def BatchNormalization(ctx, n, name, at):
    x = ctx.act_in(n, 0)
    if len(n.output) > 1 and any(n.output[1:]):
        if at.get("training_mode", 0) or ctx.opset < 9:
            pass
    if at.get("training_mode", 0):
        raise node_error(n, "BatchNormalization in training mode")
    vals = [ctx.cin(n, i) for i in range(1, 5)]
    if any(v is None for v in vals):
        raise node_error(n, "BatchNormalization parameters must be constants")
    gamma, beta, mean, var = (np.asarray(v, np.float64).reshape(-1) for v in vals)
    eps = float(at.get("epsilon", 1e-5))
    S = gamma / np.sqrt(var + eps)
    T = beta - mean * S
    ctx.emit(name, "Affine", [x, ctx.add_const(S, name + "::scale"),
                              ctx.add_const(T, name + "::shift")], [n.output[0]],
             {"activation": None, "_bn": True})


def PRelu(ctx, n, name, at):
    x = ctx.act_in(n, 0)
    sl = ctx.cin(n, 1)
    if sl is None:
        raise node_error(n, "PRelu slope must be a constant")
    xs = ctx.shape(x, n)
    sl = np.asarray(sl, np.float32)
    if sl.size == 1:
        v = sl.reshape(1)
    else:
        c = xs[1] if len(xs) > 1 else None
        # broadcastable to (N, C, ...) with only the channel axis non-trivial
        full = np.broadcast_to(sl, (1,) * (len(xs) - sl.ndim) + sl.shape)
        nz = [i for i, s in enumerate(full.shape) if s != 1]
        if nz != [1] or full.shape[1] != c:
            # any broadcastable slope: y = relu(x) - slope * relu(-x)
            out = n.output[0]
            pos, neg, nrelu, scaled = (ctx.tmp(out + k) for k in
                                       ("::pos", "::neg", "::negrelu", "::scaled"))
            relu = act_desc("Relu")
            ctx.emit(name + "::pos", "Act", [x], [pos], {"activation": relu})
            ctx.emit(name + "::neg", "Unary", [x], [neg], {"fn": "neg"})
            ctx.emit(name + "::negrelu", "Act", [neg], [nrelu], {"activation": relu})
            ctx.emit(name + "::slope", "Mul", [nrelu, ctx.add_const(sl, n.input[1])],
                     [scaled], {"activation": None})
            ctx.emit(name, "Sub", [pos, scaled], [out], {"activation": None})
            return
        v = full.reshape(-1)
    ctx.emit(name, "PRelu", [x, ctx.add_const(v, n.input[1])], [n.output[0]], {})


def _pool(ctx, n, name, at, op):
    x = ctx.act_in(n, 0)
    if len(n.output) > 1 and n.output[1]:
        raise node_error(n, "MaxPool Indices output is not supported")
    xs = ctx.shape(x, n)
    k = list(at["kernel_shape"])
    if len(k) not in (1, 2):
        raise node_error(n, "only 1-D and 2-D pooling are supported")
    s = list(at.get("strides", [1] * len(k)))
    d = list(at.get("dilations", [1] * len(k)))
    p = _spatial_pads(ctx, n, at, x, k, s, d)
    out = n.output[0]
    if len(k) == 1:
        # 1-D: 2-D pooling over (N, C, 1, L), as 1-D Conv is mapped
        k, s, d, p = [1, k[0]], [1, s[0]], [1, d[0]], [0, p[0], 0, p[1]]
        x4 = ctx.tmp(x + "::4d")
        ctx.emit(name + "::to2d", "Reshape", [x], [x4], {"shape": [0, 0, 1, -1]})
        x, out = x4, ctx.tmp(out + "::4d")
    attrs = {"kernel": k, "strides": s, "pads": p, "ceil_mode": int(at.get("ceil_mode", 0)),
             "dilations": d}
    if op == "AveragePool":
        attrs["count_include_pad"] = int(at.get("count_include_pad", 0))
    ctx.emit(name, op, [x], [out], attrs)
    if out != n.output[0]:
        ctx.emit(name + "::to1d", "Reshape", [out], [n.output[0]], {"shape": [0, 0, -1]})


def MaxPool(ctx, n, name, at):
    _pool(ctx, n, name, at, "MaxPool")


def AveragePool(ctx, n, name, at):
    _pool(ctx, n, name, at, "AveragePool")


def GlobalAveragePool(ctx, n, name, at):
    ctx.emit(name, "GlobalAveragePool", [ctx.act_in(n, 0)], [n.output[0]], {})


def GlobalMaxPool(ctx, n, name, at):
    ctx.emit(name, "GlobalMaxPool", [ctx.act_in(n, 0)], [n.output[0]], {})


def _binary(ctx, n, name, at):
    a, b = ctx.operand(n, 0), ctx.operand(n, 1)
    ctx.emit(name, n.op_type, [a, b], [n.output[0]], {"activation": None})


def Concat(ctx, n, name, at):
    ins = [ctx.operand(n, i) for i in range(len(n.input))]
    rank = len(ctx.shape(n.output[0], n))
    ctx.emit(name, "Concat", ins, [n.output[0]], {"axis": int(at["axis"]) % rank})


def Flatten(ctx, n, name, at):
    x = ctx.act_in(n, 0)
    rank = len(ctx.shape(x, n))
    ax = int(at.get("axis", 1))
    ctx.emit(name, "Flatten", [x], [n.output[0]], {"axis": ax % rank if ax < 0 else ax})


def _reshape_target(ctx, n, x, tname=None, shape_attr=None):
    xs = ctx.shape(x, n)
    if shape_attr is not None:
        return [int(v) for v in shape_attr]
    va, vb = ctx.fe.folded[tname]
    va, vb = va.reshape(-1).astype(np.int64), vb.reshape(-1).astype(np.int64)
    if np.array_equal(va, vb):
        return [int(v) for v in va]
    xa, xb = ctx.fe.shape_ab(x, n)
    out = dyn_target(va, vb, xa, xb)
    if out is None:
        raise node_error(n, f"reshape target depends on the symbolic input dims "
                         f"({', '.join(ctx.fe.symbols)}) in a way the IR cannot express "
                         "(one inferred and otherwise copied dims); freeze them at "
                         "conversion (--input-shape)")
    return out


def Reshape(ctx, n, name, at):
    x = ctx.act_in(n, 0)
    if ctx.opset < 5:
        tgt = _reshape_target(ctx, n, x, shape_attr=at["shape"])
    else:
        if n.input[1] not in ctx.fe.folded:
            raise node_error(n, "reshape target is not a constant")
        tgt = _reshape_target(ctx, n, x, tname=n.input[1])
    if at.get("allowzero", 0) and 0 in tgt:
        raise node_error(n, "Reshape with allowzero=1 and a zero dimension")
    ctx.emit(name, "Reshape", [x], [n.output[0]], {"shape": tgt})


def _static_reshape(ctx, n, name, x):
    """Reshape to the node's output shape; symbolic dims copied (0) from the same position
    of the input when they match it there, one other symbolic dim inferred (-1)."""
    oa, ob = ctx.fe.shape_ab(n.output[0], n)
    xa, xb = ctx.fe.shape_ab(x, n)
    tgt = dyn_target(np.asarray(oa, np.int64), np.asarray(ob, np.int64), xa, xb)
    if tgt is None:
        raise node_error(n, "output shape depends on the symbolic input dims in a way the IR "
                         "cannot express; freeze them at conversion (--input-shape)")
    ctx.emit(name, "Reshape", [x], [n.output[0]], {"shape": tgt})


def _sq_axes(ctx, n, at, rank):
    if ctx.opset < 13:
        axes = at.get("axes")
    else:
        ax = ctx.cin(n, 1)
        axes = None if ax is None else [int(a) for a in np.asarray(ax).reshape(-1)]
    return None if axes is None else sorted({int(a) % rank for a in axes})


def _reshape_or_none(ctx, n, x):
    oa, ob = ctx.fe.shape_ab(n.output[0], n)
    xa, xb = ctx.fe.shape_ab(x, n)
    return dyn_target(np.asarray(oa, np.int64), np.asarray(ob, np.int64), xa, xb)


def Squeeze(ctx, n, name, at):
    """A Reshape; when symbolic dims move position (so 0/-1 entries cannot say it), the
    squeezed size-1 axes are first transposed to the end, then dropped."""
    x = ctx.act_in(n, 0)
    if _reshape_or_none(ctx, n, x) is not None:
        _static_reshape(ctx, n, name, x)
        return
    xa, xb = ctx.fe.shape_ab(x, n)
    r = len(xa)
    axes = _sq_axes(ctx, n, at, r)
    if axes is None:
        axes = [i for i in range(r) if xa[i] == 1 and xb[i] == 1]
    keep = [i for i in range(r) if i not in axes]
    t = ctx.tmp(x + "::sq_t")
    ctx.emit(name + "::move", "Transpose", [x], [t], {"perm": keep + axes})
    ctx.emit(name, "Reshape", [t], [n.output[0]], {"shape": [0] * len(keep)})


def Unsqueeze(ctx, n, name, at):
    """A Reshape; when symbolic dims move position, size-1 axes are appended and then
    transposed into place."""
    x = ctx.act_in(n, 0)
    if _reshape_or_none(ctx, n, x) is not None:
        _static_reshape(ctx, n, name, x)
        return
    r_in = len(ctx.fe.shape_ab(x, n)[0])
    r = len(ctx.fe.shape_ab(n.output[0], n)[0])
    axes = _sq_axes(ctx, n, at, r)
    if axes is None:
        raise node_error(n, "Unsqueeze without axes")
    t = ctx.tmp(x + "::unsq")
    ctx.emit(name + "::append", "Reshape", [x], [t], {"shape": [0] * r_in + [1] * len(axes)})
    # position p of the output takes the next input axis, or one of the appended ones
    perm, src, extra = [], 0, r_in
    for p in range(r):
        if p in axes:
            perm.append(extra)
            extra += 1
        else:
            perm.append(src)
            src += 1
    ctx.emit(name, "Transpose", [t], [n.output[0]], {"perm": perm})


def Transpose(ctx, n, name, at):
    x = ctx.act_in(n, 0)
    rank = len(ctx.shape(x, n))
    perm = at.get("perm", list(range(rank))[::-1])
    ctx.emit(name, "Transpose", [x], [n.output[0]], {"perm": [int(p) % rank for p in perm]})


def Softmax(ctx, n, name, at):
    x = ctx.act_in(n, 0)
    xs = ctx.shape(x, n)
    rank = len(xs)
    if ctx.opset >= 13:
        ctx.emit(name, "Softmax", [x], [n.output[0]], {"axis": int(at.get("axis", -1)) % rank})
        return
    ax = int(at.get("axis", 1)) % rank
    if ax == rank - 1:
        ctx.emit(name, "Softmax", [x], [n.output[0]], {"axis": ax})
        return
    f = ctx.tmp(x + "::flat")
    ctx.emit(name + "::flatten", "Flatten", [x], [f], {"axis": ax})
    s = ctx.tmp(n.output[0] + "::flat")
    ctx.emit(name, "Softmax", [f], [s], {"axis": 1})
    xa, xb = ctx.fe.shape_ab(x, n)
    fa = (int(np.prod(xa[:ax])), int(np.prod(xa[ax:])))
    fb = (int(np.prod(xb[:ax])), int(np.prod(xb[ax:])))
    tgt = dyn_target(np.asarray(xa, np.int64), np.asarray(xb, np.int64), fa, fb)
    if tgt is None:
        raise node_error(n, "Softmax over a symbolic-size axis range; freeze the input dims "
                         "at conversion (--input-shape)")
    ctx.emit(name + "::reshape", "Reshape", [s], [n.output[0]], {"shape": tgt})


# ONNX activation ops: one translator, the IR's Act node (fused later by passes.py).
ACT_OPS = ("Relu", "LeakyRelu", "Elu", "Selu", "Sigmoid", "Tanh", "HardSigmoid",
           "HardSwish", "Clip")

# ONNX op -> translator(ctx, node, name, attrs); this dict is the front end's op list.
TRANSLATORS = {
    "Identity": Identity,
    "Dropout": Dropout,
    "Cast": Cast,
    "Conv": Conv,
    "ConvTranspose": ConvTranspose,
    "Gemm": Gemm,
    "MatMul": MatMul,
    "BatchNormalization": BatchNormalization,
    "PRelu": PRelu,
    "MaxPool": MaxPool,
    "AveragePool": AveragePool,
    "GlobalAveragePool": GlobalAveragePool,
    "GlobalMaxPool": GlobalMaxPool,
    "Concat": Concat,
    "Flatten": Flatten,
    "Reshape": Reshape,
    "Squeeze": Squeeze,
    "Unsqueeze": Unsqueeze,
    "Transpose": Transpose,
    "Softmax": Softmax,
    "Add": _binary,
    "Sub": _binary,
    "Mul": _binary,
    "Div": _binary,
}
TRANSLATORS.update({op: act for op in ACT_OPS})
TRANSLATORS.update(LAYOUT_TRANSLATORS)  # translate_layout.py
TRANSLATORS.update(MATH_TRANSLATORS)     # translate_math.py (issue 13)
TRANSLATORS.update(RNN_TRANSLATORS)      # translate_rnn.py (issue 13)


def translate_node(ctx, n):
    """Translate one ONNX node into IR nodes (appended to ``ctx``)."""
    name = ctx.fe.names[id(n)]
    try:
        TRANSLATORS[n.op_type](ctx, n, name, onnx_attrs(n))
    except (ConversionError, UnsupportedOpError):
        raise
    except Exception as e:  # noqa: BLE001
        raise node_error(n, f"{type(e).__name__}: {e}") from None
