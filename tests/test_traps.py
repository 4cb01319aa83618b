"""Traps: every kind reachable from wasm code becomes a wa.Trap with the right code and message, the
instance stays usable afterwards (even after thousands of traps), trap frames name the wasm functions,
and host exceptions become HOST traps. The process must survive all of it."""
from __future__ import annotations

import random
import threading
import struct

import pytest

import wasm_aot as wa
from conftest import wat

TC = wa.TrapCode

MESSAGES = {
    TC.UNREACHABLE: "unreachable",
    TC.INT_DIV_BY_ZERO: "integer divide by zero",
    TC.INT_OVERFLOW: "integer overflow",
    TC.BAD_CONVERSION: "invalid conversion to integer",
    TC.MEMORY_OUT_OF_BOUNDS: "out of bounds memory access",
    TC.TABLE_OUT_OF_BOUNDS: "undefined element",
    TC.UNINITIALIZED_ELEMENT: "uninitialized element",
    TC.INDIRECT_CALL_TYPE_MISMATCH: "indirect call type mismatch",
    TC.STACK_OVERFLOW: "call stack exhausted",
    TC.HOST: "host function failed",
}

TRAPS_WAT = r"""
(module
  (type $ret_i32 (func (result i32)))
  (type $ret_i64 (func (result i64)))
  (memory (export "memory") 1 4)
  (table 4 funcref)
  (elem (i32.const 0) $forty_two $an_i64)
  (global $counter (mut i32) (i32.const 0))

  (func $forty_two (type $ret_i32) (i32.const 42))
  (func $an_i64 (type $ret_i64) (i64.const 7))

  (func (export "add") (param i32 i32) (result i32)
    (i32.add (local.get 0) (local.get 1)))
  (func (export "unreachable") unreachable)
  (func (export "div_s") (param i32 i32) (result i32)
    (i32.div_s (local.get 0) (local.get 1)))
  (func (export "trunc_f32_s") (param f32) (result i32)
    (i32.trunc_f32_s (local.get 0)))
  (func (export "rem_u64") (param i64 i64) (result i64)
    (i64.rem_u (local.get 0) (local.get 1)))
  (func (export "load") (param i32) (result i32)
    (i32.load (local.get 0)))
  (func (export "load8") (param i32) (result i32)
    (i32.load8_u (local.get 0)))
  (func (export "store") (param i32 i32)
    (i32.store (local.get 0) (local.get 1)))
  (func (export "load_big_offset") (param i32) (result i32)
    (i32.load offset=4294967295 (local.get 0)))
  (func (export "grow") (param i32) (result i32)
    (memory.grow (local.get 0)))
  (func (export "size") (result i32) (memory.size))

  (func $rec (export "rec") (param i32) (result i32)
    (i32.add (call $rec (i32.add (local.get 0) (i32.const 1))) (i32.const 1)))
  (func $even (export "even") (param i64) (result i64)
    (i64.add (call $odd (i64.add (local.get 0) (i64.const 1))) (i64.const 1)))
  (func $odd (param i64) (result i64)
    (i64.mul (call $even (i64.sub (local.get 0) (i64.const 3))) (i64.const 3)))

  (func (export "call_indirect") (param i32) (result i32)
    (call_indirect (type $ret_i32) (local.get 0)))

  (func (export "bump") (result i32)
    (global.set $counter (i32.add (global.get $counter) (i32.const 1)))
    (global.get $counter))
)
"""


@pytest.fixture(scope="module", params=[0, 2], ids=["O0", "O2"])
def module(request):
    return wa.compile(wat(TRAPS_WAT), opt_level=request.param)


@pytest.fixture
def inst(module):
    return module.instantiate()


def expect_trap(code, fn, *args):
    with pytest.raises(wa.Trap) as ei:
        fn(*args)
    t = ei.value
    assert isinstance(t, wa.Error)
    assert t.code is code, f"expected {code.name}, got {t.code!r}: {t}"
    assert str(t).startswith(MESSAGES[code]), str(t)
    return t


