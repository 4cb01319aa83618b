"""The code arena (runtime_c/code_arena.c): small artifacts run from shared pages of a dual-mapped
memfd, freed runs are reused, $WASM_AOT_CODE_ARENA=0 turns it off, and a fork never lets one
process overwrite code the other runs. Each case runs in a new interpreter: the arena is per process."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from conftest import wat

import wasm_aot as wa


def _module(tmp_path, value: int) -> str:
    """An artifact whose export f returns `value` and whose export oob traps."""
    p = tmp_path / f"m{value}.so"
    wa.compile(wat(f'(module (memory 1) (func (export "f") (result i32) i32.const {value})'
                   f' (func (export "oob") (result i32) i32.const -4 i32.load))')).save(p)
    return str(p)


PRELUDE = """
import gc, os, sys
import wasm_aot as wa
from wasm_aot.loader.runtime import ffi, lib

def stats():
    pages, chunks = ffi.new("size_t *"), ffi.new("size_t *")
    lib.wa_code_arena_stats(pages, chunks)
    return pages[0], chunks[0]

def traps(inst):
    try:
        inst.exports.oob()
    except wa.Trap as e:
        return e.code == wa.TrapCode.MEMORY_OUT_OF_BOUNDS
    return False
"""


def _run(script: str, *args: str, env: dict | None = None) -> str:
    r = subprocess.run([sys.executable, "-c", PRELUDE + textwrap.dedent(script), *args], capture_output=True,
                       text=True, timeout=120,
                       env={**{k: v for k, v in os.environ.items() if k != "WASM_AOT_CODE_ARENA"}, **(env or {})})
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_small_images_run_from_the_arena_and_give_their_pages_back(tmp_path):
    a, b, c = _module(tmp_path, 1), _module(tmp_path, 2), _module(tmp_path, 3)
    out = _run("""
        first = wa.load(sys.argv[3]).instantiate()
        assert stats() == (0, 0) and first.exports.f() == 3  # the first image maps its own pages
        x = wa.load(sys.argv[1]).instantiate()
        one = stats()
        y = wa.load(sys.argv[2]).instantiate()
        two = stats()
        assert one[0] > 0 and two[0] == 2 * one[0] and two[1] == 1, (one, two)
        assert x.exports.f() == 1 and y.exports.f() == 2 and traps(x) and traps(y)
        del x; gc.collect()
        assert stats()[0] == one[0]
        # the freed run is reused (zeroed, then filled) by the next image
        z = wa.load(sys.argv[1]).instantiate()
        assert stats() == two and z.exports.f() == 1 and y.exports.f() == 2 and traps(z)
        del y, z; gc.collect()
        print(stats()[0])
    """, a, b, c)
    assert out.split() == ["0"]


def test_the_arena_can_be_turned_off(tmp_path):
    a, b = _module(tmp_path, 7), _module(tmp_path, 8)
    out = _run("""
        x, y = wa.load(sys.argv[1]).instantiate(), wa.load(sys.argv[2]).instantiate()
        assert x.exports.f() == 7 and y.exports.f() == 8 and traps(x) and traps(y)
        print(*stats())
    """, a, b, env={"WASM_AOT_CODE_ARENA": "0"})
    assert out.split() == ["0", "0"]


def test_a_fork_never_reuses_pages_the_other_process_runs(tmp_path):
    """Without sealing at fork, the parent's next image would land on the pages of the image it just
    dropped, which the child still runs (the chunk's pages are shared): the child's f would then
    return the parent's new value, or crash."""
    a, b, c = _module(tmp_path, 1), _module(tmp_path, 2), _module(tmp_path, 3)
    out = _run("""
        first = wa.load(sys.argv[4]).instantiate()  # (the first image is not in the arena)
        x = wa.load(sys.argv[1]).instantiate()
        assert stats()[0] > 0
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(w)
            os.read(r, 1)  # the parent has dropped x's image and loaded another
            y = wa.load(sys.argv[2]).instantiate()
            ok = x.exports.f() == 1 and y.exports.f() == 2 and traps(x) and traps(y)
            os._exit(0 if ok else 1)
        os.close(r)
        del x; gc.collect()
        z = wa.load(sys.argv[3]).instantiate()
        assert z.exports.f() == 3 and traps(z)
        os.write(w, b"x")
        _, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status), stats()[1])
    """, a, b, c, _module(tmp_path, 4))
    # the sealed chunk went when its last image did: the parent has only its new chunk
    assert out.split() == ["0", "1"]


def test_dropping_an_image_leaves_its_neighbours_traps_alone(tmp_path):
    """An arena image's span (code, gap, data) reaches over the code of the images after it in its
    chunk: unmapping it once forgot their code ranges too, and their next trap crashed the process."""
    a, b = _module(tmp_path, 1), _module(tmp_path, 2)
    out = _run("""
        first = wa.load(sys.argv[3]).instantiate()
        x = wa.load(sys.argv[1]).instantiate()
        y = wa.load(sys.argv[2]).instantiate()
        del x; gc.collect()
        print(traps(y), y.exports.f())
    """, a, b, _module(tmp_path, 3))
    assert out.split() == ["True", "2"]


def test_a_fork_strands_no_empty_chunk(tmp_path):
    """A chunk empty at a fork was sealed, and no free ever came to unmap it: a chunk leaked per fork
    (a large compile forks its workers, so per compile too). Empty chunks now go at the fork."""
    a, b = _module(tmp_path, 1), _module(tmp_path, 2)
    out = _run("""
        first = wa.load(sys.argv[2]).instantiate()
        for _ in range(30):
            x = wa.load(sys.argv[1]).instantiate()
            assert x.exports.f() == 1 and stats()[0] > 0
            del x; gc.collect()
            pid = os.fork()
            if pid == 0:
                os._exit(0)
            os.waitpid(pid, 0)
        print(*stats())
    """, a, b)
    assert out.split() == ["0", "0"]


def test_dropping_every_image_keeps_at_most_one_empty_chunk(tmp_path):
    """Empty chunks used to stay until the next fork: a process that loaded 300 modules once kept all
    five chunks (and their pages) after dropping them. Now one empty chunk stays, for the next image."""
    paths = [_module(tmp_path, v) for v in range(70)]
    out = _run("""
        first = wa.load(sys.argv[-1]).instantiate()
        xs = [wa.load(p).instantiate() for p in sys.argv[1:-1]]
        peak = stats()
        assert all(x.exports.f() == v for v, x in enumerate(xs))
        del xs; gc.collect()
        print(peak[1] >= 2, *stats())
    """, *paths, _module(tmp_path, 999))
    assert out.split() == ["True", "0", "1"]
