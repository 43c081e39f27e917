"""MaxPool, AveragePool, GlobalAveragePool, GlobalMaxPool: one thread per output element
(global pools: one thread per (n, c) plane). Semantics as edgenet.reference: padding never
wins a max; count_include_pad=1 counts the taps inside the padded extent
[-pad_begin, size + pad_end) (not the positions ceil_mode adds past it), 0 only in-image
taps. Sums accumulate in float32."""
from __future__ import annotations

import math

from numba import cuda, float32

from . import config
from ._common import OpImpl, attrs, blocks, prod


@cuda.jit
def _pool_k(x, y, total, H, W, OH, OW, KH, KW, sh, sw, pt, pl, pb, pr, dh, dw, is_max, cip):
    i = cuda.grid(1)
    if i >= total:
        return
    ox = i % OW
    t = i // OW
    oy = t % OH
    plane = t // OH
    base = plane * H * W
    y0 = oy * sh - pt
    x0 = ox * sw - pl
    if is_max:
        m = float32(-math.inf)
        for ky in range(KH):
            iy = y0 + ky * dh
            if iy < 0 or iy >= H:
                continue
            for kx in range(KW):
                ix = x0 + kx * dw
                if ix < 0 or ix >= W:
                    continue
                v = x[base + iy * W + ix]
                if v > m:
                    m = v
        y[i] = m
    else:
        s = float32(0.0)
        cnt_y = 0
        cnt_x = 0
        for ky in range(KH):
            iy = y0 + ky * dh
            if cip:
                if iy >= -pt and iy < H + pb:
                    cnt_y += 1
            elif iy >= 0 and iy < H:
                cnt_y += 1
        for kx in range(KW):
            ix = x0 + kx * dw
            if cip:
                if ix >= -pl and ix < W + pr:
                    cnt_x += 1
            elif ix >= 0 and ix < W:
                cnt_x += 1
        for ky in range(KH):
            iy = y0 + ky * dh
            if iy < 0 or iy >= H:
                continue
            for kx in range(KW):
                ix = x0 + kx * dw
                if ix < 0 or ix >= W:
                    continue
                s += x[base + iy * W + ix]
        y[i] = s / float32(cnt_y * cnt_x)


@cuda.jit
def _global_k(x, y, planes, HW, is_max):
    i = cuda.grid(1)
    if i >= planes:
        return
    base = i * HW
    if is_max:
        m = x[base]
        for k in range(1, HW):
            v = x[base + k]
            if v > m:
                m = v
        y[i] = m
    else:
        s = float32(0.0)
        for k in range(HW):
            s += x[base + k]
        y[i] = s / float32(HW)


class _Pool(OpImpl):
    MAX = True

    def launch(self, node, state, ins, in_shapes, out, out_shape, stream):
        a = attrs(node)
        kh, kw = a["kernel"]
        sh, sw = a["strides"]
        dh, dw = a.get("dilations") or (1, 1)
        pt, pl, pb, pr = a["pads"]
        cip = int(a.get("count_include_pad", 0))
        _, _, H, W = in_shapes[0]
        OH, OW = out_shape[2], out_shape[3]
        total = prod(out_shape)
        _pool_k[blocks(total), config.THREADS, stream](
            ins[0], out, total, H, W, OH, OW, kh, kw, sh, sw, pt, pl, pb, pr, dh, dw,
            self.MAX, bool(cip))


class MaxPool(_Pool):
    MAX = True


class AveragePool(_Pool):
    MAX = False


class _GlobalPool(OpImpl):
    MAX = True

    def launch(self, node, state, ins, in_shapes, out, out_shape, stream):
        n, c, h, w = in_shapes[0]
        planes = n * c
        _global_k[blocks(planes), config.THREADS, stream](ins[0], out, planes, h * w, self.MAX)


class GlobalAveragePool(_GlobalPool):
    MAX = False


class GlobalMaxPool(_GlobalPool):
    MAX = True
