"""int8 depthwise convs on and off, interleaved in one process (docs/PERFORMANCE.md, "int8
depthwise"): the same calibrated file loaded twice with activations="auto", once with every
depthwise conv in int8 (quant.DW_INT8_RATIO forced low on every tier) and once with them
f32 (the rule emptied); everything else as auto picks it. Median ms and the ratio.

    python bench/bench_int8_dw.py [--models mobilenetv2,mobilenetv3_small] [--threads 1]
        [--rounds 30]         (EDGENET_SIMD=avx2 etc. forces a tier)
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="mobilenetv2,mobilenetv3_small")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=30)
    a = ap.parse_args()
    import harness
    import edgenet
    from edgenet import quant, _tiers
    print(f"# {harness.cpu_model()}, tier {_tiers.tier()}, {a.threads} thread(s)")
    for name in a.models.split(","):
        p = harness.edgenet_path(name, "ternary-a8")
        saved = dict(quant.DW_INT8_RATIO)
        try:
            quant.DW_INT8_RATIO.update({t: 0.0 for t in ("avx512vnni", "avx512", "avx2",
                                                          "generic")})
            on = edgenet.load(p, threads=a.threads)
            quant.DW_INT8_RATIO.clear()
            off = edgenet.load(p, threads=a.threads)
        finally:
            quant.DW_INT8_RATIO.clear()
            quant.DW_INT8_RATIO.update(saved)
        x = np.random.default_rng(0).standard_normal(on.inputs[0].shape[1:]).astype(np.float32)
        x = x[None]
        y1, y0 = on(x), off(x)
        fs = {"int8 depthwise": lambda: on(x), "f32 depthwise": lambda: off(x)}
        for f in fs.values():
            for _ in range(10):
                f()
        ts = {k: [] for k in fs}
        for _ in range(a.rounds):
            for k, f in fs.items():
                for _ in range(5):
                    t = time.perf_counter()
                    f()
                    ts[k].append(time.perf_counter() - t)
        m = {k: float(np.median(v)) * 1e3 for k, v in ts.items()}
        print(f"{name}: int8 convs {on.int8_convs} vs {off.int8_convs}; int8 depthwise "
              f"{m['int8 depthwise']:.3f} ms, f32 depthwise {m['f32 depthwise']:.3f} ms, ratio "
              f"{m['int8 depthwise'] / m['f32 depthwise']:.3f}; same top-1 "
              f"{int(y1.argmax()) == int(y0.argmax())}, max |diff| / max |y| "
              f"{float(np.abs(y1 - y0).max() / np.abs(y0).max()):.1e}")


if __name__ == "__main__":
    main()
