#!/usr/bin/env python
"""Validation-split study of the sensitivity-based mixed precision with a ternary floor
(converters.mixed.choose_min_ternary; docs/ACCURACY.md, issue 14) on PP-OCR cls.

Step 1 (``--sens FILE.json``, written once and reused): the per-layer sensitivities (output
NSR and top-1 agreement of the float network with that layer alone ternary / quinary /
int8) on the first ``--sens-samples`` unlabeled calibration lines (seed 100).
Step 2: each candidate (JSON argument) is quantized sequentially with ptq.calibrate (prefix
inputs, bias correction) and scored on the labelled VALIDATION split (seed 300, 1000 lines;
the test split is never loaded here):

    python bench/accuracy_mixed_floor.py --sens sens.json '{"floor": 0.8}' \\
        '{"floor": 0.8, "seed": 1}' '{"rule": "small:1700"}'

keys: floor (min ternary share, sensitivity choice), method (prefix | alone),
nsens (samples for the sensitivity), upgrade (i8 | q3), rule (an
int8_rules spec: alone, or with floor the layers it names first and the sensitivity
choice for the rest of the budget), ncal (calibration lines, default
512), seed (of ptq.calibrate's row sampling), and any other ptq.calibrate keyword.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [REPO, os.path.dirname(os.path.abspath(__file__))]

from accuracy_finetune import MODELS, cached, model_path  # noqa: E402
from converters import mixed, ptq  # noqa: E402
from converters.from_onnx import load_onnx  # noqa: E402


def load_sens(path, g, xs, encs):
    if path and os.path.exists(path):
        with open(path) as f:
            d = json.load(f)
        return {k: {e: tuple(v) for e, v in r.items()} for k, r in d["sens"].items()}
    t = time.perf_counter()
    sens, _, _ = mixed.sensitivities(g, xs, encs, ("t2", "q3", "i8"),
                                     log=lambda m: print(m, file=sys.stderr, flush=True))
    out = {k: {e: (float(v[0]), float(v[1])) for e, v in r.items()} for k, r in sens.items()}
    sec = time.perf_counter() - t
    if path:
        with open(path, "w") as f:
            json.dump({"samples": len(xs), "seconds": sec, "sens": out}, f, indent=1)
    print(json.dumps({"sensitivity_s": round(sec), "samples": len(xs)}), flush=True)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sens", default=None, help="sensitivity cache (JSON)")
    ap.add_argument("--sens-samples", type=int, default=mixed.SENS_SAMPLES)
    ap.add_argument("--work", default=os.environ.get("EDGENET_FT_WORK", "/tmp/edgenet-finetune"))
    ap.add_argument("cands", nargs="*")
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    g0 = load_onnx(model_path("cls"), input_shapes=MODELS["cls"][1])
    xtr, _ = cached(a.work, "cls", 1000, 100)
    xv, yv = cached(a.work, "cls", 1000, 300)
    out = g0.outputs[0]["name"]
    yfv = ptq.forward(g0, ptq.float_consts(g0), xv)[out]
    print(json.dumps({"cand": "float", "val_acc": float(np.mean(yfv.argmax(1) == yv))}),
          flush=True)
    e0 = {nd["inputs"][1]: "t2" for nd in ptq.weight_nodes(g0)}
    sens = None
    if any(json.loads(c).get("method") == "alone" for c in a.cands):
        sens = load_sens(a.sens, g0, xtr[:a.sens_samples], e0)
    for spec in a.cands:
        d = json.loads(spec)
        cand = dict(d)
        floor, rule = d.pop("floor", None), d.pop("rule", None)
        up, ncal = d.pop("upgrade", "i8"), int(d.pop("ncal", 512))
        if rule is not None:
            encs, share = mixed.int8_rules(g0, e0, rule)
        if floor is not None:
            method = d.pop("method", "prefix")
            nsens = int(d.pop("nsens", a.sens_samples))
            s = None
            if method == "alone":
                s = {k: {e: (v[0], v[1], None) for e, v in r.items()} for k, r in sens.items()}
            t = time.perf_counter()
            encs, table, share = mixed.choose_min_ternary(
                g0, xtr[:ncal], encs if rule is not None else e0, floor, upgrade=up, sens=s,
                method=method,
                n_samples=nsens, i8_target=bool(d.get("i8_target", False)),
                log=lambda m: print(m, file=sys.stderr, flush=True))
            cand["choose_s"] = round(time.perf_counter() - t)
            cand["upgraded"] = [r["layer"] for r in table if r["encoding"] != "t2"]
        g = copy.copy(g0)
        g.nodes = copy.deepcopy(g0.nodes)
        g.consts = dict(g0.consts)
        t = time.perf_counter()
        cal = ptq.calibrate(g, xtr[:ncal], encs, **d)
        ptq.apply_biases(g, cal)
        c = ptq.float_consts(g)
        for k, (en, lv, al) in cal.weights.items():
            if en in ("t2", "q3", "i8"):
                deq = lv.astype(np.float32) * al.reshape((-1,) + (1,) * (lv.ndim - 1))
                c[k] = ptq.Const(ptq.folded(g0.weights[k], deq))
        sec = time.perf_counter() - t
        y = ptq.forward(g, c, xv)[out]
        print(json.dumps({**cand, "ternary_share": round(share, 4),
                          "val_acc": float(np.mean(y.argmax(1) == yv)),
                          "val_agree": float(np.mean(y.argmax(1) == yfv.argmax(1))),
                          "snr_db": round(ptq.fidelity(yfv, y)["snr_db"], 2),
                          "calib_s": round(sec)}), flush=True)


if __name__ == "__main__":
    main()
