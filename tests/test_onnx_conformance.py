"""ONNX's own backend node tests for edgenet's op families (fixtures written by
tools/gen_conformance.py from the onnx wheel's test generators).

Each case: the test's model with every input but the first turned into an initializer
(weights, scales, axes, shapes...: what a trained model holds as constants), converted with
``weights="f32"`` and run on the CPU backend; the outputs are compared with the expected
ones at ONNX's own tolerances (rtol 1e-3, atol 1e-7, here atol 1e-6 for float32 sums).

Every case not run is in EXCLUDE with the reason; ``python tests/test_onnx_conformance.py``
prints the pass rate and the failures with their causes.
"""
from __future__ import annotations

import glob
import os
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
if os.path.dirname(HERE) not in sys.path:
    sys.path.insert(0, os.path.dirname(HERE))
CASE_DIR = os.path.join(HERE, "fixtures", "onnx_node")
CASES = sorted(os.path.basename(p)[:-5] for p in glob.glob(os.path.join(CASE_DIR, "*.onnx")))

RTOL, ATOL = 1e-3, 1e-6

# case -> why it is not run. Keep every entry justified; remove it when it passes.
# Outside edgenet's scope: integer tensors, training-mode semantics, non-float outputs,
# 3-D operators, zero-size tensors. These stay excluded.
NOT_APPLICABLE = {
    'test_add_int16': 'integer input tensor: edgenet activations are float32',
    'test_add_int8': 'integer input tensor: edgenet activations are float32',
    'test_add_uint16': 'integer input tensor: edgenet activations are float32',
    'test_add_uint32': 'integer input tensor: edgenet activations are float32',
    'test_add_uint64': 'integer input tensor: edgenet activations are float32',
    'test_add_uint8': 'integer input tensor: edgenet activations are float32',
    'test_averagepool_3d_dilations_small': '3-D pooling or ConvTranspose: edgenet runs 1-D (mapped onto 2-D) and 2-D CNNs',
    'test_batchnorm_epsilon_training_mode': 'training-mode semantics (random mask / batch statistics): inference runtime',
    'test_batchnorm_example_training_mode': 'training-mode semantics (random mask / batch statistics): inference runtime',
    'test_clip_default_int8_inbounds': 'integer input tensor: edgenet activations are float32',
    'test_clip_default_int8_max': 'integer input tensor: edgenet activations are float32',
    'test_clip_default_int8_min': 'integer input tensor: edgenet activations are float32',
    'test_convtranspose_3d': '3-D pooling or ConvTranspose: edgenet runs 1-D (mapped onto 2-D) and 2-D CNNs',
    'test_div_int16': 'integer input tensor: edgenet activations are float32',
    'test_div_int32_trunc': 'integer input tensor: edgenet activations are float32',
    'test_div_int8': 'integer input tensor: edgenet activations are float32',
    'test_div_uint16': 'integer input tensor: edgenet activations are float32',
    'test_div_uint32': 'integer input tensor: edgenet activations are float32',
    'test_div_uint64': 'integer input tensor: edgenet activations are float32',
    'test_div_uint8': 'integer input tensor: edgenet activations are float32',
    'test_dropout_default_mask': 'Dropout mask output (bool): edgenet outputs are float32',
    'test_dropout_default_mask_ratio': 'Dropout mask output (bool): edgenet outputs are float32',
    'test_edge_pad': 'integer input tensor: edgenet activations are float32',
    'test_max_float16': 'non-float32 input tensor (integer / bool / float16 / float64): edgenet activations are float32',
    'test_max_float64': 'non-float32 input tensor (integer / bool / float16 / float64): edgenet activations are float32',
    'test_max_int16': 'non-float32 input tensor (integer / bool / float16 / float64): edgenet activations are float32',
    'test_max_int32': 'non-float32 input tensor (integer / bool / float16 / float64): edgenet activations are float32',
    'test_max_int64': 'non-float32 input tensor (integer / bool / float16 / float64): edgenet activations are float32',
    'test_max_int8': 'non-float32 input tensor (integer / bool / float16 / float64): edgenet activations are float32',
    'test_max_uint16': 'non-float32 input tensor (integer / bool / float16 / float64): edgenet activations are float32',
    'test_max_uint32': 'non-float32 input tensor (integer / bool / float16 / float64): edgenet activations are float32',
    'test_max_uint64': 'non-float32 input tensor (integer / bool / float16 / float64): edgenet activations are float32',
    'test_max_uint8': 'non-float32 input tensor (integer / bool / float16 / float64): edgenet activations are float32',
    'test_maxpool_2d_uint8': 'integer input tensor: edgenet activations are float32',
    'test_maxpool_3d_dilations': '3-D pooling or ConvTranspose: edgenet runs 1-D (mapped onto 2-D) and 2-D CNNs',
    'test_maxpool_3d_dilations_use_ref_impl': '3-D pooling or ConvTranspose: edgenet runs 1-D (mapped onto 2-D) and 2-D CNNs',
    'test_maxpool_with_argmax_2d_precomputed_pads': 'MaxPool Indices output (int64): edgenet outputs are float32',
    'test_maxpool_with_argmax_2d_precomputed_strides': 'MaxPool Indices output (int64): edgenet outputs are float32',
    'test_min_float16': 'non-float32 input tensor (integer / bool / float16 / float64): edgenet activations are float32',
    'test_min_float64': 'non-float32 input tensor (integer / bool / float16 / float64): edgenet activations are float32',
    'test_min_int16': 'non-float32 input tensor (integer / bool / float16 / float64): edgenet activations are float32',
    'test_min_int32': 'non-float32 input tensor (integer / bool / float16 / float64): edgenet activations are float32',
    'test_min_int64': 'non-float32 input tensor (integer / bool / float16 / float64): edgenet activations are float32',
    'test_min_int8': 'non-float32 input tensor (integer / bool / float16 / float64): edgenet activations are float32',
    'test_min_uint16': 'non-float32 input tensor (integer / bool / float16 / float64): edgenet activations are float32',
    'test_min_uint32': 'non-float32 input tensor (integer / bool / float16 / float64): edgenet activations are float32',
    'test_min_uint64': 'non-float32 input tensor (integer / bool / float16 / float64): edgenet activations are float32',
    'test_min_uint8': 'non-float32 input tensor (integer / bool / float16 / float64): edgenet activations are float32',
    'test_mul_int16': 'integer input tensor: edgenet activations are float32',
    'test_mul_int8': 'integer input tensor: edgenet activations are float32',
    'test_mul_uint16': 'integer input tensor: edgenet activations are float32',
    'test_mul_uint32': 'integer input tensor: edgenet activations are float32',
    'test_mul_uint64': 'integer input tensor: edgenet activations are float32',
    'test_mul_uint8': 'integer input tensor: edgenet activations are float32',
    'test_pow_types_int32_float32': 'non-float32 input tensor (integer / bool / float16 / float64): edgenet activations are float32',
    'test_pow_types_int32_int32': 'non-float32 input tensor (integer / bool / float16 / float64): edgenet activations are float32',
    'test_pow_types_int64_float32': 'non-float32 input tensor (integer / bool / float16 / float64): edgenet activations are float32',
    'test_pow_types_int64_int64': 'non-float32 input tensor (integer / bool / float16 / float64): edgenet activations are float32',
    'test_reduce_l1_empty_set': 'zero-size tensor: edgenet refuses empty inputs/outputs (no CNN produces them)',
    'test_reduce_l2_empty_set': 'zero-size tensor: edgenet refuses empty inputs/outputs (no CNN produces them)',
    'test_reduce_max_bool_inputs': 'non-float32 input tensor (integer / bool / float16 / float64): edgenet activations are float32',
    'test_reduce_max_empty_set': 'zero-size tensor: edgenet refuses empty inputs/outputs (no CNN produces them)',
    'test_reduce_max_empty_set_bool': 'non-float32 input tensor (integer / bool / float16 / float64): edgenet activations are float32',
    'test_reduce_min_bool_inputs': 'non-float32 input tensor (integer / bool / float16 / float64): edgenet activations are float32',
    'test_reduce_min_empty_set': 'zero-size tensor: edgenet refuses empty inputs/outputs (no CNN produces them)',
    'test_reduce_sum_empty_set': 'zero-size tensor: edgenet refuses empty inputs/outputs (no CNN produces them)',
    'test_reduce_sum_empty_set_non_reduced_axis_zero': 'zero-size tensor: edgenet refuses empty inputs/outputs (no CNN produces them)',
    'test_reduce_sum_square_empty_set': 'zero-size tensor: edgenet refuses empty inputs/outputs (no CNN produces them)',
    'test_reflect_pad': 'integer input tensor: edgenet activations are float32',
    'test_reshape_allowzero_reordered': 'zero-size tensor: edgenet refuses empty inputs/outputs (no CNN produces them)',
    'test_slice_start_out_of_bounds': 'zero-size tensor: edgenet refuses empty inputs/outputs (no CNN produces them)',
    'test_split_zero_size_splits_opset13': 'zero-size tensor: edgenet refuses empty inputs/outputs (no CNN produces them)',
    'test_split_zero_size_splits_opset18': 'zero-size tensor: edgenet refuses empty inputs/outputs (no CNN produces them)',
    'test_sub_int16': 'integer input tensor: edgenet activations are float32',
    'test_sub_int8': 'integer input tensor: edgenet activations are float32',
    'test_sub_uint16': 'integer input tensor: edgenet activations are float32',
    'test_sub_uint32': 'integer input tensor: edgenet activations are float32',
    'test_sub_uint64': 'integer input tensor: edgenet activations are float32',
    'test_sub_uint8': 'integer input tensor: edgenet activations are float32',
    'test_training_dropout': 'training-mode semantics (random mask / batch statistics): inference runtime',
    'test_training_dropout_default': 'training-mode semantics (random mask / batch statistics): inference runtime',
    'test_training_dropout_default_mask': 'training-mode semantics (random mask / batch statistics): inference runtime',
    'test_training_dropout_mask': 'training-mode semantics (random mask / batch statistics): inference runtime',
    'test_training_dropout_zero_ratio_mask': 'training-mode semantics (random mask / batch statistics): inference runtime',
    'test_wrap_pad': 'integer input tensor: edgenet activations are float32',
}
# Within scope, not done yet (issue 13 work items); each entry states today's failure.
TODO = {
}

