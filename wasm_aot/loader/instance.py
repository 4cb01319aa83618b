"""Instantiation: resolve imports, build the ctx, apply segments, run the start function."""
from __future__ import annotations

import weakref
from typing import Any, Iterator, Mapping

from ..errors import ArtifactError, ExportNotFound, ExportWrongType, LinkError, SignatureError, Trap, TrapCode
from ..types import FuncType, GlobalType, MemoryType, TableType, ValType, Value
from . import values as V
from .artifact import BAD_METADATA, Mapped
from .externs import Extern, Function, Global, ImportObject, Memory, Table, WasmSignature
from .plan import Plan, type_id
from .runtime import RT_PTR, STACK_LIMIT_TLS, ffi, lib


# A large instance's funcs array: its own mapping past a size, whose untouched pages never fault (see
# wa_calloc); only the entries of functions that can become funcrefs are ever written or read. (Small
# arrays come from ffi.new: a custom allocator costs twice as much to call.)
_zeroed = ffi.new_allocator(alloc=ffi.addressof(lib, "wa_calloc"), free=ffi.addressof(lib, "wa_free"),
                            should_clear_after_alloc=False)


def _limits_match(have_min: int, have_max: int | None, want: Any) -> bool:
    lim = want.limits
    if have_min < lim.min:
        return False
    if lim.max is not None and (have_max is None or have_max > lim.max):
        return False
    return True


def _check_import(mod: str, name: str, want: Any, ext: Any, bounds_checks: bool) -> None:
    def bad(why: str) -> LinkError:
        return LinkError(f"incompatible import type for {mod}.{name}: {why}")

    if isinstance(want, FuncType):
        if not isinstance(ext, Function):
            raise bad(f"expected a function {want}, got {type(ext).__name__}")
        if ext.type != want:
            raise bad(f"expected {want}, got {ext.type}")
    elif isinstance(want, MemoryType):
        if not isinstance(ext, Memory):
            raise bad(f"expected a memory, got {type(ext).__name__}")
        if not _limits_match(ext.size, ext._limits.max, want):
            raise bad(f"expected memory limits {want.limits}, got {ext.size}..{ext._limits.max or ''}")
        if not ext._guarded and not bounds_checks:
            # the module's loads and stores rely on the guard region to stay inside the memory
            raise bad("a memory without guard pages needs a module compiled with bounds checks")
    elif isinstance(want, TableType):
        if not isinstance(ext, Table):
            raise bad(f"expected a table, got {type(ext).__name__}")
        if ext._type.elem is not want.elem:
            raise bad(f"expected a table of {want.elem}, got {ext._type.elem}")
        if not _limits_match(ext.size, ext._type.limits.max, want):
            raise bad(f"expected table limits {want.limits}, got {ext.size}..{ext._type.limits.max or ''}")
    elif isinstance(want, GlobalType):
        if not isinstance(ext, Global):
            raise bad(f"expected a global, got {type(ext).__name__}")
        if ext.type != want:
            raise bad(f"expected {want}, got {ext.type}")


def resolve_imports(plan: Plan, imports: Any) -> list[Any]:
    out = []
    for mod, name, want, kind in plan.imports:
        ns = imports.get(mod) if imports is not None else None
        if ns is None:
            raise LinkError(f"unknown import: {mod}.{name} (no namespace {mod!r})")
        if isinstance(ns, Instance):
            ext = ns.exports.get(name)
        else:
            try:
                ext = ns[name]
            except (KeyError, IndexError, TypeError):
                ext = None
        if ext is None:
            raise LinkError(f"unknown import: {mod}.{name}")
        if kind == "func" and callable(ext) and not isinstance(ext, Function):
            ext = Function(ext, want)  # a plain callable takes the type the module asks for
        _check_import(mod, name, want, ext, plan.bounds_checks)
        out.append(ext)
    return out


