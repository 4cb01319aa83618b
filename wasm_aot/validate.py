"""Validation of a decoded module (WebAssembly 2.0).

Function bodies are checked with the operand/control stack algorithm of the spec's validation
appendix, iteratively over the flat instruction list (no recursion, whatever the nesting depth).
The operand stack holds ValTypes, with None for the "unknown" type that a polymorphic stack (after
unreachable, br, br_table, return) produces. Error messages are the spec testsuite's texts, with the
offending index appended where there is one ("unknown local 3").
"""
from __future__ import annotations

import re

import gc
from typing import Sequence

from . import ir
from .errors import CompileError
from .opcodes import BY_NAME, KIND, NAME, NATURAL_ALIGN, SIG
from .opcodes import (BLOCK, BR, BR_IF, BR_TABLE, CALL, CALL_INDIRECT, DROP, ELSE, END, F32_CONST,
                      F64_CONST, GLOBAL_GET, GLOBAL_SET, I32_CONST, I64_CONST, IF, LOCAL_GET,
                      LOCAL_SET, LOCAL_TEE, LOOP, NOP, REF_FUNC, REF_IS_NULL, REF_NULL, RETURN, SELECT,
                      SELECT_T, UNREACHABLE)
from .types import FuncType, GlobalType, Limits, TableType, ValType

I32, I64, F32, F64, V128 = ValType.I32, ValType.I64, ValType.F32, ValType.F64, ValType.V128
FUNCREF = ValType.FUNCREF

MAX_PAGES = 65536  # 4 GiB of 64 KiB pages
MAX_TABLE = 0xFFFF_FFFF

TABLE_GET, TABLE_SET = 0x25, 0x26
MEMORY_SIZE, MEMORY_GROW = 0x3F, 0x40
MEMORY_INIT, DATA_DROP, MEMORY_COPY, MEMORY_FILL = 0xFC08, 0xFC09, 0xFC0A, 0xFC0B
TABLE_INIT, ELEM_DROP, TABLE_COPY, TABLE_GROW, TABLE_SIZE, TABLE_FILL = (
    0xFC0C, 0xFC0D, 0xFC0E, 0xFC0F, 0xFC10, 0xFC11)

# Plain stack operators (constants and numeric ops): op -> (params popped last-first, results).
_PLAIN: dict[int, tuple[tuple[ValType, ...], tuple[ValType, ...]]] = {
    op: (tuple(reversed(p)), r) for op, (p, r) in SIG.items()
    if KIND[op] not in ("memarg", "memory", "lane", "memarg_lane", "shuffle")
}
_MEMARG: dict[int, tuple[tuple[ValType, ...], tuple[ValType, ...], int]] = {
    op: (tuple(reversed(SIG[op][0])), SIG[op][1], NATURAL_ALIGN[op]) for op in NATURAL_ALIGN
    if KIND[op] == "memarg"
}


def _lanes(name: str) -> int:
    """How many lanes a SIMD instruction's lane index picks from: its shape's, or 128 / the access width."""
    shape = name.split(".")[0]
    if shape == "v128":  # v128.loadN_lane / storeN_lane
        return 128 // int(re.match(r"v128\.(?:load|store)(\d+)_lane", name).group(1))
    return int(shape.split("x")[1])


# SIMD instructions with a lane index: op -> (params popped last-first, results, lanes, natural
# alignment or None when there is no memory access)
_LANE_OPS: dict[int, tuple[tuple[ValType, ...], tuple[ValType, ...], int, int | None]] = {
    op: (tuple(reversed(SIG[op][0])), SIG[op][1], _lanes(NAME[op]), NATURAL_ALIGN.get(op))
    for op in SIG if KIND[op] in ("lane", "memarg_lane")
}
I8X16_SHUFFLE = BY_NAME["i8x16.shuffle"]
_CONST_OPS = {I32_CONST: I32, I64_CONST: I64, F32_CONST: F32, F64_CONST: F64, BY_NAME["v128.const"]: V128}

_MISMATCH = "type mismatch"


def _err(pos: int | None, msg: str) -> CompileError:
    return CompileError(pos, msg)


