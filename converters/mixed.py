"""Mixed precision by sensitivity: choose t2 / q3 / i8 / f16 per layer (NumPy only).

Sensitivity of layer l at encoding e: the float network is run on calibration samples
with only layer l quantized at e (calibrated on the float inputs of that layer,
converters/ptq.py), and the output noise is measured against the float outputs as
NSR = Σ(y − y_f)² / Σ(y_f − mean y_f)² (its top-1 agreement is reported too). Layer
noises add up to first order, so a greedy allocation upgrades, one step at a time, the
layer with the largest noise reduction per stored byte (t2 → q3 → i8 → f16):

* ``max_bits``: upgrades are taken in that order while the whole network stays within
  the budget (bits per weight over every Conv/Gemm weight, per-channel scales included);
* ``target_agreement``: the shortest prefix of the upgrade sequence whose network agrees
  with the float network's top-1 on at least that fraction of the samples (binary search
  over the prefix length). Each candidate network is quantized as the file will be:
  sequentially on the whole network (ptq.calibrate: every layer fitted on the outputs of
  the already-quantized prefix, bias correction), not as per-layer candidates put
  together (that composition is pessimistic and over-spends bytes).

The ladder stops at i8: f16 (twice the bytes of i8 for a noise difference that the
measurement cannot see) is used only when even every layer at i8 misses the target.

The final network is then quantized by ptq.calibrate with the chosen encodings (prefix
inputs, bias correction), and its fidelity is measured on held-out samples.
"""
from __future__ import annotations

import numpy as np

from edgenet.errors import ConversionError
from edgenet.format import stored_nbytes

from . import ptq

LADDER = ("t2", "q3", "i8", "f16")
SENS_SAMPLES = 64        # measured: 256 samples took ~40 s per layer on a loaded 2-core box


def nbytes(enc, shape) -> int:
    """Stored bytes of a weight at ``enc`` (per-channel float32 scales included)."""
    n = int(np.prod(shape))
    if enc == "f32":
        return 4 * n
    if enc == "f16":
        return 2 * n
    return stored_nbytes(enc, shape) + 4 * int(shape[0])


def _nsr(yf, y):
    yf = np.asarray(yf, np.float64)
    d = float(np.sum((np.asarray(y, np.float64) - yf) ** 2))
    s = float(np.sum((yf - yf.mean()) ** 2))
    return d / s if s > 0 else (0.0 if d == 0 else float("inf"))


def _forward_from(g, consts, cache, start, outs):
    """Run nodes[start:] with the values produced before ``start`` taken from ``cache``."""
    vals = cache
    new = {}
    for nd in g.nodes[start:]:
        merged = _Overlay(vals, new)
        for name, v in zip(nd["outputs"], ptq.run_node(nd, merged, consts)):
            new[name] = v
    return {o: (new[o] if o in new else vals[o]) for o in outs}


class _Overlay(dict):
    def __init__(self, base, top):
        super().__init__()
        self.base, self.top = base, top

    def __getitem__(self, k):
        return self.top[k] if k in self.top else self.base[k]

    def __contains__(self, k):
        return k in self.top or k in self.base


def sensitivities(g, x, encs, options, *, log=None):
    """{weight name: {enc: (nsr, agreement, levels/alpha record)}} and the float outputs."""
    out = g.outputs[0]["name"]
    fc = ptq.float_consts(g)
    inp = g.inputs[0]["name"]
    cache = {inp: np.asarray(x, np.float32)}
    for nd in g.nodes:                     # every float activation of the samples
        for name, v in zip(nd["outputs"], ptq.run_node(nd, cache, fc)):
            cache[name] = v
    yf = cache[out]
    index = {nd["name"]: i for i, nd in enumerate(g.nodes)}
    res = {}
    for nd in ptq.weight_nodes(g):
        wname = nd["inputs"][1]
        if encs.get(wname) not in ("t2", "q3"):
            continue
        w = g.weights[wname]
        res[wname] = {}
        for e in options:
            if e == "f16":            # ~1e-8 NSR measured: counted as lossless, not run
                res[wname][e] = (0.0, 1.0, ("f16", None, None))
                continue
            else:
                lv, a = ptq.quantize_layer(nd, w, e, cache[nd["inputs"][0]])
                deq = lv.astype(np.float32) * a.reshape((-1,) + (1,) * (lv.ndim - 1))
                rec = (e, lv, a)
            c = dict(fc)
            c[wname] = ptq.Const(ptq.folded(w, deq))
            y = _forward_from(g, c, cache, index[nd["name"]], [out])[out]
            agree = ptq.fidelity(yf, y)["top1_agreement"]
            res[wname][e] = (_nsr(yf, y), agree, rec)
        if log is not None:
            log(f"  sensitivity {nd['name']}: " + ", ".join(
                f"{e} nsr {res[wname][e][0]:.2e} agree {100 * res[wname][e][1]:.1f}%"
                for e in options))
    return res, yf, cache


