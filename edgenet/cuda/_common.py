"""Shared machinery of the CUDA backend: device functions, weight upload, op base class.

Importing this module imports ``numba.cuda``; only ``edgenet.cuda`` (lazily, after
``ensure_available``) and the kernel modules import it.

Conventions of every kernel in this package:

- Activations are **flat** float32 device arrays (C order of their logical shape); shapes
  travel as plain integers. The same kernels therefore serve the host-array contract of
  ``OpImpl.run`` (one upload / one download per op) and the device-resident executor
  (``edgenet.cuda.executor``), which hands over views of planned device buffers.
- ``OpImpl.launch(node, state, ins, in_shapes, out, out_shape, stream)`` enqueues the op
  on ``stream``: ``ins[i]`` is a flat device array (constants substituted from the state),
  ``None`` for an absent optional input; nothing is synchronized, nothing allocated in
  steady state (per-shape index tables are built once and cached in the state).
"""
from __future__ import annotations

import functools

import numpy as np
from numba import cuda, float32

from . import config
from ..activation import act_code, act_scalar_libm
from ..format.codecs import Packed
from ..format.constants import WeightCode


# ----------------------------------------------------------------------------- helpers

def bcast_strides(shape, R):
    """Element strides of ``shape`` right-aligned to rank ``R``, 0 along broadcast axes (1s)."""
    s = (1,) * (R - len(shape)) + tuple(shape)
    st = [0] * R
    acc = 1
    for ax in range(R - 1, -1, -1):
        st[ax] = 0 if s[ax] == 1 else acc
        acc *= s[ax]
    return st


def kernel_cache(factory):
    """Memoize a kernel factory on its (compile-time constant) arguments."""
    return functools.lru_cache(maxsize=None)(factory)


