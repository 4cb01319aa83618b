#!/usr/bin/env python3
"""Generate a large wasm module for compile-time comparisons.

Thousands of functions of a realistic shape, from a fixed seed (the same bytes every time):
  * kind A (i32, i32) -> i32: a counted loop of i32 loads, xor/rotl/mul, a conditional store, a direct
    call to an earlier kind-A function and (from the 17th on) a call_indirect into a small table;
  * kind B (i32) -> i64: an i64 loop with mul/shr/div_u, a br_table switch and select;
  * kind C (f64, i32) -> f64: an f64 loop (mul/add/sqrt/min/max, int<->float conversions) over memory;
plus a mutable global, one memory page, and `run() -> i64` that fills memory from an LCG, calls the last
functions of each kind and returns a checksum (so engines can be checked against each other). Calls only
go to lower-numbered functions, so there is no recursion and run() is cheap.

    python bench/gen_large.py [-n FUNCS] [-o OUT.wasm] [--wat OUT.wat]
"""
from __future__ import annotations

import argparse
import random
import sys

from _common import wat2wasm

MASK = 0x7FFC  # addresses stay in the first 32 KiB, 4-aligned; offsets stay below 0x7000


def _kind_a(i: int, a_funcs: list[int], r: random.Random) -> str:
    c1, c2, c3 = r.randrange(1, 31), r.randrange(3, 1 << 20) | 1, r.randrange(1, 4096)
    off, off2 = r.randrange(0, 0x7000, 4), r.randrange(0, 0x7000, 4)
    body = [
        f"(func $f{i} (type $ta) (param $p i32) (param $n i32) (result i32) (local $i i32) (local $acc i32) (local $t i32)",
        f"  local.get $n i32.const 15 i32.and i32.const 4 i32.add local.set $n",
        f"  i32.const {r.randrange(1 << 31)} local.set $acc",
        "  block $done loop $l",
        "    local.get $i local.get $n i32.ge_u br_if $done",
        f"    local.get $p local.get $i i32.const 2 i32.shl i32.add i32.const {MASK} i32.and i32.load offset={off} local.set $t",
        f"    local.get $acc local.get $t i32.xor i32.const {c1} i32.rotl i32.const {c2} i32.mul local.get $i i32.add local.set $acc",
        "    local.get $t i32.const 1 i32.and",
        f"    if local.get $acc i32.const {MASK} i32.and local.get $acc local.get $t i32.add i32.store offset={off2} end",
        "    local.get $i i32.const 1 i32.add local.set $i",
        "    br $l",
        "  end end",
    ]
    if a_funcs:
        j = r.choice(a_funcs[-40:])
        body.append(f"  local.get $acc local.get $p i32.const {c3} i32.add local.get $acc call $f{j} i32.add local.set $acc")
    if len(a_funcs) >= 16:
        body.append("  local.get $acc local.get $p local.get $acc local.get $acc i32.const 15 i32.and call_indirect (type $ta) "
                    "i32.xor local.set $acc")
    body.append("  global.get $g local.get $acc i32.add global.set $g")
    body.append("  local.get $acc)")
    return "\n".join(body)


def _kind_b(i: int, b_funcs: list[int], r: random.Random) -> str:
    k1, k2 = r.randrange(1, 1 << 40) | 1, r.randrange(1, 60)
    body = [
        f"(func $f{i} (type $tb) (param $x i32) (result i64) (local $i i32) (local $h i64) (local $y i64)",
        f"  local.get $x i64.extend_i32_u i64.const {k1} i64.mul local.set $h",
        "  block $done loop $l",
        f"    local.get $i i32.const {r.randrange(6, 20)} i32.ge_u br_if $done",
        f"    local.get $h local.get $h i64.const {k2} i64.shr_u i64.xor i64.const {r.randrange(1, 1 << 62) | 1} i64.mul local.set $h",
        "    block $b3 block $b2 block $b1 block $b0",
        "      local.get $h i32.wrap_i64 i32.const 3 i32.and br_table $b0 $b1 $b2 $b3",
        f"    end local.get $h i64.const {r.randrange(1, 1 << 30)} i64.add local.set $y br $b3",
        f"    end local.get $h local.get $y i64.const 1 i64.or i64.div_u local.set $y br $b3",
        f"    end local.get $y i64.const {r.randrange(1, 63)} i64.rotl local.set $y",
        "    end",
        "    local.get $h local.get $y local.get $h local.get $y i64.lt_u select local.get $y i64.xor local.set $h",
        "    local.get $i i32.const 1 i32.add local.set $i",
        "    br $l",
        "  end end",
    ]
    if b_funcs:
        j = r.choice(b_funcs[-40:])
        body.append(f"  local.get $h local.get $x i32.const {r.randrange(1, 999)} i32.add call $f{j} i64.add local.set $h")
    body.append("  local.get $h)")
    return "\n".join(body)


