"""LLVM module -> optimised object -> shared object (the artifact)."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile

import llvmlite.binding as llvm

from ..abi import IMAGE_DATA_AT
from ..metadata import SECTION

_initialized = False


def _init() -> None:
    global _initialized
    if not _initialized:
        llvm.initialize_native_target()
        llvm.initialize_native_asmprinter()
        llvm.initialize_native_asmparser()  # FuncCodegen.keep emits an asm comment
        _initialized = True


def cpu_spec(cpu: str) -> tuple[str, str]:
    """(LLVM CPU name, feature string) for cpu: 'native' (the host's CPU and features), 'generic'
    (the architecture's baseline) or an LLVM CPU name (its own features, which LLVM keeps to itself)."""
    _init()
    if cpu == "native":
        return llvm.get_host_cpu_name(), llvm.get_host_cpu_features().flatten()
    if cpu == "generic":
        return ("x86-64" if llvm.get_default_triple().startswith("x86_64") else "generic"), ""
    _check_cpu_name(cpu)
    return cpu, ""


_cpu_ok: set[str] = set()


def other_threads_running() -> bool:
    """Whether other threads run Python in this process: forking then could copy a lock one of them
    holds (llvmlite's, taken around every LLVM call) into a child that waits on it forever. Every
    thread that ever ran Python counts, threading's or not (_thread, C code calling back); native
    threads that never do (a BLAS pool, wasmtime's) cannot hold llvmlite's lock and do not count."""
    return len(sys._current_frames()) > 1


def _try_cpu(cpu: str) -> None:
    tm = llvm.Target.from_default_triple().create_target_machine(cpu=cpu, reloc="pic")
    tm.emit_object(llvm.parse_assembly("define i32 @f(i32 %x) {\n  ret i32 %x\n}\n"))


_TRY_CPU = ("import sys\nfrom wasm_aot.codegen.emit import _init, _try_cpu\n_init()\n_try_cpu(sys.argv[1])\n")


def _check_cpu_name(cpu: str) -> None:
    """ValueError unless LLVM can generate code for CPU `cpu` on this target. LLVM reports an unknown
    name (or one of another mode, i686 for x86-64) only when it first emits code, by aborting the
    process: so a forked child tries, once per name and process."""
    if cpu in _cpu_ok:
        return
    if not cpu or not all(c.isalnum() or c in "-_." for c in cpu):
        raise ValueError(f"not a CPU name: {cpu!r}")
    if other_threads_running():  # forking now could copy a lock another thread holds: a new process
        r = subprocess.run([sys.executable, "-c", _TRY_CPU, cpu], capture_output=True, text=True)
        status, said = r.returncode, (r.stdout + r.stderr).strip()
    else:
        rfd, wfd = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: LLVM's complaints go to the pipe, its verdict is the exit status
            status = 1
            try:
                os.dup2(wfd, 2)
                _try_cpu(cpu)
                status = 0
            finally:
                os._exit(status)
        os.close(wfd)
        with os.fdopen(rfd, "rb") as f:
            said = f.read().decode(errors="replace").strip()
        _, status = os.waitpid(pid, 0)
    if status != 0 or "not a recognized processor" in said:
        why = said.splitlines()[-1] if said else "it cannot generate code for it"
        raise ValueError(f"unknown CPU {cpu!r} for {llvm.get_default_triple()} (LLVM: {why}); "
                         "use native, generic or an LLVM CPU name of this architecture")
    _cpu_ok.add(cpu)


def target_machine(cpu: str, opt_level: int) -> llvm.TargetMachine:
    _init()
    target = llvm.Target.from_default_triple()
    name, features = cpu_spec(cpu)
    return target.create_target_machine(cpu=name, features=features, opt=min(opt_level, 3), reloc="pic",
                                        codemodel="default")


# String attributes of every function, added to the text (llvmlite cannot spell them):
# - frame pointers let a trap walk the wasm frames (Trap.frames);
# - inline stack probes make a frame larger than a page touch each page in order, so a huge frame
#   (thousands of locals) meets the guard page instead of jumping over it onto other memory.
_DEFINE = re.compile(r"^(define [^\n]*?)(\s*\{)?$", re.M)
_ATTRIBUTES = ' "frame-pointer"="all" "probe-stack"="inline-asm"'


def add_function_attributes(text: str) -> str:
    return _DEFINE.sub(lambda m: m.group(1) + _ATTRIBUTES + (m.group(2) or ""), text)


def optimise(mod: llvm.ModuleRef, tm: llvm.TargetMachine, opt_level: int) -> None:
    if opt_level <= 0:
        return
    pto = llvm.create_pipeline_tuning_options(speed_level=min(opt_level, 3))
    # -O2 unrolls no loops, as gcc -O2 does: measured on bench/ (median of 5), the same geomean
    # (0.99x native either way) for ~37% less LLVM time on large modules and half the code size
    # (so faster loads); -O3 unrolls
    pto.loop_unrolling = opt_level >= 3
    pb = llvm.create_pass_builder(tm, pto)
    pb.getModulePassManager().run(mod, pb)


# Layout of an artifact (ld's default script, with the read-only sections merged into the code's
# segment, -z noseparate-code): one R+X segment of headers, symbols, code and LLVM's constant pools,
# then one segment made read-only after relocation (RELRO) holding what wasm bytes decide (data
# segments, the metadata) so that none of it is ever executable. Two protection runs instead of four
# halve the mapping work at load and the padding in the file. When the code is smaller than
# abi.IMAGE_DATA_AT, the second segment starts there (an address gap only: the file has no padding),
# which is what lets the code arena (runtime_c/code_arena.c) load the image with no system call.
_SCRIPT = ("SECTIONS { . = MAX(., %#x); } INSERT BEFORE .data.rel.ro;\n"
           "SECTIONS { %s : { KEEP(*(%s)) } } INSERT AFTER .data.rel.ro;\n" % (IMAGE_DATA_AT, SECTION, SECTION))


def _linker(script: str) -> list[str]:
    """The link command: ld itself when there is one (the cc driver costs ~25 ms a call), else cc."""
    flags = ["-z", "noexecstack", "-z", "now", "-z", "relro", "-z", "noseparate-code", "-T", script]
    ld = shutil.which("ld")
    if ld and not os.environ.get("CC"):
        return [ld, "-shared", "--build-id=none", "--hash-style=gnu"] + flags
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        raise RuntimeError("compiling needs a system linker (ld, or a C compiler such as cc) on PATH")
    # -nostdlib: no crt files (their DT_INIT would be refused by the loader) and no libc to link: libcalls
    # stay undefined and bind at load
    return [cc, "-shared", "-nostdlib", "-Wl,--build-id=none"] + ["-Wl," + ",".join(flags[i:i + 2]) for i in range(0, len(flags), 2)]


def link_shared(objs: bytes | list[bytes], out_path: str) -> None:
    """Link one object, or several (the parts of a module, in order), into a shared object at out_path
    (written atomically). Libcalls LLVM may emit (memcpy, floorf, ...) stay undefined and bind to the
    host process's libc/libm at load."""
    if isinstance(objs, (bytes, bytearray)):
        objs = [objs]
    d = os.path.dirname(os.path.abspath(out_path))
    with tempfile.TemporaryDirectory(prefix="wa-link-") as tmp:
        script = os.path.join(tmp, "layout.ld")
        with open(script, "w") as f:
            f.write(_SCRIPT)
        cmd = _linker(script)
        paths = []
        for i, obj in enumerate(objs):
            paths.append(os.path.join(tmp, f"m{i}.o"))
            with open(paths[-1], "wb") as f:
                f.write(obj)
        fd, tmp_so = tempfile.mkstemp(prefix=".wa-", suffix=".so", dir=d)
        os.close(fd)
        try:
            r = subprocess.run(cmd + ["-o", tmp_so] + paths, capture_output=True, text=True)
            if r.returncode != 0:
                raise RuntimeError(f"linking failed: {r.stderr.strip()}")
            os.replace(tmp_so, out_path)
        finally:
            if os.path.exists(tmp_so):
                os.unlink(tmp_so)
