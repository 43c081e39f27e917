#!/usr/bin/env python
"""Bound steps on / off (edgenet/runtime.py BIND, docs/PERFORMANCE.md "Bound steps"): the
same loaded model timed with the executor's bound calls and with every step through its
op's run(), interleaved in one process (blocks of 5 runs each way), medians.

    python bench/bench_bind.py [--threads 1] [--rounds 40] [--models DIR]

Reads the harness's converted files (bench/models_cache: ``python bench/harness.py``
writes them): ResNet-20, MobileNetV3-small, MobileNetV2 (f32 and ternary + int8 auto),
ResNet-18 (ternary + int8 auto).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

CASES = [("resnet20", "ternary-a8", "auto"), ("resnet20", "f32", "f32"),
         ("mobilenetv3_small", "ternary-a8", "auto"), ("mobilenetv3_small", "f32", "f32"),
         ("mobilenetv2", "ternary-a8", "auto"), ("mobilenetv2", "f32", "f32"),
         ("resnet18", "ternary-a8", "auto")]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--models", default=os.path.join(REPO, "bench", "models_cache"))
    a = ap.parse_args(argv)
    import edgenet
    import edgenet.runtime as rt
    from edgenet.cpu import simd
    print(f"CPU tier {simd.simd_mode()}, {a.threads} thread(s); ms per call, medians")
    for name, var, act in CASES:
        path = os.path.join(a.models, f"{name}.{var}.edgenet")
        if not os.path.exists(path):
            print(f"{name} {var}: {path} missing (run bench/harness.py first)")
            continue
        m = edgenet.load(path, threads=a.threads, activations=act)
        x = np.random.default_rng(0).standard_normal(m.inputs[0].shape[1:]).astype(
            np.float32)[None]
        feeds = {m.inputs[0].name: x}
        for _ in range(5):
            m.run(feeds)
        ts = {True: [], False: []}
        try:
            for _ in range(a.rounds):
                for bound in (True, False):
                    rt.BIND = bound
                    for _ in range(5):
                        t = time.perf_counter()
                        m.run(feeds)
                        ts[bound].append(time.perf_counter() - t)
        finally:
            rt.BIND = True
        on, off = (float(np.median(ts[b])) * 1e3 for b in (True, False))
        print(f"{name:18s} {var}:{act:5s} bound {on:7.3f}  unbound {off:7.3f}  "
              f"ratio {on / off:.3f}", flush=True)


if __name__ == "__main__":
    main()
