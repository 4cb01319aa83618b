/* The code arena: where small artifacts are laid out without a system call per load.
 *
 * Mapping an image the usual way costs an mmap and an mprotect per protection (code, read-only
 * data), and an munmap when it goes: system calls that rewrite this process's memory map, ~8 us of
 * a ~45 us load on this kind of virtual machine.  The arena instead maps chunks of shared memory
 * twice, once read+write (where the loader copies and relocates) and once to run from, and hands
 * out pages of them: a small load then makes no memory-management call at all.
 *
 * Code stays the only executable part of an image: the compiler places an image's read-only data
 * (its data segments, descriptor, metadata: what the wasm module chooses) exactly WA_IMAGE_DATA_AT
 * bytes after its code when the code is smaller than that (codegen/emit.py), so a chunk's run view
 * is two regions of that size, set up once: code, read+execute, then data, read-only.  An image
 * takes pages at the same offset in both.  Setting up a chunk costs about two image mappings, so
 * the first image of a process still maps its own pages; the arena starts with the second.
 *
 * What it gives up: an arena image's pages have a writable alias elsewhere in the process.  wasm
 * code cannot reach it (it addresses only its memories and tables); $WASM_AOT_CODE_ARENA=0 turns
 * the arena off for deployments that want no writable alias of code at all.
 *
 * fork: both processes would share the chunks' pages (shared memory stays shared), so pages freed
 * and reused in one would overwrite code the other still runs.  At fork every chunk in use is sealed
 * in both processes: its images run and are freed as before, but its pages are never handed out
 * again, and it goes with its last image; empty chunks are unmapped.  New images go to new chunks,
 * private to each process.  Outside forks, at most one empty chunk is kept, for the next image.
 */

#define ARENA_REGION WA_IMAGE_DATA_AT /* a chunk: this much code, then this much data */

typedef struct arena_chunk arena_chunk;
struct arena_chunk {
    uint8_t *run, *rw;    /* the two views of the same pages, each 2 * ARENA_REGION bytes */
    size_t live;          /* pages in use */
    int sealed;           /* shared with a forked process: never handed out again */
    arena_chunk *next;
    /* per page of a region: in use (code, data), and for the first page of an image its page counts */
    uint8_t *code_used, *data_used;
    uint16_t *code_len, *data_len;
};

static arena_chunk *arena_chunks;
static int arena_asked; /* images that asked for pages */
static int arena_state; /* 0 unknown, 1 on, -1 off (disabled, or the system refuses it) */
static pthread_mutex_t arena_lock = PTHREAD_MUTEX_INITIALIZER;

static void arena_unmap(arena_chunk *c) {
    munmap(c->run, 2 * ARENA_REGION);
    munmap(c->rw, 2 * ARENA_REGION);
    free(c);
}

static void arena_prefork(void) { pthread_mutex_lock(&arena_lock); }

static void arena_postfork(void) {
    for (arena_chunk **p = &arena_chunks, *c; (c = *p);) {
        if (!c->live) { /* empty: nothing to seal, and no free will ever come to unmap it */
            *p = c->next;
            arena_unmap(c);
        } else {
            c->sealed = 1;
            p = &c->next;
        }
    }
    pthread_mutex_unlock(&arena_lock);
}

/* (when the runtime loads: registered on first use, a fork between taking arena_lock and registering
 * would have left it held in the child) */
__attribute__((constructor)) static void arena_register_fork_handlers(void) {
    if (pthread_atfork(arena_prefork, arena_postfork, arena_postfork) != 0) arena_state = -1;
}

static int arena_enabled(void) {
    if (!arena_state) {
        const char *e = getenv("WASM_AOT_CODE_ARENA");
        arena_state = e && !strcmp(e, "0") ? -1 : 1;
    }
    return arena_state > 0;
}

static arena_chunk *arena_new_chunk(size_t page) {
    size_t n = ARENA_REGION / page;
    /* shared anonymous pages, and a second mapping of them (mremap of a shared mapping, old size 0) */
    void *rw = mmap(NULL, 2 * ARENA_REGION, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE,
                    -1, 0);
    if (rw == MAP_FAILED) return NULL;
    void *run = mremap(rw, 0, 2 * ARENA_REGION, MREMAP_MAYMOVE);
    arena_chunk *c = calloc(1, sizeof *c + 2 * n + 4 * n);
    if (run == MAP_FAILED || !c) {
        if (run != MAP_FAILED) munmap(run, 2 * ARENA_REGION);
        munmap(rw, 2 * ARENA_REGION);
        free(c);
        return NULL;
    }
    c->run = run;
    c->rw = rw;
    c->code_used = (uint8_t *)(c + 1);
    c->data_used = c->code_used + n;
    c->code_len = (uint16_t *)(c->data_used + n);
    c->data_len = c->code_len + n;
    /* (a policy against executable shared memory, SELinux's execmem say, refuses the first) */
    if (mprotect(run, ARENA_REGION, PROT_READ | PROT_EXEC) != 0 ||
        mprotect((uint8_t *)run + ARENA_REGION, ARENA_REGION, PROT_READ) != 0) {
        arena_unmap(c);
        return NULL;
    }
    return c;
}

