"""CUDA LSTM (edgenet/cuda/rnn.py) against the CPU kernel and the NumPy reference, in the
CUDA simulator (same outer/inner scheme as tests/test_cuda_kernels.py: the outer test
re-runs this file with NUMBA_ENABLE_CUDASIM=1; EDGENET_CUDA_REAL=1 runs it on a GPU).
Tiny shapes (the simulator runs every thread in Python), 8 threads per block."""
from __future__ import annotations

import os

import numpy as np
import pytest

from tests.helpers import INNER, run_inner

if not INNER:
    def test_cuda_rnn_simulated():
        run_inner(os.path.abspath(__file__))

else:
    import edgenet.cuda as ecuda
    from edgenet import cpu
    from edgenet.cuda import config
    from edgenet.format import pack
    from edgenet.reference import run_node

    ecuda.ensure_available()

    @pytest.fixture(autouse=True)
    def small_blocks(monkeypatch):
        monkeypatch.setattr(config, "THREADS", 8)

    def _r(shape, seed, scale=0.6):
        return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(np.float32)

    @pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
    @pytest.mark.parametrize("full", [False, True])
    def test_lstm(direction, full):
        """full: B, constant initial_h (batch 2), initial_c as an activation with batch 1,
        peepholes, Y_h / Y_c rows; else W and R only."""
        D = 2 if direction == "bidirectional" else 1
        T, N, hs, i = 3, 2, 5, 3
        consts = {"w": pack("f32", _r((D, 4 * hs, i), 1)),
                  "r": pack("f32", _r((D, 4 * hs, hs), 2))}
        ins = ["x", "w", "r"]
        inputs = [_r((T, N, i), 4, 1.5), None, None]
        if full:
            consts["b"] = pack("f32", _r((D, 8 * hs), 3))
            consts["h0"] = pack("f32", _r((D, N, hs), 5))
            consts["p"] = pack("f32", _r((D, 3 * hs), 7))
            ins += ["b", "h0", "c0", "p"]
            inputs += [None, None, _r((D, 1, hs), 6), None]
        node = {"name": "l", "op": "LSTM", "inputs": ins, "outputs": ["y"],
                "attrs": {"hidden_size": hs, "direction": direction,
                          "with_states": int(full)}}
        got = run_node(node, inputs, consts, backend=ecuda.OPS)[0]
        assert got.shape == (T + 2 * int(full), D, N, hs)
        for want, what in ((run_node(node, inputs, consts, backend=cpu.OPS)[0], "cpu"),
                           (run_node(node, inputs, consts)[0], "reference")):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=2e-6, err_msg=what)

    def test_lstm_graph_on_the_device_executor(tmp_path):
        """A converted ONNX LSTM graph (bidirectional, Y / Y_h / Y_c split off by Slice and
        Reshape) run by the device-resident executor, against the CPU backend."""
        import onnx
        from onnx import TensorProto as T
        from onnx import helper as h
        from onnx import numpy_helper as nh

        import edgenet
        from converters.convert import convert
        D, H, I = 2, 4, 3
        inits = [nh.from_array(_r((D, 4 * H, I), 11), "W"),
                 nh.from_array(_r((D, 4 * H, H), 12), "R"),
                 nh.from_array(_r((D, 8 * H), 13), "B")]
        g = h.make_graph([h.make_node("LSTM", ["x", "W", "R", "B"], ["Y", "Y_h", "Y_c"],
                                      hidden_size=H, direction="bidirectional")], "g",
                         [h.make_tensor_value_info("x", T.FLOAT, ["T", 1, I])],
                         [h.make_tensor_value_info(o, T.FLOAT, None)
                          for o in ("Y", "Y_h", "Y_c")], initializer=inits)
        src, dst = str(tmp_path / "m.onnx"), str(tmp_path / "m.edgenet")
        onnx.save(h.make_model(g, opset_imports=[h.make_opsetid("", 14)]), src)
        convert(src, dst, weights="f32")
        x = _r((3, 1, I), 20, 1.5)
        got = edgenet.load(dst, device="cuda").run({"x": x})
        want = edgenet.load(dst, device="cpu").run({"x": x})
        for k in ("Y", "Y_h", "Y_c"):
            np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=2e-6, err_msg=k)
