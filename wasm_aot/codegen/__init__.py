"""wasm -> LLVM IR -> native shared object. Imported only when compiling (it needs llvmlite).

A large module is split into parts, contiguous runs of its defined functions balanced by size, each
lowered to its own LLVM module (module.py says how parts refer to each other). The parts are built,
optimised and emitted by forked worker processes, so the Python IR building runs in parallel too, and
the objects are linked into one .so. How many parts depends only on the module (never on the machine),
so an artifact's bytes do not depend on how many workers built it.
"""
from __future__ import annotations

import gc
import os
import pickle
import signal
import time
import traceback
from contextlib import contextmanager
from typing import Callable, Iterator

import llvmlite
import llvmlite.binding as llvm

from ..ir import Module
from .emit import add_function_attributes, cpu_spec, link_shared, optimise, other_threads_running, target_machine
from .module import ModuleCodegen

# A part is worth its own LLVM module from about this many wasm instructions (~0.7 s of -O2 work here;
# a fork costs a few ms): smaller modules, the bench programs among them, stay one part.
PART_INSTRS = 3000
MAX_PARTS = 16
# overrides, mostly for tests and measurements: the number of parts (1: a single LLVM module, as for a
# small module) and of worker processes (1: every part in this process, one after the other)
PARTS_ENV = "WASM_AOT_COMPILE_PARTS"
JOBS_ENV = "WASM_AOT_COMPILE_JOBS"


def toolchain(cpu: str) -> dict:
    """What the output depends on besides the wasm bytes and options: goes into the cache key
    and the artifact's metadata."""
    tm = target_machine(cpu, 0)
    name, features = cpu_spec(cpu)
    return {
        "llvmlite": llvmlite.__version__,
        "llvm": ".".join(map(str, llvm.llvm_version_info)),
        "triple": tm.triple,
        "cpu_name": name,
        # what an artifact needs of the CPU it runs on: the features it may use (the "-" ones say
        # nothing a loader checks, and were half of a small artifact's metadata)
        "cpu_features": ",".join(f for f in features.split(",") if f.startswith("+")),
    }


@contextmanager
def _phase(timings: dict | None, name: str, progress: Callable[[str], None] | None = None) -> Iterator[None]:
    if progress:
        progress(name)
    t0 = time.perf_counter()
    yield
    if timings is not None:
        timings[name] = timings.get(name, 0.0) + time.perf_counter() - t0


def _env_int(name: str) -> int | None:
    v = os.environ.get(name)
    if not v:
        return None
    try:
        n = int(v)
    except ValueError:
        n = 0
    if n < 1:
        raise ValueError(f"${name} must be a positive integer, not {v!r}")
    return n


def plan_parts(mod: Module) -> list[list[int]]:
    """The defined functions (by function index) of each part: contiguous runs of about equal size."""
    nimp = mod.num_imported_funcs
    sizes = [len(f.body) + 8 for f in mod.funcs]  # + a little for each function's fixed cost
    total = sum(sizes)
    n = _env_int(PARTS_ENV) or min(MAX_PARTS, total // PART_INSTRS)
    n = max(1, min(n, len(sizes)))
    parts: list[list[int]] = [[] for _ in range(n)]
    k = acc = 0
    for i, s in enumerate(sizes):
        parts[k].append(nimp + i)
        acc += s
        # close this part at its share of the total, or when each remaining part needs one of the rest
        if k < n - 1 and (acc * n >= total * (k + 1) or len(sizes) - 1 - i == n - 1 - k):
            k += 1
    return parts


def _jobs(nparts: int) -> int:
    if nparts == 1:
        return 1
    jobs = _env_int(JOBS_ENV) or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                                  else os.cpu_count() or 1)
    # forking a process with other threads running is unsafe (one of them may hold a lock, LLVM's or
    # libc's, that the child would wait on forever): such a process builds its parts itself
    if other_threads_running():
        jobs = 1
    return max(1, min(jobs, nparts))


def _compile_part(mod: Module, meta: bytes, funcs: list[int] | None, main: bool, tm: llvm.TargetMachine,
                  opt_level: int, bounds_checks: bool, want_ir: bool, t: dict,
                  progress: Callable[[str], None] | None = None) -> tuple[bytes, str | None, dict]:
    """One LLVM module -> (object bytes, its optimised IR if want_ir, t with the phase timings added)."""
    with _phase(t, "codegen", progress):
        # llvmlite's IR objects are many and cyclic: the collector would rescan them again and again
        # (a quarter of codegen time); they become garbage as a whole once the text is made
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            mc = ModuleCodegen(mod, bounds_checks=bounds_checks, triple=tm.triple, datalayout=str(tm.target_data),
                               part=funcs, main=main, opt_level=opt_level)
            text = add_function_attributes(str(mc.generate(meta)))
        finally:
            if gc_was_enabled:
                gc.enable()
        del mc
        llmod = llvm.parse_assembly(text)
        llmod.verify()
    with _phase(t, "optimise", progress):
        optimise(llmod, tm, opt_level)
    ir = str(llmod) if want_ir else None
    with _phase(t, "emit", progress):
        obj = tm.emit_object(llmod)
    return obj, ir, t


