"""`edgenet batch`: 2,000 small inputs through the local process pool and Ray Data give the
same predictions as calling the model one sample at a time; an interrupted run resumes
without losing or duplicating a row."""
import os
import sys

import numpy as np
import pytest
from click.testing import CliRunner

import edgenet
from edgenet import batch as B
from edgenet.cli import main
from edgenet.format import pack, write_model
from edgenet.ir import act_desc

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N = 2000
LABELS = [f"class{i}" for i in range(10)]


def tiny_model(path):
    """Conv(relu) → GlobalAveragePool → Flatten → Gemm on (N, 1, 8, 8), ternary weights."""
    rng = np.random.default_rng(0)
    t = {"w1": pack("t2", rng.integers(-1, 2, size=(8, 1, 3, 3)), rng.random(8) * 0.5 + 0.1),
         "b1": pack("f32", rng.standard_normal(8) * 0.1),
         "w2": pack("t2", rng.integers(-1, 2, size=(10, 8)), rng.random(10) * 0.5 + 0.1),
         "b2": pack("f32", rng.standard_normal(10) * 0.1)}
    nodes = [
        {"name": "c1", "op": "Conv", "inputs": ["x", "w1", "b1", ""], "outputs": ["t1"],
         "attrs": {"strides": [1, 1], "pads": [1] * 4, "dilations": [1, 1], "group": 1,
                   "activation": act_desc("Relu")}},
        {"name": "gap", "op": "GlobalAveragePool", "inputs": ["t1"], "outputs": ["t2"],
         "attrs": {}},
        {"name": "fl", "op": "Flatten", "inputs": ["t2"], "outputs": ["t3"], "attrs": {"axis": 1}},
        {"name": "fc", "op": "Gemm", "inputs": ["t3", "w2", "b2"], "outputs": ["y"],
         "attrs": {"activation": None}}]
    g = {"inputs": [{"name": "x", "shape": [None, 1, 8, 8], "dtype": "float32"}],
         "outputs": [{"name": "y", "shape": [None, 10], "dtype": "float32"}], "nodes": nodes}
    write_model(path, graph=g, tensors=t, metadata={"labels": LABELS})
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("batch")
    model = tiny_model(str(d / "tiny.edgenet"))
    x = np.random.default_rng(1).standard_normal((N, 1, 8, 8)).astype(np.float32)
    inp = d / "inputs"
    inp.mkdir()
    keys = []
    # 7 .npy shards, 1 .npz shard, 2 single-sample files: uneven sizes cross chunk edges
    bounds = [0, 300, 550, 800, 1100, 1300, 1500, 1750, 1998]
    for j, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
        if j == 3:
            np.savez(inp / f"s{j}.npz", x=x[a:b])
            keys += [f"s{j}.npz:{i}" for i in range(b - a)]
        else:
            np.save(inp / f"s{j}.npy", x[a:b])
            keys += [f"s{j}.npy:{i}" for i in range(b - a)]
    (inp / "zz").mkdir()
    np.save(inp / "zz" / "one.npy", x[1998])
    np.save(inp / "zz" / "two.npy", x[1999])
    keys += ["zz/one.npy", "zz/two.npy"]
    (inp / "notes.txt").write_text("ignored")
    m = edgenet.load(model, device="cpu")
    expected = np.concatenate([m(x[i:i + 1]) for i in range(N)])  # one by one
    return {"dir": d, "model": model, "inputs": str(inp), "keys": np.array(keys),
            "expected": expected}


def run_cli(args, env=None):
    r = CliRunner().invoke(main, ["batch", *args, "-q"], env=env)
    return r


def check_raw(path, data):
    with np.load(path, allow_pickle=False) as z:
        assert sorted(z.files) == ["key", "y"]
        np.testing.assert_array_equal(z["key"], data["keys"])
        np.testing.assert_array_equal(z["y"], data["expected"])  # bit-identical


def test_local_pool_matches_one_by_one(data):
    out = str(data["dir"] / "local.npz")
    r = run_cli([data["model"], data["inputs"], "-o", out, "--workers", "2", "--threads", "1",
                 "--chunk-size", "256", "--batch-size", "50"])
    assert r.exit_code == 0, r.output
    assert "2000 rows" in r.output
    check_raw(out, data)
    assert not os.path.exists(out + ".partial")


def test_top_k_and_glob_in_process(data):
    out = str(data["dir"] / "top.npz")
    r = run_cli([data["model"], os.path.join(data["inputs"], "s*.np?"), "-o", out,
                 "--workers", "0", "--top-k", "3"])
    assert r.exit_code == 0, r.output
    n = 1998
    exp = data["expected"][:n]
    idx = np.argsort(-exp, axis=1, kind="stable")[:, :3]
    with np.load(out, allow_pickle=False) as z:
        np.testing.assert_array_equal(z["key"], data["keys"][:n])
        np.testing.assert_array_equal(z["topk_index"], idx)
        np.testing.assert_array_equal(z["topk_score"], np.take_along_axis(exp, idx, 1))
        np.testing.assert_array_equal(z["topk_label"], np.array(LABELS)[idx])


def test_parquet_output(data):
    pq = pytest.importorskip("pyarrow.parquet")
    out = str(data["dir"] / "p.parquet")
    r = run_cli([data["model"], data["inputs"], "-o", out, "--workers", "0"])
    assert r.exit_code == 0, r.output
    t = pq.read_table(out)
    assert t.column("key").to_pylist() == list(data["keys"])
    y = np.asarray(t.column("y").combine_chunks().flatten()).reshape(N, 10)
    np.testing.assert_array_equal(y, data["expected"])


