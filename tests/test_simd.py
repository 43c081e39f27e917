"""Every SIMD tier (EDGENET_SIMD=avx512vnni|avx512|avx2|generic|off) against the NumPy
reference on conv cases.

In process, forcing a tier changes which kernels run (every tier the process's codegen
target can execute); the codegen restriction a forced tier sets before numba is imported
is tested in subprocesses (``test_forced_tier_restricts_codegen``).
"""
from __future__ import annotations

import zlib

import numpy as np
import pytest

from edgenet import cpu
from edgenet.cpu import dw_cv, simd
from edgenet.cpu.conv import choose_k, choose_p
from edgenet.format import pack
from edgenet.ir import act_desc
from edgenet.reference import run_node

# the float kernels depend on the lane count only (16: avx512vnni/avx512, 8: avx2/generic,
# 0: off): one tier per lane count keeps CI time down
MODES = tuple(t for t in ("avx512", "avx2", "off")
              if simd.rank(t) >= simd.rank(simd.codegen_tier()))

CASES = [
    # (N, C, H, W, O, kh, kw, stride, pads (t, l, b, r), dil, act, residual)
    (1, 13, 12, 16, 37, 3, 3, 1, (1, 1, 1, 1), 1, "Relu", False),      # odd channels
    (2, 8, 10, 14, 20, 3, 3, 1, (1, 1, 1, 1), 1, "Relu", True),        # batch 2 + residual
    (1, 16, 15, 17, 32, 3, 3, 2, (1, 1, 1, 1), 1, "Relu", False),      # stride 2
    (1, 3, 30, 30, 24, 7, 7, 2, (3, 3, 3, 3), 1, "Relu", False),       # 7x7/2 stem
    (1, 24, 9, 21, 40, 1, 1, 1, (0, 0, 0, 0), 1, None, False),         # 1x1
    (1, 24, 18, 18, 48, 1, 1, 2, (0, 0, 0, 0), 1, None, True),         # 1x1 stride 2
    (1, 6, 16, 20, 16, 3, 3, 1, (2, 2, 2, 2), 2, "LeakyRelu", False),  # dilation 2
    (1, 5, 11, 13, 18, 3, 3, 1, (0, 2, 1, 0), 1, "HardSwish", True),   # asymmetric pads
    (1, 64, 7, 7, 144, 3, 3, 1, (1, 1, 1, 1), 1, "Clip", True),        # 7-wide, O=144
    (1, 8, 9, 9, 64, 3, 3, 1, (1, 1, 1, 1), 1, "Sigmoid", False),      # k = 2/4 tiles
    (1, 4, 5, 5, 16, 3, 3, 1, (1, 1, 1, 1), 1, "Relu", False),         # too narrow: fallback
    (1, 4, 12, 12, 16, 3, 3, 3, (1, 1, 1, 1), 1, "Relu", False),       # stride 3: fallback
    (1, 10, 9, 20, 24, 3, 3, 1, (1, 1, 1, 1), 1, "Clip", False),       # vector Clip epilogue
    (1, 16, 14, 14, 96, 1, 1, 1, (0, 0, 0, 0), 1, "Relu", False),      # vector Relu epilogue
]


def _node(st, pads, dil, act, res, group=1):
    desc = act_desc(act, *((0.0, 6.0) if act == "Clip" else ())) if act else None
    ins = ["x", "w", "b"] + (["r"] if res else [])
    return {"name": "c", "op": "Conv", "inputs": ins, "outputs": ["y"],
            "attrs": {"strides": [st, st], "pads": list(pads), "dilations": [dil, dil],
                      "group": group, "activation": desc}}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", CASES, ids=[str(i) for i in range(len(CASES))])
def test_conv_paths(case, mode, monkeypatch):
    monkeypatch.setenv("EDGENET_SIMD", mode)
    N, C, H, W, O, kh, kw, st, pads, dil, act, res = case
    rng = np.random.default_rng(zlib.crc32(repr(case).encode()))
    x = rng.uniform(-1, 1, size=(N, C, H, W)).astype(np.float32)
    consts = {"w": pack("f32", rng.normal(0, 0.3, size=(O, C, kh, kw)).astype(np.float32)),
              "b": pack("f32", rng.normal(size=O).astype(np.float32))}
    node = _node(st, pads, dil, act, res)
    inputs = [x, None, None]
    if res:
        OH = (H + pads[0] + pads[2] - dil * (kh - 1) - 1) // st + 1
        OW = (W + pads[1] + pads[3] - dil * (kw - 1) - 1) // st + 1
        inputs.append(rng.uniform(-1, 1, size=(N, O, OH, OW)).astype(np.float32))
    want = run_node(node, inputs, consts)[0]
    for policy in ("expanded", "packed"):
        st_ = cpu.OPS["Conv"].prepare(node, consts, policy)
        if policy == "expanded":
            assert (st_["simd"] is not None) == (mode != "off")
            if st_["simd"]:
                assert st_["simd"][0] == simd.lanes(mode)
        y = np.full_like(want, np.nan)
        cpu.OPS["Conv"].run(node, st_, inputs, [y])
        scale = max(float(np.abs(want).max()), 1e-6)
        assert float(np.abs(y - want).max()) <= 1e-4 * scale + 1e-6, (mode, policy)
        y2 = np.full_like(want, np.nan)      # second call: reused scratch
        cpu.OPS["Conv"].run(node, st_, inputs, [y2])
        np.testing.assert_array_equal(y, y2)


