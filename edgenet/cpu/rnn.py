"""LSTM on the CPU (edgenet/shapes_rnn.py; NumPy oracle: edgenet/reference/rnn.py).

1. Input projection of every timestep at once: G [T·N, D·4H] = X · Wᵀ + (Wb + Rb), both
   directions in one matrix, a parallel loop over blocks of G's columns (each thread owns
   its columns; no BLAS: OpenBLAS's threads fight Numba's).
2. The recurrence, one step at a time: a parallel loop over (direction, hidden-unit block);
   a thread computes the 4 gate pre-activations of its units (H_{t-1} times its block of R,
   regrouped at prepare so that the block is one contiguous stream), then their c and h.
   H is double-buffered; each thread writes only its own
   units of C, H and Y.
"""
from __future__ import annotations

import numpy as np
from numba import prange

from ..activation import sigmoid_f32, tanh_f32
from ..ops import node_attrs
from .._jit import njit, pjit
from ._common import OpImpl, const_f32, use_parallel

_FM = {"contract", "reassoc", "nsz", "arcp"}
JB = 32              # projection: columns of G per task
HB = 16              # hidden units per recurrence task


@njit(fastmath=_FM, error_model="numpy")
def _cell(si, so, sf, sc, cprev, pi, po, pf):
    """(c, h) of one unit from its gate pre-activations and peepholes (ONNX default
    activations)."""
    cn = sigmoid_f32(sf + pf * cprev) * cprev + sigmoid_f32(si + pi * cprev) * tanh_f32(sc)
    return cn, sigmoid_f32(so + po * cn) * tanh_f32(cn)


def _proj_impl(x, w, bias, g):
    """g[r, j] = bias[j] + x[r] · w[j]: dot products, 4 columns of g per pass over x[r]
    (4 independent vectorized reductions; each thread owns a block of JB columns)."""
    M, K = x.shape
    J = w.shape[0]
    njb = (J + JB - 1) // JB
    for jb in prange(njb):
        j0 = jb * JB
        j1 = min(J, j0 + JB)
        for r in range(M):
            j = j0
            while j + 4 <= j1:
                s0 = np.float32(0)
                s1 = np.float32(0)
                s2 = np.float32(0)
                s3 = np.float32(0)
                for k in range(K):
                    xv = x[r, k]
                    s0 += xv * w[j, k]
                    s1 += xv * w[j + 1, k]
                    s2 += xv * w[j + 2, k]
                    s3 += xv * w[j + 3, k]
                g[r, j] = s0 + bias[j]
                g[r, j + 1] = s1 + bias[j + 1]
                g[r, j + 2] = s2 + bias[j + 2]
                g[r, j + 3] = s3 + bias[j + 3]
                j += 4
            while j < j1:
                s0 = np.float32(0)
                for k in range(K):
                    s0 += x[r, k] * w[j, k]
                g[r, j] = s0 + bias[j]
                j += 1


def _rec_impl(g, rt, p, rev, hbuf, c, y, T, N, H, with_states):
    """rt [D, nhb, H, 4·HB]: R regrouped per block of HB hidden units, k-major (zero rows
    past H): a task streams its block once per step and accumulates the 4·HB gate sums
    of its units in one small vector (no horizontal reductions)."""
    D = rt.shape[0]
    nhb = rt.shape[1]
    Q = rt.shape[3]
    H4 = 4 * H
    for s in range(T):
        cur = s % 2
        nxt = 1 - cur
        for task in prange(D * nhb):
            d = task // nhb
            hb = task % nhb
            h0 = hb * HB
            nh = min(HB, H - h0)
            t = T - 1 - s if rev[d] else s
            col = d * H4
            acc = np.empty(Q, np.float32)
            for n in range(N):
                row = t * N + n
                for q in range(Q):
                    acc[q] = 0
                k = 0
                while k + 4 <= H:       # 4 rows of R per pass: acc loaded/stored 1/4 as often
                    h0v = hbuf[cur, d, n, k]
                    h1v = hbuf[cur, d, n, k + 1]
                    h2v = hbuf[cur, d, n, k + 2]
                    h3v = hbuf[cur, d, n, k + 3]
                    for q in range(Q):
                        acc[q] += (h0v * rt[d, hb, k, q] + h1v * rt[d, hb, k + 1, q]) + \
                            (h2v * rt[d, hb, k + 2, q] + h3v * rt[d, hb, k + 3, q])
                    k += 4
                while k < H:
                    hv = hbuf[cur, d, n, k]
                    for q in range(Q):
                        acc[q] += hv * rt[d, hb, k, q]
                    k += 1
                for hl in range(nh):
                    h = h0 + hl
                    cn, hn = _cell(g[row, col + h] + acc[hl],
                                   g[row, col + H + h] + acc[HB + hl],
                                   g[row, col + 2 * H + h] + acc[2 * HB + hl],
                                   g[row, col + 3 * H + h] + acc[3 * HB + hl], c[d, n, h],
                                   p[d, 0, h], p[d, 1, h], p[d, 2, h])
                    c[d, n, h] = cn
                    hbuf[nxt, d, n, h] = hn
                    y[t, d, n, h] = hn
    if with_states:
        last = T % 2
        for d in range(D):
            for n in range(N):
                for h in range(H):
                    y[T, d, n, h] = hbuf[last, d, n, h]
                    y[T + 1, d, n, h] = c[d, n, h]


