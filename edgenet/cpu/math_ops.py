"""Unary (elementwise math), BinaryMath (max/min/pow, broadcasting) and Reduce on the CPU.
Function codes: edgenet/shapes_math.py. The NumPy oracle: edgenet/reference/math_ops.py.

Reduce views the input as (A, D, B) with the reduced axes (a contiguous block) in D, and
accumulates whole rows of B in the output (vectorizable); reduced axes that are not
contiguous are moved together first (one transposed copy).
"""
from __future__ import annotations

import math

import numpy as np
from numba import prange

from ..activation import (erf_f32, f32_bits, f32_from_bits, log_f32, mish_f32, silu_f32,
                          softplus_f32, unary_scalar)
from ..ops import node_attrs
from ..shapes_math import BINARY_CODE, REDUCE_CODE, UNARY_CODE
from .._jit import njit, pjit
from ._common import NoBind, RecordedOp, emit, emit_split, operand, prepare_consts
from . import simd
from .simd import vexp16, vld16, vst16

# the Exp op's 16-lane kernel (vscalefps) where the tier has AVX-512 (frozen into the
# compiled loop: the disk cache is per tier)
_VEXP = simd.lanes(simd.simd_mode()) == 16

CHUNK = 16384
# the float64 scalar switch: edgenet.activation.unary_scalar, the function the CUDA
# backend compiles too
_unary = njit(inline="always")(unary_scalar)


_FMU = {"contract", "arcp", "nsz"}     # no nnan/ninf: NaN and inf pass through
_F = np.float32
# e**r on [-ln2/2, ln2/2]: a degree-6 polynomial fitted for relative error (~2e-9), its
# coefficients doubled (the scale below is 2**(k-1))
_E0, _E1, _E2, _E3, _E4, _E5, _E6 = (_F(2 * c) for c in (
    1.0, 1.0, 0.4999999403953552, 0.16666430234909058, 0.04166800528764725,
    0.008374199271202087, 0.0013843611814081669))


_I = np.int32
_EXP_MAGIC = _F(12583038.0)        # 1.5 * 2**23 + 126: round(x / ln2) + that = m, m's
_EXP_TOP = _I(0x4B4000FE)          # bits are 0x4B40007E + k; k + 126 <= 254: the top clamp


@njit(inline="always")
def _exp_fast(x):
    """e**x in float32 for the Exp op where the tier lacks AVX-512 (and for the tail of a
    row on AVX-512, whose body runs simd.vexp16: 34.4 us for 200,704 floats, within 1.02
    ulp, denormal results exact), within 1.01 ulp of e**x where the result is a normal
    float (>= 2**-125; tests/test_math_ops.py sweeps it), 14 vector operations a lane, 10
    of them multiply-adds: x = k ln2 + r (k rounded by adding 1.5*2**23, so the sum's low
    bits are k), e**r by one Horner chain, 2**(k-1) as the sum's bits shifted into the
    exponent field. Results below 2**-125 (x < -86.6) lose precision and flush to 0 below
    x = -87.34 (absolute error < 2e-38; edgenet.activation.exp_f32 keeps the denormals,
    1.7x slower); x > 88.73 gives inf, NaN passes through.

    Clamps: x from below by max (NaN kept: Numba's max returns the NaN argument), k from
    above on the integer bits of m (+inf: k = 128 and r = inf, so 2 e**r * 2**127 = inf;
    finite x > 89 overflows the same way). The form "c if x > c else x" for both compiled
    to a compare and a masked max and took 15% more time; the integer top clamp instead of
    a float min saves 2% more on avx2 (200,704 floats: 43.5 -> 37.5 us AVX-512, 57 -> 46
    us avx2, Zen 4). Fewer operations cost accuracy: a degree-5 polynomial (-10%) or
    k = round(2x / ln2) with sqrt(2) for odd k (degree 5, no gain) reach 1.6-2 ulp."""
    xc = max(x, _F(-87.6))                           # k >= -126: 2**(k-1) is 0 or normal
    mb = min(f32_bits(xc * _F(1.44269504) + _EXP_MAGIC), _EXP_TOP)
    kf = f32_from_bits(mb) - _EXP_MAGIC
    r = xc - kf * _F(0.693359375)                 # Cody-Waite ln 2, two parts
    r = r - kf * _F(-2.12194440e-4)
    p = _E6 * r + _E5
    p = p * r + _E4
    p = p * r + _E3
    p = p * r + _E2
    p = p * r + _E1
    p = p * r + _E0                               # 2 e**r
    return p * f32_from_bits(mb << 23)            # bits (k + 126) << 23: 2**(k-1)


