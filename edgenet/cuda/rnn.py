"""LSTM on the GPU (mirrors edgenet/cpu/rnn.py; shape rule edgenet/shapes_rnn.py).

1. ``_proj_k``: G [T·N, D·4H] = X · Wᵀ + (Wb + Rb), one thread per element of G.
2. ``_step_k``, launched once per timestep: one thread per (direction, batch, hidden
   unit) computes its 4 gate sums (H_{t-1} · rows of R), its c and h; H is double-buffered
   so a step reads only the previous step's values.
Sigmoid and tanh use the device's libm (float32).
"""
from __future__ import annotations

import math

import numpy as np
from numba import cuda, float32

from ..ops import node_attrs
from . import config
from ._common import OpImpl, blocks, to_device


@cuda.jit(device=True)
def _sig(z):
    return float32(1.0) / (float32(1.0) + math.exp(-z))


@cuda.jit
def _proj_k(x, w, bias, g, M, J, K):
    i = cuda.grid(1)
    if i >= M * J:
        return
    r = i // J
    j = i - r * J
    s = float32(0.0)
    for k in range(K):
        s += x[r * K + k] * w[j * K + k]
    g[i] = s + bias[j]


@cuda.jit
def _init_k(src, nb, dst, D, N, H, has):
    """dst [D, N, H] = src [D, nb, H] (nb 1: broadcast over the batch), or zeros."""
    i = cuda.grid(1)
    if i >= D * N * H:
        return
    h = i % H
    n = (i // H) % N
    d = i // (H * N)
    if has:
        dst[i] = src[(d * nb + (n if nb > 1 else 0)) * H + h]
    else:
        dst[i] = float32(0.0)


@cuda.jit
def _step_k(g, r, p, rev, hbuf, c, y, s, T, D, N, H, cur):
    i = cuda.grid(1)
    if i >= D * N * H:
        return
    h = i % H
    n = (i // H) % N
    d = i // (H * N)
    t = T - 1 - s if rev[d] else s
    H4 = 4 * H
    row = (t * N + n) * (D * H4) + d * H4
    si = g[row + h]
    so = g[row + H + h]
    sf = g[row + 2 * H + h]
    sc = g[row + 3 * H + h]
    hb = (cur * D + d) * N * H + n * H
    rb = d * H4 * H
    for k in range(H):
        hv = hbuf[hb + k]
        si += hv * r[rb + h * H + k]
        so += hv * r[rb + (H + h) * H + k]
        sf += hv * r[rb + (2 * H + h) * H + k]
        sc += hv * r[rb + (3 * H + h) * H + k]
    ci = (d * N + n) * H + h
    cp = c[ci]
    pb = d * 3 * H
    cn = _sig(sf + p[pb + 2 * H + h] * cp) * cp + _sig(si + p[pb + h] * cp) * math.tanh(sc)
    hn = _sig(so + p[pb + H + h] * cn) * math.tanh(cn)
    c[ci] = cn
    hbuf[((1 - cur) * D + d) * N * H + n * H + h] = hn
    y[((t * D + d) * N + n) * H + h] = hn


@cuda.jit
def _states_k(hbuf, c, y, last, T, D, N, H):
    i = cuda.grid(1)
    m = D * N * H
    if i >= m:
        return
    y[T * m + i] = hbuf[last * m + i]
    y[(T + 1) * m + i] = c[i]


class LSTM(OpImpl):
    def prepare(self, node, consts, policy):
        st = super().prepare(node, consts, policy)
        at = node_attrs(node)
        D, H4, _ = st["cshape"][1]
        H = H4 // 4
        b = st["const"].get(3)
        bias = np.zeros(D * H4, np.float32)
        if b is not None:
            bh = b.copy_to_host().reshape(D, 2 * H4)
            bias = (bh[:, :H4] + bh[:, H4:]).reshape(-1)
        st["bias"] = to_device(bias)
        if 6 not in st["const"]:
            st["const"][6] = to_device(np.zeros(D * 3 * H, np.float32))
            st["cshape"][6] = (D, 3 * H)
        direction = at["direction"]
        st["rev"] = to_device(np.array([direction == "reverse" or
                                        (direction == "bidirectional" and d == 1)
                                        for d in range(D)], np.int32), np.int32)
        st["states"] = int(at["with_states"])
        return st

    def launch(self, node, state, ins, in_shapes, out, out_shape, stream):
        ins = list(ins) + [None] * (7 - len(ins))
        in_shapes = list(in_shapes) + [None] * (7 - len(in_shapes))
        ops, shp = self.operands(state, ins, in_shapes)
        x, w, r, p = ops[0], ops[1], ops[2], ops[6]
        T, N, K = shp[0]
        D, H4, _ = shp[1]
        H = H4 // 4
        g = cuda.device_array(T * N * D * H4, np.float32, stream=stream)
        _proj_k[blocks(T * N * D * H4), config.THREADS, stream](
            x, w, state["bias"], g, T * N, D * H4, K)
        hbuf = cuda.device_array(2 * D * N * H, np.float32, stream=stream)
        c = cuda.device_array(D * N * H, np.float32, stream=stream)
        m = D * N * H
        for k, dst in ((4, hbuf), (5, c)):
            src = ops[k]
            has = src is not None
            nb = shp[k][1] if has else 1
            _init_k[blocks(m), config.THREADS, stream](src if has else state["bias"], nb, dst,
                                                      D, N, H, has)
        for s in range(T):
            _step_k[blocks(m), config.THREADS, stream](g, r, p, state["rev"], hbuf, c, out, s,
                                                      T, D, N, H, s % 2)
        if state["states"]:
            _states_k[blocks(m), config.THREADS, stream](hbuf, c, out, T % 2, T, D, N, H)


RNN_OPS = {"LSTM": LSTM()}
