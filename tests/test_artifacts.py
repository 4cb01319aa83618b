"""Artifacts for deployment: integrity trailer, signing, metadata checks, CPU targets, the cache
(atomic and concurrent writes, corruption, CLI), timings, and loading without the compiler."""
from __future__ import annotations

import hashlib
import io
import json
import marshal
import os
import struct
import subprocess
import sys
import textwrap
import time

import pytest
from conftest import wat

import wasm_aot as wa
from wasm_aot import abi, cli, metadata, trailer
from wasm_aot.compiler import compile_to_file
from wasm_aot.loader import artifact as art
from wasm_aot.loader.cpu import cpu_words, cpuid_has, host_flags, missing_features
from wasm_aot.loader.runtime import lib

SRC = """
(module
  (memory (export "memory") 1)
  (data (i32.const 16) "hello")
  (global $g (mut i32) (i32.const 5))
  (func $add (export "add") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add)
  (func (export "peek") (param i32) (result i32) local.get 0 i32.load8_u)
  (func (export "bump") (result i32) global.get $g i32.const 1 i32.add global.set $g global.get $g))
"""
KEY = b"the signing key"


@pytest.fixture(scope="module")
def wasm() -> bytes:
    return wat(SRC, "--debug-names")


@pytest.fixture(scope="module")
def signed(tmp_path_factory, wasm) -> bytes:
    """The bytes of an artifact signed with KEY."""
    p = tmp_path_factory.mktemp("signed") / "m.so"
    compile_to_file(wasm, str(p), key=KEY)
    return p.read_bytes()


@pytest.fixture(scope="module")
def unsigned(tmp_path_factory, wasm) -> bytes:
    p = tmp_path_factory.mktemp("unsigned") / "m.so"
    compile_to_file(wasm, str(p), key=None)
    return p.read_bytes()


@pytest.fixture(autouse=True)
def _no_key_in_env(monkeypatch):
    monkeypatch.delenv(trailer.KEY_ENV, raising=False)


def refused(data: bytes, key: bytes | None = None) -> str:
    """The reason (message without the path) the loader gives for these bytes."""
    with pytest.raises(wa.ArtifactError) as ei:
        art.verify(data, "X", key)
    msg = str(ei.value)
    assert msg.startswith("X: ")
    return msg[3:]


def check_works(mod: wa.Module) -> None:
    inst = mod.instantiate()
    assert inst.func("add")(40, 2) == 42
    assert inst.func("peek")(16) == ord("h")
    assert inst.func("bump")() == 6


def body_len(data: bytes) -> int:
    return len(data) - trailer.TRAILER_SIZE


# ---- integrity: what the artifact carries ----

def test_artifact_carries_metadata_and_trailer(signed, wasm):
    from elftools.elf.elffile import ELFFile

    assert signed.endswith(trailer.END)
    assert signed[-trailer.TRAILER_SIZE:].startswith(trailer.MAGIC)
    n = body_len(signed)
    assert art._elf_end(signed[:n]) == n, "the trailer starts right where the ELF image ends"
    sec = ELFFile(io.BytesIO(signed[:n])).get_section_by_name(metadata.SECTION)
    _, blen, off, size, flags, record_len = struct.unpack_from("<8sQQQII", signed, n)
    assert (blen, off, size, flags) == (n, sec["sh_offset"], sec["sh_size"], trailer.FLAG_SIGNED)
    # the section: the load record, then the description (JSON), which it is derived from
    meta = json.loads(sec.data()[record_len:])
    record = metadata.read_record(sec.data()[:record_len])
    assert record == metadata.read_record(metadata.record(meta))
    rec = dict(zip(metadata.RECORD_FIELDS, record))
    assert rec["exports"] == {"memory": ("memory", 0), "add": ("func", 0), "peek": ("func", 1), "bump": ("func", 2)}
    assert rec["types"][0] == ("func", bytes([wa.I32.value] * 2), bytes([wa.I32.value]))
    assert rec["memories"] == (("memory", 1, None),) and rec["datas"] == (("active", 0, 5, (("i32.const", 16),)),)
    for k in ("format", "compiler", "compiler_source", "abi", "llvm", "llvmlite", "triple", "cpu_name",
              "cpu_features", "options", "types", "imports", "exports", "func_types", "memories", "globals",
              "datas", "elems", "func_names", "start"):
        assert k in meta, k
    assert meta["wasm_sha256"] == hashlib.sha256(wasm).hexdigest()
    assert meta["format"] == metadata.FORMAT_VERSION and meta["compiler"] == wa.__version__
    assert meta["func_names"]["0"] == "add"
    v = art.verify(signed, "X", KEY)
    checksum, = struct.unpack_from("<Q", signed, len(signed) - 16)
    # a type index per function, compact in the file, decoded once by the loader
    assert meta["func_types"] == metadata.encode_indices(list(v.meta["func_types"]))
    assert wa.Module("X", v).metadata["func_types"] == list(v.meta["func_types"]) == [0, 1, 2]
    assert v.meta == {**meta, "func_types": v.meta["func_types"]} and v.signed and v.digest == f"{checksum:016x}"
    # the checksum covers every byte but its own field and the end marker
    assert checksum == trailer.checksum(signed[:-trailer.UNCHECKED])
    assert v.read() == signed and v.read(5, 10) == signed[5:15]


