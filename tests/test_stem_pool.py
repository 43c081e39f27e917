"""A stride-2 stem and its MaxPool, fused (edgenet/cpu/conv.py ``link_pool``,
stem_f32 ``stem_pool_f32_*``): the MaxPool step runs the conv-and-pool kernel into its
output, the conv's own output is never written.

Oracles: the NumPy reference backend on the same file; the same model with the fusion off
(``stem_f32.POOL_ON``); ``observe`` (calibration's view) must see the conv's output as the
reference computes it.
"""
from __future__ import annotations

import numpy as np
import pytest

import edgenet
from edgenet.cpu import simd, stem_f32
from edgenet.format import pack, write_model
from edgenet.ir import act_desc

from helpers import close_to_scale as _close

TIERS = [t for t in ("avx512", "avx2") if simd.rank(t) >= simd.rank(simd.codegen_tier())]


def _stem_pool(k, act, out, ceil=0):
    """The pair: x -> conv k x k / 2, pads k // 2 (weights "w", "b"; act) -> "c" -> MaxPool
    3 x 3 / 2, pads 1 -> ``out``."""
    d = act_desc(act, *((0.0, 6.0) if act == "Clip" else ())) if act else None
    return [{"name": "stem", "op": "Conv", "inputs": ["x", "w", "b"], "outputs": ["c"],
             "attrs": {"strides": [2, 2], "pads": [k // 2] * 4, "dilations": [1, 1],
                       "group": 1, "activation": d}},
            {"name": "pool", "op": "MaxPool", "inputs": ["c"], "outputs": [out],
             "attrs": {"kernel": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1],
                       "dilations": [1, 1], "ceil_mode": ceil}}]


def _model(path, rng, C, O, H, W, k, act, ceil=0, reader=True, expose=False, two=False):
    """x (C x H x W) -> the pair (_stem_pool, C -> O) -> "p" -> 1x1 conv O -> 8 -> "y"
    (reader; else "p" is the output). expose: "c" is a graph output too; two: "c" also
    feeds an Add."""
    nodes = _stem_pool(k, act, "p", ceil)
    outputs = [{"name": "p", "shape": [None, O, None, None]}]
    if reader:
        nodes.append({"name": "pw", "op": "Conv", "inputs": ["p", "w2", "b2"],
                      "outputs": ["y"],
                      "attrs": {"strides": [1, 1], "pads": [0] * 4, "dilations": [1, 1],
                                "group": 1, "activation": None}})
        outputs = [{"name": "y", "shape": [None, 8, None, None]}]
    if expose:
        outputs.append({"name": "c", "shape": [None, O, None, None]})
    if two:
        nodes.append({"name": "sum", "op": "Add", "inputs": ["c", "c"], "outputs": ["s"]})
        outputs.append({"name": "s", "shape": [None, O, None, None]})
    graph = {"inputs": [{"name": "x", "shape": [None, C, H, W], "dtype": "float32"}],
             "outputs": outputs, "nodes": nodes}

    def f32(*shape, s=0.3):
        return pack("f32", rng.normal(0, s, size=shape).astype(np.float32))

    write_model(path, graph=graph, tensors={"w": f32(O, C, k, k), "b": f32(O, s=0.5),
                                            "w2": f32(8, O, 1, 1), "b2": f32(8, s=0.2)})
    return path


@pytest.mark.parametrize("tier", TIERS)
@pytest.mark.parametrize("C,O,H,W,k,act,N,reader", [
    (3, 64, 77, 101, 7, "Relu", 1, True),    # ResNet's 7x7: pooled rows of 26 (overlap)
    (3, 24, 40, 132, 3, "Clip", 2, True),    # O past a 16-channel tile, batch 2, 33 wide
    (1, 16, 23, 41, 5, None, 1, False),      # pooled rows of 11: under a vector (scalar)
    (4, 40, 64, 64, 3, "HardSwish", 1, True),
])
def test_stem_pool_matches_reference(C, O, H, W, k, act, N, reader, tier, tmp_path,
                                     monkeypatch):
    monkeypatch.setenv("EDGENET_SIMD", tier)
    rng = np.random.default_rng(O * H + k)
    path = _model(str(tmp_path / "m.edgenet"), rng, C, O, H, W, k, act, reader=reader)
    x = rng.normal(0, 1, (N, C, H, W)).astype(np.float32)
    if act in (None, "Relu"):   # the MaxPool's NaN rule through the fusion (the vector
        x[0, 0, 5, 7] = np.nan   # Clip / HardSwish epilogues clamp NaN, fused or not)
    m = edgenet.load(path)
    assert m._states[0].pool == "pool:c" and m._states[1]["pi"] == "pool:c"
    ref = edgenet.load(path, device="reference")(x)
    for _ in range(3):           # the unbound first run, then bound steps
        y = m(x)
        assert np.array_equal(np.isnan(y), np.isnan(ref))
        _close(np.nan_to_num(y), np.nan_to_num(ref))
    monkeypatch.setattr(stem_f32, "POOL_ON", False)
    off = edgenet.load(path)
    np.testing.assert_array_equal(off(x), y)   # the same sums in the same order


