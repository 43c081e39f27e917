"""Concat, Flatten, Reshape, Transpose, Pad, Slice, DepthToSpace, Resize, Softmax.

Transpose, Slice and DepthToSpace are one *strided gather* kernel: the output index is
decomposed over the output shape and each coordinate advances the input offset by a
per-axis stride (a permuted stride, a stride times the step, or the strides of the 6-D
reshape/transpose that DepthToSpace is). Per-shape index tables (strides, Resize source
indices and weights) are computed on the host once per input shape and cached on the
device in the node state.
"""
from __future__ import annotations

import math

import numpy as np
from numba import cuda, float32

from .. import ir
from .. import resize as rz
from ..ops import node_attrs
from . import config
from ._common import OpImpl, attrs, blocks, device_copy, prod, to_device


def _strides(shape):
    st = [1] * len(shape)
    acc = 1
    for ax in range(len(shape) - 1, -1, -1):
        st[ax] = acc
        acc *= int(shape[ax])
    return st


@cuda.jit
def _gather_k(x, y, n, meta, R, base):
    """meta = [out shape (R), input stride per output axis (R)]."""
    i = cuda.grid(1)
    if i >= n:
        return
    t = i
    p = base
    for ax in range(R - 1, -1, -1):
        d = meta[ax]
        c = t % d
        t = t // d
        p += c * meta[R + ax]
    y[i] = x[p]


@cuda.jit
def _concat_k(x, y, n, inner_in, inner_out, off):
    i = cuda.grid(1)
    if i < n:
        o = i // inner_in
        r = i - o * inner_in
        y[o * inner_out + off + r] = x[i]


@cuda.jit
def _pad_k(x, y, n, meta, R, mode, value):
    """meta = [out shape (R), in shape (R), begins (R), in strides (R)];
    mode 0 constant, 1 reflect, 2 edge."""
    i = cuda.grid(1)
    if i >= n:
        return
    t = i
    p = 0
    inside = True
    for ax in range(R - 1, -1, -1):
        d = meta[ax]
        c = t % d
        t = t // d
        s = meta[R + ax]
        j = c - meta[2 * R + ax]
        if j < 0 or j >= s:
            if mode == 0:
                inside = False
            elif mode == 1:
                if s == 1:
                    j = 0
                else:
                    period = 2 * (s - 1)
                    j = abs(j) % period
                    if j >= s:
                        j = period - j
            else:
                j = 0 if j < 0 else s - 1
        p += j * meta[3 * R + ax]
    y[i] = x[p] if inside else value


@cuda.jit
def _softmax_k(x, y, rows, L, inner):
    r = cuda.grid(1)
    if r >= rows:
        return
    o = r // inner
    k = r - o * inner
    base = o * L * inner + k
    m = x[base]
    for j in range(1, L):
        v = x[base + j * inner]
        if v > m:
            m = v
    s = float32(0.0)
    for j in range(L):
        e = float32(math.exp(x[base + j * inner] - m))
        y[base + j * inner] = e
        s += e
    inv = float32(1.0) / s
    for j in range(L):
        y[base + j * inner] *= inv


@cuda.jit
def _resize_k(x, y, n, H, W, OH, OW, KH, KW, iy, wy, ey, ix, wx, ex, ev):
    """The CPU kernel's sum, one output per thread: sum over kx of wx * (sum over ky of
    wy * x[iy, ix]) (edgenet/resize.py tap tables, flattened (O, K) row-major)."""
    i = cuda.grid(1)
    if i >= n:
        return
    ox = i % OW
    t = i // OW
    oy = t % OH
    plane = t // OH
    if ey[oy] != 0 or ex[ox] != 0:
        y[i] = ev
        return
    base = plane * H
    acc = float32(0.0)
    for kx in range(KW):
        c = ix[ox * KW + kx]
        col = float32(0.0)
        for ky in range(KH):
            col += wy[oy * KH + ky] * x[(base + iy[oy * KH + ky]) * W + c]
        acc += wx[ox * KW + kx] * col
    y[i] = acc


class _Move(OpImpl):
    def prepare(self, node, consts, policy):
        st = super().prepare(node, consts, policy)
        st["tables"] = {}
        return st

    def cached(self, state, key, build):
        t = state["tables"].get(key)
        if t is None:
            t = state["tables"][key] = build()
        return t


class Concat(_Move):
    def launch(self, node, state, ins, in_shapes, out, out_shape, stream):
        ins, shapes = self.operands(state, ins, in_shapes)
        ax = int(attrs(node)["axis"])
        rest = prod(out_shape[ax + 1:])
        inner_out = out_shape[ax] * rest
        off = 0
        for x, s in zip(ins, shapes):
            n = prod(s)
            inner_in = s[ax] * rest
            if n:
                _concat_k[blocks(n), config.THREADS, stream](x, out, n, inner_in, inner_out,
                                                             off * rest)
            off += s[ax]


