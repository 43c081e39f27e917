"""Translator of ONNX LSTM (issue 13) onto the IR op LSTM (edgenet/shapes_rnn.py).
Registered in ``translate.TRANSLATORS``.

Supported: direction forward / reverse / bidirectional, optional B, initial_h/initial_c
absent, constant, computed by shape arithmetic (a fill whose size depends on symbolic dims
becomes a batch-1 constant the kernel broadcasts) or an activation; peepholes P; layout 0,
and layout 1 through Transposes; sequence_lens only when it is a constant equal to the
static sequence length; the default activations. W, R and B stay float32 constants (not
conv weights: never quantized).

The IR LSTM has one output: Y when Y_h and Y_c are unused, else Y with Y_h and Y_c appended
as two more timesteps; Slice (+ Reshape) nodes split them into the ONNX outputs.
"""
from __future__ import annotations

import numpy as np

from .graph import node_error

_DEFAULT_ACTS = ("sigmoid", "tanh", "tanh")
_BIG = 2 ** 31 - 1


def _initial_state(ctx, n, name, k, D, H, what, batch_major):
    """An initial_h / initial_c input: '' (zeros), a constant name or an activation
    (layout 1: [N, D, H] in the file, moved to [D, N, H])."""
    if k >= len(n.input) or not n.input[k]:
        return ""
    src = n.input[k]
    if src in ctx.fe.folded:
        va, vb = (np.asarray(v, np.float32) for v in ctx.fe.folded[src])
        if batch_major:
            va, vb = (v.transpose(1, 0, 2) if v.ndim == 3 else v for v in (va, vb))
        if va.shape != vb.shape or not np.array_equal(va, vb):
            # sized by symbolic dims: only a uniform fill (ConstantOfShape) is expressible
            if va.size and vb.size and np.all(va == va.flat[0]) and np.all(vb == va.flat[0]) \
                    and va.ndim == 3 and va.shape[0] == D and va.shape[2] == H:
                v = float(va.flat[0])
                if v == 0.0:
                    return ""
                return ctx.add_const(np.full((D, 1, H), v, np.float32), src)
            raise node_error(n, f"{what} '{src}' depends on the symbolic input dims in a way "
                             "edgenet cannot evaluate; freeze them at conversion "
                             "(--input-shape)")
        if va.ndim != 3 or va.shape[0] != D or va.shape[2] != H:
            raise node_error(n, f"{what} has shape {va.shape}, expected ({D}, batch, {H})")
        if not va.any():
            return ""
        return ctx.add_const(va, src)
    a = ctx.act_in(n, k)
    if batch_major:
        t = ctx.tmp(a + "::dnh")
        ctx.emit(f"{name}::{what}", "Transpose", [a], [t], {"perm": [1, 0, 2]})
        a = t
    return a


