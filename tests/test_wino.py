"""Winograd F(2x2, 3x3) for dense float32 3x3 stride-1 convs (edgenet/cpu/wino_f32.py),
16 lanes (AVX-512) and 8 (AVX2), each where this CPU runs it.

Oracles: the NumPy reference backend on the same file (direct convolution in float64
order-free sums: agreement to float32 rounding), and the same file with Winograd off
(``wino_f32.WINO_ON``: the direct SIMD tiles). Which path ran is checked too: the
filters (``ConvState.wino``) exist only after a Winograd run.
"""
from __future__ import annotations

import numpy as np
import pytest

import edgenet
from edgenet.cpu import simd, wino_f32
from edgenet.format import pack, write_model
from edgenet.ir import act_desc

from helpers import close_to_scale as _close

# the tiers with Winograd kernels (16 and 8 lanes) that this CPU runs
TIERS = [t for t in ("avx512", "avx2") if simd.rank(t) >= simd.rank(simd.codegen_tier())]


def _model(path, rng, C, K, H, W, act, res, enc="f32"):
    """x (C x H x W) -> 3x3 conv, pads 1 (+ x2, the residual input, when res) -> y."""
    inputs = ["x", "w", "b"] + (["r"] if res else [])
    nodes = [{"name": "c", "op": "Conv", "inputs": inputs, "outputs": ["y"],
              "attrs": {"strides": [1, 1], "pads": [1] * 4, "dilations": [1, 1], "group": 1,
                        "activation": act_desc(act, *((-0.5, 0.7) if act == "Clip" else ()))
                        if act else None}}]
    ins = [{"name": "x", "shape": [None, C, H, W], "dtype": "float32"}]
    if res:
        ins.append({"name": "r", "shape": [None, K, H, W], "dtype": "float32"})
    graph = {"inputs": ins, "outputs": [{"name": "y", "shape": [None, K, H, W]}],
             "nodes": nodes}
    if enc == "f32":
        w = pack("f32", rng.normal(0, 0.2, (K, C, 3, 3)).astype(np.float32))
    else:    # ternary levels, one scale per output channel
        w = pack("t2", rng.integers(-1, 2, (K, C, 3, 3)),
                 rng.uniform(0.05, 0.2, K).astype(np.float32))
    tensors = {"w": w, "b": pack("f32", rng.normal(0, 0.5, K).astype(np.float32))}
    write_model(path, graph=graph, tensors=tensors)
    return path


@pytest.mark.parametrize("tier", TIERS)
@pytest.mark.parametrize("C,K,H,W,act,res,N,enc", [
    (64, 64, 56, 56, "Relu", True, 1, "f32"),    # ResNet-18's layer1: 28 tiles -> 32 lanes
    (128, 128, 28, 28, "Relu", False, 2, "f32"),  # layer2: 14 tiles -> 16 lanes; batch 2
    (32, 48, 19, 20, "Clip", True, 1, "f32"),    # odd height (last tile row half out)
    (16, 32, 17, 63, None, False, 1, "t2"),      # odd width, 32 tiles; ternary expanded
    (48, 16, 8, 18, "Relu", True, 2, "f32"),     # 9 tiles per row, 4 tile rows
    (256, 64, 14, 14, "Relu", True, 1, "f32"),   # layer3's map: 7 tiles, rows in pairs
    (32, 16, 13, 9, "Clip", False, 2, "t2"),     # 5 tiles, 7 rows: the last pair half out
    (16, 32, 16, 15, None, True, 1, "f32"),      # 8 tiles per row (16 lanes: the widest pair)
    (64, 32, 10, 64, "Relu", False, 1, "f32"),   # 32 tiles: 2 (16 lanes) or 4 vectors (8)
    (128, 144, 11, 12, "Clip", False, 1, "t2"),  # 1.2 MB of filters: whole images per job,
                                                 # no split (144 / 2 is not whole vectors)
    (96, 192, 9, 18, None, True, 2, "f32"),      # 1.2 MB: the output channels split in 2
])
def test_winograd_matches_reference(C, K, H, W, act, res, N, enc, tier, tmp_path,
                                    monkeypatch):
    monkeypatch.setenv("EDGENET_SIMD", tier)
    monkeypatch.setattr(wino_f32, "U_MAX", {16: 1 << 22, 8: 1 << 22})   # the same cases
    rng = np.random.default_rng(C * H + W)
    path = _model(str(tmp_path / "m.edgenet"), rng, C, K, H, W, act, res, enc)
    feeds = {"x": rng.normal(0, 1, (N, C, H, W)).astype(np.float32)}
    if res:
        feeds["r"] = rng.normal(0, 1, (N, K, H, W)).astype(np.float32)
    ref = edgenet.load(path, device="reference").run(feeds)["y"]
    m = edgenet.load(path, policy="expanded")
    for _ in range(3):           # the unbound first run, then bound steps
        _close(m.run(feeds)["y"], ref)
    assert m._states[0].wino is not None
    monkeypatch.setattr(wino_f32, "WINO_ON", False)
    off = edgenet.load(path, policy="expanded")
    direct = off.run(feeds)["y"]
    assert off._states[0].wino is None
    _close(direct, ref)
    _close(m.run(feeds)["y"], direct)


