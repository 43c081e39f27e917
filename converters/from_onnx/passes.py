"""Graph passes on the translated IR: BatchNorm folding into the weights, Pad merging into
Conv, activation and residual-Add fusion into their producers, dead-node pruning."""
from __future__ import annotations

import numpy as np

from edgenet import ir

# ops whose weights absorb a following BatchNorm (Affine) as a per-channel multiplier
WEIGHT_OPS = ("Conv", "ConvTranspose", "Gemm")


def consumers(nodes):
    cons = {}
    for i, nd in enumerate(nodes):
        for t in nd["inputs"]:
            if t:
                cons.setdefault(t, []).append(i)
    return cons


def producers(nodes):
    return {o: i for i, nd in enumerate(nodes) for o in nd["outputs"]}


def rename(nodes, old, new):
    for nd in nodes:
        nd["inputs"] = [new if t == old else t for t in nd["inputs"]]
        nd["outputs"] = [new if t == old else t for t in nd["outputs"]]


def fold_bn(b, outputs):
    nodes = b.nodes
    while True:
        cons, prod = consumers(nodes), producers(nodes)
        done = False
        for i, nd in enumerate(nodes):
            if nd["op"] != "Affine" or not nd["attrs"].get("_bn"):
                continue
            x = nd["inputs"][0]
            j = prod.get(x)
            if j is None or x in outputs or len(cons.get(x, [])) != 1:
                continue
            p = nodes[j]
            if p["op"] not in WEIGHT_OPS or p["attrs"].get("activation") is not None \
                    or p["attrs"].get("_nd"):
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
        nd["attrs"].pop("_nd", None)


# IR ops an Act node fuses into (those with an activation epilogue, per the op spec).
FUSE_INTO = frozenset(ir.ACT_OPS) - {"Act"}


def fuse_act(nodes, outputs):
    while True:
        cons, prod = consumers(nodes), producers(nodes)
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


def fuse_residual(nodes, outputs, shape_of):
    while True:
        cons, prod = consumers(nodes), producers(nodes)
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


def merge_pad(nodes, outputs):
    while True:
        cons, prod = consumers(nodes), producers(nodes)
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


def prune(nodes, outputs):
    needed = set(outputs)
    keep = []
    for nd in reversed(nodes):
        if any(o in needed for o in nd["outputs"]):
            keep.append(nd)
            needed.update(t for t in nd["inputs"] if t)
    return keep[::-1]