def f32(bits):
    return struct.unpack("<f", struct.pack("<I", bits))[0]


# ---- one test per trap kind ----

def test_unreachable(inst):
    expect_trap(TC.UNREACHABLE, inst.func("unreachable"))


def test_div_s_by_zero(inst):
    expect_trap(TC.INT_DIV_BY_ZERO, inst.func("div_s"), 7, 0)
    expect_trap(TC.INT_DIV_BY_ZERO, inst.func("div_s"), 0, 0)
    assert inst.func("div_s")(7, -2) == -3


def test_div_s_overflow(inst):
    expect_trap(TC.INT_OVERFLOW, inst.func("div_s"), -2**31, -1)
    assert inst.func("div_s")(-2**31, 1) == -2**31


def test_trunc_nan(inst):
    expect_trap(TC.BAD_CONVERSION, inst.func("trunc_f32_s"), float("nan"))
    expect_trap(TC.BAD_CONVERSION, inst.func("trunc_f32_s"), f32(0xFFC00001))


@pytest.mark.parametrize("x", [2147483648.0, -2147483904.0, float("inf"), float("-inf"), 1e30])
def test_trunc_out_of_range(inst, x):
    expect_trap(TC.INT_OVERFLOW, inst.func("trunc_f32_s"), x)


def test_trunc_in_range(inst):
    t = inst.func("trunc_f32_s")
    assert t(-2147483648.0) == -2**31
    assert t(2147483520.0) == 2147483520
    assert t(-1.9) == -1


def test_i64_rem_u_by_zero(inst):
    expect_trap(TC.INT_DIV_BY_ZERO, inst.func("rem_u64"), 5, 0)
    assert inst.func("rem_u64")(-1, 10) == (2**64 - 1) % 10


def test_memory_out_of_bounds(inst):
    expect_trap(TC.MEMORY_OUT_OF_BOUNDS, inst.func("load"), 65536)
    expect_trap(TC.MEMORY_OUT_OF_BOUNDS, inst.func("load"), 65533)  # straddles the end
    expect_trap(TC.MEMORY_OUT_OF_BOUNDS, inst.func("load"), -1)
    expect_trap(TC.MEMORY_OUT_OF_BOUNDS, inst.func("load8"), 65536)
    expect_trap(TC.MEMORY_OUT_OF_BOUNDS, inst.func("store"), 65536, 1)
    expect_trap(TC.MEMORY_OUT_OF_BOUNDS, inst.func("store"), 65534, 1)
    expect_trap(TC.MEMORY_OUT_OF_BOUNDS, inst.func("load_big_offset"), 0)
    expect_trap(TC.MEMORY_OUT_OF_BOUNDS, inst.func("load_big_offset"), 0xFFFF)
    # the last in-bounds word still works, and a failed store wrote nothing
    inst.func("store")(65532, 0x11223344)
    assert inst.func("load")(65532) == 0x11223344
    assert inst.exports["memory"].read(65532, 4) == bytes.fromhex("44332211")


def test_memory_grow_makes_the_page_usable(inst):
    expect_trap(TC.MEMORY_OUT_OF_BOUNDS, inst.func("load"), 65536)
    assert inst.func("grow")(1) == 1
    assert inst.func("size")() == 2
    assert inst.func("load")(65536) == 0
    inst.func("store")(65536 + 100, -5)
    assert inst.func("load")(65536 + 100) == -5
    assert inst.exports["memory"].read(65536 + 100, 4) == struct.pack("<i", -5)
    expect_trap(TC.MEMORY_OUT_OF_BOUNDS, inst.func("load"), 131072)
    # beyond the maximum (4 pages) memory.grow fails with -1, without trapping
    assert inst.func("grow")(3) == -1
    assert inst.func("size")() == 2
    assert inst.func("grow")(2) == 2
    assert inst.func("load")(4 * 65536 - 4) == 0
    expect_trap(TC.MEMORY_OUT_OF_BOUNDS, inst.func("load"), 4 * 65536)


