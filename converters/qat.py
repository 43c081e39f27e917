"""Quantization-aware training (QAT) for edgenet: ternary / quinary weights in PyTorch.

torch is an optional extra: it is imported inside the functions, so importing this module
never requires it.

    from converters import qat
    model = qat.prepare(model, weights="ternary", granularity="layer")
    ... train as usual (the forward pass uses alpha*T, gradients reach the float weights) ...
    qat.export_onnx(model, torch.zeros(1, 1, 8, 8), "model_qat.onnx")
    # then: edgenet convert model_qat.onnx -o model.edgenet --weights ternary
    #       (the weights are already alpha*T: packed losslessly)

The quantizers follow shared/quantization.md exactly (the seed's rules):

* ternary (TWN): Delta = 0.7*E|W|, T = sign(W)*[|W| > Delta],
  alpha = mean of |W_i| over {|W_i| > Delta};
* quinary: Delta1 = 0.5*E|W|, Delta2 = 1.4*E|W|, T = sign(W)*([|W| > D1] + [|W| > D2]),
  alpha = (sum_I1 |W| + 2 sum_I2 |W|) / (|I1| + 4|I2|);

computed over the whole tensor (granularity="layer", one alpha per layer as in the TWN
paper) or per output channel (granularity="channel"); statistics in float64, alpha rounded
to float32, exactly as converters/quantize.py does.  With threshold="optimal" the ternary
Delta is the exact optimum (sort |W| in decreasing order, take the prefix length k that
maximizes prefix_sum^2 / k).  A tensor (or channel) that quantizes to all zeros gets
alpha = 0.

Training follows the seed's algorithm: the forward pass uses alpha*T computed from the
full-precision weights; the gradient with respect to the quantized weights is applied,
unchanged, to the full-precision weights (straight-through estimator).  alpha is treated
as a constant in the backward pass.

``export_onnx`` writes an ONNX file whose quantized weight initializers hold exactly the
float32 products alpha*T (alpha rounded to float32 first, then multiplied by the small
integer T in float32, which is exact), so each output channel's non-zero values are
exactly {+-a} (ternary) or {+-a, +-2a} (quinary) and edgenet's converter detects and packs
them without loss.
"""

from __future__ import annotations

import copy
import warnings

__all__ = ["THRESHOLDS", "prepare", "quantize_weight", "quantized_weight", "export_onnx",
           "strip", "quantized_modules", "reestimate_bn"]

# Empirical threshold factors (multiples of E|W|), from shared/quantization.md.
THRESHOLDS = {"ternary": (0.7,), "quinary": (0.5, 1.4)}

_WEIGHTS = ("ternary", "quinary")
_GRANULARITIES = ("layer", "channel")


def _check(weights: str, granularity: str, threshold: str = "twn") -> None:
    if weights not in _WEIGHTS:
        raise ValueError(f"weights must be one of {_WEIGHTS}, got {weights!r}")
    if granularity not in _GRANULARITIES:
        raise ValueError(f"granularity must be one of {_GRANULARITIES}, got {granularity!r}")
    if threshold not in ("twn", "optimal"):
        raise ValueError(f"threshold must be 'twn' or 'optimal', got {threshold!r}")
    if threshold == "optimal" and weights != "ternary":
        raise ValueError("threshold='optimal' is defined for ternary weights only")


# ----------------------------------------------------------------------------- quantizer math

