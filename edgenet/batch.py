"""``edgenet batch``: score a whole dataset with one model, resumably.

    edgenet batch MODEL INPUTS -o OUT.npz|OUT.parquet [--engine local|ray]
                  [--batch-size B] [--chunk-size C] [--workers P] [--threads T] [--top-k K]

INPUTS is a directory (its files, recursively, in sorted order), a glob, or one file. Every
file is an image (one sample, keyed by its path relative to INPUTS), a ``.npy`` holding one
sample (C, H, W) or a shard of samples (N, C, H, W), or a ``.npz`` with such an array (named
like the model input, ``x``, or its only array). A sample of a shard is keyed ``file:index``.

The job is cut into *chunks* of consecutive samples (deterministic for a given input set and
``--chunk-size``). Each finished chunk is written atomically as one part file in the sidecar
directory ``OUT.partial/`` beside the output, together with a manifest naming the job (model
hash, inputs, options). Parts are the journal: a rerun of the same command skips every chunk
whose part exists, so an interrupted run continues where it stopped and no row is lost or
written twice. The output is assembled from the parts in chunk order (checked: sample indices
must be exactly 0..N-1), written to a temporary file, renamed into place, and the sidecar is
removed.

Engines. ``local``: a pool of worker *processes* started with the ``spawn`` method (a forked
child of a process whose Numba/OpenMP threads have started can hang), each loading the model
once and running ``T`` kernel threads. ``ray``: the same chunks as a Ray Data pipeline, see
``edgenet.integrations.ray``.
"""
from __future__ import annotations

import contextlib
import glob as _glob
import hashlib
import json
import os
import shutil
import signal
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass

import click
import numpy as np

from .cli import atomic_save, guarded, load_image, main
from .errors import EdgenetError, InputError

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm",
              ".ppm", ".pbm")
ARRAY_EXTS = (".npy", ".npz")
PARTIAL_SUFFIX = ".partial"
MANIFEST = "manifest.json"
STOP_ENV = "EDGENET_BATCH_STOP_AFTER"  # test hook: stop (as if interrupted) after k chunks
JOB_VERSION = 1
SMALL_JOB = 4096  # samples: below this the default is in-process (no worker start)


# -- inputs ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Source:
    """One input file: ``n`` samples; ``single`` when the file is one sample (no index)."""
    path: str
    key: str
    kind: str            # "npy" | "npz" | "image"
    member: str | None   # array name inside a .npz
    n: int
    single: bool
    size: int
    mtime_ns: int

    def keys(self, a: int, b: int) -> list:
        return [self.key] if self.single else [f"{self.key}:{i}" for i in range(a, b)]


def _npy_header(fp):
    version = np.lib.format.read_magic(fp)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(fp)
    else:
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(fp)
    return tuple(shape), np.dtype(dtype)


def _npz_member(path, spec_name):
    with zipfile.ZipFile(path) as z:
        names = [n[:-4] for n in z.namelist() if n.endswith(".npy")]
        for want in (spec_name, "x"):
            if want in names:
                member = want
                break
        else:
            if len(names) != 1:
                raise InputError(f"{path}: no array named '{spec_name}' or 'x' (has {names})")
            member = names[0]
        with z.open(member + ".npy") as f:
            shape, dtype = _npy_header(f)
    return member, shape, dtype


def _array_source(path, key, spec, kind):
    try:
        if kind == "npy":
            with open(path, "rb") as f:
                shape, dtype = _npy_header(f)
            member = None
        else:
            member, shape, dtype = _npz_member(path, spec.name)
    except EdgenetError:
        raise
    except Exception as e:
        raise InputError(f"{path}: cannot read input: {e}") from None
    if dtype.kind not in "fiub":
        raise InputError(f"{path}: input has dtype {dtype}, expected numbers")
    want = tuple(spec.shape[1:])
    if len(shape) == len(want) and shape == want:
        n, single = 1, True
    elif len(shape) == len(want) + 1 and tuple(shape[1:]) == want:
        n, single = int(shape[0]), False
    else:
        exp = "(N, " + ", ".join(str(d) for d in want) + ")"
        raise InputError(f"{path}: array of shape {tuple(shape)}; model input "
                         f"'{spec.name}' expects {exp} or one sample {want}")
    st = os.stat(path)
    return Source(os.path.abspath(path), key, kind, member, n, single, st.st_size,
                  st.st_mtime_ns)