@pytest.mark.parametrize("tier", ["generic"] + TIERS)
@pytest.mark.parametrize("C,K,H,W", [
    (64, 64, 20, 66),    # 33 tiles per row: more than two vectors
    (64, 64, 8, 8),      # 4 tiles per row: mostly empty lanes
    (512, 512, 14, 14),  # 16 MB of filters (more than U_MAX)
    (256, 256, 14, 14),  # 4 MB: more than U_MAX on 16 lanes (the 8-lane one is covered above)
    (24, 32, 28, 28),    # 24 channels: not whole vectors
])
def test_winograd_declines(C, K, H, W, tier, tmp_path, monkeypatch):
    """Geometries it does not take, and the generic tier (what ARM64 runs: masked loads
    are scalar code there), run the direct kernels, correctly."""
    if simd.rank(tier) < simd.rank(simd.codegen_tier()):
        pytest.skip(f"{tier} does not run here")
    if tier == "avx2" and C == 256:
        pytest.skip("8 lanes take 4 MB of filters (test_winograd_matches_reference)")
    monkeypatch.setenv("EDGENET_SIMD", tier)
    rng = np.random.default_rng(W)
    path = _model(str(tmp_path / "m.edgenet"), rng, C, K, H, W, "Relu", False)
    x = rng.normal(0, 1, (1, C, H, W)).astype(np.float32)
    m = edgenet.load(path, policy="expanded")
    _close(m(x), edgenet.load(path, device="reference")(x))
    assert m._states[0].wino is None
    if tier == "generic":        # the same conv in a geometry the x86 tiers take
        ok = str(tmp_path / "ok.edgenet")
        _model(ok, rng, 16, 16, 12, 20, "Relu", False)
        m = edgenet.load(ok, policy="expanded")
        m(rng.normal(0, 1, (1, 16, 12, 20)).astype(np.float32))
        assert m._states[0].wino is None


def test_jobs_split_large_filters():
    """Up to GROUP_U bytes of filters: a job per tile row; above: whole images, the output
    channels in whole vectors of 16 per thread where they divide."""
    assert wino_f32.jobs(64, 64, 56, 56, 16, 2) == (1, 1)
    assert wino_f32.jobs(256, 256, 14, 14, 16, 2) == (4, 2)     # 7 rows in pairs
    assert wino_f32.jobs(256, 256, 14, 14, 8, 2) == (7, 2)      # 8 lanes: no pairs
    assert wino_f32.jobs(128, 144, 11, 12, 16, 2) == (3, 1)     # 144 / 2 = 72: not whole
    assert wino_f32.jobs(128, 144, 11, 20, 16, 2) == (6, 1)     # 10 tiles: rows, no pairs


def test_winograd_filters_are_exact_transforms():
    """U = G g G^T: the 4x4 transform of each filter, laid out (16, C, O); a ternary level
    times 1/2 and 1/4 sums stays exact in float32."""
    rng = np.random.default_rng(3)
    g = rng.integers(-1, 2, (5, 3, 3, 3)).astype(np.float32)
    U = wino_f32.filters(g.reshape(5, -1), 5, 3)
    assert U.shape == (16, 3, 5) and U.dtype == np.float32
    G = np.array([[1, 0, 0], [.5, .5, .5], [.5, -.5, .5], [0, 0, 1]])
    for o in range(5):
        for c in range(3):
            want = G @ g[o, c].astype(np.float64) @ G.T
            assert np.array_equal(U[:, c, o].astype(np.float64), want.reshape(16))
