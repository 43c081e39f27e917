"""The only reader of .edgenet files: memory-maps, validates everything before use, and
hands out zero-copy views. Any problem is a ``FormatError`` naming the file and field."""
from __future__ import annotations

import json
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
        magic, version, flags, hlen, hcrc, _ = PREAMBLE.unpack(bytes(self._map[:PREAMBLE.size]))
        if magic != MAGIC:
            raise FormatError(f"{self.path}: not an edgenet file (bad magic {magic[:8]!r})")
        if version != VERSION:
            raise FormatError(f"{self.path}: unsupported format version {version} "
                              f"(this edgenet reads version {VERSION})")
        if flags != 0:
            raise FormatError(f"{self.path}: unknown flags 0x{flags:x} in preamble")
        if hlen > MAX_HEADER_BYTES or PREAMBLE.size + hlen > size:
            raise FormatError(f"{self.path}: header length {hlen} exceeds the file "
                              f"({size} bytes): truncated or corrupt")
        raw = bytes(self._map[PREAMBLE.size:PREAMBLE.size + hlen])
        if zlib.crc32(raw) & 0xFFFFFFFF != hcrc:
            raise FormatError(f"{self.path}: header checksum mismatch (corrupt file)")
        try:
            header = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
        except (UnicodeDecodeError, ValueError, RecursionError) as e:
            raise FormatError(f"{self.path}: header is not valid JSON: {e}") from None
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
            if not isinstance(name, str) or not name or len(name) > MAX_NAME:
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
            if enc not in FLOAT_DTYPES and len(shape) < 1:
                self._fail(f"{where}: quantized tensor needs an output-channel axis")
            for f in ("offset", "nbytes", "crc32"):
                if type(e.get(f)) is not int or e[f] < 0:
                    self._fail(f"{where}: field '{f}' missing or not a non-negative integer")
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
            for i, v in enumerate(g[kind]):
                if (not isinstance(v, dict) or not isinstance(v.get("name"), str)
                        or not isinstance(v.get("shape"), list) or len(v["shape"]) > MAX_RANK
                        or not all(s is None or (type(s) is int and 0 < s < 2**31)
                                   for s in v["shape"])):
                    self._fail(f"graph {kind[:-1]} #{i}: bad name or shape")
                if v.get("dtype", "float32") != "float32":
                    self._fail(f"graph {kind[:-1]} '{v['name']}': unsupported dtype {v.get('dtype')!r}")
        for i, n in enumerate(g["nodes"]):
            if (not isinstance(n, dict) or not isinstance(n.get("op"), str)
                    or not isinstance(n.get("name", ""), str)
                    or not isinstance(n.get("inputs"), list)
                    or not all(isinstance(s, str) for s in n["inputs"])
                    or not isinstance(n.get("outputs"), list) or not n["outputs"]
                    or not all(isinstance(s, str) and s for s in n["outputs"])
                    or not isinstance(n.get("attrs", {}), dict)):
                self._fail(f"graph node #{i}: malformed node entry")
        self.graph = g

    def verify(self):
        """Check every tensor's CRC-32 and quantized codes (invalid codes, nonzero padding)."""
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
