"""Measuring one model: load time, first run (compile), latency percentiles, throughput,
peak memory, optionally in turns with onnxruntime and OpenVINO (the library behind
``edgenet bench``).
"""
from __future__ import annotations

import importlib.util
import os
import resource
import time

import numpy as np

from .errors import EdgenetError, InputError


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


# --compare: edgenet and onnxruntime run in turns of COMPARE_BLOCK calls each, every turn
# after an idle gap of COMPARE_GAP_S: edgenet's OpenMP workers spin ~0.3 ms after a
# parallel call (_jit.py) and would take a core from the onnxruntime call right after them
# (onnxruntime's own are stopped: ort_session). Turns, not single calls: after an idle gap
# the first call pays for waking its threads (on the 2-core VM here up to ~2x a warm call,
# either engine), so one-call turns would time wake-ups. OpenVINO is created and timed
# after that, in a pass of its own (as bench/harness.py does): once its threads have run,
# the next engine's calls stalled ~10 ms (a scheduler slice) at random, measured: 4 of 200
# edgenet calls in turns with it (ResNet-20, 2 threads), up to 100 ms after its last call.
COMPARE_BLOCK = 5
COMPARE_GAP_S = 0.002


def ov_session(src, threads, feeds=None):
    """An OpenVINO CPU infer request for the ONNX file ``src``, its inputs fixed to the
    shapes of ``feeds`` when given (None when openvino is not installed; bench/harness.py
    uses it too): ``INFERENCE_NUM_THREADS``, ``PERFORMANCE_HINT=LATENCY``, and
    ``INFERENCE_PRECISION_HINT=f32`` (on CPUs with bf16 OpenVINO would otherwise run a
    float model in bf16)."""
    try:
        import openvino as ov
    except ImportError:
        return None
    core = ov.Core()
    model = core.read_model(src)
    if feeds:
        model.reshape({name: list(a.shape) for name, a in feeds.items()})
    cfg = {"INFERENCE_NUM_THREADS": int(threads or os.cpu_count()),
           "PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
    c = core.compile_model(model, "CPU", cfg)
    return c.create_infer_request()


def _peer(name, compare, make, feeds):
    """The engine ``make()`` builds for the ONNX file ``compare``, as a call on ``feeds``
    (None when not installed), after one untimed call: a clear error when it cannot load
    or run the file on these inputs."""
    try:
        eng = make()
        if eng is None:
            return None
        f = (lambda: eng.run(None, feeds)) if name == "onnxruntime" else \
            (lambda: eng.infer(feeds))
        f()
        return f
    except Exception as e:  # noqa: BLE001 - the peer's own parse / compile / run errors
        msg = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise InputError(f"--compare {os.fspath(compare)}: {name} cannot run it on the "
                         f"model's inputs: {msg[:300]}") from None


# Untimed calls before the timed ones when none are asked for: enough for the runtime's
# adaptive threads to have timed both thread counts (about 14 calls: runtime.pick_one), so
# that the percentiles describe the steady state (with 3, about 7 of 50 timed calls ran on
# one thread while it sampled), but at most WARMUP_MAX_S seconds of them (at least
# WARMUP_MIN calls) for slow models and large batches.
WARMUP_RUNS = 16
WARMUP_MIN = 3
WARMUP_MAX_S = 2.0


def _warm(calls: dict, warmup_runs) -> None:
    """``warmup_runs`` untimed turns of the calls (None: WARMUP_RUNS, or fewer once they
    took WARMUP_MAX_S, at least WARMUP_MIN)."""
    t0 = time.perf_counter()
    n = WARMUP_RUNS if warmup_runs is None else warmup_runs
    for i in range(n):
        if warmup_runs is None and i >= WARMUP_MIN and time.perf_counter() - t0 > WARMUP_MAX_S:
            break
        for f in calls.values():
            f()


def _turns(calls: dict, runs: int, warmup_runs, gap: bool) -> dict:
    """name -> ``runs`` call times (s): the calls in turns of COMPARE_BLOCK each (one turn
    of ``runs`` when ``gap`` is False), each turn after COMPARE_GAP_S idle when ``gap``;
    after ``_warm``."""
    _warm(calls, warmup_runs)
    times = {k: [] for k in calls}
    block = COMPARE_BLOCK if gap else runs
    done = 0
    while done < runs:
        n = min(block, runs - done)
        for k, f in calls.items():
            if gap:
                time.sleep(COMPARE_GAP_S)
            for _ in range(n):
                t0 = time.perf_counter()
                f()
                times[k].append(time.perf_counter() - t0)
        done += n
    return times


def benchmark(model_path, *, batch_size=1, warmup_runs=None, runs=50, threads=None,
              device="cpu", policy=None, activations=None, profile=False,
              compare=None) -> dict:
    """Measure ``model_path`` on random inputs of batch ``batch_size``; with ``compare``
    (an ONNX file), run onnxruntime (in turns with edgenet) and OpenVINO (after them), each
    where installed, on the same inputs: COMPARE_BLOCK. Returns a dict (``edgenet bench
    --json`` prints it). ``warmup_runs``: untimed calls of each engine first (None: the
    steady state, ``_warm``)."""
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
    calls = {"edgenet": lambda: m.run(feeds)}
    if compare and not any(importlib.util.find_spec(p) for p in ("onnxruntime", "openvino")):
        raise EdgenetError("--compare needs onnxruntime or openvino: pip install onnxruntime")
    if compare:
        f = _peer("onnxruntime", compare, lambda: ort_session(compare, threads), feeds)
        if f is not None:
            calls["onnxruntime"] = f
    times = _turns(calls, runs, warmup_runs, gap=len(calls) > 1)
    peers = [k for k in calls if k != "edgenet"]
    if compare:
        f = _peer("openvino", compare, lambda: ov_session(compare, threads, feeds), feeds)
        if f is not None:
            times.update(_turns({"openvino": f}, runs, warmup_runs, gap=False))
            peers.append("openvino")
    ours = times["edgenet"]
    res = {"model": os.fspath(model_path), "device": device, "batch": batch_size,
           "threads": threads, "policy": m.policy, "activations": m.activations,
           "int8_convs": m.int8_convs, "load_s": t_load, "first_run_s": t_first,
           "simd_tier": _simd_tier(device), "int8_choices": getattr(m, "int8_choices", []),
           "int8_eligible": _int8_eligible(m),
           "latency_ms": stats_ms(ours),
           "throughput_per_s": batch_size / float(np.median(ours)),
           "peak_rss_mb": peak_rss_bytes() / 2**20, "memory": m.memory()}
    for k in peers:   # onnxruntime_ms, ratio_vs_onnxruntime; openvino_ms, ratio_vs_openvino
        res[f"{k}_ms"] = stats_ms(times[k])
        res[f"ratio_vs_{k}"] = float(np.median(ours) / np.median(times[k]))
    if profile:
        prof = {}
        n = max(1, min(runs, 20))
        for _ in range(n):
            m.run(feeds, profile=prof)
        res["profile_ms"] = [{"node": k[0], "op": k[1], "ms": v / n * 1e3,
                              "precision": _precision(m, k[0], k[1])}
                             for k, v in sorted(prof.items(), key=lambda kv: -kv[1])]
    return res
