"""The ``edgenet`` command line. User errors exit 2 with one line ``edgenet: error: ...``."""
from __future__ import annotations

import functools
import json
import os
import sys
import traceback
from collections import Counter

import click
import numpy as np

from .errors import EdgenetError, InputError

DATA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
EXAMPLE_MODEL = os.path.join(DATA_DIR, "digits_ternary.edgenet")
EXAMPLE_INPUT = os.path.join(DATA_DIR, "digits_samples.npz")


def _fail(msg: str, code: int = 2):
    click.echo(f"edgenet: error: {msg}", err=True)
    sys.exit(code)


def guarded(fn):
    """Turn EdgenetError into one line + exit 2; anything else into one line + exit 1,
    with the traceback only under --debug."""
    @functools.wraps(fn)
    def wrapper(*args, **kw):
        ctx = click.get_current_context()
        debug = (ctx.find_root().params or {}).get("debug") or os.environ.get("EDGENET_DEBUG")
        try:
            return fn(*args, **kw)
        except EdgenetError as e:
            if debug:
                traceback.print_exc()
            _fail(str(e).replace("\n", " "))
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except KeyboardInterrupt:
            _fail("interrupted", 130)
        except MemoryError:
            _fail("out of memory", 1)
        except Exception as e:  # a bug in edgenet: still one line unless --debug
            if debug:
                traceback.print_exc()
            _fail(f"internal error: {type(e).__name__}: {e} (rerun with --debug for details)", 1)
    return wrapper


def atomic_save(path: str, writer):
    """Call writer(tmp_path) and rename into place; never leaves a half-written file."""
    from .format.writer import atomic_write
    atomic_write(path, writer, by_path=True)


def save_npy(path, arr):
    def w(tmp):
        with open(tmp, "wb") as f:
            np.save(f, arr, allow_pickle=False)
    atomic_save(path, w)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
@click.version_option(package_name="edgenet")
def main(debug):
    """edgenet: run ternary/quinary CNNs compiled by Numba, with no DL framework."""


# -- convert -----------------------------------------------------------------------------
@main.command()
@click.argument("src", type=click.Path())
@click.option("-o", "--output", "dst", required=True, type=click.Path(dir_okay=False),
              help="Destination .edgenet file.")
@click.option("--weights", type=click.Choice(["ternary", "quinary", "int8", "f16", "f32"]),
              default="ternary", show_default=True)
@click.option("--granularity", type=click.Choice(["channel", "layer"]), default="channel",
              show_default=True)
@click.option("--threshold", type=click.Choice(["twn", "optimal"]), default="twn",
              show_default=True)
@click.option("--keep-float", default="first,last", show_default=True,
              help="Layers kept in float: 'first,last', 'first', 'last' or 'none'.")
@click.option("--reference-onnx", type=click.Path(dir_okay=False), default=None,
              help="Also write the source ONNX with dequantized weights (for parity checks).")
