"""Explicit SIMD for Numba kernels: LLVM float vectors as a Numba type, plus run-time dispatch.

``F32x16`` / ``F32x8`` are Numba types whose data model is an LLVM ``<16 x float>`` /
``<8 x float>`` value, so a kernel can hold vector accumulators in SSA registers (Numba's own
arrays-as-accumulators get stored after every FMA inside a ``prange`` body). The operations
are ``@intrinsic``\\ s emitting *generic* LLVM IR only (vector load/store, splat,
``llvm.fmuladd``): no x86 intrinsics, so every path compiles and runs correctly on any CPU
LLVM targets — on a CPU without AVX-512, ``<16 x float>`` is legalized into narrower
registers (AVX2: two ymm; ARM64: four q registers), only slower.

Array indices given to these intrinsics are raw element offsets (no bounds check, no
negative-index wraparound): callers guarantee they are in range.

Tiers (``simd_mode()`` / ``tier()``; edgenet/_tiers.py has the rules, incl. the codegen
target a forced tier sets): ``EDGENET_SIMD=avx512vnni|avx512|avx2|generic|off|auto``.
avx512* run the 16-lane float kernels, avx2 and generic the 8-lane ones (on ARM64 LLVM
legalizes them to NEON), ``off`` the scalar Numba kernels. The int8 conv kernels differ per
tier in their dot product (``vdpbusd16``; ``vmaddubs*`` + ``vwiden*``; generic IR).
"""
from __future__ import annotations

from .. import _jit  # noqa: F401  (cache policy before numba)
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, models, register_model

from .._tiers import MODES, TIERS, codegen_tier, host_features, rank, tier  # noqa: F401


def simd_mode() -> str:
    """The tier whose kernels run (EDGENET_SIMD, else the best the codegen target has)."""
    return tier()


def lanes(mode: str) -> int:
    """float32 lanes of a tier's conv/dense kernels (0: plain loops)."""
    return {"avx512vnni": 16, "avx512": 16, "avx2": 8, "generic": 8}.get(mode, 0)


class Vec(types.Type):
    """A Numba type whose value is an LLVM vector of ``n`` lanes of ``elem`` ("f32": float
    lanes of the conv/dense kernels; "i32": the int32 accumulators of the int8 kernels)."""

    def __init__(self, elem, n):
        self.elem = elem
        self.n = n
        super().__init__(name=f"{elem}x{n}")


@register_model(Vec)
class _VecModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        lane = {"f32": ir.FloatType(), "i32": ir.IntType(32), "i16": ir.IntType(16)}[fe_type.elem]
        super().__init__(dmm, fe_type, ir.VectorType(lane, fe_type.n))


def F32Vec(n):
    return Vec("f32", n)


F32x16 = F32Vec(16)
F32x8 = F32Vec(8)
_F = ir.FloatType()


def _is_f32_array(a):
    return isinstance(a, types.Array) and a.dtype == types.float32


def _eptr(context, builder, aty, arr, idx, ity):
    a = context.make_array(aty)(context, builder, arr)
    i = context.cast(builder, idx, ity, types.int64)
    return builder.gep(a.data, [i], inbounds=True)


