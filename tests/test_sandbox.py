"""The sandbox's edges: wasm code reaches nothing outside its memories, tables and imports."""
from __future__ import annotations

import pytest

import wasm_aot as wa
from conftest import wat

TC = wa.TrapCode

EDGE_WAT = r"""
(module
  (memory (export "mem") 1 2)
  (table 2 funcref)
  (func (export "ld8") (param i32) (result i64) (i64.load offset=4294967295 (local.get 0)))
  (func (export "ld1") (param i32) (result i32) (i32.load8_u offset=4294967295 (local.get 0)))
  (func (export "ld") (param i32) (result i64) (i64.load (local.get 0)))
  (func (export "st") (param i32 i64) (i64.store (local.get 0) (local.get 1)))
  (func (export "st_off") (param i32 i64) (i64.store offset=4294967295 (local.get 0) (local.get 1)))
  (func (export "fill") (param i32 i32 i32) (memory.fill (local.get 0) (local.get 1) (local.get 2)))
  (func (export "copy") (param i32 i32 i32) (memory.copy (local.get 0) (local.get 1) (local.get 2)))
  (func (export "grow") (param i32) (result i32) (memory.grow (local.get 0)))
  (func (export "tget") (param i32) (result funcref) (table.get (local.get 0)))
  (func (export "tset") (param i32) (table.set (local.get 0) (ref.null func)))
)
"""

ZERO_WAT = r"""
(module
  (memory 0)
  (func (export "ld") (param i32) (result i32) (i32.load (local.get 0)))
  (func (export "grow") (param i32) (result i32) (memory.grow (local.get 0)))
)
"""


@pytest.fixture(params=[0, 2], ids=["O0", "O2"])
def pair(request):
    mod = wa.compile(wat(EDGE_WAT), opt_level=request.param)
    return mod.instantiate(), mod.instantiate()


def _traps(code, f, *args):
    with pytest.raises(wa.Trap) as ei:
        f(*args)
    assert ei.value.code is code, ei.value


def test_the_largest_effective_addresses_trap(pair):
    a, _ = pair
    for addr in (0, 1, 65535, 65536, 0x7FFFFFFF, 0xFFFFFFF8, 0xFFFFFFFF):
        arg = addr - (1 << 32) if addr >> 31 else addr
        _traps(TC.MEMORY_OUT_OF_BOUNDS, a.func("ld8"), arg)
        _traps(TC.MEMORY_OUT_OF_BOUNDS, a.func("ld1"), arg)
        _traps(TC.MEMORY_OUT_OF_BOUNDS, a.func("st_off"), arg, -1)


def test_accesses_straddling_the_end_trap_and_write_nothing(pair):
    a, _ = pair
    mem = a.exports["mem"]
    a.func("st")(65528, 0x1122334455667788)  # the last 8 bytes: fine
    assert a.func("ld")(65528) == 0x1122334455667788
    for addr in range(65529, 65537):
        _traps(TC.MEMORY_OUT_OF_BOUNDS, a.func("ld"), addr)
        _traps(TC.MEMORY_OUT_OF_BOUNDS, a.func("st"), addr, 0)
    assert mem.read(65528, 8) == (0x1122334455667788).to_bytes(8, "little")
    _traps(TC.MEMORY_OUT_OF_BOUNDS, a.func("fill"), 65000, 0xAB, 537)
    _traps(TC.MEMORY_OUT_OF_BOUNDS, a.func("copy"), 0, 65000, 537)
    _traps(TC.MEMORY_OUT_OF_BOUNDS, a.func("copy"), 65000, 0, 537)
    _traps(TC.MEMORY_OUT_OF_BOUNDS, a.func("fill"), 0, 0, -1)


def test_grown_memory_is_reachable_up_to_its_new_end_only(pair):
    a, _ = pair
    _traps(TC.MEMORY_OUT_OF_BOUNDS, a.func("ld"), 65536)
    assert a.func("grow")(1) == 1
    a.func("st")(2 * 65536 - 8, 7)
    assert a.func("ld")(2 * 65536 - 8) == 7
    _traps(TC.MEMORY_OUT_OF_BOUNDS, a.func("ld"), 2 * 65536 - 7)
    assert a.func("grow")(1) == -1  # the maximum: no page beyond it, ever
    _traps(TC.MEMORY_OUT_OF_BOUNDS, a.func("ld"), 2 * 65536)


def test_instances_never_reach_each_other(pair):
    a, b = pair
    b.exports["mem"].write(0, b"\x5a" * 64)
    b.exports["mem"].write(65536 - 64, b"\xa5" * 64)
    for addr in (65536, 65536 + 4096, 0x7FFFFFFF, -8):
        _traps(TC.MEMORY_OUT_OF_BOUNDS, a.func("st"), addr, -1)
    a.func("fill")(0, 0, 65536)
    assert b.exports["mem"].read(0, 64) == b"\x5a" * 64
    assert b.exports["mem"].read(65536 - 64, 64) == b"\xa5" * 64


def test_tables_are_bounded(pair):
    a, _ = pair
    assert a.func("tget")(1) is None
    for i in (2, 3, 1 << 20, -1):
        _traps(TC.TABLE_OUT_OF_BOUNDS, a.func("tget"), i)
        _traps(TC.TABLE_OUT_OF_BOUNDS, a.func("tset"), i)


def test_a_zero_page_memory_has_no_byte_to_touch():
    inst = wa.compile(wat(ZERO_WAT)).instantiate()
    for addr in (0, 1, 4096, -4):
        _traps(TC.MEMORY_OUT_OF_BOUNDS, inst.func("ld"), addr)
    assert inst.func("grow")(1) == 0
    assert inst.func("ld")(0) == 0
