"""LLVM types for wasm values and for the VM structures of abi.py."""
from __future__ import annotations

from llvmlite import ir as ll

from .. import abi
from ..types import FuncType, ValType

PTR = ll.PointerType()
I1, I8, I32, I64 = ll.IntType(1), ll.IntType(8), ll.IntType(32), ll.IntType(64)
F32, F64 = ll.FloatType(), ll.DoubleType()
V128 = ll.VectorType(I64, 2)
VOID = ll.VoidType()

VALTYPE: dict[ValType, ll.Type] = {
    ValType.I32: I32, ValType.I64: I64, ValType.F32: F32, ValType.F64: F64, ValType.V128: V128,
    ValType.FUNCREF: PTR, ValType.EXTERNREF: PTR,
}

_CTYPE = {"uint32_t": I32, "int32_t": I32, "uint64_t": I64, "int64_t": I64, "uintptr_t": I64, "intptr_t": I64,
          "void": VOID}


def ctype(c: str) -> ll.Type:
    return PTR if c.endswith("*") else _CTYPE[c]


STRUCT: dict[str, ll.LiteralStructType] = {
    name: ll.LiteralStructType([ctype(c) for _, c in fields]) for name, fields in abi.STRUCTS.items()
}

RT_FNTYPE: dict[str, ll.FunctionType] = {
    name: ll.FunctionType(ctype(ret), [PTR] + [ctype(p) for p in params])
    for name, ret, params in abi.RT_FUNCS
}
RT = ll.LiteralStructType([PTR] * len(abi.RT_FUNCS))


def zero(t: ValType) -> ll.Constant:
    lt = VALTYPE[t]
    if isinstance(lt, ll.PointerType):
        return ll.Constant(lt, None)
    if isinstance(lt, ll.VectorType):
        return ll.Constant(lt, [ll.Constant(I64, 0)] * 2)
    return ll.Constant(lt, 0)


# Several results come back as a literal struct. Its floats travel as integers of their width: LLVM
# returns a third float of a struct in the x87 register, and loading it there quiets a signalling NaN
# (integers go in RAX, RDX, RCX, then the whole struct through memory: every bit arrives).
_RESULT_AS_INT = {ValType.F32: I32, ValType.F64: I64}


def result_type(ft: FuncType) -> ll.Type:
    """wasm results: none -> void, one -> the value, several -> a literal struct (floats as integers)."""
    if not ft.results:
        return VOID
    if len(ft.results) == 1:
        return VALTYPE[ft.results[0]]
    return ll.LiteralStructType([_RESULT_AS_INT.get(t, VALTYPE[t]) for t in ft.results])


def pack_results(b: ll.IRBuilder, vals: list[ll.Value], ft: FuncType) -> ll.Value:
    """The value a function of type `ft` returns for its results `vals` (at least two)."""
    agg = ll.Constant(result_type(ft), ll.Undefined)
    for i, (v, t) in enumerate(zip(vals, ft.results)):
        agg = b.insert_value(agg, b.bitcast(v, _RESULT_AS_INT[t]) if t in _RESULT_AS_INT else v, i)
    return agg


def unpack_results(b: ll.IRBuilder, r: ll.Value, ft: FuncType) -> list[ll.Value]:
    """The results of a call of type `ft` that returned `r` (none: [])."""
    if len(ft.results) < 2:
        return [r] if ft.results else []
    out = []
    for i, t in enumerate(ft.results):
        v = b.extract_value(r, i)
        out.append(b.bitcast(v, VALTYPE[t]) if t in _RESULT_AS_INT else v)
    return out


def wasm_fntype(ft: FuncType) -> ll.FunctionType:
    """Every wasm function, defined or imported, takes its ctx first."""
    return ll.FunctionType(result_type(ft), [PTR] + [VALTYPE[t] for t in ft.params])


TRAMP_FNTYPE = ll.FunctionType(VOID, [PTR, PTR, PTR])  # (callee ctx, code, slots)
HOSTCALL_FNTYPE = ll.FunctionType(VOID, [PTR, PTR])  # (hostfunc, slots)


class Callee:
    """A function pointer with its type, so llvmlite can emit an indirect call through it."""

    def __init__(self, ptr: ll.Value, fntype: ll.FunctionType) -> None:
        self.ptr, self.function_type, self.type = ptr, fntype, ptr.type

    def get_reference(self) -> str:
        return self.ptr.get_reference()
