#!/usr/bin/env python
"""Accuracy study: what ternary / quinary weights cost on real data, measured with edgenet.

    python bench/accuracy_digits.py            # writes docs/ACCURACY.md, docs/accuracy.png
                                               # and the bundled example edgenet/data/
    python bench/accuracy_digits.py --quick    # 1 seed, fewer epochs (smoke run)
    python bench/accuracy_digits.py --tune     # the recipe candidates on the validation split

Data: scikit-learn's handwritten digits (1,797 real 8x8 images, values 0..16, scaled to
[0, 1]), split once with train_test_split(test_size=0.25, random_state=0, stratify=y):
1,347 training and 450 test images.

Net: the seed's MNIST net adapted to 8x8 inputs: conv 24@3x3 (pad 1) + BatchNorm + ReLU, 2x2
maxpool, conv 24@3x3 (pad 1) + BatchNorm + ReLU, 2x2 maxpool, FC 512 (+ ReLU, or + Sigmoid
with --acts sigmoid), FC 10 (the seed used 12 channels, Sigmoid after the convs and no
BatchNorm: the changes were chosen on the training images only, a validation split (--tune)
and 5-fold cross-validation for QAT (--tune-qat); edgenet folds the BatchNorm into the
convs).  The input normalization (x - 0.3) / 0.4 is the first op of the network itself (a
Sub and a Div in the ONNX graph), so every model takes the [0, 1] images as they are.

Variants (each over several seeds; mean +- std):
  * float (PyTorch), and the same ONNX converted with edgenet --weights f32;
  * post-training quantization (PTQ) of the float ONNX with edgenet's converter: the seed's
    per-layer TWN rule on every layer, then the cheap improvements one at a time: exact
    optimal threshold, per-channel scales, first/last layers kept float; plus empirical bias
    correction (biases re-fitted on the training images so each layer's mean output matches
    the float net; done in PyTorch with converters.qat, converted losslessly);
  * calibrated PTQ (--calibrate), mixed precision (--target-agreement) and label-free
    fine-tuning (edgenet finetune) on unlabeled training images;
  * quantization-aware training (QAT, converters/qat.py): the float net fine-tuned with
    alpha*T in the forward pass and straight-through gradients, exported with
    qat.export_onnx and converted losslessly by edgenet.

Every quantized (and the f32) accuracy is measured by running the converted .edgenet file
with edgenet's own runtime (edgenet.load(path)(x), Numba CPU backend).
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import shutil
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import edgenet  # noqa: E402
from converters import convert  # noqa: E402
from converters import qat  # noqa: E402

MEAN, STD = 0.3, 0.4          # input normalization, inside the network
SPLIT = dict(test_size=0.25, random_state=0)
LABELS = [str(i) for i in range(10)]

# The net (see DigitsNet) and the training recipe, chosen on a validation split carved from
# the training images only (`--tune`; the test split is never looked at for a choice):
NET = dict(conv_act="relu", bn=True, width=24)
# per FC activation: float epochs, lr, weight decay, label smoothing, shift (pixels),
# then QAT epochs, QAT lr
RECIPE = {"relu": dict(epochs=60, lr=1e-2, wd=0.05, smooth=0.1, shift=0, qat_epochs=40,
                       qat_lr=1e-2),
          "sigmoid": dict(epochs=100, lr=2e-3, wd=0.0, smooth=0.0, shift=0, qat_epochs=40,
                          qat_lr=5e-3)}
VAL_SPLIT = dict(test_size=0.2, random_state=1)     # carved from the 1,347 training images
BATCH = 32


# ----------------------------------------------------------------------------- data, net

def load_data():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = (d.data / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    y = d.target.astype(np.int64)
    xtr, xte, ytr, yte = train_test_split(x, y, stratify=y, **SPLIT)
    return xtr, ytr, xte, yte


class DigitsNet(nn.Module):
    """The seed's net for 8x8 digits.

    hidden_act: the FC 512 layer's activation ("relu" or "sigmoid"); conv_act: the convs'
    ("relu" or "sigmoid", the seed's); bn: BatchNorm after each conv (before its
    activation; edgenet folds it into the conv); width: channels of both convs."""

    def __init__(self, hidden_act: str = "relu", conv_act: str = "relu", bn: bool = True,
                 width: int = 12):
        super().__init__()
        self.conv1 = nn.Conv2d(1, width, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(width) if bn else nn.Identity()
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(width) if bn else nn.Identity()
        self.fc1 = nn.Linear(width * 2 * 2, 512)
        self.fc2 = nn.Linear(512, 10)
        self.hidden_act = hidden_act
        self.conv_act = conv_act

    def forward(self, x):
        act = torch.relu if self.conv_act == "relu" else torch.sigmoid
        x = (x - MEAN) / STD
        x = F.max_pool2d(act(self.bn1(self.conv1(x))), 2)
        x = F.max_pool2d(act(self.bn2(self.conv2(x))), 2)
        x = torch.flatten(x, 1)
        x = self.fc1(x)
        x = torch.relu(x) if self.hidden_act == "relu" else torch.sigmoid(x)
        return self.fc2(x)


def make_net(act, cfg=None):
    cfg = dict(NET, **(cfg or {}))
    return DigitsNet(act, cfg["conv_act"], cfg["bn"], cfg["width"])


def _shift(xb, g, k):
    """Each image moved by a random whole-pixel offset in [-k, k] on both axes (the
    vacated border is 0, the digits' background)."""
    if k <= 0:
        return xb
    n, _, h, w = xb.shape
    p = F.pad(xb, (k, k, k, k))
    dx = torch.randint(0, 2 * k + 1, (n,), generator=g)
    dy = torch.randint(0, 2 * k + 1, (n,), generator=g)
    return torch.stack([p[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(n)])


def train(model, xtr, ytr, epochs, lr, seed, wd=0.0, smooth=0.0, shift=0, teacher=None,
          kd=0.0):
    """AdamW (decoupled weight decay ``wd``) + cosine schedule, batch 32, cross-entropy with
    label smoothing ``smooth``, random shifts of up to ``shift`` pixels.  With a
    ``teacher`` (the float net, for QAT): loss = (1 - kd)·cross-entropy + kd·KL(teacher's
    softmax ‖ the model's) on the same batch."""
    if teacher is not None:
        teacher = teacher.eval()
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=wd)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    x, y = torch.from_numpy(xtr), torch.from_numpy(ytr)
    n = len(x)
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(n, generator=g)
        for i in range(0, n, BATCH):
            idx = perm[i:i + BATCH]
            opt.zero_grad()
            xb = _shift(x[idx], g, shift)
            out = model(xb)
            loss = F.cross_entropy(out, y[idx], label_smoothing=smooth)
            if teacher is not None and kd > 0:
                with torch.no_grad():
                    pt = F.softmax(teacher(xb), 1)
                loss = (1 - kd) * loss + kd * F.kl_div(F.log_softmax(out, 1), pt,
                                                       reduction="batchmean")
            loss.backward()
            opt.step()
        sched.step()
    return model.eval()


def torch_accuracy(model, x, y):
    with torch.no_grad():
        return 100.0 * float((model.eval()(torch.from_numpy(x)).argmax(1).numpy() == y).mean())


def edgenet_accuracy(path, x, y):
    n = torch.get_num_threads()
    out = edgenet.load(path, threads=n)(x)
    # Numba's OpenMP layer and PyTorch can share libgomp: restore PyTorch's thread count
    # (oversubscribed spinning threads made QAT ~10x slower on a loaded 2-core machine)
    torch.set_num_threads(n)
    return 100.0 * float((np.asarray(out).argmax(1) == y).mean())


def export_float(model, path):
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(copy.deepcopy(model).eval(), (torch.zeros(1, 1, 8, 8),), path,
                          dynamo=False, opset_version=17, input_names=["input"],
                          output_names=["output"],
                          dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})
    return path


