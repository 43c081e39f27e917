#!/usr/bin/env python
"""Full-size parity: edgenet (CPU) vs onnxruntime on ResNet-18, DenseNet-121, MobileNetV2
(float, --weights f32) and, for the quantized files, vs onnxruntime on --reference-onnx.

    python bench/parity_full.py [--models resnet18,densenet121,mobilenetv2] [--device cpu]

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
            dst = os.path.join(CACHE, f"{name}.parity.{w}.edgenet")
            ref = os.path.join(CACHE, f"{name}.parity.{w}.ref.onnx") if w != "f32" else None
            t0 = time.perf_counter()
            convert(src, dst, weights=w, keep_float=() if w != "f32" else ("first", "last"),
                    reference_onnx=ref)
            tc = time.perf_counter() - t0
            sess = ort_session(ref or src, 2)
            shape = [a.batch if not isinstance(d, int) else d for d in sess.get_inputs()[0].shape]
            x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
            want = sess.run(None, {sess.get_inputs()[0].name: x})[0]
            got = edgenet.load(dst, device=a.device)(x)
            rel = float(np.abs(got - want).max() / np.abs(want).max())
            print(f"| {name} | {w} | onnxruntime on {'source' if ref is None else '--reference-onnx'} "
                  f"| {tc:.1f} | {os.path.getsize(dst) / 1e6:.2f} | {rel:.2e} |", flush=True)


if __name__ == "__main__":
    main()
