"""Numba configuration shared by every compiled kernel. Import this before numba.

- Compile cache: ``EDGENET_CACHE_DIR`` if set; else ``__pycache__/numba`` beside the
  package when that directory is writable; else a per-user cache directory; else no disk
  cache (a warning, never an import failure). Read-only installs are common on devices.
  Inside that directory, caches live in a subdirectory named by a hash of every kernel
  source file: numba invalidates a cached function only when *its own* file changes, not
  when an inlined helper in another module does, so a stale cache could otherwise run old
  code after an upgrade. The SIMD conv kernels are generated in the process
  (``cpu/gen_simd_conv.py``) and compiled with that file as their source: the generator's
  file is hashed (a change to it changes every generated kernel), generated text never is
  (it is not a file, and it is a pure function of the generator).
- Threading layer: a thread-safe one, never workqueue, which aborts the process when two
  Python threads call a parallel function at once: OpenMP where it loads, else tbb
  (numba's own "threadsafe" order is tbb first). Whether tbb loads depends on the process,
  not on the user's choice: OpenVINO, for one, brings its libtbb, and numba then picked
  tbb; edgenet's runs were up to 20% slower on it than on OpenMP, alone in the process
  (omp / tbb: MobileNetV2 int8 0.86-0.93, ResNet-20 int8 0.79-0.87, ResNet-18 int8
  0.95-1.00; docs/PERFORMANCE.md, "Threading layer"). A user's explicit
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


def _hashed_files() -> list:
    """The kernel source files whose bytes name the cache directory (package, cpu, cuda)."""
    out = []
    for sub in ("", "cpu", "cuda"):
        d = os.path.join(_PKG_DIR, sub)
        try:
            names = sorted(f for f in os.listdir(d) if f.endswith(".py"))
        except OSError:
            continue
        out += [os.path.join(d, f) for f in names]
    return out


def _source_hash() -> str:
    h = hashlib.sha256()
    for path in _hashed_files():
        with open(path, "rb") as fh:
            h.update(os.path.basename(path).encode() + b"\0" + fh.read())
    return h.hexdigest()[:16]


def _choose_cache_dir():
    tag = _source_hash()
    env = os.environ.get("EDGENET_CACHE_DIR")
    if env:
        d = os.path.join(env, tag)
        return d if _writable_dir(d) else None
    if os.environ.get("NUMBA_CACHE_DIR"):
        d = os.environ["NUMBA_CACHE_DIR"]
        # a child of an edgenet process inherits the tagged directory: the same cache
        return d if os.path.basename(os.path.normpath(d)) == tag else os.path.join(d, tag)
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

from . import _tiers  # noqa: E402

_tiers.configure()   # EDGENET_SIMD forcing a lower tier sets NUMBA_CPU_NAME (edgenet/_tiers.py)

import numba  # noqa: E402  (after NUMBA_CACHE_DIR is set)

if CACHE_DIR:
    numba.config.CACHE_DIR = CACHE_DIR
# Numba's SSA pass warns ("variable ... is not in scope", an internal pedantic check) when it
# compiles the epilogues that inline the float32 polynomials of edgenet/activation.py: 16-20
# multi-line warnings on a first run, with nothing wrong in the result (the kernels are
# checked against the NumPy reference in tests). Hidden for edgenet's users.
warnings.filterwarnings("ignore", category=numba.core.errors.NumbaIRAssumptionWarning)


def _omp_loads() -> bool:
    """Whether numba's OpenMP layer can load here (its extension and libgomp; nothing starts
    until the first parallel call)."""
    try:
        from numba.np.ufunc import omppool  # noqa: F401
    except Exception:   # ImportError / OSError: no OpenMP runtime (macOS without libomp)
        return False
    return True


THREADING_LAYER = os.environ.get("NUMBA_THREADING_LAYER") or None
if THREADING_LAYER is None:
    THREADING_LAYER = "omp" if _omp_loads() else "threadsafe"
    numba.config.THREADING_LAYER = THREADING_LAYER


def _lock_cache_saves():
    """Make Numba's cache writes safe between processes. Numba saves a new signature of a
    function by reading the function's index, picking the first free data-file number and
    rewriting the index: two processes compiling *different* signatures of one function
    at once can pick the same number, and an index entry then names the other signature's
    machine code. Saves here hold an exclusive ``flock`` on ``<index>.lock`` for that
    read-modify-write (POSIX; elsewhere saves are as Numba does them). ``edgenet warmup``
    compiles in several processes and relies on it; so do users who start two edgenet
    processes on a cold cache."""
    try:
        import fcntl
    except ImportError:    # pragma: no cover  (Windows)
        return
    from numba.core import caching
    save = caching.IndexDataCacheFile.save
    if getattr(save, "_edgenet_locked", False):
        return

    def locked_save(self, key, data):
        try:
            fd = os.open(self._index_path + ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            return save(self, key, data)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            return save(self, key, data)
        finally:
            os.close(fd)     # releases the lock

    locked_save._edgenet_locked = True
    caching.IndexDataCacheFile.save = locked_save


_lock_cache_saves()


def thread_calls():
    """numba's get/set_num_threads without their per-call lock and checks (the C calls
    behind them, ~0.1 µs instead of 1-2 µs); the public functions if numba changed."""
    global _THREAD_CALLS
    if _THREAD_CALLS is None:
        try:
            from numba.np.ufunc import parallel as par
            par._launch_threads()
            get_nt, set_nt = par._get_num_threads, par._set_num_threads
            if get_nt() != numba.get_num_threads():
                raise RuntimeError
        except Exception:
            get_nt, set_nt = numba.get_num_threads, numba.set_num_threads
        _THREAD_CALLS = get_nt, set_nt
    return _THREAD_CALLS


_THREAD_CALLS = None


def njit(*args, **kw):
    """numba.njit with edgenet's cache policy (``cache=True`` only when a dir is writable)."""
    kw.setdefault("cache", CACHE)
    kw.setdefault("nogil", True)
    return numba.njit(*args, **kw)