def _picklable(e: BaseException) -> BaseException | None:
    try:
        pickle.loads(pickle.dumps(e))
        return e
    except Exception:
        return None


def _worker_failed(desc: str, exc: BaseException | None, tb: str) -> BaseException:
    """The exception a failed worker reraises in the parent: its own when it pickles, with the worker's
    traceback attached."""
    if exc is None:
        exc = RuntimeError(f"{desc} failed:\n{tb}")
    else:
        exc.add_note(f"raised in {desc}:\n{tb.rstrip()}")
    return exc


def _build_parts(mod: Module, meta: bytes, parts: list[list[int]], jobs: int, tm: llvm.TargetMachine,
                 opt_level: int, bounds_checks: bool, want_ir: bool) -> tuple[list[tuple], dict]:
    """Build every part; worker w (0 is this process) builds parts w, w + jobs, ... Returns the results
    in part order and the timings of the worker that finished last."""
    def build(w: int) -> tuple[list[tuple[int, bytes, str | None, dict]], float]:
        out = [(k, *_compile_part(mod, meta, parts[k], k == 0, tm, opt_level, bounds_checks, want_ir, {}))
               for k in range(w, len(parts), jobs)]
        return out, time.perf_counter()

    children: dict[int, tuple[int, int]] = {}  # worker -> (pid, read end of its pipe)
    try:
        for w in range(1, jobs):
            r, wfd = os.pipe()
            pid = os.fork()
            if pid == 0:  # the worker: never returns into the caller's code
                status = 1
                try:
                    os.close(r)
                    try:
                        payload = pickle.dumps(("ok", build(w)))
                    except BaseException as e:
                        payload = pickle.dumps(("error", _picklable(e), traceback.format_exc()))
                    with os.fdopen(wfd, "wb") as f:
                        f.write(payload)
                    status = 0
                finally:
                    os._exit(status)
            os.close(wfd)
            children[w] = (pid, r)
        results = {0: build(0)}
        for w, (pid, r) in sorted(children.items()):
            with os.fdopen(r, "rb") as f:
                data = f.read()
            _, status = os.waitpid(pid, 0)
            del children[w]
            desc = f"compile worker {w} (parts {', '.join(map(str, range(w, len(parts), jobs)))})"
            if not data:
                how = (f"was killed by signal {signal.Signals(os.WTERMSIG(status)).name}" if os.WIFSIGNALED(status)
                       else f"exited with status {os.waitstatus_to_exitcode(status)} without a result")
                raise RuntimeError(f"{desc} {how}")
            msg = pickle.loads(data)
            if msg[0] != "ok":
                raise _worker_failed(desc, msg[1], msg[2])
            results[w] = msg[1]
    finally:
        for pid, r in children.values():  # only after a failure: stop and reap the rest
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            os.waitpid(pid, 0)
            os.close(r)
    by_part = sorted((res for out, _ in results.values() for res in out), key=lambda x: x[0])
    last = max(results.values(), key=lambda x: x[1])[0]
    timings = {p: sum(t[p] for _, _, _, t in last) for p in ("codegen", "optimise", "emit")}
    timings["cpu"] = sum(sum(t.values()) for _, _, _, t in by_part)
    return [res[1:] for res in by_part], timings


def build_artifact(mod: Module, meta: bytes, out_path: str, *, opt_level: int = 2, cpu: str = "native",
                   bounds_checks: bool = False, emit_llvm: str | None = None,
                   timings: dict | None = None, progress: Callable[[str], None] | None = None) -> None:
    tm = target_machine(cpu, opt_level)
    parts = plan_parts(mod)
    if len(parts) == 1:
        obj, ir, _ = _compile_part(mod, meta, None, True, tm, opt_level, bounds_checks, bool(emit_llvm),
                                   timings if timings is not None else {}, progress)
        objs, irs = [obj], [ir]
    else:
        jobs = _jobs(len(parts))
        if progress:
            progress(f"codegen, optimise, emit ({len(parts)} parts, {jobs} workers)")
        t0 = time.perf_counter()
        res, pt = _build_parts(mod, meta, parts, jobs, tm, opt_level, bounds_checks, bool(emit_llvm))
        objs, irs = [r[0] for r in res], [r[1] for r in res]
        if timings is not None:
            # wall time of the parallel build, split by the phases of the worker that finished last
            for k, v in pt.items():
                timings[k] = timings.get(k, 0.0) + v
            timings["parallel"] = time.perf_counter() - t0
            timings["parts"], timings["jobs"] = len(parts), jobs
    if emit_llvm:
        with open(emit_llvm, "w") as f:
            if len(irs) == 1:
                f.write(irs[0])
            else:
                for k, (funcs, ir) in enumerate(zip(parts, irs)):
                    f.write(f"; ===== part {k} of {len(parts)}: functions {funcs[0]}..{funcs[-1]} =====\n{ir}\n")
    with _phase(timings, "link", progress):
        # the main part (trampolines and shims) last: a wasm function's trap call may be the last
        # instruction of the code segment, and the runtime's frame walk, which checks return addresses
        # against the segment, would then drop its frame
        link_shared(objs[1:] + objs[:1], out_path)