class _Context:
    """The module-level context C of the spec."""

    def __init__(self, m: ir.Module) -> None:
        self.module = m
        self.types = m.types
        self.funcs: list[int] = m.func_type_indices()  # type index of every function
        self.tables: list[TableType] = m.all_tables()
        self.mems = m.all_memories()
        self.globals: list[GlobalType] = m.all_global_types()
        self.num_imported_globals = sum(1 for i in m.imports if i.kind is ir.ExternKind.GLOBAL)
        self.elem_types = [e.type for e in m.elems]
        self.num_datas = len(m.datas)
        self.refs = declared_refs(m)

    # --- index lookups with the testsuite's messages ---
    def type_(self, idx: int, pos: int | None) -> FuncType:
        if not 0 <= idx < len(self.types):
            raise _err(pos, f"unknown type {idx}")
        return self.types[idx]

    def func_type(self, idx: int, pos: int | None) -> FuncType:
        if not 0 <= idx < len(self.funcs):
            raise _err(pos, f"unknown function {idx}")
        return self.types[self.funcs[idx]]

    def table(self, idx: int, pos: int | None) -> TableType:
        if not 0 <= idx < len(self.tables):
            raise _err(pos, f"unknown table {idx}")
        return self.tables[idx]

    def memory(self, idx: int, pos: int | None) -> None:
        if not 0 <= idx < len(self.mems):
            raise _err(pos, f"unknown memory {idx}")

    def global_(self, idx: int, pos: int | None) -> GlobalType:
        if not 0 <= idx < len(self.globals):
            raise _err(pos, f"unknown global {idx}")
        return self.globals[idx]

    def elem(self, idx: int, pos: int | None) -> ValType:
        if not 0 <= idx < len(self.elem_types):
            raise _err(pos, f"unknown elem segment {idx}")
        return self.elem_types[idx]

    def data(self, idx: int, pos: int | None) -> None:
        if not 0 <= idx < self.num_datas:
            raise _err(pos, f"unknown data segment {idx}")

    def block_type(self, bt: None | ValType | int, pos: int) -> tuple[tuple[ValType, ...], tuple[ValType, ...]]:
        if bt is None:
            return (), ()
        if isinstance(bt, ValType):
            return (), (bt,)
        ft = self.type_(bt, pos)
        return ft.params, ft.results

    # --- constant expressions ---
    def const_expr(self, expr: ir.Expr, expected: ValType, pos: int | None) -> None:
        """Only t.const, ref.null, ref.func and global.get of an immutable imported global."""
        stack: list[ValType] = []
        for op, imm, ipos in expr:
            if op in _CONST_OPS:
                stack.append(_CONST_OPS[op])
            elif op == REF_NULL:
                stack.append(imm)
            elif op == REF_FUNC:
                self.func_type(imm, ipos)
                stack.append(FUNCREF)
            elif op == GLOBAL_GET:
                if not 0 <= imm < self.num_imported_globals:  # 2.0: imported globals only
                    raise _err(ipos, f"unknown global {imm}")
                g = self.globals[imm]
                if g.mutable:
                    raise _err(ipos, "constant expression required")
                stack.append(g.valtype)
            else:
                raise _err(ipos, "constant expression required")
        if stack != [expected]:
            raise _err(expr[-1][2] if expr else pos, _MISMATCH)


def _check_limits(lim: Limits, bound: int, msg: str, pos: int | None) -> None:
    if lim.min > bound or (lim.max is not None and lim.max > bound):
        raise _err(pos, msg)
    if lim.max is not None and lim.min > lim.max:
        raise _err(pos, "size minimum must not be greater than maximum")


def _check_table_type(t: TableType) -> None:
    _check_limits(t.limits, MAX_TABLE, "table size must be at most 2^32-1", None)


def _check_memory_limits(lim: Limits) -> None:
    _check_limits(lim, MAX_PAGES, "memory size must be at most 65536 pages (4GiB)", None)


def validate(module: ir.Module) -> None:
    """Raise CompileError if `module` is not valid; return None otherwise."""
    gc_was_enabled = gc.isenabled()
    gc.disable()  # control frames are lists: deep nesting would make the cyclic GC rescan them
    try:
        _validate(module)
    except (RecursionError, MemoryError) as e:  # belt and braces: never escape raw
        raise CompileError(None, f"module too complex to validate: {type(e).__name__}") from None
    finally:
        if gc_was_enabled:
            gc.enable()


# Implementation limits (those of the JS API, which wasmtime and browsers apply too): beyond them LLVM
# takes minutes (cubic in the number of results) for a signature nobody writes.
MAX_PARAMS = MAX_RESULTS = 1000


