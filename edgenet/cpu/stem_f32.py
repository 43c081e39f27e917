"""float32 convs with few input channels (the stems: 3 -> 16..64, 3x3 or 7x7, stride 1 or
2), or few output channels, vectorized over *pixels*.

The channel-vector tiles (gen_simd_conv) write NCHW rows through ``tile_store`` one float
at a time, and a stem writes many outputs per multiply-accumulate (C * kh * kw = 27 for a
3x3 over RGB): MobileNetV3-small's 3->16 3x3/2 stem (112x112, HardSwish) took 0.47 ms at
one thread that way. Here a register holds L consecutive output pixels of one row and one
output channel: per input channel and tap, one vector load of x feeds K FMAs with
broadcast weights (K = 16 output channels at 16 lanes, 8 at 8; stride 2 at 8 lanes: 4
channels x 3 vectors), and the epilogue stores whole vectors (bias, Relu / Clip /
HardSwish). The last vector of a row overlaps the one before (same values written twice).
Weights: the SIMD layout the tiles use ((ceil(O/B), C, kh*kw, B)), nothing new kept per
layer.

Measured (in-process A/B, 2 threads, Zen 4, the conv's own time): avx512 tiers
MobileNetV3-small 3->16 3x3/2 0.255 -> 0.165 ms, MobileNetV2 3->32 3x3/2 0.44 -> 0.28,
ResNet-18 3->64 7x7/2 1.54 -> 1.28 (models 0.94 / 0.98 / 0.98); avx2 (8 lanes, K = 8)
MobileNetV2 0.60 -> 0.46, MobileNetV3-small 0.32 -> 0.29, but ResNet-18's 7x7 2.18 ->
2.53 (then; stride 2 since below).

Stride 2 reads a copy of the input whose padded rows hold their even columns, then their
odd ones (``split_copy``, in place of the padded copy): a tap's L outputs are L
consecutive floats, where a load of 2L and an even-lane shuffle (``vld2``) fed each before.
Measured (Zen 5, 2 threads, the copy and the kernel, interleaved): ResNet-18's 3->64 7x7/2
670 -> 610 us; forced avx2, with the 4 x 3 tile, 7x7 1300 -> 1020 us and 3x3 (64
channels) 270 -> 240, so the 7x7 runs here at 8 lanes too.

The same template, 8 channels x 2 vectors with a residual, runs dense stride-1 convs with
at most 16 output channels (``use_pv``: ResNet-20's first stage), where the channel-vector
tiles hold one output vector and pay a broadcast load per FMA.

The input is always a padded (stride 2: split) copy. Kernels generated per (lanes, stride)
and compiled with this file as their source (Numba's disk cache keys on it), like
``pw_f32``. ``POOL``: the stride-2 tile with a 3 x 3 / 2 MaxPool in its epilogue
(conv.link_pool; docs/PERFORMANCE.md, "The stem and its MaxPool").
"""
from __future__ import annotations

import numba  # noqa: F401  (generated kernels)
import numpy as np
from numba import prange  # noqa: F401  (generated kernels)

from .. import _jit  # noqa: F401
from .._jit import pjit  # noqa: F401
from ..activation import ActCode
from . import qconv, simd  # noqa: F401
from ._common import emit, tls_buffer, tls_rows
from .gen_simd_conv import emit_act_consts, emit_act_vec
from .simd import (vadd8, vadd16, vbc8, vbc16, vclip8, vclip16, vevens8,  # noqa: F401
                   vevens16, vfma8, vfma16, vld8, vld16, vldz8, vldz16, vmaxn8, vmaxn16,
                   vnext8, vnext16, vodds8, vodds16, vrelu8, vrelu16, vsplat8, vsplat16,
                   vst8, vst16)

K_OF = {16: 16, 8: 8}    # output channels a tile (accumulators: 16 zmm / 8 ymm)
MAX_C = 4                # input channels up to which a conv runs here
SLACK = 32               # floats past the padded input: the stride-2 loads of the last row
                         # read one float past it (2L at most)
# (K, V) of the stride-2 tiles by lanes: at 8 lanes (16 ymm registers on AVX2) 4 channels x
# 3 vectors load 7 floats per 12 FMAs against 9 per 8 at 8 x 1 (forced avx2, 64 channels,
# the kernel's own time: 7x7 1220 -> 1023 us, 3x3 270 -> 237)
S2_TILE = {16: (16, 1), 8: (4, 3)}
ON = True                # False: the channel-vector tiles for these convs too (A/B)
POOL_ON = True           # False: no fused MaxPool (conv.link_pool pairs run apart; A/B)
_VEC_ACTS = (ActCode.NONE, ActCode.RELU, ActCode.CLIP, ActCode.HARD_SWISH)


