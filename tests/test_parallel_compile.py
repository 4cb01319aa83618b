"""Parallel compilation of large modules: a module big enough is split into parts built by forked
workers and linked into one .so. The result runs like a single-part compile, its bytes do not depend
on how many workers built it, traps inside any part name the right frames, and a failing or dying
worker fails the compile loudly."""
from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest

import wasm_aot as wa
from wasm_aot import codegen
from wasm_aot.codegen.emit import other_threads_running
from wasm_aot.codegen.module import ModuleCodegen
from wasm_aot.compiler import compile_to_file
from wasm_aot.decode import decode
from wasm_aot.errors import TrapCode as TC

from conftest import wat

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import gen_large  # noqa: E402


@pytest.fixture
def env(monkeypatch):
    monkeypatch.delenv(codegen.PARTS_ENV, raising=False)
    monkeypatch.delenv(codegen.JOBS_ENV, raising=False)
    return monkeypatch


def _compile(wasm: bytes, path: Path, opt_level: int = 2) -> tuple[bytes, dict]:
    timings: dict = {}
    compile_to_file(wasm, str(path), opt_level=opt_level, timings=timings)
    return path.read_bytes(), timings


def _run(path: Path) -> int:
    return wa.load(path).instantiate().func("run")()


def test_small_modules_stay_one_part():
    small = decode(wat('(module (func (export "f") (result i32) i32.const 1))'))
    assert len(codegen.plan_parts(small)) == 1
    assert len(codegen.plan_parts(decode(gen_large.generate(40)))) == 1


def test_plan_covers_every_function_once_in_order(env):
    mod = decode(gen_large.generate(300))
    parts = codegen.plan_parts(mod)
    assert 2 <= len(parts) <= codegen.MAX_PARTS
    assert [i for p in parts for i in p] == list(range(mod.num_imported_funcs, len(mod.func_type_indices())))
    sizes = [sum(len(mod.funcs[i - mod.num_imported_funcs].body) for i in p) for p in parts]
    assert max(sizes) < 1.5 * min(sizes)  # balanced
    env.setenv(codegen.PARTS_ENV, "1000")  # never more parts than functions, none empty
    assert [len(p) for p in codegen.plan_parts(mod)] == [1] * len(mod.funcs)
    env.setenv(codegen.PARTS_ENV, "0")
    with pytest.raises(ValueError, match=codegen.PARTS_ENV):
        codegen.plan_parts(mod)


def test_partitioned_compile_matches_single_part(tmp_path, env):
    wasm = gen_large.generate(100)
    assert len(codegen.plan_parts(decode(wasm))) >= 2
    env.setenv(codegen.JOBS_ENV, "2")
    par, t = _compile(wasm, tmp_path / "par.so")
    assert t["parts"] >= 2
    if not other_threads_running():  # a process with threads builds its parts itself
        assert t["jobs"] == 2
    assert t["parallel"] >= t["codegen"] + t["optimise"] + t["emit"] - 1e-3
    env.setenv(codegen.JOBS_ENV, "1")  # the same parts built one after the other: the same bytes
    serial, t1 = _compile(wasm, tmp_path / "serial.so")
    assert t1["jobs"] == 1 and serial == par
    env.setenv(codegen.PARTS_ENV, "1")
    single, t2 = _compile(wasm, tmp_path / "single.so")
    assert "parts" not in t2 and single != par
    assert _run(tmp_path / "par.so") == _run(tmp_path / "single.so")


FILLER = """  (func $fill{i} (param i32) (result i32) (local i32)
    (local.set 1 (i32.mul (local.get 0) (i32.const {k})))
    (block (loop (br_if 1 (i32.ge_u (local.get 1) (i32.const 1000)))
      (local.set 1 (i32.add (i32.mul (local.get 1) (i32.const 3)) (i32.const 1))) (br 0)))
    (i32.xor (local.get 1) (i32.const {i})))"""


def _frames_wat() -> str:
    """$entry (function 0) calls $mid (30), which calls a trapping function (61..63) near the end."""
    fill = iter(range(1000))
    body = ['(module (memory 1) (table 1 funcref)',
            '  (func $entry (export "entry") (param i32) (result i32)'
            '    (i32.add (call $mid (local.get 0)) (i32.const 1)))']
    body += [FILLER.format(i=next(fill), k=3 + j) for j in range(29)]
    body.append('  (func $mid (param i32) (result i32)'
                '    (if (i32.eq (local.get 0) (i32.const 1)) (then (return (i32.mul (call $unreachable) (i32.const 2)))))'
                '    (if (i32.eq (local.get 0) (i32.const 2)) (then (return (i32.mul (call $oob) (i32.const 2)))))'
                '    (i32.mul (call $div (local.get 0)) (i32.const 2)))')
    body += [FILLER.format(i=next(fill), k=5 + j) for j in range(30)]
    body.append('  (func $unreachable (result i32) unreachable)')
    body.append('  (func $oob (result i32) (i32.load (i32.const 0x7fffff00)))')
    body.append('  (func $div (param i32) (result i32) (i32.div_u (i32.const 100) (i32.sub (local.get 0) (i32.const 3))))')
    return "\n".join(body) + ")"


