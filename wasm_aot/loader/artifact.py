"""Verifying and mapping an artifact (.so). Everything is checked before anything is mapped."""
from __future__ import annotations

import io
import os
import platform
from dataclasses import dataclass
from typing import Any

from .. import abi, metadata
from ..errors import ArtifactError
from .runtime import ffi, lib


def machine_triple_arch() -> str:
    m = platform.machine()
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(m.lower(), m)


def read_metadata(data: bytes, where: str) -> dict:
    """The metadata section of an artifact's bytes, checked against this compiler and machine."""
    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile

    if data[:4] != b"\x7fELF":
        raise ArtifactError(f"{where}: not an ELF file, so not a wasm-aot artifact")
    try:
        elf = ELFFile(io.BytesIO(data))
        sec = elf.get_section_by_name(metadata.SECTION)
        if sec is None:
            raise ArtifactError(f"{where}: an ELF file without a {metadata.SECTION} section: not a wasm-aot artifact")
        raw = sec.data()
    except ArtifactError:
        raise
    except (ELFError, Exception) as e:  # noqa: BLE001 - pyelftools raises many kinds on bad input
        raise ArtifactError(f"{where}: malformed or truncated ELF file ({e})") from None
    try:
        meta = metadata.loads(raw)
    except ValueError:
        raise ArtifactError(f"{where}: unreadable metadata section") from None
    if not isinstance(meta, dict) or meta.get("format") != metadata.FORMAT_VERSION:
        raise ArtifactError(f"{where}: artifact format {meta.get('format') if isinstance(meta, dict) else '?'}, "
                            f"this loader reads format {metadata.FORMAT_VERSION}")
    if meta.get("abi") != abi.ABI_VERSION:
        raise ArtifactError(f"{where}: runtime ABI {meta.get('abi')}, this runtime is ABI {abi.ABI_VERSION}")
    arch = str(meta.get("triple", "")).split("-")[0]
    if arch != machine_triple_arch():
        raise ArtifactError(f"{where}: built for {arch or 'an unknown architecture'}, "
                            f"this machine is {machine_triple_arch()}")
    return meta


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


_mapped: dict[str, Mapped] = {}


def map_artifact(path: str, meta: dict) -> Mapped:
    """dlopen a verified artifact. Each file is mapped once per process."""
    real = os.path.realpath(path)
    m = _mapped.get(real)
    if m is not None and m.meta.get("digest") == meta.get("digest"):
        return m
    handle = lib.wa_dlopen(real.encode())
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
    m = Mapped(real, meta, desc, funcs, tramps, shims, datas)
    _mapped[real] = m
    from .frames import register_functions
    register_functions(m)
    return m
