"""CUDA Unary / BinaryMath / Reduce (edgenet/cuda/math_ops.py) against the CPU kernels and
the NumPy reference, in the CUDA simulator (same outer/inner scheme as
tests/test_cuda_kernels.py: the outer test re-runs this file with NUMBA_ENABLE_CUDASIM=1;
EDGENET_CUDA_REAL=1 runs it on a GPU). Small shapes, 8 threads per block."""
from __future__ import annotations

import os

import numpy as np
import pytest

from tests.helpers import INNER, run_inner

if not INNER:
    def test_cuda_math_ops_simulated():
        run_inner(os.path.abspath(__file__))

else:
    import edgenet.cuda as ecuda
    from edgenet import cpu
    from edgenet.cuda import config
    from edgenet.reference import run_node
    from edgenet.shapes_math import BINARY_FNS, REDUCE_FNS, UNARY_FNS

    ecuda.ensure_available()

    @pytest.fixture(autouse=True)
    def small_blocks(monkeypatch):
        monkeypatch.setattr(config, "THREADS", 8)

    def _x(shape, seed, positive=False):
        x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32) * 2
        return np.abs(x) + 0.1 if positive else x

    def compare(node, inputs, consts=None):
        consts = consts or {}
        got = run_node(node, inputs, consts, backend=ecuda.OPS)[0]
        want_cpu = run_node(node, inputs, consts, backend=cpu.OPS)[0]
        want_ref = run_node(node, inputs, consts)[0]
        for want, what in ((want_cpu, "cpu"), (want_ref, "reference")):
            assert got.shape == want.shape
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=what)

    @pytest.mark.parametrize("fn", UNARY_FNS)
    def test_unary(fn):
        x = _x((2, 3, 5), 0, positive=fn in ("sqrt", "log"))
        compare({"name": "u", "op": "Unary", "inputs": ["x"], "outputs": ["y"],
                 "attrs": {"fn": fn}}, [x])

    @pytest.mark.parametrize("fn", BINARY_FNS)
    def test_binary_broadcast(fn):
        a = _x((2, 3, 4), 1, positive=fn == "pow")
        b = np.round(_x((3, 1), 2)).astype(np.float32)
        compare({"name": "b", "op": "BinaryMath", "inputs": ["a", "b"], "outputs": ["y"],
                 "attrs": {"fn": fn}}, [a, b])

    @pytest.mark.parametrize("fn", REDUCE_FNS)
    @pytest.mark.parametrize("axes,keep", [([2], 1), ([1, 3], 0), ([0, 1, 2, 3], 0)])
    def test_reduce(fn, axes, keep):
        x = _x((2, 3, 4, 5), 3, positive=fn in ("logsum",))
        if fn == "prod":
            x = (0.8 + 0.4 * np.abs(np.sin(x))).astype(np.float32)
        compare({"name": "r", "op": "Reduce", "inputs": ["x"], "outputs": ["y"],
                 "attrs": {"fn": fn, "axes": axes, "keepdims": keep}}, [x])

    @pytest.mark.parametrize("fn", ["logsumexp", "max", "sum", "mean"])
    @pytest.mark.parametrize("axes", [[1], [0]])
    def test_reduce_inf_nan(fn, axes):
        """+inf, a set of only -inf, NaN, both infinities: the CPU kernel's and the
        reference's answers (logsumexp: onnxruntime's, tests/test_math_ops.py)."""
        inf, nan = np.inf, np.nan
        x = np.array([[1, inf, 2, 0], [-inf, -inf, -inf, -inf], [nan, 1, 2, 0],
                      [-inf, inf, 0, 0], [0.5, -1, 2, 3]], np.float32)
        with np.errstate(all="ignore"):
            compare({"name": "r", "op": "Reduce", "inputs": ["x"], "outputs": ["y"],
                     "attrs": {"fn": fn, "axes": axes, "keepdims": 0}}, [x])

    @pytest.mark.parametrize("axis, shape", [(2, (2, 3, 7)), (1, (2, 3, 2, 5))])
    def test_layernorm(axis, shape):
        x = _x(shape, 4) + np.float32(3.0)
        from edgenet.format import pack
        consts = {"s": pack("f32", _x(shape[axis:], 5)), "b": pack("f32", _x(shape[axis:], 6))}
        compare({"name": "ln", "op": "LayerNorm", "inputs": ["x", "s", "b"], "outputs": ["y"],
                 "attrs": {"axis": axis, "epsilon": 1e-5}}, [x, None, None], consts)
