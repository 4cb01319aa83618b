"""wasm_aot/codegen/numeric.py checked by JIT: every operator is lowered into a small function,
the module goes through LLVM's O2 pipeline, MCJIT compiles it, and ctypes calls it.

Each case runs twice: with runtime arguments, and with the arguments baked in as constants (so
LLVM's constant folder, not only the machine code, has to get wasm's semantics right).
Values cross the ctypes boundary as raw bit patterns, so float results are compared bit-exactly.
"""
from __future__ import annotations

import ctypes
import importlib
import importlib.util
import math
import random
import re
import struct
from pathlib import Path

import pytest

from llvmlite import ir
import llvmlite.binding as llvm

from wasm_aot import opcodes
from wasm_aot.errors import TrapCode
from wasm_aot.types import ValType


def _load_numeric():
    try:
        return importlib.import_module("wasm_aot.codegen.numeric")
    except Exception:  # codegen's own __init__ may not exist or be mid-edit: load the file alone
        path = Path(__file__).resolve().parents[1] / "wasm_aot" / "codegen" / "numeric.py"
        spec = importlib.util.spec_from_file_location("wasm_aot.codegen.numeric", path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod


numeric = _load_numeric()
NUMERIC = numeric.NUMERIC
I32, I64, F32, F64 = numeric.I32, numeric.I64, numeric.F32, numeric.F64

_LL = {ValType.I32: I32, ValType.I64: I64, ValType.F32: F32, ValType.F64: F64}
_WIDTH = {ValType.I32: 32, ValType.I64: 64, ValType.F32: 32, ValType.F64: 64}

# name -> (param ValTypes, result ValType) for every plain numeric operator of opcodes.py
SIGS: dict[str, tuple[tuple[ValType, ...], ValType]] = {
    opcodes.NAME[op]: (params, results[0])
    for op, (params, results) in opcodes.SIG.items() if opcodes.KIND[op] == "none" and op >> 8 != 0xFD
}


# --- bit patterns ------------------------------------------------------------------------------

def f32_bits(x: float) -> int:
    return struct.unpack("<I", struct.pack("<f", x))[0]


def f64_bits(x: float) -> int:
    return struct.unpack("<Q", struct.pack("<d", x))[0]


def bits_f32(b: int) -> float:
    return struct.unpack("<f", struct.pack("<I", b))[0]


def bits_f64(b: int) -> float:
    return struct.unpack("<d", struct.pack("<Q", b))[0]


class B(int):
    """A raw bit pattern given as an argument or expectation (e.g. a NaN with a payload)."""


NAN = object()  # expectation: any NaN


def encode(t: ValType, v) -> int:
    if isinstance(v, B) or t in (ValType.I32, ValType.I64):
        return int(v) & ((1 << _WIDTH[t]) - 1)
    if t is ValType.F32:
        return f32_bits(v)  # rounds to the nearest f32
    return f64_bits(v)


def is_nan_bits(t: ValType, bits: int) -> bool:
    if t is ValType.F32:
        return (bits & 0x7F800000) == 0x7F800000 and (bits & 0x7FFFFF) != 0
    return (bits & 0x7FF0000000000000) == 0x7FF0000000000000 and (bits & (1 << 52) - 1) != 0


# --- the test Fx and the JIT -------------------------------------------------------------------

TRAPPED = 1  # a wrapper's return value when the operator trapped; the code is in @trap_code


class JitFx:
    def __init__(self, module: ir.Module, builder: ir.IRBuilder, trap_code: ir.GlobalVariable):
        self.module = module
        self.b = builder
        self.trap_code = trap_code

    def trap_if(self, cond: ir.Value, code: TrapCode) -> None:
        fn = self.b.function
        trap = fn.append_basic_block("trap")
        cont = fn.append_basic_block("cont")
        self.b.cbranch(cond, trap, cont)
        self.b.position_at_end(trap)
        self.b.store(ir.Constant(I32, int(code)), self.trap_code)
        self.b.ret(ir.Constant(I32, TRAPPED))
        self.b.position_at_end(cont)

    def intrinsic(self, name: str, ret: ir.Type, args: list[ir.Type]) -> ir.Function:
        fnty = ir.FunctionType(ret, args)
        fn = self.module.globals.get(name)
        if fn is None:
            fn = ir.Function(self.module, fnty, name)
        assert fn.function_type == fnty, f"{name} asked with two types"
        return fn


def _mangle(name: str) -> str:
    return "op_" + name.replace(".", "_")


def _emit(module, trap_code, fname: str, op: str, consts: tuple[int, ...] | None) -> None:
    """i32 fname(i64 a0, i64 a1, i64* out) (runtime args) or i32 fname(i64* out) (consts):
    runs `op` on the arguments' bit patterns, stores the result's bits to *out, returns 0,
    or TRAPPED after a trap."""
    params, result = SIGS[op]
    ptr = I64.as_pointer()
    fnty = ir.FunctionType(I32, [I64, I64, ptr] if consts is None else [ptr])
    fn = ir.Function(module, fnty, fname)
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    raw = fn.args[:2] if consts is None else [ir.Constant(I64, c) for c in consts]
    args = []
    for t, r in zip(params, raw):
        bits = r if t in (ValType.I64, ValType.F64) else b.trunc(r, I32)
        args.append(bits if t in (ValType.I32, ValType.I64) else b.bitcast(bits, _LL[t]))
    fx = JitFx(module, b, trap_code)
    res = NUMERIC[op](fx, args)
    assert res.type == _LL[result], f"{op} gives {res.type}, wasm says {result}"
    if result in (ValType.F32, ValType.F64):
        res = fx.b.bitcast(res, ir.IntType(_WIDTH[result]))
    if result in (ValType.I32, ValType.F32):
        res = fx.b.zext(res, I64)
    fx.b.store(res, fn.args[-1])
    fx.b.ret(ir.Constant(I32, 0))


class Jit:
    def __init__(self, const_cases: list[tuple[str, tuple[int, ...]]]):
        module = ir.Module("numeric_test")
        module.triple = llvm.get_process_triple()
        trap_code = ir.GlobalVariable(module, I32, "trap_code")
        trap_code.initializer = ir.Constant(I32, 0)
        for op in NUMERIC:
            _emit(module, trap_code, _mangle(op), op, None)
        for i, (op, consts) in enumerate(const_cases):
            _emit(module, trap_code, f"case_{i}", op, consts)
        self.ir_text = str(module)

        llvm.initialize_native_target()
        llvm.initialize_native_asmprinter()
        mod = llvm.parse_assembly(self.ir_text)
        mod.verify()
        self.tm = llvm.Target.from_default_triple().create_target_machine()
        pto = llvm.create_pipeline_tuning_options(speed_level=2)
        pb = llvm.create_pass_builder(self.tm, pto)
        pb.getModulePassManager().run(mod, pb)
        mod.verify()
        self.optimized_ir = str(mod)
        self.engine = llvm.create_mcjit_compiler(mod, self.tm)
        self.engine.finalize_object()
        self._trap = ctypes.c_int32.from_address(self.engine.get_global_value_address("trap_code"))
        rt = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_uint64, ctypes.c_uint64,
                              ctypes.POINTER(ctypes.c_uint64))
        ct = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.POINTER(ctypes.c_uint64))
        self._runtime = {op: rt(self.engine.get_function_address(_mangle(op))) for op in NUMERIC}
        self._const = [ct(self.engine.get_function_address(f"case_{i}"))
                       for i in range(len(const_cases))]

    def _finish(self, status: int, out: ctypes.c_uint64):
        if status == TRAPPED:
            code = TrapCode(self._trap.value)
            return code
        assert status == 0
        return out.value

    def call(self, op: str, *args) -> int | TrapCode:
        """Run op on runtime arguments: the result's bit pattern, or the TrapCode it trapped with."""
        params, _ = SIGS[op]
        assert len(args) == len(params)
        bits = [encode(t, a) for t, a in zip(params, args)] + [0] * (2 - len(args))
        out = ctypes.c_uint64(0)
        self._trap.value = 0
        return self._finish(self._runtime[op](bits[0], bits[1], ctypes.byref(out)), out)

    def call_const(self, index: int) -> int | TrapCode:
        out = ctypes.c_uint64(0)
        self._trap.value = 0
        return self._finish(self._const[index](ctypes.byref(out)), out)


