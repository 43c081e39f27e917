"""Build the CPU kernels ahead of time: ``edgenet.cpu.warm.warmup()`` (``edgenet warmup``).

Kernels compile on first use and land in the disk cache (``edgenet._jit``). ``warmup``
builds them now instead:

- ``warmup()``: the whole menu for this CPU, once per machine: every tile kernel of the
  host's tier (``gen_simd_conv.menu``), then every op's kernels on the reference backend's
  one-node cases (``edgenet.reference.cases``), under both weight policies and with both
  the serial and the parallel variants of kernels that have two. After it, a model compiles
  nothing new (its first run only loads machine code from the cache).
- ``warmup(model)``: what one loaded model needs (``edgenet.load(path)``: it runs once on
  zeros at its declared input shape, batch 1).

``progress``: ``None`` draws a bar on stderr when stderr is a terminal, else prints one
line before (for one model: the compile notice of edgenet._jit); ``False`` is silent; a
callable gets ``(done, total, label)``.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time

import dataclasses

import numpy as np
import numba

from .. import _jit
from ..format.codecs import Packed
from . import _common, gen_simd_conv as gen, simd


def host_tier():
    """(f32 lanes or None, "vnni" or None) of this CPU (``EDGENET_SIMD`` honoured)."""
    return simd.lanes(simd.simd_mode()) or None, ("vnni" if simd.has_vnni() else None)


def tile_menu():
    """The tile kernels this CPU can use: ``[(kind, key), ...]`` (without VNNI: the tier's
    int8 families for ternary/quinary and for int8-level weights, qconv.family)."""
    from .qconv import family
    lanes, q = host_tier()
    out = gen.menu(lanes, q)
    if q is None:
        tier = simd.tier()
        for fam in dict.fromkeys((family(tier, 2), family(tier, 127))):
            out += gen.menu(None, None, fam)
    return out


def _tile_args(kind, key):
    """Arguments with the exact types of the runtime's calls (conv.simd_conv,
    conv.simd_dwconv, qconv.run), on a tiny problem."""
    f32, i64 = np.float32, np.int64
    nt = numba.config.NUMBA_NUM_THREADS
    z = lambda n: np.zeros(n, f32)  # noqa: E731
    toff = np.zeros(1, i64)
    act = (1, f32(0), f32(6))
    qo = (np.zeros(1, np.int32), np.zeros(6, i64), z(2))   # the int8 tiles' qw, qp, qf
    tb = lambda B, P: np.zeros((nt, gen.tile_buf_len(B, P)), f32)  # noqa: E731 (tile buffers)
    if kind == "conv":
        L, k, P, S = key
        B = L * k
        return (z(P * S + 1), 1, 1, P * S + 1, z(B), B, z(B), z(1), np.zeros(5, i64), toff,
                z(B * P), 1, B, 1, P, z(B * P), False) + act + (tb(B, P),)
    if kind == "dw":
        L, S = key
        return (z(4096), 1, 3 * S, 3 * S, 0, 0, 3 * S, 3 * S, z(1), z(1), toff, z(1), 1, 1, 1, 1,
                z(1), False) + act + (np.zeros((nt, 512), f32), np.zeros((nt, 4096), f32))
    if kind == "qtier":     # (xq, C4, Hp, Wp, wt, sc, bb, smax, ...): qconv.run's types
        fam, L, k, P, S = key
        B = L * k
        wt = np.zeros(4 * B, np.int16) if fam == "g" else np.zeros(B, np.int32)
        return (np.zeros(P * S + 1, np.int32), 1, 1, P * S + 1, wt, z(B), z(B), 1) + qo + (
                toff, z(B * P), 1, B, 1, P, z(B * P), False) + act + (tb(B, P),)
    k, P, S, tier = key
    B = 16 * k
    return (np.zeros(P * S + 1, np.int32), 1, 1, P * S + 1, np.zeros(B, np.int32), z(B),
            z(B)) + qo + (toff, z(B * P), 1, B, 1, P, z(B * P), False) + act + (tb(B, P),)


def build_tile(kind, key):
    """Compile (or load) one tile kernel by running it on a tiny problem."""
    gen.kernel(kind, key)(*_tile_args(kind, key))


def _read_only(v):
    """A constant as a model file gives it: read-only views (kernels that take weight arrays
    then compile the read-only signatures a loaded model calls, e.g. depthwise decode_rows)."""
    if isinstance(v, np.ndarray):
        r = v.view()
        r.flags.writeable = False
        return r
    if isinstance(v, Packed):
        return dataclasses.replace(v, data=_read_only(v.data),
                                   scale=None if v.scale is None else _read_only(v.scale))
    return v


def generic_jobs():
    """(label, fn) per reference case x policy: every op's kernels at the signatures the
    runtime uses (constants read-only, as a loaded model's are)."""
    from ..reference.cases import cases
    from . import OPS
    jobs = []
    for cid, node, inputs, consts in cases():
        impl = OPS.get(node["op"])
        if impl is None:
            continue
        consts = {k: _read_only(v) for k, v in consts.items()}
        for policy in ("packed", "expanded"):
            def job(node=node, inputs=inputs, consts=consts, policy=policy, impl=impl):
                from ..reference import run_node
                run_node(node, inputs, consts, backend=OPS, policy=policy)
            jobs.append((f"{node['op']} {cid}", job))
    return jobs


class _Bar:
    """Default progress: a bar on a terminal, two lines otherwise."""

    def __init__(self, what, stream=None):
        self.out = stream or sys.stderr
        self.what = what
        self.t0 = time.perf_counter()
        self.tty = getattr(self.out, "isatty", lambda: False)()
        self.started = False

    def __call__(self, done, total, label):
        el = time.perf_counter() - self.t0
        if not self.started:
            self.started = True
            if not self.tty:
                self.out.write(f"edgenet: building {self.what} ({total} steps)...\n")
        if self.tty:
            n = 30 * done // max(total, 1)
            self.out.write(f"\r\033[K[{'#' * n}{'.' * (30 - n)}] {done}/{total} {el:4.0f} s "
                           f"{label[:40]}")
            if done == total:
                self.out.write("\n")
        self.out.flush()


_HELPER = r"""
import sys
from edgenet.cpu import warm
warm.build_part(*eval(sys.argv[1]))
"""


def run_jobs(jobs, progress=None, done=0, total=0):
    """Run generic jobs ``[(label, fn)]`` with the serial and the parallel variants of
    kernels that have two (a small conv runs on one thread). Returns the new ``done``."""
    saved = _common.PAR_MIN, _common.CONV_PAR_MIN
    try:
        for label, job in jobs:
            if progress:
                progress(done, total, label)
            for par_min in (saved, (0, 0)):
                _common.PAR_MIN, _common.CONV_PAR_MIN = par_min
                job()
                done += 1
    finally:
        _common.PAR_MIN, _common.CONV_PAR_MIN = saved
    return done


def build_part(tiles, job_ids):
    """A helper process's share: tile kernels, then generic jobs (indices into
    ``generic_jobs()``, which lists the same cases in every process)."""
    for kind, key in tiles:
        build_tile(kind, key)
    jobs = generic_jobs()
    run_jobs([jobs[i] for i in job_ids])


# Compile seconds of each op's generic jobs (both policies, both variants; measured on a
# Zen 4 core, from an empty cache, tiles built first): the weights that balance the
# processes' shares. An op not listed weighs 0.5 s; a tile kernel ~0.8 s.
_JOB_SECONDS = {"Conv": 28, "Unary": 12, "ConvTranspose": 4, "LSTM": 5.5, "Add": 4.6,
                "Reduce": 3.3, "Resize": 3.0, "MatMul": 2.9, "Pad": 2.7, "MaxPool": 2.6,
                "Affine": 2.6, "PRelu": 1.5, "Gemm": 1.5, "BinaryMath": 1.4, "Act": 1.4,
                "Sub": 1.2}
_TILE_SECONDS = 0.8
_MAIN_EXTRA = 8.0     # the first process also builds the 1x1 pixel-vector kernels


def _split_jobs(jobs, parts):
    """Job indices per process, ops kept whole (the kernels of one op are compiled by one
    process, not twice), dealt heaviest first to the process with the least work (its
    tiles included)."""
    groups = {}
    for i, (label, _) in enumerate(jobs):
        groups.setdefault(label.split()[0], []).append(i)
    load = [_TILE_SECONDS * len(p) for p in parts]
    load[0] += _MAIN_EXTRA
    out = [[] for _ in parts]
    weight = {op: _JOB_SECONDS.get(op, 0.5) for op in groups}
    for op in sorted(groups, key=lambda o: -weight[o]):
        k = min(range(len(parts)), key=load.__getitem__)
        out[k] += groups[op]
        load[k] += weight[op]
    return [sorted(o) for o in out]


def _spawn_helpers(parts):
    """One process per ``(tiles, job indices)``, building them into this process's disk
    cache (Numba's cache saves are locked between processes: edgenet._jit)."""
    if not _jit.CACHE:
        return []
    pkg_parent = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, NUMBA_CACHE_DIR=_jit.CACHE_DIR, EDGENET_COMPILE_NOTICE="0",
               PYTHONPATH=pkg_parent + os.pathsep + os.environ.get("PYTHONPATH", ""))
    procs = []
    for part in parts:
        if part[0] or part[1]:
            try:
                procs.append((subprocess.Popen([sys.executable, "-c", _HELPER, repr(part)],
                                               env=env, stdout=subprocess.DEVNULL,
                                               stderr=subprocess.DEVNULL), part))
            except OSError:
                break
    return procs


