"""State shared by the translators: the IR graph being built and its naming rules."""
from __future__ import annotations

import numpy as np

from .fold import Folder
from .graph import Weight, node_error


class Builder:
    """The IR graph under construction: nodes, constants, weights, name aliases
    (Identity-like ops), and the set of activation names produced so far."""

    def __init__(self, fe: Folder):
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
            raise node_error(n, f"input '{n.input[i]}' is a constant where an activation is expected")
        if name not in self.activations:
            raise node_error(n, f"input '{n.input[i]}' is not produced before this node")
        return name

    def operand(self, n, i):
        """Activation name or a constant registered in consts (for elementwise ops)."""
        name = n.input[i]
        c = self.fe.const(name, n)
        if c is not None:
            if not np.issubdtype(c.dtype, np.floating):
                raise node_error(n, f"constant '{name}' is not floating point")
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

    # weights and biases (translators of Conv/ConvTranspose/Gemm/MatMul)
    def weight(self, n, idx, op, values_ir, to_source):
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

    def bias(self, n, idx, o, mult=1.0):
        b = self.cin(n, idx)
        if b is None:
            if idx < len(n.input) and n.input[idx]:
                raise node_error(n, "bias must be a constant")
            return ""
        b = np.asarray(b, dtype=np.float32).reshape(-1)
        if b.size == 1 and o != 1:
            b = np.full(o, b[0], np.float32)
        if b.size != o:
            raise node_error(n, f"bias has {b.size} values, expected {o}")
        return self.add_const(b * np.float32(mult) if mult != 1.0 else b, n.input[idx])