def _emit_sums(w, L, K, V, S, ind, q=False):
    """The tile's sums into K x V accumulators ``a{i}_{j}`` (output channels o0 + i, pixels
    ox0 + j * L ..) of output row oy: C input channels x T taps, one vector load of x per
    tap and vector feeding K FMAs with broadcast weights. ``q``: int8 (16 lanes, VNNI): x
    words of 4 input channels' uint8 (C: their count), weight words of 4 int8 levels,
    ``vpdpbusd`` into int32 sums."""
    z, ld, bc = (("simd.vzeroi16()", "simd.vldi16", "simd.vbci16") if q else
                 (f"vsplat{L}(np.float32(0))", f"vld{L}", f"vbc{L}"))
    for i in range(K):
        for j in range(V):
            w(f"{ind}a{i}_{j} = {z}")
    # stride 2: the input's columns split into evens and odds per row (split_copy), so a
    # tap's L outputs read L consecutive floats (the tap offsets say which half)
    w(f"{ind}xr = n * C * HWp + oy * {S} * Wp + ox0")
    w(f"{ind}for c in range(C):")
    w(f"{ind}    xc = xr + c * HWp")
    w(f"{ind}    wc = c * T * B")
    w(f"{ind}    for q in range(T):")
    for j in range(V):
        w(f"{ind}        x{j} = {ld}(xf, xc + toff[q] + {j * L})")
    w(f"{ind}        wq = wc + q * B")
    w(f"{ind}        wq += w0")
    for i in range(K):
        w(f"{ind}        wv = {bc}(ws, wq + {i})")
        for j in range(V):
            w(f"{ind}        a{i}_{j} = " + (f"simd.vdpbusd16(a{i}_{j}, x{j}, wv)" if q else
                                             f"vfma{L}(x{j}, wv, a{i}_{j})"))


def _emit_row_jobs(w, K, PIX):
    """The row tiles' job loop: one prange step per (image, group of K output channels,
    output row), ``NV`` tiles of PIX pixels in it, and ``w0``, the group's first weight."""
    w(f"    NG = (O + {K - 1}) // {K}")
    w(f"    NV = (OW + {PIX - 1}) // {PIX}")
    w("    HWp = Hp * Wp")
    w("    for t in prange(N * NG * OH):")
    w("        oy = t % OH")
    w("        u = t // OH")
    w("        g = u % NG")
    w("        n = u // NG")
    w(f"        o0 = g * {K}")
    # o0 .. o0 + K - 1 lie in one block of B (B a multiple of K): consecutive weights
    # (channels past O: the layout's zeros), one base register and immediate offsets
    # (K clamped offsets each took a register: ResNet-18's 7x7 stem 740-840 -> 645-660 us
    # at 2 threads, ResNet-18 f32 0.965-1.01, ResNet-20 0.95-0.98 across processes)
    w("        w0 = (o0 // B) * C * T * B + o0 % B")


def _source(L, S, K=None, V=1, res=False):
    """Tile: K output channels x V vectors of L pixels of one output row. ``res``: the
    kernel takes a residual (rf, has_r), added before the activation."""
    K = K or K_OF[L]
    PIX = L * V
    name = f"{'pv' if res else 'stem'}_f32_l{L}_s{S}_k{K}_v{V}"
    o = []
    w = o.append
    w("@pjit(fastmath=True, boundscheck=False, error_model='numpy')")
    w(f"def {name}(xf, C, Hp, Wp, toff, ws, B, bp, yf, N, O, OH, OW, code, alpha,")
    w("        beta" + (", rf, has_r" if res else "") + ", pf, pg):")
    w("    T = toff.shape[0]")
    # pg = (on, Hp, Wp, pad top, pad left) of the padded float32 reader's input, which the
    # tile stores into as well (conv.link_padded)
    w("    pon = pg[0] != 0")
    w("    PHp, PWp, ppt, ppl = pg[1], pg[2], pg[3], pg[4]")
    _emit_row_jobs(w, K, PIX)
    emit_act_consts(w, L, "        ")
    w("        for v in range(NV):")
    w(f"            ox0 = v * {PIX}")
    w(f"            if ox0 > OW - {PIX}:")
    w(f"                ox0 = OW - {PIX}")
    _emit_sums(w, L, K, V, S, "            ")
    for i in range(K):
        w(f"            if o0 + {i} < O:")
        w(f"                bv = vsplat{L}(bp[o0 + {i}])")
        w(f"                yb = ((n * O + o0 + {i}) * OH + oy) * OW + ox0")
        w(f"                pb = ((n * O + o0 + {i}) * PHp + oy + ppt) * PWp + ox0 + ppl")
        for j in range(V):
            w(f"                f = vadd{L}(a{i}_{j}, bv)")
            if res:
                w("                if has_r:")
                w(f"                    f = vadd{L}(f, vld{L}(rf, yb + {j * L}))")
            emit_act_vec(w, L, "                ", "f")
            w(f"                vst{L}(yf, yb + {j * L}, f)")
            w("                if pon:")
            w(f"                    vst{L}(pf, pb + {j * L}, f)")
    return name, "\n".join(o) + "\n"


