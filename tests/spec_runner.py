"""Run WebAssembly spec testsuite scripts (converted by wast2json) through the public API only.

    python tests/spec_runner.py [--opt N] [-j N] [--dry] [--group] [NAME ...]

Every command of a script counts: module, register, action and the assertions pass or fail; text-format
assert_malformed / assert_invalid modules are skipped (this is a binary-only consumer).

By default each script runs in a child process (`--child`), so that a crash (a signal) or a hang
in compiled code fails only the command that caused it: the parent records that command as failed,
then reruns the script in a fresh child with the command left out (state is rebuilt by rerunning the
commands before it), at most MAX_RESTARTS times per script. `--inproc` runs in this process.

Library use (tests/test_spec.py): `run_file(name, opt_level)` (isolated) or `run_script(json_path, ...)`
(in process); both return a FileResult.
"""
from __future__ import annotations

import argparse
import collections
import faulthandler
import json
import os
import queue
import re
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

# Opt-in only, and before importing wasm_aot: faulthandler's handlers for SIGSEGV/SIGFPE/SIGILL would
# otherwise sit in front of the runtime's own trap handlers.
if os.environ.get("WASM_AOT_SPEC_FAULTHANDLER"):
    faulthandler.enable()

TESTS_DIR = Path(__file__).resolve().parent
REPO_ROOT = TESTS_DIR.parent
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import wasm_aot as wa  # noqa: E402

try:  # the shared, cached wast2json conversion
    from wast import convert as _convert  # noqa: E402
except ImportError:  # pragma: no cover - fallback while tests/wast.py does not exist
    _convert = None

SPEC_CACHE = TESTS_DIR / ".spec-cache"
ARTIFACT_CACHE = SPEC_CACHE / "artifacts"
DEFAULT_OPT = int(os.environ.get("WASM_AOT_SPEC_OPT", "2"))
# seconds without any progress (one command) before a child is considered hung
COMMAND_TIMEOUT = float(os.environ.get("WASM_AOT_SPEC_TIMEOUT", "120"))
MAX_RESTARTS = 10
PROTO = "@@SPEC "


def testsuite_dir() -> Path:
    env = os.environ.get("WASM_TESTSUITE")
    if env:
        return Path(env)
    # /work/main/tests/spec_runner.py -> /work/shared/wasm-testsuite
    return REPO_ROOT.parent / "shared" / "wasm-testsuite"


def list_files(include_simd: bool = True) -> list[str]:
    """Names (without .wast) of the testsuite scripts (without the simd_* ones if asked)."""
    names = sorted(p.stem for p in testsuite_dir().glob("*.wast"))
    return [n for n in names if include_simd or not n.startswith("simd_")]


def _fallback_convert(wast_path: Path, out_root: Path = SPEC_CACHE) -> Path:  # pragma: no cover
    name = wast_path.stem
    out = out_root / name
    js = out / f"{name}.json"
    if not js.exists() or js.stat().st_mtime < wast_path.stat().st_mtime:
        out.mkdir(parents=True, exist_ok=True)
        exe = Path(sys.executable).parent / "wast2json"
        subprocess.run([str(exe) if exe.exists() else "wast2json", str(wast_path), "-o", str(js)],
                       check=True, capture_output=True)
    return js


def script_json(name: str | Path) -> Path:
    """The converted JSON of a testsuite script: NAME, NAME.wast, a .wast path or a .json path."""
    p = Path(name)
    if p.suffix == ".json":
        return p
    if p.suffix != ".wast":
        p = testsuite_dir() / f"{p.name}.wast"
    elif not p.exists():
        p = testsuite_dir() / p.name
    return (_convert or _fallback_convert)(p)


# ----------------------------------------------------------------------------------------------
# values

VALTYPES = {"i32": wa.I32, "i64": wa.I64, "f32": wa.F32, "f64": wa.F64, "v128": wa.V128,
            "funcref": wa.FUNCREF, "externref": wa.EXTERNREF}
LANES = {"i8": (8, 16), "i16": (16, 8), "i32": (32, 4), "i64": (64, 2), "f32": (32, 4), "f64": (64, 2)}
NAN_PATTERNS = ("nan:canonical", "nan:arithmetic")


class ExternRef:
    """The host object behind `ref.extern N`; one per N and script, so identity round-trips."""

    __slots__ = ("n",)

    def __init__(self, n: int) -> None:
        self.n = n

    def __repr__(self) -> str:
        return f"ref.extern {self.n}"


