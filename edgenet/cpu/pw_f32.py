"""float32 1x1 stride-1 unpadded convs vectorized over *pixels* (the pointwise convs of
MobileNet-style nets).

The channel-vector tiles (gen_simd_conv) hold L output channels of one pixel per register
and write NCHW rows through ``tile_store`` one float at a time; for a 1x1 conv with few
input channels that transposing store costs as much as the FMAs (16->72 at 56x56: 15
GMAC/s). Here a register holds L consecutive pixels of one output channel: per input
channel, V vector loads of x and 4 weight broadcasts feed 4*V FMAs, and the epilogue stores
whole vectors (bias, residual, Relu / Clip / HardSwish as vectors; other activations by
``act_call`` over the stored row). Tile: 4 output channels x V*L pixels (V = 3 at 16 lanes,
3 at 8: 12 accumulators; 12 x 2 from WIDE_C input channels at 16 lanes). Weights: the SIMD layout the tiles use (``expand_simd`` /
``decode_simd``: (ceil(O/B), C, B)), so nothing new is kept per layer. The last pixel tile
of a plane overlaps the one before (same values written twice).

Used where the map has at least one tile of pixels and the overlap recomputes <= 25%
(``use``). The kernels are generated from one template per lane count and compiled with
this file as their source (Numba's disk cache keys on it).
"""
from __future__ import annotations

import numba
import numpy as np
from numba import prange  # noqa: F401  (generated kernels)

from .. import _jit  # noqa: F401
from .._jit import pjit  # noqa: F401
from ..activation import ActCode  # noqa: F401
from . import simd
from ._common import act_call, emit, tls_rows  # noqa: F401
from .gen_simd_conv import (emit_act_consts, emit_act_vec, tile_buf_len, tile_store,  # noqa: F401
                             tile_store_k)
from .simd import (vadd8, vadd16, vbc8, vbc16, vclip8, vclip16, vfma8, vfma16,  # noqa: F401
                   vld8, vld16, vldm8, vldm16, vrelu8, vrelu16, vsplat8, vsplat16, vst8, vst16,
                   vstm8, vstm16)

K4 = 4
V_OF = {16: 3, 8: 3}
# (lanes, input channels >= WIDE_C): 12 output channels x 2 vectors (24 zmm accumulators):
# fewer loads per FMA (2 + 12 per 24 instead of 3 + 4 per 12); 0.79-0.87x the time of the
# 4 x 3 tile from 96 input channels, 1.07-1.10x at 16-24 (1 thread, Zen 4). At 8 lanes
# (16 ymm) 4 x 3 is the tile: 0.82-0.95x the time of the 4 x 2 one it replaced.
WIDE = {16: (12, 2)}
WIDE_C = 64
ON = True      # False: the channel-vector tiles for these convs too (A/B)


