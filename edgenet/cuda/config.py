"""Tunables of the CUDA backend (launch geometry and tile sizes).

Everything here is read at *launch* time, so tests patch these values small (e.g.
``THREADS = 8``, ``TILE_M = TILE_N = 4``) and tiny shapes still exercise the multi-block,
multi-tile and boundary paths. Tile sizes are compile-time constants of the tiled kernels
(shared-memory shapes): each distinct combination compiles its own kernel (cached by
``edgenet.cuda._common.kernel_cache``).
"""
from __future__ import annotations

# 1-D kernels (elementwise, pooling, data movement): threads per block.
THREADS = 256

# Tiled implicit-GEMM conv / Gemm kernel: a block computes TILE_M output channels x
# TILE_N output pixels (or batch rows for Gemm), stepping the reduction by TILE_K.
# Each thread owns a MICRO_M x MICRO_N register tile, so a block has
# (TILE_M // MICRO_M) * (TILE_N // MICRO_N) threads.
TILE_M = 64
TILE_N = 64
TILE_K = 16
MICRO_M = 4
MICRO_N = 4

# Gemm with a batch of at most GEMV_MAX_N rows (batch-1 classifier heads) uses the GEMV
# kernel: a block of GEMV_ROWS output channels x GEMV_LANES lanes; the lanes of a row stride
# over K (coalesced reads of the packed row) and reduce through shared memory.
GEMV_MAX_N = 4
GEMV_LANES = 32
GEMV_ROWS = 8

# Grouped convolutions whose per-group output channels are fewer than this use the direct
# kernel (one thread per output, filter decoded from global memory): a depthwise conv
# would waste all but one row of a TILE_M tile. 0 = always tiled (except never for
# ConvTranspose, which is always direct).
DIRECT_MAX_OG = 8

# Weights on the device: "packed" keeps t2/q3/i8 weights in their file codes on the GPU
# whatever the runtime policy (decoded tile by tile into shared memory inside the conv/gemm
# kernels: less memory traffic, the decode is amortized over TILE_N outputs);
# "policy" follows the runtime policy ("expanded" -> float32 on the device).
WEIGHTS = "packed"


def snapshot() -> dict:
    """Current values (for logs, benchmarks and tests)."""
    return {k: v for k, v in globals().items() if k.isupper()}
