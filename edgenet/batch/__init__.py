"""Score a whole dataset with one model, resumably (the library behind ``edgenet batch``).

    from edgenet.batch import run_batch
    summary = run_batch("model.edgenet", "shards/", "predictions.npz", top_k=5)

Layers, top-down: ``driver`` (``run_batch``) runs a ``journal.BatchJob`` (manifest, one
part file per chunk, resumable) on the ``local`` engine (spawned worker processes) or the
``ray_engine`` (Ray Data); workers read samples with ``sources`` (discovery, chunks, .npy/
.npz/images), score them with ``scoring`` (``Scorer``, a model loaded once per node), and
the output is assembled by ``writers`` (.npz or .parquet). docs/BATCH.md has the details.
No click here: the command is edgenet/cli/batch.py.
"""
from .driver import STOP_ENV, Progress, run_batch
from .journal import BatchJob
from .local import SMALL_JOB, default_layout, run_local
from .scoring import Scorer, load_model_once, node_lock, top_k_arrays
from .sources import ArrayCache, Source, discover, load_samples, plan_chunks

__all__ = ["ArrayCache", "BatchJob", "Progress", "SMALL_JOB", "STOP_ENV", "Scorer", "Source",
           "default_layout", "discover", "load_model_once", "load_samples", "node_lock",
           "plan_chunks", "run_batch", "run_local", "top_k_arrays"]
