"""The one Ctx/ABI definition (wasm_aot.abi) agrees with what the C compiler built (cffi)."""
from __future__ import annotations

import pytest

from wasm_aot import abi
from wasm_aot._runtime import ffi

FIELDS = [(s, f) for s, fields in abi.STRUCTS.items() for f, _ in fields]


@pytest.mark.parametrize("struct,field", FIELDS, ids=[f"{s}.{f}" for s, f in FIELDS])
def test_field_offset(struct, field):
    assert ffi.offsetof(struct, field) == abi.layout(struct)[field]


@pytest.mark.parametrize("struct", list(abi.STRUCTS))
def test_struct_size(struct):
    assert ffi.sizeof(struct) == abi.sizeof(struct)


@pytest.mark.parametrize("struct", list(abi.STRUCTS))
def test_field_order_and_sizes(struct):
    """C declares the fields in the same order with the same widths (field_index is used by codegen)."""
    c_fields = ffi.typeof(struct).fields
    assert [name for name, _ in c_fields] == [name for name, _ in abi.STRUCTS[struct]]
    for name, ctype in abi.STRUCTS[struct]:
        assert ffi.sizeof(ffi.typeof(struct).fields[abi.field_index(struct, name)][1].type) == abi.field_size(ctype)


def test_rt_table():
    ptr = ffi.sizeof("void *")
    assert ffi.sizeof("wa_rt") == len(abi.RT_FUNCS) * ptr
    names = [name for name, _ in ffi.typeof("wa_rt").fields]
    assert names == [name for name, _, _ in abi.RT_FUNCS]
    for name, _, _ in abi.RT_FUNCS:
        assert ffi.offsetof("wa_rt", name) == abi.rt_index(name) * ptr
