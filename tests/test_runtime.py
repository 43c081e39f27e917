"""The executor: plans, buffer reuse, input validation, threads, outputs — on small
hand-written graphs, CPU against the NumPy reference backend."""
import threading

import numpy as np
import pytest

import edgenet
from edgenet.errors import InputError, ModelError
from edgenet.format import pack, write_model
from tests.helpers import residual_net  # noqa: F401  (tests/test_cli.py imports it from here)

RNG = np.random.default_rng(2)


@pytest.fixture(scope="module", params=["t2", "q3", "f32"])
def model_path(request, tmp_path_factory):
    return residual_net(str(tmp_path_factory.mktemp("m") / f"res_{request.param}.edgenet"),
                        request.param)


def test_io_description(model_path):
    m = edgenet.load(model_path, device="reference")
    assert m.inputs == [edgenet.IOSpec("x", (None, 3, 9, 9), "float32")]
    assert m.outputs[0].name == "y"


def test_cpu_matches_reference_both_policies(model_path):
    x = RNG.standard_normal((3, 3, 9, 9)).astype(np.float32)
    ref = edgenet.load(model_path, device="reference")(x)
    for policy in ("expanded", "packed"):
        y = edgenet.load(model_path, device="cpu", policy=policy)(x)
        np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


def test_reference_matches_numpy_by_hand(tmp_path):
    path = residual_net(str(tmp_path / "h.edgenet"), "t2")
    from edgenet.format import read_model
    f = read_model(path)
    w = {n: f.tensor(n).dequantize() for n in ("w1", "b1", "w2", "b2", "w3", "b3")}
    x = RNG.standard_normal((2, 3, 9, 9)).astype(np.float32)

    def conv(a, k, b):
        ap = np.pad(a, ((0, 0), (0, 0), (1, 1), (1, 1)))
        out = np.zeros((a.shape[0], k.shape[0], a.shape[2], a.shape[3]))
        for i in range(3):
            for j in range(3):
                out += np.einsum("nchw,oc->nohw", ap[:, :, i:i + a.shape[2], j:j + a.shape[3]],
                                 k[:, :, i, j])
        return out + b[None, :, None, None]
    t1 = np.maximum(conv(x, w["w1"], w["b1"]), 0)
    t2 = np.maximum(conv(t1, w["w2"], w["b2"]) + t1, 0)
    y = t2.mean(axis=(2, 3)) @ w["w3"].T + w["b3"]
    got = edgenet.load(path, device="reference")(x)
    np.testing.assert_allclose(got, y, rtol=1e-5, atol=1e-5)


def test_batch_sizes_and_repeat_calls_are_stable(model_path):
    m = edgenet.load(model_path)
    x = RNG.standard_normal((4, 3, 9, 9)).astype(np.float32)
    full = m(x)
    for i in range(4):  # a different batch size gets its own plan; results agree
        np.testing.assert_allclose(m(x[i:i + 1])[0], full[i], rtol=1e-5, atol=1e-6)
    again = m(x)
    np.testing.assert_array_equal(again, full)
    assert again is not m(x)  # outputs are fresh arrays, not plan buffers


def test_outputs_do_not_alias_between_calls(model_path):
    m = edgenet.load(model_path)
    a = RNG.standard_normal((1, 3, 9, 9)).astype(np.float32)
    b = RNG.standard_normal((1, 3, 9, 9)).astype(np.float32)
    ya = m(a)
    ya_copy = ya.copy()
    m(b)
    np.testing.assert_array_equal(ya, ya_copy)


def test_wrong_inputs_name_expected_and_received(model_path):
    m = edgenet.load(model_path)
    with pytest.raises(InputError, match=r"expected shape \(N, 3, 9, 9\), received \(1, 3, 8, 9\)"):
        m(np.zeros((1, 3, 8, 9), np.float32))
    with pytest.raises(InputError, match="expected dtype float32, received float64"):
        m(np.zeros((1, 3, 9, 9)))
    with pytest.raises(InputError, match="received"):
        m(np.zeros((3, 9, 9), np.float32))
    with pytest.raises(InputError, match="unknown input"):
        m.run({"nope": np.zeros((1, 3, 9, 9), np.float32)})
    with pytest.raises(InputError, match="missing input"):
        m.run({})