class Flatten(_Move):
    """Same bytes, new shape: a device-to-device copy (the executor may alias instead)."""

    def launch(self, node, state, ins, in_shapes, out, out_shape, stream):
        (x,), _ = self.operands(state, ins, in_shapes)
        device_copy(x, out, prod(out_shape), stream)

    def run(self, node, state, inputs, outputs):
        x = inputs[0]
        if x is None:  # a constant input: go through the device copy
            return super().run(node, state, inputs, outputs)
        np.copyto(outputs[0].reshape(-1), np.asarray(x, np.float32).reshape(-1))


class Reshape(Flatten):
    pass


class _Gather(_Move):
    def geometry(self, node, in_shape, out_shape):
        """(output-like dims, input stride per dim, base offset)."""
        raise NotImplementedError

    def launch(self, node, state, ins, in_shapes, out, out_shape, stream):
        (x,), (s,) = self.operands(state, ins, in_shapes)

        def build():
            dims, strides, base = self.geometry(node, tuple(s), tuple(out_shape))
            return to_device(np.array(list(dims) + list(strides), np.int64), np.int64), \
                len(dims), int(base)

        meta, R, base = self.cached(state, tuple(s), build)
        n = prod(out_shape)
        _gather_k[blocks(n), config.THREADS, stream](x, out, n, meta, R, base)


class Transpose(_Gather):
    def geometry(self, node, s, out_shape):
        perm = [int(p) for p in attrs(node)["perm"]]
        st = _strides(s)
        return out_shape, [st[p] for p in perm], 0


class Slice(_Gather):
    def geometry(self, node, s, out_shape):
        a = attrs(node)
        st = _strides(s)
        rng = ir.slice_ranges(s, a["starts"], a["ends"], a["axes"], a["steps"],
                              a.get("onnx_bounds", 0))
        base = sum(start * st[ax] for ax, (start, _, _) in enumerate(rng))
        return out_shape, [st[ax] * step for ax, (_, _, step) in enumerate(rng)], base


class DepthToSpace(_Gather):
    def geometry(self, node, s, out_shape):
        a = attrs(node)
        b = int(a["blocksize"])
        n, c, h, w = s
        cc = c // (b * b)
        if a["mode"] == "DCR":   # x.reshape(n, b, b, cc, h, w).transpose(0, 3, 4, 1, 5, 2)
            src = (n, b, b, cc, h, w)
            perm = (0, 3, 4, 1, 5, 2)
        else:                    # x.reshape(n, cc, b, b, h, w).transpose(0, 1, 4, 2, 5, 3)
            src = (n, cc, b, b, h, w)
            perm = (0, 1, 4, 2, 5, 3)
        st = _strides(src)
        return [src[p] for p in perm], [st[p] for p in perm], 0


class Pad(_Move):
    MODES = {"constant": 0, "reflect": 1, "edge": 2}

    def launch(self, node, state, ins, in_shapes, out, out_shape, stream):
        (x,), (s,) = self.operands(state, ins, in_shapes)
        a = attrs(node)
        R = len(s)

        def build():
            pads = [int(p) for p in a["pads"]]
            m = list(out_shape) + list(s) + pads[:R] + _strides(s)
            return to_device(np.array(m, np.int64), np.int64)

        meta = self.cached(state, tuple(s), build)
        v = a.get("value")
        n = prod(out_shape)
        _pad_k[blocks(n), config.THREADS, stream](x, out, n, meta, R, self.MODES[a["mode"]],
                                                  np.float32(0.0 if v is None else v))


class Softmax(_Move):
    def launch(self, node, state, ins, in_shapes, out, out_shape, stream):
        (x,), (s,) = self.operands(state, ins, in_shapes)
        ax = int(attrs(node)["axis"])
        L = s[ax]
        inner = prod(s[ax + 1:])
        rows = prod(s) // L
        _softmax_k[blocks(rows), config.THREADS, stream](x, out, rows, L, inner)


# ---- Resize: the per-axis tap tables of edgenet/resize.py (as the CPU and reference)
class Resize(_Move):
    def launch(self, node, state, ins, in_shapes, out, out_shape, stream):
        (x,), (s,) = self.operands(state, ins, in_shapes)
        a = node_attrs(node)
        _, _, H, W = s
        OH, OW = out_shape[2], out_shape[3]

        def build():
            iy, wy, ey, ix, wx, ex = rz.tables(a, H, W, OH, OW)
            return (iy.shape[1], ix.shape[1], to_device(iy, np.int64),
                    to_device(wy, np.float32), to_device(ey, np.uint8),
                    to_device(ix, np.int64), to_device(wx, np.float32),
                    to_device(ex, np.uint8))

        KH, KW, *tab = self.cached(state, tuple(s), build)
        n = prod(out_shape)
        _resize_k[blocks(n), config.THREADS, stream](
            x, out, n, H, W, OH, OW, KH, KW, *tab, np.float32(a["extrapolation_value"]))
