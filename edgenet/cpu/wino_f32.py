"""Winograd F(2x2, 3x3) for dense float32 3x3 stride-1 convs (ResNet-style 56x56 and 28x28
maps): 16 multiplies per 2x2 outputs and input channel instead of 36.

A job is one row of 2x2 output tiles of one image, on one thread, in three steps that stay
in the thread's L2 (no tensor-sized intermediates):

1. input transform: for every input channel, the 4x4 input patches of the row's tiles
   (16 tiles per vector, columns split into even/odd lanes, padding loaded as zeros)
   become V[xi, c, tile] = (B^T d B)[xi], xi < 16;
2. 16 products M[xi] = U[xi]^T V[xi] (U = G g G^T per filter, (16, C, K)): 16 vector
   accumulators, a broadcast weight times a vector of 16 tiles (8 output channels x 2
   vectors, or 16 x 1);
3. output transform A^T M A per output channel and vector of tiles, plus the bias, the
   residual and Relu / Clip, interleaved back into two output rows (masked at the edges).

Tiles per row are padded to a multiple of 16 (TWp): 28 tiles (a 56-wide map) use 32 lanes,
14 (28-wide) 16; rows of 5-8 tiles go two to a vector (lanes 0-7 and 8-15). The filter
transform's 0.5 factors keep U exact in float32 for ternary levels; the sums are reordered
against a direct conv (float32 rounding differences only).
"""
from __future__ import annotations

import numba
import numpy as np
from numba import prange

from ..activation import ActCode
from .._jit import njit, pjit
from ._common import FM, emit, tls_rows
from . import simd

FZERO = np.float32(0)
WINO_ON = True          # False: every conv takes the direct kernels (A/B)
# the maps it runs on: tiles per row (ceil(OW / 2)) in [MIN_TW, 32]; C, K multiples of 16
MIN_TW = 5
# filters of at most this many bytes (16 * C * K floats, read once per job): ResNet-18's
# 256-channel 14x14 convs (4 MB) ran 0.58-0.65 ms in the model against the direct tiles'
# 0.49 (in isolation, their filters kept in the cache, 0.35 vs 0.47); 128 channels (1 MB)
# 0.37-0.40 against 0.49
U_MAX = 1 << 20
_G = np.array([[1, 0, 0], [.5, .5, .5], [.5, -.5, .5], [0, 0, 1]], np.float64)


def filters(wf, O, C):
    """(O, C*9) float32 filters -> U (16, C, O) float32, U[i*4+j] = (G g G^T)[i, j]."""
    g = wf.reshape(O, C, 3, 3).astype(np.float64)
    u = np.einsum("ia,ocab,jb->ijco", _G, g, _G)
    return np.ascontiguousarray(u.reshape(16, C, O), dtype=np.float32)


def use(st, xshape, yshape, has_r, code) -> bool:
    """Winograd runs this conv: dense float32 3x3 stride 1, dilation 1, same-size output
    (pads 1), C and K multiples of 16, MIN_TW <= ceil(OW/2) <= 32, filters of at most
    U_MAX bytes, no blocked hand-off to a depthwise kernel (the caller checks the padded
    one), an activation it has (none, Relu, Clip)."""
    if not WINO_ON or st.simd is None or st.simd[0] != 16:
        return False
    sh, sw, pt, pl, pb, pr, dh, dw, g = st.params
    if (st.KH, st.KW, sh, sw, dh, dw, g) != (3, 3, 1, 1, 1, 1, 1) or (pt, pl, pb, pr) != (1,) * 4:
        return False
    if st.bo is not None or st.bi2 is not None:
        return False
    if code not in (ActCode.NONE, ActCode.RELU, ActCode.CLIP):
        return False
    N, C, H, W = xshape
    O = yshape[1]
    tw = (yshape[3] + 1) // 2
    return (C % 16 == 0 and O % 16 == 0 and MIN_TW <= tw <= 32 and yshape[2] >= 2
            and 64 * C * O <= U_MAX)


