"""Weight quantizers (NumPy only). Rules: /work/shared/quantization.md (docs/CONVERTER.md).

Every function takes a weight tensor whose axis 0 is the output-channel axis (the IR
layout: Conv (O, C/g, kh, kw), Gemm (O, K)) and returns integer levels of the same shape
plus one float32 scale per output channel, so that ``W ≈ scale[o] · levels[o, ...]``.
Per-layer quantization returns the same scale repeated for all O channels.

Statistics are computed in float64; levels are int8.
"""
from __future__ import annotations

import numpy as np

GRANULARITIES = ("channel", "layer")
THRESHOLDS = ("twn", "optimal")
TWN_FACTOR = 0.7
QUINARY_FACTORS = (0.5, 1.4)


def _rows(w, granularity):
    """(O, K) float64 view for per-channel work, or (1, O*K) for per-layer."""
    w = np.asarray(w)
    if w.ndim < 1:
        raise ValueError("weights need an output-channel axis (ndim >= 1)")
    if granularity not in GRANULARITIES:
        raise ValueError(f"granularity must be one of {GRANULARITIES}, got {granularity!r}")
    if not np.all(np.isfinite(w)):
        raise ValueError("weights contain NaN or Inf")
    a = w.astype(np.float64, copy=False)
    o = w.shape[0]
    return (a.reshape(o, -1) if granularity == "channel" else a.reshape(1, -1)), o


def _finish(levels_rows, alpha_rows, w_shape, o, granularity):
    levels = levels_rows.astype(np.int8).reshape(w_shape)
    alpha = np.asarray(alpha_rows, dtype=np.float64)
    if granularity == "layer":
        alpha = np.repeat(alpha[:1], o)
    alpha = alpha.astype(np.float32)
    # a channel whose scale is 0 (all-zero weights) has all-zero levels
    zero = alpha == 0
    if zero.any():
        levels[zero] = 0
    return levels, alpha


def _twn_delta(a):
    """Δ = 0.7 · E|W| per row."""
    return TWN_FACTOR * a.mean(axis=1) if a.shape[1] else np.zeros(a.shape[0])


def ternarize(w, granularity: str = "channel", threshold: str = "twn"):
    """Ternary Weight Networks quantizer: W ≈ α·T, T ∈ {-1, 0, +1}.

    threshold="twn": Δ = 0.7·E|W|, α = mean(|W_i| : |W_i| > Δ).
    threshold="optimal": exact Δ* maximizing (Σ_{|W_i|>Δ} |W_i|)² / |I_Δ| (sort |W| in
    decreasing order, best prefix length k over prefixes that a threshold can select).
    Returns (levels int8 of w's shape, alpha float32 (O,)).
    """
    if threshold not in THRESHOLDS:
        raise ValueError(f"threshold must be one of {THRESHOLDS}, got {threshold!r}")
    rows, o = _rows(w, granularity)
    a = np.abs(rows)
    if threshold == "twn":
        delta = _twn_delta(a)
        mask = a > delta[:, None]
        cnt = mask.sum(axis=1)
        s = np.where(mask, a, 0.0).sum(axis=1)
        alpha = np.divide(s, cnt, out=np.zeros_like(s), where=cnt > 0)
    else:
        n = a.shape[1]
        if n == 0:
            mask = np.zeros_like(a, dtype=bool)
            alpha = np.zeros(a.shape[0])
        else:
            srt = -np.sort(-a, axis=1)                       # descending
            csum = np.cumsum(srt, axis=1)
            k = np.arange(1, n + 1, dtype=np.float64)
            obj = csum * csum / k
            # a prefix is selectable by a threshold only where the next value is smaller
            valid = np.ones_like(srt, dtype=bool)
            valid[:, :-1] = srt[:, :-1] > srt[:, 1:]
            valid &= srt > 0
            obj = np.where(valid, obj, -np.inf)
            best = np.argmax(obj, axis=1)
            r = np.arange(a.shape[0])
            thr = np.where(best + 1 < n, srt[r, np.minimum(best + 1, n - 1)], 0.0)
            ok = valid[r, best]
            mask = (a > thr[:, None]) & ok[:, None]
            alpha = np.where(ok, csum[r, best] / (best + 1), 0.0)
    levels = np.where(mask, np.sign(rows), 0.0)
    return _finish(levels, alpha, np.shape(w), o, granularity)