def test_stack_overflow(inst):
    expect_trap(TC.STACK_OVERFLOW, inst.func("rec"), 0)
    assert inst.func("add")(2, 3) == 5
    expect_trap(TC.STACK_OVERFLOW, inst.func("rec"), 0)


def test_mutual_recursion_stack_overflow(inst):
    expect_trap(TC.STACK_OVERFLOW, inst.func("even"), 0)
    assert inst.func("add")(2, 3) == 5


def test_call_indirect_ok(inst):
    assert inst.func("call_indirect")(0) == 42


def test_call_indirect_out_of_range(inst):
    expect_trap(TC.TABLE_OUT_OF_BOUNDS, inst.func("call_indirect"), 4)
    expect_trap(TC.TABLE_OUT_OF_BOUNDS, inst.func("call_indirect"), -1)
    expect_trap(TC.TABLE_OUT_OF_BOUNDS, inst.func("call_indirect"), 1000000)


def test_call_indirect_uninitialized(inst):
    expect_trap(TC.UNINITIALIZED_ELEMENT, inst.func("call_indirect"), 2)
    expect_trap(TC.UNINITIALIZED_ELEMENT, inst.func("call_indirect"), 3)


def test_call_indirect_type_mismatch(inst):
    expect_trap(TC.INDIRECT_CALL_TYPE_MISMATCH, inst.func("call_indirect"), 1)


# ---- thousands of traps, then the instance still works ----

def test_many_traps_leave_the_instance_usable(inst):
    mem = inst.exports["memory"]
    pattern = bytes(random.Random(1).randrange(256) for _ in range(4096))
    mem.write(1000, pattern)
    inst.func("store")(60000, 0x5EED)

    f = {n: inst.func(n) for n in ("unreachable", "div_s", "trunc_f32_s", "rem_u64", "load", "store",
                                   "load_big_offset", "rec", "even", "call_indirect", "add", "bump")}
    kinds = [
        (TC.UNREACHABLE, f["unreachable"], ()),
        (TC.INT_DIV_BY_ZERO, f["div_s"], (1, 0)),
        (TC.INT_OVERFLOW, f["div_s"], (-2**31, -1)),
        (TC.BAD_CONVERSION, f["trunc_f32_s"], (float("nan"),)),
        (TC.INT_OVERFLOW, f["trunc_f32_s"], (3e9,)),
        (TC.INT_DIV_BY_ZERO, f["rem_u64"], (1, 0)),
        (TC.MEMORY_OUT_OF_BOUNDS, f["load"], (65536,)),
        (TC.MEMORY_OUT_OF_BOUNDS, f["store"], (70000, 9)),
        (TC.MEMORY_OUT_OF_BOUNDS, f["load_big_offset"], (8,)),
        (TC.TABLE_OUT_OF_BOUNDS, f["call_indirect"], (9,)),
        (TC.UNINITIALIZED_ELEMENT, f["call_indirect"], (2,)),
        (TC.INDIRECT_CALL_TYPE_MISMATCH, f["call_indirect"], (1,)),
    ]
    rng = random.Random(12345)
    counts: dict[TC, int] = {}
    n_total, n_stack = 10_000, 0
    for i in range(n_total):
        if i % 40 == 0:  # 250 stack overflows, alternating self and mutual recursion
            code, fn, args = (TC.STACK_OVERFLOW, f["rec"] if n_stack % 2 else f["even"], (0,))
            n_stack += 1
        else:
            code, fn, args = kinds[rng.randrange(len(kinds))]
        try:
            fn(*args)
        except wa.Trap as t:
            assert t.code is code, f"call {i}: expected {code.name}, got {t.code!r}"
            counts[code] = counts.get(code, 0) + 1
        else:
            pytest.fail(f"call {i}: {fn!r}{args} did not trap")
        if i % 1000 == 999:
            assert f["add"](i, 1) == i + 1
    assert n_stack >= 200
    assert sum(counts.values()) == n_total
    assert set(counts) == {k for k, _, _ in kinds} | {TC.STACK_OVERFLOW}

    assert f["add"](40, 2) == 42
    assert f["call_indirect"](0) == 42
    assert f["bump"]() == 1 and f["bump"]() == 2
    assert mem.read(1000, len(pattern)) == pattern
    assert f["load"](60000) == 0x5EED
    assert f["div_s"](100, 7) == 14


