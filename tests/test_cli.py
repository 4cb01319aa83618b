"""The command line: compile, run, inspect; text input; exit statuses and one-line errors."""
from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import wat

FAC = """(module (func (export "fac") (param i64) (result i64)
  (if (result i64) (i64.eqz (local.get 0)) (then (i64.const 1))
    (else (i64.mul (local.get 0) (call 0 (i64.sub (local.get 0) (i64.const 1))))))))"""


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "wasm_aot.cli", *args], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def fac_wasm(tmp_path_factory):
    p = tmp_path_factory.mktemp("cli") / "fac.wasm"
    p.write_bytes(wat(FAC))
    return p


def test_compile_then_run_the_artifact(fac_wasm, tmp_path):
    out = tmp_path / "fac.so"
    r = cli("compile", str(fac_wasm), "-o", str(out), "-O1", "--timings")
    assert r.returncode == 0, r.stderr
    assert "emit" in r.stderr and "total" in r.stderr
    r = cli("run", str(out), "--invoke", "fac", "10")
    assert (r.returncode, r.stdout) == (0, "3628800\n")
    r = cli("inspect", str(out))
    assert r.returncode == 0 and "fac: (i64) -> (i64)" in r.stdout


def test_run_text_input(tmp_path):
    p = tmp_path / "fac.wat"
    p.write_text(FAC)
    r = cli("run", str(p), "--invoke", "fac", "20")
    assert (r.returncode, r.stdout) == (0, "2432902008176640000\n")
    p.write_text("(module (func (result i32) (i64.const 1)))")
    r = cli("run", str(p))
    assert r.returncode == 1 and r.stderr.startswith("wasm-aot: error: text format:") and "Traceback" not in r.stderr


@pytest.mark.parametrize("args, status, message", [
    (["run", "{bad}"], 1, "magic header not detected"),
    (["run", "{fac}", "--invoke", "nope"], 1, "no export named 'nope'"),
    (["run", "{fac}", "--invoke", "fac", "x"], 1, "bad argument"),
    (["run", "{fac}", "--invoke", "fac"], 1, "takes 1 argument"),
    (["run", "{fac}", "--invoke", "fac", "100000000"], 1, "call stack exhausted"),
    (["run", "{missing}"], 1, "No such file"),
    (["compile"], 2, "required"),
    (["frobnicate"], 2, "invalid choice"),
])
def test_errors_are_one_line_with_the_right_status(fac_wasm, tmp_path, args, status, message):
    bad = tmp_path / "bad.wasm"
    bad.write_bytes(b"garbage!")
    args = [a.format(bad=bad, fac=fac_wasm, missing=tmp_path / "none.wasm") for a in args]
    r = cli(*args)
    assert r.returncode == status, r.stderr
    assert message in r.stderr and "Traceback" not in r.stderr


def test_unknown_cpu_is_a_clear_error(tmp_path):
    """LLVM aborts the process on a CPU it cannot generate code for: the name is tried first."""
    import threading

    import wasm_aot as wa
    w = wat('(module (func (export "f") (result i32) i32.const 1))')
    for cpu in ("bogus9", "i686", "no such cpu"):
        with pytest.raises(ValueError, match="CPU"):
            wa.compile(w, cpu=cpu, cache=False)
    assert wa.compile(w, cpu="x86-64-v2", cache=False).instantiate().exports.f() == 1
    # the same from a thread (no fork with other threads running: a new process tries the name)
    caught: list = []

    def in_thread() -> None:
        try:
            wa.compile(w, cpu="bogus8", cache=False)
        except ValueError as e:
            caught.append(e)
    t = threading.Thread(target=in_thread)
    t.start()
    t.join()
    assert len(caught) == 1 and "bogus8" in str(caught[0])
    p = tmp_path / "m.wasm"
    p.write_bytes(w)
    r = cli("compile", str(p), "--cpu", "bogus9", "-o", str(tmp_path / "m.so"))
    assert r.returncode == 2 and r.stderr.startswith("wasm-aot: error: unknown CPU 'bogus9'")


def test_cli_double_dash_and_output_paths(tmp_path):
    p = tmp_path / "id.wasm"
    p.write_bytes(wat('(module (func (export "id") (param i32) (result i32) (local.get 0)))'))
    r = cli("run", str(p), "--invoke", "id", "--", "-5")
    assert r.returncode == 0 and r.stdout.strip() == "-5"
    r = cli("compile", str(p), "-o", str(tmp_path / "no" / "such" / "x.so"))
    assert r.returncode == 1 and r.stderr.strip() == f"wasm-aot: error: {tmp_path / 'no' / 'such'}: no such directory"
    r = cli("compile", str(p), "-o", str(tmp_path))
    assert r.returncode == 1 and r.stderr.strip() == f"wasm-aot: error: {tmp_path}: is a directory"


def test_inspect_escapes_odd_names(tmp_path):
    p = tmp_path / "odd.wat"
    p.write_text('(module (func (export "f\\nexports:    0\\1b[2J") ) (func (export "plain")))')
    r = cli("inspect", str(p))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert any(line.strip().startswith("'f\\nexports:") for line in lines) and "\x1b" not in r.stdout
    assert "  plain: () -> ()" in lines


def test_run_with_v128_arguments_and_results(tmp_path):
    """A v128 argument is an integer of 128 bits or lanes (SHAPE:lane0,lane1,...); a result prints as
    32 hex digits."""
    p = tmp_path / "v.wat"
    p.write_text("""(module
      (func (export "add") (param v128 v128) (result v128) (i32x4.add (local.get 0) (local.get 1)))
      (func (export "sum") (param v128) (result i32 v128)
        (i32.add (i32x4.extract_lane 0 (local.get 0)) (i32x4.extract_lane 3 (local.get 0))) (local.get 0)))""")
    r = cli("run", str(p), "--invoke", "add", "i32x4:1,2,3,-1", "0x1")
    assert (r.returncode, r.stdout) == (0, "0xffffffff000000030000000200000002\n"), r.stderr
    r = cli("run", str(p), "--invoke", "sum", "i8x16:1,0,0,0,0,0,0,0,0,0,0,0,255,255,255,255")
    assert (r.returncode, r.stdout) == (0, "0\n0xffffffff000000000000000000000001\n"), r.stderr
    r = cli("run", str(p), "--invoke", "add", "f32x4:1,2,3,4.5", "340282366920938463463374607431768211455")
    assert r.stdout == "0x408fffff403fffff3fffffff3f7fffff\n", r.stderr  # each lane - 1
    for bad, why in (("i32x4:1,2", "i32x4 takes 4 lanes, got 2"), ("u8x16:1", "unknown v128 shape"),
                     (str(1 << 128), "out of range")):
        r = cli("run", str(p), "--invoke", "add", bad, "0")
        assert r.returncode == 1 and why in r.stderr and "Traceback" not in r.stderr, r.stderr
