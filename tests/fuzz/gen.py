"""Seeded random generator of valid wasm modules (WAT text) exercising scalar code.

gen_module(seed) -> (wat_text, meta) ; meta: exports [(name, param types, result types)], globals, pages.

Exported entry points are wrappers "eK" around internal function $fK: float params arrive as
i32/i64 bit patterns (so sNaN payloads cross exactly), float results leave as *normalised* bits
(NaN -> 0x7fc00000 / 0x7f800001 class only: quiet bit kept, sign and payload dropped), since wasm
lets arithmetic NaN payload/sign vary. Every place where NaN bits become observable inside the
module (reinterpret, float store, copysign's sign source) goes through the same normalisation.
Calls are bounded by a global $fuel (the harness sets it before each call), loops by counters.

SIMD (on in a fraction SIMD_P of the modules, env WASM_AOT_FUZZ_SIMD, default 0.7): v128 values are
generated under one of three generator types that say which of their bits are exact: "vx" (every bit
exact), "vf32" / "vf64" (exact except NaN f32 / f64 lanes, whose sign and payload wasm lets vary:
results of float lane arithmetic). Only operations that keep such NaNs whole NaNs of the same lane
width apply to vf32/vf64 values (float lane arithmetic, abs/neg/pmin/pmax, whole-lane shuffles and
selects); a vf32/vf64 value becomes vx only through a lane normalisation ($vn32/$vn64 or inline:
NaN lanes -> 0x7fc00000 / 0x7f800001 class, as $cn32), a comparison, trunc_sat, or an extracted float
lane (a scalar float, which the scalar rules handle). Signatures only use vx (call_indirect matches
wasm types); exported wrappers pass a v128 as two i64 (lane 0, lane 1). v128 globals are not exported.
"""
from __future__ import annotations

import os
import random
import struct

T = ("i32", "i64", "f32", "f64")
V = ("vx", "vf32", "vf64")  # v128 generator types (see the docstring)
SIMD_P = float(os.environ.get("WASM_AOT_FUZZ_SIMD", "0.7"))


def wt(t):
    """wasm type of a generator type"""
    return "v128" if t in V else t
M32 = 0xFFFFFFFF
M64 = 0xFFFFFFFFFFFFFFFF


def f32_from_bits(b):
    return struct.unpack("<f", struct.pack("<I", b))[0]


def f64_from_bits(b):
    return struct.unpack("<d", struct.pack("<Q", b))[0]


def fconst_text(t, bits):
    if t == "f32":
        sign, exp, man = bits >> 31, (bits >> 23) & 0xFF, bits & 0x7FFFFF
        if exp == 0xFF:
            s = "-" if sign else ""
            return f"{s}inf" if man == 0 else f"{s}nan:0x{man:x}"
        return f32_from_bits(bits).hex()
    sign, exp, man = bits >> 63, (bits >> 52) & 0x7FF, bits & ((1 << 52) - 1)
    if exp == 0x7FF:
        s = "-" if sign else ""
        return f"{s}inf" if man == 0 else f"{s}nan:0x{man:x}"
    return f64_from_bits(bits).hex()


def f32b(x):
    return struct.unpack("<I", struct.pack("<f", x))[0]


def f64b(x):
    return struct.unpack("<Q", struct.pack("<d", x))[0]


I32_EDGE = [0, 1, 2, 3, 7, 8, 15, 16, 31, 32, 33, 63, 64, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF, 0x10000,
            0x7FFFFFFF, 0x80000000, 0x80000001, 0xFFFFFFFF, 0xFFFFFFFE, 0xFFFF0000, 0xFFFFFF80, 0x55555555]
I64_EDGE = [0, 1, 2, 31, 32, 63, 64, 65, 0xFF, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0x100000000,
            0x7FFFFFFFFFFFFFFF, 0x8000000000000000, 0x8000000000000001, M64, M64 - 1,
            0xFFFFFFFF80000000, 0xFFFFFFFF00000000]
F32_EDGE = [f32b(x) for x in (0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 1.5, 2.5, -2.5, 3.0, 0.1, 100.0, 2147483520.0,
                              2147483648.0, -2147483648.0, -2147483904.0, 4294967040.0, 4294967296.0,
                              9.223371487098962e18, 9.223372036854775808e18, -9.223372036854775808e18,
                              1.8446742974197924e19, 1.8446744073709552e19, -0.75, 16777216.0, 16777217.0,
                              1e-45, -1e-45, 1.1754942106924411e-38, 3.4028234663852886e38,
                              float("inf"), float("-inf"))]
F32_EDGE += [0x7FC00000, 0xFFC00000, 0x7F800001, 0xFF800001, 0x7FA00000, 0x7FC00001, 0x7FFFFFFF, 0x00000001,
             0x80000001, 0x007FFFFF]
F64_EDGE = [f64b(x) for x in (0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 1.5, 2.5, -2.5, 0.1, 2147483647.0, 2147483647.5,
                              2147483648.0, -2147483648.0, -2147483648.5, -2147483649.0, 4294967295.0,
                              4294967295.5, 4294967296.0, -0.9999999999999999, -1.0,
                              9.223372036854774784e18, 9.223372036854775808e18, -9.223372036854775808e18,
                              -9.223372036854777856e18, 1.8446744073709550e19, 1.8446744073709552e19,
                              4503599627370496.5, 4503599627370497.0, 9007199254740993.0,
                              5e-324, -5e-324, 2.2250738585072014e-308, 1.7976931348623157e308,
                              3.4028235677973366e38, 3.4028234663852886e38, 1e300,
                              float("inf"), float("-inf"))]
F64_EDGE += [0x7FF8000000000000, 0xFFF8000000000000, 0x7FF0000000000001, 0xFFF0000000000001,
             0x7FF4000000000000, 0x7FF8000000000001, 0x7FFFFFFFFFFFFFFF, 0x000FFFFFFFFFFFFF,
             0x7FF0000020000000]

INT_BIN = ["add", "sub", "mul", "div_s", "div_u", "rem_s", "rem_u", "and", "or", "xor", "shl", "shr_s",
           "shr_u", "rotl", "rotr"]
