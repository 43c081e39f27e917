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


def load_onnx(src) -> IRGraph:
    """Load an ONNX model (path or ModelProto) and normalize it to the edgenet IR."""
    if isinstance(src, onnx.ModelProto):
        model = src
    else:
        try:
            model = onnx.load(str(src))
        except Exception as e:  # noqa: BLE001
            raise ConversionError(f"{src}: cannot read ONNX model: {e}") from None
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
        dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
                for d in tt.shape.dim]
        if any(d is None for d in dims[1:]):
            raise ConversionError(f"graph input '{i.name}': only the batch axis may be dynamic")
        if dims:
            dims[0] = None
        ir_inputs.append({"name": i.name, "shape": dims, "dtype": "float32"})
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
        if r not in prod or r in outputs:
            raise ConversionError(f"graph output '{o}' is an alias of '{r}'; not supported")
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
    passes.fold_bn(b, out_set)
    passes.merge_pad(b.nodes, out_set)
    passes.fuse_act(b.nodes, out_set)

    input_shapes = {i["name"]: tuple(i["shape"]) for i in ir_inputs}

    def shape_of(name):
        if name in input_shapes:
            return input_shapes[name]
        s = fe.shapes.get(name)
        if s is None or any(d == -1 for d in s[0]):
            return None
        return s[0]
    shape_of.inputs_set = set(input_shapes)
    passes.fuse_residual(b.nodes, out_set, shape_of)
    b.nodes = passes.prune(b.nodes, out_set)

    ir_outputs = []
    for o in outputs:
        s = fe.shapes.get(o)
        if s is None or any(d == -1 for d in s[0]):
            raise ConversionError(f"graph output '{o}': shape could not be inferred")
        dims = list(s[0])
        if dims and ir_inputs and ir_inputs[0]["shape"] and ir_inputs[0]["shape"][0] is None:
            dims[0] = None
        ir_outputs.append({"name": o, "shape": dims, "dtype": "float32"})

    used = {t for nd in b.nodes for t in nd["inputs"] if t}
    consts = {k: v for k, v in b.consts.items() if k in used}
    weights = {k: v for k, v in b.weights.items() if k in used}
    for nd in b.nodes:
        if nd["op"] not in ir.OPS:
            raise ConversionError(f"node '{nd['name']}': internal error, op {nd['op']} "
                                  "is not an IR op")
    return IRGraph(inputs=ir_inputs, outputs=ir_outputs, nodes=b.nodes, consts=consts,
                   weights=weights, opset=fe.opset, source_model=model)