class Exports(Mapping[str, Extern]):
    """An instance's exports, in module order. Each extern object is made on first access: most
    programs use a few exports of many."""

    def __init__(self, make: Any, entries: dict[str, tuple[str, int]]) -> None:
        self._make = make  # (kind, index) -> Extern
        self._entries = entries  # name -> (kind, index), shared by every instance of the module
        self._items: dict[str, Extern] = {}

    def __getitem__(self, name: str) -> Extern:
        x = self._items.get(name)
        if x is None:
            try:
                x = self._items[name] = self._make(*self._entries[name])
            except KeyError:
                raise ExportNotFound(f"no export named {name!r}") from None
        return x

    def get(self, name: str, default: Any = None) -> Any:
        return self[name] if name in self._entries else default

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __getattr__(self, name: str) -> Extern:
        if name.startswith("_"):
            raise AttributeError(name)
        return self[name]

    def __repr__(self) -> str:
        return "{" + ", ".join(f"{k!r}: {self[k]!r}" for k in self._entries) + "}"


class Instance:
    """An instantiated module (after wasmer's Instance)."""

    def __init__(self, module: Any, mapped: Mapped, imports: Any = None, data: Any = None) -> None:
        self.module = module
        self.data = data
        self._m = mapped
        # what this instance's wasm may hold references to, kept alive as long as it: the owners of
        # funcrefs handed to it from Python (arguments, host function results) or by instances it calls
        self._held: set = set()
        plan = self._plan = mapped.plan
        if imports is not None and not isinstance(imports, (Mapping, ImportObject)):
            raise TypeError(f"imports must map module names to namespaces, not be a {type(imports).__name__}")
        resolved = resolve_imports(plan, imports) if plan.imports else []
        self._imports = resolved  # keeps what we link to alive
        nfuncs = len(plan.func_types)
        ctx = self._ctx = ffi.new("wa_ctx *")
        ctx.stack_limit_tls = STACK_LIMIT_TLS
        ctx.rt = RT_PTR
        ctx.type_ids = plan.type_ids  # kept alive by the plan, which lives as long as the process

        imported: dict[str, list] = {"func": [], "table": [], "memory": [], "global": []}
        if resolved:
            for kind, ext in zip(plan.import_kinds, resolved):
                imported[kind].append(ext)

        # functions: imports first (host functions through this module's shims)
        self._funcs = ctx.funcs = ((_zeroed if nfuncs > 1024 else ffi.new)("wa_funcref[]", nfuncs) if nfuncs
                                   else ffi.NULL)
        self._funcs_at = int(ffi.cast("uintptr_t", self._funcs))
        self._hostfuncs = []
        for i, f in enumerate(imported["func"]):
            fr = self._funcs[i]
            if f.is_host:
                binding = f.host_binding(self)
                self._hostfuncs.append(binding)
                fr.code, fr.ctx, fr.type_id = mapped.shim(i), binding.hostfunc, type_id(f.type)
                if f._funcref_addr is None:
                    # a funcref Python can hand to tables and globals: the function's own cell,
                    # calling through this module's shim (artifacts stay mapped)
                    cell, own = ffi.new("wa_funcref *"), f.host_binding(self)
                    cell.code, cell.ctx, cell.type_id = mapped.shim(i), own.hostfunc, type_id(f.type)
                    f._funcref_cell = (cell, own, mapped)  # the shim's artifact stays mapped
                    f._funcref_addr = int(ffi.cast("uintptr_t", cell))
                    V.register_host_cell(f._funcref_addr, f)
            else:
                src = f._funcref
                fr.code, fr.ctx, fr.type_id = src.code, src.ctx, src.type_id
                if ValType.FUNCREF in f.type.params:
                    # our funcrefs reach the other instance's wasm through this import: it keeps us
                    # alive (a cycle, with our import of it: freed together by the collector)
                    f._owner._held.add(self)
        nimp = plan.nimported
        if plan.ndefined and lib.wa_fill_funcrefs(self._funcs, nfuncs, nimp, mapped.code,
                                                  plan.defined_type_index, plan.type_ids, ctx, plan.refs,
                                                  plan.refs_count) != 0:
            raise ArtifactError(f"{mapped.path}: {BAD_METADATA} (a function reference out of range)")
        # weakly: a Function holds its instance, so a strong cache would make every instance a cycle
        # (a dropped instance would then wait for the cyclic collector to free its memory)
        self._func_objects: "dict[int, weakref.ref[Function]]" = {}
        self._exports_ref: "weakref.ref[Exports] | None" = None
        if nfuncs:
            V.register_funcrefs(self._funcs_at, nfuncs, self)

        # memory
        mems = imported["memory"] + [Memory(t) for t in plan.memories] if plan.memories else imported["memory"]
        self._memories = mems
        self._memory = mems[0] if mems else None
        if self._memory is not None:
            ctx.mem0 = self._memory._ptr
            ctx.mem0_base = self._memory._ptr.base

        # tables
        tables = imported["table"] + [Table(t) for t in plan.tables] if plan.tables else imported["table"]
        self._tables = tables
        if tables:
            self._table_ptrs = ctx.tables = ffi.new("wa_table *[]", [t._ptr for t in tables])

        # globals, initialised in order (an initialiser may read imported globals)
        globs = list(imported["global"])
        self._globals = globs
        if globs or plan.globals:
            self._global_ptrs = ffi.new("uint8_t *[]", len(globs) + len(plan.globals))
            for i, g in enumerate(globs):
                self._global_ptrs[i] = g._cell
            for gt, init in plan.globals:
                glob = Global(gt)
                V.write_slot(glob._u64, 0, gt.valtype, self.eval_const(init, gt.valtype))
                self._global_ptrs[len(globs)] = glob._cell
                globs.append(glob)
            ctx.globals = self._global_ptrs

        # wasm may store references to this instance's functions in any of its tables and funcref
        # globals: those that can outlive it keep it alive. Imported ones now; its own ones only once
        # they leave through its exports (_export_extern), so that an instance whose tables never do
        # is freed as soon as it is dropped, not at the next cyclic collection.
        for t in imported["table"]:
            t._keepalive.add(self)
        for g in imported["global"]:
            if g.type.valtype is ValType.FUNCREF:
                g._keepalive.add(self)

        # data and element segments (passive ones stay available to memory.init / table.init)
        if plan.data_sizes:
            ctx.data_ptrs = mapped.datas  # into the artifact's image, read-only (kept by mapped)
            self._data_sizes = ctx.data_sizes = ffi.new("uint32_t[]", plan.data_sizes)
        if plan.elems:
            self._elem_arrays = []
            self._elem_items = ctx.elem_items = ffi.new("void **[]", len(plan.elems))
            self._elem_sizes = ctx.elem_sizes = ffi.new("uint32_t[]", len(plan.elems))
            funcs_at = self._funcs_at
            for i, (_, et, _, _, init) in enumerate(plan.elems):
                idx = plan.elem_funcs[i]
                if not init:
                    arr = ffi.NULL
                elif idx is not None:  # a funcref is the address of the function's entry in self._funcs
                    arr = ffi.new("uintptr_t[]", [funcs_at + V.FUNCREF_SIZE * k if k >= 0 else 0 for k in idx])
                else:
                    arr = ffi.new("uintptr_t[]", [self.eval_const(x, et) for x in init])
                self._elem_arrays.append(arr)
                arr = ffi.cast("void **", arr)
                self._elem_items[i] = arr
                self._elem_sizes[i] = len(init)

        # active segments, in order; a failure traps like table.init / memory.init would
        for i, (mode, _, table, offset, _) in enumerate(plan.elems):
            if mode == "active":
                off = self.eval_const(offset, ValType.I32)
                if lib.wa_init_table(tables[table]._ptr, off, self._elem_items[i], self._elem_sizes[i]) != 0:
                    raise Trap(TrapCode.TABLE_ACCESS_OUT_OF_BOUNDS, "in an element segment at instantiation")
            if mode != "passive":
                self._elem_sizes[i] = 0
        if plan.data_sizes:
            for i, (mode, memory, _, offset) in enumerate(plan.datas):
                if mode == "active":
                    off = self.eval_const(offset, ValType.I32)
                    if lib.wa_init_memory(mems[memory]._ptr, off, mapped.datas[i], self._data_sizes[i]) != 0:
                        raise Trap(TrapCode.MEMORY_OUT_OF_BOUNDS, "in a data segment at instantiation")
                    self._data_sizes[i] = 0
        if plan.start is not None:
            self.funcref_object(plan.start)()

    # ---- constant expressions ----

    def eval_const(self, expr: list, t: ValType) -> int:
        """Evaluate an initialiser to slot bits."""
        (name, imm), = expr
        if name == "i32.const":
            return imm & 0xFFFFFFFF
        if name == "i64.const":
            return imm & 0xFFFFFFFFFFFFFFFF
        if name in ("f32.const", "f64.const", "v128.const"):
            return imm
        if name == "ref.null":
            return 0
        if name == "ref.func":
            return int(ffi.cast("uintptr_t", ffi.addressof(self._funcs, imm)))
        if name == "global.get":
            g = self._globals[imm]
            return V.read_slot(g._u64, 0, g.type.valtype)
        raise AssertionError(f"not a constant instruction: {name}")

    # ---- exports ----

    def funcref_object(self, index: int) -> Function:
        ref = self._func_objects.get(index)
        f = ref() if ref is not None else None
        if f is None:
            nimp = self._plan.nimported
            if index < nimp and self._imports_funcs()[index].is_host:
                f = self._imports_funcs()[index]
            else:
                ti = self._plan.func_types[index]
                sig = self._m.sigs.get(ti)
                if sig is None:  # per artifact and type, not per Function
                    sig = self._m.sigs[ti] = WasmSignature(self._plan.types[ti], self._m.tramp(ti))
                f = Function._wasm(self, index, self._funcs + index, self._funcs_at + V.FUNCREF_SIZE * index, sig)
            self._func_objects[index] = weakref.ref(f)
        return f

    def _imports_funcs(self) -> list[Function]:
        return [e for e in self._imports if isinstance(e, Function)]

    def _export_extern(self, kind: str, i: int) -> Extern:
        if kind == "func":
            return self.funcref_object(i)
        if kind == "memory":
            return self._memories[i]
        ext = self._tables[i] if kind == "table" else self._globals[i]
        if kind == "table" or ext.type.valtype is ValType.FUNCREF:
            ext._keepalive.add(self)  # it may outlive this instance now, holding its functions
        return ext

    @property
    def exports(self) -> Exports:
        # held weakly for the same reason as the functions: the Exports holds this instance
        e = self._exports_ref() if self._exports_ref is not None else None
        if e is None:
            e = Exports(self._export_extern, self._plan.exports)
            self._exports_ref = weakref.ref(e)
        return e

    def _export_func(self, name: str) -> Function:
        ext = self.exports[name]
        if not isinstance(ext, Function):
            raise ExportWrongType(f"export {name!r} is a {type(ext).__name__}, not a function")
        return ext

    def func(self, name: str, type: FuncType | None = None) -> Function:
        f = self._export_func(name)
        if type is not None and f.type != type:
            raise SignatureError(f"export {name!r}: expected {type}, found {f.type}")
        return f

    def dyn_func(self, name: str) -> Function:
        return self._export_func(name)

    def call(self, name: str, *args: Any) -> list[Any]:
        r = self._export_func(name)(*args)
        if r is None:
            return []
        return list(r) if isinstance(r, tuple) else [r]

    def resolve_func(self, name: str) -> int:
        self._export_func(name)  # (raises unless it is a function)
        return self._plan.exports[name][1]

    def __repr__(self) -> str:
        return f"<wa.Instance of {self.module!r} exports={list(self.exports)}>"


__all__ = ["Instance", "Value"]
