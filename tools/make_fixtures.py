#!/usr/bin/env python
"""Generate the small ONNX model fixtures under tests/fixtures/.

torch is a *dev-only* dependency: CI does not have it, so the generated .onnx files are
committed.  Regenerate with:

    python tools/make_fixtures.py            # all fixtures
    python tools/make_fixtures.py resnet20   # only some (names as in FIXTURES)

Every model is built deterministically (torch.manual_seed), every BatchNorm gets random
running statistics / affine parameters (so BN folding is really exercised), the model is
exported with the legacy TorchScript exporter (dynamo=False) with a dynamic batch axis
(input "input", output "output"), then checked with onnx.checker and compared with
onnxruntime at batch size 2.

The architecture classes here are also imported by bench/models.py.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import warnings

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURE_DIR = os.path.join(REPO, "tests", "fixtures")
DEFAULT_OPSET = 17


# ----------------------------------------------------------------------------- helpers

def randomize_bn(model: nn.Module) -> nn.Module:
    """Give every BatchNorm non-trivial stats/affine params (uses the global torch RNG)."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            n = m.num_features
            with torch.no_grad():
                m.running_mean.copy_(torch.randn(n) * 0.1)
                m.running_var.copy_(torch.rand(n) + 0.5)
                if m.affine:
                    m.weight.copy_(torch.rand(n) + 0.5)
                    m.bias.copy_(torch.randn(n) * 0.1)
    return model


def _make_divisible(v: float, divisor: int = 8, min_value: int | None = None) -> int:
    if min_value is None:
        min_value = divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


# ----------------------------------------------------------------------------- MNIST seed net

class MnistSeed(nn.Module):
    """conv12@5x5+Sigmoid, maxpool2, conv12@5x5+Sigmoid, maxpool2, flatten, FC512+act, FC10."""

    def __init__(self, hidden_act: str = "relu", hidden: int = 512):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 12, 5)
        self.conv2 = nn.Conv2d(12, 12, 5)
        self.fc1 = nn.Linear(12 * 4 * 4, hidden)
        self.fc2 = nn.Linear(hidden, 10)
        self.hidden_act = hidden_act

    def forward(self, x):
        x = F.max_pool2d(torch.sigmoid(self.conv1(x)), 2)
        x = F.max_pool2d(torch.sigmoid(self.conv2(x)), 2)
        x = x.view(x.size(0), -1)  # Shape/Gather/Unsqueeze/Concat/Reshape in the export
        x = self.fc1(x)
        x = torch.relu(x) if self.hidden_act == "relu" else torch.sigmoid(x)
        return self.fc2(x)


# ----------------------------------------------------------------------------- CIFAR ResNet-20