def test_load_saved_artifact_and_save_writes_the_verified_bytes(tmp_path, signed):
    p = tmp_path / "m.so"
    p.write_bytes(signed)
    mod = wa.load(p)
    assert mod.signed
    p.write_bytes(b"swapped after the check")  # what is mapped and saved is what was verified
    check_works(mod)
    mod.save(tmp_path / "copy.so")
    assert (tmp_path / "copy.so").read_bytes() == signed
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".wa-")]


# ---- integrity: what the loader refuses ----

def _expected_for_flip(data: bytes, pos: int) -> str:
    n = body_len(data)
    if n <= pos < n + 8 or pos >= len(data) - 8:  # a magic: the trailer is no longer recognised
        return art.BAD_TRAILER
    return art.CORRUPT


# XXH3-64 of the first n bytes of KAT_DATA with the trailer's seed, from the reference implementation
# (Python package xxhash 3.x, xxHash 0.8): one length per path of the algorithm (0-16, 17-128,
# 129-240, long with a partial block, whole blocks).
KAT_DATA = bytes((i * 131 + 7) % 256 for i in range(5000))
KAT = [(0, 0x4b543d4ecc9f91c1), (1, 0xf2f7092ebb494516), (3, 0xddf4ac41174cf879), (4, 0x7cc8889ec9b138e4),
       (8, 0x5634606dac9b49f7), (9, 0x13951c663716f590), (16, 0x475c0a10f5b83f2a), (17, 0x11c74f1ed6d396bb),
       (100, 0xd4172ffa8e79df1a), (128, 0xafc040bcd760f44d), (129, 0x5a6cc5ceb0514a27),
       (200, 0xee9735181a5e6ea7), (240, 0x970d764b6d1ae247), (241, 0xc923ba62d4519de0),
       (1024, 0xb84edfa546fd5390), (1025, 0xbce5bf51b2a2f925), (4999, 0x4a2f05c713e5fa06)]


@pytest.mark.parametrize("n,want", KAT)
def test_checksum_is_the_reference_xxh3(n, want):
    assert trailer.CHECKSUM_SEED == 0x7761736D2D616F74
    assert trailer.checksum(KAT_DATA[:n]) == want


# the trailers of other formats: (size, first and last 8 bytes)
OTHER_FORMATS = {1: (112, b"WAOTSIG1", b"WAOTEND1"), 2: (88, b"WAOTSIG2", b"WAOTEND2"),
                 3: (88, b"WAOTSIG3", b"WAOTEND3"), 5: (96, b"WAOTSIG5", b"WAOTEND5")}


@pytest.mark.parametrize("fmt", sorted(OTHER_FORMATS))
def test_another_format_is_named(unsigned, fmt):
    """An artifact of an earlier (or later) trailer format is refused as such (its checksum is another
    one: it is not corrupt, just old), and a single flipped bit that makes one magic look old is not."""
    size, magic, end = OTHER_FORMATS[fmt]
    body = unsigned[:body_len(unsigned)]
    old = body + magic + bytes(size - 16) + end
    assert refused(old) == art.FORMAT.format(got=fmt, want=metadata.FORMAT_VERSION)
    assert refused(unsigned[:-8] + end) == art.BAD_TRAILER


@pytest.mark.parametrize("which", ["signed", "unsigned"])
def test_every_flipped_byte_is_refused(request, which):
    """Flip one bit at every position (ELF header, program headers, .text, .rodata, the metadata,
    section headers, every trailer field) and check the exact reason; nothing is mapped."""
    data = request.getfixturevalue(which)
    def mapped() -> set:
        return {k for k, ref in art._mapped.items() if ref() is not None}

    before = mapped()
    buf = bytearray(data)
    counts: dict[str, int] = {}
    for pos in range(len(data)):
        buf[pos] ^= 0x01
        for key in (None, KEY) if pos % 97 == 0 else (None,):
            reason = refused(bytes(buf), key)
            assert reason == _expected_for_flip(data, pos), (pos, reason)
            counts[reason] = counts.get(reason, 0) + 1
        buf[pos] ^= 0x01
    assert set(counts) == {art.CORRUPT, art.BAD_TRAILER}
    assert mapped() <= before  # nothing new (an earlier test's artifact may have been unmapped meanwhile)


