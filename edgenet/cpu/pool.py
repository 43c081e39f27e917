"""MaxPool, AveragePool, GlobalAveragePool, GlobalMaxPool (NCHW, float32).

Windowed pools are separable: per output row, the KH input rows of the window are reduced
into a row buffer (contiguous, vectorized; padding columns hold -inf for max, 0 for
average), then each output pixel reduces KW entries of that buffer (a strided loop LLVM
vectorizes with interleaved loads). Average divisors factor into a row count times a
column count (precomputed per shape). Max propagates NaN like the reference
(``v > m or v != v``). Each kernel has a serial and a parallel (planes across threads)
variant; ``_common.use_parallel`` picks one by work size.
"""
from __future__ import annotations

import numba
import numpy as np
from numba import prange

from ..ops import node_attrs
from ._common import FM, RecordedOp, blk_out, emit, emit_split, tls_rows
from .._jit import njit, pjit
from . import qconv, simd
from .simd import ldf, stf


# Row loops in explicit 16-lane vectors with a scalar tail: LLVM's own vectorization of them
# ran 64 floats an iteration, so the 56- and 112-float rows of ResNet-18's MaxPool ran
# mostly in its scalar remainder (64x112x112 3x3/2, 1 thread: 0.30 ms, about 2.5 floats a
# cycle; see docs/PERFORMANCE.md for after).
@njit(fastmath=FM, boundscheck=False, inline="always")
def _row_merge(dst, d, src, s, n, mode):
    """dst[d:d+n] = src[s:s+n] (mode 0), the max with the NaN rule (1), the sum (2)."""
    i = 0
    while i + 16 <= n:
        v = simd.vld16(src, s + i)
        if mode == 1:
            v = simd.vmaxn16(v, simd.vld16(dst, d + i))
        elif mode == 2:
            v = simd.vadd16(simd.vld16(dst, d + i), v)
        simd.vst16(dst, d + i, v)
        i += 16
    for j in range(i, n):
        v = ldf(src, s + j)
        if mode == 1:
            m = ldf(dst, d + j)
            v = v if (v > m or v != v) else m
        elif mode == 2:
            v = ldf(dst, d + j) + v
        stf(dst, d + j, v)


@njit(fastmath=FM, boundscheck=False, inline="always")
def _row_windows(rb, yf, yb, OW, KW, sw, dw, is_max):
    """yf[yb + ox] = the max (sum) of rb[ox * sw + kx * dw], kx < KW, for stride 1 or 2
    (stride 2: even-element loads), in the order of the scalar loop below. A row of >= 16
    outputs ends with a vector overlapping the previous one (its outputs are recomputed
    with the same values): the scalar loop took 60 % of the time on ResNet-18's 56-wide
    rows."""
    ox = 0
    while ox < OW and OW >= 16:
        if ox + 16 > OW:
            ox = OW - 16
        if sw == 1:
            a = simd.vld16(rb, ox)
        else:
            a = simd.vld2_16(rb, 2 * ox)
        for kx in range(1, KW):
            if sw == 1:
                v = simd.vld16(rb, ox + kx * dw)
            else:
                v = simd.vld2_16(rb, 2 * ox + kx * dw)
            a = simd.vmaxn16(v, a) if is_max else simd.vadd16(a, v)
        simd.vst16(yf, yb + ox, a)
        ox += 16
    for o in range(ox, OW):
        a = ldf(rb, o * sw)
        for kx in range(1, KW):
            v = ldf(rb, o * sw + kx * dw)
            if is_max:
                a = v if (v > a or v != v) else a
            else:
                a = a + v
        stf(yf, yb + o, a)


