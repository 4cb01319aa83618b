"""Greedy tree reducer for a finding of fuzz.py:

    python tests/fuzz/reduce.py FINDINGS/seed_N.json CFG [SECONDS]   (CFG: O0, O2, O2b, ...)

writes seed_N.CFG.min.wat / .json beside the finding. Keeps the same first-divergence call (relative
to the calls kept), the same problem kinds and the same reference/wasm-aot trap."""
import json, os, re, sys, time, hashlib, base64, zlib
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wasmtime
import wasm_aot as wa
import fuzz
_cfg = wasmtime.Config()
_cfg.consume_fuel = True
fuzz.ENGINE = wasmtime.Engine(_cfg)
fuzz.FUEL = 50_000_000

TOK = re.compile(r'\(|\)|"(?:[^"\\]|\\.)*"|[^\s()"]+')


def parse(s):
    stack = [[]]
    for t in TOK.findall(s):
        if t == "(":
            stack.append([])
        elif t == ")":
            x = stack.pop()
            stack[-1].append(x)
        else:
            stack[-1].append(t)
    return stack[0]


def ser(x, ind=0):
    if isinstance(x, str):
        return x
    return "(" + " ".join(ser(y) for y in x) + ")"


def run_aot(wasm, calls, gl, opt, bc):
    mod = wa.compile(wasm, opt_level=opt, bounds_checks=bc, cache=False)
    inst = mod.instantiate({})
    mem = inst.exports["mem"]
    out = []
    for name, args, fuel in calls:
        inst.exports["fuel"].value = fuel
        rec = {}
        try:
            with wa.deadline(2.0):
                r = inst.exports[name](*args)
            r = [] if r is None else list(r) if isinstance(r, (tuple, list)) else [r]
            rec["r"] = [int(v) for v in r]
        except wa.Trap as e:
            rec["trap"] = e.code.name
        m = mem.read(0, mem.data_size)
        rec["mem"] = hashlib.sha1(m).hexdigest(); rec["msize"] = len(m)
        rec["memdump"] = base64.b64encode(zlib.compress(m)).decode()
        rec["g"] = [fuzz.fbits(t, inst.exports[n].value) if t in ("f32", "f64") else int(inst.exports[n].value) for n, t in gl]
        out.append(rec)
    return out


def meta_from(tree):
    """exports/globals from the (reduced) module tree"""
    mod = tree[0]
    gl, exps = [], []
    for f in mod:
        if isinstance(f, list) and f and f[0] == "global" and len(f) > 2 and isinstance(f[2], list) and f[2][:1] == ["export"]:
            ty = f[3][1] if isinstance(f[3], list) and f[3][0] == "mut" else f[3]
            gl.append((f[2][1].strip('"'), ty))
        if isinstance(f, list) and f and f[0] == "func" and len(f) > 1 and isinstance(f[1], list) and f[1][0] == "export":
            ps = next((y[1:] for y in f if isinstance(y, list) and y and y[0] == "param"), [])
            rs = next((y[1:] for y in f if isinstance(y, list) and y and y[0] == "result"), [])
            exps.append((f[1][1].strip('"'), ps, rs, ps, rs))
    return {"exports": exps, "globals": [t for n, t in gl if n != "fuel"]}, [g for g in gl if g[0] != "fuel"] + [("fuel", "i32")]


def signature(wat, calls, opt, bc):
    try:
        wasm = wasmtime.wat2wasm(wat)
        wasmtime.Module(fuzz.ENGINE, wasm)
    except Exception:
        return None
    tree = parse(wat)
    meta, gl = meta_from(tree)
    try:
        ref, mems, gl2 = fuzz.run_ref(wasm, meta, calls)
    except Exception:
        return None
    got = run_aot(wasm, calls, gl, opt, bc)
    f = fuzz.compare(ref, got, mems, calls, meta, gl, f"O{opt}{'b' if bc else ''}")
    if not f:
        return None
    kinds = tuple(sorted(set(p[0] for p in f["problems"])))
    return (f["call"], kinds, f["ref"].get("trap"), f["got"].get("trap"))


def nodes(tree, path=()):
    """all list nodes, with paths, preorder"""
    for i, x in enumerate(tree):
        if isinstance(x, list):
            yield path + (i,), x
            yield from nodes(x, path + (i,))