# --- hand-written cases (each checked with runtime and with constant arguments) ----------------

INT_MIN32, INT_MIN64 = -(1 << 31), -(1 << 63)
inf, nan = math.inf, math.nan
CNAN32, CNAN64 = B(0x7FC00000), B(0x7FF8000000000000)   # canonical NaNs
SNAN32, SNAN64 = B(0x7FA00000), B(0x7FF4000000000000)   # signalling NaNs with a payload
ANAN32 = B(0xFFC12345)                                   # negative quiet NaN with a payload
F32_MAX = bits_f32(0x7F7FFFFF)


def c(op, *args_and_expected):
    *args, expected = args_and_expected
    return (op, tuple(args), expected)


CASES = [
    # division and remainder
    c("i32.div_s", 7, 0, TrapCode.INT_DIV_BY_ZERO),
    c("i32.div_u", 7, 0, TrapCode.INT_DIV_BY_ZERO),
    c("i32.rem_s", 7, 0, TrapCode.INT_DIV_BY_ZERO),
    c("i32.rem_u", 7, 0, TrapCode.INT_DIV_BY_ZERO),
    c("i32.div_s", INT_MIN32, -1, TrapCode.INT_OVERFLOW),
    c("i32.div_s", INT_MIN32, 0, TrapCode.INT_DIV_BY_ZERO),
    c("i32.div_s", INT_MIN32, 1, INT_MIN32),
    c("i32.div_s", -7, 2, -3),
    c("i32.div_s", 7, -2, -3),
    c("i32.div_u", INT_MIN32, -1, 0),
    c("i32.div_u", -1, 2, 0x7FFFFFFF),
    c("i32.rem_s", INT_MIN32, -1, 0),
    c("i32.rem_s", 5, -1, 0),
    c("i32.rem_s", -7, 2, -1),
    c("i32.rem_s", 7, -2, 1),
    c("i32.rem_u", INT_MIN32, -1, INT_MIN32),
    c("i32.rem_u", -1, 10, 5),
    c("i64.div_s", 7, 0, TrapCode.INT_DIV_BY_ZERO),
    c("i64.div_u", 7, 0, TrapCode.INT_DIV_BY_ZERO),
    c("i64.rem_s", 7, 0, TrapCode.INT_DIV_BY_ZERO),
    c("i64.rem_u", 7, 0, TrapCode.INT_DIV_BY_ZERO),
    c("i64.div_s", INT_MIN64, -1, TrapCode.INT_OVERFLOW),
    c("i64.div_s", -7, 2, -3),
    c("i64.div_u", INT_MIN64, -1, 0),
    c("i64.rem_s", INT_MIN64, -1, 0),
    c("i64.rem_s", -7, 2, -1),
    c("i64.rem_u", -1, 10, 5),
    # shifts take the count modulo the width
    c("i32.shl", 1, 32, 1),
    c("i32.shl", 1, 33, 2),
    c("i32.shl", 1, -1, INT_MIN32),
    c("i32.shr_s", INT_MIN32, 31, -1),
    c("i32.shr_s", INT_MIN32, 63, -1),
    c("i32.shr_s", -8, 32, -8),
    c("i32.shr_u", INT_MIN32, 31, 1),
    c("i32.shr_u", -1, 32, -1),
    c("i32.shr_u", -1, 35, 0x1FFFFFFF),
    c("i64.shl", 1, 64, 1),
    c("i64.shl", 1, 65, 2),
    c("i64.shl", 1, 0x7FFFFFFFFFFFFFFF, INT_MIN64),
    c("i64.shr_s", INT_MIN64, 127, -1),
    c("i64.shr_u", -1, 64, -1),
    c("i64.shr_u", -1, 68, 0x0FFFFFFFFFFFFFFF),
    # rotates
    c("i32.rotl", 0xFE00DC00, 4, 0xE00DC00F),
    c("i32.rotl", 0xFE00DC00, 36, 0xE00DC00F),
    c("i32.rotl", 0xABCD9876, 1, 0x579B30ED),
    c("i32.rotl", 1, 32, 1),
    c("i32.rotr", 0xB0C1D2E3, 5, 0x1D860E97),
    c("i32.rotr", 0xB0C1D2E3, 0xFF05, 0x1D860E97),
    c("i32.rotr", 1, 1, INT_MIN32),
    c("i64.rotl", 1, 64, 1),
    c("i64.rotl", 1, 65, 2),
    c("i64.rotl", 0xABD1234EF567809C, 63, 0x55E891A77AB3C04E),
    c("i64.rotr", 1, 1, INT_MIN64),
    c("i64.rotr", 0xABD1234EF567809C, 0x8000000000000005, 0xE55E891A77AB3C04),
    # bit counts
    c("i32.clz", 0, 32),
    c("i32.clz", 1, 31),
    c("i32.clz", INT_MIN32, 0),
    c("i32.ctz", 0, 32),
    c("i32.ctz", INT_MIN32, 31),
    c("i32.popcnt", -1, 32),
    c("i32.popcnt", 0, 0),
    c("i32.popcnt", 0x80008000, 2),
    c("i64.clz", 0, 64),
    c("i64.clz", 1, 63),
    c("i64.ctz", 0, 64),
    c("i64.ctz", INT_MIN64, 63),
    c("i64.popcnt", -1, 64),
    c("i64.popcnt", 0x8000800080008000, 4),
    # integer comparisons and eqz
    c("i32.eqz", 0, 1),
    c("i32.eqz", INT_MIN32, 0),
    c("i64.eqz", 0, 1),
    c("i64.eqz", 1 << 32, 0),
    c("i32.lt_s", -1, 0, 1),
    c("i32.lt_u", -1, 0, 0),
    c("i32.ge_u", -1, 0, 1),
    c("i32.gt_s", INT_MIN32, 0x7FFFFFFF, 0),
    c("i64.lt_s", -1, 0, 1),
    c("i64.lt_u", -1, 0, 0),
    c("i64.ne", 1 << 32, 0, 1),
    c("i64.le_s", INT_MIN64, INT_MIN64, 1),
    # float comparisons: only ne is true on NaN
    c("f32.eq", nan, nan, 0),
    c("f32.ne", nan, nan, 1),
    c("f32.ne", 1.0, nan, 1),
    c("f32.lt", nan, 1.0, 0),
    c("f32.ge", nan, 1.0, 0),
    c("f32.eq", -0.0, 0.0, 1),
    c("f32.le", -0.0, 0.0, 1),
    c("f32.lt", -0.0, 0.0, 0),
    c("f64.eq", nan, nan, 0),
    c("f64.ne", nan, nan, 1),
    c("f64.gt", nan, -inf, 0),
    c("f64.le", -inf, nan, 0),
    c("f64.eq", -0.0, 0.0, 1),
    c("f64.lt", -inf, inf, 1),
    # min/max: NaN-propagating, -0 < +0
    c("f32.min", -0.0, 0.0, -0.0),
    c("f32.min", 0.0, -0.0, -0.0),
    c("f32.max", -0.0, 0.0, 0.0),
    c("f32.max", 0.0, -0.0, 0.0),
    c("f32.min", nan, 1.0, NAN),
    c("f32.min", 1.0, nan, NAN),
    c("f32.max", -inf, SNAN32, NAN),
    c("f32.max", CNAN32, inf, NAN),
    c("f32.min", -inf, 1.0, -inf),
    c("f32.max", 1.0, 2.0, 2.0),
    c("f64.min", -0.0, 0.0, -0.0),
    c("f64.min", 0.0, -0.0, -0.0),
    c("f64.max", -0.0, 0.0, 0.0),
    c("f64.max", 0.0, -0.0, 0.0),
    c("f64.min", nan, 1.0, NAN),
    c("f64.max", 1.0, nan, NAN),
    c("f64.min", SNAN64, 0.0, NAN),
    c("f64.max", -1.0, -2.0, -1.0),
    # rounding
    c("f32.nearest", 0.5, 0.0),
    c("f32.nearest", 1.5, 2.0),
    c("f32.nearest", 2.5, 2.0),
    c("f32.nearest", -2.5, -2.0),
    c("f32.nearest", -0.5, -0.0),
    c("f32.nearest", 8388609.0, 8388609.0),
    c("f64.nearest", 0.5, 0.0),
    c("f64.nearest", 1.5, 2.0),
    c("f64.nearest", -2.5, -2.0),
    c("f64.nearest", -0.5, -0.0),
    c("f64.nearest", 4503599627370497.0, 4503599627370497.0),
    c("f32.ceil", -0.5, -0.0),
    c("f32.ceil", 0.5, 1.0),
    c("f32.floor", -0.5, -1.0),
    c("f32.floor", 0.5, 0.0),
    c("f32.trunc", -1.5, -1.0),
    c("f32.trunc", -0.5, -0.0),
    c("f64.ceil", -0.5, -0.0),
    c("f64.floor", -0.5, -1.0),
    c("f64.trunc", 1.9, 1.0),
    c("f64.trunc", -0.9, -0.0),
    c("f32.ceil", nan, NAN),
    c("f64.floor", nan, NAN),
    c("f64.nearest", inf, inf),
    # sqrt, abs, neg, copysign (the last three are bit operations, NaN payloads included)
    c("f32.sqrt", 4.0, 2.0),
    c("f32.sqrt", -0.0, -0.0),
    c("f32.sqrt", -1.0, NAN),
    c("f64.sqrt", 2.0, math.sqrt(2.0)),
    c("f64.sqrt", -inf, NAN),
    c("f32.abs", -0.0, 0.0),
    c("f32.abs", ANAN32, B(0x7FC12345)),
    c("f32.abs", B(0xFFA00001), B(0x7FA00001)),
    c("f32.neg", 0.0, -0.0),
    c("f32.neg", SNAN32, B(0xFFA00000)),
    c("f32.neg", ANAN32, B(0x7FC12345)),
    c("f64.abs", B(0xFFF4000000000001), B(0x7FF4000000000001)),
    c("f64.neg", 0.0, -0.0),
    c("f64.neg", SNAN64, B(0xFFF4000000000000)),
    c("f32.copysign", 1.0, -0.0, -1.0),
    c("f32.copysign", -1.0, 0.0, 1.0),
    c("f32.copysign", SNAN32, -1.0, B(0xFFA00000)),
    c("f32.copysign", 2.0, ANAN32, -2.0),
    c("f64.copysign", 1.0, -0.0, -1.0),
    c("f64.copysign", SNAN64, -inf, B(0xFFF4000000000000)),
    # arithmetic
    c("f32.add", 0.1, 0.2, bits_f32(f32_bits(0.1)) + bits_f32(f32_bits(0.2))),
    c("f32.add", -0.0, -0.0, -0.0),
    c("f32.add", -0.0, 0.0, 0.0),
    c("f32.add", inf, -inf, NAN),
    c("f32.sub", 0.0, 0.0, 0.0),
    c("f32.mul", -0.0, 1.0, -0.0),
    c("f32.mul", 0.0, inf, NAN),
    c("f32.div", 1.0, 0.0, inf),
    c("f32.div", -1.0, 0.0, -inf),
    c("f32.div", 0.0, 0.0, NAN),
    c("f32.div", 1.0, 3.0, B(0x3EAAAAAB)),
    c("f32.mul", F32_MAX, 2.0, inf),
    c("f64.add", 0.1, 0.2, 0.1 + 0.2),
    c("f64.sub", 1.0, 1.0, 0.0),
    c("f64.mul", 1e200, 1e200, inf),
    c("f64.div", 1.0, 3.0, 1.0 / 3.0),
    c("f64.div", 0.0, -0.0, NAN),
    # integer arithmetic wraps
    c("i32.add", 0x7FFFFFFF, 1, INT_MIN32),
    c("i32.sub", INT_MIN32, 1, 0x7FFFFFFF),
    c("i32.mul", 0x10000, 0x10000, 0),
    c("i32.mul", 0x7FFFFFFF, 0x7FFFFFFF, 1),
    c("i64.add", 0x7FFFFFFFFFFFFFFF, 1, INT_MIN64),
    c("i64.mul", INT_MIN64, -1, INT_MIN64),
    c("i32.and", 0xF0F0F0F0, 0xFF00FF00, 0xF000F000),
    c("i64.or", 0xF0F0F0F000000000, 0x0F, 0xF0F0F0F00000000F),
    c("i64.xor", -1, 0x0F0F, ~0x0F0F),
    # wrap/extend, sign extension
    c("i32.wrap_i64", 0x100000005, 5),
    c("i32.wrap_i64", -1, -1),
    c("i64.extend_i32_s", -1, -1),
    c("i64.extend_i32_s", 0x7FFFFFFF, 0x7FFFFFFF),
    c("i64.extend_i32_u", -1, 0xFFFFFFFF),
    c("i32.extend8_s", 0x80, -128),
    c("i32.extend8_s", 0x7F, 0x7F),
    c("i32.extend8_s", 0x12345680, -128),
    c("i32.extend8_s", 0xFFFFFF7F, 0x7F),
    c("i32.extend16_s", 0x8000, -0x8000),
    c("i32.extend16_s", 0x12347FFF, 0x7FFF),
    c("i64.extend8_s", 0x80, -128),
    c("i64.extend8_s", 0x0123456789ABCD7F, 0x7F),
    c("i64.extend16_s", 0xFFFF, -1),
    c("i64.extend32_s", 0x80000000, INT_MIN32),
    c("i64.extend32_s", 0xFFFFFFFF7FFFFFFF, 0x7FFFFFFF),
    # trapping truncations at the edges (the exhaustive-ish sweep is below)
    c("i32.trunc_f32_s", 2147483520.0, 2147483520),
    c("i32.trunc_f32_s", 2147483648.0, TrapCode.INT_OVERFLOW),
    c("i32.trunc_f32_s", -2147483648.0, INT_MIN32),
    c("i32.trunc_f32_s", -2147483904.0, TrapCode.INT_OVERFLOW),
    c("i32.trunc_f32_s", nan, TrapCode.BAD_CONVERSION),
    c("i32.trunc_f32_s", ANAN32, TrapCode.BAD_CONVERSION),
    c("i32.trunc_f32_s", -inf, TrapCode.INT_OVERFLOW),
    c("i32.trunc_f32_s", -0.999, 0),
    c("i32.trunc_f32_u", -0.999, 0),
    c("i32.trunc_f32_u", -1.0, TrapCode.INT_OVERFLOW),
    c("i32.trunc_f32_u", 4294967040.0, 4294967040),
    c("i32.trunc_f32_u", 4294967296.0, TrapCode.INT_OVERFLOW),
    c("i32.trunc_f32_u", SNAN32, TrapCode.BAD_CONVERSION),
    c("i32.trunc_f64_s", 2147483647.999, 0x7FFFFFFF),
    c("i32.trunc_f64_s", 2147483648.0, TrapCode.INT_OVERFLOW),
    c("i32.trunc_f64_s", -2147483648.999, INT_MIN32),
    c("i32.trunc_f64_s", -2147483649.0, TrapCode.INT_OVERFLOW),
    c("i32.trunc_f64_s", nan, TrapCode.BAD_CONVERSION),
    c("i32.trunc_f64_u", -0.999, 0),
    c("i32.trunc_f64_u", -1.0, TrapCode.INT_OVERFLOW),
    c("i32.trunc_f64_u", 4294967295.999, 0xFFFFFFFF),
    c("i32.trunc_f64_u", 4294967296.0, TrapCode.INT_OVERFLOW),
    c("i32.trunc_f64_u", SNAN64, TrapCode.BAD_CONVERSION),
    c("i64.trunc_f32_s", 9223371487098961920.0, 9223371487098961920),
    c("i64.trunc_f32_s", 9223372036854775808.0, TrapCode.INT_OVERFLOW),
    c("i64.trunc_f32_s", -9223372036854775808.0, INT_MIN64),
    c("i64.trunc_f32_s", -9223373136366403584.0, TrapCode.INT_OVERFLOW),
    c("i64.trunc_f32_s", nan, TrapCode.BAD_CONVERSION),
    c("i64.trunc_f32_u", -0.999, 0),
    c("i64.trunc_f32_u", -1.0, TrapCode.INT_OVERFLOW),
    c("i64.trunc_f32_u", 18446742974197923840.0, 18446742974197923840),
    c("i64.trunc_f32_u", 18446744073709551616.0, TrapCode.INT_OVERFLOW),
    c("i64.trunc_f32_u", nan, TrapCode.BAD_CONVERSION),
    c("i64.trunc_f64_s", 9223372036854774784.0, 9223372036854774784),
    c("i64.trunc_f64_s", 9223372036854775808.0, TrapCode.INT_OVERFLOW),
    c("i64.trunc_f64_s", -9223372036854775808.0, INT_MIN64),
    c("i64.trunc_f64_s", -9223372036854777856.0, TrapCode.INT_OVERFLOW),
    c("i64.trunc_f64_s", SNAN64, TrapCode.BAD_CONVERSION),
    c("i64.trunc_f64_u", -0.999, 0),
    c("i64.trunc_f64_u", -1.0, TrapCode.INT_OVERFLOW),
    c("i64.trunc_f64_u", 18446744073709549568.0, 18446744073709549568),
    c("i64.trunc_f64_u", 18446744073709551616.0, TrapCode.INT_OVERFLOW),
    c("i64.trunc_f64_u", nan, TrapCode.BAD_CONVERSION),
    c("i64.trunc_f64_u", inf, TrapCode.INT_OVERFLOW),
    # saturating truncations
    c("i32.trunc_sat_f32_s", nan, 0),
    c("i32.trunc_sat_f32_s", ANAN32, 0),
    c("i32.trunc_sat_f32_s", 2147483648.0, 0x7FFFFFFF),
    c("i32.trunc_sat_f32_s", -2147483904.0, INT_MIN32),
    c("i32.trunc_sat_f32_s", inf, 0x7FFFFFFF),
    c("i32.trunc_sat_f32_s", -inf, INT_MIN32),
    c("i32.trunc_sat_f32_s", -1.5, -1),
    c("i32.trunc_sat_f32_u", nan, 0),
    c("i32.trunc_sat_f32_u", -1.0, 0),
    c("i32.trunc_sat_f32_u", -0.999, 0),
    c("i32.trunc_sat_f32_u", 4294967296.0, 0xFFFFFFFF),
    c("i32.trunc_sat_f32_u", 4294967040.0, 4294967040),
    c("i32.trunc_sat_f64_s", nan, 0),
    c("i32.trunc_sat_f64_s", 2147483647.999, 0x7FFFFFFF),
    c("i32.trunc_sat_f64_s", -2147483649.0, INT_MIN32),
    c("i32.trunc_sat_f64_u", SNAN64, 0),
    c("i32.trunc_sat_f64_u", -inf, 0),
    c("i32.trunc_sat_f64_u", 4294967295.999, 0xFFFFFFFF),
    c("i32.trunc_sat_f64_u", 1e30, 0xFFFFFFFF),
    c("i64.trunc_sat_f32_s", nan, 0),
    c("i64.trunc_sat_f32_s", 9223372036854775808.0, 0x7FFFFFFFFFFFFFFF),
    c("i64.trunc_sat_f32_s", -inf, INT_MIN64),
    c("i64.trunc_sat_f32_u", nan, 0),
    c("i64.trunc_sat_f32_u", -1.0, 0),
    c("i64.trunc_sat_f32_u", inf, 0xFFFFFFFFFFFFFFFF),
    c("i64.trunc_sat_f64_s", nan, 0),
    c("i64.trunc_sat_f64_s", 9223372036854775808.0, 0x7FFFFFFFFFFFFFFF),
    c("i64.trunc_sat_f64_s", -9223372036854777856.0, INT_MIN64),
    c("i64.trunc_sat_f64_u", nan, 0),
    c("i64.trunc_sat_f64_u", 18446744073709551616.0, 0xFFFFFFFFFFFFFFFF),
    c("i64.trunc_sat_f64_u", 18446744073709549568.0, 18446744073709549568),
    c("i64.trunc_sat_f64_u", -0.5, 0),
    # int -> float conversions round to nearest, ties to even, in one step
    c("f32.convert_i64_u", -1, 18446744073709551616.0),
    c("f64.convert_i64_u", -1, 18446744073709551616.0),
    c("f32.convert_i64_u", 0x8000008000000001, 9223373136366403584.0),
    c("f32.convert_i64_u", 0xFFFFFF4000000001, 18446742974197923840.0),
    c("f32.convert_i64_u", 0x0020000020000001, 9007200328482816.0),
    c("f64.convert_i64_u", 0x8000000000000401, 9223372036854777856.0),
    c("f64.convert_i64_u", 0xFFFFFFFFFFFFF401, 18446744073709549568.0),
    c("f32.convert_i64_s", 9007199791611905, 9007200328482816.0),
    c("f32.convert_i64_s", -9007199791611905, -9007200328482816.0),
    c("f32.convert_i64_s", INT_MIN64, -9223372036854775808.0),
    c("f32.convert_i32_s", 16777217, 16777216.0),
    c("f32.convert_i32_s", 16777219, 16777220.0),
    c("f32.convert_i32_u", -1, 4294967296.0),
    c("f32.convert_i32_u", 0x80000080, 2147483648.0),
    c("f32.convert_i32_u", 0x80000081, 2147483904.0),
    c("f64.convert_i32_u", -1, 4294967295.0),
    c("f64.convert_i32_s", -1, -1.0),
    c("f64.convert_i64_s", 9007199254740993, 9007199254740992.0),
    c("f64.convert_i64_s", 9007199254740995, 9007199254740996.0),
    # demote / promote / reinterpret
    c("f32.demote_f64", 1e300, inf),
    c("f32.demote_f64", -1e300, -inf),
    c("f32.demote_f64", 1e-300, 0.0),
    c("f32.demote_f64", -1e-300, -0.0),
    c("f32.demote_f64", 0.1, bits_f32(f32_bits(0.1))),
    c("f32.demote_f64", bits_f64(0x3FF0000010000000), 1.0),            # tie, to even
    c("f32.demote_f64", bits_f64(0x3FF0000030000000), bits_f32(0x3F800002)),  # tie, to even
    c("f32.demote_f64", nan, NAN),
    c("f64.promote_f32", bits_f32(0x7F7FFFFF), F32_MAX),
    c("f64.promote_f32", -0.0, -0.0),
    c("f64.promote_f32", nan, NAN),
    c("i32.reinterpret_f32", -0.0, INT_MIN32),
    c("i32.reinterpret_f32", SNAN32, 0x7FA00000),
    c("i64.reinterpret_f64", SNAN64, 0x7FF4000000000000),
    c("f32.reinterpret_i32", 0x7FA00000, SNAN32),
    c("f32.reinterpret_i32", 0xFFC12345, ANAN32),
    c("f64.reinterpret_i64", 0xFFF4000000000001, B(0xFFF4000000000001)),
    c("f64.reinterpret_i64", 0x3FF0000000000000, 1.0),
]


