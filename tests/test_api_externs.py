"""Externs made in Python (Function, Memory, Global, Table), imported and exported back; repr()."""
from __future__ import annotations

import math

import pytest

import wasm_aot as wa
from conftest import wat

TC = wa.TrapCode
I32, I64, F32, F64, EXTERNREF, FUNCREF = wa.I32, wa.I64, wa.F32, wa.F64, wa.EXTERNREF, wa.FUNCREF

ALL_TYPES_WAT = r"""
(module
  (import "env" "all" (func $all (param i32 i64 f32 f64 externref) (result f64 externref i64 i32 f32)))
  (func (export "call_all") (param i32 i64 f32 f64 externref) (result f64 externref i64 i32 f32)
    (call $all (local.get 0) (local.get 1) (local.get 2) (local.get 3) (local.get 4)))
)
"""


def test_host_function_every_value_type_several_results():
    seen = []

    def all_(a, b, c, d, e):
        seen.append((a, b, c, d, e))
        return d * 2, e, b + 1, a + 1, c / 2

    ft = wa.FuncType([I32, I64, F32, F64, EXTERNREF], [F64, EXTERNREF, I64, I32, F32])
    inst = wa.compile(wat(ALL_TYPES_WAT)).instantiate({"env": {"all": wa.Function(all_, ft)}})
    token = object()
    r = inst.func("call_all")(-7, -(1 << 63), 1.5, math.pi, token)
    assert seen == [(-7, -(1 << 63), 1.5, math.pi, token)]
    assert r == (2 * math.pi, token, -(1 << 63) + 1, -6, 0.75)
    # wrong shape of results: a HOST trap whose cause explains it
    bad = wa.compile(wat(ALL_TYPES_WAT)).instantiate({"env": {"all": wa.Function(lambda *a: (1, 2), ft)}})
    with pytest.raises(wa.Trap) as ei:
        bad.func("call_all")(0, 0, 0.0, 0.0, None)
    assert ei.value.code is TC.HOST and isinstance(ei.value.__cause__, TypeError)
    # a result out of range for its type is the host function's error too
    ovf = wa.compile(wat(ALL_TYPES_WAT)).instantiate(
        {"env": {"all": wa.Function(lambda *a: (0.0, None, 1 << 64, 0, 0.0), ft)}})
    with pytest.raises(wa.Trap) as ei:
        ovf.func("call_all")(0, 0, 0.0, 0.0, None)
    assert isinstance(ei.value.__cause__, ValueError)


CTX_WAT = r"""
(module
  (import "env" "peek" (func $peek (param i32) (result i32)))
  (memory (export "mem") 1)
  (data (i32.const 100) "\2a")
  (func (export "f") (param i32) (result i32) (call $peek (local.get 0)))
)
"""


def test_context_memory_data_instance():
    got = []

    def peek(ctx, addr):
        assert isinstance(ctx, wa.Context)
        got.append((ctx.data, ctx.instance))
        return ctx.memory().read(addr, 1)[0] + ctx.memory("mem").read(addr, 1)[0]

    peek_f = wa.Function(peek, wa.FuncType([I32], [I32]), pass_context=True)
    inst = wa.compile(wat(CTX_WAT)).instantiate({"env": {"peek": peek_f}}, data={"k": 1})
    assert inst.func("f")(100) == 84
    assert got == [({"k": 1}, inst)]
    assert inst.data == {"k": 1}


MEM_WAT = r"""
(module
  (import "env" "mem" (memory 1 4))
  (import "env" "g" (global $g (mut i64)))
  (import "env" "k" (global $k f32))
  (import "env" "tab" (table 4 funcref))
  (type $v_i (func (result i32)))
  (export "mem" (memory 0))
  (export "g" (global $g))
  (export "tab" (table 0))
  (func (export "load") (param i32) (result i32) (i32.load (local.get 0)))
  (func (export "store") (param i32 i32) (i32.store (local.get 0) (local.get 1)))
  (func (export "grow") (param i32) (result i32) (memory.grow (local.get 0)))
  (func (export "bump") (result i64) (global.set $g (i64.add (global.get $g) (i64.const 1))) (global.get $g))
  (func (export "k") (result f32) (global.get $k))
  (func (export "icall") (param i32) (result i32) (call_indirect (type $v_i) (local.get 0)))
  (func $seven (export "seven") (result i32) (i32.const 7))
  (elem (i32.const 1) $seven)
)
"""


