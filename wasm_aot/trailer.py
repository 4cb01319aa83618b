"""The integrity trailer appended to every artifact: a digest of all its bytes, an optional
HMAC signature, and where the metadata lies.

ELF loaders ignore bytes past the section headers, so the trailer rides at the end of the
`.so` and the loader finds it from there with one slice. Layout (little-endian, TRAILER_SIZE):

    0   8  MAGIC
    8   8  body length (bytes before the trailer)
    16  8  metadata offset in the body
    24  8  metadata length
    32  4  flags (FLAG_SIGNED)
    36  4  reserved, zero
    40 32  mac: HMAC-SHA256(key, header[0:40] + sha256(body)), zeros when unsigned
    72 32  digest: sha256(body + trailer[0:72]), so every byte of the file but this field and END is covered
    104 8  END

The compiler writes it (compiler.py), the loader checks it (loader/artifact.py); this module is
the format between them and imports neither.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import struct
from typing import NamedTuple

MAGIC = b"WAOTSIG1"
END = b"WAOTEND1"
_HEAD = struct.Struct("<8sQQQII")
HEAD_SIZE = _HEAD.size  # 40
TRAILER_SIZE = HEAD_SIZE + 32 + 32 + len(END)  # 112
FLAG_SIGNED = 1
KEY_ENV = "WASM_AOT_SIGNING_KEY"
_NO_MAC = bytes(32)


def resolve_key(key: bytes | str | None) -> bytes | None:
    """The signing key in force: `key` if given, else $WASM_AOT_SIGNING_KEY; empty means none."""
    if key is None:
        key = os.environ.get(KEY_ENV)
    if isinstance(key, str):
        key = key.encode()
    if key is not None and not isinstance(key, (bytes, bytearray)):
        raise TypeError(f"key must be bytes or str, not {type(key).__name__}")
    return bytes(key) if key else None


def key_id(key: bytes | None) -> str | None:
    """What the cache key records about a key: a hash, never the key itself."""
    return None if key is None else hashlib.sha256(b"wasm-aot signing key\0" + key).hexdigest()


def _mac(key: bytes, head: bytes, body_digest: bytes) -> bytes:
    return hmac.new(key, head + body_digest, hashlib.sha256).digest()


def make(body: bytes, meta_off: int, meta_len: int, key: bytes | None) -> bytes:
    """The trailer for `body` (the linked ELF image)."""
    head = _HEAD.pack(MAGIC, len(body), meta_off, meta_len, FLAG_SIGNED if key else 0, 0)
    h = hashlib.sha256(body)
    mac = _mac(key, head, h.digest()) if key else _NO_MAC
    h.update(head + mac)
    return head + mac + h.digest() + END


class Trailer(NamedTuple):
    body_len: int
    meta_off: int
    meta_len: int
    flags: int
    mac: bytes
    digest: bytes  # the file digest (also identifies the artifact's content)
    body_digest: bytes  # sha256 of the body: the HMAC's input


def find(data: bytes) -> bytes | None:
    """The raw trailer at the end of `data`, if both magics are in place."""
    if len(data) < TRAILER_SIZE or data[-len(END):] != END or data[-TRAILER_SIZE:-TRAILER_SIZE + 8] != MAGIC:
        return None
    return data[-TRAILER_SIZE:]


def check_digest(data: bytes, raw: bytes) -> Trailer | None:
    """The parsed trailer when the digest matches every byte it covers, else None."""
    _, body_len, meta_off, meta_len, flags, _ = _HEAD.unpack_from(raw)
    if body_len != len(data) - TRAILER_SIZE:
        return None
    h = hashlib.sha256(memoryview(data)[:body_len])
    body_digest = h.digest()
    h.update(raw[:HEAD_SIZE + 32])
    digest = raw[HEAD_SIZE + 32:HEAD_SIZE + 64]
    if not hmac.compare_digest(h.digest(), digest):
        return None
    return Trailer(body_len, meta_off, meta_len, flags, raw[HEAD_SIZE:HEAD_SIZE + 32], digest, body_digest)


def signature_ok(t: Trailer, raw: bytes, key: bytes) -> bool:
    return hmac.compare_digest(_mac(key, raw[:HEAD_SIZE], t.body_digest), t.mac)
