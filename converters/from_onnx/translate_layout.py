"""Translators of the layout ops (Pad, Upsample/Resize, DepthToSpace, Slice, Split): one
function per ONNX op, named like the op, and their table ``LAYOUT_TRANSLATORS``, merged
into :data:`.translate.TRANSLATORS`. Split out of translate.py by size only; the contract
is the one described there.
"""
from __future__ import annotations

import numpy as np

from edgenet.shapes import slice_normalize

from .graph import node_error


def Pad(ctx, n, name, at):
    x = ctx.act_in(n, 0)
    rank = len(ctx.shape(x, n))
    mode = at.get("mode", "constant")
    if mode not in ("constant", "reflect", "edge"):
        raise node_error(n, f"Pad mode {mode!r} is not supported")
    if ctx.opset < 11:
        pads = list(at["pads"])
        value = float(at.get("value", 0.0))
    else:
        p = ctx.cin(n, 1)
        if p is None:
            raise node_error(n, "pads must be constant")
        pads = [int(v) for v in p.reshape(-1)]
        cv = ctx.cin(n, 2)
        value = 0.0 if cv is None else float(np.asarray(cv).reshape(-1)[0])
        axes = ctx.cin(n, 3)
        if axes is not None:
            full = [0] * (2 * rank)
            ax = [int(a) % rank for a in axes.reshape(-1)]
            for j, a in enumerate(ax):
                full[a] = pads[j]
                full[rank + a] = pads[len(ax) + j]
            pads = full
    if len(pads) != 2 * rank:
        raise node_error(n, f"pads has {len(pads)} values for a rank-{rank} input")
    if any(v < 0 for v in pads):
        raise node_error(n, "negative pads are not supported")
    if not any(pads):
        ctx.alias[n.output[0]] = x
        return
    ctx.emit(name, "Pad", [x], [n.output[0]], {"pads": pads, "mode": mode, "value": value})


_CTMS = ("half_pixel", "asymmetric", "align_corners", "pytorch_half_pixel",
         "half_pixel_symmetric", "tf_crop_and_resize", "tf_half_pixel_for_nn")


def _resize(ctx, n, name, x, mode, ctm, nearest, scales, sizes, extra=None, roi=None):
    """Emit an IR Resize on H, W. ``scales``/``sizes``: the 4 values of the ONNX node
    (axes already expanded); ``roi``: its 8 values (tf_crop_and_resize)."""
    xs = ctx.shape(x, n)
    if len(xs) != 4:
        raise node_error(n, "Resize of a non-4-D tensor is not supported")
    if mode in ("bilinear", "linear"):
        mode = "linear"
    elif mode not in ("nearest", "cubic"):
        raise node_error(n, f"Resize mode {mode!r} is not supported")
    if ctm not in _CTMS:
        raise node_error(n, f"coordinate_transformation_mode {ctm!r} is not supported")
    attrs = {"mode": mode, "coordinate_transformation_mode": ctm, "nearest_mode": nearest,
             "scales": None, "sizes": None, **(extra or {})}
    if ctm == "tf_crop_and_resize":
        if roi is None or np.size(roi) != 8:
            raise node_error(n, "tf_crop_and_resize needs a constant roi of 8 values "
                             "(or 2 per axis with 'axes')")
        r = [float(v) for v in np.asarray(roi, np.float64).reshape(-1)]
        if r[0] != 0 or r[1] != 0 or r[4] != 1 or r[5] != 1:
            raise node_error(n, f"Resize roi {r} must keep N and C (0..1)")
        attrs["roi"] = [r[2], r[3], r[6], r[7]]
    if scales is not None and np.size(scales):
        sc = [float(v) for v in np.asarray(scales).reshape(-1)]
        if len(sc) != 4 or sc[0] != 1 or sc[1] != 1:
            raise node_error(n, f"Resize scales {sc} must keep N and C")
        attrs["scales"] = sc[2:]
        attrs.pop("keep_aspect_ratio_policy", None)   # ONNX: it applies to sizes only
    elif sizes is not None and np.size(sizes):
        sz = [int(v) for v in np.asarray(sizes).reshape(-1)]
        if len(sz) != 4 or sz[1] != xs[1]:
            raise node_error(n, f"Resize sizes {sz} must keep N and C")
        attrs["sizes"] = sz[2:]
    else:
        raise node_error(n, "Resize needs constant scales or sizes")
    ctx.emit(name, "Resize", [x], [n.output[0]], attrs)


