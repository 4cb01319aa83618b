"""wasm -> LLVM IR -> native shared object. Imported only when compiling (it needs llvmlite)."""
from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Callable, Iterator

import llvmlite
import llvmlite.binding as llvm

from ..ir import Module
from .emit import add_frame_pointers, cpu_spec, link_shared, optimise, target_machine
from .module import ModuleCodegen


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
        "cpu_features": features,
    }


@contextmanager
def _phase(timings: dict | None, name: str, progress: Callable[[str], None] | None = None) -> Iterator[None]:
    if progress:
        progress(name)
    t0 = time.perf_counter()
    yield
    if timings is not None:
        timings[name] = timings.get(name, 0.0) + time.perf_counter() - t0


def build_artifact(mod: Module, meta: bytes, out_path: str, *, opt_level: int = 2, cpu: str = "native",
                   bounds_checks: bool = False, emit_llvm: str | None = None,
                   timings: dict | None = None, progress: Callable[[str], None] | None = None) -> None:
    tm = target_machine(cpu, opt_level)
    with _phase(timings, "codegen", progress):
        mc = ModuleCodegen(mod, bounds_checks=bounds_checks, triple=tm.triple, datalayout=str(tm.target_data))
        text = add_frame_pointers(str(mc.generate(meta)))
        llmod = llvm.parse_assembly(text)
        llmod.verify()
    with _phase(timings, "optimise", progress):
        optimise(llmod, tm, opt_level)
    if emit_llvm:
        with open(emit_llvm, "w") as f:
            f.write(str(llmod))
    with _phase(timings, "emit", progress):
        obj = tm.emit_object(llmod)
    with _phase(timings, "link", progress):
        link_shared(obj, out_path)
