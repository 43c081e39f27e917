"""edgenet on Ray Data: ``Predictor`` for your own pipelines, and the Ray engine of
``edgenet batch --engine ray``. Users import these from ``edgenet.integrations.ray``.

Ray is an optional extra (``pip install 'edgenet[ray]'``); it is imported only when used.

    import ray, edgenet.integrations.ray as er
    ds = ray.data.read_numpy("s3://bucket/shards/")            # column "data": (C, H, W) rows
    model = er.ship_model("model.edgenet")                     # bytes into the object store
    ds = ds.map_batches(er.Predictor, batch_size=64,
                        fn_constructor_kwargs={"model": model, "input_column": "data",
                                               "threads": 1, "top_k": 5},
                        compute=ray.data.ActorPoolStrategy(size=8), num_cpus=1)
    ds.write_parquet("s3://bucket/predictions/")

What a distributed run needs, and how it is handled here:

- **One model load per worker**: ``Predictor`` is a callable class, so Ray Data creates it
  once per actor; it loads the model and compiles (or loads from the disk cache) every kernel
  in ``__init__``, under a per-node file lock so that the first actor on a node compiles and
  the others load the cached result ("compile once per node").
- **Numba compile cache per node**: pass ``cache_dir`` (or set ``EDGENET_CACHE_DIR`` in the
  job's ``runtime_env``); it must be a node-local path. ``edgenet batch --engine ray`` sets it
  for a remote cluster to ``/tmp/edgenet-numba-cache``; on a local Ray it keeps the same
  cache as the local engine.
- **No fork after the runtime's threads start**: Ray starts worker processes fresh (exec by
  the raylet), never by forking the driver; the driver of ``edgenet batch --engine ray``
  never loads the model itself. Threads per actor: ``threads`` (also exported as
  ``NUMBA_NUM_THREADS`` before Numba is imported in the actor), with ``num_cpus`` reserved.
- **The model file**: a path on shared storage (same path on every node), or its bytes
  (``ship_model``: ``ray.put`` once; each node writes them once to a temp file named by their
  SHA-256 and memory-maps that file).
"""
from __future__ import annotations

import hashlib
import os
import sys
import tempfile

import numpy as np

from ..errors import EdgenetError
from .scoring import Scorer, load_model_once, node_lock
from .sources import ArrayCache, load_samples

REMOTE_CACHE_DIR = "/tmp/edgenet-numba-cache"


def import_ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as e:
        raise EdgenetError(f"--engine ray needs Ray Data: pip install 'edgenet[ray]' "
                           f"(or 'ray[data]' pyarrow) ({e})") from None
    return ray


def ship_model(path):
    """Put the model file's bytes into the Ray object store; pass the returned ref as
    ``Predictor(model=...)``. Ray must be initialized."""
    ray = import_ray()
    with open(path, "rb") as f:
        return ray.put(f.read())