def _validate(m: ir.Module) -> None:
    for ft in m.types:
        if len(ft.params) > MAX_PARAMS or len(ft.results) > MAX_RESULTS:
            raise _err(None, f"function type with {len(ft.params)} params and {len(ft.results)} results: "
                             f"the limit is {MAX_PARAMS} of each")
    c = _Context(m)

    for imp in m.imports:
        if imp.kind is ir.ExternKind.FUNC:
            c.type_(imp.desc, None)
        elif imp.kind is ir.ExternKind.TABLE:
            _check_table_type(imp.desc)
        elif imp.kind is ir.ExternKind.MEMORY:
            _check_memory_limits(imp.desc.limits)
    for f in m.funcs:
        c.type_(f.type_idx, f.offset)
    for g in m.globals:
        c.const_expr(g.init, g.type.valtype, None)
    for t in m.tables:
        _check_table_type(t)
    for mem in m.memories:
        _check_memory_limits(mem.limits)
    for e in m.elems:
        for expr in e.init:
            c.const_expr(expr, e.type, None)
        if e.mode is ir.SegmentMode.ACTIVE:
            if c.table(e.table, None).elem is not e.type:
                raise _err(None, "type mismatch in active element segment")
            c.const_expr(e.offset or [], I32, None)
    for d in m.datas:
        if d.mode is ir.SegmentMode.ACTIVE:
            c.memory(d.memory, None)
            c.const_expr(d.offset or [], I32, None)
    for f in m.funcs:
        _FuncValidator(c, f).run()
    if m.start is not None:
        ft = c.func_type(m.start, None)
        if ft.params or ft.results:
            raise _err(None, "start function must have type [] -> []")
    names: set[str] = set()
    lookup = {ir.ExternKind.FUNC: c.func_type, ir.ExternKind.TABLE: c.table,
              ir.ExternKind.MEMORY: c.memory, ir.ExternKind.GLOBAL: c.global_}
    for ex in m.exports:
        lookup[ex.kind](ex.index, None)
        if ex.name in names:
            raise _err(None, f"duplicate export name {ex.name!r}")
        names.add(ex.name)
    if len(c.mems) > 1:
        raise _err(None, "multiple memories are not allowed")


