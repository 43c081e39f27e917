"""``edgenet run``: one model on one input file (or the bundled example)."""
from __future__ import annotations

import os

import click
import numpy as np

from ..errors import InputError
from ..io import (EXAMPLE_INPUT, EXAMPLE_MODEL, NO_PREPROCESSING_WARNING, check_model_path,
                  check_writable_file, has_preprocessing, is_image, load_input, save_npy)
from .app import (ACTIVATIONS_HELP, DEVICE_HELP, DEVICES, POLICY_HELP, THREADS_HELP, main,
                  warn)


@main.command()
@click.argument("model", required=False, type=click.Path())
@click.argument("input", required=False, type=click.Path())
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help="Save the first output as .npy.")
@click.option("--device", type=click.Choice(DEVICES), default="cpu", show_default=True,
              help=DEVICE_HELP)
@click.option("--threads", type=click.IntRange(min=1), default=None, help=THREADS_HELP)
@click.option("--top-k", "top_k", type=click.IntRange(min=1), default=None,
              help="Print the K best classes per input (labels from the file if stored).")
@click.option("--activations", type=click.Choice(["f32", "int8", "auto"]), default=None,
              help=ACTIVATIONS_HELP)
@click.option("--policy", type=click.Choice(["expanded", "packed"]), default=None,
              help=POLICY_HELP)
def run(model, input, output, device, threads, top_k, activations, policy):
    """Run MODEL on INPUT (.npy, .npz or an image).

    With no arguments, runs the bundled example (a ternary digits classifier) on the
    bundled sample digits and reports its accuracy.
    """
    from ..runtime import load
    example = model is None
    if example:
        model, input = EXAMPLE_MODEL, EXAMPLE_INPUT
    elif input is None:
        raise InputError("missing INPUT (a .npy, .npz or image file)")
    check_model_path(model)
    if not os.path.exists(input):
        raise InputError(f"{input}: no such file")
    if output:
        check_writable_file(output, "output")
    m = load(model, device=device, threads=threads, policy=policy, activations=activations)
    spec = m.inputs[0]
    if len(m.inputs) != 1:
        raise InputError(f"{model}: model has {len(m.inputs)} inputs; `edgenet run` feeds one")
    if is_image(input) and not has_preprocessing(m.metadata):
        warn(NO_PREPROCESSING_WARNING)
    x = load_input(input, spec, m.metadata)
    y = m(x)
    if output:
        save_npy(output, y)
    labels = m.metadata.get("labels")
    click.echo(f"{os.path.basename(model)}: input {tuple(x.shape)} -> output {tuple(y.shape)}"
               + (f" saved to {output}" if output else ""))
    if example:
        with np.load(input, allow_pickle=False) as z:
            truth = z["y"] if "y" in z.files else None
        pred = y.argmax(axis=1)
        for i in range(min(8, len(pred))):
            lab = labels[pred[i]] if labels else str(pred[i])
            click.echo(f"  sample {i}: predicted {lab}" +
                       (f" (true {truth[i]})" if truth is not None else ""))
        if truth is not None:
            click.echo(f"accuracy on {len(pred)} bundled test digits: "
                       f"{100.0 * float((pred == truth).mean()):.2f}%")
        return
    if top_k or (y.ndim == 2 and labels):
        from ..batch.scoring import top_k_arrays   # (edgenet.batch: not on the common path)
        idx, score = top_k_arrays(y, top_k or 1)
        for i in range(idx.shape[0]):
            click.echo(f"  [{i}] " + ", ".join(
                f"{labels[j] if labels and j < len(labels) else j}: {v:.4f}"
                for j, v in zip(idx[i].tolist(), score[i].tolist())))
    elif not output:
        click.echo(np.array2string(y, threshold=20, precision=4))
