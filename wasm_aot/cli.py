"""The `wasm-aot` command: compile, run, inspect, cache.

Exit status: 0 success, 1 trap or user error (one line on stderr), 2 usage error.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any, Sequence

from .errors import Error, Trap
from .types import FuncType, ValType


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="wasm-aot", description="WebAssembly ahead-of-time compiler and runtime")
    sub = p.add_subparsers(dest="cmd", required=True)

    c = sub.add_parser("compile", help="compile a .wasm to a native artifact (.so)")
    c.add_argument("input")
    c.add_argument("-o", "--output", help="artifact path (default: INPUT with .so)")
    for lvl in range(4):
        c.add_argument(f"-O{lvl}", dest="opt", action="store_const", const=lvl)
    c.add_argument("--cpu", default="native", help="native (default), generic, or an LLVM CPU name")
    c.add_argument("--bounds-checks", action="store_true",
                   help="explicit bounds checks instead of guard pages (for hosts that cannot reserve 8 GiB)")
    c.add_argument("--emit-llvm", metavar="FILE", help="also write the optimised LLVM IR to FILE")
    c.add_argument("--timings", action="store_true", help="print the time of each phase")

    r = sub.add_parser("run", help="run an exported function of a .wasm or .so")
    r.add_argument("input")
    r.add_argument("--invoke", metavar="NAME", help="the export to call (default: _start, else run, else main)")
    r.add_argument("args", nargs="*", help="arguments, parsed by the function's parameter types")

    i = sub.add_parser("inspect", help="show imports, exports, memory and artifact metadata")
    i.add_argument("input")

    k = sub.add_parser("cache", help="manage the artifact cache")
    k.add_argument("action", choices=["dir", "list", "clean"])
    return p


# v128 lanes written SHAPE:a,b,...: (struct format of one lane, lane count, parse)
_LANES = {"i8x16": ("b", 16, int), "i16x8": ("h", 8, int), "i32x4": ("i", 4, int), "i64x2": ("q", 2, int),
          "f32x4": ("f", 4, float), "f64x2": ("d", 2, float)}


def _parse_v128(text: str) -> int:
    """An integer of 128 bits (0x... or decimal), or lanes: i32x4:1,2,3,4 (lane 0 first)."""
    import struct

    shape, sep, lanes = text.partition(":")
    if not sep:
        return int(text, 0)
    if shape not in _LANES:
        raise ValueError(f"unknown v128 shape {shape!r} (one of {', '.join(_LANES)})")
    fmt, n, parse = _LANES[shape]
    values = [parse(x, 0) if parse is int else parse(x) for x in lanes.split(",")]
    if len(values) != n:
        raise ValueError(f"{shape} takes {n} lanes, got {len(values)}")
    if fmt not in "fd":  # integer lanes: signed or unsigned, as in the text format
        w = struct.calcsize(fmt) * 8
        values = [x - (1 << w) if x >> (w - 1) == 1 else x for x in values]
    try:
        return int.from_bytes(struct.pack("<" + fmt * n, *values), "little")
    except struct.error as e:
        raise ValueError(f"{text}: {e}") from None


def _parse_arg(text: str, t: ValType) -> Any:
    if t in (ValType.I32, ValType.I64):
        return int(text, 0)
    if t in (ValType.F32, ValType.F64):
        return float(text)
    if t is ValType.V128:
        return _parse_v128(text)
    raise Error(f"cannot pass a {t} argument from the command line")


def _format(v: Any, t: ValType) -> str:
    if t is ValType.V128:
        return f"0x{v:032x}"
    if isinstance(v, float):
        return repr(v)
    return str(v)


def _read_module(path: str) -> bytes:
    """A binary module's bytes; text-format input (.wat) is assembled first."""
    from . import wat
    with open(path, "rb") as f:
        data = f.read()
    return wat.to_binary(data, os.path.basename(path)) if wat.is_text(data) else data


def _load(path: str) -> Any:
    from . import wat
    from .loader.module import Module
    with open(path, "rb") as f:
        head = f.read(4096)
    if wat.is_text(head):
        from .compiler import compile
        return compile(_read_module(path))
    return Module.from_file(path)


# Modules at least this big show which phase is running, when stderr is a terminal.
PROGRESS_MIN_BYTES = 256 * 1024


class _Progress:
    """One self-overwriting status line on a terminal: the phase running and the time so far."""

    def __init__(self, stream: Any, size: int) -> None:
        self.stream, self.size, self.t0 = stream, size, time.perf_counter()

    def __call__(self, phase: str) -> None:
        elapsed = time.perf_counter() - self.t0
        self.stream.write(f"\r\x1b[Kwasm-aot: {self.size / 1024:.0f} KiB module: {phase}... ({elapsed:.1f} s)")
        self.stream.flush()

    def done(self) -> None:
        self.stream.write("\r\x1b[K")
        self.stream.flush()


