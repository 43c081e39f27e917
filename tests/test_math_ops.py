"""Unary / BinaryMath / Reduce (edgenet/shapes_math.py): the CPU kernels against the NumPy
reference (edgenet/reference/math_ops.py), the reference against onnxruntime, and the ONNX
ops that map onto them (Reduce*, Pow, Sqrt, Erf, Sum/Mean/Max/Min, LayerNormalization and
the ReduceMean/Sub/Pow/Sqrt/Div pattern exporters emit, InstanceNormalization, LogSoftmax,
Gemm with a matrix C, PRelu with a broadcast slope) converted and run against onnxruntime.
(ONNX's own node tests for them: tests/test_onnx_conformance.py.)"""
from __future__ import annotations

import numpy as np
import pytest

from edgenet import cpu
from edgenet.reference import OPS as REF
from edgenet.reference.math_ops import binary_np, reduce_np, unary_np
from edgenet.shapes_math import BINARY_FNS, REDUCE_FNS, UNARY_FNS


def _run(ops, node, inputs, out_shape, consts=None):
    impl = ops[node["op"]]
    state = impl.prepare(node, consts or {}, "expanded")
    y = np.empty(out_shape, np.float32)
    impl.run(node, state, inputs, [y])
    return y


def _x(shape, seed=0, positive=False):
    x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32) * 2
    return np.abs(x) + 0.1 if positive else x


@pytest.mark.parametrize("fn", UNARY_FNS)
def test_unary_cpu_matches_reference(fn):
    x = _x((2, 3, 5, 7), positive=fn in ("sqrt", "log"))
    x.reshape(-1)[:4] = [0.0, -0.0, 30.0, -30.0] if fn not in ("sqrt", "log") else [4, 1, 9, .5]
    node = {"name": "u", "op": "Unary", "inputs": ["x"], "outputs": ["y"], "attrs": {"fn": fn}}
    want = unary_np(fn, x)
    got = _run(cpu.OPS, node, [x], x.shape)
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-6)
    np.testing.assert_allclose(_run(REF, node, [x], x.shape), want, rtol=0, atol=0)


def test_unary_special_values_follow_numpy():
    x = np.array([np.nan, np.inf, -np.inf, 0.0, -1.0], np.float32)
    for fn in ("sqrt", "log", "reciprocal", "exp", "abs", "neg"):
        node = {"name": "u", "op": "Unary", "inputs": ["x"], "outputs": ["y"],
                "attrs": {"fn": fn}}
        np.testing.assert_array_equal(_run(cpu.OPS, node, [x], x.shape), unary_np(fn, x))


def test_exp_op_kernel_ulp_sweep():
    """The Exp op's own float32 exp (math_ops._exp_fast) against float64 NumPy: <= 1.5 ulp
    where e**x >= 2**-125 (normal), absolutely within 2e-38 below (flushed to 0 past
    -87.34), inf / 0 / NaN exactly as NumPy; through the op's kernel loop."""
    from edgenet.cpu import math_ops as M
    special = [0, -0.0, 1e-40, -1e-40, 1e-30, 88.7, 88.72283, 88.72284, 88.7229, 88.8, 89.5,
               1e30, -87.5, -104.5, -1e30, np.inf, -np.inf, np.nan, -np.nan, 3e38, -3e38]
    # the special values both in the vectorized body (first) and in the scalar tail (last)
    x = np.concatenate([special * 16, np.linspace(-110, 100, 400001), _x(20000, seed=3) * 3,
                        special])
    x = x.astype(np.float32)
    y = np.empty_like(x)
    M._unary_rng(x, y, 0, x.size, 3)
    with np.errstate(all="ignore"):
        r = np.exp(x.astype(np.float64))
    r32 = r.astype(np.float32)
    special = ~np.isfinite(r32)
    np.testing.assert_array_equal(y[special], r32[special])
    ok = np.isfinite(r32) & (r32 >= np.float32(2.0 ** -125))
    ulp = np.abs(y[ok] - r[ok]) / np.spacing(r32[ok]).astype(np.float64)
    assert ulp.max() <= 1.5, (float(ulp.max()), x[ok][np.argmax(ulp)])
    tiny = np.isfinite(r32) & ~ok
    assert tiny.sum() > 1000 and np.all(np.abs(y[tiny] - r[tiny]) <= 2e-38)
    assert np.all(y[~np.isnan(x)] >= 0)