class Externs(dict):
    def __missing__(self, n: int) -> ExternRef:
        obj = self[n] = ExternRef(n)
        return obj


def nan_matches(pattern: str, bits: int, width: int) -> bool:
    if width == 32:
        exp, quiet, mag = 0x7F800000, 0x00400000, 0x7FFFFFFF
    else:
        exp, quiet, mag = 0x7FF0000000000000, 0x0008000000000000, 0x7FFFFFFFFFFFFFFF
    if pattern == "nan:canonical":
        return bits & mag == exp | quiet
    if pattern == "nan:arithmetic":
        return bits & (exp | quiet) == exp | quiet
    raise ValueError(pattern)


def _lanes_bits(lane_type: str, lanes: list[str]) -> int:
    width, n = LANES[lane_type]
    if len(lanes) != n:
        raise ValueError(f"v128 {lane_type} needs {n} lanes, got {len(lanes)}")
    bits = 0
    for k, lane in enumerate(lanes):
        bits |= (int(lane) & ((1 << width) - 1)) << (k * width)
    return bits


def decode_arg(v: dict, externs: Externs) -> wa.Value:
    """A JSON argument -> wa.Value with the exact bit pattern."""
    t = VALTYPES[v["type"]]
    val = v.get("value")
    if t is wa.FUNCREF:
        if val not in (None, "null"):
            raise ValueError(f"funcref argument {val!r}")
        return wa.Value(t, None)
    if t is wa.EXTERNREF:
        return wa.Value(t, None if val in (None, "null") else externs[int(val)])
    if t is wa.V128:
        return wa.Value.from_bits(t, _lanes_bits(v["lane_type"], val))
    return wa.Value.from_bits(t, int(val))


def _fmt_num(t: wa.ValType, bits: int) -> str:
    if t is wa.V128:
        return f"v128:0x{bits:032x}"
    v = wa.Value.from_bits(t, bits)
    width = 8 if t in (wa.I32, wa.F32) else 16
    return f"{t}:{v.value!r} (0x{bits:0{width}x})"


def fmt_value(v: Any) -> str:
    if not isinstance(v, wa.Value):
        return f"<not a wa.Value: {v!r}>"
    if v.type.is_ref:
        return f"{v.type}:{'null' if v.value is None else repr(v.value)}"
    return _fmt_num(v.type, v.bits)


def fmt_values(vs: Any) -> str:
    if not isinstance(vs, (list, tuple)):
        return f"<not a list: {vs!r}>"
    return "[" + ", ".join(map(fmt_value, vs)) + "]"


@dataclass
class Expect:
    """One expected result: an exact bit pattern, a NaN pattern, per-lane patterns or a reference."""

    type: wa.ValType
    kind: str  # bits | nan:canonical | nan:arithmetic | lanes | null | extern | nonnull
    bits: int = 0
    lanes: list = field(default_factory=list)  # [(pattern or None, bits)] for kind == lanes
    lane_type: str = ""
    ref: Any = None

    @classmethod
    def parse(cls, v: dict, externs: Externs) -> "Expect":
        t = VALTYPES[v["type"]]
        val = v.get("value")
        if t.is_ref:
            if val is None:
                return cls(t, "nonnull")  # ref.func / ref.extern without a number: any non-null
            if val == "null":
                return cls(t, "null")
            if t is wa.FUNCREF:
                return cls(t, "nonnull")
            return cls(t, "extern", ref=externs[int(val)])
        if val is None:
            raise ValueError(f"expected {t} without a value")
        if t is wa.V128:
            lt = v["lane_type"]
            width, n = LANES[lt]
            if len(val) != n:
                raise ValueError(f"v128 {lt} needs {n} lanes, got {len(val)}")
            lanes = [(x, 0) if x in NAN_PATTERNS else (None, int(x) & ((1 << width) - 1)) for x in val]
            if any(p for p, _ in lanes):
                if not lt.startswith("f"):
                    raise ValueError(f"NaN pattern in {lt} lane")
                return cls(t, "lanes", lanes=lanes, lane_type=lt)
            return cls(t, "bits", bits=_lanes_bits(lt, val))
        if val in NAN_PATTERNS:
            if t not in (wa.F32, wa.F64):
                raise ValueError(f"{val} for {t}")
            return cls(t, val)
        return cls(t, "bits", bits=int(val) & ((1 << (32 if t in (wa.I32, wa.F32) else 64)) - 1))

    def matches(self, v: Any) -> bool:
        if not isinstance(v, wa.Value) or v.type is not self.type:
            return False
        k = self.kind
        if k == "bits":
            return v.bits == self.bits
        if k in NAN_PATTERNS:
            return nan_matches(k, v.bits, 32 if self.type is wa.F32 else 64)
        if k == "lanes":
            width, _ = LANES[self.lane_type]
            mask = (1 << width) - 1
            for i, (pat, bits) in enumerate(self.lanes):
                lane = (v.bits >> (i * width)) & mask
                if not (nan_matches(pat, lane, width) if pat else lane == bits):
                    return False
            return True
        if k == "null":
            return v.value is None
        if k == "extern":
            return v.value is self.ref
        if k == "nonnull":
            return v.value is not None
        raise AssertionError(k)

    def __str__(self) -> str:
        k = self.kind
        if k == "bits":
            return _fmt_num(self.type, self.bits)
        if k in NAN_PATTERNS:
            return f"{self.type}:{k}"
        if k == "lanes":
            width, _ = LANES[self.lane_type]
            return f"v128:{self.lane_type}x[" + ", ".join(
                p or f"0x{b:0{width // 4}x}" for p, b in self.lanes) + "]"
        if k == "null":
            return f"{self.type}:null"
        if k == "extern":
            return f"{self.type}:{self.ref!r}"
        return f"{self.type}:non-null"