def cmd_compile(a: argparse.Namespace) -> int:
    from .compiler import compile_to_file
    data = _read_module(a.input)
    out = a.output or os.path.splitext(a.input)[0] + ".so"
    timings: dict[str, float] = {}
    progress = _Progress(sys.stderr, len(data)) if len(data) >= PROGRESS_MIN_BYTES and sys.stderr.isatty() else None
    t0 = time.perf_counter()
    try:
        compile_to_file(data, out, opt_level=2 if a.opt is None else a.opt, cpu=a.cpu,
                        bounds_checks=a.bounds_checks, emit_llvm=a.emit_llvm, timings=timings, progress=progress)
    finally:
        if progress:
            progress.done()
    if a.timings:
        for phase in ("decode", "validate", "setup", "codegen", "optimise", "emit", "link", "seal"):
            if phase in timings:
                print(f"{phase:<10}{timings[phase] * 1000:10.1f} ms", file=sys.stderr)
            if phase == "emit" and "parts" in timings:  # a large module, built in parts in parallel
                print(f"  (codegen+optimise+emit: {timings['parts']} parts on {timings['jobs']} workers, "
                      f"{timings['parallel'] * 1000:.1f} ms wall, {timings['cpu'] * 1000:.1f} ms CPU; "
                      "the phases above are those of the worker that finished last)", file=sys.stderr)
        print(f"{'total':<10}{(time.perf_counter() - t0) * 1000:10.1f} ms", file=sys.stderr)
    return 0


def cmd_run(a: argparse.Namespace) -> int:
    mod = _load(a.input)
    inst = mod.instantiate()
    name = a.invoke
    if name is None:
        funcs = [e.name for e in mod.exports if isinstance(e.type, FuncType)]
        name = next((n for n in ("_start", "run", "main") if n in funcs), None)
        if name is None:
            raise Error("no --invoke given and no _start, run or main export")
    f = inst.func(name)
    if len(a.args) != len(f.type.params):
        raise Error(f"{name} takes {len(f.type.params)} argument(s) {f.type}, got {len(a.args)}")
    try:
        args = [_parse_arg(s, t) for s, t in zip(a.args, f.type.params)]
    except ValueError as e:
        raise Error(f"bad argument: {e}") from None
    try:
        r = f(*args)
    except (TypeError, ValueError) as e:  # (the call checks its arguments before any wasm runs)
        raise Error(f"bad argument: {e}") from None
    for v, t in zip([] if r is None else list(r) if isinstance(r, tuple) else [r], f.type.results):
        print(_format(v, t))
    return 0


def cmd_inspect(a: argparse.Namespace) -> int:
    mod = _load(a.input)
    meta = mod.metadata
    print(f"artifact:   {mod.path}")
    print(f"wasm:       sha256 {meta.get('wasm_sha256')}")
    print(f"compiler:   wasm-aot {meta.get('compiler')}, LLVM {meta.get('llvm')}, options {meta.get('options')}")
    print(f"target:     {meta.get('triple')} cpu {meta.get('cpu_name')}")
    if meta.get("cpu_features"):
        print(f"features:   {meta['cpu_features']}")
    print(f"integrity:  xxh3-64 {mod._verified.digest}, {'signed' if mod.signed else 'not signed'}")
    print(f"imports:    {len(mod.imports)}")
    for i in mod.imports:
        print(f"  {_shown(i.module)}.{_shown(i.name)}: {i.type}")
    print(f"exports:    {len(mod.exports)}")
    for e in mod.exports:
        print(f"  {_shown(e.name)}: {e.type}")
    for m in meta.get("memories", []):
        lo, hi = m["limits"]
        print(f"memory:     {lo} page(s), max {hi if hi is not None else 'none'}")
    print(f"functions:  {len(meta['func_types'])}, data segments: {len(meta['datas'])}, "
          f"element segments: {len(meta['elems'])}")
    return 0


def _age(seconds: float) -> str:
    for unit, n in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= n:
            return f"{seconds / n:.1f}{unit}"
    return f"{max(seconds, 0):.0f}s"


def cmd_cache(a: argparse.Namespace) -> int:
    from . import cache
    if a.action == "dir":
        print(cache.default_cache_dir())
    elif a.action == "list":
        rows = cache.describe_entries()
        print(f"{'key':<16}  {'size':>10}  {'age':>8}  {'wasm sha256':<16}  status")
        for r in rows:
            print(f"{r.key[:16]:<16}  {r.size:>10}  {_age(r.age):>8}  {(r.wasm_sha256 or '-')[:16]:<16}  {r.status}")
        print(f"{len(rows)} artifact(s), {sum(r.size for r in rows)} bytes in {cache.default_cache_dir()}")
    else:
        print(f"removed {cache.clean()} artifact(s) from {cache.default_cache_dir()}")
    return 0


def _shown(name: str) -> str:
    """A wasm name as printed: as is when printable, else quoted with escapes (a name must not
    forge lines or drive the terminal)."""
    return name if name.isprintable() and name.strip() == name and name else repr(name)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    a, extra = parser.parse_known_args(argv)
    if "--" in extra:  # `run X --invoke f -- -5`: what follows `--` are arguments, even if they look like options
        at = extra.index("--")
        a.args += extra[at + 1:]
        extra = extra[:at]
    if extra:  # `run X --invoke f 1 2`: arguments after the option land here, in order
        if a.cmd != "run" or any(x.startswith("--") for x in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        a.args += extra
    try:
        return {"compile": cmd_compile, "run": cmd_run, "inspect": cmd_inspect, "cache": cmd_cache}[a.cmd](a)
    except Trap as e:
        print(f"wasm-aot: trap: {e}", file=sys.stderr)
        return 1
    except Error as e:
        print(f"wasm-aot: error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"wasm-aot: error: {e.filename or ''}: {e.strerror}", file=sys.stderr)
        return 1
    except ValueError as e:  # a bad option value (an unknown --cpu, say)
        print(f"wasm-aot: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
