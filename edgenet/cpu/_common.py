"""Shared helpers for the CPU backend: node access, activation epilogue, weight policy.

Weight policy (``prepare(node, consts, policy)``):

- ``"expanded"``: quantized weights are decoded once to float32 in the layout a kernel wants.
- ``"packed"``: t2/q3/i8 weights keep the file's codes (rows of ``row_bytes`` uint8 per output
  channel; i8 viewed as uint8); kernels decode one output channel's filter (a contiguous run)
  into a small per-thread buffer. t5 (storage only) is re-packed to t2 at prepare (lossless);
  f32/f16 weights are always float32 (f16 converted once).
"""
from __future__ import annotations

import functools
import threading

import numpy as np

from .. import _jit  # noqa: F401  (cache policy before numba)
import numba
from .._jit import njit, thread_calls
from ..activation import ActCode, act_code, act_scalar
from ..format.codecs import Packed
from ..format.constants import WeightCode

# historical names (conv.py and the generated kernels import them)
ENC_T2, ENC_Q3, ENC_I8 = WeightCode.T2, WeightCode.Q3, WeightCode.I8


# ----------------------------------------------------------------------------- node access
def attrs(node) -> dict:
    a = node["attrs"] if isinstance(node, dict) else getattr(node, "attrs", None)
    return a or {}


def node_inputs(node) -> list:
    return list(node["inputs"] if isinstance(node, dict) else node.inputs)


def act_of(node):
    """(code, alpha, beta) of the node's fused activation."""
    code, a, b = act_code(attrs(node).get("activation"))
    return int(code), np.float32(a), np.float32(b)


def const_f32(consts, name):
    """A constant as a float32 C-contiguous array (dequantized), or None when absent."""
    if not name or name not in consts:
        return None
    p = consts[name]
    if isinstance(p, Packed):
        return np.ascontiguousarray(p.dequantize(), dtype=np.float32)
    return np.ascontiguousarray(np.asarray(p, dtype=np.float32))


def operand(state_consts, inputs, i):
    """Input i: a runtime array, or the constant prepared for position i."""
    v = inputs[i] if i < len(inputs) else None
    if v is None:
        v = state_consts[i]
    return v


def prepare_consts(node, consts):
    """float32 arrays for every constant input position (None for activations/absent)."""
    return [const_f32(consts, n) if n and n in consts else None for n in node_inputs(node)]


# ----------------------------------------------------------------------------- weights
class Weights:
    """A weight tensor under a policy: float32 ``f`` (O, K) or packed ``codes`` (O, row_bytes)."""

    def __init__(self, p, policy: str):
        if not isinstance(p, Packed):
            arr = np.asarray(p, dtype=np.float32)
            self.shape = tuple(arr.shape)
            p = None
        else:
            self.shape = tuple(int(s) for s in p.shape)
        self.O = int(self.shape[0])
        self.K = int(np.prod(self.shape[1:], dtype=np.int64)) if len(self.shape) > 1 else 1
        self.packed = False
        self.enc = int(WeightCode.F32)
        self.codes = np.zeros((1, 1), np.uint8)
        self.scale = np.ones(1, np.float32)
        self.f = None
        if p is not None and policy == "packed" and p.quantized:
            code, self.codes = p.kernel_rows()   # t5: storage only -> lossless t2
            self.packed = True
            self.enc = int(code)                 # a plain int: a kernel argument
            self.scale = np.ascontiguousarray(p.scale, dtype=np.float32)
        else:
            full = p.dequantize() if p is not None else arr
            self.f = np.ascontiguousarray(np.asarray(full, dtype=np.float32).reshape(self.O, self.K))

    @property
    def nbytes(self) -> int:
        if self.packed:
            return int(self.codes.nbytes + self.scale.nbytes)
        return 0 if self.f is None else int(self.f.nbytes)


class _Local(threading.local):
    bufs = None     # per thread: key -> vector (class defaults: no failed look-ups,
    gen = 0         # which cost ~0.4 us a call in getattr with a default)
    nchw = False    # set_nchw_only: every tensor in its NCHW buffer
    blkout = None   # set_blk_out: buffer key -> did its producer write it blocked


_TLS = _Local()
# generations of the threads' scratch vectors, unique across threads: a thread that reuses
# a finished thread's id never sees that thread's generation (nor its bound steps)
_GENS = __import__("itertools").count(1)


