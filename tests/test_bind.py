"""Bound steps (edgenet/cpu/_common.py, "bound steps"; edgenet/runtime.py BIND): after a
plan's first run on a thread, the executor makes each conv's recorded calls through Numba's
compiled entry points instead of running the op's Python. The results must be the very
bits of the unbound path, for every conv path (f32 tiles, pointwise, depthwise channel
vectors, int8 tiles, producers writing their int8 consumer's input), and must survive
what replaces the thread's scratch vectors (another batch size) and concurrent threads."""
import threading

import numpy as np
import pytest

import edgenet
import edgenet.runtime as rt
from edgenet.activation import act_desc
from edgenet.cpu import _common
from edgenet.format import pack, write_model


def _chain_model(path, rng, act1="Clip"):
    """x -> c0 3x3 8->16 Relu -> c1 3x3 act1 -> c2 3x3 Relu (+ residual c0) -> dw 3x3/2
    HardSwish -> pw 1x1 16->24 Relu -> c5 3x3 24->12 -> y. c1 and dw have one reader each
    (int8: they write its quantized input; c1 in its tiles for Clip, through a separate pass
    after it for Sigmoid), c2 a residual."""
    def conv(name, x, w, out, pads=1, st=1, group=1, act=None, res=None):
        desc = act_desc(act, *((0.0, 6.0) if act == "Clip" else ())) if act else None
        return {"name": name, "op": "Conv", "inputs": [x, w, "b" + w[1:]] + ([res] if res else []),
                "outputs": [out], "attrs": {"strides": [st, st], "pads": [pads] * 4,
                                            "dilations": [1, 1], "group": group,
                                            "activation": desc}}
    shapes = {"w0": (16, 8, 3, 3), "w1": (16, 16, 3, 3), "w2": (16, 16, 3, 3),
              "w3": (16, 1, 3, 3), "w4": (24, 16, 1, 1), "w5": (12, 24, 3, 3)}
    tensors = {}
    for w, s in shapes.items():
        tensors[w] = pack("t2", rng.integers(-1, 2, size=s),
                          rng.uniform(0.1, 0.3, size=s[0]).astype(np.float32))
        tensors["b" + w[1:]] = pack("f32", rng.normal(0, 0.2, size=s[0]).astype(np.float32))
    nodes = [conv("c0", "x", "w0", "a", act="Relu"), conv("c1", "a", "w1", "b", act=act1),
             conv("c2", "b", "w2", "c", act="Relu", res="a"),
             conv("dw", "c", "w3", "d", st=2, group=16, act="HardSwish"),
             conv("pw", "d", "w4", "e", pads=0, act="Relu"), conv("c5", "e", "w5", "y")]
    graph = {"inputs": [{"name": "x", "shape": [None, 8, 12, 12], "dtype": "float32"}],
             "outputs": [{"name": "y", "shape": [None, 12, 6, 6]}], "nodes": nodes}
    write_model(path, graph=graph, tensors=tensors)
    return path


RANGES = {"x": (-3.0, 3.0), "a": (0.0, 6.0), "b": (0.0, 6.0), "c": (0.0, 8.0),
          "d": (-0.5, 6.0), "e": (0.0, 6.0)}
MIDDLE = ("c1", "c2", "dw", "pw")   # neither reads a graph input nor writes a graph output


def _bound(m, batch=1):
    plan = next(p for k, pool in m._plans.items() for p in pool if k[0][1][0] == batch)
    gen, calls = plan.bound[threading.get_ident()]
    return gen, {st[1]["name"]: f for st, f in zip(plan.steps, calls)}


def _unbound_outputs(path, act, xs, monkeypatch):
    monkeypatch.setattr(rt, "BIND", False)
    m = edgenet.load(path, activations=act, act_ranges=RANGES if act == "int8" else None)
    out = [m(x) for x in xs]
    assert not any(p.bound for pool in m._plans.values() for p in pool)
    monkeypatch.setattr(rt, "BIND", True)
    return out


@pytest.mark.parametrize("stage", [True, False])
@pytest.mark.parametrize("act,act1", [("f32", "Clip"), ("int8", "Clip"), ("int8", "Sigmoid")])
def test_bound_steps_give_the_unbound_bits(act, act1, stage, tmp_path, monkeypatch):
    if not stage:
        monkeypatch.setattr(rt, "STAGE_MAX", 0)
    rng = np.random.default_rng(7)
    path = _chain_model(str(tmp_path / "m.edgenet"), rng, act1)
    xs = [rng.normal(0, 1, (n, 8, 12, 12)).astype(np.float32) for n in (1, 1, 1, 2, 1, 1)]
    want = _unbound_outputs(path, act, xs, monkeypatch)
    m = edgenet.load(path, activations=act, act_ranges=RANGES if act == "int8" else None)
    if act == "int8":
        nodes = {n["name"]: n for n in m.graph["nodes"]}
        # the depthwise conv runs int8 too: c2 (a residual) writes its output and dw's
        # quantized input (_qo_keep); dw writes pw's input in its epilogue
        assert "_qo" in nodes["c1"] and "_qo" in nodes["dw"] and m.int8_convs == 6
        assert "_aq" in nodes["dw"] and nodes["c2"].get("_qo_keep") and nodes["dw"]["_qi"]
        assert m._states[3].dq
    got = []
    for i, x in enumerate(xs):
        got.append(m(x))
        if i == 1:        # two runs of batch 1: bound after the first
            gen, calls = _bound(m)
            assert [n for n in MIDDLE if calls[n] is None] == []
            # a graph input / output: bound too, staged in the plan's buffers (small:
            # runtime.STAGE_MAX), else run through the op each call
            staged = rt.STAGE_MAX >= 8 * 12 * 12
            assert (calls["c0"] is not None and calls["c5"] is not None) == staged
        if i == 3:        # after batch 2: every scratch vector of this thread replaced (the
            for k, a in list(_common._TLS.bufs.items()):   # producers' int8 buffers too)
                _common.tls_buffer(k, 2 * a.size)
            assert _common.tls_generation() != gen
    # the batch-1 plan's calls were stale then, and were bound again
    gen2, calls2 = _bound(m)
    assert gen2 != gen and gen2 == _common.tls_generation()
    assert [n for n in MIDDLE if calls2[n] is None] == []
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


