"""The artifact's metadata: everything the loader needs besides the code.

Written by the compiler into the `.wa_meta` section, read by the loader before anything is
mapped. Neither side imports the other: this module is the format between them.

The section holds two encodings of the metadata, one after the other:
  * the load record: exactly what checking and instantiating need (versions, target, types,
    imports, exports, segments), as tuples in marshal's format 4. A load parses only this:
    marshal reads it ~5x faster than json reads the same, and its extern types are hashable
    tuples the loader shares between artifacts;
  * the description: all of it (names, hashes, options, toolchain) as JSON, which anyone can
    read, and which the loader parses only when asked (Module.metadata, a trap's frame names).
The trailer (trailer.py) says where the section lies and how long its record is.
"""
from __future__ import annotations

import json
import marshal
import sys
from typing import TYPE_CHECKING, Any


from .types import FuncType, GlobalType, Limits, MemoryType, TableType, ValType

if TYPE_CHECKING:  # the compiler's side only: loading an artifact does not import the IR
    from .ir import Expr, Module

FORMAT_VERSION = 4
SECTION = ".wa_meta"
_MARSHAL_VERSION = 4  # tuples, str, bytes, int, bool, None: one encoding since Python 3.4


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
    return indices_from_bytes(bytes.fromhex(text))


def indices_from_bytes(raw: bytes) -> memoryview:
    """Little-endian uint32s as a read-only sequence of ints; ValueError if `raw` is not that."""
    if not isinstance(raw, bytes) or len(raw) % 4:
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
    from .validate import declared_refs

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
        # the functions that can become funcrefs (C.refs and the start function): the loader makes
        # the funcref of these alone
        "refs": encode_indices(sorted(declared_refs(mod) | ({mod.start} if mod.start is not None else set()))),
        "func_names": {str(k): v for k, v in mod.func_names.items()},
        "module_name": mod.module_name,
    }
    meta.update(extra)
    return meta


def dumps(meta: dict) -> bytes:
    """The description: the whole metadata, as JSON."""
    return json.dumps(meta, separators=(",", ":"), sort_keys=True).encode()


def loads(data: bytes) -> dict:
    return json.loads(data)


# ---- the load record ----

def extern_record(d: dict) -> tuple:
    """An extern type of the description as the record's tuple: (kind, ...) with value types as
    their binary encoding (a function type's params and results as bytes)."""
    k = d["kind"]
    if k == "func":
        return (k, bytes(ValType[x].value for x in d["params"]), bytes(ValType[x].value for x in d["results"]))
    if k == "memory":
        return (k, *d["limits"])
    if k == "table":
        return (k, ValType[d["elem"]].value, *d["limits"])
    return (k, ValType[d["valtype"]].value, d["mutable"])


def _expr_record(e: list | None) -> tuple | None:
    return None if e is None else tuple((name, imm) for name, imm in e)


# The record is a tuple of these fields, in this order (a tuple: marshal reads it faster than a dict).
RECORD_FIELDS = ("compiler", "abi", "triple", "cpu_features", "types", "imports", "func_types", "tables",
                 "memories", "globals", "exports", "start", "elems", "datas", "bounds_checks", "refs")


def record(meta: dict) -> bytes:
    """The load record of a description (see the module's docstring), encoded."""
    rec = {
        "compiler": meta["compiler"], "abi": meta["abi"], "triple": meta["triple"],
        "cpu_features": meta["cpu_features"],
        "types": tuple(extern_record(t) for t in meta["types"]),
        "imports": tuple((i["module"], i["name"], extern_record(i["type"])) for i in meta["imports"]),
        "func_types": bytes.fromhex(meta["func_types"]),  # little-endian uint32s
        "tables": tuple(extern_record(t) for t in meta["tables"]),
        "memories": tuple(extern_record(m) for m in meta["memories"]),
        "globals": tuple((extern_record(g["type"]), _expr_record(g["init"])) for g in meta["globals"]),
        # name -> (kind, index), in module order (marshal keeps a dict's order)
        "exports": {e["name"]: (e["kind"], e["index"]) for e in meta["exports"]},
        "start": meta["start"],
        "elems": tuple((e["mode"], ValType[e["type"]].value, e["table"], _expr_record(e["offset"]),
                        tuple(_expr_record(x) for x in e["init"])) for e in meta["elems"]),
        "datas": tuple((d["mode"], d["memory"], d["size"], _expr_record(d["offset"])) for d in meta["datas"]),
        "bounds_checks": bool(meta.get("options", {}).get("bounds_checks")),
        "refs": bytes.fromhex(meta["refs"]),  # little-endian uint32s
    }
    return marshal.dumps(tuple(rec[f] for f in RECORD_FIELDS), _MARSHAL_VERSION)


def section(meta: dict) -> tuple[bytes, int]:
    """The metadata section's bytes (record, then description) and the record's length."""
    rec = record(meta)
    return rec + dumps(meta), len(rec)


def read_record(data: bytes) -> tuple:
    """A decoded load record; ValueError if `data` is not one."""
    try:
        rec = marshal.loads(data)
    except (EOFError, TypeError, ValueError) as e:
        raise ValueError(f"not a load record: {e}") from None
    if not isinstance(rec, tuple) or len(rec) != len(RECORD_FIELDS):
        raise ValueError("not a load record")
    return rec


_VALTYPES = {t.value: t for t in ValType}
_externs: dict[tuple, Any] = {}


def extern_from_record(t: tuple) -> Any:
    """The extern type of a record's tuple; equal tuples give the same (immutable) object, so a
    process builds each type once, whatever artifact it comes from."""
    x = _externs.get(t)
    if x is None:
        k = t[0]
        if k == "func":
            x = FuncType._of(tuple(map(_VALTYPES.__getitem__, t[1])), tuple(map(_VALTYPES.__getitem__, t[2])))
        elif k == "memory":
            x = MemoryType(Limits(t[1], t[2]))
        elif k == "table":
            x = TableType(_VALTYPES[t[1]], Limits(t[2], t[3]))
        elif k == "global":
            x = GlobalType(_VALTYPES[t[1]], t[2])
        else:
            raise ValueError(f"unknown extern kind {k!r}")
        _externs[t] = x
    return x
