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

from ._common import (FM, OpImpl, Weights, act, act_of, attrs, decode_row, node_inputs,
                      operand, prepare_consts, scratch)
from .._jit import njit, pjit
from . import simd
from ._common import tls_buffer


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
    from ._simd_conv import KERNELS
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
    KERNELS[(L, k, P, sh)](xf, C, Hp, Wp, st["wsimd"], bp, toff, y.reshape(-1),
                           N, O, OH, OW, r.reshape(-1), has_r, code, alpha, beta, tb)
    return True


def simd_dwconv(x, y, st, toff, b, r, has_r, code, alpha, beta):
    """Depthwise (C/group == 1) SIMD kernel; False when the geometry has none."""
    from ._simd_conv import DW_KERNELS, DW_V
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
    nt = numba.config.NUMBA_NUM_THREADS
    pbuf = tls_buffer("conv.dwplane", nt * psize).reshape(nt, psize)
    DW_KERNELS[(L, sh)](xp, C, Hp, Wp, st["w"].f.reshape(-1), b.reshape(-1), toff,
                        y.reshape(-1), N, O, OH, OW, r.reshape(-1), has_r, code, alpha, beta,
                        pbuf)
    return True


# ----------------------------------------------------------------------------- OpImpls
_DUMMY4 = np.zeros((1, 1, 1, 1), np.float32)
_DUMMY5 = np.zeros((1, 1, 1, 1, OT), np.float32)


def _conv_params(node):
    a = attrs(node)
    sh, sw = (int(v) for v in a.get("strides", [1, 1]))
    pt, pl, pb, pr = (int(v) for v in a.get("pads", [0, 0, 0, 0]))
    dh, dw = (int(v) for v in a.get("dilations", [1, 1]))
    g = int(a.get("group", 1))
    return sh, sw, pt, pl, pb, pr, dh, dw, g


class Conv(OpImpl):
    def prepare(self, node, consts, policy):
        names = node_inputs(node)
        w = Weights(consts[names[1]], policy)
        O, Cg, KH, KW = (int(s) for s in w.shape)
        st = {"consts": prepare_consts(node, consts), "w": w, "O": O, "KH": KH, "KW": KW,
              "params": _conv_params(node), "act": act_of(node)}
        b = st["consts"][2] if len(names) > 2 else None
        st["b"] = b.reshape(-1) if b is not None else np.zeros(O, np.float32)
        g = st["params"][-1]
        st["tiled"] = None
        st["simd"] = None
        st["toff_w"] = {}   # padded input width -> tap offsets (int64, kh*kw)
        L = simd.lanes(simd.simd_mode())
        st["simd_dw"] = L if (L and not w.packed and Cg == 1 and g > 1) else None
        if not w.packed and g == 1 and L:
            k = choose_k(O, L)
            B = L * k
            st["simd"] = (L, k)
            st["wsimd"] = expand_simd(w.f, O, Cg, KH, KW, L, k)
            bp = np.zeros(-(-O // B) * B, np.float32)
            bp[:O] = st["b"]
            st["bp"] = bp
        elif not w.packed and g == 1:
            st["tiled"] = expand_tiled(w.f, O, Cg, KH, KW)
        return st

    def run(self, node, state, inputs, outputs):
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
        if state["simd"] is not None or state["simd_dw"] is not None:
            Wp = x.shape[3] + pl + pr
            toff = state["toff_w"].get(Wp)
            if toff is None:
                toff = np.array([ky * dh * Wp + kx * dw for ky in range(KH) for kx in range(KW)],
                                np.int64)
                state["toff_w"][Wp] = toff
            if state["simd_dw"] is not None:
                if simd_dwconv(x, y, state, toff, b, r, has_r, code, alpha, beta):
                    return
            elif simd_conv(x, y, state, toff, b, r, has_r, code, alpha, beta):
                return
            if g == 1 and state["tiled"] is None:   # rare geometry (stride > 2, narrow rows)
                state["tiled"] = expand_tiled(w.f, state["O"], w.shape[1], KH, KW)
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
        st = {"consts": prepare_consts(node, consts), "w": w, "O": O, "KH": KH, "KW": KW,
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
