"""Objects that hold raw pointers keep what they point into alive: no use after free, whatever
the order in which Python drops things."""
from __future__ import annotations

import gc

import wasm_aot as wa
from conftest import wat

OWNER_WAT = r"""
(module
  (type $v_i (func (result i32)))
  (table (export "tab") 2 funcref)
  (global (export "g") (mut funcref) (ref.null func))
  (func (export "icall") (param i32) (result i32) (call_indirect (type $v_i) (local.get 0)))
  (func (export "gcall") (result i32) (table.set (i32.const 1) (global.get 0)) (call_indirect (type $v_i) (i32.const 1)))
)
"""

WRITER_WAT = r"""
(module
  (import "a" "tab" (table 2 funcref))
  (import "a" "g" (global (mut funcref)))
  (func $mine (result i32) (i32.const 77))
  (elem declare func $mine)
  (func (export "store") (table.set (i32.const 0) (ref.func $mine)) (global.set 0 (ref.func $mine)))
)
"""


def test_memory_buffer_outlives_its_memory_object():
    buf = wa.Memory(wa.MemoryType(wa.Limits(1))).buffer
    gc.collect()
    buf[100] = 42
    assert buf[100] == 42 and len(buf) == 65536


def test_exported_memory_buffer_outlives_its_instance():
    inst = wa.compile(wat('(module (memory (export "m") 1) (data (i32.const 8) "hi"))')).instantiate()
    buf = inst.exports["m"].buffer
    del inst
    gc.collect()
    assert bytes(buf[8:10]) == b"hi"


def test_functions_stored_by_wasm_in_another_instance_s_table_and_global_stay_valid():
    a = wa.compile(wat(OWNER_WAT)).instantiate()
    b = wa.compile(wat(WRITER_WAT)).instantiate({"a": a})
    b.func("store")()
    del b
    gc.collect()
    assert a.func("icall")(0) == 77
    assert a.func("gcall")() == 77


def test_a_host_function_stored_in_a_table_outlives_the_instance_that_imported_it():
    host = wa.Function(lambda: 5, wa.FuncType([], [wa.I32]))
    src = r'(module (import "env" "h" (func (result i32))))'
    first = wa.compile(wat(src)).instantiate({"env": {"h": host}})
    a = wa.compile(wat(OWNER_WAT)).instantiate()
    a.exports["tab"].set(0, host)
    del first
    gc.collect()
    assert a.func("icall")(0) == 5


def test_an_exported_function_outlives_its_instance():
    f = wa.compile(wat('(module (func (export "f") (result i32) (i32.const 9)))')).instantiate().func("f")
    gc.collect()
    assert f() == 9


def test_instances_are_collected():
    """Nothing global keeps an instance alive: a service may create instances forever (each memory
    reserves 8 GiB of address space, so leaked ones would run out after ~16k)."""
    import weakref

    mod = wa.compile(wat('(module (memory (export "m") 1) (table (export "t") 1 funcref) (func (export "f") (result i32) (i32.const 1)) (elem (i32.const 0) 0))'))
    host = wa.Function(lambda ctx: 1, wa.FuncType([], []), pass_context=True)
    mod2 = wa.compile(wat('(module (import "env" "h" (func)) (func (export "g") (call 0)))'))
    refs = []
    for _ in range(50):
        inst = mod.instantiate()
        assert inst.func("f")() == 1
        inst2 = mod2.instantiate({"env": {"h": host}})
        inst2.func("g")()
        refs += [weakref.ref(inst), weakref.ref(inst2)]
    del inst, inst2
    gc.collect()
    assert all(r() is None for r in refs)
    for _ in range(17_000):  # more than the address space holds, were they leaked
        mod.instantiate()


def test_an_exported_table_keeps_its_instance_functions_valid():
    src = r"""(module (table (export "t") 1 funcref) (func $f (result i32) (i32.const 31)) (elem (i32.const 0) $f))"""
    a = wa.compile(wat(src)).instantiate()
    b = wa.compile(wat(r"""(module (import "a" "t" (table 1 funcref)) (type $v (func (result i32)))
      (func (export "call") (result i32) (call_indirect (type $v) (i32.const 0))))""")).instantiate({"a": a})
    tab = a.exports["t"]
    del a
    gc.collect()
    assert b.func("call")() == 31
    assert tab.get(0)() == 31


def test_a_context_kept_past_its_instance_says_so():
    kept = []
    host = wa.Function(lambda ctx: kept.append(ctx), wa.FuncType([], []), pass_context=True)
    inst = wa.compile(wat('(module (import "env" "h" (func)) (memory 1) (func (export "g") (call 0)))')).instantiate(
        {"env": {"h": host}})
    inst.func("g")()
    assert kept[0].instance is inst
    del inst
    gc.collect()
    assert kept[0].instance is None
    import pytest
    with pytest.raises(wa.Error):
        kept[0].memory()


