#!/usr/bin/env python
"""Accuracy study: what ternary / quinary weights cost on real data, measured with edgenet.

    python bench/accuracy_digits.py            # writes docs/ACCURACY.md, docs/accuracy.png
                                               # and the bundled example edgenet/data/
    python bench/accuracy_digits.py --quick    # 1 seed, fewer epochs (smoke run)

Data: scikit-learn's handwritten digits (1,797 real 8x8 images, values 0..16, scaled to
[0, 1]), split once with train_test_split(test_size=0.25, random_state=0, stratify=y):
1,347 training and 450 test images.

Net: the seed's MNIST net adapted to 8x8 inputs: conv 12@3x3 (pad 1) + Sigmoid, 2x2 maxpool,
conv 12@3x3 (pad 1) + Sigmoid, 2x2 maxpool, FC 512 (+ Sigmoid or + ReLU), FC 10.  The input
normalization (x - 0.3) / 0.4 is the first op of the network itself (a Sub and a Div in the
ONNX graph), so every model takes the [0, 1] images as they are.

Variants (each over several seeds; mean +- std):
  * float (PyTorch), and the same ONNX converted with edgenet --weights f32;
  * post-training quantization (PTQ) of the float ONNX with edgenet's converter: the seed's
    per-layer TWN rule on every layer, then the cheap improvements one at a time: exact
    optimal threshold, per-channel scales, first/last layers kept float; plus empirical bias
    correction (biases re-fitted on the training images so each layer's mean output matches
    the float net; done in PyTorch with converters.qat, converted losslessly);
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

# training recipe (Adam + cosine schedule, batch 32), per FC activation:
# (float epochs, float lr, QAT epochs, QAT lr).  The Sigmoid-FC float net does not converge
# at lr 1e-2 (stuck at chance, as the seed reports for its Sigmoid-FC net), hence 2e-3.
RECIPE = {"relu": (60, 1e-2, 40, 1e-2), "sigmoid": (100, 2e-3, 40, 5e-3)}
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
    """The seed's net for 8x8 digits; hidden_act "relu" or "sigmoid" (the FC 512 layer)."""

    def __init__(self, hidden_act: str = "relu"):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 12, 3, padding=1)
        self.conv2 = nn.Conv2d(12, 12, 3, padding=1)
        self.fc1 = nn.Linear(12 * 2 * 2, 512)
        self.fc2 = nn.Linear(512, 10)
        self.hidden_act = hidden_act

    def forward(self, x):
        x = (x - MEAN) / STD
        x = F.max_pool2d(torch.sigmoid(self.conv1(x)), 2)
        x = F.max_pool2d(torch.sigmoid(self.conv2(x)), 2)
        x = torch.flatten(x, 1)
        x = self.fc1(x)
        x = torch.relu(x) if self.hidden_act == "relu" else torch.sigmoid(x)
        return self.fc2(x)


def train(model, xtr, ytr, epochs, lr, seed):
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    x, y = torch.from_numpy(xtr), torch.from_numpy(ytr)
    n = len(x)
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(n, generator=g)
        for i in range(0, n, BATCH):
            idx = perm[i:i + BATCH]
            opt.zero_grad()
            F.cross_entropy(model(x[idx]), y[idx]).backward()
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


