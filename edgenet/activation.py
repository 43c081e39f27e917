"""Activation functions, defined once: codes, default parameters, the NumPy reference, and
the one scalar function every compiled backend builds its epilogue from.

An IR activation descriptor is ``{"kind": name, "alpha": a, "beta": b}`` (docs/IR.md);
kernels receive it as ``(code, alpha, beta)`` with ``code`` an :class:`ActCode`.

:func:`act_scalar` is plain Python that both Numba targets compile: the CPU backend wraps
it in ``njit(inline="always")``, the CUDA backend in ``cuda.jit(device=True)``. It
therefore uses only what both targets support (``math`` functions, NumPy scalar casts,
comparisons; no ``np.expm1`` or builtin ``min``/``max``, whose NaN rule differs between
the CUDA simulator and a GPU). NaN rule (NumPy's and onnxruntime's): every activation maps
NaN to NaN, written as comparisons that are false for NaN.
"""
from __future__ import annotations

import math
from enum import IntEnum

import numpy as np

FLT_MAX = 3.4028234663852886e38


class ActCode(IntEnum):
    """Kernel code of each activation kind (Numba compiles members as constants)."""

    NONE = 0
    RELU = 1
    LEAKY_RELU = 2
    ELU = 3
    SELU = 4
    SIGMOID = 5
    TANH = 6
    CLIP = 7            # alpha = min, beta = max
    HARD_SIGMOID = 8    # clip(alpha * x + beta, 0, 1)
    HARD_SWISH = 9


# kind (IR name) -> (code, default alpha, default beta)
ACT_CODES = {
    "None": (ActCode.NONE, 0.0, 0.0),
    "Relu": (ActCode.RELU, 0.0, 0.0),
    "LeakyRelu": (ActCode.LEAKY_RELU, 0.01, 0.0),
    "Elu": (ActCode.ELU, 1.0, 0.0),
    "Selu": (ActCode.SELU, 1.67326319217681884765625, 1.05070102214813232421875),
    "Sigmoid": (ActCode.SIGMOID, 0.0, 0.0),
    "Tanh": (ActCode.TANH, 0.0, 0.0),
    "Clip": (ActCode.CLIP, -FLT_MAX, FLT_MAX),
    "HardSigmoid": (ActCode.HARD_SIGMOID, 0.2, 0.5),
    "HardSwish": (ActCode.HARD_SWISH, 0.0, 0.0),
}
assert sorted(c for c, _, _ in ACT_CODES.values()) == list(ActCode)


def act_code(desc) -> tuple:
    """Activation descriptor (dict or None) -> (ActCode, float alpha, float beta)."""
    if desc is None:
        return ActCode.NONE, 0.0, 0.0
    code, a, b = ACT_CODES[desc["kind"]]
    alpha = desc.get("alpha")
    beta = desc.get("beta")
    return code, float(a if alpha is None else alpha), float(b if beta is None else beta)


def act_desc(kind: str, alpha=None, beta=None) -> dict:
    """Normalized activation descriptor with defaults filled in."""
    code, a, b = ACT_CODES[kind]
    return {"kind": kind, "alpha": float(a if alpha is None else alpha),
            "beta": float(b if beta is None else beta)}


def act_numpy(x, code: int, alpha: float, beta: float):
    """Reference activation in NumPy (float32 in, float32 out): the oracle of act_scalar."""
    x = np.asarray(x, dtype=np.float32)
    if code == ActCode.NONE:
        return x
    if code == ActCode.RELU:
        return np.maximum(x, 0)
    if code == ActCode.LEAKY_RELU:
        return np.where(x >= 0, x, np.float32(alpha) * x)
    if code == ActCode.ELU:
        return np.where(x > 0, x, np.float32(alpha) * np.expm1(x))
    if code == ActCode.SELU:
        return np.float32(beta) * np.where(x > 0, x, np.float32(alpha) * np.expm1(x))
    if code == ActCode.SIGMOID:
        return (1.0 / (1.0 + np.exp(-x))).astype(np.float32)
    if code == ActCode.TANH:
        return np.tanh(x)
    if code == ActCode.CLIP:
        return np.minimum(np.maximum(x, np.float32(alpha)), np.float32(beta))
    if code == ActCode.HARD_SIGMOID:
        return np.clip(np.float32(alpha) * x + np.float32(beta), 0, 1).astype(np.float32)
    if code == ActCode.HARD_SWISH:
        return x * np.clip(x / 6 + 0.5, 0, 1).astype(np.float32)
    from .errors import ModelError
    raise ModelError(f"unknown activation code {code}")