class BasicBlockA(nn.Module):
    """CIFAR BasicBlock with the "option A" (parameter-free) shortcut."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = stride != 1 or in_planes != planes
        self.pad = planes // 4

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample:
            sc = F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad), "constant", 0.0)
        else:
            sc = x
        return F.relu(out + sc)


class CifarResNet(nn.Module):
    def __init__(self, n_blocks=(3, 3, 3), num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        layers, in_planes = [], 16
        for i, (planes, n) in enumerate(zip((16, 32, 64), n_blocks)):
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                layers.append(BasicBlockA(in_planes, planes, stride))
                in_planes = planes
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layers(x)
        x = F.avg_pool2d(x, x.size()[3])
        x = x.view(x.size(0), -1)
        return self.fc(x)


def resnet20() -> CifarResNet:
    return CifarResNet((3, 3, 3), 10)


# ----------------------------------------------------------------------------- ImageNet ResNet-18

class BasicBlockB(nn.Module):
    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or in_planes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + identity)


class ImageNetResNet(nn.Module):
    """torchvision-equivalent ResNet with BasicBlocks (resnet18: layers=(2,2,2,2))."""

    def __init__(self, layers=(2, 2, 2, 2), num_classes: int = 1000):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        stages, in_planes = [], 64
        for i, (planes, n) in enumerate(zip((64, 128, 256, 512), layers)):
            blocks = []
            for j in range(n):
                blocks.append(BasicBlockB(in_planes, planes, 2 if (i > 0 and j == 0) else 1))
                in_planes = planes
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x):
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


# ----------------------------------------------------------------------------- DenseNet(-BC)

class DenseLayer(nn.Module):
    """Pre-activation bottleneck: BN-ReLU-Conv1x1(bn_size*k)-BN-ReLU-Conv3x3(k)."""

    def __init__(self, in_ch: int, growth: int, bn_size: int = 4):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(in_ch)
        self.conv1 = nn.Conv2d(in_ch, bn_size * growth, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(bn_size * growth)
        self.conv2 = nn.Conv2d(bn_size * growth, growth, 3, 1, 1, bias=False)

    def forward(self, x):
        out = self.conv1(F.relu(self.norm1(x)))
        out = self.conv2(F.relu(self.norm2(out)))
        return torch.cat([x, out], 1)


class Transition(nn.Sequential):
    def __init__(self, in_ch: int, out_ch: int):
        super().__init__(nn.BatchNorm2d(in_ch), nn.ReLU(inplace=False),
                         nn.Conv2d(in_ch, out_ch, 1, bias=False), nn.AvgPool2d(2, 2))


class DenseNet(nn.Module):
    """DenseNet-BC. stem="cifar": conv3x3 -> 2k channels; stem="imagenet": conv7x7/2 + maxpool."""

    def __init__(self, block_config=(6, 6, 6), growth: int = 12, compression: float = 0.5,
                 bn_size: int = 4, num_classes: int = 10, stem: str = "cifar",
                 init_features: int | None = None):
        super().__init__()
        ch = init_features if init_features is not None else 2 * growth
        if stem == "cifar":
            feats = [nn.Conv2d(3, ch, 3, 1, 1, bias=False)]
        else:
            feats = [nn.Conv2d(3, ch, 7, 2, 3, bias=False), nn.BatchNorm2d(ch),
                     nn.ReLU(inplace=False), nn.MaxPool2d(3, 2, 1)]
        for i, n in enumerate(block_config):
            for _ in range(n):
                feats.append(DenseLayer(ch, growth, bn_size))
                ch += growth
            if i != len(block_config) - 1:
                out_ch = int(ch * compression)
                feats.append(Transition(ch, out_ch))
                ch = out_ch
        feats += [nn.BatchNorm2d(ch), nn.ReLU(inplace=False)]
        self.features = nn.Sequential(*feats)
        self.classifier = nn.Linear(ch, num_classes)

    def forward(self, x):
        x = self.features(x)
        x = F.adaptive_avg_pool2d(x, 1)
        x = torch.flatten(x, 1)
        return self.classifier(x)


def densenet_bc_40() -> DenseNet:
    # depth 40 BC: (40 - 4) / 6 = 6 bottleneck layers per block
    return DenseNet((6, 6, 6), growth=12, compression=0.5, num_classes=10, stem="cifar")


def densenet121() -> DenseNet:
    return DenseNet((6, 12, 24, 16), growth=32, compression=0.5, num_classes=1000,
                    stem="imagenet", init_features=64)


# ----------------------------------------------------------------------------- MobileNetV2

class ConvBNReLU6(nn.Sequential):
    def __init__(self, in_ch, out_ch, k=3, stride=1, groups=1):
        super().__init__(nn.Conv2d(in_ch, out_ch, k, stride, (k - 1) // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(out_ch), nn.ReLU6(inplace=False))


class InvertedResidual(nn.Module):
    def __init__(self, inp, oup, stride, expand_ratio):
        super().__init__()
        hidden = int(round(inp * expand_ratio))
        self.use_res = stride == 1 and inp == oup
        layers = []
        if expand_ratio != 1:
            layers.append(ConvBNReLU6(inp, hidden, 1))
        layers += [ConvBNReLU6(hidden, hidden, 3, stride, groups=hidden),
                   nn.Conv2d(hidden, oup, 1, bias=False), nn.BatchNorm2d(oup)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv(x) if self.use_res else self.conv(x)


class MobileNetV2(nn.Module):
    """torchvision-equivalent MobileNetV2. scale_last=True also scales the 1280-channel last
    conv by the width multiplier (used for the tiny fixture to keep the file small)."""

    SETTING = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
               (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]

    def __init__(self, width_mult: float = 1.0, num_classes: int = 1000,
                 scale_last: bool = False, dropout: float = 0.2):
        super().__init__()
        in_ch = _make_divisible(32 * width_mult)
        last = 1280
        self.last_channel = (_make_divisible(last * width_mult) if scale_last
                             else _make_divisible(last * max(1.0, width_mult)))
        feats = [ConvBNReLU6(3, in_ch, 3, 2)]
        for t, c, n, s in self.SETTING:
            out_ch = _make_divisible(c * width_mult)
            for i in range(n):
                feats.append(InvertedResidual(in_ch, out_ch, s if i == 0 else 1, t))
                in_ch = out_ch
        feats.append(ConvBNReLU6(in_ch, self.last_channel, 1))
        self.features = nn.Sequential(*feats)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(self.last_channel, num_classes))

    def forward(self, x):
        x = self.features(x)
        x = F.adaptive_avg_pool2d(x, (1, 1))
        x = torch.flatten(x, 1)
        return self.classifier(x)


# ----------------------------------------------------------------------------- UNet (tiny)

def conv_bn_relu(i, o, k=3, s=1, p=1, d=1):
    return nn.Sequential(nn.Conv2d(i, o, k, s, p, dilation=d, bias=False),
                         nn.BatchNorm2d(o), nn.ReLU(inplace=False))


class UNetTiny(nn.Module):
    def __init__(self, out_ch: int = 2):
        super().__init__()
        self.enc1 = conv_bn_relu(3, 8)                      # 64x64
        self.down1 = conv_bn_relu(8, 16, 3, 2, 1)           # 32x32 (strided conv)
        self.down2 = conv_bn_relu(16, 32, 3, 2, 1)          # 16x16
        self.mid = conv_bn_relu(32, 32, 3, 1, 2, d=2)       # dilated conv
        # ConvTranspose with output_padding: 16 -> 32
        self.up1 = nn.ConvTranspose2d(32, 16, 3, stride=2, padding=1, output_padding=1)
        self.up1_bn = nn.BatchNorm2d(16)
        self.dec1 = conv_bn_relu(32, 16)                     # after concat with down1
        self.up2 = nn.ConvTranspose2d(16, 8, 2, stride=2)    # 32 -> 64
        self.dec2 = conv_bn_relu(16, 8)                      # after concat with enc1
        # bilinear Upsample path (Resize) from the 16x16 bottleneck
        self.ups = nn.Upsample(scale_factor=4, mode="bilinear", align_corners=False)
        self.ups_conv = conv_bn_relu(32, 4, 1, 1, 0)
        # PixelShuffle path (DepthToSpace) from the 32x32 level
        self.ps_conv = nn.Conv2d(16, 16, 3, 1, 1)
        self.ps = nn.PixelShuffle(2)
        self.head = nn.Conv2d(8 + 4 + 4, out_ch, 1)

    def forward(self, x):
        e1 = self.enc1(x)
        d1 = self.down1(e1)
        d2 = self.down2(d1)
        m = self.mid(d2)
        u1 = F.relu(self.up1_bn(self.up1(m)))
        u1 = self.dec1(torch.cat([u1, d1], 1))
        u2 = self.dec2(torch.cat([self.up2(u1), e1], 1))
        a = self.ups_conv(self.ups(m))
        b = self.ps(self.ps_conv(d1))
        return self.head(torch.cat([u2, a, b], 1))


# ----------------------------------------------------------------------------- Inception (tiny)

class InceptionBlock(nn.Module):
    def __init__(self, in_ch, c1, c3r, c3, c5r, c5, cp):
        super().__init__()
        self.b1 = conv_bn_relu(in_ch, c1, 1, 1, 0)
        self.b3 = nn.Sequential(conv_bn_relu(in_ch, c3r, 1, 1, 0), conv_bn_relu(c3r, c3, 3, 1, 1))
        self.b5 = nn.Sequential(conv_bn_relu(in_ch, c5r, 1, 1, 0), conv_bn_relu(c5r, c5, 5, 1, 2))
        self.bp = nn.Sequential(nn.MaxPool2d(3, 1, 1), conv_bn_relu(in_ch, cp, 1, 1, 0))

    def forward(self, x):
        return torch.cat([self.b1(x), self.b3(x), self.b5(x), self.bp(x)], 1)


class InceptionTiny(nn.Module):
    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.stem = conv_bn_relu(3, 16)
        self.inc1 = InceptionBlock(16, 8, 8, 16, 4, 8, 8)     # -> 40 ch, 32x32
        self.pool = nn.MaxPool2d(3, 2, 1)                     # 16x16
        self.inc2 = InceptionBlock(40, 16, 12, 24, 4, 8, 8)   # -> 56 ch
        self.avg = nn.AvgPool2d(16)                           # AveragePool (not Global*)
        self.fc = nn.Linear(56, num_classes)

    def forward(self, x):
        x = self.inc2(self.pool(self.inc1(self.stem(x))))
        x = self.avg(x)
        return self.fc(torch.flatten(x, 1))


# ----------------------------------------------------------------------------- all remaining ops

class AllOps(nn.Module):
    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3)                       # after reflect pad: 32x32
        self.bn1 = nn.BatchNorm2d(8)
        self.gconv = nn.Conv2d(8, 8, 3, 1, 1, groups=2)
        self.prelu = nn.PReLU(8)
        self.aconv = nn.Conv2d(8, 8, 3, stride=(2, 1), padding=1)   # 16x32
        g = torch.Generator().manual_seed(1234)
        self.register_buffer("cmul", torch.rand(1, 8, 1, 1, generator=g) + 0.5)
        self.register_buffer("cadd", torch.randn(1, 8, 1, 1, generator=g) * 0.1)
        self.register_buffer("csub", torch.randn(1, 8, 1, 1, generator=g) * 0.1)
        self.register_buffer("cdiv", torch.rand(1, 8, 1, 1, generator=g) + 0.5)
        self.conv3 = nn.Conv2d(8, 8, 3, 1, 1)
        self.bn3 = nn.BatchNorm2d(8)
        self.convt = nn.ConvTranspose2d(8, 8, 2, stride=2, groups=2)
        self.conv4 = nn.Conv2d(8, 16, 3, 2, 1)
        self.drop = nn.Dropout(0.3)
        self.fc = nn.Linear(16 + 16, num_classes)

    def forward(self, x):
        x = F.pad(x, (1, 1, 1, 1), mode="reflect")             # Pad reflect -> 34x34
        x = F.leaky_relu(self.bn1(self.conv1(x)), 0.1)         # 32x32
        x = self.prelu(self.gconv(x))                          # grouped conv + PReLU
        x = F.elu(self.aconv(x))                               # stride (2,1) -> 16x32
        x = (x * self.cmul + self.cadd - self.csub) / self.cdiv  # per-channel consts
        x = F.selu(x)
        x = torch.sigmoid(x) * torch.tanh(self.conv3(x))       # product of two activations
        x = F.hardsigmoid(self.bn3(x)) + F.hardswish(x)
        x = F.relu6(x * 3.0)
        # transpose / reshape round trip
        n, c, h, w = x.shape
        t = x.permute(0, 2, 3, 1).reshape(n, h * w, c)         # (N, HW, C)
        t = t.reshape(n, h, w, c).permute(0, 3, 1, 2)          # back to NCHW
        x = x + t
        # MatMul of two activations + Softmax (channel self-attention)
        q = x.flatten(2)                                       # (N, C, HW)
        att = torch.softmax(torch.matmul(q, q.transpose(1, 2)) * 0.05, dim=-1)
        x = torch.matmul(att, q).reshape(x.shape) + x
        x = F.max_pool2d(x, kernel_size=3, stride=2, padding=1, dilation=2)  # 7x15
        x = F.avg_pool2d(x, 3, stride=2, padding=1, ceil_mode=True, count_include_pad=False)
        x = self.convt(x)                                      # grouped ConvTranspose
        x = self.conv4(x)
        gm = F.adaptive_max_pool2d(x, 1)                       # GlobalMaxPool
        ga = F.adaptive_avg_pool2d(x, 1)                       # GlobalAveragePool
        f = torch.flatten(torch.cat([gm, ga], 1), 1)
        f = self.drop(f)
        return self.fc(f)


# ----------------------------------------------------------------------------- opset-9 Upsample

class UpsampleNet(nn.Module):
    """Tiny net for the opset-9 forms: Upsample (mode attr, scales input), Clip min/max attrs."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, 1, 1)
        self.bn1 = nn.BatchNorm2d(8)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.conv2 = nn.Conv2d(8, 2, 3, 1, 1)

    def forward(self, x):
        return self.conv2(self.up(F.relu6(self.bn1(self.conv1(x)))))


