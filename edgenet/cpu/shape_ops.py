"""Concat, Flatten, Reshape, Transpose, Pad, Slice, DepthToSpace, Resize, Softmax.

Pure data movement uses numpy views + ``np.copyto`` into the preallocated output (no
allocation); Pad, Resize and Softmax are Numba kernels.
"""
from __future__ import annotations

import math

import numpy as np
from numba import prange

from .. import ir
from .. import resize as rz
from ..ops import node_attrs
from ._common import OpImpl, RecordedOp, attrs, emit, operand, prepare_consts
from .._jit import njit, pjit


class _Move(OpImpl):
    def prepare(self, node, consts, policy):
        return {"consts": prepare_consts(node, consts), "a": attrs(node)}

    def x(self, state, inputs, i=0):
        return operand(state["consts"], inputs, i)


class _Moving(RecordedOp, _Move):
    """Data movement as NumPy copies between views of the plan's arrays (bound: the same
    copies, the views made once)."""


class Concat(_Moving):
    def exec(self, node, state, inputs, outputs, calls=None):
        ax = int(state["a"]["axis"])
        y = outputs[0]
        o = 0
        for i in range(len(inputs)):
            x = self.x(state, inputs, i)
            k = x.shape[ax]
            idx = (slice(None),) * ax + (slice(o, o + k),)
            emit(calls, np.copyto, y[idx], x)
            o += k


class Flatten(_Moving):
    def exec(self, node, state, inputs, outputs, calls=None):
        emit(calls, np.copyto, outputs[0].reshape(-1), self.x(state, inputs).reshape(-1))


class Reshape(Flatten):
    pass


class Transpose(_Moving):
    def exec(self, node, state, inputs, outputs, calls=None):
        emit(calls, np.copyto, outputs[0],
             self.x(state, inputs).transpose([int(p) for p in state["a"]["perm"]]))


class Slice(_Moving):
    """Normalized starts/ends (ir.slice_ranges: Python range semantics per axis)."""

    def prepare(self, node, consts, policy):
        st = super().prepare(node, consts, policy)
        st["idx"] = {}
        return st

    def exec(self, node, state, inputs, outputs, calls=None):
        x = self.x(state, inputs)
        idx = state["idx"].get(x.shape)
        if idx is None:
            a = state["a"]
            steps = a.get("steps") or [1] * len(a["axes"])
            idx = tuple(slice(s, None if e < 0 else e, p) for s, e, p in
                        ir.slice_ranges(x.shape, [int(v) for v in a["starts"]],
                                        [int(v) for v in a["ends"]],
                                        [int(v) for v in a["axes"]], [int(v) for v in steps],
                                        int(a.get("onnx_bounds", 0))))
            state["idx"][x.shape] = idx
        emit(calls, np.copyto, outputs[0], x[idx])


class DepthToSpace(_Moving):
    def exec(self, node, state, inputs, outputs, calls=None):
        b = int(state["a"]["blocksize"])
        mode = state["a"].get("mode", "DCR")
        x = self.x(state, inputs)
        N, C, H, W = x.shape
        c = C // (b * b)
        if mode == "DCR":
            v = x.reshape(N, b, b, c, H, W).transpose(0, 3, 4, 1, 5, 2)
        else:
            v = x.reshape(N, c, b, b, H, W).transpose(0, 1, 4, 2, 5, 3)
        emit(calls, np.copyto, outputs[0].reshape(N, c, H, b, W, b), v)


# ----------------------------------------------------------------------------- Pad
@njit(inline="always")
def _src(i, n, lo, mode):
    """Source index along one axis for output index i, or -1 (constant padding)."""
    s = i - lo
    if s >= 0 and s < n:
        return s
    if mode == 0:
        return -1
    if mode == 2:
        return 0 if s < 0 else n - 1
    if n == 1:
        return 0
    p = 2 * (n - 1)
    s = s % p
    if s < 0:
        s += p
    if s >= n:
        s = p - s
    return s


