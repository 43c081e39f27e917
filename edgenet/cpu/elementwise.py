"""Act, PRelu, Affine, Add/Sub/Mul/Div (numpy broadcasting), all with the fused epilogue."""
from __future__ import annotations

import math

import numpy as np
from numba import prange

from ..activation import ActCode
from ._common import (FM, NoBind, RecordedOp, act, act_inplace, act_of, attrs,
                      emit, emit_split, operand, prepare_consts)
from .._jit import njit, pjit
from . import simd

CHUNK = 16384  # elements per prange iteration for flat kernels
SUB = 4096     # sub-block: compute, then the activation pass while it is in L1

# Flat kernels come in pairs: a serial body over [lo, hi) (called directly when the work is
# small or only one thread is allowed) and a parallel wrapper (prange over CHUNKs). Loops are
# specialized by op / activation code so LLVM vectorizes them.


@njit(fastmath=FM, boundscheck=False)
def _act_rng(xa, ya, lo, hi, code, alpha, beta):
    for s0 in range(lo, hi, SUB):
        s1 = min(hi, s0 + SUB)
        x = xa[s0:s1]       # slices indexed from 0 (see _bin_rng)
        y = ya[s0:s1]
        if code == ActCode.RELU:
            for i in range(s1 - s0):
                v = x[i]
                y[i] = np.float32(0) if v < 0 else v
        else:
            for i in range(s1 - s0):
                y[i] = x[i]
            act_inplace(y, 0, s1 - s0, code, alpha, beta)