def choose(g, x, encs, *, target_agreement=None, max_bits=None, log=None,
           n_samples=SENS_SAMPLES):
    """Per-layer encodings {weight name: enc} meeting ``target_agreement`` or ``max_bits``,
    and the table rows (layer, encoding, sensitivity, bytes) as dicts."""
    floor = "t2" if "t2" in encs.values() else "q3"
    options = LADDER[LADDER.index(floor):LADDER.index("i8") + 1]
    xs = np.asarray(x, np.float32)[:n_samples]
    sens, yf, cache = sensitivities(g, xs, encs, options, log=log)
    del cache
    shapes = {k: tuple(w.values.shape) for k, w in g.weights.items() if k in encs}
    count = sum(int(np.prod(s)) for s in shapes.values())
    fixed = sum(nbytes(encs[k], s) for k, s in shapes.items() if k not in sens)
    cur = {k: floor for k in sens}

    def bits(cfg):
        return 8.0 * (fixed + sum(nbytes(cfg[k], shapes[k]) for k in cfg)) / count

    # greedy upgrade sequence: best noise reduction per byte first (convex-hull style:
    # a layer may jump more than one rung when the next rung buys little)
    seq = []
    state = dict(cur)
    while True:
        best = None
        for k in sens:
            i = options.index(state[k])
            n0 = sens[k][state[k]][0]
            b0 = nbytes(state[k], shapes[k])
            for e in options[i + 1:]:
                gain = n0 - sens[k][e][0]
                cost = nbytes(e, shapes[k]) - b0
                if cost <= 0:
                    continue
                r = gain / cost
                if best is None or r > best[0]:
                    best = (r, k, e)
        if best is None:
            break
        state[best[1]] = best[2]
        seq.append((best[1], best[2]))

    def config(n):
        c = dict(cur)
        for k, e in seq[:n]:
            c[k] = e
        return c

    if max_bits is not None:
        if bits(cur) > max_bits + 1e-9:
            raise ConversionError(f"max_bits {max_bits}: the smallest choice already needs "
                                  f"{bits(cur):.3f} bits/weight (layers kept float?)")
        cfg = dict(cur)
        for k, e in seq:
            if options.index(e) <= options.index(cfg[k]):
                continue
            trial = dict(cfg)
            trial[k] = e
            if bits(trial) <= max_bits + 1e-9:
                cfg = trial
        chosen = cfg
    else:
        def agreement(cfg):
            return network_agreement(g, xs, {**encs, **cfg}, yf)

        lo, hi = 0, len(seq)
        if agreement(config(lo)) >= target_agreement:
            hi = lo
        while lo < hi:
            mid = (lo + hi) // 2
            if agreement(config(mid)) >= target_agreement:
                hi = mid
            else:
                lo = mid + 1
        chosen = config(hi)
        if hi == len(seq) and agreement(chosen) < target_agreement:
            # even i8 everywhere misses: f16 for the most sensitive layers, in order
            for k in sorted(sens, key=lambda k: -sens[k][floor][0]):
                chosen[k] = "f16"
                if agreement(chosen) >= target_agreement:
                    break
    full = dict(encs)
    full.update(chosen)
    table = []
    for nd in ptq.weight_nodes(g):
        k = nd["inputs"][1]
        if k not in full:
            continue
        e = full[k]
        s = sens.get(k, {}).get(floor)
        table.append({"layer": nd["name"], "encoding": e,
                      "sensitivity_nsr": None if s is None else float(s[0]),
                      "agreement_alone": None if s is None else float(s[1]),
                      "bytes": nbytes(e, shapes[k])})
    if log is not None:
        log(format_table(table, bits(chosen)))
    return full, table