def _split_source(L):
    """split_copy: x (P planes of H x W, flat) into xp zero-padded (pt rows on top, pl
    columns on the left, rows of Wp) with each padded row stored as its even columns, then
    its odd ones (E = ceil(Wp / 2) and Wp - E floats): rows in parallel, L evens (odds) at a
    time from two masked loads of x (columns outside the image load as 0), the last vector
    of a row overlapping the one before."""
    return f'''
@pjit(fastmath=True, boundscheck=False)
def split_copy_l{L}(xf, P, H, W, pt, pl, Hp, Wp, xp):
    E = (Wp + 1) // 2
    z = vsplat{L}(np.float32(0))
    for r in prange(P * Hp):
        p = r // Hp
        iy = r - p * Hp - pt
        d = r * Wp
        if iy < 0 or iy >= H:
            i = 0
            while i + {L} <= Wp:
                vst{L}(xp, d + i, z)
                i += {L}
            for j in range(i, Wp):
                xp[d + j] = np.float32(0)
            continue
        s = (p * H + iy) * W
        for par in range(2):
            n = E if par == 0 else Wp - E
            db = d + par * E
            if n < {L}:
                for m in range(n):
                    c = 2 * m + par - pl
                    xp[db + m] = xf[s + c] if 0 <= c < W else np.float32(0)
                continue
            m0 = 0
            while m0 < n:
                if m0 + {L} > n:
                    m0 = n - {L}
                c = 2 * m0 + par - pl
                v0 = vldz{L}(xf, s + c, max(0, -c), min({L}, W - c))
                v1 = vldz{L}(xf, s + c + {L}, max(0, -c - {L}), min({L}, W - c - {L}))
                vst{L}(xp, db + m0, vevens{L}(v0, v1))
                m0 += {L}
'''


def _pool_source(L, K, V, q=False):
    """The stride-2 tile with ResNet's MaxPool (3 x 3, stride 2, pads 1) in its epilogue:
    a job is a band of BR pooled rows of K output channels of one image; it computes the
    conv rows the band's windows need (2 py - 1 .. 2 py + 1; one row twice per band edge)
    into a ring of 3 rows per channel in the thread's buffer ``rb`` (rows of Wb floats:
    column 0 and those past OW stay -inf, the image at 1 .. OW), and pools each pooled row
    from there as pool._pool_planes' in-register 3 x 3 / 2 window does (rows, then the
    even, odd and next-even lanes, the NaN rule of vmaxn), L outputs a vector, the last
    overlapping; rows of fewer than L pooled outputs scalar. Output: (N, O, PH, PW), and
    where qp[0] != 0 the pooled rows quantized 4 channels a word into an int8 reader's
    padded input (qb, qp, qf: qconv.consumer_words; simd.vquant4_16, the MaxPool-and-
    quantize kernel's rule). ``q``: the int8 stem (``_emit_sums``' int8 sums; bp: the
    per-channel scale alpha * s, bb: bias - the zero-point correction, as qconv's tiles)."""
    PIX = L * V
    name = f"stem_pool_{'i8' if q else 'f32'}_l{L}_k{K}_v{V}"
    o = []
    w = o.append
    w("@pjit(fastmath=True, boundscheck=False, error_model='numpy')")
    w(f"def {name}(xf, C, Hp, Wp, toff, ws, B, bp, " + ("bb, " if q else "") +
      "N, O, OH, OW, code, alpha, beta,")
    w("        PH, PW, NB, BR, Wb, rb, yp, qb, qp, qf):")
    w("    T = toff.shape[0]")
    w(f"    NG = (O + {K - 1}) // {K}")
    w(f"    NV = (OW + {PIX - 1}) // {PIX}")
    w("    HWp = Hp * Wp")
    w("    ninf = np.float32(-np.inf)")
    w("    for t in prange(N * NG * NB):")
    w("        bnd = t % NB")
    w("        u = t // NB")
    w("        g = u % NG")
    w("        n = u // NG")
    w(f"        o0 = g * {K}")
    w("        w0 = (o0 // B) * C * T * B + o0 % B")
    w("        rt = rb[numba.get_thread_id()]")
    w(f"        for j in range({3 * K} * Wb):")
    w("            rt[j] = ninf")
    emit_act_consts(w, L, "        ")
    w("        last = -1")
    w("        for py in range(bnd * BR, min(PH, bnd * BR + BR)):")
    w("            ry0 = max(0, 2 * py - 1)")
    w("            ry1 = min(OH - 1, 2 * py + 1)")
    w("            for oy in range(max(ry0, last + 1), ry1 + 1):")
    w(f"                sb = (oy % 3) * {K} * Wb + 1")
    w("                for v in range(NV):")
    w(f"                    ox0 = v * {PIX}")
    w(f"                    if ox0 > OW - {PIX}:")
    w(f"                        ox0 = OW - {PIX}")
    _emit_sums(w, L, K, V, 2, "                    ", q)
    for i in range(K):
        w(f"                    bv = vsplat{L}(bp[min(o0 + {i}, O - 1)])")
        if q:
            w(f"                    cv = vsplat{L}(bb[min(o0 + {i}, O - 1)])")
        for j in range(V):
            w(f"                    f = " + (f"vfma{L}(simd.vitof16(a{i}_{j}), bv, cv)" if q
                                             else f"vadd{L}(a{i}_{j}, bv)"))
            emit_act_vec(w, L, "                    ", "f")
            w(f"                    vst{L}(rt, sb + {i} * Wb + ox0 + {j * L}, f)")
    w("                last = oy")
    # the pooled row: rows ry0 .. ry1 of the ring
    w("            s0 = (ry0 % 3) * " + str(K) + " * Wb")
    w("            s1 = ((ry0 + 1) % 3) * " + str(K) + " * Wb")
    w("            s2 = ((ry0 + 2) % 3) * " + str(K) + " * Wb")
    w("            nr = ry1 - ry0 + 1")
    w(f"            for i in range(min({K}, O - o0)):")
    w("                yb = ((n * O + o0 + i) * PH + py) * PW")
    w("                ci = i * Wb")
    w(f"                if PW >= {L}:")
    w("                    px = 0")
    w("                    while px < PW:")
    w(f"                        if px + {L} > PW:")
    w(f"                            px = PW - {L}")
    w("                        c = ci + 2 * px")
    for r in range(3):
        ind = "                        "
        if r:
            w(f"{ind}if nr > {r}:")
            ind += "    "
        for k in range(3):
            ld = f"vld{L}(rt, s{r} + c + {k * L})"
            w(f"{ind}v{k} = " + (ld if r == 0 else f"vmaxn{L}({ld}, v{k})"))
    w(f"                        e = vevens{L}(v0, v1)")
    w(f"                        a = vmaxn{L}(vodds{L}(v0, v1), e)")
    w(f"                        vst{L}(yp, yb + px, vmaxn{L}(vnext{L}(e, v2), a))")
    w(f"                        px += {L}")
    w("                else:")
    w("                    for px in range(PW):")
    w("                        m = ninf")
    w("                        for r in range(nr):")
    w("                            sr = s0 if r == 0 else (s1 if r == 1 else s2)")
    w("                            for k in range(3):")
    w("                                vv = rt[sr + ci + 2 * px + k]")
    w("                                m = vv if (vv > m or vv != vv) else m")
    w("                        yp[yb + px] = m")
    # the int8 reader's words of this pooled row: 4 channels a word (K is a multiple of 4)
    w("            if qp[0] != 0:")
    w("                for i4 in range(0, min(" + str(K) + ", O - o0), 4):")
    w("                    c0 = o0 + i4")
    w("                    wb = ((n * qp[1] + c0 // 4) * qp[2] + py + qp[4]) * qp[3] + qp[5]")
    w("                    yb = ((n * O + c0) * PH + py) * PW")
    w("                    for x0 in range(0, PW, 16):")
    w("                        simd.vquant4_16(yp, yb + x0, PH * PW, min(4, O - c0),")
    w("                                        min(16, PW - x0), qf[0], qf[1], qb,")
    w("                                        4 * (wb + x0))")
    return name, "\n".join(o) + "\n"


