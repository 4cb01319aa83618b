"""Mapping code addresses back to wasm functions, for Trap.frames."""
from __future__ import annotations

import bisect
import weakref
from typing import TYPE_CHECKING, Any

from ..types import Record, _set
from .locks import fork_safe_lock

if TYPE_CHECKING:
    from .artifact import Mapped, Verified

class _Names:
    """What a frame needs of its artifact (not the artifact itself: it must stay collectable)."""

    __slots__ = ("_verified",)

    def __init__(self, verified: "weakref.ref[Verified]") -> None:
        self._verified = verified

    def names(self) -> tuple[dict[str, str], str | None]:
        """The artifact's function names and module name (its description is parsed on first use)."""
        from ..errors import ArtifactError

        v = self._verified()
        if v is None:  # (only an unmapped artifact's: its frames are no longer indexed)
            return {}, None
        try:
            meta = v.meta
        except ArtifactError:  # (a trap is reported all the same, without names)
            return {}, None
        return meta.get("func_names", {}), meta.get("module_name")


# (sorted code addresses, the owner of each: None for a trampoline or shim, not a wasm frame),
# replaced whole, so that a reader in another thread never pairs one index's addresses with
# another's owners
_index: tuple[list[int], list[tuple[_Names, int | None]]] = ([], [])
# mapped but not yet indexed (the index is built on the first trap): (names, the artifact's addresses
# (Mapped.addrs), index of the first defined function, how many, how many trampolines and shims follow)
_pending: list[tuple[_Names, Any, int, int, int]] = []
# Held across a fork: a fork in the middle of _index_pending left the child an index with entries of
# modules it had already forgotten (the rebuild drops them from _dead before publishing _index).
_lock = fork_safe_lock(held_across_fork=True)


class Frame(Record):
    """One wasm frame of a trap's backtrace."""

    __slots__ = _fields = ("func_index", "func_name", "module")
    func_index: int
    func_name: str | None
    module: str | None

    def __init__(self, func_index: int, func_name: str | None, module: str | None) -> None:
        _set(self, "func_index", func_index)
        _set(self, "func_name", func_name)
        _set(self, "module", module)

    def __str__(self) -> str:
        name = self.func_name or f"func[{self.func_index}]"
        return f"{self.module + '!' if self.module else ''}{name}"


def register_functions(m: "Mapped") -> _Names:
    """Remember a mapped module's code addresses; they are indexed only when a trap needs them
    (loading stays cheap). Returns the key for unregister_functions."""
    names = _Names(weakref.ref(m.verified))
    plan = m.plan
    with _lock:  # m.addrs is owned by m, not the image: nothing is read from the image later
        _pending.append((names, m.addrs, plan.nimported, plan.ndefined, plan.ntypes + plan.nimported))
    return names


_dead: list[_Names] = []  # unmapped, to drop from the index before anything new is merged in


def unregister_functions(names: _Names) -> None:
    """Forget an artifact being unmapped (its addresses may be reused). Called from a finalizer, so
    at any allocation: it only records the fact; the index is updated under the lock later."""
    _dead.append(names)


def _index_pending() -> None:
    from .runtime import ffi

    global _index
    with _lock:
        if not _pending and not _dead:
            return
        taken = _dead[:]  # a finalizer may append meanwhile: drop exactly what was taken
        del _dead[:len(taken)]
        dead = {id(n) for n in taken}
        _pending[:] = [p for p in _pending if id(p[0]) not in dead]
        entries = [(a, o) for a, o in zip(*_index) if id(o[0]) not in dead]
        for names, addrs, first, nfuncs, nothers in _pending:  # (see Mapped.addrs)
            addrs = ffi.unpack(addrs, nfuncs + nothers)
            entries += [(addr, (names, first + i)) for i, addr in enumerate(addrs[:nfuncs])]
            entries += [(addr, (names, None)) for addr in addrs[nfuncs:]]
        _pending.clear()
        entries.sort(key=lambda e: e[0])
        _index = ([a for a, _ in entries], [o for _, o in entries])


def describe(pcs: list[int]) -> list[Frame]:
    if _pending or _dead:
        _index_pending()
    out = []
    starts, owners = _index
    for pc in pcs:
        k = bisect.bisect_right(starts, pc - 1) - 1
        if k < 0:
            continue
        names, idx = owners[k]
        if idx is None:
            continue
        func_names, module = names.names()
        out.append(Frame(idx, func_names.get(str(idx)), module))
    return out
