"""Label-free fine-tuning of ternary / quinary weights (``edgenet finetune``; issue 14).

    from converters.finetune import finetune
    res = finetune("model.onnx", "model.edgenet", samples, weights="ternary", minutes=10)

For a model trained in float, with a few hundred *unlabeled* typical inputs:

1. start from the calibrated PTQ solution (converters/ptq.py: layer-wise output-error fit,
   α refit, bias correction) on the training part of the samples;
2. build a trainable PyTorch copy of the IR graph (converters/finetune_graph.py; BatchNorm
   already folded, so "BN after each quantized layer" is the folded per-channel scale α
   and the bias, both trained);
3. train with the seed's algorithm (forward with α·T(W), the gradient with respect to T
   applied unchanged to the latent float weights) on a distillation loss against the float
   network's own outputs on the same samples: KL divergence of the softmax outputs when the
   model ends in Softmax (its input is compared), else the MSE of the outputs, plus (with
   ``feature_weight``) the normalized MSE of every quantized layer's output against the
   float network's on the same batch (layer-wise reconstruction, as BRECQ); Adam, cosine
   learning-rate decay over the time/step budget, a resumable checkpoint;
4. export losslessly: the source ONNX with each quantized weight replaced by the float32
   products α·T and each bias by the trained one (this file is the ``--reference-onnx``),
   converted by ``converters.convert`` which detects the levels and packs them exactly
   (every quantized layer must report "lossless");
5. report the fidelity (top-1 agreement and output SNR against the float network on
   held-out samples, never trained on), printed and stored in the file's metadata with the
   fine-tuning settings.

torch is an optional extra: it is imported inside the functions, and the runtime never
imports this module. The checkpoint is ``torch.save`` of a dict of tensors and numbers
(loaded with ``weights_only=True``); nothing is pickled into the .edgenet file.
"""
from __future__ import annotations

import math
import os
import tempfile
import time
from dataclasses import dataclass, field

import numpy as np

from edgenet.errors import ConversionError
from edgenet.format.writer import atomic_write
from edgenet.io import sha256_file

MODES = {"ternary": "t2", "quinary": "q3"}
CKPT_VERSION = 2


@dataclass
class Result:
    report: object                 # converters.convert.Report of the written file
    fidelity: dict                 # fine-tuned file vs float on the held-out samples
    ptq_fidelity: dict             # the calibrated PTQ start vs float, same samples
    settings: dict = field(default_factory=dict)
    steps: int = 0
    seconds: float = 0.0
    ptq_seconds: float = 0.0
    kept: str = "fine-tuned"       # or "calibrated PTQ start" (fine-tuning did not beat it)

    def format(self) -> str:
        f, p = self.fidelity, self.ptq_fidelity
        return (f"fidelity vs float on {f['samples']} held-out samples: top-1 agreement "
                f"{100 * f['top1_agreement']:.2f}% (calibrated PTQ start "
                f"{100 * p['top1_agreement']:.2f}%), output SNR {f['snr_db']:.1f} dB "
                f"(start {p['snr_db']:.1f} dB); {self.steps} steps in {self.seconds:.0f} s "
                f"(+ {self.ptq_seconds:.0f} s calibration)"
                + ("" if self.kept == "fine-tuned" else "; kept the calibrated PTQ start"))


# ----------------------------------------------------------------------------- samples

def load_samples(path, g, mean=None, std=None) -> np.ndarray:
    """Samples for the IR graph ``g`` from a .npy/.npz array (S, ...) or a folder of
    .npy/.npz/image files (sorted; images resized to the input and scaled to [0, 1], then
    ``mean``/``std`` applied)."""
    from types import SimpleNamespace

    from edgenet.errors import EdgenetError
    from edgenet.io import load_input

    path = os.fspath(path)
    spec = SimpleNamespace(name=g.inputs[0]["name"], shape=g.inputs[0]["shape"])
    meta = {"preprocessing": {"mean": mean, "std": std}}
    if not os.path.exists(path):
        raise ConversionError(f"{path}: no such file or folder")
    files = [path]
    if os.path.isdir(path):
        files = sorted(os.path.join(path, f) for f in os.listdir(path)
                       if os.path.splitext(f)[1].lower() in
                       (".npy", ".npz", ".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif",
                        ".tiff", ".gif"))
        if not files:
            raise ConversionError(f"{path}: no .npy/.npz/image files in the folder")
    parts = []
    for f in files:
        try:
            parts.append(load_input(f, spec, meta))
        except EdgenetError as e:
            raise ConversionError(str(e)) from None
    try:
        x = np.concatenate(parts).astype(np.float32)
    except ValueError as e:
        raise ConversionError(f"{path}: samples of different shapes: {e}") from None
    return check_samples(x, g, path)


