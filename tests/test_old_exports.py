"""Caffe2-era ONNX exports: IR version 3, opset 7-9, every initializer also listed among
the graph inputs (IR < 4 required that), and the attribute forms of those opsets
(BatchNormalization ``spatial``, Upsample ``scales`` attribute / input, Slice attributes,
Reshape by an initializer shape, Dropout ``ratio``). The models are built here with
onnx.helper, so nothing is downloaded; the oracle is onnxruntime on the same model.

Why they failed (issue 13): the front end hands ONNX shape inference a rebuilt copy of the
graph whose initializers are no longer graph inputs but which still says ``ir_version 3``.
For IR < 4 ONNX takes the types of initializers only from the graph inputs, so every weight
is untyped, Conv's output shape stays unknown, and the converter reported
``shape of 'r1' could not be inferred``.
"""
from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto as T  # noqa: E402
from onnx import helper as h  # noqa: E402
from onnx import numpy_helper as nh  # noqa: E402


def _old_model(nodes, inits, x_shape, out_name, out_shape, opset, ir_version=3):
    """IR-3 style: initializers repeated as graph inputs (with their shapes)."""
    inputs = [h.make_tensor_value_info("data", T.FLOAT, x_shape)]
    inputs += [h.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in inits]
    g = h.make_graph(nodes, "caffe2_era", inputs,
                     [h.make_tensor_value_info(out_name, T.FLOAT, out_shape)],
                     initializer=inits)
    m = h.make_model(g, opset_imports=[h.make_opsetid("", opset)], ir_version=ir_version,
                     producer_name="caffe2-style-test")
    onnx.checker.check_model(m)
    return m


def _w(rng, name, shape, scale=0.2):
    return nh.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)


def plain_cnn(opset=8):
    """Conv-BN(spatial)-Relu-MaxPool, a squeeze/expand fire module (Concat), AveragePool,
    Reshape by an initializer, Gemm(transB), Dropout, Softmax."""
    rng = np.random.default_rng(0)
    inits = [_w(rng, "conv1_w", (8, 3, 3, 3)), _w(rng, "conv1_b", (8,)),
             nh.from_array((rng.random(8) + 0.5).astype(np.float32), "bn_scale"),
             _w(rng, "bn_bias", (8,)), _w(rng, "bn_mean", (8,), 0.1),
             nh.from_array((rng.random(8) + 0.5).astype(np.float32), "bn_var"),
             _w(rng, "sq_w", (4, 8, 1, 1)), _w(rng, "sq_b", (4,)),
             _w(rng, "e1_w", (6, 4, 1, 1)), _w(rng, "e1_b", (6,)),
             _w(rng, "e3_w", (6, 4, 3, 3)), _w(rng, "e3_b", (6,)),
             nh.from_array(np.array([1, -1], np.int64), "flat_shape"),
             _w(rng, "fc_w", (10, 12 * 2 * 2)), _w(rng, "fc_b", (10,))]
    bn_attrs = {"epsilon": 1e-5}
    if opset < 9:
        bn_attrs["spatial"] = 1
    nodes = [
        h.make_node("Conv", ["data", "conv1_w", "conv1_b"], ["c1"], kernel_shape=[3, 3],
                    pads=[1, 1, 1, 1]),
        h.make_node("BatchNormalization", ["c1", "bn_scale", "bn_bias", "bn_mean", "bn_var"],
                    ["b1"], **bn_attrs),
        h.make_node("Relu", ["b1"], ["r1"]),
        h.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
        h.make_node("Conv", ["p1", "sq_w", "sq_b"], ["sq"], kernel_shape=[1, 1]),
        h.make_node("Relu", ["sq"], ["sqr"]),
        h.make_node("Conv", ["sqr", "e1_w", "e1_b"], ["e1"], kernel_shape=[1, 1]),
        h.make_node("Conv", ["sqr", "e3_w", "e3_b"], ["e3"], kernel_shape=[3, 3],
                    pads=[1, 1, 1, 1]),
        h.make_node("Concat", ["e1", "e3"], ["fire"], axis=1),
        h.make_node("Relu", ["fire"], ["firer"]),
        h.make_node("AveragePool", ["firer"], ["ap"], kernel_shape=[2, 2], strides=[2, 2]),
        h.make_node("Reshape", ["ap", "flat_shape"], ["flat"]),
        h.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["fc"], transB=1),
        h.make_node("Dropout", ["fc"], ["drop"], ratio=0.5),
        h.make_node("Softmax", ["drop"], ["prob"]),
    ]
    return _old_model(nodes, inits, [1, 3, 8, 8], "prob", [1, 10], opset)


