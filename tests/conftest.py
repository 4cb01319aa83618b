"""Shared test helpers.

- `wat(text, *flags) -> bytes`: assemble WebAssembly text with wabt's wat2wasm. Usable both as a
  plain function (`from conftest import wat`) and as a pytest fixture named `wat`.
- An autouse, session-wide fixture points WASM_AOT_CACHE_DIR at a temporary folder, so the tests
  never read or write the user's artifact cache.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest


def _find_wat2wasm() -> str:
    exe = Path(sys.executable).with_name("wat2wasm")
    if exe.exists():
        return str(exe)
    found = shutil.which("wat2wasm")
    if found:
        return found
    return "/work/venv/bin/wat2wasm"


WAT2WASM = _find_wat2wasm()


def wat(text: str, *flags: str) -> bytes:
    """The binary of a module written in the text format (extra flags go to wat2wasm,
    e.g. "--debug-names" to emit a name section)."""
    with tempfile.TemporaryDirectory(prefix="wat-") as d:
        src = os.path.join(d, "m.wat")
        out = os.path.join(d, "m.wasm")
        with open(src, "w") as f:
            f.write(text)
        p = subprocess.run([WAT2WASM, *flags, src, "-o", out], capture_output=True, text=True)
        if p.returncode != 0:
            raise ValueError(f"wat2wasm failed:\n{p.stderr}\n--- source ---\n{text}")
        with open(out, "rb") as f:
            return f.read()


@pytest.fixture(name="wat")
def _wat_fixture():
    return wat


@pytest.fixture(scope="session")
def wasm_cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("wasm-aot-cache")


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(wasm_cache_dir):
    """Every test compiles into a private cache, never the user's."""
    mp = pytest.MonkeyPatch()
    mp.setenv("WASM_AOT_CACHE_DIR", str(wasm_cache_dir))
    yield wasm_cache_dir
    mp.undo()