@pytest.fixture
def mem_setup():
    mem = wa.Memory(wa.MemoryType(wa.Limits(1, 4)))
    g = wa.Global(wa.GlobalType(I64, mutable=True), 40)
    k = wa.Global(wa.GlobalType(F32, mutable=False), 2.5)
    tab = wa.Table(wa.TableType(FUNCREF, wa.Limits(4)))
    inst = wa.compile(wat(MEM_WAT)).instantiate({"env": {"mem": mem, "g": g, "k": k, "tab": tab}})
    return mem, g, k, tab, inst


def test_memory_from_python_is_shared(mem_setup):
    mem, _, _, _, inst = mem_setup
    assert inst.exports["mem"] is mem
    mem.write(16, (0x11223344).to_bytes(4, "little"))
    assert inst.func("load")(16) == 0x11223344
    inst.func("store")(32, -1)
    assert mem.read(32, 4) == b"\xff" * 4
    assert inst.func("grow")(1) == 1 and mem.size == 2
    assert mem.grow(2) == 2 and inst.func("grow")(0) == 4
    with pytest.raises(wa.Error):
        mem.grow(1)  # beyond the maximum: an error, not a silent -1
    assert inst.func("grow")(1) == -1
    inst.func("store")(4 * 65536 - 4, 5)
    with pytest.raises(wa.Trap) as ei:
        inst.func("load")(4 * 65536 - 3)
    assert ei.value.code is TC.MEMORY_OUT_OF_BOUNDS


def test_memory_buffer_with_numpy_without_copy(mem_setup):
    np = pytest.importorskip("numpy")
    mem, _, _, _, inst = mem_setup
    arr = np.frombuffer(mem.buffer, dtype=np.int32)
    assert arr.size == 65536 // 4
    arr[10] = 123456  # numpy writes, wasm reads: the same bytes, no copy
    assert inst.func("load")(40) == 123456
    inst.func("store")(44, -9)
    assert arr[11] == -9


def test_globals_from_python(mem_setup):
    _, g, k, _, inst = mem_setup
    assert inst.func("bump")() == 41 and g.value == 41
    g.value = -5
    assert inst.func("bump")() == -4
    assert inst.exports["g"] is g
    assert inst.func("k")() == 2.5
    with pytest.raises(wa.Error):
        k.value = 1.0
    with pytest.raises((TypeError, ValueError)):
        g.value = 1 << 64


def test_tables_from_python(mem_setup):
    _, _, _, tab, inst = mem_setup
    seven = inst.exports["seven"]
    assert tab.get(1) is seven
    assert inst.func("icall")(1) == 7
    with pytest.raises(wa.Trap) as ei:
        inst.func("icall")(0)
    assert ei.value.code is TC.UNINITIALIZED_ELEMENT
    tab.set(0, seven)
    assert inst.func("icall")(0) == 7
    tab.set(0, None)
    assert tab.get(0) is None
    assert tab.grow(2) == 4 and tab.size == 6
    tab.set(5, seven)
    assert inst.func("icall")(5) == 7
    with pytest.raises(IndexError):
        tab.get(6)
    with pytest.raises(TypeError):
        tab.set(0, "not a function")


