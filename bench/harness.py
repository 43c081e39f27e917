#!/usr/bin/env python
"""edgenet vs onnxruntime and OpenVINO (fp32, int8 QDQ) vs PyTorch eager: latency, memory,
size, compile.

    python bench/harness.py                       # everything (takes a while)
    python bench/harness.py --models resnet20 --batches 1 --threads 2 --runs 20
    python bench/harness.py --tiers avx512vnni,avx2,generic --skip memory,compile,agreement \
        --batches 1 --threads 2 --variants f32,ternary,ternary-a8:int8,ternary-a8:auto,ternary-a8:f32

Tiers: each ``--tiers`` entry runs the latency part in its own process with
``EDGENET_SIMD`` set (a forced tier also restricts numba's codegen: edgenet/_tiers.py); the
peers run in that process too, interleaved, with their own (native) kernels. A variant
``FILE:MODE`` loads the file variant FILE with ``activations=MODE`` (``auto`` is the
default for calibrated files). Peers: onnxruntime (``session.intra_op.allow_spinning=0``)
and OpenVINO (``INFERENCE_NUM_THREADS``, ``PERFORMANCE_HINT=LATENCY``,
``INFERENCE_PRECISION_HINT=f32``: on CPUs with bf16 OpenVINO would otherwise run the fp32
model in bf16), each on the same ONNX file for fp32 and the same QDQ model for int8.
``--ov-isa matched`` limits OpenVINO, in each forced tier's process, to that tier's ISA
(``ONEDNN_MAX_CPU_ISA``: avx2 -> AVX2, avx512 -> AVX512_CORE, avx512vnni ->
AVX512_CORE_VNNI; generic has no counterpart and keeps the native kernels): what OpenVINO
does on a CPU of that tier. onnxruntime has no such switch and keeps its native kernels.

Latency: all engines in ONE process, each first warmed by `--warmup` untimed calls (steady
state), interleaved in blocks of `--block` calls (the machines
are shared and noisy; medians and ratios from one run are what we quote); OpenVINO's two
engines in a second pass of their own (``--openvino separate``, the default: its inference
threads keep running after a call and slowed the engines interleaved with them 1.7-2x). Peak memory: one
fresh process per engine and model (VmHWM after load + 5 runs; ru_maxrss would include the
parent's RSS, which Linux carries across exec). Compile time: `edgenet
run` with an empty compile cache, then again with the cache filled (warm start).
Writes bench/RESULTS.md (the auto-generated part between markers) and bench/results.json.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
CACHE = os.path.join(HERE, "models_cache")
MODELS = ["resnet18", "resnet20", "densenet121", "mobilenetv2", "mobilenetv3_small",
          "mnist_seed_relu"]
PEERS = ("onnxruntime fp32", "onnxruntime int8", "openvino fp32", "openvino int8")
VARIANTS = {"f32": dict(weights="f32"),
            "ternary": dict(weights="ternary", keep_float=()),
            "quinary": dict(weights="quinary", keep_float=()),
            # int8 activations (calibrated on CALIB random inputs: the bench models have
            # seeded random weights, there is no dataset to calibrate on)
            "ternary-a8": dict(weights="ternary", keep_float=(), activations="int8"),
            "f32-a8": dict(weights="f32", activations="int8")}
CALIB = 32


def onnx_path(name):
    p = os.path.join(CACHE, name + ".onnx")
    if not os.path.exists(p):
        subprocess.run([sys.executable, os.path.join(HERE, "models.py"), "--out", CACHE, name],
                       check=True)
    return p


def edgenet_path(name, variant):
    from converters.convert import convert
    p = os.path.join(CACHE, f"{name}.{variant}.edgenet")
    if not os.path.exists(p):
        t0 = time.perf_counter()
        kw = dict(VARIANTS[variant])
        if kw.get("activations") == "int8":
            shape = ort_session(onnx_path(name), 1).get_inputs()[0].shape
            kw["calibration"] = np.random.default_rng(1).standard_normal(
                [CALIB] + [int(d) for d in shape[1:]]).astype(np.float32)
        convert(onnx_path(name), p, **kw)
        print(f"  converted {name} {variant} in {time.perf_counter() - t0:.1f} s", flush=True)
    return p


def int8_path(name, shape, src=None, calib=None):
    """onnxruntime static QDQ int8 model (uint8 activations, int8 per-channel weights: the
    U8S8 combination ORT's x86 kernels are fastest with; QInt8 activations ran 5x slower
    here), calibrated on ``calib`` (default: 8 random inputs)."""
    p = os.path.join(CACHE, name + ".u8s8.onnx")
    if os.path.exists(p):
        return p
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process
    if calib is None:
        rng = np.random.default_rng(0)
        calib = [rng.standard_normal((1, *shape[1:])).astype(np.float32) for _ in range(8)]

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.data = iter([{"input": np.asarray(c, np.float32).reshape(1, *c.shape[-3:])}
                              for c in calib])

        def get_next(self):
            return next(self.data, None)

    pre = p + ".pre.onnx"
    quant_pre_process(src or onnx_path(name), pre)
    quantize_static(pre, p, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    os.unlink(pre)
    return p


def ort_session(path, threads):
    """The onnxruntime session `edgenet bench --compare` times (edgenet.benchmark: idle
    workers do not spin); the harness needs onnxruntime."""
    from edgenet.benchmark import ort_session as make
    sess = make(path, threads)
    if sess is None:
        raise ImportError("bench/harness.py needs onnxruntime: pip install onnxruntime")
    return sess


def ov_model(path, threads):
    """An OpenVINO CPU infer request for the ONNX file (None without openvino): the one
    `edgenet bench --compare` times (edgenet.benchmark.ov_session)."""
    from edgenet.benchmark import ov_session
    return ov_session(path, threads)


def cpu_model():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform
    return platform.processor() or platform.machine()


def _load_variant(edgenet, name, v, threads):
    fv, _, mode = v.partition(":")
    return edgenet.load(edgenet_path(name, fv), threads=threads, activations=mode or None)


OV_SEPARATE = True   # --openvino interleaved: time OpenVINO in the same pass as the rest
# --ov-isa matched: oneDNN's ISA cap for OpenVINO in a forced tier's process (read by oneDNN
# at its first use, so it is set in the child's environment)
OV_ISA = {"avx2": "AVX2", "avx512": "AVX512_CORE", "avx512vnni": "AVX512_CORE_VNNI"}


# An idle gap before each block: an engine's workers that spin after its calls (edgenet's
# OpenMP workers ~0.3 ms, _jit.py; onnxruntime's are told not to) would otherwise take a
# core from the next engine's first call.
BLOCK_GAP_S = 0.002
# Untimed calls of each engine before its timed ones (``--warmup``): steady-state latency.
# Until the twentieth session 2: edgenet's adaptive threads (runtime.pick_one) then spent
# about 7 of an engine's 20 timed calls on one thread (its sampling of both thread counts)
# and the edgenet medians included them; the peers' first calls were timed the same way.
WARMUP = 20


def latency(models, batches, threads_list, runs, block, variants, use_torch):
    import edgenet
    from edgenet.cpu import simd
    tier = simd.tier()
    rows = []
    for name in models:
        src = onnx_path(name)
        for threads in threads_list:
            sess = ort_session(src, threads)
            shape = sess.get_inputs()[0].shape
            engines = {"onnxruntime fp32": None}
            try:
                engines["onnxruntime int8"] = ort_session(int8_path(name, shape), threads)
            except Exception as e:  # noqa: BLE001 - a bench keeps going
                print(f"  (no int8 model for {name}: {e})")
            ovs = {}
            try:
                r = ov_model(src, threads)
                if r is not None:
                    ovs["openvino fp32"] = r
                    if "onnxruntime int8" in engines:
                        ovs["openvino int8"] = ov_model(int8_path(name, shape), threads)
            except Exception as e:  # noqa: BLE001
                print(f"  (no OpenVINO for {name}: {e})")
            ours = {v: _load_variant(edgenet, name, v, threads) for v in variants}
            tmod = None
            if use_torch:
                try:
                    import torch
                    from bench.models import torch_model
                    torch.set_num_threads(threads)
                    tmod = torch_model(name)
                except Exception as e:  # noqa: BLE001
                    print(f"  (no torch for {name}: {e})")
            for batch in batches:
                x = np.random.default_rng(0).standard_normal(
                    [batch if not isinstance(d, int) else d for d in shape]).astype(np.float32)
                calls = {"onnxruntime fp32": lambda: sess.run(None, {"input": x})}
                if "onnxruntime int8" in engines:
                    s8 = engines["onnxruntime int8"]
                    calls["onnxruntime int8"] = lambda s8=s8: s8.run(None, {"input": x})
                for k, r in ovs.items():
                    calls[k] = lambda r=r: r.infer({0: x})
                for v, m in ours.items():
                    calls[f"edgenet {v}"] = lambda m=m: m(x)
                if tmod is not None:
                    import torch
                    tx = torch.from_numpy(x)

                    def tcall():
                        with torch.inference_mode():
                            tmod(tx)
                    calls["pytorch eager"] = tcall
                for f in calls.values():  # warm up / compile, then steady state (WARMUP)
                    for _ in range(max(2, WARMUP)):
                        f()
                # OpenVINO's inference threads keep running after a call: interleaved with
                # them, edgenet's int8 MobileNetV3-small took 6.3-7.5 ms instead of 3.6 (1
                # thread; ORT unaffected). OV_SEPARATE: OpenVINO's two engines are timed in
                # a pass of their own, after the others (interleaved with each other).
                passes = [calls]
                if OV_SEPARATE and ovs:
                    passes = [{k: f for k, f in calls.items() if k not in ovs},
                              {k: f for k, f in calls.items() if k in ovs}]
                times = {k: [] for k in calls}
                for group in passes:
                    for _ in range(max(1, runs // block)):
                        for k, f in group.items():
                            time.sleep(BLOCK_GAP_S)
                            for _ in range(block):
                                t0 = time.perf_counter()
                                f()
                                times[k].append(time.perf_counter() - t0)
                base = float(np.median(times["onnxruntime fp32"]))
                meds = {k: float(np.median(t)) for k, t in times.items()}
                fast32 = min(meds[k] for k in ("onnxruntime fp32", "openvino fp32") if k in meds)
                fast8 = min((meds[k] for k in ("onnxruntime int8", "openvino int8") if k in meds),
                            default=float("nan"))
                for k, t in times.items():
                    med = meds[k]
                    rows.append({"model": name, "batch": batch, "threads": threads, "engine": k,
                                 "tier": tier, "cpu": cpu_model(),
                                 "ov_isa": os.environ.get("ONEDNN_MAX_CPU_ISA") if k in ovs
                                 else None,
                                 "median_ms": med * 1e3, "p90_ms": float(np.percentile(t, 90)) * 1e3,
                                 "ratio_vs_ort_fp32": med / base,
                                 "ratio_vs_fastest_fp32": med / fast32,
                                 "ratio_vs_fastest_int8": med / fast8,
                                 "int8_convs": getattr(ours.get(k[len("edgenet "):]), "int8_convs", None)})
                    print(f"  [{tier}] {name:16s} b{batch} t{threads} {k:24s} {med * 1e3:9.3f} ms "
                          f"({med / base:.2f}x ORT fp32, {med / fast32:.2f}x fastest fp32, "
                          f"{med / fast8:.2f}x fastest int8)", flush=True)
    return rows


def latency_tiers(tiers, argv, ov_isa="native"):
    """The latency part once per tier, each in its own process (EDGENET_SIMD set before
    numba is imported); rows collected from their JSON. ``ov_isa="matched"``: OpenVINO
    limited to the tier's ISA in that process (OV_ISA)."""
    rows = []
    for t in tiers:
        with tempfile.TemporaryDirectory() as d:
            out = os.path.join(d, "rows.json")
            env = dict(os.environ, EDGENET_SIMD=t)
            env.pop("NUMBA_CPU_NAME", None)
            env.pop("NUMBA_CPU_FEATURES", None)
            env.pop("ONEDNN_MAX_CPU_ISA", None)
            if ov_isa == "matched" and t in OV_ISA:
                env["ONEDNN_MAX_CPU_ISA"] = OV_ISA[t]
            r = subprocess.run([sys.executable, __file__, *argv, "--tiers", t,
                                "--skip", "memory,compile,agreement", "--rows-out", out],
                               env=env, cwd=ROOT)
            if r.returncode == 0 and os.path.exists(out):
                with open(out) as f:
                    rows += json.load(f)
            else:
                print(f"  (tier {t} failed: exit {r.returncode})")
    return rows


