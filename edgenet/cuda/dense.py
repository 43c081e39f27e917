"""Gemm (the tiled conv kernel on a 1x1 image: packed weights decoded into shared memory,
fused bias + activation; a GEMV kernel for batches of at most ``config.GEMV_MAX_N`` rows)
and MatMul of two activations (numpy.matmul semantics with
batch broadcasting; one thread per output element, per-shape batch offset tables)."""
from __future__ import annotations

import numpy as np
from numba import cuda, float32

from . import config
from ._common import OpImpl, act, blocks, kernel_cache, load_w, prod, to_device
from .conv import prepare_weighted, launch_conv


@kernel_cache
def _gemv_kernel(LANES, ROWS):
    @cuda.jit
    def k(x, wf, codes, scale, enc, rb, bias, has_bias, y, N, K, O, code, alpha, beta):
        part = cuda.shared.array((ROWS, LANES), float32)
        lane = cuda.threadIdx.x
        r = cuda.threadIdx.y
        o = cuda.blockIdx.x * ROWS + r
        for n in range(N):
            acc = float32(0.0)
            if o < O:
                for kk in range(lane, K, LANES):
                    acc += load_w(enc, wf, codes, scale, rb, K, o, kk) * x[n * K + kk]
            part[r, lane] = acc
            cuda.syncthreads()
            if lane == 0 and o < O:
                s = float32(0.0)
                for j in range(LANES):
                    s += part[r, j]
                if has_bias:
                    s += bias[o]
                y[n * O + o] = act(s, code, alpha, beta)
            cuda.syncthreads()

    return k


class Gemm(OpImpl):
    def prepare(self, node, consts, policy):
        return prepare_weighted(node, consts, policy)

    def launch(self, node, state, ins, in_shapes, out, out_shape, stream):
        k = in_shapes[0][-1]           # X of rank > 2: rows are all but the last axis
        n = prod(in_shapes[0][:-1])
        o = out_shape[-1]
        if n <= config.GEMV_MAX_N:
            w = state["w"]
            code, alpha, beta = state["act"]
            L, R = config.GEMV_LANES, config.GEMV_ROWS
            _gemv_kernel(L, R)[(o + R - 1) // R, (L, R), stream](
                ins[0], w.wf, w.codes, w.scale, w.enc, w.rb, state["bias"], state["has_bias"],
                out, n, k, o, code, alpha, beta)
            return
        launch_conv(state, ins[0], (n, k, 1, 1), None, out, (n, o, 1, 1),
                    (1, 1, 1, 1, 1, 0, 0, 1, 1), stream)


@cuda.jit
def _matmul(a, b, aoff, boff, y, M, K, Nn, total):
    i = cuda.grid(1)
    if i >= total:
        return
    col = i % Nn
    t = i // Nn
    row = t % M
    bi = t // M
    pa = aoff[bi] + row * K
    pb = boff[bi] + col
    acc = float32(0.0)
    for kk in range(K):
        acc += a[pa + kk] * b[pb + kk * Nn]
    y[i] = acc


def _batch_offsets(sa, sb, batch):
    """Element offsets of each broadcast batch matrix of A and B."""
    r = len(batch)
    pa = (1,) * (r - len(sa[:-2])) + tuple(sa[:-2])
    pb = (1,) * (r - len(sb[:-2])) + tuple(sb[:-2])
    idx = np.indices(batch).reshape(r, -1) if r else np.zeros((0, 1), np.int64)

    def offs(p, mat):
        strides = np.cumprod((1,) + p[::-1])[:-1][::-1] if r else np.zeros(0, np.int64)
        o = np.zeros(idx.shape[1], np.int64)
        for ax in range(r):
            if p[ax] != 1:
                o += idx[ax] * strides[ax]
        return o * mat

    return offs(pa, sa[-2] * sa[-1]), offs(pb, sb[-2] * sb[-1])


class MatMul(OpImpl):
    def prepare(self, node, consts, policy):
        st = super().prepare(node, consts, policy)
        st["tables"] = {}
        return st

    def launch(self, node, state, ins, in_shapes, out, out_shape, stream):
        (a, b), (sa, sb) = self.operands(state, ins, in_shapes)
        key = (tuple(sa), tuple(sb))
        tab = state["tables"].get(key)
        if tab is None:
            ao, bo = _batch_offsets(tuple(sa), tuple(sb), tuple(out_shape[:-2]))
            tab = state["tables"][key] = (to_device(ao, np.int64), to_device(bo, np.int64))
        M, K, Nn = sa[-2], sa[-1], sb[-1]
        total = prod(out_shape)
        _matmul[blocks(total), config.THREADS, stream](a, b, tab[0], tab[1], out, M, K, Nn,
                                                       total)
