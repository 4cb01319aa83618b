"""Verifying and mapping an artifact (.so).

The file is read once, straight into its final place (runtime_c/image.c copies each segment into a
fresh private mapping and every other byte aside); the checks (integrity trailer, signature,
metadata, machine) then read that copy, and only that checked copy is linked and run: nothing can
swap the file between the check and the mapping.
"""
from __future__ import annotations

import os
import struct
import sys
import weakref
from typing import Any

from .. import abi, metadata, trailer
from ..errors import ArtifactError
from ..version import __version__
from .cpu import missing_features
from .frames import register_functions, unregister_functions
from .locks import fork_safe_lock
from .plan import Plan
from .runtime import ffi, lib

# The exact messages (after "<path>: "), one per reason an artifact is refused.
NOT_ELF = "not an ELF file, so not a wasm-aot artifact"
NOT_OURS = "an ELF file that is not a wasm-aot artifact"
TRUNCATED = "truncated artifact (the file ends before its integrity trailer)"
BAD_TRAILER = "corrupted artifact: its integrity trailer is damaged"
CORRUPT = "corrupted artifact: its contents do not match their checksum"
UNSIGNED = "the artifact is not signed, but a signing key is in force"
BAD_SIGNATURE = "the artifact's signature does not match the signing key"
BAD_METADATA = "unreadable artifact metadata"
FORMAT = "artifact format {got}, this loader reads format {want}"
COMPILER = "built by wasm-aot {got}, this is wasm-aot {want}"
ABI = "built for runtime ABI {got}, this runtime is ABI {want}"
ARCH = "built for {got}, this machine is {want}"
CPU = "built for CPU features this machine lacks: {missing}"

_ELF_MACHINES = {3: "i386", 40: "arm", 62: "x86_64", 183: "aarch64", 243: "riscv64"}


_MACHINE = os.uname().machine


def machine_triple_arch() -> str:
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(_MACHINE.lower(), _MACHINE)


def _elf_end(data: bytes) -> int:
    """Where the ELF image ends by its own header: past the last section or program header table."""
    try:
        if data[4] == 2:  # ELFCLASS64
            fmt = "<" if data[5] == 1 else ">"
            phoff, shoff = struct.unpack_from(fmt + "QQ", data, 0x20)
            phentsize, phnum, shentsize, shnum = struct.unpack_from(fmt + "HHHH", data, 0x36)
        else:
            fmt = "<" if data[5] == 1 else ">"
            phoff, shoff = struct.unpack_from(fmt + "II", data, 0x1C)
            phentsize, phnum, shentsize, shnum = struct.unpack_from(fmt + "HHHH", data, 0x2A)
    except (struct.error, IndexError):
        return len(data) + 1
    return max(shoff + shentsize * shnum, phoff + phentsize * phnum)


def _diagnose(data: bytes) -> str:
    """Why a file without an intact trailer is refused."""
    if data[:4] != b"\x7fELF":
        return NOT_ELF
    end = _elf_end(data)
    if len(data) < end:
        return TRUNCATED
    tail = data[end:]
    # the trailer of another format: its magics end in the format's number
    head, foot = trailer.MAGIC[:-1], trailer.END[:-1]
    if tail[:len(head)] == head and tail[-len(trailer.END):-1] == foot and tail[len(head):len(head) + 1] == tail[-1:]:
        got = tail[-1:].decode("ascii", errors="replace")
        return FORMAT.format(got=int(got) if got.isdigit() else got, want=metadata.FORMAT_VERSION)
    if tail:
        if len(tail) < trailer.TRAILER_SIZE and (tail.startswith(trailer.MAGIC) or trailer.MAGIC.startswith(tail)):
            return TRUNCATED
        return BAD_TRAILER
    return TRUNCATED if data.find(metadata.SECTION.encode()) >= 0 else NOT_OURS


