#!/usr/bin/env python
"""edgenet device="cuda" vs PyTorch eager on the same GPU (run it where a GPU is lent).

    pip install -e '.[cuda,bench]'          # numba-cuda[cu12] + torch with CUDA
    python bench/bench_cuda.py                                   # resnet18 + densenet121
    python bench/bench_cuda.py --models resnet18 --batches 1 64 --runs 50 --json out.json

For each model (bench/models.py builds it in plain torch, same weights as its ONNX export)
and each variant (f32, ternary, quinary .edgenet files converted once into
bench/models_cache/), it checks parity (edgenet cuda vs edgenet cpu at batch 1, <= 1e-4
relative; skip with --no-parity) and measures, at every batch size:

- edgenet cuda: ``edgenet.cuda.run_graph`` (device-resident: one upload, one download per
  inference; the device plan is built by the warmup runs),
- PyTorch eager fp32 on the same GPU (``torch.inference_mode``, input copied host->device
  and the output back, like edgenet), and fp16 autocast as a second reference point.

Latency is the median of ``--runs`` timed calls after ``--warmup`` calls (each includes the
host<->device copies and a synchronization). Prints a Markdown table for bench/RESULTS.md
with the GPU's name; the goals of issue 5: ternary ResNet-18 batch 1 latency <= PyTorch
eager fp32, batch 64 throughput >= PyTorch eager.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)


def _median_ms(fn, warmup, runs):
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts) * 1e3


def bench_edgenet(path, shape, batches, warmup, runs, parity):
    import edgenet
    import edgenet.cuda as ecuda
    m = edgenet.load(path, device="cuda")
    name = m.inputs[0].name
    out = {}
    if parity:
        x = np.random.default_rng(0).uniform(-1, 1, (1,) + shape).astype(np.float32)
        want = edgenet.load(path, device="cpu")(x)
        got = ecuda.run_graph(m, {name: x})[m.outputs[0].name]
        err = float(np.abs(got - want).max() / max(np.abs(want).max(), 1e-12))
        out["parity_rel_err"] = err
        print(f"    parity cuda vs cpu: max rel err {err:.2e} "
              f"{'OK' if err <= 1e-4 else 'FAIL'}", flush=True)
    for b in batches:
        x = np.random.default_rng(b).uniform(-1, 1, (b,) + shape).astype(np.float32)
        t0 = time.perf_counter()
        ecuda.run_graph(m, {name: x})
        first = time.perf_counter() - t0
        ms = _median_ms(lambda: ecuda.run_graph(m, {name: x}), warmup, runs)
        out[b] = {"ms": ms, "img_s": b / ms * 1e3, "first_call_s": first}
    return out


def bench_torch(model_name, shape, batches, warmup, runs, half=False):
    import torch
    from models import torch_model
    dev = torch.device("cuda")
    m = torch_model(model_name).to(dev).eval()
    out = {}
    for b in batches:
        x = np.random.default_rng(b).uniform(-1, 1, (b,) + shape).astype(np.float32)

        def call():
            with torch.inference_mode(), torch.autocast("cuda", enabled=half,
                                                        dtype=torch.float16):
                y = m(torch.from_numpy(x).to(dev))
                return y.float().cpu().numpy()  # .cpu() synchronizes

        ms = _median_ms(call, warmup, runs)
        out[b] = {"ms": ms, "img_s": b / ms * 1e3}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["resnet18", "densenet121"])
    ap.add_argument("--variants", nargs="+", default=["f32", "ternary", "quinary"])
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 64])
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--no-parity", action="store_true")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--json", help="also write the results here")
    a = ap.parse_args(argv)

    import edgenet.cuda as ecuda
    from edgenet.cuda import config
    from harness import edgenet_path
    from models import input_shape
    ecuda.ensure_available()
    gpu = ecuda.device_name()
    print(f"GPU: {gpu}\nedgenet.cuda config: {config.snapshot()}", flush=True)
    res = {"gpu": gpu, "config": config.snapshot(), "models": {}}
    rows = []
    for mn in a.models:
        shape = tuple(input_shape(mn))
        r = res["models"][mn] = {}
        if not a.no_torch:
            print(f"{mn}: torch eager fp32", flush=True)
            r["torch_fp32"] = bench_torch(mn, shape, a.batches, a.warmup, a.runs)
            r["torch_fp16"] = bench_torch(mn, shape, a.batches, a.warmup, a.runs, half=True)
        for v in a.variants:
            print(f"{mn}: edgenet cuda {v}", flush=True)
            r[f"edgenet_{v}"] = bench_edgenet(edgenet_path(mn, v), shape, a.batches,
                                              a.warmup, a.runs, not a.no_parity)
        for b in a.batches:
            base = r.get("torch_fp32", {}).get(b)
            for eng, d in r.items():
                if b in d:
                    ratio = f"{base['ms'] / d[b]['ms']:.2f}x" if base else "-"
                    rows.append(f"| {mn} | {b} | {eng} | {d[b]['ms']:.2f} | "
                                f"{d[b]['img_s']:.0f} | {ratio} |")
    print(f"\n### CUDA: {gpu}\n")
    print("| model | batch | engine | median ms | img/s | speed vs torch fp32 |")
    print("|---|---:|---|---:|---:|---:|")
    print("\n".join(rows))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
