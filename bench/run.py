#!/usr/bin/env python3
"""wasm-aot against native gcc -O2 and wasmtime, side by side, on the shared benchmark corpus.

For every program of the corpus (../shared/bench, or $WASM_AOT_BENCH: each src/NAME.c with its
prebuilt wasm/NAME.wasm exporting run() -> i64):
  * native:   src/NAME.c + the corpus's native/main.c harness, gcc -O2, built into a temp folder; the
              harness times each run() call itself (CLOCK_MONOTONIC). This is the reference, 1.00;
  * wasmtime: compile time (wasmtime.Module(engine, bytes)) and run time of run() on one instance;
  * wasm-aot: compile time at -O2 with a cold cache (wa.compile(bytes, opt_level=2, cache=<fresh dir>)),
              load+instantiate time from a warm cache (wa.compile cache hit + instantiate: the file is
              read and checked each time; its code, already mapped in this process, is reused), and
              run time of run().
Run times time only the run() call (in-process for wasm). Every figure is a median of --runs.
The three checksums must agree: any disagreement (or a wasm-aot crash) is reported loudly and the
script exits with status 1.

Then: a large generated module (bench/gen_large.py) compiled by wasm-aot -O2 and by wasmtime, the fixed
cost of compiling a tiny module (cold cache), and the call-overhead micro-benchmarks (bench/micro.py).
wasm-aot runs in a child process per program, so a crash is reported instead of ending the run.

The report goes to stdout and to bench/results/latest.txt, the figures to bench/results/latest.json.

    python bench/run.py [--runs N] [--quick] [--no-large] [--no-micro] [PROGRAM ...]
"""
from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import CORPUS, HERE, MASK64, REPO, geomean, median, programs, wat2wasm

RESULTS = HERE / "results"
WORKER_TAG = "@@bench-result@@ "
TINY_WAT = '(module (func (export "add") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add))'
WARMUP_WAT = '(module (func (export "f") (result i32) i32.const 7))'


# ----------------------------------------------------------------------------------------- wasm-aot
def worker(path: str, compile_runs: int, load_runs: int, run_runs: int) -> dict:
    """In a child process: compile (cold cache), load from a warm cache, run. Returns the figures."""
    import wasm_aot as wa
    wasm = Path(path).read_bytes()
    out: dict = {"compile_s": [], "load_hit_s": [], "load_so_s": [], "run_s": [], "checksums": []}
    root = tempfile.mkdtemp(prefix="bench-wa-")
    try:
        # the first compile in a process also imports llvmlite and sets up LLVM: timed apart
        t0 = time.perf_counter()
        wa.compile(wat2wasm(WARMUP_WAT), opt_level=2, cache=os.path.join(root, "warmup"))
        out["first_compile_s"] = time.perf_counter() - t0
        warm = None
        for i in range(compile_runs):
            d = os.path.join(root, f"cold{i}")
            t0 = time.perf_counter()
            mod = wa.compile(wasm, opt_level=2, cache=d)
            out["compile_s"].append(time.perf_counter() - t0)
            warm = d
        artifacts = [f for f in os.listdir(warm) if f.endswith(".so")]
        if len(artifacts) != 1:
            raise RuntimeError(f"expected one artifact in the cache, found {artifacts}")
        out["artifact_bytes"] = os.path.getsize(os.path.join(warm, artifacts[0]))
        inst = None
        for i in range(load_runs):
            # a fresh cache dir each time: the hit must read and check a file (the code mapping of the
            # same content is shared in-process, see wasm_aot/loader/artifact.py)
            d = os.path.join(root, f"warm{i}")
            os.mkdir(d)
            shutil.copy2(os.path.join(warm, artifacts[0]), d)
            t0 = time.perf_counter()
            inst = wa.compile(wasm, opt_level=2, cache=d).instantiate()
            out["load_hit_s"].append(time.perf_counter() - t0)
            if sorted(f for f in os.listdir(d) if f.endswith(".so")) != artifacts:
                raise RuntimeError("the warm cache was not hit (a new artifact was written)")
            so = os.path.join(root, f"so{i}.so")
            shutil.copy2(os.path.join(warm, artifacts[0]), so)
            t0 = time.perf_counter()
            wa.load(so).instantiate()
            out["load_so_s"].append(time.perf_counter() - t0)
        if run_runs:
            run = (inst or mod.instantiate()).func("run")
            for _ in range(run_runs):
                t0 = time.perf_counter()
                v = run()
                out["run_s"].append(time.perf_counter() - t0)
                out["checksums"].append(v & MASK64)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return out


