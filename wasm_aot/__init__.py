"""wasm-aot: a WebAssembly ahead-of-time compiler and runtime.

Importing this package, loading an artifact, instantiating and calling never import llvmlite;
only compiling does (lazily).
"""
from __future__ import annotations

from .errors import (ArtifactError, CompileError, Error, ExportNotFound, ExportWrongType, LinkError,
                     ResolveError, SignatureError, Trap, TrapCode)
from .types import (EXTERNREF, F32, F64, FUNCREF, I32, I64, V128, ExportType, FuncType, GlobalType,
                    ImportType, Limits, MemoryType, TableType, Value, ValType)

from .version import __version__

from .loader.externs import Context, Function, Global, ImportObject, Memory, Table
from .loader.frames import Frame
from .loader.interrupt import deadline, interrupt
from .loader.instance import Instance
from .loader.module import Module, load


def __getattr__(name: str) -> object:
    # wa.compile imports the compiler's front end (decoder, validator, cache) on first use only: a
    # process that only loads artifacts never pays for it (and never for llvmlite, which only
    # compiling imports)
    if name == "compile":
        from .compiler import compile
        globals()["compile"] = compile
        return compile
    raise AttributeError(f"module 'wasm_aot' has no attribute {name!r}")


__all__ = [
    "ArtifactError", "CompileError", "Context", "EXTERNREF", "Error", "ExportNotFound", "ExportType",
    "ExportWrongType", "F32", "F64", "FUNCREF", "Frame", "FuncType", "Function", "Global", "GlobalType",
    "I32", "I64", "ImportObject", "ImportType", "Instance", "LinkError", "Limits", "Memory", "MemoryType",
    "Module", "ResolveError", "SignatureError", "Table", "TableType", "Trap", "TrapCode", "V128", "Value",
    "ValType", "compile", "deadline", "interrupt", "load",
]