def _optimal_rows(a):
    """Exact optimal ternary support per row of a (rows, n) float64 tensor of |W| values.

    Sort |W| decreasing; the best support is a prefix of length k maximizing S_k^2/k among
    the prefixes a threshold can select (the next value strictly smaller, the last kept
    value non-zero).  Returns (mask (rows, n) float64, alpha (rows, 1) float64), mirroring
    converters.quantize.ternarize(threshold="optimal")."""
    import torch

    n = a.shape[1]
    srt, _ = torch.sort(a, dim=1, descending=True)
    csum = torch.cumsum(srt, dim=1)
    k = torch.arange(1, n + 1, dtype=torch.float64, device=a.device)
    obj = csum * csum / k
    valid = torch.ones_like(srt, dtype=torch.bool)
    valid[:, :-1] = srt[:, :-1] > srt[:, 1:]
    valid &= srt > 0
    obj = torch.where(valid, obj, torch.full_like(obj, -float("inf")))
    best = torch.argmax(obj, dim=1)
    r = torch.arange(a.shape[0], device=a.device)
    thr = torch.where(best + 1 < n, srt[r, torch.clamp(best + 1, max=n - 1)],
                      torch.zeros_like(srt[:, 0]))
    ok = valid[r, best]
    mask = ((a > thr[:, None]) & ok[:, None]).double()
    alpha = torch.where(ok, csum[r, best] / (best + 1).double(), torch.zeros_like(thr))
    return mask, alpha[:, None]


def quantize_weight(w, weights: str = "ternary", granularity: str = "layer",
                    threshold: str = "twn"):
    """Quantize a weight tensor: returns (alpha, T).

    ``w``: torch tensor whose axis 0 is the output channel (Conv2d, Linear; for a
    ConvTranspose2d weight use ``_out_major(module, w)``, the IR layout).
    ``alpha`` has shape (O,) (the same value repeated for granularity="layer"), float32;
    ``T`` has the shape of ``w`` with integer values in {-1,0,1} or {-2..2} (float32 dtype).
    No gradient flows through either.
    """
    import torch

    _check(weights, granularity, threshold)
    with torch.no_grad():
        w = w.detach()
        o = w.shape[0]
        rows = w.reshape(1, -1) if granularity == "layer" else w.reshape(o, -1)
        rows = rows.double()  # statistics in float64, as converters/quantize.py
        a = rows.abs()
        mean = a.mean(dim=1, keepdim=True)
        sign = torch.sign(rows)
        if weights == "ternary" and threshold == "optimal":
            m1, alpha = _optimal_rows(a)
            t = sign * m1
        elif weights == "ternary":
            delta = THRESHOLDS["ternary"][0] * mean
            m1 = (a > delta).double()
            cnt = m1.sum(dim=1, keepdim=True)
            num = (a * m1).sum(dim=1, keepdim=True)
            alpha = torch.where(cnt > 0, num / torch.clamp(cnt, min=1.0), torch.zeros_like(num))
            t = sign * m1
        else:
            d1 = THRESHOLDS["quinary"][0] * mean
            d2 = THRESHOLDS["quinary"][1] * mean
            m2 = (a > d2).double()
            m1 = (a > d1).double() - m2
            den = m1.sum(dim=1, keepdim=True) + 4.0 * m2.sum(dim=1, keepdim=True)
            num = (a * m1).sum(dim=1, keepdim=True) + 2.0 * (a * m2).sum(dim=1, keepdim=True)
            alpha = torch.where(den > 0, num / torch.clamp(den, min=1.0), torch.zeros_like(num))
            t = sign * (m1 + 2.0 * m2)
        alpha = alpha.reshape(-1).float()  # alpha rounded to float32 once
        if granularity == "layer":
            alpha = alpha.expand(o).clone()
        t = t.float().reshape(w.shape)
        t[alpha == 0] = 0.0
    return alpha, t


def _dequant(alpha, t):
    """alpha (O,) * T (O, ...) in float32: exact products (T is a small integer)."""
    shape = (-1,) + (1,) * (t.dim() - 1)
    return alpha.float().reshape(shape) * t.float()


