#!/usr/bin/env python
"""Validation-split search for the cls mixed-precision rule (docs/ACCURACY.md, issue 14).

Calibrated PTQ (converters/ptq.py: layer-wise output-error fit, alpha refit, bias
correction) of PP-OCR cls with the layers picked by converters.mixed.int8_rules kept int8
and the rest ternary, scored on the labelled VALIDATION split only (seed 300, 1000 text
lines; the test split is never loaded here). Each argument is one candidate as JSON:

    python bench/accuracy_int8_rules.py '{"rule": "none"}' '{"rule": "small:300"}' \
        '{"rule": "small:1700"}' '{"rule": "none", "ncal": 1000}'

keys: rule (int8_rules spec, "none" = all ternary), ncal (calibration samples, unlabeled,
seed 100), and any keyword of ptq.calibrate (damp, max_rows, sweeps). Data come from
bench/accuracy_finetune.py's cache (--work), rendered offline when missing.
"""
from __future__ import annotations

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


def main(argv):
    work = os.environ.get("EDGENET_FT_WORK", "/tmp/edgenet-finetune")
    os.makedirs(work, exist_ok=True)
    g0 = load_onnx(model_path("cls"), input_shapes=MODELS["cls"][1])
    xtr, _ = cached(work, "cls", 1000, 100)
    xv, yv = cached(work, "cls", 1000, 300)
    out = g0.outputs[0]["name"]
    yfv = ptq.forward(g0, ptq.float_consts(g0), xv)[out]
    print(json.dumps({"rule": "float", "val_acc": float(np.mean(yfv.argmax(1) == yv))}),
          flush=True)
    e0 = {nd["inputs"][1]: "t2" for nd in ptq.weight_nodes(g0)}
    for spec in argv:
        d = json.loads(spec)
        rule, ncal = d.pop("rule", "none"), int(d.pop("ncal", 512))
        g = copy.copy(g0)
        g.nodes = copy.deepcopy(g0.nodes)
        g.consts = dict(g0.consts)
        encs, share = mixed.int8_rules(g0, e0, rule)
        t = time.perf_counter()
        cal = ptq.calibrate(g, xtr[:ncal], encs, **d)
        ptq.apply_biases(g, cal)
        c = ptq.float_consts(g)
        for k, (en, lv, a) in cal.weights.items():
            if en in ("t2", "q3", "i8"):
                deq = lv.astype(np.float32) * a.reshape((-1,) + (1,) * (lv.ndim - 1))
                c[k] = ptq.Const(ptq.folded(g0.weights[k], deq))
        sec = time.perf_counter() - t
        y = ptq.forward(g, c, xv)[out]
        print(json.dumps({"rule": rule, "ncal": ncal, **d, "ternary_share": round(share, 4),
                          "val_acc": float(np.mean(y.argmax(1) == yv)),
                          "val_agree": float(np.mean(y.argmax(1) == yfv.argmax(1))),
                          "snr_db": round(ptq.fidelity(yfv, y)["snr_db"], 2),
                          "calib_s": round(sec)}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