def test_traps_leave_other_instances_alone(module):
    a, b = module.instantiate(), module.instantiate()
    b.func("store")(16, 77)
    for _ in range(50):
        expect_trap(TC.MEMORY_OUT_OF_BOUNDS, a.func("load"), 65536)
        expect_trap(TC.STACK_OVERFLOW, a.func("rec"), 0) if _ % 10 == 0 else None
    assert b.func("load")(16) == 77
    assert a.func("load")(16) == 0


# ---- trap frames ----

FRAMES_WAT = r"""
(module
  (func $a (export "a") (param i32) (result i32)
    (i32.add (call $b (i32.add (local.get 0) (i32.const 1))) (i32.const 1)))
  (func $b (param i32) (result i32)
    (i32.mul (call $c (i32.mul (local.get 0) (i32.const 3))) (i32.const 5)))
  (func $c (param i32) (result i32)
    (if (i32.ge_s (local.get 0) (i32.const 0)) (then unreachable))
    (local.get 0))
)
"""


@pytest.mark.parametrize("opt_level", [0, 2])
def test_trap_frames_innermost_first(opt_level):
    mod = wa.compile(wat(FRAMES_WAT, "--debug-names"), opt_level=opt_level)
    inst = mod.instantiate()
    a = inst.func("a")
    assert a(-10) == (-10 + 1) * 3 * 5 + 1
    t = expect_trap(TC.UNREACHABLE, a, 1)
    assert all(isinstance(fr, wa.Frame) for fr in t.frames)
    names = [fr.func_name for fr in t.frames]
    if opt_level == 0:
        assert names == ["c", "b", "a"]
        assert [fr.func_index for fr in t.frames] == [2, 1, 0]
    else:
        # frames are the physical ones: a function LLVM inlined into its caller has no frame
        assert names and names[-1] == "a"
        it = iter(["c", "b", "a"])
        assert all(n in it for n in names), names


DEEP_WAT = r"""
(module
  (memory 0)
  (func $down (export "down") (param i32) (result i32)
    (if (i32.eqz (local.get 0)) (then (return (call $boom))))
    (i32.add (call $down (i32.sub (local.get 0) (i32.const 1))) (i32.const 1)))
  (func $boom (result i32)
    (i32.load (i32.const 0)))
)
"""


@pytest.mark.parametrize("opt_level", [0, 2])
def test_trap_frames_deep_in_a_call_chain(opt_level):
    inst = wa.compile(wat(DEEP_WAT, "--debug-names"), opt_level=opt_level).instantiate()
    t = expect_trap(TC.MEMORY_OUT_OF_BOUNDS, inst.func("down"), 40)
    names = [fr.func_name for fr in t.frames]
    # innermost first; the backtrace is capped, so a deep chain shows its innermost frames
    assert names[0] in ("boom", "down")
    assert names.count("down") >= 20 and set(names) <= {"boom", "down"}
    expect_trap(TC.MEMORY_OUT_OF_BOUNDS, inst.func("down"), 0)  # still usable


