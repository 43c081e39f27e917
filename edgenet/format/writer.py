"""The only writer of .edgenet files. Writes a temporary file beside the destination and
renames it into place, so a reader never sees a half-written model."""
from __future__ import annotations

import json
import os
import socket
import tempfile
import zlib

import numpy as np

from .codecs import Packed
from .constants import ALIGNMENT, MAGIC, PREAMBLE, VERSION, align

SCALE_SUFFIX = "::scale"


def _layout(tensors: dict):
    """Yield (entry, array) for every stored blob, companion scales included, with offsets."""
    offset = 0
    for name, t in tensors.items():
        if not isinstance(t, Packed):
            raise TypeError(f"tensor {name!r}: expected Packed, got {type(t).__name__}")
        blobs = [(name, t.encoding.value, list(t.shape), np.ascontiguousarray(t.data))]
        if t.quantized:
            blobs.append((name + SCALE_SUFFIX, "f32", [len(t.scale)],
                          np.ascontiguousarray(t.scale, dtype="<f4")))
        for i, (bname, enc, shape, arr) in enumerate(blobs):
            raw = arr.view(np.uint8).reshape(-1)
            entry = {"name": bname, "encoding": enc, "shape": shape, "offset": offset,
                     "nbytes": int(raw.nbytes), "crc32": zlib.crc32(raw) & 0xFFFFFFFF}
            if i == 0 and t.quantized:
                entry["scale"] = name + SCALE_SUFFIX
            yield entry, raw
            offset = align(offset + raw.nbytes)


def encode_header(graph: dict, entries: list, metadata: dict) -> bytes:
    header = {"format": "edgenet", "version": VERSION, "graph": graph,
              "tensors": entries, "metadata": metadata}
    return json.dumps(header, separators=(",", ":"), allow_nan=False).encode("utf-8")


# Temporary files are named ``.edgenet-<host>-<pid>-<random>.tmp`` beside the destination:
# identifiable, and sweepable once their writer is gone. A writer killed by SIGKILL (or a
# power cut) cannot remove its own temporary; the next write into that directory from the
# same host removes temporaries whose process no longer exists. The destination itself is
# only ever replaced by a complete, fsynced file (os.replace is atomic on POSIX).
TMP_PREFIX = ".edgenet-"
TMP_SUFFIX = ".tmp"


def _host() -> str:
    h = "".join(c for c in socket.gethostname() if c.isalnum())[:32]
    return h or "host"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists (another user's) or unknown: keep its file
    return True


def stale_temporaries(directory: str) -> list:
    """Temporaries in ``directory`` left by dead edgenet writers on this host."""
    prefix = f"{TMP_PREFIX}{_host()}-"
    out = []
    try:
        names = os.listdir(directory)
    except OSError:
        return out
    for n in names:
        if not (n.startswith(prefix) and n.endswith(TMP_SUFFIX)):
            continue
        pid = n[len(prefix):].split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
            out.append(os.path.join(directory, n))
    return out


def sweep_stale_temporaries(directory: str) -> int:
    """Remove temporaries of dead writers (this host only). Returns how many were removed."""
    n = 0
    for p in stale_temporaries(directory):
        try:
            os.unlink(p)
            n += 1
        except OSError:
            pass
    return n


def umask() -> int:
    """The process's umask, read without changing it (``os.umask`` sets it: not
    thread-safe); 0o022 where /proc is absent. Files written through a temporary file get
    ``0o666 & ~umask()``, as ``open()`` would give them."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


def _fsync_dir(d: str):
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path, write_fn, by_path: bool = False) -> str:
    """Call ``write_fn(file_object)`` (``by_path``: ``write_fn(temporary_path)``) on a
    temporary file beside ``path``, fsync it and rename it over ``path``. On any exception
    (KeyboardInterrupt included) the temporary is removed and ``path`` is untouched. The
    file gets the usual 0666 & ~umask permissions (not mkstemp's 0600). Returns ``path``."""
    path = os.fspath(path)
    d = os.path.dirname(os.path.abspath(path))
    sweep_stale_temporaries(d)
    fd, tmp = tempfile.mkstemp(prefix=f"{TMP_PREFIX}{_host()}-{os.getpid()}-",
                               suffix=TMP_SUFFIX, dir=d)
    try:
        if by_path:
            os.close(fd)
            write_fn(tmp)
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        else:
            with os.fdopen(fd, "wb") as f:
                write_fn(f)
                f.flush()
                os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~umask())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(d)
    return path


def write_model(path, *, graph: dict, tensors: dict, metadata: dict | None = None) -> int:
    """Write a model file atomically. Returns the file size in bytes."""
    items = list(_layout(tensors))
    entries = [e for e, _ in items]
    header = encode_header(graph, entries, metadata or {})
    data_start = align(PREAMBLE.size + len(header))
    pre = PREAMBLE.pack(MAGIC, VERSION, 0, len(header), zlib.crc32(header) & 0xFFFFFFFF, 0)

    def write(f):
        f.write(pre)
        f.write(header)
        f.write(b"\0" * (data_start - PREAMBLE.size - len(header)))
        pos = 0
        for e, raw in items:
            f.write(b"\0" * (e["offset"] - pos))
            f.write(memoryview(raw))  # no extra copy of big tensors
            pos = e["offset"] + e["nbytes"]
        f.write(b"\0" * (align(pos) - pos))

    path = atomic_write(path, write)
    return os.path.getsize(path)


assert ALIGNMENT % 8 == 0
