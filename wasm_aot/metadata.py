"""The artifact's metadata: everything the loader needs besides the code, as JSON.

Written by the compiler into the `.wa_meta` section, read by the loader before anything is
mapped. Neither side imports the other: this module is the format between them.
"""
from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any


from .types import FuncType, GlobalType, Limits, MemoryType, TableType, ValType

if TYPE_CHECKING:  # the compiler's side only: loading an artifact does not import the IR
    from .ir import Expr, Module

FORMAT_VERSION = 3
SECTION = ".wa_meta"


def _vt(t: ValType) -> str:
    return t.name


def _limits(l: Limits) -> list:
    return [l.min, l.max]


def extern_to_json(t: Any) -> dict:
    if isinstance(t, FuncType):
        return {"kind": "func", "params": [_vt(x) for x in t.params], "results": [_vt(x) for x in t.results]}
    if isinstance(t, MemoryType):
        return {"kind": "memory", "limits": _limits(t.limits)}
    if isinstance(t, TableType):
        return {"kind": "table", "elem": _vt(t.elem), "limits": _limits(t.limits)}
    if isinstance(t, GlobalType):
        return {"kind": "global", "valtype": _vt(t.valtype), "mutable": t.mutable}
    raise TypeError(t)


def extern_from_json(d: dict) -> Any:
    k = d["kind"]
    if k == "func":
        return FuncType([ValType[x] for x in d["params"]], [ValType[x] for x in d["results"]])
    if k == "memory":
        return MemoryType(Limits(*d["limits"]))
    if k == "table":
        return TableType(ValType[d["elem"]], Limits(*d["limits"]))
    return GlobalType(ValType[d["valtype"]], d["mutable"])


def encode_indices(xs: list[int]) -> str:
    """A long list of small integers (a type index per function) as hex of little-endian uint32:
    JSON parses a list of integers at ~90 ns per item, 0.2 ms per load for 2,000 functions."""
    return b"".join(x.to_bytes(4, "little") for x in xs).hex()


def decode_indices(text: str) -> memoryview:
    """The inverse of encode_indices, as a read-only sequence of ints; ValueError if `text` is not
    one. (A memoryview, not an array.array: loading must not pay for importing the array module.)"""
    raw = bytes.fromhex(text)
    if len(raw) % 4:
        raise ValueError("not a whole number of uint32")
    if sys.byteorder != "little":
        raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    return memoryview(raw).cast("I")


def expr_to_json(e: Expr) -> list:
    """A constant expression as [[mnemonic, imm], ...]."""
    from . import opcodes as op

    out = []
    for opc, imm, _pos in e:
        if isinstance(imm, ValType):
            imm = _vt(imm)
        out.append([op.NAME[opc], imm])
    return out


def _import_type(mod: Module, imp) -> Any:
    from .ir import ExternKind

    return mod.types[imp.desc] if imp.kind is ExternKind.FUNC else imp.desc


def _export_type(mod: Module, kind: Any, index: int) -> Any:
    from .ir import ExternKind

    if kind is ExternKind.FUNC:
        return mod.types[mod.func_type_indices()[index]]
    if kind is ExternKind.TABLE:
        return mod.all_tables()[index]
    if kind is ExternKind.MEMORY:
        return mod.all_memories()[index]
    return mod.all_global_types()[index]


def build(mod: Module, extra: dict) -> dict:
    """The metadata of a validated module; `extra` adds versions, options and hashes."""
    meta = {
        "format": FORMAT_VERSION,
        "types": [extern_to_json(t) for t in mod.types],
        "imports": [{"module": i.module, "name": i.name, "type": extern_to_json(_import_type(mod, i))}
                    for i in mod.imports],
        "func_types": encode_indices(mod.func_type_indices()),
        "tables": [extern_to_json(t) for t in mod.tables],
        "memories": [extern_to_json(m) for m in mod.memories],
        "globals": [{"type": extern_to_json(g.type), "init": expr_to_json(g.init)} for g in mod.globals],
        "exports": [{"name": e.name, "kind": e.kind.name.lower(), "index": e.index,
                     "type": extern_to_json(_export_type(mod, e.kind, e.index))} for e in mod.exports],
        "start": mod.start,
        "elems": [{"mode": e.mode.name.lower(), "type": _vt(e.type), "table": e.table,
                   "offset": expr_to_json(e.offset) if e.offset is not None else None,
                   "init": [expr_to_json(x) for x in e.init]} for e in mod.elems],
        "datas": [{"mode": d.mode.name.lower(), "memory": d.memory, "size": len(d.data),
                   "offset": expr_to_json(d.offset) if d.offset is not None else None} for d in mod.datas],
        "func_names": {str(k): v for k, v in mod.func_names.items()},
        "module_name": mod.module_name,
    }
    meta.update(extra)
    return meta


def dumps(meta: dict) -> bytes:
    return json.dumps(meta, separators=(",", ":"), sort_keys=True).encode()


def loads(data: bytes) -> dict:
    return json.loads(data)