static int arena_runs_free(const uint8_t *used, size_t at, size_t n) {
    return !n || !memchr(used + at, 1, n);
}

/* Pages for an image of `code_pages` pages of code at its start and `data_pages` pages of data at
 * WA_IMAGE_DATA_AT: its run address, with *rw its writable alias (both zeroed where the image lies);
 * NULL when the arena is off or cannot grow (the caller maps the image on its own). */
static uint8_t *arena_alloc(size_t code_pages, size_t data_pages, size_t page, uint8_t **rw) {
    size_t n = ARENA_REGION / page;
    if (!code_pages || code_pages > n || data_pages > n) return NULL;
    uint8_t *at = NULL;
    arena_chunk *in = NULL;
    size_t x = 0;
    pthread_mutex_lock(&arena_lock);
    for (int attempt = 0; attempt < 2 && !at && arena_enabled(); attempt++) {
        for (arena_chunk *c = arena_chunks; c && !at; c = c->next) {
            if (c->sealed) continue;
            for (x = 0; x + code_pages <= n && x + data_pages <= n; x++) {
                if (arena_runs_free(c->code_used, x, code_pages) && arena_runs_free(c->data_used, x, data_pages)) {
                    memset(c->code_used + x, 1, code_pages);
                    memset(c->data_used + x, 1, data_pages);
                    c->code_len[x] = (uint16_t)code_pages;
                    c->data_len[x] = (uint16_t)data_pages;
                    c->live += code_pages + data_pages;
                    at = c->run + x * page;
                    *rw = c->rw + x * page;
                    in = c;
                    break;
                }
            }
        }
        /* the first image maps its own pages: a chunk costs about two image mappings to set up, so
         * a process that loads one module is better off without */
        if (!at && !attempt && arena_asked++) {
            arena_chunk *c = arena_new_chunk(page);
            if (!c) {
                arena_state = -1;
                break;
            }
            c->next = arena_chunks;
            arena_chunks = c;
        }
    }
    pthread_mutex_unlock(&arena_lock);
    if (in) { /* pages an earlier image used hold its bytes: zero, as a fresh mapping is */
        memset(*rw, 0, code_pages * page);
        memset(*rw + ARENA_REGION, 0, data_pages * page);
    }
    return at;
}

/* The bytes of code of the arena image at run address `base`; 0 if it is not one. */
static size_t arena_code_bytes(const uint8_t *base, size_t page) {
    size_t n = 0;
    pthread_mutex_lock(&arena_lock);
    for (arena_chunk *c = arena_chunks; c; c = c->next)
        if (base >= c->run && base < c->run + ARENA_REGION) {
            n = c->code_len[(size_t)(base - c->run) / page] * page;
            break;
        }
    pthread_mutex_unlock(&arena_lock);
    return n;
}

/* Gives back the pages of an image at run address `base`; 0 if it is not in the arena. */
static int arena_free(uint8_t *base, size_t page) {
    int found = 0;
    pthread_mutex_lock(&arena_lock);
    for (arena_chunk **p = &arena_chunks, *c; (c = *p); p = &c->next) {
        if (base < c->run || base >= c->run + ARENA_REGION) continue;
        size_t x = (size_t)(base - c->run) / page;
        memset(c->code_used + x, 0, c->code_len[x]);
        memset(c->data_used + x, 0, c->data_len[x]);
        c->live -= c->code_len[x] + c->data_len[x];
        c->code_len[x] = c->data_len[x] = 0;
        found = 1;
        if (!c->live) { /* an empty chunk goes if it is sealed, or if another open one is empty too */
            int other_empty = 0;
            for (arena_chunk *o = arena_chunks; o && !other_empty; o = o->next)
                other_empty = o != c && !o->sealed && !o->live;
            if (c->sealed || other_empty) {
                *p = c->next;
                arena_unmap(c);
            }
        }
        break;
    }
    pthread_mutex_unlock(&arena_lock);
    return found;
}

/* Images in the arena and chunks (for tests). */
void wa_code_arena_stats(size_t *pages, size_t *chunks) {
    *pages = *chunks = 0;
    pthread_mutex_lock(&arena_lock);
    for (arena_chunk *c = arena_chunks; c; c = c->next) {
        *pages += c->live;
        *chunks += 1;
    }
    pthread_mutex_unlock(&arena_lock);
}
