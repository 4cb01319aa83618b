"""The public Python API of API.md, driven end to end on small modules."""
from __future__ import annotations

import math
import os
import struct
import subprocess
import sys
import textwrap

import pytest

import wasm_aot as wa
from conftest import wat

BASIC_WAT = r"""
(module
  (memory (export "memory") 1 3)
  (global $g (export "g") (mut i32) (i32.const 10))
  (global $k (export "k") i64 (i64.const -5))
  (global $started (export "started") (mut i32) (i32.const 0))
  (global $f (export "gf") (mut f64) (f64.const 1.5))

  (func $start
    (global.set $started (i32.add (global.get $g) (i32.const 1224)))
    (i32.store (i32.const 8) (i32.const 0xC0FFEE)))
  (start $start)

  (func $add (export "add") (param i32 i32) (result i32)
    (i32.add (local.get 0) (local.get 1)))
  (func (export "multi") (param i32) (result i32 i64 f64)
    (local.get 0)
    (i64.mul (i64.extend_i32_s (local.get 0)) (i64.const 1000000000000))
    (f64.div (f64.convert_i32_s (local.get 0)) (f64.const 4)))
  (func (export "id_f32") (param f32) (result f32) local.get 0)
  (func (export "id_f64") (param f64) (result f64) local.get 0)
  (func (export "id_i64") (param i64) (result i64) local.get 0)
  (func (export "load") (param i32) (result i32) (i32.load (local.get 0)))
  (func (export "store") (param i32 i32) (i32.store (local.get 0) (local.get 1)))
  (func (export "get_g") (result i32) (global.get $g))
  (func (export "set_g") (param i32) (global.set $g (local.get 0)))
  (func (export "get_gf") (result f64) (global.get $f))
  (func (export "mem_size") (result i32) memory.size)
  (func (export "mem_grow") (param i32) (result i32) (memory.grow (local.get 0)))
  (func (export "nothing"))
)
"""

# function indices: $start 0, add 1, multi 2, id_f32 3, id_f64 4, id_i64 5, load 6, ...
EXPORT_NAMES = ["memory", "g", "k", "started", "gf", "add", "multi", "id_f32", "id_f64", "id_i64", "load",
                "store", "get_g", "set_g", "get_gf", "mem_size", "mem_grow", "nothing"]


@pytest.fixture(scope="module")
def basic_bytes():
    return wat(BASIC_WAT)


@pytest.fixture(scope="module")
def module(basic_bytes):
    return wa.compile(basic_bytes)


@pytest.fixture
def inst(module):
    return module.instantiate()


# ---- module ----

def test_module_types(module):
    assert module.imports == []
    exports = {e.name: e.type for e in module.exports}
    assert [e.name for e in module.exports] == EXPORT_NAMES
    assert exports["add"] == wa.FuncType([wa.I32, wa.I32], [wa.I32])
    assert exports["multi"] == wa.FuncType([wa.I32], [wa.I32, wa.I64, wa.F64])
    assert exports["memory"] == wa.MemoryType(wa.Limits(1, 3))
    assert exports["g"] == wa.GlobalType(wa.I32, True)
    assert exports["k"] == wa.GlobalType(wa.I64, False)
    assert all(isinstance(e, wa.ExportType) for e in module.exports)


def test_instance_exports_in_module_order(inst):
    assert list(inst.exports) == EXPORT_NAMES
    assert isinstance(inst.exports["add"], wa.Function)
    assert isinstance(inst.exports["memory"], wa.Memory)
    assert isinstance(inst.exports["g"], wa.Global)


# ---- calls ----

def test_typed_call(inst):
    add = inst.func("add")
    assert add(1, 2) == 3
    assert add(-5, 3) == -2
    assert add(2**31 - 1, 1) == -2**31  # wraps, results are signed
    assert add(2**32 - 1, 1) == 0  # unsigned spellings are accepted
    assert inst.func("nothing")() is None


def test_typed_signature_check(inst):
    t = wa.FuncType([wa.I32, wa.I32], [wa.I32])
    assert inst.func("add", t)(20, 22) == 42
    with pytest.raises(wa.SignatureError):
        inst.func("add", wa.FuncType([wa.I32], [wa.I32]))
    with pytest.raises(wa.SignatureError):
        inst.func("add", wa.FuncType([wa.I64, wa.I64], [wa.I64]))
    with pytest.raises(wa.ResolveError):
        inst.func("add", wa.FuncType([wa.I32, wa.I32], []))