DW_CASES = [
    # (N, C, H, W, multiplier, k, stride, pads, dil, act, residual)
    (1, 19, 13, 17, 1, 3, 1, (1, 1, 1, 1), 1, "Relu", False),
    (2, 8, 21, 21, 1, 3, 2, (1, 1, 1, 1), 1, "Clip", True),
    (1, 6, 7, 7, 2, 3, 1, (1, 1, 1, 1), 1, "HardSwish", False),
    (1, 5, 40, 37, 1, 5, 2, (2, 1, 2, 2), 1, None, False),
    (1, 4, 12, 12, 1, 3, 1, (2, 2, 2, 2), 2, "Relu", True),
    (1, 4, 12, 12, 1, 3, 3, (1, 1, 1, 1), 1, "Relu", False),    # stride 3: fallback
    (1, 7, 14, 14, 1, 3, 1, (1, 1, 1, 1), 1, "Clip", True),     # rows narrower than 16 lanes
    (2, 5, 20, 37, 1, 3, 2, (1, 1, 1, 1), 1, "Clip", False),    # overlapping last vector
    (1, 3, 21, 1, 1, 3, 1, (1, 1, 1, 1), 1, "Relu", True),      # 1-wide rows (Wp = 3)
    (1, 4, 17, 16, 1, 3, 1, (1, 1, 1, 1), 1, None, True),       # rows of exactly 16
    # channel-vector kernel (dw_cv): whole blocks of 16 / 8 channels (vector transposes)
    (1, 32, 9, 11, 1, 3, 1, (1, 1, 1, 1), 1, "HardSwish", True),
    (2, 20, 14, 14, 1, 3, 2, (1, 1, 1, 1), 1, "Clip", True),    # a whole and a partial block
    (1, 16, 3, 3, 1, 3, 1, (1, 1, 1, 1), 1, "Relu", False),     # planes under 16 pixels
    (1, 48, 10, 10, 1, 3, 2, (1, 1, 1, 1), 2, "Sigmoid", True), # dilation; act_call epilogue
    (1, 16, 33, 35, 1, 5, 2, (2, 1, 2, 3), 1, None, True),      # stride 2, a big plane, 5x5
    (1, 24, 7, 5, 1, 3, 1, (0, 1, 2, 0), 1, "Relu", False),     # uneven pads, 35-pixel planes
    # rows of >= 16 pixels transposed straight into the band, partial blocks included
    (1, 24, 18, 20, 1, 3, 2, (1, 1, 1, 1), 1, "Relu", True),    # 16 + 8 channels, stride 2
    (1, 40, 16, 30, 1, 3, 1, (1, 1, 1, 1), 1, "HardSwish", True),  # 16 + 16 + 8, stride 1
    (1, 13, 17, 17, 1, 3, 2, (1, 1, 1, 1), 1, "Clip", False),   # one block of 13 (8 + 5)
    (1, 5, 40, 33, 1, 3, 2, (0, 1, 1, 0), 1, None, True),       # 5 channels, uneven pads
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", DW_CASES, ids=[str(i) for i in range(len(DW_CASES))])
def test_depthwise_paths(case, mode, monkeypatch):
    monkeypatch.setenv("EDGENET_SIMD", mode)
    N, C, H, W, m, k, st, pads, dil, act, res = case
    O = C * m
    rng = np.random.default_rng(zlib.crc32(repr(case).encode()))
    x = rng.uniform(-1, 1, size=(N, C, H, W)).astype(np.float32)
    consts = {"w": pack("f32", rng.normal(0, 0.3, size=(O, 1, k, k)).astype(np.float32)),
              "b": pack("f32", rng.normal(size=O).astype(np.float32))}
    node = _node(st, pads, dil, act, res, group=C)
    inputs = [x, None, None]
    OH_ = (H + pads[0] + pads[2] - dil * (k - 1) - 1) // st + 1
    OW_ = (W + pads[1] + pads[3] - dil * (k - 1) - 1) // st + 1
    if res:
        OH, OW = OH_, OW_
        inputs.append(rng.uniform(-1, 1, size=(N, O, OH, OW)).astype(np.float32))
    want = run_node(node, inputs, consts)[0]
    for policy in ("expanded", "packed"):
        c = consts if policy == "expanded" else dict(consts, w=_ternary(rng, (O, 1, k, k)))
        want = run_node(node, inputs, c)[0]
        st_ = cpu.OPS["Conv"].prepare(node, c, policy)
        assert (st_["simd_dw"] is not None) == (mode != "off")
        if mode != "off" and m == 1 and C >= 16:
            assert dw_cv.use(st_, x.shape, (N, O, OH_, OW_)) == (st > 1 or H * W <= 32 * 32)
        for _ in range(2):
            y = np.full_like(want, np.nan)
            cpu.OPS["Conv"].run(node, st_, inputs, [y])
            scale = max(float(np.abs(want).max()), 1e-6)
            assert float(np.abs(y - want).max()) <= 1e-4 * scale + 1e-6, (mode, policy)


def _ternary(rng, shape):
    return pack("t2", rng.integers(-1, 2, size=shape),
                rng.uniform(0.05, 0.3, size=shape[0]).astype(np.float32))


@pytest.mark.parametrize("mode", [m for m in MODES if m in ("avx2", "avx512")])
@pytest.mark.parametrize("variant", ["serial", "parallel"])
@pytest.mark.parametrize("enc", ["t2", "q3", "i8"])
@pytest.mark.parametrize("case", CASES[:6] + CASES[8:10], ids=[str(i) for i in range(8)])
def test_packed_through_simd(case, enc, variant, mode, monkeypatch):
    """Packed weights decoded per call into the SIMD layout (t2: bit planes; others: the
    generic row decoder), serial and parallel decode, 16 and 8 lanes."""
    from edgenet.cpu import _common
    monkeypatch.setattr(_common, "PAR_MIN", 0 if variant == "parallel" else 1 << 62)
    monkeypatch.setenv("EDGENET_SIMD", mode)
    N, C, H, W, O, kh, kw, st, pads, dil, act, res = case
    rng = np.random.default_rng(zlib.crc32(repr(case).encode()))
    lim = {"t2": 1, "q3": 2, "i8": 127}[enc]
    x = rng.uniform(-1, 1, size=(N, C, H, W)).astype(np.float32)
    consts = {"w": pack(enc, rng.integers(-lim, lim + 1, size=(O, C, kh, kw)),
                        rng.uniform(0.05, 0.3, size=O).astype(np.float32) / lim),
              "b": pack("f32", rng.normal(size=O).astype(np.float32))}
    node = _node(st, pads, dil, act, res)
    inputs = [x, None, None]
    if res:
        OH = (H + pads[0] + pads[2] - dil * (kh - 1) - 1) // st + 1
        OW = (W + pads[1] + pads[3] - dil * (kw - 1) - 1) // st + 1
        inputs.append(rng.uniform(-1, 1, size=(N, O, OH, OW)).astype(np.float32))
    want = run_node(node, inputs, consts)[0]
    st_ = cpu.OPS["Conv"].prepare(node, consts, "packed")
    assert st_["w"].packed and st_["simd"] is not None and st_["wsimd"] is None
    assert (getattr(st_["w"], "simd_bits", None) is not None) == (enc in ("t2", "q3"))
    assert (getattr(st_["w"], "simd_i8", None) is not None) == (enc == "i8")
    y = np.full_like(want, np.nan)
    cpu.OPS["Conv"].run(node, st_, inputs, [y])
    scale = max(float(np.abs(want).max()), 1e-6)
    assert float(np.abs(y - want).max()) <= 1e-4 * scale + 1e-6


def test_expanded_fallback_rebuilds_filter(monkeypatch):
    """The expanded policy drops the (O, K) filter once the SIMD layout exists; a geometry
    with no SIMD tile (rows narrower than every tile) rebuilds it from that layout."""
    monkeypatch.setenv("EDGENET_SIMD", "avx512")
    rng = np.random.default_rng(4)
    consts = {"w": pack("f32", rng.normal(0, 0.3, size=(20, 6, 3, 3)).astype(np.float32)),
              "b": pack("f32", rng.normal(size=20).astype(np.float32))}
    node = _node(1, (1, 1, 1, 1), 1, "Relu", False)
    st_ = cpu.OPS["Conv"].prepare(node, consts, "expanded")
    assert st_["w"].f is None
    for W in (4, 30):   # narrow (fallback), then wide (SIMD) on the same prepared state
        x = rng.uniform(-1, 1, size=(1, 6, 5, W)).astype(np.float32)
        want = run_node(node, [x, None, None], consts)[0]
        y = np.full_like(want, np.nan)
        cpu.OPS["Conv"].run(node, st_, [x, None, None], [y])
        assert float(np.abs(y - want).max()) <= 1e-4 * float(np.abs(want).max()) + 1e-6


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("variant", ["serial", "parallel"])
def test_gemm_paths(mode, variant, monkeypatch):
    """Gemm: SIMD (expanded transposed / t2, q3 bit planes), row-dot (i8, mode off)."""
    from edgenet.cpu import _common
    monkeypatch.setattr(_common, "PAR_MIN", 0 if variant == "parallel" else 1 << 62)
    monkeypatch.setenv("EDGENET_SIMD", mode)
    rng = np.random.default_rng(12)
    node = {"name": "g", "op": "Gemm", "inputs": ["x", "w", "b"], "outputs": ["y"],
            "attrs": {"activation": act_desc("Relu")}}
    for enc in ("f32", "t2", "q3", "i8"):
        for N, K, O in ((1, 70, 37), (3, 16, 48), (2, 5, 7)):
            x = rng.uniform(-1, 1, size=(N, K)).astype(np.float32)
            if enc == "f32":
                w = pack("f32", rng.normal(size=(O, K)).astype(np.float32))
            else:
                lim = {"t2": 1, "q3": 2, "i8": 127}[enc]
                w = pack(enc, rng.integers(-lim, lim + 1, size=(O, K)),
                         rng.uniform(0.05, 0.3, size=O).astype(np.float32) / lim)
            consts = {"w": w, "b": pack("f32", rng.normal(size=O).astype(np.float32))}
            want = run_node(node, [x, None, None], consts)[0]
            for policy in ("expanded", "packed"):
                st_ = cpu.OPS["Gemm"].prepare(node, consts, policy)
                y = np.full_like(want, np.nan)
                cpu.OPS["Gemm"].run(node, st_, [x, None, None], [y])
                scale = max(float(np.abs(want).max()), 1e-6)
                assert float(np.abs(y - want).max()) <= 1e-4 * scale + 1e-6, (enc, policy)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("variant", ["serial", "parallel"])
def test_conv_thread_choice(mode, variant, monkeypatch):
    """Convs below CONV_PAR_MIN run in a one-thread region, the rest on all threads: both
    give the reference result (dense, depthwise, packed), and the thread count is restored."""
    import numba
    from edgenet.cpu import _common
    monkeypatch.setattr(_common, "CONV_PAR_MIN", 0 if variant == "parallel" else 1 << 62)
    monkeypatch.setenv("EDGENET_SIMD", mode)
    nt0 = numba.get_num_threads()
    for case in CASES[:4] + CASES[8:9]:
        N, C, H, W, O, kh, kw, st, pads, dil, act, res = case
        rng = np.random.default_rng(zlib.crc32(repr(case).encode()))
        x = rng.uniform(-1, 1, size=(N, C, H, W)).astype(np.float32)
        for group, wshape in ((1, (O, C, kh, kw)), (C, (C, 1, kh, kw))):
            consts = {"w": _ternary(rng, wshape),
                      "b": pack("f32", rng.normal(size=wshape[0]).astype(np.float32))}
            node = _node(st, pads, dil, act, False, group=group)
            want = run_node(node, [x, None, None], consts)[0]
            for policy in ("expanded", "packed"):
                st_ = cpu.OPS["Conv"].prepare(node, consts, policy)
                y = np.full_like(want, np.nan)
                cpu.OPS["Conv"].run(node, st_, [x, None, None], [y])
                scale = max(float(np.abs(want).max()), 1e-6)
                assert float(np.abs(y - want).max()) <= 1e-4 * scale + 1e-6, (case, policy)
                assert numba.get_num_threads() == nt0


def test_mode_detection(monkeypatch):
    from edgenet import _tiers
    monkeypatch.delenv("EDGENET_SIMD", raising=False)
    f = simd.host_features()
    assert _tiers.tier_of(f) == ("avx512vnni" if f.get("avx512vnni") and f.get("avx512bw")
                                 else "avx512" if f.get("avx512bw") and f.get("avx512f")
                                 else "avx2" if f.get("avx2") and f.get("fma") else "generic")
    assert simd.simd_mode() == simd.codegen_tier()
    monkeypatch.setenv("EDGENET_SIMD", "auto")
    assert simd.simd_mode() == simd.codegen_tier()
    assert _tiers.tier_of({"avx2": True, "fma": True}) == "avx2"
    assert _tiers.tier_of({"neon": True}) == "generic"
    assert _tiers.tier_of({"avx512f": True, "avx512bw": True, "avx2": True, "fma": True}) == "avx512"
    monkeypatch.setenv("EDGENET_SIMD", "bogus")
    with pytest.raises(ValueError, match="EDGENET_SIMD"):
        simd.simd_mode()


def test_tier_above_codegen_is_an_error(monkeypatch):
    """A tier the codegen target lacks would make LLVM abort on an unselectable intrinsic:
    a clear error instead (simulated by pretending the codegen is AVX2)."""
    from edgenet import _tiers
    monkeypatch.setattr(_tiers, "_codegen_tier", "avx2")
    monkeypatch.setenv("EDGENET_SIMD", "avx512vnni")
    with pytest.raises(ValueError, match="compiles for tier avx2"):
        simd.tier()
    monkeypatch.setenv("EDGENET_SIMD", "generic")
    assert simd.tier() == "generic"


_SUB = r"""
import os, sys, json
import numpy as np
from edgenet import cpu
from edgenet.cpu import simd, qconv
from edgenet.format import pack
from edgenet.reference import run_node
from edgenet.cpu.gen_simd_conv import qtier_kernel
rng = np.random.default_rng(0)
node = {"name": "c", "op": "Conv", "inputs": ["x", "w", "b"], "outputs": ["y"],
        "attrs": {"strides": [1, 1], "pads": [1, 1, 1, 1], "dilations": [1, 1], "group": 1,
                  "activation": None}}
x = rng.uniform(0, 1, (1, 8, 6, 9)).astype(np.float32)
consts = {"w": pack("t2", rng.integers(-1, 2, (24, 8, 3, 3)), np.full(24, 0.1, np.float32)),
          "b": pack("f32", rng.normal(size=24).astype(np.float32))}
out = {"tier": simd.tier(), "codegen": simd.codegen_tier(), "cpu": os.environ.get("NUMBA_CPU_NAME")}
for aq in (None, (1 / 255, 0, 9)):
    nd = dict(node, _aq=aq) if aq else node
    st = cpu.OPS["Conv"].prepare(nd, consts, "expanded")
    want = run_node(nd, [x, None, None], consts)[0]
    y = np.zeros_like(want)
    cpu.OPS["Conv"].run(nd, st, [x, None, None], [y])
    out["err" if aq is None else "err8"] = float(np.abs(y - want).max())
    if aq:
        q = st["q"]
        out["fam"] = q["fam"]
        if q["fam"] != "v":
            k = qtier_kernel(q["fam"], q["L"], q["k"], q["P"], 1)
            out["asm"] = chr(10).join(
                chr(10).join(f.inspect_asm().values()) for f in (k, k.py_func.__globals__[
                    k.py_func.__name__ + "_tile"]))
print(json.dumps(out))
"""


@pytest.mark.parametrize("tier,cpu,fam,absent,present", [
    ("avx2", "haswell", "pm", ("zmm",), ("vpmaddubsw", "vpmaddwd")),
    ("avx512", "skylake-avx512", "pm", ("vpdpbusd",), ("vpmaddubsw", "zmm")),
    ("generic", "haswell", "g", ("zmm", "vpmaddubsw", "vpdpbusd"), ("vpmullw",)),
])
def test_forced_tier_restricts_codegen(tier, cpu, fam, absent, present, tmp_path):
    """EDGENET_SIMD set before import: numba compiles for a CPU of that tier (no AVX-512
    registers under avx2), the tier's int8 kernel runs and matches the reference."""
    import json
    import os
    import subprocess
    import sys
    from edgenet import _tiers
    if simd.rank(tier) < simd.rank(_tiers.tier_of(simd.host_features())):
        pytest.skip(f"host cannot run {tier}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_CPU")}
    env.update(EDGENET_SIMD=tier, EDGENET_CACHE_DIR=str(tmp_path / "cache"))
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    r = subprocess.run([sys.executable, "-c", _SUB], capture_output=True, text=True,
                       env=env, cwd=root, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["tier"] == tier and out["cpu"] == cpu and out["fam"] == fam
    assert out["err"] < 1e-4 and out["err8"] < 1e-4
    for a in absent:
        assert a not in out["asm"], a
    for p in present:
        assert p in out["asm"], p


_EARLY = r"""
import json, os
from edgenet import _tiers
first = _tiers.tier()              # asked before edgenet._jit configures numba
from edgenet.cpu import simd
print(json.dumps({"first": first, "tier": simd.tier(), "codegen": simd.codegen_tier(),
                  "cpu": os.environ.get("NUMBA_CPU_NAME")}))
"""


def test_forced_tier_asked_before_the_runtime_loads(tmp_path):
    """_tiers.tier() before edgenet.cpu is imported, under a forced tier: the later
    configuration keeps that tier (it used to read its own NUMBA_CPU_NAME as the user's and
    report 'generic', and every Conv refused to load)."""
    import json
    import os
    import subprocess
    import sys
    from edgenet import _tiers
    if simd.rank("avx2") < simd.rank(_tiers.tier_of(simd.host_features())):
        pytest.skip("host cannot run avx2")
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_CPU")}
    env.update(EDGENET_SIMD="avx2", EDGENET_CACHE_DIR=str(tmp_path / "cache"))
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    r = subprocess.run([sys.executable, "-c", _EARLY], capture_output=True, text=True,
                       env=env, cwd=root, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out == {"first": "avx2", "tier": "avx2", "codegen": "avx2", "cpu": "haswell"}


def test_tile_choice():
    assert choose_k(64, 16) == 2 and choose_k(144, 16) == 3 and choose_k(16, 16) == 1
    assert choose_p(56, 16, 2) == 14 and choose_p(7, 16, 2) == 7 and choose_p(8, 16, 2) == 8
    assert choose_p(5, 16, 2) is None
    # 8 lanes: two 4-pixel tiles for rows of 7 (6-pixel ones computed 12 of 7), 4 for
    # 14, 8, 16, 32, not 28 or 56 (P_EFF), 6 on ties (12)
    assert [choose_p(ow, 8, 2) for ow in (7, 14, 28, 56, 8, 16, 32, 12, 6)] == \
        [4, 4, 6, 6, 4, 4, 4, 6, 6]
    assert choose_p(3, 8, 2) is None
    assert choose_p(7, 8, 2, tier="generic") == 4 and choose_p(7, 8, 2, tier="avx2") == 4
    assert choose_p(8, 8, 2, K=64) == 6 and choose_p(8, 8, 2, K=96) == 4   # P_LONG


@pytest.mark.parametrize("band_bytes", [1, 12000])
@pytest.mark.parametrize("case", [
    (1, 16, 13, 11, 3, 1, (1, 1, 1, 1), 1, "Relu", True),
    (2, 32, 15, 17, 3, 2, (1, 0, 2, 1), 2, "HardSwish", False),
    (1, 16, 20, 9, 5, 2, (2, 2, 2, 2), 1, "Sigmoid", True)])
def test_depthwise_channel_vector_bands(case, band_bytes, monkeypatch):
    """dw_cv in row bands (one output row a band with band_bytes=1; the halo rows read again
    by the next band; the last band overlapping the one before): the NumPy reference."""
    mode = "avx512" if simd.rank("avx512") >= simd.rank(simd.codegen_tier()) else "avx2"
    monkeypatch.setenv("EDGENET_SIMD", mode)
    monkeypatch.setattr(dw_cv, "BAND_BYTES", band_bytes)
    N, C, H, W, k, st, pads, dil, act, res = case
    rng = np.random.default_rng(H * W + k)
    x = rng.uniform(-1, 1, size=(N, C, H, W)).astype(np.float32)
    consts = {"w": _ternary(rng, (C, 1, k, k)),
              "b": pack("f32", rng.normal(size=C).astype(np.float32))}
    node = _node(st, pads, dil, act, res, group=C)
    OH = (H + pads[0] + pads[2] - dil * (k - 1) - 1) // st + 1
    OW = (W + pads[1] + pads[3] - dil * (k - 1) - 1) // st + 1
    inputs = [x, None, None] + ([rng.uniform(-1, 1, size=(N, C, OH, OW)).astype(np.float32)]
                                if res else [])
    want = run_node(node, inputs, consts)[0]
    st_ = cpu.OPS["Conv"].prepare(node, consts, "packed")
    assert dw_cv.use(st_, x.shape, want.shape)
    L = st_.simd_dw
    R, RI, NB = dw_cv.bands(N, C, OH, st, (k - 1) * dil + 1, W + pads[1] + pads[3], L, 2)
    assert (R == 1 and NB == OH) if band_bytes == 1 else (1 < R < OH and NB > 1)
    y = np.full_like(want, np.nan)
    cpu.OPS["Conv"].run(node, st_, inputs, [y])
    scale = max(float(np.abs(want).max()), 1e-6)
    assert float(np.abs(y - want).max()) <= 1e-4 * scale + 1e-6


def _conv_both_policies(node, consts, ins, want, tag):
    """Run the Conv with expanded and packed weights: within 1e-5 of the reference."""
    for policy in ("expanded", "packed"):
        st_ = cpu.OPS["Conv"].prepare(node, consts, policy)
        y = np.full_like(want, np.nan)
        cpu.OPS["Conv"].run(node, st_, ins, [y])
        scale = max(float(np.abs(want).max()), 1e-6)
        assert float(np.abs(y - want).max()) <= 1e-5 * scale + 1e-6, (tag, policy)


STEM_CASES = [
    # (N, C, H, W, O, k, stride, pads, dil, act): stem_f32 (pixel vectors, C <= 4; output
    # rows of 48 / 70 / 45 / 31 / 45 / 46: whole and overlapping last tiles of 16 and 8
    # pixels, and of 24 (stride 2 at 8 lanes); odd padded widths split unevenly)
    (1, 3, 40, 96, 16, 3, 2, (1, 1, 1, 1), 1, "HardSwish"),   # MobileNetV3-small's stem
    (2, 3, 37, 139, 37, 3, 2, (1, 1, 1, 1), 1, "Clip"),       # O past a tile, odd rows, N 2
    (1, 1, 21, 45, 24, 3, 1, (1, 1, 1, 1), 1, "Relu"),        # stride 1
    (1, 4, 33, 33, 20, 3, 1, (2, 1, 0, 2), 2, None),          # dilation, asymmetric pads
    (1, 3, 45, 89, 64, 7, 2, (3, 3, 3, 3), 1, "Relu"),        # ResNet stem
    (1, 2, 35, 92, 16, 3, 2, (0, 2, 1, 1), 2, None),          # stride 2 dilated
]


@pytest.mark.parametrize("mode", [m for m in MODES if m != "off"])
@pytest.mark.parametrize("case", STEM_CASES, ids=[str(i) for i in range(len(STEM_CASES))])
def test_stem_f32(mode, case, monkeypatch):
    """Convs with <= 4 input channels run as pixel vectors (stem_f32) on both lane counts,
    and match the reference."""
    from edgenet.cpu import stem_f32
    monkeypatch.setenv("EDGENET_SIMD", mode)
    N, C, H, W, O, k, st, pads, dil, act = case
    rng = np.random.default_rng(31)
    x = rng.uniform(-1, 1, size=(N, C, H, W)).astype(np.float32)
    consts = {"w": pack("f32", rng.normal(0, 0.3, size=(O, C, k, k)).astype(np.float32)),
              "b": pack("f32", rng.normal(size=O).astype(np.float32))}
    node = _node(st, pads, dil, act, False)
    want = run_node(node, [x, None, None], consts)[0]
    calls = []
    run = stem_f32.run
    monkeypatch.setattr(stem_f32, "run", lambda *a, **kw: calls.append(1) or run(*a, **kw))
    _conv_both_policies(node, consts, [x, None, None], want, case)
    assert len(calls) == 2


@pytest.mark.parametrize("L", [16, 8])
def test_stem_split_copy_matches_numpy(L):
    """stem_f32's split copy (stride-2 stems' input): each row of np.pad's planes as its
    even columns then its odd ones, for rows of fewer than L halves (scalar), whole and
    overlapping vectors, odd widths, pads wider than a vector; nothing past P * Hp * Wp."""
    from edgenet.cpu import stem_f32
    rng = np.random.default_rng(L)
    for P, H, W, pt, pl, pb, pr in [(1, 4, 5, 1, 1, 1, 1), (2, 3, 30, 0, 3, 2, 3),
                                    (3, 5, 57, 3, 3, 3, 3), (1, 2, 64, 1, 0, 0, 1),
                                    (2, 6, 40, 2, 19, 1, 2), (1, 7, 33, 0, 2, 3, 17)]:
        x = rng.standard_normal(P * H * W).astype(np.float32)
        Hp, Wp = H + pt + pb, W + pl + pr
        out = np.full(P * Hp * Wp + 40, np.nan, np.float32)
        stem_f32.SPLIT[L](x, P, H, W, pt, pl, Hp, Wp, out)
        pad = np.pad(x.reshape(P, H, W), ((0, 0), (pt, pb), (pl, pr)))
        want = np.concatenate([pad[:, :, 0::2], pad[:, :, 1::2]], axis=2)
        np.testing.assert_array_equal(out[:P * Hp * Wp].reshape(P, Hp, Wp), want)
        assert np.isnan(out[P * Hp * Wp:]).all()


@pytest.mark.parametrize("W", [1, 5, 7, 8, 9, 14, 15, 16, 17, 31, 32, 33, 56])
def test_pad_plane_matches_numpy_pad(W):
    """gen_simd_conv.pad_plane (every padded conv input): whole-vector row copies that
    overlap at the row end and 16-float zero stores that run into the next row must still
    write exactly np.pad's plane, and nothing past Hp * Wp."""
    from edgenet.cpu.gen_simd_conv import pad_plane
    rng = np.random.default_rng(W)
    for H, pt, pl, pb, pr in [(1, 0, 0, 0, 0), (3, 1, 1, 1, 1), (W, 3, 3, 3, 3), (2, 0, 2, 5, 0),
                              (4, 2, 0, 0, 19), (5, 9, 17, 1, 2)]:
        x = rng.standard_normal(H * W + 7).astype(np.float32)
        Hp, Wp = H + pt + pb, W + pl + pr
        out = np.full(Hp * Wp + 45, np.nan, np.float32)
        pad_plane(x, 7, H, W, pt, pl, Hp, Wp, out, 5)     # at offset 5 of its buffer
        want = np.pad(x[7:].reshape(H, W), ((pt, pb), (pl, pr)))
        np.testing.assert_array_equal(out[5:5 + Hp * Wp].reshape(Hp, Wp), want)
        assert np.isnan(out[:5]).all() and np.isnan(out[5 + Hp * Wp:]).all()


PV_CASES = [
    # (N, C, H, W, O, k, pads, dil, act, residual): the pixel-vector tiles for O <= 16
    # (stem_f32.use_pv): rows of 32 (whole vectors) and 60 / 55 / 58 (the last tile
    # overlapping), O a multiple of the 8-channel tile and not, a residual, dilation,
    # asymmetric pads, no pads
    (1, 16, 12, 32, 16, 3, (1, 1, 1, 1), 1, "Relu", True),     # ResNet-20's first stage
    (2, 6, 9, 60, 13, 3, (1, 1, 1, 1), 1, "Clip", False),
    (1, 24, 7, 60, 16, 5, (2, 1, 0, 2), 2, None, True),
    (1, 8, 5, 58, 4, 3, (0, 0, 0, 0), 1, "HardSwish", True),
]


@pytest.mark.parametrize("case", PV_CASES, ids=[str(i) for i in range(len(PV_CASES))])
def test_pixel_vector_tiles_for_few_output_channels(case, monkeypatch):
    """Dense stride-1 convs with <= 16 output channels on 16 lanes run as 8 channels x 2
    pixel vectors (stem_f32.use_pv), residual and activation in the vector epilogue, and
    match the reference with both weight policies."""
    from edgenet.cpu import stem_f32
    if simd.rank("avx512") < simd.rank(simd.codegen_tier()):
        pytest.skip("no avx512")
    monkeypatch.setenv("EDGENET_SIMD", "avx512")
    N, C, H, W, O, k, pads, dil, act, res = case
    rng = np.random.default_rng(O * W)
    x = rng.uniform(-1, 1, size=(N, C, H, W)).astype(np.float32)
    OH = H + pads[0] + pads[2] - dil * (k - 1)
    OW = W + pads[1] + pads[3] - dil * (k - 1)
    consts = {"w": pack("f32", rng.normal(0, 0.3, size=(O, C, k, k)).astype(np.float32)),
              "b": pack("f32", rng.normal(size=O).astype(np.float32))}
    node = _node(1, pads, dil, act, res)
    ins = [x, None, None] + ([rng.normal(size=(N, O, OH, OW)).astype(np.float32)] if res else [])
    want = run_node(node, ins, consts)[0]
    calls = []
    kern = stem_f32.PV_KERNELS[16]
    monkeypatch.setitem(stem_f32.PV_KERNELS, 16, lambda *a: calls.append(1) or kern(*a))
    _conv_both_policies(node, consts, ins, want, case)
    assert len(calls) == 2


@pytest.mark.parametrize("tier", ["avx512", "avx2"])
@pytest.mark.parametrize("N,C,O,act,res", [(1, 576, 144, "Relu", False),
                                          (2, 19, 37, "HardSigmoid", True),
                                          (1, 72, 16, "HardSwish", False),
                                          (3, 5, 50, None, True)])
def test_matrix_vector_1x1_on_a_1x1_map(tier, N, C, O, act, res, monkeypatch):
    """1x1 convs whose maps are 1x1 (squeeze-excitation) run as a matrix-vector product
    (pw_f32.mv_f32_l16 / mv_f32_l8: 4 accumulators over interleaved input channels, a
    masked last vector, vector or scalar activations, a residual) and match the
    reference."""
    from edgenet.cpu import pw_f32
    if simd.rank(tier) < simd.rank(simd.codegen_tier()):
        pytest.skip(f"no {tier}")
    monkeypatch.setenv("EDGENET_SIMD", tier)
    rng = np.random.default_rng(C * O)
    x = rng.uniform(-2, 2, size=(N, C, 1, 1)).astype(np.float32)
    consts = {"w": pack("f32", rng.normal(0, 0.3, size=(O, C, 1, 1)).astype(np.float32)),
              "b": pack("f32", rng.normal(size=O).astype(np.float32))}
    node = _node(1, (0, 0, 0, 0), 1, act, res)
    ins = [x, None, None] + ([rng.normal(size=(N, O, 1, 1)).astype(np.float32)] if res else [])
    want = run_node(node, ins, consts)[0]
    calls = []
    L = 16 if tier == "avx512" else 8
    kern = pw_f32.MV_KERNELS[L]
    monkeypatch.setitem(pw_f32.MV_KERNELS, L, lambda *a: calls.append(1) or kern(*a))
    _conv_both_policies(node, consts, ins, want, act)
    assert len(calls) == 2


def test_weights_start_on_a_cache_line():
    """The prepared weight layouts whose 64-byte vectors (or AMX tile rows) kernels load
    start on a cache line (numpy's allocations are 16-byte aligned: every such load would
    straddle two lines), and hold the same values as an ordinary copy."""
    from edgenet.cpu import qconv, wino_f32
    from edgenet.cpu._common import line_aligned
    from edgenet.cpu.simd_layout import expand_simd
    rng = np.random.default_rng(5)
    for n in (2, 17, 1000, 40000):          # small and mmap-sized allocations
        a = rng.standard_normal(n).astype(np.float32)[1:]      # a view off its line
        b = line_aligned(a)
        assert b.ctypes.data % 64 == 0 and b.dtype == a.dtype and np.array_equal(a, b)
    wf = rng.standard_normal((20, 8 * 9)).astype(np.float32)
    ws = expand_simd(wf, 20, 8, 3, 3, 16, 1)
    assert ws.ctypes.data % 64 == 0
    assert np.array_equal(ws.reshape(2, 8, 9, 16)[0, 3, 4], wf[:16, 3 * 9 + 4])
    U = wino_f32.filters(wf, 20, 8)
    assert U.ctypes.data % 64 == 0 and U.shape == (16, 8, 20)
    p = rng.integers(-1, 2, (20, 8, 3, 3)).astype(np.float32)
    q = qconv.prepare(p, 20, 8, 3, 3, np.zeros(20, np.float32), (0.02, 128), 16)
    assert q["wt"].ctypes.data % 64 == 0
    from edgenet.cpu import amx     # the A tiles (numpy only: no AMX needed to build them)
    lev = rng.integers(-1, 2, (20, 32 * 9)).astype(np.int8)
    wa = amx.prepare(lev, 20, 32, 9)["wa"]
    assert wa.ctypes.data % 64 == 0
    assert np.array_equal(wa.reshape(2, 9, 1, 16, 32)[0, 4, 0, 3], lev[3].reshape(32, 9)[:, 4])