def _source(L, K4=K4, V=None, suffix=""):
    V = V or V_OF[L]
    PIX = L * V
    o = []
    w = o.append
    w("@pjit(fastmath=True, boundscheck=False, error_model='numpy')")
    w(f"def pw_f32_l{L}{suffix}(xf, C, HW, ws, B, bp, yf, N, O, rf, has_r, code, alpha, beta):")
    w(f"    NG = (O + {K4 - 1}) // {K4}")
    w(f"    NT = (HW + {PIX - 1}) // {PIX}")
    w("    for t in prange(N * NG * NT):")
    # channel groups fastest: consecutive tiles (and a thread's contiguous share of the
    # prange) read the same V*L pixels of every input channel from L1 (pixel tiles fastest
    # streamed the whole input once per channel group: MobileNetV2's 16->96 expansion at
    # 112x112 read its 0.8 MB input 24 times)
    w("        g = t % NG")
    w("        u = t // NG")
    w("        tx = u % NT")
    w("        n = u // NT")
    w(f"        px = tx * {PIX}")
    w(f"        if px > HW - {PIX}:")
    w(f"            px = HW - {PIX}")
    w(f"        o0 = g * {K4}")
    for i in range(K4):
        oi = "o0" if i == 0 else f"min(o0 + {i}, O - 1)"
        w(f"        w{i} = ({oi} // B) * C * B + ({oi}) % B")
    for i in range(K4):
        for v in range(V):
            w(f"        a{i}{v} = vsplat{L}(np.float32(0))")
    w("        xb = n * C * HW + px")
    w("        for c in range(C):")
    w("            xo = xb + c * HW")
    for v in range(V):
        w(f"            x{v} = vld{L}(xf, xo + {v * L})")
    w("            wc = c * B")
    for i in range(K4):
        w(f"            wv = vbc{L}(ws, w{i} + wc)")
        for v in range(V):
            w(f"            a{i}{v} = vfma{L}(x{v}, wv, a{i}{v})")
    emit_act_consts(w, L, "        ")
    for i in range(K4):
        w(f"        if o0 + {i} < O:")
        w(f"            bv = vsplat{L}(bp[o0 + {i}])")
        w(f"            yb = (n * O + o0 + {i}) * HW + px")
        for v in range(V):
            w(f"            f = vadd{L}(a{i}{v}, bv)")
            w("            if has_r:")
            w(f"                f = vadd{L}(f, vld{L}(rf, yb + {v * L}))")
            emit_act_vec(w, L, "            ", "f")
            w(f"            vst{L}(yf, yb + {v * L}, f)")
        w("            if code != ActCode.NONE and code != ActCode.RELU and "
          "code != ActCode.CLIP and code != ActCode.HARD_SWISH:")
        w(f"                for j in range(yb, yb + {PIX}):")
        w("                    yf[j] = act_call(yf[j], code, alpha, beta)")
    return "\n".join(o) + "\n"


for _L in V_OF:
    exec(compile(_source(_L), __file__, "exec"), globals())
for _L, (_K, _V) in WIDE.items():
    exec(compile(_source(_L, _K, _V, f"_k{_K}"), __file__, "exec"), globals())
KERNELS = {16: pw_f32_l16, 8: pw_f32_l8}  # noqa: F821  (defined by the exec above)
KERNELS_WIDE = {16: pw_f32_l16_k12}       # noqa: F821


# Blocked output for a depthwise reader (conv.link_blocked): a register holds L output
# channels of one pixel, the tile KB channel vectors x BP pixels (24 zmm / 12 ymm
# accumulators): per input channel, KB weight vectors and BP broadcasts of the input feed
# KB * BP FMAs, and the epilogue stores whole vectors into (N, ceil(O/L), HW, L) -- no
# transposes on either side of the hand-off. KB 2 or 3, whichever computes fewer surplus
# channel blocks (1 for a single block).
BLK_TILES = {16: {1: 24, 2: 12, 3: 8}, 8: {1: 12, 2: 6, 3: 4}}   # L -> {KB: BP}
BLK_CV = True      # False: 1x1 producers only (A/B)


def _emit_flat_tiles(w, KB, BP):
    """Generated code: the prange over (image, pixel tile of the flat map, group of KB
    channel blocks), groups fastest (the tile's input pixels stay in L1), and ``px``, the
    tile's first pixel (the last tile overlaps the one before). Needs NBo."""
    w(f"    NG = (NBo + {KB - 1}) // {KB}")
    w(f"    NT = (HW + {BP - 1}) // {BP}")
    w("    for t in prange(N * NG * NT):")
    w("        g = t % NG")
    w("        u = t // NG")
    w("        tx = u % NT")
    w("        n = u // NT")
    w(f"        px = min(tx * {BP}, HW - {BP})")