@pjit(fastmath=FM, boundscheck=False)
def _act_par(x, y, code, alpha, beta):
    n = x.size
    for t in prange((n + CHUNK - 1) // CHUNK):
        _act_rng(x, y, t * CHUNK, min(n, (t + 1) * CHUNK), code, alpha, beta)


@njit(fastmath=FM, boundscheck=False)
def _chan_rng(x, s, t, y, q0, q1, mode, code, alpha, beta):
    """x,y (N*C, L) rows q0..q1; channel c = q % C. mode 0: x*s[c]+t[c] (Affine);
    mode 1: PRelu with slope s[c]. Rows addressed in the flat arrays (a row view per row
    cost its reference counting: MobileNetV3-small's 576 x 7x7 squeeze-excitation Mul
    took 14 us, 25 ns a row), 16-lane vectors with a scalar tail (LLVM's own loop took
    64 floats an iteration: rows of 49 ran scalar)."""
    C = s.shape[0]
    L = x.shape[1]
    xf = x.reshape(-1)
    yf = y.reshape(-1)
    for q in range(q0, q1):
        c = q % C
        sc = s[c]
        tc = t[c]
        b = q * L
        if mode == 0:
            sv = simd.vsplat16(sc)
            tv = simd.vsplat16(tc)
            i = 0
            while i + 16 <= L:
                simd.vst16(yf, b + i, simd.vfma16(simd.vld16(xf, b + i), sv, tv))
                i += 16
            for j in range(i, L):
                yf[b + j] = xf[b + j] * sc + tc
        else:
            for i in range(L):
                v = xf[b + i]
                yf[b + i] = v if v >= 0 else sc * v
    if mode == 0 and code != ActCode.NONE:
        act_inplace(yf, q0 * L, q1 * L, code, alpha, beta)


@pjit(fastmath=FM, boundscheck=False)
def _chan_par(x, s, t, y, mode, code, alpha, beta):
    Q = x.shape[0]
    L = max(x.shape[1], 1)
    R = max(1, CHUNK // L)      # rows per prange step
    for u in prange((Q + R - 1) // R):
        _chan_rng(x, s, t, y, u * R, min(Q, (u + 1) * R), mode, code, alpha, beta)


@njit(inline="always")
def _binop(a, b, op):
    if op == 0:
        return a + b
    if op == 1:
        return a - b
    if op == 2:
        return a * b
    return a / b


@njit(fastmath=FM, boundscheck=False)
def _bin_rng(aa, ba, ya, lo, hi, op, code, alpha, beta):
    for s0 in range(lo, hi, SUB):
        s1 = min(hi, s0 + SUB)
        # slices indexed from 0: over range(s0, s1) Numba cannot prove the index is
        # non-negative, every access keeps its wraparound select and LLVM does not
        # vectorize (Add of 12544 floats: 21 us, NumPy 2.3 us)
        a = aa[s0:s1]
        b = ba[s0:s1]
        y = ya[s0:s1]
        if op == 0:
            for i in range(s1 - s0):
                y[i] = a[i] + b[i]
        elif op == 1:
            for i in range(s1 - s0):
                y[i] = a[i] - b[i]
        elif op == 2:
            for i in range(s1 - s0):
                y[i] = a[i] * b[i]
        else:
            for i in range(s1 - s0):
                y[i] = a[i] / b[i]
        act_inplace(y, 0, s1 - s0, code, alpha, beta)


@pjit(fastmath=FM, boundscheck=False)
def _bin_par(a, b, y, op, code, alpha, beta):
    n = y.size
    for t in prange((n + CHUNK - 1) // CHUNK):
        _bin_rng(a, b, y, t * CHUNK, min(n, (t + 1) * CHUNK), op, code, alpha, beta)


@njit(fastmath=FM, boundscheck=False)
def _bins_rng(aa, s, ya, lo, hi, op, swap, code, alpha, beta):
    for s0 in range(lo, hi, SUB):
        s1 = min(hi, s0 + SUB)
        a = aa[s0:s1]       # slices indexed from 0 (see _bin_rng)
        y = ya[s0:s1]
        if op == 0:
            for i in range(s1 - s0):
                y[i] = a[i] + s
        elif op == 2:
            for i in range(s1 - s0):
                y[i] = a[i] * s
        elif swap:
            for i in range(s1 - s0):
                y[i] = _binop(s, a[i], op)
        else:
            for i in range(s1 - s0):
                y[i] = _binop(a[i], s, op)
        act_inplace(y, 0, s1 - s0, code, alpha, beta)


@pjit(fastmath=FM, boundscheck=False)
def _bins_par(a, s, y, op, swap, code, alpha, beta):
    n = y.size
    for t in prange((n + CHUNK - 1) // CHUNK):
        _bins_rng(a, s, y, t * CHUNK, min(n, (t + 1) * CHUNK), op, swap, code, alpha, beta)


def _act_flat(x, y, code, alpha, beta, calls=None):
    emit_split(calls, x.size, (_act_par, (x, y, code, alpha, beta)),
               (_act_rng, (x, y, 0, x.size, code, alpha, beta)))


def _bin_flat(a, b, y, op, code, alpha, beta, calls=None):
    emit_split(calls, y.size, (_bin_par, (a, b, y, op, code, alpha, beta)),
               (_bin_rng, (a, b, y, 0, y.size, op, code, alpha, beta)))


def _bin_scalar(a, s, y, op, swap, code, alpha, beta, calls=None):
    emit_split(calls, y.size, (_bins_par, (a, s, y, op, swap, code, alpha, beta)),
               (_bins_rng, (a, s, y, 0, y.size, op, swap, code, alpha, beta)))


@pjit(fastmath=FM)
def _bin6(a, b, y, op, code, alpha, beta):
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
                y[i0, i1, i2, i3, i4, i5] = act(_binop(a[i0, i1, i2, i3, i4, i5],
                                                       b[i0, i1, i2, i3, i4, i5], op),
                                                code, alpha, beta)


def _collapse(shapes):
    """Merge adjacent axes where every operand is either full or broadcast consistently."""
    out = shapes[-1]
    r = len(out)
    keep = []
    for i in range(r):
        kinds = tuple(s[i] == out[i] for s in shapes)
        if keep and keep[-1][1] == kinds or (keep and out[i] == 1):
            keep[-1][0].append(i)
        else:
            keep.append(([i], kinds))
    res = []
    for s in shapes:
        res.append(tuple(math.prod(s[i] for i in g) for g, _ in keep))
    return res


class Act(RecordedOp):
    def prepare(self, node, consts, policy):
        return act_of(node)

    def exec(self, node, state, inputs, outputs, calls=None):
        _act_flat(inputs[0].reshape(-1), outputs[0].reshape(-1), *state, calls)


def _run_chan(x, s, t, y, mode, code, alpha, beta, calls=None):
    """Per-channel rows (axis 1 of x): mode 0 y = x * s[c] + t[c], mode 1 PRelu."""
    N = x.shape[0]
    C = x.shape[1] if x.ndim > 1 else 1
    L = x.size // max(N * C, 1)
    x2 = x.reshape(N * C, L)
    y2 = y.reshape(N * C, L)
    emit_split(calls, x.size, (_chan_par, (x2, s, t, y2, mode, code, alpha, beta)),
               (_chan_rng, (x2, s, t, y2, 0, N * C, mode, code, alpha, beta)))


def _chan_vector(v, y):
    """v's C values when v broadcasts along y's channel axis (1) only, e.g. (1, C, 1, 1)
    against (N, C, H, W): squeeze-excitation's scale. Else None."""
    if y.ndim < 3 or v.ndim > y.ndim:
        return None
    C = y.shape[1]
    if C < 2 or v.size != C:
        return None
    sv = (1,) * (y.ndim - v.ndim) + tuple(v.shape)
    if sv[1] != C:
        return None
    return np.ascontiguousarray(v.reshape(C), dtype=np.float32)


def _fixed(inputs, i, calls, a):
    """``a``, derived from input i's values (a copy, a scalar): only while running, or
    recording with input i a constant (a runtime tensor's values change per call)."""
    if calls is not None and i < len(inputs) and inputs[i] is not None:
        raise NoBind
    return a


class PRelu(RecordedOp):
    def prepare(self, node, consts, policy):
        return {"consts": prepare_consts(node, consts)}

    def exec(self, node, state, inputs, outputs, calls=None):
        x = inputs[0]
        s = operand(state["consts"], inputs, 1).reshape(-1)
        C = x.shape[1] if x.ndim > 1 else 1
        if s.size != C:
            s = _fixed(inputs, 1, calls,
                       np.ascontiguousarray(np.broadcast_to(s, (C,)), dtype=np.float32))
        _run_chan(x, s, s, outputs[0], 1, 0, np.float32(0), np.float32(0), calls)


class Affine(RecordedOp):
    def prepare(self, node, consts, policy):
        return {"consts": prepare_consts(node, consts), "act": act_of(node)}

    def exec(self, node, state, inputs, outputs, calls=None):
        s = np.ascontiguousarray(operand(state["consts"], inputs, 1).reshape(-1))
        t = np.ascontiguousarray(operand(state["consts"], inputs, 2).reshape(-1))
        _run_chan(inputs[0], s, t, outputs[0], 0, *state["act"], calls)


class _Binary(RecordedOp):
    op = 0

    def prepare(self, node, consts, policy):
        return {"consts": prepare_consts(node, consts), "act": act_of(node)}

    def exec(self, node, state, inputs, outputs, calls=None):
        a = operand(state["consts"], inputs, 0)
        b = operand(state["consts"], inputs, 1)
        y = outputs[0]
        code, alpha, beta = state["act"]
        if a.size == y.size and b.size == y.size:
            # the same elements in the same order (shapes equal but for leading/size-1
            # axes: a constant without the batch axis, say)
            _bin_flat(a.reshape(-1), b.reshape(-1), y.reshape(-1), self.op, code, alpha, beta,
                      calls)
            return
        if b.size == 1 and a.shape == y.shape:
            _bin_scalar(a.reshape(-1), _fixed(inputs, 1, calls, np.float32(b.reshape(-1)[0])),
                        y.reshape(-1), self.op, False, code, alpha, beta, calls)
            return
        if a.size == 1 and b.shape == y.shape:
            _bin_scalar(b.reshape(-1), _fixed(inputs, 0, calls, np.float32(a.reshape(-1)[0])),
                        y.reshape(-1), self.op, True, code, alpha, beta, calls)
            return
        if self.op != 3 and a.shape == y.shape or self.op in (0, 2) and b.shape == y.shape:
            # a per-channel operand (squeeze-excitation's x * scale): the channel-row loop,
            # vectorized, instead of the 6-D broadcast one (4 ns per element, measured)
            x, v = (a, b) if a.shape == y.shape else (b, a)
            c = _chan_vector(v, y)
            if c is not None:
                k = state.get("chan_const")     # the constant row (0 for Mul, 1 else),
                if k is None or k.size != c.size:  # kept: no allocation per call
                    k = state["chan_const"] = np.full(c.size, self.op != 2, np.float32)
                if self.op == 2:
                    s, t = c, k
                else:
                    s, t = k, (c if self.op == 0 else _fixed(inputs, int(x is a), calls, -c))
                _run_chan(x, s, t, y, 0, code, alpha, beta, calls)
                return
        key = (a.shape, b.shape, y.shape)
        cached = state.get("bcast")      # (key, geometry): one tuple, read and set whole
        if cached is not None and cached[0] == key:
            shp = cached[1]
        else:                # the broadcast geometry, once per shape (~25 us of NumPy calls)
            r = y.ndim
            sa = (1,) * (r - a.ndim) + tuple(a.shape)
            sb = (1,) * (r - b.ndim) + tuple(b.shape)
            sa, sb, sy = _collapse([sa, sb, tuple(y.shape)])
            pad = (1,) * (6 - len(sy))
            shp = (pad + sa, pad + sb, pad + sy) if len(sy) <= 6 else None
            state["bcast"] = (key, shp)
        if shp is None:
            if calls is not None:
                raise NoBind
            np.copyto(y, act_np(a, b, self.op, code, alpha, beta))
            return
        sa6, sb6, sy6 = shp
        a6 = np.broadcast_to(np.ascontiguousarray(a).reshape(sa6), sy6)
        b6 = np.broadcast_to(np.ascontiguousarray(b).reshape(sb6), sy6)
        emit(calls, _bin6, a6, b6, y.reshape(sy6), self.op, code, alpha, beta)


def act_np(a, b, op, code, alpha, beta):
    from ..ir import act_numpy
    r = (a + b, a - b, a * b, a / b)[op]
    return act_numpy(r, code, alpha, beta)


class Add(_Binary):
    op = 0


class Sub(_Binary):
    op = 1


class Mul(_Binary):
    op = 2


class Div(_Binary):
    op = 3
