"""Lowering of the fixed-width SIMD instructions (v128) to LLVM vector IR.

A v128 travels as `<2 x i64>` (layout.V128); each operator bitcasts its operands to its lane shape
(`<16 x i8>`, `<4 x float>`, ...), which costs nothing. `SIMD` maps the mnemonic of every plain
operator (immediate kind `none`) to `(fx, args) -> result`, as numeric.py's NUMERIC does; `SIMD_IMM`
maps the others (memory accesses, lanes, constants, shuffles) to `(fc, imm) -> None`, which work on
the function's operand stack themselves.

As in numeric.py nothing may be poison or undefined for some input: shift counts are masked, lane
indices are validated constants, float->int conversions use the saturating intrinsics (exactly
wasm's trunc_sat), and abs keeps INT_MIN (`is_int_min_poison` false).
"""
from __future__ import annotations

from typing import Any, Callable

from llvmlite import ir

from .layout import V128
from .numeric import Fx, Lower

I1 = ir.IntType(1)
I8, I16, I32, I64 = ir.IntType(8), ir.IntType(16), ir.IntType(32), ir.IntType(64)
F32, F64 = ir.FloatType(), ir.DoubleType()

# lane shape -> (lane type, lane count)
SHAPES = {"i8x16": (I8, 16), "i16x8": (I16, 8), "i32x4": (I32, 4), "i64x2": (I64, 2),
          "f32x4": (F32, 4), "f64x2": (F64, 2)}
_VEC = {name: ir.VectorType(t, n) for name, (t, n) in SHAPES.items()}
_INT_SHAPE = {8: "i8x16", 16: "i16x8", 32: "i32x4", 64: "i64x2"}


def vec(fx: Fx, v: ir.Value, shape: str) -> ir.Value:
    """v (a v128) seen as lanes of `shape`."""
    t = _VEC[shape]
    return v if v.type == t else fx.b.bitcast(v, t)


def v128(fx: Fx, v: ir.Value) -> ir.Value:
    return v if v.type == V128 else fx.b.bitcast(v, V128)


def _mask(idx: list[int]) -> ir.Constant:
    return ir.Constant(ir.VectorType(I32, len(idx)), idx)


def _vname(t: ir.VectorType) -> str:
    """The overload suffix of LLVM's vector intrinsics: v16i8, v4f32..."""
    e = t.element
    return f"v{t.count}" + ("f32" if e == F32 else "f64" if e == F64 else f"i{e.width}")


def _call(fx: Fx, name: str, ret: ir.Type, args: list[ir.Value]) -> ir.Value:
    return fx.b.call(fx.intrinsic(name, ret, [a.type for a in args]), args)


def splat(fx: Fx, x: ir.Value, t: ir.VectorType) -> ir.Value:
    # (zeros, not undef, around x: nothing in the IR is undefined, as numeric.py promises)
    one = fx.b.insert_element(ir.Constant(t, None), x, ir.Constant(I32, 0))
    return fx.b.shuffle_vector(one, ir.Constant(t, None), _mask([0] * t.count))


def _half(fx: Fx, v: ir.Value, high: bool) -> ir.Value:
    """The low or high half of a vector's lanes."""
    n = v.type.count // 2
    return fx.b.shuffle_vector(v, v, _mask(list(range(n, 2 * n) if high else range(n))))


def _concat(fx: Fx, a: ir.Value, b: ir.Value) -> ir.Value:
    return fx.b.shuffle_vector(a, b, _mask(list(range(2 * a.type.count))))


def _wider(shape: str) -> str:
    return _INT_SHAPE[SHAPES[shape][0].width * 2]


# ---- plain lane-wise operators ----------------------------------------------------------------

def _binop(shape: str, method: str) -> Lower:
    def lower(fx: Fx, args: list[ir.Value]) -> ir.Value:
        a, b = (vec(fx, x, shape) for x in args)
        return v128(fx, getattr(fx.b, method)(a, b))
    return lower


def _unop_intrinsic(shape: str, name: str, extra: list[ir.Value] | None = None) -> Lower:
    def lower(fx: Fx, args: list[ir.Value]) -> ir.Value:
        a = vec(fx, args[0], shape)
        return v128(fx, _call(fx, f"llvm.{name}.{_vname(a.type)}", a.type, [a] + (extra or [])))
    return lower