def test_trap_frames_without_names_have_indices():
    mod = wa.compile(wat(FRAMES_WAT), opt_level=0)  # no name section
    t = expect_trap(TC.UNREACHABLE, mod.instantiate().func("a"), 1)
    assert [fr.func_index for fr in t.frames] == [2, 1, 0]
    assert all(fr.func_name is None for fr in t.frames)


# ---- host functions ----

HOST_WAT = r"""
(module
  (import "env" "cb" (func $cb (result i32)))
  (memory (export "memory") 1)
  (func (export "call_cb") (result i32)
    (i32.store (i32.const 0) (i32.const 99))
    (i32.add (call $cb) (i32.const 1)))
  (func (export "add") (param i32 i32) (result i32)
    (i32.add (local.get 0) (local.get 1)))
)
"""

HOST_ARGS_WAT = r"""
(module
  (import "env" "cb" (func $cb (param i32) (result i32)))
  (func (export "call_cb") (param i32) (result i32)
    (i32.add (call $cb (local.get 0)) (i32.const 1)))
  (func (export "add") (param i32 i32) (result i32)
    (i32.add (local.get 0) (local.get 1)))
)
"""


def test_host_exception_becomes_host_trap():
    state = {"x": 5, "calls": 0}

    def cb():
        state["calls"] += 1
        x = state["x"]
        if x < 0:
            raise ValueError(f"negative: {x}")
        return x * 2

    mod = wa.compile(wat(HOST_WAT))
    inst = mod.instantiate({"env": {"cb": wa.Function(cb, wa.FuncType([], [wa.I32]))}})
    f = inst.func("call_cb")
    assert f() == 11
    for i in range(200):
        state["x"] = -1 - i
        t = expect_trap(TC.HOST, f)
        assert isinstance(t.__cause__, ValueError)
        assert str(t.__cause__) == f"negative: {-1 - i}"
    state["x"] = 20
    assert f() == 41
    assert inst.func("add")(2, 2) == 4
    assert inst.exports["memory"].read(0, 4) == struct.pack("<i", 99)
    assert state["calls"] == 202


def test_host_exception_with_arguments_becomes_host_trap():
    """The same with a host function that takes a parameter (the shim spills it to the slots)."""
    def cb(x):
        if x < 0:
            raise ValueError(f"negative: {x}")
        return x * 2

    mod = wa.compile(wat(HOST_ARGS_WAT))
    inst = mod.instantiate({"env": {"cb": wa.Function(cb, wa.FuncType([wa.I32], [wa.I32]))}})
    f = inst.func("call_cb")
    assert f(5) == 11
    t = expect_trap(TC.HOST, f, -3)
    assert isinstance(t.__cause__, ValueError) and str(t.__cause__) == "negative: -3"
    assert f(20) == 41
    assert inst.func("add")(2, 2) == 4


def test_trap_in_wasm_called_from_a_host_function():
    """wasm -> host -> wasm that traps: the trap unwinds through the host function, process survives."""
    inner = wa.compile(wat(TRAPS_WAT)).instantiate()
    state = {"d": 0}

    def cb():
        return inner.func("div_s")(1, state["d"])

    mod = wa.compile(wat(HOST_WAT))
    inst = mod.instantiate({"env": {"cb": wa.Function(cb, wa.FuncType([], [wa.I32]))}})
    for _ in range(20):
        with pytest.raises(wa.Trap) as ei:
            inst.func("call_cb")()
        assert ei.value.code in (TC.INT_DIV_BY_ZERO, TC.HOST)
    state["d"] = 1
    assert inst.func("call_cb")() == 2
    assert inner.func("add")(1, 1) == 2


def test_trap_in_start_function():
    src = r"""(module (func $s unreachable) (start $s))"""
    mod = wa.compile(wat(src))
    expect_trap(TC.UNREACHABLE, mod.instantiate)


