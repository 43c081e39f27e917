"""A batch job and its journal.

The job is cut into *chunks* of consecutive samples (deterministic for a given input set and
chunk size). Each finished chunk is written atomically as one part file in the sidecar
directory ``OUT.partial/`` beside the output, together with a manifest naming the job (model
hash, inputs, options). Parts are the journal: a rerun of the same job skips every chunk
whose part exists, so an interrupted run continues where it stopped and no row is lost or
written twice. The output is assembled from the parts in chunk order (checked: sample indices
must be exactly 0..N-1; edgenet.batch.writers), written to a temporary file, renamed into
place, and the sidecar is removed.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil

import numpy as np

from ..errors import EdgenetError, InputError
from ..io import atomic_save, sha256_file
from .sources import PARTIAL_SUFFIX, discover, plan_chunks
from .writers import check_parts, write_npz, write_parquet

MANIFEST = "manifest.json"
JOB_VERSION = 1



def save_npz_atomic(path, arrays: dict):
    """Write ``arrays`` as one .npz, atomically."""
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
        from ..format import ModelFile
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
        from ..runtime import IOSpec
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
            "model_sha256": sha256_file(self.model_path),
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
        save_npz_atomic(self.part_path(i), arrays)

    # assembly -------------------------------------------------------------------------
    # assembly -------------------------------------------------------------------------
    def finish(self):
        """Assemble the parts into OUTPUT (atomically) and remove the sidecar."""
        missing = self.pending()
        if missing:
            raise EdgenetError(f"{len(missing)} chunk(s) not done")
        info, key_width = check_parts(self)
        if self.format == "npz":
            atomic_save(self.output, lambda tmp: write_npz(self, tmp, info, key_width))
        else:
            atomic_save(self.output, lambda tmp: write_parquet(self, tmp, info))
        self.close()
        shutil.rmtree(self.partial, ignore_errors=True)

    def close(self):
        if self._lockf is not None:
            self._lockf.close()
            self._lockf = None


