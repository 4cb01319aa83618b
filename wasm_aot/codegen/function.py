"""Lowering of one wasm function body to LLVM IR.

The wasm operand stack becomes a Python list of LLVM values. Block results, loop parameters and
locals live in allocas that mem2reg/SROA turn into SSA values, which keeps branches simple: a
branch stores the values its target expects, then jumps. Code after an unconditional branch is
dead: it is skipped (only its block structure is followed) until the enclosing `end` or `else`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from llvmlite import ir as ll

from .. import abi, opcodes as op
from ..errors import TrapCode
from ..ir import Func
from ..types import FuncType, ValType
from .layout import (F32, F64, I1, I8, I32, I64, PTR, RT, RT_FNTYPE, STRUCT, VALTYPE, Callee,
                     pack_results, unpack_results, wasm_fntype, zero)
from .numeric import NUMERIC
from .simd import SIMD, SIMD_IMM, quiet_nans

if TYPE_CHECKING:
    from .module import ModuleCodegen

CTX = STRUCT["wa_ctx"]
# consumes the value that keeps loads alive (FuncCodegen.keep): a comment, with side effects
_KEEP_ASM = {t: ll.InlineAsm(ll.FunctionType(ll.VoidType(), [t]), "# wa: keep $0",
                             "x" if t in (F32, F64, VALTYPE[ValType.V128]) else "r", side_effect=True)
             for t in (I8, ll.IntType(16), I32, I64, F32, F64, VALTYPE[ValType.V128])}
# The bits of a signalling-NaN constant, through an empty asm: LLVM cannot see that the value is a
# NaN, so it cannot fold an operation on it (constant folding passes a signalling NaN through
# unquieted), whether the constant is its operand or inlining or a local carries it there; the CPU
# computes the quiet NaN. (A quiet NaN constant folds to itself: an arithmetic NaN, as wasm wants.)
_OPAQUE_ASM = {t: ll.InlineAsm(ll.FunctionType(t, [t]), "", "=r,0") for t in (I32, I64)}
_OPAQUE_ASM[VALTYPE[ValType.V128]] = ll.InlineAsm(ll.FunctionType(VALTYPE[ValType.V128], [VALTYPE[ValType.V128]]),
                                                  "", "=x,0")
FUNCREF = STRUCT["wa_funcref"]
TABLE = STRUCT["wa_table"]
MEMORY = STRUCT["wa_memory"]


class Frame:
    __slots__ = ("kind", "params", "results", "target", "end_bb", "else_bb", "height", "slots",
                 "param_slots", "used", "else_args")

    def __init__(self, kind: str, params: tuple, results: tuple, height: int) -> None:
        self.kind, self.params, self.results, self.height = kind, params, results, height
        self.used = False  # some branch reaches end_bb
        self.else_bb = None
        self.else_args: list = []
        self.param_slots: list = []
        self.slots: list = []

    @property
    def branch_types(self) -> tuple:
        return self.params if self.kind == "loop" else self.results

    @property
    def branch_slots(self) -> list:
        return self.param_slots if self.kind == "loop" else self.slots


class FuncCodegen:
    def __init__(self, mc: "ModuleCodegen", index: int, func: Func) -> None:
        self.mc = mc
        self.index = index
        self.func = func
        self.ftype: FuncType = mc.wasm.types[func.type_idx]
        self.fn: ll.Function = mc.funcs[index]
        self.entry = self.fn.append_basic_block("entry")
        self.b = ll.IRBuilder(self.entry)
        self.ctx = self.fn.args[0]
        self.stack: list[ll.Value] = []
        self.frames: list[Frame] = []
        self.trap_blocks: dict[TrapCode, ll.Block] = {}
        self.dead = False
        self.skip = 0  # nesting depth of blocks being skipped in dead code
        self.rt: ll.Value | None = None
        self.fidentities: set[int] = set()  # ids of f32/f64.consts LLVM may fold away: ±0, ±1
        self.promotes: set[int] = set()  # ids of f64.promote_f32 results
        self.known_block: ll.Block | None = None  # see known_locals
        self.known: dict[int, ll.Value] = {}

    # ---- helpers used by numeric.py (its Fx interface) and below ----

    def intrinsic(self, name: str, ret: ll.Type, args: list[ll.Type]) -> ll.Function:
        return self.mc.intrinsic(name, ret, args)

    def trap_if(self, cond: ll.Value, code: TrapCode) -> None:
        cont = self.fn.append_basic_block()
        br = self.b.cbranch(cond, self.trap_block(code), cont)
        br.set_weights([1, 1 << 20])
        self.b.position_at_end(cont)

    def trap_block(self, code: TrapCode) -> ll.Block:
        bb = self.trap_blocks.get(code)
        if bb is None:
            bb = self.trap_blocks[code] = self.fn.append_basic_block(f"trap.{code.name.lower()}")
            here = self.b.block
            self.b.position_at_end(bb)
            self.call_rt("trap", [ll.Constant(I32, int(code))]).attributes.add("noreturn")
            self.b.unreachable()
            self.b.position_at_end(here)
        return bb

    def keep(self, v: ll.Value) -> None:
        """Make the load of v run even if v turns out unused: with guard pages, an out-of-bounds load
        traps only by running, and LLVM deletes loads whose value is dead (through arithmetic, a
        select, an unread local...). An asm comment with side effects takes v, so LLVM must load it;
        memory(none) (when optimising) still lets it move and merge memory accesses around it.
        Measured on bench/: geomean 1.00 -> 1.03x native, stencil 1.00 -> 1.36 (a call in a loop
        stops its vectorisation); folding the values into accumulators instead cost more (matmul,
        nbody 1.15x: scalar FP loops pay for the extra dependency). At -O0, FastISel drops an asm call
        that writes no memory and has no users: there it keeps the default, may-write-memory."""
        call = self.b.call(_KEEP_ASM[v.type], [v])
        call.attributes.add("nounwind")
        if self.mc.opt_level > 0:
            call.attributes.add("readnone")

    def ctx_field(self, name: str, ty: ll.Type, ctx: ll.Value | None = None) -> ll.Value:
        p = self.b.gep(ctx if ctx is not None else self.ctx,
                       [ll.Constant(I32, 0), ll.Constant(I32, abi.field_index("wa_ctx", name))],
                       inbounds=True, source_etype=CTX)
        ld = self.b.load(p, typ=ty)
        ld.set_metadata("tbaa", self.mc.tbaa["vm"])
        return ld

    def field_ptr(self, struct: str, base: ll.Value, name: str) -> ll.Value:
        return self.b.gep(base, [ll.Constant(I32, 0), ll.Constant(I32, abi.field_index(struct, name))],
                          inbounds=True, source_etype=STRUCT[struct])

    def call_rt(self, name: str, args: list[ll.Value]) -> ll.Instruction:
        if self.rt is None:
            # loaded in the entry block so every helper call shares it
            here = self.b.block
            self.b.position_at_start(self.entry)
            self.rt = self.ctx_field("rt", PTR)
            self.b.position_at_end(here)
        fp = self.b.load(self.b.gep(self.rt, [ll.Constant(I32, 0), ll.Constant(I32, abi.rt_index(name))],
                                    inbounds=True, source_etype=RT), typ=PTR)
        return self.b.call(Callee(fp, RT_FNTYPE[name]), [self.ctx] + args)

    def pop(self, n: int) -> list[ll.Value]:
        if n == 0:
            return []
        vals = self.stack[-n:]
        del self.stack[-n:]
        return vals

    # ---- the body ----

    def lower(self) -> None:
        b = self.b
        ft = self.ftype
        self.locals: list[tuple[ll.Value, ll.Type]] = []
        for i, t in enumerate(ft.params):
            a = b.alloca(VALTYPE[t])
            b.store(self.fn.args[i + 1], a)
            self.locals.append((a, VALTYPE[t]))
        for t in self.func.locals:
            a = b.alloca(VALTYPE[t])
            b.store(self.local_zero(t), a)
            self.locals.append((a, VALTYPE[t]))
        self.mem_base = self.ctx_field("mem0_base", PTR) if self.mc.has_memory else None
        if self.mc.needs_stack_check(self.func):
            self.stack_check()
        top = Frame("func", (), ft.results, 0)
        top.slots = [self.alloca(t) for t in ft.results]  # in the entry block, where SROA looks
        top.end_bb = self.fn.append_basic_block("return")
        self.frames.append(top)
        lower = LOWER
        for instr in self.func.body:
            opc = instr[0]
            if self.dead:
                self.skip_dead(opc)
                continue
            lower[opc](self, instr[1])
        # the final `end` positioned us in the return block
        vals = [b.load(s) for s in top.slots]
        if not vals:
            b.ret_void()
        elif len(vals) == 1:
            b.ret(vals[0])
        else:
            b.ret(pack_results(b, vals, ft))

    def stack_check(self) -> None:
        fa = self.intrinsic("llvm.frameaddress.p0", PTR, [I32])
        sp = self.b.ptrtoint(self.b.call(fa, [ll.Constant(I32, 0)]), I64)
        # the running thread's limit: thread pointer + an offset the runtime put in the ctx
        tp = self.b.call(self.intrinsic("llvm.thread.pointer.p0", PTR, []), [])
        at = self.b.gep(tp, [self.ctx_field("stack_limit_tls", I64)], source_etype=I8)
        limit = self.b.load(at, typ=I64)
        limit.set_metadata("tbaa", self.mc.tbaa["vm"])
        self.trap_if(self.b.icmp_unsigned("<", sp, limit), TrapCode.STACK_OVERFLOW)

    def skip_dead(self, opc: int) -> None:
        if opc in (op.BLOCK, op.LOOP, op.IF):
            self.skip += 1
        elif opc == op.END:
            if self.skip:
                self.skip -= 1
            else:
                self.end(None)
        elif opc == op.ELSE and not self.skip:
            self.else_(None)

    def kill(self) -> None:
        """The rest of the current block is unreachable."""
        self.dead = True
        self.skip = 0

    # ---- control ----

    def block_type(self, bt) -> tuple[tuple, tuple]:
        if bt is None:
            return (), ()
        if isinstance(bt, ValType):
            return (), (bt,)
        t = self.mc.wasm.types[bt]
        return t.params, t.results

    def push_frame(self, kind: str, bt) -> Frame:
        params, results = self.block_type(bt)
        f = Frame(kind, params, results, len(self.stack) - len(params))
        f.slots = [self.alloca(t) for t in results]
        self.frames.append(f)
        return f

    def alloca(self, t: ValType) -> ll.Value:
        here = self.b.block
        self.b.position_at_start(self.entry)
        a = self.b.alloca(VALTYPE[t])
        self.b.position_at_end(here)
        return a

    def block(self, bt) -> None:
        f = self.push_frame("block", bt)
        f.end_bb = self.fn.append_basic_block("block.end")

    def loop(self, bt) -> None:
        f = self.push_frame("loop", bt)
        f.param_slots = [self.alloca(t) for t in f.params]
        f.target = self.fn.append_basic_block("loop")
        f.end_bb = None
        for v, s in zip(self.pop(len(f.params)), f.param_slots):
            self.b.store(v, s)
        self.b.branch(f.target)
        self.b.position_at_end(f.target)
        self.stack += [self.b.load(s) for s in f.param_slots]

    def if_(self, bt) -> None:
        cond = self.stack.pop()
        f = self.push_frame("if", bt)
        f.else_args = self.stack[len(self.stack) - len(f.params):] if f.params else []
        then_bb = self.fn.append_basic_block("if.then")
        f.else_bb = self.fn.append_basic_block("if.else")
        f.end_bb = self.fn.append_basic_block("if.end")
        self.b.cbranch(self.truth(cond), then_bb, f.else_bb)
        self.b.position_at_end(then_bb)

    def fallthrough(self, f: Frame) -> None:
        """Leave frame f at its end with the values on the stack."""
        if not self.dead:
            for v, s in zip(self.pop(len(f.results)), f.slots):
                self.b.store(v, s)
            self.b.branch(f.end_bb)
            f.used = True

    def else_(self, _imm) -> None:
        f = self.frames[-1]
        self.fallthrough(f)
        del self.stack[f.height:]
        self.b.position_at_end(f.else_bb)
        f.else_bb = None
        self.stack += f.else_args
        self.dead = False
        self.skip = 0

    def end(self, _imm) -> None:
        f = self.frames.pop()
        if f.kind == "loop":
            if self.dead:
                del self.stack[f.height:]
                self.frames and self.kill()
            return
        self.fallthrough(f)
        if f.else_bb is not None:  # an `if` without `else`: its params become its results
            self.b.position_at_end(f.else_bb)
            for v, s in zip(f.else_args, f.slots):
                self.b.store(v, s)
            self.b.branch(f.end_bb)
            f.used = True
        del self.stack[f.height:]
        self.b.position_at_end(f.end_bb)
        if f.kind == "func":
            self.dead = False
            return
        if f.used:
            self.stack += [self.b.load(s) for s in f.slots]
            self.dead = False
        else:
            self.b.unreachable()
            self.kill()

    def branch_to(self, depth: int) -> None:
        """Store what label `depth` expects (the stack keeps its values) and jump there."""
        f = self.frames[-1 - depth]
        n = len(f.branch_types)
        if n:
            for v, s in zip(self.stack[-n:], f.branch_slots):
                self.b.store(v, s)
        if f.kind == "loop":
            self.b.branch(f.target)
        else:
            f.used = True
            self.b.branch(f.end_bb)

    def br(self, depth: int) -> None:
        self.branch_to(depth)
        self.kill()

    def truth(self, v: ll.Value) -> ll.Value:
        """An i32 condition as i1: a comparison's own i1 when v just widened it (no icmp on a zext)."""
        if isinstance(v, ll.CastInstr) and v.opname == "zext" and v.operands[0].type == I1:
            return v.operands[0]
        return self.b.icmp_unsigned("!=", v, ll.Constant(I32, 0))

    def br_if(self, depth: int) -> None:
        cond = self.truth(self.stack.pop())
        cont = self.fn.append_basic_block("br_if.cont")
        f = self.frames[-1 - depth]
        if not f.branch_types:  # nothing to store on the way: branch straight to the label
            if f.kind == "loop":
                self.b.cbranch(cond, f.target, cont)
            else:
                f.used = True
                self.b.cbranch(cond, f.end_bb, cont)
        else:
            taken = self.fn.append_basic_block("br_if.taken")
            self.b.cbranch(cond, taken, cont)
            self.b.position_at_end(taken)
            self.branch_to(depth)
        self.b.position_at_end(cont)

    def br_table(self, imm) -> None:
        labels, default = imm
        idx = self.stack.pop()
        here = self.b.block
        targets: dict[int, ll.Block] = {}
        for d in set(labels) | {default}:
            targets[d] = self.fn.append_basic_block(f"br_table.{d}")
            self.b.position_at_end(targets[d])
            self.branch_to(d)
        self.b.position_at_end(here)
        sw = self.b.switch(idx, targets[default])
        for i, d in enumerate(labels):
            if d != default:
                sw.add_case(ll.Constant(I32, i), targets[d])
        self.kill()

    def return_(self, _imm) -> None:
        self.br(len(self.frames) - 1)

    def unreachable(self, _imm) -> None:
        self.b.branch(self.trap_block(TrapCode.UNREACHABLE))
        self.kill()

    def nop(self, _imm) -> None:
        pass

    # ---- calls ----

    def call(self, fidx: int) -> None:
        mc = self.mc
        ft = mc.wasm.types[mc.func_types[fidx]]
        args = self.pop(len(ft.params))
        if fidx >= mc.num_imported_funcs:
            # notail: tail-call elimination would turn unbounded recursion into a loop that never
            # exhausts the stack (the spec wants "call stack exhausted")
            self.push_results(self.b.call(mc.funcs[fidx], [self.ctx] + args, tail="notail"), ft)
        else:
            fr = self.b.gep(self.ctx_field("funcs", PTR), [ll.Constant(I32, fidx)], inbounds=True,
                            source_etype=FUNCREF)
            self.call_funcref(fr, ft, args)

    def call_funcref(self, fr: ll.Value, ft: FuncType, args: list[ll.Value]) -> None:
        code = self.b.load(self.field_ptr("wa_funcref", fr, "code"), typ=PTR)
        callee_ctx = self.b.load(self.field_ptr("wa_funcref", fr, "ctx"), typ=PTR)
        self.push_results(self.b.call(Callee(code, wasm_fntype(ft)), [callee_ctx] + args, tail="notail"), ft)

    def push_results(self, r: ll.Value, ft: FuncType) -> None:
        self.stack += unpack_results(self.b, r, ft)

    def call_indirect(self, imm) -> None:
        tidx, table = imm
        ft = self.mc.wasm.types[tidx]
        i = self.stack.pop()
        args = self.pop(len(ft.params))
        tab = self.table_ptr(table)
        size = self.load_table_size(tab)
        self.trap_if(self.b.icmp_unsigned(">=", i, size), TrapCode.TABLE_OUT_OF_BOUNDS)
        elems = self.b.load(self.field_ptr("wa_table", tab, "elems"), typ=PTR)
        fr = self.b.load(self.b.gep(elems, [self.b.zext(i, I64)], inbounds=True, source_etype=PTR), typ=PTR)
        self.trap_if(self.b.icmp_unsigned("==", fr, ll.Constant(PTR, None)), TrapCode.UNINITIALIZED_ELEMENT)
        tid = self.b.load(self.field_ptr("wa_funcref", fr, "type_id"), typ=I32)
        want = self.b.load(self.b.gep(self.ctx_field("type_ids", PTR), [ll.Constant(I32, tidx)],
                                      inbounds=True, source_etype=I32), typ=I32)
        self.trap_if(self.b.icmp_unsigned("!=", tid, want), TrapCode.INDIRECT_CALL_TYPE_MISMATCH)
        self.call_funcref(fr, ft, args)

    # ---- parametric, variables ----

    def drop(self, _imm) -> None:
        self.stack.pop()  # a dropped load still runs (see keep)

    def select(self, _imm) -> None:
        a, b_, c = self.pop(3)
        self.stack.append(self.b.select(self.truth(c), a, b_))

    def known_locals(self) -> dict[int, ll.Value]:
        """The values of locals already loaded or stored in the current basic block: reused rather
        than loaded again (less IR to build, print, parse and clean up; mem2reg would find the same)."""
        if self.b.block is not self.known_block:
            self.known_block = self.b.block
            self.known = {}
        return self.known

    def local_get(self, i: int) -> None:
        known = self.known_locals()
        v = known.get(i)
        if v is None:
            a, t = self.locals[i]
            v = known[i] = self.b.load(a, typ=t)
        self.stack.append(v)

    def local_set(self, i: int) -> None:
        v = self.stack.pop()
        self.b.store(v, self.locals[i][0])
        self.known_locals()[i] = v

    def local_tee(self, i: int) -> None:
        self.b.store(self.stack[-1], self.locals[i][0])
        self.known_locals()[i] = self.stack[-1]

    def global_slot(self, i: int) -> ll.Value:
        slots = self.ctx_field("globals", PTR)
        ld = self.b.load(self.b.gep(slots, [ll.Constant(I32, i)], inbounds=True, source_etype=PTR), typ=PTR)
        ld.set_metadata("tbaa", self.mc.tbaa["vm"])
        return ld

    def global_get(self, i: int) -> None:
        t = VALTYPE[self.mc.global_types[i].valtype]
        ld = self.b.load(self.global_slot(i), typ=t)
        ld.set_metadata("tbaa", self.mc.tbaa["global"])
        self.stack.append(ld)

    def global_set(self, i: int) -> None:
        self.b.store(self.stack.pop(), self.global_slot(i)).set_metadata("tbaa", self.mc.tbaa["global"])

    # ---- memory ----

    def address(self, addr: ll.Value, offset: int, width: int) -> ll.Value:
        """The native address of a `width`-byte access at wasm address addr+offset."""
        ea = self.b.zext(addr, I64)
        if offset:
            ea = self.b.add(ea, ll.Constant(I64, offset), flags=["nuw"])
        if self.mc.bounds_checks:
            size = self.b.load(self.field_ptr("wa_memory", self.ctx_field("mem0", PTR), "size"), typ=I64)
            end = self.b.add(ea, ll.Constant(I64, width), flags=["nuw"])
            self.trap_if(self.b.icmp_unsigned(">", end, size), TrapCode.MEMORY_OUT_OF_BOUNDS)
        return self.b.gep(self.mem_base, [ea], inbounds=True, source_etype=I8)

    def memory_size(self, _imm) -> None:
        size = self.b.load(self.field_ptr("wa_memory", self.ctx_field("mem0", PTR), "size"), typ=I64)
        self.stack.append(self.b.trunc(self.b.lshr(size, ll.Constant(I64, 16)), I32))

    def memory_grow(self, _imm) -> None:
        self.stack.append(self.call_rt("memory_grow", [self.stack.pop()]))

    def memory_fill(self, _imm) -> None:
        self.call_rt("memory_fill", self.pop(3))

    def memory_copy(self, _imm) -> None:
        self.call_rt("memory_copy", self.pop(3))

    def memory_init(self, imm) -> None:
        self.call_rt("memory_init", [ll.Constant(I32, imm[0])] + self.pop(3))

    def data_drop(self, seg: int) -> None:
        self.call_rt("data_drop", [ll.Constant(I32, seg)])

    # ---- constants ----

    def i32_const(self, v: int) -> None:
        self.stack.append(ll.Constant(I32, v & 0xFFFFFFFF))

    def i64_const(self, v: int) -> None:
        self.stack.append(ll.Constant(I64, v & 0xFFFFFFFFFFFFFFFF))

    def f32_const(self, bits: int) -> None:
        self.float_const(F32, I32, bits, 23)

    def f64_const(self, bits: int) -> None:
        self.float_const(F64, I64, bits, 52)

    def float_const(self, t: ll.Type, it: ll.Type, bits: int, mant: int) -> None:
        magnitude = bits & (1 << (it.width - 1)) - 1
        nan = magnitude >> mant == (1 << (it.width - 1 - mant)) - 1 and magnitude & (1 << mant) - 1
        c: ll.Value = ll.Constant(it, bits)
        if nan and not bits >> (mant - 1) & 1:  # signalling
            c = self.b.call(_OPAQUE_ASM[it], [c])
        self.stack.append(self.b.bitcast(c, t))
        if magnitude in (0, (1 << (it.width - 2)) - (1 << mant)):  # ±0, ±1
            self.fidentities.add(id(self.stack[-1]))

    def local_zero(self, t: ValType) -> ll.Value:
        """A local's initial zero. A float one is opaque when optimising: LLVM would otherwise fold
        `x - local` (or +, *, /, min, max with an identity) of a local never set to x itself, leaving a
        signalling NaN x unquieted (the differential fuzzer found it)."""
        if self.mc.opt_level <= 0 or t not in (ValType.F32, ValType.F64, ValType.V128):
            return zero(t)
        if t is ValType.V128:
            return self.b.call(_OPAQUE_ASM[VALTYPE[t]], [zero(t)])
        it = I32 if t is ValType.F32 else I64
        return self.b.bitcast(self.b.call(_OPAQUE_ASM[it], [ll.Constant(it, 0)]), VALTYPE[t])

    def opaque_asm(self, t: ll.Type) -> ll.InlineAsm:
        return _OPAQUE_ASM[t]

    def canonicalize(self, v: ll.Value, shape: str | None = None) -> ll.Value:
        """v with a NaN quieted (`shape`: a v128 seen as f32x4 or f64x2 lanes)."""
        if shape is not None:
            return quiet_nans(self, v, shape)
        return self.b.call(self.intrinsic(f"llvm.canonicalize.{'f32' if v.type == F32 else 'f64'}",
                                          v.type, [v.type]), [v])

    # ---- references and tables ----

    def ref_null(self, _t) -> None:
        self.stack.append(ll.Constant(PTR, None))

    def ref_is_null(self, _imm) -> None:
        self.stack.append(self.b.zext(self.b.icmp_unsigned("==", self.stack.pop(), ll.Constant(PTR, None)), I32))

    def ref_func(self, fidx: int) -> None:
        self.stack.append(self.b.gep(self.ctx_field("funcs", PTR), [ll.Constant(I32, fidx)], inbounds=True,
                                     source_etype=FUNCREF))

    def table_ptr(self, t: int) -> ll.Value:
        tables = self.ctx_field("tables", PTR)
        return self.b.load(self.b.gep(tables, [ll.Constant(I32, t)], inbounds=True, source_etype=PTR), typ=PTR)

    def load_table_size(self, tab: ll.Value) -> ll.Value:
        """A table's size, loaded with acquire: the element array a grow in another thread published
        before it is then the one read (runtime.c keeps replaced arrays alive, never shorter than
        the size they went with)."""
        return self.b.load_atomic(self.field_ptr("wa_table", tab, "size"), "acquire", 4, typ=I32)

    def table_elem(self, t: int, i: ll.Value) -> ll.Value:
        tab = self.table_ptr(t)
        size = self.load_table_size(tab)
        self.trap_if(self.b.icmp_unsigned(">=", i, size), TrapCode.TABLE_ACCESS_OUT_OF_BOUNDS)
        elems = self.b.load(self.field_ptr("wa_table", tab, "elems"), typ=PTR)
        return self.b.gep(elems, [self.b.zext(i, I64)], inbounds=True, source_etype=PTR)

    def table_get(self, t: int) -> None:
        self.stack.append(self.b.load(self.table_elem(t, self.stack.pop()), typ=PTR))

    def table_set(self, t: int) -> None:
        i, v = self.pop(2)
        self.b.store(v, self.table_elem(t, i))

    def table_size(self, t: int) -> None:
        self.stack.append(self.b.load(self.field_ptr("wa_table", self.table_ptr(t), "size"), typ=I32))

    def table_grow(self, t: int) -> None:
        init, n = self.pop(2)
        self.stack.append(self.call_rt("table_grow", [ll.Constant(I32, t), init, n]))

    def table_fill(self, t: int) -> None:
        d, v, n = self.pop(3)
        self.call_rt("table_fill", [ll.Constant(I32, t), d, v, n])

    def table_copy(self, imm) -> None:
        self.call_rt("table_copy", [ll.Constant(I32, imm[0]), ll.Constant(I32, imm[1])] + self.pop(3))

    def table_init(self, imm) -> None:
        seg, t = imm
        self.call_rt("table_init", [ll.Constant(I32, t), ll.Constant(I32, seg)] + self.pop(3))

    def elem_drop(self, seg: int) -> None:
        self.call_rt("elem_drop", [ll.Constant(I32, seg)])


