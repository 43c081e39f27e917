"""float32 depthwise convs vectorized over *channels* (small planes and stride 2).

The plane kernel (``gen_simd_conv.dw_source``) holds L consecutive output pixels of one
channel per register. On small maps (14x14, 7x7: a row is narrower than the lanes) and at
stride 2 (every tap a two-load deinterleave) its per-plane costs dominate: MobileNetV2's
960-channel 7x7 layer ran at 3.6x onnxruntime's time, the 576-channel 14x14/2 one at 5.3x.

Here a register holds L channels of one pixel, as in onnxruntime's NCHWc kernels, but the
tensors stay NCHW: each prange step takes L channels of one image and a band of output rows
(``bands``), transposes the band's input rows into a zero-bordered per-thread buffer
``(rows, Wp, L)`` (``simd.vtr16`` / ``vtr8``: n loads, log2(n) rounds of interleaving
shuffles, n stores), runs P output pixels per step with one weight vector per tap shared by
P FMAs (stride and dilation are only offsets), keeps the result as ``(R, OW, L)`` and
transposes it back into the NCHW output with bias, residual and Relu / Clip / HardSwish as
vectors (other activations and partial channel blocks: scalar) -- or quantizes it into its
int8 consumer's input (``qo``: quant.mark_quantized_producers). Weights: the dense tiles'
SIMD layout with one input channel (``simd_layout.expand_simd``, k = 1). Channel multiplier
1 only (O == C == group).

Work order (``ROWS``, ``EVEN``): bands outer, channel blocks inner, so that a thread's
contiguous share of the prange (Numba splits it into one run per thread) is a band of rows
of every channel, the pixels its 1x1 producer (pw_f32, the int8 pixel-vector kernels:
pixel tiles outer) and its 1x1 reader work on; and bands of equal height (the last no
longer overlapping the one before by up to R - 1 rows), about as many a thread. Channel
blocks outer, each thread read the rows the other core wrote. Measured (this Xeon, 2
threads, in-process A/B, both off as B, outputs bit-identical): MobileNetV2 f32 B / A
1.014-1.017 per run (its stride-1 56x56 and 28x28 layers 1.22-1.31x, the 112x112 one
1.11x), MobileNetV3-small f32 1.005, MobileNetV2 int8 1.004-1.005 (its 112 -> 56 layer
1.15x); the order alone, bands unchanged, 0.995 (each thread's share then cut a band).
The same order for the other kernels (stems, the channel-vector tiles, AMX, per-channel
elementwise rows) was not faster: ResNet-20 f32 0.96x, ResNet-18 int8 0.99x.

Used by ``conv.simd_dwconv`` where ``use`` says (the measured rule is at ``use``).
Kernels are generated from one template per lane count and compiled with this file as
their source (Numba's disk cache keys on it), like ``pw_f32``.
"""
from __future__ import annotations

import numba  # noqa: F401  (generated kernels)
import numpy as np
from numba import prange  # noqa: F401  (generated kernels)

from .. import _jit  # noqa: F401
from .._jit import pjit  # noqa: F401
from ..activation import ActCode  # noqa: F401
from ._common import (NoBind, act_call, emit, nchw_only, set_blk_out,  # noqa: F401
                      tls_buffer, tls_rows)
from .gen_simd_conv import emit_act_consts, emit_act_vec
from .pw_f32 import BIN_LANES, BIN_MIN_HW, blk_fits
from .simd import (has_vnni, vadd8, vadd16, vclip8, vclip16,  # noqa: F401
                   vdpbusd16, vfma8, vfma16, vfshr16, vitof16, vldi16, vqblk16, vsplati16,
                   vqst4_16, vstwords16, vzeroi16, vld8, vld16, vqpack8, vqpack16,
                   vstword4_8, vstword4_16,
                   vqtile8, vqtile16, vqword8, vqword16, vrelu8, vrelu16, vsplat8, vsplat16,
                   vst8, vst16,
                   vstword8, vstword16, vtr8, vtr16, vtrn8, vtrn16)

