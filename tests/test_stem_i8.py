"""The int8 stride-2 stem without a MaxPool (edgenet/cpu/stem_f32.py ``STEM_I8``, VNNI
tier: MobileNet's 3 x 3 / 2 stems) and the one-pass quantize + split of its input
(``quant_split``, POOL_I8's too).

Oracles: qconv's channel-vector tiles on the same file (``stem_f32.Q_ON`` off: the same
int32 sums, scale and quantize rule, so the same bits), the two-pass quantize then
split_copy (``QS_ON`` off), and the NumPy reference backend.
"""
from __future__ import annotations

import numpy as np
import pytest

import edgenet
from edgenet.cpu import simd, stem_f32
from edgenet.format import pack, write_model
from edgenet.ir import act_desc

pytestmark = pytest.mark.skipif(not simd.has_vnni(), reason="STEM_I8 runs on the VNNI tier")


class _St:
    def __init__(self, pad):
        self.params = (2, 2, pad, pad, pad, pad, 1, 1, 1)


@pytest.mark.parametrize("N,C,H,W,pad", [
    (1, 3, 224, 224, 3),    # ResNet's stem input
    (2, 4, 17, 29, 1),      # Wp = 31: the odd half (15 words) under a vector
    (1, 1, 9, 9, 2),        # every half under a vector
    (1, 2, 40, 61, 3),      # odd width, wide pads
])
def test_quant_split_is_quantize_then_split(N, C, H, W, pad, monkeypatch):
    rng = np.random.default_rng(H * W)
    x = rng.normal(0, 1.5, (N, C, H, W)).astype(np.float32)
    q = {"C4": 1, "s": np.float32(0.02), "zp": np.float32(100)}
    Hp, Wp = H + 2 * pad, W + 2 * pad
    n = N * Hp * Wp
    monkeypatch.setattr(stem_f32, "QS_ON", False)
    want = stem_f32.quant_split_input(x, q, _St(pad))[0][:n].copy()
    monkeypatch.setattr(stem_f32, "QS_ON", True)
    got, gh, gw = stem_f32.quant_split_input(x, q, _St(pad))
    assert (gh, gw) == (Hp, Wp)
    np.testing.assert_array_equal(got[:n], want)
    # and the codes are the rule's: row 0 of the padded map is all zero point
    assert (want[:Wp].view(np.uint8) == 100).all()


