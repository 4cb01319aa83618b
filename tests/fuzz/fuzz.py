"""Differential fuzzer: wasmtime (the reference) against wasm-aot at several opt levels.

    python tests/fuzz/fuzz.py WORKER NWORKERS SECONDS [START_SEED]

Worker WORKER of NWORKERS takes seeds START_SEED + WORKER, + NWORKERS, ... for SECONDS. Each seed is a
random valid module (gen.py) and a list of calls, run in wasmtime (in this process) and in wasm-aot
(-O0 and -O2, sometimes -O1, -O3 and bounds checks; in a child process, aot_child.py, so that a crash
is a finding); results, trap codes, the whole memory and every global are compared after each call.
Output in $WASM_AOT_FUZZ_DIR (default ./fuzz-out): findings/seed_N.json, log.WORKER. A finding that is
README's known deviation (state after an out-of-bounds trap at -O1+, where the bounds-checked build
agrees) is marked "known"; "known?" is an older guess (the state is that before the call); "snan?" is
one whose every difference is a quiet NaN of the reference that is signalling here (README's
signalling-NaN deviation, or a missing quieting: check by hand).
Needs the wasmtime package (the bench extra).
"""
import base64, hashlib, json, os, random, subprocess, sys, time, zlib, traceback
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import wasmtime
import gen
from wasm_aot.loader.values import f32_bits, f64_bits

D = os.path.abspath(os.environ.get("WASM_AOT_FUZZ_DIR", "fuzz-out"))
FIND = f"{D}/findings"
os.makedirs(FIND, exist_ok=True)
os.makedirs(f"{D}/tmp", exist_ok=True)
ENGINE = wasmtime.Engine()
FUEL = 0
INIT = {}
TRAPMAP = {"MEMORY_OUT_OF_BOUNDS": "MEMORY_OUT_OF_BOUNDS", "TABLE_OUT_OF_BOUNDS": "TABLE_OUT_OF_BOUNDS",
           "INDIRECT_CALL_TO_NULL": "UNINITIALIZED_ELEMENT", "BAD_SIGNATURE": "INDIRECT_CALL_TYPE_MISMATCH",
           "INTEGER_OVERFLOW": "INT_OVERFLOW", "INTEGER_DIVISION_BY_ZERO": "INT_DIV_BY_ZERO",
           "BAD_CONVERSION_TO_INTEGER": "BAD_CONVERSION", "UNREACHABLE": "UNREACHABLE",
           "STACK_OVERFLOW": "STACK_OVERFLOW"}
MASK = {"i32": 0xFFFFFFFF, "i64": 0xFFFFFFFFFFFFFFFF}


def fbits(t, v):
    return f32_bits(v) if t == "f32" else f64_bits(v)


def isnan_bits(t, b):
    return (b & 0x7FFFFFFF) > 0x7F800000 if t == "f32" else (b & ((1 << 63) - 1)) > 0x7FF0000000000000


def v128_arg(r):
    """a v128 argument as two signed i64: edge lanes of a random shape, or random bits"""
    c = r.random()
    if c < 0.35:
        lanes = [r.choice(gen.F32_EDGE) if r.random() < 0.7 else r.getrandbits(32) for _ in range(4)]
    elif c < 0.55:
        lanes = [r.choice(gen.I32_EDGE) if r.random() < 0.7 else r.getrandbits(32) for _ in range(4)]
    elif c < 0.8:
        lanes = [r.choice(gen.F64_EDGE) if r.random() < 0.7 else r.getrandbits(64) for _ in range(2)]
    else:
        lanes = [r.getrandbits(64) for _ in range(2)]
    if len(lanes) == 4:
        lanes = [lanes[0] | lanes[1] << 32, lanes[2] | lanes[3] << 32]
    return [v - (1 << 64) if v >= 1 << 63 else v for v in lanes]