P_OF = {16: 8, 8: 8}     # output pixels per step (P accumulators + 1 weight vector)
DOT = True               # False: the float32 kernel for int8 depthwise on avx512vnni too (A/B)
ON = True                # False: the plane kernel for every depthwise conv (A/B)
MAX_PIXELS = 32 * 32     # stride 1: input planes up to this size (larger: the plane kernel)
BLK_ON = True            # False: no blocked hand-off from the producer (conv.link_blocked; A/B)
BLK_OUT_ON = True        # False: no blocked hand-off to a 1x1 reader (conv.link_blocked; A/B)
# stride 1 with a blocked input: planes up to this size. 16 lanes unlimited: with no
# transposes in, dw_cv beats the plane kernel in the model (MobileNetV2 f32 0.983-0.989 in
# alternating runs, its 112x112 and 56x56 stride-1 layers), though alone it is 1.06-1.12x
# slower. 8 lanes: MAX_PIXELS, as without the hand-off (MobileNetV2's 112x112 one 176 vs
# 115 us).
BLK_MAX_PIXELS = {16: 1 << 62, 8: MAX_PIXELS}
BAND_BYTES = 128 * 1024  # padded input rows per band (per thread; L2 holds them)
ROWS = True              # bands outer: each thread the same rows of every channel (A/B)
EVEN = True              # bands of equal height (A/B: as many rows as fit, the last band
                         # overlapping the one before by up to R - 1 rows)


def _qst4(L):
    """The 4-pixel quantized store: 16 lanes vqst4_16 (packs, AVX-512BW), else vstword4."""
    return "vqst4_16" if L == 16 else f"vstword4_{L}"


def _qarg(L, v):
    return v if L == 16 else f"vqpack{L}({v}, qs, qz)"


def _qtail(L, nv):
    return f", qs, qz, {nv}" if L == 16 else ""


def _emit_dot_group(w, PP):
    """dwcvd_l16: the int32 sums of PP output pixels from ox (a multiple of 4, so ox * S
    starts a block): per kernel row and tap group, the blocks the PP windows span, each
    window one block or a vfshr16 of two (the shift fixed by the pixel and the stride),
    then converted to float32."""
    for p in range(PP):
        w(f"                a{p} = vzeroi16()")
    w("                xbk = (ox * S) // 4")
    w("                for kh in range(KH):")
    w("                    rk = ((lr * S + kh) * WB + xbk) * 16")
    w("                    for g in range(G):")
    w("                        wv = vldi16(wq, wb + (kh * G + g) * 16)")
    for S in (1, 2):
        w(f"                        {'if' if S == 1 else 'else'}{' S == 1' if S == 1 else ''}:")
        nblk = ((PP - 1) * S) // 4 + 2
        for j in range(nblk):
            w(f"                            b{j} = vldi16(xp, rk + (g + {j}) * 16)")
        for p in range(PP):
            j, sh = divmod(p * S, 4)
            win = f"b{j}" if sh == 0 else f"vfshr16(b{j + 1}, b{j}, {8 * sh})"
            w(f"                            a{p} = vdpbusd16(a{p}, {win}, wv)")
    for p in range(PP):
        w(f"                a{p} = vitof16(a{p})")