def _make(n):
    VT = F32Vec(n)
    LV = ir.VectorType(_F, n)

    @intrinsic
    def vld(typingctx, arr, idx):
        """Unaligned load of n floats at arr.flat[idx]."""
        if not (_is_f32_array(arr) and isinstance(idx, types.Integer)):
            return None

        def codegen(context, builder, sig, args):
            p = _eptr(context, builder, sig.args[0], args[0], args[1], sig.args[1])
            p = builder.bitcast(p, LV.as_pointer())
            return builder.load(p, align=4, typ=LV)
        return VT(arr, idx), codegen

    @intrinsic
    def vst(typingctx, arr, idx, v):
        """Unaligned store of vector v at arr.flat[idx]."""
        if not (_is_f32_array(arr) and isinstance(idx, types.Integer) and v == VT):
            return None

        def codegen(context, builder, sig, args):
            p = _eptr(context, builder, sig.args[0], args[0], args[1], sig.args[1])
            p = builder.bitcast(p, LV.as_pointer())
            builder.store(args[2], p, align=4)
            return context.get_dummy_value()
        return types.none(arr, idx, v), codegen

    def _splat(builder, s):
        v = builder.insert_element(ir.Constant(LV, ir.Undefined), s, ir.Constant(ir.IntType(32), 0))
        return builder.shuffle_vector(v, ir.Constant(LV, ir.Undefined),
                                      ir.Constant(ir.VectorType(ir.IntType(32), n), [0] * n))

    @intrinsic
    def vbc(typingctx, arr, idx):
        """Broadcast arr.flat[idx] to all lanes (folds into an embedded-broadcast FMA)."""
        if not (_is_f32_array(arr) and isinstance(idx, types.Integer)):
            return None

        def codegen(context, builder, sig, args):
            p = _eptr(context, builder, sig.args[0], args[0], args[1], sig.args[1])
            return _splat(builder, builder.load(p, align=4, typ=_F))
        return VT(arr, idx), codegen

    @intrinsic
    def vsplat(typingctx, s):
        if s != types.float32:
            return None

        def codegen(context, builder, sig, args):
            return _splat(builder, args[0])
        return VT(s), codegen

    @intrinsic
    def vfma(typingctx, a, b, c):
        """a * b + c (llvm.fmuladd: one FMA where the target has it)."""
        if not (a == VT and b == VT and c == VT):
            return None

        def codegen(context, builder, sig, args):
            fn = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(LV, [LV, LV, LV]), f"llvm.fmuladd.v{n}f32")
            return builder.call(fn, list(args))
        return VT(a, b, c), codegen

    @intrinsic
    def vld2(typingctx, arr, idx):
        """Even elements of the 2n floats at arr.flat[idx:idx + 2n] (stride-2 load)."""
        if not (_is_f32_array(arr) and isinstance(idx, types.Integer)):
            return None
        LV2 = ir.VectorType(_F, 2 * n)

        def codegen(context, builder, sig, args):
            p = _eptr(context, builder, sig.args[0], args[0], args[1], sig.args[1])
            p = builder.bitcast(p, LV2.as_pointer())
            v = builder.load(p, align=4, typ=LV2)
            return builder.shuffle_vector(v, ir.Constant(LV2, ir.Undefined), ir.Constant(
                ir.VectorType(ir.IntType(32), n), [2 * i for i in range(n)]))
        return VT(arr, idx), codegen

    def _binary(op):
        @intrinsic
        def vop(typingctx, a, b):
            if not (a == VT and b == VT):
                return None

            def codegen(context, builder, sig, args):
                return getattr(builder, op)(args[0], args[1])
            return VT(a, b), codegen
        return vop

    vadd, vsub = _binary("fadd"), _binary("fsub")     # a + b, a - b

    @intrinsic
    def vrelu(typingctx, a):
        """0 where a < 0, else a (NaN passes through, as in act code 1)."""
        if a != VT:
            return None

        def codegen(context, builder, sig, args):
            z = ir.Constant(LV, [0.0] * n)
            return builder.select(builder.fcmp_ordered("<", args[0], z), z, args[0])
        return VT(a), codegen

    @intrinsic
    def vclip(typingctx, a, lo, hi):
        """lo where a < lo, hi where a > hi, else a (NaN passes through, as act code 7)."""
        if not (a == VT and lo == VT and hi == VT):
            return None

        def codegen(context, builder, sig, args):
            x, l, h = args
            x1 = builder.select(builder.fcmp_ordered(">", x, h), h, x)
            return builder.select(builder.fcmp_ordered("<", x, l), l, x1)
        return VT(a, lo, hi), codegen

    @intrinsic
    def vmaxn(typingctx, v, m):
        """v where v > m or v is NaN, else m: the running maximum of MaxPool with the
        reference's NaN rule (a NaN, once taken, stays)."""
        if not (v == VT and m == VT):
            return None

        def codegen(context, builder, sig, args):
            a, b = args
            keep = builder.or_(builder.fcmp_ordered(">", a, b), builder.fcmp_unordered("uno", a, a))
            return builder.select(keep, a, b)
        return VT(v, m), codegen

    @intrinsic
    def vtern(typingctx, arr, idx, pos, neg, base):
        """arr.flat[idx + l] * (bit (base + l) of pos - bit (base + l) of neg), l < n: one
        lane group of a ternary weight vector from its two 32-bit planes (base + n <= 32)."""
        if not (_is_f32_array(arr) and all(isinstance(t, types.Integer)
                                           for t in (idx, pos, neg, base))):
            return None
        I32 = ir.IntType(32)
        LI = ir.VectorType(I32, n)

        def codegen(context, builder, sig, args):
            p = _eptr(context, builder, sig.args[0], args[0], args[1], sig.args[1])
            s = builder.load(builder.bitcast(p, LV.as_pointer()), align=4, typ=LV)

            def bits(v, ty):
                v = context.cast(builder, v, ty, types.int64)
                v = builder.trunc(v, I32)
                b = context.cast(builder, args[4], sig.args[4], types.int64)
                b = builder.trunc(b, I32)
                sv = builder.insert_element(ir.Constant(LI, ir.Undefined), v, ir.Constant(I32, 0))
                sv = builder.shuffle_vector(sv, ir.Constant(LI, ir.Undefined),
                                            ir.Constant(LI, [0] * n))
                bv = builder.insert_element(ir.Constant(LI, ir.Undefined), b, ir.Constant(I32, 0))
                bv = builder.shuffle_vector(bv, ir.Constant(LI, ir.Undefined),
                                            ir.Constant(LI, [0] * n))
                shv = builder.add(bv, ir.Constant(LI, list(range(n))))
                return builder.and_(builder.lshr(sv, shv), ir.Constant(LI, [1] * n))
            d = builder.sub(bits(args[2], sig.args[2]), bits(args[3], sig.args[3]))
            return builder.fmul(s, builder.sitofp(d, LV))
        return VT(arr, idx, pos, neg, base), codegen

    @intrinsic
    def vq3(typingctx, arr, idx, b0, b1, b2, base):
        """arr.flat[idx + l] * (bit0 + 2*bit1 - 4*bit2) at bit (base + l) of the three planes
        b0, b1, b2: one lane group of a 3-bit two's-complement (q3) weight vector."""
        if not (_is_f32_array(arr) and all(isinstance(t, types.Integer)
                                           for t in (idx, b0, b1, b2, base))):
            return None
        I32 = ir.IntType(32)
        LI = ir.VectorType(I32, n)

        def codegen(context, builder, sig, args):
            p = _eptr(context, builder, sig.args[0], args[0], args[1], sig.args[1])
            s = builder.load(builder.bitcast(p, LV.as_pointer()), align=4, typ=LV)
            b = builder.trunc(context.cast(builder, args[5], sig.args[5], types.int64), I32)
            bv = builder.insert_element(ir.Constant(LI, ir.Undefined), b, ir.Constant(I32, 0))
            bv = builder.shuffle_vector(bv, ir.Constant(LI, ir.Undefined), ir.Constant(LI, [0] * n))
            shv = builder.add(bv, ir.Constant(LI, list(range(n))))

            def bit(i):
                v = builder.trunc(context.cast(builder, args[2 + i], sig.args[2 + i], types.int64), I32)
                sv = builder.insert_element(ir.Constant(LI, ir.Undefined), v, ir.Constant(I32, 0))
                sv = builder.shuffle_vector(sv, ir.Constant(LI, ir.Undefined),
                                            ir.Constant(LI, [0] * n))
                return builder.and_(builder.lshr(sv, shv), ir.Constant(LI, [1] * n))
            d = builder.add(bit(0), builder.shl(bit(1), ir.Constant(LI, [1] * n)))
            d = builder.sub(d, builder.shl(bit(2), ir.Constant(LI, [2] * n)))
            return builder.fmul(s, builder.sitofp(d, LV))
        return VT(arr, idx, b0, b1, b2, base), codegen

    @intrinsic
    def vi8(typingctx, arr, idx, codes, cidx):
        """arr.flat[idx + l] * int8(codes.flat[cidx + l]) (codes: a uint8 array holding
        int8 levels): one lane group of an i8 weight vector."""
        if not (_is_f32_array(arr) and isinstance(codes, types.Array)
                and codes.dtype == types.uint8 and isinstance(idx, types.Integer)
                and isinstance(cidx, types.Integer)):
            return None

        def codegen(context, builder, sig, args):
            p = _eptr(context, builder, sig.args[0], args[0], args[1], sig.args[1])
            s = builder.load(builder.bitcast(p, LV.as_pointer()), align=4, typ=LV)
            return builder.fmul(s, _levels(context, builder, sig.args[2:], args[2:]))
        return VT(arr, idx, codes, cidx), codegen

    def _levels(context, builder, tys, vals):
        """The n int8 levels at codes.flat[cidx:] (codes: uint8) as floats."""
        c = _eptr(context, builder, tys[0], vals[0], vals[1], tys[1])
        LB = ir.VectorType(ir.IntType(8), n)
        cv = builder.load(builder.bitcast(c, LB.as_pointer()), align=1, typ=LB)
        return builder.sitofp(cv, LV)

    @intrinsic
    def vlev(typingctx, codes, cidx):
        """float(int8(codes.flat[cidx + l])) (codes: a uint8 array holding int8 levels): an
        i8 weight vector's levels, its scale applied later."""
        if not (isinstance(codes, types.Array) and codes.dtype == types.uint8
                and isinstance(cidx, types.Integer)):
            return None

        def codegen(context, builder, sig, args):
            return _levels(context, builder, sig.args, args)
        return VT(codes, cidx), codegen

    @intrinsic
    def vldm(typingctx, arr, idx, cnt):
        """The first cnt (0..n) floats at arr.flat[idx:], the other lanes 0 (a masked load:
        nothing past them is read)."""
        if not (_is_f32_array(arr) and isinstance(idx, types.Integer)
                and isinstance(cnt, types.Integer)):
            return None

        def codegen(context, builder, sig, args):
            return _masked_mem(context, builder, sig, args, LV, "f32", False)
        return VT(arr, idx, cnt), codegen

    @intrinsic
    def vstm(typingctx, arr, idx, v, cnt):
        """Store the first cnt (0..n) lanes of v at arr.flat[idx:] (a masked store: nothing
        past them is written)."""
        if not (_is_f32_array(arr) and isinstance(idx, types.Integer) and v == VT
                and isinstance(cnt, types.Integer)):
            return None

        def codegen(context, builder, sig, args):
            return _masked_mem(context, builder, sig, args, LV, "f32", True)
        return types.none(arr, idx, v, cnt), codegen

    return (vld, vst, vbc, vsplat, vfma, vld2, vadd, vrelu, vclip, vtern, vq3, vi8, vmaxn, vldm,
            vstm, vlev, vsub)


(vld16, vst16, vbc16, vsplat16, vfma16, vld2_16, vadd16, vrelu16, vclip16,
 vtern16, vq3_16, vi8_16, vmaxn16, vldm16, vstm16, vlev16, vsub16) = _make(16)
(vld8, vst8, vbc8, vsplat8, vfma8, vld2_8, vadd8, vrelu8, vclip8, vtern8, vq3_8,
 vi8_8, vmaxn8, vldm8, vstm8, vlev8, vsub8) = _make(8)


# Masked loads of lanes lo..hi (the rest a fill value) and two-vector lane shuffles: MaxPool
# 3 x 3 / 2 in registers (pool._pool_planes, mode 2: the column maxima of 48 columns, no row
# buffer) and the Winograd tiles (wino_f32: even / odd tap columns, interleaved stores)


def _vldr_codegen(n, fill):
    def codegen(context, builder, sig, args):
        LF, LI = ir.VectorType(_F, n), ir.VectorType(_I32, n)
        p = _eptr(context, builder, sig.args[0], args[0], args[1], sig.args[1])
        lane = ir.Constant(LI, list(range(n)))
        lo_, hi_ = (_splat_i(builder, builder.trunc(context.cast(builder, args[k], sig.args[k],
                                                                 types.int64), _I32), LI, n)
                    for k in (2, 3))
        mask = builder.and_(builder.icmp_signed(">=", lane, lo_),
                            builder.icmp_signed("<", lane, hi_))
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(LF, [LF.as_pointer(), _I32,
                                                 ir.VectorType(ir.IntType(1), n), LF]),
            f"llvm.masked.load.v{n}f32.p0v{n}f32")
        return builder.call(fn, [builder.bitcast(p, LF.as_pointer()), ir.Constant(_I32, 4),
                                 mask, ir.Constant(LF, [fill] * n)])
    return codegen