class _FuncValidator:
    """The spec appendix's algorithm for one function body.

    A control frame is a list [opcode, start types, end types, operand height, unreachable].
    """

    def __init__(self, c: _Context, func: ir.Func) -> None:
        self.c = c
        self.func = func
        self.vals: list[ValType | None] = []
        self.ctrls: list[list] = []
        self.pos = func.offset

    # --- operand stack (the slow paths; the main loop inlines the common cases) ---
    def pop(self, expect: ValType | None = None) -> ValType | None:
        frame = self.ctrls[-1]
        if len(self.vals) == frame[3]:
            if frame[4]:
                return None  # the unknown type, bottom of a polymorphic stack
            raise _err(self.pos, _MISMATCH)
        actual = self.vals.pop()
        if expect is not None and actual is not None and actual is not expect:
            raise _err(self.pos, _MISMATCH)
        return actual

    def pop_vals(self, types: Sequence[ValType]) -> None:
        for t in reversed(types):
            self.pop(t)

    def push_ctrl(self, op: int, start: tuple[ValType, ...], end: tuple[ValType, ...]) -> None:
        self.ctrls.append([op, start, end, len(self.vals), False])
        self.vals.extend(start)

    def pop_ctrl(self) -> list:
        frame = self.ctrls[-1]
        self.pop_vals(frame[2])
        if len(self.vals) != frame[3]:
            raise _err(self.pos, _MISMATCH)
        self.ctrls.pop()
        return frame

    def set_unreachable(self) -> None:
        frame = self.ctrls[-1]
        del self.vals[frame[3]:]
        frame[4] = True

    def need_data_count(self, pos: int) -> None:
        """A binary-format rule (so the decoder's, really), checked here after the index checks so
        that a module converted from text without one still reports what is wrong with it."""
        if self.c.module.data_count is None:
            raise _err(pos, "data count section required")

    def label_types(self, depth: int) -> tuple[ValType, ...]:
        if not 0 <= depth < len(self.ctrls):
            raise _err(self.pos, f"unknown label {depth}")
        frame = self.ctrls[-1 - depth]
        return frame[1] if frame[0] == LOOP else frame[2]

    def run(self) -> None:
        c = self.c
        func = self.func
        ft = c.type_(func.type_idx, func.offset)
        local_types = list(ft.params) + func.locals
        nlocals = len(local_types)
        has_memory = bool(c.mems)
        vals = self.vals
        ctrls = self.ctrls
        pop = self.pop
        plain = _PLAIN
        self.push_ctrl(BLOCK, (), ft.results)
        frame = ctrls[-1]  # the innermost frame, kept in step with ctrls
        for op, imm, pos in func.body:
            self.pos = pos
            if op == LOCAL_GET:  # the most frequent instruction
                if imm >= nlocals:
                    raise _err(pos, f"unknown local {imm}")
                vals.append(local_types[imm])
                continue
            sig = plain.get(op)
            if sig is not None:  # numeric operators and constants, inlined pops
                pops, pushes = sig
                for t in pops:
                    if len(vals) > frame[3]:
                        a = vals.pop()
                        if a is not t and a is not None:
                            raise _err(pos, _MISMATCH)
                    elif not frame[4]:
                        raise _err(pos, _MISMATCH)
                vals.extend(pushes)
            elif op == LOCAL_SET or op == LOCAL_TEE:
                if imm >= nlocals:
                    raise _err(pos, f"unknown local {imm}")
                t = local_types[imm]
                pop(t)
                if op == LOCAL_TEE:
                    vals.append(t)
            elif op in _MEMARG:
                pops, pushes, natural = _MEMARG[op]
                if not has_memory:
                    c.memory(0, pos)
                if imm[0] > natural:
                    raise _err(pos, "alignment must not be larger than natural")
                for t in pops:
                    pop(t)
                vals.extend(pushes)
            elif op in _LANE_OPS:
                pops, pushes, lanes, natural = _LANE_OPS[op]
                lane = imm
                if natural is not None:
                    (align, _), lane = imm
                    if not has_memory:
                        c.memory(0, pos)
                    if align > natural:
                        raise _err(pos, "alignment must not be larger than natural")
                if lane >= lanes:
                    raise _err(pos, "invalid lane index")
                for t in pops:
                    pop(t)
                vals.extend(pushes)
            elif op == I8X16_SHUFFLE:
                if max(imm) >= 32:
                    raise _err(pos, "invalid lane index")
                pop(V128)
                pop(V128)
                vals.append(V128)
            elif op == END:  # pop_ctrl, inlined
                if frame[2]:
                    self.pop_vals(frame[2])
                if len(vals) != frame[3]:
                    raise _err(pos, _MISMATCH)
                ctrls.pop()
                if frame[0] == IF and frame[1] != frame[2]:  # a missing else must map params to results
                    raise _err(pos, _MISMATCH)
                vals.extend(frame[2])
                if not ctrls:
                    break  # the function's own end (the decoder makes it the last instruction)
                frame = ctrls[-1]
            elif op == BLOCK or op == LOOP or op == IF:
                if imm is None and op != IF:  # the common empty block type: push_ctrl, inlined
                    frame = [op, (), (), len(vals), False]
                    ctrls.append(frame)
                    continue
                params, results = c.block_type(imm, pos)
                if op == IF:
                    pop(I32)
                self.pop_vals(params)
                self.push_ctrl(op, params, results)
                frame = ctrls[-1]
            elif op == ELSE:
                if frame[0] != IF:
                    raise _err(pos, "else without if")
                self.pop_ctrl()
                self.push_ctrl(ELSE, frame[1], frame[2])
                frame = ctrls[-1]
            elif op == BR:
                self.pop_vals(self.label_types(imm))
                self.set_unreachable()
            elif op == BR_IF:
                types = self.label_types(imm)
                pop(I32)
                self.pop_vals(types)
                vals.extend(types)
            elif op == CALL:
                ft2 = c.func_type(imm, pos)
                self.pop_vals(ft2.params)
                vals.extend(ft2.results)
            elif op == GLOBAL_GET:
                vals.append(c.global_(imm, pos).valtype)
            elif op == GLOBAL_SET:
                g = c.global_(imm, pos)
                if not g.mutable:
                    raise _err(pos, "global is immutable")
                pop(g.valtype)
            elif op == DROP:
                pop()
            elif op == NOP:
                pass
            elif op == SELECT:
                pop(I32)
                t1 = pop()
                t2 = pop()
                if (t1 is not None and t1.is_ref) or (t2 is not None and t2.is_ref):
                    raise _err(pos, _MISMATCH)  # untyped select is for numeric operands only
                if t1 is not None and t2 is not None and t1 is not t2:
                    raise _err(pos, _MISMATCH)
                vals.append(t1 if t1 is not None else t2)
            elif op == UNREACHABLE:
                self.set_unreachable()
            elif op == RETURN:
                self.pop_vals(ctrls[0][2])
                self.set_unreachable()
            elif op == BR_TABLE:
                labels, default = imm
                pop(I32)
                default_types = self.label_types(default)
                arity = len(default_types)
                for depth in labels:
                    types = self.label_types(depth)
                    if len(types) != arity:
                        raise _err(pos, _MISMATCH)
                    # pop then push back: checks the operands against every target's types
                    popped = [pop(t) for t in reversed(types)]
                    vals.extend(reversed(popped))
                self.pop_vals(default_types)
                self.set_unreachable()
            elif op == CALL_INDIRECT:
                ti, tab = imm
                if c.table(tab, pos).elem is not FUNCREF:
                    raise _err(pos, _MISMATCH)
                ft2 = c.type_(ti, pos)
                pop(I32)
                self.pop_vals(ft2.params)
                vals.extend(ft2.results)
            elif op == SELECT_T:
                if len(imm) != 1:
                    raise _err(pos, "invalid result arity")
                t = imm[0]
                pop(I32)
                pop(t)
                pop(t)
                vals.append(t)
            elif op == REF_NULL:
                vals.append(imm)
            elif op == REF_IS_NULL:
                t = pop()
                if t is not None and not t.is_ref:
                    raise _err(pos, _MISMATCH)
                vals.append(I32)
            elif op == REF_FUNC:
                c.func_type(imm, pos)
                if imm not in c.refs:
                    raise _err(pos, f"undeclared function reference {imm}")
                vals.append(FUNCREF)
            else:
                self.other(op, imm, pos)
        if ctrls:  # only a hand-built body can lack its final end: the decoder insists on it
            raise _err(self.pos, "END opcode expected")

    def other(self, op: int, imm: object, pos: int) -> None:
        """Table, memory and bulk instructions: rarer, so kept out of the main loop."""
        c = self.c
        pop, vals = self.pop, self.vals
        if op == MEMORY_SIZE:
            c.memory(0, pos)
            vals.append(I32)
        elif op == MEMORY_GROW:
            c.memory(0, pos)
            pop(I32)
            vals.append(I32)
        elif op == MEMORY_FILL or op == MEMORY_COPY:
            c.memory(0, pos)
            pop(I32), pop(I32), pop(I32)
        elif op == MEMORY_INIT:
            data_idx, mem = imm  # type: ignore[misc]
            c.memory(mem, pos)
            c.data(data_idx, pos)
            self.need_data_count(pos)
            pop(I32), pop(I32), pop(I32)
        elif op == DATA_DROP:
            c.data(imm, pos)  # type: ignore[arg-type]
            self.need_data_count(pos)
        elif op == TABLE_GET:
            t = c.table(imm, pos).elem  # type: ignore[arg-type]
            pop(I32)
            vals.append(t)
        elif op == TABLE_SET:
            t = c.table(imm, pos).elem  # type: ignore[arg-type]
            pop(t)
            pop(I32)
        elif op == TABLE_SIZE:
            c.table(imm, pos)  # type: ignore[arg-type]
            vals.append(I32)
        elif op == TABLE_GROW:
            t = c.table(imm, pos).elem  # type: ignore[arg-type]
            pop(I32)
            pop(t)
            vals.append(I32)
        elif op == TABLE_FILL:
            t = c.table(imm, pos).elem  # type: ignore[arg-type]
            pop(I32)
            pop(t)
            pop(I32)
        elif op == TABLE_COPY:
            dst, src = imm  # type: ignore[misc]
            if c.table(dst, pos).elem is not c.table(src, pos).elem:
                raise _err(pos, _MISMATCH)
            pop(I32), pop(I32), pop(I32)
        elif op == TABLE_INIT:
            elem_idx, tab = imm  # type: ignore[misc]
            t = c.table(tab, pos).elem
            if c.elem(elem_idx, pos) is not t:
                raise _err(pos, _MISMATCH)
            pop(I32), pop(I32), pop(I32)
        elif op == ELEM_DROP:
            c.elem(imm, pos)  # type: ignore[arg-type]
        else:
            raise _err(pos, f"unknown instruction {op:#x}")


def declared_refs(m: ir.Module) -> set[int]:
    """C.refs: functions referenced outside function bodies (elems, globals, exports, data), the only
    ones a ref.func may name: with the start function, all that can ever become a funcref."""
    refs = {e.index for e in m.exports if e.kind is ir.ExternKind.FUNC}
    exprs: list[ir.Expr] = [g.init for g in m.globals]
    for e in m.elems:
        exprs.extend(e.init)
        if e.offset is not None:
            exprs.append(e.offset)
    exprs.extend(d.offset for d in m.datas if d.offset is not None)
    for expr in exprs:
        refs.update(imm for op, imm, _ in expr if op == REF_FUNC)
    return refs
