"""The blocked hand-off between a 1x1 conv and its depthwise reader (edgenet/cpu/conv.py
``link_blocked``, pw_f32 ``pwb_l16_k*`` / ``cvb_l16_k*_s2``, dw_cv's ``blk`` input).

Oracles: the NumPy reference backend on the same file; the same model with the hand-off
off (``dw_cv.BLK_ON``: the producer writes NCHW for the depthwise kernels' transposes);
``observe`` (calibration's view) must see every intermediate tensor as the reference does.
"""
from __future__ import annotations

import numpy as np
import pytest

import edgenet
from edgenet.cpu import dw_cv, simd
from edgenet.format import pack, write_model
from edgenet.ir import act_desc

from helpers import close_to_scale as _close

# 16 lanes (avx512) and 8 (avx2; generic is the same kernels) where this CPU runs them
TIERS = [t for t in ("avx512", "avx2") if simd.rank(t) >= simd.rank(simd.codegen_tier())]


def _desc(act):
    return act_desc(act, *((0.0, 6.0) if act == "Clip" else ())) if act else None


def _model(path, rng, C0, C, H, st, k, act1, act2, N_out=12, extra_reader=False,
           expose=False, k1=1, s1=1, res2=False, act3="Relu", dyn=False):
    """x (H x H) -> conv k1 x k1, stride s1, C0 -> C (act1) -> "e" (E x E) -> depthwise
    k x k, stride st (act2) -> 1x1 conv C -> N_out -> y. extra_reader: "e" also feeds an
    Add into y's branch (two readers); expose: "e" is a graph output too; res2: the last
    conv adds x (its fused residual: N_out == C0, the same map), act3 its activation."""
    p1 = k1 // 2
    E = (H + 2 * p1 - k1) // s1 + 1
    H0, H = H, E
    pad = k // 2
    OH = (H + 2 * pad - k) // st + 1
    nodes = [
        {"name": "pw1", "op": "Conv", "inputs": ["x", "w1", "b1"], "outputs": ["e"],
         "attrs": {"strides": [s1, s1], "pads": [p1] * 4, "dilations": [1, 1], "group": 1,
                   "activation": _desc(act1)}},
        {"name": "dw", "op": "Conv", "inputs": ["e", "wd", "bd"], "outputs": ["d"],
         "attrs": {"strides": [st, st], "pads": [pad] * 4, "dilations": [1, 1], "group": C,
                   "activation": _desc(act2)}},
        {"name": "pw2", "op": "Conv", "inputs": ["d", "w2", "b2"] + (["x"] if res2 else []),
         "outputs": ["y"],
         "attrs": {"strides": [1, 1], "pads": [0] * 4, "dilations": [1, 1], "group": 1,
                   "activation": _desc(act3)}}]
    outputs = [{"name": "y", "shape": [None, N_out, OH, OH]}]
    if extra_reader:
        nodes.append({"name": "sum", "op": "Add", "inputs": ["e", "e"], "outputs": ["s"]})
        outputs.append({"name": "s", "shape": [None, C, H, H]})
    if expose:
        outputs.append({"name": "e", "shape": [None, C, H, H]})
    graph = {"inputs": [{"name": "x", "shape": [None, C0, H0, H0], "dtype": "float32"}],
             "outputs": outputs, "nodes": nodes}
    if dyn:   # height and width per call
        graph["inputs"][0]["shape"] = [None, C0, None, None]
        for o in outputs:
            o["shape"] = [None, o["shape"][1], None, None]

    def f32(*shape, s=0.3):
        return pack("f32", rng.normal(0, s, size=shape).astype(np.float32))

    tensors = {"w1": f32(C, C0, k1, k1), "b1": f32(C, s=0.5), "wd": f32(C, 1, k, k, s=0.4),
               "bd": f32(C, s=0.2), "w2": f32(N_out, C, 1, 1, s=0.2), "b2": f32(N_out, s=0.2)}
    write_model(path, graph=graph, tensors=tensors)
    return path


