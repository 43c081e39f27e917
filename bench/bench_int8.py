#!/usr/bin/env python
"""int8-activation conv kernels: the vpdpbusd peak of this core, and per-layer timings.

    python bench/bench_int8.py [--runs 40]

1. Peak: a register-only loop of 24 independent ``vpdpbusd`` accumulators (no memory
   operands but one broadcast per step): G instructions/s and GMAC/s per core.
2. Layers (3x3, ResNet-18 sizes + stride 2 + the 7x7/2 stem): the full int8 conv
   (quantize + kernel) at 1 and 2 threads, interleaved, median ms and GMAC/s.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def peak():
    import numba
    from edgenet.cpu import simd as S
    na = 24
    src = ["def peak(a, b, n, out):", "    w0 = S.vldi16(b, 0)", "    w1 = S.vldi16(b, 16)"]
    src += [f"    a{i} = S.vzeroi16()" for i in range(na)]
    src += ["    for it in range(n):", "        x = S.vbci16(a, it & 7)"]
    src += [f"        a{i} = S.vdpbusd16(a{i}, x, w{i % 2})" for i in range(na)]
    src += ["    s = S.vitof16(a0)"] + [f"    s = S.vadd16(s, S.vitof16(a{i}))" for i in range(1, na)]
    src += ["    S.vst16(out, 0, s)"]
    ns = {"S": S}
    exec("\n".join(src), ns)
    f = numba.njit(boundscheck=False)(ns["peak"])
    a, b, out = np.ones(16, np.int32), np.ones(64, np.int32), np.zeros(16, np.float32)
    f(a, b, 10, out)
    n = 2_000_000
    t0 = time.perf_counter()
    f(a, b, n, out)
    dt = time.perf_counter() - t0
    print(f"vpdpbusd peak: {na * n / dt / 1e9:.2f} G/s = {na * n * 64 / dt / 1e9:.0f} GMAC/s per core")


LAYERS = [  # C, O, H, k, stride, pad
    (64, 64, 56, 3, 1, 1), (128, 128, 28, 3, 1, 1), (256, 256, 14, 3, 1, 1),
    (512, 512, 7, 3, 1, 1), (64, 128, 56, 3, 2, 1), (3, 64, 224, 7, 2, 3)]


def layers(runs):
    import numba
    from edgenet.cpu import qconv
    rng = np.random.default_rng(0)
    dummy = np.zeros((1, 1, 1, 1), np.float32)
    print(f"vnni={qconv.has_vnni()}  layer: median ms (GMAC/s) at 1 / 2 threads, quantize included")
    for C, O, H, K, S, PD in LAYERS:
        lev = rng.integers(-1, 2, (O, C * K * K)).astype(np.int8)

        class W:
            quantized = True
            shape = (O, C, K, K)
            scale = np.full(O, 0.05, np.float32)

            def levels(self):
                return lev
        OW = (H + 2 * PD - K) // S + 1
        q = qconv.prepare(W(), O, C, K, K, np.zeros(O, np.float32), (0.02, 0, OW), OW)
        x = np.abs(rng.normal(0, 1, (1, C, H, H))).astype(np.float32)
        y = np.empty((1, O, OW, OW), np.float32)
        Wp = H + 2 * PD
        toff = np.array([ky * Wp + kx for ky in range(K) for kx in range(K)], np.int64)
        params = (S, S, PD, PD, PD, PD, 1, 1, 1)

        def f():
            qconv.run(x, y, q, params, toff, None, True, dummy, False, 1, np.float32(0),
                      np.float32(0))
        ts = {1: [], 2: []}
        for t in ts:
            numba.set_num_threads(min(t, numba.config.NUMBA_NUM_THREADS))
            f()
        for _ in range(runs):
            for t in ts:
                numba.set_num_threads(min(t, numba.config.NUMBA_NUM_THREADS))
                t0 = time.perf_counter()
                f()
                ts[t].append(time.perf_counter() - t0)
        macs = O * C * K * K * OW * OW
        cells = [f"{1e3 * np.median(v):.3f} ({macs / np.median(v) / 1e9:.0f})" for v in ts.values()]
        print(f"  {K}x{K}/{S} {C:3d}->{O:3d} @{H:3d} (k={q['k']}, P={q['P']}): " + " / ".join(cells))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--runs", type=int, default=40)
    a = ap.parse_args()
    peak()
    layers(a.runs)


if __name__ == "__main__":
    main()