# ----------------------------------------------------------------------------- QAT-like weights

def make_quantized_trained(levels: int, seed: int) -> MnistSeed:
    """MnistSeed whose Conv/Linear weights are exactly alpha_o * T, T in {-L..L} (L=1 ternary,
    L=2 quinary), one float32 alpha per output channel."""
    torch.manual_seed(seed)
    m = MnistSeed("relu", hidden=128)  # smaller hidden layer keeps the fixture small
    L = levels
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, (nn.Conv2d, nn.Linear)):
                w = mod.weight
                o = w.shape[0]
                fan_in = w[0].numel()
                T = torch.randint(-L, L + 1, w.shape).to(torch.float32)
                flat = T.view(o, -1)
                flat[:, 0] = torch.where(flat[:, 0] == 0, torch.ones(o), flat[:, 0])  # >=1 nonzero
                alpha = (torch.rand(o) * 0.5 + 0.75) / (L * fan_in ** 0.5)
                alpha = alpha.to(torch.float32)
                w.copy_(alpha.view(-1, *([1] * (w.dim() - 1))) * T)
    return m


def check_quantized_weights(path: str, levels: int) -> int:
    """Check every Conv/Gemm weight initializer is alpha_o * T exactly. Returns count checked."""
    import onnx
    from onnx import numpy_helper
    model = onnx.load(path)
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    n = 0
    for node in model.graph.node:
        if node.op_type in ("Conv", "Gemm") and node.input[1] in inits:
            w = inits[node.input[1]].astype(np.float32)
            flat = w.reshape(w.shape[0], -1)
            absw = np.abs(flat)
            # alpha_o = smallest nonzero |w| in the row (exact: w = fl(alpha*T) with |T|<=2
            # is alpha or 2*alpha, both exact in float32)
            alpha = np.where(absw > 0, absw, np.inf).min(axis=1)
            T = flat / alpha[:, None]
            if not (np.all(np.isfinite(alpha)) and np.all(T == np.round(T))
                    and np.abs(T).max() <= levels):
                raise AssertionError(f"{path}: {node.name} weight not exactly {2*levels+1}-level")
            n += 1
    return n