def _q_source(K, V):
    """The int8 stride-2 stem without a MaxPool (VNNI, 16 lanes): a job is K output
    channels x one output row of one image, in tiles of V vectors of 16 pixels (the last
    overlapping) summed as POOL_I8 does (x: the split words of 4 input channels' uint8,
    ``vpdpbusd`` into int32), scaled as qconv's tiles (sc: alpha * s, bb: bias - the
    zero-point correction), the vector activation, into the thread's rows ``rb`` (K rows of
    16 V floats); from there into y where ``qp[0]`` is 0 or 2 and, where ``qp[0] != 0``,
    quantized 4 channels a word into the int8 reader's input (qb, qp, qf:
    qconv.consumer_words; simd.vquant4_16, the tiles' tile_store_k rule)."""
    PIX = 16 * V
    name = f"stem_i8_k{K}_v{V}"
    o = []
    w = o.append
    w("@pjit(fastmath=True, boundscheck=False, error_model='numpy')")
    w(f"def {name}(xf, C, Hp, Wp, toff, ws, B, bp, bb, yf, N, O, OH, OW, code, alpha, beta,")
    w("        rb, qb, qp, qf):")
    w("    T = toff.shape[0]")
    w("    yw = qp[0] == 0 or qp[0] == 2")
    _emit_row_jobs(w, K, PIX)
    w("        rt = rb[numba.get_thread_id()]")
    w(f"        nk = min({K}, O - o0)")
    emit_act_consts(w, 16, "        ")
    w("        for v in range(NV):")
    w(f"            ox0 = v * {PIX}")
    w(f"            if ox0 > OW - {PIX}:")
    w(f"                ox0 = OW - {PIX}")
    _emit_sums(w, 16, K, V, 2, "            ", True)
    for i in range(K):
        w(f"            bv = vsplat16(bp[min(o0 + {i}, O - 1)])")
        w(f"            cv = vsplat16(bb[min(o0 + {i}, O - 1)])")
        for j in range(V):
            w(f"            f = vfma16(simd.vitof16(a{i}_{j}), bv, cv)")
            emit_act_vec(w, 16, "            ", "f")
            w(f"            vst16(rt, {i * PIX + j * 16}, f)")
    w("            if yw:")
    w("                for i in range(nk):")
    w("                    yb = ((n * O + o0 + i) * OH + oy) * OW + ox0")
    for j in range(V):
        w(f"                    vst16(yf, yb + {j * 16}, vld16(rt, i * {PIX} + {j * 16}))")
    w("            if qp[0] != 0:")
    w("                for i4 in range(0, nk, 4):")
    w("                    c0 = o0 + i4")
    w("                    wb = ((n * qp[1] + c0 // 4) * qp[2] + oy + qp[4]) * qp[3] + qp[5] + ox0")
    for j in range(V):
        w(f"                    simd.vquant4_16(rt, i4 * {PIX} + {j * 16}, {PIX},")
        w(f"                                    min(4, nk - i4), 16, qf[0], qf[1], qb,")
        w(f"                                    4 * (wb + {j * 16}))")
    return name, "\n".join(o) + "\n"