def Upsample(ctx, n, name, at):
    x = ctx.act_in(n, 0)
    scales = at.get("scales") if ctx.opset < 9 else ctx.cin(n, 1)
    _resize(ctx, n, name, x, at.get("mode", "nearest"), "asymmetric", "floor", scales, None)


def _expand_axes(vals, ax, base):
    full = list(base)
    for a, v in zip(ax, np.asarray(vals).reshape(-1)):
        full[a] = v
    return np.asarray(full)


def Resize(ctx, n, name, at):
    x = ctx.act_in(n, 0)
    if ctx.opset < 11:
        _resize(ctx, n, name, x, at.get("mode", "nearest"), "asymmetric", "floor",
                ctx.cin(n, 1), None)
        return
    mode = at.get("mode", "nearest")
    ctm = at.get("coordinate_transformation_mode", "half_pixel")
    nearest = at.get("nearest_mode", "round_prefer_floor")
    policy = at.get("keep_aspect_ratio_policy", "stretch")
    if policy not in ("stretch", "not_larger", "not_smaller"):
        raise node_error(n, f"keep_aspect_ratio_policy {policy!r} is not valid")
    extra = {"cubic_coeff_a": float(at.get("cubic_coeff_a", -0.75)),
             "exclude_outside": int(at.get("exclude_outside", 0)),
             "antialias": int(at.get("antialias", 0)),
             "extrapolation_value": float(at.get("extrapolation_value", 0.0)),
             "keep_aspect_ratio_policy": policy}
    if extra["antialias"] and mode == "nearest":
        raise node_error(n, "antialias applies to the linear and cubic modes only")
    axes = at.get("axes")
    rank = len(ctx.shape(x, n))
    ax = None if axes is None else [int(a) % rank for a in axes]
    if ax is not None and len(set(ax)) != len(ax):
        raise node_error(n, f"Resize axes {list(axes)} repeat an axis")
    if policy != "stretch" and ax is not None and sorted(ax) != [2, 3]:
        raise node_error(n, "keep_aspect_ratio_policy needs both H and W among the axes")
    roi = ctx.cin(n, 1) if ctm == "tf_crop_and_resize" and len(n.input) > 1 and \
        n.input[1] else None
    if roi is not None and ax is not None:
        k = len(ax)
        r = np.asarray(roi, np.float64).reshape(-1)
        roi = np.concatenate([_expand_axes(r[:k], ax, [0.0] * rank),
                              _expand_axes(r[k:], ax, [1.0] * rank)])
    if len(n.input) > 3 and n.input[3] in ctx.fe.folded and axes is None:
        sa, sb = (np.asarray(v, np.int64).reshape(-1) for v in ctx.fe.folded[n.input[3]])
        if not np.array_equal(sa, sb):
            # sizes computed from the symbolic input size: a constant ratio is a scale
            xa, xb = ctx.fe.shape_ab(x, n)
            ra, rb = sa / np.asarray(xa, np.float64), sb / np.asarray(xb, np.float64)
            if len(sa) != 4 or not np.allclose(ra, rb, rtol=0, atol=1e-12) or \
                    ra[0] != 1 or ra[1] != 1 or policy != "stretch":
                raise node_error(n, "Resize sizes depend on the symbolic input size other "
                                 "than by a constant factor; freeze the input dims at "
                                 "conversion (--input-shape)")
            _resize(ctx, n, name, x, mode, ctm, nearest, ra, None, extra, roi)
            return
    scales, sizes = ctx.cin(n, 2), ctx.cin(n, 3)
    for idx in (2, 3):
        if idx < len(n.input) and n.input[idx] and ctx.cin(n, idx) is None:
            raise node_error(n, "Resize scales/sizes must be constants")
    if ax is not None:
        if scales is not None and np.size(scales):
            scales = _expand_axes(scales.astype(np.float64), ax, [1.0] * rank)
        if sizes is not None and np.size(sizes):
            full = list(ctx.shape(x, n))
            full[0] = 1
            sizes = _expand_axes(sizes, ax, full)
    _resize(ctx, n, name, x, mode, ctm, nearest, scales, sizes, extra, roi)


def DepthToSpace(ctx, n, name, at):
    ctx.emit(name, "DepthToSpace", [ctx.act_in(n, 0)], [n.output[0]],
             {"blocksize": int(at["blocksize"]), "mode": at.get("mode", "DCR")})


_I32 = 2 ** 31 - 1


