"""The graph IR shared by the converter and every backend (see docs/IR.md)."""
from __future__ import annotations

import math

FLT_MAX = 3.4028234663852886e38

# kind -> (code, default alpha, default beta)
ACT_CODES = {
    "None": (0, 0.0, 0.0),
    "Relu": (1, 0.0, 0.0),
    "LeakyRelu": (2, 0.01, 0.0),
    "Elu": (3, 1.0, 0.0),
    "Selu": (4, 1.67326319217681884765625, 1.05070102214813232421875),
    "Sigmoid": (5, 0.0, 0.0),
    "Tanh": (6, 0.0, 0.0),
    "Clip": (7, -FLT_MAX, FLT_MAX),
    "HardSigmoid": (8, 0.2, 0.5),
    "HardSwish": (9, 0.0, 0.0),
}


def act_code(desc) -> tuple:
    """Activation descriptor (dict or None) -> (int code, float alpha, float beta)."""
    if desc is None:
        return 0, 0.0, 0.0
    code, a, b = ACT_CODES[desc["kind"]]
    alpha = desc.get("alpha")
    beta = desc.get("beta")
    return code, float(a if alpha is None else alpha), float(b if beta is None else beta)


def act_desc(kind: str, alpha=None, beta=None) -> dict:
    """Normalized activation descriptor with defaults filled in."""
    code, a, b = ACT_CODES[kind]
    return {"kind": kind, "alpha": float(a if alpha is None else alpha),
            "beta": float(b if beta is None else beta)}


def act_numpy(x, code: int, alpha: float, beta: float):
    """Reference activation in NumPy (float32 in, float32 out)."""
    import numpy as np
    x = np.asarray(x, dtype=np.float32)
    if code == 0:
        return x
    if code == 1:
        return np.maximum(x, 0)
    if code == 2:
        return np.where(x >= 0, x, np.float32(alpha) * x)
    if code == 3:
        return np.where(x > 0, x, np.float32(alpha) * np.expm1(x))
    if code == 4:
        return np.float32(beta) * np.where(x > 0, x, np.float32(alpha) * np.expm1(x))
    if code == 5:
        return (1.0 / (1.0 + np.exp(-x))).astype(np.float32)
    if code == 6:
        return np.tanh(x)
    if code == 7:
        return np.minimum(np.maximum(x, np.float32(alpha)), np.float32(beta))
    if code == 8:
        return np.clip(np.float32(alpha) * x + np.float32(beta), 0, 1).astype(np.float32)
    if code == 9:
        return x * np.clip(x / 6 + 0.5, 0, 1).astype(np.float32)
    raise ValueError(f"unknown activation code {code}")


assert math.isfinite(FLT_MAX)