_opts = dict(boundscheck=False, fastmath=_FM, error_model="numpy")
_proj_par = pjit(**_opts)(_proj_impl)
_proj_ser = njit(**_opts)(_proj_impl)
_rec_par = pjit(**_opts)(_rec_impl)
_rec_ser = njit(**_opts)(_rec_impl)


class LSTM(OpImpl):
    def prepare(self, node, consts, policy):
        at = node_attrs(node)
        ins = list(node["inputs"]) + [""] * (7 - len(node["inputs"]))
        w = const_f32(consts, ins[1])            # [D, 4H, I]
        r = const_f32(consts, ins[2])            # [D, 4H, H]
        H = r.shape[2]
        nhb = (H + HB - 1) // HB
        rp = np.zeros((r.shape[0], 4, nhb * HB, H), np.float32)
        rp[:, :, :H] = r.reshape(r.shape[0], 4, H, H)
        # rt[d, hb, k, g·HB + hl] = R[d, g·H + hb·HB + hl, k]
        rt = np.ascontiguousarray(rp.reshape(r.shape[0], 4, nhb, HB, H)
                                  .transpose(0, 2, 4, 1, 3).reshape(r.shape[0], nhb, H, 4 * HB))
        D, H4, _ = w.shape
        b = const_f32(consts, ins[3])
        bias = np.zeros(D * H4, np.float32) if b is None else \
            np.ascontiguousarray((b[:, :H4] + b[:, H4:]).reshape(-1))
        # all directions stacked: wcat [D·4H, I]
        wt = np.ascontiguousarray(w.reshape(D * H4, w.shape[2]))
        direction = at["direction"]
        rev = np.array([direction == "reverse" or (direction == "bidirectional" and d == 1)
                        for d in range(D)], np.bool_)
        init = [const_f32(consts, ins[k]) for k in (4, 5)]
        pp = const_f32(consts, ins[6])          # peepholes [D, 3H] (i, o, f)
        p = np.zeros((D, 3, H), np.float32) if pp is None else \
            np.ascontiguousarray(pp.reshape(D, 3, H))
        return {"wt": wt, "bias": bias, "rt": rt, "p": p, "H": H, "rev": rev, "init": init,
                "states": int(at["with_states"])}

    def run(self, node, state, inputs, outputs):
        x = inputs[0]
        T, N, _ = x.shape
        rt, H = state["rt"], state["H"]
        D = rt.shape[0]
        H4 = 4 * H
        init = []
        for k, cst in zip((4, 5), state["init"]):
            v = cst if cst is not None else (inputs[k] if k < len(inputs) else None)
            a = np.zeros((D, N, H), np.float32)
            if v is not None:
                a[...] = v                       # batch 1 broadcasts
            init.append(a)
        hbuf = np.empty((2, D, N, H), np.float32)
        hbuf[0] = init[0]
        c = init[1]
        g = np.empty((T * N, D * H4), np.float32)
        x2 = x.reshape(T * N, x.shape[2])
        wt = state["wt"]
        if use_parallel(x2.shape[0] * wt.size):
            _proj_par(x2, wt, state["bias"], g)
        else:
            _proj_ser(x2, wt, state["bias"], g)
        rec = _rec_par if use_parallel(N * rt.size) else _rec_ser
        rec(g, rt, state["p"], state["rev"], hbuf, c, outputs[0], T, N, H, state["states"])


RNN_OPS = {"LSTM": LSTM()}
