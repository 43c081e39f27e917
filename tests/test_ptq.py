"""Calibrated ternary/quinary PTQ (converters/ptq.py) and mixed precision (converters/mixed.py).

Oracles: the layer output error of the plain rules (converters/quantize.py) on the same
layer; onnxruntime on the --reference-onnx export for the packed file; the file's own
stored levels and sizes.
"""
import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import edgenet  # noqa: E402
from converters import ptq  # noqa: E402
from converters.convert import convert  # noqa: E402
from edgenet.format import read_model  # noqa: E402


def _correlated(rng, n, k):
    mix = rng.standard_normal((k, k))
    return rng.standard_normal((n, k)) @ mix * 0.5 + rng.standard_normal((n, k))


def _out_err(X, W, T, a):
    """relative error of the layer outputs X Wᵀ vs X (a·T)ᵀ, (G=1, R, K) arrays."""
    y = X @ W[0].T
    q = X @ (a[0][:, None] * T[0]).T
    return np.linalg.norm(y - q) / np.linalg.norm(y)


@pytest.mark.parametrize("L", [1, 2])
def test_layer_output_error_lower_than_plain_rule(L):
    rng = np.random.default_rng(L)
    X = _correlated(rng, 3000, 48)
    W = rng.standard_normal((1, 12, 48)) * 0.1
    T, a = ptq.quantize_rows(W, (X.T @ X)[None], L)
    allowed = set(range(-L, L + 1))
    assert set(np.unique(T).tolist()) <= allowed
    assert T.dtype == np.int8 and a.shape == (1, 12) and np.all(a >= 0)
    for thr in (["twn", "optimal"] if L == 1 else ["twn"]):
        Tp, ap = ptq.plain_rows(W, L, thr)
        assert _out_err(X, W, T, a) < 0.85 * _out_err(X, W, Tp, ap)


def test_refit_alpha_is_least_squares():
    rng = np.random.default_rng(3)
    X = _correlated(rng, 500, 16)
    H = (X.T @ X)[None]
    W = rng.standard_normal((1, 4, 16))
    T = np.sign(W) * (np.abs(W) > 0.5)
    a = ptq._refit_alpha(W, T.copy(), H, None)
    for r in range(4):                      # 1-D least squares over the layer outputs
        y, q = X @ W[0, r], X @ T[0, r]
        best = (q @ y) / (q @ q)
        assert a[0, r] == pytest.approx(abs(best), rel=1e-9)


# ----------------------------------------------------------------------------- small net

def _net(path, seed=0):
    """Conv(no bias)+BN+Relu, depthwise Conv+Relu, 1x1 Conv+Relu, GAP, Gemm: 3x12x12 -> 5."""
    rng = np.random.default_rng(seed)
    f = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    inits = [
        numpy_helper.from_array(f(8, 3, 3, 3) * 0.3, "w1"),
        numpy_helper.from_array((1 + 0.2 * f(8)).astype(np.float32), "bn_s"),
        numpy_helper.from_array(0.1 * f(8), "bn_b"),
        numpy_helper.from_array(0.1 * f(8), "bn_m"),
        numpy_helper.from_array((1 + 0.3 * np.abs(f(8))).astype(np.float32), "bn_v"),
        numpy_helper.from_array(f(8, 1, 3, 3) * 0.4, "w2"),
        numpy_helper.from_array(0.1 * f(8), "b2"),
        numpy_helper.from_array(f(16, 8, 1, 1) * 0.3, "w3"),
        numpy_helper.from_array(0.1 * f(16), "b3"),
        numpy_helper.from_array(f(5, 16) * 0.4, "w4"),
        numpy_helper.from_array(0.1 * f(5), "b4"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c1", "bn_s", "bn_b", "bn_m", "bn_v"], ["n1"],
                         name="bn1"),
        helper.make_node("Relu", ["n1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="dw", pads=[1, 1, 1, 1],
                         group=8),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("Conv", ["r2", "w3", "b3"], ["c3"], name="pw"),
        helper.make_node("Relu", ["c3"], ["r3"], name="relu3"),
        helper.make_node("GlobalAveragePool", ["r3"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["fl"], name="flat"),
        helper.make_node("Gemm", ["fl", "w4", "b4"], ["y"], name="fc", transB=1),
    ]
    g = helper.make_graph(nodes, "ptq_net",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 12, 12])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5])],
                          inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.save(m, path)
    return path