KERNELS = {}
SPLIT = {}
POOL = {}
for _L in K_OF:
    exec(compile(_split_source(_L), __file__, "exec"), globals())
    SPLIT[_L] = globals()[f"split_copy_l{_L}"]
    for _S in (1, 2):
        _name, _src = _source(_L, _S, *(S2_TILE[_L] if _S == 2 else ()))
        exec(compile(_src, __file__, "exec"), globals())
        KERNELS[(_L, _S)] = globals()[_name]
    _name, _src = _pool_source(_L, *S2_TILE[_L])
    exec(compile(_src, __file__, "exec"), globals())
    POOL[_L] = globals()[_name]
# the int8 stem with its MaxPool (VNNI tier: conv.link_pool pairs an int8 stem only there)
_name, _src = _pool_source(16, 16, 1, q=True)
exec(compile(_src, __file__, "exec"), globals())
POOL_I8 = globals()[_name]
# the int8 stride-2 stem alone (VNNI): (K, V) of its tiles
Q_TILE = (16, 1)
STEM_I8 = {}
for _kv in ((16, 1), (8, 2)):
    _name, _src = _q_source(*_kv)
    exec(compile(_src, __file__, "exec"), globals())
    STEM_I8[_kv] = globals()[_name]
# Dense stride-1 convs with at most PV_MAX_O output channels (one channel vector: the
# channel-vector tiles' k = 1, where each FMA needs its own broadcast load) on rows of at
# least PV_V vectors: 8 channels x 2 vectors a tile, 10 loads per 16 FMAs instead of 17,
# and whole-vector stores. 16 -> 16 3x3 at 32x32 (ResNet-20's first stage), pad included,
# Zen 5: 30.3 -> 25.0 us at one thread, 22.3 -> 19.0 at two; from 32 or 64 output channels
# and on 56x56 maps the tiles are faster (k >= 2 shares each broadcast).
PV_K, PV_V, PV_MAX_O = 8, 2, 16
_name, _src = _source(16, 1, PV_K, PV_V, True)
exec(compile(_src, __file__, "exec"), globals())
PV_KERNELS = {16: globals()[_name]}


