"""The activation-precision mode ``int8``: quantization parameters, which convs run it,
calibration. Shared by the backends (the NumPy reference fake-quantizes with exactly these
rules; the CPU backend runs uint8 x int8 kernels) and by the converter.

Rules (docs/PERFORMANCE.md, "int8 activations"):

- A Conv runs in int8 when it is dense (``group == 1``) or depthwise with channel
  multiplier 1 (``group == C == O``), its strides are equal and 1 or 2, its weight is 4-D,
  and its input tensor has a calibrated range. Every other node, and every Conv that does
  not qualify, runs in float32 as before.
- The input tensor of such a Conv is quantized per tensor, asymmetric, to uint8:
  ``q = clamp(rint(x * r) + zp, 0, 255)`` with ``r = 1 / s`` rounded to float32 once (rint:
  half to even, as ONNX QuantizeLinear, which divides by s: the two differ only where x / s
  lies within a float32 rounding of a half-integer; a division a vector cost the int8
  convs' epilogues 8-15 %), with ``s = (hi - lo) / 255`` and ``zp = round(-lo / s)`` from
  the calibrated range ``[lo, hi]`` widened to include 0 (so zero padding is exact).
- Weights: ternary / quinary / i8 levels are used as they are (int8 levels x per-channel
  alpha); float weights are quantized per output channel, symmetric, to int8 levels
  ``rint(w / a)`` with ``a = max|w| / 127``.
- The accumulation is exact (int32); the output is ``acc * (alpha * s) + bias - zp *
  sum(levels) * alpha * s`` in float32, then the fused residual / activation.
- A depthwise conv: the same function. The CPU's channel-vector kernels sum ``q * level``
  exactly in float32 FMAs (below 2**24) and apply the same epilogue; elsewhere the float32
  kernels run on the dequantized input ``(q - zp) * s`` with weights ``levels * alpha``
  (equal up to float32 rounding). What saves time is the uint8 input: its producer writes
  a quarter of the bytes, and it reads a quarter.

Modes: ``f32``; ``int8`` (every eligible conv with a range); ``auto`` (the default for a
calibrated file): an eligible conv runs int8 only where this CPU tier's int8 kernel is
estimated faster than its f32 kernel (:func:`choose_int8`; docs/PERFORMANCE.md, "auto").
"""
from __future__ import annotations

import math

import numpy as np

from .errors import EdgenetError, InputError

METADATA_KEY = "activation_quant"
MODES = ("f32", "int8", "auto")
METHODS = ("minmax", "percentile")


def qparams(lo: float, hi: float):
    """(scale float32, zero point int) of the uint8 quantization of range [lo, hi]."""
    lo, hi = float(lo), float(hi)
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
        raise EdgenetError(f"invalid activation range [{lo}, {hi}]")
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    if hi - lo < 1e-30:
        return np.float32(1.0), 0
    scale = np.float32((hi - lo) / 255.0)
    zp = int(min(255, max(0, round(-lo / float(scale)))))
    return scale, zp


def fake_quant(x: np.ndarray, scale, zp) -> np.ndarray:
    """float32 x -> the float32 values its uint8 codes stand for (the reference's view)."""
    s = np.float32(scale)
    r = np.float32(1) / s      # the CPU kernels' rule: times the float32 reciprocal
    q = np.clip(np.rint(np.asarray(x, np.float32) * r) + np.float32(zp), 0, 255)
    return ((q - np.float32(zp)) * s).astype(np.float32)


def int8_weights(wf: np.ndarray):
    """Float weights (O, K) -> (int8 levels (O, K), per-channel alpha float32 (O,))."""
    wf = np.asarray(wf, np.float32).reshape(wf.shape[0], -1)
    m = np.abs(wf).max(axis=1) if wf.size else np.zeros(wf.shape[0], np.float32)
    alpha = np.where(m > 0, m / np.float32(127), np.float32(1)).astype(np.float32)
    lev = np.clip(np.rint(wf / alpha[:, None]), -127, 127).astype(np.int8)
    return lev, alpha


