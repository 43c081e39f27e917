"""Gemm (X · Wᵀ + B, fused activation) and MatMul (numpy.matmul semantics)."""
from __future__ import annotations

import numpy as np
import numba
from numba import prange

from . import simd
from .simd_layout import i8_simd
from ._common import (ENC_I8, FM, NoBind, OpImpl, RecordedOp, Weights, act, act_of, decode_row,
                      emit_split, node_inputs, prepare_consts, scratch, tls_rows)
from .._jit import njit, pjit

OB = 8  # output features per prange iteration (the packed decode is amortized over the batch)


@njit(fastmath=FM, inline="always")
def _dot(a, b, k):
    s = np.float32(0)
    for i in range(k):
        s += a[i] * b[i]
    return s


@njit(fastmath=FM, boundscheck=False)
def _gemm_rng(x, wf, packed, enc, codes, scale, wrow, b, y, o0, o1, code, alpha, beta):
    """Outputs o0..o1 (all batch rows); packed rows are decoded into wrow (K floats)."""
    N = x.shape[0]
    K = x.shape[1]
    for o in range(o0, o1):
        if packed:
            decode_row(enc, codes, scale, o, K, wrow)
            w = wrow
        else:
            w = wf[o]
        for n in range(N):
            y[n, o] = act(_dot(x[n], w, K) + b[o], code, alpha, beta)


