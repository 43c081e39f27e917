"""Helpers shared by several test modules (tests import this, never each other)."""
from __future__ import annotations


def check_coverage(ops: dict, excluded: dict, spec: dict) -> None:
    """Every op of the spec has an implementation in ``ops`` or a stated exclusion."""
    missing = sorted(op for op in spec if op not in ops and op not in excluded)
    assert not missing, f"no kernel and no stated exclusion: {missing}"
    assert set(ops) <= set(spec), f"kernels for ops the spec lacks: {set(ops) - set(spec)}"
    assert not set(ops) & set(excluded)
    assert all(isinstance(why, str) and why for why in excluded.values())


# ----------------------------------------------------------------------------- activations
def activation_descs() -> list:
    """One activation descriptor per kind (non-default parameters where a kind has them),
    so a test over them covers every ActCode."""
    from edgenet.activation import ACT_CODES, act_desc
    params = {"LeakyRelu": (0.1, None), "Elu": (0.7, None), "Clip": (-1.5, 2.0),
              "HardSigmoid": (0.3, 0.4)}
    return [act_desc(k, *params.get(k, (None, None))) for k in ACT_CODES if k != "None"]


def special_values():
    """float32 inputs every activation must handle: NaN, ±inf, ±0, both sides of every
    kink, and a spread of ordinary values (all finite ones within ±80: the CUDA simulator
    computes exp() in Python floats, which raise instead of overflowing)."""
    import numpy as np
    v = [np.nan, -np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-30, -1e-30, -3.0, 3.0, -80.0, 80.0,
         -1.5, 2.0, 1.0, -1.0, 6.0, -6.0]
    v += list(np.linspace(-8, 8, 46))
    return np.asarray(v, dtype=np.float32).reshape(2, 4, 2, 4)
