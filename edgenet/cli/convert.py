"""``edgenet convert``: an ONNX model into a .edgenet file (needs the ``onnx`` extra)."""
from __future__ import annotations

import sys

import click
import numpy as np

from ..errors import EdgenetError, InputError
from ..io import check_writable_file
from ..summary import describe
from .app import main


def parse_floats(opt, s):
    """Comma-separated numbers (--mean/--std), None when the option is absent."""
    if s is None:
        return None
    try:
        return [float(v) for v in s.split(",")]
    except ValueError:
        raise InputError(f"{opt}: expected comma-separated numbers, got {s!r}") from None


def _calibration_samples(calib):
    try:
        samples = np.load(calib, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise InputError(f"{calib}: cannot read calibration samples: {e}") from None
    if samples.dtype.kind not in "fiu" or samples.ndim < 2 or samples.size == 0:
        raise InputError(f"{calib}: expected a numeric array (S, C, H, W), got "
                         f"{samples.dtype} {samples.shape}")
    if not np.isfinite(samples).all():
        raise InputError(f"{calib}: calibration samples contain NaN or infinity")
    return samples


def parse_input_shapes(specs):
    """``NAME:D0,D1,...`` options -> {name: [dims]} (None when none given)."""
    out = {}
    for spec in specs:
        name, sep, dims = spec.rpartition(":")
        vals = [int(d) if d.strip().lstrip("-").isdigit() else d.strip()
                for d in dims.split(",")]
        if not sep or not name or not dims or any(
                (isinstance(v, int) and v <= 0) or (isinstance(v, str) and
                                                    not v.replace("_", "").isalnum())
                for v in vals):
            raise InputError(f"--input-shape: expected NAME:D0,D1,... with positive dims "
                             f"(or names for dims left symbolic), got {spec!r}")
        if name in out:
            raise InputError(f"--input-shape: input '{name}' given twice")
        out[name] = vals
    return out or None


@main.command()
@click.argument("src", type=click.Path())
@click.option("-o", "--output", "dst", required=True, type=click.Path(dir_okay=False),
              help="Destination .edgenet file.")
@click.option("--weights", type=click.Choice(["ternary", "quinary", "int8", "f16", "f32"]),
              default="ternary", show_default=True,
              help="Encoding of the Conv/ConvTranspose/Gemm weights.")
@click.option("--granularity", type=click.Choice(["channel", "layer"]), default="channel",
              show_default=True,
              help="One quantization scale per output channel, or one per layer.")
@click.option("--threshold", type=click.Choice(["twn", "optimal"]), default="twn",
              show_default=True,
              help="Ternary threshold: twn (0.7 x mean |W|) or optimal (the exact L2 optimum).")
@click.option("--keep-float", default="first,last", show_default=True,
              help="Layers kept in float: 'first,last', 'first', 'last' or 'none'.")
@click.option("--reference-onnx", type=click.Path(dir_okay=False), default=None,
              help="Also write the source ONNX with dequantized weights (for parity checks).")
@click.option("--mean", default=None,
              help="Preprocessing mean per input channel, e.g. 0.485,0.456,0.406 (stored in "
                   "the file, applied to images by `edgenet run`).")
@click.option("--std", default=None,
              help="Preprocessing std per input channel, e.g. 0.229,0.224,0.225.")
@click.option("--labels", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Text file with one class label per line (one per model class).")
@click.option("--activations", type=click.Choice(["f32", "int8"]), default="f32",
              show_default=True,
              help="int8: calibrate activation ranges (needs --calibrate) so the runtime runs "
                   "uint8 x int8 conv kernels.")
@click.option("--calibrate", "calib", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Calibration samples: a .npy float array (S, C, H, W) of typical inputs "
                   "(unlabeled). Ternary/quinary weights are then fitted layer by layer to "
                   "the float network's outputs, and the fidelity on held-out samples is "
                   "reported; int8 activations get their ranges from them.")
@click.option("--target-agreement", type=click.FloatRange(0.0, 1.0, min_open=True),
              default=None, help="Mixed precision (needs --calibrate): keep the layers that "
                                 "matter at q3/i8/f16 until the top-1 agreement with the float "
                                 "model reaches this fraction, e.g. 0.99.")
@click.option("--max-bits", type=click.FloatRange(2.0), default=None,
              help="Mixed precision (needs --calibrate): the best per-layer t2/q3/i8/f16 "
                   "choice within this many bits per conv/gemm weight, scales included.")
@click.option("--min-ternary", type=click.FloatRange(0.0, 1.0), default=None,
              help="Mixed precision (needs --calibrate, --weights ternary): keep at least "
                   "this share of the conv/gemm weights ternary, e.g. 0.8, and store the "
                   "layers that matter most per weight (measured sensitivity) int8.")
@click.option("--int8", "int8", default=None, metavar="RULES",
              help="Calibrated weights: layers stored int8 by rule, a comma list of first, "
                   "last, depthwise, small:N (at most N weights); with --min-ternary the "
                   "sensitivity choice fills the rest of the budget.")
@click.option("--calib-seeds", type=click.IntRange(1, 16), default=1, show_default=True,
              help="Calibrated weights: fit this many times (different samplings of the "
                   "layer inputs) and keep the one closest to the float model on the "
                   "held-out samples (output SNR).")
@click.option("--calib-method", type=click.Choice(["minmax", "percentile"]), default="minmax",
              show_default=True,
              help="Activation range from the calibration samples: min/max, or the 99.99th "
                   "percentile (robust to outliers).")
@click.option("--input-shape", "input_shape", multiple=True, metavar="NAME:D0,D1,...",
              help="Freeze an input's symbolic dims (repeatable), e.g. x:1,3,480,640; a "
                   "name keeps a dim symbolic (x:N,3,48,W). Without it symbolic dims stay "
                   "symbolic: any size runs.")
@click.option("-q", "--quiet", is_flag=True, help="Print only the summary line.")
def convert(src, dst, weights, granularity, threshold, keep_float, reference_onnx, mean, std,
            labels, activations, calib, calib_method, target_agreement, max_bits, input_shape,
            quiet, min_ternary=None, calib_seeds=1, int8=None):
    """Convert an ONNX model SRC into a .edgenet file."""
    try:
        from converters.convert import convert as do_convert
    except ImportError as e:
        raise EdgenetError(f"the converter needs the 'onnx' extra: pip install 'edgenet[onnx]' "
                           f"({e})") from None
    check_writable_file(dst, "output")  # before any work: never quantize, then fail
    if reference_onnx is not None:
        check_writable_file(reference_onnx, "--reference-onnx")
    keep = () if keep_float.strip() in ("", "none") else tuple(
        k.strip() for k in keep_float.split(","))
    bad = [k for k in keep if k not in ("first", "last")]
    if bad:
        raise InputError(f"--keep-float: unknown value(s) {bad} (use first,last or none)")
    input_shapes = parse_input_shapes(input_shape)
    samples = None
    mixed = target_agreement is not None or max_bits is not None
    if target_agreement is not None and max_bits is not None:
        raise InputError("--target-agreement and --max-bits: give one, not both")
    if min_ternary is not None:
        if mixed:
            raise InputError("--min-ternary: give it alone, not with --target-agreement / "
                             "--max-bits")
        if weights != "ternary":
            raise InputError("--min-ternary needs --weights ternary")
        if calib is None:
            raise InputError("--min-ternary needs --calibrate SAMPLES.npy")
    if int8 and (calib is None or weights not in ("ternary", "quinary")):
        raise InputError("--int8 needs --calibrate SAMPLES.npy and --weights ternary or "
                         "quinary")
    if calib_seeds > 1 and (calib is None or weights not in ("ternary", "quinary")):
        raise InputError("--calib-seeds needs --calibrate SAMPLES.npy and --weights "
                         "ternary or quinary")
    if mixed and calib is None:
        raise InputError("--target-agreement / --max-bits need --calibrate SAMPLES.npy")
    if mixed and weights not in ("ternary", "quinary"):
        raise InputError("--target-agreement / --max-bits need --weights ternary or quinary")
    if activations == "int8":
        if calib is None:
            raise InputError("--activations int8 needs --calibrate SAMPLES.npy")
        samples = _calibration_samples(calib)
    elif calib is not None:
        if weights not in ("ternary", "quinary"):
            raise InputError("--calibrate is used with --weights ternary/quinary or "
                             "--activations int8")
        samples = _calibration_samples(calib)
    label_list = None
    if labels:
        with open(labels, encoding="utf-8") as f:
            label_list = [ln.rstrip("\n") for ln in f if ln.strip()]
    bar = None
    state = {}

    def progress(done, total):
        nonlocal bar
        if quiet or total < 20:
            return
        if bar is None:
            bar = click.progressbar(length=total, label="quantizing", file=sys.stderr)
            bar.__enter__()
        bar.update(done - state.get("done", 0))
        state["done"] = done

    try:
        report = do_convert(src, dst, weights=weights, granularity=granularity,
                            threshold=threshold, keep_float=keep,
                            reference_onnx=reference_onnx, mean=parse_floats("--mean", mean),
                            std=parse_floats("--std", std), labels=label_list, progress=progress,
                            activations=activations, calibration=samples,
                            calib_method=calib_method, input_shapes=input_shapes,
                            calibrate_weights=samples is not None
                            and weights in ("ternary", "quinary"),
                            target_agreement=target_agreement, max_bits=max_bits,
                            min_ternary=min_ternary, calib_seeds=calib_seeds, int8=int8,
                            log=None if quiet else (lambda m: click.echo(m, err=True)))
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)
    if quiet:
        click.echo(report.format_table().strip().splitlines()[-1])
        return
    click.echo(report.format_table())
    d = describe(dst)  # the count `edgenet info` prints
    click.echo(f"{d['parameters']:,} parameters in all = {d['weights']:,} conv/gemm weights "
               f"+ {d['parameters'] - d['weights']:,} other (biases, constants)")