def make_calls(r, meta):
    calls = []
    for _ in range(r.randint(5, 12)):
        name, wp, wr, op, orr = r.choice(meta["exports"])
        args = []
        for t in op:
            if t == "v128":  # two i64 args: lanes 0 and 1 (see gen.py)
                args += v128_arg(r)
                continue
            if t == "i32":
                v = r.choice(gen.I32_EDGE) if r.random() < 0.7 else r.getrandbits(32)
            elif t == "i64":
                v = r.choice(gen.I64_EDGE) if r.random() < 0.7 else r.getrandbits(64)
            elif t == "f32":
                v = r.choice(gen.F32_EDGE) if r.random() < 0.8 else r.getrandbits(32)
            else:
                v = r.choice(gen.F64_EDGE) if r.random() < 0.8 else r.getrandbits(64)
            w = 32 if t in ("i32", "f32") else 64
            if v >= 1 << (w - 1):
                v -= 1 << w
            args.append(v)
        calls.append([name, args, r.choice([0, 1, 2, 3, 5, 8, 13, 30])])
    return calls


def run_ref(wasm, meta, calls):
    store = wasmtime.Store(ENGINE)
    if FUEL:
        store.set_fuel(FUEL)
    inst = wasmtime.Instance(store, wasmtime.Module(ENGINE, wasm), [])
    ex = inst.exports(store)
    mem = ex["mem"]
    out, mems = [], []
    gl = [(f"g{i}", t) for i, t in enumerate(meta["globals"])] + [("fuel", "i32")]
    INIT["mem"] = mem.read(store, 0, mem.data_len(store))
    INIT["g"] = [fbits(t, ex[n].value(store)) if t in ("f32", "f64") else int(ex[n].value(store)) for n, t in gl]
    for name, args, fuel in calls:
        ex["fuel"].set_value(store, fuel)
        rec = {}
        try:
            r = ex[name](store, *args)
            if r is None:
                r = []
            elif not isinstance(r, (tuple, list)):
                r = [r]
            rec["r"] = [int(x) for x in r]
        except wasmtime.Trap as e:
            rec["trap"] = TRAPMAP.get(e.trap_code.name, "?" + str(e.trap_code))
        except wasmtime.WasmtimeError as e:
            rec["trap"] = "?" + str(e)[:200]
        m = mem.read(store, 0, mem.data_len(store))
        mems.append(m)
        rec["mem"] = hashlib.sha1(m).hexdigest()
        rec["msize"] = len(m)
        rec["g"] = [fbits(t, ex[n].value(store)) if t in ("f32", "f64") else int(ex[n].value(store)) for n, t in gl]
        out.append(rec)
    return out, mems, gl


def diff_ranges(a, b, limit=8):
    out = []
    i, n = 0, min(len(a), len(b))
    while i < n and len(out) < limit:
        if a[i] != b[i]:
            j = i
            while j < n and a[j] != b[j]:
                j += 1
            out.append((i, a[i:j][:16].hex(), b[i:j][:16].hex()))
            i = j
        else:
            i += 1
    return out


Q32, S32 = (0x7FC00000).to_bytes(4, "little"), (0x7F800001).to_bytes(4, "little")
Q64, S64 = (0x7FF8000000000000).to_bytes(8, "little"), (0x7FF0000000000001).to_bytes(8, "little")


def snan_only(a, b):
    """every byte where a and b differ lies in a normalised NaN that is quiet in a (the reference)
    and signalling in b: the signature of a signalling NaN let through unquieted (README's
    deviation when LLVM folds an identity it finds by propagation, or a bug)"""
    if len(a) != len(b) or a == b:
        return False
    for i in range(len(a)):
        if a[i] != b[i] and not any(a[p:p + len(q)] == q and b[p:p + len(q)] == sn
                                    for q, sn in ((Q32, S32), (Q64, S64))
                                    for p in range(max(0, i - len(q) + 1), i + 1)):
            return False
    return True