# ----------------------------------------------------------------------------- bias correction

def bias_correct(float_model, qmodel, x):
    """Empirical bias correction: for each quantized hidden layer in order, shift its bias
    so that the mean (over the calibration images, and over positions for convs) of its
    output equals the float net's, with all earlier layers already quantized and corrected.
    The classifier (last layer) is left alone: matching the mean logits there collapsed the
    ReLU-FC net to near chance in a trial (57% -> 14% with only fc2 quantized)."""
    layers = [n for n, _ in qat.quantized_modules(qmodel)][:-1]
    xs = torch.from_numpy(x)
    fmods = dict(float_model.named_modules())
    qmods = dict(qmodel.named_modules())
    for name in layers:
        acts = {}

        def hook(key):
            def h(mod, inp, out):
                acts[key] = out.detach()
            return h
        h1 = fmods[name].register_forward_hook(hook("f"))
        h2 = qmods[name].register_forward_hook(hook("q"))
        with torch.no_grad():
            float_model.eval()(xs)
            qmodel.eval()(xs)
        h1.remove()
        h2.remove()
        dims = [0] + list(range(2, acts["f"].dim()))
        shift = (acts["f"] - acts["q"]).mean(dim=dims)
        with torch.no_grad():
            qmods[name].bias += shift
    return qmodel


# ----------------------------------------------------------------------------- the study

# PTQ rows: (key, label, convert kwargs)
PTQ = [
    ("twn-layer", "seed rule (TWN Δ), per layer, all layers", dict(granularity="layer",
                                                               threshold="twn", keep_float=())),
    ("opt-layer", "optimal Δ, per layer, all layers", dict(granularity="layer",
                                                           threshold="optimal", keep_float=())),
    ("twn-channel", "per channel, all layers", dict(granularity="channel", threshold="twn",
                                                    keep_float=())),
    ("twn-channel-keep", "per channel, first/last float", dict(granularity="channel",
                                                               threshold="twn",
                                                               keep_float=("first", "last"))),
]


CAL_N = 1000          # unlabeled calibration / distillation images (training images)
FT_STEPS = 1000       # label-free fine-tuning budget (steps of 32 images)
MIXED_BITS = 3.0      # mixed precision with a bit budget (bits per weight, scales included)
MIXED_TARGET = 1.0    # mixed precision: top-1 agreement with float on held-out samples


def _record(res, key, acc, rep, seconds):
    res[key] = acc
    res["bits:" + key] = rep.bits_per_weight
    res["bytes:" + key] = os.path.getsize(rep.dst)
    res["sec:" + key] = seconds


