#!/usr/bin/env python
"""The executor's per-call and per-op cost at batch 1 (issue 12 item 5), edgenet vs
onnxruntime, interleaved in one process, medians.

    python bench/bench_dispatch.py [--threads 1,2] [--runs 200] [--models DIR]
    python bench/bench_dispatch.py --base b68adc8      # A/B: that commit's edgenet package too

- **fixed**: one tiny Relu (1x4x4x4): what a call costs with next to no work.
- **per op**: chains of 1 and 65 tiny nodes of one kind (Relu, Add of a constant, 1x1 Conv
  4->4, Reshape, ReduceMean, Exp); (t65 - t1) / 64 is the cost of one more node.
- **models**: ResNet-20 and MobileNetV3-small (bench/models.py; exported and converted to
  f32 into --models DIR when missing): ms per call, nodes, and the executor's own time
  outside the ops (call time minus the summed per-node profile).

``--base COMMIT`` extracts that commit's ``edgenet/`` as a package ``edgenet_base`` (git
archive into a temporary directory) and times it interleaved with the working tree's, so
before/after ratios come from the same process and the same load. onnxruntime runs with
``session.intra_op.allow_spinning=0``. Under a forced tier (``EDGENET_SIMD``) the second
package's import re-targets Numba and the Conv cases refuse to load: there, run ``--base``
with ``--only fixed,chain --kinds Relu,Add,Reshape,ReduceMean,Exp``.
"""
from __future__ import annotations

import argparse
import importlib
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

CHAIN = 65
TINY = (1, 4, 4, 4)


def _chain(kind, n):
    """ONNX graph of n nodes of one kind on a tiny tensor; returns (graph, input shape)."""
    from onnx import TensorProto as T
    from onnx import helper as h
    from onnx import numpy_helper as nh
    nodes, inits = [], []
    for i in range(n):
        a, b = ("x" if i == 0 else f"t{i - 1}"), ("y" if i == n - 1 else f"t{i}")
        if kind == "Relu":
            nodes.append(h.make_node("Relu", [a], [b]))
        elif kind == "Exp":
            nodes.append(h.make_node("Exp", [a], [b]))
        elif kind == "Add":
            inits.append(nh.from_array(np.full(TINY[1:], 0.5, np.float32), f"c{i}"))
            nodes.append(h.make_node("Add", [a, f"c{i}"], [b]))
        elif kind == "Conv1x1":
            w = np.random.default_rng(i).standard_normal((4, 4, 1, 1)).astype(np.float32) * .5
            inits.append(nh.from_array(w, f"w{i}"))
            nodes.append(h.make_node("Conv", [a, f"w{i}"], [b]))
        elif kind == "Reshape":
            shp = (1, 64) if i % 2 == 0 else TINY
            if i == n - 1:
                shp = TINY
            inits.append(nh.from_array(np.array(shp, np.int64), f"s{i}"))
            nodes.append(h.make_node("Reshape", [a, f"s{i}"], [b]))
        elif kind == "ReduceMean":   # keepdims over W then a broadcast Add back: 2 nodes/step
            inits.append(nh.from_array(np.array([3], np.int64), f"ax{i}"))
            nodes.append(h.make_node("ReduceMean", [a, f"ax{i}"], [f"m{i}"]))
            nodes.append(h.make_node("Sub", [a, f"m{i}"], [b]))
        else:
            raise ValueError(kind)
    g = h.make_graph(nodes, kind, [h.make_tensor_value_info("x", T.FLOAT, list(TINY))],
                     [h.make_tensor_value_info("y", T.FLOAT, None)], initializer=inits)
    return h.make_model(g, opset_imports=[h.make_opsetid("", 18)])


def _ort(src, threads):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])