def _act_scalar(x, code, alpha, beta):
    """One float32 activation: the epilogue of every CPU and CUDA kernel (see module doc).
    ``code`` is an ActCode; an unknown code returns x (the IR validator rejects it).
    ``_EXP`` / ``_TANH`` are bound per target: see :data:`act_scalar`."""
    if code == ActCode.NONE:
        return x
    if code == ActCode.RELU:
        return np.float32(0) if x < 0 else x
    if code == ActCode.LEAKY_RELU:
        return x if x >= 0 else alpha * x
    if code == ActCode.ELU:
        return x if x > 0 else alpha * np.float32(math.expm1(x))
    if code == ActCode.SELU:
        return beta * (x if x > 0 else alpha * np.float32(math.expm1(x)))
    if code == ActCode.SIGMOID:
        return np.float32(1) / (np.float32(1) + np.float32(_EXP(-x)))
    if code == ActCode.TANH:
        return np.float32(_TANH(x))
    if code == ActCode.CLIP:
        return alpha if x < alpha else (beta if x > beta else x)
    if code == ActCode.HARD_SIGMOID:
        y = alpha * x + beta
        return np.float32(0) if y < 0 else (np.float32(1) if y > 1 else y)
    if code == ActCode.HARD_SWISH:
        y = x / np.float32(6) + np.float32(0.5)
        return x * (np.float32(0) if y < 0 else (np.float32(1) if y > 1 else y))
    return x


_SQRT1_2 = 0.7071067811865476
_GELU_C = 0.7978845608028654    # sqrt(2/pi)


def unary_scalar(v, fn):
    """One float32 element of the IR's ``Unary`` op (function codes: ``UNARY_CODE`` in
    edgenet/shapes_math.py), computed in float64 with libm: CUDA's kernel (``cuda.jit(device=
    True)``) and the CPU's fallback for the rare functions (the CPU runs exp, log, erf,
    softplus, mish and silu through the float32 functions below, in vectorized
    loops). The NumPy oracle is edgenet/reference/math_ops.py."""
    z = np.float64(v)
    if fn == 0:
        r = -z
    elif fn == 1:
        r = abs(z)
    elif fn == 2:
        r = math.sqrt(z) if z >= 0 else math.nan
    elif fn == 3:
        r = math.exp(z)
    elif fn == 4:
        r = math.log(z) if z > 0 else (-math.inf if z == 0 else math.nan)
    elif fn == 5:
        r = 1.0 / z if z != 0 else (math.inf if math.copysign(1.0, z) > 0 else -math.inf)
    elif fn == 6:
        r = math.erf(z)
    elif fn == 7:       # softplus, ln(1 + e^z) without overflow
        r = z if z > 20.0 else math.log1p(math.exp(z))
    elif fn == 8:       # mish, z * tanh(softplus(z))
        r = z * math.tanh(z if z > 20.0 else math.log1p(math.exp(z)))
    elif fn == 9:
        r = z / (1.0 + math.exp(-z)) if z > -700.0 else 0.0
    elif fn == 10:
        r = 0.5 * z * (1.0 + math.erf(z * _SQRT1_2))
    elif fn == 11:
        r = 0.5 * z * (1.0 + math.tanh(_GELU_C * (z + 0.044715 * z * z * z)))
    elif fn == 12:
        r = math.floor(z)
    elif fn == 13:
        r = math.ceil(z)
    elif fn == 14:
        r = math.sin(z)
    elif fn == 15:
        r = math.cos(z)
    else:
        r = z / (1.0 + abs(z))
    return np.float32(r)


# ----------------------------------------------------------------------------- float32 math
# Vectorizable float32 exp / log / tanh / sigmoid / erf (and the functions built on them).
# Scalar libm calls do not vectorize in Numba; these are straight-line polynomial code
# (every special case a select, no branch) that LLVM vectorizes inside the callers' loops.
# They are plain Python too (the CUDA simulator and tests run that), registered with
# ``register_jitable`` so both Numba targets compile the same definition; the int <-> float
# bit casts are the one piece with a separate jitted form (an LLVM bitcast).
# Accuracy (tests/test_math_ops.py sweeps them against float64): exp, log, sigmoid, tanh
# <= 2 ulp, erf <= 4 ulp (near 0: relative 1e-7), NaN/inf/denormals as NumPy.
from numba import types as _nt  # noqa: E402
from numba.extending import intrinsic as _intrinsic  # noqa: E402
from numba.extending import overload as _overload  # noqa: E402
from numba.extending import register_jitable as _jitable  # noqa: E402


def f32_from_bits(i):
    """The float32 whose bit pattern is the int32 ``i``."""
    return np.array(i, np.int64).astype(np.int32).view(np.float32)[()]


