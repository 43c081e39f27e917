"""The command line: outputs, exit codes, one-line errors."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from edgenet.cli import main
from helpers import residual_net


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return residual_net(str(tmp_path_factory.mktemp("cli") / "m.edgenet"), "t2")


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_info_text_and_json(model):
    r = invoke("info", model)
    assert r.exit_code == 0, r.output
    assert "x: float32 ['N', 3, 9, 9]" in r.output and "Conv×2" in r.output
    d = json.loads(invoke("info", model, "--json").output)
    assert d["ops"]["Conv"] == 2 and d["parameters_by_encoding"]["t2"] == 8 * 27 + 8 * 72 + 40
    assert d["metadata"]["labels"] == list("abcde")


def test_run_npy_writes_output_and_top_k(model, tmp_path):
    x = np.random.default_rng(0).standard_normal((2, 3, 9, 9)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "y.npy"
    r = invoke("run", model, tmp_path / "x.npy", "-o", out, "--top-k", "2")
    assert r.exit_code == 0, r.output
    import edgenet
    np.testing.assert_array_equal(np.load(out), edgenet.load(model)(x))
    assert r.output.count("[") >= 2 and any(c in r.output for c in "abcde")
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_run_npz_and_single_sample(model, tmp_path):
    x = np.random.default_rng(1).standard_normal((3, 9, 9)).astype(np.float32)
    np.savez(tmp_path / "x.npz", x=x)
    r = invoke("run", model, tmp_path / "x.npz")
    assert r.exit_code == 0, r.output
    assert "output (1, 5)" in r.output


@pytest.mark.parametrize("case", ["missing", "garbage", "truncated", "wrong_shape"])
def test_errors_are_one_line_exit_2(model, tmp_path, case):
    bad = tmp_path / "bad.edgenet"
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((1, 3, 9, 9), np.float32))
    if case == "missing":
        args = ["info", tmp_path / "nope.edgenet"]
    elif case == "garbage":
        bad.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(200))
        args = ["info", bad]
    elif case == "truncated":
        data = open(model, "rb").read()
        bad.write_bytes(data[: len(data) // 2])
        args = ["run", bad, x]
    else:
        np.save(x, np.zeros((1, 3, 8, 8), np.float32))
        args = ["run", model, x]
    p = subprocess.run([sys.executable, "-m", "edgenet.cli", *map(str, args)],
                       capture_output=True, text=True)
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgenet: error: "), p.stderr
    assert "Traceback" not in p.stderr


def test_bench_json(model):
    r = invoke("bench", model, "--runs", "5", "--warmup", "1", "--json", "--profile")
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert d["latency_ms"]["runs"] == 5 and d["latency_ms"]["min"] > 0
    assert {row["op"] for row in d["profile_ms"]} >= {"Conv", "Gemm"}


def test_run_image_uses_bundled_example_preprocessing(tmp_path):
    """An image INPUT is resized to the model's input and scaled to [0, 1]."""
    PIL = pytest.importorskip("PIL.Image")
    from edgenet.io import EXAMPLE_INPUT, EXAMPLE_MODEL
    import edgenet
    with np.load(EXAMPLE_INPUT) as z:
        digit = z["x"][0, 0]  # values in [0, 1]
    img = PIL.fromarray(np.round(digit * 255).astype(np.uint8), mode="L").resize((32, 32))
    img.save(tmp_path / "d.png")
    r = invoke("run", EXAMPLE_MODEL, tmp_path / "d.png", "--top-k", "3", "-o", tmp_path / "y.npy")
    assert r.exit_code == 0, r.output
    y = np.load(tmp_path / "y.npy")
    assert y.shape == (1, 10)
    small = np.asarray(img.resize((8, 8)), np.float32)[None, None] / 255.0
    np.testing.assert_allclose(y, edgenet.load(EXAMPLE_MODEL)(small), rtol=1e-5, atol=1e-5)


def test_run_without_arguments_runs_the_bundled_example():
    r = invoke("run")
    assert r.exit_code == 0, r.output
    acc = float(r.output.strip().splitlines()[-1].split(":")[-1].strip().rstrip("%"))
    assert acc > 90.0, r.output
