#!/usr/bin/env python3
"""Load + instantiate time of a cached artifact, wasm-aot against wasmtime's deserialize.

For a small module (one function) and a large one (thousands of functions, from gen_large.py):
  * wasm-aot first: as cold, but nothing derived from the metadata is remembered either (JSON parsed,
    checked, instantiation plan built), as for the first load of this content in a process;
  * wasm-aot cold: wa.load (read once into place by runtime_c/image.c, checksum and metadata checks, relocations) + instantiate, with the
    per-process mapping forgotten before each run so every run maps a fresh image (the metadata's
    verdict and the instantiation plan, derived once per checksum, are remembered);
  * wasm-aot warm: the same, with the image already mapped in the process (the file is still read and
    its checksum checked on every load);
  * wasm-aot fresh process: the first load + instantiate in a new interpreter (timed inside it, after
    `import wasm_aot`, whose own time is reported beside wasmtime's);
  * wasmtime: Module.deserialize(engine, bytes) and Module.deserialize_file(engine, path), each with
    Store + Instance creation.
No image wasm-aot maps is unmapped before the end (every Module is kept; instances are dropped, as
wasmtime's are): each load takes pages that no earlier image used, as in a process that only ever adds
modules. (A process that drops modules and loads others reuses the code arena's pages, already
mapped, and loads faster than this.)
Each figure is the median of --rounds interleaved rounds (ours and wasmtime's alternate, so a burst of
noise on a shared machine hits both alike), each round the median of --runs runs; fresh processes
alternate too. Prints a table and writes it to bench/results/load_time.txt.

    python bench/load_time.py [--runs N] [--large-funcs N]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import wasm_aot as wa  # noqa: E402
from wasm_aot.loader import artifact  # noqa: E402

SMALL_WAT = '(module (func (export "add") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add))'


def small_wasm() -> bytes:
    from _common import wat2wasm
    return wat2wasm(SMALL_WAT)


def large_wasm(n: int) -> bytes:
    try:
        from gen_large import generate  # the realistic generator shared with bench/run.py
        return generate(n)
    except ImportError:
        from _common import wat2wasm
        funcs = "\n".join(f'(func $f{i} (export "f{i}") (param i32) (result i32) local.get 0 i32.const {i} i32.add '
                          f'{"call $f" + str(i - 1) if i else ""})' for i in range(n))
        return wat2wasm(f"(module {funcs})")


def _median_us(f, runs: int) -> float:
    ts = []
    for _ in range(runs):
        t0 = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts) * 1e6


# every Module loaded (so its image), alive until the end: no run pays for unmapping an earlier one,
# nor reuses its pages (see the docstring)
_kept: list = []


def _load_instantiate(path: str) -> None:
    m = wa.load(path)
    _kept.append(m)
    m.instantiate()


def ours_cold(path: str, runs: int) -> float:
    def once():
        artifact._mapped.clear()  # forget the mapping: this run reads, checks, maps and links anew
        _load_instantiate(path)
    return _median_us(once, runs)


def ours_first(path: str, runs: int) -> float:
    """Cold, and the content never seen before: nothing derived from its metadata is remembered."""
    from wasm_aot import metadata

    def once():
        artifact._mapped.clear()
        artifact._checked.clear()
        metadata._externs.clear()  # the types it shares with other artifacts too
        _load_instantiate(path)
    return _median_us(once, runs)


def ours_warm(path: str, runs: int) -> float:
    _load_instantiate(path)  # keeps the artifact mapped: later loads find it
    return _median_us(lambda: _load_instantiate(path), runs)


FRESH = """
import sys, time
import wasm_aot as wa
t0 = time.perf_counter()
inst = wa.load(sys.argv[1]).instantiate()
t1 = time.perf_counter()
if len(sys.argv) > 2:  # and the first call: the time to a first result
    assert inst.exports.add(1, 2) == 3