# ----------------------------------------------------------------------------- export / verify

def export_model(model: nn.Module, input_shape, path: str, opset: int = DEFAULT_OPSET,
                 post=None, verbose: bool = True) -> dict:
    """Export with the legacy exporter (dynamic batch), optionally post-process the ONNX proto,
    verify with onnx.checker + onnxruntime (batch 2) vs torch. Returns a summary dict."""
    import onnx
    import onnxruntime as ort

    model.eval()
    dummy = torch.randn(1, *input_shape)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, dummy, buf, dynamo=False, opset_version=opset,
                          input_names=["input"], output_names=["output"],
                          dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
                          do_constant_folding=True,
                          # PRESERVE (model is in eval mode) skips the exporter's eval-mode
                          # Conv+BN fusion, so BatchNormalization nodes stay in the file
                          training=torch.onnx.TrainingMode.PRESERVE)
    proto = onnx.load_from_string(buf.getvalue())
    if post is not None:
        post(proto)
    onnx.checker.check_model(proto, full_check=True)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    onnx.save(proto, path)

    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, *input_shape, generator=g)
    with torch.no_grad():
        ref = model(x).numpy()
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    got = sess.run(None, {"input": x.numpy()})[0]
    assert got.shape == ref.shape, (got.shape, ref.shape)
    diff = float(np.abs(got - ref).max())
    ops = sorted({n.op_type for n in proto.graph.node})
    info = {"path": path, "opset": opset, "size": os.path.getsize(path), "max_abs_diff": diff,
            "ops": ops, "out_shape": tuple(ref.shape)}
    scale = max(1.0, float(np.abs(ref).max()))
    if not diff <= 1e-4 * scale:
        raise AssertionError(f"{path}: onnxruntime vs torch max abs diff {diff:.3g}")
    if verbose:
        print(f"OK {os.path.basename(path):28s} opset {opset:2d} {info['size']/1024:8.1f} KiB "
              f"out {info['out_shape']} maxdiff {diff:.2e}")
        print(f"   ops: {' '.join(ops)}")
    return info