# ---- loads and stores: (LLVM type in memory, width, extension to the wasm type) ----

def _load(mem_t: ll.Type, width: int, ext: str | None, to: ll.Type) -> Callable:
    def lower(fc: FuncCodegen, imm) -> None:
        p = fc.address(fc.stack.pop(), imm[1], width)
        load = v = fc.b.load(p, typ=mem_t, align=1)
        load.set_metadata("tbaa", fc.mc.tbaa["memory"])
        if not fc.mc.bounds_checks:
            fc.keep(load)
        if ext == "s":
            v = fc.b.sext(v, to)
        elif ext == "u":
            v = fc.b.zext(v, to)
        fc.stack.append(v)
    return lower


def _store(mem_t: ll.Type, width: int, wrap: bool) -> Callable:
    def lower(fc: FuncCodegen, imm) -> None:
        addr, v = fc.pop(2)
        if wrap:
            v = fc.b.trunc(v, mem_t)
        fc.b.store(v, fc.address(addr, imm[1], width), align=1).set_metadata("tbaa", fc.mc.tbaa["memory"])
    return lower


I16 = ll.IntType(16)
_MEMORY_OPS = {
    "i32.load": _load(I32, 4, None, I32), "i64.load": _load(I64, 8, None, I64),
    "f32.load": _load(F32, 4, None, F32), "f64.load": _load(F64, 8, None, F64),
    "i32.load8_s": _load(I8, 1, "s", I32), "i32.load8_u": _load(I8, 1, "u", I32),
    "i32.load16_s": _load(I16, 2, "s", I32), "i32.load16_u": _load(I16, 2, "u", I32),
    "i64.load8_s": _load(I8, 1, "s", I64), "i64.load8_u": _load(I8, 1, "u", I64),
    "i64.load16_s": _load(I16, 2, "s", I64), "i64.load16_u": _load(I16, 2, "u", I64),
    "i64.load32_s": _load(I32, 4, "s", I64), "i64.load32_u": _load(I32, 4, "u", I64),
    "i32.store": _store(I32, 4, False), "i64.store": _store(I64, 8, False),
    "f32.store": _store(F32, 4, False), "f64.store": _store(F64, 8, False),
    "i32.store8": _store(I8, 1, True), "i32.store16": _store(I16, 2, True),
    "i64.store8": _store(I8, 1, True), "i64.store16": _store(I16, 2, True), "i64.store32": _store(I32, 4, True),
}