def run_seed(act, seed, data, work, quick, log, variants=None):
    xtr, ytr, xte, yte = data
    res = {}
    on = (lambda v: variants is None or v in variants)
    torch.manual_seed(seed)
    t0 = time.time()
    r = RECIPE[act]
    div = 4 if quick else 1
    fm = train(make_net(act), xtr, ytr, r["epochs"] // div, r["lr"], seed, r["wd"],
               r["smooth"], r["shift"])
    res["float-torch"] = torch_accuracy(fm, xte, yte)
    fonnx = export_float(fm, os.path.join(work, f"float_{act}_{seed}.onnx"))
    t1 = time.time()
    rep = convert(fonnx, os.path.join(work, "f32.edgenet"), weights="f32", keep_float=())
    _record(res, "float-edgenet", edgenet_accuracy(rep.dst, xte, yte), rep, time.time() - t1)
    res["bits:float"] = rep.bits_per_weight
    res["bytes:float-torch"] = os.path.getsize(fonnx)
    log(f"  [{act} seed {seed}] float torch {res['float-torch']:.2f}  edgenet f32 "
        f"{res['float-edgenet']:.2f}  ({time.time() - t0:.0f}s)")
    xcal = xtr[:CAL_N]             # unlabeled: the labels are never used by these rows

    for w in ("ternary", "quinary"):
        if on("ptq"):
            for key, _, kw in PTQ:
                if w == "quinary" and kw["threshold"] == "optimal":
                    continue
                t1 = time.time()
                rep = convert(fonnx, os.path.join(work, "ptq.edgenet"), weights=w, **kw)
                _record(res, f"ptq-{key}:{w}", edgenet_accuracy(rep.dst, xte, yte), rep,
                        time.time() - t1)
            # bias correction on top of per-channel, all layers (quantized in torch, α·T)
            t1 = time.time()
            qm = qat.prepare(copy.deepcopy(fm), w, "channel")
            bias_correct(fm, qm, xtr)
            p = qat.export_onnx(qm, torch.zeros(1, 1, 8, 8), os.path.join(work, "bc.onnx"))
            rep = convert(p, os.path.join(work, "bc.edgenet"), weights=w, keep_float=())
            assert all(r_.note == "lossless" for r_ in rep.layers), rep.format_table()
            _record(res, f"ptq-bc-channel:{w}", edgenet_accuracy(rep.dst, xte, yte), rep,
                    time.time() - t1)
            log(f"  [{act} seed {seed}] PTQ {w}: " + ", ".join(
                f"{k.split(':')[0][4:]} {v:.1f}" for k, v in res.items()
                if k.startswith("ptq-") and k.endswith(":" + w)))
        if on("cal"):
            t1 = time.time()
            rep = convert(fonnx, os.path.join(work, "cal.edgenet"), weights=w, keep_float=(),
                          calibration=xcal, calibrate_weights=True)
            _record(res, f"cal:{w}", edgenet_accuracy(rep.dst, xte, yte), rep,
                    time.time() - t1)
            log(f"  [{act} seed {seed}] calibrated PTQ {w}: {res[f'cal:{w}']:.2f} "
                f"({res[f'sec:cal:{w}']:.0f}s)")
        if on("mixed") and w == "ternary":
            t1 = time.time()
            rep = convert(fonnx, os.path.join(work, "mixed.edgenet"), weights=w,
                          keep_float=(), calibration=xcal, target_agreement=MIXED_TARGET)
            _record(res, "mixed:mixed", edgenet_accuracy(rep.dst, xte, yte), rep,
                    time.time() - t1)
            res["encs:mixed:mixed"] = sorted({r_.encoding for r_ in rep.layers})
            log(f"  [{act} seed {seed}] mixed: {res['mixed:mixed']:.2f} "
                f"({rep.bits_per_weight:.2f} bits/weight, {res['sec:mixed:mixed']:.0f}s)")
        if on("mixed2") and w == "ternary":
            t1 = time.time()
            rep = convert(fonnx, os.path.join(work, "mixed2.edgenet"), weights=w,
                          keep_float=(), calibration=xcal, max_bits=MIXED_BITS)
            _record(res, "mixed-bits:mixed", edgenet_accuracy(rep.dst, xte, yte), rep,
                    time.time() - t1)
            res["encs:mixed-bits:mixed"] = [r_.encoding for r_ in rep.layers]
            log(f"  [{act} seed {seed}] mixed --max-bits {MIXED_BITS}: "
                f"{res['mixed-bits:mixed']:.2f} ({rep.bits_per_weight:.2f} bits/weight, "
                f"{res['encs:mixed-bits:mixed']}, {res['sec:mixed-bits:mixed']:.0f}s)")
        if on("ft"):
            from converters.finetune import finetune
            t1 = time.time()
            ft = finetune(fonnx, os.path.join(work, "ft.edgenet"), xcal, weights=w,
                          steps=FT_STEPS // div, minutes=30.0, seed=seed, threads=1,
                          keep_float=(), checkpoint=os.path.join(work, f"ft_{w}.ckpt"),
                          resume=False)
            torch.set_num_threads(1)
            _record(res, f"ft:{w}", edgenet_accuracy(ft.report.dst, xte, yte), ft.report,
                    time.time() - t1)
            res[f"kept:ft:{w}"] = ft.kept
            log(f"  [{act} seed {seed}] fine-tuned {w}: {res[f'ft:{w}']:.2f} ({ft.kept}, "
                f"{ft.steps} steps, {res[f'sec:ft:{w}']:.0f}s)")
        if on("qat"):
            for gran in ("layer", "channel"):
                t1 = time.time()
                qm = qat.prepare(copy.deepcopy(fm), w, gran)
                torch.manual_seed(seed + 1000)
                train(qm, xtr, ytr, r["qat_epochs"] // div, r["qat_lr"], seed + 1000,
                      r["wd"], r["smooth"], r["shift"])
                tacc = torch_accuracy(qm, xte, yte)
                p = qat.export_onnx(qm, torch.zeros(1, 1, 8, 8),
                                    os.path.join(work, f"qat_{act}_{w}_{gran}_{seed}.onnx"))
                dst = os.path.join(work, f"qat_{act}_{w}_{gran}_{seed}.edgenet")
                rep = convert(p, dst, weights=w, keep_float=(), labels=LABELS)
                assert all(r_.note == "lossless" for r_ in rep.layers), rep.format_table()
                _record(res, f"qat-{gran}:{w}", edgenet_accuracy(dst, xte, yte), rep,
                        time.time() - t1)
                res[f"qat-torch-{gran}:{w}"] = tacc
                log(f"  [{act} seed {seed}] QAT {w}/{gran}: edgenet "
                    f"{res[f'qat-{gran}:{w}']:.2f} (torch {tacc:.2f}) ({time.time() - t1:.0f}s)")
    return res


ROWS = [
    # (result key, label, weights column)
    ("float-torch", "float (PyTorch)", "float"),
    ("float-edgenet", "float, edgenet f32", "float"),
]
for _w in ("ternary", "quinary"):
    ROWS += [(f"ptq-{k}:{_w}", f"PTQ {_w}: {lab}", _w) for k, lab, kw in PTQ
             if not (_w == "quinary" and kw["threshold"] == "optimal")]
    ROWS += [(f"ptq-bc-channel:{_w}",
              f"PTQ {_w}: per channel + bias correction (hidden layers), all layers", _w),
             (f"cal:{_w}", f"**calibrated PTQ {_w}** (`--calibrate`, {CAL_N} unlabeled "
              "images), all layers", _w)]
    if _w == "ternary":
        ROWS += [("mixed:mixed", f"**mixed precision** (`--target-agreement {MIXED_TARGET}`, "
                  "t2 start)", "mixed"),
                 ("mixed-bits:mixed", f"**mixed precision** (`--max-bits {MIXED_BITS:g}`)",
                  "mixed")]
    ROWS += [(f"ft:{_w}", f"**label-free fine-tuned {_w}** (`edgenet finetune`, "
              f"{FT_STEPS} steps)", _w),
             (f"qat-layer:{_w}", f"**QAT {_w}, per layer, all layers**", _w),
             (f"qat-channel:{_w}", f"**QAT {_w}, per channel, all layers**", _w)]


# --tune: candidates scored on the validation split (FC ReLU, float); each changes one thing
# or adds one thing to the row above it
TUNE = [
    ("the previous recipe (conv Sigmoid, no BN)", dict(conv_act="sigmoid", bn=False), {}),
    ("conv ReLU", dict(conv_act="relu", bn=False), {}),
    ("conv ReLU + BN", dict(conv_act="relu", bn=True), {}),
    ("+ label smoothing 0.1", dict(conv_act="relu", bn=True), dict(smooth=0.1)),
    ("+ weight decay 0.05", dict(conv_act="relu", bn=True), dict(smooth=0.1, wd=0.05)),
    ("+ shifts of ±1 pixel", dict(conv_act="relu", bn=True), dict(smooth=0.1, wd=0.05,
                                                                  shift=1)),
    ("+ shifts, 100 epochs", dict(conv_act="relu", bn=True), dict(smooth=0.1, wd=0.05,
                                                                  shift=1, epochs=100)),
    ("+ shifts, width 24", dict(conv_act="relu", bn=True, width=24),
     dict(smooth=0.1, wd=0.05, shift=1)),
    ("conv ReLU + BN, label smoothing, weight decay, width 24", dict(conv_act="relu", bn=True,
                                                                      width=24),
     dict(smooth=0.1, wd=0.05)),
]
TUNE_SEEDS = (0, 1, 2, 3)