def _binop_intrinsic(shape: str, name: str) -> Lower:
    def lower(fx: Fx, args: list[ir.Value]) -> ir.Value:
        a, b = (vec(fx, x, shape) for x in args)
        return v128(fx, _call(fx, f"llvm.{name}.{_vname(a.type)}", a.type, [a, b]))
    return lower


def _neg(shape: str) -> Lower:
    def lower(fx: Fx, args: list[ir.Value]) -> ir.Value:
        a = vec(fx, args[0], shape)
        if shape[0] == "f":
            return v128(fx, fx.b.fneg(a))
        return v128(fx, fx.b.sub(ir.Constant(a.type, None), a))
    return lower


_ICMP = {"eq": "==", "ne": "!=", "lt": "<", "gt": ">", "le": "<=", "ge": ">="}


def _cmp(shape: str, cond: str) -> Lower:
    """All ones in the lanes where the comparison holds."""
    op, _, sign = cond.partition("_")

    def lower(fx: Fx, args: list[ir.Value]) -> ir.Value:
        a, b = (vec(fx, x, shape) for x in args)
        if shape[0] == "f":
            # ne is the one comparison that holds on NaN: unordered; the others ordered
            c = (fx.b.fcmp_unordered if op == "ne" else fx.b.fcmp_ordered)(_ICMP[op], a, b)
            return v128(fx, fx.b.sext(c, _VEC["i32x4" if shape == "f32x4" else "i64x2"]))
        c = (fx.b.icmp_unsigned if sign == "u" or op in ("eq", "ne") else fx.b.icmp_signed)(_ICMP[op], a, b)
        return v128(fx, fx.b.sext(c, a.type))
    return lower


def _shift(shape: str, method: str) -> Lower:
    """The count is taken modulo the lane width, as wasm says (LLVM would make a larger one poison)."""
    def lower(fx: Fx, args: list[ir.Value]) -> ir.Value:
        a = vec(fx, args[0], shape)
        lane_t = a.type.element
        n = fx.b.and_(args[1], ir.Constant(I32, lane_t.width - 1))
        n = fx.b.trunc(n, lane_t) if lane_t.width < 32 else fx.b.zext(n, lane_t) if lane_t.width > 32 else n
        return v128(fx, getattr(fx.b, method)(a, splat(fx, n, a.type)))
    return lower


def _abs(shape: str) -> Lower:
    if shape[0] == "f":
        return _unop_intrinsic(shape, "fabs")

    def lower(fx: Fx, args: list[ir.Value]) -> ir.Value:
        a = vec(fx, args[0], shape)
        return v128(fx, _call(fx, f"llvm.abs.{_vname(a.type)}", a.type, [a, ir.Constant(I1, 0)]))
    return lower


def _avgr_u(shape: str) -> Lower:
    """(a + b + 1) / 2, unsigned, in lanes twice as wide."""
    def lower(fx: Fx, args: list[ir.Value]) -> ir.Value:
        a, b = (vec(fx, x, shape) for x in args)
        wt = ir.VectorType(ir.IntType(a.type.element.width * 2), a.type.count)
        s = fx.b.add(fx.b.add(fx.b.zext(a, wt), fx.b.zext(b, wt)), ir.Constant(wt, [1] * a.type.count))
        return v128(fx, fx.b.trunc(fx.b.lshr(s, ir.Constant(wt, [1] * a.type.count)), a.type))
    return lower


def _all_true(shape: str) -> Lower:
    def lower(fx: Fx, args: list[ir.Value]) -> ir.Value:
        a = vec(fx, args[0], shape)
        nz = fx.b.icmp_unsigned("!=", a, ir.Constant(a.type, None))
        bits = fx.b.bitcast(nz, ir.IntType(a.type.count))
        return fx.b.zext(fx.b.icmp_unsigned("==", bits, ir.Constant(bits.type, -1)), I32)
    return lower


def _bitmask(shape: str) -> Lower:
    def lower(fx: Fx, args: list[ir.Value]) -> ir.Value:
        a = vec(fx, args[0], shape)
        neg = fx.b.icmp_signed("<", a, ir.Constant(a.type, None))
        return fx.b.zext(fx.b.bitcast(neg, ir.IntType(a.type.count)), I32)
    return lower


