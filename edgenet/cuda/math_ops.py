"""Unary, BinaryMath and Reduce on the GPU (mirrors edgenet/cpu/math_ops.py; function codes
in edgenet/shapes_math.py). One thread per output element; Reduce walks the reduced axes
by their strides (any axes, no transposed copy)."""
from __future__ import annotations

import math

import numpy as np
from numba import cuda, float32, float64

from ..activation import unary_scalar
from ..ops import node_attrs
from ..shapes_math import BINARY_CODE, REDUCE_CODE, UNARY_CODE
from . import config
from ._common import OpImpl, bcast_strides, blocks, prod, to_device

# the scalar switch: edgenet.activation.unary_scalar, the very function the CPU backend compiles
_unary = cuda.jit(device=True)(unary_scalar)


@cuda.jit
def _unary_k(x, y, n, fn):
    i = cuda.grid(1)
    if i < n:
        y[i] = _unary(x[i], fn)


@cuda.jit(device=True)
def _binary(a, b, fn):
    if fn == 0:
        return a if (a >= b or a != a) else b
    if fn == 1:
        return a if (a <= b or a != a) else b
    if a < 0 and b != math.floor(b):
        return float32(math.nan)
    return float32(math.pow(float64(a), float64(b)))


@cuda.jit
def _binary_k(a, b, y, n, meta, R, fn):
    """meta = [out shape (R), a strides (R), b strides (R)] (stride 0 = broadcast)."""
    i = cuda.grid(1)
    if i >= n:
        return
    t = i
    pa = 0
    pb = 0
    for ax in range(R - 1, -1, -1):
        d = meta[ax]
        c = t % d
        t = t // d
        pa += c * meta[R + ax]
        pb += c * meta[2 * R + ax]
    y[i] = _binary(a[pa], b[pb], fn)


@cuda.jit
def _reduce_k(x, y, n, meta, K, Rr, D, fn, inv_d):
    """meta = [kept dims (K), kept strides (K), reduced dims (Rr), reduced strides (Rr)];
    y[i] = fn over the D = prod(reduced dims) elements of output i."""
    i = cuda.grid(1)
    if i >= n:
        return
    t = i
    base = 0
    for ax in range(K - 1, -1, -1):
        d = meta[ax]
        c = t % d
        t = t // d
        base += c * meta[K + ax]
    o = 2 * K
    if fn == 2 or fn == 3 or fn == 9:
        m = float64(x[base])
        for j in range(1, D):
            u = j
            p = base
            for ax in range(Rr - 1, -1, -1):
                d = meta[o + ax]
                c = u % d
                u = u // d
                p += c * meta[o + Rr + ax]
            v = float64(x[p])
            if fn == 3:
                if v < m or v != v:
                    m = v
            elif v > m or v != v:
                m = v
        if fn != 9 or m == math.inf or m == -math.inf or m != m:
            y[i] = float32(m)
            return
        s = 0.0
        for j in range(D):
            u = j
            p = base
            for ax in range(Rr - 1, -1, -1):
                d = meta[o + ax]
                c = u % d
                u = u // d
                p += c * meta[o + Rr + ax]
            s += math.exp(float64(x[p]) - m)
        y[i] = float32(math.log(s) + m)
        return
    acc = 1.0 if fn == 4 else 0.0
    for j in range(D):
        u = j
        p = base
        for ax in range(Rr - 1, -1, -1):
            d = meta[o + ax]
            c = u % d
            u = u // d
            p += c * meta[o + Rr + ax]
        v = float64(x[p])
        if fn == 4:
            acc *= v
        elif fn == 5 or fn == 7:
            acc += v * v
        elif fn == 6:
            acc += abs(v)
        else:
            acc += v
    if fn == 0:
        acc = acc * inv_d
    elif fn == 7:
        acc = math.sqrt(acc)
    elif fn == 8:
        acc = math.log(acc) if acc > 0 else (-math.inf if acc == 0 else math.nan)
    y[i] = float32(acc)


@cuda.jit
def _layernorm_k(x, s, b, y, R, D, eps):
    """One thread per row of D (flat arrays): float64 sum and sum of squares, then the
    normalized, scaled, shifted row."""
    i = cuda.grid(1)
    if i >= R:
        return
    base = i * D
    s1 = 0.0
    s2 = 0.0
    for d in range(D):
        v = float64(x[base + d])
        s1 += v
        s2 += v * v
    m = s1 / D
    var = max(s2 / D - m * m, 0.0)
    r = 1.0 / math.sqrt(var + eps)
    for d in range(D):
        y[base + d] = float32((float64(x[base + d]) - m) * r * float64(s[d]) + float64(b[d]))


class _Math(OpImpl):
    def prepare(self, node, consts, policy):
        st = super().prepare(node, consts, policy)
        st["tables"] = {}
        return st


class Unary(_Math):
    def launch(self, node, state, ins, in_shapes, out, out_shape, stream):
        (x,), _ = self.operands(state, ins, in_shapes)
        n = prod(out_shape)
        _unary_k[blocks(n), config.THREADS, stream](x, out, n,
                                                   UNARY_CODE[node_attrs(node)["fn"]])


class BinaryMath(_Math):
    def launch(self, node, state, ins, in_shapes, out, out_shape, stream):
        (a, b), (sa, sb) = self.operands(state, ins, in_shapes)
        n = prod(out_shape)
        R = len(out_shape)
        key = (tuple(sa), tuple(sb), R)
        meta = state["tables"].get(key)
        if meta is None:
            m = list(out_shape) + bcast_strides(sa, R) + bcast_strides(sb, R)
            meta = state["tables"][key] = to_device(np.array(m or [1], np.int64), np.int64)
        _binary_k[blocks(n), config.THREADS, stream](a, b, out, n, meta, R,
                                                    BINARY_CODE[node_attrs(node)["fn"]])


class Reduce(_Math):
    def launch(self, node, state, ins, in_shapes, out, out_shape, stream):
        (x,), (s,) = self.operands(state, ins, in_shapes)
        at = node_attrs(node)
        axes = [int(a) for a in at["axes"]]
        key = tuple(s)
        meta = state["tables"].get(key)
        strides = [prod(s[i + 1:]) for i in range(len(s))]
        kept = [i for i in range(len(s)) if i not in axes]
        if meta is None:
            m = ([s[i] for i in kept] + [strides[i] for i in kept]
                 + [s[i] for i in axes] + [strides[i] for i in axes])
            meta = state["tables"][key] = to_device(np.array(m, np.int64), np.int64)
        D = prod([s[i] for i in axes])
        n = prod(out_shape)
        _reduce_k[blocks(n), config.THREADS, stream](x, out, n, meta, len(kept), len(axes), D,
                                                    REDUCE_CODE[at["fn"]], 1.0 / D)


class LayerNorm(_Math):
    def launch(self, node, state, ins, in_shapes, out, out_shape, stream):
        (x, s, b), (sx, _, _) = self.operands(state, ins, in_shapes)
        at = node_attrs(node)
        D = prod(sx[int(at["axis"]):])
        R = prod(sx) // max(D, 1)
        _layernorm_k[blocks(R), config.THREADS, stream](x, s, b, out, R, D,
                                                       float(at["epsilon"]))


MATH_OPS = {"Unary": Unary(), "BinaryMath": BinaryMath(), "Reduce": Reduce(),
            "LayerNorm": LayerNorm()}