def test_export_not_found(inst):
    with pytest.raises(wa.ExportNotFound):
        inst.func("nope")
    with pytest.raises(wa.ResolveError):
        inst.dyn_func("nope")
    with pytest.raises(wa.Error):
        inst.call("nope")


def test_export_wrong_type(inst):
    with pytest.raises(wa.ExportWrongType):
        inst.func("memory")
    with pytest.raises(wa.ExportWrongType):
        inst.func("g")
    with pytest.raises(wa.ResolveError):
        inst.dyn_func("memory")


def test_multi_value(inst):
    r = inst.func("multi")(-3)
    assert r == (-3, -3_000_000_000_000, -0.75)
    assert isinstance(r, tuple)
    assert inst.call("multi", 8) == [8, 8_000_000_000_000, 2.0]


def test_inst_call_returns_a_list(inst):
    assert inst.call("add", 1, 2) == [3]
    assert inst.call("nothing") == []


def test_resolve_func(inst):
    assert inst.resolve_func("add") == 1
    assert inst.resolve_func("multi") == 2
    assert inst.resolve_func("nothing") == 13
    with pytest.raises(wa.ResolveError):
        inst.resolve_func("nope")


def test_dyn_func(inst):
    f = inst.dyn_func("add")
    assert f.type == wa.FuncType([wa.I32, wa.I32], [wa.I32])
    r = f.call([wa.Value(wa.I32, 40), wa.Value(wa.I32, 2)])
    assert isinstance(r, list) and len(r) == 1
    assert isinstance(r[0], wa.Value)
    assert r[0].type is wa.I32 and r[0].value == 42 and r[0].bits == 42
    r = f.call([wa.Value(wa.I32, -1), wa.Value(wa.I32, 0)])
    assert r[0].value == -1 and r[0].bits == 0xFFFFFFFF

    m = inst.dyn_func("multi").call([wa.Value(wa.I32, -1)])
    assert [v.type for v in m] == [wa.I32, wa.I64, wa.F64]
    assert [v.bits for v in m] == [0xFFFFFFFF, (-10**12) & (2**64 - 1), struct.unpack("<Q", struct.pack("<d", -0.25))[0]]
    assert inst.dyn_func("nothing").call([]) == []


@pytest.mark.parametrize("opt_level", [0, 2])
def test_nan_payloads_round_trip(basic_bytes, opt_level):
    inst = wa.compile(basic_bytes, opt_level=opt_level).instantiate()
    for bits in (0x7FA00001, 0xFFA00001, 0x7FC00000, 0xFFFFFFFF, 0x7F800001):
        v = wa.Value.from_bits(wa.F32, bits)
        assert v.bits == bits
        r = inst.dyn_func("id_f32").call([v])
        assert r[0].type is wa.F32
        assert r[0].bits == bits, f"f32 {bits:#x} came back as {r[0].bits:#x}"
        assert math.isnan(r[0].value)
    for bits in (0x7FF4000000000001, 0xFFF0000000000123, 0x7FF8000000000000):
        r = inst.dyn_func("id_f64").call([wa.Value.from_bits(wa.F64, bits)])
        assert r[0].type is wa.F64 and r[0].bits == bits
    r = inst.dyn_func("id_i64").call([wa.Value(wa.I64, -2)])
    assert r[0].bits == 2**64 - 2 and r[0].value == -2


def test_dyn_func_checks_values(inst):
    f = inst.dyn_func("add")
    with pytest.raises(TypeError):
        f.call([wa.Value(wa.I32, 1)])
    with pytest.raises(TypeError):
        f.call([wa.Value(wa.I64, 1), wa.Value(wa.I32, 1)])


def test_typed_call_argument_checks(inst):
    add = inst.func("add")
    with pytest.raises(TypeError):
        add(1)
    with pytest.raises(TypeError):
        add(1, 2, 3)
    with pytest.raises(ValueError):
        add(2**32, 1)
    with pytest.raises(ValueError):
        add(-2**31 - 1, 1)
    with pytest.raises(TypeError):
        add(1.0, 2)
    with pytest.raises(TypeError):
        add("1", 2)
    with pytest.raises(TypeError):
        inst.call("add", 1)
    with pytest.raises(ValueError):
        inst.func("id_i64")(2**64)
    assert inst.func("id_f64")(3) == 3.0  # an int is a fine float
    assert add(1, 2) == 3  # still fine after the rejected calls