def _kind(path):
    ext = os.path.splitext(path)[1].lower()
    if ext == ".npy":
        return "npy"
    if ext == ".npz":
        return "npz"
    if ext in IMAGE_EXTS:
        return "image"
    return None


def discover(inputs: str, spec) -> list:
    """The input files of INPUTS (a directory, glob or file), sorted, as Sources."""
    if os.path.isdir(inputs):
        root = inputs
        paths = []
        for d, dirs, files in os.walk(inputs):
            dirs[:] = sorted(x for x in dirs if not x.startswith(".") and
                             not x.endswith(PARTIAL_SUFFIX))
            paths.extend(os.path.join(d, f) for f in files if not f.startswith("."))
    elif _glob.has_magic(inputs):
        parts = inputs.split(os.sep)
        fixed = []
        for p in parts:
            if _glob.has_magic(p):
                break
            fixed.append(p)
        root = os.sep.join(fixed) or "."
        paths = [p for p in _glob.glob(inputs, recursive=True) if os.path.isfile(p)]
    elif os.path.isfile(inputs):
        root = os.path.dirname(inputs) or "."
        paths = [inputs]
    else:
        raise InputError(f"{inputs}: no such file, directory or matching glob")
    sources = []
    for p in sorted(paths, key=lambda q: os.path.relpath(q, root)):
        kind = _kind(p)
        if kind is None:
            continue
        key = os.path.relpath(p, root).replace(os.sep, "/")
        if kind == "image":
            if len(spec.shape) != 4:
                raise InputError(f"{p}: an image, but model input '{spec.name}' is not an "
                                 f"image tensor: {list(spec.shape)}")
            st = os.stat(p)
            sources.append(Source(os.path.abspath(p), key, "image", None, 1, True,
                                  st.st_size, st.st_mtime_ns))
        else:
            sources.append(_array_source(p, key, spec, kind))
    if not sources:
        raise InputError(f"{inputs}: no inputs found (images, .npy or .npz files)")
    return sources


def plan_chunks(sources: list, chunk_size: int) -> list:
    """Cut the samples into chunks of ``chunk_size`` consecutive samples.

    Returns a list of chunks; a chunk is (start, stop, segments) with global sample indices
    [start, stop) and segments [(source_index, a, b), ...] covering them in order."""
    total = sum(s.n for s in sources)
    chunks = []
    si, off = 0, 0  # current source, first unused sample in it
    for start in range(0, total, chunk_size):
        stop = min(start + chunk_size, total)
        need, segs = stop - start, []
        while need:
            while sources[si].n - off == 0:
                si, off = si + 1, 0
            take = min(need, sources[si].n - off)
            segs.append((si, off, off + take))
            off += take
            need -= take
        chunks.append((start, stop, segs))
    return chunks


class _ArrayCache:
    """Keeps the last opened .npz member / .npy mmap so consecutive chunks reuse it."""

    def __init__(self):
        self.key, self.arr = None, None

    def get(self, src: Source):
        k = (src.path, src.member)
        if self.key != k:
            if src.kind == "npy":
                self.arr = np.load(src.path, mmap_mode="r", allow_pickle=False)
            else:
                with np.load(src.path, allow_pickle=False) as z:
                    self.arr = z[src.member]
            self.key = k
        return self.arr


def load_samples(sources: list, segments, spec, metadata, cache: _ArrayCache | None = None):
    """(keys, x float32 (n, ...)) for the given segments."""
    cache = cache or _ArrayCache()
    keys, xs = [], []
    for si, a, b in segments:
        src = sources[si]
        try:
            if src.kind == "image":
                x = load_image(src.path, spec, metadata)
            else:
                arr = cache.get(src)
                x = arr[None] if src.single else arr[a:b]
        except EdgenetError:
            raise
        except Exception as e:
            raise InputError(f"{src.path}: cannot read input: {e}") from None
        keys.extend(src.keys(a, b))
        xs.append(np.asarray(x, dtype=np.float32))
    return keys, np.ascontiguousarray(np.concatenate(xs) if len(xs) > 1 else xs[0])


# -- scoring -----------------------------------------------------------------------------
def top_k_arrays(y: np.ndarray, k: int):
    """Same order as ``cli._top_k`` (descending, stable): (indices int64, scores float32)."""
    y2 = y.reshape(y.shape[0], -1)
    idx = np.argsort(-y2, axis=1, kind="stable")[:, :k].astype(np.int64)
    return idx, np.take_along_axis(y2, idx, axis=1).astype(np.float32)


