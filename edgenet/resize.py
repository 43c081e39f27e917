"""ONNX Resize coordinate tables on the host (NumPy), shared by the reference and CUDA
backends: which source positions and weights every output row/column reads. The CPU
backend has its own Numba implementation, tested against the reference built on these."""
import numpy as np


def axis_scales(attrs, h, w, oh, ow):
    """(scale_h, scale_w) as float32: the stored ``scales``, else out/in (ONNX ``sizes``)."""
    if attrs.get("scales") is not None:
        sh, sw = (np.float32(s) for s in attrs["scales"])
        return sh, sw
    return np.float32(oh) / np.float32(h), np.float32(ow) / np.float32(w)


def source_coords(out_len, in_len, scale, ctm):
    """Source coordinate (float32) of every output index, per ONNX Resize."""
    xr = np.arange(out_len, dtype=np.float32)
    s = np.float32(scale)
    half = np.float32(0.5)
    if ctm == "half_pixel":
        return (xr + half) / s - half
    if ctm == "pytorch_half_pixel":
        if out_len > 1:
            return (xr + half) / s - half
        return np.zeros(out_len, dtype=np.float32)
    if ctm == "asymmetric":
        return xr / s
    if ctm == "align_corners":
        if out_len == 1:
            return np.zeros(out_len, dtype=np.float32)
        return xr * np.float32(in_len - 1) / np.float32(out_len - 1)
    from .errors import ModelError
    raise ModelError(f"unknown coordinate_transformation_mode {ctm!r}")


def nearest_index(xo, in_len, nearest_mode):
    xo = xo.astype(np.float64)  # exact copy of the float32 values
    if nearest_mode == "floor":
        idx = np.floor(xo)
    elif nearest_mode == "ceil":
        idx = np.ceil(xo)
    else:
        fl = np.floor(xo)
        frac = xo - fl
        tie_up = nearest_mode == "round_prefer_ceil"
        idx = np.where(frac > 0.5, fl + 1, np.where(frac < 0.5, fl, fl + 1 if tie_up else fl))
    return np.clip(idx, 0, in_len - 1).astype(np.int64)


def linear_weights(xo, in_len):
    """(i0, i1, w0, w1): the source coordinate is clamped to [0, in_len - 1] first."""
    xo = np.clip(xo, np.float32(0), np.float32(in_len - 1)).astype(np.float32)
    i0 = np.floor(xo).astype(np.int64)
    i1 = np.minimum(i0 + 1, in_len - 1)
    w1 = (xo - i0.astype(np.float32)).astype(np.float32)
    w0 = (np.float32(1) - w1).astype(np.float32)
    return i0, i1, w0, w1
