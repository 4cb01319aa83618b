"""Verifying and mapping an artifact (.so).

The file is read once; those bytes are checked (integrity trailer, signature, metadata, machine)
and only those same bytes are mapped, through an anonymous sealed memfd, so nothing can swap the
file between the check and dlopen.
"""
from __future__ import annotations

import fcntl
import json
import os
import platform
import struct
import tempfile
from dataclasses import dataclass
from typing import Any

from .. import abi, metadata, trailer
from ..errors import ArtifactError
from ..version import __version__
from .cpu import missing_features
from .runtime import ffi, lib

# The exact messages (after "<path>: "), one per reason an artifact is refused.
NOT_ELF = "not an ELF file, so not a wasm-aot artifact"
NOT_OURS = "an ELF file that is not a wasm-aot artifact"
TRUNCATED = "truncated artifact (the file ends before its integrity trailer)"
BAD_TRAILER = "corrupted artifact: its integrity trailer is damaged"
CORRUPT = "corrupted artifact: its contents do not match their sha256 digest"
UNSIGNED = "the artifact is not signed, but a signing key is in force"
BAD_SIGNATURE = "the artifact's signature does not match the signing key"
BAD_METADATA = "unreadable artifact metadata"
FORMAT = "artifact format {got}, this loader reads format {want}"
COMPILER = "built by wasm-aot {got}, this is wasm-aot {want}"
ABI = "built for runtime ABI {got}, this runtime is ABI {want}"
ARCH = "built for {got}, this machine is {want}"
CPU = "built for CPU features this machine lacks: {missing}"

_ELF_MACHINES = {3: "i386", 40: "arm", 62: "x86_64", 183: "aarch64", 243: "riscv64"}


def machine_triple_arch() -> str:
    m = platform.machine()
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(m.lower(), m)


def _elf_end(data: bytes) -> int:
    """Where the ELF image ends by its own header: past the last section or program header table."""
    try:
        if data[4] == 2:  # ELFCLASS64
            fmt = "<" if data[5] == 1 else ">"
            phoff, shoff = struct.unpack_from(fmt + "QQ", data, 0x20)
            phentsize, phnum, shentsize, shnum = struct.unpack_from(fmt + "HHHH", data, 0x36)
        else:
            fmt = "<" if data[5] == 1 else ">"
            phoff, shoff = struct.unpack_from(fmt + "II", data, 0x1C)
            phentsize, phnum, shentsize, shnum = struct.unpack_from(fmt + "HHHH", data, 0x2A)
    except (struct.error, IndexError):
        return len(data) + 1
    return max(shoff + shentsize * shnum, phoff + phentsize * phnum)


def _diagnose(data: bytes) -> str:
    """Why a file without an intact trailer is refused."""
    if data[:4] != b"\x7fELF":
        return NOT_ELF
    end = _elf_end(data)
    if len(data) < end:
        return TRUNCATED
    tail = data[end:]
    if tail:
        if len(tail) < trailer.TRAILER_SIZE and (tail.startswith(trailer.MAGIC) or trailer.MAGIC.startswith(tail)):
            return TRUNCATED
        return BAD_TRAILER
    return TRUNCATED if metadata.SECTION.encode() in data else NOT_OURS


@dataclass(frozen=True)
class Verified:
    """An artifact's bytes that passed every check, with their metadata."""

    data: bytes
    meta: dict[str, Any]
    digest: str  # sha256 of the whole file (hex), the identity of its content
    signed: bool


def verify(data: bytes, where: str, key: bytes | None = None) -> Verified:
    """Check an artifact's bytes; raise ArtifactError "<where>: <reason>" if they are not loadable here.

    `key` is the signing key in force (already resolved); with one, unsigned or otherwise signed
    artifacts are refused.
    """
    raw = trailer.find(data)
    if raw is None:
        raise ArtifactError(f"{where}: {_diagnose(data)}")
    t = trailer.check_digest(data, raw)
    if t is None:
        raise ArtifactError(f"{where}: {CORRUPT}")
    signed = bool(t.flags & trailer.FLAG_SIGNED)
    if key is not None:
        if not signed:
            raise ArtifactError(f"{where}: {UNSIGNED}")
        if not trailer.signature_ok(t, raw, key):
            raise ArtifactError(f"{where}: {BAD_SIGNATURE}")
    if data[:4] != b"\x7fELF":
        raise ArtifactError(f"{where}: {NOT_ELF}")
    if not (0 < t.meta_off and t.meta_off + t.meta_len <= t.body_len):
        raise ArtifactError(f"{where}: {BAD_METADATA}")
    try:
        meta = json.loads(data[t.meta_off:t.meta_off + t.meta_len])
    except (ValueError, UnicodeDecodeError):
        raise ArtifactError(f"{where}: {BAD_METADATA}") from None
    if not isinstance(meta, dict):
        raise ArtifactError(f"{where}: {BAD_METADATA}")
    _check_meta(meta, data, where)
    return Verified(data, meta, t.digest.hex(), signed)


