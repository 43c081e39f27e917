"""NumPy reference implementations of every IR op (docs/IR.md).

Plain, vectorized, obviously-correct NumPy. Precision:

* Conv, ConvTranspose, Gemm, MatMul, pooling sums, GlobalAveragePool and Softmax
  accumulate in **float64** (bias and residual are added in float64 too) and cast to
  float32 once; the fused activation is then applied in float32 (``ir.act_numpy``).
* Elementwise ops (Affine, PRelu, Add/Sub/Mul/Div, activations) compute in float32, as
  the IR's activations are float32.
* Resize computes source coordinates in float32 in the order the ONNX spec writes them
  (what onnxruntime does), so ties of the nearest modes land the same way; tap weights
  are computed in float64 and stored as float32 (edgenet/resize.py), applied in float64.

``prepare`` always dequantizes weights/constants to float32 once (``policy`` is accepted
and ignored: the reference has no packed mode). ``run`` writes into the preallocated
outputs; unlike a real backend it does allocate temporaries.
"""
from __future__ import annotations

import numpy as np

from .. import ir
from .. import resize as rz
from ..ops import node_attrs


class OpImpl:
    """Backend contract: prepare once per model, run per inference."""

    def prepare(self, node, consts, policy="expanded"):
        state = {"const": {}}
        for i, nm in enumerate(node["inputs"]):
            if nm and nm in consts:
                state["const"][i] = np.ascontiguousarray(consts[nm].dequantize(),
                                                         dtype=np.float32)
        state["act"] = ir.act_code((node.get("attrs") or {}).get("activation"))
        return state

    def run(self, node, state, inputs, outputs):
        raise NotImplementedError

    # helpers
    @staticmethod
    def args(node, state, inputs):
        """Inputs with constants substituted (None for absent optional inputs)."""
        out = []
        for i, nm in enumerate(node["inputs"]):
            if i in state["const"]:
                out.append(state["const"][i])
            elif nm == "":
                out.append(None)
            else:
                out.append(np.asarray(inputs[i], dtype=np.float32))
        return out


def _act(state, y):
    code, a, b = state["act"]
    return ir.act_numpy(np.asarray(y, dtype=np.float32), code, a, b)


def _attrs(node):
    return node.get("attrs") or {}


# ------------------------------------------------------------------------ convolution

def _taps(xp, kh, kw, sh, sw, dh, dw, oh, ow):
    """(N, C, kh, kw, oh, ow) view-stack of the strided/dilated windows of padded xp."""
    cols = np.empty(xp.shape[:2] + (kh, kw, oh, ow), dtype=xp.dtype)
    for i in range(kh):
        for j in range(kw):
            cols[:, :, i, j] = xp[:, :, i * dh: i * dh + sh * (oh - 1) + 1: sh,
                                  j * dw: j * dw + sw * (ow - 1) + 1: sw]
    return cols