def _build_table() -> dict[int, Callable]:
    by_name: dict[str, Callable] = {
        "unreachable": FuncCodegen.unreachable, "nop": FuncCodegen.nop, "block": FuncCodegen.block,
        "loop": FuncCodegen.loop, "if": FuncCodegen.if_, "else": FuncCodegen.else_, "end": FuncCodegen.end,
        "br": FuncCodegen.br, "br_if": FuncCodegen.br_if, "br_table": FuncCodegen.br_table,
        "return": FuncCodegen.return_, "call": FuncCodegen.call, "call_indirect": FuncCodegen.call_indirect,
        "drop": FuncCodegen.drop, "select": FuncCodegen.select, "select_t": FuncCodegen.select,
        "local.get": FuncCodegen.local_get, "local.set": FuncCodegen.local_set,
        "local.tee": FuncCodegen.local_tee, "global.get": FuncCodegen.global_get,
        "global.set": FuncCodegen.global_set, "table.get": FuncCodegen.table_get,
        "table.set": FuncCodegen.table_set, "memory.size": FuncCodegen.memory_size,
        "memory.grow": FuncCodegen.memory_grow, "i32.const": FuncCodegen.i32_const,
        "i64.const": FuncCodegen.i64_const, "f32.const": FuncCodegen.f32_const,
        "f64.const": FuncCodegen.f64_const, "ref.null": FuncCodegen.ref_null,
        "ref.is_null": FuncCodegen.ref_is_null, "ref.func": FuncCodegen.ref_func,
        "memory.init": FuncCodegen.memory_init, "data.drop": FuncCodegen.data_drop,
        "memory.copy": FuncCodegen.memory_copy, "memory.fill": FuncCodegen.memory_fill,
        "table.init": FuncCodegen.table_init, "elem.drop": FuncCodegen.elem_drop,
        "table.copy": FuncCodegen.table_copy, "table.grow": FuncCodegen.table_grow,
        "table.size": FuncCodegen.table_size, "table.fill": FuncCodegen.table_fill,
    }
    by_name.update(_MEMORY_OPS)
    by_name.update(SIMD_IMM)
    table: dict[int, Callable] = {}
    for code, name in op.NAME.items():
        if name in by_name:
            table[code] = by_name[name]
        elif name in _GUARDED:
            table[code] = _GUARDED[name](NUMERIC[name] if name in NUMERIC else SIMD[name])
        elif name in NUMERIC:
            table[code] = _numeric_lowering(NUMERIC[name], len(op.SIG[code][0]))
        elif name in SIMD:
            table[code] = _numeric_lowering(SIMD[name], len(op.SIG[code][0]))
        else:
            raise AssertionError(f"no lowering for {name}")
    return table