@njit(fastmath=FM, boundscheck=False)
def _pool_planes(xf, yf, p0, p1, H, W, OH, OW, KH, KW, sh, sw, pt, pl, dh, dw, is_max,
                 inv_y, inv_x, rb):
    """Planes p0..p1 (flat x (P, H, W) -> flat y (P, OH, OW)); is_max: 0 average, 1 max, 2
    max with the 3 x 3 / 2 window in registers where it applies (AVX-512 and AVX2 tiers:
    masked loads; rows of >= 16 outputs): 16 outputs at a time from the column maxima of
    48 columns of the window's rows (v0, v1, v2; columns outside the image load as -inf),
    split into even, odd and next-even lanes, the last vector overlapping the one before;
    taps in the order below (rows, then kx), the NaN rule of ``vmaxn16``; no row buffer
    and no stride-2 loads (ResNet-18's 64x112x112 pool at one thread, the float part: 182
    -> 122-129 us; written out here: a helper taking the arrays per vector cost a reference
    count update per call, 3x slower). Otherwise, per output row the KH window
    rows are reduced into the row buffer rb (padding columns: -inf / 0), then each output
    reduces KW entries of it. Raw element offsets (``ldf``/``stf``): no negative-index
    wraparound select, so the row loops vectorize (MaxPool 64x112x112 3x3/2: 0.89 ->
    0.31 ms). Max keeps the reference's NaN rule ``v > m or v != v``."""
    Wb = (OW - 1) * sw + (KW - 1) * dw + 1
    init = np.float32(-np.inf) if is_max else np.float32(0)
    n = W if pl + W <= Wb else Wb - pl      # image columns the windows can reach
    if n < 0:
        n = 0
    for j in range(0, min(pl, Wb)):
        stf(rb, j, init)
    for j in range(pl + n, Wb):
        stf(rb, j, init)
    fast = (is_max == 2 and KH == 3 and KW == 3 and sh == 2 and sw == 2 and dh == 1
            and dw == 1 and OW >= 16)
    for p in range(p0, p1):
        for oy in range(OH):
            if fast:
                nr = 0
                r0 = r1 = r2 = 0
                for ky in range(3):
                    iy = oy * 2 - pt + ky
                    if 0 <= iy < H:
                        rs = (p * H + iy) * W
                        if nr == 0:
                            r0 = rs
                        elif nr == 1:
                            r1 = rs
                        else:
                            r2 = rs
                        nr += 1
                # (the 3 x 3 / 2 window in registers: see the docstring)
                ox = 0
                while ox < OW:
                    if ox + 16 > OW:
                        ox = OW - 16
                    c = 2 * ox - pl
                    lo0, hi0 = max(0, -c), min(16, W - c)
                    lo1, hi1 = max(0, -c - 16), min(16, W - c - 16)
                    lo2, hi2 = max(0, -c - 32), min(16, W - c - 32)
                    v0 = simd.vldr16(xf, r0 + c, lo0, hi0)
                    v1 = simd.vldr16(xf, r0 + c + 16, lo1, hi1)
                    v2 = simd.vldr16(xf, r0 + c + 32, lo2, hi2)
                    if nr > 1:
                        v0 = simd.vmaxn16(simd.vldr16(xf, r1 + c, lo0, hi0), v0)
                        v1 = simd.vmaxn16(simd.vldr16(xf, r1 + c + 16, lo1, hi1), v1)
                        v2 = simd.vmaxn16(simd.vldr16(xf, r1 + c + 32, lo2, hi2), v2)
                    if nr > 2:
                        v0 = simd.vmaxn16(simd.vldr16(xf, r2 + c, lo0, hi0), v0)
                        v1 = simd.vmaxn16(simd.vldr16(xf, r2 + c + 16, lo1, hi1), v1)
                        v2 = simd.vmaxn16(simd.vldr16(xf, r2 + c + 32, lo2, hi2), v2)
                    e = simd.vevens16(v0, v1)
                    a = simd.vmaxn16(simd.vodds16(v0, v1), e)
                    simd.vst16(yf, (p * OH + oy) * OW + ox, simd.vmaxn16(simd.vnext16(e, v2), a))
                    ox += 16
                continue
            first = True
            for ky in range(KH):
                iy = oy * sh - pt + ky * dh
                if iy < 0 or iy >= H:
                    continue
                xb = (p * H + iy) * W
                _row_merge(rb, pl, xf, xb, n, 0 if first else (1 if is_max else 2))
                first = False
            if first:
                for i in range(n):
                    stf(rb, pl + i, init)
            yb = (p * OH + oy) * OW
            if sw <= 2:
                _row_windows(rb, yf, yb, OW, KW, sw, dw, is_max)
                if not is_max:
                    iy_ = inv_y[oy]
                    for ox in range(OW):
                        stf(yf, yb + ox, ldf(yf, yb + ox) * (iy_ * inv_x[ox]))
                continue
            for ox in range(OW):
                stf(yf, yb + ox, ldf(rb, ox * sw))
            for kx in range(1, KW):
                o = kx * dw
                if is_max:
                    for ox in range(OW):
                        v = ldf(rb, ox * sw + o)
                        m = ldf(yf, yb + ox)
                        stf(yf, yb + ox, v if (v > m or v != v) else m)
                else:
                    for ox in range(OW):
                        stf(yf, yb + ox, ldf(yf, yb + ox) + ldf(rb, ox * sw + o))
            if not is_max:
                iy_ = inv_y[oy]
                for ox in range(OW):
                    stf(yf, yb + ox, ldf(yf, yb + ox) * (iy_ * inv_x[ox]))


@pjit(fastmath=FM, boundscheck=False)
def _pool_par(xf, yf, P, H, W, OH, OW, KH, KW, sh, sw, pt, pl, dh, dw, is_max, inv_y, inv_x,
              rbs):
    for p in prange(P):
        _pool_planes(xf, yf, p, p + 1, H, W, OH, OW, KH, KW, sh, sw, pt, pl, dh, dw, is_max,
                     inv_y, inv_x, rbs[numba.get_thread_id()])