_MEM_SNIPPET = r"""
import sys, numpy as np
engine, path, shape = sys.argv[1], sys.argv[2], [int(s) for s in sys.argv[3].split(',')]
x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
if engine == 'edgenet':
    import edgenet
    m = edgenet.load(path, threads=2); f = lambda: m(x)
else:
    import onnxruntime as ort
    so = ort.SessionOptions(); so.intra_op_num_threads = 2
    s = ort.InferenceSession(path, so, providers=['CPUExecutionProvider'])
    f = lambda: s.run(None, {s.get_inputs()[0].name: x})
for _ in range(5): f()
print(int(open('/proc/self/status').read().split('VmHWM:')[1].split()[0]) / 1024)
"""


def peak_memory(models, variants):
    rows = []
    for name in models:
        src = onnx_path(name)
        shape = ort_session(src, 1).get_inputs()[0].shape
        shp = ",".join(str(d if isinstance(d, int) else 1) for d in shape)
        cases = [("onnxruntime fp32", "ort", src)] + [
            (f"edgenet {v}", "edgenet", edgenet_path(name, v.partition(":")[0]))
            for v in variants]
        for label, eng, path in cases:
            for policy in (["expanded", "packed"] if eng == "edgenet" else [None]):
                env = dict(os.environ)
                if policy:
                    env["EDGENET_WEIGHTS_POLICY"] = policy
                out = subprocess.run([sys.executable, "-c", _MEM_SNIPPET, eng, path, shp],
                                     capture_output=True, text=True, env=env, cwd=ROOT)
                if out.returncode:
                    print(out.stderr[-2000:])
                    continue
                mb = float(out.stdout.strip().splitlines()[-1])
                lab = label + (f" ({policy})" if policy else "")
                rows.append({"model": name, "engine": lab, "peak_rss_mb": mb,
                             "file_bytes": os.path.getsize(path)})
                print(f"  {name:16s} {lab:28s} peak RSS {mb:8.1f} MB  file "
                      f"{os.path.getsize(path) / 1e6:8.2f} MB", flush=True)
    return rows


