"""The only reader of .edgenet files: memory-maps, validates everything before use, and
hands out zero-copy views. Any problem is a ``FormatError`` naming the file and field."""
from __future__ import annotations

import json
import math
import os
import zlib
from typing import NamedTuple

import numpy as np

from ..errors import FormatError
from .codecs import CODECS, FLOAT_DTYPES, Packed, stored_nbytes
from .constants import (ALIGNMENT, MAGIC, MAX_HEADER_BYTES, MAX_NAME, MAX_NODES, MAX_RANK,
                        MAX_TENSORS, PREAMBLE, VERSION, Encoding, align)


class TensorInfo(NamedTuple):
    name: str
    encoding: Encoding
    shape: tuple
    offset: int
    nbytes: int
    crc32: int
    scale: str | None


def _reject_constant(name):
    raise ValueError(f"non-finite number {name} in header")


def _parse_float(text):
    v = float(text)
    if not math.isfinite(v):  # "1e999" parses to inf without reaching parse_constant
        raise ValueError(f"non-finite number {text[:40]} in header")
    return v


# Bound on the elements of any tensor or declared graph input/output: 2**31 keeps every
# index within int32/int64 arithmetic in the kernels and every byte count far from overflow.
MAX_ELEMENTS = 1 << 31
_MAX_JSON_DEPTH = 64


def _good_name(s) -> bool:
    """A non-empty, printable (no newline/control/surrogate) string of bounded length."""
    return isinstance(s, str) and 0 < len(s) <= MAX_NAME and s.isprintable()


def _depth_ok(obj, limit: int = _MAX_JSON_DEPTH) -> bool:
    """Nesting depth of parsed JSON (iterative), so no later recursive walk of a hostile
    header (printing, copying) can exceed the interpreter's recursion limit."""
    stack = [(obj, 1)]
    while stack:
        o, d = stack.pop()
        if isinstance(o, (dict, list)):
            if d > limit:
                return False
            stack.extend((v, d + 1) for v in (o.values() if isinstance(o, dict) else o))
    return True


