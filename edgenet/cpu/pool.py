"""MaxPool, AveragePool, GlobalAveragePool, GlobalMaxPool (NCHW, float32)."""
from __future__ import annotations

import numpy as np
from numba import prange

from ._common import OpImpl, attrs
from .._jit import pjit


@pjit
def _pool(x, y, KH, KW, sh, sw, pt, pl, pb, pr, dh, dw, is_max, include_pad):
    N, C, H, W = x.shape
    OH = y.shape[2]
    OW = y.shape[3]
    for t in prange(N * C):
        n = t // C
        c = t % C
        for oy in range(OH):
            for ox in range(OW):
                if is_max:
                    m = -np.inf
                else:
                    m = 0.0
                cnt = 0
                cntpad = 0
                for ky in range(KH):
                    iy = oy * sh - pt + ky * dh
                    if iy >= H + pb:
                        break
                    for kx in range(KW):
                        ix = ox * sw - pl + kx * dw
                        if ix >= W + pr:
                            break
                        cntpad += 1
                        if iy < 0 or iy >= H or ix < 0 or ix >= W:
                            continue
                        v = x[n, c, iy, ix]
                        cnt += 1
                        if is_max:
                            if v > m or v != v:
                                m = v
                        else:
                            m += v
                if is_max:
                    y[n, c, oy, ox] = m
                else:
                    d = cntpad if include_pad else cnt
                    y[n, c, oy, ox] = m / d if d > 0 else 0.0


@pjit
def _gpool(x, y, is_max):
    N, C, H, W = x.shape
    for t in prange(N * C):
        n = t // C
        c = t % C
        if is_max:
            m = -np.inf
            for i in range(H):
                for j in range(W):
                    v = x[n, c, i, j]
                    if v > m or v != v:
                        m = v
            y[n, c, 0, 0] = m
        else:
            s = 0.0
            for i in range(H):
                for j in range(W):
                    s += x[n, c, i, j]
            y[n, c, 0, 0] = s / (H * W)


class _Pool(OpImpl):
    is_max = True

    def prepare(self, node, consts, policy):
        a = attrs(node)
        kh, kw = (int(v) for v in a["kernel"])
        sh, sw = (int(v) for v in a.get("strides", [1, 1]))
        pt, pl, pb, pr = (int(v) for v in a.get("pads", [0, 0, 0, 0]))
        dh, dw = (int(v) for v in (a.get("dilations") or [1, 1]))
        return (kh, kw, sh, sw, pt, pl, pb, pr, dh, dw, self.is_max,
                bool(a.get("count_include_pad", 0)))

    def run(self, node, state, inputs, outputs):
        _pool(inputs[0], outputs[0], *state)


class MaxPool(_Pool):
    is_max = True


class AveragePool(_Pool):
    is_max = False


class GlobalAveragePool(OpImpl):
    def prepare(self, node, consts, policy):
        return None

    def run(self, node, state, inputs, outputs):
        _gpool(inputs[0], outputs[0], False)


class GlobalMaxPool(GlobalAveragePool):
    def run(self, node, state, inputs, outputs):
        _gpool(inputs[0], outputs[0], True)
