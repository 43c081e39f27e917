"""``run_batch``: one batch job from start to output, on the local or the Ray engine."""
from __future__ import annotations

import os
import time

from ..errors import InputError
from ..io import NO_PREPROCESSING_WARNING, has_preprocessing
from .journal import BatchJob
from .local import default_layout, run_local

STOP_ENV = "EDGENET_BATCH_STOP_AFTER"  # test hook: stop (as if interrupted) after k chunks


class Progress:
    """Counts scored samples and forwards them to ``report(done, total, rate)`` (done
    includes samples resumed from the journal; rate in samples/s of this run)."""

    def __init__(self, job: BatchJob, report=None):
        self.total = job.total
        self.resumed = job.done_samples()
        self.n = 0
        self.t0 = time.perf_counter()
        self.report = report
        if report is not None:
            report(self.resumed, self.total, 0.0)

    def rate(self):
        dt = time.perf_counter() - self.t0
        return self.n / dt if dt > 0 else 0.0

    def __call__(self, i, n):
        self.n += n
        if self.report is not None:
            self.report(self.resumed + self.n, self.total, self.rate())


def run_batch(model, inputs, output, *, engine="local", batch_size=64, chunk_size=None,
              workers=None, threads=None, top_k=None, device="cpu", policy=None,
              address=None, fresh=False, progress=None, ray_options=None,
              on_warning=None) -> dict:
    """The ``edgenet batch`` job as a function. Returns a summary dict.

    progress: optional ``callback(done, total, rate)`` after each chunk (and once at the
    start, with the samples resumed from the journal). on_warning: optional
    ``callback(message)`` for problems that do not stop the job (images given to a model
    that stores no preprocessing)."""
    if engine not in ("local", "ray"):
        raise InputError(f"unknown engine {engine!r} (choose local or ray)")
    if chunk_size is None:
        chunk_size = max(batch_size, 1024 // batch_size * batch_size)
    job = BatchJob(model, inputs, output, batch_size=batch_size, chunk_size=chunk_size,
                   top_k=top_k, device=device, policy=policy, fresh=fresh)
    if on_warning is not None and not has_preprocessing(job.metadata) and \
            any(s.kind == "image" for s in job.sources):
        on_warning(NO_PREPROCESSING_WARNING)
    stop_after = os.environ.get(STOP_ENV)
    stop_after = int(stop_after) if stop_after else None
    resumed = job.done_samples()
    counter = Progress(job, progress)
    t0 = time.perf_counter()
    try:
        remaining = job.total - resumed
        if engine == "local":
            p, t = default_layout(remaining, os.cpu_count() or 1, workers, threads, batch_size)
            if not job.pending():
                p = 0
            run_local(job, p, t, counter, stop_after)
        else:
            from .ray_engine import run_ray
            p, t = run_ray(job, counter, workers=workers, threads=threads, address=address,
                           stop_after=stop_after, **(ray_options or {}))
        job.finish()
    finally:
        job.close()
    dt = time.perf_counter() - t0
    return {"output": job.output, "samples": job.total, "scored": counter.n,
            "resumed": resumed, "seconds": dt, "images_per_s": counter.n / dt if dt else 0.0,
            "workers": p, "threads": t, "engine": engine, "chunks": len(job.chunks)}


