"""Weight codecs: NumPy reference pack/unpack, one registered class per encoding.

Quantized encodings store one *row* per output channel: the K = prod(shape[1:]) integer
levels of that channel's filter, in C order of the logical shape, packed along the
reduction axis so one output channel decodes as a contiguous run of ``row_bytes(K)``
bytes. The dequantized weight is ``scale[o] * levels[o, k]``. Padding bits at the end of
a row are zero (t5: padding trits encode level 0).

t2 (2 bits/weight, 4 per byte, weight j at bits 2*(j%4) of byte j//4)::

    byte:  [ w3 w3 | w2 w2 | w1 w1 | w0 w0 ]   code 00 = 0, 01 = +1, 10 = -1, 11 invalid

q3 (3 bits/weight, 8 weights in 3 bytes = one 24-bit little-endian word, weight p of a
group at bits 3p..3p+2, 3-bit two's complement)::

    code 000 = 0, 001 = +1, 010 = +2, 110 = -2, 111 = -1; 011, 100, 101 invalid

t5 (5 trits per byte, storage only): byte = sum((level_i + 1) * 3**i, i = 0..4) <= 242.
i8: one int8 per weight, levels in [-127, 127].
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..errors import UsageError
from .constants import PACKED_CODE, Encoding

_T2_LUT = np.array([0, 1, -1, 0], dtype=np.int8)
_Q3_LUT = np.array([0, 1, 2, 0, 0, 0, -2, -1], dtype=np.int8)
_Q3_VALID = np.array([1, 1, 1, 0, 0, 0, 1, 1], dtype=bool)
_POW3 = np.array([1, 3, 9, 27, 81], dtype=np.uint8)


@dataclass(frozen=True)
class Packed:
    """A tensor as stored: zero-copy views when it comes from a file.

    f32/f16: ``data`` has the logical shape. Quantized: ``data`` is (O, row_bytes) uint8
    (i8: int8 (O, K)) and ``scale`` is float32 (O,).
    """

    encoding: Encoding
    shape: tuple
    data: np.ndarray
    scale: Optional[np.ndarray] = None

    @property
    def quantized(self) -> bool:
        return self.encoding not in (Encoding.F32, Encoding.F16)

    @property
    def rows(self) -> int:
        return int(self.shape[0]) if self.shape else 1

    @property
    def row_len(self) -> int:
        return int(np.prod(self.shape[1:], dtype=np.int64)) if len(self.shape) > 1 else 1

    def levels(self) -> np.ndarray:
        """Integer levels, int8 (O, K). Only for quantized encodings."""
        return CODECS[self.encoding].unpack_rows(self.data, self.row_len)

    def dequantize(self) -> np.ndarray:
        """float32 array of the logical shape."""
        if self.encoding == Encoding.F32:
            return np.asarray(self.data, dtype=np.float32)
        if self.encoding == Encoding.F16:
            return np.asarray(self.data, dtype=np.float32)
        lv = self.levels().astype(np.float32)
        return (lv * self.scale.astype(np.float32)[:, None]).reshape(self.shape)

    def kernel_rows(self):
        """(WeightCode, codes) for a kernel that reads weights packed: ``codes`` (O,
        row_bytes) uint8, the stored rows as they are (i8 viewed as uint8), except t5
        (storage only), re-packed losslessly to t2 rows. The one re-packing rule of the CPU
        and CUDA backends. Only for quantized encodings."""
        enc, data = self.encoding, self.data
        if enc not in PACKED_CODE:
            data = CODECS[Encoding.T2].pack_rows(self.levels())
            enc = Encoding.T2
        codes = np.ascontiguousarray(np.asarray(data).view(np.uint8).reshape(self.rows, -1))
        return PACKED_CODE[enc], codes

    @property
    def nbytes(self) -> int:
        return int(self.data.nbytes)


class Codec:
    encoding: Encoding
    bits: float
    lo: int
    hi: int
    storage_dtype = np.uint8

    def row_bytes(self, k: int) -> int:
        raise NotImplementedError

    def pack_rows(self, levels: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def unpack_rows(self, data: np.ndarray, k: int) -> np.ndarray:
        raise NotImplementedError

    def valid_rows(self, data: np.ndarray, k: int) -> bool:
        """True when every code is valid and padding is zero."""
        raise NotImplementedError

    def check_levels(self, levels: np.ndarray) -> np.ndarray:
        lv = np.asarray(levels)
        if lv.ndim != 2:
            raise UsageError("levels must be 2-D (rows = output channels)")
        if lv.size and (lv.min() < self.lo or lv.max() > self.hi):
            raise UsageError(f"{self.encoding.value}: levels outside [{self.lo}, {self.hi}]")
        return lv.astype(np.int8)


class T2(Codec):
    encoding, bits, lo, hi = Encoding.T2, 2.0, -1, 1

    def row_bytes(self, k):
        return (k + 3) // 4

    def pack_rows(self, levels):
        lv = self.check_levels(levels)
        o, k = lv.shape
        codes = np.zeros((o, self.row_bytes(k) * 4), dtype=np.uint8)
        codes[:, :k] = np.where(lv == 1, 1, np.where(lv == -1, 2, 0))
        c = codes.reshape(o, -1, 4)
        return (c[..., 0] | (c[..., 1] << 2) | (c[..., 2] << 4) | (c[..., 3] << 6)).astype(np.uint8)

    def _codes(self, data):
        d = np.asarray(data, dtype=np.uint8)
        return np.stack([(d >> s) & 3 for s in (0, 2, 4, 6)], axis=-1).reshape(d.shape[0], -1)

    def unpack_rows(self, data, k):
        return _T2_LUT[self._codes(data)[:, :k]]

    def valid_rows(self, data, k):
        c = self._codes(data)
        return not (c == 3).any() and not c[:, k:].any()


class Q3(Codec):
    encoding, bits, lo, hi = Encoding.Q3, 3.0, -2, 2

    def row_bytes(self, k):
        return (k + 7) // 8 * 3

    def pack_rows(self, levels):
        lv = self.check_levels(levels)
        o, k = lv.shape
        g = (k + 7) // 8
        codes = np.zeros((o, g * 8), dtype=np.uint32)
        codes[:, :k] = lv.astype(np.int32) & 7
        c = codes.reshape(o, g, 8)
        word = np.zeros((o, g), dtype=np.uint32)
        for p in range(8):
            word |= c[..., p] << np.uint32(3 * p)
        out = np.stack([(word >> s) & 0xFF for s in (0, 8, 16)], axis=-1).astype(np.uint8)
        return out.reshape(o, g * 3)

    def _codes(self, data):
        d = np.asarray(data, dtype=np.uint8)
        o = d.shape[0]
        b = d.reshape(o, -1, 3).astype(np.uint32)
        word = b[..., 0] | (b[..., 1] << 8) | (b[..., 2] << 16)
        return np.stack([(word >> (3 * p)) & 7 for p in range(8)], axis=-1).reshape(o, -1)

    def unpack_rows(self, data, k):
        return _Q3_LUT[self._codes(data)[:, :k]]

    def valid_rows(self, data, k):
        c = self._codes(data)
        return bool(_Q3_VALID[c].all()) and not c[:, k:].any()


class T5(Codec):
    encoding, bits, lo, hi = Encoding.T5, 1.6, -1, 1

    def row_bytes(self, k):
        return (k + 4) // 5

    def pack_rows(self, levels):
        lv = self.check_levels(levels)
        o, k = lv.shape
        digits = np.ones((o, self.row_bytes(k) * 5), dtype=np.uint8)
        digits[:, :k] = (lv + 1).astype(np.uint8)
        d = digits.reshape(o, -1, 5)
        return (d * _POW3).sum(axis=-1, dtype=np.uint16).astype(np.uint8)

    def _digits(self, data):
        d = np.asarray(data, dtype=np.uint8).astype(np.int16)
        out = []
        for _ in range(5):
            out.append(d % 3)
            d = d // 3
        return np.stack(out, axis=-1).reshape(data.shape[0], -1)

    def unpack_rows(self, data, k):
        return (self._digits(data)[:, :k] - 1).astype(np.int8)

    def valid_rows(self, data, k):
        return not (np.asarray(data) > 242).any() and bool((self._digits(data)[:, k:] == 1).all())


class I8(Codec):
    encoding, bits, lo, hi = Encoding.I8, 8.0, -127, 127
    storage_dtype = np.int8

    def row_bytes(self, k):
        return k

    def pack_rows(self, levels):
        return self.check_levels(levels).copy()

    def unpack_rows(self, data, k):
        return np.asarray(data, dtype=np.int8)[:, :k]

    def valid_rows(self, data, k):
        return not (np.asarray(data, dtype=np.int8) == -128).any()


CODECS: dict = {c.encoding: c for c in (T2(), Q3(), T5(), I8())}
FLOAT_DTYPES = {Encoding.F32: np.dtype("<f4"), Encoding.F16: np.dtype("<f2")}
BITS = {Encoding.F32: 32.0, Encoding.F16: 16.0, **{e: c.bits for e, c in CODECS.items()}}


def stored_nbytes(encoding: Encoding, shape) -> int:
    """Bytes a tensor of this encoding and logical shape occupies (without its scale)."""
    n = int(np.prod(shape, dtype=np.int64)) if len(shape) else 1
    if encoding in FLOAT_DTYPES:
        return n * FLOAT_DTYPES[encoding].itemsize
    o = int(shape[0]) if len(shape) else 1
    k = int(np.prod(shape[1:], dtype=np.int64)) if len(shape) > 1 else 1
    return o * CODECS[encoding].row_bytes(k)


def pack(encoding, values, scale=None) -> Packed:
    """Build a Packed tensor.

    Float encodings take float values. Quantized encodings take integer ``values`` of the
    logical shape (levels) and a per-output-channel ``scale`` of shape (shape[0],).
    """
    encoding = Encoding(encoding)
    values = np.asarray(values)
    shape = tuple(int(s) for s in values.shape)
    if encoding in FLOAT_DTYPES:
        return Packed(encoding, shape, np.ascontiguousarray(values, dtype=FLOAT_DTYPES[encoding]))
    if values.ndim < 1:
        raise UsageError("quantized tensors need at least one axis (output channels)")
    if not np.issubdtype(values.dtype, np.integer):
        r = np.rint(values)
        if not np.array_equal(r, values):
            raise UsageError("quantized levels must be integers")
        values = r
    o = shape[0]
    scale = np.ascontiguousarray(np.broadcast_to(np.asarray(scale, dtype=np.float32), (o,)))
    rows = CODECS[encoding].pack_rows(values.reshape(o, -1))
    return Packed(encoding, shape, rows, scale)
