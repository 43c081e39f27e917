"""Measuring one model: load time, first run (compile), latency percentiles, throughput,
peak memory, optionally interleaved with onnxruntime (the library behind ``edgenet bench``).
"""
from __future__ import annotations

import os
import resource
import time

import numpy as np

from .errors import EdgenetError


def peak_rss_bytes() -> int:
    """Peak resident set size of this process: VmHWM where /proc exists (ru_maxrss would
    include a parent's peak, which Linux carries across exec), else ru_maxrss (KiB)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def stats_ms(samples) -> dict:
    """Latency statistics in milliseconds of ``samples`` (seconds)."""
    a = np.asarray(samples) * 1e3
    return {"min": float(a.min()), "median": float(np.median(a)), "mean": float(a.mean()),
            "p90": float(np.percentile(a, 90)), "p95": float(np.percentile(a, 95)),
            "p99": float(np.percentile(a, 99)), "runs": int(a.size)}


def ort_session(src, threads):
    """An onnxruntime CPU session for ``src`` (None when onnxruntime is not installed)."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads or os.cpu_count()
    so.inter_op_num_threads = 1
    # idle ORT workers would otherwise spin and steal a core from the interleaved edgenet run
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])


def _simd_tier(device) -> str:
    """The CPU SIMD tier that runs the kernels (edgenet/_tiers.py); '' off the CPU."""
    if device != "cpu":
        return ""
    from . import _tiers
    return _tiers.tier()


def _int8_eligible(m) -> int:
    """Convs that could run int8 (auto: those it chose between)."""
    return len(getattr(m, "int8_choices", None) or ()) or m.int8_convs


def _precision(m, name, op) -> str:
    """'int8' / 'f32' for a Conv of a model with int8 activations (auto: as chosen)."""
    if op != "Conv" or m.activations == "f32":
        return ""
    nd = next((n for n in m.graph["nodes"] if n.get("name") == name), None)
    return "int8" if nd is not None and nd.get("_aq") else "f32"


# Interleaved with onnxruntime, each call starts after a short idle gap: edgenet's OpenMP
# workers spin ~0.3 ms after a parallel call (_jit.py) and would take a core from the
# onnxruntime call right after it (as onnxruntime's would, had ort_session not stopped them).
COMPARE_GAP_S = 0.002


def benchmark(model_path, *, batch_size=1, warmup_runs=3, runs=50, threads=None,
              device="cpu", policy=None, activations=None, profile=False,
              compare=None) -> dict:
    """Measure ``model_path`` on random inputs of batch ``batch_size``; with ``compare``
    (an ONNX file), run onnxruntime on the same inputs, interleaved. Returns a dict
    (``edgenet bench --json`` prints it)."""
    from .runtime import load
    t0 = time.perf_counter()
    m = load(model_path, device=device, threads=threads, policy=policy,
             activations=activations)
    t_load = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    feeds = {s.name: rng.standard_normal(tuple(batch_size if d is None else d
                                               for d in s.shape)).astype(np.float32)
             for s in m.inputs}
    t0 = time.perf_counter()
    m.run(feeds)
    t_first = time.perf_counter() - t0
    sess = ort_session(compare, threads) if compare else None
    if compare and sess is None:
        raise EdgenetError("--compare needs onnxruntime: pip install onnxruntime")
    for _ in range(warmup_runs):
        m.run(feeds)
        if sess:
            sess.run(None, feeds)
    ours, theirs = [], []
    for _ in range(runs):
        if sess:
            time.sleep(COMPARE_GAP_S)
        t0 = time.perf_counter()
        m.run(feeds)
        ours.append(time.perf_counter() - t0)
        if sess:
            time.sleep(COMPARE_GAP_S)
            t0 = time.perf_counter()
            sess.run(None, feeds)
            theirs.append(time.perf_counter() - t0)
    res = {"model": os.fspath(model_path), "device": device, "batch": batch_size,
           "threads": threads, "policy": m.policy, "activations": m.activations,
           "int8_convs": m.int8_convs, "load_s": t_load, "first_run_s": t_first,
           "simd_tier": _simd_tier(device), "int8_choices": getattr(m, "int8_choices", []),
           "int8_eligible": _int8_eligible(m),
           "latency_ms": stats_ms(ours),
           "throughput_per_s": batch_size / float(np.median(ours)),
           "peak_rss_mb": peak_rss_bytes() / 2**20, "memory": m.memory()}
    if sess:
        res["onnxruntime_ms"] = stats_ms(theirs)
        res["ratio_vs_onnxruntime"] = float(np.median(ours) / np.median(theirs))
    if profile:
        prof = {}
        n = max(1, min(runs, 20))
        for _ in range(n):
            m.run(feeds, profile=prof)
        res["profile_ms"] = [{"node": k[0], "op": k[1], "ms": v / n * 1e3,
                              "precision": _precision(m, k[0], k[1])}
                             for k, v in sorted(prof.items(), key=lambda kv: -kv[1])]
    return res
