"""NumPy reference (the oracle) for LSTM (edgenet/shapes_rnn.py): the ONNX equations,
one timestep at a time, in float64, returned as float32."""
from __future__ import annotations

import numpy as np

from ..ops import node_attrs as _attrs
from .ops import OpImpl


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def lstm_np(x, w, r, b, h0, c0, direction, p=None):
    """ONNX LSTM (layout 0): returns Y [T, D, N, H], Y_h, Y_c [D, N, H] (float64)."""
    x, w, r = (np.asarray(a, np.float64) for a in (x, w, r))
    T, N, _ = x.shape
    D, H4, H = r.shape
    hs = H4 // 4
    y = np.zeros((T, D, N, hs))
    yh = np.zeros((D, N, hs))
    yc = np.zeros((D, N, hs))
    for d in range(D):
        rev = direction == "reverse" or (direction == "bidirectional" and d == 1)
        bias = np.zeros(H4) if b is None else (np.asarray(b[d], np.float64)[:H4] +
                                                np.asarray(b[d], np.float64)[H4:])
        h = np.zeros((N, hs)) if h0 is None else np.broadcast_to(
            np.asarray(h0[d], np.float64), (N, hs)).copy()
        c = np.zeros((N, hs)) if c0 is None else np.broadcast_to(
            np.asarray(c0[d], np.float64), (N, hs)).copy()
        pd = np.zeros(3 * hs) if p is None else np.asarray(p[d], np.float64)
        pi, po, pf = (pd[k * hs:(k + 1) * hs] for k in range(3))
        for t in (range(T - 1, -1, -1) if rev else range(T)):
            g = x[t] @ w[d].T + h @ r[d].T + bias
            i, o, f, cc = (g[:, k * hs:(k + 1) * hs] for k in range(4))
            i, f, cc = _sigmoid(i + pi * c), _sigmoid(f + pf * c), np.tanh(cc)
            c = f * c + i * cc
            h = _sigmoid(o + po * c) * np.tanh(c)
            y[t, d] = h
        yh[d], yc[d] = h, c
    return y, yh, yc


class LSTM(OpImpl):
    def run(self, node, state, inputs, outputs):
        x, w, r, b, h0, c0, p = (list(self.args(node, state, inputs)) + [None] * 7)[:7]
        at = _attrs(node)
        y, yh, yc = lstm_np(x, w, r, b, h0, c0, at["direction"], p)
        if int(at["with_states"]):
            y = np.concatenate([y, yh[None], yc[None]], axis=0)
        outputs[0][...] = y.astype(np.float32)


RNN_OPS = {"LSTM": LSTM()}
