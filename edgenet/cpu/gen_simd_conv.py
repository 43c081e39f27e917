"""Register-tiled SIMD conv kernels, generated in the process when a layer first needs one.

A tile kernel computes (L*k output channels) x (P consecutive output pixels of one row)
with k*P vector accumulators held in registers (L = 16 or 8 float lanes over output
channels). Inner step per (input channel, filter tap): k weight-vector loads, P scalar
broadcasts of the input (``[xo + p*S]``, constant offsets), k*P FMAs. The source is
generated rather than written with loops over a tuple so that every accumulator is its own
SSA value.

Kernels are built lazily (``conv_kernel`` / ``dw_kernel`` / ``qconv_kernel``): the first
call for a tile key generates the kernel's source (``*_source``), compiles it *in this
module* with ``exec(compile(src, __file__, "exec"), globals())`` and memoizes the
dispatcher. Because the code object's file is this (real) file, Numba's on-disk cache
(``cache=True`` through ``edgenet._jit``) works across processes: a second process loads
the machine code instead of compiling (each kernel costs seconds of compilation). The
cache is keyed by this file's stamp and the kernel's name and first line, so every tile
key has a fixed line range (``_line_base``: its place in the menu) and the generated text
is registered in ``linecache`` under this file's name at those lines: Numba's error
messages and Python tracebacks (``NUMBA_DISABLE_JIT=1``) show the generated code.
``edgenet._jit`` names its cache directory by a hash of this file (the generator), never of
generated text, so any change here invalidates every generated kernel.

The set of kernels is a short fixed menu (``MENU``); ``menu()`` lists the keys for a tier
and ``warm`` compiles them. To read one kernel::

    python -m edgenet.cpu.gen_simd_conv conv 16 2 14 1     # or: dw 16 1 / qconv 2 14 1 vnni
                                                           # / qtier pm 8 2 7 1
"""
from __future__ import annotations

import linecache
import os
import sys
import threading

import numba
import numpy as np  # noqa: F401  (used by the generated drivers)
from numba import prange  # noqa: F401  (used by the generated kernels)
from numba.core import cgutils
from numba.extending import intrinsic

from .. import _jit
from ..activation import ActCode  # noqa: F401  (generated kernels)
from .._jit import njit, pjit  # noqa: F401
from ._common import FM, FZERO, act_call  # noqa: F401
from .simd import (ldf, stf, vadd8, vadd16, vbc8, vbc16, vbci16, vclip8, vclip16,  # noqa: F401
                   vdpbusd16, vdpbusd16g, vfma8, vfma16, vitof16, vld8, vld16, vld2_8,
                   vld2_16, vldi16, vqpack8, vrelu8, vrelu16, vsplat8, vsplat16, vst8, vst16,
                   vquant4_16, vstword8, vzeroi16)
from .simd import vld2b16, vldm16, vstm16, vtr16  # noqa: F401
from .simd import (vaddw8, vaddw16, vbci8, vbcw8, vitof8, vldi8, vldw8, vmaddubs8,  # noqa: F401
                   vmaddubs16, vmlaw8, vwiden8, vwiden16, vwidenq8, vzeroh8, vzeroi8, vzerow8,
                   vzerow16)

STRIDES = (1, 2)
_PF0 = np.zeros(1, np.float32)   # tile_store's padded copy, unused (the int8 tiles)
# tile families: one shared prange driver each (argument types: f32, int8 VNNI, int8 pm, g)
FAMILIES = ("f32", "vnni", "pm", "g")

# ----------------------------------------------------------------------------- the menu
# f32: lanes L -> k (output-channel vectors per tile) -> pixel-tile widths P. The k = 1
# tiles also run on any k's weight layout (a runtime block width WB), so SMALL_P covers the
# rows narrower than every P of a layer's k.
# At 8 lanes (16 ymm), k = 2 with P = 7 would need 14 accumulators + 2 weights + a
# broadcast, one register past 16: LLVM kept two accumulators on the stack and copied
# registers around (~65% of the FMA peak). It was in this menu for rows of 7 and 14
# (twenty-seventh session) until two 4-pixel tiles (8 for 7) measured faster there
# (ResNet-18 f32 on avx2 0.96x the time; its stride-2 convs on 14- and 7-wide rows
# 0.87-0.90x; twenty-eighth session). conv.choose_p says where each width runs.
F32_TILES = {16: {1: (24, 16), 2: (14, 12, 8, 7), 3: (8, 7)},
             8: {1: (12,), 2: (6, 4)}}
SMALL_P = (4, 1)
# int8 (16 int32 lanes): k -> P (small P so that every row width >= 1 has a tile)
Q_TILES = {1: (16, 24, 4, 1), 2: (7, 8, 12, 14), 3: (7, 8), 4: (6,)}
# int8 dot-product tiers: tier -> the intrinsic that accumulates 4 u8 x s8 products per lane
# (the other tiers' int8 kernels are the "qtier" kind below)
Q_DOT = {"vnni": "vdpbusd16"}
# "vnni2": the VNNI tiles with 2-bit ternary weights (simd.vld2b16; qconv.prepare picks them
# for layers whose weights stream from memory). Their k * P accumulators + k weights, the
# broadcast and the decode's 3 constants fit 32 zmm: k = 2, P <= 12 (rows of >= 7 pixels).
Q_T2_TILES = {2: (7, 8, 12)}
Q_TIER_OF = {"vnni": "vnni", "vnni2": "vnni"}   # the int8 tier (driver family) of a variant
# int8 kernels of the tiers without VNNI (qconv.family; edgenet/cpu/simd.py, "int8"):
# (family, lanes) -> (k, P) tiles. pm16 (avx512, 32 zmm): the VNNI tiles' shapes; pm8
# (avx2, 16 ymm): k*P int16 accumulators + k weights + 1 broadcast <= 16 (2x7: one spill);
# g8 (generic: a <32 x i16> accumulator is 2 ymm / 4 NEON q): k = 1. P = 1 fits any row.
Q_TIER_TILES = {
    ("pm", 16): ((1, 16), (1, 4), (1, 1), (2, 7), (2, 8), (2, 12), (2, 14), (3, 8), (4, 6)),
    ("pm", 8): ((1, 14), (1, 12), (1, 8), (1, 7), (1, 4), (1, 1), (2, 7), (2, 6), (3, 4)),
    ("g", 8): ((1, 7), (1, 6), (1, 4), (1, 1)),
}


