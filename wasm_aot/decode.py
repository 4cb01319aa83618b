"""Binary decoder: wasm bytes -> ir.Module (WebAssembly 2.0 core format).

Errors follow the reference interpreter, whose messages the spec testsuite expects:
- Everything is read against the bounds of the whole image, not of the enclosing section or
  function body; a section (or code entry) that reads more or less than its declared size is a
  "section size mismatch" afterwards. A read past the image is "unexpected end".
- A length or vector count larger than the bytes left is "length out of bounds" (this also keeps
  a huge count from allocating anything).
- Sections come in a fixed order; anything out of place is "unexpected content after last section".

Reading past the end of `data` raises IndexError in the hot loops; `decode` turns that into
CompileError, so the loops need no bounds checks of their own (slices are checked explicitly).
"""
from __future__ import annotations

import gc
from typing import Any

from . import ir
from .errors import CompileError
from .opcodes import KIND
from .types import FuncType, GlobalType, Limits, MemoryType, TableType, ValType

_EOF = "unexpected end of section or function"

# Implementation limit on the declared locals of one function (as in V8): a count that the spec
# allows (< 2^32) but that we could never allocate must still fail cleanly, not with MemoryError.
MAX_LOCALS = 50_000

_VALTYPES: dict[int, ValType] = {t.value: t for t in ValType}
_REFTYPES: dict[int, ValType] = {0x70: ValType.FUNCREF, 0x6F: ValType.EXTERNREF}
_EXTERN_KINDS = {0: ir.ExternKind.FUNC, 1: ir.ExternKind.TABLE, 2: ir.ExternKind.MEMORY, 3: ir.ExternKind.GLOBAL}

# Section ids in the order they must appear (data count, 12, sits between elem and code).
_SECTION_RANK = {1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 6: 6, 7: 7, 8: 8, 9: 9, 12: 10, 10: 11, 11: 12}

# --- immediate kinds as small ints, for the instruction loop -------------------------------------
(K_NONE, K_BLOCK, K_IDX, K_BR_TABLE, K_CALL_INDIRECT, K_MEMARG, K_ZERO, K_I32, K_I64, K_F32, K_F64,
 K_SELECT_T, K_REFTYPE, K_DATA_MEMORY, K_MEMORY_MEMORY, K_ELEM_TABLE, K_TABLE_TABLE, K_ELSE, K_END,
 K_PREFIX_FC, K_SIMD, K_ILLEGAL, K_LANE, K_MEMARG_LANE, K_V128, K_SHUFFLE) = range(26)

_KIND_CODE = {
    "none": K_NONE, "block": K_BLOCK, "label": K_IDX, "br_table": K_BR_TABLE, "func": K_IDX,
    "call_indirect": K_CALL_INDIRECT, "local": K_IDX, "global": K_IDX, "table": K_IDX, "memory": K_ZERO,
    "data": K_IDX, "elem": K_IDX, "memarg": K_MEMARG, "i32": K_I32, "i64": K_I64, "f32": K_F32,
    "f64": K_F64, "select_t": K_SELECT_T, "reftype": K_REFTYPE, "data_memory": K_DATA_MEMORY,
    "memory_memory": K_MEMORY_MEMORY, "elem_table": K_ELEM_TABLE, "table_table": K_TABLE_TABLE,
    "lane": K_LANE, "memarg_lane": K_MEMARG_LANE, "v128": K_V128, "shuffle": K_SHUFFLE,
}

_OP_KIND: list[int] = [K_ILLEGAL] * 256  # one-byte opcodes
_FC_KIND: dict[int, int] = {}  # 0xFC sub-opcode -> kind
_FD_KIND: dict[int, int] = {}  # 0xFD (SIMD) sub-opcode -> kind
for _op, _kind in KIND.items():
    if _op < 0x100:
        _OP_KIND[_op] = _KIND_CODE[_kind]
    else:
        (_FC_KIND if _op >> 8 == 0xFC else _FD_KIND)[_op & 0xFF] = _KIND_CODE[_kind]
