"""ONNX -> .edgenet conversion on the committed fixtures (no torch needed)."""
import glob
import hashlib
import os

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from converters import convert  # noqa: E402
from edgenet.errors import ConversionError, UnsupportedOpError  # noqa: E402
from edgenet.format import read_model  # noqa: E402
from edgenet.ops import SPEC  # noqa: E402

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
MODELS = sorted(os.path.basename(p)[:-5] for p in glob.glob(os.path.join(FIXTURES, "*.onnx")))
IR_OPS = set(SPEC)   # the IR's ops: edgenet/ops.py

pytestmark = pytest.mark.skipif(not MODELS, reason="no ONNX fixtures")


def fixture(name):
    return os.path.join(FIXTURES, name + ".onnx")


# ------------------------------------------------------------ independent rule oracles

def _twn(v):
    a = np.abs(v)
    d = 0.7 * a.mean()
    m = a > d
    alpha = a[m].mean() if m.any() else 0.0
    return np.where(m, np.sign(v), 0) * alpha


def _quinary(v):
    a = np.abs(v)
    e = a.mean()
    i2 = a > 1.4 * e
    i1 = (a > 0.5 * e) & ~i2
    den = i1.sum() + 4 * i2.sum()
    alpha = (a[i1].sum() + 2 * a[i2].sum()) / den if den else 0.0
    return np.sign(v) * (i1 + 2 * i2) * alpha


def _channels(model, name):
    """Index arrays (into the initializer) of each output channel of weight `name`,
    or None when `name` is not a Conv/ConvTranspose/Gemm/MatMul weight."""
    init = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for n in model.graph.node:
        if len(n.input) < 2 or n.input[1] != name:
            continue
        w = init[name]
        idx = np.arange(w.size).reshape(w.shape)
        at = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        if n.op_type == "Conv":
            return [idx[o].ravel() for o in range(w.shape[0])]
        if n.op_type == "ConvTranspose":
            g = at.get("group", 1)
            cg = w.shape[0] // g
            return [idx[k * cg:(k + 1) * cg, j].ravel() for k in range(g) for j in range(w.shape[1])]
        if n.op_type == "Gemm":
            return [idx[o] for o in range(w.shape[0])] if at.get("transB", 0) else \
                [idx[:, o] for o in range(w.shape[1])]
        if n.op_type == "MatMul" and w.ndim == 2:
            return [idx[:, o] for o in range(w.shape[1])]
    return None


def _is_levels(w, chans, max_level):
    """Already α·T per channel (quantization-aware trained)?"""
    for c in chans:
        v = w.ravel()[c].astype(np.float64)
        nz = np.abs(v[v != 0])
        if nz.size == 0:
            continue
        t = np.rint(v / nz.min())
        if np.abs(t).max() > max_level or np.abs(v - nz.min() * t).max() > 1e-6 * nz.max():
            return False
    return True


def expected_dequant(w, chans, weights, granularity):
    rule = _twn if weights == "ternary" else _quinary
    flat = w.astype(np.float64).ravel()
    out = np.empty_like(flat)
    if granularity == "channel":
        for c in chans:
            out[c] = rule(flat[c])
    else:
        out[:] = rule(flat)
    return out.reshape(w.shape)


# ------------------------------------------------------------------------- tests

@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("weights,granularity", [("ternary", "channel"), ("quinary", "layer"),
                                                 ("f32", "channel")])