def _kind_c(i: int, c_funcs: list[int], r: random.Random) -> str:
    a, b = r.uniform(0.5, 1.5), r.uniform(-2.0, 2.0)
    off = r.randrange(0, 0x7000, 4)
    body = [
        f"(func $f{i} (type $tc) (param $x f64) (param $n i32) (result f64) (local $i i32) (local $s f64) (local $v f64)",
        "  local.get $n i32.const 7 i32.and i32.const 3 i32.add local.set $n",
        "  block $done loop $l",
        "    local.get $i local.get $n i32.ge_u br_if $done",
        f"    local.get $i i32.const 2 i32.shl i32.const {MASK} i32.and i32.load offset={off} i32.const 1023 i32.and f64.convert_i32_s local.set $v",
        f"    local.get $x f64.const {a!r} f64.mul local.get $v f64.add f64.const {b!r} f64.add local.set $x",
        "    local.get $x f64.abs f64.const 1e6 f64.gt",
        "    if local.get $x f64.const 1e-6 f64.mul local.set $x end",
        "    local.get $s local.get $x f64.abs f64.sqrt f64.add local.get $v f64.min local.get $s f64.max local.set $s",
        "    local.get $i i32.const 1 i32.add local.set $i",
        "    br $l",
        "  end end",
    ]
    if c_funcs:
        j = r.choice(c_funcs[-40:])
        body.append(f"  local.get $s local.get $x f64.const 0.5 f64.mul local.get $n call $f{j} f64.add local.set $s")
    body.append("  local.get $s local.get $x f64.add)")
    return "\n".join(body)


def generate_wat(n_funcs: int = 3000, seed: int = 20261125) -> str:
    r = random.Random(seed)
    kinds: dict[str, list[int]] = {"a": [], "b": [], "c": []}
    funcs = []
    for i in range(n_funcs):
        k = "a" if i < 16 else r.choice("aaabbc")
        funcs.append({"a": _kind_a, "b": _kind_b, "c": _kind_c}[k](i, kinds[k], r))
        kinds[k].append(i)
    table = " ".join(f"$f{j}" for j in kinds["a"][:16])
    run = [
        "(func $run (export \"run\") (result i64) (local $i i32) (local $s i32) (local $h i64)",
        "  i32.const 0 global.set $g",
        "  i32.const 12345 local.set $s",
        "  block $done loop $l",  # fill the whole page with an LCG (run() resets its state)
        "    local.get $i i32.const 65536 i32.ge_u br_if $done",
        "    local.get $s i32.const 1103515245 i32.mul i32.const 12345 i32.add local.set $s",
        "    local.get $i local.get $s i32.store",
        "    local.get $i i32.const 4 i32.add local.set $i",
        "    br $l",
        "  end end",
    ]
    for j in kinds["a"][-8:]:
        run.append(f"  local.get $h i32.const {j * 4} i32.const {j} call $f{j} i64.extend_i32_u i64.add "
                   f"i64.const 31 i64.rotl local.set $h")
    for j in kinds["b"][-8:]:
        run.append(f"  local.get $h i32.const {j} call $f{j} i64.xor i64.const 7 i64.rotl local.set $h")
    for j in kinds["c"][-8:]:
        run.append(f"  local.get $h f64.const {j}.25 i32.const {j} call $f{j} i64.trunc_sat_f64_s i64.add "
                   f"i64.const 13 i64.rotl local.set $h")
    run.append("  local.get $h global.get $g i64.extend_i32_u i64.add)")
    return "\n".join([
        "(module",
        "(type $ta (func (param i32 i32) (result i32)))",
        "(type $tb (func (param i32) (result i64)))",
        "(type $tc (func (param f64 i32) (result f64)))",
        "(memory (export \"memory\") 1)",
        "(global $g (mut i32) (i32.const 0))",
        "(table 16 funcref)",
        f"(elem (i32.const 0) func {table})",
        *funcs,
        "\n".join(run),
        ")",
    ])


def generate(n_funcs: int = 3000, seed: int = 20261125) -> bytes:
    return wat2wasm(generate_wat(n_funcs, seed))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", "--funcs", type=int, default=3000, help="number of functions (default 3000)")
    ap.add_argument("--seed", type=int, default=20261125)
    ap.add_argument("-o", "--output", default="large.wasm")
    ap.add_argument("--wat", help="also write the text")
    a = ap.parse_args()
    text = generate_wat(a.funcs, a.seed)
    if a.wat:
        with open(a.wat, "w") as f:
            f.write(text)
    data = wat2wasm(text)
    with open(a.output, "wb") as f:
        f.write(data)
    print(f"{a.output}: {len(data)} bytes, {a.funcs + 1} functions")
    return 0


if __name__ == "__main__":
    sys.exit(main())
