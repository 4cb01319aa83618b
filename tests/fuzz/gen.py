"""Seeded random generator of valid wasm modules (WAT text) exercising scalar code.

gen_module(seed) -> (wat_text, meta) ; meta: exports [(name, param types, result types)], globals, pages.

Exported entry points are wrappers "eK" around internal function $fK: float params arrive as
i32/i64 bit patterns (so sNaN payloads cross exactly), float results leave as *normalised* bits
(NaN -> 0x7fc00000 / 0x7f800001 class only: quiet bit kept, sign and payload dropped), since wasm
lets arithmetic NaN payload/sign vary. Every place where NaN bits become observable inside the
module (reinterpret, float store, copysign's sign source) goes through the same normalisation.
Calls are bounded by a global $fuel (the harness sets it before each call), loops by counters.
"""
from __future__ import annotations

import random
import struct

T = ("i32", "i64", "f32", "f64")
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
        return [self.ch(T) for _ in range(self.r.randint(lo, hi))]

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
        al = self.ch([w for w in (1, 2, 4, 8) if w <= width])
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
        return f"(global.get $g{self.ch(self.globals_of[t])})"

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
            # identity-ish constants through a local (not a direct const operand)
            loc = self.new_local(t)
            one = self.ch(["1.0", "-1.0", "0.0", "-0.0", "1.0"])
            op = self.ch(["mul", "mul", "div", "add", "sub"])
            return (f"(block (result {t}) (local.set {loc} ({t}.const {one})) "
                    f"{self.maybe_split(d1)}({t}.{op} {e(t, d1)} (local.get {loc})))")
        return f"({t}.{self.ch(['add', 'sub', 'mul', 'div'])} {e(t, d1)} {self.const(t)})"

    def _eqz(self, d1):
        it = self.ch(["i32", "i64"])
        return f"({it}.eqz {self.e(it, d1)})"

    def maybe_split(self, d):
        """something that may end a basic block"""
        if self.p(0.5):
            return f"(if (i32.eqz {self.e('i32', 0)}) (then (nop))) "
        return ""

    def load(self, t, d):
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
        return f" (result {' '.join(types)})" if types else ""

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
        """an expression of (exactly) `types` from a call, direct or indirect"""
        types = list(types)
        cands = [f for f in self.funcs if f.results == types]
        if self.p(0.3) and self.table_size:
            # call_indirect with a type whose results are `types` (maybe not matching what the table holds)
            sigs = [s for s in self.sigs if list(s[1]) == types]
            if not sigs:
                ps = self.rtypes(0, 3)
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
        t = self.ch(T)
        if c < 0.55:
            return f"(local.set {self.local_of(t)} {self.e(t, d)})"
        if c < 0.8:
            return f"(global.set $g{self.ch(self.globals_of[t])} {self.e(t, d)})"
        if c < 0.9:
            return f"(drop {self.e(t, d)})"
        return self.store(d)

    def store(self, d):
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

    # ---------- module ----------
    def module(self):
        r = self.r
        self.safe = self.p(0.6)
        self.pages = self.ch([1, 1, 1, 2])
        maxp = self.maxp = self.ch([None, self.pages, self.pages + 1, self.pages + 3, 10])
        nf = r.randint(2, max(2, int(5 * self.size)))
        self.funcs = [Func(i, self.rtypes(0, 4), self.results_types() if self.p(0.9) else []) for i in range(nf)]
        self.sigs = []
        for f in self.funcs:
            s = (tuple(f.params), tuple(f.results))
            if s not in self.sigs:
                self.sigs.append(s)
        self.globals = []
        self.globals_of = {t: [] for t in T}
        for t in T:
            for _ in range(r.randint(1, 2)):
                self.globals_of[t].append(len(self.globals))
                self.globals.append(t)
        self.table_size = r.randint(0, nf + 2)
        self.loopcnt = {}
        bodies = []
        for f in self.funcs:
            self.fn = f
            body = self.stmts(self.depth(), r.randint(1, max(1, int(5 * self.size))))
            if f.results:
                body += " " + self.vals(f.results, self.depth())
            decl_locals = " ".join(f.locals[len(f.params):])
            bodies.append(f"(func $f{f.idx} (type $s{self.sigs.index((tuple(f.params), tuple(f.results)))}) "
                          f"{'(local ' + decl_locals + ')' if decl_locals else ''}\n  {body})")
        out = ["(module"]
        for i, (ps, rs) in enumerate(self.sigs):
            out.append(f"(type $s{i} (func (param {' '.join(ps)}) (result {' '.join(rs)})))")
        out.append(f"(memory (export \"mem\") {self.pages}{'' if maxp is None else ' ' + str(maxp)})")
        for i, t in enumerate(self.globals):
            out.append(f"(global $g{i} (export \"g{i}\") (mut {t}) {self.const(t)})")
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
        out += bodies
        exports = []
        for f in self.funcs:
            wp = ["i32" if t in ("i32", "f32") else "i64" for t in f.params]
            wr = ["i32" if t in ("i32", "f32") else "i64" for t in f.results]
            args = " ".join(f"(local.get {i})" if t in ("i32", "i64") else
                            f"({t}.reinterpret_{'i32' if t == 'f32' else 'i64'} (local.get {i}))"
                            for i, t in enumerate(f.params))
            nl = len(f.params)
            tmp = [nl + i for i in range(len(f.results))]
            sets = " ".join(f"(local.set {tmp[i]})" for i in reversed(range(len(f.results))))
            gets = " ".join(f"(local.get {tmp[i]})" if t in ("i32", "i64") else self.norm_bits(t, f"(local.get {tmp[i]})")
                            for i, t in enumerate(f.results))
            lcl = f"(local {' '.join(f.results)})" if f.results else ""
            out.append(f"(func (export \"e{f.idx}\") (param {' '.join(wp)}) (result {' '.join(wr)}) {lcl} "
                       f"(call $f{f.idx} {args}) {sets} {gets})")
            exports.append((f"e{f.idx}", wp, wr, list(f.params), list(f.results)))
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


def gen_module(seed, size=1.0):
    g = Gen(seed, size)
    return g.module()


if __name__ == "__main__":
    import sys
    print(gen_module(int(sys.argv[1]), float(sys.argv[2]) if len(sys.argv) > 2 else 1.0)[0])
