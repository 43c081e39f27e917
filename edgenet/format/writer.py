"""The only writer of .edgenet files. Writes a temporary file beside the destination and
renames it into place, so a reader never sees a half-written model."""
from __future__ import annotations

import json
import os
import tempfile
import zlib

import numpy as np

from .codecs import Packed
from .constants import ALIGNMENT, MAGIC, PREAMBLE, VERSION, align

SCALE_SUFFIX = "::scale"


def _layout(tensors: dict):
    """Yield (entry, array) for every stored blob, companion scales included, with offsets."""
    offset = 0
    for name, t in tensors.items():
        if not isinstance(t, Packed):
            raise TypeError(f"tensor {name!r}: expected Packed, got {type(t).__name__}")
        blobs = [(name, t.encoding.value, list(t.shape), np.ascontiguousarray(t.data))]
        if t.quantized:
            blobs.append((name + SCALE_SUFFIX, "f32", [len(t.scale)],
                          np.ascontiguousarray(t.scale, dtype="<f4")))
        for i, (bname, enc, shape, arr) in enumerate(blobs):
            raw = arr.view(np.uint8).reshape(-1)
            entry = {"name": bname, "encoding": enc, "shape": shape, "offset": offset,
                     "nbytes": int(raw.nbytes), "crc32": zlib.crc32(raw) & 0xFFFFFFFF}
            if i == 0 and t.quantized:
                entry["scale"] = name + SCALE_SUFFIX
            yield entry, raw
            offset = align(offset + raw.nbytes)


def encode_header(graph: dict, entries: list, metadata: dict) -> bytes:
    header = {"format": "edgenet", "version": VERSION, "graph": graph,
              "tensors": entries, "metadata": metadata}
    return json.dumps(header, separators=(",", ":"), allow_nan=False).encode("utf-8")


def write_model(path, *, graph: dict, tensors: dict, metadata: dict | None = None) -> int:
    """Write a model file atomically. Returns the file size in bytes."""
    items = list(_layout(tensors))
    entries = [e for e, _ in items]
    header = encode_header(graph, entries, metadata or {})
    data_start = align(PREAMBLE.size + len(header))
    pre = PREAMBLE.pack(MAGIC, VERSION, 0, len(header), zlib.crc32(header) & 0xFFFFFFFF, 0)
    path = os.fspath(path)
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".edgenet-", suffix=".tmp", dir=d)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(pre)
            f.write(header)
            f.write(b"\0" * (data_start - PREAMBLE.size - len(header)))
            pos = 0
            for e, raw in items:
                f.write(b"\0" * (e["offset"] - pos))
                f.write(raw.tobytes())
                pos = e["offset"] + e["nbytes"]
            f.write(b"\0" * (align(pos) - pos))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return os.path.getsize(path)


assert ALIGNMENT % 8 == 0
