"""Decoder + validator against the spec testsuite (WebAssembly 2.0, SIMD files excluded).

For every .wast: each binary `module` must decode and validate; each `assert_invalid` and binary
`assert_malformed` must raise CompileError containing the expected text (for malformed modules,
from either the decoder or the validator).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from wast import TESTSUITE, convert  # noqa: E402

from wasm_aot.decode import decode  # noqa: E402
from wasm_aot.errors import CompileError  # noqa: E402
from wasm_aot.validate import validate  # noqa: E402

WAST_FILES = sorted(p for p in TESTSUITE.glob("*.wast") if not p.name.startswith("simd_"))


def check_file(wast: Path) -> tuple[int, list[str]]:
    """Run every decode/validate command of one script; returns (commands run, failures)."""
    json_path = convert(wast)
    commands = json.loads(json_path.read_text())["commands"]
    ran = 0
    failures: list[str] = []
    for cmd in commands:
        ctype = cmd["type"]
        filename = cmd.get("filename", "")
        if ctype == "module":
            expected = None
        elif ctype in ("assert_invalid", "assert_malformed") and cmd.get("module_type") == "binary":
            expected = cmd["text"]
        else:
            continue
        if not filename.endswith(".wasm"):
            continue
        ran += 1
        data = (json_path.parent / filename).read_bytes()
        try:
            validate(decode(data))
            got = "ok"
        except CompileError as e:
            got = f"CompileError: {e}"
            if expected is not None and expected in str(e):
                continue
        except Exception as e:  # noqa: BLE001 - any other exception is a bug, report it
            got = f"{type(e).__name__}: {e}"
        if expected is None and got == "ok":
            continue
        failures.append(f"line {cmd['line']} {filename} ({ctype}): expected "
                        f"{'ok' if expected is None else repr(expected)}, got {got}")
    return ran, failures


@pytest.mark.parametrize("wast", WAST_FILES, ids=[p.stem for p in WAST_FILES])
def test_spec_file(wast: Path) -> None:
    ran, failures = check_file(wast)
    assert not failures, f"{len(failures)}/{ran} failing:\n" + "\n".join(failures)


def test_testsuite_present() -> None:
    assert WAST_FILES, f"no .wast files in {TESTSUITE} (set WASM_TESTSUITE)"
