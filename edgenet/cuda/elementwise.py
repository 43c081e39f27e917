"""Elementwise ops: Act, Affine, PRelu, Add/Sub/Mul/Div (ONNX broadcasting) with the fused
activation; one thread per output element."""
from __future__ import annotations

import numpy as np
from numba import cuda

from . import config
from ._common import OpImpl, act, act_of, bcast_strides, blocks, prod, to_device

MAXR = 8  # ranks up to ir/format MAX_RANK


@cuda.jit
def _act_k(x, y, n, code, alpha, beta):
    i = cuda.grid(1)
    if i < n:
        y[i] = act(x[i], code, alpha, beta)


@cuda.jit
def _affine_k(x, s, t, y, n, C, inner, code, alpha, beta):
    i = cuda.grid(1)
    if i < n:
        c = (i // inner) % C
        y[i] = act(x[i] * s[c] + t[c], code, alpha, beta)


@cuda.jit
def _prelu_k(x, s, y, n, C, inner, scalar):
    i = cuda.grid(1)
    if i < n:
        c = 0 if scalar else (i // inner) % C
        v = x[i]
        y[i] = v if v >= 0 else s[c] * v


@cuda.jit(device=True)
def _binop(op, a, b):
    if op == 0:
        return a + b
    if op == 1:
        return a - b
    if op == 2:
        return a * b
    return a / b


@cuda.jit
def _binary_same(a, b, y, n, op, code, alpha, beta):
    i = cuda.grid(1)
    if i < n:
        y[i] = act(_binop(op, a[i], b[i]), code, alpha, beta)


@cuda.jit
def _binary_bcast(a, b, y, n, meta, R, op, code, alpha, beta):
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
    y[i] = act(_binop(op, a[pa], b[pb]), code, alpha, beta)


class Act(OpImpl):
    def prepare(self, node, consts, policy):
        st = super().prepare(node, consts, policy)
        st["act"] = act_of(node)
        return st

    def launch(self, node, state, ins, in_shapes, out, out_shape, stream):
        (x,), _ = self.operands(state, ins, in_shapes)
        n = prod(out_shape)
        _act_k[blocks(n), config.THREADS, stream](x, out, n, *state["act"])


class Affine(Act):
    def launch(self, node, state, ins, in_shapes, out, out_shape, stream):
        (x, s, t), _ = self.operands(state, ins, in_shapes)
        n = prod(out_shape)
        C = out_shape[1]
        inner = prod(out_shape[2:])
        _affine_k[blocks(n), config.THREADS, stream](x, s, t, out, n, C, inner, *state["act"])


class PRelu(OpImpl):
    def launch(self, node, state, ins, in_shapes, out, out_shape, stream):
        (x, s), (_, ss) = self.operands(state, ins, in_shapes)
        n = prod(out_shape)
        C = out_shape[1]
        inner = prod(out_shape[2:])
        scalar = prod(ss) == 1 and C != 1
        _prelu_k[blocks(n), config.THREADS, stream](x, s, out, n, C, inner, scalar)


class _Binary(Act):
    OP = 0

    def prepare(self, node, consts, policy):
        st = super().prepare(node, consts, policy)
        st["tables"] = {}
        return st

    def launch(self, node, state, ins, in_shapes, out, out_shape, stream):
        (a, b), (sa, sb) = self.operands(state, ins, in_shapes)
        n = prod(out_shape)
        code, alpha, beta = state["act"]
        if tuple(sa) == tuple(out_shape) and tuple(sb) == tuple(out_shape):
            _binary_same[blocks(n), config.THREADS, stream](a, b, out, n, self.OP,
                                                            code, alpha, beta)
            return
        key = (tuple(sa), tuple(sb))
        meta = state["tables"].get(key)
        R = len(out_shape)
        if meta is None:
            m = list(out_shape) + bcast_strides(sa, R) + bcast_strides(sb, R)
            meta = state["tables"][key] = to_device(np.array(m, np.int64), np.int64)
        _binary_bcast[blocks(n), config.THREADS, stream](a, b, out, n, meta, R, self.OP,
                                                         code, alpha, beta)


class Add(_Binary):
    OP = 0


class Sub(_Binary):
    OP = 1


class Mul(_Binary):
    OP = 2


class Div(_Binary):
    OP = 3
