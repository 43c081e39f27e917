"""CUDA kernels against the CPU backend (and the NumPy reference), one node at a time.

How these tests run (docs/CUDA.md, "Tests"): numba reads NUMBA_ENABLE_CUDASIM once, when
it is first imported, and pytest imports every test module (and the CPU backend, hence
numba) in one process. So in a normal ``pytest`` run this module defines one *outer* test
that re-runs this same file in a fresh ``python -m pytest`` subprocess with
``NUMBA_ENABLE_CUDASIM=1`` and ``EDGENET_CUDA_INNER=1`` set before anything is imported;
in that subprocess the *inner* tests below are collected instead. With
``EDGENET_CUDA_REAL=1`` the subprocess runs on a real GPU instead of the simulator.

Every inner test runs under small launch geometry (``edgenet.cuda.config`` patched:
8 threads per block, 8x8 tiles, 4-deep K steps, 2x2 register tiles) so the tiny shapes of
``edgenet.reference.cases`` still span several blocks, several K steps and partial tiles.
"""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from tests.helpers import (INNER, ROOT, activation_descs, check_coverage, run_inner,
                           special_values)

RTOL = 1e-4

if not INNER:
    def test_cuda_kernels_simulated():
        run_inner(os.path.abspath(__file__))

    def test_import_is_lazy_and_cpu_never_loads_cuda():
        code = (
            "import sys, numpy as np\n"
            "import edgenet, edgenet.cuda\n"
            "assert 'numba.cuda' not in sys.modules, 'import edgenet.cuda loaded numba.cuda'\n"
            "from edgenet.reference.cases import cases\n"
            "from edgenet.reference import run_node\n"
            "from edgenet import cpu\n"
            "cid, node, inputs, consts = next(iter(cases()))\n"
            "run_node(node, inputs, consts, backend=cpu.OPS)\n"
            "assert 'numba.cuda' not in sys.modules, 'the CPU path loaded numba.cuda'\n")
        env = dict(os.environ, PYTHONPATH=ROOT)
        env.pop("NUMBA_ENABLE_CUDASIM", None)
        r = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT,
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-3000:]

    def test_activation_compiles_for_a_real_gpu():
        """The simulator runs act_scalar as Python; this compiles it for the CUDA target
        (NVVM, no GPU needed) so a NumPy call the GPU lacks cannot slip in."""
        code = (
            "import edgenet.cuda  # its NumPy-compat shim, as for every CUDA kernel\n"
            "from numba import cuda, float32, int64\n"
            "from edgenet.activation import act_scalar_libm as act_scalar\n"
            "try:\n"
            "    ptx, rt = cuda.compile_ptx(act_scalar, (float32, int64, float32, float32),\n"
            "                               device=True, cc=(7, 5))\n"
            "except Exception as e:\n"
            "    if 'NVVM' in type(e).__name__ or 'libNVVM' in str(e) or 'nvvm' in str(e):\n"
            "        print('NO_NVVM', type(e).__name__); raise SystemExit(0)\n"
            "    raise\n"
            "assert str(rt) == 'float32', rt\n"
            "print('OK')\n")
        env = dict(os.environ, PYTHONPATH=ROOT)
        env.pop("NUMBA_ENABLE_CUDASIM", None)
        r = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT,
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stdout + r.stderr[-3000:]
        if "NO_NVVM" in r.stdout:
            pytest.skip("no libNVVM here: " + r.stdout.strip())
        assert r.stdout.strip() == "OK"

    def test_no_gpu_raises_device_error():
        code = (
            "import edgenet.cuda as c\n"
            "from edgenet.errors import DeviceError\n"
            "from numba import cuda\n"
            "if cuda.is_available():\n"
            "    print('HAS_GPU'); raise SystemExit(0)\n"
            "try:\n"
            "    c.ensure_available()\n"
            "except DeviceError as e:\n"
            "    assert str(e).startswith(\"device 'cuda' is not available: \"), e\n"
            "    assert '\\n' not in str(e)\n"
            "    print('OK', e)\n"
            "else:\n"
            "    raise SystemExit('no DeviceError')\n")
        env = dict(os.environ, PYTHONPATH=ROOT)
        env.pop("NUMBA_ENABLE_CUDASIM", None)
        r = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT,
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stdout + r.stderr[-3000:]
        if "HAS_GPU" in r.stdout:
            pytest.skip("a GPU is present")
        assert r.stdout.startswith("OK")