def compile_times(models, variants=("ternary", "ternary-a8")):
    rows = []
    for name in models:
        x = os.path.join(CACHE, name + ".input.npy")
        shape = ort_session(onnx_path(name), 1).get_inputs()[0].shape
        np.save(x, np.zeros([d if isinstance(d, int) else 1 for d in shape], np.float32))
        for v in variants:
            path = edgenet_path(name, v)
            with tempfile.TemporaryDirectory() as cache:
                env = dict(os.environ, EDGENET_CACHE_DIR=cache)
                res = {}
                for phase in ("first run (empty cache)", "warm start (cache filled)"):
                    t0 = time.perf_counter()
                    subprocess.run([sys.executable, "-m", "edgenet.cli", "run", path, x],
                                   check=True, env=env, cwd=ROOT, capture_output=True)
                    res[phase] = time.perf_counter() - t0
            rows.append({"model": f"{name} {v}", **res})
            print(f"  {name} {v}: " + ", ".join(f"{k} {t:.2f} s" for k, t in res.items()),
                  flush=True)
    return rows


def digits_images(size):
    """sklearn's 1,797 8x8 digits as (N, 3, size, size) float32 images (nearest upsampling,
    replicated channels, normalized to about zero mean / unit spread) and labels."""
    from sklearn.datasets import load_digits
    d = load_digits()
    x = d.images.astype(np.float32) / 16.0
    r = -(-size // 8)
    x = np.kron(x, np.ones((r, r), np.float32))[:, :size, :size]
    x = (x - 0.3) / 0.4
    return np.ascontiguousarray(np.repeat(x[:, None], 3, axis=1)), d.target


def digits_head_model(name, n_eval):
    """The bench model ``name`` (random conv weights) with its final Gemm replaced by a
    10-class linear head fitted (logistic regression) on its own penultimate features of
    the digits not used for evaluation: a float classifier whose top-1 means something,
    so agreement can be measured on real inputs. Returns (onnx path, x_eval, y_eval,
    x_train)."""
    import onnx
    from onnx import numpy_helper
    from sklearn.linear_model import LogisticRegression
    p = os.path.join(CACHE, f"{name}.digits.onnx")
    shape = ort_session(onnx_path(name), 1).get_inputs()[0].shape
    x, y = digits_images(int(shape[-1]))
    rng = np.random.default_rng(0)
    order = rng.permutation(len(y))
    ev, tr = order[:n_eval], order[n_eval:]
    if not os.path.exists(p):
        m = onnx.load(onnx_path(name))
        gemm = [nd for nd in m.graph.node if nd.op_type == "Gemm"][-1]
        feat = gemm.input[0]
        m2 = onnx.ModelProto()
        m2.CopyFrom(m)
        m2.graph.output.append(onnx.helper.make_tensor_value_info(feat, onnx.TensorProto.FLOAT, None))
        tmp = p + ".feat.onnx"
        onnx.save(m2, tmp)
        s = ort_session(tmp, 2)
        f = np.concatenate([s.run([feat], {"input": x[tr][i:i + 32]})[0]
                            for i in range(0, len(tr), 32)])
        os.unlink(tmp)
        clf = LogisticRegression(max_iter=2000, C=1.0).fit(f.reshape(len(tr), -1), y[tr])
        trans_b = any(a.name == "transB" and a.i == 1 for a in gemm.attribute)
        w = clf.coef_.astype(np.float32)
        inits = {t.name: t for t in m.graph.initializer}
        inits[gemm.input[1]].CopyFrom(numpy_helper.from_array(w if trans_b else w.T.copy(),
                                                              gemm.input[1]))
        inits[gemm.input[2]].CopyFrom(numpy_helper.from_array(clf.intercept_.astype(np.float32),
                                                              gemm.input[2]))
        out = m.graph.output[0]
        out.type.tensor_type.shape.dim[1].dim_value = 10
        for vi in list(m.graph.value_info):
            if vi.name == out.name:
                m.graph.value_info.remove(vi)
        onnx.checker.check_model(m)
        onnx.save(m, p)
    return p, x[ev], y[ev], x[tr]


def agreement(models, n):
    """Top-1 agreement with onnxruntime fp32 on the float model, and accuracy, on n real
    inputs: sklearn digits upsampled to the model's input size, through the bench model
    with a fitted 10-class linear head (``digits_head_model``: random inputs are useless
    here, the random-weight models predict one class for every input). edgenet files
    converted from that model; int8 activations calibrated on 32 training digits. Plus the
    bundled QAT ternary digits model (f32 vs int8 activations, calibrated on 50 of its 300
    samples, scored on the other 250)."""
    import edgenet
    from converters.convert import convert
    from edgenet import quant
    rows = []
    for name in models:
        src, xe, ye, xt = digits_head_model(name, n)
        sess = ort_session(src, 2)
        files = {}
        for v, kw in (("f32", dict(weights="f32")),
                      ("ternary", dict(weights="ternary", keep_float=())),
                      ("ternary, first/last float", dict(weights="ternary")),
                      ("ternary-a8", dict(weights="ternary", keep_float=(), activations="int8")),
                      ("f32-a8", dict(weights="f32", activations="int8"))):
            path = os.path.join(CACHE, f"{name}.digits.{v.replace(', ', '-').replace('/', '')}.edgenet")
            if kw.get("activations"):
                kw["calibration"] = xt[:32]
            convert(src, path, **kw)
            files[f"edgenet {v}"] = edgenet.load(path, threads=2)
        engines = {k: (lambda x, m=m: m(x)) for k, m in files.items()}
        try:
            s8 = ort_session(int8_path(name + ".digits", xe.shape, src=src, calib=xt[:8]), 2)
            engines["onnxruntime int8"] = lambda x, s8=s8: s8.run(None, {"input": x})[0]
        except Exception as e:  # noqa: BLE001
            print(f"  (no int8 model for {name}: {e})")
        preds = {"onnxruntime fp32": []}
        preds.update({k: [] for k in engines})
        for i in range(0, len(ye), 8):
            x = xe[i:i + 8]
            preds["onnxruntime fp32"].append(sess.run(None, {"input": x})[0].argmax(1))
            for k, f in engines.items():
                preds[k].append(f(x).argmax(1))
        preds = {k: np.concatenate(v) for k, v in preds.items()}
        ref = preds["onnxruntime fp32"]
        for k, v in preds.items():
            r = {"model": f"{name} + digits head", "n": len(ye), "engine": k,
                 "agree_fp32": float((v == ref).mean()), "accuracy": float((v == ye).mean())}
            if k == "edgenet ternary-a8":
                r["agree_same_weights_f32_act"] = float((v == preds["edgenet ternary"]).mean())
            rows.append(r)
            extra = (f", vs edgenet ternary (f32 activations) "
                     f"{100 * r['agree_same_weights_f32_act']:.1f}%"
                     if "agree_same_weights_f32_act" in r else "")
            print(f"  {name:12s} {k:32s} agrees with ORT fp32 {100 * r['agree_fp32']:5.1f}%, "
                  f"accuracy {100 * r['accuracy']:5.1f}% of {len(ye)}{extra}", flush=True)
    from edgenet.io import EXAMPLE_INPUT, EXAMPLE_MODEL
    with np.load(EXAMPLE_INPUT, allow_pickle=False) as z:
        x, y = z["x"].astype(np.float32), z["y"]
    m32 = edgenet.load(EXAMPLE_MODEL, activations="f32")
    ranges = quant.calibrate(m32, x[:50])
    m8 = edgenet.load(EXAMPLE_MODEL, activations="int8", act_ranges=ranges)
    p32 = m32(x[50:]).argmax(1)
    for label, m in (("f32 activations", m32), ("int8 activations", m8)):
        pr = m(x[50:]).argmax(1)
        rows.append({"model": "bundled QAT ternary digits (agreement: vs its f32 activations)",
                     "n": len(y) - 50,
                     "engine": f"edgenet {label}", "agree_fp32": float((pr == p32).mean()),
                     "accuracy": float((pr == y[50:]).mean())})
        print(f"  digits QAT ternary, {label}: accuracy {100 * rows[-1]['accuracy']:.1f}% "
              f"of {len(y) - 50}, agrees with f32 activations {100 * rows[-1]['agree_fp32']:.1f}%",
              flush=True)
    return rows


def tiers_table(rows):
    """Markdown pivot of per-tier latency rows: one line per (tier, model, threads), median
    ms per engine, and for edgenet the ratio to the fastest peer (fp32 peers for f32
    activations, int8 peers for int8 / auto)."""
    peers = [p for p in PEERS if any(r["engine"] == p for r in rows)]
    ours = []
    for r in rows:
        if r["engine"].startswith("edgenet ") and r["engine"] not in ours:
            ours.append(r["engine"])
    head = ["tier", "model", "thr"] + [p.replace("onnxruntime", "ORT").replace("openvino", "OV")
                                       for p in peers] + [e[len("edgenet "):] for e in ours]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * 3 + "---:|" * (len(head) - 3)]
    groups = {}
    for r in rows:
        groups.setdefault((r.get("tier"), r["model"], r["threads"], r["batch"]), {})[r["engine"]] = r
    for (tier, model, thr, batch), g in groups.items():
        cells = [str(tier), model + ("" if batch == 1 else f" b{batch}"), str(thr)]
        f32 = min((g[p]["median_ms"] for p in peers if p in g and "fp32" in p), default=None)
        i8 = min((g[p]["median_ms"] for p in peers if p in g and "int8" in p), default=None)
        for p in peers:
            ms = g.get(p, {}).get("median_ms")
            best = ms is not None and ms in (f32, i8)
            isa = g.get(p, {}).get("ov_isa")
            cell = "" if ms is None else (f"**{ms:.2f}**" if best else f"{ms:.2f}")
            cells.append(cell + (f" ({isa})" if cell and isa else ""))
        for e in ours:
            r = g.get(e)
            if r is None:
                cells.append("")
                continue
            int8 = ":int8" in e or ":auto" in e or (e.endswith("-a8") and ":" not in e)
            ref = i8 if int8 and i8 else f32
            extra = f" ({r['int8_convs']} int8)" if int8 and r.get("int8_convs") is not None else ""
            cells.append(f"{r['median_ms']:.2f} ({r['median_ms'] / ref:.2f}×){extra}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_tiers_section(rows, cmd):
    path = os.path.join(HERE, "RESULTS.md")
    text = open(path).read() if os.path.exists(path) else "# Benchmark results\n\n"
    cpus = sorted({r.get("cpu") for r in rows if r.get("cpu")})
    block = "\n".join([
        "<!-- tiers:begin (generated by bench/harness.py --tiers; do not edit by hand) -->",
        f"CPU: {', '.join(cpus)}; {os.cpu_count()} cores, shared with other engineers' jobs; "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; command: `{cmd}`.", "",
        "Median ms of interleaved runs in one process per tier (peers run their own native "
        "kernels in every tier's process). Bold: the fastest peer (fp32 and int8). In "
        "parentheses, edgenet's ratio to the fastest peer: fp32 peers for f32 activations, "
        "int8 peers for `:int8` / `:auto` (`ternary-a8:MODE` = the calibrated ternary file "
        "loaded with `activations=MODE`; `auto` is the default). An OV cell marked "
        "(AVX2) etc. ran with OpenVINO limited to that ISA (`--ov-isa matched`).", "",
        tiers_table(rows), "<!-- tiers:end -->"])
    if "<!-- tiers:begin" in text:
        text = text.split("<!-- tiers:begin")[0] + block + text.split("<!-- tiers:end -->", 1)[1]
    else:
        text = text.rstrip() + "\n\n## CPU tiers (issue 12)\n\n" + block + "\n"
    with open(path, "w") as f:
        f.write(text)


def write_results(res):
    lines = ["<!-- harness:begin (generated by bench/harness.py; do not edit by hand) -->",
             f"Machine: {os.cpu_count()} cores; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
             f"command: `python bench/harness.py {' '.join(sys.argv[1:])}`", ""]
    if res.get("latency"):
        cpus = sorted({r.get("cpu") for r in res["latency"] if r.get("cpu")})
        lines += ["### Latency (median ms of interleaved runs; ratios vs onnxruntime fp32 and "
                  "vs the fastest peer's fp32 / int8)", "",
                  f"CPU: {', '.join(cpus) or 'not recorded'}. Tier: edgenet's SIMD tier "
                  "(`EDGENET_SIMD`; a forced tier also restricts the codegen); peers run their "
                  "native kernels in the same process.", "",
                  "| model | tier | batch | threads | engine | median ms | p90 ms | × ORT fp32 "
                  "| × fastest fp32 | × fastest int8 |",
                  "|---|---|---:|---:|---|---:|---:|---:|---:|---:|"]

        def f2(v):
            return "" if v is None or v != v else f"{v:.2f}"
        for r in res["latency"]:
            lines.append(f"| {r['model']} | {r.get('tier', '')} | {r['batch']} | {r['threads']} | "
                         f"{r['engine']} | {r['median_ms']:.3f} | {r['p90_ms']:.3f} | "
                         f"{r['ratio_vs_ort_fp32']:.2f} | {f2(r.get('ratio_vs_fastest_fp32'))} | "
                         f"{f2(r.get('ratio_vs_fastest_int8'))} |")
        lines.append("")
    if res.get("agreement"):
        lines += ["### Top-1 agreement and accuracy on real inputs (sklearn digits; see "
                  "`agreement()` in bench/harness.py)", "",
                  "| model | inputs | engine | top-1 = ORT fp32 (float model) | accuracy |",
                  "|---|---:|---|---:|---:|"]
        for r in res["agreement"]:
            extra = (f" (= edgenet ternary, f32 activations: "
                     f"{100 * r['agree_same_weights_f32_act']:.1f}%)"
                     if "agree_same_weights_f32_act" in r else "")
            lines.append(f"| {r['model']} | {r['n']} | {r['engine']} | "
                         f"{100 * r['agree_fp32']:.1f}%{extra} | {100 * r['accuracy']:.1f}% |")
        lines.append("")
    if res.get("memory"):
        lines += ["### Peak memory (separate process per row; batch 1, 2 threads) and file size",
                  "", "| model | engine | peak RSS MB | file MB |", "|---|---|---:|---:|"]
        for r in res["memory"]:
            lines.append(f"| {r['model']} | {r['engine']} | {r['peak_rss_mb']:.1f} | "
                         f"{r['file_bytes'] / 1e6:.2f} |")
        lines.append("")
    if res.get("compile"):
        lines += ["### Compile and warm start (`edgenet run`, end to end)", "",
                  "| model | first run, empty cache (s) | warm start, cache filled (s) |",
                  "|---|---:|---:|"]
        for r in res["compile"]:
            lines.append(f"| {r['model']} | {r['first run (empty cache)']:.2f} | "
                         f"{r['warm start (cache filled)']:.2f} |")
        lines.append("")
    lines.append("<!-- harness:end -->")
    block = "\n".join(lines)
    path = os.path.join(HERE, "RESULTS.md")
    text = open(path).read() if os.path.exists(path) else "# Benchmark results\n\n"
    if "<!-- harness:begin" in text:
        pre = text.split("<!-- harness:begin")[0]
        post = text.split("<!-- harness:end -->", 1)[1]
        text = pre + block + post
    else:
        text = text.rstrip() + "\n\n## Harness\n\n" + block + "\n"
    with open(path, "w") as f:
        f.write(text)
    with open(os.path.join(HERE, "results.json"), "w") as f:
        json.dump(res, f, indent=1)


def main():
    global OV_SEPARATE, WARMUP
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--variants", default="f32,ternary,quinary")
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--block", type=int, default=5)
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--skip", default="", help="comma list of: latency,memory,compile,agreement")
    ap.add_argument("--agreement-models", default="resnet18,resnet20")
    ap.add_argument("--agreement-n", type=int, default=1000)
    ap.add_argument("--tiers", default="", help="comma list of EDGENET_SIMD tiers for the "
                    "latency part, one process each (default: this process's tier)")
    ap.add_argument("--openvino", choices=("separate", "interleaved"), default="separate",
                    help="time OpenVINO in its own pass after the others (default: its "
                         "threads slow the engines interleaved with it) or with them")
    ap.add_argument("--ov-isa", choices=("native", "matched"), default="native",
                    help="matched: in each forced tier's process, limit OpenVINO to that "
                         "tier's ISA (ONEDNN_MAX_CPU_ISA), as on a CPU of that tier")
    ap.add_argument("--warmup", type=int, default=WARMUP,
                    help="untimed calls of every engine before its timed ones (at least 2: "
                         "compile / first allocations; edgenet's adaptive threads time both "
                         "thread counts over its first ~14 calls)")
    ap.add_argument("--rows-out", default="", help=argparse.SUPPRESS)
    a = ap.parse_args()
    OV_SEPARATE = a.openvino == "separate"
    WARMUP = a.warmup
    tiers = [t for t in a.tiers.split(",") if t]
    if a.rows_out:      # a child of latency_tiers: latency rows only
        os.environ["EDGENET_SIMD"] = tiers[0]
        rows = latency(a.models.split(","), [int(b) for b in a.batches.split(",")],
                       [int(t) for t in a.threads.split(",")], a.runs, a.block,
                       a.variants.split(","), not a.no_torch)
        with open(a.rows_out, "w") as f:
            json.dump(rows, f)
        return
    models = a.models.split(",")
    variants = a.variants.split(",")
    skip = set(filter(None, a.skip.split(",")))
    os.makedirs(CACHE, exist_ok=True)
    res = {}
    if "latency" not in skip and tiers:
        print("latency per tier:")
        argv = ["--models", a.models, "--batches", a.batches, "--threads", a.threads,
                "--variants", a.variants, "--runs", str(a.runs), "--block", str(a.block),
                "--openvino", a.openvino, "--warmup", str(a.warmup)]
        argv += ["--no-torch"] if a.no_torch else []
        res["latency"] = latency_tiers(tiers, argv, a.ov_isa)
        write_tiers_section(res["latency"], "python bench/harness.py " + " ".join(sys.argv[1:]))
    elif "latency" not in skip:
        print("latency:")
        res["latency"] = latency(models, [int(b) for b in a.batches.split(",")],
                                 [int(t) for t in a.threads.split(",")], a.runs, a.block,
                                 variants, not a.no_torch)
    if "memory" not in skip:
        print("peak memory:")
        res["memory"] = peak_memory(models, variants)
    if "agreement" not in skip:
        print("agreement:")
        res["agreement"] = agreement(a.agreement_models.split(","), a.agreement_n)
    if "compile" not in skip:
        print("compile:")
        res["compile"] = compile_times(models)
    prev = os.path.join(HERE, "results.json")
    if os.path.exists(prev):  # keep the sections and rows (other models...) this run skipped
        keys = {"latency": ("model", "tier", "batch", "threads", "engine"),
                "memory": ("model", "engine"),
                "compile": ("model",), "agreement": ("model", "engine")}
        with open(prev) as f:
            for k, old in json.load(f).items():
                if k not in res:
                    res[k] = old
                    continue
                kf = keys.get(k, ())
                new_keys = {tuple(r.get(f) for f in kf) for r in res[k]}
                res[k] = [r for r in old if tuple(r.get(f) for f in kf) not in new_keys] + res[k]
    write_results(res)


if __name__ == "__main__":
    main()