def conv_levels(p, O: int, K: int):
    """A Conv weight constant -> (int8 levels (O, K), alpha (O,)) for the int8 kernels:
    stored ternary/quinary/i8 levels as they are, float weights quantized per channel."""
    if getattr(p, "quantized", False):
        lev = np.asarray(p.levels(), np.int8).reshape(O, K)
        return lev, np.ascontiguousarray(p.scale, np.float32).reshape(O)
    wf = p.dequantize() if hasattr(p, "dequantize") else np.asarray(p)
    return int8_weights(np.asarray(wf, np.float32).reshape(O, K))


def eligible(node: dict, consts: dict) -> bool:
    """Does this node run with int8 activations (given a calibrated input range)?"""
    if node.get("op") != "Conv":
        return False
    a = node.get("attrs") or {}
    s = [int(v) for v in a.get("strides", [1, 1])]
    if len(s) != 2 or s[0] != s[1] or s[0] not in (1, 2):
        return False
    w = consts.get(node["inputs"][1]) if len(node["inputs"]) > 1 else None
    shp = tuple(int(d) for d in getattr(w, "shape", ()))
    if w is None or len(shp) != 4:
        return False
    g = int(a.get("group", 1))
    return g == 1 or (g > 1 and shp[0] == g and shp[1] == 1)   # dense, or depthwise x1


# ---------------------------------------------------------------------------- auto mode
# Measured single-thread throughput (GMAC/s) of each tier's conv kernels: bench/bench_int8.py
# per tier (EDGENET_SIMD=..., codegen restricted) on an AMD EPYC Zen 4, ternary weights,
# ResNet/MobileNet layer shapes, the best of 20 interleaved runs (the box was shared), the
# int8 figures with the quantize pass included (docs/PERFORMANCE.md, "Tiers"). "kxk": >= 9
# taps (3x3 and the 7x7/2 stem), "1x1": pointwise. Families: qconv.family (v: VNNI, pm16 /
# pm8: vpmaddubsw zmm / ymm, g8: generic int16 multiply-add; g8w: generic with int8-level
# weights, widened after every step: not measured, set low so such convs stay f32).
GMACS_F32 = {"avx512vnni": {"kxk": 52.0, "1x1": 45.0}, "avx512": {"kxk": 52.0, "1x1": 45.0},
             "avx2": {"kxk": 40.0, "1x1": 28.0}, "generic": {"kxk": 40.0, "1x1": 28.0},
             "off": {"kxk": 4.0, "1x1": 4.0}}
GMACS_INT8 = {"v": {"kxk": 155.0, "1x1": 95.0}, "pm16": {"kxk": 120.0, "1x1": 70.0},
              "pm8": {"kxk": 90.0, "1x1": 45.0}, "g8": {"kxk": 40.0, "1x1": 22.0},
              "g8w": {"kxk": 12.0, "1x1": 8.0}}
QUANT_NS = 0.1       # ns per input element beyond what the int8 figures include (small maps)
AUTO_MARGIN = 0.85   # int8 must be estimated this much faster: near-ties stay f32


def conv_cost(tier: str, fam: str, C: int, O: int, T: int, OHW: int, HW: int):
    """(estimated int8 ms, estimated f32 ms) of one image through a conv of C -> O channels,
    T taps, OHW output and HW input pixels, on this tier with int8 family ``fam``."""
    macs = float(C) * O * T * OHW
    cls = "kxk" if T > 1 else "1x1"
    t32 = macs / (GMACS_F32.get(tier, GMACS_F32["generic"])[cls] * 1e6)
    t8 = macs / (GMACS_INT8[fam][cls] * 1e6) + C * HW * QUANT_NS * 1e-6
    return t8, t32


def choose_int8(node: dict, consts: dict, shapes: dict, tier: str | None = None):
    """auto mode: (int8?, est. int8 ms, est. f32 ms, family) for one eligible conv."""
    from . import _tiers
    tier = tier or _tiers.tier()
    w = consts[node["inputs"][1]]
    O, C, KH, KW = (int(d) for d in w.shape)
    if int((node.get("attrs") or {}).get("group", 1)) > 1:   # depthwise (eligible: x1)
        return choose_dw(tier, O, KH * KW, node, shapes)
    wmax = _max_level(w)
    fam = ("v" if tier == "avx512vnni" else
           f"pm{16 if tier == 'avx512' else 8}" if tier in ("avx512", "avx2") and wmax <= 64
           else "g8" if wmax <= 2 else "g8w")
    ys = shapes[node["outputs"][0]]
    xs = shapes[node["inputs"][0]]
    t8, t32 = conv_cost(tier, fam, C, O, KH * KW, int(ys[-1]) * int(ys[-2]),
                        int(xs[-1]) * int(xs[-2]))
    return t8 < AUTO_MARGIN * t32, t8, t32, fam


