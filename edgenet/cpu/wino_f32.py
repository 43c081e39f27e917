"""Winograd F(2x2, 3x3) for dense float32 3x3 stride-1 convs (ResNet-style 56x56 and 28x28
maps): 16 multiplies per 2x2 outputs and input channel instead of 36.

A job is one row of 2x2 output tiles of one image, on one thread, in three steps that stay
in the thread's L2 (no tensor-sized intermediates):

1. input transform: for every input channel, the 4x4 input patches of the row's tiles
   (L tiles per vector, columns split into even/odd lanes, padding loaded as zeros)
   become V[xi, c, tile] = (B^T d B)[xi], xi < 16;
2. 16 products M[xi] = U[xi]^T V[xi] (U = G g G^T per filter, (16, C, K)): a broadcast
   weight times a vector of L tiles into register accumulators (16 lanes: 8 output
   channels x 2 vectors, or 16 x 1; 8 lanes (AVX2: 16 registers): 4 x 2 or 8 x 1);
3. output transform A^T M A per output channel and vector of tiles, plus the bias, the
   residual and Relu / Clip, interleaved back into two output rows (masked at the edges).

Above GROUP_U bytes of U a job takes every tile row of the image and a share of the output
channels instead (``jobs``), so that each job reads its part of U once.

Tiles per row are padded to a multiple of L (TWp): 28 tiles (a 56-wide map) use 32 lanes,
14 (28-wide) 16, 7 (14-wide) 8 on 8 lanes; rows of at most L/2 tiles go two to a vector
(lanes 0..L/2-1 and L/2..L-1). The filter transform's 0.5 factors keep U exact in float32
for ternary levels; the sums are reordered against a direct conv (float32 rounding
differences only).

The kernels of both lane counts come from one source (``_SRC``, lane tokens replaced;
``_gen``), compiled in this module with ``compile(src, __file__)`` at a fixed line offset
per lane count, so Numba's disk cache keeps them across processes (as gen_simd_conv does).
"""
from __future__ import annotations

import numba
import numpy as np
from numba import prange  # noqa: F401  (used by the generated kernels)

from ..activation import ActCode  # noqa: F401  (used by the generated kernels)
from .._jit import njit, pjit  # noqa: F401  (used by the generated kernels)
from ._common import FM, emit, line_aligned, tls_rows  # noqa: F401  (FM: generated kernels)
from . import simd

FZERO = np.float32(0)
WINO_ON = True          # False: every conv takes the direct kernels (A/B)
# the maps it runs on: tiles per row (ceil(OW / 2)) in [MIN_TW, 32]; C, K multiples of 16
MIN_TW = 5
# filters of at most this many bytes (16 * C * K floats) per lane count. ResNet-18's
# 256-channel 14x14 convs (4 MB of U; the model's float32 weights, 47 MB, do not stay in
# a 32 MB L3, so U comes from memory every run): 16 lanes 1.007x the model's time with
# them on (0.35 vs 0.49 ms per conv in isolation, U cache-hot), 8 lanes 0.958x
U_MAX = {16: 1 << 20, 8: 1 << 22}
# filters above this many bytes: jobs of every tile row and a share of the output channels
# (``jobs``), so that each job reads its part of U once (16 lanes, jobs of one tile row
# pair each: 1.086x the model's time with those convs on, against 1.007x)
GROUP_U = 1 << 20
TIERS = ("avx512vnni", "avx512", "avx2")   # masked loads and stores in hardware
_G = np.array([[1, 0, 0], [.5, .5, .5], [.5, -.5, .5], [0, 0, 1]], np.float64)


def filters(wf, O, C):
    """(O, C*9) float32 filters -> U (16, C, O) float32, U[i*4+j] = (G g G^T)[i, j], on a
    cache line (``line_aligned``)."""
    g = wf.reshape(O, C, 3, 3).astype(np.float64)
    u = np.einsum("ia,ocab,jb->ijco", _G, g, _G)
    return line_aligned(u.reshape(16, C, O), np.float32)


