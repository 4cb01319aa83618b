"""cffi build of the C runtime into wasm_aot._runtime (run by setup.py at install)."""
from __future__ import annotations

import importlib.util
import pathlib

from cffi import FFI

HERE = pathlib.Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("_wa_abi", HERE.parent / "wasm_aot" / "abi.py")
abi = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(abi)

DECLS = abi.c_declarations()

CDEF = DECLS + """
extern "Python" int wa_py_host_call(void *handle, uint8_t *slots);

int wa_install_handlers(void);
int wa_reassert_handlers(void);
int wa_interrupt(unsigned long thread);
int wa_interrupt_deeper(unsigned long thread, int depth);
int wa_entry_depth(void);
int wa_interrupt_signal(void);
typedef struct wa_image wa_image;
typedef struct {
    int err_no;
    char err[256];
    uint64_t file_len;
    uint64_t checksum;
    const char *view;
    void *base;
    void *alias;
    size_t span;
    uint32_t abi;
} wa_image_status;
const uint32_t *wa_cpu_words(void);
int wa_cpu_has(const char *name);
int wa_cpu_lacks(const char *features, char *out, size_t cap);
uint64_t wa_checksum(const void *data, size_t n, uint64_t seed);
wa_image *wa_image_open(const char *path, const void *mem, uint64_t mem_len, uint64_t unchecked, uint64_t seed,
                        int map_file, wa_image_status *st);
void *wa_image_link(wa_image *im, const char *name, wa_image_status *st);
void wa_image_free(wa_image *im);
void wa_unmap_image(void *base, size_t span);
void wa_code_arena_stats(size_t *pages, size_t *chunks);
int wa_code_ranges(void);
uint32_t wa_invoke(void *tramp, void *callee_ctx, void *code, uint8_t *slots,
                   uintptr_t *frames, uint32_t *nframes);
intptr_t wa_stack_limit_tls_offset(void);
int wa_thread_stack(uintptr_t *low, uintptr_t *high, int exact);
uint32_t wa_max_u32(const uint32_t *a, size_t n);
int wa_image_link_module(wa_image *im, uint32_t abi, uint32_t nfuncs, uint32_t ntypes, uint32_t nshims,
                         uint32_t ndatas, uintptr_t *out, wa_image_status *st);
int wa_fill_funcrefs(wa_funcref *funcs, uint32_t nfuncs, uint32_t nimported, void *const *code,
                     const uint32_t *type_index, const uint32_t *type_ids, void *ctx, const uint32_t *refs,
                     uint32_t nrefs);
void *wa_calloc(size_t n);
void wa_free(void *p);
void *wa_host_call_ptr(void);
void *wa_host_call_fast_ptr(void);
void *wa_host_dispatch_cell(void);
void *wa_invoke_ptr(void);
const void *wa_rt_ptr(void);
wa_memory *wa_memory_new(uint32_t min_pages, uint64_t max_pages, int guarded);
void wa_memory_free(wa_memory *m);
uint32_t wa_memory_grow(wa_memory *m, uint32_t delta);
wa_table *wa_table_new(uint32_t min, uint32_t max, uint32_t kind);
void wa_table_free(wa_table *t);
uint32_t wa_table_grow(wa_table *t, void *init, uint32_t delta);
int wa_init_memory(wa_memory *m, uint64_t d, const uint8_t *src, uint64_t n);
int wa_init_table(wa_table *t, uint64_t d, void **items, uint64_t n);
"""

# one translation unit, in this order (each file uses what the ones before it define)
SOURCES = ("runtime.c", "checksum.c", "code_arena.c", "image.c", "cpu.c")

ffibuilder = FFI()
ffibuilder.cdef(CDEF)
ffibuilder.set_source(
    "wasm_aot._runtime",
    f"#include <stdint.h>\n#define WA_IMAGE_DATA_AT {abi.IMAGE_DATA_AT:#x}\n" + DECLS + "\n"
    + "".join((HERE / f).read_text() for f in SOURCES),
    extra_compile_args=["-O2", "-fno-omit-frame-pointer", "-Wall"],
    libraries=["dl", "pthread"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