def _const_args(op, args):
    params, _ = SIGS[op]
    return tuple(encode(t, a) for t, a in zip(params, args))


@pytest.fixture(scope="module")
def jit() -> Jit:
    return Jit([(op, _const_args(op, args)) for op, args, _ in CASES])


def check(op: str, got, expected, what: str = "") -> None:
    _, result = SIGS[op]
    label = f"{what}{op}"
    if isinstance(expected, TrapCode):
        assert got == expected, f"{label}: expected trap {expected.name}, got {got!r}"
        return
    assert not isinstance(got, TrapCode), f"{label}: trapped {got.name}, expected {expected!r}"
    if expected is NAN:
        assert is_nan_bits(result, got), f"{label}: expected a NaN, got {got:#x}"
        return
    want = encode(result, expected)
    assert got == want, f"{label}: expected {want:#x}, got {got:#x}"


@pytest.mark.parametrize("index", range(len(CASES)),
                         ids=[f"{op}{args}" for op, args, _ in CASES])
def test_case(jit: Jit, index: int) -> None:
    op, args, expected = CASES[index]
    check(op, jit.call(op, *args), expected, "runtime ")
    check(op, jit.call_const(index), expected, "constant-folded ")


# --- structure ---------------------------------------------------------------------------------

def test_covers_exactly_the_plain_numeric_operators() -> None:
    assert set(NUMERIC) == set(SIGS)
    assert len(SIGS) == 136  # 0x45..0xC4 (128) + 8 trunc_sat


