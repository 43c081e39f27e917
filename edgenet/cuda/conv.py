"""Conv and ConvTranspose on the GPU (fused bias + residual + activation epilogue).

- ``conv_gemm`` (tiled implicit GEMM): a block computes TILE_M output channels x TILE_N
  output pixels (pixels = N*OH*OW, so batch folds into the GEMM's N dimension) of one group.
  Per TILE_K step the block cooperatively **decodes the weight tile from the packed codes**
  (t2/q3/i8, or reads float32) into shared memory and gathers the matching im2col tile of
  the input into shared memory; each thread accumulates a MICRO_M x MICRO_N register tile
  (strided over the block tile so output stores coalesce). Gemm reuses it (1x1 conv on a
  1x1 image).
- ``conv_direct``: one thread per output element, filter decoded from global memory; used
  for grouped convs with few output channels per group (depthwise).
- ``convtranspose_direct``: one thread per output element (gather form: each output sums the
  input taps that scatter into it), weights (O, C/g, kh, kw) output-channel-major as the IR
  stores them, so one output channel's filter is one packed row.
"""
from __future__ import annotations

import numpy as np
from numba import cuda, float32

from . import config
from ._common import (DevWeights, OpImpl, State, act, act_of, attrs, blocks, kernel_cache,
                      load_w, prod, to_device)


@kernel_cache
def _conv_gemm_kernel(TM, TN, TK, RM, RN):
    NTM = TM // RM
    NTN = TN // RN
    NT = NTM * NTN

    @cuda.jit
    def k(x, wf, codes, scale, enc, rb, bias, has_bias, res, has_res, y,
          N, C, H, W, O, OH, OW, Cg, Og, KH, KW, sh, sw, pt, pl, dh, dw, code, alpha, beta):
        ws = cuda.shared.array((TK, TM), float32)
        xs = cuda.shared.array((TK, TN), float32)
        acc = cuda.local.array((RM, RN), float32)
        tid = cuda.threadIdx.x
        tm = tid // NTN
        tn = tid - tm * NTN
        g = cuda.blockIdx.z
        m0 = cuda.blockIdx.y * TM
        j0 = cuda.blockIdx.x * TN
        P = OH * OW
        cols = N * P
        KK = KH * KW
        K = Cg * KK
        for a in range(RM):
            for b in range(RN):
                acc[a, b] = float32(0.0)
        for k0 in range(0, K, TK):
            # weight tile, decoded from the packed rows (k fastest: contiguous bytes)
            for e in range(tid, TM * TK, NT):
                mm = e // TK
                kk = e - mm * TK
                v = float32(0.0)
                if m0 + mm < Og and k0 + kk < K:
                    v = load_w(enc, wf, codes, scale, rb, K, g * Og + m0 + mm, k0 + kk)
                ws[kk, mm] = v
            # im2col tile of the input
            for e in range(tid, TK * TN, NT):
                kk = e // TN
                jj = e - kk * TN
                kg = k0 + kk
                j = j0 + jj
                v = float32(0.0)
                if kg < K and j < cols:
                    n = j // P
                    p = j - n * P
                    oy = p // OW
                    ox = p - oy * OW
                    c = kg // KK
                    r = kg - c * KK
                    ky = r // KW
                    kx = r - ky * KW
                    iy = oy * sh - pt + ky * dh
                    ix = ox * sw - pl + kx * dw
                    if iy >= 0 and iy < H and ix >= 0 and ix < W:
                        v = x[((n * C + g * Cg + c) * H + iy) * W + ix]
                xs[kk, jj] = v
            cuda.syncthreads()
            for kk in range(TK):
                for a in range(RM):
                    wv = ws[kk, tm + a * NTM]
                    for b in range(RN):
                        acc[a, b] += wv * xs[kk, tn + b * NTN]
            cuda.syncthreads()
        for a in range(RM):
            m = m0 + tm + a * NTM
            if m < Og:
                o = g * Og + m
                bo = bias[o] if has_bias else float32(0.0)
                for b in range(RN):
                    j = j0 + tn + b * NTN
                    if j < cols:
                        n = j // P
                        p = j - n * P
                        idx = (n * O + o) * P + p
                        v = acc[a, b] + bo
                        if has_res:
                            v += res[idx]
                        y[idx] = act(v, code, alpha, beta)

    return k, NT


@cuda.jit
def _conv_direct(x, wf, codes, scale, enc, rb, bias, has_bias, res, has_res, y,
                 N, C, H, W, O, OH, OW, Cg, Og, KH, KW, sh, sw, pt, pl, dh, dw,
                 code, alpha, beta):
    i = cuda.grid(1)
    total = N * O * OH * OW
    if i >= total:
        return
    ox = i % OW
    t = i // OW
    oy = t % OH
    t = t // OH
    o = t % O
    n = t // O
    g = o // Og
    K = Cg * KH * KW
    acc = float32(0.0)
    for c in range(Cg):
        xb = (n * C + g * Cg + c) * H
        for ky in range(KH):
            iy = oy * sh - pt + ky * dh
            if iy < 0 or iy >= H:
                continue
            for kx in range(KW):
                ix = ox * sw - pl + kx * dw
                if ix < 0 or ix >= W:
                    continue
                wv = load_w(enc, wf, codes, scale, rb, K, o, (c * KH + ky) * KW + kx)
                acc += wv * x[(xb + iy) * W + ix]
    if has_bias:
        acc += bias[o]
    if has_res:
        acc += res[i]
    y[i] = act(acc, code, alpha, beta)


