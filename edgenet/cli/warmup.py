"""``edgenet warmup``: compile (or load from the disk cache) the kernels a model needs, or
with ``--all`` every kernel this CPU can use (edgenet/cpu/warm.py)."""
from __future__ import annotations

import time

import click

from ..io import check_model_path
from .app import DEVICE_HELP, DEVICES, main


@main.command()
@click.argument("model", type=click.Path(), required=False)
@click.option("--all", "all_", is_flag=True,
              help="Build every kernel this CPU can use (once per machine, a few minutes); "
                   "afterwards a model's first run compiles nothing.")
@click.option("--device", type=click.Choice(DEVICES), default="cpu", show_default=True,
              help=DEVICE_HELP)
def warmup(model, all_, device):
    """Compile (or load from the disk cache) every kernel MODEL needs, or with --all every
    kernel of this CPU's menu. A progress bar on a terminal."""
    from ..runtime import load
    if not model and not all_:
        raise click.UsageError("give MODEL, or --all for every kernel of this CPU")
    if model:
        check_model_path(model)
    t0 = time.perf_counter()
    if all_:
        from ..cpu.warm import warmup as build
        r = build()
        click.echo(f"kernels for this CPU ready in {time.perf_counter() - t0:.1f} s "
                   f"({r['compiled']} compiled, the rest loaded from the cache)")
        t0 = time.perf_counter()
    if model:
        if device == "cpu":
            from ..cpu.warm import warmup as build
            build(load(model, device=device))
        else:
            load(model, device=device, warmup=True)
        click.echo(f"{model}: kernels ready in {time.perf_counter() - t0:.2f} s")
