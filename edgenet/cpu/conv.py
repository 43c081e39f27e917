"""Conv and ConvTranspose.

Conv paths (all fused: bias + residual + activation epilogue):

- ``_conv_tiled``: group == 1 (any stride/dilation/pads). Weights expanded to
  (O/OT, C, kh, kw, OT) with OT = 16 output channels innermost; each prange iteration is
  (batch, output-channel block, output row); the inner micro-kernel keeps OT accumulators per
  output pixel in a fixed-size loop that LLVM vectorizes over output channels.
- ``_simd_conv.KERNELS``: the fast path (group == 1, float32/expanded weights, stride 1 or 2,
  output width >= the tile): explicit-SIMD register tiles, see docs/PERFORMANCE.md and
  ``simd_conv()`` below.
- ``_conv_plane``: the general path (groups, depthwise, packed weights): one prange iteration
  per (batch, output channel) plane; the filter row is decoded into a per-thread buffer when
  weights are packed; taps accumulate into the output plane with vectorized row loops.
"""
from __future__ import annotations

import numpy as np
import numba
from numba import prange

from ._common import (ENC_Q3, ENC_T2, FM, OpImpl, Weights, act, act_of, attrs, const_f32,
                      decode_row, node_inputs, scratch, use_parallel)
from .._jit import njit, pjit
from . import simd
from ._common import tls_buffer
from . import _common
from . import gen_simd_conv


# ----------------------------------------------------------------------------- general path
@njit(fastmath=FM)
def _conv_plane_one(x, n, cin0, Cg, wrow, bias_o, y, o, KH, KW, sh, sw, pt, pl, dh, dw):
    H = x.shape[2]
    W = x.shape[3]
    OH = y.shape[2]
    OW = y.shape[3]
    for oy in range(OH):
        for ox in range(OW):
            y[n, o, oy, ox] = bias_o
    for c in range(Cg):
        for ky in range(KH):
            # valid oy: 0 <= oy*sh - pt + ky*dh < H
            off_y = ky * dh - pt
            oy0 = 0 if off_y >= 0 else (-off_y + sh - 1) // sh
            oy1 = (H - 1 - off_y) // sh + 1 if H - 1 - off_y >= 0 else 0
            if oy1 > OH:
                oy1 = OH
            for kx in range(KW):
                wv = wrow[(c * KH + ky) * KW + kx]
                if wv == 0:
                    continue
                off_x = kx * dw - pl
                ox0 = 0 if off_x >= 0 else (-off_x + sw - 1) // sw
                ox1 = (W - 1 - off_x) // sw + 1 if W - 1 - off_x >= 0 else 0
                if ox1 > OW:
                    ox1 = OW
                for oy in range(oy0, oy1):
                    iy = oy * sh + off_y
                    if sw == 1:
                        for ox in range(ox0, ox1):
                            y[n, o, oy, ox] += wv * x[n, cin0 + c, iy, ox + off_x]
                    else:
                        for ox in range(ox0, ox1):
                            y[n, o, oy, ox] += wv * x[n, cin0 + c, iy, ox * sw + off_x]


@njit(fastmath=FM)
def _epilogue_plane(y, n, o, r, has_r, code, alpha, beta):
    OH = y.shape[2]
    OW = y.shape[3]
    if has_r:
        for oy in range(OH):
            for ox in range(OW):
                y[n, o, oy, ox] = act(y[n, o, oy, ox] + r[n, o, oy, ox], code, alpha, beta)
    elif code != 0:
        for oy in range(OH):
            for ox in range(OW):
                y[n, o, oy, ox] = act(y[n, o, oy, ox], code, alpha, beta)


@pjit(fastmath=FM)
def _conv_plane(x, wf, packed, enc, codes, scale, buf, b, r, has_r, y, G,
                KH, KW, sh, sw, pt, pl, dh, dw, code, alpha, beta):
    N = x.shape[0]
    O = y.shape[1]
    Og = O // G
    Cg = x.shape[1] // G
    K = Cg * KH * KW
    for t in prange(N * O):
        n = t // O
        o = t % O
        g = o // Og
        if packed:
            tid = numba.get_thread_id()
            wrow = buf[tid]
            decode_row(enc, codes, scale, o, K, wrow)
        else:
            wrow = wf[o]
        _conv_plane_one(x, n, g * Cg, Cg, wrow, b[o], y, o, KH, KW, sh, sw, pt, pl, dh, dw)
        _epilogue_plane(y, n, o, r, has_r, code, alpha, beta)