def blocks(n: int, threads: int | None = None) -> int:
    t = threads or config.THREADS
    return max(1, (int(n) + t - 1) // t)


def prod(shape) -> int:
    p = 1
    for d in shape:
        p *= int(d)
    return p


def attrs(node) -> dict:
    return node.get("attrs") or {}


def act_of(node):
    code, a, b = act_code(attrs(node).get("activation"))
    return int(code), np.float32(a), np.float32(b)


def to_device(a, dtype=np.float32):
    return cuda.to_device(np.ascontiguousarray(np.asarray(a, dtype=dtype)).reshape(-1))


class State:
    """Per-node prepared state. ``__slots__`` (no ``__dict__``) keeps the runtime's host
    memory accounting from walking into device objects; ``device_nbytes`` reports the
    device memory this node's weights/constants hold."""

    __slots__ = ("d",)

    def __init__(self, **kw):
        self.d = dict(kw)

    def __getitem__(self, k):
        return self.d[k]

    def __setitem__(self, k, v):
        self.d[k] = v

    def get(self, k, default=None):
        return self.d.get(k, default)

    @property
    def device_nbytes(self) -> int:
        n = 0
        for v in self.d.values():
            vs = v if isinstance(v, (list, tuple)) else [v]
            for e in vs:
                if cuda.is_cuda_array(e) or isinstance(e, DevWeights):
                    n += int(getattr(e, "nbytes", 0) or 0)
        return n


# ----------------------------------------------------------------------------- weights
class DevWeights:
    """A weight tensor on the device, (O, K) row-major with K = prod(shape[1:]).

    ``enc`` 0: float32 ``wf`` (f32/f16 weights, or quantized ones expanded when
    ``config.WEIGHTS == "policy"`` and the policy is "expanded"). Otherwise ``codes`` holds
    the file's packed rows (``rb`` bytes per output channel, i8 viewed as uint8) and
    ``scale`` the per-channel float32 scale; kernels decode with ``load_w``.
    Uploaded once (in ``prepare``); t5 (storage only) is re-packed to t2 losslessly.
    """

    def __init__(self, p, policy: str):
        if not isinstance(p, Packed):
            arr = np.asarray(p, dtype=np.float32)
            shape = tuple(arr.shape)
            p = None
        else:
            shape = tuple(int(s) for s in p.shape)
        self.shape = shape
        self.O = int(shape[0])
        self.K = prod(shape[1:]) if len(shape) > 1 else 1
        keep_packed = p is not None and p.quantized and (
            config.WEIGHTS == "packed" or policy == "packed")
        if keep_packed:
            code, codes = p.kernel_rows()    # t5 -> t2
            self.enc = int(code)             # a plain int: a kernel argument
            self.rb = int(codes.shape[1])
            self.codes = to_device(codes, np.uint8)
            self.scale = to_device(p.scale)
            self.wf = to_device(np.zeros(1, np.float32))
        else:
            full = p.dequantize() if p is not None else arr
            self.enc = int(WeightCode.F32)
            self.rb = 0
            self.wf = to_device(np.asarray(full, np.float32).reshape(self.O, self.K))
            self.codes = to_device(np.zeros(1, np.uint8), np.uint8)
            self.scale = to_device(np.ones(1, np.float32))

    @property
    def nbytes(self) -> int:
        return int(self.wf.nbytes + self.codes.nbytes + self.scale.nbytes)


# ----------------------------------------------------------------------------- device fns
@cuda.jit(device=True)
def load_w(enc, wf, codes, scale, rb, K, o, k):
    """Dequantized weight (o, k) as float32 from float32 rows or packed codes."""
    if enc == WeightCode.F32:
        return wf[o * K + k]
    base = o * rb
    if enc == WeightCode.T2:  # layouts: edgenet.format.constants.WeightCode
        c = (np.int32(codes[base + (k >> 2)]) >> ((k & 3) * 2)) & 3
        if c == 1:
            return scale[o]
        if c == 2:
            return -scale[o]
        return float32(0.0)
    if enc == WeightCode.Q3:
        b = base + (k >> 3) * 3
        word = np.int32(codes[b]) | (np.int32(codes[b + 1]) << 8) | (np.int32(codes[b + 2]) << 16)
        c = (word >> (3 * (k & 7))) & 7
        if c >= 4:
            c -= 8
        return scale[o] * float32(c)
    v = np.int32(codes[base + k])  # i8 viewed as uint8
    if v >= 128:
        v -= 256
    return scale[o] * float32(v)


# The activation epilogue: edgenet.activation's one body with the device's libm exp/tanh
# (act_scalar_libm; the CPU binds float32 polynomials); same NaN rule on both.
act = cuda.jit(device=True)(act_scalar_libm)


@cuda.jit
def copy_kernel(x, y, n):
    i = cuda.grid(1)
    if i < n:
        y[i] = x[i]


def device_copy(x, y, n, stream):
    copy_kernel[blocks(n), config.THREADS, stream](x, y, n)


# ----------------------------------------------------------------------------- op base
class OpImpl:
    """Backend contract (docs/IR.md) on top of ``launch`` (see module docstring)."""

    def prepare(self, node, consts, policy):
        return State(**self.prepare_common(node, consts))

    @staticmethod
    def prepare_common(node, consts):
        """Upload every constant input (dequantized float32, flat) once."""
        cst, shapes = {}, {}
        for i, nm in enumerate(node["inputs"]):
            if nm and nm in consts:
                p = consts[nm]
                a = p.dequantize() if isinstance(p, Packed) else np.asarray(p, np.float32)
                cst[i] = to_device(a)
                shapes[i] = tuple(int(s) for s in np.shape(a))
        return {"const": cst, "cshape": shapes}

    @staticmethod
    def operands(state, ins, in_shapes):
        """Inputs with constants substituted: (device arrays, shapes)."""
        ins = list(ins)
        shp = list(in_shapes)
        for i, d in state["const"].items():
            if i < len(ins):
                ins[i] = d
                shp[i] = state["cshape"][i]
        return ins, shp

    def launch(self, node, state, ins, in_shapes, out, out_shape, stream):
        raise NotImplementedError

    def run(self, node, state, inputs, outputs):
        """Host-array contract: upload the activation inputs, launch, download the output.
        (The device-resident path, ``edgenet.cuda.run_graph``, calls ``launch`` directly.)"""
        stream = cuda.stream()
        ins, shapes = [], []
        for a in inputs:
            if a is None:
                ins.append(None)
                shapes.append(None)
            else:
                a = np.ascontiguousarray(a, dtype=np.float32)
                ins.append(cuda.to_device(a.reshape(-1), stream=stream))
                shapes.append(tuple(a.shape))
        y = outputs[0]
        dy = cuda.device_array(max(y.size, 1), dtype=np.float32, stream=stream)
        self.launch(node, state, ins, shapes, dy, tuple(y.shape), stream)
        dy[:y.size].copy_to_host(y.reshape(-1), stream=stream)
        stream.synchronize()