INT_CMP = ["eq", "ne", "lt_s", "lt_u", "gt_s", "gt_u", "le_s", "le_u", "ge_s", "ge_u"]
F_BIN = ["add", "sub", "mul", "div", "min", "max", "copysign"]
F_UN = ["abs", "neg", "ceil", "floor", "trunc", "nearest", "sqrt"]
F_CMP = ["eq", "ne", "lt", "gt", "le", "ge"]
WIDTH = {"i32": 4, "i64": 8, "f32": 4, "f64": 8}
LOADS = {"i32": [("i32.load", 4), ("i32.load8_s", 1), ("i32.load8_u", 1), ("i32.load16_s", 2),
                 ("i32.load16_u", 2)],
         "i64": [("i64.load", 8), ("i64.load8_s", 1), ("i64.load8_u", 1), ("i64.load16_s", 2),
                 ("i64.load16_u", 2), ("i64.load32_s", 4), ("i64.load32_u", 4)],
         "f32": [("f32.load", 4)], "f64": [("f64.load", 8)]}
STORES = {"i32": [("i32.store", 4), ("i32.store8", 1), ("i32.store16", 2)],
          "i64": [("i64.store", 8), ("i64.store8", 1), ("i64.store16", 2), ("i64.store32", 4)],
          "f32": [("f32.store", 4)], "f64": [("f64.store", 8)]}


# ---- SIMD ----
ISHAPES = ("i8x16", "i16x8", "i32x4", "i64x2")
LANES = {"i8x16": 16, "i16x8": 8, "i32x4": 4, "i64x2": 2, "f32x4": 4, "f64x2": 2}
LBITS = {"i8x16": 8, "i16x8": 16, "i32x4": 32, "i64x2": 64, "f32x4": 32, "f64x2": 64}
_CMP_SU = [f"{c}_{s}" for c in ("lt", "gt", "le", "ge") for s in "su"]
IBIN = {
    "i8x16": ["add", "sub", "add_sat_s", "add_sat_u", "sub_sat_s", "sub_sat_u", "min_s", "min_u", "max_s",
              "max_u", "avgr_u", "eq", "ne", "narrow_i16x8_s", "narrow_i16x8_u", "swizzle"] + _CMP_SU,
    "i16x8": ["add", "sub", "mul", "add_sat_s", "add_sat_u", "sub_sat_s", "sub_sat_u", "min_s", "min_u",
              "max_s", "max_u", "avgr_u", "q15mulr_sat_s", "eq", "ne", "narrow_i32x4_s", "narrow_i32x4_u"]
             + [f"extmul_{h}_i8x16_{s}" for h in ("low", "high") for s in "su"] + _CMP_SU,
    "i32x4": ["add", "sub", "mul", "min_s", "min_u", "max_s", "max_u", "dot_i16x8_s", "eq", "ne"]
             + [f"extmul_{h}_i16x8_{s}" for h in ("low", "high") for s in "su"] + _CMP_SU,
    "i64x2": ["add", "sub", "mul", "eq", "ne", "lt_s", "gt_s", "le_s", "ge_s"]
             + [f"extmul_{h}_i32x4_{s}" for h in ("low", "high") for s in "su"],
}
IUN = {
    "i8x16": ["abs", "neg", "popcnt"],
    "i16x8": ["abs", "neg", "extadd_pairwise_i8x16_s", "extadd_pairwise_i8x16_u"]
             + [f"extend_{h}_i8x16_{s}" for h in ("low", "high") for s in "su"],
    "i32x4": ["abs", "neg", "extadd_pairwise_i16x8_s", "extadd_pairwise_i16x8_u"]
             + [f"extend_{h}_i16x8_{s}" for h in ("low", "high") for s in "su"],
    "i64x2": ["abs", "neg"] + [f"extend_{h}_i32x4_{s}" for h in ("low", "high") for s in "su"],
}
FV_BIN = ["add", "sub", "mul", "div", "min", "max"]
FV_UN = ["sqrt", "ceil", "floor", "trunc", "nearest", "abs", "neg"]
V_LOADS = [("v128.load", 16), ("v128.load", 16), ("v128.load8x8_s", 8), ("v128.load8x8_u", 8),
           ("v128.load16x4_s", 8), ("v128.load16x4_u", 8), ("v128.load32x2_s", 8), ("v128.load32x2_u", 8),
           ("v128.load8_splat", 1), ("v128.load16_splat", 2), ("v128.load32_splat", 4), ("v128.load64_splat", 8),
           ("v128.load32_zero", 4), ("v128.load64_zero", 8)]


class Func:
    def __init__(self, idx, params, results):
        self.idx, self.params, self.results = idx, params, results
        self.locals = list(params)
        self.reserved = set()  # loop counters
        self.labels = []  # (name, branch types, kind)
        self.nlabel = 0


