#!/usr/bin/env python
"""aarch64 assembly of the generic tier's hot loops: the int8 g8 (k=1, P=6) and the f32
8-lane (k=2, P=6) reductions exactly as gen_qconv_tiers / gen_simd_conv emit them, in a
non-parallel wrapper (the prange/gufunc plumbing carries x86-only runtime helpers).

    EDGENET_SIMD=generic python bench/asm_aarch64.py cortex-a76 generic [OUTDIR]

Numba compiles for the host; its LLVM IR is re-targeted (triple, datalayout, target
attributes replaced; numba's inlined NRT_decref, which uses an x86 atomic intrinsic, made
external) and llvmlite's aarch64 target machine emits the assembly. Prints the instruction
histogram of each function; writes OUTDIR/<kernel>_<cpu>.s (default /tmp)."""
import os
import re
import sys
import llvmlite.binding as llb
import numba

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from edgenet.cpu import simd as S  # noqa: E402

P = 6
src = ["def g8(xq, wt, toff, C4, HW, out):", "    T = toff.shape[0]"]
src += [f"    h{p} = S.vzeroh8()" for p in range(P)] + [f"    a{p} = S.vzeroi8()" for p in range(P)]
src += ["    wi = 0", "    for c in range(C4):", "        cb = c * HW", "        for q in range(T):",
        "            xo = cb + toff[q]", "            w0 = S.vldw8(wt, wi)"]
for p in range(P):
    src += [f"            b = S.vbcw8(xq, xo + {p})", f"            h{p} = S.vmlaw8(h{p}, b, w0)"]
src += ["            wi += 32"]
src += [f"    a{p} = S.vwidenq8(a{p}, h{p})" for p in range(P)]
src += [f"    S.vst8(out, {8 * p}, S.vitof8(a{p}))" for p in range(P)]
src += ["def f8(xp, wt, toff, C, HW, out):", "    T = toff.shape[0]"]
src += [f"    a{j}_{p} = S.vld8(out, {8 * j})" for j in range(2) for p in range(P)]
src += ["    wi = 0", "    for c in range(C):", "        cb = c * HW", "        for q in range(T):",
        "            xo = cb + toff[q]"]
src += [f"            w{j} = S.vld8(wt, wi + {8 * j})" for j in range(2)]
for p in range(P):
    src += [f"            b = S.vbc8(xp, xo + {p})"]
    src += [f"            a{j}_{p} = S.vfma8(w{j}, b, a{j}_{p})" for j in range(2)]
src += ["            wi += 16"]
src += [f"    S.vst8(out, {8 * (2 * p + j)}, a{j}_{p})" for j in range(2) for p in range(P)]
ns = {"S": S}
exec("\n".join(src), ns)
i32, i16, f32, i64 = numba.int32[::1], numba.int16[::1], numba.float32[::1], numba.int64[::1]
fns = {"int8_g8_k1_P6": numba.njit((i32, i16, i64, numba.int64, numba.int64, f32),
                                     boundscheck=False, fastmath=True)(ns["g8"]),
       "f32_8lane_k2_P6": numba.njit((f32, f32, i64, numba.int64, numba.int64, f32),
                                       boundscheck=False, fastmath=True)(ns["f8"])}
llb.initialize_all_targets(); llb.initialize_all_asmprinters()
tgt = llb.Target.from_triple("aarch64-unknown-linux-gnu")
cpus = [a for a in sys.argv[1:] if not os.path.isdir(a)] or ["cortex-a76"]
outdir = next((a for a in sys.argv[1:] if os.path.isdir(a)), "/tmp")
for label, f in fns.items():
    ir = "\n".join(f.inspect_llvm().values())
    ir = re.sub(r'target triple = "[^"]*"', 'target triple = "aarch64-unknown-linux-gnu"', ir)
    ir = re.sub(r'target datalayout = "[^"]*"', '', ir)
    ir = re.sub(r'"target-cpu"="[^"]*"', '', ir)
    ir = re.sub(r'"target-features"="[^"]*"', '', ir)
    # numba's inlined NRT_decref uses an x86 atomic intrinsic: keep it external
    ir = re.sub(r'define linkonce_odr void @NRT_decref\(ptr %\.1\)[^{]*\{.*?\n\}', 'declare void @NRT_decref(ptr)', ir, flags=re.S)
    ir = re.sub(r'declare i8 @llvm\.x86\.atomic[^\n]*', '', ir)
    for cpu in cpus:
        tm = tgt.create_target_machine(cpu=cpu, opt=3)
        m = llb.parse_assembly(ir)
        m.data_layout = str(tm.target_data)
        asm = tm.emit_assembly(m)
        fn = os.path.join(outdir, f"{label}_{cpu}.s")
        open(fn, "w").write(asm)
        ops = {}
        for line in asm.splitlines():
            t = line.strip().split()
            if t and not t[0].startswith((".", "//", "@")) and not t[0].endswith(":"):
                ops[t[0]] = ops.get(t[0], 0) + 1
        print(label, cpu, fn, sorted(ops.items(), key=lambda kv: -kv[1])[:20])