def test_flips_through_wa_load_map_nothing(tmp_path, signed):
    from elftools.elf.elffile import ELFFile

    elf = ELFFile(io.BytesIO(signed[:body_len(signed)]))
    text, meta = elf.get_section_by_name(".text"), elf.get_section_by_name(metadata.SECTION)
    spots = {"ELF magic": 1, "e_machine": 0x12, "e_shoff": 0x28, ".text": text["sh_offset"] + text["sh_size"] // 2,
             "metadata": meta["sh_offset"] + 3, "trailer length": body_len(signed) + 8,
             "trailer mac": body_len(signed) + 50, "trailer digest": len(signed) - 20,
             "trailer end": len(signed) - 1}
    ranges_before = lib.wa_code_ranges()
    for name, pos in spots.items():
        buf = bytearray(signed)
        buf[pos] ^= 0xFF
        p = tmp_path / f"flip-{pos}.so"
        p.write_bytes(bytes(buf))
        with pytest.raises(wa.ArtifactError) as ei:
            wa.load(p)
        assert str(ei.value) == f"{p}: {_expected_for_flip(signed, pos)}", name
    assert lib.wa_code_ranges() == ranges_before


def test_truncated(signed):
    n = body_len(signed)
    for size in (0, 3):
        assert refused(signed[:size]) == art.NOT_ELF
    for size in (10, 63, 64, 500, n // 2, n - 1, n, n + 1, n + 8, n + 40, len(signed) - 1):
        assert refused(signed[:size]) == art.TRUNCATED, size
    # an ELF cut inside its header still reads as truncated, not as garbage
    assert refused(signed[:0x30]) == art.TRUNCATED


def test_not_elf_and_not_ours(tmp_path, wasm):
    assert refused(b"") == art.NOT_ELF
    assert refused(b"not an elf file at all" * 20) == art.NOT_ELF
    assert refused(wasm) == art.NOT_ELF
    runtime_so = next(os.path.join(os.path.dirname(wa.__file__), f) for f in
                      os.listdir(os.path.dirname(wa.__file__)) if f.startswith("_runtime") and f.endswith(".so"))
    foreign = open(runtime_so, "rb").read()
    assert refused(foreign) == art.NOT_OURS
    assert refused(foreign + b"some trailing junk") == art.BAD_TRAILER
    # a foreign ELF with a well-formed (unsigned) trailer still has no readable metadata
    assert refused(foreign + trailer.make(foreign, 0, 0, 0, None)) == art.BAD_METADATA
    assert refused(foreign + trailer.make(foreign, 64, 16, 8, None)) == art.BAD_METADATA
    assert refused(foreign + trailer.make(foreign, 64, 16, 0, None)) == art.BAD_METADATA  # no record
    assert refused(foreign + trailer.make(foreign, 64, 16, 17, None)) == art.BAD_METADATA  # past the section
    with pytest.raises(wa.ArtifactError, match="cannot read"):
        wa.load(tmp_path / "missing.so")
    with pytest.raises(wa.ArtifactError, match=art.TRUNCATED.replace("(", r"\(").replace(")", r"\)")):
        wa.Module.from_file(_write(tmp_path / "x.so", b"\x7fELF" + b"\0" * 10))


def _write(p, data: bytes):
    p.write_bytes(data)
    return p


def _reseal(data: bytes, patch, key: bytes | None = None) -> bytes:
    """The artifact with its body patched and a correct trailer, so only the intended check fires."""
    n = body_len(data)
    _, _, off, size, _, record_len = struct.unpack_from("<8sQQQII", data, n)
    body = bytearray(data[:n])
    patch(body)
    return bytes(body) + trailer.make(bytes(body), off, size, record_len, key)


def _build_with(tmp_path, wasm, record=None, **changes) -> bytes:
    """An artifact whose metadata was changed before it was built (and signed correctly); `record`,
    if given, makes its load record from the (changed) metadata instead."""
    real = metadata.build

    def patched(mod, extra):
        meta = real(mod, extra)
        meta.update(changes)
        return meta

    out = tmp_path / "patched.so"
    mp = pytest.MonkeyPatch()
    mp.setattr(metadata, "build", patched)
    if record is not None:
        mp.setattr(metadata, "record", record)
    try:
        compile_to_file(wasm, str(out), opt_level=0, key=KEY)
    finally:
        mp.undo()
    return out.read_bytes()


def _lacking_feature() -> str:
    for f in ("avx512fp16", "amx-tile", "avx512vp2intersect", "sve2", "sha3", "avx10.2-512", "avx2"):
        if missing_features("+" + f):
            return f
    pytest.skip("this CPU has every candidate feature")


def _record_with(**fields):
    """metadata.record, with some of the record's fields replaced (by value or by a function of the old)."""
    real = metadata.record

    def patched(meta):
        rec = dict(zip(metadata.RECORD_FIELDS, metadata.read_record(real(meta))))
        rec.update({k: v(rec[k]) if callable(v) else v for k, v in fields.items()})
        return marshal.dumps(tuple(rec.values()), 4)
    return patched


@pytest.mark.parametrize("change,expected", [
    ({"compiler": "0.0.1"}, art.COMPILER.format(got="0.0.1", want=wa.__version__)),
    ({"abi": 1}, art.ABI.format(got=1, want=abi.ABI_VERSION)),
    ({"triple": "aarch64-unknown-linux-gnu" if art.machine_triple_arch() != "aarch64" else "x86_64-pc-linux-gnu"},
     None),
    ({"cpu_features": "FEATURE"}, None),
    ({"cpu_features": "+sse2\0+no-such-feature"}, art.BAD_METADATA),
    ({"record": _record_with(cpu_features=["+sse2"])}, art.BAD_METADATA),
    ({"record": lambda meta: b"not a marshalled record"}, art.BAD_METADATA),
    ({"record": lambda meta: b"\xff"}, art.BAD_METADATA),
    ({"record": _record_with(func_types=b"\0\0\0")}, art.BAD_METADATA),  # not uint32s
    ({"record": _record_with(func_types=b"\7\0\0\0" * 3)}, art.BAD_METADATA),  # no type 7
    ({"record": _record_with(func_types=[0, 1, 2])}, art.BAD_METADATA),
    ({"record": _record_with(refs=b"\3\0\0\0")}, art.BAD_METADATA),  # no function 3
    ({"record": _record_with(types=(("nofunc", b"", b""),))}, art.BAD_METADATA),
    ({"record": _record_with(exports=[("add", "func", 0)])}, art.BAD_METADATA),
    ({"record": lambda meta: marshal.dumps(("only", "some", "fields"))}, art.BAD_METADATA),
])
def test_metadata_mismatches(tmp_path, wasm, change, expected):
    host = art.machine_triple_arch()
    if "triple" in change:
        expected = art.ARCH.format(got=change["triple"].split("-")[0], want=host)
    if change.get("cpu_features") == "FEATURE":
        f = _lacking_feature()
        change = {"cpu_features": f"+sse2,-avx,+{f}"}
        expected = art.CPU.format(missing="+" + f)
    data = _build_with(tmp_path, wasm, **change)
    assert refused(data) == expected
    assert refused(data, KEY) == expected  # signed correctly: only the intended check fires
    p = _write(tmp_path / "m.so", data)
    with pytest.raises(wa.ArtifactError) as ei:
        wa.load(p, key=KEY)
    assert str(ei.value) == f"{p}: {expected}"


def test_loading_reads_only_the_load_record(tmp_path, wasm, monkeypatch):
    """Load, instantiate, call and trap use the record alone; the description (JSON) is parsed only
    when asked for, once per content, and a bad one says so then."""
    real = metadata.dumps
    monkeypatch.setattr(metadata, "dumps", lambda meta: b"{not json" + real(meta)[1:])
    p = tmp_path / "m.so"
    compile_to_file(wat(SRC.replace('(func (export "bump")', '(func (export "boom") unreachable) (func (export "bump")'),
                        "--debug-names"), str(p), opt_level=0)
    monkeypatch.undo()
    mod = wa.load(p)
    check_works(mod)
    with pytest.raises(wa.Trap) as ei:
        mod.instantiate().func("boom")()
    assert ei.value.code is wa.TrapCode.UNREACHABLE and ei.value.frames[0].func_name is None
    with pytest.raises(wa.ArtifactError, match=r"unreadable artifact metadata \(its description\)"):
        mod.metadata
    # an intact one: parsed once, shared by every load of the content
    p2 = _write(tmp_path / "ok.so", compile_to_file_bytes(tmp_path, wasm))
    a, b = wa.load(p2), wa.load(p2)
    assert a._verified.meta is b._verified.meta and a.metadata["func_names"]["0"] == "add"


def compile_to_file_bytes(tmp_path, wasm) -> bytes:
    compile_to_file(wasm, str(tmp_path / "built.so"), opt_level=0)
    return (tmp_path / "built.so").read_bytes()


def test_linking_writes_nothing_to_the_image(signed):
    """The module descriptor refers to code and data by offsets the linker resolved: an artifact that
    calls no C library function has no dynamic relocation at all, so linking it only sets protections."""
    from elftools.elf.elffile import ELFFile
    from elftools.elf.relocation import RelocationSection

    elf = ELFFile(io.BytesIO(signed[:body_len(signed)]))
    assert not [s.name for s in elf.iter_sections() if isinstance(s, RelocationSection) and s.num_relocations()]


def test_a_descriptor_that_does_not_match_the_metadata_is_refused(tmp_path, wasm):
    """Counts in the load record and in the code's descriptor must agree (else the loader would read
    past the descriptor's arrays); a mismatch is refused when the image is linked, and nothing runs."""
    extra = _record_with(func_types=lambda ft: ft + ft[:4])  # one function more than the code has
    p = _write(tmp_path / "m.so", _build_with(tmp_path, wasm, record=extra))
    mod = wa.load(p)
    ranges = lib.wa_code_ranges()
    with pytest.raises(wa.ArtifactError, match="module descriptor does not match"):
        mod.instantiate()
    assert lib.wa_code_ranges() == ranges


def test_elf_machine_mismatch(signed):
    other = 183 if art.machine_triple_arch() != "aarch64" else 62
    data = _reseal(signed, lambda b: struct.pack_into("<H", b, 0x12, other), KEY)
    assert refused(data, KEY) == art.ARCH.format(got=art._ELF_MACHINES[other], want=art.machine_triple_arch())


def test_cpu_feature_names_map_to_cpuinfo(unsigned):
    meta = art.verify(unsigned, "X").meta
    assert meta["options"]["cpu"] == "native"
    assert missing_features(meta["cpu_features"]) == []  # the host's own features never refuse
    if "avx2" in host_flags():
        assert missing_features("+avx2,+sse4.2,+sse3,+64bit,+lzcnt,-avx512f") == []
    assert missing_features("+no-such-feature") == ["no-such-feature"]  # unknown features fail closed
    assert all(f.startswith("+") for f in meta["cpu_features"].split(","))  # what a loader checks, only


@pytest.mark.skipif(not cpu_words(), reason="no CPUID on this architecture")
def test_cpuid_features_agree_with_llvm():
    """runtime_c/cpu.c reads the host's features as LLVM's own host detection does: every feature
    LLVM reports on (or off) for this machine that the table knows, it reports the same."""
    import llvmlite.binding as llvm

    llvm.initialize_native_target()
    host = llvm.get_host_cpu_features()
    known = {name: on for name, on in host.items() if cpuid_has(name) is not None}
    assert len(known) >= 60 and {"sse2", "64bit", "cx16"} <= set(known)
    assert {name: cpuid_has(name) for name in known} == known
    assert missing_features(host.flatten()) == []
    lacking = [name for name, on in known.items() if not on]
    if lacking:
        assert missing_features(",".join("+" + n for n in lacking) + ",+sse2,-avx") == lacking


def test_features_cpuid_cannot_tell_go_to_the_kernel():
    # a name outside CPUID's table is looked up in /proc/cpuinfo under its kernel name
    for name in ("sm4", "sha512", "no-such-feature"):
        assert cpuid_has(name) is None
        flag = name.replace("-", "_")
        assert missing_features("+" + name) == ([] if flag in host_flags() or not host_flags() else [name])


# ---- signing ----

def test_signing_with_key_argument(tmp_path, signed, unsigned):
    s, u = _write(tmp_path / "s.so", signed), _write(tmp_path / "u.so", unsigned)
    assert wa.load(s).signed and not wa.load(u).signed  # no key in force: the digest is still checked
    check_works(wa.load(s, key=KEY))
    check_works(wa.load(s, key=KEY.decode()))
    with pytest.raises(wa.ArtifactError) as ei:
        wa.load(s, key=b"another key")
    assert str(ei.value) == f"{s}: {art.BAD_SIGNATURE}"
    with pytest.raises(wa.ArtifactError) as ei:
        wa.load(u, key=KEY)
    assert str(ei.value) == f"{u}: {art.UNSIGNED}"
    with pytest.raises(wa.ArtifactError, match=art.BAD_SIGNATURE):
        wa.Module.from_file(s, key="wrong")
    # re-signing a tampered body with another key does not pass for KEY
    assert refused(_reseal(signed, lambda b: None, b"forger"), KEY) == art.BAD_SIGNATURE


def test_signing_key_from_environment(tmp_path, monkeypatch, wasm, signed, unsigned):
    monkeypatch.setenv(trailer.KEY_ENV, KEY.decode())
    s, u = _write(tmp_path / "s.so", signed), _write(tmp_path / "u.so", unsigned)
    check_works(wa.load(s))
    with pytest.raises(wa.ArtifactError, match=art.UNSIGNED):
        wa.load(u)
    mod = wa.compile(wasm, cache=tmp_path / "cache")
    assert mod.signed
    check_works(mod)
    monkeypatch.setenv(trailer.KEY_ENV, "other")
    with pytest.raises(wa.ArtifactError, match=art.BAD_SIGNATURE):
        wa.load(mod.path)
    w = _write(tmp_path / "m.wasm", wasm)
    assert wa.Module.from_file(w, cache=tmp_path / "cache").signed  # compiled for the key now in force


def test_cache_key_covers_the_signing_key(tmp_path, wasm):
    d = tmp_path / "cache"
    plain = wa.compile(wasm, cache=d, opt_level=0)
    a = wa.compile(wasm, cache=d, opt_level=0, key="key A")
    b = wa.compile(wasm, cache=d, opt_level=0, key=b"key B")
    assert len({plain.path, a.path, b.path}) == 3
    assert not plain.signed and a.signed and b.signed
    assert wa.compile(wasm, cache=d, opt_level=0, key="key A").path == a.path
    for p in os.listdir(d):
        assert b"key A" not in (d / p).read_bytes() and b"key B" not in (d / p).read_bytes()


# ---- CPU targets ----

def test_generic_cpu_records_no_host_features(tmp_path, wasm):
    mod = wa.compile(wasm, cache=False, opt_level=0, cpu="generic")
    meta = mod.metadata
    assert meta["cpu_features"] == "" and meta["options"]["cpu"] == "generic"
    assert meta["cpu_name"] == ("x86-64" if art.machine_triple_arch() == "x86_64" else "generic")
    check_works(mod)
    native = wa.compile(wasm, cache=False, opt_level=0)
    assert native.metadata["cpu_name"] not in ("generic", "x86-64") or native.metadata["cpu_features"]
    out = tmp_path / "g.so"
    assert cli.main(["compile", str(_write(tmp_path / "m.wasm", wasm)), "-o", str(out), "--cpu", "generic"]) == 0
    assert wa.load(out).metadata["cpu_features"] == ""


# ---- cache ----

def test_concurrent_compiles_into_one_fresh_cache(tmp_path, wasm):
    d, go = tmp_path / "cache", tmp_path / "go"
    w = _write(tmp_path / "m.wasm", wasm)
    code = textwrap.dedent(f"""
        import os, sys, time, wasm_aot as wa
        import wasm_aot.codegen  # import llvmlite before the start signal, so the compiles overlap
        data = open({str(w)!r}, "rb").read()
        print("ready", flush=True)
        while not os.path.exists({str(go)!r}):
            time.sleep(0.0005)
        m = wa.compile(data, cache={str(d)!r}, opt_level=0)
        assert m.instantiate().func("add")(1, 2) == 3
        print(m.path)
    """)
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(8)]
    for p in procs:
        assert p.stdout.readline().strip() == "ready"
    go.touch()
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 8, [e for _, e in outs]
    files = [f for f in os.listdir(d) if not f.startswith("toolchain-")]  # toolchain_memo.py's file
    assert len(files) == 1 and files[0].endswith(".so"), files
    assert {o.strip() for o, _ in outs} == {str(d / files[0])}
    check_works(wa.load(d / files[0]))


