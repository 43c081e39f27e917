"""Shared test setup: import path, markers, one compile cache, a background kernel builder.

Most of the suite's time on a cold cache is Numba compiling kernels (seconds each) in
whichever test first touches them. Here:

- one compile cache for the session and every subprocess it starts (``EDGENET_CACHE_DIR``:
  the user's, else edgenet's default; children inherit it);
- ``precompile``: at session start a helper process builds the tile kernels the suite uses
  (``SUITE_TILES``, in reverse order of first use) into that cache on the second core while
  the tests run; a kernel the helper finished loads instead of compiling. Only tile
  kernels: each has one signature, so two processes compiling one at once write the same
  cache entry (Numba's cache index is not safe for two processes adding *different*
  signatures of one function at once). Off with ``EDGENET_TEST_PRECOMPILE=0``;
- the CUDA simulator runs (tests/helpers.py ``run_inner``: one subprocess per CUDA test
  module) start at collection, niced, in the background with their own compile cache, and
  their outer tests run last and collect the results (``EDGENET_TEST_BACKGROUND=0``: off);
- markers (registered in pyproject.toml): ``subprocess`` (added here to every test whose
  code starts a Python process) and ``slow``;
- ``EDGENET_TEST_COMPILE_REPORT=1`` prints the tests that spent the most time compiling.
"""
import inspect
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "tests", "fixtures")
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

# (kind, key) of gen_simd_conv tile kernels, roughly in the order the suite first uses them
# (from EDGENET_TEST_COMPILE_REPORT=1 runs on an AVX-512 + VNNI machine; keys another CPU
# cannot use are skipped by the helper)
SUITE_TILES = [
    ("conv", (16, 1, 4, 1)), ("conv", (16, 1, 1, 1)), ("conv", (16, 1, 16, 1)),
    ("conv", (16, 2, 8, 1)), ("conv", (16, 2, 8, 2)), ("conv", (16, 2, 14, 1)),
    ("conv", (16, 2, 14, 2)), ("conv", (16, 2, 7, 1)), ("conv", (16, 2, 7, 2)),
    ("qconv", (1, 16, 1, "vnni")), ("qconv", (2, 8, 1, "vnni")), ("qconv", (1, 4, 1, "vnni")),
    ("qconv", (1, 4, 1, "generic")), ("qconv", (2, 7, 2, "generic")),
    ("qconv", (1, 1, 1, "generic")), ("qconv", (1, 16, 1, "generic")),
    ("qconv", (1, 24, 1, "generic")),
    ("conv", (16, 1, 24, 1)), ("conv", (8, 2, 6, 1)), ("conv", (8, 1, 12, 2)),
    ("dw", (16, 1)), ("dw", (8, 2)), ("dw", (8, 1)), ("dw", (16, 2)),
    ("conv", (16, 2, 12, 2)), ("conv", (16, 3, 8, 1)), ("conv", (16, 3, 7, 1)),
    ("conv", (8, 1, 12, 1)), ("conv", (8, 2, 6, 2)), ("conv", (16, 3, 7, 2)),
    ("conv", (8, 1, 1, 1)),
]

_HELPER = r"""
import sys
from edgenet.cpu import gen_simd_conv as gen, simd, warm
ok_q = {"generic"} | ({"vnni"} if simd.has_vnni() else set())
for kind, key in reversed(eval(sys.argv[1])):
    if (kind == "qconv" and key[3] not in ok_q) or (kind, key) not in gen._INDEX:
        continue
    try:
        warm.build_tile(kind, key)
    except Exception as e:  # a helper never fails the suite
        print("precompile:", kind, key, e, file=sys.stderr)
"""


def _source(item):
    fn = getattr(item, "function", None)
    try:
        return inspect.getsource(fn) if fn is not None else ""
    except (OSError, TypeError):
        return ""


def pytest_collection_modifyitems(config, items):
    for item in items:
        src = _source(item)
        if "sys.executable" in src or "subprocess." in src or "run_inner(" in src:
            item.add_marker(pytest.mark.subprocess)


_INNER_ITEMS: list = []


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session):
    """The CUDA simulator runs (one subprocess per CUDA test module, ~2 min in all) start now
    in the background and their outer tests move to the end of the run, so they overlap the
    rest of the suite instead of following it. Off with ``EDGENET_TEST_BACKGROUND=0``."""
    from tests import helpers
    if helpers.INNER or os.environ.get("EDGENET_TEST_BACKGROUND", "1") == "0":
        return
    items = session.items
    inner = [it for it in items if "run_inner(" in _source(it)]
    if not inner or len(items) == len(inner):
        return
    items[:] = [it for it in items if it not in inner] + inner
    import edgenet._jit as j
    cache = (j.CACHE_DIR.rstrip(os.sep) + "-cudasim") if j.CACHE_DIR else None
    helpers.start_inner_in_background([str(it.path) for it in inner], cache)
    _INNER_ITEMS.extend(inner)


def pytest_sessionfinish(session):
    if _INNER_ITEMS:
        from tests import helpers
        helpers.stop_background()


@pytest.fixture(scope="session", autouse=True)
def precompile(request):
    """Build the suite's tile kernels in a helper process while the tests run."""
    proc = None
    if os.environ.get("EDGENET_TEST_PRECOMPILE", "1") != "0" and \
            not os.environ.get("NUMBA_DISABLE_JIT"):
        env = dict(os.environ, EDGENET_COMPILE_NOTICE="0",
                   PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
        try:
            import edgenet._jit as j          # the cache dir this session uses
            if not j.CACHE:
                raise OSError("no disk cache")
            env["NUMBA_CACHE_DIR"] = j.CACHE_DIR
            proc = subprocess.Popen([sys.executable, "-c", _HELPER, repr(SUITE_TILES)],
                                    env=env, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
        except OSError:
            proc = None
    yield proc
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover
            proc.kill()


_COMPILE = {}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    if os.environ.get("EDGENET_TEST_COMPILE_REPORT") != "1":
        yield
        return
    import edgenet._jit as j
    s0 = j.monitor.seconds
    yield
    _COMPILE[item.nodeid] = j.monitor.seconds - s0


def pytest_terminal_summary(terminalreporter):
    if not _COMPILE:
        return
    import edgenet._jit as j
    from edgenet.cpu import gen_simd_conv as gen
    tr = terminalreporter
    tr.section("compile time by test (in this process)")
    for nid, s in sorted(_COMPILE.items(), key=lambda kv: -kv[1])[:25]:
        tr.write_line(f"{s:7.1f} s  {nid}")
    tr.write_line(f"total {j.monitor.seconds:.1f} s in {j.monitor.compiled} compilations; "
                  f"tile kernels built: {list(gen._KERNELS)}")
