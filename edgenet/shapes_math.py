"""Shape rules of the elementwise-math and reduction ops (issue 13): Unary, BinaryMath,
Reduce. Same contract as edgenet/shapes.py: validate the node through ``c`` (``c.fail``
-> ModelError naming it) and return ``[output shape]``.

Function codes are defined here once; every backend's kernels switch on them.
"""
from __future__ import annotations

from .shapes import Ctx, broadcast

# y = fn(x), elementwise. Formulas (float32 in and out):
#   neg -x   abs |x|   sqrt √x   exp eˣ   log ln x   reciprocal 1/x   erf erf(x)
#   softplus ln(1+eˣ)   mish x·tanh(softplus x)   silu x·σ(x)   gelu x·Φ(x) (erf form)
#   gelu_tanh x/2·(1+tanh(√(2/π)(x+0.044715x³)))   floor ⌊x⌋   ceil ⌈x⌉   sin/cos
UNARY_FNS = ("neg", "abs", "sqrt", "exp", "log", "reciprocal", "erf", "softplus", "mish",
             "silu", "gelu", "gelu_tanh", "floor", "ceil", "sin", "cos", "softsign")
UNARY_CODE = {f: i for i, f in enumerate(UNARY_FNS)}

# y = fn(a, b) with numpy broadcasting
BINARY_FNS = ("max", "min", "pow")
BINARY_CODE = {f: i for i, f in enumerate(BINARY_FNS)}

# y = fn over ``axes`` (sorted, distinct, >= 0), keepdims 0/1:
#   mean, sum, max, min, prod, sumsquare Σx², l1 Σ|x|, l2 √Σx², logsum ln Σx,
#   logsumexp ln Σeˣ (max-shifted)
REDUCE_FNS = ("mean", "sum", "max", "min", "prod", "sumsquare", "l1", "l2", "logsum",
              "logsumexp")
REDUCE_CODE = {f: i for i, f in enumerate(REDUCE_FNS)}


def shape_unary(c: Ctx):
    x = c.shape(0)
    c.choice_attr("fn", UNARY_FNS)
    return [x]


def shape_binary_math(c: Ctx):
    c.choice_attr("fn", BINARY_FNS)
    return [broadcast(c, c.shape(0), c.shape(1))]


def shape_layernorm(c: Ctx):
    """y = (x - mean) / sqrt(var + epsilon) · S + B over the axes [axis, rank) (biased
    variance); S and B have the shape x.shape[axis:]."""
    x = c.shape(0)
    ax = c.int_attr("axis", lo=0)
    if ax >= len(x):
        c.fail(f"axis {ax} out of range for the rank-{len(x)} input {x}")
    eps = c.attr("epsilon")
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps >= 0:
        c.fail(f"attribute 'epsilon' must be a non-negative number, got {eps!r}")
    for i, what in ((1, "S"), (2, "B")):
        s = c.shape(i)
        if tuple(s) != tuple(x[ax:]):
            c.fail(f"{what} (input {i}) must have the shape {tuple(x[ax:])} "
                   f"(the normalized axes), got {s}")
    return [x]


def reduce_out_shape(shape, axes, keepdims):
    if keepdims:
        return tuple(1 if i in axes else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in axes)


def shape_reduce(c: Ctx):
    x = c.shape(0)
    c.choice_attr("fn", REDUCE_FNS)
    axes = c.ints_attr("axes", None, lo=0, what="must be non-negative axes")
    keep = c.int_attr("keepdims", lo=0)
    if keep not in (0, 1):
        c.fail(f"keepdims must be 0 or 1, got {keep}")
    if not axes or sorted(set(axes)) != list(axes) or axes[-1] >= len(x):
        c.fail(f"axes {axes} must be sorted distinct axes of the rank-{len(x)} input {x}")
    if any(x[a] == 0 for a in axes):
        c.fail(f"reduction over an empty axis ({x})")
    out = reduce_out_shape(x, set(axes), keep)
    return [out]
