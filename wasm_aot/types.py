"""Public wasm types and values (API.md). Shared by the decoder, the compiler and the loader."""
from __future__ import annotations

import enum
import math
import struct
from typing import Any, Iterable


class ValType(enum.Enum):
    """A wasm value type; the value is its binary encoding byte."""

    I32 = 0x7F
    I64 = 0x7E
    F32 = 0x7D
    F64 = 0x7C
    V128 = 0x7B
    FUNCREF = 0x70
    EXTERNREF = 0x6F

    @property
    def is_ref(self) -> bool:
        return self in (ValType.FUNCREF, ValType.EXTERNREF)

    @property
    def is_num(self) -> bool:
        return not self.is_ref

    def __repr__(self) -> str:
        return f"wa.{self.name}"

    __str__ = lambda self: self.name.lower()  # noqa: E731  (as in the text format)


I32, I64, F32, F64, V128 = ValType.I32, ValType.I64, ValType.F32, ValType.F64, ValType.V128
FUNCREF, EXTERNREF = ValType.FUNCREF, ValType.EXTERNREF


_set = object.__setattr__


class Record:
    """A small immutable value compared by its fields: what @dataclass(frozen=True) makes, without
    importing dataclasses (~10 ms) in a process that only loads artifacts."""

    __slots__ = ()
    _fields: tuple[str, ...] = ()

    def _values(self) -> tuple:
        return tuple(getattr(self, f) for f in self._fields)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._values() == other._values()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{f}={getattr(self, f)!r}' for f in self._fields)})"

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"cannot assign to field {name!r}: {type(self).__name__} is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"cannot delete field {name!r}: {type(self).__name__} is immutable")

    def __reduce__(self) -> tuple:
        return type(self), self._values()


def _valtype(x: Any, what: str) -> ValType:
    if x.__class__ is not ValType:
        raise TypeError(f"{what} must be a wa value type (wa.I32, ...), not {x!r}")
    return x


def _valtypes(xs: Iterable[ValType], what: str) -> tuple[ValType, ...]:
    if isinstance(xs, (str, bytes)):
        raise TypeError(f"{what} must be a sequence of wa value types (wa.I32, ...), not {type(xs).__name__}")
    return tuple(_valtype(x, f"each of {what}") for x in xs)


def _limits(x: Any) -> "Limits":
    if not isinstance(x, Limits):
        raise TypeError(f"limits must be a wa.Limits, not {type(x).__name__}")
    return x


class FuncType(Record):
    __slots__ = _fields = ("params", "results")
    params: tuple[ValType, ...]
    results: tuple[ValType, ...]

    def __init__(self, params: Iterable[ValType] = (), results: Iterable[ValType] = ()) -> None:
        _set(self, "params", _valtypes(params, "params"))
        _set(self, "results", _valtypes(results, "results"))

    @classmethod
    def _of(cls, params: tuple[ValType, ...], results: tuple[ValType, ...]) -> "FuncType":
        """From tuples of ValTypes the caller vouches for (the loader's, made from a checked artifact)."""
        t = object.__new__(cls)
        _set(t, "params", params)
        _set(t, "results", results)
        return t

    # the canonical type ids of call_indirect are keyed by FuncType: keep these two cheap
    def __eq__(self, other: object) -> bool:
        if other.__class__ is not FuncType:
            return NotImplemented
        return self.params == other.params and self.results == other.results  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((self.params, self.results))

    def __str__(self) -> str:
        p = ", ".join(map(str, self.params))
        r = ", ".join(map(str, self.results))
        return f"({p}) -> ({r})"

    def __repr__(self) -> str:
        return f"FuncType([{', '.join(map(repr, self.params))}], [{', '.join(map(repr, self.results))}])"


class Limits(Record):
    __slots__ = _fields = ("min", "max")
    min: int
    max: int | None

    def __init__(self, min: int, max: int | None = None) -> None:
        for x in (min, max):
            if x is not None and (not isinstance(x, int) or isinstance(x, bool) or x < 0):
                raise (TypeError if not isinstance(x, int) else ValueError)(f"invalid limit {x!r}")
        _set(self, "min", min)
        _set(self, "max", max)

    def __str__(self) -> str:
        return f"{self.min}..{'' if self.max is None else self.max}"


class MemoryType(Record):
    __slots__ = _fields = ("limits",)
    limits: Limits

    def __init__(self, limits: Limits) -> None:
        _set(self, "limits", _limits(limits))

    def __str__(self) -> str:
        return f"memory {self.limits}"