def test_simd_covers_exactly_its_plain_operators() -> None:
    from wasm_aot.codegen.simd import SIMD, SIMD_IMM
    plain = {opcodes.NAME[op] for op in opcodes.NAME if op >> 8 == 0xFD and opcodes.KIND[op] == "none"}
    assert set(SIMD) == plain and len(plain) + len(SIMD_IMM) == 236  # every fixed-width SIMD instruction


def test_types_exported() -> None:
    assert (numeric.I32, numeric.I64, numeric.F32, numeric.F64) == (
        ir.IntType(32), ir.IntType(64), ir.FloatType(), ir.DoubleType())


def test_no_fast_math_and_no_undef(jit: Jit) -> None:
    for flag in (" fast ", " nnan ", " ninf ", " nsz ", " arcp ", " contract ", " afn ", " reassoc ",
                 " nsw ", " nuw ", "undef", "poison"):
        assert flag not in jit.ir_text, flag


def test_pipeline_optimised(jit: Jit) -> None:
    # The O2 pipeline ran, and folded (nearly) every constant case down to a straight-line store,
    # so test_case really did check LLVM's constant folder as well as the machine code.
    assert jit.optimized_ir != jit.ir_text
    bodies = re.findall(r"define [^@]*@case_\d+\([^)]*\)[^{]*\{(.*?)\n\}", jit.optimized_ir, re.S)
    assert len(bodies) == len(CASES)
    unfolded = [b for b in bodies if re.search(r"\b(call|br|fcmp|icmp|select|fpto[su]i|[su](div|rem)) ", b)]
    assert len(unfolded) <= len(CASES) // 20, unfolded


