"""What a .edgenet file holds, as one dict (``edgenet info``).

Counting rule, shared with the converter's report (converters/convert.py): **weights** are
the weight tensors of Conv, ConvTranspose and Gemm nodes (what gets quantized; bits/weight
is over those, per-channel scales included); **parameters** are every stored tensor
(weights, biases and other constants), so parameters = weights + other.
"""
from __future__ import annotations

import os
from collections import Counter

import numpy as np

WEIGHT_OPS = ("Conv", "ConvTranspose", "Gemm")


def describe(path) -> dict:
    """A JSON-ready description of the model file at ``path`` (header only, verified)."""
    from .format import read_model
    m = read_model(path)
    g = m.graph
    tensors = m.weights()
    weight_names = {n["inputs"][1] for n in g["nodes"]
                    if n["op"] in WEIGHT_OPS and len(n["inputs"]) > 1}
    enc = Counter()
    params = pbytes = weights = wbytes = 0
    for name, t in tensors.items():
        n = int(np.prod(t.shape)) if t.shape else 1
        nb = t.nbytes + (t.scale.nbytes if t.scale is not None else 0)
        params += n
        pbytes += nb
        enc[t.encoding.value] += n
        if name in weight_names:
            weights += n
            wbytes += nb
    return {
        "file": os.path.abspath(path),
        "bytes": m.size,
        "format_version": m.header["version"],
        "inputs": g["inputs"],
        "outputs": g["outputs"],
        "nodes": len(g["nodes"]),
        "ops": dict(Counter(n["op"] for n in g["nodes"]).most_common()),
        "parameters": params,
        "parameter_bytes": pbytes,
        "parameters_by_encoding": dict(enc),
        "weights": weights,
        "weight_bytes": wbytes,
        "bits_per_weight": (8.0 * wbytes / weights) if weights else 0.0,
        "metadata": {k: v for k, v in m.metadata.items() if k != "layers"},
    }
