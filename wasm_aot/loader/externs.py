"""The externs of API.md: Function, Memory, Global, Table, and what host functions receive."""
from __future__ import annotations

import threading
import weakref
from typing import Any, Callable, Iterable

from ..errors import Error, Trap, TrapCode
from ..types import FuncType, GlobalType, Limits, MemoryType, TableType, ValType, Value
from . import values as V
from .frames import describe
from .. import _fastcall
from .runtime import HOST_CALL_FAST_PTR, HOST_CALL_PTR, ffi, lib, register_host, take_host_error, unregister_host

SLOT = 16
_NO_MAX32 = 0xFFFFFFFF
_tls = threading.local()


def _scratch() -> tuple[Any, Any]:
    s = getattr(_tls, "frames", None)
    if s is None:
        s = _tls.frames = (ffi.new("uintptr_t[64]"), ffi.new("uint32_t *"))
    return s


def trap_from(rc: int, pcs: list[int]) -> None:
    """Raise the wa.Trap for a wa_invoke return code (the host's exception as its cause)."""
    trap = Trap(TrapCode(rc), frames=describe(pcs))
    cause = take_host_error() if rc == TrapCode.HOST else None
    if isinstance(cause, Trap) or (cause is not None and not isinstance(cause, Exception)):
        # a trap inside a nested wasm call, surfacing through a host function, keeps its code;
        # KeyboardInterrupt, SystemExit and the like go on as themselves (the wasm frames are gone)
        raise cause
    if cause is not None:
        raise trap from cause
    raise trap


def invoke(tramp: Any, ctx: Any, code: Any, slots: Any) -> None:
    """Enter wasm through a trampoline; a trap becomes wa.Trap."""
    frames, n = _scratch()
    rc = lib.wa_invoke(tramp, ctx, code, slots, frames, n)
    if rc:
        trap_from(rc, [frames[i] for i in range(n[0])])


def _kinds(types: Iterable[ValType]) -> bytes:
    """The signature as _fastcall reads it: one encoding byte per value."""
    return bytes(t.value for t in types)


def _addr(p: Any) -> int:
    return int(ffi.cast("uintptr_t", p))


class Context:
    """What a host function created with pass_context=True receives first."""

    __slots__ = ("_instance",)

    def __init__(self, instance: Any) -> None:
        # weak: the context lives in the instance's host bindings, and must not keep it alive
        self._instance = weakref.ref(instance) if instance is not None else None

    @property
    def instance(self) -> Any:
        return self._instance() if self._instance is not None else None

    @property
    def data(self) -> Any:
        return self.instance.data if self.instance is not None else None

    def memory(self, name: str | None = None) -> "Memory":
        inst = self.instance
        if inst is None:
            raise Error("this host function has no calling instance")
        if name is not None:
            m = inst.exports.get(name)
            if not isinstance(m, Memory):
                raise Error(f"the instance exports no memory named {name!r}")
            return m
        if inst._memory is None:
            raise Error("the calling instance has no memory")
        return inst._memory

    def __repr__(self) -> str:
        return f"<wa.Context of {self.instance!r}>"