def run_worker(path: Path, compile_runs: int, load_runs: int, run_runs: int, timeout: float) -> dict:
    """wasm-aot's figures for one module, from a child process; {'error': ...} if it failed."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", str(path),
           str(compile_runs), str(load_runs), str(run_runs)]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=str(HERE))
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    for line in p.stdout.splitlines():
        if line.startswith(WORKER_TAG):
            return json.loads(line[len(WORKER_TAG):])
    if p.returncode < 0:
        try:
            sig = signal.Signals(-p.returncode).name
        except ValueError:
            sig = str(-p.returncode)
        why = f"CRASHED with signal {sig}"
    else:
        why = f"exited with status {p.returncode}"
    tail = (p.stderr.strip().splitlines() or ["(no stderr)"])[-6:]
    return {"error": why + ": " + " | ".join(tail)}


# ----------------------------------------------------------------------------------------- peers
def build_native(names: list[str], out: str) -> dict[str, str]:
    cc = os.environ.get("CC_NATIVE", "gcc")
    exes = {}
    for name in names:
        exe = os.path.join(out, name)
        subprocess.run([cc, "-O2", "-o", exe, str(CORPUS / "src" / f"{name}.c"),
                        str(CORPUS / "native" / "main.c"), "-lm"], check=True, capture_output=True)
        exes[name] = exe
    return exes


def run_native(exe: str, runs: int) -> dict:
    """The harness calls run() `runs` times in one process and times each call itself."""
    out = subprocess.run([exe, str(runs)], check=True, capture_output=True, text=True).stdout
    sums, times = [], []
    for m in re.finditer(r"checksum=([0-9a-fA-F]+) seconds=([0-9.eE+-]+)", out):
        sums.append(int(m.group(1), 16))
        times.append(float(m.group(2)))
    if len(sums) != runs:
        raise RuntimeError(f"unexpected native output: {out!r}")
    return {"run_s": times, "checksums": sums}


def run_wasmtime(wasm: bytes, compile_runs: int, run_runs: int) -> dict:
    import wasmtime
    engine = wasmtime.Engine()
    wasmtime.Module(engine, wat2wasm(WARMUP_WAT))  # engine set-up is not the module's compile time
    out: dict = {"compile_s": [], "run_s": [], "checksums": []}
    module = None
    for _ in range(compile_runs):
        t0 = time.perf_counter()
        module = wasmtime.Module(engine, wasm)
        out["compile_s"].append(time.perf_counter() - t0)
    if run_runs:
        store = wasmtime.Store(engine)
        run = wasmtime.Instance(store, module, []).exports(store)["run"]
        for _ in range(run_runs):
            t0 = time.perf_counter()
            v = run(store)
            out["run_s"].append(time.perf_counter() - t0)
            out["checksums"].append(v & MASK64)
    return out


# ----------------------------------------------------------------------------------------- report
def _med(d: dict, key: str) -> float | None:
    xs = d.get(key) or []
    return median(xs) if xs else None


def _f(x: float | None, fmt: str, width: int) -> str:
    return format(x, fmt).rjust(width) if x is not None else "-".rjust(width)


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def versions() -> dict:
    def ver(pkg: str) -> str:
        try:
            return importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            return "?"
    try:
        rev = subprocess.run(["git", "-C", str(REPO), "describe", "--always", "--dirty"],
                             capture_output=True, text=True).stdout.strip() or "?"
    except OSError:
        rev = "?"
    try:
        gcc = subprocess.run([os.environ.get("CC_NATIVE", "gcc"), "-dumpfullversion"],
                             capture_output=True, text=True).stdout.strip()
    except OSError:
        gcc = "?"
    return {"wasm_aot": ver("wasm-aot"), "git": rev, "wasmtime": ver("wasmtime"), "llvmlite": ver("llvmlite"),
            "gcc": gcc, "python": platform.python_version(), "cpus": os.cpu_count() or 0,
            "loadavg": [round(x, 2) for x in os.getloadavg()]}


def program_table(rows: list[dict], runs: int) -> tuple[list[str], dict]:
    hdr = (f"{'program':<9}{'native_s':>9}{'wt_s':>8}{'wa_s':>8}{'wa/nat':>8}{'wt/nat':>8}{'wa/wt':>7}"
           f"{'wt_comp':>9}{'wa_comp':>9}{'comp':>7}{'wa_load':>9}{'so_load':>9}  checksum")
    sub = (f"{'':<9}{'':>9}{'':>8}{'':>8}{'':>8}{'':>8}{'':>7}{'ms':>9}{'ms':>9}{'wa/wt':>7}{'ms':>9}{'ms':>9}")
    lines = [hdr, sub, "-" * len(hdr)]
    cols: dict[str, list[float]] = {k: [] for k in ("wa/nat", "wt/nat", "wa/wt", "comp", "wa_load", "so_load")}
    for r in rows:
        n, w, a = r["native"], r["wasmtime"], r["wasm_aot"]
        nt, wt, at = _med(n, "run_s"), _med(w, "run_s"), _med(a, "run_s")
        wc, ac = _med(w, "compile_s"), _med(a, "compile_s")
        lh, ls = _med(a, "load_hit_s"), _med(a, "load_so_s")
        vals = {"wa/nat": _ratio(at, nt), "wt/nat": _ratio(wt, nt), "wa/wt": _ratio(at, wt),
                "comp": _ratio(ac, wc), "wa_load": lh * 1e3 if lh else None, "so_load": ls * 1e3 if ls else None}
        if r["agree"]:  # geomeans over the programs where all three ran and agree
            for k, v in vals.items():
                if v is not None:
                    cols[k].append(v)
        check = (f"{r['checksum']:016x}" if r["agree"] else
                 "!!! wasm-aot FAILED" if "error" in a else "!!! CHECKSUM MISMATCH")
        lines.append(
            f"{r['name']:<9}{_f(nt, '.3f', 9)}{_f(wt, '.3f', 8)}{_f(at, '.3f', 8)}{_f(vals['wa/nat'], '.2f', 8)}"
            f"{_f(vals['wt/nat'], '.2f', 8)}{_f(vals['wa/wt'], '.2f', 7)}{_f(wc and wc * 1e3, '.1f', 9)}"
            f"{_f(ac and ac * 1e3, '.1f', 9)}{_f(vals['comp'], '.1f', 7)}{_f(vals['wa_load'], '.1f', 9)}"
            f"{_f(vals['so_load'], '.1f', 9)}  {check}")
    geo = {k: geomean(v) if v else None for k, v in cols.items()}
    lines.append("-" * len(hdr))
    n_ok = sum(1 for r in rows if r["agree"])
    lines.append(f"{'geomean':<9}{'':>9}{'':>8}{'':>8}{_f(geo['wa/nat'], '.2f', 8)}{_f(geo['wt/nat'], '.2f', 8)}"
                 f"{_f(geo['wa/wt'], '.2f', 7)}{'':>9}{'':>9}{_f(geo['comp'], '.1f', 7)}"
                 f"{_f(geo['wa_load'], '.1f', 9)}{_f(geo['so_load'], '.1f', 9)}"
                 + (f"  (over the {n_ok} of {len(rows)} programs that agree)" if n_ok < len(rows) else ""))
    lines += [
        f"times: median of {runs}; *_s = seconds per run() call (compile and instantiate excluded);",
        "  wa/nat = wasm-aot run / native, wt/nat = wasmtime / native, wa/wt = wasm-aot / wasmtime (lower is",
        "  better for wasm-aot); wt_comp = wasmtime.Module(); wa_comp = wa.compile(opt_level=2) into an empty",
        "  cache; wa_load = wa.compile cache hit + instantiate; so_load = wa.load(artifact) + instantiate.",
    ]
    return lines, geo


def agree(*lists: list[int]) -> tuple[bool, int | None]:
    every = [c for xs in lists for c in xs]
    if not every or any(not xs for xs in lists):
        return False, None
    return len(set(every)) == 1, every[0]


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        path, c, l, r = sys.argv[2], *map(int, sys.argv[3:6])
        res = worker(path, c, l, r)
        print(WORKER_TAG + json.dumps(res), flush=True)
        return 0

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, help="timed repetitions of each measurement (default 5, --quick 3)")
    ap.add_argument("--quick", action="store_true", help="fewer repetitions, smaller micro-benchmark batches")
    ap.add_argument("--no-large", action="store_true", help="skip the large-module compile comparison")
    ap.add_argument("--large-funcs", type=int, default=3000, help="functions in the large module (default 3000)")
    ap.add_argument("--large-runs", type=int, default=1,
                    help="wasm-aot compiles of the large module (default 1: it takes about a minute)")
    ap.add_argument("--no-micro", action="store_true", help="skip the call micro-benchmarks")
    ap.add_argument("--out", default=str(RESULTS), help="folder for latest.txt and latest.json")
    ap.add_argument("programs", nargs="*", help="programs to run (default: every one in the corpus)")
    a = ap.parse_args()
    runs = a.runs or (3 if a.quick else 5)
    names = a.programs or programs()
    unknown = [n for n in names if n not in programs()]
    if unknown:
        ap.error(f"no such program in {CORPUS}: {', '.join(unknown)}")

    report: list[str] = []

    def say(line: str = "") -> None:
        print(line, flush=True)
        report.append(line)

    vers = versions()
    say(f"wasm-aot benchmarks  {datetime.datetime.now().isoformat(timespec='seconds')}")
    say(f"wasm-aot {vers['wasm_aot']} ({vers['git']}), llvmlite {vers['llvmlite']}, wasmtime {vers['wasmtime']}, "
        f"gcc {vers['gcc']}, python {vers['python']}, {vers['cpus']} cpus, loadavg {vers['loadavg']}")
    say(f"corpus {CORPUS}, median of {runs}")
    say()
    failures: list[str] = []
    rows = []
    tmp = tempfile.mkdtemp(prefix="bench-native-")
    try:
        exes = build_native(names, tmp)
        for name in names:
            wasm_path = CORPUS / "wasm" / f"{name}.wasm"
            print(f"... {name}", file=sys.stderr, flush=True)
            nat = run_native(exes[name], runs)
            wt = run_wasmtime(wasm_path.read_bytes(), runs, runs)
            wa_ = run_worker(wasm_path, runs, runs, runs, timeout=600)
            if "error" in wa_:
                failures.append(f"{name}: wasm-aot {wa_['error']}")
            ok, checksum = agree(nat["checksums"], wt["checksums"], wa_.get("checksums", []))
            if not ok and "error" not in wa_:
                failures.append(f"{name}: CHECKSUM MISMATCH native={[f'{c:016x}' for c in nat['checksums']]} "
                                f"wasmtime={[f'{c:016x}' for c in wt['checksums']]} "
                                f"wasm-aot={[f'{c:016x}' for c in wa_.get('checksums', [])]}")
            rows.append({"name": name, "native": nat, "wasmtime": wt, "wasm_aot": wa_, "agree": ok,
                         "checksum": checksum})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    lines, geo = program_table(rows, runs)
    for line in lines:
        say(line)

    large: dict = {}
    tiny: dict = {}
    with tempfile.TemporaryDirectory(prefix="bench-large-") as d:
        tiny_path = Path(d) / "tiny.wasm"
        tiny_path.write_bytes(wat2wasm(TINY_WAT))
        print("... tiny module", file=sys.stderr, flush=True)
        tiny = {"bytes": tiny_path.stat().st_size,
                "wasmtime": run_wasmtime(tiny_path.read_bytes(), max(runs, 5), 0),
                "wasm_aot": run_worker(tiny_path, max(runs, 5), 1, 0, timeout=300)}
        if "error" in tiny["wasm_aot"]:
            failures.append(f"tiny module: wasm-aot {tiny['wasm_aot']['error']}")
        if not a.no_large:
            import gen_large
            print(f"... large module ({a.large_funcs} functions; wasm-aot takes a while)", file=sys.stderr, flush=True)
            large_path = Path(d) / "large.wasm"
            large_path.write_bytes(gen_large.generate(a.large_funcs))
            large = {"functions": a.large_funcs + 1, "bytes": large_path.stat().st_size,
                     "wasmtime": run_wasmtime(large_path.read_bytes(), runs, 1),
                     "wasm_aot": run_worker(large_path, a.large_runs, 1, 1, timeout=3600)}
            wl, al = large["wasmtime"], large["wasm_aot"]
            if "error" in al:
                failures.append(f"large module: wasm-aot {al['error']}")
            else:
                ok, _ = agree(wl["checksums"], al["checksums"])
                large["agree"] = ok
                if not ok:
                    failures.append(f"large module: CHECKSUM MISMATCH wasmtime={wl['checksums']} "
                                    f"wasm-aot={al['checksums']}")

    say()
    say("compile time (cold cache, median)")
    tw, ta = tiny["wasmtime"], tiny["wasm_aot"]
    twc, tac = _med(tw, "compile_s"), _med(ta, "compile_s")
    say(f"  tiny module ({tiny['bytes']} bytes, one add function): wasm-aot -O2 {_f(tac and tac * 1e3, '.1f', 0)} ms, "
        f"wasmtime {_f(twc * 1e3, '.2f', 0)} ms  (x{_f(_ratio(tac, twc), '.0f', 0)}); "
        f"first compile in a fresh process (imports llvmlite) {_f(ta.get('first_compile_s', 0) * 1e3, '.0f', 0)} ms"
        + (f"; load+instantiate {_med(ta, 'load_so_s') * 1e3:.2f} ms" if ta.get("load_so_s") else ""))
    if large:
        lw, la = large["wasmtime"], large["wasm_aot"]
        lwc, lac = _med(lw, "compile_s"), _med(la, "compile_s")
        say(f"  large module ({large['bytes'] / 1024:.0f} KiB, {large['functions']} functions, bench/gen_large.py): "
            f"wasm-aot -O2 {_f(lac, '.2f', 0)} s (x{len(la.get('compile_s', []))}), "
            f"wasmtime {_f(lwc, '.3f', 0)} s  (x{_f(_ratio(lac, lwc), '.0f', 0)}); "
            f"run() checksums {'agree' if large.get('agree') else 'DO NOT AGREE' if 'agree' in large else '-'}"
            + (f"; artifact {la['artifact_bytes'] / 1024:.0f} KiB, load+instantiate "
               f"{_med(la, 'load_so_s') * 1e3:.1f} ms" if la.get("artifact_bytes") else ""))

    micro_res = None
    if not a.no_micro:
        import micro
        print("... micro-benchmarks", file=sys.stderr, flush=True)
        micro_res = micro.measure(quick=a.quick)
        say()
        for line in micro.format_table(micro_res):
            say(line)
        for k in ("wasm_aot", "wasmtime"):
            if "error" in micro_res[k]:
                failures.append(f"micro-benchmark: {k} {micro_res[k]['error']}")

    say()
    if failures:
        say("!" * 100)
        say(f"!!! {len(failures)} FAILURE(S):")
        for f in failures:
            say(f"!!!   {f}")
        say("!" * 100)
    else:
        say("all checksums agree (native, wasmtime, wasm-aot)")

    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "latest.txt"), "w") as f:
        f.write("\n".join(report) + "\n")
    with open(os.path.join(a.out, "latest.json"), "w") as f:
        json.dump({"date": datetime.datetime.now().isoformat(timespec="seconds"), "versions": vers,
                   "runs": runs, "programs": rows, "geomeans": geo, "tiny": tiny, "large": large,
                   "micro": micro_res, "failures": failures}, f, indent=1, default=str)
        f.write("\n")
    print(f"(written to {os.path.join(a.out, 'latest.txt')} and latest.json)", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
