"""Does this machine have the CPU features an artifact was compiled for?

The artifact records LLVM's names of the features it was built for (`+avx2,+bmi2,...`); only those
are checked: code built for fewer features runs anywhere of the same architecture. On x86 the host's
features come from CPUID (runtime_c/cpu.c: the words glibc read at process start, checked there
against its table of LLVM's names in ~2 us); a feature that table does not know, and every feature
on other architectures, is looked up in the kernel's /proc/cpuinfo flags (~100 us to read) under
the kernel's name. A name known to neither fails closed.
"""
from __future__ import annotations

import functools
import os

from .runtime import ffi, lib

NWORDS = 16  # of wa_cpu_words (runtime_c/cpu.c)

# LLVM feature -> /proc/cpuinfo flag, where the names differ. None: no flag to check (a mode or a
# pseudo-feature that every CPU of the architecture has, or one the kernel does not report). On x86
# only the names runtime_c/cpu.c does not know come here.
_X86 = {"crc32c": "sse4_2", "prefer-256-bit": None}
_ARM = {
    "neon": "asimd", "fp-armv8": "fp", "crc": "crc32", "lse": "atomics", "rdm": "asimdrdm",
    "dotprod": "asimddp", "fullfp16": "fphp", "sha2": "sha2", "aes": "aes", "sha3": "sha3", "sm4": "sm4",
    "sve": "sve", "sve2": "sve2", "rcpc": "lrcpc", "jsconv": "jscvt", "complxnum": "fcma", "bf16": "bf16",
    "i8mm": "i8mm", "fp16fml": "asimdfhm", "ssbs": "ssbs", "sb": "sb", "flagm": "flagm", "pauth": "paca",
    "v8a": None, "v8.1a": None, "v8.2a": None, "v8.3a": None, "v8.4a": None, "v8.5a": None, "v8.6a": None,
}

_MACHINE = os.uname().machine
_words: tuple[int, ...] | None = None
_host_flags: frozenset[str] | None = None


def cpu_words() -> tuple[int, ...]:
    """The host's CPUID words (see wa_cpu_words); empty where there is no CPUID."""
    global _words
    if _words is None:
        p = lib.wa_cpu_words()
        _words = tuple(ffi.unpack(p, NWORDS)) if p != ffi.NULL else ()
    return _words


def cpuid_has(name: str) -> bool | None:
    """Whether the host has LLVM feature `name` by CPUID; None when CPUID cannot tell (no CPUID, or a
    name runtime_c/cpu.c does not know)."""
    r = lib.wa_cpu_has(name.encode())
    return None if r < 0 else bool(r)


def host_flags() -> frozenset[str]:
    """The CPU flags the kernel reports (constant for the life of the process, so read once)."""
    global _host_flags
    if _host_flags is None:
        flags: set[str] = set()
        try:  # the first CPU's block is enough; raw reads (the kernel writes this file on each read)
            fd = os.open("/proc/cpuinfo", os.O_RDONLY)
            try:
                text = b"\n"
                while True:
                    chunk = os.read(fd, 16384)
                    text += chunk
                    line = _flags_line(text)
                    if line is not None or not chunk:
                        break
            finally:
                os.close(fd)
            if line is not None:
                flags.update(line.decode(errors="replace").split())
        except OSError:
            pass
        _host_flags = frozenset(flags)
    return _host_flags


def _flags_line(text: bytes) -> bytes | None:
    """The value of the first complete "flags" (x86) or "Features" (arm) line of cpuinfo text."""
    for key in (b"\nflags", b"\nFeatures"):
        at = text.find(key)
        if at >= 0:
            end = text.find(b"\n", at + 1)
            colon = text.find(b":", at)
            if end >= 0 and 0 <= colon < end:
                return text[colon + 1:end]
    return None


def _kernel_has(name: str, arch: str) -> bool:
    """By the kernel's flags; True when the kernel reports none at all (no /proc: nothing can be
    checked, nothing is refused) or has no flag for this feature."""
    flags = host_flags()
    if not flags:
        return True
    table = _ARM if arch in ("aarch64", "arm64") else _X86
    flag = table[name] if name in table else name.replace(".", "_").replace("-", "_")
    return flag is None or flag in flags


@functools.lru_cache(maxsize=64)  # a pure function of its arguments: the host's features never change
def _missing(features: str, arch: str) -> tuple[str, ...]:
    if arch in ("x86_64", "amd64", "i386", "i686") and cpu_words():
        raw = features.encode()
        out = ffi.new("char[]", 2 * len(raw) + 2)
        n = lib.wa_cpu_lacks(raw, out, len(out))
        names = ffi.string(out).decode().split(",") if n > 0 else []
    else:
        names = ["?" + f.strip()[1:] for f in features.split(",") if f.strip().startswith("+")]
    # what CPUID cannot tell ("?"): by the kernel's flags
    return tuple(n.lstrip("?") for n in names if not n.startswith("?") or not _kernel_has(n[1:], arch))


def missing_features(features: str, arch: str | None = None) -> list[str]:
    """The `+` features of an LLVM feature string that this machine lacks (LLVM names)."""
    return list(_missing(features, arch or _MACHINE))