@pjit
def _pad6(x, y, lo, mode, value):
    """y[i] = x[map(i - lo)] per axis; mode 0 constant, 1 reflect, 2 edge. 6-D arrays."""
    d0, d1, d2, d3, d4, d5 = y.shape
    n0, n1, n2, n3, n4, n5 = x.shape
    for q in prange(d0 * d1 * d2 * d3 * d4):
        i4 = q % d4
        r = q // d4
        i3 = r % d3
        r //= d3
        i2 = r % d2
        r //= d2
        i1 = r % d1
        i0 = r // d1
        s0 = _src(i0, n0, lo[0], mode)
        s1 = _src(i1, n1, lo[1], mode)
        s2 = _src(i2, n2, lo[2], mode)
        s3 = _src(i3, n3, lo[3], mode)
        s4 = _src(i4, n4, lo[4], mode)
        ok = s0 >= 0 and s1 >= 0 and s2 >= 0 and s3 >= 0 and s4 >= 0
        for i5 in range(d5):
            s5 = _src(i5, n5, lo[5], mode)
            if ok and s5 >= 0:
                y[i0, i1, i2, i3, i4, i5] = x[s0, s1, s2, s3, s4, s5]
            else:
                y[i0, i1, i2, i3, i4, i5] = value


class Pad(_Moving):
    def exec(self, node, state, inputs, outputs, calls=None):
        a = state["a"]
        x = self.x(state, inputs)
        y = outputs[0]
        r = x.ndim
        pads = [int(p) for p in a["pads"]]
        mode = {"constant": 0, "reflect": 1, "edge": 2}[a.get("mode", "constant")]
        lo = pads[:r]
        if r > 6:
            from ..errors import ModelError
            raise ModelError(f"node '{node.get('name', '')}' (Pad): rank {r} > 6 is not "
                             "supported on device 'cpu'")
        if mode == 0 and min(pads) >= 0:   # constant, no cropping: a fill and a slice copy
            if max(pads):                    # (the 6-D kernel: ~12 ns/element, always prange)
                emit(calls, y.fill, np.float32(a.get("value", 0.0) or 0.0))
            emit(calls, np.copyto, y[tuple(slice(p, p + n) for p, n in zip(lo, x.shape))], x)
            return
        k = 6 - r
        x6 = x.reshape((1,) * k + x.shape)
        y6 = y.reshape((1,) * k + y.shape)
        lo6 = np.array([0] * k + lo, np.int64)
        emit(calls, _pad6, x6, y6, lo6, mode, np.float32(a.get("value", 0.0) or 0.0))


# ----------------------------------------------------------------------------- Softmax
@pjit(fastmath={"contract"})
def _softmax(x, y):
    """x, y (A, D, B): softmax over D."""
    A, D, B = x.shape
    for q in prange(A * B):
        i = q // B
        j = q % B
        m = -np.inf
        for d in range(D):
            v = x[i, d, j]
            if v > m:
                m = v
        s = np.float32(0)
        for d in range(D):
            e = np.exp(x[i, d, j] - m)
            y[i, d, j] = e
            s += e
        inv = np.float32(1) / s
        for d in range(D):
            y[i, d, j] *= inv


class Softmax(_Move):
    def run(self, node, state, inputs, outputs):
        x = self.x(state, inputs)
        ax = int(state["a"]["axis"])
        A = math.prod(x.shape[:ax])
        B = math.prod(x.shape[ax + 1:])
        D = x.shape[ax]
        _softmax(x.reshape(A, D, B), outputs[0].reshape(A, D, B))


