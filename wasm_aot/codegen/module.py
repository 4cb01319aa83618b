"""Lowering of a whole module: function declarations and bodies, one trampoline per signature
(Python -> wasm), one shim per imported function (wasm -> host), data segments, the `wa_module`
descriptor and the metadata section.

A large module may be lowered as several parts (separate LLVM modules compiled in parallel, see
codegen/__init__.py): each part defines its own functions and declares those of other parts that it
calls; every wasm function then has hidden visibility (resolved by the linker inside the .so, so calls
stay direct) instead of internal linkage. Only the main part (part 0) carries the trampolines, shims,
data, metadata and the `wa_module` descriptor, which refers to every function."""
from __future__ import annotations

from typing import Collection

from llvmlite import ir as ll

from .. import abi, opcodes as op
from ..ir import ExternKind, Func, Module
from ..metadata import SECTION
from ..types import FuncType
from .function import FuncCodegen
from .layout import (HOSTCALL_FNTYPE, I8, I32, I64, PTR, STRUCT, TRAMP_FNTYPE, VALTYPE, Callee,
                     pack_results, unpack_results, wasm_fntype)

# wasm data segments go where ld's default script puts .data.rel.ro.*: read-only after relocation,
# never executable (see emit.py)
DATA_SECTION = ".data.rel.ro.wa_data"


_CALLS = (op.CALL, op.CALL_INDIRECT)


def _offset(target: ll.Constant, at: ll.Constant) -> ll.Constant:
    """target - at, as an int64 constant the linker resolves (a PC-relative relocation)."""
    return target.ptrtoint(I64).sub(at.ptrtoint(I64))


class _Funcs(dict):
    """Function index -> ll.Function: the part's own functions, plus declarations of other parts'
    functions made on first use."""

    def __init__(self, mc: "ModuleCodegen") -> None:
        super().__init__()
        self.mc = mc

    def __missing__(self, idx: int) -> ll.Function:
        mc = self.mc
        fn = self[idx] = ll.Function(mc.m, wasm_fntype(mc.wasm.types[mc.func_types[idx]]), name=f"f{idx}")
        fn.linkage = "hidden"  # llvmlite has no visibility: "declare hidden" is default linkage, hidden
        return fn


