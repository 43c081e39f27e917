"""A trainable PyTorch copy of an edgenet IR graph (for ``converters/finetune.py``).

torch is an optional extra: this module imports it at the top, so only
``converters.finetune`` (inside its functions) and the tests import this module.

The graph is translated node by node from the IR the ONNX front end produced (BatchNorm
already folded into each Conv/Gemm's per-channel ``mult`` and bias, activations fused),
so the torch copy computes exactly what the .edgenet file computes. Each quantized weight
layer holds:

* ``u``: the latent full-precision weight in *level units* (w / α₀ with α₀ the calibrated
  PTQ scale of its channel); the forward pass uses T = clip(round(u), -L, L) (L = 1
  ternary, 2 quinary), and the gradient with respect to T is applied unchanged to ``u``
  (the seed's straight-through rule; shared/quantization.md);
* ``gain``: α = α₀ · gain per output channel (trained; the forward weight is α·T·mult);
* ``bias``: the folded bias (BatchNorm shift included), trained.

An int8 layer (``enc="i8"``, mixed precision) holds ``u`` = w / max|w| per output channel
(float, trained) and its bias; the forward pass uses the weight the file will store,
symmetric per-channel int8 (scale = max|w|/127, converters/quantize.py ``int8_quantize``),
with a straight-through gradient.

Ops outside the small CNN set below are refused with one line naming the node.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from edgenet.activation import act_code, ActCode
from edgenet.errors import ConversionError

LEVELS = {"t2": 1, "q3": 2}
SUPPORTED = ("Conv", "Gemm", "Add", "Sub", "Mul", "Div", "Act", "Affine", "PRelu", "MaxPool",
             "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "Concat", "Flatten",
             "Reshape", "Transpose", "Softmax", "MatMul", "Pad")


def check_ops(g):
    """Refuse graphs with ops (or op variants) this translation does not cover."""
    for nd in g.nodes:
        op = nd["op"]
        a = nd.get("attrs") or {}
        if op not in SUPPORTED:
            raise ConversionError(f"node '{nd['name']}': op {op} is not supported by "
                                  f"finetune (supported: {', '.join(SUPPORTED)})")
        if op in ("MaxPool", "AveragePool") and int(a.get("ceil_mode", 0)):
            raise ConversionError(f"node '{nd['name']}': {op} with ceil_mode=1 is not "
                                  "supported by finetune")
        if op == "AveragePool":
            p = a.get("pads", [0, 0, 0, 0])
            if list(p[:2]) != list(p[2:]) or list(a.get("dilations", [1, 1])) != [1, 1]:
                raise ConversionError(f"node '{nd['name']}': AveragePool with asymmetric "
                                      "pads or dilations is not supported by finetune")
        if op == "Pad" and a.get("mode", "constant") != "constant":
            raise ConversionError(f"node '{nd['name']}': Pad mode {a.get('mode')!r} is not "
                                  "supported by finetune (constant only)")
        if op == "Conv" and nd["inputs"][1] not in g.weights:
            raise ConversionError(f"node '{nd['name']}': Conv weight is not a constant")


def act(x, desc):
    code, p0, p1 = act_code(desc)
    if code == ActCode.NONE:
        return x
    if code == ActCode.RELU:
        return F.relu(x)
    if code == ActCode.LEAKY_RELU:
        return F.leaky_relu(x, p0)
    if code == ActCode.ELU:
        return F.elu(x, p0)
    if code == ActCode.SELU:
        return p1 * torch.where(x > 0, x, p0 * torch.expm1(x))
    if code == ActCode.SIGMOID:
        return torch.sigmoid(x)
    if code == ActCode.TANH:
        return torch.tanh(x)
    if code == ActCode.CLIP:
        return torch.clamp(x, p0, p1)
    if code == ActCode.HARD_SIGMOID:
        return torch.clamp(p0 * x + p1, 0.0, 1.0)
    if code == ActCode.HARD_SWISH:
        return x * torch.clamp(x / 6.0 + 0.5, 0.0, 1.0)
    raise ConversionError(f"activation {desc!r} is not supported by finetune")


class _Round(torch.autograd.Function):
    """T = clip(round(u), -L, L) forward; identity backward (straight-through)."""

    @staticmethod
    def forward(ctx, u, L):
        return torch.clamp(torch.round(u), -L, L)

    @staticmethod
    def backward(ctx, g):
        return g, None


class QLayer(nn.Module):
    """One Conv/Gemm weight: quantized (t2/q3: u, gain, bias trained), int8 (u = w/max|w|
    and bias trained, int8 fake quantization in the forward pass) or frozen float."""

    def __init__(self, w, enc, levels=None, alpha=None, bias=None, has_bias=True):
        super().__init__()
        self.enc = enc
        self.register_buffer("mult", torch.tensor(np.asarray(w.mult, np.float32)))
        shape = (-1,) + (1,) * (w.values.ndim - 1)
        self._shape = shape
        if enc in LEVELS:
            a0 = np.asarray(alpha, np.float64)
            self.register_buffer("alpha0", torch.tensor(np.where(a0 > 0, a0, 1.0),
                                                        dtype=torch.float32))
            self.register_buffer("live", torch.tensor((a0 > 0).astype(np.float32)))
            t = np.asarray(levels, np.float64)
            vals = np.asarray(w.values, np.float64) / np.where(a0 > 0, a0, 1.0).reshape(shape)
            L = LEVELS[enc]
            r = np.clip(vals - t, -0.45, 0.45)
            r = np.where((t == L) & (vals > t), np.minimum(vals - t, 1.0), r)
            r = np.where((t == -L) & (vals < t), np.maximum(vals - t, -1.0), r)
            self.u = nn.Parameter(torch.tensor(t + r, dtype=torch.float32))
            self.gain = nn.Parameter(torch.ones(len(a0)))
        elif enc == "i8":
            v = np.asarray(w.values, np.float64)
            m = np.abs(v.reshape(len(v), -1)).max(axis=1) if v.size else np.zeros(len(v))
            m = np.where(m > 0, m, 1.0)
            self.register_buffer("scale0", torch.tensor(m, dtype=torch.float32))
            self.u = nn.Parameter(torch.tensor(v / m.reshape(shape), dtype=torch.float32))
        else:
            self.register_buffer("wf", torch.tensor(np.asarray(w.values, np.float32)))
        self.bias = None
        if bias is not None:
            self.bias = nn.Parameter(torch.tensor(np.asarray(bias, np.float32)),
                                     requires_grad=enc != "f32" and has_bias)

    def levels(self):
        return _Round.apply(self.u, LEVELS[self.enc])

    def alpha(self):
        return self.alpha0 * self.gain * self.live

    def weight(self):
        """The folded weight (α·T·mult, or the frozen float values · mult)."""
        if self.enc in LEVELS:
            w = self.alpha().reshape(self._shape) * self.levels()
        elif self.enc == "i8":
            w = self.u * self.scale0.reshape(self._shape)
            s = w.detach().abs().reshape(len(w), -1).amax(dim=1) / 127.0
            s = torch.where(s > 0, s, torch.ones_like(s)).reshape(self._shape)
            q = torch.clamp(torch.round(w / s), -127, 127) * s
            w = w + (q - w).detach()            # int8 forward, straight-through backward
        else:
            w = self.wf
        return w * self.mult.reshape(self._shape)

    def float_weight(self):
        """The trained float weight of an int8 layer (before int8 rounding), unfolded."""
        with torch.no_grad():
            return (self.u * self.scale0.reshape(self._shape)).numpy().astype(np.float32)

    def export(self):
        """(levels int8, alpha float32 ≥ 0) of a quantized layer, exact: the float32
        products alpha·T are what the file stores."""
        with torch.no_grad():
            t = torch.clamp(torch.round(self.u), -LEVELS[self.enc], LEVELS[self.enc])
            a = self.alpha().double()
            neg = a < 0
            t[neg] = -t[neg]
            a = a.abs()
            t[a == 0] = 0
        return t.numpy().astype(np.int8), a.float().numpy()


def _pad4(p):
    pt, pl, pb, pr = p
    return (pl, pr, pt, pb)


class TorchGraph(nn.Module):
    """The IR graph as a torch module. ``layers``: {weight name: QLayer}; ``logits``: the
    tensor the distillation loss compares (the input of a final Softmax, else the
    output)."""

    def __init__(self, g, layers: dict):
        super().__init__()
        check_ops(g)
        self.g_nodes = [dict(nd) for nd in g.nodes]
        self.input = g.inputs[0]["name"]
        self.outputs = [o["name"] for o in g.outputs]
        self.qnames = list(layers)
        self.q = nn.ModuleList(layers[k] for k in self.qnames)
        self._qi = {k: i for i, k in enumerate(self.qnames)}
        self.cnames = [k for k in g.consts]
        for i, k in enumerate(self.cnames):
            self.register_buffer(f"c{i}", torch.tensor(np.asarray(g.consts[k], np.float32)))
        self._ci = {k: i for i, k in enumerate(self.cnames)}
        last = self.g_nodes[-1] if self.g_nodes else None
        self.logits = (last["inputs"][0] if last is not None and last["op"] == "Softmax"
                       and last["outputs"][0] == self.outputs[0] else self.outputs[0])
        self.softmax_axis = int((last.get("attrs") or {}).get("axis", 1)) \
            if self.logits != self.outputs[0] else None

    def const(self, name):
        return getattr(self, f"c{self._ci[name]}")

    def _val(self, vals, name):
        if name in vals:
            return vals[name]
        return self.const(name)

    def forward(self, x, want=None):
        """{name: tensor} for ``want`` (default: the logits tensor)."""
        want = [self.logits] if want is None else want
        vals = {self.input: x}
        for nd in self.g_nodes:
            outs = self._node(nd, vals)
            for n, v in zip(nd["outputs"], outs):
                vals[n] = v
            if all(w in vals for w in want):
                break
        return {w: vals[w] for w in want}

    def _node(self, nd, vals):
        op = nd["op"]
        a = nd.get("attrs") or {}
        ins = nd["inputs"]
        if op in ("Conv", "Gemm"):
            layer = self.q[self._qi[ins[1]]]
            w = layer.weight()
            x = vals[ins[0]]
            b = layer.bias if layer.bias is not None else (
                self.const(ins[2]) if len(ins) > 2 and ins[2] else None)
            if op == "Conv":
                p = a["pads"]
                if p[0] == p[2] and p[1] == p[3]:
                    pad = (p[0], p[1])
                else:
                    x = F.pad(x, _pad4(p))
                    pad = (0, 0)
                y = F.conv2d(x, w, b, tuple(a["strides"]), pad, tuple(a["dilations"]),
                             int(a.get("group", 1)))
                if len(ins) > 3 and ins[3]:
                    y = y + vals[ins[3]]
            else:
                y = F.linear(x, w, b)
            return [act(y, a.get("activation"))]
        if op in ("Add", "Sub", "Mul", "Div"):
            x, y = self._val(vals, ins[0]), self._val(vals, ins[1])
            r = {"Add": torch.add, "Sub": torch.sub, "Mul": torch.mul, "Div": torch.div}[op](x, y)
            return [act(r, a.get("activation"))]
        if op == "Act":
            return [act(vals[ins[0]], a.get("activation"))]
        if op == "Affine":
            x = vals[ins[0]]
            sh = (1, -1) + (1,) * (x.dim() - 2)
            return [act(x * self.const(ins[1]).reshape(sh) + self.const(ins[2]).reshape(sh),
                        a.get("activation"))]
        if op == "PRelu":
            x = vals[ins[0]]
            s = self.const(ins[1])
            s = s.reshape((1, -1) + (1,) * (x.dim() - 2)) if s.dim() == 1 else s
            return [torch.where(x >= 0, x, s * x)]
        if op == "MaxPool":
            x = F.pad(vals[ins[0]], _pad4(a["pads"]), value=-float("inf"))
            return [F.max_pool2d(x, tuple(a["kernel"]), tuple(a["strides"]), 0,
                                 tuple(a.get("dilations", [1, 1])))]
        if op == "AveragePool":
            p = a["pads"]
            return [F.avg_pool2d(vals[ins[0]], tuple(a["kernel"]), tuple(a["strides"]),
                                 (p[0], p[1]),
                                 count_include_pad=bool(int(a.get("count_include_pad", 0))))]
        if op == "GlobalAveragePool":
            x = vals[ins[0]]
            return [x.mean(dim=tuple(range(2, x.dim())), keepdim=True)]
        if op == "GlobalMaxPool":
            x = vals[ins[0]]
            return [x.amax(dim=tuple(range(2, x.dim())), keepdim=True)]
        if op == "Concat":
            return [torch.cat([self._val(vals, n) for n in ins], dim=int(a["axis"]))]
        if op == "Flatten":
            x = vals[ins[0]]
            ax = int(a["axis"]) % max(x.dim(), 1) if int(a["axis"]) < 0 else int(a["axis"])
            return [x.reshape(int(np.prod(x.shape[:ax])), -1)]
        if op == "Reshape":
            x = vals[ins[0]]
            shape = [x.shape[i] if d == 0 else d for i, d in enumerate(a["shape"])]
            return [x.reshape(shape)]
        if op == "Transpose":
            return [vals[ins[0]].permute(*a["perm"])]
        if op == "Softmax":
            return [torch.softmax(vals[ins[0]], dim=int(a["axis"]))]
        if op == "MatMul":
            return [torch.matmul(self._val(vals, ins[0]), self._val(vals, ins[1]))]
        if op == "Pad":
            x = vals[ins[0]]
            p = list(a["pads"])
            r = len(p) // 2
            tp = []
            for i in reversed(range(r)):
                tp += [p[i], p[i + r]]
            return [F.pad(x, tuple(tp), value=float(a.get("value", 0.0)))]
        raise ConversionError(f"node '{nd['name']}': op {op} is not supported by finetune")
