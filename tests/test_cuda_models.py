"""Whole models on the CUDA backend against the CPU backend (<= 1e-4 relative).

Runs in a simulator subprocess like tests/test_cuda_kernels.py (see its docstring and
docs/CUDA.md, "Tests"). Models: the seed MNIST net (tests/fixtures/mnist_seed_relu.onnx)
and a small residual net built here with onnx.helper (ResNet-20 at 3x32x32 is ~41 M MACs,
far too slow for the simulator's ~1 ms per thread: it runs only with EDGENET_CUDA_REAL=1),
each converted to f32, ternary and quinary .edgenet files with converters.convert.
"""
from __future__ import annotations

import os

import numpy as np
import pytest

from tests.helpers import INNER, ROOT, run_inner

RTOL = 1e-4

FIX = os.path.join(ROOT, "tests", "fixtures")
WEIGHTS = ("f32", "ternary", "quinary")
REAL = os.environ.get("EDGENET_CUDA_REAL") == "1"


def tiny_resnet_onnx(path, seed=0):
    """input (N,3,8,8) -> conv-BN-relu -> basic block (identity shortcut) -> basic block
    with a strided conv and a 1x1 strided projection shortcut -> GAP -> flatten -> Gemm."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    inits, nodes = [], []

    def const(name, a):
        inits.append(numpy_helper.from_array(np.asarray(a, np.float32), name))
        return name

    def conv_bn(x, cin, cout, k, stride, name, relu=True):
        w = const(name + ".w", rng.normal(0, (2.0 / (cin * k * k)) ** 0.5, (cout, cin, k, k)))
        nodes.append(helper.make_node("Conv", [x, w], [name + ".c"], kernel_shape=[k, k],
                                      strides=[stride, stride], pads=[k // 2] * 4))
        bn = [const(name + s, v) for s, v in (
            (".g", rng.uniform(0.5, 1.5, cout)), (".b", rng.normal(0, 0.1, cout)),
            (".m", rng.normal(0, 0.1, cout)), (".v", rng.uniform(0.5, 1.5, cout)))]
        nodes.append(helper.make_node("BatchNormalization", [name + ".c"] + bn,
                                      [name + ".bn"], epsilon=1e-5))
        if not relu:
            return name + ".bn"
        nodes.append(helper.make_node("Relu", [name + ".bn"], [name + ".r"]))
        return name + ".r"

    h = conv_bn("input", 3, 8, 3, 1, "stem")
    a = conv_bn(h, 8, 8, 3, 1, "b1.c1")
    a = conv_bn(a, 8, 8, 3, 1, "b1.c2", relu=False)
    nodes.append(helper.make_node("Add", [a, h], ["b1.add"]))
    nodes.append(helper.make_node("Relu", ["b1.add"], ["b1.out"]))
    a = conv_bn("b1.out", 8, 12, 3, 2, "b2.c1")
    a = conv_bn(a, 12, 12, 3, 1, "b2.c2", relu=False)
    s = conv_bn("b1.out", 8, 12, 1, 2, "b2.sc", relu=False)
    nodes.append(helper.make_node("Add", [a, s], ["b2.add"]))
    nodes.append(helper.make_node("Relu", ["b2.add"], ["b2.out"]))
    nodes.append(helper.make_node("GlobalAveragePool", ["b2.out"], ["gap"]))
    nodes.append(helper.make_node("Flatten", ["gap"], ["flat"], axis=1))
    fw = const("fc.w", rng.normal(0, 0.3, (10, 12)))
    fb = const("fc.b", rng.normal(0, 0.1, 10))
    nodes.append(helper.make_node("Gemm", ["flat", fw, fb], ["output"], transB=1))
    graph = helper.make_graph(
        nodes, "tiny_resnet",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 8, 8])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


if not INNER:
    def test_cuda_models_simulated():
        run_inner(os.path.abspath(__file__))

else:
    import edgenet
    import edgenet.cuda as ecuda
    from edgenet.cuda import config

    convert = pytest.importorskip("converters.convert").convert

    # Still several blocks and K steps per layer, but few threads per block: the
    # simulator's cost is dominated by switching between (Python) threads at barriers.
    MODEL_BLOCKS = dict(THREADS=64, TILE_M=12, TILE_N=32, TILE_K=8, MICRO_M=6, MICRO_N=8,
                        GEMV_MAX_N=2, GEMV_LANES=2, GEMV_ROWS=16, DIRECT_MAX_OG=8,
                        WEIGHTS="packed")

    @pytest.fixture(autouse=True)
    def model_blocks(monkeypatch):
        for k, v in MODEL_BLOCKS.items():
            monkeypatch.setattr(config, k, v)
        yield

    @pytest.fixture(scope="module")
    def workdir(tmp_path_factory):
        return tmp_path_factory.mktemp("cuda_models")

    def converted(workdir, src, weights):
        dst = os.path.join(str(workdir), f"{os.path.basename(src)}.{weights}.edgenet")
        if not os.path.exists(dst):
            convert(src, dst, weights=weights)
        return dst

    def check(got, want, what):
        scale = float(np.abs(want).max())
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=RTOL * scale, err_msg=what)

    def inputs_for(model, batch, seed=0):
        s = model.inputs[0]
        x = np.random.default_rng(seed).uniform(-1, 1, (batch,) + tuple(s.shape[1:]))
        return s.name, x.astype(np.float32)

    @pytest.mark.parametrize("weights", WEIGHTS)
    def test_mnist_seed(workdir, weights):
        path = converted(workdir, os.path.join(FIX, "mnist_seed_relu.onnx"), weights)
        cpu = edgenet.load(path, device="cpu")
        gpu = edgenet.load(path, device="cuda")
        name, x = inputs_for(cpu, 1)
        want = cpu.run({name: x})
        got = ecuda.run_graph(gpu, {name: x})        # device-resident path
        for k in want:
            check(got[k], want[k], f"mnist {weights} {k}")

    @pytest.fixture(scope="module")
    def tiny_onnx(workdir):
        return tiny_resnet_onnx(os.path.join(str(workdir), "tiny_resnet.onnx"))

    @pytest.mark.parametrize("weights", WEIGHTS)
    def test_tiny_resnet(workdir, tiny_onnx, weights):
        path = converted(workdir, tiny_onnx, weights)
        cpu = edgenet.load(path, device="cpu")
        gpu = edgenet.load(path, device="cuda")
        ops = {n["op"] for n in gpu.graph["nodes"]}
        assert "Conv" in ops and "Gemm" in ops
        # the converter fuses the residual Add into the conv epilogue (Conv input 3)
        assert any(len(n["inputs"]) > 3 and n["inputs"][3] for n in gpu.graph["nodes"]
                   if n["op"] == "Conv") or "Add" in ops
        name, x = inputs_for(cpu, 2, seed=2)
        check(ecuda.run_graph(gpu, {name: x})["output"], cpu(x), f"{weights} b2 graph")
        # a second input shape gets its own device plan; plans are reused afterwards
        name, x = inputs_for(cpu, 1, seed=1)
        want = cpu(x)
        check(ecuda.run_graph(gpu, {name: x})["output"], want, f"{weights} b1 graph")
        assert len(gpu._cuda_executor.plans) == 2
        if weights == "f32":  # the host-array contract (OpImpl.run: copy in/out per op)
            check(gpu(x), want, f"{weights} b1 per-op")

    def test_packed_policy_load(workdir, tiny_onnx):
        path = converted(workdir, tiny_onnx, "ternary")
        cpu = edgenet.load(path, device="cpu")
        gpu = edgenet.load(path, device="cuda", policy="packed")
        name, x = inputs_for(cpu, 2, seed=7)
        check(ecuda.run_graph(gpu, {name: x})["output"], cpu(x), "packed policy")

    @pytest.mark.skipif(not REAL, reason="ResNet-20 is too slow for the CUDA simulator")
    @pytest.mark.parametrize("weights", WEIGHTS)
    def test_resnet20_real_gpu(workdir, weights, monkeypatch):
        from importlib import reload
        reload(config)  # production block sizes on a real GPU
        path = converted(workdir, os.path.join(FIX, "resnet20.onnx"), weights)
        cpu = edgenet.load(path, device="cpu")
        gpu = edgenet.load(path, device="cuda")
        for batch in (1, 8):
            name, x = inputs_for(cpu, batch)
            check(ecuda.run_graph(gpu, {name: x})["output"], cpu(x), f"resnet20 {weights}")
