"""An artifact's bytes, read once into memory (immutable `bytes`), so that what the loader checks is
exactly what gets mapped (runtime_c/image.c copies the segments out of these very bytes): there is no
window to swap the file in between.
"""
from __future__ import annotations

from ..errors import ArtifactError


class Image:
    """The immutable bytes `.buf` of an artifact file."""

    def __init__(self, buf: bytes) -> None:
        self.buf = buf

    def close(self) -> None:
        """Drop the bytes (once refused, or once mapped)."""
        self.buf = b""


def read_image(path: str) -> Image:
    """The bytes of the file at `path`, read once."""
    try:
        with open(path, "rb") as f:
            return Image(f.read())
    except OSError as e:
        raise ArtifactError(f"{path}: cannot read: {e.strerror}") from None