_OP_KIND[0x05], _OP_KIND[0x0B], _OP_KIND[0xFC], _OP_KIND[0xFD] = K_ELSE, K_END, K_PREFIX_FC, K_SIMD


# --- LEB128 --------------------------------------------------------------------------------------

def _err(pos: int, msg: str) -> CompileError:
    return CompileError(pos, msg)


def _leb_u(data: bytes, pos: int, bits: int = 32) -> tuple[int, int]:
    """Unsigned LEB128 of at most `bits` bits; unused bits of the last byte must be zero."""
    result = shift = 0
    while True:
        if bits <= 0:
            raise _err(pos, "integer representation too long")
        b = data[pos]
        pos += 1
        if bits < 7 and (b & 0x7F) >= (1 << bits):
            raise _err(pos - 1, "integer too large")
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7
        bits -= 7


def _leb_s(data: bytes, pos: int, bits: int) -> tuple[int, int]:
    """Signed LEB128 of at most `bits` bits; unused bits of the last byte must extend the sign."""
    result = shift = 0
    while True:
        if bits <= 0:
            raise _err(pos, "integer representation too long")
        b = data[pos]
        pos += 1
        if bits < 7:
            mask = (-1 << (bits - 1)) & 0x7F
            if b & mask not in (0, mask):
                raise _err(pos - 1, "integer too large")
        result |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            if b & 0x40:
                result -= 1 << shift
            return result, pos
        bits -= 7


class _Reader:
    """Cursor over the whole image, for everything outside function bodies."""

    __slots__ = ("data", "pos", "len")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0
        self.len = len(data)

    def byte(self) -> int:
        b = self.data[self.pos]
        self.pos += 1
        return b

    def u32(self) -> int:
        v, self.pos = _leb_u(self.data, self.pos, 32)
        return v

    def length(self) -> int:
        """A u32 length or count; it cannot exceed the bytes left (counted from its own start)."""
        start = self.pos
        n = self.u32()
        if n > self.len - start:
            raise _err(start, "length out of bounds")
        return n

    def bytes(self, n: int) -> bytes:
        if self.pos + n > self.len:
            raise _err(self.len, _EOF)
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def name(self) -> str:
        start = self.pos
        raw = self.bytes(self.length())
        try:
            return raw.decode("utf-8")  # Python's codec rejects overlongs, surrogates, > U+10FFFF
        except UnicodeDecodeError:
            raise _err(start, "malformed UTF-8 encoding") from None

    def valtype(self) -> ValType:
        pos = self.pos
        b = self.byte()
        t = _VALTYPES.get(b)
        if t is None:
            if b >= 0x80:
                raise _err(pos, "integer representation too long")
            raise _err(pos, "malformed value type" if b > 0x70 else "malformed reference type")
        return t

    def reftype(self) -> ValType:
        pos = self.pos
        t = _REFTYPES.get(self.byte())
        if t is None:
            raise _err(pos, "malformed reference type")
        return t

    def limits(self) -> Limits:
        pos = self.pos
        flag = self.byte()  # a u1 in LEB128
        if flag & 0x7F > 1:
            raise _err(pos, "integer too large")
        if flag & 0x80:
            raise _err(pos + 1, "integer representation too long")
        lo = self.u32()
        return Limits(lo, self.u32() if flag else None)

    def global_type(self) -> GlobalType:
        t = self.valtype()
        pos = self.pos
        mut = self.byte()
        if mut > 1:
            raise _err(pos, "malformed mutability")
        return GlobalType(t, bool(mut))


# --- instructions --------------------------------------------------------------------------------