def _run_nodes(nodes, consts, vals, outs):
    """Run ``nodes`` on top of the values ``vals`` (not modified); the outputs ``outs``."""
    new = {}
    merged = _Overlay(vals, new)
    for nd in nodes:
        for name, v in zip(nd["outputs"], ptq.run_node(nd, merged, consts)):
            new[name] = v
    return {o: merged[o] for o in outs}


def prefix_gains(g, x, encs, upgrade="i8", *, log=None, i8_target=False):
    """Sensitivity along the calibration pass: the network is quantized layer by layer on
    ``x`` as ptq.calibrate does (prefix inputs, float target, bias correction; the layers
    at their ``encs``); at each t2 layer, the output NSR against the float network is
    measured with the rest of the network still float, once with the layer at t2 and once
    at ``upgrade`` (fitted the same way; ``i8_target`` as in ptq.calibrate). The gain of the
    layer is the difference: its own share of the noise, on the inputs it really sees.
    Returns {weight name: (gain, nsr at t2, agreement at t2)}."""
    out = g.outputs[0]["name"]
    inp = g.inputs[0]["name"]
    xs = np.asarray(x, np.float32)
    fc = ptq.float_consts(g)
    qc = dict(fc)
    vf = {inp: xs}
    vq = {inp: xs}
    for nd in g.nodes:
        for name, v in zip(nd["outputs"], ptq.run_node(nd, vf, fc)):
            vf[name] = v
    yf = vf[out]
    res = {}
    for i, nd in enumerate(g.nodes):
        k = nd["inputs"][1] if len(nd["inputs"]) > 1 else None
        enc = encs.get(k) if nd["op"] in ptq.WEIGHT_OPS and k in g.weights else None
        if enc in ("t2", "q3", "i8"):
            w = g.weights[k]
            probes = {}
            for e in ((enc, upgrade) if enc == "t2" else (enc,)):
                mus = []
                lv, a = ptq.quantize_layer(nd, w, e, vq[nd["inputs"][0]], vf[nd["inputs"][0]],
                                           means=mus, i8_target=i8_target)
                deq = lv.astype(np.float32) * a.reshape((-1,) + (1,) * (lv.ndim - 1))
                c = dict(qc)
                c[k] = ptq.Const(ptq.folded(w, deq))
                delta = ptq.bias_delta(nd, w, deq, mus, vf, vq, fc, c, ptq.CHUNK)
                n2 = dict(nd)
                ins = list(nd["inputs"]) + [""] * (3 - len(nd["inputs"]))
                if not ins[2]:
                    ins[2] = f"{nd['name']}__probe_bias"
                    c[ins[2]] = ptq.Const(delta)
                else:
                    c[ins[2]] = ptq.Const(c[ins[2]].arr.astype(np.float64) + delta)
                n2["inputs"] = ins
                y = _run_nodes([n2] + g.nodes[i + 1:], c, vq, [out])[out]
                probes[e] = (_nsr(yf, y), ptq.fidelity(yf, y)["top1_agreement"], c, n2)
            if enc == "t2":
                res[k] = (probes["t2"][0] - probes[upgrade][0], probes["t2"][0],
                          probes["t2"][1])
                if log is not None:
                    log(f"  sensitivity {nd['name']}: output nsr {probes['t2'][0]:.2e} at t2, "
                        f"{probes[upgrade][0]:.2e} at {upgrade} (prefix quantized)")
            _, _, qc, nd = probes[enc]
        elif enc == "f16":
            qc[k] = ptq.Const(ptq.folded(g.weights[k], g.weights[k].values.astype(
                np.float16).astype(np.float32)))
        for name, v in zip(nd["outputs"], ptq.run_node(nd, vq, qc)):
            vq[name] = v
    return res