def test_interrupted_run_resumes_exactly(data):
    out = str(data["dir"] / "resume.npz")
    part = out + ".partial"
    args = [data["model"], data["inputs"], "-o", out, "--chunk-size", "200", "--workers", "0"]
    r = run_cli(args, env={B.STOP_ENV: "3"})
    assert r.exit_code == 130 and "interrupted" in r.output
    assert not os.path.exists(out)
    assert sorted(f for f in os.listdir(part) if f.startswith("part-")) == \
        [f"part-{i:08d}.npz" for i in range(3)]
    # a half-written part (a crash during a write) is a temp file: never taken as done
    open(os.path.join(part, ".part-00000003.npz.x.tmp"), "wb").write(b"junk")
    # the pool, interrupted again after one more chunk (in-flight chunks still land)
    r = run_cli(args[:-2] + ["--workers", "2", "--threads", "1"], env={B.STOP_ENV: "1"})
    assert r.exit_code == 130, r.output
    n_parts = len([f for f in os.listdir(part) if f.startswith("part-")])
    assert 4 <= n_parts < 10
    # options that change the chunking belong to another job: refused, journal kept
    r = run_cli(args[:-4] + ["--chunk-size", "100"])
    assert r.exit_code == 2 and "different job" in r.output
    r = run_cli(args)
    assert r.exit_code == 0, r.output
    assert f"{n_parts * 200} resumed" in r.output
    check_raw(out, data)
    assert not os.path.exists(part)


def test_user_errors(data, tmp_path):
    r = run_cli([data["model"], str(tmp_path / "nothing"), "-o", str(tmp_path / "o.npz")])
    assert r.exit_code == 2 and "edgenet: error:" in r.output
    bad = tmp_path / "bad"
    bad.mkdir()
    np.save(bad / "a.npy", np.zeros((4, 3, 8, 8), np.float32))
    r = run_cli([data["model"], str(bad), "-o", str(tmp_path / "o.npz")])
    assert r.exit_code == 2 and "a.npy" in r.output and "(N, 1, 8, 8)" in r.output
    r = run_cli([data["model"], str(bad), "-o", str(tmp_path / "o.csv")])
    assert r.exit_code == 2 and ".npz or .parquet" in r.output


# -- Ray ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ray_session():
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    env = {"PYTHONPATH": os.pathsep.join([ROOT] + [p for p in sys.path if p])}
    ray.init(num_cpus=2, include_dashboard=False, logging_level="warning",
             log_to_driver=False, runtime_env={"env_vars": env})
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield ray
    ray.shutdown()


def test_ray_engine_matches_and_resumes(data, ray_session):
    out = str(data["dir"] / "ray.npz")
    args = [data["model"], data["inputs"], "-o", out, "--engine", "ray", "--workers", "2",
            "--threads", "1", "--chunk-size", "256", "--batch-size", "64"]
    r = run_cli(args, env={B.STOP_ENV: "2"})
    assert r.exit_code == 130, r.output
    assert len([f for f in os.listdir(out + ".partial") if f.startswith("part-")]) == 2
    r = run_cli(args)
    assert r.exit_code == 0, r.output
    assert "512 resumed" in r.output
    check_raw(out, data)


def test_ray_predictor_on_own_dataset(data, ray_session):
    ray = ray_session
    from edgenet.integrations.ray import Predictor, ship_model
    x = np.random.default_rng(2).standard_normal((300, 1, 8, 8)).astype(np.float32)
    ds = ray.data.from_items([{"id": i, "data": x[i]} for i in range(300)])
    ds = ds.map_batches(Predictor, batch_size=64, batch_format="numpy",
                        fn_constructor_kwargs={"model": ship_model(data["model"]), "threads": 1,
                                               "top_k": 2},
                        compute=ray.data.ActorPoolStrategy(size=1), num_cpus=1)
    rows = sorted(ds.take_all(), key=lambda r: r["id"])
    assert len(rows) == 300 and "data" not in rows[0]
    m = edgenet.load(data["model"], device="cpu")
    y = m(x)
    idx = np.argsort(-y, axis=1, kind="stable")[:, :2]
    np.testing.assert_array_equal(np.stack([r["topk_index"] for r in rows]), idx)
    assert [list(r["topk_label"]) for r in rows[:3]] == \
        [[LABELS[j] for j in idx[i]] for i in range(3)]


def test_images_without_preprocessing_warn_once(data, tmp_path):
    PIL = pytest.importorskip("PIL.Image")
    d = tmp_path / "imgs"
    d.mkdir()
    for i in range(3):
        PIL.fromarray(np.full((8, 8), 40 * i, np.uint8), mode="L").save(d / f"{i}.png")
    r = CliRunner().invoke(main, ["batch", data["model"], str(d), "-o", str(tmp_path / "o.npz"),
                                  "--workers", "0", "-q"])
    assert r.exit_code == 0, r.output
    warnings = [ln for ln in r.stderr.splitlines() if ln.startswith("edgenet: warning:")]
    assert len(warnings) == 1 and "preprocessing" in warnings[0], r.stderr
    with np.load(tmp_path / "o.npz") as z:
        assert list(z["key"]) == ["0.png", "1.png", "2.png"]