def test_host_function_in_a_table_after_import():
    host = wa.Function(lambda: 99, wa.FuncType([], [I32]))
    tab = wa.Table(wa.TableType(FUNCREF, wa.Limits(2)))
    src = r"""
    (module
      (import "env" "h" (func $h (result i32)))
      (import "env" "tab" (table 2 funcref))
      (type $v_i (func (result i32)))
      (func (export "icall") (param i32) (result i32) (call_indirect (type $v_i) (local.get 0))))
    """
    inst = wa.compile(wat(src)).instantiate({"env": {"h": host, "tab": tab}})
    tab.set(1, host)
    assert inst.func("icall")(1) == 99


def test_instance_as_namespace_links_natively(mem_setup):
    _, _, _, _, a = mem_setup
    src = r"""
    (module
      (import "a" "seven" (func $s (result i32)))
      (import "a" "mem" (memory 1))
      (func (export "f") (result i32) (i32.add (call $s) (i32.load (i32.const 16)))))
    """
    a.func("store")(16, 100)
    b = wa.compile(wat(src)).instantiate({"a": a})
    assert b.func("f")() == 107
    io = wa.ImportObject()
    io.register("a", a)
    assert wa.compile(wat(src)).instantiate(io).func("f")() == 107


def test_link_errors_are_precise():
    src = r'(module (import "env" "f" (func (param i32))) (import "env" "m" (memory 2)))'
    mod = wa.compile(wat(src))
    ok_f = wa.Function(lambda x: None, wa.FuncType([I32], []))
    with pytest.raises(wa.LinkError, match="unknown import"):
        mod.instantiate({"env": {"f": ok_f}})
    with pytest.raises(wa.LinkError, match="incompatible import type"):
        mod.instantiate({"env": {"f": wa.Function(lambda: None, wa.FuncType([], [])),
                                 "m": wa.Memory(wa.MemoryType(wa.Limits(2)))}})
    with pytest.raises(wa.LinkError, match="incompatible import type"):
        mod.instantiate({"env": {"f": ok_f, "m": wa.Memory(wa.MemoryType(wa.Limits(1)))}})
    with pytest.raises(wa.LinkError, match="incompatible import type"):
        mod.instantiate({"env": {"f": ok_f, "m": wa.Global(wa.GlobalType(I32, False), 1)}})


def test_extern_constructors_check_their_arguments():
    with pytest.raises(TypeError):
        wa.Function(42, wa.FuncType([], []))
    with pytest.raises(TypeError):
        wa.Function(lambda: 0, "i32")
    with pytest.raises(ValueError):
        wa.Memory(wa.MemoryType(wa.Limits(3, 2)))
    with pytest.raises(ValueError):
        wa.Memory(wa.MemoryType(wa.Limits(70000)))
    with pytest.raises(TypeError):
        wa.Table(wa.TableType(I32, wa.Limits(1)))
    with pytest.raises((TypeError, ValueError)):
        wa.Global(wa.GlobalType(I32, True), "x")
    m = wa.Memory(wa.MemoryType(wa.Limits(1)))
    with pytest.raises(IndexError):
        m.read(65535, 2)
    with pytest.raises(IndexError):
        m.write(-1, b"x")
    with pytest.raises(ValueError):
        m.grow(-1)


def test_reprs_say_what_things_are(mem_setup):
    mem, g, _, tab, inst = mem_setup
    mod = inst.module
    checks = [
        (mod, ["wa.Module", mod.sha256[:12], "seven"]),
        (inst, ["wa.Instance", "seven", "mem"]),
        (inst.exports, ["seven", "wa.Function"]),
        (inst.exports["seven"], ["wa.Function", "() -> (i32)"]),
        (wa.Function(len, wa.FuncType([I32], [])), ["wa.Function", "host", "len", "(i32) -> ()"]),
        (mem, ["wa.Memory", "page"]),
        (g, ["wa.Global", "mut i64", "40"]),
        (tab, ["wa.Table", "funcref", "size 4"]),
        (wa.FuncType([I32], [F64]), ["FuncType", "I32", "F64"]),
        (wa.Value(I32, 5), ["Value", "I32", "5"]),
        (wa.Trap(TC.UNREACHABLE), ["Trap", "UNREACHABLE", "unreachable"]),
        (wa.ImportObject(), ["wa.ImportObject"]),
        (wa.Context(inst), ["wa.Context", "wa.Instance"]),
        (wa.MemoryType(wa.Limits(1, 2)), ["MemoryType"]),
        (wa.GlobalType(I32, True), ["GlobalType"]),
        (wa.TableType(FUNCREF, wa.Limits(1)), ["TableType"]),
    ]
    for obj, parts in checks:
        r = repr(obj)
        for p in parts:
            assert p in r, f"{p!r} not in {r!r}"
    for imp in mod.imports:
        assert "env" in repr(imp)
    for exp in mod.exports:
        assert exp.name in repr(exp)


