"""``edgenet finetune``: label-free fine-tuning of ternary/quinary weights (needs the
``onnx`` extra and PyTorch; converters/finetune.py)."""
from __future__ import annotations

import os
import sys

import click

from ..errors import EdgenetError, InputError
from ..io import check_writable_file
from .app import main
from .convert import parse_floats, parse_input_shapes


@main.command()
@click.argument("src", type=click.Path())
@click.option("--samples", required=True, type=click.Path(),
              help="Unlabeled typical inputs: a .npy/.npz float array (S, C, H, W), or a "
                   "folder of .npy/.npz/image files (images are resized to the input and "
                   "scaled to [0, 1], then --mean/--std applied).")
@click.option("-o", "--output", "dst", required=True, type=click.Path(dir_okay=False),
              help="Destination .edgenet file.")
@click.option("--weights", type=click.Choice(["ternary", "quinary"]), default="ternary",
              show_default=True, help="Levels of the Conv/Gemm weights.")
@click.option("--minutes", type=click.FloatRange(0.0, min_open=True), default=10.0,
              show_default=True, help="Training time budget (the calibrated PTQ start and "
                                      "the export come on top).")
@click.option("--steps", type=click.IntRange(1), default=None,
              help="Stop after this many steps (if the time budget has not ended first).")
@click.option("--batch-size", "batch", type=click.IntRange(1), default=32, show_default=True,
              help="Samples per training step.")
@click.option("--lr", type=click.FloatRange(0.0, min_open=True), default=1e-3,
              show_default=True, help="Adam learning rate (latent weights in level units).")
@click.option("--holdout", type=click.FloatRange(0.0, 1.0, min_open=True, max_open=True),
              default=0.2, show_default=True,
              help="Fraction of the samples kept out of training for the fidelity report.")
@click.option("--calib-samples", type=click.IntRange(1), default=512, show_default=True,
              help="Samples used for the calibrated PTQ starting point.")
@click.option("--keep-float", default="none", show_default=True,
              help="Layers kept in float: 'first,last', 'first', 'last' or 'none'.")
@click.option("--int8", "int8", default="", metavar="RULES",
              help="Layers kept int8 (trained too): a comma list of first, last, depthwise, "
                   "small:N (layers of at most N weights); the rest ternary/quinary.")
@click.option("--loss", type=click.Choice(["auto", "kl", "mse"]), default="auto",
              show_default=True,
              help="Distillation loss against the float model: kl on the softmax (auto when "
                   "the model ends in Softmax), else mse on the outputs.")
@click.option("--feature-weight", type=click.FloatRange(0.0), default=0.0, show_default=True,
              help="Add the normalized MSE of every quantized layer's output against the "
                   "float model's, with this weight, to the loss (0: outputs only).")
@click.option("--checkpoint", type=click.Path(dir_okay=False), default=None,
              help="Resumable checkpoint. [default: OUTPUT.ckpt]")
@click.option("--restart", is_flag=True,
              help="Ignore an existing checkpoint and start from the calibrated PTQ again.")
@click.option("--reference-onnx", type=click.Path(dir_okay=False), default=None,
              help="Also write the source ONNX with the fine-tuned weights (for parity "
                   "checks with onnxruntime).")
@click.option("--mean", default=None, help="Preprocessing mean per input channel (images in "
                                           "--samples; also stored in the file).")
@click.option("--std", default=None, help="Preprocessing std per input channel.")
@click.option("--input-shape", "input_shape", multiple=True, metavar="NAME:D0,D1,...",
              help="Freeze an input's symbolic dims, e.g. x:1,3,48,192 (needed when the "
                   "height/width are symbolic).")
@click.option("--threads", type=click.IntRange(1), default=2, show_default=True,
              help="PyTorch threads for training.")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")
@click.option("-q", "--quiet", is_flag=True, help="Print only the fidelity line.")
def finetune(src, samples, dst, weights, minutes, steps, batch, lr, holdout, calib_samples,
             keep_float, loss, feature_weight, checkpoint, restart, reference_onnx, mean, std,
             input_shape, threads, seed, quiet, int8=""):
    """Fine-tune the float ONNX model SRC into a ternary/quinary .edgenet file on unlabeled
    samples (distillation against the model's own float outputs)."""
    try:
        from converters.finetune import finetune as do_finetune
    except ImportError as e:
        raise EdgenetError(f"finetune needs the 'onnx' extra and PyTorch: pip install "
                           f"'edgenet[onnx]' torch ({e})") from None
    if not os.path.exists(src):
        raise InputError(f"{src}: no such file")
    if not os.path.exists(samples):
        raise InputError(f"--samples: {samples}: no such file or folder")
    check_writable_file(dst, "output")
    if reference_onnx is not None:
        check_writable_file(reference_onnx, "--reference-onnx")
    keep = () if keep_float.strip() in ("", "none") else tuple(
        k.strip() for k in keep_float.split(","))
    bad = [k for k in keep if k not in ("first", "last")]
    if bad:
        raise InputError(f"--keep-float: unknown value(s) {bad} (use first,last or none)")
    bar = None
    state = {"shown": 0}

    def progress(step, total, cur, frac):
        nonlocal bar
        if quiet:
            return
        if bar is None:
            bar = click.progressbar(length=1000, label="fine-tuning", file=sys.stderr,
                                    show_eta=True)
            bar.__enter__()
        n = int(1000 * frac)
        if n > state["shown"]:
            bar.update(n - state["shown"])
            state["shown"] = n
        bar.label = f"fine-tuning (step {step}, loss {cur:.4f})"

    try:
        res = do_finetune(src, dst, samples, weights=weights, minutes=minutes, steps=steps,
                          batch=batch, lr=lr, holdout=holdout, seed=seed,
                          checkpoint=checkpoint, resume=not restart,
                          reference_onnx=reference_onnx, input_shapes=parse_input_shapes(input_shape),
                          keep_float=keep, calib_samples=calib_samples, loss=loss,
                          feature_weight=feature_weight, int8=int8,
                          threads=threads, mean=parse_floats("--mean", mean),
                          std=parse_floats("--std", std),
                          log=None if quiet else (lambda m: click.echo(m, err=True)),
                          progress=progress)
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)
    if not quiet:
        click.echo(res.report.format_table())
    click.echo(res.format())
