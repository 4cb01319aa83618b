"""LLVM module -> optimised object -> shared object (the artifact)."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile

import llvmlite.binding as llvm

from ..metadata import SECTION

_initialized = False


def _init() -> None:
    global _initialized
    if not _initialized:
        llvm.initialize_native_target()
        llvm.initialize_native_asmprinter()
        _initialized = True


def cpu_spec(cpu: str) -> tuple[str, str]:
    """(LLVM CPU name, feature string) for cpu: 'native' (the host's CPU and features), 'generic'
    (the architecture's baseline) or an LLVM CPU name (its own features, which LLVM keeps to itself)."""
    _init()
    if cpu == "native":
        return llvm.get_host_cpu_name(), llvm.get_host_cpu_features().flatten()
    if cpu == "generic":
        return ("x86-64" if llvm.get_default_triple().startswith("x86_64") else "generic"), ""
    return cpu, ""


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
# halve the mapping work at load and the padding in the file.
_SCRIPT = "SECTIONS { %s : { KEEP(*(%s)) } } INSERT AFTER .data.rel.ro;\n"


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
            f.write(_SCRIPT % (SECTION, SECTION))
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