def test_unary_parallel_path(monkeypatch):
    """The chunked parallel loop (several CHUNKs, a ragged last one) gives the serial
    loop's values; the polynomial functions weigh more than Neg toward the threshold."""
    import numba

    from edgenet.cpu import _common
    from edgenet.cpu import math_ops as M
    monkeypatch.setattr(_common, "PAR_MIN", 2 * M.CHUNK * M.UNARY_PAR_WEIGHT)
    x = _x(2 * M.CHUNK + 777, 11)
    x[5:8] = [np.nan, np.inf, -np.inf]
    calls, par = [], M._unary_par
    monkeypatch.setattr(M, "_unary_par", lambda x, y, fn: (calls.append(fn), par(x, y, fn)))
    for fn in ("exp", "neg"):
        node = {"name": "u", "op": "Unary", "inputs": ["x"], "outputs": ["y"],
                "attrs": {"fn": fn}}
        want = np.empty_like(x)
        M._unary_rng(x, want, 0, x.size, M.UNARY_CODE[fn])
        np.testing.assert_array_equal(_run(cpu.OPS, node, [x], x.shape), want)
    if numba.get_num_threads() > 1:
        assert calls == [M.UNARY_CODE["exp"]]     # Neg of the same size stays serial


@pytest.mark.parametrize("fn", BINARY_FNS)
@pytest.mark.parametrize("sa,sb", [((2, 3, 4), (2, 3, 4)), ((2, 3, 4), (3, 1)),
                                   ((1, 4), (3, 1)), ((2, 3, 4), ()),
                                   # rows of >= 16 (the row kernel): a or b broadcast
                                   # along the rows, along the inner axis, or both
                                   ((2, 3, 20), (3, 1)), ((4, 1), (1, 20)), ((3, 40), (40,)),
                                   ((1, 17), (5, 1)), ((2, 1, 16), (2, 3, 1)), ((18,), ())])
def test_binary_cpu_matches_reference(fn, sa, sb):
    a, b = _x(sa, 1, positive=fn == "pow"), _x(sb, 2)
    if fn == "pow":
        b = np.round(b).astype(np.float32)
    out = np.broadcast_shapes(sa, sb)
    node = {"name": "b", "op": "BinaryMath", "inputs": ["a", "b"], "outputs": ["y"],
            "attrs": {"fn": fn}}
    want = binary_np(fn, a, b)
    np.testing.assert_allclose(_run(cpu.OPS, node, [a, b], out), want, rtol=2e-6)
    # b as a stored constant
    from edgenet.format import pack
    consts = {"b": pack("f32", b.reshape(b.shape or (1,)) if b.ndim else b.reshape(()), None)} \
        if b.ndim else None
    if consts:
        np.testing.assert_allclose(_run(cpu.OPS, node, [a, None], out, consts), want,
                                   rtol=2e-6)


def test_binary_nan_propagates():
    a = np.array([np.nan, 1.0, 2.0], np.float32)
    b = np.array([0.0, np.nan, 1.0], np.float32)
    for fn in ("max", "min"):
        node = {"name": "b", "op": "BinaryMath", "inputs": ["a", "b"], "outputs": ["y"],
                "attrs": {"fn": fn}}
        np.testing.assert_array_equal(_run(cpu.OPS, node, [a, b], (3,)), binary_np(fn, a, b))
        # the row kernel: full rows, a broadcast row value, a broadcast NaN
        a2, b2 = np.tile(a, 7).reshape(1, 21), np.tile(b, 7).reshape(1, 21)
        for x, y in ((a2, b2), (a2, b[:, None]), (a[:, None], b2)):
            out = np.broadcast_shapes(x.shape, y.shape)
            np.testing.assert_array_equal(_run(cpu.OPS, node, [x, y], out),
                                          binary_np(fn, x, y))


