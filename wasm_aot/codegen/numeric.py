"""Lowering of the plain numeric operators of WebAssembly 2.0 (SIMD aside) to LLVM IR.

`NUMERIC` maps every mnemonic of opcodes.py that has a `params>results` signature and immediate
kind `none` to a function `(fx, args) -> result`, args in stack order (first pushed first).

The lowering must keep exact wasm semantics under every LLVM optimisation, so it never emits
anything that can be undefined behaviour or poison for some input: divisors and shift counts are
guarded or masked, float->int conversions are range-checked before the fpto*i, and nothing carries
fast-math flags.
"""
from __future__ import annotations

from typing import Callable, Protocol

from llvmlite import ir

from ..errors import TrapCode

I1 = ir.IntType(1)
I32 = ir.IntType(32)
I64 = ir.IntType(64)
F32 = ir.FloatType()
F64 = ir.DoubleType()

_TYPES = {"i32": I32, "i64": I64, "f32": F32, "f64": F64}


class Fx(Protocol):
    """What the function-body lowering gives each operator."""

    b: ir.IRBuilder

    def trap_if(self, cond: ir.Value, code: TrapCode) -> None: ...

    def intrinsic(self, name: str, ret: ir.Type, args: list[ir.Type]) -> ir.Function: ...


Lower = Callable[[Fx, list[ir.Value]], ir.Value]


def _suffix(t: ir.Type) -> str:
    """The overload suffix LLVM intrinsic names use for a type."""
    if t == F32:
        return "f32"
    if t == F64:
        return "f64"
    return f"i{t.width}"


def _mantissa_bits(t: ir.Type) -> int:
    return 24 if t == F32 else 53


# --- comparisons (results are i32 0/1) -------------------------------------------------------

def _eqz(fx: Fx, args: list[ir.Value]) -> ir.Value:
    (a,) = args
    return fx.b.zext(fx.b.icmp_unsigned("==", a, ir.Constant(a.type, 0)), I32)


def _icmp(op: str, signed: bool) -> Lower:
    def lower(fx: Fx, args: list[ir.Value]) -> ir.Value:
        cmp = fx.b.icmp_signed if signed else fx.b.icmp_unsigned
        return fx.b.zext(cmp(op, *args), I32)
    return lower


def _fcmp(op: str) -> Lower:
    # wasm's ne is the only float comparison that is true on NaN, hence unordered; the rest ordered.
    def lower(fx: Fx, args: list[ir.Value]) -> ir.Value:
        cmp = fx.b.fcmp_unordered if op == "!=" else fx.b.fcmp_ordered
        return fx.b.zext(cmp(op, *args), I32)
    return lower


# --- integer arithmetic ------------------------------------------------------------------------

def _binop(method: str) -> Lower:
    # No nsw/nuw: wasm integer arithmetic wraps.
    def lower(fx: Fx, args: list[ir.Value]) -> ir.Value:
        return getattr(fx.b, method)(*args)
    return lower


def _bitcount(base: str, zero_poison: bool | None) -> Lower:
    """ctlz/cttz take an is_zero_poison flag (false: 0 gives the width, as wasm wants); ctpop doesn't."""
    def lower(fx: Fx, args: list[ir.Value]) -> ir.Value:
        (a,) = args
        t = a.type
        if zero_poison is None:
            return fx.b.call(fx.intrinsic(f"{base}.{_suffix(t)}", t, [t]), [a])
        fn = fx.intrinsic(f"{base}.{_suffix(t)}", t, [t, I1])
        return fx.b.call(fn, [a, ir.Constant(I1, int(zero_poison))])
    return lower


def _shift(method: str) -> Lower:
    # LLVM shifts by >= width are poison; wasm takes the count modulo the width.
    def lower(fx: Fx, args: list[ir.Value]) -> ir.Value:
        a, n = args
        n = fx.b.and_(n, ir.Constant(a.type, a.type.width - 1))
        return getattr(fx.b, method)(a, n)
    return lower


def _rotate(base: str) -> Lower:
    # A funnel shift of a value with itself is a rotate; fshl/fshr take the count modulo the width.
    def lower(fx: Fx, args: list[ir.Value]) -> ir.Value:
        a, n = args
        t = a.type
        return fx.b.call(fx.intrinsic(f"{base}.{_suffix(t)}", t, [t, t, t]), [a, a, n])
    return lower


