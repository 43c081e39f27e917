#!/usr/bin/env python
"""After ``edgenet warmup --all``, does the first run of every model compile nothing (issue 15)?

    python bench/check_after_warmup.py CACHE_DIR [WORK_DIR]

CACHE_DIR: an ``EDGENET_CACHE_DIR`` that ``warmup()`` filled. The models: every
``bench/models_cache/*.edgenet`` (bench/harness.py writes them) and every
``tests/fixtures/*.onnx`` converted f32 and ternary into WORK_DIR (default /tmp). Each runs
once, in its own process, on zeros at its declared shape (symbolic dims 32); prints the
compilations (``EDGENET_COMPILE_STATS``) per model."""
import glob
import os
import subprocess
import sys

cache = sys.argv[1]
work = sys.argv[2] if len(sys.argv) > 2 else "/tmp"
root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, root)
models = sorted(glob.glob(f"{root}/bench/models_cache/*.edgenet"))
from converters.convert import convert  # noqa: E402
for f in sorted(glob.glob(f"{root}/tests/fixtures/*.onnx")):
    base = os.path.basename(f)[:-5]
    for w in ("f32", "ternary"):
        out = os.path.join(work, f"{base}.{w}.edgenet")
        if not os.path.exists(out):
            try:
                convert(f, out, weights=w)
            except Exception as e:
                print("skip", base, w, str(e)[:80]); continue
        models.append(out)
code = r"""
import sys, numpy as np, edgenet
m = edgenet.load(sys.argv[1])
feeds = {}
for s in m.inputs:
    shp = [1 if i == 0 else (d if isinstance(d, int) else 32) for i, d in enumerate(s.shape)]
    feeds[s.name] = np.zeros(shp, np.float32)
m.run(feeds)
"""
for p in models:
    env = dict(os.environ, EDGENET_CACHE_DIR=cache, EDGENET_COMPILE_STATS="1",
               EDGENET_COMPILE_NOTICE="0", PYTHONPATH=root)
    r = subprocess.run([sys.executable, "-c", code, p], capture_output=True, text=True, env=env)
    stats = [l for l in r.stderr.splitlines() if l.startswith("edgenet-compile-stats")]
    err = "" if r.returncode == 0 else r.stderr.strip().splitlines()[-1][:100]
    print(f"{os.path.basename(p):40s} {stats[-1][22:] if stats else '?'} {err}", flush=True)