class Verified:
    """An artifact that passed every check: its copy (not linked yet, or linked once by
    map_artifact), its plan (shared by equal contents) and identity."""

    __slots__ = ("image", "view", "size", "plan", "identity", "signed", "_description_at", "__weakref__")

    def __init__(self, image: Any, view: Any, size: int, plan: Plan, identity: tuple, t: trailer.Trailer) -> None:
        self.image = image  # wa_image * (freed with this object)
        self.view = view  # const char *: the file's bytes as read, owned by the image
        self.size = size  # of the file
        self.plan = plan
        # what equal artifacts share (one mapping and one metadata check per process): (checksum,
        # size, signed)
        self.identity = identity
        self.signed = identity[2]
        self._description_at = (t.meta_off + t.record_len, t.meta_len - t.record_len)

    @property
    def digest(self) -> str:
        """The file's checksum, in hex."""
        return f"{self.identity[0]:016x}"

    @property
    def meta(self) -> dict[str, Any]:
        """The whole metadata (its description), parsed on first use per content."""
        try:
            return self.plan.description(lambda: self.read(*self._description_at))
        except (ValueError, UnicodeDecodeError, KeyError, TypeError):
            raise ArtifactError(f"{BAD_METADATA} (its description)") from None

    def read(self, off: int = 0, n: int | None = None) -> bytes:
        """The file's bytes [off, off + n) as checked (also once linked: relocations are undone)."""
        if n is None:
            n = self.size - off
        if off < 0 or n < 0 or off + n > self.size:
            raise ValueError(f"bytes {off}..{off + n} are outside the artifact")
        return ffi.unpack(self.view + off, n)


def _open(path: str | None, data: bytes | None, where: str, map_file: bool) -> tuple[Any, Any]:
    """(the copied image, its wa_image_status: length, checksum, last bytes), or (NULL, the status
    saying why the C loader cannot lay the bytes out)."""
    st = ffi.new("wa_image_status *")
    img = lib.wa_image_open(os.fsencode(path) if path is not None else ffi.NULL,
                            ffi.from_buffer(data) if data is not None else ffi.NULL,
                            len(data) if data is not None else 0,
                            trailer.UNCHECKED, trailer.CHECKSUM_SEED, map_file, st)
    if img == ffi.NULL:
        if st.err_no:
            raise ArtifactError(f"{where}: cannot read: {os.strerror(st.err_no)}")
        return img, st
    return ffi.gc(img, lib.wa_image_free), st


def _refuse(data: bytes, where: str, key: bytes | None, layout_error: str) -> ArtifactError:
    """Why bytes the C loader could not lay out are refused (a corrupt or foreign file, mostly):
    the same checks as for a loadable file, on the whole bytes."""
    def read(off: int, n: int) -> bytes:
        return data[off:off + n]

    try:
        n = len(data)
        t, _ = _check_trailer(data[-trailer.TRAILER_SIZE:] if n >= trailer.TRAILER_SIZE else b"", n,
                              trailer.checksum(memoryview(data)[:max(n - trailer.UNCHECKED, 0)]), read, where, key)
        _check(data[:64], read, t, where)
    except ArtifactError as e:
        return e
    return ArtifactError(f"{where}: cannot be mapped: {layout_error}")


def _check_trailer(raw: bytes, size: int, checksum: int, read: Any, where: str,
                   key: bytes | None) -> tuple[trailer.Trailer, bool]:
    """The trailer `raw` (the file's last bytes) of a file of `size` bytes whose checksum is
    `checksum`, and whether it is signed; ArtifactError unless it is intact, matches the checksum
    and the signature the key in force asks for. read(off, n) gives the file's bytes."""
    t = trailer.unpack(raw) if len(raw) == trailer.TRAILER_SIZE else None
    if t is None:
        raise ArtifactError(f"{where}: {_diagnose(read(0, size))}")
    if t.body_len != size - trailer.TRAILER_SIZE or checksum != t.checksum:
        raise ArtifactError(f"{where}: {CORRUPT}")
    signed = bool(t.flags & trailer.FLAG_SIGNED)
    if key is not None:
        if not signed:
            raise ArtifactError(f"{where}: {UNSIGNED}")
        if not trailer.signature_ok(raw, read(0, t.body_len), key):
            raise ArtifactError(f"{where}: {BAD_SIGNATURE}")
    return t, signed


