"""Device-resident execution of a whole graph: one upload and one download per inference.

``run_graph(model, arrays, wanted)`` is what ``edgenet.runtime.Model.run`` calls for
device="cuda" (docs/CUDA.md, "Runtime hook"). Per model: one ``DeviceExecutor`` holding one
CUDA stream; per distinct set of input shapes: one ``DevicePlan`` whose device buffers are
allocated once (same liveness-based reuse as the host planner: a buffer is recycled after
the last node reading its value), plus pinned host staging buffers for the inputs and the
outputs. A run copies the inputs host->device, enqueues every node's kernels on the stream
(``OpImpl.launch`` on device views, no synchronization between nodes), copies the outputs
device->host and synchronizes once.
"""
from __future__ import annotations

import threading

import numpy as np
from numba import cuda

from ._common import prod


def _pinned(shape):
    try:
        return cuda.pinned_array(shape, dtype=np.float32)
    except Exception:  # pragma: no cover - no pinned memory (e.g. some simulators)
        return np.empty(shape, np.float32)


class DevicePlan:
    """Shapes, device buffers and launch steps for one set of concrete input shapes."""

    def __init__(self, model, in_shapes: dict, stream):
        g = model.graph
        self.shapes = shapes = model.infer_shapes(in_shapes)
        outputs = [v["name"] for v in g["outputs"]]
        last = {}
        for i, node in enumerate(g["nodes"]):
            for n in node["inputs"]:
                last[n] = i
        keep = set(outputs)
        self.nbytes = 0
        self.bufs = {}
        self.stage_in = {}
        for name, s in in_shapes.items():
            self.bufs[name] = self._alloc(prod(s), stream)
            self.stage_in[name] = _pinned(tuple(s))
        pool, live = [], []
        for i, node in enumerate(g["nodes"]):
            for n in node["outputs"]:
                size = prod(shapes[n])
                if n in keep:
                    flat = self._alloc(size, stream)
                else:
                    fit = [b for b in pool if b.size >= size]
                    if fit:
                        flat = min(fit, key=lambda b: b.size)
                        pool.remove(flat)
                    else:
                        flat = self._alloc(size, stream)
                    live.append((last.get(n, i), n, flat))
                self.bufs[n] = flat[:max(size, 1)]
            still = []
            for lu, n, flat in live:
                (pool.append(flat) if lu <= i else still.append((lu, n, flat)))
            live = still
        self.stage_out = {n: _pinned(tuple(shapes[n])) for n in outputs}
        self.steps = []
        for node, state in zip(g["nodes"], model._states):
            impl = model._impls[node["op"]]
            ins, ishapes = [], []
            for n in node["inputs"]:
                if n == "" or n in model.consts:
                    ins.append(None)
                    ishapes.append(None)
                else:
                    ins.append(self.bufs[n])
                    ishapes.append(tuple(shapes[n]))
            out = node["outputs"][0]
            self.steps.append((impl, node, state, ins, ishapes, self.bufs[out],
                               tuple(shapes[out])))

    def _alloc(self, size, stream):
        d = cuda.device_array(max(int(size), 1), dtype=np.float32, stream=stream)
        self.nbytes += int(d.nbytes)
        return d


class DeviceExecutor:
    """One stream and a cache of device plans for one model (thread-safe: runs serialize
    on the model's stream)."""

    def __init__(self, model):
        self.model = model
        self.stream = cuda.stream()
        self.plans: dict = {}
        self.lock = threading.Lock()

    def plan(self, in_shapes: dict) -> DevicePlan:
        key = tuple(sorted((k, tuple(v)) for k, v in in_shapes.items()))
        p = self.plans.get(key)
        if p is None:
            p = self.plans[key] = DevicePlan(self.model, dict(key), self.stream)
        return p

    def run(self, arrays: dict, wanted=None, profile: dict | None = None) -> dict:
        m = self.model
        wanted = [v["name"] for v in m.graph["outputs"]] if wanted is None else list(wanted)
        s = self.stream
        with self.lock:
            plan = self.plan({n: a.shape for n, a in arrays.items()})
            for n, a in arrays.items():
                st = plan.stage_in[n]
                np.copyto(st, a)
                plan.bufs[n].copy_to_device(st.reshape(-1), stream=s)
            for impl, node, state, ins, ishapes, out, oshape in plan.steps:
                if profile is None:
                    impl.launch(node, state, ins, ishapes, out, oshape, s)
                else:  # per-node timing needs a synchronization after each node
                    import time
                    t0 = time.perf_counter()
                    impl.launch(node, state, ins, ishapes, out, oshape, s)
                    s.synchronize()
                    key = (node.get("name") or node["outputs"][0], node["op"])
                    profile[key] = profile.get(key, 0.0) + time.perf_counter() - t0
            for n in wanted:
                plan.bufs[n].copy_to_host(plan.stage_out[n].reshape(-1), stream=s)
            s.synchronize()
            return {n: np.array(plan.stage_out[n], copy=True) for n in wanted}


def run_graph(model, arrays: dict, wanted=None, profile: dict | None = None) -> dict:
    """Run ``model`` (loaded with device="cuda") on validated float32 input arrays, keeping
    every activation on the device. Returns fresh host arrays for ``wanted`` outputs."""
    ex = getattr(model, "_cuda_executor", None)
    if ex is None:
        ex = DeviceExecutor(model)
        model._cuda_executor = ex
    return ex.run(arrays, wanted, profile)