@contextlib.contextmanager
def node_lock(name: str = "warmup"):
    """An exclusive per-node file lock (so concurrent workers compile a kernel once)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    path = os.path.join(tempfile.gettempdir(), f"edgenet-{name}-{os.getuid()}.lock")
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def load_model_once(path, device="cpu", threads=None, policy=None):
    """Load ``path`` and compile/load its kernels under a per-node lock: the first worker
    on a node compiles into the disk cache, the others then load from it."""
    from .runtime import load
    with node_lock():
        return load(path, device=device, threads=threads, policy=policy, warmup=True)


class Scorer:
    """Runs a loaded model over a batch of samples in sub-batches of ``batch_size``.

    Returns {"topk_index", "topk_score"} (first output) when ``top_k`` is set, else one
    array per model output (by output name)."""

    def __init__(self, model, batch_size: int = 64, top_k: int | None = None):
        self.model = model
        self.batch_size = max(1, int(batch_size))
        self.top_k = top_k
        self.input_name = model.inputs[0].name
        self.output_names = [o.name for o in model.outputs]

    def __call__(self, x: np.ndarray) -> dict:
        outs = {n: [] for n in self.output_names}
        for i in range(0, x.shape[0], self.batch_size):
            r = self.model.run({self.input_name: np.ascontiguousarray(x[i:i + self.batch_size])})
            for n in self.output_names:
                outs[n].append(r[n])
        outs = {n: (v[0] if len(v) == 1 else np.concatenate(v)) for n, v in outs.items()}
        if self.top_k:
            idx, score = top_k_arrays(outs[self.output_names[0]], self.top_k)
            return {"topk_index": idx, "topk_score": score}
        return outs


# -- the job: manifest, parts (the journal), assembly ---------------------------------------
def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _save_npz_atomic(path, arrays: dict):
    def w(tmp):
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
    atomic_save(path, w)


class BatchJob:
    """Everything about one ``edgenet batch`` job except how chunks are computed."""

    def __init__(self, model_path, inputs, output, *, batch_size=64, chunk_size=1024,
                 top_k=None, device="cpu", policy=None, fresh=False):
        from .format import ModelFile
        self.model_path = os.path.abspath(model_path)
        self.output = os.fspath(output)
        ext = os.path.splitext(self.output)[1].lower()
        if ext not in (".npz", ".parquet"):
            raise InputError(f"{self.output}: output must end in .npz or .parquet")
        self.format = ext[1:]
        if self.format == "parquet":
            try:
                import pyarrow  # noqa: F401
            except ImportError:
                raise EdgenetError("writing .parquet needs pyarrow: pip install pyarrow "
                                   "(or 'edgenet[ray]'), or write .npz") from None
        if os.path.isdir(self.output):
            raise InputError(f"{self.output}: is a directory")
        mf = ModelFile(self.model_path)
        g = mf.graph
        from .runtime import IOSpec
        if len(g["inputs"]) != 1:
            raise InputError(f"{model_path}: model has {len(g['inputs'])} inputs; "
                             f"`edgenet batch` feeds one")
        v = g["inputs"][0]
        self.spec = IOSpec(v["name"], tuple(v["shape"]), v.get("dtype", "float32"))
        self.output_names = [o["name"] for o in g["outputs"]]
        self.metadata = dict(mf.metadata)
        self.labels = self.metadata.get("labels")
        del mf
        self.batch_size, self.chunk_size = int(batch_size), int(chunk_size)
        self.top_k, self.device, self.policy = top_k, device, policy
        self.sources = discover(inputs, self.spec)
        self.total = sum(s.n for s in self.sources)
        if self.total == 0:
            raise InputError(f"{inputs}: the input files hold no samples")
        self.chunks = plan_chunks(self.sources, self.chunk_size)
        self.partial = self.output + PARTIAL_SUFFIX
        self.manifest = {
            "edgenet_batch": JOB_VERSION,
            "model_sha256": _sha256(self.model_path),
            "inputs_sha256": hashlib.sha256(json.dumps(
                [[s.key, s.kind, s.member, s.n, s.size, s.mtime_ns] for s in self.sources]
            ).encode()).hexdigest(),
            "samples": self.total, "chunk_size": self.chunk_size, "chunks": len(self.chunks),
            "top_k": top_k, "device": device, "policy": policy,
            "outputs": self.output_names, "format": self.format,
        }
        self._lockf = None
        try:
            self._open_partial(fresh)
        except BaseException:
            self.close()
            raise

    # sidecar --------------------------------------------------------------------------
    def _open_partial(self, fresh):
        if fresh and os.path.isdir(self.partial):
            shutil.rmtree(self.partial)
        os.makedirs(self.partial, exist_ok=True)
        try:
            import fcntl
            self._lockf = open(os.path.join(self.partial, "lock"), "a")
            try:
                fcntl.flock(self._lockf, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                raise EdgenetError(f"{self.partial}: another `edgenet batch` is writing "
                                   f"{self.output}") from None
        except ImportError:  # pragma: no cover
            pass
        mpath = os.path.join(self.partial, MANIFEST)
        if os.path.exists(mpath):
            with open(mpath, encoding="utf-8") as f:
                try:
                    old = json.load(f)
                except ValueError:
                    old = None
            if old != self.manifest:
                raise InputError(
                    f"{self.partial}: left by a different job (model, inputs or options "
                    f"changed since it started); remove it or pass --fresh")
        else:
            atomic_save(mpath, lambda tmp: open(tmp, "w", encoding="utf-8").write(
                json.dumps(self.manifest, indent=1)))

    def part_path(self, i):
        return os.path.join(self.partial, f"part-{i:08d}.npz")

    def done(self) -> set:
        return {i for i in range(len(self.chunks)) if os.path.exists(self.part_path(i))}

    def pending(self) -> list:
        d = self.done()
        return [i for i in range(len(self.chunks)) if i not in d]

    def done_samples(self) -> int:
        return sum(self.chunks[i][1] - self.chunks[i][0] for i in self.done())

    def write_part(self, i, keys, result: dict):
        start, stop, _ = self.chunks[i]
        n = stop - start
        if len(keys) != n or any(len(v) != n for v in result.values()):
            raise EdgenetError(f"chunk {i}: expected {n} rows, got {len(keys)}")
        arrays = {"key": np.asarray(keys, dtype=str),
                  "idx": np.arange(start, stop, dtype=np.int64)}
        for k, v in result.items():
            arrays["out." + k] = np.ascontiguousarray(v)
        _save_npz_atomic(self.part_path(i), arrays)

    # assembly -------------------------------------------------------------------------
    def _columns(self):
        """[(part array name, output column name)] in output order."""
        if self.top_k:
            return [("out.topk_index", "topk_index"), ("out.topk_score", "topk_score")]
        return [("out." + n, ("output_" + n if n in ("key", "topk_index", "topk_score",
                                                  "topk_label") else n))
                for n in self.output_names]

    def _check_parts(self):
        """Scan the parts: every sample exactly once, consistent shapes. Returns the column
        dtypes/trailing shapes and the widest key."""
        expect, info, key_width = 0, {}, 1
        for i in range(len(self.chunks)):
            with np.load(self.part_path(i), allow_pickle=False) as z:
                idx = z["idx"]
                if len(idx) == 0 or idx[0] != expect or \
                        not np.array_equal(idx, np.arange(expect, expect + len(idx))):
                    raise EdgenetError(f"{self.part_path(i)}: rows out of order (journal "
                                       f"corrupt; rerun with --fresh)")
                expect += len(idx)
                key_width = max(key_width, z["key"].dtype.itemsize // 4)
                for src, _ in self._columns():
                    a = z[src]
                    prev = info.setdefault(src, (a.dtype, a.shape[1:]))
                    if prev != (a.dtype, a.shape[1:]):
                        raise EdgenetError(f"{self.part_path(i)}: '{src}' has shape "
                                           f"{a.shape[1:]}, other parts {prev[1]}")
        if expect != self.total:
            raise EdgenetError(f"{self.partial}: parts hold {expect} rows, job has {self.total}")
        return info, key_width

    def _label_array(self, idx):
        labels = np.asarray([str(v) for v in self.labels] + [""], dtype=str)
        return labels[np.where(idx < len(self.labels), idx, len(self.labels))]

    def _iter_parts(self, names):
        for i in range(len(self.chunks)):
            with np.load(self.part_path(i), allow_pickle=False) as z:
                yield {n: z[n] for n in names}

    def _write_npz(self, tmp, info, key_width):
        def column(f, dtype, tail, blocks):
            np.lib.format.write_array_header_2_0(f, {
                "descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
                "fortran_order": False, "shape": (self.total,) + tuple(tail)})
            for b in blocks:
                f.write(np.ascontiguousarray(b, dtype=dtype).tobytes())

        kdt = np.dtype(f"<U{key_width}")
        cols = [("key", kdt, (), lambda: (p["key"] for p in self._iter_parts(["key"])))]
        for src, name in self._columns():
            dt, tail = info[src]
            cols.append((name, dt, tail,
                         (lambda s=src: (p[s] for p in self._iter_parts([s])))))
        if self.top_k and self.labels:
            lw = max([len(str(v)) for v in self.labels] + [1])
            cols.append(("topk_label", np.dtype(f"<U{lw}"), info["out.topk_index"][1],
                         lambda: (self._label_array(p["out.topk_index"])
                                  for p in self._iter_parts(["out.topk_index"]))))
        with open(tmp, "wb") as fh:
            with zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_STORED,
                                 allowZip64=True) as zf:
                for name, dt, tail, blocks in cols:
                    with zf.open(name + ".npy", "w", force_zip64=True) as f:
                        column(f, dt, tail, blocks())
            fh.flush()
            os.fsync(fh.fileno())

    def _write_parquet(self, tmp, info):
        import pyarrow as pa
        import pyarrow.parquet as pq
        names = [src for src, _ in self._columns()]
        shapes = {name: list(info[src][1]) for src, name in self._columns()}
        if self.top_k and self.labels:
            shapes["topk_label"] = [self.top_k]

        def fixed(a, typ):
            a = np.ascontiguousarray(a)
            width = int(np.prod(a.shape[1:], dtype=np.int64)) if a.ndim > 1 else 1
            flat = pa.array(a.reshape(-1), type=typ)
            return pa.FixedSizeListArray.from_arrays(flat, width)

        writer = None
        try:
            for p in self._iter_parts(["key"] + names):
                cols = {"key": pa.array(p["key"].tolist(), type=pa.string())}
                for src, name in self._columns():
                    a = p[src]
                    typ = pa.from_numpy_dtype(a.dtype)
                    cols[name] = fixed(a, typ)
                if self.top_k and self.labels:
                    lab = self._label_array(p["out.topk_index"])
                    cols["topk_label"] = fixed(lab.astype(object), pa.string())
                table = pa.table(cols)
                if writer is None:
                    meta = {b"edgenet.shapes": json.dumps(shapes).encode(),
                            b"edgenet.model_sha256": self.manifest["model_sha256"].encode()}
                    schema = table.schema.with_metadata(meta)
                    writer = pq.ParquetWriter(tmp, schema)
                writer.write_table(table.replace_schema_metadata(writer.schema.metadata))
        finally:
            if writer is not None:
                writer.close()

    def finish(self):
        """Assemble the parts into OUTPUT (atomically) and remove the sidecar."""
        missing = self.pending()
        if missing:
            raise EdgenetError(f"{len(missing)} chunk(s) not done")
        info, key_width = self._check_parts()
        if self.format == "npz":
            atomic_save(self.output, lambda tmp: self._write_npz(tmp, info, key_width))
        else:
            atomic_save(self.output, lambda tmp: self._write_parquet(tmp, info))
        self.close()
        shutil.rmtree(self.partial, ignore_errors=True)

    def close(self):
        if self._lockf is not None:
            self._lockf.close()
            self._lockf = None


# -- local engine --------------------------------------------------------------------------
def default_layout(total: int, cores: int, workers=None, threads=None, batch_size=64):
    """(processes, threads per process); processes 0 = score in this process.

    Measured (docs/BATCH.md, bench/bench_batch.py): a small CNN runs 3-10x faster on one
    thread than on two threads of one process (a parallel region per layer costs more than
    the layer), so the unit is a single-threaded worker, one per core for a large job.
    Starting a worker costs seconds (interpreter, numba import, kernels from the disk
    cache), more than a small job takes, so a job under SMALL_JOB samples runs in this
    process on one thread."""
    cores = max(1, cores)
    if workers is None and threads is None:
        if total < SMALL_JOB or cores == 1:
            return 0, 1
        workers = max(1, min(cores, total // (4 * batch_size)))
        threads = max(1, cores // workers)
    elif workers is None:
        workers = max(1, cores // threads)
    elif threads is None:
        threads = 1
    return workers, threads


_W: dict = {}


def _worker_init(job_state, threads, in_process=False):
    if not in_process:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
        if threads and "numba" not in sys.modules:
            os.environ["NUMBA_NUM_THREADS"] = str(threads)
    _W.update(job_state)
    model = load_model_once(job_state["model_path"], job_state["device"], threads,
                            job_state["policy"])
    _W["scorer"] = Scorer(model, job_state["batch_size"], job_state["top_k"])
    _W["cache"] = _ArrayCache()


def _worker_chunk(i, segments, part_path):
    keys, x = load_samples(_W["sources"], segments, _W["spec"], _W["metadata"], _W["cache"])
    res = _W["scorer"](x)
    arrays = {"key": np.asarray(keys, dtype=str),
              "idx": np.arange(_W["starts"][i], _W["starts"][i] + len(keys), dtype=np.int64)}
    arrays.update({"out." + k: v for k, v in res.items()})
    _save_npz_atomic(part_path, arrays)
    return i, len(keys)


def _job_state(job: BatchJob):
    return {"model_path": job.model_path, "device": job.device, "policy": job.policy,
            "batch_size": job.batch_size, "top_k": job.top_k, "sources": job.sources,
            "spec": job.spec, "metadata": job.metadata,
            "starts": [c[0] for c in job.chunks]}


def run_local(job: BatchJob, workers: int, threads: int, on_chunk, stop_after=None):
    """Compute the pending chunks with ``workers`` spawned processes (0: in this process)."""
    pending = job.pending()
    if not pending:
        return
    done_here = 0
    if workers == 0:
        _worker_init(_job_state(job), threads, in_process=True)
        for i in pending:
            _, n = _worker_chunk(i, job.chunks[i][2], job.part_path(i))
            on_chunk(i, n)
            done_here += 1
            if stop_after is not None and done_here >= stop_after:
                raise KeyboardInterrupt
        return
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool
    ctx = mp.get_context("spawn")
    ex = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_worker_init,
                             initargs=(_job_state(job), threads))
    try:
        todo = iter(pending)
        inflight = set()

        def fill():
            while len(inflight) < 2 * workers:
                i = next(todo, None)
                if i is None:
                    return
                inflight.add(ex.submit(_worker_chunk, i, job.chunks[i][2], job.part_path(i)))

        fill()
        while inflight:
            finished, _ = wait(inflight, return_when=FIRST_COMPLETED)
            for f in finished:
                inflight.discard(f)
                i, n = f.result()
                on_chunk(i, n)
                done_here += 1
                if stop_after is not None and done_here >= stop_after:
                    raise KeyboardInterrupt
            fill()
    except BrokenProcessPool as e:
        ex.shutdown(wait=False, cancel_futures=True)
        raise EdgenetError(f"a worker process died ({e}); finished chunks are kept in "
                           f"{job.partial}; rerun with --workers 0 to see the error") from None
    except BaseException:
        ex.shutdown(wait=True, cancel_futures=True)
        raise
    ex.shutdown(wait=True)


# -- driver ------------------------------------------------------------------------------
class _Progress:
    def __init__(self, job: BatchJob, quiet: bool):
        self.total = job.total
        self.start_done = job.done_samples()
        self.n = 0
        self.t0 = time.perf_counter()
        self.bar = None
        self.quiet = quiet
        if not quiet:
            self.bar = click.progressbar(length=job.total, label="scoring", file=sys.stderr,
                                         show_pos=True, item_show_func=lambda s: s)
            self.bar.__enter__()
            if self.start_done:
                self.bar.update(self.start_done, f"resumed at {self.start_done}")

    def rate(self):
        dt = time.perf_counter() - self.t0
        return self.n / dt if dt > 0 else 0.0

    def __call__(self, i, n):
        self.n += n
        if self.bar is not None:
            self.bar.update(n, f"{self.rate():.0f} img/s")

    def close(self):
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None


def run_batch(model, inputs, output, *, engine="local", batch_size=64, chunk_size=None,
              workers=None, threads=None, top_k=None, device="cpu", policy=None,
              address=None, fresh=False, quiet=True, ray_options=None) -> dict:
    """The ``edgenet batch`` job as a function. Returns a summary dict."""
    if chunk_size is None:
        chunk_size = max(batch_size, 1024 // batch_size * batch_size)
    job = BatchJob(model, inputs, output, batch_size=batch_size, chunk_size=chunk_size,
                   top_k=top_k, device=device, policy=policy, fresh=fresh)
    stop_after = os.environ.get(STOP_ENV)
    stop_after = int(stop_after) if stop_after else None
    resumed = job.done_samples()
    progress = _Progress(job, quiet)
    t0 = time.perf_counter()
    try:
        remaining = job.total - resumed
        if engine == "local":
            p, t = default_layout(remaining, os.cpu_count() or 1, workers, threads, batch_size)
            if not job.pending():
                p = 0
            run_local(job, p, t, progress, stop_after)
        elif engine == "ray":
            from .integrations.ray import run_ray
            p, t = run_ray(job, progress, workers=workers, threads=threads, address=address,
                           stop_after=stop_after, **(ray_options or {}))
        else:
            raise InputError(f"unknown engine {engine!r} (choose local or ray)")
        progress.close()
        job.finish()
    finally:
        progress.close()
        job.close()
    dt = time.perf_counter() - t0
    return {"output": job.output, "samples": job.total, "scored": progress.n,
            "resumed": resumed, "seconds": dt, "images_per_s": progress.n / dt if dt else 0.0,
            "workers": p, "threads": t, "engine": engine, "chunks": len(job.chunks)}


@main.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.argument("inputs")
@click.option("-o", "--output", required=True, type=click.Path(),
              help="Predictions file: .npz or .parquet (parquet needs pyarrow).")
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local",
              show_default=True, help="Process pool on this machine, or a Ray Data pipeline.")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True,
              help="Samples per model call.")
@click.option("--chunk-size", type=click.IntRange(min=1), default=None,
              help="Samples per journaled part (the resume granularity). [default: ~1024]")
@click.option("--workers", type=click.IntRange(min=0), default=None,
              help="Worker processes (local) or Ray actors; local 0 = in this process. "
                   "[default: one single-threaded worker per core; in this process for "
                   "jobs under 4096 samples]")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="Kernel threads per worker. [default: 1]")
@click.option("--top-k", "top_k", type=click.IntRange(min=1), default=None,
              help="Store the K best classes (index, score, label) instead of raw outputs.")
@click.option("--device", type=click.Choice(["cpu", "reference"]), default="cpu",
              show_default=True)
@click.option("--policy", type=click.Choice(["expanded", "packed"]), default=None,
              help="Weights kept expanded (fastest) or bit-packed (least memory).")
@click.option("--address", default=None,
              help="Ray cluster address (--engine ray); default: start a local Ray.")
@click.option("--model-from", "model_from", type=click.Choice(["ship", "shared"]),
              default="ship", show_default=True,
              help="Ray: ship the model bytes through the object store, or read MODEL from "
                   "shared storage at the same path on every node.")
@click.option("--fresh", is_flag=True, help="Discard a previous interrupted run's journal.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@guarded
def batch(model, inputs, output, engine, batch_size, chunk_size, workers, threads, top_k,
          device, policy, address, model_from, fresh, quiet):
    """Score every input in INPUTS with MODEL into OUTPUT, resumably.

    INPUTS: a directory (images, .npy/.npz shards), a glob, or one file. Keys are file paths
    relative to INPUTS, with ':index' for samples of a shard. An interrupted run is
    continued by rerunning the same command (journal: OUTPUT.partial/).
    """
    if engine != "ray" and address:
        raise InputError("--address needs --engine ray")
    ray_options = {"model_from": model_from} if engine == "ray" else None
    s = run_batch(model, inputs, output, engine=engine, batch_size=batch_size,
                  chunk_size=chunk_size, workers=workers, threads=threads, top_k=top_k,
                  device=device, policy=policy, address=address, fresh=fresh, quiet=quiet,
                  ray_options=ray_options)
    extra = f", {s['resumed']} resumed from the journal" if s["resumed"] else ""
    click.echo(f"{s['output']}: {s['samples']} rows ({s['scored']} scored in "
               f"{s['seconds']:.2f} s, {s['images_per_s']:.0f} img/s, {s['engine']} "
               f"{s['workers']}x{s['threads']} threads{extra})")


if __name__ == "__main__":  # pragma: no cover
    main()