def _split(tiles, n):
    """n lists of tiles; the tiles of one (B, P) stay together (they share a tile_store
    specialization: one process compiles it), groups dealt largest first to the lightest."""
    groups = {}
    for kind, key in tiles:
        groups.setdefault(gen.tile_shape(kind, key) if kind != "dw" else (kind, key),
                          []).append((kind, key))
    parts = [[] for _ in range(n)]
    for g in sorted(groups.values(), key=len, reverse=True):
        min(parts, key=len).extend(g)
    return parts


def warmup(model=None, *, progress=None, workers=None) -> dict:
    """Build every kernel of this CPU's menu (``model`` None) or what ``model`` (a loaded
    ``edgenet.Model``) needs.
    ``workers``: processes building tile kernels at once (default: one per core; the
    tiles are independent, and compiling one is single-threaded).
    Returns ``{"kernels": tile kernels built, "compiled": compilations done here,
    "seconds"}``; a second call (or a second process on the same cache) compiles nothing."""
    t0 = time.perf_counter()
    mon = _jit.monitor
    c0 = mon.compiled
    lanes, q = host_tier()
    quiet = mon.quiet
    if progress is None and model is None:
        progress = _Bar(f"kernels for this CPU ({simd.simd_mode()}, int8 {q})")
    elif progress is None:   # one model: the compile notice (edgenet._jit) says it all
        progress = False
    if progress is False:
        progress = None
    if progress is not None or model is None:
        mon.quiet = True
    try:
        if model is not None:
            if progress:
                progress(0, 1, "run once")
            model.warmup()
            if progress:
                progress(1, 1, "done")
            tiles = 0
        else:
            tiles_todo = tile_menu()
            n = max(1, min(workers or (os.cpu_count() or 1), 8))
            tparts = _split(tiles_todo, n)
            if n > 1 and tiles_todo:   # the shared drivers first: helpers load them
                firsts = {}
                for kd, key in tiles_todo:
                    if kd != "dw":
                        firsts.setdefault(gen.family(kd, key), (kd, key))
                for kd, key in firsts.values():
                    gen.kernel(kd, key)._bind()
            generic = generic_jobs()
            jparts = _split_jobs(generic, tparts)
            procs = _spawn_helpers(list(zip(tparts[1:], jparts[1:])))
            mine, my_jobs = list(tparts[0]), list(jparts[0])
            spawned = [part for _, part in procs]
            for part in zip(tparts[1:], jparts[1:]):     # parts no process took: here
                if part not in spawned:
                    mine += part[0]
                    my_jobs += part[1]
            total = len(tiles_todo) + 2 * len(generic)
            done = 0
            for kind, key in mine:
                if progress:
                    progress(done, total, f"{kind} {key}")
                build_tile(kind, key)
                done += 1
            done = run_jobs([generic[i] for i in my_jobs], progress, done, total)
            if lanes:            # the 1x1 pixel-vector f32 kernel (pw_f32), the
                from . import dw_cv, pw_f32, stem_f32   # channel-vector depthwise one
                pw_f32.warm(lanes)                       # (dw_cv), the stems' (stem_f32),
                stem_f32.warm(lanes)                     # Winograd 3x3 (wino_f32)
                from . import wino_f32
                wino_f32.warm(lanes)
                dw_cv.warm(lanes)
            from .qconv import warm_quantize   # int8 activations' quantize pass
            warm_quantize()
            from .pool import warm_pool_q      # MaxPool writing an int8 reader's input
            warm_pool_q()
            from .conv import warm_dequant     # int8 depthwise off dw_cv: uint8 -> float
            warm_dequant()
            from .conv import warm_padded      # the padded hand-off's border (link_padded)
            warm_padded()
            if q == "vnni":      # the 1x1 pixel-vector int8 kernels (qconv._pw_vnni_k*)
                from .qconv import warm_pointwise
                warm_pointwise()
                from . import amx  # the AMX conv, where the host has AMX-INT8
                amx.warm()
            elif simd.tier() == "avx2":   # its avx2 (pm, 8 lanes) twin (qconv._pw_pm8)
                from .qconv import warm_pointwise_pm8
                warm_pointwise_pm8()
            for p, (_, jobs) in procs:
                if progress:
                    progress(done, total, "waiting for helper processes")
                if p.wait() != 0:    # a helper failed: its jobs run here
                    done = run_jobs([generic[i] for i in jobs], progress, done, total)
                else:
                    done += 2 * len(jobs)
            for kind, key in tiles_todo:     # the helpers' tiles: loaded from the cache
                if (kind, key) not in mine:
                    if progress:
                        progress(done, total, f"{kind} {key}")
                    build_tile(kind, key)
                    done += 1
            if progress:
                progress(total, total, "done")
            tiles = len(tiles_todo)
    finally:
        mon.quiet = quiet
    return {"kernels": tiles, "compiled": mon.compiled - c0,
            "seconds": round(time.perf_counter() - t0, 2)}