def quinarize(w, granularity: str = "channel"):
    """Quinary quantizer: W ≈ α·T, T ∈ {-2, -1, 0, +1, +2}.

    Δ1 = 0.5·E|W|, Δ2 = 1.4·E|W|; I1 = {Δ1 < |W| ≤ Δ2}, I2 = {|W| > Δ2};
    α = (Σ_I1 |W| + 2·Σ_I2 |W|) / (|I1| + 4·|I2|).
    """
    rows, o = _rows(w, granularity)
    a = np.abs(rows)
    e = a.mean(axis=1) if a.shape[1] else np.zeros(a.shape[0])
    d1 = (QUINARY_FACTORS[0] * e)[:, None]
    d2 = (QUINARY_FACTORS[1] * e)[:, None]
    i2 = a > d2
    i1 = (a > d1) & ~i2
    num = np.where(i1, a, 0.0).sum(axis=1) + 2.0 * np.where(i2, a, 0.0).sum(axis=1)
    den = i1.sum(axis=1) + 4.0 * i2.sum(axis=1)
    alpha = np.divide(num, den, out=np.zeros_like(num), where=den > 0)
    levels = np.sign(rows) * (i1 + 2.0 * i2)
    return _finish(levels, alpha, np.shape(w), o, granularity)


def int8_quantize(w):
    """Per-output-channel symmetric int8: scale = max|W|/127, levels = round(W/scale)."""
    rows, o = _rows(w, "channel")
    m = np.abs(rows).max(axis=1) if rows.shape[1] else np.zeros(o)
    scale = m / 127.0
    safe = np.where(scale > 0, scale, 1.0)
    levels = np.clip(np.rint(rows / safe[:, None]), -127, 127)
    levels[scale == 0] = 0
    return levels.astype(np.int8).reshape(np.shape(w)), scale.astype(np.float32)


def detect_levels(w, max_level: int, rtol: float = 1e-6):
    """Detect weights that already are α_o·T with integer |T| ≤ max_level per output channel
    (quantization-aware trained). Returns (levels int8, alpha float32 (O,)) or None.

    α_o is the smallest nonzero |W| of the channel, refined by least squares; the match
    must hold to ``rtol`` relative to the channel's largest |W|.
    """
    w = np.asarray(w)
    if w.ndim < 1 or w.size == 0 or not np.all(np.isfinite(w)):
        return None
    o = w.shape[0]
    if o > 1 and detect_levels(w[:1], max_level, rtol) is None:
        return None          # cheap early exit: most float weights fail on channel 0
    rows = w.astype(np.float64).reshape(o, -1)
    a = np.abs(rows)
    amax = a.max(axis=1)
    amin = np.where(a > 0, a, np.inf).min(axis=1)
    amin = np.where(np.isfinite(amin), amin, 0.0)
    safe = np.where(amin > 0, amin, 1.0)
    t = np.rint(rows / safe[:, None])
    t[amin == 0] = 0
    if np.abs(t).max(initial=0) > max_level:
        return None
    tt = (t * t).sum(axis=1)
    alpha = np.divide((rows * t).sum(axis=1), tt, out=np.zeros(o), where=tt > 0)
    err = np.abs(rows - alpha[:, None] * t).max(axis=1) if rows.shape[1] else np.zeros(o)
    if np.any(err > rtol * amax):
        return None
    return t.astype(np.int8).reshape(w.shape), alpha.astype(np.float32)


def dequantize(levels, alpha):
    """α[o] · levels[o, ...] as float32 (the value a quantized tensor stands for)."""
    lv = np.asarray(levels)
    al = np.asarray(alpha, dtype=np.float32).reshape((-1,) + (1,) * (lv.ndim - 1))
    return (lv.astype(np.float32) * al).astype(np.float32)