class Function(_fastcall.Callable):
    """A function: a host function (a Python callable with a wasm type) or a wasm export.

    Calls of wasm functions whose signatures have no reference types (numbers and v128) go through C
    (_fastcall.Callable); the rest, and host functions called from Python, through _call_slow."""

    def __init__(self, fn: Callable[..., Any], type: FuncType, pass_context: bool = False) -> None:
        if not callable(fn):
            raise TypeError("wa.Function needs a callable")
        if not isinstance(type, FuncType):
            raise TypeError("wa.Function needs a wa.FuncType")
        self._fn = fn
        self._type = type
        self._pass_context = pass_context
        self._funcref_addr: int | None = None  # its own funcref cell, made when a module first imports it
        self._funcref_cell: Any = None  # (wa_funcref cdata, the HostBinding its ctx points to)
        self._owner = None

    @classmethod
    def _wasm(cls, owner: Any, index: int, funcref: Any, funcref_addr: int, sig: "WasmSignature") -> "Function":
        f = cls.__new__(cls)
        f._fn = None
        f._type = sig.type
        f._pass_context = False
        f._owner = owner  # keeps the instance (and its code) alive
        f._index = index
        f._funcref = funcref
        f._funcref_addr = funcref_addr
        f._tramp = sig.tramp
        f._to_bits = sig.to_bits
        f._nslots = sig.nslots
        f._arm(sig.tramp_addr, _addr(funcref.ctx), _addr(funcref.code), sig.kinds_params, sig.kinds_results, trap_from)
        return f

    @property
    def type(self) -> FuncType:
        return self._type

    @property
    def is_host(self) -> bool:
        return self._fn is not None

    def host_binding(self, instance: Any) -> "HostBinding":
        """The wa_hostfunc through which `instance`'s code calls this host function; the instance
        owns it (and with it the callback's registration)."""
        hf = ffi.new("wa_hostfunc *")
        t = self._type
        ctx = Context(instance) if self._pass_context else None
        fast = _fastcall.host_entry(self._fn, ctx, _kinds(t.params), _kinds(t.results))
        if fast is not None:  # numeric signature: called from C, no cffi callback
            cap, addr = fast
            hf.call = HOST_CALL_FAST_PTR
            hf.handle = ffi.cast("void *", addr)
            return HostBinding(hf, cap)
        h = register_host(_host_entry(self, ctx, weakref.ref(instance) if instance is not None else None))
        hf.call = HOST_CALL_PTR
        hf.handle = ffi.cast("void *", h)
        return HostBinding(hf, h)

    def _call_slow(self, *args: Any) -> Any:
        t = self._type
        if len(args) != len(t.params):
            raise TypeError(f"expected {len(t.params)} argument(s) {t}, got {len(args)}")
        if self._fn is not None:
            for conv, a in zip([V.TO_BITS[p] for p in t.params], args):
                conv(a)  # the same checks as for a wasm function
            return self._fn(*((Context(None),) if self._pass_context else ()), *args)
        slots = ffi.new("uint8_t[]", self._nslots * SLOT)
        u64 = ffi.cast("uint64_t *", slots)
        for i, (conv, p, a) in enumerate(zip(self._to_bits, t.params, args)):
            V.write_slot(u64, i, p, conv(a))
            if p is ValType.FUNCREF:  # wasm may keep it (in a table, a global): so does its instance
                keep_referent(self._owner._held, a)
        fr = self._funcref
        invoke(self._tramp, fr.ctx, fr.code, slots)
        res = [V.FROM_BITS[r](V.read_slot(u64, i, r)) for i, r in enumerate(t.results)]
        if not res:
            return None
        return res[0] if len(res) == 1 else tuple(res)

    def call(self, args: Iterable[Value]) -> list[Value]:
        """Call with wa.Values, exactly (NaN payloads included); returns a list of wa.Value."""
        args = list(args)
        t = self._type
        if len(args) != len(t.params):
            raise TypeError(f"expected {len(t.params)} argument(s) {t}, got {len(args)}")
        for a, p in zip(args, t.params):
            if not isinstance(a, Value) or a.type is not p:
                raise TypeError(f"expected wa.Value of type {p}, got {a!r}")
        if self._fn is not None:
            r = self._fn(*((Context(None),) if self._pass_context else ()), *[a.value for a in args])
            return [Value(rt, x) for rt, x in zip(t.results, _results_tuple(r, t))]
        slots = ffi.new("uint8_t[]", self._nslots * SLOT)
        u64 = ffi.cast("uint64_t *", slots)
        for i, a in enumerate(args):
            V.write_slot(u64, i, a.type, V.value_bits(a))
            if a.type is ValType.FUNCREF:
                keep_referent(self._owner._held, a)
        fr = self._funcref
        invoke(self._tramp, fr.ctx, fr.code, slots)
        return [V.bits_value(r, V.read_slot(u64, i, r)) for i, r in enumerate(t.results)]

    def __repr__(self) -> str:
        if self._fn is not None:
            return f"<wa.Function host {getattr(self._fn, '__name__', self._fn)!r} {self._type}>"
        name = self._owner._m.verified.meta["func_names"].get(str(self._index))
        return f"<wa.Function wasm func[{self._index}]{' $' + name if name else ''} {self._type}>"


class WasmSignature:
    """What every Function of one type in one artifact shares (made once, not per Function)."""

    __slots__ = ("type", "tramp", "tramp_addr", "to_bits", "nslots", "kinds_params", "kinds_results")

    def __init__(self, type: FuncType, tramp: Any) -> None:
        params, results = type.params, type.results
        self.type, self.tramp, self.tramp_addr = type, tramp, _addr(tramp)
        self.to_bits = [V.TO_BITS[t] for t in params]
        self.nslots = max(len(params), len(results), 1)
        self.kinds_params, self.kinds_results = _kinds(params), _kinds(results)


def keep_referent(keepalive: set, v: Any) -> None:
    """Add to `keepalive` what must outlive a stored reference to `v` (a wa.Value or a Python value):
    the instance whose memory its funcref address lies in (a wasm function's instance; a host function
    itself, which owns its funcref cell)."""
    if isinstance(v, Value):
        v = v.value
    if isinstance(v, Function):
        keepalive.add(v._owner if v._owner is not None else v)


def _results_tuple(r: Any, t: FuncType) -> tuple:
    n = len(t.results)
    if n == 0:
        return ()
    if n == 1:
        return (r,)
    if not isinstance(r, (tuple, list)) or len(r) != n:
        raise TypeError(f"host function of type {t} must return a tuple of {n} values, got {r!r}")
    return tuple(r)


