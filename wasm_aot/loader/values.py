"""Converting between Python values, wa.Value and the 16-byte slots values cross in."""
from __future__ import annotations

import bisect
import weakref
import math
import struct
from typing import Any, Callable

from ..types import ValType, Value
from .locks import fork_safe_lock
from .runtime import ffi

_f32 = struct.Struct("<f")
_u32 = struct.Struct("<I")
_f64 = struct.Struct("<d")
_u64 = struct.Struct("<Q")


def f32_bits(x: float) -> int:
    try:
        return _u32.unpack(_f32.pack(x))[0]
    except OverflowError:  # beyond f32's range: rounds to infinity, as a C cast would
        return 0x7F800000 | (0x80000000 if x < 0 else 0)


def f64_bits(x: float) -> int:
    return _u64.unpack(_f64.pack(x))[0]


def bits_f32(b: int) -> float:
    return _f32.unpack(_u32.pack(b))[0]


def bits_f64(b: int) -> float:
    return _f64.unpack(_u64.pack(b))[0]


def _int_bits(width: int, name: str) -> Callable[[Any], int]:
    lo, hi, mask = -(1 << (width - 1)), 1 << width, (1 << width) - 1

    def conv(x: Any) -> int:
        if type(x) is not int:
            if isinstance(x, Value):
                return _value_bits(x, name)
            if isinstance(x, bool) or not isinstance(x, int):
                raise TypeError(f"expected an int for {name}, got {type(x).__name__}")
        if not lo <= x < hi:
            raise ValueError(f"{x} is out of range for {name}")
        return x & mask
    return conv


def _value_bits(x: Value, name: str) -> int:
    """A wa.Value given where a number goes: its exact bits (NaN payloads cross as they are)."""
    if str(x.type) != name:
        raise TypeError(f"expected {name}, got a wa.Value of {x.type}")
    return x._bits


def _float_bits(conv: Callable[[float], int], name: str) -> Callable[[Any], int]:
    def f(x: Any) -> int:
        if isinstance(x, Value):
            return _value_bits(x, name)
        if not isinstance(x, (float, int)) or isinstance(x, bool):
            raise TypeError(f"expected a float for {name}, got {type(x).__name__}")
        return conv(float(x))
    return f


# ---- references: a funcref is the address of a wa_funcref, an externref a registry key ----

_externs: dict[int, Any] = {}  # kept alive for as long as the process: wasm may hold them anywhere
# (start, end, weak reference to the owner) of each instance's funcref array, by start address: one
# list, so that a change by another thread is a single step
_funcref_entries: list[tuple[int, int, Any]] = []


def _start(entry: tuple) -> int:
    return entry[0]


# Changes to _funcref_entries (a search, then an insert or a delete at its result) are made under this
# lock: two threads instantiating at once could otherwise insert out of order, or delete the wrong
# entry (an IndexError was seen). Readers take no lock: see funcref_value.
_entries_lock = fork_safe_lock()


def externref_bits(x: Any) -> int:
    if x is None:
        return 0
    if isinstance(x, Value):
        x = x.value
    _externs[id(x)] = x
    return id(x)


def externref_value(bits: int) -> Any:
    return None if bits == 0 else _externs[bits]


_host_cells: "weakref.WeakValueDictionary[int, Any]" = weakref.WeakValueDictionary()  # cell address -> host Function
FUNCREF_SIZE = ffi.sizeof("wa_funcref")
_dead_ranges: list[int] = []  # starts of collected owners' ranges, dropped before the next change


def register_host_cell(addr: int, fn: Any) -> None:
    _host_cells[addr] = fn


def register_funcrefs(start: int, count: int, owner: Any) -> None:
    """owner.funcref_object(index) turns an entry of its funcs array back into a Function. The entry
    goes when the owner does (weakly held: an instance must be collectable)."""
    # the weak reference's callback only records the death (see _drop_dead); cheaper than a finalize
    entry = (start, start + count * FUNCREF_SIZE, weakref.ref(owner, lambda _r, s=start: _dead_ranges.append(s)))
    with _entries_lock:
        _drop_dead()
        _funcref_entries.insert(bisect.bisect(_funcref_entries, start, key=_start), entry)


