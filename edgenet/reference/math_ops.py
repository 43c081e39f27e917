"""NumPy references (the oracle) for Unary, BinaryMath and Reduce (edgenet/shapes_math.py
defines the functions). Computed in float64, returned as float32."""
from __future__ import annotations

import math

import numpy as np

from ..ops import node_attrs as _attrs
from .ops import OpImpl

_erf = np.vectorize(math.erf, otypes=[np.float64])


def _softplus(z):
    return np.logaddexp(0.0, z)


def unary_np(fn, x):
    z = np.asarray(x, np.float64)
    with np.errstate(all="ignore"):
        if fn == "neg":
            r = -z
        elif fn == "abs":
            r = np.abs(z)
        elif fn == "sqrt":
            r = np.sqrt(z)
        elif fn == "exp":
            r = np.exp(z)
        elif fn == "log":
            r = np.log(z)
        elif fn == "reciprocal":
            r = 1.0 / z
        elif fn == "erf":
            r = _erf(z)
        elif fn == "softplus":
            r = _softplus(z)
        elif fn == "mish":
            r = z * np.tanh(_softplus(z))
        elif fn == "silu":
            r = z / (1.0 + np.exp(-z))
        elif fn == "gelu":
            r = 0.5 * z * (1.0 + _erf(z / math.sqrt(2.0)))
        elif fn == "gelu_tanh":
            r = 0.5 * z * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (z + 0.044715 * z ** 3)))
        elif fn == "floor":
            r = np.floor(z)
        elif fn == "ceil":
            r = np.ceil(z)
        elif fn == "sin":
            r = np.sin(z)
        elif fn == "cos":
            r = np.cos(z)
        elif fn == "softsign":
            r = z / (1.0 + np.abs(z))
        else:
            raise ValueError(f"unknown unary fn {fn!r}")
    return r.astype(np.float32)


def binary_np(fn, a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    with np.errstate(all="ignore"):
        r = {"max": np.maximum, "min": np.minimum, "pow": np.power}[fn](a, b)
    return r.astype(np.float32)


def reduce_np(fn, x, axes, keepdims):
    z = np.asarray(x, np.float64)
    ax = tuple(axes)
    k = bool(keepdims)
    with np.errstate(all="ignore"):
        if fn == "mean":
            r = z.mean(axis=ax, keepdims=k)
        elif fn == "sum":
            r = z.sum(axis=ax, keepdims=k)
        elif fn == "max":
            r = z.max(axis=ax, keepdims=k)
        elif fn == "min":
            r = z.min(axis=ax, keepdims=k)
        elif fn == "prod":
            r = z.prod(axis=ax, keepdims=k)
        elif fn == "sumsquare":
            r = (z * z).sum(axis=ax, keepdims=k)
        elif fn == "l1":
            r = np.abs(z).sum(axis=ax, keepdims=k)
        elif fn == "l2":
            r = np.sqrt((z * z).sum(axis=ax, keepdims=k))
        elif fn == "logsum":
            r = np.log(z.sum(axis=ax, keepdims=k))
        elif fn == "logsumexp":
            # a set whose max is not finite has that max as its answer: +inf with a +inf
            # term, -inf when every term is -inf (ln 0), NaN with a NaN (onnxruntime's and
            # ln Σeˣ's answers; onnx.reference agrees but for all -inf: NaN, from -inf + inf)
            m = z.max(axis=ax, keepdims=True)
            fin = np.isfinite(m)
            ms = np.where(fin, m, 0.0)
            r = np.where(fin, np.log(np.exp(z - ms).sum(axis=ax, keepdims=True)) + ms, m)
            if not k:
                r = np.squeeze(r, axis=ax)
        else:
            raise ValueError(f"unknown reduce fn {fn!r}")
    return np.asarray(r, np.float32)


class Unary(OpImpl):
    def run(self, node, state, inputs, outputs):
        (x,) = self.args(node, state, inputs)
        outputs[0][...] = unary_np(_attrs(node)["fn"], x)


class BinaryMath(OpImpl):
    def run(self, node, state, inputs, outputs):
        a, b = self.args(node, state, inputs)
        outputs[0][...] = binary_np(_attrs(node)["fn"], a, b)


class Reduce(OpImpl):
    def run(self, node, state, inputs, outputs):
        (x,) = self.args(node, state, inputs)
        at = _attrs(node)
        outputs[0][...] = reduce_np(at["fn"], x, at["axes"], at["keepdims"])


def layernorm_np(x, s, b, axis, eps):
    """The oracle: float64 mean and biased variance over the axes [axis, rank)."""
    x64 = np.asarray(x, np.float64)
    axes = tuple(range(axis, x64.ndim))
    m = x64.mean(axis=axes, keepdims=True)
    v = ((x64 - m) ** 2).mean(axis=axes, keepdims=True)
    y = (x64 - m) / np.sqrt(v + eps) * np.asarray(s, np.float64) + np.asarray(b, np.float64)
    return y.astype(np.float32)


class LayerNorm(OpImpl):
    def run(self, node, state, inputs, outputs):
        x, s, b = self.args(node, state, inputs)
        at = _attrs(node)
        outputs[0][...] = layernorm_np(x, s, b, int(at["axis"]), float(at["epsilon"]))


MATH_OPS = {"Unary": Unary(), "BinaryMath": BinaryMath(), "Reduce": Reduce(),
            "LayerNorm": LayerNorm()}
