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


def test_an_interrupt_pending_for_calls_that_are_over_does_not_stop_their_caller():
    """A deadline's signal that finds its wasm call in the runtime is kept pending; it used to
    outlive that call when the call was itself inside a host function, and stopped the wasm that
    called the host function once it returned (flaky under load; made certain here: the signal
    comes while the inner call is in a host function that fails, so the failure traps first)."""
    from wasm_aot.loader.runtime import lib
    w = wat('''(module (import "env" "a" (func $a (result i32))) (import "env" "b" (func $b))
      (func (export "inner") (call $b))
      (func (export "outer") (result i32) (call $a)))''')
    box: dict = {}

    def b() -> None:
        # what a deadline opened in `a` sends: stop the calls deeper than `a`'s caller (depth 1)
        assert lib.wa_entry_depth() == 2
        assert lib.wa_interrupt_deeper(threading.get_ident(), 1) == 0
        raise RuntimeError("b fails")

    def a() -> int:
        with pytest.raises(wa.Trap) as ei:
            box["inst"].exports.inner()
        assert ei.value.code is TC.HOST
        return 7
    box["inst"] = wa.compile(w, cache=False).instantiate({"env": {"a": wa.Function(a, wa.FuncType([], [wa.I32])),
                                                                  "b": wa.Function(b, wa.FuncType([], []))}})
    for _ in range(3):
        assert box["inst"].exports.outer() == 7


BURST = r'''
import signal, sys, threading
sys.path.insert(0, sys.argv[1])
import wasm_aot as wa
from conftest import wat
from wasm_aot.loader.runtime import lib

sig = lib.wa_interrupt_signal()

def h():
    me = threading.get_ident()
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {sig})
    try:
        for _ in range(400):  # what a thread that did not run for 0.4 s finds from a deadline
            assert lib.wa_interrupt_deeper(me, 0) == 0
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)  # all of them at once

inst = wa.compile(wat('(module (import "env" "h" (func $h)) (func (export "f") (call $h)) '
                      '(func (export "spin") (loop (br 0))))'), cache=False).instantiate({"env": {"h": h}})
try:
    inst.exports.f()
except wa.Trap as t:
    print(t.code.name)
with wa.deadline(0.01):
    try:
        inst.exports.spin()
    except wa.Trap as t:
        print(t.code.name)
'''


def test_a_burst_of_interrupt_signals_is_taken_one_after_another(tmp_path):
    """A deadline queues a signal every millisecond; a thread that did not run for a while (a loaded
    machine) got them all at once, its handler nested in itself until it ran off the signal stack:
    the process crashed (in 1 run of 4 of this file under load). The handler now blocks its signal."""
    import subprocess
    import sys
    from pathlib import Path
    r = subprocess.run([sys.executable, "-c", BURST, str(Path(__file__).parent)], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split() == ["INTERRUPTED", "INTERRUPTED"]