def _block_type(data: bytes, pos: int) -> tuple[Any, int]:
    b = data[pos]
    if b == 0x40:
        return None, pos + 1
    if b & 0xC0 == 0x40:  # a one-byte negative s33: a value type
        t = _VALTYPES.get(b)
        if t is None:
            raise _err(pos, "malformed value type")
        return t, pos + 1
    idx, end = _leb_s(data, pos, 33)
    if idx < 0:
        raise _err(pos, f"unknown type {idx}")
    return idx, end


def _decode_instrs(data: bytes, pos: int) -> tuple[list[ir.Instr], int]:
    """Decode instructions up to and including the `end` closing the implicit outer block.

    Returns (instrs, position after that end). Blocks are
    tracked only to know where the sequence ends and that `else` closes an `if` (one flag per
    open block: "is an if still in its then-arm").
    """
    out: list[ir.Instr] = []
    append = out.append
    open_ifs: list[bool] = [False]  # the implicit outer block
    op_kind = _OP_KIND
    leb_u = _leb_u
    while True:
        start = pos
        op = data[pos]
        pos += 1
        k = op_kind[op]
        if k == K_NONE:
            append((op, None, start))
        elif k == K_IDX:  # one u32 index: locals, globals, calls, branches, tables...
            b = data[pos]
            if b < 0x80:
                pos += 1
                append((op, b, start))
            else:
                v, pos = leb_u(data, pos)
                append((op, v, start))
        elif k == K_I32:
            b = data[pos]
            if b < 0x40:  # one-byte non-negative: the common small constant
                pos += 1
                append((op, b, start))
            else:
                v, pos = _leb_s(data, pos, 32)
                append((op, v, start))
        elif k == K_END:
            append((op, None, start))
            open_ifs.pop()
            if not open_ifs:
                return out, pos
        elif k == K_MEMARG:
            align = data[pos]
            if align < 0x20:  # fast path: one-byte alignment (and offset)
                offset = data[pos + 1]
                if offset < 0x80:
                    pos += 2
                else:
                    offset, pos = leb_u(data, pos + 1)
                append((op, (align, offset), start))
            else:
                memarg, pos = _memarg(data, pos)
                append((op, memarg, start))
        elif k == K_BLOCK:
            bt, pos = _block_type(data, pos)
            append((op, bt, start))
            open_ifs.append(op == 0x04)
        elif k == K_ELSE:
            if not open_ifs[-1]:  # else outside an if's then-arm: the decoder wanted an end here
                raise _err(start, "END opcode expected")
            open_ifs[-1] = False
            append((op, None, start))
        elif k == K_I64:
            v, pos = _leb_s(data, pos, 64)
            append((op, v, start))
        elif k == K_F32:
            if pos + 4 > len(data):
                raise IndexError
            append((op, int.from_bytes(data[pos:pos + 4], "little"), start))
            pos += 4
        elif k == K_F64:
            if pos + 8 > len(data):
                raise IndexError
            append((op, int.from_bytes(data[pos:pos + 8], "little"), start))
            pos += 8
        elif k == K_BR_TABLE:
            n_start = pos
            n, pos = leb_u(data, pos)
            if n > len(data) - n_start:
                raise _err(n_start, "length out of bounds")
            labels = []
            for _ in range(n):
                v, pos = leb_u(data, pos)
                labels.append(v)
            default, pos = leb_u(data, pos)
            append((op, (tuple(labels), default), start))
        elif k == K_CALL_INDIRECT:
            ti, pos = leb_u(data, pos)
            tab, pos = leb_u(data, pos)
            append((op, (ti, tab), start))
        elif k == K_ZERO:  # memory.size / memory.grow: a reserved zero byte, not an LEB index
            if data[pos] != 0:
                raise _err(pos, "zero byte expected")
            pos += 1
            append((op, 0, start))
        elif k == K_SELECT_T:
            n_start = pos
            n, pos = leb_u(data, pos)
            if n > len(data) - n_start:
                raise _err(n_start, "length out of bounds")
            ts = []
            for _ in range(n):
                t = _VALTYPES.get(data[pos])
                if t is None:
                    raise _err(pos, "malformed value type")
                pos += 1
                ts.append(t)
            append((op, tuple(ts), start))
        elif k == K_REFTYPE:
            t = _REFTYPES.get(data[pos])
            if t is None:
                raise _err(pos, "malformed reference type")
            pos += 1
            append((op, t, start))
        elif k == K_PREFIX_FC:
            sub, pos = leb_u(data, pos)
            k = _FC_KIND.get(sub, K_ILLEGAL)
            op = 0xFC00 | sub
            if k == K_NONE:
                append((op, None, start))
            elif k == K_IDX:
                v, pos = leb_u(data, pos)
                append((op, v, start))
            elif k == K_ZERO:  # memory.fill
                if data[pos] != 0:
                    raise _err(pos, "zero byte expected")
                pos += 1
                append((op, 0, start))
            elif k == K_DATA_MEMORY:  # memory.init
                v, pos = leb_u(data, pos)
                if data[pos] != 0:
                    raise _err(pos, "zero byte expected")
                pos += 1
                append((op, (v, 0), start))
            elif k == K_MEMORY_MEMORY:  # memory.copy
                if data[pos] != 0:
                    raise _err(pos, "zero byte expected")
                if data[pos + 1] != 0:
                    raise _err(pos + 1, "zero byte expected")
                pos += 2
                append((op, (0, 0), start))
            elif k == K_ELEM_TABLE or k == K_TABLE_TABLE:  # table.init / table.copy
                x, pos = leb_u(data, pos)
                y, pos = leb_u(data, pos)
                append((op, (x, y), start))
            else:
                raise _err(start, f"illegal opcode fc {sub:02x}")
        elif k == K_SIMD:
            sub, pos = leb_u(data, pos)
            k = _FD_KIND.get(sub, K_ILLEGAL) if sub < 0x100 else K_ILLEGAL
            op = 0xFD00 | sub
            if k == K_NONE:
                append((op, None, start))
            elif k == K_MEMARG:
                memarg, pos = _memarg(data, pos)
                append((op, memarg, start))
            elif k == K_MEMARG_LANE:
                memarg, pos = _memarg(data, pos)
                append((op, (memarg, data[pos]), start))
                pos += 1
            elif k == K_LANE:
                append((op, data[pos], start))
                pos += 1
            elif k == K_V128 or k == K_SHUFFLE:
                if pos + 16 > len(data):
                    raise IndexError
                raw = data[pos:pos + 16]
                append((op, int.from_bytes(raw, "little") if k == K_V128 else tuple(raw), start))
                pos += 16
            else:
                raise _err(start, f"illegal opcode fd {sub:02x}")
        else:
            raise _err(start, f"illegal opcode {op:02x}")