@njit(fastmath=FM, boundscheck=False, inline="always")
def _gemm_8x2(U, Vb, Mb, C, K, TWp, xi, k0):
    """M[xi, k0:k0+8, 2 vectors] = sum over c of U[xi, c, k] * V[xi, c, :]."""
    z = simd.vsplat16(FZERO)
    a0_0 = a0_1 = a1_0 = a1_1 = a2_0 = a2_1 = a3_0 = a3_1 = z
    a4_0 = a4_1 = a5_0 = a5_1 = a6_0 = a6_1 = a7_0 = a7_1 = z
    ub = xi * C * K + k0
    vb = xi * C * TWp
    for c in range(C):
        v0 = simd.vld16(Vb, vb)
        v1 = simd.vld16(Vb, vb + 16)
        w = simd.vbc16(U, ub)
        a0_0 = simd.vfma16(w, v0, a0_0)
        a0_1 = simd.vfma16(w, v1, a0_1)
        w = simd.vbc16(U, ub + 1)
        a1_0 = simd.vfma16(w, v0, a1_0)
        a1_1 = simd.vfma16(w, v1, a1_1)
        w = simd.vbc16(U, ub + 2)
        a2_0 = simd.vfma16(w, v0, a2_0)
        a2_1 = simd.vfma16(w, v1, a2_1)
        w = simd.vbc16(U, ub + 3)
        a3_0 = simd.vfma16(w, v0, a3_0)
        a3_1 = simd.vfma16(w, v1, a3_1)
        w = simd.vbc16(U, ub + 4)
        a4_0 = simd.vfma16(w, v0, a4_0)
        a4_1 = simd.vfma16(w, v1, a4_1)
        w = simd.vbc16(U, ub + 5)
        a5_0 = simd.vfma16(w, v0, a5_0)
        a5_1 = simd.vfma16(w, v1, a5_1)
        w = simd.vbc16(U, ub + 6)
        a6_0 = simd.vfma16(w, v0, a6_0)
        a6_1 = simd.vfma16(w, v1, a6_1)
        w = simd.vbc16(U, ub + 7)
        a7_0 = simd.vfma16(w, v0, a7_0)
        a7_1 = simd.vfma16(w, v1, a7_1)
        ub += K
        vb += TWp
    mb = (xi * K + k0) * TWp
    simd.vst16(Mb, mb + 0 * TWp + 0, a0_0)
    simd.vst16(Mb, mb + 0 * TWp + 16, a0_1)
    simd.vst16(Mb, mb + 1 * TWp + 0, a1_0)
    simd.vst16(Mb, mb + 1 * TWp + 16, a1_1)
    simd.vst16(Mb, mb + 2 * TWp + 0, a2_0)
    simd.vst16(Mb, mb + 2 * TWp + 16, a2_1)
    simd.vst16(Mb, mb + 3 * TWp + 0, a3_0)
    simd.vst16(Mb, mb + 3 * TWp + 16, a3_1)
    simd.vst16(Mb, mb + 4 * TWp + 0, a4_0)
    simd.vst16(Mb, mb + 4 * TWp + 16, a4_1)
    simd.vst16(Mb, mb + 5 * TWp + 0, a5_0)
    simd.vst16(Mb, mb + 5 * TWp + 16, a5_1)
    simd.vst16(Mb, mb + 6 * TWp + 0, a6_0)
    simd.vst16(Mb, mb + 6 * TWp + 16, a6_1)
    simd.vst16(Mb, mb + 7 * TWp + 0, a7_0)
    simd.vst16(Mb, mb + 7 * TWp + 16, a7_1)


