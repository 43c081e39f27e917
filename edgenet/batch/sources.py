"""Discovery of a batch job's inputs and reading its samples.

INPUTS is a directory (its files, recursively, in sorted order), a glob, or one file. Every
file is an image (one sample, keyed by its path relative to INPUTS), a ``.npy`` holding one
sample (C, H, W) or a shard of samples (N, C, H, W), or a ``.npz`` with such an array (named
like the model input, ``x``, or its only array). A sample of a shard is keyed ``file:index``.
"""
from __future__ import annotations

import glob as _glob
import os
import zipfile
from dataclasses import dataclass

import numpy as np

from ..errors import EdgenetError, InputError
from ..io import IMAGE_EXTS, load_image

ARRAY_EXTS = (".npy", ".npz")
PARTIAL_SUFFIX = ".partial"  # the journal folder beside an output: skipped by discovery


@dataclass(frozen=True)
class Source:
    """One input file: ``n`` samples; ``single`` when the file is one sample (no index)."""
    path: str
    key: str
    kind: str            # "npy" | "npz" | "image"
    member: str | None   # array name inside a .npz
    n: int
    single: bool
    size: int
    mtime_ns: int

    def keys(self, a: int, b: int) -> list:
        return [self.key] if self.single else [f"{self.key}:{i}" for i in range(a, b)]


def _npy_header(fp):
    version = np.lib.format.read_magic(fp)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(fp)
    else:
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(fp)
    return tuple(shape), np.dtype(dtype)


def _npz_member(path, spec_name):
    with zipfile.ZipFile(path) as z:
        names = [n[:-4] for n in z.namelist() if n.endswith(".npy")]
        for want in (spec_name, "x"):
            if want in names:
                member = want
                break
        else:
            if len(names) != 1:
                raise InputError(f"{path}: no array named '{spec_name}' or 'x' (has {names})")
            member = names[0]
        with z.open(member + ".npy") as f:
            shape, dtype = _npy_header(f)
    return member, shape, dtype


def _array_source(path, key, spec, kind):
    try:
        if kind == "npy":
            with open(path, "rb") as f:
                shape, dtype = _npy_header(f)
            member = None
        else:
            member, shape, dtype = _npz_member(path, spec.name)
    except EdgenetError:
        raise
    except Exception as e:
        raise InputError(f"{path}: cannot read input: {e}") from None
    if dtype.kind not in "fiub":
        raise InputError(f"{path}: input has dtype {dtype}, expected numbers")
    want = tuple(spec.shape[1:])
    if len(shape) == len(want) and shape == want:
        n, single = 1, True
    elif len(shape) == len(want) + 1 and tuple(shape[1:]) == want:
        n, single = int(shape[0]), False
    else:
        exp = "(N, " + ", ".join(str(d) for d in want) + ")"
        raise InputError(f"{path}: array of shape {tuple(shape)}; model input "
                         f"'{spec.name}' expects {exp} or one sample {want}")
    st = os.stat(path)
    return Source(os.path.abspath(path), key, kind, member, n, single, st.st_size,
                  st.st_mtime_ns)


def _kind(path):
    ext = os.path.splitext(path)[1].lower()
    if ext == ".npy":
        return "npy"
    if ext == ".npz":
        return "npz"
    if ext in IMAGE_EXTS:
        return "image"
    return None


def discover(inputs: str, spec) -> list:
    """The input files of INPUTS (a directory, glob or file), sorted, as Sources."""
    if os.path.isdir(inputs):
        root = inputs
        paths = []
        for d, dirs, files in os.walk(inputs):
            dirs[:] = sorted(x for x in dirs if not x.startswith(".") and
                             not x.endswith(PARTIAL_SUFFIX))
            paths.extend(os.path.join(d, f) for f in files if not f.startswith("."))
    elif _glob.has_magic(inputs):
        parts = inputs.split(os.sep)
        fixed = []
        for p in parts:
            if _glob.has_magic(p):
                break
            fixed.append(p)
        root = os.sep.join(fixed) or "."
        paths = [p for p in _glob.glob(inputs, recursive=True) if os.path.isfile(p)]
    elif os.path.isfile(inputs):
        root = os.path.dirname(inputs) or "."
        paths = [inputs]
    else:
        raise InputError(f"{inputs}: no such file, directory or matching glob")
    sources = []
    for p in sorted(paths, key=lambda q: os.path.relpath(q, root)):
        kind = _kind(p)
        if kind is None:
            continue
        key = os.path.relpath(p, root).replace(os.sep, "/")
        if kind == "image":
            if len(spec.shape) != 4:
                raise InputError(f"{p}: an image, but model input '{spec.name}' is not an "
                                 f"image tensor: {list(spec.shape)}")
            st = os.stat(p)
            sources.append(Source(os.path.abspath(p), key, "image", None, 1, True,
                                  st.st_size, st.st_mtime_ns))
        else:
            sources.append(_array_source(p, key, spec, kind))
    if not sources:
        raise InputError(f"{inputs}: no inputs found (images, .npy or .npz files)")
    return sources


def plan_chunks(sources: list, chunk_size: int) -> list:
    """Cut the samples into chunks of ``chunk_size`` consecutive samples.

    Returns a list of chunks; a chunk is (start, stop, segments) with global sample indices
    [start, stop) and segments [(source_index, a, b), ...] covering them in order."""
    total = sum(s.n for s in sources)
    chunks = []
    si, off = 0, 0  # current source, first unused sample in it
    for start in range(0, total, chunk_size):
        stop = min(start + chunk_size, total)
        need, segs = stop - start, []
        while need:
            while sources[si].n - off == 0:
                si, off = si + 1, 0
            take = min(need, sources[si].n - off)
            segs.append((si, off, off + take))
            off += take
            need -= take
        chunks.append((start, stop, segs))
    return chunks


class ArrayCache:
    """Keeps the last opened .npz member / .npy mmap so consecutive chunks reuse it."""

    def __init__(self):
        self.key, self.arr = None, None

    def get(self, src: Source):
        k = (src.path, src.member)
        if self.key != k:
            if src.kind == "npy":
                self.arr = np.load(src.path, mmap_mode="r", allow_pickle=False)
            else:
                with np.load(src.path, allow_pickle=False) as z:
                    self.arr = z[src.member]
            self.key = k
        return self.arr


def load_samples(sources: list, segments, spec, metadata, cache: ArrayCache | None = None):
    """(keys, x float32 (n, ...)) for the given segments."""
    cache = cache or ArrayCache()
    keys, xs = [], []
    for si, a, b in segments:
        src = sources[si]
        try:
            if src.kind == "image":
                x = load_image(src.path, spec, metadata)
            else:
                arr = cache.get(src)
                x = arr[None] if src.single else arr[a:b]
        except EdgenetError:
            raise
        except Exception as e:
            raise InputError(f"{src.path}: cannot read input: {e}") from None
        keys.extend(src.keys(a, b))
        xs.append(np.asarray(x, dtype=np.float32))
    return keys, np.ascontiguousarray(np.concatenate(xs) if len(xs) > 1 else xs[0])