def check_samples(x, g, what="samples"):
    want = g.inputs[0]["shape"]
    x = np.asarray(x, np.float32)
    if x.ndim == len(want) - 1:
        x = x[None]
    dims = "(" + ", ".join(str(d) if isinstance(d, int) else "N" for d in want) + ")"
    if x.ndim != len(want) or any(isinstance(d, int) and d != s
                                  for d, s in zip(want[1:], x.shape[1:])):
        raise ConversionError(f"{what}: samples of shape {tuple(x.shape)} do not fit input "
                              f"'{g.inputs[0]['name']}' {dims}")
    if any(not isinstance(d, int) for d in want[1:]):
        raise ConversionError(f"{what}: input '{g.inputs[0]['name']}' {dims} has symbolic "
                              "dims besides the batch: freeze them (--input-shape)")
    if x.shape[0] < 2:
        raise ConversionError(f"{what}: need at least 2 samples, got {x.shape[0]}")
    if not np.all(np.isfinite(x)):
        raise ConversionError(f"{what}: samples contain NaN or infinity")
    return x


# ----------------------------------------------------------------------------- helpers


def _source_ops(model):
    """{initializer name: op type} of the weight inputs of the source ONNX graph."""
    out = {}
    for n in model.graph.node:
        if len(n.input) > 1:
            out.setdefault(n.input[1], n.op_type)
    return out


def _matmul_biases(model):
    """{MatMul weight initializer: the initializer added right after it}: a MatMul whose
    only consumer is an Add of a 1-D (or (1, O)) initializer, the pattern of a linear layer
    exported as MatMul + Add. Its bias change is written into that initializer."""
    inits = {t.name: t for t in model.graph.initializer}
    users = {}
    for n in model.graph.node:
        for i in n.input:
            users.setdefault(i, []).append(n)
    out = {}
    for n in model.graph.node:
        if n.op_type != "MatMul" or len(n.input) < 2 or n.input[1] not in inits:
            continue
        u = users.get(n.output[0], [])
        if len(u) != 1 or u[0].op_type != "Add":
            continue
        other = [i for i in u[0].input if i != n.output[0]]
        if len(other) != 1 or other[0] not in inits:
            continue
        dims = list(inits[other[0]].dims)
        wdims = list(inits[n.input[1]].dims)
        if len(wdims) == 2 and dims in ([wdims[1]], [1, wdims[1]]) \
                and sum(1 for i in users.get(other[0], [])) == 1:
            out[n.input[1]] = other[0]
    return out


def _weight_nodes(g):
    return [nd for nd in g.nodes if nd["op"] in ("Conv", "ConvTranspose", "Gemm")
            and len(nd["inputs"]) > 1 and nd["inputs"][1] in g.weights]


def _plan(g, mode, keep):
    """{weight name: t2|q3|f32} and {weight name: whether its bias can be trained}."""
    from .quantize import detect_levels

    nodes = _weight_nodes(g)
    for nd in nodes:
        if nd["op"] == "ConvTranspose":
            raise ConversionError(f"node '{nd['name']}': ConvTranspose is not supported by "
                                  "finetune")
    order = [nd["inputs"][1] for nd in nodes]
    kept = set()
    if order and "first" in keep:
        kept.add(order[0])
    if order and "last" in keep:
        kept.add(order[-1])
    src_ops = _source_ops(g.source_model) if g.source_model is not None else {}
    mm_bias = _matmul_biases(g.source_model) if g.source_model is not None else {}
    encs, train_bias = {}, {}
    for nd in nodes:
        wn = nd["inputs"][1]
        w = g.weights[wn]
        if wn in kept or detect_levels(w.values, 2) is not None:
            encs[wn] = "f32"         # kept float, or already ternary/quinary (packed as is)
        else:
            if w.source is None:
                raise ConversionError(f"node '{nd['name']}': weight '{wn}' is computed, not "
                                      "an initializer; finetune cannot export it")
            encs[wn] = mode
        # a bias change is written back into the source Conv/Gemm's bias input
        train_bias[wn] = (src_ops.get(w.source) in ("Conv", "Gemm")
                          or (src_ops.get(w.source) == "MatMul" and w.source in mm_bias))
    return encs, train_bias


