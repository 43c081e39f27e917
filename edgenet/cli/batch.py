"""``edgenet batch``: score a whole dataset with one model, resumably (edgenet.batch)."""
from __future__ import annotations

import sys

import click

from ..errors import InputError
from ..io import check_model_path, check_writable_file
from .app import main, warn


class _Bar:
    """A click progress bar fed by run_batch's ``progress(done, total, rate)``."""

    def __init__(self):
        self.bar, self.done = None, 0

    def __call__(self, done, total, rate):
        if self.bar is None:
            self.bar = click.progressbar(length=total, label="scoring", file=sys.stderr,
                                         show_pos=True, item_show_func=lambda s: s)
            self.bar.__enter__()
            self.bar.update(done, f"resumed at {done}" if done else None)
        else:
            self.bar.update(done - self.done, f"{rate:.0f} img/s")
        self.done = done

    def close(self):
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None


@main.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.argument("inputs")
@click.option("-o", "--output", required=True, type=click.Path(),
              help="Predictions file: .npz or .parquet (parquet needs pyarrow).")
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local",
              show_default=True, help="Process pool on this machine, or a Ray Data pipeline.")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True,
              help="Samples per model call.")
@click.option("--chunk-size", type=click.IntRange(min=1), default=None,
              help="Samples per journaled part (the resume granularity). [default: ~1024]")
@click.option("--workers", type=click.IntRange(min=0), default=None,
              help="Worker processes (local) or Ray actors; local 0 = in this process. "
                   "[default: one single-threaded worker per core; in this process for "
                   "jobs under 4096 samples]")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="Kernel threads per worker. [default: 1]")
@click.option("--top-k", "top_k", type=click.IntRange(min=1), default=None,
              help="Store the K best classes (index, score, label) instead of raw outputs.")
@click.option("--device", type=click.Choice(["cpu", "reference"]), default="cpu",
              show_default=True, help="Where workers run: cpu, or reference (plain NumPy).")
@click.option("--policy", type=click.Choice(["expanded", "packed"]), default=None,
              help="Weights kept expanded (fastest) or bit-packed (least memory).")
@click.option("--address", default=None,
              help="Ray cluster address (--engine ray); default: start a local Ray.")
@click.option("--model-from", "model_from", type=click.Choice(["ship", "shared"]),
              default="ship", show_default=True,
              help="Ray: ship the model bytes through the object store, or read MODEL from "
                   "shared storage at the same path on every node.")
@click.option("--fresh", is_flag=True, help="Discard a previous interrupted run's journal.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def batch(model, inputs, output, engine, batch_size, chunk_size, workers, threads, top_k,
          device, policy, address, model_from, fresh, quiet):
    """Score every input in INPUTS with MODEL into OUTPUT, resumably.

    INPUTS: a directory (images, .npy/.npz shards), a glob, or one file. Keys are file paths
    relative to INPUTS, with ':index' for samples of a shard. An interrupted run is
    continued by rerunning the same command (journal: OUTPUT.partial/).
    """
    if engine != "ray" and address:
        raise InputError("--address needs --engine ray")
    check_model_path(model)
    check_writable_file(output, "output")
    ray_options = {"model_from": model_from} if engine == "ray" else None
    bar = None if quiet else _Bar()
    try:
        from ..batch import run_batch   # (imported by this command only: startup time)
        s = run_batch(model, inputs, output, engine=engine, batch_size=batch_size,
                      chunk_size=chunk_size, workers=workers, threads=threads, top_k=top_k,
                      device=device, policy=policy, address=address, fresh=fresh,
                      progress=bar, ray_options=ray_options, on_warning=warn)
    finally:
        if bar is not None:
            bar.close()
    extra = f", {s['resumed']} resumed from the journal" if s["resumed"] else ""
    click.echo(f"{s['output']}: {s['samples']} rows ({s['scored']} scored in "
               f"{s['seconds']:.2f} s, {s['images_per_s']:.0f} img/s, {s['engine']} "
               f"{s['workers']}x{s['threads']} threads{extra})")
