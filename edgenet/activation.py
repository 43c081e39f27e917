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


def act_scalar(x, code, alpha, beta):
    """One float32 activation: the epilogue of every CPU and CUDA kernel (see module doc).
    ``code`` is an ActCode; an unknown code returns x (the IR validator rejects it)."""
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
        return np.float32(1) / (np.float32(1) + np.float32(math.exp(-x)))
    if code == ActCode.TANH:
        return np.float32(math.tanh(x))
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
    edgenet/shapes_math.py), computed in float64. Like :func:`act_scalar`, this one Python
    function is compiled by both backends (``njit`` on the CPU, ``cuda.jit(device=True)`` on
    CUDA); the NumPy oracle is edgenet/reference/math_ops.py."""
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
