#!/usr/bin/env python
"""LSTM: ddddocr's OCR recognizer (a CNN, then a bidirectional LSTM with 512 hidden
units, then a Gemm; input [1, 1, 64, W], W dynamic) converted once (f32, dynamic width),
compared with onnxruntime and timed against it, interleaved in one process.

    python bench/bench_rnn.py                      # widths 128 200 320, 2 threads
    python bench/bench_rnn.py --widths 96 480 --runs 30

onnxruntime: ``intra_op_num_threads`` = threads, ``session.intra_op.allow_spinning=0``.
Per width: max |edgenet − ort| / max |ort|, median latency of each, their ratio, and the
LSTM node's share of edgenet's time (``run(profile=...)``). Then the LSTM op alone: a
one-node ONNX model with LSTM_79's own W, R, B and X [T, 1, I] (T of that width), edgenet
vs onnxruntime, interleaved the same way. Needs the model from
bench/real_models.py's cache (it downloads the ddddocr wheel once).
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


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--widths", type=int, nargs="+", default=[128, 200, 320])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    import onnxruntime as ort

    import edgenet
    from bench.real_models import MODELS, fetch, photo
    from converters.convert import convert
    wheel, member, _, prep = MODELS["ddddocr_ocr"]
    src = fetch(wheel, member)
    so = ort.SessionOptions()
    so.intra_op_num_threads = args.threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    sess = ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])
    iname = sess.get_inputs()[0].name
    with tempfile.TemporaryDirectory() as d:
        dst = os.path.join(d, "m.edgenet")
        convert(src, dst, weights="f32")
        m = edgenet.load(dst, threads=args.threads)
    print(f"ddddocr common.onnx, f32, {args.threads} threads, median of {args.runs} "
          "interleaved runs")
    print(f"{'input':>14s} {'rel err':>9s} {'edgenet ms':>11s} {'ort ms':>8s} "
          f"{'ratio':>6s} {'LSTM share':>10s}")
    for w in args.widths:
        x = photo((1, 1, 64, w), prep)
        want = sess.run(None, {iname: x})[0]
        got = m(x)
        rel = float(np.abs(got - want).max() / max(np.abs(want).max(), 1e-30))
        for _ in range(3):
            m(x)
            sess.run(None, {iname: x})
        te, to = [], []
        prof: dict = {}
        for _ in range(args.runs):
            t0 = time.perf_counter()
            m(x)
            te.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            sess.run(None, {iname: x})
            to.append(time.perf_counter() - t0)
        m.run({iname: x}, profile=prof)
        lstm = sum(v for k, v in prof.items() if "LSTM" in str(k))
        share = lstm / max(sum(prof.values()), 1e-12)
        me, mo = np.median(te) * 1e3, np.median(to) * 1e3
        print(f"{'1x1x64x' + str(w):>14s} {rel:9.2e} {me:11.2f} {mo:8.2f} {me / mo:6.2f} "
              f"{share:10.0%}", flush=True)
    _op_alone(args, src, ort, so, edgenet, convert)
    return 0


def _op_alone(args, src, ort, so, edgenet, convert):
    """LSTM_79 alone: X [T, 1, I] -> Y, with the model's W, R, B; T = the model's output
    length at each width."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    model = onnx.load(src)
    inits = {t.name: t for t in model.graph.initializer}
    node = next(n for n in model.graph.node if n.op_type == "LSTM")
    w, r, b = (numpy_helper.to_array(inits[node.input[k]]) for k in (1, 2, 3))
    D, H4, I = w.shape
    g = helper.make_graph(
        [helper.make_node("LSTM", ["x", "W", "R", "B"], ["y"], hidden_size=H4 // 4,
                          direction="bidirectional")],
        "lstm", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["T", 1, I])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["T", D, 1, H4 // 4])],
        [numpy_helper.from_array(a, n) for a, n in ((w, "W"), (r, "R"), (b, "B"))])
    om = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    om.ir_version = 8
    full = ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])
    iname = full.get_inputs()[0].name
    with tempfile.TemporaryDirectory() as d:
        osrc, dst = os.path.join(d, "lstm.onnx"), os.path.join(d, "lstm.edgenet")
        onnx.save(om, osrc)
        convert(osrc, dst, weights="f32")
        m = edgenet.load(dst, threads=args.threads)
        sess = ort.InferenceSession(osrc, so, providers=["CPUExecutionProvider"])
    from bench.real_models import photo
    print(f"\nLSTM_79 alone (bidirectional, H {H4 // 4}, I {I}, batch 1), median of "
          f"{args.runs} interleaved runs")
    print(f"{'X':>14s} {'rel err':>9s} {'edgenet ms':>11s} {'ort ms':>8s} {'ratio':>6s}")
    rng = np.random.default_rng(0)
    for wd in args.widths:
        T = full.run(None, {iname: photo((1, 1, 64, wd), "gray")})[0].shape[0]
        x = rng.standard_normal((T, 1, I)).astype(np.float32)
        want = sess.run(None, {"x": x})[0]
        got = m(x)
        rel = float(np.abs(got - want).max() / max(np.abs(want).max(), 1e-30))
        for _ in range(3):
            m(x)
            sess.run(None, {"x": x})
        te, to = [], []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            m(x)
            te.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            sess.run(None, {"x": x})
            to.append(time.perf_counter() - t0)
        me, mo = np.median(te) * 1e3, np.median(to) * 1e3
        print(f"{f'{T}x1x{I}':>14s} {rel:9.2e} {me:11.2f} {mo:8.2f} {me / mo:6.2f}",
              flush=True)


if __name__ == "__main__":
    sys.exit(main())