def _out_major(module, w):
    """View of the weight with the output channel on axis 0."""
    import torch.nn as nn

    if isinstance(module, nn.ConvTranspose2d):
        # torch ConvTranspose2d weight: (C_in, C_out/g, kh, kw); output channel o of group
        # gi is column (o % (C_out/g)) of rows gi*(C_in/g)..: rearrange to (C_out, C_in/g, kh, kw)
        g = module.groups
        cin, opg = w.shape[0], w.shape[1]
        v = w.reshape(g, cin // g, opg, *w.shape[2:]).transpose(1, 2)
        return v.reshape(g * opg, cin // g, *w.shape[2:])
    return w


def _from_out_major(module, v, like):
    import torch.nn as nn

    if isinstance(module, nn.ConvTranspose2d):
        g = module.groups
        cin, opg = like.shape[0], like.shape[1]
        u = v.reshape(g, opg, cin // g, *like.shape[2:]).transpose(1, 2)
        return u.reshape(like.shape)
    return v


# ----------------------------------------------------------------------------- modules

_STE = None


def _ste(w, wq):
    """Returns wq exactly (not w + (wq - w), which rounds); d/dw = identity."""
    global _STE
    if _STE is None:
        import torch

        class _StraightThrough(torch.autograd.Function):
            @staticmethod
            def forward(ctx, w, wq):
                return wq.to(w.dtype)

            @staticmethod
            def backward(ctx, g):
                return g, None

        _STE = _StraightThrough
    return _STE.apply(w, wq)


class _QuantMixin:
    """Shared logic of the quantized layers (the class also derives from the torch layer)."""

    qat_weights: str
    qat_granularity: str
    qat_threshold: str

    def _qat_init(self, weights, granularity, threshold="twn"):
        _check(weights, granularity, threshold)
        self.qat_weights = weights
        self.qat_granularity = granularity
        self.qat_threshold = threshold

    def quant_params(self):
        """(alpha (O,), T in output-major layout) for the current float weights."""
        return quantize_weight(_out_major(self, self.weight), self.qat_weights,
                               self.qat_granularity, self.qat_threshold)

    def quantized_weight(self):
        """alpha*T in the layer's own weight layout (float32, no gradient)."""
        alpha, t = self.quant_params()
        return _from_out_major(self, _dequant(alpha, t), self.weight)

    def ste_weight(self):
        """Forward value alpha*T, gradient straight through to the float weight."""
        return _ste(self.weight, self.quantized_weight())

    def extra_repr(self):
        return (super().extra_repr() + f", qat={self.qat_weights}/{self.qat_granularity}"
                + ("" if self.qat_threshold == "twn" else f"/{self.qat_threshold}"))


def _classes():
    """Build (once) the quantized subclasses; needs torch."""
    global _CLASSES
    if _CLASSES is not None:
        return _CLASSES
    import torch.nn as nn
    import torch.nn.functional as F

    class QConv2d(_QuantMixin, nn.Conv2d):
        def forward(self, x):
            return self._conv_forward(x, self.ste_weight(), self.bias)

    class QConvTranspose2d(_QuantMixin, nn.ConvTranspose2d):
        def forward(self, x, output_size=None):
            if self.padding_mode != "zeros":
                raise ValueError("only zeros padding is supported for ConvTranspose2d")
            output_padding = self._output_padding(x, output_size, self.stride, self.padding,
                                                  self.kernel_size, 2, self.dilation)
            return F.conv_transpose2d(x, self.ste_weight(), self.bias, self.stride,
                                      self.padding, output_padding, self.groups,
                                      self.dilation)

    class QLinear(_QuantMixin, nn.Linear):
        def forward(self, x):
            return F.linear(x, self.ste_weight(), self.bias)

    _CLASSES = {nn.Conv2d: QConv2d, nn.ConvTranspose2d: QConvTranspose2d, nn.Linear: QLinear}
    return _CLASSES


_CLASSES = None


def quantized_modules(model):
    """[(qualified name, module)] of the quantized layers of ``model``."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, _QuantMixin)]


def prepare(model, weights: str = "ternary", granularity: str = "layer",
            threshold: str = "twn", skip=()):
    """Swap nn.Conv2d / nn.ConvTranspose2d / nn.Linear in ``model`` (in place) for
    quantized subclasses and return the model.

    The new layers keep the same parameters (same tensors: an optimizer built before
    ``prepare`` still works), the same names (state_dicts stay compatible) and the same
    hyper-parameters; only ``forward`` changes.  ``skip``: qualified module names (as in
    ``model.named_modules()``) to leave in floating point (e.g. the first and last layer).
    """
    import torch.nn as nn

    _check(weights, granularity, threshold)
    classes = _classes()
    skip = set(skip)
    for name, mod in list(model.named_modules()):
        if name in skip or isinstance(mod, _QuantMixin):
            continue
        cls = classes.get(type(mod))  # exact type: subclasses of user code are left alone
        if cls is None:
            continue
        mod.__class__ = cls
        mod._qat_init(weights, granularity, threshold)
    unknown = skip - {n for n, _ in model.named_modules()}
    if unknown:
        raise ValueError(f"skip names not found in the model: {sorted(unknown)}")
    if not any(isinstance(m, _QuantMixin) for m in model.modules()):
        warnings.warn("prepare(): no Conv2d/ConvTranspose2d/Linear layer found", stacklevel=2)
    return model


def quantized_weight(module):
    """alpha*T of one prepared layer (float32 tensor, layer layout)."""
    return module.quantized_weight()


def strip(model, inplace: bool = False):
    """Return a plain-torch copy of ``model`` whose quantized layers are the original torch
    classes holding exactly alpha*T as their weight (what ``export_onnx`` exports)."""
    import torch

    out = model if inplace else copy.deepcopy(model)
    classes = _classes()
    back = {v: k for k, v in classes.items()}
    for _, mod in list(out.named_modules()):
        if isinstance(mod, _QuantMixin):
            with torch.no_grad():
                wq = mod.quantized_weight()
                mod.weight.data = wq.to(torch.float32).contiguous()
            mod.__class__ = back[type(mod)]
            for attr in ("qat_weights", "qat_granularity", "qat_threshold"):
                mod.__dict__.pop(attr, None)
    return out


def reestimate_bn(model, batches):
    """Recompute every BatchNorm's running mean/variance with the final (quantized) weights.

    During QAT the running statistics are averaged while the quantized weights still
    change (each threshold crossing moves them); this pass replaces them by the exact
    statistics of the trained model over ``batches`` (an iterable of input tensors, e.g.
    the training images): BatchNorm in train mode with cumulative averaging
    (momentum=None), no gradients, nothing else updated.  Returns ``model`` in eval mode.
    """
    import torch
    import torch.nn as nn

    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [(m, m.momentum) for m in bns]
    was = model.training
    model.eval()
    for m in bns:
        m.reset_running_stats()
        m.momentum = None       # cumulative average over the batches
        m.train()
    try:
        with torch.no_grad():
            for xb in batches:
                model(xb)
    finally:
        for m, mom in saved:
            m.momentum = mom
        model.train(was)
    return model.eval()


def export_onnx(model, example_input, path, opset: int = 17, input_name: str = "input",
                output_name: str = "output", dynamic_batch: bool = True):
    """Export a prepared model to ONNX with each quantized weight equal to alpha*T exactly.

    Uses the legacy TorchScript exporter (dynamo=False), a dynamic batch axis, input
    "input" and output "output" (by default).  The model is copied (the caller's model is
    untouched), cast to float32 and put in eval mode.  Returns ``path``.
    """
    import torch

    m = strip(model).float().eval()
    x = example_input.float() if hasattr(example_input, "float") else example_input
    axes = {input_name: {0: "batch"}, output_name: {0: "batch"}} if dynamic_batch else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kw = dict(opset_version=opset, input_names=[input_name], output_names=[output_name],
                  dynamic_axes=axes, do_constant_folding=True)
        try:
            torch.onnx.export(m, (x,), path, dynamo=False, **kw)
        except TypeError:  # very old torch without the dynamo keyword
            torch.onnx.export(m, (x,), path, **kw)
    return path