def test_typed_calls_and_host_results_take_values_with_exact_bits():
    """A wa.Value goes wherever a Python number of its type does (typed arguments, host function
    results), with its bits as they are: a Python float cannot carry an f32's signalling NaN."""
    src = """(module
      (import "env" "h" (func $h (result f32 f64)))
      (import "env" "slow" (func $slow (param externref) (result f32)))
      (func (export "f32bits") (param f32) (result i32) (i32.reinterpret_f32 (local.get 0)))
      (func (export "f32bits_slow") (param f32 externref) (result i32) (i32.reinterpret_f32 (local.get 0)))
      (func (export "i64") (param i64) (result i64) (local.get 0))
      (func (export "host") (result i32 i64) (local f64)
        (call $h) (local.set 0) (i32.reinterpret_f32) (i64.reinterpret_f64 (local.get 0)))
      (func (export "host_slow") (result i32) (i32.reinterpret_f32 (call $slow (ref.null extern)))))"""
    snan32, snan64 = wa.Value.from_bits(wa.F32, 0x7F800001), wa.Value.from_bits(wa.F64, 0x7FF0000000000002)
    imports = {"env": {"h": wa.Function(lambda: (snan32, snan64), wa.FuncType([], [wa.F32, wa.F64])),
                       "slow": wa.Function(lambda _r: snan32, wa.FuncType([wa.EXTERNREF], [wa.F32]))}}
    inst = wa.compile(wat(src)).instantiate(imports)
    assert inst.exports.f32bits(snan32) & 0xFFFFFFFF == 0x7F800001  # the C path
    assert inst.exports.f32bits_slow(snan32, None) & 0xFFFFFFFF == 0x7F800001  # the Python path
    assert inst.exports.i64(wa.Value(wa.I64, -5)) == -5
    assert [r & (2 ** 64 - 1) for r in inst.exports.host()] == [0x7F800001, 0x7FF0000000000002]
    assert inst.exports.host_slow() & 0xFFFFFFFF == 0x7F800001
    for f in (inst.exports.f32bits, lambda v: inst.exports.f32bits_slow(v, None)):
        with pytest.raises(TypeError, match="expected f32, got a wa.Value of i32"):
            f(wa.Value(wa.I32, 1))


# ---- memory ----

def test_memory_buffer_is_shared_with_wasm(inst):
    mem = inst.exports["memory"]
    assert mem.size == 1
    buf = mem.buffer
    assert isinstance(buf, memoryview) and len(buf) == 65536 and not buf.readonly
    buf[100:104] = struct.pack("<i", -77)
    assert inst.func("load")(100) == -77
    inst.func("store")(200, 0x01020304)
    assert bytes(buf[200:204]) == b"\x04\x03\x02\x01"
    assert mem.read(200, 4) == b"\x04\x03\x02\x01"
    mem.write(300, b"\xff\x00\x00\x80")
    assert inst.func("load")(300) == -2**31 + 255
    assert bytes(mem.buffer[300:304]) == b"\xff\x00\x00\x80"


def test_memory_grow(inst):
    mem = inst.exports["memory"]
    assert mem.type == wa.MemoryType(wa.Limits(1, 3))
    assert mem.grow(1) == 1
    assert mem.size == 2
    assert inst.func("mem_size")() == 2
    assert len(mem.buffer) == 2 * 65536
    mem.write(65536 + 4, b"\x2a\x00\x00\x00")
    assert inst.func("load")(65536 + 4) == 42
    with pytest.raises(wa.Error):
        mem.grow(2)  # beyond the maximum of 3 pages
    assert mem.size == 2
    assert inst.func("mem_grow")(1) == 2
    assert mem.size == 3 and len(mem.buffer) == 3 * 65536
    assert inst.func("mem_grow")(1) == -1
    with pytest.raises(wa.Error):
        mem.grow(1)
    assert mem.grow(0) == 3
    with pytest.raises(Exception):
        mem.read(3 * 65536 - 2, 4)
    with pytest.raises(Exception):
        mem.write(3 * 65536, b"x")


# ---- globals and the start function ----

def test_start_function_ran(inst):
    assert inst.exports["started"].value == 1234
    assert inst.func("load")(8) == 0xC0FFEE


def test_globals(inst):
    g = inst.exports["g"]
    assert g.type == wa.GlobalType(wa.I32, True)
    assert g.value == 10
    g.value = 20
    assert inst.func("get_g")() == 20
    inst.func("set_g")(-7)
    assert g.value == -7
    k = inst.exports["k"]
    assert k.type == wa.GlobalType(wa.I64, False)
    assert k.value == -5
    with pytest.raises(wa.Error):
        k.value = 1
    assert k.value == -5
    gf = inst.exports["gf"]
    assert gf.value == 1.5
    gf.value = -0.125
    assert inst.func("get_gf")() == -0.125


