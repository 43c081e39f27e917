"""The SIMD kernels' weight layout: output channels innermost in blocks of B = L*k.

``(O, C*kh*kw)`` filters become ``(ceil(O/B), C, kh*kw, B)`` float32 (``expand_simd``, the
expanded policy), or are decoded into that layout a layer at a time from what the packed
policy keeps: bit planes for t2/q3 (``ternary_bits``: 2 or 3 bits per weight, vector
decode), int8 levels re-ordered to the same order (``i8_simd``), or the packed rows
(``decode_simd``). Channels past O are zero (their outputs are dropped). The dense
kernels (dense.py) use the same planes with B = L.
"""
from __future__ import annotations

import numba
import numpy as np
from numba import prange

from .._jit import njit, pjit
from . import simd
from ._common import ENC_T2, FM, decode_row, line_aligned, tls_buffer, tls_rows, use_parallel


def expand_simd(wf, O, C, KH, KW, L, k):
    """(O, C*kh*kw) -> flat (ceil(O/B), C, kh*kw, B), B = L*k output channels innermost, on
    a cache line (``line_aligned``)."""
    B = L * k
    nb = -(-O // B)
    w = np.zeros((nb * B, C, KH * KW), np.float32)
    w[:O] = wf.reshape(O, C, KH * KW)
    return line_aligned(w.reshape(nb, B, C, KH * KW).transpose(0, 2, 3, 1)).reshape(-1)


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
def decode_rows(enc, codes, scale, O, K, out):
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


def i8_simd(w, B, levels=None):
    """i8 codes (O, K) (or ``levels``: int8 (O, K) of any quantized encoding) -> the same
    levels re-ordered to the SIMD order (ceil(O/B), K, B) (1 byte/weight, a uint8 view) and
    the scale padded to whole blocks."""
    O, K = w.O, w.K
    NB = -(-O // B)
    lev = np.zeros((NB * B, K), np.uint8)
    lev[:O] = w.codes[:, :K] if levels is None else levels.reshape(O, K).view(np.uint8)
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
        tmps = tls_rows("conv.wdec_tmp", nt, w.K)
        _decode_simd_par(w.enc, w.codes, w.scale, w.O, w.K, B, tmps, out)
    else:
        _decode_simd_rng(w.enc, w.codes, w.scale, w.O, w.K, B, 0, NB, tls_buffer("conv.wdec_tmp", w.K),
                         out)
    return out
