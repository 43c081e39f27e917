"""int8 activations for Conv (edgenet/quant.py has the rules): the float32 input is quantized
per tensor to uint8 into a zero-point-padded buffer with 4 input channels interleaved per
pixel (``(N, ceil(C/4), Hp, Wp)`` int32 words), and a uint8 x int8 register-tiled kernel
accumulates exactly in int32; the epilogue scales to float32 and applies bias, zero-point
correction, residual and activation. Outputs stay float32, so every other node is unchanged.

The kernel family follows the CPU tier (edgenet/_tiers.py) and the weights' largest level:

==========  ==========================  ================================================
family      tiers, weights              dot product (edgenet/cpu/simd.py, "int8")
==========  ==========================  ================================================
``v``       avx512vnni                  ``vpdpbusd`` zmm (ternary levels of >= T2_MIN
                                        bytes: kept 2 bits each, ``t2_pack``)
``pm``      avx512 (16 lanes), avx2     ``vpmaddubsw`` + int16 accumulation, widened by
            (8 lanes); max|w| <= 64     ``vpmaddwd`` every ``smax`` steps
``g``       generic, off, or max|w| >   int16 multiply-add in generic IR (int16 weights),
            64 on avx512/avx2            widened every ``smax`` steps (1 for int8 levels)
==========  ==========================  ================================================

(kernels generated in the process: ``gen_simd_conv.qconv_kernel`` / ``qtier_kernel``.) Ternary / quinary weights (|w| <= 2) run
``pm`` with 64 / 32 steps per widening; float weights quantized to int8 levels saturate
``vpmaddubsw`` and run ``g`` (exact, slower: ``quant`` auto mode keeps such convs f32 where
that is faster)."""
from __future__ import annotations


import numba
import numpy as np
from numba import prange

from .. import quant
from ..activation import ActCode
from ..errors import InputError
from .._jit import njit, pjit
from ._common import PAR_MIN, NoBind, emit, line_aligned, tls_buffer, tls_rows, use_parallel
from . import amx, simd
from .gen_simd_conv import (Q_T2_TILES, Q_TIER_TILES, Q_TILES, act_call, qconv_kernel,
                             qtier_kernel, tile_buf_len)
from .qepi import pw_vecm, vact16
from .simd import vquant4_16

# (family, lanes) -> (k output-channel vectors, P pixels) tiles: gen_simd_conv's menu
# (Q_TILES for the VNNI family, Q_TIER_TILES for the others)
_TILES = {("v", 16): tuple((k, P) for k, Ps in Q_TILES.items() for P in Ps), **Q_TIER_TILES,
          ("v2", 16): tuple((k, P) for k, Ps in Q_T2_TILES.items() for P in Ps)}
_K_PREF = (2, 3, 4, 1)
I16_MAX = 32767
# 2-bit ternary weights in the VNNI tiles (tier "vnni2", simd.vld2b16): for the layers whose
# int8 levels take at least T2_MIN bytes (they stream from memory inside a model's sequence:
# ResNet-18's layer4 convs, 2.4 MB each, lost 41-45 us each to it, twelfth session) and
# have more than one tap (the 1x1 pixel-vector kernel reads int8 words). Each weight vector
# then costs 3 more vector ops (a 128-bit broadcast load instead of a 512-bit load), and
# the tiles have at most 12 pixels. Measured on Zen 5 (1 MB L2 a core), ResNet-18 int8, in
# one process: layer4 only (>= 1.2 MB) 0.97-0.98 of int8 levels; with layer3 too (0.3-0.6
# MB) 0.995-1.0; every 3x3 conv 1.05-1.07 (cache-resident weights: the decode and P <= 12
# cost more than they save).
T2_ON = True
T2_MIN = 1 << 20


def family(tier: str, wmax: int):
    """(family, lanes) of the int8 kernel for this tier and largest |weight level|."""
    if tier == "avx512vnni":
        return "v", 16
    if tier in ("avx512", "avx2") and wmax <= 64:
        return "pm", 16 if tier == "avx512" else 8
    return "g", 8


