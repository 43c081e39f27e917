"""int8 activations (edgenet/quant.py, edgenet/cpu/qconv.py).

Oracles: the NumPy reference backend fake-quantizes the conv input with the same rules
(uint8 codes, then float64 conv); the CPU backend's uint8 x int8 kernels of every tier this
process can run (VNNI, vpmaddubsw with int16 accumulation at 16 and 8 lanes, generic IR)
must agree with it to float rounding. At model level, the int8 model is
compared with the reference int8 model and with the f32-activation model.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import zlib

import numpy as np
import pytest

import edgenet
from edgenet import cpu, quant
from edgenet.cpu import qconv, simd
from edgenet.errors import DeviceError, EdgenetError, ModelError
from edgenet.format import pack
from edgenet.ir import act_desc
from edgenet.reference import run_node

FIX = os.path.join(os.path.dirname(__file__), "fixtures")
TIERS = [t for t in simd.TIERS + ("off",) if simd.rank(t) >= simd.rank(simd.codegen_tier())]

# (N, C, H, W, O, kh, kw, stride, pads (t, l, b, r), dil, act, residual, enc, lo, hi)
CASES = [
    (1, 13, 12, 16, 37, 3, 3, 1, (1, 1, 1, 1), 1, "Relu", False, "t2", 0.0, 1.0),
    (2, 8, 10, 14, 20, 3, 3, 1, (1, 1, 1, 1), 1, "Relu", True, "q3", -1.0, 1.0),
    (1, 16, 15, 17, 32, 3, 3, 2, (1, 1, 1, 1), 1, None, False, "t2", -0.3, 0.9),
    (1, 3, 30, 30, 24, 7, 7, 2, (3, 3, 3, 3), 1, "Relu", False, "f32", -1.0, 1.0),
    (1, 24, 9, 21, 40, 1, 1, 1, (0, 0, 0, 0), 1, None, False, "i8", 0.0, 1.0),
    (1, 24, 18, 18, 48, 1, 1, 2, (0, 0, 0, 0), 1, None, True, "t2", -1.0, 0.5),
    (1, 6, 16, 20, 16, 3, 3, 1, (2, 2, 2, 2), 2, "LeakyRelu", False, "f32", -1.0, 1.0),
    (1, 5, 11, 13, 18, 3, 3, 1, (0, 2, 1, 0), 1, "HardSwish", True, "q3", -0.5, 0.5),
    (1, 64, 7, 7, 144, 3, 3, 1, (1, 1, 1, 1), 1, "Clip", True, "t2", 0.0, 1.0),
    (1, 8, 9, 9, 64, 3, 3, 1, (1, 1, 1, 1), 1, "Sigmoid", False, "t2", -1.0, 1.0),
    (1, 4, 5, 5, 16, 3, 3, 1, (1, 1, 1, 1), 1, "Relu", False, "t2", 0.0, 1.0),    # P = 4 tile
    (1, 4, 3, 2, 16, 3, 3, 1, (1, 1, 1, 1), 1, "Relu", False, "t2", 0.0, 1.0),    # 2-wide: P = 1
    (1, 10, 9, 20, 24, 3, 3, 1, (1, 1, 1, 1), 1, "Clip", False, "i8", -1.0, 2.0),
    (1, 17, 14, 14, 96, 1, 1, 1, (0, 0, 0, 0), 1, "Relu", False, "t2", 0.0, 0.7),  # clamps
    # 1x1 stride 1 (VNNI: the pixel-vector kernel): 7x11 (overlapping pixel tile), O and C
    # not multiples of 4, residual + Clip; HardSwish (a vector epilogue); Sigmoid (the
    # scalar activation after the store)
    (2, 5, 7, 11, 6, 1, 1, 1, (0, 0, 0, 0), 1, "Clip", True, "t2", 0.0, 1.0),
    (1, 12, 8, 10, 9, 1, 1, 1, (0, 0, 0, 0), 1, "HardSwish", False, "q3", -1.0, 1.0),
    (1, 7, 8, 10, 5, 1, 1, 1, (0, 0, 0, 0), 1, "Sigmoid", True, "t2", -1.0, 1.0),
]


def _node(st, pads, dil, act, res, aq=None):
    desc = act_desc(act, *((0.0, 6.0) if act == "Clip" else ())) if act else None
    ins = ["x", "w", "b"] + (["r"] if res else [])
    nd = {"name": "c", "op": "Conv", "inputs": ins, "outputs": ["y"],
          "attrs": {"strides": [st, st], "pads": list(pads), "dilations": [dil, dil],
                    "group": 1, "activation": desc}}
    if aq is not None:
        nd["_aq"] = aq
    return nd


def _weight(rng, enc, shape):
    if enc == "f32":
        return pack("f32", rng.normal(0, 0.3, size=shape).astype(np.float32))
    lim = {"t2": 1, "q3": 2, "i8": 127}[enc]
    return pack(enc, rng.integers(-lim, lim + 1, size=shape),
                rng.uniform(0.05, 0.3, size=shape[0]).astype(np.float32) / lim)


@pytest.mark.parametrize("tier", TIERS)
@pytest.mark.parametrize("case", CASES, ids=[str(i) for i in range(len(CASES))])
def test_qconv_matches_reference(case, tier, monkeypatch):
    monkeypatch.setenv("EDGENET_SIMD", tier)
    N, C, H, W, O, kh, kw, st, pads, dil, act, res, enc, lo, hi = case
    rng = np.random.default_rng(zlib.crc32(repr(case).encode()))
    x = rng.uniform(-1, 1, size=(N, C, H, W)).astype(np.float32)
    consts = {"w": _weight(rng, enc, (O, C, kh, kw)),
              "b": pack("f32", rng.normal(size=O).astype(np.float32))}
    OH = (H + pads[0] + pads[2] - dil * (kh - 1) - 1) // st + 1
    OW = (W + pads[1] + pads[3] - dil * (kw - 1) - 1) // st + 1
    s, zp = quant.qparams(lo, hi)
    node = _node(st, pads, dil, act, res, aq=(float(s), zp, OW))
    inputs = [x, None, None]
    if res:
        inputs.append(rng.uniform(-1, 1, size=(N, O, OH, OW)).astype(np.float32))
    want = run_node(node, inputs, consts)[0]
    state = cpu.OPS["Conv"].prepare(node, consts, "packed")
    wmax = {"t2": 1, "q3": 2, "i8": 127, "f32": 127}[enc]
    assert state["q"] is not None
    assert (state["q"]["fam"], state["q"]["L"]) == qconv.family(tier, wmax)
    y = np.full_like(want, np.nan)
    cpu.OPS["Conv"].run(node, state, inputs, [y])
    scale = max(float(np.abs(want).max()), 1e-6)
    assert float(np.abs(y - want).max()) <= 2e-5 * scale + 1e-6
    y2 = np.full_like(want, np.nan)         # second call: reused (zero-point filled) scratch
    cpu.OPS["Conv"].run(node, state, inputs, [y2])
    np.testing.assert_array_equal(y, y2)
    # the int8 result approximates the float conv of the input clipped to the calibrated
    # range (within rounding: half a code per input, the weights' own int8 rounding)
    xc = np.clip(x, -zp * s, (255 - zp) * s).astype(np.float32)
    f32 = run_node(_node(st, pads, dil, act, res), [xc] + inputs[1:], consts)[0]
    assert float(np.abs(y - f32).max()) < 0.05 * scale


def test_tile_choice_fits_every_row():
    from edgenet.cpu import gen_simd_conv as gen
    for (fam, L), tiles in qconv._TILES.items():
        # every tile the chooser can pick is in the generator's menu
        kind = "qconv" if fam in ("v", "v2") else "qtier"
        for k, P in tiles:
            key = ((k, P, 1, "vnni") if fam == "v" else (k, P, 1, "vnni2") if fam == "v2"
                   else (fam, L, k, P, 1))
            assert (kind, key) in gen.MENU
        for O in (1, 16, 24, 37, 64, 144, 512):
            # (2-bit weights only where a row holds the smallest of their tiles: prepare)
            for OW in range(min(P for _, P in tiles) if fam == "v2" else 1, 60):
                k, P = qconv.choose_kp(O, OW, fam, L)
                assert P <= OW and (k, P) in tiles


T2_CASES = [   # (N, C, H, W, O, k, stride, pads, act, residual): 3x3 / 5x5, P = 7, 8, 12
    (1, 13, 7, 7, 37, 3, 1, (1, 1, 1, 1), "Relu", False),
    (2, 8, 10, 10, 64, 3, 1, (1, 1, 1, 1), "Clip", True),
    (1, 16, 12, 12, 32, 3, 1, (1, 1, 1, 1), None, False),
    (1, 9, 19, 19, 48, 3, 2, (1, 1, 1, 1), "HardSwish", False),
    (1, 6, 9, 13, 20, 5, 1, (2, 2, 2, 2), "Sigmoid", True),
    (1, 32, 16, 16, 64, 3, 2, (0, 1, 1, 0), "Relu", False),
]


@pytest.mark.skipif(not simd.has_vnni(), reason="the 2-bit tiles are VNNI kernels")
@pytest.mark.parametrize("case", T2_CASES, ids=[str(i) for i in range(len(T2_CASES))])
def test_two_bit_weight_tiles_match_the_int8_tiles(case, monkeypatch):
    """Ternary weights kept 2 bits each (qconv.t2_pack, decoded per vector by simd.vld2b16)
    give the int8-level tiles' exact sums: the same outputs, bit for bit; both match the
    NumPy reference."""
    N, C, H, W, O, kk, st, pads, act, res = case
    rng = np.random.default_rng(100 + T2_CASES.index(case))   # (str hashes vary by process)
    x = rng.uniform(-1, 1, size=(N, C, H, W)).astype(np.float32)
    consts = {"w": _weight(rng, "t2", (O, C, kk, kk)),
              "b": pack("f32", rng.normal(size=O).astype(np.float32))}
    OH = (H + pads[0] + pads[2] - kk) // st + 1
    OW = (W + pads[1] + pads[3] - kk) // st + 1
    s, zp = quant.qparams(-0.5, 1.0)
    node = _node(st, pads, 1, act, res, aq=(float(s), zp, OW))
    inputs = [x, None, None]
    if res:
        inputs.append(rng.uniform(-1, 1, size=(N, O, OH, OW)).astype(np.float32))
    ys = []
    for t2_min in (0, 1 << 62):
        monkeypatch.setattr(qconv, "T2_MIN", t2_min)
        state = cpu.OPS["Conv"].prepare(node, consts, "packed")
        assert state["q"]["t2"] == (t2_min == 0)
        y = np.full((N, O, OH, OW), np.nan, np.float32)
        cpu.OPS["Conv"].run(node, state, inputs, [y])
        ys.append(y)
    np.testing.assert_array_equal(ys[0], ys[1])
    want = run_node(node, inputs, consts)[0]
    scale = max(float(np.abs(want).max()), 1e-6)
    assert float(np.abs(ys[0] - want).max()) <= 2e-5 * scale + 1e-6


@pytest.mark.skipif(not simd.has_vnni(), reason="vld2b16 is an AVX-512 kernel")
def test_two_bit_pack_decodes_to_the_levels():
    from edgenet._jit import njit

    @njit
    def decode(w, out):
        for i in range(out.size // 16):
            simd.vstwords16(out, i * 16, simd.vld2b16(w, i * 4))

    rng = np.random.default_rng(3)
    lev = rng.integers(-1, 2, size=7 * 64).astype(np.int8)
    lev[:64] = [-1, 0, 1, 0] * 16           # every code in every 2-bit field of a byte
    packed = qconv.t2_pack(lev.view(np.int32))
    assert packed.size == 7 * 4             # a quarter of the bytes
    out = np.zeros(7 * 16, np.int32)
    decode(packed, out)
    np.testing.assert_array_equal(out.view(np.int8), lev)


def test_family_per_tier_and_weights():
    """vpmaddubsw saturates past |w| = 64: int8 levels never take the pm family."""
    assert qconv.family("avx512vnni", 127) == ("v", 16)
    assert qconv.family("avx512", 2) == ("pm", 16) and qconv.family("avx2", 64) == ("pm", 8)
    assert qconv.family("avx2", 65) == ("g", 8) and qconv.family("generic", 1) == ("g", 8)
    assert qconv.pmadd_steps("pm", 1) == 64 and qconv.pmadd_steps("pm", 2) == 32
    assert qconv.pmadd_steps("g", 127) == 1 and qconv.pmadd_steps("g", 2) == 64
    for fam in ("pm", "g"):
        for wmax in (1, 2, 64, 127):
            if fam == "pm" and wmax > 64:
                continue
            per = (2 if fam == "pm" else 1) * 255 * wmax
            n = qconv.pmadd_steps(fam, wmax)
            assert n * per <= 32767 and (n + 1) * per > 32767


@pytest.mark.parametrize("tier", TIERS)
@pytest.mark.parametrize("sign", [1, -1])
@pytest.mark.parametrize("shape", [(64, 3, 1), (3, 7, 2), (160, 1, 1)], ids=["3x3", "7x7", "1x1"])
def test_int16_accumulation_at_its_bound(tier, sign, shape, monkeypatch):
    """Every input at the top code (255) and every quinary weight at +-2: the int16 partial
    sums reach their bound (smax steps of 2*255*2) and must not wrap or saturate; channel
    groups and taps past smax exercise the chunked widening (7x7: 49 taps > 32)."""
    monkeypatch.setenv("EDGENET_SIMD", tier)
    C, kk, st = shape
    O, H = 20, 9
    rng = np.random.default_rng(C + kk)
    x = np.full((1, C, H, H), 3.0, np.float32)
    x[..., ::3, ::2] = rng.uniform(0.5, 1.0, size=x[..., ::3, ::2].shape)
    lev = np.full((O, C, kk, kk), 2 * sign, np.int64)
    lev[1] = -2 * sign
    consts = {"w": pack("q3", lev, np.full(O, 0.01, np.float32)),
              "b": pack("f32", np.zeros(O, np.float32))}
    pd = kk // 2
    OW = (H + 2 * pd - kk) // st + 1
    s, zp = quant.qparams(0.0, 1.0)        # x = 3.0 clamps to code 255
    node = _node(st, (pd,) * 4, 1, None, False, aq=(float(s), zp, OW))
    want = run_node(node, [x, None, None], consts)[0]
    state = cpu.OPS["Conv"].prepare(node, consts, "packed")
    y = np.full_like(want, np.nan)
    cpu.OPS["Conv"].run(node, state, [x, None, None], [y])
    assert float(np.abs(want).max()) > 0.5 * 255 * 2 * C * kk * kk * 0.01 * float(s)
    np.testing.assert_allclose(y, want, rtol=2e-6, atol=1e-5)


def test_qparams_and_fake_quant():
    s, zp = quant.qparams(0.0, 2.55)
    assert zp == 0 and np.isclose(s, 0.01)
    s, zp = quant.qparams(-1.0, 1.0)
    assert 127 <= zp <= 128
    s, zp = quant.qparams(0.5, 2.0)            # widened to include 0
    assert zp == 0 and np.isclose(s, 2.0 / 255)
    assert quant.qparams(0.0, 0.0) == (np.float32(1.0), 0)
    with pytest.raises(EdgenetError):
        quant.qparams(float("nan"), 1.0)
    # half to even, as ONNX QuantizeLinear; clamped to [0, 255]
    x = np.array([0.5, 1.5, 2.5, -3.0, 300.0], np.float32)
    np.testing.assert_array_equal(quant.fake_quant(x, 1.0, 0), [0, 2, 2, 0, 255])
    np.testing.assert_array_equal(quant.fake_quant(x, 1.0, 10), [0, 2, 2, -3, 245])


def test_int8_weights_per_channel():
    w = np.array([[0.5, -1.0, 0.25], [0.0, 0.0, 0.0], [3.0, 1.0, -2.0]], np.float32)
    lev, a = quant.int8_weights(w)
    assert lev.dtype == np.int8 and np.abs(lev).max() == 127
    np.testing.assert_array_equal(lev[1], 0)
    assert float(np.abs(lev * a[:, None] - w).max()) <= float(a.max()) / 2 + 1e-7


# ----------------------------------------------------------------------------- model level
@pytest.fixture(scope="module")
def r20(tmp_path_factory):
    pytest.importorskip("onnx")
    from converters.convert import convert
    d = tmp_path_factory.mktemp("int8")
    rng = np.random.default_rng(7)
    cal = rng.normal(0, 1, (12, 3, 32, 32)).astype(np.float32)
    p = str(d / "r20.int8.edgenet")
    convert(os.path.join(FIX, "resnet20.onnx"), p, weights="ternary", activations="int8",
            calibration=cal, reference_onnx=str(d / "r20.int8.ref.onnx"))
    return p, cal, d


def _ort_plain(path):
    """onnxruntime with graph optimizations off: its optimizer would replace the QDQ pairs
    by its own int8 kernels (other rounding); unoptimized it is the ONNX semantics."""
    ort = pytest.importorskip("onnxruntime")
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    return lambda x: s.run(None, {s.get_inputs()[0].name: x})[0]


@pytest.mark.parametrize("name,weights", [("resnet20", "ternary"),
                                          ("mobilenetv2_tiny", "quinary"),
                                          ("inception_tiny", "int8")])
def test_int8_matches_onnxruntime_qdq_reference(name, weights, r20, tmp_path):
    """--reference-onnx with int8 activations: the source model with the quantized weights
    and a QuantizeLinear/DequantizeLinear pair on the input of every int8 conv."""
    if name == "resnet20":
        p, _, d = r20
        ref = str(d / "r20.int8.ref.onnx")
    else:
        from converters.convert import convert
        import onnx
        src = os.path.join(FIX, name + ".onnx")
        dims = onnx.load(src).graph.input[0].type.tensor_type.shape.dim
        shape = [d.dim_value or 1 for d in dims]
        cal = np.random.default_rng(5).normal(0, 1, [12] + shape[1:]).astype(np.float32)
        p, ref = str(tmp_path / "m.edgenet"), str(tmp_path / "m.ref.onnx")
        convert(src, p, weights=weights, activations="int8", calibration=cal,
                reference_onnx=ref)
    m = edgenet.load(p, activations="int8")     # the QDQ export quantizes every eligible conv
    assert m.int8_convs > 0
    dws = [n for n in m.graph["nodes"] if int((n.get("attrs") or {}).get("group", 1)) > 1]
    assert all("_aq" in n for n in dws) and (len(dws) > 0) == (name == "mobilenetv2_tiny")
    shape = [1 if s is None else s for s in m.inputs[0].shape]
    x = np.random.default_rng(6).normal(0, 1, [3] + shape[1:]).astype(np.float32)
    want = _ort_plain(ref)(x)
    got = m(x)
    scale = float(np.abs(want).max())
    err = np.abs(got - want)
    assert float(err.max()) < 1e-2 * scale          # a code flip at a rounding boundary
    assert float(np.median(err)) < 2e-4 * scale
    # and the export is not simply the float model (the oracle sees the quantization)
    src_out = _ort_plain(os.path.join(FIX, name + ".onnx"))(x)
    assert float(np.abs(src_out - want).max()) > 10 * float(np.median(err))


def test_calibrated_file_and_modes(r20):
    p, cal, _ = r20
    ma = edgenet.load(p)                           # calibrated file: auto by default
    assert ma.activations == "auto" and len(ma.int8_choices) == 19
    assert ma.int8_convs == sum(c["int8"] for c in ma.int8_choices)
    m8 = edgenet.load(p, activations="int8")
    assert m8.activations == "int8" and m8.int8_convs == 19
    m32 = edgenet.load(p, activations="f32")
    assert m32.activations == "f32" and m32.int8_convs == 0
    ref8 = edgenet.load(p, device="reference", activations="int8")
    assert ref8.activations == "int8"
    meta = m8.metadata[quant.METADATA_KEY]
    assert meta["mode"] == "int8" and meta["samples"] == 12
    # the graph input's range is the calibration samples' extremes (minmax)
    lo, hi = meta["ranges"]["input"]
    assert lo == pytest.approx(float(cal.min())) and hi == pytest.approx(float(cal.max()))
    x = np.random.default_rng(8).normal(0, 1, (3, 3, 32, 32)).astype(np.float32)
    y8, yr, y32 = m8(x), ref8(x), m32(x)
    scale = float(np.abs(yr).max())
    # cpu int8 vs reference int8: float rounding can flip a code at a rounding boundary
    # inside the net, which moves the output by ~one code's worth, never more
    assert float(np.abs(y8 - yr).max()) < 1e-2 * scale
    assert float(np.median(np.abs(y8 - yr))) < 1e-5 * scale
    # int8 vs f32 activations: close, and different (the mode really changed)
    d = float(np.abs(y8 - y32).max())
    assert 0 < d < 0.1 * scale
    assert (y8.argmax(1) == y32.argmax(1)).mean() >= 2 / 3


def test_calibrate_api_and_percentile(r20):
    p, cal, _ = r20
    m32 = edgenet.load(p, activations="f32")
    mm = quant.calibrate(m32, cal, method="minmax")
    pc = quant.calibrate(m32, cal, method="percentile", percentile=99.0)
    assert set(mm) == set(pc) and len(mm) >= 10
    for k in mm:
        assert mm[k][0] <= pc[k][0] + 1e-6 and pc[k][1] <= mm[k][1] + 1e-6
    m = edgenet.load(p, activations="int8", act_ranges=pc)
    assert m.int8_convs == 19
    with pytest.raises(EdgenetError, match="activations='f32'"):
        quant.calibrate(edgenet.load(p), cal)


def test_int8_needs_ranges_and_cpu(r20, tmp_path):
    _, _, d = r20
    from converters.convert import convert
    plain = str(tmp_path / "plain.edgenet")
    convert(os.path.join(FIX, "resnet20.onnx"), plain, weights="ternary")
    assert edgenet.load(plain).activations == "f32"
    with pytest.raises(ModelError, match="calibrated ranges"):
        edgenet.load(plain, activations="int8")
    with pytest.raises(EdgenetError, match="activation precision"):
        edgenet.load(plain, activations="int4")
    with pytest.raises(DeviceError):
        edgenet.load(plain, device="cuda", activations="int8", act_ranges={"input": (0, 1)})


def test_cli_convert_int8_errors(tmp_path):
    pytest.importorskip("onnx")
    src = os.path.join(FIX, "resnet20.onnx")
    out = tmp_path / "o.edgenet"
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((2, 3, 16, 16), np.float32))

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "edgenet", *args], capture_output=True,
                              text=True, cwd=os.path.dirname(FIX) + "/..")
    r = cli("convert", src, "-o", str(out), "--activations", "int8")
    assert r.returncode == 2 and "--calibrate" in r.stderr and "Traceback" not in r.stderr
    r = cli("convert", src, "-o", str(out), "--activations", "int8", "--calibrate", str(bad))
    assert r.returncode == 2 and "calibration failed" in r.stderr
    assert "Traceback" not in r.stderr
    assert not out.exists() and not [f for f in os.listdir(tmp_path) if "calib" in f]
    r = cli("convert", src, "-o", str(out), "--calibrate", str(bad))  # calibrated ternary
    assert r.returncode == 2 and "calibration failed" in r.stderr
    r = cli("convert", src, "-o", str(out), "--weights", "f32", "--calibrate", str(bad))
    assert r.returncode == 2 and "--calibrate is used with" in r.stderr


def test_cli_run_and_bench_activations(r20, tmp_path):
    p, cal, _ = r20
    x = tmp_path / "x.npy"
    np.save(x, cal[:2])
    env = dict(os.environ)
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    outs = {}
    for mode in ("int8", "f32"):
        o = tmp_path / f"y_{mode}.npy"
        r = subprocess.run([sys.executable, "-m", "edgenet", "run", p, str(x), "-o", str(o),
                            "--activations", mode], capture_output=True, text=True,
                           cwd=root, env=env)
        assert r.returncode == 0, r.stderr
        outs[mode] = np.load(o)
    m8 = edgenet.load(p, activations="int8")
    np.testing.assert_allclose(outs["int8"], m8(cal[:2]), rtol=1e-6, atol=1e-7)
    assert not np.array_equal(outs["int8"], outs["f32"])
    r = subprocess.run([sys.executable, "-m", "edgenet", "bench", p, "--runs", "3", "--json"],
                       capture_output=True, text=True, cwd=root, env=env)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["activations"] == "auto" and res["int8_convs"] == edgenet.load(p).int8_convs


@pytest.mark.parametrize("C,H,W", [(1, 3, 1), (3, 5, 7), (4, 2, 16), (5, 3, 17), (8, 4, 33),
                                   (9, 2, 40), (13, 6, 14)])
@pytest.mark.parametrize("pads,split", [((1, 2, 0, 3), False), ((1, 1, 1, 1), True),
                                        ((0, 0, 0, 0), True)])
def test_quantize_padded_layout_exact(C, H, W, pads, split):
    """The uint8 (N, ceil(C/4), Hp, Wp, 4) buffer: codes equal ONNX QuantizeLinear's (numpy
    here), padding and missing channels hold the zero point, masked row tails write nothing
    beyond the row (the buffer is pre-filled with garbage to see it). ``split``: the rows
    in two ranges, the second starting inside a plane (as a parallel chunk does)."""
    rng = np.random.default_rng(C * 100 + W)
    x = rng.normal(0, 2, (2, C, H, W)).astype(np.float32)
    x.flat[::7] = 2.5 * 0.05          # exact ties: half to even
    s, zp = np.float32(0.05), 17
    q = {"C4": -(-C // 4), "zp": np.float32(zp), "s": s}
    pt, pl, pb, pr = pads
    from edgenet.cpu._common import tls_buffer
    tls_buffer("qconv.xq", 4096).view(np.uint8)[:] = 0xAB
    if split:
        args, rows, buf, Hp, Wp = qconv._quant_args(x, q, pt, pl, pb, pr)
        mid = rows // 2 + 1
        qconv._quant_rng(*args, 0, mid)
        qconv._quant_rng(*args, mid, rows)
    else:
        buf, Hp, Wp = qconv.quantize_padded(x, q, pt, pl, pb, pr)
    got = buf.reshape(2, q["C4"], Hp, Wp, 4)
    want = np.full((2, q["C4"] * 4, Hp, Wp), zp, np.uint8)
    want[:, :C, pt:pt + H, pl:pl + W] = np.clip(np.rint(x / s) + zp, 0, 255).astype(np.uint8)
    want = want.reshape(2, q["C4"], 4, Hp, Wp).transpose(0, 1, 3, 4, 2)
    # channels past C in the last quad repeat a real channel (their weights are zero)
    np.testing.assert_array_equal(got[..., :C - 4 * (q["C4"] - 1)][:, -1],
                                  want[..., :C - 4 * (q["C4"] - 1)][:, -1])
    np.testing.assert_array_equal(got[:, :-1], want[:, :-1])
    inner = np.zeros((Hp, Wp), bool)
    inner[pt:pt + H, pl:pl + W] = True
    assert (got[:, -1][:, ~inner] == zp).all()       # padding untouched by row tails


@pytest.mark.parametrize("bad", [{"ranges": {"input": [1.0, -1.0]}},
                                 {"ranges": {"input": [0.0]}},
                                 {"ranges": {"input": "wide"}}])
def test_bad_ranges_in_file_are_a_model_error(r20, tmp_path, bad):
    from edgenet.format import read_model, write_model
    p, _, _ = r20
    m = read_model(p)
    meta = dict(m.metadata)
    meta[quant.METADATA_KEY] = dict(meta[quant.METADATA_KEY], **bad)
    dst = str(tmp_path / "bad.edgenet")
    write_model(dst, graph=m.graph, tensors=m.weights(), metadata=meta)
    with pytest.raises(ModelError, match="bad.edgenet"):
        edgenet.load(dst)
    assert edgenet.load(dst, activations="f32").activations == "f32"   # still usable
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    r = subprocess.run([sys.executable, "-m", "edgenet", "bench", dst, "--runs", "1"],
                       capture_output=True, text=True, cwd=root)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "bad.edgenet" in r.stderr


def test_auto_mode_rule(r20):
    """auto: int8 exactly where the tier's estimate says its int8 kernel is faster (by the
    margin); the generic tier's int16 multiply-add loses to its FMA on every conv of this
    net, VNNI wins on the 3x3 convs; outputs follow the choice (auto == int8 on the convs
    it picked: compared with the reference backend running the same choice)."""
    from edgenet.format import read_model
    p, cal, _ = r20
    m = edgenet.load(p, activations="f32")
    ranges = quant.ranges_from_metadata(m.metadata)
    shapes = m.infer_shapes({"input": (1, 3, 32, 32)})
    per_tier = {}
    for tier in ("avx512vnni", "avx512", "avx2", "generic", "off"):
        ch = []
        nodes, n = quant.annotate(m.graph["nodes"], m.consts, ranges, shapes, auto=True,
                                  tier=tier, choices=ch)
        assert len(ch) == 19 and n == sum(c["int8"] for c in ch)
        for c in ch:
            assert c["int8"] == (c["est_int8_ms"] < quant.AUTO_MARGIN * c["est_f32_ms"])
        assert sum("_aq" in nd for nd in nodes) == n
        per_tier[tier] = n
    assert per_tier["avx512vnni"] >= per_tier["avx512"] >= per_tier["generic"]
    assert per_tier["avx512vnni"] > 0 and per_tier["generic"] == 0 and per_tier["off"] > 0
    ma = edgenet.load(p, activations="auto")
    ra = edgenet.load(p, activations="auto", device="reference")
    assert [c["int8"] for c in ma.int8_choices] == [c["int8"] for c in ra.int8_choices]
    x = cal[:2]
    ya, yr = ma(x), ra(x)
    assert float(np.abs(ya - yr).max()) < 1e-2 * float(np.abs(yr).max())
    assert read_model(p).metadata[quant.METADATA_KEY]["mode"] == "int8"


def test_cli_shows_the_auto_choice(r20):
    """`edgenet info` lists what auto picks on this CPU (per conv, with both estimates), for
    the host's tier and for a forced generic tier (which keeps every conv f32)."""
    p, _, _ = r20
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    outs = {}
    for tier in ("auto", "generic"):
        env = dict(os.environ, EDGENET_SIMD=tier)
        r = subprocess.run([sys.executable, "-m", "edgenet", "info", p, "--json"],
                           capture_output=True, text=True, cwd=root, env=env)
        assert r.returncode == 0, r.stderr
        outs[tier] = json.loads(r.stdout)["auto_activations"]
    host = outs["auto"]
    assert host["tier"] == simd.codegen_tier() and len(host["convs"]) == 19
    assert sum(c["int8"] for c in host["convs"]) == edgenet.load(p).int8_convs
    assert outs["generic"]["tier"] == "generic"
    assert not any(c["int8"] for c in outs["generic"]["convs"])
    r = subprocess.run([sys.executable, "-m", "edgenet", "info", p], capture_output=True,
                       text=True, cwd=root)
    assert "activations auto on this CPU" in r.stdout and "/conv1/Conv" in r.stdout
    # the producers the CPU device marks at load: conv1 -> conv2 in each block (9), and
    # the 7 block outputs (the stem, conv2 + residual) that the next block's conv1 reads
    # besides its residual input, which write both (_qo_keep)
    nodes = edgenet.load(p).graph["nodes"]
    marked = [n["name"] for n in nodes if "_qo" in n]
    keep = [n["name"] for n in nodes if n.get("_qo_keep") and not n.get("_qo_noy")]
    assert host["quantizing_producers"] == marked and len(marked) == 16
    assert host["quantizing_producers_keep_f32"] == keep and len(keep) == 7
    assert all(k == "/conv1/Conv" or k.endswith("conv2/Conv") for k in keep)
    assert outs["generic"]["quantizing_producers"] == []
    assert (f"{len(marked)} convs write their int8 reader's quantized input (no float32 round "
            f"trip; {len(keep)} of them their float32 output too") in r.stdout