def _build(g, encs, train_bias, cal=None, float_model=False):
    from .finetune_graph import QLayer, TorchGraph

    layers = {}
    for nd in _weight_nodes(g):
        wn = nd["inputs"][1]
        w = g.weights[wn]
        bname = nd["inputs"][2] if len(nd["inputs"]) > 2 else ""
        bias = g.consts[bname] if bname else None
        enc = "f32" if float_model else encs[wn]
        lv = alpha = None
        if enc != "f32":
            if cal is not None:
                _, lv, alpha = cal.weights[wn]
                if not train_bias[wn]:
                    pass                 # the bias stays as trained in float
                elif bname and bname in cal.biases:
                    bias = cal.biases[bname]
                elif nd["name"] in cal.new_biases:
                    bias = cal.new_biases[nd["name"]]
            else:
                lv = np.zeros(w.values.shape, np.int8)
                alpha = np.ones(w.values.shape[0], np.float32)
            if bias is None and train_bias[wn]:
                bias = np.zeros(w.values.shape[0], np.float32)
        layers[wn] = QLayer(w, enc, lv, alpha, bias, has_bias=train_bias[wn])
    return TorchGraph(g, layers)


def _run(model, x, name=None, batch=64):
    import torch

    name = model.logits if name is None else name
    outs = []
    with torch.no_grad():
        for s in range(0, len(x), batch):
            outs.append(model(torch.from_numpy(x[s:s + batch]), [name])[name])
    return torch.cat(outs).numpy()


def _check_translation(g, model, x):
    """The torch copy must compute what the reference backend computes (float weights)."""
    from . import ptq

    o = g.outputs[0]["name"]
    ref = ptq.forward(g, ptq.float_consts(g), x)[o]
    got = _run(model, x, o)
    err = float(np.abs(ref - got).max())
    scale = float(np.abs(ref).max()) or 1.0
    if not err <= 1e-3 * scale + 1e-5:
        raise ConversionError(f"finetune: the torch copy of the graph disagrees with edgenet's "
                              f"reference backend (max |diff| {err:.3g}, output scale "
                              f"{scale:.3g}); an op translation is wrong")


def _loss_fn(kind, axis):
    import torch
    import torch.nn.functional as F

    if kind == "kl":
        def kl(s, t):
            ls = torch.log_softmax(s, dim=axis)
            lt = torch.log_softmax(t, dim=axis)
            return (lt.exp() * (lt - ls)).sum(dim=axis).mean()
        return kl

    def mse(s, t):
        return F.mse_loss(s, t) / (t.pow(2).mean() + 1e-12)
    return mse


def _fidelity_of(yf, yq):
    from . import ptq
    return ptq.fidelity(yf, yq)


def file_forward(path, x):
    """Outputs of the .edgenet file at ``path`` on ``x`` (NumPy reference executor with the
    file's own dequantized tensors: what the runtime computes, without kernel compiles)."""
    from types import SimpleNamespace

    from edgenet.format import read_model

    from . import ptq

    mf = read_model(path)
    try:
        gr = mf.graph
        consts = {k: ptq.Const(t.dequantize()) for k, t in mf.weights().items()}
        gg = SimpleNamespace(inputs=gr["inputs"], outputs=gr["outputs"], nodes=gr["nodes"])
        return ptq.forward(gg, consts, x)[gr["outputs"][0]["name"]]
    finally:
        mf.close()


# ----------------------------------------------------------------------------- checkpoint

def _save_ckpt(path, model, opt, step, elapsed, fingerprint, extra):
    import torch

    state = {"version": CKPT_VERSION, "fingerprint": fingerprint, "step": int(step),
             "elapsed": float(elapsed), "model": model.state_dict(),
             "opt": opt.state_dict(), **extra}
    atomic_write(path, lambda tmp: torch.save(state, tmp), by_path=True)


def _load_ckpt(path, fingerprint):
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:          # torch raises many types for a bad file
        raise ConversionError(f"{path}: cannot read checkpoint: {type(e).__name__}: "
                              f"{str(e).splitlines()[0][:200] if str(e) else ''}") from None
    if not isinstance(state, dict) or state.get("version") != CKPT_VERSION:
        raise ConversionError(f"{path}: not an edgenet finetune checkpoint")
    if state.get("fingerprint") != fingerprint:
        raise ConversionError(f"{path}: checkpoint was made for another model or settings "
                              "(remove it or pass another --checkpoint)")
    return state