class HostBinding:
    """One import of a host function by one instance: its wa_hostfunc, and what keeps the callback
    reachable (a capsule, or a registry handle given back when the binding goes)."""

    __slots__ = ("hostfunc", "_token")

    def __init__(self, hostfunc: Any, token: Any) -> None:
        self.hostfunc, self._token = hostfunc, token

    def __del__(self) -> None:
        if isinstance(self._token, int):
            unregister_host(self._token)


def _host_entry(f: Function, ctx: Context | None, caller: Any) -> Callable[[Any], None]:
    """The callback of host function f for the instance `caller` (a weak reference) that imports it."""
    t = f._type
    params = [(i, p, V.FROM_BITS[p]) for i, p in enumerate(t.params)]
    results = [(i, r, V.TO_BITS[r]) for i, r in enumerate(t.results)]
    fn = f._fn
    gives_funcrefs = ValType.FUNCREF in t.results

    def entry(slots: Any) -> None:
        u64 = ffi.cast("uint64_t *", slots)
        args = [conv(V.read_slot(u64, i, p)) for i, p, conv in params]
        r = fn(ctx, *args) if ctx is not None else fn(*args)
        if results:
            for (i, rt, conv), x in zip(results, _results_tuple(r, t)):
                V.write_slot(u64, i, rt, conv(x))
                if gives_funcrefs and rt is ValType.FUNCREF:  # wasm may keep it: so does its instance
                    inst = caller() if caller is not None else None
                    if inst is not None:
                        keep_referent(inst._held, x)
    return entry


class Memory:
    """A linear memory: 8 GiB of address space reserved, pages committed as it grows."""

    def __init__(self, type: MemoryType, *, guarded: bool = True) -> None:
        if not isinstance(type, MemoryType):
            raise TypeError("wa.Memory needs a wa.MemoryType")
        lim = type.limits
        if lim.min > 65536 or (lim.max is not None and (lim.max > 65536 or lim.max < lim.min)):
            raise ValueError(f"invalid memory limits {lim}")
        self._limits = lim
        self._guarded = bool(guarded)
        self._ptr = lib.wa_memory_new(lim.min, 65536 if lim.max is None else lim.max, 1 if guarded else 0)
        if self._ptr == ffi.NULL:
            raise MemoryError("cannot reserve the address space of a wasm memory")

    def __del__(self) -> None:
        p = getattr(self, "_ptr", None)
        if p is not None and p != ffi.NULL:
            lib.wa_memory_free(p)
            self._ptr = None

    @property
    def type(self) -> MemoryType:
        return MemoryType(Limits(self.size, self._limits.max))

    @property
    def size(self) -> int:
        return self._ptr.size >> 16

    @property
    def data_size(self) -> int:
        return self._ptr.size

    def grow(self, delta: int) -> int:
        if not isinstance(delta, int) or isinstance(delta, bool) or delta < 0:
            raise ValueError("grow needs a non-negative number of pages")
        old = lib.wa_memory_grow(self._ptr, delta) if delta <= 0xFFFFFFFF else 0xFFFFFFFF
        if old == 0xFFFFFFFF:
            raise Error(f"memory cannot grow by {delta} page(s) from {self.size} (maximum {self._limits.max})")
        return old

    @property
    def buffer(self) -> memoryview:
        """Writable view of the memory's bytes; stale once the memory grows."""
        # the view keeps this Memory (hence its mapping) alive: a pointer cdata whose destructor
        # closes over self, held by the buffer object
        base = ffi.gc(ffi.cast("uint8_t *", self._ptr.base), lambda _p, _keep=self: None)
        return memoryview(ffi.buffer(base, self._ptr.size))

    def _check(self, offset: int, n: int) -> None:
        if offset < 0 or n < 0 or offset + n > self._ptr.size:
            raise IndexError(f"range [{offset}, {offset + n}) is outside the memory ({self._ptr.size} bytes)")

    def read(self, offset: int, n: int) -> bytes:
        self._check(offset, n)
        return ffi.unpack(ffi.cast("char *", self._ptr.base + offset), n)

    def write(self, offset: int, data: bytes) -> None:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"data must be bytes-like, not {type(data).__name__}")
        data = bytes(data)
        self._check(offset, len(data))
        ffi.memmove(self._ptr.base + offset, data, len(data))

    def __repr__(self) -> str:
        if getattr(self, "_ptr", None) is None:  # freed (only seen by gc.garbage and the like)
            return "<wa.Memory (freed)>"
        return f"<wa.Memory {self.size} page(s), max {self._limits.max}>"