@njit(fastmath=FM, boundscheck=False, inline="always")
def _gemm_16x1(U, Vb, Mb, C, K, TWp, xi, k0):
    """M[xi, k0:k0+16, 1 vectors] = sum over c of U[xi, c, k] * V[xi, c, :]."""
    z = simd.vsplat16(FZERO)
    a0_0 = a1_0 = a2_0 = a3_0 = a4_0 = a5_0 = a6_0 = a7_0 = z
    a8_0 = a9_0 = a10_0 = a11_0 = a12_0 = a13_0 = a14_0 = a15_0 = z
    ub = xi * C * K + k0
    vb = xi * C * TWp
    for c in range(C):
        v0 = simd.vld16(Vb, vb)
        w = simd.vbc16(U, ub)
        a0_0 = simd.vfma16(w, v0, a0_0)
        w = simd.vbc16(U, ub + 1)
        a1_0 = simd.vfma16(w, v0, a1_0)
        w = simd.vbc16(U, ub + 2)
        a2_0 = simd.vfma16(w, v0, a2_0)
        w = simd.vbc16(U, ub + 3)
        a3_0 = simd.vfma16(w, v0, a3_0)
        w = simd.vbc16(U, ub + 4)
        a4_0 = simd.vfma16(w, v0, a4_0)
        w = simd.vbc16(U, ub + 5)
        a5_0 = simd.vfma16(w, v0, a5_0)
        w = simd.vbc16(U, ub + 6)
        a6_0 = simd.vfma16(w, v0, a6_0)
        w = simd.vbc16(U, ub + 7)
        a7_0 = simd.vfma16(w, v0, a7_0)
        w = simd.vbc16(U, ub + 8)
        a8_0 = simd.vfma16(w, v0, a8_0)
        w = simd.vbc16(U, ub + 9)
        a9_0 = simd.vfma16(w, v0, a9_0)
        w = simd.vbc16(U, ub + 10)
        a10_0 = simd.vfma16(w, v0, a10_0)
        w = simd.vbc16(U, ub + 11)
        a11_0 = simd.vfma16(w, v0, a11_0)
        w = simd.vbc16(U, ub + 12)
        a12_0 = simd.vfma16(w, v0, a12_0)
        w = simd.vbc16(U, ub + 13)
        a13_0 = simd.vfma16(w, v0, a13_0)
        w = simd.vbc16(U, ub + 14)
        a14_0 = simd.vfma16(w, v0, a14_0)
        w = simd.vbc16(U, ub + 15)
        a15_0 = simd.vfma16(w, v0, a15_0)
        ub += K
        vb += TWp
    mb = (xi * K + k0) * TWp
    simd.vst16(Mb, mb + 0 * TWp + 0, a0_0)
    simd.vst16(Mb, mb + 1 * TWp + 0, a1_0)
    simd.vst16(Mb, mb + 2 * TWp + 0, a2_0)
    simd.vst16(Mb, mb + 3 * TWp + 0, a3_0)
    simd.vst16(Mb, mb + 4 * TWp + 0, a4_0)
    simd.vst16(Mb, mb + 5 * TWp + 0, a5_0)
    simd.vst16(Mb, mb + 6 * TWp + 0, a6_0)
    simd.vst16(Mb, mb + 7 * TWp + 0, a7_0)
    simd.vst16(Mb, mb + 8 * TWp + 0, a8_0)
    simd.vst16(Mb, mb + 9 * TWp + 0, a9_0)
    simd.vst16(Mb, mb + 10 * TWp + 0, a10_0)
    simd.vst16(Mb, mb + 11 * TWp + 0, a11_0)
    simd.vst16(Mb, mb + 12 * TWp + 0, a12_0)
    simd.vst16(Mb, mb + 13 * TWp + 0, a13_0)
    simd.vst16(Mb, mb + 14 * TWp + 0, a14_0)
    simd.vst16(Mb, mb + 15 * TWp + 0, a15_0)


@njit(fastmath=FM, boundscheck=False, inline="always")
def _cols(xf, rs, c, W, ok):
    """B^T over the columns of one input row for 16 tiles (lane l: x[c + 2l + j], j < 4,
    zero outside [0, W) or where not ok): (d0 - d2, d1 + d2, d2 - d1, d1 - d3)."""
    if ok:
        lo0, hi0 = max(0, -c), min(16, W - c)
        lo1, hi1 = max(0, -c - 16), min(16, W - c - 16)
        lo2, hi2 = max(0, -c - 32), min(2, W - c - 32)
    else:
        lo0 = hi0 = lo1 = hi1 = lo2 = hi2 = 0
    v0 = simd.vldz16(xf, rs + c, lo0, hi0)
    v1 = simd.vldz16(xf, rs + c + 16, lo1, hi1)
    v2 = simd.vldz16(xf, rs + c + 32, lo2, hi2)
    e = simd.vevens16(v0, v1)
    o = simd.vodds16(v0, v1)
    e2 = simd.vnext16(e, v2)
    o2 = simd.vnexto16(o, v2)
    return simd.vsub16(e, e2), simd.vadd16(o, e2), simd.vsub16(e2, o), simd.vsub16(o, o2)


