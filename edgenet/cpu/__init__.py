"""Numba CPU backend: ``OPS`` maps IR op names to OpImpl objects (docs/IR.md contract).

``OPS`` is the one table from op to kernel on this backend; ``EXCLUDED`` names the spec's
ops (edgenet/ops.py) it deliberately lacks, with the reason (tests/test_ir.py checks that
every op is in one of the two).
"""
from __future__ import annotations

from .. import _jit  # noqa: F401  (cache policy before numba)
from .conv import Conv, ConvTranspose
from .dense import Gemm, MatMul
from .elementwise import Act, Add, Affine, Div, Mul, PRelu, Sub
from .math_ops import MATH_OPS
from .pool import AveragePool, GlobalAveragePool, GlobalMaxPool, MaxPool
from .shape_ops import (Concat, DepthToSpace, Flatten, Pad, Reshape, Resize, Slice, Softmax,
                        Transpose)

OPS = {
    "Conv": Conv(),
    "ConvTranspose": ConvTranspose(),
    "Gemm": Gemm(),
    "MatMul": MatMul(),
    "Affine": Affine(),
    "Act": Act(),
    "PRelu": PRelu(),
    "MaxPool": MaxPool(),
    "AveragePool": AveragePool(),
    "GlobalAveragePool": GlobalAveragePool(),
    "GlobalMaxPool": GlobalMaxPool(),
    "Add": Add(),
    "Sub": Sub(),
    "Mul": Mul(),
    "Div": Div(),
    "Concat": Concat(),
    "Flatten": Flatten(),
    "Reshape": Reshape(),
    "Transpose": Transpose(),
    "Softmax": Softmax(),
    "Pad": Pad(),
    "Resize": Resize(),
    "DepthToSpace": DepthToSpace(),
    "Slice": Slice(),
}

OPS.update(MATH_OPS)   # Unary, BinaryMath, Reduce (edgenet/cpu/math_ops.py)

EXCLUDED: dict = {}   # op -> why this backend has no kernel for it

__all__ = ["EXCLUDED", "OPS"]