@pjit(fastmath=FM, boundscheck=False)
def _gemm(x, wf, packed, enc, codes, scale, buf, b, y, code, alpha, beta):
    O = y.shape[1]
    for t in prange((O + OB - 1) // OB):
        _gemm_rng(x, wf, packed, enc, codes, scale, buf[numba.get_thread_id()], b, y,
                  t * OB, min(O, (t + 1) * OB), code, alpha, beta)


@njit(fastmath=FM, boundscheck=False)
def _gemm_v_rng(x, wt, c8, sp, lev, bp, y, L, ob0, ob1, tmp, code, alpha, beta):
    """Output blocks ob0..ob1 of L features, vectorized over outputs: per input feature j
    one weight vector (expanded: wt (NB, K, L); lev: int8 levels c8 in the same order,
    their scales sp applied to the sum) times a broadcast x[n, j], in 4 accumulators (one
    chain of K dependent FMAs was latency-bound: MobileNetV2's 1280 -> 1000 classifier
    took 43 us at two threads). tmp: L floats."""
    N = x.shape[0]
    K = x.shape[1]
    O = y.shape[1]
    K4 = K - K % 4
    for ob in range(ob0, ob1):
        for n in range(N):
            xb = n * K
            q0 = ob * K
            if L == 16:
                a0 = simd.vsplat16(np.float32(0))
                a1 = a0
                a2 = a0
                a3 = a0
                for j in range(0, K4, 4):
                    q = (q0 + j) * 16
                    if lev:
                        a0 = simd.vfma16(simd.vlev16(c8, q), simd.vbc16(x, xb + j), a0)
                        a1 = simd.vfma16(simd.vlev16(c8, q + 16), simd.vbc16(x, xb + j + 1), a1)
                        a2 = simd.vfma16(simd.vlev16(c8, q + 32), simd.vbc16(x, xb + j + 2), a2)
                        a3 = simd.vfma16(simd.vlev16(c8, q + 48), simd.vbc16(x, xb + j + 3), a3)
                    else:
                        a0 = simd.vfma16(simd.vld16(wt, q), simd.vbc16(x, xb + j), a0)
                        a1 = simd.vfma16(simd.vld16(wt, q + 16), simd.vbc16(x, xb + j + 1), a1)
                        a2 = simd.vfma16(simd.vld16(wt, q + 32), simd.vbc16(x, xb + j + 2), a2)
                        a3 = simd.vfma16(simd.vld16(wt, q + 48), simd.vbc16(x, xb + j + 3), a3)
                for j in range(K4, K):
                    q = (q0 + j) * 16
                    if lev:
                        a0 = simd.vfma16(simd.vlev16(c8, q), simd.vbc16(x, xb + j), a0)
                    else:
                        a0 = simd.vfma16(simd.vld16(wt, q), simd.vbc16(x, xb + j), a0)
                acc = simd.vadd16(simd.vadd16(a0, a1), simd.vadd16(a2, a3))
                if lev:
                    acc = simd.vfma16(acc, simd.vld16(sp, ob * 16), simd.vld16(bp, ob * 16))
                else:
                    acc = simd.vadd16(acc, simd.vld16(bp, ob * 16))
                simd.vst16(tmp, 0, acc)
            else:
                b0 = simd.vsplat8(np.float32(0))
                b1 = b0
                b2 = b0
                b3 = b0
                for j in range(0, K4, 4):
                    q = (q0 + j) * 8
                    if lev:
                        b0 = simd.vfma8(simd.vlev8(c8, q), simd.vbc8(x, xb + j), b0)
                        b1 = simd.vfma8(simd.vlev8(c8, q + 8), simd.vbc8(x, xb + j + 1), b1)
                        b2 = simd.vfma8(simd.vlev8(c8, q + 16), simd.vbc8(x, xb + j + 2), b2)
                        b3 = simd.vfma8(simd.vlev8(c8, q + 24), simd.vbc8(x, xb + j + 3), b3)
                    else:
                        b0 = simd.vfma8(simd.vld8(wt, q), simd.vbc8(x, xb + j), b0)
                        b1 = simd.vfma8(simd.vld8(wt, q + 8), simd.vbc8(x, xb + j + 1), b1)
                        b2 = simd.vfma8(simd.vld8(wt, q + 16), simd.vbc8(x, xb + j + 2), b2)
                        b3 = simd.vfma8(simd.vld8(wt, q + 24), simd.vbc8(x, xb + j + 3), b3)
                for j in range(K4, K):
                    q = (q0 + j) * 8
                    if lev:
                        b0 = simd.vfma8(simd.vlev8(c8, q), simd.vbc8(x, xb + j), b0)
                    else:
                        b0 = simd.vfma8(simd.vld8(wt, q), simd.vbc8(x, xb + j), b0)
                acc8 = simd.vadd8(simd.vadd8(b0, b1), simd.vadd8(b2, b3))
                if lev:
                    acc8 = simd.vfma8(acc8, simd.vld8(sp, ob * 8), simd.vld8(bp, ob * 8))
                else:
                    acc8 = simd.vadd8(acc8, simd.vld8(bp, ob * 8))
                simd.vst8(tmp, 0, acc8)
            for l in range(L):
                o = ob * L + l
                if o < O:
                    y[n, o] = act(tmp[l], code, alpha, beta)


@pjit(fastmath=FM, boundscheck=False)
def _gemm_v(x, wt, c8, sp, lev, bp, y, L, tmps, code, alpha, beta):
    NB = (y.shape[1] + L - 1) // L
    R = 4   # blocks per prange step
    for t in prange((NB + R - 1) // R):
        _gemm_v_rng(x, wt, c8, sp, lev, bp, y, L, t * R, min(NB, (t + 1) * R),
                    tmps[numba.get_thread_id()], code, alpha, beta)


class Gemm(RecordedOp):
    """SIMD path (lanes L from simd_mode): expanded weights transposed to (ceil(O/L), K, L);
    packed weights (i8, and t2 / q3 / t5 too) as int8 levels in that order (1 byte a
    weight), decoded in registers; EDGENET_SIMD=off: the row-dot kernel. t2 / q3 used to be
    decoded from 2 / 3 bit planes per weight vector: MobileNetV2's 1280->1000 classifier
    took 0.20 ms that way against 0.095 ms from the levels (1 thread; 0.16 / 0.061 at 2),
    for 1.3 MB of levels instead of 0.3 MB of planes (what the int8 convs hold per weight)."""

    def prepare(self, node, consts, policy):
        names = node_inputs(node)
        w = Weights(consts[names[1]], policy)
        cs = prepare_consts(node, consts)
        b = cs[2] if len(cs) > 2 and cs[2] is not None else np.zeros(w.O, np.float32)
        st = {"w": w, "b": np.ascontiguousarray(b.reshape(-1)), "act": act_of(node),
              "L": 0}
        L = simd.lanes(simd.simd_mode())
        if L:
            NB = -(-w.O // L)
            st["L"] = L
            st["bp"] = np.zeros(NB * L, np.float32)
            st["bp"][:w.O] = st["b"]
            if w.packed:
                lev = None if w.enc == ENC_I8 else consts[names[1]].levels()
                st["c8"], st["sp"] = i8_simd(w, L, lev)
                st["wt"] = _D1
                st["lev"] = True
            else:
                wt = np.zeros((NB * L, w.K), np.float32)
                wt[:w.O] = w.f
                st["wt"] = np.ascontiguousarray(wt.reshape(NB, L, w.K).transpose(0, 2, 1)).reshape(-1)
                st["c8"], st["sp"], st["lev"] = _B1, _D1, False
                w.f = None          # the transposed copy is the only float copy kept
        return st

    def exec(self, node, state, inputs, outputs, calls=None):
        if inputs[0].ndim != 2:    # X of rank > 2: rows are all but the last axis
            inputs = [inputs[0].reshape(-1, inputs[0].shape[-1])] + list(inputs[1:])
            outputs = [outputs[0].reshape(-1, outputs[0].shape[-1])]
        w = state["w"]
        b = state["b"]
        if len(inputs) > 2 and inputs[2] is not None:
            b = inputs[2].reshape(-1)
        code, alpha, beta = state["act"]
        L = state["L"]
        if L:
            bp = state["bp"]
            if b is not state["b"]:
                if calls is not None:
                    raise NoBind     # a bias computed per call
                bp = np.zeros(bp.size, np.float32)
                bp[:w.O] = b
            x = inputs[0]
            NB = -(-w.O // L)
            nt = numba.config.NUMBA_NUM_THREADS
            tmps = tls_rows("gemm.tmp", nt, L)   # (row 0: the serial one's)
            wargs = (state["wt"], state["c8"], state["sp"], state["lev"], bp, outputs[0], L)
            emit_split(calls, x.shape[0] * w.O * w.K,
                       (_gemm_v, (x, *wargs, tmps, code, alpha, beta)),
                       (_gemm_v_rng, (x, *wargs, 0, NB, tmps[0], code, alpha, beta)))
            return
        dummy = _D2
        x = inputs[0]
        if w.packed:
            buf = scratch(w.K)
            wf = dummy
        else:
            buf = dummy
            wf = w.f
        emit_split(calls, x.shape[0] * w.O * w.K,
                   (_gemm, (x, wf, w.packed, w.enc, w.codes, w.scale, buf, b, outputs[0], code,
                            alpha, beta)),
                   (_gemm_rng, (x, wf, w.packed, w.enc, w.codes, w.scale, buf[0], b, outputs[0],
                                0, w.O, code, alpha, beta)))


_D2 = np.zeros((1, 1), np.float32)
_D1 = np.zeros(1, np.float32)
_B1 = np.zeros(1, np.uint8)


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
