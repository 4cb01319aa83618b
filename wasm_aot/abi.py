"""The one definition of the VM structures shared by generated code, the C runtime and the loader.

runtime_c/build.py turns STRUCTS and RT_FUNCS into C declarations; codegen turns them into LLVM
types and field indices; tests/test_abi.py proves the C compiler agrees (ffi.offsetof).
All structures use natural alignment on LP64, with every field 4 or 8 bytes wide.

Vocabulary (one name per wasm concept, used everywhere):
  ctx       the vmctx of one instance (wa_ctx); the first argument of every wasm function
  funcref   a function reference (wa_funcref): code pointer, callee ctx, canonical type id
  hostfunc  a Python function imported by wasm (wa_hostfunc); its `ctx` in a funcref
  slot      a 16-byte value cell; arguments and results cross into and out of wasm in slots,
            and every global lives in one
"""
from __future__ import annotations

# 4: a function's several results return their floats as integers (codegen/layout.py)
# 5: the module descriptor holds relative offsets, not pointers (no relocations to apply)
ABI_VERSION = 5
SLOT_SIZE = 16
WASM_PAGE = 65536
# Where an artifact's read-only data starts when its code is smaller than this: a fixed distance, so
# that the code arena (runtime_c/code_arena.c) can keep code and data in regions of their own.
IMAGE_DATA_AT = 0x40000
# A 32-bit memory reserves 4 GiB for the index, 4 GiB for a 32-bit static offset, and a little
# more for the access width: no generated load or store needs a bounds check.
GUARDED_RESERVATION = (8 << 30) + WASM_PAGE

_SIZES = {"uint32_t": 4, "int32_t": 4}  # everything else is 8 bytes (pointers, 64-bit ints)

STRUCTS: dict[str, list[tuple[str, str]]] = {
    "wa_funcref": [
        ("code", "void *"),
        ("ctx", "void *"),
        ("type_id", "uint32_t"),
        ("_pad", "uint32_t"),
    ],
    "wa_memory": [
        ("base", "uint8_t *"),
        ("size", "uint64_t"),  # current length in bytes
        ("max_pages", "uint64_t"),
        ("reserved", "uint64_t"),  # bytes of address space mapped (PROT_NONE past `size`)
    ],
    "wa_table": [
        ("elems", "void **"),  # funcref tables hold wa_funcref *, externref tables host handles
        ("size", "uint32_t"),
        ("max", "uint32_t"),  # 0xFFFFFFFF: no maximum
        ("capacity", "uint32_t"),
        ("kind", "uint32_t"),  # the ValType byte of its elements
    ],
    "wa_hostfunc": [
        ("call", "void *"),  # void (*)(wa_hostfunc *, uint8_t *slots); longjmps on a trap
        ("handle", "void *"),  # the Python side's key for the callable
        ("type_id", "uint32_t"),
        ("_pad", "uint32_t"),
    ],
    "wa_ctx": [
        ("stack_limit_tls", "intptr_t"),  # thread pointer + this = the thread's stack limit (runtime.c)
        ("mem0_base", "uint8_t *"),  # constant for the memory's lifetime (it never moves)
        ("mem0", "wa_memory *"),
        ("globals", "uint8_t **"),  # one slot pointer per global (imported ones point elsewhere)
        ("funcs", "wa_funcref *"),  # one funcref per function index, imports first
        ("tables", "wa_table **"),
        ("type_ids", "uint32_t *"),  # canonical type id per module type index
        ("rt", "void *"),  # const wa_rt *: the runtime helpers below
        ("data_ptrs", "uint8_t **"),  # per data segment
        ("data_sizes", "uint32_t *"),  # per data segment; 0 once dropped
        ("elem_items", "void ***"),  # per element segment: its evaluated references
        ("elem_sizes", "uint32_t *"),  # per element segment; 0 once dropped
        ("instance", "void *"),  # the loader's handle for this instance (host calls with context)
    ],
    # The artifact's one exported symbol, `wa_module`: everything the loader needs from the code.
    # Each array field is the offset from that field to an array of int64 offsets, each from its own
    # entry to what it refers to (0: no array). Offsets need no relocation: the linker resolves them,
    # and linking an image writes nothing to its pages (runtime.c: wa_module_addresses).
    "wa_module_desc": [
        ("abi_version", "uint64_t"),
        ("nfuncs", "uint32_t"),  # the arrays' lengths (the loader checks them against the metadata)
        ("ntypes", "uint32_t"),
        ("nshims", "uint32_t"),
        ("ndatas", "uint32_t"),
        ("funcs", "int64_t"),  # per defined function: its code
        ("tramps", "int64_t"),  # per type index: void tramp(void *ctx, void *code, uint8_t *slots)
        ("shims", "int64_t"),  # per imported function: wasm ABI -> wa_hostfunc.call
        ("datas", "int64_t"),  # per data segment: its bytes
    ],
}

