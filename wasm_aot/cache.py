"""The artifact cache: one `<key>.so` per compiled module and option set."""
from __future__ import annotations

import os


def default_cache_dir() -> str:
    env = os.environ.get("WASM_AOT_CACHE_DIR")
    if env:
        return env
    xdg = os.environ.get("XDG_CACHE_HOME")
    return os.path.join(xdg or os.path.join(os.path.expanduser("~"), ".cache"), "wasm-aot")


def cache_dir(path: str | None = None) -> str:
    d = path or default_cache_dir()
    os.makedirs(d, exist_ok=True)
    return d


def entries(path: str | None = None) -> list[str]:
    d = path or default_cache_dir()
    if not os.path.isdir(d):
        return []
    return sorted(os.path.join(d, f) for f in os.listdir(d) if f.endswith(".so") and not f.startswith("."))


def clean(path: str | None = None) -> int:
    n = 0
    d = path or default_cache_dir()
    if not os.path.isdir(d):
        return 0
    for f in os.listdir(d):
        if f.endswith(".so"):
            os.unlink(os.path.join(d, f))
            n += 1
    return n