# ------------------------------------------------- producers that quantize for their consumer
def _same_as_unfused_and_close_to_reference(fused, plain, path, ranges, x, max_tol, med_tol):
    """The fused producer's model gives the unfused one's bits, and both are within
    max_tol (largest) / med_tol (median) of the NumPy reference's scale."""
    want = plain(x)
    np.testing.assert_array_equal(fused(x), want)
    ref = edgenet.load(path, device="reference", activations="int8", act_ranges=ranges)(x)
    scale = float(np.abs(ref).max())
    assert float(np.abs(want - ref).max()) <= max_tol * scale
    assert float(np.median(np.abs(want - ref))) <= med_tol * scale


def _observed_same(fused, plain, x, name):
    """A run that observes ``name`` (a producer that writes its int8 reader's words) sees
    the unfused model's values, and the next runs give its outputs again."""
    seen = {}
    for k, mdl in (("fused", fused), ("plain", plain)):
        got = {}
        mdl.run({"x": x}, observe=lambda n, a: got.__setitem__(n, a.copy()))
        seen[k] = got[name]
    np.testing.assert_array_equal(seen["fused"], seen["plain"])
    np.testing.assert_array_equal(fused(x), plain(x))


def _dw_pw_model(path, rng, C, H, st, act, extra_output=False, pw_pads=0):
    """x -> depthwise 3x3 (group C, stride st, act) -> 1x1 conv C -> 24 (Relu) -> y."""
    OH = (H + 2 - 3) // st + 1
    OP = OH + 2 * pw_pads
    outs = [{"name": "y", "shape": [None, 24, OP, OP]}]
    if extra_output:
        outs.append({"name": "d", "shape": [None, C, OH, OH]})
    desc = act_desc(act, *((0.0, 6.0) if act == "Clip" else ())) if act else None
    graph = {"inputs": [{"name": "x", "shape": [None, C, H, H], "dtype": "float32"}],
             "outputs": outs,
             "nodes": [
                 {"name": "dw", "op": "Conv", "inputs": ["x", "wd", "bd"], "outputs": ["d"],
                  "attrs": {"strides": [st, st], "pads": [1, 1, 1, 1], "dilations": [1, 1],
                            "group": C, "activation": desc}},
                 {"name": "pw", "op": "Conv", "inputs": ["d", "wp", "bp"], "outputs": ["y"],
                  "attrs": {"strides": [1, 1], "pads": [pw_pads] * 4, "dilations": [1, 1],
                            "group": 1, "activation": act_desc("Relu")}}]}
    tensors = {"wd": pack("t2", rng.integers(-1, 2, size=(C, 1, 3, 3)),
                          rng.uniform(0.2, 0.5, size=C).astype(np.float32)),
               "bd": pack("f32", rng.normal(0, 0.2, size=C).astype(np.float32)),
               "wp": pack("t2", rng.integers(-1, 2, size=(24, C, 1, 1)),
                          rng.uniform(0.05, 0.2, size=24).astype(np.float32)),
               "bp": pack("f32", rng.normal(0, 0.2, size=24).astype(np.float32))}
    from edgenet.format import write_model
    write_model(path, graph=graph, tensors=tensors)
    return path