def upsample_net(opset):
    """Conv then Upsample (opset 7: ``scales`` attribute; opset 9: scales input)."""
    rng = np.random.default_rng(1)
    inits = [_w(rng, "w", (4, 3, 3, 3)), _w(rng, "b", (4,))]
    if opset < 9:
        up = h.make_node("Upsample", ["c"], ["up"], mode="nearest", scales=[1.0, 1.0, 2.0, 2.0])
    else:
        inits.append(nh.from_array(np.array([1, 1, 2, 2], np.float32), "scales"))
        up = h.make_node("Upsample", ["c", "scales"], ["up"], mode="nearest")
    nodes = [h.make_node("Conv", ["data", "w", "b"], ["c"], kernel_shape=[3, 3],
                         pads=[1, 1, 1, 1]), up,
             h.make_node("Slice", ["up"], ["out"], starts=[1, 1], ends=[9, 7], axes=[2, 3])]
    return _old_model(nodes, inits, [1, 3, 5, 5], "out", [1, 4, 8, 6], opset)


def _check_parity(model, tmp_path, name):
    import edgenet
    from converters.convert import convert

    src = str(tmp_path / f"{name}.onnx")
    dst = str(tmp_path / f"{name}.edgenet")
    onnx.save(model, src)
    convert(src, dst, weights="f32")
    x_shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    x = np.random.default_rng(2).standard_normal(x_shape).astype(np.float32)
    sess = ort.InferenceSession(src, providers=["CPUExecutionProvider"])
    want = sess.run(None, {"data": x})[0]
    got = edgenet.load(dst)(x)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


@pytest.mark.parametrize("opset", [7, 8, 9])
def test_caffe2_era_plain_cnn_converts_and_matches(opset, tmp_path):
    _check_parity(plain_cnn(opset), tmp_path, f"plain_op{opset}")


@pytest.mark.parametrize("opset", [7, 9])
def test_caffe2_era_upsample_converts_and_matches(opset, tmp_path):
    _check_parity(upsample_net(opset), tmp_path, f"upsample_op{opset}")


def test_ir3_root_cause_is_ir_version_not_the_graph():
    """The same graph with ir_version 4 (initializers may then be absent from the inputs)
    gets full shapes from ONNX shape inference; with ir_version 3 it gets none."""
    from onnx import shape_inference

    m = plain_cnn(8)
    del m.graph.input[1:]          # what the front end's rebuilt copy looks like
    shaped = {}
    for ir in (3, 4):
        m.ir_version = ir
        r = shape_inference.infer_shapes(m, strict_mode=False)
        shaped[ir] = {v.name for v in r.graph.value_info
                      if v.type.tensor_type.HasField("shape")}
    assert "c1" not in shaped[3]
    assert {"c1", "r1", "p1", "fire", "flat"} <= shaped[4]


def test_shape_inference_error_is_surfaced_with_its_node(tmp_path):
    """An inconsistent graph: ONNX shape inference's own error (naming the node) reaches
    the user instead of a bare "could not be inferred"."""
    from converters.convert import convert
    from edgenet.errors import ConversionError

    rng = np.random.default_rng(0)
    inits = [_w(rng, "k", (1, 3, 4, 4))]             # does not broadcast with (1, 3, 8, 8)
    nodes = [h.make_node("Add", ["data", "k"], ["c"], name="bad_add"),
             h.make_node("MaxPool", ["c"], ["out"], kernel_shape=[2, 2], name="pool")]
    g = h.make_graph(nodes, "bad", [h.make_tensor_value_info("data", T.FLOAT, [1, 3, 8, 8])],
                     [h.make_tensor_value_info("out", T.FLOAT, None)], initializer=inits)
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 13)])
    src = str(tmp_path / "bad.onnx")
    onnx.save(m, src)
    with pytest.raises(ConversionError) as ei:
        convert(src, str(tmp_path / "bad.edgenet"), weights="f32")
    msg = str(ei.value)
    assert "ONNX shape inference" in msg and "bad_add" in msg, msg
    assert not (tmp_path / "bad.edgenet").exists()
