"""Constant folding of the shape arithmetic exporters emit (``Shape -> Gather -> Concat ->
Reshape`` and friends), and ONNX shape inference on what is left.

Every folded value is evaluated twice, under two assignments of concrete values to the
symbolic input dims (batch, height, width...): a value that differs between the two
derives from them.
"""
from __future__ import annotations

import copy

import numpy as np
import onnx
from onnx import numpy_helper, shape_inference

from edgenet.errors import ConversionError

from .graph import node_error, np_dtype, onnx_attrs, opset_of


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


def dyn_target(va, vb, xa, xb):
    """A reshape target that depends on symbolic dims, as an IR Reshape ``shape``.

    ``va``/``vb``: the target under the two dim assignments; ``xa``/``xb``: the reshaped
    tensor's shape under them. An entry that equals the input's dim at the same position
    under both assignments becomes 0 ("copy input dim"); a single other varying entry -1
    ("infer"). None when the IR cannot express it."""
    if va.ndim != 1 or va.shape != vb.shape or not np.issubdtype(va.dtype, np.integer):
        return None
    va, vb = va.astype(np.int64), vb.astype(np.int64)
    dep = [i for i in range(len(va)) if va[i] != vb[i]]
    copy_ok = [i for i in dep if i < len(xa) and va[i] == xa[i] and vb[i] == xb[i]]
    rest = [i for i in dep if i not in copy_ok]
    if len(rest) > 1 or (rest and -1 in va.tolist()):
        return None
    return [0 if i in copy_ok else (-1 if i in rest else int(va[i])) for i in range(len(va))]


# the two values each symbolic dim takes in the two evaluations (k-th symbol: 64·p with
# p the (2k)-th / (2k+1)-th odd prime): distinct, and divisible by 64 so that strided
# networks see whole feature maps.
_PRIMES = (3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73)
MAX_FOLD_ELEMENTS = 1 << 20     # a size-dependent "constant" larger than this is not folded


def _dim_values(k):
    if 2 * k + 1 >= len(_PRIMES):
        raise ConversionError("too many symbolic input dimensions (at most 10)")
    return 64 * _PRIMES[2 * k], 64 * _PRIMES[2 * k + 1]


def _default_dim_name(inp, ax, rank, single):
    base = "N" if ax == 0 else ("H", "W")[ax - 2] if rank == 4 and ax in (2, 3) else f"d{ax}"
    return base if single else f"{inp}.{base}"