def results_match(expected: list[Expect], got: Any) -> bool:
    return (isinstance(got, (list, tuple)) and len(got) == len(expected)
            and all(e.matches(g) for e, g in zip(expected, got)))


# The spec's trap messages (API.md). A trap whose message is one of these also satisfies an expected
# text that starts with it and adds detail (e.g. "uninitialized element 2").
TRAP_BASE_MESSAGES = ("unreachable", "integer divide by zero", "integer overflow",
                      "invalid conversion to integer", "out of bounds memory access", "undefined element",
                      "out of bounds table access", "uninitialized element", "indirect call type mismatch",
                      "call stack exhausted", "host function failed")


def text_matches(exc: BaseException, expected: str) -> bool:
    s = str(exc)
    if expected in s:
        return True
    return any(s.startswith(b) and expected.startswith(b) for b in TRAP_BASE_MESSAGES)


def fmt_exc(exc: BaseException) -> str:
    name = type(exc).__name__
    if isinstance(exc, wa.Error) and type(exc).__module__.startswith("wasm_aot"):
        name = "wa." + name
    code = getattr(exc, "code", None)
    if isinstance(exc, wa.Trap) and code is not None:
        name += f"[{getattr(code, 'name', code)}]"
    return f"{name}: {exc}"


# ----------------------------------------------------------------------------------------------
# results


@dataclass
class Failure:
    line: int
    command: str
    expected: str
    got: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.command}: expected {self.expected}; got {self.got}"


@dataclass
class FileResult:
    name: str
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    failures: list[Failure] = field(default_factory=list)
    counts: collections.Counter = field(default_factory=collections.Counter)  # command kinds (dry run)
    seconds: float = 0.0
    crashes: int = 0

    @property
    def total(self) -> int:
        return self.passed + self.failed

    @property
    def ok(self) -> bool:
        return self.failed == 0

    def summary(self) -> str:
        return f"{self.name}  {self.passed}/{self.total}  (skipped {self.skipped})"

    def failure_report(self, limit: int = 0) -> str:
        fs = self.failures if not limit else self.failures[:limit]
        out = [f"  {f}" for f in fs]
        if limit and len(self.failures) > limit:
            out.append(f"  ... and {len(self.failures) - limit} more")
        return "\n".join(out)


# ----------------------------------------------------------------------------------------------
# the spectest host module