def _any_true(fx: Fx, args: list[ir.Value]) -> ir.Value:
    x = fx.b.bitcast(args[0], ir.IntType(128))
    return fx.b.zext(fx.b.icmp_unsigned("!=", x, ir.Constant(x.type, 0)), I32)


def _narrow(shape: str, signed: bool) -> Lower:
    """Two vectors of signed lanes, each saturated to the narrower lane's signed or unsigned range."""
    src = _wider(shape)

    def lower(fx: Fx, args: list[ir.Value]) -> ir.Value:
        a, b = (vec(fx, x, src) for x in args)
        w = SHAPES[shape][0].width
        lo, hi = (-(1 << (w - 1)), (1 << (w - 1)) - 1) if signed else (0, (1 << w) - 1)
        t = a.type

        def clamp(x: ir.Value) -> ir.Value:
            x = _call(fx, f"llvm.smax.{_vname(t)}", t, [x, ir.Constant(t, [lo] * t.count)])
            x = _call(fx, f"llvm.smin.{_vname(t)}", t, [x, ir.Constant(t, [hi] * t.count)])
            return fx.b.trunc(x, ir.VectorType(SHAPES[shape][0], t.count))
        return v128(fx, _concat(fx, clamp(a), clamp(b)))
    return lower


def _extend(shape: str, high: bool, signed: bool) -> Lower:
    """The low or high half of the narrower lanes, sign- or zero-extended."""
    def lower(fx: Fx, args: list[ir.Value]) -> ir.Value:
        a = _half(fx, vec(fx, args[0], _narrower(shape)), high)
        return v128(fx, (fx.b.sext if signed else fx.b.zext)(a, _VEC[shape]))
    return lower


