#!/usr/bin/env python
"""In-process A/B of module settings: one model file loaded twice in one process, A with
the settings as they are and B with ``--set module.NAME=VALUE`` applied while it loads and
runs, then alternating runs: medians and the per-run ratio B / A. This is how the kernel
rules in docs/PERFORMANCE.md were decided: the host's speed swings between phases minutes
apart, so only versions timed in the same moments compare.

    python bench/ab_settings.py bench/models_cache/resnet18.ternary-a8.edgenet \\
        --set edgenet.cpu.qconv.AMX_S2=False [--threads 2] [--runs 300] [--per-node]

``--per-node`` times every node as well (``Model.run(profile=...)``, which runs without
adaptive threads) and lists those whose medians differ by more than 10 %. The outputs of
A and B are compared first (max |diff|).
"""
from __future__ import annotations

import argparse
import ast
import importlib
import os
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)


def parse_set(items):
    """['pkg.mod.NAME=VALUE', ...] -> [(module, NAME, value)] (VALUE a Python literal)."""
    out = []
    for it in items:
        lhs, sep, rhs = it.partition("=")
        mod, dot, name = lhs.strip().rpartition(".")
        if not (sep and dot):
            raise SystemExit(f"--set {it!r}: expected module.NAME=VALUE")
        m = importlib.import_module(mod)
        if not hasattr(m, name):
            raise SystemExit(f"--set {it!r}: {mod} has no {name}")
        out.append((m, name, ast.literal_eval(rhs.strip())))
    return out


class Patched:
    """Context: the settings applied, then restored."""

    def __init__(self, sets):
        self.sets = sets
        self.saved = []

    def __enter__(self):
        self.saved = [(m, k, getattr(m, k)) for m, k, _ in self.sets]
        for m, k, v in self.sets:
            setattr(m, k, v)

    def __exit__(self, *exc):
        for m, k, v in self.saved:
            setattr(m, k, v)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--set", action="append", default=[], metavar="module.NAME=VALUE")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=30)
    ap.add_argument("--per-node", action="store_true")
    a = ap.parse_args()
    import edgenet
    sets = parse_set(a.set)
    patch = Patched(sets)
    A = edgenet.load(a.model, threads=a.threads)
    with patch:
        B = edgenet.load(a.model, threads=a.threads)
    shape = (1,) + tuple(A.inputs[0].shape[1:])
    feeds = {A.inputs[0].name: np.random.default_rng(0).standard_normal(shape)
             .astype(np.float32)}
    for _ in range(a.warmup):
        ra = A.run(feeds)
        with patch:
            rb = B.run(feeds)
    diff = max(float(np.abs(ra[k] - rb[k]).max()) for k in ra)
    ta, tb, pa, pb = [], [], [], []
    for _ in range(a.runs):
        t = time.perf_counter()
        A.run(feeds)
        ta.append(time.perf_counter() - t)
        with patch:
            t = time.perf_counter()
            B.run(feeds)
            tb.append(time.perf_counter() - t)
        if a.per_node:
            pa.append({})
            A.run(feeds, profile=pa[-1])
            pb.append({})
            with patch:
                B.run(feeds, profile=pb[-1])
    ta, tb = np.array(ta), np.array(tb)
    print(f"{os.path.basename(a.model)}, {a.threads} threads, {a.runs} alternating runs; "
          f"B: {' '.join(a.set) or '(as A)'}")
    print(f"outputs: max |A - B| = {diff:.3g}")
    print(f"A {np.median(ta) * 1e3:.3f} ms, B {np.median(tb) * 1e3:.3f} ms, "
          f"B / A: {np.median(tb) / np.median(ta):.3f} (medians), "
          f"{np.median(tb / ta):.3f} (per run)")
    if a.per_node:
        for k in pa[0]:
            ma = np.median([p[k] for p in pa])
            mb = np.median([p.get(k, np.nan) for p in pb])
            if abs(mb / ma - 1) > 0.1:
                print(f"  {k[1]:10s} {k[0]:50s} A {ma * 1e6:8.1f} us  B {mb * 1e6:8.1f} us"
                      f"  {mb / ma:.3f}")


if __name__ == "__main__":
    main()