# --- sweeps against Python oracles (runtime arguments) -----------------------------------------

def _ordered(t: ValType, bits: int) -> int:
    sign = 1 << (_WIDTH[t] - 1)
    return -(bits & (sign - 1)) if bits & sign else bits


def _from_ordered(t: ValType, o: int) -> int:
    sign = 1 << (_WIDTH[t] - 1)
    return (-o) | sign if o < 0 else o


def _to_float(t: ValType, bits: int) -> float:
    return bits_f32(bits) if t is ValType.F32 else bits_f64(bits)


def _neighbours(t: ValType, x: float, k: int = 3) -> list[int]:
    """Bit patterns of the floats within k ulps of x (x rounded into t first)."""
    bits = encode(t, bits_f32(f32_bits(x)) if t is ValType.F32 else x)
    o = _ordered(t, bits)
    return [_from_ordered(t, o + d) for d in range(-k, k + 1)]


def _trunc_candidates(t: ValType, width: int) -> list[int]:
    pts = [0.0, -0.0, 0.5, -0.5, 0.999, -0.999, 1.0, -1.0, -2.0, 42.7, -42.7]
    for w in (width - 1, width):
        for s in (1, -1):
            pts += [s * 2.0 ** w, s * (2.0 ** w - 1), s * (2.0 ** w + 1)]
    cands = {b for x in pts for b in _neighbours(t, x)}
    nan_bits = [0x7FC00000, 0xFFC00000, 0x7FA00000, 0x7F800001] if t is ValType.F32 else \
        [0x7FF8000000000000, 0xFFF8000000000000, 0x7FF4000000000000, 0x7FF0000000000001]
    inf_bits = [0x7F800000, 0xFF800000] if t is ValType.F32 else [0x7FF0000000000000, 0xFFF0000000000000]
    return sorted(cands) + nan_bits + inf_bits


