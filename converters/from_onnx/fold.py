"""Constant folding of the shape arithmetic exporters emit (``Shape -> Gather -> Concat ->
Reshape`` and friends), and ONNX shape inference on what is left.

Every folded value is evaluated twice, with two batch sizes: a value that differs between
the two derives from the (dynamic) batch dimension.
"""
from __future__ import annotations

import copy

import numpy as np
import onnx
from onnx import numpy_helper, shape_inference

from edgenet.errors import ConversionError

from .graph import node_error, np_dtype, onnx_attrs, opset_of

# batch sizes used for the two constant-folding evaluations: a folded value that differs
# between them derives from the (dynamic) batch dimension.
_B1, _B2 = 7, 11
_BATCH_PARAM = "N"

# ONNX ops the folder evaluates when all their inputs are constants.
FOLD_OPS = frozenset((
    "Constant", "Shape", "Size", "Gather", "Unsqueeze", "Squeeze", "Concat",
    "ConstantOfShape", "Cast", "Slice", "Reshape", "Range", "Mul", "Add", "Sub", "Div",
    "Equal", "Where", "Expand", "Transpose", "Identity", "Neg", "Abs", "Floor", "Ceil",
    "Sqrt", "Min", "Max", "Less", "Greater", "Not", "And", "Or", "Pow", "ReduceProd",
    "ReduceSum", "Flatten", "Dropout", "Tile", "Mod",
))


def fold_value(op, ins, at, opset):
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
        return x.astype(np_dtype(at["to"]))
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


def batch_target(va, vb):
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


class Folder:
    """The ONNX graph being folded: initializers and folded values (each evaluated at two
    batch sizes), inferred shapes, and node names."""

    def __init__(self, model):
        self.model = model
        self.opset = opset_of(model)
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
                    t = batch_target(va, vb)
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
            at = onnx_attrs(n)
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
        at = onnx_attrs(n)
        try:
            ra = fold_value(op, [self.folded[i][0] if i else None for i in ins], at, self.opset)
            rb = fold_value(op, [self.folded[i][1] if i else None for i in ins], at, self.opset)
        except Exception as e:  # noqa: BLE001
            raise node_error(n, f"constant folding failed: {e}") from None
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
            raise node_error(node, f"{what} '{name}' depends on the batch size")
        return va
