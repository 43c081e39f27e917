"""int8 convs on Intel AMX (edgenet/cpu/amx.py), where the host has it.

Oracles: the NumPy reference backend (fake-quantized input, float64 conv) and the VNNI tiles
of the same tier (``amx.ON = False``): integer accumulation is exact in both, so they agree
to float rounding of the epilogue. Every case asserts that the AMX kernel ran. Skipped on
hosts without AMX-INT8 (or where Linux does not grant the tile state)."""
from __future__ import annotations

import zlib

import numpy as np
import pytest

from edgenet import cpu, quant
from edgenet.cpu import amx, qconv
from edgenet.format import pack
from edgenet.ir import act_desc
from edgenet.reference import run_node

pytestmark = pytest.mark.skipif(not amx.available(), reason="no AMX-INT8 on this host")

# (N, C, H, W, O, kh, kw, pads (t, l, b, r), dil, act, residual, enc)
CASES = [
    (1, 64, 14, 14, 64, 3, 3, (1, 1, 1, 1), 1, "Relu", True, "t2"),
    (2, 32, 9, 11, 40, 3, 3, (1, 1, 1, 1), 1, "Clip", False, "q3"),     # O: a partial pair
    (1, 96, 7, 7, 48, 1, 1, (0, 0, 0, 0), 1, "HardSwish", True, "t2"),  # KB 12 (C4 24)
    (1, 36, 6, 5, 16, 3, 3, (0, 2, 1, 0), 1, "Sigmoid", False, "i8"),   # KB 9, scalar act
    (1, 64, 12, 16, 33, 3, 3, (2, 2, 2, 2), 2, "LeakyRelu", True, "t2"),
    (1, 128, 4, 4, 32, 3, 3, (1, 1, 1, 1), 1, None, False, "q3"),       # 22 flat pixels
    (1, 32, 10, 10, 16, 5, 5, (2, 2, 2, 2), 1, "Relu", False, "t2"),
    (3, 64, 56, 56, 64, 3, 3, (1, 1, 1, 1), 1, "Relu", True, "t2"),     # ResNet's layer1
    (2, 128, 14, 14, 48, 3, 3, (1, 1, 1, 1), 1, "Relu", True, "q3"),   # 1 KB planes: kb outer
]