def get(tree, path):
    for i in path:
        tree = tree[i]
    return tree


def reduce(wat, calls, opt, bc, budget=600, out_path='cur'):
    target = signature(wat, calls, opt, bc)
    print("target", target, flush=True)
    assert target
    t0 = time.time()
    # drop calls
    i = 0
    while i < len(calls):
        c2 = calls[:i] + calls[i + 1:]
        s = signature(wat, c2, opt, bc)
        if s and s[1:] == target[1:]:
            calls, target = c2, s
        else:
            i += 1
    tree = parse(wat)
    state = {"target": target, "n": 0}

    def ok():
        state["n"] += 1
        s = signature(ser(tree[0]), calls, opt, bc)
        if s and s[1:] == state["target"][1:]:
            state["target"] = s
            open(out_path + ".wat", "w").write(ser(tree[0]))
            return True
        return False

    def ctype(node):
        h = node[0] if node and isinstance(node[0], str) else ""
        for t in ("i32", "i64", "f32", "f64"):
            if h.startswith(t + "."):
                if h[4:] in ("eq", "ne", "lt_s", "lt_u", "gt_s", "gt_u", "le_s", "le_u", "ge_s", "ge_u", "lt", "gt", "le", "ge", "eqz") or h.startswith(t + ".store"):
                    return ["i32.const", "0"] if not h.startswith(t + ".store") else None
                if "wrap" in h or "trunc_" in h and h.startswith("i32") or "reinterpret" in h:
                    return [h[:3] + ".const", "0"]
                return [t + ".const", "0"]
        return None

    def skippable(path, node):
        return len(path) == 1 or node[:1] in (["then"], ["else"], ["export"], ["result"], ["param"], ["type"], ["local"], ["mut"])

    # pass 1: chunk deletion among children of each list
    for rnd in range(100):
        progress = False
        for path, node in list(nodes(tree)):
            if time.time() - t0 > budget:
                break
            try:
                if get(tree, path) is not node:
                    continue
            except Exception:
                continue
            kids = [i for i, c in enumerate(node) if isinstance(c, list) and not skippable(path + (i,), c)]
            chunk = max(1, len(kids) // 2)
            while chunk >= 1 and len(kids) > 0:
                j = 0
                while j < len(kids):
                    sel = kids[j:j + chunk]
                    saved = [(i, node[i]) for i in sel]
                    for i in reversed(sel):
                        del node[i]
                    if ok():
                        progress = True
                        kids = [i for i, c in enumerate(node) if isinstance(c, list) and not skippable(path + (i,), c)]
                    else:
                        for i, c in saved:
                            node.insert(i, c)
                        j += chunk
                if chunk == 1:
                    break
                chunk //= 2
        # pass 2: replace a node by a const of its type or by one of its children
        for path, node in list(nodes(tree)):
            if time.time() - t0 > budget:
                break
            try:
                parent = get(tree, path[:-1]); idx = path[-1]
                if parent[idx] is not node:
                    continue
            except Exception:
                continue
            if skippable(path, node) or not isinstance(node[0], str) or node[0].endswith(".const"):
                continue
            cands = []
            c0 = ctype(node)
            if c0:
                cands.append(c0)
            cands += [c for c in node if isinstance(c, list) and c and c[0] not in ("then", "else", "result", "param", "local", "type")][:4]
            for c in cands:
                parent[idx] = c
                if ok():
                    progress = True
                    break
                parent[idx] = node
        print("round", rnd, state["n"], round(time.time() - t0), len(ser(tree[0])), flush=True)
        if not progress or time.time() - t0 > budget:
            break
    target = state["target"]
    return ser(tree[0]), calls, target


if __name__ == "__main__":
    d = json.load(open(sys.argv[1]))
    cfg = sys.argv[2]
    opt, bc = int(cfg[1]), cfg.endswith("b")
    f = next(x for x in d["findings"] if x["cfg"] == cfg)
    calls = d["calls"][: f["call"] + 1]
    out = sys.argv[1].replace(".json", f".{cfg}.min")
    wat, calls, target = reduce(d["wat"], calls, opt, bc, float(sys.argv[3]) if len(sys.argv) > 3 else 600, out)
    open(out + ".wat", "w").write(wat)
    json.dump({"calls": calls, "target": target}, open(out + ".json", "w"))
    print(wat); print(calls); print(target)
