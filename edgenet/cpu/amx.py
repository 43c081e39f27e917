"""int8 convs on Intel AMX (``tdpbsud``: 16x64 int8 by 64x16 uint8 tiles into 16x16 int32):
the avx512vnni tier's stride-1 convs, where the host has AMX-INT8 (Sapphire Rapids and
later) and Linux grants the process the tile state (``arch_prctl(ARCH_REQ_XCOMP_PERM)``).

The quantized input is qconv's own layout, unchanged: (N, C4, Hp, Wp) int32 words, a word
4 consecutive input channels of one padded pixel. That makes the *activations* AMX's B
operand (K/4 rows of 16 words): row j is channel group g + j, its 16 words 16 consecutive
pixels of the padded plane, rows a plane apart (one constant stride, as ``tileloadd``
wants). The weights are the A operand (16 output channels by 4 * KB int8 levels: KB
channel groups of one tap), so an accumulator tile holds 16 output channels x 16 pixels:
each of its rows is a run of one output channel's pixels, NCHW's order.

Pixels are counted along the padded plane (flat index p = oy * Wp + ox, read at p + the
tap's offset), so one 16-pixel tile may span output rows and cover the padding columns
(computed, never stored): every stride-1 geometry and any width, small maps included
(7x7: 61 flat pixels for 49 outputs). The last tile of a plane overlaps the one before
(no read past the plane). Tiles: 2 x 2 accumulators (32 output channels x 32 pixels), 2 A
and 2 B tiles: all 8 tile registers; each ``tdpbsud`` is 16 x 16 x 4KB MACs.

The epilogue stores the four accumulator tiles into a per-thread scratch (4 KB) and
writes their rows' output pixels, a masked vector per run of an output row (scale, bias, residual,
activation as qconv's pixel-vector kernels), and where the conv has an int8 consumer
(``qconv.consumer_words``) its words from the same vectors, 4 channels a word, y stored
only where something reads it. Where the input plane has no padding columns and the
consumer's rows are as wide as the map (1x1 convs: ``flat``), a tile is one run of 16
pixels even where it spans output rows.

A work item's steps run taps outer, channel blocks inner, except where the input's planes
are a multiple of 1 KB apart (``kb_outer``: 14x14 maps with pads of 1), where 16 planes
at a time keep L1's sets apart. Stride-2 3x3 and 1x1 convs (``run_s2``) run the same
kernel on their input split by pixel phase: four (Hq, Wq) planes per channel group, where
the conv is a stride-1 one over a plane of 4 Hq rows.

``EDGENET_AMX=0`` turns it off (the VNNI tiles run instead)."""
from __future__ import annotations

import ctypes
import os
import sys

import numba
import numpy as np
from llvmlite import ir
from numba import prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from .. import _tiers
from .._jit import njit, pjit
from . import simd
from ._common import act_call, emit, line_aligned, tls_buffer, tls_rows
from .qepi import vact16

ON = True          # False: never (A/B); EDGENET_AMX=0 too
KB_MIN = 8         # fewest channel groups a tile row takes (K = 32 int8 levels)
PPI = 2            # pixel-tile pairs per work item
KBO_ALL = False    # True: channel blocks outer everywhere (A/B)
FLAT_ON = True     # False: a run per output row everywhere (A/B)
_ARCH_REQ_XCOMP_PERM = 0x1023
_XFEATURE_XTILEDATA = 18
_SYS_ARCH_PRCTL = 158      # x86_64
_state = None