class Conv(OpImpl):
    def prepare(self, node, consts, policy="expanded"):
        state = super().prepare(node, consts, policy)
        aq = node.get("_aq")
        if aq is not None:   # int8 activations: the weights the int8 kernels use, as floats
            from .. import quant
            o = int(consts[node["inputs"][1]].shape[0])
            wf = state["const"][1]
            lev, alpha = quant.conv_levels(consts[node["inputs"][1]], o, wf.size // o)
            state["const"][1] = (lev.astype(np.float32) * alpha[:, None]).reshape(wf.shape)
        return state

    def run(self, node, state, inputs, outputs):
        x, w, b, r = (self.args(node, state, inputs) + [None, None])[:4]
        aq = node.get("_aq")
        if aq is not None:   # int8 activations: the uint8 values the input stands for
            from .. import quant
            x = quant.fake_quant(x, aq[0], aq[1])
        a = _attrs(node)
        g = int(a["group"])
        sh, sw = a["strides"]
        dh, dw = a["dilations"]
        pt, pl, pb, pr = a["pads"]
        y = outputs[0]
        n, c, _, _ = x.shape
        o, cg, kh, kw = w.shape
        oh, ow = y.shape[2:]
        xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pt, pb), (pl, pr)))
        cols = _taps(xp, kh, kw, sh, sw, dh, dw, oh, ow)
        cols = cols.reshape(n, g, cg, kh, kw, oh, ow)
        wg = w.astype(np.float64).reshape(g, o // g, cg, kh, kw)
        acc = np.einsum("ngcijyx,gocij->ngoyx", cols, wg, optimize=True).reshape(n, o, oh, ow)
        if b is not None:
            acc = acc + b.astype(np.float64)[None, :, None, None]
        if r is not None:
            acc = acc + r.astype(np.float64)
        y[...] = _act(state, acc.astype(np.float32))


class ConvTranspose(OpImpl):
    """Scatter-add of the direct definition: input pixel (ih, iw) of channel c adds
    X·W[o, c_local, i, j] at full-output position (ih·sh + i·dh, iw·sw + j·dw); the
    output is that full map cropped by pads [t, l, b, r] (output_padding extends it)."""

    def run(self, node, state, inputs, outputs):
        x, w, b = (self.args(node, state, inputs) + [None])[:3]
        a = _attrs(node)
        g = int(a["group"])
        sh, sw = a["strides"]
        dh, dw = a["dilations"]
        pt, pl, _, _ = a["pads"]
        y = outputs[0]
        n, c, h, wd = x.shape
        o, cg, kh, kw = w.shape
        og = o // g
        oh, ow = y.shape[2:]
        oph, opw = a["output_padding"]
        fh = sh * (h - 1) + (kh - 1) * dh + 1 + oph
        fw = sw * (wd - 1) + (kw - 1) * dw + 1 + opw
        full = np.zeros((n, g, og, max(fh, pt + oh), max(fw, pl + ow)), dtype=np.float64)
        xg = x.astype(np.float64).reshape(n, g, cg, h, wd)
        wg = w.astype(np.float64).reshape(g, og, cg, kh, kw)
        for i in range(kh):
            for j in range(kw):
                contrib = np.einsum("ngchw,goc->ngohw", xg, wg[:, :, :, i, j])
                full[:, :, :, i * dh: i * dh + sh * (h - 1) + 1: sh,
                     j * dw: j * dw + sw * (wd - 1) + 1: sw] += contrib
        acc = full.reshape(n, o, full.shape[3], full.shape[4])[:, :, pt: pt + oh, pl: pl + ow]
        if b is not None:
            acc = acc + b.astype(np.float64)[None, :, None, None]
        y[...] = _act(state, acc.astype(np.float32))


class Gemm(OpImpl):
    def run(self, node, state, inputs, outputs):
        x, w, b = (self.args(node, state, inputs) + [None])[:3]
        acc = x.astype(np.float64) @ w.astype(np.float64).T
        if b is not None:
            acc = acc + b.astype(np.float64)
        outputs[0][...] = _act(state, acc.astype(np.float32))


class MatMul(OpImpl):
    def run(self, node, state, inputs, outputs):
        a, b = self.args(node, state, inputs)
        outputs[0][...] = np.matmul(a.astype(np.float64), b.astype(np.float64)).astype(np.float32)


def _chan(v, ndim):
    """(C,) -> broadcastable on axis 1 of a rank-ndim tensor."""
    return v.reshape((1, -1) + (1,) * (ndim - 2))


class Affine(OpImpl):
    def run(self, node, state, inputs, outputs):
        x, s, t = self.args(node, state, inputs)
        outputs[0][...] = _act(state, x * _chan(s, x.ndim) + _chan(t, x.ndim))


class Act(OpImpl):
    def run(self, node, state, inputs, outputs):
        (x,) = self.args(node, state, inputs)
        outputs[0][...] = _act(state, x)


class PRelu(OpImpl):
    def run(self, node, state, inputs, outputs):
        x, s = self.args(node, state, inputs)
        outputs[0][...] = np.where(x >= 0, x, x * _chan(s, x.ndim))


# ------------------------------------------------------------------------ pooling

def _pool_geometry(node, x, y):
    a = node_attrs(node)   # spec defaults filled in (edgenet/ops.py)
    kh, kw = a["kernel"]
    sh, sw = a["strides"]
    dh, dw = a["dilations"]
    pt, pl, pb, pr = a["pads"]
    h, w = x.shape[2:]
    oh, ow = y.shape[2:]
    # extend the far padding so the windows ceil_mode adds are fully addressable
    eb = max(pb, (oh - 1) * sh + (kh - 1) * dh + 1 - h - pt)
    er = max(pr, (ow - 1) * sw + (kw - 1) * dw + 1 - w - pl)
    return (kh, kw, sh, sw, dh, dw, pt, pl, pb, pr, eb, er, h, w, oh, ow)


def _axis_counts(size, k, s, d, p0, p1, out, include_pad):
    """Per output index: taps in [0, size) (or in the padded extent [-p0, size+p1))."""
    lo, hi = (-p0, size + p1) if include_pad else (0, size)
    pos = np.arange(out)[:, None] * s - p0 + np.arange(k)[None, :] * d
    return ((pos >= lo) & (pos < hi)).sum(axis=1)


class MaxPool(OpImpl):
    def run(self, node, state, inputs, outputs):
        (x,) = self.args(node, state, inputs)
        y = outputs[0]
        kh, kw, sh, sw, dh, dw, pt, pl, pb, pr, eb, er, h, w, oh, ow = _pool_geometry(node, x, y)
        xp = np.pad(x, ((0, 0), (0, 0), (pt, eb), (pl, er)), constant_values=-np.inf)
        y[...] = _taps(xp, kh, kw, sh, sw, dh, dw, oh, ow).max(axis=(2, 3))


class AveragePool(OpImpl):
    """count_include_pad=1 divides by the taps inside the *padded* extent
    [-pads_begin, size + pads_end) (not the ones ceil_mode adds past it);
    count_include_pad=0 divides by the in-image taps."""

    def run(self, node, state, inputs, outputs):
        (x,) = self.args(node, state, inputs)
        y = outputs[0]
        kh, kw, sh, sw, dh, dw, pt, pl, pb, pr, eb, er, h, w, oh, ow = _pool_geometry(node, x, y)
        cip = int(_attrs(node)["count_include_pad"])
        xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pt, eb), (pl, er)))
        s = _taps(xp, kh, kw, sh, sw, dh, dw, oh, ow).sum(axis=(2, 3))
        ch = _axis_counts(h, kh, sh, dh, pt, pb, oh, cip)
        cw = _axis_counts(w, kw, sw, dw, pl, pr, ow, cip)
        y[...] = (s / (ch[:, None] * cw[None, :])).astype(np.float32)