def test_artifacts_are_unmapped_once_unused(tmp_path):
    from wasm_aot.loader.runtime import lib

    p = tmp_path / "m.so"
    wa.compile(wat('(module (func (export "f") (param i32) (result i32) (i32.add (local.get 0) (i32.const 1))))')).save(p)
    gc.collect()
    before = lib.wa_code_ranges()
    q = tmp_path / "boom.so"
    wa.compile(wat('(module (func $inner unreachable) (func $boom (export "boom") call $inner))', "--debug-names"),
               opt_level=0).save(q)
    import pytest
    for k in range(300):
        f = wa.load(p).instantiate().func("f")
        assert f(k) == k + 1
        del f
        if k % 10 == 0:  # traps resolve their frames while artifacts come and go
            with pytest.raises(wa.Trap) as ei:
                wa.load(q).instantiate().func("boom")()
            assert [fr.func_name for fr in ei.value.frames] == ["inner", "boom"]
            del ei
        gc.collect()
    assert lib.wa_code_ranges() <= before + 1
    # and a trap still finds its frames after many map/unmap cycles
    t = wa.compile(wat('(module (func $boom (export "boom") unreachable))', "--debug-names")).instantiate()
    import pytest
    with pytest.raises(wa.Trap) as ei:
        t.func("boom")()
    assert [fr.func_name for fr in ei.value.frames] == ["boom"]


def test_a_dropped_instance_is_freed_at_once():
    """No reference cycle through an instance's own caches (exports, functions, its own tables): its
    memory goes when the last reference does, not at some later cyclic collection."""
    import weakref

    mod = wa.compile(wat('(module (memory (export "m") 1) (table (export "t") 1 funcref) (global (export "g") '
                         '(mut funcref) (ref.null func)) (func $f (export "f") (result i32) (i32.const 1)) '
                         '(elem (i32.const 0) $f) (func $s) (start $s))'))
    gc.collect()
    gc.disable()
    try:
        inst = mod.instantiate()
        f, mem = inst.func("f"), weakref.ref(inst.exports["m"])
        assert inst.exports.f is f and f() == 1
        ref = weakref.ref(inst)
        del inst
        assert ref() is not None  # its function keeps it
        assert f() == 1
        del f
        assert ref() is None and mem() is None
    finally:
        gc.enable()


KEEPER_WAT = r"""
(module
  (type $t (func (result i32)))
  (import "env" "get" (func $get (result funcref)))
  (table 1 funcref)
  (func (export "store") (param funcref) (table.set (i32.const 0) (local.get 0)))
  (func (export "store_from_host") (table.set (i32.const 0) (call $get)))
  (func (export "call") (result i32) (call_indirect (type $t) (i32.const 0)))
)
"""
GIVER_WAT = '(module (func (export "f") (result i32) (i32.const 42)))'


def _spray() -> list:
    """Reuse freed memory (a funcref cell, a funcs array) with junk, so a dangling reference shows."""
    from wasm_aot.loader.runtime import ffi
    out = []
    for _ in range(2000):
        c = ffi.new("wa_funcref[1]")
        c[0].code = ffi.cast("void *", 0x414141414141)
        out.append(c)
    return out


def test_funcrefs_handed_to_wasm_from_python_keep_their_instance_alive():
    """A funcref passed as an argument (typed or wa.Value) or returned by a host function may be
    stored by wasm in its private table: the instance it belongs to lives as long as the receiver
    (it was freed, and the table called through freed memory)."""
    for how in ("arg", "value", "host"):
        held = {}
        keeper = wa.compile(wat(KEEPER_WAT)).instantiate(
            {"env": {"get": wa.Function(lambda: held.pop("f"), wa.FuncType([], [wa.FUNCREF]))}})
        giver = wa.compile(wat(GIVER_WAT)).instantiate()
        held["f"] = giver.func("f")
        if how == "arg":
            keeper.func("store")(held.pop("f"))
        elif how == "value":
            keeper.dyn_func("store").call([wa.Value(wa.FUNCREF, held.pop("f"))])
        else:
            keeper.func("store_from_host")()
        del giver
        gc.collect()
        spray = _spray()
        assert keeper.func("call")() == 42, how
        del spray


def test_an_instance_passing_its_funcrefs_to_another_is_kept_by_it():
    """Wasm calling an imported function of another instance with a funcref argument: the callee
    may store it, so the callee keeps the caller alive."""
    keeper = wa.compile(wat(KEEPER_WAT)).instantiate({"env": {"get": lambda: None}})
    caller = wa.compile(wat(r"""
      (module (import "k" "store" (func $store (param funcref)))
        (func $mine (result i32) (i32.const 7)) (elem declare func $mine)
        (func (export "give") (call $store (ref.func $mine))))""")).instantiate({"k": keeper})
    caller.func("give")()
    del caller
    gc.collect()
    spray = _spray()
    assert keeper.func("call")() == 7
    del spray