def f32_bits(x):
    """The bit pattern of the float32 ``x`` as an int32."""
    return np.array(x, np.float32).view(np.int32)[()]


@_intrinsic
def _bitcast_to_f32(typingctx, i):
    def codegen(context, builder, sig, args):
        from llvmlite import ir
        return builder.bitcast(args[0], ir.FloatType())
    return _nt.float32(_nt.int32), codegen


@_intrinsic
def _bitcast_to_i32(typingctx, x):
    def codegen(context, builder, sig, args):
        from llvmlite import ir
        return builder.bitcast(args[0], ir.IntType(32))
    return _nt.int32(_nt.float32), codegen


def floor_f32(x):
    """floor(x) as a float32."""
    return np.float32(math.floor(x))


@_intrinsic
def _floor_f32(typingctx, x):
    def codegen(context, builder, sig, args):
        from llvmlite import ir
        f = builder.module.declare_intrinsic("llvm.floor", [ir.FloatType()])
        return builder.call(f, args)
    return _nt.float32(_nt.float32), codegen


@_overload(floor_f32)
def _ol_floor(x):
    # llvm.floor.f32 (vrndscaleps on x86, cvt.rmi on PTX): math.floor goes through int64
    # on the CPU, np.floor is not a CUDA device function
    return lambda x: _floor_f32(np.float32(x))


@_overload(f32_from_bits)
def _ol_from_bits(i):
    return lambda i: _bitcast_to_f32(np.int32(i))


@_overload(f32_bits)
def _ol_bits(x):
    return lambda x: _bitcast_to_i32(np.float32(x))


_F = np.float32
_INF = np.float32(np.inf)


@_jitable(inline="always")
def exp_f32(x):
    """e**x in float32: x = k ln2 + r (Cody-Waite), e**r by Cephes' polynomial, 2**k as
    two exponent-field constructions (so denormal results stay exact down to -103.97)."""
    x = _F(x)
    xc = x if x < _F(88.72284) else _F(88.72284)
    xc = xc if xc > _F(-104.0) else _F(-104.0)
    kf = floor_f32(xc * _F(1.442695) + _F(0.5))
    k = np.int32(kf)
    r = xc - kf * _F(0.693359375)
    r = r - kf * _F(-2.12194440e-4)
    p = _F(1.9875691500e-4) * r + _F(1.3981999507e-3)
    p = p * r + _F(8.3334519073e-3)
    p = p * r + _F(4.1665795894e-2)
    p = p * r + _F(1.6666665459e-1)
    p = p * r + _F(5.0000001201e-1)
    p = p * (r * r) + r + _F(1.0)
    k1 = k >> 1
    k2 = k - k1
    y = p * f32_from_bits((k1 + 127) << 23) * f32_from_bits((k2 + 127) << 23)
    y = _INF if x > _F(88.72284) else y
    return x if x != x else y


@_jitable(inline="always")
def log_f32(x):
    """ln x in float32 (Cephes logf): x = m 2**e with m in [sqrt(1/2), sqrt(2)), ln(m) by
    a polynomial. ln 0 = -inf, ln(x < 0) = NaN, ln inf = inf, denormals scaled first."""
    x = _F(x)
    tiny = x < _F(1.17549435e-38)
    xs = x * _F(8388608.0) if tiny else x
    b = f32_bits(xs)
    e = ((b >> 23) & 0xFF) - 126 - (23 if tiny else 0)
    m = f32_from_bits((b & 0x7FFFFF) | 0x3F000000)          # [0.5, 1)
    lo = m < _F(0.707106781186547524)
    e = e - 1 if lo else e
    m = (m + m - _F(1.0)) if lo else (m - _F(1.0))
    z = m * m
    p = _F(7.0376836292e-2) * m - _F(1.1514610310e-1)
    p = p * m + _F(1.1676998740e-1)
    p = p * m - _F(1.2420140846e-1)
    p = p * m + _F(1.4249322787e-1)
    p = p * m - _F(1.6668057665e-1)
    p = p * m + _F(2.0000714765e-1)
    p = p * m - _F(2.4999993993e-1)
    p = p * m + _F(3.3333331174e-1)
    ef = _F(e)
    y = p * m * z + ef * _F(-2.12194440e-4) - _F(0.5) * z
    y = m + y + ef * _F(0.693359375)
    y = _INF if x == _INF else y
    y = -_INF if x == _F(0.0) else y
    return _F(np.nan) if (x < _F(0.0) or x != x) else y