def test_bound_steps_per_thread(tmp_path, monkeypatch):
    """Each Python thread binds its own calls (its own scratch vectors)."""
    rng = np.random.default_rng(8)
    path = _chain_model(str(tmp_path / "m.edgenet"), rng)
    xs = [rng.normal(0, 1, (1, 8, 12, 12)).astype(np.float32) for _ in range(6)]
    want = _unbound_outputs(path, "int8", xs, monkeypatch)
    m = edgenet.load(path, activations="int8", act_ranges=RANGES, threads=1)
    got, errors = {}, []
    both = threading.Barrier(2)     # both threads alive together (distinct thread ids)

    def work(k):
        both.wait()
        try:
            for r in range(4):
                for i in range(k, len(xs), 2):
                    out = m(xs[i])
                    if r == 3:
                        got[i] = out
        except Exception as e:      # pragma: no cover - reported below
            errors.append(e)
        both.wait()
    ts = [threading.Thread(target=work, args=(k,)) for k in (0, 1)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors
    for i, w in enumerate(want):
        np.testing.assert_array_equal(got[i], w)
    bound_threads = {tid for pool in m._plans.values() for p in pool for tid in p.bound}
    assert len(bound_threads) >= 2


def test_a_new_thread_with_a_reused_id_binds_anew(tmp_path, monkeypatch):
    """Python reuses a finished thread's id: the new thread (fresh scratch vectors) must
    not run the old thread's bound steps (whose vectors its unbound steps do not share: the
    first conv, a graph-input step, writes its int8 consumer's input)."""
    rng = np.random.default_rng(9)
    path = _chain_model(str(tmp_path / "m.edgenet"), rng)
    xs = [rng.normal(0, 1, (1, 8, 12, 12)).astype(np.float32) for _ in range(4)]
    want = _unbound_outputs(path, "int8", xs, monkeypatch)
    m = edgenet.load(path, activations="int8", act_ranges=RANGES)
    np.testing.assert_array_equal(m(xs[0]), want[0])
    np.testing.assert_array_equal(m(xs[1]), want[1])
    gen, _ = _bound(m)
    monkeypatch.setattr(_common, "_TLS", _common._Local())   # as a new thread, same id
    assert _common.tls_generation() == 0
    for x, w in zip(xs[2:], want[2:]):
        np.testing.assert_array_equal(m(x), w)
    gen2, calls2 = _bound(m)
    assert gen2 != gen and gen2 == _common.tls_generation() and calls2["c1"] is not None


def test_entry_point_is_the_dispatchers_overload():
    """bind_calls calls the compiled overload for exactly the recorded argument types; a
    plain Python function is called as it is."""
    from edgenet._jit import njit

    @njit
    def add_into(a, b, out):
        for i in range(out.size):
            out[i] = a[i] + b[i]
    a, b, out = np.arange(4, dtype=np.float32), np.ones(4, np.float32), np.zeros(4, np.float32)
    add_into(a, b, out)
    seen = []
    f = _common.bind_calls([(add_into, (a, b, out)), (seen.append, (1,))])
    out[:] = 0
    a[:] = 10
    f()
    np.testing.assert_array_equal(out, np.full(4, 11, np.float32))
    assert seen == [1]
    sig = add_into.signatures[0]
    assert _common._entry(add_into, (a, b, out)) is add_into.overloads[sig].entry_point


def test_a_profiled_run_times_the_bound_calls(tmp_path, monkeypatch):
    """``run(profile=...)`` after binding makes the bound calls (what an unprofiled run
    makes), timing each: same bits, every node in the profile, the bound callables called."""
    rng = np.random.default_rng(11)
    path = _chain_model(str(tmp_path / "m.edgenet"), rng)
    x = rng.normal(0, 1, (1, 8, 12, 12)).astype(np.float32)
    want = _unbound_outputs(path, "int8", [x], monkeypatch)[0]
    m = edgenet.load(path, activations="int8", act_ranges=RANGES, threads=1)
    for _ in range(2):
        m(x)
    plan = next(p for pool in m._plans.values() for p in pool)
    gen, calls = plan.bound[threading.get_ident()]
    hits = []

    def counted(name, f):
        def g():
            hits.append(name)
            f()
        return g
    plan.bound[threading.get_ident()] = (gen, [
        None if f is None else counted(st[1]["name"], f) for st, f in zip(plan.steps, calls)])
    prof = {}
    name = m.inputs[0].name
    out = m.run({name: x}, profile=prof)[m.graph["outputs"][0]["name"]]
    np.testing.assert_array_equal(out, want)
    assert set(MIDDLE) <= set(hits)
    assert {k[0] for k in prof} == {n["name"] for n in m.graph["nodes"]}
    assert all(v >= 0 for v in prof.values())
