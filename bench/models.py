#!/usr/bin/env python
"""Full-size benchmark models, written in plain torch (no torchvision).

    python bench/models.py --out DIR [names...]      # export DIR/<name>.onnx (skip existing)
    python bench/models.py --list

Library use:

    from bench.models import torch_model, export
    m = torch_model("resnet18")   # eval-mode torch module, same weights as the exported ONNX

Weights are random (deterministic per name) with randomized BatchNorm statistics, so the
exported ONNX file and torch_model(name) always agree.  torch is a dev/bench dependency only.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys

import torch

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _load_fixtures_module():
    name = "edgenet_make_fixtures"
    if name in sys.modules:
        return sys.modules[name]
    path = os.path.join(_REPO, "tools", "make_fixtures.py")
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


mf = _load_fixtures_module()


class _SE(torch.nn.Module):
    """Squeeze-excitation: GlobalAveragePool -> 1x1 conv -> ReLU -> 1x1 conv -> HardSigmoid
    -> channel-wise Mul."""

    def __init__(self, c, sq):
        super().__init__()
        self.fc1 = torch.nn.Conv2d(c, sq, 1)
        self.fc2 = torch.nn.Conv2d(sq, c, 1)

    def forward(self, x):
        s = torch.nn.functional.adaptive_avg_pool2d(x, 1)
        s = torch.nn.functional.hardsigmoid(self.fc2(torch.relu(self.fc1(s))))
        return x * s


class _IR3(torch.nn.Module):
    """MobileNetV3 inverted residual: [1x1 expand] -> kxk depthwise -> [SE] -> 1x1 project."""

    def __init__(self, cin, k, exp, cout, se, hs, s):
        super().__init__()
        act = torch.nn.Hardswish if hs else torch.nn.ReLU
        nn = torch.nn
        layers = []
        if exp != cin:
            layers += [nn.Conv2d(cin, exp, 1, bias=False), nn.BatchNorm2d(exp), act()]
        layers += [nn.Conv2d(exp, exp, k, s, k // 2, groups=exp, bias=False), nn.BatchNorm2d(exp),
                   act()]
        if se:
            layers.append(_SE(exp, mf._make_divisible(exp // 4)))
        layers += [nn.Conv2d(exp, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.block = nn.Sequential(*layers)
        self.res = s == 1 and cin == cout

    def forward(self, x):
        y = self.block(x)
        return x + y if self.res else y


class MobileNetV3Small(torch.nn.Module):
    """torchvision's MobileNetV3-small layout (SE + HardSwish), written out here."""

    CFG = [  # k, exp, out, SE, HardSwish, stride
        (3, 16, 16, True, False, 2), (3, 72, 24, False, False, 2), (3, 88, 24, False, False, 1),
        (5, 96, 40, True, True, 2), (5, 240, 40, True, True, 1), (5, 240, 40, True, True, 1),
        (5, 120, 48, True, True, 1), (5, 144, 48, True, True, 1), (5, 288, 96, True, True, 2),
        (5, 576, 96, True, True, 1), (5, 576, 96, True, True, 1)]

    def __init__(self, num_classes=1000):
        super().__init__()
        nn = torch.nn
        layers = [nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.Hardswish()]
        c = 16
        for k, e, o, se, hs, s in self.CFG:
            layers.append(_IR3(c, k, e, o, se, hs, s))
            c = o
        layers += [nn.Conv2d(c, 576, 1, bias=False), nn.BatchNorm2d(576), nn.Hardswish()]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Linear(576, 1024), nn.Hardswish(),
                                        nn.Linear(1024, num_classes))

    def forward(self, x):
        x = torch.flatten(torch.nn.functional.adaptive_avg_pool2d(self.features(x), 1), 1)
        return self.classifier(x)


# name -> (builder, input shape (C,H,W), seed)
MODELS = {
    "resnet18": (lambda: mf.ImageNetResNet((2, 2, 2, 2), 1000), (3, 224, 224), 101),
    "densenet121": (mf.densenet121, (3, 224, 224), 102),
    "mobilenetv2": (lambda: mf.MobileNetV2(1.0, 1000), (3, 224, 224), 103),
    "resnet20": (mf.resnet20, (3, 32, 32), 104),
    "mnist_seed_relu": (lambda: mf.MnistSeed("relu"), (1, 28, 28), 105),
    "mobilenetv3_small": (MobileNetV3Small, (3, 224, 224), 106),
}


def input_shape(name: str) -> tuple:
    """(C, H, W) of the model's input (batch dimension excluded)."""
    return MODELS[name][1]


def torch_model(name: str) -> torch.nn.Module:
    """Deterministically built eval-mode module (random init + randomized BN stats)."""
    builder, _, seed = MODELS[name]
    torch.manual_seed(seed)
    model = builder()
    torch.manual_seed(seed + 1000)
    mf.randomize_bn(model)
    return model.eval()


def export(name: str, out_dir: str, opset: int = 17, force: bool = False) -> str:
    """Export DIR/<name>.onnx (dynamic batch, input "input", output "output"); skip if present."""
    path = os.path.join(out_dir, name + ".onnx")
    if os.path.exists(path) and not force:
        print(f"skip {path} (exists)")
        return path
    os.makedirs(out_dir, exist_ok=True)
    mf.export_model(torch_model(name), input_shape(name), path, opset)
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("names", nargs="*", help=f"subset of: {' '.join(MODELS)} (default: all)")
    ap.add_argument("--out", help="output directory")
    ap.add_argument("--opset", type=int, default=17)
    ap.add_argument("--force", action="store_true", help="re-export even if the file exists")
    ap.add_argument("--list", action="store_true")
    args = ap.parse_args(argv)
    if args.list:
        for n, (_, shape, _) in MODELS.items():
            print(n, "x".join(map(str, shape)))
        return 0
    if not args.out:
        ap.error("--out is required")
    for n in args.names or list(MODELS):
        if n not in MODELS:
            ap.error(f"unknown model {n!r}; choose from {' '.join(MODELS)}")
        export(n, args.out, args.opset, args.force)
    return 0


if __name__ == "__main__":
    sys.exit(main())