@pytest.mark.parametrize("opt_level", [0, 2])
def test_trap_frames_in_later_parts(tmp_path, env, opt_level):
    wasm = wat(_frames_wat(), "--debug-names")
    env.setenv(codegen.PARTS_ENV, "3")
    parts = codegen.plan_parts(decode(wasm))
    where = {f: next(k for k, p in enumerate(parts) if f in p) for f in (0, 30, 61, 62, 63)}
    assert where[0] == 0 and where[30] == 1 and where[61] == where[62] == where[63] == 2, where
    _, t = _compile(wasm, tmp_path / "m.so", opt_level)
    assert t["parts"] == 3
    entry = wa.load(tmp_path / "m.so").instantiate().func("entry")
    assert entry(4) == 100 * 2 + 1
    for arg, code, fn in ((1, TC.UNREACHABLE, 61), (2, TC.MEMORY_OUT_OF_BOUNDS, 62), (3, TC.INT_DIV_BY_ZERO, 63)):
        with pytest.raises(wa.Trap) as ei:
            entry(arg)
        assert ei.value.code == code
        frames = ei.value.frames
        # calls across parts are never inlined: every frame is there
        assert [f.func_index for f in frames] == [fn, 30, 0], frames
        assert [f.func_name for f in frames] == [{61: "unreachable", 62: "oob", 63: "div"}[fn], "mid", "entry"]
    assert entry(5) == 100 // 2 * 2 + 1  # still usable


def _fail_in_other_parts(env, how):
    real = ModuleCodegen.generate

    def generate(self, meta):
        if not self.main:
            how()
        return real(self, meta)
    env.setattr(ModuleCodegen, "generate", generate)


def _small_two_parts(env) -> bytes:
    if other_threads_running():  # (threads another test left: see the fresh-process test below)
        pytest.skip("a process with other threads running does not fork")
    env.setenv(codegen.PARTS_ENV, "2")
    env.setenv(codegen.JOBS_ENV, "2")
    return gen_large.generate(20)


def test_worker_exception_fails_the_compile(tmp_path, env):
    wasm = _small_two_parts(env)

    def boom():
        raise ValueError("injected failure in a part")
    _fail_in_other_parts(env, boom)
    with pytest.raises(ValueError, match="injected failure") as ei:
        compile_to_file(wasm, str(tmp_path / "m.so"), opt_level=0)
    assert any("compile worker 1" in n and "boom" in n for n in ei.value.__notes__)
    assert not (tmp_path / "m.so").exists()


def test_worker_death_fails_the_compile(tmp_path, env):
    wasm = _small_two_parts(env)
    _fail_in_other_parts(env, lambda: os.kill(os.getpid(), signal.SIGKILL))
    with pytest.raises(RuntimeError, match="compile worker 1 .* killed by signal SIGKILL"):
        compile_to_file(wasm, str(tmp_path / "m.so"), opt_level=0)
    assert not (tmp_path / "m.so").exists()


def test_no_fork_while_a_thread_unknown_to_threading_runs():
    """A thread started with _thread (or by C code) is invisible to threading.active_count(): a
    forked part worker inherited llvmlite's lock held by it and waited forever. Threads are counted
    by the kernel now, and the parts are built in-process."""
    import subprocess
    import sys
    code = r'''
import _thread, sys, time
sys.path.insert(0, sys.argv[1])
import wasm_aot as wa
from conftest import wat
def mod(seed, n):
    return wat("(module " + " ".join(f"(func (export \"f{i}\") (param i32) (result i32) local.get 0 i32.const {seed * 10000 + i} i32.add)" for i in range(n)) + ")")
def bg():
    i = 0
    while True:
        i += 1
        wa.compile(mod(i, 40), cache=False)
_thread.start_new_thread(bg, ())
time.sleep(0.2)
for rep in range(1, 6):
    wa.compile(mod(-rep, 2500), cache=False, opt_level=0)
print("done")
'''
    import os
    tests = os.path.dirname(os.path.abspath(__file__))
    r = subprocess.run([sys.executable, "-c", code, tests], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.strip() == "done", r.stderr[-2000:]


def test_a_single_threaded_process_builds_parts_in_forked_workers(tmp_path):
    """(The suite's process may have threads other tests left running Python: the forked
    path is checked in a fresh process too.)"""
    import subprocess
    code = (f"import sys; sys.path.insert(0, {str(Path(gen_large.__file__).parent)!r})\n"
            "import gen_large\nfrom wasm_aot.compiler import compile_to_file\n"
            "t = {}\ncompile_to_file(gen_large.generate(100), sys.argv[1], opt_level=0, timings=t)\n"
            "print(t['parts'], t['jobs'])\n")
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "m.so")], capture_output=True, text=True,
                       timeout=300, env={**os.environ, codegen.JOBS_ENV: "2"})
    parts, jobs = map(int, r.stdout.split())
    assert parts >= 2 and jobs == 2, r.stderr[-2000:]