def _drop_dead() -> None:
    # (under _entries_lock) not in the finalizer itself: that may run at any allocation, even in the
    # middle of a change
    while _dead_ranges:
        start = _dead_ranges.pop()
        k = bisect.bisect_left(_funcref_entries, start, key=_start)
        if k < len(_funcref_entries) and _funcref_entries[k][0] == start:
            del _funcref_entries[k]


def funcref_value(bits: int) -> Any:
    if bits == 0:
        return None
    host = _host_cells.get(bits)
    if host is not None:
        return host
    # another thread may insert or drop an entry between the search and the read: an entry carries
    # its own bounds, so a stale position is seen (and searched again), never misread
    for _ in range(8):
        k = bisect.bisect_right(_funcref_entries, bits, key=_start) - 1
        if k < 0:
            break
        try:
            start, end, ref = _funcref_entries[k]
        except IndexError:
            continue
        if start > bits:
            continue
        owner = ref()
        if bits < end and owner is not None:
            return owner.funcref_object((bits - start) // FUNCREF_SIZE)
        if k + 1 >= len(_funcref_entries) or _funcref_entries[k + 1][0] > bits:
            break  # really no array holds it
    raise ValueError(f"unknown function reference {bits:#x}")


def funcref_bits(x: Any) -> int:
    if x is None:
        return 0
    if isinstance(x, Value):
        x = x.value
        if x is None:
            return 0
    addr = getattr(x, "_funcref_addr", None)
    if addr is None:
        from .externs import Function
        if isinstance(x, Function):
            raise ValueError("a host function can be used as a funcref only once a module imports it")
        raise TypeError(f"expected a wa.Function or None for funcref, got {type(x).__name__}")
    return addr


# ---- per value type: Python value -> bits, bits -> Python value ----

TO_BITS: dict[ValType, Callable[[Any], int]] = {
    ValType.I32: _int_bits(32, "i32"),
    ValType.I64: _int_bits(64, "i64"),
    ValType.F32: _float_bits(f32_bits, "f32"),
    ValType.F64: _float_bits(f64_bits, "f64"),
    ValType.V128: _int_bits(128, "v128"),
    ValType.FUNCREF: funcref_bits,
    ValType.EXTERNREF: externref_bits,
}

FROM_BITS: dict[ValType, Callable[[int], Any]] = {
    ValType.I32: lambda b: b - (1 << 32) if b >> 31 else b,
    ValType.I64: lambda b: b - (1 << 64) if b >> 63 else b,
    ValType.F32: bits_f32,
    ValType.F64: bits_f64,
    ValType.V128: lambda b: b,
    ValType.FUNCREF: funcref_value,
    ValType.EXTERNREF: externref_value,
}

_MASK = {ValType.I32: 0xFFFFFFFF, ValType.F32: 0xFFFFFFFF}


def value_bits(v: Value) -> int:
    """The slot bits of a wa.Value (references become their addresses/keys)."""
    if v.type is ValType.FUNCREF:
        return funcref_bits(v.value)
    if v.type is ValType.EXTERNREF:
        return externref_bits(v.value)
    return v.bits


def bits_value(t: ValType, bits: int) -> Value:
    if t.is_ref:
        return Value(t, FROM_BITS[t](bits))
    return Value.from_bits(t, bits)


def write_slot(u64: Any, i: int, t: ValType, bits: int) -> None:
    if t is ValType.V128:
        u64[2 * i] = bits & 0xFFFFFFFFFFFFFFFF
        u64[2 * i + 1] = bits >> 64
    else:
        u64[2 * i] = bits


def read_slot(u64: Any, i: int, t: ValType) -> int:
    if t is ValType.V128:
        return u64[2 * i] | (u64[2 * i + 1] << 64)
    b = u64[2 * i]
    m = _MASK.get(t)
    return b & m if m else b


def is_nan_f32(bits: int) -> bool:
    return (bits & 0x7F800000) == 0x7F800000 and (bits & 0x7FFFFF) != 0


__all__ = ["TO_BITS", "FROM_BITS", "math"]