# ----------------------------------------------------------------------------- Resize
@pjit
def _resize_gather(x, y, iy, ix, runs, fw):
    """Nearest: y[n, c, oy, ox] = x[n, c, iy[oy], ix[ox]]. ``runs`` (R + 1,) starts the
    runs of output rows that read the same input row: the first is gathered, the rest
    copy it (an integer upscale gathers 1 row in f). ``fw`` > 0: ix[ox] == ox // fw (an
    integer upscale along W), written as fw stores of each input value instead of a
    gather (2.5x faster at x2: the gather does not vectorize)."""
    P = x.shape[0] * x.shape[1]
    W = x.shape[3]
    OW = y.shape[3]
    xf = x.reshape(P, x.shape[2], W)
    yf = y.reshape(P, y.shape[2], OW)
    R = runs.shape[0] - 1
    n = P * R
    nch = min(n, 256)
    for t in prange(nch):
        for q in range(t * n // nch, (t + 1) * n // nch):
            p = q // R
            r = q % R
            o0 = runs[r]
            src = xf[p, iy[o0]]
            dst = yf[p, o0]
            if fw == 2:
                for j in range(W):
                    v = src[j]
                    dst[2 * j] = v
                    dst[2 * j + 1] = v
            elif fw > 0:
                for j in range(W):
                    v = src[j]
                    for k in range(fw):
                        dst[fw * j + k] = v
            else:
                for ox in range(OW):
                    dst[ox] = src[ix[ox]]
            for oy in range(o0 + 1, runs[r + 1]):
                d2 = yf[p, oy]
                for j in range(OW):
                    d2[j] = dst[j]


@pjit
def _resize(x, y, iy, wy, ey, ix, wx, ex, ev):
    """y[n, c, oy, ox] = sum_kx wx[ox, kx] * row[ix[ox, kx]] with
    row = sum_ky wy[oy, ky] * x[n, c, iy[oy, ky], :]: every Resize mode as per-axis tap
    tables (edgenet/resize.py); ey/ex mark outputs set to ``ev``. One row buffer per
    chunk of output rows holds the H-interpolated row."""
    P = x.shape[0] * x.shape[1]
    W = x.shape[3]
    OH, OW = y.shape[2], y.shape[3]
    KH, KW = iy.shape[1], ix.shape[1]
    xf = x.reshape(P, x.shape[2], W)
    yf = y.reshape(P, OH, OW)
    rows = P * OH
    nch = min(rows, 64)
    for t in prange(nch):
        tmp = np.empty(W, np.float32)
        for q in range(t * rows // nch, (t + 1) * rows // nch):
            oy = q % OH
            p = q // OH
            yr = yf[p, oy]
            if ey[oy]:
                yr[:] = ev
                continue
            xr = xf[p, iy[oy, 0]]
            w = wy[oy, 0]
            for j in range(W):
                tmp[j] = w * xr[j]
            for k in range(1, KH):
                xr = xf[p, iy[oy, k]]
                w = wy[oy, k]
                for j in range(W):
                    tmp[j] += w * xr[j]
            if KW == 2:                         # linear: the common case, unrolled
                for ox in range(OW):
                    yr[ox] = wx[ox, 0] * tmp[ix[ox, 0]] + wx[ox, 1] * tmp[ix[ox, 1]]
            else:
                for ox in range(OW):
                    acc = wx[ox, 0] * tmp[ix[ox, 0]]
                    for k in range(1, KW):
                        acc += wx[ox, k] * tmp[ix[ox, k]]
                    yr[ox] = acc
            for ox in range(OW):
                if ex[ox]:
                    yr[ox] = ev


class Resize(_Move):
    def run(self, node, state, inputs, outputs):
        x = self.x(state, inputs)
        y = outputs[0]
        key = (x.shape[2], x.shape[3], y.shape[2], y.shape[3])
        tabs = state.get(key)
        if tabs is None:
            tabs = rz.tables(node_attrs(node), *key)
            if all(t[0].shape[1] == 1 and np.all(t[1] == 1) and not t[2].any()
                   for t in (tabs[:3], tabs[3:])):       # one unit tap per axis: nearest
                iy = tabs[0][:, 0].copy()
                runs = np.flatnonzero(np.diff(iy, prepend=-1)).astype(np.int64)
                ix = tabs[3][:, 0].copy()
                W, OW = key[1], key[3]
                fw = OW // W if OW % W == 0 else 0
                if fw < 2 or not np.array_equal(ix, np.arange(OW) // fw):
                    fw = 0
                tabs = (iy, ix, np.append(runs, len(iy)), fw)
            state[key] = tabs  # immutable once built; a racing rebuild is identical
        if len(tabs) == 4:
            _resize_gather(x, y, *tabs)
        else:
            _resize(x, y, *tabs, np.float32(node_attrs(node)["extrapolation_value"]))
