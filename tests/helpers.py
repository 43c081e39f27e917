"""Helpers shared by several test modules (tests import this, never each other)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import zlib

import numpy as np

from edgenet.format import pack, write_model
from edgenet.ir import act_desc


def close_to_scale(got, ref, tol=2e-5):
    """Every |got - ref| within tol times ref's largest magnitude (which must be > 0)."""
    scale = float(np.abs(ref).max())
    assert scale > 0
    assert float(np.abs(got - ref).max()) <= tol * scale


def check_coverage(ops: dict, excluded: dict, spec: dict) -> None:
    """Every op of the spec has an implementation in ``ops`` or a stated exclusion."""
    missing = sorted(op for op in spec if op not in ops and op not in excluded)
    assert not missing, f"no kernel and no stated exclusion: {missing}"
    assert set(ops) <= set(spec), f"kernels for ops the spec lacks: {set(ops) - set(spec)}"
    assert not set(ops) & set(excluded)
    assert all(isinstance(why, str) and why for why in excluded.values())


# ----------------------------------------------------------------------------- activations
def activation_descs() -> list:
    """One activation descriptor per kind (non-default parameters where a kind has them),
    so a test over them covers every ActCode."""
    from edgenet.activation import ACT_CODES, act_desc
    params = {"LeakyRelu": (0.1, None), "Elu": (0.7, None), "Clip": (-1.5, 2.0),
              "HardSigmoid": (0.3, 0.4)}
    return [act_desc(k, *params.get(k, (None, None))) for k in ACT_CODES if k != "None"]


def special_values():
    """float32 inputs every activation must handle: NaN, ±inf, ±0, both sides of every
    kink, and a spread of ordinary values (all finite ones within ±80: the CUDA simulator
    computes exp() in Python floats, which raise instead of overflowing)."""
    import numpy as np
    v = [np.nan, -np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-30, -1e-30, -3.0, 3.0, -80.0, 80.0,
         -1.5, 2.0, 1.0, -1.0, 6.0, -6.0]
    v += list(np.linspace(-8, 8, 46))
    return np.asarray(v, dtype=np.float32).reshape(2, 4, 2, 4)


# ----------------------------------------------------------------------------- models
RNG = np.random.default_rng(1)


def _conv(name, x, w, b, out, stride=1, pad=1, act="Relu", residual=""):
    return {"name": name, "op": "Conv", "inputs": [x, w, b, residual], "outputs": [out],
            "attrs": {"strides": [stride, stride], "pads": [pad] * 4, "dilations": [1, 1],
                      "group": 1, "activation": act_desc(act) if act else None}}


def residual_net(path, enc="t2"):
    """Write a small model to ``path`` (returned): conv → conv(+residual, relu) → GAP →
    flatten → gemm, which exercises fusion and buffer reuse."""
    lv = {"t2": (-1, 2), "q3": (-2, 3)}
    def wq(shape):
        if enc == "f32":
            return pack("f32", RNG.standard_normal(shape).astype(np.float32) * 0.3)
        lo, hi = lv[enc]
        return pack(enc, RNG.integers(lo, hi, size=shape), RNG.random(shape[0]) * 0.5 + 0.1)
    tensors = {
        "w1": wq((8, 3, 3, 3)), "b1": pack("f32", RNG.standard_normal(8) * 0.1),
        "w2": wq((8, 8, 3, 3)), "b2": pack("f32", RNG.standard_normal(8) * 0.1),
        "w3": wq((5, 8)), "b3": pack("f32", RNG.standard_normal(5) * 0.1),
    }
    nodes = [
        _conv("c1", "x", "w1", "b1", "t1"),
        _conv("c2", "t1", "w2", "b2", "t2", residual="t1"),
        {"name": "gap", "op": "GlobalAveragePool", "inputs": ["t2"], "outputs": ["t3"],
         "attrs": {}},
        {"name": "fl", "op": "Flatten", "inputs": ["t3"], "outputs": ["t4"], "attrs": {"axis": 1}},
        {"name": "fc", "op": "Gemm", "inputs": ["t4", "w3", "b3"], "outputs": ["y"],
         "attrs": {"activation": None}},
    ]
    graph = {"inputs": [{"name": "x", "shape": [None, 3, 9, 9], "dtype": "float32"}],
             "outputs": [{"name": "y", "shape": [None, 5], "dtype": "float32"}],
             "nodes": nodes}
    write_model(path, graph=graph, tensors=tensors, metadata={"labels": list("abcde")})
    return path


