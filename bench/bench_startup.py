"""Startup benchmark: time to the first answer from an empty compile cache.

    python bench/bench_startup.py [--work DIR] [--models resnet20,resnet18] [--no-all]

Every measurement is a fresh process (``python -m edgenet ...``) with its own
``EDGENET_CACHE_DIR``; the figures are the process's wall time (imports, load, compile or
cache load, the run, exit), its CPU time (user + system, all threads: on a shared machine
the steadier figure, since compilation is single-threaded and wall time there is mostly
waiting for a core) and the number of kernels it compiled (``EDGENET_COMPILE_STATS``).

1. README main job (``python -m edgenet run``) on an empty cache, then again (warm).
2. An unseen ResNet-20-size model (tests/fixtures/resnet20.onnx, ternary) on the cache the
   README job left, and on an empty cache.
3. ``warmup --all`` (``edgenet.cpu.warm.warmup()``) on an empty cache, then the first run of
   each bench model on that cache (should compile nothing).

Goals (issue 15): README cold <= 15 s, warm <= 1.0 s; warmup --all <= 120 s; a model after
warmup <= 2 s, compiling nothing; an unseen ResNet-20-size model <= 5 s.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


PYTHON = sys.executable    # --python: e.g. a quick-start venv's (pip install -e .) interpreter


def run(args, cache, label, timeout=1800):
    env = dict(os.environ, EDGENET_CACHE_DIR=cache, EDGENET_COMPILE_STATS="1",
               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("NUMBA_CACHE_DIR", None)
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    r = subprocess.run([PYTHON, *args], env=env, capture_output=True, text=True,
                       timeout=timeout, cwd=ROOT)
    wall = time.perf_counter() - t0
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    if r.returncode != 0:
        raise SystemExit(f"{label}: exit {r.returncode}\n{r.stderr[-2000:]}")
    stats = {}
    for line in r.stderr.splitlines():
        if line.startswith("edgenet-compile-stats "):
            stats = json.loads(line.split(" ", 1)[1])
    row = {"step": label, "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
           "compiled": stats.get("compiled"), "compile_s": stats.get("seconds")}
    print(f"| {label:44s} | {wall:7.2f} | {cpu:7.2f} | {str(stats.get('compiled')):>8s} |",
          flush=True)
    return row


def convert(onnx_path, dst):
    if not os.path.exists(dst):
        subprocess.run([sys.executable, "-m", "edgenet", "convert", onnx_path, "-o", dst,
                        "--weights", "ternary"], check=True, capture_output=True, cwd=ROOT)
    import edgenet
    m = edgenet.load(dst, device="reference")
    shape = [1 if d is None or isinstance(d, str) else d for d in m.inputs[0].shape]
    x = np.random.default_rng(0).uniform(-1, 1, size=shape).astype(np.float32)
    xp = dst[:-len(".edgenet")] + ".x.npy"
    np.save(xp, x)
    return dst, xp


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default=None, help="scratch folder (default: a temp dir)")
    ap.add_argument("--models", default="resnet20,resnet18",
                    help="bench models for the after-warmup runs (resnet20 = the fixture)")
    ap.add_argument("--no-all", action="store_true", help="skip warmup --all and its runs")
    ap.add_argument("--only-all", action="store_true", help="only warmup --all and its runs")
    ap.add_argument("--json", default=None, help="write the rows here")
    ap.add_argument("--python", default=None,
                    help="interpreter for the measured processes (default: this one); e.g. a "
                         "quick-start venv's, where numba does not import scipy (~0.35 s)")
    a = ap.parse_args()
    global PYTHON
    PYTHON = a.python or sys.executable
    work = a.work or tempfile.mkdtemp(prefix="edgenet-startup-")
    os.makedirs(work, exist_ok=True)
    models = {}
    for name in a.models.split(","):
        if name == "resnet20":
            src = os.path.join(ROOT, "tests", "fixtures", "resnet20.onnx")
        else:
            src = os.path.join(work, f"{name}.onnx")
            if not os.path.exists(src):
                subprocess.run([sys.executable, os.path.join(ROOT, "bench", "models.py"),
                                "--out", work, name], check=True, capture_output=True)
        models[name] = convert(src, os.path.join(work, f"{name}.edgenet"))
    from edgenet.cpu import simd
    print(f"cpu tier {simd.simd_mode()} (vnni {simd.has_vnni()}), {os.cpu_count()} cores, "
          f"loadavg {' '.join(f'{v:.1f}' for v in os.getloadavg())}")
    print(f"| {'step':44s} | wall s  | cpu s   | compiled |\n|---|---|---|---|")
    rows = []
    c1 = os.path.join(work, "cache-readme")
    c2 = os.path.join(work, "cache-unseen")
    c3 = os.path.join(work, "cache-all")
    for c in (c1, c2, c3):
        shutil.rmtree(c, ignore_errors=True)
    if not a.only_all:
        rows.append(run(["-m", "edgenet", "run"], c1, "README run, empty cache"))
        rows.append(run(["-m", "edgenet", "run"], c1, "README run, warm"))
        m20, x20 = models.get("resnet20") or convert(
            os.path.join(ROOT, "tests", "fixtures", "resnet20.onnx"),
            os.path.join(work, "resnet20.edgenet"))
        rows.append(run(["-m", "edgenet", "run", m20, x20], c1,
                         "unseen ResNet-20 after the README run"))
        rows.append(run(["-m", "edgenet", "run", m20, x20], c2,
                         "unseen ResNet-20, empty cache"))
        rows.append(run(["-m", "edgenet", "run", m20, x20], c2, "ResNet-20, warm"))
    if not a.no_all:
        rows.append(run(["-c", "from edgenet.cpu.warm import warmup; print(warmup(progress=False))"], c3,
                        "warmup --all, empty cache"))
        for name, (m, x) in models.items():
            rows.append(run(["-m", "edgenet", "run", m, x], c3, f"{name} first run after warmup"))
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