# Depthwise: float32 FMAs either way (quant rules above); int8 saves the memory traffic of a
# float32 input (its producer writes uint8 in its epilogue, the band fill reads a quarter of
# the bytes). Measured per tier on an AMD EPYC Zen 4, one thread, MobileNetV2 (the 17
# depthwise convs and their 1x1 producers, int8 / f32 depthwise, interleaved in one process;
# bench/bench_int8_dw.py at model level; docs/PERFORMANCE.md, "int8 depthwise"): avx512 is
# the model-level figure. A measured ratio, not an estimate from GMAC/s, so
# it needs only DW_MARGIN. generic (no fused producer: a separate quantize pass) measured
# 1.07 at model level: f32 there and on ``off``.
DW_INT8_RATIO = {"avx512vnni": 0.81, "avx512": 0.87, "avx2": 0.89}
DW_MARGIN = 0.95


def choose_dw(tier: str, C: int, T: int, node: dict, shapes: dict):
    """auto mode for a depthwise conv: (int8?, est. int8 ms, est. f32 ms, "dw")."""
    ys = shapes[node["outputs"][0]]
    macs = float(C) * T * int(ys[-1]) * int(ys[-2])
    t32 = macs / (GMACS_F32.get(tier, GMACS_F32["generic"])["kxk"] / 8 * 1e6)
    r = DW_INT8_RATIO.get(tier)
    if r is None:
        return False, t32, t32, "dw"
    return r < DW_MARGIN, t32 * r, t32, "dw"


def _max_level(w) -> int:
    """Largest |level| the int8 kernels will see: 1 ternary, 2 quinary, the stored maximum
    of i8 levels, 127 for float weights (quantized per channel to +-127)."""
    enc = str(getattr(getattr(w, "encoding", None), "value", getattr(w, "encoding", "f32")))
    if enc.startswith("t"):
        return 1
    if enc.startswith("q"):
        return 2
    if enc == "i8":
        return int(np.abs(np.asarray(w.data, np.int8).astype(np.int16)).max()) if w.data.size else 0
    return 127


def annotate(nodes: list, consts: dict, ranges: dict, shapes: dict | None = None,
             auto: bool = False, tier: str | None = None, choices: list | None = None):
    """Copies of ``nodes`` where each eligible Conv with a calibrated input carries
    ``_aq = (scale, zero_point, output width)``; returns (nodes, number of int8 convs).
    shapes: every value's shape (the output width is fixed: only the batch is dynamic).
    auto: only the convs :func:`choose_int8` picks (needs shapes); ``choices`` (a list)
    receives one dict per eligible conv (node, int8, est_int8_ms, est_f32_ms, family)."""
    out, count = [], 0
    if choices is None:
        choices = []
    for nd in nodes:
        r = ranges.get(nd["inputs"][0]) if nd.get("inputs") else None
        if r is not None and eligible(nd, consts):
            s, zp = qparams(*r)
            use = True
            if auto and shapes is not None:
                use, t8, t32, fam = choose_int8(nd, consts, shapes, tier)
                choices.append({"node": nd.get("name", ""), "int8": bool(use),
                                "est_int8_ms": t8, "est_f32_ms": t32, "family": fam})
            if use:
                nd = dict(nd)
                ow = int(shapes[nd["outputs"][0]][-1]) if shapes is not None else None
                nd["_aq"] = (float(s), int(zp), ow)
                count += 1
        out.append(nd)
    return out, count


FUSE_PRODUCERS = True   # False: every int8 conv quantizes its own input (A/B, tests)
FUSE_KEEP = True        # False: no ``_qo_keep`` pairs (A/B, tests)
FUSE_SHARED = True      # False: a tensor with two int8 readers is quantized by each (A/B)
FUSE_POOL = True        # False: a MaxPool's int8 reader quantizes its input itself (A/B)
FUSE_NOY = True         # False: a ``_qo_keep`` producer stores y even when only its fused
                        # residual made it one (A/B, tests)