def _menu_all():
    """Every tile key of every kind, in a fixed order (this order gives each kernel its
    line range: keep it deterministic)."""
    keys = []
    for L in (16, 8):
        for k, Ps in F32_TILES[L].items():
            for P in Ps + (SMALL_P if k == 1 else ()):
                for S in STRIDES:
                    keys.append(("conv", (L, k, P, S)))
    for L in (16, 8):
        for S in STRIDES:
            keys.append(("dw", (L, S)))
    for k, Ps in Q_TILES.items():
        for P in Ps:
            for S in STRIDES:
                for tier in Q_DOT:
                    keys.append(("qconv", (k, P, S, tier)))
    for (fam, L), tiles in Q_TIER_TILES.items():   # appended: earlier line ranges unchanged
        for k, P in tiles:
            for S in STRIDES:
                keys.append(("qtier", (fam, L, k, P, S)))
    for k, Ps in Q_T2_TILES.items():
        for P in Ps:
            for S in STRIDES:
                keys.append(("qconv", (k, P, S, "vnni2")))
    for fam in FAMILIES:
        keys.append(("drive", (fam,)))
    return keys


MENU = _menu_all()
_INDEX = {kk: i for i, kk in enumerate(MENU)}


def menu(lanes=None, q_tier=None, q_fam=None):
    """The (kind, key) pairs one machine can use: f32 kernels for ``lanes`` (16 or 8; None
    for neither), int8 kernels for ``q_tier`` (None for none) and the non-VNNI int8 family
    ``q_fam`` ((family, lanes) as qconv.family returns; None for none)."""
    out = []
    for kind, key in MENU:
        if kind == "qtier":
            if q_fam is not None and key[:2] == tuple(q_fam):
                out.append((kind, key))
            continue
        if kind == "conv" and key[0] == lanes:
            out.append((kind, key))
        elif kind == "dw" and key[0] == lanes:
            out.append((kind, key))
        elif kind == "qconv" and Q_TIER_OF[key[3]] == q_tier:
            out.append((kind, key))
    return out


# ----------------------------------------------------------------------------- shared parts
# the generic activation as a called function: _common.act_call (cached; see _common)


@njit(fastmath=FM, boundscheck=False, error_model="numpy", inline="always")
def _st2(yf, i, pf, j, pon, v):
    """y[i] = v, and pf[j] = v where ``pon`` (the padded hand-off)."""
    stf(yf, i, v)
    if pon:
        stf(pf, j, v)


@njit(fastmath=FM, boundscheck=False, error_model="numpy")
def tile_store(buf, B, P, yf, rf, has_r, n, O, OH, OW, oy, ox0, o0, code, alpha, beta,
               pf, pon, PHp, PWp, ppt, ppl):
    """Tile buffer (P pixels x B channels, channel fastest) -> NCHW rows of y, with the
    residual and the activation (explicit loops for none / Relu / Clip: the generic ``act``
    costs ~4 ns per element). One function for every tile kernel, specialized per literal
    (B, P) (its loops unrolled). ``pon``: the same values also into pf, the padded input
    (PHp x PWp planes, interior at ppt, ppl) of this conv's padded float32 reader
    (conv.link_padded)."""
    for l in range(B):
        oc = o0 + l
        if oc >= O:
            break
        yb = ((n * O + oc) * OH + oy) * OW + ox0
        pb = ((n * O + oc) * PHp + oy + ppt) * PWp + ox0 + ppl
        if has_r:
            if code == ActCode.RELU:
                for p in range(P):
                    v = ldf(buf, p * B + l) + ldf(rf, yb + p)
                    _st2(yf, yb + p, pf, pb + p, pon, v if not v < 0 else FZERO)
            elif code == ActCode.NONE:
                for p in range(P):
                    _st2(yf, yb + p, pf, pb + p, pon, ldf(buf, p * B + l) + ldf(rf, yb + p))
            elif code == ActCode.CLIP:
                for p in range(P):
                    v = ldf(buf, p * B + l) + ldf(rf, yb + p)
                    v = beta if v > beta else v
                    _st2(yf, yb + p, pf, pb + p, pon, alpha if v < alpha else v)
            else:
                for p in range(P):
                    _st2(yf, yb + p, pf, pb + p, pon,
                         act_call(ldf(buf, p * B + l) + ldf(rf, yb + p), code, alpha, beta))
        elif code == ActCode.RELU:
            for p in range(P):
                v = ldf(buf, p * B + l)
                _st2(yf, yb + p, pf, pb + p, pon, v if not v < 0 else FZERO)
        elif code == ActCode.NONE:
            for p in range(P):
                _st2(yf, yb + p, pf, pb + p, pon, ldf(buf, p * B + l))
        elif code == ActCode.CLIP:
            for p in range(P):
                v = ldf(buf, p * B + l)
                v = beta if v > beta else v
                _st2(yf, yb + p, pf, pb + p, pon, alpha if v < alpha else v)
        elif code == ActCode.HARD_SWISH:     # MobileNetV3's convs: inline, not a call
            for p in range(P):
                v = ldf(buf, p * B + l)
                u = min(max(v / np.float32(6) + np.float32(0.5), FZERO), np.float32(1))
                _st2(yf, yb + p, pf, pb + p, pon, v * u)   # (min/max: selects)
        else:
            for p in range(P):
                _st2(yf, yb + p, pf, pb + p, pon,
                     act_call(ldf(buf, p * B + l), code, alpha, beta))