def _base_package(commit, tmp):
    """That commit's edgenet/ as an importable package ``edgenet_base``."""
    dst = os.path.join(tmp, "base")
    os.makedirs(dst)
    arch = subprocess.run(["git", "-C", REPO, "archive", commit, "edgenet"], check=True,
                          capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", dst], input=arch, check=True)
    os.rename(os.path.join(dst, "edgenet"), os.path.join(dst, "edgenet_base"))
    sys.path.insert(0, dst)
    return importlib.import_module("edgenet_base")


def _time(fns, runs, block=10):
    """Interleaved blocks of `block` calls per engine; median seconds per call of each."""
    ts = [[] for _ in fns]
    for _ in range(max(1, runs // block)):
        for k, f in enumerate(fns):
            for _ in range(block):
                t0 = time.perf_counter()
                f()
                ts[k].append(time.perf_counter() - t0)
    return [float(np.median(t)) for t in ts]


def _engines(src, dst, threads, pkgs):
    """name -> zero-argument call, for every edgenet package and onnxruntime."""
    import onnx
    shape = [d.dim_value or 1 for d in
             onnx.load(src, load_external_data=False).graph.input[0].type.tensor_type.shape.dim]
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    out = {}
    for label, pkg in pkgs:
        m = pkg.load(dst, threads=threads)
        name = m.inputs[0].name
        m.run({name: x})
        out[label] = (lambda m=m, name=name: m.run({name: x}), m, {name: x})
    s = _ort(src, threads)
    iname = s.get_inputs()[0].name
    s.run(None, {iname: x})
    out["onnxruntime"] = (lambda: s.run(None, {iname: x}), None, None)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--base", default="", help="also time this commit's edgenet (A/B)")
    ap.add_argument("--models", default=os.path.join(REPO, "bench", "models_cache"),
                    help="directory of the exported bench models")
    ap.add_argument("--only", default="", help="fixed,chain,models (comma list)")
    ap.add_argument("--kinds", default="Relu,Add,Conv1x1,Reshape,ReduceMean,Exp")
    args = ap.parse_args(argv)
    import onnx

    import edgenet
    from converters.convert import convert
    import edgenet.cpu  # noqa: F401  (edgenet._jit configures a forced tier first: _tiers.tier()
    from edgenet import _tiers  # before it would make _jit's configure() see 'generic')
    only = set(args.only.split(",")) if args.only else {"fixed", "chain", "models"}
    print(f"CPU tier {_tiers.tier()}, load {os.getloadavg()[0]:.1f}", flush=True)
    with tempfile.TemporaryDirectory() as d:
        pkgs = [("edgenet", edgenet)]
        if args.base:
            pkgs.append((f"base {args.base}", _base_package(args.base, d)))
        labels = [p[0] for p in pkgs] + ["onnxruntime"]
        hdr = " ".join(f"{lb[:16]:>16s}" for lb in labels)
        for th in [int(t) for t in args.threads.split(",")]:
            print(f"\n== {th} thread(s); µs per call (median of interleaved blocks) ==")
            print(f"{'case':28s} {hdr}" + ("  new/base" if args.base else "") + "  new/ort")
            rows = []
            if "fixed" in only:
                rows.append(("fixed: 1 tiny Relu", ("Relu", 1)))
            if "chain" in only:
                for kind in args.kinds.split(","):
                    rows.append((f"per op: {kind}", (kind, None)))
            for title, (kind, n) in rows:
                res = []
                for nn in ([n] if n else [1, CHAIN]):
                    src = os.path.join(d, f"{kind}{nn}.onnx")
                    dst = src[:-5] + ".edgenet"
                    if not os.path.exists(dst):
                        onnx.save(_chain(kind, nn), src)
                        convert(src, dst, weights="f32")
                    eng = _engines(src, dst, th, pkgs)
                    res.append(_time([f for f, _, _ in eng.values()], args.runs))
                if n is None:   # slope: one more node
                    nodes = 2 if kind == "ReduceMean" else 1
                    res = [(b - a) / ((CHAIN - 1) * nodes) for a, b in zip(*res)]
                else:
                    res = res[0]
                _row(title, res, args.base)
            if "models" in only:
                for mname in ("resnet20", "mobilenetv3_small"):
                    src = os.path.join(args.models, mname + ".onnx")
                    if not os.path.exists(src):
                        subprocess.run([sys.executable, os.path.join(REPO, "bench",
                                        "models.py"), "--out", args.models, mname], check=True)
                    dst = os.path.join(args.models, mname + ".f32.edgenet")
                    if not os.path.exists(dst):
                        convert(src, dst, weights="f32")
                    eng = _engines(src, dst, th, pkgs)
                    res = _time([f for f, _, _ in eng.values()], max(20, args.runs // 4))
                    _row(f"{mname} (call)", res, args.base)
                    for label, (f, m, feeds) in eng.items():
                        if m is None:
                            continue
                        prof, k = {}, 30
                        t0 = time.perf_counter()
                        for _ in range(k):
                            m.run(feeds, profile=prof)
                        wall = (time.perf_counter() - t0) / k
                        ops = sum(prof.values()) / k
                        print(f"  {label:22s} {len(m.graph['nodes'])} nodes; outside the ops "
                              f"{1e6 * (wall - ops):.0f} µs per call (profiled run "
                              f"{1e3 * wall:.3f} ms)")
    return 0


def _row(title, res, base):
    cells = " ".join(f"{1e6 * r:16.2f}" for r in res)
    extra = f"  {res[0] / res[1]:8.2f}" if base else ""
    print(f"{title:28s} {cells}{extra}  {res[0] / res[-1]:7.2f}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