def _narrower(shape: str) -> str:
    return _INT_SHAPE[SHAPES[shape][0].width // 2]


def _extmul(shape: str, high: bool, signed: bool) -> Lower:
    ext = _extend(shape, high, signed)

    def lower(fx: Fx, args: list[ir.Value]) -> ir.Value:
        a, b = (vec(fx, ext(fx, [x]), shape) for x in args)
        return v128(fx, fx.b.mul(a, b))
    return lower


def _extadd_pairwise(shape: str, signed: bool) -> Lower:
    def lower(fx: Fx, args: list[ir.Value]) -> ir.Value:
        a = vec(fx, args[0], _narrower(shape))
        n = a.type.count // 2
        ext = fx.b.sext if signed else fx.b.zext
        even = ext(fx.b.shuffle_vector(a, a, _mask(list(range(0, 2 * n, 2)))), _VEC[shape])
        odd = ext(fx.b.shuffle_vector(a, a, _mask(list(range(1, 2 * n, 2)))), _VEC[shape])
        return v128(fx, fx.b.add(even, odd))
    return lower


def _dot(fx: Fx, args: list[ir.Value]) -> ir.Value:
    a, b = (fx.b.sext(vec(fx, x, "i16x8"), ir.VectorType(I32, 8)) for x in args)
    p = fx.b.mul(a, b)
    even = fx.b.shuffle_vector(p, p, _mask([0, 2, 4, 6]))
    odd = fx.b.shuffle_vector(p, p, _mask([1, 3, 5, 7]))
    return v128(fx, fx.b.add(even, odd))


def _q15mulr_sat(fx: Fx, args: list[ir.Value]) -> ir.Value:
    """(a * b + 0x4000) >> 15, saturated: only -32768 * -32768 overflows."""
    w = ir.VectorType(I32, 8)
    a, b = (fx.b.sext(vec(fx, x, "i16x8"), w) for x in args)
    r = fx.b.ashr(fx.b.add(fx.b.mul(a, b), ir.Constant(w, [0x4000] * 8)), ir.Constant(w, [15] * 8))
    r = _call(fx, "llvm.smin.v8i32", w, [r, ir.Constant(w, [0x7FFF] * 8)])
    return v128(fx, fx.b.trunc(r, _VEC["i16x8"]))


def _bitwise(method: str, invert_second: bool = False) -> Lower:
    def lower(fx: Fx, args: list[ir.Value]) -> ir.Value:
        a, b = args
        if invert_second:
            b = fx.b.not_(b)
        return getattr(fx.b, method)(a, b)
    return lower


def _not(fx: Fx, args: list[ir.Value]) -> ir.Value:
    return fx.b.not_(args[0])


def _bitselect(fx: Fx, args: list[ir.Value]) -> ir.Value:
    a, b, c = args
    return fx.b.or_(fx.b.and_(a, c), fx.b.and_(b, fx.b.not_(c)))


def _swizzle(fx: Fx, args: list[ir.Value]) -> ir.Value:
    """Lane i of the result is a[s[i]], or 0 where s[i] >= 16. LLVM has no shuffle by a variable
    index, but x86's backend turns a vector built of a[k[i]] lane by lane into one pshufb (SSSE3): so
    the lanes pick a[s[i] & 15], and a mask zeroes those whose index was out of range."""
    a, s = vec(fx, args[0], "i8x16"), vec(fx, args[1], "i8x16")
    k = fx.b.and_(s, ir.Constant(s.type, [15] * 16))
    out = ir.Constant(a.type, None)
    for i in range(16):
        lane = fx.b.extract_element(a, fx.b.extract_element(k, ir.Constant(I32, i)))
        out = fx.b.insert_element(out, lane, ir.Constant(I32, i))
    inside = fx.b.sext(fx.b.icmp_unsigned("<", s, ir.Constant(s.type, [16] * 16)), s.type)
    return v128(fx, fx.b.and_(out, inside))


def _splat(shape: str) -> Lower:
    def lower(fx: Fx, args: list[ir.Value]) -> ir.Value:
        x = args[0]
        t = _VEC[shape]
        if t.element != x.type:  # i8x16 / i16x8 splat an i32
            x = fx.b.trunc(x, t.element)
        return v128(fx, splat(fx, x, t))
    return lower


# ---- floats -----------------------------------------------------------------------------------

def quiet_nans(fx: Fx, v: ir.Value, shape: str) -> ir.Value:
    """v (a v128 of f32x4 or f64x2 lanes) with the quiet bit set in its NaN lanes. With integer
    operations, not llvm.canonicalize: x86's instruction selection aborts the process on a
    canonicalize that LLVM has narrowed to two f32 lanes (as a promote_low of it does)."""
    ishape = "i32x4" if shape == "f32x4" else "i64x2"
    quiet = ir.Constant(_VEC[ishape], [1 << (22 if shape == "f32x4" else 51)] * SHAPES[ishape][1])
    lanes = vec(fx, v, shape)
    bits = vec(fx, v, ishape)
    return v128(fx, fx.b.select(fx.b.fcmp_unordered("uno", lanes, lanes), fx.b.or_(bits, quiet), bits))


def _fminmax(shape: str, which: str) -> Lower:
    """wasm's min/max: NaN if either is NaN, and -0 < +0, as LLVM's minimum/maximum; but a NaN comes
    out of those as it went in, and wasm wants it quiet."""
    pick = _binop_intrinsic(shape, which)

    def lower(fx: Fx, args: list[ir.Value]) -> ir.Value:
        return quiet_nans(fx, pick(fx, args), shape)
    return lower


def _pminmax(shape: str, which: str) -> Lower:
    """pmin(a, b) = b < a ? b : a; pmax(a, b) = a < b ? b : a (NaNs pass as the C expressions say)."""
    def lower(fx: Fx, args: list[ir.Value]) -> ir.Value:
        a, b = (vec(fx, x, shape) for x in args)
        c = fx.b.fcmp_ordered("<", b, a) if which == "pmin" else fx.b.fcmp_ordered("<", a, b)
        return v128(fx, fx.b.select(c, b, a))
    return lower


def _convert(src: str, dst: str, signed: bool, low: bool = False) -> Lower:
    def lower(fx: Fx, args: list[ir.Value]) -> ir.Value:
        a = vec(fx, args[0], src)
        if low:
            a = _half(fx, a, False)
        return v128(fx, (fx.b.sitofp if signed else fx.b.uitofp)(a, _VEC[dst]))
    return lower


def _trunc_sat(src: str, signed: bool, zero: bool = False) -> Lower:
    """fptosi.sat / fptoui.sat: NaN -> 0, out of range -> the nearest bound, as wasm's trunc_sat."""
    def lower(fx: Fx, args: list[ir.Value]) -> ir.Value:
        a = vec(fx, args[0], src)
        rt = ir.VectorType(I32, a.type.count)
        r = _call(fx, f"llvm.fpto{'s' if signed else 'u'}i.sat.{_vname(rt)}.{_vname(a.type)}", rt, [a])
        if zero:
            r = _concat(fx, r, ir.Constant(rt, None))
        return v128(fx, r)
    return lower


def _demote(fx: Fx, args: list[ir.Value]) -> ir.Value:
    r = fx.b.fptrunc(vec(fx, args[0], "f64x2"), ir.VectorType(F32, 2))
    return v128(fx, _concat(fx, r, ir.Constant(r.type, None)))


def _promote(fx: Fx, args: list[ir.Value]) -> ir.Value:
    return v128(fx, fx.b.fpext(_half(fx, vec(fx, args[0], "f32x4"), False), _VEC["f64x2"]))


def _build() -> dict[str, Lower]:
    t: dict[str, Lower] = {
        "v128.not": _not, "v128.and": _bitwise("and_"), "v128.andnot": _bitwise("and_", True),
        "v128.or": _bitwise("or_"), "v128.xor": _bitwise("xor"), "v128.bitselect": _bitselect,
        "v128.any_true": _any_true, "i8x16.swizzle": _swizzle, "i8x16.popcnt": _unop_intrinsic("i8x16", "ctpop"),
        "i32x4.dot_i16x8_s": _dot, "i16x8.q15mulr_sat_s": _q15mulr_sat,
        "f32x4.demote_f64x2_zero": _demote, "f64x2.promote_low_f32x4": _promote,
        "f32x4.convert_i32x4_s": _convert("i32x4", "f32x4", True),
        "f32x4.convert_i32x4_u": _convert("i32x4", "f32x4", False),
        "f64x2.convert_low_i32x4_s": _convert("i32x4", "f64x2", True, low=True),
        "f64x2.convert_low_i32x4_u": _convert("i32x4", "f64x2", False, low=True),
        "i32x4.trunc_sat_f32x4_s": _trunc_sat("f32x4", True), "i32x4.trunc_sat_f32x4_u": _trunc_sat("f32x4", False),
        "i32x4.trunc_sat_f64x2_s_zero": _trunc_sat("f64x2", True, zero=True),
        "i32x4.trunc_sat_f64x2_u_zero": _trunc_sat("f64x2", False, zero=True),
        "i8x16.narrow_i16x8_s": _narrow("i8x16", True), "i8x16.narrow_i16x8_u": _narrow("i8x16", False),
        "i16x8.narrow_i32x4_s": _narrow("i16x8", True), "i16x8.narrow_i32x4_u": _narrow("i16x8", False),
    }
    for shape in SHAPES:
        t[f"{shape}.splat"] = _splat(shape)
        t[f"{shape}.neg"] = _neg(shape)
        t[f"{shape}.abs"] = _abs(shape)
        for c in ("eq", "ne"):
            t[f"{shape}.{c}"] = _cmp(shape, c)
    for shape in ("i8x16", "i16x8", "i32x4", "i64x2"):
        t[f"{shape}.add"], t[f"{shape}.sub"] = _binop(shape, "add"), _binop(shape, "sub")
        for c in ("lt", "gt", "le", "ge"):
            t[f"{shape}.{c}_s"] = _cmp(shape, f"{c}_s")
            if shape != "i64x2":  # (wasm has no unsigned i64x2 comparisons)
                t[f"{shape}.{c}_u"] = _cmp(shape, f"{c}_u")
        t[f"{shape}.shl"], t[f"{shape}.shr_s"], t[f"{shape}.shr_u"] = (
            _shift(shape, "shl"), _shift(shape, "ashr"), _shift(shape, "lshr"))
        t[f"{shape}.all_true"], t[f"{shape}.bitmask"] = _all_true(shape), _bitmask(shape)
        if shape != "i64x2":
            for m in ("min", "max"):
                t[f"{shape}.{m}_s"] = _binop_intrinsic(shape, f"s{m}")
                t[f"{shape}.{m}_u"] = _binop_intrinsic(shape, f"u{m}")
        if shape != "i8x16":
            t[f"{shape}.mul"] = _binop(shape, "mul")
            narrow = _narrower(shape)
            for half in ("low", "high"):
                for sign in ("s", "u"):
                    t[f"{shape}.extend_{half}_{narrow}_{sign}"] = _extend(shape, half == "high", sign == "s")
                    t[f"{shape}.extmul_{half}_{narrow}_{sign}"] = _extmul(shape, half == "high", sign == "s")
    for shape in ("i8x16", "i16x8"):
        for sat, name in (("add_sat", "add.sat"), ("sub_sat", "sub.sat")):
            t[f"{shape}.{sat}_s"] = _binop_intrinsic(shape, f"s{name}")
            t[f"{shape}.{sat}_u"] = _binop_intrinsic(shape, f"u{name}")
        t[f"{shape}.avgr_u"] = _avgr_u(shape)
    for shape in ("i16x8", "i32x4"):
        for sign in ("s", "u"):
            t[f"{shape}.extadd_pairwise_{_narrower(shape)}_{sign}"] = _extadd_pairwise(shape, sign == "s")
    for shape in ("f32x4", "f64x2"):
        for c in ("lt", "gt", "le", "ge"):
            t[f"{shape}.{c}"] = _cmp(shape, c)
        for o in ("add", "sub", "mul", "div"):
            t[f"{shape}.{o}"] = _binop(shape, "f" + o)
        t[f"{shape}.sqrt"] = _unop_intrinsic(shape, "sqrt")
        for o, name in (("ceil", "ceil"), ("floor", "floor"), ("trunc", "trunc"), ("nearest", "roundeven")):
            t[f"{shape}.{o}"] = _unop_intrinsic(shape, name)
        t[f"{shape}.min"], t[f"{shape}.max"] = _fminmax(shape, "minimum"), _fminmax(shape, "maximum")
        t[f"{shape}.pmin"], t[f"{shape}.pmax"] = _pminmax(shape, "pmin"), _pminmax(shape, "pmax")
    return t


SIMD: dict[str, Lower] = _build()


# ---- instructions with immediates: (fc, imm) on the operand stack -------------------------------

def _float_lanes(bits: int) -> tuple[list[int], list[int]]:
    """The magnitudes of a v128's bits seen as f32 lanes and as f64 lanes."""
    return ([bits >> (32 * i) & 0x7FFFFFFF for i in range(4)],
            [bits >> (64 * i) & 0x7FFFFFFFFFFFFFFF for i in range(2)])


def _v128_const(fc: Any, bits: int) -> None:
    """As scalar float constants (FuncCodegen.float_const): a constant with a signalling-NaN lane goes
    through an empty asm, so LLVM cannot fold an operation on it; one with a ±0 or ±1 lane is marked,
    so the float operators it meets quiet their result (x + -0, x * 1... fold to x)."""
    c: ir.Value = ir.Constant(V128, [bits & (2 ** 64 - 1), bits >> 64])
    f32s, f64s = _float_lanes(bits)
    if any(m > 0x7F800000 and not m >> 22 & 1 for m in f32s) or \
            any(m > 0x7FF0000000000000 and not m >> 51 & 1 for m in f64s):
        c = fc.b.call(fc.opaque_asm(V128), [c])
    fc.stack.append(c)
    if any(m in (0, 0x3F800000) for m in f32s) or any(m in (0, 0x3FF0000000000000) for m in f64s):
        fc.fidentities.add(id(c))


def _shuffle(fc: Any, lanes: tuple) -> None:
    a, b = (vec(fc, x, "i8x16") for x in fc.pop(2))
    fc.stack.append(v128(fc, fc.b.shuffle_vector(a, b, _mask(list(lanes)))))


def _extract(shape: str, ext: str | None) -> Callable:
    def lower(fc: Any, lane: int) -> None:
        x = fc.b.extract_element(vec(fc, fc.stack.pop(), shape), ir.Constant(I32, lane))
        if ext:
            x = (fc.b.sext if ext == "s" else fc.b.zext)(x, I32)
        fc.stack.append(x)
    return lower


def _replace(shape: str) -> Callable:
    def lower(fc: Any, lane: int) -> None:
        v, x = fc.pop(2)
        t = _VEC[shape]
        if t.element != x.type:
            x = fc.b.trunc(x, t.element)
        fc.stack.append(v128(fc, fc.b.insert_element(vec(fc, v, shape), x, ir.Constant(I32, lane))))
    return lower


def _load_scalar(fc: Any, imm: tuple, t: ir.Type) -> ir.Value:
    """A `t` loaded from the wasm address on the stack plus the memarg's offset."""
    p = fc.address(fc.stack.pop(), imm[1], t.width // 8 if isinstance(t, ir.IntType) else 16)
    load = fc.b.load(p, typ=t, align=1)
    load.set_metadata("tbaa", fc.mc.tbaa["memory"])
    if not fc.mc.bounds_checks:
        fc.keep(load)
    return load


def _load(fc: Any, imm: tuple) -> None:
    fc.stack.append(_load_scalar(fc, imm, V128))


def _load_extend(narrow: str, signed: bool) -> Callable:
    """v128.load8x8_s ...: 64 bits of narrow lanes, each extended to twice its width."""
    t, n = SHAPES[narrow]

    def lower(fc: Any, imm: tuple) -> None:
        x = fc.b.bitcast(_load_scalar(fc, imm, I64), ir.VectorType(t, n // 2))
        fc.stack.append(v128(fc, (fc.b.sext if signed else fc.b.zext)(x, _VEC[_wider(narrow)])))
    return lower


def _load_splat(width: int) -> Callable:
    def lower(fc: Any, imm: tuple) -> None:
        x = _load_scalar(fc, imm, ir.IntType(width))
        fc.stack.append(v128(fc, splat(fc, x, _VEC[_INT_SHAPE[width]])))
    return lower


def _load_zero(width: int) -> Callable:
    def lower(fc: Any, imm: tuple) -> None:
        x = _load_scalar(fc, imm, ir.IntType(width))
        t = _VEC[_INT_SHAPE[width]]
        fc.stack.append(v128(fc, fc.b.insert_element(ir.Constant(t, None), x, ir.Constant(I32, 0))))
    return lower


def _load_lane(width: int) -> Callable:
    def lower(fc: Any, imm: tuple) -> None:
        memarg, lane = imm
        v = fc.stack.pop()
        x = _load_scalar(fc, memarg, ir.IntType(width))
        shape = _INT_SHAPE[width]
        fc.stack.append(v128(fc, fc.b.insert_element(vec(fc, v, shape), x, ir.Constant(I32, lane))))
    return lower


def _store(fc: Any, imm: tuple) -> None:
    addr, v = fc.pop(2)
    fc.b.store(v, fc.address(addr, imm[1], 16), align=1).set_metadata("tbaa", fc.mc.tbaa["memory"])


def _store_lane(width: int) -> Callable:
    def lower(fc: Any, imm: tuple) -> None:
        (_, offset), lane = imm
        addr, v = fc.pop(2)
        x = fc.b.extract_element(vec(fc, v, _INT_SHAPE[width]), ir.Constant(I32, lane))
        fc.b.store(x, fc.address(addr, offset, width // 8), align=1).set_metadata("tbaa", fc.mc.tbaa["memory"])
    return lower


def _build_imm() -> dict[str, Callable]:
    t: dict[str, Callable] = {"v128.const": _v128_const, "i8x16.shuffle": _shuffle, "v128.load": _load,
                              "v128.store": _store}
    for narrow in ("i8x16", "i16x8", "i32x4"):
        w, n = SHAPES[narrow][0].width, SHAPES[narrow][1] // 2
        t[f"v128.load{w}x{n}_s"] = _load_extend(narrow, True)
        t[f"v128.load{w}x{n}_u"] = _load_extend(narrow, False)
    for w in (8, 16, 32, 64):
        t[f"v128.load{w}_splat"] = _load_splat(w)
        t[f"v128.load{w}_lane"] = _load_lane(w)
        t[f"v128.store{w}_lane"] = _store_lane(w)
    t["v128.load32_zero"], t["v128.load64_zero"] = _load_zero(32), _load_zero(64)
    for shape in SHAPES:
        if shape in ("i8x16", "i16x8"):
            t[f"{shape}.extract_lane_s"] = _extract(shape, "s")
            t[f"{shape}.extract_lane_u"] = _extract(shape, "u")
        else:
            t[f"{shape}.extract_lane"] = _extract(shape, None)
        t[f"{shape}.replace_lane"] = _replace(shape)
    return t


SIMD_IMM: dict[str, Callable] = _build_imm()
