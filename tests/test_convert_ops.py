"""Converter paths added for ONNX conformance (issue 13) on graphs the node tests do not
cover: dynamic N/H/W inputs (a plan per size), and bad parameters refused with a clear
error naming the node. Oracle: onnxruntime on the same model (f32)."""
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
from edgenet.errors import ConversionError  # noqa: E402


def _model(nodes, inits, dims, opset=19):
    g = h.make_graph(nodes, "g", [h.make_tensor_value_info("x", T.FLOAT, list(dims))],
                     [h.make_tensor_value_info("y", T.FLOAT, None)], initializer=inits)
    return h.make_model(g, opset_imports=[h.make_opsetid("", opset)])


def _convert(tmp_path, model):
    src, dst = str(tmp_path / "m.onnx"), str(tmp_path / "m.edgenet")
    onnx.save(model, src)
    convert(src, dst, weights="f32")
    return src, dst


def _check(src, dst, shapes):
    sess = ort.InferenceSession(src, providers=["CPUExecutionProvider"])
    m = edgenet.load(dst)
    for shape in shapes:
        x = np.random.default_rng(sum(shape)).standard_normal(shape).astype(np.float32)
        want = sess.run(None, {"x": x})[0]
        got = m.run({"x": x})["y"]
        assert got.shape == want.shape, (shape, got.shape, want.shape)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def _i64(name, v):
    return nh.from_array(np.asarray(v, np.int64), name)


def _f32(name, v):
    return nh.from_array(np.asarray(v, np.float32), name)


# Resize modes with the H, W dims dynamic: tap tables are built per plan (per size)
@pytest.mark.parametrize("attrs,scales", [
    (dict(mode="cubic", cubic_coeff_a=-0.5, exclude_outside=1), [1, 1, 1.5, 0.75]),
    (dict(mode="linear", antialias=1), [1, 1, 0.5, 0.4]),
    (dict(mode="cubic", coordinate_transformation_mode="half_pixel_symmetric"),
     [1, 1, 2.0, 1.25]),
])
def test_resize_modes_any_size(tmp_path, attrs, scales):
    m = _model([h.make_node("Resize", ["x", "", "sc"], ["y"], **attrs)],
               [_f32("sc", scales)], ("N", 2, "H", "W"))
    _check(*_convert(tmp_path, m), [(1, 2, 8, 10), (2, 2, 13, 7)])


def test_resize_crop_and_resize_with_axes(tmp_path):
    m = _model([h.make_node("Resize", ["x", "roi", "", "sz"], ["y"], mode="linear",
                            coordinate_transformation_mode="tf_crop_and_resize",
                            extrapolation_value=-1.0, axes=[3, 2])],
               [_f32("roi", [-0.1, 0.2, 0.9, 1.1]), _i64("sz", [6, 5])], (1, 3, 7, 9))
    _check(*_convert(tmp_path, m), [(1, 3, 7, 9)])


def test_gather_and_expand_with_a_dynamic_batch(tmp_path):
    """Gather channels [2, 0, 1, 1] (three runs) then a scalar-index Gather that drops
    the H axis, and an Expand of a (N, C, 1) tensor to (N, C, 5)."""
    m = _model([h.make_node("Gather", ["x", "ci"], ["g1"], axis=1),
                h.make_node("Gather", ["g1", "hi"], ["g2"], axis=2),
                h.make_node("Expand", ["g2", "tgt"], ["y"])],
               [_i64("ci", [2, 0, 1, 1]), _i64("hi", -1), _i64("tgt", [1, 1, 1, 5])],
               ("N", 3, 4, 1))
    _check(*_convert(tmp_path, m), [(1, 3, 4, 1), (3, 3, 4, 1)])


def test_matmul_batched_constant_and_vector(tmp_path):
    rng = np.random.default_rng(3)
    m = _model([h.make_node("MatMul", ["x", "b3"], ["t"]),
                h.make_node("MatMul", ["t", "v"], ["y"])],
               [_f32("b3", rng.standard_normal((2, 5, 4))), _f32("v", rng.standard_normal(4))],
               ("N", 2, 3, 5))
    _check(*_convert(tmp_path, m), [(1, 2, 3, 5), (2, 2, 3, 5)])


