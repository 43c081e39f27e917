"""Label-free fine-tuning (converters/finetune.py, ``edgenet finetune``).

Oracles: onnxruntime on the source ONNX (the torch copy of the graph, float weights) and on
the --reference-onnx export (the packed file); the file's stored encodings; the calibrated
PTQ start's own fidelity on the same held-out samples. Small synthetic models, a few steps:
seconds. Skipped without torch / onnx / onnxruntime.
"""
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from click.testing import CliRunner  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import edgenet  # noqa: E402
from converters import finetune as ft  # noqa: E402
from edgenet.cli import main  # noqa: E402
from edgenet.errors import ConversionError  # noqa: E402
from edgenet.format import read_model  # noqa: E402


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def _net(path, seed=0, extra=None, matmul=False):
    """Conv+BN+Relu, depthwise Conv+HardSwish, 1x1 Conv + residual Add, MaxPool (padded),
    AveragePool, Concat, GlobalAveragePool, Flatten, Gemm, Softmax: (N, 3, 8, 8) -> (N, 4).
    ``extra``: an ONNX op type inserted after the first block (to test refusals)."""
    rng = np.random.default_rng(seed)
    inits = []

    def init(name, a):
        inits.append(numpy_helper.from_array(np.asarray(a, np.float32), name))
        return name

    c = 8
    nodes = [
        helper.make_node("Conv", ["x", init("w1", rng.normal(0, 0.4, (c, 3, 3, 3))),
                                  init("b1", rng.normal(0, 0.1, c))], ["c1"], pads=[1] * 4),
        helper.make_node("BatchNormalization",
                         ["c1", init("g", rng.uniform(0.5, 1.5, c)),
                          init("be", rng.normal(0, .2, c)), init("mu", rng.normal(0, .2, c)),
                          init("var", rng.uniform(.5, 2, c))],
                         ["bn"]),
        helper.make_node("Relu", ["bn"], ["r1"]),
    ]
    last = "r1"
    if extra is not None:
        nodes.append(helper.make_node(extra, [last], ["ex"]))
        last = "ex"
    nodes += [
        helper.make_node("Conv", [last, init("w2", rng.normal(0, 0.4, (c, 1, 3, 3)))], ["c2"],
                         pads=[1] * 4, group=c),
        helper.make_node("HardSwish", ["c2"], ["h2"]),
        helper.make_node("Conv", ["h2", init("w3", rng.normal(0, 0.3, (c, c, 1, 1))),
                                  init("b3", rng.normal(0, 0.1, c))], ["c3"]),
        helper.make_node("Add", ["c3", last], ["a3"]),
        helper.make_node("MaxPool", ["a3"], ["p1"], kernel_shape=[3, 3], strides=[2, 2],
                         pads=[1, 1, 1, 1]),
        helper.make_node("AveragePool", ["a3"], ["p2"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Concat", ["p1", "p2"], ["cat"], axis=1),
        helper.make_node("GlobalAveragePool", ["cat"], ["gp"]),
        helper.make_node("Flatten", ["gp"], ["fl"]),
    ]
    if matmul:          # a linear layer exported as MatMul + Add (as Paddle models are)
        nodes += [helper.make_node("MatMul", ["fl", init("wf", rng.normal(0, 0.12, (2 * c, 4)))],
                                   ["mm"]),
                  helper.make_node("Add", ["mm", init("bf", rng.normal(0, 0.1, 4))], ["lo"])]
    else:
        nodes.append(helper.make_node(
            "Gemm", ["fl", init("wf", rng.normal(0, 0.12, (4, 2 * c))),
                     init("bf", rng.normal(0, 0.1, 4))], ["lo"], transB=1))
    nodes += [
        helper.make_node("Softmax", ["lo"], ["y"], axis=1),
    ]
    g = helper.make_graph(nodes, "ft", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, path)
    return path


def _samples(n=160, seed=1):
    return np.random.default_rng(seed).normal(0, 1, (n, 3, 8, 8)).astype(np.float32)


def _ort(path, x):
    return ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


def test_torch_copy_matches_onnxruntime(tmp_path):
    from converters.from_onnx import load_onnx

    src = _net(str(tmp_path / "m.onnx"))
    g = load_onnx(src)
    encs, tb = ft._plan(g, "t2", ())
    model = ft._build(g, encs, tb, float_model=True)
    x = _samples(20)
    got = ft._run(model, x, g.outputs[0]["name"])
    np.testing.assert_allclose(got, _ort(src, x), rtol=1e-4, atol=1e-5)
    assert model.logits != g.outputs[0]["name"]       # distils the Softmax input


def test_export_matches_reference_onnx(tmp_path):
    src = _net(str(tmp_path / "m.onnx"))
    dst, ref = str(tmp_path / "m.edgenet"), str(tmp_path / "m.ref.onnx")
    res = ft.finetune(src, dst, _samples(), steps=5, minutes=None, reference_onnx=ref,
                      calib_samples=64, threads=1)
    x = _samples(16, seed=7)
    y = edgenet.load(dst, device="reference")(x)
    np.testing.assert_allclose(y, _ort(ref, x), rtol=1e-4, atol=1e-6)
    mf = read_model(dst)
    encs = {n: t.encoding for n, t in mf.weights().items() if t.quantized}
    assert sorted(encs.values()) == ["t2"] * 4, encs          # every conv/gemm ternary
    for n in encs:
        lv = np.unique(mf.tensor(n).dequantize() / mf.tensor(n).scale.reshape(
            (-1,) + (1,) * (len(mf.tensor(n).shape) - 1)))
        assert set(np.round(lv).astype(int).tolist()) <= {-1, 0, 1}
    assert all(r.note == "fine-tuned, lossless" and r.rel_error > 0 for r in res.report.layers)
    meta = mf.metadata
    assert meta["fidelity"] == res.fidelity and meta["fidelity"]["samples"] == 32
    assert meta["quantization"]["finetuned"]["steps"] == 5
    assert meta["source"]["file"] == "m.onnx"


def test_int8_layers_mixed(tmp_path):
    """int8 rules: the depthwise conv and the last layer are stored i8 (trained), the rest
    t2 with exact levels; the file equals onnxruntime on the --reference-onnx export, and
    the i8 layers hold int8 levels of the trained weights (their fake quantization)."""
    src = _net(str(tmp_path / "m.onnx"))
    dst, ref = str(tmp_path / "m.edgenet"), str(tmp_path / "m.ref.onnx")
    res = ft.finetune(src, dst, _samples(), steps=5, minutes=None, reference_onnx=ref,
                      calib_samples=64, threads=1, int8="depthwise,last")
    mf = read_model(dst)
    encs = {n: t.encoding for n, t in mf.weights().items() if t.quantized}
    assert sorted(encs.values()) == ["i8", "i8", "t2", "t2"], encs
    by = {r.tensor: r for r in res.report.layers}
    assert {r.note for r in by.values() if r.encoding == "i8"} == {"fine-tuned, int8"}
    assert {r.note for r in by.values() if r.encoding == "t2"} == {"fine-tuned, lossless"}
    x = _samples(16, seed=7)
    np.testing.assert_allclose(edgenet.load(dst, device="reference")(x), _ort(ref, x),
                               rtol=1e-4, atol=1e-6)
    m = onnx.load(ref)
    w2 = numpy_helper.to_array(next(i for i in m.graph.initializer if i.name == "w2"))
    w1 = numpy_helper.to_array(next(i for i in m.graph.initializer if i.name == "w1"))
    s = np.abs(w2).reshape(len(w2), -1).max(axis=1) / 127
    np.testing.assert_allclose(w2 / s[:, None, None, None],
                               np.rint(w2 / s[:, None, None, None]), atol=1e-3)
    assert not np.allclose(w2, numpy_helper.to_array(next(
        i for i in onnx.load(src).graph.initializer if i.name == "w2")))   # it trained
    assert len(np.unique(np.abs(w1[0]))) <= 2                              # 0 and α
    assert len(res.settings["int8_layers"]) == 2
    with pytest.raises(ConversionError, match="int8 layers"):
        ft.finetune(src, dst, _samples(), steps=1, minutes=None, threads=1, int8="wide")


def test_matmul_add_bias_written_back(tmp_path):
    """MatMul + Add: the calibrated (and trained) bias of the linear layer reaches the file
    through the Add's initializer: the written file computes what the torch start computed
    (steps=0), and equals onnxruntime on the --reference-onnx export."""
    src = _net(str(tmp_path / "m.onnx"), seed=3, matmul=True)
    dst, ref = str(tmp_path / "m.edgenet"), str(tmp_path / "m.ref.onnx")
    x = _samples(200, seed=2)
    res = ft.finetune(src, dst, x[:150], fidelity_samples=x[150:], steps=0, minutes=None,
                      calib_samples=128, threads=1, reference_onnx=ref)
    assert res.kept == "calibrated PTQ start" and res.steps == 0
    assert res.fidelity["snr_db"] == pytest.approx(res.ptq_fidelity["snr_db"], abs=0.01)
    bf = lambda p: numpy_helper.to_array(next(  # noqa: E731
        i for i in onnx.load(p).graph.initializer if i.name == "bf"))
    assert not np.allclose(bf(ref), bf(src))          # the bias correction was written
    xt = _samples(16, seed=7)
    np.testing.assert_allclose(edgenet.load(dst, device="reference")(xt), _ort(ref, xt),
                               rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("as_constant", [False, True])
def test_convert_calibrated_matmul_add_reference_onnx(tmp_path, as_constant):
    """convert with calibrated weights (--min-ternary) on a MatMul + Add head: the bias
    correction of the linear layer goes into the Add's bias (an initializer, or a Constant
    node as in PP-OCR's Paddle export) of the --reference-onnx export (it used to fail:
    'layers not found for the bias corrections'), which then equals the file."""
    from converters.convert import convert
    src = _net(str(tmp_path / "m.onnx"), seed=3, matmul=True)
    if as_constant:           # every initializer as a Constant node
        m = onnx.load(src)
        consts = [helper.make_node("Constant", [], [t.name], value=t, name=f"c_{t.name}")
                  for t in m.graph.initializer]
        del m.graph.initializer[:]
        nodes = consts + list(m.graph.node)
        del m.graph.node[:]
        m.graph.node.extend(nodes)
        onnx.save(m, src)
    dst, ref = str(tmp_path / "m.edgenet"), str(tmp_path / "m.ref.onnx")
    convert(src, dst, weights="ternary", keep_float="none", calibration=_samples(96, seed=2),
            min_ternary=0.8, reference_onnx=ref)

    def bf(p):
        m = onnx.load(p)
        t = next((i for i in m.graph.initializer if i.name == "bf"), None)
        if t is None:
            t = next(n.attribute[0].t for n in m.graph.node if n.output[0] == "bf")
        return numpy_helper.to_array(t)
    assert not np.allclose(bf(ref), bf(src))
    xt = _samples(16, seed=7)
    np.testing.assert_allclose(edgenet.load(dst, device="reference")(xt), _ort(ref, xt),
                               rtol=1e-4, atol=1e-6)


def test_keep_float_layer_exported_float(tmp_path):
    """A layer kept float in training is written f32 (not re-ternarized at export)."""
    src = _net(str(tmp_path / "m.onnx"))
    dst = str(tmp_path / "m.edgenet")
    ft.finetune(src, dst, _samples(), steps=2, minutes=None, calib_samples=64, threads=1,
                keep_float="first")
    mf = read_model(dst)
    encs = [t.encoding for n, t in mf.weights().items() if len(t.shape) == 4]
    assert encs[0] == "f32" and set(encs[1:]) == {"t2"}, encs


def test_quinary_levels(tmp_path):
    src = _net(str(tmp_path / "m.onnx"))
    dst = str(tmp_path / "q.edgenet")
    ft.finetune(src, dst, _samples(), weights="quinary", steps=3, minutes=None,
                calib_samples=64, threads=1, feature_weight=1.0)
    mf = read_model(dst)
    assert {t.encoding for t in mf.weights().values() if t.quantized} <= {"t2", "q3"}
    assert "q3" in {t.encoding for t in mf.weights().values() if t.quantized}


def test_improves_over_calibrated_ptq(tmp_path):
    """On held-out samples, the fine-tuned file is closer to the float network than the
    calibrated PTQ start it began from (both measured on the same samples)."""
    src = _net(str(tmp_path / "m.onnx"), seed=3)
    x = _samples(400, seed=2)
    res = ft.finetune(src, str(tmp_path / "m.edgenet"), x[:300], fidelity_samples=x[300:],
                      steps=150, minutes=None, lr=1e-3, calib_samples=128, threads=1)
    f, p = res.fidelity, res.ptq_fidelity
    assert res.kept == "fine-tuned"
    assert f["top1_agreement"] > p["top1_agreement"] and f["snr_db"] > p["snr_db"], (f, p)


def test_keeps_ptq_start_when_training_hurts(tmp_path):
    """A wild learning rate wrecks the weights: the held-out check keeps the PTQ start."""
    src = _net(str(tmp_path / "m.onnx"), seed=3)
    x = _samples(200, seed=2)
    logs = []
    res = ft.finetune(src, str(tmp_path / "m.edgenet"), x[:150], fidelity_samples=x[150:],
                      steps=8, minutes=None, lr=2.0, calib_samples=64, threads=1,
                      log=logs.append)
    assert res.kept == "calibrated PTQ start", (res.fidelity, res.ptq_fidelity)
    assert any("keeping the start" in m for m in logs)
    # the written file is the start: its own fidelity equals the start's
    assert res.fidelity["top1_agreement"] == res.ptq_fidelity["top1_agreement"]
    assert res.fidelity["snr_db"] == pytest.approx(res.ptq_fidelity["snr_db"], abs=0.01)
    meta = read_model(str(tmp_path / "m.edgenet")).metadata
    assert meta["quantization"]["finetuned"]["kept"] == "calibrated PTQ start"


def _tensors(path):
    mf = read_model(path)
    return {n: np.array(t.dequantize()) for n, t in mf.weights().items()}


def test_checkpoint_resume_equals_uninterrupted(tmp_path):
    src = _net(str(tmp_path / "m.onnx"))
    x = _samples()
    a = str(tmp_path / "a.edgenet")
    ft.finetune(src, a, x, steps=6, minutes=None, calib_samples=64, threads=1)
    b = str(tmp_path / "b.edgenet")

    def stop(step, *_):
        if step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ft.finetune(src, b, x, steps=6, minutes=None, calib_samples=64, threads=1,
                    progress=stop)
    assert os.path.exists(b + ".ckpt") and not os.path.exists(b)
    logs = []
    res = ft.finetune(src, b, x, steps=6, minutes=None, calib_samples=64, threads=1,
                      log=logs.append)
    assert any("resuming" in m and "step 3" in m for m in logs), logs
    assert res.steps == 6
    ta, tb = _tensors(a), _tensors(b)
    assert ta.keys() == tb.keys()
    for k in ta:
        np.testing.assert_array_equal(ta[k], tb[k])
    # a checkpoint for other settings is refused, not silently used
    with pytest.raises(ConversionError, match="another model or settings"):
        ft.finetune(src, b, x, weights="quinary", steps=2, minutes=None, threads=1)


def _cli(*args):
    r = CliRunner().invoke(main, list(args))
    return r.exit_code, r.output


def test_cli_runs_and_reports(tmp_path):
    src = _net(str(tmp_path / "m.onnx"))
    np.save(tmp_path / "s.npy", _samples())
    code, out = _cli("finetune", src, "--samples", str(tmp_path / "s.npy"), "-o",
                     str(tmp_path / "m.edgenet"), "--steps", "2", "--calib-samples", "32",
                     "--threads", "1", "-q")
    assert code == 0, out
    assert "top-1 agreement" in out and "calibrated PTQ start" in out


def test_cli_int8_rules(tmp_path):
    """--int8 on the command line: the depthwise conv is stored i8, the rest t2; a bad rule
    is one line."""
    src = _net(str(tmp_path / "m.onnx"))
    np.save(tmp_path / "s.npy", _samples())
    dst = str(tmp_path / "m.edgenet")
    code, out = _cli("finetune", src, "--samples", str(tmp_path / "s.npy"), "-o", dst,
                     "--steps", "1", "--calib-samples", "32", "--threads", "1",
                     "--int8", "depthwise", "-q")
    assert code == 0, out
    mf = read_model(dst)
    encs = {n: t.encoding for n, t in mf.weights().items() if t.quantized}
    assert sorted(encs.values()) == ["i8", "t2", "t2", "t2"], encs
    code, out = _cli("finetune", src, "--samples", str(tmp_path / "s.npy"), "-o",
                     str(tmp_path / "b.edgenet"), "--steps", "1", "--threads", "1",
                     "--int8", "wide", "-q")
    assert code != 0 and "int8 layers" in out and "Traceback" not in out
    assert len([ln for ln in out.splitlines() if ln.strip()]) == 1, out


@pytest.mark.parametrize("case", ["samples_shape", "no_samples", "bad_op", "bad_ckpt",
                                  "not_onnx"])
def test_cli_bad_input_one_line(tmp_path, case):
    src = _net(str(tmp_path / "m.onnx"), extra="Exp" if case == "bad_op" else None)
    s = tmp_path / "s.npy"
    np.save(s, _samples() if case != "samples_shape" else _samples()[:, :, :4])
    dst = tmp_path / "m.edgenet"
    if case == "bad_ckpt":
        (tmp_path / "m.edgenet.ckpt").write_bytes(b"not a checkpoint")
    if case == "not_onnx":
        (tmp_path / "m.onnx").write_bytes(b"garbage")
    args = ["finetune", src, "--samples", str(tmp_path / "missing.npy")
            if case == "no_samples" else str(s), "-o", str(dst), "--steps", "1",
            "--calib-samples", "16", "--threads", "1", "-q"]
    code, out = _cli(*args)
    lines = [ln for ln in out.splitlines() if ln.strip()]
    assert code == 2, out
    assert len(lines) == 1 and lines[0].startswith("edgenet: error:"), out
    assert "Traceback" not in out
    assert not dst.exists()
    want = {"samples_shape": "do not fit input", "no_samples": "no such file",
            "bad_op": "not supported by finetune", "bad_ckpt": "cannot read checkpoint",
            "not_onnx": "m.onnx"}[case]
    assert want in lines[0], lines[0]