def tls_buffer(key: str, size: int) -> np.ndarray:
    """A float32 scratch vector of ``size`` owned by the calling Python thread, reused across
    calls (grown when too small): no allocation in steady state, and no sharing between
    Python threads that run the same model at once. Contents are undefined."""
    d = _TLS.bufs
    if d is None:
        d = _TLS.bufs = {}
    a = d.get(key)
    size = max(int(size), 1)
    if a is None or a.size < size:
        raw = np.empty(size + LINE, np.float32)
        off = (-raw.ctypes.data % (4 * LINE)) // 4     # start on a cache line
        a = d[key] = raw[off:off + size]
        _TLS.gen = next(_GENS)      # bound steps holding the old vector: stale
    return a[:size]


LINE = 16   # float32 per 64-byte cache line


def line_aligned(a: np.ndarray, dtype=None) -> np.ndarray:
    """A C-contiguous copy of ``a`` (cast to ``dtype`` if given) whose data starts on a
    64-byte cache line (numpy's own allocations are 16-byte aligned): a 64-byte row (an AMX
    tile row, a 16-lane vector) then never straddles two lines, which Intel cores pay for
    (AMX A tiles off their line: loads + ``tdpbsud`` ~0.9 against ~2.6 TMAC/s a core)."""
    dt = np.dtype(a.dtype if dtype is None else dtype)
    nbytes = a.size * dt.itemsize
    raw = np.empty(nbytes + 64, np.uint8)
    off = -raw.ctypes.data % 64
    out = raw[off:off + nbytes].view(dt).reshape(a.shape)
    out[...] = a
    return out