def test_1d_pooling_and_conv_transpose_any_length(tmp_path):
    """1-D MaxPool / AveragePool / ConvTranspose run as their 2-D forms over (N, C, 1, L)."""
    rng = np.random.default_rng(5)
    m = _model([h.make_node("MaxPool", ["x"], ["p"], kernel_shape=[3], strides=[2],
                            pads=[1, 1], ceil_mode=1),
                h.make_node("AveragePool", ["p"], ["a"], kernel_shape=[2], dilations=[2],
                            pads=[1, 0], count_include_pad=1),
                h.make_node("ConvTranspose", ["a", "w", "b"], ["y"], strides=[3],
                            pads=[1, 0], output_padding=[1], group=2)],
               [_f32("w", rng.standard_normal((4, 3, 3))), _f32("b", rng.standard_normal(6))],
               ("N", 4, "L"))
    _check(*_convert(tmp_path, m), [(1, 4, 11), (2, 4, 16)])


@pytest.mark.parametrize("node,inits,dims,needle", [
    (h.make_node("Gather", ["x", "i"], ["y"], axis=1), [_i64("i", [0, 3])], (1, 3, 4, 4),
     "out of range"),
    (h.make_node("Gather", ["x", "i"], ["y"], axis=2), [_i64("i", [0])], (1, 3, "H", 4),
     "--input-shape"),
    (h.make_node("Expand", ["x", "s"], ["y"]), [_i64("s", [2, 3, 4, 4])], ("N", 3, 4, 4),
     "symbolic"),
    (h.make_node("Expand", ["x", "s"], ["y"]), [_i64("s", [1, 2, 4, 4])], (1, 3, 4, 4),
     "broadcast"),
    (h.make_node("Resize", ["x", "", "sc"], ["y"], mode="nearest", antialias=1),
     [_f32("sc", [1, 1, 0.5, 0.5])], (1, 3, 4, 4), "antialias"),
    (h.make_node("Resize", ["x", "", "sc"], ["y"], mode="linear",
                 coordinate_transformation_mode="tf_crop_and_resize"),
     [_f32("sc", [1, 1, 0.5, 0.5])], (1, 3, 4, 4), "roi"),
])
def test_bad_parameters_name_the_node(tmp_path, node, inits, dims, needle):
    node.name = "bad_node"
    src = str(tmp_path / "m.onnx")
    onnx.save(_model([node], inits, dims), src)
    with pytest.raises(ConversionError) as ei:
        convert(src, str(tmp_path / "m.edgenet"), weights="f32")
    assert "bad_node" in str(ei.value) and needle in str(ei.value), str(ei.value)
    assert not (tmp_path / "m.edgenet").exists()


def test_slice_bounds_on_symbolic_axes(tmp_path):
    """x[:, :, 1:-1, ::-2] with constant bounds, then an end computed from the input size
    (H - 2, what exporters emit for x[..., :h - 2]): normalized per plan."""
    m = _model([h.make_node("Slice", ["x", "s0", "e0", "a0", "t0"], ["s1"]),
                h.make_node("Shape", ["s1"], ["sh"]),
                h.make_node("Gather", ["sh", "i2"], ["hh"], axis=0),
                h.make_node("Sub", ["hh", "two"], ["end"]),
                h.make_node("Slice", ["s1", "zero", "end", "i2"], ["y"])],
               [_i64("s0", [1, -1]), _i64("e0", [-1, -(2 ** 62)]), _i64("a0", [2, 3]),
                _i64("t0", [1, -2]), _i64("i2", [2]), _i64("two", [2]), _i64("zero", [0])],
               ("N", 2, "H", "W"))
    src, dst = _convert(tmp_path, m)
    _check(src, dst, [(1, 2, 8, 7), (2, 2, 13, 10)])
