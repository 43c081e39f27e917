"""`edgenet convert --reference-onnx`: both outputs or neither.

If the reference ONNX export fails (a bug in the export, a full disk), no .edgenet file is
left behind (no half-written output), the CLI prints one error line and exits non-zero, and
a file already at the output path is left as it was. Oracle for the success case:
onnxruntime on the reference export against edgenet on the file.
"""
import importlib
import os

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from click.testing import CliRunner  # noqa: E402

import edgenet  # noqa: E402
from edgenet.cli import main  # noqa: E402
from edgenet.errors import ConversionError  # noqa: E402
from test_ptq import _net, _samples  # noqa: E402

convert_mod = importlib.import_module("converters.convert")   # the module, not the function


def _cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def _one_error_line(r):
    assert r.exit_code != 0, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgenet: error: "), r.stderr
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout


def _failing_export(kind):
    real = convert_mod.write_reference_onnx

    def export(model, ref_values, path, **kw):
        real(model, ref_values, path, **kw)          # a real, complete write first ...
        if kind == "bug":                            # ... then the failure
            raise ConversionError("reference ONNX: layers not found for the bias corrections")
        with open(path, "ab") as f:                  # a half-written file, then a full disk
            f.write(b"\0" * 100)
        raise OSError(28, "No space left on device")
    return export


@pytest.mark.parametrize("kind", ["bug", "disk"])
@pytest.mark.parametrize("calibrate", [False, True])
def test_failed_reference_export_leaves_no_output(tmp_path, monkeypatch, kind, calibrate):
    src = _net(str(tmp_path / "net.onnx"))
    dst, ref = tmp_path / "net.edgenet", tmp_path / "net.ref.onnx"
    args = ["convert", src, "-o", dst, "--weights", "ternary", "--reference-onnx", ref, "-q"]
    if calibrate:
        np.save(tmp_path / "cal.npy", _samples(32))
        args += ["--calibrate", tmp_path / "cal.npy"]
    monkeypatch.setattr(convert_mod, "write_reference_onnx", _failing_export(kind))
    r = _cli(*args)
    _one_error_line(r)
    assert ("bias corrections" if kind == "bug" else "No space left") in r.stderr
    assert sorted(os.listdir(tmp_path)) == sorted(["net.onnx"] + (["cal.npy"] if calibrate
                                                                  else []))
    # an earlier file at the output path is left as it was
    dst.write_bytes(b"earlier output")
    _one_error_line(_cli(*args))
    assert dst.read_bytes() == b"earlier output" and not ref.exists()


def test_model_write_failure_leaves_no_reference(tmp_path, monkeypatch):
    src = _net(str(tmp_path / "net.onnx"))
    dst, ref = tmp_path / "net.edgenet", tmp_path / "net.ref.onnx"

    def fail(path, **kw):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(convert_mod, "write_model", fail)
    r = _cli("convert", src, "-o", dst, "--weights", "ternary", "--reference-onnx", ref)
    _one_error_line(r)
    assert os.listdir(tmp_path) == ["net.onnx"]


def test_success_writes_both_and_no_temporaries(tmp_path):
    src = _net(str(tmp_path / "net.onnx"))
    dst, ref = tmp_path / "net.edgenet", tmp_path / "net.ref.onnx"
    r = _cli("convert", src, "-o", dst, "--weights", "ternary", "--reference-onnx", ref, "-q")
    assert r.exit_code == 0, r.output
    assert sorted(os.listdir(tmp_path)) == ["net.edgenet", "net.onnx", "net.ref.onnx"]
    # the usual permissions (as the .edgenet file gets), not a temporary file's 0600
    assert os.stat(ref).st_mode & 0o777 == os.stat(dst).st_mode & 0o777
    x = _samples(8, seed=5)
    want = ort.InferenceSession(str(ref), providers=["CPUExecutionProvider"]).run(
        None, {"x": x})[0]
    np.testing.assert_allclose(edgenet.load(str(dst), device="reference")(x), want,
                               rtol=1e-4, atol=1e-4)
