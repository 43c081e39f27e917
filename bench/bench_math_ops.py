#!/usr/bin/env python
"""Per-op CPU time of the issue-13 ops: edgenet (one-op model, f32) vs onnxruntime on the
same ONNX graph, same thread count, interleaved runs, medians.

    python bench/bench_math_ops.py [--threads 1,2] [--runs 30] [--only SUBSTRING]
    python bench/bench_math_ops.py --base COMMIT    # also that commit's edgenet (A/B)

onnxruntime runs with session.intra_op.allow_spinning=0 (its spinning workers would
otherwise take the cores edgenet's calls need in an interleaved loop). "LayerNorm pattern"
is the 9-node graph torch's exporter writes for nn.LayerNorm below opset 17. ``--base``
loads that commit's ``edgenet/`` as a package ``edgenet_base`` (bench/bench_dispatch.py) and
times it interleaved too, so before/after ratios come from one process.
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
        "ReduceMean C 1x64x56x56": ([h.make_node("ReduceMean", ["x", "axes"], ["y"])], x4,
                                    [ax(1)]),
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
    ap.add_argument("--threads", default="1,2", help="comma list")
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--block", type=int, default=5, help="calls per engine per round")
    ap.add_argument("--only", default="", help="run the cases whose name contains this")
    ap.add_argument("--base", default="", help="also time this commit's edgenet (A/B)")
    args = ap.parse_args(argv)
    import onnx
    import onnxruntime as ort

    import edgenet
    from bench.bench_dispatch import _base_package, _time
    from converters.convert import convert
    import edgenet.cpu  # noqa: F401  (edgenet._jit configures a forced tier first: _tiers.tier()
    from edgenet import _tiers  # before it would make _jit's configure() see 'generic')
    cases, (T, h) = _cases()
    print(f"CPU tier {_tiers.tier()}, load {os.getloadavg()[0]:.1f}; median ms per call "
          f"(interleaved blocks of {args.block}); ratio = edgenet / onnxruntime")
    with tempfile.TemporaryDirectory() as d:
        pkgs = [("edgenet", edgenet)]
        if args.base:
            pkgs.append(("base", _base_package(args.base, d)))
        for th in [int(t) for t in args.threads.split(",")]:
            print(f"\n== {th} thread(s) ==")
            print(f"{'op':34s} {'edgenet':>8s}" + (f" {'base':>8s}" if args.base else "")
                  + f" {'ort':>8s} {'ratio':>6s}" + (f" {'new/base':>8s}" if args.base else ""))
            for name, (nodes, shape, inits) in cases.items():
                if args.only.lower() not in name.lower():
                    continue
                g = h.make_graph(nodes, "b", [h.make_tensor_value_info("x", T.FLOAT,
                                                                        list(shape))],
                                 [h.make_tensor_value_info("y", T.FLOAT, None)],
                                 initializer=inits)
                src, dst = os.path.join(d, "m.onnx"), os.path.join(d, "m.edgenet")
                onnx.save(h.make_model(g, opset_imports=[h.make_opsetid("", 18)]), src)
                convert(src, dst, weights="f32", log=lambda *a, **k: None)
                ms = [pkg.load(dst, threads=th) for _, pkg in pkgs]
                so = ort.SessionOptions()
                so.intra_op_num_threads = th
                so.add_session_config_entry("session.intra_op.allow_spinning", "0")
                s = ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])
                x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
                want = s.run(None, {"x": x})[0]
                for m in ms:
                    np.testing.assert_allclose(m(x), want, rtol=1e-4, atol=1e-5)
                fns = [(lambda m=m: m(x)) for m in ms] + [lambda: s.run(None, {"x": x})]
                res = [1e3 * t for t in _time(fns, args.runs, args.block)]
                row = " ".join(f"{t:8.3f}" for t in res)
                extra = f" {res[0] / res[1]:8.2f}" if args.base else ""
                print(f"{name:34s} {row} {res[0] / res[-1]:6.2f}{extra}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
