"""wasm-aot side of one module: python aot_child.py JOB.json OUT.json
JOB: {"wasm": path, "configs": [[opt, bounds_checks], ...], "calls": [[export, args, fuel], ...],
      "globals": [names], "ref_mem": [sha per call]}  -> OUT: {config_key: [call results]}"""
import base64
import hashlib
import json
import sys
import zlib

import wasm_aot as wa
from wasm_aot.loader.values import f32_bits, f64_bits


def fbits(t, v):
    return f32_bits(v) if t == "f32" else f64_bits(v)


def run(job, opt, bc):
    data = open(job["wasm"], "rb").read()
    try:
        mod = wa.compile(data, opt_level=opt, bounds_checks=bc, cache=False)
    except Exception as e:  # compile error is a finding too
        return {"compile_error": repr(e)[:2000]}
    inst = mod.instantiate({})
    mem = inst.exports["mem"]
    out = []
    for i, (name, args, fuel) in enumerate(job["calls"]):
        inst.exports["fuel"].value = fuel
        rec = {}
        try:
            r = inst.exports[name](*args)
            if r is None:
                r = []
            elif not isinstance(r, (tuple, list)):
                r = [r]
            rec["r"] = [int(x) for x in r]
        except wa.Trap as e:
            rec["trap"] = e.code.name
        except Exception as e:
            rec["exc"] = repr(e)[:500]
        m = mem.read(0, mem.data_size)
        h = hashlib.sha1(m).hexdigest()
        rec["mem"] = h
        rec["msize"] = len(m)
        if job["ref_mem"][i] != h:
            rec["memdump"] = base64.b64encode(zlib.compress(m)).decode()
        g = []
        for gn, gt in job["globals"]:
            v = inst.exports[gn].value
            g.append(fbits(gt, v) if gt in ("f32", "f64") else int(v))
        rec["g"] = g
        out.append(rec)
    return out


def main():
    job = json.load(open(sys.argv[1]))
    res = {}
    for opt, bc in job["configs"]:
        res[f"O{opt}{'b' if bc else ''}"] = run(job, opt, bc)
        json.dump(res, open(sys.argv[2], "w"))  # partial results survive a crash


if __name__ == "__main__":
    main()