else:
    from edgenet.reference import run_node
    from edgenet.reference.cases import cases
    import edgenet.cuda as ecuda
    from edgenet.cuda import config

    ecuda.ensure_available()
    CASES = list(cases())
    IDS = [c[0] for c in CASES]
    SMALL = dict(THREADS=8, TILE_M=8, TILE_N=8, TILE_K=4, MICRO_M=2, MICRO_N=2,
                 GEMV_MAX_N=2, GEMV_LANES=2, GEMV_ROWS=4, DIRECT_MAX_OG=8, WEIGHTS="packed")

    @pytest.fixture(autouse=True)
    def small_blocks(monkeypatch):
        for k, v in SMALL.items():
            monkeypatch.setattr(config, k, v)
        yield

    def _cpu_ops():
        try:
            from edgenet import cpu
            return cpu.OPS
        except ImportError:
            return {}

    def check(got, want, what):
        want = np.asarray(want, np.float32)
        assert got.shape == want.shape, (what, got.shape, want.shape)
        scale = float(np.abs(want).max()) if want.size else 0.0
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=RTOL * max(scale, 1e-6),
                                   err_msg=what)

    def compare(case, policy="packed"):
        cid, node, inputs, consts = case
        got = run_node(node, inputs, consts, backend=ecuda.OPS, policy=policy)[0]
        cpu_ops = _cpu_ops()
        ref = run_node(node, inputs, consts)[0]
        if node["op"] in cpu_ops:
            check(got, run_node(node, inputs, consts, backend=cpu_ops)[0], f"{cid}: cuda vs cpu")
        check(got, ref, f"{cid}: cuda vs reference")

    def test_simulator_is_on():
        if os.environ.get("EDGENET_CUDA_REAL") != "1":
            assert ecuda.simulated()

    def test_every_op_has_a_kernel():
        from edgenet.ops import SPEC
        check_coverage(ecuda.OPS, ecuda.EXCLUDED, SPEC)

    @pytest.mark.parametrize("desc", activation_descs(), ids=lambda d: d["kind"])
    def test_activations_nan_and_infinities_match_cpu(desc):
        """CUDA and CPU compile the same act_scalar: NaN stays NaN (Relu included), ±inf
        and the kinks agree, standalone (Act) and fused (Add epilogue)."""
        x = special_values()
        z = np.zeros_like(x)
        for node, ins in (({"name": "a", "op": "Act", "inputs": ["x"], "outputs": ["y"],
                            "attrs": {"activation": desc}}, [x]),
                          ({"name": "f", "op": "Add", "inputs": ["a", "b"], "outputs": ["y"],
                            "attrs": {"activation": desc}}, [x, z])):
            with np.errstate(over="ignore", invalid="ignore"):
                got = run_node(node, ins, {}, backend=ecuda.OPS)[0]
            want = run_node(node, ins, {}, backend=_cpu_ops())[0]
            assert np.isnan(got[np.isnan(x)]).all(), "NaN in, NaN out"
            np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
            np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-7,
                                       err_msg=f"{desc['kind']} {node['op']}")

    @pytest.mark.parametrize("case", CASES, ids=IDS)
    def test_case(case):
        compare(case)

    WEIGHTED = [c for c in CASES if c[1]["op"] in ("Conv", "ConvTranspose", "Gemm")]

    @pytest.mark.parametrize("case", WEIGHTED, ids=[c[0] for c in WEIGHTED])
    def test_weighted_expanded_on_device(case, monkeypatch):
        """Quantized weights decoded once to float32 on the device (policy 'expanded')."""
        monkeypatch.setattr(config, "WEIGHTS", "policy")
        compare(case, policy="expanded")

    GROUPED = [c for c in CASES if c[1]["op"] == "Conv" and c[1]["attrs"]["group"] > 1]

    @pytest.mark.parametrize("case", GROUPED, ids=[c[0] for c in GROUPED])
    def test_grouped_conv_tiled_path(case, monkeypatch):
        """Grouped/depthwise convs through the tiled kernel (grid.z = groups)."""
        monkeypatch.setattr(config, "DIRECT_MAX_OG", 0)
        compare(case)

    GEMMS = [c for c in CASES if c[1]["op"] == "Gemm"]

    @pytest.mark.parametrize("gemv_max_n", [0, 8])
    def test_gemm_both_paths(gemv_max_n, monkeypatch):
        monkeypatch.setattr(config, "GEMV_MAX_N", gemv_max_n)
        for case in GEMMS:
            compare(case)

    def test_conv_bigger_tiles_and_micro_tiles(monkeypatch):
        """Another tile geometry (non-square, 1x4 micro tiles, K step 3)."""
        for k, v in dict(TILE_M=4, TILE_N=16, TILE_K=3, MICRO_M=1, MICRO_N=4).items():
            monkeypatch.setattr(config, k, v)
        for case in CASES:
            if case[0] in ("conv_basic_3x3", "conv_t2_groups_stride", "conv_q3_residual",
                           "conv_i8_basic", "conv_dilation"):
                compare(case)

    def test_packed_weights_stay_packed_on_device():
        from edgenet.cuda._common import DevWeights
        case = next(c for c in CASES if c[0] == "conv_t2_basic")
        p = case[3][case[1]["inputs"][1]]
        w = DevWeights(p, "expanded")  # config.WEIGHTS == "packed" wins
        assert w.enc == 1 and w.codes.size == p.data.size and w.wf.size == 1
        assert w.nbytes < p.rows * p.row_len * 4 / 4
