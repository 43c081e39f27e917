"""Shape rules of the IR ops: one function per op, referenced by its record in
edgenet/ops.py. A rule reads the node through :class:`Ctx`, raises ``ModelError`` ("node
'name' (op): why") when the node breaks a kernel's assumptions, and returns the output
shapes.

Shapes are tuples of ints; axis 0 of an activation may be ``None`` (the dynamic batch
dimension, see docs/IR.md "Graph") and is then propagated where it passes through
unchanged. ``in_shapes[i]`` is None at constant inputs (their shape is
``consts[name].shape``) and at absent optional inputs (input name ``""``).
"""
from __future__ import annotations

import math

from .activation import ACT_CODES
from .errors import ModelError


class _Required:
    def __repr__(self):
        return "REQUIRED"


REQUIRED = _Required()   # an attribute without a default

RESIZE_MODES = ("nearest", "linear", "cubic")
RESIZE_COORD_MODES = ("half_pixel", "asymmetric", "align_corners", "pytorch_half_pixel",
                      "half_pixel_symmetric", "tf_crop_and_resize", "tf_half_pixel_for_nn")
RESIZE_ASPECT_POLICIES = ("stretch", "not_larger", "not_smaller")
RESIZE_NEAREST_MODES = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")
PAD_MODES = ("constant", "reflect", "edge")


class Ctx:
    """Per-node helpers: error construction and shape lookup."""

    def __init__(self, node, in_shapes, consts, defaults=None):
        self.defaults = defaults or {}
        self.node = node
        self.name = node.get("name", "?") if isinstance(node, dict) else "?"
        self.op = node.get("op", "?") if isinstance(node, dict) else "?"
        self.inputs = list(node.get("inputs", [])) if isinstance(node, dict) else []
        self.attrs = node.get("attrs") or {} if isinstance(node, dict) else {}
        self.in_shapes = list(in_shapes) if in_shapes is not None else []
        self.consts = consts or {}

    def err(self, msg):
        return ModelError(f"node '{self.name}' ({self.op}): {msg}")

    def fail(self, msg):
        raise self.err(msg)

    def present(self, i) -> bool:
        return i < len(self.inputs) and self.inputs[i] != ""

    def shape(self, i):
        """Shape of input i (tuple), or None when the input is absent ("")."""
        if not self.present(i):
            return None
        s = self.in_shapes[i] if i < len(self.in_shapes) else None
        if s is None:
            c = self.consts.get(self.inputs[i])
            if c is None:
                self.fail(f"no shape for input {i} '{self.inputs[i]}' "
                          "(not an activation and not a constant)")
            s = c.shape
        try:
            s = tuple(None if d is None else int(d) for d in s)
        except (TypeError, ValueError):
            self.fail(f"input {i} '{self.inputs[i]}' has a malformed shape {s!r}")
        for ax, d in enumerate(s):
            if d is None and ax != 0:
                self.fail(f"input {i} '{self.inputs[i]}': only axis 0 may be dynamic, got {s}")
            if d is not None and d < 0:
                self.fail(f"input {i} '{self.inputs[i]}' has a negative dimension: {s}")
        return s

    def rank(self, i, s, ranks, what="X"):
        ranks = (ranks,) if isinstance(ranks, int) else tuple(ranks)
        if len(s) not in ranks:
            want = " or ".join(str(r) for r in ranks)
            self.fail(f"{what} (input {i}) must have rank {want}, got shape {s}")

    # ---- attributes
    def attr(self, key, default=...):
        """The attribute, else ``default``, else the op spec's default (edgenet/ops.py),
        else fail: the attribute is required."""
        if key not in self.attrs:
            if default is ...:
                default = self.defaults.get(key, REQUIRED)
            if default is REQUIRED:
                self.fail(f"missing attribute '{key}'")
            return default
        return self.attrs[key]

    def int_attr(self, key, default=..., lo=None):
        v = self.attr(key, default)
        if isinstance(v, bool) or not isinstance(v, (int,)) and not _is_npint(v):
            self.fail(f"attribute '{key}' must be an integer, got {v!r}")
        v = int(v)
        if lo is not None and v < lo:
            self.fail(f"attribute '{key}' must be >= {lo}, got {v}")
        if abs(v) >= 2**31:
            self.fail(f"attribute '{key}' is out of range: {v}")
        return v

    def ints_attr(self, key, n, default=..., lo=None, what=None):
        v = self.attr(key, default)
        if not isinstance(v, (list, tuple)) or any(
                isinstance(e, bool) or not (isinstance(e, int) or _is_npint(e)) for e in v):
            self.fail(f"attribute '{key}' must be a list of integers, got {v!r}")
        v = [int(e) for e in v]
        if n is not None and len(v) != n:
            self.fail(f"attribute '{key}' must have {n} entries, got {v}")
        if lo is not None and any(e < lo for e in v):
            kind = what or (f"must be >= {lo}")
            self.fail(f"attribute '{key}' {kind}, got {v}")
        return v

    def choice_attr(self, key, choices, default=...):
        v = self.attr(key, default)
        if v not in choices:
            self.fail(f"attribute '{key}' must be one of {list(choices)}, got {v!r}")
        return v

    def activation(self, required=False):
        if "activation" not in self.attrs:
            if required:
                self.fail("missing attribute 'activation'")
            return None
        desc = self.attrs["activation"]
        if desc is None:
            if required:
                self.fail("activation must not be null")
            return None
        if not isinstance(desc, dict) or "kind" not in desc:
            self.fail(f"malformed activation descriptor {desc!r}")
        if desc["kind"] not in ACT_CODES:
            self.fail(f"unknown activation kind {desc['kind']!r}")
        for k in ("alpha", "beta"):
            v = desc.get(k)
            if v is not None and (not _is_num(v) or math.isnan(float(v))):
                self.fail(f"activation {k} must be a number, got {v!r}")
        return desc