class Global:
    """A global: one 16-byte slot."""

    def __init__(self, type: GlobalType, value: Any = None) -> None:
        if not isinstance(type, GlobalType):
            raise TypeError("wa.Global needs a wa.GlobalType")
        self._type = type
        self._cell = ffi.new("uint8_t[16]")
        self._u64 = ffi.cast("uint64_t *", self._cell)
        self._keepalive: set = set()  # instances whose function references this global may hold
        if value is not None:
            self._set(value)

    def _set(self, value: Any) -> None:
        t = self._type.valtype
        if isinstance(value, Value) and value.type is not t:
            raise TypeError(f"expected a value of type {t} for this global, got {value!r}")
        keep_referent(self._keepalive, value)
        bits = V.value_bits(value) if isinstance(value, Value) else V.TO_BITS[t](value)
        V.write_slot(self._u64, 0, t, bits)

    @property
    def type(self) -> GlobalType:
        return self._type

    @property
    def value(self) -> Any:
        t = self._type.valtype
        return V.FROM_BITS[t](V.read_slot(self._u64, 0, t))

    @value.setter
    def value(self, v: Any) -> None:
        if not self._type.mutable:
            raise Error("cannot set an immutable global")
        self._set(v)

    @property
    def wasm_value(self) -> Value:
        t = self._type.valtype
        return V.bits_value(t, V.read_slot(self._u64, 0, t))

    def __repr__(self) -> str:
        return f"<wa.Global {self._type} = {self.value!r}>"


class Table:
    """A table of references (funcref or externref)."""

    def __init__(self, type: TableType, init: Any = None) -> None:
        if not isinstance(type, TableType) or not type.elem.is_ref:
            raise TypeError("wa.Table needs a wa.TableType of funcref or externref")
        lim = type.limits
        if lim.min > 0xFFFFFFFF or (lim.max is not None and (lim.max > 0xFFFFFFFF or lim.max < lim.min)):
            raise ValueError(f"invalid table limits {lim}")
        self._type = type
        self._ptr = lib.wa_table_new(lim.min, _NO_MAX32 if lim.max is None else lim.max, type.elem.value)
        if self._ptr == ffi.NULL:
            raise MemoryError("cannot allocate a table")
        self._keepalive: set = set()
        if init is not None:
            b = self._bits(init)
            for i in range(lim.min):
                self._ptr.elems[i] = ffi.cast("void *", b)

    def __del__(self) -> None:
        p = getattr(self, "_ptr", None)
        if p is not None and p != ffi.NULL:
            lib.wa_table_free(p)
            self._ptr = None

    def _bits(self, v: Any) -> int:
        keep_referent(self._keepalive, v)
        return V.TO_BITS[self._type.elem](v)

    @property
    def type(self) -> TableType:
        return TableType(self._type.elem, Limits(self.size, self._type.limits.max))

    @property
    def size(self) -> int:
        return self._ptr.size

    def get(self, i: int) -> Any:
        if not 0 <= i < self._ptr.size:
            raise IndexError(f"table index {i} out of range (size {self._ptr.size})")
        return V.FROM_BITS[self._type.elem](int(ffi.cast("uintptr_t", self._ptr.elems[i])))

    def set(self, i: int, value: Any) -> None:
        if not 0 <= i < self._ptr.size:
            raise IndexError(f"table index {i} out of range (size {self._ptr.size})")
        self._ptr.elems[i] = ffi.cast("void *", self._bits(value))

    def grow(self, delta: int, init: Any = None) -> int:
        if not isinstance(delta, int) or isinstance(delta, bool) or delta < 0:
            raise ValueError("grow needs a non-negative number of elements")
        old = lib.wa_table_grow(self._ptr, ffi.cast("void *", self._bits(init)), delta) \
            if delta <= 0xFFFFFFFF else 0xFFFFFFFF
        if old == 0xFFFFFFFF:
            raise Error(f"table cannot grow by {delta} from {self.size} (maximum {self._type.limits.max})")
        return old

    def __repr__(self) -> str:
        if getattr(self, "_ptr", None) is None:
            return "<wa.Table (freed)>"
        return f"<wa.Table {self._type.elem} size {self.size}, max {self._type.limits.max}>"


class ImportObject:
    """Namespaces of externs for instantiate(): a mapping, or an Instance, per namespace."""

    def __init__(self) -> None:
        self._ns: dict[str, Any] = {}

    def register(self, namespace: str, mapping_or_instance: Any) -> None:
        self._ns[namespace] = mapping_or_instance

    def __getitem__(self, namespace: str) -> Any:
        return self._ns[namespace]

    def get(self, namespace: str, default: Any = None) -> Any:
        return self._ns.get(namespace, default)

    def __contains__(self, namespace: str) -> bool:
        return namespace in self._ns

    def __repr__(self) -> str:
        return f"<wa.ImportObject {sorted(self._ns)}>"


Extern = Function | Memory | Global | Table
