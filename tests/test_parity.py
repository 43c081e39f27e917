"""End to end: ONNX fixture → edgenet convert → edgenet CPU runtime, against onnxruntime.

Float parity: --weights f32 vs onnxruntime on the same ONNX (max abs err ≤ 1e-4·max|y|).
Quantized parity: the ternary/quinary file vs onnxruntime on its --reference-onnx export.
"""
import os

import numpy as np
import pytest

import edgenet
from conftest import FIXTURES

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")
from converters.convert import convert  # noqa: E402

FLOAT_MODELS = ["mnist_seed_relu", "mnist_seed_sigmoid", "mnist_seed_relu_op9", "resnet20",
                "resnet20_op11", "densenet_bc", "mobilenetv2_tiny", "unet_tiny",
                "unet_tiny_op11", "inception_tiny", "allops", "allops_op10", "upsample_op9"]
QUANT_MODELS = ["resnet20", "densenet_bc", "unet_tiny", "mobilenetv2_tiny", "inception_tiny"]


def _ort(path):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def _input(sess, batch=2, seed=0):
    i = sess.get_inputs()[0]
    shape = [batch if not isinstance(d, int) else d for d in i.shape]
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("name", FLOAT_MODELS)
def test_float_parity_with_onnxruntime(name, tmp_path):
    src = os.path.join(FIXTURES, name + ".onnx")
    dst = str(tmp_path / (name + ".edgenet"))
    convert(src, dst, weights="f32")
    sess = _ort(src)
    x = _input(sess)
    want = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    got = edgenet.load(dst)(x)
    assert got.shape == want.shape
    err = np.abs(got - want).max()
    assert err <= 1e-4 * np.abs(want).max(), f"{name}: max abs err {err}"


@pytest.mark.parametrize("weights", ["ternary", "quinary"])
@pytest.mark.parametrize("name", QUANT_MODELS)
def test_quantized_parity_with_reference_onnx(name, weights, tmp_path):
    src = os.path.join(FIXTURES, name + ".onnx")
    dst = str(tmp_path / f"{name}.{weights}.edgenet")
    ref = str(tmp_path / f"{name}.{weights}.ref.onnx")
    convert(src, dst, weights=weights, keep_float=(), reference_onnx=ref)
    sess = _ort(ref)
    x = _input(sess, seed=1)
    want = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    for policy in ("expanded", "packed"):
        got = edgenet.load(dst, policy=policy)(x)
        err = np.abs(got - want).max()
        assert err <= 1e-3 * np.abs(want).max(), f"{name}/{weights}/{policy}: err {err}"
    # and the quantization is not a no-op: the quantized model differs from the float one
    fsess = _ort(src)
    fy = fsess.run(None, {fsess.get_inputs()[0].name: x})[0]
    assert np.abs(fy - want).max() > 1e-3 * np.abs(fy).max()


@pytest.mark.parametrize("name", ["ternary_trained", "quinary_trained"])
def test_trained_levels_are_packed_losslessly(name, tmp_path):
    src = os.path.join(FIXTURES, name + ".onnx")
    dst = str(tmp_path / (name + ".edgenet"))
    rep = convert(src, dst, weights="ternary", keep_float=())
    sess = _ort(src)
    x = _input(sess)
    want = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    got = edgenet.load(dst)(x)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
    encs = set(edgenet.format.read_model(dst).tensors[n].encoding.value
               for n in edgenet.format.read_model(dst).weights())
    assert ("t2" if name.startswith("ternary") else "q3") in encs
    assert "lossless" in rep.format_table()