def test_corrupted_cache_entry_is_removed_and_rebuilt(tmp_path, wasm):
    d = tmp_path / "cache"
    mod = wa.compile(wasm, cache=d, opt_level=0)
    good = open(mod.path, "rb").read()
    bad = bytearray(good)
    bad[len(bad) // 2] ^= 0x40
    _write(d / os.path.basename(mod.path), bytes(bad))
    (row,) = _describe(d)
    assert row.status == "invalid: " + art.CORRUPT
    again = wa.compile(wasm, cache=d, opt_level=0)
    assert again.path == mod.path
    check_works(again)
    assert art.verify(open(again.path, "rb").read(), "X").meta["wasm_sha256"] == hashlib.sha256(wasm).hexdigest()
    assert [f for f in os.listdir(d) if not f.startswith("toolchain-")] == [os.path.basename(mod.path)]


def _describe(d):
    from wasm_aot import cache
    return cache.describe_entries(str(d))


def test_cache_cli(tmp_path, monkeypatch, capsys, wasm):
    d = tmp_path / "cli-cache"
    monkeypatch.setenv("WASM_AOT_CACHE_DIR", str(d))
    assert cli.main(["cache", "dir"]) == 0
    assert capsys.readouterr().out.strip() == str(d)
    mod = wa.compile(wasm, opt_level=0)
    wa.compile(wasm, opt_level=0, key=KEY)
    stale, fresh = d / ".wa-dead.so", d / ".wa-busy.so"
    stale.write_bytes(b"x")
    fresh.write_bytes(b"x")
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    assert cli.main(["cache", "list"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["key", "size", "age", "wasm", "sha256", "status"]
    rows = [r.split(None, 4) for r in out[1:-1]]
    assert len(rows) == 2
    sha = hashlib.sha256(wasm).hexdigest()[:16]
    assert {r[3] for r in rows} == {sha}
    assert sorted(r[4] for r in rows) == ["ok", "ok, signed"]
    assert os.path.basename(mod.path)[:16] in {r[0] for r in rows}
    assert {int(r[1]) for r in rows} == {os.path.getsize(mod.path)}
    assert all(r[2].endswith("s") for r in rows)
    assert out[-1].startswith("2 artifact(s)")
    assert cli.main(["cache", "clean"]) == 0
    assert capsys.readouterr().out.startswith("removed 2 artifact(s)")
    assert os.listdir(d) == [fresh.name]  # a write in progress is left alone
    assert cli.main(["cache", "list"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("0 artifact(s)")


# ---- compile --timings and progress ----

PHASES = ("decode", "validate", "codegen", "optimise", "emit", "link")


def test_compile_timings(tmp_path, capsys, wasm):
    w, out = _write(tmp_path / "m.wasm", wasm), tmp_path / "m.so"
    assert cli.main(["compile", str(w), "-o", str(out), "-O1", "--timings"]) == 0
    err = capsys.readouterr().err.splitlines()
    got = {line.split()[0]: float(line.split()[1]) for line in err}
    assert set(PHASES) | {"total"} <= set(got)
    assert all(got[p] >= 0 for p in PHASES) and got["total"] >= sum(got[p] for p in PHASES)
    assert all(line.endswith(" ms") for line in err)
    assert "\x1b" not in "".join(err)  # not a terminal: no progress line
    check_works(wa.load(out))


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_compile_progress_on_a_terminal(tmp_path, monkeypatch, wasm):
    w, out = _write(tmp_path / "m.wasm", wasm), tmp_path / "m.so"
    tty = _Tty()
    monkeypatch.setattr(sys, "stderr", tty)
    assert cli.main(["compile", str(w), "-o", str(out), "-O0"]) == 0
    assert tty.getvalue() == ""  # a small module compiles too fast to need it
    monkeypatch.setattr(cli, "PROGRESS_MIN_BYTES", 0)
    assert cli.main(["compile", str(w), "-o", str(out), "-O0"]) == 0
    text = tty.getvalue()
    for p in PHASES:
        assert f"wasm-aot: {len(wasm) / 1024:.0f} KiB module: {p}..." in text
    assert text.endswith("\r\x1b[K")


# ---- deployment: no compiler, speed ----

def test_load_instantiate_call_without_llvmlite_or_elftools(tmp_path, signed):
    p = _write(tmp_path / "s.so", signed)
    code = textwrap.dedent(f"""
        import os, sys
        import wasm_aot as wa
        from wasm_aot import cache
        assert "llvmlite" not in sys.modules
        os.environ["WASM_AOT_SIGNING_KEY"] = {KEY.decode()!r}
        for mod in (wa.load({str(p)!r}), wa.Module.from_file({str(p)!r})):
            inst = mod.instantiate()
            assert inst.func("add")(2, 3) == 5 and inst.func("peek")(17) == ord("e")
        try:
            wa.load({str(p)!r}, key="wrong")
        except wa.ArtifactError:
            pass
        else:
            raise AssertionError("a wrong key was accepted")
        cache.describe_entries({str(tmp_path)!r})
        bad = [m for m in ("llvmlite", "elftools") if m in sys.modules]
        assert not bad, bad
        print("OK")
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "OK"


def test_many_artifacts_map_without_holding_file_descriptors(tmp_path):
    """No descriptor stays open per mapped artifact (a service may load any number), and distinct
    contents never alias one another."""
    def nfds() -> int:
        return len(os.listdir("/proc/self/fd"))

    paths = []
    for k in range(40):
        src = f'(module (func (export "k") (result i32) (i32.const {k})))'
        m = wa.compile(wat(src), cache=str(tmp_path / "c"))
        p = tmp_path / f"m{k}.so"
        m.save(p)
        paths.append(p)
    before = nfds()
    insts = [wa.load(p).instantiate() for p in paths]
    assert [i.func("k")() for i in insts] == list(range(40))
    assert nfds() <= before + 1


def test_the_mapper_survives_malformed_images(tmp_path):
    """runtime_c/image.c only ever sees verified bytes, but it bounds-checks what it reads anyway:
    mutated headers, segments and dynamic sections give an error or a mapping, never a crash."""
    import random

    from wasm_aot.loader.runtime import ffi, lib

    src = '(module (memory 1) (func (export "f") (param i32) (result i32) (i32.load (local.get 0))))'
    p = tmp_path / "m.so"
    wa.compile(wat(src), cache=False).save(p)
    good = p.read_bytes()
    st = ffi.new("wa_image_status *")

    def map_(data: bytes, name: bytes = b"wa_module"):
        img = lib.wa_image_open(ffi.NULL, data, len(data), 16, 0, 0, st)
        if img == ffi.NULL:
            return img
        try:
            sym = lib.wa_image_link(img, name, st)
            if sym != ffi.NULL:
                lib.wa_unmap_image(st.base, st.span)
            return sym
        finally:
            lib.wa_image_free(img)

    ranges = lib.wa_code_ranges()
    assert map_(good) != ffi.NULL
    assert map_(good[:100]) == ffi.NULL
    assert b"shared object" in ffi.string(st.err)
    assert map_(good, b"no_such_symbol") == ffi.NULL
    rng = random.Random(7)
    hot = 0x400  # headers, program headers and the first pages: where the mapper reads its structure
    refused = 0
    for _ in range(400):
        b = bytearray(good)
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(hot) if rng.random() < 0.7 else rng.randrange(len(b))
            b[i] = rng.randrange(256)
        refused += map_(bytes(b)) == ffi.NULL
    assert refused > 0
    assert lib.wa_code_ranges() == ranges  # every mapping undone, failed ones included


def test_serialize_and_deserialize(tmp_path):
    mod = wa.compile(wat('(module (func (export "f") (param i32) (result i32) (i32.mul (local.get 0) (i32.const 3))))'))
    data = mod.serialize()
    assert isinstance(data, bytes) and data[:4] == b"\x7fELF"
    again = wa.Module.deserialize(data)
    assert again.instantiate().func("f")(14) == 42 and again.sha256 == mod.sha256
    bad = bytearray(data)
    bad[len(bad) // 3] ^= 1
    with pytest.raises(wa.ArtifactError, match="<bytes>: corrupted artifact"):
        wa.Module.deserialize(bytes(bad))
    with pytest.raises(TypeError):
        wa.Module.deserialize("not bytes")


def test_every_load_path_of_a_large_artifact(tmp_path):
    """Past 256 KiB a file is no longer read whole: without a key its segments are mapped from the
    file (shared with the page cache), with a key they are read straight into a private copy, and
    bytes handed to deserialize are copied. Each path runs the code, checks every byte and gives
    back the file's exact bytes after linking (relocations undone)."""
    import random
    blob = random.Random(3).randbytes(300_000)
    esc = "".join(f"\\{b:02x}" for b in blob)
    src = (f'(module (memory (export "mem") 5) (data (i32.const 0) "{esc}")'
           ' (func (export "peek") (param i32) (result i32) (i32.load8_u (local.get 0))))')
    p = tmp_path / "big.so"
    compile_to_file(wat(src), str(p), opt_level=0, key=KEY)
    data = p.read_bytes()
    assert len(data) > 300_000
    spots = (0, 1, 4095, 123_457, len(blob) - 1)
    for how, load in (("mapped", lambda: wa.load(p)), ("copied", lambda: wa.load(p, key=KEY)),
                      ("bytes", lambda: wa.Module.deserialize(data, key=KEY))):
        mod = load()
        inst = mod.instantiate()
        assert [inst.func("peek")(i) for i in spots] == [blob[i] for i in spots], how
        assert mod.serialize() == data, how
    # corruption anywhere, through each path
    rodata = data.find(blob[1000:1100])
    for pos in (0x18, rodata, len(data) // 2, len(data) - 30):
        bad = bytearray(data)
        bad[pos] ^= 0x10
        q = tmp_path / f"bad-{pos}.so"
        q.write_bytes(bytes(bad))
        for load in (lambda: wa.load(q), lambda: wa.load(q, key=KEY), lambda: wa.Module.deserialize(bytes(bad))):
            with pytest.raises(wa.ArtifactError, match="corrupted artifact"):
                load()


@pytest.mark.parametrize("linker", ["ld", "cc"])
def test_wasm_bytes_are_never_executable(tmp_path, monkeypatch, linker):
    """Artifacts have one executable segment (code) and keep what the wasm module decides (data
    segments, metadata with its names) out of it, whichever linker built them (ld, or the cc driver
    when $CC is set)."""
    from elftools.elf.elffile import ELFFile

    if linker == "cc":
        monkeypatch.setenv("CC", "cc")
    marker = b"DATA-SEGMENT-BYTES"
    src = ('(module (memory (export "memory") 1) (data (i32.const 16) "' + marker.decode() + '") '
           '(func (export "peek") (param i32) (result i32) (i32.load8_u (local.get 0))) '
           '(func (export "near") (param f64) (result f64) (f64.nearest (local.get 0))))')
    p = tmp_path / "m.so"
    wa.compile(wat(src), cache=False).save(p)
    data = p.read_bytes()
    elf = ELFFile(io.BytesIO(data[:body_len(data)]))
    loads = [s for s in elf.iter_segments() if s["p_type"] == "PT_LOAD"]
    exe = [s for s in loads if s["p_flags"] & 1]
    assert len(exe) == 1 and not exe[0]["p_flags"] & 2  # one R+X segment, never writable
    lo, hi = exe[0]["p_offset"], exe[0]["p_offset"] + exe[0]["p_filesz"]
    meta = elf.get_section_by_name(metadata.SECTION)
    assert not lo <= meta["sh_offset"] < hi
    at = data.find(marker)
    assert at >= 0 and not lo <= at < hi
    inst = wa.load(p).instantiate()
    assert inst.func("peek")(16) == marker[0] and inst.func("near")(2.5) == 2.0


def test_a_fresh_cache_entry_removed_before_its_load_does_not_fail_the_compile(tmp_path, monkeypatch):
    """`wasm-aot cache clean` (or another process) removing the entry just written: the compile
    checks its own build before publishing it, so it still returns the module."""
    from wasm_aot import cache, compiler
    seal = compiler.seal_artifact

    def seal_then_clean(linked, out, record_len, key):
        seal(linked, out, record_len, key)
        cache.clean(str(tmp_path))
    monkeypatch.setattr(compiler, "seal_artifact", seal_then_clean)
    mod = wa.compile(wat('(module (func (export "f") (result i32) (i32.const 1)))'), cache=str(tmp_path))
    assert mod.instantiate().exports.f() == 1
    assert os.path.dirname(mod.path) == str(tmp_path) and mod.path.endswith(".so")


def test_an_empty_explicit_key_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("WASM_AOT_SIGNING_KEY", "the real key")
    w = wat('(module (func (export "f") (result i32) (i32.const 1)))')
    for empty in ("", b""):
        with pytest.raises(ValueError, match="empty signing key"):
            wa.compile(w, cache=str(tmp_path), key=empty)


def test_cache_clean_skips_what_is_not_an_entry(tmp_path):
    from wasm_aot import cache
    wa.compile(wat("(module)"), cache=str(tmp_path))
    (tmp_path / "a.so").mkdir()  # not ours: a directory that happens to end in .so
    assert cache.clean(str(tmp_path)) == 1
    assert (tmp_path / "a.so").is_dir() and cache.entries(str(tmp_path)) == []