class Gen:
    def __init__(self, seed, size=1.0):
        self.r = random.Random(seed)
        self.seed = seed
        self.size = size

    # ---------- helpers ----------
    def ch(self, xs):
        return self.r.choice(xs)

    def p(self, x):
        return self.r.random() < x

    def results_types(self):
        return self.rtypes(0, 3)

    def rtypes(self, lo, hi):
        return [self.gtype() for _ in range(self.r.randint(lo, hi))]

    def gtype(self):
        """a generator type: scalar, or (SIMD modules) sometimes a v128 one"""
        if self.simd and self.p(0.25):
            return self.ch(V)
        return self.ch(T)

    def sig_types(self, lo, hi):
        """types for a function signature: v128 only as vx (call_indirect matches wasm types)"""
        return [("vx" if self.simd and self.p(0.2) else self.ch(T)) for _ in range(self.r.randint(lo, hi))]

    def new_local(self, t):
        self.fn.locals.append(t)
        return len(self.fn.locals) - 1

    def local_of(self, t, writable=False):
        c = [i for i, lt in enumerate(self.fn.locals) if lt == t and i not in self.fn.reserved]
        if not c or self.p(0.05):
            return self.new_local(t)
        return self.ch(c)

    def const(self, t):
        r = self.r
        if t in V:
            return self.vconst(t)
        if t == "i32":
            v = self.ch(I32_EDGE) if self.p(0.6) else r.getrandbits(self.ch([4, 8, 16, 32]))
            if self.p(0.2):
                v = (-v) & M32
            return f"(i32.const {v & M32})"
        if t == "i64":
            v = self.ch(I64_EDGE) if self.p(0.6) else r.getrandbits(self.ch([4, 8, 16, 32, 64]))
            if self.p(0.2):
                v = (-v) & M64
            return f"(i64.const {v & M64})"
        if t == "f32":
            if self.p(0.7):
                b = self.ch(F32_EDGE)
            elif self.p(0.5):
                b = f32b(r.uniform(-1000, 1000)) if self.p(0.5) else f32b(float(r.randint(-10, 10)))
            else:
                b = r.getrandbits(32)
            if self.p(0.1):
                b ^= 0x80000000
            return f"(f32.const {fconst_text('f32', b)})"
        if self.p(0.7):
            b = self.ch(F64_EDGE)
        elif self.p(0.5):
            b = f64b(r.uniform(-1000, 1000)) if self.p(0.5) else f64b(float(r.randint(-10, 10)))
        else:
            b = r.getrandbits(64)
        if self.p(0.1):
            b ^= 1 << 63
        return f"(f64.const {fconst_text('f64', b)})"

    def norm_bits(self, t, e):
        """integer bits of float expression e with NaN normalised"""
        if t == "f32":
            return f"(call $cn32 (i32.reinterpret_f32 {e}))"
        return f"(call $cn64 (i64.reinterpret_f64 {e}))"

    def norm_float(self, t, e):
        if t == "f32":
            return f"(f32.reinterpret_i32 {self.norm_bits(t, e)})"
        return f"(f64.reinterpret_i64 {self.norm_bits(t, e)})"

    # ---------- addresses ----------
    def addr(self, width):
        r = self.r
        k = self.ch([0, 1, 2, 3, 4, 7, 8, 9, 16, width, width - 1, width + 1])
        c = r.random()
        if self.safe and c > 0.62 and self.p(0.8):
            c = r.random() * 0.62
        if c < 0.45:
            mask = self.ch([0xFF, 0xFF, 0x3FF, 0xFFF, 0xFFFF, 0xFFF8, 0xFC])
            return f"(i32.and {self.e('i32', 1)} (i32.const {mask}))", self.small_off()
        if c < 0.62:
            return f"(i32.const {r.randint(0, 300)})", self.small_off()
        if c < 0.75:
            return f"(i32.sub (i32.shl (memory.size) (i32.const 16)) (i32.const {k}))", self.ch([0, 0, 0, 1, 4])
        if c < 0.82:
            return f"(i32.const {(self.pages * 65536 - k) & M32})", self.ch([0, 0, 1, 2, 8])
        if c < 0.87:
            return f"(i32.const {(M32 - k) & M32})", self.ch([0, 0, 1, 4, 0xFFFFFFFF])
        if c < 0.92:
            return self.e("i32", 2), self.small_off()
        if c < 0.96:
            return f"(i32.const {r.randint(0, 64)})", self.ch([65536 - 4, 65536 * self.pages - width,
                                                              65536 * self.pages - k, 0xFFFFFFF0, 0x7FFFFFFF])
        return f"(local.get {self.local_of('i32')})", self.small_off()

    def small_off(self):
        return self.ch([0, 0, 0, 0, 1, 2, 3, 4, 8, 12, 16, 32, 100, 255])

    def memarg(self, width, off):
        al = self.ch([w for w in (1, 2, 4, 8, 16) if w <= width])
        s = f" offset={off}" if off else ""
        if self.p(0.5):
            s += f" align={al}"
        return s

    # ---------- expressions ----------
    def leaf(self, t):
        c = self.r.random()
        if c < 0.4:
            return self.const(t)
        if c < 0.85:
            return f"(local.get {self.local_of(t)})"
        if not self.globals_of[t]:
            return self.const(t)
        return f"(global.get {self.ch(self.globals_of[t])})"

    def e(self, t, d):
        if d <= 0 or self.p(0.12):
            return self.leaf(t)
        r = self.r.random()
        if r < 0.45:
            return self.arith(t, d)
        if r < 0.53:
            return self.load(t, d)
        if r < 0.58:
            return f"(select {self.e(t, d - 1)} {self.e(t, d - 1)} {self.e('i32', d - 1)})"
        if r < 0.62:
            return f"(local.tee {self.local_of(t)} {self.e(t, d - 1)})"
        if r < 0.68:
            return self.block_expr([t], d)
        if r < 0.72:
            return self.if_expr([t], d)
        if r < 0.77:
            return self.call_expr([t], d)
        if r < 0.80:
            return self.br_if_expr(t, d)
        if r < 0.82 and t == "i32":
            return self.ch(["(memory.size)", f"(memory.grow {self.grow_delta(d)})"])
        if r < 0.85:
            return self.loop_expr([t], d)
        return self.arith(t, d)

    def grow_delta(self, d):
        c = self.r.random()
        if c < 0.6:
            return f"(i32.const {self.ch([0, 0, 1, 1, 2])})"
        if c < 0.8:
            return f"(i32.and {self.e('i32', d - 1)} (i32.const 1))"
        # large deltas only where a maximum makes them fail (no max: memory would really grow to GiBs)
        big = [0x8000, 100] if self.maxp is not None and self.maxp <= 16 else [3]
        return f"(i32.const {self.ch([0xFFFFFFFF, 0x10000] + big)})"

    def arith(self, t, d):
        if t in V:
            return self.varith(t, d)
        if self.simd and self.p(0.1):
            return self.from_simd(t, d)
        d1 = d - 1
        e = self.e
        c = self.r.random()
        if t in ("i32", "i64"):
            if c < 0.45:
                op = self.ch(INT_BIN)
                if self.safe and op.startswith(("div", "rem")) and self.p(0.85):
                    return f"({t}.{op} {e(t, d1)} ({t}.or {e(t, d1)} ({t}.const 1)))"
                return f"({t}.{op} {e(t, d1)} {e(t, d1)})"
            if c < 0.55:
                op = self.ch(["clz", "ctz", "popcnt", "extend8_s", "extend16_s"] + (["extend32_s"] if t == "i64" else []))
                return f"({t}.{op} {e(t, d1)})"
            if c < 0.62:
                ft = self.ch(["f32", "f64"])
                if self.safe and self.p(0.8):
                    return f"({t}.trunc_sat_{ft}_{self.ch('su')} {e(ft, d1)})"
                return f"({t}.trunc_{ft}_{self.ch('su')} {e(ft, d1)})"
            if c < 0.70:
                ft = self.ch(["f32", "f64"])
                return f"({t}.trunc_sat_{ft}_{self.ch('su')} {e(ft, d1)})"
            if c < 0.76:
                ft = "f32" if t == "i32" else "f64"
                return self.norm_bits(ft, e(ft, d1))
            if t == "i32":
                if c < 0.88:
                    it = self.ch(["i32", "i64"])
                    return f"({it}.{self.ch(INT_CMP)} {e(it, d1)} {e(it, d1)})"
                if c < 0.93:
                    ft = self.ch(["f32", "f64"])
                    return f"({ft}.{self.ch(F_CMP)} {e(ft, d1)} {e(ft, d1)})"
                if c < 0.96:
                    return self._eqz(d1)
                return f"(i32.wrap_i64 {e('i64', d1)})"
            if c < 0.9:
                return f"(i64.extend_i32_{self.ch('su')} {e('i32', d1)})"
            return f"({t}.{self.ch(INT_BIN)} {e(t, d1)} {self.const(t)})"
        # floats
        if c < 0.40:
            op = self.ch(F_BIN)
            a, b = e(t, d1), e(t, d1) if self.p(0.7) else self.const(t)
            if self.p(0.2):
                a, b = b, a
            if op == "copysign":
                b = self.norm_float(t, b)
            return f"({t}.{op} {a} {b})"
        if c < 0.58:
            return f"({t}.{self.ch(F_UN)} {e(t, d1)})"
        if c < 0.72:
            it = self.ch(["i32", "i64"])
            return f"({t}.convert_{it}_{self.ch('su')} {e(it, d1)})"
        if c < 0.80:
            if t == "f32":
                return f"(f32.demote_f64 {e('f64', d1)})"
            return f"(f64.promote_f32 {e('f32', d1)})"
        if c < 0.86:
            it = "i32" if t == "f32" else "i64"
            return f"({t}.reinterpret_{it} {e(it, d1)})"
        if c < 0.93:
            return self.identity_via_local(t, t, t, lambda one: f"({t}.const {one})", lambda: e(t, d1), d1)
        return f"({t}.{self.ch(['add', 'sub', 'mul', 'div'])} {e(t, d1)} {self.const(t)})"

    def _eqz(self, d1):
        it = self.ch(["i32", "i64"])
        return f"({it}.eqz {self.e(it, d1)})"

    def identity_via_local(self, t, result, op_prefix, const, operand, d):
        """operand OP c (of wasm type `result`), c an identity-ish constant (±1, ±0) held in a local
        of type t, not a direct const operand: LLVM sees the identity only by propagation. const(one)
        is c's text; operand() is called after the split, so the random choices keep their order."""
        loc = self.new_local(t)
        one = self.ch(["1.0", "-1.0", "0.0", "-0.0", "1.0"])
        op = self.ch(["mul", "mul", "div", "add", "sub"])
        return (f"(block (result {result}) (local.set {loc} {const(one)}) "
                f"{self.maybe_split(d)}({op_prefix}.{op} {operand()} (local.get {loc})))")

    def maybe_split(self, d):
        """something that may end a basic block"""
        if self.p(0.5):
            return f"(if (i32.eqz {self.e('i32', 0)}) (then (nop))) "
        return ""

    def load(self, t, d):
        if t in V:
            return self.vload(d)
        op, w = self.ch(LOADS[t])
        a, off = self.addr(w)
        return f"({op}{self.memarg(w, off)} {a})"

    # ---------- control expressions ----------
    def push_label(self, types, kind):
        self.fn.nlabel += 1
        name = f"$L{self.fn.nlabel}"
        self.fn.labels.append((name, tuple(types), kind))
        return name

    def vals(self, types, d):
        if len(types) == 1:
            return self.e(types[0], d)
        if len(types) > 1 and self.p(0.3):
            c = self.r.random()
            if c < 0.4:
                return self.block_expr(types, d)
            if c < 0.7:
                return self.if_expr(types, d)
            return self.call_expr(types, d)
        return " ".join(self.e(t, d) for t in types)

    def res(self, types):
        return f" (result {' '.join(map(wt, types))})" if types else ""

    def stmts(self, d, n=None):
        if n is None:
            n = self.r.randint(0, max(1, int(3 * self.size)))
        return " ".join(self.stmt(d) for _ in range(n))

    def block_expr(self, types, d):
        name = self.push_label(types, "block")
        body = self.stmts(d - 1)
        tail = self.vals(types, d - 1) if types else ""
        if types and self.p(0.2):
            tail = f"(br {name} {self.vals(types, d - 1)})"
        self.fn.labels.pop()
        return f"(block {name}{self.res(types)} {body} {tail})"

    def if_expr(self, types, d):
        cond = self.e("i32", d - 1)
        name = self.push_label(types, "if")
        a = self.stmts(d - 1) + " " + (self.vals(types, d - 1) if types else "")
        b = self.stmts(d - 1) + " " + (self.vals(types, d - 1) if types else "")
        self.fn.labels.pop()
        if not types and self.p(0.4):
            return f"(if {name} {cond} (then {a}))"
        return f"(if {name}{self.res(types)} {cond} (then {a}) (else {b}))"

    def loop_expr(self, types, d):
        cnt = self.new_local("i32")
        self.fn.reserved.add(cnt)
        k = self.ch([1, 2, 3, 4, 5, 8])
        name = self.push_label((), "loop")
        self.loopcnt[name] = (cnt, k)
        body = self.stmts(d - 1)
        guard = f"(i32.lt_u (local.tee {cnt} (i32.add (local.get {cnt}) (i32.const 1))) (i32.const {k}))"
        back = f"(br_if {name} {guard})"
        tail = self.vals(types, d - 1) if types else ""
        self.fn.labels.pop()
        return f"(local.set {cnt} (i32.const 0)) (loop {name}{self.res(types)} {body} {back} {tail})"

    def br_if_expr(self, t, d):
        c = [(n, ty) for n, ty, k in self.fn.labels if ty == (t,) and k != "loop"]
        if not c:
            return self.arith(t, d)
        n, _ = self.ch(c)
        return f"(br_if {n} {self.e(t, d - 1)} {self.e('i32', d - 1)})"

    def fuel_call(self, callee_results, call_text, d):
        defaults = " ".join(self.e(t, 0) for t in callee_results)
        return (f"(if{self.res(callee_results)} (i32.gt_s (global.get $fuel) (i32.const 0)) "
                f"(then (global.set $fuel (i32.sub (global.get $fuel) (i32.const 1))) {call_text}) "
                f"(else {defaults}))")

    def call_expr(self, types, d):
        """an expression of (exactly) `types` from a call, direct or indirect (a vx result serves
        where a vf32/vf64 is wanted)"""
        types = ["vx" if t in V else t for t in types]
        cands = [f for f in self.funcs if f.results == types]
        if self.p(0.3) and self.table_size:
            # call_indirect with a type whose results are `types` (maybe not matching what the table holds)
            sigs = [s for s in self.sigs if list(s[1]) == types]
            if not sigs:
                ps = self.sig_types(0, 3)
                self.sigs.append((tuple(ps), tuple(types)))
                sigs = [self.sigs[-1]]
            ps, rs = self.ch(sigs)
            ti = self.sigs.index((ps, rs))
            args = " ".join(self.e(t, d - 1) for t in ps)
            idx = self.ch([f"(i32.const {self.r.randint(0, self.table_size + 1)})",
                           f"(i32.rem_u {self.e('i32', d - 1)} (i32.const {self.table_size + 1}))",
                           self.e("i32", d - 1)])
            return self.fuel_call(types, f"(call_indirect $tab (type $s{ti}) {args} {idx})", d)
        if not cands:
            return self.vals_plain(types, d)
        f = self.ch(cands)
        args = self.vals(f.params, d - 1) if f.params else ""
        return self.fuel_call(types, f"(call $f{f.idx} {args})", d)

    def vals_plain(self, types, d):
        return " ".join(self.e(t, d - 1) for t in types)

    # ---------- statements ----------
    def stmt(self, d):
        if d <= 0:
            return self.simple_stmt(0)
        c = self.r.random()
        if c < 0.35:
            return self.simple_stmt(d)
        if c < 0.45:
            return self.store(d)
        if c < 0.52:
            return f"{self.if_expr([], d)}"
        if c < 0.58:
            return self.block_expr([], d)
        if c < 0.65:
            return self.loop_expr([], d)
        if c < 0.71:
            return self.br_stmt(d)
        if c < 0.75:
            return self.br_table_stmt(d)
        if c < 0.80:
            types = self.rtypes(0, 2)
            return self.call_expr(types, d) + " drop" * len(types)
        if c < 0.84:
            return self.bulk(d)
        if c < 0.86 and not (self.safe and self.p(0.8)):
            return f"(if {self.e('i32', d - 1)} (then unreachable))"
        if c < 0.89:
            return f"(if {self.e('i32', d - 1)} (then (return {self.vals(self.fn.results, d - 1)})))"
        if c < 0.93:
            types = self.rtypes(2, 3)
            # multi-value into locals
            locs = [self.local_of(t) for t in types]
            return self.vals(types, d - 1) + " " + " ".join(f"(local.set {l})" for l in reversed(locs))
        return self.store(d)

    def simple_stmt(self, d):
        c = self.r.random()
        t = self.gtype()
        if c < 0.55:
            return f"(local.set {self.local_of(t)} {self.e(t, d)})"
        if c < 0.8 and self.globals_of[t]:
            return f"(global.set {self.ch(self.globals_of[t])} {self.e(t, d)})"
        if c < 0.9:
            return f"(drop {self.e(t, d)})"
        return self.store(d)

    def store(self, d):
        if self.simd and self.p(0.3):
            return self.vstore(d)
        t = self.ch(T)
        op, w = self.ch(STORES[t])
        a, off = self.addr(w)
        v = self.e(t, max(0, d - 1))
        if t in ("f32", "f64"):
            v = self.norm_float(t, v)
        return f"({op}{self.memarg(w, off)} {a} {v})"

    def bulk(self, d):
        k = self.ch([0, 1, 3, 8, 16, 100])
        def a():
            c = self.r.random()
            if c < 0.6:
                return f"(i32.const {self.r.randint(0, 200)})"
            if c < 0.8:
                return f"(i32.sub (i32.shl (memory.size) (i32.const 16)) (i32.const {k}))"
            return f"(i32.and {self.e('i32', 1)} (i32.const 0x1ff))"
        n = self.ch([f"(i32.const {k})", f"(i32.const {k + 1})", "(i32.const 0)",
                     f"(i32.and {self.e('i32', 1)} (i32.const 63))"])
        if self.p(0.5):
            return f"(memory.fill {a()} {self.e('i32', 1)} {n})"
        return f"(memory.copy {a()} {a()} {n})"

    def br_stmt(self, d):
        labels = self.fn.labels
        if not labels:
            return self.simple_stmt(d)
        i = self.r.randrange(len(labels))
        n, ty, kind = labels[i]
        if kind == "loop":
            cnt, k = self.loopcnt[n]
            guard = f"(i32.lt_u (local.tee {cnt} (i32.add (local.get {cnt}) (i32.const 1))) (i32.const {k}))"
            return f"(br_if {n} (i32.and {self.e('i32', d - 1)} {guard}))"
        v = self.vals(list(ty), d - 1) if ty else ""
        cond = self.e("i32", d - 1)
        return f"(br_if {n} {v} {cond})" + " drop" * len(ty)

    def br_table_stmt(self, d):
        labels = [l for l in self.fn.labels if l[2] != "loop"]
        if not labels:
            return self.simple_stmt(d)
        _, ty, _ = self.ch(labels)
        same = [l[0] for l in labels if l[1] == ty]
        targets = [self.ch(same) for _ in range(self.r.randint(0, 4))]
        dflt = self.ch(same)
        v = self.vals(list(ty), d - 1) if ty else ""
        idx = self.e("i32", d - 1) if self.p(0.6) else f"(i32.const {self.r.randint(0, 5)})"
        # br_table is unconditional: wrap in an if so code after it stays reachable
        return f"(if {self.e('i32', d - 1)} (then (br_table {' '.join(targets)} {dflt} {v} {idx})))"

    # ---------- SIMD ----------
    def lane_bits(self, shape):
        """one lane's bits: edge values of the lane type, small or random"""
        r = self.r
        w = LBITS[shape]
        if shape == "f32x4" or (shape == "i32x4" and self.p(0.3)):
            if self.p(0.25):
                return self.ch([0, 0x80000000, 0x3F800000, 0xBF800000])  # ±0, ±1: foldable identities
            b = self.ch(F32_EDGE) if self.p(0.7) else r.getrandbits(32)
            return b ^ (0x80000000 if self.p(0.1) else 0)
        if shape == "f64x2" or (shape == "i64x2" and self.p(0.3)):
            if self.p(0.25):
                return self.ch([0, 1 << 63, 0x3FF0000000000000, 0xBFF0000000000000])
            b = self.ch(F64_EDGE) if self.p(0.7) else r.getrandbits(64)
            return b ^ ((1 << 63) if self.p(0.1) else 0)
        if self.p(0.6):
            v = self.ch(I64_EDGE if w == 64 else I32_EDGE)
        else:
            v = r.getrandbits(self.ch([w, w, 4, w // 2]))
        if self.p(0.2):
            v = -v
        return v & ((1 << w) - 1)

    def vconst(self, t):
        if t == "vf32" or (t == "vx" and self.p(0.2)):
            shape = "f32x4"
        elif t == "vf64" or (t == "vx" and self.p(0.2)):
            shape = "f64x2"
        else:
            shape = self.ch(ISHAPES)
        n = LANES[shape]
        if self.p(0.4):
            lanes = [self.lane_bits(shape)] * n
        else:
            lanes = [self.lane_bits(shape) for _ in range(n)]
        if shape[0] == "f":
            txt = " ".join(fconst_text("f32" if shape == "f32x4" else "f64", b) for b in lanes)
        else:
            txt = " ".join(f"0x{b:x}" if LBITS[shape] > 8 else str(b) for b in lanes)
        return f"(v128.const {shape} {txt})"

    def vopnd(self, t, d):
        """an operand: often a constant (LLVM folds with it)"""
        return self.vconst(t) if self.p(0.15) else self.e(t, d)

    def varith(self, t, d):
        if t == "vx":
            return self.vx_op(d)
        return self.vf_op("f32" if t == "vf32" else "f64", t, d)

    def vshuffle(self, a, b, lane_bytes=1):
        """i8x16.shuffle; lane_bytes > 1 moves whole lanes of that width"""
        n = 16 // lane_bytes
        c = self.r.random()
        if c < 0.15:
            idx = list(range(n))  # identity of a
        elif c < 0.25:
            idx = [self.r.randrange(2 * n)] * n  # broadcast
        elif c < 0.35:
            idx = [i // 2 + (n if i % 2 else 0) for i in range(n)]  # interleave low halves
        elif c < 0.45:
            idx = [n - 1 - i for i in range(n)]  # reverse
        else:
            idx = [self.r.randrange(2 * n) for _ in range(n)]
        bytes_ = [k * lane_bytes + j for k in idx for j in range(lane_bytes)]
        return f"(i8x16.shuffle {' '.join(map(str, bytes_))} {a} {b})"

    def lane_mask(self, bits, d):
        """a vx whose lanes of `bits` bits are each all ones or all zeros"""
        d1 = d - 1
        if bits == 32:
            if self.p(0.5):
                return f"(f32x4.{self.ch(F_CMP)} {self.e('vf32', d1)} {self.vopnd('vf32', d1)})"
            return f"(i32x4.{self.ch(['eq', 'ne'] + _CMP_SU)} {self.e('vx', d1)} {self.vopnd('vx', d1)})"
        if self.p(0.5):
            return f"(f64x2.{self.ch(F_CMP)} {self.e('vf64', d1)} {self.vopnd('vf64', d1)})"
        return f"(i64x2.{self.ch(['eq', 'ne', 'lt_s', 'gt_s', 'le_s', 'ge_s'])} {self.e('vx', d1)} {self.vopnd('vx', d1)})"

    def vnorm(self, fl, x):
        """vx from a vf32/vf64 expression x: NaN lanes normalised (quiet bit kept)"""
        b = 32 if fl == "f32" else 64
        if self.p(0.6):
            return f"(call $vn{b} {x})"
        loc = self.new_local("vf32" if fl == "f32" else "vf64")
        sh, ish = ("f32x4", "i32x4") if fl == "f32" else ("f64x2", "i64x2")
        n = 4 if fl == "f32" else 2
        q, qn, sn = (0x400000, 0x7FC00000, 0x7F800001) if fl == "f32" else \
            (0x8000000000000, 0x7FF8000000000000, 0x7FF0000000000001)
        L = f"(local.get {loc})"
        splat = lambda v: f"(v128.const {ish} {' '.join([hex(v)] * n)})"
        canon = (f"(v128.bitselect {splat(qn)} {splat(sn)} "
                 f"({ish}.ne (v128.and {L} {splat(q)}) (v128.const i64x2 0 0)))")
        if self.p(0.5):
            body = f"(v128.bitselect {canon} {L} ({sh}.ne {L} {L}))"
        else:
            body = f"(v128.bitselect {L} {canon} ({sh}.eq {L} {L}))"
        return f"(block (result v128) (local.set {loc} {x}) {body})"

    def vx_op(self, d):
        d1 = d - 1
        e, o = self.e, self.vopnd
        c = self.r.random()
        if c < 0.28:
            sh = self.ch(ISHAPES)
            op = self.ch(IBIN[sh])
            if op == "swizzle":
                idx = o("vx", d1) if self.p(0.5) else f"(v128.and {o('vx', d1)} (v128.const i8x16 {' '.join(['31'] * 16)}))"
                return f"(i8x16.swizzle {o('vx', d1)} {idx})"
            return f"({sh}.{op} {o('vx', d1)} {o('vx', d1)})"
        if c < 0.37:
            sh = self.ch(ISHAPES)
            return f"({sh}.{self.ch(IUN[sh])} {o('vx', d1)})"
        if c < 0.44:
            sh = self.ch(ISHAPES)
            n = self.ch([f"(i32.const {self.ch([0, 1, 7, 8, 15, 16, 31, 32, 63, 64, 65, 0xFFFFFFFF])})",
                         self.e("i32", d1)])
            return f"({sh}.{self.ch(['shl', 'shr_s', 'shr_u'])} {o('vx', d1)} {n})"
        if c < 0.50:
            k = self.r.random()
            if k < 0.15:
                return f"(v128.not {e('vx', d1)})"
            if k < 0.4:
                return f"(v128.bitselect {o('vx', d1)} {o('vx', d1)} {o('vx', d1)})"
            return f"(v128.{self.ch(['and', 'or', 'xor', 'andnot'])} {o('vx', d1)} {o('vx', d1)})"
        if c < 0.56:
            return self.vshuffle(o("vx", d1), o("vx", d1))
        if c < 0.63:
            sh = self.ch(ISHAPES)
            st = "i64" if sh == "i64x2" else "i32"
            if self.p(0.5):
                return f"({sh}.splat {e(st, d1)})"
            return f"({sh}.replace_lane {self.r.randrange(LANES[sh])} {e('vx', d1)} {e(st, d1)})"
        if c < 0.78:
            # float lane operators with exact results
            fl = self.ch(["f32", "f64"])
            sh, vt = ("f32x4", "vf32") if fl == "f32" else ("f64x2", "vf64")
            k = self.r.random()
            if k < 0.3:
                return f"({sh}.{self.ch(F_CMP)} {e(vt, d1)} {o(vt, d1)})"
            if k < 0.5:
                if fl == "f32":
                    return f"(i32x4.trunc_sat_f32x4_{self.ch('su')} {e(vt, d1)})"
                return f"(i32x4.trunc_sat_f64x2_{self.ch('su')}_zero {e(vt, d1)})"
            if k < 0.65:
                if fl == "f32":
                    return f"(f32x4.convert_i32x4_{self.ch('su')} {o('vx', d1)})"
                return f"(f64x2.convert_low_i32x4_{self.ch('su')} {o('vx', d1)})"
            if k < 0.85:  # bit-exact on exact operands
                if self.p(0.5):
                    return f"({sh}.{self.ch(['abs', 'neg'])} {o('vx', d1)})"
                return f"({sh}.{self.ch(['pmin', 'pmax'])} {o('vx', d1)} {o('vx', d1)})"
            if self.p(0.5):
                return f"({sh}.splat {self.norm_float(fl, e(fl, d1))})"
            return f"({sh}.replace_lane {self.r.randrange(LANES[sh])} {e('vx', d1)} {self.norm_float(fl, e(fl, d1))})"
        if c < 0.93:
            fl = self.ch(["f32", "f64"])
            return self.vnorm(fl, e("vf32" if fl == "f32" else "vf64", d1))
        return self.vload(d)

    def vf_op(self, fl, t, d):
        """a vf32 / vf64: float lane arithmetic and what keeps its NaN lanes whole"""
        d1 = d - 1
        e, o = self.e, self.vopnd
        sh = "f32x4" if fl == "f32" else "f64x2"
        lb = 4 if fl == "f32" else 8
        c = self.r.random()
        if c < 0.30:
            a, b = e(t, d1), o(t, d1)
            if self.p(0.2):
                a, b = b, a
            return f"({sh}.{self.ch(FV_BIN)} {a} {b})"
        if c < 0.36:
            splat = lambda one: f"(v128.const {sh} {' '.join([one] * (16 // lb))})"  # noqa: E731
            return self.identity_via_local(t, "v128", sh, splat, lambda: e(t, d1), d1)
        if c < 0.48:
            return f"({sh}.{self.ch(FV_UN)} {e(t, d1)})"
        if c < 0.53:
            return f"({sh}.{self.ch(['pmin', 'pmax'])} {o(t, d1)} {o(t, d1)})"
        if c < 0.61:
            if fl == "f32":
                if self.p(0.3):
                    return f"(f32x4.demote_f64x2_zero (f64x2.promote_low_f32x4 {e('vf32', d1)}))"
                return f"(f32x4.demote_f64x2_zero {e('vf64', d1)})"
            return f"(f64x2.promote_low_f32x4 {e('vf32', d1)})"
        if c < 0.69:
            if self.p(0.5):
                return f"({sh}.splat {e(fl, d1)})"
            return f"({sh}.replace_lane {self.r.randrange(16 // lb)} {e(t, d1)} {e(fl, d1)})"
        if c < 0.75:
            return self.vshuffle(o(t, d1), o(t, d1), lb)
        if c < 0.83:
            m = self.lane_mask(lb * 8, d1)
            k = self.r.random()
            if k < 0.6:
                return f"(v128.bitselect {o(t, d1)} {o(t, d1)} {m})"
            if k < 0.8:
                return f"(v128.and {e(t, d1)} {m})"
            return f"(v128.andnot {e(t, d1)} {m})"
        if c < 0.89:
            # sign bit operations (the sign source exact: copysign)
            ish = "i32x4" if fl == "f32" else "i64x2"
            n = 16 // lb
            s = 1 << (lb * 8 - 1)
            sm = f"(v128.const {ish} {' '.join([hex(s)] * n)})"
            k = self.r.random()
            if k < 0.4:
                return f"(v128.bitselect {o('vx', d1)} {e(t, d1)} {sm})"
            if k < 0.7:
                return f"(v128.and {e(t, d1)} (v128.const {ish} {' '.join([hex(s - 1)] * n)}))"
            return f"(v128.xor {e(t, d1)} {sm})"
        if c < 0.93:
            if fl == "f32":
                return f"(f32x4.convert_i32x4_{self.ch('su')} {o('vx', d1)})"
            return f"(f64x2.convert_low_i32x4_{self.ch('su')} {o('vx', d1)})"
        return e("vx", d1)

    def vload(self, d):
        if self.p(0.2):
            w = self.ch([1, 2, 4, 8])
            a, off = self.addr(w)
            return (f"(v128.load{8 * w}_lane{self.memarg(w, off)} {self.r.randrange(16 // w)} {a} "
                    f"{self.e('vx', d - 1)})")
        op, w = self.ch(V_LOADS)
        a, off = self.addr(w)
        return f"({op}{self.memarg(w, off)} {a})"

    def vstore(self, d):
        if self.p(0.4):
            w = self.ch([1, 2, 4, 8])
            a, off = self.addr(w)
            return (f"(v128.store{8 * w}_lane{self.memarg(w, off)} {self.r.randrange(16 // w)} {a} "
                    f"{self.e('vx', max(0, d - 1))})")
        a, off = self.addr(16)
        return f"(v128.store{self.memarg(16, off)} {a} {self.e('vx', max(0, d - 1))})"

    def from_simd(self, t, d):
        """a scalar observed from a v128"""
        d1 = d - 1
        if t == "i32":
            c = self.r.random()
            if c < 0.45:
                sh = self.ch(["i8x16", "i16x8", "i32x4"])
                sfx = "" if sh == "i32x4" else "_" + self.ch("su")
                return f"({sh}.extract_lane{sfx} {self.r.randrange(LANES[sh])} {self.e('vx', d1)})"
            if c < 0.6:
                return f"(v128.any_true {self.e('vx', d1)})"
            if c < 0.8:
                return f"({self.ch(ISHAPES)}.all_true {self.e('vx', d1)})"
            return f"({self.ch(ISHAPES)}.bitmask {self.e('vx', d1)})"
        if t == "i64":
            return f"(i64x2.extract_lane {self.r.randrange(2)} {self.e('vx', d1)})"
        if t == "f32":
            return f"(f32x4.extract_lane {self.r.randrange(4)} {self.e('vf32', d1)})"
        return f"(f64x2.extract_lane {self.r.randrange(2)} {self.e('vf64', d1)})"

    # ---------- module ----------
    def module(self):
        r = self.r
        self.safe = self.p(0.6)
        self.simd = self.p(SIMD_P)
        self.pages = self.ch([1, 1, 1, 2])
        maxp = self.maxp = self.ch([None, self.pages, self.pages + 1, self.pages + 3, 10])
        nf = r.randint(2, max(2, int(5 * self.size)))
        self.funcs = [Func(i, self.sig_types(0, 4), self.sig_types(0, 3) if self.p(0.9) else []) for i in range(nf)]
        self.sigs = []
        for f in self.funcs:
            s = (tuple(f.params), tuple(f.results))
            if s not in self.sigs:
                self.sigs.append(s)
        self.globals = []
        self.globals_of = {t: [] for t in T + V}
        for t in T:
            for _ in range(r.randint(1, 2)):
                self.globals_of[t].append(f"$g{len(self.globals)}")
                self.globals.append(t)
        self.vglobals = []  # (not exported: wasmtime's Python API reads no v128)
        if self.simd:
            for t in V:
                for _ in range(r.randint(0, 1)):
                    self.globals_of[t].append(f"$v{len(self.vglobals)}")
                    self.vglobals.append(t)
        self.table_size = r.randint(0, nf + 2)
        self.loopcnt = {}
        bodies = []
        for f in self.funcs:
            self.fn = f
            body = self.stmts(self.depth(), r.randint(1, max(1, int(5 * self.size))))
            if f.results:
                body += " " + self.vals(f.results, self.depth())
            decl_locals = " ".join(map(wt, f.locals[len(f.params):]))
            bodies.append(f"(func $f{f.idx} (type $s{self.sigs.index((tuple(f.params), tuple(f.results)))}) "
                          f"{'(local ' + decl_locals + ')' if decl_locals else ''}\n  {body})")
        out = ["(module"]
        for i, (ps, rs) in enumerate(self.sigs):
            out.append(f"(type $s{i} (func (param {' '.join(map(wt, ps))}) (result {' '.join(map(wt, rs))})))")
        out.append(f"(memory (export \"mem\") {self.pages}{'' if maxp is None else ' ' + str(maxp)})")
        for i, t in enumerate(self.globals):
            out.append(f"(global $g{i} (export \"g{i}\") (mut {t}) {self.const(t)})")
        for i, t in enumerate(self.vglobals):
            out.append(f"(global $v{i} (mut v128) {self.const(t)})")
        out.append("(global $fuel (export \"fuel\") (mut i32) (i32.const 0))")
        out.append(f"(table $tab {self.table_size} funcref)")
        if self.table_size:
            for _ in range(r.randint(1, 3)):
                off = r.randint(0, self.table_size - 1)
                n = r.randint(1, self.table_size - off)
                out.append(f"(elem (i32.const {off}) func {' '.join('$f%d' % r.randrange(nf) for _ in range(n))})")
        for _ in range(r.randint(0, 3)):
            off = r.randint(0, self.pages * 65536 - 32)
            data = bytes(r.getrandbits(8) for _ in range(r.randint(1, 24)))
            esc = "".join("\\%02x" % b for b in data)
            out.append(f'(data (i32.const {off}) "{esc}")')
        out.append(CN_FUNCS)
        if self.simd:
            out.append(VN_FUNCS)
        out += bodies
        exports = []
        for f in self.funcs:
            # a v128 (vx) crosses as two i64: lane 0, lane 1
            wp, wr, args = [], [], []
            for t in f.params:
                i = len(wp)
                if t == "vx":
                    wp += ["i64", "i64"]
                    args.append(f"(i64x2.replace_lane 1 (i64x2.splat (local.get {i})) (local.get {i + 1}))")
                    continue
                wp.append("i32" if t in ("i32", "f32") else "i64")
                args.append(f"(local.get {i})" if t in ("i32", "i64") else
                            f"({t}.reinterpret_{'i32' if t == 'f32' else 'i64'} (local.get {i}))")
            args = " ".join(args)
            nl = len(wp)
            tmp = [nl + i for i in range(len(f.results))]
            sets = " ".join(f"(local.set {tmp[i]})" for i in reversed(range(len(f.results))))
            gets = []
            for i, t in enumerate(f.results):
                if t == "vx":
                    wr += ["i64", "i64"]
                    gets.append(f"(i64x2.extract_lane 0 (local.get {tmp[i]})) (i64x2.extract_lane 1 (local.get {tmp[i]}))")
                    continue
                wr.append("i32" if t in ("i32", "f32") else "i64")
                gets.append(f"(local.get {tmp[i]})" if t in ("i32", "i64") else self.norm_bits(t, f"(local.get {tmp[i]})"))
            gets = " ".join(gets)
            lcl = f"(local {' '.join(map(wt, f.results))})" if f.results else ""
            out.append(f"(func (export \"e{f.idx}\") (param {' '.join(wp)}) (result {' '.join(wr)}) {lcl} "
                       f"(call $f{f.idx} {args}) {sets} {gets})")
            exports.append((f"e{f.idx}", wp, wr, ["v128" if t == "vx" else t for t in f.params],
                            ["v128" if t == "vx" else t for t in f.results]))
        out.append(")")
        meta = {"exports": exports, "globals": self.globals, "seed": self.seed}
        return "\n".join(out), meta

    def depth(self):
        return self.r.randint(2, max(2, int(4 * self.size)))


CN_FUNCS = """(func $cn32 (param i32) (result i32)
  (select (i32.or (i32.const 0x7f800000) (select (i32.const 0x400000) (i32.const 1) (i32.and (local.get 0) (i32.const 0x400000))))
          (local.get 0) (i32.gt_u (i32.and (local.get 0) (i32.const 0x7fffffff)) (i32.const 0x7f800000))))
(func $cn64 (param i64) (result i64)
  (select (i64.or (i64.const 0x7ff0000000000000) (select (i64.const 0x8000000000000) (i64.const 1) (i64.ne (i64.and (local.get 0) (i64.const 0x8000000000000)) (i64.const 0))))
          (local.get 0) (i64.gt_u (i64.and (local.get 0) (i64.const 0x7fffffffffffffff)) (i64.const 0x7ff0000000000000))))"""


# NaN lanes -> 0x7fc00000 (quiet) / 0x7f800001 (signalling), as $cn32/$cn64 per lane
VN_FUNCS = """(func $vn32 (param v128) (result v128)
  (v128.bitselect
    (v128.bitselect (v128.const i32x4 0x7fc00000 0x7fc00000 0x7fc00000 0x7fc00000)
                    (v128.const i32x4 0x7f800001 0x7f800001 0x7f800001 0x7f800001)
                    (i32x4.ne (v128.and (local.get 0) (v128.const i32x4 0x400000 0x400000 0x400000 0x400000))
                              (v128.const i32x4 0 0 0 0)))
    (local.get 0) (f32x4.ne (local.get 0) (local.get 0))))
(func $vn64 (param v128) (result v128)
  (v128.bitselect
    (v128.bitselect (v128.const i64x2 0x7ff8000000000000 0x7ff8000000000000)
                    (v128.const i64x2 0x7ff0000000000001 0x7ff0000000000001)
                    (i64x2.ne (v128.and (local.get 0) (v128.const i64x2 0x8000000000000 0x8000000000000))
                              (v128.const i64x2 0 0)))
    (local.get 0) (f64x2.ne (local.get 0) (local.get 0))))"""


def gen_module(seed, size=1.0):
    g = Gen(seed, size)
    return g.module()


if __name__ == "__main__":
    import sys
    print(gen_module(int(sys.argv[1]), float(sys.argv[2]) if len(sys.argv) > 2 else 1.0)[0])
