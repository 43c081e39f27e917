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
    d = json.loads(invoke("info", model, "--json").stdout)
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
    d = json.loads(r.stdout)  # stderr may carry a "compiling kernels" line
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
    acc = float(r.stdout.strip().splitlines()[-1].split(":")[-1].strip().rstrip("%"))
    assert acc > 90.0, r.output


# -- the command line never surprises (issue 15) -------------------------------------------
FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
ONNX_MODEL = os.path.join(FIXTURES, "resnet20.onnx")


@pytest.fixture(scope="module")
def f32_resnet20(tmp_path_factory):
    pytest.importorskip("onnx")
    from converters import convert
    out = str(tmp_path_factory.mktemp("cmp") / "r20.edgenet")
    convert(ONNX_MODEL, out, weights="f32")
    return out


def test_bench_compare_times_every_installed_peer(f32_resnet20):
    """--compare: onnxruntime (a dev dependency) in turns with edgenet, and OpenVINO where it
    is installed; each peer's median and edgenet's median / its median."""
    pytest.importorskip("onnxruntime")
    import importlib.util
    has_ov = importlib.util.find_spec("openvino") is not None
    r = invoke("bench", f32_resnet20, "--runs", "6", "--warmup-runs", "1", "--threads", "1",
               "--compare", ONNX_MODEL, "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    peers = ["onnxruntime"] + (["openvino"] if has_ov else [])
    for k in peers:
        assert d[f"{k}_ms"]["runs"] == 6 and d[f"{k}_ms"]["median"] > 0
        assert d[f"ratio_vs_{k}"] == pytest.approx(
            d["latency_ms"]["median"] / d[f"{k}_ms"]["median"])
    assert ("openvino_ms" in d) == has_ov
    r = invoke("bench", f32_resnet20, "--runs", "2", "--warmup-runs", "0", "--threads", "1",
               "--compare", ONNX_MODEL)
    assert r.exit_code == 0, r.output
    for k in peers:
        assert f"edgenet / {k} = " in r.output, r.output


def test_bench_compare_with_a_model_that_does_not_fit_is_one_line(f32_resnet20, tmp_path):
    """An ONNX file the peers cannot run on the model's inputs (another model: 28x28 MNIST
    against ResNet-20's 32x32 input) or cannot parse: exit 2, one line naming --compare and
    the file, no traceback."""
    pytest.importorskip("onnxruntime")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx file")
    for other in (os.path.join(FIXTURES, "mnist_seed_relu.onnx"), str(bad)):
        r = invoke("bench", f32_resnet20, "--runs", "2", "--compare", other)
        assert r.exit_code == 2, r.output
        line = _stderr_one_error_line(r)
        assert "--compare" in line and os.path.basename(other) in line, line


def _stderr_one_error_line(r):
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgenet: error: "), r.stderr
    return lines[0]


@pytest.mark.parametrize("args, says", [
    (["bench", "{m}", "--compare", "{t}/nope.onnx"], "--compare"),
    (["convert", ONNX_MODEL, "-o", "{t}/o.edgenet", "--calibrate", "{t}/nope.npy"],
     "--calibrate"),
    (["convert", ONNX_MODEL, "-o", "{t}/o.edgenet", "--labels", "{t}/nope.txt"], "--labels"),
    (["convert", ONNX_MODEL], "--output"),
    (["run", "{m}", "{t}/x.npy", "--device", "tpu"], "--device"),
    (["info", "{m}", "--colour"], "--colour"),
    (["nosuchcommand"], "nosuchcommand"),
])
def test_usage_errors_are_one_line_exit_2(model, tmp_path, args, says):
    """click's own usage errors (missing files, bad choices, unknown options or commands)
    follow the same rule as edgenet's: exit 2, one line naming the culprit."""
    r = invoke(*[a.format(m=model, t=tmp_path) for a in args])
    assert r.exit_code == 2, r.output
    line = _stderr_one_error_line(r)
    assert says in line and "Usage:" not in r.output


def test_bare_command_prints_help():
    r = invoke()
    assert r.exit_code == 0 and "Commands:" in r.stdout and "edgenet: error" not in r.output
    assert r.stdout.startswith("Usage: edgenet ")


def test_usage_error_one_line_in_a_real_process(tmp_path):
    p = subprocess.run([sys.executable, "-m", "edgenet", "convert", ONNX_MODEL, "-o",
                        str(tmp_path / "o.edgenet"), "--labels", str(tmp_path / "no.txt")],
                       capture_output=True, text=True)
    assert p.returncode == 2 and p.stdout == ""
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgenet: error: ") and "no.txt" in lines[0]


@pytest.mark.parametrize("where", ["before", "after", "env"])
def test_debug_anywhere_shows_the_traceback(tmp_path, where):
    missing = str(tmp_path / "nope.edgenet")
    args = {"before": ["--debug", "info", missing], "after": ["info", missing, "--debug"],
            "env": ["info", missing]}[where]
    env = dict(os.environ, EDGENET_DEBUG="1") if where == "env" else None
    p = subprocess.run([sys.executable, "-m", "edgenet", *args], capture_output=True,
                       text=True, env=env)
    assert p.returncode == 2
    assert "Traceback" in p.stderr and p.stderr.strip().splitlines()[-1].startswith(
        "edgenet: error: "), p.stderr
    quiet = subprocess.run([sys.executable, "-m", "edgenet", "info", missing],
                           capture_output=True, text=True) if where == "before" else None
    if quiet is not None:
        assert "Traceback" not in quiet.stderr and quiet.returncode == 2


def test_broken_pipe_is_quiet(model):
    """`edgenet info m.edgenet | head -2`: the reader goes away before edgenet writes; no
    message, status 0."""
    p = subprocess.Popen([sys.executable, "-m", "edgenet", "info", model],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.close()  # closed before the child has started writing
    err = p.stderr.read().decode()
    assert p.wait(timeout=120) == 0, err
    assert err == ""


@pytest.mark.parametrize("cmd", ["info", "run", "bench", "warmup"])
def test_onnx_given_where_edgenet_expected_hints_convert(tmp_path, cmd):
    renamed = tmp_path / "model.bin"  # sniffed by content, not only by the name
    renamed.write_bytes(open(ONNX_MODEL, "rb").read())
    for path in (ONNX_MODEL, str(renamed)):
        args = [cmd, path] + (["x.npy"] if cmd == "run" else [])
        r = invoke(*args)
        assert r.exit_code == 2, r.output
        line = _stderr_one_error_line(r)
        assert "is an ONNX model; convert it first: edgenet convert" in line, line
        assert "bad magic" not in line


def _png(path, size, mode="RGB"):
    PIL = pytest.importorskip("PIL.Image")
    arr = np.random.default_rng(0).integers(0, 255, size=(size, size, 3), dtype=np.uint8)
    PIL.fromarray(arr, mode=mode).save(path)
    return path


def test_image_without_preprocessing_warns_once(model, tmp_path):
    from edgenet.format import read_model, write_model
    img = _png(tmp_path / "i.png", 9)
    r = invoke("run", model, img)
    assert r.exit_code == 0, r.output
    warnings = [ln for ln in r.stderr.splitlines() if ln.startswith("edgenet: warning:")]
    assert len(warnings) == 1 and "preprocessing" in warnings[0], r.stderr
    # the same model with stored mean/std: no warning
    m = read_model(model)
    meta = dict(m.metadata, preprocessing={"mean": [0.5] * 3, "std": [0.25] * 3,
                                           "layout": "NCHW", "size": None})
    withpre = str(tmp_path / "pre.edgenet")
    write_model(withpre, graph=m.graph, tensors=m.weights(), metadata=meta)
    r = invoke("run", withpre, img)
    assert r.exit_code == 0, r.output
    assert "warning" not in r.stderr, r.stderr


def test_every_option_has_help():
    from edgenet.cli import main as group
    missing = []
    for name, cmd in sorted(group.commands.items()):
        for p in cmd.params + (group.params if name == "info" else []):
            if getattr(p, "param_type_name", "") == "option" and not p.hidden and \
                    not (p.help or "").strip():
                missing.append(f"{name} {p.opts[0]}")
    assert not missing, missing


def test_batch_size_spelled_the_same_in_bench_and_batch(model):
    from edgenet.cli import main as group
    for name in ("bench", "batch"):
        opts = {o for p in group.commands[name].params for o in p.opts}
        assert "--batch-size" in opts, name
    r = invoke("bench", "--help")
    assert "--batch-size" in r.output and "--warmup-runs" in r.output
    assert "--batch " not in r.output and "--warmup " not in r.output  # hidden aliases
    for args, want in ((["--batch-size", "3"], 3), (["--batch", "2"], 2), ([], 1)):
        r = invoke("bench", model, "--runs", "2", "--warmup-runs", "0", "--json", *args)
        assert r.exit_code == 0, r.output
        assert json.loads(r.stdout)["batch"] == want
    r = invoke("bench", model, "--runs", "2", "--warmup", "0", "--batch-size", "2",
               "--batch", "3")
    assert r.exit_code == 2 and "disagree" in r.stderr


def test_run_checks_output_folder_before_running(model, tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((1, 3, 9, 9), np.float32))
    r = invoke("run", model, tmp_path / "x.npy", "-o", tmp_path / "no" / "y.npy")
    assert r.exit_code == 2 and "does not exist" in _stderr_one_error_line(r)


# -- convert: early checks, table, counts (needs onnx) ---------------------------------------
@pytest.fixture
def no_quantizing(monkeypatch):
    """Make quantizing a weight fail the test: checks must come before any of it."""
    pytest.importorskip("onnx")
    import importlib
    cc = importlib.import_module("converters.convert")  # the module (the package's
    # `convert` attribute is the function)

    def boom(*a, **k):
        raise AssertionError("quantized before the check")
    monkeypatch.setattr(cc, "quantize_weight", boom)


@pytest.mark.parametrize("case", ["missing_dir", "dir_is_file", "ref_missing_dir", "mean",
                                  "std", "labels"])
def test_convert_checks_before_quantizing(tmp_path, no_quantizing, case):
    labels = tmp_path / "labels.txt"
    labels.write_text("cat\ndog\n")
    out = str(tmp_path / "o.edgenet")
    extra, says = {
        "missing_dir": ([], "does not exist"),
        "dir_is_file": ([], "is a directory"),
        "ref_missing_dir": (["--reference-onnx", str(tmp_path / "no" / "r.onnx")],
                            "does not exist"),
        "mean": (["--mean", "0.5,0.5"], "--mean: 2 values, but the input of resnet20.onnx "
                                        "has 3 channels"),
        "std": (["--std", "1,1,1,1"], "--std: 4 values"),
        "labels": (["--labels", str(labels)], "--labels: 2 labels, but the output of "
                                              "resnet20.onnx has 10 classes"),
    }[case]
    if case == "missing_dir":
        out = str(tmp_path / "no" / "o.edgenet")
    if case == "dir_is_file":
        out = str(tmp_path)
    r = invoke("convert", ONNX_MODEL, "-o", out, *extra)
    assert r.exit_code == 2, r.output
    line = _stderr_one_error_line(r)
    assert says in line, line
    assert ".tmp" not in line and not os.path.exists(str(tmp_path / "o.edgenet"))


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    onnx = pytest.importorskip("onnx")
    d = tmp_path_factory.mktemp("conv")
    dst = str(d / "r20.edgenet")
    r = CliRunner().invoke(main, ["convert", ONNX_MODEL, "-o", dst], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    g = onnx.load(ONNX_MODEL).graph
    init = {t.name: int(np.prod(t.dims)) for t in g.initializer}
    oracle = sum(init[n.input[1]] for n in g.node
                 if n.op_type in ("Conv", "ConvTranspose", "Gemm") and n.input[1] in init)
    return dst, r.stdout, oracle


def test_convert_table_headings_match_columns(converted):
    _, out, _ = converted
    lines = out.splitlines()
    hdr, rule = lines[0], lines[1]
    assert hdr.split() == ["layer", "op", "shape", "enc", "zeros%", "rel.err", "bytes", "note"]
    assert len(rule.split()) == len(hdr.split())  # one dashed rule per heading
    kept = next(ln for ln in lines if "kept float" in ln)
    assert kept.index("kept float") == hdr.index("note")


def test_convert_and_info_count_the_same_weights(converted):
    """convert counted Conv/Gemm weights, info every tensor: both now print both, labelled,
    and agree with each other and with the ONNX file's own weight initializers."""
    import re
    dst, out, oracle = converted
    n_conv = int(re.search(r"over ([\d,]+) conv/gemm weights", out).group(1).replace(",", ""))
    total = int(re.search(r"([\d,]+) parameters in all", out).group(1).replace(",", ""))
    bits = re.search(r"([\d.]+) bits/weight over", out).group(1)
    d = json.loads(invoke("info", dst, "--json").stdout)
    assert n_conv == oracle == d["weights"]
    assert total == d["parameters"] > n_conv
    assert f"{d['bits_per_weight']:.2f}" == bits
    text = invoke("info", dst).stdout
    assert f"params {total:,} " in text and f"{n_conv:,} conv/gemm weights ({bits} bits/weight)" \
        in text
    assert f"+ {total - n_conv:,} other" in text and f"+ {total - n_conv:,} other" in out


def test_quick_start_needs_only_the_runtime_dependencies():
    """`pip install -e . && python3 -m edgenet run` (README): the demo imports nothing
    beyond the four declared dependencies (no onnx, Pillow, onnxruntime, ray...)."""
    import tomllib
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, "pyproject.toml"), "rb") as f:
        deps = tomllib.load(f)["project"]["dependencies"]
    names = sorted(d.split(">")[0].split("=")[0].split("[")[0].strip() for d in deps)
    assert names == ["click", "llvmlite", "numba", "numpy"]
    readme = open(os.path.join(root, "README.md"), encoding="utf-8").read()
    assert "python3 -m pip install -e . && python3 -m edgenet run" in readme
    # a fresh venv, simulated: every import outside the stdlib and those four fails, as if
    # not installed (packages import their optional extras in try/except)
    code = ("import sys\n"
            "ALLOWED = set(sys.stdlib_module_names) | {'click', 'llvmlite', 'numba', 'numpy',"
            " 'edgenet'}\n"
            "class Block:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        top = name.split('.')[0]\n"
            "        if top not in ALLOWED and not top.startswith('_'):\n"
            "            raise ModuleNotFoundError(f'blocked: {name}', name=name)\n"
            "sys.meta_path.insert(0, Block())\n"
            "from edgenet.cli import main\n"
            "main(['run'], standalone_mode=False)\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert "accuracy on 300 bundled test digits" in p.stdout, p.stdout + p.stderr


def test_warmup_keeps_working(model):
    r = invoke("warmup", model)
    assert r.exit_code == 0, r.output
    assert os.path.basename(model) in r.stdout