@njit(fastmath=FM, boundscheck=False, inline="always")
def _patches(xf, pb, iy, H, W, c):
    """B^T d B of 16 tiles whose 4 x 4 patches start at row iy, column c of the plane at
    xf[pb:] (rows / columns outside it read as zeros): 16 vectors, xi = i * 4 + j."""
    a0, a1, a2, a3 = _cols(xf, pb + min(max(iy, 0), H - 1) * W, c, W, 0 <= iy < H)
    b0, b1, b2, b3 = _cols(xf, pb + min(max(iy + 1, 0), H - 1) * W, c, W, 0 <= iy + 1 < H)
    c0, c1, c2, c3 = _cols(xf, pb + min(max(iy + 2, 0), H - 1) * W, c, W, 0 <= iy + 2 < H)
    d0, d1, d2, d3 = _cols(xf, pb + min(max(iy + 3, 0), H - 1) * W, c, W, 0 <= iy + 3 < H)
    return (simd.vsub16(a0, c0), simd.vsub16(a1, c1), simd.vsub16(a2, c2),
            simd.vsub16(a3, c3), simd.vadd16(b0, c0), simd.vadd16(b1, c1),
            simd.vadd16(b2, c2), simd.vadd16(b3, c3), simd.vsub16(c0, b0),
            simd.vsub16(c1, b1), simd.vsub16(c2, b2), simd.vsub16(c3, b3),
            simd.vsub16(b0, d0), simd.vsub16(b1, d1), simd.vsub16(b2, d2),
            simd.vsub16(b3, d3))


