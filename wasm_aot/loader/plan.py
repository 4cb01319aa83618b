"""What loading needs of an artifact's metadata, derived once per content.

A Plan is made from the metadata's load record (metadata.py) when an artifact is first checked in
a process, and shared by every later load of the same content: each instance then only
allocates what is its own. The description (the JSON) is parsed only if someone asks for it.
"""
from __future__ import annotations

from typing import Any, Callable

from ..metadata import _VALTYPES, decode_indices, extern_from_record, indices_from_bytes, loads
from ..types import FuncType
from .locks import fork_safe_lock
from .runtime import ffi, lib

# Process-wide canonical ids of function types, which call_indirect compares: by the load record's
# tuple of a function type, ("func", params, results) (hashed in C, and no FuncType needs making).
_type_ids: dict[tuple, int] = {}


def _record_type_id(t: tuple) -> int:
    i = _type_ids.get(t)
    if i is None:
        if not isinstance(extern_from_record(t), FuncType):  # (a malformed record)
            raise ValueError("not a function type")
        i = _type_ids[t] = len(_type_ids) + 1
    return i


_functype_ids: dict[FuncType, int] = {}


def type_id(t: FuncType) -> int:
    """The canonical id of a function type."""
    i = _functype_ids.get(t)
    if i is None:
        i = _functype_ids[t] = _record_type_id(("func", bytes(x.value for x in t.params),
                                                bytes(x.value for x in t.results)))
    return i


_description_lock = fork_safe_lock()


class Plan:
    """An artifact's instantiation plan: its types, imports, counts, segments and shared arrays.
    (Made on every first sight of a content: each step here counts, hence map() and the guards.)"""

    __slots__ = ("imports", "import_kinds", "nimported", "ndefined", "type_ids", "defined_type_index",
                 "memories", "tables", "globals", "datas", "data_sizes", "elems", "elem_funcs", "exports",
                 "func_types", "start", "bounds_checks", "ntypes", "refs", "refs_count", "_type_records",
                 "_types", "_func_types_raw", "_description")

    def __init__(self, rec: tuple) -> None:
        (_, _, _, _, types, imports, func_types, tables, memories, globals_, exports, start, elems, datas,
         bounds_checks, refs) = rec
        self._type_records: tuple = types
        self._types: list[FuncType] | None = None
        self.ntypes = len(types)
        self.func_types: Any = indices_from_bytes(func_types)  # per function, its type index
        # (the array below points into the record's bytes, kept here)
        self._func_types_raw = ffi.from_buffer("uint32_t[]", self.func_types) if func_types else ffi.NULL
        if not _all_below(self._func_types_raw, len(self.func_types), self.ntypes):
            raise ValueError("a function type index out of range")
        if imports:  # (module, name, wanted type, kind) per import
            self.imports = [(m, n, extern_from_record(t), t[0]) for m, n, t in imports]
            self.import_kinds = [i[3] for i in self.imports]
            self.nimported = self.import_kinds.count("func")
        else:
            self.imports, self.import_kinds, self.nimported = [], [], 0
        self.ndefined = len(self.func_types) - self.nimported
        if self.ndefined < 0:
            raise ValueError("fewer functions than function imports")
        # canonical ids are fixed for the process: every instance shares this array
        self.type_ids = ffi.new("uint32_t[]", list(map(_record_type_id, types))) if types else ffi.NULL
        # the type index of each defined function
        self.defined_type_index = self._func_types_raw + self.nimported if self.ndefined else ffi.NULL
        # the functions whose funcref an instance makes (the others can never be one)
        self.refs_count = len(refs) // 4
        self.refs = ffi.from_buffer("uint32_t[]", refs) if refs else ffi.NULL
        if not _all_below(self.refs, self.refs_count, len(self.func_types)):
            raise ValueError("a function reference out of range")
        self.memories = list(map(extern_from_record, memories))
        self.tables = list(map(extern_from_record, tables))
        self.globals = [(extern_from_record(t), init) for t, init in globals_] if globals_ else []
        # (mode, memory, size, offset) per data segment
        self.datas: tuple = datas
        self.data_sizes = [d[2] for d in datas] if datas else []
        # (mode, element type, table, offset, init) per element segment
        self.elems = [(mode, _VALTYPES[code], table, offset, init)
                      for mode, code, table, offset, init in elems] if elems else []
        # per element segment, the function index of each item when all are ref.func / ref.null
        # (-1): what nearly every module has, evaluated with one C array instead of a call per item
        self.elem_funcs = [_func_indices(e[4]) for e in self.elems]
        self.exports: dict[str, tuple[str, int]] = exports  # name -> (kind, index), in module order
        if not isinstance(exports, dict):
            raise ValueError("exports are not a mapping")
        self.start: int | None = start
        # whether its loads and stores check bounds (else they rely on guard pages: see _check_import)
        self.bounds_checks = bool(bounds_checks)
        self._description: dict | None = None

    @property
    def types(self) -> list[FuncType]:
        """The module's function types, by type index (made on first use: instantiating needs only
        their ids)."""
        if self._types is None:
            self._types = list(map(extern_from_record, self._type_records))
        return self._types

    def description(self, read: Callable[[], bytes]) -> dict[str, Any]:
        """The whole metadata (the section's JSON), parsed on first use; read() gives its bytes."""
        if self._description is None:
            with _description_lock:
                if self._description is None:
                    meta = loads(read())
                    # decoded once: the loader's metadata holds uint32s (Module.metadata a list)
                    meta["func_types"] = decode_indices(meta["func_types"])
                    self._description = meta
        return self._description


def _all_below(arr: Any, n: int, bound: int) -> bool:
    """Whether the n uint32s at arr (checked in C: in Python each would become an int) are < bound."""
    return not n or lib.wa_max_u32(arr, n) < bound


def _func_indices(init: tuple) -> list[int] | None:
    out = []
    for expr in init:
        if len(expr) != 1 or expr[0][0] not in ("ref.func", "ref.null"):
            return None
        out.append(expr[0][1] if expr[0][0] == "ref.func" else -1)
    return out
