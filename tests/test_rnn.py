"""LSTM (edgenet/shapes_rnn.py): the CPU kernel against the NumPy reference
(edgenet/reference/rnn.py), and ONNX LSTM graphs (forward / reverse / bidirectional, with
and without B and initial states, every output subset, a dynamic sequence length)
converted and run against onnxruntime and onnx.reference; the refused forms."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh
from onnx.reference import ReferenceEvaluator

from edgenet import cpu
from edgenet.errors import ConversionError, UnsupportedOpError
from edgenet.format import pack
from edgenet.reference import OPS as REF

H, I = 5, 3


def _r(shape, seed, scale=0.6):
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(np.float32)


# ---------------------------------------------------------------- kernel vs reference
def _run(ops, node, inputs, consts, out_shape):
    impl = ops["LSTM"]
    state = impl.prepare(node, consts, "expanded")
    y = np.empty(out_shape, np.float32)
    impl.run(node, state, inputs, [y])
    return y


@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
@pytest.mark.parametrize("states", [0, 1])
@pytest.mark.parametrize("with_b,h0", [(False, None), (True, "const"), (True, "act1")])
# "const": constant initial states (c0 with batch 1) and peepholes
def test_lstm_cpu_matches_reference(direction, states, with_b, h0, monkeypatch):
    D = 2 if direction == "bidirectional" else 1
    Tn, N, hs, i = 4, 2, 19, 7          # 19 hidden units: two recurrence blocks, one partial
    consts = {"w": pack("f32", _r((D, 4 * hs, i), 1)), "r": pack("f32", _r((D, 4 * hs, hs), 2))}
    ins = ["x", "w", "r", "", "", "", ""]
    if with_b:
        consts["b"] = pack("f32", _r((D, 8 * hs), 3))
        ins[3] = "b"
    inputs = [_r((Tn, N, i), 4, 1.5), None, None, None, None, None, None]
    if h0 == "const":
        consts["h0"] = pack("f32", _r((D, N, hs), 5))
        consts["c0"] = pack("f32", _r((D, 1, hs), 6))
        consts["p"] = pack("f32", _r((D, 3 * hs), 7))
        ins[4:7] = ["h0", "c0", "p"]
    elif h0 == "act1":
        inputs[4], inputs[5] = _r((D, 1, hs), 5), _r((D, N, hs), 6)
        ins[4:6] = ["h0", "c0"]
    node = {"name": "l", "op": "LSTM", "inputs": ins, "outputs": ["y"],
            "attrs": {"hidden_size": hs, "direction": direction, "with_states": states}}
    from edgenet import ir
    shp = tuple(ir.infer_shapes(node, [None if v is None else v.shape for v in inputs],
                                consts)[0])
    assert shp == (Tn + 2 * states, D, N, hs)
    want = _run(REF, node, inputs, consts, shp)
    for par in (1 << 40, 0):             # serial and parallel variants
        monkeypatch.setattr("edgenet.cpu.rnn.use_parallel", lambda w, p=par: w >= p)
        got = _run(cpu.OPS, node, inputs, consts, shp)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=2e-6)


# ---------------------------------------------------------------- ONNX graphs
def _lstm_model(direction="forward", with_b=True, init=None, outputs=("Y", "Y_h", "Y_c"),
                seq="T", batch=2, opset=14, extra_attrs=None, seq_lens=False, peep=False,
                layout=0):
    D = 2 if direction == "bidirectional" else 1
    inits = {"W": _r((D, 4 * H, I), 11), "R": _r((D, 4 * H, H), 12)}
    ins = ["x", "W", "R", "", "", "", "", ""]
    if with_b:
        inits["B"] = _r((D, 8 * H), 13)
        ins[3] = "B"
    nodes = []
    if seq_lens:
        inits["sl"] = np.full((batch,), 3 if seq_lens is True else seq_lens, np.int32)
        ins[4] = "sl"
    if peep:
        inits["P"] = _r((D, 3 * H), 17)
        ins[7] = "P"
    if init == "const":
        sh = (batch, D, H) if layout else (D, batch, H)
        inits["h0"], inits["c0"] = _r(sh, 14), _r(sh, 15)
        ins[5:7] = ["h0", "c0"]
    elif init == "computed":
        # the exporters' pattern: zeros of shape [D, batch, H] with batch from Shape(x)
        inits["i1"] = np.array([1], np.int64)
        inits["dd"] = np.array([D], np.int64)
        inits["hh"] = np.array([H], np.int64)
        nodes += [h.make_node("Shape", ["x"], ["s"]),
                  h.make_node("Gather", ["s", "i1"], ["nb"], axis=0),
                  h.make_node("Concat", ["dd", "nb", "hh"], ["shp"], axis=0),
                  h.make_node("ConstantOfShape", ["shp"], ["z"],
                              value=nh.from_array(np.array([0.0], np.float32))),
                  h.make_node("ConstantOfShape", ["shp"], ["z2"],
                              value=nh.from_array(np.array([0.25], np.float32)))]
        ins[5:7] = ["z", "z2"]
    elif init == "activation":
        # initial_h computed from the input at run time
        inits["M"] = _r((I, H), 16)
        nodes += [h.make_node("ReduceMean", ["x"], ["m"], axes=[0], keepdims=1),
                  h.make_node("MatMul", ["m", "M"], ["mm"]),
                  h.make_node("Tanh", ["mm"], ["h0"])]
        ins[5] = "h0"
    while ins[-1] == "":
        ins.pop()
    outs = [o if o in outputs else "" for o in ("Y", "Y_h", "Y_c")]
    while outs[-1] == "":
        outs.pop()
    if layout:
        extra_attrs = dict(extra_attrs or {}, layout=1)
    nodes.append(h.make_node("LSTM", ins, outs, hidden_size=H, direction=direction,
                             **(extra_attrs or {})))
    xs = [batch, seq, I] if layout else [seq, batch, I]
    g = h.make_graph(nodes, "g", [h.make_tensor_value_info("x", T.FLOAT, xs)],
                     [h.make_tensor_value_info(o, T.FLOAT, None) for o in outputs],
                     initializer=[nh.from_array(v, k) for k, v in inits.items()])
    return h.make_model(g, opset_imports=[h.make_opsetid("", opset)])


def _check(model, tmp_path, seqs=(4,), batch=2, device="cpu", use_ort=True, layout=0):
    import edgenet
    from converters.convert import convert
    src, dst = str(tmp_path / "m.onnx"), str(tmp_path / "m.edgenet")
    onnx.save(model, src)
    convert(src, dst, weights="f32")
    m = edgenet.load(dst, device=device)
    sess = ort.InferenceSession(src, providers=["CPUExecutionProvider"]) if use_ort else None
    refe = ReferenceEvaluator(model)
    names = [o.name for o in model.graph.output]
    for k, t in enumerate(seqs):
        x = _r((batch, t, I) if layout else (t, batch, I), 20 + k, 1.5)
        got = m.run({"x": x})
        want2 = refe.run(names, {"x": x})
        want = sess.run(names, {"x": x}) if sess else want2
        for nm, w, w2 in zip(names, want, want2):
            assert got[nm].shape == w.shape, nm
            np.testing.assert_allclose(got[nm], w, rtol=1e-4, atol=1e-5)
            np.testing.assert_allclose(got[nm], w2, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
@pytest.mark.parametrize("with_b,init", [(True, None), (False, "const"), (True, "computed")])
def test_lstm_onnx_matches_onnxruntime(direction, with_b, init, tmp_path):
    _check(_lstm_model(direction, with_b, init, seq=4), tmp_path)


@pytest.mark.parametrize("outputs", [("Y",), ("Y_h",), ("Y_c",), ("Y", "Y_c"),
                                     ("Y_h", "Y_c")])
def test_lstm_output_subsets(outputs, tmp_path):
    _check(_lstm_model("bidirectional", True, "const", outputs, seq=3), tmp_path, seqs=(3,))


def test_lstm_dynamic_sequence_length(tmp_path):
    # symbolic T: one file, run at two lengths; computed zero/fill initial states
    _check(_lstm_model("bidirectional", True, "computed", seq="T"), tmp_path, seqs=(3, 7))


def test_lstm_dynamic_batch_computed_states(tmp_path):
    # the initial states' size depends on the symbolic batch: a fill the kernel broadcasts
    m = _lstm_model("forward", True, "computed", seq=4, batch="N")
    _check(m, tmp_path, seqs=(4,), batch=3)


def test_lstm_initial_state_from_an_activation(tmp_path):
    _check(_lstm_model("forward", True, "activation", ("Y", "Y_h"), seq=4), tmp_path)


@pytest.mark.parametrize("direction", ["forward", "bidirectional"])
def test_lstm_peepholes_and_full_sequence_lens(direction, tmp_path):
    # sequence_lens equal to the static length everywhere is the same as absent
    _check(_lstm_model(direction, True, "const", seq=4, peep=True, seq_lens=4), tmp_path)


@pytest.mark.parametrize("outputs", [("Y", "Y_h", "Y_c"), ("Y",), ("Y_c",)])
def test_lstm_layout_1(outputs, tmp_path):
    # batch-major X / Y / Y_h / Y_c (onnxruntime refuses layout 1: onnx.reference only)
    _check(_lstm_model("bidirectional", True, "const", outputs, seq=4, layout=1), tmp_path,
           use_ort=False, layout=1)


def test_lstm_reference_device(tmp_path):
    _check(_lstm_model("bidirectional", True, "const", seq=3), tmp_path, seqs=(3,),
           device="reference")


def test_lstm_weights_stay_float_under_ternary(tmp_path):
    import edgenet
    from converters.convert import convert
    model = _lstm_model("forward", True, None, ("Y",), seq=4)
    src, dst = str(tmp_path / "m.onnx"), str(tmp_path / "m.edgenet")
    onnx.save(model, src)
    convert(src, dst, weights="ternary")
    x = _r((4, 2, I), 30, 1.5)
    want = ort.InferenceSession(src, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(edgenet.load(dst)(x), want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kw,match", [
    ({"seq_lens": True}, "sequence_lens"),
    ({"extra_attrs": {"activations": ["Relu", "Tanh", "Tanh"]}}, "activations"),
    ({"extra_attrs": {"clip": 1.0}}, "clip"),
    ({"extra_attrs": {"input_forget": 1}}, "input_forget"),
])
def test_lstm_unsupported_forms_are_one_line_errors(kw, match, tmp_path):
    from converters.convert import convert
    src = str(tmp_path / "m.onnx")
    onnx.save(_lstm_model("forward", True, None, ("Y",), seq=4, **kw), src)
    with pytest.raises((ConversionError, UnsupportedOpError)) as e:
        convert(src, str(tmp_path / "m.edgenet"), weights="f32")
    msg = str(e.value)
    assert "\n" not in msg and "LSTM" in msg and match in msg
    assert not (tmp_path / "m.edgenet").exists()


def test_lstm_bad_ir_shapes_are_rejected():
    from edgenet import ir
    from edgenet.errors import ModelError
    consts = {"w": pack("f32", _r((1, 8, 3), 1)), "r": pack("f32", _r((1, 8, 3), 2))}
    node = {"name": "l", "op": "LSTM", "inputs": ["x", "w", "r"], "outputs": ["y"],
            "attrs": {"hidden_size": 2, "direction": "forward"}}
    with pytest.raises(ModelError, match="node 'l' \\(LSTM\\): R shape"):
        ir.infer_shapes(node, [(4, 1, 3), None, None], consts)
    node["attrs"]["direction"] = "sideways"
    with pytest.raises(ModelError, match="direction"):
        ir.infer_shapes(node, [(4, 1, 3), None, None], consts)
