#!/usr/bin/env python3
"""Call-overhead micro-benchmarks, wasm-aot beside wasmtime-py.

  * python->wasm: a typed call of an exported (i32, i32) -> i32 `add`, called in a tight Python loop
    (wasm-aot: inst.func("add"); wasmtime: the exported Func called with the store);
  * wasm->python: a wasm function loops N times calling an imported host function (i32) -> i32
    (a Python lambda); the time of the whole call divided by N.

Each figure is in ns per call, the median of several timed batches. The Python->wasm figure includes
the Python `for` loop itself (shown separately as `loop overhead`, about the same for both engines).

    python bench/micro.py [--calls N] [--runs R] [--quick]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time

from _common import median, wat2wasm

ADD_WAT = """
(module
  (func (export "add") (param i32 i32) (result i32)
    local.get 0 local.get 1 i32.add))
"""

HOST_WAT = """
(module
  (import "env" "f" (func $f (param i32) (result i32)))
  (func (export "loop") (param $n i32) (result i32) (local $i i32) (local $acc i32)
    block $done
      loop $l
        local.get $i local.get $n i32.ge_u br_if $done
        local.get $acc local.get $i call $f i32.add local.set $acc
        local.get $i i32.const 1 i32.add local.set $i
        br $l
      end
    end
    local.get $acc))
"""


def _batches(call_batch, n: int, runs: int) -> float:
    """ns per call: the median over `runs` batches of n calls (one warm-up batch first)."""
    call_batch(max(n // 10, 1))
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        call_batch(n)
        times.append((time.perf_counter() - t0) / n * 1e9)
    return median(times)


def loop_overhead(n: int, runs: int) -> float:
    def f(a, b):
        return a + b

    def batch(k):
        for _ in range(k):
            f(1, 2)
    return _batches(batch, n, runs)


def wasm_aot_figures(n: int, host_n: int, runs: int) -> dict[str, float]:
    import wasm_aot as wa
    with tempfile.TemporaryDirectory(prefix="bench-micro-") as cache:
        inst = wa.compile(wat2wasm(ADD_WAT), opt_level=2, cache=cache).instantiate()
        add = inst.func("add")
        assert add(1, 2) == 3

        def batch(k):
            for _ in range(k):
                add(1, 2)
        py_to_wasm = _batches(batch, n, runs)

        host = wa.Function(lambda x: x + 1, wa.FuncType([wa.I32], [wa.I32]))
        inst2 = wa.compile(wat2wasm(HOST_WAT), opt_level=2, cache=cache).instantiate({"env": {"f": host}})
        loop = inst2.func("loop")
        want = sum(i + 1 for i in range(100)) & 0xFFFFFFFF
        got = loop(100) & 0xFFFFFFFF
        if got != want:
            raise AssertionError(f"wasm-aot host loop gave {got}, want {want}")
        wasm_to_py = _batches(lambda k: loop(k), host_n, runs)
    return {"py_to_wasm_ns": py_to_wasm, "wasm_to_py_ns": wasm_to_py}


def wasmtime_figures(n: int, host_n: int, runs: int) -> dict[str, float]:
    import wasmtime
    engine = wasmtime.Engine()
    store = wasmtime.Store(engine)
    inst = wasmtime.Instance(store, wasmtime.Module(engine, wat2wasm(ADD_WAT)), [])
    add = inst.exports(store)["add"]
    assert add(store, 1, 2) == 3

    def batch(k):
        for _ in range(k):
            add(store, 1, 2)
    py_to_wasm = _batches(batch, n, runs)

    i32 = wasmtime.ValType.i32()
    host = wasmtime.Func(store, wasmtime.FuncType([i32], [i32]), lambda x: x + 1)
    inst2 = wasmtime.Instance(store, wasmtime.Module(engine, wat2wasm(HOST_WAT)), [host])
    loop = inst2.exports(store)["loop"]
    want = sum(i + 1 for i in range(100)) & 0xFFFFFFFF
    got = loop(store, 100) & 0xFFFFFFFF
    if got != want:
        raise AssertionError(f"wasmtime host loop gave {got}, want {want}")
    wasm_to_py = _batches(lambda k: loop(store, k), host_n, runs)
    return {"py_to_wasm_ns": py_to_wasm, "wasm_to_py_ns": wasm_to_py}


def measure(quick: bool = False, calls: int | None = None, runs: int | None = None) -> dict:
    n = calls or (50_000 if quick else 200_000)
    host_n = max(n // 4, 1000)
    runs = runs or (3 if quick else 5)
    out: dict = {"calls": n, "host_calls": host_n, "runs": runs,
                 "loop_overhead_ns": loop_overhead(n, runs)}
    try:
        out["wasm_aot"] = wasm_aot_figures(n, host_n, runs)
    except Exception as e:  # noqa: BLE001 - reported, not hidden
        out["wasm_aot"] = {"error": f"{type(e).__name__}: {e}"}
    try:
        out["wasmtime"] = wasmtime_figures(n, host_n, runs)
    except Exception as e:  # noqa: BLE001
        out["wasmtime"] = {"error": f"{type(e).__name__}: {e}"}
    return out


def _fmt(d: dict, k: str) -> str:
    return f"{d[k]:10.0f}" if k in d else f"{'ERROR':>10}"


def format_table(m: dict) -> list[str]:
    a, w = m["wasm_aot"], m["wasmtime"]
    lines = [f"micro-benchmarks (ns per call, median of {m['runs']} batches; "
             f"{m['calls']} python->wasm calls, {m['host_calls']} wasm->python calls per batch)",
             f"{'':34}{'wasm-aot':>10}{'wasmtime':>10}{'wa/wt':>8}"]
    for key, label in (("py_to_wasm_ns", "python->wasm add(i32,i32)->i32"),
                       ("wasm_to_py_ns", "wasm->python host (i32)->i32")):
        ratio = f"{a[key] / w[key]:8.3g}" if key in a and key in w else f"{'-':>8}"
        lines.append(f"{label:34}{_fmt(a, key)}{_fmt(w, key)}{ratio}")
    lines.append(f"{'(python loop overhead, included)':34}{m['loop_overhead_ns']:10.0f}")
    for name, d in (("wasm-aot", a), ("wasmtime", w)):
        if "error" in d:
            lines.append(f"!!! {name} micro-benchmark FAILED: {d['error']}")
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calls", type=int, help="python->wasm calls per batch (default 200000, --quick 50000)")
    ap.add_argument("--runs", type=int, help="batches (default 5, --quick 3)")
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    m = measure(a.quick, a.calls, a.runs)
    print("\n".join(format_table(m)))
    return 1 if "error" in m["wasm_aot"] or "error" in m["wasmtime"] else 0


if __name__ == "__main__":
    sys.exit(main())
