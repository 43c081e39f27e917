"""Assembling a batch job's output from its journal: checks, then .npz or .parquet."""
from __future__ import annotations

import json
import os
import zipfile

import numpy as np

from ..errors import EdgenetError


def columns(job):
    """[(part array name, output column name)] in output order."""
    if job.top_k:
        return [("out.topk_index", "topk_index"), ("out.topk_score", "topk_score")]
    return [("out." + n, ("output_" + n if n in ("key", "topk_index", "topk_score",
                                              "topk_label") else n))
            for n in job.output_names]

def check_parts(job):
    """Scan the parts: every sample exactly once, consistent shapes. Returns the column
    dtypes/trailing shapes and the widest key."""
    expect, info, key_width = 0, {}, 1
    for i in range(len(job.chunks)):
        with np.load(job.part_path(i), allow_pickle=False) as z:
            idx = z["idx"]
            if len(idx) == 0 or idx[0] != expect or \
                    not np.array_equal(idx, np.arange(expect, expect + len(idx))):
                raise EdgenetError(f"{job.part_path(i)}: rows out of order (journal "
                                   f"corrupt; rerun with --fresh)")
            expect += len(idx)
            key_width = max(key_width, z["key"].dtype.itemsize // 4)
            for src, _ in columns(job):
                a = z[src]
                prev = info.setdefault(src, (a.dtype, a.shape[1:]))
                if prev != (a.dtype, a.shape[1:]):
                    raise EdgenetError(f"{job.part_path(i)}: '{src}' has shape "
                                       f"{a.shape[1:]}, other parts {prev[1]}")
    if expect != job.total:
        raise EdgenetError(f"{job.partial}: parts hold {expect} rows, job has {job.total}")
    return info, key_width

def label_array(labels, idx):
    """Labels for class indices ``idx`` ("" for an index past the label list)."""
    table = np.asarray([str(v) for v in labels] + [""], dtype=str)
    return table[np.where(idx < len(labels), idx, len(labels))]

def iter_parts(job, names):
    for i in range(len(job.chunks)):
        with np.load(job.part_path(i), allow_pickle=False) as z:
            yield {n: z[n] for n in names}

def write_npz(job, tmp, info, key_width):
    def column(f, dtype, tail, blocks):
        np.lib.format.write_array_header_2_0(f, {
            "descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
            "fortran_order": False, "shape": (job.total,) + tuple(tail)})
        for b in blocks:
            f.write(np.ascontiguousarray(b, dtype=dtype).tobytes())

    kdt = np.dtype(f"<U{key_width}")
    cols = [("key", kdt, (), lambda: (p["key"] for p in iter_parts(job, ["key"])))]
    for src, name in columns(job):
        dt, tail = info[src]
        cols.append((name, dt, tail,
                     (lambda s=src: (p[s] for p in iter_parts(job, [s])))))
    if job.top_k and job.labels:
        lw = max([len(str(v)) for v in job.labels] + [1])
        cols.append(("topk_label", np.dtype(f"<U{lw}"), info["out.topk_index"][1],
                     lambda: (label_array(job.labels, p["out.topk_index"])
                              for p in iter_parts(job, ["out.topk_index"]))))
    with open(tmp, "wb") as fh:
        with zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_STORED,
                             allowZip64=True) as zf:
            for name, dt, tail, blocks in cols:
                with zf.open(name + ".npy", "w", force_zip64=True) as f:
                    column(f, dt, tail, blocks())
        fh.flush()
        os.fsync(fh.fileno())

def write_parquet(job, tmp, info):
    import pyarrow as pa
    import pyarrow.parquet as pq
    names = [src for src, _ in columns(job)]
    shapes = {name: list(info[src][1]) for src, name in columns(job)}
    if job.top_k and job.labels:
        shapes["topk_label"] = [job.top_k]

    def fixed(a, typ):
        a = np.ascontiguousarray(a)
        width = int(np.prod(a.shape[1:], dtype=np.int64)) if a.ndim > 1 else 1
        flat = pa.array(a.reshape(-1), type=typ)
        return pa.FixedSizeListArray.from_arrays(flat, width)

    writer = None
    try:
        for p in iter_parts(job, ["key"] + names):
            cols = {"key": pa.array(p["key"].tolist(), type=pa.string())}
            for src, name in columns(job):
                a = p[src]
                typ = pa.from_numpy_dtype(a.dtype)
                cols[name] = fixed(a, typ)
            if job.top_k and job.labels:
                lab = label_array(job.labels, p["out.topk_index"])
                cols["topk_label"] = fixed(lab.astype(object), pa.string())
            table = pa.table(cols)
            if writer is None:
                meta = {b"edgenet.shapes": json.dumps(shapes).encode(),
                        b"edgenet.model_sha256": job.manifest["model_sha256"].encode()}
                schema = table.schema.with_metadata(meta)
                writer = pq.ParquetWriter(tmp, schema)
            writer.write_table(table.replace_schema_metadata(writer.schema.metadata))
    finally:
        if writer is not None:
            writer.close()
