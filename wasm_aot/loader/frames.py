"""Mapping code addresses back to wasm functions, for Trap.frames."""
from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .artifact import Mapped

_starts: list[int] = []
_owners: list[tuple["Mapped", int | None]] = []  # None: a trampoline or shim, not a wasm frame


@dataclass(frozen=True)
class Frame:
    """One wasm frame of a trap's backtrace."""

    func_index: int
    func_name: str | None
    module: str | None

    def __str__(self) -> str:
        name = self.func_name or f"func[{self.func_index}]"
        return f"{self.module + '!' if self.module else ''}{name}"


def register_functions(m: "Mapped") -> None:
    nimported = len(m.meta["func_types"]) - len(m.funcs)
    from .runtime import ffi

    entries = [(addr, nimported + i) for i, addr in enumerate(m.funcs)]
    entries += [(int(ffi.cast("uintptr_t", p)), None) for p in m.tramps + m.shims]
    for addr, idx in entries:
        k = bisect.bisect(_starts, addr)
        _starts.insert(k, addr)
        _owners.insert(k, (m, idx))


def describe(pcs: list[int]) -> list[Frame]:
    out = []
    for pc in pcs:
        k = bisect.bisect_right(_starts, pc - 1) - 1
        if k < 0:
            continue
        m, idx = _owners[k]
        if idx is None:
            continue
        out.append(Frame(idx, m.meta["func_names"].get(str(idx)), m.meta.get("module_name")))
    return out