def make_spectest() -> dict[str, Any]:
    """A fresh `spectest` namespace, built from the public API only."""
    def noop(*_args: Any) -> None:
        return None

    def fn(*params: wa.ValType) -> Any:
        return wa.Function(noop, wa.FuncType(list(params), []))

    return {
        "print": fn(),
        "print_i32": fn(wa.I32),
        "print_i64": fn(wa.I64),
        "print_f32": fn(wa.F32),
        "print_f64": fn(wa.F64),
        "print_i32_f32": fn(wa.I32, wa.F32),
        "print_f64_f64": fn(wa.F64, wa.F64),
        "global_i32": wa.Global(wa.GlobalType(wa.I32, False), 666),
        "global_i64": wa.Global(wa.GlobalType(wa.I64, False), 666),
        "global_f32": wa.Global(wa.GlobalType(wa.F32, False), 666.6),
        "global_f64": wa.Global(wa.GlobalType(wa.F64, False), 666.6),
        "table": wa.Table(wa.TableType(wa.FUNCREF, wa.Limits(10, 20))),
        "memory": wa.Memory(wa.MemoryType(wa.Limits(1, 2))),
    }


# ----------------------------------------------------------------------------------------------
# running one script in this process


class CommandFailed(Exception):
    def __init__(self, expected: str, got: str) -> None:
        super().__init__(got)
        self.expected = expected
        self.got = got


