"""Fuse the layer-normalization chain into one IR ``LayerNorm`` node.

torch's and paddle's exporters write nn.LayerNorm (below opset 17) as nine nodes:
ReduceMean → Sub → Pow 2 → ReduceMean → Add ε → Sqrt → Div → Mul γ → Add β, and the
LayerNormalization translator (translate_math._normalize) emits the same chain. After
translation that chain is Reduce(mean) → Sub → Mul(d, d) → Reduce(mean) → Add(ε) →
Unary(sqrt) → Div [→ Mul(γ)] [→ Add(β)] over the trailing axes [axis, rank). This pass
finds it and replaces it by ``LayerNorm(x, γ, β; axis, epsilon)`` (edgenet/shapes_math.py),
one kernel that reads x twice instead of nine ops and eight intermediate tensors.

It fuses only when every intermediate has exactly the chain's consumers and is not a graph
output (so LayerNormalization's optional Mean / InvStdDev outputs keep the unfused form),
no node carries an activation, ε is a one-element constant, γ and β are constants that
broadcast over the normalized axes alone, and those axes have static sizes.
"""
from __future__ import annotations

import numpy as np

from .passes import consumers, producers


def _one(cons, name, outputs):
    c = cons.get(name, [])
    return c[0] if len(c) == 1 and name not in outputs else None


def _plain(nd, op):
    return nd["op"] == op and nd["attrs"].get("activation") is None


def _other(nd, name):
    a, b = nd["inputs"][:2]
    return b if a == name else (a if b == name else None)


def _trailing(c, r, a, tail):
    """The constant c broadcast to the normalized shape ``tail``, or None when it also
    varies along the leading axes [0, a)."""
    c = np.asarray(c, np.float32)
    if c.ndim > r:
        return None
    c = c.reshape((1,) * (r - c.ndim) + c.shape)
    if any(d != 1 for d in c.shape[:a]):
        return None
    try:
        return np.ascontiguousarray(np.broadcast_to(c.reshape(c.shape[a:]), tail),
                                    dtype=np.float32)
    except ValueError:
        return None


def _match(nodes, i, cons, outputs, consts, shape_of):
    """The fusion for the Reduce node i, or None: (indices to delete, x, axis, eps, gamma,
    beta, output name, node name)."""
    r0 = nodes[i]
    at = r0["attrs"]
    if r0["op"] != "Reduce" or at.get("fn") != "mean" or int(at.get("keepdims", 1)) != 1:
        return None
    x = r0["inputs"][0]
    shape = shape_of(x)
    if shape is None:
        return None
    r = len(shape)
    axes = [int(v) for v in at["axes"]]
    a = axes[0]
    if axes != list(range(a, r)) or any(d is None or d <= 0 for d in shape[a:]):
        return None
    tail = tuple(int(d) for d in shape[a:])
    j = _one(cons, r0["outputs"][0], outputs)
    sub = nodes[j] if j is not None else None
    if sub is None or not _plain(sub, "Sub") or sub["inputs"] != [x, r0["outputs"][0]]:
        return None
    d = sub["outputs"][0]
    cd = cons.get(d, [])
    if d in outputs or len(cd) != 3 or len(set(cd)) != 2:    # Mul(d, d) counts twice
        return None
    k_sq = next((k for k in set(cd) if cd.count(k) == 2), None)
    k_div = next((k for k in set(cd) if cd.count(k) == 1), None)
    if k_sq is None or k_div is None:
        return None
    sq, div = nodes[k_sq], nodes[k_div]
    if not _plain(sq, "Mul") or sq["inputs"] != [d, d]:
        return None
    if not _plain(div, "Div") or div["inputs"][0] != d:
        return None
    k = _one(cons, sq["outputs"][0], outputs)
    r1 = nodes[k] if k is not None else None
    if r1 is None or r1["op"] != "Reduce" or r1["attrs"].get("fn") != "mean" \
            or [int(v) for v in r1["attrs"]["axes"]] != axes \
            or int(r1["attrs"].get("keepdims", 1)) != 1:
        return None
    chain = [i, j, k_sq, k]
    k = _one(cons, r1["outputs"][0], outputs)
    add = nodes[k] if k is not None else None
    if add is None or not _plain(add, "Add"):
        return None
    e = _other(add, r1["outputs"][0])
    if e not in consts or np.size(consts[e]) != 1:
        return None
    eps = float(np.asarray(consts[e], np.float64).reshape(-1)[0])
    if not eps >= 0:
        return None
    chain.append(k)
    k = _one(cons, add["outputs"][0], outputs)
    sqrt = nodes[k] if k is not None else None
    if sqrt is None or sqrt["op"] != "Unary" or sqrt["attrs"].get("fn") != "sqrt":
        return None
    chain.append(k)
    if _one(cons, sqrt["outputs"][0], outputs) != k_div or div["inputs"][1] != sqrt["outputs"][0]:
        return None
    chain.append(k_div)
    out, last = div["outputs"][0], div
    gamma = np.ones(tail, np.float32)
    beta = np.zeros(tail, np.float32)
    for op, which in (("Mul", "gamma"), ("Add", "beta")):
        k = _one(cons, out, outputs)
        nd = nodes[k] if k is not None else None
        if nd is None or not _plain(nd, op):
            continue
        c = _other(nd, out)
        v = _trailing(consts[c], r, a, tail) if c in consts else None
        if v is None:
            continue
        if which == "gamma":
            gamma = v
        else:
            beta = v
        chain.append(k)
        out, last = nd["outputs"][0], nd
    return chain, x, a, eps, gamma, beta, out, last["name"]


def fuse_layernorm(b, outputs, shape_of):
    """Rewrite every matched chain in ``b.nodes`` (b: the converter's builder; ``shape_of``:
    a tensor's shape with None for symbolic dims, or None when unknown)."""
    while True:
        nodes = b.nodes
        cons = consumers(nodes)
        prods = producers(nodes)
        for i in range(len(nodes)):
            m = _match(nodes, i, cons, outputs, b.consts, shape_of)
            if m is None:
                continue
            chain, x, a, eps, gamma, beta, out, name = m
            if any(prods.get(t) != c for c in chain for t in nodes[c]["outputs"]):
                continue
            g = b.add_const(gamma, name + "::gamma")
            be = b.add_const(beta, name + "::beta")
            fused = {"name": name, "op": "LayerNorm", "inputs": [x, g, be],
                     "outputs": [out], "attrs": {"axis": int(a), "epsilon": eps}}
            drop = set(chain)
            b.nodes = [fused if q == i else nd for q, nd in enumerate(nodes)
                       if q == i or q not in drop]
            break
        else:
            return
