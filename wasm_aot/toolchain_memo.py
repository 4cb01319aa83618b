"""The toolchain description (LLVM version, triple, CPU name and features) without loading LLVM.

A cache hit must not pay ~50 ms to load llvmlite.binding just to compute its key, so the
description is memoised in the cache folder, keyed by everything it depends on: the llvmlite
version, the --cpu option and this machine's CPU identity. A stale or edited memo can only cause
a cache miss or a refused load (artifacts are checked against this CPU when loaded), never a
wrong artifact running.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import tempfile
from typing import Any

_memo: dict[str, dict[str, Any]] = {}  # memo file path -> description
_CPU_FIELDS = (b"vendor_id", b"cpu family", b"model", b"model name", b"stepping", b"flags", b"Features",
               b"CPU implementer", b"CPU architecture", b"CPU variant", b"CPU part")


def cpu_identity() -> bytes:
    """What identifies this machine's CPU (its first /proc/cpuinfo block), plus the architecture."""
    try:
        with open("/proc/cpuinfo", "rb") as f:
            first = f.read().split(b"\n\n")[0]
    except OSError:
        first = platform.processor().encode()
    keep = [ln for ln in first.splitlines() if ln.split(b":")[0].strip() in _CPU_FIELDS]
    return platform.machine().encode() + b"\n" + b"\n".join(keep)


def toolchain(cpu: str, directory: str) -> dict[str, Any]:
    import llvmlite  # the package only: its version, not the LLVM library

    h = hashlib.sha256(json.dumps([llvmlite.__version__, cpu]).encode() + cpu_identity()).hexdigest()[:32]
    path = os.path.join(directory, f"toolchain-{h}.json")
    tc = _memo.get(path)
    if tc is not None:
        return tc
    try:
        with open(path) as f:
            tc = json.load(f)
    except (OSError, ValueError):
        tc = next((t for p, t in _memo.items() if p.endswith(f"toolchain-{h}.json")), None)
        if tc is None:
            from .codegen import toolchain as compute  # loads LLVM, once per machine and option
            tc = compute(cpu)
        fd, tmp = tempfile.mkstemp(prefix=".wa-", suffix=".json", dir=directory)
        with os.fdopen(fd, "w") as f:
            json.dump(tc, f)
        os.replace(tmp, path)
    _memo[path] = tc
    return tc