@njit(boundscheck=False, fastmath=_FMU, error_model="numpy")
def _unary_rng(xa, ya, lo, hi, fn):
    # the common functions get their own float32 loop (vectorized: the transcendentals are
    # edgenet.activation's float32 polynomials); the rest go through the scalar switch.
    # The loops index slices from 0: over range(lo, hi) Numba cannot prove the index is
    # non-negative and every access keeps its wraparound select, which stops LLVM's
    # vectorizer (Neg 9x, Exp 2.5x slower measured).
    x = xa[lo:hi]
    y = ya[lo:hi]
    n = hi - lo
    if fn == 0:
        for i in range(n):
            y[i] = -x[i]
    elif fn == 1:
        for i in range(n):
            y[i] = abs(x[i])
    elif fn == 2:
        for i in range(n):
            y[i] = np.sqrt(x[i])
    elif fn == 3:
        i = 0
        if _VEXP:          # AVX-512: simd.vexp16 (vscalefps), 16 lanes at a time
            while i + 16 <= n:
                vst16(y, i, vexp16(vld16(x, i)))
                i += 16
        for j in range(n - i):
            y[i + j] = _exp_fast(x[i + j])
    elif fn == 4:
        for i in range(n):
            y[i] = log_f32(x[i])
    elif fn == 5:
        for i in range(n):
            y[i] = np.float32(1) / x[i]
    elif fn == 6:
        for i in range(n):
            y[i] = erf_f32(x[i])
    elif fn == 7:
        for i in range(n):
            y[i] = softplus_f32(x[i])
    elif fn == 8:
        for i in range(n):
            y[i] = mish_f32(x[i])
    elif fn == 9:
        for i in range(n):
            y[i] = silu_f32(x[i])
    # Gelu (10, 11) stays on the float64 path: 1 + erf (1 + tanh) cancels in float32 for
    # x < -3 (absolute error ~1e-6 there); an erfc-based float32 form would fix it.
    else:
        for i in range(n):
            y[i] = _unary(x[i], fn)


