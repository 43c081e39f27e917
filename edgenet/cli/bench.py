"""``edgenet bench``: latency, throughput, compile time and peak memory of one model.

Option names follow TFLite's ``benchmark_model`` and ``onnxruntime_perf_test``: a batch
size, warm-up runs, timed runs, threads (``--batch`` and ``--warmup`` are hidden aliases
kept from earlier releases)."""
from __future__ import annotations

import json
import os

import click

from ..benchmark import benchmark
from ..errors import InputError
from ..io import check_model_path
from .app import ACTIVATIONS_HELP, DEVICE_HELP, DEVICES, POLICY_HELP, THREADS_HELP, main


@main.command()
@click.argument("model", type=click.Path())
@click.option("--batch-size", type=click.IntRange(min=1), default=None,
              help="Samples per run (the input's batch dimension). [default: 1]")
@click.option("--batch", "batch_alias", type=click.IntRange(min=1), default=None, hidden=True)
@click.option("--warmup-runs", type=click.IntRange(min=0), default=None,
              help="Untimed runs before measuring. [default: 16, fewer past 2 s; at "
                   "least 3]")
@click.option("--warmup", "warmup_alias", type=click.IntRange(min=0), default=None,
              hidden=True)
@click.option("--runs", type=click.IntRange(min=1), default=50, show_default=True,
              help="Timed runs.")
@click.option("--threads", type=click.IntRange(min=1), default=None, help=THREADS_HELP)
@click.option("--device", type=click.Choice(DEVICES), default="cpu", show_default=True,
              help=DEVICE_HELP)
@click.option("--policy", type=click.Choice(["expanded", "packed"]), default=None,
              help=POLICY_HELP)
@click.option("--activations", type=click.Choice(["f32", "int8", "auto"]), default=None,
              help=ACTIVATIONS_HELP)
@click.option("--profile", is_flag=True, help="Print time per node (op profiling).")
@click.option("--compare", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Run onnxruntime (in turns with edgenet) and OpenVINO (after them), "
                   "those installed, on this ONNX model too.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
def bench(model, batch_size, batch_alias, warmup_runs, warmup_alias, runs, threads, device,
          policy, activations, profile, compare, as_json):
    """Measure MODEL: load time, first run (compile), latency percentiles, throughput,
    peak memory; optionally side by side with onnxruntime and OpenVINO (--compare
    SRC.onnx)."""
    batch_size = _one_of("--batch-size", batch_size, "--batch", batch_alias, 1)
    warmup_runs = _one_of("--warmup-runs", warmup_runs, "--warmup", warmup_alias, None)
    check_model_path(model)
    res = benchmark(model, batch_size=batch_size, warmup_runs=warmup_runs, runs=runs,
                    threads=threads, device=device, policy=policy, activations=activations,
                    profile=profile, compare=compare)
    if as_json:
        click.echo(json.dumps(res, indent=2))
        return
    lat = res["latency_ms"]
    click.echo(f"{os.path.basename(model)}  device={device} batch={batch_size} "
               f"threads={threads or 'all'} policy={res['policy']} "
               f"activations={res['activations']} simd={res.get('simd_tier', '')}"
               + (f" ({res['int8_convs']} of {res.get('int8_eligible', res['int8_convs'])} "
                  "eligible convs int8)" if res["activations"] != "f32" else ""))
    click.echo(f"  load {res['load_s'] * 1e3:.1f} ms, first run (compile/cache load) "
               f"{res['first_run_s']:.2f} s")
    click.echo(f"  latency ms: min {lat['min']:.3f}  median {lat['median']:.3f}  mean "
               f"{lat['mean']:.3f}  p90 {lat['p90']:.3f}  p95 {lat['p95']:.3f}  p99 "
               f"{lat['p99']:.3f}  ({runs} runs)")
    click.echo(f"  throughput {res['throughput_per_s']:.1f} inferences/s, peak RSS "
               f"{res['peak_rss_mb']:.1f} MB")
    for k, how in (("onnxruntime", "in turns with edgenet"), ("openvino", "timed after")):
        if f"{k}_ms" in res:
            click.echo(f"  {k} median {res[k + '_ms']['median']:.3f} ms ({how}); "
                       f"edgenet / {k} = {res['ratio_vs_' + k]:.2f}")
    if res.get("profile_ms"):
        click.echo("  per-node time (ms):")
        for row in res["profile_ms"][:40]:
            click.echo(f"    {row['ms']:8.3f}  {row['op']:<18s} {row.get('precision', ''):4s} "
                       f"{row['node']}")


def _one_of(name, value, alias_name, alias, default):
    if value is not None and alias is not None and value != alias:
        raise InputError(f"{name} {value} and its old spelling {alias_name} {alias} disagree")
    return value if value is not None else (alias if alias is not None else default)
