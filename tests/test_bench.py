"""The benchmark corpus (shared/bench): each program, compiled through the public API at -O0 and
-O2, gives the same checksum as the native gcc -O2 build of the same C source."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

import wasm_aot as wa

BENCH = Path(os.environ.get("WASM_AOT_BENCH") or Path(__file__).resolve().parents[2] / "shared" / "bench")
PROGRAMS = sorted(p.stem for p in (BENCH / "wasm").glob("*.wasm")) if (BENCH / "wasm").is_dir() else []
OPT_LEVELS = [0, 2]

pytestmark = pytest.mark.skipif(not PROGRAMS, reason=f"no benchmark corpus at {BENCH}")


@pytest.fixture(scope="session")
def native_checksums(tmp_path_factory):
    """name -> checksum of the native build; each program is built and run once per session."""
    out = tmp_path_factory.mktemp("bench-native")
    cache: dict[str, int] = {}

    def get(name: str) -> int:
        if name not in cache:
            cc = os.environ.get("CC_NATIVE", "gcc")
            if shutil.which(cc) is None:
                pytest.skip(f"no native C compiler ({cc})")
            exe = out / name
            subprocess.run([cc, "-O2", "-o", str(exe), str(BENCH / "src" / f"{name}.c"),
                            str(BENCH / "native" / "main.c"), "-lm"], check=True, capture_output=True)
            p = subprocess.run([str(exe)], check=True, capture_output=True, text=True)
            m = re.search(r"checksum=([0-9a-fA-F]+)", p.stdout)
            assert m, f"no checksum in the native output of {name}: {p.stdout!r}"
            cache[name] = int(m.group(1), 16)
        return cache[name]
    return get


@pytest.fixture(scope="session")
def bench_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("bench-cache")


@pytest.mark.parametrize("opt_level", OPT_LEVELS, ids=[f"O{o}" for o in OPT_LEVELS])
@pytest.mark.parametrize("name", PROGRAMS)
def test_checksum_matches_native(name, opt_level, native_checksums, bench_cache):
    wasm = (BENCH / "wasm" / f"{name}.wasm").read_bytes()
    cache = bench_cache / f"{name}-O{opt_level}"
    mod = wa.compile(wasm, opt_level=opt_level, cache=cache)
    assert {e.name for e in mod.exports} >= {"run", "memory"}
    assert mod.imports == []
    inst = mod.instantiate()
    run = inst.func("run", wa.FuncType([], [wa.I64]))
    got = run() & 0xFFFFFFFFFFFFFFFF  # i64 results come back signed
    want = native_checksums(name)
    assert got == want, f"{name} -O{opt_level}: wasm checksum {got:016x}, native {want:016x}"

    # the cache: compiling the same bytes with the same options again is a hit
    before = sorted(os.listdir(cache))
    assert len([f for f in before if f.endswith(".so")]) == 1
    mod2 = wa.compile(wasm, opt_level=opt_level, cache=cache)
    assert os.path.samefile(mod2.path, mod.path)
    assert os.path.dirname(os.path.abspath(mod2.path)) == os.path.abspath(cache)
    assert sorted(os.listdir(cache)) == before

    # run() resets its state: a second call on the module loaded from the cache agrees
    if opt_level == 2:
        assert mod2.instantiate().func("run")() & 0xFFFFFFFFFFFFFFFF == want