EXCLUDE: dict[str, str] = {**NOT_APPLICABLE, **TODO}


def build_model(case):
    """The case's model with inputs 1.. as initializers; (model, first input, expected)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(os.path.join(CASE_DIR, case + ".onnx"))
    with np.load(os.path.join(CASE_DIR, case + ".npz"), allow_pickle=False) as z:
        ins = [z[f"input_{i}"] for i in range(len(model.graph.input))]
        outs = [z[f"output_{i}"] for i in range(len(model.graph.output))]
    g = model.graph
    first = g.input[0]
    consts = list(g.input[1:])
    for vi, a in zip(consts, ins[1:]):
        g.initializer.append(numpy_helper.from_array(a, vi.name))
    del g.input[1:]
    return model, (first.name, ins[0]), {o.name: a for o, a in zip(g.output, outs)}


def run_case(case, tmp_dir):
    """Convert and run one case; return {output name: array} from edgenet."""
    import onnx

    import edgenet
    from converters.convert import convert

    model, (iname, x), _ = build_model(case)
    src = os.path.join(tmp_dir, case + ".onnx")
    dst = os.path.join(tmp_dir, case + ".edgenet")
    onnx.save(model, src)
    convert(src, dst, weights="f32", keep_float=())
    return edgenet.load(dst).run({iname: x})


def check_case(case, tmp_dir):
    _, _, want = build_model(case)
    got = run_case(case, tmp_dir)
    for name, w in want.items():
        assert name in got, f"output '{name}' missing"
        g = np.asarray(got[name])
        assert g.shape == w.shape, f"output '{name}': shape {g.shape} != {w.shape}"
        np.testing.assert_allclose(g, w, rtol=RTOL, atol=ATOL, err_msg=f"output '{name}'")


pytest.importorskip("onnx")


@pytest.mark.parametrize("case", CASES)
def test_node(case, tmp_path):
    if case in EXCLUDE:
        pytest.skip(EXCLUDE[case])
    check_case(case, str(tmp_path))


def test_exclusions_are_real_cases():
    stale = sorted(set(EXCLUDE) - set(CASES))
    assert not stale, f"EXCLUDE names cases that do not exist: {stale}"


def _op_of(case):
    import onnx
    return onnx.load(os.path.join(CASE_DIR, case + ".onnx")).graph.node[0].op_type


def _summary():
    """Run every case (excluded ones too); print per-op and total pass rates and each
    failure with its cause. The rate "in scope" leaves out NOT_APPLICABLE cases."""
    import tempfile
    fails, by_op = {}, {}
    with tempfile.TemporaryDirectory() as d:
        for case in CASES:
            by_op.setdefault(_op_of(case), []).append(case)
            try:
                check_case(case, d)
            except Exception as e:  # noqa: BLE001
                msg = str(e).strip().splitlines()
                fails[case] = f"{type(e).__name__}: {msg[0] if msg else ''}"[:200]
    for op, cases in sorted(by_op.items()):
        ok = sum(c not in fails for c in cases)
        print(f"{op:24s} {ok:3d}/{len(cases)}")
    n = len(CASES)
    scope = [c for c in CASES if c not in NOT_APPLICABLE]
    ok_scope = sum(c not in fails for c in scope)
    print(f"all cases: {n - len(fails)}/{n} pass ({100 * (n - len(fails)) / n:.1f}%); "
          f"in scope: {ok_scope}/{len(scope)} ({100 * ok_scope / len(scope):.1f}%)")
    for case, why in fails.items():
        tag = " [excluded]" if case in EXCLUDE else ""
        print(f"FAIL{tag} {case}: {why}")
    return fails


if __name__ == "__main__":
    _summary()
