"""Numba CPU backend: ``OPS`` maps IR op names to OpImpl objects (docs/IR.md contract)."""
from __future__ import annotations

from .. import _jit  # noqa: F401  (cache policy before numba)
from .conv import Conv, ConvTranspose
from .dense import Gemm, MatMul
from .elementwise import Act, Add, Affine, Div, Mul, PRelu, Sub
from .pool import AveragePool, GlobalAveragePool, GlobalMaxPool, MaxPool
from .shape_ops import (Concat, DepthToSpace, Flatten, Pad, Reshape, Resize, Slice, Softmax,
                        Transpose)

OPS = {cls.__name__: cls() for cls in (
    Conv, ConvTranspose, Gemm, MatMul, Act, PRelu, Affine, Add, Sub, Mul, Div,
    MaxPool, AveragePool, GlobalAveragePool, GlobalMaxPool,
    Concat, Flatten, Reshape, Transpose, Pad, Slice, DepthToSpace, Resize, Softmax)}

__all__ = ["OPS"]
