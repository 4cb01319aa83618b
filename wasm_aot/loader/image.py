"""An artifact's bytes, read once into memory (immutable `bytes`), so that what the loader checks
is exactly what dlopen maps: there is no window to swap the file in between.

To map them, the bytes are written to an anonymous memfd, sealed against any write, resize or
unsealing, and dlopen opens that memfd as /proc/self/fd/N. Without memfd, a private temporary file
is used. (Copying the file into a sealed memfd first and hashing it through a read-only mmap was
measured slower here: a plain read and hash of 1.8 MB takes 1.4 ms, the memfd route 1.9 ms.)
"""
from __future__ import annotations

import fcntl
import os
import tempfile
import weakref
from typing import Any

from ..errors import ArtifactError
from .runtime import ffi, lib

_SEALS = getattr(fcntl, "F_SEAL_SEAL", 1) | getattr(fcntl, "F_SEAL_SHRINK", 2) | \
    getattr(fcntl, "F_SEAL_GROW", 4) | getattr(fcntl, "F_SEAL_WRITE", 8)
_HAVE_MEMFD = hasattr(os, "memfd_create") and hasattr(fcntl, "F_ADD_SEALS") and os.path.isdir("/proc/self/fd")


_fd_uses: dict[int, int] = {}  # fd number -> how many mappings have used it in their path


def _memfd() -> int:
    return os.memfd_create("wasm-aot-artifact", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)


class Image:
    """Immutable artifact bytes `.buf` and, once written for mapping, the sealed memfd `.fd`."""

    def __init__(self, buf: bytes) -> None:
        self.buf = buf
        self.fd = -1
        self._close: weakref.finalize | None = None  # closes a memfd that ends up not mapped

    def close(self) -> None:
        """Drop the bytes now (a mapped image keeps its memfd)."""
        self.buf = b""
        if self._close is not None:
            self._close()

    def dlopen(self) -> Any:
        """dlopen these bytes; returns the handle (NULL on failure, see wa_dlerror).

        glibc finds an already-loaded library by its path name first, so each mapping gets a path no
        earlier one had (/proc/self/fd/../fd/N resolves like /proc/self/fd/N); the memfd is then
        closed, since the mapping keeps its file alive: a service may map any number of artifacts.
        """
        if self.fd < 0 and _HAVE_MEMFD:
            fd = _memfd()
            try:
                view = memoryview(self.buf)
                while view:
                    view = view[os.write(fd, view):]
                fcntl.fcntl(fd, fcntl.F_ADD_SEALS, _SEALS)
            except BaseException:
                os.close(fd)
                raise
            self.fd = fd
            self._close = weakref.finalize(self, os.close, fd)
        if self.fd >= 0:
            k = _fd_uses[self.fd] = _fd_uses.get(self.fd, -1) + 1
            handle = lib.wa_dlopen(f"/proc/self/{'fd/../' * k}fd/{self.fd}".encode())
            if self._close is not None:
                self._close()  # mapped or failed, the fd is no longer needed
            self.fd = -1
            return handle
        with tempfile.TemporaryDirectory(prefix="wasm-aot-map-") as d:  # mode 0700, ours alone
            p = os.path.join(d, "a.so")
            with open(p, "xb") as f:
                f.write(self.buf)
            return lib.wa_dlopen(p.encode())


def read_image(path: str) -> Image:
    """The bytes of the file at `path`, read once."""
    try:
        with open(path, "rb") as f:
            return Image(f.read())
    except OSError as e:
        raise ArtifactError(f"{path}: cannot read: {e.strerror}") from None
