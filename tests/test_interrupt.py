"""Stopping runaway wasm: wa.deadline and wa.interrupt (no cost in generated code)."""
from __future__ import annotations

import threading
import time

import pytest

import wasm_aot as wa
from conftest import wat

TC = wa.TrapCode

LOOPS_WAT = r"""
(module
  (import "env" "tick" (func $tick (param i32) (result i32)))
  (memory 1)
  (func (export "spin") (loop $l (br $l)))
  (func (export "spin_calling_python") (local $i i32)
    (loop $l (local.set $i (call $tick (local.get $i))) (br $l)))
  (func (export "fill_forever") (loop $l (memory.fill (i32.const 0) (i32.const 7) (i32.const 65536)) (br $l)))
  (func (export "add") (param i32 i32) (result i32) (i32.add (local.get 0) (local.get 1)))
)
"""


@pytest.fixture(scope="module")
def inst():
    return wa.compile(wat(LOOPS_WAT)).instantiate({"env": {"tick": lambda i: i + 1}})


@pytest.mark.parametrize("name", ["spin", "spin_calling_python", "fill_forever"])
def test_a_deadline_stops_an_endless_call(inst, name):
    t0 = time.perf_counter()
    with pytest.raises(wa.Trap) as ei:
        with wa.deadline(0.05):
            inst.func(name)()
    assert ei.value.code is TC.INTERRUPTED and str(ei.value).startswith("interrupted")
    assert time.perf_counter() - t0 < 10
    assert inst.func("add")(2, 3) == 5  # still usable


def test_a_deadline_that_does_not_expire_changes_nothing(inst):
    with wa.deadline(5):
        assert inst.func("add")(1, 1) == 2
    time.sleep(0.01)
    assert inst.func("add")(1, 2) == 3


def test_interrupt_another_thread(inst):
    seen = []

    def run():
        try:
            inst.func("spin")()
        except wa.Trap as t:
            seen.append(t.code)

    t = threading.Thread(target=run)
    t.start()
    deadline = time.time() + 10
    while t.is_alive() and time.time() < deadline:
        time.sleep(0.01)
        try:
            wa.interrupt(t.ident)
        except ValueError:  # it has just finished
            break
    t.join(10)
    assert seen == [TC.INTERRUPTED]
    with pytest.raises(ValueError):
        wa.interrupt(t.ident)  # no longer alive


def test_interrupts_do_not_leak_into_the_next_call(inst):
    for _ in range(20):
        with pytest.raises(wa.Trap):
            with wa.deadline(0.001):
                inst.func("spin")()
        assert inst.func("add")(20, 22) == 42


def test_an_interrupt_during_a_host_function_traps_when_it_returns():
    slept = []

    def nap(i):
        time.sleep(0.02)  # the signal lands here, in Python: the sleep still completes
        slept.append(i)
        return i + 1

    inst = wa.compile(wat(LOOPS_WAT)).instantiate({"env": {"tick": nap}})
    with pytest.raises(wa.Trap) as ei:
        with wa.deadline(0.05):
            inst.func("spin_calling_python")()
    assert ei.value.code is TC.INTERRUPTED
    assert 1 <= len(slept) < 100


def test_a_deadline_in_a_host_function_leaves_the_calling_wasm_alone():
    """The deadline covers wasm called inside its block; its watcher signalling on while the host
    function finishes (in Python) must not stop the wasm call that called the host function."""
    import time
    w = wat('''(module (import "env" "host" (func $host (result i32)))
      (func (export "spin") (loop (br 0)))
      (func (export "outer") (result i32) (call $host)))''')
    box: dict = {}
    stopped = []

    def host() -> int:
        with wa.deadline(0.05):
            try:
                box["inst"].exports.spin()
            except wa.Trap as e:
                stopped.append(e.code)
                time.sleep(0.02)  # still inside the block: the watcher keeps signalling
        return 7
    box["inst"] = wa.compile(w, cache=False).instantiate({"env": {"host": wa.Function(host, wa.FuncType([], [wa.I32]))}})
    for _ in range(3):
        assert box["inst"].exports.outer() == 7
    assert stopped == [wa.TrapCode.INTERRUPTED] * 3