def _numeric_lowering(f: Callable, arity: int) -> Callable:
    def lower(fc: FuncCodegen, _imm) -> None:
        fc.stack.append(f(fc, fc.pop(arity)))
    return lower


# LLVM folds x-0, x*1, x/1, x*-1, -0-x, demote(promote x) to x or -x, which lets a signalling NaN
# through unquieted; wasm wants a quiet NaN. Quieting every result would cost a multiply per
# operation, so only these shapes (an operand that is a wasm constant ±0 or ±1) are canonicalized.
def _guard_const_fold(f: Callable, identity_first: bool = True, shape: str | None = None) -> Callable:
    """identity_first: whether a ±0/±1 first operand can fold (not for div: 1/x is no identity);
    shape: of a SIMD operator's lanes (its constants are v128.consts with such a lane)."""
    def lower(fc: FuncCodegen, _imm) -> None:
        args = fc.pop(2)
        r = f(fc, args)
        if id(args[1]) in fc.fidentities or (identity_first and id(args[0]) in fc.fidentities):
            r = fc.canonicalize(r, shape)
        fc.stack.append(r)
    return lower


def _guard_demote(f: Callable, shape: str | None = None) -> Callable:
    def lower(fc: FuncCodegen, _imm) -> None:
        a = fc.stack.pop()
        r = f(fc, [a])
        fc.stack.append(fc.canonicalize(r, shape) if id(a) in fc.promotes else r)
    return lower