@njit(fastmath=FM, boundscheck=False, error_model="numpy")
def tile_store_q(buf, B, P, qw, qp, qf, n, O, oy, ox0, o0, code, alpha, beta):
    """Tile buffer (P pixels x B channels) -> the int8 consumer's padded input words
    (quant.mark_quantized_producers; no residual): per pixel, 8 channels at a time after
    the activation (none / Relu / Clip / HardSwish: the only codes marked) quantized as the
    consumer's quantize pass does and packed 4 a word (simd.vqpack8), at (c4, oy + pad top,
    ox + pad left) of its (N, C4, Hp, Wp) words."""
    QC4, QHp, QWp = qp[1], qp[2], qp[3]
    qs, qz = qf[0], qf[1]
    lo = vsplat8(alpha)
    hi = vsplat8(beta)
    z0 = vsplat8(FZERO)
    o1 = vsplat8(np.float32(1))
    c6 = vsplat8(np.float32(1 / 6))
    h5 = vsplat8(np.float32(0.5))
    rb = (oy + qp[4]) * QWp + ox0 + qp[5]
    for l0 in range(0, B, 8):
        if o0 + l0 >= O:
            break
        nw = min(2, (O - o0 - l0 + 3) // 4)
        wb = (n * QC4 + (o0 + l0) // 4) * QHp * QWp + rb
        for p in range(P):
            v = vld8(buf, p * B + l0)
            if code == ActCode.RELU:
                v = vrelu8(v)
            elif code == ActCode.CLIP:
                v = vclip8(v, lo, hi)
            elif code == ActCode.HARD_SWISH:
                v = vfma8(v, vclip8(vfma8(v, c6, h5), z0, o1), z0)
            qv = vqpack8(v, qs, qz)
            for j in range(nw):
                vstword8(qw, wb + j * QHp * QWp + p, qv, j)


@njit(fastmath=FM, inline="always")
def vact16(v, code, lo, hi, z0, o1, c6, h5):
    """Relu / Clip (lo, hi) / HardSwish on a 16-lane vector (other codes: v unchanged, the
    caller's scalar pass); z0, o1, c6, h5: splats of 0, 1, 1/6, 1/2."""
    if code == ActCode.RELU:
        return vrelu16(v)
    if code == ActCode.CLIP:
        return vclip16(v, lo, hi)
    if code == ActCode.HARD_SWISH:
        return vfma16(v, vclip16(vfma16(v, c6, h5), z0, o1), z0)
    return v


def tile_buf_len(B, P):
    """Floats a tile's buffer holds: the tile (P pixels, rounded up to 16, x B channels)
    and as many again for its transposed rows (``tile_store_k``)."""
    return 2 * B * (-(-P // 16) * 16)


@njit(fastmath=FM, boundscheck=False, error_model="numpy")
def tile_store_k(buf, B, P, yf, rf, has_r, n, O, OH, OW, oy, ox0, o0, code, alpha, beta,
                 qw, qp, qf):
    """``tile_store`` and the int8 consumer's padded input words, for an int8 producer whose
    float32 output is needed as well (``qp[0] == 2``: quant.mark_quantized_producers,
    ``_qo_keep``; 16-lane tiles), the words alone after the residual (``qp[0] == 4``:
    ``_qo_noy``, y read by no one), or ``tile_store`` alone (``qp[0] == 3``: no int8 reader;
    the vector transposes instead of its scalar loop). The tile (pixel p's B channels at buf[p * B]) is
    transposed 16 x 16 at a time (simd.vtr16) into (channel, pixel) rows at T0 (16 pixels
    of channel l at T0 + (c * B + l) * 16); each row gets the residual and the activation
    as a vector, is stored into y (masked to the tile's pixels) and back into its row; the
    rows are then quantized 4 channels x 16 pixels a call (simd.vquant4_16, the consumer's
    own quantize pass). Rows past P hold whatever the buffer held: moved, never stored.
    (Quantizing y's rows right after tile_store's scalar stores cost ~2 cycles an element:
    the vector loads wait for the stores they overlap.)"""
    PC = (P + 15) // 16
    T0 = PC * 16 * B
    for c in range(PC):
        for jb in range(0, B, 16):
            vtr16(buf, c * 16 * B + jb, B, buf, T0 + (c * B + jb) * 16, 16)
    lo = vsplat16(alpha)
    hi = vsplat16(beta)
    z0 = vsplat16(FZERO)
    o1 = vsplat16(np.float32(1))
    c6 = vsplat16(np.float32(1 / 6))
    h5 = vsplat16(np.float32(0.5))
    NL = min(B, O - o0)
    for l in range(NL):
        yb = ((n * O + o0 + l) * OH + oy) * OW + ox0
        for c in range(PC):
            m = min(16, P - c * 16)
            tb = T0 + (c * B + l) * 16
            yo = yb + c * 16
            v = vld16(buf, tb)
            if has_r:
                v = vadd16(v, vldm16(rf, yo, m))
            v = vact16(v, code, lo, hi, z0, o1, c6, h5)
            vst16(buf, tb, v)
            if code > ActCode.RELU and code != ActCode.CLIP and code != ActCode.HARD_SWISH:
                for i in range(m):
                    stf(buf, tb + i, act_call(ldf(buf, tb + i), code, alpha, beta))
                v = vld16(buf, tb)
            if qp[0] != 4:
                vstm16(yf, yo, v, m)
    if qp[0] == 3:   # y only
        return
    QC4, QHp, QWp = qp[1], qp[2], qp[3]
    qb = qw.view(np.uint8)
    rb = (oy + qp[4]) * QWp + ox0 + qp[5]
    for l0 in range(0, NL, 4):
        wb = (n * QC4 + (o0 + l0) // 4) * QHp * QWp + rb
        for c in range(PC):
            vquant4_16(buf, T0 + (c * B + l0) * 16, 16, min(4, NL - l0), min(16, P - c * 16),
                       qf[0], qf[1], qb, 4 * (wb + c * 16))


@njit(fastmath=FM, boundscheck=False, error_model="numpy")
def pad_plane(xf, xb, H, W, pt, pl, Hp, Wp, xpa, xo):
    """The plane xf[xb : xb + H*W] (H x W) into xpa[xo : xo + Hp*Wp] with zero borders (pt
    rows on top, pl columns on the left; the rest of each row and the last rows zero).
    Offsets, not a view of the plane per call (ResNet-20's 16x32x32 pad 1.94 -> 1.81 us,
    64x56x56 18.3 -> 17.4). Rows of >= 8
    floats are copied as whole vectors (the last one overlapping the one before); the zeros
    between two rows (right pad, next left pad) are whole 16-float stores that may run into
    the next row's data, which is written after them. LLVM's own vectorization of the row
    loops ran 64 floats an iteration, so rows of 8-56 floats ran in its scalar remainder:
    ResNet-20's 16x32x32 pad 2.7 -> 1.9 us, 64x28x28 9.9 -> 6.8 us (one thread)."""
    PP = Hp * Wp
    z = vsplat16(FZERO)
    i = 0
    e = pt * Wp + pl if H > 0 else PP
    while i + 16 <= e:
        vst16(xpa, xo + i, z)
        i += 16
    while i < e:
        xpa[xo + i] = FZERO
        i += 1
    for iy in range(H):
        d = (iy + pt) * Wp + pl
        s = xb + iy * W
        if W >= 16:
            i = 0
            while i + 16 <= W:
                vst16(xpa, xo + d + i, vld16(xf, s + i))
                i += 16
            if i < W:
                vst16(xpa, xo + d + W - 16, vld16(xf, s + W - 16))
        elif W >= 8:
            vst8(xpa, xo + d, vld8(xf, s))
            vst8(xpa, xo + d + W - 8, vld8(xf, s + W - 8))
        else:
            for i in range(W):
                xpa[xo + d + i] = xf[s + i]
        i = d + W
        e = i + Wp - W if iy < H - 1 else PP
        while i < e and i + 16 <= PP:
            vst16(xpa, xo + i, z)
            i += 16
        while i < e:
            xpa[xo + i] = FZERO
            i += 1


def tile_header(w, name, head_args, cname, B, P, S):
    """A tile kernel is one plain ``njit`` function, ``{name}_tile``: one (L*k channels) x
    (P pixels) tile ``t`` of the output. The ``prange`` over (batch, channel block, output
    row, row tile) is a driver shared by every tile of a family (``drive_source``: it calls
    the tile through a function pointer), so a new tile costs only its own body's
    compilation, never Numba's parallel passes. The last tile of a row overlaps
    (ox0 = OW - P)."""
    args = f"{head_args}, toff, yf, N, O, OH, OW, rf, has_r, code, alpha, beta"
    w("@njit(fastmath=FM, boundscheck=False, error_model='numpy')")
    w(f"def {name}_tile({args}, buf, t, NB, TX):")
    w("    T = toff.shape[0]")
    w("    HW = Hp * Wp")
    w(f"    K = {cname} * T")
    w("    tx = t % TX")
    w("    u = t // TX")
    w("    oy = u % OH")
    w("    u = u // OH")
    w("    ob = u % NB")
    w("    n = u // NB")
    w(f"    ox0 = tx * {P}")
    w(f"    if ox0 > OW - {P}:")
    w(f"        ox0 = OW - {P}")
    w(f"    xb = n * {cname} * HW + oy * {S} * Wp + ox0 * {S}")


def tile_reduce(w, cname, wload, bcast, step, L, k, P, S, wb=None, wl=None):
    """The reduction shared by the fp32 and int8 kernels: per (channel group, tap), k weight
    vectors ``w{j}``, P input broadcasts ``b`` at constant offsets, and ``a{j}_{p} =
    step(j, p)`` (an FMA, or a dot-product step). ``wb``: the name of a runtime weight
    block width (a layout of WB >= B channels per block, B dividing WB), else B. ``wl``:
    array elements a weight vector takes (packed weights), else L."""
    B = L * k
    wl = L if wl is None else wl
    if wb is None:
        w(f"    wi = ob * K * {k * wl}")
    else:
        w(f"    wi = (ob * {B}) // {wb} * K * {wb} + (ob * {B}) % {wb}")
    w(f"    for c in range({cname}):")
    w("        cb = xb + c * HW")
    w("        for q in range(T):")
    w("            xo = cb + toff[q]")
    for j in range(k):
        w(f"            w{j} = {wload}(wt, wi + {j * wl})")
    for p in range(P):
        w(f"            b = {bcast}xo + {p * S})")
        for j in range(k):
            w(f"            a{j}_{p} = {step(j, p)}")
    w(f"            wi += {k * wl if wb is None else wb}")


def tile_epilogue(w, acc, L, k, P, qout=False, pad=False):
    """Float accumulators ``{acc}{j}_{p}`` -> the per-thread tile buffer -> ``tile_store``
    (``qout``, the int8 tiles: ``tile_store_q`` when ``qp[0] == 1``, ``tile_store_k`` when
    it is 2 or 3 on 16 lanes)."""
    B = L * k
    for p in range(P):
        for j in range(k):
            w(f"    vst{L}(buf, {p * B + j * L}, {acc}{j}_{p})")
    if qout:
        w("    if qp[0] == 1:")
        w(f"        tile_store_q(buf, {B}, {P}, qw, qp, qf, n, O, oy, ox0, ob * {B}, code, alpha,"
          " beta)")
        w("        return")
    # (B, P are integer literals: tile_store is compiled once per (B, P), ~0.8 s, shared by
    # the f32 and int8 tiles of that shape. With int64 B and P, one tile_store served every
    # tile, but its loops over P ran 2-8% slower on MobileNetV2 / ResNet-20, measured)
    if qout and L == 16:
        w("    if qp[0] >= 2:")
        w(f"        tile_store_k(buf, {B}, {P}, yf, rf, has_r, n, O, OH, OW, oy, ox0, ob * {B},"
          " code, alpha, beta, qw, qp, qf)")
        w("        return")
    # pad (the float32 tiles): pf, pg = (on, Hp, Wp, pad top, pad left) of the padded
    # reader's input (conv.link_padded); the int8 tiles: never
    tail = "pf, pg[0] != 0, pg[1], pg[2], pg[3], pg[4]" if pad else "_PF0, False, 0, 0, 0, 0"
    w(f"    tile_store(buf, {B}, {P}, yf, rf, has_r, n, O, OH, OW, oy, ox0, "
      f"ob * {B}, code, alpha, beta, {tail})")


# ----------------------------------------------------------------------------- generators
def conv_source(L, k, P, S):
    """(name, source) of the f32 tile kernel (L lanes, k vectors, P pixels, stride S). wt:
    weights in the layout (ceil(O/WB), C, kh*kw, WB) (simd_layout.expand_simd), bp: bias
    padded to whole blocks."""
    B = L * k
    name = f"conv_l{L}_k{k}_p{P}_s{S}"
    o = []
    w = o.append
    tile_header(w, name, "xp, C, Hp, Wp, wt, WB, bp, pf, pg", "C", B, P, S)
    for j in range(k):
        w(f"    a{j}_0 = vld{L}(bp, ob * {B} + {j * L})")
    for j in range(k):
        for p in range(1, P):
            w(f"    a{j}_{p} = a{j}_0")
    tile_reduce(w, "C", f"vld{L}", f"vbc{L}(xp, ", lambda j, p: f"vfma{L}(w{j}, b, a{j}_{p})",
                L, k, P, S, wb="WB")
    tile_epilogue(w, "a", L, k, P, pad=True)
    return name, "\n".join(o) + "\n"


DW_V = 4  # vectors per depthwise tile (stride 1)


def emit_act_consts(w, L, ind):
    """Generated code: the vectors the vector activation epilogue uses (emit_act_vec)."""
    w(f"{ind}lo = vsplat{L}(alpha)")
    w(f"{ind}hi = vsplat{L}(beta)")
    w(f"{ind}z0 = vsplat{L}(np.float32(0))")
    w(f"{ind}o1 = vsplat{L}(np.float32(1))")
    w(f"{ind}c6 = vsplat{L}(np.float32(1 / 6))")
    w(f"{ind}h5 = vsplat{L}(np.float32(0.5))")


def emit_act_vec(w, L, ind, v):
    """Generated code: Relu / Clip / HardSwish (v * clip(v / 6 + 1/2, 0, 1)) on the vector
    ``v`` (other codes: the caller's scalar pass)."""
    w(f"{ind}if code == ActCode.RELU:")
    w(f"{ind}    {v} = vrelu{L}({v})")
    w(f"{ind}elif code == ActCode.CLIP:")
    w(f"{ind}    {v} = vclip{L}({v}, lo, hi)")
    w(f"{ind}elif code == ActCode.HARD_SWISH:")
    w(f"{ind}    {v} = vfma{L}({v}, vclip{L}(vfma{L}({v}, c6, h5), z0, o1), z0)")


def dw_source(L, S):
    """Depthwise (C/group == 1) conv, one (batch, output channel) plane per prange step,
    vectorized over output pixels. S == 1: over the *flat* padded plane (output q reads
    input q + tap offset; the Wp - OW garbage columns per row are computed and dropped),
    DW_V vectors per tile. S == 2: per output row, stride-2 loads (even lanes of 2L floats).
    xp needs slack after the last plane (over-reads feed dropped outputs only)."""
    name = f"dw_l{L}_s{S}"
    V = DW_V if S == 1 else 2
    o = []
    w = o.append
    # each step pads its own input plane into a per-thread buffer (xq: rows of Wp, zero
    # borders; slack after it is only read for dropped outputs): the input is read once
    # from memory, no padded copy of the whole tensor is written and read back. pt < 0:
    # xf is that padded copy (small planes, where a plane's padding costs more than it saves)
    w("@pjit(fastmath=FM, boundscheck=False, error_model='numpy')")
    w(f"def {name}(xf, C, H, W, pt, pl, Hp, Wp, wf, b, toff, yf, N, O, OH, OW, rf, has_r, code,")
    w("         alpha, beta, pb, xq):")
    w("    T = toff.shape[0]")
    w("    m = O // C")
    w(f"    RW = Wp if {S} == 1 else ((OW + {L * V - 1}) // {L * V}) * {L * V}")
    w("    for t in prange(N * O):")
    w("        n = t // O")
    w("        oc = t % O")
    w("        tid = numba.get_thread_id()")
    w("        if pt < 0:     # xf is already the padded tensor (small planes: one copy)")
    w("            xp = xf")
    w("            xb = (n * C + oc // m) * Hp * Wp")
    w("        else:")
    w("            xp = xq[tid]")
    w("            xb = 0")
    w("            pad_plane(xf, (n * C + oc // m) * H * W, H, W, pt, pl, Hp, Wp, xp, 0)")
    w(f"        {name}_plane(xp, xb, Wp, wf, oc * T, b[oc], toff, T, OH, OW, RW,")
    w("                     pb[tid], yf, (n * O + oc) * OH * OW, rf, has_r, code,")
    w("                     alpha, beta)")
    w("")
    w("")
    w("@njit(fastmath=FM, boundscheck=False, error_model='numpy')")
    w(f"def {name}_plane(xp, xb, Wp, wf, wb, b, toff, T, OH, OW, RW, buf, yf, yb, rf, has_r, code,")
    w("               alpha, beta):")
    w(f"    bv = vsplat{L}(b)")
    if S == 1:
        w(f"    for q0 in range(0, OH * Wp, {L * V}):")
        w("        xq = xb + q0")
        for v in range(V):
            w(f"        a{v} = bv")
        w("        for tt in range(T):")
        w(f"            wv = vbc{L}(wf, wb + tt)")
        w("            xo = xq + toff[tt]")
        for v in range(V):
            w(f"            a{v} = vfma{L}(vld{L}(xp, xo + {v * L}), wv, a{v})")
        for v in range(V):
            w(f"        vst{L}(buf, q0 + {v * L}, a{v})")
    else:
        w("    for oy in range(OH):")
        w(f"        for x0 in range(0, OW, {L * V}):")
        w(f"            xq = xb + oy * {S} * Wp + x0 * {S}")
        for v in range(V):
            w(f"            a{v} = bv")
        w("            for tt in range(T):")
        w(f"                wv = vbc{L}(wf, wb + tt)")
        w("                xo = xq + toff[tt]")
        for v in range(V):
            w(f"                a{v} = vfma{L}(vld2_{L}(xp, xo + {2 * v * L}), wv, a{v})")
        for v in range(V):
            w(f"            vst{L}(buf, oy * RW + x0 + {v * L}, a{v})")
    w("    if code <= ActCode.RELU or code == ActCode.CLIP or code == ActCode.HARD_SWISH:")
    w("        # vector epilogue, scalar row tails")
    emit_act_consts(w, L, "        ")

    # rows before the last: whole vectors, the last one spilling into the next row of the
    # same plane (rewritten right after); last row: whole vectors, then one overlapping
    # vector ending at OW, or scalars when OW < lanes.
    def vec_store(ind, off):
        w(f"{ind}v = vld{L}(buf, bb + {off})")
        w(f"{ind}if has_r:")
        w(f"{ind}    v = vadd{L}(v, vld{L}(rf, rb + {off}))")
        emit_act_vec(w, L, ind, "v")
        w(f"{ind}vst{L}(yf, rb + {off}, v)")
    # (rows narrower than the lanes: only rows whose spill stays inside the plane)
    w("        nv = OH - 1")
    w(f"        if OW < {L}:")
    w(f"            nv = (OH * OW - {L}) // OW + 1 if OH * OW >= {L} else 0")
    w("        for oy in range(nv):")
    w("            rb = yb + oy * OW")
    w("            bb = oy * RW")
    w(f"            for ox in range(0, OW, {L}):")
    vec_store("                ", "ox")
    w("        for oy in range(nv, OH):")
    w("            rb = yb + oy * OW")
    w("            bb = oy * RW")
    w(f"            for ox in range(0, OW - {L - 1}, {L}):")
    vec_store("                ", "ox")
    w(f"            if OW % {L} != 0:")
    w(f"                if OW >= {L}:")
    vec_store("                    ", f"OW - {L}")
    w("                else:")
    w("                    for ox in range(OW):")
    w("                        v1 = ldf(buf, bb + ox)")
    w("                        if has_r:")
    w("                            v1 += ldf(rf, rb + ox)")
    w("                        stf(yf, rb + ox, act_call(v1, code, alpha, beta))")
    w("        return")
    w("    for oy in range(OH):")
    w("        for ox in range(OW):")
    w("            i = yb + oy * OW + ox")
    w("            v = ldf(buf, oy * RW + ox)")
    w("            if has_r:")
    w("                v += ldf(rf, i)")
    w("            stf(yf, i, act_call(v, code, alpha, beta))")
    return name, "\n".join(o) + "\n"


def qconv_source(k, P, S, tier):
    """(name, source) of the uint8 x int8 tile kernel: like ``conv_source`` with L = 16 int32
    lanes. xq is the padded input as int32 words (4 uint8 input channels of one pixel each,
    layout (N, C4, Hp, Wp)), wt the int8 weights as int32 words (ceil(O/B), C4, kh*kw, B).
    Accumulators are int32 (``Q_DOT[tier]`` adds 4 products per lane); the epilogue is
    y = float(acc) * sc[oc] + bb[oc] (sc = weight scale x input scale, bb = bias minus the
    zero-point correction), then the fp32 kernels' activation / residual store. Tier
    ``vnni2``: wt holds the levels 2 bits each, 4 int32 a weight vector (qconv.t2_pack)."""
    L = 16
    B = L * k
    dot = Q_DOT[Q_TIER_OF[tier]]
    t2 = tier == "vnni2"
    name = f"qconv_k{k}_p{P}_s{S}_{tier}"
    o = []
    w = o.append
    tile_header(w, name, "xq, C4, Hp, Wp, wt, sc, bb, qw, qp, qf", "C4", B, P, S)
    for j in range(k):
        for p in range(P):
            w(f"    a{j}_{p} = vzeroi16()")
    tile_reduce(w, "C4", "vld2b16" if t2 else "vldi16", "vbci16(xq, ",
                lambda j, p: f"{dot}(a{j}_{p}, b, w{j})", L, k, P, S, wl=4 if t2 else None)
    for j in range(k):
        w(f"    s{j} = vld16(sc, ob * {B} + {j * L})")
        w(f"    c{j} = vld16(bb, ob * {B} + {j * L})")
    for j in range(k):
        for p in range(P):
            w(f"    f{j}_{p} = vfma16(vitof16(a{j}_{p}), s{j}, c{j})")
    tile_epilogue(w, "f", 16, k, P, qout=True)
    return name, "\n".join(o) + "\n"


def qtier_source(fam, L, k, P, S):
    """(name, source) of an int8 tile kernel of a tier without VNNI: the tile, layouts and
    epilogue of ``qconv_source`` with L = 16 or 8 int32 lanes; the reduction accumulates
    in int16 and widens to int32 after at most ``smax`` steps (an argument:
    qconv.pmadd_steps). ``pm``: ``h += vpmaddubsw(x, w)``, ``a += vpmaddwd(h, 1)``; ``g``:
    ``h += zext(x) * w`` on int16 lanes (int16 weights, (ceil(O/B), C4, kh*kw, B, 4)), ``a +=``
    the sum of each lane's 4 int16. The steps between widenings are ``smax // T`` whole
    channel groups, or runs of ``smax`` taps of one group when it has more taps (the 7x7
    stem)."""
    B = L * k
    name = f"qconv_{fam}{L}_k{k}_p{P}_s{S}"
    o = []
    w = o.append
    tile_header(w, name, "xq, C4, Hp, Wp, wt, sc, bb, smax, qw, qp, qf", "C4", B, P, S)
    for j in range(k):
        for p in range(P):
            w(f"    a{j}_{p} = vzeroi{L}()")
    if fam == "pm":
        hzero, wload, bcast, widen, WS = f"vzerow{L}()", f"vldi{L}", f"vbci{L}", f"vwiden{L}", L
        step = lambda j, p: f"vaddw{L}(h{j}_{p}, vmaddubs{L}(b, w{j}))"  # noqa: E731
    else:
        hzero, wload, bcast, widen, WS = f"vzeroh{L}()", f"vldw{L}", f"vbcw{L}", f"vwidenq{L}", 4 * L
        step = lambda j, p: f"vmlaw{L}(h{j}_{p}, b, w{j})"  # noqa: E731
    BW = B * WS // L            # weight elements per step (int32 words, or int16 for g)
    w("    CB = smax // T if smax >= T else 1")
    w("    QB = T if smax >= T else smax")
    w(f"    wb = ob * K * {BW}")
    w("    for c0 in range(0, C4, CB):")
    w("        c1 = min(c0 + CB, C4)")
    w("        for q0 in range(0, T, QB):")
    w("            q1 = min(q0 + QB, T)")
    for j in range(k):
        for p in range(P):
            w(f"            h{j}_{p} = {hzero}")
    w("            for c in range(c0, c1):")
    w("                cb = xb + c * HW")
    w(f"                wi = wb + (c * T + q0) * {BW}")
    w("                for q in range(q0, q1):")
    w("                    xo = cb + toff[q]")
    for j in range(k):
        w(f"                    w{j} = {wload}(wt, wi + {j * WS})")
    for p in range(P):
        w(f"                    b = {bcast}(xq, xo + {p * S})")
        for j in range(k):
            w(f"                    h{j}_{p} = {step(j, p)}")
    w(f"                    wi += {BW}")
    for j in range(k):
        for p in range(P):
            w(f"            a{j}_{p} = {widen}(a{j}_{p}, h{j}_{p})")
    for j in range(k):
        w(f"    s{j} = vld{L}(sc, ob * {B} + {j * L})")
        w(f"    c{j} = vld{L}(bb, ob * {B} + {j * L})")
    for j in range(k):
        for p in range(P):
            w(f"    f{j}_{p} = vfma{L}(vitof{L}(a{j}_{p}), s{j}, c{j})")
    tile_epilogue(w, "f", L, k, P, qout=True)
    return name, "\n".join(o) + "\n"


# ----------------------------------------------------------------------------- shared drivers
# One prange driver per argument-type family, shared by all of its tiles: it receives the
# tile's address (``TileKernel``) and calls it through a first-class function pointer.
# Numba's parallel passes cost ~1.7 s per driver compile (measured: more than most tile
# bodies), paid once per family instead of once per tile; an indirect call per tile is
# noise next to a tile's k*P*C*T FMAs. The signatures are explicit (the function pointer
# must match the tile's compiled signature exactly).
_f32, _i64, _b1 = numba.float32, numba.int64, numba.boolean
_TAIL = (numba.int64[::1], numba.float32[::1], _i64, _i64, _i64, _i64, numba.float32[::1], _b1,
         _i64, _f32, _f32)
# int8 tiles that write their int8 consumer's input (quant.mark_quantized_producers):
# qw the consumer's padded words, qp = (on, its C4, Hp, Wp, pad top, pad left), qf = (scale,
# zero point): tile_store_q
_QOUT = (numba.int32[::1], numba.int64[::1], numba.float32[::1])
FAMILY_HEAD = {   # family -> (head argument names, their types)
    "f32": ("xp, C, Hp, Wp, wt, WB, bp, pf, pg",
            (numba.float32[::1], _i64, _i64, _i64, numba.float32[::1], _i64, numba.float32[::1],
             numba.float32[::1], numba.int64[::1])),
    "vnni": ("xq, C4, Hp, Wp, wt, sc, bb, qw, qp, qf",
             (numba.int32[::1], _i64, _i64, _i64, numba.int32[::1], numba.float32[::1],
              numba.float32[::1]) + _QOUT),
    "pm": ("xq, C4, Hp, Wp, wt, sc, bb, smax, qw, qp, qf",
           (numba.int32[::1], _i64, _i64, _i64, numba.int32[::1], numba.float32[::1],
            numba.float32[::1], _i64) + _QOUT),
    "g": ("xq, C4, Hp, Wp, wt, sc, bb, smax, qw, qp, qf",
          (numba.int32[::1], _i64, _i64, _i64, numba.int16[::1], numba.float32[::1],
           numba.float32[::1], _i64) + _QOUT),
}
assert FAMILIES == tuple(FAMILY_HEAD)


def tile_sig(fam):
    """The tile function's signature: the driver's arguments, then (buf, t, NB, TX)."""
    return numba.types.none(*(FAMILY_HEAD[fam][1] + _TAIL
                              + (numba.float32[::1], _i64, _i64, _i64)))


def drive_sig(fam):
    return numba.types.none(_i64, _i64, _i64, *(FAMILY_HEAD[fam][1] + _TAIL),
                            numba.float32[:, ::1])


def _fn_caster(fam):
    """An intrinsic: int64 address -> a first-class function of ``tile_sig(fam)`` (called
    with Numba's own calling convention, through the ``jit_addr`` member)."""
    ftype = numba.types.FunctionType(tile_sig(fam))

    @intrinsic
    def as_tile(typingctx, addr):
        def codegen(context, builder, signature, args):
            fn = cgutils.create_struct_proxy(ftype)(context, builder)
            fn.jit_addr = builder.inttoptr(args[0], cgutils.voidptr_t)
            return fn._getvalue()
        return ftype(numba.int64), codegen
    return as_tile


for _fam in FAMILIES:
    globals()[f"as_tile_{_fam}"] = _fn_caster(_fam)


# The driver's prange runs over at most DRIVE_CHUNKS runs of consecutive tiles, each run
# calling its tiles serially. With a prange step per tile the avx2 tier's small int8 tiles
# (pm8 k2 P7: ~1 us each) ran no faster on 2 threads than on 1 (a 64->64 3x3 at 56x56: 1.19
# ms at 1 thread, 1.04 at 2; with runs: 1.06, 0.58). Why is not established: runs that
# still take a view of the tile buffer per tile were as fast, so it is not the view's
# reference count. Numba splits a prange into equal contiguous blocks per thread, so 64 runs
# keep the balance within 1/32 at 2 threads and leave several runs per thread up to 16.
DRIVE_CHUNKS = 64


def drive_source(fam):
    """(name, source) of a family's prange driver. ``B``, ``P``: the tile's channels and
    pixels (runtime values here; compile-time constants inside the tile)."""
    head = FAMILY_HEAD[fam][0]
    args = f"{head}, toff, yf, N, O, OH, OW, rf, has_r, code, alpha, beta"
    name = f"drive_{fam}"
    o = []
    w = o.append
    w(f"@pjit(drive_sig({fam!r}), fastmath=FM, boundscheck=False, error_model='numpy')")
    w(f"def {name}(fa, B, P, {args}, tb):")
    w(f"    f = as_tile_{fam}(fa)")
    w("    NB = (O + B - 1) // B")
    w("    TX = (OW + P - 1) // P")
    w("    NT = N * NB * OH * TX")
    w(f"    CH = (NT + {DRIVE_CHUNKS - 1}) // {DRIVE_CHUNKS}")
    w("    for c in prange((NT + CH - 1) // CH):")
    w("        buf = tb[numba.get_thread_id()]")
    w("        for t in range(c * CH, min(NT, (c + 1) * CH)):")
    w(f"            f({args}, buf, np.int64(t), NB, TX)")
    return name, "\n".join(o) + "\n"


SOURCES = {"conv": conv_source, "dw": dw_source, "qconv": qconv_source, "qtier": qtier_source,
           "drive": drive_source}


def family(kind, key):
    """The driver family of a tile kernel."""
    if kind == "conv":
        return "f32"
    if kind == "qconv":
        return Q_TIER_OF[key[3]]
    return key[0]


def tile_shape(kind, key):
    """(B channels, P pixels) of a tile kernel."""
    if kind == "conv":
        return key[0] * key[1], key[2]
    if kind == "qconv":
        return 16 * key[0], key[1]
    return key[1] * key[2], key[3]


class TileKernel:
    """A tile kernel: the tile function (compiled for ``tile_sig``) run by its family's
    shared driver. Called with the arguments the per-tile kernels took."""

    def __init__(self, kind, key, name, tile):
        self.kind, self.key, self.name, self.tile = kind, key, name, tile
        self.fam = family(kind, key)
        self.B, self.P = tile_shape(kind, key)
        self.addr = 0
        self.drive = None

    def _bind(self):
        from numba.experimental.function_type import _get_jit_address
        with _LOCK:
            if not self.addr:
                self.drive = kernel("drive", (self.fam,))
                sig = tile_sig(self.fam)
                self.tile.compile(sig.args)
                self.addr = _get_jit_address(self.tile, sig)
        return self.addr

    def __call__(self, *args):
        addr = self.addr or self._bind()
        try:
            self.drive(addr, self.B, self.P, *args)
        except TypeError:
            # a read-only array (a file view) does not match the driver's signature: copy
            args2 = tuple(np.array(a) if isinstance(a, np.ndarray) and not a.flags.writeable
                          else a for a in args)
            if all(a is b for a, b in zip(args, args2)):
                raise
            self.drive(addr, self.B, self.P, *args2)

    def as_call(self, args):
        """(function, arguments) equivalent to ``self(*args)`` (``_common.bind_calls``);
        read-only arrays copied once, as ``__call__`` copies them per call."""
        addr = self.addr or self._bind()
        args = tuple(np.array(a) if isinstance(a, np.ndarray) and not a.flags.writeable
                     else a for a in args)
        return self.drive, (addr, self.B, self.P) + args

    @property
    def _cache(self):
        return self.tile._cache

    @property
    def signatures(self):
        """The compiled signatures of the tile and of its driver."""
        return list(self.tile.signatures) + list(self.drive.signatures if self.drive else [])

    @property
    def py_func(self):   # (tests read the tile through ``py_func.__globals__[name + "_tile"]``)
        return _PyFuncView(self.name, globals())

    def inspect_asm(self):
        self.addr or self._bind()
        return {**self.tile.inspect_asm(), **self.drive.inspect_asm()}


class _PyFuncView:
    def __init__(self, name, g):
        self.__name__ = name
        self.__globals__ = g


# ----------------------------------------------------------------------------- the factory
_LINES_PER_KERNEL = 1000   # every generated kernel is shorter (checked in _build)
_KERNELS: dict = {}
_LOCK = threading.RLock()
_FILE = os.path.abspath(__file__)
_lines: list | None = None   # this file's lines + the generated kernels, for linecache


def _line_base(kind, key) -> int:
    """First line of a kernel's fixed range (Numba's cache names a function by its file,
    qualified name and first line: the range must not depend on the order of builds)."""
    try:
        i = _INDEX[(kind, key)]
    except KeyError:
        raise KeyError(f"no {kind} tile kernel {key} in the menu (gen_simd_conv.MENU)") from None
    return 100_000 + i * _LINES_PER_KERNEL


def _register_lines(base, src):
    """Add ``src`` at line ``base`` + 1 of this file's linecache entry (mtime None: never
    checked against the file, which keeps its own lines at their places)."""
    global _lines
    if _lines is None:
        with open(_FILE) as fh:
            _lines = fh.read().splitlines(keepends=True)
    new = src.splitlines(keepends=True)
    if len(_lines) < base + len(new):
        _lines.extend(["\n"] * (base + len(new) - len(_lines)))
    _lines[base:base + len(new)] = new
    linecache.cache[_FILE] = (len("".join(_lines)), None, _lines, _FILE)


def _build(kind, key):
    name, src = SOURCES[kind](*key)
    base = _line_base(kind, key)
    n = src.count("\n")
    assert n < _LINES_PER_KERNEL, (name, n)
    _register_lines(base, src)
    exec(compile("\n" * base + src, _FILE, "exec"), globals())
    if kind in ("conv", "qconv", "qtier"):
        return TileKernel(kind, key, name, globals()[name + "_tile"])
    return globals()[name]


def kernel(kind, key):
    """The dispatcher of a tile kernel, generated and compiled on first use (Numba compiles
    it, or loads it from the disk cache, at its first call)."""
    kern = _KERNELS.get((kind, key))
    if kern is None:
        with _LOCK:
            kern = _KERNELS.get((kind, key))
            if kern is None:
                kern = _KERNELS[(kind, key)] = _build(kind, key)
    return kern


def is_cached(kind, key) -> bool:
    """Is the kernel's machine code in the disk cache (an index file for it exists)?"""
    try:
        return os.path.exists(kernel(kind, key)._cache._cache_file._index_path)
    except AttributeError:   # no disk cache, or another Numba's internals
        return False


# tile kernels that prepared layers will ask for: (kind, key prefix: the key without P for
# conv / qconv, whose P depends on the row width) -> for the "~N s" of the compile notice
EXPECTED: set = set()
SECONDS_PER_KERNEL = 1.5    # measured: 0.4-1 s per tile + ~0.8 s per new tile_store (B, P), 2-core Zen 4


def _prefix(kind, key):
    if kind == "qtier":
        return key[:3] + key[4:]
    return key if kind == "dw" else key[:2] + key[3:] if kind == "conv" else key[:1] + key[2:]


def estimate_seconds() -> float:
    """Rough time to compile what the prepared layers need and the disk cache lacks."""
    n = 0
    for kind, pre in list(EXPECTED):
        keys = [key for kd, key in MENU if kd == kind and _prefix(kind, key) == pre]
        if keys and not any(is_cached(kind, key) for key in keys):
            n += 1
    return SECONDS_PER_KERNEL * n + (7.0 if _jit.COLD_START else 1.5)   # (+ the other ops)


def conv_kernel(L, k, P, S):
    return kernel("conv", (L, k, P, S))


def dw_kernel(L, S):
    return kernel("dw", (L, S))


def qconv_kernel(k, P, S, tier):
    return kernel("qconv", (k, P, S, tier))


def qtier_kernel(fam, L, k, P, S):
    return kernel("qtier", (fam, L, k, P, S))


_jit.estimate_hook = estimate_seconds

if __name__ == "__main__":   # print one kernel's source
    kind = sys.argv[1]
    key = tuple(a if a in Q_TIER_OF or a in ("pm", "g") else int(a) for a in sys.argv[2:])
    print(SOURCES[kind](*key)[1], end="")