def _emit_tile_acc(w, L, KB, BP, K):
    """Generated code: the group's KB channel blocks (``oc{j}``; blocks past the last are
    computed on the last block's weights and dropped), their weight offsets ``w{j}`` in the
    SIMD layout (``K`` input taps a block row) and the accumulators, started at the bias."""
    w(f"        ob0 = g * {KB}")
    for j in range(KB):
        w(f"        oc{j} = min(ob0 + {j}, NBo - 1) * {L}")
        w(f"        w{j} = (oc{j} // B) * {K} * B + oc{j} % B")
        w(f"        bj = vld{L}(bp, oc{j})")
        for p in range(BP):
            w(f"        a{j}_{p} = bj")


def _source_blk(L, KB, BP, S=None):
    """pwb_l{L}_k{KB} (S None: 1x1 over the flat map), or cvb_l{L}_k{KB}_s{S}: any kernel
    size at stride S over a padded input (taps: ``toff``), BP pixels of one output row."""
    o = []
    w = o.append
    w("@pjit(fastmath=True, boundscheck=False, error_model='numpy')")
    if S is None:
        w(f"def pwb_l{L}_k{KB}(xf, C, HW, ws, B, bp, yf, N, O, code, alpha, beta):")
    else:
        w(f"def cvb_l{L}_k{KB}_s{S}(xf, C, Hp, Wp, toff, ws, B, bp, yf, N, O, OH, OW, code,")
        w("                  alpha, beta):")
        w("    T = toff.shape[0]")
        w("    HW = OH * OW")
    w(f"    NBo = (O + {L - 1}) // {L}")
    if S is None:
        _emit_flat_tiles(w, KB, BP)
    else:
        w(f"    NG = (NBo + {KB - 1}) // {KB}")
        w(f"    NT = (OW + {BP - 1}) // {BP}")
        w("    for t in prange(N * OH * NT * NG):")
        w("        g = t % NG")
        w("        u = t // NG")
        w("        tx = u % NT")
        w("        u = u // NT")
        w("        oy = u % OH")
        w("        n = u // OH")
        w(f"        ox0 = min(tx * {BP}, OW - {BP})")
        w("        px = oy * OW + ox0")
    _emit_tile_acc(w, L, KB, BP, "C" if S is None else "C * T")
    if S is None:
        w("        xb = n * C * HW + px")
        w("        for c in range(C):")
        w("            xo = xb + c * HW")
        w("            wc = c * B")
        ind = "            "
    else:
        w(f"        xb = n * C * Hp * Wp + oy * {S} * Wp + ox0 * {S}")
        w("        for c in range(C):")
        w("            xc = xb + c * Hp * Wp")
        w("            for q in range(T):")
        w("                xo = xc + toff[q]")
        w("                wc = (c * T + q) * B")
        ind = "                "
    for j in range(KB):
        w(f"{ind}v{j} = vld{L}(ws, w{j} + wc)")
    for p in range(BP):
        w(f"{ind}b = vbc{L}(xf, xo + {p * (S or 1)})")
        for j in range(KB):
            w(f"{ind}a{j}_{p} = vfma{L}(v{j}, b, a{j}_{p})")
    emit_act_consts(w, L, "        ")
    for j in range(KB):
        w(f"        if ob0 + {j} < NBo:")
        w(f"            yb = ((n * NBo + ob0 + {j}) * HW + px) * {L}")
        for p in range(BP):
            w(f"            f = a{j}_{p}")
            emit_act_vec(w, L, "            ", "f")
            w(f"            vst{L}(yf, yb + {p * L}, f)")
    return "\n".join(o) + "\n"


KERNELS_BLK = {}     # (L, KB, S or None) -> kernel
for _L, _T in BLK_TILES.items():
    for _K, _P in _T.items():
        for _S in (None, 2):
            _src = _source_blk(_L, _K, _P, _S)
            exec(compile(_src, __file__, "exec"), globals())
            KERNELS_BLK[(_L, _K, _S)] = globals()[_src.split("def ", 1)[1].split("(", 1)[0]]