# ----------------------------------------------------------------------------- fuzz model
# The small model bench/fuzz.py mutates (tests/test_fuzz.py, test_format.py and
# test_reliability.py use it too), and the file-layout helpers its mutators need.
INPUT_SHAPE = (2, 3, 7, 7)


def model_parts(seed: int = 0):
    """(graph, tensors, metadata) of the small fuzzing model (docs/IR.md)."""
    from edgenet.format import pack
    rng = np.random.default_rng(seed)
    conv_w = pack("t2", rng.integers(-1, 2, size=(6, 3, 3, 3)),  # K = 27: padded t2 rows
                  scale=rng.uniform(0.5, 1.5, 6).astype(np.float32))
    fc_w = pack("q3", rng.integers(-2, 3, size=(5, 6)),           # K = 6: padded q3 groups
                scale=rng.uniform(0.5, 1.5, 5).astype(np.float32))
    tensors = {"conv.w": conv_w, "conv.b": pack("f32", rng.normal(size=6)),
               "fc.w": fc_w, "fc.b": pack("f32", rng.normal(size=5))}
    relu = {"kind": "Relu", "alpha": 0.0, "beta": 0.0}
    graph = {
        "inputs": [{"name": "x", "shape": [None, 3, 7, 7], "dtype": "float32"}],
        "outputs": [{"name": "y", "shape": [None, 5], "dtype": "float32"}],
        "nodes": [
            {"name": "conv", "op": "Conv", "inputs": ["x", "conv.w", "conv.b"],
             "outputs": ["c"], "attrs": {"strides": [1, 1], "pads": [1, 1, 1, 1],
                                         "dilations": [1, 1], "group": 1,
                                         "activation": None}},
            {"name": "relu", "op": "Act", "inputs": ["c"], "outputs": ["r"],
             "attrs": {"activation": relu}},
            {"name": "gap", "op": "GlobalAveragePool", "inputs": ["r"], "outputs": ["p"],
             "attrs": {}},
            {"name": "flat", "op": "Flatten", "inputs": ["p"], "outputs": ["f"],
             "attrs": {"axis": 1}},
            {"name": "fc", "op": "Gemm", "inputs": ["f", "fc.w", "fc.b"], "outputs": ["y"],
             "attrs": {"activation": None}},
        ]}
    metadata = {"producer": "bench/fuzz.py", "labels": ["a", "b", "c", "d", "e"],
                "preprocessing": {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}}
    return graph, tensors, metadata


def build_model(path, seed: int = 0) -> str:
    """Write the small fuzzing model to ``path``; returns the path."""
    from edgenet.format import write_model
    graph, tensors, metadata = model_parts(seed)
    write_model(path, graph=graph, tensors=tensors, metadata=metadata)
    return os.fspath(path)


def model_input(seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=INPUT_SHAPE).astype(np.float32)


# ----------------------------------------------------------------------------- file layout
def split_file(blob: bytes):
    """(preamble fields, header dict, data section bytes) of a valid file."""
    from edgenet.format.constants import PREAMBLE, align
    magic, version, flags, hlen, hcrc, res = PREAMBLE.unpack(blob[:PREAMBLE.size])
    header = json.loads(blob[PREAMBLE.size:PREAMBLE.size + hlen])
    data = blob[align(PREAMBLE.size + hlen):]
    return (magic, version, flags, res), header, data


def join_file(fields, header, data: bytes) -> bytes:
    """Serialize a (mutated) header with a correct length and CRC in front of ``data``."""
    from edgenet.format.constants import PREAMBLE, align
    magic, version, flags, res = fields
    h = json.dumps(header, separators=(",", ":"), allow_nan=False).encode("utf-8")
    pre = PREAMBLE.pack(magic, version, flags, len(h), zlib.crc32(h) & 0xFFFFFFFF, res)
    start = align(PREAMBLE.size + len(h))
    return pre + h + b"\0" * (start - PREAMBLE.size - len(h)) + data