def _make_ldr(n, fill, doc):
    VT = F32Vec(n)

    @intrinsic
    def ldr(typingctx, arr, idx, lo, hi):
        if not (_is_f32_array(arr) and all(isinstance(t, types.Integer)
                                           for t in (idx, lo, hi))):
            return None
        return VT(arr, idx, lo, hi), _vldr_codegen(n, fill)
    ldr.__doc__ = doc
    return ldr


vldr16 = _make_ldr(16, float("-inf"), """Lanes lo <= l < hi of arr.flat[idx : idx + 16]
    (float32), the others -inf: a masked load that reads nothing else (idx may point before
    the array where lo > 0).""")
vldz16 = _make_ldr(16, 0.0, "vldr16 with the other lanes 0 (Winograd input tiles: padding "
                   "reads as zero).")
vldz8 = _make_ldr(8, 0.0, "vldz16 on 8 lanes.")


def _shuffle2(lanes, doc):
    n = len(lanes)
    VT = F32Vec(n)

    @intrinsic
    def shuf(typingctx, a, b):
        if not (a == VT and b == VT):
            return None

        def codegen(context, builder, sig, args):
            LI = ir.VectorType(_I32, n)
            return builder.shuffle_vector(args[0], args[1], ir.Constant(LI, lanes))
        return VT(a, b), codegen
    shuf.__doc__ = doc
    return shuf


def _shuffles(n):
    """(evens, odds, next, next odd, half-cat, interleave low, interleave high) of n lanes
    (on two vectors a, b; lane indices >= n are b's)."""
    h = n // 2
    return (_shuffle2([2 * i for i in range(n)], "Lanes 0, 2, .. of (a, b)."),
            _shuffle2([2 * i + 1 for i in range(n)], "Lanes 1, 3, .. of (a, b)."),
            _shuffle2(list(range(1, n + 1)), "Lanes 1.. of a, then b's lane 0."),
            _shuffle2(list(range(1, n)) + [n + 1], "Lanes 1.. of a, then b's lane 1."),
            _shuffle2(list(range(h)) + list(range(n, n + h)), "a's low half, then b's."),
            _shuffle2([i // 2 + (n if i % 2 else 0) for i in range(n)],
                      "a0, b0, a1, b1, .. (interleave the low halves)."),
            _shuffle2([h + i // 2 + (n if i % 2 else 0) for i in range(n)],
                      "The high halves interleaved."))


(vevens16, vodds16, vnext16, vnexto16, vcathalf16, vilo16, vihi16) = _shuffles(16)
(vevens8, vodds8, vnext8, vnexto8, vcathalf8, vilo8, vihi8) = _shuffles(8)


# e**r on [-ln2/2, ln2/2], degree 6, fitted for relative error (~2e-9): the Exp op's
# polynomial (edgenet/cpu/math_ops.py _exp_fast uses these coefficients doubled)
EXP_POLY = (1.0, 1.0, 0.4999999403953552, 0.16666430234909058, 0.04166800528764725,
            0.008374199271202087, 0.0013843611814081669)


@intrinsic
def vexp16(typingctx, a):
    """e**a per lane, AVX-512F only (call where the tier is avx512 or avx512vnni): x
    clamped to [-104, 89] (NaN kept), k = rint(x / ln2) (``vrndscaleps``), r = x - k ln2
    (Cody-Waite, two parts), e**r by EXP_POLY, then ``vscalefps`` (p * 2**k, overflow to
    inf and denormal results exact): 12 instructions per 16 lanes, against 14 for the
    exponent-field construction, and no integer round trip."""
    if a != F32x16:
        return None
    n = 16
    LV = ir.VectorType(_F, n)

    def c(v):
        return ir.Constant(LV, [float(v)] * n)

    def codegen(context, builder, sig, args):
        m = builder.module
        fma = cgutils.get_or_insert_function(m, ir.FunctionType(LV, [LV, LV, LV]),
                                             "llvm.fma.v16f32")
        rint = cgutils.get_or_insert_function(m, ir.FunctionType(LV, [LV]), "llvm.rint.v16f32")
        scalef = cgutils.get_or_insert_function(
            m, ir.FunctionType(LV, [LV, LV, LV, ir.IntType(16), ir.IntType(32)]),
            "llvm.x86.avx512.mask.scalef.ps.512")
        x = args[0]
        x = builder.select(builder.fcmp_ordered("<", x, c(-104.0)), c(-104.0), x)
        x = builder.select(builder.fcmp_ordered(">", x, c(89.0)), c(89.0), x)
        k = builder.call(rint, [builder.fmul(x, c(1.44269504))])
        r = builder.call(fma, [k, c(-0.693359375), x])
        r = builder.call(fma, [k, c(2.12194440e-4), r])
        p = c(EXP_POLY[6])
        for coef in EXP_POLY[5::-1]:
            p = builder.call(fma, [p, r, c(coef)])
        return builder.call(scalef, [p, k, ir.Constant(LV, ir.Undefined),
                                     ir.Constant(ir.IntType(16), -1),
                                     ir.Constant(ir.IntType(32), 4)])
    return F32x16(a), codegen


def _make_tr(n, clamp=False):
    LV = ir.VectorType(_F, n)
    I32 = ir.IntType(32)
    I64 = ir.IntType(64)
    h = n // 2
    lo = ir.Constant(ir.VectorType(I32, n), [j for i in range(h) for j in (i, n + i)])
    hi = ir.Constant(ir.VectorType(I32, n), [j for i in range(h, n) for j in (i, n + i)])

    def _ok(arr, idx, stride, out, oidx, ostride, nrows):
        return (_is_f32_array(arr) and isinstance(idx, types.Integer)
                and isinstance(stride, types.Integer) and _is_f32_array(out)
                and isinstance(oidx, types.Integer) and isinstance(ostride, types.Integer)
                and (nrows is None or isinstance(nrows, types.Integer)))

    def _codegen(context, builder, sig, args):
        a = context.make_array(sig.args[0])(context, builder, args[0])
        i0 = context.cast(builder, args[1], sig.args[1], types.int64)
        st = context.cast(builder, args[2], sig.args[2], types.int64)
        o = context.make_array(sig.args[3])(context, builder, args[3])
        o0 = context.cast(builder, args[4], sig.args[4], types.int64)
        os_ = context.cast(builder, args[5], sig.args[5], types.int64)
        last = None
        if clamp:   # rows >= nrows read row nrows - 1 (memory that exists)
            last = builder.sub(context.cast(builder, args[6], sig.args[6], types.int64),
                               ir.Constant(I64, 1))
        rows = []
        for i in range(n):
            ri = ir.Constant(I64, i)
            if last is not None and i:
                ri = builder.select(builder.icmp_signed("<", last, ri), last, ri)
            off = builder.add(i0, builder.mul(st, ri))
            p = builder.bitcast(builder.gep(a.data, [off], inbounds=True), LV.as_pointer())
            rows.append(builder.load(p, align=4, typ=LV))
        r = n
        while r > 1:
            new = []
            for i in range(h):
                new.append(builder.shuffle_vector(rows[i], rows[i + h], lo))
                new.append(builder.shuffle_vector(rows[i], rows[i + h], hi))
            rows = new
            r //= 2
        for j in range(n):
            off = builder.add(o0, builder.mul(os_, ir.Constant(I64, j)))
            p = builder.bitcast(builder.gep(o.data, [off], inbounds=True), LV.as_pointer())
            builder.store(rows[j], p, align=4)
        return context.get_dummy_value()

    if clamp:
        @intrinsic
        def vtrn(typingctx, arr, idx, stride, out, oidx, ostride, nrows):
            """vtr with rows i >= nrows (1 <= nrows <= n) loaded from row nrows - 1: a
            partial block of planes transposed without reading past the last one (lanes
            >= nrows of every stored vector: copies, for the caller to drop)."""
            if not _ok(arr, idx, stride, out, oidx, ostride, nrows):
                return None
            return types.none(arr, idx, stride, out, oidx, ostride, nrows), _codegen
        return vtrn

    @intrinsic
    def vtr(typingctx, arr, idx, stride, out, oidx, ostride):
        """Load n vectors of n floats at arr.flat[idx + i*stride] (i < n) and store them
        transposed at out.flat[oidx + j*ostride] (vector j: lane j of every loaded vector;
        every load comes before the first store: in place is fine).
        log2(n) rounds of interleaves (rows 2i, 2i+1 <- lo / hi of rows i, i + n/2): n*log2(n)
        shuffles per n*n floats."""
        if not _ok(arr, idx, stride, out, oidx, ostride, None):
            return None
        return types.none(arr, idx, stride, out, oidx, ostride), _codegen
    return vtr


vtr16 = _make_tr(16)
vtr8 = _make_tr(8)
vtrn16 = _make_tr(16, True)
vtrn8 = _make_tr(8, True)


@intrinsic
def ldf(typingctx, arr, idx):
    """arr.flat[idx] without bounds check or wraparound."""
    if not (_is_f32_array(arr) and isinstance(idx, types.Integer)):
        return None

    def codegen(context, builder, sig, args):
        p = _eptr(context, builder, sig.args[0], args[0], args[1], sig.args[1])
        return builder.load(p, align=4, typ=_F)
    return types.float32(arr, idx), codegen


@intrinsic
def stf(typingctx, arr, idx, v):
    """arr.flat[idx] = v without bounds check or wraparound."""
    if not (_is_f32_array(arr) and isinstance(idx, types.Integer) and v == types.float32):
        return None

    def codegen(context, builder, sig, args):
        p = _eptr(context, builder, sig.args[0], args[0], args[1], sig.args[1])
        builder.store(args[2], p, align=4)
        return context.get_dummy_value()
    return types.none(arr, idx, v), codegen


# ----------------------------------------------------------------------------- int8 (u8 x s8)
# Integer vectors for the int8-activation conv kernels (edgenet/cpu/qconv.py): a lane is an
# int32 accumulator of one output channel; its 4 bytes hold 4 consecutive input channels
# (activations: uint8, weights: int8), as in x86's VNNI ``vpdpbusd``. Per tier (n = 16 or 8
# int32 lanes):
#
# - avx512vnni: ``vdpbusd16`` (one instruction per 64 MACs);
# - avx512 / avx2: ``vmaddubs{n}`` (``vpmaddubsw``: u8 x s8 products, adjacent pairs summed
#   into int16 lanes, saturating) accumulated in int16 with ``vaddw{n}``, widened every few
#   steps by ``vwiden{n}`` (``vpmaddwd`` with ones: the two int16 halves of a lane summed
#   into int32). Exact while every int16 partial sum stays in range: |w| <= 64 keeps one
#   pair sum <= 2*255*64 < 32768, and ``steps * 510 * max|w| <= 32767`` bounds the steps
#   between widenings (64 for ternary, 32 for quinary): ``qconv.pmadd_steps``;
# - generic: ``vmaddubs{n}g`` / ``vwiden{n}g``, the same arithmetic in plain LLVM IR (no
#   saturation: wrapping adds, exact within the same bounds), or ``vdpbusd{n}g`` (zext/sext
#   to int32: exact for any int8 weights).

I32x16 = Vec("i32", 16)
I32x8 = Vec("i32", 8)
I16x32 = Vec("i16", 32)
I16x16 = Vec("i16", 16)
_I32 = ir.IntType(32)
_I16 = ir.IntType(16)
_I8 = ir.IntType(8)
_LI16 = ir.VectorType(_I32, 16)
_LF16 = ir.VectorType(_F, 16)


def _is_arr(a, dt):
    return isinstance(a, types.Array) and a.dtype == dt


def _splat_i(builder, s, LV, n):
    v = builder.insert_element(ir.Constant(LV, ir.Undefined), s, ir.Constant(_I32, 0))
    return builder.shuffle_vector(v, ir.Constant(LV, ir.Undefined),
                                  ir.Constant(ir.VectorType(_I32, n), [0] * n))



def _masked_mem(context, builder, sig, args, LV, ty, store):
    """Codegen of the masked loads / stores (vldm, vstm, vldim, vstim; args: arr, idx, [v,]
    cnt): ``llvm.masked.load`` / ``store`` of the first cnt lanes at arr.flat[idx:], the
    other lanes 0 (a load) or untouched (a store). A constant cnt of n folds into a plain
    load / store."""
    n = LV.count
    LI = ir.VectorType(_I32, n)
    LM = ir.VectorType(ir.IntType(1), n)
    p = builder.bitcast(_eptr(context, builder, sig.args[0], args[0], args[1], sig.args[1]),
                        LV.as_pointer())
    c = builder.trunc(context.cast(builder, args[-1], sig.args[-1], types.int64), _I32)
    mask = builder.icmp_signed("<", ir.Constant(LI, list(range(n))), _splat_i(builder, c, LI, n))
    if store:
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [LV, LV.as_pointer(), _I32, LM]),
            f"llvm.masked.store.v{n}{ty}.p0v{n}{ty}")
        builder.call(fn, [args[2], p, ir.Constant(_I32, 4), mask])
        return context.get_dummy_value()
    fn = cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(LV, [LV.as_pointer(), _I32, LM, LV]),
        f"llvm.masked.load.v{n}{ty}.p0v{n}{ty}")
    zero = ir.Constant(LV, [0.0 if ty == "f32" else 0] * n)
    return builder.call(fn, [p, ir.Constant(_I32, 4), mask, zero])