def compare(ref, got, mems, calls, meta, gl, cfg):
    """first divergence in one config, or None"""
    prev = None
    for i, (a, b) in enumerate(zip(ref, got)):
        name = calls[i][0]
        exp = next(e for e in meta["exports"] if e[0] == name)
        problems = []
        if "exc" in b:
            problems.append(("exception", b["exc"]))
        if a.get("trap") != b.get("trap"):
            problems.append(("trap", a.get("trap"), b.get("trap")))
        elif "r" in a:
            ra = [x & MASK[t] for x, t in zip(a["r"], exp[2])]
            rb = [x & MASK[t] for x, t in zip(b.get("r", []), exp[2])]
            if ra != rb:
                problems.append(("result", [hex(x) for x in ra], [hex(x) for x in rb]))
        for k, ((gn, gt), x, y) in enumerate(zip(gl, a["g"], b["g"])):
            if gt in MASK:
                if x & MASK[gt] != y & MASK[gt]:
                    problems.append(("global", gn, hex(x & MASK[gt]), hex(y & MASK[gt])))
            elif x != y and not (isnan_bits(gt, x) and isnan_bits(gt, y)):
                problems.append(("global", gn, hex(x), hex(y)))
        kind = "bug"
        if a["mem"] != b["mem"]:
            mb = zlib.decompress(base64.b64decode(b["memdump"])) if "memdump" in b else b""
            dr = diff_ranges(mems[i], mb)
            problems.append(("memory", a["msize"], b["msize"], dr))
        if "trap" in a and a.get("trap") == b.get("trap") and cfg not in ("O0", "O0b") and problems:
            # known deviation: after a trap at -O1+, aot lacks some writes (its state = before the call)
            known = True
            for p in problems:
                if p[0] == "memory":
                    before = prev if prev is not None else INIT.get("mem")
                    if before is None or len(before) != len(mb) or not all(
                            mb[j] == before[j] for j in range(len(mb)) if mb[j] != mems[i][j]):
                        known = False
                elif p[0] == "global":
                    k = [g[0] for g in gl].index(p[1])
                    before = ref[i - 1]["g"][k] if i else INIT["g"][k]
                    if before is None or int(p[3], 16) != before & MASK.get(gl[k][1], (1 << 64) - 1):
                        known = False
                else:
                    known = False
            if known:
                kind = "known?"
        if problems and kind == "bug" and all(p[0] in ("result", "memory", "global") for p in problems):
            ok = True
            for p in problems:
                if p[0] == "memory":
                    ok &= snan_only(mems[i], mb)
                elif p[0] == "result":
                    ws = [4 if t == "i32" else 8 for t in exp[2]]
                    ok &= snan_only(b"".join(int(x, 16).to_bytes(w, "little") for x, w in zip(p[1], ws)),
                                    b"".join(int(x, 16).to_bytes(w, "little") for x, w in zip(p[2], ws)))
                else:
                    w = 4 if gl[[g[0] for g in gl].index(p[1])][1] in ("i32", "f32") else 8
                    ok &= snan_only(int(p[2], 16).to_bytes(w, "little"), int(p[3], 16).to_bytes(w, "little"))
            if ok:
                kind = "snan?"
        if problems:
            return {"call": i, "name": name, "args": calls[i][1], "fuel": calls[i][2], "problems": problems,
                    "kind": kind, "ref": {k: v for k, v in a.items() if k != "memdump"},
                    "got": {k: v for k, v in b.items() if k != "memdump"}}
        prev = mems[i]
    if len(got) != len(ref):
        return {"problems": [("ncalls", len(ref), len(got))], "kind": "bug"}
    return None


def classify(findings, ran_exact):
    """A guard-page build (-O1+, no bounds checks) whose only difference is the memory or globals
    after the same trap, where the bounds-checked -O2 build agrees with the reference up to that
    call, shows README's known deviation (state after an out-of-bounds trap): kind "known"."""
    exact = next((f for f in findings if f.get("cfg") == "O2b"), None)
    for f in findings:
        if f.get("cfg") not in ("O1", "O2", "O3") or "call" not in f:
            continue
        state_only = all(p[0] in ("global", "memory") for p in f["problems"])
        same_trap = "trap" in f["ref"] and f["ref"].get("trap") == f["got"].get("trap")
        if ran_exact and state_only and same_trap and (exact is None or exact.get("call", -1) > f["call"]):
            f["kind"] = "known"


