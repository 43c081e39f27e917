"""Quantization-aware training (converters/qat.py): layers, quantizer math, STE, lossless export.

torch is an optional (dev) extra: the whole module is skipped without it.
"""
import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional

from converters import qat  # noqa: E402
from converters.quantize import quinarize, ternarize  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Tiny tensors: one PyTorch thread is fastest, and avoids oversubscription (spinning
    OpenMP threads) next to Numba's parallel kernels on small CI machines."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


class TinyNet(nn.Module):
    """Every layer kind prepare() handles: Conv2d, ConvTranspose2d (grouped), Linear."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 3, padding=1)
        self.conv2 = nn.Conv2d(6, 8, 3, stride=2, padding=1)
        self.up = nn.ConvTranspose2d(8, 6, 2, stride=2, groups=2)
        self.fc1 = nn.Linear(6 * 8 * 8, 32)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x):
        x = torch.sigmoid(self.conv1(x))
        x = torch.relu(self.conv2(x))
        x = torch.relu(self.up(x))
        x = torch.flatten(x, 1)
        return self.fc2(torch.relu(self.fc1(x)))


def _net(seed=0):
    torch.manual_seed(seed)
    return TinyNet()


def _numpy_quant(w_out_major, weights, granularity, threshold="twn"):
    if weights == "ternary":
        return ternarize(w_out_major, granularity, threshold)
    return quinarize(w_out_major, granularity)


def _out_major_np(mod, w):
    """Output-channel-major numpy weight (IR layout; ConvTranspose transposed per group)."""
    if isinstance(mod, nn.ConvTranspose2d):
        g = mod.groups
        cin, opg = w.shape[:2]
        return (w.reshape(g, cin // g, opg, *w.shape[2:]).transpose(0, 2, 1, 3, 4)
                .reshape(g * opg, cin // g, *w.shape[2:]))
    return w


def test_prepare_replaces_layers_in_place():
    m = _net()
    params_before = {n: p for n, p in m.named_parameters()}
    out = qat.prepare(m, "ternary", "layer")
    assert out is m
    names = [n for n, _ in qat.quantized_modules(m)]
    assert names == ["conv1", "conv2", "up", "fc1", "fc2"]
    for n, mod in qat.quantized_modules(m):
        assert isinstance(mod, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear))
        assert type(mod).__name__.startswith("Q")
    # the very same parameter tensors (an optimizer built before prepare() keeps working)
    for n, p in m.named_parameters():
        assert p is params_before[n]
    # skip leaves layers float; preparing twice is a no-op
    m2 = qat.prepare(_net(), "quinary", "channel", skip=("conv1", "fc2"))
    assert [n for n, _ in qat.quantized_modules(m2)] == ["conv2", "up", "fc1"]
    qat.prepare(m2, "quinary", "channel")
    assert type(m2.conv2).__name__ == "QConv2d"
    with pytest.raises(ValueError):
        qat.prepare(_net(), "binary")
    with pytest.raises(ValueError):
        qat.prepare(_net(), "ternary", "tensor")
    with pytest.raises(ValueError):
        qat.prepare(_net(), "ternary", skip=("nope",))


@pytest.mark.parametrize("weights,granularity,threshold", [
    ("ternary", "layer", "twn"), ("ternary", "channel", "twn"),
    ("ternary", "channel", "optimal"), ("ternary", "layer", "optimal"),
    ("quinary", "layer", "twn"), ("quinary", "channel", "twn")])
def test_quantized_forward_equals_numpy_quantizer(weights, granularity, threshold):
    m = qat.prepare(_net(1), weights, granularity, threshold)
    for name, mod in qat.quantized_modules(m):
        w = mod.weight.detach().numpy()
        levels, alpha = _numpy_quant(_out_major_np(mod, w), weights, granularity, threshold)
        a_t, t_t = mod.quant_params()
        np.testing.assert_array_equal(t_t.numpy(), levels.astype(np.float32), err_msg=name)
        np.testing.assert_array_equal(a_t.numpy(), alpha, err_msg=name)
        lv = levels.astype(np.float32)
        expect = alpha.reshape((-1,) + (1,) * (lv.ndim - 1)) * lv   # float32 products
        got = _out_major_np(mod, mod.quantized_weight().numpy())
        np.testing.assert_array_equal(got, expect, err_msg=name)
        assert set(np.unique(lv)) <= ({-1.0, 0.0, 1.0} if weights == "ternary"
                                      else {-2.0, -1.0, 0.0, 1.0, 2.0})
        if granularity == "layer":
            assert np.all(alpha == alpha[0])
    # the layer's forward really uses alpha*T: same output as a float copy holding alpha*T
    x = torch.randn(3, 1, 8, 8)
    ref = qat.strip(m)
    for _, mod in ref.named_modules():
        assert not type(mod).__name__.startswith("Q")
    with torch.no_grad():
        np.testing.assert_array_equal(m(x).numpy(), ref(x).numpy())


def test_ste_gradients_reach_float_weights():
    m = qat.prepare(_net(2), "ternary", "layer")
    x = torch.randn(4, 1, 8, 8)
    y = torch.tensor([0, 1, 2, 3])
    loss = F.cross_entropy(m(x), y)
    loss.backward()
    for name, mod in qat.quantized_modules(m):
        g = mod.weight.grad
        assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0, name
    # straight through: d loss / d W equals d loss / d (alpha*T) computed on the float copy
    ref = qat.strip(m)
    ref.zero_grad()
    F.cross_entropy(ref(x), y).backward()
    for (name, mod), (_, rmod) in zip(qat.quantized_modules(m),
                                      [(n, dict(ref.named_modules())[n])
                                       for n, _ in qat.quantized_modules(m)]):
        torch.testing.assert_close(mod.weight.grad, rmod.weight.grad, rtol=1e-5, atol=1e-7)
    # and a few optimizer steps on a fixed batch lower the loss
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    first = None
    for _ in range(30):
        opt.zero_grad()
        loss = F.cross_entropy(m(x), y)
        first = loss.item() if first is None else first
        loss.backward()
        opt.step()
    assert loss.item() < first


@pytest.mark.parametrize("weights,granularity", [("ternary", "layer"), ("quinary", "channel"),
                                                 ("ternary", "channel")])
def test_export_converts_losslessly_and_matches_onnxruntime(tmp_path, weights, granularity):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    import edgenet
    from converters import convert

    m = qat.prepare(_net(3), weights, granularity)
    # a tiny bit of training so the weights are not the initial ones
    x = torch.randn(16, 1, 8, 8)
    y = torch.arange(16) % 10
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    for _ in range(5):
        opt.zero_grad()
        F.cross_entropy(m(x), y).backward()
        opt.step()
    before = copy.deepcopy(m.state_dict())
    onnx_path = str(tmp_path / "qat.onnx")
    qat.export_onnx(m, torch.zeros(1, 1, 8, 8), onnx_path)
    # export does not touch the caller's model
    for k, v in m.state_dict().items():
        assert torch.equal(v, before[k])
    assert type(m.fc1).__name__ == "QLinear"

    # the exported initializers are exactly alpha*T
    import onnx
    from onnx import numpy_helper
    inits = {t.name: numpy_helper.to_array(t) for t in onnx.load(onnx_path).graph.initializer}
    for name, mod in qat.quantized_modules(m):
        np.testing.assert_array_equal(inits[name + ".weight"], mod.quantized_weight().numpy())

    dst = str(tmp_path / "qat.edgenet")
    rep = convert(onnx_path, dst, weights=weights, granularity=granularity, keep_float=())
    assert len(rep.layers) == 5
    enc = "t2" if weights == "ternary" else "q3"
    for row in rep.layers:
        assert row.note == "lossless", rep.format_table()
        assert row.rel_error == 0.0
        assert row.encoding in ("t2", enc)

    xs = np.random.default_rng(0).standard_normal((5, 1, 8, 8)).astype(np.float32)
    want = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"]).run(
        None, {"input": xs})[0]
    with torch.no_grad():
        np.testing.assert_allclose(m(torch.from_numpy(xs)).numpy(), want, rtol=1e-4,
                                   atol=1e-5)
    scale = np.abs(want).max()
    for device in ("reference", "cpu"):
        got = edgenet.load(dst, device=device)(xs)
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * scale,
                                   err_msg=f"device={device}")


def test_reestimate_bn_gives_the_statistics_of_the_quantized_net():
    """Oracle: the mean and unbiased variance over (N, H, W) of the conv output, computed
    here with the quantized weights alpha*T (numpy rules, independent of the BN code)."""
    torch.manual_seed(3)
    net = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                        nn.Flatten(), nn.Linear(4 * 6 * 6, 3))
    qm = qat.prepare(net, "ternary", "layer")
    bn = qm[1]
    bn.running_mean.fill_(5.0)          # stale statistics, as left by training
    bn.running_var.fill_(7.0)
    w_before = qm[0].weight.detach().clone()
    x = torch.randn(40, 2, 6, 6)
    qat.reestimate_bn(qm, [x])           # one batch: the exact statistics
    levels, alpha = ternarize(qm[0].weight.detach().numpy(), "layer")
    wq = torch.from_numpy(alpha.reshape(-1, 1, 1, 1) * levels.astype(np.float32))
    y = F.conv2d(x, wq, qm[0].bias.detach(), padding=1).double()
    mean = y.mean(dim=(0, 2, 3))
    var = y.var(dim=(0, 2, 3), unbiased=True)
    np.testing.assert_allclose(bn.running_mean.double().numpy(), mean.numpy(), rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(bn.running_var.double().numpy(), var.numpy(), rtol=1e-5)
    assert bn.momentum == 0.1 and not qm.training and not bn.training
    assert torch.equal(qm[0].weight.detach(), w_before)   # nothing but the statistics moved
    # cumulative averaging over several batches: the mean of the batch means
    qat.reestimate_bn(qm, [x[:20], x[20:]])
    np.testing.assert_allclose(bn.running_mean.double().numpy(), mean.numpy(), rtol=1e-5,
                               atol=1e-6)