def _fill(gain, count, free, out, upgrade):
    """Greedy knapsack on weight counts: largest gain per weight first, each layer taken
    when it still fits. Updates ``out``; returns the weights left in the budget."""
    for k in sorted(gain, key=lambda k: (-gain[k] / count[k], count[k], k)):
        if gain[k] > 0 and count[k] <= free:
            out[k] = upgrade
            free -= count[k]
    return free


def choose_min_ternary(g, x, encs, min_ternary, *, upgrade="i8", method="prefix", log=None,
                       n_samples=SENS_SAMPLES, sens=None, i8_target=False):
    """Per-layer encodings {weight name: enc} that keep at least ``min_ternary`` of the
    weights (counted over every layer of ``encs``, float ones included) ternary, and return
    the most sensitive layers to ``upgrade`` (i8, or q3) within the rest of the weights.

    Sensitivity of a layer (its gain): the drop of the output NSR against the float
    network on the first ``n_samples`` of ``x`` when that layer is at ``upgrade`` instead
    of t2; ``method="prefix"`` (default, :func:`prefix_gains`): measured along the
    calibration pass, the layers before it quantized, after it float; ``method="alone"``
    (:func:`sensitivities`): that layer alone quantized in the float network (``sens`` may
    pass an earlier result). Greedy knapsack on the weight count (the budget is a count of
    weights, not bytes): the largest gain per weight first, each layer taken when it still
    fits. Quinary counts against the floor like int8 and is noisier at the same weight
    count, so ``upgrade="i8"`` dominates it under this constraint (q3 saves
    bytes only). Returns (encodings, table rows, share of the weights left ternary)."""
    if not 0.0 <= float(min_ternary) <= 1.0:
        raise ConversionError(f"min_ternary must be in [0, 1], got {min_ternary!r}")
    if upgrade not in ("q3", "i8", "f16"):
        raise ConversionError(f"upgrade must be q3, i8 or f16, got {upgrade!r}")
    if method not in ("prefix", "alone"):
        raise ConversionError(f"method must be prefix or alone, got {method!r}")
    if "t2" not in encs.values():
        raise ConversionError("min_ternary needs ternary layers (weights 'ternary')")
    shapes = {k: tuple(g.weights[k].values.shape) for k in encs}
    count = {k: int(np.prod(s)) for k, s in shapes.items()}
    total = sum(count.values())
    budget = total - int(np.ceil(float(min_ternary) * total - 1e-9))   # weights allowed non-t2
    budget -= sum(count[k] for k in encs if encs[k] != "t2")
    if budget < 0:
        t2 = sum(count[k] for k in encs if encs[k] == "t2")
        raise ConversionError(f"min_ternary {min_ternary}: only {100 * t2 / total:.1f}% of the "
                              f"weights can be ternary (layers kept float?)")
    out = dict(encs)
    shown = {}
    if method == "alone" or sens is not None:
        if sens is None:
            xs = np.asarray(x, np.float32)[:n_samples]
            sens, _, cache = sensitivities(g, xs, encs, ("t2", upgrade), log=log)
            del cache
        gain = {k: sens[k]["t2"][0] - sens[k][upgrade][0] for k in sens if encs.get(k) == "t2"}
        _fill(gain, count, budget, out, upgrade)
        shown = {k: (sens[k]["t2"][0], sens[k]["t2"][1]) for k in sens}
    else:
        xs = np.asarray(x, np.float32)[:n_samples]
        res = prefix_gains(g, xs, encs, upgrade, log=log, i8_target=i8_target)
        shown = {k: (v[0], v[2]) for k, v in res.items()}
        _fill({k: v[0] for k, v in res.items()}, count, budget, out, upgrade)
    share = sum(count[k] for k in out if out[k] == "t2") / total if total else 0.0
    table = []
    for nd in ptq.weight_nodes(g):
        k = nd["inputs"][1]
        if k not in out:
            continue
        s = shown.get(k)
        table.append({"layer": nd["name"], "encoding": out[k],
                      "sensitivity_nsr": None if s is None else float(s[0]),
                      "agreement_alone": None if s is None or s[1] is None else float(s[1]),
                      "weights": count[k], "bytes": nbytes(out[k], shapes[k])})
    if log is not None:
        bits = 8.0 * sum(r["bytes"] for r in table) / total
        log(format_table(table, bits) + f"\nternary: {100 * share:.1f}% of the weights "
            f"(floor {100 * float(min_ternary):.1f}%); sensitivity: "
            + ("output NSR with the layer alone ternary" if method == "alone" or sens is not None
               else f"output NSR gain of the layer at {upgrade}, prefix quantized"))
    return out, table, share