def verify(data: bytes, where: str, key: bytes | None = None, path: str | None = None) -> Verified:
    """Copy and check an artifact (the file at `path`, else `data`); raise ArtifactError
    "<where>: <reason>" if it is not loadable here.

    `key` is the signing key in force (already resolved); with one, unsigned or otherwise signed
    artifacts are refused.
    """
    # a file is mapped rather than copied unless a key is in force (see wa_image_open)
    img, st = _open(path, data, where, key is None)
    if img == ffi.NULL:
        if data is None:
            data = _read_file(path)
        raise _refuse(data, where, key, ffi.string(st.err).decode(errors="replace"))

    view = st.view

    def read(off: int, n: int) -> bytes:  # (callers stay inside the file)
        return ffi.unpack(view + off, n)

    size = st.file_len
    raw = read(size - trailer.TRAILER_SIZE, trailer.TRAILER_SIZE) if size >= trailer.TRAILER_SIZE else b""
    t, signed = _check_trailer(raw, size, st.checksum, read, where, key)
    identity = (t.checksum, size, signed)
    plan = _checked.get(identity)
    if plan is None:
        # (head None: the C loader laid the image out, so its ELF header is this machine's)
        plan = _checked[identity] = _check(None, read, t, where)
    return Verified(img, view, size, plan, identity, t)