class ScriptRunner:
    """Runs the commands of one converted script. `report(index, status, expected, got)` is called
    once per command with status "pass", "fail" or "skip"."""

    def __init__(self, json_path: Path, opt_level: int = DEFAULT_OPT, cache: Path | str | bool = ARTIFACT_CACHE,
                 dry: bool = False, skip: set[int] | None = None,
                 report: Callable[[int, str, str, str], None] | None = None) -> None:
        self.json_path = Path(json_path)
        self.dir = self.json_path.parent
        self.script = json.loads(self.json_path.read_text())
        self.commands: list[dict] = self.script["commands"]
        self.opt_level = opt_level
        self.cache = str(cache) if isinstance(cache, Path) else cache
        self.dry = dry
        self.skip = skip or set()
        self.report = report
        self.externs = Externs()
        self._spectest: dict[str, Any] | None = None
        self.last: Any = None  # the last instance, or None
        self.last_note = "no module defined yet"
        self.named: dict[str, Any] = {}  # $name -> instance or None (failed)
        self.named_note: dict[str, str] = {}
        self.registered: dict[str, Any] = {}

    # -- helpers
    def imports(self) -> dict[str, Any]:
        if self._spectest is None:
            self._spectest = make_spectest()
        ns: dict[str, Any] = {"spectest": self._spectest}
        ns.update(self.registered)
        return ns

    def read_module(self, filename: str) -> bytes:
        return (self.dir / filename).read_bytes()

    def compile(self, filename: str) -> Any:
        return wa.compile(self.read_module(filename), opt_level=self.opt_level, cache=self.cache)

    def instance_for(self, name: str | None) -> Any:
        if name is None:
            if self.last is None:
                raise CommandFailed("a module", f"no module ({self.last_note})")
            return self.last
        if name not in self.named:
            raise CommandFailed("a module", f"unknown module {name}")
        inst = self.named[name]
        if inst is None:
            raise CommandFailed("a module", f"no module ({self.named_note[name]})")
        return inst

    def do_action(self, action: dict) -> Any:
        """Runs an invoke/get action; returns list[wa.Value]. Exceptions propagate."""
        inst = self.instance_for(action.get("module"))
        kind = action["type"]
        if kind == "invoke":
            args = [decode_arg(a, self.externs) for a in action.get("args", [])]
            return inst.dyn_func(action["field"]).call(args)
        if kind == "get":
            g = inst.exports[action["field"]]
            v = g.value
            if isinstance(v, wa.Value):
                return [v]
            return [wa.Value(g.type.valtype, v)]
        raise CommandFailed("invoke or get", f"unknown action type {kind!r}")

    @staticmethod
    def describe_action(action: dict) -> str:
        m = action.get("module")
        where = f"{m}." if m else ""
        if action["type"] == "get":
            return f"get {where}{action['field']!r}"
        args = ", ".join(f"{a['type']}:{a.get('value')}" for a in action.get("args", []))
        return f"invoke {where}{action['field']!r}({args})"

    # -- running
    def run(self) -> FileResult:
        res = FileResult(self.json_path.stem)
        t0 = time.monotonic()
        for i, cmd in enumerate(self.commands):
            kind = cmd["type"]
            res.counts[kind] += 1
            if kind == "assert_malformed":
                res.counts["assert_malformed." + cmd.get("module_type", "?")] += 1
            if i in self.skip:
                continue
            status, exp, got = self.run_command(cmd)
            if status == "pass":
                res.passed += 1
            elif status == "skip":
                res.skipped += 1
            else:
                res.failed += 1
                res.failures.append(Failure(cmd.get("line", 0), kind, exp, got))
            if self.report:
                self.report(i, status, exp, got)
        res.seconds = time.monotonic() - t0
        return res

    def run_command(self, cmd: dict) -> tuple[str, str, str]:
        kind = cmd["type"]
        handler = getattr(self, "cmd_" + kind, None)
        if handler is None:
            return "fail", "a known command", f"unknown command type {kind!r}"
        if cmd.get("module_type") == "text":
            return "skip", "", "text module"
        try:
            if self.dry:
                self.check_parse(cmd)
                return "skip", "", "dry run"
            handler(cmd)
            return "pass", "", ""
        except CommandFailed as e:
            return "fail", e.expected, e.got
        except Exception as e:  # noqa: BLE001 - every unexpected error is this command's failure
            return "fail", "no exception", "unexpected " + fmt_exc(e)

    def check_parse(self, cmd: dict) -> None:
        """Dry run: decode all values and check the module files exist."""
        if "filename" in cmd and cmd.get("module_type", "binary") == "binary":
            if not (self.dir / cmd["filename"]).exists():
                raise CommandFailed("module file", f"missing {cmd['filename']}")
        action = cmd.get("action")
        if action:
            if action["type"] not in ("invoke", "get"):
                raise CommandFailed("invoke or get", f"unknown action type {action['type']!r}")
            for a in action.get("args", []):
                decode_arg(a, self.externs)
        if cmd["type"] in ("assert_return", "action"):
            for e in cmd.get("expected", []):
                Expect.parse(e, self.externs)

    # -- commands
    def cmd_module(self, cmd: dict) -> None:
        name = cmd.get("name")
        line = cmd.get("line")
        self.last = None
        self.last_note = f"module at line {line} failed"
        if name:
            self.named[name] = None
            self.named_note[name] = f"module {name} at line {line} failed"
        try:
            mod = self.compile(cmd["filename"])
        except Exception as e:  # noqa: BLE001
            raise CommandFailed("module compiles", fmt_exc(e)) from e
        try:
            inst = mod.instantiate(self.imports())
        except Exception as e:  # noqa: BLE001
            raise CommandFailed("module instantiates", fmt_exc(e)) from e
        self.last = inst
        if name:
            self.named[name] = inst

    def cmd_register(self, cmd: dict) -> None:
        inst = self.instance_for(cmd.get("name"))
        self.registered[cmd["as"]] = inst

    def cmd_action(self, cmd: dict) -> None:
        try:
            got = self.do_action(cmd["action"])
        except CommandFailed:
            raise
        except Exception as e:  # noqa: BLE001
            raise CommandFailed("no trap", fmt_exc(e)) from e
        expected = [Expect.parse(e, self.externs) for e in cmd.get("expected", [])]
        if expected and not results_match(expected, got):
            raise CommandFailed(f"{self.describe_action(cmd['action'])} -> "
                                f"[{', '.join(map(str, expected))}]", fmt_values(got))

    def cmd_assert_return(self, cmd: dict) -> None:
        action = cmd["action"]
        expected = [Expect.parse(e, self.externs) for e in cmd.get("expected", [])]
        want = f"{self.describe_action(action)} -> [{', '.join(map(str, expected))}]"
        try:
            got = self.do_action(action)
        except CommandFailed:
            raise
        except Exception as e:  # noqa: BLE001
            raise CommandFailed(want, fmt_exc(e)) from e
        if not results_match(expected, got):
            raise CommandFailed(want, fmt_values(got))

    def _expect_trap(self, want: str, text: str, run: Callable[[], Any], code: str | None = None) -> None:
        try:
            got = run()
        except CommandFailed:
            raise
        except wa.Trap as e:
            if code is not None and getattr(getattr(e, "code", None), "name", None) != code:
                raise CommandFailed(want, fmt_exc(e)) from e
            if not text_matches(e, text):
                raise CommandFailed(want, f"wrong message: {fmt_exc(e)}") from e
            return
        except Exception as e:  # noqa: BLE001
            raise CommandFailed(want, fmt_exc(e)) from e
        raise CommandFailed(want, f"no trap, returned {fmt_values(got)}" if isinstance(got, list) else "no trap")

    def cmd_assert_trap(self, cmd: dict) -> None:
        text = cmd.get("text", "")
        if "filename" in cmd:  # a module that traps while instantiating
            self.cmd_assert_uninstantiable(cmd)
            return
        action = cmd["action"]
        self._expect_trap(f"{self.describe_action(action)} traps {text!r}", text,
                          lambda: self.do_action(action))

    def cmd_assert_exhaustion(self, cmd: dict) -> None:
        action = cmd["action"]
        text = cmd.get("text", "call stack exhausted")
        self._expect_trap(f"{self.describe_action(action)} traps STACK_OVERFLOW {text!r}", text,
                          lambda: self.do_action(action), code="STACK_OVERFLOW")

    def _expect_compile_error(self, cmd: dict) -> None:
        text = cmd.get("text", "")
        want = f"wa.CompileError {text!r} for {cmd['filename']}"
        try:
            self.compile(cmd["filename"])
        except wa.CompileError as e:
            if text not in str(e):
                raise CommandFailed(want, f"wrong message: {fmt_exc(e)}") from e
            return
        except Exception as e:  # noqa: BLE001
            raise CommandFailed(want, fmt_exc(e)) from e
        raise CommandFailed(want, "compiled successfully")

    cmd_assert_invalid = _expect_compile_error
    cmd_assert_malformed = _expect_compile_error

    def _compile_for_assert(self, cmd: dict, want: str) -> Any:
        try:
            return self.compile(cmd["filename"])
        except Exception as e:  # noqa: BLE001
            raise CommandFailed(want, f"compile failed: {fmt_exc(e)}") from e

    def cmd_assert_unlinkable(self, cmd: dict) -> None:
        text = cmd.get("text", "")
        want = f"wa.LinkError {text!r} for {cmd['filename']}"
        mod = self._compile_for_assert(cmd, want)
        try:
            mod.instantiate(self.imports())
        except wa.LinkError as e:
            if text not in str(e):
                raise CommandFailed(want, f"wrong message: {fmt_exc(e)}") from e
            return
        except Exception as e:  # noqa: BLE001
            raise CommandFailed(want, fmt_exc(e)) from e
        raise CommandFailed(want, "instantiated successfully")

    def cmd_assert_uninstantiable(self, cmd: dict) -> None:
        text = cmd.get("text", "")
        want = f"wa.Trap {text!r} instantiating {cmd['filename']}"
        mod = self._compile_for_assert(cmd, want)
        self._expect_trap(want, text, lambda: mod.instantiate(self.imports()))


