"""The .edgenet container, spec as code (v1). See docs/FORMAT.md for the prose version.

Layout (all integers little-endian)::

    offset  size  field
    0       8     MAGIC  b"EDGENET\\x00"
    8       4     u32    format version (1)
    12      4     u32    flags (0; readers reject unknown bits)
    16      8     u64    header length in bytes (UTF-8 JSON)
    24      4     u32    CRC-32 of the header bytes
    28      4     u32    reserved (0)
    32      H     header JSON (no NaN/Infinity)
    32+H    ...   zero padding up to a multiple of ALIGNMENT: start of the data section
    data    ...   tensors, each at data_start + offset, offset a multiple of ALIGNMENT,
                  zero padding between them

The header is ``{"format": "edgenet", "version": 1, "graph": {...}, "tensors": [...],
"metadata": {...}}``; each tensor entry is ``{"name", "encoding", "shape", "offset",
"nbytes", "crc32"}`` plus ``"scale"``: the name of a companion f32 tensor of shape (O,)
for per-output-channel encodings (i8, t2, q3, t5).
"""
import struct
from enum import Enum, IntEnum

MAGIC = b"EDGENET\x00"
VERSION = 1
ALIGNMENT = 64
PREAMBLE = struct.Struct("<8sIIQII")  # magic, version, flags, header_len, header_crc, reserved
assert PREAMBLE.size == 32

# Bounds checked before anything is allocated (hostile files).
MAX_HEADER_BYTES = 64 << 20
MAX_TENSORS = 100_000
MAX_RANK = 8
MAX_NODES = 100_000
MAX_NAME = 1024


class Encoding(str, Enum):
    """Tensor encodings. Quantized ones store integer levels per output channel (row)."""

    F32 = "f32"  # float32, logical shape
    F16 = "f16"  # float16, logical shape
    I8 = "i8"    # int8 levels, one f32 scale per output channel
    T2 = "t2"    # ternary {-1,0,+1}, 2 bits per weight, one f32 scale per output channel
    Q3 = "q3"    # quinary {-2..+2}, 3 bits per weight, one f32 scale per output channel
    T5 = "t5"    # ternary, 5 trits per byte (1.6 bits), storage only (expanded at load)


def align(n: int, a: int = ALIGNMENT) -> int:
    """Round n up to a multiple of a."""
    return (n + a - 1) // a * a


class WeightCode(IntEnum):
    """How a kernel reads a weight row (``Weights.enc`` on CPU and CUDA): float32, or the
    packed codes of a quantized encoding kept as stored (policy "packed")."""

    F32 = 0
    T2 = 1   # weight k at bits 2*(k%4) of byte k//4; 01 = +1, 10 = -1
    Q3 = 2   # 8 weights per 24-bit little-endian word, 3-bit two's complement
    I8 = 3   # int8 levels (viewed as uint8)


# encodings kernels read packed (t5 is storage only: re-packed to t2 at load, losslessly)
PACKED_CODE = {Encoding.T2: WeightCode.T2, Encoding.Q3: WeightCode.Q3,
               Encoding.I8: WeightCode.I8}
