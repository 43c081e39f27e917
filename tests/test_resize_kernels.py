"""CPU Resize fast paths against onnxruntime: nearest with an integer upscale along W
(fw stores per input value), the plain gather, and repeated rows."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh

import edgenet
from converters.convert import convert

FLOOR = dict(mode="nearest", nearest_mode="floor", coordinate_transformation_mode="asymmetric")


@pytest.mark.parametrize("attrs,scales", [
    (FLOOR, [1, 1, 2, 2]),                                  # fw = 2
    (FLOOR, [1, 1, 3, 3]),                                  # fw = 3
    (FLOOR, [1, 1, 1, 4]),                                  # fw = 4, rows not repeated
    (dict(mode="nearest"), [1, 1, 2, 2]),                   # half_pixel, round_prefer_floor
    (FLOOR, [1, 1, 2, 1.5]),                                # not an integer factor: gather
    (dict(mode="nearest", nearest_mode="ceil"), [1, 1, 0.5, 2]),  # ix != ox // 2: gather
])
def test_resize_nearest_paths(tmp_path, attrs, scales):
    g = h.make_graph([h.make_node("Resize", ["x", "", "sc"], ["y"], **attrs)], "g",
                     [h.make_tensor_value_info("x", T.FLOAT, ["N", 3, "H", "W"])],
                     [h.make_tensor_value_info("y", T.FLOAT, None)],
                     [nh.from_array(np.asarray(scales, np.float32), "sc")])
    src, dst = str(tmp_path / "m.onnx"), str(tmp_path / "m.edgenet")
    onnx.save(h.make_model(g, opset_imports=[h.make_opsetid("", 19)]), src)
    convert(src, dst, weights="f32")
    sess = ort.InferenceSession(src, providers=["CPUExecutionProvider"])
    m = edgenet.load(dst)
    for shape in [(1, 3, 4, 6), (2, 3, 7, 5)]:
        x = np.random.default_rng(sum(shape)).standard_normal(shape).astype(np.float32)
        want = sess.run(None, {"x": x})[0]
        got = m.run({"x": x})["y"]
        assert got.shape == want.shape
        np.testing.assert_array_equal(got, want)