@njit(fastmath=FM, boundscheck=False)
def _in_transform(xf, n, ty, C, H, W, TWp, pair, Vb):
    """V[xi, c, :] of tile row ty (image n), all input channels (layout (16, C, TWp)); pair:
    tile rows ty and ty + 1 (at most 8 tiles each) in lanes 0-7 and 8-15."""
    s = C * TWp
    iy = 2 * ty - 1
    for ci in range(C):
        pb = (n * C + ci) * H * W
        for v in range(TWp // 16):
            t = _patches(xf, pb, iy, H, W, 32 * v - 1)
            i = ci * TWp + 16 * v
            if pair:
                u = _patches(xf, pb, iy + 2, H, W, -1)
                simd.vst16(Vb, i + 0 * s, simd.vcat8_16(t[0], u[0]))
                simd.vst16(Vb, i + 1 * s, simd.vcat8_16(t[1], u[1]))
                simd.vst16(Vb, i + 2 * s, simd.vcat8_16(t[2], u[2]))
                simd.vst16(Vb, i + 3 * s, simd.vcat8_16(t[3], u[3]))
                simd.vst16(Vb, i + 4 * s, simd.vcat8_16(t[4], u[4]))
                simd.vst16(Vb, i + 5 * s, simd.vcat8_16(t[5], u[5]))
                simd.vst16(Vb, i + 6 * s, simd.vcat8_16(t[6], u[6]))
                simd.vst16(Vb, i + 7 * s, simd.vcat8_16(t[7], u[7]))
                simd.vst16(Vb, i + 8 * s, simd.vcat8_16(t[8], u[8]))
                simd.vst16(Vb, i + 9 * s, simd.vcat8_16(t[9], u[9]))
                simd.vst16(Vb, i + 10 * s, simd.vcat8_16(t[10], u[10]))
                simd.vst16(Vb, i + 11 * s, simd.vcat8_16(t[11], u[11]))
                simd.vst16(Vb, i + 12 * s, simd.vcat8_16(t[12], u[12]))
                simd.vst16(Vb, i + 13 * s, simd.vcat8_16(t[13], u[13]))
                simd.vst16(Vb, i + 14 * s, simd.vcat8_16(t[14], u[14]))
                simd.vst16(Vb, i + 15 * s, simd.vcat8_16(t[15], u[15]))
            else:
                simd.vst16(Vb, i + 0 * s, t[0])
                simd.vst16(Vb, i + 1 * s, t[1])
                simd.vst16(Vb, i + 2 * s, t[2])
                simd.vst16(Vb, i + 3 * s, t[3])
                simd.vst16(Vb, i + 4 * s, t[4])
                simd.vst16(Vb, i + 5 * s, t[5])
                simd.vst16(Vb, i + 6 * s, t[6])
                simd.vst16(Vb, i + 7 * s, t[7])
                simd.vst16(Vb, i + 8 * s, t[8])
                simd.vst16(Vb, i + 9 * s, t[9])
                simd.vst16(Vb, i + 10 * s, t[10])
                simd.vst16(Vb, i + 11 * s, t[11])
                simd.vst16(Vb, i + 12 * s, t[12])
                simd.vst16(Vb, i + 13 * s, t[13])
                simd.vst16(Vb, i + 14 * s, t[14])
                simd.vst16(Vb, i + 15 * s, t[15])


@njit(fastmath=FM, boundscheck=False, inline="always")
def _colsum(Mb, i, s):
    """(m0 + m1 + m2, m1 - m2 - m3) of the 4 vectors at Mb[i + j * s]."""
    m0 = simd.vld16(Mb, i)
    m1 = simd.vld16(Mb, i + s)
    m2 = simd.vld16(Mb, i + 2 * s)
    m3 = simd.vld16(Mb, i + 3 * s)
    return simd.vadd16(simd.vadd16(m0, m1), m2), simd.vsub16(simd.vsub16(m1, m2), m3)


@njit(fastmath=FM, boundscheck=False, inline="always")
def _emit(yf, rf, has_r, i, cnt, v, code, lo, hi):
    if cnt <= 0:
        return
    if has_r:
        v = simd.vadd16(v, simd.vldm16(rf, i, cnt))
    if code == ActCode.RELU:
        v = simd.vrelu16(v)
    elif code == ActCode.CLIP:
        v = simd.vclip16(v, lo, hi)
    simd.vstm16(yf, i, v, cnt)


@njit(fastmath=FM, boundscheck=False)
def _out_transform(Mb, bp, yf, rf, has_r, code, alpha, beta, n, ty, K, OH, OW, TWp, pair):
    """y rows 2ty, 2ty + 1 (pair: to 2ty + 3, the second tile row in lanes 8-15) of every
    output channel from M (layout (16, K, TWp))."""
    s = K * TWp
    lo = simd.vsplat16(alpha)
    hi = simd.vsplat16(beta)
    oy = 2 * ty
    for k in range(K):
        bk = simd.vsplat16(bp[k])
        yb = ((n * K + k) * OH + oy) * OW
        for v in range(TWp // 16):
            i = k * TWp + 16 * v
            s00, s01 = _colsum(Mb, i, s)
            s10, s11 = _colsum(Mb, i + 4 * s, s)
            s20, s21 = _colsum(Mb, i + 8 * s, s)
            s30, s31 = _colsum(Mb, i + 12 * s, s)
            o00 = simd.vadd16(simd.vadd16(simd.vadd16(s00, s10), s20), bk)
            o01 = simd.vadd16(simd.vadd16(simd.vadd16(s01, s11), s21), bk)
            o10 = simd.vadd16(simd.vsub16(simd.vsub16(s10, s20), s30), bk)
            o11 = simd.vadd16(simd.vsub16(simd.vsub16(s11, s21), s31), bk)
            ox = 32 * v
            c0 = min(16, OW - ox)
            if pair:     # lanes 0-7: rows oy, oy + 1; lanes 8-15: rows oy + 2, oy + 3
                _emit(yf, rf, has_r, yb, c0, simd.vilo16(o00, o01), code, lo, hi)
                if oy + 1 < OH:
                    _emit(yf, rf, has_r, yb + OW, c0, simd.vilo16(o10, o11), code, lo, hi)
                if oy + 2 < OH:
                    _emit(yf, rf, has_r, yb + 2 * OW, c0, simd.vihi16(o00, o01), code, lo, hi)
                if oy + 3 < OH:
                    _emit(yf, rf, has_r, yb + 3 * OW, c0, simd.vihi16(o10, o11), code, lo, hi)
                continue
            c1 = min(16, OW - ox - 16)
            _emit(yf, rf, has_r, yb + ox, c0, simd.vilo16(o00, o01), code, lo, hi)
            _emit(yf, rf, has_r, yb + ox + 16, c1, simd.vihi16(o00, o01), code, lo, hi)
            if oy + 1 < OH:
                _emit(yf, rf, has_r, yb + OW + ox, c0, simd.vilo16(o10, o11), code, lo, hi)
                _emit(yf, rf, has_r, yb + OW + ox + 16, c1, simd.vihi16(o10, o11), code, lo,
                      hi)


@njit(fastmath=FM, boundscheck=False)
def _products(U, Vb, Mb, C, K, TWp):
    for xi in range(16):
        if TWp == 32:
            for k0 in range(0, K, 8):
                _gemm_8x2(U, Vb, Mb, C, K, TWp, xi, k0)
        else:
            for k0 in range(0, K, 16):
                _gemm_16x1(U, Vb, Mb, C, K, TWp, xi, k0)


@pjit(fastmath=FM, boundscheck=False)
def _wino_par(xf, U, bp, yf, rf, has_r, code, alpha, beta, N, C, H, W, K, OH, OW, TWp, vbs,
              mbs):
    TH = (OH + 1) // 2
    pair = (OW + 1) // 2 <= 8       # two tile rows per vector
    R = 2 if pair else 1
    J = -(-TH // R)                 # jobs per image
    for j in prange(N * J):
        t = numba.get_thread_id()
        n = j // J
        ty = (j % J) * R
        _in_transform(xf, n, ty, C, H, W, TWp, pair, vbs[t])
        _products(U, vbs[t], mbs[t], C, K, TWp)
        _out_transform(mbs[t], bp, yf, rf, has_r, code, alpha, beta, n, ty, K, OH, OW, TWp,
                       pair)


def run(x, y, st, bp, r, has_r, code, alpha, beta, calls=None):
    """y = the conv of x (use() said yes): Winograd F(2x2, 3x3), jobs of one tile row (two
    where a row has at most 8 tiles)."""
    N, C, H, W = x.shape
    K, OH, OW = y.shape[1], y.shape[2], y.shape[3]
    if st.wino is None:
        from .conv import dense_f
        st.wino = filters(dense_f(st), st.O, C).reshape(-1)
    TWp = 16 * -(-((OW + 1) // 2) // 16)
    nt = numba.config.NUMBA_NUM_THREADS
    vbs = tls_rows("wino.v", nt, 16 * C * TWp)
    mbs = tls_rows("wino.m", nt, 16 * K * TWp)
    emit(calls, _wino_par, x.reshape(-1), st.wino, bp, y.reshape(-1), r.reshape(-1), has_r,
         code, alpha, beta, N, C, H, W, K, OH, OW, TWp, vbs, mbs)


def warm(L):
    """Compile (or load) the kernel at run()'s argument types (edgenet warmup)."""
    if L != 16:
        return
    C = K = 16
    H, W = 4, 20
    x = np.zeros(C * H * W, np.float32)
    U = np.zeros(16 * C * K, np.float32)
    nt = numba.config.NUMBA_NUM_THREADS
    _wino_par(x, U, np.zeros(K, np.float32), x.copy(), x.copy(), False, 1, np.float32(0),
              np.float32(6), 1, C, H, W, K, H, W, 16, np.zeros((nt, 16 * C * 16), np.float32),
              np.zeros((nt, 16 * K * 16), np.float32))