@_jitable(inline="always")
def log1p_f32(u):
    """ln(1 + u) for u >= -1 (w = 1 + u rounded; the rounding error corrected by u / (w-1))."""
    u = _F(u)
    w = _F(1.0) + u
    d = w - _F(1.0)
    r = log_f32(w) * (u / d) if d != _F(0.0) else u
    return w if w == _INF else r


@_jitable(inline="always")
def sigmoid_f32(x):
    """1 / (1 + e**-x), as e**x / (1 + e**x) below 0 (exact down to the denormals)."""
    x = _F(x)
    e = exp_f32(-abs(x))
    d = _F(1.0) / (_F(1.0) + e)
    return e * d if x < _F(0.0) else d


@_jitable(inline="always")
def tanh_f32(x):
    """tanh x: Cephes' odd polynomial for |x| < 0.625, 1 - 2 / (e**2|x| + 1) above."""
    x = _F(x)
    a = abs(x)
    z = x * x
    p = _F(-5.70498872745e-3) * z + _F(2.06390887954e-2)
    p = p * z - _F(5.37397155531e-2)
    p = p * z + _F(1.33314422036e-1)
    p = p * z - _F(3.33332819422e-1)
    small = x + x * z * p
    big = _F(1.0) - _F(2.0) / (exp_f32(a + a) + _F(1.0))
    big = -big if x < _F(0.0) else big
    return small if a < _F(0.625) else big


@_jitable(inline="always")
def erf_f32(x):
    """erf x: the odd/even rational approximation on [-4, 4] that Eigen and XNNPACK use
    (|erf| rounds to 1 beyond)."""
    x = _F(x)
    xc = x if x < _F(4.0) else _F(4.0)
    xc = xc if xc > _F(-4.0) else _F(-4.0)
    z = xc * xc
    p = _F(-2.72614225801306e-10) * z + _F(2.77068142495902e-08)
    p = p * z + _F(-2.10102402082508e-06)
    p = p * z + _F(-5.69250639462346e-05)
    p = p * z + _F(-7.34990630326855e-04)
    p = p * z + _F(-2.95459980854025e-03)
    p = p * z + _F(-1.60960333262415e-02)
    q = _F(-1.45660718464996e-05) * z + _F(-2.13374055278905e-04)
    q = q * z + _F(-1.68282697438203e-03)
    q = q * z + _F(-7.37332916720468e-03)
    q = q * z + _F(-1.42647390514189e-02)
    y = xc * (p / q)
    return x if x != x else y


@_jitable(inline="always")
def softplus_f32(x):
    """ln(1 + e**x), = x above 20 (no overflow)."""
    x = _F(x)
    r = log1p_f32(exp_f32(_F(20.0) if x > _F(20.0) else x))
    return x if x > _F(20.0) else r


@_jitable(inline="always")
def mish_f32(x):
    """x tanh(ln(1 + e**x)) = x n / (n + 2), n = e**x (e**x + 2): one exp; = x above 20."""
    x = _F(x)
    e = exp_f32(_F(20.0) if x > _F(20.0) else x)
    n = e * (e + _F(2.0))
    r = x * (n / (n + _F(2.0)))
    return x if x > _F(20.0) else r


@_jitable(inline="always")
def silu_f32(x):
    x = _F(x)
    return x * sigmoid_f32(x)


@_jitable(inline="always")
def gelu_f32(x):
    """x Phi(x) = x/2 (1 + erf(x / sqrt 2))."""
    x = _F(x)
    return _F(0.5) * x * (_F(1.0) + erf_f32(x * _F(0.70710678118654752)))


@_jitable(inline="always")
def gelu_tanh_f32(x):
    x = _F(x)
    return _F(0.5) * x * (_F(1.0) + tanh_f32(_F(0.7978845608028654) *
                                              (x + _F(0.044715) * x * x * x)))


def _with_globals(fn, name, **bind):
    import types as _types
    g = dict(fn.__globals__, **bind)
    out = _types.FunctionType(fn.__code__, g, name, fn.__defaults__, fn.__closure__)
    out.__doc__, out.__qualname__, out.__module__ = fn.__doc__, name, fn.__module__
    return out


# The activation epilogue, one body bound two ways. The CPU's (``act_scalar``: cpu/_common,
# the generated conv kernels) uses the vectorizable float32 exp / tanh above; CUDA's
# (``act_scalar_libm``: cuda/_common) keeps the device's libm calls, which are fast there
# and compile for a GPU without a device present (a call to another Numba function needs
# one). Both are checked against act_numpy, the meaning's one definition.
act_scalar = _with_globals(_act_scalar, "act_scalar", _EXP=exp_f32, _TANH=tanh_f32)
act_scalar_libm = _with_globals(_act_scalar, "act_scalar_libm", _EXP=math.exp, _TANH=math.tanh)
