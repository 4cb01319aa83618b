#!/usr/bin/env python3
"""Differential check of every plain SIMD operator against wasmtime.

One module holds a function per operator (its operands as parameters, its result returned); both
engines call each with the same operands, drawn from edge values and random bits, and the results
must agree bit for bit, except that where wasmtime gives a NaN lane of a float operator, ours must be
a quiet NaN (wasm lets the payload and sign vary). Needs the `wasmtime` package.

    python tests/fuzz/simd_diff.py [CALLS_PER_OP] [SEED] [--opt N] [--cpu generic|native|NAME]
"""
from __future__ import annotations

import argparse
import random
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import wasmtime

import wasm_aot as wa
from wasm_aot import opcodes

LETTER = {wa.I32: "i32", wa.I64: "i64", wa.F32: "f32", wa.F64: "f64", wa.V128: "v128"}
# float operators whose NaN results may differ in payload and sign
FLOAT_ARITH = ("add", "sub", "mul", "div", "sqrt", "min", "max", "ceil", "floor", "trunc", "nearest",
               "demote_f64x2_zero", "promote_low_f32x4", "convert")
EDGE32 = [0, 1, 0xFFFFFFFF, 0x80000000, 0x7FFFFFFF, 0x7FC00000, 0xFFC00000, 0x7FA00000, 0x7F800000,
          0xFF800000, 0x3F800000, 0xBF800000, 0x80000000, 0x00000001, 0x4F000000, 0xCF000000, 0x3F000000,
          0x3FC00000, 0x40200000, 0x7F7FFFFF, 0x00800000, 0x8000, 0x7FFF, 0xFFFF, 0x80, 0x7F, 0xFF]


def operators() -> list[tuple[int, str, tuple, tuple]]:
    return [(op, opcodes.NAME[op], *opcodes.SIG[op]) for op in sorted(opcodes.NAME)
            if op >> 8 == 0xFD and opcodes.KIND[op] == "none"]


def module(ops) -> bytes:
    """A function per operator, with no parameters (wasmtime's Python API takes no v128): its
    operands are loaded from memory at 16, 32, 48, its result stored at 0."""
    funcs = []
    for _, name, params, results in ops:
        loads = " ".join(f"({LETTER[p]}.load (i32.const {16 * (i + 1)}))" for i, p in enumerate(params))
        funcs.append(f'(func (export "{name}") ({LETTER[results[0]]}.store (i32.const 0) ({name} {loads})))')
    text = "(module (memory (export \"mem\") 1)\n" + "\n".join(funcs) + ")"
    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / "m.wat"
        src.write_text(text)
        out = Path(d) / "m.wasm"
        subprocess.run([str(Path(sys.executable).parent / "wat2wasm"), str(src), "-o", str(out)], check=True)
        return out.read_bytes()


def rand_v128(r: random.Random) -> int:
    k = r.random()
    if k < 0.5:
        lanes = [r.choice(EDGE32) if r.random() < 0.7 else r.getrandbits(32) for _ in range(4)]
        return int.from_bytes(struct.pack("<4I", *lanes), "little")
    if k < 0.75:
        edge64 = [0, 0x7FF8000000000000, 0x7FF4000000000000, 0xFFF8000000000000, 0x3FF0000000000000,
                  0x8000000000000000, 0x7FF0000000000000, 0x43E0000000000000, 0xC1E0000000000000,
                  0x41DFFFFFFFC00000, 0x41EFFFFFFFE00000, 0x3FE0000000000000, 0x4004000000000000]
        lanes = [r.choice(edge64) if r.random() < 0.7 else r.getrandbits(64) for _ in range(2)]
        return int.from_bytes(struct.pack("<2Q", *lanes), "little")
    lanes = [r.choice([0, 0x80, 0x7F, 0xFF, 0x01, 0x10, 0x0F]) if r.random() < 0.5 else r.getrandbits(8)
             for _ in range(16)]
    return int.from_bytes(bytes(lanes), "little")


def arg(t, r: random.Random) -> int:
    """Operand bits of type t."""
    if t is wa.V128:
        return rand_v128(r)
    if t is wa.I32:
        return r.choice([0, 1, 7, 8, 15, 16, 31, 32, 33, 63, 64, 65, -1, 0x7FFFFFFF, -0x80000000,
                         r.randrange(-2**31, 2**31)]) & 0xFFFFFFFF
    if t is wa.I64:
        return r.choice([0, 1, -1, 2**63 - 1, -2**63, r.randrange(-2**63, 2**63)]) & (2**64 - 1)
    return r.choice(EDGE32) if t is wa.F32 else r.getrandbits(64)


def lane_ok(name: str, ours: int, theirs: int) -> bool:
    if ours == theirs:
        return True
    if not name.startswith(("f32x4.", "f64x2.")) or not any(k in name for k in FLOAT_ARITH):
        return False
    w = 32 if name.startswith("f32x4.") else 64
    if "demote" in name:
        w = 32
    if "promote" in name or "convert_low" in name:
        w = 64
    exp, quiet = (0xFF << 23, 1 << 22) if w == 32 else (0x7FF << 52, 1 << 51)
    mask = (1 << w) - 1
    for i in range(128 // w):
        a, b = ours >> (i * w) & mask, theirs >> (i * w) & mask
        if a == b:
            continue
        b_nan = b & exp == exp and b & (quiet - 1 | quiet) != 0
        a_quiet_nan = a & exp == exp and a & quiet
        if not (b_nan and a_quiet_nan):
            return False
    return True


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("calls", type=int, nargs="?", default=200)
    ap.add_argument("seed", type=int, nargs="?", default=1)
    ap.add_argument("--opt", type=int, default=2)
    ap.add_argument("--cpu", default="native", help="wasm-aot's target CPU (generic: the architecture's baseline)")
    a = ap.parse_args()
    ops = operators()
    wasm = module(ops)
    ours = wa.compile(wasm, opt_level=a.opt, cache=False, cpu=a.cpu).instantiate()
    store = wasmtime.Store()
    theirs = wasmtime.Instance(store, wasmtime.Module(store.engine, wasm), []).exports(store)
    r = random.Random(a.seed)
    mem = ours.exports.mem
    wt_mem = theirs["mem"]
    bad = 0
    for _, name, params, results in ops:
        width = {wa.V128: 16, wa.I64: 8, wa.F64: 8}.get(results[0], 4)
        for _ in range(a.calls):
            args = [arg(t, r) for t in params]
            raw = b"".join(x.to_bytes(16, "little") for x in args)
            mem.write(16, raw)
            wt_mem.write(store, raw, 16)
            ours.exports[name]()
            theirs[name](store)
            got = int.from_bytes(mem.read(0, width), "little")
            want = int.from_bytes(wt_mem.read(store, 0, width), "little")
            if not (got == want or results[0] is wa.V128 and lane_ok(name, got, want)):
                bad += 1
                if bad <= 20:
                    print(f"{name}{tuple(hex(x) for x in args)}: ours {got:#x}, wasmtime {want:#x}")
    print(f"{len(ops)} operators x {a.calls} calls at -O{a.opt} --cpu {a.cpu}: {bad} disagreements")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
