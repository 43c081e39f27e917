"""Symbolic input dims end to end (issue 13): the converter keeps named dims (N, H, W) in
the file, shape arithmetic exporters emit from them (Shape -> Gather/Slice -> Mul ->
Concat -> Resize sizes / Reshape targets) becomes plan-time-evaluable IR, and the runtime
runs any valid size; ``--input-shape`` freezes dims at conversion. Oracle: onnxruntime."""
from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto as T  # noqa: E402
from onnx import helper as h  # noqa: E402
from onnx import numpy_helper as nh  # noqa: E402

import edgenet  # noqa: E402
from converters.convert import convert  # noqa: E402
from edgenet.errors import ConversionError, EdgenetError, InputError  # noqa: E402


def _i64(name, v):
    return nh.from_array(np.asarray(v, np.int64), name)


def fcn(dims=("N", 3, "H", "W")):
    """Conv-Relu-MaxPool-Conv, Resize x2 with sizes computed from Shape, skip Add, then a
    Reshape to (N, C, H*W) whose target is computed from Shape, and a Transpose."""
    rng = np.random.default_rng(0)
    w = lambda *s: (rng.standard_normal(s) * 0.3).astype(np.float32)  # noqa: E731
    inits = [nh.from_array(w(4, 3, 3, 3), "w1"), nh.from_array(w(4), "b1"),
             nh.from_array(w(4, 4, 3, 3), "w2"), nh.from_array(w(4), "b2"),
             _i64("i0", [0]), _i64("i1", [1]), _i64("s0", [0]), _i64("s2", [2]),
             _i64("s4", [4]), _i64("two", [2, 2]),
             nh.from_array(np.zeros(0, np.float32), "roi"),
             nh.from_array(np.zeros(0, np.float32), "noscales")]
    nodes = [
        h.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        h.make_node("Relu", ["c1"], ["r1"]),
        h.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
        h.make_node("Conv", ["p1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1]),
        # sizes = concat(shape(c2)[0:2], shape(c2)[2:4] * 2)
        h.make_node("Shape", ["c2"], ["sh"]),
        h.make_node("Slice", ["sh", "s0", "s2"], ["nc"]),
        h.make_node("Slice", ["sh", "s2", "s4"], ["hw"]),
        h.make_node("Mul", ["hw", "two"], ["hw2"]),
        h.make_node("Concat", ["nc", "hw2"], ["sizes"], axis=0),
        h.make_node("Resize", ["c2", "roi", "noscales", "sizes"], ["up"], mode="nearest"),
        h.make_node("Add", ["up", "r1"], ["sum"]),
        # reshape target = [N, C, H*W] from Shape(sum)
        h.make_node("Shape", ["sum"], ["sh2"]),
        h.make_node("Gather", ["sh2", "i0"], ["n"], axis=0),
        h.make_node("Gather", ["sh2", "i1"], ["c"], axis=0),
        h.make_node("Slice", ["sh2", "s2", "s4"], ["hw_b"]),
        h.make_node("ReduceProd", ["hw_b"], ["hwp"], keepdims=1),
        h.make_node("Concat", ["n", "c", "hwp"], ["tgt"], axis=0),
        h.make_node("Reshape", ["sum", "tgt"], ["flat"]),
        h.make_node("Transpose", ["flat"], ["y"], perm=[0, 2, 1]),
    ]
    g = h.make_graph(nodes, "fcn", [h.make_tensor_value_info("x", T.FLOAT, list(dims))],
                     [h.make_tensor_value_info("y", T.FLOAT, None)], initializer=inits)
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 17)])
    return m


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    d = tmp_path_factory.mktemp("sym")
    src, dst = str(d / "fcn.onnx"), str(d / "fcn.edgenet")
    onnx.save(fcn(), src)
    convert(src, dst, weights="f32")
    return src, dst


