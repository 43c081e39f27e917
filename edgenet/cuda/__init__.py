"""CUDA backend (Numba CUDA target): ``OPS`` for device="cuda" (docs/CUDA.md).

Importing this package never fails and never imports numba.cuda: ``ensure_available()``
checks for a GPU (or the simulator, ``NUMBA_ENABLE_CUDASIM=1``) and raises
``edgenet.errors.DeviceError`` with the reason; ``OPS`` (the table op -> kernel, built in
``_ops``) and ``run_graph`` load the kernel modules on first access (PEP 562 module
``__getattr__``); ``EXCLUDED`` names the spec's ops this backend lacks, with the reason.
"""
from __future__ import annotations

from ..errors import DeviceError

__all__ = ["EXCLUDED", "OPS", "ensure_available", "run_graph", "simulated", "device_name"]

_PREFIX = "device 'cuda' is not available: "


def _numpy_compat():
    """numba-cuda 0.30.4 (the pinned ``[cuda]`` extra) calls ``np.row_stack`` when it
    launches a kernel; NumPy 2.5 removed that alias of ``np.vstack``. Seen on a real H200
    (numpy 2.5.2): every launch raised AttributeError. Restore the alias only where missing."""
    import numpy as np
    if not hasattr(np, "row_stack"):
        np.row_stack = np.vstack


_numpy_compat()   # before any kernel module imports numba.cuda


def _import_cuda():
    try:
        from .. import _jit  # noqa: F401  (edgenet's numba cache policy first)
        from numba import cuda
    except ImportError as e:  # numba-cuda without its CUDA Python bindings, ...
        raise DeviceError(_PREFIX + f"cannot import numba.cuda ({_one_line(e)}); "
                          "install edgenet[cuda]") from None
    return cuda


def _one_line(e) -> str:
    msg = " ".join(str(e).split())
    return msg.strip(" :") or type(e).__name__


def simulated() -> bool:
    """True when numba's CUDA simulator is on (NUMBA_ENABLE_CUDASIM=1 before numba loaded)."""
    from numba.core import config as nconfig
    return bool(nconfig.ENABLE_CUDASIM)


def ensure_available() -> None:
    """Raise DeviceError unless CUDA kernels can run here (a GPU with a working driver,
    or the simulator)."""
    cuda = _import_cuda()
    if simulated():
        return
    try:
        ok = cuda.is_available()
    except Exception as e:  # pragma: no cover - driver-specific failures
        raise DeviceError(_PREFIX + _one_line(e)) from None
    if not ok:
        reason = "no CUDA driver or GPU found"
        try:
            cuda.current_context()
        except Exception as e:  # CudaSupportError / CudaDriverError carry the reason
            reason = _one_line(e)
        raise DeviceError(_PREFIX + reason + " (set NUMBA_ENABLE_CUDASIM=1 for the "
                          "simulator)") from None
    try:
        dev = cuda.get_current_device()
        cc = tuple(dev.compute_capability)
    except Exception as e:  # pragma: no cover
        raise DeviceError(_PREFIX + _one_line(e)) from None
    if cc < (5, 0):  # pragma: no cover
        raise DeviceError(_PREFIX + f"{dev.name} has compute capability {cc}; "
                          "numba needs >= 5.0")


def device_name() -> str:
    cuda = _import_cuda()
    if simulated():
        return "numba CUDA simulator"
    d = cuda.get_current_device()
    name = d.name.decode() if isinstance(d.name, bytes) else str(d.name)
    return f"{name} (cc {d.compute_capability[0]}.{d.compute_capability[1]})"


def _ops():
    _import_cuda()
    from .conv import Conv, ConvTranspose
    from .dense import Gemm, MatMul
    from .math_ops import MATH_OPS
    from .elementwise import Act, Add, Affine, Div, Mul, PRelu, Sub
    from .pool import AveragePool, GlobalAveragePool, GlobalMaxPool, MaxPool
    from .rnn import RNN_OPS
    from .shape_ops import (Concat, DepthToSpace, Flatten, Pad, Reshape, Resize, Slice,
                            Softmax, Transpose)
    # the one table from op to kernel on this backend
    return {
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
        **MATH_OPS,     # Unary, BinaryMath, Reduce (math_ops.py)
        **RNN_OPS,      # LSTM (rnn.py)
    }


# ops of the spec (edgenet/ops.py) this backend deliberately lacks: op -> why
EXCLUDED: dict = {}


def __getattr__(name):
    if name == "OPS":
        ops = _ops()
        globals()["OPS"] = ops
        return ops
    if name in ("run_graph", "DeviceExecutor"):
        _import_cuda()
        from . import executor
        return getattr(executor, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
