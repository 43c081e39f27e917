"""Reliability: no lost output, concurrency, soak, fork, read-only installs, inputs.

Counts are reduced in CI and full with EDGENET_LONG=1 (each test says which):
concurrency 8 threads x 1,000 calls (CI: 8 x 25), soak 10,000 sequential calls (CI: 600).
"""
import gc
import os
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
import threading
import time
import tracemalloc

import numpy as np
import pytest

import edgenet
from edgenet.errors import InputError
from edgenet.format import read_model
from edgenet.format.writer import TMP_PREFIX, stale_temporaries, sweep_stale_temporaries
from tests.helpers import build_model, model_input

LONG = os.environ.get("EDGENET_LONG") == "1"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEVICE = "cpu"


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return build_model(str(tmp_path_factory.mktemp("rel") / "m.edgenet"))


def _py(code, timeout=300, env=None, cwd=None):
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=timeout, cwd=cwd or ROOT,
                          env={**os.environ, "PYTHONPATH": ROOT, **(env or {})})


# ============================================================ no lost output
_BIG_WRITER = """
import sys, numpy as np
from edgenet.format import pack, write_model
from edgenet.io import save_npy
dst, what = sys.argv[1], sys.argv[2]
big = np.ones((64, 1 << 20), np.float32)  # 256 MiB: the write takes a while
print("writing", flush=True)
if what == "model":
    write_model(dst, graph={"inputs": [], "outputs": [], "nodes": []},
                tensors={"w": pack("f32", big)})
else:
    save_npy(dst, big)
"""


@pytest.mark.parametrize("what", ["model", "npy"])
@pytest.mark.parametrize("existing", [False, True], ids=["new", "replace"])
def test_sigkill_mid_write_never_half_writes_destination(tmp_path, what, existing):
    """SIGKILL a process while it writes a 256 MiB model / .npy: the destination is either
    absent (new) or still the old complete file (replace), never a partial file. A SIGKILLed
    process cannot remove its temporary; the format writer names it
    .edgenet-<host>-<pid>-*.tmp and the next write into the directory sweeps it."""
    dst = tmp_path / ("out.edgenet" if what == "model" else "out.npy")
    old = b"old complete file"
    if existing:
        dst.write_bytes(old)
    script = tmp_path / "w.py"
    script.write_text(_BIG_WRITER)
    p = subprocess.Popen([sys.executable, str(script), str(dst), what], cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": ROOT}, stdout=subprocess.PIPE)
    assert p.stdout.readline().strip() == b"writing"
    # wait until the temporary exists and is growing, then kill
    deadline = time.time() + 60
    tmp = []
    while time.time() < deadline:
        tmp = [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]
        if tmp and os.path.getsize(tmp_path / tmp[0]) > (1 << 20):
            break
        time.sleep(0.005)
    assert tmp, "writer never created its temporary"
    p.send_signal(signal.SIGKILL)
    p.wait()
    p.stdout.close()
    if existing:
        assert dst.read_bytes() == old
    else:
        assert not dst.exists()
    left = [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]
    assert left, "expected the killed writer's temporary (SIGKILL cannot be cleaned up)"
    if what == "model" or all(n.startswith(TMP_PREFIX) for n in left):
        # the format writer (and cli.atomic_save once it uses format.writer.atomic_write)
        assert all(n.startswith(TMP_PREFIX) for n in left)
        assert stale_temporaries(str(tmp_path))
        # the next write into the directory removes the dead writer's temporary
        build_model(str(tmp_path / "next.edgenet"))
        assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]
    else:  # cli.atomic_save before the patch in docs/RELIABILITY.md: sweep by hand
        for n in left:
            os.unlink(tmp_path / n)


def test_writer_exception_leaves_nothing(tmp_path, model_path):
    from edgenet.format import pack, write_model
    dst = tmp_path / "m.edgenet"
    with pytest.raises(TypeError):
        write_model(dst, graph={}, tensors={"a": pack("f32", np.ones(3)), "b": np.ones(3)})
    with pytest.raises(TypeError):  # not JSON-serializable metadata
        write_model(dst, graph={}, tensors={}, metadata={"x": object()})
    assert os.listdir(tmp_path) == []
    shutil.copy(model_path, dst)
    before = dst.read_bytes()
    with pytest.raises(TypeError):
        write_model(dst, graph={}, tensors={"b": np.ones(3)})
    assert dst.read_bytes() == before and os.listdir(tmp_path) == ["m.edgenet"]


