"""Conv and ConvTranspose.

Conv paths (all fused: bias + residual + activation epilogue):

- ``_conv_tiled``: group == 1 (any stride/dilation/pads). Weights expanded to
  (O/OT, C, kh, kw, OT) with OT = 16 output channels innermost; each prange iteration is
  (batch, output-channel block, output row); the inner micro-kernel keeps OT accumulators per
  output pixel in a fixed-size loop that LLVM vectorizes over output channels.
- ``simd_conv`` / ``simd_dwconv``: the fast path (group == 1 or depthwise, any weight
  policy, stride 1 or 2): explicit-SIMD register tiles generated on first use from a
  fixed menu (``gen_simd_conv``), weights in ``simd_layout``; see docs/PERFORMANCE.md.
- ``_conv_plane``: the general path (groups, depthwise, packed weights): one prange iteration
  per (batch, output channel) plane; the filter row is decoded into a per-thread buffer when
  weights are packed; taps accumulate into the output plane with vectorized row loops.

int8 activations (edgenet/quant.py): group-1 convs run qconv's uint8 x int8 kernels; a
depthwise conv (``ConvState.dq``) reads its input as uint8 (written by its int8 producer's
epilogue, or quantized here): ``dw_cv``'s uint8 kernels put the codes in their bands and
sum code x level exactly with float32 FMAs, then the int8 epilogue (``ConvState.dqk``);
other geometries and tiers run the float32 kernels on the dequantized tensor.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np
import numba
from numba import prange

from ._common import (ENC_Q3, ENC_T2, FM, OpImpl, Weights, act, act_of, attrs, const_f32,
                      decode_row, node_inputs, scratch)
from .._jit import njit, pjit, thread_calls
from ..activation import ActCode
from . import simd
from ._common import NoBind, bind_calls, emit, tls_buffer, tls_rows
from . import _common
from . import gen_simd_conv
from . import dw_cv, pw_f32, stem_f32, wino_f32
from . import qconv
from .. import quant
from .simd_layout import decode_rows, decode_simd, expand_simd, i8_simd, ternary_bits  # noqa: F401


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
            wsel = wblk.reshape((1, C, KH, KW, OT))
        else:
            wsel = wt[ob:ob + 1]
        # one call site, one argument typing: LLVM re-optimizes each inlined copy of
        # _rows_one inside this gufunc (two copies took ~15 s of compilation)
        _rows_one(x, n, wsel, 0, b[ob * OT:], y[:, ob * OT:], r[:, ob * OT:], has_r, oy,
                  KH, KW, sh, sw, pt, pl, dh, dw, code, alpha, beta, acc)


def expand_tiled(wf, O, C, KH, KW):
    """(O, C*kh*kw) float32 -> (ceil(O/OT), C, kh, kw, OT), zero-padded output channels."""
    nb = (O + OT - 1) // OT
    w = np.zeros((nb * OT, C, KH, KW), np.float32)
    w[:O] = wf.reshape(O, C, KH, KW)
    return np.ascontiguousarray(w.reshape(nb, OT, C, KH, KW).transpose(0, 2, 3, 4, 1))


# ----------------------------------------------------------------------------- SIMD path
# Tile choices: output-channel vectors k per lanes L -> candidate pixel-tile widths P
# (the menu of gen_simd_conv; kernels are generated on first use).
_P_CHOICES = gen_simd_conv.F32_TILES
_K_PREF = {16: (2, 3, 1), 8: (2, 1)}


def choose_k(O, L):
    """Output-channel vectors per tile: least zero-padding of O, ties by _K_PREF order."""
    best = None
    for k in _K_PREF[L]:
        B = L * k
        waste = -(-O // B) * B
        if best is None or waste < best[0]:
            best = (waste, k)
    return best[1]


# Pixel-tile widths a tier does not use (none today). The generic tier skipped the 8-lane
# k = 2, P = 7 tile (one register past 16 ymm on x86, 34 of 32 q on NEON: ResNet-18 f32
# 0.92x as fast with it), which has since left the 8-lane menu (gen_simd_conv.F32_TILES).
P_SKIP: dict = {}
# Widths used only for reductions of at least P_LONG_K (C * kh * kw) terms: with shorter
# ones the 6-pixel tiles ran faster than these on rows they fit exactly (ResNet-20's
# 3-channel stem, 27 terms, 32 wide: 0.89x with 4-pixel tiles; ResNet-18 layer2's 1x1
# downsample, 64 terms, 28 wide: 0.83x with 4-pixel ones on generic), while ResNet-20's
# 3x3 convs of 16 channels (144 terms) gained 1.10-1.16x.
P_LONG = {8: (4,)}
P_LONG_K = 96
# (L, P) -> its pixels' relative speed (least work / speed wins): the 8-lane 4-pixel tile
# (2 weight loads + 4 broadcasts a tap for 8 FMAs, against 2 + 6 for 12) on rows of 7, 8,
# 14, 16 and 32, not 28 or 56
P_EFF = {(8, 4): 0.9}


# 1x1 stride-1 unpadded convs on the channel-vector tiles tile their output as one flat row
# of OH * OW pixels (the input plane is one row of H * W pixels, the only tap at offset 0)
# where that computes fewer pixels than row by row (``flat_p``): a 7 x 7 map at 8 lanes is
# 9 tiles of 6 pixels (54 for 49) instead of 7 rows of two 4-pixel tiles (the spilled
# 7-pixel tile when this was measured), a 28-wide row's 30 pixels become 786 for 784. Not
# where the conv writes its reader's padded input (``st.po``: rows of the padded plane).
# False: row by row (A/B).
FLAT_1X1 = True


def tile_work(n, L, P):
    """Pixels computed for a row of n by P-pixel tiles, divided by the tile's P_EFF."""
    return -(-n // P) * P / P_EFF.get((L, P), 1.0)


def flat_p(st, OH, OW, L, k, P, narrow):
    """P for the flat map of a 1x1 stride-1 unpadded conv (FLAT_1X1) where it computes
    less than OH rows of the row tile ``P``, or where the rows are narrower than the k
    menu (``narrow``: P is a narrow-row tile, 4 or 1 pixels of one channel vector); else
    None."""
    sh, sw, pt, pl, pb, pr, dh, dw, g = st.params
    if not FLAT_1X1 or OH == 1 or st.KH != 1 or st.KW != 1 or sh != 1 or st.po is not None \
            or pt or pl or pb or pr:
        return None
    Pf = choose_p(OH * OW, L, k, tier=st.tier, K=st.K)
    if Pf is None or (not narrow and tile_work(OH * OW, L, Pf) >= OH * tile_work(OW, L, P)):
        return None
    return Pf


def choose_p(OW, L, k, small=False, tier=None, K=P_LONG_K):
    """Pixel-tile width: least recomputed pixels (tiles overlap at the row end), larger P
    on ties; None when the row is narrower than every tile. ``small``: the narrow-row
    tiles (k = 1 only; P = 1 fits every row). ``tier``: skip its P_SKIP widths; ``K``:
    the reduction's length (P_LONG). P_SKIP / P_LONG / P_EFF were measured on the menu of
    the layer's k, so they leave the narrow-row tiles alone."""
    best = None
    skip, eff = (), {}
    if not small:
        skip = P_SKIP.get(tier, ()) + (P_LONG.get(L, ()) if K < P_LONG_K else ())
        eff = P_EFF
    for P in (gen_simd_conv.SMALL_P if small else _P_CHOICES[L][k]):
        if P > OW or P in skip:
            continue
        work = -(-OW // P) * P / eff.get((L, P), 1.0)
        if best is None or work < best[0]:
            best = (work, P)
    return None if best is None else best[1]


def dense_f(st):
    """(O, C*kh*kw) float32 filter of a group-1 conv (rebuilt from the SIMD layout when the
    expanded policy dropped it: the fallback kernels are rare)."""
    w = st.w
    if w.f is None:
        L, k = st.simd
        B = L * k
        ws = st.wsimd.reshape(-1, w.K, B)
        w.f = np.ascontiguousarray(ws.transpose(0, 2, 1).reshape(-1, w.K)[:w.O])
    return w.f


@njit(boundscheck=False)
def _pad_copy(x, xp, pt, pl):
    """x (N, C, H, W) -> xp (N, C, Hp, Wp) zero-padded (top/left offsets pt, pl), plane by
    plane (gen_simd_conv.pad_plane: vectorized row copies, every byte of xp written). One
    compiled call: NumPy's five slice assignments cost ~1 us each (ResNet-20's 16x32x32
    input: 7.8 -> 6.2 us through the dispatcher, less bound)."""
    N, C, H, W = x.shape
    Hp, Wp = xp.shape[2], xp.shape[3]
    xf = np.ravel(x)
    xpf = xp.reshape(-1)
    PP = Hp * Wp
    for p in range(N * C):
        gen_simd_conv.pad_plane(xf, p * H * W, H, W, pt, pl, Hp, Wp, xpf, p * PP)


# The padded hand-off (link_padded): a float32 conv whose output a padded float32 conv
# reads stores its tiles into that reader's padded input as well (the tile kernels'
# ``pf, pg``), and the reader skips its copy of the tensor into a padded buffer (_pad_copy:
# serial, 2-2.5 us per conv at ResNet-20's 16x32x32: skipping every copy, results aside,
# made ResNet-20 f32 0.83x the time). The buffer is the pair's own (one per padded size,
# like qconv.qin_key), its border zeroed by the producer (once for a bound step: nothing
# else writes it). Measured (in-process A, B, A', both orders, Zen 5, 2 threads):
# ResNet-20 f32 0.90 (16 pairs), forced avx2 0.96; ResNet-18 f32 1.00 (PAD_MAX below).
PAD_SLACK = 64          # floats past the padded tensor (>= stem_f32.SLACK)
PAD_ON = True           # False: no padded hand-off (every padded conv copies; A/B)
# outputs of at most this many floats only: ResNet-18's (64-512 channels, 56x56-7x7, the
# tiles' scalar stores twice) were 1.02-1.04x the time with every pair on, in-process A/B
PAD_MAX = 1 << 15
_PG0 = np.zeros(5, np.int64)
_PF0 = np.zeros(1, np.float32)


@njit(boundscheck=False)
def _zero_border(xp, planes, H, W, Hp, Wp, pt, pl):
    """The padding of (planes, Hp, Wp) float32 planes: zeros (the interior is left)."""
    for p in range(planes):
        b = p * Hp * Wp
        for yy in range(Hp):
            r = b + yy * Wp
            if yy < pt or yy >= pt + H:
                for i in range(Wp):
                    xp[r + i] = 0.0
            else:
                for i in range(pl):
                    xp[r + i] = 0.0
                for i in range(pl + W, Wp):
                    xp[r + i] = 0.0


def _pad_key(key, Hp, Wp):
    return f"{key}@{Hp}x{Wp}"


def padded_output(st, N, O, OH, OW):
    """(pf, pg) for a kernel that can store into its padded reader's input as well
    (``st.po``), recorded as written for that shape (``_common.set_blk_out``); the unused
    pair otherwise."""
    if st.po is None or N * O * OH * OW > PAD_MAX:
        return _PF0, _PG0
    key, (pt, pl, pb, pr) = st.po
    Hp, Wp = OH + pt + pb, OW + pl + pr
    pf = tls_buffer(_pad_key(key, Hp, Wp), N * O * Hp * Wp + PAD_SLACK)
    # every call on the run path (the buffer may be new); a bound step's buffer once, now
    # (it holds this buffer: ``tls_generation``)
    _zero_border(pf, N * O, OH, OW, Hp, Wp, pt, pl)
    _common.set_blk_out(key, (N, O, OH, OW), True)
    pg = st.po_pg.get((Hp, Wp))
    if pg is None:
        pg = st.po_pg[(Hp, Wp)] = np.array([1, Hp, Wp, pt, pl], np.int64)
    return pf, pg


def padded_input(x, st, key, extra, calls=None):
    """x zero-padded by st's pads, flat, ``extra`` floats of slack past it: the producer's
    padded copy where it wrote one for this shape (``st.pi``: link_padded), else a copy
    into this thread's ``key`` buffer."""
    sh, sw, pt, pl, pb, pr, dh, dw, g = st.params
    N, C, H, W = x.shape
    Hp, Wp = H + pt + pb, W + pl + pr
    if st.pi is not None and _common.blk_out(st.pi, x.shape):
        return tls_buffer(_pad_key(st.pi, Hp, Wp), N * C * Hp * Wp + PAD_SLACK)
    xp = tls_buffer(key, N * C * Hp * Wp + extra)
    emit(calls, _pad_copy, x, xp[:N * C * Hp * Wp].reshape(N, C, Hp, Wp), pt, pl)
    return xp


def _pad_out_none(st, y_shape):
    if st.po is not None:      # the kernel path taken writes no padded copy
        _common.set_blk_out(st.po[0], y_shape, False)


def simd_conv(x, y, st, toff, b, r, has_r, code, alpha, beta, calls=None):
    """Run the SIMD kernel; False when this geometry has no SIMD tile (caller falls back).
    ``calls``: record the calls instead (``_common.emit``)."""
    _pad_out_none(st, y.shape)   # padded_output says otherwise where a kernel writes it
    sh, sw, pt, pl, pb, pr, dh, dw, g = st.params
    if sh != sw or sh not in (1, 2):
        return False
    L, k = st.simd
    N, C, H, W = x.shape
    O, OH, OW = y.shape[1], y.shape[2], y.shape[3]
    B = L * k                    # channels per block of the weight layout
    P = choose_p(OW, L, k, tier=st.tier, K=st.K)
    kt = k                       # the tile's channel vectors
    narrow = P is None
    if narrow:                   # a narrow row: a k = 1 tile on the same layout
        kt, P = 1, choose_p(OW, L, 1, small=True)
    if b is st.b:
        bp = st.bp
    else:
        if calls is not None:
            raise NoBind    # a bias computed per call
        bp = tls_buffer("conv.bp", -(-O // B) * B)
        bp[:] = 0
        bp[:O] = b.reshape(-1)
    if st.wsimd is not None:
        ws = st.wsimd
    else:       # packed weights: decoded per call into the thread's buffer, never held
        ws = decode_simd(st.w, L, k)
        if calls is not None:
            calls.append((decode_simd, (st.w, L, k)))
    if st.bi2 is not None and _common.blk_out(st.bi2, x.shape):   # the dw producer's blocks
        xb = tls_buffer(st.bi2, N * -(-C // L) * H * W * L)
        pw_f32.run_bin(xb, C, H * W, st, ws, bp, y, r, has_r, code, alpha, beta, calls)
        return True
    blk = st.bo is not None and dw_cv.use_blk(st.bo[0], y.shape)
    if blk:   # blocked for its depthwise reader (link_blocked): channel vectors
        yb = tls_buffer(st.bo[1], N * -(-O // L) * OH * OW * L)
        if st.bo[0].bi[1] == "pw":
            pw_f32.run_blk(x, st, ws, bp, yb, code, alpha, beta, calls)
            return True
    elif pw_f32.use(st, x.shape, y.shape):     # 1x1: vectors over pixels (pw_f32.py)
        pw_f32.run(x, y, st, ws, bp, r, has_r, code, alpha, beta, calls)
        return True
    elif pw_f32.use_mv(st, x.shape, y.shape):  # 1x1 on a 1x1 map: a matrix-vector product
        pw_f32.run_mv(x, y, st, ws, bp, r, has_r, code, alpha, beta, calls)
        return True
    elif stem_f32.use(st, x.shape, y.shape, has_r, code):   # C <= 4: vectors over pixels
        xp = (stem_f32.split_input(x, st, calls) if sh == 2 else
              padded_input(x, st, "stem.xp", stem_f32.SLACK, calls))
        if st.pool is not None and sh == 2 and stem_f32.POOL_ON and not _common.nchw_only():
            # the MaxPool step, next, runs the conv and pool kernel into its output: y is
            # not written (link_pool)
            _common.set_blk_out(st.pool, y.shape,
                                stem_f32.pool_call(x, y.shape, st, ws, bp, code, alpha, beta, xp))
            return True
        stem_f32.run(x, y, st, toff, ws, bp, code, alpha, beta, xp,
                     padded_output(st, N, O, OH, OW), calls)
        return True
    elif stem_f32.use_pv(st, x.shape, y.shape, code):       # O <= 16, stride 1: the same
        stem_f32.run(x, y, st, toff, ws, bp, code, alpha, beta,
                     padded_input(x, st, "stem.xp", stem_f32.SLACK, calls),
                     padded_output(st, N, O, OH, OW), calls, r, has_r)
        return True
    elif (st.wsimd is not None and (st.po is None or N * O * OH * OW > PAD_MAX)
          and wino_f32.use(st, x.shape, y.shape, has_r, code)):    # 3x3 stride 1
        if st.wino is None:
            st.wino = wino_f32.filters(dense_f(st), O, C).reshape(-1)
        wino_f32.run(x, y, st, bp, r, has_r, code, alpha, beta, calls)
        return True
    Hp, Wp = H + pt + pb, W + pl + pr
    yf = y.reshape(-1)
    if pt or pl or pb or pr:
        xf = padded_input(x, st, "conv.xp", 0, calls)
    else:
        xf = x.reshape(-1)
    if blk:
        pw_f32.run_cvb(xf, C, Hp, Wp, toff, st, ws, bp, yb, N, OH, OW, code, alpha, beta,
                       calls)
        return True
    Pf = flat_p(st, OH, OW, L, k, P, narrow)
    if Pf is not None:           # the map as one row (FLAT_1X1)
        kt, P, Hp, Wp, OH, OW = k, Pf, 1, H * W, 1, OH * OW
    nt = numba.config.NUMBA_NUM_THREADS
    tb = tls_rows("conv.tb", nt, gen_simd_conv.tile_buf_len(L * kt, P))
    emit(calls, gen_simd_conv.conv_kernel(L, kt, P, sh), xf, C, Hp, Wp, ws, B, bp,
         *padded_output(st, N, O, OH, OW), toff, yf, N, O, OH, OW, r.reshape(-1),
         has_r, code, alpha, beta, tb)
    return True


# Depthwise planes of at least this many pixels are padded per plane inside the kernel
# (input read once); smaller ones padded as one tensor first. A/B, 1 thread, per conv:
# 144ch 56x56 0.85, 96ch 112x112/2 0.86, 32ch 112x112 0.85, 240ch 28x28 5x5 0.82 of the
# one-copy time; 960ch 7x7 1.6 (per-plane overhead), hence the threshold.
DW_PLANE_PAD = 400
_DW_NOPAD = np.zeros((1, 1), np.float32)


def simd_dwconv(x, y, st, toff, b, r, has_r, code, alpha, beta, calls=None, xq=None):
    """Depthwise (C/group == 1) SIMD kernel; False when the geometry has none. ``xq``: the
    input as uint8 words (int8 depthwise where ``dw_cv.use_q``)."""
    DW_V = gen_simd_conv.DW_V
    if st.bo2 is not None:      # dw_cv.run says otherwise where it writes blocked
        _common.set_blk_out(st.bo2, y.shape, False)
    sh, sw, pt, pl, pb, pr, dh, dw, g = st.params
    if xq is not None:
        return 2 if dw_cv.run(x, y, st, toff, b, r, has_r, code, alpha, beta, calls, xq) else True
    if sh != sw or sh not in (1, 2):
        return False
    if dw_cv.use_blk(st, x.shape):             # its producer's blocked output (link_blocked)
        return 2 if dw_cv.run(x, y, st, toff, b, r, has_r, code, alpha, beta, calls,
                              blk=True) else True
    if dw_cv.use(st, x.shape, y.shape):        # channel vectors (dw_cv.py)
        return 2 if dw_cv.run(x, y, st, toff, b, r, has_r, code, alpha, beta, calls) else True
    L = st.simd_dw
    N, C, H, W = x.shape
    O, OH, OW = y.shape[1], y.shape[2], y.shape[3]
    Hp, Wp = H + pt + pb, W + pl + pr
    LV = L * (DW_V if sh == 1 else 2)
    slack = 4 * LV + Wp + 64
    nt = numba.config.NUMBA_NUM_THREADS
    if H * W >= DW_PLANE_PAD:
        # one padded plane per thread, filled by the kernel (the slack: dropped outputs)
        xq = tls_rows("conv.dwpad", nt, Hp * Wp + slack)
        xf, ptk = x.reshape(-1), pt
    else:    # small planes: the whole tensor padded once here (pt = -1 tells the kernel)
        xf = tls_buffer("conv.xp", N * C * Hp * Wp + slack)
        emit(calls, _pad_copy, x, xf[:N * C * Hp * Wp].reshape(N, C, Hp, Wp), pt, pl)
        xq, ptk = _DW_NOPAD, -1
    if sh == 1:
        psize = -(-(OH * Wp) // LV) * LV
    else:
        psize = OH * (-(-OW // LV) * LV)
    psize += L   # the vector epilogue may read up to L - 1 floats past the last row
    pbuf = tls_rows("conv.dwplane", nt, psize)
    emit(calls, gen_simd_conv.dw_kernel(L, sh), xf, C, H, W, ptk, pl, Hp, Wp, st.wdw,
         b.reshape(-1), toff, y.reshape(-1), N, O, OH, OW, r.reshape(-1), has_r, code, alpha,
         beta, pbuf, xq)
    return True


@njit(boundscheck=False)
def _dequant_words(words, N, C, HW, s, zp, out):
    """uint8 words (N, ceil(C/4), HW) of 4 channels -> float32 (N, C, HW) flat,
    ``(q - zp) * s`` (quant.fake_quant's values, bit for bit)."""
    b = words.view(np.uint8)
    C4 = (C + 3) // 4
    for n in range(N):
        for c in range(C):
            src = (n * C4 + c // 4) * HW * 4 + c % 4
            dst = (n * C + c) * HW
            for p in range(HW):
                out[dst + p] = (np.float32(b[src + 4 * p]) - zp) * s


def warm_padded():
    """Compile (or load) ``_zero_border`` at padded_output's argument types (edgenet
    warmup: its single-node cases never link a pair)."""
    _zero_border(np.zeros(9, np.float32), 1, 1, 1, 3, 3, 1, 1)


def warm_dequant():
    """Compile (or load) ``_dequant_words`` at _dw_input's argument types (edgenet warmup)."""
    _dequant_words(np.zeros(1, np.int32), 1, 1, 1, np.float32(1), np.float32(0),
                   np.zeros(1, np.float32))


def _dw_input(st, x, calls):
    """An int8 depthwise conv's input: (x, its uint8 words) where dw_cv reads them, else
    (the float32 values they stand for, None). The words are its producer's (``st.dq``'s
    key) or quantized here."""
    s, zp, key = st.dq
    N, C, H, W = x.shape
    C4 = -(-C // 4)
    if key is not None:
        words = tls_buffer(key, N * C4 * H * W).view(np.int32)
    else:
        buf, _, _ = qconv.quantize_padded(x, {"C4": C4, "s": s, "zp": zp}, 0, 0, 0, 0,
                                          "dwq.xq", calls)
        words = buf.view(np.int32)
    if dw_cv.use_q(st):
        return x, words
    xf = tls_buffer("dwq.x", x.size)
    emit(calls, _dequant_words, words, N, C, H * W, s, zp, xf)
    return xf.reshape(x.shape), None


# ----------------------------------------------------------------------------- OpImpls
_DUMMY4 = np.zeros((1, 1, 1, 1), np.float32)
_DUMMY5 = np.zeros((1, 1, 1, 1, OT), np.float32)


def _ro(a):
    """A read-only view. The fallback kernels (_conv_tiled, _conv_plane, _convt_plane) get
    their weight arrays read-only whatever their origin (a file view, a decoded copy, a
    dummy): one compiled signature each instead of three (~4 s of compilation each)."""
    if a.flags.writeable:
        a = a.view()
        a.flags.writeable = False
    return a


_RO_W2 = _ro(_DUMMY4[0, 0])
_RO_W5 = _ro(_DUMMY5)


def _consts_but_weight(node, consts):
    """float32 constants by input position, except the weight (position 1: held by
    ``Weights`` under the policy; a dequantized float copy here would double the memory)."""
    return [const_f32(consts, n) if (i != 1 and n and n in consts) else None
            for i, n in enumerate(node_inputs(node))]


def _bias(node, consts, O):
    """The bias (O,) float32, a private writable copy (zeros without one)."""
    names = node_inputs(node)
    if len(names) > 2 and names[2] and names[2] in consts:
        return np.array(const_f32(consts, names[2]), np.float32).reshape(-1)
    return np.zeros(O, np.float32)


# activations the blocked kernels' vector epilogues apply (others: act_call per value)
_VEC_ACTS = (ActCode.NONE, ActCode.RELU, ActCode.CLIP, ActCode.HARD_SWISH)


def link_blocked(nodes, states, outputs) -> int:
    """Pairs (producer, depthwise reader) whose hand-off may skip NCHW: a float32 conv
    that ``pw_f32.blk_kind`` can run blocked (1x1 stride 1 unpadded, or stride 2: the stems;
    group 1, no residual, an activation with a vector epilogue) whose output only one
    float32 depthwise conv (multiplier 1, dw_cv, the same lane count L) reads, and no graph
    output. The producer (``pw_f32.run_blk`` / ``run_cvb``) then stores whole L-channel
    vectors into a per-thread buffer, ``(N, ceil(C/L), H, W, L)``, and the reader copies its
    band rows from it (no transposes) -- per call, where ``dw_cv.use_blk`` says for the
    shapes (both sides ask it; neither touches the NCHW buffer then). And a depthwise conv
    (no residual) whose output only a 1x1 conv with at least 16 output channels and the
    same lane count (16 or 8) reads (``pw_f32.bin_ok``): it writes blocked where it runs
    dw_cv (``bo2``), the reader reads the blocks (``bi2``, ``pw_f32.run_bin``). Measured
    in docs/PERFORMANCE.md,
    "Blocked hand-off to depthwise convs". In place on the states; returns the number of
    pairs. (The runtime calls it after prepare, as the backend's ``link_states``.)"""
    readers: dict = {}
    made: dict = {}
    data_of: dict = {}       # value -> a node reading it as its first (data) input
    for i, nd in enumerate(nodes):
        for n in nd.get("inputs", []):
            if n:
                readers[n] = readers.get(n, 0) + 1
        for n in nd.get("outputs", []):
            made[n] = i
        if nd.get("inputs"):
            data_of[nd["inputs"][0]] = i
    outs = set(outputs)
    count = 0
    for j, nd in enumerate(nodes if dw_cv.BLK_ON else ()):
        sb = states[j]
        if nd.get("op") != "Conv" or not isinstance(sb, ConvState) or sb.simd_dw is None \
                or sb.wcv is None or sb.dq is not None or sb.O != sb.params[-1]:
            continue
        t = nd["inputs"][0]
        i = made.get(t)
        if i is None or t in outs or readers.get(t) != 1 or nodes[i].get("op") != "Conv":
            continue
        sa = states[i]
        ins = nodes[i].get("inputs", [])
        kind = pw_f32.blk_kind(sa) if isinstance(sa, ConvState) else None
        if kind is None or sa.simd[0] != sb.simd_dw \
                or sa.q is not None or sa.qo is not None \
                or (len(ins) > 3 and ins[3]) or len(nodes[i].get("outputs", [])) != 1 \
                or sa.act[0] not in _VEC_ACTS:
            continue
        key = "blk:" + t
        sa.bo, sb.bi = (sb, key), (key, kind)
        count += 1
    # depthwise -> its only reader, a 1x1 conv (16 or 8 lanes, both sides the same): the
    # depthwise conv writes blocked where it runs dw_cv (it records that per call:
    # _common.set_blk_out), the 1x1 conv reads it (pw_f32.run_bin) and stores NCHW itself,
    # residual and activation included
    for i, nd in enumerate(nodes if dw_cv.BLK_OUT_ON else ()):
        sb = states[i]
        if nd.get("op") != "Conv" or not isinstance(sb, ConvState) \
                or sb.simd_dw not in pw_f32.BIN_LANES \
                or sb.wcv is None or sb.dq is not None or sb.qo is not None \
                or sb.O != sb.params[-1] or len(nd.get("outputs", [])) != 1 \
                or (len(nd.get("inputs", [])) > 3 and nd["inputs"][3]) \
                or sb.act[0] not in _VEC_ACTS:
            continue
        t = nd["outputs"][0]
        if t in outs or readers.get(t) != 1:
            continue
        j = data_of.get(t)
        sc = states[j] if j is not None else None
        if j is None or nodes[j].get("op") != "Conv" or not isinstance(sc, ConvState) \
                or not pw_f32.bin_ok(sc) or sc.simd[0] != sb.simd_dw or sc.q is not None \
                or sc.bo is not None:
            continue    # (sc.bo: it writes blocked for a depthwise reader itself: not both)
        key = f"blko:{t}:{id(sb)}"
        sb.bo2, sc.bi2 = key, key
        count += 1
    _share_blocked_buffers(states)
    return count + link_padded(nodes, states) + link_pool(nodes, states, outputs)


def link_pool(nodes, states, outputs) -> int:
    """Pairs (stem, MaxPool): a float32 conv that stem_f32 may run at stride 2 (group 1, at
    most stem_f32.MAX_C input channels, a SIMD tier, no residual input, a vector
    activation, one output, no other hand-off), or such an int8 conv on the VNNI tiles'
    word layout (``stem_f32.q_words``), whose output only a MaxPool reads, the next
    node, 3 x 3, stride 2, pads 1, floor, one output, and no graph output (ResNets' stem,
    whose weights, decoded per call for packed files, and input copy nothing else
    overwrites between the two steps then). Where
    stem_f32 runs the conv (not in observing runs: ``_common.nchw_only``) the conv step
    makes its input copy and leaves its output unwritten, and the MaxPool step, the next
    one, runs the conv-and-pool kernel into the MaxPool's output (``stem_f32.pool_call``,
    recorded for it in ``_common.set_blk_out``; pool._Pool.exec); per-node profiles count
    the conv's time there. Measured in docs/PERFORMANCE.md, "The stem and its MaxPool".
    In place on the states; returns the pairs."""
    readers: dict = {}
    for nd in nodes:
        for n in nd.get("inputs", []):
            if n:
                readers[n] = readers.get(n, 0) + 1
    reader_of = {nd["inputs"][0]: j for j, nd in enumerate(nodes) if nd.get("inputs")}
    outs = set(outputs)
    count = 0
    for i, nd in enumerate(nodes):
        sa = states[i]
        if nd.get("op") != "Conv" or not isinstance(sa, ConvState) \
                or (sa.simd is None if sa.q is None else not stem_f32.q_words(sa.q)) \
                or sa.simd_dw is not None or sa.qo is not None \
                or sa.bo is not None or sa.po is not None or sa.pi is not None \
                or len(nd.get("outputs", [])) != 1 \
                or (len(nd.get("inputs", [])) > 3 and nd["inputs"][3]) \
                or sa.params[0] != 2 or sa.params[1] != 2 or sa.params[8] != 1 \
                or sa.K > stem_f32.MAX_C * sa.KH * sa.KW or sa.act[0] not in _VEC_ACTS:
            continue
        t = nd["outputs"][0]
        j = reader_of.get(t)
        if t in outs or readers.get(t) != 1 or j != i + 1 or nodes[j].get("op") != "MaxPool" \
                or len(nodes[j].get("outputs", [])) != 1:
            continue
        sp = states[j]
        if not isinstance(sp, dict) or sp.get("p") != (3, 3, 2, 2, 1, 1, 1, 1, 1, 1) \
                or int(attrs(nodes[j]).get("ceil_mode", 0)) != 0:
            continue
        sa.pool = sp["pi"] = "pool:" + t
        count += 1
    return count


def link_padded(nodes, states) -> int:
    """Pairs (producer, padded reader) for the padded hand-off (``PAD_SLACK`` above): a
    float32 dense conv (group 1, a SIMD tier, one output, no blocked output) whose output a
    padded float32 dense conv (group 1, no blocked input) reads as its data input; one
    reader per output (others copy as before; every reader of y still reads y). Where the
    producer's kernel path has no padded store (pw_f32, the blocked ones, the fallbacks)
    the reader copies (``padded_input``). In place on the states; returns the pairs."""
    if not PAD_ON:
        return 0
    made = {}
    for i, nd in enumerate(nodes):
        for n in nd.get("outputs", []):
            made[n] = i

    def dense_f32(nd, st):
        return (nd.get("op") == "Conv" and isinstance(st, ConvState) and st.simd is not None
                and st.simd_dw is None and st.q is None and st.params[8] == 1)
    count = 0
    for j, nd in enumerate(nodes):
        sc = states[j]
        if not dense_f32(nd, sc) or not any(sc.params[2:6]) or sc.bi2 is not None \
                or not nd.get("inputs"):
            continue
        t = nd["inputs"][0]
        i = made.get(t)
        if i is None or i == j:
            continue
        sa = states[i]
        if not dense_f32(nodes[i], sa) or sa.qo is not None or sa.bo is not None \
                or sa.po is not None or len(nodes[i].get("outputs", [])) != 1:
            continue
        key = f"pad:{t}"
        sa.po, sc.pi = (key, tuple(sc.params[2:6])), key
        count += 1
    return count


def _share_blocked_buffers(states):
    """The pairs' buffers (per-thread scratch, ``_common.tls_buffer``) by slot: a pair holds
    its slot from its producer's step to its reader's, and pairs whose steps do not overlap
    share one (interval colouring over the node order), so a MobileNet's dozens of hand-offs
    go through two or three buffers instead of one each (MobileNetV2: 19.5 -> 6.4 MB of
    scratch, peak RSS 227 -> 214 MB; its speed unchanged within this box's noise, 0.966 to
    1.018 in six alternating A/B runs). The 1x1 reader's flag
    (``_common.set_blk_out``) is keyed by the slot too: its depthwise producer sets it in
    the same run, and no other pair uses the slot in between."""
    at = {id(st): i for i, st in enumerate(states)}
    spans = []        # (first step, last step, rename)
    for i, sa in enumerate(states):
        if not isinstance(sa, ConvState):
            continue
        if sa.bo is not None:
            sb = sa.bo[0]

            def blk(key, sa=sa, sb=sb):
                sa.bo, sb.bi = (sb, key), (key, sb.bi[1])
            spans.append((i, at[id(sb)], blk))
        if sa.bo2 is not None:
            readers = [st for st in states if isinstance(st, ConvState) and st.bi2 == sa.bo2]

            def blko(key, sa=sa, readers=readers):
                sa.bo2 = key
                for st in readers:
                    st.bi2 = key
            spans.append((i, max((at[id(st)] for st in readers), default=i), blko))
    ends: list = []   # per slot: the last step of its latest pair
    for a, b, rename in sorted(spans, key=lambda s: s[:2]):
        k = next((k for k, e in enumerate(ends) if e < a), len(ends))
        if k == len(ends):
            ends.append(b)
        ends[k] = b
        rename(f"blk:{k}")


@dataclass(eq=False)
class ConvState:
    """What ``Conv.prepare`` keeps for one node. Fixed after prepare except the two lazy
    caches (``tiled``, ``toff_w``)."""
    consts: list            # float32 constants by input position (None: the weight, inputs)
    w: Weights | None       # the weight under the policy (None on the int8 path)
    O: int
    KH: int
    KW: int
    K: int                  # C/group * kh * kw
    params: tuple           # (sh, sw, pt, pl, pb, pr, dh, dw, group)
    act: tuple              # fused activation (code, alpha, beta)
    b: np.ndarray           # bias (O,) float32
    q: dict | None = None   # int8-activation path (qconv.prepare), else None
    simd: tuple | None = None        # (lanes, k) of the dense SIMD tile (group 1)
    tier: str | None = None          # the CPU tier at prepare (choose_p's P_SKIP)
    simd_dw: int | None = None       # lanes of the depthwise SIMD kernel
    wsimd: np.ndarray | None = None  # expanded policy: weights in the SIMD layout
    bp: np.ndarray | None = None     # bias padded to whole channel blocks
    wdw: np.ndarray | None = None    # depthwise: float32 filters (O*kh*kw)
    wcv: np.ndarray | None = None    # depthwise, multiplier 1: channel-vector filters (dw_cv)
    bcv: np.ndarray | None = None    # and its bias, padded to whole channel vectors
    dq: tuple | None = None          # int8 depthwise: (input scale, zero point, the buffer
                                     # key its producer writes or None)
    dqd: np.ndarray | None = None    # its dw_cv dot kernel's weights (dw_cv.dot_weights)
    dqk: tuple | None = None         # its dw_cv kernel's (levels (ceil(O/L), T, L), alpha * s,
                                     # zp * sum(levels) * alpha * s, bias - that, padded)
    qo: tuple | None = None          # (scale, zero point, buffer key, the consumer's pads):
                                     # also writes its int8 consumer's padded input
                                     # (quant.mark_quantized_producers)
    bo: tuple | None = None          # (depthwise reader's state, buffer key): may write its
                                     # output blocked for it (link_blocked)
    bi: tuple | None = None          # depthwise: (the key its producer's blocked output is
                                     # in, the producer's pw_f32.blk_kind)
    bo2: str | None = None           # depthwise: the key its 1x1 reader's blocked input is in
    bi2: str | None = None           # 1x1: the key of its depthwise producer's blocked output
    po: tuple | None = None          # (key, its padded reader's pads): may store into that
                                     # reader's padded input as well (link_padded)
    pi: str | None = None            # the key of its producer's padded copy (link_padded)
    po_pg: dict = field(default_factory=dict)   # padded size -> the kernels' pg vector
    tiled: np.ndarray | None = None  # _conv_tiled layout (built on the first fallback)
    toff_w: dict = field(default_factory=dict)   # padded width (stem_f32: ("split", width))
                                                 # -> tap offsets (int64)
    wino: np.ndarray | None = None   # Winograd filters, flat (16, C, O) (on first use)
    pool: str | None = None          # the key its fused MaxPool reader's call is recorded
                                     # under (link_pool, _common.set_blk_out)

    def __getitem__(self, name):     # read access by name (tests written for the old dict)
        return getattr(self, name)


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
    sh, sw, pt, pl, pb, pr, dh, dw, g = state.params
    Wp = W + pl + pr
    toff = state.toff_w.get(Wp)
    if toff is None:
        toff = np.array([ky * dh * Wp + kx * dw for ky in range(state.KH)
                         for kx in range(state.KW)], np.int64)
        state.toff_w[Wp] = toff
    return toff


def conv_work(state, y_size) -> int:
    """A conv's work against CONV_PAR_MIN: its MACs, depthwise weighted ×8 for its lower
    arithmetic intensity (``Conv``'s thread rule, and ``cpu.serial_step``'s)."""
    return y_size * state.K * (8 if state.simd_dw else 1)


def _on_one_thread(f, *args):
    """f(*args) in a one-thread OpenMP region of the calling thread (no worker wake-up)."""
    get_nt, set_nt = thread_calls()
    nt = get_nt()
    if nt == 1:
        return f(*args)
    set_nt(1)
    try:
        return f(*args)
    finally:
        set_nt(nt)


class Conv(OpImpl):
    def prepare(self, node, consts, policy):
        names = node_inputs(node)
        aq = node.get("_aq") if isinstance(node, dict) else None
        O, Cg, KH, KW = (int(s) for s in consts[names[1]].shape)
        params = _conv_params(node)
        g = params[-1]
        dq = None
        if aq is not None and g > 1:
            # int8 depthwise: float32 kernels on uint8 input, with the levels the int8 rules
            # give the weights (quant.conv_levels: ternary / quinary as stored)
            lev, alpha = quant.conv_levels(consts[names[1]], O, Cg * KH * KW)
            w = Weights((lev.astype(np.float32) * alpha[:, None]).reshape(O, Cg, KH, KW),
                        "expanded")
            dq_lev = (lev, alpha)
            dq = (np.float32(aq[0]), np.float32(aq[1]),
                  "qin:" + node["inputs"][0] if node.get("_qi") else None)
            aq = None
        else:
            # int8 activations (edgenet/quant.py): only the int8 layout, no float weights
            w = None if aq else Weights(consts[names[1]], policy)
        st = ConvState(_consts_but_weight(node, consts), w, O, KH, KW, Cg * KH * KW,
                       params, act_of(node), _bias(node, consts, O))
        st.dq = dq
        if dq is not None and O == g and simd.lanes(simd.simd_mode()) in dw_cv.KERNELS:
            L = simd.lanes(simd.simd_mode())
            lev, alpha = dq_lev
            sc64, corr = qconv.epilogue(lev.reshape(O, -1), alpha, dq[0], dq[1])
            st.dqk = (expand_simd(lev.astype(np.float32).reshape(-1), O, 1, KH, KW, L, 1),
                      dw_cv.bias(sc64.astype(np.float32), O, L), corr,
                      dw_cv.bias(st.b - corr, O, L))
            if L == 16:
                st.dqd = dw_cv.dot_weights(lev, O, KH, KW)
        qo = node.get("_qo") if isinstance(node, dict) else None
        if qo is not None:
            st.qo = (np.float32(qo[0]), np.float32(qo[1]), "qin:" + node["outputs"][0],
                     tuple(int(v) for v in qo[2]))
        if aq is not None:
            st.q = qconv.prepare(consts[names[1]], O, Cg, KH, KW, st.b, aq, aq[2],
                                 stride1=params[0] == params[1] == 1 and g == 1,
                                 stride2=(params[0] == params[1] == 2 and g == 1 and KH == KW
                                          and KH in (1, 3) and params[6] == params[7] == 1))
            if node.get("_qi"):
                st.q["qi"] = "qin:" + node["inputs"][0]
                if node.get("_qi_pads"):   # another reader's padded buffer (a 1x1 conv)
                    st.q["qi_pads"] = tuple(int(v) for v in node["_qi_pads"])
            if st.qo is not None and node.get("_qo_keep"):
                st.q["qo_keep"] = True    # y stays needed: the tiles write both
                if node.get("_qo_noy"):   # ... unless only for the fused residual
                    st.q["qo_noy"] = True
            sh, sw = st.params[:2]
            if sh == sw and sh in gen_simd_conv.STRIDES:
                q = st.q
                tq = "vnni2" if q["t2"] else "vnni"
                gen_simd_conv.EXPECTED.add(("qconv", (q["k"], sh, tq)) if q["vnni"] else
                                           ("qtier", (q["fam"], q["L"], q["k"], sh)))
            return st
        L = simd.lanes(simd.simd_mode())
        # packed weights run the SIMD kernels too: decoded per call (decode_simd)
        st.simd_dw = L if (L and Cg == 1 and g > 1) else None
        sh, sw = st.params[:2]
        tile_s = sh if sh == sw and sh in gen_simd_conv.STRIDES else None
        if st.simd_dw:
            # depthwise filters are tiny (O*kh*kw): one private float32 copy (decoded when
            # packed; never a read-only file view: one kernel signature for every model)
            st.wdw = np.empty(w.O * w.K, np.float32)
            if w.packed:
                decode_rows(w.enc, w.codes, w.scale, w.O, w.K, st.wdw)
            else:
                st.wdw[:] = w.f.reshape(-1)
            if tile_s:
                gen_simd_conv.EXPECTED.add(("dw", (L, tile_s)))
            if O == g and L in dw_cv.KERNELS:
                st.wcv = expand_simd(st.wdw, O, 1, KH, KW, L, 1)   # (ceil(O/L), T, L)
                st.bcv = dw_cv.bias(st.b, O, L)
        if g == 1 and L:
            k = choose_k(O, L)
            B = L * k
            st.simd = (L, k)
            st.tier = simd.simd_mode()
            if tile_s:
                gen_simd_conv.EXPECTED.add(("conv", (L, k, tile_s)))
            if not w.packed:
                st.wsimd = expand_simd(w.f, O, Cg, KH, KW, L, k)
                w.f = None          # rebuilt by dense_f() only if a fallback needs it
            elif w.enc in (ENC_T2, ENC_Q3):
                w.simd_bits = ternary_bits(w, B)
            else:   # i8: levels re-ordered (1 byte/weight); the row codes stay for fallbacks
                w.simd_i8 = i8_simd(w, B)
            bp = np.zeros(-(-O // B) * B, np.float32)
            bp[:O] = st.b
            st.bp = bp
        elif not w.packed and g == 1:
            st.tiled = expand_tiled(w.f, O, Cg, KH, KW)
        return st

    def run(self, node, state, inputs, outputs):
        fused = self._run_threads(node, state, inputs, outputs)
        if state.qo is not None and not fused:   # the int8 consumer's input, from y
            qconv.quantize_to(outputs[0], state.qo)

    def bind(self, node, state, inputs, outputs):
        """The step's calls, recorded once (``_common.emit``); None where a path has no
        recording (the fallback kernels, a bias computed per call)."""
        calls = []
        try:
            fused = self._run(node, state, inputs, outputs, calls)
        except NoBind:
            return None
        if fused is NoBind or not calls:
            return None
        if state.qo is not None and not fused:
            qconv.quantize_to(outputs[0], state.qo, calls)
        f = bind_calls(calls)
        if conv_work(state, outputs[0].size) >= _common.CONV_PAR_MIN:
            return f
        return functools.partial(_on_one_thread, f)

    def _run_threads(self, node, state, inputs, outputs):
        """Small convs run on the calling thread alone (one-thread OpenMP region: no worker
        wake-up), bigger ones on all of its Numba threads (``conv_work`` against
        ``CONV_PAR_MIN``)."""
        if conv_work(state, outputs[0].size) >= _common.CONV_PAR_MIN:
            return self._run(node, state, inputs, outputs)
        return _on_one_thread(self._run, node, state, inputs, outputs)

    def _run(self, node, state, inputs, outputs, calls=None):
        """Runs the conv (``calls``: records its calls instead, returning NoBind where this
        path cannot). Returns True where the kernel wrote the int8 consumer's input."""
        x = inputs[0]
        y = outputs[0]
        names = node_inputs(node)
        b = state.b
        if len(names) > 2 and names[2] and inputs[2] is not None:
            b = inputs[2]
        r = inputs[3] if len(inputs) > 3 and inputs[3] is not None else None
        if r is None and len(names) > 3 and names[3]:
            r = state.consts[3]
        has_r = r is not None
        if r is None:
            r = _DUMMY4
        sh, sw, pt, pl, pb, pr, dh, dw, g = state.params
        code, alpha, beta = state.act
        KH, KW = state.KH, state.KW
        w = state.w
        xq = None
        if state.dq is not None:
            x, xq = _dw_input(state, x, calls)
        if state.pool is not None:   # its MaxPool fused (link_pool) where the kernel runs
            _common.set_blk_out(state.pool, y.shape, False)
            if state.q is not None and b is state.b and stem_f32.POOL_ON \
                    and not _common.nchw_only() and stem_f32.use_q(state, x.shape, y.shape):
                _common.set_blk_out(state.pool, y.shape,
                                    stem_f32.pool_call_q(x, y.shape, state, state.q["bb"], calls))
                return
        # a run that observes y stores it: the int8 reader's words then come from the
        # quantize pass over y (``run``), not from the kernel's epilogue alone
        qo = None if _common.nchw_only() else state.qo
        if state.q is not None and b is state.b and \
                stem_f32.use_qs(state, x.shape, y.shape, has_r, code):
            return stem_f32.run_q(x, y, state, qo, calls)
        if state.q is not None:
            return qconv.run(x, y, state.q, state.params, _tap_offsets(state, x.shape[3]), b,
                             b is state.b, r, has_r, code, alpha, beta, qo, calls)
        if state.simd is not None or state.simd_dw is not None:
            toff = _tap_offsets(state, x.shape[3])
            if state.simd_dw is not None:
                done = simd_dwconv(x, y, state, toff, b, r, has_r, code, alpha, beta, calls,
                                   xq)
                if done:
                    return done == 2
            elif simd_conv(x, y, state, toff, b, r, has_r, code, alpha, beta, calls):
                return
            if g == 1 and state.tiled is None and not w.packed:   # rare geometry
                state.tiled = expand_tiled(dense_f(state), state.O, w.shape[1], KH, KW)
        if calls is not None:
            return NoBind       # the fallback kernels: no recording (rare geometries)
        if g == 1:
            nt = numba.config.NUMBA_NUM_THREADS
            if w.packed:
                wt, wbuf = _RO_W5, scratch(w.K * (OT + 1))
            else:
                wt, wbuf = _ro(state.tiled), _DUMMY4[0, 0]
            _conv_tiled(x, wt, w.packed, w.enc, _ro(w.codes), _ro(w.scale), wbuf,
                        np.full(nt, -1, np.int64),
                        b, r, has_r, y, KH, KW, sh, sw, pt, pl, dh, dw, code, alpha, beta,
                        scratch(OT * y.shape[3]))
            return
        if w.packed:
            wf = _RO_W2
            buf = scratch(w.K)
        else:
            wf = _ro(w.f)
            buf = _DUMMY4[0, 0]
        _conv_plane(x, wf, w.packed, w.enc, _ro(w.codes), _ro(w.scale), buf, b, r, has_r, y, g,
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
        st = ConvState(_consts_but_weight(node, consts), w, O, KH, KW, Cg * KH * KW,
                       _conv_params(node), act_of(node), _bias(node, consts, O))
        return st

    def run(self, node, state, inputs, outputs):
        x = inputs[0]
        y = outputs[0]
        names = node_inputs(node)
        b = state.b
        if len(names) > 2 and names[2] and inputs[2] is not None:
            b = inputs[2]
        sh, sw, pt, pl, pb, pr, dh, dw, g = state.params
        code, alpha, beta = state.act
        w = state.w
        if w.packed:
            wf, buf = _RO_W2, scratch(w.K)
        else:
            wf, buf = _ro(w.f), _DUMMY4[0, 0]
        _convt_plane(x, wf, w.packed, w.enc, _ro(w.codes), _ro(w.scale), buf, b, y, g,
                     state.KH, state.KW, sh, sw, pt, pl, dh, dw, code, alpha, beta)
