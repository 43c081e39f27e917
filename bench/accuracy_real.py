#!/usr/bin/env python
"""Accuracy study on real trained CNNs shipped in a wheel: plain vs calibrated PTQ vs mixed
precision, ternary and quinary (docs/ACCURACY.md, "Real models").

    pip download --no-deps rapidocr_onnxruntime==1.4.4 -d WHEELS
    python bench/accuracy_real.py --wheel WHEELS/rapidocr_onnxruntime-1.4.4-py3-none-any.whl \
        --work /tmp/acc [--model cls|det] [--cal 400] [--test 200] [--json out.json]

Models (from the wheel, nothing downloaded at run time):
  cls: ch_ppocr_mobile_v2.0_cls_infer.onnx, text direction 0 / 180 degrees (depthwise + SE,
       0.5 MB); input frozen to 3x48x192 as rapidocr feeds it; labels from rendered text
       lines (bench/accuracy_data.py), half of them rotated 180 degrees.
  det: ch_PP-OCRv4_det_infer.onnx, text detector (probability map); input frozen to
       3xSxS; no labels: per-pixel agreement of the binarized map (rapidocr's thresh 0.3)
       with the float model's, and output SNR.

Splits: calibration samples (unlabeled) and a disjoint test set, rendered with different
seeds; nothing is tuned on the test set (the converter's defaults are used as they are).
Every quantized number is measured by running the .edgenet file with edgenet's reference
backend (edgenet.load(path, device="reference")).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import zipfile

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [REPO, os.path.dirname(os.path.abspath(__file__))]

import accuracy_data as ad  # noqa: E402
import edgenet  # noqa: E402
from converters.convert import convert  # noqa: E402

MODELS = {
    "cls": ("rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx", (48, 192)),
    "det": ("rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx", None),
}


def extract(wheel, member, work, hw):
    import onnx

    out = os.path.join(work, os.path.basename(member).replace(".onnx", f".{hw[0]}x{hw[1]}.onnx"))
    if not os.path.exists(out):
        with zipfile.ZipFile(wheel) as z:
            m = onnx.load_from_string(z.read(member))
        d = m.graph.input[0].type.tensor_type.shape.dim
        for i, v in ((2, hw[0]), (3, hw[1])):
            d[i].ClearField("dim_param")
            d[i].dim_value = v
        onnx.save(m, out)
    return out


def data(model, n_cal, n_test, size):
    if model == "cls":
        xc, _ = ad.text_direction(n_cal, seed=100)
        xt, yt = ad.text_direction(n_test, seed=200)
        return xc, xt, yt
    return ad.text_pages(n_cal, seed=100, size=size), ad.text_pages(n_test, seed=200,
                                                                     size=size), None


def score(model, y, yf, labels):
    """(accuracy or None, agreement with float, SNR dB)."""
    y, yf = np.asarray(y, np.float64), np.asarray(yf, np.float64)
    noise = float(np.sum((y - yf) ** 2))
    snr = float("inf") if noise == 0 else 10 * np.log10(np.sum(yf ** 2) / noise)
    if model == "cls":
        acc = float(np.mean(y.argmax(1) == labels))
        agree = float(np.mean(y.argmax(1) == yf.argmax(1)))
    else:
        acc = None
        agree = float(np.mean((y > 0.3) == (yf > 0.3)))
    return acc, agree, snr


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--wheel", required=True)
    ap.add_argument("--work", default="/tmp/edgenet-accuracy")
    ap.add_argument("--model", choices=sorted(MODELS), default="cls")
    ap.add_argument("--cal", type=int, default=400)
    ap.add_argument("--test", type=int, default=200)
    ap.add_argument("--size", type=int, default=160, help="det input size")
    ap.add_argument("--variants", default="plain_t2,plain_q3,cal_t2,cal_q3,mixed_t2")
    ap.add_argument("--target", type=float, default=0.99)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    member, hw = MODELS[a.model]
    src = extract(a.wheel, member, a.work, hw or (a.size, a.size))
    xc, xt, yt = data(a.model, a.cal, a.test, a.size)
    rows = []
    f32 = os.path.join(a.work, f"{a.model}.f32.edgenet")
    convert(src, f32, weights="f32")
    yf = edgenet.load(f32, device="reference")(xt)
    import onnxruntime as ort
    yo = ort.InferenceSession(src, providers=["CPUExecutionProvider"]).run(
        None, {"x": xt})[0]
    acc, agree, snr = score(a.model, yo, yf, yt)
    rows.append({"variant": "float (onnxruntime)", "acc": acc, "agree": 1.0,
                 "bits": 32.0, "bytes": os.path.getsize(src), "seconds": 0.0})
    acc, agree, snr = score(a.model, yf, yf, yt)
    rows.append({"variant": "edgenet f32", "acc": acc, "agree": agree, "bits": 32.0,
                 "bytes": os.path.getsize(f32), "seconds": 0.0,
                 "max_abs_vs_ort": float(np.abs(yf - yo).max())})
    specs = {
        "plain_t2": ("PTQ ternary, TWN rule, per channel, all layers",
                     dict(weights="ternary")),
        "plain_q3": ("PTQ quinary, seed rule, per channel, all layers",
                     dict(weights="quinary")),
        "cal_t2": ("calibrated PTQ ternary, all layers", dict(weights="ternary",
                                                              calibrate_weights=True)),
        "cal_q3": ("calibrated PTQ quinary, all layers", dict(weights="quinary",
                                                              calibrate_weights=True)),
        "mixed_t2": (f"mixed precision, --target-agreement {a.target}",
                     dict(weights="ternary", target_agreement=a.target)),
        "mixed_b25": ("mixed precision, --max-bits 2.5", dict(weights="ternary", max_bits=2.5)),
    }
    for v in a.variants.split(","):
        label, kw = specs[v]
        dst = os.path.join(a.work, f"{a.model}.{v}.edgenet")
        t = time.perf_counter()
        rep = convert(src, dst, keep_float="none", calibration=xc, fidelity_samples=xt[:1],
                      log=lambda m: print(m, file=sys.stderr), **kw)
        sec = time.perf_counter() - t
        y = edgenet.load(dst, device="reference")(xt)
        acc, agree, snr = score(a.model, y, yf, yt)
        encs = [r.encoding for r in rep.layers]
        n_t2 = sum(int(np.prod(r.shape)) for r in rep.layers if r.encoding == "t2")
        rows.append({"variant": label, "acc": acc, "agree": agree, "snr_db": snr,
                     "bits": rep.bits_per_weight, "bytes": rep.output_bytes,
                     "seconds": sec, "ternary_weight_share": n_t2 / rep.weight_count,
                     "encodings": {e: encs.count(e) for e in sorted(set(encs))}})
        print(json.dumps(rows[-1]), flush=True)
    info = {"model": a.model, "src": os.path.basename(src), "cal": a.cal, "test": a.test,
            "weights": rows[-1].get("weights"), "machine": f"{os.cpu_count()} CPU "
            f"({platform.machine()}), shared", "rows": rows}
    if a.json:
        with open(a.json, "w") as f:
            json.dump(info, f, indent=1)
    for r in rows:
        acc = "" if r["acc"] is None else f"{100 * r['acc']:.2f}"
        print(f"| {r['variant']} | {acc} | {100 * r['agree']:.2f} | {r['bits']:.2f} | "
              f"{r['bytes']:,} | {r['seconds']:.0f} |")


if __name__ == "__main__":
    main()