def _model(path, rng, C, O, H, W, k, act, reader):
    """x (C x H x W) -> conv k x k / 2, pads k // 2 (ternary; act) -> "c" -> ``reader``:
    "dw" a depthwise 3 x 3 (ternary, Relu) -> "y"; "conv" a 3 x 3 conv O -> 8 -> "y";
    "none" c is the output; "both" the conv and c an output as well."""
    OH, OW = (H - 1) // 2 + 1, (W - 1) // 2 + 1
    d = act_desc(act, *((0.0, 6.0) if act == "Clip" else ())) if act else None
    a = {"dilations": [1, 1]}
    nodes = [{"name": "stem", "op": "Conv", "inputs": ["x", "w", "b"], "outputs": ["c"],
              "attrs": dict(a, strides=[2, 2], pads=[k // 2] * 4, group=1, activation=d)}]
    outputs = [{"name": "c", "shape": [None, O, OH, OW]}]
    tensors = {"w": pack("t2", rng.integers(-1, 2, size=(O, C, k, k)),
                         rng.uniform(0.1, 0.4, size=O).astype(np.float32)),
               "b": pack("f32", rng.normal(0, 0.3, size=O).astype(np.float32))}
    if reader != "none":
        dw = reader == "dw"
        R = O if dw else 8
        nodes.append({"name": "r", "op": "Conv", "inputs": ["c", "w1", "b1"],
                      "outputs": ["y"],
                      "attrs": dict(a, strides=[1, 1], pads=[1] * 4, group=O if dw else 1,
                                    activation=act_desc("Relu"))})
        tensors["w1"] = pack("t2", rng.integers(-1, 2, size=(R, 1 if dw else O, 3, 3)),
                             rng.uniform(0.05, 0.2, size=R).astype(np.float32))
        tensors["b1"] = pack("f32", rng.normal(0, 0.2, size=R).astype(np.float32))
        outputs = [{"name": "y", "shape": [None, R, OH, OW]}] + (
            outputs if reader == "both" else [])
    graph = {"inputs": [{"name": "x", "shape": [None, C, H, W], "dtype": "float32"}],
             "outputs": outputs, "nodes": nodes}
    write_model(path, graph=graph, tensors=tensors)
    return path


@pytest.mark.parametrize("C,O,H,W,k,act,N,reader", [
    (3, 32, 64, 64, 3, "Clip", 1, "dw"),          # MobileNetV2's stem: 32-wide rows
    (3, 16, 50, 80, 3, "HardSwish", 2, "conv"),   # 40 wide: the last vector overlaps
    (3, 24, 45, 61, 7, "Relu", 1, "none"),        # O past a 16-channel job; y only
    (4, 20, 40, 56, 5, None, 1, "both"),          # y and the reader's words
    (1, 8, 34, 60, 3, "Relu", 2, "dw"),           # one input channel, 8 outputs
])
def test_int8_stem_matches_the_tiles_and_reference(C, O, H, W, k, act, N, reader, tmp_path,
                                                    monkeypatch):
    monkeypatch.setenv("EDGENET_SIMD", "avx512vnni")
    rng = np.random.default_rng(O * H + k)
    path = _model(str(tmp_path / "m.edgenet"), rng, C, O, H, W, k, act, reader)
    ranges = {"x": (-3.0, 3.0), "c": (-1.0, 6.0)}
    x = rng.normal(0, 1, (N, C, H, W)).astype(np.float32)
    m = edgenet.load(path, activations="int8", act_ranges=ranges)
    st = m._states[0]
    OH, OW = (H - 1) // 2 + 1, (W - 1) // 2 + 1
    assert st.q is not None and stem_f32.use_qs(st, x.shape, (N, O, OH, OW), False, st.act[0])
    assert (st.qo is not None) == (reader != "none")
    got = [m.run({"x": x}) for _ in range(3)]      # unbound, then bound
    monkeypatch.setattr(stem_f32, "Q_ON", False)
    tiles = edgenet.load(path, activations="int8", act_ranges=ranges).run({"x": x})
    ref = edgenet.load(path, device="reference", activations="int8",
                       act_ranges=ranges).run({"x": x})
    for name, want in tiles.items():
        for g in got:
            np.testing.assert_array_equal(g[name], want)
        scale = float(np.abs(ref[name]).max())
        assert float(np.abs(want - ref[name]).max()) <= 2e-2 * scale
    seen = {}    # a run that observes c sees the stem's output (stored, not only the words)
    for k, mdl in (("stem", m), ("tiles", edgenet.load(path, activations="int8",
                                                        act_ranges=ranges))):
        monkeypatch.setattr(stem_f32, "Q_ON", k == "stem")
        mdl.run({"x": x}, observe=lambda n, a, d={}: seen.setdefault(k, d).__setitem__(
            n, a.copy()))
    np.testing.assert_array_equal(seen["stem"]["c"], seen["tiles"]["c"])
    np.testing.assert_array_equal(m.run({"x": x})[next(iter(tiles))], got[0][next(iter(tiles))])


def test_not_for_a_residual_or_a_scalar_activation(tmp_path, monkeypatch):
    """use_qs: stride 2, at most 4 input channels, a vector activation, no residual, rows
    of at least 16 outputs, the last vector recomputing at most 25 %."""
    monkeypatch.setenv("EDGENET_SIMD", "avx512vnni")
    rng = np.random.default_rng(5)
    path = _model(str(tmp_path / "m.edgenet"), rng, 3, 16, 64, 64, 3, "Relu", "none")
    m = edgenet.load(path, activations="int8", act_ranges={"x": (-3.0, 3.0)})
    st = m._states[0]
    relu = st.act[0]
    assert stem_f32.use_qs(st, (1, 3, 64, 64), (1, 16, 32, 32), False, relu)
    assert not stem_f32.use_qs(st, (1, 3, 64, 64), (1, 16, 32, 32), True, relu)
    assert not stem_f32.use_qs(st, (1, 3, 26, 26), (1, 16, 13, 13), False, relu)
    assert not stem_f32.use_qs(st, (1, 3, 40, 40), (1, 16, 20, 20), False, relu)  # 37 % over
    assert not stem_f32.use_qs(st, (1, 8, 64, 64), (1, 16, 32, 32), False, relu)
    assert not stem_f32.use_qs(st, (1, 3, 64, 64), (1, 16, 32, 32), False, 99)
    monkeypatch.setattr(stem_f32, "Q_ON", False)
    assert not stem_f32.use_qs(st, (1, 3, 64, 64), (1, 16, 32, 32), False, relu)
