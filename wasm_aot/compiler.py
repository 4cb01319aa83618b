"""wa.compile: wasm bytes -> artifact (through the cache) -> wa.Module.

The compiler (codegen, hence llvmlite) is imported only when a module really has to be built.
"""
from __future__ import annotations

import atexit
import errno
import hashlib
import json
import os
import shutil
import tempfile
from typing import Any, Callable

from . import abi, trailer
from .cache import TEMP_PREFIX, cache_dir
from .errors import ArtifactError, CompileError
from .loader.artifact import verify_file
from .loader.module import Module, load
from .version import __version__
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


def cache_key(wasm: bytes, options: dict[str, Any], toolchain: dict[str, Any], key: bytes | None = None) -> str:
    """sha256 of the wasm and of everything else the artifact depends on, including which key (by
    its hash) signs it."""
    h = hashlib.sha256(wasm)
    h.update(json.dumps({"options": options, "toolchain": toolchain, "compiler": __version__,
                         "source": source_digest(), "abi": abi.ABI_VERSION,
                         "signed_by": trailer.key_id(key)}, sort_keys=True).encode())
    return h.hexdigest()


def _metadata_extent(path: str) -> tuple[int, int]:
    """File offset and size of the metadata section of a freshly linked artifact (our own linker's
    ELF64 output: read straight from the section headers, pyelftools costs ~20 ms to import)."""
    import struct

    from . import metadata
    with open(path, "rb") as f:
        data = f.read()
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)

    def header(i: int) -> tuple:  # (name, type, flags, addr, offset, size)
        return struct.unpack_from("<IIQQQQ", data, shoff + i * shentsize)

    names_off = header(shstrndx)[4]
    want = metadata.SECTION.encode() + b"\0"
    for i in range(shnum):
        name, _, _, _, off, size = header(i)
        if data[names_off + name:names_off + name + len(want)] == want:
            return off, size
    raise RuntimeError(f"the linker dropped the {metadata.SECTION} section")


def seal_artifact(linked: str, out_path: str, record_len: int, key: bytes | None) -> None:
    """Append the integrity trailer (digest, and signature when `key`) to the linked image at
    `linked`, then move it to out_path atomically."""
    off, size = _metadata_extent(linked)
    with open(linked, "r+b") as f:
        body = f.read()
        f.write(trailer.make(body, off, size, record_len, key))
    os.replace(linked, out_path)


def compile_to_file(wasm: bytes, out_path: str, *, opt_level: int = 2, cpu: str = "native",
                    bounds_checks: bool = False, emit_llvm: str | None = None,
                    timings: dict | None = None, key: bytes | str | None = None,
                    progress: Callable[[str], None] | None = None) -> dict:
    """Decode, validate and compile `wasm` into an artifact at out_path (written atomically, signed
    with `key` or $WASM_AOT_SIGNING_KEY if set); returns its metadata. `progress(phase)` is called
    as each phase starts."""
    import time

    from . import metadata
    from .decode import decode
    from .validate import validate

    if not isinstance(wasm, (bytes, bytearray, memoryview)):
        raise TypeError(f"wasm must be bytes, not {type(wasm).__name__}")
    wasm = bytes(wasm)
    key = trailer.resolve_key(key)
    options = _options(opt_level, cpu, bounds_checks)
    t0 = time.perf_counter()
    if progress:
        progress("decode")
    mod = decode(wasm)
    t1 = time.perf_counter()
    if progress:
        progress("validate")
    validate(mod)
    t2 = time.perf_counter()
    if timings is not None:
        timings["decode"], timings["validate"] = t1 - t0, t2 - t1
    from .codegen import build_artifact, toolchain  # imports llvmlite
    tc = toolchain(cpu)
    t3 = time.perf_counter()
    if timings is not None:
        timings["setup"] = t3 - t2
    meta = metadata.build(mod, {"abi": abi.ABI_VERSION, "compiler": __version__, "options": options,
                                "wasm_sha256": hashlib.sha256(wasm).hexdigest(),
                                "compiler_source": source_digest(), **tc})
    d = os.path.dirname(os.path.abspath(out_path))
    if os.path.isdir(out_path):  # (said of the path asked for, not of the temporary file beside it)
        raise IsADirectoryError(errno.EISDIR, "is a directory", out_path)
    if not os.path.isdir(d):
        raise FileNotFoundError(errno.ENOENT, "no such directory", d)
    fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=".so", dir=d)  # same dir: os.replace stays atomic
    os.close(fd)
    try:
        section, record_len = metadata.section(meta)
        build_artifact(mod, section, tmp, opt_level=opt_level, cpu=cpu, bounds_checks=bounds_checks,
                       emit_llvm=emit_llvm, timings=timings, progress=progress)
        if progress:
            progress("seal")
        t4 = time.perf_counter()
        seal_artifact(tmp, out_path, record_len, key)
        if timings is not None:
            timings["seal"] = time.perf_counter() - t4
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
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
    key = trailer.resolve_key(key)
    if cache is False or cache is None:
        fd, path = tempfile.mkstemp(suffix=".so", dir=_scratch_dir())
        os.close(fd)
        compile_to_file(wasm, path, key=key, **options)
        return load(path, key=key)
    from .toolchain_memo import toolchain
    d = cache_dir(None if cache is True else os.fspath(cache))
    path = os.path.join(d, cache_key(wasm, options, toolchain(cpu, d), key) + ".so")
    if os.path.exists(path):
        try:
            return load(path, key=key)
        except ArtifactError:
            try:  # a corrupted entry: remove it and rebuild rather than trust it
                os.unlink(path)
            except FileNotFoundError:
                pass
    # built under a temporary name and checked from there before it takes its place: another process
    # cleaning or replacing the entry meanwhile cannot make this compile fail
    fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=".so", dir=d)
    os.close(fd)
    try:
        compile_to_file(wasm, tmp, key=key, **options)
        verified = verify_file(tmp, key)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return Module(path, verified)