def run_script(json_path: Path | str, opt_level: int = DEFAULT_OPT, cache: Path | str | bool = ARTIFACT_CACHE,
               dry: bool = False) -> FileResult:
    """Runs one converted script in this process."""
    return ScriptRunner(Path(json_path), opt_level, cache, dry=dry).run()


# ----------------------------------------------------------------------------------------------
# running one script in child processes


def _child_main(json_path: str, opt_level: int, cache: str, skip: set[int]) -> int:
    out = sys.stdout
    # keep the protocol on the real stdout; anything else printed goes to stderr
    sys.stdout = sys.stderr

    def report(i: int, status: str, exp: str, got: str) -> None:
        rec: dict[str, Any] = {"i": i, "s": status[0]}
        if status == "fail":
            rec["e"], rec["g"] = exp, got
        out.write(PROTO + json.dumps(rec) + "\n")
        out.flush()

    ScriptRunner(Path(json_path), opt_level, cache, skip=skip, report=report).run()
    out.write(PROTO + json.dumps({"done": True}) + "\n")
    out.flush()
    return 0


def run_file(name: str | Path, opt_level: int = DEFAULT_OPT, cache: Path | str = ARTIFACT_CACHE,
             timeout: float = COMMAND_TIMEOUT) -> FileResult:
    """Runs one script isolated in child processes (see the module docstring)."""
    json_path = script_json(name)
    commands = json.loads(json_path.read_text())["commands"]
    res = FileResult(json_path.stem)
    for cmd in commands:
        res.counts[cmd["type"]] += 1
    status: dict[int, tuple[str, str, str]] = {}
    crashed: set[int] = set()
    t0 = time.monotonic()
    for attempt in range(MAX_RESTARTS + 1):
        with tempfile.TemporaryFile() as errf:
            proc = subprocess.Popen(
                [sys.executable, str(Path(__file__).resolve()), "--child", str(json_path),
                 "--opt", str(opt_level), "--cache", str(cache),
                 "--skip", ",".join(map(str, sorted(crashed)))],
                stdout=subprocess.PIPE, stderr=errf, text=True, errors="replace")
            q: queue.Queue = queue.Queue()

            def reader() -> None:
                assert proc.stdout is not None
                for line in proc.stdout:
                    q.put(line)
                q.put(None)

            th = threading.Thread(target=reader, daemon=True)
            th.start()
            done = hung = False
            last_i = -1
            while True:
                try:
                    line = q.get(timeout=timeout)
                except queue.Empty:
                    hung = True
                    proc.kill()
                    break
                if line is None:
                    break
                if not line.startswith(PROTO):
                    continue
                try:
                    rec = json.loads(line[len(PROTO):])
                except ValueError:
                    continue
                if rec.get("done"):
                    done = True
                    continue
                i = rec["i"]
                last_i = max(last_i, i)
                st = {"p": "pass", "f": "fail", "s": "skip"}[rec["s"]]
                status[i] = (st, rec.get("e", ""), rec.get("g", ""))
            proc.wait()
            th.join(timeout=5)
            errf.seek(0)
            err_text = errf.read().decode(errors="replace")
        if done and proc.returncode == 0:
            break
        # the child died or hung in the command after the last one it reported
        nxt = last_i + 1
        while nxt in crashed:
            nxt += 1
        tail = " | ".join(err_text.strip().splitlines()[-12:])
        tail = f"; stderr: {tail}" if tail else ""
        if hung:
            why = f"hung (no progress for {timeout:.0f}s)"
        elif proc.returncode is not None and proc.returncode < 0:
            why = f"child crashed with signal {-proc.returncode}"
        else:
            why = f"child exited with status {proc.returncode}"
        if nxt >= len(commands):
            res.failures.append(Failure(0, "runner", "clean exit", f"{why}{tail}"))
            res.failed += 1
            break
        res.crashes += 1
        crashed.add(nxt)
        status[nxt] = ("fail", "no crash", f"{why}{tail}")
        if attempt == MAX_RESTARTS:
            for j in range(nxt + 1, len(commands)):
                if j not in status:
                    status[j] = ("fail", "a run", f"not run: more than {MAX_RESTARTS} crashes in this script")
    for i in sorted(status):
        st, exp, got = status[i]
        if st == "pass":
            res.passed += 1
        elif st == "skip":
            res.skipped += 1
        else:
            res.failed += 1
            res.failures.append(Failure(commands[i].get("line", 0), commands[i]["type"], exp, got))
    missing = [i for i in range(len(commands)) if i not in status]
    for i in missing:  # should not happen; count them so nothing disappears silently
        res.failed += 1
        res.failures.append(Failure(commands[i].get("line", 0), commands[i]["type"], "a result", "never reported"))
    res.failures.sort(key=lambda f: f.line)
    res.seconds = time.monotonic() - t0
    return res