def _granted() -> bool:
    """Ask Linux for the AMX tile state (once a process; threads share it)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.syscall(_SYS_ARCH_PRCTL, _ARCH_REQ_XCOMP_PERM, _XFEATURE_XTILEDATA) == 0
    except Exception:   # pragma: no cover - no libc syscall
        return False


def available() -> bool:
    """AMX kernels may run: the avx512vnni tier on native codegen, the host has AMX-INT8,
    Linux x86-64 granted the tile state, and neither ``ON`` nor ``EDGENET_AMX`` says no."""
    global _state
    if not ON or os.environ.get("EDGENET_AMX", "1").strip() == "0":
        return False
    if _state is None:
        f = _tiers.host_features()
        _state = bool(sys.platform.startswith("linux") and os.uname().machine == "x86_64"
                      and "NUMBA_CPU_NAME" not in os.environ
                      and f.get("amx-int8") and f.get("amx-tile") and _granted())
    return _state and simd.tier() == "avx512vnni"


def fits(OH: int, OW: int, Wp: int) -> bool:
    """The map has a whole 16-pixel tile along the padded plane (qconv.prepare decided the
    rest: stride 1, one group, channel blocks, >= 16 outputs)."""
    return (OH - 1) * Wp + OW >= 16


def kb_outer(HW: int) -> bool:
    """Channel blocks outer, taps inner: where the input's planes are a multiple of 1 KB
    apart (HW words), so that only one block's 16 planes are live (with taps outer, every
    plane of a 256-channel 14x14 input is, 1 KB apart: L1 set conflicts)."""
    return KBO_ALL or (HW * 4) % 1024 == 0


def kb_of(C4: int) -> int:
    """Channel groups a tile row takes: the largest divisor of C4 in KB_MIN..16, else 0."""
    for kb in range(min(16, C4), KB_MIN - 1, -1):
        if C4 % kb == 0:
            return kb
    return 0


def prepare(lev, O, C, T):
    """A-tile weights for levels (O, C * T) (C-major, as qconv.prepare's): int8 (NOB,
    C4 // KB, T, 16, KB * 4) with NOB = 2 * ceil(O / 32), rows past O zero, on a cache line
    (each 64-byte tile row on one: ResNet-18 int8 ran 1.05-1.07x slower with them 16 bytes
    off); and the tile configuration (64 bytes, palette 1)."""
    C4 = -(-C // 4)
    KB = kb_of(C4)
    NOB = 2 * -(-O // 32)
    w = np.zeros((NOB * 16, C4 * 4, T), np.int8)
    w[:O, :C] = lev.reshape(O, C, T)
    wa = np.ascontiguousarray(w.reshape(NOB, 16, C4 // KB, KB * 4, T).transpose(0, 2, 4, 1, 3))
    cfg = np.zeros(64, np.uint8)
    cfg[0] = 1
    colsb = np.zeros(16, np.uint16)
    rows = np.zeros(16, np.uint8)
    colsb[:4], rows[:4] = 64, 16            # accumulators: 16 x 16 int32
    colsb[4:6], rows[4:6] = KB * 4, 16      # A: 16 output channels x KB groups
    colsb[6:8], rows[6:8] = 64, KB          # B: KB groups x 16 pixels
    cfg[16:48] = colsb.view(np.uint8)
    cfg[48:64] = rows
    return {"wa": line_aligned(wa.reshape(-1)), "cfg": cfg, "KB": KB}


# ----------------------------------------------------------------------------- intrinsics
_I8 = ir.IntType(8)
_P8 = _I8.as_pointer()
_VOID = ir.VoidType()


def _byte_ptr(context, builder, aty, arr, off):
    a = context.make_array(aty)(context, builder, arr)
    return builder.gep(builder.bitcast(a.data, _P8), [off])


def _call(builder, name, argtys, args):
    fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_VOID, argtys), name)
    builder.call(fn, args)


@intrinsic
def tile_config(typingctx, cfg):
    """``ldtilecfg`` from the 64 bytes of cfg (uint8)."""
    def codegen(context, builder, sig, args):
        _call(builder, "llvm.x86.ldtilecfg", [_P8],
              [_byte_ptr(context, builder, sig.args[0], args[0], ir.Constant(ir.IntType(64), 0))])
        return context.get_dummy_value()
    return types.none(cfg), codegen


@intrinsic
def tile_release(typingctx):
    def codegen(context, builder, sig, args):
        _call(builder, "llvm.x86.tilerelease", [], [])
        return context.get_dummy_value()
    return types.none(), codegen


def _tile_mem(name, t):
    @intrinsic
    def f(typingctx, arr, off, stride):
        """Tile t <-> rows of arr's bytes from byte off, stride bytes apart."""
        if not (isinstance(arr, types.Array) and isinstance(off, types.Integer)
                and isinstance(stride, types.Integer)):
            return None

        def codegen(context, builder, sig, args):
            i64 = ir.IntType(64)
            off = context.cast(builder, args[1], sig.args[1], types.int64)
            st = context.cast(builder, args[2], sig.args[2], types.int64)
            _call(builder, name, [_I8, _P8, i64],
                  [ir.Constant(_I8, t), _byte_ptr(context, builder, sig.args[0], args[0], off),
                   st])
            return context.get_dummy_value()
        return types.none(arr, off, stride), codegen
    return f


def _tile_op(name, *ts):
    @intrinsic
    def f(typingctx):
        def codegen(context, builder, sig, args):
            _call(builder, name, [_I8] * len(ts), [ir.Constant(_I8, t) for t in ts])
            return context.get_dummy_value()
        return types.none(), codegen
    return f


ld4, ld5, ld6, ld7 = (_tile_mem("llvm.x86.tileloadd64", t) for t in (4, 5, 6, 7))
st0, st1, st2, st3 = (_tile_mem("llvm.x86.tilestored64", t) for t in (0, 1, 2, 3))
zero0, zero1, zero2, zero3 = (_tile_op("llvm.x86.tilezero", t) for t in (0, 1, 2, 3))
# accumulator c += A (weights, signed) x B (activations, unsigned)
dp046, dp047, dp256, dp357 = (_tile_op("llvm.x86.tdpbsud", *c) for c in
                              ((0, 4, 6), (1, 4, 7), (2, 5, 6), (3, 5, 7)))


# ----------------------------------------------------------------------------- the kernel
@njit(fastmath=True, boundscheck=False, error_model="numpy", inline="always")
def _vrow(scr, rb, ls, o, sc, bb, rf, yi, has_r, code, lo, hi, cnt):
    """The accumulator row at scr[rb:], lanes ls.. (cnt pixels): scaled (channel o), the
    residual added (at rf[yi:]), a vector activation applied."""
    f = simd.vfma16(simd.vitof16(simd.vldi16(scr, rb + ls)), simd.vsplat16(sc[o]),
                    simd.vsplat16(bb[o]))
    if has_r:
        f = simd.vadd16(f, simd.vldm16(rf, yi, cnt))
    return vact16(f, code, lo, hi)


@njit(fastmath=True, boundscheck=False, error_model="numpy", inline="always")
def _run_rows(scr, sb, ls, cnt, yo, qb, o0, sc, bb, yf, rf, yb, OHW, O, has_r, code, alpha,
              beta, qw, qp, qf):
    """Lanes ls.. (cnt pixels, one output row's run: y at yb + o * OHW + yo, words at qb)
    of the 16 accumulator rows at scr[sb:] (channels o0..)."""
    lo = simd.vsplat16(np.float32(alpha))
    hi = simd.vsplat16(np.float32(beta))
    mode = qp[0]
    if mode == 1 or mode == 2 or mode == 4:
        wy = not (mode == 1 or mode == 4)
        QP = qp[2] * qp[3]
        for g in range(4):
            oa = o0 + 4 * g
            if oa >= O:
                break
            c1 = min(oa + 1, O - 1)
            c2 = min(oa + 2, O - 1)
            c3 = min(oa + 3, O - 1)
            rb = sb + 64 * g
            f0 = _vrow(scr, rb, ls, oa, sc, bb, rf, yb + oa * OHW + yo, has_r, code, lo, hi,
                       cnt)
            f1 = _vrow(scr, rb + 16, ls, c1, sc, bb, rf, yb + c1 * OHW + yo, has_r, code, lo,
                       hi, cnt)
            f2 = _vrow(scr, rb + 32, ls, c2, sc, bb, rf, yb + c2 * OHW + yo, has_r, code, lo,
                       hi, cnt)
            f3 = _vrow(scr, rb + 48, ls, c3, sc, bb, rf, yb + c3 * OHW + yo, has_r, code, lo,
                       hi, cnt)
            if wy:
                simd.vstm16(yf, yb + oa * OHW + yo, f0, cnt)
                if oa + 1 < O:
                    simd.vstm16(yf, yb + c1 * OHW + yo, f1, cnt)
                if oa + 2 < O:
                    simd.vstm16(yf, yb + c2 * OHW + yo, f2, cnt)
                if oa + 3 < O:
                    simd.vstm16(yf, yb + c3 * OHW + yo, f3, cnt)
            simd.vstim16(qw, qb + g * QP, simd.vqpack4_16(f0, f1, f2, f3, qf[0], qf[1]), cnt)
    else:
        for m in range(16):
            o = o0 + m
            if o < O:
                yi = yb + o * OHW + yo
                simd.vstm16(yf, yi, _vrow(scr, sb + 16 * m, ls, o, sc, bb, rf, yi, has_r,
                                          code, lo, hi, cnt), cnt)
                if code != 0 and code != 1 and code != 7 and code != 9:
                    for i in range(yi, yi + cnt):
                        yf[i] = act_call(yf[i], code, alpha, beta)


@njit(fastmath=True, boundscheck=False, error_model="numpy", inline="always")
def _store_rows(scr, sb, o0, p, Wp, sc, bb, yf, rf, yb, OW, OHW, O, has_r, code, alpha,
                beta, qw, qp, qf, n, flat):
    """The accumulator tile at scr[sb:] (16 rows of 16 int32: channels o0.., pixels p..)
    -> y's valid pixels (yb: image n's plane 0), a masked vector per output-row run; with
    qp[0] in (1, 2, 4) (qconv.consumer_words) the int8 consumer's words too, 4 channels a
    word (y not stored for 1 and 4). ``flat`` (``run``): the plane has no padding columns
    (Wp == OW) and the consumer's rows are OW words, so the tile is one run of 16 pixels
    (whole vectors: a 7x7 map's tile spans 3 rows)."""
    qb0 = (n * qp[1] + o0 // 4) * qp[2] + qp[4]
    if flat:
        _run_rows(scr, sb, 0, 16, p, qb0 * qp[3] + qp[5] + p, o0, sc, bb, yf, rf, yb, OHW, O,
                  has_r, code, alpha, beta, qw, qp, qf)
        return
    q = p
    e = p + 16
    while q < e:
        oy = q // Wp
        ox = q - oy * Wp
        if ox >= OW:            # the padding columns: skip to the next row
            q = (oy + 1) * Wp
            continue
        cnt = min(OW - ox, e - q)
        _run_rows(scr, sb, q - p, cnt, oy * OW + ox, (qb0 + oy) * qp[3] + ox + qp[5], o0, sc,
                  bb, yf, rf, yb, OHW, O, has_r, code, alpha, beta, qw, qp, qf)
        q += cnt


@pjit(fastmath=True, boundscheck=False, error_model="numpy")
def _conv(xq, C4, HW, Wp, toff, wa, KB, cfg, sc, bb, yf, N, O, OH, OW, rf, has_r, code,
          alpha, beta, scr, qw, qp, qf, kbo, flat):
    """xq: uint8 (N, C4, Hp, Wp, 4) flat (HW = Hp * Wp); wa, cfg: prepare's; yf, rf: float32
    (N, O, OH, OW) flat; scr: int32 rows (a thread's row >= 1040 words); qw, qp, qf: the
    int8 consumer's words (qconv.consumer_words; qp[0] = 0: none)."""
    T = toff.shape[0]
    NKB = C4 // KB
    NOB2 = (O + 31) // 32
    NP = (OH - 1) * Wp + OW
    NPP = (NP + 31) // 32
    NPI = (NPP + PPI - 1) // PPI
    AB = 16 * KB * 4                     # bytes of an A tile
    OB = T * NKB * AB                    # bytes of an output block's weights
    OHW = OH * OW
    for it in prange(N * NOB2 * NPI):
        pi = it % NPI
        u = it // NPI
        ob = (u % NOB2) * 2
        n = u // NOB2
        s = scr[numba.get_thread_id()]
        tile_config(cfg)
        for pp in range(pi * PPI, min(NPP, pi * PPI + PPI)):
            p0 = min(pp * 32, NP - 16)
            p1 = min(pp * 32 + 16, NP - 16)
            zero0()
            zero1()
            zero2()
            zero3()
            for st in range(T * NKB):
                if kbo:             # channel blocks outer (kb_outer)
                    kb = st // T
                    t = st - kb * T
                else:
                    t = st // NKB
                    kb = st - t * NKB
                wo = ob * OB + (kb * T + t) * AB
                ld4(wa, wo, KB * 4)
                ld5(wa, wo + OB, KB * 4)
                xo = ((n * C4 + kb * KB) * HW + toff[t]) * 4
                ld6(xq, xo + p0 * 4, HW * 4)
                ld7(xq, xo + p1 * 4, HW * 4)
                dp046()
                dp047()
                dp256()
                dp357()
            yb = n * O * OHW
            o0 = ob * 16
            # all four tiles stored first: the next pixel pair's loads and tdpbsud can
            # start (out of order) while the epilogue's vector code runs
            st0(s, 0, 64)
            st1(s, 1024, 64)
            st2(s, 2048, 64)
            st3(s, 3072, 64)
            _store_rows(s, 0, o0, p0, Wp, sc, bb, yf, rf, yb, OW, OHW, O, has_r, code, alpha,
                        beta, qw, qp, qf, n, flat)
            _store_rows(s, 256, o0, p1, Wp, sc, bb, yf, rf, yb, OW, OHW, O, has_r, code,
                        alpha, beta, qw, qp, qf, n, flat)
            _store_rows(s, 512, o0 + 16, p0, Wp, sc, bb, yf, rf, yb, OW, OHW, O, has_r, code,
                        alpha, beta, qw, qp, qf, n, flat)
            _store_rows(s, 768, o0 + 16, p1, Wp, sc, bb, yf, rf, yb, OW, OHW, O, has_r, code,
                        alpha, beta, qw, qp, qf, n, flat)
        tile_release()


_NT = numba.config.NUMBA_NUM_THREADS


def run(xq, C4, Hp, Wp, toff, q, bb, y, r, has_r, code, alpha, beta, qw, qp, qf, calls=None):
    """The conv on AMX (qconv.run's arguments; ``q["amx"]``: prepare's; qw, qp, qf: the int8
    consumer's words, as the VNNI tiles take them)."""
    a = q["amx"]
    N, O, OH, OW = y.shape
    scr = tls_rows("amx.scr", _NT, 4 * 256 + 16).view(np.int32)
    # one run per tile: no padding columns, and the consumer's rows (if any) OW words
    flat = bool(FLAT_ON and Wp == OW and (qp[0] == 0 or qp[3] == OW))
    emit(calls, _conv, xq, C4, Hp * Wp, Wp, toff, a["wa"], a["KB"], a["cfg"], q["sc"], bb,
         y.reshape(-1), N, O, OH, OW, r.reshape(-1), has_r, code, alpha, beta, scr, qw, qp,
         qf, kb_outer(Hp * Wp), flat)


def _deint(odd):
    @intrinsic
    def f(typingctx, a, b):
        """Lanes 2i + odd of the 32 lanes a, b (two 16-float vectors)."""
        if not (a == simd.F32x16 and b == simd.F32x16):
            return None

        def codegen(context, builder, sig, args):
            m = ir.Constant(ir.VectorType(ir.IntType(32), 16), [2 * i + odd for i in range(16)])
            return builder.shuffle_vector(args[0], args[1], m)
        return a(a, b), codegen
    return f


_evens, _odds = _deint(0), _deint(1)


@pjit(fastmath=True, boundscheck=False, error_model="numpy")
def _phase_split(xq, out, NC, Hp, Wp, Hq, Wq):
    """Words (NC, Hp, Wp) -> (NC, 4, Hq, Wq), as float32 bit patterns (moved, never
    computed): phase 2a + b holds pixel (2i + a, 2j + b) at (i, j) (rows past the plane's
    edge 0, and phase 1's last column where Wp is odd left as is: read only for outputs
    never stored)."""
    PQ = Hq * Wq
    z = np.float32(0)
    for u in prange(NC * 2):
        c = u // 2
        a = u - 2 * c
        for i in range(Hq):
            sy = 2 * i + a
            d0 = (c * 4 + 2 * a) * PQ + i * Wq
            d1 = d0 + PQ
            if sy >= Hp:
                for j in range(Wq):
                    out[d0 + j] = z
                    out[d1 + j] = z
                continue
            sr = (c * Hp + sy) * Wp
            for k in range(0, Wp, 32):
                cnt = min(32, Wp - k)
                lo = simd.vldm16(xq, sr + k, min(16, cnt))
                hi = simd.vldm16(xq, sr + k + 16, max(0, cnt - 16))
                simd.vstm16(out, d0 + k // 2, _evens(lo, hi), (cnt + 1) // 2)
                simd.vstm16(out, d1 + k // 2, _odds(lo, hi), cnt // 2)


def s2_taps(Hq: int, Wq: int, K: int = 3, dy: int = 0, dx: int = 0) -> np.ndarray:
    """A KxK stride-2 conv's taps on the phase-split planes: tap (ky, kx) reads the padded
    pixel (2 oy + dy + ky, 2 ox + dx + kx), i.e. phase 2 ((dy + ky) % 2) + (dx + kx) % 2 at
    (oy + (dy + ky) // 2, ox + (dx + kx) // 2) (dy, dx: where the conv's own padded input
    starts in the buffer, a 1x1 conv reading another reader's)."""
    return np.array([(2 * ((dy + ky) % 2) + (dx + kx) % 2) * Hq * Wq
                     + ((dy + ky) // 2) * Wq + (dx + kx) // 2
                     for ky in range(K) for kx in range(K)], np.int64)


def run_s2(xq, C4, Hp, Wp, q, bb, y, r, has_r, code, alpha, beta, qw, qp, qf, calls=None,
           K=3, dy=0, dx=0):
    """A KxK (3x3, 1x1) stride-2 conv on AMX: its padded input words (N, C4, Hp, Wp) split
    by pixel phase into (N, C4, 4, Hq, Wq), where the conv is a stride-1 one (the four
    phases a plane of 4 Hq rows, rows Wq words: the output pixel (oy, ox) at oy * Wq + ox,
    as run's)."""
    N = y.shape[0]
    Hq, Wq = (Hp + 1) // 2, (Wp + 1) // 2
    xs = tls_buffer("amx.s2", N * C4 * 4 * Hq * Wq)
    emit(calls, _phase_split, xq.view(np.float32), xs, N * C4, Hp, Wp, Hq, Wq)
    key = (Hq, Wq, K, dy, dx)
    t = q.get("_s2_taps")
    if t is None or t[0] != key:
        t = q["_s2_taps"] = (key, s2_taps(*key))
    run(xs.view(np.uint8), C4, 4 * Hq, Wq, t[1], q, bb, y, r, has_r, code, alpha, beta, qw,
        qp, qf, calls)


def warm():
    """Compile (or load) the AMX conv at run()'s argument types (edgenet warmup); nothing
    where AMX is not ``available()``."""
    if not available():
        return
    lev = np.zeros((16, 32 * 9), np.int8)
    q = {"amx": prepare(lev, 16, 32, 9), "sc": np.zeros(16, np.float32)}
    y = np.zeros((1, 16, 2, 8), np.float32)
    run(np.zeros(8 * 4 * 10 * 4, np.uint8), 8, 4, 10, np.zeros(9, np.int64), q,
        np.zeros(16, np.float32), y, y, False, 1, np.float32(0), np.float32(6),
        np.zeros(1, np.int32), np.zeros(6, np.int64), np.zeros(2, np.float32))
    y2 = np.zeros((1, 16, 4, 8), np.float32)          # run_s2: (1, 8, 10, 18) words
    run_s2(np.zeros(8 * 10 * 18 * 4, np.uint8), 8, 10, 18, q, np.zeros(16, np.float32), y2,
           y2, False, 1, np.float32(0), np.float32(6), np.zeros(1, np.int32),
           np.zeros(6, np.int64), np.zeros(2, np.float32))