def _is_num(v) -> bool:
    """A real number (int/float or a NumPy scalar of either), not a bool."""
    if isinstance(v, bool):
        return False
    if isinstance(v, (int, float)):
        return True
    try:
        import numpy as np
        return isinstance(v, (np.integer, np.floating))
    except ImportError:  # pragma: no cover
        return False


def _is_npint(v) -> bool:
    try:
        import numpy as np
        return isinstance(v, np.integer)
    except ImportError:  # pragma: no cover
        return False


def _prod(dims):
    p = 1
    for d in dims:
        if d is None:
            return None
        p *= d
    return p


def _same(a, b) -> bool:
    """Shape equality where a dynamic (None) batch matches anything."""
    return len(a) == len(b) and all(x is None or y is None or x == y for x, y in zip(a, b))


def broadcast(c: Ctx, a, b):
    """numpy broadcasting of two shapes (None: a dynamic dim, kept where the other is 1)."""
    out = []
    ra, rb = len(a), len(b)
    r = max(ra, rb)
    a = (1,) * (r - ra) + tuple(a)
    b = (1,) * (r - rb) + tuple(b)
    for x, y in zip(a, b):
        if x is None or y is None:
            other = y if x is None else x
            out.append(None if other in (None, 1) else other)
        elif x == y or y == 1:
            out.append(x)
        elif x == 1:
            out.append(y)
        else:
            c.fail(f"shapes {tuple(a)} and {tuple(b)} are not broadcast-compatible")
    return tuple(out)