def _divrem(signed: bool, rem: bool) -> Lower:
    def lower(fx: Fx, args: list[ir.Value]) -> ir.Value:
        a, d = args
        t = a.type
        b = fx.b
        fx.trap_if(b.icmp_unsigned("==", d, ir.Constant(t, 0)), TrapCode.INT_DIV_BY_ZERO)
        if not signed:
            return b.urem(a, d) if rem else b.udiv(a, d)
        minus_one = b.icmp_unsigned("==", d, ir.Constant(t, -1))
        if not rem:
            is_min = b.icmp_unsigned("==", a, ir.Constant(t, -(1 << (t.width - 1))))
            fx.trap_if(b.and_(is_min, minus_one), TrapCode.INT_OVERFLOW)
            return b.sdiv(a, d)
        # srem INT_MIN, -1 is UB in LLVM (and faults on x86) but wasm says 0; x % -1 == x % 1 == 0
        # for every x, so divide by 1 instead of -1.
        return b.srem(a, b.select(minus_one, ir.Constant(t, 1), d))
    return lower


# --- float arithmetic --------------------------------------------------------------------------

def _fintrinsic(base: str) -> Lower:
    """An intrinsic overloaded on one float type, all operands and the result of that type."""
    def lower(fx: Fx, args: list[ir.Value]) -> ir.Value:
        t = args[0].type
        return fx.b.call(fx.intrinsic(f"{base}.{_suffix(t)}", t, [t] * len(args)), list(args))
    return lower


def _fminmax(base: str) -> Lower:
    """llvm.minimum/maximum pass a signalling NaN through unquieted; wasm wants an arithmetic
    (quiet) NaN: the NaN operand with its quiet bit set, by integer operations (fadd of the
    operands would quiet it too, but LLVM folds `x + -0` to x when the other operand is -0)."""
    inner = _fintrinsic(base)

    def lower(fx: Fx, args: list[ir.Value]) -> ir.Value:
        a, b = args
        it = I32 if a.type == F32 else I64
        nan = fx.b.bitcast(fx.b.select(fx.b.fcmp_unordered("uno", a, a), a, b), it)
        quiet = fx.b.bitcast(fx.b.or_(nan, ir.Constant(it, 1 << (22 if it is I32 else 51))), a.type)
        return fx.b.select(fx.b.fcmp_unordered("uno", a, b), quiet, inner(fx, args))
    return lower


def _fneg(fx: Fx, args: list[ir.Value]) -> ir.Value:
    # fneg only flips the sign bit (NaN payloads kept), unlike `fsub -0.0, x`.
    return fx.b.fneg(args[0])


# --- conversions -------------------------------------------------------------------------------

def _cast(method: str, to: ir.Type) -> Lower:
    def lower(fx: Fx, args: list[ir.Value]) -> ir.Value:
        return getattr(fx.b, method)(args[0], to)
    return lower


def _sext_from(bits: int) -> Lower:
    def lower(fx: Fx, args: list[ir.Value]) -> ir.Value:
        (a,) = args
        return fx.b.sext(fx.b.trunc(a, ir.IntType(bits)), a.type)
    return lower


def trunc_range(src: ir.Type, width: int, signed: bool) -> tuple[float, bool, float]:
    """(lo, lo_inclusive, hi): x truncates toward zero into the integer range iff lo <(=) x < hi.

    All three bounds are exactly representable in `src`, so float comparisons decide exactly.
    Truncation toward zero means the valid inputs extend almost 1 beyond each end of the range:
    unsigned ones accept (-1, 2^w), signed ones (-2^(w-1) - 1, 2^(w-1)). When -2^(w-1) - 1 is not
    representable (it needs w significant bits), no float lies strictly between it and -2^(w-1),
    so the lower bound becomes -2^(w-1) inclusive.
    """
    if not signed:
        return -1.0, False, float(1 << width)
    lo = -(1 << (width - 1))
    if width <= _mantissa_bits(src):
        return float(lo - 1), False, float(-lo)
    return float(lo), True, float(-lo)


def _trunc(to: ir.Type, signed: bool) -> Lower:
    def lower(fx: Fx, args: list[ir.Value]) -> ir.Value:
        (x,) = args
        b = fx.b
        fx.trap_if(b.fcmp_unordered("uno", x, x), TrapCode.BAD_CONVERSION)
        lo, lo_inclusive, hi = trunc_range(x.type, to.width, signed)
        # Unordered comparisons: the range test stands on its own even for NaN.
        below = b.fcmp_unordered("<" if lo_inclusive else "<=", x, ir.Constant(x.type, lo))
        above = b.fcmp_unordered(">=", x, ir.Constant(x.type, hi))
        fx.trap_if(b.or_(below, above), TrapCode.INT_OVERFLOW)
        # In range, so fpto[su]i cannot be poison.
        return b.fptosi(x, to) if signed else b.fptoui(x, to)
    return lower


def _trunc_sat(to: ir.Type, signed: bool) -> Lower:
    # The .sat intrinsics clamp and map NaN to 0: exactly wasm's trunc_sat.
    def lower(fx: Fx, args: list[ir.Value]) -> ir.Value:
        (x,) = args
        name = f"llvm.fpto{'s' if signed else 'u'}i.sat.{_suffix(to)}.{_suffix(x.type)}"
        return fx.b.call(fx.intrinsic(name, to, [x.type]), [x])
    return lower


