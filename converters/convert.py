"""ONNX → .edgenet conversion: normalize (from_onnx), quantize (quantize), pack, write.

``convert(src, dst, ...)`` returns a :class:`Report` (per-layer rows and a summary).
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field

import numpy as np

from edgenet.errors import ConversionError
from edgenet.io import sha256_file
from edgenet.format import pack, stored_nbytes, write_model
from edgenet.format.writer import umask

from edgenet import __version__  # one distribution, one version
from .quantize import (GRANULARITIES, THRESHOLDS, detect_levels, dequantize, int8_quantize,
                       quinarize, ternarize)

WEIGHT_MODES = ("ternary", "quinary", "int8", "f16", "f32")
KEEP_FLOAT = ("first", "last")


@dataclass
class LayerRow:
    name: str          # IR node name
    op: str            # Conv / ConvTranspose / Gemm
    tensor: str        # IR weight tensor name
    shape: tuple       # weight shape (IR layout)
    encoding: str      # f32 f16 i8 t2 q3
    zeros: float       # % of zero weights (levels for quantized)
    rel_error: float   # ‖W − Q‖ / ‖W‖ on the weights as trained (before BN folding)
    nbytes: int        # stored bytes incl. per-channel scales
    note: str = ""     # "lossless", "kept float", ...

    def as_dict(self):
        return {"name": self.name, "op": self.op, "tensor": self.tensor,
                "shape": list(self.shape), "encoding": self.encoding,
                "zeros_pct": round(self.zeros, 4), "rel_error": float(self.rel_error),
                "bytes": self.nbytes, "note": self.note}


@dataclass
class Report:
    src: str
    dst: str
    settings: dict
    layers: list = field(default_factory=list)
    source_bytes: int = 0
    output_bytes: int = 0
    weight_count: int = 0
    weight_bytes: int = 0
    reference_onnx: str | None = None
    fidelity: dict | None = None

    @property
    def ratio(self) -> float:
        return self.source_bytes / self.output_bytes if self.output_bytes else 0.0

    @property
    def bits_per_weight(self) -> float:
        """Stored bits per Conv/ConvTranspose/Gemm weight (scales included)."""
        return 8.0 * self.weight_bytes / self.weight_count if self.weight_count else 0.0

    def summary(self) -> dict:
        return {"source_bytes": self.source_bytes, "output_bytes": self.output_bytes,
                "ratio": round(self.ratio, 3), "bits_per_weight": round(self.bits_per_weight, 4),
                "weights": self.weight_count, "weight_bytes": self.weight_bytes}

    def format_table(self) -> str:
        hdr = ("layer", "op", "shape", "enc", "zeros%", "rel.err", "bytes", "note")
        rows = [(r.name, r.op, "x".join(map(str, r.shape)), r.encoding, f"{r.zeros:.1f}",
                 f"{r.rel_error:.4f}", str(r.nbytes), r.note) for r in self.layers]
        widths = [max(len(str(x)) for x in col) for col in zip(hdr, *rows)] if rows else \
            [len(h) for h in hdr]
        widths[0] = min(widths[0], 48)

        def line(cells):
            out = []
            for i, (c, w) in enumerate(zip(cells, widths)):
                c = str(c)
                if i == 0 and len(c) > w:
                    c = "…" + c[-(w - 1):]
                out.append(c.rjust(w) if i in (4, 5, 6) else c.ljust(w))
            return "  ".join(out).rstrip()

        lines = [line(hdr), line(["-" * w for w in widths])] + [line(r) for r in rows]
        s = self.summary()
        lines.append("")
        if self.fidelity is not None:
            f = self.fidelity
            lines.append(f"fidelity vs float on {f['samples']} held-out samples: top-1 agreement "
                         f"{100 * f['top1_agreement']:.2f}%, output SNR {f['snr_db']:.1f} dB")
        lines.append(f"source {s['source_bytes']:,} B -> {os.path.basename(self.dst)} "
                     f"{s['output_bytes']:,} B  (ratio {self.ratio:.2f}x, "
                     f"{self.bits_per_weight:.2f} bits/weight over {self.weight_count:,} conv/gemm weights)")
        return "\n".join(lines)



def _norm_keep(keep_float):
    if keep_float is None or keep_float == "none":
        return ()
    if isinstance(keep_float, str):
        keep_float = [k for k in keep_float.split(",") if k]
    keep = tuple(keep_float)
    for k in keep:
        if k not in KEEP_FLOAT:
            raise ValueError(f"keep_float entries must be in {KEEP_FLOAT}, got {k!r}")
    return keep


def _check_metadata(src, g, mean, std, labels, layout):
    """--mean/--std need one value per input channel (or one for all); --labels one per
    class of the first output (its axis 1, or all its elements)."""
    shape = g.inputs[0]["shape"] if len(g.inputs) == 1 else []
    c = (shape[1] if layout == "NCHW" else shape[-1]) if len(shape) == 4 else None
    for opt, v in (("--mean", mean), ("--std", std)):
        n = None if v is None else int(np.size(v))
        if n is not None and isinstance(c, int) and n not in (1, c):
            raise ConversionError(f"{opt}: {n} values, but the input of {os.path.basename(src)}"
                                  f" has {c} channels")
    out = g.outputs[0]["shape"] if g.outputs else []
    if labels is not None and len(out) >= 2 and all(isinstance(d, int) for d in out[1:]):
        ok = (out[1], int(np.prod(out[1:])))
        if len(labels) not in ok:
            raise ConversionError(f"--labels: {len(labels)} labels, but the output of "
                                  f"{os.path.basename(src)} has {out[1]} classes")


def quantize_weight(values, weights, granularity, threshold):
    """(encoding, levels or float values, alpha or None, lossless flag) for one weight."""
    if weights in ("ternary", "quinary", "int8", "f16"):
        det = detect_levels(values, 1)
        if det is not None:
            return "t2", det[0], det[1], True
        det = detect_levels(values, 2)
        if det is not None:
            return "q3", det[0], det[1], True
    if weights == "ternary":
        lv, a = ternarize(values, granularity, threshold)
        return "t2", lv, a, False
    if weights == "quinary":
        lv, a = quinarize(values, granularity)
        return "q3", lv, a, False
    if weights == "int8":
        lv, a = int8_quantize(values)
        return "i8", lv, a, False
    return weights_float(weights), values, None, False


def weights_float(weights):
    return {"f16": "f16", "f32": "f32"}[weights]


def convert(src, dst, *, weights="ternary", granularity="channel", threshold="twn",
            keep_float=("first", "last"), reference_onnx=None, mean=None, std=None,
            labels=None, layout="NCHW", size=None, progress=None, activations="f32",
            calibration=None, calib_method="minmax", input_shapes=None, calibrate_weights=False,
            target_agreement=None, max_bits=None, holdout=0.2,
            fidelity_samples=None, log=None, min_ternary=None, calib_seeds=1,
            int8=None) -> Report:
    """Convert the ONNX model ``src`` into the .edgenet file ``dst``.

    weights: ternary | quinary | int8 | f16 | f32 for Conv/ConvTranspose/Gemm weights
    (biases and other constants stay f32). keep_float: ("first", "last"), a subset, or ()
    — those layers stay f32. Weights that already are α·T (ternary/quinary, e.g. from
    quantization-aware training) are packed losslessly as t2/q3 in every mode except f32.
    reference_onnx: also write the source ONNX with each quantized weight initializer
    replaced by its dequantized values (same names, layout, dtype).
    progress: optional callback(done, total).
    activations: "f32", or "int8": calibrate the activation ranges of the eligible convs
    (edgenet/quant.py) by running the converted model on ``calibration`` (float32 samples
    (S, C, H, W)) and store them, so ``edgenet.load`` runs uint8 x int8 kernels there.
    calib_method: "minmax" or "percentile" (99.99th, averaged per batch of 8).
    input_shapes: {input name: dims} freezes those inputs' symbolic dims (``--input-shape``);
    otherwise symbolic dims (batch, height, width...) stay symbolic in the file.
    calibrate_weights: quantize ternary/quinary weights layer by layer on ``calibration``
    (converters/ptq.py: output-error fit, α refit, bias correction; per output channel)
    instead of the plain rules. target_agreement (e.g. 0.99) or max_bits (e.g. 2.5 bits per
    weight, scales included): mixed precision, each layer t2/q3/i8/f16 by measured
    sensitivity (converters/mixed.py). min_ternary (e.g. 0.8, weights 'ternary'): mixed
    precision with a ternary floor: at least this share of the weights stays t2 and the
    most sensitive layers per weight take the rest at i8 (mixed.choose_min_ternary), each
    i8 layer fitted to the float outputs on its quantized inputs (ptq ``i8_target``).
    int8: with calibrated weights, layers stored i8 by rule (mixed.int8_rules: first, last,
    depthwise, small:N) before any sensitivity choice (with min_ternary they count against
    the floor). calib_seeds: calibrate this many times (seeds of the row sampling) and keep the
    solution with the best output SNR on the held-out samples (ptq.calibrate_best).
    holdout: the fraction of ``calibration`` kept out of
    the fit for the fidelity report (top-1 agreement and output SNR against the float
    network, stored in the metadata as "fidelity"); or pass ``fidelity_samples``.
    log: optional callable(str) for progress lines (the mixed-precision table).
    """
    from .from_onnx import load_onnx

    if weights not in WEIGHT_MODES:
        raise ValueError(f"weights must be one of {WEIGHT_MODES}, got {weights!r}")
    if granularity not in GRANULARITIES:
        raise ValueError(f"granularity must be one of {GRANULARITIES}, got {granularity!r}")
    if threshold not in THRESHOLDS:
        raise ValueError(f"threshold must be one of {THRESHOLDS}, got {threshold!r}")
    if activations not in ("f32", "int8"):
        raise ValueError(f"activations must be f32 or int8, got {activations!r}")
    if activations == "int8" and calibration is None:
        raise ConversionError("activations 'int8' need calibration samples (--calibrate FILE.npy)")
    if layout not in ("NCHW", "NHWC"):
        raise ValueError(f"layout must be NCHW or NHWC, got {layout!r}")
    keep = _norm_keep(keep_float)
    src, dst = os.fspath(src), os.fspath(dst)
    mixed_on = target_agreement is not None or max_bits is not None
    if int8 and not (calibrate_weights or mixed_on or min_ternary is not None):
        raise ValueError("int8 rules need calibrated weights (calibrate_weights or mixed)")
    if int(calib_seeds) < 1:
        raise ValueError(f"calib_seeds must be >= 1, got {calib_seeds!r}")
    if min_ternary is not None:
        if mixed_on:
            raise ValueError("min_ternary: give it alone, not with target_agreement / max_bits")
        if weights != "ternary":
            raise ValueError("min_ternary needs weights 'ternary'")
        if not 0.0 <= float(min_ternary) <= 1.0:
            raise ValueError(f"min_ternary must be in [0, 1], got {min_ternary!r}")
        mixed_on = True
    if (calibrate_weights or mixed_on) and calibration is None:
        raise ConversionError("calibrated weights need calibration samples (--calibrate FILE.npy)")
    if mixed_on and weights not in ("ternary", "quinary"):
        raise ValueError("target_agreement / max_bits need weights 'ternary' or 'quinary'")
    if target_agreement is not None and not (0.0 < float(target_agreement) <= 1.0):
        raise ValueError(f"target_agreement must be in (0, 1], got {target_agreement!r}")
    if max_bits is not None and not (float(max_bits) >= 2.0):
        raise ValueError(f"max_bits must be >= 2.0 (ternary with scales is just above 2), "
                         f"got {max_bits!r}")

    g = load_onnx(src, input_shapes=input_shapes)
    _check_metadata(src, g, mean, std, labels, layout)  # before any quantizing

    # weight layers in topological order (for keep_float first/last)
    order = [nd["inputs"][1] for nd in g.nodes
             if nd["op"] in ("Conv", "ConvTranspose", "Gemm") and nd["inputs"][1] in g.weights]
    kept = set()
    if order and "first" in keep:
        kept.add(order[0])
    if order and "last" in keep:
        kept.add(order[-1])

    settings = {"weights": weights, "granularity": granularity, "threshold": threshold,
                "keep_float": list(keep)}
    cal = None
    fid_x = None
    bias_deltas = {}
    if calibration is not None and (calibrate_weights or mixed_on
                                    or fidelity_samples is not None):
        from . import ptq
        cal_x, fid_x = _split_samples(g, calibration, holdout, fidelity_samples)
        fc0 = ptq.float_consts(g)
    if (calibrate_weights or mixed_on) and weights in ("ternary", "quinary"):
        from . import ptq
        enc0 = {"ternary": "t2", "quinary": "q3"}[weights]
        encs = {}
        for wname in order:
            v = g.weights[wname].values
            if wname in kept or detect_levels(v, 2) is not None:
                encs[wname] = "f32"      # kept float, or already ternary/quinary (lossless)
            else:
                encs[wname] = enc0
        mixed_table = None
        if int8:
            from . import mixed
            encs, _ = mixed.int8_rules(g, encs, int8)
            settings["int8"] = int8 if isinstance(int8, str) else ",".join(int8)
        if mixed_on:
            from . import mixed
            if min_ternary is not None:
                encs, mixed_table, _ = mixed.choose_min_ternary(g, cal_x, encs, min_ternary,
                                                                log=log, i8_target=True)
            else:
                encs, mixed_table = mixed.choose(g, cal_x, encs,
                                                 target_agreement=target_agreement,
                                                 max_bits=max_bits, log=log)
        old_bias = {k: v.copy() for k, v in g.consts.items()}
        i8t = min_ternary is not None
        seed_fids = None
        if int(calib_seeds) > 1:
            if fid_x is None or not len(fid_x):
                raise ConversionError("calib_seeds > 1 needs held-out samples (holdout > 0 or "
                                      "fidelity samples) to choose between the solutions")
            cal, seed_fids = ptq.calibrate_best(g, cal_x, encs, fid_x,
                                                seeds=range(int(calib_seeds)), log=log,
                                                i8_target=i8t)
        else:
            cal = ptq.calibrate(g, cal_x, encs, i8_target=i8t)
        ptq.apply_biases(g, cal)
        bias_deltas = _bias_deltas(g, cal, old_bias)
        settings.update({"granularity": "channel", "calibrated": {
            "method": "layerwise output-error fit (GPTQ-style, alpha refit, bias correction)",
            "samples": int(len(cal_x)), "seconds": round(cal.seconds, 2)}})
        if seed_fids is not None:
            settings["calibrated"]["seeds"] = seed_fids
        if i8t:
            settings["calibrated"]["i8_target"] = True
        if mixed_on:
            settings["mixed"] = {"target_agreement": target_agreement, "max_bits": max_bits,
                                 "table": mixed_table}
            if min_ternary is not None:
                settings["mixed"]["min_ternary"] = float(min_ternary)
    report = Report(src=src, dst=dst, settings=settings, reference_onnx=reference_onnx)
    tensors = {}
    ref_values = {}        # source tensor name -> dequantized values in source layout
    total = len(order) + 1
    done = 0
    node_of = {nd["inputs"][1]: nd for nd in g.nodes
               if nd["op"] in ("Conv", "ConvTranspose", "Gemm")}
    for wname in order:
        w = g.weights[wname]
        vals = w.values
        mode = "f32" if (wname in kept and weights != "f32") else weights
        cw = cal.weights.get(wname) if cal is not None else None
        if cw is not None and cw[0] in ("t2", "q3", "i8"):
            enc, q, alpha, lossless = cw[0], cw[1], cw[2], False
        elif cw is not None and cw[0] == "f16":
            enc, q, alpha, lossless = "f16", vals, None, False
        else:
            try:
                enc, q, alpha, lossless = quantize_weight(vals, mode, granularity, threshold)
            except ValueError as e:
                raise ConversionError(f"node '{w.node}': cannot quantize weight '{wname}': "
                                      f"{e}") from None
        mult = w.mult
        if enc in ("t2", "q3", "i8"):
            scale = (alpha.astype(np.float64) * mult).astype(np.float32)
            packed = pack(enc, q, scale)
            deq = dequantize(q, alpha)
            nbytes = stored_nbytes(packed.encoding, packed.shape) + 4 * len(scale)
            zeros = 100.0 * float(np.mean(q == 0)) if q.size else 0.0
            if not lossless and w.source is not None:
                ref_values[w.source] = w.to_source(deq)
            elif not lossless:
                raise_ref = reference_onnx is not None
                if raise_ref:
                    raise ConversionError(f"node '{w.node}': weight '{wname}' is computed, "
                                          "not an initializer; cannot write a reference ONNX")
        else:
            folded = vals.astype(np.float64) * mult.reshape((-1,) + (1,) * (vals.ndim - 1))
            packed = pack(enc, folded.astype(np.float32))
            deq = vals if enc == "f32" else vals.astype(np.float16).astype(np.float32)
            nbytes = stored_nbytes(packed.encoding, packed.shape)
            zeros = 100.0 * float(np.mean(vals == 0)) if vals.size else 0.0
            if enc == "f16" and w.source is not None:
                ref_values[w.source] = w.to_source(deq)
        nrm = float(np.linalg.norm(vals.astype(np.float64)))
        err = float(np.linalg.norm(vals.astype(np.float64) - deq.astype(np.float64)))
        rel = err / nrm if nrm > 0 else (0.0 if err == 0 else float("inf"))
        note = "lossless" if lossless else ("kept float" if wname in kept and weights != "f32"
                                            else ("calibrated" if cw is not None and enc != "f32"
                                                  else ""))
        tensors[wname] = packed
        nd = node_of[wname]
        report.layers.append(LayerRow(nd["name"], nd["op"], wname, tuple(vals.shape), enc, zeros,
                                      rel, nbytes, note))
        report.weight_count += int(vals.size)
        report.weight_bytes += nbytes
        done += 1
        if progress is not None:
            progress(done, total)
    for name, v in g.consts.items():
        tensors[name] = pack("f32", v)
    if fid_x is not None and len(fid_x):
        from . import ptq
        report.fidelity = _fidelity(g, fc0, tensors, fid_x)

    src_bytes = os.path.getsize(src)
    meta = {
        "producer": f"edgenet-converters {__version__}",
        "source": {"file": os.path.basename(src), "sha256": sha256_file(src), "bytes": src_bytes,
                   "format": "onnx", "opset": g.opset},
        "quantization": settings,
        "inputs": [dict(i) for i in g.inputs],
        "outputs": [dict(o) for o in g.outputs],
        "layers": [r.as_dict() for r in report.layers],
    }
    if mean is not None or std is not None or size is not None:
        meta["preprocessing"] = {
            "mean": None if mean is None else [float(v) for v in np.ravel(mean)],
            "std": None if std is None else [float(v) for v in np.ravel(std)],
            "layout": layout,
            "size": None if size is None else [int(v) for v in np.ravel(size)],
        }
    if labels is not None:
        meta["labels"] = [str(x) for x in labels]
    if report.fidelity is not None:
        meta["fidelity"] = report.fidelity

    if activations == "int8":   # calibrate a temporary f32 copy first: dst is written once
        meta = _calibrated_meta(dst, g.to_json(), tensors, meta, calibration, calib_method)
    # Both outputs or neither: the reference ONNX is built first into a temporary file next
    # to it, the model is written (atomically), then the reference is renamed into place; a
    # failure on the way removes what this call wrote (never a file without its reference).
    ref_tmp = None
    if reference_onnx is not None:
        ref_tmp = _reference_tmp(reference_onnx)
        try:
            qdq = None
            if activations == "int8":
                qdq = _int8_reference(g, tensors, meta, ref_values)
            write_reference_onnx(g.source_model, ref_values, ref_tmp, qdq=qdq,
                                 bias_deltas=bias_deltas)
        except BaseException as e:
            _unlink(ref_tmp)
            if isinstance(e, (OSError, ValueError)):
                raise ConversionError(f"{reference_onnx}: cannot write the reference ONNX: "
                                      f"{e}") from None
            raise
    try:
        out_bytes = write_model(dst, graph=g.to_json(), tensors=tensors, metadata=meta)
    except BaseException as e:
        if ref_tmp is not None:
            _unlink(ref_tmp)
        if isinstance(e, (OSError, ValueError, TypeError)):
            raise ConversionError(f"{dst}: cannot write model: {e}") from None
        raise
    if ref_tmp is not None:
        try:
            os.replace(ref_tmp, os.fspath(reference_onnx))
        except BaseException as e:
            _unlink(ref_tmp)
            _unlink(dst)
            if isinstance(e, OSError):
                raise ConversionError(f"{reference_onnx}: cannot write the reference ONNX: "
                                      f"{e}") from None
            raise
    report.source_bytes = src_bytes
    report.output_bytes = out_bytes
    if progress is not None:
        progress(total, total)
    return report


def _split_samples(g, samples, holdout, fidelity_samples):
    """(calibration part, held-out part) of the samples (float32, batch axis first)."""
    rank = len(g.inputs[0]["shape"])
    x = np.asarray(samples, dtype=np.float32)
    if x.ndim == rank - 1:
        x = x[None]
    want = g.inputs[0]["shape"]
    if x.ndim != rank or any(isinstance(d, int) and d != s for d, s in zip(want[1:], x.shape[1:])) \
            or not np.all(np.isfinite(x)):
        dims = "(" + ", ".join(str(d) if isinstance(d, int) else "N" for d in want) + ")"
        raise ConversionError(f"calibration failed: samples of shape {x.shape} (finite floats "
                              f"expected) do not fit input '{g.inputs[0]['name']}' {dims}")
    if fidelity_samples is not None:
        f = np.asarray(fidelity_samples, dtype=np.float32)
        return x, (f[None] if f.ndim == rank - 1 else f)
    if not (0.0 <= float(holdout) < 1.0):
        raise ValueError(f"holdout must be in [0, 1), got {holdout!r}")
    n_out = int(round(len(x) * float(holdout)))
    if n_out == 0 or len(x) - n_out < 1:
        return x, None
    return x[:len(x) - n_out], x[len(x) - n_out:]


def _bias_deltas(g, cal, old_bias):
    """{source weight name: (bias change in the IR node's output units, mult)} for the
    reference ONNX."""
    out = {}
    for nd in g.nodes:
        if nd["op"] not in ("Conv", "ConvTranspose", "Gemm") or len(nd["inputs"]) < 3:
            continue
        w = g.weights.get(nd["inputs"][1])
        b = nd["inputs"][2]
        if w is None or not b:
            continue
        if b in cal.biases:
            d = cal.biases[b].astype(np.float64) - old_bias[b].astype(np.float64)
        elif nd["name"] in cal.new_biases:
            d = cal.new_biases[nd["name"]].astype(np.float64)
        else:
            continue
        if w.source is not None:
            out[w.source] = (d, np.asarray(w.mult, np.float64))
    return out


def _fidelity(g, float_consts, tensors, x):
    """Agreement / SNR of the packed tensors (dequantized) against the float network on
    ``x``, both run by the NumPy reference backend."""
    from . import ptq

    qc = {k: ptq.Const(t.dequantize()) for k, t in tensors.items()}
    fc = dict(float_consts)
    for k, t in qc.items():      # biases added by bias correction: zero in the float network
        if k not in fc:
            fc[k] = ptq.Const(np.zeros(t.shape, np.float32))
    yq = ptq.forward(g, qc, x)
    yf = ptq.forward(g, fc, x)
    o = g.outputs[0]["name"]
    return ptq.fidelity(yf[o], yq[o])


def _calibrated_meta(dst, graph, tensors, meta, samples, method):
    """Metadata with the activation ranges observed running the model (written to a
    temporary file beside ``dst``, f32 activations) on the samples."""
    from edgenet import quant
    from edgenet.errors import EdgenetError
    from edgenet.runtime import load

    d = os.path.dirname(os.path.abspath(dst))
    fd, tmp = tempfile.mkstemp(prefix=".edgenet-calib-", suffix=".edgenet", dir=d)
    os.close(fd)
    try:
        write_model(tmp, graph=graph, tensors=tensors, metadata=meta)
        m = load(tmp, activations="f32")
        samples = np.asarray(samples)
        if samples.ndim == len(m.inputs[0].shape) - 1:
            samples = samples[None]
        ranges = quant.calibrate(m, samples.astype(np.float32), method=method)
        del m
    except EdgenetError as e:
        raise ConversionError(f"calibration failed: {e}") from None
    except (OSError, ValueError, TypeError) as e:
        raise ConversionError(f"calibration failed: cannot write {tmp}: {e}") from None
    finally:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
    meta = dict(meta)
    meta[quant.METADATA_KEY] = quant.metadata_entry(ranges, method, len(samples))
    return meta


def _int8_reference(g, tensors, meta, ref_values):
    """For the int8-activation reference ONNX: {source Conv node name: (input scale, zero
    point)} of the convs that run int8, and (in ``ref_values``) the per-channel int8 weights
    those with float weights use (edgenet/quant.py rules; the same levels as the folded
    weight's, BatchNorm folding scales whole output channels)."""
    from edgenet import quant

    ranges = quant.ranges_from_metadata(meta) or {}
    nodes, _ = quant.annotate(g.to_json()["nodes"], tensors, ranges)
    qdq = {}
    for nd in nodes:
        if "_aq" not in nd:
            continue
        qdq[nd["name"]] = (nd["inputs"][0], nd["_aq"][0], nd["_aq"][1])
        w = g.weights.get(nd["inputs"][1])
        if w is None or tensors[nd["inputs"][1]].quantized:
            continue            # ternary / quinary / i8: ref_values has them already
        if w.source is None:
            raise ConversionError(f"node '{nd['name']}': weight is computed, not an "
                                  "initializer; cannot write an int8 reference ONNX")
        vals = np.asarray(w.values, np.float32)
        lev, a = quant.int8_weights(vals.reshape(vals.shape[0], -1))
        ref_values[w.source] = w.to_source((lev * a[:, None]).reshape(vals.shape))
    return qdq


def _insert_qdq(m, qdq: dict):
    """QuantizeLinear -> DequantizeLinear (uint8, per tensor) on the data input of each
    named Conv: the int8-activation semantics in plain ONNX, for onnxruntime as an oracle."""
    import onnx
    from onnx import helper, numpy_helper

    new_nodes = []
    seen = set()
    for n in m.graph.node:
        if n.op_type == "Conv" and n.name in qdq:
            t, s, zp = qdq[n.name]
            if n.input[0] != t:
                raise ConversionError(f"int8 reference ONNX: node '{n.name}' reads "
                                      f"'{n.input[0]}', edgenet's conv reads '{t}'")
            base = f"{n.name}__edgenet_a8"
            m.graph.initializer.extend([
                numpy_helper.from_array(np.array(s, np.float32), base + "_scale"),
                numpy_helper.from_array(np.array(zp, np.uint8), base + "_zp")])
            new_nodes.append(helper.make_node("QuantizeLinear", [t, base + "_scale", base + "_zp"],
                                              [base + "_q"], name=base + "_Q"))
            new_nodes.append(helper.make_node("DequantizeLinear",
                                              [base + "_q", base + "_scale", base + "_zp"],
                                              [base + "_dq"], name=base + "_DQ"))
            n.input[0] = base + "_dq"
            seen.add(n.name)
        new_nodes.append(n)
    if set(qdq) - seen:
        raise ConversionError(f"int8 reference ONNX: Conv nodes not found in the source: "
                              f"{sorted(set(qdq) - seen)}")
    del m.graph.node[:]
    m.graph.node.extend(new_nodes)
    for op in m.opset_import:
        if op.domain in ("", "ai.onnx") and op.version < 10:
            raise ConversionError(f"int8 reference ONNX: the source is opset {op.version}; "
                                  "QuantizeLinear/DequantizeLinear need opset 10")
    onnx.checker.check_model(m)


def _patch_biases(m, bias_deltas: dict):
    """Add the calibrated bias corrections to the source graph: for each quantized weight
    (source name -> (delta in the IR node's output units, mult)), the Conv/ConvTranspose
    bias (delta / mult: BatchNorm and other per-channel factors folded after the layer) or
    the Gemm C (delta · alpha / (mult · beta)); a bias input is added where there was none."""
    from onnx import helper, numpy_helper

    inits = {t.name: t for t in m.graph.initializer}
    consts = {n.output[0]: n for n in m.graph.node if n.op_type == "Constant"}
    uses = {}
    for n in m.graph.node:
        for i in n.input:
            uses[i] = uses.get(i, 0) + 1
    for n in m.graph.node:
        if n.op_type not in ("Conv", "ConvTranspose", "Gemm") or len(n.input) < 2 \
                or n.input[1] not in bias_deltas:
            continue
        d, mult = bias_deltas.pop(n.input[1])
        at = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        if n.op_type == "Gemm":
            alpha, beta = float(at.get("alpha", 1.0)), float(at.get("beta", 1.0))
            post = mult / alpha
            scale = beta
        else:
            post, scale = mult, 1.0
        if np.any((post == 0) & (d != 0)) or scale == 0:
            raise ConversionError(f"reference ONNX: node '{n.name}': a bias correction "
                                  "follows a zero scale; cannot express it")
        add = np.divide(d, post * scale, out=np.zeros_like(d), where=post != 0)
        o = add.size
        if len(n.input) > 2 and n.input[2]:
            t = inits.get(n.input[2])
            if t is None and n.input[2] in consts and uses.get(n.input[2]) == 1:
                t = next((a.t for a in consts[n.input[2]].attribute if a.name == "value"),
                         None)        # a bias held by a Constant node (Paddle exports)
            if t is None:
                raise ConversionError(f"reference ONNX: node '{n.name}': bias "
                                      f"'{n.input[2]}' is not an initializer")
            old = numpy_helper.to_array(t).astype(np.float64)
            old = np.broadcast_to(old.reshape(-1) if old.size in (1, o) else old, (o,))
            new = (old + add).astype(np.float32)
            if n.op_type == "Gemm" and len(t.dims) == 2:
                new = new.reshape(1, o)
            t.CopyFrom(numpy_helper.from_array(new, t.name))
        else:
            name = f"{n.name or n.output[0]}__edgenet_ptq_bias"
            m.graph.initializer.append(numpy_helper.from_array(add.astype(np.float32), name))
            while len(n.input) < 2:
                n.input.append("")
            if len(n.input) == 2:
                n.input.append(name)
            else:
                n.input[2] = name
    if bias_deltas:            # a linear layer exported as MatMul + Add of a constant
        _patch_matmul_biases(m, bias_deltas)
    if bias_deltas:
        raise ConversionError(f"reference ONNX: layers not found for the bias corrections: "
                              f"{sorted(bias_deltas)}")


def _patch_matmul_biases(m, bias_deltas: dict):
    """MatMul(x, W) whose only consumer is Add(., b), b an initializer or a Constant node's
    output used only there, of shape (O,) or (1, O): the bias correction of W's layer
    (popped from ``bias_deltas``) is added to b."""
    from onnx import numpy_helper

    inits = {t.name: t for t in m.graph.initializer}
    consts = {n.output[0]: n for n in m.graph.node if n.op_type == "Constant"}
    users = {}
    for n in m.graph.node:
        for i in n.input:
            users.setdefault(i, []).append(n)
    for n in m.graph.node:
        if n.op_type != "MatMul" or len(n.input) < 2 or n.input[1] not in bias_deltas:
            continue
        u = users.get(n.output[0], [])
        if len(u) != 1 or u[0].op_type != "Add":
            continue
        other = [i for i in u[0].input if i != n.output[0]]
        if len(other) != 1 or len(users.get(other[0], [])) != 1:
            continue
        if other[0] in inits:
            t = inits[other[0]]
        elif other[0] in consts:
            t = next((a.t for a in consts[other[0]].attribute if a.name == "value"), None)
        else:
            continue
        if t is None:
            continue
        d, mult = bias_deltas[n.input[1]]
        old = numpy_helper.to_array(t).astype(np.float64)
        if old.size != d.size or old.shape not in ((d.size,), (1, d.size)):
            continue
        if np.any((mult == 0) & (d != 0)):
            raise ConversionError(f"reference ONNX: MatMul weight '{n.input[1]}': a bias "
                                  "correction follows a zero scale; cannot express it")
        del bias_deltas[n.input[1]]
        add = np.divide(d, mult, out=np.zeros_like(d), where=mult != 0)
        t.CopyFrom(numpy_helper.from_array((old + add.reshape(old.shape)).astype(np.float32),
                                           t.name))


def _reference_tmp(path) -> str:
    """An empty temporary file in the directory of ``path`` (renamed onto it at the end)."""
    d = os.path.dirname(os.path.abspath(os.fspath(path)))
    try:
        fd, tmp = tempfile.mkstemp(prefix=".edgenet-ref-", suffix=".onnx.part", dir=d)
    except OSError as e:
        raise ConversionError(f"{path}: cannot write the reference ONNX: {e}") from None
    os.close(fd)
    return tmp


def _unlink(path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def write_reference_onnx(model, ref_values: dict, path, qdq: dict | None = None,
                         bias_deltas: dict | None = None):
    """Write ``model`` unchanged except that the named initializers (or Constant-node
    outputs) hold ``ref_values`` (float32, source layout) and, for int8 activations, the
    ``qdq`` convs {node name: (input, scale, zero point)} read their input through
    QuantizeLinear/DequantizeLinear. Atomic (temp file + rename)."""
    import onnx
    from onnx import numpy_helper

    m = onnx.ModelProto()
    m.CopyFrom(model)
    left = dict(ref_values)
    for t in m.graph.initializer:
        if t.name in left:
            v = np.ascontiguousarray(left.pop(t.name), dtype=np.float32)
            if tuple(t.dims) != v.shape or t.data_type != onnx.TensorProto.FLOAT:
                raise ConversionError(f"reference ONNX: initializer '{t.name}' layout mismatch")
            t.CopyFrom(numpy_helper.from_array(v, t.name))
    if left:
        for n in m.graph.node:
            if n.op_type == "Constant" and n.output[0] in left:
                v = np.ascontiguousarray(left.pop(n.output[0]), dtype=np.float32)
                for a in n.attribute:
                    if a.name == "value":
                        a.t.CopyFrom(numpy_helper.from_array(v, a.t.name))
    if left:
        raise ConversionError(f"reference ONNX: weights not found in the source: {sorted(left)}")
    if bias_deltas:
        _patch_biases(m, dict(bias_deltas))
    if qdq:
        _insert_qdq(m, qdq)
    path = os.fspath(path)
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".edgenet-ref-", suffix=".onnx.tmp", dir=d)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(m.SerializeToString())
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~umask())    # the usual permissions, not mkstemp's 0600
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