def _slice_norm(ctx, n, x, starts, ends, axes, steps):
    """Slice bounds: normalized to the IR's (clamped, non-negative) form when they
    normalize alike under both symbolic-dim assignments; else ONNX's own bounds, which the
    runtime normalizes per plan (``onnx_bounds``). ``starts``/``ends`` entries are ints or
    (value under A, value under B) pairs when they were computed from the input size: a
    pair that keeps its distance to the axis end becomes that (negative) distance."""
    xa, xb = ctx.fe.shape_ab(x, n)
    rank = len(xa)
    out, raw, per_plan = [], [], False
    for s, e, a, st in zip(starts, ends, axes, steps):
        a = int(a) % rank
        st = int(st)
        if st == 0:
            raise node_error(n, "Slice step 0")
        bounds = []
        for v, is_end in ((s, False), (e, True)):
            if isinstance(v, tuple):
                va, vb = int(v[0]), int(v[1])
                if va == vb:
                    v = va
                elif va - xa[a] == vb - xb[a] and va - xa[a] < 0:
                    v = va - xa[a]            # a fixed distance from the end of the axis
                elif va - xa[a] == vb - xb[a] == 0 and is_end and st > 0:
                    v = _I32                  # the end of the axis
                else:
                    raise node_error(n, f"Slice bounds along axis {a} depend on the "
                                     "symbolic input size in a way the IR cannot express; "
                                     "freeze the input dims at conversion (--input-shape)")
                per_plan = per_plan or xa[a] != xb[a]
            bounds.append(max(-_I32, min(_I32, int(v))))
        s, e = bounds
        na, nb = slice_normalize(s, e, st, xa[a]), slice_normalize(s, e, st, xb[a])
        if st == 1 and na == (0, xa[a]) and nb == (0, xb[a]):
            continue
        if na != nb:
            per_plan = True
        out.append((na[0], na[1], a, st))
        raw.append((s, e, a, st))
    if per_plan:
        out = raw
    cols = [list(c) for c in zip(*out)] if out else [[], [], [], []]
    return (*cols, int(per_plan))


def Slice(ctx, n, name, at):
    x = ctx.act_in(n, 0)
    if ctx.opset < 10:
        starts, ends = at["starts"], at["ends"]
        axes = at.get("axes", list(range(len(starts))))
        steps = [1] * len(starts)
    else:
        def bound(i):
            """Input i as a list of ints, or of (A, B) pairs when it depends on the
            symbolic input size; None when absent."""
            if i >= len(n.input) or not n.input[i]:
                return None
            nm = n.input[i]
            if nm not in ctx.fe.folded:
                raise node_error(n, "Slice parameters must be constants")
            va, vb = (np.asarray(v).reshape(-1) for v in ctx.fe.folded[nm])
            if np.array_equal(va, vb):
                return va.tolist()
            if i > 2 or va.shape != vb.shape:
                ctx.cin(n, i)                 # raises the "depends on the symbolic dims" error
            return [(int(p), int(q)) for p, q in zip(va, vb)]

        starts, ends, axes, steps = (bound(i) for i in range(1, 5))
        axes = axes if axes is not None else list(range(len(starts)))
        steps = steps if steps is not None else [1] * len(starts)
    S, E, A, T, per_plan = _slice_norm(ctx, n, x, starts, ends, axes, steps)
    if not A:
        ctx.alias[n.output[0]] = x
        return
    attrs = {"starts": S, "ends": E, "axes": A, "steps": T}
    if per_plan:
        attrs["onnx_bounds"] = 1
    ctx.emit(name, "Slice", [x], [n.output[0]], attrs)