@cuda.jit
def _convtranspose_direct(x, wf, codes, scale, enc, rb, bias, has_bias, y,
                          N, C, H, W, O, OH, OW, Cg, Og, KH, KW, sh, sw, pt, pl, dh, dw,
                          code, alpha, beta):
    i = cuda.grid(1)
    total = N * O * OH * OW
    if i >= total:
        return
    ox = i % OW
    t = i // OW
    oy = t % OH
    t = t // OH
    o = t % O
    n = t // O
    g = o // Og
    K = Cg * KH * KW
    acc = float32(0.0)
    for ky in range(KH):
        ty = oy + pt - ky * dh          # = iy * sh
        if ty < 0 or ty % sh != 0:
            continue
        iy = ty // sh
        if iy >= H:
            continue
        for kx in range(KW):
            tx = ox + pl - kx * dw
            if tx < 0 or tx % sw != 0:
                continue
            ix = tx // sw
            if ix >= W:
                continue
            for c in range(Cg):
                wv = load_w(enc, wf, codes, scale, rb, K, o, (c * KH + ky) * KW + kx)
                acc += wv * x[((n * C + g * Cg + c) * H + iy) * W + ix]
    if has_bias:
        acc += bias[o]
    y[i] = act(acc, code, alpha, beta)


def prepare_weighted(node, consts, policy):
    ins = node["inputs"]
    w = DevWeights(consts[ins[1]], policy)
    has_b = len(ins) > 2 and ins[2] != ""
    bias = to_device(consts[ins[2]].dequantize() if has_b else np.zeros(1, np.float32))
    code, alpha, beta = act_of(node)
    return State(w=w, bias=bias, has_bias=bool(has_b), act=(code, alpha, beta),
                 dummy=to_device(np.zeros(1, np.float32)))


def launch_conv(state, x, xshape, res, y, oshape, geom, stream):
    """Shared by Conv and Gemm: geom = (group, KH, KW, sh, sw, pt, pl, dh, dw)."""
    G, KH, KW, sh, sw, pt, pl, dh, dw = geom
    N, C, H, W = xshape
    _, O, OH, OW = oshape
    w = state["w"]
    Cg, Og = C // G, O // G
    code, alpha, beta = state["act"]
    has_res = res is not None
    r = res if has_res else state["dummy"]
    args = (x, w.wf, w.codes, w.scale, w.enc, w.rb, state["bias"], state["has_bias"], r,
            has_res, y, N, C, H, W, O, OH, OW, Cg, Og, KH, KW, sh, sw, pt, pl, dh, dw,
            code, alpha, beta)
    if G > 1 and Og < config.DIRECT_MAX_OG:
        _conv_direct[blocks(prod(oshape)), config.THREADS, stream](*args)
        return
    TM, TN, TK = config.TILE_M, config.TILE_N, config.TILE_K
    kern, nt = _conv_gemm_kernel(TM, TN, TK, config.MICRO_M, config.MICRO_N)
    grid = ((N * OH * OW + TN - 1) // TN, (Og + TM - 1) // TM, G)
    kern[grid, nt, stream](*args)


class Conv(OpImpl):
    def prepare(self, node, consts, policy):
        return prepare_weighted(node, consts, policy)

    def launch(self, node, state, ins, in_shapes, out, out_shape, stream):
        a = attrs(node)
        sh, sw = a["strides"]
        dh, dw = a["dilations"]
        pt, pl, _, _ = a["pads"]
        w = state["w"]
        res = ins[3] if len(ins) > 3 else None
        geom = (int(a["group"]), w.shape[2], w.shape[3], sh, sw, pt, pl, dh, dw)
        launch_conv(state, ins[0], in_shapes[0], res, out, out_shape, geom, stream)


class ConvTranspose(OpImpl):
    def prepare(self, node, consts, policy):
        return prepare_weighted(node, consts, policy)

    def launch(self, node, state, ins, in_shapes, out, out_shape, stream):
        a = attrs(node)
        sh, sw = a["strides"]
        dh, dw = a["dilations"]
        pt, pl, _, _ = a["pads"]
        G = int(a["group"])
        w = state["w"]
        N, C, H, W = in_shapes[0]
        _, O, OH, OW = out_shape
        code, alpha, beta = state["act"]
        _convtranspose_direct[blocks(prod(out_shape)), config.THREADS, stream](
            ins[0], w.wf, w.codes, w.scale, w.enc, w.rb, state["bias"], state["has_bias"], out,
            N, C, H, W, O, OH, OW, C // G, O // G, w.shape[2], w.shape[3], sh, sw, pt, pl,
            dh, dw, code, alpha, beta)