def insert_dropout(after_op: str, ratio_as_attr: bool, ratio: float = 0.5):
    """Post-processing hook: put an inference-mode Dropout node right after the first node of
    type `after_op` (eval-mode torch exports drop Dropout; real-world ONNX files often keep it)."""
    import onnx
    from onnx import helper, numpy_helper

    def post(proto):
        g = proto.graph
        for idx, node in enumerate(g.node):
            if node.op_type == after_op:
                break
        else:
            raise ValueError(f"no {after_op} node")
        src = node.output[0]
        new = src + "_predrop"
        node.output[0] = new
        if ratio_as_attr:
            drop = helper.make_node("Dropout", [new], [src], name="dropout_inserted", ratio=ratio)
        else:
            rname = "dropout_ratio"
            g.initializer.append(numpy_helper.from_array(np.array(ratio, np.float32), rname))
            drop = helper.make_node("Dropout", [new, rname], [src], name="dropout_inserted")
        g.node.insert(idx + 1, drop)
    return post


# name -> (builder, input shape, opset, seed, post-processing hook, levels to check or None)
def _fixtures():
    return {
        "mnist_seed_relu": (lambda: MnistSeed("relu"), (1, 28, 28), 17, 1, None, None),
        "mnist_seed_sigmoid": (lambda: MnistSeed("sigmoid"), (1, 28, 28), 17, 2, None, None),
        "resnet20": (resnet20, (3, 32, 32), 17, 3, None, None),
        "densenet_bc": (densenet_bc_40, (3, 32, 32), 17, 4, None, None),
        "mobilenetv2_tiny": (lambda: MobileNetV2(0.35, 10, scale_last=True), (3, 64, 64), 17, 5,
                             None, None),
        "unet_tiny": (UNetTiny, (3, 64, 64), 17, 6, None, None),
        "inception_tiny": (InceptionTiny, (3, 32, 32), 17, 7, None, None),
        "allops": (AllOps, (3, 32, 32), 17, 8, insert_dropout("Flatten", False, 0.3), None),
        "mnist_seed_relu_op9": (lambda: MnistSeed("relu"), (1, 28, 28), 9, 1,
                                insert_dropout("Relu", True, 0.5), None),
        "resnet20_op11": (resnet20, (3, 32, 32), 11, 3, None, None),
        "unet_tiny_op11": (UNetTiny, (3, 64, 64), 11, 6, None, None),
        "upsample_op9": (UpsampleNet, (3, 16, 16), 9, 11, None, None),
        "allops_op10": (AllOps, (3, 32, 32), 10, 8, insert_dropout("Flatten", True, 0.3), None),
        "ternary_trained": (lambda: make_quantized_trained(1, 9), (1, 28, 28), 17, 9, None, 1),
        "quinary_trained": (lambda: make_quantized_trained(2, 10), (1, 28, 28), 17, 10, None, 2),
    }


FIXTURES = _fixtures()


def build(name: str) -> nn.Module:
    builder, _, _, seed, _, _ = FIXTURES[name]
    torch.manual_seed(seed)
    model = builder()
    torch.manual_seed(seed + 1000)
    randomize_bn(model)
    return model.eval()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("names", nargs="*", help=f"subset of: {' '.join(FIXTURES)}")
    ap.add_argument("--out", default=FIXTURE_DIR)
    args = ap.parse_args(argv)
    names = args.names or list(FIXTURES)
    total, failed = 0, []
    for name in names:
        _, shape, opset, _, post, levels = FIXTURES[name]
        path = os.path.join(args.out, name + ".onnx")
        try:
            info = export_model(build(name), shape, path, opset, post)
            if levels:
                n = check_quantized_weights(path, levels)
                print(f"   {n} Conv/Gemm weights exactly {2 * levels + 1}-level (alpha_o * T)")
            total += info["size"]
        except Exception as e:  # keep going, report at the end
            failed.append(name)
            print(f"FAIL {name}: {type(e).__name__}: {e}")
    print(f"total {total / 1024:.1f} KiB in {len(names) - len(failed)} files")
    if failed:
        print("failed:", " ".join(failed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