def mark_quantized_producers(nodes: list, consts: dict, outputs) -> int:
    """A depthwise Conv (multiplier 1) or an int8 Conv, stride 1 or 2, no fused residual,
    whose output only an int8 Conv reads (and no graph output) writes that conv's quantized
    (padded; unpadded for a depthwise consumer) input itself: ``_qo`` = the consumer's
    (scale, zero point, pads) on the
    producer, ``_qi`` on the consumer (edgenet/cpu: dw_cv and the int8 tiles quantize in
    their epilogue, other kernels through one pass after the conv; the consumer skips its
    quantize pass).

    An int8 Conv (group 1) whose float32 output is needed besides (other readers, a graph
    output, or a fused residual: a residual block's output, read by the next block's first
    conv and by its residual add) and that exactly one int8 Conv reads as its input writes
    both: ``_qo`` and ``_qo_keep`` (its tiles quantize the rows they just stored, the
    consumer quantize pass's own code; other kernels: the pass, run after the producer).
    Where only the fused residual made it one (every reader of y is one of those int8
    convs, y no graph output), ``_qo_noy`` too: the 16-lane tiles then skip y's stores
    (ResNet's blocks ahead of a downsampling block: y is read by its two int8 convs only).
    A MaxPool whose output an int8 Conv reads writes its quantized input too (4 channels
    pooled, then their rows quantized, in one parallel step: cpu/pool.py).
    In place on ``nodes`` (the copies ``annotate`` made); returns the number of pairs."""
    if not FUSE_PRODUCERS:
        return 0
    readers: dict = {}
    for nd in nodes:
        for n in nd.get("inputs", []):
            if n:
                readers[n] = readers.get(n, 0) + 1
    by_input = {}
    for i, nd in enumerate(nodes):
        if nd.get("_aq") is not None and nd.get("inputs"):
            by_input.setdefault(nd["inputs"][0], []).append(i)
    outs = set(outputs)
    count = 0
    for i, nd in enumerate(nodes):
        op = nd.get("op")
        if op not in ("Conv", "MaxPool") or len(nd.get("outputs", [])) != 1:
            continue
        y = nd["outputs"][0]
        ins = nd.get("inputs", [])
        rq = by_input.get(y, [])
        if not rq or i in rq:
            continue
        j = max(rq, key=lambda k: sum(_pads(nodes[k])))   # the padded reader, if any
        extra = [k for k in rq if k != j]
        if extra and not (FUSE_SHARED and
                          all(_reads_interior(nodes[k], nodes[j], consts) for k in extra)):
            continue
        if op == "MaxPool":    # writes y as always, then its reader's words (cpu/pool.py)
            if FUSE_POOL:
                count += _pair(nodes, i, j, extra, False)
            continue
        a = nd.get("attrs") or {}
        w = consts.get(ins[1]) if len(ins) > 1 else None
        shp = tuple(int(d) for d in getattr(w, "shape", ()))
        g = int(a.get("group", 1))
        st = [int(v) for v in a.get("strides", [1, 1])]
        need_y = y in outs or readers.get(y) != len(rq)
        keep = need_y or (len(ins) > 3 and bool(ins[3]))
        if keep and not (FUSE_KEEP and g == 1 and nd.get("_aq") is not None):
            continue
        dwise = g >= 2 and shp[0] == g and shp[1] == 1
        if len(shp) != 4 or not (dwise or nd.get("_aq") is not None) or len(st) != 2 \
                or st[0] != st[1] or st[0] not in (1, 2):
            continue
        count += _pair(nodes, i, j, extra, keep)
        if keep and not need_y and FUSE_NOY and nodes[i].get("_qo_keep"):
            nodes[i]["_qo_noy"] = True
    return count