def _memarg(data: bytes, pos: int) -> tuple[tuple[int, int], int]:
    """((alignment exponent, offset), position after them)."""
    align, pos = _leb_u(data, pos)
    if align >= 32:
        raise _err(pos - 1, "malformed memop flags")
    offset, pos = _leb_u(data, pos)
    return (align, offset), pos


def _const_expr(r: _Reader) -> ir.Expr:
    """A constant expression, decoded like any instruction sequence; stored without its `end`."""
    instrs, r.pos = _decode_instrs(r.data, r.pos)
    instrs.pop()
    return instrs


# --- sections ------------------------------------------------------------------------------------

def _type_section(r: _Reader, m: ir.Module) -> None:
    for _ in range(r.length()):
        pos = r.pos
        form = r.byte()  # an s7: a continuation bit makes it too long
        if form != 0x60:
            raise _err(pos, "integer representation too long" if form & 0x80 else "malformed function type")
        params = [r.valtype() for _ in range(r.length())]
        results = [r.valtype() for _ in range(r.length())]
        m.types.append(FuncType(params, results))


def _import_section(r: _Reader, m: ir.Module) -> None:
    for _ in range(r.length()):
        module, name = r.name(), r.name()
        pos = r.pos
        kind = _EXTERN_KINDS.get(r.byte())
        if kind is None:
            raise _err(pos, "malformed import kind")
        desc: Any
        if kind is ir.ExternKind.FUNC:
            desc = r.u32()
        elif kind is ir.ExternKind.TABLE:
            desc = TableType(r.reftype(), r.limits())
        elif kind is ir.ExternKind.MEMORY:
            desc = MemoryType(r.limits())
        else:
            desc = r.global_type()
        m.imports.append(ir.Import(module, name, kind, desc))