def use(st, x_shape, y_shape, has_r, code) -> bool:
    """Does this f32 conv run here: group 1, at most MAX_C input channels, stride 1 or 2
    (both axes), a SIMD tier, rows of at least one tile's pixels (L; 3L at 8 lanes, stride
    2) with the overlapping last tile recomputing <= 25%, no residual, a vector
    activation."""
    if not ON or st.simd is None or has_r or code not in _VEC_ACTS:
        return False
    sh, sw, pt, pl, pb, pr, dh, dw, g = st.params
    L = st.simd[0]
    if g != 1 or sh != sw or (L, sh) not in KERNELS or x_shape[1] > MAX_C:
        return False
    if L == 8 and sh == 1 and st.KH * st.KW > 9:   # stride-1 7x7 at 8 lanes: not measured
        return False
    OW, pix = y_shape[3], L * (S2_TILE[L][1] if sh == 2 else 1)
    return OW >= pix and -(-OW // pix) * pix * 4 <= OW * 5


def use_pv(st, x_shape, y_shape, code) -> bool:
    """Does this f32 conv run on the pixel-vector tiles (PV_KERNELS): group 1, stride 1, a
    16-lane tier, at most PV_MAX_O output channels, more than 4 input channels (fewer: the
    stems above), rows of at least PV_V vectors with the last one recomputing <= 25 %, a
    vector activation (any residual)."""
    if not ON or st.simd is None or code not in _VEC_ACTS or st.simd[0] not in PV_KERNELS:
        return False
    sh, sw, pt, pl, pb, pr, dh, dw, g = st.params
    if g != 1 or sh != 1 or sw != 1 or x_shape[1] <= MAX_C or y_shape[1] > PV_MAX_O:
        return False
    OW, pix = y_shape[3], st.simd[0] * PV_V
    return OW >= pix and -(-OW // pix) * pix * 4 <= OW * 5


def split_input(x, st, calls=None):
    """x zero-padded by st's pads with each row's even columns, then its odd ones
    (split_copy), flat, in this thread's buffer, ``SLACK`` floats past it: a stride-2
    conv's input here."""
    sh, sw, pt, pl, pb, pr, dh, dw, g = st.params
    N, C, H, W = x.shape
    Hp, Wp = H + pt + pb, W + pl + pr
    xp = tls_buffer("stem.xs", N * C * Hp * Wp + SLACK)
    emit(calls, SPLIT[st.simd[0]], x.reshape(-1), N * C, H, W, pt, pl, Hp, Wp, xp)
    return xp


def _split_offsets(st, Wp):
    """The taps' offsets in split_copy's rows (cached in st.toff_w under ("split", Wp)):
    column kx * dw is the even half's (kx * dw) // 2-th float or the odd half's."""
    toff = st.toff_w.get(("split", Wp))
    if toff is None:
        dh, dw, E = st.params[6], st.params[7], (Wp + 1) // 2
        toff = np.array([ky * dh * Wp + (kx * dw) % 2 * E + kx * dw // 2
                         for ky in range(st.KH) for kx in range(st.KW)], np.int64)
        st.toff_w[("split", Wp)] = toff
    return toff


def pool_dims(OH, OW):
    """The output size of a 3 x 3 / 2 MaxPool with pads 1 (floor) on an OH x OW map."""
    return (OH - 1) // 2 + 1, (OW - 1) // 2 + 1


def _bands(N, O, K, PH, PW, OW, L):
    """(NB, BR, Wb, rb): bands of pooled rows (about 4 jobs per thread), the ring's row
    width and the threads' ring buffers."""
    NB = max(1, min(PH, -(-4 * numba.get_num_threads() // (N * -(-O // K)))))
    BR = -(-PH // NB)
    NB = -(-PH // BR)
    Wb = -(-max(2 * PW + L, OW + 1) // 16) * 16
    return NB, BR, Wb, tls_rows("stem.pool", numba.config.NUMBA_NUM_THREADS, 3 * K * Wb)


def pool_call(x, y_shape, st, ws, bp, code, alpha, beta, xp):
    """The stride-2 conv with its MaxPool reader fused (conv.link_pool): (kernel, its
    arguments but the last four), those being the pooled output, (N, O, PH, PW) flat, and
    an int8 reader's words (qb, qp, qf), which the MaxPool step passes (its own output):
    the conv step makes the split copy ``xp`` and nothing else."""
    sh, sw, pt, pl, pb, pr, dh, dw, g = st.params
    L, k = st.simd
    N, C, H, W = x.shape
    Hp, Wp = H + pt + pb, W + pl + pr
    O, OH, OW = y_shape[1], y_shape[2], y_shape[3]
    PH, PW = pool_dims(OH, OW)
    NB, BR, Wb, rb = _bands(N, O, S2_TILE[L][0], PH, PW, OW, L)
    return POOL[L], (xp, C, Hp, Wp, _split_offsets(st, Wp), ws, L * k, bp, N, O, OH, OW,
                     code, alpha, beta, PH, PW, NB, BR, Wb, rb)


def q_words(q) -> bool:
    """Are an int8 conv's weights in the VNNI tiles' plain word layout (4 levels a word,
    16 lanes; not 2-bit) and its input quantized by itself: what POOL_I8 reads
    (conv.link_pool pairs only such int8 stems)."""
    return q["fam"] == "v" and not q["t2"] and q["L"] == 16 and q.get("qi") is None


def use_q(st, x_shape, y_shape) -> bool:
    """Does this int8 stem (conv.link_pool paired it: ``q_words``) run fused with its
    MaxPool here: rows of at least 16 outputs with the overlapping last vector recomputing
    <= 25 %."""
    OW = y_shape[3]
    return OW >= 16 and -(-OW // 16) * 64 <= OW * 5


def pool_call_q(x, y_shape, st, bb, calls=None):
    """``pool_call`` for an int8 stem (``use_q``): x quantized, padded and split by column
    parity (``quant_split_input``), and the int8 kernel's call."""
    q = st.q
    N = x.shape[0]
    xs, Hp, Wp = quant_split_input(x, q, st, calls)
    O, OH, OW = y_shape[1], y_shape[2], y_shape[3]
    PH, PW = pool_dims(OH, OW)
    NB, BR, Wb, rb = _bands(N, O, 16, PH, PW, OW, 16)
    code, alpha, beta = st.act
    return POOL_I8, (xs, q["C4"], Hp, Wp, _split_offsets(st, Wp), q["wt"],
                     q["L"] * q["k"], q["sc"], bb, N, O, OH, OW, code, alpha, beta, PH, PW,
                     NB, BR, Wb, rb)


Q_ON = True    # False: the int8 stride-2 stems on qconv's channel-vector tiles (A/B)
_QW0, _QP0, _QF0 = np.zeros(1, np.int32), np.zeros(6, np.int64), np.zeros(2, np.float32)
QS_ON = True   # False: quantize, then split_copy (two passes; A/B)


@pjit(fastmath=True, boundscheck=False, error_model="numpy")
def quant_split(x, C, H, W, C4, Hp, Wp, pt, pl, s, zp, rows, rb, out):
    """qconv.quantize_padded and split_copy in one pass, rows in parallel: each padded row
    of the (N, C4, Hp, Wp) words quantized (qconv._quant_rng's rule and code: the border
    the zero point) into the thread's row ``rb`` (Wp + 32 words), then stored into out
    (float32 lanes carrying the words' bits) as its even columns, then its odd ones."""
    E = (Wp + 1) // 2
    HW = H * W
    zb = np.uint8(zp)
    RB = Wp * 4
    for t in prange(rows):
        rf = rb[numba.get_thread_id()]
        rq = rf.view(np.uint8)
        yp = t % Hp
        u = t // Hp
        c4 = u % C4
        n = u // C4
        y = yp - pt
        border = y < 0 or y >= H
        qconv.zp_row(rq, 0, RB, pl, W, border, zb)
        if not border:
            c0 = c4 * 4
            sb = ((n * C + c0) * H + y) * W
            nc = min(4, C - c0)
            x0 = 0
            while x0 + 16 <= W:
                simd.vquant4_16(x, sb + x0, HW, nc, 16, s, zp, rq, 4 * (pl + x0))
                x0 += 16
            if x0 < W:
                simd.vquant4_16(x, sb + x0, HW, nc, W - x0, s, zp, rq, 4 * (pl + x0))
        d = t * Wp
        for par in range(2):
            m = E if par == 0 else Wp - E
            db = d + par * E
            if m < 16:
                for i in range(m):
                    out[db + i] = rf[2 * i + par]
                continue
            m0 = 0
            while m0 < m:
                if m0 + 16 > m:
                    m0 = m - 16
                c = 2 * m0 + par
                vst16(out, db + m0, vevens16(vld16(rf, c), vld16(rf, c + 16)))
                m0 += 16


def quant_split_input(x, q, st, calls=None):
    """(the split words as int32, Hp, Wp): x quantized by qconv's rule into words of 4
    channels, padded by st's pads, each row's even columns, then its odd ones (POOL_I8's
    and STEM_I8's input; ``SLACK`` words past it)."""
    sh, sw, pt, pl, pb, pr, dh, dw, g = st.params
    N, C, H, W = x.shape
    Hp, Wp = H + pt + pb, W + pl + pr
    rows = N * q["C4"] * Hp
    xs = tls_buffer("stem.xsq", rows * Wp + SLACK)
    if not QS_ON:   # two passes: quantize (serial at these sizes), then split_copy
        xq = qconv.quantize_padded(x, q, pt, pl, pb, pr, calls=calls)[0]
        # a word's bits move as a float32 lane's: masked loads and shuffles only
        emit(calls, SPLIT[16], xq.view(np.float32)[:rows * Wp], N * q["C4"], Hp, Wp, 0, 0,
             Hp, Wp, xs)
        return xs.view(np.int32), Hp, Wp
    rb = tls_rows("stem.qrow", numba.config.NUMBA_NUM_THREADS, Wp + 32)
    emit(calls, quant_split, x.reshape(-1), C, H, W, q["C4"], Hp, Wp, pt, pl, q["s"], q["zp"],
         rows, rb, xs)
    return xs.view(np.int32), Hp, Wp


def use_qs(st, x_shape, y_shape, has_r, code) -> bool:
    """Does this int8 conv run on STEM_I8: stride 2 (both axes), at most MAX_C input
    channels, the VNNI tiles' plain words (``q_words``), no residual, a vector activation,
    rows of at least one tile with the overlapping last one recomputing <= 25 %."""
    if not (Q_ON and st.q is not None and q_words(st.q)) or has_r or code not in _VEC_ACTS:
        return False
    sh, sw = st.params[:2]
    if sh != 2 or sw != 2 or x_shape[1] > MAX_C:
        return False
    OW, pix = y_shape[3], 16 * Q_TILE[1]
    return OW >= pix and -(-OW // pix) * pix * 4 <= OW * 5


def run_q(x, y, st, qo, calls=None) -> bool:
    """The int8 stem (``use_qs``): x quantized and padded by qconv's rule, its words split
    by column parity, and STEM_I8 into y and / or the int8 reader's words (``qo``, as
    qconv.run: y too where ``qo_keep``). Returns whether it wrote the reader's words."""
    q = st.q
    N = x.shape[0]
    xs, Hp, Wp = quant_split_input(x, q, st, calls)
    O, OH, OW = y.shape[1], y.shape[2], y.shape[3]
    if qo is not None:
        qw, qp, qf = qconv.consumer_words(q, qo, N, O, OH, OW, calls)
    else:
        qw, qp, qf = _QW0, _QP0, _QF0
    K, V = Q_TILE
    rb = tls_rows("stem.q", numba.config.NUMBA_NUM_THREADS, K * 16 * V)
    code, alpha, beta = st.act
    emit(calls, STEM_I8[Q_TILE], xs, q["C4"], Hp, Wp, _split_offsets(st, Wp),
         q["wt"], q["L"] * q["k"], q["sc"], q["bb"], y.reshape(-1), N, O, OH, OW, code, alpha,
         beta, rb, qw.view(np.uint8), qp, qf)
    return qo is not None


def run(x, y, st, toff, ws, bp, code, alpha, beta, xp, pad_out, calls=None, r=None,
        has_r=False):
    """``xp``: stride 1, x zero-padded, flat, with ``SLACK`` floats past it
    (conv.padded_input: a copy, or its producer's); stride 2: ``split_input``'s. ``pad_out``:
    (pf, pg), the padded reader's input this conv stores into as well (conv.padded_output).
    ``r``: a residual (the pixel-vector tiles only: ``use_pv``)."""
    sh, sw, pt, pl, pb, pr, dh, dw, g = st.params
    L, k = st.simd
    N, C, H, W = x.shape
    Hp, Wp = H + pt + pb, W + pl + pr
    if sh == 2:
        toff = _split_offsets(st, Wp)
    args = (xp, C, Hp, Wp, toff, ws, L * k, bp, y.reshape(-1), N, y.shape[1], y.shape[2],
            y.shape[3], code, alpha, beta)
    if r is None:
        emit(calls, KERNELS[(L, sh)], *args, *pad_out)
    else:
        emit(calls, PV_KERNELS[L], *args, r.reshape(-1), has_r, *pad_out)


def warm(L):
    """Compile (or load) the kernels at run()'s argument types (edgenet warmup)."""
    z = np.zeros(4 * 16 * 40, np.float32)
    args = (z, 1, 8, 40, np.zeros(9, np.int64), np.zeros(9 * L, np.float32), L,
            np.zeros(L, np.float32), z.copy(), 1, 1, 1, L * PV_V, 1, np.float32(0),
            np.float32(6))
    po = (np.zeros(1, np.float32), np.zeros(5, np.int64))
    for S in (1, 2):
        KERNELS[(L, S)](*args, *po)
    SPLIT[L](z, 1, 8, 40, 1, 3, 10, 46, z.copy())
    K = S2_TILE[L][0]
    rb = np.zeros((numba.config.NUMBA_NUM_THREADS, 3 * K * 6 * L), np.float32)
    qw = (np.zeros(64, np.uint8), np.zeros(6, np.int64), np.zeros(2, np.float32))
    POOL[L](z, 1, 8, 40, np.zeros(9, np.int64), np.zeros(9 * L, np.float32), L,
            np.zeros(L, np.float32), 1, 1, 4, 3 * L, 1, np.float32(0), np.float32(6), 2, 2,
            1, 2, 6 * L, rb, z.copy(), *qw)
    if L == 16 and simd.has_vnni():
        rb = np.zeros((numba.config.NUMBA_NUM_THREADS, 3 * 16 * 6 * L), np.float32)
        POOL_I8(np.zeros(4 * 16 * 40, np.int32), 1, 8, 40, np.zeros(9, np.int64),
                np.zeros(9 * L, np.int32), L, np.zeros(L, np.float32), np.zeros(L, np.float32),
                1, 1, 4, 3 * L, 1, np.float32(0), np.float32(6), 2, 2, 1, 2, 6 * L, rb,
                z.copy(), *qw)
        quant_split(z, 1, 8, 40, 1, 10, 42, 1, 1, np.float32(0.1), np.float32(3), 10,
                    np.zeros((numba.config.NUMBA_NUM_THREADS, 74), np.float32), z.copy())
        rq = np.zeros((numba.config.NUMBA_NUM_THREADS, 16 * 16 * 2), np.float32)
        STEM_I8[Q_TILE](np.zeros(4 * 16 * 40, np.int32), 1, 8, 40, np.zeros(9, np.int64),
                        np.zeros(9 * L, np.int32), L, np.zeros(L, np.float32),
                        np.zeros(L, np.float32), z.copy(), 1, 1, 2, 32, np.int64(1),
                        np.float32(0), np.float32(6), rq, *qw)
    if L in PV_KERNELS:
        PV_KERNELS[L](*args, z.copy(), False, *po)


__all__ = ["use", "use_pv", "run", "pool_call", "pool_call_q", "q_words", "use_q", "use_qs",
           "run_q", "pool_dims", "split_input", "warm", "KERNELS", "PV_KERNELS", "POOL",
           "POOL_I8", "STEM_I8", "MAX_C"]
