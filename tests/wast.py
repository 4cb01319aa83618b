"""Convert spec-testsuite .wast scripts to JSON + .wasm files with wabt's wast2json, cached.

Shared by the spec runners: keep `convert` small and stable.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CACHE_ROOT = Path(__file__).parent / ".spec-cache"
TESTSUITE = Path(os.environ.get("WASM_TESTSUITE", Path(__file__).resolve().parents[2] / "shared" / "wasm-testsuite"))


def _wast2json() -> str:
    """wast2json from the venv running us, else from PATH."""
    local = Path(sys.executable).parent / "wast2json"
    return str(local) if local.exists() else "wast2json"


def convert(wast_path: Path, out_root: Path = CACHE_ROOT) -> Path:
    """Return the JSON path of `wast_path` converted into out_root/<stem>/, converting if stale.

    Lock-free: converts into a fresh temp dir and renames it into place, so concurrent runs
    never see a half-written directory (the loser of a race just discards its copy).
    """
    wast_path = Path(wast_path)
    name = wast_path.stem
    out_dir = out_root / name
    json_path = out_dir / f"{name}.json"
    if json_path.exists() and json_path.stat().st_mtime >= wast_path.stat().st_mtime:
        return json_path
    out_root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=out_root))
    try:
        subprocess.run([_wast2json(), str(wast_path), "-o", str(tmp / f"{name}.json")],
                       check=True, capture_output=True, text=True)
        old = None
        if out_dir.exists():  # stale: move it aside first (os.replace cannot replace a non-empty dir)
            old = Path(tempfile.mkdtemp(prefix=f".{name}-old-", dir=out_root))
            try:
                os.replace(out_dir, old / name)
            except OSError:
                pass
        try:
            os.replace(tmp, out_dir)
        except OSError:
            if not json_path.exists():  # somebody else won the race; otherwise a real failure
                raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return json_path