def _pairs(builder, v, n2, LW):
    """even + odd lanes of the 2*n2-lane vector v -> n2 lanes (type LW)."""
    ev = builder.shuffle_vector(v, ir.Constant(v.type, ir.Undefined),
                                ir.Constant(ir.VectorType(_I32, n2), [2 * i for i in range(n2)]))
    od = builder.shuffle_vector(v, ir.Constant(v.type, ir.Undefined),
                                ir.Constant(ir.VectorType(_I32, n2), [2 * i + 1 for i in range(n2)]))
    return builder.add(ev, od)


_X86 = {  # lanes -> (pmaddubsw, pmaddwd) LLVM intrinsics
    16: ("llvm.x86.avx512.pmaddubs.w.512", "llvm.x86.avx512.pmaddw.d.512"),
    8: ("llvm.x86.avx2.pmadd.ub.sw", "llvm.x86.avx2.pmadd.wd"),
}


def _make_int(n):
    VI, VW, VF = Vec("i32", n), Vec("i16", 2 * n), F32Vec(n)
    LI, LW, LB, LF = (ir.VectorType(_I32, n), ir.VectorType(_I16, 2 * n),
                      ir.VectorType(_I8, 4 * n), ir.VectorType(_F, n))

    @intrinsic
    def vldi(typingctx, arr, idx):
        """Unaligned load of n int32 at arr.flat[idx] (arr: int32)."""
        if not (_is_arr(arr, types.int32) and isinstance(idx, types.Integer)):
            return None

        def codegen(context, builder, sig, args):
            p = _eptr(context, builder, sig.args[0], args[0], args[1], sig.args[1])
            return builder.load(builder.bitcast(p, LI.as_pointer()), align=4, typ=LI)
        return VI(arr, idx), codegen

    @intrinsic
    def vbci(typingctx, arr, idx):
        """arr.flat[idx] (int32) broadcast to n lanes (folds into vpdpbusd's {1to16})."""
        if not (_is_arr(arr, types.int32) and isinstance(idx, types.Integer)):
            return None

        def codegen(context, builder, sig, args):
            p = _eptr(context, builder, sig.args[0], args[0], args[1], sig.args[1])
            return _splat_i(builder, builder.load(p, align=4, typ=_I32), LI, n)
        return VI(arr, idx), codegen

    @intrinsic
    def vzeroi(typingctx):
        def codegen(context, builder, sig, args):
            return ir.Constant(LI, [0] * n)
        return VI(), codegen

    @intrinsic
    def vzerow(typingctx):
        def codegen(context, builder, sig, args):
            return ir.Constant(LW, [0] * (2 * n))
        return VW(), codegen

    @intrinsic
    def vitof(typingctx, a):
        """int32 lanes -> float32 lanes."""
        if a != VI:
            return None

        def codegen(context, builder, sig, args):
            return builder.sitofp(args[0], LF)
        return VF(a), codegen

    @intrinsic
    def vaddw(typingctx, a, b):
        """int16 lane-wise a + b (wrapping)."""
        if not (a == VW and b == VW):
            return None

        def codegen(context, builder, sig, args):
            return builder.add(args[0], args[1])
        return VW(a, b), codegen

    @intrinsic
    def vdotg(typingctx, acc, a, b):
        """acc + sum_j u8(a.byte[4l+j]) * s8(b.byte[4l+j]) per lane l, in generic LLVM IR
        (zext/sext to i32, multiply, sum the 4 products of each lane): exact for any int8."""
        if not (acc == VI and a == VI and b == VI):
            return None
        LW4 = ir.VectorType(_I32, 4 * n)

        def codegen(context, builder, sig, args):
            ua = builder.zext(builder.bitcast(args[1], LB), LW4)
            sb = builder.sext(builder.bitcast(args[2], LB), LW4)
            pr = builder.mul(ua, sb)
            out = args[0]
            for j in range(4):
                part = builder.shuffle_vector(pr, ir.Constant(LW4, ir.Undefined),
                                              ir.Constant(LI, [4 * l + j for l in range(n)]))
                out = builder.add(out, part)
            return out
        return VI(acc, a, b), codegen

    @intrinsic
    def vmaddubs(typingctx, a, b):
        """vpmaddubsw: int16 lane i = sat16(u8(a.byte[2i]) * s8(b.byte[2i]) +
        u8(a.byte[2i+1]) * s8(b.byte[2i+1])) (AVX2 ymm for n = 8, AVX512BW zmm for 16)."""
        if not (a == VI and b == VI):
            return None

        def codegen(context, builder, sig, args):
            fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(LW, [LB, LB]),
                                                _X86[n][0])
            return builder.call(fn, [builder.bitcast(args[0], LB), builder.bitcast(args[1], LB)])
        return VW(a, b), codegen

    @intrinsic
    def vmaddubsg(typingctx, a, b):
        """vmaddubs in generic IR (zext/sext to i16, multiply, add the pairs; no saturation)."""
        if not (a == VI and b == VI):
            return None
        LW4 = ir.VectorType(_I16, 4 * n)

        def codegen(context, builder, sig, args):
            ua = builder.zext(builder.bitcast(args[0], LB), LW4)
            sb = builder.sext(builder.bitcast(args[1], LB), LW4)
            return _pairs(builder, builder.mul(ua, sb), 2 * n, LW)
        return VW(a, b), codegen

    @intrinsic
    def vwiden(typingctx, acc, h):
        """acc + vpmaddwd(h, 1): int32 lane l += h[2l] + h[2l+1]."""
        if not (acc == VI and h == VW):
            return None

        def codegen(context, builder, sig, args):
            fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(LI, [LW, LW]),
                                                _X86[n][1])
            one = ir.Constant(LW, [1] * (2 * n))
            return builder.add(args[0], builder.call(fn, [args[1], one]))
        return VI(acc, h), codegen

    @intrinsic
    def vwideng(typingctx, acc, h):
        """vwiden in generic IR (sext to i32, add the pairs)."""
        if not (acc == VI and h == VW):
            return None

        def codegen(context, builder, sig, args):
            w = builder.sext(args[1], ir.VectorType(_I32, 2 * n))
            return builder.add(args[0], _pairs(builder, w, n, LI))
        return VI(acc, h), codegen

    @intrinsic
    def vldim(typingctx, arr, idx, cnt):
        """The first cnt (0..n) int32 at arr.flat[idx:], the other lanes 0 (a masked load:
        nothing past them is read)."""
        if not (_is_arr(arr, types.int32) and isinstance(idx, types.Integer)
                and isinstance(cnt, types.Integer)):
            return None

        def codegen(context, builder, sig, args):
            return _masked_mem(context, builder, sig, args, LI, "i32", False)
        return VI(arr, idx, cnt), codegen

    @intrinsic
    def vstim(typingctx, arr, idx, v, cnt):
        """Store the first cnt (0..n) int32 lanes of v (the words vqpack4 packs, too) at
        arr.flat[idx:] (a masked store: nothing past them is written)."""
        if not (_is_arr(arr, types.int32) and isinstance(idx, types.Integer) and v == VI
                and isinstance(cnt, types.Integer)):
            return None

        def codegen(context, builder, sig, args):
            return _masked_mem(context, builder, sig, args, LI, "i32", True)
        return types.none(arr, idx, v, cnt), codegen

    return (vldi, vbci, vzeroi, vzerow, vitof, vaddw, vdotg, vmaddubs, vmaddubsg, vwiden,
            vwideng, vldim, vstim)