def tune(data, log):
    """Score the TUNE candidates (float, FC ReLU) on a validation split carved from the
    training images: train on the rest of the training images, never touch the test split."""
    from sklearn.model_selection import train_test_split

    xtr, ytr, _, _ = data
    xa, xv, ya, yv = train_test_split(xtr, ytr, stratify=ytr, **VAL_SPLIT)
    base = dict(epochs=60, lr=1e-2, wd=0.0, smooth=0.0, shift=0)
    rows = []
    for label, net, rec in TUNE:
        r = dict(base, **rec)
        accs = []
        t0 = time.time()
        for seed in TUNE_SEEDS:
            torch.manual_seed(seed)
            m = train(make_net("relu", dict(dict(conv_act="relu", bn=True, width=12), **net)),
                      xa, ya, r["epochs"], r["lr"], seed, r["wd"], r["smooth"], r["shift"])
            accs.append(torch_accuracy(m, xv, yv))
        m_, s_ = _ms(accs)
        rows.append((label, net, r, accs))
        log(f"| {label} | {m_:.2f} ± {s_:.2f} | " + ", ".join(f"{a:.2f}" for a in accs) +
            f" |   ({time.time() - t0:.0f}s)")
    return {"val": len(yv), "train": len(ya), "seeds": list(TUNE_SEEDS),
            "rows": [[lab, net, r, accs] for lab, net, r, accs in rows]}


# (label, QAT epochs, lr, weight decay (None: the float recipe's), granularity, threshold,
#  distillation weight, float net overrides)
W12 = {"width": 12}
QAT_TUNE = [
    ("width 12: 40 epochs, lr 0.01", 40, 1e-2, None, "layer", "twn", 0.0, W12),
    ("width 12: 40 epochs, lr 0.01", 40, 1e-2, None, "channel", "twn", 0.0, W12),
    ("width 12: 80 epochs, lr 0.01", 80, 1e-2, None, "layer", "twn", 0.0, W12),
    ("width 12: 40 epochs, lr 3e-3", 40, 3e-3, None, "layer", "twn", 0.0, W12),
    ("width 12: 40 epochs, lr 0.01, no weight decay", 40, 1e-2, 0.0, "layer", "twn", 0.0, W12),
    ("width 12: 40 epochs, lr 0.01, optimal Δ", 40, 1e-2, None, "layer", "optimal", 0.0, W12),
]
QAT_TUNE2 = [
    ("width 12: 40 epochs, lr 0.01, distillation 0.5", 40, 1e-2, None, "layer", "twn", 0.5, W12),
    ("width 12: 40 epochs, lr 0.01, distillation 1.0", 40, 1e-2, None, "layer", "twn", 1.0, W12),
    ("width 24: 40 epochs, lr 0.01", 40, 1e-2, None, "layer", "twn", 0.0, {"width": 24}),
    ("width 24: 40 epochs, lr 0.01", 40, 1e-2, None, "channel", "twn", 0.0, {"width": 24}),
    ("width 24: 40 epochs, lr 0.01, distillation 0.5", 40, 1e-2, None, "layer", "twn", 0.5,
     {"width": 24}),
]
# the per-layer ternary row missed the goal on test (one seed of three): per-layer settings
# compared against the width-24 row of QAT_TUNE2 (validation only, `--tune-qat ternary:3`)
W24 = {"width": 24}
QAT_TUNE3 = [
    ("width 24: 80 epochs, lr 0.01", 80, 1e-2, None, "layer", "twn", 0.0, W24),
    ("width 24: 40 epochs, lr 0.01, optimal Δ", 40, 1e-2, None, "layer", "optimal", 0.0, W24),
    ("width 24: 40 epochs, lr 3e-3", 40, 3e-3, None, "layer", "twn", 0.0, W24),
]
# a 9th field: extras — bn_reest: BatchNorm statistics recomputed after QAT with the final
# weights (qat.reestimate_bn over the training images); smooth: QAT label smoothing
QAT_TUNE4 = [
    ("width 24: 40 epochs, lr 0.01, BN statistics re-estimated", 40, 1e-2, None, "layer",
     "twn", 0.0, W24, {"bn_reest": True}),
    ("width 24: 40 epochs, lr 0.01, no label smoothing in QAT", 40, 1e-2, None, "layer",
     "twn", 0.0, W24, {"smooth": 0.0}),
    ("width 24: 80 epochs, lr 0.01, BN statistics re-estimated", 80, 1e-2, None, "layer",
     "twn", 0.0, W24, {"bn_reest": True}),
]
CV_FOLDS = 5


def bn_reestimate(model, x, batch=256):
    """qat.reestimate_bn over the images x (batches of 256, in order)."""
    xt = torch.from_numpy(x)
    return qat.reestimate_bn(model, (xt[i:i + batch] for i in range(0, len(xt), batch)))


def tune_qat(data, log, weights="ternary", act="relu", cands=None):
    """QAT settings by 5-fold cross-validation on the training images (the test split is
    never used): for each fold, the float net (the chosen recipe) is trained on the other
    folds, then each candidate QAT; score = validation accuracy minus the float net's
    (of the same width) on the same fold, pooled over the folds (1,347 validation
    predictions in all)."""
    from sklearn.model_selection import StratifiedKFold

    cands = QAT_TUNE if cands is None else cands
    xtr, ytr, _, _ = data
    r = RECIPE[act]
    folds = StratifiedKFold(CV_FOLDS, shuffle=True, random_state=1).split(xtr, ytr)
    diffs = {i: [] for i in range(len(cands))}
    fl = {}
    for k, (ia, iv) in enumerate(folds):
        xa, ya, xv, yv = xtr[ia], ytr[ia], xtr[iv], ytr[iv]
        floats = {}
        for i, (lab, ep, lr, wd, gran, thr, kd, net, *ex) in enumerate(cands):
            ex = ex[0] if ex else {}
            if weights == "quinary" and thr == "optimal":
                continue
            key = json.dumps(net, sort_keys=True)
            if key not in floats:
                torch.manual_seed(k)
                fm = train(make_net(act, net), xa, ya, r["epochs"], r["lr"], k, r["wd"],
                           r["smooth"], r["shift"])
                floats[key] = (fm, torch_accuracy(fm, xv, yv))
                fl.setdefault(key, []).append(floats[key][1])
            fm, fa = floats[key]
            qm = qat.prepare(copy.deepcopy(fm), weights, gran, thr)
            torch.manual_seed(k + 1000)
            train(qm, xa, ya, ep, lr, k + 1000, r["wd"] if wd is None else wd,
                  ex.get("smooth", r["smooth"]), r["shift"], teacher=fm if kd else None, kd=kd)
            if ex.get("bn_reest"):
                bn_reestimate(qm, xa)
            diffs[i].append((torch_accuracy(qm, xv, yv) - fa) * len(yv) / 100.0)
        log(f"  fold {k}: float {[round(v[1], 2) for v in floats.values()]}; " + ", ".join(
            f"{i}:{diffs[i][-1]:+.0f}" for i in diffs if diffs[i]))
    n = len(ytr)
    rows = []
    for i, (lab, ep, lr, wd, gran, thr, kd, net, *_) in enumerate(cands):
        if diffs[i]:
            rows.append([f"{weights}, {gran}: {lab}", 100.0 * sum(diffs[i]) / n, diffs[i]])
            log(f"| {rows[-1][0]} | {rows[-1][1]:+.2f} | "
                + ", ".join(f"{d:+.0f}" for d in diffs[i]) + " |")
    return {"weights": weights, "folds": CV_FOLDS, "n": n, "rows": rows,
            "float": {k: float(np.mean(v)) for k, v in fl.items()}}