TRUNC_OPS = [f"i{w}.trunc{sat}_f{fw}_{su}" for w in (32, 64) for sat in ("", "_sat")
             for fw in (32, 64) for su in ("s", "u")]


@pytest.mark.parametrize("op", TRUNC_OPS)
def test_truncation_sweep(jit: Jit, op: str) -> None:
    """Every float near each end of the range, against math.trunc."""
    (src,), dst = SIGS[op]
    width = _WIDTH[dst]
    signed = op.endswith("_s")
    lo, hi = (-(1 << (width - 1)), (1 << (width - 1)) - 1) if signed else (0, (1 << width) - 1)
    for bits in _trunc_candidates(src, width):
        x = _to_float(src, bits)
        if math.isnan(x):
            expected = 0 if "sat" in op else TrapCode.BAD_CONVERSION
        elif math.isinf(x):
            expected = (hi if x > 0 else lo) if "sat" in op else TrapCode.INT_OVERFLOW
        else:
            n = math.trunc(x)
            if lo <= n <= hi:
                expected = n
            elif "sat" in op:
                expected = hi if n > hi else lo
            else:
                expected = TrapCode.INT_OVERFLOW
        check(op, jit.call(op, B(bits)), expected, f"{x!r} ({bits:#x}): ")


def _round_int_to_f32(n: int) -> float:
    """n rounded to the nearest f32, ties to even, in one step (float(n) then f32 would round twice)."""
    m = abs(n)
    shift = max(m.bit_length() - 24, 0)
    q, r = divmod(m, 1 << shift)
    if shift and (r > 1 << (shift - 1) or (r == 1 << (shift - 1) and q & 1)):
        q += 1
    return math.copysign(float(q << shift), n) if n else 0.0