# ----------------------------------------------------------------------------- tiled path
OT = 16


@njit(fastmath=FM, boundscheck=False)
def _rows_one(x, n, wt, ob, b, y, r, has_r, oy, KH, KW, sh, sw, pt, pl, dh, dw,
              code, alpha, beta, acc):
    """Output row oy of channel block ob (OT channels), batch n. acc: flat (OT*OW) scratch (L1);
    each tap is an axpy over the row that LLVM vectorizes (unsigned indices)."""
    C = x.shape[1]
    H = x.shape[2]
    W = x.shape[3]
    O = y.shape[1]
    OW = y.shape[3]
    o0 = ob * OT
    for ox in range(OW):
        for j in range(OT):
            acc[j * OW + ox] = b[o0 + j] if o0 + j < O else np.float32(0)
    iy0 = oy * sh - pt
    for ky in range(KH):
        iy = iy0 + ky * dh
        if iy < 0 or iy >= H:
            continue
        for kx in range(KW):
            off = kx * dw - pl
            ox0 = 0 if off >= 0 else (-off + sw - 1) // sw
            ox1 = (W - 1 - off) // sw + 1 if W - 1 - off >= 0 else 0
            if ox1 > OW:
                ox1 = OW
            n_ = np.uint64(ox1 - ox0) if ox1 > ox0 else np.uint64(0)
            su = np.uint64(sw)
            for c in range(C):
                xrow = x[n, c, iy]
                xs = np.uint64(ox0 * sw + off)
                for j in range(OT):
                    wv = wt[ob, c, ky, kx, j]
                    ab = np.uint64(j * OW + ox0)
                    if sw == 1:
                        for i in range(n_):
                            acc[ab + i] += wv * xrow[xs + i]
                    else:
                        for i in range(n_):
                            acc[ab + i] += wv * xrow[xs + i * su]
    for j in range(OT):
        o = o0 + j
        if o < O:
            if has_r:
                for ox in range(OW):
                    y[n, o, oy, ox] = act(acc[j * OW + ox] + r[n, o, oy, ox], code, alpha, beta)
            else:
                for ox in range(OW):
                    y[n, o, oy, ox] = act(acc[j * OW + ox], code, alpha, beta)


@njit(fastmath=FM, boundscheck=False)
def _decode_block(enc, codes, scale, ob, O, K, tmp, wblk):
    """Packed rows of channel block ob -> wblk flat (K, OT) (the expanded tile layout)."""
    for j in range(OT):
        o = ob * OT + j
        if o < O:
            decode_row(enc, codes, scale, o, K, tmp)
            for k in range(K):
                wblk[k * OT + j] = tmp[k]
        else:
            for k in range(K):
                wblk[k * OT + j] = 0


@pjit(fastmath=FM, boundscheck=False)
def _conv_tiled(x, wt, packed, enc, codes, scale, wbuf, last, b, r, has_r, y,
                KH, KW, sh, sw, pt, pl, dh, dw, code, alpha, beta, buf):
    """group == 1: prange over (batch, OT-channel block, output row). Packed weights:
    each thread decodes the block it works on into its own buffer (once per block run)."""
    N = x.shape[0]
    C = x.shape[1]
    O = y.shape[1]
    OH = y.shape[2]
    NB = (O + OT - 1) // OT
    K = C * KH * KW
    for t in prange(N * NB * OH):
        n = t // (NB * OH)
        rem = t % (NB * OH)
        ob = rem // OH
        oy = rem % OH
        tid = numba.get_thread_id()
        acc = buf[tid]
        if packed:
            wrow = wbuf[tid]
            wblk = wrow[:K * OT]
            if last[tid] != ob:
                _decode_block(enc, codes, scale, ob, O, K, wrow[K * OT:], wblk)
                last[tid] = ob
            _rows_one(x, n, wblk.reshape((1, C, KH, KW, OT)), 0, b[ob * OT:], y[:, ob * OT:],
                      r[:, ob * OT:], has_r, oy, KH, KW, sh, sw, pt, pl, dh, dw,
                      code, alpha, beta, acc)
        else:
            _rows_one(x, n, wt, ob, b, y, r, has_r, oy, KH, KW, sh, sw, pt, pl, dh, dw,
                      code, alpha, beta, acc)