def test_sweep_only_dead_writers_of_this_host(tmp_path):
    from edgenet.format.writer import _host
    alive = tmp_path / f"{TMP_PREFIX}{_host()}-{os.getppid()}-abc{'.tmp'}"
    other_host = tmp_path / f"{TMP_PREFIX}otherhost-999999999-abc.tmp"
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    dead = tmp_path / f"{TMP_PREFIX}{_host()}-{p.pid}-abc.tmp"
    unrelated = tmp_path / "user.tmp"
    for f in (alive, other_host, dead, unrelated):
        f.write_bytes(b"x")
    assert sweep_stale_temporaries(str(tmp_path)) == 1
    assert not dead.exists() and alive.exists() and other_host.exists() and unrelated.exists()


def test_atomic_write_by_path_and_failure(tmp_path):
    from edgenet.format.writer import atomic_write
    dst2 = tmp_path / "b.bin"
    atomic_write(dst2, lambda p: open(p, "wb").write(b"abc"), by_path=True)
    assert dst2.read_bytes() == b"abc"

    def boom(f):
        f.write(b"partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(dst2, boom)
    assert dst2.read_bytes() == b"abc"
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]


def test_save_npy_atomic_and_readable(tmp_path):
    from edgenet.io import save_npy
    out = tmp_path / "y.npy"
    y = np.arange(12, dtype=np.float32).reshape(3, 4)
    save_npy(str(out), y)
    np.testing.assert_array_equal(np.load(out), y)
    assert [n for n in os.listdir(tmp_path)] == ["y.npy"]


# ============================================================ concurrency and soak
def test_threads_identical_to_serial(model_path):
    """8 threads x 1,000 calls (CI: 8 x 100) on one model object, each with its own input
    and batch size: every result bit-identical to the serial result for that input."""
    n_calls = 1000 if LONG else 25
    m = edgenet.load(model_path, device=DEVICE)
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal((b, 3, 7, 7)).astype(np.float32) for b in (1, 2, 3, 4, 1, 2, 5, 8)]
    serial = [m(x) for x in xs]
    errors = []
    barrier = threading.Barrier(8)

    def work(t):
        try:
            barrier.wait()
            for i in range(n_calls):
                k = (t + i) % len(xs)
                y = m(xs[k])
                if not np.array_equal(y, serial[k]):
                    errors.append((t, i, float(np.abs(y - serial[k]).max())))
        except Exception as e:  # noqa: BLE001
            errors.append((t, repr(e)))

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=600)
    assert not any(th.is_alive() for th in threads), "deadlock"
    assert errors == []


