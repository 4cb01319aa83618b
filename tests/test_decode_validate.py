"""Decoder + validator against the spec testsuite (WebAssembly 2.0, fixed-width SIMD included).

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
from wasm_aot.types import V128  # noqa: E402
from wasm_aot.validate import validate  # noqa: E402

WAST_FILES = sorted(TESTSUITE.glob("*.wast"))


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


# --- beyond the testsuite: limits, robustness, custom sections ----------------------------------

def _leb(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _section(sid: int, payload: bytes) -> bytes:
    return bytes([sid]) + _leb(len(payload)) + payload


def _module(body: bytes, locals_: bytes = b"\x00", params: bytes = b"\x00") -> bytes:
    """One function of type (params) -> () with the given local declarations and body."""
    code = locals_ + body
    return (b"\0asm\1\0\0\0" + _section(1, b"\x01\x60" + params + b"\x00") + _section(3, b"\x01\x00")
            + _section(10, b"\x01" + _leb(len(code)) + code))


def _error(data: bytes) -> str | None:
    try:
        validate(decode(data))
    except CompileError as e:
        return str(e)
    return None


def test_deep_nesting_is_iterative() -> None:
    n = 100_000
    assert _error(_module(b"\x02\x40" * n + b"\x0b" * (n + 1))) is None
    assert _error(_module(b"\x41\x01\x04\x40" * n + b"\x0b" * (n + 1))) is None
    assert "unexpected end" in _error(_module(b"\x02\x40" * n))
    assert "unknown label" in _error(_module(b"\x02\x40" * n + b"\x0c" + _leb(n + 1) + b"\x0b" * (n + 1)))


def test_too_many_locals_without_allocating() -> None:
    for locals_ in (b"\x01\xff\xff\xff\xff\x0f\x7f",  # 2^32 - 1 in one entry
                    b"\x02\xff\xff\xff\xff\x07\x7f\xff\xff\xff\xff\x07\x7e"):  # 2 * 2^31 - 1
        assert "too many locals" in _error(_module(b"\x0b", locals_))


def test_simd_immediates() -> None:
    """The 0xFD prefix: a u32 sub-opcode (two LEB bytes past 0x7F), then its immediates."""
    m = decode(_module(b"\xfd\x0c" + bytes(range(16)) + b"\x1a\x0b"))
    assert m.funcs[0].body[0][:2] == (0xFD0C, int.from_bytes(bytes(range(16)), "little"))
    assert decode(_module(b"\x0b", params=b"\x01\x7b")).types[0].params == (V128,)
    # i32x4.extract_lane (0x1b): lane 4 is out of range, 3 is not
    body = b"\xfd\x0c" + b"\0" * 16 + b"\xfd\x1b%c\x1a\x0b"
    assert _error(_module(body % 3)) is None
    assert "invalid lane index" in _error(_module(body % 4))
    # f64x2.promote_low_f32x4 (0x5f) written in two LEB bytes; 0xFD 0x80 0x02 (0x100) does not exist
    assert _error(_module(b"\xfd\x0c" + b"\0" * 16 + b"\xfd\xdf\x00\x1a\x0b")) is None
    assert "illegal opcode" in _error(_module(b"\xfd\x80\x02\x0b"))
    # v128.load8_lane needs a memory, alignment at most natural, and a lane < 16
    assert "unknown memory" in _error(_module(b"\x41\x00\xfd\x0c" + b"\0" * 16 + b"\xfd\x54\x00\x00\x00\x1a\x0b"))


def test_name_section() -> None:
    names = (_section(0, b"\x03mod") + _section(1, b"\x01\x00\x04main"))
    m = decode(_module(b"\x0b") + _section(0, b"\x04name" + names))
    assert m.module_name == "mod" and m.func_names == {0: "main"}
    assert m.customs[0][0] == "name"
    # a malformed name section is ignored: custom sections are not validated
    m = decode(_module(b"\x0b") + _section(0, b"\x04name" + b"\x01\x05\x01\x00\x09ab"))
    assert m.func_names == {} and m.customs[0][0] == "name"


def test_mutated_modules_raise_only_compile_errors() -> None:
    import random
    rng = random.Random(1234)
    paths = [p for w in WAST_FILES for p in sorted(convert(w).parent.glob("*.wasm"))]
    seeds = [p.read_bytes() for p in paths if p.stat().st_size < 4096]
    assert seeds
    for _ in range(5000):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 3)):
            if not data:
                break
            i = rng.randrange(len(data))
            r = rng.random()
            if r < 0.5:
                data[i] = rng.choice((0x00, 0x0B, 0x40, 0x7F, 0x80, 0xFF, rng.randrange(256)))
            elif r < 0.75:
                del data[i:i + rng.randint(1, 4)]
            else:
                data[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 4)))
        try:
            validate(decode(bytes(data)))
        except CompileError:
            pass