# ----------------------------------------------------------------------------- CUDA simulator
# numba reads NUMBA_ENABLE_CUDASIM once, at import: the CUDA test modules re-run themselves
# in a subprocess with it set (tests/test_cuda_kernels.py's docstring, docs/CUDA.md).
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INNER = os.environ.get("EDGENET_CUDA_INNER") == "1"
# seconds an inner (simulator) run may take: a niced background process on a 2-core machine
# that compiles the CPU kernels meanwhile (test_cuda_kernels took over 900 s on a slower
# Xeon with another job running)
INNER_TIMEOUT = 2400


def _inner_run(path, cache_dir=None, nice=0):
    """Start ``path``'s inner run: the Popen, its stdout/stderr captured."""
    env = dict(os.environ, EDGENET_CUDA_INNER="1", PYTHONPATH=os.pathsep.join(
        p for p in (ROOT, os.environ.get("PYTHONPATH")) if p))
    if os.environ.get("EDGENET_CUDA_REAL") == "1":
        env.pop("NUMBA_ENABLE_CUDASIM", None)
    else:
        env["NUMBA_ENABLE_CUDASIM"] = "1"
    if cache_dir:
        env["EDGENET_CACHE_DIR"] = env["NUMBA_CACHE_DIR"] = cache_dir
    return subprocess.Popen([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                             "--durations=5", path], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=(lambda: os.nice(nice)) if nice else None)


def _finish(proc, t0, timeout):
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        stdout, stderr = proc.communicate()
        stderr += f"\n[inner run killed after {timeout} s]"
    out = stdout[-12000:] + ("\n--- stderr ---\n" + stderr[-4000:] if stderr else "")
    return proc.returncode, out, time.perf_counter() - t0


# path -> {"done": Event, "proc": Popen or None, "result": (returncode, output, seconds)}
_BACKGROUND: dict = {}


def start_inner_in_background(paths, cache_dir, timeout=INNER_TIMEOUT):
    """Run the inner (simulator) runs of ``paths`` one after another in a background thread,
    niced, while the rest of the suite runs: the simulator is single-threaded Python, and the
    suite's own process leaves the second core mostly idle. They get their own compile cache
    (``cache_dir``): two processes adding *different* signatures of one function to one Numba
    cache at once can pair an index entry with the other's data file."""
    import threading
    jobs = {os.path.abspath(p): {"done": threading.Event(), "proc": None} for p in paths}

    def work():
        for path, job in jobs.items():
            t0 = time.perf_counter()
            try:
                job["proc"] = _inner_run(path, cache_dir, nice=10)
                job["result"] = _finish(job["proc"], t0, timeout)
            except Exception as e:  # reported by run_inner, in the test that owns it
                job["result"] = (None, f"background inner run failed to start: {e!r}",
                                 time.perf_counter() - t0)
            job["done"].set()

    _BACKGROUND.update(jobs)
    threading.Thread(target=work, name="cuda-sim-inner", daemon=True).start()


def stop_background():
    """Kill inner runs nobody waited for (the session ended early, or -x stopped it)."""
    for job in _BACKGROUND.values():
        proc = job.get("proc")
        if proc is not None and proc.poll() is None:
            proc.kill()


def run_inner(path, timeout=INNER_TIMEOUT):
    """Re-run ``path`` in a subprocess with the simulator switched on before numba loads
    (or take the result of the run ``start_inner_in_background`` already started)."""
    job = _BACKGROUND.pop(os.path.abspath(path), None)
    if job is not None:
        job["done"].wait(timeout + 60)
        code, out, secs = job.get("result", (None, "background inner run did not finish", 0.0))
        where = "background "
    else:
        code, out, secs = _finish(_inner_run(path), time.perf_counter(), timeout)
        where = ""
    print(out)
    print(f"[{where}inner run: {secs:.1f} s]")
    assert code == 0, out
