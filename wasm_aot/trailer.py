"""The integrity trailer appended to every artifact: a checksum of all its bytes, an optional
HMAC signature, and where the metadata lies.

ELF loaders ignore bytes past the section headers, so the trailer rides at the end of the
`.so` and the loader finds it from there. Layout (little-endian, TRAILER_SIZE):

    0   8  MAGIC
    8   8  body length (bytes before the trailer)
    16  8  metadata offset in the body
    24  8  metadata length
    32  4  flags (FLAG_SIGNED)
    36  4  length of the metadata's load record (its first part: see metadata.py)
    40 32  mac: HMAC-SHA256(key, header[0:40] + sha256(body)), zeros when unsigned
    72  8  checksum: XXH3-64 (runtime_c/checksum.c) of every byte of the file before this field
    80  8  END

The checksum (~10 GB/s) catches corruption on every load; a signature (sha256 of the body, so
~1.5 GB/s) is what guards against tampering, and is checked only when a key is in force.
The compiler writes the trailer (compiler.py), the loader checks it (loader/artifact.py); this
module is the format between them.
"""
from __future__ import annotations

import os
import struct
from typing import NamedTuple

MAGIC = b"WAOTSIG4"
END = b"WAOTEND4"
# (the last byte of each magic is the format's number: the loader names another format's trailer)
_HEAD = struct.Struct("<8sQQQII")
HEAD_SIZE = _HEAD.size  # 40
TRAILER_SIZE = HEAD_SIZE + 32 + 8 + len(END)  # 88
UNCHECKED = 8 + len(END)  # the checksum field and END: every other byte is covered
CHECKSUM_SEED = 0x7761736D2D616F74  # "wasm-aot"
FLAG_SIGNED = 1
KEY_ENV = "WASM_AOT_SIGNING_KEY"
_NO_MAC = bytes(32)


def checksum(data: bytes | bytearray | memoryview) -> int:
    from .loader.runtime import ffi, lib
    return lib.wa_checksum(ffi.from_buffer(data), len(data), CHECKSUM_SEED)


def resolve_key(key: bytes | str | None) -> bytes | None:
    """The signing key in force: `key` if given, else $WASM_AOT_SIGNING_KEY (an empty variable means
    none). An explicit empty key is refused: it would silently turn the checks off."""
    if key is None:
        key = os.environ.get(KEY_ENV)
        if not key:  # the common case, on every load
            return None
    elif not key and isinstance(key, (str, bytes, bytearray)):
        raise ValueError("an empty signing key: pass key=None to use $WASM_AOT_SIGNING_KEY (or none)")
    if isinstance(key, str):
        key = key.encode()
    if not isinstance(key, (bytes, bytearray)):
        raise TypeError(f"key must be bytes or str, not {type(key).__name__}")
    return bytes(key)


def key_id(key: bytes | None) -> str | None:
    """What the cache key records about a key: a hash, never the key itself."""
    import hashlib  # here and below: only signing needs them, and OpenSSL costs ~3 ms to import

    return None if key is None else hashlib.sha256(b"wasm-aot signing key\0" + key).hexdigest()


def _mac(key: bytes, head: bytes, body: bytes | memoryview) -> bytes:
    import hashlib
    import hmac

    return hmac.new(key, head + hashlib.sha256(body).digest(), hashlib.sha256).digest()


def make(body: bytes, meta_off: int, meta_len: int, record_len: int, key: bytes | None) -> bytes:
    """The trailer for `body` (the linked ELF image)."""
    head = _HEAD.pack(MAGIC, len(body), meta_off, meta_len, FLAG_SIGNED if key else 0, record_len)
    mac = _mac(key, head, body) if key else _NO_MAC
    return head + mac + struct.pack("<Q", checksum(body + head + mac)) + END


class Trailer(NamedTuple):
    body_len: int
    meta_off: int
    meta_len: int
    flags: int
    record_len: int
    mac: bytes
    checksum: int  # of every byte before the checksum field


_WHOLE = struct.Struct("<8sQQQII32sQ8s")


def unpack(raw: bytes) -> Trailer | None:
    """The trailer in `raw` (exactly TRAILER_SIZE bytes), if both magics are in place."""
    magic, body_len, meta_off, meta_len, flags, record_len, mac, check, end = _WHOLE.unpack(raw)
    if magic != MAGIC or end != END:
        return None
    return Trailer(body_len, meta_off, meta_len, flags, record_len, mac, check)


def signature_ok(raw: bytes, body: bytes | memoryview, key: bytes) -> bool:
    import hmac

    return hmac.compare_digest(_mac(key, raw[:HEAD_SIZE], body), raw[HEAD_SIZE:HEAD_SIZE + 32])