def test_convert_reads_back(tmp_path, model, weights, granularity):
    dst = tmp_path / "m.edgenet"
    rep = convert(fixture(model), dst, weights=weights, granularity=granularity)
    mf = read_model(dst)
    g = mf.graph
    ops = {n["op"] for n in g["nodes"]}
    assert ops <= IR_OPS, ops - IR_OPS
    assert not ops & {"BatchNormalization", "Dropout", "Identity"}
    src = onnx.load(fixture(model))
    init = {t.name for t in src.graph.initializer}
    assert [i["name"] for i in g["inputs"]] == [i.name for i in src.graph.input if i.name not in init]
    assert [o["name"] for o in g["outputs"]] == [o.name for o in src.graph.output]
    assert all(i["shape"][0] is None for i in g["inputs"])
    # every node input is a graph input, an earlier output or a stored tensor
    known = {i["name"] for i in g["inputs"]} | set(mf.tensors)
    for n in g["nodes"]:
        for t in n["inputs"]:
            assert t == "" or t in known, (n["name"], t)
        known.update(n["outputs"])
    encs = {r.encoding for r in rep.layers}
    if weights == "f32":
        assert encs == {"f32"}
    md = mf.metadata
    assert md["producer"].startswith("edgenet-converters")
    with open(fixture(model), "rb") as f:
        assert md["source"]["sha256"] == hashlib.sha256(f.read()).hexdigest()
    assert md["quantization"]["weights"] == weights
    assert len(md["layers"]) == len(rep.layers)
    assert rep.output_bytes == os.path.getsize(dst)
    assert "bits/weight" in rep.format_table()


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("weights", ["ternary", "quinary"])
@pytest.mark.parametrize("granularity", ["channel", "layer"])
def test_reference_onnx_matches_rules(tmp_path, model, weights, granularity):
    ref = tmp_path / "ref.onnx"
    rep = convert(fixture(model), tmp_path / "m.edgenet", weights=weights,
                  granularity=granularity, keep_float=(), reference_onnx=ref)
    src = onnx.load(fixture(model))
    out = onnx.load(str(ref))
    assert [n.SerializeToString() for n in src.graph.node] == \
        [n.SerializeToString() for n in out.graph.node]
    s_init = {t.name: t for t in src.graph.initializer}
    o_init = {t.name: t for t in out.graph.initializer}
    assert list(s_init) == list(o_init)
    n_quant = 0
    for name, t in s_init.items():
        chans = _channels(src, name)
        w = numpy_helper.to_array(t)
        got = numpy_helper.to_array(o_init[name])
        lossless = chans is not None and (_is_levels(w, chans, 1) or _is_levels(w, chans, 2))
        if chans is None or lossless:
            assert o_init[name].SerializeToString() == t.SerializeToString(), name
            continue
        n_quant += 1
        assert got.dtype == np.float32 and got.shape == w.shape
        want = expected_dequant(w, chans, weights, granularity)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7 * np.abs(w).max(),
                                   err_msg=name)
    assert n_quant == sum(r.note != "lossless" for r in rep.layers)


@pytest.mark.parametrize("model", ["ternary_trained", "quinary_trained"])
def test_lossless_detection(tmp_path, model):
    if model not in MODELS:
        pytest.skip("fixture missing")
    rep = convert(fixture(model), tmp_path / "m.edgenet", weights="ternary", keep_float=())
    want = "t2" if model.startswith("ternary") else "q3"
    # every QAT layer is packed losslessly (error ~ float rounding only)
    assert all(r.note == "lossless" and r.encoding in ("t2", want) for r in rep.layers)
    assert max(r.rel_error for r in rep.layers) < 1e-6


def test_keep_float_first_last(tmp_path):
    rep = convert(fixture("resnet20"), tmp_path / "m.edgenet", weights="ternary")
    assert rep.layers[0].encoding == "f32" and rep.layers[-1].encoding == "f32"
    assert {r.encoding for r in rep.layers[1:-1]} == {"t2"}


def test_ternary_size_ratio(tmp_path):
    rep = convert(fixture("resnet20"), tmp_path / "m.edgenet", weights="ternary",
                  keep_float=())
    assert rep.ratio > 10, rep.summary()
    assert rep.bits_per_weight < 2.5
    rep_f = convert(fixture("resnet20"), tmp_path / "f.edgenet", weights="f32")
    assert 0.9 < rep_f.ratio < 1.2


def test_graph_normalization(tmp_path):
    dst = tmp_path / "m.edgenet"
    convert(fixture("resnet20"), dst, weights="f32")
    g = read_model(dst).graph
    convs = [n for n in g["nodes"] if n["op"] == "Conv"]
    assert all(n["attrs"]["activation"] is None or n["attrs"]["activation"]["kind"] == "Relu"
               for n in convs)
    assert any(len(n["inputs"]) == 4 and n["inputs"][3] for n in convs)   # residual fused
    assert not any(n["op"] in ("Affine", "Act") for n in g["nodes"])      # BN + ReLU fused
    reshapes = [n for n in g["nodes"] if n["op"] == "Reshape"]
    assert reshapes and reshapes[-1]["attrs"]["shape"][0] == 0            # batch copied


def test_metadata_preprocessing_labels(tmp_path):
    dst = tmp_path / "m.edgenet"
    calls = []
    convert(fixture("mnist_seed_relu"), dst, mean=[0.1307], std=[0.3081],
            labels=[str(i) for i in range(10)], progress=lambda d, t: calls.append((d, t)))
    md = read_model(dst).metadata
    assert md["preprocessing"]["mean"] == pytest.approx([0.1307])
    assert md["preprocessing"]["layout"] == "NCHW"
    assert md["labels"] == [str(i) for i in range(10)]
    assert calls and calls[-1][0] == calls[-1][1]