class ModuleCodegen:
    def __init__(self, wasm: Module, *, bounds_checks: bool = False, triple: str = "", datalayout: str = "",
                 part: Collection[int] | None = None, main: bool = True, opt_level: int = 2) -> None:
        """part: the defined functions (by function index) this LLVM module defines, None for all of them
        (a single-part compile); main: whether it carries the trampolines, shims, data and descriptor."""
        self.wasm = wasm
        self.bounds_checks = bounds_checks
        self.opt_level = opt_level
        self.m = ll.Module(name="wasm")
        self.m.triple = triple
        self.m.data_layout = datalayout
        self.func_types = wasm.func_type_indices()
        self.num_imported_funcs = wasm.num_imported_funcs
        self.global_types = wasm.all_global_types()
        self.has_memory = bool(wasm.all_memories())
        self._intrinsics: dict[str, ll.Function] = {}
        # TBAA: the VM's own structures (ctx, tables, funcrefs) never alias linear memory or global
        # cells, so a store to either does not force the ctx fields to be reloaded. Global cells are
        # a kind of linear memory on purpose: LLVM takes loads for harmless, and a global store it
        # knew apart from a load that traps could be dropped (overwritten later) or moved across
        # it, leaving the globals seen after the trap stale
        root = self.m.add_metadata(["wasm-aot tbaa"])
        memory = self.m.add_metadata(["memory", root, ll.Constant(I64, 0)])
        kinds = {"memory": memory, "vm": self.m.add_metadata(["vm", root, ll.Constant(I64, 0)]),
                 "global": self.m.add_metadata(["global", memory, ll.Constant(I64, 0)])}
        self.tbaa = {name: self.m.add_metadata([t, t, ll.Constant(I64, 0)]) for name, t in kinds.items()}
        self.funcs: dict[int, ll.Function] = _Funcs(self)
        self.used: list[ll.GlobalValue] = []
        self.main = main
        self.defined = (range(self.num_imported_funcs, self.num_imported_funcs + len(wasm.funcs)) if part is None
                        else sorted(part))
        for idx in self.defined:
            fn = ll.Function(self.m, wasm_fntype(wasm.types[self.func_types[idx]]), name=f"f{idx}")
            fn.linkage = "internal" if part is None else "hidden"
            fn.attributes.add("nounwind")
            self.funcs[idx] = fn

    def intrinsic(self, name: str, ret: ll.Type, args: list[ll.Type]) -> ll.Function:
        fn = self._intrinsics.get(name)
        if fn is None:
            fn = self._intrinsics[name] = ll.Function(self.m, ll.FunctionType(ret, args), name=name)
        return fn

    def needs_stack_check(self, func: Func) -> bool:
        # a function that calls nothing cannot recurse: its one frame fits in the margin
        return any(i[0] in _CALLS for i in func.body)

    def generate(self, meta: bytes) -> ll.Module:
        nimp = self.num_imported_funcs
        for idx in self.defined:
            FuncCodegen(self, idx, self.wasm.funcs[idx - nimp]).lower()
        if not self.main:
            return self.m
        tramps = self.trampolines()
        shims = self.shims()
        datas = [self.const_bytes(f"data{i}", d.data, DATA_SECTION) for i, d in enumerate(self.wasm.datas)]
        desc_t = STRUCT["wa_module_desc"]
        desc = ll.GlobalVariable(self.m, desc_t, name="wa_module")
        desc.global_constant = True
        arrays = {"funcs": self.rel_array("wa_funcs", [self.funcs[nimp + i] for i in range(len(self.wasm.funcs))]),
                  "tramps": self.rel_array("wa_tramps", tramps), "shims": self.rel_array("wa_shims", shims),
                  "datas": self.rel_array("wa_datas", datas)}
        counts = [len(self.wasm.funcs), len(tramps), len(shims), len(datas)]
        desc.initializer = ll.Constant(desc_t, [ll.Constant(I64, abi.ABI_VERSION)] + [ll.Constant(I32, n) for n in counts] + [
            _offset(arrays[name], desc.gep([ll.Constant(I32, 0), ll.Constant(I32, abi.field_index("wa_module_desc", name))]))
            if arrays[name] is not None else ll.Constant(I64, 0) for name in ("funcs", "tramps", "shims", "datas")])
        meta_g = self.const_bytes("wa_meta", meta, SECTION)
        self.used.append(meta_g)
        used_t = ll.ArrayType(PTR, len(self.used))
        used = ll.GlobalVariable(self.m, used_t, name="llvm.used")
        used.linkage = "appending"
        used.section = "llvm.metadata"
        used.initializer = ll.Constant(used_t, self.used)
        return self.m

    def const_bytes(self, name: str, data: bytes, section: str) -> ll.GlobalVariable:
        """Bytes a wasm module decides: in a section emit.py keeps out of executable pages."""
        t = ll.ArrayType(I8, len(data))
        g = ll.GlobalVariable(self.m, t, name=name)
        g.linkage = "internal"
        g.global_constant = True
        g.section = section
        g.initializer = ll.Constant(t, bytearray(data))
        return g

    def rel_array(self, name: str, items: list) -> ll.GlobalVariable | None:
        """An array of int64 offsets, each from its own entry to the item (see abi.py, wa_module_desc)."""
        if not items:
            return None
        t = ll.ArrayType(I64, len(items))
        g = ll.GlobalVariable(self.m, t, name=name)
        g.linkage = "internal"
        g.global_constant = True
        g.initializer = ll.Constant(t, [_offset(x, g.gep([ll.Constant(I32, 0), ll.Constant(I32, i)]))
                                        for i, x in enumerate(items)])
        return g

    def trampolines(self) -> list[ll.Function]:
        """Per type index: void tramp(ctx, code, slots) calling code(ctx, args from slots)."""
        made: dict[FuncType, ll.Function] = {}
        out = []
        for t in self.wasm.types:
            fn = made.get(t)
            if fn is None:
                fn = made[t] = self.trampoline(t, len(made))
            out.append(fn)
        return out

    def slot(self, b: ll.IRBuilder, slots: ll.Value, i: int) -> ll.Value:
        return b.gep(slots, [ll.Constant(I64, i * abi.SLOT_SIZE)], inbounds=True, source_etype=I8)

    def trampoline(self, ft: FuncType, n: int) -> ll.Function:
        fn = ll.Function(self.m, TRAMP_FNTYPE, name=f"tramp{n}")
        fn.linkage = "internal"
        ctx, code, slots = fn.args
        b = ll.IRBuilder(fn.append_basic_block())
        args = [b.load(self.slot(b, slots, i), typ=VALTYPE[t], align=8) for i, t in enumerate(ft.params)]
        r = b.call(Callee(code, wasm_fntype(ft)), [ctx] + args)
        for i, v in enumerate(unpack_results(b, r, ft)):
            b.store(v, self.slot(b, slots, i), align=8)
        b.ret_void()
        return fn

    def shims(self) -> list[ll.Function]:
        """Per imported function: the wasm ABI on the outside, wa_hostfunc.call inside."""
        out = []
        for i, imp in enumerate(self.wasm.imports_of(ExternKind.FUNC)):
            ft = self.wasm.types[imp.desc]
            fn = ll.Function(self.m, wasm_fntype(ft), name=f"shim{i}")
            fn.linkage = "internal"
            hf = fn.args[0]
            b = ll.IRBuilder(fn.append_basic_block())
            n = max(len(ft.params), len(ft.results), 1)
            buf = b.alloca(ll.ArrayType(I8, n * abi.SLOT_SIZE))
            buf.align = 16
            buf.type = PTR  # opaque, so slots of any value type can be addressed in it
            for j, a in enumerate(fn.args[1:]):
                b.store(a, self.slot(b, buf, j), align=8)
            callp = b.gep(hf, [ll.Constant(I32, 0), ll.Constant(I32, abi.field_index("wa_hostfunc", "call"))],
                          inbounds=True, source_etype=STRUCT["wa_hostfunc"])
            b.call(Callee(b.load(callp, typ=PTR), HOSTCALL_FNTYPE), [hf, buf])
            vals = [b.load(self.slot(b, buf, j), typ=VALTYPE[t], align=8) for j, t in enumerate(ft.results)]
            if not vals:
                b.ret_void()
            elif len(vals) == 1:
                b.ret(vals[0])
            else:
                b.ret(pack_results(b, vals, ft))
            out.append(fn)
        return out