@pjit(boundscheck=False)
def _unary_par(x, y, fn):
    n = x.size
    for t in prange((n + CHUNK - 1) // CHUNK):
        _unary_rng(x, y, t * CHUNK, min(n, (t + 1) * CHUNK), fn)


@njit(inline="always")
def _binary(a, b, fn):
    if fn == 0:
        return a if (a >= b or a != a) else b          # NaN propagates like numpy
    if fn == 1:
        return a if (a <= b or a != a) else b
    return np.float32(math.pow(np.float64(a), np.float64(b))) \
        if not (a < 0 and b != math.floor(b)) else np.float32(np.nan)


@pjit(boundscheck=False)
def _binary6(a, b, y, fn):
    """6-D broadcast views (zero strides allowed) -> y (6-D, contiguous)."""
    d0, d1, d2, d3, d4, d5 = y.shape
    for q in prange(d0 * d1 * d2 * d3):
        i3 = q % d3
        r = q // d3
        i2 = r % d2
        r = r // d2
        i1 = r % d1
        i0 = r // d1
        for i4 in range(d4):
            for i5 in range(d5):
                y[i0, i1, i2, i3, i4, i5] = _binary(a[i0, i1, i2, i3, i4, i5],
                                                    b[i0, i1, i2, i3, i4, i5], fn)


@njit(boundscheck=False, error_model="numpy")
def _binrow(a, b, y, fa, fb, fn):
    """y = fn(a, b) over one contiguous row; fa / fb: that operand is a full row (else its
    one value is broadcast). Loops indexed from 0 over contiguous slices vectorize."""
    L = y.shape[0]
    if fn == 0:
        if fa and fb:
            for j in range(L):
                u, v = a[j], b[j]
                y[j] = u if (u >= v or u != u) else v
        elif fa:
            v = b[0]
            for j in range(L):
                u = a[j]
                y[j] = u if (u >= v or u != u) else v
        else:
            u = a[0]
            for j in range(L):
                v = b[j] if fb else b[0]
                y[j] = u if (u >= v or u != u) else v
    elif fn == 1:
        if fa and fb:
            for j in range(L):
                u, v = a[j], b[j]
                y[j] = u if (u <= v or u != u) else v
        elif fa:
            v = b[0]
            for j in range(L):
                u = a[j]
                y[j] = u if (u <= v or u != u) else v
        else:
            u = a[0]
            for j in range(L):
                v = b[j] if fb else b[0]
                y[j] = u if (u <= v or u != u) else v
    elif fa and not fb and b[0] == np.float32(2):        # Pow by a scalar 2, 0.5, 0.75
        for j in range(L):                                 # (LRN's default beta): vectorized
            y[j] = a[j] * a[j]                             # and within 1.5 ulp of pow
    elif fa and not fb and b[0] == np.float32(0.5):
        for j in range(L):
            y[j] = np.sqrt(a[j])
    elif fa and not fb and b[0] == np.float32(0.75):
        for j in range(L):
            u = a[j]
            r = np.sqrt(u)
            y[j] = r * np.sqrt(r) if u != -np.inf else np.inf     # pow(-inf, .75) = inf
    else:
        for j in range(L):
            y[j] = _binary(a[j] if fa else a[0], b[j] if fb else b[0], fn)


@pjit(boundscheck=False)
def _binary_rows(a, b, y, oa, ob, fa, fb, L, fn, rows_per):
    """Rows of L outputs: row r reads a from flat offset oa[r] (L values if fa, else one)
    and b likewise; the rows run in parallel in chunks of rows_per."""
    R = oa.shape[0]
    for t in prange((R + rows_per - 1) // rows_per):
        for r in range(t * rows_per, min(R, (t + 1) * rows_per)):
            i, k = oa[r], ob[r]
            _binrow(a[i:i + (L if fa else 1)], b[k:k + (L if fb else 1)],
                    y[r * L:(r + 1) * L], fa, fb, fn)


@njit(boundscheck=False)
def _binary_rows_seq(a, b, y, oa, ob, fa, fb, L, fn):
    """_binary_rows on the calling thread: a parallel region costs its launch even for one
    chunk (on a loaded 2-core box, a waking worker that finds no free core: ~1 ms)."""
    for r in range(oa.shape[0]):
        i, k = oa[r], ob[r]
        _binrow(a[i:i + (L if fa else 1)], b[k:k + (L if fb else 1)],
                y[r * L:(r + 1) * L], fa, fb, fn)


def _row_offsets(s, sy):
    """Flat offset of each output row's first operand value (operand shape s broadcast to
    sy, rows along the last axis)."""
    idx = np.arange(int(np.prod(s, dtype=np.int64)), dtype=np.int64).reshape(s)
    return np.ascontiguousarray(np.broadcast_to(idx, sy)[..., 0]).reshape(-1)


def _collapse(shapes):
    """Merge adjacent axes where every operand is full or broadcast alike (as
    elementwise.py does for Add/Sub/Mul/Div)."""
    out = shapes[-1]
    keep = []
    for i in range(len(out)):
        kinds = tuple(s[i] == out[i] for s in shapes)
        if keep and (keep[-1][1] == kinds or out[i] == 1):
            keep[-1][0].append(i)
        else:
            keep.append(([i], kinds))
    return [tuple(math.prod([s[i] for i in g]) for g, _ in keep)
            for s in shapes]


# ----------------------------------------------------------------------------- Reduce
@njit(inline="always")
def _finish(v, fn, inv_d):
    """A reduction's float64 accumulator -> its float32 result (Mean, L2, LogSum; others as
    they are)."""
    if fn == 0:
        v = v * inv_d
    elif fn == 7:
        v = math.sqrt(v)
    elif fn == 8:
        v = math.log(v) if v > 0 else (-np.inf if v == 0 else np.nan)
    return np.float32(v)


@njit(boundscheck=False)
def _reduce_rows(x, y, i0, i1, fn, inv_d):
    """x (A, D, B) -> y (A, B) for rows i0..i1; accumulates in float64 rows of y's size."""
    A, D, B = x.shape
    acc = np.empty(B, np.float64)
    accf = np.empty(B, np.float32)
    for i in range(i0, i1):
        if fn == 2 or fn == 3 or fn == 9:          # max, min, logsumexp: start from d = 0
            for b in range(B):                     # (float32: exact, and rows of B indexed
                accf[b] = x[i, 0, b]               # from 0 vectorize)
            for d in range(1, D):
                xr = x[i, d]
                # NaN sticks (a NaN v replaces u; numba's min/max keep a NaN u). This form
                # vectorizes on the avx2 tier too (v if (v < u or v != v) else u: 6x slower)
                if fn == 3:
                    for b in range(B):
                        v = xr[b]
                        accf[b] = min(accf[b], v) if v == v else v
                else:
                    for b in range(B):
                        v = xr[b]
                        accf[b] = max(accf[b], v) if v == v else v
            for b in range(B):
                acc[b] = np.float64(accf[b])
            if fn == 9:
                for b in range(B):
                    m = acc[b]
                    s = 0.0
                    if m == np.inf or m == -np.inf or m != m:
                        y[i, b] = np.float32(m)
                        continue
                    for d in range(D):
                        s += math.exp(np.float64(x[i, d, b]) - m)
                    y[i, b] = np.float32(math.log(s) + m)
                continue
            for b in range(B):
                y[i, b] = np.float32(acc[b])
            continue
        init = 1.0 if fn == 4 else 0.0
        for b in range(B):
            acc[b] = init
        for d in range(D):
            for b in range(B):
                v = np.float64(x[i, d, b])
                if fn == 4:
                    acc[b] *= v
                elif fn == 5 or fn == 7:
                    acc[b] += v * v
                elif fn == 6:
                    acc[b] += abs(v)
                else:
                    acc[b] += v
        for b in range(B):
            y[i, b] = _finish(acc[b], fn, inv_d)


_SUM_BLOCK = 512


@njit(boundscheck=False, fastmath={"reassoc", "contract"}, error_model="numpy")
def _reduce_rows_contig(x, y, i0, i1, fn, inv_d):
    """x (A, D) -> y (A,) for rows i0..i1 (the reduced axes are the innermost):
    mean / sum / sumsquare / max / min along contiguous rows. Sums: float32 (vector lanes,
    reassociated) within blocks of _SUM_BLOCK values, float64 across blocks: 1.8x faster
    than float64 throughout (1x80x384: 2.5 -> 1.4 us) and ~1e-7 relative on a block."""
    D = x.shape[1]
    for i in range(i0, i1):
        xr = x[i]
        if fn == 2 or fn == 3:
            m = xr[0]
            for d in range(1, D):
                v = xr[d]
                if fn == 2:
                    m = v if (v > m or v != v) else m
                else:
                    m = v if (v < m or v != v) else m
            y[i] = m
            continue
        s = 0.0
        for d0 in range(0, D, _SUM_BLOCK):
            blk = xr[d0:min(D, d0 + _SUM_BLOCK)]
            t = np.float32(0)
            if fn == 5:
                for d in range(blk.shape[0]):
                    t += blk[d] * blk[d]
            else:
                for d in range(blk.shape[0]):
                    t += blk[d]
            s += np.float64(t)
        y[i] = np.float32(s * inv_d if fn == 0 else s)


_OUTER_BLOCK = 64
_OUTER_SUMS = (0, 1, 5, 6, 7, 8)       # mean sum sumsquare l1 l2 logsum


@njit(boundscheck=False, fastmath={"contract"}, error_model="numpy")
def _reduce_rows_outer(x, y, i0, i1, fn, inv_d):
    """x (A, D, B) -> y (A, B) for rows i0..i1, the sums (_OUTER_SUMS) over an axis that is
    not the innermost: whole rows of B accumulate in float32 (vector lanes) over blocks of
    _OUTER_BLOCK rows of D, in float64 across blocks (each lane's float32 sum runs over at
    most 64 values: relative error <= 64 * 2**-24 of the sum of |terms|, ~4e-6; float64
    throughout converted every value and was 2x slower; bench/bench_math_ops.py)."""
    A, D, B = x.shape
    acc = np.empty(B, np.float64)
    t = np.empty(B, np.float32)
    for i in range(i0, i1):
        for b in range(B):
            acc[b] = 0.0
        for d0 in range(0, D, _OUTER_BLOCK):
            for b in range(B):
                t[b] = np.float32(0)
            for d in range(d0, min(D, d0 + _OUTER_BLOCK)):
                xr = x[i, d]
                if fn == 5 or fn == 7:
                    for b in range(B):
                        t[b] += xr[b] * xr[b]
                elif fn == 6:
                    for b in range(B):
                        t[b] += abs(xr[b])
                else:
                    for b in range(B):
                        t[b] += xr[b]
            for b in range(B):
                acc[b] += np.float64(t[b])
        yr = y[i]
        for b in range(B):
            yr[b] = _finish(acc[b], fn, inv_d)


@pjit(boundscheck=False)
def _reduce_outer_par(x, y, fn, inv_d, rows_per):
    A = x.shape[0]
    for t in prange((A + rows_per - 1) // rows_per):
        _reduce_rows_outer(x, y, t * rows_per, min(A, (t + 1) * rows_per), fn, inv_d)


@pjit(boundscheck=False)
def _reduce_contig_par(x, y, fn, inv_d, rows_per):
    A = x.shape[0]
    for t in prange((A + rows_per - 1) // rows_per):
        _reduce_rows_contig(x, y, t * rows_per, min(A, (t + 1) * rows_per), fn, inv_d)


@pjit(boundscheck=False)
def _reduce_par(x, y, fn, inv_d, rows_per):
    A = x.shape[0]
    for t in prange((A + rows_per - 1) // rows_per):
        _reduce_rows(x, y, t * rows_per, min(A, (t + 1) * rows_per), fn, inv_d)


# ----------------------------------------------------------------------------- LayerNorm
@njit(boundscheck=False, fastmath={"reassoc", "contract", "nsz"}, error_model="numpy")
def _layernorm_rows(x, s, b, y, i0, i1, eps):
    """x, y (R, D) rows i0..i1: one pass for the sum and the sum of squares (float64 local
    accumulators, reassociated so the loop vectorizes), then y = (x - m)·r·s + b."""
    D = x.shape[1]
    inv_d = 1.0 / D
    for i in range(i0, i1):
        xr = x[i]
        yr = y[i]
        s1 = 0.0
        s2 = 0.0
        for d in range(D):
            v = np.float64(xr[d])
            s1 += v
            s2 += v * v
        m = s1 * inv_d
        var = max(s2 * inv_d - m * m, 0.0)
        r = 1.0 / math.sqrt(var + eps)
        mf = np.float32(m)
        rf = np.float32(r)
        for d in range(D):
            yr[d] = (xr[d] - mf) * rf * s[d] + b[d]


@pjit(boundscheck=False)
def _layernorm_par(x, s, b, y, eps, rows_per):
    R = x.shape[0]
    for t in prange((R + rows_per - 1) // rows_per):
        _layernorm_rows(x, s, b, y, t * rows_per, min(R, (t + 1) * rows_per), eps)


class LayerNorm(RecordedOp):
    def prepare(self, node, consts, policy):
        at = node_attrs(node)
        c = prepare_consts(node, consts)
        return {"consts": c, "axis": int(at["axis"]), "eps": float(at["epsilon"])}

    def exec(self, node, state, inputs, outputs, calls=None):
        x = inputs[0]
        ax = state["axis"]
        s = operand(state["consts"], inputs, 1).reshape(-1)
        b = operand(state["consts"], inputs, 2).reshape(-1)
        D = math.prod(x.shape[ax:])
        R = x.size // D
        if s.size != D or b.size != D:       # validated by the shape rule; never index past
            raise ValueError(f"LayerNorm: scale/bias of {s.size}/{b.size} values for rows "
                             f"of {D}")
        x2 = x.reshape(R, D)
        y2 = outputs[0].reshape(R, D)
        emit_split(calls, x.size if R > 1 else 0,
                   (_layernorm_par, (x2, s, b, y2, state["eps"], max(1, R // 64))),
                   (_layernorm_rows, (x2, s, b, y2, 0, R, state["eps"])))


# work per element for the parallel threshold (PAR_MIN counts simple elementwise ops):
# Neg, Abs, Sqrt, Reciprocal are one vector instruction a lane, the polynomial functions
# ~15. Exp / Erf of 200,704 floats (40-75 us on one thread) stayed serial under the plain
# size; with the weight they run on 2 threads (Erf 73 -> 53 us with a free second core;
# on a saturated 2-core box 3-5% slower, where the executor's adaptive threading picks
# one thread). onnxruntime's Exp does not use its second thread.
_CHEAP_UNARY = (0, 1, 2, 5)
UNARY_PAR_WEIGHT = 4


class Unary(RecordedOp):
    def prepare(self, node, consts, policy):
        fn = UNARY_CODE[node_attrs(node)["fn"]]
        return fn, (1 if fn in _CHEAP_UNARY else UNARY_PAR_WEIGHT)

    def exec(self, node, state, inputs, outputs, calls=None):
        fn, weight = state
        x = inputs[0].reshape(-1)
        y = outputs[0].reshape(-1)
        emit_split(calls, x.size * weight, (_unary_par, (x, y, fn)),
                   (_unary_rng, (x, y, 0, x.size, fn)))


class BinaryMath(RecordedOp):
    def prepare(self, node, consts, policy):
        return {"consts": prepare_consts(node, consts),
                "fn": BINARY_CODE[node_attrs(node)["fn"]]}

    def exec(self, node, state, inputs, outputs, calls=None):
        a = operand(state["consts"], inputs, 0)
        b = operand(state["consts"], inputs, 1)
        y = outputs[0]
        key = (a.shape, b.shape, y.shape)
        how = state.get(key)
        if how is None:     # per shape: immutable once built; a racing rebuild is identical
            how = state[key] = self._how(a.shape, b.shape, y.shape)
        if how[0] == "rows":
            # rows along the (collapsed) last axis: contiguous inner loops, one offset per
            # row per operand (Max of 1x64x56x56 with a (64,1,1) constant: 4x faster than
            # the 6-D strided loop, which ran on one thread)
            _, oa, ob, fa, fb, L, rows_per = how
            args = (a.reshape(-1) if a.flags.c_contiguous else np.ascontiguousarray(a).reshape(-1),
                    b.reshape(-1) if b.flags.c_contiguous else np.ascontiguousarray(b).reshape(-1),
                    y.reshape(-1), oa, ob, fa, fb, L, state["fn"])
            emit_split(calls, y.size if rows_per else 0, (_binary_rows, args + (rows_per,)),
                       (_binary_rows_seq, args))
            return
        if how[0] == "numpy":
            if calls is not None:
                raise NoBind
            from ..reference.math_ops import binary_np
            np.copyto(y, binary_np(node_attrs(node)["fn"], a, b))
            return
        _, sa6, sb6, sy6 = how
        a6 = np.broadcast_to(np.ascontiguousarray(a).reshape(sa6), sy6)
        b6 = np.broadcast_to(np.ascontiguousarray(b).reshape(sb6), sy6)
        emit(calls, _binary6, a6, b6, y.reshape(sy6), state["fn"])

    @staticmethod
    def _how(sa, sb, sy):
        """The loop for these shapes: ("rows", row offsets of a and b, a full row?, b full
        row?, row length, rows per parallel chunk or 0 for one row), ("6d", shapes) or
        ("numpy",)."""
        r = len(sy)
        sa = (1,) * (r - len(sa)) + tuple(sa)
        sb = (1,) * (r - len(sb)) + tuple(sb)
        sa, sb, sy = _collapse([sa, sb, tuple(sy)])
        L = sy[-1]
        if L >= 16 or len(sy) == 1:
            oa, ob = _row_offsets(sa, sy), _row_offsets(sb, sy)
            return ("rows", oa, ob, sa[-1] == L, sb[-1] == L, L,
                    max(1, 16384 // L) if oa.shape[0] > 1 else 0)
        if len(sy) > 6:
            return ("numpy",)
        pad = (1,) * (6 - len(sy))
        return ("6d", pad + sa, pad + sb, pad + sy)


class Reduce(RecordedOp):
    def prepare(self, node, consts, policy):
        at = node_attrs(node)
        return REDUCE_CODE[at["fn"]], [int(a) for a in at["axes"]], {}

    @staticmethod
    def _how(shape, axes):
        """(transpose that makes the reduced axes contiguous or None, A, D, B)."""
        perm = None
        if axes != list(range(axes[0], axes[-1] + 1)):
            keep = [i for i in range(len(shape)) if i not in axes]
            perm = keep + axes
            shape = tuple(shape[i] for i in perm)
            axes = list(range(len(keep), len(shape)))
        a0, a1 = axes[0], axes[-1] + 1
        return perm, math.prod(shape[:a0]), math.prod(shape[a0:a1]), math.prod(shape[a1:])

    def exec(self, node, state, inputs, outputs, calls=None):
        fn, axes, memo = state
        x = inputs[0]
        how = memo.get(x.shape)
        if how is None:     # per input shape; a racing rebuild is identical
            how = memo[x.shape] = self._how(x.shape, axes)
        perm, A, D, B = how
        if perm is not None:
            if calls is not None:
                raise NoBind     # a transposed copy per call
            x = np.ascontiguousarray(x.transpose(perm))
        work = x.size if A > 1 else 0
        if B == 1 and fn in (0, 1, 2, 3, 5):     # mean sum max min sumsquare, contiguous
            x2, y1 = x.reshape(A, D), outputs[0].reshape(A)
            emit_split(calls, work, (_reduce_contig_par, (x2, y1, fn, 1.0 / D, max(1, A // 64))),
                       (_reduce_rows_contig, (x2, y1, 0, A, fn, 1.0 / D)))
            return
        x3 = x.reshape(A, D, B)
        y2 = outputs[0].reshape(A, B)
        if fn in _OUTER_SUMS:
            emit_split(calls, work, (_reduce_outer_par, (x3, y2, fn, 1.0 / D, max(1, A // 64))),
                       (_reduce_rows_outer, (x3, y2, 0, A, fn, 1.0 / D)))
            return
        emit_split(calls, work, (_reduce_par, (x3, y2, fn, 1.0 / D, max(1, A // 64))),
                   (_reduce_rows, (x3, y2, 0, A, fn, 1.0 / D)))


MATH_OPS = {"Unary": Unary(), "BinaryMath": BinaryMath(), "Reduce": Reduce(),
            "LayerNorm": LayerNorm()}
