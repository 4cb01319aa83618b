"""The error hierarchy of API.md. Importable without the compiler or the runtime."""
from __future__ import annotations

import enum


class Error(Exception):
    """Base of every error wasm-aot raises on purpose."""


class CompileError(Error):
    """A malformed or invalid module: `message` in the spec's words, `offset` in bytes where known."""

    def __init__(self, offset: int | None, message: str) -> None:
        self.offset = offset
        self.message = message
        super().__init__(message if offset is None else f"{message} (at byte offset {offset})")


class LinkError(Error):
    """A missing import, or an import of the wrong type."""


class ResolveError(Error):
    """An export could not be resolved as asked."""


class ExportNotFound(ResolveError, KeyError):
    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ExportWrongType(ResolveError, TypeError):
    pass


class SignatureError(ResolveError, TypeError):
    pass


class ArtifactError(Error):
    """A file that is not a valid artifact for this compiler and machine. Nothing from it ran."""


class TrapCode(enum.IntEnum):
    # Values are shared with runtime_c/runtime.h (WA_TRAP_*): keep them in step.
    UNREACHABLE = 1
    INT_DIV_BY_ZERO = 2
    INT_OVERFLOW = 3
    BAD_CONVERSION = 4
    MEMORY_OUT_OF_BOUNDS = 5
    TABLE_OUT_OF_BOUNDS = 6
    UNINITIALIZED_ELEMENT = 7
    INDIRECT_CALL_TYPE_MISMATCH = 8
    STACK_OVERFLOW = 9
    HOST = 10
    # not in API.md's table, but distinct for the table instructions' own bounds checks
    TABLE_ACCESS_OUT_OF_BOUNDS = 11
    # beyond API.md: the call was stopped by wa.interrupt / wa.deadline
    INTERRUPTED = 12


TRAP_MESSAGES: dict[TrapCode, str] = {
    TrapCode.UNREACHABLE: "unreachable",
    TrapCode.INT_DIV_BY_ZERO: "integer divide by zero",
    TrapCode.INT_OVERFLOW: "integer overflow",
    TrapCode.BAD_CONVERSION: "invalid conversion to integer",
    TrapCode.MEMORY_OUT_OF_BOUNDS: "out of bounds memory access",
    TrapCode.TABLE_OUT_OF_BOUNDS: "undefined element",
    TrapCode.UNINITIALIZED_ELEMENT: "uninitialized element",
    TrapCode.INDIRECT_CALL_TYPE_MISMATCH: "indirect call type mismatch",
    TrapCode.STACK_OVERFLOW: "call stack exhausted",
    TrapCode.HOST: "host function failed",
    TrapCode.TABLE_ACCESS_OUT_OF_BOUNDS: "out of bounds table access",
    TrapCode.INTERRUPTED: "interrupted",
}


class Trap(Error):
    """A wasm trap. `code` is a TrapCode; `frames` the wasm frames, innermost first."""

    def __init__(self, code: TrapCode, detail: str = "", frames: list | None = None) -> None:
        self.code = TrapCode(code)
        self.frames = frames or []
        msg = TRAP_MESSAGES[self.code]
        if self.code is TrapCode.TABLE_ACCESS_OUT_OF_BOUNDS:
            self.code = TrapCode.TABLE_OUT_OF_BOUNDS
        super().__init__(msg + (f": {detail}" if detail else ""))

    def __repr__(self) -> str:
        return f"Trap({self.code.name}, {str(self)!r})"