def test_non_contiguous_and_nonfinite_inputs(model_path):
    m = edgenet.load(model_path)
    big = RNG.standard_normal((2, 3, 18, 9)).astype(np.float32)
    x = big[:, :, ::2, :]
    assert not x.flags.c_contiguous
    np.testing.assert_array_equal(m(x), m(np.ascontiguousarray(x)))
    x = np.ascontiguousarray(x)
    x[0, 0, 0, 0] = np.nan
    y = m(x)
    assert np.isnan(y[0]).any() and np.isfinite(y[1]).all()


def test_threads_option_and_concurrent_calls(model_path):
    m = edgenet.load(model_path, threads=1)
    xs = [RNG.standard_normal((1 + i % 2, 3, 9, 9)).astype(np.float32) for i in range(8)]
    serial = [m(x) for x in xs]
    errors = []
    def worker(k):
        try:
            for _ in range(100):
                np.testing.assert_array_equal(m(xs[k]), serial[k])
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)
    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]


def test_bad_graph_is_rejected_at_load(tmp_path):
    graph = {"inputs": [{"name": "x", "shape": [None, 4], "dtype": "float32"}],
             "outputs": [{"name": "y", "shape": [None, 3]}],
             "nodes": [{"name": "fc", "op": "Gemm", "inputs": ["x", "w", ""],
                        "outputs": ["y"], "attrs": {"activation": None}}]}
    w = pack("t2", RNG.integers(-1, 2, size=(3, 5)), np.ones(3))  # K=5 but input has 4
    path = str(tmp_path / "bad.edgenet")
    write_model(path, graph=graph, tensors={"w": w})
    with pytest.raises(ModelError, match="fc"):
        edgenet.load(path, device="reference")
    graph["nodes"][0]["inputs"][0] = "undefined"
    write_model(path, graph=graph, tensors={"w": w})
    with pytest.raises(ModelError, match="not defined"):
        edgenet.load(path, device="reference")


