"""ONNX Resize as per-axis tap tables, built on the host (NumPy) once per input shape and
shared by every backend.

Every Resize mode is separable and, along one axis, a sum over a few *taps*: output index
``o`` reads ``sum_k w[o, k] * x[idx[o, k]]`` (nearest: one tap of weight 1; linear: 2;
cubic: 4; antialias: a footprint that widens as the scale shrinks). ``ext[o]`` marks the
outputs that tf_crop_and_resize places outside the input: they take
``extrapolation_value``. A 2-D Resize applies the H table, then the W table; an output
is ``extrapolation_value`` when either axis marks it.

The formulas are ONNX's reference (onnx/reference/ops/op_resize.py). Source coordinates
are computed in float32 in the order ONNX writes them (what onnxruntime does, so ties of
the nearest modes land the same way); ratios, weights and their normalization in float64,
stored as float32. ``length_resized`` in the align_corners / tf_crop_and_resize /
half_pixel_symmetric formulas is ``in * scale``, as ONNX's reference and node tests have
it (onnx/onnx#2462: intended); onnxruntime uses the integer output length for
align_corners: they differ only when ``in * scale`` is not an integer. pytorch_half_pixel
with a single output reads coordinate 0 (the spec's text and onnxruntime).
"""
from __future__ import annotations

import math

import numpy as np

from .shapes import resize_geometry


def coords(n_in, n_out, scale, ctm, roi=(0.0, 1.0)):
    """Source coordinate (float32) of every output index; ``ext`` (bool) marks the ones
    tf_crop_and_resize puts outside [0, n_in - 1] (all False for the other modes)."""
    y = np.arange(n_out, dtype=np.float32)
    f = np.float32
    s = f(scale)
    out_w = float(scale) * n_in               # ONNX's length_resized (not floored)
    ext = np.zeros(n_out, dtype=bool)
    if ctm == "half_pixel":
        x = (y + f(0.5)) / s - f(0.5)
    elif ctm == "pytorch_half_pixel":
        # a single output reads coordinate 0: the spec's text and onnxruntime (ONNX's
        # reference puts -0.5; the same for nearest and linear, not for cubic/antialias)
        x = (np.zeros(n_out, np.float32) if n_out == 1
             else (y + f(0.5)) / s - f(0.5))
    elif ctm == "asymmetric":
        x = y / s
    elif ctm == "tf_half_pixel_for_nn":
        x = (y + f(0.5)) / s
    elif ctm == "align_corners":
        x = (np.zeros(n_out, np.float32) if out_w == 1
             else y * f(n_in - 1) / f(out_w - 1))
    elif ctm == "half_pixel_symmetric":
        adjustment = f(n_out / out_w)
        offset = f(n_in / 2) * (f(1) - adjustment)
        x = offset + (y + f(0.5)) / s - f(0.5)
    elif ctm == "tf_crop_and_resize":
        r0, r1 = f(roi[0]), f(roi[1])
        if out_w == 1:
            x = np.full(n_out, (r1 - r0) * f(n_in - 1) / f(2), np.float32)
        else:
            x = y * (r1 - r0) * f(n_in - 1) / f(out_w - 1)
        x = x + r0 * f(n_in - 1)
        ext = (x < 0) | (x > f(n_in - 1))
    else:
        from .errors import ModelError
        raise ModelError(f"unknown coordinate_transformation_mode {ctm!r}")
    return x.astype(np.float32), ext


def _nearest(x, nearest_mode):
    x = x.astype(np.float64)
    fl = np.floor(x)
    frac = x - fl
    if nearest_mode == "floor":
        return fl
    if nearest_mode == "ceil":
        return np.ceil(x)
    up = frac >= 0.5 if nearest_mode == "round_prefer_ceil" else frac > 0.5
    return fl + up