@pytest.mark.parametrize("C,H,st,act,N,pads", [
    (16, 9, 2, "Clip", 1, 0),        # dw_cv quantizes in its epilogue
    (18, 12, 1, "HardSwish", 2, 0),  # a partial channel block, C % 4 = 2
    (20, 40, 1, "Relu", 1, 0),       # a 40x40 plane: the plane kernel, then one quantize pass
    (32, 10, 2, "Sigmoid", 2, 0),    # an activation dw_cv's vector epilogue lacks: f32, then pass
    (16, 9, 2, "Clip", 2, 1),        # a padded consumer: f32, then one pass (with the border)
])
def test_depthwise_writes_its_int8_consumers_input(C, H, st, act, N, pads, tmp_path,
                                                   monkeypatch):
    """A depthwise conv whose only reader is an int8 conv writes that conv's quantized input
    (quant.mark_quantized_producers): bit-identical to the consumer quantizing it, and the
    NumPy reference of the same int8 model."""
    from edgenet.cpu import dw_cv
    monkeypatch.setenv("EDGENET_SIMD", "avx512vnni" if simd.has_vnni() else simd.codegen_tier())
    rng = np.random.default_rng(C * H)
    path = _dw_pw_model(str(tmp_path / "m.edgenet"), rng, C, H, st, act, pw_pads=pads)
    ranges = {"d": (-1.0, 6.0)}
    x = rng.normal(0, 1, (N, C, H, H)).astype(np.float32)
    fused = edgenet.load(path, activations="int8", act_ranges=ranges, threads=2)
    nodes = {n["name"]: n for n in fused.graph["nodes"]}
    assert nodes["dw"]["_qo"] == nodes["pw"]["_aq"][:2] + ((pads,) * 4,) and nodes["pw"]["_qi"]
    monkeypatch.setattr(quant, "FUSE_PRODUCERS", False)
    plain = edgenet.load(path, activations="int8", act_ranges=ranges, threads=2)
    assert not any("_qo" in n for n in plain.graph["nodes"])
    st_ = fused._states[0]
    uses_cv = dw_cv.use(st_, x.shape, (N, C, (H - 1) // st + 1, (H - 1) // st + 1))
    assert uses_cv == (H <= 32 or st == 2) and \
        dw_cv.qo_ok(st_, st_.act[0], False) == (act != "Sigmoid" and not pads)
    _same_as_unfused_and_close_to_reference(fused, plain, path, ranges, x, 1e-2, 1e-4)
    _observed_same(fused, plain, x, "d")


def test_a_graph_output_is_not_quantized_for_its_reader(tmp_path):
    rng = np.random.default_rng(3)
    path = _dw_pw_model(str(tmp_path / "m.edgenet"), rng, 16, 9, 2, "Clip", extra_output=True)
    m = edgenet.load(path, activations="int8", act_ranges={"d": (-1.0, 6.0)})
    assert m.int8_convs == 1 and not any("_qo" in n or "_qi" in n for n in m.graph["nodes"])
    x = rng.normal(0, 1, (2, 16, 9, 9)).astype(np.float32)
    ref = edgenet.load(path, device="reference", activations="int8",
                       act_ranges={"d": (-1.0, 6.0)}).run({"x": x})
    got = m.run({"x": x})
    for k in ref:
        scale = float(np.abs(ref[k]).max())
        assert float(np.abs(got[k] - ref[k]).max()) <= 1e-2 * scale


def _quantize_passes(m, feeds, monkeypatch):
    """(outputs, the input shapes of every quantize pass) of one run of m (passes made,
    not the ones a step records while it is bound after the run)."""
    called = []
    real = qconv.quantize_padded

    def spy(*a, **k):
        if k.get("calls", a[7] if len(a) > 7 else None) is None:
            called.append(a[0].shape)
        return real(*a, **k)
    with monkeypatch.context() as mp:
        mp.setattr(qconv, "quantize_padded", spy)
        out = m.run(feeds)
    return out, called


def _block_model(path, rng, C, O, H, res):
    """x -> c0 3x3 C -> O (Relu) -> m, read by c1 (3x3 pad 1 stride 2, O -> 16) and by d
    (1x1 stride 2, O -> 16: a ResNet downsample), y = Relu(c1(m) + d(m)) (``res``: c0 with
    a residual x, so m is needed as float32 too: C == O)."""
    OH = (H - 1) // 2 + 1
    a = {"pads": [1, 1, 1, 1], "dilations": [1, 1], "group": 1}
    nodes = [
        {"name": "c0", "op": "Conv", "inputs": ["x", "w0", "b0"] + (["x"] if res else []),
         "outputs": ["m"], "attrs": dict(a, strides=[1, 1], activation=act_desc("Relu"))},
        {"name": "d", "op": "Conv", "inputs": ["m", "wd", "bd"], "outputs": ["e"],
         "attrs": {"pads": [0, 0, 0, 0], "dilations": [1, 1], "group": 1,
                   "strides": [2, 2]}},
        {"name": "c1", "op": "Conv", "inputs": ["m", "w1", "b1", "e"], "outputs": ["y"],
         "attrs": dict(a, strides=[2, 2], activation=act_desc("Relu"))}]
    graph = {"inputs": [{"name": "x", "shape": [None, C, H, H], "dtype": "float32"}],
             "outputs": [{"name": "y", "shape": [None, 16, OH, OH]}], "nodes": nodes}
    tensors = {"w0": _weight(rng, "t2", (O, C, 3, 3)), "wd": _weight(rng, "t2", (16, O, 1, 1)),
               "w1": _weight(rng, "t2", (16, O, 3, 3))}
    for k, n in (("b0", O), ("bd", 16), ("b1", 16)):
        tensors[k] = pack("f32", rng.normal(0, 0.2, size=n).astype(np.float32))
    from edgenet.format import write_model
    write_model(path, graph=graph, tensors=tensors)
    return path


@pytest.mark.parametrize("tier", [t for t in ("avx512vnni", "avx512", "avx2", "generic")
                                  if simd.rank(t) >= simd.rank(simd.codegen_tier())])
@pytest.mark.parametrize("O,H,N,res", [(16, 12, 1, False), (20, 15, 2, True)])
def test_a_downsample_reads_its_blocks_quantized_input(tier, O, H, N, res, tmp_path,
                                                       monkeypatch):
    """A tensor read by two int8 convs, a padded 3x3 and a 1x1 (the ResNet downsample):
    its producer writes one padded buffer, the 1x1 reads it at the interior (``_qi_pads``),
    and nothing quantizes m again: bit-identical to every conv quantizing its own input."""
    monkeypatch.setenv("EDGENET_SIMD", tier)
    rng = np.random.default_rng(O * H)
    C = O if res else 8
    path = _block_model(str(tmp_path / "m.edgenet"), rng, C, O, H, res)
    ranges = {"x": (-3.0, 3.0), "m": (0.0, 6.0)}
    x = rng.normal(0, 1, (N, C, H, H)).astype(np.float32)
    fused = edgenet.load(path, activations="int8", act_ranges=ranges)
    nodes = {n["name"]: n for n in fused.graph["nodes"]}
    assert fused.int8_convs == 3
    assert nodes["c0"]["_qo"][2] == (1, 1, 1, 1) and nodes["c0"].get("_qo_keep", False) == res
    assert nodes["c0"].get("_qo_noy", False) == res   # m's readers: c1 and d (int8) only
    assert nodes["c1"]["_qi"] and nodes["d"]["_qi"] and nodes["d"]["_qi_pads"] == (1, 1, 1, 1)
    _, called = _quantize_passes(fused, {"x": x}, monkeypatch)
    OH = H
    assert called == [x.shape] + ([(N, O, OH, OH)] if res and not tier.startswith("avx512")
                                  else []), called
    monkeypatch.setattr(quant, "FUSE_PRODUCERS", False)
    plain = edgenet.load(path, activations="int8", act_ranges=ranges)
    assert not any("_qi" in n for n in plain.graph["nodes"])
    _same_as_unfused_and_close_to_reference(fused, plain, path, ranges, x, 2e-2, 1e-3)


def _pool_block_model(path, rng, C, H, down):
    """x -> MaxPool 3x3/2 pad 1 -> m -> c1 (3x3 pad 1, C -> C, Relu, residual m) -> y; with
    ``down`` also d (1x1 stride 2, C -> 8) -> z (both graph outputs)."""
    OH = (H - 1) // 2 + 1
    nodes = [
        {"name": "mp", "op": "MaxPool", "inputs": ["x"], "outputs": ["m"],
         "attrs": {"kernel": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1],
                   "ceil_mode": 0}},
        {"name": "c1", "op": "Conv", "inputs": ["m", "w1", "b1", "m"], "outputs": ["y"],
         "attrs": {"pads": [1, 1, 1, 1], "dilations": [1, 1], "group": 1, "strides": [1, 1],
                   "activation": act_desc("Relu")}}]
    outs = [{"name": "y", "shape": [None, C, OH, OH]}]
    tensors = {"w1": _weight(rng, "t2", (C, C, 3, 3)),
               "b1": pack("f32", rng.normal(0, 0.2, size=C).astype(np.float32))}
    if down:
        nodes.append({"name": "d", "op": "Conv", "inputs": ["m", "wd", "bd"], "outputs": ["z"],
                      "attrs": {"pads": [0, 0, 0, 0], "dilations": [1, 1], "group": 1,
                                "strides": [2, 2]}})
        outs.append({"name": "z", "shape": [None, 8, (OH - 1) // 2 + 1, (OH - 1) // 2 + 1]})
        tensors["wd"] = _weight(rng, "t2", (8, C, 1, 1))
        tensors["bd"] = pack("f32", rng.normal(0, 0.2, size=8).astype(np.float32))
    graph = {"inputs": [{"name": "x", "shape": [None, C, H, H], "dtype": "float32"}],
             "outputs": outs, "nodes": nodes}
    from edgenet.format import write_model
    write_model(path, graph=graph, tensors=tensors)
    return path


@pytest.mark.parametrize("tier", [t for t in ("avx512vnni", "avx2", "generic")
                                  if simd.rank(t) >= simd.rank(simd.codegen_tier())])
@pytest.mark.parametrize("C,H,N,down", [(16, 23, 1, False), (10, 40, 2, True)])
def test_maxpool_writes_its_int8_readers_input(tier, C, H, N, down, tmp_path, monkeypatch):
    """A MaxPool read by int8 convs (ResNet-18's stem pool) writes their quantized input
    after pooling each 4 channels (cpu/pool.py): nothing quantizes m in a pass of its own,
    and the results are the bits of every conv quantizing its own input (C = 10: a last
    word of 2 channels; 20 -> 10 pixel rows: a masked vector)."""
    monkeypatch.setenv("EDGENET_SIMD", tier)
    rng = np.random.default_rng(C * H)
    path = _pool_block_model(str(tmp_path / "m.edgenet"), rng, C, H, down)
    ranges = {"m": (-3.0, 4.0)}
    x = rng.normal(0, 1, (N, C, H, H)).astype(np.float32)
    fused = edgenet.load(path, activations="int8", act_ranges=ranges)
    nodes = {n["name"]: n for n in fused.graph["nodes"]}
    assert nodes["mp"]["_qo"][2] == (1, 1, 1, 1) and nodes["c1"]["_qi"]
    assert nodes.get("d", {}).get("_qi_pads") == ((1, 1, 1, 1) if down else None)
    got, called = _quantize_passes(fused, {"x": x}, monkeypatch)
    assert called == []
    monkeypatch.setattr(quant, "FUSE_PRODUCERS", False)
    plain = edgenet.load(path, activations="int8", act_ranges=ranges)
    want = plain.run({"x": x})
    for k in want:
        np.testing.assert_array_equal(got[k], want[k])
    ref = edgenet.load(path, device="reference", activations="int8", act_ranges=ranges)
    rr = ref.run({"x": x})
    for k in rr:
        scale = float(np.abs(rr[k]).max())
        assert float(np.abs(want[k] - rr[k]).max()) <= 2e-2 * scale


def _conv_conv_model(path, rng, C, O, H, st, act, res=False, extra=False):
    """x -> conv 3x3 C -> O (stride st, act) -> conv 3x3 pad 1 O -> 12 (Relu) -> y;
    ``extra``: m, the first conv's output, a graph output as well."""
    OH = (H + 2 - 3) // st + 1
    desc = act_desc(act, *((0.0, 6.0) if act == "Clip" else ())) if act else None
    a = {"pads": [1, 1, 1, 1], "dilations": [1, 1], "group": 1}
    n1 = {"name": "c1", "op": "Conv", "inputs": ["x", "w1", "b1"] + (["x"] if res else []),
          "outputs": ["m"], "attrs": dict(a, strides=[st, st], activation=desc)}
    graph = {"inputs": [{"name": "x", "shape": [None, C, H, H], "dtype": "float32"}],
             "outputs": [{"name": "y", "shape": [None, 12, OH, OH]}] + (
                 [{"name": "m", "shape": [None, O, OH, OH]}] if extra else []),
             "nodes": [n1, {"name": "c2", "op": "Conv", "inputs": ["m", "w2", "b2"],
                            "outputs": ["y"], "attrs": dict(a, strides=[1, 1],
                                                            activation=act_desc("Relu"))}]}
    tensors = {"w1": _weight(rng, "t2", (O, C, 3, 3)),
               "b1": pack("f32", rng.normal(0, 0.2, size=O).astype(np.float32)),
               "w2": _weight(rng, "t2", (12, O, 3, 3)),
               "b2": pack("f32", rng.normal(0, 0.2, size=12).astype(np.float32))}
    from edgenet.format import write_model
    write_model(path, graph=graph, tensors=tensors)
    return path


@pytest.mark.parametrize("tier", [t for t in ("avx512vnni", "avx512", "avx2", "generic")
                                  if simd.rank(t) >= simd.rank(simd.codegen_tier())])
@pytest.mark.parametrize("O,H,st,act,N,res,extra", [
    (16, 12, 1, "Relu", 1, False, False),
    (20, 11, 2, "Clip", 2, False, False),      # 20 channels: a last group of 4 (one word)
    (18, 9, 1, "HardSwish", 2, False, False),  # C4 = 5: the last word holds 2 real channels
    (16, 12, 1, None, 1, False, False),
    (24, 10, 1, "Sigmoid", 2, False, False),   # no tile_store_q for it: f32, then one pass
    # y needed as well (_qo_keep): stored, then its rows quantized (tile_store_k)
    (16, 12, 1, "Relu", 1, True, False),       # a fused residual
    (18, 30, 1, "Relu", 2, True, False),       # 30-pixel rows: tiles of > 16 pixels, C4 = 5
    (20, 11, 2, "Sigmoid", 2, False, True),    # a graph output; any activation
    (16, 12, 1, "Relu", 1, False, True),       # (8 lanes: tile_store_q must not run)
])
def test_int8_conv_writes_its_int8_consumers_padded_input(tier, O, H, st, act, N, res, extra,
                                                          tmp_path, monkeypatch):
    """An int8 conv whose only reader is an int8 conv (3x3, padded) writes that conv's
    quantized input in its tile epilogue (tile_store_q; the border: zero point), or with
    its float32 output still needed, both (tile_store_k): bit-identical to the consumer
    quantizing it, and the NumPy reference."""
    monkeypatch.setenv("EDGENET_SIMD", tier)
    rng = np.random.default_rng(O * H + st)
    C = O if res else 8
    path = _conv_conv_model(str(tmp_path / "m.edgenet"), rng, C, O, H, st, act, res, extra)
    ranges = {"x": (-3.0, 3.0), "m": (-2.0, 6.0)}
    x = rng.normal(0, 1, (N, C, H, H)).astype(np.float32)
    fused = edgenet.load(path, activations="int8", act_ranges=ranges)
    nodes = {n["name"]: n for n in fused.graph["nodes"]}
    assert fused.int8_convs == 2
    assert "_qo" in nodes["c1"] and nodes["c2"].get("_qi")
    assert nodes["c1"].get("_qo_keep", False) == (res or extra)
    # only the residual made it keep y: no one reads y, the 16-lane tiles skip its stores
    assert nodes["c1"].get("_qo_noy", False) == (res and not extra)
    if res or extra:
        _, called = _quantize_passes(fused, {"x": x}, monkeypatch)
        # 16-lane tiles: only c1's own input is quantized by a pass (c1's tiles wrote
        # c2's); 8 lanes: c2's pass runs in c1's step
        OH = (H - 1) // st + 1
        assert called == [x.shape] + ([] if tier.startswith("avx512") else [(N, O, OH, OH)])
    monkeypatch.setattr(quant, "FUSE_PRODUCERS", False)
    plain = edgenet.load(path, activations="int8", act_ranges=ranges)
    _same_as_unfused_and_close_to_reference(fused, plain, path, ranges, x, 2e-2, 1e-3)
    if extra:
        np.testing.assert_array_equal(fused.run({"x": x})["m"], plain.run({"x": x})["m"])
    _observed_same(fused, plain, x, "m")   # a run that observes m sees it stored



def _pw_pair(path, rng, C, O, H, act, res=False):
    """x -> 1x1 C -> O (act; ``res``: + the graph input r, and m a graph output) -> m ->
    1x1 O -> 16 (Relu) -> y, ternary then quinary weights; written to path."""
    desc = act_desc(act, *((0.0, 6.0) if act == "Clip" else ())) if act else None
    a = {"pads": [0, 0, 0, 0], "dilations": [1, 1], "group": 1, "strides": [1, 1]}
    ins = [{"name": "x", "shape": [None, C, H, H], "dtype": "float32"}]
    outs = [{"name": "y", "shape": [None, 16, H, H]}]
    if res:
        ins.append({"name": "r", "shape": [None, O, H, H], "dtype": "float32"})
        outs.insert(0, {"name": "m", "shape": [None, O, H, H]})
    graph = {"inputs": ins, "outputs": outs,
             "nodes": [{"name": "c1", "op": "Conv",
                        "inputs": ["x", "w1", "b1"] + (["r"] if res else []),
                        "outputs": ["m"], "attrs": dict(a, activation=desc)},
                       {"name": "c2", "op": "Conv", "inputs": ["m", "w2", "b2"],
                        "outputs": ["y"], "attrs": dict(a, activation=act_desc("Relu"))}]}
    tensors = {"w1": _weight(rng, "t2", (O, C, 1, 1)),
               "b1": pack("f32", rng.normal(0, 0.2, size=O).astype(np.float32)),
               "w2": _weight(rng, "q3", (16, O, 1, 1)),
               "b2": pack("f32", rng.normal(0, 0.2, size=16).astype(np.float32))}
    from edgenet.format import write_model
    write_model(path, graph=graph, tensors=tensors)
    return path

@pytest.mark.skipif(not simd.has_vnni(), reason="the pixel-vector kernels' VNNI tier")
@pytest.mark.parametrize("O,act,N", [
    (9, "Relu", 1),          # one group of 8 and one of 1: its second word not stored
    (12, "Clip", 2),         # 8 + 4: the last group's second word holds the last 4
    (20, "HardSwish", 1),
    (40, None, 1),
    (4, "Relu", 1),          # O <= 4: the 4-channel tile
])
def test_pixel_vector_1x1_writes_its_1x1_consumers_input(O, act, N, tmp_path, monkeypatch):
    """x -> 1x1 C -> O (act) -> 1x1 O -> 16 (Relu), both int8 on the pixel-vector kernels
    (qconv.pw_kernel): the first packs its output into the second's input words (no
    quantize pass for it); 8 output channels a tile gives the 4-channel tile's bits, and
    both match the NumPy reference."""
    monkeypatch.setenv("EDGENET_SIMD", "avx512vnni")
    rng = np.random.default_rng(zlib.crc32(f"pw1x1 {O} {act} {N}".encode()))
    C, H = 24, 13                  # 169 pixels: 4 tiles of 48, the last one overlapping
    path = _pw_pair(str(tmp_path / "pw.edgenet"), rng, C, O, H, act)
    ranges = {"x": (-3.0, 3.0), "m": (-2.0, 6.0)}
    x = rng.normal(0, 1, (N, C, H, H)).astype(np.float32)
    used = []
    real = qconv.pw_kernel
    monkeypatch.setattr(qconv, "pw_kernel", lambda *a: used.append(real(*a)) or real(*a))
    m8 = edgenet.load(path, activations="int8", act_ranges=ranges)
    assert m8.int8_convs == 2 and "_qo" in {n["name"]: n for n in m8.graph["nodes"]}["c1"]
    got, called = _quantize_passes(m8, {"x": x}, monkeypatch)
    assert called == [x.shape]     # c1's input only: c1 wrote c2's words
    want_k = qconv._pw_vnni_k8 if O > 4 else qconv._pw_vnni_k4
    assert set(used) == {want_k, qconv._pw_vnni_k8}
    monkeypatch.setattr(qconv, "PW_K8", False)
    m4 = edgenet.load(path, activations="int8", act_ranges=ranges)
    np.testing.assert_array_equal(got["y"], m4(x))
    ref = edgenet.load(path, device="reference", activations="int8", act_ranges=ranges)(x)
    scale = float(np.abs(ref).max())
    assert scale > 0 and float(np.abs(got["y"] - ref).max()) <= 2e-2 * scale


@pytest.mark.skipif(not simd.has_vnni(), reason="the pixel-vector kernels' VNNI tier")
@pytest.mark.parametrize("C,O,H,act,N", [
    (24, 24, 13, "Relu", 1),       # 169 pixels: overlapping tiles; 24 = 8 + 8 + 8
    (20, 20, 13, None, 2),         # 20 channels: the last tile's second word is past O
    (8, 24, 7, "HardSwish", 1),    # 49 pixels, an expansion: the masked kernel
    (16, 16, 12, "Clip", 2),
])
def test_pixel_vector_1x1_writes_y_and_its_consumers_words(C, O, H, act, N, tmp_path,
                                                           monkeypatch):
    """x -> 1x1 C -> O (+ residual r, act) -> m, m a graph output and read by an int8 1x1
    (m needed as float32 too: qo_keep): the pixel-vector kernel stores m and packs the
    consumer's words from the same vectors (qo = 2): no quantize pass over m, and the bits
    of the pass (PW_KEEP_ON off) for both outputs; the NumPy reference agrees."""
    monkeypatch.setenv("EDGENET_SIMD", "avx512vnni")
    rng = np.random.default_rng(zlib.crc32(f"pwkeep {C} {O} {H} {act} {N}".encode()))
    path = _pw_pair(str(tmp_path / "pwk.edgenet"), rng, C, O, H, act, res=True)
    ranges = {"x": (-3.0, 3.0), "m": (-2.0, 6.0)}
    feeds = {"x": rng.normal(0, 1, (N, C, H, H)).astype(np.float32),
             "r": rng.normal(0, 1, (N, O, H, H)).astype(np.float32)}
    used, passes = [], []
    real, real_q = qconv.pw_kernel, qconv.quantize_to
    monkeypatch.setattr(qconv, "pw_kernel", lambda *a: used.append(real(*a)) or real(*a))
    m8 = edgenet.load(path, activations="int8", act_ranges=ranges)
    nodes = {n["name"]: n for n in m8.graph["nodes"]}
    assert m8.int8_convs == 2 and nodes["c1"].get("_qo_keep")
    with monkeypatch.context() as mp:
        mp.setattr(qconv, "quantize_to", lambda *a, **k: passes.append(1) or real_q(*a, **k))
        got = m8.run(feeds)
    assert passes == [] and used and used[0] is not None     # (c1; c2 may run the tiles)
    monkeypatch.setattr(qconv, "PW_KEEP_ON", False)
    with monkeypatch.context() as mp:
        mp.setattr(qconv, "quantize_to", lambda *a, **k: passes.append(1) or real_q(*a, **k))
        old = edgenet.load(path, activations="int8", act_ranges=ranges).run(feeds)
    assert passes        # the pass over m ran there
    for k in ("m", "y"):
        np.testing.assert_array_equal(got[k], old[k])
    ref = edgenet.load(path, device="reference", activations="int8",
                       act_ranges=ranges).run(feeds)
    for k in ("m", "y"):
        scale = float(np.abs(ref[k]).max())
        assert scale > 0 and float(np.abs(got[k] - ref[k]).max()) <= 2e-2 * scale


@pytest.mark.skipif(not simd.has_vnni(), reason="the pixel-vector kernels' VNNI tier")
@pytest.mark.parametrize("C,O,H,act,res,N", [
    (16, 48, 7, "Relu", False, 2),       # 49 pixels: one tile of 4 vectors, 15 masked
    (8, 40, 6, "Sigmoid", True, 1),      # 36: 3 vectors (the last one 4 pixels), residual
    (12, 24, 10, "HardSwish", True, 1),  # 100: two tiles of 4 vectors, the second 36 pixels
    (8, 20, 8, "Clip", False, 2),        # 64: 4 whole vectors; 20 channels: K = 4 tiles
])
def test_masked_pixel_vector_1x1_matches_the_tiles(C, O, H, act, res, N, tmp_path,
                                                   monkeypatch):
    """An expanding int8 1x1 conv on a map the overlapping pixel tiles would recompute
    more than 25 % of runs the masked kernel (qconv.pw_kernel: float32 stores, masked
    residual loads, scalar activations after the store): as the channel-vector tiles and
    the NumPy reference."""
    monkeypatch.setenv("EDGENET_SIMD", "avx512vnni")
    rng = np.random.default_rng(zlib.crc32(f"pwm {C} {O} {H} {act}".encode()))
    desc = act_desc(act, *((0.0, 6.0) if act == "Clip" else ())) if act else None
    ins = ["x", "w", "b"] + (["r"] if res else [])
    graph = {"inputs": [{"name": "x", "shape": [None, C, H, H], "dtype": "float32"}]
             + ([{"name": "r", "shape": [None, O, H, H], "dtype": "float32"}] if res else []),
             "outputs": [{"name": "y", "shape": [None, O, H, H]}],
             "nodes": [{"name": "c", "op": "Conv", "inputs": ins, "outputs": ["y"],
                        "attrs": {"pads": [0] * 4, "dilations": [1, 1], "group": 1,
                                  "strides": [1, 1], "activation": desc}}]}
    tensors = {"w": _weight(rng, "t2", (O, C, 1, 1)),
               "b": pack("f32", rng.normal(0, 0.2, size=O).astype(np.float32))}
    from edgenet.format import write_model
    path = str(tmp_path / "pwm.edgenet")
    write_model(path, graph=graph, tensors=tensors)
    ranges = {"x": (-3.0, 3.0)}
    feeds = {"x": rng.normal(0, 1, (N, C, H, H)).astype(np.float32)}
    if res:
        feeds["r"] = rng.normal(0, 1, (N, O, H, H)).astype(np.float32)
    used = []
    real = qconv.pw_kernel
    monkeypatch.setattr(qconv, "pw_kernel", lambda *a: used.append(real(*a)) or real(*a))
    got = edgenet.load(path, activations="int8", act_ranges=ranges).run(feeds)["y"]
    assert used and all(getattr(k, "__name__", "").endswith("m") for k in used)
    monkeypatch.setattr(qconv, "PW_MASK_ON", False)
    used.clear()
    tiles = edgenet.load(path, activations="int8", act_ranges=ranges).run(feeds)["y"]
    assert used and all(k is None for k in used)
    scale = float(np.abs(tiles).max())
    assert scale > 0 and float(np.abs(got - tiles).max()) <= 1e-5 * scale
    ref = edgenet.load(path, device="reference", activations="int8",
                       act_ranges=ranges).run(feeds)["y"]
    assert float(np.abs(got - ref).max()) <= 2e-2 * scale