def _function_section(r: _Reader, m: ir.Module, func_types: list[int]) -> None:
    for _ in range(r.length()):
        func_types.append(r.u32())


def _table_section(r: _Reader, m: ir.Module) -> None:
    for _ in range(r.length()):
        m.tables.append(TableType(r.reftype(), r.limits()))


def _memory_section(r: _Reader, m: ir.Module) -> None:
    for _ in range(r.length()):
        m.memories.append(MemoryType(r.limits()))


def _global_section(r: _Reader, m: ir.Module) -> None:
    for _ in range(r.length()):
        gt = r.global_type()
        m.globals.append(ir.Global(gt, _const_expr(r)))


def _export_section(r: _Reader, m: ir.Module) -> None:
    for _ in range(r.length()):
        name = r.name()
        pos = r.pos
        kind = _EXTERN_KINDS.get(r.byte())
        if kind is None:
            raise _err(pos, "malformed export kind")
        m.exports.append(ir.Export(name, kind, r.u32()))


def _start_section(r: _Reader, m: ir.Module) -> None:
    m.start = r.u32()


def _elem_section(r: _Reader, m: ir.Module) -> None:
    """Flags: bit 0 passive/declarative, bit 1 explicit table (active) or declarative, bit 2
    expressions instead of function indices."""
    for _ in range(r.length()):
        pos = r.pos
        flags = r.u32()
        if flags > 7:
            raise _err(pos, "malformed elements segment kind")
        table, offset = 0, None
        if flags & 1:
            mode = ir.SegmentMode.DECLARATIVE if flags & 2 else ir.SegmentMode.PASSIVE
        else:
            mode = ir.SegmentMode.ACTIVE
            if flags & 2:
                table = r.u32()
            offset = _const_expr(r)
        etype = ValType.FUNCREF
        if flags & 4:
            if flags & 3:
                etype = r.reftype()
            init = [_const_expr(r) for _ in range(r.length())]
        else:
            if flags & 3:
                kpos = r.pos
                if r.byte() != 0x00:
                    raise _err(kpos, "malformed element kind")
            init = []
            for _ in range(r.length()):
                ipos = r.pos
                init.append([(0xD2, r.u32(), ipos)])  # ref.func idx
        m.elems.append(ir.Elem(mode, etype, init, table, offset))


def _data_count_section(r: _Reader, m: ir.Module) -> None:
    m.data_count = r.u32()


def _code_section(r: _Reader, m: ir.Module, func_types: list[int]) -> None:
    for i in range(r.length()):
        entry = r.pos
        size = r.length()
        start = r.pos
        locals_: list[ValType] = []
        total = 0
        for _ in range(r.length()):
            n = r.u32()
            t = r.valtype()
            total += n
            if total > MAX_LOCALS:  # checked before allocating; the spec's own limit is 2^32 - 1
                raise _err(start, "too many locals")
            locals_.extend([t] * n)
        body, r.pos = _decode_instrs(r.data, r.pos)
        if r.pos != start + size:
            raise _err(start, "section size mismatch")
        ti = func_types[i] if i < len(func_types) else -1  # a count mismatch is reported at the end
        m.funcs.append(ir.Func(ti, locals_, body, entry))


