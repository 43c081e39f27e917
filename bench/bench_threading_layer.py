"""numba's threading layers compared on edgenet models (docs/PERFORMANCE.md, "Threading
layer: OpenMP even where tbb loads").

One process per (model, layer) measurement, the layers alternating, ``--pairs`` times:

    python bench/bench_threading_layer.py --models resnet20,mobilenetv2 --pairs 3

Each child imports OpenVINO first when it is installed (it brings its own libtbb, so both
``tbb`` and ``omp`` can load, as in a user's process with OpenVINO in it), loads
``bench/models_cache/NAME.W.edgenet`` (``bench/models.py`` writes them) at 2 threads, runs it
20 times untimed, then times 300 runs alone and prints the median. Prints each pair's
omp ÷ tbb. Without a loadable TBB runtime the tbb children fail and are reported as such.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHILD = r"""
import sys, time, numpy as np
try:
    import openvino  # noqa: F401
except Exception:
    pass
import numba, edgenet
path, acts, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
m = edgenet.load(path, threads=threads, activations=acts)
shape = tuple(1 if d is None else d for d in m.inputs[0].shape)
x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
for _ in range(20):
    m(x)
t = []
for _ in range(300):
    t0 = time.perf_counter(); m(x); t.append(time.perf_counter() - t0)
print(numba.threading_layer(), float(np.median(t)) * 1e3)
"""


def one(path, acts, threads, layer):
    env = {**os.environ, "NUMBA_THREADING_LAYER": layer, "PYTHONPATH": ROOT}
    r = subprocess.run([sys.executable, "-c", CHILD, path, acts, str(threads)],
                       capture_output=True, text=True, env=env, timeout=900)
    out = r.stdout.split()
    if r.returncode != 0 or len(out) != 2 or out[0] != layer:
        return None
    return float(out[1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="resnet18,resnet20,mobilenetv2,mobilenetv3_small")
    ap.add_argument("--variants", default="ternary-a8:auto,f32:f32",
                    help="WEIGHTS:ACTIVATIONS pairs (the .edgenet file, activations=)")
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    for name in a.models.split(","):
        for v in a.variants.split(","):
            w, acts = v.split(":")
            path = os.path.join(ROOT, "bench", "models_cache", f"{name}.{w}.edgenet")
            if not os.path.exists(path):
                print(f"{name} {v}: no {path} (bench/models.py writes it)")
                continue
            rows = [(one(path, acts, a.threads, "tbb"), one(path, acts, a.threads, "omp"))
                    for _ in range(a.pairs)]
            txt = ", ".join("tbb failed" if t is None or o is None else
                            f"tbb {t:.3f} omp {o:.3f} ms ({o / t:.2f})" for t, o in rows)
            print(f"{name} {v}: {txt}")


if __name__ == "__main__":
    main()
