"""ONNX front end: load an ONNX model (opsets 9..current), constant-fold the shape
arithmetic exporters emit, and normalize the graph to the edgenet IR (docs/IR.md).

The result is an :class:`IRGraph`: IR nodes (dicts), float32 constants, and the weights of
Conv/ConvTranspose/Gemm as :class:`Weight` records in IR layout (still unquantized, with a
per-output-channel multiplier that collects folded BatchNorm and Gemm ``alpha`` factors).
Quantization and writing happen in :mod:`converters.convert`.

Errors: one :class:`UnsupportedOpError` listing every unsupported op type and node (raised
before anything is written), otherwise :class:`ConversionError` naming the node.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np
import onnx
from onnx import helper, numpy_helper, shape_inference

from edgenet.errors import ConversionError, UnsupportedOpError
from edgenet.ir import FLT_MAX, act_desc

# batch sizes used for the two constant-folding evaluations: a folded value that differs
# between them derives from the (dynamic) batch dimension.
_B1, _B2 = 7, 11
_BATCH_PARAM = "N"
INT_MAX = 2**63 - 1

ACT_OPS = ("Relu", "LeakyRelu", "Elu", "Selu", "Sigmoid", "Tanh", "HardSigmoid",
           "HardSwish", "Clip")
TRANSLATE_OPS = frozenset(ACT_OPS + (
    "Conv", "ConvTranspose", "Gemm", "MatMul", "BatchNormalization", "PRelu", "MaxPool",
    "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "Add", "Sub", "Mul", "Div",
    "Concat", "Flatten", "Reshape", "Transpose", "Softmax", "Pad", "Resize", "Upsample",
    "DepthToSpace", "Slice", "Split", "Squeeze", "Unsqueeze", "Dropout", "Identity", "Cast",
))
FOLD_OPS = frozenset((
    "Constant", "Shape", "Size", "Gather", "Unsqueeze", "Squeeze", "Concat",
    "ConstantOfShape", "Cast", "Slice", "Reshape", "Range", "Mul", "Add", "Sub", "Div",
    "Equal", "Where", "Expand", "Transpose", "Identity", "Neg", "Abs", "Floor", "Ceil",
    "Sqrt", "Min", "Max", "Less", "Greater", "Not", "And", "Or", "Pow", "ReduceProd",
    "ReduceSum", "Flatten", "Dropout", "Tile", "Mod",
))
SUPPORTED_OPS = TRANSLATE_OPS | FOLD_OPS
IR_OPS = frozenset(("Conv", "ConvTranspose", "Gemm", "MatMul", "Affine", "Act", "PRelu",
                    "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "Add",
                    "Sub", "Mul", "Div", "Concat", "Flatten", "Reshape", "Transpose",
                    "Softmax", "Pad", "Resize", "DepthToSpace", "Slice"))
WEIGHT_OPS = ("Conv", "ConvTranspose", "Gemm")


@dataclass
class Weight:
    """A Conv/ConvTranspose/Gemm weight in IR layout (output channel = axis 0).

    ``values`` are the trained weights (float32, IR layout, no factor applied); the stored
    tensor stands for ``mult[o] · values[o, ...]`` (``mult`` collects folded BN / alpha).
    ``source`` names the ONNX initializer (or Constant node output) it came from and
    ``to_source`` maps an IR-layout array back to that tensor's layout.
    """

    name: str
    node: str
    op: str
    values: np.ndarray
    mult: np.ndarray
    source: Optional[str] = None
    source_kind: str = "initializer"     # or "constant" (a Constant node's output)
    to_source: Callable = field(default=lambda a: a)


@dataclass
class IRGraph:
    inputs: list
    outputs: list
    nodes: list
    consts: dict            # name -> float32 ndarray (biases, BN affine, other constants)
    weights: dict           # name -> Weight
    opset: int
    source_model: object = None

    def to_json(self) -> dict:
        return {"inputs": self.inputs, "outputs": self.outputs, "nodes": self.nodes}


def _err(node, msg):
    return ConversionError(f"node '{node.name or node.op_type}' ({node.op_type}): {msg}")


def _attrs(node) -> dict:
    out = {}
    for a in node.attribute:
        v = helper.get_attribute_value(a)
        if isinstance(v, bytes):
            v = v.decode("utf-8")
        elif isinstance(v, onnx.TensorProto):
            v = numpy_helper.to_array(v)
        elif isinstance(v, list) and v and isinstance(v[0], bytes):
            v = [x.decode("utf-8") for x in v]
        out[a.name] = v
    return out


def _opset(model) -> int:
    for o in model.opset_import:
        if o.domain in ("", "ai.onnx"):
            return int(o.version)
    return 1


# ------------------------------------------------------------------------- folding

def _np_dtype(to):
    return helper.tensor_dtype_to_np_dtype(int(to))


def _fold(op, ins, at, opset):
    """Evaluate one shape-arithmetic op on NumPy arrays (ONNX semantics)."""
    x = ins[0] if ins else None
    if op == "Constant":
        for k in ("value", "value_float", "value_floats", "value_int", "value_ints"):
            if k in at:
                v = at[k]
                if k in ("value_float", "value_floats"):
                    return np.asarray(v, dtype=np.float32)
                if k in ("value_int", "value_ints"):
                    return np.asarray(v, dtype=np.int64)
                return np.asarray(v)
        raise ValueError("Constant without a supported value attribute")
    if op in ("Identity", "Dropout"):
        return x
    if op == "Gather":
        return np.take(x, ins[1].astype(np.int64), axis=at.get("axis", 0))
    if op == "Unsqueeze":
        axes = at["axes"] if opset < 13 else ins[1].tolist()
        r = x.ndim + len(axes)
        out = x
        for a in sorted(a % r for a in axes):
            out = np.expand_dims(out, a)
        return out
    if op == "Squeeze":
        axes = at.get("axes") if opset < 13 else (ins[1].tolist() if len(ins) > 1 and ins[1] is not None else None)
        return np.squeeze(x) if axes is None else np.squeeze(x, axis=tuple(a % x.ndim for a in axes))
    if op == "Concat":
        return np.concatenate([np.atleast_1d(i) if i.ndim == 0 else i for i in ins], axis=at["axis"])
    if op == "ConstantOfShape":
        v = at.get("value", np.zeros(1, np.float32))
        return np.full(tuple(int(s) for s in x.reshape(-1)), v.reshape(-1)[0], dtype=v.dtype)
    if op == "Cast":
        return x.astype(_np_dtype(at["to"]))
    if op == "Slice":
        if opset < 10:
            starts, ends = at["starts"], at["ends"]
            axes = at.get("axes", list(range(len(starts))))
            steps = [1] * len(starts)
        else:
            starts, ends = ins[1].tolist(), ins[2].tolist()
            axes = ins[3].tolist() if len(ins) > 3 and ins[3] is not None else list(range(len(starts)))
            steps = ins[4].tolist() if len(ins) > 4 and ins[4] is not None else [1] * len(starts)
        sl = [slice(None)] * x.ndim
        for s, e, a, st in zip(starts, ends, axes, steps):
            sl[a % x.ndim] = slice(int(s), int(e), int(st))
        return x[tuple(sl)]
    if op == "Reshape":
        shape = at["shape"] if opset < 5 else ins[1].tolist()
        shape = [x.shape[i] if (s == 0 and not at.get("allowzero", 0)) else s
                 for i, s in enumerate(shape)]
        return x.reshape(shape)
    if op == "Flatten":
        a = at.get("axis", 1) % max(x.ndim, 1)
        return x.reshape(int(np.prod(x.shape[:a])), -1)
    if op == "Range":
        return np.arange(ins[0].item(), ins[1].item(), ins[2].item()).astype(ins[0].dtype)
    if op in ("Add", "Sub", "Mul", "Div", "Pow", "Mod", "Min", "Max"):
        a, b = ins[0], ins[1]
        if op == "Add":
            r = a + b
        elif op == "Sub":
            r = a - b
        elif op == "Mul":
            r = a * b
        elif op == "Div":
            if np.issubdtype(a.dtype, np.integer):
                r = np.trunc(a / b).astype(a.dtype)
            else:
                r = a / b
        elif op == "Pow":
            r = np.power(a, b)
        elif op == "Mod":
            r = np.fmod(a, b) if at.get("fmod", 0) else np.mod(a, b)
        elif op == "Min":
            r = ins[0]
            for i in ins[1:]:
                r = np.minimum(r, i)
        else:
            r = ins[0]
            for i in ins[1:]:
                r = np.maximum(r, i)
        return np.asarray(r).astype(a.dtype)
    if op == "Equal":
        return np.equal(ins[0], ins[1])
    if op == "Less":
        return np.less(ins[0], ins[1])
    if op == "Greater":
        return np.greater(ins[0], ins[1])
    if op == "Not":
        return np.logical_not(x)
    if op == "And":
        return np.logical_and(ins[0], ins[1])
    if op == "Or":
        return np.logical_or(ins[0], ins[1])
    if op == "Where":
        return np.where(ins[0], ins[1], ins[2])
    if op == "Expand":
        shape = tuple(int(s) for s in ins[1].reshape(-1))
        out = np.broadcast_shapes(x.shape, shape)
        return np.broadcast_to(x, out).copy()
    if op == "Tile":
        return np.tile(x, tuple(int(s) for s in ins[1].reshape(-1)))
    if op == "Transpose":
        return np.transpose(x, at.get("perm"))
    if op in ("Neg", "Abs", "Floor", "Ceil", "Sqrt"):
        f = {"Neg": np.negative, "Abs": np.abs, "Floor": np.floor, "Ceil": np.ceil,
             "Sqrt": np.sqrt}[op]
        return f(x).astype(x.dtype)
    if op in ("ReduceProd", "ReduceSum"):
        if op == "ReduceSum" and opset >= 13:
            axes = ins[1].tolist() if len(ins) > 1 and ins[1] is not None else None
        elif op == "ReduceProd" and opset >= 18:
            axes = ins[1].tolist() if len(ins) > 1 and ins[1] is not None else None
        else:
            axes = at.get("axes")
        f = np.prod if op == "ReduceProd" else np.sum
        keep = bool(at.get("keepdims", 1))
        return np.asarray(f(x, axis=None if not axes else tuple(axes), keepdims=keep)).astype(x.dtype)
    if op == "Size":
        return np.asarray(x.size, dtype=np.int64)
    raise NotImplementedError(op)


def _batch_target(va, vb):
    """A batch-dependent 1-D shape vector as a Reshape target: the batch entry at
    position 0 becomes 0 ("copy input dim"), a single other batch-derived entry -1.
    None when that is impossible."""
    if va.ndim != 1 or va.shape != vb.shape or not np.issubdtype(va.dtype, np.integer):
        return None
    va, vb = va.astype(np.int64), vb.astype(np.int64)
    dep = [i for i in range(len(va)) if va[i] != vb[i]]
    out = []
    for i in range(len(va)):
        if i not in dep:
            out.append(int(va[i]))
        elif i == 0 and va[i] == _B1 and vb[i] == _B2:
            out.append(0)
        elif len(dep) == 1 and -1 not in va.tolist():
            out.append(-1)
        else:
            return None
    return out


# ------------------------------------------------------------------------- loading

class _Frontend:
    def __init__(self, model):
        self.model = model
        self.opset = _opset(model)
        g = model.graph
        self.init = {t.name: numpy_helper.to_array(t) for t in g.initializer}
        self.const_node_outputs = set()
        self.inputs = [i for i in g.input if i.name not in self.init]
        self.output_names = [o.name for o in g.output]
        self.folded = {}        # name -> (vA, vB)
        for k, v in self.init.items():
            self.folded[k] = (v, v)
        self.nodes = list(g.node)
        self.names = {}
        for i, n in enumerate(self.nodes):
            self.names[id(n)] = n.name or f"{n.op_type}_{i}"
        self.shapes = {}

    # -- checks ------------------------------------------------------------------------
    def check_supported(self, nodes=None, extra=()):
        bad = {}
        for n in (nodes if nodes is not None else self.nodes):
            if n.domain not in ("", "ai.onnx") or n.op_type not in SUPPORTED_OPS:
                key = n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}::{n.op_type}"
                bad.setdefault(key, []).append(self.names[id(n)])
        for op, name in extra:
            bad.setdefault(op, []).append(name)
        if bad:
            parts = [f"{op} (node{'s' if len(v) > 1 else ''}: {', '.join(v)})"
                     for op, v in sorted(bad.items())]
            raise UnsupportedOpError(f"unsupported ONNX operator{'s' if len(bad) > 1 else ''}: "
                                     + "; ".join(parts))

    # -- shapes ------------------------------------------------------------------------
    def infer_shapes(self, nodes):
        """ONNX shape inference on the graph as folded so far (batch made symbolic)."""
        m = onnx.ModelProto()
        m.CopyFrom(self.model)
        g = m.graph
        del g.value_info[:]
        del g.node[:]
        g.node.extend(nodes)
        del g.initializer[:]
        needed = {i for n in nodes for i in n.input if i}
        for name in needed:
            if name in self.folded and name not in {x.name for x in self.inputs}:
                va, vb = self.folded[name]
                if va.shape == vb.shape and np.array_equal(va, vb):
                    g.initializer.append(numpy_helper.from_array(np.asarray(va), name))
                else:
                    t = _batch_target(va, vb)
                    if t is not None:
                        g.initializer.append(numpy_helper.from_array(
                            np.asarray(t, dtype=np.int64), name))
        ginputs = [copy.deepcopy(i) for i in self.inputs]
        del g.input[:]
        for i in ginputs:
            dims = i.type.tensor_type.shape.dim
            if len(dims):
                dims[0].Clear()
                dims[0].dim_param = _BATCH_PARAM
        g.input.extend(ginputs)
        for o in g.output:
            o.type.tensor_type.ClearField("shape")
        try:
            m2 = shape_inference.infer_shapes(m, strict_mode=False, data_prop=True)
        except Exception:  # noqa: BLE001 - partial shapes are fine, missing ones are checked
            return
        for v in list(m2.graph.value_info) + list(m2.graph.output) + list(m2.graph.input):
            tt = v.type.tensor_type
            if not tt.HasField("shape"):
                continue
            dims = []
            for j, d in enumerate(tt.shape.dim):
                if d.HasField("dim_value"):
                    dims.append(int(d.dim_value))
                elif j == 0:
                    dims.append(None)       # symbolic leading dim: the batch
                else:
                    dims.append(-1)         # unknown
            self.shapes[v.name] = (tuple(dims), tt.elem_type)

    def shape(self, name, node=None, required=True):
        if name in self.folded:
            return tuple(np.shape(self.folded[name][0]))
        s = self.shapes.get(name)
        if s is None or any(d == -1 for d in s[0]):
            if required:
                raise ConversionError(
                    f"node '{self.names[id(node)] if node is not None else '?'}': shape of "
                    f"'{name}' could not be inferred")
            return None
        return s[0]

    # -- folding -----------------------------------------------------------------------
    def fold(self):
        """Fold constant subgraphs (with two batch sizes). Returns the remaining nodes."""
        remaining = self.nodes
        self.infer_shapes(remaining)
        for _ in range(8):
            progress = False
            rest = []
            for n in remaining:
                if self._try_fold(n):
                    progress = True
                else:
                    rest.append(n)
            remaining = rest
            if not progress:
                break
            self.infer_shapes(remaining)
        return remaining

    def _try_fold(self, n):
        op = n.op_type
        if op not in FOLD_OPS or n.domain not in ("", "ai.onnx"):
            return False
        if op == "Shape":
            s = self.shape(n.input[0], n, required=False)
            if s is None:
                return False
            if any(d is None for d in s[1:]):
                return False
            at = _attrs(n)
            start, end = at.get("start", 0), at.get("end", None)
            va = np.array([_B1 if d is None else d for d in s], dtype=np.int64)[start:end]
            vb = np.array([_B2 if d is None else d for d in s], dtype=np.int64)[start:end]
            self.folded[n.output[0]] = (va, vb)
            return True
        if op in ("Size",):
            s = self.shape(n.input[0], n, required=False)
            if s is None:
                return False
            p = int(np.prod([d for d in s if d is not None]))
            self.folded[n.output[0]] = (np.asarray(p * (_B1 if None in s else 1), np.int64),
                                        np.asarray(p * (_B2 if None in s else 1), np.int64))
            return True
        ins = list(n.input)
        if any(i and i not in self.folded for i in ins):
            return False
        if op == "Dropout" and len(n.output) > 1 and n.output[1]:
            return False
        at = _attrs(n)
        try:
            ra = _fold(op, [self.folded[i][0] if i else None for i in ins], at, self.opset)
            rb = _fold(op, [self.folded[i][1] if i else None for i in ins], at, self.opset)
        except Exception as e:  # noqa: BLE001
            raise _err(n, f"constant folding failed: {e}") from None
        self.folded[n.output[0]] = (np.asarray(ra), np.asarray(rb))
        if op == "Constant":
            self.const_node_outputs.add(n.output[0])
        return True

    def const(self, name, node, what="input"):
        """A batch-independent folded constant, else None (an activation)."""
        if not name or name not in self.folded:
            return None
        va, vb = self.folded[name]
        if va.shape != vb.shape or not np.array_equal(va, vb):
            raise _err(node, f"{what} '{name}' depends on the batch size")
        return va


# ------------------------------------------------------------------------- translation

class _Builder:
    def __init__(self, fe: _Frontend):
        self.fe = fe
        self.opset = fe.opset
        self.nodes = []
        self.consts = {}
        self.weights = {}
        self.alias = {}
        self.used_names = set(fe.folded) | {o for n in fe.nodes for o in n.output} | \
            {i.name for i in fe.inputs}
        self.node_names = set()
        self.activations = {i.name for i in fe.inputs}

    # names
    def r(self, name):
        while name in self.alias:
            name = self.alias[name]
        return name

    @staticmethod
    def _unique(base, taken: set):
        name, k = base, 1
        while name in taken:
            name = f"{base}_{k}"
            k += 1
        taken.add(name)
        return name

    def new_name(self, base):
        return self._unique(base, self.used_names)

    def node_name(self, base):
        return self._unique(base, self.node_names)

    def emit(self, name, op, inputs, outputs, attrs=None):
        nd = {"name": self.node_name(name), "op": op, "inputs": list(inputs),
              "outputs": list(outputs), "attrs": dict(attrs or {})}
        self.nodes.append(nd)
        self.activations.update(outputs)
        return nd

    def add_const(self, value, base):
        name = self.new_name(base)
        self.consts[name] = np.ascontiguousarray(np.asarray(value, dtype=np.float32))
        return name

    def tmp(self, base):
        return self.new_name(base)

    # inputs
    def act_in(self, n, i):
        name = self.r(n.input[i])
        if name in self.fe.folded:
            raise _err(n, f"input '{n.input[i]}' is a constant where an activation is expected")
        if name not in self.activations:
            raise _err(n, f"input '{n.input[i]}' is not produced before this node")
        return name

    def operand(self, n, i):
        """Activation name or a constant registered in consts (for elementwise ops)."""
        name = n.input[i]
        c = self.fe.const(name, n)
        if c is not None:
            if not np.issubdtype(c.dtype, np.floating):
                raise _err(n, f"constant '{name}' is not floating point")
            if name not in self.consts:
                cname = name if name not in self.activations else self.new_name(name)
                self.consts[cname] = np.ascontiguousarray(c.astype(np.float32))
                return cname
            return name
        return self.act_in(n, i)

    def cin(self, n, i):
        if i >= len(n.input) or not n.input[i]:
            return None
        return self.fe.const(n.input[i], n)

    def shape(self, name, n):
        return self.fe.shape(name, n)

    # ------------------------------------------------------------------ translate
    def translate(self, n):
        name = self.fe.names[id(n)]
        fn = getattr(self, "t_" + n.op_type, None)
        if fn is None and n.op_type in ACT_OPS:
            fn = self.t_act
        try:
            fn(n, name, _attrs(n))
        except (ConversionError, UnsupportedOpError):
            raise
        except Exception as e:  # noqa: BLE001
            raise _err(n, f"{type(e).__name__}: {e}") from None

    def t_Identity(self, n, name, at):
        self.alias[n.output[0]] = self.r(n.input[0])

    def t_Dropout(self, n, name, at):
        if len(n.output) > 1 and n.output[1]:
            raise _err(n, "Dropout mask output is used")
        self.alias[n.output[0]] = self.r(n.input[0])

    def t_Cast(self, n, name, at):
        if _np_dtype(at["to"]) != np.float32:
            raise _err(n, "Cast of an activation to a type other than float32")
        self.alias[n.output[0]] = self.r(n.input[0])

    def t_act(self, n, name, at):
        x = self.act_in(n, 0)
        op = n.op_type
        if op == "Clip":
            if self.opset < 11:
                lo, hi = at.get("min", -FLT_MAX), at.get("max", FLT_MAX)
            else:
                lo_c, hi_c = self.cin(n, 1), self.cin(n, 2)
                for k, idx in ((lo_c, 1), (hi_c, 2)):
                    if k is None and len(n.input) > idx and n.input[idx]:
                        raise _err(n, "Clip bounds must be constants")
                lo = -FLT_MAX if lo_c is None else float(lo_c)
                hi = FLT_MAX if hi_c is None else float(hi_c)
            desc = act_desc("Clip", max(lo, -FLT_MAX), min(hi, FLT_MAX))
        elif op in ("LeakyRelu", "Elu", "HardSigmoid"):
            desc = act_desc(op, at.get("alpha"), at.get("beta"))
        elif op == "Selu":
            desc = act_desc(op, at.get("alpha"), at.get("gamma"))
        else:
            desc = act_desc(op)
        self.emit(name, "Act", [x], [n.output[0]], {"activation": desc})

    def _spatial_pads(self, n, at, in_hw, k, s, d):
        auto = at.get("auto_pad", "NOTSET")
        r = len(k)
        if auto in ("NOTSET", ""):
            p = list(at.get("pads", [0] * (2 * r)))
            return p
        if auto == "VALID":
            return [0] * (2 * r)
        if auto in ("SAME_UPPER", "SAME_LOWER"):
            b, e = [], []
            for i in range(r):
                out = -(-in_hw[i] // s[i])
                tot = max(0, (out - 1) * s[i] + (k[i] - 1) * d[i] + 1 - in_hw[i])
                small = tot // 2
                if auto == "SAME_UPPER":
                    b.append(small), e.append(tot - small)
                else:
                    b.append(tot - small), e.append(small)
            return b + e
        raise _err(n, f"unknown auto_pad {auto!r}")

    def _weight(self, n, idx, op, values_ir, to_source):
        src = n.input[idx]
        kind = "initializer" if src in self.fe.init else (
            "constant" if src in self.fe.const_node_outputs else None)
        wname = src if (src not in self.weights and src not in self.consts
                        and src not in self.activations) else self.new_name(src)
        self.used_names.add(wname)
        w = Weight(name=wname, node=self.fe.names[id(n)], op=op,
                   values=np.ascontiguousarray(values_ir, dtype=np.float32),
                   mult=np.ones(values_ir.shape[0], dtype=np.float64),
                   source=src if kind else None, source_kind=kind or "computed",
                   to_source=to_source)
        self.weights[wname] = w
        return wname

    def _bias(self, n, idx, o, mult=1.0):
        b = self.cin(n, idx)
        if b is None:
            if idx < len(n.input) and n.input[idx]:
                raise _err(n, "bias must be a constant")
            return ""
        b = np.asarray(b, dtype=np.float32).reshape(-1)
        if b.size == 1 and o != 1:
            b = np.full(o, b[0], np.float32)
        if b.size != o:
            raise _err(n, f"bias has {b.size} values, expected {o}")
        return self.add_const(b * np.float32(mult) if mult != 1.0 else b, n.input[idx])

    def t_Conv(self, n, name, at):
        x = self.act_in(n, 0)
        W = self.cin(n, 1)
        if W is None:
            raise _err(n, "weights must be constant")
        W = W.astype(np.float32)
        xs = self.shape(x, n)
        r = W.ndim - 2
        if r not in (1, 2):
            raise _err(n, f"{r}-D convolution is not supported (1-D and 2-D only)")
        k = list(W.shape[2:])
        s = list(at.get("strides", [1] * r))
        d = list(at.get("dilations", [1] * r))
        p = self._spatial_pads(n, at, list(xs[2:]), k, s, d)
        g = int(at.get("group", 1))
        o = W.shape[0]
        if r == 1:
            wir = W.reshape(W.shape[0], W.shape[1], 1, W.shape[2])
            wn = self._weight(n, 1, "Conv", wir, lambda a, sh=W.shape: a.reshape(sh))
            x4 = self.tmp(x + "::4d")
            self.emit(name + "::to2d", "Reshape", [x], [x4], {"shape": [0, 0, 1, -1]})
            y4 = self.tmp(n.output[0] + "::4d")
            self.emit(name, "Conv", [x4, wn, self._bias(n, 2, o), ""], [y4],
                      {"strides": [1, s[0]], "pads": [0, p[0], 0, p[1]],
                       "dilations": [1, d[0]], "group": g, "activation": None})
            self.emit(name + "::to1d", "Reshape", [y4], [n.output[0]], {"shape": [0, 0, -1]})
            return
        wn = self._weight(n, 1, "Conv", W, lambda a: a)
        self.emit(name, "Conv", [x, wn, self._bias(n, 2, o), ""], [n.output[0]],
                  {"strides": s, "pads": [p[0], p[1], p[2], p[3]], "dilations": d,
                   "group": g, "activation": None})

    def t_ConvTranspose(self, n, name, at):
        x = self.act_in(n, 0)
        W = self.cin(n, 1)
        if W is None:
            raise _err(n, "weights must be constant")
        W = W.astype(np.float32)
        if W.ndim != 4:
            raise _err(n, "only 2-D ConvTranspose is supported")
        xs = self.shape(x, n)
        g = int(at.get("group", 1))
        C, Og, kh, kw = W.shape
        O = Og * g
        wir = W.reshape(g, C // g, Og, kh, kw).transpose(0, 2, 1, 3, 4).reshape(O, C // g, kh, kw)

        def to_src(a, g=g, C=C, Og=Og, kh=kh, kw=kw):
            return a.reshape(g, Og, C // g, kh, kw).transpose(0, 2, 1, 3, 4).reshape(C, Og, kh, kw)

        s = list(at.get("strides", [1, 1]))
        d = list(at.get("dilations", [1, 1]))
        op_ = list(at.get("output_padding", [0, 0]))
        k = [kh, kw]
        auto = at.get("auto_pad", "NOTSET")
        if "output_shape" in at or auto in ("SAME_UPPER", "SAME_LOWER"):
            outs = list(at["output_shape"])[-2:] if "output_shape" in at else \
                [xs[2] * s[0], xs[3] * s[1]]
            b, e = [], []
            for i in range(2):
                tot = s[i] * (xs[2 + i] - 1) + op_[i] + ((k[i] - 1) * d[i] + 1) - outs[i]
                if tot < 0:
                    raise _err(n, "output_shape larger than the transposed conv produces")
                if auto == "SAME_UPPER":
                    b.append(tot // 2), e.append(tot - tot // 2)
                else:
                    b.append(tot - tot // 2), e.append(tot // 2)
            p = b + e
        elif auto == "VALID":
            p = [0, 0, 0, 0]
        else:
            p = list(at.get("pads", [0, 0, 0, 0]))
        wn = self._weight(n, 1, "ConvTranspose", wir, to_src)
        self.emit(name, "ConvTranspose", [x, wn, self._bias(n, 2, O)], [n.output[0]],
                  {"strides": s, "pads": p, "dilations": d, "group": g,
                   "output_padding": op_, "activation": None})

    def t_Gemm(self, n, name, at):
        B = self.cin(n, 1)
        if B is None:
            raise _err(n, "Gemm with a non-constant B is not supported")
        if self.fe.const(n.input[0], n) is not None:
            raise _err(n, "Gemm with a constant A is not supported")
        x = self.act_in(n, 0)
        B = B.astype(np.float32)
        if at.get("transA", 0):
            xt = self.tmp(x + "::T")
            self.emit(name + "::transA", "Transpose", [x], [xt], {"perm": [1, 0]})
            x = xt
        if at.get("transB", 0):
            wir, to_src = B, (lambda a: a)
        else:
            wir, to_src = B.T, (lambda a: np.ascontiguousarray(a.T))
        o = wir.shape[0]
        wn = self._weight(n, 1, "Gemm", wir, to_src)
        alpha, beta = float(at.get("alpha", 1.0)), float(at.get("beta", 1.0))
        self.weights[wn].mult *= alpha
        bias = ""
        C = self.cin(n, 2)
        if C is None and len(n.input) > 2 and n.input[2]:
            raise _err(n, "Gemm C must be a constant")
        if C is not None:
            C = np.asarray(C, np.float32)
            if C.size == 1:
                C = np.full(o, C.reshape(-1)[0], np.float32)
            elif C.shape in ((o,), (1, o)):
                C = C.reshape(o)
            else:
                raise _err(n, f"Gemm C of shape {C.shape} is not a per-output bias")
            bias = self.add_const(C * np.float32(beta), n.input[2])
        self.emit(name, "Gemm", [x, wn, bias], [n.output[0]], {"activation": None})

    def t_MatMul(self, n, name, at):
        B = self.cin(n, 1)
        if self.fe.const(n.input[0], n) is not None:
            raise _err(n, "MatMul with a constant A is not supported")
        a = self.act_in(n, 0)
        if B is None:
            self.emit(name, "MatMul", [a, self.act_in(n, 1)], [n.output[0]], {})
            return
        if B.ndim != 2:
            raise _err(n, "MatMul by a constant of rank != 2 is not supported")
        B = B.astype(np.float32)
        wn = self._weight(n, 1, "Gemm", B.T, lambda m: np.ascontiguousarray(m.T))
        ash = self.shape(a, n)
        if len(ash) == 2:
            self.emit(name, "Gemm", [a, wn, ""], [n.output[0]], {"activation": None})
            return
        if len(ash) < 2:
            raise _err(n, "MatMul of a 1-D activation is not supported")
        a2 = self.tmp(a + "::2d")
        self.emit(name + "::flatten", "Reshape", [a], [a2], {"shape": [-1, int(B.shape[0])]})
        y2 = self.tmp(n.output[0] + "::2d")
        self.emit(name, "Gemm", [a2, wn, ""], [y2], {"activation": None})
        tgt = [-1] + [int(v) for v in ash[1:-1]] + [int(B.shape[1])]
        if any(v is None or v < 0 for v in ash[1:-1]):
            raise _err(n, "MatMul operand shape unknown")
        self.emit(name + "::unflatten", "Reshape", [y2], [n.output[0]], {"shape": tgt})

    def t_BatchNormalization(self, n, name, at):
        x = self.act_in(n, 0)
        if len(n.output) > 1 and any(n.output[1:]):
            if at.get("training_mode", 0) or self.opset < 9:
                pass
        if at.get("training_mode", 0):
            raise _err(n, "BatchNormalization in training mode")
        vals = [self.cin(n, i) for i in range(1, 5)]
        if any(v is None for v in vals):
            raise _err(n, "BatchNormalization parameters must be constants")
        gamma, beta, mean, var = (np.asarray(v, np.float64).reshape(-1) for v in vals)
        eps = float(at.get("epsilon", 1e-5))
        S = gamma / np.sqrt(var + eps)
        T = beta - mean * S
        self.emit(name, "Affine", [x, self.add_const(S, name + "::scale"),
                                   self.add_const(T, name + "::shift")], [n.output[0]],
                  {"activation": None, "_bn": True})

    def t_PRelu(self, n, name, at):
        x = self.act_in(n, 0)
        sl = self.cin(n, 1)
        if sl is None:
            raise _err(n, "PRelu slope must be a constant")
        xs = self.shape(x, n)
        sl = np.asarray(sl, np.float32)
        if sl.size == 1:
            v = sl.reshape(1)
        else:
            c = xs[1] if len(xs) > 1 else None
            # broadcastable to (N, C, ...) with only the channel axis non-trivial
            full = np.broadcast_to(sl, (1,) * (len(xs) - sl.ndim) + sl.shape)
            nz = [i for i, s in enumerate(full.shape) if s != 1]
            if nz != [1] or full.shape[1] != c:
                raise _err(n, f"PRelu slope of shape {sl.shape} is not per-channel")
            v = full.reshape(-1)
        self.emit(name, "PRelu", [x, self.add_const(v, n.input[1])], [n.output[0]], {})

    def _pool(self, n, name, at, op):
        x = self.act_in(n, 0)
        if len(n.output) > 1 and n.output[1]:
            raise _err(n, "MaxPool Indices output is not supported")
        xs = self.shape(x, n)
        k = list(at["kernel_shape"])
        if len(k) != 2:
            raise _err(n, "only 2-D pooling is supported")
        s = list(at.get("strides", [1, 1]))
        d = list(at.get("dilations", [1, 1]))
        if op == "AveragePool" and d != [1, 1]:
            raise _err(n, "AveragePool with dilations is not supported")
        p = self._spatial_pads(n, at, list(xs[2:]), k, s, d)
        attrs = {"kernel": k, "strides": s, "pads": p, "ceil_mode": int(at.get("ceil_mode", 0))}
        if op == "MaxPool":
            if int(at.get("storage_order", 0)):
                pass
            attrs["dilations"] = d
        else:
            attrs["count_include_pad"] = int(at.get("count_include_pad", 0))
        self.emit(name, op, [x], [n.output[0]], attrs)

    def t_MaxPool(self, n, name, at):
        self._pool(n, name, at, "MaxPool")

    def t_AveragePool(self, n, name, at):
        self._pool(n, name, at, "AveragePool")

    def t_GlobalAveragePool(self, n, name, at):
        self.emit(name, "GlobalAveragePool", [self.act_in(n, 0)], [n.output[0]], {})

    def t_GlobalMaxPool(self, n, name, at):
        self.emit(name, "GlobalMaxPool", [self.act_in(n, 0)], [n.output[0]], {})

    def _binary(self, n, name, at):
        a, b = self.operand(n, 0), self.operand(n, 1)
        self.emit(name, n.op_type, [a, b], [n.output[0]], {"activation": None})

    t_Add = t_Sub = t_Mul = t_Div = _binary

    def t_Concat(self, n, name, at):
        ins = [self.operand(n, i) for i in range(len(n.input))]
        rank = len(self.shape(n.output[0], n))
        self.emit(name, "Concat", ins, [n.output[0]], {"axis": int(at["axis"]) % rank})

    def t_Flatten(self, n, name, at):
        x = self.act_in(n, 0)
        rank = len(self.shape(x, n))
        ax = int(at.get("axis", 1))
        self.emit(name, "Flatten", [x], [n.output[0]], {"axis": ax % rank if ax < 0 else ax})

    def _reshape_target(self, n, x, tname=None, shape_attr=None):
        xs = self.shape(x, n)
        if shape_attr is not None:
            return [int(v) for v in shape_attr]
        va, vb = self.fe.folded[tname]
        va, vb = va.reshape(-1).astype(np.int64), vb.reshape(-1).astype(np.int64)
        out = _batch_target(va, vb)
        if out is None or (out and out[0] == 0 and va[0] != 0 and not (xs and xs[0] is None)):
            raise _err(n, "reshape target depends on the batch size in an unsupported way")
        return out

    def t_Reshape(self, n, name, at):
        x = self.act_in(n, 0)
        if self.opset < 5:
            tgt = self._reshape_target(n, x, shape_attr=at["shape"])
        else:
            if n.input[1] not in self.fe.folded:
                raise _err(n, "reshape target is not a constant")
            tgt = self._reshape_target(n, x, tname=n.input[1])
        if at.get("allowzero", 0) and 0 in tgt:
            raise _err(n, "Reshape with allowzero=1 and a zero dimension")
        self.emit(name, "Reshape", [x], [n.output[0]], {"shape": tgt})

    def _static_reshape(self, n, name, x):
        out = self.shape(n.output[0], n)
        xs = self.shape(x, n)
        tgt = []
        for i, d in enumerate(out):
            if d is None:
                tgt.append(0 if (i == 0 and xs[0] is None) else -1)
            else:
                tgt.append(int(d))
        self.emit(name, "Reshape", [x], [n.output[0]], {"shape": tgt})

    def t_Squeeze(self, n, name, at):
        self._static_reshape(n, name, self.act_in(n, 0))

    def t_Unsqueeze(self, n, name, at):
        self._static_reshape(n, name, self.act_in(n, 0))

    def t_Transpose(self, n, name, at):
        x = self.act_in(n, 0)
        rank = len(self.shape(x, n))
        perm = at.get("perm", list(range(rank))[::-1])
        self.emit(name, "Transpose", [x], [n.output[0]], {"perm": [int(p) % rank for p in perm]})

    def t_Softmax(self, n, name, at):
        x = self.act_in(n, 0)
        xs = self.shape(x, n)
        rank = len(xs)
        if self.opset >= 13:
            self.emit(name, "Softmax", [x], [n.output[0]], {"axis": int(at.get("axis", -1)) % rank})
            return
        ax = int(at.get("axis", 1)) % rank
        if ax == rank - 1:
            self.emit(name, "Softmax", [x], [n.output[0]], {"axis": ax})
            return
        f = self.tmp(x + "::flat")
        self.emit(name + "::flatten", "Flatten", [x], [f], {"axis": ax})
        s = self.tmp(n.output[0] + "::flat")
        self.emit(name, "Softmax", [f], [s], {"axis": 1})
        tgt = [0 if (i == 0 and d is None) else int(d) for i, d in enumerate(xs)]
        self.emit(name + "::reshape", "Reshape", [s], [n.output[0]], {"shape": tgt})

    def t_Pad(self, n, name, at):
        x = self.act_in(n, 0)
        rank = len(self.shape(x, n))
        mode = at.get("mode", "constant")
        if mode not in ("constant", "reflect", "edge"):
            raise _err(n, f"Pad mode {mode!r} is not supported")
        if self.opset < 11:
            pads = list(at["pads"])
            value = float(at.get("value", 0.0))
        else:
            p = self.cin(n, 1)
            if p is None:
                raise _err(n, "pads must be constant")
            pads = [int(v) for v in p.reshape(-1)]
            cv = self.cin(n, 2)
            value = 0.0 if cv is None else float(np.asarray(cv).reshape(-1)[0])
            axes = self.cin(n, 3)
            if axes is not None:
                full = [0] * (2 * rank)
                ax = [int(a) % rank for a in axes.reshape(-1)]
                for j, a in enumerate(ax):
                    full[a] = pads[j]
                    full[rank + a] = pads[len(ax) + j]
                pads = full
        if len(pads) != 2 * rank:
            raise _err(n, f"pads has {len(pads)} values for a rank-{rank} input")
        if any(v < 0 for v in pads):
            raise _err(n, "negative pads are not supported")
        if not any(pads):
            self.alias[n.output[0]] = x
            return
        self.emit(name, "Pad", [x], [n.output[0]], {"pads": pads, "mode": mode, "value": value})

    def _resize(self, n, name, x, mode, ctm, nearest, scales, sizes):
        xs = self.shape(x, n)
        if len(xs) != 4:
            raise _err(n, "Resize of a non-4-D tensor is not supported")
        if mode in ("bilinear", "linear"):
            mode = "linear"
        elif mode != "nearest":
            raise _err(n, f"Resize mode {mode!r} is not supported")
        if ctm not in ("half_pixel", "asymmetric", "align_corners", "pytorch_half_pixel"):
            raise _err(n, f"coordinate_transformation_mode {ctm!r} is not supported")
        attrs = {"mode": mode, "coordinate_transformation_mode": ctm, "nearest_mode": nearest,
                 "scales": None, "sizes": None}
        if scales is not None and np.size(scales):
            sc = [float(v) for v in np.asarray(scales).reshape(-1)]
            if len(sc) != 4 or sc[0] != 1 or sc[1] != 1:
                raise _err(n, f"Resize scales {sc} must keep N and C")
            attrs["scales"] = sc[2:]
        elif sizes is not None and np.size(sizes):
            sz = [int(v) for v in np.asarray(sizes).reshape(-1)]
            if len(sz) != 4 or sz[1] != xs[1]:
                raise _err(n, f"Resize sizes {sz} must keep N and C")
            attrs["sizes"] = sz[2:]
        else:
            raise _err(n, "Resize needs constant scales or sizes")
        self.emit(name, "Resize", [x], [n.output[0]], attrs)

    def t_Upsample(self, n, name, at):
        x = self.act_in(n, 0)
        scales = at.get("scales") if self.opset < 9 else self.cin(n, 1)
        self._resize(n, name, x, at.get("mode", "nearest"), "asymmetric", "floor", scales, None)

    def t_Resize(self, n, name, at):
        x = self.act_in(n, 0)
        if self.opset < 11:
            self._resize(n, name, x, at.get("mode", "nearest"), "asymmetric", "floor",
                         self.cin(n, 1), None)
            return
        if int(at.get("exclude_outside", 0)) or int(at.get("antialias", 0)):
            raise _err(n, "Resize exclude_outside/antialias is not supported")
        axes = at.get("axes")
        scales, sizes = self.cin(n, 2), self.cin(n, 3)
        for idx in (2, 3):
            if idx < len(n.input) and n.input[idx] and self.cin(n, idx) is None:
                raise _err(n, "Resize scales/sizes must be constants")
        if axes is not None:
            ax = [int(a) % 4 for a in axes]
            if scales is not None and np.size(scales):
                full = [1.0] * 4
                for a, v in zip(ax, scales.reshape(-1)):
                    full[a] = float(v)
                scales = np.asarray(full)
            if sizes is not None and np.size(sizes):
                full = list(self.shape(x, n))
                for a, v in zip(ax, sizes.reshape(-1)):
                    full[a] = int(v)
                full[0] = 1
                sizes = np.asarray(full)
        self._resize(n, name, x, at.get("mode", "nearest"),
                     at.get("coordinate_transformation_mode", "half_pixel"),
                     at.get("nearest_mode", "round_prefer_floor"), scales, sizes)

    def t_DepthToSpace(self, n, name, at):
        self.emit(name, "DepthToSpace", [self.act_in(n, 0)], [n.output[0]],
                  {"blocksize": int(at["blocksize"]), "mode": at.get("mode", "DCR")})

    def _slice_norm(self, n, xs, starts, ends, axes, steps):
        rank = len(xs)
        S, E, A, T = [], [], [], []
        for s, e, a, st in zip(starts, ends, axes, steps):
            a = int(a) % rank
            s, e, st = int(s), int(e), int(st)
            if st == 0:
                raise _err(n, "Slice step 0")
            dim = xs[a]
            if dim is None:
                if s == 0 and e >= 2**31 - 1 and st == 1:
                    continue
                raise _err(n, "slicing the batch axis is not supported")
            if s < 0:
                s += dim
            if e < 0:
                e += dim
            if st > 0:
                s, e = min(max(s, 0), dim), min(max(e, 0), dim)
            else:
                s, e = min(max(s, -1), dim - 1), min(max(e, -1), dim - 1)
            if st == 1 and s == 0 and e == dim:
                continue
            S.append(s), E.append(e), A.append(a), T.append(st)
        return S, E, A, T

    def t_Slice(self, n, name, at):
        x = self.act_in(n, 0)
        xs = self.shape(x, n)
        if self.opset < 10:
            starts, ends = at["starts"], at["ends"]
            axes = at.get("axes", list(range(len(starts))))
            steps = [1] * len(starts)
        else:
            vals = [self.cin(n, i) for i in range(1, 5)]
            for i in range(1, min(5, len(n.input))):
                if n.input[i] and vals[i - 1] is None:
                    raise _err(n, "Slice parameters must be constants")
            starts, ends = vals[0].reshape(-1).tolist(), vals[1].reshape(-1).tolist()
            axes = vals[2].reshape(-1).tolist() if vals[2] is not None else list(range(len(starts)))
            steps = vals[3].reshape(-1).tolist() if vals[3] is not None else [1] * len(starts)
        S, E, A, T = self._slice_norm(n, xs, starts, ends, axes, steps)
        if not A:
            self.alias[n.output[0]] = x
            return
        self.emit(name, "Slice", [x], [n.output[0]], {"starts": S, "ends": E, "axes": A, "steps": T})

    def t_Split(self, n, name, at):
        x = self.act_in(n, 0)
        xs = self.shape(x, n)
        rank = len(xs)
        ax = int(at.get("axis", 0)) % rank
        dim = xs[ax]
        if dim is None:
            raise _err(n, "splitting the batch axis is not supported")
        if self.opset < 13:
            split = at.get("split")
        else:
            sp = self.cin(n, 1)
            split = None if sp is None else sp.reshape(-1).tolist()
        outs = list(n.output)
        if split is None:
            k = len(outs) if "num_outputs" not in at else int(at["num_outputs"])
            q = -(-dim // k)
            split = [min(q, dim - i * q) for i in range(k)]
        pos = 0
        for j, (o, sz) in enumerate(zip(outs, split)):
            if o:
                self.emit(f"{name}::{j}", "Slice", [x], [o],
                          {"starts": [pos], "ends": [pos + int(sz)], "axes": [ax], "steps": [1]})
            pos += int(sz)


# ------------------------------------------------------------------------- IR passes

def _consumers(nodes):
    cons = {}
    for i, nd in enumerate(nodes):
        for t in nd["inputs"]:
            if t:
                cons.setdefault(t, []).append(i)
    return cons


def _producers(nodes):
    return {o: i for i, nd in enumerate(nodes) for o in nd["outputs"]}


def _rename(nodes, old, new):
    for nd in nodes:
        nd["inputs"] = [new if t == old else t for t in nd["inputs"]]
        nd["outputs"] = [new if t == old else t for t in nd["outputs"]]


def _fold_bn(b: _Builder, outputs):
    nodes = b.nodes
    while True:
        cons, prod = _consumers(nodes), _producers(nodes)
        done = False
        for i, nd in enumerate(nodes):
            if nd["op"] != "Affine" or not nd["attrs"].get("_bn"):
                continue
            x = nd["inputs"][0]
            j = prod.get(x)
            if j is None or x in outputs or len(cons.get(x, [])) != 1:
                continue
            p = nodes[j]
            if p["op"] not in WEIGHT_OPS or p["attrs"].get("activation") is not None:
                continue
            if len(p["inputs"]) > 3 and p["inputs"][3]:
                continue
            S = b.consts[nd["inputs"][1]].astype(np.float64)
            T = b.consts[nd["inputs"][2]].astype(np.float64)
            w = b.weights[p["inputs"][1]]
            if S.size != w.values.shape[0]:
                continue
            w.mult = w.mult * S
            bias = p["inputs"][2]
            old = b.consts[bias].astype(np.float64) if bias else np.zeros(S.size)
            bname = b.new_name(p["name"] + "::bias")
            b.consts[bname] = (old * S + T).astype(np.float32)
            p["inputs"][2] = bname
            p["outputs"] = list(nd["outputs"])
            del nodes[i]
            done = True
            break
        if not done:
            break
    for nd in nodes:
        nd["attrs"].pop("_bn", None)


FUSE_INTO = ("Conv", "ConvTranspose", "Gemm", "Add", "Sub", "Mul", "Div", "Affine")


def _fuse_act(nodes, outputs):
    while True:
        cons, prod = _consumers(nodes), _producers(nodes)
        done = False
        for i, nd in enumerate(nodes):
            if nd["op"] != "Act":
                continue
            x = nd["inputs"][0]
            j = prod.get(x)
            if j is None or x in outputs or len(cons.get(x, [])) != 1:
                continue
            p = nodes[j]
            if p["op"] not in FUSE_INTO or p["attrs"].get("activation") is not None:
                continue
            p["attrs"]["activation"] = nd["attrs"]["activation"]
            p["outputs"] = list(nd["outputs"])
            del nodes[i]
            done = True
            break
        if not done:
            return


def _fuse_residual(nodes, outputs, shape_of):
    while True:
        cons, prod = _consumers(nodes), _producers(nodes)
        done = False
        for i, nd in enumerate(nodes):
            if nd["op"] != "Add":
                continue
            a, c = nd["inputs"]
            cands = []
            for conv_in, other in ((a, c), (c, a)):
                j = prod.get(conv_in)
                if j is None:
                    continue
                p = nodes[j]
                if (p["op"] != "Conv" or p["attrs"].get("activation") is not None
                        or (len(p["inputs"]) > 3 and p["inputs"][3])
                        or conv_in in outputs or len(cons.get(conv_in, [])) != 1):
                    continue
                k = prod.get(other)
                if k is None or k >= j:
                    if k is not None or other not in shape_of.inputs_set:
                        continue
                sa, sb = shape_of(conv_in), shape_of(other)
                if sa is None or sb is None or tuple(sa) != tuple(sb):
                    continue
                cands.append((j, other))
            if not cands:
                continue
            j, other = max(cands)
            p = nodes[j]
            ins = p["inputs"] + [""] * (4 - len(p["inputs"]))
            ins[3] = other
            p["inputs"] = ins
            p["attrs"]["activation"] = nd["attrs"].get("activation")
            p["outputs"] = list(nd["outputs"])
            del nodes[i]
            done = True
            break
        if not done:
            return


def _merge_pad(nodes, outputs):
    while True:
        cons, prod = _consumers(nodes), _producers(nodes)
        done = False
        for i, nd in enumerate(nodes):
            if nd["op"] != "Pad":
                continue
            at = nd["attrs"]
            p = at["pads"]
            if at["mode"] != "constant" or at["value"] != 0 or len(p) != 8 or any(p[:2]) \
                    or any(p[4:6]):
                continue
            y = nd["outputs"][0]
            cs = cons.get(y, [])
            if y in outputs or len(cs) != 1 or nodes[cs[0]]["op"] != "Conv" \
                    or nodes[cs[0]]["inputs"][0] != y:
                continue
            c = nodes[cs[0]]
            cp = c["attrs"]["pads"]
            c["attrs"]["pads"] = [cp[0] + p[2], cp[1] + p[3], cp[2] + p[6], cp[3] + p[7]]
            c["inputs"][0] = nd["inputs"][0]
            del nodes[i]
            done = True
            break
        if not done:
            return


def _prune(nodes, outputs):
    needed = set(outputs)
    keep = []
    for nd in reversed(nodes):
        if any(o in needed for o in nd["outputs"]):
            keep.append(nd)
            needed.update(t for t in nd["inputs"] if t)
    return keep[::-1]


# ------------------------------------------------------------------------- entry point

def load_onnx(src) -> IRGraph:
    """Load an ONNX model (path or ModelProto) and normalize it to the edgenet IR."""
    if isinstance(src, onnx.ModelProto):
        model = src
    else:
        try:
            model = onnx.load(str(src))
        except Exception as e:  # noqa: BLE001
            raise ConversionError(f"{src}: cannot read ONNX model: {e}") from None
    fe = _Frontend(model)
    if fe.opset < 7:
        raise ConversionError(f"ONNX opset {fe.opset} is too old (7 or newer is supported)")
    fe.check_supported()
    remaining = fe.fold()
    fe.check_supported(extra=[(n.op_type, fe.names[id(n)]) for n in remaining
                              if n.op_type not in TRANSLATE_OPS])

    b = _Builder(fe)
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
        b.translate(n)

    # graph outputs keep their names
    outputs = list(fe.output_names)
    prod = _producers(b.nodes)
    for o in outputs:
        r = b.r(o)
        if r == o:
            if o not in prod:
                raise ConversionError(f"graph output '{o}' is a constant or graph input; "
                                      "not supported")
            continue
        if r not in prod or r in outputs:
            raise ConversionError(f"graph output '{o}' is an alias of '{r}'; not supported")
        _rename(b.nodes, r, o)
        for k, v in list(b.alias.items()):
            if v == r:
                b.alias[k] = o
        b.alias[r] = o
    # resolve aliases in node inputs
    for nd in b.nodes:
        nd["inputs"] = [b.r(t) if t else t for t in nd["inputs"]]

    out_set = set(outputs)
    b.nodes = _prune(b.nodes, out_set)
    _fold_bn(b, out_set)
    _merge_pad(b.nodes, out_set)
    _fuse_act(b.nodes, out_set)

    input_shapes = {i["name"]: tuple(i["shape"]) for i in ir_inputs}

    def shape_of(name):
        if name in input_shapes:
            return input_shapes[name]
        s = fe.shapes.get(name)
        if s is None or any(d == -1 for d in s[0]):
            return None
        return s[0]
    shape_of.inputs_set = set(input_shapes)
    _fuse_residual(b.nodes, out_set, shape_of)
    b.nodes = _prune(b.nodes, out_set)

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
        if nd["op"] not in IR_OPS:
            raise ConversionError(f"node '{nd['name']}': internal error, op {nd['op']} "
                                  "is not an IR op")
    return IRGraph(inputs=ir_inputs, outputs=ir_outputs, nodes=b.nodes, consts=consts,
                   weights=weights, opset=fe.opset, source_model=model)