def test_observed_runs_see_the_conv_output(tmp_path, monkeypatch):
    """Calibration observes intermediates: those runs write the conv's output (as the
    reference computes it) and pool it apart; the unobserved runs after them fuse
    again (the same bits as before)."""
    if not TIERS:
        pytest.skip("no SIMD tier")
    monkeypatch.setenv("EDGENET_SIMD", TIERS[0])
    rng = np.random.default_rng(3)
    path = _model(str(tmp_path / "m.edgenet"), rng, 3, 32, 48, 64, 7, "Relu")
    x = rng.normal(0, 1, (1, 3, 48, 64)).astype(np.float32)
    m = edgenet.load(path)
    ref = edgenet.load(path, device="reference")
    assert m._states[0].pool is not None
    y0 = m(x)
    seen, want = {}, {}
    y = m.run({"x": x}, observe=lambda n, a: seen.__setitem__(n, a.copy()))["y"]
    ref.run({"x": x}, observe=lambda n, a: want.__setitem__(n, a.copy()))
    _close(seen["c"], want["c"])
    _close(seen["p"], want["p"])
    np.testing.assert_array_equal(y, y0)
    np.testing.assert_array_equal(m(x), y0)


@pytest.mark.parametrize("why", ["ceil", "expose", "two_readers", "off"])
def test_no_fusion_where_the_tensor_is_needed_or_the_pool_differs(why, tmp_path,
                                                                  monkeypatch):
    """ceil_mode 1, the conv's output a graph output or read twice, no SIMD tier: no
    pair, and results match the reference."""
    if not TIERS:
        pytest.skip("no SIMD tier")
    monkeypatch.setenv("EDGENET_SIMD", "off" if why == "off" else TIERS[0])
    rng = np.random.default_rng(11)
    path = _model(str(tmp_path / "m.edgenet"), rng, 3, 16, 36, 70, 3, "Relu",
                  ceil=int(why == "ceil"), expose=why == "expose", two=why == "two_readers")
    x = rng.normal(0, 1, (1, 3, 36, 70)).astype(np.float32)
    m = edgenet.load(path)
    assert m._states[0].pool is None
    got = m.run({"x": x})
    want = edgenet.load(path, device="reference").run({"x": x})
    for n in want:
        _close(got[n], want[n])


