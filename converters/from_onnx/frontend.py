"""ONNX front end: load an ONNX model (opsets 7..current), fold constants (fold.py),
translate to the edgenet IR (translate.py), and run the graph passes (passes.py).

Errors: one :class:`UnsupportedOpError` listing every unsupported op type and node (raised
before anything is written), otherwise :class:`ConversionError` naming the node.
"""
from __future__ import annotations

import onnx

from edgenet import ir
from edgenet.errors import ConversionError, UnsupportedOpError

from . import passes
from .builder import Builder
from .fold import FOLD_OPS, Folder
from .fuse_layernorm import fuse_layernorm
from .graph import IRGraph
from .translate import TRANSLATORS, translate_node

# every ONNX op the front end accepts: translated, or folded when its inputs are constant
SUPPORTED_OPS = frozenset(TRANSLATORS) | FOLD_OPS


def check_supported(fe, nodes=None, extra=()):
    """Raise one UnsupportedOpError listing every unsupported op type and its nodes."""
    bad = {}
    for n in (nodes if nodes is not None else fe.nodes):
        if n.domain not in ("", "ai.onnx") or n.op_type not in SUPPORTED_OPS:
            key = n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}::{n.op_type}"
            bad.setdefault(key, []).append(fe.names[id(n)])
    for op, name in extra:
        bad.setdefault(op, []).append(name)
    if bad:
        parts = [f"{op} (node{'s' if len(v) > 1 else ''}: {', '.join(v)})"
                 for op, v in sorted(bad.items())]
        raise UnsupportedOpError(f"unsupported ONNX operator{'s' if len(bad) > 1 else ''}: "
                                 + "; ".join(parts))


def _io(name, shape, dim_names):
    """A graph input/output record: ``shape`` has None at symbolic dims; ``dim_names``
    (only when some dim is symbolic) names them as the source did (None: unnamed)."""
    rec = {"name": name, "shape": shape, "dtype": "float32"}
    if any(d is None for d in shape):
        rec["dim_names"] = dim_names
    return rec


