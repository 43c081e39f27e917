"""Scoring: a loaded model over a batch of samples, and loading it once per node."""
from __future__ import annotations

import contextlib
import os
import tempfile

import numpy as np


def top_k_arrays(y: np.ndarray, k: int):
    """Descending, ties by index (the order of ``edgenet run --top-k``): (indices int64, scores float32)."""
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
    from ..runtime import load
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