def pjit(*args, **kw):
    """A parallel kernel: ``njit(parallel=True)`` with edgenet's cache policy."""
    kw.setdefault("parallel", True)
    return njit(*args, **kw)


# ----------------------------------------------------------------------------- compile notices
# A cold cache makes a first run compile for seconds per kernel. Numba emits a
# "numba:compile" event around every real compilation (never for a disk-cache load), so a
# listener knows exactly when a process compiles: the first time, one line on stderr says
# so; in a terminal a status line shows progress (kernels, seconds) until compiling stops.
# ``EDGENET_COMPILE_NOTICE=0`` silences both. ``estimate_hook`` (set by edgenet.cpu) gives
# the "~N s" of the first line.
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

from numba.core import event as _event  # noqa: E402

estimate_hook = None


def _cache_was_empty() -> bool:
    if not CACHE_DIR:
        return True
    for _root, _dirs, files in os.walk(CACHE_DIR):
        if any(f.endswith(".nbi") for f in files):
            return False
    return True


COLD_START = _cache_was_empty()


class CompileMonitor(_event.Listener):
    """Counts top-level compilations (nested ones are part of their caller) and tells the
    user; ``stats()`` for tests and benchmarks."""

    def __init__(self, stream=None):
        self.stream = stream
        self.depth = threading.local()
        self.lock = threading.Lock()
        self.compiled = 0           # top-level compilations finished
        self.active = 0             # top-level compilations running
        self.seconds = 0.0
        self.t_batch = None         # start of the current burst of compilations
        self.announced = False
        self.last_end = 0.0
        self.ticker = None
        self.quiet = False          # edgenet.cpu.warmup draws its own progress

    @property
    def out(self):
        return self.stream or sys.stderr

    def enabled(self) -> bool:
        return not self.quiet and os.environ.get("EDGENET_COMPILE_NOTICE", "1") != "0"

    def on_start(self, event):
        d = getattr(self.depth, "n", 0)
        self.depth.n = d + 1
        if d:
            return
        now = time.perf_counter()
        self.depth.t0 = now
        with self.lock:
            self.active += 1
            if self.t_batch is None:
                self.t_batch = now
            first = not self.announced
            self.announced = True
        if first and self.enabled():
            est = None
            if estimate_hook is not None:
                try:
                    est = estimate_hook()
                except Exception:  # pragma: no cover - an estimate never breaks a run
                    est = None
            est_s = f", ~{est:.0f} s" if est else ""
            self._line(f"edgenet: compiling kernels for this CPU — first run only{est_s} "
                       f"(cached in {CACHE_DIR or 'memory: no writable cache'})")
        self._ensure_ticker()

    def on_end(self, event):
        d = self.depth.n = getattr(self.depth, "n", 1) - 1
        if d:
            return
        with self.lock:
            self.active -= 1
            self.compiled += 1
            self.seconds += time.perf_counter() - self.depth.t0
            self.last_end = time.perf_counter()

    def _line(self, msg):
        try:
            self.out.write(("\r\033[K" if self._tty() else "") + msg + "\n")
            self.out.flush()
        except (OSError, ValueError):  # pragma: no cover - closed stderr
            pass

    def _tty(self) -> bool:
        try:
            return self.out.isatty()
        except (AttributeError, ValueError):
            return False

    def status(self) -> str:
        el = time.perf_counter() - (self.t_batch or time.perf_counter())
        return f"  compiling... {self.compiled_in_batch()} kernels, {el:.0f} s"

    def compiled_in_batch(self) -> int:
        return self.compiled - getattr(self, "batch_base", 0)

    def _ensure_ticker(self):
        if self.ticker is not None or not self.enabled() or not self._tty():
            return
        self.ticker = threading.Thread(target=self._tick, name="edgenet-compile-progress",
                                       daemon=True)
        self.ticker.start()

    def _tick(self):
        while True:
            time.sleep(0.25)
            with self.lock:
                idle = self.active == 0 and time.perf_counter() - self.last_end > 0.5
                if idle or not self.enabled():
                    self.ticker = None
                    self.t_batch = None
                    self.batch_base = self.compiled
                    try:
                        self.out.write("\r\033[K")
                        self.out.flush()
                    except (OSError, ValueError):  # pragma: no cover
                        pass
                    return
            try:
                self.out.write("\r\033[K" + self.status())
                self.out.flush()
            except (OSError, ValueError):  # pragma: no cover
                return

    def stats(self) -> dict:
        return {"compiled": self.compiled, "seconds": round(self.seconds, 3)}


monitor = CompileMonitor()
_event.register("numba:compile", monitor)

if os.environ.get("EDGENET_COMPILE_STATS") == "1":   # bench/bench_startup.py reads this line
    import atexit  # noqa: E402
    import json  # noqa: E402

    atexit.register(lambda: sys.stderr.write(
        "edgenet-compile-stats " + json.dumps(monitor.stats()) + "\n"))