def _ms(vals):
    v = np.asarray(vals, dtype=np.float64)
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


_ACT = {"relu": "ReLU", "sigmoid": "Sigmoid"}


def _recipe_text(a):
    r = RECIPE[a]
    return (f"FC {a}: float {r['epochs']} epochs at lr {r['lr']:g}, weight decay {r['wd']:g}, "
            f"label smoothing {r['smooth']:g}, "
            + (f"random shifts of up to {r['shift']} pixel(s); " if r["shift"] else
               "no shifts; ")
            + f"QAT {r['qat_epochs']} epochs at lr {r['qat_lr']:g}, same regularization")


def write_markdown(path, results, seeds, acts, elapsed, cmd, plot_ok, n_test, parts=1,
                   tuned=None, qtuned=None):
    _m = make_net("relu")
    _ws = [m.weight.numel() for m in _m.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    nw, nfl = sum(_ws), _ws[0] + _ws[-1]
    L = []
    L.append("# Accuracy of ternary and quinary weights (handwritten digits)\n")
    L.append("Produced by one command (do not edit by hand):\n")
    L.append(f"    {cmd}\n")
    L.append(f"Data: scikit-learn's `load_digits` (1,797 real 8x8 images), split once with "
             f"`train_test_split(test_size=0.25, random_state=0, stratify=y)`: 1,347 training "
             f"and {n_test} test images (**one test image = {100.0 / n_test:.2f} points**, so "
             "0.3 points is 1.35 images: the test split is small, read the differences with "
             "the std over seeds). Net: the seed's MNIST net adapted to 8x8: conv "
             f"{NET['width']}@3x3 (pad 1) + {'BatchNorm + ' if NET['bn'] else ''}"
             f"{_ACT[NET['conv_act']]}, 2x2 maxpool, conv {NET['width']}@3x3 (pad 1) + "
             f"{'BatchNorm + ' if NET['bn'] else ''}{_ACT[NET['conv_act']]}, 2x2 "
             f"maxpool, FC 512 + ReLU, FC 10; {nw:,} Conv/Gemm weights. edgenet folds the "
             "BatchNorm "
             "into the conv (the file holds no BatchNorm).\n")
    rec = "; ".join(_recipe_text(a) for a in acts)
    L.append(f"Training: AdamW, batch {BATCH}, cosine schedule ({rec}). QAT fine-tunes the "
             "trained float net on the labelled training images "
             "(`converters/qat.py`: forward with α·T, straight-through gradients "
             "to the float weights, the exact rules of shared/quantization.md; BatchNorm "
             "after each quantized conv, as in the seed's training algorithm). Seeds: "
             f"{', '.join(map(str, seeds))} (the float net, and every row derived from it, "
             "per seed); each cell is mean ± std (sample std) over the seeds.\n")
    L.append("**Every accuracy except the first row is measured by running the converted "
             "`.edgenet` file with edgenet's own runtime** (`edgenet.load(path)(x)`, Numba "
             "CPU backend). The QAT exports are packed losslessly (the converter reports "
             "`lossless` for every layer; the script asserts it). *Bits/weight* is what the "
             "file stores per Conv/Gemm weight, per-channel scales included (the converter's "
             "`bits_per_weight`); *file* is the .edgenet file's size (the float row: the "
             "ONNX file); *time* is the wall time from the float model to the scored file "
             "(conversion, calibration, fine-tuning or QAT training; shared, loaded 2-core "
             "box), mean over seeds. *Δ* is the mean over seeds of (variant − the same "
             "seed's float accuracy) ± its std.\n")
    for a in acts:
        rs = results[a]
        if len(acts) > 1:
            L.append(f"### FC {a}\n")
        L.append("| variant | bits/weight | file (B) | time (s) | test accuracy % | Δ vs float "
                 "| within 0.3 |")
        L.append("|---|---:|---:|---:|---:|---:|:---:|")
        for key, label, _ in ROWS:
            if not all(key in r for r in rs):
                continue
            m, s_ = _ms([r[key] for r in rs])
            bk = "bits:" + key if ("bits:" + key) in rs[0] else "bits:float"
            bits = rs[0][bk]
            size = f"{_ms([r['bytes:' + key] for r in rs])[0]:,.0f}" \
                if "bytes:" + key in rs[0] else ""
            sec = f"{_ms([r['sec:' + key] for r in rs])[0]:.1f}" \
                if "sec:" + key in rs[0] else ""
            if key == "float-torch":
                d = ok = ""
            else:
                dm, ds = _ms([r[key] - r["float-torch"] for r in rs])
                d = f"{dm:+.2f} ± {ds:.2f}"
                ok = "–" if key == "float-edgenet" else (
                    ("yes (at the edge)" if dm < -0.25 else "yes") if dm >= -0.3 else "**no**")
            L.append(f"| {label} | {bits:.2f} | {size} | {sec} | {m:.2f} ± {s_:.2f} | {d} | "
                     f"{ok} |")
        L.append("")
    # goal check
    L.append("## Goal check\n")
    for a in acts:
        rs = results[a]
        fm, fs = _ms([r["float-torch"] for r in rs])
        same = all(abs(r["float-edgenet"] - r["float-torch"]) < 1e-9 for r in rs)
        L.append(f"- FC {a}: float baseline {fm:.2f} ± {fs:.2f} "
                 f"({'≥' if fm >= 98.0 else 'BELOW'} 98%); edgenet f32 accuracy "
                 f"{'equals' if same else 'DIFFERS FROM'} PyTorch float accuracy on every seed.")
        ins, outs = [], []
        for key, label, _ in ROWS:
            if key.startswith("float") or not all(key in r for r in rs):
                continue
            dm, _ = _ms([r[key] - r["float-torch"] for r in rs])
            (ins if dm >= -0.3 else outs).append(f"{label.replace('**', '')} ({dm:+.2f})")
        L.append(f"- FC {a}: within 0.3 points of float (mean over seeds): "
                 + ("; ".join(ins) or "none") + ".")
        L.append(f"- FC {a}: NOT within 0.3 points: " + ("; ".join(outs) or "none") + ".")
        meth = [o for o in outs if not o.startswith("PTQ ")]
        L.append(f"- FC {a}: the goal (every quantized variant within 0.3 points) is about "
                 "edgenet's quantization methods: calibrated PTQ, mixed precision, label-free "
                 "fine-tuning and QAT. The naive PTQ rows (the seed's rule, optimal Δ, per "
                 "channel, first/last float, bias correction) are baselines that show the "
                 "problem those methods solve. Among edgenet's methods, NOT within 0.3: "
                 + ("; ".join(meth) or "none") + ".")
        for key, label, _ in ROWS:      # the misses among the methods, seed by seed
            if key.startswith(("float", "ptq-")) or not all(key in r for r in rs):
                continue
            dv = [r[key] - r["float-torch"] for r in rs]
            if np.mean(dv) < -0.3:
                L.append(f"- FC {a}: {label.replace('**', '')}, change from float per seed "
                         f"(test images of {n_test}): "
                         + ", ".join(f"{round(d * n_test / 100.0):+d}" for d in dv)
                         + f"; the standard error of the mean is "
                         f"{np.std(dv, ddof=1) / np.sqrt(len(dv)):.2f} points.")
        for w in ("ternary", "quinary"):
            k = f"kept:ft:{w}"
            if all(k in r for r in rs):
                n = sum(r[k] != "fine-tuned" for r in rs)
                L.append(f"- FC {a}: `edgenet finetune` {w} kept its calibrated PTQ start "
                         f"(fine-tuning did not beat it on its held-out samples) on {n} of "
                         f"{len(rs)} seeds (its start is calibrated on 512 of the images, "
                         f"`finetune`'s default, not {CAL_N}: hence not the calibrated PTQ "
                         "row's accuracy).")
        if all("mixed:mixed" in r for r in rs):
            L.append(f"- FC {a}: mixed precision chose the encodings "
                     + "; ".join("/".join(r["encs:mixed:mixed"]) for r in rs)
                     + " (per seed): every layer ternary where that already met the target "
                     "on its held-out samples.")
        if all("mixed-bits:mixed" in r for r in rs):
            L.append(f"- FC {a}: `--max-bits {MIXED_BITS:g}` chose, per seed, for conv1, conv2, "
                     "fc1, fc2: " + "; ".join(", ".join(r["encs:mixed-bits:mixed"])
                                               for r in rs)
                     + f" (fc1, ternary, holds {_ws[2]:,} of the {nw:,} weights, "
                     f"{100.0 * _ws[2] / nw:.0f}%).")
    L.append("")
    if plot_ok:
        L.append("![accuracy vs bits per weight](accuracy.png)\n")
    if tuned:
        L.append("## How the recipe was chosen (validation split only)\n")
        L.append(f"`python bench/accuracy_digits.py --tune`: the 1,347 training images split "
                 f"again with `train_test_split(test_size=0.2, random_state=1, stratify=y)`: "
                 f"{tuned['train']} to train, {tuned['val']} to validate (one image = "
                 f"{100.0 / tuned['val']:.2f} points); float net, FC ReLU, 60 epochs at lr "
                 f"0.01 unless said; seeds {', '.join(map(str, tuned['seeds']))}. The test "
                 "split was not used for any choice.\n")
        L.append("| candidate | validation accuracy % | per seed |")
        L.append("|---|---:|---|")
        for lab, net, r, accs in tuned["rows"]:
            m_, s_ = _ms(accs)
            L.append(f"| {lab} | {m_:.2f} ± {s_:.2f} | " + ", ".join(f"{v:.2f}" for v in accs)
                     + " |")
        L.append("")
        qt = [q for q in (qtuned or []) if q.get("rows")]
        if qt:
            L.append(f"QAT settings, `python bench/accuracy_digits.py --tune-qat ternary|quinary"
                     f"[:2|:3|:4]`: {qt[0]['folds']}-fold cross-validation on the training "
                     "images "
                     f"(`StratifiedKFold(5, shuffle=True, random_state=1)`; per fold the float "
                     f"net of the chosen recipe is trained on the other folds, then each QAT "
                     f"candidate); the score is the change in validation accuracy from the "
                     f"fold's float net, pooled over all {qt[0]['n']} training images as "
                     f"validation predictions (one image = {100.0 / qt[0]['n']:.3f} points); "
                     "per fold, the change in images (of about 270).\n")
            L.append("| QAT candidate | change from float, points | per fold (images) |")
            L.append("|---|---:|---|")
            for q in qt:
                for lab, score, diffs in q["rows"]:
                    L.append(f"| {lab} | {score:+.2f} | "
                             + ", ".join(f"{d:+.0f}" for d in diffs) + " |")
            L.append("")
        L.append(TUNE_NOTE + "\n")
    L.append("## Reading the table\n")
    L.append("- *PTQ* rows quantize the trained float net without any retraining. The first "
             "is the seed's rule as is (TWN Δ = 0.7·mean(abs W) for ternary, Δ1/Δ2 = 0.5/1.4 "
             "for quinary; one scale per layer; every layer quantized); each following row "
             "changes one thing: the exact optimal ternary threshold, one scale per output "
             "channel, the first and last layers kept in float (they hold "
             f"{nfl:,} of the {nw:,} weights, hence the higher bits/weight), empirical bias "
             "correction (each "
             "quantized layer's bias shifted so that its mean output over the training images "
             "matches the float net's; the classifier's bias is left alone; computed in "
             "PyTorch with `converters/qat.py`, converted losslessly).")
    L.append(f"- *Calibrated PTQ* is `edgenet convert --weights ternary|quinary --calibrate "
             f"S.npy` (converters/ptq.py: layer by layer on the outputs of the already "
             f"quantized prefix, error-compensating rounding, α refit, bias correction) on the "
             f"first {CAL_N} training images used as unlabeled samples. *Mixed precision* is "
             f"`--target-agreement {MIXED_TARGET}` on the same samples (per layer t2/q3/i8 by "
             f"measured sensitivity). *Label-free fine-tuned* is `edgenet finetune` "
             f"(converters/finetune.py) on the same unlabeled images: calibrated PTQ start, "
             f"then {FT_STEPS} steps of distillation against the float net's outputs, "
             "keeping the start if it does not beat it on held-out samples. None of these "
             "uses a label.")
    L.append("- *QAT* rows fine-tune the float net with quantization in the loop and the "
             "labels, every layer (first and last included) ternary or quinary.\n")
    L.append("## Reproduce\n")
    L.append(f"    {cmd}\n")
    L.append("These tables were produced with (the bundled example left alone):\n")
    L.append("    python bench/accuracy_digits.py --tune --json tune.json\n"
             "    python bench/accuracy_digits.py --tune-qat ternary --json tq_t.json   # and "
             "quinary, ternary:2, quinary:2, ternary:3, ternary:4\n"
             "    python bench/accuracy_digits.py --no-bundle --only-seeds 0,1 --json a.json &\n"
             "    python bench/accuracy_digits.py --no-bundle --only-seeds 2 --json b.json\n"
             "    python bench/accuracy_digits.py --no-bundle --variants mixed2 --only-seeds 0,1 "
             "--json c.json   # the --max-bits row, added later (same float nets: checked)\n"
             "    python bench/accuracy_digits.py --no-bundle --variants mixed2 --only-seeds 2 "
             "--json d.json\n"
             "    python bench/accuracy_digits.py --no-bundle --only-seeds 3,4 --json e.json"
             "   # seeds 3 and 4, every row, added later (same code)\n"
             "    python bench/accuracy_digits.py --report-only a.json,b.json,c.json,d.json,"
             "e.json \\\n"
             "        --tune-json tune.json,tq_t.json,tq_q.json,tq2_t.json,tq2_q.json,"
             "tq3_t.json,tq4_t.json\n")
    how = ("the run that wrote this file" if parts == 1 else
           f"the longest of the {parts} runs merged with `--report-only` that produced "
           "these numbers (seeds 0–2: run in parallel on a shared, loaded machine; seeds 3 "
           "and 4: later, one process on a quieter one, hence their shorter times)")
    L.append(f"Wall time of {how}: {elapsed / 60:.1f} min on "
             f"{os.cpu_count()} CPU core(s) ({platform.processor() or platform.machine()}), "
             f"torch {torch.__version__}, PyTorch threads {torch.get_num_threads()}. The same "
             "command also rewrites the bundled example in `edgenet/data/` "
             "(`--no-bundle` to skip; the bundled example and the test fixtures were not "
             "rewritten by this run and still come from the earlier recipe).\n")
    keep = ""      # the real-model study below the marker is written by hand from
    marker = "<!-- real models -->"    # bench/accuracy_real.py's output: kept as it is
    if os.path.exists(path):
        with open(path) as f:
            old = f.read()
        if marker in old:
            keep = "\n" + old[old.index(marker):]
    with open(path, "w") as f:
        f.write("\n".join(L) + keep)


TUNE_NOTE = (
    "Chosen float recipe: conv ReLU + BatchNorm, label smoothing 0.1, weight decay 0.05, no "
    "shifts, 60 epochs at lr 0.01 (the ±1-pixel shifts did not help on validation). The two "
    "changes that matter are the seed's Sigmoid after the convs replaced by ReLU (+1.5 "
    "points on validation) and BatchNorm after each conv (+0.9); the regularizers add about "
    "one validation image. Width: the float rows at width 12 and 24 differ by less than one "
    "validation image, so the study was first run at the seed's width 12 (test: float "
    "99.41 ± 0.46; calibrated PTQ, fine-tuned and QAT-per-channel quinary within 0.3; every "
    "ternary row 0.44 to 0.81 points below float). Because the ternary rows missed the goal "
    "there, the QAT settings were then compared by 5-fold cross-validation on the training "
    "images (the table above): at width 12 no setting came within 0.5 points of float (the "
    "first QAT setting, 40 epochs at lr 0.01, was the best of them); at width 24, ternary "
    "and quinary QAT lost nothing against their float net (+0.37 and +0.52 pooled, per "
    "layer) and reached the higher absolute cross-validated accuracy (ternary per layer "
    "99.11 vs 98.67; quinary 99.26 vs 98.67). Caveat: the width-24 float net itself scored "
    "lower in that cross-validation (98.74 vs 99.26 over the folds; one fold at 97.03), so "
    "part of its 'no loss' is a weaker float on those folds. Width 24 was chosen on that "
    "basis (the best quantized accuracy on validation). The test split was looked at only "
    "to see that the width-12 run missed the goal, never to compare candidates. "
    "Distillation from the float net during QAT changed the pooled score by at most 3 "
    "images of 1,347 and was not adopted. "
    "The per-layer ternary QAT row then missed the goal on test with 3 seeds (one seed lost "
    "5 test images), so per-layer settings were compared again, on the same cross-validation "
    "only (`:3`, `:4` in the table: 80 epochs, the exact optimal Δ, lr 3e-3, BatchNorm "
    "statistics re-estimated with the final quantized weights (`qat.reestimate_bn`), no "
    "label smoothing, 80 epochs with re-estimated BatchNorm). The rule fixed before these "
    "runs: adopt a setting only if it beats the current one (+0.37 pooled) by more than 3 "
    "images. None did (+0.07 to +0.45, each within one image of it, per fold +0 on the two "
    "folds where the float net is strongest), so the QAT recipe is unchanged. The test rows "
    "were extended from 3 seeds to 5 (seeds 3 and 4 added, every row, the recipe unchanged; "
    "the number of seeds was fixed in advance, not after looking at the new scores)."
)


_MARK = {"float-torch": "o", "float-edgenet": "x", "ptq-twn-layer": "v", "ptq-opt-layer": "D",
         "ptq-twn-channel": "^", "ptq-twn-channel-keep": "<", "ptq-bc-channel": "P",
         "qat-layer": "s", "qat-channel": "*",
         "cal": "h", "mixed": "p", "mixed-bits": "8", "ft": "X"}
_SHORT = {"float-torch": "float (PyTorch)", "float-edgenet": "float, edgenet f32",
          "ptq-twn-layer": "PTQ seed rule, per layer", "ptq-opt-layer": "PTQ optimal Δ",
          "ptq-twn-channel": "PTQ per channel", "ptq-twn-channel-keep":
          "PTQ per channel, first/last float", "ptq-bc-channel":
          "PTQ per channel + bias corr.", "qat-layer": "QAT per layer",
          "qat-channel": "QAT per channel",
          "cal": "calibrated PTQ", "mixed": "mixed precision", "mixed-bits": "mixed, bit budget",
          "ft": "label-free fine-tuned"}


def plot(path, results, acts):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.lines import Line2D
    except ImportError:
        print("matplotlib missing: no plot (pip install matplotlib)")
        return False
    colors = {"float": "k", "ternary": "tab:red", "quinary": "tab:blue", "mixed": "tab:green"}
    fig, axes = plt.subplots(1, len(acts), figsize=(6.5 * len(acts), 5), squeeze=False)
    for ax, a in zip(axes[0], acts):
        rs = results[a]
        for key, label, w in ROWS:
            if not all(key in r for r in rs):
                continue
            bk = "bits:" + key if ("bits:" + key) in rs[0] else "bits:float"
            b = rs[0][bk]
            m, s = _ms([r[key] for r in rs])
            ax.errorbar([b], [m], yerr=[s], color=colors[w], marker=_MARK[key.split(":")[0]],
                        markersize=7, capsize=3, linestyle="none", alpha=0.85)
        fm, _ = _ms([r["float-torch"] for r in rs])
        ax.axhline(fm, color="k", lw=0.6, ls="--")
        ax.axhline(fm - 1.0, color="gray", lw=0.6, ls=":")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("stored bits per weight (log scale; scales included)")
        ax.set_ylabel(f"test accuracy (%), mean ± std over {len(rs)} seed(s)")
        ax.set_title(f"digits, FC {a}: converted .edgenet files on edgenet's runtime",
                     fontsize=10)
        ax.grid(alpha=0.3)
    handles = [Line2D([], [], color="gray", marker=mk, linestyle="none", label=_SHORT[k])
               for k, mk in _MARK.items()]
    handles += [Line2D([], [], color=c, marker="s", linestyle="none", label=w)
                for w, c in colors.items()]
    handles += [Line2D([], [], color="k", ls="--", lw=0.6, label="float accuracy"),
                Line2D([], [], color="gray", ls=":", lw=0.6, label="float − 1 point")]
    fig.legend(handles=handles, loc="lower center", ncol=5, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.13, 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def write_bundle(qat_onnx, data, out_dir, n_samples=300):
    """The bundled example: QAT ternary (per layer) ReLU-FC net + real test digits."""
    xtr, ytr, xte, yte = data
    os.makedirs(out_dir, exist_ok=True)
    dst = os.path.join(out_dir, "digits_ternary.edgenet")
    rep = convert(qat_onnx, dst, weights="ternary", keep_float=(), labels=LABELS)
    assert all(r.note == "lossless" for r in rep.layers), rep.format_table()
    x, y = xte[:n_samples].astype(np.float32), yte[:n_samples].astype(np.int64)
    np.savez_compressed(os.path.join(out_dir, "digits_samples.npz"), x=x, y=y)
    acc = edgenet_accuracy(dst, x, y)
    return dst, rep, acc


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=3, help="seeds per variant (default 3)")
    ap.add_argument("--quick", action="store_true", help="1 seed, a quarter of the epochs")
    ap.add_argument("--acts", default="relu", help="FC activations (relu,sigmoid)")
    ap.add_argument("--out", default=os.path.join(REPO, "docs"), help="output folder")
    ap.add_argument("--no-bundle", action="store_true",
                    help="do not rewrite edgenet/data/ (the bundled example)")
    ap.add_argument("--threads", type=int, default=1, help="PyTorch threads (default 1)")
    ap.add_argument("--json", default=os.path.join(tempfile.gettempdir(),
                                                   "edgenet_accuracy_digits.json"),
                    help="where the raw results are saved as they come (default: temp dir)")
    ap.add_argument("--only-seeds", metavar="S[,S]",
                    help="run only these seeds (to split the study over processes)")
    ap.add_argument("--variants", default="ptq,cal,mixed,mixed2,ft,qat",
                    help="which quantized rows to run (ptq,cal,mixed,mixed2,ft,qat)")
    ap.add_argument("--tune", action="store_true",
                    help="score the candidate recipes on the validation split (carved from "
                         "the training images) and exit")
    ap.add_argument("--tune-qat", metavar="ternary|quinary",
                    help="score QAT candidates by 5-fold cross-validation on the training "
                         "images and exit")
    ap.add_argument("--tune-json", metavar="JSON[,JSON]",
                    help="the --tune / --tune-qat results to include in ACCURACY.md")
    ap.add_argument("--report-only", metavar="JSON[,JSON]",
                    help="rewrite ACCURACY.md and the plot from saved results JSON(s)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    t0 = time.time()
    seeds = [0] if args.quick else list(range(args.seeds))
    if args.only_seeds:
        seeds = [int(v) for v in args.only_seeds.split(",")]
    acts = [a for a in args.acts.split(",") if a]
    data = load_data()
    cmd = "python bench/accuracy_digits.py" + (" --quick" if args.quick else "") + \
        (f" --seeds {args.seeds}" if args.seeds != 3 and not args.quick else "")

    def log(s):
        print(s, flush=True)

    os.makedirs(args.out, exist_ok=True)
    if args.tune or args.tune_qat:
        out = tune(data, log) if args.tune else tune_qat(
            data, log, args.tune_qat.split(":")[0],
            cands={"2": QAT_TUNE2, "3": QAT_TUNE3, "4": QAT_TUNE4}.get(
                args.tune_qat.partition(":")[2]))
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
        log(f"wrote {args.json}")
        return
    tuned, qtuned = None, []
    for jp in (args.tune_json.split(",") if args.tune_json else []):
        with open(jp) as f:
            t = json.load(f)
        if "weights" in t:
            qtuned.append(t)
        else:
            tuned = t
    if args.report_only:
        saved = {"results": {}, "elapsed": 0.0}
        for jp in args.report_only.split(","):   # several JSONs (e.g. one per --acts) merge
            with open(jp) as f:
                part = json.load(f)
            for a, rs in part["results"].items():
                # merged by seed: a JSON with seeds already loaded (e.g. a later run of
                # --variants mixed2) adds its rows to them, if its float net is the same
                by_seed = saved.setdefault("by_seed", {}).setdefault(a, {})
                for sd, r in zip(part["seeds"], rs):
                    if sd in by_seed:
                        if by_seed[sd]["float-torch"] != r["float-torch"]:
                            raise SystemExit(f"{jp}: seed {sd}'s float net differs from the "
                                             "one already loaded: not merged")
                        by_seed[sd].update({k: v for k, v in r.items()
                                            if k not in by_seed[sd]})
                    else:
                        by_seed[sd] = dict(r)
            for a, by_seed in saved["by_seed"].items():
                saved["results"][a] = [by_seed[sd] for sd in sorted(by_seed)]
            saved["seeds"] = sorted(set(saved.get("seeds", [])) | set(part["seeds"]))
            saved["cmd"] = part.get("cmd", cmd)
            saved["elapsed"] = max(saved["elapsed"], part.get("elapsed", 0.0))
        results, seeds = saved["results"], saved["seeds"]
        acts = [a for a in acts if a in results]
        plot_ok = plot(os.path.join(args.out, "accuracy.png"), results, acts)
        md = os.path.join(args.out, "ACCURACY.md")
        write_markdown(md, results, seeds, acts, saved.get("elapsed", 0.0), saved.get("cmd", cmd),
                       plot_ok, len(data[3]), parts=len(args.report_only.split(",")),
                       tuned=tuned, qtuned=qtuned)
        print(open(md).read())
        return
    results = {a: [] for a in acts}
    work = tempfile.mkdtemp(prefix="edgenet-acc-")
    jpath = args.json
    try:
        for a in acts:
            for s in seeds:
                results[a].append(run_seed(a, s, data, work, args.quick, log,
                                            set(args.variants.split(","))))
                with open(jpath, "w") as f:   # saved as it goes (see --report-only)
                    json.dump({"seeds": seeds, "cmd": cmd, "elapsed": time.time() - t0,
                               "results": results}, f, indent=1)
        plot_ok = plot(os.path.join(args.out, "accuracy.png"), results, acts)
        if not args.no_bundle and "relu" in acts:
            src = os.path.join(work, "qat_relu_ternary_layer_0.onnx")
            dst, rep, acc = write_bundle(src, data, os.path.join(REPO, "edgenet", "data"))
            log(f"bundled example: {dst} ({os.path.getsize(dst):,} B), accuracy on its "
                f"{len(np.load(os.path.join(os.path.dirname(dst), 'digits_samples.npz'))['y'])} "
                f"samples: {acc:.2f}%")
        elapsed = time.time() - t0
        md = os.path.join(args.out, "ACCURACY.md")
        write_markdown(md, results, seeds, acts, elapsed, cmd, plot_ok, len(data[3]),
                       tuned=tuned, qtuned=qtuned)
        log(f"wrote {md} in {elapsed:.0f}s")
        with open(md) as f:
            print(f.read())
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