def test_keyboard_interrupt_in_a_host_function_propagates_as_itself():
    def cb():
        raise KeyboardInterrupt

    src = r'(module (import "env" "cb" (func $cb)) (func (export "f") (call $cb)) (func (export "g") (result i32) (i32.const 5)))'
    inst = wa.compile(wat(src)).instantiate({"env": {"cb": cb}})
    with pytest.raises(KeyboardInterrupt):
        inst.func("f")()
    assert inst.func("g")() == 5


def test_globals_refuse_values_of_another_type():
    inst = wa.compile(wat("""(module (global (export "n") (mut i32) (i32.const 0))
                                    (global (export "g") (mut funcref) (ref.null func)))""")).instantiate()
    with pytest.raises(TypeError, match="expected a value of type i32"):
        inst.exports.n.value = wa.Value(wa.F64, 1.5)
    with pytest.raises(TypeError, match="expected a value of type funcref"):
        inst.exports.g.value = wa.Value(wa.I64, 0x4141414141)  # an address chosen from Python
    with pytest.raises(TypeError):
        wa.Global(wa.GlobalType(wa.I32, True), wa.Value(wa.I64, 1))
    inst.exports.n.value = wa.Value(wa.I32, 5)
    assert inst.exports.n.value == 5


def test_an_unguarded_memory_imports_only_into_bounds_checked_code():
    """Without bounds checks, loads and stores rely on the guard region after a memory: an
    unguarded one would let wasm reach past its end."""
    src = wat('(module (import "env" "mem" (memory 1)) (func (export "peek") (result i32) (i32.load (i32.const 6553600))))')
    mem = wa.Memory(wa.MemoryType(wa.Limits(1)), guarded=False)
    with pytest.raises(wa.LinkError, match="without guard pages"):
        wa.compile(src).instantiate({"env": {"mem": mem}})
    inst = wa.compile(src, bounds_checks=True).instantiate({"env": {"mem": mem}})
    with pytest.raises(wa.Trap):
        inst.exports.peek()


def test_imports_must_be_a_mapping():
    mod = wa.compile(wat('(module (func (export "f")))'))
    for bad in ([], "env", 5):
        with pytest.raises(TypeError, match="imports must map"):
            mod.instantiate(bad)


def test_misused_constructors_and_arguments_raise_clear_errors(tmp_path):
    import math
    cases = [
        (TypeError, lambda: wa.FuncType(["i32"], ["i32"])),
        (TypeError, lambda: wa.FuncType("ii", [])),
        (TypeError, lambda: wa.GlobalType("i32", True)),
        (TypeError, lambda: wa.GlobalType(wa.I32, 1)),
        (TypeError, lambda: wa.TableType("funcref", wa.Limits(1))),
        (TypeError, lambda: wa.MemoryType(1)),
        (ValueError, lambda: wa.Limits(-1)),
        (TypeError, lambda: wa.Value("i32", 1)),
        (TypeError, lambda: wa.Value(wa.F32, "x")),
        (ValueError, lambda: wa.Value.from_bits(wa.I32, 2 ** 40)),
        (ValueError, lambda: wa.Value.from_bits(wa.I64, -1)),
        (TypeError, lambda: wa.deadline("1")),
        (ValueError, lambda: wa.deadline(math.nan)),
    ]
    for exc, make in cases:
        with pytest.raises(exc):
            make()
    mem = wa.Memory(wa.MemoryType(wa.Limits(1)))
    with pytest.raises(TypeError):
        mem.write(0, 5)  # not 5 zero bytes
    with pytest.raises(ValueError):
        mem.grow(True)
    with wa.deadline(math.inf):  # never comes (its watcher thread used to die of an OverflowError)
        pass
    bad_dir = tmp_path / "a-file"
    bad_dir.write_text("")
    with pytest.raises(NotADirectoryError, match="cache directory"):
        wa.compile(wat("(module)"), cache=str(bad_dir))
    assert wa.Value.from_bits(wa.I32, 0xFFFFFFFF).value == -1


