"""float32 convs with few input channels (the stems: 3 -> 16..64, 3x3 or 7x7, stride 1 or
2), or few output channels, vectorized over *pixels*.

The channel-vector tiles (gen_simd_conv) write NCHW rows through ``tile_store`` one float
at a time, and a stem writes many outputs per multiply-accumulate (C * kh * kw = 27 for a
3x3 over RGB): MobileNetV3-small's 3->16 3x3/2 stem (112x112, HardSwish) took 0.47 ms at
one thread that way. Here a register holds L consecutive output pixels of one row and one
output channel: per input channel and tap, one vector load of x (stride 2: the even
elements of 2L, ``vld2``) feeds K FMAs with broadcast weights (K = 16 output channels at 16
lanes, 8 at 8), and the epilogue stores whole vectors (bias, Relu / Clip / HardSwish). The
last vector of a row overlaps the one before (same values written twice). Weights: the
SIMD layout the tiles use ((ceil(O/B), C, kh*kw, B)), nothing new kept per layer.

Measured (in-process A/B, 2 threads, Zen 4, the conv's own time): avx512 tiers
MobileNetV3-small 3->16 3x3/2 0.255 -> 0.165 ms, MobileNetV2 3->32 3x3/2 0.44 -> 0.28,
ResNet-18 3->64 7x7/2 1.54 -> 1.28 (models 0.94 / 0.98 / 0.98); avx2 (8 lanes, K = 8)
MobileNetV2 0.60 -> 0.46, MobileNetV3-small 0.32 -> 0.29, but ResNet-18's 7x7 2.18 ->
2.53: at 8 lanes only kernels of at most 9 taps run here.

The same template, 8 channels x 2 vectors with a residual, runs dense stride-1 convs with
at most 16 output channels (``use_pv``: ResNet-20's first stage), where the channel-vector
tiles hold one output vector and pay a broadcast load per FMA.

The input is always a padded copy (the stride-2 loads read one float past a row's last
window). Kernels generated per (lanes, stride) and compiled with this file as their source
(Numba's disk cache keys on it), like ``pw_f32``.
"""
from __future__ import annotations

import numpy as np
from numba import prange  # noqa: F401  (generated kernels)

from .. import _jit  # noqa: F401
from .._jit import pjit  # noqa: F401
from ..activation import ActCode
from . import simd  # noqa: F401
from ._common import emit
from .gen_simd_conv import emit_act_consts, emit_act_vec
from .simd import (vadd8, vadd16, vbc8, vbc16, vclip8, vclip16, vfma8, vfma16,  # noqa: F401
                   vld8, vld16, vld2_8, vld2_16, vrelu8, vrelu16, vsplat8, vsplat16, vst8,
                   vst16)

K_OF = {16: 16, 8: 8}    # output channels a tile (accumulators: 16 zmm / 8 ymm)
MAX_C = 4                # input channels up to which a conv runs here
SLACK = 32               # floats past the padded input: the stride-2 loads of the last row
                         # read one float past it (2L at most)
ON = True                # False: the channel-vector tiles for these convs too (A/B)
_VEC_ACTS = (ActCode.NONE, ActCode.RELU, ActCode.CLIP, ActCode.HARD_SWISH)


def _source(L, S, K=None, V=1, res=False):
    """Tile: K output channels x V vectors of L pixels of one output row. ``res``: the
    kernel takes a residual (rf, has_r), added before the activation."""
    K = K or K_OF[L]
    PIX = L * V
    ld = f"vld{L}" if S == 1 else f"vld2_{L}"
    name = f"stem_f32_l{L}_s{S}" if (K, V, res) == (K_OF[L], 1, False) else \
        f"pv_f32_l{L}_s{S}_k{K}_v{V}"
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
    emit_act_consts(w, L, "        ")
    w("        for v in range(NV):")
    w(f"            ox0 = v * {PIX}")
    w(f"            if ox0 > OW - {PIX}:")
    w(f"                ox0 = OW - {PIX}")
    for i in range(K):
        for j in range(V):
            w(f"            a{i}_{j} = vsplat{L}(np.float32(0))")
    w(f"            xr = n * C * HWp + oy * {S} * Wp + ox0 * {S}")
    w("            for c in range(C):")
    w("                xc = xr + c * HWp")
    w("                wc = c * T * B")
    w("                for q in range(T):")
    for j in range(V):
        w(f"                    x{j} = {ld}(xf, xc + toff[q] + {j * L * S})")
    w("                    wq = wc + q * B")
    w("                    wq += w0")
    for i in range(K):
        w(f"                    wv = vbc{L}(ws, wq + {i})")
        for j in range(V):
            w(f"                    a{i}_{j} = vfma{L}(x{j}, wv, a{i}_{j})")
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


KERNELS = {}
for _L in K_OF:
    for _S in (1, 2):
        _name, _src = _source(_L, _S)
        exec(compile(_src, __file__, "exec"), globals())
        KERNELS[(_L, _S)] = globals()[_name]
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
    (both axes), a SIMD tier, rows of at least L outputs with the overlapping last vector
    recomputing <= 25%, no residual, a vector activation."""
    if not ON or st.simd is None or has_r or code not in _VEC_ACTS:
        return False
    sh, sw, pt, pl, pb, pr, dh, dw, g = st.params
    L = st.simd[0]
    if g != 1 or sh != sw or (L, sh) not in KERNELS or x_shape[1] > MAX_C:
        return False
    if L == 8 and st.KH * st.KW > 9:   # 7x7 at 8 lanes: slower than the tiles (below)
        return False
    OW = y_shape[3]
    return OW >= L and -(-OW // L) * L * 4 <= OW * 5


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


def run(x, y, st, toff, ws, bp, code, alpha, beta, xp, pad_out, calls=None, r=None,
        has_r=False):
    """``xp``: x zero-padded, flat, with ``SLACK`` floats past it (conv.padded_input: a
    copy, or its producer's). ``pad_out``: (pf, pg), the padded reader's input this conv
    stores into as well (conv.padded_output). ``r``: a residual (the pixel-vector tiles
    only: ``use_pv``)."""
    sh, sw, pt, pl, pb, pr, dh, dw, g = st.params
    L, k = st.simd
    N, C, H, W = x.shape
    Hp, Wp = H + pt + pb, W + pl + pr
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
    if L in PV_KERNELS:
        PV_KERNELS[L](*args, z.copy(), False, *po)


__all__ = ["use", "use_pv", "run", "warm", "KERNELS", "PV_KERNELS", "MAX_C"]