print(t1 - t0, time.perf_counter() - t0)
"""


IMPORT = """
import sys, time
t0 = time.perf_counter()
import {0}
print(time.perf_counter() - t0)
"""


def import_ms(package: str, runs: int) -> float:
    """Median time of `import package` in a new interpreter (a service pays it once, at startup)."""
    # with bytecode caches, as an installed package has them: the first run writes any missing ones
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    ts = [float(subprocess.run([sys.executable, "-c", IMPORT.format(package)], check=True, capture_output=True,
                               text=True, env=env).stdout) for _ in range(runs + 1)]
    return statistics.median(ts[1:]) * 1e3


def _fresh(script: str, path: str, runs: int, call: bool) -> tuple[float, float]:
    """Median (load + instantiate, and with the first call when `call`) in new interpreters, us."""
    out = [subprocess.run([sys.executable, "-c", script, path] + (["call"] if call else []), check=True,
                          capture_output=True, text=True).stdout.split() for _ in range(runs)]
    return statistics.median(float(o[0]) for o in out) * 1e6, statistics.median(float(o[1]) for o in out) * 1e6


WT_FRESH = """
import sys, time
import wasmtime
engine = wasmtime.Engine()
t0 = time.perf_counter()
store = wasmtime.Store(engine)
inst = wasmtime.Instance(store, wasmtime.Module.deserialize_file(engine, sys.argv[1]), [])
t1 = time.perf_counter()
if len(sys.argv) > 2:
    assert inst.exports(store)["add"](store, 1, 2) == 3
