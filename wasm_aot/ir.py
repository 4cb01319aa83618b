"""The decoded module: what the decoder produces, the validator checks and codegen lowers.

An instruction is a tuple `(op, imm, pos)`: `op` is the opcode number of opcodes.py (0xFC-prefixed
ones are 0xFC00 | sub-opcode), `imm` its immediate (shape given by the opcode's kind, see
opcodes.py), `pos` its byte offset in the module (for error messages).
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from .types import FuncType, GlobalType, MemoryType, TableType, ValType

Instr = tuple[int, Any, int]
Expr = list[Instr]  # a constant expression, without its final `end`


class ExternKind(enum.Enum):
    FUNC = 0
    TABLE = 1
    MEMORY = 2
    GLOBAL = 3


@dataclass
class Import:
    module: str
    name: str
    kind: ExternKind
    desc: int | TableType | MemoryType | GlobalType  # FUNC: a type index


@dataclass
class Export:
    name: str
    kind: ExternKind
    index: int


@dataclass
class Global:
    type: GlobalType
    init: Expr


class SegmentMode(enum.Enum):
    ACTIVE = 0
    PASSIVE = 1
    DECLARATIVE = 2


@dataclass
class Elem:
    mode: SegmentMode
    type: ValType  # FUNCREF or EXTERNREF
    init: list[Expr]  # one constant expression per element (a funcidx vector becomes [ref.func i])
    table: int = 0
    offset: Expr | None = None  # ACTIVE only


@dataclass
class Data:
    mode: SegmentMode  # ACTIVE or PASSIVE
    data: bytes
    memory: int = 0
    offset: Expr | None = None  # ACTIVE only


@dataclass
class Func:
    """A function defined in the module (imports are not Funcs)."""

    type_idx: int
    locals: list[ValType] = field(default_factory=list)  # declared locals, params excluded
    body: list[Instr] = field(default_factory=list)  # ends with the function's final `end`
    offset: int = 0  # of the code entry


@dataclass
class Module:
    types: list[FuncType] = field(default_factory=list)
    imports: list[Import] = field(default_factory=list)
    funcs: list[Func] = field(default_factory=list)
    tables: list[TableType] = field(default_factory=list)  # defined ones only
    memories: list[MemoryType] = field(default_factory=list)  # defined ones only
    globals: list[Global] = field(default_factory=list)  # defined ones only
    exports: list[Export] = field(default_factory=list)
    start: int | None = None
    elems: list[Elem] = field(default_factory=list)
    datas: list[Data] = field(default_factory=list)
    data_count: int | None = None
    func_names: dict[int, str] = field(default_factory=dict)  # from the custom `name` section
    module_name: str | None = None
    customs: list[tuple[str, bytes]] = field(default_factory=list)

    # --- index spaces: imports first, then definitions ---
    def imports_of(self, kind: ExternKind) -> list[Import]:
        return [i for i in self.imports if i.kind is kind]

    @property
    def num_imported_funcs(self) -> int:
        return sum(1 for i in self.imports if i.kind is ExternKind.FUNC)

    def func_type_indices(self) -> list[int]:
        """Type index of every function in the function index space."""
        return [i.desc for i in self.imports if i.kind is ExternKind.FUNC] + [f.type_idx for f in self.funcs]

    def all_tables(self) -> list[TableType]:
        return [i.desc for i in self.imports if i.kind is ExternKind.TABLE] + list(self.tables)

    def all_memories(self) -> list[MemoryType]:
        return [i.desc for i in self.imports if i.kind is ExternKind.MEMORY] + list(self.memories)

    def all_global_types(self) -> list[GlobalType]:
        return [i.desc for i in self.imports if i.kind is ExternKind.GLOBAL] + [g.type for g in self.globals]