def _window_out(c: Ctx, axis, size, k, s, d, p0, p1, ceil_mode=0):
    """Output length of a sliding window (ONNX pooling/conv formula, PyTorch ceil rule)."""
    eff = (k - 1) * d + 1
    span = size + p0 + p1 - eff
    if span < 0:
        c.fail(f"window of extent {eff} (kernel {k}, dilation {d}) does not fit the "
               f"padded input along {axis} ({size} + pads {p0}+{p1}): empty output")
    if ceil_mode:
        out = -(-span // s) + 1
        # the last window must start inside the image or the leading padding
        if (out - 1) * s >= size + p0:
            out -= 1
    else:
        out = span // s + 1
    return out


def _pool_taps_ok(c, axis, size, k, s, d, p0, out):
    """Every pooling window must contain at least one in-image tap along each axis."""
    for o in range(out):
        start = o * s - p0
        if not any(0 <= start + j * d < size for j in range(k)):
            c.fail(f"pooling window {o} along {axis} lies entirely in the padding")


MAX_GEOM = 1 << 16  # strides, dilations and pads beyond this are hostile, not models


def _conv_geom(c: Ctx):
    strides = c.ints_attr("strides", 2, lo=1, what="must be positive")
    dilations = c.ints_attr("dilations", 2, lo=1, what="must be positive")
    pads = c.ints_attr("pads", 4, lo=0, what="must be non-negative")
    if max(strides + dilations + pads) > MAX_GEOM:
        c.fail(f"strides/dilations/pads must be <= {MAX_GEOM}: {strides} {dilations} {pads}")
    return strides, dilations, pads


def _check_act_and_bias(c: Ctx, bias_pos, o):
    if c.present(bias_pos):
        b = c.shape(bias_pos)
        if b != (o,):
            c.fail(f"bias (input {bias_pos}) must have shape ({o},), got {b}")


def shape_conv(c: Ctx):
    x = c.shape(0)
    w = c.shape(1)
    c.rank(0, x, 4)
    c.rank(1, w, 4, "W")
    g = c.int_attr("group", lo=1)
    (sh, sw), (dh, dw), (pt, pl, pb, pr) = _conv_geom(c)
    n, ch, h, wd = x
    o, cg, kh, kw = w
    if kh <= 0 or kw <= 0:
        c.fail(f"kernel must be non-empty, got W shape {w}")
    if o <= 0 or o % g:
        c.fail(f"output channels {o} not divisible by group {g}")
    if ch % g:
        c.fail(f"input channels {ch} not divisible by group {g}")
    if cg != ch // g:
        c.fail(f"W shape {w} expects {cg * g} input channels with group {g}, X has {ch}")
    oh = _window_out(c, "H", h, kh, sh, dh, pt, pb)
    ow = _window_out(c, "W", wd, kw, sw, dw, pl, pr)
    if oh <= 0 or ow <= 0 or h <= 0 or wd <= 0:
        c.fail(f"empty output ({oh}, {ow}) from input {x}")
    _check_act_and_bias(c, 2, o)
    out = (n, o, oh, ow)
    if c.present(3):
        r = c.shape(3)
        if not _same(r, out):
            c.fail(f"residual (input 3) shape {r} != output shape {out}")
    c.activation()
    return [out]


def shape_convtranspose(c: Ctx):
    x = c.shape(0)
    w = c.shape(1)
    c.rank(0, x, 4)
    c.rank(1, w, 4, "W")
    g = c.int_attr("group", lo=1)
    (sh, sw), (dh, dw), (pt, pl, pb, pr) = _conv_geom(c)
    oph, opw = c.ints_attr("output_padding", 2, lo=0, what="must be non-negative")
    n, ch, h, wd = x
    o, cg, kh, kw = w
    if kh <= 0 or kw <= 0:
        c.fail(f"kernel must be non-empty, got W shape {w}")
    if o <= 0 or o % g:
        c.fail(f"output channels {o} not divisible by group {g}")
    if ch % g:
        c.fail(f"input channels {ch} not divisible by group {g}")
    if cg != ch // g:
        c.fail(f"W shape {w} (output-channel-major) expects {cg * g} input channels "
               f"with group {g}, X has {ch}")
    if h <= 0 or wd <= 0:
        c.fail(f"empty input {x}")
    oh = sh * (h - 1) + oph + (kh - 1) * dh + 1 - pt - pb
    ow = sw * (wd - 1) + opw + (kw - 1) * dw + 1 - pl - pr
    if oh <= 0 or ow <= 0:
        c.fail(f"pads make the output empty ({oh}, {ow})")
    _check_act_and_bias(c, 2, o)
    c.activation()
    return [(n, o, oh, ow)]


def shape_gemm(c: Ctx):
    x = c.shape(0)
    w = c.shape(1)
    if len(x) < 2:       # rank > 2: applied along the last axis (MatMul by a constant)
        c.fail(f"X (input 0) must have rank >= 2, got shape {x}")
    c.rank(1, w, 2, "W")
    if w[1] != x[-1]:
        c.fail(f"W shape {w} does not match X shape {x} (K = {x[-1]})")
    if w[0] <= 0 or w[1] <= 0:
        c.fail(f"empty weight {w}")
    _check_act_and_bias(c, 2, w[0])
    c.activation()
    return [tuple(x[:-1]) + (w[0],)]


def shape_matmul(c: Ctx):
    a = c.shape(0)
    b = c.shape(1)
    if len(a) < 2 or len(b) < 2:
        c.fail(f"MatMul needs rank >= 2 operands, got {a} and {b}")
    if a[-1] != b[-2] or a[-1] is None:
        c.fail(f"inner dimensions differ: {a} @ {b}")
    batch = broadcast(c, a[:-2], b[:-2])
    return [batch + (a[-2], b[-1])]


def shape_affine(c: Ctx):
    x = c.shape(0)
    if len(x) < 2:
        c.fail(f"X must have rank >= 2 (channel axis 1), got {x}")
    for i in (1, 2):
        s = c.shape(i)
        if s != (x[1],):
            c.fail(f"{'scale' if i == 1 else 'shift'} (input {i}) must have shape "
                   f"({x[1]},), got {s}")
    c.activation()
    return [x]


def shape_act(c: Ctx):
    x = c.shape(0)
    c.activation(required=True)
    return [x]


def shape_prelu(c: Ctx):
    x = c.shape(0)
    s = c.shape(1)
    if len(x) < 2:
        c.fail(f"X must have rank >= 2 (channel axis 1), got {x}")
    if s not in ((x[1],), (1,)):
        c.fail(f"slope must have shape ({x[1]},) or (1,), got {s}")
    return [x]


def shape_pool(c: Ctx):
    avg = c.op == "AveragePool"
    x = c.shape(0)
    c.rank(0, x, 4)
    kh, kw = c.ints_attr("kernel", 2, lo=1, what="must be positive")
    sh, sw = c.ints_attr("strides", 2, lo=1, what="must be positive")
    pt, pl, pb, pr = c.ints_attr("pads", 4, lo=0, what="must be non-negative")
    # AveragePool lists no dilations in the IR; accept them when present (ONNX opset 19).
    dh, dw = c.ints_attr("dilations", 2, lo=1, what="must be positive")
    if max(kh, kw, sh, sw, pt, pl, pb, pr, dh, dw) > MAX_GEOM:
        c.fail(f"kernel/strides/pads/dilations must be <= {MAX_GEOM}")
    cm = c.int_attr("ceil_mode", lo=0)
    if cm not in (0, 1):
        c.fail(f"ceil_mode must be 0 or 1, got {cm}")
    if avg:
        cip = c.int_attr("count_include_pad", lo=0)
        if cip not in (0, 1):
            c.fail(f"count_include_pad must be 0 or 1, got {cip}")
    n, ch, h, w = x
    if h <= 0 or w <= 0:
        c.fail(f"empty input {x}")
    oh = _window_out(c, "H", h, kh, sh, dh, pt, pb, cm)
    ow = _window_out(c, "W", w, kw, sw, dw, pl, pr, cm)
    if oh <= 0 or ow <= 0:
        c.fail(f"empty output ({oh}, {ow})")
    _pool_taps_ok(c, "H", h, kh, sh, dh, pt, oh)
    _pool_taps_ok(c, "W", w, kw, sw, dw, pl, ow)
    return [(n, ch, oh, ow)]


def shape_global_pool(c: Ctx):
    x = c.shape(0)
    c.rank(0, x, 4)
    if x[2] <= 0 or x[3] <= 0:
        c.fail(f"empty spatial extent {x}")
    return [(x[0], x[1], 1, 1)]


def shape_binary(c: Ctx):
    out = broadcast(c, c.shape(0), c.shape(1))
    c.activation()
    return [out]


def shape_concat(c: Ctx):
    shapes = [c.shape(i) for i in range(len(c.inputs))]
    if any(s is None for s in shapes):
        c.fail("Concat inputs cannot be absent")
    r = len(shapes[0])
    axis = c.int_attr("axis", lo=0)
    if axis >= r:
        c.fail(f"axis {axis} out of range for rank {r}")
    total = 0
    for i, s in enumerate(shapes):
        if len(s) != r:
            c.fail(f"input {i} has rank {len(s)}, input 0 has rank {r}")
        for ax in range(r):
            if ax != axis and not _same((s[ax],), (shapes[0][ax],)):
                c.fail(f"input {i} shape {s} differs from input 0 shape {shapes[0]} "
                       f"on axis {ax}")
        if total is not None:
            total = None if s[axis] is None else total + s[axis]
    out = list(shapes[0])
    out[axis] = total
    if axis != 0 and out[0] is None:
        out[0] = next((s[0] for s in shapes if s[0] is not None), None)
    return [tuple(out)]


def shape_flatten(c: Ctx):
    x = c.shape(0)
    axis = c.int_attr("axis", lo=0)
    if axis > len(x):
        c.fail(f"axis {axis} out of range for rank {len(x)}")
    return [(_prod(x[:axis]), _prod(x[axis:]))]


def shape_reshape(c: Ctx):
    x = c.shape(0)
    shape = c.ints_attr("shape", None)
    if shape.count(-1) > 1:
        c.fail(f"shape {shape} has more than one -1")
    out = []
    for i, d in enumerate(shape):
        if d == 0:
            if i >= len(x):
                c.fail(f"shape {shape}: 0 at position {i} copies a dimension the "
                       f"input {x} does not have")
            out.append(x[i])
        elif d < -1:
            c.fail(f"shape {shape} has an invalid entry {d}")
        else:
            out.append(d)
    total = _prod(x)
    if -1 in out:
        j = out.index(-1)
        known = _prod(out[:j] + out[j + 1:])
        if total is None or known is None:
            # dynamic batch: resolvable when the batch is copied through by a 0 at axis 0
            rest = _prod(out[1:j] + out[j + 1:])
            if j != 0 and shape[0] == 0 and rest and _prod(x[1:]) is not None:
                if _prod(x[1:]) % rest:
                    c.fail(f"cannot reshape {x} into {shape}")
                out[j] = _prod(x[1:]) // rest
            else:
                out[j] = None
        else:
            if known == 0 or total % known:
                c.fail(f"cannot reshape {x} ({total} elements) into {shape}")
            out[j] = total // known
    elif total is not None and _prod(out) is not None and _prod(out) != total:
        c.fail(f"cannot reshape {x} ({total} elements) into {tuple(out)}")
    return [tuple(out)]


def shape_transpose(c: Ctx):
    x = c.shape(0)
    perm = c.ints_attr("perm", None)
    if sorted(perm) != list(range(len(x))):
        c.fail(f"perm {perm} is not a permutation of the {len(x)} axes of {x}")
    return [tuple(x[p] for p in perm)]


def shape_softmax(c: Ctx):
    x = c.shape(0)
    axis = c.int_attr("axis", lo=0)
    if axis >= len(x):
        c.fail(f"axis {axis} out of range for rank {len(x)}")
    if x[axis] == 0:
        c.fail(f"softmax over an empty axis ({x})")
    return [x]


def shape_pad(c: Ctx):
    x = c.shape(0)
    r = len(x)
    pads = c.ints_attr("pads", 2 * r, lo=0, what="must be non-negative")
    mode = c.choice_attr("mode", PAD_MODES)
    v = c.attr("value")
    if v is not None and (not _is_num(v) or math.isnan(float(v))):
        c.fail(f"value must be a number, got {v!r}")
    out = []
    for ax in range(r):
        b, e = pads[ax], pads[ax + r]
        d = x[ax]
        if d is None:
            if b or e:
                c.fail("cannot pad the dynamic batch axis")
            out.append(None)
            continue
        if mode == "reflect" and (b or e) and (b > d - 1 or e > d - 1):
            c.fail(f"reflect pads ({b}, {e}) on axis {ax} must be < its size {d}")
        if mode == "edge" and (b or e) and d == 0:
            c.fail(f"edge padding of an empty axis {ax}")
        out.append(d + b + e)
    return [tuple(out)]


def resize_geometry(h, w, scales, sizes, policy="stretch"):
    """(oh, ow, sh, sw) of a Resize on an h×w input (ONNX): with ``scales`` the output is
    floor(dim * scale) and the coordinate scales are the given ones; with ``sizes`` the
    scales are out / in, and a ``keep_aspect_ratio_policy`` other than "stretch" takes one
    scale for both axes (the min or max of the two ratios) and rounds dim * scale half up.
    Scales are Python floats (float64, as ONNX's reference computes them)."""
    if sizes is None:
        sh, sw = float(scales[0]), float(scales[1])
        return int(math.floor(h * sh)), int(math.floor(w * sw)), sh, sw
    oh, ow = int(sizes[0]), int(sizes[1])
    sh, sw = oh / h, ow / w
    if policy == "stretch":
        return oh, ow, sh, sw
    s = min(sh, sw) if policy == "not_larger" else max(sh, sw)
    return int(s * h + 0.5), int(s * w + 0.5), s, s


def resize_output_hw(h, w, scales, sizes, policy="stretch"):
    """(oh, ow) of a Resize (see :func:`resize_geometry`)."""
    return resize_geometry(h, w, scales, sizes, policy)[:2]


def shape_resize(c: Ctx):
    x = c.shape(0)
    c.rank(0, x, 4)
    mode = c.choice_attr("mode", RESIZE_MODES)
    ctm = c.choice_attr("coordinate_transformation_mode", RESIZE_COORD_MODES)
    if mode == "nearest":
        c.choice_attr("nearest_mode", RESIZE_NEAREST_MODES, default=REQUIRED)
    elif c.attrs.get("nearest_mode") is not None:
        c.choice_attr("nearest_mode", RESIZE_NEAREST_MODES)
    a = c.attr("cubic_coeff_a")
    if not _is_num(a) or not math.isfinite(float(a)):
        c.fail(f"cubic_coeff_a must be a finite number, got {a!r}")
    for flag in ("exclude_outside", "antialias"):
        if c.int_attr(flag) not in (0, 1):
            c.fail(f"attribute '{flag}' must be 0 or 1")
    if c.int_attr("antialias") and mode == "nearest":
        c.fail("antialias applies to the linear and cubic modes only")
    ev = c.attr("extrapolation_value")
    if not _is_num(ev) or math.isnan(float(ev)):
        c.fail(f"extrapolation_value must be a number, got {ev!r}")
    roi = c.attr("roi")
    if ctm == "tf_crop_and_resize":
        if not isinstance(roi, (list, tuple)) or len(roi) != 4 or any(
                not _is_num(v) or not math.isfinite(float(v)) for v in roi):
            c.fail(f"tf_crop_and_resize needs roi [y0, x0, y1, x1] (4 finite numbers), "
                   f"got {roi!r}")
    elif roi is not None:
        c.fail("roi is used by coordinate_transformation_mode 'tf_crop_and_resize' only")
    policy = c.choice_attr("keep_aspect_ratio_policy", RESIZE_ASPECT_POLICIES)
    scales = c.attrs.get("scales")
    sizes = c.attrs.get("sizes")
    if (scales is None) == (sizes is None):
        c.fail("exactly one of 'scales' and 'sizes' must be given (the other null)")
    if scales is not None:
        if not isinstance(scales, (list, tuple)) or len(scales) != 2 or any(
                not _is_num(s) for s in scales):
            c.fail(f"scales must be two numbers [sh, sw], got {scales!r}")
        if not all(math.isfinite(float(s)) and s > 0 for s in scales):
            c.fail(f"scales must be positive and finite, got {scales}")
        if policy != "stretch":
            c.fail("keep_aspect_ratio_policy applies to 'sizes' only")
    else:
        sizes = c.ints_attr("sizes", 2, lo=1, what="must be positive")
    if x[2] <= 0 or x[3] <= 0:
        c.fail(f"empty input {x}")
    oh, ow = resize_output_hw(x[2], x[3], scales, sizes, policy)
    if oh <= 0 or ow <= 0:
        c.fail(f"scales {scales} make an empty output ({oh}, {ow}) from {x}")
    return [(x[0], x[1], oh, ow)]


def shape_depth_to_space(c: Ctx):
    x = c.shape(0)
    c.rank(0, x, 4)
    b = c.int_attr("blocksize", lo=1)
    c.choice_attr("mode", ("DCR", "CRD"))
    n, ch, h, w = x
    if ch % (b * b):
        c.fail(f"channels {ch} not divisible by blocksize² = {b * b}")
    return [(n, ch // (b * b), h * b, w * b)]


def slice_normalize(s, e, step, dim):
    """ONNX Slice bounds (negative counts from the end; clamped) on an axis of size dim,
    as the normalized pair :func:`slice_ranges` takes (for a negative step, end -1 means
    "through index 0")."""
    if s < 0:
        s += dim
    if e < 0:
        e += dim
    if step > 0:
        return min(max(s, 0), dim), min(max(e, 0), dim)
    return min(max(s, -1), dim - 1), min(max(e, -1), dim - 1)


def slice_ranges(shape, starts, ends, axes, steps, onnx_bounds=0):
    """Per-axis (start, stop, step) of a Slice: Python ``range`` semantics (for a negative
    step, stop = -1 means "down to and including index 0"). ``onnx_bounds``: starts/ends
    are ONNX's (normalized here against ``shape``, per plan), else already normalized."""
    out = [(0, d, 1) for d in shape]
    for st, en, ax, sp in zip(starts, ends, axes, steps):
        if onnx_bounds:
            st, en = slice_normalize(int(st), int(en), int(sp), int(shape[ax]))
        out[ax] = (st, en, sp)
    return out


def shape_slice(c: Ctx):
    x = c.shape(0)
    r = len(x)
    starts = c.ints_attr("starts", None)
    n = len(starts)
    ends = c.ints_attr("ends", n)
    axes = c.ints_attr("axes", n, lo=0)
    steps = c.ints_attr("steps", n)
    raw = c.int_attr("onnx_bounds")
    if raw not in (0, 1):
        c.fail("attribute 'onnx_bounds' must be 0 or 1")
    if len(set(axes)) != n or any(a >= r for a in axes):
        c.fail(f"axes {axes} must be distinct axes of the rank-{r} input")
    out = list(x)
    for st, en, ax, sp in zip(starts, ends, axes, steps):
        d = x[ax]
        if sp == 0:
            c.fail("steps must be non-zero")
        if d is None:
            c.fail("cannot slice the dynamic batch axis")
        if raw:
            st, en = slice_normalize(st, en, sp, d)
        if sp > 0:
            if not (0 <= st <= d and 0 <= en <= d):
                c.fail(f"axis {ax}: starts/ends ({st}, {en}) not normalized to [0, {d}] "
                       f"for step {sp}")
            length = max(0, -(-(en - st) // sp))
        else:
            if not (0 <= st <= d - 1 and -1 <= en <= d - 1):
                c.fail(f"axis {ax}: starts/ends ({st}, {en}) not normalized to "
                       f"[0, {d - 1}] / [-1, {d - 1}] for step {sp}")
            length = max(0, -(-(st - en) // -sp))
        if length == 0:
            c.fail(f"axis {ax}: slice ({st}:{en}:{sp}) is empty")
        out[ax] = length
    return [tuple(out)]
