"""Mapping code addresses back to wasm functions, for Trap.frames."""
from __future__ import annotations

import bisect
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .artifact import Mapped

_starts: list[int] = []
_owners: list[tuple["Mapped", int | None]] = []  # None: a trampoline or shim, not a wasm frame
_pending: list["Mapped"] = []  # mapped but not yet indexed: the index is built on the first trap
_lock = threading.Lock()


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
    """Remember a mapped module; its functions are indexed only when a trap needs them (loading stays cheap)."""
    with _lock:
        _pending.append(m)


def _index_pending() -> None:
    from .runtime import ffi

    with _lock:
        if not _pending:
            return
        entries = list(zip(_starts, _owners))
        for m in _pending:
            nimported = len(m.meta["func_types"]) - len(m.funcs)
            entries += [(addr, (m, nimported + i)) for i, addr in enumerate(m.funcs)]
            entries += [(int(ffi.cast("uintptr_t", p)), (m, None)) for p in m.tramps + m.shims]
        _pending.clear()
        entries.sort(key=lambda e: e[0])
        _starts[:] = [a for a, _ in entries]
        _owners[:] = [o for _, o in entries]


def describe(pcs: list[int]) -> list[Frame]:
    if _pending:
        _index_pending()
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