def _int8_model(path, rng, C, O, H, k, act, stem_w):
    """x (C x H x H) -> conv k x k / 2 (weights stem_w, act) -> "c" -> MaxPool 3 x 3 / 2,
    pads 1 -> "m" -> conv 3 x 3 O -> O, Relu, residual m (ternary) -> "y"."""
    OH = (H + 2 * (k // 2) - k) // 2 + 1
    P = (OH - 1) // 2 + 1
    nodes = _stem_pool(k, act, "m") + [
        {"name": "c1", "op": "Conv", "inputs": ["m", "w1", "b1", "m"], "outputs": ["y"],
         "attrs": {"strides": [1, 1], "pads": [1] * 4, "dilations": [1, 1], "group": 1,
                   "activation": act_desc("Relu")}}]
    graph = {"inputs": [{"name": "x", "shape": [None, C, H, H], "dtype": "float32"}],
             "outputs": [{"name": "y", "shape": [None, O, P, P]}], "nodes": nodes}
    tensors = {"w": stem_w,
               "b": pack("f32", rng.normal(0, 0.3, size=O).astype(np.float32)),
               "w1": pack("t2", rng.integers(-1, 2, size=(O, O, 3, 3)),
                          rng.uniform(0.02, 0.1, size=O).astype(np.float32)),
               "b1": pack("f32", rng.normal(0, 0.2, size=O).astype(np.float32))}
    write_model(path, graph=graph, tensors=tensors)
    return path


@pytest.mark.parametrize("tier", TIERS)
def test_fused_pool_writes_its_int8_readers_input(tier, tmp_path, monkeypatch):
    """An int8 file whose stem stays float32 (no range for x) and whose MaxPool feeds an
    int8 conv: the fused kernel writes the pooled map and the reader's words (4 channels
    a word); the same bits as the pair run apart (the MaxPool-and-quantize kernel), close
    to the reference."""
    monkeypatch.setenv("EDGENET_SIMD", tier)
    rng = np.random.default_rng(21)
    C, O, H = 3, 16, 70
    path = _int8_model(str(tmp_path / "m.edgenet"), rng, C, O, H, 3, "Relu",
                       pack("f32", rng.normal(0, 0.3, size=(O, C, 3, 3)).astype(np.float32)))
    ranges = {"m": (0.0, 3.0)}
    x = rng.normal(0, 1, (1, C, H, H)).astype(np.float32)
    m = edgenet.load(path, activations="int8", act_ranges=ranges)
    assert m._states[0].q is None and m._states[0].pool is not None
    assert m._states[1]["qo"] is not None
    got = [m(x) for _ in range(3)]
    monkeypatch.setattr(stem_f32, "POOL_ON", False)
    apart = edgenet.load(path, activations="int8", act_ranges=ranges)(x)
    for g in got:
        np.testing.assert_array_equal(g, apart)
    ref = edgenet.load(path, device="reference", activations="int8", act_ranges=ranges)(x)
    assert float(np.abs(apart - ref).max()) <= 2e-2 * float(np.abs(ref).max())


@pytest.mark.skipif(not simd.has_vnni(), reason="the int8 stem pairs on the VNNI tier only")
@pytest.mark.parametrize("C,O,H,k,N,act", [
    (3, 64, 77, 7, 1, "Relu"),     # ResNet's int8 stem: pooled rows of 20 (overlap)
    (3, 32, 70, 3, 2, "Clip"),     # 35 x 35 conv rows, batch 2
    (4, 16, 41, 5, 1, None),       # 4 channels in a word, pooled rows of 11 (scalar)
])
def test_int8_stem_pool_matches_reference(C, O, H, k, N, act, tmp_path, monkeypatch):
    """An int8 stem (a range for x) on the VNNI tiles' word layout and its MaxPool, read by
    an int8 conv: one kernel (stem_f32.POOL_I8) writes the pooled map and the reader's
    words; close to the pair run apart (qconv's stem tiles, then the MaxPool-and-quantize
    kernel: the same sums, the epilogue's rounding may differ) and to the reference."""
    monkeypatch.setenv("EDGENET_SIMD", "avx512vnni")
    rng = np.random.default_rng(O + H)
    path = _int8_model(str(tmp_path / "m.edgenet"), rng, C, O, H, k, act,
                       pack("t2", rng.integers(-1, 2, size=(O, C, k, k)),
                            rng.uniform(0.1, 0.4, size=O).astype(np.float32)))
    ranges = {"x": (-3.0, 3.0), "m": (-1.0, 4.0)}
    x = rng.normal(0, 1, (N, C, H, H)).astype(np.float32)
    m = edgenet.load(path, activations="int8", act_ranges=ranges)
    st = m._states[0]
    assert st.q is not None and not st.q["t2"] and st.pool is not None
    assert m._states[1]["qo"] is not None
    got = [m(x) for _ in range(3)]          # unbound, then bound
    np.testing.assert_array_equal(got[1], got[0])
    np.testing.assert_array_equal(got[2], got[0])
    monkeypatch.setattr(stem_f32, "POOL_ON", False)
    apart = edgenet.load(path, activations="int8", act_ranges=ranges)(x)
    scale = float(np.abs(apart).max())
    assert float(np.abs(got[0] - apart).max()) <= 1e-2 * scale
    ref = edgenet.load(path, device="reference", activations="int8", act_ranges=ranges)(x)
    assert float(np.abs(got[0] - ref).max()) <= 2e-2 * float(np.abs(ref).max())