(vldi16, vbci16, vzeroi16, vzerow16, vitof16, vaddw16, vdpbusd16g, vmaddubs16, vmaddubs16g,
 vwiden16, vwiden16g, vldim16, vstim16) = _make_int(16)
(vldi8, vbci8, vzeroi8, vzerow8, vitof8, vaddw8, vdpbusd8g, vmaddubs8, vmaddubs8g,
 vwiden8, vwiden8g, vldim8, vstim8) = _make_int(8)


def _make_generic(n):
    """The generic tier's int8 step on n int32 lanes: the 4 channels of each lane are kept
    as 4 int16 lanes (``<4n x i16>``): h += zext(x) * w with the activation's 4 bytes widened
    once per broadcast and the weights stored as int16, so the step is a plain int16
    multiply-add (ARM64 NEON ``mla .8h``; x86 ``vpmullw`` + ``vpaddw``). Exact while
    ``steps * 255 * max|w| <= 32767``; ``vwidenq`` then adds each lane's 4 int16 into int32."""
    VI, VH = Vec("i32", n), Vec("i16", 4 * n)
    LI, LH = ir.VectorType(_I32, n), ir.VectorType(_I16, 4 * n)
    I64 = ir.IntType(64)
    L64 = ir.VectorType(I64, n)

    @intrinsic
    def vbcw(typingctx, arr, idx):
        """The 4 uint8 of arr.flat[idx] (int32 array) zero-extended to int16, repeated n times."""
        if not (_is_arr(arr, types.int32) and isinstance(idx, types.Integer)):
            return None

        def codegen(context, builder, sig, args):
            p = _eptr(context, builder, sig.args[0], args[0], args[1], sig.args[1])
            v = builder.load(p, align=4, typ=_I32)
            v4 = builder.zext(builder.bitcast(v, ir.VectorType(_I8, 4)), ir.VectorType(_I16, 4))
            q = builder.bitcast(v4, I64)
            return builder.bitcast(_splat_i(builder, q, L64, n), LH)
        return VH(arr, idx), codegen

    @intrinsic
    def vldw(typingctx, arr, idx):
        """Unaligned load of 4n int16 at arr.flat[idx] (arr: int16)."""
        if not (_is_arr(arr, types.int16) and isinstance(idx, types.Integer)):
            return None

        def codegen(context, builder, sig, args):
            p = _eptr(context, builder, sig.args[0], args[0], args[1], sig.args[1])
            return builder.load(builder.bitcast(p, LH.as_pointer()), align=2, typ=LH)
        return VH(arr, idx), codegen

    @intrinsic
    def vzeroh(typingctx):
        def codegen(context, builder, sig, args):
            return ir.Constant(LH, [0] * (4 * n))
        return VH(), codegen

    @intrinsic
    def vmlaw(typingctx, h, a, b):
        """h + a * b, int16 lanes (wrapping)."""
        if not (h == VH and a == VH and b == VH):
            return None

        def codegen(context, builder, sig, args):
            return builder.add(args[0], builder.mul(args[1], args[2]))
        return VH(h, a, b), codegen

    @intrinsic
    def vwidenq(typingctx, acc, h):
        """acc + (h[4l] + h[4l+1] + h[4l+2] + h[4l+3]) per int32 lane l (sign-extended)."""
        if not (acc == VI and h == VH):
            return None
        LW4 = ir.VectorType(_I32, 4 * n)

        def codegen(context, builder, sig, args):
            w = builder.sext(args[1], LW4)
            out = args[0]
            for j in range(4):
                out = builder.add(out, builder.shuffle_vector(
                    w, ir.Constant(LW4, ir.Undefined), ir.Constant(LI, [4 * l + j for l in range(n)])))
            return out
        return VI(acc, h), codegen

    return vbcw, vldw, vzeroh, vmlaw, vwidenq