def test_instances_are_independent(module):
    a, b = module.instantiate(), module.instantiate()
    a.exports["g"].value = 99
    a.func("store")(0, 5)
    assert b.exports["g"].value == 10
    assert b.func("load")(0) == 0
    assert a.func("load")(0) == 5


# ---- compile and link errors ----

def test_compile_error_garbage():
    with pytest.raises(wa.CompileError) as ei:
        wa.compile(b"this is not wasm at all")
    assert isinstance(ei.value, wa.Error)
    assert isinstance(ei.value.offset, int)
    with pytest.raises(wa.CompileError):
        wa.compile(b"\0asm\x01\0\0\0\x01\x05")  # a truncated section
    with pytest.raises(wa.CompileError):
        wa.compile(b"")


def test_compile_error_invalid_module():
    bad = wat("(module (func (result i32) (i64.const 1)))", "--no-check")
    with pytest.raises(wa.CompileError) as ei:
        wa.compile(bad)
    assert "type mismatch" in str(ei.value)
    assert "type mismatch" in ei.value.message
    assert isinstance(ei.value.offset, int) and 8 < ei.value.offset < len(bad)


IMPORTS_WAT = r"""
(module
  (import "env" "get" (func $get (result i32)))
  (import "env" "gi" (global $gi i32))
  (func (export "run") (result i32)
    (i32.add (call $get) (global.get $gi)))
)
"""


def test_imports_and_link_errors():
    mod = wa.compile(wat(IMPORTS_WAT))
    assert mod.imports == [wa.ImportType("env", "get", wa.FuncType([], [wa.I32])),
                           wa.ImportType("env", "gi", wa.GlobalType(wa.I32, False))]
    good_f = wa.Function(lambda: 40, wa.FuncType([], [wa.I32]))
    good_g = wa.Global(wa.GlobalType(wa.I32, False), 2)
    inst = mod.instantiate({"env": {"get": good_f, "gi": good_g}})
    assert inst.func("run")() == 42

    io = wa.ImportObject()
    io.register("env", {"get": good_f, "gi": good_g})
    assert mod.instantiate(io).func("run")() == 42

    with pytest.raises(wa.LinkError):
        mod.instantiate()
    with pytest.raises(wa.LinkError):
        mod.instantiate({"env": {"gi": good_g}})
    with pytest.raises(wa.LinkError):
        mod.instantiate({"other": {"get": good_f, "gi": good_g}})
    with pytest.raises(wa.LinkError):  # wrong function type
        mod.instantiate({"env": {"get": wa.Function(lambda: 1, wa.FuncType([], [wa.I64])), "gi": good_g}})
    with pytest.raises(wa.LinkError):  # a global where a function is wanted
        mod.instantiate({"env": {"get": good_g, "gi": good_g}})
    with pytest.raises(wa.LinkError):  # mutable global for an immutable import
        mod.instantiate({"env": {"get": good_f, "gi": wa.Global(wa.GlobalType(wa.I32, True), 2)}})
    with pytest.raises(wa.LinkError):  # wrong global value type
        mod.instantiate({"env": {"get": good_f, "gi": wa.Global(wa.GlobalType(wa.I64, False), 2)}})
    assert mod.instantiate({"env": {"get": good_f, "gi": good_g}}).func("run")() == 42


CONTEXT_WAT = r"""
(module
  (import "env" "host" (func $host (result i32)))
  (memory (export "memory") 1)
  (func (export "run") (result i32)
    (i32.store (i32.const 16) (i32.const 0x11223344))
    (i32.add (call $host) (i32.load (i32.const 32))))
)
"""


def test_host_function_with_context():
    seen = []

    def host(ctx):
        seen.append(ctx)
        assert isinstance(ctx, wa.Context)
        mem = ctx.memory()
        assert mem.read(16, 4) == bytes.fromhex("44332211")  # what wasm stored before the call
        mem.write(32, struct.pack("<i", 1000))
        return ctx.data["base"]

    mod = wa.compile(wat(CONTEXT_WAT))
    data = {"base": 7}
    f = wa.Function(host, wa.FuncType([], [wa.I32]), pass_context=True)
    inst = mod.instantiate({"env": {"host": f}}, data=data)
    assert inst.data is data
    assert inst.func("run")() == 1007
    ctx = seen[0]
    assert ctx.memory() is inst.exports["memory"]
    assert ctx.memory("memory") is inst.exports["memory"]
    assert ctx.data is data
    assert ctx.instance is inst
    assert inst.exports["memory"].read(32, 4) == struct.pack("<i", 1000)


