"""Loading a .edgenet file and running it: the executor.

A model is validated once at load (file, graph, weights), each node's weights are prepared
once by the backend (policy ``expanded`` or ``packed``), and a *plan* is built once per
input shape: shapes of every value, buffer reuse by liveness, every intermediate buffer
allocated once. Steady-state inference allocates only the returned outputs.
"""
from __future__ import annotations

import math
import os
import threading
import time
from typing import NamedTuple

import numpy as np

from . import ir
from ._jit import thread_calls as _thread_calls
from .errors import DeviceError, EdgenetError, InputError, ModelError, UsageError
from .format import ModelFile
from .ops import ACT, SPEC

_F32 = np.dtype(np.float32)
MAX_PLAN_BYTES = int(os.environ.get("EDGENET_MAX_PLAN_BYTES", 8 << 30))
# Adaptive threading (docs/PERFORMANCE.md, "Threads on a busy machine"): with threads > 1, a
# plan times whole runs with its nodes' own thread counts and with one thread for every node,
# and keeps the faster (re-measuring the other every PROBE_EVERY runs and PROBE_S seconds).
# EDGENET_ADAPTIVE_THREADS=0
# turns it off.
ADAPTIVE_THREADS = os.environ.get("EDGENET_ADAPTIVE_THREADS", "1") != "0"
# Bound steps (edgenet/cpu/_common.py, "bound steps"): after a plan's first run on a thread,
# each op that can returns the exact calls it makes for the plan's arrays, and later runs
# make just those (no per-call shapes, tile choices or Numba type dispatch: µs per node).
# EDGENET_BIND=0 turns it off (every run through the ops' run()).
BIND = os.environ.get("EDGENET_BIND", "1") != "0"
# Staged I/O: a graph input or output of at most STAGE_MAX floats gets a buffer of the plan's
# own (inputs copied in before the run, outputs copied out after it), so the steps that read
# or write it bind like the others instead of running through their ops' run() each call
# (the first and last steps of a small model: ResNet-20's 3x32x32 stem and its 10-way Gemm).
# Larger tensors keep the caller's arrays (a copy would cost more than it saves).
STAGE_MAX = 1 << 14
_get_ident = threading.get_ident
PROBE_EVERY = 50
# ... and at most every PROBE_S seconds: the load on a shared machine changes over seconds,
# and each probe block runs the slower choice (one thread: about twice the time) and then
# wakes the workers again. Every 50 runs alone, the probes cost the runs' median 1.5-6 %
# against the same plan never probing (in-process A/B, Zen 5, 2 threads, ResNet-20 int8
# 0.15 ms a run: a probe every 8 ms), nineteenth session: docs/PERFORMANCE.md.
PROBE_S = 1.0
# Adaptive threads' evidence: the plan's first ADAPTIVE_SKIP runs are not timed (kernel
# loading, binding); each choice runs ADAPTIVE_BLOCK times in a row, the first run after a
# switch untimed (it wakes the workers: on a box with both cores busy, a threaded run right
# after one-thread runs took 55 ms, the ones after it 1.3, one thread 2.2); each choice is
# timed ADAPTIVE_SAMPLES times before one wins, and one thread replaces the plan's own
# thread counts only when its median is below ONE_MARGIN x theirs. Without these, a caller
# that does other work between inferences (a benchmark interleaving engines, an application
# between frames) made the cold first call after each pause land on the threaded choice,
# and the plan ran on one thread for the next 50+ runs (MobileNetV3-small int8 1.17-1.25 ms
# instead of 0.78-0.84), and a loaded box ran MobileNetV2 int8 at 2.2 ms instead of 1.3.
ADAPTIVE_SKIP = 2
ADAPTIVE_BLOCK = 3
ADAPTIVE_SAMPLES = 4
ONE_MARGIN = 0.85
_FORKED_AFTER_PARALLEL = False


