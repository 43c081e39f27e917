#!/usr/bin/env python
"""int8-activation conv kernels per CPU tier: dot-product peaks and per-layer GMAC/s.

    python bench/bench_int8.py [--runs 40] [--threads 1,2] [--layers all|r18]
    EDGENET_SIMD=avx2 python bench/bench_int8.py     # codegen restricted to an AVX2 CPU

1. Peaks: register tiles of independent accumulators (2 weight vectors x P pixel
   broadcasts from L1 per step, as in the conv kernels):
   ``vpdpbusd`` (avx512vnni), ``vpmaddubsw``+``vpaddw`` (int16 accumulation, zmm and ymm),
   ``vpmaddubsw``+``vpmaddwd``+``vpaddd`` (widen every step), and the generic-IR variants.
   Only the instructions the process's codegen target has are run.
2. Layers (3x3 ResNet-18 sizes, stride 2, 1x1, the 7x7/2 stem): the full int8 conv
   (quantize + kernel) of this tier against the f32 SIMD conv of the same tier, ternary
   weights, interleaved, median ms and GMAC/s at 1 and 2 threads.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _peak(name, body, na, macs_per_op, nw=2):
    import numba
    from edgenet.cpu import simd as S
    src = ["def peak(a, b, n, out):"]
    src += body["init"](na, nw)
    src += ["    for it in range(n):"] + body["step"](na, nw)
    src += body["fin"](na)
    ns = {"S": S}
    exec("\n".join(src), ns)
    f = numba.njit(boundscheck=False)(ns["peak"])
    a, b, out = np.arange(64, dtype=np.int32), np.ones(64, np.int32), np.zeros(16, np.float32)
    f(a, b, 10, out)
    n = 1_000_000
    best = 1e9
    for _ in range(3):
        t0 = time.perf_counter()
        f(a, b, n, out)
        best = min(best, time.perf_counter() - t0)
    print(f"  {name:44s} {na * n * macs_per_op / best / 1e9:7.1f} GMAC/s per core")


def peaks():
    from edgenet.cpu import simd as S
    t = S.tier()
    print(f"peaks (tier {t}, codegen {os.environ.get('NUMBA_CPU_NAME') or 'host'}):")

    def fin_i(n):
        return lambda na: ([f"    s = S.vitof{n}(a0)"]
                           + [f"    s = S.vadd{n}(s, S.vitof{n}(a{i}))" for i in range(1, na)]
                           + [f"    S.vst{n}(out, 0, s)"])

    def dot(n, fn):
        return {"init": lambda na, nw: [f"    w{i} = S.vldi{n}(b, {n * i})" for i in range(nw)]
                + [f"    a{i} = S.vldi{n}(a, {i})" for i in range(na)],
                "step": lambda na, nw: [f"        x{p} = S.vbci{n}(a, (it + {p}) & 31)" for p in range(na // nw)]
                + [f"        a{i} = S.{fn}(a{i}, x{i // nw}, w{i % nw})" for i in range(na)],
                "fin": fin_i(n)}

    def pm16(n, mad, wid, widen_every_step):
        init = lambda na, nw: ([f"    w{i} = S.vldi{n}(b, {n * i})" for i in range(nw)]  # noqa: E731
                               + [f"    a{i} = S.vldi{n}(a, {i})" for i in range(na)]
                               + [f"    h{i} = S.{mad}(S.vbci{n}(a, {i}), w0)" for i in range(na)])
        if widen_every_step:
            step = lambda na, nw: ([f"        x{p} = S.vbci{n}(a, (it + {p}) & 31)" for p in range(na // nw)]  # noqa: E731
                                   + [f"        a{i} = S.{wid}(a{i}, S.{mad}(x{i // nw}, w{i % nw}))"
                                      for i in range(na)])
        else:
            step = lambda na, nw: ([f"        x{p} = S.vbci{n}(a, (it + {p}) & 31)" for p in range(na // nw)]  # noqa: E731
                                   + [f"        h{i} = S.vaddw{n}(h{i}, S.{mad}(x{i // nw}, w{i % nw}))"
                                      for i in range(na)])
        fin = lambda na: ([f"    a{i} = S.{wid}(a{i}, h{i})" for i in range(na)]  # noqa: E731
                          + fin_i(n)(na))
        return {"init": init, "step": step, "fin": fin}
    x86 = S.rank(S.codegen_tier())
    if x86 <= S.rank("avx512vnni"):
        _peak("avx512vnni vpdpbusd zmm (24 acc)", dot(16, "vdpbusd16"), 24, 64)
    if x86 <= S.rank("avx512"):
        _peak("avx512 vpmaddubsw+vpaddw zmm, i16 acc (24)", pm16(16, "vmaddubs16", "vwiden16", False), 24, 64)
        _peak("avx512 vpmaddubsw+vpmaddwd+vpaddd zmm (24)", pm16(16, "vmaddubs16", "vwiden16", True), 24, 64)
    if x86 <= S.rank("avx2"):
        _peak("avx2 vpmaddubsw+vpaddw ymm, i16 acc (12)", pm16(8, "vmaddubs8", "vwiden8", False), 12, 32)
        _peak("avx2 vpmaddubsw+vpmaddwd+vpaddd ymm (12)", pm16(8, "vmaddubs8", "vwiden8", True), 12, 32)
    _peak("generic maddubs+add IR, 8 lanes, i16 acc (12)", pm16(8, "vmaddubs8g", "vwiden8g", False), 12, 32)
    _peak("generic i32 dot IR, 8 lanes (12)", dot(8, "vdpbusd8g"), 12, 32)


LAYERS = {  # name -> C, O, H, k, stride, pad
    "3x3 64@56": (64, 64, 56, 3, 1, 1), "3x3 128@28": (128, 128, 28, 3, 1, 1),
    "3x3 256@14": (256, 256, 14, 3, 1, 1), "3x3 512@7": (512, 512, 7, 3, 1, 1),
    "3x3/2 64->128@56": (64, 128, 56, 3, 2, 1), "1x1 64->256@56": (64, 256, 56, 1, 1, 0),
    "1x1 256->64@56": (256, 64, 56, 1, 1, 0), "1x1 96->576@14": (96, 576, 14, 1, 1, 0),
    "7x7/2 3->64@224": (3, 64, 224, 7, 2, 3)}


class _W:
    """A ternary weight constant as edgenet.format hands it to the kernels."""
    quantized = True

    def __init__(self, lev, shape):
        self.lev, self.shape = lev, shape
        self.scale = np.full(shape[0], 0.05, np.float32)
        self.enc = 3

    def levels(self):
        return self.lev


def layers(runs, threads, names, widen1=False):
    import numba
    from edgenet import cpu
    from edgenet.cpu import qconv, simd
    from edgenet.format import pack
    rng = np.random.default_rng(0)
    print(f"layers (tier {simd.tier()}): median/min ms (GMAC/s at the min: the box is shared), "
          f"int8 (quantize included) vs f32, ternary weights, threads {threads}")
    for name in names:
        C, O, H, K, S, PD = LAYERS[name]
        lev = rng.integers(-1, 2, (O, C, K, K)).astype(np.int8)
        OW = (H + 2 * PD - K) // S + 1
        x = np.abs(rng.normal(0, 1, (1, C, H, H))).astype(np.float32)
        node = {"name": "c", "op": "Conv", "inputs": ["x", "w", "b"], "outputs": ["y"],
                "attrs": {"strides": [S, S], "pads": [PD] * 4, "dilations": [1, 1], "group": 1,
                          "activation": None}}
        consts = {"w": pack("t2", lev, np.full(O, 0.05, np.float32)),
                  "b": pack("f32", np.zeros(O, np.float32))}
        st32 = cpu.OPS["Conv"].prepare(node, consts, "expanded")
        st8 = cpu.OPS["Conv"].prepare(dict(node, _aq=(0.02, 0, OW)), consts, "expanded")
        y = np.empty((1, O, OW, OW), np.float32)
        calls = {"int8": lambda: cpu.OPS["Conv"].run(node, st8, [x, None, None], [y]),
                 "f32": lambda: cpu.OPS["Conv"].run(node, st32, [x, None, None], [y])}
        if st8["q"]["fam"] != "v" and widen1:
            # the same kernel widening int16 -> int32 after every step (smax = 1): what the
            # int16 accumulation saves
            st1 = dict(st8, q=dict(st8["q"], smax=1))
            calls["int8 widen/step"] = lambda: cpu.OPS["Conv"].run(node, st1, [x, None, None], [y])
        ts = {(k, t): [] for k in calls for t in threads}
        for (k, t) in ts:
            numba.set_num_threads(min(t, numba.config.NUMBA_NUM_THREADS))
            calls[k]()
        for _ in range(runs):
            for (k, t) in ts:
                numba.set_num_threads(min(t, numba.config.NUMBA_NUM_THREADS))
                t0 = time.perf_counter()
                calls[k]()
                ts[(k, t)].append(time.perf_counter() - t0)
        macs = O * C * K * K * OW * OW
        q = st8["q"]
        cells = [f"{k} t{t} {1e3 * np.median(v):.3f}/{1e3 * np.min(v):.3f} "
                 f"({macs / np.min(v) / 1e9:.0f})" for (k, t), v in ts.items()]
        print(f"  {name:18s} [{q['kern']}]: " + "  ".join(cells), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--layers", default="all")
    ap.add_argument("--no-peaks", action="store_true")
    ap.add_argument("--widen1", action="store_true",
                    help="also time the pm/g kernels widening after every step")
    a = ap.parse_args()
    if not a.no_peaks:
        peaks()
    names = list(LAYERS) if a.layers == "all" else a.layers.split(",")
    if names and names != ["none"]:
        layers(a.runs, [int(t) for t in a.threads.split(",")], names, a.widen1)


if __name__ == "__main__":
    main()