@njit(fastmath=FM, boundscheck=False)
def _pool_q_groups(xf, yf, g0, g1, C, H, W, OH, OW, KH, KW, sh, sw, pt, pl, dh, dw, mode,
                   inv_y, inv_x, rb, qb, qp, qf):
    """MaxPool of channel groups g0..g1 (g = n * C4 + c4: 4 channels of one image), each
    group's planes pooled, then their output rows quantized (simd.vquant4_16, the int8
    reader's own quantize rule) into its padded words qb (uint8 (N, C4, QHp, QWp, 4); qp =
    (_, C4, QHp, QWp, pad top, pad left), qf = (scale, zero point):
    qconv.consumer_words)."""
    C4, QHp, QWp, qt, ql = qp[1], qp[2], qp[3], qp[4], qp[5]
    HWo = OH * OW
    for g in range(g0, g1):
        n = g // C4
        c0 = (g % C4) * 4
        nc = min(4, C - c0)
        p0 = n * C + c0
        _pool_planes(xf, yf, p0, p0 + nc, H, W, OH, OW, KH, KW, sh, sw, pt, pl, dh, dw, mode,
                     inv_y, inv_x, rb)
        for oy in range(OH):
            src = p0 * HWo + oy * OW
            wb = (g * QHp + oy + qt) * QWp + ql
            for x0 in range(0, OW, 16):
                simd.vquant4_16(yf, src + x0, HWo, nc, min(16, OW - x0), qf[0], qf[1], qb,
                                4 * (wb + x0))


@pjit(fastmath=FM, boundscheck=False)
def _pool_q_par(xf, yf, G, C, H, W, OH, OW, KH, KW, sh, sw, pt, pl, dh, dw, mode, inv_y, inv_x,
                rbs, qb, qp, qf):
    for g in prange(G):
        _pool_q_groups(xf, yf, g, g + 1, C, H, W, OH, OW, KH, KW, sh, sw, pt, pl, dh, dw, mode,
                       inv_y, inv_x, rbs[numba.get_thread_id()], qb, qp, qf)


POOL3_ON = True


def _mode(is_max):
    """_pool_planes' mode: 0 average, 1 max, 2 max with the register 3 x 3 / 2 rows (the
    x86 vector tiers: generic IR masked loads would be scalar elsewhere)."""
    if not is_max:
        return 0
    return 2 if POOL3_ON and simd.simd_mode() in ("avx512vnni", "avx512", "avx2") else 1


def warm_pool_q():
    """Compile (or load) the MaxPool-and-quantize kernels at the runtime's argument types,
    serial and parallel (edgenet warmup: reference cases never mark a MaxPool)."""
    st = MaxPool().prepare({"op": "MaxPool", "inputs": ["x"], "outputs": ["m"],
                            "attrs": {"kernel": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1],
                                      "ceil_mode": 0},
                            "_qo": (1 / 64, 0, (1, 1, 1, 1))}, {}, None)
    x = np.zeros((1, 4, 8, 8), np.float32)
    y = np.zeros((1, 4, 4, 4), np.float32)
    MaxPool().exec({"op": "MaxPool"}, st, [x], [y])             # serial (small)
    qw, qp, qf = qconv.consumer_words(st, st["qo"], 1, 4, 4, 4)
    rbs = tls_rows("pool.rb", numba.config.NUMBA_NUM_THREADS, 16)
    _pool_q_par(x.reshape(-1), y.reshape(-1), 1, 4, 8, 8, 4, 4, 3, 3, 2, 2, 1, 1, 1, 1,
                _mode(True), *st["inv"][(8, 8, 4, 4)], rbs, qw.view(np.uint8), qp, qf)


def _inv_counts(size, out, k, s, d, p0, p1, include_pad):
    """1 / (taps counted) per output position along one axis (0 where none count)."""
    inv = np.zeros(out, np.float32)
    for o in range(out):
        cnt = 0
        for t in range(k):
            i = o * s - p0 + t * d
            if i >= size + p1:
                break
            if include_pad or 0 <= i < size:
                cnt += 1
        inv[o] = 1.0 / cnt if cnt else 0.0
    return inv


_QB0, _QP0, _QF0 = np.zeros(4, np.uint8), np.zeros(6, np.int64), np.zeros(2, np.float32)


