"""wa.compile: wasm bytes -> artifact (through the cache) -> wa.Module.

The compiler (codegen, hence llvmlite) is imported only when a module really has to be built.
"""
from __future__ import annotations

import atexit
import hashlib
import json
import os
import shutil
import tempfile
from typing import Any

from . import abi
from .cache import cache_dir
from .errors import ArtifactError, CompileError
from .loader.module import Module, load

__version__ = "0.1.0"
OPT_LEVELS = (0, 1, 2, 3)

_tmpdir: str | None = None


def _scratch_dir() -> str:
    """Artifacts compiled with cache=False live here until the process ends."""
    global _tmpdir
    if _tmpdir is None:
        _tmpdir = tempfile.mkdtemp(prefix="wasm-aot-")
        atexit.register(shutil.rmtree, _tmpdir, True)
    return _tmpdir


def _options(opt_level: int, cpu: str, bounds_checks: bool) -> dict[str, Any]:
    if opt_level not in OPT_LEVELS:
        raise ValueError(f"opt_level must be one of {OPT_LEVELS}, not {opt_level!r}")
    return {"opt_level": opt_level, "cpu": cpu, "bounds_checks": bool(bounds_checks)}


_source_digest: str | None = None


def source_digest() -> str:
    """A digest of the compiler's own source: a changed compiler never reuses old artifacts."""
    global _source_digest
    if _source_digest is None:
        root = os.path.dirname(os.path.abspath(__file__))
        h = hashlib.sha256()
        for sub in ("", "codegen"):
            d = os.path.join(root, sub)
            for f in sorted(os.listdir(d)):
                if f.endswith(".py"):
                    with open(os.path.join(d, f), "rb") as fh:
                        h.update(f.encode() + b"\0" + fh.read())
        _source_digest = h.hexdigest()
    return _source_digest


def cache_key(wasm: bytes, options: dict[str, Any], toolchain: dict[str, Any]) -> str:
    h = hashlib.sha256(wasm)
    h.update(json.dumps({"options": options, "toolchain": toolchain, "compiler": __version__,
                         "source": source_digest(), "abi": abi.ABI_VERSION}, sort_keys=True).encode())
    return h.hexdigest()


def compile_to_file(wasm: bytes, out_path: str, *, opt_level: int = 2, cpu: str = "native",
                    bounds_checks: bool = False, emit_llvm: str | None = None,
                    timings: dict | None = None) -> dict:
    """Decode, validate and compile `wasm` into an artifact at out_path; returns its metadata."""
    import time

    from . import metadata
    from .decode import decode
    from .validate import validate

    if not isinstance(wasm, (bytes, bytearray, memoryview)):
        raise TypeError(f"wasm must be bytes, not {type(wasm).__name__}")
    wasm = bytes(wasm)
    options = _options(opt_level, cpu, bounds_checks)
    t0 = time.perf_counter()
    mod = decode(wasm)
    t1 = time.perf_counter()
    validate(mod)
    t2 = time.perf_counter()
    if timings is not None:
        timings["decode"], timings["validate"] = t1 - t0, t2 - t1
    from .codegen import build_artifact, toolchain
    tc = toolchain(cpu)
    meta = metadata.build(mod, {"abi": abi.ABI_VERSION, "compiler": __version__, "options": options,
                                "wasm_sha256": hashlib.sha256(wasm).hexdigest(), **tc})
    build_artifact(mod, metadata.dumps(meta), out_path, opt_level=opt_level, cpu=cpu,
                   bounds_checks=bounds_checks, emit_llvm=emit_llvm, timings=timings)
    return meta


def compile(wasm: bytes, opt_level: int = 2, cache: bool | str | os.PathLike = True, *, cpu: str = "native",
            bounds_checks: bool = False, key: bytes | str | None = None) -> Module:
    """Compile wasm bytes to a wa.Module; cache=True (default dir), False, or a directory."""
    if not isinstance(wasm, (bytes, bytearray, memoryview)):
        raise TypeError(f"wasm must be bytes, not {type(wasm).__name__}")
    wasm = bytes(wasm)
    if wasm[:4] != b"\0asm":
        raise CompileError(0, "magic header not detected" if len(wasm) >= 4 else "unexpected end")
    options = _options(opt_level, cpu, bounds_checks)
    if cache is False or cache is None:
        fd, path = tempfile.mkstemp(suffix=".so", dir=_scratch_dir())
        os.close(fd)
        compile_to_file(wasm, path, **options)
        return load(path)
    from .codegen import toolchain
    d = cache_dir(None if cache is True else os.fspath(cache))
    path = os.path.join(d, cache_key(wasm, options, toolchain(cpu)) + ".so")
    if os.path.exists(path):
        try:
            return load(path)
        except ArtifactError:
            os.unlink(path)  # a corrupted entry: rebuild it rather than trust it
    compile_to_file(wasm, path, **options)
    return load(path)
