"""Files in and out: model inputs from .npy/.npz/images, atomic output saving, the bundled
example, and recognising a file that is not a .edgenet model (an ONNX model).

Library code (no click): the command line and ``edgenet.batch`` both build on it.
"""
from __future__ import annotations

import hashlib
import os

import numpy as np

from .errors import EdgenetError, InputError

DATA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
EXAMPLE_MODEL = os.path.join(DATA_DIR, "digits_ternary.edgenet")
EXAMPLE_INPUT = os.path.join(DATA_DIR, "digits_samples.npz")

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm",
              ".ppm", ".pbm")


# -- output ------------------------------------------------------------------------------

def sha256_file(path) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()

def atomic_save(path: str, writer):
    """Call writer(tmp_path) and rename into place; never leaves a half-written file."""
    from .format.writer import atomic_write
    atomic_write(path, writer, by_path=True)


def save_npy(path, arr):
    """Write ``arr`` to ``path`` as .npy, atomically (no pickle)."""
    def w(tmp):
        with open(tmp, "wb") as f:
            np.save(f, arr, allow_pickle=False)
    atomic_save(path, w)


def check_writable_file(path, what: str = "output") -> str:
    """Fail early (InputError) unless ``path`` can be created: its folder exists and is
    writable and ``path`` is not a directory. Returns the absolute path."""
    p = os.path.abspath(os.fspath(path))
    d = os.path.dirname(p)
    if os.path.isdir(p):
        raise InputError(f"{path}: {what} is a directory, expected a file name")
    if not os.path.isdir(d):
        raise InputError(f"{path}: {what} folder {d} does not exist")
    if not os.access(d, os.W_OK | os.X_OK):
        raise InputError(f"{path}: {what} folder {d} is not writable")
    if os.path.exists(p) and not os.access(p, os.W_OK):
        raise InputError(f"{path}: {what} exists and is not writable")
    return p


# -- what kind of model file -------------------------------------------------------------
def looks_like_onnx(path) -> bool:
    """True when ``path`` is (probably) an ONNX model rather than a .edgenet file: an
    ``.onnx`` name, or a protobuf ModelProto start (field 1 ``ir_version``, a small varint)."""
    from .format import MAGIC
    try:
        with open(path, "rb") as f:
            head = f.read(len(MAGIC))
    except OSError:
        return False
    if head == MAGIC:
        return False
    if os.fspath(path).lower().endswith(".onnx"):
        return True
    return len(head) >= 4 and head[0] == 0x08 and 1 <= head[1] <= 20 and \
        head[2] in (0x12, 0x1a, 0x22, 0x2a, 0x32, 0x3a, 0x42, 0x52)


def check_model_path(path) -> None:
    """Fail with a hint (InputError) when ``path`` is missing or is an ONNX model."""
    if not os.path.exists(path):
        raise InputError(f"{path}: no such file")
    if os.path.isdir(path):
        raise InputError(f"{path}: is a directory, expected a .edgenet file")
    if looks_like_onnx(path):
        stem = os.path.splitext(os.path.basename(path))[0]
        raise InputError(f"{path} is an ONNX model; convert it first: edgenet convert "
                         f"{path} -o {stem}.edgenet")


# -- input -------------------------------------------------------------------------------
def is_image(path) -> bool:
    return os.path.splitext(os.fspath(path))[1].lower() in IMAGE_EXTS


def load_input(path: str, spec, metadata: dict) -> np.ndarray:
    """Read INPUT (.npy, .npz or an image) as a float32 batch for ``spec``."""
    ext = os.path.splitext(path)[1].lower()
    if not os.path.exists(path):
        raise InputError(f"{path}: no such file")
    if os.path.isdir(path):
        raise InputError(f"{path}: is a directory, expected a .npy, .npz or image file")
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
    """One image as a (1, C, H, W) float32 batch: resized to the stored preprocessing size
    (else the model input's), scaled to [0, 1], then the stored mean/std applied."""
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
        img = img.convert("L" if c == 1 else "RGB")
        # a symbolic height/width (None) keeps the image's own size along it
        tw = img.size[0] if size[1] is None else int(size[1])
        th = img.size[1] if size[0] is None else int(size[0])
        if (tw, th) != img.size:
            img = img.resize((tw, th))
    except Exception as e:
        raise InputError(f"{path}: cannot read image: {e}") from None
    x = np.asarray(img, dtype=np.float32) / 255.0
    x = x[None] if c == 1 else x.transpose(2, 0, 1)
    if pre.get("mean") is not None:
        x = x - np.asarray(pre["mean"], np.float32).reshape(-1, 1, 1)
    if pre.get("std") is not None:
        x = x / np.asarray(pre["std"], np.float32).reshape(-1, 1, 1)
    return x[None]


def has_preprocessing(metadata: dict) -> bool:
    """Whether the model file says how to turn an image into its input (mean/std/size)."""
    pre = metadata.get("preprocessing") or {}
    return any(pre.get(k) is not None for k in ("mean", "std", "size"))


NO_PREPROCESSING_WARNING = ("the model stores no preprocessing (mean/std); image pixels are "
                            "fed as values in [0, 1] (convert with --mean/--std to store them)")