def pmadd_steps(fam: str, wmax: int) -> int:
    """Steps (channel-group taps) an int16 accumulator takes before it must be widened:
    ``pm`` adds a pair sum (<= 2*255*max|w|) per step, ``g`` one product (<= 255*max|w|)."""
    per = (510 if fam == "pm" else 255) * max(1, wmax)
    return max(1, I16_MAX // per)


def choose_kp(O: int, OW: int, fam: str = "v", L: int = 16):
    """(k, P): least zero-padding of O among the k whose tiles fit the row, then the P with
    the least recomputed pixels (larger P on ties). Every family has P = 1 (any row)."""
    qp = {}
    for k, P in _TILES[(fam, L)]:
        qp.setdefault(k, []).append(P)
    best = None
    for k in _K_PREF:
        Ps = [P for P in qp.get(k, ()) if P <= OW]
        if not Ps:
            continue
        waste = -(-O // (L * k)) * L * k
        P = min(Ps, key=lambda P: (-(-OW // P) * P, -P))
        if best is None or waste < best[0]:
            best = (waste, k, P)
    return best[1], best[2]


def epilogue(lev, alpha, s, zp):
    """The int8 epilogue's per-channel factors: (alpha * s as float64, the zero-point
    correction zp * sum(levels) * alpha * s as float32) for levels (O, K)."""
    sc64 = alpha.astype(np.float64) * float(s)
    return sc64, (float(zp) * lev.astype(np.int64).sum(axis=1) * sc64).astype(np.float32)


def prepare(p, O, C, KH, KW, bias, aq, OW, tier=None, stride1=False, stride2=False):
    """Weights in the kernel layout plus the epilogue vectors. p: the weight constant,
    bias: float32 (O,), aq: (input scale, zero point), OW: output width (fixed: only the
    batch axis is dynamic), tier: the CPU tier (default: simd.tier()), stride1: a stride-1,
    one-group conv (the AMX kernel's, where the host has it: ``q["amx"]``); stride2: a 3x3
    or 1x1 stride-2 one-group conv without dilation (AMX on its input split by pixel phase:
    ``amx.run_s2``, AMX_S2_C / AMX_S2_MACS)."""
    s, zp = np.float32(aq[0]), int(aq[1])
    T = KH * KW
    K = C * T
    lev, alpha = quant.conv_levels(p, O, K)
    wmax = int(np.abs(lev.astype(np.int16)).max()) if lev.size else 0
    fam, L = family(tier or simd.tier(), wmax)
    t2 = (T2_ON and fam == "v" and wmax <= 1 and T > 1 and O * C * T >= T2_MIN
          and OW >= min(P for Ps in Q_T2_TILES.values() for P in Ps))
    k, P = choose_kp(O, OW, "v2" if t2 else fam, L)
    B = L * k
    NB = -(-O // B)
    C4 = -(-C // 4)
    w5 = np.zeros((NB * B, C4 * 4, T), np.int8)
    w5[:O, :C] = lev.reshape(O, C, T)
    wt = np.ascontiguousarray(w5.reshape(NB, B, C4, 4, T).transpose(0, 2, 4, 1, 3))
    wt = (wt.astype(np.int16).reshape(-1) if fam == "g" else t2_pack(wt) if t2
          else wt.view(np.int32).reshape(-1))
    wt = line_aligned(wt)    # 64-byte weight vectors on their cache lines (split loads)
    sc64, corr = epilogue(lev, alpha, s, zp)
    sc = np.zeros(NB * B, np.float32)
    sc[:O] = sc64
    bb = np.zeros(NB * B, np.float32)
    bb[:O] = bias - corr
    q = {"wt": wt, "sc": sc, "bb": bb, "corr": corr, "s": s, "zp": np.float32(zp),
         "k": k, "P": P, "L": L, "C4": C4, "fam": fam, "smax": pmadd_steps(fam, wmax),
         "vnni": fam == "v", "t2": t2, "kern": f"{fam}{L}{' t2' if t2 else ''} k{k} P{P}"}
    if (stride1 and fam == "v" and O >= 16 and (T > 1 or amx_1x1(C, O, OW)) and amx.kb_of(C4)
            and amx.available()):
        q["amx"] = amx.prepare(lev, O, C, T)
    elif (stride2 and AMX_S2 and fam == "v" and O >= 16 and (T == 9 or AMX_S2_1X1)
          and C >= AMX_S2_C and amx.kb_of(C4) and amx.available()):
        q["amx"] = amx.prepare(lev, O, C, T)
        q["amx_s2"] = True
    return q


def t2_pack(wt):
    """int8 levels in {-1, 0, 1}, the VNNI tiles' layout (..., 16 words of 4 levels: 64
    bytes a weight vector) -> int32, 4 words a vector: byte i of a vector's 16 holds the codes
    (0, +1 -> 1, -1 -> 2) of its bytes i, 16 + i, 32 + i, 48 + i in bits 0-1, 2-3, 4-5, 6-7
    (simd.vld2b16 decodes them)."""
    lev = np.ascontiguousarray(wt).view(np.int8).reshape(-1, 4, 16)
    code = np.where(lev < 0, 2, lev).astype(np.uint8)
    packed = np.zeros((lev.shape[0], 16), np.uint8)
    for j in range(4):
        packed |= code[:, j] << np.uint8(2 * j)
    return packed.view(np.int32).reshape(-1)


@njit(boundscheck=False, inline="always")
def zp_row(out, db, RB, pl, W, whole, zb):
    """One padded row of RB bytes at out[db:]: all zero point (a padding row), or only its
    left (pl pixels) and right (past pl + W) padding."""
    if whole:
        for i in range(RB):
            out[db + i] = zb
        return
    if pl == 1 and RB == (W + 2) * 4:     # pads of 1 (3x3 convs): one word each side,
        for i in range(4):                # constant trip counts (a loop of unknown
            out[db + i] = zb              # length per side cost ~7 ns a row)
        e = db + RB - 4
        for i in range(4):
            out[e + i] = zb
        return
    for i in range(pl * 4):
        out[db + i] = zb
    for i in range((pl + W) * 4, RB):
        out[db + i] = zb


@njit(boundscheck=False)
def _quant_rng(x, C, H, W, C4, Hp, Wp, pt, pl, s, zp, out, t0, t1):
    """Padded rows t0..t1 of (N, C4, Hp): x (flat NCHW float32) -> out (uint8 (N, C4, Hp,
    Wp, 4)), every byte of each row written (border rows and columns: the zero point)."""
    HW = H * W
    zb = np.uint8(zp)
    RB = Wp * 4
    # the row's (n, c4, yp) counted along, not divided out per row (four integer divisions
    # a row were a third of the pass: 16x32x32 padded 4.6 -> 3.2 us)
    yp = t0 % Hp
    u = t0 // Hp
    c4 = u % C4
    n = u // C4
    yp -= 1
    for t in range(t0, t1):
        yp += 1
        if yp == Hp:
            yp = 0
            c4 += 1
            if c4 == C4:
                c4 = 0
                n += 1
        db = t * RB
        y = yp - pt
        zp_row(out, db, RB, pl, W, y < 0 or y >= H, zb)
        if y < 0 or y >= H:
            continue
        c0 = c4 * 4
        sb = ((n * C + c0) * H + y) * W
        db += pl * 4
        nc = min(4, C - c0)
        x0 = 0
        while x0 + 16 <= W:
            vquant4_16(x, sb + x0, HW, nc, 16, s, zp, out, db + 4 * x0)
            x0 += 16
        if x0 < W:      # the row's tail: a masked vector (reads and writes W - x0 pixels)
            vquant4_16(x, sb + x0, HW, nc, W - x0, s, zp, out, db + 4 * x0)


@pjit(boundscheck=False)
def _quant_par(x, C, H, W, C4, Hp, Wp, pt, pl, s, zp, out, rows, chunk):
    for i in prange((rows + chunk - 1) // chunk):
        t1 = min(rows, (i + 1) * chunk)
        _quant_rng(x, C, H, W, C4, Hp, Wp, pt, pl, s, zp, out, i * chunk, t1)


def _quant_args(x, q, pt, pl, pb, pr, key="qconv.xq"):
    """(arguments shared by _quant_rng and _quant_par, rows, buffer, Hp, Wp)."""
    N, C, H, W = x.shape
    C4 = q["C4"]
    Hp, Wp = H + pt + pb, W + pl + pr
    buf = tls_buffer(key, N * C4 * Hp * Wp).view(np.uint8)
    rows = N * C4 * Hp
    return (x.reshape(-1), C, H, W, C4, Hp, Wp, pt, pl, q["s"], q["zp"], buf), rows, buf, Hp, Wp


def quantize_padded(x, q, pt, pl, pb, pr, key="qconv.xq", calls=None):
    """float32 (N, C, H, W) -> uint8 padded, channel-interleaved buffer (per Python thread);
    one compiled pass writes every byte (the border too: no NumPy fills per call).
    ``calls``: record the pass instead (``_common.emit``)."""
    args, rows, buf, Hp, Wp = _quant_args(x, q, pt, pl, pb, pr, key)
    # serial below 8 x PAR_MIN elements (512 K): with passive OpenMP workers a parallel
    # call's wake-up cost more than quantizing 64x56x56 (0.04 ms at 1 thread vs 0.12 ms as a
    # 2-thread call); with short-spin workers a lower bound was within +-3 % (ninth session)
    if x.size // 8 < PAR_MIN:   # (use_parallel's own first test: serial whatever the threads)
        emit(calls, _quant_rng, *args, 0, rows)
    else:
        emit(calls, _quant_auto, args, rows, x.size)
    return buf, Hp, Wp


def _quant_auto(args, rows, size):
    if use_parallel(size // 8):
        nt = numba.get_num_threads()
        _quant_par(*args, rows, max(1, -(-rows // (4 * nt))))
    else:
        _quant_rng(*args, 0, rows)


def qin_key(key, Hp, Wp, padded):
    """The buffer key of an int8 consumer's input that its producer writes: one buffer per
    padded size (Hp, Wp), so that a plan for another input size never writes over the
    zero-point border (a bound step writes it once: ``consumer_words``). Batch sizes share
    it: the first n images' planes lie where a smaller batch's do."""
    return f"{key}@{Hp}x{Wp}" if padded else key


def quantize_to(y, qo, calls=None):
    """A producer's float32 output y -> its int8 consumer's padded input buffer (``qo``:
    scale, zero point, buffer key, the consumer's pads: quant.mark_quantized_producers),
    where the producer's kernel did not write it itself."""
    s, zp, key, pads = qo
    key = qin_key(key, y.shape[2] + pads[0] + pads[2], y.shape[3] + pads[1] + pads[3],
                  any(pads))
    quantize_padded(y, {"C4": -(-y.shape[1] // 4), "s": s, "zp": zp}, *pads, key, calls)


def warm_quantize():
    """Compile (or load) the quantize pass at quantize_padded's argument types, serial and
    parallel (edgenet warmup: a model's small int8 convs call the serial one directly)."""
    q = {"C4": 1, "s": np.float32(1 / 255), "zp": np.float32(0)}
    args, rows, _, _, _ = _quant_args(np.zeros((1, 3, 4, 4), np.float32), q, 1, 1, 1, 1)
    _quant_rng(*args, 0, rows)
    _quant_par(*args, rows, max(1, rows // 2))
    _zp_border(np.zeros(64, np.uint8), 1, 2, 2, 4, 4, 1, 1, np.float32(0))   # (consumer_words)


class _Kern:
    """A layer's tile kernel, kept in its ``q`` (slots: runtime.memory() does not walk it)."""
    __slots__ = ("f",)

    def __init__(self, f):
        self.f = f


def _bind(q, sh):
    """The layer's tile kernel (its dispatcher: generated and compiled at the first call,
    never at prepare), looked up once."""
    if q["fam"] == "v":
        f = qconv_kernel(q["k"], q["P"], sh, "vnni2" if q.get("t2") else "vnni")
    else:
        f = qtier_kernel(q["fam"], q["L"], q["k"], q["P"], sh)
    q["_kern"] = _Kern(f)
    return q["_kern"]


_NT = numba.config.NUMBA_NUM_THREADS


_QW0 = np.zeros(1, np.int32)
_QP0 = np.zeros(6, np.int64)
# qp[0] == 3: a 16-lane tile without an int8 reader stores its float32 output through
# tile_store_k's vector transposes (ResNet-18's int8 stem 512 -> 489 us at one thread)
_QP3 = np.array([3, 0, 0, 0, 0, 0], np.int64)
QP3_ON = True
_QF0 = np.zeros(2, np.float32)


@njit(boundscheck=False)
def _zp_border(qb, planes, H, W, Hp, Wp, pt, pl, zp):
    """The padding of a consumer's (planes, Hp, Wp, 4) uint8 input: zero-point bytes (the
    interior is written by the producing tiles)."""
    zb = np.uint8(zp)
    RB = Wp * 4
    for t in range(planes * Hp):
        y = t % Hp - pt
        zp_row(qb, t * RB, RB, pl, W, y < 0 or y >= H, zb)


def consumer_words(q, qo, N, O, OH, OW, calls=None):
    """(qw, qp, qf) for a tile kernel that writes its int8 consumer's input (``qo``: scale,
    zero point, buffer key, the consumer's pads)."""
    s, zp, key, (cpt, cpl, cpb, cpr) = qo
    C4o = -(-O // 4)
    QHp, QWp = OH + cpt + cpb, OW + cpl + cpr
    padded = bool(cpt or cpl or cpb or cpr)
    qw = tls_buffer(qin_key(key, QHp, QWp, padded), N * C4o * QHp * QWp).view(np.int32)
    if padded:
        # every call on the run path (the buffer may be new); a bound step writes the border
        # once, now: it holds this buffer (``tls_generation``), whose border nothing else
        # writes (the producer's tiles write its interior; the consumer skips its pass)
        _zp_border(qw.view(np.uint8), N * C4o, OH, OW, QHp, QWp, cpt, cpl, zp)
    qp = q.get("_qp")
    if qp is None:   # qp[0]: 1 the quantized words only, 2 y as well (``qo_keep``), 4 the
        # words after the residual and activation, y not stored (``qo_noy``: tile_store_k)
        mode = (1 if not (q.get("qo_keep") and q["L"] == 16) else
                4 if q.get("qo_noy") else 2)
        qp = q["_qp"] = np.array([mode, C4o, QHp, QWp, cpt, cpl], np.int64)
        q["_qf"] = np.array([s, zp], np.float32)
    return qw, qp, q["_qf"]


def run(x, y, q, params, toff, b, b_is_const, r, has_r, code, alpha, beta, qo=None,
        calls=None):
    """Returns True when the kernel wrote the int8 consumer's input (``qo``) instead of y
    (no residual, an activation tile_store_q has; a pixel-vector 1x1 only for a consumer
    without padding), or as well as y (``qo_keep``: the tiles, any residual and
    activation). ``calls``:
    record the calls instead (``_common.emit``)."""
    sh, sw, pt, pl, pb, pr, dh, dw, g = params
    N = x.shape[0]
    O, OH, OW = y.shape[1], y.shape[2], y.shape[3]
    P = q["P"]
    if P > OW:   # P was chosen from the output width at load (fixed: only N is dynamic)
        raise InputError(f"int8 conv: output width {OW} is narrower than the tile ({P}) "
                         "chosen for the model's input size")
    pwk = (pw_kernel(O, OH * OW, x.shape[1])
           if (q["fam"] == "v" and not q["t2"] and toff.shape[0] == 1 and sh == 1
               and params[1] == 1 and not (pt or pl or pb or pr) and PW_ON
               and q.get("qi_pads") is None) else None)
    pw = pwk is not None
    pw8 = (q["fam"] == "pm" and q["L"] == 8 and toff.shape[0] == 1 and sh == 1
           and params[1] == 1 and not (pt or pl or pb or pr) and PW_ON
           and q.get("qi_pads") is None
           and -(-OH * OW // PW8_PIX) * PW8_PIX * 4 <= OH * OW * 5)
    qpad = q.get("qi_pads") if q.get("qi") is not None else None
    Wp = x.shape[3] + (qpad[1] + qpad[3] if qpad is not None else pl + pr)
    s2 = q.get("amx_s2", False)
    use_amx = (q.get("amx") is not None and amx.fits(OH, OW, (Wp + 1) // 2 if s2 else Wp)
               and not (s2 and N * OH * OW * O * q["C4"] * 4 * toff.shape[0] < AMX_S2_MACS))
    if use_amx:
        pw = pw8 = False
    kern = None if (pw or pw8 or use_amx) else (q.get("_kern") or _bind(q, sh)).f
    qi = q.get("qi")
    if qi is not None:   # the producer wrote this input already (padding included)
        qpad = q.get("qi_pads")
        if qpad is not None:   # a 1x1 conv reading another reader's padded buffer
            pt, pl, pb, pr = qpad
        Hp, Wp = x.shape[2] + pt + pb, x.shape[3] + pl + pr
        xq = tls_buffer(qin_key(qi, Hp, Wp, bool(pt or pl or pb or pr)),
                        N * q["C4"] * Hp * Wp).view(np.uint8)
        if qpad is not None:   # its one tap at the buffer's interior
            t = q.get("_toff_qi")
            if t is None or t[0] != Wp:
                t = q["_toff_qi"] = (Wp, toff + (pt * Wp + pl))
            toff = t[1]
    else:
        xq, Hp, Wp = quantize_padded(x, q, pt, pl, pb, pr, calls=calls)
    bb = q["bb"]
    if not b_is_const:
        if calls is not None:
            raise NoBind     # a bias computed per call
        bb = tls_buffer("qconv.bb", bb.size)
        bb[:] = 0
        bb[:O] = b.reshape(-1) - q["corr"]
    if use_amx:   # the consumer's words from the epilogue's vectors (vector activations)
        fused = qo is not None and (code <= ActCode.RELU or code == ActCode.CLIP or
                                    code == ActCode.HARD_SWISH)
        qw, qp, qf = (consumer_words(q, qo, N, O, OH, OW, calls) if fused
                      else (_QW0, _QP0, _QF0))
        if s2:
            amx.run_s2(xq, q["C4"], Hp, Wp, q, bb, y, r, has_r, code, alpha, beta, qw, qp, qf,
                       calls, 3 if toff.shape[0] == 9 else 1, *(qpad[:2] if qpad else (0, 0)))
        else:
            amx.run(xq, q["C4"], Hp, Wp, toff, q, bb, y, r, has_r, code, alpha, beta, qw, qp,
                    qf, calls)
        return fused
    # qo_keep: the 16-lane tiles quantize their rows (tile_store_k); on 8 lanes (avx2,
    # generic) that cost as much as it saved (forced avx2, ResNet-20 +2 %, ResNet-18 0 %):
    # the consumer's pass then runs right after this conv (conv.py), as before.
    y_too = bool(q.get("qo_keep"))
    keep = y_too and q["L"] == 16
    pq = ((pw or pw8) and qo is not None and not y_too and not has_r and not any(qo[3]) and
          (code <= ActCode.RELU or code == ActCode.CLIP or code == ActCode.HARD_SWISH))
    # y and its words (qo_keep: a residual block's output) from the VNNI pixel-vector
    # kernel's registers, instead of a quantize pass over y after it (MobileNetV2's
    # projections: 2-6 us each, one thread)
    pqk = (pw and y_too and qo is not None and not any(qo[3]) and PW_KEEP_ON and
           (code <= ActCode.RELU or code == ActCode.CLIP or code == ActCode.HARD_SWISH))
    if pq or pqk:   # the pixel-vector kernels pack 4 channels a word into the consumer's input
        qw, _, qf = consumer_words(q, qo, N, O, OH, OW, calls)
    else:
        qw, qf = _QW0, _QF0
    if pw:
        emit(calls, pwk, xq.view(np.int32), q["C4"], OH * OW, q["wt"], q["L"] * q["k"],
             q["sc"], bb, y.reshape(-1), N, O, r.reshape(-1), has_r, code, alpha, beta,
             2 if pqk else 1 if pq else 0, qw, qf)
        return pq or pqk
    if pw8:
        emit(calls, _pw_pm8, xq.view(np.int32), q["C4"], OH * OW, q["wt"], q["L"] * q["k"],
             q["sc"], bb, q["smax"], y.reshape(-1), N, O, r.reshape(-1), has_r, code, alpha,
             beta, pq, qw, qf)
        return pq
    tb = tls_rows("conv.tb", _NT, tile_buf_len(q["L"] * q["k"], P))
    fused = qo is not None and (keep or (not y_too and not has_r and (
        code <= ActCode.RELU or code == ActCode.CLIP or code == ActCode.HARD_SWISH)))
    qw, qp, qf = (consumer_words(q, qo, N, O, OH, OW, calls) if fused
                  else (_QW0, _QP3 if QP3_ON and q["L"] == 16 else _QP0, _QF0))
    if q["fam"] == "v":
        emit(calls, kern, xq.view(np.int32), q["C4"], Hp, Wp, q["wt"], q["sc"], bb, qw, qp, qf,
             toff, y.reshape(-1), N, O, OH, OW, r.reshape(-1), has_r, code, alpha, beta, tb)
        return fused
    emit(calls, kern, xq.view(np.int32), q["C4"], Hp, Wp, q["wt"], q["sc"], bb, q["smax"], qw,
         qp, qf, toff, y.reshape(-1), N, O, OH, OW, r.reshape(-1), has_r, code, alpha, beta, tb)
    return fused


# ----------------------------------------------------------------------------- pointwise (VNNI)
# A 1x1 stride-1 unpadded conv vectorized over *pixels* instead of output channels: the
# quantized input (N, C4, H*W) int32 words already holds 4 channels of one pixel per lane,
# so ``vpdpbusd(x[16 pixels], broadcast(w[o, 4 channels]))`` accumulates 16 pixels of one
# output channel, and the epilogue stores whole vectors into NCHW rows (the channel-vector
# tiles transpose through ``tile_store`` one float at a time, which cost more than their
# dot products on MobileNet's expansion convs). Tile: K output channels (pw_kernel: 8, or 4
# where O <= 4) x PW_V vectors.
PW_V = 3
PW_PIX = 16 * PW_V
# masked kernels (K, V): tiles side by side, the map's last pixels in masked vectors, for
# maps the overlapping tiles would recompute more than 25 % of (7x7: 49 pixels in one tile
# of 4 vectors instead of two overlapping tiles of 3, 96 pixels)
PW_MASKED = ((8, 3), (4, 4))
PW_ON = True    # False: the channel-vector tiles for these convs too (A/B in bench_int8.py)
PW_KEEP_ON = True   # False: y, then the consumer's quantize pass over it (qo_keep; A/B)
AMX_1X1 = False  # True: every 1x1 conv on AMX (A/B: expansions slower than pixel vectors)
# 1x1 convs that reduce many channels to few (MobileNet's projections, a bottleneck's 256 ->
# 64) run on AMX: C >= AMX_PROJ * O and C >= AMX_PROJ_C. Long reductions, few outputs: the
# tiles' products dominate their epilogue. Per conv, MobileNetV2 int8 at 2 threads
# (twenty-third session, in-process A/B, every 1x1 on AMX against none): 576 -> 160 at 7x7
# 0.59x, 960 -> 320 0.73, 576 -> 96 at 14x14 0.71-0.98, 384 -> 64 0.76-0.98; the expansions
# lose (96 -> 576: 1.45x, 32 -> 192 at 28x28: 1.8, 320 -> 1280: 1.31), and so does 96 -> 24
# at 56x56 (1.27): they stay on the pixel-vector kernels, as do 144 -> 24 / 32 and 192 -> 32
# (0.76-1.13x between runs: no steady gain). MobileNetV2 with this rule: 0.97x.
AMX_PROJ = 3
AMX_PROJ_C = 256
# Since the AMX epilogue takes a tile of an unpadded plane as one 16-pixel run (amx.run's
# ``flat``; before, a run per output row: 3 on a 7x7 map), the 1x1 convs with >= AMX_1X1_C
# input channels on maps at most AMX_1X1_W wide run on AMX too (twenty-fifth session,
# in-process A/Bs, 2 threads, AMX / VNNI per conv in the model): 320 -> 1280 at 7x7
# 0.55-0.75x. With every 1x1 on AMX, the rest were mixed between the host's phases (96 ->
# 576 at 14x14 0.81-1.23, at 7x7 0.75-1.15; 160 -> 960 at 7x7 0.59-1.0) or slower (C <= 96
# at 28x28 and larger: 1.13-1.51): not taken. MobileNetV2 int8 with the flat epilogue and
# this rule: 0.97-0.98x, MobileNetV3-small 0.97-0.99x, ResNet-18 1.00x.
AMX_1X1_C = 256
AMX_1X1_W = 16
# Stride-2 3x3 and 1x1 convs with >= AMX_S2_C input channels and >= AMX_S2_MACS
# multiply-adds run on AMX, over their input split by pixel phase (amx.run_s2; the split
# ~5 us of launch + 10-30 us a MB at 2 threads). ResNet-18 int8 (twenty-fourth session,
# in-process A/Bs against the VNNI tiles, 2 threads, AMX / VNNI per conv): layer4.0.conv1
# (256 -> 512, 14 -> 7) 0.50-0.89x, layer3.0.conv1 0.80-0.94x, layer2.0.conv1 (64 -> 128)
# 0.89-1.01x, the downsample 1x1s 0.68-1.00x (they read the 3x3 conv's padded buffer: dy,
# dx); the whole model 0.94-0.96x. ResNet-20's 32 -> 64 at 16 -> 8 (1.2 M) was 1.6x
# slower. AMX_S2 = False: the VNNI tiles (A/B).
AMX_S2 = True
AMX_S2_C = 64
AMX_S2_1X1 = True
AMX_S2_MACS = 4_000_000


def amx_1x1(C: int, O: int, OW: int) -> bool:
    """Does a 1x1 conv with C input and O output channels and OW output columns run on AMX
    (where it can)?"""
    return (AMX_1X1 or (C >= AMX_PROJ * O and C >= AMX_PROJ_C)
            or (C >= AMX_1X1_C and OW <= AMX_1X1_W))


def _word_groups(w, K):
    """(q4, indent) per consumer word of a tile's K channels (4 a word), the words after
    the first emitted under a test that their channels start before O."""
    for q4 in range(K // 4):
        ind = "            "
        if q4:
            w(f"            if o0 + {4 * q4} < O:")
            ind += "    "
        yield q4, ind


def _pw_vnni_source(K, masked=False, V=None):
    """The kernel with K output channels a tile, ``_pw_vnni_k{K}``: xq int32 (N, C4, HW); wt
    int32 words (ceil(O/B), C4, 1, B) (prepare's layout; B a multiple of K); yf, rf float32
    (N, O, HW) flat; HW >= PW_PIX (the last pixel tile overlaps). qo = 1: write the
    int8 consumer's unpadded input instead, words (N, ceil(O/4), HW) in qw, K / 4 words a
    tile, quantized with qf = (scale, zero point) (no residual; none / Relu / Clip /
    HardSwish); qo = 2: y (any residual) and those words of the same activated vectors.
    Channel groups fastest: consecutive tiles read the same PW_PIX pixels of input (L1) and
    only the weights change (pixel tiles fastest re-read the whole input per group:
    MobileNetV2's 16 -> 96 expansion at 112x112, 2 threads, 159 -> 146 us). K x PW_V
    accumulators: K = 8 takes 24 of the 32 zmm registers and halves the per-tile costs
    (index arithmetic, input loads per dot product) of K = 4: MobileNetV2 int8 0.950 / 0.954
    in alternating runs (1.030 / 1.025 the other way round), MobileNetV3-small 0.98-0.99."""
    V = PW_V if V is None else V
    PIX = 16 * V
    name = f"_pw_vnni_k{K}" + (f"_v{V}m" if masked else "")
    o = []
    w = o.append
    w("@pjit(fastmath=True, boundscheck=False, error_model='numpy')")
    w(f"def {name}(xq, C4, HW, wt, B, sc, bb, yf, N, O, rf, has_r, code, alpha, beta,")
    w("                 qo, qw, qf):")
    w(f"    NG = (O + {K - 1}) // {K}")
    w("    NW = (O + 3) // 4")
    w(f"    NT = (HW + {PIX - 1}) // {PIX}")
    w("    for t in prange(N * NG * NT):")
    w("        g = t % NG")
    w("        u = t // NG")
    w("        tx = u % NT")
    w("        n = u // NT")
    w(f"        px = tx * {PIX}")
    if masked:   # tiles side by side; vector j holds m{j} (0..16) pixels of the map
        for j in range(V):
            w(f"        m{j} = min(16, max(0, HW - px - {16 * j}))")
    else:        # the last tile overlaps the one before
        w(f"        if px > HW - {PIX}:")
        w(f"            px = HW - {PIX}")
    w(f"        o0 = g * {K}")
    w("        wb = (o0 // B) * C4 * B + o0 % B")   # o0 .. o0 + K - 1 in one block of B
    for k in range(1, K):
        w(f"        o{k} = min(o0 + {k}, O - 1)")
    for k in range(K):
        w(f"        w{k} = " + ("wb" if k == 0 else f"wb + (o{k} - o0)"))
        for j in range(V):
            w(f"        a{k}{j} = simd.vzeroi16()")
    w("        xb = n * C4 * HW + px")
    w("        for c in range(C4):")
    w("            xo = xb + c * HW")
    for j in range(V):
        w(f"            x{j} = simd.vldim16(xq, xo + {16 * j}, m{j})" if masked else
          f"            x{j} = simd.vldi16(xq, xo + {16 * j})")
    w("            wc = c * B")
    for k in range(K):
        w(f"            v = simd.vbci16(wt, w{k} + wc)")
        for j in range(V):
            w(f"            a{k}{j} = simd.vdpbusd16(a{k}{j}, x{j}, v)")
    w("        if qo == 1:   # K / 4 words of the consumer's layout")
    w("            qb = (n * NW + o0 // 4) * HW + px")
    for q4, ind in _word_groups(w, K):
        ks = range(4 * q4, 4 * q4 + 4)
        for j in range(V):
            acc = ", ".join(f"a{k}{j}" for k in ks)
            oc = ", ".join(f"o{k}" for k in ks)
            w(f"{ind}_pw_store_qm({acc}, {oc}, sc, bb, code, alpha, beta, qf, qw,")
            w(f"{ind}             qb + {q4} * HW + {16 * j}, {f'm{j}' if masked else 16})")
    w("            continue")
    w("        if qo == 2:   # y (residual, vector activation) and the consumer's words")
    w("            qb = (n * NW + o0 // 4) * HW + px")
    w("            lo = simd.vsplat16(np.float32(alpha))")
    w("            hi = simd.vsplat16(np.float32(beta))")
    for q4, ind in _word_groups(w, K):
        for j in range(V):
            m = f"m{j}" if masked else "16"
            for k in range(4 * q4, 4 * q4 + 4):
                w(f"{ind}f{k} = _pw_vecf(a{k}{j}, o{k}, sc, bb, yf, rf, "
                  f"(n * O + o{k}) * HW + px + {16 * j},")
                w(f"{ind}              has_r, code, lo, hi, {m}, o0 + {k} < O)")
            fs = ", ".join(f"f{k}" for k in range(4 * q4, 4 * q4 + 4))
            w(f"{ind}simd.vstim16(qw, qb + {q4} * HW + {16 * j}, "
              f"simd.vqpack4_16({fs}, qf[0], qf[1]), {m})")
    w("            continue")
    if masked:
        w("        lo = simd.vsplat16(np.float32(alpha))")
        w("        hi = simd.vsplat16(np.float32(beta))")
    for k in range(K):
        ind = "        "
        if k:
            w(f"        if o0 + {k} < O:")
            ind += "    "
        if masked:   # masked vectors (the residual read masked too), then scalar activations
            w(f"{ind}s = simd.vsplat16(sc[o{k}])")
            w(f"{ind}cb = simd.vsplat16(bb[o{k}])")
            w(f"{ind}yb = (n * O + o{k}) * HW + px")
            for j in range(V):
                w(f"{ind}pw_vecm(a{k}{j}, s, cb, yf, rf, yb + {16 * j}, has_r, code, lo, hi,")
                w(f"{ind}         m{j})")
            w(f"{ind}if code != 0 and code != 1 and code != 7 and code != 9:")
            w(f"{ind}    for i in range(yb, yb + min({PIX}, HW - px)):")
            w(f"{ind}        yf[i] = act_call(yf[i], code, alpha, beta)")
        else:
            accs = ", ".join(f"a{k}{j}" for j in range(V))
            w(f"{ind}_pw_store({accs}, o{k}, O, n, HW, px, sc, bb, yf, rf, has_r, code,")
            w(f"{ind}          alpha, beta)")
    return "\n".join(o) + "\n"


for _K in (4, 8):
    exec(compile(_pw_vnni_source(_K), __file__, "exec"), globals())
for _K, _V in PW_MASKED:
    exec(compile(_pw_vnni_source(_K, True, _V), __file__, "exec"), globals())
PW_K8 = True    # False: 4 output channels a tile everywhere (A/B)


PW_MASK_MIN = 32  # masked kernels for maps of at least this many pixels (smaller: the tiles)


def pw_kernel(O, HW, C):
    """The pixel-vector kernel for C -> O channels on a map of HW pixels, or None (the
    channel-vector tiles): overlapping tiles of PW_PIX pixels, 8 channels a tile (4 where
    O <= 4), where they recompute at most 25 %; else, for an expansion (O >= 2 C) from
    PW_MASK_MIN pixels up, the masked kernel (PW_MASKED) that computes the fewest pixels.
    MobileNetV2's 7x7 maps (int8, 2 threads, bound steps in one process): its 160 -> 960
    expansions 23 -> 18 us, 320 -> 1280 the same (46 us), its 960 -> 160 projections
    18 -> 21 us (which keep the tiles)."""
    if HW >= PW_PIX and -(-HW // PW_PIX) * PW_PIX * 4 <= HW * 5:
        return _pw_vnni_k8 if PW_K8 and O > 4 else _pw_vnni_k4  # noqa: F821 (exec above)
    if HW < PW_MASK_MIN or not PW_MASK_ON or O < 2 * C:
        return None
    K, V = min(PW_MASKED, key=lambda kv: -(-HW // (16 * kv[1])) * 16 * kv[1])
    return globals()[f"_pw_vnni_k{K}_v{V}m"]


PW_MASK_ON = True   # False: the tiles where the overlapping kernel would recompute > 25 %


def warm_pointwise():
    """Compile (or load) the pixel-vector kernels (``_pw_vnni_k4``, ``_pw_vnni_k8`` and the
    masked ones) at run()'s argument types (edgenet warmup)."""
    z = np.zeros(PW_PIX, np.float32)
    for f in (_pw_vnni_k4, _pw_vnni_k8,  # noqa: F821
              *(globals()[f"_pw_vnni_k{K}_v{V}m"] for K, V in PW_MASKED)):
        f(np.zeros(PW_PIX, np.int32), 1, PW_PIX, np.zeros(16, np.int32), 16, z[:16], z[:16],
          z.copy(), 1, 1, z.copy(), False, 1, np.float32(0), np.float32(6), 0, _QW0, _QF0)


@njit(fastmath=True, boundscheck=False, error_model="numpy", inline="always")
def _pw_act(a, oc, sc, bb, code, lo, hi):
    return vact16(simd.vfma16(simd.vitof16(a), simd.vsplat16(sc[oc]), simd.vsplat16(bb[oc])),
                  code, lo, hi)


@njit(fastmath=True, boundscheck=False, error_model="numpy", inline="always")
def _pw_vecf(a, oc, sc, bb, yf, rf, yb, has_r, code, lo, hi, m, keep):
    """As pw_vecm (channel oc's scale and bias), and the activated vector returned for the
    consumer's words; stored into y only where ``keep`` (a channel past O: not stored)."""
    f = simd.vfma16(simd.vitof16(a), simd.vsplat16(sc[oc]), simd.vsplat16(bb[oc]))
    if has_r:
        f = simd.vadd16(f, simd.vldm16(rf, yb, m))
    f = vact16(f, code, lo, hi)
    if keep:
        simd.vstm16(yf, yb, f, m)
    return f


@njit(fastmath=True, boundscheck=False, error_model="numpy", inline="always")
def _pw_store_qm(a0, a1, a2, a3, o0, o1, o2, o3, sc, bb, code, alpha, beta, qf, qw, qb, m):
    """The first m (0..16) pixels of the tile's 4 channels, scaled and activated as
    _pw_store, quantized and packed one word a pixel into the consumer's input at qw[qb:]
    (a masked store; m = 16 a constant: a plain one)."""
    lo = simd.vsplat16(np.float32(alpha))
    hi = simd.vsplat16(np.float32(beta))
    simd.vstim16(qw, qb, simd.vqpack4_16(_pw_act(a0, o0, sc, bb, code, lo, hi),
                                         _pw_act(a1, o1, sc, bb, code, lo, hi),
                                         _pw_act(a2, o2, sc, bb, code, lo, hi),
                                         _pw_act(a3, o3, sc, bb, code, lo, hi),
                                         qf[0], qf[1]), m)


@njit(fastmath=True, boundscheck=False, error_model="numpy", inline="always")
def _pw_store(a0, a1, a2, oc, O, n, HW, px, sc, bb, yf, rf, has_r, code, alpha, beta):
    """One output channel's PW_PIX pixels: y = float(acc) * sc + bb (+ residual), then the
    activation (vector for none / Relu / Clip / HardSwish, else the scalar ``act_call`` over
    the stored row)."""
    s = simd.vsplat16(sc[oc])
    c = simd.vsplat16(bb[oc])
    lo = simd.vsplat16(np.float32(alpha))
    hi = simd.vsplat16(np.float32(beta))
    yb = (n * O + oc) * HW + px
    pw_vecm(a0, s, c, yf, rf, yb, has_r, code, lo, hi, 16)
    pw_vecm(a1, s, c, yf, rf, yb + 16, has_r, code, lo, hi, 16)
    pw_vecm(a2, s, c, yf, rf, yb + 32, has_r, code, lo, hi, 16)
    if code != 0 and code != 1 and code != 7 and code != 9:
        for i in range(yb, yb + PW_PIX):
            yf[i] = act_call(yf[i], code, alpha, beta)


# The same 1x1 pixel-vector conv for the AVX2 tier (``pm`` family, 8 int32 lanes):
# ``vpmaddubsw(x[8 pixels], broadcast(w))`` pair sums accumulate in int16 and widen to int32
# (``vpmaddwd``) every ``smax`` channel groups, as in the tiles. Tile: 4 output channels x
# 2 vectors (16 pixels; 16 ymm registers: 8 int16 + 8 int32 accumulators).
PW8_PIX = 16


@pjit(fastmath=True, boundscheck=False, error_model="numpy")
def _pw_pm8(xq, C4, HW, wt, B, sc, bb, smax, yf, N, O, rf, has_r, code, alpha, beta, qo, qw,
            qf):
    """As ``_pw_vnni_k4`` with the avx2 ``pm`` weights (same layout) and ``smax``."""
    NG = (O + 3) // 4
    NT = (HW + PW8_PIX - 1) // PW8_PIX
    for t in prange(N * NG * NT):
        tx = t % NT
        u = t // NT
        g = u % NG
        n = u // NG
        px = tx * PW8_PIX
        if px > HW - PW8_PIX:
            px = HW - PW8_PIX
        o0 = g * 4
        o1 = min(o0 + 1, O - 1)
        o2 = min(o0 + 2, O - 1)
        o3 = min(o0 + 3, O - 1)
        w0 = (o0 // B) * C4 * B + o0 % B
        w1 = (o1 // B) * C4 * B + o1 % B
        w2 = (o2 // B) * C4 * B + o2 % B
        w3 = (o3 // B) * C4 * B + o3 % B
        a00 = simd.vzeroi8()
        a01 = simd.vzeroi8()
        a10 = simd.vzeroi8()
        a11 = simd.vzeroi8()
        a20 = simd.vzeroi8()
        a21 = simd.vzeroi8()
        a30 = simd.vzeroi8()
        a31 = simd.vzeroi8()
        xb = n * C4 * HW + px
        for c0 in range(0, C4, smax):
            c1 = min(c0 + smax, C4)
            h00 = simd.vzerow8()
            h01 = simd.vzerow8()
            h10 = simd.vzerow8()
            h11 = simd.vzerow8()
            h20 = simd.vzerow8()
            h21 = simd.vzerow8()
            h30 = simd.vzerow8()
            h31 = simd.vzerow8()
            for c in range(c0, c1):
                xo = xb + c * HW
                x0 = simd.vldi8(xq, xo)
                x1 = simd.vldi8(xq, xo + 8)
                wc = c * B
                v = simd.vbci8(wt, w0 + wc)
                h00 = simd.vaddw8(h00, simd.vmaddubs8(x0, v))
                h01 = simd.vaddw8(h01, simd.vmaddubs8(x1, v))
                v = simd.vbci8(wt, w1 + wc)
                h10 = simd.vaddw8(h10, simd.vmaddubs8(x0, v))
                h11 = simd.vaddw8(h11, simd.vmaddubs8(x1, v))
                v = simd.vbci8(wt, w2 + wc)
                h20 = simd.vaddw8(h20, simd.vmaddubs8(x0, v))
                h21 = simd.vaddw8(h21, simd.vmaddubs8(x1, v))
                v = simd.vbci8(wt, w3 + wc)
                h30 = simd.vaddw8(h30, simd.vmaddubs8(x0, v))
                h31 = simd.vaddw8(h31, simd.vmaddubs8(x1, v))
            a00 = simd.vwiden8(a00, h00)
            a01 = simd.vwiden8(a01, h01)
            a10 = simd.vwiden8(a10, h10)
            a11 = simd.vwiden8(a11, h11)
            a20 = simd.vwiden8(a20, h20)
            a21 = simd.vwiden8(a21, h21)
            a30 = simd.vwiden8(a30, h30)
            a31 = simd.vwiden8(a31, h31)
        if qo:
            qb = (n * NG + g) * HW + px
            _pw8_store_q(a00, a10, a20, a30, o0, o1, o2, o3, sc, bb, code, alpha, beta, qf, qw,
                         qb)
            _pw8_store_q(a01, a11, a21, a31, o0, o1, o2, o3, sc, bb, code, alpha, beta, qf, qw,
                         qb + 8)
            continue
        _pw8_store(a00, a01, o0, O, n, HW, px, sc, bb, yf, rf, has_r, code, alpha, beta)
        if o0 + 1 < O:
            _pw8_store(a10, a11, o0 + 1, O, n, HW, px, sc, bb, yf, rf, has_r, code, alpha, beta)
        if o0 + 2 < O:
            _pw8_store(a20, a21, o0 + 2, O, n, HW, px, sc, bb, yf, rf, has_r, code, alpha, beta)
        if o0 + 3 < O:
            _pw8_store(a30, a31, o0 + 3, O, n, HW, px, sc, bb, yf, rf, has_r, code, alpha, beta)


@njit(fastmath=True, boundscheck=False, error_model="numpy", inline="always")
def _vact8(f, code, lo, hi):
    """Relu / Clip / HardSwish on a vector (other codes: the caller's scalar pass)."""
    if code == 1:
        f = simd.vrelu8(f)
    elif code == 7:
        f = simd.vclip8(f, lo, hi)
    elif code == 9:     # HardSwish: f * clip(f / 6 + 1/2, 0, 1), branch-free
        z0 = simd.vsplat8(np.float32(0))
        u = simd.vfma8(f, simd.vsplat8(np.float32(1 / 6)), simd.vsplat8(np.float32(0.5)))
        f = simd.vfma8(f, simd.vclip8(u, z0, simd.vsplat8(np.float32(1))), z0)
    return f


@njit(fastmath=True, boundscheck=False, error_model="numpy", inline="always")
def _pw8_vec(a, s, c, yf, rf, yb, has_r, code, lo, hi):
    f = simd.vfma8(simd.vitof8(a), s, c)
    if has_r:
        f = simd.vadd8(f, simd.vld8(rf, yb))
    simd.vst8(yf, yb, _vact8(f, code, lo, hi))


@njit(fastmath=True, boundscheck=False, error_model="numpy", inline="always")
def _pw8_act(a, oc, sc, bb, code, lo, hi):
    return _vact8(simd.vfma8(simd.vitof8(a), simd.vsplat8(sc[oc]), simd.vsplat8(bb[oc])),
                  code, lo, hi)


@njit(fastmath=True, boundscheck=False, error_model="numpy", inline="always")
def _pw8_store_q(a0, a1, a2, a3, o0, o1, o2, o3, sc, bb, code, alpha, beta, qf, qw, qb):
    """As _pw_store_qm (16 pixels), 8 pixels."""
    lo = simd.vsplat8(np.float32(alpha))
    hi = simd.vsplat8(np.float32(beta))
    simd.vstwords8(qw, qb, simd.vqpack4_8(_pw8_act(a0, o0, sc, bb, code, lo, hi),
                                          _pw8_act(a1, o1, sc, bb, code, lo, hi),
                                          _pw8_act(a2, o2, sc, bb, code, lo, hi),
                                          _pw8_act(a3, o3, sc, bb, code, lo, hi),
                                          qf[0], qf[1]))


@njit(fastmath=True, boundscheck=False, error_model="numpy", inline="always")
def _pw8_store(a0, a1, oc, O, n, HW, px, sc, bb, yf, rf, has_r, code, alpha, beta):
    s = simd.vsplat8(sc[oc])
    c = simd.vsplat8(bb[oc])
    lo = simd.vsplat8(np.float32(alpha))
    hi = simd.vsplat8(np.float32(beta))
    yb = (n * O + oc) * HW + px
    _pw8_vec(a0, s, c, yf, rf, yb, has_r, code, lo, hi)
    _pw8_vec(a1, s, c, yf, rf, yb + 8, has_r, code, lo, hi)
    if code != 0 and code != 1 and code != 7 and code != 9:
        for i in range(yb, yb + PW8_PIX):
            yf[i] = act_call(yf[i], code, alpha, beta)


def warm_pointwise_pm8():
    """Compile (or load) ``_pw_pm8`` at run()'s argument types (edgenet warmup, avx2)."""
    z = np.zeros(PW8_PIX, np.float32)
    _pw_pm8(np.zeros(PW8_PIX, np.int32), 1, PW8_PIX, np.zeros(8, np.int32), 8, z[:8], z[:8],
            64, z.copy(), 1, 1, z.copy(), False, 1, np.float32(0), np.float32(6), False, _QW0,
            _QF0)