def network_agreement(g, x, encs, yf) -> float:
    """Top-1 agreement with ``yf`` of the network quantized with ``encs`` sequentially
    (ptq.calibrate on ``x``: prefix inputs, bias correction), as the file will be."""
    import copy

    gg = copy.copy(g)
    gg.nodes = copy.deepcopy(g.nodes)
    gg.consts = dict(g.consts)
    cal = ptq.calibrate(gg, x, encs)
    ptq.apply_biases(gg, cal)
    c = ptq.float_consts(gg)
    for k, (e, lv, a) in cal.weights.items():
        w = g.weights[k]
        if e in ("t2", "q3", "i8"):
            deq = lv.astype(np.float32) * a.reshape((-1,) + (1,) * (lv.ndim - 1))
        elif e == "f16":
            deq = w.values.astype(np.float16).astype(np.float32)
        else:
            continue
        c[k] = ptq.Const(ptq.folded(w, deq))
    out = g.outputs[0]["name"]
    return ptq.fidelity(yf, ptq.forward(gg, c, x)[out])["top1_agreement"]


def format_table(table, bits_per_weight) -> str:
    lines = [f"{'layer':40s} {'enc':4s} {'sens.NSR':>9s} {'agree%':>7s} {'bytes':>9s}"]
    for r in table:
        s = "" if r["sensitivity_nsr"] is None else f"{r['sensitivity_nsr']:.2e}"
        a = "" if r["agreement_alone"] is None else f"{100 * r['agreement_alone']:.1f}"
        name = r["layer"] if len(r["layer"]) <= 40 else "…" + r["layer"][-39:]
        lines.append(f"{name:40s} {r['encoding']:4s} {s:>9s} {a:>7s} {r['bytes']:>9,d}")
    lines.append(f"mixed precision: {bits_per_weight:.3f} bits/weight (scales included)")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- rules

INT8_RULES = ("first", "last", "depthwise", "small:N")


def int8_rules(g, encs, spec):
    """Encodings with the layers named by ``spec`` moved from t2/q3 to i8, without a
    sensitivity search: ``spec`` is a comma string or list of ``first`` (the first weight
    layer), ``last``, ``depthwise`` (grouped convs with one input channel per group) and
    ``small:N`` (layers with at most N weights). Layers kept f32/f16 are left alone.
    Returns (new encodings, share of the weights of ``encs`` that stay t2)."""
    items = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec or ())
             if s and s.strip() and s.strip() != "none"]
    small = None
    for s in items:
        if s in ("first", "last", "depthwise"):
            continue
        if s.startswith("small:"):
            try:
                small = int(s[6:])
            except ValueError:
                small = -1
            if small >= 0:
                continue
        raise ConversionError(f"int8 layers: expected {', '.join(INT8_RULES)}, got {s!r}")
    nodes = [nd for nd in ptq.weight_nodes(g) if nd["inputs"][1] in encs]
    out = dict(encs)
    for i, nd in enumerate(nodes):
        k = nd["inputs"][1]
        if out[k] not in ("t2", "q3"):
            continue
        shape = g.weights[k].values.shape
        a = nd.get("attrs") or {}
        dw = nd["op"] == "Conv" and int(a.get("group", 1)) > 1 and len(shape) > 1 \
            and shape[1] == 1
        if (("first" in items and i == 0) or ("last" in items and i == len(nodes) - 1)
                or ("depthwise" in items and dw)
                or (small is not None and int(np.prod(shape)) <= small)):
            out[k] = "i8"
    total = sum(int(np.prod(g.weights[k].values.shape)) for k in out)
    t2 = sum(int(np.prod(g.weights[k].values.shape)) for k in out if out[k] == "t2")
    return out, (t2 / total if total else 0.0)
