#!/usr/bin/env python
"""CPU time of ONNX Resize modes: edgenet (one-op model, f32) vs onnxruntime on the same
ONNX graph, same thread count, interleaved runs, medians, and the largest difference.
"edgenet ms" is the whole call; "op ms" the Resize node alone (run(profile=...)): the
call adds the copy of the returned output (run() returns fresh arrays), ~0.5 ms for the
6.5 MB of a 1x64x160x160 output on a fresh allocation. onnxruntime runs with
session.intra_op.allow_spinning=0.

    python bench/bench_resize.py [--threads 2] [--runs 30] [--shape 1,64,80,80] [--only SUBSTRING]
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

CASES = {   # name: (Resize attributes, scales for H and W)
    "nearest x2": (dict(mode="nearest", nearest_mode="floor",
                        coordinate_transformation_mode="asymmetric"), (2, 2)),
    "linear x2": (dict(mode="linear"), (2, 2)),
    "cubic x2": (dict(mode="cubic"), (2, 2)),
    "linear x0.5": (dict(mode="linear"), (0.5, 0.5)),
    "linear antialias x0.5": (dict(mode="linear", antialias=1), (0.5, 0.5)),
    "cubic antialias x0.5": (dict(mode="cubic", antialias=1), (0.5, 0.5)),
}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--shape", default="1,64,80,80")
    ap.add_argument("--only", default="", help="run the cases whose name contains this")
    a = ap.parse_args(argv)
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto as T
    from onnx import helper as h
    from onnx import numpy_helper as nh

    import edgenet
    from converters.convert import convert

    shape = [int(v) for v in a.shape.split(",")]
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    print(f"{'case':24s} {'edgenet ms':>10s} {'op ms':>7s} {'ort ms':>8s} {'ratio':>6s} "
          f"{'op/ort':>6s} {'max diff':>9s}")
    with tempfile.TemporaryDirectory() as d:
        for name, (attrs, (sh, sw)) in CASES.items():
            if a.only not in name:
                continue
            g = h.make_graph([h.make_node("Resize", ["x", "", "sc"], ["y"], **attrs)], "g",
                             [h.make_tensor_value_info("x", T.FLOAT, shape)],
                             [h.make_tensor_value_info("y", T.FLOAT, None)],
                             [nh.from_array(np.array([1, 1, sh, sw], np.float32), "sc")])
            src, dst = os.path.join(d, "m.onnx"), os.path.join(d, "m.edgenet")
            onnx.save(h.make_model(g, opset_imports=[h.make_opsetid("", 19)]), src)
            convert(src, dst, weights="f32")
            so = ort.SessionOptions()
            so.intra_op_num_threads = a.threads
            so.add_session_config_entry("session.intra_op.allow_spinning", "0")
            sess = ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])
            m = edgenet.load(dst, threads=a.threads)
            diff = float(np.abs(m(x) - sess.run(None, {"x": x})[0]).max())
            te, tn, to = [], [], []
            for _ in range(a.runs):
                prof = {}
                t = time.perf_counter()
                m.run({"x": x}, profile=prof)
                te.append(time.perf_counter() - t)
                tn.append(sum(prof.values()))
                t = time.perf_counter()
                sess.run(None, {"x": x})
                to.append(time.perf_counter() - t)
            e, n, o = np.median(te) * 1e3, np.median(tn) * 1e3, np.median(to) * 1e3
            print(f"{name:24s} {e:10.3f} {n:7.3f} {o:8.3f} {e / o:6.2f} {n / o:6.2f} "
                  f"{diff:9.1e}")


if __name__ == "__main__":
    main()