def test_runtime_never_imports_frameworks():
    import subprocess
    import sys
    code = ("import sys, numpy as np, edgenet; import edgenet.cli, edgenet.cpu, edgenet.reference;"
            "bad = [m for m in ('onnx', 'torch', 'onnxruntime', 'converters', 'tensorflow',"
            " 'numba.cuda') if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_bad_options_are_usage_errors(model_path):
    """Unknown device, weights policy, activation precision, bad thread count: one family
    (UsageError, also a ValueError); options after the path are keyword-only."""
    for kw in ({"device": "tpu"}, {"policy": "zipped"}, {"activations": "int4"},
               {"threads": 0}):
        with pytest.raises(edgenet.UsageError) as e:
            edgenet.load(model_path, **kw)
        assert isinstance(e.value, ValueError) and "\n" not in str(e.value), kw
    with pytest.raises(edgenet.DeviceError):
        edgenet.load(model_path, device="tpu")
    with pytest.raises(TypeError):
        edgenet.load(model_path, "cpu")


def _plan(runs=0):
    from edgenet import runtime
    p = object.__new__(runtime._Plan)
    p.times, p.one, p.runs, p.last, p.streak = ([], []), False, runs, None, 0
    p.probe_run, p.probe_t, p.probe_left = runtime.PROBE_EVERY, 0.0, 0
    return p


def _drive(p, cost, n):
    """n runs of plan p's choice, each recorded with cost(i, one, previous one)."""
    prev = None
    for i in range(n):
        one = p.pick_one()
        p.record(one, cost(i, one, prev))
        prev = one


def test_adaptive_threads_times_both_choices_and_keeps_the_faster(monkeypatch):
    """_Plan.pick_one / record: the first runs untimed, then both choices in blocks of
    ADAPTIVE_BLOCK runs (the first of a block untimed) until each has ADAPTIVE_SAMPLES
    times; one thread wins by a margin; the other choice is re-timed in a block every
    PROBE_EVERY runs (PROBE_S seconds apart at least: 0 here) and can win back."""
    from edgenet import runtime
    monkeypatch.setattr(runtime, "PROBE_S", 0.0)
    p = _plan()
    for _ in range(runtime.ADAPTIVE_SKIP):     # compile / bind runs: threaded, not timed
        assert p.pick_one() is False
        p.record(False, 9.0)
    assert p.times == ([], [])
    seen = []
    blk, n = runtime.ADAPTIVE_BLOCK, runtime.ADAPTIVE_SAMPLES
    runs = -(-n // (blk - 1)) * blk * 2            # blocks until both have n times
    for _ in range(runs):
        one = p.pick_one()
        seen.append(one)
        p.record(one, 0.010 if one else 0.030)      # one thread is faster here
    assert seen[:2 * blk] == [False] * blk + [True] * blk
    assert seen.count(True) == seen.count(False) and p.one is True
    assert len(p.times[0]) == len(p.times[1]) == n
    picks = [p.pick_one() for _ in range(2 * runtime.PROBE_EVERY)]
    assert picks.count(False) == 2 * blk          # the probe blocks of the slower choice
    for _ in range(n + 1):                         # the load changed: threads win again
        p.record(False, 0.005)
    assert p.one is False


def test_adaptive_threads_probe_at_most_every_probe_s(monkeypatch):
    """Runs faster than PROBE_EVERY per PROBE_S seconds probe the other choice once per
    PROBE_S (a block of ADAPTIVE_BLOCK runs), not every PROBE_EVERY runs."""
    from edgenet import runtime
    clock = [100.0]
    monkeypatch.setattr(runtime.time, "perf_counter", lambda: clock[0])
    p = _plan()
    blk, n = runtime.ADAPTIVE_BLOCK, runtime.ADAPTIVE_SAMPLES
    for _ in range(runtime.ADAPTIVE_SKIP + -(-n // (blk - 1)) * blk * 2):
        one = p.pick_one()
        p.record(one, 0.010 if one else 0.030)
    assert p.one is True
    picks = [p.pick_one() for _ in range(10 * runtime.PROBE_EVERY)]   # within one PROBE_S
    assert picks.count(False) == blk
    clock[0] += runtime.PROBE_S                    # a PROBE_S later: the next probe block
    picks = [p.pick_one() for _ in range(runtime.PROBE_EVERY)]
    assert picks.count(False) == blk


def test_adaptive_threads_need_a_margin_to_leave_the_threads():
    """One thread only 5 % faster (within a shared machine's noise) keeps the plan's own
    thread counts; a cold first call after each pause (an engine interleaved with others),
    and a threaded run that must wake its workers after one-thread runs, do not hand the
    plan to one thread."""
    from edgenet import runtime
    p = _plan(runtime.ADAPTIVE_SKIP)
    _drive(p, lambda i, one, prev: 0.0095 if one else 0.010, 40)
    assert p.one is False
    p = _plan()           # a run that loads kernels, one more, then blocks of 5 calls whose
    _drive(p, lambda i, one, prev: 0.5 if i == 0 else 0.014 if one else     # first is cold
           0.016 if i % 5 == 2 else 0.010, 40)
    assert p.one is False
    p = _plan()           # both cores busy: waking the workers costs 55 ms, then 1.3 ms
    _drive(p, lambda i, one, prev: 0.0022 if one else 0.055 if prev else 0.0013, 60)
    assert p.one is False
    p = _plan()           # a real collapse: threaded runs are all slow
    _drive(p, lambda i, one, prev: 0.015 if one else 0.07, 30)
    assert p.one is True


def test_adaptive_threads_give_the_same_outputs(model_path, monkeypatch):
    """Every node forced parallel (thresholds 0), threads=2: runs alternate between the
    nodes' own thread counts and one thread; outputs never change."""
    import numba
    from edgenet.cpu import _common
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs 2 Numba threads")
    monkeypatch.setattr(_common, "PAR_MIN", 0)
    monkeypatch.setattr(_common, "CONV_PAR_MIN", 0)
    x = RNG.standard_normal((2, 3, 9, 9)).astype(np.float32)
    want = edgenet.load(model_path, threads=1)(x)
    m = edgenet.load(model_path, threads=2)
    from edgenet import runtime
    n = runtime.ADAPTIVE_SKIP + 4 * runtime.ADAPTIVE_BLOCK
    for _ in range(n):
        np.testing.assert_allclose(m(x), want, rtol=1e-6, atol=1e-6)
    (plan,), = m._plans.values()
    assert plan.any_parallel and len(plan.times[0]) >= 4 and len(plan.times[1]) >= 4


@pytest.mark.parametrize("device,threads", [("cpu", 1), ("cpu", 2), ("reference", None)])
def test_graph_outputs_read_by_later_nodes_are_fresh_per_call(tmp_path, device, threads):
    """Graph outputs are written straight into fresh arrays (no copy on return): an output
    that later nodes read (r, s), several outputs, a subset (outputs=[...]), two calls whose
    results must not alias, and a plan reused across calls."""
    from edgenet.activation import act_desc
    graph = {"inputs": [{"name": "x", "shape": [None, 4, 6, 6], "dtype": "float32"}],
             "outputs": [{"name": "r", "shape": [None, 4, 6, 6]},
                         {"name": "s", "shape": [None, 4, 6, 6]},
                         {"name": "e", "shape": [None, 4, 6, 6]}],
             "nodes": [{"name": "relu", "op": "Act", "inputs": ["x"], "outputs": ["r"],
                        "attrs": {"activation": act_desc("Relu")}},
                       {"name": "add", "op": "Add", "inputs": ["r", "x"], "outputs": ["s"],
                        "attrs": {"activation": None}},
                       {"name": "exp", "op": "Unary", "inputs": ["s"], "outputs": ["t"],
                        "attrs": {"fn": "exp"}},
                       {"name": "neg", "op": "Unary", "inputs": ["t"], "outputs": ["e"],
                        "attrs": {"fn": "neg"}}]}
    path = str(tmp_path / "outs.edgenet")
    write_model(path, graph=graph, tensors={})
    m = edgenet.load(path, device=device, threads=threads)

    def want(x):
        r = np.maximum(x, 0)
        return {"r": r, "s": r + x, "e": -np.exp(r + x)}
    a = RNG.standard_normal((2, 4, 6, 6)).astype(np.float32)
    b = RNG.standard_normal((2, 4, 6, 6)).astype(np.float32)
    ya = m.run({"x": a})
    yb = m.run({"x": b})
    for got, x in ((ya, a), (yb, b)):      # ya is unchanged by the second call
        assert list(got) == ["r", "s", "e"]  # the graph's order
        for n, w in want(x).items():
            np.testing.assert_allclose(got[n], w, rtol=2e-6, atol=1e-6, err_msg=n)
    assert all(ya[n] is not yb[n] and not np.shares_memory(ya[n], yb[n]) for n in ya)
    sub = m.run({"x": a}, outputs=["e"])
    assert list(sub) == ["e"]
    np.testing.assert_array_equal(sub["e"], ya["e"])
    np.testing.assert_array_equal(m(b), yb["r"])
    assert len(m._plans) == 1 and len(next(iter(m._plans.values()))) == 1


@pytest.mark.parametrize("threads", [1, 2])
def test_small_graph_io_is_staged_and_its_steps_bound(model_path, threads):
    """Graph inputs and outputs of at most STAGE_MAX floats are copied into / out of the
    plan's own buffers, so the first and last steps bind like the others (no step of this
    small net runs unbound); results stay fresh arrays, the caller's input is never written,
    and they equal the unstaged run's (EDGENET_BIND=0 path) bit for bit."""
    m = edgenet.load(model_path, threads=threads)
    x = RNG.standard_normal((2, 3, 9, 9)).astype(np.float32)
    x0 = x.copy()
    ys = [m(x) for _ in range(3)]
    np.testing.assert_array_equal(x, x0)
    assert ys[0] is not ys[1] and not np.shares_memory(ys[0], ys[1])
    np.testing.assert_array_equal(ys[0], ys[2])
    (plan,), = m._plans.values()
    assert list(plan.stage_in) == ["x"] and list(plan.stage_out) == ["y"]
    gen, bound = plan.bound[threading.get_ident()]
    assert all(f is not None for f, st in zip(bound, plan.steps)
               if st[0] is not edgenet.runtime._VIEW)
    ref = edgenet.load(model_path, threads=threads)
    ref._plans.clear()
    old = edgenet.runtime.STAGE_MAX
    try:
        edgenet.runtime.STAGE_MAX = 0
        np.testing.assert_array_equal(ref(x), ys[0])
        (p2,), = ref._plans.values()
        assert not p2.stage_in and not p2.stage_out
    finally:
        edgenet.runtime.STAGE_MAX = old


@pytest.mark.parametrize("staged", [True, False])
@pytest.mark.parametrize("device", ["cpu", "reference"])
def test_reshape_of_an_intermediate_is_a_view_not_a_step(tmp_path, device, staged,
                                                         monkeypatch):
    """A Reshape / Flatten from an intermediate to an intermediate aliases its input's
    buffer (no copy, the node is not run): chains of them, a view read by two later nodes
    while other buffers are reused around it, a Reshape of the graph input and one into a
    graph output (those still copy; with staged I/O the input's Reshape is a view of the
    plan's input buffer, the output's still a step); results as NumPy, observe() sees
    every value."""
    if not staged:
        monkeypatch.setattr(edgenet.runtime, "STAGE_MAX", 0)
    from edgenet.activation import act_desc
    relu = act_desc("Relu")
    graph = {"inputs": [{"name": "x", "shape": [None, 4, 6, 6], "dtype": "float32"}],
             "outputs": [{"name": "y", "shape": [None, 144]}],
             "nodes": [
                 {"name": "r0", "op": "Reshape", "inputs": ["x"], "outputs": ["x2"],
                  "attrs": {"shape": [0, 4, 36]}},
                 {"name": "a", "op": "Act", "inputs": ["x2"], "outputs": ["a"],
                  "attrs": {"activation": relu}},
                 {"name": "r1", "op": "Reshape", "inputs": ["a"], "outputs": ["v1"],
                  "attrs": {"shape": [0, 144]}},
                 {"name": "r2", "op": "Flatten", "inputs": ["v1"], "outputs": ["v2"],
                  "attrs": {"axis": 1}},
                 {"name": "n", "op": "Unary", "inputs": ["v2"], "outputs": ["b"],
                  "attrs": {"fn": "neg"}},
                 {"name": "e", "op": "Unary", "inputs": ["b"], "outputs": ["c"],
                  "attrs": {"fn": "exp"}},
                 {"name": "s", "op": "Add", "inputs": ["c", "v2"], "outputs": ["d"],
                  "attrs": {"activation": None}},
                 {"name": "r3", "op": "Reshape", "inputs": ["d"], "outputs": ["y"],
                  "attrs": {"shape": [0, 144]}}]}
    path = str(tmp_path / "views.edgenet")
    write_model(path, graph=graph, tensors={})
    m = edgenet.load(path, device=device)
    for seed in (0, 1):
        x = np.random.default_rng(seed).standard_normal((3, 4, 6, 6)).astype(np.float32)
        v = np.maximum(x, 0).reshape(3, 144)
        want = np.exp(-v) + v
        seen = {}
        y = m.run({"x": x}, observe=lambda n, a: seen.__setitem__(n, a.copy()))["y"]
        np.testing.assert_allclose(y, want, rtol=2e-6, atol=1e-6)
        assert set(seen) == {"x", "x2", "a", "v1", "v2", "b", "c", "d", "y"}
        np.testing.assert_array_equal(seen["v2"], v)
        np.testing.assert_allclose(m(x), want, rtol=2e-6, atol=1e-6)
    (plan,), = m._plans.values()
    views = [s[1]["name"] for s in plan.steps if s[0] is __import__("edgenet").runtime._VIEW]
    assert views == (["r0", "r1", "r2"] if staged else ["r1", "r2"])
    assert np.shares_memory(plan.buffers["v2"], plan.buffers["a"])
    assert sorted(plan.stage_in) == (["x"] if staged else [])
    assert sorted(plan.stage_out) == (["y"] if staged else [])


def test_bench_warms_up_to_the_steady_state(monkeypatch):
    """benchmark._warm: with no count asked for, WARMUP_RUNS untimed turns (the adaptive
    threads' sampling done before the timed calls), fewer once WARMUP_MAX_S passed but at
    least WARMUP_MIN; an explicit count is exact."""
    from edgenet import benchmark
    clock = [0.0]
    monkeypatch.setattr(benchmark.time, "perf_counter", lambda: clock[0])
    calls = []

    def f(cost):
        def call():
            calls.append(1)
            clock[0] += cost
        return call
    benchmark._warm({"a": f(0.001), "b": f(0.001)}, None)
    assert len(calls) == 2 * benchmark.WARMUP_RUNS
    calls.clear()
    benchmark._warm({"a": f(1.0)}, None)           # a slow model: stops past WARMUP_MAX_S
    assert len(calls) == max(benchmark.WARMUP_MIN, int(benchmark.WARMUP_MAX_S) + 1)
    calls.clear()
    benchmark._warm({"a": f(1.0)}, 5)
    assert len(calls) == 5
