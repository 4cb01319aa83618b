"""Instances and threads: the GIL is released while wasm runs; traps stay in their thread."""
from __future__ import annotations

import threading
import time

import pytest

import wasm_aot as wa
from conftest import wat

TC = wa.TrapCode

# `flag` lives in a memory shared by two instances: one spins until the other sets it.
FLAG_WAT = r"""
(module
  (memory (export "memory") 1)
  (func (export "get") (result i32) (i32.load (i32.const 0)))
  (func (export "set") (param i32) (i32.store (i32.const 0) (local.get 0)))
)
"""

# Spins calling the other instance's `get` (an opaque call, so the load cannot be hoisted) at most
# `n` times; returns how many spins it took, or -1 if the flag was never seen.
SPIN_WAT = r"""
(module
  (import "flag" "get" (func $get (result i32)))
  (func (export "spin") (param $n i64) (result i64)
    (local $i i64)
    (block $done
      (loop $again
        (br_if $done (call $get))
        (local.set $i (i64.add (local.get $i) (i64.const 1)))
        (br_if $again (i64.lt_u (local.get $i) (local.get $n)))
        (return (i64.const -1))))
    (local.get $i))
)
"""

WORK_WAT = r"""
(module
  (memory 1)
  (func $rec (export "rec") (param i32) (result i32)
    (i32.add (call $rec (i32.add (local.get 0) (i32.const 1))) (i32.const 1)))
  (func (export "oob") (result i32) (i32.load (i32.const 65536)))
  (func (export "div") (param i32 i32) (result i32) (i32.div_s (local.get 0) (local.get 1)))
  ;; a long loop with a result that depends on every iteration
  (func (export "work") (param $n i64) (result i64)
    (local $i i64) (local $x i64)
    (local.set $x (i64.const 88172645463325252))
    (loop $l
      (local.set $x (i64.xor (local.get $x) (i64.shl (local.get $x) (i64.const 13))))
      (local.set $x (i64.xor (local.get $x) (i64.shr_u (local.get $x) (i64.const 7))))
      (local.set $x (i64.xor (local.get $x) (i64.shl (local.get $x) (i64.const 17))))
      (local.set $i (i64.add (local.get $i) (i64.const 1)))
      (br_if $l (i64.lt_u (local.get $i) (local.get $n))))
    (local.get $x))
)
"""


@pytest.fixture(scope="module")
def work_module():
    return wa.compile(wat(WORK_WAT), opt_level=2)


def _run_threads(*targets):
    errors: list[BaseException] = []

    def wrap(fn):
        def run():
            try:
                fn()
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)
        return run

    ts = [threading.Thread(target=wrap(t)) for t in targets]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
        assert not t.is_alive(), "a thread hung"
    if errors:
        raise errors[0]


def test_instance_used_from_another_thread(work_module):
    inst = work_module.instantiate()
    expected = inst.func("work")(1000)
    out = []
    _run_threads(lambda: out.append(inst.func("work")(1000)))
    assert out == [expected]


def test_gil_is_released_while_wasm_runs():
    """Thread A's wasm call spins until thread B's wasm call sets a flag: it can only see it if B
    ran while A was still inside wasm, i.e. if A's call did not hold the GIL."""
    flag = wa.compile(wat(FLAG_WAT)).instantiate()
    spinner = wa.compile(wat(SPIN_WAT), opt_level=2).instantiate({"flag": flag})
    started = threading.Event()
    result = []

    def spin():
        started.set()
        result.append(spinner.func("spin")(20_000_000_000))  # ~ forever if the flag never comes

    def setter():
        started.wait()
        time.sleep(0.05)  # let A enter wasm
        flag.func("set")(1)

    _run_threads(spin, setter)
    assert result and result[0] > 0, result


def test_two_long_calls_run_in_parallel(work_module):
    """Two instances, two threads: both make progress at once (timings printed, not asserted)."""
    a, b = work_module.instantiate(), work_module.instantiate()
    n = 30_000_000
    t0 = time.perf_counter()
    want = a.func("work")(n)
    one = time.perf_counter() - t0
    out: dict[str, int] = {}
    t0 = time.perf_counter()
    _run_threads(lambda: out.__setitem__("a", a.func("work")(n)), lambda: out.__setitem__("b", b.func("work")(n)))
    both = time.perf_counter() - t0
    print(f"one call {one * 1e3:.1f} ms, two in two threads {both * 1e3:.1f} ms")
    assert out == {"a": want, "b": want}