def blk_kind(st):
    """How this conv can write its output blocked: "pw" (1x1, stride 1, no padding:
    pwb_l*_k*), "cv" (stride 2, any kernel size, padding, dilation: cvb_l*_k*_s2, the
    stems), None (not group 1, no SIMD tier, other strides)."""
    if not ON or st.simd is None or st.simd[0] not in BLK_TILES:
        return None
    sh, sw, pt, pl, pb, pr, dh, dw, g = st.params
    if g != 1 or sh != sw:
        return None
    if st.KH == 1 and st.KW == 1 and sh == 1 and not (pt or pl or pb or pr):
        return "pw"
    return "cv" if sh == 2 and BLK_CV else None


def _blk_kb(O, L):
    NBo = -(-O // L)
    if NBo == 1:
        return 1
    return min((k for k in BLK_TILES[L] if k > 1), key=lambda k: (-(-NBo // k) * k, -k))


def blk_fits(kind, O, H, W, L) -> bool:
    """Does a blocked output of O x H x W (L channels a block) have a whole pixel tile
    (over the flat map for "pw", a row for "cv")? dw_cv.use_blk asks it for the pair's
    tensor."""
    BP = BLK_TILES[L][_blk_kb(O, L)]
    return H * W >= BP if kind == "pw" else W >= BP


def run_blk(x, st, ws, bp, yf, code, alpha, beta, calls=None):
    """A "pw" conv: x (NCHW) -> yf, the blocked output (N, ceil(O/L), H*W, L); no
    residual."""
    L = st.simd[0]
    emit(calls, KERNELS_BLK[(L, _blk_kb(st.O, L), None)], x.reshape(-1), x.shape[1],
         x.shape[2] * x.shape[3], ws, st.simd[0] * st.simd[1], bp, yf, x.shape[0], st.O,
         code, alpha, beta)


def run_cvb(xp, C, Hp, Wp, toff, st, ws, bp, yf, N, OH, OW, code, alpha, beta, calls=None):
    """A "cv" conv: the padded input xp (flat) -> yf blocked, (N, ceil(O/L), OH*OW, L)."""
    L = st.simd[0]
    emit(calls, KERNELS_BLK[(L, _blk_kb(st.O, L), st.params[0])], xp, C, Hp, Wp, toff, ws,
         st.simd[0] * st.simd[1], bp, yf, N, st.O, OH, OW, code, alpha, beta)


# Blocked *input* (a depthwise conv's output, conv.link_blocked): the same channel-vector
# tile, its broadcasts read from (N, ceil(C/L), HW, L), and the NCHW output stored through
# gen_simd_conv.tile_store_k (16 lanes: 16 x 16 transposes, residual, activation) or
# tile_store (8 lanes: the scalar store the 8-lane channel-vector tiles use): the
# transposes move from the depthwise conv's output to this conv's, which has 4-6x fewer
# channels in a MobileNet block's projection.
BIN_TILES = {16: {1: 16, 2: 12, 3: 8}, 8: {1: 12, 2: 6, 3: 4}}
BIN_MIN_HW = 16    # maps with a whole tile for every KB and lane count


def _source_bin(L, KB, BP):
    B2 = L * KB
    o = []
    w = o.append
    w("@pjit(fastmath=True, boundscheck=False, error_model='numpy')")
    w(f"def pwbi_l{L}_k{KB}(xb, C, HW, ws, B, bp, yf, N, O, rf, has_r, code, alpha, beta, tb):")
    w(f"    NBo = (O + {L - 1}) // {L}")
    w(f"    NBi = (C + {L - 1}) // {L}")
    _emit_flat_tiles(w, KB, BP)
    _emit_tile_acc(w, L, KB, BP, "C")
    w("        for cb in range(NBi):")
    w(f"            xo0 = ((n * NBi + cb) * HW + px) * {L}")
    w(f"            for l in range(min({L}, C - cb * {L})):")
    w(f"                c = cb * {L} + l")
    w("                xo = xo0 + l")
    w("                wc = c * B")
    for j in range(KB):
        w(f"                v{j} = vld{L}(ws, w{j} + wc)")
    for p in range(BP):
        w(f"                b = vbc{L}(xb, xo + {p * L})")
        for j in range(KB):
            w(f"                a{j}_{p} = vfma{L}(v{j}, b, a{j}_{p})")
    w("        buf = tb[numba.get_thread_id()]")
    for p in range(BP):
        for j in range(KB):
            w(f"        vst{L}(buf, {p * B2 + j * L}, a{j}_{p})")
    if L == 16:
        w(f"        tile_store_k(buf, {B2}, {BP}, yf, rf, has_r, n, O, 1, HW, 0, px, ob0 * 16, "
          "code,")
        w("                     alpha, beta, _QW1, _QP3, _QF1)")
    else:
        w(f"        tile_store(buf, {B2}, {BP}, yf, rf, has_r, n, O, 1, HW, 0, px, ob0 * {L}, "
          "code,")
        w("                   alpha, beta, _QF1, False, 0, 0, 0, 0)")
    return "\n".join(o) + "\n"


_QW1 = np.zeros(1, np.int32)
_QP3 = np.array([3, 0, 0, 0, 0, 0], np.int64)    # tile_store_k: y only
_QF1 = np.zeros(2, np.float32)
KERNELS_BIN = {}     # (L, KB) -> kernel
for _L, _T in BIN_TILES.items():
    for _K, _P in _T.items():
        exec(compile(_source_bin(_L, _K, _P), __file__, "exec"), globals())
        KERNELS_BIN[(_L, _K)] = globals()[f"pwbi_l{_L}_k{_K}"]
BIN_LANES = (16, 8)   # the lane counts whose depthwise -> 1x1 pairs hand off blocked (A/B)


# Readers with 2-3 output blocks (24 or 32 channels: MobileNets' narrow projections) were
# kept on NCHW input once (MobileNetV2 1.000 / 0.990 either way, before the depthwise conv
# stored its blocked output from registers). Since then, their depthwise writer spends ~40 %
# of its time on the NCHW transposes (profile of MobileNetV2's 144-channel 56x56 one): with
# them blocked, per step (two threads, Zen 5) 120 -> 68 us there, 135 -> 95 at 112x112/2,
# the projections themselves 0.82-0.95x; MobileNetV2 f32 0.954 (in-process A, B, A', both
# orders), MobileNetV3-small 0.998 (sixteenth session).
# 8 lanes: only readers on the 6-pixel tiles (KB = 2). Against the pixel-vector kernel
# (pw_f32_l8) the 4-pixel KB = 3 tiles (24 or 40 output channels) lost more in the reader
# than the depthwise writer saved: MobileNetV2's 96 -> 24 at 56 x 56 took 219 us against
# 128, MobileNetV3-small's 96 / 240 -> 40 at 14 x 14 52-54 against 29-36 (avx2, two threads,
# twenty-eighth session); with KB = 2 the pairs gained.
def bin_ok(st) -> bool:
    """Does this conv read a blocked input (pwbi_l*_k*) where it can: 1x1, stride 1, no
    padding, group 1, a BIN_LANES tier (any residual, any activation), at least 16 output
    channels; at 8 lanes, KB = 2 tiles."""
    if blk_kind(st) != "pw" or st.simd[0] not in BIN_LANES or st.O < 16:
        return False
    return st.simd[0] == 16 or _blk_kb(st.O, st.simd[0]) == 2


def run_bin(xb, C, HW, st, ws, bp, y, r, has_r, code, alpha, beta, calls=None):
    """xb: the blocked input (N, ceil(C/L), HW, L) -> y (NCHW)."""
    L = st.simd[0]
    KB = _blk_kb(st.O, L)
    BP = BIN_TILES[L][KB]    # (HW >= BIN_MIN_HW: the depthwise writer checks)
    nt = numba.config.NUMBA_NUM_THREADS
    tb = tls_rows("pwbi.tb", nt, tile_buf_len(L * KB, BP))
    emit(calls, KERNELS_BIN[(L, KB)], xb, C, HW, ws, st.simd[0] * st.simd[1], bp,
         y.reshape(-1), y.shape[0], st.O, r.reshape(-1), has_r, code, alpha, beta, tb)


# 1x1 convs on a 1x1 map (squeeze-excitation's two convs, a conv classifier): a matrix-
# vector product. On the channel-vector tiles they ran P = 1 tiles (one accumulator: every
# FMA waited for the one before; MobileNetV3-small's 576 -> 144 -> 576 pair took 7 + 10 us
# at one thread). Here 4 accumulators per L output channels over interleaved input
# channels, then their sum, the bias, residual and activation, and a masked store. One
# template for 16 and 8 lanes (the 8-lane tiers ran the P = 1 tiles until the twenty-
# eighth session).
def _source_mv(L):
    o = []
    w = o.append
    w("@pjit(fastmath=True, boundscheck=False, error_model='numpy')")
    w(f"def mv_f32_l{L}(xf, C, ws, B, bp, yf, N, O, rf, has_r, code, alpha, beta):")
    w("    NB = (O + B - 1) // B")
    w(f"    V = B // {L}")
    emit_act_consts(w, L, "    ")
    w("    for t in prange(N * NB):")
    w("        ob = t % NB")
    w("        n = t // NB")
    w("        xb = n * C")
    w("        for j in range(V):")
    w(f"            o0 = ob * B + j * {L}")
    w("            if o0 >= O:")
    w("                break")
    w(f"            a0 = vld{L}(bp, o0)")
    for i in (1, 2, 3):
        w(f"            a{i} = z0")
    w(f"            wb = ob * C * B + j * {L}")
    w("            c = 0")
    w("            while c + 4 <= C:")
    w("                w0 = wb + c * B")
    for i in range(4):
        off = "" if i == 0 else (" + B" if i == 1 else f" + {i} * B")
        xo = "" if i == 0 else f" + {i}"
        w(f"                a{i} = vfma{L}(vld{L}(ws, w0{off}), vbc{L}(xf, xb + c{xo}), a{i})")
    w("                c += 4")
    w("            while c < C:")
    w(f"                a0 = vfma{L}(vld{L}(ws, wb + c * B), vbc{L}(xf, xb + c), a0)")
    w("                c += 1")
    w(f"            f = vadd{L}(vadd{L}(a0, a1), vadd{L}(a2, a3))")
    w(f"            nc = min({L}, O - o0)")
    w("            yb = n * O + o0")
    w("            if has_r:")
    w(f"                f = vadd{L}(f, vldm{L}(rf, yb, nc))")
    emit_act_vec(w, L, "            ", "f")
    w(f"            vstm{L}(yf, yb, f, nc)")
    w("            if code != ActCode.NONE and code != ActCode.RELU and code != ActCode.CLIP \\")
    w("                    and code != ActCode.HARD_SWISH:")
    w("                for i in range(yb, yb + nc):")
    w("                    yf[i] = act_call(yf[i], code, alpha, beta)")
    return "\n".join(o) + "\n"


MV_KERNELS = {}
MV_LANES = (16, 8)   # the lane counts that use them ((16,): 8 lanes on the P = 1 tiles, A/B)
for _L in MV_LANES:
    exec(compile(_source_mv(_L), __file__, "exec"), globals())
    MV_KERNELS[_L] = globals()[f"mv_f32_l{_L}"]


def use_mv(st, x_shape, y_shape) -> bool:
    """A 1x1 conv whose input and output maps are 1x1 (group 1, no padding, a 16- or
    8-lane tier): ``mv_f32_l16`` / ``mv_f32_l8``."""
    if not ON or st.simd is None or st.simd[0] not in MV_LANES or st.KH != 1 \
            or st.KW != 1:
        return False
    sh, sw, pt, pl, pb, pr, dh, dw, g = st.params
    return (g == 1 and not (pt or pl or pb or pr) and x_shape[2] == x_shape[3] == 1
            and y_shape[2] == y_shape[3] == 1)


def run_mv(x, y, st, ws, bp, r, has_r, code, alpha, beta, calls=None):
    L, k = st.simd
    emit(calls, MV_KERNELS[L], x.reshape(-1), x.shape[1], ws, L * k, bp, y.reshape(-1),
         x.shape[0], y.shape[1], r.reshape(-1), has_r, code, alpha, beta)


def _pick(L, C):
    """(kernel, pixels per tile) for this lane count and input channel count."""
    if C >= WIDE_C and L in WIDE:
        return KERNELS_WIDE[L], L * WIDE[L][1]
    return KERNELS[L], L * V_OF[L]


def use(st, x_shape, y_shape) -> bool:
    """Does this f32 conv run here: 1x1, stride 1, no padding, group 1, a SIMD tier, at
    least one pixel tile, the overlapping last tile recomputing <= 25%."""
    if not ON or st.simd is None or st.KH != 1 or st.KW != 1:
        return False
    sh, sw, pt, pl, pb, pr, dh, dw, g = st.params
    if sh != 1 or sw != 1 or pt or pl or pb or pr or g != 1:
        return False
    L = st.simd[0]
    if L not in KERNELS:
        return False
    pix = _pick(L, x_shape[1])[1]
    HW = y_shape[2] * y_shape[3]
    return HW >= pix and -(-HW // pix) * pix * 4 <= HW * 5


def run(x, y, st, ws, bp, r, has_r, code, alpha, beta, calls=None):
    L, k = st.simd
    N, C = x.shape[0], x.shape[1]
    O = y.shape[1]
    emit(calls, _pick(L, C)[0], x.reshape(-1), C, y.shape[2] * y.shape[3], ws, L * k, bp,
         y.reshape(-1), N, O, r.reshape(-1), has_r, code, alpha, beta)


def warm(L):
    """Compile (or load) the kernel at run()'s argument types (edgenet warmup)."""
    for C in {1, WIDE_C}:
        f, pix = _pick(L, C)
        z = np.zeros(C * pix, np.float32)
        f(z, C, pix, np.zeros(C * L, np.float32), L, z[:L].copy(), z.copy(), 1, 1, z.copy(),
          False, 1, np.float32(0), np.float32(6))
    z = np.zeros(64 * 16, np.float32)
    for (lb, kb, S), f in KERNELS_BLK.items():
        if lb != L:
            continue
        if S is None:
            f(z, 1, 24, np.zeros(L, np.float32), L, z[:L].copy(), z.copy(), 1, L, 1,
              np.float32(0), np.float32(6))
        else:   # a 1 x 24 output from a 1 x 48 padded input, one tap
            f(z, 1, 1, 48, np.zeros(1, np.int64), np.zeros(L, np.float32), L,
              z[:L].copy(), z.copy(), 1, L, 1, 24, 1, np.float32(0), np.float32(6))
    nt = numba.config.NUMBA_NUM_THREADS
    for (lb, kb), f in KERNELS_BIN.items():   # blocked input: 16 pixels, L channels in
        if lb != L:
            continue
        tb = np.zeros((nt, tile_buf_len(L * kb, BIN_TILES[L][kb])), np.float32)
        f(z[:16 * L].copy(), L, 16, np.zeros(L * L, np.float32), L, z[:L].copy(),
          z[:16 * L].copy(), 1, L, z[:16 * L].copy(), False, 1, np.float32(0), np.float32(6),
          tb)
    z = np.zeros(64, np.float32)
    MV_KERNELS[L](z, 4, np.zeros(4 * L, np.float32), L, z[:L].copy(), z.copy(), 1, 1,
                  z.copy(), False, 1, np.float32(0), np.float32(6))


__all__ = ["use", "use_mv", "run", "run_blk", "run_bin", "run_cvb", "run_mv", "warm",
           "KERNELS", "KERNELS_BLK", "KERNELS_BIN", "BIN_MIN_HW", "blk_kind", "blk_fits",
           "bin_ok", "MV_KERNELS", "simd"]