class GlobalAveragePool(OpImpl):
    def run(self, node, state, inputs, outputs):
        (x,) = self.args(node, state, inputs)
        outputs[0][...] = x.astype(np.float64).mean(axis=(2, 3), keepdims=True).astype(np.float32)


class GlobalMaxPool(OpImpl):
    def run(self, node, state, inputs, outputs):
        (x,) = self.args(node, state, inputs)
        outputs[0][...] = x.max(axis=(2, 3), keepdims=True)


# ------------------------------------------------------------------------ elementwise

class _Binary(OpImpl):
    fn = None

    def run(self, node, state, inputs, outputs):
        a, b = self.args(node, state, inputs)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            outputs[0][...] = _act(state, type(self).fn(a, b))


class Add(_Binary):
    fn = np.add


class Sub(_Binary):
    fn = np.subtract


class Mul(_Binary):
    fn = np.multiply


class Div(_Binary):
    fn = np.divide


# ------------------------------------------------------------------------ layout

class Concat(OpImpl):
    def run(self, node, state, inputs, outputs):
        xs = self.args(node, state, inputs)
        outputs[0][...] = np.concatenate(xs, axis=int(_attrs(node)["axis"]))


class Flatten(OpImpl):
    def run(self, node, state, inputs, outputs):
        (x,) = self.args(node, state, inputs)
        outputs[0][...] = x.reshape(outputs[0].shape)


class Reshape(OpImpl):
    def run(self, node, state, inputs, outputs):
        (x,) = self.args(node, state, inputs)
        outputs[0][...] = x.reshape(outputs[0].shape)


class Transpose(OpImpl):
    def run(self, node, state, inputs, outputs):
        (x,) = self.args(node, state, inputs)
        outputs[0][...] = np.transpose(x, _attrs(node)["perm"])


class Softmax(OpImpl):
    def run(self, node, state, inputs, outputs):
        (x,) = self.args(node, state, inputs)
        ax = int(_attrs(node)["axis"])
        z = x.astype(np.float64)
        e = np.exp(z - z.max(axis=ax, keepdims=True))
        outputs[0][...] = (e / e.sum(axis=ax, keepdims=True)).astype(np.float32)