# --- the table ---------------------------------------------------------------------------------

def _build() -> dict[str, Lower]:
    t: dict[str, Lower] = {}
    for it in ("i32", "i64"):
        t[f"{it}.eqz"] = _eqz
        for name, op, signed in (("eq", "==", False), ("ne", "!=", False),
                                 ("lt_s", "<", True), ("lt_u", "<", False),
                                 ("gt_s", ">", True), ("gt_u", ">", False),
                                 ("le_s", "<=", True), ("le_u", "<=", False),
                                 ("ge_s", ">=", True), ("ge_u", ">=", False)):
            t[f"{it}.{name}"] = _icmp(op, signed)
        t[f"{it}.clz"] = _bitcount("llvm.ctlz", False)
        t[f"{it}.ctz"] = _bitcount("llvm.cttz", False)
        t[f"{it}.popcnt"] = _bitcount("llvm.ctpop", None)
        for name, method in (("add", "add"), ("sub", "sub"), ("mul", "mul"),
                             ("and", "and_"), ("or", "or_"), ("xor", "xor")):
            t[f"{it}.{name}"] = _binop(method)
        t[f"{it}.div_s"] = _divrem(signed=True, rem=False)
        t[f"{it}.div_u"] = _divrem(signed=False, rem=False)
        t[f"{it}.rem_s"] = _divrem(signed=True, rem=True)
        t[f"{it}.rem_u"] = _divrem(signed=False, rem=True)
        t[f"{it}.shl"] = _shift("shl")
        t[f"{it}.shr_s"] = _shift("ashr")
        t[f"{it}.shr_u"] = _shift("lshr")
        t[f"{it}.rotl"] = _rotate("llvm.fshl")
        t[f"{it}.rotr"] = _rotate("llvm.fshr")
        t[f"{it}.extend8_s"] = _sext_from(8)
        t[f"{it}.extend16_s"] = _sext_from(16)
    t["i64.extend32_s"] = _sext_from(32)

    for ft in ("f32", "f64"):
        for name, op in (("eq", "=="), ("ne", "!="), ("lt", "<"),
                         ("gt", ">"), ("le", "<="), ("ge", ">=")):
            t[f"{ft}.{name}"] = _fcmp(op)
        t[f"{ft}.abs"] = _fintrinsic("llvm.fabs")
        t[f"{ft}.neg"] = _fneg
        t[f"{ft}.ceil"] = _fintrinsic("llvm.ceil")
        t[f"{ft}.floor"] = _fintrinsic("llvm.floor")
        t[f"{ft}.trunc"] = _fintrinsic("llvm.trunc")
        t[f"{ft}.nearest"] = _fintrinsic("llvm.roundeven")  # ties to even, like wasm
        t[f"{ft}.sqrt"] = _fintrinsic("llvm.sqrt")
        for name, method in (("add", "fadd"), ("sub", "fsub"), ("mul", "fmul"), ("div", "fdiv")):
            t[f"{ft}.{name}"] = _binop(method)
        # minimum/maximum (not minnum/maxnum): NaN-propagating and -0 < +0, as wasm wants.
        t[f"{ft}.min"] = _fminmax("llvm.minimum")
        t[f"{ft}.max"] = _fminmax("llvm.maximum")
        t[f"{ft}.copysign"] = _fintrinsic("llvm.copysign")

    t["i32.wrap_i64"] = _cast("trunc", I32)
    t["i64.extend_i32_s"] = _cast("sext", I64)
    t["i64.extend_i32_u"] = _cast("zext", I64)
    for it in ("i32", "i64"):
        for ft in ("f32", "f64"):
            for su, signed in (("s", True), ("u", False)):
                t[f"{it}.trunc_{ft}_{su}"] = _trunc(_TYPES[it], signed)
                t[f"{it}.trunc_sat_{ft}_{su}"] = _trunc_sat(_TYPES[it], signed)
                # uitofp/sitofp round to nearest-even like wasm (LLVM does the u64 case right).
                t[f"{ft}.convert_{it}_{su}"] = _cast("sitofp" if signed else "uitofp", _TYPES[ft])
    t["f32.demote_f64"] = _cast("fptrunc", F32)
    t["f64.promote_f32"] = _cast("fpext", F64)
    t["i32.reinterpret_f32"] = _cast("bitcast", I32)
    t["i64.reinterpret_f64"] = _cast("bitcast", I64)
    t["f32.reinterpret_i32"] = _cast("bitcast", F32)
    t["f64.reinterpret_i64"] = _cast("bitcast", F64)
    return t


NUMERIC: dict[str, Lower] = _build()
