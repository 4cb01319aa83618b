"""The artifact cache: one `<key>.so` per compiled module and option set.

Entries are written to a temporary file in the cache folder and moved into place with os.replace,
so readers see either no entry or a whole one, and concurrent compilers of the same module just
replace one valid artifact with an identical one.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass

TEMP_PREFIX = ".wa-"  # temporary files of writes in progress (never listed as entries)
STALE_TEMP_SECONDS = 3600  # `clean` removes temporary files this old (their writer has died)


def default_cache_dir() -> str:
    env = os.environ.get("WASM_AOT_CACHE_DIR")
    if env:
        return env
    xdg = os.environ.get("XDG_CACHE_HOME")
    return os.path.join(xdg or os.path.join(os.path.expanduser("~"), ".cache"), "wasm-aot")


def cache_dir(path: str | None = None) -> str:
    d = path or default_cache_dir()
    try:
        os.makedirs(d, exist_ok=True)
    except FileExistsError:  # a file of that name
        raise NotADirectoryError(20, "the cache directory is not a directory", d) from None
    return d


def _is_entry(p: str) -> bool:
    """An artifact of the cache: a plain *.so file (a directory or link so named is not ours)."""
    return p.endswith(".so") and os.path.isfile(p) and not os.path.islink(p)


def entries(path: str | None = None) -> list[str]:
    d = path or default_cache_dir()
    if not os.path.isdir(d):
        return []
    return sorted(p for p in (os.path.join(d, f) for f in os.listdir(d) if not f.startswith(".")) if _is_entry(p))


@dataclass(frozen=True)
class EntryInfo:
    path: str
    key: str
    size: int
    age: float  # seconds since written
    wasm_sha256: str | None
    status: str  # "ok", "ok, signed", or why the loader would refuse it


def describe_entries(path: str | None = None) -> list[EntryInfo]:
    """Each entry with its source wasm's hash, read from the checked metadata without mapping anything."""
    from .errors import ArtifactError
    from .loader.artifact import verify_file

    now = time.time()
    out = []
    for p in entries(path):
        try:
            st = os.stat(p)
        except FileNotFoundError:
            continue  # removed meanwhile
        sha, status = None, "ok"
        try:
            v = verify_file(p)
            sha, status = v.meta.get("wasm_sha256"), "ok, signed" if v.signed else "ok"
        except ArtifactError as e:
            status = "invalid: " + str(e).removeprefix(p + ": ")
        out.append(EntryInfo(p, os.path.basename(p)[:-3], st.st_size, now - st.st_mtime, sha, status))
    return out


def clean(path: str | None = None) -> int:
    """Remove every entry (and temporary files left by dead writers); returns the number of entries removed."""
    n = 0
    d = path or default_cache_dir()
    if not os.path.isdir(d):
        return 0
    now = time.time()
    for f in os.listdir(d):
        p = os.path.join(d, f)
        try:
            if f.startswith(TEMP_PREFIX):
                if now - os.stat(p).st_mtime > STALE_TEMP_SECONDS:
                    os.unlink(p)
            elif _is_entry(p):
                os.unlink(p)
                n += 1
            elif f.startswith("toolchain-") and f.endswith(".json"):
                os.unlink(p)  # memoised toolchain descriptions (see toolchain_memo.py)
        except FileNotFoundError:
            pass
    return n