def test_value_and_table_ranges():
    import math
    assert wa.Value(wa.F32, 1e39).value == math.inf  # rounds as a typed call does
    with pytest.raises(ValueError, match="too large for a float"):
        wa.Value(wa.F64, 10 ** 400)
    for lim in (wa.Limits(2 ** 32), wa.Limits(1, 2 ** 33)):
        with pytest.raises(ValueError, match="invalid table limits"):
            wa.Table(wa.TableType(wa.FUNCREF, lim))


def test_signatures_beyond_the_implementation_limits_are_refused():
    results = " ".join(["i32"] * 1001)
    with pytest.raises(wa.CompileError, match="the limit is 1000"):
        wa.compile(wat(f'(module (import "e" "f" (func (result {results}))))'), cache=False)
    wa.compile(wat(f'(module (import "e" "f" (func (result {" ".join(["i32"] * 20)}))))'), cache=False)


def test_only_functions_that_can_become_funcrefs_get_one():
    """An instance makes the funcref (its funcs entry) of C.refs and the start function alone: a large
    module's other functions, reached only by direct calls, cost nothing at instantiation. Every way a
    function becomes a reference still works."""
    n = 3000
    body = "\n".join(f"(func $f{i} (result i32) i32.const {i})" for i in range(n))
    inst = wa.compile(wat(f"""(module {body}
      (table 2 funcref) (elem (i32.const 0) $f7 $f8)
      (elem declare func $f9)
      (global $g funcref (ref.func $f10))
      (global $hits (mut i32) (i32.const 0))
      (func $start global.get $hits i32.const 1 i32.add global.set $hits)
      (start $start)
      (func (export "direct") (result i32) call $f2999)
      (func (export "indirect") (param i32) (result i32) local.get 0 call_indirect (result i32))
      (func (export "declared") (result funcref) ref.func $f9)
      (func (export "from_global") (result funcref) global.get $g)
      (func (export "hits") (result i32) global.get $hits)
      (export "f11" (func $f11)))"""), opt_level=0).instantiate()
    assert inst.exports.direct() == 2999
    assert inst.exports.indirect(0) == 7 and inst.exports.indirect(1) == 8
    assert inst.exports.declared()() == 9 and inst.exports.from_global()() == 10
    assert inst.exports.f11() == 11 and inst.exports.hits() == 1  # the start function ran
    from wasm_aot.loader.runtime import ffi
    made = {i for i in range(n + 6) if inst._funcs[i].code != ffi.NULL}
    assert made == {7, 8, 9, 10, 11, n, n + 1, n + 2, n + 3, n + 4, n + 5}


@pytest.mark.parametrize("n", [1, 1000, 20000, 100000])
def test_the_funcs_array_allocator_gives_zeroed_memory(n):
    """Small arrays come from calloc, very large ones from their own mapping (see wa_calloc)."""
    from wasm_aot.loader.instance import _zeroed
    from wasm_aot.loader.runtime import ffi
    for _ in range(3):  # (again: freed memory comes back zeroed)
        a = _zeroed("wa_funcref[]", n)
        assert all(a[i].code == ffi.NULL and a[i].type_id == 0 for i in (0, n // 2, n - 1))
        a[n - 1].type_id = 7
        del a