def tls_rows(key: str, rows: int, n: int) -> np.ndarray:
    """``tls_buffer`` as (rows, >= n) C-contiguous rows, one per kernel thread, each starting
    on its own cache line (the width rounded up to 16 floats): threads writing their own
    rows never write the same line (the 8-lane Gemm's 32-byte rows shared one; no speed
    effect was measured beyond the spread)."""
    w = -(-max(int(n), 1) // LINE) * LINE
    return tls_buffer(key, rows * w).reshape(rows, w)


def set_nchw_only(on: bool) -> None:
    """While on (this Python thread), every producer writes its output's NCHW buffer: no
    blocked hand-off between a conv and its depthwise reader (conv.link_blocked). The
    executor sets it for runs that observe intermediate tensors (calibration)."""
    _TLS.nchw = bool(on)


def nchw_only() -> bool:
    return _TLS.nchw


def set_blk_out(key: str, shape: tuple, on) -> None:
    """A depthwise conv records whether it wrote its output (of ``shape``) blocked (``key``:
    its 1x1 reader's, conv.link_blocked) on this Python thread; the reader, which runs (or
    binds) right after it in the same pass, asks ``blk_out`` with its input's shape (one
    record per shape: plans for other input sizes never overwrite it). ``on``: a bool, or
    what the reader needs (a stem's call for its fused MaxPool: conv.link_pool), falsy for
    none."""
    d = _TLS.blkout
    if d is None:
        d = _TLS.blkout = {}
    d[(key, shape)] = on


def blk_out(key: str, shape: tuple):
    d = _TLS.blkout
    return d is not None and d.get((key, shape), False)


def tls_generation() -> int:
    """Changes whenever one of the calling thread's ``tls_buffer`` vectors is replaced (a
    number no other thread's vectors ever had): bound steps hold these vectors, so the
    executor binds again then. 0: the thread has none yet."""
    return _TLS.gen


def scratch(k: int) -> np.ndarray:
    """Per-call, per-thread decode buffer (small: threads x one filter)."""
    return np.empty((numba.config.NUMBA_NUM_THREADS, max(int(k), 1)), np.float32)


# ----------------------------------------------------------------------------- jit helpers
@njit(inline="always")
def decode_row(enc, codes, scale, o, k, out):
    """Decode output channel o's filter (k weights) into out[:k] as float32."""
    s = scale[o]
    row = codes[o]
    if enc == WeightCode.T2:
        for j in range(k):
            c = (row[j >> 2] >> ((j & 3) * 2)) & 3
            out[j] = s if c == 1 else (-s if c == 2 else np.float32(0))
    elif enc == WeightCode.Q3:
        for j in range(k):
            g = j >> 3
            p = j & 7
            b = g * 3
            word = np.uint32(row[b]) | (np.uint32(row[b + 1]) << 8) | (np.uint32(row[b + 2]) << 16)
            c = np.int32((word >> (3 * p)) & 7)
            if c >= 4:
                c -= 8
            out[j] = s * np.float32(c)
    else:  # WeightCode.I8
        for j in range(k):
            v = np.int32(row[j])
            if v >= 128:
                v -= 256
            out[j] = s * np.float32(v)


# fast-math flags safe for these kernels: no nnan/ninf (-inf padding, NaN propagation kept)
FM = {"contract", "reassoc", "nsz", "arcp"}
FZERO = np.float32(0)


# ----------------------------------------------------------------------------- activation
# The activation epilogue is edgenet.activation.act_scalar, the function the CUDA backend
# compiles too (one definition, one NaN rule). Inlined whole into every kernel, its float32
# polynomials (exp, tanh) cost ~1.4 s of compilation per kernel that has an epilogue
# (measured: README run 9.7 s of compiling, 1.4 of it in one conv's act). So kernels inline
# the codes without exp / tanh and call one compiled, disk-cached function for the rest;
# element-wise loops over a whole row call ``act_rows`` (one cached function).
_act_jit = njit(fastmath=FM, error_model="numpy", cache=False)(act_scalar)


@njit(fastmath=FM, error_model="numpy")
def act_call(v, code, alpha, beta):
    """act_scalar as a called function (its own dispatcher is not cached: its file holds other
    dispatchers of the same function); a kernel that calls it loads it from the cache."""
    return _act_jit(v, code, alpha, beta)


@njit(inline="always", fastmath=FM)
def act(x, code, alpha, beta):
    """One float32 activation: the codes without exp / tanh inline (their meaning is
    act_scalar's; tests/test_cpu_act* compare both), the rest through ``act_call``."""
    if code == ActCode.NONE:
        return x
    if code == ActCode.RELU:
        return np.float32(0) if x < 0 else x
    if code == ActCode.CLIP:
        return alpha if x < alpha else (beta if x > beta else x)
    if code == ActCode.LEAKY_RELU:
        return x if x >= 0 else alpha * x
    if code == ActCode.HARD_SWISH:   # min / max: selects (nested ifs stay branches)
        return x * min(max(x / np.float32(6) + np.float32(0.5), np.float32(0)), np.float32(1))
    return act_call(x, code, alpha, beta)


_act_inl = njit(inline="always", fastmath=FM)(act_scalar)


@njit(fastmath=FM, boundscheck=False, error_model="numpy")
def act_rows(z, n, code, alpha, beta):
    """z[:n] = act(z[:n]) for any code. The cheap codes get their own loops (vectorized:
    0.08 ns per element); the exp / tanh ones share one loop that switches per element (not
    vectorized: 3.4 ns per element for Sigmoid, against 0.42 in a loop of its own, but a
    vectorized polynomial loop costs ~2.4 s of compilation per code, and this function is
    compiled into every machine's first run). Compiled once, cached."""
    if code == ActCode.HARD_SWISH:
        for i in range(n):
            x = z[i]
            y = x / np.float32(6) + np.float32(0.5)
            z[i] = x * (np.float32(0) if y < 0 else (np.float32(1) if y > 1 else y))
    elif code == ActCode.HARD_SIGMOID:
        for i in range(n):
            y = alpha * z[i] + beta
            z[i] = np.float32(0) if y < 0 else (np.float32(1) if y > 1 else y)
    elif code == ActCode.LEAKY_RELU:
        for i in range(n):
            x = z[i]
            z[i] = x if x >= 0 else alpha * x
    else:
        for i in range(n):
            z[i] = _act_inl(z[i], code, alpha, beta)


class OpImpl:
    """Backend contract (docs/IR.md). An op may also define ``bind(node, state, inputs,
    outputs)``: the zero-argument call that does what ``run`` does on these very arrays
    (or None), which the executor keeps and calls instead of ``run`` (see ``emit``)."""

    def prepare(self, node, consts, policy):
        return {"consts": prepare_consts(node, consts)}

    def run(self, node, state, inputs, outputs):
        raise NotImplementedError


class RecordedOp(OpImpl):
    """An op whose ``exec(node, state, inputs, outputs, calls=None)`` makes its calls
    through ``emit``: ``run`` is ``exec`` (makes them), ``bind`` records them (one code
    path for both)."""

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        if "exec" in cls.__dict__:   # run = exec: no extra Python call per step
            cls.run = cls.exec

    def bind(self, node, state, inputs, outputs):
        calls = []
        try:
            self.exec(node, state, inputs, outputs, calls)
        except NoBind:
            return None
        return bind_calls(calls) if calls else None


# ----------------------------------------------------------------------------- bound steps
# A small model spends microseconds per node in Python before its kernel starts: shapes,
# tile choices, buffer look-ups, and Numba's type dispatch of 20-odd arguments (~1 us).
# For a planned step every one of those is fixed (the plan's buffers, the thread's scratch
# vectors), so the executor asks the op once for the calls it would make (``bind``) and
# from then on makes just those, through the compiled entry points (no type dispatch).
# An op's run path passes ``calls``: None runs each call at once (``run``), a list records
# it instead (``bind``); one code path for both.
class NoBind(Exception):
    """Raised while recording when this step's calls depend on more than its arrays."""


def emit(calls, f, *args):
    """f(*args) now, or (``calls`` a list: a step being bound) recorded for later."""
    if calls is None:
        return f(*args)
    calls.append((f, args))


def _entry(f, args):
    """A callable equivalent to f(*args) for these argument objects: the compiled entry
    point when f is a Numba dispatcher with an overload for exactly their types (it skips
    type dispatch, the same machine code), else f."""
    ovs = getattr(f, "overloads", None)
    if ovs is None or not hasattr(f, "typeof_pyval"):
        return f
    try:
        ov = ovs.get(tuple(f.typeof_pyval(a) for a in args))
    except Exception:        # an argument Numba cannot type: the dispatcher decides
        return f
    return f if ov is None else ov.entry_point


def emit_split(calls, work, par, ser):
    """The parallel call ``par`` or the serial one ``ser`` ((function, arguments) each), as
    ``use_parallel(work)`` decides (work 0: always serial): now, or recorded (the serial
    call where ``work`` is below PAR_MIN whatever the thread count, else both, chosen per
    call)."""
    if calls is None:
        f, a = par if work > 0 and use_parallel(work) else ser
        return f(*a)
    calls.append(ser if work < PAR_MIN or work <= 0 else (_split, (work, par, ser)))


def _split(work, par, ser):
    f, a = par if use_parallel(work) else ser
    f(*a)


def _bound(f, args):
    as_call = getattr(f, "as_call", None)   # a tile kernel: its driver and tile address
    if as_call is not None:
        f, args = as_call(args)
    if f is _split:              # both calls bound; the thread count decides per call
        work, par, ser = args
        par, ser = _bound(*par), _bound(*ser)
        get_nt = thread_calls()[0]

        def split():
            (par if get_nt() > 1 else ser)()   # (work >= PAR_MIN here)
        return split
    return functools.partial(_entry(f, args), *args)


def bind_calls(calls):
    """The zero-argument call running the recorded ``calls`` in order (``emit``)."""
    parts = [_bound(f, args) for f, args in calls]
    if len(parts) == 1:
        return parts[0]
    if len(parts) == 2:
        a, b = parts

        def two():
            a()
            b()
        return two
    parts = tuple(parts)

    def many():
        for p in parts:
            p()
    return many


# ----------------------------------------------------------------------------- threading
# A Numba parallel call costs µs when idle and far more on a loaded machine (an OpenMP
# fork/join waits for every worker); below this much work (elements touched, or MACs) the
# serial variant of a kernel runs instead. EDGENET_PAR_MIN overrides (0: always parallel).
import os as _os  # noqa: E402

# 1 << 18 until the ninth session; 1 << 16 since (short-spin workers: in-process A/B at 2
# threads, Zen 4, MobileNetV2 / MobileNetV3-small f32 and int8 1-6 % faster, ResNet-20 +-1 %)
PAR_MIN = int(_os.environ.get("EDGENET_PAR_MIN", 1 << 16))
# Convs: multiply-accumulates (depthwise ×8) below which the kernel runs on one thread.
# 1 << 22 until the ninth session; with short-spin workers and bound steps a parallel conv
# pays from far less: 1 << 19 at 2 threads, in-process A/B (adaptive threads off), Zen 4:
# ResNet-20 int8 0.40 -> 0.35 ms (VNNI), 0.72-0.75 -> 0.52-0.77 (avx2, one process in six
# slower), f32 1.05 -> 0.81; MobileNetV3-small int8 1.31-1.47 -> 1.09-1.22, f32 2.46 ->
# 2.07; MobileNetV2 int8 -4 %; generic tier MobileNetV3-small 3.06 -> 2.43.
CONV_PAR_MIN = int(_os.environ.get("EDGENET_CONV_PAR_MIN", 1 << 19))


def use_parallel(work) -> bool:
    """Run the parallel variant? (more than one Numba thread for the calling Python thread,
    and at least PAR_MIN work)."""
    return work >= PAR_MIN and thread_calls()[0]() > 1   # (numba's C call: ~0.1 us)


@njit(inline="always", fastmath=FM)
def act_inplace(y, lo, hi, code, alpha, beta):
    """y[lo:hi] = act(y[lo:hi]), with vectorizable loops for none / Relu / Clip."""
    if code == ActCode.NONE:
        return
    z = y[lo:hi]        # indexed from 0 so LLVM can vectorize (no wraparound selects)
    if code == ActCode.RELU:
        for i in range(hi - lo):
            v = z[i]
            z[i] = np.float32(0) if v < 0 else v
    elif code == ActCode.CLIP:
        for i in range(hi - lo):
            v = z[i]
            z[i] = alpha if v < alpha else (beta if v > beta else v)
    else:
        act_rows(z, hi - lo, code, alpha, beta)
