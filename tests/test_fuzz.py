"""Fuzzing (hypothesis): mutated model files may only ever produce edgenet errors.

The mutators live in bench/fuzz.py (the long run: ``python bench/fuzz.py --cases 10000``).
Here hypothesis drives them: raw mutations (bit flips, byte overwrites, truncations,
appended bytes) must all be *detected* (FormatError); semantic mutations of the header
JSON, re-serialized with a correct length and CRC so they pass the checksum, and tensor
data changes with a fixed CRC must either load and run or raise an ``EdgenetError``
subclass -- never another exception, a crash or a hang.

CI counts: 250 raw + 400 semantic in-process cases (reference backend) and 120 cases in
worker subprocesses on the Numba CPU backend (crash/hang detection). EDGENET_LONG=1
multiplies them by 10.
"""
import faulthandler
import os
import random
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import edgenet
from bench.fuzz import RAW_KINDS, classify, mutate, run_case  # the fuzzer under test
from tests.helpers import build_model, model_input

LONG = os.environ.get("EDGENET_LONG") == "1"
SCALE = 10 if LONG else 1
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CASE_TIMEOUT = 60  # s; a hang aborts the test run with a traceback instead of hanging CI


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    d = tmp_path_factory.mktemp("fuzz")
    path = build_model(str(d / "base.edgenet"))
    return open(path, "rb").read(), str(d)


@pytest.fixture(scope="module")
def x():
    return model_input()


def _settings(n):
    return settings(max_examples=n * SCALE, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow,
                                           HealthCheck.function_scoped_fixture])


def _run(base, x, blob, device="reference"):
    _, d = base
    path = os.path.join(d, "case.edgenet")
    with open(path, "wb") as f:
        f.write(blob)
    faulthandler.dump_traceback_later(CASE_TIMEOUT, exit=True)
    try:
        return run_case(path, x, device)
    finally:
        faulthandler.cancel_dump_traceback_later()


def test_base_model_runs(base, x):
    outcome, exc = _run(base, x, base[0])
    assert outcome == "ok", exc


@_settings(250)
@given(rng=st.randoms(use_true_random=False), kind=st.sampled_from(RAW_KINDS))
def test_raw_mutations_are_detected(base, x, rng, kind):
    blob, kind, desc, must_detect = mutate(base[0], rng, kind)
    assert must_detect
    outcome, exc = _run(base, x, blob)
    assert outcome == "FormatError", f"{kind} {desc}: {outcome}: {exc!r}"


@_settings(400)
@given(rng=st.randoms(use_true_random=False), kind=st.sampled_from(["json"] * 4 + ["data"]))
def test_semantic_mutations_give_only_edgenet_errors(base, x, rng, kind):
    blob, kind, desc, _ = mutate(base[0], rng, kind)
    outcome, exc = _run(base, x, blob)
    assert outcome != "other exception", f"{kind} {desc}: {type(exc).__name__}: {exc}"
    assert exc is None or isinstance(exc, edgenet.EdgenetError)


def test_fuzz_mutations_reach_every_layer(base, x):
    """The semantic mutator is useful: over a fixed sample it produces files that pass the
    checksum and fail in the structural check (FormatError), in graph validation
    (ModelError), and files that load and run (ok)."""
    seen = set()
    for i in range(300):
        blob, kind, desc, _ = mutate(base[0], random.Random(i), "json")
        seen.add(_run(base, x, blob)[0])
    assert {"ok", "FormatError", "ModelError"} <= seen, seen


def test_fuzz_crashes_and_hangs_in_subprocess_cpu():
    """bench/fuzz.py's worker/watchdog harness on the Numba CPU kernels (where an unchecked
    shape would be an out-of-bounds read): 0 other exceptions, crashes, hangs, undetected."""
    n = 120 * SCALE
    r = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "fuzz.py"), "--cases",
                        str(n), "--device", "cpu", "--batch", str(n // 2), "--seed", "11",
                        "--timeout", "60", "--progress", "0"],
                       capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert f"{n} mutated files" in r.stdout, r.stdout + r.stderr
    assert r.returncode == 0, r.stdout + r.stderr


def test_watchdog_reports_crash_and_hang(tmp_path):
    """The harness itself: a worker killed by a signal inside a case is a crash (and the
    next case still runs), a worker stuck in a case is a hang."""
    src = open(os.path.join(ROOT, "bench", "fuzz.py")).read()
    for mode, action in (("crash", "os.kill(os.getpid(), signal.SIGSEGV)"),
                         ("hang", "time.sleep(3600)")):
        inject = ("import signal\n_orig_run_case = run_case\n"
                  "def run_case(path, x, device='reference'):\n"
                  "    if not path.endswith('base.edgenet'):\n"
                  f"        {action}\n"
                  "    return _orig_run_case(path, x, device)\n\n\n")
        patched = tmp_path / f"fuzz_{mode}.py"
        patched.write_text(src.replace("\ndef gen_case(", "\n" + inject + "def gen_case("))
        r = subprocess.run([sys.executable, str(patched), "--cases", "2", "--batch", "2",
                            "--timeout", "3", "--progress", "0"],
                           capture_output=True, text=True, timeout=300, cwd=ROOT,
                           env={**os.environ, "PYTHONPATH": ROOT})
        line = next(ln for ln in r.stdout.splitlines() if ln.strip().startswith(mode))
        assert line.split()[-1] == "2", r.stdout + r.stderr
        assert r.returncode == 1


def test_classify_hierarchy():
    assert classify(edgenet.ModelError("m")) == "ModelError"
    assert classify(edgenet.FormatError("f")) == "FormatError"
    assert classify(edgenet.InputError("i")) == "InputError"
    assert classify(edgenet.DeviceError("d")) == "other EdgenetError"
    assert classify(KeyError("k")) == "other exception"
    assert classify(None) == "ok"
    assert np.isfinite(model_input()).all()
