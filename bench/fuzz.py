#!/usr/bin/env python
"""Fuzz the .edgenet reader, graph validation and runtime with mutated model files.

    python bench/fuzz.py --cases 10000                      # reference backend
    python bench/fuzz.py --cases 10000 --device cpu         # Numba kernels (crash hunting)
    python bench/fuzz.py --cases 300 --seed 7 --timeout 20 --batch 500 --save-failures DIR

A small valid model (Conv(t2) -> Relu -> GlobalAveragePool -> Flatten -> Gemm(q3), written
with ``edgenet.format.write_model``) is mutated in five ways:

- ``bitflip``   one bit flipped anywhere in the file (no checksum fixed: must be detected);
- ``bytes``     1-8 random bytes overwritten (must be detected);
- ``truncate``  a random prefix of the file (must be detected);
- ``append``    random bytes appended (must be detected);
- ``json``      the header JSON mutated *semantically* (shapes, offsets, attributes, op names,
                input names, encodings, metadata...) and re-serialized with a correct header
                length and CRC, so it reaches the structural and graph validation;
- ``data``      tensor bytes changed *and* their CRC fixed, so the code checks (invalid t2/q3
                codes, nonzero padding) and the kernels see them.

Each case is loaded in-process (``edgenet.load(path, device=...)``) and, when it loads, run
once on a fixed input of the original shape. Outcomes: ok, FormatError, ModelError,
InputError, other EdgenetError, other exception (a bug), crash (the worker process died),
hang (no progress within --timeout s: the watchdog kills the worker) and undetected (a
raw mutation of the kind that must be detected -- bitflip/bytes/truncate/append -- loaded
without error). Cases run in batches in worker subprocesses; a crash or hang costs only the
current case (the worker is restarted after it). Exit status 1 if any other exception,
crash, hang or undetected corruption occurred.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import random
import select
import subprocess
import sys
import tempfile
import time
import zlib
from collections import Counter

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

BAD_OUTCOMES = ("other exception", "crash", "hang", "undetected")
RAW_KINDS = ("bitflip", "bytes", "truncate", "append")
KINDS = RAW_KINDS + ("json", "data")


# the small model and the file-layout helpers are shared with the tests
from tests.helpers import build_model, join_file, model_input, split_file  # noqa: E402


# ----------------------------------------------------------------------------- mutators
_OPS = ["Conv", "ConvTranspose", "Gemm", "MatMul", "Affine", "Act", "PRelu", "MaxPool",
        "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "Add", "Sub", "Mul", "Div",
        "Concat", "Flatten", "Reshape", "Transpose", "Softmax", "Pad", "Resize",
        "DepthToSpace", "Slice", "Identity", "Loop", ""]
_NAMES = ["x", "c", "r", "p", "f", "y", "conv.w", "conv.b", "fc.w", "fc.b", "conv.w::scale",
          "fc.w::scale", "", "nope", "x\n", "\ud800", "a" * 2000]
_ATTR_KEYS = ["strides", "pads", "dilations", "group", "activation", "axis", "kernel",
              "ceil_mode", "count_include_pad", "shape", "perm", "mode", "value", "scales",
              "sizes", "blocksize", "starts", "ends", "axes", "steps", "output_padding",
              "coordinate_transformation_mode", "nearest_mode"]


def _interesting(rng: random.Random, depth: int = 0):
    r = rng.randrange(24)
    if r == 0:
        return None
    if r == 1:
        return rng.choice([True, False])
    if r == 2:
        return rng.choice([0, 1, -1, 2, 3, 7, 64, 255, 256, 2**31 - 1, 2**31, 2**32, 2**63 - 1,
                           2**63, 2**64, -2**63, 10**40, 10**300])
    if r == 3:
        return rng.choice([0.0, -0.0, 0.5, -1.5, 1e-45, 3.4028234663852886e38, 1e308, -1e308])
    if r == 4:
        return rng.choice(_NAMES + _OPS)
    if r == 5:
        return []
    if r == 6:
        return {}
    if r == 7:
        return [rng.choice([0, 1, 2, -1, 3, 2**31]) for _ in range(rng.randrange(0, 10))]
    if r == 8:
        return [rng.choice([1, 2, 3, 5, 6, 27]) for _ in range(rng.randrange(0, 9))]
    if r == 9 and depth < 3:
        return [_interesting(rng, depth + 1) for _ in range(rng.randrange(0, 4))]
    if r == 10 and depth < 3:
        return {rng.choice(_ATTR_KEYS + ["kind", "alpha", "beta"]): _interesting(rng, depth + 1)
                for _ in range(rng.randrange(0, 4))}
    if r == 11:
        return {"kind": rng.choice(["Relu", "LeakyRelu", "Clip", "Elu", "Selu", "Sigmoid",
                                    "HardSigmoid", "HardSwish", "Tanh", "None", "Bogus"]),
                "alpha": rng.choice([0.0, 0.01, -1e30, 1e30, None, "a"]),
                "beta": rng.choice([0.0, 6.0, 1e38, None, [1]])}
    if r == 12:
        v = [[]]
        for _ in range(rng.randrange(10, 60)):
            v = [v]
        return v
    if r == 13:
        return rng.choice(["t2", "q3", "t5", "i8", "f32", "f16", "f64", "T2"])
    return rng.randrange(-3, 40)


def _paths(obj, prefix=()):
    """Every (path, value) inside a JSON tree."""
    yield prefix, obj
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, prefix + (i,))


def _get(obj, path):
    for p in path:
        obj = obj[p]
    return obj


def _perturb_int(rng, v):
    return rng.choice([v + 1, v - 1, v * 2, v // 2, -v, 0, v + 64, v * 1000003, 2**31 - 1,
                       2**31 + v, 2**62, 10**20])


def mutate_json(header: dict, rng: random.Random) -> tuple:
    """A semantic mutation of the header; returns (header, description)."""
    h = copy.deepcopy(header)
    g = h["graph"]
    nodes = g["nodes"]
    r = rng.randrange(14)
    if r <= 3:  # a random leaf or subtree anywhere: replace, perturb, delete
        paths = [p for p, _ in _paths(h) if p]
        path = rng.choice(paths)
        parent = _get(h, path[:-1])
        old = parent[path[-1]]
        how = rng.randrange(4)
        if how == 0 and type(old) is int:
            parent[path[-1]] = _perturb_int(rng, old)
        elif how == 1 and isinstance(parent, dict):
            del parent[path[-1]]
            return h, f"del {path}"
        elif how == 2 and isinstance(parent, list):
            parent.insert(path[-1], copy.deepcopy(old))
            return h, f"dup {path}"
        else:
            parent[path[-1]] = _interesting(rng)
        return h, f"set {path}"
    if r == 4:  # node attribute: set an existing or a new key to an interesting value
        n = rng.choice(nodes)
        attrs = n.setdefault("attrs", {})
        key = rng.choice(list(attrs) + _ATTR_KEYS) if attrs else rng.choice(_ATTR_KEYS)
        v = attrs.get(key)
        if isinstance(v, list) and v and all(type(e) is int for e in v) and rng.random() < .6:
            i = rng.randrange(len(v))
            v = list(v)
            v[i] = _perturb_int(rng, v[i]) if rng.random() < .7 else rng.randrange(-2, 9)
            attrs[key] = v
        else:
            attrs[key] = _interesting(rng)
        return h, f"attr {n['name']}.{key}"
    if r == 5:  # op name
        n = rng.choice(nodes)
        n["op"] = rng.choice(_OPS)
        return h, f"op {n['name']}={n['op']}"
    if r == 6:  # input / output names: rewire
        n = rng.choice(nodes)
        key = rng.choice(["inputs", "outputs"])
        lst = n[key]
        how = rng.randrange(3)
        if how == 0 and lst:
            lst[rng.randrange(len(lst))] = rng.choice(_NAMES)
        elif how == 1:
            lst.append(rng.choice(_NAMES))
        elif lst:
            lst.pop(rng.randrange(len(lst)))
        return h, f"{key} {n['name']}"
    if r == 7:  # tensor shape
        t = rng.choice(h["tensors"])
        s = t["shape"]
        how = rng.randrange(4)
        if how == 0 and s:
            i = rng.randrange(len(s))
            s[i] = _perturb_int(rng, s[i])
        elif how == 1:
            s.append(rng.choice([1, 2, 2**31 - 1]))
        elif how == 2 and s:
            s.pop()
        else:
            t["shape"] = [rng.choice([2**31 - 1, 2**30, 65536, 3]) for _ in range(8)]
        return h, f"shape {t['name']}"
    if r == 8:  # tensor offset / nbytes / crc / encoding / scale
        t = rng.choice(h["tensors"])
        f = rng.choice(["offset", "nbytes", "crc32", "encoding", "scale", "name"])
        v = t.get(f)
        if type(v) is int and rng.random() < .7:
            t[f] = _perturb_int(rng, v)
        elif f == "encoding":
            t[f] = rng.choice(["t2", "q3", "t5", "i8", "f32", "f16", "x"])
        else:
            t[f] = rng.choice(_NAMES + [None, 5])
        return h, f"tensor {t['name']}.{f}"
    if r == 9:  # graph input/output declarations
        v = rng.choice(g["inputs"] + g["outputs"])
        f = rng.choice(["shape", "name", "dtype"])
        if f == "shape" and v["shape"] and rng.random() < .7:
            i = rng.randrange(len(v["shape"]))
            v["shape"][i] = rng.choice([None, 0, 1, 2, 3, 8, 2**31 - 1, 2**31, -1])
        else:
            v[f] = _interesting(rng)
        return h, f"io {f}"
    if r == 10:  # node order / duplication / removal
        how = rng.randrange(3)
        if how == 0 and len(nodes) > 1:
            i, j = rng.sample(range(len(nodes)), 2)
            nodes[i], nodes[j] = nodes[j], nodes[i]
        elif how == 1:
            nodes.insert(rng.randrange(len(nodes) + 1), copy.deepcopy(rng.choice(nodes)))
        elif nodes:
            nodes.pop(rng.randrange(len(nodes)))
        return h, "nodes order"
    if r == 11:  # metadata
        md = h["metadata"]
        k = rng.choice(["labels", "preprocessing", "producer", "mean"])
        if k == "preprocessing" and isinstance(md.get(k), dict) and rng.random() < .7:
            md[k][rng.choice(["mean", "std", "size", "layout"])] = _interesting(rng)
        else:
            md[k] = _interesting(rng)
        return h, f"metadata {k}"
    if r == 12:  # top-level fields
        k = rng.choice(["format", "version", "graph", "tensors", "metadata", "extra"])
        h[k] = _interesting(rng)
        return h, f"top {k}"
    # several mutations at once
    done = []
    for _ in range(rng.randrange(2, 5)):
        try:
            h, d = mutate_json(h, rng)
            done.append(d)
        except (KeyError, TypeError, IndexError, ValueError, AttributeError):
            pass  # an earlier mutation removed the structure this one targets
    return h, "multi: " + "; ".join(done)


def mutate(blob: bytes, rng: random.Random, kind: str | None = None):
    """One mutated file: returns (bytes, kind, description, must_detect)."""
    kind = kind or rng.choices(KINDS, weights=[3, 2, 2, 1, 8, 2])[0]
    b = bytearray(blob)
    if kind == "bitflip":
        i = rng.randrange(len(b) * 8)
        b[i // 8] ^= 1 << (i % 8)
        return bytes(b), kind, f"bit {i} (byte {i // 8})", True
    if kind == "bytes":
        pos = sorted(rng.sample(range(len(b)), rng.randrange(1, 9)))
        for p in pos:
            b[p] ^= rng.randrange(1, 256)  # never a no-op
        return bytes(b), kind, f"bytes {pos}", True
    if kind == "truncate":
        n = rng.choice([rng.randrange(0, 40), rng.randrange(0, len(b))])
        return bytes(b[:n]), kind, f"prefix {n}", True
    if kind == "append":
        n = rng.choice([1, 63, 64, rng.randrange(1, 500)])
        extra = bytes(rng.choice([0, rng.randrange(256)]) for _ in range(n))
        return bytes(b) + extra, kind, f"append {n}", True
    fields, header, data = split_file(blob)
    if kind == "json":
        h, desc = mutate_json(header, rng)
        try:
            out = join_file(fields, h, data)
        except (ValueError, TypeError):  # e.g. lone surrogate not encodable: plain header
            h, desc = mutate_json(header, random.Random(rng.random()))
            out = join_file(fields, h, data)
        return out, kind, desc, False
    # data: change tensor bytes and fix the tensor CRC so the code checks/kernels see them
    d = bytearray(data)
    t = rng.choice([t for t in header["tensors"] if t["nbytes"]])
    for _ in range(rng.randrange(1, 4)):
        p = t["offset"] + rng.randrange(t["nbytes"])
        d[p] = rng.randrange(256) if rng.random() < .5 else d[p] ^ (1 << rng.randrange(8))
    t["crc32"] = zlib.crc32(bytes(d[t["offset"]:t["offset"] + t["nbytes"]])) & 0xFFFFFFFF
    return join_file(fields, header, bytes(d)), kind, f"data {t['name']}", False


# ----------------------------------------------------------------------------- one case
def classify(exc) -> str:
    import edgenet
    if exc is None:
        return "ok"
    for cls, name in ((edgenet.ModelError, "ModelError"), (edgenet.FormatError, "FormatError"),
                      (edgenet.InputError, "InputError")):
        if isinstance(exc, cls):
            return name
    if isinstance(exc, edgenet.EdgenetError):
        return "other EdgenetError"
    return "other exception"


def run_case(path: str, x: np.ndarray, device: str = "reference"):
    """Load and run one file; returns (outcome, exception or None)."""
    import edgenet
    try:
        m = edgenet.load(path, device=device)
        names = [s.name for s in m.inputs]
        m.run({names[0]: x} if len(names) == 1 else {n: x for n in names})
    except Exception as e:  # noqa: BLE001 - classifying is the point
        return classify(e), e
    return "ok", None


def gen_case(base: bytes, seed: int, index: int):
    rng = random.Random(f"{seed}:{index}")
    return mutate(base, rng)


# ----------------------------------------------------------------------------- worker
def worker(args):
    """Run cases [start, stop) and report on stdout: 'S i' before, 'R i outcome' after."""
    import resource
    if args.mem_limit:
        lim = args.mem_limit << 20
        resource.setrlimit(resource.RLIMIT_AS, (lim, lim))
    base = open(args.base, "rb").read()
    x = model_input()
    # compile/warm every kernel on the valid model before the watchdog starts counting
    out, exc = run_case(args.base, x, args.device)
    if out != "ok":
        print(f"E base model fails: {exc!r}", flush=True)
        sys.exit(3)
    print("W", flush=True)
    fd, path = tempfile.mkstemp(suffix=".edgenet", dir=args.tmpdir)
    os.close(fd)
    for i in range(args.start, args.stop):
        blob, kind, desc, must_detect = gen_case(base, args.seed, i)
        with open(path, "wb") as f:
            f.write(blob)
        print(f"S {i}", flush=True)
        outcome, exc = run_case(path, x, args.device)
        if outcome == "ok" and must_detect:
            outcome = "undetected"
        detail = "" if exc is None or outcome not in BAD_OUTCOMES else \
            f"{type(exc).__name__}: {str(exc)[:300]}"
        print("R " + json.dumps([i, kind, outcome, desc, detail]), flush=True)
    os.unlink(path)


def _spawn(args, start, stop, tmpdir):
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--base", args.base_path,
           "--seed", str(args.seed), "--start", str(start), "--stop", str(stop),
           "--device", args.device, "--tmpdir", tmpdir, "--mem-limit", str(args.mem_limit)]
    err = tempfile.TemporaryFile(dir=tmpdir)
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, bufsize=0)
    p.err_file = err
    return p


def _lines(p, timeout):
    """Complete stdout lines of worker ``p`` available within ``timeout`` s ([] if none);
    None at EOF. Reads the raw fd: select() and Python-level buffering do not mix."""
    r, _, _ = select.select([p.stdout], [], [], timeout)
    if not r:
        return []
    chunk = os.read(p.stdout.fileno(), 1 << 16)
    if not chunk:
        return None
    p.buf = getattr(p, "buf", b"") + chunk
    *lines, p.buf = p.buf.split(b"\n")
    return [ln.decode() for ln in lines]


def _stderr(p):
    p.err_file.seek(0)
    return p.err_file.read().decode(errors="replace")[-1500:]


def fuzz(args) -> dict:
    counts = Counter()
    by_kind = Counter()
    failures = []
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmpdir:
        args.base_path = build_model(os.path.join(tmpdir, "base.edgenet"))
        base = open(args.base_path, "rb").read()
        next_i, stop_all = 0, args.cases
        while next_i < stop_all:
            stop = min(stop_all, next_i + args.batch)
            p = _spawn(args, next_i, stop, tmpdir)
            current, warm = None, False
            deadline = time.time() + args.warm_timeout
            while True:
                lines = _lines(p, 0.5)
                if lines is None:  # EOF: the worker exited
                    rc = p.wait()
                    if current is not None:  # died inside a case: a crash
                        counts["crash"] += 1
                        kind, desc = gen_case(base, args.seed, current)[1:3]
                        failures.append([current, kind, desc, "crash",
                                         f"exit status {rc}: {_stderr(p)[-500:]}"])
                        next_i = current + 1
                    elif not warm:
                        sys.exit(f"fuzz: worker failed to start: {_stderr(p)}")
                    elif rc != 0:  # outside a case: a bug in this harness
                        sys.exit(f"fuzz: worker exited with status {rc} between cases: "
                                 f"{_stderr(p)}")
                    else:
                        next_i = stop
                    break
                for line in lines:
                    tag, _, rest = line.partition(" ")
                    if tag == "W":
                        warm = True
                    elif tag == "E":
                        sys.exit(f"fuzz: {rest}")
                    elif tag == "S":
                        current = int(rest)
                        deadline = time.time() + args.timeout
                    elif tag == "R":
                        i, kind, outcome, desc, detail = json.loads(rest)
                        counts[outcome] += 1
                        by_kind[(kind, outcome)] += 1
                        if outcome in BAD_OUTCOMES:
                            failures.append([i, kind, desc, outcome, detail])
                        current = None
                        done = sum(counts.values())
                        if args.progress and done % args.progress == 0:
                            print(f"  {done}/{args.cases} cases, {time.time() - t0:.0f} s: "
                                  f"{dict(counts)}", file=sys.stderr, flush=True)
                if time.time() > deadline:
                    p.kill()
                    p.wait()
                    if current is None:
                        sys.exit("fuzz: worker did not warm up in time")
                    counts["hang"] += 1
                    blob, kind, desc, _ = gen_case(base, args.seed, current)
                    failures.append([current, kind, desc, "hang", f"> {args.timeout} s"])
                    next_i = current + 1
                    break
            p.stdout.close()
            p.err_file.close()
        if args.save_failures and failures:
            os.makedirs(args.save_failures, exist_ok=True)
            for f in failures:
                blob = gen_case(base, args.seed, f[0])[0]
                with open(os.path.join(args.save_failures, f"case{f[0]}.edgenet"), "wb") as fh:
                    fh.write(blob)
    return {"cases": sum(counts.values()), "seconds": round(time.time() - t0, 1),
            "device": args.device, "seed": args.seed, "outcomes": dict(counts),
            "by_kind": {f"{k}/{o}": n for (k, o), n in sorted(by_kind.items())},
            "failures": failures[:50]}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="reference", choices=["reference", "cpu"])
    ap.add_argument("--batch", type=int, default=1000, help="cases per worker process")
    ap.add_argument("--timeout", type=float, default=120.0,
                    help="per-case watchdog (s); generous: a case may JIT-compile a kernel")
    ap.add_argument("--warm-timeout", type=float, default=600.0)
    ap.add_argument("--mem-limit", type=int, default=4096,
                    help="worker address-space limit in MiB (0: none)")
    ap.add_argument("--progress", type=int, default=1000)
    ap.add_argument("--save-failures", default=None, help="directory for failing files")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--base", help=argparse.SUPPRESS)
    ap.add_argument("--start", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--stop", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--tmpdir", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return worker(args)
    res = fuzz(args)
    if args.json:
        print(json.dumps(res, indent=1))
    else:
        print(f"edgenet fuzz: {res['cases']} mutated files, device={res['device']}, "
              f"seed={res['seed']}, {res['seconds']} s")
        order = ["ok", "FormatError", "ModelError", "InputError", "other EdgenetError",
                 "other exception", "crash", "hang", "undetected"]
        for o in order:
            print(f"  {o:20s} {res['outcomes'].get(o, 0)}")
        print("  by mutation kind:")
        for k, n in res["by_kind"].items():
            print(f"    {k:32s} {n}")
        for f in res["failures"][:20]:
            print(f"  FAIL case {f[0]} ({f[1]}: {f[2]}): {f[3]} {f[4]}")
    bad = sum(res["outcomes"].get(o, 0) for o in BAD_OUTCOMES)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
