"""Stopping a wasm call from another thread: wa.interrupt(thread) and `with wa.deadline(seconds)`.

Nothing is checked by the generated code (no cost per loop or call): the runtime signals the
thread, and the signal handler leaves wasm code right away with Trap(INTERRUPTED). A thread that is
in a host function or a runtime helper at that moment traps when it returns to wasm from a host
call; a deadline keeps signalling every millisecond until the call is over.
"""
from __future__ import annotations

import threading
from types import TracebackType

from .runtime import lib

RETRY_SECONDS = 0.001


def interrupt(thread_id: int) -> None:
    """Interrupt the wasm call running in the live thread `thread_id` (a threading ident); it raises
    wa.Trap with code INTERRUPTED. Without a wasm call in that thread, nothing happens."""
    if thread_id not in {t.ident for t in threading.enumerate()}:
        raise ValueError(f"no live thread {thread_id}")
    if lib.wa_interrupt(thread_id) != 0:
        raise OSError(f"cannot signal thread {thread_id}")


class deadline:
    """`with wa.deadline(seconds):` wasm called in this block is interrupted once `seconds` have
    passed (wa.Trap, code INTERRUPTED); Python code in the block is not affected."""

    def __init__(self, seconds: float) -> None:
        if not isinstance(seconds, (int, float)) or isinstance(seconds, bool):
            raise TypeError(f"a deadline needs a number of seconds, not {type(seconds).__name__}")
        if not seconds >= 0:
            raise ValueError("a deadline needs a non-negative number of seconds")
        self.seconds = seconds
        self._done = threading.Event()
        self._watcher: threading.Thread | None = None

    def _watch(self, target: int, depth: int) -> None:
        # an infinite (or huge) deadline never comes (Event.wait takes no more than threading.TIMEOUT_MAX)
        if self.seconds > threading.TIMEOUT_MAX or self._done.wait(self.seconds):
            return
        while not self._done.is_set():
            lib.wa_interrupt_deeper(target, depth)  # the target thread is alive until __exit__ has joined us
            self._done.wait(RETRY_SECONDS)

    def __enter__(self) -> "deadline":
        # only wasm called in this block: deeper than the calls in progress now (a deadline in a host
        # function must not stop the wasm that called it)
        self._watcher = threading.Thread(target=self._watch, args=(threading.get_ident(), lib.wa_entry_depth()),
                                         name="wasm-aot deadline", daemon=True)
        self._watcher.start()
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self._done.set()
        if self._watcher is not None:
            self._watcher.join()

    def __repr__(self) -> str:
        return f"<wa.deadline {self.seconds} s>"
