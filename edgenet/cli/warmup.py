"""``edgenet warmup``: compile (or load from the disk cache) the kernels a model needs."""
from __future__ import annotations

import time

import click

from ..io import check_model_path
from .app import DEVICE_HELP, DEVICES, main


@main.command()
@click.argument("model", type=click.Path())
@click.option("--device", type=click.Choice(DEVICES), default="cpu", show_default=True,
              help=DEVICE_HELP)
def warmup(model, device):
    """Compile (or load from the disk cache) every kernel MODEL needs."""
    from ..runtime import load
    check_model_path(model)
    t0 = time.perf_counter()
    load(model, device=device, warmup=True)
    click.echo(f"{model}: kernels ready in {time.perf_counter() - t0:.2f} s")