@pytest.mark.parametrize("fn", REDUCE_FNS)
@pytest.mark.parametrize("axes", [[3], [1], [2, 3], [0, 2], [1, 3], [0, 1, 2, 3]])
@pytest.mark.parametrize("keep", [0, 1])
def test_reduce_cpu_matches_reference(fn, axes, keep):
    x = _x((2, 3, 4, 5), 3, positive=fn in ("logsum", "prod"))
    if fn == "prod":
        x = (0.8 + 0.4 * np.abs(np.sin(x))).astype(np.float32)
    node = {"name": "r", "op": "Reduce", "inputs": ["x"], "outputs": ["y"],
            "attrs": {"fn": fn, "axes": axes, "keepdims": keep}}
    want = reduce_np(fn, x, axes, keep)
    np.testing.assert_allclose(_run(cpu.OPS, node, [x], want.shape), want, rtol=2e-5,
                               atol=1e-6)


def test_reduce_nan_inf_and_long_rows():
    """NaN propagates through max / min / logsumexp over an inner and an outer axis; inf
    and -inf as NumPy; a contiguous sum longer than one float32 block (512) and a row of
    mixed magnitudes stay within 2e-5 of the float64 reference."""
    x = _x((3, 6, 40), 7)
    x[0, 2, 5] = np.nan
    x[1, 4, 9] = np.inf
    x[2, 1, 3] = -np.inf
    for fn in ("max", "min", "logsumexp", "mean", "sum", "sumsquare", "l1", "l2"):
        for axes in ([1], [2]):
            node = {"name": "r", "op": "Reduce", "inputs": ["x"], "outputs": ["y"],
                    "attrs": {"fn": fn, "axes": axes, "keepdims": 0}}
            want = reduce_np(fn, x, axes, 0)
            with np.errstate(all="ignore"):
                got = _run(cpu.OPS, node, [x], want.shape)
            np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-6, err_msg=f"{fn} {axes}")
    x = (_x((2, 1500), 8) * np.float32(1e3) + np.float32(7)).astype(np.float32)
    x[:, ::97] = np.float32(1e-3)
    for fn in ("mean", "sum", "sumsquare"):
        node = {"name": "r", "op": "Reduce", "inputs": ["x"], "outputs": ["y"],
                "attrs": {"fn": fn, "axes": [1], "keepdims": 0}}
        want = reduce_np(fn, x, [1], 0)
        np.testing.assert_allclose(_run(cpu.OPS, node, [x], want.shape), want, rtol=2e-5)


def test_reduce_outer_axis_sums_long():
    """Sums over a non-innermost axis longer than the float32 block (64 rows): float32
    within a block, float64 across; within 2e-6 of the float64 reference, for a shifted
    input (mean 7) whose float32 running sum would drift further without the blocks."""
    from edgenet.cpu import math_ops as M
    x = (_x((2, 3 * M._OUTER_BLOCK + 5, 33), 12) + np.float32(7)).astype(np.float32)
    for fn in ("mean", "sum", "sumsquare", "l1", "l2", "logsum"):
        for axes in ([1], [0, 1]):
            node = {"name": "r", "op": "Reduce", "inputs": ["x"], "outputs": ["y"],
                    "attrs": {"fn": fn, "axes": axes, "keepdims": 1}}
            want = reduce_np(fn, x, axes, 1)
            np.testing.assert_allclose(_run(cpu.OPS, node, [x], want.shape), want, rtol=2e-6,
                                       err_msg=f"{fn} {axes}")


