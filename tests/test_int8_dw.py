"""int8 depthwise convs (edgenet/quant.py rules; edgenet/cpu/conv.py ``ConvState.dq``,
edgenet/cpu/dw_cv.py ``dwcvq_l*``).

Oracles: the NumPy reference backend (the uint8 codes' values, float64 conv with the
weights' int8 levels); the same model with producers that do not write their consumer's
uint8 input (``quant.FUSE_PRODUCERS`` off: bit-identical); the float32-input path
(``dw_cv.ON`` off: the dequantized tensor through the plane kernels).
"""
from __future__ import annotations

import numpy as np
import pytest

import edgenet
from edgenet import quant
from edgenet.cpu import dw_cv, simd
from edgenet.format import pack, write_model
from edgenet.ir import act_desc

TIERS = [t for t in ("avx512vnni", "avx512", "avx2", "generic", "off")
         if simd.rank(t) >= simd.rank(simd.codegen_tier())]


def _desc(act):
    return act_desc(act, *((0.0, 6.0) if act == "Clip" else ())) if act else None


def _model(path, rng, C, H, st, k, act, enc="t2", front=True, dil=1, pad=None):
    """x -> [1x1 conv 8 -> C, Clip] -> depthwise kxk (group C, stride st, dilation dil, act,
    "same" pads unless ``pad``) -> 1x1 conv C -> 12 (Relu) -> y. front=False: the depthwise
    conv reads the graph input."""
    pad = dil * (k // 2) if pad is None else pad
    OH = (H + 2 * pad - dil * (k - 1) - 1) // st + 1
    C0 = 8 if front else C
    nodes = []
    if front:
        nodes.append({"name": "pw1", "op": "Conv", "inputs": ["x", "w1", "b1"],
                      "outputs": ["e"], "attrs": {"strides": [1, 1], "pads": [0] * 4,
                                                  "dilations": [1, 1], "group": 1,
                                                  "activation": _desc("Clip")}})
    nodes += [{"name": "dw", "op": "Conv", "inputs": ["e" if front else "x", "wd", "bd"],
               "outputs": ["d"], "attrs": {"strides": [st, st], "pads": [pad] * 4,
                                           "dilations": [dil, dil], "group": C,
                                           "activation": _desc(act)}},
              {"name": "pw2", "op": "Conv", "inputs": ["d", "w2", "b2"], "outputs": ["y"],
               "attrs": {"strides": [1, 1], "pads": [0] * 4, "dilations": [1, 1], "group": 1,
                         "activation": _desc("Relu")}}]
    graph = {"inputs": [{"name": "x", "shape": [None, C0, H, H], "dtype": "float32"}],
             "outputs": [{"name": "y", "shape": [None, 12, OH, OH]}], "nodes": nodes}
    if enc == "f32":
        wd = pack("f32", rng.normal(0, 0.4, size=(C, 1, k, k)).astype(np.float32))
    else:
        lim = {"t2": 1, "q3": 2}[enc]
        wd = pack(enc, rng.integers(-lim, lim + 1, size=(C, 1, k, k)),
                  rng.uniform(0.2, 0.5, size=C).astype(np.float32) / lim)
    tensors = {"w1": pack("t2", rng.integers(-1, 2, size=(C, C0, 1, 1)),
                          rng.uniform(0.1, 0.4, size=C).astype(np.float32)),
               "b1": pack("f32", rng.normal(0, 0.5, size=C).astype(np.float32)),
               "wd": wd,
               "bd": pack("f32", rng.normal(0, 0.2, size=C).astype(np.float32)),
               "w2": pack("t2", rng.integers(-1, 2, size=(12, C, 1, 1)),
                          rng.uniform(0.05, 0.2, size=12).astype(np.float32)),
               "b2": pack("f32", rng.normal(0, 0.2, size=12).astype(np.float32))}
    write_model(path, graph=graph, tensors=tensors)
    return path


# "e" wider than the Clip output it calibrates: a non-zero zero point for the depthwise input
RANGES = {"x": (-3.0, 3.0), "e": (-1.0, 6.0), "d": (-1.0, 6.0)}


def _close(got, ref, max_tol, med_tol):
    scale = float(np.abs(ref).max())
    assert scale > 0
    assert float(np.abs(got - ref).max()) <= max_tol * scale
    assert float(np.median(np.abs(got - ref))) <= med_tol * scale


def test_depthwise_is_eligible_and_grouped_convs_are_not():
    w = np.zeros((8, 1, 3, 3), np.float32)
    nd = {"op": "Conv", "inputs": ["x", "w"], "attrs": {"group": 8, "strides": [1, 1]}}
    assert quant.eligible(nd, {"w": w})
    assert not quant.eligible(dict(nd, attrs={"group": 8, "strides": [3, 3]}), {"w": w})
    # grouped with 2 channels a group, and depthwise with multiplier 2: float32
    assert not quant.eligible(dict(nd, attrs={"group": 4}), {"w": np.zeros((8, 2, 3, 3))})
    assert not quant.eligible(dict(nd, attrs={"group": 4}), {"w": np.zeros((8, 1, 3, 3))})


@pytest.mark.parametrize("tier", TIERS)
@pytest.mark.parametrize("C,H,st,k,act,enc,N,dil", [
    (16, 12, 1, 3, "Clip", "t2", 1, 1),
    (24, 40, 1, 3, "Relu", "q3", 2, 1),        # a 40x40 plane (f32: the plane kernel)
    (18, 11, 2, 3, "HardSwish", "t2", 2, 1),   # a partial channel block: C % 4 = 2
    (20, 14, 2, 5, None, "f32", 1, 1),         # 5x5, float weights -> int8 levels
    (32, 9, 1, 3, "Sigmoid", "t2", 1, 1),      # an activation without a vector epilogue
    (16, 13, 1, 3, "Relu", "t2", 1, 2),        # dilation 2 (the taps are offsets)
])
def test_int8_depthwise_matches_reference(tier, C, H, st, k, act, enc, N, dil, tmp_path,
                                          monkeypatch):
    """The whole chain in int8 (the 1x1 producer writes the depthwise conv's uint8 input,
    the depthwise conv its consumer's): the unfused model's bits, and the NumPy reference."""
    monkeypatch.setenv("EDGENET_SIMD", tier)
    rng = np.random.default_rng(C * H + k)
    path = _model(str(tmp_path / "m.edgenet"), rng, C, H, st, k, act, enc, dil=dil)
    x = rng.normal(0, 1, (N, 8, H, H)).astype(np.float32)
    m = edgenet.load(path, activations="int8", act_ranges=RANGES)
    nodes = {n["name"]: n for n in m.graph["nodes"]}
    assert m.int8_convs == 3 and "_aq" in nodes["dw"]
    assert nodes["pw1"]["_qo"] == nodes["dw"]["_aq"][:2] + ((0, 0, 0, 0),)
    assert nodes["dw"]["_qi"] and nodes["pw2"]["_qi"]
    if tier != "off":
        assert m._states[1].dq[2] == "qin:e" and dw_cv.use_q(m._states[1])
    got = m(x)
    monkeypatch.setattr(quant, "FUSE_PRODUCERS", False)
    plain = edgenet.load(path, activations="int8", act_ranges=RANGES)
    np.testing.assert_array_equal(plain(x), got)
    ref = edgenet.load(path, device="reference", activations="int8", act_ranges=RANGES)(x)
    _close(got, ref, 2e-2, 1e-3)
    # int8 differs from f32 activations (the depthwise input is quantized too)
    f32 = edgenet.load(path, activations="f32")(x)
    assert float(np.abs(f32 - got).max()) > 0


@pytest.mark.skipif(simd.codegen_tier() != "avx512vnni", reason="needs AVX512-VNNI")
@pytest.mark.parametrize("C,H,st,k,act,enc,N,pad", [
    (16, 12, 1, 3, "Clip", "t2", 1, None),      # rows of whole 4-pixel blocks, pl = 1
    (24, 13, 1, 3, "Relu", "q3", 2, None),      # a partial 16-channel block (float rows)
    (18, 11, 2, 3, "HardSwish", "t2", 2, None),  # C % 4 = 2, stride 2
    (20, 14, 2, 5, None, "f32", 1, None),       # 5x5 (two tap words), levels up to 127
    (32, 9, 1, 3, "Sigmoid", "t2", 1, None),    # no vector epilogue: the float rows
    (16, 7, 1, 3, "Relu", "t2", 1, 0),          # pl = 0, 5 outputs a row
    (16, 10, 2, 3, "Clip", "q3", 2, 0),         # stride 2, pl = 0
    (16, 23, 1, 5, "Clip", "t2", 1, 2),         # 5x5, pl = 2, rows of 23
    (32, 15, 2, 7, "Relu", "q3", 1, 3),         # 7x7, pl = 3, stride 2
    (48, 30, 1, 3, "Relu", "t2", 1, 1),         # rows ending mid-block, several bands
])
def test_int8_depthwise_dot_kernel_gives_the_float_kernels_bits(C, H, st, k, act, enc, N,
                                                                 pad, tmp_path, monkeypatch):
    """avx512vnni: dwcvd_l16 (taps summed by vpdpbusd over 4-pixel words) against the
    float32 kernel on the same uint8 input (dw_cv.DOT off): the same integer sums, so the
    same bits; and it really ran."""
    monkeypatch.setenv("EDGENET_SIMD", "avx512vnni")
    rng = np.random.default_rng(C * H + k + st)
    path = _model(str(tmp_path / "m.edgenet"), rng, C, H, st, k, act, enc, pad=pad)
    x = rng.normal(0, 1, (N, 8, H, H)).astype(np.float32)
    m = edgenet.load(path, activations="int8", act_ranges=RANGES)
    dws = m._states[1]
    assert dws.dq is not None and dw_cv.use_dot(dws, dws.params[3])
    got = m(x)
    monkeypatch.setattr(dw_cv, "DOT", False)
    plain = edgenet.load(path, activations="int8", act_ranges=RANGES)
    assert not dw_cv.use_dot(plain._states[1], dws.params[3])
    np.testing.assert_array_equal(plain(x), got)
    ref = edgenet.load(path, device="reference", activations="int8", act_ranges=RANGES)(x)
    _close(got, ref, 2e-2, 1e-3)


def test_dot_weights_layout():
    """dw_cv.dot_weights: word (block, kh, g, c) holds channel c's levels of taps 4g..4g+3
    of row kh (zero past KW and past O); levels outside int8: None."""
    rng = np.random.default_rng(3)
    O, KH, KW = 19, 3, 5
    lev = rng.integers(-127, 128, size=(O, KH * KW))
    w = dw_cv.dot_weights(lev, O, KH, KW).view(np.int8).reshape(2, KH, 2, 16, 4)
    full = np.zeros((32, KH, 8), np.int64)
    full[:O, :, :KW] = lev.reshape(O, KH, KW)
    for b in range(2):
        for kh in range(KH):
            for g in range(2):
                np.testing.assert_array_equal(w[b, kh, g], full[16 * b:16 * b + 16, kh,
                                                                4 * g:4 * g + 4])
    assert dw_cv.dot_weights(np.full((2, 9), 128), 2, 3, 3) is None


@pytest.mark.parametrize("st", [1, 2])
def test_int8_depthwise_float_path_is_the_same_function(st, tmp_path, monkeypatch):
    """dw_cv off: the dequantized tensor through the float32 kernels gives the same values
    to float32 rounding (the two differ only in the FMA order)."""
    rng = np.random.default_rng(7 + st)
    path = _model(str(tmp_path / "m.edgenet"), rng, 24, 20, st, 3, "Clip")
    x = rng.normal(0, 1, (2, 8, 20, 20)).astype(np.float32)
    got = edgenet.load(path, activations="int8", act_ranges=RANGES)(x)
    monkeypatch.setattr(dw_cv, "ON", False)
    m = edgenet.load(path, activations="int8", act_ranges=RANGES)
    assert not dw_cv.use_q(m._states[1])
    _close(m(x), got, 1e-5, 1e-6)


def test_int8_depthwise_quantizes_a_graph_input(tmp_path):
    """A depthwise conv that reads a graph input quantizes it itself (no producer)."""
    rng = np.random.default_rng(11)
    path = _model(str(tmp_path / "m.edgenet"), rng, 20, 13, 1, 3, "Relu", front=False)
    m = edgenet.load(path, activations="int8", act_ranges=RANGES)
    nodes = {n["name"]: n for n in m.graph["nodes"]}
    assert m.int8_convs == 2 and not nodes["dw"].get("_qi") and nodes["pw2"]["_qi"]
    x = rng.normal(0, 1, (2, 20, 13, 13)).astype(np.float32)
    ref = edgenet.load(path, device="reference", activations="int8", act_ranges=RANGES)(x)
    _close(m(x), ref, 2e-2, 1e-3)
    # bound steps (second call on this thread) give the same bits
    np.testing.assert_array_equal(m(x), m(x))


def test_auto_keeps_depthwise_f32_where_no_kernel_reads_uint8(tmp_path, monkeypatch):
    rng = np.random.default_rng(5)
    path = _model(str(tmp_path / "m.edgenet"), rng, 16, 12, 1, 3, "Clip")
    shapes = {"e": (1, 16, 12, 12), "d": (1, 16, 12, 12), "x": (1, 8, 12, 12),
              "y": (1, 12, 12, 12)}
    m = edgenet.load(path, activations="f32")
    dw = [n for n in m.graph["nodes"] if n["name"] == "dw"][0]
    for tier in ("generic", "off"):
        assert not quant.choose_int8(dw, m.consts, shapes, tier)[0]
    for tier in ("avx512vnni", "avx512", "avx2"):
        use, t8, t32, fam = quant.choose_int8(dw, m.consts, shapes, tier)
        assert fam == "dw" and use and t8 < quant.DW_MARGIN * t32
    monkeypatch.setitem(quant.DW_INT8_RATIO, "avx2", 0.97)     # measured no faster: f32
    assert not quant.choose_int8(dw, m.consts, shapes, "avx2")[0]


def test_auto_rule_for_a_dense_conv_over_one_channel_is_the_dense_one():
    """A group-1 conv over a 1-channel input (a grayscale stem) has a (O, 1, k, k) weight
    like a depthwise conv: auto decides it with the dense rule, by its group."""
    w = pack("t2", np.ones((16, 1, 3, 3), np.int64), np.ones(16, np.float32))
    nd = {"op": "Conv", "name": "stem", "inputs": ["x", "w"], "outputs": ["y"],
          "attrs": {"group": 1, "strides": [1, 1], "pads": [1, 1, 1, 1]}}
    shapes = {"x": (1, 1, 28, 28), "y": (1, 16, 28, 28)}
    use, t8, t32, fam = quant.choose_int8(nd, {"w": w}, shapes, "avx512vnni")
    assert fam == "v" and use == (t8 < quant.AUTO_MARGIN * t32)
    dw = dict(nd, attrs=dict(nd["attrs"], group=16))
    assert quant.choose_int8(dw, {"w": w}, dict(shapes, x=(1, 16, 28, 28)), "avx512vnni")[3] \
        == "dw"
