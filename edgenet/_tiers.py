"""CPU tiers: which SIMD kernels run, and which instruction set Numba compiles for.

Tiers, best first (``EDGENET_SIMD`` forces one; unset or ``auto``: the best the host has):

============  =====================================  ======================================
tier          host needs                             int8 conv dot product / f32 lanes
============  =====================================  ======================================
avx512vnni    AVX-512 F+BW + VNNI                    ``vpdpbusd`` zmm / 16
avx512        AVX-512 F+BW                           ``vpmaddubsw`` + ``vpmaddwd`` zmm / 16
avx2          AVX2 + FMA                             ``vpmaddubsw`` + ``vpmaddwd`` ymm / 8
generic       anything LLVM targets (ARM64, ...)      generic LLVM vector IR / 8
off           -                                      plain Numba loops (no explicit SIMD)
============  =====================================  ======================================

Forcing a tier *below* the host's also restricts LLVM's code generation, so that an
AVX-512 machine really runs what an AVX2-only CPU would (16 ymm registers, no EVEX): before
numba is imported (``edgenet/_jit.py`` calls :func:`configure`), ``NUMBA_CPU_NAME`` /
``NUMBA_CPU_FEATURES`` are set to a CPU of that tier (``CODEGEN_CPU``), unless the user set
``NUMBA_CPU_NAME`` already. Numba's cache key includes the CPU name and features, so each
tier keeps its own compiled kernels. ``generic`` on x86 compiles for the AVX2 CPU: the
generic kernels then compare with the avx2 tier's on the same registers (on ARM64 it is
the native codegen). A tier above what the codegen target has is an error (LLVM would abort
on an instruction it cannot select). Changing ``EDGENET_SIMD`` after import (tests) changes
the kernels chosen, not the codegen, which is fixed for the process.

This module imports neither numba nor any kernel: it must run before numba is imported.
"""
from __future__ import annotations

import os
import sys

from .errors import UsageError

TIERS = ("avx512vnni", "avx512", "avx2", "generic")     # best first
MODES = TIERS + ("off",)
# forced tier -> (NUMBA_CPU_NAME, NUMBA_CPU_FEATURES): "" = that CPU's own features
CODEGEN_CPU = {"avx512": ("skylake-avx512", ""), "avx2": ("haswell", ""),
               "generic": ("haswell", "")}
_NEEDS = {"avx512vnni": ("avx512f", "avx512bw", "avx512vnni"),
          "avx512": ("avx512f", "avx512bw"), "avx2": ("avx2", "fma"), "generic": ()}

_codegen_tier = None     # set by configure()


def host_features() -> dict:
    try:
        import llvmlite.binding as llb
        return dict(llb.get_host_cpu_features())
    except Exception:  # pragma: no cover - some platforms cannot report features
        return {}


def tier_of(features: dict) -> str:
    """The best tier a CPU with these LLVM feature flags can run."""
    for t in TIERS:
        if all(features.get(f) for f in _NEEDS[t]):
            return t
    return "generic"  # pragma: no cover


def rank(t: str) -> int:
    """0 for the best tier; 'off' ranks below every tier."""
    return MODES.index(t)


def requested() -> str | None:
    """The tier EDGENET_SIMD asks for, None for auto; ValueError naming it when invalid."""
    env = os.environ.get("EDGENET_SIMD", "").strip().lower()
    if env in ("", "auto"):
        return None
    if env not in MODES:
        raise UsageError(f"EDGENET_SIMD={env!r}: expected one of {', '.join(MODES)}, auto")
    return env


def _parse_features(s: str) -> dict:
    return {f[1:]: f[0] == "+" for f in s.split(",") if f[:1] in "+-" and len(f) > 1}


def configure() -> str:
    """Set numba's codegen target for a forced tier below the host's (before numba is
    imported); returns the tier the codegen target supports. Runs once per process: a
    second call (``tier()`` asked before ``edgenet._jit`` was imported) would read the
    NUMBA_CPU_NAME the first one set as the user's own and report tier 'generic'."""
    global _codegen_tier
    if _codegen_tier is not None:
        return _codegen_tier
    host = tier_of(host_features())
    try:
        req = requested()
    except ValueError:
        req = None          # reported when a kernel is chosen (simd.tier()), not at import
    user_cpu = os.environ.get("NUMBA_CPU_NAME")
    if user_cpu is not None:   # the user's own codegen target wins
        feats = os.environ.get("NUMBA_CPU_FEATURES")
        if feats is None:      # numba then uses the host's features
            _codegen_tier = host
        else:
            _codegen_tier = tier_of(_parse_features(feats)) if feats else "generic"
        return _codegen_tier
    _codegen_tier = host
    if req in CODEGEN_CPU and rank(req) > rank(host):
        name, feats = CODEGEN_CPU[req]
        os.environ["NUMBA_CPU_NAME"] = name
        os.environ["NUMBA_CPU_FEATURES"] = feats
        cfg = sys.modules.get("numba.core.config")
        if cfg is not None:    # numba imported first: effective until its first compile
            cfg.CPU_NAME, cfg.CPU_FEATURES = name, feats
        _codegen_tier = "avx2" if req == "generic" else req
    return _codegen_tier


def codegen_tier() -> str:
    return _codegen_tier if _codegen_tier is not None else configure()


def tier() -> str:
    """The tier whose kernels run now: EDGENET_SIMD's, else the codegen target's best."""
    req = requested()
    cg = codegen_tier()
    if req is None:
        return cg
    if rank(req) < rank(cg):
        raise UsageError(f"EDGENET_SIMD={req}: this process compiles for tier {cg} "
                         f"(CPU {os.environ.get('NUMBA_CPU_NAME') or 'host'}); "
                         f"choose one of {', '.join(MODES[rank(cg):])}")
    return req
