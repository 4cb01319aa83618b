"""Helpers shared by bench/run.py, bench/micro.py and bench/gen_large.py (paths, wat2wasm, stats)."""
from __future__ import annotations

import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
# The benchmark corpus: $WASM_AOT_BENCH, else ../shared/bench beside the repository.
CORPUS = Path(os.environ.get("WASM_AOT_BENCH") or REPO.parent / "shared" / "bench")
MASK64 = (1 << 64) - 1


def programs() -> list[str]:
    """Every program of the corpus: a src/NAME.c with its prebuilt wasm/NAME.wasm."""
    src = {p.stem for p in (CORPUS / "src").glob("*.c")}
    wasm = {p.stem for p in (CORPUS / "wasm").glob("*.wasm")}
    return sorted(src & wasm)


def find_wat2wasm() -> str:
    exe = Path(sys.executable).with_name("wat2wasm")
    if exe.exists():
        return str(exe)
    return shutil.which("wat2wasm") or "/work/venv/bin/wat2wasm"


def wat2wasm(text: str) -> bytes:
    with tempfile.TemporaryDirectory(prefix="bench-wat-") as d:
        src, out = os.path.join(d, "m.wat"), os.path.join(d, "m.wasm")
        with open(src, "w") as f:
            f.write(text)
        p = subprocess.run([find_wat2wasm(), src, "-o", out], capture_output=True, text=True)
        if p.returncode != 0:
            raise RuntimeError(f"wat2wasm failed:\n{p.stderr[:4000]}")
        with open(out, "rb") as f:
            return f.read()


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def geomean(xs: list[float]) -> float:
    xs = [x for x in xs if x and x > 0 and math.isfinite(x)]
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else float("nan")
