"""Vector epilogue steps shared by the int8 conv kernels (qconv's pixel-vector kernels and
the AMX conv, cpu/amx.py): 16 float32 lanes of one output channel's pixels."""
from __future__ import annotations

import numpy as np

from .._jit import njit
from . import simd


@njit(fastmath=True, boundscheck=False, error_model="numpy", inline="always")
def vact16(f, code, lo, hi):
    """Relu / Clip / HardSwish on a vector (other codes: the caller's scalar pass)."""
    if code == 1:
        f = simd.vrelu16(f)
    elif code == 7:
        f = simd.vclip16(f, lo, hi)
    elif code == 9:     # HardSwish: f * clip(f / 6 + 1/2, 0, 1), branch-free
        z0 = simd.vsplat16(np.float32(0))
        u = simd.vfma16(f, simd.vsplat16(np.float32(1 / 6)), simd.vsplat16(np.float32(0.5)))
        f = simd.vfma16(f, simd.vclip16(u, z0, simd.vsplat16(np.float32(1))), z0)
    return f


@njit(fastmath=True, boundscheck=False, error_model="numpy", inline="always")
def pw_vecm(a, s, c, yf, rf, yb, has_r, code, lo, hi, m):
    """y[yb:yb + m] = float(a) * s + c (+ the residual), activated (a vector activation),
    for the first m (0..16) pixels: masked residual load and store (m = 16, a constant:
    LLVM folds them into plain ones)."""
    f = simd.vfma16(simd.vitof16(a), s, c)
    if has_r:
        f = simd.vadd16(f, simd.vldm16(rf, yb, m))
    simd.vstm16(yf, yb, vact16(f, code, lo, hi), m)