def _after_fork_in_child():
    """numba's OpenMP layer terminates a child forked after parallel kernels ran: mark it,
    so the CPU backend raises a clear error there instead (docs/RELIABILITY.md)."""
    global _FORKED_AFTER_PARALLEL
    try:
        from numba.np.ufunc import parallel as _par
        if _par._is_initialized and _par.threading_layer() != "workqueue":
            _FORKED_AFTER_PARALLEL = True
    except Exception:
        _FORKED_AFTER_PARALLEL = True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)

POLICIES = ("expanded", "packed")
DEFAULT_POLICY = "packed"  # docs/PERFORMANCE.md: 15x less weight memory, ~8% slower than "expanded"
DEVICES = ("cpu", "reference", "cuda")


class IOSpec(NamedTuple):
    name: str
    shape: tuple  # None for the dynamic batch dimension
    dtype: str


def _backend(device: str):
    if device == "cpu":
        from . import cpu
        return cpu
    if device == "reference":
        from . import reference
        return reference
    if device == "cuda":
        try:
            from . import cuda
        except ImportError as e:  # pragma: no cover - depends on the install
            raise DeviceError(f"device 'cuda' is not available: {e}") from None
        cuda.ensure_available()
        return cuda
    raise DeviceError(f"unknown device {device!r} (choose from {', '.join(DEVICES)})")




_VIEW_OPS = frozenset({"Reshape", "Flatten"})


class _View:
    """The step of a Reshape / Flatten whose output is a view of its input (_Plan)."""

    @staticmethod
    def run(node, state, inputs, outputs):
        pass


_VIEW = _View()