vbcw8, vldw8, vzeroh8, vmlaw8, vwidenq8 = _make_generic(8)


@intrinsic
def vdpbusd16(typingctx, acc, a, b):
    """acc + sum_j u8(a.byte[4l+j]) * s8(b.byte[4l+j]) per lane l, via AVX512-VNNI
    ``vpdpbusd`` (call only where the tier is avx512vnni)."""
    if not (acc == I32x16 and a == I32x16 and b == I32x16):
        return None

    def codegen(context, builder, sig, args):
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(_LI16, [_LI16, _LI16, _LI16]),
            "llvm.x86.avx512.vpdpbusd.512")
        return builder.call(fn, list(args))
    return I32x16(acc, a, b), codegen


# ------------------------------------------------ 2-bit ternary weights in the VNNI tiles
# A weight vector of the int8 tiles (16 words: 64 levels in {-1, 0, 1}) kept as 16 bytes,
# 2 bits a level (qconv.t2_pack): bits 2j..2j+1 of byte i hold byte 16j + i's code (0: 0,
# 1: +1, 2: -1), so one 128-bit broadcast load, a shift by 2j per 128-bit lane, a mask and
# a byte lookup rebuild the vector: a quarter of the bytes to stream from memory.
_LB64 = ir.VectorType(_I8, 64)
_T2_SHIFT = [0, 0, 2, 2, 4, 4, 6, 6]            # per 64-bit lane (two per 128-bit lane)
_T2_LUT = [0, 1, 255, 0] * 16                   # code -> level byte (vpshufb: per lane)


@intrinsic
def vld2b16(typingctx, arr, idx):
    """The 16 int32 words of int8 levels packed 2 bits a level in arr.flat[idx : idx + 4]
    (arr: int32; the layout above): ``vbroadcasti32x4``, ``vpsrlvq``, ``vpand``,
    ``vpshufb``."""
    if not (_is_arr(arr, types.int32) and isinstance(idx, types.Integer)):
        return None

    def codegen(context, builder, sig, args):
        L4 = ir.VectorType(_I32, 4)
        L8Q = ir.VectorType(ir.IntType(64), 8)
        p = _eptr(context, builder, sig.args[0], args[0], args[1], sig.args[1])
        v = builder.load(builder.bitcast(p, L4.as_pointer()), align=4, typ=L4)
        v = builder.shuffle_vector(v, ir.Constant(L4, ir.Undefined),
                                   ir.Constant(_LI16, [0, 1, 2, 3] * 4))
        v = builder.lshr(builder.bitcast(v, L8Q), ir.Constant(L8Q, _T2_SHIFT))
        v = builder.and_(builder.bitcast(v, _LB64), ir.Constant(_LB64, [3] * 64))
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(_LB64, [_LB64, _LB64]),
            "llvm.x86.avx512.pshuf.b.512")
        return builder.bitcast(builder.call(fn, [ir.Constant(_LB64, _T2_LUT), v]), _LI16)
    return I32x16(arr, idx), codegen


# ------------------------------------------------ int8 depthwise: taps along the lanes' bytes
# (dw_cv's dot kernel) A word holds 4 consecutive pixels of one channel (byte p: pixel p), so
# vpdpbusd against a word of 4 taps' levels sums a 1x4 window of that channel: 16 channels a
# vector. vqblk16 builds such words from the int8 layout (words of 4 channels); vfshr16
# slides a window by whole pixels across two of them.


def _plane_loads(builder, data, i0, st, last, npx, passthru):
    """Masked loads of the first npx lanes at data[i0 + j * st] for the 4 planes j (past
    ``last``: plane ``last``; the other lanes: passthru). data: an LLVM pointer to the
    lanes' element type; i0, st, last: i64; npx: i32."""
    LV = passthru.type
    n = LV.count
    LM = ir.VectorType(ir.IntType(1), n)
    mask = builder.icmp_signed("<", ir.Constant(ir.VectorType(_I32, n), list(range(n))),
                               _splat_i(builder, npx, ir.VectorType(_I32, n), n))
    ty = "f32" if isinstance(LV.element, ir.FloatType) else "i32"
    mload = cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(LV, [LV.as_pointer(), _I32, LM, LV]),
        f"llvm.masked.load.v{n}{ty}.p0v{n}{ty}")
    out = []
    for j in range(4):
        jj = ir.Constant(ir.IntType(64), j)
        jj = builder.select(builder.icmp_signed(">", jj, last), last, jj)
        p = builder.gep(data, [builder.add(i0, builder.mul(st, jj))], inbounds=True)
        out.append(builder.call(mload, [builder.bitcast(p, LV.as_pointer()),
                                        ir.Constant(_I32, 4), mask, passthru]))
    return out
# byte 16j + 4k + p <- byte 16j + 4p + k: each 128-bit lane (one word plane) 4x4 transposed
_BLK_T = [16 * j + 4 * p + k for j in range(4) for k in range(4) for p in range(4)]


@intrinsic
def vqblk16(typingctx, arr, idx, stride, last, npx, zw):
    """Pixels p < 4 of 16 channels from the int8 layout's words arr.flat[idx + p + j *
    stride] (plane j < 4; past ``last``: plane ``last``; pixels p >= npx: the word zw) as 16
    words, word 4j + k = channel 4j + k's 4 pixels (byte p: pixel p). Masked loads: nothing
    past pixel npx is read."""
    if not (_is_arr(arr, types.int32) and all(isinstance(t, types.Integer)
                                              for t in (idx, stride, last, npx, zw))):
        return None

    def codegen(context, builder, sig, args):
        L4 = ir.VectorType(_I32, 4)
        a = context.make_array(sig.args[0])(context, builder, args[0])
        i0, st, lst = (context.cast(builder, args[k], sig.args[k], types.int64)
                       for k in (1, 2, 3))
        npx = builder.trunc(context.cast(builder, args[4], sig.args[4], types.int64), _I32)
        zw = builder.trunc(context.cast(builder, args[5], sig.args[5], types.int64), _I32)
        rows = _plane_loads(builder, a.data, i0, st, lst, npx, _splat_i(builder, zw, L4, 4))
        L8 = ir.VectorType(_I32, 8)
        lo = builder.shuffle_vector(rows[0], rows[1], ir.Constant(L8, list(range(8))))
        hi = builder.shuffle_vector(rows[2], rows[3], ir.Constant(L8, list(range(8))))
        v = builder.bitcast(builder.shuffle_vector(lo, hi, ir.Constant(_LI16, list(range(16)))),
                            _LB64)
        v = builder.shuffle_vector(v, ir.Constant(_LB64, ir.Undefined),
                                   ir.Constant(ir.VectorType(_I32, 64), _BLK_T))
        return builder.bitcast(v, _LI16)
    return I32x16(arr, idx, stride, last, npx, zw), codegen


@intrinsic
def vfshr16(typingctx, hi, lo, s):
    """Per lane, the low 32 bits of (hi:lo) >> s (s: bits, 0..31; 8 * a pixel shift): bytes
    s/8.. of lo, then hi's (``vpshrdd`` with AVX512-VBMI2; shifts and an or elsewhere)."""
    if not (hi == I32x16 and lo == I32x16 and isinstance(s, types.Integer)):
        return None

    def codegen(context, builder, sig, args):
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(_LI16, [_LI16, _LI16, _LI16]), "llvm.fshr.v16i32")
        sh = builder.trunc(context.cast(builder, args[2], sig.args[2], types.int64), _I32)
        return builder.call(fn, [args[0], args[1], _splat_i(builder, sh, _LI16, 16)])
    return I32x16(hi, lo, s), codegen


@intrinsic
def vsplati16(typingctx, s):
    """The integer s (its low 32 bits) in 16 int32 lanes."""
    if not isinstance(s, types.Integer):
        return None

    def codegen(context, builder, sig, args):
        v = builder.trunc(context.cast(builder, args[0], sig.args[0], types.int64), _I32)
        return _splat_i(builder, v, _LI16, 16)
    return I32x16(s), codegen


