"""Locks of the loader that a fork cannot leave held.

A fork copies only the forking thread: a lock another thread held at that moment would stay held
forever in the child, whose next load would then wait on it.
"""
from __future__ import annotations

import os
import threading


def fork_safe_lock(*, held_across_fork: bool = False) -> threading.Lock:
    """A lock that a forked child gets back free. With `held_across_fork`, a fork also waits for it
    (it is taken before the fork): for a lock whose holder leaves state half changed meanwhile."""
    lock = threading.Lock()
    # (_at_fork_reinit: what the threading and logging modules do for their own locks)
    if held_across_fork:
        os.register_at_fork(before=lock.acquire, after_in_parent=lock.release, after_in_child=lock._at_fork_reinit)
    else:
        os.register_at_fork(after_in_child=lock._at_fork_reinit)
    return lock
