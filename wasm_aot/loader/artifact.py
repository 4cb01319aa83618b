"""Verifying and mapping an artifact (.so).

The file is read once into immutable bytes; those bytes are checked (integrity
trailer, signature, metadata, machine) and only those same bytes are mapped (runtime_c/image.c
copies their segments into fresh memory; no dlopen, no file), so nothing can swap the file between
the check and the mapping.
"""
from __future__ import annotations

import json
import weakref
import os
import platform
import struct
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


_MACHINE = os.uname().machine if hasattr(os, "uname") else platform.machine()


def machine_triple_arch() -> str:
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(_MACHINE.lower(), _MACHINE)


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
    return TRUNCATED if data.find(metadata.SECTION.encode()) >= 0 else NOT_OURS


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
    digest = t.digest.hex()
    meta = _checked.get(digest)
    if meta is None:
        meta = _check(data, t, where)
        _checked[digest] = meta
    return Verified(data, meta, digest, signed)


# Checked metadata by file digest: the digest covers the metadata and every other byte, so equal
# digests mean equal files, and a file that passed once passes again (the machine does not change).
_checked: dict[str, dict[str, Any]] = {}


def _check(data: bytes, t: trailer.Trailer, where: str) -> dict[str, Any]:
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
    return meta


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


def verify_file(path: str, key: bytes | None = None) -> Verified:
    """Read the file at `path` once, into immutable bytes, and check them (nothing is mapped): what
    is checked is exactly what map_artifact maps, so swapping the file afterwards changes nothing."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ArtifactError(f"{path}: cannot read: {e.strerror}") from None
    return verify(data, path, key)


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


# Mapped images by content digest: the same verified bytes are mapped once per process, for as long
# as something (a Module, hence its Instances and their Functions) uses them.
_mapped: "weakref.WeakValueDictionary[str, Mapped]" = weakref.WeakValueDictionary()


def _unmap(base: Any, span: int, names: Any) -> None:
    from .frames import unregister_functions
    unregister_functions(names)
    lib.wa_unmap_image(base, span)
def map_artifact(path: str, v: Verified) -> Mapped:
    """Map verified bytes. Each content is mapped once per process."""
    m = _mapped.get(v.digest)
    if m is not None:
        return m
    meta = v.meta
    err = ffi.new("char[]", 256)
    base, span = ffi.new("void **"), ffi.new("size_t *")
    sym = lib.wa_map_image(v.data, len(v.data), b"wa_module", base, span, err, 256)  # registers code ranges
    if sym == ffi.NULL:
        raise ArtifactError(f"{path}: cannot be mapped: {ffi.string(err).decode(errors='replace')}")
    desc = ffi.cast("wa_module_desc *", sym)
    if desc.abi_version != abi.ABI_VERSION:
        raise ArtifactError(f"{path}: runtime ABI {desc.abi_version}, expected {abi.ABI_VERSION}")
    nfuncs = len(meta["func_types"]) - sum(1 for i in meta["imports"] if i["type"]["kind"] == "func")
    nimported = len(meta["func_types"]) - nfuncs
    # one C call per table rather than one cffi access per entry (large modules have thousands)
    funcs = ffi.unpack(ffi.cast("uintptr_t *", desc.funcs), nfuncs) if nfuncs else []
    tramps = ffi.unpack(desc.tramps, len(meta["types"])) if meta["types"] else []
    shims = ffi.unpack(desc.shims, nimported) if nimported else []
    datas = ffi.unpack(desc.datas, len(meta["datas"])) if meta["datas"] else []
    m = Mapped(path, meta, desc, funcs, tramps, shims, datas)
    _mapped[v.digest] = m
    from .frames import register_functions
    weakref.finalize(m, _unmap, base[0], span[0], register_functions(m))
    return m
