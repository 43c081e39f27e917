"""Kernels generated in the process (edgenet/cpu/gen_simd_conv.py).

Oracles: the NumPy reference backend (edgenet/reference) for conv results, with the tile
forced to a chosen menu key; Numba's own dispatcher statistics for the disk cache (a second
process must load every kernel and compile none).
"""
from __future__ import annotations

import json
import linecache
import os
import subprocess
import sys

import numpy as np
import pytest

from edgenet import _jit, cpu, quant
from edgenet.cpu import conv, dw_cv, gen_simd_conv as gen, qconv, simd
from edgenet.format import pack
from edgenet.ir import act_desc
from edgenet.reference import run_node

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _node(stride, pad, act, res, group=1, aq=None):
    desc = act_desc(act, *((0.0, 6.0) if act == "Clip" else ())) if act else None
    nd = {"name": "c", "op": "Conv", "inputs": ["x", "w", "b"] + (["r"] if res else []),
          "outputs": ["y"],
          "attrs": {"strides": [stride] * 2, "pads": [pad] * 4, "dilations": [1, 1],
                    "group": group, "activation": desc}}
    if aq is not None:
        nd["_aq"] = aq
    return nd


def _case(rng, N, C, H, W, O, ks, stride, pad, res, group=1):
    x = rng.uniform(-1, 1, size=(N, C, H, W)).astype(np.float32)
    consts = {"w": pack("t2", rng.integers(-1, 2, size=(O, C // group, ks, ks)),
                        rng.uniform(0.05, 0.3, size=O).astype(np.float32)),
              "b": pack("f32", rng.normal(size=O).astype(np.float32))}
    OH = (H + 2 * pad - ks) // stride + 1
    OW = (W + 2 * pad - ks) // stride + 1
    inputs = [x, None, None]
    if res:
        inputs.append(rng.uniform(-1, 1, size=(N, O, OH, OW)).astype(np.float32))
    return consts, inputs, OW


# (L, k, P, S), O, activation, residual: the row width is chosen so that the tile is P wide
F32_KEYS = [((16, 1, 16, 1), 20, "Relu", True), ((16, 2, 7, 2), 40, "Clip", False),
            ((8, 2, 6, 1), 16, "Sigmoid", True), ((8, 1, 12, 2), 9, None, False),
            ((8, 2, 4, 1), 20, "Relu", True), ((8, 2, 4, 2), 16, "HardSwish", False)]


@pytest.mark.parametrize("key,O,act,res", F32_KEYS, ids=[str(k[0]) for k in F32_KEYS])
@pytest.mark.parametrize("policy", ["expanded", "packed"])
def test_conv_tile_matches_reference(key, O, act, res, policy, monkeypatch):
    L, k, P, S = key
    monkeypatch.setenv("EDGENET_SIMD", "avx512" if L == 16 else "avx2")
    monkeypatch.setattr(conv, "choose_k", lambda O_, L_: k)
    monkeypatch.setattr(conv, "choose_p", lambda OW_, L_, k_, **kw: P if P <= OW_ else None)
    rng = np.random.default_rng(sum(key))
    W = (P + 3) * S        # OW = P + 3: one full tile and an overlapping last one
    consts, inputs, OW = _case(rng, 2, 5, 7, W, O, 3, S, 1, res)
    assert OW >= P
    node = _node(S, 1, act, res)
    want = run_node(node, inputs, consts)[0]
    st = cpu.OPS["Conv"].prepare(node, consts, policy)
    assert st.simd == (L, k)
    y = np.full_like(want, np.nan)
    cpu.OPS["Conv"].run(node, st, inputs, [y])
    np.testing.assert_allclose(y, want, rtol=2e-5, atol=2e-5)
    assert ("conv", key) in gen._KERNELS          # the forced tile ran, nothing else


@pytest.mark.parametrize("kind", ["conv", "dw", "dwcv"])
def test_hardswish_epilogue_matches_reference(kind, monkeypatch):
    """The inline HardSwish epilogues (tile_store; the depthwise plane kernel's vector
    store; the channel-vector depthwise kernel's): values far outside [-3, 3] on both sides,
    and NaN / +-inf inputs, as the reference (NumPy)."""
    monkeypatch.setenv("EDGENET_SIMD", "avx512")
    monkeypatch.setattr(dw_cv, "ON", kind == "dwcv")
    rng = np.random.default_rng(7)
    g = 1 if kind == "conv" else 16
    consts, inputs, _ = _case(rng, 1, 16, 9, 21, 40 if kind == "conv" else 16, 3, 1, 1, False,
                              group=g)
    inputs[0] *= 8
    inputs[0][0, :3, 4, 5] = [np.nan, np.inf, -np.inf]
    node = _node(1, 1, "HardSwish", False, group=g)
    want = run_node(node, inputs, consts)[0]
    st = cpu.OPS["Conv"].prepare(node, consts, "packed")
    y = np.full_like(want, 7.0)
    cpu.OPS["Conv"].run(node, st, inputs, [y])
    assert np.isnan(want).any() and (want > 10).any() and (want[np.isfinite(want)] < 0).any()
    np.testing.assert_allclose(y, want, rtol=2e-5, atol=2e-5)
    if kind == "dwcv":
        assert dw_cv.use(st, inputs[0].shape, want.shape)
    else:
        assert any(k[0] == kind for k in gen._KERNELS)


@pytest.mark.parametrize("tier,act,res,N,C,O,H,W", [
    ("avx512", "Relu", True, 2, 6, 9, 7, 11),        # O not a multiple of 4; tiles overlap
    ("avx512", "Sigmoid", False, 1, 6, 20, 12, 12),  # the act_call row epilogue
    ("avx512", "Clip", True, 1, 70, 26, 8, 8),       # the 12 x 2 tile (WIDE_C channels)
    ("avx2", "HardSwish", True, 1, 6, 13, 5, 9),
    ("avx2", "Clip", False, 2, 6, 4, 4, 6)])
@pytest.mark.parametrize("policy", ["expanded", "packed"])
def test_pointwise_f32_matches_reference(tier, act, res, N, C, O, H, W, policy, monkeypatch):
    """1x1 stride-1 convs on the pixel-vector kernel (cpu/pw_f32.py): against the NumPy
    reference, and the kernel really ran (the channel-vector tiles did not)."""
    from edgenet.cpu import pw_f32
    if simd.rank(tier) < simd.rank(simd.codegen_tier()):
        pytest.skip(f"no {tier}")
    monkeypatch.setenv("EDGENET_SIMD", tier)
    rng = np.random.default_rng(N * O + H)
    consts, inputs, _ = _case(rng, N, C, H, W, O, 1, 1, 0, res)
    inputs[0] *= 4
    node = _node(1, 0, act, res)
    want = run_node(node, inputs, consts)[0]
    L = 16 if tier == "avx512" else 8
    calls = []
    table = pw_f32.KERNELS_WIDE if C >= pw_f32.WIDE_C and L in pw_f32.WIDE else pw_f32.KERNELS
    real = table[L]
    pw_f32.warm(L)                 # what edgenet warmup builds
    sigs = list(real.signatures)
    monkeypatch.setitem(table, L, lambda *a: calls.append(1) or real(*a))
    st = cpu.OPS["Conv"].prepare(node, consts, policy)
    y = np.full_like(want, np.nan)
    cpu.OPS["Conv"].run(node, st, inputs, [y])
    assert calls == [1]
    np.testing.assert_allclose(y, want, rtol=2e-5, atol=2e-5)
    assert list(real.signatures) == sigs == sigs[:1]   # the run found warmup's signature


# 1x1 stride-1 convs on the channel-vector tiles over the flat map (conv.FLAT_1X1):
# (tier, C, O, H, W, residual, activation, the flat tile's P)
FLAT_CASES = [("avx2", 100, 32, 7, 7, True, "Relu", 6),    # 9 tiles of 6, not 7 rows of 7
              ("avx2", 100, 20, 7, 7, False, "Clip", 12),  # k = 1: 5 tiles of 12, not 4 + 4
              ("avx2", 10, 16, 5, 3, False, "HardSwish", 6),   # rows narrower than 4
              ("avx512", 6, 40, 3, 3, True, "Clip", 7)]        # k = 3, rows narrower than 7


@pytest.mark.parametrize("tier,C,O,H,W,res,act,P", FLAT_CASES,
                         ids=[str(c[:5]) for c in FLAT_CASES])
def test_flat_1x1_matches_reference(tier, C, O, H, W, res, act, P, monkeypatch):
    """A 1x1 conv the pixel-vector kernels do not take runs the tiles over its map as one
    row of H * W pixels (the last tile overlapping the one before), and row by row with
    FLAT_1X1 off: both against the NumPy reference."""
    if simd.rank(tier) < simd.rank(simd.codegen_tier()):
        pytest.skip(f"no {tier}")
    monkeypatch.setenv("EDGENET_SIMD", tier)
    rng = np.random.default_rng(C + O + H)
    consts, inputs, _ = _case(rng, 2, C, H, W, O, 1, 1, 0, res)
    node = _node(1, 0, act, res)
    want = run_node(node, inputs, consts)[0]
    seen = []
    real = gen.conv_kernel

    def spy(L, k, P_, S):
        f = real(L, k, P_, S)
        return lambda *a: seen.append(((L, k, P_, S), a[2], a[3], a[13], a[14])) or f(*a)
    monkeypatch.setattr(gen, "conv_kernel", spy)
    for flat in (True, False):
        monkeypatch.setattr(conv, "FLAT_1X1", flat)
        for policy in ("expanded", "packed"):
            seen.clear()
            st = cpu.OPS["Conv"].prepare(node, consts, policy)
            y = np.full_like(want, np.nan)
            cpu.OPS["Conv"].run(node, st, inputs, [y])
            np.testing.assert_allclose(y, want, rtol=2e-5, atol=2e-5)
            assert len(seen) == 1
            key, Hp, Wp, OH, OW = seen[0]
            if flat:
                assert (Hp, Wp, OH, OW) == (1, H * W, 1, H * W)
                assert key == (st.simd[0], st.simd[1], P, 1)
            else:
                assert (Hp, Wp, OH, OW) == (H, W, H, W)


# (kernel, pads (t, l, b, r), dilation, H, W) of stride-2 convs on the stride-2 tiles: odd
# and even sizes, no padding, asymmetric pads, dilation 2, a row narrower than the tiles
S2_CASES = [(1, (0, 0, 0, 0), 1, 9, 11), (3, (1, 1, 1, 1), 1, 10, 13),
            (3, (0, 1, 1, 0), 1, 9, 9), (5, (2, 2, 2, 2), 1, 7, 16), (3, (2, 2, 2, 2), 2, 8, 9),
            (3, (1, 1, 1, 1), 1, 4, 3), (7, (3, 3, 3, 3), 1, 12, 12)]


@pytest.mark.parametrize("ks,pads,dil,H,W", S2_CASES, ids=[str(c) for c in S2_CASES])
def test_stride2_geometries_match_reference(ks, pads, dil, H, W, monkeypatch):
    monkeypatch.setenv("EDGENET_SIMD", "avx512")
    rng = np.random.default_rng(H * W + ks)
    O, C = 20, 3
    consts, inputs, _ = _case(rng, 2, C, H, W, O, ks, 2, 0, True)
    OH = (H + pads[0] + pads[2] - dil * (ks - 1) - 1) // 2 + 1
    OW = (W + pads[1] + pads[3] - dil * (ks - 1) - 1) // 2 + 1
    inputs[3] = rng.uniform(-1, 1, size=(2, O, OH, OW)).astype(np.float32)
    node = _node(2, 0, "Relu", True)
    node["attrs"].update(pads=list(pads), dilations=[dil, dil])
    want = run_node(node, inputs, consts)[0]
    assert want.shape == (2, O, OH, OW)
    for policy in ("expanded", "packed"):
        st = cpu.OPS["Conv"].prepare(node, consts, policy)
        y = np.full_like(want, np.nan)
        cpu.OPS["Conv"].run(node, st, inputs, [y])
        np.testing.assert_allclose(y, want, rtol=2e-5, atol=2e-5)
        assert st.simd is not None


def test_tiles_share_one_driver():
    """Tiles of every (k, P) run on their family's one prange driver (one signature): a new
    tile compiles its body (and tile_store for a new (B, P)), never a parallel driver."""
    from edgenet.cpu import warm
    for key in ((16, 1, 4, 1), (16, 1, 1, 1), (16, 2, 8, 2)):
        warm.build_tile("conv", key)
        assert gen.kernel("conv", key).drive is gen.kernel("drive", ("f32",))
    assert len(gen.kernel("drive", ("f32",)).signatures) == 1


@pytest.mark.parametrize("OW,P", [(3, 1), (4, 4)])
def test_narrow_rows_run_k1_tiles_on_a_wider_layout(OW, P, monkeypatch):
    """O = 40 prepares a k = 3 layout (48 channels per block); rows narrower than every
    k = 3 tile run the k = 1 small tile on that layout (runtime block width WB = 48)."""
    monkeypatch.setenv("EDGENET_SIMD", "avx512")
    rng = np.random.default_rng(OW)
    consts, inputs, ow = _case(rng, 1, 6, 5, OW, 40, 3, 1, 1, True)
    assert ow == OW
    node = _node(1, 1, "Relu", True)
    want = run_node(node, inputs, consts)[0]
    for policy in ("expanded", "packed"):
        st = cpu.OPS["Conv"].prepare(node, consts, policy)
        assert st.simd == (16, 3)
        y = np.full_like(want, np.nan)
        cpu.OPS["Conv"].run(node, st, inputs, [y])
        np.testing.assert_allclose(y, want, rtol=2e-5, atol=2e-5)
    assert ("conv", (16, 1, P, 1)) in gen._KERNELS


@pytest.mark.parametrize("L,S", [(16, 1), (8, 2)])
@pytest.mark.parametrize("H,W,N", [(11, 19, 1), (23, 29, 2)])   # one copy / per-plane padding
def test_depthwise_tile_matches_reference(L, S, H, W, N, monkeypatch):
    monkeypatch.setenv("EDGENET_SIMD", "avx512" if L == 16 else "avx2")
    monkeypatch.setattr(dw_cv, "ON", False)       # the plane kernel (dw_cv: test_simd.py)
    rng = np.random.default_rng(L + S + H)
    assert (H * W >= conv.DW_PLANE_PAD) == (H > 20)
    consts, inputs, _ = _case(rng, N, 12, H, W, 12, 3, S, 1, True, group=12)
    node = _node(S, 1, "Relu", True, group=12)
    want = run_node(node, inputs, consts)[0]
    st = cpu.OPS["Conv"].prepare(node, consts, "packed")
    y = np.full_like(want, np.nan)
    cpu.OPS["Conv"].run(node, st, inputs, [y])
    np.testing.assert_allclose(y, want, rtol=2e-5, atol=2e-5)
    assert ("dw", (L, S)) in gen._KERNELS


# (kind, key, tier): the VNNI kernels and the other tiers' (qconv.family; tiers the
# process's codegen can run)
Q_KEYS = [(kind, key, t) for kind, key, t in [
    ("qconv", (1, 16, 1, "vnni"), "avx512vnni"), ("qtier", ("pm", 16, 2, 7, 2), "avx512"),
    ("qtier", ("pm", 8, 1, 4, 1), "avx2"), ("qtier", ("g", 8, 1, 4, 1), "generic")]
    if simd.rank(t) >= simd.rank(simd.codegen_tier())]


@pytest.mark.parametrize("kind,key,tier", Q_KEYS, ids=[str(k[1]) for k in Q_KEYS])
def test_qconv_tile_matches_reference(kind, key, tier, monkeypatch):
    k, P, S = (key[:3] if kind == "qconv" else key[2:])
    monkeypatch.setenv("EDGENET_SIMD", tier)
    monkeypatch.setattr(qconv, "choose_kp", lambda O_, OW_, *a: (k, P))
    rng = np.random.default_rng(k * 100 + P)
    consts, inputs, OW = _case(rng, 1, 9, 6, (P + 2) * S, 19, 3, S, 1, True)
    s, zp = quant.qparams(-1.0, 1.0)
    node = _node(S, 1, "Relu", True, aq=(float(s), zp, OW))
    want = run_node(node, inputs, consts)[0]
    st = cpu.OPS["Conv"].prepare(node, consts, "packed")
    y = np.full_like(want, np.nan)
    cpu.OPS["Conv"].run(node, st, inputs, [y])
    scale = max(float(np.abs(want).max()), 1e-6)
    assert float(np.abs(y - want).max()) <= 2e-5 * scale + 1e-6
    assert (kind, key) in gen._KERNELS


def test_every_menu_source_is_valid_python():
    """Every kernel of the menu generates, compiles as Python and fits its line range;
    names are unique (they share the generator's namespace)."""
    names = set()
    for kind, key in gen.MENU:
        name, src = gen.SOURCES[kind](*key)
        assert name not in names
        names.add(name)
        compile(src, gen.__file__, "exec")
        assert src.count("\n") < gen._LINES_PER_KERNEL
    assert len(gen.menu(16, "vnni")) < len(gen.MENU)
    with pytest.raises(KeyError, match="menu"):
        gen.kernel("conv", (16, 1, 5, 1))


def test_generated_lines_are_readable():
    """linecache serves the generated text at the kernel's lines of the generator file
    (what Numba's error messages and tracebacks print); the file's own lines are intact."""
    kern = gen.dw_kernel(8, 1)
    code = kern.py_func.__code__
    assert code.co_filename == os.path.abspath(gen.__file__)
    first = code.co_firstlineno              # the decorator's line
    assert linecache.getline(code.co_filename, first).startswith("@pjit(")
    assert linecache.getline(code.co_filename, first + 1).startswith("def dw_l8_s1(")
    with open(gen.__file__) as fh:
        assert linecache.getline(gen.__file__, 1) == fh.readline()
    linecache.checkcache(gen.__file__)       # what traceback does: the entry survives
    assert linecache.getline(code.co_filename, first + 1).startswith("def dw_l8_s1(")


def test_cache_dir_hashes_the_generator_not_its_output():
    files = [os.path.basename(f) for f in _jit._hashed_files()]
    assert "gen_simd_conv.py" in files
    assert not any(f.startswith("_simd_") for f in files)   # no committed generated output


_PROBE = r"""
import json
import numpy as np
from numba.core import event
from edgenet.cpu import gen_simd_conv as gen
kern = gen.dw_kernel(8, 2)
f, i = np.zeros(4096, np.float32), np.zeros(9, np.int64)
with event.install_recorder("numba:compile") as rec:
    kern(f, 1, 8, 8, 0, 0, 8, 8, f, f, i, f, 1, 1, 3, 3, f, False, 1, np.float32(0),
         np.float32(6), np.zeros((64, 256), np.float32), np.zeros((64, 4096), np.float32))
print(json.dumps({"hits": sum(kern._cache_hits.values()),
                  "misses": sum(kern._cache_misses.values()),
                  "compiles": sum(1 for _, e in rec.buffer if e.is_start)}))
"""


@pytest.mark.subprocess
def test_second_process_loads_from_cache(tmp_path):
    """Two fresh processes on one empty cache: the first compiles the kernel (its prange
    driver and its plane function), the second loads it and compiles nothing (Numba's
    dispatcher counts a cache hit and no miss; no compile event)."""
    env = dict(os.environ, EDGENET_CACHE_DIR=str(tmp_path), PYTHONPATH=ROOT)
    env.pop("NUMBA_CACHE_DIR", None)
    runs = []
    for _ in range(2):
        r = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True,
                           text=True, timeout=600)
        assert r.returncode == 0, r.stderr
        runs.append(json.loads(r.stdout.strip().splitlines()[-1]))
    assert runs[0]["misses"] == 1 and runs[0]["hits"] == 0 and runs[0]["compiles"] >= 2
    assert runs[1]["hits"] == 1 and runs[1]["misses"] == 0 and runs[1]["compiles"] == 0


@pytest.mark.parametrize("kind,key", [("conv", (16, 1, 4, 1)), ("dw", (16, 1)),
                                      ("qtier", ("pm", 8, 1, 4, 1))])
def test_warmup_builds_the_signature_the_runtime_calls(kind, key, monkeypatch):
    """warmup's dummy arguments have the runtime's exact types: after building a tile, a
    real layer that uses it compiles no second signature of it."""
    from edgenet.cpu import warm
    if kind == "qtier" and simd.rank(simd.codegen_tier()) > simd.rank("avx2"):
        pytest.skip("an AVX2 kernel on a CPU without AVX2")
    warm.build_tile(kind, key)
    kern = gen.kernel(kind, key)
    sigs = list(kern.signatures)
    assert len(sigs) == (1 if kind == "dw" else 2)     # tile kernels: the tile + its driver
    rng = np.random.default_rng(7)
    if kind == "conv":
        monkeypatch.setenv("EDGENET_SIMD", "avx512")
        consts, inputs, OW = _case(rng, 1, 3, 5, 6, 16, 3, 1, 1, True)
        node = _node(1, 1, "Relu", True)
    elif kind == "dw":
        monkeypatch.setenv("EDGENET_SIMD", "avx512")
        consts, inputs, OW = _case(rng, 1, 8, 9, 9, 8, 3, 1, 1, False, group=8)
        node = _node(1, 1, "Clip", False, group=8)
    else:
        monkeypatch.setenv("EDGENET_SIMD", "avx2")
        consts, inputs, OW = _case(rng, 1, 5, 5, 5, 16, 3, 1, 1, True)
        s, zp = quant.qparams(-1.0, 1.0)
        node = _node(1, 1, "Relu", True, aq=(float(s), zp, OW))
    st = cpu.OPS["Conv"].prepare(node, consts, "packed")
    want = run_node(node, inputs, consts)[0]
    y = np.full_like(want, np.nan)
    cpu.OPS["Conv"].run(node, st, inputs, [y])
    assert (kind, key) in gen._KERNELS
    np.testing.assert_allclose(y, want, rtol=1e-3, atol=1e-3 * float(np.abs(want).max()))
    assert list(kern.signatures) == sigs      # the run found the signature warmup built


def test_warmup_model_reports_progress():
    import edgenet
    from edgenet.cpu.warm import warmup
    from edgenet.io import EXAMPLE_MODEL
    m = edgenet.load(EXAMPLE_MODEL)
    calls = []
    r = warmup(m, progress=lambda d, t, lab: calls.append((d, t)))
    assert calls[0] == (0, 1) and calls[-1] == (1, 1)
    assert set(r) == {"kernels", "compiled", "seconds"}
    again = warmup(edgenet.load(EXAMPLE_MODEL), progress=False)
    assert again["compiled"] == 0


def test_compile_notice_says_what_is_happening():
    """The first compilation of a process prints one line naming the cache."""
    import io
    from edgenet._jit import CompileMonitor
    mon = CompileMonitor(stream=io.StringIO())
    mon.on_start(None)
    mon.on_start(None)           # a nested compilation: part of the first
    mon.on_end(None)
    mon.on_end(None)
    mon.on_start(None)
    mon.on_end(None)
    out = mon.stream.getvalue()
    assert out.count("\n") == 1 and "compiling kernels for this CPU" in out
    assert mon.compiled == 2


def test_compile_progress_on_a_terminal():
    """On a terminal a status line counts kernels and seconds while compiling, then clears."""
    import io
    import time
    from edgenet._jit import CompileMonitor

    class Tty(io.StringIO):
        def isatty(self):
            return True

    mon = CompileMonitor(stream=Tty())
    mon.on_start(None)
    time.sleep(0.7)
    mon.on_end(None)
    deadline = time.time() + 10
    while mon.ticker is not None and time.time() < deadline:
        time.sleep(0.1)
    out = mon.stream.getvalue()
    assert "compiling kernels for this CPU" in out and "compiling... 0 kernels" in out
    assert mon.ticker is None and out.endswith("\r\033[K")


def test_warmup_all_splits_tiles_across_processes(monkeypatch):
    """warmup() with workers: helper processes build their share of the tile menu into the
    same disk cache; every tile ends up built here, progress reaches the total."""
    from edgenet.cpu import warm
    keys = [("conv", (16, 1, 4, 1)), ("dw", (16, 1)), ("conv", (16, 1, 1, 1))]
    monkeypatch.setattr(warm, "tile_menu", lambda: keys)
    monkeypatch.setattr(warm, "generic_jobs", lambda: [])
    seen = []
    r = warm.warmup(progress=lambda d, t, lab: seen.append((d, t)), workers=2)
    assert r["kernels"] == 3 and seen[-1] == (3, 3)
    assert all(k in gen._KERNELS and gen.is_cached(*k) for k in keys)


@pytest.mark.parametrize("tier,kern,warm", [("avx512vnni", "_pw_vnni_k8", "warm_pointwise"),
                                            ("avx2", "_pw_pm8", "warm_pointwise_pm8")])
def test_warmup_builds_the_pointwise_int8_signature(tier, kern, warm, monkeypatch):
    """The 1x1 pixel-vector int8 kernels (qconv._pw_vnni_k8, qconv._pw_pm8): warmup compiles
    the signature a real layer calls (none compiled at the run), and the layer matches the
    reference."""
    from edgenet.cpu import qconv
    if simd.rank(simd.codegen_tier()) > simd.rank(tier) or (tier == "avx512vnni"
                                                           and not simd.has_vnni()):
        pytest.skip(f"no {tier}")
    monkeypatch.setenv("EDGENET_SIMD", tier)
    getattr(qconv, warm)()
    real = getattr(qconv, kern)
    sigs = list(real.signatures)
    assert len(sigs) == 1
    rng = np.random.default_rng(11)
    consts, inputs, OW = _case(rng, 1, 6, 8, 12, 20, 1, 1, 0, True)
    s, zp = quant.qparams(-1.0, 1.0)
    node = _node(1, 0, "Relu", True, aq=(float(s), zp, OW))
    st = cpu.OPS["Conv"].prepare(node, consts, "packed")
    want = run_node(node, inputs, consts)[0]
    y = np.full_like(want, np.nan)
    calls = []
    monkeypatch.setattr(qconv, kern, lambda *a: calls.append(1) or real(*a))
    cpu.OPS["Conv"].run(node, st, inputs, [y])
    assert calls == [1]                       # 8x12 = 96 pixels: the pixel-vector kernel ran
    np.testing.assert_allclose(y, want, rtol=1e-3, atol=1e-3 * float(np.abs(want).max()))
    assert list(real.signatures) == sigs      # the run found the signature warmup built


_RACE_MOD = r"""
from edgenet._jit import njit

@njit
def twice(x):
    return x + x
"""

_RACE = r"""
import json, sys, time
import numpy as np
sys.path.insert(0, sys.argv[1])
import race_mod
kinds = sys.argv[2].split(",")
go = float(sys.argv[3])
while time.time() < go:          # both processes start compiling at the same moment
    time.sleep(0.005)
out = {}
for k in kinds:
    v = race_mod.twice(np.full(2, 3, dtype=k))
    out[k] = [str(v.dtype), float(np.real(v[1]))]
hits = sum(race_mod.twice._cache_hits.values())
print(json.dumps({"out": out, "hits": hits}))
"""


@pytest.mark.subprocess
def test_concurrent_processes_keep_every_signature_in_the_cache(tmp_path):
    """Two processes add *different* signatures of one cached function at once (what
    ``warmup --all``'s helper processes do); Numba picks data-file numbers by a read-modify-
    write of the index, so without edgenet._jit's lock an entry can name the other's code.
    Oracle: a third process loads every signature from the cache (hits, no compile) and
    each returns what the process that compiled it got (result dtype and value)."""
    import time
    (tmp_path / "race_mod.py").write_text(_RACE_MOD)
    env = dict(os.environ, EDGENET_CACHE_DIR=str(tmp_path / "cache"), PYTHONPATH=ROOT,
               EDGENET_COMPILE_NOTICE="0")
    env.pop("NUMBA_CACHE_DIR", None)
    a = ["int8", "int16", "int32", "int64", "uint8", "uint16"]
    b = ["float32", "float64", "complex64", "complex128", "uint32", "uint64"]
    go = str(time.time() + 4.0)
    procs = [subprocess.Popen([sys.executable, "-c", _RACE, str(tmp_path), ",".join(k), go],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for k in (a, b)]
    first = {}
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
        first.update(json.loads(out.strip().splitlines()[-1])["out"])
    r = subprocess.run([sys.executable, "-c", _RACE, str(tmp_path), ",".join(a + b), "0"],
                       env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got["hits"] == len(a + b)
    assert got["out"] == first == {k: [k, 6.0] for k in a + b}


def test_warmup_builds_the_quantize_signatures(monkeypatch):
    """int8 activations' quantize pass (qconv._quant_rng called directly by small convs,
    _quant_par by big ones): warmup compiles the signatures a real layer calls; the layer
    matches the reference and its run compiles no new signature."""
    from edgenet.cpu import _common
    qconv.warm_quantize()
    sigs = (list(qconv._quant_rng.signatures), list(qconv._quant_par.signatures))
    assert sigs[0] and sigs[1]
    rng = np.random.default_rng(5)
    consts, inputs, OW = _case(rng, 1, 8, 6, 9, 16, 3, 1, 1, False)
    s, zp = quant.qparams(-1.0, 1.0)
    node = _node(1, 1, "Relu", False, aq=(float(s), zp, OW))
    want = run_node(node, inputs, consts)[0]
    for par_min in (1 << 62, 0):          # serial, then parallel quantize pass
        monkeypatch.setattr(_common, "PAR_MIN", par_min)
        st = cpu.OPS["Conv"].prepare(node, consts, "packed")
        y = np.full_like(want, np.nan)
        cpu.OPS["Conv"].run(node, st, inputs, [y])
        np.testing.assert_allclose(y, want, rtol=1e-3, atol=1e-3 * float(np.abs(want).max()))
    assert (list(qconv._quant_rng.signatures), list(qconv._quant_par.signatures)) == sigs