def _ort(src, x):
    return ort.InferenceSession(src, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


def test_file_keeps_named_dims(converted):
    _, dst = converted
    m = edgenet.load(dst)
    (inp,) = m.graph["inputs"]
    assert inp["shape"] == [None, 3, None, None]
    assert inp["dim_names"] == ["N", None, "H", "W"]
    (out,) = m.graph["outputs"]
    assert out["shape"] == [None, None, 4]          # (N, H*W, C): H*W is not a named dim
    assert out["dim_names"][0] == "N"
    ops = [n["op"] for n in m.graph["nodes"]]
    assert "Resize" in ops and "Reshape" in ops     # evaluated per plan, not refused


@pytest.mark.parametrize("shape", [(1, 3, 16, 16), (2, 3, 24, 40), (1, 3, 10, 6)])
def test_any_size_matches_onnxruntime(converted, shape):
    src, dst = converted
    x = np.random.default_rng(sum(shape)).standard_normal(shape).astype(np.float32)
    want = _ort(src, x)
    got = edgenet.load(dst)(x)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def test_one_model_many_sizes_in_one_process(converted):
    src, dst = converted
    m = edgenet.load(dst)
    for shape in [(1, 3, 8, 8), (1, 3, 12, 20), (1, 3, 8, 8)]:
        x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
        np.testing.assert_allclose(m(x), _ort(src, x), rtol=1e-4, atol=1e-5)


def test_invalid_size_is_a_clear_error(converted):
    """H = 9: the pooled-then-doubled map (8) no longer matches the skip (9)."""
    _, dst = converted
    m = edgenet.load(dst)
    with pytest.raises(EdgenetError, match="Add"):
        m(np.zeros((1, 3, 9, 8), np.float32))
    with pytest.raises(InputError):
        m(np.zeros((1, 4, 8, 8), np.float32))          # the channel dim is static


def test_input_shapes_freeze_dims(tmp_path):
    src, dst = str(tmp_path / "fcn.onnx"), str(tmp_path / "fcn16.edgenet")
    onnx.save(fcn(), src)
    convert(src, dst, weights="f32", input_shapes={"x": [1, 3, 16, 24]})
    m = edgenet.load(dst)
    assert m.graph["inputs"][0]["shape"] == [1, 3, 16, 24]
    assert "dim_names" not in m.graph["inputs"][0]
    x = np.random.default_rng(3).standard_normal((1, 3, 16, 24)).astype(np.float32)
    np.testing.assert_allclose(m(x), _ort(src, x), rtol=1e-4, atol=1e-5)
    with pytest.raises(InputError):
        m(np.zeros((1, 3, 16, 16), np.float32))
    for bad in ({"y": [1, 3, 16, 16]}, {"x": [1, 3, 16]}, {"x": [1, 4, 16, 16]}):
        with pytest.raises(ConversionError):
            convert(src, str(tmp_path / "bad.edgenet"), weights="f32", input_shapes=bad)
    assert not (tmp_path / "bad.edgenet").exists()


def test_static_model_stays_static(tmp_path):
    """A model exported with fixed dims keeps them (its reshape targets may bake them in)."""
    src, dst = str(tmp_path / "s.onnx"), str(tmp_path / "s.edgenet")
    onnx.save(fcn(dims=(1, 3, 8, 8)), src)
    convert(src, dst, weights="f32")
    m = edgenet.load(dst)
    assert m.graph["inputs"][0]["shape"] == [1, 3, 8, 8]
    x = np.random.default_rng(4).standard_normal((1, 3, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(m(x), _ort(src, x), rtol=1e-4, atol=1e-5)


def test_unexpressible_shape_arithmetic_names_the_fix(tmp_path):
    """Reshape to (N*H, W*C): two entries mix symbolic dims; the IR's copy/infer entries
    cannot say it, and the error says how to convert anyway."""
    nodes = [h.make_node("Shape", ["x"], ["sh"]),
             h.make_node("Gather", ["sh", "i0"], ["n"], axis=0),
             h.make_node("Gather", ["sh", "i2"], ["hh"], axis=0),
             h.make_node("Mul", ["n", "hh"], ["nh"]),
             h.make_node("Gather", ["sh", "i3"], ["ww"], axis=0),
             h.make_node("Mul", ["ww", "c3"], ["wc"]),
             h.make_node("Concat", ["nh", "wc"], ["tgt"], axis=0),
             h.make_node("Transpose", ["x"], ["xt"], perm=[0, 2, 3, 1]),
             h.make_node("Reshape", ["xt", "tgt"], ["y"])]
    g = h.make_graph(nodes, "m", [h.make_tensor_value_info("x", T.FLOAT, ["N", 3, "H", "W"])],
                     [h.make_tensor_value_info("y", T.FLOAT, None)],
                     initializer=[_i64("i0", [0]), _i64("i2", [2]), _i64("i3", [3]),
                                  _i64("c3", [3])])
    src = str(tmp_path / "m.onnx")
    onnx.save(h.make_model(g, opset_imports=[h.make_opsetid("", 17)]), src)
    with pytest.raises(ConversionError, match="--input-shape"):
        convert(src, str(tmp_path / "m.edgenet"), weights="f32")
    convert(src, str(tmp_path / "m.edgenet"), weights="f32",
            input_shapes={"x": [2, 3, 4, 5]})
    x = np.random.default_rng(5).standard_normal((2, 3, 4, 5)).astype(np.float32)
    np.testing.assert_allclose(edgenet.load(str(tmp_path / "m.edgenet"))(x), _ort(src, x))


def test_cli_input_shape_and_info(tmp_path):
    from click.testing import CliRunner

    from edgenet.cli.app import main
    src = str(tmp_path / "fcn.onnx")
    onnx.save(fcn(), src)
    r = CliRunner().invoke(main, ["convert", src, "-o", str(tmp_path / "a.edgenet"),
                                  "--weights", "f32", "-q"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["info", str(tmp_path / "a.edgenet")])
    assert r.exit_code == 0 and "['N', 3, 'H', 'W']" in r.output, r.output
    r = CliRunner().invoke(main, ["convert", src, "-o", str(tmp_path / "b.edgenet"),
                                  "--weights", "f32", "-q", "--input-shape", "x:2,3,16,16"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["info", str(tmp_path / "b.edgenet")])
    assert "[2, 3, 16, 16]" in r.output, r.output
    r = CliRunner().invoke(main, ["convert", src, "-o", str(tmp_path / "c.edgenet"),
                                  "--input-shape", "x:2,three"])
    assert r.exit_code == 2 and "--input-shape" in r.output and "Traceback" not in r.output


def test_sequence_head_with_symbolic_length(tmp_path):
    """The OCR-recognizer tail: (N, C, 1, W) -> Squeeze -> Transpose -> MatMul by a constant
    (a Gemm along the last axis, any leading dims) -> Unsqueeze(0) -> Squeeze(0), with N and
    W symbolic and H fixed by a partial --input-shape (a name keeps a dim symbolic)."""
    rng = np.random.default_rng(7)
    inits = [nh.from_array((rng.standard_normal((4, 3, 3, 3)) * .3).astype(np.float32), "w"),
             nh.from_array((rng.standard_normal((4, 6)) * .3).astype(np.float32), "fc"),
             _i64("a2", [2]), _i64("a0", [0])]
    nodes = [h.make_node("Conv", ["x", "w"], ["c"], pads=[0, 1, 0, 1]),        # H 3 -> 1
             h.make_node("Squeeze", ["c", "a2"], ["s"]),                        # (N, 4, W)
             h.make_node("Transpose", ["s"], ["t"], perm=[0, 2, 1]),             # (N, W, 4)
             h.make_node("MatMul", ["t", "fc"], ["m"]),                          # (N, W, 6)
             h.make_node("Unsqueeze", ["m", "a0"], ["u"]),                       # (1, N, W, 6)
             h.make_node("Relu", ["u"], ["r"]),
             h.make_node("Squeeze", ["r", "a0"], ["y"])]                         # (N, W, 6)
    g = h.make_graph(nodes, "seq", [h.make_tensor_value_info("x", T.FLOAT, ["N", 3, "H", "W"])],
                     [h.make_tensor_value_info("y", T.FLOAT, None)], initializer=inits)
    src, dst = str(tmp_path / "seq.onnx"), str(tmp_path / "seq.edgenet")
    onnx.save(h.make_model(g, opset_imports=[h.make_opsetid("", 13)]), src)
    convert(src, dst, weights="f32", input_shapes={"x": ["N", 3, 3, "W"]})
    m = edgenet.load(dst)
    assert m.graph["inputs"][0]["shape"] == [None, 3, 3, None]
    for shape in [(1, 3, 3, 7), (3, 3, 3, 12)]:
        x = rng.standard_normal(shape).astype(np.float32)
        for dev in ("cpu", "reference"):
            np.testing.assert_allclose(edgenet.load(dst, device=dev)(x), _ort(src, x),
                                       rtol=1e-4, atol=1e-5)