def use(st, xshape, yshape, has_r, code) -> bool:
    """Winograd runs this conv: dense float32 3x3 stride 1, dilation 1, same-size output
    (pads 1), C and K multiples of 16, MIN_TW <= ceil(OW/2) <= 32, filters of at most
    U_MAX bytes, no blocked hand-off to a depthwise kernel (the caller checks the padded
    one), an activation it has (none, Relu, Clip), a tier in TIERS."""
    if not WINO_ON or st.simd is None or simd.simd_mode() not in TIERS:
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
            and 64 * C * O <= U_MAX.get(st.simd[0], 0))


def _gemm(kb, nv, L):
    """Source of M[xi, k0:k0+kb, t0 : t0 + nv*L] = sum over c of U[xi, c, k] V[xi, c, :]."""
    accs = [f"a{k}_{v}" for k in range(kb) for v in range(nv)]
    out = ['@njit(fastmath=FM, boundscheck=False, inline="always")',
           f"def _gemm_{kb}x{nv}_l{L}(U, Vb, Mb, C, K, TWp, xi, k0, t0):",
           f"    z = simd.vsplat{L}(FZERO)"]
    for i in range(0, len(accs), 8):
        out.append("    " + " = ".join(accs[i:i + 8]) + " = z")
    out += ["    ub = xi * C * K + k0", "    vb = xi * C * TWp + t0", "    for c in range(C):"]
    out += [f"        v{v} = simd.vld{L}(Vb, vb + {L * v})" for v in range(nv)]
    for k in range(kb):
        out.append(f"        w = simd.vbc{L}(U, ub + {k})")
        out += [f"        a{k}_{v} = simd.vfma{L}(w, v{v}, a{k}_{v})" for v in range(nv)]
    out += ["        ub += K", "        vb += TWp", "    mb = (xi * K + k0) * TWp + t0"]
    out += [f"    simd.vst{L}(Mb, mb + {k} * TWp + {L * v}, a{k}_{v})"
            for k in range(kb) for v in range(nv)]
    return "\n".join(out) + "\n\n\n"


