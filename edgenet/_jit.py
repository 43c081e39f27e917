"""Numba configuration shared by every compiled kernel. Import this before numba.

- Compile cache: ``EDGENET_CACHE_DIR`` if set; else ``__pycache__/numba`` beside the
  package when that directory is writable; else a per-user cache directory; else no disk
  cache (a warning, never an import failure). Read-only installs are common on devices.
  Inside that directory, caches live in a subdirectory named by a hash of every kernel
  source file: numba invalidates a cached function only when *its own* file changes, not
  when an inlined helper in another module does, so a stale cache could otherwise run old
  code after an upgrade.
- Threading layer: a thread-safe one (tbb or omp), never workqueue, which aborts the
  process when two Python threads call a parallel function at once. A user's explicit
  ``NUMBA_THREADING_LAYER`` wins.
- OpenMP wait policy: a *short* spin, ``GOMP_SPINCOUNT=20000`` (an idle worker spins
  ~0.3 ms, then sleeps), unless the user set ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT``.
  libgomp's default (300000: ~8 ms of spinning after every call, measured) or ``active``
  take the core from everything else in the process (onnxruntime interleaved went 20 ->
  40 ms) and, on a loaded box, a parallel call waits for a descheduled spinning worker;
  ``passive`` pays a futex wake-up per parallel call instead (50-250 us: a 64->64 int8
  conv at 56x56 took 0.66 ms as a 2-thread call passive, 0.38 ms active, 0.39-0.44 ms with
  the short spin; docs/PERFORMANCE.md). Within one inference the calls follow each other
  within the spin window, so workers stay awake; between inferences they sleep. libgomp
  reads these once, when it loads (the first parallel call): set them before that.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
import warnings

_PKG_DIR = os.path.dirname(os.path.abspath(__file__))


def _writable_dir(path: str) -> bool:
    try:
        os.makedirs(path, exist_ok=True)
        fd, p = tempfile.mkstemp(dir=path)
        os.close(fd)
        os.unlink(p)
        return True
    except OSError:
        return False


def _source_hash() -> str:
    h = hashlib.sha256()
    for sub in ("", "cpu", "cuda"):
        d = os.path.join(_PKG_DIR, sub)
        try:
            names = sorted(f for f in os.listdir(d) if f.endswith(".py"))
        except OSError:
            continue
        for f in names:
            with open(os.path.join(d, f), "rb") as fh:
                h.update(f.encode() + b"\0" + fh.read())
    return h.hexdigest()[:16]


def _choose_cache_dir():
    tag = _source_hash()
    env = os.environ.get("EDGENET_CACHE_DIR")
    if env:
        d = os.path.join(env, tag)
        return d if _writable_dir(d) else None
    if os.environ.get("NUMBA_CACHE_DIR"):
        return os.path.join(os.environ["NUMBA_CACHE_DIR"], tag)
    in_tree = os.path.join(_PKG_DIR, "__pycache__", "numba", tag)
    if _writable_dir(in_tree):
        return in_tree
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    user = os.path.join(base, "edgenet", "numba", tag)
    return user if _writable_dir(user) else None


CACHE_DIR = _choose_cache_dir()
CACHE = CACHE_DIR is not None
if CACHE_DIR:
    os.environ["NUMBA_CACHE_DIR"] = CACHE_DIR
if not CACHE:
    warnings.warn("edgenet: no writable cache directory (set EDGENET_CACHE_DIR); "
                  "kernels will be compiled on every start", RuntimeWarning, stacklevel=2)

if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
    os.environ["GOMP_SPINCOUNT"] = "20000"

import numba  # noqa: E402  (after NUMBA_CACHE_DIR is set)

if CACHE_DIR:
    numba.config.CACHE_DIR = CACHE_DIR
if not os.environ.get("NUMBA_THREADING_LAYER"):
    numba.config.THREADING_LAYER = "threadsafe"


def njit(*args, **kw):
    """numba.njit with edgenet's cache policy (``cache=True`` only when a dir is writable)."""
    kw.setdefault("cache", CACHE)
    kw.setdefault("nogil", True)
    return numba.njit(*args, **kw)


def pjit(*args, **kw):
    """A parallel kernel: ``njit(parallel=True)`` with edgenet's cache policy."""
    kw.setdefault("parallel", True)
    return njit(*args, **kw)