def _check_meta(meta: dict, data: bytes, where: str) -> None:
    if meta.get("format") != metadata.FORMAT_VERSION:
        raise ArtifactError(f"{where}: " + FORMAT.format(got=meta.get("format"), want=metadata.FORMAT_VERSION))
    if meta.get("compiler") != __version__:
        raise ArtifactError(f"{where}: " + COMPILER.format(got=meta.get("compiler"), want=__version__))
    if meta.get("abi") != abi.ABI_VERSION:
        raise ArtifactError(f"{where}: " + ABI.format(got=meta.get("abi"), want=abi.ABI_VERSION))
    host = machine_triple_arch()
    arch = str(meta.get("triple", "")).split("-")[0] or "an unknown architecture"
    elf_arch = _ELF_MACHINES.get(struct.unpack_from("<H" if data[5] == 1 else ">H", data, 0x12)[0], "?")
    if arch != host or elf_arch != host:
        raise ArtifactError(f"{where}: " + ARCH.format(got=arch if arch != host else elf_arch, want=host))
    missing = missing_features(str(meta.get("cpu_features", "")), host)
    if missing:
        raise ArtifactError(f"{where}: " + CPU.format(missing=", ".join("+" + m for m in missing)))


def read_metadata(data: bytes, where: str, key: bytes | None = None) -> dict:
    """The checked metadata of an artifact's bytes (nothing is mapped)."""
    return verify(data, where, key).meta


def read_file(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise ArtifactError(f"{path}: cannot read: {e.strerror}") from None


@dataclass
class Mapped:
    """A loaded artifact: its metadata and the addresses of its code."""

    path: str
    meta: dict[str, Any]
    desc: Any  # wa_module_desc *
    funcs: list[int]  # code address per defined function
    tramps: list[Any]  # per type index
    shims: list[Any]  # per imported function
    datas: list[Any]  # per data segment
    fd: int = -1  # the memfd holding the mapped bytes (kept open: see _open_image)


# Mapped images by content digest: the same verified bytes need mapping only once per process.
_mapped: dict[str, Mapped] = {}
_SEALS = getattr(fcntl, "F_SEAL_SEAL", 1) | getattr(fcntl, "F_SEAL_SHRINK", 2) | \
    getattr(fcntl, "F_SEAL_GROW", 4) | getattr(fcntl, "F_SEAL_WRITE", 8)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _open_image(data: bytes) -> tuple[Any, int]:
    """dlopen exactly `data`: returns (handle, fd).

    The bytes go to a sealed memfd and are opened as /proc/self/fd/N. The fd stays open for as long
    as the library is mapped (for good: libraries are never unloaded), because glibc finds an
    already-loaded library by its path name first, and a reused fd number would alias two images.
    Without memfd, a private temporary file (mode 0600, in a 0700 directory) is used instead.
    """
    fd = -1
    if hasattr(os, "memfd_create"):
        try:
            fd = os.memfd_create("wasm-aot-artifact", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        except OSError:
            fd = -1
    if fd >= 0:
        _write_all(fd, data)
        try:
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, _SEALS)
        except (OSError, AttributeError):
            pass
        handle = lib.wa_dlopen(f"/proc/self/fd/{fd}".encode())
        if handle != ffi.NULL:
            return handle, fd
        os.close(fd)
    with tempfile.TemporaryDirectory(prefix="wasm-aot-map-") as d:
        p = os.path.join(d, "a.so")
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            _write_all(fd, data)
        finally:
            os.close(fd)
        return lib.wa_dlopen(p.encode()), -1


def map_artifact(path: str, v: Verified) -> Mapped:
    """Map verified bytes. Each content is mapped once per process."""
    m = _mapped.get(v.digest)
    if m is not None:
        return m
    meta = v.meta
    handle, fd = _open_image(v.data)
    if handle == ffi.NULL:
        raise ArtifactError(f"{path}: cannot be loaded: {ffi.string(lib.wa_dlerror()).decode(errors='replace')}")
    sym = lib.wa_dlsym(handle, b"wa_module")
    if sym == ffi.NULL:
        raise ArtifactError(f"{path}: no wa_module symbol: not a wasm-aot artifact")
    desc = ffi.cast("wa_module_desc *", sym)
    if desc.abi_version != abi.ABI_VERSION:
        raise ArtifactError(f"{path}: runtime ABI {desc.abi_version}, expected {abi.ABI_VERSION}")
    nfuncs = len(meta["func_types"]) - sum(1 for i in meta["imports"] if i["type"]["kind"] == "func")
    nimported = len(meta["func_types"]) - nfuncs
    funcs = [int(ffi.cast("uintptr_t", desc.funcs[i])) for i in range(nfuncs)]
    tramps = [desc.tramps[i] for i in range(len(meta["types"]))]
    shims = [desc.shims[i] for i in range(nimported)]
    datas = [desc.datas[i] for i in range(len(meta["datas"]))]
    if funcs:
        lib.wa_register_code(ffi.cast("void *", funcs[0]))
    elif tramps:
        lib.wa_register_code(tramps[0])
    m = Mapped(path, meta, desc, funcs, tramps, shims, datas, fd)
    _mapped[v.digest] = m
    from .frames import register_functions
    register_functions(m)
    return m
