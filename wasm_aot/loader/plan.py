"""What instantiation needs of an artifact's metadata, derived once per content.

The metadata is JSON; turning it into types, counts and C arrays costs more than instantiating
itself. A Plan does that once per checked metadata (the loader shares one dict per content), so
each instance only allocates what is its own.
"""
from __future__ import annotations

from typing import Any

from ..metadata import extern_from_json
from ..types import FuncType, ValType
from .runtime import ffi

_type_ids: dict[FuncType, int] = {}


def type_id(t: FuncType) -> int:
    """Process-wide canonical id of a function type: call_indirect compares these."""
    return _type_ids.setdefault(t, len(_type_ids) + 1)


class Plan:
    """An artifact's instantiation plan: its types, imports, counts and shared arrays."""

    __slots__ = ("meta", "types", "imports", "import_kinds", "nimported", "ndefined", "type_ids",
                 "defined_type_index", "memories", "tables", "globals", "data_sizes", "elems", "elem_funcs",
                 "exports", "func_types", "bounds_checks")

    def __init__(self, meta: dict) -> None:
        self.meta = meta  # keeps the key of _plans alive
        self.types = [extern_from_json(t) for t in meta["types"]]
        self.func_types: Any = meta["func_types"]  # uint32s (a memoryview), decoded by the loader's check
        # (module, name, wanted type, kind) per import
        self.imports = [(i["module"], i["name"], extern_from_json(i["type"]), i["type"]["kind"])
                        for i in meta["imports"]]
        self.import_kinds = [k for *_, k in self.imports]
        self.nimported = self.import_kinds.count("func")
        self.ndefined = len(self.func_types) - self.nimported
        # canonical ids are fixed for the process: every instance shares this array
        self.type_ids = ffi.new("uint32_t[]", [type_id(t) for t in self.types]) if self.types else ffi.NULL
        self.defined_type_index = ffi.NULL
        if self.ndefined:
            self.defined_type_index = ffi.new("uint32_t[]", self.ndefined)
            ffi.memmove(self.defined_type_index, self.func_types[self.nimported:], 4 * self.ndefined)
        self.memories = [extern_from_json(m) for m in meta["memories"]]
        self.tables = [extern_from_json(t) for t in meta["tables"]]
        self.globals = [(extern_from_json(g["type"]), g["init"]) for g in meta["globals"]]
        self.data_sizes = [d["size"] for d in meta["datas"]]
        self.elems = [(ValType[e["type"]], e) for e in meta["elems"]]
        # per element segment, the function index of each item when all are ref.func / ref.null
        # (-1): what nearly every module has, evaluated with one C array instead of a call per item
        self.elem_funcs = [_func_indices(e["init"]) for e in meta["elems"]]
        self.exports = {e["name"]: (e["kind"], e["index"]) for e in meta["exports"]}
        # whether its loads and stores check bounds (else they rely on guard pages: see _check_import)
        self.bounds_checks = bool(meta.get("options", {}).get("bounds_checks"))


def _func_indices(init: list) -> list[int] | None:
    out = []
    for expr in init:
        if len(expr) != 1 or expr[0][0] not in ("ref.func", "ref.null"):
            return None
        out.append(expr[0][1] if expr[0][0] == "ref.func" else -1)
    return out


_plans: dict[int, Plan] = {}  # by id of the shared metadata dict (which the Plan keeps alive)


def plan_of(meta: dict) -> Plan:
    plan = _plans.get(id(meta))
    if plan is None:
        plan = _plans[id(meta)] = Plan(meta)
    return plan