def _conv_node(name, i, o, k=1, s=1, g=1, act="Relu"):
    """A k x k conv node (stride s, group g, pads k // 2) reading i, weights "w" + name."""
    return {"name": name, "op": "Conv", "inputs": [i, "w" + name, "b" + name],
            "outputs": [o], "attrs": {"strides": [s, s], "pads": [k // 2] * 4,
                                      "dilations": [1, 1], "group": g,
                                      "activation": _desc(act)}}


@pytest.mark.parametrize("tier", TIERS)
@pytest.mark.parametrize("C0,C,H,st,k,act1,act2,N", [
    (16, 72, 28, 2, 3, "Relu", "Relu", 1),          # MobileNetV3's 72 channels: 4.5 blocks
    (24, 96, 20, 2, 5, "HardSwish", "HardSwish", 2),  # 5x5, batch 2, 6 blocks (k = 3 tiles)
    (8, 40, 14, 1, 3, "Clip", "Clip", 1),           # stride 1 on a small plane, 2.5 blocks
    (32, 64, 9, 1, 3, None, "Relu", 1),             # 81 pixels: the last tile overlaps
    (12, 24, 13, 2, 3, "Clip", "Sigmoid", 1),       # an activation the reader calls per value
    (8, 32, 40, 1, 3, "Relu", "Clip", 1),           # stride 1 on a 1600-pixel plane
])
def test_blocked_handoff_matches_reference(C0, C, H, st, k, act1, act2, N, tier, tmp_path,
                                           monkeypatch):
    monkeypatch.setenv("EDGENET_SIMD", tier)
    rng = np.random.default_rng(C * H + k)
    path = _model(str(tmp_path / "m.edgenet"), rng, C0, C, H, st, k, act1, act2)
    x = rng.normal(0, 1, (N, C0, H, H)).astype(np.float32)
    m = edgenet.load(path)
    assert m._states[0].bo is not None and m._states[1].bi == ("blk:0", "pw")
    L = m._states[1].simd_dw
    assert dw_cv.use_blk(m._states[1], (N, C, H, H)) == (st == 2 or
                                                         H * H <= dw_cv.BLK_MAX_PIXELS[L])
    ref = edgenet.load(path, device="reference")(x)
    for _ in range(3):           # the unbound first run, then bound steps
        _close(m(x), ref)
    monkeypatch.setattr(dw_cv, "BLK_ON", False)
    off = edgenet.load(path)
    assert off._states[0].bo is None
    _close(off(x), ref)


@pytest.mark.parametrize("tier", TIERS)
@pytest.mark.parametrize("C0,C,H,k1,k,st,act1,N", [
    (3, 32, 64, 3, 3, 1, "Clip", 1),        # MobileNetV2's stem: 3x3/2, then stride 1
    (3, 16, 50, 3, 3, 2, "HardSwish", 2),   # MobileNetV3-small's: 16 channels (one tile
                                            # block), then stride 2; batch 2
    (4, 40, 61, 5, 5, 2, "Relu", 1),        # 5x5/2 stem, odd width, 2.5 blocks
])
def test_blocked_stem_matches_reference(C0, C, H, k1, k, st, act1, N, tier, tmp_path,
                                        monkeypatch):
    """A stride-2 producer of any kernel size (cvb_l*_k*_s2 over the padded input)."""
    monkeypatch.setenv("EDGENET_SIMD", tier)
    rng = np.random.default_rng(C * H + k1)
    path = _model(str(tmp_path / "m.edgenet"), rng, C0, C, H, st, k, act1, "Relu",
                  k1=k1, s1=2)
    x = rng.normal(0, 1, (N, C0, H, H)).astype(np.float32)
    m = edgenet.load(path)
    E = (H + 2 * (k1 // 2) - k1) // 2 + 1
    assert m._states[1].bi == ("blk:0", "cv") and dw_cv.use_blk(m._states[1], (N, C, E, E))
    ref = edgenet.load(path, device="reference")(x)
    for _ in range(3):
        _close(m(x), ref)


@pytest.mark.parametrize("tier", TIERS)
@pytest.mark.parametrize("C0,C,H,st,N_out,res2,act3,N", [
    (16, 96, 14, 1, 16, True, "Relu", 1),        # one output block, fused residual
    (64, 384, 14, 1, 64, True, None, 2),         # MobileNetV2's 384 -> 64, batch 2
    (24, 72, 29, 2, 80, False, "HardSwish", 1),  # 5 output blocks, odd map, stride 2
    (16, 40, 12, 1, 16, True, "Sigmoid", 1),     # 2.5 input blocks; act_call epilogue
    (16, 32, 6, 2, 16, False, "Relu", 1),        # a 3x3 output, under a tile: NCHW
    (24, 48, 12, 1, 24, True, "Relu", 1),        # 24 outputs: 1.5 blocks, residual
    (16, 144, 20, 1, 32, False, None, 2),        # MobileNetV2's 144 -> 32 shape, batch 2
])
def test_depthwise_to_1x1_handoff_matches_reference(C0, C, H, st, N_out, res2, act3, N,
                                                    tier, tmp_path, monkeypatch):
    """The depthwise conv writes its output blocked (dw_cv ``bout``: masked row tails at 16
    lanes, single pixels at 8) and its 1x1 reader reads it (pwbi_l16_k*: NCHW through
    tile_store_k; pwbi_l8_k*: through tile_store; residual and activation included);
    pairs of both kinds in one chain."""
    from edgenet.cpu import pw_f32
    monkeypatch.setenv("EDGENET_SIMD", tier)
    rng = np.random.default_rng(C + H + N_out)
    path = _model(str(tmp_path / "m.edgenet"), rng, C0, C, H, st, 3, "Relu", "Clip",
                  N_out=N_out, res2=res2, act3=act3)
    x = rng.normal(0, 1, (N, C0, H, H)).astype(np.float32)
    calls = []
    for key, f in list(pw_f32.KERNELS_BIN.items()):
        monkeypatch.setitem(pw_f32.KERNELS_BIN, key,
                            lambda *a, f=f, key=key: calls.append(key) or f(*a))
    m = edgenet.load(path)
    L = 16 if tier == "avx512" else 8
    # 8 lanes: no pair for 24 outputs (three 8-channel blocks: the 4-pixel KB = 3 tiles)
    paired = L == 16 or N_out != 24
    if paired:
        assert m._states[1].bo2 is not None and m._states[2].bi2 == m._states[1].bo2
    else:
        assert m._states[1].bo2 is None and m._states[2].bi2 is None
    ref = edgenet.load(path, device="reference")(x)
    for _ in range(3):
        _close(m(x), ref)
    OH = (H - 1) // st + 1
    if paired and OH * OH >= pw_f32.BIN_MIN_HW:   # the blocked reader ran, at these lanes
        assert calls and all(k[0] == L for k in calls)
    else:
        assert not calls
    monkeypatch.setattr(dw_cv, "BLK_OUT_ON", False)
    off = edgenet.load(path)
    assert off._states[1].bo2 is None
    _close(off(x), ref)


@pytest.mark.parametrize("tier", TIERS)
def test_depthwise_to_1x1_handoff_where_the_reader_is_narrow(tier, tmp_path, monkeypatch):
    """Fewer than 16 output channels (under one block): no pair (pw_f32.bin_ok); 16 and
    24: a pair at 16 lanes; at 8, 16 and 32 (KB = 2 tiles), not 24 or 40 (KB = 3)."""
    monkeypatch.setenv("EDGENET_SIMD", tier)
    rng = np.random.default_rng(3)
    want = {8: False, 16: True, 24: True} if tier == "avx512" else \
        {8: False, 16: True, 24: False, 32: True, 40: False}
    for n_out, pair in want.items():
        path = _model(str(tmp_path / f"m{n_out}.edgenet"), rng, 8, 48, 12, 1, 3, "Relu",
                      "Relu", N_out=n_out)
        assert (edgenet.load(path)._states[1].bo2 is not None) == pair, n_out


@pytest.mark.skipif(not TIERS, reason="no SIMD tier")
def test_observed_runs_see_the_nchw_tensor(tmp_path, monkeypatch):
    """Calibration observes intermediates: those runs write every tensor in NCHW (the
    producer's tensor as the reference computes it), and the unobserved runs after them
    use the hand-off again (the same bits as before)."""
    monkeypatch.setenv("EDGENET_SIMD", TIERS[0])
    rng = np.random.default_rng(5)
    path = _model(str(tmp_path / "m.edgenet"), rng, 16, 48, 16, 2, 3, "Relu", "Relu",
                  N_out=16)
    x = rng.normal(0, 1, (1, 16, 16, 16)).astype(np.float32)
    seen, want = {}, {}
    m = edgenet.load(path)
    ref = edgenet.load(path, device="reference")
    assert m._states[0].bo is not None
    assert m._states[1].bo2 is not None or TIERS[0] != "avx512"   # both kinds of pair
    y0 = m(x)
    y = m.run({"x": x}, observe=lambda n, a: seen.__setitem__(n, a.copy()))["y"]
    ref.run({"x": x}, observe=lambda n, a: want.__setitem__(n, a.copy()))
    _close(seen["e"], want["e"])
    _close(seen["d"], want["d"])
    _close(y, y0)     # (the NCHW producer, pw_f32, rounds its sums in another order)
    assert dw_cv.use_blk(m._states[1], (1, 48, 16, 16))   # the NCHW-only flag is off
    np.testing.assert_array_equal(m(x), y0)


@pytest.mark.parametrize("why", ["extra_reader", "expose", "conv3x3_s1", "off", "big_plane"])
def test_no_handoff_where_the_tensor_is_needed_or_the_producer_cannot(why, tmp_path,
                                                                      monkeypatch):
    """Two readers, a graph output, a 3x3 stride-1 producer (no blocked kernel), no SIMD
    tier: no pair. Stride 1 on a plane over dw_cv.BLK_MAX_PIXELS (lowered here): linked,
    but the reader runs the plane kernel, so the producer writes NCHW (use_blk False for
    the shape). Results match the reference."""
    if not TIERS:
        pytest.skip("no SIMD tier")
    monkeypatch.setattr(dw_cv, "BLK_MAX_PIXELS", {16: 32 * 32, 8: 32 * 32})
    monkeypatch.setenv("EDGENET_SIMD", "off" if why == "off" else TIERS[0])
    rng = np.random.default_rng(7)
    H = 40 if why == "big_plane" else 12
    k1 = 3 if why == "conv3x3_s1" else 1
    path = _model(str(tmp_path / "m.edgenet"), rng, 8, 32, H, 1, 3, "Relu", "Relu",
                  extra_reader=why == "extra_reader", expose=why == "expose", k1=k1)
    x = rng.normal(0, 1, (1, 8, H, H)).astype(np.float32)
    m = edgenet.load(path)
    linked = getattr(m._states[0], "bo", None) is not None
    assert linked == (why == "big_plane")
    if linked:
        assert not dw_cv.use_blk(m._states[1], (1, 32, H, H))
    ref = edgenet.load(path, device="reference").run({"x": x})
    got = m.run({"x": x})
    for n in ref:
        _close(got[n], ref[n])


def test_chain_of_depthwise_and_1x1_convs(tmp_path, monkeypatch):
    """MobileNetV1's pattern, 1x1 -> depthwise -> 1x1 -> depthwise -> 1x1: the middle 1x1
    conv could read one blocked tensor and write another; it takes one role only (the
    producer's), and the chain matches the reference on every tier this CPU runs."""
    rng = np.random.default_rng(11)
    conv = _conv_node
    nodes = [conv("p1", "x", "a"), conv("d1", "a", "b", 3, 1, 32),
             conv("p2", "b", "c", act="Clip"), conv("d2", "c", "d", 3, 2, 64),
             conv("p3", "d", "y", act=None)]
    f32 = lambda *sh: pack("f32", rng.normal(0, 0.3, size=sh).astype(np.float32))  # noqa: E731
    tensors = {"wp1": f32(32, 8, 1, 1), "bp1": f32(32), "wd1": f32(32, 1, 3, 3),
               "bd1": f32(32), "wp2": f32(64, 32, 1, 1), "bp2": f32(64),
               "wd2": f32(64, 1, 3, 3), "bd2": f32(64), "wp3": f32(64, 64, 1, 1),
               "bp3": f32(64)}
    graph = {"inputs": [{"name": "x", "shape": [None, 8, 20, 20], "dtype": "float32"}],
             "outputs": [{"name": "y", "shape": [None, 64, 10, 10]}], "nodes": nodes}
    path = str(tmp_path / "v1.edgenet")
    write_model(path, graph=graph, tensors=tensors)
    x = rng.normal(0, 1, (2, 8, 20, 20)).astype(np.float32)
    ref = edgenet.load(path, device="reference")(x)
    for tier in TIERS:
        monkeypatch.setenv("EDGENET_SIMD", tier)
        m = edgenet.load(path)
        st = m._states
        assert st[2].bo is not None and st[2].bi2 is None   # p2 writes blocked for d2
        # p1 -> d1 and p2 -> d2 do not overlap: one buffer; d2 -> p3 starts where p2 -> d2
        # ends (d2 reads one and writes the other): another
        assert st[0].bo[1] == st[1].bi[0] == st[2].bo[1] == st[3].bi[0]
        assert st[3].bo2 is None or st[3].bo2 == st[4].bi2 != st[3].bi[0]
        for _ in range(3):
            _close(m(x), ref)


@pytest.mark.skipif("avx512" not in TIERS, reason="the dw -> 1x1 hand-off is 16 lanes")
def test_input_sizes_that_do_and_do_not_hand_off_alternate(tmp_path, monkeypatch):
    """One model, inputs of 20x20 (both hand-offs) and 6x6 (the 1x1 reader's map under a
    tile: NCHW) in turn: each plan's steps agree with each other (the depthwise conv's
    record is per shape) and with the reference."""
    monkeypatch.setenv("EDGENET_SIMD", "avx512")
    rng = np.random.default_rng(13)
    path = _model(str(tmp_path / "m.edgenet"), rng, 16, 48, 20, 2, 3, "Relu", "Clip",
                  N_out=16, dyn=True)
    m = edgenet.load(path)
    ref = edgenet.load(path, device="reference")
    assert m._states[0].bo is not None and m._states[1].bo2 is not None
    xs = [rng.normal(0, 1, (1, 16, h, h)).astype(np.float32) for h in (20, 6)]
    for _ in range(3):
        for x in xs:
            _close(m(x), ref(x))


def test_overlapping_hand_offs_get_their_own_buffers(tmp_path, monkeypatch):
    """Two branches, each 1x1 -> depthwise, run interleaved (p1, q1, d1, d2): both blocked
    tensors are alive at once, so they must not share a buffer (conv._share_blocked_buffers);
    a third pair after them reuses one. Matches the reference on every tier."""
    rng = np.random.default_rng(17)
    conv = _conv_node
    nodes = [conv("p1", "x", "a"), conv("q1", "x", "c", act="Clip"),
             conv("d1", "a", "b", 3, 1, 32), conv("d2", "c", "e", 3, 1, 32),
             {"name": "add", "op": "Add", "inputs": ["b", "e"], "outputs": ["s"]},
             conv("p3", "s", "f"), conv("d3", "f", "y", 3, 1, 32, act=None)]
    f32 = lambda *sh: pack("f32", rng.normal(0, 0.3, size=sh).astype(np.float32))  # noqa: E731
    tensors = {}
    for n, (o, i, k) in {"p1": (32, 8, 1), "q1": (32, 8, 1), "d1": (32, 1, 3),
                         "d2": (32, 1, 3), "p3": (32, 32, 1), "d3": (32, 1, 3)}.items():
        tensors["w" + n], tensors["b" + n] = f32(o, i, k, k), f32(o)
    graph = {"inputs": [{"name": "x", "shape": [None, 8, 12, 12], "dtype": "float32"}],
             "outputs": [{"name": "y", "shape": [None, 32, 12, 12]}], "nodes": nodes}
    path = str(tmp_path / "br.edgenet")
    write_model(path, graph=graph, tensors=tensors)
    x = rng.normal(0, 1, (1, 8, 12, 12)).astype(np.float32)
    ref = edgenet.load(path, device="reference")(x)
    for tier in TIERS:
        monkeypatch.setenv("EDGENET_SIMD", tier)
        m = edgenet.load(path)
        st = m._states
        assert st[0].bo is not None and st[1].bo is not None and st[5].bo is not None
        assert st[0].bo[1] != st[1].bo[1]
        assert st[5].bo[1] in (st[0].bo[1], st[1].bo[1])
        for _ in range(3):
            _close(m(x), ref)


@pytest.mark.skipif(not TIERS, reason="no SIMD tier")
def test_padded_hand_off_between_float32_convs(tmp_path, monkeypatch):
    """A ResNet-20-like chain, 3 -> 16 stem -> 16 -> 16 (+ residual) -> 32 / 2 -> 32, every
    conv 3x3 padded: each producer stores into its reader's padded input as well
    (conv.link_padded: the stem kernel, the pixel-vector tiles with a residual, the
    channel-vector tiles), the readers copy nothing but the graph input; batch 2, two input
    sizes in turn (a padded buffer per size) and one past conv.PAD_MAX (the copies again):
    the reference's values and, bit for bit, those of the copies (PAD_ON off)."""
    from edgenet.cpu import conv as cv, wino_f32
    # Winograd (the readers without a hand-off) sums in another order: direct tiles both ways
    monkeypatch.setattr(wino_f32, "WINO_ON", False)
    rng = np.random.default_rng(19)
    c = _conv_node
    r2 = dict(c("c2", "b", "c"), inputs=["b", "wc2", "bc2", "a"])
    nodes = [c("c0", "x", "a", 3), c("c1", "a", "b", 3), r2, c("c3", "c", "d", 3, 2),
             c("c4", "d", "y", 3, act="Clip")]
    r2["attrs"] = dict(r2["attrs"], pads=[1] * 4)
    f32 = lambda *sh: pack("f32", rng.normal(0, 0.3, size=sh).astype(np.float32))  # noqa: E731
    tensors = {}
    for n, (o, i) in {"c0": (16, 3), "c1": (16, 16), "c2": (16, 16), "c3": (32, 16),
                      "c4": (32, 32)}.items():
        tensors["w" + n], tensors["b" + n] = f32(o, i, 3, 3), f32(o)
    graph = {"inputs": [{"name": "x", "shape": [None, 3, None, None], "dtype": "float32"}],
             "outputs": [{"name": "y", "shape": [None, 32, None, None]},
                         {"name": "c", "shape": [None, 16, None, None]}], "nodes": nodes}
    path = str(tmp_path / "r20.edgenet")
    write_model(path, graph=graph, tensors=tensors)
    ref = edgenet.load(path, device="reference")
    # 32: the stem and pixel-vector kernels (16 lanes); 9: the tiles; 33: past PAD_MAX
    xs = [rng.normal(0, 1, (2, 3, h, h)).astype(np.float32) for h in (32, 9, 33)]
    assert 2 * 16 * 33 * 33 > cv.PAD_MAX >= 2 * 16 * 32 * 32
    copies, counted = [], set()
    real = cv._pad_copy
    for tier in TIERS:
        monkeypatch.setenv("EDGENET_SIMD", tier)
        m = edgenet.load(path)
        assert [st.po is not None for st in m._states] == [True] * 4 + [False]
        assert [st.pi is not None for st in m._states] == [False] + [True] * 4
        monkeypatch.setattr(cv, "PAD_ON", False)
        off = edgenet.load(path)
        monkeypatch.setattr(cv, "PAD_ON", True)
        assert all(st.po is None for st in off._states)
        for _ in range(2):
            for x in xs:
                want = ref.run({"x": x})
                copies.clear()
                with monkeypatch.context() as mp:
                    mp.setattr(cv, "_pad_copy", lambda *a: copies.append(a[0].shape) or real(*a))
                    got = m.run({"x": x})
                # (a bound run records no calls: only the first runs of a plan count)
                assert not copies or copies == ([x.shape] if x.shape[2] < 33 else
                                                [x.shape] + [(2, 16, 33, 33)] * 3)
                if copies:
                    counted.add((tier, x.shape[2]))
                old = off.run({"x": x})
                for n in ("y", "c"):
                    _close(got[n], want[n])
                    np.testing.assert_array_equal(got[n], old[n])
    assert counted == {(t, h) for t in TIERS for h in (32, 9, 33)}