def run_seed(act, seed, data, work, quick, log):
    xtr, ytr, xte, yte = data
    res = {}
    torch.manual_seed(seed)
    t0 = time.time()
    fe, flr, qe, qlr = RECIPE[act]
    div = 4 if quick else 1
    fm = train(DigitsNet(act), xtr, ytr, fe // div, flr, seed)
    res["float-torch"] = torch_accuracy(fm, xte, yte)
    fonnx = export_float(fm, os.path.join(work, f"float_{act}_{seed}.onnx"))
    rep = convert(fonnx, os.path.join(work, "f32.edgenet"), weights="f32", keep_float=())
    res["float-edgenet"] = edgenet_accuracy(rep.dst, xte, yte)
    res["bits:float"] = rep.bits_per_weight
    log(f"  [{act} seed {seed}] float torch {res['float-torch']:.2f}  edgenet f32 "
        f"{res['float-edgenet']:.2f}  ({time.time() - t0:.0f}s)")

    for w in ("ternary", "quinary"):
        for key, _, kw in PTQ:
            if w == "quinary" and kw["threshold"] == "optimal":
                continue
            rep = convert(fonnx, os.path.join(work, "ptq.edgenet"), weights=w, **kw)
            res[f"ptq-{key}:{w}"] = edgenet_accuracy(rep.dst, xte, yte)
            res[f"bits:ptq-{key}:{w}"] = rep.bits_per_weight
        # bias correction on top of per-channel, all layers (quantized in torch, exact α·T)
        qm = qat.prepare(copy.deepcopy(fm), w, "channel")
        bias_correct(fm, qm, xtr)
        p = qat.export_onnx(qm, torch.zeros(1, 1, 8, 8), os.path.join(work, "bc.onnx"))
        rep = convert(p, os.path.join(work, "bc.edgenet"), weights=w, keep_float=())
        assert all(r.note == "lossless" for r in rep.layers), rep.format_table()
        res[f"ptq-bc-channel:{w}"] = edgenet_accuracy(rep.dst, xte, yte)
        res[f"bits:ptq-bc-channel:{w}"] = rep.bits_per_weight

        for gran in ("layer", "channel"):
            t1 = time.time()
            qm = qat.prepare(copy.deepcopy(fm), w, gran)
            torch.manual_seed(seed + 1000)
            train(qm, xtr, ytr, qe // div, qlr, seed + 1000)
            tacc = torch_accuracy(qm, xte, yte)
            p = qat.export_onnx(qm, torch.zeros(1, 1, 8, 8),
                                os.path.join(work, f"qat_{act}_{w}_{gran}_{seed}.onnx"))
            dst = os.path.join(work, f"qat_{act}_{w}_{gran}_{seed}.edgenet")
            rep = convert(p, dst, weights=w, keep_float=(), labels=LABELS)
            assert all(r.note == "lossless" for r in rep.layers), rep.format_table()
            res[f"qat-{gran}:{w}"] = edgenet_accuracy(dst, xte, yte)
            res[f"qat-torch-{gran}:{w}"] = tacc
            res[f"bits:qat-{gran}:{w}"] = rep.bits_per_weight
            log(f"  [{act} seed {seed}] QAT {w}/{gran}: edgenet {res[f'qat-{gran}:{w}']:.2f} "
                f"(torch {tacc:.2f}) ({time.time() - t1:.0f}s)")
        log(f"  [{act} seed {seed}] PTQ {w}: " + ", ".join(
            f"{k.split(':')[0][4:]} {v:.1f}" for k, v in res.items()
            if k.startswith("ptq-") and k.endswith(":" + w)))
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
             (f"qat-layer:{_w}", f"**QAT {_w}, per layer, all layers**", _w),
             (f"qat-channel:{_w}", f"**QAT {_w}, per channel, all layers**", _w)]


def _ms(vals):
    v = np.asarray(vals, dtype=np.float64)
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def write_markdown(path, results, seeds, acts, elapsed, cmd, plot_ok, n_test, parts=1):
    L = []
    L.append("# Accuracy of ternary and quinary weights (handwritten digits)\n")
    L.append("Produced by one command (do not edit by hand):\n")
    L.append(f"    {cmd}\n")
    L.append(f"Data: scikit-learn's `load_digits` (1,797 real 8x8 images), split once with "
             f"`train_test_split(test_size=0.25, random_state=0, stratify=y)`: 1,347 training "
             f"and {n_test} test images (one image = {100.0 / n_test:.2f} points). Net: the seed's "
             "MNIST net adapted to 8x8: conv 12@3x3 (pad 1) + Sigmoid, 2x2 maxpool, conv "
             "12@3x3 (pad 1) + Sigmoid, 2x2 maxpool, FC 512 (+ReLU or +Sigmoid), FC 10; "
             "31,100 weights. No BatchNorm (as in the seed).\n")
    rec = "; ".join(f"FC {a}: float {RECIPE[a][0]} epochs at lr {RECIPE[a][1]:g}, QAT "
                    f"{RECIPE[a][2]} epochs at lr {RECIPE[a][3]:g}" for a in acts)
    L.append(f"Training: Adam, batch {BATCH}, cosine schedule ({rec}). QAT fine-tunes the "
             "trained float net "
             "(`converters/qat.py`: forward with α·T, straight-through gradients "
             "to the float weights, the exact rules of shared/quantization.md). Seeds: "
             f"{', '.join(map(str, seeds))}; each cell is mean ± std (sample std) over the "
             "seeds of test accuracy in %, and in brackets the difference from the same "
             "seeds' float (PyTorch) accuracy.\n")
    L.append("**Every accuracy except the first row is measured by running the converted "
             "`.edgenet` file with edgenet's own runtime** (`edgenet.load(path)(x)`, Numba "
             "CPU backend). The QAT exports are packed losslessly (the converter reports "
             "`lossless` for every layer; the script asserts it). *Bits/weight* is what the "
             "file stores per Conv/Gemm weight, per-channel scales included (the converter's "
             "`bits_per_weight`).\n")
    hdr = "| variant | bits/weight | " + " | ".join(f"FC {a}" for a in acts) + " |"
    L.append(hdr)
    L.append("|---|---:|" + "---:|" * len(acts))
    for key, label, _ in ROWS:
        cells = []
        bits = None
        for a in acts:
            rs = results[a]
            if not all(key in r for r in rs):
                cells.append("–")
                continue
            m, s = _ms([r[key] for r in rs])
            dm, _ = _ms([r[key] - r["float-torch"] for r in rs])
            cells.append(f"{m:.2f} ± {s:.2f}" + ("" if key == "float-torch" else f" ({dm:+.2f})"))
            bk = "bits:" + key if ("bits:" + key) in rs[0] else "bits:float"
            bits = rs[0][bk]
        L.append(f"| {label} | {bits:.2f} | " + " | ".join(cells) + " |")
    L.append("")
    # goal check
    L.append("## Goal check\n")
    for a in acts:
        rs = results[a]
        fm, _ = _ms([r["float-torch"] for r in rs])
        same = all(abs(r["float-edgenet"] - r["float-torch"]) < 1e-9 for r in rs)
        L.append(f"- FC {a}: edgenet f32 accuracy {'equals' if same else 'DIFFERS FROM'} "
                 "PyTorch float accuracy on every seed.")
        for w in ("ternary", "quinary"):
            best = max(("layer", "channel"),
                       key=lambda g: _ms([r[f"qat-{g}:{w}"] for r in rs])[0])
            qm, _ = _ms([r[f"qat-{best}:{w}"] for r in rs])
            L.append(f"- FC {a}: QAT {w} (best granularity: {best}) {qm:.2f} vs float "
                     f"{fm:.2f}: {qm - fm:+.2f} points "
                     f"({'within' if fm - qm <= 1.0 else 'NOT within'} 1.0; "
                     f"{'within' if fm - qm <= 0.3 else 'not within'} the 0.3 stretch).")
    L.append("")
    if plot_ok:
        L.append("![accuracy vs bits per weight](accuracy.png)\n")
    L.append("## Reading the table\n")
    L.append("- *PTQ* rows quantize the trained float net without any retraining. The first "
             "is the seed's rule as is (TWN Δ = 0.7·mean(abs W) for ternary, Δ1/Δ2 = 0.5/1.4 "
             "for quinary; one scale per layer; every layer quantized); each following row "
             "changes one thing: the exact optimal ternary threshold, one scale per output "
             "channel, the first and last layers kept in float (they hold 5,228 of the 31,100 "
             "weights, hence the higher bits/weight), empirical bias correction (each "
             "quantized layer's bias shifted so that its mean output over the training images "
             "matches the float net's; the classifier's bias is left alone, since matching the "
             "mean logits collapsed the ReLU-FC net to near chance in a trial; computed in "
             "PyTorch with `converters/qat.py`, converted losslessly).")
    L.append("- *QAT* rows fine-tune the float net with quantization in the loop, every "
             "layer (first and last included) ternary or quinary, and are compared with the "
             "same seeds' float accuracy in the goal check above.")
    L.append("- The seed reports that its float net with an FC Sigmoid did not converge on "
             "MNIST. Here, in a trial run (seed 0), the Sigmoid-FC float net stayed at chance "
             "(10%) at the ReLU net's learning rate 1e-2; at lr 2e-3 and 100 epochs it "
             "trains.\n")
    L.append("## Reproduce\n")
    L.append(f"    {cmd}\n")
    how = ("the run that wrote this file" if parts == 1 else
           f"the longest of the {parts} processes (one per `--acts`/`--only-seeds` value, run "
           "in parallel on a shared, loaded machine, then merged with `--report-only`) that "
           "produced these numbers")
    L.append(f"Wall time of {how}: {elapsed / 60:.1f} min on "
             f"{os.cpu_count()} CPU core(s) ({platform.processor() or platform.machine()}), "
             f"torch {torch.__version__}, PyTorch threads {torch.get_num_threads()}. The same "
             "command also rewrites the bundled example in `edgenet/data/` "
             "(`--no-bundle` to skip).\n")
    keep = ""      # the real-model study below the marker is written by hand from
    marker = "<!-- real models -->"    # bench/accuracy_real.py's output: kept as it is
    if os.path.exists(path):
        with open(path) as f:
            old = f.read()
        if marker in old:
            keep = "\n" + old[old.index(marker):]
    with open(path, "w") as f:
        f.write("\n".join(L) + keep)


_MARK = {"float-torch": "o", "float-edgenet": "x", "ptq-twn-layer": "v", "ptq-opt-layer": "D",
         "ptq-twn-channel": "^", "ptq-twn-channel-keep": "<", "ptq-bc-channel": "P",
         "qat-layer": "s", "qat-channel": "*"}
_SHORT = {"float-torch": "float (PyTorch)", "float-edgenet": "float, edgenet f32",
          "ptq-twn-layer": "PTQ seed rule, per layer", "ptq-opt-layer": "PTQ optimal Δ",
          "ptq-twn-channel": "PTQ per channel", "ptq-twn-channel-keep":
          "PTQ per channel, first/last float", "ptq-bc-channel":
          "PTQ per channel + bias corr.", "qat-layer": "QAT per layer",
          "qat-channel": "QAT per channel"}


def plot(path, results, acts):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.lines import Line2D
    except ImportError:
        print("matplotlib missing: no plot (pip install matplotlib)")
        return False
    colors = {"float": "k", "ternary": "tab:red", "quinary": "tab:blue"}
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
    ap.add_argument("--acts", default="relu,sigmoid", help="FC activations (relu,sigmoid)")
    ap.add_argument("--out", default=os.path.join(REPO, "docs"), help="output folder")
    ap.add_argument("--no-bundle", action="store_true",
                    help="do not rewrite edgenet/data/ (the bundled example)")
    ap.add_argument("--threads", type=int, default=1, help="PyTorch threads (default 1)")
    ap.add_argument("--json", default=os.path.join(tempfile.gettempdir(),
                                                   "edgenet_accuracy_digits.json"),
                    help="where the raw results are saved as they come (default: temp dir)")
    ap.add_argument("--only-seeds", metavar="S[,S]",
                    help="run only these seeds (to split the study over processes)")
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
    if args.report_only:
        saved = {"results": {}, "elapsed": 0.0}
        for jp in args.report_only.split(","):   # several JSONs (e.g. one per --acts) merge
            with open(jp) as f:
                part = json.load(f)
            for a, rs in part["results"].items():
                saved["results"].setdefault(a, []).extend(rs)
            saved["seeds"] = sorted(set(saved.get("seeds", [])) | set(part["seeds"]))
            saved["cmd"] = part.get("cmd", cmd)
            saved["elapsed"] = max(saved["elapsed"], part.get("elapsed", 0.0))
        results, seeds = saved["results"], saved["seeds"]
        acts = [a for a in acts if a in results]
        plot_ok = plot(os.path.join(args.out, "accuracy.png"), results, acts)
        md = os.path.join(args.out, "ACCURACY.md")
        write_markdown(md, results, seeds, acts, saved.get("elapsed", 0.0), saved.get("cmd", cmd),
                       plot_ok, len(data[3]), parts=len(args.report_only.split(",")))
        print(open(md).read())
        return
    results = {a: [] for a in acts}
    work = tempfile.mkdtemp(prefix="edgenet-acc-")
    jpath = args.json
    try:
        for a in acts:
            for s in seeds:
                results[a].append(run_seed(a, s, data, work, args.quick, log))
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
        write_markdown(md, results, seeds, acts, elapsed, cmd, plot_ok, len(data[3]))
        log(f"wrote {md} in {elapsed:.0f}s")
        with open(md) as f:
            print(f.read())
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