def _pair(nodes, i, j, extra, keep) -> int:
    """Mark producer i as writing the quantized input of reader j (and of the 1x1 readers
    ``extra``, at its interior); returns 1, or 0 where j's pads are not 4 numbers."""
    q = nodes[j]
    pads = _pads(q)
    if len(pads) != 4:
        return 0
    if int((q.get("attrs") or {}).get("group", 1)) > 1:   # a depthwise consumer pads its
        pads = (0, 0, 0, 0)                               # bands itself
    nodes[i] = dict(nodes[i], _qo=(q["_aq"][0], q["_aq"][1], pads))
    if keep:
        nodes[i]["_qo_keep"] = True
    nodes[j] = dict(q, _qi=True)
    for k in extra:   # 1x1 readers: the same buffer, read at its interior
        nodes[k] = dict(nodes[k], _qi=True, **({"_qi_pads": pads} if any(pads) else {}))
    return 1


def _pads(nd) -> tuple:
    return tuple(int(v) for v in (nd.get("attrs") or {}).get("pads", [0, 0, 0, 0]))


def _reads_interior(nd, main, consts) -> bool:
    """Can the int8 Conv ``nd`` read the quantized input its producer writes for ``main``
    (another int8 reader of the same tensor, the one whose pads the buffer has): a dense
    1x1 conv without pads, quantized with the same scale and zero point (the ResNet
    downsample beside its block's first 3x3 conv)."""
    a = nd.get("attrs") or {}
    ins = nd.get("inputs", [])
    w = consts.get(ins[1]) if len(ins) > 1 else None
    shp = tuple(int(d) for d in getattr(w, "shape", ()))
    return (len(shp) == 4 and shp[2:] == (1, 1) and int(a.get("group", 1)) == 1
            and not any(_pads(nd)) and tuple(nd["_aq"][:2]) == tuple(main["_aq"][:2]))


def ranges_from_metadata(meta: dict):
    aq = (meta or {}).get(METADATA_KEY)
    if not isinstance(aq, dict) or not isinstance(aq.get("ranges"), dict):
        return None
    out = {}
    for k, v in aq["ranges"].items():
        if not (isinstance(v, (list, tuple)) and len(v) == 2):
            raise EdgenetError(f"metadata '{METADATA_KEY}': range of '{k}' is not [lo, hi]")
        out[str(k)] = (float(v[0]), float(v[1]))
    return out


def calibrate(model, samples: np.ndarray, method: str = "minmax", percentile: float = 99.99,
              batch: int = 8) -> dict:
    """Ranges {tensor name: (lo, hi)} of every eligible Conv input, observed running the
    float32 ``model`` (a loaded edgenet Model with f32 activations) on ``samples``
    (S, ...). ``minmax``: the extremes; ``percentile``: per batch, the ``percentile`` /
    (100 - ``percentile``) quantiles, averaged over batches (clips rare outliers)."""
    if method not in METHODS:
        raise EdgenetError(f"calibration method must be one of {METHODS}, got {method!r}")
    if getattr(model, "activations", "f32") != "f32":
        raise EdgenetError("calibrate() needs a model loaded with activations='f32'")
    if len(model.inputs) != 1:
        raise EdgenetError("calibration supports one-input models")
    names = {nd["inputs"][0] for nd in model.graph["nodes"] if eligible(nd, model.consts)}
    acc: dict = {}
    spec = model.inputs[0]
    samples = np.ascontiguousarray(samples, dtype=np.float32)
    if samples.ndim != len(spec.shape) or samples.shape[0] == 0:
        raise InputError(f"calibration samples: shape {samples.shape} does not match the "
                         f"input '{spec.name}' {spec.shape}")

    def see(name, v):
        if name not in names:
            return
        if method == "minmax":
            lo, hi = float(v.min()), float(v.max())
        else:
            lo, hi = (float(q) for q in np.percentile(v, [100.0 - percentile, percentile]))
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise EdgenetError(f"calibration: tensor '{name}' has NaN or infinite values")
        acc.setdefault(name, []).append((lo, hi))

    for i in range(0, samples.shape[0], batch):
        model.run({spec.name: samples[i:i + batch]}, observe=see)
    out = {}
    for k, v in acc.items():
        a = np.array(v, np.float64)
        out[k] = ((float(a[:, 0].min()), float(a[:, 1].max())) if method == "minmax"
                  else (float(a[:, 0].mean()), float(a[:, 1].mean())))
    return out


def metadata_entry(ranges: dict, method: str, samples: int) -> dict:
    return {"mode": "int8", "method": method, "samples": int(samples),
            "ranges": {k: [float(lo), float(hi)] for k, (lo, hi) in sorted(ranges.items())}}