def _materialize(model) -> str:
    """A local path for ``model``: a path (returned as is), bytes, or an ObjectRef to bytes."""
    if isinstance(model, (str, os.PathLike)):
        return os.fspath(model)
    if not isinstance(model, (bytes, bytearray, memoryview)):
        ray = import_ray()
        if isinstance(model, ray.ObjectRef):
            model = ray.get(model)
    if not isinstance(model, (bytes, bytearray, memoryview)):
        raise EdgenetError(f"Predictor(model=...): expected a path, bytes or an ObjectRef, "
                           f"got {type(model).__name__}")
    data = bytes(model)
    digest = hashlib.sha256(data).hexdigest()
    d = os.path.join(tempfile.gettempdir(), f"edgenet-models-{os.getuid()}")
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, f"{digest[:32]}.edgenet")
    if not os.path.exists(path):
        fd, tmp = tempfile.mkstemp(dir=d, prefix=".model-", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    return path


class Predictor:
    """A callable class for ``Dataset.map_batches`` (``batch_format="numpy"``).

    model: path (shared storage), bytes, or ObjectRef from ``ship_model``.
    input_column: column holding samples (C, H, W) per row (default: the model input's
        name if the batch has it, else ``"data"``, else ``"x"``, else the only column).
    top_k: emit ``topk_index``, ``topk_score`` (and ``topk_label`` when the model stores
        labels) for the first output instead of the raw outputs (one column per output).
    keep_input: keep the input column in the result (default: dropped); every other column
        (keys, paths…) is passed through.
    output_prefix: prefix of the columns this class adds.
    batch_size: samples per model call inside one Ray batch (default: the whole batch).
    """

    def __init__(self, model, *, device="cpu", threads=None, input_column=None, top_k=None,
                 keep_input=False, output_prefix="", batch_size=None, policy=None,
                 cache_dir=None):
        if "numba" not in sys.modules:
            if threads:
                os.environ["NUMBA_NUM_THREADS"] = str(int(threads))
            if cache_dir:
                os.environ["EDGENET_CACHE_DIR"] = os.fspath(cache_dir)
        with node_lock("model"):
            path = _materialize(model)
        self.model = load_model_once(path, device=device, threads=threads, policy=policy)
        self.scorer = Scorer(self.model, batch_size or 1 << 30, top_k)
        self.input_column = input_column
        self.keep_input = keep_input
        self.prefix = output_prefix
        self.labels = self.model.metadata.get("labels") if top_k else None

    def _column(self, batch):
        if self.input_column:
            if self.input_column not in batch:
                raise EdgenetError(f"Predictor: no column '{self.input_column}' in the batch "
                                   f"(has {sorted(batch)})")
            return self.input_column
        for c in (self.scorer.input_name, "data", "x"):
            if c in batch:
                return c
        if len(batch) == 1:
            return next(iter(batch))
        raise EdgenetError(f"Predictor: which column holds the inputs? pass input_column= "
                           f"(batch has {sorted(batch)})")

    def __call__(self, batch: dict) -> dict:
        col = self._column(batch)
        x = batch[col]
        if x.dtype == object:  # ragged/tensor column handed over as an array of arrays
            x = np.stack(list(x))
        spec = self.model.inputs[0]
        x = np.asarray(x, dtype=np.float32)
        if x.ndim == len(spec.shape) - 1:  # one sample
            x = x[None]
        res = self.scorer(np.ascontiguousarray(x))
        out = {k: v for k, v in batch.items() if k != col or self.keep_input}
        for k, v in res.items():
            out[self.prefix + k] = v
        if self.labels and "topk_index" in res:
            labels = np.asarray([str(v) for v in self.labels] + [""], dtype=object)
            idx = res["topk_index"]
            out[self.prefix + "topk_label"] = labels[np.where(idx < len(self.labels), idx,
                                                              len(self.labels))]
        return out


# -- `edgenet batch --engine ray` ---------------------------------------------------------
_STATE: dict = {}


def _load_chunks(batch: dict, state_ref) -> dict:
    """Ray Data stage: chunk ids -> rows {chunk, idx, key, x} (reads the input files)."""
    import ray
    key = state_ref.hex() if hasattr(state_ref, "hex") else id(state_ref)
    if _STATE.get("key") != key:
        _STATE.clear()
        _STATE.update(key=key, state=ray.get(state_ref), cache=ArrayCache())
    st = _STATE["state"]
    chunks, idxs, keys, xs = [], [], [], []
    for c in batch["chunk"]:
        c = int(c)
        start, stop, segs = st["chunks"][c]
        k, x = load_samples(st["sources"], segs, st["spec"], st["metadata"], _STATE["cache"])
        chunks.append(np.full(len(k), c, np.int64))
        idxs.append(np.arange(start, stop, dtype=np.int64))
        keys.extend(k)
        xs.append(x)
    return {"chunk": np.concatenate(chunks), "idx": np.concatenate(idxs),
            "key": np.asarray(keys, dtype=object), "x": np.concatenate(xs)}


def run_ray(job, on_chunk, *, workers=None, threads=None, address=None, stop_after=None,
            model_from="ship", num_cpus=None, cache_dir=None):
    """Compute ``job``'s pending chunks on Ray; writes parts exactly like the local engine.
    Returns (actors, threads per actor)."""
    ray = import_ray()
    pending = job.pending()
    threads = threads or 1
    env = {"NUMBA_NUM_THREADS": str(threads)}
    cache_dir = cache_dir or os.environ.get("EDGENET_CACHE_DIR") or (
        REMOTE_CACHE_DIR if address else None)
    if cache_dir:
        env["EDGENET_CACHE_DIR"] = cache_dir
    started = False
    if not ray.is_initialized():
        kw = dict(include_dashboard=False, logging_level="warning", log_to_driver=False)
        if address:
            kw["address"] = address
        else:
            # a local Ray: its workers import this same edgenet
            pkg_root = os.path.dirname(os.path.dirname(os.path.dirname(
                os.path.abspath(__file__))))
            env["PYTHONPATH"] = os.pathsep.join(
                [pkg_root] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
            kw["num_cpus"] = num_cpus or os.cpu_count() or 1
        kw["runtime_env"] = {"env_vars": env}
        ray.init(**kw)
        started = True
    try:
        cpus = int(ray.cluster_resources().get("CPU", 1))
        if workers is None:
            workers = max(1, cpus // threads)
        if workers < 1:
            raise EdgenetError("--engine ray needs --workers >= 1")
        if not pending:
            return workers, threads
        import logging
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        ctx.execution_options.verbose_progress = False
        state_ref = ray.put({"sources": job.sources, "spec": job.spec,
                             "metadata": job.metadata, "chunks": job.chunks})
        model = ray.put(open(job.model_path, "rb").read()) if model_from == "ship" \
            else job.model_path
        ds = ray.data.from_items([{"chunk": i} for i in pending],
                                 override_num_blocks=len(pending))
        # Readers reserve no CPU (the actors hold them) but are capped in number: zero-CPU
        # tasks are otherwise started without bound, each in a new worker process.
        ds = ds.map_batches(_load_chunks, batch_size=1, batch_format="numpy",
                            fn_kwargs={"state_ref": state_ref}, num_cpus=0,
                            compute=ray.data.TaskPoolStrategy(size=max(1, min(workers, 4))),
                            runtime_env={"env_vars": env} if not started else None)
        ds = ds.map_batches(
            Predictor, batch_size=job.batch_size, batch_format="numpy",
            fn_constructor_kwargs={"model": model, "device": job.device, "threads": threads,
                                   "input_column": "x", "top_k": job.top_k,
                                   "output_prefix": "out.", "policy": job.policy,
                                   "cache_dir": cache_dir},
            compute=ray.data.ActorPoolStrategy(size=workers), num_cpus=threads)
        sizes = {i: job.chunks[i][1] - job.chunks[i][0] for i in pending}
        acc: dict = {}
        done_here = 0
        for b in ds.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=2):
            chunk = b["chunk"]
            for c in np.unique(chunk):
                sel = chunk == c
                acc.setdefault(int(c), []).append({k: v[sel] for k, v in b.items()
                                                   if k != "chunk"})
                c = int(c)
                got = sum(len(p["idx"]) for p in acc[c])
                if got > sizes[c]:
                    raise EdgenetError(f"chunk {c}: {got} rows from Ray, expected {sizes[c]}")
                if got == sizes[c]:
                    parts = acc.pop(c)
                    cat = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
                    order = np.argsort(cat["idx"], kind="stable")
                    start, stop, _ = job.chunks[c]
                    if not np.array_equal(cat["idx"][order], np.arange(start, stop)):
                        raise EdgenetError(f"chunk {c}: rows from Ray do not cover "
                                           f"samples {start}..{stop - 1} exactly once")
                    res = {k[4:]: v[order] for k, v in cat.items() if k.startswith("out.")}
                    if job.top_k:
                        res = {k: res[k] for k in ("topk_index", "topk_score")}
                    job.write_part(c, [str(k) for k in cat["key"][order]], res)
                    on_chunk(c, sizes[c])
                    done_here += 1
                    if stop_after is not None and done_here >= stop_after:
                        raise KeyboardInterrupt
        if acc:
            raise EdgenetError(f"Ray returned incomplete chunks: {sorted(acc)}")
        return workers, threads
    finally:
        if started:
            ray.shutdown()
