"""Shape rule of the recurrent op LSTM (ONNX LSTM, layout 0, default activations).
Same contract as edgenet/shapes.py.

IR ``LSTM``: inputs X [T, N, I], W [D, 4H, I], R [D, 4H, H] (gate order i, o, f, c, as
ONNX), optional B [D, 8H] (Wb then Rb), optional initial_h / initial_c [D, N or 1, H]
(a batch of 1 broadcasts), optional P [D, 3H] (peepholes i, o, f); attributes
``hidden_size`` H, ``direction`` (forward, reverse,
bidirectional: D = 1, 1, 2), ``with_states`` 0/1. Output: Y [T, D, N, H] when with_states
is 0, else [T + 2, D, N, H]: Y, then Y_h (row T) and Y_c (row T + 1).
"""
from __future__ import annotations

from .shapes import Ctx

LSTM_DIRECTIONS = ("forward", "reverse", "bidirectional")


def shape_lstm(c: Ctx):
    x, w, r = c.shape(0), c.shape(1), c.shape(2)
    c.rank(0, x, 3, "X")
    c.rank(1, w, 3, "W")
    c.rank(2, r, 3, "R")
    hs = c.int_attr("hidden_size", lo=1)
    direction = c.choice_attr("direction", LSTM_DIRECTIONS)
    states = c.int_attr("with_states", lo=0)
    if states not in (0, 1):
        c.fail(f"with_states must be 0 or 1, got {states}")
    d = 2 if direction == "bidirectional" else 1
    t, n, i = x
    if t is None or n is None:
        c.fail(f"X {x} must have concrete sequence and batch dims here")
    if w != (d, 4 * hs, i):
        c.fail(f"W shape {w} must be {(d, 4 * hs, i)} (directions, 4·hidden, input {i})")
    if r != (d, 4 * hs, hs):
        c.fail(f"R shape {r} must be {(d, 4 * hs, hs)}")
    if c.present(3) and c.shape(3) != (d, 8 * hs):
        c.fail(f"B shape {c.shape(3)} must be {(d, 8 * hs)}")
    for k, what in ((4, "initial_h"), (5, "initial_c")):
        if c.present(k):
            s = c.shape(k)
            if len(s) != 3 or s[0] != d or s[2] != hs or s[1] not in (1, n):
                c.fail(f"{what} shape {s} must be {(d, n, hs)} (or batch 1)")
    if c.present(6) and c.shape(6) != (d, 3 * hs):
        c.fail(f"P shape {c.shape(6)} must be {(d, 3 * hs)}")
    if t <= 0 or n <= 0 or i <= 0:
        c.fail(f"empty X {x}")
    return [(t + 2 * states, d, n, hs)]