class _Plan:
    """Shapes and buffers for one set of concrete input shapes."""

    def __init__(self, model: "Model", in_shapes: dict):
        self.lock = threading.Lock()
        g = model.graph
        self.shapes = shapes = model.infer_shapes(in_shapes)
        need = 4 * sum(math.prod(s) for s in shapes.values())
        if need > MAX_PLAN_BYTES:
            raise ModelError(f"{model.path}: activations for inputs {in_shapes} need "
                             f"{need:,} bytes > EDGENET_MAX_PLAN_BYTES={MAX_PLAN_BYTES:,}")
        # liveness: index of the last node reading each value; graph outputs live forever
        last = {}
        for i, node in enumerate(g["nodes"]):
            for n in node["inputs"]:
                last[n] = i
        keep = set(model._output_names)
        feeds = {v["name"] for v in g["inputs"]}
        # staged I/O (STAGE_MAX): plan-owned buffers for small graph inputs / outputs
        small = {n for n in feeds | keep if n in shapes and math.prod(shapes[n]) <= STAGE_MAX}
        self.stage_in = {n: np.empty(shapes[n], np.float32) for n in sorted(feeds & small)
                         if n not in keep}
        self.stage_out = {n: np.empty(shapes[n], np.float32) for n in sorted(keep & small)
                          if n not in feeds}
        feeds = feeds - set(self.stage_in)
        keep = keep - set(self.stage_out)
        # Reshape / Flatten of an intermediate into an intermediate: the output is a view of
        # the input's buffer (no copy, the node does not run); the buffer then lives until
        # the view's last reader (the reverse walk carries that through chains of views)
        alias = {}
        for i, node in enumerate(g["nodes"]):
            if node["op"] in _VIEW_OPS and len(node["outputs"]) == 1:
                src, dst = node["inputs"][0], node["outputs"][0]
                if src not in feeds and src not in keep and src not in model.consts \
                        and dst not in keep and dst not in self.stage_out \
                        and math.prod(shapes[src]) == math.prod(shapes[dst]):
                    alias[dst] = (i, src)
        for dst, (i, src) in reversed(alias.items()):
            last[src] = max(last.get(src, i), last.get(dst, i))
        pool: list = []          # free flat buffers
        self.buffers = {**self.stage_in, **self.stage_out}   # value name -> ndarray view
        self.nbytes = sum(a.nbytes for a in self.buffers.values())
        live = []                # (last_use, name, flat)
        for i, node in enumerate(g["nodes"]):
            for n in node["outputs"]:
                size = int(np.prod(shapes[n], dtype=np.int64))
                if n in keep:    # a fresh array per call (run: returned without a copy)
                    self.buffers[n] = None
                    continue
                if n in self.stage_out:
                    continue
                if n in alias:
                    self.buffers[n] = self.buffers[alias[n][1]].reshape(shapes[n])
                    continue
                fit = [j for j, b in enumerate(pool) if b.size >= size]
                if fit:
                    flat = pool.pop(min(fit, key=lambda j: pool[j].size))
                else:
                    flat = np.empty(max(size, 1), dtype=np.float32)
                    self.nbytes += flat.nbytes
                live.append((last.get(n, i), n, flat))
                self.buffers[n] = flat[:size].reshape(shapes[n])
            # values whose last reader is node i are free for the nodes after it
            still = []
            for lu, n, flat in live:
                (pool.append(flat) if lu <= i else still.append((lu, n, flat)))
            live = still
        self.out_shapes = [(n, shapes[n]) for n in model._output_names
                           if n not in self.stage_out]
        # steps: (impl, node, state, ins, outs, dyn_in, dyn_out, serial). ins/outs are the
        # lists the kernel gets (None: absent or a stored constant); dyn_in/dyn_out name the
        # positions that change per call (graph inputs, graph outputs), filled by _execute
        self.steps = []
        # serial: node i would run on one thread anyway (the CPU backend's rule): runs of
        # such nodes share one one-thread region (_execute)
        serial_step = getattr(model.backend, "serial_step", None)
        self.serial = []
        for node, state in zip(g["nodes"], model._states):
            impl = model._impls[node["op"]]
            if node["outputs"][0] in alias:
                impl = _VIEW
            ins_names = [None if (n == "" or n in model.consts) else n for n in node["inputs"]]
            ins = [None if n is None or n in feeds or n in keep else self.buffers[n]
                   for n in ins_names]
            dyn_in = tuple((j, n) for j, n in enumerate(ins_names)
                           if n is not None and (n in feeds or n in keep))
            outs = [self.buffers[n] for n in node["outputs"]]
            dyn_out = tuple((j, n) for j, n in enumerate(node["outputs"]) if n in keep)
            serial = impl is _VIEW or bool(serial_step) and bool(serial_step(
                node, state, [None if n is None else shapes[n] for n in ins_names],
                [shapes[n] for n in node["outputs"]]))
            self.serial.append(serial)
            self.steps.append((impl, node, state, ins, outs, dyn_in, dyn_out, serial))
        self.any_parallel = not all(self.serial)
        # Python thread id -> (backend's bind generation, per step: its bound call or None)
        self.bound = {}
        self.times = ([], [])    # wall seconds of recent runs: [0] nodes' own threads, [1] one
        self.one = False         # run every node on one thread (the faster so far)
        self.runs = 0
        self.last, self.streak = None, 0   # the last timed choice, its runs in a row
        self.probe_run, self.probe_t, self.probe_left = PROBE_EVERY, 0.0, 0   # next probe

    def pick_one(self) -> bool:
        """Run this call on one thread? After ADAPTIVE_SKIP untimed runs, both choices run
        in blocks of ADAPTIVE_BLOCK (alternating) until each has ADAPTIVE_SAMPLES timed
        runs; then one thread wins only when its median is below ONE_MARGIN x the other's;
        every PROBE_EVERY runs and PROBE_S seconds (both) a block of the other choice is
        timed again (the load on a shared machine changes)."""
        self.runs += 1
        if self.runs <= ADAPTIVE_SKIP:
            return False
        a, b = self.times
        if len(a) < ADAPTIVE_SAMPLES or len(b) < ADAPTIVE_SAMPLES:
            if self.last is None:
                return False
            return self.last if self.streak < ADAPTIVE_BLOCK else not self.last
        if self.probe_left:
            self.probe_left -= 1
            return not self.one
        if self.runs >= self.probe_run:
            now = time.perf_counter()
            if now >= self.probe_t:
                self.probe_run = self.runs + PROBE_EVERY
                self.probe_t = now + PROBE_S
                self.probe_left = ADAPTIVE_BLOCK - 1
                return not self.one
        return self.one

    def record(self, one: bool, dt: float):
        if self.runs <= ADAPTIVE_SKIP:
            return
        if one == self.last:
            self.streak += 1
        else:
            self.last, self.streak = one, 1
            return            # the first run after a switch: not timed
        t = self.times[one]
        t.append(dt)
        del t[:-ADAPTIVE_SAMPLES]
        a, b = self.times
        if len(a) >= ADAPTIVE_SAMPLES and len(b) >= ADAPTIVE_SAMPLES:
            self.one = sorted(b)[len(b) // 2] < ONE_MARGIN * sorted(a)[len(a) // 2]


class Model:
    """A loaded .edgenet model. Call ``model(x)`` or ``model.run({"name": x})``."""

    def __init__(self, path, *, device: str = "cpu", threads: int | None = None,
                 policy: str | None = None, verify: bool = True,
                 activations: str | None = None, act_ranges: dict | None = None):
        self.path = os.fspath(path)
        self.device = device
        self.policy = policy or os.environ.get("EDGENET_WEIGHTS_POLICY") or DEFAULT_POLICY
        if self.policy not in POLICIES:
            raise UsageError(f"unknown weights policy {self.policy!r} "
                               f"(choose from {', '.join(POLICIES)})")
        self.file = ModelFile(self.path, verify=verify)
        self.graph = self.file.graph
        self.metadata = self.file.metadata
        self.consts = self.file.weights()
        self._check_graph()
        self.backend = _backend(device)
        # the backend's scratch generation, where it binds steps (the CPU backend)
        self._bind_gen = getattr(self.backend, "bind_generation", None)
        self._impls = {}
        for node in self.graph["nodes"]:
            impl = self.backend.OPS.get(node["op"])
            if impl is None:
                raise ModelError(f"{self.path}: node '{node.get('name', '')}': op "
                                 f"'{node['op']}' is not implemented on device '{device}'")
            self._impls[node["op"]] = impl
        self.threads = self._check_threads(threads)
        # validate every node against the stored shapes (batch 1) before any kernel runs;
        # symbolic dims past the batch (height, width...) are validated per plan instead
        shapes1 = None
        if not any(d is None for s in self.inputs for d in s.shape[1:]):
            shapes1 = self.infer_shapes({s.name: tuple(1 if d is None else d for d in s.shape)
                                         for s in self.inputs})
        self.activations, self.int8_convs = self._activation_mode(activations, act_ranges,
                                                                  shapes1)
        self._plans: dict = {}
        self._plans_lock = threading.Lock()
        self._seen = set()   # (input name, shape) pairs _coerce accepted
        self._states = [self._impls[n["op"]].prepare(n, self.consts, self.policy)
                        for n in self.graph["nodes"]]
        link = getattr(self.backend, "link_states", None)   # cross-node layouts (CPU)
        if link is not None:
            link(self.graph["nodes"], self._states, self._output_names)

    def _activation_mode(self, activations, act_ranges, shapes):
        """f32, int8 (eligible Convs get ``_aq`` = (scale, zero point) in their node:
        edgenet/quant.py) or auto (only the convs whose int8 kernel is estimated faster on
        this CPU tier). Default: auto if the file is calibrated, else f32;
        EDGENET_ACTIVATIONS overrides the default. CUDA runs f32 unless int8 is asked for
        explicitly (then it is an error)."""
        from . import quant
        self.int8_choices = []   # auto: one dict per eligible conv (quant.annotate)
        explicit = activations is not None
        mode = activations or os.environ.get("EDGENET_ACTIVATIONS") or None
        ranges = act_ranges
        if ranges is None and mode != "f32":   # f32 asked for: the file's ranges are not read
            try:
                ranges = quant.ranges_from_metadata(self.metadata)
            except EdgenetError as e:
                raise ModelError(f"{self.path}: {e}") from None
        if mode is None:
            mode = "auto" if ranges else "f32"
            if self.device == "cuda":
                mode = "f32"
        if mode not in quant.MODES:
            raise UsageError(f"unknown activation precision {mode!r} "
                               f"(choose from {', '.join(quant.MODES)})")
        if mode == "f32" or (mode == "auto" and self.device == "cuda"):
            return "f32", 0
        if self.device == "cuda":
            raise DeviceError("int8 activations run on device 'cpu' (and 'reference'); "
                              "device 'cuda' runs f32 activations")
        if shapes is None:
            raise ModelError(f"{self.path}: int8 activations need fixed input dims (past the "
                             f"batch); convert with --input-shape")
        if not ranges:
            raise ModelError(f"{self.path}: activations 'int8' need calibrated ranges: convert "
                             f"with --activations int8 --calibrate SAMPLES.npy, or pass "
                             f"act_ranges=edgenet.quant.calibrate(...)"
                             + ("" if explicit else " (EDGENET_ACTIVATIONS=int8 is set)"))
        try:
            nodes, count = quant.annotate(self.graph["nodes"], self.consts, ranges, shapes,
                                          auto=mode == "auto", choices=self.int8_choices)
        except EdgenetError as e:   # e.g. a NaN or inverted range in the file's metadata
            raise ModelError(f"{self.path}: activation ranges: {e}") from None
        if self.device == "cpu":
            quant.mark_quantized_producers(nodes, self.consts, self._output_names)
        self.graph = dict(self.graph)
        self.graph["nodes"] = nodes
        return mode, count

    # -- description -------------------------------------------------------------------
    @property
    def inputs(self) -> list:
        return [IOSpec(v["name"], tuple(v["shape"]), v.get("dtype", "float32"))
                for v in self.graph["inputs"]]

    @property
    def outputs(self) -> list:
        return [IOSpec(v["name"], tuple(v["shape"]), v.get("dtype", "float32"))
                for v in self.graph["outputs"]]

    @property
    def _output_names(self):
        return [v["name"] for v in self.graph["outputs"]]

    def __repr__(self):
        ins = ", ".join(f"{s.name}{list(s.shape)}" for s in self.inputs)
        return f"<edgenet.Model {os.path.basename(self.path)} device={self.device} inputs={ins}>"

    # -- validation --------------------------------------------------------------------
    def _fail(self, msg):
        raise ModelError(f"{self.path}: {msg}")

    def _check_graph(self):
        g = self.graph
        defined = set()
        for v in g["inputs"]:
            if v["name"] in defined or v["name"] in self.consts:
                self._fail(f"graph input '{v['name']}' defined twice")
            defined.add(v["name"])
        if not g["inputs"] or not g["outputs"]:
            self._fail("graph has no inputs or no outputs")
        for node in g["nodes"]:
            name = node.get("name", "")
            if node["op"] not in ir.OPS:
                self._fail(f"node '{name}': unknown op '{node['op']}'")
            const_pos = ir.CONST_INPUTS[node["op"]]
            const_ok = ir.CONST_OK_INPUTS[node["op"]]
            for pos, n in enumerate(node["inputs"]):
                if n == "":
                    continue
                if pos in const_pos and n not in self.consts:
                    self._fail(f"node '{name}': input {pos} ('{n}') must be a stored tensor")
                if pos not in const_ok and n in self.consts and \
                        SPEC[node["op"]].input_at(pos).kind == ACT:   # variadic: last record
                    self._fail(f"node '{name}': input {pos} ('{n}') must be an activation, "
                               f"not a stored tensor")
                if n not in defined and n not in self.consts:
                    self._fail(f"node '{name}': input '{n}' is not defined before use")
            for n in node["outputs"]:
                if n in defined or n in self.consts:
                    self._fail(f"node '{name}': output '{n}' is defined twice")
                defined.add(n)
        for v in g["outputs"]:
            if v["name"] not in defined:
                self._fail(f"graph output '{v['name']}' is never produced")
            if v["name"] in {i["name"] for i in g["inputs"]}:
                self._fail(f"graph output '{v['name']}' is a graph input")

    def _infer(self, node, in_shapes):
        try:
            return ir.infer_shapes(node, in_shapes, self.consts)
        except EdgenetError as e:
            raise ModelError(f"{self.path}: {e}") from None
        except Exception as e:  # a malformed attribute the validator did not foresee
            raise ModelError(f"{self.path}: node '{node.get('name', '')}' ({node['op']}): "
                             f"invalid attributes: {type(e).__name__}: {e}") from None

    @staticmethod
    def _check_threads(threads):
        if threads is None:
            return None
        import numba
        if not isinstance(threads, int) or threads < 1:
            raise UsageError(f"threads must be a positive integer, got {threads!r}")
        return min(threads, numba.config.NUMBA_NUM_THREADS)

    def _coerce(self, spec: IOSpec, x):
        if x.__class__ is np.ndarray and x.dtype is _F32 and x.flags.c_contiguous \
                and (spec.name, x.shape) in self._seen:    # the common case, ~0.3 µs
            return x
        if not isinstance(x, np.ndarray):
            raise InputError(f"input '{spec.name}': expected a numpy array, got {type(x).__name__}")
        if x.dtype != np.float32:
            raise InputError(f"input '{spec.name}': expected dtype float32, received {x.dtype} "
                             f"(convert with x.astype(np.float32))")
        exp = spec.shape
        if x.ndim != len(exp) or any(e is not None and e != d for e, d in zip(exp, x.shape)) \
                or any(d == 0 for d in x.shape):
            want = "(" + ", ".join("N" if e is None else str(e) for e in exp) + ")"
            raise InputError(f"input '{spec.name}': expected shape {want}, received "
                             f"{tuple(x.shape)}")
        if len(self._seen) < 64:
            self._seen.add((spec.name, x.shape))
        return np.ascontiguousarray(x)

    # -- execution ---------------------------------------------------------------------
    def infer_shapes(self, in_shapes: dict) -> dict:
        """Shapes of every value for the given input shapes (validates every node)."""
        shapes = dict(in_shapes)
        for node in self.graph["nodes"]:
            ins = [None if (n == "" or n in self.consts) else shapes[n] for n in node["inputs"]]
            for name, s in zip(node["outputs"], self._infer(node, ins)):
                shapes[name] = tuple(int(d) for d in s)
        return shapes

    def _get_plan(self, key: tuple, arrays: dict) -> _Plan:
        # list.pop / append are atomic under the GIL: the lock only guards new keys (and
        # memory()'s walk over the dict)
        pool = self._plans.get(key)
        if pool:
            try:
                return pool.pop()
            except IndexError:    # another thread took the last one
                pass
        return _Plan(self, {n: a.shape for n, a in arrays.items()})

    def _release(self, key, plan):
        pool = self._plans.get(key)
        if pool is None:
            with self._plans_lock:
                pool = self._plans.setdefault(key, [])
        pool.append(plan)

    def run(self, feeds: dict, outputs=None, profile: dict | None = None,
            observe=None) -> dict:
        """Run the model. ``feeds`` maps input names to float32 arrays; returns a dict of
        output arrays (fresh arrays: a later call never overwrites them). ``profile``, if
        given, accumulates seconds per node. ``observe(name, array)``, if given, sees every
        graph input and every node output while it is live (calibration); CPU and reference
        devices only."""
        if not isinstance(feeds, dict):
            raise InputError("run() takes a dict {input name: array}")
        io = self.__dict__.get("_io")
        if io is None:   # graph inputs/outputs never change after load
            io = self._io = ({s.name: s for s in self.inputs}, self._output_names)
        specs, names = io
        if feeds.keys() != specs.keys():
            unknown = set(feeds) - set(specs)
            if unknown:
                raise InputError(f"unknown input(s) {sorted(unknown)}; model inputs: "
                                 f"{sorted(specs)}")
            raise InputError(f"missing input(s) {sorted(set(specs) - set(feeds))}")
        arrays = {n: self._coerce(specs[n], x) for n, x in feeds.items()}
        if len(arrays) > 1:
            batch = {a.shape[0] for n, a in arrays.items() if specs[n].shape[0] is None}
            if len(batch) > 1:
                raise InputError(f"inputs disagree on the batch size: {sorted(batch)}")
        if outputs is None:
            wanted = names
        else:
            wanted = list(outputs)
            for n in wanted:
                if n not in names:
                    raise InputError(f"unknown output '{n}'; model outputs: {names}")
        if observe is not None and self.device == "cuda":
            raise DeviceError("run(observe=...) is for devices 'cpu' and 'reference'")
        if self.device == "cuda":  # activations stay on the GPU: one upload, one download
            return self.backend.run_graph(self, arrays, wanted, profile)
        key = tuple(sorted((n, a.shape) for n, a in arrays.items())) if len(arrays) > 1 \
            else tuple((n, a.shape) for n, a in arrays.items())
        plan = self._get_plan(key, arrays)
        try:
            # graph outputs: fresh arrays the nodes write into, returned without a copy;
            # staged ones (small: STAGE_MAX) copied out of the plan's buffers
            res = {n: np.empty(s, np.float32) for n, s in plan.out_shapes}
            for n, buf in plan.stage_in.items():
                np.copyto(buf, arrays[n])
            self._execute(plan, arrays, res, profile, observe)
            if plan.stage_out:   # (in the graph's output order)
                res = {n: res[n] if n in res else plan.stage_out[n].copy() for n in names}
            return res if outputs is None and len(res) == len(wanted) else \
                {n: res[n] for n in wanted}
        finally:
            self._release(key, plan)

    def _execute(self, plan: _Plan, arrays: dict, res: dict, profile, observe=None):
        if _FORKED_AFTER_PARALLEL and self.device == "cpu":
            raise DeviceError(
                "device 'cpu' cannot run in a process forked after parallel kernels ran "
                "(numba's OpenMP layer would terminate it): start workers with "
                "multiprocessing 'spawn' or 'forkserver', or load with device='reference'")
        nt = cur = 1
        if self.device == "cpu":
            get_nt, set_nt = _thread_calls()
            nt = cur = get_nt()
            if self.threads is not None and nt != self.threads:
                set_nt(self.threads)
                nt = cur = self.threads
        adaptive = (nt > 1 and ADAPTIVE_THREADS and plan.any_parallel and profile is None
                    and observe is None)
        one = adaptive and plan.pick_one()
        t0 = time.perf_counter() if adaptive else 0.0
        env = arrays if not res else {**arrays, **res}
        nchw = getattr(self.backend, "set_nchw_only", None) if observe is not None else None
        if observe is not None:
            for n, a in arrays.items():
                observe(n, a)
            if nchw is not None:     # every intermediate in its NCHW buffer, observed
                nchw(True)
        gen_of = self._bind_gen if BIND else None
        bound = rebind = None
        if gen_of is not None and observe is None:   # (a profile times the bound calls)
            tid = _get_ident()
            b = plan.bound.get(tid)
            if b is not None and b[0] == gen_of():
                bound = b[1]
            rebind = bound is None and (b is None or b[0] is not _BIND_FAILED)
        try:
            for i, (impl, node, state, ins, outs, dyn_in, dyn_out, serial) in \
                    enumerate(plan.steps):
                if nt > 1:
                    want = 1 if serial or one else nt
                    if cur != want:
                        set_nt(want)
                        cur = want
                if bound is not None:
                    f = bound[i]
                    if f is not None:
                        if profile is None:
                            f()
                        else:
                            t1 = time.perf_counter()
                            f()
                            _profiled(profile, node, t1)
                        continue
                if dyn_in:
                    ins = list(ins)
                    for j, n in dyn_in:
                        ins[j] = env[n]
                if dyn_out:
                    outs = list(outs)
                    for j, n in dyn_out:
                        outs[j] = env[n]
                if profile is None:
                    impl.run(node, state, ins, outs)
                else:
                    t1 = time.perf_counter()
                    impl.run(node, state, ins, outs)
                    _profiled(profile, node, t1)
                if observe is not None:
                    for n, o in zip(node["outputs"], outs):
                        observe(n, o)
        finally:
            if cur != nt:
                set_nt(nt)
            if nchw is not None:
                nchw(False)
        if adaptive:
            plan.record(one, time.perf_counter() - t0)
        if rebind:
            try:
                plan.bound[tid] = _bind_steps(plan, gen_of)
            except Exception:   # never in the way of results: this thread runs unbound
                plan.bound[tid] = (_BIND_FAILED, None)

    def __call__(self, x):
        """Run a one-input model on ``x``; returns the (first) output array."""
        ins = self.graph["inputs"]
        if len(ins) != 1:
            raise InputError(f"model has {len(ins)} inputs: use model.run({{...}})")
        return self.run({ins[0]["name"]: x})[self.graph["outputs"][0]["name"]]

    def warmup(self, batch: int = 1):
        """Compile (or load from cache) every kernel the model needs by running it once."""
        feeds = {s.name: np.zeros(tuple(batch if d is None else d for d in s.shape), np.float32)
                 for s in self.inputs}
        self.run(feeds)
        return self

    def memory(self) -> dict:
        """Bytes held: prepared weights (backend states) and planned activation buffers."""
        w = sum(_state_nbytes(s) for s in self._states)
        with self._plans_lock:
            act = sum(p.nbytes for pool in self._plans.values() for p in pool)
        return {"weights": w, "activations": act, "file": self.file.size}


_BIND_FAILED = object()


def _profiled(profile, node, t1):
    """Add the time since t1 to the node's entry of a profile (name or first output, op)."""
    k = (node.get("name") or node["outputs"][0], node["op"])
    profile[k] = profile.get(k, 0.0) + time.perf_counter() - t1


def _bind_steps(plan: _Plan, gen_of):
    """(generation, bound calls) for this thread, after a complete run of the plan on it
    (every kernel compiled, every scratch vector grown): steps whose arrays change per call
    (graph inputs and outputs) and ops without ``bind`` stay None."""
    calls = []
    for impl, node, state, ins, outs, dyn_in, dyn_out, serial in plan.steps:
        bind = getattr(impl, "bind", None)
        calls.append(None if bind is None or dyn_in or dyn_out
                     else bind(node, state, ins, outs))
    return gen_of(), calls


def _state_nbytes(state) -> int:
    if hasattr(state, "device_nbytes"):
        return int(state.device_nbytes)
    if isinstance(state, np.ndarray):
        return 0 if isinstance(state, np.memmap) or _is_file_view(state) else state.nbytes
    if isinstance(state, (list, tuple)):
        return sum(_state_nbytes(s) for s in state)
    if isinstance(state, dict):
        return sum(_state_nbytes(s) for s in state.values())
    if hasattr(state, "__dict__"):
        return sum(_state_nbytes(s) for s in vars(state).values())
    return 0


def _is_file_view(a: np.ndarray) -> bool:
    base = a
    while isinstance(base, np.ndarray) and base.base is not None:
        if isinstance(base.base, np.memmap):
            return True
        base = base.base
    return isinstance(base, np.memmap)


def load(path, *, device: str = "cpu", threads: int | None = None, policy: str | None = None,
         warmup: bool = False, verify: bool = True, activations: str | None = None,
         act_ranges: dict | None = None) -> Model:
    """Load a .edgenet model.

    device: "cpu" (Numba, parallel), "reference" (plain NumPy, the oracle) or "cuda".
    threads: threads for parallel kernels (default: all cores).
    policy: "packed" (the default: weights stay bit-packed, decoded a layer at a time;
    smallest memory) or "expanded" (weights decoded once at load; ~8% faster).
    warmup: compile/load every kernel now instead of on the first call.
    activations: "f32", "int8" (uint8 activations x int8 weights in eligible convs, from
    calibrated ranges: the file's, written by ``edgenet convert --activations int8
    --calibrate``, or ``act_ranges`` from ``edgenet.quant.calibrate``) or "auto" (int8 only
    where this CPU's int8 kernel is faster: ``model.int8_choices``). Default: auto when the
    file is calibrated, else f32.
    """
    m = Model(path, device=device, threads=threads, policy=policy, verify=verify,
              activations=activations, act_ranges=act_ranges)
    if warmup:
        m.warmup()
    return m