def _source(L, qin=False, dot=False):
    """The kernel for L lanes; ``qin``: its input is uint8 in the int8 layout (words of 4
    channels, ``(N, C4, H*W)``, unpadded: quant.mark_quantized_producers), taken as the
    codes q into the band (the border: the zero point), with the weights' int8 levels: the
    sum of q * level is exact in float32 (below 2**24), then ``acc * qsc + bc`` (qsc: the
    channel's alpha * s; bc: bias - zp * sum(levels) * alpha * s), the int8 convs' epilogue
    (``dwcvq_l{L}(xq, qsc, zq, ...)``).

    ``dot`` (with qin, L = 16; the avx512vnni tier): the same function with the taps summed
    in int32 by ``vpdpbusd``. The band holds words of 4 consecutive pixels of one channel
    (``simd.vqblk16``; rows of WB blocks of 4 pixels x 16 channels, block k = padded
    columns 4k..4k+3: the input shifted by pl pixels, the zero point around it), the weights
    words of 4 taps' levels (``wq``: (ceil(C/16), KH, G, 16), G = ceil(KW/4)), and output
    pixel ox's window at tap group g is the word at padded column ox * S + 4g
    (``simd.vfshr16`` of two blocks): one ``vpdpbusd`` per 4 taps of 16 channels. The sums
    are the float kernel's exact integers, so the outputs are its bits (dwcvd_l16: stride
    1 or 2, dilation 1, pl <= 3)."""
    P = P_OF[L]
    assert P % 4 == 0   # the quantized store takes 4 pixels at a time
    o = []
    w = o.append
    w("@pjit(fastmath=True, boundscheck=False, error_model='numpy')")
    if dot:
        assert qin and L == 16
        w(f"def dwcvd_l{L}(xq, qsc, zq, zw, C, H, W, pt, pl, KH, G, WB, S, wq, bc, yf, N, OH, OW,")
        w("               R, RI, NBND,")
    elif qin:
        w(f"def dwcvq_l{L}(xq, qsc, zq, C, H, W, pt, pl, Hp, Wp, S, toff, wc, bc, yf, N, OH, OW,")
        w("               R, RI, NBND,")
    else:
        w(f"def dwcv_l{L}(xf, C, H, W, pt, pl, Hp, Wp, S, toff, wc, bc, yf, N, OH, OW, R, RI, NBND,")
    w("              rf, has_r, code, alpha, beta, xb, ob, tt_, qo, qs, qz, qw, C4, rows"
      + ("):" if qin else ", blk, bout):"))
    if not dot:
        w("    T = toff.shape[0]")
    w(f"    NB = (C + {L - 1}) // {L}")
    w("    HWo = OH * OW")
    w("    for t in prange(N * NB * NBND):")
    # rows: channel blocks fastest, so a thread's contiguous share of the prange is a band
    # of rows of every channel, the rows its producer's thread wrote (bands)
    w("        if rows:")
    w("            cb = t % NB")
    w("            u = t // NB")
    w("            band = u % NBND")
    w("            n = u // NBND")
    w("        else:")
    w("            band = t % NBND")
    w("            u = t // NBND")
    w("            cb = u % NB")
    w("            n = u // NB")
    w(f"        c0 = cb * {L}")
    w(f"        nc = min({L}, C - c0)")
    # output rows r0 .. r0 + R (the last band overlaps the one before: every band has R
    # rows); buffer row i = padded input row r0 * S + i, input row r0 * S + i - pt
    w("        r0 = min(band * R, OH - R)")
    w("        iy0 = r0 * S - pt")
    w("        tid = numba.get_thread_id()")
    w("        xp = xb[tid]")
    w("        op = ob[tid]")
    w("        tb = tt_[tid]")
    if not dot and L == 16:   # the slack the last group reads: zeros, not stale floats
        w("        for q in range(RI * Wp, RI * Wp + 8):")
        w(f"            vst{L}(xp, q * {L}, vsplat{L}(np.float32(0)))")
    if dot:   # the band: rows of WB blocks (words: one channel's 4 pixels), zw outside
        w("        zv = vsplati16(zw)")
        w("        last = (nc + 3) // 4 - 1")
        w("        src = (n * C4 + c0 // 4) * H * W")
        w("        NBI = (W + 3) // 4")
        w("        for i in range(RI):")
        w("            iy = iy0 + i")
        w("            rb = i * WB * 16")
        w("            if iy < 0 or iy >= H:")
        w("                for k in range(WB):")
        w("                    vstwords16(xp, rb + k * 16, zv)")
        w("            else:")
        w("                s0 = src + iy * W")
        w("                prev = zv")
        w("                for k in range(WB):")
        w("                    if k < NBI:")
        w("                        cur = vqblk16(xq, s0 + 4 * k, H * W, last,")
        w("                                      min(4, W - 4 * k), zw)")
        w("                    else:")
        w("                        cur = zv")
        w("                    if pl == 0:")
        w("                        vstwords16(xp, rb + k * 16, cur)")
        w("                    else:   # columns 4k..4k+3 = input pixels 4k - pl ..")
        w("                        vstwords16(xp, rb + k * 16, vfshr16(cur, prev, (4 - pl) * 8))")
        w("                    prev = cur")
    else:
        w(f"        z = vsplat{L}({'zq' if qin else 'np.float32(0)'})")
        w("        ia = max(iy0, 0)")
        w("        ib = min(iy0 + RI, H)")
        # zero (the zero point for uint8 input): rows outside the input, the pad columns (the
        # whole row for a partial float32 block copied by the scalar loop)
        if not qin:
            w(f"        vin = blk or W >= {L} or (ib - ia) * W >= {L}")
        w("        for i in range(RI):")
        w("            iy = iy0 + i")
        w("            rb = i * Wp")
        w(f"            if iy < 0 or iy >= H{'' if qin else f' or (nc < {L} and not vin)'}:")
        w("                for q in range(rb, rb + Wp):")
        w(f"                    vst{L}(xp, q * {L}, z)")
        w("            else:")
        w("                for q in range(rb, rb + pl):")
        w(f"                    vst{L}(xp, q * {L}, z)")
        w("                for q in range(rb + pl + W, rb + Wp):")
        w(f"                    vst{L}(xp, q * {L}, z)")
        if qin:   # per pixel: its L/4 words (one per channel group) -> L floats
            w("        nw1 = (nc + 3) // 4 - 1")
            w("        src = (n * C4 + c0 // 4) * H * W")
            w("        for yy in range(ia, ib):")
            w(f"            d = ((yy - iy0) * Wp + pl) * {L}")
            w("            s0 = src + yy * W")
            w("            xx = 0")
            w(f"            if nw1 == {L // 4 - 1}:   # L pixels a step: L loads, then shuffles")
            w(f"                while xx + {L} <= W:")
            w(f"                    vqtile{L}(xq, s0 + xx, H * W, xp, d + xx * {L}, {L})")
            w(f"                    xx += {L}")
            w("            for xx in range(xx, W):")
            w(f"                vst{L}(xp, d + xx * {L}, vqword{L}(xq, s0 + xx, H * W, nw1))")
        else:
            # L channel rows of L pixels -> L pixel vectors (a partial block: the last
            # channel's row again in the lanes past nc, dropped at the end); the last chunk of
            # a row (or of the band) overlaps the one before (same values)
            w("        src = (n * C + c0) * H * W")
            w("        if blk:         # blocked input (its producer's tiles): rows of vectors")
            w(f"            src = (n * NB + cb) * H * W * {L}")
            w("            for yy in range(ia, ib):")
            w(f"                d = ((yy - iy0) * Wp + pl) * {L}")
            w(f"                s = src + yy * W * {L}")
            w("                for xx in range(W):")
            w(f"                    vst{L}(xp, d + xx * {L}, vld{L}(xf, s + xx * {L}))")
            w(f"        elif W >= {L}:  # whole rows: each chunk straight to its padded place")
            w("            for yy in range(ia, ib):")
            w(f"                d = ((yy - iy0) * Wp + pl) * {L}")
            w("                s = src + yy * W")
            w(f"                for x00 in range(0, W, {L}):")
            w(f"                    x0 = min(x00, W - {L})")
            w(f"                    vtrn{L}(xf, s + x0, H * W, xp, d + x0 * {L}, {L}, nc)")
            w("        elif vin:       # narrow rows: chunks of the flat band through tb")
            w(f"            for p00 in range(ia * W, ib * W, {L}):")
            w(f"                p0 = min(p00, ib * W - {L})")
            w(f"                vtrn{L}(xf, src + p0, H * W, tb, 0, {L}, nc)")
            w("                yy = p0 // W")
            w("                xx = p0 - yy * W")
            w(f"                d = ((yy - iy0) * Wp + pl + xx) * {L}")
            w(f"                for j in range({L}):")
            w(f"                    vst{L}(xp, d, vld{L}(tb, j * {L}))")
            w("                    xx += 1")
            w(f"                    d += {L}")
            w("                    if xx == W:")
            w("                        xx = 0")
            w(f"                        d += (Wp - W) * {L}")
            w("        else:")
            w("            for c in range(nc):")
            w("                src = (n * C + c0 + c) * H * W")
            w("                for yy in range(ia, ib):")
            w(f"                    d = ((yy - iy0) * Wp + pl) * {L} + c")
            w("                    s = src + yy * W")
            w("                    for xx in range(W):")
            w(f"                        xp[d + xx * {L}] = xf[s + xx]")
    # the FMAs: P pixels of a row per step, then single pixels
    if qin:   # exact sums of q * level from 0, then scale and bias
        w(f"        bv = vsplat{L}(np.float32(0))")
        w(f"        sv = vld{L}(qsc, c0)")
        w(f"        bq = vld{L}(bc, c0)")
    else:
        w(f"        bv = vld{L}(bc, c0)")
    if dot:
        w("        wb = cb * KH * G * 16")
    else:
        w(f"        wb = cb * T * {L}")
        w(f"        SL = S * {L}")
    # whole channel blocks for an int8 consumer: activated, quantized and stored from the
    # accumulators (4 pixels a 4-word store a plane), no float band output
    w(f"        qd = qo and nc == {L}")
    emit_act_consts(w, L, "        ")
    w("        wbq = (n * C4 + c0 // 4) * HWo + r0 * OW")
    w("        for lr in range(R):")
    if not dot:
        w("            rowb = lr * S * Wp")
    w("            ox = 0")
    # P pixels a step, then 4 (the row's tail); 16 lanes: groups of 4 to the row's end, the
    # last one's pixels past OW computed on what follows in the band (slack) and not stored
    # (masked stores); 8 lanes: then single pixels
    tailv = L == 16
    for PP in ((P, 4) if P > 4 else (P,)):
        if tailv and PP == 4:
            w("            while ox < OW:")
            w("                nv = min(4, OW - ox)")
        else:
            w(f"            {'while' if PP == P else 'if'} ox + {PP} <= OW:")
        if dot:
            _emit_dot_group(w, PP)
        else:
            for p in range(PP):
                w(f"                a{p} = bv")
            w(f"                xo = (rowb + ox * S) * {L}")
            w("                for tt in range(T):")
            w(f"                    wv = vld{L}(wc, wb + tt * {L})")
            w(f"                    xt = xo + toff[tt] * {L}")
            for p in range(PP):
                w(f"                    a{p} = vfma{L}(vld{L}(xp, xt + {p} * SL), wv, a{p})")
        if qin:
            for p in range(PP):
                w(f"                a{p} = vfma{L}(a{p}, sv, bq)")
        w("                if qd:")
        for k0 in range(0, PP, 4):
            for p in range(k0, k0 + 4):
                emit_act_vec(w, L, "                    ", f"a{p}")
            w(f"                    {_qst4(L)}(qw, wbq + lr * OW + ox + {k0}, HWo, "
              + ", ".join(_qarg(L, f"a{p}") for p in range(k0, k0 + 4))
              + _qtail(L, "nv" if tailv and PP == 4 else "4") + ")")
        if not qin:   # blocked output for the 1x1 reader (link_blocked, bout)
            w("                elif bout:")
            w(f"                    q = ((n * NB + cb) * HWo + (r0 + lr) * OW + ox) * {L}")
            for p in range(PP):
                emit_act_vec(w, L, "                    ", f"a{p}")
                if tailv and PP == 4:   # the row's tail: only its nv pixels
                    w(f"                    if nv > {p}:")
                    w(f"                        vst{L}(yf, q + {p * L}, a{p})")
                else:
                    w(f"                    vst{L}(yf, q + {p * L}, a{p})")
        w("                else:")
        w(f"                    q = (lr * OW + ox) * {L}")
        for p in range(PP):
            w(f"                    vst{L}(op, q + {p * L}, a{p})")
        w(f"                ox += {PP}")
    if not tailv:
        w("            while ox < OW:")
        w("                a0 = bv")
        w(f"                xo = (rowb + ox * S) * {L}")
        w("                for tt in range(T):")
        w(f"                    a0 = vfma{L}(vld{L}(xp, xo + toff[tt] * {L}),")
        w(f"                                 vld{L}(wc, wb + tt * {L}), a0)")
        if qin:
            w(f"                a0 = vfma{L}(a0, sv, bq)")
        w("                if qd:")
        emit_act_vec(w, L, "                    ", "a0")
        w(f"                    qv = vqpack{L}(a0, qs, qz)")
        w(f"                    for j in range({L // 4}):")
        w(f"                        vstword{L}(qw, wbq + j * HWo + lr * OW + ox, qv, j)")
        if not qin:
            w("                elif bout:")
            emit_act_vec(w, L, "                    ", "a0")
            w(f"                    vst{L}(yf, ((n * NB + cb) * HWo + (r0 + lr) * OW + ox) * {L},"
              " a0)")
        w("                else:")
        w(f"                    vst{L}(op, (lr * OW + ox) * {L}, a0)")
        w("                ox += 1")
    # back to NCHW: residual, activation (Relu / Clip / HardSwish as vectors after a vtr of
    # L pixel vectors; other activations and partial blocks: scalar). The band's outputs
    # are the flat range [r0 * OW, (r0 + R) * OW) of every plane.
    w("        RO = R * OW")
    # the int8 consumer's input instead (mark_quantized_producers): per pixel, the L
    # channels after the activation quantized and packed 4 a word into its (N, C4, OH*OW)
    # words; no NCHW float output (nothing else reads it)
    w("        if qd" + ("" if qin else " or bout") + ":")
    w("            pass")
    w("        elif qo:")
    w("            wbase = (n * C4 + c0 // 4) * HWo + r0 * OW")
    w("            nw = (nc + 3) // 4")
    w("            q0 = 0")
    w(f"            if nw == {L // 4}:   # 4 pixels a step: one 4-word store a plane")
    w("                while q0 + 4 <= RO:")
    for k in range(4):
        w(f"                    v{k} = vld{L}(op, (q0 + {k}) * {L})")
        emit_act_vec(w, L, "                    ", f"v{k}")
    w(f"                    {_qst4(L)}(qw, wbase + q0, HWo, "
      + ", ".join(_qarg(L, f"v{k}") for k in range(4)) + _qtail(L, "4") + ")")
    w("                    q0 += 4")
    w("            for q in range(q0, RO):")
    w(f"                v = vld{L}(op, q * {L})")
    emit_act_vec(w, L, "                ", "v")
    w(f"                qv = vqpack{L}(v, qs, qz)")
    w("                for j in range(nw):")
    w(f"                    vstword{L}(qw, wbase + j * HWo + q, qv, j)")
    w(f"        elif RO >= {L} and (code <= ActCode.RELU or code == ActCode.CLIP"
      " or code == ActCode.HARD_SWISH):")
    emit_act_consts(w, L, "            ")
    w("            db = (n * C + c0) * HWo + r0 * OW")
    w(f"            for q00 in range(0, RO, {L}):")
    w(f"                q0 = min(q00, RO - {L})")
    w(f"                vtr{L}(op, q0 * {L}, {L}, tb, 0, {L})")
    w("                for c in range(nc):")
    w(f"                    v = vld{L}(tb, c * {L})")
    w("                    yo = db + c * HWo + q0")
    w("                    if has_r:")
    w(f"                        v = vadd{L}(v, vld{L}(rf, yo))")
    emit_act_vec(w, L, "                    ", "v")
    w(f"                    vst{L}(yf, yo, v)")
    w("        else:")
    w("            for c in range(nc):")
    w("                dst = (n * C + c0 + c) * HWo + r0 * OW")
    w("                for q in range(RO):")
    w(f"                    v = op[q * {L} + c]")
    w("                    if has_r:")
    w("                        v += rf[dst + q]")
    w("                    if code == ActCode.RELU:")
    w("                        v = max(v, np.float32(0))")
    w("                    elif code == ActCode.CLIP:")
    w("                        v = min(max(v, alpha), beta)")
    w("                    elif code == ActCode.HARD_SWISH:")
    w("                        v = v * min(max(v * np.float32(1 / 6) + np.float32(0.5),")
    w("                                        np.float32(0)), np.float32(1))")
    w("                    elif code != ActCode.NONE:")
    w("                        v = act_call(v, code, alpha, beta)")
    w("                    yf[dst + q] = v")
    return "\n".join(o) + "\n"


