#!/usr/bin/env python
"""Generate the ONNX backend node-test fixtures for edgenet's op families.

The onnx wheel ships the generators of its backend node tests (``onnx.backend.test.case.node``),
not their data, and its ``cmd_tools generate-data`` only writes the *model* tests. This script
collects the node test cases, keeps those whose single node is one of the ONNX op types below
(``*_expanded`` function-body variants are left out: they test other ops), and writes each as

    tests/fixtures/onnx_node/<case>.onnx   the test's model, unchanged (graph inputs as ONNX wrote them)
    tests/fixtures/onnx_node/<case>.npz    input_0.., output_0.. (data set 0; no pickled objects)

tests/test_onnx_conformance.py converts each model with ``weights="f32"`` after turning every
input but the first into an initializer, and compares with the expected outputs.

Cases whose data is larger than ``MAX_BYTES`` are not written (the 3-D pooling volumes);
they are listed in ``tests/fixtures/onnx_node/MANIFEST.txt`` with their size.

    python tools/gen_conformance.py            # (re)write the fixtures
    python tools/gen_conformance.py --list     # print what would be written
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import warnings

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT_DIR = os.path.join(REPO, "tests", "fixtures", "onnx_node")
MAX_BYTES = 100_000

# ONNX op types edgenet's front end maps (DESIGN.md "Operators"), including the ones
# issue 13 adds; Cast is left out (only float -> float is meaningful for an activation).
FAMILIES = (
    # convolution / dense
    "Conv", "ConvTranspose", "Gemm", "MatMul",
    # normalization
    "BatchNormalization", "InstanceNormalization", "LayerNormalization", "LRN",
    # recurrent
    "LSTM",
    # activations
    "Relu", "LeakyRelu", "PRelu", "Elu", "Selu", "Sigmoid", "Tanh", "Clip", "HardSigmoid",
    "HardSwish", "Softplus", "Mish", "Gelu",
    # pooling
    "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool",
    # elementwise
    "Add", "Sub", "Mul", "Div", "Pow", "Sqrt", "Exp", "Log", "Abs", "Neg", "Reciprocal",
    "Erf", "Sum", "Mean", "Max", "Min",
    # reductions
    "ReduceMean", "ReduceMax", "ReduceMin", "ReduceSum", "ReduceSumSquare", "ReduceL2",
    "ReduceL1",
    # shape / layout
    "Concat", "Flatten", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Slice", "Split",
    "Expand", "Gather", "Pad", "DepthToSpace", "Identity", "Dropout",
    # resampling
    "Resize", "Upsample",
    # normalized exponentials
    "Softmax", "LogSoftmax",
)


def collect():
    """[(name, model, inputs, outputs)] of the node tests for FAMILIES, sorted by name."""
    from onnx.backend.test.case import node
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cases = node.collect_testcases()
    out = []
    for c in cases:
        if "_expanded" in c.name:
            continue
        ops = {n.op_type for n in c.model.graph.node}
        if len(ops) != 1 or next(iter(ops)) not in FAMILIES:
            continue
        ins, outs = c.data_sets[0]
        if not all(isinstance(a, (np.ndarray, np.generic)) for a in list(ins) + list(outs)):
            continue          # sequence / optional / TensorProto-typed data
        out.append((c.name, c.model, [np.asarray(a) for a in ins], [np.asarray(a) for a in outs]))
    return sorted(out, key=lambda t: t[0])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--list", action="store_true", help="print the cases; write nothing")
    ap.add_argument("-o", "--out", default=OUT_DIR)
    args = ap.parse_args(argv)
    cases = collect()
    written, skipped = [], []
    for name, model, ins, outs in cases:
        nbytes = sum(a.nbytes for a in ins + outs)
        op = model.graph.node[0].op_type
        (skipped if nbytes > MAX_BYTES else written).append((name, op, nbytes))
    if args.list:
        for name, op, nbytes in written:
            print(f"{op:24s} {name} {nbytes}")
        for name, op, nbytes in skipped:
            print(f"{op:24s} {name} {nbytes} (not written: over {MAX_BYTES} B)")
        return 0
    if os.path.isdir(args.out):
        shutil.rmtree(args.out)
    os.makedirs(args.out)
    data = {name: (model, ins, outs) for name, model, ins, outs in cases}
    for name, op, nbytes in written:
        model, ins, outs = data[name]
        with open(os.path.join(args.out, name + ".onnx"), "wb") as f:
            f.write(model.SerializeToString())
        arrays = {f"input_{i}": a for i, a in enumerate(ins)}
        arrays.update({f"output_{i}": a for i, a in enumerate(outs)})
        np.savez_compressed(os.path.join(args.out, name + ".npz"), **arrays)
    import onnx
    with open(os.path.join(args.out, "MANIFEST.txt"), "w") as f:
        f.write(f"# ONNX backend node tests for edgenet's op families (onnx {onnx.__version__}),\n"
                "# written by tools/gen_conformance.py. op, case, data bytes.\n")
        for name, op, nbytes in written:
            f.write(f"{op} {name} {nbytes}\n")
        for name, op, nbytes in skipped:
            f.write(f"# not written (data over {MAX_BYTES} B): {op} {name} {nbytes}\n")
    total = sum(os.path.getsize(os.path.join(args.out, p)) for p in os.listdir(args.out))
    print(f"{len(written)} cases written to {args.out} ({total:,} B); {len(skipped)} too large")
    return 0


if __name__ == "__main__":
    sys.exit(main())