@click.option("--mean", default=None, help="Preprocessing mean per channel, e.g. 0.485,0.456,0.406")
@click.option("--std", default=None, help="Preprocessing std per channel.")
@click.option("--labels", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Text file with one class label per line.")
@click.option("--activations", type=click.Choice(["f32", "int8"]), default="f32",
              show_default=True,
              help="int8: calibrate activation ranges (needs --calibrate) so the runtime runs "
                   "uint8 x int8 conv kernels.")
@click.option("--calibrate", "calib", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Calibration samples: a .npy float array (S, C, H, W) of typical inputs.")
@click.option("--calib-method", type=click.Choice(["minmax", "percentile"]), default="minmax",
              show_default=True)
@click.option("-q", "--quiet", is_flag=True, help="Print only the summary line.")
@guarded
def convert(src, dst, weights, granularity, threshold, keep_float, reference_onnx, mean, std,
            labels, activations, calib, calib_method, quiet):
    """Convert an ONNX model SRC into a .edgenet file."""
    try:
        from converters.convert import convert as do_convert
    except ImportError as e:
        raise EdgenetError(f"the converter needs the 'onnx' extra: pip install 'edgenet[onnx]' "
                           f"({e})") from None
    keep = () if keep_float.strip() in ("", "none") else tuple(
        k.strip() for k in keep_float.split(","))
    bad = [k for k in keep if k not in ("first", "last")]
    if bad:
        raise InputError(f"--keep-float: unknown value(s) {bad} (use first,last or none)")

    def floats(opt, s):
        if s is None:
            return None
        try:
            return [float(v) for v in s.split(",")]
        except ValueError:
            raise InputError(f"{opt}: expected comma-separated numbers, got {s!r}") from None

    samples = None
    if activations == "int8":
        if calib is None:
            raise InputError("--activations int8 needs --calibrate SAMPLES.npy")
        try:
            samples = np.load(calib, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise InputError(f"{calib}: cannot read calibration samples: {e}") from None
        if samples.dtype.kind not in "fiu" or samples.ndim < 2 or samples.size == 0:
            raise InputError(f"{calib}: expected a numeric array (S, C, H, W), got "
                             f"{samples.dtype} {samples.shape}")
        if not np.isfinite(samples).all():
            raise InputError(f"{calib}: calibration samples contain NaN or infinity")
    elif calib is not None:
        raise InputError("--calibrate is only used with --activations int8")
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
                            reference_onnx=reference_onnx, mean=floats("--mean", mean),
                            std=floats("--std", std), labels=label_list, progress=progress,
                            activations=activations, calibration=samples,
                            calib_method=calib_method)
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)
    if quiet:
        click.echo(report.format_table().strip().splitlines()[-1])
    else:
        click.echo(report.format_table())


# -- info --------------------------------------------------------------------------------
def describe(path) -> dict:
    from .format import BITS, read_model
    m = read_model(path)
    g = m.graph
    weights = m.weights()
    enc = Counter()
    params = 0
    wbytes = 0
    qbits = 0.0
    qparams = 0
    for name, t in weights.items():
        n = int(np.prod(t.shape)) if t.shape else 1
        params += n
        nb = t.nbytes + (t.scale.nbytes if t.scale is not None else 0)
        wbytes += nb
        enc[t.encoding.value] += n
        qbits += n * BITS[t.encoding]
        qparams += n
    return {
        "file": os.path.abspath(path),
        "bytes": m.size,
        "format_version": m.header["version"],
        "inputs": g["inputs"],
        "outputs": g["outputs"],
        "nodes": len(g["nodes"]),
        "ops": dict(Counter(n["op"] for n in g["nodes"]).most_common()),
        "parameters": params,
        "parameters_by_encoding": dict(enc),
        "weight_bytes": wbytes,
        "bits_per_weight": (8.0 * wbytes / params) if params else 0.0,
        "metadata": {k: v for k, v in m.metadata.items() if k != "layers"},
    }


@main.command()
@click.argument("model", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@guarded
def info(model, as_json):
    """Describe a .edgenet file: inputs, outputs, ops, parameters, encodings, metadata."""
    d = describe(model)
    if as_json:
        click.echo(json.dumps(d, indent=2))
        return
    click.echo(f"{d['file']}  ({d['bytes']:,} bytes, format v{d['format_version']})")
    for kind in ("inputs", "outputs"):
        for v in d[kind]:
            shape = ["N" if s is None else s for s in v["shape"]]
            click.echo(f"  {kind[:-1]:6s} {v['name']}: {v.get('dtype', 'float32')} {shape}")
    click.echo(f"  nodes  {d['nodes']}: " + ", ".join(f"{k}×{v}" for k, v in d["ops"].items()))
    click.echo(f"  params {d['parameters']:,} in {d['weight_bytes']:,} bytes "
               f"({d['bits_per_weight']:.2f} bits/weight): " +
               ", ".join(f"{k} {v:,}" for k, v in d["parameters_by_encoding"].items()))
    for k, v in d["metadata"].items():
        s = json.dumps(v)
        click.echo(f"  {k}: {s if len(s) < 100 else s[:97] + '...'}")


# -- run ---------------------------------------------------------------------------------
def load_input(path: str, spec, metadata: dict) -> np.ndarray:
    """Read INPUT (.npy, .npz or an image) as a float32 batch for ``spec``."""
    ext = os.path.splitext(path)[1].lower()
    if not os.path.exists(path):
        raise InputError(f"{path}: no such file")
    try:
        if ext == ".npy":
            x = np.load(path, allow_pickle=False)
        elif ext == ".npz":
            with np.load(path, allow_pickle=False) as z:
                key = spec.name if spec.name in z.files else ("x" if "x" in z.files else None)
                if key is None:
                    if len(z.files) != 1:
                        raise InputError(f"{path}: no array named '{spec.name}' or 'x' "
                                         f"(has {z.files})")
                    key = z.files[0]
                x = z[key]
        else:
            x = load_image(path, spec, metadata)
    except EdgenetError:
        raise
    except Exception as e:
        raise InputError(f"{path}: cannot read input: {e}") from None
    if x.dtype.kind not in "fiub":
        raise InputError(f"{path}: input has dtype {x.dtype}, expected numbers")
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == len(spec.shape) - 1:
        x = x[None]
    return x


def load_image(path, spec, metadata):
    try:
        from PIL import Image
    except ImportError:
        raise InputError("reading images needs Pillow: pip install pillow") from None
    pre = metadata.get("preprocessing") or {}
    shape = spec.shape
    if len(shape) != 4:
        raise InputError(f"model input '{spec.name}' is not an image tensor: {list(shape)}")
    c, h, w = shape[1], shape[2], shape[3]
    size = pre.get("size") or [h, w]
    try:
        img = Image.open(path)
        img = img.convert("L" if c == 1 else "RGB").resize((int(size[1]), int(size[0])))
    except Exception as e:
        raise InputError(f"{path}: cannot read image: {e}") from None
    x = np.asarray(img, dtype=np.float32) / 255.0
    x = x[None] if c == 1 else x.transpose(2, 0, 1)
    if pre.get("mean") is not None:
        x = x - np.asarray(pre["mean"], np.float32).reshape(-1, 1, 1)
    if pre.get("std") is not None:
        x = x / np.asarray(pre["std"], np.float32).reshape(-1, 1, 1)
    return x[None]


def _top_k(y, k, labels):
    rows = []
    for r in y.reshape(y.shape[0], -1):
        idx = np.argsort(-r, kind="stable")[:k]
        rows.append([(int(i), float(r[i]), labels[i] if labels and i < len(labels) else None)
                     for i in idx])
    return rows


@main.command()
@click.argument("model", required=False, type=click.Path())
@click.argument("input", required=False, type=click.Path())
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Save the output as .npy.")
@click.option("--device", type=click.Choice(["cpu", "cuda", "reference"]), default="cpu",
              show_default=True)
@click.option("--threads", type=click.IntRange(min=1), default=None)
@click.option("--top-k", "top_k", type=click.IntRange(min=1), default=None,
              help="Print the K best classes per input (labels from the file if stored).")
@click.option("--activations", type=click.Choice(["f32", "int8"]), default=None,
              help="Activation precision (default: int8 when the file is calibrated, else f32).")
@click.option("--policy", type=click.Choice(["expanded", "packed"]), default=None,
              help="Keep weights expanded (fastest) or bit-packed (least memory).")
@guarded
def run(model, input, output, device, threads, top_k, activations, policy):
    """Run MODEL on INPUT (.npy, .npz or an image).

    With no arguments, runs the bundled example (a ternary digits classifier) on the
    bundled sample digits and reports its accuracy.
    """
    from .runtime import load
    example = model is None
    if example:
        model, input = EXAMPLE_MODEL, EXAMPLE_INPUT
    elif input is None:
        raise InputError("missing INPUT (a .npy, .npz or image file)")
    m = load(model, device=device, threads=threads, policy=policy, activations=activations)
    spec = m.inputs[0]
    if len(m.inputs) != 1:
        raise InputError(f"{model}: model has {len(m.inputs)} inputs; `edgenet run` feeds one")
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
        for i, row in enumerate(_top_k(y, top_k or 1, labels)):
            click.echo(f"  [{i}] " + ", ".join(
                f"{lab if lab is not None else idx}: {v:.4f}" for idx, v, lab in row))
    elif not output:
        click.echo(np.array2string(y, threshold=20, precision=4))


# -- warmup ------------------------------------------------------------------------------
@main.command()
@click.argument("model", type=click.Path())
@click.option("--device", type=click.Choice(["cpu", "cuda", "reference"]), default="cpu")
@guarded
def warmup(model, device):
    """Compile (or load from the disk cache) every kernel MODEL needs."""
    import time
    from .runtime import load
    t0 = time.perf_counter()
    load(model, device=device, warmup=True)
    click.echo(f"{model}: kernels ready in {time.perf_counter() - t0:.2f} s")


def _register_optional():
    from . import bench_cli  # noqa: F401  (adds `bench`)
    from . import batch  # noqa: F401  (adds `batch`)


_register_optional()

if __name__ == "__main__":  # pragma: no cover  (python -m edgenet.cli: use the package's
    from edgenet.cli import main as _main  # module, where bench/batch registered themselves)
    _main()