def test_same_instance_from_two_threads_at_once(work_module):
    inst = work_module.instantiate()
    f = inst.func("work")
    want = f(200_000)
    outs: list[int] = []
    lock = threading.Lock()

    def run():
        for _ in range(20):
            r = f(200_000)
            with lock:
                outs.append(r)

    _run_threads(run, run, run)
    assert outs == [want] * 60


def test_traps_in_one_thread_do_not_disturb_another(work_module):
    a, b = work_module.instantiate(), work_module.instantiate()
    want = b.func("work")(10_000)
    stop = threading.Event()
    results: list[int] = []
    codes: set = set()

    def trapper():
        try:
            for i in range(3000):
                for name, args in (("oob", ()), ("div", (1, 0)), ("rec", (0,)) if i % 100 == 0 else ("oob", ())):
                    try:
                        a.func(name)(*args)
                    except wa.Trap as t:
                        codes.add(t.code)
        finally:
            stop.set()

    def worker():
        while not stop.is_set():
            results.append(b.func("work")(10_000))

    _run_threads(trapper, worker)
    assert codes == {TC.MEMORY_OUT_OF_BOUNDS, TC.INT_DIV_BY_ZERO, TC.STACK_OVERFLOW}
    assert results and set(results) == {want}
    assert a.func("div")(7, 2) == 3


@pytest.mark.parametrize("stack_size", [0, 512 * 1024])
def test_stack_overflow_in_a_thread(work_module, stack_size):
    inst = work_module.instantiate()
    codes = []

    def run():
        for _ in range(3):
            try:
                inst.func("rec")(0)
            except wa.Trap as t:
                codes.append(t.code)

    old = threading.stack_size(stack_size) if stack_size else None
    try:
        _run_threads(run)
    finally:
        if old is not None:
            threading.stack_size(old)
    assert codes == [TC.STACK_OVERFLOW] * 3
    # ... and the main thread, with a stack elsewhere, still gets its own overflow as a trap
    with pytest.raises(wa.Trap) as ei:
        inst.func("rec")(0)
    assert ei.value.code is TC.STACK_OVERFLOW


HOST_WAT = r"""
(module
  (import "env" "cb" (func $cb (param i32) (result i32)))
  (func (export "f") (param i32) (result i32) (i32.add (call $cb (local.get 0)) (i32.const 1)))
)
"""


def test_host_functions_from_threads():
    seen: list[str] = []

    def cb(x):
        seen.append(threading.current_thread().name)
        if x < 0:
            raise ValueError("negative")
        return x * 2

    inst = wa.compile(wat(HOST_WAT)).instantiate({"env": {"cb": cb}})
    out: list = []

    def run():
        for i in range(50):
            out.append(inst.func("f")(i))
            with pytest.raises(wa.Trap) as ei:
                inst.func("f")(-1)
            assert ei.value.code is TC.HOST and isinstance(ei.value.__cause__, ValueError)

    _run_threads(run, run)
    assert sorted(out) == sorted([2 * i + 1 for i in range(50)] * 2)
    assert len(set(seen)) == 2


def _big_frame_module(nlocals: int) -> bytes:
    """$big keeps `nlocals` i64 locals live across a recursive call: a frame larger than the
    runtime's stack margin (256 KiB) and the guard page together."""
    sets = " ".join(f"local.get 0 i64.const {i} i64.add local.set {i + 1}" for i in range(nlocals))
    sums = " ".join(f"local.get {i + 1} i64.add" for i in range(nlocals))
    return wat(f"""(module (func $big (export "big") (param i64) (result i64) (local {" ".join(["i64"] * nlocals)})
      {sets}
      local.get 0 i64.eqz (if (then) (else local.get 0 i64.const 1 i64.sub call $big drop))
      i64.const 0 {sums}))""")


def test_huge_frames_cannot_jump_the_guard_page():
    inst = wa.compile(_big_frame_module(35_000), opt_level=0).instantiate()
    assert inst.func("big")(2) == sum(2 + i for i in range(35_000))
    codes = []

    def run():
        for _ in range(3):
            try:
                inst.func("big")(1 << 40)
            except wa.Trap as t:
                codes.append(t.code)

    old = threading.stack_size(1 << 20)
    try:
        _run_threads(run, run)
    finally:
        threading.stack_size(old)
    run()
    assert codes == [TC.STACK_OVERFLOW] * 9


