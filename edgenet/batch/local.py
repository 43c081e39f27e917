"""The local engine: a pool of worker processes started with ``spawn`` (a forked child of a
process whose Numba/OpenMP threads have started can hang), each loading the model once and
running ``threads`` kernel threads; or, for a small job, this process."""
from __future__ import annotations

import os
import signal
import sys

import numpy as np

from ..errors import EdgenetError
from .journal import BatchJob, save_npz_atomic
from .scoring import Scorer, load_model_once
from .sources import ArrayCache, load_samples

SMALL_JOB = 4096  # samples: below this the default is in-process (no worker start)


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
    _W["cache"] = ArrayCache()


def _worker_chunk(i, segments, part_path):
    keys, x = load_samples(_W["sources"], segments, _W["spec"], _W["metadata"], _W["cache"])
    res = _W["scorer"](x)
    arrays = {"key": np.asarray(keys, dtype=str),
              "idx": np.arange(_W["starts"][i], _W["starts"][i] + len(keys), dtype=np.int64)}
    arrays.update({"out." + k: v for k, v in res.items()})
    save_npz_atomic(part_path, arrays)
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