def test_channel_blocks_run_outer_where_planes_are_1kb_apart():
    """The last case's input planes (16 x 16 words, 1 KB) take the channel-blocks-outer
    order with two channel blocks (C4 32, KB 16), so that order (and the weights' layout)
    is checked against the reference; ResNet's layer1 and layer2 planes keep taps outer."""
    N, C, H, W, O, kh, kw, p, *_ = CASES[-1]
    assert amx.kb_outer((H + p[0] + p[2]) * (W + p[1] + p[3]))
    assert (C // 4) // amx.kb_of(C // 4) == 2
    assert not amx.kb_outer(58 * 58) and not amx.kb_outer(30 * 30)


def _node(pads, dil, act, res, aq=None, stride=1):
    desc = act_desc(act, *((0.0, 6.0) if act == "Clip" else ())) if act else None
    nd = {"name": "c", "op": "Conv", "inputs": ["x", "w", "b"] + (["r"] if res else []),
          "outputs": ["y"],
          "attrs": {"strides": [stride, stride], "pads": list(pads), "dilations": [dil, dil],
                    "group": 1, "activation": desc}}
    if aq is not None:
        nd["_aq"] = aq
    return nd


def _run(node, consts, inputs, shape):
    state = cpu.OPS["Conv"].prepare(node, consts, "packed")
    y = np.full(shape, np.nan, np.float32)
    cpu.OPS["Conv"].run(node, state, inputs, [y])
    return y, state


@pytest.mark.parametrize("case", CASES, ids=[str(i) for i in range(len(CASES))])
def test_amx_conv_matches_reference_and_vnni(case, monkeypatch):
    N, C, H, W, O, kh, kw, pads, dil, act, res, enc = case
    rng = np.random.default_rng(zlib.crc32(repr(case).encode()))
    x = rng.uniform(-1, 1, size=(N, C, H, W)).astype(np.float32)
    lim = {"t2": 1, "q3": 2, "i8": 127}[enc]
    consts = {"w": pack(enc, rng.integers(-lim, lim + 1, size=(O, C, kh, kw)),
                        rng.uniform(0.05, 0.3, size=O).astype(np.float32) / lim),
              "b": pack("f32", rng.normal(size=O).astype(np.float32))}
    OH = H + pads[0] + pads[2] - dil * (kh - 1)
    OW = W + pads[1] + pads[3] - dil * (kw - 1)
    s, zp = quant.qparams(-1.0, 1.0)
    node = _node(pads, dil, act, res, aq=(float(s), zp, OW))
    inputs = [x, None, None]
    if res:
        inputs.append(rng.uniform(-1, 1, size=(N, O, OH, OW)).astype(np.float32))
    want = run_node(node, inputs, consts)[0]
    monkeypatch.setattr(qconv, "AMX_1X1", True)      # 1x1 convs too (off by default)
    calls = []
    real = amx.run
    monkeypatch.setattr(amx, "run", lambda *a, **k: (calls.append(1), real(*a, **k))[1])
    y, state = _run(node, consts, inputs, want.shape)
    assert state["q"].get("amx") is not None and calls, "the AMX kernel did not run"
    scale = max(float(np.abs(want).max()), 1e-6)
    assert float(np.abs(y - want).max()) <= 2e-5 * scale + 1e-6
    y2, _ = _run(node, consts, inputs, want.shape)   # again: same tiles, same result
    np.testing.assert_array_equal(y, y2)
    monkeypatch.setattr(amx, "ON", False)            # the VNNI tiles
    calls.clear()
    yv, state = _run(node, consts, inputs, want.shape)
    assert state["q"].get("amx") is None and not calls
    np.testing.assert_allclose(y, yv, rtol=0, atol=2e-5 * scale + 1e-6)


# (N, C, H, W, O, pads (t, l, b, r), act, residual, enc): 3x3 stride 2
S2_CASES = [
    (1, 64, 56, 56, 128, (1, 1, 1, 1), "Relu", False, "t2"),    # ResNet-18's layer2.0.conv1
    (2, 32, 15, 13, 40, (1, 1, 1, 1), "Clip", True, "q3"),      # odd sizes, O a partial pair
    (1, 128, 14, 14, 32, (0, 0, 1, 1), None, False, "i8"),      # TF 'SAME' pads, 2 blocks
    (1, 48, 12, 20, 16, (1, 1, 1, 1), "Sigmoid", False, "t2"),  # KB 12, scalar activation
]


def _s2_case(rng, N, C, H, W, O, K, pads, act, res, enc, monkeypatch):
    """A KxK stride-2 conv's node, constants, inputs and reference output (random input,
    levels of ``enc``, the residual where ``res``), with qconv's stride-2 AMX size rule
    lifted for these small shapes."""
    x = rng.uniform(-1, 1, size=(N, C, H, W)).astype(np.float32)
    lim = {"t2": 1, "q3": 2, "i8": 127}[enc]
    consts = {"w": pack(enc, rng.integers(-lim, lim + 1, size=(O, C, K, K)),
                        rng.uniform(0.05, 0.3, size=O).astype(np.float32) / lim),
              "b": pack("f32", rng.normal(size=O).astype(np.float32))}
    OH = (H + pads[0] + pads[2] - K) // 2 + 1
    OW = (W + pads[1] + pads[3] - K) // 2 + 1
    s, zp = quant.qparams(-1.0, 1.0)
    node = _node(pads, 1, act, res, aq=(float(s), zp, OW), stride=2)
    inputs = [x, None, None]
    if res:
        inputs.append(rng.uniform(-1, 1, size=(N, O, OH, OW)).astype(np.float32))
    want = run_node(node, inputs, consts)[0]
    monkeypatch.setattr(qconv, "AMX_S2_C", 32)        # small cases: past the size rule
    monkeypatch.setattr(qconv, "AMX_S2_MACS", 0)
    return node, consts, inputs, want


@pytest.mark.parametrize("case", S2_CASES, ids=[str(i) for i in range(len(S2_CASES))])
def test_stride2_convs_run_on_amx_by_pixel_phase(case, monkeypatch):
    """3x3 stride-2 convs run on AMX over their input split by pixel phase (amx.run_s2):
    against the NumPy reference and the VNNI tiles, asserting that the AMX kernel ran."""
    N, C, H, W, O, pads, act, res, enc = case
    rng = np.random.default_rng(zlib.crc32(("s2 " + repr(case)).encode()))
    node, consts, inputs, want = _s2_case(rng, N, C, H, W, O, 3, pads, act, res, enc,
                                          monkeypatch)
    calls = []
    real = amx.run_s2
    monkeypatch.setattr(amx, "run_s2", lambda *a, **k: (calls.append(1), real(*a, **k))[1])
    y, state = _run(node, consts, inputs, want.shape)
    assert state["q"].get("amx_s2") and calls, "the AMX stride-2 kernel did not run"
    scale = max(float(np.abs(want).max()), 1e-6)
    assert float(np.abs(y - want).max()) <= 2e-5 * scale + 1e-6
    monkeypatch.setattr(qconv, "AMX_S2", False)      # the VNNI tiles
    calls.clear()
    yv, state = _run(node, consts, inputs, want.shape)
    assert state["q"].get("amx") is None and not calls
    np.testing.assert_allclose(y, yv, rtol=0, atol=2e-5 * scale + 1e-6)


@pytest.mark.parametrize("N,C,H,W,O,act,res", [
    (1, 64, 14, 14, 48, "Relu", False),      # 7x7 outputs: a tile spans 3 rows
    (2, 32, 13, 11, 40, "Clip", True),       # odd sizes, batch 2, residual
    (1, 128, 9, 16, 32, "Sigmoid", False),   # 2 channel blocks, scalar activation
])
def test_stride2_1x1_convs_on_their_own_buffer_take_flat_tiles(N, C, H, W, O, act, res,
                                                               monkeypatch):
    """A 1x1 stride-2 conv without pads on AMX (amx.run_s2 on its own unpadded buffer):
    its phase plane's rows are the output's, so its tiles take the flat epilogue: against
    the NumPy reference, bit-identical to the run-per-row epilogue and close to the VNNI
    tiles."""
    rng = np.random.default_rng(zlib.crc32(f"s2 1x1 {N} {C} {H} {W}".encode()))
    node, consts, inputs, want = _s2_case(rng, N, C, H, W, O, 1, (0, 0, 0, 0), act, res,
                                          "t2", monkeypatch)
    flats = []
    real = amx._conv
    monkeypatch.setattr(amx, "_conv", lambda *a: (flats.append(a[-1]), real(*a))[1])
    y, state = _run(node, consts, inputs, want.shape)
    assert state["q"].get("amx_s2") and flats == [True], flats
    scale = max(float(np.abs(want).max()), 1e-6)
    assert float(np.abs(y - want).max()) <= 2e-5 * scale + 1e-6
    monkeypatch.setattr(amx, "FLAT_ON", False)
    flats.clear()
    yr, _ = _run(node, consts, inputs, want.shape)
    assert flats == [False]
    np.testing.assert_array_equal(y, yr)
    monkeypatch.setattr(qconv, "AMX_S2", False)      # the VNNI tiles
    flats.clear()
    yv, state = _run(node, consts, inputs, want.shape)
    assert state["q"].get("amx") is None and not flats
    np.testing.assert_allclose(y, yv, rtol=0, atol=2e-5 * scale + 1e-6)


@pytest.mark.parametrize("C,H,O,on", [(64, 56, 128, True), (128, 28, 256, True),
                                       (256, 14, 512, True), (32, 16, 64, False),
                                       (128, 6, 256, False)])
def test_stride2_amx_by_default_only_for_large_convs(C, H, O, on, monkeypatch):
    """The default rule: ResNet-18's stride-2 3x3 convs take AMX; ResNet-20's 32 -> 64 (C
    below AMX_S2_C) and a 6x6 map (below AMX_S2_MACS) keep the VNNI tiles."""
    rng = np.random.default_rng(zlib.crc32(f"s2 rule {C} {H} {O}".encode()))
    x = rng.uniform(-1, 1, size=(1, C, H, H)).astype(np.float32)
    consts = {"w": pack("t2", rng.integers(-1, 2, size=(O, C, 3, 3)),
                        np.full(O, 0.1, np.float32)),
              "b": pack("f32", np.zeros(O, np.float32))}
    OW = (H - 1) // 2 + 1
    s, zp = quant.qparams(-1.0, 1.0)
    node = _node((1, 1, 1, 1), 1, "Relu", False, aq=(float(s), zp, OW), stride=2)
    calls = []
    real = amx.run_s2
    monkeypatch.setattr(amx, "run_s2", lambda *a, **k: (calls.append(1), real(*a, **k))[1])
    want = run_node(node, [x, None, None], consts)[0]
    y, _ = _run(node, consts, [x, None, None], want.shape)
    assert bool(calls) == on
    assert float(np.abs(y - want).max()) <= 2e-5 * float(np.abs(want).max()) + 1e-6


@pytest.mark.parametrize("N", [1, 2])
def test_a_downsampling_block_runs_its_stride2_convs_on_amx(N, tmp_path, monkeypatch):
    """A ResNet block that halves the map: its 3x3 stride-2 conv and the 1x1 stride-2
    downsample (reading the 3x3's padded buffer: the phase offset dy = dx = 1) run on
    AMX; the model is bit-identical to the VNNI tiles and close to the NumPy reference."""
    import edgenet
    from edgenet.format import write_model
    monkeypatch.setattr(qconv, "AMX_S2_MACS", 0)
    rng = np.random.default_rng(zlib.crc32(f"amx s2 block {N}".encode()))
    C, O, H = 64, 32, 13
    a3 = {"pads": [1, 1, 1, 1], "dilations": [1, 1], "group": 1}
    a1 = {"pads": [0, 0, 0, 0], "dilations": [1, 1], "group": 1, "strides": [2, 2]}
    relu = act_desc("Relu")
    nodes = [
        {"name": "c0", "op": "Conv", "inputs": ["x", "w0", "b0"], "outputs": ["m"],
         "attrs": dict(a3, strides=[1, 1], activation=relu)},
        {"name": "c1", "op": "Conv", "inputs": ["m", "w1", "b1"], "outputs": ["a"],
         "attrs": dict(a3, strides=[2, 2], activation=relu)},
        {"name": "ds", "op": "Conv", "inputs": ["m", "wd", "bd"], "outputs": ["d"],
         "attrs": dict(a1, activation=None)},
        {"name": "c2", "op": "Conv", "inputs": ["a", "w2", "b2", "d"], "outputs": ["y"],
         "attrs": dict(a3, strides=[1, 1], activation=relu)}]
    OH = (H - 1) // 2 + 1
    graph = {"inputs": [{"name": "x", "shape": [None, C, H, H], "dtype": "float32"}],
             "outputs": [{"name": "y", "shape": [None, O, OH, OH]}], "nodes": nodes}
    tensors = {}
    for k, (o, c, kk) in {"0": (C, C, 3), "1": (O, C, 3), "d": (O, C, 1),
                          "2": (O, O, 3)}.items():
        tensors[f"w{k}"] = pack("t2", rng.integers(-1, 2, size=(o, c, kk, kk)),
                                rng.uniform(0.02, 0.1, size=o).astype(np.float32))
        tensors[f"b{k}"] = pack("f32", rng.normal(0, 0.2, size=o).astype(np.float32))
    path = str(tmp_path / "b.edgenet")
    write_model(path, graph=graph, tensors=tensors)
    ranges = {"x": (-3.0, 3.0), "m": (0.0, 4.0), "a": (0.0, 4.0), "d": (-3.0, 3.0)}
    x = rng.normal(0, 1, (N, C, H, H)).astype(np.float32)
    seen = []
    real = amx.run_s2
    monkeypatch.setattr(amx, "run_s2", lambda *a, **k: (seen.append(tuple(a[16:19])),
                                                        real(*a, **k))[1])
    m = edgenet.load(path, activations="int8", act_ranges=ranges)
    got = m.run({"x": x})["y"]
    assert set(seen) == {(3, 0, 0), (1, 1, 1)}, seen
    monkeypatch.setattr(qconv, "AMX_S2", False)
    want = edgenet.load(path, activations="int8", act_ranges=ranges).run({"x": x})["y"]
    np.testing.assert_array_equal(got, want)
    ref = edgenet.load(path, device="reference", activations="int8", act_ranges=ranges)
    rr = ref.run({"x": x})["y"]
    assert float(np.abs(got - rr).max()) <= 2e-2 * float(np.abs(rr).max())


@pytest.mark.parametrize("C,O,W,on", [(256, 64, 7, True), (384, 96, 7, True),
                                       (64, 256, 7, False), (192, 32, 7, False),
                                       (96, 24, 7, False), (320, 640, 7, True),
                                       (320, 640, 17, False), (256, 80, 17, True)])
def test_1x1_convs_on_amx_by_default(C, O, W, on, monkeypatch):
    """1x1 convs that reduce many channels to few (C >= 3 O, C >= 256: MobileNet's
    projections), and those with >= 256 input channels on maps <= 16 wide (MobileNetV2's
    320 -> 1280), take AMX without qconv.AMX_1X1; other expansions and narrow inputs do
    not. Either way the result matches the reference."""
    rng = np.random.default_rng(zlib.crc32(f"proj {C} {O} {W}".encode()))
    x = rng.uniform(-1, 1, size=(1, C, 5, W)).astype(np.float32)
    consts = {"w": pack("t2", rng.integers(-1, 2, size=(O, C, 1, 1)),
                        rng.uniform(0.02, 0.1, size=O).astype(np.float32)),
              "b": pack("f32", rng.normal(size=O).astype(np.float32))}
    s, zp = quant.qparams(-1.0, 1.0)
    node = _node((0, 0, 0, 0), 1, "Relu", False, aq=(float(s), zp, W))
    want = run_node(node, [x, None, None], consts)[0]
    assert qconv.amx_1x1(C, O, W) is on
    calls = []
    real = amx.run
    monkeypatch.setattr(amx, "run", lambda *a, **k: (calls.append(1), real(*a, **k))[1])
    y, state = _run(node, consts, [x, None, None], want.shape)
    assert (state["q"].get("amx") is not None) is on and bool(calls) is on
    scale = max(float(np.abs(want).max()), 1e-6)
    assert float(np.abs(y - want).max()) <= 2e-5 * scale + 1e-6


def test_kb_blocks():
    assert [amx.kb_of(c4) for c4 in (4, 7, 8, 9, 16, 24, 32, 40, 17, 128)] == \
        [0, 0, 8, 9, 16, 12, 16, 10, 0, 16]


def _chain(path, rng, C, O, H, act, res, extra, k=3):
    """x -> c1 kxk C -> O (Relu) -> m -> c2 kxk O -> O (act; ``res``: + m) -> z -> c3 kxk
    O -> 12 (Relu) -> y, every conv padded (k - 1) / 2; ``extra``: z a graph output too."""
    from edgenet.format import write_model
    desc = act_desc(act, *((0.0, 6.0) if act == "Clip" else ())) if act else None
    a = {"pads": [k // 2] * 4, "dilations": [1, 1], "group": 1, "strides": [1, 1]}
    nodes = [{"name": "c1", "op": "Conv", "inputs": ["x", "w1", "b1"], "outputs": ["m"],
              "attrs": dict(a, activation=act_desc("Relu"))},
             {"name": "c2", "op": "Conv", "inputs": ["m", "w2", "b2"] + (["m"] if res else []),
              "outputs": ["z"], "attrs": dict(a, activation=desc)},
             {"name": "c3", "op": "Conv", "inputs": ["z", "w3", "b3"], "outputs": ["y"],
              "attrs": dict(a, activation=act_desc("Relu"))}]
    graph = {"inputs": [{"name": "x", "shape": [None, C, H, H], "dtype": "float32"}],
             "outputs": [{"name": "y", "shape": [None, 12, H, H]}] + (
                 [{"name": "z", "shape": [None, O, H, H]}] if extra else []),
             "nodes": nodes}
    tensors = {}
    for i, (o, c) in enumerate(((O, C), (O, O), (12, O)), 1):
        tensors[f"w{i}"] = pack("t2", rng.integers(-1, 2, size=(o, c, k, k)),
                                rng.uniform(0.02, 0.1, size=o).astype(np.float32))
        tensors[f"b{i}"] = pack("f32", rng.normal(0, 0.2, size=o).astype(np.float32))
    write_model(path, graph=graph, tensors=tensors)
    return path


@pytest.mark.parametrize("O,H,N,act,res,extra", [
    (64, 12, 1, "Relu", False, False),     # words only
    (40, 9, 2, "Clip", True, False),       # the residual m: c1 keeps y; c2's words only
    (36, 7, 1, "HardSwish", False, True),  # z a graph output: y and words
    (64, 10, 2, "Sigmoid", True, False),   # no vector activation: y, then a pass
    (48, 16, 1, None, True, True),
])
def test_amx_convs_write_their_int8_consumers_words(O, H, N, act, res, extra, tmp_path,
                                                     monkeypatch):
    """AMX convs whose readers are int8 convs write the readers' quantized input from the
    epilogue: bit-identical to the unfused model (each conv quantizing its own input),
    close to the NumPy reference, and an observing run sees y stored."""
    import edgenet
    rng = np.random.default_rng(zlib.crc32(f"amx chain {O} {H} {N} {act}".encode()))
    C = 32
    path = _chain(str(tmp_path / "m.edgenet"), rng, C, O, H, act, res, extra)
    ranges = {"x": (-3.0, 3.0), "m": (0.0, 4.0), "z": (-2.0, 6.0)}
    x = rng.normal(0, 1, (N, C, H, H)).astype(np.float32)
    ran = []
    real = amx.run
    monkeypatch.setattr(amx, "run", lambda *a, **k: (   # (qp[0] of the calls made, not
        a[-1] is None and ran.append(a[-3][0]), real(*a, **k))[1])   # those a bind records)
    fused = edgenet.load(path, activations="int8", act_ranges=ranges)
    nodes = {n["name"]: n for n in fused.graph["nodes"]}
    assert "_qo" in nodes["c1"] and nodes["c2"].get("_qi") and nodes["c3"].get("_qi")
    passes = []
    rq = qconv.quantize_padded
    monkeypatch.setattr(qconv, "quantize_padded",
                        lambda *a, **k: (k.get("calls", a[7] if len(a) > 7 else None) is None
                                         and passes.append(a[0].shape), rq(*a, **k))[1])
    got = fused.run({"x": x})
    vec = act in (None, "Relu", "Clip", "HardSwish")
    assert len(ran) == 2 and ran[0] in (1, 2, 4) and (ran[1] in (1, 2, 4)) == vec
    assert passes == [x.shape] + ([] if vec else [(N, O, H, H)])
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
    seen = {}
    for k, mdl in (("fused", fused), ("plain", plain)):
        obs = {}
        mdl.run({"x": x}, observe=lambda n, a: obs.__setitem__(n, a.copy()))
        seen[k] = obs
    for name in ("m", "z"):
        np.testing.assert_array_equal(seen["fused"][name], seen["plain"][name])


@pytest.mark.parametrize("H,N,act,res", [
    (7, 1, "Relu", False),       # a 16-pixel tile spans 3 output rows
    (9, 2, "Clip", True),        # batch 2, the residual m
    (14, 1, "Sigmoid", False),   # no vector activation: the scalar pass over a flat run
    (5, 1, "HardSwish", True),   # 25 pixels: the second tile overlaps the first
])
def test_flat_tiles_of_unpadded_1x1_convs(H, N, act, res, tmp_path, monkeypatch):
    """1x1 AMX convs over unpadded planes whose readers are unpadded too take a tile as one
    16-pixel run across output rows (amx.run's ``flat``): y and the reader's words are
    bit-identical to the run-per-row epilogue (``amx.FLAT_ON = False``) and to the
    unfused model, and close to the NumPy reference."""
    import edgenet
    rng = np.random.default_rng(zlib.crc32(f"amx flat {H} {N} {act}".encode()))
    C, O = 64, 48
    path = _chain(str(tmp_path / "m.edgenet"), rng, C, O, H, act, res, True, k=1)
    ranges = {"x": (-3.0, 3.0), "m": (0.0, 4.0), "z": (-2.0, 6.0)}
    x = rng.normal(0, 1, (N, C, H, H)).astype(np.float32)
    monkeypatch.setattr(qconv, "AMX_1X1", True)
    flats = []
    real = amx._conv
    monkeypatch.setattr(amx, "_conv", lambda *a: (flats.append(a[-1]), real(*a))[1])

    def run(**kw):
        flats.clear()
        out = edgenet.load(path, activations="int8", act_ranges=ranges, **kw).run({"x": x})
        return out, list(flats)

    got, seen = run()
    assert seen and all(seen), seen        # c1 and c2 (c3 has 12 outputs: VNNI)
    monkeypatch.setattr(amx, "FLAT_ON", False)
    rows, seen = run()
    assert seen and not any(seen), seen
    monkeypatch.setattr(amx, "FLAT_ON", True)
    monkeypatch.setattr(quant, "FUSE_PRODUCERS", False)
    plain, _ = run()
    for k in got:
        np.testing.assert_array_equal(got[k], rows[k])
        np.testing.assert_array_equal(got[k], plain[k])
    rr = edgenet.load(path, device="reference", activations="int8",
                      act_ranges=ranges).run({"x": x})
    for k in rr:
        assert float(np.abs(got[k] - rr[k]).max()) <= 2e-2 * float(np.abs(rr[k]).max())