def Split(ctx, n, name, at):
    x = ctx.act_in(n, 0)
    xs = ctx.shape(x, n)
    rank = len(xs)
    ax = int(at.get("axis", 0)) % rank
    dim = xs[ax]
    if dim is None:
        raise node_error(n, f"Split along axis {ax} of symbolic size; freeze the input dims "
                         "at conversion (--input-shape)")
    if ctx.opset < 13:
        split = at.get("split")
    else:
        sp = ctx.cin(n, 1)
        split = None if sp is None else sp.reshape(-1).tolist()
    outs = list(n.output)
    if split is None:
        k = len(outs) if "num_outputs" not in at else int(at["num_outputs"])
        q = -(-dim // k)
        split = [min(q, dim - i * q) for i in range(k)]
    pos = 0
    for j, (o, sz) in enumerate(zip(outs, split)):
        if o:
            ctx.emit(f"{name}::{j}", "Slice", [x], [o],
                     {"starts": [pos], "ends": [pos + int(sz)], "axes": [ax], "steps": [1]})
        pos += int(sz)


# ONNX op -> translator (merged into translate.TRANSLATORS)
def Gather(ctx, n, name, at):
    """Gather on an activation with constant indices: Slices of the runs of consecutive
    indices, a Concat when there are several, and a Reshape to the indices' shape."""
    x = ctx.act_in(n, 0)
    xs = ctx.shape(x, n)
    rank = len(xs)
    ax = int(at.get("axis", 0))
    if not -rank <= ax < rank:
        raise node_error(n, f"axis {ax} is out of range for rank {rank}")
    ax %= rank
    ind = ctx.cin(n, 1)
    if ind is None:
        raise node_error(n, "Gather on an activation needs constant indices")
    dim = xs[ax]
    if dim is None:
        raise node_error(n, f"Gather along axis {ax} of symbolic size; freeze the input "
                         "dims at conversion (--input-shape)")
    ind = np.asarray(ind)
    if not np.issubdtype(ind.dtype, np.integer):
        raise node_error(n, "Gather indices must be integers")
    flat = ind.astype(np.int64).reshape(-1)
    if flat.size == 0:
        raise node_error(n, "Gather with no indices makes an empty tensor")
    if flat.min() < -dim or flat.max() >= dim:
        raise node_error(n, f"Gather indices {flat.tolist()} out of range for size {dim}")
    flat = flat % dim
    runs, lo = [], 0
    for i in range(1, flat.size + 1):
        if i == flat.size or flat[i] != flat[i - 1] + 1:
            runs.append((int(flat[lo]), int(flat[i - 1]) + 1))
            lo = i
    out = n.output[0]
    want = tuple(xs[:ax]) + tuple(ind.shape) + tuple(xs[ax + 1:])
    cat_shape = tuple(xs[:ax]) + (flat.size,) + tuple(xs[ax + 1:])
    if runs == [(0, dim)]:
        y = x                                   # every index, in order
    else:
        y = out if want == cat_shape else ctx.tmp(out + "::cat")
        parts = []
        for j, (a, b) in enumerate(runs):
            p = y if len(runs) == 1 else ctx.tmp(f"{out}::part{j}")
            ctx.emit(f"{name}::slice{j}", "Slice", [x], [p],
                     {"starts": [a], "ends": [b], "axes": [ax], "steps": [1]})
            parts.append(p)
        if len(runs) > 1:
            ctx.emit(name + "::concat", "Concat", parts, [y], {"axis": ax})
    if y == x and want == cat_shape:
        ctx.alias[out] = x
        return
    if y != out:
        tgt = [0 if (d is None and i < ax) else (-1 if d is None else int(d))
               for i, d in enumerate(want)]
        if tgt.count(-1) > 1:
            raise node_error(n, "Gather output has several symbolic dims the IR cannot "
                             "place; freeze the input dims at conversion (--input-shape)")
        ctx.emit(name + "::reshape", "Reshape", [y], [out], {"shape": tgt})


def Expand(ctx, n, name, at):
    """Expand of an activation to a constant shape: a broadcasting Mul by a constant of
    ones (exact: x * 1 keeps -0, inf and NaN) whose shape holds only the new extents."""
    x = ctx.act_in(n, 0)
    xs = list(ctx.shape(x, n))
    tgt = ctx.cin(n, 1)
    if tgt is None:
        raise node_error(n, "Expand needs a constant shape")
    tgt = [int(v) for v in np.asarray(tgt).reshape(-1)]
    r = max(len(xs), len(tgt))
    xa = [1] * (r - len(xs)) + xs
    ta = [1] * (r - len(tgt)) + tgt
    out, ones = [], []
    for d, t in zip(xa, ta):
        if d is None:
            if t != 1:
                raise node_error(n, "Expand of a symbolic dim; freeze the input dims at "
                                 "conversion (--input-shape)")
            out.append(None), ones.append(1)
        elif d == t or t == 1:
            out.append(d), ones.append(1)
        elif d == 1:
            out.append(t), ones.append(t)
        else:
            raise node_error(n, f"shape {tgt} does not broadcast with the input {xs}")
    if out == xs:
        ctx.alias[n.output[0]] = x
        return
    c = ctx.add_const(np.ones(ones, np.float32), n.input[1] + "::ones")
    ctx.emit(name, "Mul", [x, c], [n.output[0]], {"activation": None})


LAYOUT_TRANSLATORS = {
    "Gather": Gather,
    "Expand": Expand,
    "Pad": Pad,
    "Upsample": Upsample,
    "Resize": Resize,
    "DepthToSpace": DepthToSpace,
    "Slice": Slice,
    "Split": Split,
}
