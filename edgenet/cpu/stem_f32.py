"""float32 convs with few input channels (the stems: 3 -> 16..64, 3x3 or 7x7, stride 1 or
2) vectorized over *pixels*.

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
from ._common import emit, tls_buffer
from .gen_simd_conv import emit_act_consts, emit_act_vec
from .simd import (vadd8, vadd16, vbc8, vbc16, vclip8, vclip16, vfma8, vfma16,  # noqa: F401
                   vld8, vld16, vld2_8, vld2_16, vrelu8, vrelu16, vsplat8, vsplat16, vst8,
                   vst16)

K_OF = {16: 16, 8: 8}    # output channels a tile (accumulators: 16 zmm / 8 ymm)
MAX_C = 4                # input channels up to which a conv runs here
ON = True                # False: the channel-vector tiles for these convs too (A/B)
_VEC_ACTS = (ActCode.NONE, ActCode.RELU, ActCode.CLIP, ActCode.HARD_SWISH)


def _source(L, S):
    K = K_OF[L]
    ld = f"vld{L}" if S == 1 else f"vld2_{L}"
    o = []
    w = o.append
    w("@pjit(fastmath=True, boundscheck=False, error_model='numpy')")
    w(f"def stem_f32_l{L}_s{S}(xf, C, Hp, Wp, toff, ws, B, bp, yf, N, O, OH, OW, code, alpha,")
    w("                       beta):")
    w("    T = toff.shape[0]")
    w(f"    NG = (O + {K - 1}) // {K}")
    w(f"    NV = (OW + {L - 1}) // {L}")
    w("    HWp = Hp * Wp")
    w("    for t in prange(N * NG * OH):")
    w("        oy = t % OH")
    w("        u = t // OH")
    w("        g = u % NG")
    w("        n = u // NG")
    w(f"        o0 = g * {K}")
    for i in range(K):
        oi = "o0" if i == 0 else f"min(o0 + {i}, O - 1)"
        w(f"        w{i} = ({oi} // B) * C * T * B + ({oi}) % B")
    emit_act_consts(w, L, "        ")
    w("        for v in range(NV):")
    w(f"            ox0 = v * {L}")
    w(f"            if ox0 > OW - {L}:")
    w(f"                ox0 = OW - {L}")
    for i in range(K):
        w(f"            a{i} = vsplat{L}(np.float32(0))")
    w(f"            xr = n * C * HWp + oy * {S} * Wp + ox0 * {S}")
    w("            for c in range(C):")
    w("                xc = xr + c * HWp")
    w("                wc = c * T * B")
    w("                for q in range(T):")
    w(f"                    xv = {ld}(xf, xc + toff[q])")
    w("                    wq = wc + q * B")
    for i in range(K):
        w(f"                    a{i} = vfma{L}(xv, vbc{L}(ws, w{i} + wq), a{i})")
    for i in range(K):
        w(f"            if o0 + {i} < O:")
        w(f"                f = vadd{L}(a{i}, vsplat{L}(bp[o0 + {i}]))")
        emit_act_vec(w, L, "                ", "f")
        w(f"                vst{L}(yf, ((n * O + o0 + {i}) * OH + oy) * OW + ox0, f)")
    return "\n".join(o) + "\n"


KERNELS = {}
for _L in K_OF:
    for _S in (1, 2):
        exec(compile(_source(_L, _S), __file__, "exec"), globals())
        KERNELS[(_L, _S)] = globals()[f"stem_f32_l{_L}_s{_S}"]


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


def run(x, y, st, toff, ws, bp, code, alpha, beta, pad_copy, calls=None):
    """``pad_copy``: conv._pad_copy (x into the padded buffer, borders zeroed)."""
    sh, sw, pt, pl, pb, pr, dh, dw, g = st.params
    L, k = st.simd
    N, C, H, W = x.shape
    Hp, Wp = H + pt + pb, W + pl + pr
    # + 2L floats: the stride-2 loads of the last row read one float past it
    xp = tls_buffer("stem.xp", N * C * Hp * Wp + 2 * L)
    emit(calls, pad_copy, x, xp[:N * C * Hp * Wp].reshape(N, C, Hp, Wp), pt, pl)
    emit(calls, KERNELS[(L, sh)], xp, C, Hp, Wp, toff, ws, L * k, bp, y.reshape(-1), N,
         y.shape[1], y.shape[2], y.shape[3], code, alpha, beta)


def warm(L):
    """Compile (or load) the kernels at run()'s argument types (edgenet warmup)."""
    for S in (1, 2):
        z = np.zeros(4 * 16 * 40, np.float32)
        KERNELS[(L, S)](z, 1, 8, 40, np.zeros(9, np.int64), np.zeros(9 * L, np.float32), L,
                        np.zeros(L, np.float32), z.copy(), 1, 1, 1, L, 1, np.float32(0),
                        np.float32(6))


__all__ = ["use", "run", "warm", "KERNELS", "MAX_C"]