_SRC = '''
@njit(fastmath=FM, boundscheck=False, inline="always")
def _cols_L(xf, rs, c, W, ok):
    """B^T over the columns of one input row for L tiles (lane l: x[c + 2l + j], j < 4,
    zero outside [0, W) or where not ok): (d0 - d2, d1 + d2, d2 - d1, d1 - d3)."""
    if ok:
        lo0, hi0 = max(0, -c), min(@L, W - c)
        lo1, hi1 = max(0, -c - @L), min(@L, W - c - @L)
        lo2, hi2 = max(0, -c - @2L), min(2, W - c - @2L)
    else:
        lo0 = hi0 = lo1 = hi1 = lo2 = hi2 = 0
    v0 = simd.vldz@L(xf, rs + c, lo0, hi0)
    v1 = simd.vldz@L(xf, rs + c + @L, lo1, hi1)
    v2 = simd.vldz@L(xf, rs + c + @2L, lo2, hi2)
    e = simd.vevens@L(v0, v1)
    o = simd.vodds@L(v0, v1)
    e2 = simd.vnext@L(e, v2)
    o2 = simd.vnexto@L(o, v2)
    return simd.vsub@L(e, e2), simd.vadd@L(o, e2), simd.vsub@L(e2, o), simd.vsub@L(o, o2)


@njit(fastmath=FM, boundscheck=False, inline="always")
def _patches_L(xf, pb, iy, H, W, c):
    """B^T d B of L tiles whose 4 x 4 patches start at row iy, column c of the plane at
    xf[pb:] (rows / columns outside it read as zeros): 16 vectors, xi = i * 4 + j."""
    a0, a1, a2, a3 = _cols_L(xf, pb + min(max(iy, 0), H - 1) * W, c, W, 0 <= iy < H)
    b0, b1, b2, b3 = _cols_L(xf, pb + min(max(iy + 1, 0), H - 1) * W, c, W, 0 <= iy + 1 < H)
    c0, c1, c2, c3 = _cols_L(xf, pb + min(max(iy + 2, 0), H - 1) * W, c, W, 0 <= iy + 2 < H)
    d0, d1, d2, d3 = _cols_L(xf, pb + min(max(iy + 3, 0), H - 1) * W, c, W, 0 <= iy + 3 < H)
    return (simd.vsub@L(a0, c0), simd.vsub@L(a1, c1), simd.vsub@L(a2, c2),
            simd.vsub@L(a3, c3), simd.vadd@L(b0, c0), simd.vadd@L(b1, c1),
            simd.vadd@L(b2, c2), simd.vadd@L(b3, c3), simd.vsub@L(c0, b0),
            simd.vsub@L(c1, b1), simd.vsub@L(c2, b2), simd.vsub@L(c3, b3),
            simd.vsub@L(b0, d0), simd.vsub@L(b1, d1), simd.vsub@L(b2, d2),
            simd.vsub@L(b3, d3))


@njit(fastmath=FM, boundscheck=False)
def _in_transform_L(xf, n, ty0, nu, R, C, H, W, TWp, pair, Wd, Vb):
    """V[xi, c, :] of nu units (tile rows, or pairs of them: R = 2) from tile row ty0 of
    image n, all input channels (layout (16, C, Wd), TWp lanes per unit); pair: tile rows
    ty and ty + 1 (at most L/2 tiles each) in the low and high half lanes."""
    s = C * Wd
    for ci in range(C):
        pb = (n * C + ci) * H * W
        for u in range(nu):
            iy = 2 * (ty0 + u * R) - 1
            for v in range(TWp // @L):
                t = _patches_L(xf, pb, iy, H, W, @2L * v - 1)
                i = ci * Wd + u * TWp + @L * v
                if pair:
                    u2 = _patches_L(xf, pb, iy + 2, H, W, -1)
@PAIRSTORES
                else:
@STORES


@njit(fastmath=FM, boundscheck=False, inline="always")
def _colsum_L(Mb, i, s):
    """(m0 + m1 + m2, m1 - m2 - m3) of the 4 vectors at Mb[i + j * s]."""
    m0 = simd.vld@L(Mb, i)
    m1 = simd.vld@L(Mb, i + s)
    m2 = simd.vld@L(Mb, i + 2 * s)
    m3 = simd.vld@L(Mb, i + 3 * s)
    return simd.vadd@L(simd.vadd@L(m0, m1), m2), simd.vsub@L(simd.vsub@L(m1, m2), m3)


@njit(fastmath=FM, boundscheck=False, inline="always")
def _emit_L(yf, rf, has_r, i, cnt, v, code, lo, hi):
    if cnt <= 0:
        return
    if has_r:
        v = simd.vadd@L(v, simd.vldm@L(rf, i, cnt))
    if code == ActCode.RELU:
        v = simd.vrelu@L(v)
    elif code == ActCode.CLIP:
        v = simd.vclip@L(v, lo, hi)
    simd.vstm@L(yf, i, v, cnt)


@njit(fastmath=FM, boundscheck=False)
def _out_transform_L(Mb, bp, yf, rf, has_r, code, alpha, beta, n, ty0, nu, R, K, k0, k1, OH,
                     OW, TWp, Wd, pair):
    """Output channels k0..k1 of the nu units from tile row ty0: y rows 2ty, 2ty + 1 per
    tile row ty (pair: to 2ty + 3, the second tile row in the high half lanes), from M
    (layout (16, K, Wd))."""
    s = K * Wd
    lo = simd.vsplat@L(alpha)
    hi = simd.vsplat@L(beta)
    for k in range(k0, k1):
        bk = simd.vsplat@L(bp[k])
        for u in range(nu):
            oy = 2 * (ty0 + u * R)
            for v in range(TWp // @L):
                _out_vec_L(Mb, k * Wd + u * TWp + @L * v, s, bk, yf, rf, has_r, code, lo, hi,
                           ((n * K + k) * OH + oy) * OW, oy, @2L * v, OH, OW, pair)


@njit(fastmath=FM, boundscheck=False, inline="always")
def _out_vec_L(Mb, i, s, bk, yf, rf, has_r, code, lo, hi, yb, oy, ox, OH, OW, pair):
    """A^T M A of one vector of tiles at Mb[i] (xi stride s), plus the bias: output rows
    oy, oy + 1 (pair: to oy + 3) from column ox, row oy at yf[yb]."""
    s00, s01 = _colsum_L(Mb, i, s)
    s10, s11 = _colsum_L(Mb, i + 4 * s, s)
    s20, s21 = _colsum_L(Mb, i + 8 * s, s)
    s30, s31 = _colsum_L(Mb, i + 12 * s, s)
    o00 = simd.vadd@L(simd.vadd@L(simd.vadd@L(s00, s10), s20), bk)
    o01 = simd.vadd@L(simd.vadd@L(simd.vadd@L(s01, s11), s21), bk)
    o10 = simd.vadd@L(simd.vsub@L(simd.vsub@L(s10, s20), s30), bk)
    o11 = simd.vadd@L(simd.vsub@L(simd.vsub@L(s11, s21), s31), bk)
    c0 = min(@L, OW - ox)
    if pair:     # low half lanes: rows oy, oy + 1; high half: rows oy + 2, oy + 3
        _emit_L(yf, rf, has_r, yb, c0, simd.vilo@L(o00, o01), code, lo, hi)
        if oy + 1 < OH:
            _emit_L(yf, rf, has_r, yb + OW, c0, simd.vilo@L(o10, o11), code, lo, hi)
        if oy + 2 < OH:
            _emit_L(yf, rf, has_r, yb + 2 * OW, c0, simd.vihi@L(o00, o01), code, lo, hi)
        if oy + 3 < OH:
            _emit_L(yf, rf, has_r, yb + 3 * OW, c0, simd.vihi@L(o10, o11), code, lo, hi)
        return
    c1 = min(@L, OW - ox - @L)
    _emit_L(yf, rf, has_r, yb + ox, c0, simd.vilo@L(o00, o01), code, lo, hi)
    _emit_L(yf, rf, has_r, yb + ox + @L, c1, simd.vihi@L(o00, o01), code, lo, hi)
    if oy + 1 < OH:
        _emit_L(yf, rf, has_r, yb + OW + ox, c0, simd.vilo@L(o10, o11), code, lo, hi)
        _emit_L(yf, rf, has_r, yb + OW + ox + @L, c1, simd.vihi@L(o10, o11), code, lo, hi)


@njit(fastmath=FM, boundscheck=False)
def _products_L(U, Vb, Mb, C, K, k0, k1, Wd):
    """M[xi, k0:k1, :Wd] for every xi: vector pairs, then an odd last vector."""
    NV = Wd // @L
    for xi in range(16):
        for kb in range(k0, k1, @KB2):
            for t0 in range(0, (NV // 2) * @2L, @2L):
                _gemm_@KB2x2_L(U, Vb, Mb, C, K, Wd, xi, kb, t0)
        if NV % 2 == 1:
            for kb in range(k0, k1, @KB1):
                _gemm_@KB1x1_L(U, Vb, Mb, C, K, Wd, xi, kb, (NV - 1) * @L)


@pjit(fastmath=FM, boundscheck=False)
def wino_par_L(xf, U, bp, yf, rf, has_r, code, alpha, beta, N, C, H, W, K, OH, OW, TWp, RG, S,
               vbs, mbs):
    """Every job of the conv, in parallel: RG units (tile rows, or pairs of rows where a
    row has at most L/2 tiles) of one image and K / S of its output channels."""
    TH = (OH + 1) // 2
    pair = (OW + 1) // 2 <= @H
    R = 2 if pair else 1
    NU = -(-TH // R)                 # units per image
    G = -(-NU // RG)                 # groups of units per image
    KS = K // S
    for j in prange(N * G * S):
        t = numba.get_thread_id()
        n = j // (G * S)
        u0 = (j // S) % G * RG
        nu = min(NU, u0 + RG) - u0
        k0 = j % S * KS
        Wd = nu * TWp
        _in_transform_L(xf, n, u0 * R, nu, R, C, H, W, TWp, pair, Wd, vbs[t])
        _products_L(U, vbs[t], mbs[t], C, K, k0, k0 + KS, Wd)
        _out_transform_L(mbs[t], bp, yf, rf, has_r, code, alpha, beta, n, u0 * R, nu, R, K,
                         k0, k0 + KS, OH, OW, TWp, Wd, pair)
'''