print(t1 - t0, time.perf_counter() - t0)
"""
# (wasmtime's fresh process: the first deserialize_file + Instance in a new interpreter, after
# `import wasmtime` and Engine(), as ours is timed after `import wasm_aot`; and the same with the file
# read and given to Module.deserialize, the reference)
WT_FRESH_BYTES = WT_FRESH.replace("wasmtime.Module.deserialize_file(engine, sys.argv[1])",
                                  "wasmtime.Module.deserialize(engine, open(sys.argv[1], 'rb').read())")


def wasmtime_measures(wasm: bytes, runs: int, tmp: str) -> tuple[dict[str, Any], str]:
    """wasmtime's in-process measurements (as functions of nothing, each a median in us) and the path
    of its serialized module."""
    import wasmtime
    engine = wasmtime.Engine()
    blob = wasmtime.Module(engine, wasm).serialize()
    path = os.path.join(tmp, "m.cwasm")
    with open(path, "wb") as f:
        f.write(blob)

    def from_bytes():
        wasmtime.Instance(wasmtime.Store(engine), wasmtime.Module.deserialize(engine, blob), [])

    def from_file():
        wasmtime.Instance(wasmtime.Store(engine), wasmtime.Module.deserialize_file(engine, path), [])
    from_bytes()
    from_file()
    return {"wt bytes": lambda: _median_us(from_bytes, runs), "wt file": lambda: _median_us(from_file, runs)}, path


def interleaved(measures: dict[str, Any], rounds: int) -> dict[str, float]:
    """Each measurement taken `rounds` times, the rounds interleaved (so that a burst of noise on this
    machine hits every column alike), and the median of its rounds."""
    got: dict[str, list[float]] = {k: [] for k in measures}
    for _ in range(rounds):
        for k, f in measures.items():
            got[k].append(f())
    return {k: statistics.median(v) for k, v in got.items()}


def fresh_pairs(ours_path: str, wt_path: str, runs: int, call: bool) -> tuple[tuple, tuple, tuple]:
    """Fresh-process medians (ours, wasmtime's deserialize_file, wasmtime's deserialize of the file's
    bytes), each (load + instantiate, with the first call), one process of each in turn."""
    got: list[list] = [[], [], []]
    for _ in range(runs):
        got[0].append(_fresh(FRESH, ours_path, 1, call))
        got[1].append(_fresh(WT_FRESH, wt_path, 1, call))
        got[2].append(_fresh(WT_FRESH_BYTES, wt_path, 1, call))
    return tuple(tuple(statistics.median(x[i] for x in g) for i in range(2)) for g in got)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=200, help="runs per measurement (default 200)")
    ap.add_argument("--large-funcs", type=int, default=2000, help="functions in the large module (default 2000)")
    ap.add_argument("--fresh-runs", type=int, default=7, help="fresh-process runs (default 7)")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds of each in-process measurement "
                    "(default 5; each round is --runs runs)")
    a = ap.parse_args()
    os.environ.pop("WASM_AOT_SIGNING_KEY", None)
    rows = []
    first_results = []
    with tempfile.TemporaryDirectory(prefix="wa-load-bench-") as tmp:
        for name, wasm, runs in (("small", small_wasm(), a.runs),
                                 (f"large ({a.large_funcs} funcs)", large_wasm(a.large_funcs), max(a.runs // 4, 10))):
            mod = wa.compile(wasm)  # through the cache: a hit after the first run of this script
            size = os.path.getsize(mod.path)
            wt, wt_path = wasmtime_measures(wasm, runs, tmp)
            m = interleaved({"first": lambda: ours_first(mod.path, runs), "cold": lambda: ours_cold(mod.path, runs),
                             "warm": lambda: ours_warm(mod.path, runs), **wt}, a.rounds)
            first, cold, warm, wt_bytes, wt_file = m["first"], m["cold"], m["warm"], m["wt bytes"], m["wt file"]
            call = name == "small"
            (fresh, fresh_call), (wt_fresh, wt_fresh_call), (wt_fresh_b, _) = fresh_pairs(mod.path, wt_path,
                                                                                         a.fresh_runs, call)
            if call:
                first_results.append((name, fresh_call, wt_fresh_call))
            rows.append((name, len(wasm), size, first, cold, warm, fresh, wt_bytes, wt_file, wt_fresh, wt_fresh_b))
            print(f"  measured {name}", file=sys.stderr)
    head = (f"{'module':<20}{'artifact':>9}{'ours first':>11}{'cold':>6}{'warm':>6}{'fresh':>7}"
            f"{'wt bytes':>10}{'wt file':>9}{'wt fresh':>10}{'wt fresh b':>11}   {'bytes/first':>11}{'file/cold':>10}"
            f"{'fresh/fresh':>12}{'fresh b/fresh':>14}")
    lines = ["load + instantiate of a cached artifact, median microseconds "
             "(wt = wasmtime Module.deserialize / deserialize_file + Instance)", head, "-" * len(head)]
    for name, wsize, size, first, cold, warm, fresh, wtb, wtf, wtn, wtnb in rows:
        lines.append(f"{name:<20}{size:>9}{first:>11.0f}{cold:>6.0f}{warm:>6.0f}{fresh:>7.0f}{wtb:>10.0f}{wtf:>9.0f}"
                     f"{wtn:>10.0f}{wtnb:>11.0f}   {wtb / first:>10.2f}x{wtf / cold:>9.2f}x{wtn / fresh:>11.2f}x"
                     f"{wtnb / fresh:>13.2f}x")
    lines.append("ours first: a fresh mapping of content this process has not seen (its load record parsed and checked, as "
                 "deserialize does every time); cold: a fresh mapping every run (the metadata verdict is remembered "
                 "per checksum); warm: image already mapped (the file is still read and its checksum checked); "
                 "fresh: first load in a new interpreter, after the import (wasmtime: after import and Engine(); "
                 "wt fresh with deserialize_file, wt fresh b reading the file and calling deserialize). "
                 "Ratios are wasmtime / wasm-aot: above 1 means wasm-aot is faster.")
    for name, ours, wt in first_results:
        lines.append(f"time to a first result in a new interpreter ({name}: load, instantiate, call add(1, 2)): "
                     f"wasm_aot {ours:.0f} us, wasmtime {wt:.0f} us")
    lines.append(f"import in a new interpreter (median of {a.fresh_runs}): wasm_aot {import_ms('wasm_aot', a.fresh_runs):.1f} ms, "
                 f"wasmtime {import_ms('wasmtime', a.fresh_runs):.1f} ms")
    text = "\n".join(lines)
    print(text)
    out = HERE / "results" / "load_time.txt"
    out.parent.mkdir(exist_ok=True)
    out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