def test_reduce_parallel_path(monkeypatch):
    from edgenet.cpu import _common
    monkeypatch.setattr(_common, "PAR_MIN", 0)
    monkeypatch.setattr(_common, "use_parallel", lambda work: True)
    x = _x((130, 6, 7), 4)
    for fn in ("mean", "max", "logsumexp", "sumsquare"):
        node = {"name": "r", "op": "Reduce", "inputs": ["x"], "outputs": ["y"],
                "attrs": {"fn": fn, "axes": [1], "keepdims": 0}}
        np.testing.assert_allclose(_run(cpu.OPS, node, [x], (130, 7)),
                                   reduce_np(fn, x, [1], 0), rtol=2e-5, atol=1e-6)


# ----------------------------------------------------------------------------- ONNX graphs
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto as T  # noqa: E402
from onnx import helper as h  # noqa: E402
from onnx import numpy_helper as nh  # noqa: E402


def _graph(nodes, x_shape, inits=(), opset=17):
    g = h.make_graph(nodes, "g", [h.make_tensor_value_info("x", T.FLOAT, list(x_shape))],
                     [h.make_tensor_value_info("y", T.FLOAT, None)],
                     initializer=[nh.from_array(v, k) for k, v in dict(inits).items()])
    return h.make_model(g, opset_imports=[h.make_opsetid("", opset)])


def _layernorm_pattern(extra=False):
    """What torch / paddle exporters emit for LayerNorm over the last axis. ``extra``: the
    mean is also used outside the chain (so it must not be fused)."""
    c = {"two": np.array(2.0, np.float32), "eps": np.array(1e-5, np.float32),
         "g": _x((8,), 5), "b": _x((8,), 6)}
    tail = [h.make_node("Add", ["ng", "b"], ["yb"]), h.make_node("Add", ["yb", "m"], ["y"])] \
        if extra else [h.make_node("Add", ["ng", "b"], ["y"])]
    nodes = [h.make_node("ReduceMean", ["x"], ["m"], axes=[-1]),
             h.make_node("Sub", ["x", "m"], ["d"]),
             h.make_node("Pow", ["d", "two"], ["p"]),
             h.make_node("ReduceMean", ["p"], ["v"], axes=[-1]),
             h.make_node("Add", ["v", "eps"], ["ve"]),
             h.make_node("Sqrt", ["ve"], ["s"]),
             h.make_node("Div", ["d", "s"], ["n"]),
             h.make_node("Mul", ["n", "g"], ["ng"])] + tail
    return _graph(nodes, ["N", 5, 8], c, opset=13)