def one(seed, log):
    r = random.Random(seed * 7919 + 1)
    size = r.choice([0.6, 1.0, 1.0, 1.4])
    wat, meta = gen.gen_module(seed, size)
    try:
        wasm = wasmtime.wat2wasm(wat)
        wasmtime.Module(ENGINE, wasm)
    except Exception as e:
        log.write(f"seed {seed}: INVALID {str(e)[:300]}\n")
        return "invalid"
    calls = make_calls(r, meta)
    ref, mems, gl = run_ref(wasm, meta, calls)
    # -O2 with bounds checks always: its state after a trap is exact, so it tells the documented
    # trap-state deviation of the guard-page builds from a bug (see classify)
    configs = [[0, False], [2, False], [2, True]]
    if r.random() < 0.3:
        configs.append([3, False])
    if r.random() < 0.15:
        configs.append([1, False])
    if r.random() < 0.1:
        configs.append([0, True])
    wpath = f"{D}/tmp/w{seed}.wasm"
    jpath = f"{D}/tmp/j{seed}.json"
    opath = f"{D}/tmp/o{seed}.json"
    open(wpath, "wb").write(wasm)
    json.dump({"wasm": wpath, "configs": configs, "calls": calls, "globals": gl,
               "ref_mem": [x["mem"] for x in ref]}, open(jpath, "w"))
    try:
        p = subprocess.run([sys.executable, f"{HERE}/aot_child.py", jpath, opath], capture_output=True, text=True,
                           timeout=300)
        rc, err = p.returncode, p.stderr[-3000:]
    except subprocess.TimeoutExpired:
        rc, err = "timeout", ""
    res = json.load(open(opath)) if os.path.exists(opath) else {}
    findings = []
    if rc != 0:
        findings.append({"cfg": "child", "problems": [("crash", rc, err)], "kind": "bug",
                         "done": list(res)})
    for key, got in res.items():
        if isinstance(got, dict):
            findings.append({"cfg": key, "problems": [("compile_error", got["compile_error"])], "kind": "bug"})
            continue
        f = compare(ref, got, mems, calls, meta, gl, key)
        if f:
            f["cfg"] = key
            findings.append(f)
    classify(findings, isinstance(res.get("O2b"), list))
    for p_ in (wpath, jpath, opath):
        if os.path.exists(p_):
            os.remove(p_)
    if findings:
        json.dump({"seed": seed, "size": size, "wat": wat, "calls": calls, "configs": configs,
                   "ref": ref, "findings": findings}, open(f"{FIND}/seed_{seed}.json", "w"), indent=1, default=str)
        kinds = ",".join(f"{f['cfg']}:{f['kind']}:{f['problems'][0][0]}" for f in findings)
        log.write(f"seed {seed}: FIND {kinds}\n")
        return "find"
    ntrap = sum("trap" in x for x in ref)
    log.write(f"seed {seed}: ok cfg={[c[0] for c in configs]} calls={len(calls)} traps={ntrap}\n")
    return "ok"


def main():
    w, nw, secs = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    start = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    t0 = time.time()
    seed = start + w
    stats = {}
    with open(f"{D}/log.{w}", "a", buffering=1) as log:
        while time.time() - t0 < secs:
            try:
                s = one(seed, log)
            except Exception:
                log.write(f"seed {seed}: HARNESS {traceback.format_exc()[-800:]}\n")
                s = "harness"
            stats[s] = stats.get(s, 0) + 1
            seed += nw
        log.write(f"DONE {stats}\n")


if __name__ == "__main__":
    main()