def expand_tiled(wf, O, C, KH, KW):
    """(O, C*kh*kw) float32 -> (ceil(O/OT), C, kh, kw, OT), zero-padded output channels."""
    nb = (O + OT - 1) // OT
    w = np.zeros((nb * OT, C, KH, KW), np.float32)
    w[:O] = wf.reshape(O, C, KH, KW)
    return np.ascontiguousarray(w.reshape(nb, OT, C, KH, KW).transpose(0, 2, 3, 4, 1))


# ----------------------------------------------------------------------------- SIMD path
# Tile choices: output-channel vectors k per lanes L -> candidate pixel-tile widths P
# (every (L, k, P) for stride 1 and 2 exists in _simd_conv.KERNELS).
_P_CHOICES = {16: {1: (24, 16), 2: (14, 12, 8, 7), 3: (8, 7), 4: (6,)},
              8: {1: (12,), 2: (6,)}}
_K_PREF = {16: (2, 3, 4, 1), 8: (2, 1)}


def choose_k(O, L):
    """Output-channel vectors per tile: least zero-padding of O, ties by _K_PREF order."""
    best = None
    for k in _K_PREF[L]:
        B = L * k
        waste = -(-O // B) * B
        if best is None or waste < best[0]:
            best = (waste, k)
    return best[1]


def choose_p(OW, L, k):
    """Pixel-tile width: least recomputed pixels (tiles overlap at the row end), larger P
    on ties; None when the row is narrower than every tile."""
    best = None
    for P in _P_CHOICES[L][k]:
        if P > OW:
            continue
        work = -(-OW // P) * P
        if best is None or work < best[0]:
            best = (work, P)
    return None if best is None else best[1]


def expand_simd(wf, O, C, KH, KW, L, k):
    """(O, C*kh*kw) -> flat (ceil(O/B), C, kh*kw, B), B = L*k output channels innermost."""
    B = L * k
    nb = -(-O // B)
    w = np.zeros((nb * B, C, KH * KW), np.float32)
    w[:O] = wf.reshape(O, C, KH * KW)
    return np.ascontiguousarray(w.reshape(nb, B, C, KH * KW).transpose(0, 2, 3, 1)).reshape(-1)


@njit(fastmath=FM, boundscheck=False)
def _decode_simd_rng(enc, codes, scale, O, K, B, ob0, ob1, tmp, out):
    """Packed rows -> the SIMD weight layout (ceil(O/B), K, B) for blocks ob0..ob1 (K = C*kh*kw;
    zero rows past O). tmp: K floats."""
    for ob in range(ob0, ob1):
        base = ob * K * B
        for l in range(B):
            o = ob * B + l
            if o < O:
                decode_row(enc, codes, scale, o, K, tmp)
                for j in range(K):
                    out[base + j * B + l] = tmp[j]
            else:
                for j in range(K):
                    out[base + j * B + l] = 0


@pjit(fastmath=FM, boundscheck=False)
def _decode_simd_par(enc, codes, scale, O, K, B, tmps, out):
    for ob in prange((O + B - 1) // B):
        _decode_simd_rng(enc, codes, scale, O, K, B, ob, ob + 1, tmps[numba.get_thread_id()], out)


@njit(fastmath=FM, boundscheck=False)
def _decode_rows(enc, codes, scale, O, K, out):
    """Packed rows -> (O, K) float32 (flat)."""
    for o in range(O):
        decode_row(enc, codes, scale, o, K, out[o * K:(o + 1) * K])


@njit(fastmath=FM, boundscheck=False)
def _decode_bits_rng(pos, neg, b2, q3, sp, K, B, NW, L, ob0, ob1, out):
    """Bit planes -> SIMD layout for blocks ob0..ob1, 32 lanes per word, L lanes per vector.
    Ternary (q3 False): weight (ob, j, l) = sp[ob*B + l] * (bit l of pos - bit l of neg).
    q3: pos/neg/b2 are the bit 0/1/2 planes of the 3-bit two's-complement level."""
    G = B // L
    for ob in range(ob0, ob1):
        for j in range(K):
            q = ob * K + j
            for g in range(G):
                lo = g * L
                wi = q * NW + lo // 32
                if L == 16:
                    if q3:
                        v16 = simd.vq3_16(sp, ob * B + lo, pos[wi], neg[wi], b2[wi], lo % 32)
                    else:
                        v16 = simd.vtern16(sp, ob * B + lo, pos[wi], neg[wi], lo % 32)
                    simd.vst16(out, q * B + lo, v16)
                else:
                    if q3:
                        v8 = simd.vq3_8(sp, ob * B + lo, pos[wi], neg[wi], b2[wi], lo % 32)
                    else:
                        v8 = simd.vtern8(sp, ob * B + lo, pos[wi], neg[wi], lo % 32)
                    simd.vst8(out, q * B + lo, v8)


@pjit(fastmath=FM, boundscheck=False)
def _decode_bits_par(pos, neg, b2, q3, sp, K, B, NW, L, NB, out):
    for ob in prange(NB):
        _decode_bits_rng(pos, neg, b2, q3, sp, K, B, NW, L, ob, ob + 1, out)


@njit(fastmath=FM, boundscheck=False)
def _decode_i8_rng(c8, sp, K, B, L, ob0, ob1, out):
    """i8 levels stored in the SIMD order (uint8 view) -> float SIMD layout, blocks ob0..ob1."""
    G = B // L
    for ob in range(ob0, ob1):
        for j in range(K):
            q = ob * K + j
            for g in range(G):
                lo = g * L
                if L == 16:
                    simd.vst16(out, q * B + lo, simd.vi8_16(sp, ob * B + lo, c8, q * B + lo))
                else:
                    simd.vst8(out, q * B + lo, simd.vi8_8(sp, ob * B + lo, c8, q * B + lo))


@pjit(fastmath=FM, boundscheck=False)
def _decode_i8_par(c8, sp, K, B, L, NB, out):
    for ob in prange(NB):
        _decode_i8_rng(c8, sp, K, B, L, ob, ob + 1, out)


def i8_simd(w, B):
    """i8 codes (O, K) -> the same levels re-ordered to the SIMD order (ceil(O/B), K, B)
    (1 byte/weight, a uint8 view) and the scale padded to whole blocks."""
    O, K = w.O, w.K
    NB = -(-O // B)
    lev = np.zeros((NB * B, K), np.uint8)
    lev[:O] = w.codes[:, :K]
    c8 = np.ascontiguousarray(lev.reshape(NB, B, K).transpose(0, 2, 1)).reshape(-1)
    sp = np.zeros(NB * B, np.float32)
    sp[:O] = w.scale
    return c8, sp


# t2 byte -> its 4 levels (2-bit fields, low first: 1 -> +1, 2 -> -1, 0 and 3 -> 0);
# q3 3-bit two's-complement field -> level
_T2_LUT = np.array([[(0, 1, -1, 0)[(b >> (2 * i)) & 3] for i in range(4)] for b in range(256)],
                   np.int8)
_Q3_LUT = np.array([0, 1, 2, 3, -4, -3, -2, -1], np.int8)


def ternary_bits(w, B):
    """t2 or q3 codes (O, row_bytes) -> bit planes uint32 in the SIMD order
    (ceil(O/B), K, ceil(B/32)) and the scale padded to whole blocks: (pos, neg, b2, q3, sp).
    t2: pos/neg planes (2 bits per weight, b2 unused); q3: the three bits of the
    two's-complement level (3 bits per weight)."""
    O, K = w.O, w.K
    NB = -(-O // B)
    NW = -(-B // 32)
    if w.enc == ENC_T2:   # one table lookup per byte (4 codes): 20x faster than np.where
        lev0 = _T2_LUT[w.codes].reshape(O, -1)[:, :K]
    else:   # q3: 8 codes in 3 bytes, little-endian 24-bit words
        r = w.codes[:, :(-(-K // 8)) * 3].reshape(O, -1, 3).astype(np.uint32)
        word = r[..., 0] | (r[..., 1] << 8) | (r[..., 2] << 16)
        c = (word[:, :, None] >> (3 * np.arange(8, dtype=np.uint32))) & 7
        lev0 = _Q3_LUT[c.reshape(O, -1)[:, :K]]
    lev = np.zeros((NB * B, K), np.int8)
    lev[:O] = lev0
    lev = lev.reshape(NB, B, K).transpose(0, 2, 1)                  # (NB, K, B)
    lv = np.zeros((NB, K, NW * 32), np.int8)
    lv[:, :, :B] = lev
    lv = lv.reshape(NB, K, NW, 32)

    def plane(m):   # bit l of word = lane l (little-endian bytes): packbits, no arithmetic
        b = np.packbits(np.ascontiguousarray(m, dtype=bool), axis=-1, bitorder="little")
        return np.ascontiguousarray(b).view("<u4").astype(np.uint32).reshape(-1)
    if w.enc == ENC_T2:
        planes = (plane(lv == 1), plane(lv == -1), np.zeros(1, np.uint32), False)
    else:
        u = lv.astype(np.int16) & 7
        planes = (plane(u & 1), plane((u >> 1) & 1), plane((u >> 2) & 1), True)
    sp = np.zeros(NB * B, np.float32)
    sp[:O] = w.scale
    return planes + (sp,)


def decode_simd(w, L, k):
    """Packed weights of ``w`` decoded into the SIMD layout in a per-Python-thread buffer
    (the packed policy through the fast kernel: one float32 copy of the largest layer is
    the only expanded memory)."""
    B = L * k
    NB = -(-w.O // B)
    out = tls_buffer("conv.wdec", NB * w.K * B)
    bits = getattr(w, "simd_bits", None)
    if bits is not None:                 # t2 / q3: bit-plane decode (vectorized)
        pos, neg, b2, q3, sp = bits
        NW = -(-B // 32)
        if use_parallel(w.O * w.K * 4):
            _decode_bits_par(pos, neg, b2, q3, sp, w.K, B, NW, L, NB, out)
        else:
            _decode_bits_rng(pos, neg, b2, q3, sp, w.K, B, NW, L, 0, NB, out)
        return out
    i8 = getattr(w, "simd_i8", None)
    if i8 is not None:
        c8, sp = i8
        if use_parallel(w.O * w.K * 4):
            _decode_i8_par(c8, sp, w.K, B, L, NB, out)
        else:
            _decode_i8_rng(c8, sp, w.K, B, L, 0, NB, out)
        return out
    if use_parallel(w.O * w.K):
        nt = numba.config.NUMBA_NUM_THREADS
        tmps = tls_buffer("conv.wdec_tmp", nt * w.K).reshape(nt, w.K)
        _decode_simd_par(w.enc, w.codes, w.scale, w.O, w.K, B, tmps, out)
    else:
        _decode_simd_rng(w.enc, w.codes, w.scale, w.O, w.K, B, 0, NB, tls_buffer("conv.wdec_tmp", w.K),
                         out)
    return out


def dense_f(st):
    """(O, C*kh*kw) float32 filter of a group-1 conv (rebuilt from the SIMD layout when the
    expanded policy dropped it: the fallback kernels are rare)."""
    w = st["w"]
    if w.f is None:
        L, k = st["simd"]
        B = L * k
        ws = st["wsimd"].reshape(-1, w.K, B)
        w.f = np.ascontiguousarray(ws.transpose(0, 2, 1).reshape(-1, w.K)[:w.O])
    return w.f


def _pad_copy(x, xp, pt, pl):
    """x (N, C, H, W) -> xp (N, C, Hp, Wp) zero-padded (top/left offsets pt, pl). NumPy
    slice copies: ~memcpy speed, no parallel dispatch (a Numba loop here ran 7x slower)."""
    H, W = x.shape[2], x.shape[3]
    if pt:
        xp[:, :, :pt] = 0
    if pt + H < xp.shape[2]:
        xp[:, :, pt + H:] = 0
    if pl:
        xp[:, :, pt:pt + H, :pl] = 0
    if pl + W < xp.shape[3]:
        xp[:, :, pt:pt + H, pl + W:] = 0
    xp[:, :, pt:pt + H, pl:pl + W] = x


def simd_conv(x, y, st, toff, b, r, has_r, code, alpha, beta):
    """Run the SIMD kernel; False when this geometry has no SIMD tile (caller falls back)."""
    sh, sw, pt, pl, pb, pr, dh, dw, g = st["params"]
    if sh != sw or sh not in (1, 2):
        return False
    L, k = st["simd"]
    N, C, H, W = x.shape
    O, OH, OW = y.shape[1], y.shape[2], y.shape[3]
    P = choose_p(OW, L, k)
    if P is None:
        return False
    B = L * k
    Hp, Wp = H + pt + pb, W + pl + pr
    if pt or pl or pb or pr:
        xp = tls_buffer("conv.xp", N * C * Hp * Wp).reshape(N, C, Hp, Wp)
        _pad_copy(x, xp, pt, pl)
        xf = xp.reshape(-1)
    else:
        xf = x.reshape(-1)
    if b is st["b"]:
        bp = st["bp"]
    else:
        bp = tls_buffer("conv.bp", -(-O // B) * B)
        bp[:] = 0
        bp[:O] = b.reshape(-1)
    nt = numba.config.NUMBA_NUM_THREADS
    tb = tls_buffer("conv.tb", nt * B * P).reshape(nt, B * P)
    ws = st["wsimd"] if st["wsimd"] is not None else decode_simd(st["w"], L, k)
    gen_simd_conv.conv_kernel(L, k, P, sh)(xf, C, Hp, Wp, ws, bp, toff, y.reshape(-1),
                                          N, O, OH, OW, r.reshape(-1), has_r, code, alpha,
                                          beta, tb)
    return True


def simd_dwconv(x, y, st, toff, b, r, has_r, code, alpha, beta):
    """Depthwise (C/group == 1) SIMD kernel; False when the geometry has none."""
    DW_V = gen_simd_conv.DW_V
    sh, sw, pt, pl, pb, pr, dh, dw, g = st["params"]
    if sh != sw or sh not in (1, 2):
        return False
    L = st["simd_dw"]
    N, C, H, W = x.shape
    O, OH, OW = y.shape[1], y.shape[2], y.shape[3]
    Hp, Wp = H + pt + pb, W + pl + pr
    LV = L * (DW_V if sh == 1 else 2)
    slack = 4 * LV + Wp + 64
    xp = tls_buffer("conv.xp", N * C * Hp * Wp + slack)
    _pad_copy(x, xp[:N * C * Hp * Wp].reshape(N, C, Hp, Wp), pt, pl)
    if sh == 1:
        psize = -(-(OH * Wp) // LV) * LV
    else:
        psize = OH * (-(-OW // LV) * LV)
    psize += L   # the vector epilogue may read up to L - 1 floats past the last row
    nt = numba.config.NUMBA_NUM_THREADS
    pbuf = tls_buffer("conv.dwplane", nt * psize).reshape(nt, psize)
    bd = st["bdw"] if b is st["b"] else np.array(b, np.float32).reshape(-1)
    gen_simd_conv.dw_kernel(L, sh)(xp, C, Hp, Wp, st["wdw"], bd, toff,
                                   y.reshape(-1), N, O, OH, OW, r.reshape(-1), has_r, code, alpha, beta,
                                   pbuf)
    return True


# ----------------------------------------------------------------------------- OpImpls
_DUMMY4 = np.zeros((1, 1, 1, 1), np.float32)
_DUMMY5 = np.zeros((1, 1, 1, 1, OT), np.float32)


def _consts_but_weight(node, consts):
    """float32 constants by input position, except the weight (position 1: held by
    ``Weights`` under the policy; a dequantized float copy here would double the memory)."""
    return [const_f32(consts, n) if (i != 1 and n and n in consts) else None
            for i, n in enumerate(node_inputs(node))]


def _conv_params(node):
    a = attrs(node)
    sh, sw = (int(v) for v in a.get("strides", [1, 1]))
    pt, pl, pb, pr = (int(v) for v in a.get("pads", [0, 0, 0, 0]))
    dh, dw = (int(v) for v in a.get("dilations", [1, 1]))
    g = int(a.get("group", 1))
    return sh, sw, pt, pl, pb, pr, dh, dw, g


def _tap_offsets(state, W):
    """Offsets of the kh*kw taps in a padded row-major plane of width W + pads (cached per
    width): the kernels address every tap as one constant offset from the window corner."""
    sh, sw, pt, pl, pb, pr, dh, dw, g = state["params"]
    Wp = W + pl + pr
    toff = state["toff_w"].get(Wp)
    if toff is None:
        toff = np.array([ky * dh * Wp + kx * dw for ky in range(state["KH"])
                         for kx in range(state["KW"])], np.int64)
        state["toff_w"][Wp] = toff
    return toff


class Conv(OpImpl):
    def prepare(self, node, consts, policy):
        names = node_inputs(node)
        aq = node.get("_aq") if isinstance(node, dict) else None
        # int8 activations (edgenet/quant.py): only the int8 layout is kept, no float weights
        w = None if aq else Weights(consts[names[1]], policy)
        O, Cg, KH, KW = (int(s) for s in consts[names[1]].shape)
        st = {"consts": _consts_but_weight(node, consts), "w": w, "O": O, "KH": KH, "KW": KW,
              "K": Cg * KH * KW, "params": _conv_params(node), "act": act_of(node)}
        b = st["consts"][2] if len(names) > 2 else None
        st["b"] = b.reshape(-1) if b is not None else np.zeros(O, np.float32)
        g = st["params"][-1]
        st["q"] = None
        st["toff_w"] = {}   # padded input width -> tap offsets (int64, kh*kw)
        if aq is not None:
            from . import qconv
            st["q"] = qconv.prepare(consts[names[1]], O, Cg, KH, KW, st["b"], aq, aq[2])
            sh, sw = st["params"][:2]
            if sh == sw and sh in gen_simd_conv.STRIDES:
                gen_simd_conv.EXPECTED.add(("qconv", (st["q"]["k"], sh, "vnni" if st["q"]["vnni"]
                                                      else "generic")))
            st["simd"] = st["simd_dw"] = st["tiled"] = None
            return st
        st["tiled"] = None
        st["simd"] = None
        L = simd.lanes(simd.simd_mode())
        # packed weights run the SIMD kernels too: decoded per call (decode_simd)
        st["simd_dw"] = L if (L and Cg == 1 and g > 1) else None
        st["wsimd"] = None
        sh, sw = st["params"][:2]
        tile_s = sh if sh == sw and sh in gen_simd_conv.STRIDES else None
        if st["simd_dw"]:
            # depthwise filters are tiny (O*kh*kw): one private float32 copy (decoded when
            # packed; never a read-only file view: one kernel signature for every model)
            st["wdw"] = np.empty(w.O * w.K, np.float32)
            if w.packed:
                _decode_rows(w.enc, w.codes, w.scale, w.O, w.K, st["wdw"])
            else:
                st["wdw"][:] = w.f.reshape(-1)
            st["bdw"] = np.array(st["b"], np.float32)
            if tile_s:
                gen_simd_conv.EXPECTED.add(("dw", (L, tile_s)))
        if g == 1 and L:
            k = choose_k(O, L)
            B = L * k
            st["simd"] = (L, k)
            if tile_s:
                gen_simd_conv.EXPECTED.add(("conv", (L, k, tile_s)))
            if not w.packed:
                st["wsimd"] = expand_simd(w.f, O, Cg, KH, KW, L, k)
                w.f = None          # rebuilt by dense_f() only if a fallback needs it
            elif w.enc in (ENC_T2, ENC_Q3):
                w.simd_bits = ternary_bits(w, B)
            else:   # i8: levels re-ordered (1 byte/weight); the row codes stay for fallbacks
                w.simd_i8 = i8_simd(w, B)
            bp = np.zeros(-(-O // B) * B, np.float32)
            bp[:O] = st["b"]
            st["bp"] = bp
        elif not w.packed and g == 1:
            st["tiled"] = expand_tiled(w.f, O, Cg, KH, KW)
        return st

    def run(self, node, state, inputs, outputs):
        """Small convs run on the calling thread alone (one-thread OpenMP region: no worker
        wake-up), bigger ones on all of its Numba threads (``_common.use_parallel`` on the
        MACs, depthwise weighted ×8 for its lower arithmetic intensity, against
        ``CONV_PAR_MIN``)."""
        x, y = inputs[0], outputs[0]
        macs = y.size * state["K"] * (8 if state["simd_dw"] else 1)
        if macs >= _common.CONV_PAR_MIN or numba.get_num_threads() == 1:
            return self._run(node, state, inputs, outputs)
        nt = numba.get_num_threads()
        numba.set_num_threads(1)
        try:
            return self._run(node, state, inputs, outputs)
        finally:
            numba.set_num_threads(nt)

    def _run(self, node, state, inputs, outputs):
        x = inputs[0]
        y = outputs[0]
        names = node_inputs(node)
        b = state["b"]
        if len(names) > 2 and names[2] and inputs[2] is not None:
            b = inputs[2]
        r = inputs[3] if len(inputs) > 3 and inputs[3] is not None else None
        if r is None and len(names) > 3 and names[3]:
            r = state["consts"][3]
        has_r = r is not None
        if r is None:
            r = _DUMMY4
        sh, sw, pt, pl, pb, pr, dh, dw, g = state["params"]
        code, alpha, beta = state["act"]
        KH, KW = state["KH"], state["KW"]
        w = state["w"]
        if state["q"] is not None:
            from . import qconv
            qconv.run(x, y, state["q"], state["params"], _tap_offsets(state, x.shape[3]), b,
                      b is state["b"], r, has_r, code, alpha, beta)
            return
        if state["simd"] is not None or state["simd_dw"] is not None:
            toff = _tap_offsets(state, x.shape[3])
            if state["simd_dw"] is not None:
                if simd_dwconv(x, y, state, toff, b, r, has_r, code, alpha, beta):
                    return
            elif simd_conv(x, y, state, toff, b, r, has_r, code, alpha, beta):
                return
            if g == 1 and state["tiled"] is None and not w.packed:   # rare geometry
                state["tiled"] = expand_tiled(dense_f(state), state["O"], w.shape[1], KH, KW)
        if g == 1:
            nt = numba.config.NUMBA_NUM_THREADS
            if w.packed:
                wt, wbuf = _DUMMY5, scratch(w.K * (OT + 1))
            else:
                wt, wbuf = state["tiled"], _DUMMY4[0, 0]
            _conv_tiled(x, wt, w.packed, w.enc, w.codes, w.scale, wbuf, np.full(nt, -1, np.int64),
                        b, r, has_r, y, KH, KW, sh, sw, pt, pl, dh, dw, code, alpha, beta,
                        scratch(OT * y.shape[3]))
            return
        if w.packed:
            wf = _DUMMY4[0, 0]
            buf = scratch(w.K)
        else:
            wf = w.f
            buf = _DUMMY4[0, 0]
        _conv_plane(x, wf, w.packed, w.enc, w.codes, w.scale, buf, b, r, has_r, y, g,
                    KH, KW, sh, sw, pt, pl, dh, dw, code, alpha, beta)


# ----------------------------------------------------------------------------- ConvTranspose
@njit(fastmath=FM)
def _convt_plane_one(x, n, cin0, Cg, wrow, bias_o, y, o, KH, KW, sh, sw, pt, pl, dh, dw):
    H = x.shape[2]
    W = x.shape[3]
    OH = y.shape[2]
    OW = y.shape[3]
    for oy in range(OH):
        for ox in range(OW):
            y[n, o, oy, ox] = bias_o
    for c in range(Cg):
        for ky in range(KH):
            for kx in range(KW):
                wv = wrow[(c * KH + ky) * KW + kx]
                if wv == 0:
                    continue
                for iy in range(H):
                    oy = iy * sh - pt + ky * dh
                    if oy < 0 or oy >= OH:
                        continue
                    for ix in range(W):
                        ox = ix * sw - pl + kx * dw
                        if ox >= 0 and ox < OW:
                            y[n, o, oy, ox] += wv * x[n, cin0 + c, iy, ix]


@pjit(fastmath=FM)
def _convt_plane(x, wf, packed, enc, codes, scale, buf, b, y, G,
                 KH, KW, sh, sw, pt, pl, dh, dw, code, alpha, beta):
    N = x.shape[0]
    O = y.shape[1]
    Og = O // G
    Cg = x.shape[1] // G
    K = Cg * KH * KW
    for t in prange(N * O):
        n = t // O
        o = t % O
        g = o // Og
        if packed:
            tid = numba.get_thread_id()
            wrow = buf[tid]
            decode_row(enc, codes, scale, o, K, wrow)
        else:
            wrow = wf[o]
        _convt_plane_one(x, n, g * Cg, Cg, wrow, b[o], y, o, KH, KW, sh, sw, pt, pl, dh, dw)
        _epilogue_plane(y, n, o, y, False, code, alpha, beta)


class ConvTranspose(Conv):
    def prepare(self, node, consts, policy):
        names = node_inputs(node)
        w = Weights(consts[names[1]], policy)
        O, Cg, KH, KW = (int(s) for s in w.shape)
        st = {"consts": _consts_but_weight(node, consts), "w": w, "O": O, "KH": KH, "KW": KW,
              "params": _conv_params(node), "act": act_of(node)}
        b = st["consts"][2] if len(names) > 2 else None
        st["b"] = b.reshape(-1) if b is not None else np.zeros(O, np.float32)
        return st

    def run(self, node, state, inputs, outputs):
        x = inputs[0]
        y = outputs[0]
        names = node_inputs(node)
        b = state["b"]
        if len(names) > 2 and names[2] and inputs[2] is not None:
            b = inputs[2]
        sh, sw, pt, pl, pb, pr, dh, dw, g = state["params"]
        code, alpha, beta = state["act"]
        w = state["w"]
        if w.packed:
            wf, buf = _DUMMY4[0, 0], scratch(w.K)
        else:
            wf, buf = w.f, _DUMMY4[0, 0]
        _convt_plane(x, wf, w.packed, w.enc, w.codes, w.scale, buf, b, y, g,
                     state["KH"], state["KW"], sh, sw, pt, pl, dh, dw, code, alpha, beta)