def _model(nodes, inits, x_shape=(1, 3, 8, 8), y_shape=None, opset=17):
    g = helper.make_graph(
        nodes, "t", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, y_shape)],
        [numpy_helper.from_array(v, k) for k, v in inits.items()])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def test_unsupported_ops_listed_and_nothing_written(tmp_path):
    w = np.random.RandomState(0).randn(4, 3, 3, 3).astype(np.float32)
    m = _model([helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
                helper.make_node("Acosh", ["c"], ["e1"], name="erf_a"),
                helper.make_node("Acosh", ["e1"], ["e2"], name="erf_b"),
                helper.make_node("Foo", ["e2"], ["f"], name="foo", domain="custom"),
                helper.make_node("Hardmax", ["f"], ["y"], name="hm")], {"w": w})
    m.opset_import.append(helper.make_opsetid("custom", 1))
    src = tmp_path / "bad.onnx"
    onnx.save(m, str(src))
    dst = tmp_path / "bad.edgenet"
    ref = tmp_path / "bad.ref.onnx"
    with pytest.raises(UnsupportedOpError) as ei:
        convert(src, dst, reference_onnx=ref)
    msg = str(ei.value)
    for s in ("Acosh", "erf_a", "erf_b", "Foo", "foo", "Hardmax", "hm"):
        assert s in msg
    assert not dst.exists() and not ref.exists()
    assert not [p for p in os.listdir(tmp_path) if p != "bad.onnx"]


def test_conversion_error_names_node(tmp_path):
    m = _model([helper.make_node("Conv", ["x", "x"], ["y"], name="dyn_conv")], {})
    src = tmp_path / "dyn.onnx"
    onnx.save(m, str(src))
    with pytest.raises(ConversionError, match="dyn_conv"):
        convert(src, tmp_path / "dyn.edgenet")
    assert not (tmp_path / "dyn.edgenet").exists()


def test_handmade_opset_forms(tmp_path):
    """Old attribute forms: Pad (attr, opset 10) merged into Conv, Clip attrs, Softmax
    2-D coercion, Gemm transB=0/alpha/beta, MatMul by constant, BN after Gemm."""
    rs = np.random.RandomState(1)
    inits = {"w": rs.randn(4, 3, 3, 3).astype(np.float32),
             "b": rs.randn(4).astype(np.float32),
             "fw": rs.randn(64, 6).astype(np.float32), "fb": rs.randn(6).astype(np.float32),
             "g": (rs.rand(6) + 0.5).astype(np.float32), "be": rs.randn(6).astype(np.float32),
             "mu": rs.randn(6).astype(np.float32), "var": (rs.rand(6) + 0.5).astype(np.float32),
             "mm": rs.randn(6, 5).astype(np.float32), "shape": np.array([0, -1], np.int64)}
    nodes = [helper.make_node("Pad", ["x"], ["p"], pads=[0, 0, 1, 1, 0, 0, 1, 1], name="pad"),
             helper.make_node("Conv", ["p", "w", "b"], ["c"], name="conv"),
             helper.make_node("Clip", ["c"], ["r"], min=0.0, max=6.0, name="relu6"),
             helper.make_node("MaxPool", ["r"], ["mp"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Reshape", ["mp", "shape"], ["fl"], name="flat"),
             helper.make_node("Gemm", ["fl", "fw", "fb"], ["fc"], alpha=0.5, beta=2.0,
                              name="fc"),
             helper.make_node("BatchNormalization", ["fc", "g", "be", "mu", "var"], ["bn"],
                              name="bn"),
             helper.make_node("MatMul", ["bn", "mm"], ["mmo"], name="mm"),
             helper.make_node("Softmax", ["mmo"], ["y"], axis=1, name="sm")]
    m = _model(nodes, inits, x_shape=("N", 3, 8, 8), opset=10)
    src = tmp_path / "h.onnx"
    onnx.save(m, str(src))
    dst = tmp_path / "h.edgenet"
    convert(src, dst, weights="f32")
    mf = read_model(dst)
    g = mf.graph
    ops = [n["op"] for n in g["nodes"]]
    assert ops == ["Conv", "MaxPool", "Reshape", "Gemm", "Gemm", "Softmax"], ops
    conv = g["nodes"][0]
    assert conv["attrs"]["pads"] == [1, 1, 1, 1]
    assert conv["attrs"]["activation"]["kind"] == "Clip"
    assert conv["attrs"]["activation"]["beta"] == 6.0
    assert g["nodes"][2]["attrs"]["shape"] == [0, -1]
    # Gemm: W (O, K) = alpha · B^T, BN folded, bias = BN(beta · C)
    fc = g["nodes"][3]
    W = mf.tensor(fc["inputs"][1]).dequantize()
    s = inits["g"] / np.sqrt(inits["var"] + 1e-5)
    np.testing.assert_allclose(W, (0.5 * inits["fw"].T) * s[:, None], rtol=1e-5)
    B = mf.tensor(fc["inputs"][2]).dequantize()
    np.testing.assert_allclose(B, 2.0 * inits["fb"] * s + inits["be"] - inits["mu"] * s,
                               rtol=1e-5, atol=1e-6)
    mm = g["nodes"][4]
    np.testing.assert_allclose(mf.tensor(mm["inputs"][1]).dequantize(), inits["mm"].T)
    assert g["nodes"][5]["attrs"]["axis"] == 1
    assert g["outputs"][0]["shape"] == [None, 5]
