#!/usr/bin/env python
"""Per-op CPU time of the issue-13 ops: edgenet (one-op model, f32) vs onnxruntime on the
same ONNX graph, same thread count, interleaved runs, medians.

    python bench/bench_math_ops.py [--threads 2] [--runs 30] [--only SUBSTRING]

onnxruntime runs with session.intra_op.allow_spinning=0 (its spinning workers would
otherwise take the cores edgenet's calls need in an interleaved loop). "LayerNorm pattern"
is the 9-node graph torch's exporter writes for nn.LayerNorm below opset 17.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)


def _ln_pattern(h, nh):
    return [h.make_node("ReduceMean", ["x", "axes"], ["m"]),
            h.make_node("Sub", ["x", "m"], ["d"]),
            h.make_node("Pow", ["d", "two"], ["d2"]),
            h.make_node("ReduceMean", ["d2", "axes"], ["v"]),
            h.make_node("Add", ["v", "eps"], ["ve"]),
            h.make_node("Sqrt", ["ve"], ["s"]),
            h.make_node("Div", ["d", "s"], ["n"]),
            h.make_node("Mul", ["n", "g"], ["ng"]),
            h.make_node("Add", ["ng", "b"], ["y"])]


def _cases():
    from onnx import TensorProto as T
    from onnx import helper as h
    from onnx import numpy_helper as nh
    ax = lambda *v: nh.from_array(np.array(v, np.int64), "axes")  # noqa: E731
    x4 = (1, 64, 56, 56)
    seq = (1, 80, 384)
    return {
        "Erf 1x64x56x56": ([h.make_node("Erf", ["x"], ["y"])], x4, []),
        "Exp 1x64x56x56": ([h.make_node("Exp", ["x"], ["y"])], x4, []),
        "Mish 1x64x56x56": ([h.make_node("Mish", ["x"], ["y"])], x4, []),
        "ReduceMean last 1x80x384": ([h.make_node("ReduceMean", ["x", "axes"], ["y"])], seq,
                                     [ax(-1)]),
        "ReduceMean HW 1x64x56x56": ([h.make_node("ReduceMean", ["x", "axes"], ["y"])], x4,
                                     [ax(2, 3)]),
        "ReduceMax C 1x64x56x56": ([h.make_node("ReduceMax", ["x", "axes"], ["y"])], x4,
                                   [ax(1)]),
        "Max bcast 1x64x56x56,(64,1,1)": ([h.make_node("Max", ["x", "c"], ["y"])], x4,
                                          [nh.from_array(np.zeros((64, 1, 1), np.float32),
                                                         "c")]),
        "LRN size5 1x64x56x56": ([h.make_node("LRN", ["x"], ["y"], size=5)], x4, []),
        "LayerNorm pattern 1x80x384": (_ln_pattern(h, nh), seq,
                                       [nh.from_array(np.ones(384, np.float32), "g"),
                                        nh.from_array(np.zeros(384, np.float32), "b"),
                                        nh.from_array(np.array(2.0, np.float32), "two"),
                                        nh.from_array(np.array(1e-5, np.float32), "eps"),
                                        ax(-1)]),
        "LayerNorm last 1x80x384": ([h.make_node("LayerNormalization", ["x", "g", "b"], ["y"])],
                                    seq, [nh.from_array(np.ones(384, np.float32), "g"),
                                          nh.from_array(np.zeros(384, np.float32), "b")]),
    }, (T, h)


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--only", default="", help="run the cases whose name contains this")
    args = ap.parse_args(argv)
    import onnx
    import onnxruntime as ort

    import edgenet
    from converters.convert import convert
    cases, (T, h) = _cases()
    print(f"{'op':34s} {'edgenet ms':>10s} {'ort ms':>8s} {'ratio':>6s}")
    with tempfile.TemporaryDirectory() as d:
        for name, (nodes, shape, inits) in cases.items():
            if args.only.lower() not in name.lower():
                continue
            g = h.make_graph(nodes, "b", [h.make_tensor_value_info("x", T.FLOAT, list(shape))],
                             [h.make_tensor_value_info("y", T.FLOAT, None)], initializer=inits)
            src, dst = os.path.join(d, "m.onnx"), os.path.join(d, "m.edgenet")
            onnx.save(h.make_model(g, opset_imports=[h.make_opsetid("", 18)]), src)
            convert(src, dst, weights="f32")
            m = edgenet.load(dst, threads=args.threads)
            so = ort.SessionOptions()
            so.intra_op_num_threads = args.threads
            so.add_session_config_entry("session.intra_op.allow_spinning", "0")
            s = ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])
            x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
            m(x), s.run(None, {"x": x})
            te, to = [], []
            for _ in range(args.runs):
                t0 = time.perf_counter()
                m(x)
                te.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                s.run(None, {"x": x})
                to.append(time.perf_counter() - t0)
            e, o = 1e3 * np.median(te), 1e3 * np.median(to)
            print(f"{name:34s} {e:10.3f} {o:8.3f} {e / o:6.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