# ----------------------------------------------------------------------------- main entry

def finetune(src, dst, samples, *, weights="ternary", minutes=10.0, steps=None, batch=32,
             lr=1e-3, holdout=0.2, fidelity_samples=None, seed=0, checkpoint=None,
             resume=True, reference_onnx=None, input_shapes=None, keep_float=(),
             calib_samples=512, loss="auto", feature_weight=0.0, threads=2, mean=None,
             std=None, labels=None, int8=(), min_lr=0.0,
             log=None, progress=None) -> Result:
    """Fine-tune ``src`` (ONNX) into ``dst`` (.edgenet) with ternary/quinary weights on the
    unlabeled ``samples`` (float32 array (S, ...) or a path: see :func:`load_samples`).

    minutes / steps: the training budget (whichever ends first; at least one step);
    ``steps=0``: no training, the calibrated PTQ start is exported (with ``int8``: mixed
    precision by rule, calibrated).
    feature_weight: weight of the feature term of the loss (the normalized MSE of every
    quantized layer's output against the float network's on the same batch, averaged over
    the layers; 0 = output distillation only).
    int8: mixed precision without a search: layers kept at int8 (trained too, with int8
    fake quantization), converters.mixed.int8_rules names (first, last, depthwise,
    small:N); the rest stays ternary/quinary.
    min_lr: the cosine schedule decays from ``lr`` to ``min_lr`` (a fraction of ``lr``).
    holdout: fraction of the samples kept for the fidelity report (or ``fidelity_samples``).
    checkpoint: path of the resumable checkpoint (default: ``dst`` + ".ckpt"), written every
    ~30 s and at the end; with ``resume`` an existing one is continued (same model,
    weights and seed required). progress(step, total_steps_or_None, loss).
    """
    try:
        import torch
    except ImportError:
        raise ConversionError("finetune needs PyTorch: pip install torch") from None
    from . import ptq
    from .convert import convert, write_reference_onnx
    from .from_onnx import load_onnx

    if weights not in MODES:
        raise ConversionError(f"--weights must be ternary or quinary, got {weights!r}")
    if loss not in ("auto", "kl", "mse"):
        raise ConversionError(f"--loss must be auto, kl or mse, got {loss!r}")
    no_training = steps is not None and int(steps) == 0
    if not no_training and not (minutes and minutes > 0) and not (steps and steps > 0):
        raise ConversionError("finetune: give a positive --minutes or --steps budget")
    if batch < 1 or lr <= 0:
        raise ConversionError("finetune: --batch must be >= 1 and --lr > 0")
    mode = MODES[weights]
    keep = tuple(k for k in ((keep_float or "").split(",") if isinstance(keep_float, str)
                             else keep_float) if k and k != "none")
    if any(k not in ("first", "last") for k in keep):
        raise ConversionError(f"--keep-float: expected first, last or none, got {keep_float!r}")
    src, dst = os.fspath(src), os.fspath(dst)
    say = log or (lambda m: None)
    t_all = time.perf_counter()

    g = load_onnx(src, input_shapes=input_shapes)
    if len(g.inputs) != 1:
        raise ConversionError(f"{os.path.basename(src)}: finetune supports one-input models, "
                              f"this one has {len(g.inputs)}")
    from .finetune_graph import check_ops
    check_ops(g)
    encs, train_bias = _plan(g, mode, keep)
    if int8:
        from .mixed import int8_rules
        encs, share = int8_rules(g, encs, int8)
        say(f"int8 layers ({int8 if isinstance(int8, str) else ','.join(int8)}): "
            f"{sum(e == 'i8' for e in encs.values())}; {100 * share:.1f}% of the weights "
            f"stay {mode}")
    if not any(e != "f32" for e in encs.values()):
        raise ConversionError(f"{os.path.basename(src)}: no Conv/Gemm weight to quantize")
    if isinstance(samples, (str, os.PathLike)):
        x = load_samples(samples, g, mean, std)
    else:
        x = check_samples(samples, g)
    if fidelity_samples is not None:
        xtr, xho = x, check_samples(fidelity_samples, g, "fidelity samples")
    else:
        if not (0.0 < float(holdout) < 1.0):
            raise ConversionError(f"--holdout must be in (0, 1), got {holdout!r}")
        n_out = max(1, int(round(len(x) * float(holdout))))
        xtr, xho = x[:len(x) - n_out], x[len(x) - n_out:]
    if len(xtr) < 1:
        raise ConversionError("finetune: no samples left for training after the holdout")

    torch.set_num_threads(max(1, int(threads)))
    torch.manual_seed(seed)
    ckpt = checkpoint or (dst + ".ckpt")
    i8s = ",".join(sorted(k for k, e in encs.items() if e == "i8"))
    fingerprint = f"{sha256_file(src)}:{weights}:{','.join(keep)}:{seed}:{len(xtr)}:{i8s}"

    # the float network (teacher) and its outputs
    teacher = _build(g, encs, train_bias, float_model=True).eval()
    _check_translation(g, teacher, xtr[:2])
    kind = loss if loss != "auto" else ("kl" if teacher.softmax_axis is not None else "mse")
    axis = teacher.softmax_axis if teacher.softmax_axis is not None else 1
    yt = torch.from_numpy(_run(teacher, xtr))
    y_float_ho = ptq.forward(g, ptq.float_consts(g), xho)[g.outputs[0]["name"]]

    state = None
    if resume and os.path.exists(ckpt):
        state = _load_ckpt(ckpt, fingerprint)
        say(f"resuming from {ckpt} at step {state['step']}")
    ptq_sec = 0.0
    if state is None:
        n_cal = min(len(xtr), int(calib_samples))
        say(f"calibrated PTQ start on {n_cal} samples ...")
        cal = ptq.calibrate(g, xtr[:n_cal], encs)
        ptq_sec = cal.seconds
        model = _build(g, encs, train_bias, cal=cal)
    else:
        model = _build(g, encs, train_bias)
        try:
            model.load_state_dict(state["model"])
        except (RuntimeError, KeyError) as e:
            raise ConversionError(f"{ckpt}: checkpoint does not fit the model: "
                                  f"{str(e).splitlines()[0][:200]}") from None
    model.eval()
    if state is None:
        start = {k: v.detach().clone() for k, v in model.state_dict().items()}
        p_start = _fidelity_of(y_float_ho, _run(model, xho, g.outputs[0]["name"]))
    else:
        start = state["start"]
        p_start = {"samples": int(len(xho)), "top1_agreement": float(state["start_agree"]),
                   "snr_db": float(state["start_snr"])}
    extra = {"start": start, "start_agree": p_start["top1_agreement"],
             "start_snr": p_start["snr_db"]}

    params = [p for p in model.parameters() if p.requires_grad]
    gains = [m.gain for m in model.q if hasattr(m, "gain")]
    others = [p for p in params if all(p is not q for q in gains)]
    opt = torch.optim.Adam([{"params": others, "lr": lr},
                            {"params": gains, "lr": lr * 0.1}])
    base_lrs = [grp["lr"] for grp in opt.param_groups]      # before a checkpoint's decayed lr
    step, elapsed = 0, 0.0
    if state is not None:
        opt.load_state_dict(state["opt"])
        step, elapsed = int(state["step"]), float(state["elapsed"])
    budget_s = float(minutes) * 60.0 if minutes else float("inf")
    max_steps = int(steps) if steps else None
    lossf = _loss_fn(kind, axis)
    feats = [nd["outputs"][0] for nd in _weight_nodes(g)
             if encs[nd["inputs"][1]] not in ("f32", "i8")]
    model.train()
    t0 = time.perf_counter() - elapsed
    last_save = time.perf_counter()
    cur = float("nan")
    gen = torch.Generator()
    try:
        while not no_training:
            elapsed = time.perf_counter() - t0
            frac = max(elapsed / budget_s, (step / max_steps) if max_steps else 0.0)
            if step > 0 and frac >= 1.0:
                break
            for grp, b in zip(opt.param_groups, base_lrs):
                grp["lr"] = b * (min_lr + (1.0 - min_lr) * 0.5
                                 * (1.0 + math.cos(math.pi * min(frac, 1.0))))
            gen.manual_seed(seed * 1000003 + step)     # the batch depends on the step only
            idx = torch.randint(0, len(xtr), (min(batch, len(xtr)),), generator=gen)
            xb = torch.from_numpy(xtr[idx.numpy()])
            if feature_weight > 0:
                with torch.no_grad():
                    tf = teacher(xb, feats)
                sf = model(xb, feats + [model.logits])
                lo = lossf(sf[model.logits], yt[idx]) + feature_weight * sum(
                    ((sf[n] - tf[n]) ** 2).mean() / (tf[n].var() + 1e-12) for n in feats
                ) / max(len(feats), 1)
            else:
                lo = lossf(model(xb)[model.logits], yt[idx])
            opt.zero_grad(set_to_none=True)
            lo.backward()
            opt.step()
            step += 1
            cur = float(lo.detach())
            if progress is not None:
                progress(step, max_steps, cur, min(frac, 1.0))
            if time.perf_counter() - last_save > 30.0:
                _save_ckpt(ckpt, model, opt, step, time.perf_counter() - t0, fingerprint, extra)
                last_save = time.perf_counter()
    except KeyboardInterrupt:
        _save_ckpt(ckpt, model, opt, step, time.perf_counter() - t0, fingerprint, extra)
        say(f"interrupted at step {step}: checkpoint saved to {ckpt} (rerun to resume)")
        raise
    train_sec = time.perf_counter() - t0
    _save_ckpt(ckpt, model, opt, step, train_sec, fingerprint, extra)
    model.eval()
    # keep the better of the fine-tuned weights and the calibrated PTQ start, judged on the
    # held-out samples (never on a test set): a short budget can end worse than it began
    p_end = _fidelity_of(y_float_ho, _run(model, xho, g.outputs[0]["name"]))
    kept = "calibrated PTQ start" if no_training else "fine-tuned"
    if not no_training and ((p_end["top1_agreement"], p_end["snr_db"])
                            < (p_start["top1_agreement"], p_start["snr_db"])):
        model.load_state_dict(start)
        kept = "calibrated PTQ start"
        say("fine-tuning did not beat the calibrated PTQ start on the held-out samples "
            f"(agreement {100 * p_end['top1_agreement']:.2f}% vs "
            f"{100 * p_start['top1_agreement']:.2f}%): keeping the start")

    # export: the source ONNX with α·T weights and trained biases, converted losslessly
    ref_values, bias_deltas, deqs = {}, {}, {}
    for nd in _weight_nodes(g):
        wn = nd["inputs"][1]
        layer = model.q[model._qi[wn]]
        if layer.enc == "f32":
            continue
        w = g.weights[wn]
        if layer.enc == "i8":
            # the trained weight rounded to int8 as the forward pass did (per channel,
            # max|w|/127); convert's int8 rule finds the same levels and scales again
            from .quantize import int8_quantize
            lv, sc = int8_quantize(layer.float_weight())
            deq = (sc.reshape((-1,) + (1,) * (lv.ndim - 1))
                   * lv.astype(np.float32)).astype(np.float32)
            ref_values[w.source] = w.to_source(deq)
        else:
            t, a = layer.export()
            deq = (a.reshape((-1,) + (1,) * (t.ndim - 1))
                   * t.astype(np.float32)).astype(np.float32)
            ref_values[w.source] = w.to_source(deq)
            deqs[wn] = deq
        if layer.bias is not None and train_bias[wn]:
            bname = nd["inputs"][2] if len(nd["inputs"]) > 2 else ""
            old = g.consts[bname].astype(np.float64) if bname else 0.0
            d = layer.bias.detach().double().numpy() - old
            if np.any(d != 0):
                bias_deltas[w.source] = (d, np.asarray(w.mult, np.float64))
    # MatMul + Add(initializer): the bias change goes into the Add's initializer
    mm_bias = _matmul_biases(g.source_model)
    src_model = g.source_model
    if any(k in mm_bias for k in bias_deltas):
        import copy

        from onnx import numpy_helper
        src_model = copy.deepcopy(g.source_model)
        inits = {t.name: t for t in src_model.graph.initializer}
        for k in [k for k in bias_deltas if k in mm_bias]:
            d, mult = bias_deltas.pop(k)
            if np.any((mult == 0) & (d != 0)):
                raise ConversionError(f"finetune: bias of '{k}' follows a zero scale")
            t = inits[mm_bias[k]]
            old = numpy_helper.to_array(t).astype(np.float64)
            add = np.divide(d, mult, out=np.zeros_like(d), where=mult != 0)
            t.CopyFrom(numpy_helper.from_array(
                (old + add.reshape(old.shape)).astype(np.float32), t.name))
    d = os.path.dirname(os.path.abspath(dst))
    fd, tmp_onnx = tempfile.mkstemp(prefix=".edgenet-ft-", suffix=".onnx", dir=d)
    os.close(fd)
    fd, tmp_dst = tempfile.mkstemp(prefix=".edgenet-ft-", suffix=".edgenet", dir=d)
    os.close(fd)
    try:
        write_reference_onnx(src_model, ref_values, tmp_onnx, bias_deltas=bias_deltas)
        # the t2/q3 layers are detected as exact levels (lossless) under every mode;
        # int8 mode rounds the i8 layers; keep_float keeps the layers trained as float
        any_i8 = any(e == "i8" for e in encs.values())
        rep = convert(tmp_onnx, tmp_dst, weights="int8" if any_i8 else weights,
                      keep_float=keep or "none",
                      input_shapes=input_shapes, mean=mean, std=std, labels=labels)
        bad = [r.name for r in rep.layers if encs.get(r.tensor, "f32") in ("t2", "q3")
               and r.note != "lossless"]
        bad += [r.name for r in rep.layers
                if encs.get(r.tensor) == "i8" and r.encoding != "i8"]
        if bad:
            raise ConversionError(f"finetune: export not lossless for layers {bad[:5]}")
        yq = file_forward(tmp_dst, xho)
        fid = _fidelity_of(y_float_ho, yq)
        settings = {"weights": weights, "method": "label-free distillation fine-tuning "
                    "(calibrated PTQ start; forward alpha*T, straight-through gradients)",
                    "loss": kind, "feature_weight": float(feature_weight),
                    "samples": int(len(xtr)), "steps": int(step),
                    "batch": int(batch), "lr": float(lr), "seconds": round(train_sec, 1),
                    "seed": int(seed), "keep_float": list(keep),
                    "int8_layers": [k for k, e in encs.items() if e == "i8"],
                    "min_lr": float(min_lr),
                    "ptq_start_fidelity": p_start, "kept": kept}
        _rewrite_metadata(tmp_dst, dst, src, fid, settings)
        if reference_onnx is not None:
            try:
                os.replace(tmp_onnx, os.fspath(reference_onnx))
            except OSError as e:     # both outputs or neither
                try:
                    os.unlink(dst)
                except OSError:
                    pass
                raise ConversionError(f"{reference_onnx}: cannot write the reference ONNX: "
                                      f"{e}") from None
    finally:
        for p in (tmp_onnx, tmp_dst):
            try:
                os.unlink(p)
            except FileNotFoundError:
                pass
    for r in rep.layers:        # weight error against the original float weights
        if r.tensor in deqs:
            v = g.weights[r.tensor].values.astype(np.float64)
            n = float(np.linalg.norm(v))
            r.rel_error = float(np.linalg.norm(v - deqs[r.tensor])) / n if n > 0 else 0.0
            r.note = "fine-tuned, lossless"
        elif encs.get(r.tensor) == "i8":
            r.note = "fine-tuned, int8"
    rep.dst = dst
    rep.src = src
    rep.source_bytes = os.path.getsize(src)
    rep.output_bytes = os.path.getsize(dst)
    rep.fidelity = fid
    res = Result(report=rep, fidelity=fid, ptq_fidelity=p_start, settings=settings,
                 steps=step, seconds=train_sec, ptq_seconds=ptq_sec, kept=kept)
    res.settings["total_seconds"] = round(time.perf_counter() - t_all, 1)
    return res


def _rewrite_metadata(tmp, dst, src, fid, settings):
    """Write ``dst`` from the converted ``tmp`` with the source's name/hash, the fidelity
    and the fine-tuning settings in the metadata (atomic, tensors copied as stored)."""
    from edgenet.format import read_model, write_model

    mf = read_model(tmp)
    try:
        meta = dict(mf.metadata)
        meta["source"] = dict(meta.get("source") or {}, file=os.path.basename(src),
                              sha256=sha256_file(src), bytes=os.path.getsize(src))
        meta["fidelity"] = fid
        q = dict(meta.get("quantization") or {})
        q["finetuned"] = settings
        meta["quantization"] = q
        write_model(dst, graph=mf.graph, tensors=mf.weights(), metadata=meta)
    finally:
        mf.close()
