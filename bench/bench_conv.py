"""Single-conv benchmark: edgenet CPU kernels vs onnxruntime (2 threads, batch 1).

    python bench/bench_conv.py [--runs 50] [--threads 2] [--policy expanded|packed|both]

Layer shapes from ResNet-18, ResNet-20, DenseNet-121 and MobileNetV2. Each row: median of
interleaved runs (ort, edgenet, ort, edgenet, ...), fused bias+ReLU on both sides. Two
figures per side: wall-clock median, and process CPU time per run (``time.process_time``,
all threads): on a loaded machine the CPU figure is the steadier one (ort's spinning
worker threads count against it). ``EDGENET_SIMD=avx512vnni|avx512|avx2|generic|off`` forces a tier (edgenet/_tiers.py).
"""
from __future__ import annotations

import argparse
import os
import time

import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

SHAPES = [  # name, C, H, O, k, stride, pad, group
    ("conv1 7x7/2 3->64 @224", 3, 224, 64, 7, 2, 3, 1),
    ("mb stem 3x3/2 3->32 @224", 3, 224, 32, 3, 2, 1, 1),
    ("3x3 64->64 @56", 64, 56, 64, 3, 1, 1, 1),
    ("3x3/2 64->128 @56", 64, 56, 128, 3, 2, 1, 1),
    ("3x3 128->128 @28", 128, 28, 128, 3, 1, 1, 1),
    ("3x3 256->256 @14", 256, 14, 256, 3, 1, 1, 1),
    ("3x3 512->512 @7", 512, 7, 512, 3, 1, 1, 1),
    ("1x1/2 64->128 @56", 64, 56, 128, 1, 2, 0, 1),
    ("1x1 256->64 @14", 256, 14, 64, 1, 1, 0, 1),
    ("r20 3x3 16->16 @32", 16, 32, 16, 3, 1, 1, 1),
    ("r20 3x3 64->64 @8", 64, 8, 64, 3, 1, 1, 1),
    ("dn 1x1 256->128 @56", 256, 56, 128, 1, 1, 0, 1),
    ("dn 3x3 128->32 @28", 128, 28, 32, 3, 1, 1, 1),
    ("dn 1x1 512->128 @14", 512, 14, 128, 1, 1, 0, 1),
    ("mb 1x1 16->96 @112", 16, 112, 96, 1, 1, 0, 1),
    ("mb 1x1 24->144 @56", 24, 56, 144, 1, 1, 0, 1),
    ("mb 1x1 144->24 @56", 144, 56, 24, 1, 1, 0, 1),
    ("mb 1x1 960->160 @7", 960, 7, 160, 1, 1, 0, 1),
    ("dw3x3 144 @56", 144, 56, 144, 3, 1, 1, 144),
    ("dw3x3/2 144 @56", 144, 56, 144, 3, 2, 1, 144),
    ("dw3x3 576 @14", 576, 14, 576, 3, 1, 1, 576),
    # the rest of MobileNetV2's depthwise layers
    ("mbdw 32 @112", 32, 112, 32, 3, 1, 1, 32),
    ("mbdw/2 96 @112", 96, 112, 96, 3, 2, 1, 96),
    ("mbdw 192 @28", 192, 28, 192, 3, 1, 1, 192),
    ("mbdw/2 192 @28", 192, 28, 192, 3, 2, 1, 192),
    ("mbdw 384 @14", 384, 14, 384, 3, 1, 1, 384),
    ("mbdw/2 576 @14", 576, 14, 576, 3, 2, 1, 576),
    ("mbdw 960 @7", 960, 7, 960, 3, 1, 1, 960),
]


def ort_session(C, H, O, k, s, p, g, w, b, threads):
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper
    oh = (H + 2 * p - k) // s + 1
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], kernel_shape=[k, k],
                              strides=[s, s], pads=[p] * 4, group=g),
             helper.make_node("Relu", ["c"], ["y"])]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, C, H, H])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, O, oh, oh])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--policy", default="both")
    ap.add_argument("--only", default="")
    args = ap.parse_args()
    import numba
    from edgenet import cpu
    from edgenet.format import pack
    from edgenet.ir import act_desc
    numba.set_num_threads(args.threads)
    policies = ["expanded", "packed"] if args.policy == "both" else [args.policy]
    rng = np.random.default_rng(0)
    from edgenet.cpu.simd import simd_mode
    print(f"threads={args.threads} runs={args.runs} numba {numba.__version__} "
          f"simd={simd_mode()} loadavg={' '.join(f'{v:.1f}' for v in os.getloadavg())}")
    hdr = (f"| {'layer':26s} | ort ms | ort cpu | "
           + " | ".join(f"{p} ms | ratio | cpu | cpu ratio" for p in policies) + " |")
    print(hdr)
    print("|" + "---|" * (3 + 4 * len(policies)))
    for name, C, H, O, k, s, p, g in SHAPES:
        if args.only and args.only not in name:
            continue
        lv = rng.integers(-1, 2, size=(O, C // g, k, k))
        scale = rng.uniform(0.05, 0.2, size=O).astype(np.float32)
        wq = pack("t2", lv, scale)
        wf = wq.dequantize()
        b = rng.normal(size=O).astype(np.float32)
        x = rng.uniform(-1, 1, size=(1, C, H, H)).astype(np.float32)
        sess = ort_session(C, H, O, k, s, p, g, wf, b, args.threads)
        node = {"name": "c", "op": "Conv", "inputs": ["x", "w", "b"], "outputs": ["y"],
                "attrs": {"strides": [s, s], "pads": [p] * 4, "dilations": [1, 1], "group": g,
                          "activation": act_desc("Relu")}}
        consts = {"w": wq, "b": pack("f32", b)}
        ref = sess.run(None, {"x": x})[0]
        y = np.empty_like(ref)
        impls = []
        for pol in policies:
            st = cpu.OPS["Conv"].prepare(node, consts, pol)
            cpu.OPS["Conv"].run(node, st, [x, None, None], [y])
            err = np.abs(y - ref).max() / max(np.abs(ref).max(), 1e-6)
            assert err < 1e-4, (name, pol, err)
            impls.append((pol, st))
        times = {pol: [] for pol in policies}
        times["ort"] = []
        cpus = {key: [] for key in times}
        for _ in range(args.runs):
            c, t = time.process_time(), time.perf_counter()
            sess.run(None, {"x": x})
            times["ort"].append(time.perf_counter() - t)
            cpus["ort"].append(time.process_time() - c)
            for pol, st in impls:
                c, t = time.process_time(), time.perf_counter()
                cpu.OPS["Conv"].run(node, st, [x, None, None], [y])
                times[pol].append(time.perf_counter() - t)
                cpus[pol].append(time.process_time() - c)
        med = {key: float(np.median(v)) * 1e3 for key, v in times.items()}
        cmed = {key: float(np.median(v)) * 1e3 for key, v in cpus.items()}
        cells = " | ".join(f"{med[p]:7.3f} | {med[p] / med['ort']:5.2f} | {cmed[p]:6.3f} | "
                           f"{cmed[p] / max(cmed['ort'], 1e-9):5.2f}" for p in policies)
        print(f"| {name:26s} | {med['ort']:6.3f} | {cmed['ort']:6.3f} | {cells} |", flush=True)


if __name__ == "__main__":
    main()