REC_HOST_WAT = r"""
(module
  (import "env" "log" (func $log (param i32) (result i32)))
  (func $rec (export "rec") (param i32) (result i32)
    (i32.add (call $log (local.get 0)) (call $rec (i32.add (local.get 0) (i32.const 1)))))
)
"""


def test_deep_recursion_calling_python_at_every_level_in_every_thread():
    """Each thread checks against its own stack's limit, so a host call made near the bottom of
    any thread's stack still has the margin to run Python in (main thread included, after other
    threads with stacks elsewhere have run wasm)."""
    depth = []

    def log(x):
        depth.append(x)
        return len(str(x)) % 3  # a little Python work at every level

    inst = wa.compile(wat(REC_HOST_WAT)).instantiate({"env": {"log": log}})
    codes = []

    def run():
        try:
            inst.func("rec")(0)
        except wa.Trap as t:
            codes.append(t.code)

    old = threading.stack_size(2 << 20)
    try:
        _run_threads(run)
    finally:
        threading.stack_size(old)
    _run_threads(run)
    run()
    assert codes == [TC.STACK_OVERFLOW] * 3
    assert max(depth) > 1000


def test_loading_and_instantiating_from_many_threads_at_once(work_module):
    """Threads instantiating one fresh Module at once link its image once (linking releases the GIL:
    two threads linking the same image crashed the process) and share it; loads, instantiations,
    calls and drops of the same artifact in parallel all work."""
    from wasm_aot.loader import artifact
    path = work_module.path
    for _ in range(30):
        artifact._mapped.clear()  # nothing mapped: the threads race to link
        m = wa.load(path)
        barrier = threading.Barrier(4)
        insts: list = []

        def instantiate():
            barrier.wait()
            insts.append(m.instantiate())
        _run_threads(*[instantiate] * 4)
        assert len({id(i._m) for i in insts}) == 1  # one mapping, shared
        assert [i.exports.div(7, 2) for i in insts] == [3] * 4

    def churn():
        for k in range(40):
            inst = wa.load(path).instantiate()
            assert inst.exports.work(100) == work_module.instantiate().exports.work(100)
            if k % 5 == 0:
                with pytest.raises(wa.Trap):
                    inst.exports.oob()
            del inst
    _run_threads(*[churn] * 4)


GROW_WAT = r"""
(module
  (type $t (func (result i32)))
  (table $tab (export "table") 2 funcref)
  (memory (export "memory") 1)
  (elem (i32.const 0) $one $two)
  (func $one (type $t) (i32.const 1))
  (func $two (type $t) (i32.const 2))
  ;; n indirect calls of entries 0 and 1, summed
  (func (export "calls") (param $n i32) (result i32)
    (local $i i32) (local $sum i32)
    (block $done
      (loop $l
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (local.set $sum (i32.add (local.get $sum)
          (call_indirect (type $t) (i32.and (local.get $i) (i32.const 1)))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $l)))
    (local.get $sum))
  (func (export "grow_table") (param i32) (result i32) (table.grow $tab (ref.null func) (local.get 0)))
  (func (export "grow_memory") (param i32) (result i32) (memory.grow (local.get 0)))
)
"""


def test_tables_and_memories_grow_while_other_threads_run_wasm():
    """A grow replaces a table's element array while wasm in other threads reads it: the replaced
    array stays valid (never freed under a reader), the size is read with acquire, and concurrent
    grows are serialised (every grow is counted once)."""
    inst = wa.compile(wat(GROW_WAT)).instantiate()
    table, memory, calls = inst.exports.table, inst.exports.memory, inst.exports.calls
    grows = 3000

    def call_while_growing():
        for _ in range(60):
            assert calls(20000) == 30000

    def grow_from_python():
        for _ in range(grows // 2):
            table.grow(1)

    def grow_from_wasm():
        for _ in range(grows // 2):
            assert inst.exports.grow_table(1) != -1
            assert inst.exports.grow_memory(0) >= 1

    _run_threads(call_while_growing, call_while_growing, grow_from_python, grow_from_wasm)
    assert table.size == 2 + grows
    assert [table.get(i) is None for i in (0, 1, 2, 2 + grows - 1)] == [False, False, True, True]
    before = memory.size
    _run_threads(*[lambda: [inst.exports.grow_memory(1) for _ in range(50)]] * 4)
    assert memory.size == before + 200  # no grow lost to another