GRAPHS = {
    "layernorm_pattern": (_layernorm_pattern, (2, 5, 8)),
    "layernorm_pattern_mean_reused": (lambda: _layernorm_pattern(extra=True), (2, 5, 8)),
    "layernorm_op_last": (lambda: _graph(
        [h.make_node("LayerNormalization", ["x", "g", "b"], ["y"], axis=-1, epsilon=1e-3)],
        ["N", 3, 16], {"g": _x((16,), 16), "b": _x((16,), 17)}, opset=17), (2, 3, 16)),
    "layernorm_op": (lambda: _graph(
        [h.make_node("LayerNormalization", ["x", "g", "b"], ["y"], axis=-2)],
        ["N", 3, 4, 6], {"g": _x((4, 6), 7), "b": _x((4, 6), 8)}), (2, 3, 4, 6)),
    "instancenorm": (lambda: _graph(
        [h.make_node("InstanceNormalization", ["x", "s", "b"], ["y"], epsilon=1e-3)],
        ["N", 4, "H", "W"], {"s": _x((4,), 9), "b": _x((4,), 10)}), (2, 4, 6, 5)),
    "logsoftmax_op11": (lambda: _graph(
        [h.make_node("LogSoftmax", ["x"], ["y"], axis=1)], ["N", 3, 4], opset=11), (2, 3, 4)),
    "reduce_l2_sum13": (lambda: _graph(
        [h.make_node("ReduceL2", ["x"], ["r"], axes=[2, 3], keepdims=1),
         h.make_node("ReduceSum", ["x", "ax"], ["s"], keepdims=1),
         h.make_node("Add", ["r", "s"], ["y"])], ["N", 3, 4, 5],
        {"ax": np.array([2, 3], np.int64)}, opset=13), (2, 3, 4, 5)),
    "variadic": (lambda: _graph(
        [h.make_node("Exp", ["x"], ["e"]), h.make_node("Neg", ["x"], ["n"]),
         h.make_node("Sum", ["x", "e", "c"], ["s"]),
         h.make_node("Max", ["s", "n", "c"], ["mx"]),
         h.make_node("Min", ["mx", "e"], ["mn"]),
         h.make_node("Mean", ["mn", "x", "c"], ["y"])], ["N", 3, 4],
        {"c": _x((3, 1), 11)}), (2, 3, 4)),
    "gelu_erf_softplus_mish": (lambda: _graph(
        [h.make_node("Erf", ["x"], ["e"]), h.make_node("Softplus", ["e"], ["s"]),
         h.make_node("Mish", ["s"], ["m"]), h.make_node("Reciprocal", ["m"], ["r"]),
         h.make_node("Log", ["r"], ["l"]), h.make_node("Abs", ["l"], ["y"])],
        ["N", 6], opset=18), (3, 6)),
    "pow_general": (lambda: _graph(
        [h.make_node("Abs", ["x"], ["a"]), h.make_node("Pow", ["a", "e"], ["y"])],
        ["N", 4], {"e": np.array([0.5, 1.5, 3.0, -0.5], np.float32)}), (3, 4)),
    "gemm_matrix_c": (lambda: _graph(
        [h.make_node("Gemm", ["x", "w", "c"], ["y"], alpha=0.5, beta=2.0)], [3, 4],
        {"w": _x((4, 5), 12), "c": _x((3, 5), 13)}), (3, 4)),
    "lrn_dynamic": (lambda: _graph(
        [h.make_node("LRN", ["x"], ["y"], size=5, alpha=1e-2, beta=0.75, bias=2.0)],
        ["N", 7, "H", "W"]), (2, 7, 5, 6)),
    "lrn_sum_op7_alexnet_style": (lambda: _graph(
        [h.make_node("Relu", ["x"], ["r"]), h.make_node("LRN", ["r"], ["l"], size=3),
         h.make_node("Sum", ["l", "x", "r"], ["y"])], [1, 4, 6, 6], opset=7), (1, 4, 6, 6)),
    "prelu_broadcast": (lambda: _graph(
        [h.make_node("PRelu", ["x", "s"], ["y"])], ["N", 3, 4], {"s": _x((4,), 14)}),
        (2, 3, 4)),
}


@pytest.mark.parametrize("name", sorted(GRAPHS))
@pytest.mark.parametrize("device", ["cpu", "reference"])
def test_onnx_graph_matches_onnxruntime(name, device, tmp_path):
    import edgenet
    from converters.convert import convert
    make, shape = GRAPHS[name]
    src, dst = str(tmp_path / "m.onnx"), str(tmp_path / "m.edgenet")
    onnx.save(make(), src)
    convert(src, dst, weights="f32")
    x = _x(shape, 15)
    want = ort.InferenceSession(src, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    got = edgenet.load(dst, device=device)(x)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * max(1, np.abs(want).max()))


