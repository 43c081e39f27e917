#!/usr/bin/env python
"""Full-size parity: edgenet (CPU) vs onnxruntime on ResNet-18, DenseNet-121, MobileNetV2
(float, --weights f32) and, for the quantized files, vs onnxruntime on --reference-onnx.

    python bench/parity_full.py [--models resnet18,densenet121,mobilenetv2] [--device cpu]
    python bench/parity_full.py --weights ternary-a8,f32-a8     # int8 activations

A weights name ending in ``-a8`` converts with int8 activations (calibrated on 16 random
inputs) and compares with onnxruntime, graph optimizations off, on the QDQ reference
export (its optimizer would swap in its own int8 kernels); there the error also shows the
median, since a float rounding difference can flip one uint8 code inside the net.
Prints one row per (model, weights): max abs error / max |y| and conversion time.
"""
import argparse
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from harness import CACHE, onnx_path, ort_session  # noqa: E402


def ort_plain(path):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="resnet18,densenet121,mobilenetv2")
    ap.add_argument("--weights", default="f32,ternary,quinary")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=2)
    a = ap.parse_args()
    import edgenet
    from converters.convert import convert
    print("| model | weights | oracle | convert s | file MB | max abs err / max abs y |")
    print("|---|---|---|---:|---:|---:|")
    for name in a.models.split(","):
        src = onnx_path(name)
        for w in a.weights.split(","):
            a8 = w.endswith("-a8")
            wq = w[:-3] if a8 else w
            dst = os.path.join(CACHE, f"{name}.parity.{w}.edgenet")
            ref = os.path.join(CACHE, f"{name}.parity.{w}.ref.onnx") if w != "f32" else None
            kw = {}
            if a8:
                shp = ort_session(src, 1).get_inputs()[0].shape
                kw = dict(activations="int8", calibration=np.random.default_rng(1).standard_normal(
                    [16] + [int(d) for d in shp[1:]]).astype(np.float32))
            t0 = time.perf_counter()
            convert(src, dst, weights=wq, keep_float=() if wq != "f32" else ("first", "last"),
                    reference_onnx=ref, **kw)
            tc = time.perf_counter() - t0
            sess = ort_plain(ref) if a8 else ort_session(ref or src, 2)
            shape = [a.batch if not isinstance(d, int) else d for d in sess.get_inputs()[0].shape]
            x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
            want = sess.run(None, {sess.get_inputs()[0].name: x})[0]
            got = edgenet.load(dst, device=a.device)(x)
            rel = float(np.abs(got - want).max() / np.abs(want).max())
            med = float(np.median(np.abs(got - want)) / np.abs(want).max())
            oracle = ("source" if ref is None else
                      "--reference-onnx (QDQ, no graph opt.)" if a8 else "--reference-onnx")
            print(f"| {name} | {w} | onnxruntime on {oracle} | {tc:.1f} | "
                  f"{os.path.getsize(dst) / 1e6:.2f} | {rel:.2e}"
                  + (f" (median {med:.1e})" if a8 else "") + " |", flush=True)


if __name__ == "__main__":
    main()