def _gen(L):
    """The kernels' source for L lanes (16: AVX-512, 8: AVX2)."""
    kb2, kb1 = (8, 16) if L == 16 else (4, 8)
    ind = " " * 20
    pst = "\n".join(f"{ind}simd.vst{L}(Vb, i + {x} * s, simd.vcathalf{L}(t[{x}], u2[{x}]))"
                    for x in range(16))
    st = "\n".join(f"{ind}simd.vst{L}(Vb, i + {x} * s, t[{x}])" for x in range(16))
    src = _SRC.replace("@PAIRSTORES", pst).replace("@STORES", st)
    src = (src.replace("@KB2", str(kb2)).replace("@KB1", str(kb1)).replace("@2L", str(2 * L))
           .replace("@L", str(L)).replace("@H", str(L // 2)).replace("_L(", f"_l{L}(")
           .replace("_L,", f"_l{L},"))
    return _gemm(kb2, 2, L) + _gemm(kb1, 1, L) + src


# fixed line offsets (Numba's cache names a function by file, name and first line)
for _L, _base in ((16, 20_000), (8, 21_000)):
    exec(compile("\n" * _base + _gen(_L), __file__, "exec"), globals())
KERNELS = {16: wino_par_l16, 8: wino_par_l8}  # noqa: F821  (defined by the exec above)


def jobs(C, K, OH, OW, L, nt):
    """(RG, S): units (tile rows, or pairs) per job and output-channel splits. Large maps:
    one unit per job, every output channel (the filters, at most GROUP_U bytes, stream
    from L2 per job). Larger filters: every unit of the image in one job, the output
    channels split in nt (whole vectors of 16), so each job reads its share of U once."""
    if 64 * C * K <= GROUP_U:
        return 1, 1
    S = nt
    while S > 1 and K % (16 * S):
        S -= 1
    TH = (OH + 1) // 2
    return (TH + 1) // 2 if (OW + 1) // 2 <= L // 2 else TH, S


def run(x, y, st, bp, r, has_r, code, alpha, beta, calls=None):
    """y = the conv of x (use() said yes; st.wino: ``filters`` of its weights, flat):
    Winograd F(2x2, 3x3) in the jobs ``jobs`` chooses."""
    N, C, H, W = x.shape
    K, OH, OW = y.shape[1], y.shape[2], y.shape[3]
    L = st.simd[0]
    TWp = L * -(-((OW + 1) // 2) // L)
    nt = numba.config.NUMBA_NUM_THREADS
    RG, S = jobs(C, K, OH, OW, L, nt)
    vbs = tls_rows("wino.v", nt, 16 * C * TWp * RG)
    mbs = tls_rows("wino.m", nt, 16 * K * TWp * RG)
    emit(calls, KERNELS[L], x.reshape(-1), st.wino, bp, y.reshape(-1), r.reshape(-1), has_r,
         code, alpha, beta, N, C, H, W, K, OH, OW, TWp, RG, S, vbs, mbs)


def warm(L):
    """Compile (or load) the kernel at run()'s argument types (edgenet warmup)."""
    if L not in KERNELS or simd.simd_mode() not in TIERS:
        return
    C = K = 16
    H, W = 4, 2 * L + 4
    x = np.zeros(C * H * W, np.float32)
    U = np.zeros(16 * C * K, np.float32)
    nt = numba.config.NUMBA_NUM_THREADS
    TWp = 2 * L
    KERNELS[L](x, U, np.zeros(K, np.float32), x.copy(), x.copy(), False, 1, np.float32(0),
               np.float32(6), 1, C, H, W, K, H, W, TWp, 1, 1,
               np.zeros((nt, 16 * C * TWp), np.float32), np.zeros((nt, 16 * K * TWp), np.float32))
