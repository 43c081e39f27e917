"""Calibrated post-training quantization (PTQ) of ternary / quinary weights (NumPy only).

Plain rules (converters/quantize.py) minimize the *weight* error ‖W − α·T‖ of each layer
on its own; a trained network then loses most of its accuracy (docs/ACCURACY.md). With a
few hundred unlabeled calibration samples this module minimizes each layer's *output*
error instead, layer by layer, in the spirit of OBQ/GPTQ, restricted to the seed's levels
(T ∈ {-1, 0, +1} ternary, {-2..2} quinary; shared/quantization.md):

* the network is run on the samples twice side by side: a float stream (the original
  weights) and a quantized stream, in which every layer already processed holds its
  quantized weights (so the next layer is fitted to the inputs it will really see and the
  errors do not compound);
* for each Conv/Gemm (per group), X_q / X_f are the im2col inputs of the layer in the two
  streams, H = X_q X_qᵀ + λ·mean(diag H)·I, and the target is the least-squares weight
  W* = W · (X_f X_qᵀ) · H⁻¹, so that ‖W X_f − Q X_q‖² = const + (W* − Q) H (W* − Q)ᵀ
  (``float_target=False``: W* = W, plain GPTQ);
* per output channel, Q = α·T: GPTQ over the input columns (descending diag H), each
  column's rounding error propagated to the not-yet-quantized columns through the upper
  Cholesky factor of H⁻¹; then coordinate-descent sweeps on (w − αt)ᵀH(w − αt) and the
  closed-form least-squares refit α = wᵀHt / tᵀHt, alternated; the whole is repeated for a
  few initial scales α₀·s (s plays the role of the threshold: GPTQ rounds at α/2) and the
  best per channel is kept;
* bias correction: each layer's bias is shifted so that its mean pre-activation output per
  channel over the samples equals the float network's. With BatchNorm folded, this and the
  α refit re-estimate the folded affine map (mean by the bias, scale by α) on the
  quantized network's own statistics.

Nothing else changes: same file format, same kernels, only levels, scales and biases.
The executor is the NumPy reference backend (edgenet.reference), run in batch chunks.
ConvTranspose layers have no im2col here: they get the weight-space fit (H = I) plus bias
correction.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from .quantize import int8_quantize, quinarize, ternarize

LEVELS = {"t2": 1, "q3": 2}
WEIGHT_OPS = ("Conv", "ConvTranspose", "Gemm")
ENCODINGS = ("t2", "q3", "i8", "f16", "f32")
SCALES = (0.7, 0.85, 1.0, 1.2, 1.45)     # initial α multipliers tried per channel
DAMP = 0.01
MAX_ROWS = 32768                         # im2col rows (output positions) per layer for H
CHUNK = 32                               # samples per reference-backend call


# ----------------------------------------------------------------------------- layer math

def _damped(H, damp):
    """H + damp·mean(diag)·I per group; dead inputs (diag 0) get 1 on the diagonal."""
    H = np.array(H, dtype=np.float64, copy=True)
    d = np.einsum("gkk->gk", H)
    mean = d.mean(axis=1)
    mean = np.where(mean > 0, mean, 1.0)
    idx = np.arange(H.shape[1])
    H[:, idx, idx] += (damp * mean)[:, None]
    dead = d <= 0
    if dead.any():
        gi, ki = np.nonzero(dead)
        H[gi, ki, ki] = 1.0
    return H


def _row_loss(W, T, a, H):
    E = W - a[..., None] * T
    return np.einsum("grk,grk->gr", E @ H, E)


def _refit_alpha(W, T, H, a_old):
    tH = T @ H
    num = np.einsum("grk,grk->gr", tH, W)
    den = np.einsum("grk,grk->gr", tH, T)
    a = np.divide(num, den, out=np.zeros_like(num), where=den > 0)
    # a negative α is a sign flip of T: keep α ≥ 0
    neg = a < 0
    if neg.any():
        T[neg] = -T[neg]
        a[neg] = -a[neg]
    del a_old
    return a


def _gptq(W, U, a, L):
    """GPTQ with a fixed per-row scale: W (G,R,K) target, U (G,K,K) upper Cholesky factor
    of H⁻¹, a (G,R); returns integer levels (G,R,K) in [-L, L]."""
    W = W.copy()
    T = np.zeros_like(W)
    safe = np.where(a > 0, a, 1.0)
    for j in range(W.shape[2]):
        w = W[:, :, j]
        t = np.clip(np.rint(w / safe), -L, L)
        t[a <= 0] = 0
        T[:, :, j] = t
        err = (w - a * t) / U[:, j, j][:, None]
        if j + 1 < W.shape[2]:
            W[:, :, j + 1:] -= err[:, :, None] * U[:, None, j, j + 1:]
    return T


def _sweep(W, T, a, H, L):
    """One coordinate-descent sweep on (w − a t)ᵀ H (w − a t) over the columns."""
    g = (W - a[..., None] * T) @ H          # H r, kept up to date
    safe = np.where(a > 0, a, 1.0)
    for j in range(W.shape[2]):
        hjj = H[:, j, j][:, None]
        cur = T[:, :, j]
        new = np.clip(np.rint(cur + g[:, :, j] / (safe * hjj)), -L, L)
        new[a <= 0] = 0
        d = (new - cur) * a
        if np.any(d):
            g -= d[:, :, None] * H[:, None, j, :]
            T[:, :, j] = new
    return T


def quantize_rows(W, H, L, *, alpha0=None, damp=DAMP, scales=SCALES, sweeps=2):
    """Output-error quantization of weight rows sharing an input Hessian.

    W: (G, R, K) float target weights (G groups of R output channels), H: (G, K, K)
    = Σ x xᵀ of the layer input per group, L: 1 (ternary) or 2 (quinary).
    Minimizes (w − α t)ᵀ H (w − α t) per row over t ∈ {-L..L}^K and α ≥ 0.
    Returns (T int8 (G, R, K), alpha float64 (G, R)).
    """
    W = np.asarray(W, dtype=np.float64)
    G, R, K = W.shape
    Hd = _damped(H, damp)
    perm = np.argsort(-np.einsum("gkk->gk", Hd), axis=1, kind="stable")
    Wp = np.take_along_axis(W, perm[:, None, :], axis=2)
    Hp = np.take_along_axis(np.take_along_axis(Hd, perm[:, :, None], axis=1),
                            perm[:, None, :], axis=2)
    U = np.linalg.cholesky(np.linalg.inv(Hp)).transpose(0, 2, 1)
    if alpha0 is None:
        rows = W.reshape(G * R, K)
        alpha0 = (ternarize(rows, "channel", "optimal")[1] if L == 1
                  else quinarize(rows, "channel")[1]).astype(np.float64).reshape(G, R)
    best_T = np.zeros_like(Wp)
    best_a = np.zeros((G, R))
    best_loss = np.full((G, R), np.inf)
    for s in scales:
        a = alpha0 * s
        T = _gptq(Wp, U, a, L)
        a = _refit_alpha(Wp, T, Hp, a)
        for _ in range(sweeps):
            T = _sweep(Wp, T, a, Hp, L)
            a = _refit_alpha(Wp, T, Hp, a)
        loss = _row_loss(Wp, T, a, Hp)
        better = loss < best_loss
        best_loss = np.where(better, loss, best_loss)
        best_a = np.where(better, a, best_a)
        best_T = np.where(better[..., None], T, best_T)
    best_T[best_a <= 0] = 0
    inv = np.argsort(perm, axis=1)
    T = np.take_along_axis(best_T, inv[:, None, :], axis=2)
    return T.astype(np.int8), best_a


def plain_rows(W, L, threshold="optimal"):
    """The plain rules (quantize.py) on (G, R, K) rows: (T, alpha) for comparisons."""
    W = np.asarray(W, dtype=np.float64)
    G, R, K = W.shape
    rows = W.reshape(G * R, K)
    lv, a = (ternarize(rows, "channel", threshold) if L == 1 else quinarize(rows, "channel"))
    return lv.reshape(G, R, K), a.astype(np.float64).reshape(G, R)


# ----------------------------------------------------------------------------- executor

class Const:
    """Stand-in for format.Packed in the reference executor (already float32)."""

    __slots__ = ("arr", "shape")

    def __init__(self, a):
        self.arr = np.ascontiguousarray(a, dtype=np.float32)
        self.shape = self.arr.shape

    def dequantize(self):
        return self.arr


def _conv(node, ins, consts):
    """Conv in float32: depthwise as a sum of shifted planes, others as im2col + matmul
    per group (the reference backend accumulates in float64 with einsum: ~10x slower)."""
    from edgenet import ir

    names = node["inputs"]
    x = ins[0]
    w = consts[names[1]].dequantize()
    b = consts[names[2]].dequantize() if len(names) > 2 and names[2] else None
    r = ins[3] if len(names) > 3 and names[3] else None
    a = node.get("attrs") or {}
    g = int(a.get("group", 1))
    sh, sw = a["strides"]
    dh, dw = a["dilations"]
    pt, pl, pb, pr = a["pads"]
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    oh = (h + pt + pb - dh * (kh - 1) - 1) // sh + 1
    ow = (wd + pl + pr - dw * (kw - 1) - 1) // sw + 1
    if g > 1 and cg == 1 and o == g:
        xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
        acc = np.zeros((n, c, oh, ow), np.float32)
        for i in range(kh):
            for j in range(kw):
                acc += w[:, 0, i, j][None, :, None, None] * xp[
                    :, :, i * dh: i * dh + sh * (oh - 1) + 1: sh,
                    j * dw: j * dw + sw * (ow - 1) + 1: sw]
    else:
        acc = np.empty((n, o, oh * ow), np.float32)
        wg = w.reshape(g, o // g, -1)
        for s in range(0, n, CHUNK):
            cols = _im2col(x[s:s + CHUNK], node, w.shape)        # (n, g, K, P)
            for gi in range(g):
                acc[s:s + CHUNK, gi * (o // g):(gi + 1) * (o // g)] = \
                    np.matmul(wg[gi][None], cols[:, gi])
        acc = acc.reshape(n, o, oh, ow)
    if b is not None:
        acc += b[None, :, None, None]
    if r is not None:
        acc += r
    code, p0, p1 = ir.act_code(a.get("activation"))
    return [ir.act_numpy(acc, code, p0, p1)]


def run_node(node, values, consts, chunk=CHUNK):
    """Run one IR node on batched activations with the NumPy reference backend, in chunks
    of the batch axis. Returns the list of outputs (full batch)."""
    from edgenet.reference import run_node as ref_run

    names = node["inputs"]
    ins = [None if (n == "" or n in consts) else values[n] for n in names]
    if node["op"] == "Conv" and ins[0] is not None and ins[0].ndim == 4:
        return _conv(node, ins, consts)
    n = next((a.shape[0] for a in ins if a is not None), None)
    if n is None or n <= chunk:
        return ref_run(node, ins, consts)
    parts = []
    for s in range(0, n, chunk):
        parts.append(ref_run(node, [None if a is None else a[s:s + chunk] for a in ins],
                             consts))
    return [np.concatenate([p[i] for p in parts]) for i in range(len(parts[0]))]


def _last_use(nodes, keep):
    last = {}
    for i, nd in enumerate(nodes):
        for t in nd["inputs"]:
            if t:
                last[t] = i
    for k in keep:
        last[k] = len(nodes)
    return last


def float_consts(g):
    """Executor constants for the float network (weights with folded factors)."""
    c = {k: Const(v) for k, v in g.consts.items()}
    for k, w in g.weights.items():
        c[k] = Const(folded(w, w.values))
    return c


def folded(w, vals):
    """Weight values ``vals`` (levels or dequantized) times the per-channel folded factor."""
    v = np.asarray(vals, dtype=np.float64)
    return v * np.asarray(w.mult, np.float64).reshape((-1,) + (1,) * (v.ndim - 1))


def forward(g, consts, x, chunk=CHUNK):
    """Outputs {name: array} of the IR graph on inputs ``x`` (one-input graphs: an array;
    else a dict)."""
    feeds = x if isinstance(x, dict) else {g.inputs[0]["name"]: np.asarray(x, np.float32)}
    outs = [o["name"] for o in g.outputs]
    last = _last_use(g.nodes, outs)
    vals = dict(feeds)
    for i, nd in enumerate(g.nodes):
        for name, v in zip(nd["outputs"], run_node(nd, vals, consts, chunk)):
            vals[name] = v
        for t in set(nd["inputs"]):
            if t in vals and last.get(t, -1) <= i and t not in outs:
                del vals[t]
    return {o: vals[o] for o in outs}


# ----------------------------------------------------------------------------- statistics

def _im2col(x, node, wshape, ys=None):
    """(N, G, K_g, P) float32 im2col of a Conv input (K_g = C/g·kh·kw in weight order);
    ``ys``: only these output rows (P = len(ys)·ow)."""
    a = node.get("attrs") or {}
    g = int(a.get("group", 1))
    sh, sw = a["strides"]
    dh, dw = a["dilations"]
    pt, pl, pb, pr = a["pads"]
    o, cg, kh, kw = wshape
    n, c, h, w = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    oh = (h + pt + pb - dh * (kh - 1) - 1) // sh + 1
    ow = (w + pl + pr - dw * (kw - 1) - 1) // sw + 1
    if ys is not None:
        cols = np.empty((n, c, kh, kw, len(ys), ow), dtype=np.float32)
        for i in range(kh):
            rows = xp[:, :, i * dh + sh * np.asarray(ys)]
            for j in range(kw):
                cols[:, :, i, j] = rows[..., j * dw: j * dw + sw * (ow - 1) + 1: sw]
        return cols.reshape(n, g, cg * kh * kw, len(ys) * ow)
    cols = np.empty((n, c, kh, kw, oh, ow), dtype=np.float32)
    for i in range(kh):
        for j in range(kw):
            cols[:, :, i, j] = xp[:, :, i * dh: i * dh + sh * (oh - 1) + 1: sh,
                                  j * dw: j * dw + sw * (ow - 1) + 1: sw]
    return cols.reshape(n, g, cg * kh * kw, oh * ow)


def _out_hw(x, node, wshape):
    a = node.get("attrs") or {}
    sh, sw = a["strides"]
    dh, dw = a["dilations"]
    pt, pl, pb, pr = a["pads"]
    kh, kw = wshape[2:]
    h, w = x.shape[2:]
    return ((h + pt + pb - dh * (kh - 1) - 1) // sh + 1,
            (w + pl + pr - dw * (kw - 1) - 1) // sw + 1)


def layer_stats(node, wshape, xq, xf=None, *, max_rows=MAX_ROWS, chunk=CHUNK, seed=0):
    """H = Σ x_q x_qᵀ and (with ``xf``) C = Σ x_f x_qᵀ per group, over at most ``max_rows``
    im2col rows sampled uniformly (fixed seed), and the means of the im2col rows over all
    positions. Returns (H, C or None) (G, K, K) float64, (mu_q, mu_f or None) (G, K)."""
    rng = np.random.default_rng(seed)
    n = xq.shape[0]
    if node["op"] == "Gemm":
        xq2 = xq.reshape(n, -1).astype(np.float64)
        xf2 = None if xf is None else xf.reshape(n, -1).astype(np.float64)
        mus = (xq2.mean(axis=0)[None], None if xf2 is None else xf2.mean(axis=0)[None])
        if n > max_rows:
            idx = np.sort(rng.choice(n, max_rows, replace=False))
            xq2 = xq2[idx]
            xf2 = None if xf2 is None else xf2[idx]
        H = (xq2.T @ xq2)[None]
        C = None if xf2 is None else (xf2.T @ xq2)[None]
        return (H, C), mus
    oh, ow = _out_hw(xq, node, wshape)
    nrows = max(1, min(oh, -(-max_rows // (max(n, 1) * ow))))   # output rows per sample
    H = C = mq = mf = None
    cnt = 0
    for s in range(0, n, chunk):
        ys = np.sort(rng.choice(oh, nrows, replace=False)) if nrows < oh else None
        cq = _im2col(xq[s:s + chunk], node, wshape, ys)
        cf = None if xf is None else _im2col(xf[s:s + chunk], node, wshape, ys)
        nn_, G, K, P = cq.shape
        if H is None:
            H = np.zeros((G, K, K))
            C = None if xf is None else np.zeros((G, K, K))
            mq = np.zeros((G, K))
            mf = None if xf is None else np.zeros((G, K))
        q = cq.transpose(1, 2, 0, 3).reshape(G, K, -1)
        mq += q.sum(axis=2, dtype=np.float64)
        H += q @ q.transpose(0, 2, 1)
        if cf is not None:
            f = cf.transpose(1, 2, 0, 3).reshape(G, K, -1)
            mf += f.sum(axis=2, dtype=np.float64)
            C += f @ q.transpose(0, 2, 1)
        cnt += nn_ * P
    return (H, C), (mq / cnt, None if mf is None else mf / cnt)


def _groups(node, w):
    return int((node.get("attrs") or {}).get("group", 1)) if node["op"] == "Conv" else 1


def quantize_layer(node, wrec, enc, xq, xf=None, *, damp=DAMP, max_rows=MAX_ROWS,
                   chunk=CHUNK, scales=SCALES, sweeps=2, means=None, seed=0,
                   i8_target=False):
    """Calibrated levels and scales of one weight layer. Returns (levels int8 in the
    weight's shape, alpha float32 (O,)) — alpha before the folded multiplier. ``means``: a
    list that receives the im2col input means (mu_q, mu_f) (None for ConvTranspose).
    ``seed``: of the im2col row sampling for H (layers with more than ``max_rows``).
    ``i8_target``: an i8 layer stores the int8 rounding of the least-squares target
    W* = W·C·H⁻¹ (it absorbs the error of the quantized prefix) instead of W's."""
    vals = np.asarray(wrec.values, dtype=np.float64)
    o = vals.shape[0]
    G = _groups(node, vals)
    W = vals.reshape(G, o // G, -1)
    K = W.shape[2]
    if node["op"] == "ConvTranspose":
        H = np.broadcast_to(np.eye(K), (G, K, K)).copy()
        C = None
        mus = (None, None)
    elif enc in LEVELS:
        (H, C), mus = layer_stats(node, vals.shape, xq, xf, max_rows=max_rows, chunk=chunk,
                                  seed=seed)
    else:
        (H, C), mus = layer_stats(node, vals.shape, xq, xf, max_rows=max_rows // 4, chunk=chunk,
                                  seed=seed)
    if means is not None:
        means.extend(mus)
    if enc == "i8" and (C is None or not i8_target):
        return int8_quantize(vals)
    if C is not None:
        Hd = _damped(H, damp)
        W = np.einsum("grk,gkl->grl", W, C) @ np.linalg.inv(Hd)
    if enc == "i8":           # int8 of the least-squares target: compensates the prefix
        return int8_quantize(W.reshape(vals.shape))
    L = LEVELS[enc]
    T, a = quantize_rows(W, H, L, damp=damp, scales=scales, sweeps=sweeps)
    return T.reshape(vals.shape), a.reshape(o).astype(np.float32)


# ----------------------------------------------------------------------------- network pass

@dataclass
class Calibrated:
    """The result of :func:`calibrate`: per weight name (encoding, levels or None, alpha or
    None); the new bias vectors {const name: values}; biases to add {node name: values}."""

    weights: dict = field(default_factory=dict)
    biases: dict = field(default_factory=dict)
    new_biases: dict = field(default_factory=dict)
    seconds: float = 0.0


def bias_delta(nd, w, deq, mus, vf, vq, fc, qc, chunk):
    """Per output channel: mean float pre-activation − mean quantized pre-activation."""
    if mus and mus[0] is not None:
        o = w.values.shape[0]
        G = mus[0].shape[0]
        mq = mus[0]
        mf = mus[1]
        if mf is None:        # float_target=False: the float stream's input means
            _, (mf, _) = layer_stats(nd, w.values.shape, vf[nd["inputs"][0]], None, max_rows=8192,
                                     chunk=chunk)
        wf = np.asarray(w.values, np.float64).reshape(G, o // G, -1)
        wq = np.asarray(deq, np.float64).reshape(G, o // G, -1)
        d = (np.einsum("grk,gk->gr", wf, mf) - np.einsum("grk,gk->gr", wq, mq)).reshape(o)
        d = d * np.asarray(w.mult, np.float64)
        ins = nd["inputs"]
        if len(ins) > 3 and ins[3]:
            axes = (0,) + tuple(range(2, vf[ins[3]].ndim))
            d = d + (vf[ins[3]].mean(axis=axes, dtype=np.float64)
                     - vq[ins[3]].mean(axis=axes, dtype=np.float64))
        return d
    pre = _pre_activation(nd)
    yf = run_node(pre, vf, fc, chunk)[0]
    yq = run_node(pre, vq, qc, chunk)[0]
    axes = (0,) + tuple(range(2, yf.ndim))
    return yf.astype(np.float64).mean(axis=axes) - yq.astype(np.float64).mean(axis=axes)


def _pre_activation(node):
    nd = dict(node)
    a = dict(nd.get("attrs") or {})
    a.pop("activation", None)
    nd["attrs"] = a
    return nd


def weight_nodes(g):
    return [nd for nd in g.nodes
            if nd["op"] in WEIGHT_OPS and len(nd["inputs"]) > 1 and nd["inputs"][1] in g.weights]


def calibrate(g, samples, encodings: dict, *, bias_correction=True, float_target=True,
              damp=DAMP, max_rows=MAX_ROWS, chunk=CHUNK, scales=SCALES, sweeps=2,
              progress=None, seed=0, i8_target=False) -> Calibrated:
    """Quantize the weights of IR graph ``g`` layer by layer on ``samples`` (one-input
    graphs: float32 (S, ...) array). ``encodings``: {weight name: t2|q3|i8|f16|f32}.
    progress(done, total) is called after each weight layer. ``seed``: of the sampling of
    im2col rows for the layers' H (the solution changes with it: several seeds, judged on
    held-out samples, give a steadier result than one)."""
    t0 = time.perf_counter()
    x = np.asarray(samples, dtype=np.float32)
    inp = g.inputs[0]["name"]
    fc = float_consts(g)
    qc = dict(fc)
    outs = [o["name"] for o in g.outputs]
    last = _last_use(g.nodes, outs)
    vf = {inp: x}
    vq = {inp: x}
    res = Calibrated()
    wn = {nd["name"] for nd in weight_nodes(g)}
    total, done = len(wn), 0
    for i, nd in enumerate(g.nodes):
        if nd["name"] in wn:
            wname = nd["inputs"][1]
            w = g.weights[wname]
            enc = encodings.get(wname, "f32")
            mus = []
            deq = None
            if enc in ("t2", "q3", "i8"):
                lv, a = quantize_layer(nd, w, enc, vq[nd["inputs"][0]],
                                       vf[nd["inputs"][0]] if float_target else None,
                                       damp=damp, max_rows=max_rows, chunk=chunk,
                                       scales=scales, sweeps=sweeps, means=mus,
                                       seed=seed, i8_target=i8_target)
                res.weights[wname] = (enc, lv, a)
                deq = lv.astype(np.float32) * a.reshape((-1,) + (1,) * (lv.ndim - 1))
                qc[wname] = Const(folded(w, deq))
            elif enc == "f16":
                res.weights[wname] = (enc, None, None)
                deq = w.values.astype(np.float16).astype(np.float32)
                qc[wname] = Const(folded(w, deq))
            else:
                res.weights[wname] = (enc, None, None)
            if bias_correction and deq is not None:
                delta = bias_delta(nd, w, deq, mus, vf, vq, fc, qc, chunk)
                bname = nd["inputs"][2] if len(nd["inputs"]) > 2 else ""
                if bname:
                    b = qc[bname].arr.astype(np.float64) + delta
                    res.biases[bname] = b.astype(np.float32)
                    qc[bname] = Const(b)
                else:
                    bname = f"{nd['name']}__ptq_bias"
                    res.new_biases[nd["name"]] = delta.astype(np.float32)
                    nd = dict(nd)
                    ins = list(nd["inputs"]) + [""] * (3 - len(nd["inputs"]))
                    ins[2] = bname
                    nd["inputs"] = ins
                    qc[bname] = Const(delta)
            done += 1
            if progress is not None:
                progress(done, total)
        for name, v in zip(nd["outputs"], run_node(nd, vq, qc, chunk)):
            vq[name] = v
        for name, v in zip(g.nodes[i]["outputs"], run_node(g.nodes[i], vf, fc, chunk)):
            vf[name] = v
        for t in set(nd["inputs"]) | set(g.nodes[i]["inputs"]):
            for vals in (vf, vq):
                if t in vals and last.get(t, -1) <= i and t not in outs:
                    del vals[t]
    res.seconds = time.perf_counter() - t0
    return res


def apply_biases(g, cal: Calibrated):
    """Write the corrected biases into the IR graph ``g`` (in place): changed bias
    constants, and new bias constants for layers that had none."""
    for k, v in cal.biases.items():
        g.consts[k] = np.asarray(v, np.float32)
    for nd in g.nodes:
        if nd["name"] in cal.new_biases:
            bname = f"{nd['name']}__ptq_bias"
            ins = list(nd["inputs"]) + [""] * (3 - len(nd["inputs"]))
            ins[2] = bname
            nd["inputs"] = ins
            g.consts[bname] = np.asarray(cal.new_biases[nd["name"]], np.float32)


# ----------------------------------------------------------------------------- fidelity

def fidelity(y_float, y_quant) -> dict:
    """Top-1 agreement (argmax over axis 1) and output SNR in dB of ``y_quant`` against
    ``y_float``, (N, C, ...) arrays."""
    yf = np.asarray(y_float, np.float64)
    yq = np.asarray(y_quant, np.float64)
    noise = float(np.sum((yf - yq) ** 2))
    sig = float(np.sum(yf ** 2))
    snr = float("inf") if noise == 0 else float(10.0 * np.log10(max(sig, 1e-300) / noise))
    if yf.ndim >= 2 and yf.shape[1] > 1:
        agree = float(np.mean(np.argmax(yf, axis=1) == np.argmax(yq, axis=1)))
    else:
        agree = float(np.mean((yf > 0.5) == (yq > 0.5)))
    return {"samples": int(yf.shape[0]), "top1_agreement": agree, "snr_db": snr}


def _quant_consts(g, cal):
    """Executor constants of ``g`` (biases already applied) with the weights of ``cal``."""
    c = float_consts(g)
    for k, (e, lv, a) in cal.weights.items():
        w = g.weights[k]
        if e in ("t2", "q3", "i8"):
            c[k] = Const(folded(w, lv.astype(np.float32) * a.reshape((-1,) + (1,) * (lv.ndim - 1))))
        elif e == "f16":
            c[k] = Const(folded(w, w.values.astype(np.float16).astype(np.float32)))
    return c


def calibrate_best(g, samples, encodings, held_out, seeds=(0, 1, 2), *, log=None, **kw):
    """:func:`calibrate` once per seed of the row sampling; the solution with the best
    output SNR against the float network on the unlabeled ``held_out`` samples is kept
    (the SNR rather than the top-1 agreement: on a few hundred samples the agreement moves
    by whole samples, the SNR continuously). Returns (Calibrated, [fidelity per seed])."""
    import copy

    t0 = time.perf_counter()
    out = g.outputs[0]["name"]
    yf = forward(g, float_consts(g), held_out)[out]
    best, fids = None, []
    for s in seeds:
        gg = copy.copy(g)
        gg.nodes = copy.deepcopy(g.nodes)
        gg.consts = dict(g.consts)
        cal = calibrate(gg, samples, encodings, seed=s, **kw)
        apply_biases(gg, cal)
        f = fidelity(yf, forward(gg, _quant_consts(gg, cal), held_out)[out])
        f["seed"] = s
        fids.append(f)
        if log is not None:
            log(f"  calibration seed {s}: held-out agreement {100 * f['top1_agreement']:.2f}%, "
                f"SNR {f['snr_db']:.2f} dB")
        if best is None or f["snr_db"] > best[1]["snr_db"]:
            best = (cal, f)
    best[0].seconds = time.perf_counter() - t0
    return best[0], fids