def freeze_dims(model, input_shapes):
    """A copy of ``model`` whose graph inputs named in ``input_shapes`` ({name: dims})
    have those dims (``--input-shape``): an int freezes a dim, a name keeps it symbolic
    (e.g. ``["N", 3, 48, "W"]``); the graph outputs' shapes are cleared."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    init = {t.name for t in m.graph.initializer}
    names = [i.name for i in m.graph.input if i.name not in init]
    for name, dims in input_shapes.items():
        vi = next((i for i in m.graph.input if i.name == name and name not in init), None)
        if vi is None:
            raise ConversionError(f"--input-shape: the model has no input '{name}' "
                                  f"(inputs: {', '.join(names)})")
        tdims = vi.type.tensor_type.shape.dim
        if len(tdims) != len(dims):
            raise ConversionError(f"--input-shape {name}: {len(dims)} dims given, the input "
                                  f"has rank {len(tdims)}")
        for d, v in zip(tdims, dims):
            if isinstance(v, str) and not v.lstrip("-").isdigit():
                # a name keeps (or makes) the dim symbolic under that name
                if d.HasField("dim_value") and d.dim_value > 0:
                    raise ConversionError(f"--input-shape {name}: dim {d.dim_value} of the "
                                          f"model cannot be made symbolic ('{v}')")
                d.Clear()
                d.dim_param = v
                continue
            v = int(v)
            if v <= 0:
                raise ConversionError(f"--input-shape {name}: dims must be positive, got {dims}")
            if d.HasField("dim_value") and d.dim_value > 0 and d.dim_value != v:
                raise ConversionError(f"--input-shape {name}: dim {d.dim_value} of the model "
                                      f"cannot be changed to {v}")
            d.Clear()
            d.dim_value = v
    for o in m.graph.output:
        o.type.tensor_type.ClearField("shape")
    del m.graph.value_info[:]
    return m


def _static_dims(fe, name):
    """A value's shape, None for the dims that depend on symbolic input dims; None when
    unknown."""
    if name in fe.input_dims:
        s = fe.input_shape(name, 0), fe.input_shape(name, 1)
    else:
        s = fe.shapes_ab.get(name)
    if s is None or -1 in s[0] or -1 in s[1]:
        return None
    return tuple(a if a == b else None for a, b in zip(*s))


def load_onnx(src, input_shapes=None) -> IRGraph:
    """Load an ONNX model (path or ModelProto) and normalize it to the edgenet IR.

    Symbolic input dims stay symbolic (None in the IR shapes, named in ``dim_names``);
    ``input_shapes`` ({input name: dims}) freezes them first."""
    if isinstance(src, onnx.ModelProto):
        model = src
    else:
        try:
            model = onnx.load(str(src))
        except Exception as e:  # noqa: BLE001
            raise ConversionError(f"{src}: cannot read ONNX model: {e}") from None
    if input_shapes:
        model = freeze_dims(model, input_shapes)
    fe = Folder(model)
    if fe.opset < 7:
        raise ConversionError(f"ONNX opset {fe.opset} is too old (7 or newer is supported)")
    check_supported(fe)
    remaining = fe.fold()
    check_supported(fe, extra=[(n.op_type, fe.names[id(n)]) for n in remaining
                               if n.op_type not in TRANSLATORS])

    b = Builder(fe)
    ir_inputs = []
    for i in fe.inputs:
        tt = i.type.tensor_type
        if tt.elem_type != onnx.TensorProto.FLOAT:
            raise ConversionError(f"graph input '{i.name}': only float32 inputs are supported")
        dims = fe.input_dims[i.name]
        ir_inputs.append(_io(i.name, [d if isinstance(d, int) else None for d in dims],
                             [None if isinstance(d, int) else d for d in dims]))
    for n in remaining:
        translate_node(b, n)

    # graph outputs keep their names
    outputs = list(fe.output_names)
    prod = passes.producers(b.nodes)
    for o in outputs:
        r = b.r(o)
        if r == o:
            if o not in prod:
                raise ConversionError(f"graph output '{o}' is a constant or graph input; "
                                      "not supported")
            continue
        if r in fe.input_dims or r in outputs:
            # the output is a graph input or another output under a second name: a copy
            rank = len(fe.input_dims[r]) if r in fe.input_dims else len(fe.shape(r))
            b.emit(f"{o}::copy", "Reshape", [r], [o], {"shape": [0] * rank})
            continue
        if r not in prod:
            raise ConversionError(f"graph output '{o}' is an alias of constant '{r}'; "
                                  "not supported")
        passes.rename(b.nodes, r, o)
        for k, v in list(b.alias.items()):
            if v == r:
                b.alias[k] = o
        b.alias[r] = o
    # resolve aliases in node inputs
    for nd in b.nodes:
        nd["inputs"] = [b.r(t) if t else t for t in nd["inputs"]]

    out_set = set(outputs)
    b.nodes = passes.prune(b.nodes, out_set)
    fuse_layernorm(b, out_set, lambda t: _static_dims(fe, t))
    passes.fold_bn(b, out_set)
    passes.merge_pad(b.nodes, out_set)
    passes.fuse_act(b.nodes, out_set)

    def shape_of(name):
        """(shape under A, shape under B), or None when unknown."""
        if name in fe.input_dims:
            return fe.input_shape(name, 0), fe.input_shape(name, 1)
        s = fe.shapes_ab.get(name)
        if s is None or -1 in s[0] or -1 in s[1]:
            return None
        return s
    shape_of.inputs_set = set(fe.input_dims)
    passes.fuse_residual(b.nodes, out_set, shape_of)
    b.nodes = passes.prune(b.nodes, out_set)

    ir_outputs = []
    for o in outputs:
        s = fe.shapes_ab.get(o)
        if s is None or -1 in s[0] or -1 in s[1]:
            raise fe._missing(o, None) if fe.shape_errors else ConversionError(
                f"graph output '{o}': shape could not be inferred")
        dims = [a if a == b_ else None for a, b_ in zip(*s)]
        names = [None if a == b_ else fe.symbol_of(a, b_) for a, b_ in zip(*s)]
        ir_outputs.append(_io(o, dims, names))

    used = {t for nd in b.nodes for t in nd["inputs"] if t}
    consts = {k: v for k, v in b.consts.items() if k in used}
    weights = {k: v for k, v in b.weights.items() if k in used}
    for nd in b.nodes:
        if nd["op"] not in ir.OPS:
            raise ConversionError(f"node '{nd['name']}': internal error, op {nd['op']} "
                                  "is not an IR op")
    return IRGraph(inputs=ir_inputs, outputs=ir_outputs, nodes=b.nodes, consts=consts,
                   weights=weights, opset=fe.opset, source_model=model)
