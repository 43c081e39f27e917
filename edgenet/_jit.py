"""Numba configuration shared by every compiled kernel. Import this before numba.

- Compile cache: ``EDGENET_CACHE_DIR`` if set; else numba's default (beside the package)
  when that directory is writable; else a per-user cache directory; else no disk cache
  (a warning, never an import failure). Read-only installs are common on devices.
- Threading layer: a thread-safe one (tbb or omp), never workqueue, which aborts the
  process when two Python threads call a parallel function at once. A user's explicit
  ``NUMBA_THREADING_LAYER`` wins.
"""
from __future__ import annotations

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


def _choose_cache_dir():
    env = os.environ.get("EDGENET_CACHE_DIR")
    if env:
        return env if _writable_dir(env) else None
    if os.environ.get("NUMBA_CACHE_DIR"):
        return os.environ["NUMBA_CACHE_DIR"]
    if _writable_dir(os.path.join(_PKG_DIR, "__pycache__")):
        return ""  # numba's in-tree default
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    user = os.path.join(base, "edgenet", "numba")
    return user if _writable_dir(user) else None


CACHE_DIR = _choose_cache_dir()
CACHE = CACHE_DIR is not None
if CACHE_DIR:
    os.environ["NUMBA_CACHE_DIR"] = CACHE_DIR
if not CACHE:
    warnings.warn("edgenet: no writable cache directory (set EDGENET_CACHE_DIR); "
                  "kernels will be compiled on every start", RuntimeWarning, stacklevel=2)

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