class ModelFile:
    """A validated, memory-mapped .edgenet file.

    ``verify`` checks every tensor's CRC-32 at open (default), so a flipped bit anywhere is
    reported before any kernel runs.
    """

    def __init__(self, path, verify: bool = True):
        self.path = os.fspath(path)
        try:
            size = os.path.getsize(self.path)
        except OSError as e:
            raise FormatError(f"{self.path}: cannot open: {e.strerror or e}") from None
        if os.path.isdir(self.path):
            raise FormatError(f"{self.path}: is a directory, not a model file")
        if size < PREAMBLE.size:
            raise FormatError(f"{self.path}: not an edgenet file (too short: {size} bytes)")
        try:
            self._map = np.memmap(self.path, dtype=np.uint8, mode="r")
        except (OSError, ValueError) as e:
            raise FormatError(f"{self.path}: cannot map: {e}") from None
        magic, version, flags, hlen, hcrc, reserved = PREAMBLE.unpack(
            bytes(self._map[:PREAMBLE.size]))
        if magic != MAGIC:
            raise FormatError(f"{self.path}: not an edgenet file (bad magic {magic[:8]!r})")
        if version != VERSION:
            raise FormatError(f"{self.path}: unsupported format version {version} "
                              f"(this edgenet reads version {VERSION})")
        if flags != 0:
            raise FormatError(f"{self.path}: unknown flags 0x{flags:x} in preamble")
        if reserved != 0:
            raise FormatError(f"{self.path}: reserved preamble field is 0x{reserved:x}, "
                              f"not 0 (corrupt file)")
        if hlen > MAX_HEADER_BYTES or PREAMBLE.size + hlen > size:
            raise FormatError(f"{self.path}: header length {hlen} exceeds the file "
                              f"({size} bytes): truncated or corrupt")
        raw = bytes(self._map[PREAMBLE.size:PREAMBLE.size + hlen])
        if zlib.crc32(raw) & 0xFFFFFFFF != hcrc:
            raise FormatError(f"{self.path}: header checksum mismatch (corrupt file)")
        try:
            header = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant,
                                parse_float=_parse_float)
        except (UnicodeDecodeError, ValueError, RecursionError, MemoryError) as e:
            raise FormatError(f"{self.path}: header is not valid JSON: "
                              f"{type(e).__name__}: {str(e)[:200]}") from None
        if not _depth_ok(header):
            raise FormatError(f"{self.path}: header JSON nested deeper than "
                              f"{_MAX_JSON_DEPTH} levels")
        self.header_nbytes = hlen
        self.data_start = align(PREAMBLE.size + hlen)
        self.size = size
        self._parse(header)
        if verify:
            self.verify()

    # -- header validation -------------------------------------------------------------
    def _fail(self, msg):
        raise FormatError(f"{self.path}: {msg}")

    def _parse(self, h):
        if not isinstance(h, dict) or h.get("format") != "edgenet":
            self._fail("header is not an edgenet header")
        if type(h.get("version")) is not int or h["version"] != VERSION:
            self._fail(f"header version {h.get('version')!r} != preamble version {VERSION}")
        for key, typ in (("graph", dict), ("tensors", list), ("metadata", dict)):
            if not isinstance(h.get(key), typ):
                self._fail(f"header field '{key}' missing or not a {typ.__name__}")
        self.header = h
        self.metadata = h["metadata"]
        ents = h["tensors"]
        if len(ents) > MAX_TENSORS:
            self._fail(f"too many tensors ({len(ents)} > {MAX_TENSORS})")
        data_len = self.size - self.data_start
        infos = {}
        for i, e in enumerate(ents):
            where = f"tensor #{i}"
            if not isinstance(e, dict):
                self._fail(f"{where}: entry is not an object")
            name = e.get("name")
            if not _good_name(name):
                self._fail(f"{where}: bad name")
            where = f"tensor '{name}'"
            if name in infos:
                self._fail(f"{where}: duplicate name")
            try:
                enc = Encoding(e.get("encoding"))
            except ValueError:
                self._fail(f"{where}: unknown encoding {e.get('encoding')!r}")
            shape = e.get("shape")
            if (not isinstance(shape, list) or len(shape) > MAX_RANK
                    or not all(type(s) is int and 0 <= s < 2**31 for s in shape)):
                self._fail(f"{where}: bad shape {shape!r}")
            if enc not in FLOAT_DTYPES and (len(shape) < 1 or 0 in shape):
                self._fail(f"{where}: quantized tensor needs a non-empty shape with an "
                           f"output-channel axis, got {shape}")
            if math.prod(shape) > MAX_ELEMENTS:  # exact (Python ints): no int64 wrap-around
                self._fail(f"{where}: shape {shape} has more than {MAX_ELEMENTS} elements")
            for f in ("offset", "nbytes", "crc32"):
                if type(e.get(f)) is not int or not 0 <= e[f] < 2**63:
                    self._fail(f"{where}: field '{f}' missing or not a 64-bit non-negative "
                           f"integer")
            if f == "crc32" and e[f] >= 2**32:
                self._fail(f"{where}: crc32 {e[f]} is not a 32-bit value")
            off, nb = e["offset"], e["nbytes"]
            if off % ALIGNMENT:
                self._fail(f"{where}: offset {off} not aligned to {ALIGNMENT}")
            if off + nb > data_len:
                self._fail(f"{where}: bytes [{off}, {off + nb}) run past the end of the "
                           f"data section ({data_len} bytes): truncated file")
            want = stored_nbytes(enc, shape)
            if nb != want:
                self._fail(f"{where}: nbytes {nb} != {want} expected for {enc.value} {shape}")
            scale = e.get("scale")
            if (scale is None) != (enc in FLOAT_DTYPES):
                self._fail(f"{where}: 'scale' must be given exactly for quantized encodings")
            if scale is not None and not isinstance(scale, str):
                self._fail(f"{where}: 'scale' is not a tensor name")
            infos[name] = TensorInfo(name, enc, tuple(shape), off, nb, e["crc32"], scale)
        # Tensors may not overlap; the file ends exactly at the padded end of the last one
        # (so truncation, appended bytes and every byte between tensors are accounted for).
        end = 0
        for t in sorted(infos.values(), key=lambda t: t.offset):
            if t.nbytes and t.offset < end:
                self._fail(f"tensor '{t.name}': bytes [{t.offset}, {t.offset + t.nbytes}) "
                           f"overlap the previous tensor (ends at {end})")
            end = max(end, t.offset + t.nbytes)
        if self.data_start + align(end) != self.size:
            self._fail(f"file size {self.size} != {self.data_start + align(end)} bytes implied "
                       f"by the header: truncated or trailing data")
        self._data_end = end
        for t in infos.values():
            if t.scale is not None:
                s = infos.get(t.scale)
                if s is None or s.encoding != Encoding.F32 or s.shape != (t.shape[0],):
                    self._fail(f"tensor '{t.name}': scale tensor '{t.scale}' missing or not "
                               f"f32 of shape ({t.shape[0]},)")
        self.tensors = infos
        self._parse_graph(h["graph"])

    def _parse_graph(self, g):
        for key in ("inputs", "outputs", "nodes"):
            if not isinstance(g.get(key), list):
                self._fail(f"graph field '{key}' missing or not a list")
        if len(g["nodes"]) > MAX_NODES:
            self._fail(f"too many nodes ({len(g['nodes'])})")
        for kind in ("inputs", "outputs"):
            if len(g[kind]) > MAX_TENSORS:
                self._fail(f"too many graph {kind} ({len(g[kind])})")
            for i, v in enumerate(g[kind]):
                if (not isinstance(v, dict) or not _good_name(v.get("name"))
                        or not isinstance(v.get("shape"), list) or len(v["shape"]) > MAX_RANK
                        or not all(s is None or (type(s) is int and 0 < s < 2**31)
                                   for s in v["shape"])):
                    self._fail(f"graph {kind[:-1]} #{i}: bad name or shape")
                if math.prod(s for s in v["shape"] if s is not None) > MAX_ELEMENTS:
                    self._fail(f"graph {kind[:-1]} '{v['name']}': shape {v['shape']} has more "
                               f"than {MAX_ELEMENTS} elements per sample")
                if v.get("dtype", "float32") != "float32":
                    self._fail(f"graph {kind[:-1]} '{v['name']}': unsupported dtype "
                               f"{v.get('dtype')!r}")
        for i, n in enumerate(g["nodes"]):
            if (not isinstance(n, dict) or not isinstance(n.get("op"), str)
                    or not (n.get("name", "") == "" or _good_name(n.get("name")))
                    or not isinstance(n.get("inputs"), list)
                    or not all(s == "" or _good_name(s) for s in n["inputs"])
                    or not isinstance(n.get("outputs"), list) or not n["outputs"]
                    or not all(_good_name(s) for s in n["outputs"])
                    or not isinstance(n.get("attrs", {}), dict)):
                self._fail(f"graph node #{i}: malformed node entry")
            if not _good_name(n["op"]) or len(n["op"]) > 64:
                self._fail(f"graph node #{i}: malformed op name")
            n.setdefault("attrs", {})  # backends index node["attrs"] directly
        self.graph = g
        self._check_metadata(self.metadata)

    def _check_metadata(self, md):
        """The metadata fields the runtime and CLI read have the types they assume."""
        labels = md.get("labels")
        if labels is not None and (not isinstance(labels, list)
                                   or not all(isinstance(x, str) for x in labels)):
            self._fail("metadata 'labels' must be a list of strings")
        pre = md.get("preprocessing")
        if pre is None:
            return
        if not isinstance(pre, dict):
            self._fail("metadata 'preprocessing' must be an object")
        for k in ("mean", "std"):
            v = pre.get(k)
            if v is not None and (not isinstance(v, list) or not v or len(v) > 4096 or not all(
                    type(x) in (int, float) and math.isfinite(x) for x in v)):
                self._fail(f"metadata 'preprocessing.{k}' must be a list of finite numbers")
        if pre.get("std") is not None and any(x == 0 for x in pre["std"]):
            self._fail("metadata 'preprocessing.std' contains 0")
        size = pre.get("size")
        if size is not None and (not isinstance(size, list) or len(size) != 2 or not all(
                type(x) is int and 0 < x <= 65536 for x in size)):
            self._fail("metadata 'preprocessing.size' must be [height, width] "
                       "(positive integers <= 65536)")

    def verify(self):
        """Check every tensor's CRC-32 and quantized codes (invalid codes, nonzero padding),
        and that every byte of the file outside the preamble, header and tensors (alignment
        padding) is zero: together with the header CRC, any flipped bit is detected."""
        spans = sorted((t.offset, t.offset + t.nbytes) for t in self.tensors.values())
        gaps = []
        pos = PREAMBLE.size + int(self.header_nbytes)
        for a, b in [(self.data_start + a, self.data_start + b) for a, b in spans]:
            if a > pos:
                gaps.append((pos, a))
            pos = max(pos, b)
        if self.size > pos:
            gaps.append((pos, self.size))
        for a, b in gaps:
            if self._map[a:b].any():
                self._fail(f"nonzero bytes in the alignment padding at [{a}, {b}) "
                           f"(corrupt file)")
        for t in self.tensors.values():
            raw = self._raw(t)
            if zlib.crc32(raw) & 0xFFFFFFFF != t.crc32:
                self._fail(f"tensor '{t.name}': checksum mismatch (corrupt data)")
            if t.encoding in CODECS:
                o, k = t.shape[0], int(np.prod(t.shape[1:], dtype=np.int64))
                rows = raw.view(CODECS[t.encoding].storage_dtype).reshape(o, -1)
                if not CODECS[t.encoding].valid_rows(rows, k):
                    self._fail(f"tensor '{t.name}': invalid {t.encoding.value} codes or "
                               f"nonzero padding")

    # -- access ------------------------------------------------------------------------
    def _raw(self, t: TensorInfo) -> np.ndarray:
        s = self.data_start + t.offset
        return self._map[s:s + t.nbytes]

    def tensor(self, name: str) -> Packed:
        """Zero-copy Packed view of a stored tensor (scales attached)."""
        t = self.tensors.get(name)
        if t is None:
            raise FormatError(f"{self.path}: no tensor named '{name}'")
        raw = self._raw(t)
        if t.encoding in FLOAT_DTYPES:
            return Packed(t.encoding, t.shape, raw.view(FLOAT_DTYPES[t.encoding]).reshape(t.shape))
        o = t.shape[0]
        data = raw.view(CODECS[t.encoding].storage_dtype).reshape(o, -1)
        scale = self._raw(self.tensors[t.scale]).view("<f4")
        return Packed(t.encoding, t.shape, data, scale)

    def weights(self) -> dict:
        """All stored tensors except companion scales, as Packed views."""
        scales = {t.scale for t in self.tensors.values() if t.scale}
        return {n: self.tensor(n) for n in self.tensors if n not in scales}

    def close(self):
        self._map = None


def read_model(path, verify: bool = True) -> ModelFile:
    return ModelFile(path, verify=verify)
