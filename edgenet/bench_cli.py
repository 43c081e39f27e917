"""``edgenet bench``: latency, throughput, compile time and peak memory of one model."""
from __future__ import annotations

import json
import os
import resource
import time

import click
import numpy as np

from .cli import guarded, main


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
    a = np.asarray(samples) * 1e3
    return {"min": float(a.min()), "median": float(np.median(a)), "mean": float(a.mean()),
            "p90": float(np.percentile(a, 90)), "p95": float(np.percentile(a, 95)),
            "p99": float(np.percentile(a, 99)), "runs": int(a.size)}


def _ort_session(src, threads):
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


@main.command()
@click.argument("model", type=click.Path())
@click.option("--batch", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--warmup", type=click.IntRange(min=0), default=3, show_default=True)
@click.option("--runs", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--threads", type=click.IntRange(min=1), default=None)
@click.option("--device", type=click.Choice(["cpu", "cuda", "reference"]), default="cpu",
              show_default=True)
@click.option("--policy", type=click.Choice(["expanded", "packed"]), default=None)
@click.option("--activations", type=click.Choice(["f32", "int8"]), default=None,
              help="Activation precision (default: int8 when the file is calibrated, else f32).")
@click.option("--profile", is_flag=True, help="Print time per node (op profiling).")
@click.option("--compare", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Run onnxruntime on this ONNX model too, interleaved with edgenet.")
@click.option("--json", "as_json", is_flag=True)
@guarded
def bench(model, batch, warmup, runs, threads, device, policy, activations, profile, compare,
          as_json):
    """Measure MODEL: load time, first run (compile), latency percentiles, throughput,
    peak memory; optionally side by side with onnxruntime (--compare SRC.onnx)."""
    from .runtime import load
    t0 = time.perf_counter()
    m = load(model, device=device, threads=threads, policy=policy, activations=activations)
    t_load = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    feeds = {s.name: rng.standard_normal(tuple(batch if d is None else d for d in s.shape))
             .astype(np.float32) for s in m.inputs}
    t0 = time.perf_counter()
    m.run(feeds)
    t_first = time.perf_counter() - t0
    sess = _ort_session(compare, threads) if compare else None
    if compare and sess is None:
        raise click.ClickException("--compare needs onnxruntime installed")
    for _ in range(warmup):
        m.run(feeds)
        if sess:
            sess.run(None, feeds)
    ours, theirs = [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        m.run(feeds)
        ours.append(time.perf_counter() - t0)
        if sess:
            t0 = time.perf_counter()
            sess.run(None, feeds)
            theirs.append(time.perf_counter() - t0)
    res = {"model": model, "device": device, "batch": batch, "threads": threads,
           "policy": m.policy, "activations": m.activations, "int8_convs": m.int8_convs,
           "load_s": t_load, "first_run_s": t_first,
           "latency_ms": stats_ms(ours),
           "throughput_per_s": batch / float(np.median(ours)),
           "peak_rss_mb": peak_rss_bytes() / 2**20, "memory": m.memory()}
    if sess:
        res["onnxruntime_ms"] = stats_ms(theirs)
        res["ratio_vs_onnxruntime"] = float(np.median(ours) / np.median(theirs))
    prof = None
    if profile:
        prof = {}
        for _ in range(max(1, min(runs, 20))):
            m.run(feeds, profile=prof)
        n = max(1, min(runs, 20))
        res["profile_ms"] = [{"node": k[0], "op": k[1], "ms": v / n * 1e3}
                             for k, v in sorted(prof.items(), key=lambda kv: -kv[1])]
    if as_json:
        click.echo(json.dumps(res, indent=2))
        return
    lat = res["latency_ms"]
    click.echo(f"{os.path.basename(model)}  device={device} batch={batch} "
               f"threads={threads or 'all'} policy={m.policy} activations={m.activations}"
               + (f" ({m.int8_convs} int8 convs)" if m.activations == "int8" else ""))
    click.echo(f"  load {t_load * 1e3:.1f} ms, first run (compile/cache load) {t_first:.2f} s")
    click.echo(f"  latency ms: min {lat['min']:.3f}  median {lat['median']:.3f}  mean "
               f"{lat['mean']:.3f}  p90 {lat['p90']:.3f}  p95 {lat['p95']:.3f}  p99 "
               f"{lat['p99']:.3f}  ({runs} runs)")
    click.echo(f"  throughput {res['throughput_per_s']:.1f} inferences/s, peak RSS "
               f"{res['peak_rss_mb']:.1f} MB")
    if sess:
        o = res["onnxruntime_ms"]
        click.echo(f"  onnxruntime median {o['median']:.3f} ms (interleaved); edgenet/ORT = "
                   f"{res['ratio_vs_onnxruntime']:.2f}")
    if prof:
        click.echo("  per-node time (ms):")
        for row in res["profile_ms"][:40]:
            click.echo(f"    {row['ms']:8.3f}  {row['op']:<18s} {row['node']}")