class TableType(Record):
    __slots__ = _fields = ("elem", "limits")
    elem: ValType
    limits: Limits

    def __init__(self, elem: ValType, limits: Limits) -> None:
        _set(self, "elem", _valtype(elem, "elem"))
        _set(self, "limits", _limits(limits))

    def __str__(self) -> str:
        return f"table {self.limits} {self.elem}"


class GlobalType(Record):
    __slots__ = _fields = ("valtype", "mutable")
    valtype: ValType
    mutable: bool

    def __init__(self, valtype: ValType, mutable: bool = False) -> None:
        if not isinstance(mutable, bool):
            raise TypeError(f"mutable must be a bool, not {type(mutable).__name__}")
        _set(self, "valtype", _valtype(valtype, "valtype"))
        _set(self, "mutable", mutable)

    def __str__(self) -> str:
        return f"global {'mut ' if self.mutable else ''}{self.valtype}"


ExternType = FuncType | MemoryType | TableType | GlobalType


class ImportType(Record):
    __slots__ = _fields = ("module", "name", "type")
    module: str
    name: str
    type: ExternType

    def __init__(self, module: str, name: str, type: ExternType) -> None:
        _set(self, "module", module)
        _set(self, "name", name)
        _set(self, "type", type)


class ExportType(Record):
    __slots__ = _fields = ("name", "type")
    name: str
    type: ExternType

    def __init__(self, name: str, type: ExternType) -> None:
        _set(self, "name", name)
        _set(self, "type", type)


_MASK = {I32: (1 << 32) - 1, I64: (1 << 64) - 1, F32: (1 << 32) - 1, F64: (1 << 64) - 1, V128: (1 << 128) - 1}


def _signed(bits: int, width: int) -> int:
    return bits - (1 << width) if bits >> (width - 1) else bits


def _float(x: Any) -> float:
    try:
        return float(x)
    except OverflowError:
        raise ValueError(f"{type(x).__name__} too large for a float") from None


def _f32_bits(x: float) -> int:
    """x rounded to f32, as a typed call does (beyond the largest f32, an infinity)."""
    try:
        packed = struct.pack("<f", x)
    except OverflowError:
        packed = struct.pack("<f", math.copysign(math.inf, x))
    return struct.unpack("<I", packed)[0]


class Value:
    """Exactly one wasm value. Numbers are kept as their bit pattern, so NaN payloads survive."""

    __slots__ = ("type", "_bits", "_ref")

    def __init__(self, valtype: ValType, x: Any) -> None:
        self.type = _valtype(valtype, "a Value's type")
        self._ref = None
        if valtype.is_ref:
            self._bits = 0
            self._ref = x
        elif valtype in (F32, F64) and (not isinstance(x, (int, float)) or isinstance(x, bool)):
            raise TypeError(f"{valtype} value must be a float, not {type(x).__name__}")
        elif valtype is F32:
            self._bits = _f32_bits(_float(x))
        elif valtype is F64:
            self._bits = struct.unpack("<Q", struct.pack("<d", _float(x)))[0]
        else:
            width = _MASK[valtype].bit_length()
            if not isinstance(x, int) or isinstance(x, bool):
                raise TypeError(f"{valtype} value must be an int, not {type(x).__name__}")
            if not -(1 << (width - 1)) <= x < (1 << width):
                raise ValueError(f"{x} does not fit in {valtype}")
            self._bits = x & _MASK[valtype]

    @classmethod
    def from_bits(cls, valtype: ValType, bits: int) -> "Value":
        if valtype.is_ref:
            raise TypeError("references have no bit pattern")
        _valtype(valtype, "a Value's type")
        if not isinstance(bits, int) or isinstance(bits, bool) or not 0 <= bits <= _MASK[valtype]:
            raise ValueError(f"{bits!r} is not a bit pattern of {valtype}")
        v = cls.__new__(cls)
        v.type, v._ref, v._bits = valtype, None, bits
        return v

    @property
    def bits(self) -> int:
        if self.type.is_ref:
            raise TypeError("references have no bit pattern")
        return self._bits

    @property
    def value(self) -> Any:
        t = self.type
        if t is I32:
            return _signed(self._bits, 32)
        if t is I64:
            return _signed(self._bits, 64)
        if t is F32:
            return struct.unpack("<f", struct.pack("<I", self._bits))[0]
        if t is F64:
            return struct.unpack("<d", struct.pack("<Q", self._bits))[0]
        if t is V128:
            return self._bits
        return self._ref

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Value):
            return NotImplemented
        if self.type.is_ref:
            return other.type is self.type and self._ref is other._ref
        return self.type is other.type and self._bits == other._bits

    def __hash__(self) -> int:
        return hash((self.type, self._bits, id(self._ref)))

    def __repr__(self) -> str:
        return f"Value({self.type!r}, {self.value!r})"