for _L in P_OF:
    exec(compile(_source(_L), __file__, "exec"), globals())
    exec(compile(_source(_L, qin=True), __file__, "exec"), globals())
KERNELS = {16: dwcv_l16, 8: dwcv_l8}  # noqa: F821  (defined by the exec above)
QKERNELS = {16: dwcvq_l16, 8: dwcvq_l8}  # noqa: F821  (uint8 input: int8 depthwise)
exec(compile(_source(16, qin=True, dot=True), __file__, "exec"), globals())


def dot_weights(lev, O, KH, KW):
    """dwcvd_l16's weights: the int8 levels (O, KH*KW) as words of 4 taps' levels,
    (ceil(O/16), KH, G, 16) int32, G = ceil(KW/4); None where a level is outside int8."""
    lev = np.asarray(lev).reshape(O, KH, KW)
    if lev.size and int(np.abs(lev).max()) > 127:
        return None
    G = -(-KW // 4)
    NB = -(-O // 16)
    b = np.zeros((NB * 16, KH, G * 4), np.int8)
    b[:O, :, :KW] = lev
    b = b.reshape(NB, 16, KH, G, 4).transpose(0, 2, 3, 1, 4)
    return np.ascontiguousarray(b).reshape(-1).view(np.int32).copy()


def use_dot(st, pl) -> bool:
    """Does this int8 depthwise conv run dwcvd_l16 (the avx512vnni tier, 16 lanes, dilation
    1, pl <= 3)?"""
    return (DOT and st.simd_dw == 16 and st.dqd is not None and has_vnni()
            and st.params[6] == 1 and st.params[7] == 1 and pl <= 3)


def use(st, x_shape, y_shape) -> bool:
    """Does this depthwise conv run here: a SIMD tier with a kernel, channel multiplier 1,
    stride 2 or an input plane of at most MAX_PIXELS."""
    if not ON or st.simd_dw not in KERNELS or st.wcv is None:
        return False
    return x_shape[1] == y_shape[1] and (st.params[0] > 1 or
                                         x_shape[2] * x_shape[3] <= MAX_PIXELS)


def use_blk(st, x_shape) -> bool:
    """Does this depthwise conv read its producer's blocked output (``st.bi``: the pair
    conv.link_blocked made, (buffer key, the producer's pw_f32.blk_kind)) for this input
    shape? Its producer asks the same (with its own
    output shape) to decide what it writes; False while the thread runs NCHW only
    (``_common.set_nchw_only``)."""
    if not (BLK_ON and ON) or st.bi is None or nchw_only():
        return False
    sh, sw = st.params[0], st.params[1]
    return (x_shape[1] == st.O and sh == sw and sh in (1, 2)
            and blk_fits(st.bi[1], st.O, x_shape[2], x_shape[3], st.simd_dw)
            and (sh == 2 or x_shape[2] * x_shape[3] <= BLK_MAX_PIXELS[st.simd_dw]))


def bias(b, O, L):
    bc = np.zeros(-(-O // L) * L, np.float32)
    bc[:O] = b.reshape(-1)
    return bc


def bands(N, C, OH, S, KHe, Wp, L, nt):
    """(R output rows per band, RI input rows a band reads, bands per plane): as many rows as
    keep the band's padded input under BAND_BYTES (the halo rows, KHe - S of every band,
    are transposed again), and at least 2 units of work per thread where the planes
    allow it; with EVEN of equal height, their count first rounded up to a multiple of
    the threads with ROWS (R then rounds up, so the count may end below that multiple)."""
    row = Wp * L * 4
    R = max(1, min(OH, ((BAND_BYTES // row) - KHe) // S + 1))
    units = N * (-(-C // L))
    while R > 1 and units * -(-OH // R) < 2 * nt:
        R = -(-R // 2)
    NBND = -(-OH // R)
    if ROWS and 1 < NBND < OH and nt > 1:   # about as many bands a thread (with EVEN)
        NBND = -(-NBND // nt) * nt
    if EVEN:   # bands of equal height: the last overlaps the one before by < NBND rows
        R = -(-OH // NBND)
    return R, (R - 1) * S + KHe, -(-OH // R)


_QW0 = np.zeros(1, np.int32)


def qo_ok(st, code, has_r) -> bool:
    """Can the kernel write the int8 consumer's input itself (st.qo set at prepare): no
    fused residual, a consumer without padding, an activation the vector epilogue has, and
    not in a run that observes y (``nchw_only``: y, then the consumer's pass)."""
    return (st.qo is not None and not has_r and not any(st.qo[3]) and not nchw_only()
            and (code <= ActCode.RELU or code == ActCode.CLIP or code == ActCode.HARD_SWISH))


def use_q(st) -> bool:
    """Can an int8 depthwise conv (``st.dq``) read its uint8 input here (any plane size)?"""
    return ON and st.simd_dw in QKERNELS and st.dqk is not None and st.O == st.params[-1] \
        and st.params[0] == st.params[1] and st.params[0] in (1, 2)


def run(x, y, st, toff, b, r, has_r, code, alpha, beta, calls=None, xq=None, blk=False):
    """Returns True when it wrote the int8 consumer's input (``st.qo``) instead of y
    (``calls``: records the call instead, ``_common.emit``). ``xq``: the input as uint8
    words ``(N, C4, H*W)`` (int8 depthwise, ``st.dq`` = (scale, zero point)); x then only
    gives the shape."""
    L = st.simd_dw
    sh, sw, pt, pl, pb, pr, dh, dw, g = st.params
    N, C, H, W = x.shape
    OH, OW = y.shape[2], y.shape[3]
    Hp, Wp = H + pt + pb, W + pl + pr
    if b is not st.b and calls is not None:
        raise NoBind         # a bias computed per call
    wc = st.wcv
    if xq is not None:       # levels, alpha * s, bias - zero-point correction (st.dqk)
        wc, qsc, corr, bq = st.dqk
        bc = bq if b is st.b else bias(b.reshape(-1) - corr, C, L)
    else:
        bc = st.bcv if b is st.b else bias(b, C, L)
    nt = numba.config.NUMBA_NUM_THREADS
    dot = xq is not None and use_dot(st, pl)
    if dot:   # the band: rows of WB 4-pixel blocks, enough for the last group's 4 windows
        G = -(-st.KW // 4)
        WB = ((OW + 3) * sh + 4 * G - 1) // 4 + 2
        R, RI, NBND = bands(N, C, OH, sh, st.KH, WB, L, nt)
        xb = tls_rows("dwcv.x", nt, RI * WB * 16).view(np.int32)
    else:     # slack: a row's last 4-pixel group reads up to 3 strides past it (16 lanes)
        R, RI, NBND = bands(N, C, OH, sh, (st.KH - 1) * dh + 1, Wp, L, nt)
        xb = tls_rows("dwcv.x", nt, (RI * Wp + 8) * L)
    ob = tls_rows("dwcv.o", nt, (R * OW + 4) * L)   # + the last group's 3 pixels past
    # blocked output for the 1x1 reader (conv.link_blocked's second kind of pair), which
    # asks _common.blk_out after this
    bout = (xq is None and st.bo2 is not None and L in BIN_LANES and not has_r
            and not nchw_only()
            and b is st.b and OH * OW >= BIN_MIN_HW
            and (code <= ActCode.RELU or code == ActCode.CLIP or code == ActCode.HARD_SWISH))
    yf = tls_buffer(st.bo2, N * -(-C // L) * OH * OW * L) if bout else y.reshape(-1)
    if st.bo2 is not None:
        set_blk_out(st.bo2, y.shape, bout)
    tb = tls_rows("dwcv.t", nt, L * L)
    qo = qo_ok(st, code, has_r)
    C4 = -(-C // 4)
    if qo:
        qs, qz, key, _ = st.qo
        qw = tls_buffer(key, N * C4 * OH * OW).view(np.int32)
    else:
        qs, qz, qw = np.float32(1), np.float32(0), _QW0
    tail = (bc, yf, N, OH, OW, R, RI, NBND, r.reshape(-1), has_r, code, alpha,
            beta, xb, ob, tb, qo, qs, qz, qw, C4, ROWS and NBND > 1)
    if dot:
        zq = int(st.dq[1])
        emit(calls, dwcvd_l16, xq, qsc, st.dq[1], zq * 0x01010101, C, H, W, pt, pl,  # noqa: F821
             st.KH, G, WB, sh, st.dqd, *tail)
    elif xq is not None:
        emit(calls, QKERNELS[L], xq, qsc, st.dq[1], C, H, W, pt, pl, Hp, Wp, sh, toff, wc,
             *tail)
    else:   # blk: the producer's (N, ceil(C/L), H, W, L) vectors (use_blk), not x
        xf = tls_buffer(st.bi[0], N * -(-C // L) * H * W * L) if blk else x.reshape(-1)
        emit(calls, KERNELS[L], xf, C, H, W, pt, pl, Hp, Wp, sh, toff, wc, *tail, blk, bout)
    return qo


def warm(L):
    """Compile (or load) the kernel at run()'s argument types (edgenet warmup). The band
    and output rows are sized as run() sizes them (3 x 3 padded input + 8 pixels of slack,
    the outputs + 4): the kernels write their slack; a row per thread."""
    nt = numba.config.NUMBA_NUM_THREADS
    z = np.zeros(9 * L, np.float32)
    KERNELS[L](z[:L].copy(), L, 1, 1, 1, 1, 3, 3, 1, np.zeros(9, np.int64), z.copy(),
               z[:L].copy(), z[:L].copy(), 1, 1, 1, 1, 3, 1, z[:L].copy(), False, 1, np.float32(0),
               np.float32(6), np.zeros((nt, 17 * L), np.float32), np.zeros((nt, 5 * L), np.float32),
               np.zeros((nt, L * L), np.float32), False, np.float32(1), np.float32(0), _QW0, 1,
               False, False, False)
    z = np.zeros(9 * L, np.float32)
    QKERNELS[L](np.zeros(L // 4, np.int32), z[:L].copy(), np.float32(0), L, 1, 1, 1, 1, 3, 3,
                1, np.zeros(9, np.int64), z.copy(), z[:L].copy(), z[:L].copy(), 1, 1, 1, 1, 3, 1,
                z[:L].copy(), False, 1, np.float32(0), np.float32(6),
                np.zeros((nt, 17 * L), np.float32), np.zeros((nt, 5 * L), np.float32),
                np.zeros((nt, L * L), np.float32), False, np.float32(1), np.float32(0), _QW0,
                L // 4, False)
    if L == 16 and has_vnni():   # the int8 dot kernel (the avx512vnni tier)
        z = np.zeros(16, np.float32)
        dwcvd_l16(np.zeros(4, np.int32), z.copy(), np.float32(0), 0, 16, 1, 1, 0,  # noqa: F821
                  0, 1, 1, 3, 1, np.zeros(16, np.int32), z.copy(), z.copy(), 1, 1, 1, 1, 1, 1,
                  z.copy(), False, 1, np.float32(0), np.float32(6),
                  np.zeros((nt, 48), np.int32), np.zeros((nt, 80), np.float32),
                  np.zeros((nt, 256), np.float32), False, np.float32(1), np.float32(0), _QW0, 4,
                  False)


__all__ = ["use", "use_blk", "use_q", "use_dot", "dot_weights", "run", "warm", "bias",
           "KERNELS", "QKERNELS", "BLK_ON"]