def LSTM(ctx, n, name, at):
    direction = at.get("direction", "forward")
    if direction not in ("forward", "reverse", "bidirectional"):
        raise node_error(n, f"LSTM direction {direction!r} is not supported")
    D = 2 if direction == "bidirectional" else 1
    for a in ("activation_alpha", "activation_beta", "clip"):
        if a in at:
            raise node_error(n, f"LSTM attribute '{a}' is not supported")
    acts = at.get("activations")
    if acts is not None and [a.lower() for a in acts] != list(_DEFAULT_ACTS) * D:
        raise node_error(n, f"LSTM attribute 'activations' {list(acts)} is not supported "
                         "(only the defaults Sigmoid, Tanh, Tanh)")
    if int(at.get("input_forget", 0)):
        raise node_error(n, "LSTM attribute 'input_forget' = 1 is not supported")
    layout = int(at.get("layout", 0))
    if layout not in (0, 1):
        raise node_error(n, f"LSTM attribute 'layout' = {layout} is not supported")
    W, R = ctx.cin(n, 1), ctx.cin(n, 2)
    if W is None or R is None:
        raise node_error(n, "LSTM W and R must be constants")
    W, R = np.asarray(W, np.float32), np.asarray(R, np.float32)
    if W.ndim != 3 or R.ndim != 3 or W.shape[0] != D or R.shape[:2] != W.shape[:2] \
            or W.shape[1] != 4 * R.shape[2]:
        raise node_error(n, f"LSTM W {W.shape} / R {R.shape} do not fit direction "
                         f"{direction!r}")
    H = R.shape[2]
    if int(at.get("hidden_size", H)) != H:
        raise node_error(n, f"LSTM hidden_size {at['hidden_size']} does not match R {R.shape}")
    x = ctx.act_in(n, 0)
    xs = ctx.shape(x, n)
    if len(xs) != 3 or xs[2] != W.shape[2]:
        raise node_error(n, f"LSTM X shape {xs} does not match W {W.shape}")
    T = xs[1] if layout else xs[0]
    if len(n.input) > 4 and n.input[4]:
        # only the trivial form: every sequence as long as X (what some exporters write)
        sl = ctx.cin(n, 4)
        if sl is None or T is None or np.size(sl) == 0 or np.any(np.asarray(sl) != T):
            raise node_error(n, "LSTM input 'sequence_lens' is not supported (only when "
                             "it is a constant equal to the static sequence length)")
    if layout:
        xt = ctx.tmp(x + "::tni")
        ctx.emit(name + "::X", "Transpose", [x], [xt], {"perm": [1, 0, 2]})
        x = xt
    p = ""
    if len(n.input) > 7 and n.input[7]:
        P = ctx.cin(n, 7)
        if P is None or np.shape(P) != (D, 3 * H):
            raise node_error(n, f"LSTM P (peepholes) must be a constant of shape {(D, 3 * H)}")
        p = ctx.add_const(np.asarray(P, np.float32), n.input[7])
    b = ""
    if len(n.input) > 3 and n.input[3]:
        B = ctx.cin(n, 3)
        if B is None:
            raise node_error(n, "LSTM B must be a constant")
        B = np.asarray(B, np.float32)
        if B.shape != (D, 8 * H):
            raise node_error(n, f"LSTM B shape {B.shape}, expected {(D, 8 * H)}")
        b = ctx.add_const(B, n.input[3])
    h0 = _initial_state(ctx, n, name, 5, D, H, "initial_h", layout)
    c0 = _initial_state(ctx, n, name, 6, D, H, "initial_c", layout)
    outs = list(n.output) + [""] * (3 - len(n.output))
    used = {i for m in ctx.fe.nodes for i in m.input} | set(ctx.fe.output_names)
    y_name, yh_name, yc_name = (o if o and o in used else "" for o in outs[:3])
    states = bool(yh_name or yc_name)
    ins = [x, ctx.add_const(W, n.input[1]), ctx.add_const(R, n.input[2]), b, h0, c0, p]
    while ins[-1] == "":
        ins.pop()
    attrs = {"hidden_size": H, "direction": direction, "with_states": int(states)}
    # layout 1: Y [N, T, D, H], Y_h / Y_c [N, D, H] (transposed from the IR's layout 0)
    yt = (lambda nm: ctx.tmp(nm + "::tdnh")) if layout else (lambda nm: nm)
    y_ir = yt(y_name) if y_name else ""
    if not states:
        ctx.emit(name, "LSTM", ins, [y_ir or ctx.tmp(outs[0] or name + "::Y")], attrs)
    else:
        packed = ctx.tmp(name + "::packed")
        ctx.emit(name, "LSTM", ins, [packed], attrs)
        sl = {"axes": [0], "steps": [1], "onnx_bounds": 1}
        if y_name:
            ctx.emit(name + "::Y", "Slice", [packed], [y_ir],
                     {"starts": [0], "ends": [-2], **sl})
        for nm, st, en in ((yh_name, -2, -1), (yc_name, -1, _BIG)):
            if nm:
                t = ctx.tmp(nm + "::row")
                ctx.emit(f"{name}::{nm}", "Slice", [packed], [t],
                         {"starts": [st], "ends": [en], **sl})
                r = yt(nm)
                ctx.emit(f"{name}::{nm}::reshape", "Reshape", [t], [r], {"shape": [D, -1, H]})
                if layout:
                    ctx.emit(f"{name}::{nm}::nd", "Transpose", [r], [nm], {"perm": [1, 0, 2]})
    if layout and y_name:
        ctx.emit(name + "::Y::ntdh", "Transpose", [y_ir], [y_name], {"perm": [2, 0, 1, 3]})


RNN_TRANSLATORS = {"LSTM": LSTM}