def _rss_kib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def test_soak_flat_memory(model_path):
    """10,000 sequential calls (CI: 600) after a warm-up of 10%: memory stays flat.

    Python-level allocations (tracemalloc: every object and every NumPy buffer) grow by
    less than 8 KiB over the calls: a leak of one 2x5 float32 output per call leaks 40 B
    of data (21 KiB over 540 calls; ~95 KiB with its array object). RSS, which also sees
    native allocations but is noisy, grows by less than 8 MiB. The model holds one plan
    per input shape."""
    n = 10000 if LONG else 600
    m = edgenet.load(model_path, device=DEVICE)
    x = model_input()
    ref = m(x)
    for _ in range(n // 10):
        m(x)
    gc.collect()
    r0 = _rss_kib()
    tracemalloc.start()
    try:
        gc.collect()
        t0 = tracemalloc.get_traced_memory()[0]
        for _ in range(n - n // 10):
            y = m(x)
        gc.collect()
        py_growth = tracemalloc.get_traced_memory()[0] - t0
    finally:
        tracemalloc.stop()
    growth = _rss_kib() - r0
    assert np.array_equal(y, ref)
    assert py_growth < 8 * 1024, f"Python allocations grew {py_growth} B over {n} calls"
    assert growth < 8 * 1024, f"RSS grew {growth} KiB over {n} calls"
    assert sum(len(v) for v in m._plans.values()) == 1


# ============================================================ fork
_FORK = """
import os, sys, time, numpy as np
import edgenet
from tests.helpers import build_model, model_input
p = build_model(sys.argv[1])
x = model_input()
m = edgenet.load(p, device=sys.argv[2])
parent = m(x)
if sys.argv[2] == "cpu":
    import numba
    from numba.np.ufunc import parallel as _par
    print("layer", numba.threading_layer() if _par._is_initialized else "uninitialized",
          flush=True)
pid = os.fork()
if pid == 0:
    try:
        y = m(x)
        os.write(1, b"child-ok %d\\n" % int(np.array_equal(y, parent)))
        os._exit(0)
    except edgenet.EdgenetError as e:
        os.write(1, ("child-error " + type(e).__name__ + ": " + str(e) + "\\n").encode())
        os._exit(3)
    except BaseException as e:
        os.write(1, ("child-other " + repr(e) + "\\n").encode())
        os._exit(4)
t0 = time.time()
while time.time() - t0 < 60:
    r, status = os.waitpid(pid, os.WNOHANG)
    if r:
        sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else 0
        code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else None
        print(f"child-exit code={code} signal={sig}", flush=True)
        break
    time.sleep(0.05)
else:
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    print("child-hang", flush=True)
print("parent-ok", int(np.array_equal(m(x), parent)), flush=True)
"""


def _fork_run(tmp_path, device, env=None):
    script = tmp_path / "fork.py"
    script.write_text(_FORK)
    r = subprocess.run([sys.executable, str(script), str(tmp_path / "m.edgenet"), device],
                       capture_output=True, text=True, timeout=240, cwd=ROOT,
                       env={**os.environ, "PYTHONPATH": ROOT, **(env or {})})
    return r.stdout + r.stderr


def test_fork_reference_backend_child_works(tmp_path):
    out = _fork_run(tmp_path, "reference")
    assert "child-ok 1" in out and "child-exit code=0 signal=0" in out, out
    assert "parent-ok 1" in out


def test_fork_after_parallel_cpu_raises_device_error(tmp_path):
    """After the parent ran parallel CPU kernels (forced: EDGENET_PAR_MIN=0), a forked
    child that runs the model gets a DeviceError naming the remedy (the runtime's at-fork
    guard, docs/RELIABILITY.md), instead of being terminated by libgomp's fork guard ('fork()
    called from a process already using GNU OpenMP') or hanging; the parent keeps working.
    Only numba's fork-safe workqueue layer may run the child normally."""
    out = _fork_run(tmp_path, "cpu", env={"EDGENET_PAR_MIN": "0", "EDGENET_CONV_PAR_MIN": "0"})
    assert "child-hang" not in out, out
    assert "parent-ok 1" in out, out
    layer = next(ln.split()[1] for ln in out.splitlines() if ln.startswith("layer "))
    assert layer != "uninitialized", "the parent ran no parallel kernel: nothing tested\n" + out
    if layer == "workqueue":
        assert "child-ok 1" in out, out
    else:
        assert "child-error DeviceError" in out and "spawn" in out, out
        assert "child-exit code=3 signal=0" in out, out


# ============================================================ threading layer
_LAYER = """
import sys
try:
    import openvino  # noqa: F401  (where installed: brings its libtbb, as in a user's process)
except Exception:
    pass
import numba, edgenet
from tests.helpers import build_model, model_input
m = edgenet.load(build_model(sys.argv[1]), threads=2)
m(model_input())


def loads(mod):
    try:
        __import__("numba.np.ufunc." + mod)
        return 1
    except Exception:
        return 0


print("layer", numba.threading_layer(), loads("omppool"), loads("tbbpool"))
"""


def _layer_run(tmp_path, env):
    script = tmp_path / "layer.py"
    script.write_text(_LAYER)
    full = {k: v for k, v in os.environ.items() if k != "NUMBA_THREADING_LAYER"}
    full.update(PYTHONPATH=ROOT, EDGENET_PAR_MIN="0", EDGENET_CONV_PAR_MIN="0", **env)
    r = subprocess.run([sys.executable, str(script), str(tmp_path / "m.edgenet")],
                       capture_output=True, text=True, timeout=240, cwd=ROOT, env=full)
    line = next((ln for ln in r.stdout.splitlines() if ln.startswith("layer ")), None)
    assert line is not None, r.stdout + r.stderr
    name, omp, tbb = line.split()[1:]
    return name, omp == "1", tbb == "1"


def test_threading_layer_prefers_openmp(tmp_path):
    """OpenMP where it loads, even when a TBB runtime is loadable too (numba's own
    "threadsafe" choice is tbb first; with OpenVINO in the process that made every edgenet
    call 3-20% slower: _jit.py); tbb only without OpenMP; never workqueue."""
    name, omp, tbb = _layer_run(tmp_path, {})
    if omp:
        assert name == "omp", (name, omp, tbb)
    else:
        assert name == "tbb", (name, omp, tbb)


def test_threading_layer_user_choice_wins(tmp_path):
    name, omp, tbb = _layer_run(tmp_path, {"NUMBA_THREADING_LAYER": "workqueue"})
    assert name == "workqueue"


# ============================================================ read-only install
def _ro_copy(tmp_path):
    pkg = tmp_path / "site" / "edgenet"
    shutil.copytree(os.path.join(ROOT, "edgenet"), pkg,
                    ignore=shutil.ignore_patterns("__pycache__", "*.nbi", "*.nbc"))
    helpers = tmp_path / "site" / "tests"
    helpers.mkdir()
    shutil.copy(os.path.join(ROOT, "tests", "helpers.py"), helpers / "helpers.py")
    home = tmp_path / "home"
    home.mkdir()
    for d, _, files in os.walk(tmp_path):
        for f in files:
            os.chmod(os.path.join(d, f), 0o444)
        os.chmod(d, 0o555)
    return tmp_path / "site", home


def _restore_rw(tmp_path):
    for d, _, _ in os.walk(tmp_path):
        os.chmod(d, 0o755)


_RO_RUN = r"""
import warnings, sys, numpy as np
warnings.simplefilter("always")
with warnings.catch_warnings(record=True) as w:
    import edgenet, edgenet._jit as j
    from tests.helpers import build_model, model_input
    p = build_model(sys.argv[1])
    y = edgenet.load(p, device=sys.argv[2])(model_input())
    with open("edgenet_probe.py", "w") as f:  # numba caches only functions in files
        f.write("from edgenet._jit import njit\n@njit\ndef probe(a):\n    return a.sum()\n")
    sys.path.insert(0, ".")
    from edgenet_probe import probe
    probe(np.ones(3))
print("cache", j.CACHE, j.CACHE_DIR)
print("warnings", [str(x.message) for x in w if "cache" in str(x.message)])
print("finite", bool(np.isfinite(y).all()), y.shape)
"""


def _ro_mount_works():
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return False
    try:
        return subprocess.run(["unshare", "-m", "sh", "-c",
                               "mount --bind -o ro /tmp /tmp && ! touch /tmp/.edgenet-ro-probe"],
                              capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


@pytest.mark.parametrize("with_cache_dir", [False, True], ids=["uncached", "EDGENET_CACHE_DIR"])
def test_read_only_install_and_home(tmp_path, with_cache_dir):
    """The package copied to a read-only directory, HOME read-only, no cache variables:
    imports and runs, uncached with a warning naming EDGENET_CACHE_DIR; with
    EDGENET_CACHE_DIR set to a writable directory: kernels cached there, no warning. As a normal
    user the copy is chmod'ed read-only; as root (which ignores permission bits) it is
    bind-mounted read-only in a private mount namespace (unshare -m)."""
    site, home = _ro_copy(tmp_path)
    out_dir = tmp_path.parent / (tmp_path.name + "_out")
    out_dir.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in ("EDGENET_CACHE_DIR",
                                                             "NUMBA_CACHE_DIR")}
    env.update(PYTHONPATH=str(site), HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"))
    if with_cache_dir:
        env["EDGENET_CACHE_DIR"] = str(out_dir / "cache")
    # CI: the model runs on the reference backend (a full uncached compile of the Numba CPU
    # backend takes about a minute) and a probe kernel exercises the cache policy;
    # EDGENET_LONG=1 runs the model on device="cpu".
    cmd = [sys.executable, "-c", _RO_RUN, str(out_dir / "m.edgenet"),
           "cpu" if LONG else "reference"]
    if os.geteuid() == 0:
        if not _ro_mount_works():
            _restore_rw(tmp_path)
            pytest.skip("running as root without a usable 'unshare -m' + read-only bind mount")
        cmd = ["unshare", "-m", "sh", "-c",
               'mount --bind -o ro "$0" "$0" && mount --bind -o ro "$1" "$1" && shift 1 && '
               'exec "$@"', str(site), str(home)] + cmd
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                           cwd=str(out_dir), env=env)
    finally:
        _restore_rw(tmp_path)
    assert r.returncode == 0, r.stderr
    assert "finite True (2, 5)" in r.stdout, r.stdout
    if with_cache_dir:
        assert f"cache True {out_dir / 'cache'}{os.sep}" in r.stdout, r.stdout
        assert any(f.endswith(".nbi") for _, _, fs in os.walk(out_dir / "cache") for f in fs)
        assert "warnings []" in r.stdout, r.stdout
    else:
        assert "cache False None" in r.stdout, r.stdout
        assert "EDGENET_CACHE_DIR" in r.stdout  # the warning names the remedy


# ============================================================ inputs
@pytest.mark.parametrize("device", ["reference", DEVICE])
def test_wrong_inputs_rejected_with_expected_and_received(model_path, device):
    m = edgenet.load(model_path, device=device)
    x = model_input()
    cases = [
        (x[0], "expected shape (N, 3, 7, 7), received (3, 7, 7)"),          # rank
        (x[:, :2], "expected shape (N, 3, 7, 7), received (2, 2, 7, 7)"),   # shape
        (x.astype(np.float64), "expected dtype float32, received float64"),
        (x.astype(np.int32), "expected dtype float32, received int32"),
        (x[:0], "received (0, 3, 7, 7)"),                                    # empty batch
    ]
    for bad, msg in cases:
        with pytest.raises(InputError) as ei:
            m(bad)
        assert msg in str(ei.value)
    with pytest.raises(InputError, match="numpy array"):
        m(x.tolist())
    with pytest.raises(InputError, match="unknown input"):
        m.run({"x": x, "z": x})
    with pytest.raises(InputError, match="missing input"):
        m.run({})


@pytest.mark.parametrize("device", ["reference", DEVICE])
def test_non_contiguous_inputs_accepted(model_path, device):
    m = edgenet.load(model_path, device=device)
    x = model_input()
    ref = m(x)
    big = np.zeros((2, 3, 14, 14), np.float32)
    big[:, :, ::2, ::2] = x
    np.testing.assert_array_equal(m(big[:, :, ::2, ::2]), ref)          # strided
    f = np.asfortranarray(x)
    assert not f.flags.c_contiguous
    np.testing.assert_array_equal(m(f), ref)                              # Fortran order
    np.testing.assert_array_equal(m(x[::-1])[::-1], ref)                  # negative stride
    ro = x.copy()
    ro.setflags(write=False)
    np.testing.assert_array_equal(m(ro), ref)                             # read-only
    np.testing.assert_array_equal(x, model_input())                       # input untouched


@pytest.mark.parametrize("device", ["reference", DEVICE])
def test_nan_and_inf_pass_through(model_path, device):
    m = edgenet.load(model_path, device=device)
    x = model_input()
    for v in (np.nan, np.inf, -np.inf):
        xb = x.copy()
        xb[0, 0, 3, 3] = v
        y = m(xb)
        assert not np.isfinite(y[0]).all(), (v, y[0])   # sample 0 poisoned
        np.testing.assert_array_equal(y[1], m(x)[1])      # sample 1 unaffected
