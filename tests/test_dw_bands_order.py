"""dw_cv's work order and bands (``dw_cv.ROWS``, ``EVEN``): bands outer, channel blocks
inner, so that each thread takes a band of rows of every channel block (the rows its 1x1
producer's and reader's threads work on), or channel blocks outer (the order before: each
thread a share of the channels, all rows); bands of equal height, or as many rows as fit
with the last band overlapping. Neither changes any output's sum, only who computes it
and how many rows are computed twice.

Oracles: the same model with both off (bit-identical), and the NumPy reference backend.
"""
from __future__ import annotations

import numpy as np
import pytest

import edgenet
from edgenet.cpu import dw_cv, simd
from edgenet.format import pack, write_model
from edgenet.ir import act_desc

RANGES = {"x": (-3.0, 3.0), "e": (0.0, 6.0), "d": (0.0, 6.0)}


def _conv(name, x, w, y, stride, pad, act, group=1):
    return {"name": name, "op": "Conv", "inputs": [x, w, "b" + w[1:]], "outputs": [y],
            "attrs": {"strides": [stride] * 2, "pads": [pad] * 4, "dilations": [1, 1],
                      "group": group, "activation": act_desc(act) if act else None}}


def _model(path, rng, C, H, st):
    """x (8 x H x H) -> 1x1 8 -> C (Relu) -> e -> depthwise 3x3 / st (Relu) -> d -> 1x1
    C -> 12 -> y (MobileNet's inverted residual without the residual)."""
    OH = (H - 1) // st + 1
    nodes = [_conv("pw1", "x", "w1", "e", 1, 0, "Relu"),
             _conv("dw", "e", "w2", "d", st, 1, "Relu", group=C),
             _conv("pw2", "d", "w3", "y", 1, 0, None)]
    tensors = {}
    for i, (o, c, k) in enumerate(((C, 8, 1), (C, 1, 3), (12, C, 1)), 1):
        tensors[f"w{i}"] = pack("t2", rng.integers(-1, 2, size=(o, c, k, k)),
                                rng.uniform(0.1, 0.3, size=o).astype(np.float32))
        tensors[f"b{i}"] = pack("f32", rng.normal(0, 0.2, size=o).astype(np.float32))
    graph = {"inputs": [{"name": "x", "shape": [None, 8, H, H], "dtype": "float32"}],
             "outputs": [{"name": "y", "shape": [None, 12, OH, OH]}], "nodes": nodes}
    write_model(path, graph=graph, tensors=tensors)
    return path


@pytest.mark.parametrize("acts", ["f32", "int8"])
@pytest.mark.parametrize("C,H,st,N", [(48, 30, 1, 1), (40, 29, 2, 2), (16, 9, 1, 1)])
def test_bands_outer_give_the_channels_outer_bits(acts, C, H, st, N, tmp_path,
                                                 monkeypatch):
    """Both orders and band heights (several bands a plane, the last overlapping; channel
    blocks partial): the same outputs, bit for bit, and close to the reference."""
    tier = "avx512vnni" if acts == "int8" else "avx512"
    if simd.rank(tier) < simd.rank(simd.codegen_tier()):
        pytest.skip(f"no {tier}")
    monkeypatch.setenv("EDGENET_SIMD", tier)
    monkeypatch.setattr(dw_cv, "BAND_BYTES", 8192)
    rng = np.random.default_rng(C + H + st)
    path = _model(str(tmp_path / "m.edgenet"), rng, C, H, st)
    x = rng.normal(0, 1, (N, 8, H, H)).astype(np.float32)
    kw = {"activations": "int8", "act_ranges": RANGES} if acts == "int8" else {}
    calls = []
    run = dw_cv.run
    monkeypatch.setattr(dw_cv, "run", lambda *a, **k: calls.append(1) or run(*a, **k))
    got = edgenet.load(path, **kw)(x)
    assert calls, "dw_cv did not run"
    monkeypatch.setattr(dw_cv, "ROWS", False)
    monkeypatch.setattr(dw_cv, "EVEN", False)
    want = edgenet.load(path, **kw)(x)
    assert not np.isnan(got).any()
    np.testing.assert_array_equal(got, want)
    ref = edgenet.load(path, device="reference", **kw)(x)
    scale = float(np.abs(ref).max())
    tol = 2e-2 if acts == "int8" else 1e-4
    assert scale > 0 and float(np.abs(got - ref).max()) <= tol * scale


@pytest.mark.parametrize("OH,nt", [(56, 2), (7, 2), (28, 4), (13, 3), (1, 2), (112, 2)])
@pytest.mark.parametrize("rows,even", [(True, True), (False, True), (False, False)])
def test_bands_cover_the_plane(OH, nt, rows, even, monkeypatch):
    """bands(): the bands cover the plane, each band's input rows fit BAND_BYTES (or it is
    one row), and equal heights leave fewer than one row a band computed twice."""
    monkeypatch.setattr(dw_cv, "ROWS", rows)
    monkeypatch.setattr(dw_cv, "EVEN", even)
    for S, KHe in ((1, 3), (2, 3), (1, 5)):
        Wp = 2 * OH + 4
        R, RI, NB = dw_cv.bands(1, 144, OH, S, KHe, Wp, 16, nt)
        assert 1 <= R <= OH and NB == -(-OH // R) and RI == (R - 1) * S + KHe
        assert R == 1 or RI * Wp * 16 * 4 <= dw_cv.BAND_BYTES
        if even:
            assert NB * R - OH < NB