class Folder:
    """The ONNX graph being folded: initializers and folded values, inferred shapes, node
    names.

    Symbolic input dims (``dim_param`` or unnamed) are kept symbolic: the graph is
    evaluated under two assignments of concrete values to them (``self.assign``), so every
    folded value and every inferred shape exists twice; whatever differs between the two
    depends on the symbolic dims (``None`` in :meth:`shape`)."""

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
        self.shapes = {}        # name -> (dims with None where symbolic, -1 unknown; elem type)
        self.shapes_ab = {}     # name -> (dims under A, dims under B)
        self.shape_errors = []  # ONNX shape inference errors (strict mode), in order
        # symbolic dims of the graph inputs
        self.symbols = []       # names, in order of first appearance
        self.input_dims = {}    # input name -> [int | symbol name]
        single = len(self.inputs) == 1
        for i in self.inputs:
            tt = i.type.tensor_type
            if not tt.HasField("shape"):
                raise ConversionError(f"graph input '{i.name}' has no shape (not even a rank)")
            dims = []
            for ax, d in enumerate(tt.shape.dim):
                if d.HasField("dim_value") and d.dim_value > 0:
                    dims.append(int(d.dim_value))
                    continue
                nm = d.dim_param or _default_dim_name(i.name, ax, len(tt.shape.dim), single)
                dims.append(nm)
                if nm not in self.symbols:
                    self.symbols.append(nm)
            self.input_dims[i.name] = dims
        self.assign = ({}, {})
        for k, nm in enumerate(self.symbols):
            a, b = _dim_values(k)
            self.assign[0][nm], self.assign[1][nm] = a, b

    def input_shape(self, name, v):
        """Concrete shape of graph input ``name`` under assignment ``v`` (0 or 1)."""
        return tuple(d if isinstance(d, int) else self.assign[v][d]
                     for d in self.input_dims[name])

    def symbol_of(self, a, b):
        """The symbolic input dim whose two values are (a, b), else None."""
        for nm in self.symbols:
            if self.assign[0][nm] == a and self.assign[1][nm] == b:
                return nm
        return None

    # -- shapes ------------------------------------------------------------------------
    def _variant(self, nodes, v):
        """The graph as folded so far, inputs concrete under assignment v."""
        m = onnx.ModelProto()
        m.CopyFrom(self.model)
        # IR < 4 takes initializer types only from the graph inputs, which this copy no
        # longer lists: without this every weight is untyped and no shape is inferred.
        m.ir_version = max(int(m.ir_version), 4)
        g = m.graph
        del g.value_info[:]
        del g.node[:]
        g.node.extend(nodes)
        del g.initializer[:]
        input_names = {x.name for x in self.inputs}
        needed = {i for n in nodes for i in n.input if i}
        for name in needed:
            if name in self.folded and name not in input_names:
                g.initializer.append(numpy_helper.from_array(
                    np.asarray(self.folded[name][v]), name))
        ginputs = [copy.deepcopy(i) for i in self.inputs]
        del g.input[:]
        for i in ginputs:
            for d, val in zip(i.type.tensor_type.shape.dim, self.input_shape(i.name, v)):
                d.Clear()
                d.dim_value = val
        g.input.extend(ginputs)
        for o in g.output:
            o.type.tensor_type.ClearField("shape")
        return m

    def _infer(self, m):
        """ONNX shape inference; a strict-mode error is kept (with the node ONNX names)
        and the shapes come from a non-strict run."""
        try:
            return shape_inference.infer_shapes(m, strict_mode=True, data_prop=True)
        except Exception as e:  # noqa: BLE001 - recorded, surfaced when a shape is missing
            msg = " ".join(str(e).split())
            if msg not in self.shape_errors:
                self.shape_errors.append(msg)
        try:
            return shape_inference.infer_shapes(m, strict_mode=False, data_prop=True)
        except Exception as e:  # noqa: BLE001
            msg = " ".join(str(e).split())
            if msg not in self.shape_errors:
                self.shape_errors.append(msg)
            return None

    def infer_shapes(self, nodes):
        """ONNX shape inference on the graph as folded so far, under both assignments."""
        per = []
        for v in (0, 1):
            m2 = self._infer(self._variant(nodes, v))
            got = {}
            if m2 is not None:
                for vi in list(m2.graph.value_info) + list(m2.graph.output) + \
                        list(m2.graph.input):
                    tt = vi.type.tensor_type
                    if not tt.HasField("shape"):
                        continue
                    got[vi.name] = (tuple(int(d.dim_value) if d.HasField("dim_value") else -1
                                          for d in tt.shape.dim), tt.elem_type)
            per.append(got)
            if not self.symbols:
                per.append(got)
                break
        a, b = per
        for name, (sa, et) in a.items():
            sb = b.get(name, (None, et))[0]
            if sb is None or len(sb) != len(sa):
                continue
            dims = tuple(-1 if (x == -1 or y == -1) else (x if x == y else None)
                         for x, y in zip(sa, sb))
            self.shapes[name] = (dims, et)
            self.shapes_ab[name] = (sa, sb)

    def _missing(self, name, node):
        where = self.names[id(node)] if node is not None else "?"
        msg = f"node '{where}': shape of '{name}' could not be inferred"
        if self.shape_errors:
            msg += f" (ONNX shape inference: {self.shape_errors[0][:400]})"
        return ConversionError(msg)

    def shape(self, name, node=None, required=True):
        """Shape of a value: ints, None for a dim that depends on symbolic input dims."""
        if name in self.folded:
            return tuple(np.shape(self.folded[name][0]))
        s = self.shapes.get(name)
        if s is None or any(d == -1 for d in s[0]):
            if required:
                raise self._missing(name, node)
            return None
        return s[0]

    def shape_ab(self, name, node=None):
        """(shape under A, shape under B), both concrete."""
        if name in self.folded:
            return tuple(np.shape(self.folded[name][0])), tuple(np.shape(self.folded[name][1]))
        s = self.shapes_ab.get(name)
        if s is None or -1 in s[0] or -1 in s[1]:
            raise self._missing(name, node)
        return s

    # -- folding -----------------------------------------------------------------------
    def fold(self):
        """Fold constant subgraphs (under both assignments). Returns the remaining nodes."""
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
        if op in ("Shape", "Size"):
            s = self.shapes_ab.get(n.input[0])
            if n.input[0] in self.folded:
                s = tuple(tuple(np.shape(self.folded[n.input[0]][v])) for v in (0, 1))
            if s is None or -1 in s[0] or -1 in s[1]:
                return False
            if op == "Size":
                self.folded[n.output[0]] = tuple(np.asarray(int(np.prod(x)), np.int64)
                                                 for x in s)
                return True
            at = onnx_attrs(n)
            start, end = at.get("start", 0), at.get("end", None)
            self.folded[n.output[0]] = tuple(np.array(x, dtype=np.int64)[start:end] for x in s)
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
        ra, rb = np.asarray(ra), np.asarray(rb)
        if ra.size > MAX_FOLD_ELEMENTS and (ra.shape != rb.shape or not np.array_equal(ra, rb)):
            return False        # a size-dependent tensor, not shape arithmetic
        self.folded[n.output[0]] = (ra, rb)
        if op == "Constant":
            self.const_node_outputs.add(n.output[0])
        return True

    def const(self, name, node, what="input"):
        """A size-independent folded constant, else None (an activation)."""
        if not name or name not in self.folded:
            return None
        va, vb = self.folded[name]
        if va.shape != vb.shape or not np.array_equal(va, vb):
            dims = ", ".join(self.symbols)
            raise node_error(node, f"{what} '{name}' depends on the symbolic input dims "
                             f"({dims}) in a way edgenet cannot evaluate at run time; "
                             "freeze them at conversion (--input-shape)")
        return va
