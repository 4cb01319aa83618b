"""The toolchain description (LLVM version, triple, CPU name and features) without loading LLVM.

A cache hit must not pay ~50 ms to load llvmlite.binding just to compute its key, so the
description is memoised in the cache folder, keyed by everything it depends on: the llvmlite
version, the --cpu option and this machine's CPU identity. A stale or edited memo can only cause
a cache miss or a refused load (artifacts are checked against this CPU when loaded), never a
wrong artifact running.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import tempfile
from typing import Any

_memo: dict[str, dict[str, Any]] = {}  # key -> description
_written: set[str] = set()  # memo files known to exist
_CPU_FIELDS = (b"vendor_id", b"cpu family", b"model", b"model name", b"stepping", b"flags", b"Features",
               b"CPU implementer", b"CPU architecture", b"CPU variant", b"CPU part")


def cpu_identity() -> bytes:
    """What identifies this machine's CPU, plus the architecture: its CPUID words (vendor, signature,
    feature words: what LLVM's host detection reads) where there is CPUID, else its first
    /proc/cpuinfo block."""
    from .loader.cpu import cpu_words

    words = cpu_words()
    if words:
        return platform.machine().encode() + b"\ncpuid " + " ".join(map(str, words)).encode()
    try:
        with open("/proc/cpuinfo", "rb") as f:
            first = f.read().split(b"\n\n")[0]
    except OSError:
        first = platform.processor().encode()
    keep = [ln for ln in first.splitlines() if ln.split(b":")[0].strip() in _CPU_FIELDS]
    return platform.machine().encode() + b"\n" + b"\n".join(keep)


@functools.lru_cache(maxsize=None)
def _key(cpu: str) -> str:
    """What the description depends on, hashed (once per process)."""
    import llvmlite  # the package only: its version, not the LLVM library

    return hashlib.sha256(json.dumps([llvmlite.__version__, cpu]).encode() + cpu_identity()).hexdigest()[:32]


def toolchain(cpu: str, directory: str) -> dict[str, Any]:
    h = _key(cpu)
    path = os.path.join(directory, f"toolchain-{h}.json")
    tc = _memo.get(h)
    if tc is None:
        try:
            with open(path) as f:
                tc = json.load(f)
        except (OSError, ValueError):
            from .codegen import toolchain as compute  # loads LLVM, once per machine and option
            tc = compute(cpu)
        _memo[h] = tc
    if path not in _written:  # every cache folder gets its memo, so other processes find it
        if not os.path.exists(path):
            fd, tmp = tempfile.mkstemp(prefix=".wa-", suffix=".json", dir=directory)
            with os.fdopen(fd, "w") as f:
                json.dump(tc, f)
            os.replace(tmp, path)
        _written.add(path)
    return tc