def _rint_clamp(builder, v, s, zp, LV):
    """clamp(rint(v * (1 / s)) + zp, 0, 255) (float lanes; NaN stays NaN; 1 / s once, out
    of the loops: quant.py's rule)."""
    n = LV.count
    fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(LV, [LV]),
                                        f"llvm.rint.v{n}f32")
    inv = builder.fdiv(ir.Constant(LV, [1.0] * n), s)
    q = builder.fadd(builder.call(fn, [builder.fmul(v, inv)]), zp)
    hi = ir.Constant(LV, [255.0] * n)
    lo = ir.Constant(LV, [0.0] * n)
    q = builder.select(builder.fcmp_ordered(">", q, hi), hi, q)
    return builder.select(builder.fcmp_ordered("<", q, lo), lo, q)


@intrinsic
def vqst4_16(typingctx, arr, idx, stride, a0, a1, a2, a3, s, zp, npx):
    """Four consecutive pixels' 16 channels (float vectors a0..a3) quantized as vqpack16 and
    stored into their 4 planes: arr.flat[idx + j * stride + p] = the word of channels
    4j..4j+3 of pixel p (as vstword4_16 of four vqpack16), by vpackssdw + vpackuswb (their
    128-bit lanes are the planes: no shuffles) and 4 stores (arr: int32; AVX-512BW); only
    pixels p < npx are stored (masked stores)."""
    if not (_is_arr(arr, types.int32) and isinstance(idx, types.Integer)
            and isinstance(npx, types.Integer)
            and isinstance(stride, types.Integer) and s == types.float32
            and zp == types.float32 and all(a == F32Vec(16) for a in (a0, a1, a2, a3))):
        return None

    def codegen(context, builder, sig, args):
        LW = ir.VectorType(_I16, 32)
        sv = _splat_i(builder, args[7], _LF16, 16)
        zv = _splat_i(builder, args[8], _LF16, 16)
        q = [builder.fptosi(_rint_clamp(builder, a, sv, zv, _LF16), _LI16) for a in args[3:7]]
        pw = cgutils.get_or_insert_function(builder.module, ir.FunctionType(LW, [_LI16, _LI16]),
                                            "llvm.x86.avx512.packssdw.512")
        pb = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_LB64, [LW, LW]),
                                            "llvm.x86.avx512.packuswb.512")
        b = builder.bitcast(builder.call(pb, [builder.call(pw, q[:2]), builder.call(pw, q[2:])]),
                            _LI16)
        a = context.make_array(sig.args[0])(context, builder, args[0])
        i0 = context.cast(builder, args[1], sig.args[1], types.int64)
        st = context.cast(builder, args[2], sig.args[2], types.int64)
        L4 = ir.VectorType(_I32, 4)
        LM4 = ir.VectorType(ir.IntType(1), 4)
        npx = builder.trunc(context.cast(builder, args[9], sig.args[9], types.int64), _I32)
        mask = builder.icmp_signed("<", ir.Constant(L4, [0, 1, 2, 3]),
                                   _splat_i(builder, npx, L4, 4))
        mstore = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [L4, L4.as_pointer(), _I32, LM4]),
            "llvm.masked.store.v4i32.p0v4i32")
        for j in range(4):
            v = builder.shuffle_vector(b, ir.Constant(_LI16, ir.Undefined),
                                       ir.Constant(L4, [4 * j + k for k in range(4)]))
            p = builder.gep(a.data, [builder.add(i0, builder.mul(st, ir.Constant(
                ir.IntType(64), j)))], inbounds=True)
            builder.call(mstore, [v, builder.bitcast(p, L4.as_pointer()), ir.Constant(_I32, 4),
                                  mask])
        return context.get_dummy_value()
    return types.none(arr, idx, stride, a0, a1, a2, a3, s, zp, npx), codegen


@intrinsic
def vquant4_16(typingctx, x, idx, cs, nc, np_, s, zp, out, oidx):
    """Quantize 16 pixels x 4 channels: x.flat[idx + j*cs + p] (float32, j < 4, p < 16) ->
    out bytes [oidx + 4p + j] = clamp(rint(x * (1/s)) + zp, 0, 255) (uint8, channels interleaved
    per pixel). rint rounds half to even, as ONNX QuantizeLinear. Only the first ``nc``
    (1..4) channels are read; channels j >= nc repeat channel nc - 1 (their weights are 0).
    Only the first ``np_`` (1..16) pixels are read and written (masked loads / store: rows
    narrower than 16 pixels stay vectorized and nothing past them is touched)."""
    if not (_is_f32_array(x) and _is_arr(out, types.uint8) and s == types.float32
            and zp == types.float32
            and all(isinstance(t, types.Integer) for t in (idx, cs, nc, np_, oidx))):
        return None
    LB16 = ir.VectorType(_I8, 16)
    LB64 = ir.VectorType(_I8, 64)

    def codegen(context, builder, sig, args):
        a = context.make_array(sig.args[0])(context, builder, args[0])
        I64 = ir.IntType(64)
        i0 = context.cast(builder, args[1], sig.args[1], types.int64)
        st = context.cast(builder, args[2], sig.args[2], types.int64)
        last = builder.sub(context.cast(builder, args[3], sig.args[3], types.int64),
                           ir.Constant(I64, 1))
        npx = builder.trunc(context.cast(builder, args[4], sig.args[4], types.int64), _I32)
        sv = _splat_i(builder, args[5], _LF16, 16)
        zv = _splat_i(builder, args[6], _LF16, 16)
        qs = []
        zero = ir.Constant(_LF16, [0.0] * 16)
        for v in _plane_loads(builder, a.data, i0, st, last, npx, zero):
            q = _rint_clamp(builder, v, sv, zv, _LF16)
            qs.append(builder.trunc(builder.fptosi(q, _LI16), LB16))
        m32 = ir.VectorType(_I32, 32)
        il = [v for p in range(16) for v in (p, 16 + p)]
        c01 = builder.shuffle_vector(qs[0], qs[1], ir.Constant(m32, il))
        c23 = builder.shuffle_vector(qs[2], qs[3], ir.Constant(m32, il))
        fin = [v for p in range(16) for v in (2 * p, 2 * p + 1, 32 + 2 * p, 33 + 2 * p)]
        r = builder.shuffle_vector(c01, c23, ir.Constant(ir.VectorType(_I32, 64), fin))
        po = _eptr(context, builder, sig.args[7], args[7], args[8], sig.args[8])
        LM64 = ir.VectorType(ir.IntType(1), 64)
        m64 = builder.icmp_signed("<", ir.Constant(ir.VectorType(_I32, 64), list(range(64))),
                                  _splat_i(builder, builder.mul(npx, ir.Constant(_I32, 4)),
                                           ir.VectorType(_I32, 64), 64))
        mstore = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [LB64, LB64.as_pointer(), _I32, LM64]),
            "llvm.masked.store.v64i8.p0v64i8")
        builder.call(mstore, [r, builder.bitcast(po, LB64.as_pointer()), ir.Constant(_I32, 1),
                              m64])
        return context.get_dummy_value()
    return types.none(x, idx, cs, nc, np_, s, zp, out, oidx), codegen


def has_vnni() -> bool:
    """The int8 kernels of this tier use AVX512-VNNI (tier avx512vnni)."""
    return tier() == "avx512vnni"