class Pad(OpImpl):
    def run(self, node, state, inputs, outputs):
        (x,) = self.args(node, state, inputs)
        a = _attrs(node)
        r = x.ndim
        p = a["pads"]
        width = [(p[i], p[i + r]) for i in range(r)]
        mode = a["mode"]
        if mode == "constant":
            v = a.get("value")
            outputs[0][...] = np.pad(x, width, mode="constant",
                                     constant_values=np.float32(0.0 if v is None else v))
        else:
            outputs[0][...] = np.pad(x, width, mode=mode)


class Resize(OpImpl):
    """ONNX Resize on the H, W axes: the per-axis tap tables of edgenet/resize.py applied
    in float64 (H first, then W, as ONNX's reference does); tf_crop_and_resize outputs
    outside the input are ``extrapolation_value``."""

    def run(self, node, state, inputs, outputs):
        (x,) = self.args(node, state, inputs)
        a = node_attrs(node)
        y = outputs[0]
        iy, wy, ey, ix, wx, ex = rz.tables(a, *x.shape[2:], *y.shape[2:])
        rows = np.einsum("ncokw,ok->ncow", x.astype(np.float64)[:, :, iy, :], wy)
        out = np.einsum("ncyok,ok->ncyo", rows[:, :, :, ix], wx)
        mask = ey.astype(bool)[:, None] | ex.astype(bool)[None, :]
        y[...] = np.where(mask, np.float64(a["extrapolation_value"]), out)


class DepthToSpace(OpImpl):
    def run(self, node, state, inputs, outputs):
        (x,) = self.args(node, state, inputs)
        a = _attrs(node)
        b = int(a["blocksize"])
        n, c, h, w = x.shape
        if a["mode"] == "DCR":
            t = x.reshape(n, b, b, c // (b * b), h, w).transpose(0, 3, 4, 1, 5, 2)
        else:
            t = x.reshape(n, c // (b * b), b, b, h, w).transpose(0, 1, 4, 2, 5, 3)
        outputs[0][...] = t.reshape(outputs[0].shape)


class Slice(OpImpl):
    """Normalized starts/ends: Python ``range(start, end, step)`` per axis (already
    clamped per ONNX; for a negative step end = -1 means through index 0)."""

    def run(self, node, state, inputs, outputs):
        (x,) = self.args(node, state, inputs)
        a = _attrs(node)
        idx = tuple(np.arange(st, en, sp) for st, en, sp in
                    ir.slice_ranges(x.shape, a["starts"], a["ends"], a["axes"], a["steps"],
                                    a.get("onnx_bounds", 0)))
        outputs[0][...] = x[np.ix_(*idx)]


# the one table from op to implementation on this backend (the oracle: no exclusions)
OPS = {
    "Conv": Conv(), "ConvTranspose": ConvTranspose(), "Gemm": Gemm(), "MatMul": MatMul(),
    "Affine": Affine(), "Act": Act(), "PRelu": PRelu(),
    "MaxPool": MaxPool(), "AveragePool": AveragePool(),
    "GlobalAveragePool": GlobalAveragePool(), "GlobalMaxPool": GlobalMaxPool(),
    "Add": Add(), "Sub": Sub(), "Mul": Mul(), "Div": Div(),
    "Concat": Concat(), "Flatten": Flatten(), "Reshape": Reshape(),
    "Transpose": Transpose(), "Softmax": Softmax(), "Pad": Pad(), "Resize": Resize(),
    "DepthToSpace": DepthToSpace(), "Slice": Slice(),
}
EXCLUDED: dict = {}   # op -> why there is no reference (should stay empty)


def run_node(node, inputs, consts, policy="expanded", backend=None):
    """Validate, infer shapes, prepare and run one node with a backend's OPS table
    (default: this reference). ``inputs`` is aligned with node["inputs"] (None at
    constant and absent inputs). Returns the list of outputs."""
    table = OPS if backend is None else backend
    in_shapes = [None if a is None else tuple(np.shape(a)) for a in inputs]
    shapes = ir.infer_shapes(node, in_shapes, consts)
    impl = table[node["op"]]
    state = impl.prepare(node, consts, policy)
    outs = [np.empty(s, dtype=np.float32) for s in shapes]
    impl.run(node, state, [None if a is None else np.ascontiguousarray(a, dtype=np.float32)
                           for a in inputs], outs)
    return outs