# ----------------------------------------------------------------------------------------------
# dry-run check against the testsuite README's command-count table

README_COLUMNS = ["module", "assert_return", "assert_trap", "assert_exhaustion", "assert_invalid",
                  "assert_malformed", "assert_unlinkable", "assert_uninstantiable", "register", "action"]


def readme_counts() -> dict[str, dict[str, int]]:
    readme = testsuite_dir() / "README.md"
    table: dict[str, dict[str, int]] = {}
    if not readme.exists():
        return table
    for line in readme.read_text().splitlines():
        m = re.match(r"\|\s*([\w\-]+)\.wast\s*\|(.*)", line)
        if not m:
            continue
        cells = [c.strip() for c in m.group(2).split("|")]
        row: dict[str, int] = {}
        for col, cell in zip(README_COLUMNS, cells):
            if col == "assert_malformed":
                b, t = cell.split("+")
                row["assert_malformed.binary"], row["assert_malformed.text"] = int(b), int(t)
                row[col] = int(b) + int(t)
            else:
                row[col] = int(cell)
        table[m.group(1)] = row
    return table


def dry_mismatches(res: FileResult, table: dict[str, dict[str, int]]) -> list[str]:
    row = table.get(res.name)
    if row is None:
        return ["not in the README table"]
    return [f"{k}: README {v}, parsed {res.counts.get(k, 0)}" for k, v in row.items() if res.counts.get(k, 0) != v]