def test_initial_thread_stack_bounds_match_pthread():
    """The initial thread's stack is found without /proc/self/maps (runtime.c initial_thread_stack):
    the bounds agree with pthread_getattr_np's, so the stack-overflow limit is where it was."""
    from wasm_aot.loader.runtime import ffi, lib
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("pytest runs this test off the main thread")
    lo, hi, xlo, xhi = (ffi.new("uintptr_t *") for _ in range(4))
    assert lib.wa_thread_stack(lo, hi, 0) == 1 and lib.wa_thread_stack(xlo, xhi, 1) == 1
    page = 4096
    # the limit side agrees; the top is the stack mapping's end (glibc's: just above argc, below the
    # arguments and environment)
    assert abs(lo[0] - xlo[0]) <= page and xhi[0] <= hi[0] <= xhi[0] + (1 << 21)


@pytest.mark.parametrize("limit", ["8192", "unlimited", "65536"])
def test_stack_overflow_in_a_fresh_process_under_stack_limits(limit, tmp_path):
    """The first wasm call of a process finds the initial thread's stack from its rlimit (or, for an
    unlimited one, from pthread): deep recursion still traps, and the process survives."""
    import subprocess
    import sys
    path = tmp_path / "rec.wasm"
    path.write_bytes(wat('(module (func $f (export "f") (param i32) (result i32) '
                         'local.get 0 i32.const 1 i32.add call $f))'))
    code = ("import wasm_aot as wa\n"
            f"i = wa.compile(open({str(path)!r}, 'rb').read(), cache=False).instantiate()\n"
            "try:\n    i.exports.f(0)\nexcept wa.Trap as t:\n    print(t.code.name, i.exports.f.__class__.__name__)\n")
    r = subprocess.run(["bash", "-c", f'ulimit -s {limit} && exec "$0" -c "$1"', sys.executable, code],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[0] == "STACK_OVERFLOW"


HOST_DEEP = r'''
import sys
sys.path.insert(0, sys.argv[2])
import wasm_aot as wa
from conftest import wat
levels = int(sys.argv[1])
def host():  # ordinary Python whose builtins recurse in C: more stack than wasm's margin
    def r(n): return 0 if n == 0 else sum(map(r, [n - 1])) + 1
    return r(levels)
inst = wa.compile(wat("""(module (import "env" "h" (func $h (result i32)))
  (func $rec (export "rec") (param i32) (result i32)
    local.get 0 i32.eqz if (result i32) call $h else local.get 0 i32.const 1 i32.sub call $rec end)
  (func $deep (export "deep") (param i32) (result i32)
    local.get 0 i32.eqz if (result i32) i32.const 0 else local.get 0 i32.const 1 i32.sub call $deep end))"""),
    opt_level=0, cache=False).instantiate({"env": {"h": wa.Function(host, wa.FuncType([], [wa.I32]))}})
lo, hi = 1, 1 << 24  # the deepest wasm recursion that fits
while lo + 1 < hi:
    mid = (lo + hi) // 2
    try:
        inst.exports.deep(mid)
        lo = mid
    except wa.Trap:
        hi = mid
out = []
for depth in (lo - 2, lo - 1000, 100):
    try:
        out.append(str(inst.exports.rec(depth)))
    except wa.Trap as t:
        out.append(t.code.name)
print(" ".join(out))
'''


def test_host_function_called_at_the_bottom_of_the_wasm_stack():
    """Wasm recursion almost to its limit, then a host function running ordinary Python: the host
    call traps STACK_OVERFLOW where too little stack is left for Python (it crashed the process),
    and works where there is enough."""
    import os
    import subprocess
    import sys
    tests = os.path.dirname(os.path.abspath(__file__))
    r = subprocess.run([sys.executable, "-c", HOST_DEEP, "600", tests], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    bottom, near, shallow = r.stdout.split()
    assert bottom == "STACK_OVERFLOW" and shallow == "600"
    assert near in ("STACK_OVERFLOW", "600")


@pytest.mark.parametrize("opt_level", [0, 2])
def test_out_of_bounds_loads_trap_even_when_their_value_is_dead(opt_level):
    """With guard pages a load traps only by running, and LLVM deletes loads whose value is unused:
    each load's value is kept (FuncCodegen.keep), however it dies (found by differential fuzzing)."""
    bodies = ["i32.const 70000 i32.load i32.const 1 i32.add drop",
              "i32.const 70000 i32.load local.set 0",
              "i32.const 70000 i32.load i32.eqz drop",
              "f64.const 1 i32.const 70000 f64.load f64.min drop",
              "i32.const 1 i32.const 70000 i32.load i32.const 1 select drop",
              "i32.const 70000 i64.load16_s i64.const 0 i64.mul drop",
              "i32.const 70000 f32.load drop"]
    for body in bodies:
        inst = wa.compile(wat(f'(module (memory 1) (func (export "f") (result i32) (local i32) {body} i32.const 9))'),
                          opt_level=opt_level, cache=False).instantiate()
        expect_trap(TC.MEMORY_OUT_OF_BOUNDS, inst.exports.f)


@pytest.mark.parametrize("opt_level", [0, 2])
def test_globals_set_before_a_trap_stay_set(opt_level):
    """LLVM takes loads for harmless: knowing global cells apart from linear memory, it dropped a
    global store that a later one overwrote, or kept a global in a register across a loop and
    stored it at the exit, so the globals seen after an out-of-bounds trap were stale (found by
    differential fuzzing; global cells are typed as linear memory now)."""
    src = """(module (memory 1) (global $g (export "g") (mut i32) (i32.const 0))
      (func (export "line") (param i32)
        (global.set $g (i32.add (global.get $g) (i32.const 1)))
        (drop (i32.load (local.get 0)))
        (global.set $g (i32.add (global.get $g) (i32.const 1))))
      (func (export "loop") (param i32) (local i32)
        (loop $l
          (i32.store (local.get 0) (i32.const 7))
          (global.set $g (i32.add (global.get $g) (i32.const 1)))
          (local.set 0 (i32.add (local.get 0) (i32.const 4)))
          (br_if $l (i32.lt_u (local.tee 1 (i32.add (local.get 1) (i32.const 1))) (i32.const 10))))))"""
    inst = wa.compile(wat(src), opt_level=opt_level, cache=False).instantiate()
    expect_trap(TC.MEMORY_OUT_OF_BOUNDS, inst.exports.line, 65536)
    assert inst.exports.g.value == 1
    inst.exports.g.value = 0
    expect_trap(TC.MEMORY_OUT_OF_BOUNDS, inst.exports.loop, 65520)  # the 5th store traps
    assert inst.exports.g.value == 4


FAULTHANDLER_LATE = r'''
import ctypes, faulthandler, sys
sys.path.insert(0, sys.argv[1])
import wasm_aot as wa
from conftest import wat
inst = wa.compile(wat('(module (memory 1) (func (export "oob") (result i32) i32.const 0x7fffff00 i32.load))'),
                  cache=False).instantiate()
faulthandler.enable()  # after the import: its handler would come first
for _ in range(3):
    try:
        inst.exports.oob()
    except wa.Trap as t:
        print(t.code.name, flush=True)
ctypes.string_at(0)  # a real crash, outside wasm: still faulthandler's to report
'''


def test_faulthandler_enabled_after_import_keeps_traps_and_reports_real_crashes():
    import os
    import subprocess
    import sys
    tests = os.path.dirname(os.path.abspath(__file__))
    r = subprocess.run([sys.executable, "-c", FAULTHANDLER_LATE, tests], capture_output=True, text=True, timeout=120)
    assert r.stdout.split() == ["MEMORY_OUT_OF_BOUNDS"] * 3
    assert r.returncode == -11 and "Fatal Python error: Segmentation fault" in r.stderr
    assert r.stderr.count("Fatal Python error") == 1  # reported once, no loop between the handlers