def test_host_function_with_arguments():
    """A host import with parameters receives them and its results go back to wasm."""
    src = r"""
    (module
      (import "env" "mix" (func $mix (param i32 i64 f64) (result i64)))
      (func (export "run") (param i32) (result i64)
        (call $mix (local.get 0) (i64.const -9) (f64.const 0.5))))
    """
    got = []

    def mix(a, b, c):
        got.append((a, b, c))
        return a * 100 + b

    mod = wa.compile(wat(src))
    inst = mod.instantiate({"env": {"mix": wa.Function(mix, wa.FuncType([wa.I32, wa.I64, wa.F64], [wa.I64]))}})
    assert inst.func("run")(3) == 291
    assert got == [(3, -9, 0.5)]


# ---- artifacts ----

def test_save_and_load(tmp_path, basic_bytes, module):
    path = tmp_path / "basic.so"
    module.save(path)
    assert path.is_file()
    mod2 = wa.load(path)
    assert [e.name for e in mod2.exports] == EXPORT_NAMES
    inst = mod2.instantiate()
    assert inst.func("add")(20, 22) == 42
    assert inst.exports["started"].value == 1234
    mod3 = wa.Module.from_file(path)
    assert mod3.instantiate().call("multi", 4) == [4, 4 * 10**12, 1.0]


def test_load_in_a_fresh_process_without_llvmlite(tmp_path, module):
    path = tmp_path / "fresh.so"
    module.save(path)
    code = textwrap.dedent(f"""
        import sys
        import wasm_aot as wa
        assert "llvmlite" not in sys.modules, "import wasm_aot imported llvmlite"
        mod = wa.load({str(path)!r})
        inst = mod.instantiate()
        assert inst.func("add")(2, 3) == 5
        assert inst.func("multi")(-3) == (-3, -3 * 10**12, -0.75)
        inst.exports["memory"].write(0, b"\\x07\\x00\\x00\\x00")
        assert inst.func("load")(0) == 7
        assert inst.exports["started"].value == 1234
        assert "llvmlite" not in sys.modules, "loading an artifact imported llvmlite"
        # nor the compiler's front end, nor what only compiling or signing needs (import stays light)
        heavy = [m for m in ("wasm_aot.compiler", "wasm_aot.decode", "wasm_aot.validate", "wasm_aot.ir",
                             "wasm_aot.cache", "dataclasses", "hashlib", "tempfile", "array") if m in sys.modules]
        assert not heavy, heavy
        print("OK")
    """)
    env = dict(os.environ)
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path,
                       timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "OK"


def test_cache_hit_does_not_load_llvm(tmp_path, basic_bytes):
    """A warm-cache wa.compile in a fresh process maps the artifact without loading LLVM."""
    cache = tmp_path / "cache"
    wa.compile(basic_bytes, cache=str(cache))
    wasm = tmp_path / "m.wasm"
    wasm.write_bytes(basic_bytes)
    code = textwrap.dedent(f"""
        import sys
        import wasm_aot as wa
        mod = wa.compile(open({str(wasm)!r}, "rb").read(), cache={str(cache)!r})
        assert mod.instantiate().func("add")(2, 3) == 5
        assert "llvmlite.binding" not in sys.modules, "a cache hit loaded LLVM"
        print("OK")
    """)
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "OK"
    assert len(list(cache.glob("*.so"))) == 1


def test_load_rejects_a_non_artifact(tmp_path):
    bad = tmp_path / "bad.so"
    bad.write_bytes(b"not an elf file")
    with pytest.raises(wa.ArtifactError):
        wa.load(bad)
    with pytest.raises(wa.ArtifactError):
        wa.load(tmp_path / "missing.so")


def test_default_cache_is_private_to_the_tests(wasm_cache_dir):
    """conftest points WASM_AOT_CACHE_DIR at a temporary folder: cache=True compiles land there."""
    assert os.environ["WASM_AOT_CACHE_DIR"] == str(wasm_cache_dir)
    b = wat('(module (func (export "seven") (result i32) (i32.const 7)))')
    mod = wa.compile(b, cache=True)
    assert os.path.dirname(os.path.abspath(mod.path)) == os.path.abspath(wasm_cache_dir)
    assert mod.instantiate().func("seven")() == 7
    assert wa.compile(b).path == mod.path
    assert wa.compile(b, cache=False).path != mod.path