def _data_section(r: _Reader, m: ir.Module) -> None:
    for _ in range(r.length()):
        pos = r.pos
        flags = r.u32()
        if flags > 2:
            raise _err(pos, "malformed data segment kind")
        if flags == 1:
            m.datas.append(ir.Data(ir.SegmentMode.PASSIVE, r.bytes(r.length())))
        else:
            memory = r.u32() if flags == 2 else 0
            offset = _const_expr(r)
            m.datas.append(ir.Data(ir.SegmentMode.ACTIVE, r.bytes(r.length()), memory, offset))


def _name_section(payload: bytes, m: ir.Module) -> None:
    """The `name` custom section: module and function names. Errors in it are ignored (custom
    sections are not validated), keeping whatever was read before the error."""
    r = _Reader(payload)
    try:
        while r.pos < r.len:
            sub = r.byte()
            size = r.length()
            end = r.pos + size
            if sub == 0:
                m.module_name = r.name()
            elif sub == 1:
                names = {}
                for _ in range(r.length()):
                    idx = r.u32()
                    names[idx] = r.name()
                m.func_names = names
            r.pos = end
    except (CompileError, IndexError):
        pass


_SECTIONS = {
    1: _type_section, 2: _import_section, 4: _table_section, 5: _memory_section,
    6: _global_section, 7: _export_section, 8: _start_section, 9: _elem_section,
    11: _data_section, 12: _data_count_section,
}


def decode(data: bytes) -> ir.Module:
    """Decode a binary module. Raises CompileError (and nothing else) on malformed input."""
    data = bytes(data)
    # The decoder allocates hundreds of thousands of small tuples and no cycles: the cyclic GC
    # would only rescan them again and again (it triples the decoding time of a big module).
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _decode(data)
    except IndexError:
        raise CompileError(len(data), _EOF) from None
    except (RecursionError, MemoryError, OverflowError) as e:  # belt and braces: never escape raw
        raise CompileError(None, f"module too complex to decode: {type(e).__name__}") from None
    finally:
        if gc_was_enabled:
            gc.enable()


def _decode(data: bytes) -> ir.Module:
    if len(data) < 4:
        raise CompileError(len(data), "unexpected end")
    if data[:4] != b"\0asm":
        raise CompileError(0, "magic header not detected")
    if len(data) < 8:
        raise CompileError(len(data), "unexpected end")
    if data[4:8] != b"\x01\0\0\0":
        raise CompileError(4, "unknown binary version")

    m = ir.Module()
    r = _Reader(data)
    r.pos = 8
    func_types: list[int] = []
    last_rank = 0
    while r.pos < r.len:
        id_pos = r.pos
        sid = r.byte()
        if sid != 0:
            rank = _SECTION_RANK.get(sid)
            if rank is None:
                raise _err(id_pos, "malformed section id")
            if rank <= last_rank:  # out of order or repeated
                raise _err(id_pos, "unexpected content after last section")
            last_rank = rank
        size = r.length()
        start = r.pos
        if sid == 0:
            name = r.name()
            rest = start + size - r.pos
            if rest < 0:
                raise _err(r.len, _EOF)
            payload = r.bytes(rest)
            m.customs.append((name, payload))
            if name == "name":
                _name_section(payload, m)
        elif sid == 3:
            _function_section(r, m, func_types)
        elif sid == 10:
            _code_section(r, m, func_types)
        else:
            _SECTIONS[sid](r, m)
        if r.pos != start + size:
            raise _err(start, "section size mismatch")

    if len(func_types) != len(m.funcs):
        raise _err(r.len, "function and code section have inconsistent lengths")
    if m.data_count is not None and m.data_count != len(m.datas):
        raise _err(r.len, "data count and data section have inconsistent lengths")
    # memory.init/data.drop without a data count section: validate() reports it, after the
    # index checks (modules converted from text have no data count section when no data segment).
    return m