class _Pool(RecordedOp):
    is_max = True

    def prepare(self, node, consts, policy):
        a = node_attrs(node)   # spec defaults filled in (edgenet/ops.py)
        kh, kw = (int(v) for v in a["kernel"])
        sh, sw = (int(v) for v in a["strides"])
        pt, pl, pb, pr = (int(v) for v in a["pads"])
        dh, dw = (int(v) for v in a["dilations"])
        st = {"p": (kh, kw, sh, sw, pt, pl, pb, pr, dh, dw),
              "cip": bool(a.get("count_include_pad", 0)), "inv": {}, "qo": None}
        qo = node.get("_qo") if isinstance(node, dict) else None
        if qo is not None and self.is_max:   # quant.mark_quantized_producers
            st["qo"] = (np.float32(qo[0]), np.float32(qo[1]), "qin:" + node["outputs"][0],
                        tuple(int(v) for v in qo[2]))
        return st

    def exec(self, node, state, inputs, outputs, calls=None):
        x, y = inputs[0], outputs[0]
        kh, kw, sh, sw, pt, pl, pb, pr, dh, dw = state["p"]
        N, C, H, W = x.shape
        OH, OW = y.shape[2], y.shape[3]
        pend = blk_out(state["pi"], x.shape) if state.get("pi") is not None else None
        if pend:   # its stem conv, fused (conv.link_pool): that kernel into y (and into
            f, args = pend   # the int8 reader's words)
            if state["qo"] is not None:
                qw, qp, qf = qconv.consumer_words(state, state["qo"], N, C, OH, OW, calls)
                qb = qw.view(np.uint8)
            else:
                qb, qp, qf = _QB0, _QP0, _QF0
            emit(calls, f, *args, y.reshape(-1), qb, qp, qf)
            return
        key = (H, W, OH, OW)
        inv = state["inv"].get(key)
        if inv is None:
            if self.is_max:
                inv = (np.zeros(1, np.float32), np.zeros(1, np.float32))
            else:
                inv = (_inv_counts(H, OH, kh, sh, dh, pt, pb, state["cip"]),
                       _inv_counts(W, OW, kw, sw, dw, pl, pr, state["cip"]))
            state["inv"][key] = inv
        Wb = (OW - 1) * sw + (kw - 1) * dw + 1
        P = N * C
        xf, yf = x.reshape(-1), y.reshape(-1)
        nt = numba.config.NUMBA_NUM_THREADS
        # (row 0: the serial one's; + 1: the stride-2 loads read one float past a row)
        rbs = tls_rows("pool.rb", nt, Wb + 1)
        if state["qo"] is not None:   # y, and its int8 reader's padded words
            qw, qp, qf = qconv.consumer_words(state, state["qo"], N, C, OH, OW, calls)
            G = N * int(qp[1])
            args = (C, H, W, OH, OW, kh, kw, sh, sw, pt, pl, dh, dw, _mode(True), inv[0],
                    inv[1])
            qb = qw.view(np.uint8)
            emit_split(calls, P * OH * (kh * W + kw * OW),
                       (_pool_q_par, (xf, yf, G) + args + (rbs, qb, qp, qf)),
                       (_pool_q_groups, (xf, yf, 0, G) + args + (rbs[0], qb, qp, qf)))
            return
        emit_split(calls, P * OH * (kh * W + kw * OW),
                   (_pool_par, (xf, yf, P, H, W, OH, OW, kh, kw, sh, sw, pt, pl, dh, dw,
                                _mode(self.is_max), inv[0], inv[1], rbs)),
                   (_pool_planes, (xf, yf, 0, P, H, W, OH, OW, kh, kw, sh, sw, pt, pl, dh, dw,
                                   _mode(self.is_max), inv[0], inv[1], rbs[0])))


class MaxPool(_Pool):
    is_max = True


class AveragePool(_Pool):
    is_max = False


@njit(fastmath=FM, boundscheck=False)
def _gpool_planes(x, y, p0, p1, is_max):
    """x (P, L) -> y[p] = mean or max of row p, for p in p0..p1."""
    L = x.shape[1]
    for p in range(p0, p1):
        xr = x[p]
        if is_max:
            m = np.float32(-np.inf)
            for i in range(L):
                v = xr[i]
                m = v if (v > m or v != v) else m
            y[p] = m
        else:
            s = np.float32(0)
            for i in range(L):
                s += xr[i]
            y[p] = s / np.float32(L)


@pjit(fastmath=FM, boundscheck=False)
def _gpool_par(x, y, is_max):
    P = x.shape[0]
    CH = 16
    for t in prange((P + CH - 1) // CH):
        _gpool_planes(x, y, t * CH, min(P, (t + 1) * CH), is_max)


class GlobalAveragePool(RecordedOp):
    is_max = False

    def prepare(self, node, consts, policy):
        return None

    def exec(self, node, state, inputs, outputs, calls=None):
        x = inputs[0]
        P = x.shape[0] * x.shape[1]
        x2 = x.reshape(P, -1)
        y1 = outputs[0].reshape(-1)
        emit_split(calls, x.size, (_gpool_par, (x2, y1, self.is_max)),
                   (_gpool_planes, (x2, y1, 0, P, self.is_max)))


class GlobalMaxPool(GlobalAveragePool):
    is_max = True
