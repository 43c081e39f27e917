"""CPU (Numba) kernels against the NumPy reference backend, both weight policies."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from edgenet import cpu
from edgenet.format import pack
from edgenet.ir import act_desc
from edgenet.reference import run_node
from edgenet.reference.cases import cases
from tests.helpers import activation_descs, special_values

POLICIES = ("expanded", "packed")
CASES = list(cases())


def _close(got, want, rtol=1e-4):
    assert got.shape == want.shape
    assert np.isnan(got).sum() == np.isnan(want).sum()
    fin = np.isfinite(want)
    np.testing.assert_array_equal(got[~fin], want[~fin])
    scale = max(float(np.abs(want[fin]).max(initial=0.0)), 1e-6)
    err = float(np.abs(got[fin] - want[fin]).max(initial=0.0))
    assert err <= rtol * scale + 1e-6, f"max err {err} (scale {scale})"


def _check(node, inputs, consts, policy, rtol=1e-4):
    want = run_node(node, inputs, consts)
    got = run_node(node, inputs, consts, policy=policy, backend=cpu.OPS)
    for g, w in zip(got, want):
        _close(g, w, rtol)


def test_every_op_has_a_kernel():
    from edgenet.reference import OPS as REF
    assert set(cpu.OPS) == set(REF)


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_reference_cases(case, policy):
    _, node, inputs, consts = case
    _check(node, inputs, consts, policy)


# ----------------------------------------------------------------------------- edge cases
def _conv_node(name, inputs, strides=(1, 1), pads=(0, 0, 0, 0), dil=(1, 1), group=1,
               act=None, op="Conv", output_padding=None):
    attrs = {"strides": list(strides), "pads": list(pads), "dilations": list(dil),
             "group": group, "activation": act}
    if op == "ConvTranspose":
        attrs["output_padding"] = list(output_padding or (0, 0))
    return {"name": name, "op": op, "inputs": inputs, "outputs": [name + ".y"], "attrs": attrs}


def _w(rng, enc, shape):
    if enc == "f32":
        return pack("f32", rng.normal(0, 0.3, size=shape).astype(np.float32))
    lim = {"t2": 1, "q3": 2, "i8": 127, "t5": 1}[enc]
    return pack(enc, rng.integers(-lim, lim + 1, size=shape),
                rng.uniform(0.05, 0.3, size=shape[0]).astype(np.float32) / lim)


CONV_EDGE = [
    # (N, C, H, W, O, kh, kw, strides, pads, dil, group)
    (1, 64, 14, 14, 64, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 1),     # tiled path, full blocks
    (2, 5, 9, 11, 21, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 1),       # O not a multiple of 16
    (1, 3, 17, 13, 8, 7, 7, (2, 2), (3, 2, 3, 1), (1, 1), 1),       # asymmetric pads
    (1, 4, 10, 10, 6, 2, 2, (3, 3), (0, 0, 0, 0), (1, 1), 1),       # stride > kernel
    (1, 4, 12, 12, 6, 3, 3, (1, 2), (2, 0, 1, 3), (2, 3), 1),       # dilation, mixed strides
    (2, 16, 7, 7, 32, 1, 1, (1, 1), (0, 0, 0, 0), (1, 1), 1),       # 1x1
    (1, 16, 8, 8, 8, 1, 1, (2, 2), (0, 0, 0, 0), (1, 1), 1),        # 1x1 strided
    (2, 12, 9, 9, 12, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 12),      # depthwise
    (1, 12, 9, 9, 24, 3, 3, (2, 2), (0, 1, 1, 0), (1, 1), 12),      # depthwise multiplier 2
    (1, 8, 6, 7, 12, 3, 1, (1, 1), (1, 0, 1, 0), (1, 1), 4),        # groups
    (3, 2, 1, 9, 4, 1, 3, (1, 1), (0, 1, 0, 1), (1, 1), 1),         # 1-D as H=1
    (1, 3, 5, 5, 4, 5, 5, (1, 1), (0, 0, 0, 0), (1, 1), 1),         # 1x1 output map
]


@pytest.mark.parametrize("enc", ["f32", "t2", "q3", "i8", "t5"])
@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("geo", CONV_EDGE, ids=[str(i) for i in range(len(CONV_EDGE))])
def test_conv_edges(geo, policy, enc):
    N, C, H, W, O, kh, kw, st, pads, dil, g = geo
    rng = np.random.default_rng(hash(geo) % 2**32)
    x = rng.uniform(-1, 1, size=(N, C, H, W)).astype(np.float32)
    consts = {"w": _w(rng, enc, (O, C // g, kh, kw)),
              "b": pack("f32", rng.normal(size=O).astype(np.float32))}
    node = _conv_node("c", ["x", "w", "b"], st, pads, dil, g, act_desc("Relu"))
    _check(node, [x, None, None], consts, policy)


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("act", ["Relu", "LeakyRelu", "Elu", "Selu", "Sigmoid", "Tanh", "Clip",
                                 "HardSigmoid", "HardSwish"])
def test_conv_residual_epilogue(act, policy):
    rng = np.random.default_rng(7)
    x = rng.uniform(-1, 1, size=(2, 16, 8, 8)).astype(np.float32)
    r = rng.uniform(-1, 1, size=(2, 24, 8, 8)).astype(np.float32)
    consts = {"w": _w(rng, "t2", (24, 16, 3, 3)),
              "b": pack("f32", rng.normal(size=24).astype(np.float32))}
    desc = act_desc(act, *((0.0, 6.0) if act == "Clip" else ()))
    node = _conv_node("c", ["x", "w", "b", "r"], (1, 1), (1, 1, 1, 1), act=desc)
    _check(node, [x, None, None, r], consts, policy)
    node = _conv_node("c", ["x", "w", "", "r"], (1, 1), (1, 1, 1, 1), act=desc)
    _check(node, [x, None, None, r], consts, policy)


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("geo", [
    (1, 4, 5, 5, 6, 3, 3, (2, 2), (1, 1, 1, 1), (1, 1), 1, (1, 1)),
    (2, 6, 4, 3, 4, 4, 4, (2, 2), (1, 0, 2, 1), (1, 1), 2, (0, 1)),
    (1, 3, 3, 3, 3, 3, 3, (1, 1), (0, 0, 0, 0), (2, 2), 3, (0, 0)),
    (1, 2, 4, 4, 2, 2, 2, (3, 3), (0, 0, 0, 0), (1, 1), 1, (2, 2)),
])
def test_conv_transpose_edges(geo, policy):
    N, C, H, W, O, kh, kw, st, pads, dil, g, op = geo
    rng = np.random.default_rng(3)
    x = rng.uniform(-1, 1, size=(N, C, H, W)).astype(np.float32)
    consts = {"w": _w(rng, "q3", (O, C // g, kh, kw)),
              "b": pack("f32", rng.normal(size=O).astype(np.float32))}
    node = _conv_node("ct", ["x", "w", "b"], st, pads, dil, g, act_desc("LeakyRelu"),
                      op="ConvTranspose", output_padding=op)
    _check(node, [x, None, None], consts, policy)


@pytest.mark.parametrize("policy", POLICIES)
def test_gemm_batch_and_encodings(policy):
    rng = np.random.default_rng(11)
    for enc in ("f32", "t2", "q3", "i8"):
        x = rng.uniform(-1, 1, size=(5, 37)).astype(np.float32)
        consts = {"w": _w(rng, enc, (19, 37)), "b": pack("f32", rng.normal(size=19).astype(np.float32))}
        node = {"name": "g", "op": "Gemm", "inputs": ["x", "w", "b"], "outputs": ["y"],
                "attrs": {"activation": act_desc("Tanh")}}
        _check(node, [x, None, None], consts, policy)


def test_binary_broadcast_shapes():
    rng = np.random.default_rng(5)
    shapes = [((2, 3, 4, 5), (1, 3, 1, 1)), ((2, 3, 4, 5), (5,)), ((4, 1), (3,)),
              ((1,), (2, 3, 4)), ((2, 1, 4, 1), (1, 3, 1, 5)), ((2, 3, 4, 5), (2, 3, 4, 5))]
    for op in ("Add", "Sub", "Mul", "Div"):
        for sa, sb in shapes:
            a = rng.uniform(0.5, 2, size=sa).astype(np.float32)
            b = rng.uniform(0.5, 2, size=sb).astype(np.float32)
            node = {"name": "e", "op": op, "inputs": ["a", "b"], "outputs": ["y"],
                    "attrs": {"activation": act_desc("Relu")}}
            _check(node, [a, b], {}, "expanded")
            consts = {"b": pack("f32", b)}
            _check(node, [a, None], consts, "packed")


def test_concurrent_python_threads():
    """One prepared node run from several Python threads at once (packed scratch)."""
    rng = np.random.default_rng(9)
    x = rng.uniform(-1, 1, size=(1, 8, 12, 12)).astype(np.float32)
    consts = {"w": _w(rng, "t2", (16, 8, 3, 3)), "b": pack("f32", np.zeros(16, np.float32))}
    node = _conv_node("c", ["x", "w", "b"], pads=(1, 1, 1, 1))
    want = run_node(node, [x, None, None], consts)[0]
    for policy in POLICIES:
        impl = cpu.OPS["Conv"]
        st = impl.prepare(node, consts, policy)
        errs = []

        def work():
            y = np.empty_like(want)
            for _ in range(20):
                impl.run(node, st, [x, None, None], [y])
                if not np.allclose(y, want, rtol=1e-4, atol=1e-4):
                    errs.append(1)
        ts = [threading.Thread(target=work) for _ in range(4)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        assert not errs


def test_packed_keeps_codes():
    rng = np.random.default_rng(1)
    consts = {"w": _w(rng, "t2", (64, 64, 3, 3)), "b": pack("f32", np.zeros(64, np.float32))}
    node = _conv_node("c", ["x", "w", "b"], pads=(1, 1, 1, 1))
    st = cpu.OPS["Conv"].prepare(node, consts, "packed")
    assert st["w"].packed and st["w"].nbytes < 64 * 64 * 9


# ----------------------------------------------------------------------------- serial/parallel
_VARIANT_OPS = {"MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "Act", "Affine",
                "PRelu", "Add", "Sub", "Mul", "Div", "Gemm", "Concat"}
VARIANT_CASES = [c for c in CASES if c[1]["op"] in _VARIANT_OPS]


@pytest.mark.parametrize("variant", ["serial", "parallel"])
@pytest.mark.parametrize("case", VARIANT_CASES, ids=[c[0] for c in VARIANT_CASES])
def test_serial_and_parallel_variants(case, variant, monkeypatch):
    """Every kernel with a serial and a parallel variant (chosen by work size) is exercised
    both ways: PAR_MIN 0 forces the parallel one, a huge PAR_MIN the serial one."""
    from edgenet.cpu import _common
    monkeypatch.setattr(_common, "PAR_MIN", 0 if variant == "parallel" else 1 << 62)
    _, node, inputs, consts = case
    for policy in POLICIES:
        _check(node, inputs, consts, policy)


@pytest.mark.parametrize("variant", ["serial", "parallel"])
def test_large_pool_and_elementwise_variants(variant, monkeypatch):
    """Shapes large enough for multi-chunk loops (rows > SUB, planes > threads, NaN in max)."""
    from edgenet.cpu import _common
    monkeypatch.setattr(_common, "PAR_MIN", 0 if variant == "parallel" else 1 << 62)
    rng = np.random.default_rng(21)
    x = rng.normal(size=(2, 5, 37, 41)).astype(np.float32)
    x[0, 1, 3, 4] = np.nan
    # (rows of 21 / 40 outputs: the 16-lane vector loops and their scalar tails)
    for op, k, s, p, cip, d in [("MaxPool", 3, 2, 1, None, 1), ("AveragePool", 3, 2, 1, 0, 1),
                                ("AveragePool", 2, 1, 0, 1, 1), ("MaxPool", 2, 2, 0, None, 1),
                                ("MaxPool", 3, 2, 2, None, 2), ("MaxPool", 3, 1, 1, None, 1)]:
        attrs = {"kernel": [k, k], "strides": [s, s], "pads": [p] * 4, "ceil_mode": 0}
        if op == "MaxPool":
            attrs["dilations"] = [d, d]
        else:
            attrs["count_include_pad"] = cip
        node = {"name": "p", "op": op, "inputs": ["x"], "outputs": ["y"], "attrs": attrs}
        _check(node, [x], {}, "expanded")
    big = rng.normal(size=(1, 3, 70, 90)).astype(np.float32)
    for act in ["Relu", "Clip", "Sigmoid", None]:
        desc = act_desc(act, *((0.0, 6.0) if act == "Clip" else ())) if act else None
        node = {"name": "a", "op": "Add", "inputs": ["a", "b"], "outputs": ["y"],
                "attrs": {"activation": desc}}
        _check(node, [big, big[:, ::-1].copy()], {}, "expanded")
        node = {"name": "f", "op": "Affine", "inputs": ["x", "s", "t"], "outputs": ["y"],
                "attrs": {"activation": desc}}
        _check(node, [big, None, None], {"s": pack("f32", rng.normal(size=3).astype(np.float32)),
                                         "t": pack("f32", rng.normal(size=3).astype(np.float32))},
               "expanded")
    node = {"name": "g", "op": "GlobalAveragePool", "inputs": ["x"], "outputs": ["y"], "attrs": {}}
    _check(node, [big], {}, "expanded")


@pytest.mark.parametrize("W", [31, 32, 33, 34, 63, 66, 112])
@pytest.mark.parametrize("pad", [0, 1])
def test_maxpool_3x3s2_register_rows(W, pad, monkeypatch):
    """MaxPool 3 x 3 / 2 on the x86 tiers takes its window maxima from registers
    (pool._pool_planes mode 2: masked loads, even / odd / next-even lanes, a last vector
    overlapping the one before): the row-buffer kernel's outputs bit for bit and the
    reference's, with NaN and -inf at the row ends and inside, H odd and even, rows of
    15 (the row-buffer kernel), 16, 17, 32 and 56 outputs."""
    from edgenet.cpu import pool
    rng = np.random.default_rng(W * 3 + pad)
    x = rng.normal(size=(1, 3, W - 2 * pad + 1, W)).astype(np.float32)
    x[0, 0, 2, 0] = np.nan
    x[0, 0, 5, W - 1] = np.nan
    x[0, 1, 0, 17] = np.nan
    x[0, 1, 4, :] = -np.inf
    x[0, 2, :, W // 2] = np.inf
    node = {"name": "p", "op": "MaxPool", "inputs": ["x"], "outputs": ["y"],
            "attrs": {"kernel": [3, 3], "strides": [2, 2], "pads": [pad] * 4,
                      "ceil_mode": 0}}
    want = run_node(node, [x], {})[0]
    assert pool._mode(True) == (2 if pool.simd.simd_mode() in ("avx512vnni", "avx512", "avx2")
                                else 1)
    got = run_node(node, [x], {}, policy="expanded", backend=cpu.OPS)[0]
    monkeypatch.setattr(pool, "POOL3_ON", False)
    rows = run_node(node, [x], {}, policy="expanded", backend=cpu.OPS)[0]
    np.testing.assert_array_equal(got, rows)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("desc", activation_descs(), ids=lambda d: d["kind"])
def test_activations_nan_and_infinities(desc):
    """Every activation, standalone and fused, on NaN / ±inf / ±0 / kinks: NaN stays NaN
    (NumPy's and onnxruntime's rule) and the rest matches the reference."""
    x = special_values()
    node = {"name": "a", "op": "Act", "inputs": ["x"], "outputs": ["y"],
            "attrs": {"activation": desc}}
    want = run_node(node, [x], {})[0]
    assert np.isnan(want[np.isnan(x)]).all()
    _close(run_node(node, [x], {}, backend=cpu.OPS)[0], want, rtol=2e-6)
    add = {"name": "f", "op": "Add", "inputs": ["a", "b"], "outputs": ["y"],
           "attrs": {"activation": desc}}
    z = np.zeros_like(x)
    _close(run_node(add, [x, z], {}, backend=cpu.OPS)[0], run_node(add, [x, z], {})[0],
           rtol=2e-6)
