"""Mixed precision with a ternary floor (converters.mixed.choose_min_ternary, convert
``min_ternary`` / ``edgenet convert --min-ternary``) and ``edgenet finetune --int8``.

Oracles: onnxruntime on the --reference-onnx export for the written file; the file's own
stored encodings and sizes for the budget; a brute-force check of the greedy rule on
measured sensitivities."""
import itertools

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from click.testing import CliRunner  # noqa: E402

import edgenet  # noqa: E402
from converters import mixed, ptq  # noqa: E402
from converters.convert import convert  # noqa: E402
from converters.from_onnx import load_onnx  # noqa: E402
from edgenet.cli import main  # noqa: E402
from edgenet.errors import ConversionError  # noqa: E402
from edgenet.format import read_model  # noqa: E402
from test_ptq import _net, _samples  # noqa: E402


def _t2_share(path):
    ws = [t for t in read_model(path).weights().values() if len(t.shape) >= 2]
    n = sum(int(np.prod(t.shape)) for t in ws)
    return sum(int(np.prod(t.shape)) for t in ws if t.encoding.value == "t2") / n


@pytest.mark.parametrize("floor", [0.5, 0.8, 1.0])
def test_min_ternary_file_honours_floor_and_matches_reference_onnx(tmp_path, floor):
    src = _net(str(tmp_path / "net.onnx"))
    dst, ref = str(tmp_path / "m.edgenet"), str(tmp_path / "m.ref.onnx")
    msgs = []
    rep = convert(src, dst, weights="ternary", keep_float="none", calibration=_samples(64),
                  min_ternary=floor, reference_onnx=ref, log=msgs.append)
    share = _t2_share(dst)
    assert share >= floor - 1e-12
    assert {r.encoding for r in rep.layers} <= {"t2", "i8"}
    if floor < 1.0:       # the budget is used: sizes 216, 72, 128, 80 (496 weights)
        assert any(r.encoding == "i8" for r in rep.layers)
    else:
        assert all(r.encoding == "t2" for r in rep.layers)
    meta = read_model(dst).metadata["quantization"]["mixed"]
    assert meta["min_ternary"] == floor
    assert [t["encoding"] for t in meta["table"]] == [r.encoding for r in rep.layers]
    assert "ternary:" in msgs[-1] and "bits/weight" in msgs[-1]
    x = _samples(16, seed=7)
    want = ort.InferenceSession(ref, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    for dev in ("reference", "cpu"):
        np.testing.assert_allclose(edgenet.load(dst, device=dev)(x), want, rtol=1e-4,
                                   atol=1e-4)


def test_greedy_choice_on_measured_sensitivities(tmp_path):
    """Each floor: the chosen set fits the budget, and no t2 layer that would still fit
    (with a positive gain) is left out; at a floor that leaves room for exactly one layer
    of any size, the layer with the largest gain per weight (brute force) is chosen."""
    g = load_onnx(_net(str(tmp_path / "net.onnx")))
    e0 = {nd["inputs"][1]: "t2" for nd in ptq.weight_nodes(g)}
    x = _samples(48)
    sens, _, _ = mixed.sensitivities(g, x, e0, ("t2", "i8"))
    size = {k: int(np.prod(g.weights[k].values.shape)) for k in e0}
    total = sum(size.values())
    gain = {k: sens[k]["t2"][0] - sens[k]["i8"][0] for k in e0}
    for floor in (0.0, 0.3, 0.5, 0.6, 0.8, 0.9, 1.0):
        encs, table, share = mixed.choose_min_ternary(g, x, e0, floor, sens=sens)
        up = [k for k in e0 if encs[k] == "i8"]
        assert share >= floor - 1e-12
        assert share == pytest.approx(1 - sum(size[k] for k in up) / total)
        room = total - np.ceil(floor * total - 1e-9) - sum(size[k] for k in up)
        assert not [k for k in e0 if k not in up and gain[k] > 0 and size[k] <= room]
        assert [r["encoding"] for r in table] == [encs[k] for k in e0]
    # room for one layer only (the largest): the best gain per weight wins
    big = max(size.values())
    floor = 1 - big / total
    encs, _, _ = mixed.choose_min_ternary(g, x, e0, floor, sens=sens)
    best = max((k for k in e0 if gain[k] > 0), key=lambda k: gain[k] / size[k])
    assert encs[best] == "i8"
    # no subset of the layers within the budget has a larger total gain by a margin
    # that the greedy rule would miss by more than the largest single layer's gain
    chosen = sum(gain[k] for k in e0 if encs[k] == "i8")
    opt = max(sum(gain[k] for k in s) for r in range(len(e0) + 1)
              for s in itertools.combinations(e0, r) if sum(size[k] for k in s) <= big)
    assert chosen >= opt - max(gain.values()) - 1e-12


def test_min_ternary_errors(tmp_path):
    src = _net(str(tmp_path / "net.onnx"))
    x = _samples(32)
    with pytest.raises(ValueError, match="ternary"):
        convert(src, str(tmp_path / "a.edgenet"), weights="quinary", calibration=x,
                min_ternary=0.8)
    with pytest.raises(ConversionError, match="calibration samples"):
        convert(src, str(tmp_path / "a.edgenet"), weights="ternary", min_ternary=0.8)
    with pytest.raises(ConversionError, match="can be ternary"):    # first/last kept float
        convert(src, str(tmp_path / "a.edgenet"), weights="ternary", calibration=x,
                keep_float=("first", "last"), min_ternary=0.8)
    np.save(tmp_path / "s.npy", x)
    for extra in ([], ["--weights", "quinary", "--calibrate", str(tmp_path / "s.npy")],
                  ["--max-bits", "3", "--calibrate", str(tmp_path / "s.npy")]):
        r = CliRunner().invoke(main, ["convert", src, "-o", str(tmp_path / "c.edgenet"),
                                      "--min-ternary", "0.8", *extra])
        assert r.exit_code != 0
        assert "--min-ternary" in r.output and "Traceback" not in r.output
        assert len([ln for ln in r.output.splitlines() if ln.strip()]) == 1, r.output
    assert not (tmp_path / "c.edgenet").exists()


def test_cli_min_ternary_prints_table(tmp_path):
    src = _net(str(tmp_path / "net.onnx"))
    np.save(tmp_path / "s.npy", _samples(48))
    dst = str(tmp_path / "c.edgenet")
    r = CliRunner().invoke(main, ["convert", src, "-o", dst, "--keep-float", "none",
                                  "--calibrate", str(tmp_path / "s.npy"),
                                  "--min-ternary", "0.6", "--calib-seeds", "2"])
    assert r.exit_code == 0, r.output
    assert "sens.NSR" in r.output and "ternary:" in r.output
    assert "calibration seed 1" in r.output
    assert _t2_share(dst) >= 0.6


def test_calib_seeds_keeps_the_best_held_out_solution(tmp_path):
    """calib_seeds=3: three calibrations (row samplings differ: max_rows below the rows),
    the written file is the one with the best held-out SNR, and it matches onnxruntime on
    its reference export."""
    src = _net(str(tmp_path / "net.onnx"))
    x = _samples(384)            # 320 x 144 positions > ptq.MAX_ROWS: the seed matters
    dst, ref = str(tmp_path / "s.edgenet"), str(tmp_path / "s.ref.onnx")
    rep = convert(src, dst, weights="ternary", keep_float="none", calibration=x[:320],
                  fidelity_samples=x[320:], calibrate_weights=True, calib_seeds=3,
                  reference_onnx=ref)
    seeds = read_model(dst).metadata["quantization"]["calibrated"]["seeds"]
    assert [s["seed"] for s in seeds] == [0, 1, 2]
    snrs = [s["snr_db"] for s in seeds]
    assert len(set(round(v, 6) for v in snrs)) > 1          # the solutions differ
    assert rep.fidelity["snr_db"] == pytest.approx(max(snrs), abs=0.05)
    xt = _samples(16, seed=7)
    want = ort.InferenceSession(ref, providers=["CPUExecutionProvider"]).run(None, {"x": xt})[0]
    np.testing.assert_allclose(edgenet.load(dst, device="reference")(xt), want, rtol=1e-4,
                               atol=1e-4)
    with pytest.raises(ConversionError, match="held-out"):
        convert(src, dst, weights="ternary", keep_float="none", calibration=x, holdout=0.0,
                calibrate_weights=True, calib_seeds=2)


def test_int8_rule_then_floor(tmp_path):
    """--int8 small:N with --min-ternary: the rule's layers are i8 and count against the
    floor; without calibration --int8 is refused in one line."""
    src = _net(str(tmp_path / "net.onnx"))
    x = _samples(48)
    np.save(tmp_path / "s.npy", x)
    dst = str(tmp_path / "r.edgenet")
    rep = convert(src, dst, weights="ternary", keep_float="none", calibration=x,
                  min_ternary=0.5, int8="small:72")
    by = {r.name: r.encoding for r in rep.layers}
    assert by["dw"] == "i8" and _t2_share(dst) >= 0.5
    assert read_model(dst).metadata["quantization"]["int8"] == "small:72"
    r = CliRunner().invoke(main, ["convert", src, "-o", dst + "2", "--int8", "small:72"])
    assert r.exit_code != 0 and "--int8" in r.output
    assert len([ln for ln in r.output.splitlines() if ln.strip()]) == 1, r.output