def test_convert_sweep(jit: Jit) -> None:
    rng = random.Random(1234)
    vals = [0, 1, -1, (1 << 31) - 1, 1 << 31, (1 << 32) - 1, 1 << 63, (1 << 63) - 1, (1 << 64) - 1]
    for _ in range(400):
        bl = rng.randint(1, 64)
        v = rng.getrandbits(bl) | (1 << (bl - 1))
        # bias toward ties and near-ties at the f32/f64 rounding position
        if rng.random() < 0.5 and bl > 25:
            keep = rng.choice((24, 53)) if bl > 54 else 24
            low = bl - keep
            v = (v >> low << low) | rng.choice((1 << (low - 1), (1 << (low - 1)) + 1, (1 << (low - 1)) - 1))
        vals.append(v)
    for v in vals:
        for w in (32, 64):
            u = v & ((1 << w) - 1)
            s = u - (1 << w) if u >> (w - 1) else u
            for su, n in (("u", u), ("s", s)):
                check(f"f64.convert_i{w}_{su}", jit.call(f"f64.convert_i{w}_{su}", n), float(n), f"{n}: ")
                check(f"f32.convert_i{w}_{su}", jit.call(f"f32.convert_i{w}_{su}", n),
                      _round_int_to_f32(n), f"{n}: ")


def _rot(x: int, n: int, w: int) -> int:
    n %= w
    m = (1 << w) - 1
    return ((x << n) | (x >> (w - n))) & m


def _int_oracle(name: str, w: int, a: int, b: int):
    m = (1 << w) - 1
    sa = a - (1 << w) if a >> (w - 1) else a
    sb = b - (1 << w) if b >> (w - 1) else b
    def tdiv(x, y):
        q = abs(x) // abs(y)
        return q if (x < 0) == (y < 0) else -q
    if name in ("div_s", "div_u", "rem_s", "rem_u") and b == 0:
        return TrapCode.INT_DIV_BY_ZERO
    if name == "div_s" and sa == -(1 << (w - 1)) and sb == -1:
        return TrapCode.INT_OVERFLOW
    table = {
        "add": lambda: a + b, "sub": lambda: a - b, "mul": lambda: a * b,
        "and": lambda: a & b, "or": lambda: a | b, "xor": lambda: a ^ b,
        "shl": lambda: a << (b % w), "shr_u": lambda: a >> (b % w), "shr_s": lambda: sa >> (b % w),
        "rotl": lambda: _rot(a, b, w), "rotr": lambda: _rot(a, -(b % w), w),
        "div_u": lambda: a // b, "rem_u": lambda: a % b,
        "div_s": lambda: tdiv(sa, sb), "rem_s": lambda: sa - sb * tdiv(sa, sb),
        "eq": lambda: int(a == b), "ne": lambda: int(a != b),
        "lt_s": lambda: int(sa < sb), "lt_u": lambda: int(a < b),
        "gt_s": lambda: int(sa > sb), "gt_u": lambda: int(a > b),
        "le_s": lambda: int(sa <= sb), "le_u": lambda: int(a <= b),
        "ge_s": lambda: int(sa >= sb), "ge_u": lambda: int(a >= b),
        "clz": lambda: w - a.bit_length(), "ctz": lambda: (a & -a).bit_length() - 1 if a else w,
        "popcnt": lambda: bin(a).count("1"), "eqz": lambda: int(a == 0),
    }
    return table[name]() & m


@pytest.mark.parametrize("w", [32, 64])
def test_integer_sweep(jit: Jit, w: int) -> None:
    rng = random.Random(w)
    m = (1 << w) - 1
    edge = [0, 1, 2, 3, m, m - 1, 1 << (w - 1), (1 << (w - 1)) - 1, (1 << (w - 1)) + 1,
            w - 1, w, w + 1, 2 * w, 0xFF, 0x100]
    vals = edge + [rng.getrandbits(w) >> rng.randint(0, w - 1) for _ in range(40)]
    names = [n.split(".", 1)[1] for n in SIGS if n.startswith(f"i{w}.")]
    names = [n for n in names if n in {"add", "sub", "mul", "and", "or", "xor", "shl", "shr_u", "shr_s",
                                       "rotl", "rotr", "div_u", "rem_u", "div_s", "rem_s", "eq", "ne",
                                       "lt_s", "lt_u", "gt_s", "gt_u", "le_s", "le_u", "ge_s", "ge_u",
                                       "clz", "ctz", "popcnt", "eqz"}]
    assert len(names) == 29
    for name in names:
        op = f"i{w}.{name}"
        if len(SIGS[op][0]) == 1:
            for a in vals:
                check(op, jit.call(op, a), _int_oracle(name, w, a, 0), f"{a:#x}: ")
        else:
            for a in vals:
                for b in vals:
                    check(op, jit.call(op, a, b), _int_oracle(name, w, a, b), f"{a:#x}, {b:#x}: ")


