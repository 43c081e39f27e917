"""The graph IR shared by the converter and every backend (see docs/IR.md).

The op spec lives in edgenet/ops.py (one record per op), the shape rules in
edgenet/shapes.py and the activations in edgenet/activation.py; this module derives the
validator's tables from the spec and runs the checks (``validate``, ``infer_shapes``).
The names it re-exports are the IR's public vocabulary.
"""
from __future__ import annotations

from .activation import ACT_CODES, FLT_MAX, ActCode, act_code, act_desc, act_numpy
from .ops import ANY, CONST, SPEC
from .shapes import (MAX_GEOM, PAD_MODES, RESIZE_COORD_MODES, RESIZE_MODES,
                     RESIZE_NEAREST_MODES, Ctx, resize_output_hw, slice_ranges)

__all__ = ["ACT_CODES", "ACT_OPS", "CONST_INPUTS", "CONST_OK_INPUTS", "FLT_MAX", "MAX_GEOM",
           "N_INPUTS", "OPS", "OPTIONAL_INPUTS", "PAD_MODES", "RESIZE_COORD_MODES",
           "RESIZE_MODES", "RESIZE_NEAREST_MODES", "SHAPES", "ActCode", "act_code",
           "act_desc", "act_numpy", "infer_shapes", "resize_output_hw", "slice_ranges",
           "validate"]

# ---- tables derived from the spec (edgenet/ops.py); nothing here is edited by hand
OPS = frozenset(SPEC)
# op -> input positions that must be constants (tensor-table entries) when present
CONST_INPUTS = {op: frozenset(i for i, x in enumerate(s.inputs) if x.kind == CONST)
                for op, s in SPEC.items()}
# op -> input positions that may be constants (must-be or either)
CONST_OK_INPUTS = {op: frozenset(i for i, x in enumerate(s.inputs) if x.kind in (CONST, ANY))
                   for op, s in SPEC.items()}
# op -> (min inputs, max inputs or None for unbounded); every op has exactly one output
N_INPUTS = {op: s.n_inputs for op, s in SPEC.items()}
# op -> positions that may be "" (absent)
OPTIONAL_INPUTS = {op: frozenset(i for i, x in enumerate(s.inputs) if x.optional)
                   for op, s in SPEC.items()}
# ops carrying an `activation` attribute (fused epilogue)
ACT_OPS = frozenset(op for op, s in SPEC.items() if s.activation)
# op -> shape rule
SHAPES = {op: s.shape for op, s in SPEC.items()}


def _check(node, in_shapes, consts):
    c = Ctx(node, in_shapes, consts)
    if not isinstance(node, dict):
        c.fail(f"node must be a dict, got {type(node).__name__}")
    if c.op not in OPS:
        c.fail(f"unknown op {c.op!r}")
    if not isinstance(c.attrs, dict):
        c.fail("attrs must be an object")
    c.defaults = SPEC[c.op].defaults()
    lo, hi = N_INPUTS[c.op]
    n = len(c.inputs)
    if n < lo or (hi is not None and n > hi):
        want = f"{lo}" if lo == hi else f"{lo}..{hi if hi is not None else 'n'}"
        c.fail(f"expects {want} inputs, got {n}")
    if any(not isinstance(i, str) for i in c.inputs):
        c.fail(f"input names must be strings, got {c.inputs!r}")
    if len(c.in_shapes) != n:
        c.fail(f"got {len(c.in_shapes)} input shapes for {n} inputs")
    opt = OPTIONAL_INPUTS[c.op]
    for i, nm in enumerate(c.inputs):
        if nm == "" and i not in opt:
            c.fail(f"input {i} is required but absent")
        if nm != "" and i in CONST_INPUTS[c.op] and nm not in c.consts:
            c.fail(f"input {i} '{nm}' must be a constant")
    outs = node.get("outputs", [])
    if not isinstance(outs, (list, tuple)) or len(outs) != 1 or not outs[0]:
        c.fail(f"expects exactly one (named) output, got {outs!r}")
    if c.op not in ACT_OPS and c.attrs.get("activation") is not None:
        c.fail("this op takes no activation")
    shapes = SHAPES[c.op](c)
    for s in shapes:
        if any(d is not None and d <= 0 for d in s):
            c.fail(f"empty output shape {s}")
    return shapes


def validate(node, in_shapes, consts) -> None:
    """Raise ModelError ("node 'name' (op): why") unless the node is executable as given."""
    _check(node, in_shapes, consts)


def infer_shapes(node, in_shapes, consts) -> list:
    """Output shapes (list of tuples) of a node; validates it first."""
    return _check(node, in_shapes, consts)
