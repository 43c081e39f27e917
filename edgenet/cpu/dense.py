"""Gemm (X · Wᵀ + B, fused activation) and MatMul (numpy.matmul semantics)."""
from __future__ import annotations

import numpy as np
import numba
from numba import prange

from ._common import FM, OpImpl, Weights, act, act_of, decode_row, node_inputs, prepare_consts, scratch
from .._jit import njit, pjit

OB = 8  # output features per prange iteration (the packed decode is amortized over the batch)


@njit(fastmath=FM)
def _dot(a, b, k):
    s = np.float32(0)
    for i in range(k):
        s += a[i] * b[i]
    return s


@pjit(fastmath=FM)
def _gemm(x, wf, packed, enc, codes, scale, buf, b, y, code, alpha, beta):
    N = x.shape[0]
    K = x.shape[1]
    O = y.shape[1]
    for o in prange(O):
        if packed:
            wrow = buf[numba.get_thread_id()]
            decode_row(enc, codes, scale, o, K, wrow)
        else:
            wrow = wf[o]
        for n in range(N):
            y[n, o] = act(_dot(x[n], wrow, K) + b[o], code, alpha, beta)


class Gemm(OpImpl):
    def prepare(self, node, consts, policy):
        names = node_inputs(node)
        w = Weights(consts[names[1]], policy)
        cs = prepare_consts(node, consts)
        b = cs[2] if len(cs) > 2 and cs[2] is not None else np.zeros(w.O, np.float32)
        return {"w": w, "b": np.ascontiguousarray(b.reshape(-1)), "act": act_of(node)}

    def run(self, node, state, inputs, outputs):
        w = state["w"]
        b = state["b"]
        if len(inputs) > 2 and inputs[2] is not None:
            b = inputs[2].reshape(-1)
        code, alpha, beta = state["act"]
        dummy = _D2
        if w.packed:
            _gemm(inputs[0], dummy, True, w.enc, w.codes, w.scale, scratch(w.K), b, outputs[0],
                  code, alpha, beta)
        else:
            _gemm(inputs[0], w.f, False, w.enc, w.codes, w.scale, dummy, b, outputs[0],
                  code, alpha, beta)


_D2 = np.zeros((1, 1), np.float32)


@pjit(fastmath=FM)
def _bmm(a, b, ia, ib, y):
    """y[t] = a[ia[t]] @ b[ib[t]]; a (Ba, M, K), b (Bb, K, N), y (T, M, N)."""
    T = y.shape[0]
    M = y.shape[1]
    Nn = y.shape[2]
    K = a.shape[2]
    for q in prange(T * M):
        t = q // M
        m = q % M
        ar = a[ia[t], m]
        bm = b[ib[t]]
        for j in range(Nn):
            y[t, m, j] = 0
        for k in range(K):
            av = ar[k]
            for j in range(Nn):
                y[t, m, j] += av * bm[k, j]


class MatMul(OpImpl):
    def run(self, node, state, inputs, outputs):
        cs = state["consts"]
        a = inputs[0] if inputs[0] is not None else cs[0]
        b = inputs[1] if inputs[1] is not None else cs[1]
        y = outputs[0]
        bshape = y.shape[:-2]
        M, N = y.shape[-2], y.shape[-1]
        K = a.shape[-1]
        na = a.ndim - 2
        nb = b.ndim - 2
        T = int(np.prod(bshape, dtype=np.int64)) if bshape else 1
        ia = np.broadcast_to(np.arange(int(np.prod(a.shape[:-2], dtype=np.int64)) if na else 1)
                             .reshape(a.shape[:-2] if na else ()), bshape).ravel()
        ib = np.broadcast_to(np.arange(int(np.prod(b.shape[:-2], dtype=np.int64)) if nb else 1)
                             .reshape(b.shape[:-2] if nb else ()), bshape).ravel()
        _bmm(np.ascontiguousarray(a).reshape(-1, a.shape[-2], K),
             np.ascontiguousarray(b).reshape(-1, K, b.shape[-1]),
             np.ascontiguousarray(ia, dtype=np.int64), np.ascontiguousarray(ib, dtype=np.int64),
             y.reshape(T, M, N))
