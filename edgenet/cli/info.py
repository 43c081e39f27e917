"""``edgenet info``: what a .edgenet file holds."""
from __future__ import annotations

import json

import click

from ..io import check_model_path
from ..summary import describe
from .app import main


@main.command()
@click.argument("model", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print the description as JSON.")
def info(model, as_json):
    """Describe a .edgenet file: inputs, outputs, ops, parameters, encodings, metadata."""
    check_model_path(model)
    d = describe(model)
    if as_json:
        click.echo(json.dumps(d, indent=2))
        return
    click.echo(f"{d['file']}  ({d['bytes']:,} bytes, format v{d['format_version']})")
    for kind in ("inputs", "outputs"):
        for v in d[kind]:
            names = v.get("dim_names") or [None] * len(v["shape"])
            shape = [s if s is not None else (nm or ("N" if i == 0 else "?"))
                     for i, (s, nm) in enumerate(zip(v["shape"], names))]
            click.echo(f"  {kind[:-1]:6s} {v['name']}: {v.get('dtype', 'float32')} {shape}")
    click.echo(f"  nodes  {d['nodes']}: " + ", ".join(f"{k}×{v}" for k, v in d["ops"].items()))
    other = d["parameters"] - d["weights"]
    click.echo(f"  params {d['parameters']:,} in {d['parameter_bytes']:,} bytes = "
               f"{d['weights']:,} conv/gemm weights ({d['bits_per_weight']:.2f} bits/weight) "
               f"+ {other:,} other (biases, constants)")
    click.echo("  encodings " + ", ".join(f"{k} {v:,}"
                                         for k, v in d["parameters_by_encoding"].items()))
    for k, v in d["metadata"].items():
        s = json.dumps(v)
        click.echo(f"  {k}: {s if len(s) < 100 else s[:97] + '...'}")