# ----------------------------------------------------------------------------------------------
# CLI


def _group_key(f: Failure) -> str:
    if f.got.startswith("no module ("):
        return f"(follow-on) {f.command}: no module, an earlier module definition failed"
    g = re.sub(r"0x[0-9a-f]+|-?\d+(\.\d+)?(e[-+]?\d+)?", "N", f.got)
    g = re.sub(r"'[^']*'", "'S'", g)
    return f"{f.command}: {g[:160]}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("names", nargs="*", metavar="NAME", help="scripts (default: every one)")
    ap.add_argument("--opt", type=int, default=DEFAULT_OPT, help=f"opt level (default {DEFAULT_OPT})")
    ap.add_argument("--no-simd", action="store_true", help="leave the simd_* scripts out of the default set")
    ap.add_argument("--dry", action="store_true", help="only parse and count (checked against the README)")
    ap.add_argument("--inproc", action="store_true", help="run in this process (no crash isolation)")
    ap.add_argument("-j", "--jobs", type=int, default=1, help="scripts run in parallel (isolated mode)")
    ap.add_argument("--cache", default=str(ARTIFACT_CACHE), help="artifact cache directory")
    ap.add_argument("--timeout", type=float, default=COMMAND_TIMEOUT, help="seconds without progress = hung")
    ap.add_argument("--max-failures", type=int, default=0, help="failures printed per script (0: all)")
    ap.add_argument("--group", action="store_true", help="also print failures grouped by cause")
    ap.add_argument("-q", "--quiet", action="store_true", help="no per-failure lines")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--skip", default="", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)

    if a.child:
        skip = {int(x) for x in a.skip.split(",") if x}
        return _child_main(a.child, a.opt, a.cache, skip)

    names = a.names or list_files(include_simd=not a.no_simd)
    table = readme_counts() if a.dry else {}
    results: list[FileResult] = []

    def one(name: str) -> FileResult:
        try:
            if a.dry:
                return run_script(script_json(name), a.opt, a.cache, dry=True)
            if a.inproc:
                return run_script(script_json(name), a.opt, a.cache)
            return run_file(name, a.opt, a.cache, a.timeout)
        except Exception as e:  # noqa: BLE001 - e.g. the conversion failed
            r = FileResult(Path(name).stem)
            r.failed = 1
            r.failures.append(Failure(0, "runner", "a runnable script", fmt_exc(e)))
            return r

    def show(r: FileResult) -> None:
        if a.dry:
            mism = dry_mismatches(r, table)
            note = "counts match README" if not mism else "MISMATCH " + "; ".join(mism)
            print(f"{r.name}  {sum(v for k, v in r.counts.items() if '.' not in k)} commands  "
                  f"(parse failures {r.failed})  {note}", flush=True)
            if mism:
                r.failed += 1
                r.failures.append(Failure(0, "dry", "README counts", "; ".join(mism)))
        else:
            extra = f"  [{r.crashes} crash(es)]" if r.crashes else ""
            print(f"{r.summary()}  {r.seconds:.1f}s{extra}", flush=True)
        if r.failures and not a.quiet:
            print(r.failure_report(a.max_failures), flush=True)

    if a.jobs > 1 and not a.inproc and not a.dry:
        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(a.jobs) as ex:
            for r in ex.map(one, names):
                show(r)
                results.append(r)
    else:
        for name in names:
            r = one(name)
            show(r)
            results.append(r)

    if a.group:
        groups: dict[str, list[tuple[str, Failure]]] = collections.defaultdict(list)
        for r in results:
            for f in r.failures:
                groups[_group_key(f)].append((r.name, f))
        print("\nfailures by cause:")
        for key, fs in sorted(groups.items(), key=lambda kv: -len(kv[1])):
            files = collections.Counter(n for n, _ in fs)
            print(f"{len(fs):6d}  {key}")
            print(f"        files: {', '.join(f'{n}({c})' for n, c in files.most_common(8))}")
            for n, f in fs[:3]:
                print(f"        {n}.wast {f}")

    p = sum(r.passed for r in results)
    f = sum(r.failed for r in results)
    s = sum(r.skipped for r in results)
    print(f"total: {p} passed, {f} failed, {s} skipped")
    return 0 if f == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
