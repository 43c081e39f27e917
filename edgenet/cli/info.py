"""``edgenet info``: what a .edgenet file holds."""
from __future__ import annotations

import json

import click

from ..io import check_model_path
from ..quant import METADATA_KEY as QUANT_KEY
from ..summary import describe
from .app import main


def auto_choices(path) -> dict:
    """What ``activations="auto"`` picks for the file at ``path`` on this CPU:
    {"tier": ..., "convs": [one dict per calibrated eligible conv (quant.annotate)]}."""
    from .. import _tiers
    from ..quant import mark_quantized_producers
    from ..runtime import load
    m = load(path, device="reference", activations="auto")
    nodes = [dict(n) for n in m.graph["nodes"]]     # what the CPU device marks at load
    mark_quantized_producers(nodes, m.consts, [o["name"] for o in m.graph["outputs"]])
    return {"tier": _tiers.tier(), "convs": list(m.int8_choices),
            "quantizing_producers": [n.get("name", "") for n in nodes if "_qo" in n],
            "quantizing_producers_keep_f32": [n.get("name", "") for n in nodes
                                              if n.get("_qo_keep") and not n.get("_qo_noy")]}


@main.command()
@click.argument("model", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print the description as JSON.")
def info(model, as_json):
    """Describe a .edgenet file: inputs, outputs, ops, parameters, encodings, metadata."""
    check_model_path(model)
    d = describe(model)
    if QUANT_KEY in d["metadata"]:
        d["auto_activations"] = auto_choices(model)
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
    a = d.get("auto_activations")
    if a:
        n8 = sum(c["int8"] for c in a["convs"])
        click.echo(f"  activations auto on this CPU (simd tier {a['tier']}): {n8} of "
                   f"{len(a['convs'])} calibrated convs int8 (estimated ms per image):")
        for c in a["convs"][:60]:
            click.echo(f"    {'int8' if c['int8'] else 'f32 '}  int8 {c['est_int8_ms']:7.3f}  f32 "
                       f"{c['est_f32_ms']:7.3f}  [{c['family']}]  {c['node']}")
        qp = a["quantizing_producers"]
        if qp:
            keep = len(a.get("quantizing_producers_keep_f32", ()))
            click.echo(f"  {len(qp)} convs write their int8 reader's quantized input (no float32 "
                       f"round trip; {keep} of them their float32 output too, read elsewhere): "
                       + ", ".join(qp[:8]) + (", ..." if len(qp) > 8 else ""))