def _samples(n, seed=1):
    """Smooth (spatially correlated) images, as real inputs are."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 3, 12, 12)).astype(np.float32)
    for _ in range(2):
        x = (x + np.roll(x, 1, 2) + np.roll(x, 1, 3)) / 3
    return (x * 2).astype(np.float32)


@pytest.mark.parametrize("weights,L", [("ternary", 1), ("quinary", 2)])
def test_calibrated_file_matches_reference_onnx(tmp_path, weights, L):
    src = _net(str(tmp_path / "net.onnx"))
    x = _samples(96)
    dst = str(tmp_path / "net.edgenet")
    ref = str(tmp_path / "net.ref.onnx")
    rep = convert(src, dst, weights=weights, keep_float="none", calibration=x,
                  calibrate_weights=True, reference_onnx=ref)
    assert all(r.note == "calibrated" for r in rep.layers)
    mf = read_model(dst)
    for r in rep.layers:            # levels exactly in the allowed set
        t = mf.weights()[r.tensor]
        assert t.encoding.value == ("t2" if L == 1 else "q3")
        assert set(np.unique(t.levels()).tolist()) <= set(range(-L, L + 1))
    fid = mf.metadata["fidelity"]
    assert fid["samples"] == round(96 * 0.2) and 0.0 <= fid["top1_agreement"] <= 1.0
    xt = _samples(16, seed=7)
    want = ort.InferenceSession(ref, providers=["CPUExecutionProvider"]).run(None, {"x": xt})[0]
    for dev in (("reference", "cpu") if L == 1 else ("reference",)):
        got = edgenet.load(dst, device=dev)(xt)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    # the reference ONNX differs from the source by more than the weights: bias correction
    src_m, ref_m = onnx.load(src), onnx.load(ref)
    assert len(ref_m.graph.initializer) == len(src_m.graph.initializer) + 1   # conv1's new bias


def test_calibrated_beats_plain_on_net(tmp_path):
    src = _net(str(tmp_path / "net.onnx"), seed=2)
    x = _samples(160, seed=3)
    fid = {}
    for cal in (False, True):
        rep = convert(src, str(tmp_path / f"n{cal}.edgenet"), weights="ternary",
                      keep_float="none", calibration=x[:128], fidelity_samples=x[128:],
                      calibrate_weights=cal)
        fid[cal] = rep.fidelity
    assert fid[True]["snr_db"] > fid[False]["snr_db"] + 3.0


def test_mixed_precision_respects_max_bits(tmp_path):
    src = _net(str(tmp_path / "net.onnx"))
    x = _samples(64)
    for mb in (4.6, 6.0, 12.0):     # tiny layers: the per-channel scales weigh (>= 4.5)
        msgs = []
        rep = convert(src, str(tmp_path / "m.edgenet"), weights="ternary", keep_float="none",
                      calibration=x, max_bits=mb, log=msgs.append)
        assert rep.bits_per_weight <= mb + 1e-9
        table = read_model(str(tmp_path / "m.edgenet")).metadata["quantization"]["mixed"]["table"]
        assert [t["encoding"] for t in table] == [r.encoding for r in rep.layers]
        assert "bits/weight" in msgs[-1]
    assert rep.bits_per_weight > 6.0         # a larger budget is used, not ignored


def test_target_agreement_and_errors(tmp_path):
    from edgenet.errors import ConversionError
    src = _net(str(tmp_path / "net.onnx"))
    x = _samples(64)
    rep = convert(src, str(tmp_path / "a.edgenet"), weights="ternary", keep_float="none",
                  calibration=x, target_agreement=1.0, holdout=0.0,
                  fidelity_samples=x[:32])
    assert rep.fidelity["top1_agreement"] == 1.0 or rep.bits_per_weight > 2.5
    with pytest.raises(ConversionError, match="calibration samples"):
        convert(src, str(tmp_path / "b.edgenet"), weights="ternary", calibrate_weights=True)
    with pytest.raises(ConversionError, match="max_bits"):
        convert(src, str(tmp_path / "b.edgenet"), weights="ternary", calibration=x,
                max_bits=4.0)


def test_int8_rules_pick_layers_and_share(tmp_path):
    """mixed.int8_rules: first/last/depthwise/small:N pick the layers by position, group
    and size; the share counts the weights left t2 (fixture: 216, 72, 128, 80 weights)."""
    from converters import mixed
    from converters.from_onnx import load_onnx
    from edgenet.errors import ConversionError

    g = load_onnx(_net(str(tmp_path / "net.onnx")))
    names = [nd["inputs"][1] for nd in ptq.weight_nodes(g)]
    sizes = [int(np.prod(g.weights[k].values.shape)) for k in names]
    assert sizes == [216, 72, 128, 80]
    e0 = {k: "t2" for k in names}

    def pick(spec):
        e, share = mixed.int8_rules(g, e0, spec)
        chosen = [i for i, k in enumerate(names) if e[k] == "i8"]
        assert all(e[k] == "t2" for i, k in enumerate(names) if i not in chosen)
        assert share == pytest.approx(sum(s for i, s in enumerate(sizes) if i not in chosen)
                                      / sum(sizes))
        return chosen

    assert pick("first") == [0]
    assert pick("last") == [3]
    assert pick("depthwise") == [1]
    assert pick("small:100") == [1, 3]
    assert pick(["first", "small:72"]) == [0, 1]
    assert pick("none") == []
    e, _ = mixed.int8_rules(g, {**e0, names[0]: "f32"}, "first,small:1000")
    assert e[names[0]] == "f32"                       # kept float stays float
    for bad in ("wide", "small:x", "small:-1"):
        with pytest.raises(ConversionError, match="int8 layers"):
            mixed.int8_rules(g, e0, bad)