# Runtime helpers generated code calls through ctx->rt (a wa_rt of function pointers, in order).
# (name, C return type, C parameter types); all take the caller's ctx first.
RT_FUNCS: list[tuple[str, str, list[str]]] = [
    ("trap", "void", ["uint32_t"]),  # noreturn
    ("memory_grow", "uint32_t", ["uint32_t"]),
    ("memory_fill", "void", ["uint32_t", "uint32_t", "uint32_t"]),
    ("memory_copy", "void", ["uint32_t", "uint32_t", "uint32_t"]),
    ("memory_init", "void", ["uint32_t", "uint32_t", "uint32_t", "uint32_t"]),  # seg, dst, src, n
    ("data_drop", "void", ["uint32_t"]),
    ("table_grow", "uint32_t", ["uint32_t", "void *", "uint32_t"]),  # table, init, delta
    ("table_fill", "void", ["uint32_t", "uint32_t", "void *", "uint32_t"]),  # table, dst, val, n
    ("table_copy", "void", ["uint32_t", "uint32_t", "uint32_t", "uint32_t", "uint32_t"]),  # dt, st, d, s, n
    ("table_init", "void", ["uint32_t", "uint32_t", "uint32_t", "uint32_t", "uint32_t"]),  # t, seg, d, s, n
    ("elem_drop", "void", ["uint32_t"]),
]


def field_size(ctype: str) -> int:
    return _SIZES.get(ctype, 8)


def layout(struct: str) -> dict[str, int]:
    """Byte offset of every field of `struct`."""
    offsets, off = {}, 0
    for name, ctype in STRUCTS[struct]:
        size = field_size(ctype)
        off = (off + size - 1) // size * size
        offsets[name] = off
        off += size
    return offsets


def sizeof(struct: str) -> int:
    fields = STRUCTS[struct]
    name, ctype = fields[-1]
    end = layout(struct)[name] + field_size(ctype)
    return (end + 7) // 8 * 8


def field_index(struct: str, name: str) -> int:
    return [f for f, _ in STRUCTS[struct]].index(name)


def rt_index(name: str) -> int:
    return [f for f, _, _ in RT_FUNCS].index(name)


def c_declarations() -> str:
    """C typedefs for STRUCTS and the wa_rt table (used by runtime_c/build.py)."""
    out = ["typedef struct wa_memory wa_memory;", "typedef struct wa_table wa_table;",
           "typedef struct wa_funcref wa_funcref;", "typedef struct wa_ctx wa_ctx;",
           "typedef struct wa_hostfunc wa_hostfunc;", "typedef struct wa_module_desc wa_module_desc;"]
    for struct, fields in STRUCTS.items():
        out.append(f"struct {struct} {{")
        out += [f"    {ctype}{'' if ctype.endswith('*') else ' '}{name};" for name, ctype in fields]
        out.append("};")
    out.append("typedef struct wa_rt {")
    for name, ret, params in RT_FUNCS:
        out.append(f"    {ret} (*{name})({', '.join(['wa_ctx *'] + params)});")
    out.append("} wa_rt;")
    return "\n".join(out)