@pytest.mark.parametrize("axis", [1, 0])
@pytest.mark.parametrize("device", ["cpu", "reference"])
def test_logsumexp_of_inf_and_nan_matches_onnxruntime(axis, device, tmp_path):
    """ReduceLogSumExp of sets with +inf (inf), only -inf (-inf: ln 0), NaN (NaN), both
    infinities (inf), 1e30: onnxruntime's answers, which are ln Σeˣ's; onnx.reference agrees
    except for the all -inf set (NaN, from -inf + inf). Over the inner and an outer axis."""
    import edgenet
    from converters.convert import convert
    from onnx.reference import ReferenceEvaluator
    inf, nan = np.inf, np.nan
    rows = np.array([[1, inf, 2, 0], [1, -inf, 2, 0], [-inf, -inf, -inf, -inf],
                     [nan, 1, 2, 0], [inf, nan, 1, 0], [-inf, inf, 0, 0], [1e30, 1e30, 0, 0],
                     [0.5, -1, 2, 3]], np.float32)
    x = rows if axis == 1 else np.ascontiguousarray(rows.T)
    model = _graph([h.make_node("ReduceLogSumExp", ["x"], ["y"], axes=[axis], keepdims=0)],
                   list(x.shape), opset=13)
    src, dst = str(tmp_path / "m.onnx"), str(tmp_path / "m.edgenet")
    onnx.save(model, src)
    convert(src, dst, weights="f32")
    want = ort.InferenceSession(src, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_array_equal(want[[0, 2, 3, 5]], [inf, -inf, nan, inf])
    with np.errstate(all="ignore"):
        onnx_ref = ReferenceEvaluator(model).run(None, {"x": x})[0]
        got = edgenet.load(dst, device=device)(x)
    keep = np.arange(len(rows)) != 2
    np.testing.assert_allclose(onnx_ref[keep], want[keep], rtol=1e-6)
    np.testing.assert_allclose(got, want, rtol=1e-6)


@pytest.mark.parametrize("name, fused", [("layernorm_pattern", True), ("layernorm_op", True),
                                         ("layernorm_op_last", True),
                                         ("layernorm_pattern_mean_reused", False)])
def test_layernorm_chain_becomes_one_node(name, fused, tmp_path):
    """The exported 9-node chain and ONNX LayerNormalization convert to one LayerNorm IR
    node; a chain whose mean is used elsewhere keeps its pieces."""
    import edgenet
    from converters.convert import convert
    src, dst = str(tmp_path / "m.onnx"), str(tmp_path / "m.edgenet")
    onnx.save(GRAPHS[name][0](), src)
    convert(src, dst, weights="f32")
    ops = [nd["op"] for nd in edgenet.load(dst, device="reference").graph["nodes"]]
    if fused:
        assert ops == ["LayerNorm"], ops
    else:
        assert "LayerNorm" not in ops and ops.count("Reduce") == 2, ops


def test_layernorm_cpu_parallel_matches_reference(monkeypatch):
    """The row-parallel CPU path against the NumPy oracle (offset mean, 2 x 37 x 50 rows)."""
    from edgenet.cpu import _common
    from edgenet.cpu import math_ops as M
    from edgenet.reference.math_ops import layernorm_np
    monkeypatch.setattr(_common, "use_parallel", lambda work: True)
    x = _x((2, 37, 50), 18) * 3 + 100
    s, b = _x((50,), 19), _x((50,), 20)
    node = {"name": "ln", "op": "LayerNorm", "inputs": ["x", "s", "b"], "outputs": ["y"],
            "attrs": {"axis": 2, "epsilon": 1e-5}}
    impl = M.MATH_OPS["LayerNorm"]
    st = impl.prepare(node, {"s": s, "b": b}, "expanded")
    y = np.empty_like(x)
    impl.run(node, st, [x, None, None], [y])
    np.testing.assert_allclose(y, layernorm_np(x, s, b, 2, 1e-5), rtol=1e-5, atol=2e-5)


# ---- the float32 polynomials (edgenet/activation.py) against float64 NumPy, ulp by ulp ----
import math  # noqa: E402

_F64 = {
    "exp": (np.exp, 1.5), "log": (np.log, 1.5), "tanh": (np.tanh, 2.0),
    "sigmoid": (lambda z: 1 / (1 + np.exp(-z)), 3.0),
    "erf": (np.vectorize(math.erf), 6.0),
    "softplus": (lambda z: np.logaddexp(0, z), 3.0),
    "mish": (lambda z: z * np.tanh(np.logaddexp(0, z)), 5.0),
    "silu": (lambda z: z / (1 + np.exp(-z)), 4.0),
}


@pytest.mark.parametrize("name", sorted(_F64))
def test_float32_math_ulp_sweep(name):
    from numba import njit
    from edgenet import activation as A
    f = getattr(A, f"{name}_f32")
    ref, bound = _F64[name]

    @njit(fastmath={"contract", "arcp", "nsz"}, error_model="numpy")
    def run(x, y):
        for i in range(x.size):
            y[i] = f(x[i])

    x = np.concatenate([np.linspace(-110, 100, 40001), _x(20000, seed=3) * 3,
                        [0, -0.0, 1e-40, -1e-40, 1e-30, 88.7, 88.8, -87.5, -104.5,
                         np.inf, -np.inf, np.nan]]).astype(np.float32)
    if name == "log":
        x = np.concatenate([np.abs(x), [-1.0, -np.inf, 0.0]]).astype(np.float32)
    y = np.empty_like(x)
    run(x, y)
    with np.errstate(all="ignore"):
        r = ref(x.astype(np.float64))
        r32 = r.astype(np.float32)
    same_special = ~np.isfinite(r32)
    np.testing.assert_array_equal(y[same_special], r32[same_special])   # NaN, ±inf as NumPy
    ok = np.isfinite(r32) & (np.abs(r32) >= np.float32(1e-30))
    ulp = np.abs(y[ok] - r[ok]) / np.spacing(np.abs(r32[ok])).astype(np.float64)
    assert ulp.max() <= bound, (name, float(ulp.max()), x[ok][np.argmax(ulp)])
    tiny = np.isfinite(r32) & ~ok       # results near / below the denormals: absolutely close
    assert np.all(np.abs(y[tiny] - r[tiny]) <= 1e-37), (name, float(np.abs(y[tiny] - r[tiny]).max()))


def test_binary_rows_parallel_chunks(monkeypatch):
    # the row kernel split in several parallel chunks (rows_per < rows), uneven last chunk
    from edgenet.cpu import _common
    monkeypatch.setattr(_common, "use_parallel", lambda work: True)
    a, b = _x((40, 1000), 3), _x((40, 1), 4)
    for fn in ("max", "min", "pow"):
        x = np.abs(a) + 0.1 if fn == "pow" else a
        node = {"name": "b", "op": "BinaryMath", "inputs": ["a", "b"], "outputs": ["y"],
                "attrs": {"fn": fn}}
        np.testing.assert_allclose(_run(cpu.OPS, node, [x, b], (40, 1000)),
                                   binary_np(fn, x, b), rtol=2e-6)


@pytest.mark.parametrize("e", [2.0, 0.5, 0.75])
def test_pow_scalar_fast_exponents(e):
    # Pow by a broadcast 2 / 0.5 / 0.75 (the row kernel's fast loops) against NumPy's pow,
    # with zeros, negatives (NaN unless e == 2), infinities and NaN
    a = np.concatenate([_x((40,), 5) * 10, np.abs(_x((40,), 6)) * 1e-3,
                        np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e30, 1e-30], np.float32)])
    a = a.reshape(1, -1).astype(np.float32)
    b = np.array([e], np.float32)
    node = {"name": "b", "op": "BinaryMath", "inputs": ["a", "b"], "outputs": ["y"],
            "attrs": {"fn": "pow"}}
    got = _run(cpu.OPS, node, [a, b], a.shape)
    want = binary_np("pow", a, b)
    np.testing.assert_allclose(got, want, rtol=3e-7, atol=0)
    np.testing.assert_array_equal(np.signbit(got), np.signbit(want))