def _mark_splat(f: Callable) -> Callable:
    """The splat of a ±0/±1 float constant is a v128 identity constant too."""
    def lower(fc: FuncCodegen, _imm) -> None:
        a = fc.stack.pop()
        fc.stack.append(f(fc, [a]))
        if id(a) in fc.fidentities:
            fc.fidentities.add(id(fc.stack[-1]))
    return lower


def _mark_promote(f: Callable) -> Callable:
    def lower(fc: FuncCodegen, _imm) -> None:
        fc.stack.append(f(fc, [fc.stack.pop()]))
        fc.promotes.add(id(fc.stack[-1]))
    return lower


_GUARDED = {f"{t}.{o}": _guard_const_fold for t in ("f32", "f64") for o in ("add", "sub", "mul")}
_GUARDED.update({f"{t}.div": lambda f: _guard_const_fold(f, identity_first=False) for t in ("f32", "f64")})
_GUARDED["f32.demote_f64"] = _guard_demote
_GUARDED["f64.promote_f32"] = _mark_promote
for _shape in ("f32x4", "f64x2"):
    _GUARDED.update({f"{_shape}.{o}": lambda f, s=_shape: _guard_const_fold(f, shape=s) for o in ("add", "sub", "mul")})
    _GUARDED[f"{_shape}.div"] = lambda f, s=_shape: _guard_const_fold(f, identity_first=False, shape=s)
_GUARDED["f32x4.demote_f64x2_zero"] = lambda f: _guard_demote(f, "f32x4")
_GUARDED["f64x2.promote_low_f32x4"] = _mark_promote
_GUARDED["f32x4.splat"] = _GUARDED["f64x2.splat"] = _mark_splat


LOWER = _build_table()