def _make_qpack(n):
    VF, VW = F32Vec(n), Vec("i32", n // 4)
    LF = ir.VectorType(_F, n)
    LW = ir.VectorType(_I32, n // 4)

    @intrinsic
    def vqpack(typingctx, v, s, zp):
        """n float lanes -> clamp(rint(v * (1/s)) + zp, 0, 255) as bytes, 4 a word (lane j of
        the result: lanes 4j..4j+3, the first in the low byte): the int8 input layout's 4
        channels of one pixel (qconv.quantize_padded's rule, bit for bit)."""
        if not (v == VF and s == types.float32 and zp == types.float32):
            return None

        def codegen(context, builder, sig, args):
            q = _rint_clamp(builder, args[0], _splat_i(builder, args[1], LF, n),
                            _splat_i(builder, args[2], LF, n), LF)
            b = builder.trunc(builder.fptosi(q, ir.VectorType(_I32, n)), ir.VectorType(_I8, n))
            return builder.bitcast(b, LW)
        return VW(v, s, zp), codegen

    @intrinsic
    def vstword(typingctx, arr, idx, w, j):
        """arr.flat[idx] = lane j of the packed words w (arr: int32)."""
        if not (_is_arr(arr, types.int32) and isinstance(idx, types.Integer) and w == VW
                and isinstance(j, types.Integer)):
            return None

        def codegen(context, builder, sig, args):
            jj = context.cast(builder, args[3], sig.args[3], types.int32)
            lane = builder.extract_element(args[2], jj)
            builder.store(lane, _eptr(context, builder, sig.args[0], args[0], args[1],
                                      sig.args[1]))
            return context.get_dummy_value()
        return types.none(arr, idx, w, j), codegen
    @intrinsic
    def vqword(typingctx, arr, idx, stride, last):
        """The inverse of vqpack's packing: words arr.flat[idx + j * stride] (j < n/4, j past
        ``last`` read as word ``last``: a partial channel block) -> their n bytes as floats
        (the uint8 codes q themselves)."""
        if not (_is_arr(arr, types.int32)
                and all(isinstance(t, types.Integer) for t in (idx, stride, last))):
            return None

        def codegen(context, builder, sig, args):
            I64 = ir.IntType(64)
            a = context.make_array(sig.args[0])(context, builder, args[0])
            i0 = context.cast(builder, args[1], sig.args[1], types.int64)
            st = context.cast(builder, args[2], sig.args[2], types.int64)
            lst = context.cast(builder, args[3], sig.args[3], types.int64)
            w = ir.Constant(LW, ir.Undefined)
            for j in range(n // 4):
                jj = ir.Constant(I64, j)
                jj = builder.select(builder.icmp_signed(">", jj, lst), lst, jj)
                p = builder.gep(a.data, [builder.add(i0, builder.mul(st, jj))], inbounds=True)
                w = builder.insert_element(w, builder.load(p, align=4, typ=_I32),
                                           ir.Constant(_I32, j))
            b = builder.bitcast(w, ir.VectorType(_I8, n))
            return builder.uitofp(builder.zext(b, ir.VectorType(_I32, n)), LF)
        return VF(arr, idx, stride, last), codegen

    VP = Vec("i32", n)
    LP = ir.VectorType(_I32, n)

    @intrinsic
    def vqpack4(typingctx, v0, v1, v2, v3, s, zp):
        """Four channels' n pixels -> n words, one a pixel: the bytes of v0..v3 quantized
        as vqpack (v0 in the low byte): the int8 layout's 4 channels of each pixel."""
        if not (v0 == VF and v1 == VF and v2 == VF and v3 == VF and s == types.float32
                and zp == types.float32):
            return None

        def codegen(context, builder, sig, args):
            sv = _splat_i(builder, args[4], LF, n)
            zv = _splat_i(builder, args[5], LF, n)
            w = None
            for k in range(4):
                q = builder.fptosi(_rint_clamp(builder, args[k], sv, zv, LF), LP)
                if k:
                    q = builder.shl(q, ir.Constant(LP, [8 * k] * n))
                w = q if w is None else builder.or_(w, q)
            return w
        return VP(v0, v1, v2, v3, s, zp), codegen

    @intrinsic
    def vstwords(typingctx, arr, idx, w):
        """arr.flat[idx:idx + n] = the n words w (arr: int32)."""
        if not (_is_arr(arr, types.int32) and isinstance(idx, types.Integer) and w == VP):
            return None

        def codegen(context, builder, sig, args):
            p = _eptr(context, builder, sig.args[0], args[0], args[1], sig.args[1])
            builder.store(args[2], builder.bitcast(p, LP.as_pointer()), align=4)
            return context.get_dummy_value()
        return types.none(arr, idx, w), codegen
    @intrinsic
    def vstword4(typingctx, arr, idx, stride, w0, w1, w2, w3):
        """Four consecutive pixels' packed words (vqpack of each) -> their n/4 planes:
        arr.flat[idx + j * stride + k] = lane j of wk (k < 4, j < n/4): one 4-word store a
        plane instead of four scalar ones (arr: int32)."""
        if not (_is_arr(arr, types.int32) and isinstance(idx, types.Integer)
                and isinstance(stride, types.Integer) and w0 == VW and w1 == VW
                and w2 == VW and w3 == VW):
            return None
        m = n // 4
        L4 = ir.VectorType(_I32, 4)

        def codegen(context, builder, sig, args):
            i0 = context.cast(builder, args[1], sig.args[1], types.int64)
            st = context.cast(builder, args[2], sig.args[2], types.int64)
            a = context.make_array(sig.args[0])(context, builder, args[0])
            ws = list(args[3:7])
            for j in range(m):
                lo = builder.shuffle_vector(ws[0], ws[1], ir.Constant(
                    ir.VectorType(_I32, 2), [j, m + j]))
                hi = builder.shuffle_vector(ws[2], ws[3], ir.Constant(
                    ir.VectorType(_I32, 2), [j, m + j]))
                v = builder.shuffle_vector(lo, hi, ir.Constant(L4, [0, 1, 2, 3]))
                p = builder.gep(a.data, [builder.add(i0, builder.mul(st, ir.Constant(
                    ir.IntType(64), j)))], inbounds=True)
                builder.store(v, builder.bitcast(p, L4.as_pointer()), align=4)
            return context.get_dummy_value()
        return types.none(arr, idx, stride, w0, w1, w2, w3), codegen
    @intrinsic
    def vqtile(typingctx, arr, idx, stride, out, oidx, ostep):
        """n pixels of n channels: vqword of the words arr.flat[idx + p + j * stride]
        (p < n, j < n/4) stored at out.flat[oidx + p * ostep] (n/4 vector loads, then
        shuffles, instead of n*n/4 scalar loads)."""
        if not (_is_arr(arr, types.int32) and _is_f32_array(out)
                and all(isinstance(t, types.Integer) for t in (idx, stride, oidx, ostep))):
            return None
        m = n // 4

        def codegen(context, builder, sig, args):
            I64 = ir.IntType(64)
            a = context.make_array(sig.args[0])(context, builder, args[0])
            i0 = context.cast(builder, args[1], sig.args[1], types.int64)
            st = context.cast(builder, args[2], sig.args[2], types.int64)
            o0 = context.cast(builder, args[4], sig.args[4], types.int64)
            os_ = context.cast(builder, args[5], sig.args[5], types.int64)
            ob = context.make_array(sig.args[3])(context, builder, args[3])
            LN = ir.VectorType(_I32, n)
            rows = []
            for j in range(m):
                p = builder.gep(a.data, [builder.add(i0, builder.mul(st, ir.Constant(I64, j)))],
                                inbounds=True)
                rows.append(builder.load(builder.bitcast(p, LN.as_pointer()), align=4, typ=LN))
            while len(rows) > 1:      # one vector of m*n words, plane-major
                c = rows[0].type.count
                rows = [builder.shuffle_vector(rows[i], rows[i + 1], ir.Constant(
                    ir.VectorType(_I32, 2 * c), list(range(2 * c))))
                        for i in range(0, len(rows), 2)]
            big = rows[0]
            for px in range(n):
                w = builder.shuffle_vector(big, ir.Constant(big.type, ir.Undefined), ir.Constant(
                    ir.VectorType(_I32, m), [j * n + px for j in range(m)]))
                b = builder.bitcast(w, ir.VectorType(_I8, n))
                f = builder.uitofp(builder.zext(b, ir.VectorType(_I32, n)), LF)
                q = builder.gep(ob.data, [builder.add(o0, builder.mul(os_, ir.Constant(I64, px)))],
                                inbounds=True)
                builder.store(f, builder.bitcast(q, LF.as_pointer()), align=4)
            return context.get_dummy_value()
        return types.none(arr, idx, stride, out, oidx, ostep), codegen
    return vqpack, vstword, vqword, vqpack4, vstwords, vstword4, vqtile


(vqpack16, vstword16, vqword16, vqpack4_16, vstwords16, vstword4_16,
 vqtile16) = _make_qpack(16)
vqpack8, vstword8, vqword8, vqpack4_8, vstwords8, vstword4_8, vqtile8 = _make_qpack(8)