def _read_file(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise ArtifactError(f"{path}: cannot read: {e.strerror}") from None


# Plans by identity: the checksum covers the metadata and every other byte, so equal checksums
# mean equal files, and a file that passed once passes again (the machine does not change).
_checked: dict[tuple, Plan] = {}


def _check(head: bytes | None, read: Any, t: trailer.Trailer, where: str) -> Plan:
    """The plan of an intact artifact's load record, once the record and the ELF header `head` (None:
    known to be this machine's) say it runs here."""
    if head is not None and head[:4] != b"\x7fELF":
        raise ArtifactError(f"{where}: {NOT_ELF}")
    if not (0 < t.meta_off and t.meta_len <= t.body_len and t.meta_off <= t.body_len - t.meta_len
            and 0 < t.record_len <= t.meta_len):
        raise ArtifactError(f"{where}: {BAD_METADATA}")
    try:
        rec = metadata.read_record(read(t.meta_off, t.record_len))
    except ValueError:
        raise ArtifactError(f"{where}: {BAD_METADATA}") from None
    _check_target(rec, head, where)
    try:
        return Plan(rec)
    except (KeyError, TypeError, ValueError, IndexError):
        raise ArtifactError(f"{where}: {BAD_METADATA}") from None


_HOST = machine_triple_arch()


# Targets (record's versions and target, ELF header's class and machine) that passed: the verdict
# depends on this machine alone.
_targets_ok: set[tuple] = set()


def _check_target(rec: tuple, head: bytes | None, where: str) -> None:
    """The versions, architecture and CPU features a load record asks for, against this machine's."""
    target = rec[:4] if head is None else (rec[:4], head[4:6], head[0x12:0x14])
    try:
        if target in _targets_ok:
            return
    except TypeError:  # unhashable: a malformed record, which the checks below refuse
        pass
    compiler, abi_version, triple, features = rec[:4]
    if compiler != __version__:
        raise ArtifactError(f"{where}: " + COMPILER.format(got=compiler, want=__version__))
    if abi_version != abi.ABI_VERSION:
        raise ArtifactError(f"{where}: " + ABI.format(got=abi_version, want=abi.ABI_VERSION))
    arch = (triple.split("-", 1)[0] if isinstance(triple, str) else "") or "an unknown architecture"
    elf_arch = (_HOST if head is None else
                _ELF_MACHINES.get(struct.unpack_from("<H" if head[5] == 1 else ">H", head, 0x12)[0], "?"))
    if arch != _HOST or elf_arch != _HOST:
        raise ArtifactError(f"{where}: " + ARCH.format(got=arch if arch != _HOST else elf_arch, want=_HOST))
    if not isinstance(features, str) or "\0" in features:  # (the C check reads up to a NUL)
        raise ArtifactError(f"{where}: {BAD_METADATA}")
    missing = missing_features(features, _HOST) if features else None
    if missing:
        raise ArtifactError(f"{where}: " + CPU.format(missing=", ".join("+" + m for m in missing)))
    _targets_ok.add(target)


def verify_file(path: str, key: bytes | None = None) -> Verified:
    """Copy the file at `path` once and check the copy (nothing is linked yet): what is checked is
    exactly what map_artifact links, so swapping the file afterwards changes nothing."""
    return verify(None, path, key, path=path)


class Mapped:
    """A linked artifact: its metadata and the addresses of its code. Unmapped once collected (its
    Modules, Instances and Functions hold it): see _release."""

    __slots__ = ("path", "verified", "plan", "addrs", "code", "datas", "sigs", "_names", "__weakref__")

    def __init__(self, path: str, v: Verified, addrs: Any) -> None:
        plan = self.plan = v.plan
        self.path, self.verified = path, v
        # what the descriptor refers to (see _map): per defined function its code, then per type index
        # its trampoline, per imported function its shim, per data segment its bytes. Owned here, so
        # the frame index can read it once the image is unmapped.
        self.addrs = addrs
        nd, nt, ni, ns = plan.ndefined, plan.ntypes, plan.nimported, len(plan.datas)
        self.code = ffi.cast("void **", self.addrs)  # (pointers into self.addrs do not keep it alive)
        self.datas = ffi.cast("uint8_t **", self.addrs + nd + nt + ni) if ns else ffi.NULL
        self.sigs: dict[int, Any] = {}  # type index -> externs.WasmSignature, made on first use
        self._names = register_functions(self)

    def tramp(self, type_index: int) -> Any:
        return self.code[self.plan.ndefined + type_index]

    def shim(self, import_index: int) -> Any:
        return self.code[self.plan.ndefined + self.plan.ntypes + import_index]


# Mapped images by identity: the same verified bytes are linked once per process, for as long as
# something (a Module, hence its Instances and their Functions) uses them. Weak references whose
# callback unmaps the image (cheaper than a WeakValueDictionary).
_mapped: dict[tuple, "weakref.ref[Mapped]"] = {}
# every live mapping's weak reference (_mapped may forget one: the benchmark clears it), so that its
# callback runs
_live: set = set()


def _release(ident: tuple, ref: "weakref.ref[Mapped]", base: Any, span: int, names: Any) -> None:
    """Unmap an image once its Mapped is gone. A weak reference's callback, not __del__: a weak
    reference is dead before its callback runs, so no thread can take the Mapped back from _mapped
    while its image is unmapped (during a __del__, which releases the GIL to unmap, _map could, and
    then ran freed or reused code)."""
    if _mapped.get(ident) is ref:
        del _mapped[ident]
    _live.discard(ref)
    if sys.is_finalizing():  # at exit, the process unmaps all
        return
    unregister_functions(names)
    lib.wa_unmap_image(base, span)


# Linking releases the GIL (a C call): threads instantiating the same Module at once must not link
# its image twice (or map the same content twice); the first links, the others find its mapping.
_map_lock = fork_safe_lock()


def map_artifact(path: str, v: Verified) -> Mapped:
    """Link a verified image. Each content is linked once per process."""
    with _map_lock:
        return _map(path, v)


def _map(path: str, v: Verified) -> Mapped:
    ref = _mapped.get(v.identity)
    m = ref() if ref is not None else None
    if m is not None:
        return m
    st = ffi.new("wa_image_status *")
    plan = v.plan
    nd, nt, ni, ns = plan.ndefined, plan.ntypes, plan.nimported, len(plan.datas)
    addrs = ffi.new("uintptr_t[]", nd + nt + ni + ns or 1)
    # links (registering code ranges) and resolves the descriptor, checked against the record
    rc = lib.wa_image_link_module(v.image, abi.ABI_VERSION, nd, nt, ni, ns, addrs, st)
    if rc == -1:
        raise ArtifactError(f"{path}: cannot be mapped: {ffi.string(st.err).decode(errors='replace')}")
    if rc == -2:
        raise ArtifactError(f"{path}: runtime ABI {st.abi}, expected {abi.ABI_VERSION}")
    if rc:
        raise ArtifactError(f"{path}: {BAD_METADATA} (its module descriptor does not match it)")
    try:
        m = Mapped(path, v, addrs)
    except BaseException:
        lib.wa_unmap_image(st.base, st.span)
        raise
    ident = v.identity
    ref = weakref.ref(m, lambda r, ident=ident, base=st.base, span=st.span, names=m._names:
                      _release(ident, r, base, span, names))
    _mapped[ident] = ref
    _live.add(ref)
    return m