@pytest.mark.parametrize("opt_level", [0, 2])
def test_signalling_nan_constants_come_out_quiet(opt_level):
    """LLVM folds an operation of a NaN constant with an identity (sNaN + -0, maximum(-0, sNaN))
    to the signalling NaN itself; wasm wants an arithmetic (quiet) NaN (found against wasmtime)."""
    import wasm_aot as wa
    from conftest import wat
    cases = {
        "(i32.reinterpret_f32 (f32.max (f32.const -0) (f32.const nan:0x200001)))": 0x7FE00001,
        "(i32.reinterpret_f32 (f32.min (f32.const nan:0x200001) (f32.const 1)))": 0x7FE00001,
        "(i32.reinterpret_f32 (f32.mul (f32.const 1) (f32.const nan:0x200001)))": 0x7FE00001,
        "(i32.reinterpret_f32 (f32.div (f32.const nan:0x200001) (f32.const 1)))": 0x7FE00001,
    }
    body = " ".join(f'(func (export "f{i}") (result i32) {e})' for i, e in enumerate(cases))
    inst = wa.compile(wat(f"(module {body})"), opt_level=opt_level, cache=False).instantiate()
    for i, want in enumerate(cases.values()):
        assert inst.exports[f"f{i}"]() & 0xFFFFFFFF == want
    r = wa.compile(wat('(module (func (export "g") (result i64) (i64.reinterpret_f64 (f64.add (f64.const nan:0x4000000000001) (f64.const -0)))))'),
                   opt_level=opt_level, cache=False).instantiate().exports.g()
    assert r & 0xFFFFFFFFFFFFFFFF == 0x7FFC000000000001


@pytest.mark.parametrize("opt_level", [0, 2])
def test_several_float_results_keep_their_bits(opt_level):
    """A function's results come back as a struct, whose third float LLVM would return in the x87
    register, quieting a signalling NaN (found by differential fuzzing): floats travel as integers.
    Through a direct call, call_indirect, the entry trampoline (dyn_func) and an import's shim."""
    import wasm_aot as wa
    from conftest import wat
    from wasm_aot.loader.values import bits_f64
    src = """(module
      (type $t (func (result f64 f32 f64 f64)))
      (import "env" "host" (func $host (type $t)))
      (table 1 funcref) (elem (i32.const 0) $f)
      (func $f (export "f") (type $t)
        (f64.const -nan:0x1) (f32.const nan:0x2) (f64.const -nan:0x3) (f64.const nan:0x4))
      (func $bits (param f64 f32 f64 f64) (result i64 i32 i64 i64)
        (i64.reinterpret_f64 (local.get 0)) (i32.reinterpret_f32 (local.get 1))
        (i64.reinterpret_f64 (local.get 2)) (i64.reinterpret_f64 (local.get 3)))
      (func (export "direct") (result i64 i32 i64 i64) (call $f) (call $bits))
      (func (export "indirect") (result i64 i32 i64 i64) (call_indirect (type $t) (i32.const 0)) (call $bits))
      (func (export "imported") (result i64 i32 i64 i64) (call $host) (call $bits)))"""
    want = [0xFFF0000000000001, 0x7F800002, 0xFFF0000000000003, 0x7FF0000000000004]
    # a Python float carries an f64's signalling NaN exactly (an f32's would be quieted on the way)
    host = wa.Function(lambda: (bits_f64(want[0]), 2.5, bits_f64(want[2]), bits_f64(want[3])),
                       wa.FuncType([], [wa.F64, wa.F32, wa.F64, wa.F64]))
    inst = wa.compile(wat(src), opt_level=opt_level, cache=False).instantiate({"env": {"host": host}})
    masks = [2 ** 64 - 1, 2 ** 32 - 1, 2 ** 64 - 1, 2 ** 64 - 1]
    for name in ("direct", "indirect"):
        assert [r & m for r, m in zip(inst.exports[name](), masks)] == want, name
    assert [r & m for r, m in zip(inst.exports.imported(), masks)] == [want[0], 0x40200000, want[2], want[3]]
    assert [v.bits for v in inst.dyn_func("f").call([])] == want


@pytest.mark.parametrize("opt_level", [0, 2])
def test_min_max_of_a_signalling_nan_and_minus_zero_come_out_quiet(opt_level):
    """min/max quiet a NaN operand; they did it with fadd of the operands, which LLVM folds to the
    NaN itself when the other operand is -0 (found by differential fuzzing)."""
    import wasm_aot as wa
    from conftest import wat
    src = "(module " + " ".join(
        f'(func (export "{op}{w}{k}") (param i{w}) (result i{w}) (i{w}.reinterpret_f{w} '
        + (f"(f{w}.{op} (f{w}.reinterpret_i{w} (local.get 0)) (f{w}.const -0))" if k == "r" else
           f"(f{w}.{op} (f{w}.const -0) (f{w}.reinterpret_i{w} (local.get 0)))") + "))"
        for op in ("min", "max") for w in (32, 64) for k in "lr") + ")"
    inst = wa.compile(wat(src), opt_level=opt_level, cache=False).instantiate()
    for op in ("min", "max"):
        for k in "lr":
            assert inst.exports[f"{op}32{k}"](0x7FA00001) & 0xFFFFFFFF == 0x7FE00001
            assert inst.exports[f"{op}64{k}"](0x7FF4000000000001) & (2 ** 64 - 1) == 0x7FFC000000000001


@pytest.mark.parametrize("opt_level", [0, 2])
def test_a_signalling_nan_constant_carried_to_an_operation_comes_out_quiet(opt_level):
    """LLVM's constant folding can pass a signalling NaN operand through unquieted: a constant that
    reached an addition only through a block result, the other operand a zero local, came out
    signalling (found by differential fuzzing): such constants are opaque to LLVM now."""
    import wasm_aot as wa
    from conftest import wat
    src = """(module
      (func $snan (result f32) (f32.const -nan:0x1))
      (func (export "if") (param i32) (result i32) (local f32)
        (i32.reinterpret_f32 (f32.add (local.get 1)
          (if (result f32) (local.get 0) (then (f32.const -nan:0x1)) (else (f32.const 2))))))
      (func (export "if64") (param i32) (result i64) (local f64)
        (i64.reinterpret_f64 (f64.mul (local.get 1)
          (if (result f64) (local.get 0) (then (f64.const nan:0x1)) (else (f64.const 2))))))
      (func (export "bits") (result i32) (i32.reinterpret_f32 (call $snan))))"""
    inst = wa.compile(wat(src), opt_level=opt_level, cache=False).instantiate()
    assert inst.exports["if"](1) & 0xFFFFFFFF == 0xFFC00001
    assert inst.exports.if64(1) & (2 ** 64 - 1) == 0x7FF8000000000001
    assert inst.exports.bits() & 0xFFFFFFFF == 0xFF800001  # not an operation: the bits as written
