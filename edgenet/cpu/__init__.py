"""Numba CPU backend: ``OPS`` maps IR op names to OpImpl objects (docs/IR.md contract).

``OPS`` is the one table from op to kernel on this backend; ``EXCLUDED`` names the spec's
ops (edgenet/ops.py) it deliberately lacks, with the reason (tests/test_ir.py checks that
every op is in one of the two).
"""
from __future__ import annotations

from .. import _jit  # noqa: F401  (cache policy before numba)
from .conv import Conv, ConvTranspose, conv_work
from .dense import Gemm, MatMul
from .elementwise import Act, Add, Affine, Div, Mul, PRelu, Sub
from .math_ops import MATH_OPS
from .pool import AveragePool, GlobalAveragePool, GlobalMaxPool, MaxPool
from .rnn import RNN_OPS
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
OPS.update(RNN_OPS)    # LSTM (edgenet/cpu/rnn.py)

EXCLUDED: dict = {}   # op -> why this backend has no kernel for it

from ._common import tls_generation as bind_generation  # noqa: E402  (runtime: bound steps)
from ._common import set_nchw_only  # noqa: E402  (runtime: runs that observe tensors)
from .conv import link_blocked as link_states  # noqa: E402  (runtime: after prepare)


def serial_step(node, state, in_shapes, out_shapes) -> bool:
    """Would this node's kernels run on one thread anyway (``_common.use_parallel``'s and
    ``Conv.run``'s thresholds)? The executor runs consecutive such nodes inside one
    ``numba.set_num_threads(1)`` region instead of a region per node (a small Conv's thread
    switch cost 2 calls into numba's thread layer per node)."""
    from math import prod
    from ._common import CONV_PAR_MIN, PAR_MIN
    if node["op"] == "Conv":
        if getattr(state, "K", None) is None:
            return False
        return conv_work(state, prod(out_shapes[0])) < CONV_PAR_MIN
    if node["op"] not in _SERIAL_BELOW_PAR_MIN:
        return False
    work = max([prod(s) for s in in_shapes if s is not None] + [prod(s) for s in out_shapes])
    return work < PAR_MIN // 4


# ops whose parallel/serial choice is use_parallel(elements touched): moving, elementwise,
# pooling (Gemm/MatMul count MACs, math ops their own work: they decide per call)
_SERIAL_BELOW_PAR_MIN = {"Add", "Sub", "Mul", "Div", "Act", "Affine", "PRelu", "MaxPool",
                         "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "Concat",
                         "Flatten", "Reshape", "Transpose", "Pad", "Slice"}

__all__ = ["EXCLUDED", "OPS", "bind_generation", "link_states", "serial_step",
           "set_nchw_only"]