def _coeffs(r, scale, mode, antialias, a):
    """Weights (n_out, K) of the taps for ratios r in (0, 1] (ONNX's get_coeffs)."""
    r = r[:, None]
    if not antialias:
        if mode == "linear":
            return np.concatenate([1 - r, r], axis=1)
        s, t = r + 1, 1 - r
        u = t + 1
        return np.concatenate([
            ((a * s - 5 * a) * s + 8 * a) * s - 4 * a,
            ((a + 2) * r - (a + 3)) * r * r + 1,
            ((a + 2) * t - (a + 3)) * t * t + 1,
            ((a * u - 5 * a) * u + 8 * a) * u - 4 * a], axis=1)
    sc = min(scale, 1.0)
    if mode == "linear":
        start = int(np.floor(-1 / sc) + 1)
        arg = (np.arange(start, 2 - start)[None, :] - r) * sc
        c = np.clip(1 - np.abs(arg), 0, 1)
    else:
        start = int(np.floor(-2 / sc) + 1)
        z = np.abs(sc * (np.arange(start, 2 - start)[None, :] - r))
        z2, z3 = z * z, z * z * z
        c = np.where(z <= 1, (a + 2) * z3 - (a + 3) * z2 + 1,
                     np.where(z < 2, a * z3 - 5 * a * z2 + 8 * a * z - 4 * a, 0.0))
    return c / c.sum(axis=1, keepdims=True)


def axis_taps(n_in, n_out, scale, attrs, roi=(0.0, 1.0)):
    """(idx int64 (n_out, K), w float32 (n_out, K), ext uint8 (n_out,)) for one axis.
    ``attrs``: the Resize node's attributes (spec defaults filled in)."""
    ctm = attrs["coordinate_transformation_mode"]
    if (math.isclose(scale, 1.0) and n_out == n_in and
            (ctm != "tf_crop_and_resize" or (math.isclose(roi[0], 0.0, abs_tol=1e-9)
                                             and math.isclose(roi[1], 1.0)))):
        # ONNX leaves such an axis as it is (every mode)
        return (np.arange(n_in, dtype=np.int64)[:, None], np.ones((n_in, 1), np.float32),
                np.zeros(n_in, np.uint8))
    x, ext = coords(n_in, n_out, scale, ctm, roi)
    mode = attrs["mode"]
    if mode == "nearest":
        idx = _nearest(x, attrs["nearest_mode"])[:, None]
        w = np.ones((n_out, 1))
    else:
        xd = x.astype(np.float64)
        fl = np.floor(xd)
        exact = xd == fl
        r = np.where(exact, 1.0, xd - fl)       # in (0, 1]: the left pixel is preferred
        w = _coeffs(r, float(scale), mode, bool(attrs["antialias"]),
                    float(attrs["cubic_coeff_a"]))
        k = w.shape[1]
        # the K source indices nearest x, ties to the smaller (ONNX's _get_neighbor)
        if k % 2 == 0:
            start = fl - np.where(exact, k // 2, k // 2 - 1)
        else:
            start = fl - (k - 1) // 2 + (xd - fl > 0.5)
        idx = start[:, None] + np.arange(k)[None, :]
        if int(attrs["exclude_outside"]):
            w = np.where((idx < 0) | (idx >= n_in), 0.0, w)
            tot = w.sum(axis=1, keepdims=True)
            w = w / np.where(tot == 0, 1.0, tot)
    idx = np.clip(idx, 0, n_in - 1).astype(np.int64)
    return idx, np.ascontiguousarray(w, dtype=np.float32), ext.astype(np.uint8)


def tables(attrs, h, w, oh, ow):
    """(iy, wy, ey, ix, wx, ex) for an h×w → oh×ow Resize (see :func:`axis_taps`)."""
    _, _, sh, sw = resize_geometry(h, w, attrs.get("scales"), attrs.get("sizes"),
                                   attrs.get("keep_aspect_ratio_policy") or "stretch")
    roi = attrs.get("roi") or (0.0, 0.0, 1.0, 1.0)
    return (axis_taps(h, oh, sh, attrs, (roi[0], roi[2])) +
            axis_taps(w, ow, sw, attrs, (roi[1], roi[3])))
