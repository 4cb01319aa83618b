/* Loading an artifact (an ELF shared object made by our linker): copy, check, then link.
 *
 * Why not dlopen: dlopen needs a file it may reread at any time, takes ~100 us even for a tiny
 * object, and can never forget a path it has seen.  Our artifacts are simple: PT_LOAD segments,
 * a dynamic section, RELATIVE relocations and, for the odd libcall (memcpy, floorf, ...), symbol
 * relocations resolved in the process's global scope.  Anything else is refused, loudly.
 *
 * The source (the file, or bytes in memory) is read exactly once, into a private copy of the whole
 * file (the view).  The checksum is computed over the view, so what is checked is what will run,
 * even if the file changes meanwhile.  Linking happens only once the loader has checked everything:
 * each segment is copied from the view to its place (in the code arena, code_arena.c, or a fresh
 * private mapping), then relocated, protected and registered.  The view keeps the file's exact
 * bytes, so they can still be read back (Module.serialize) from a linked image.
 */
#include <elf.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>

#if defined(__x86_64__)
#define WA_EM EM_X86_64
#define WA_R_NONE R_X86_64_NONE
#define WA_R_RELATIVE R_X86_64_RELATIVE
#define WA_R_ABS64 R_X86_64_64
#define WA_R_GLOB_DAT R_X86_64_GLOB_DAT
#define WA_R_JUMP_SLOT R_X86_64_JUMP_SLOT
#elif defined(__aarch64__)
#define WA_EM EM_AARCH64
#define WA_R_NONE R_AARCH64_NONE
#define WA_R_RELATIVE R_AARCH64_RELATIVE
#define WA_R_ABS64 R_AARCH64_ABS64
#define WA_R_GLOB_DAT R_AARCH64_GLOB_DAT
#define WA_R_JUMP_SLOT R_AARCH64_JUMP_SLOT
#endif

#define IMG_MAX_PHDRS 16
#define IMG_READ_WHOLE (256u << 10) /* files up to this size are read whole into one private copy */
#define IMG_FAIL(...) do { snprintf(err, errlen, __VA_ARGS__); goto fail; } while (0)

/* What wa_image_open and wa_image_link report, in one block the caller allocates once: an error,
 * or what the loader checks next (so that a load costs one foreign call per step, not one per field). */
typedef struct {
    int err_no;            /* open: an errno value when the file cannot be read */
    char err[256];         /* why the image was refused */
    uint64_t file_len;     /* open: the file's length, its checksum and its bytes as read (valid */
    uint64_t checksum;     /* until wa_image_free: the loader reads the trailer and metadata there) */
    const char *view;
    void *base;            /* link: where the image is mapped (runs) */
    void *alias;           /* link: where its bytes are read: base, or for an image in the code arena its
                            * writable alias, so that loading touches no page of the run view but code */
    size_t span;
    uint32_t abi;          /* wa_image_link_module: the ABI of a descriptor of another one */
} wa_image_status;

typedef struct wa_image wa_image;
struct wa_image {
    uint8_t *base;        /* where the segments run: their own mapping, or pages of the code arena */
    uint8_t *rw;          /* where they are written: base, or the arena pages' writable alias */
    int in_arena;
    size_t span;
    uint64_t file_len;
    uint8_t *view;        /* the whole file: a private copy, or a mapping of it (see wa_image_open) */
    int view_mapped;
    Elf64_Ehdr eh;        /* the headers the copy was laid out by */
    Elf64_Phdr ph[IMG_MAX_PHDRS];
    int linked;
    int claimed;          /* a wa_image_link has begun: an image is linked once, by one thread */
};

static int in_file(uint64_t off, uint64_t n, uint64_t len) { return off <= len && n <= len - off; }

/* The final protection of each of an image's pages, as ld.so would set them: each segment's own,
 * then RELRO read-only; pages of no segment (the gap before the data of an image with little code:
 * see code_arena.c) read-only, never touched. */
static void page_prots(const Elf64_Ehdr *eh, const Elf64_Phdr *ph, size_t page, size_t npages, signed char *prot) {
    memset(prot, -1, npages);
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < eh->e_phnum; i++) {
            if (ph[i].p_type != (pass ? PT_GNU_RELRO : PT_LOAD)) continue;
            uint64_t lo = ph[i].p_vaddr / page, hi = (ph[i].p_vaddr + ph[i].p_memsz + page - 1) / page;
            if (pass) hi = (ph[i].p_vaddr + ph[i].p_memsz) / page;
            int pr = pass ? PROT_READ
                          : ((ph[i].p_flags & PF_R) ? PROT_READ : 0) | ((ph[i].p_flags & PF_W) ? PROT_WRITE : 0) |
                                ((ph[i].p_flags & PF_X) ? PROT_EXEC : 0);
            for (uint64_t k = lo; k < hi && k < npages; k++) prot[k] = (signed char)pr;
        }
    for (size_t k = 0; k < npages; k++)
        if (prot[k] < 0) prot[k] = PROT_READ;
}

/* Whether an image can run from the code arena, and its shape there: its first *code pages pages
 * executable, then nothing until WA_IMAGE_DATA_AT, then *data pages pages read-only. */
static int arena_shape(const wa_image *im, size_t page, size_t *code, size_t *data) {
    size_t npages = im->span / page, region = WA_IMAGE_DATA_AT / page;
    if (npages > 2 * region) return 0;
    signed char prot[2 * (WA_IMAGE_DATA_AT / 4096) + 1];
    if (npages > sizeof prot) return 0;
    page_prots(&im->eh, im->ph, page, npages, prot);
    size_t end = 0; /* past the last page of a segment below the data region */
    for (int i = 0; i < im->eh.e_phnum; i++)
        if (im->ph[i].p_type == PT_LOAD && im->ph[i].p_vaddr < WA_IMAGE_DATA_AT) {
            size_t e = (im->ph[i].p_vaddr + im->ph[i].p_memsz + page - 1) / page;
            if (e > end) end = e;
        }
    if (end > region) return 0;
    for (size_t k = 0; k < npages; k++)
        if (prot[k] != (k < end ? PROT_READ | PROT_EXEC : PROT_READ)) return 0;
    *code = end;
    *data = npages > region ? npages - region : 0;
    return 1;
}

/* Where each page ends up before linking: the arena or a mapping of its own, the segments copied
 * from the view or (fd >= 0, view_mapped) mapped from the file. */
static int layout(wa_image *im, int fd, char *err, size_t errlen) {
    const Elf64_Ehdr *eh = &im->eh;
    const Elf64_Phdr *ph = im->ph;
    size_t page = (size_t)sysconf(_SC_PAGESIZE), code_pages, data_pages, covered = 0;
    if (!im->view_mapped && arena_shape(im, page, &code_pages, &data_pages) &&
        (im->base = arena_alloc(code_pages, data_pages, page, &im->rw))) {
        im->in_arena = 1;
    } else {
        /* copies are populated up front (one call instead of a page fault per page), unless the
         * image has a gap, whose pages are never touched */
        for (int i = 0; i < eh->e_phnum; i++)
            if (ph[i].p_type == PT_LOAD)
                covered += (ph[i].p_vaddr + ph[i].p_memsz + page - 1) / page - ph[i].p_vaddr / page;
        int populate = !im->view_mapped && covered == im->span / page;
        im->base = mmap(NULL, im->span, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS | (populate ? MAP_POPULATE : MAP_NORESERVE), -1, 0);
        if (im->base == MAP_FAILED) {
            im->base = NULL;
            IMG_FAIL("cannot map %zu bytes", im->span);
        }
        im->rw = im->base;
    }
    for (int i = 0; i < eh->e_phnum; i++) {
        if (ph[i].p_type != PT_LOAD || !ph[i].p_filesz) continue;
        uint64_t lo = ph[i].p_vaddr & ~(uint64_t)(page - 1), skew = ph[i].p_vaddr - lo;
        if (!im->view_mapped || ph[i].p_offset % page != skew) {  /* a private copy, or not mappable as is */
            memcpy(im->rw + ph[i].p_vaddr, im->view + ph[i].p_offset, ph[i].p_filesz);
            continue;
        }
        void *at = mmap(im->base + lo, ph[i].p_filesz + skew, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED,
                        fd, (off_t)(ph[i].p_offset - skew));
        if (at == MAP_FAILED) IMG_FAIL("cannot map a segment");
        /* past the segment's file bytes, in its last page: zeros (its .bss), not the next section */
        uint64_t end = ph[i].p_vaddr + ph[i].p_filesz, page_end = (end + page - 1) & ~(uint64_t)(page - 1);
        if (ph[i].p_memsz > ph[i].p_filesz) memset(im->base + end, 0, page_end - end);
    }
    return 0;
fail:
    return -1;
}

/* Forgets an image's code ranges and gives its pages back.  (An arena image's span reaches over
 * other images' code: only its own pages count.) */
static void release_pages(uint8_t *base, size_t span, int in_arena) {
    size_t page = (size_t)sysconf(_SC_PAGESIZE), code = in_arena ? arena_code_bytes(base, page) : 0;
    remove_code_ranges((uintptr_t)base, (uintptr_t)base + (code ? code : span));
    if (!code || !arena_free(base, page)) munmap(base, span);
}


void wa_image_free(wa_image *im) {
    if (!im) return;
    if (im->base && !im->linked) release_pages(im->base, im->span, im->in_arena);
    if (im->view && im->view_mapped) munmap(im->view, im->file_len);
    else free(im->view);
    free(im);
}

/* Reads all of fd into dst (pread: a file that shrinks meanwhile gives a short read, not a SIGBUS). */
static int read_all(int fd, uint8_t *dst, uint64_t n) {
    uint64_t off = 0;
    while (off < n) {
        ssize_t k = pread(fd, dst + off, n - off > (1u << 30) ? (1u << 30) : n - off, (off_t)off);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return -1;
        off += (uint64_t)k;
    }
    return 0;
}

/* Reads the artifact at `path` (or, path being NULL, in mem[0, mem_len)) as described above and
 * checksums its bytes but the last `unchecked` ones.  NULL on failure: st->err_no is an errno value
 * when the file cannot be read; otherwise st->err says why the bytes are not an image this loader can
 * lay out (the caller diagnoses further: most such files are corrupt or not ours).
 *
 * With `map_file`, a large file is mapped instead of copied, as ld.so maps a library: its pages are
 * shared with the page cache (and every other process using the artifact), nothing is copied or
 * zeroed, and the checksum reads the same pages the code runs from.  What that gives up is the
 * guarantee against a file rewritten in place after the check, so the loader uses it only when
 * no signing key is in force: without one, whoever can write the file can as well write a
 * self-consistent artifact, and the checksum is there for accidental damage. */
wa_image *wa_image_open(const char *path, const void *mem, uint64_t mem_len, uint64_t unchecked, uint64_t seed,
                        int map_file, wa_image_status *st) {
    size_t page = (size_t)sysconf(_SC_PAGESIZE), errlen = sizeof st->err;
    char *err = st->err;
    int *err_no = &st->err_no;
    int fd = -1;
    uint64_t len = mem_len;
    *err_no = 0;
    wa_image *im = calloc(1, sizeof *im);
    if (!im) IMG_FAIL("out of memory");
    if (path) {
        struct stat st;
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || fstat(fd, &st) != 0) {
            *err_no = errno;
            IMG_FAIL("cannot read");
        }
        if (!S_ISREG(st.st_mode)) {
            *err_no = S_ISDIR(st.st_mode) ? EISDIR : EINVAL;
            IMG_FAIL("cannot read");
        }
        len = (uint64_t)st.st_size;
        if (map_file && len > IMG_READ_WHOLE) {
            /* not MAP_POPULATE: the checksum's reads fault it in 16 pages at a time, which measured
             * cheaper (42 against 48 us for an 800 KB artifact) than filling every entry up front */
            void *v = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
            if (v == MAP_FAILED) {
                *err_no = errno;
                IMG_FAIL("cannot read");
            }
            im->view = v;
            im->view_mapped = 1;
        }
    }
    im->file_len = len;
    if (!im->view) {
        if (!(im->view = malloc(len ? len : 1))) IMG_FAIL("out of memory");
        if (path ? read_all(fd, im->view, len) != 0 : (memcpy(im->view, mem, len), 0))
            IMG_FAIL("the file changed while it was read");
    }
    const uint8_t *view = im->view;
    if (unchecked > len || len < sizeof im->eh) IMG_FAIL("not a shared object for this machine");
    memcpy(&im->eh, view, sizeof im->eh);
    const Elf64_Ehdr *eh = &im->eh;
    if (memcmp(eh->e_ident, ELFMAG, SELFMAG) || eh->e_ident[EI_CLASS] != ELFCLASS64 ||
        eh->e_ident[EI_DATA] != ELFDATA2LSB || eh->e_type != ET_DYN || eh->e_machine != WA_EM ||
        eh->e_phentsize != sizeof(Elf64_Phdr) || eh->e_phnum > IMG_MAX_PHDRS ||
        !in_file(eh->e_phoff, (uint64_t)eh->e_phnum * sizeof(Elf64_Phdr), len))
        IMG_FAIL("not a shared object for this machine");
    memcpy(im->ph, view + eh->e_phoff, (size_t)eh->e_phnum * sizeof(Elf64_Phdr));
    const Elf64_Phdr *ph = im->ph;
    int has_dynamic = 0;
    uint64_t prev_end = 0;
    for (int i = 0; i < eh->e_phnum; i++) {
        if (ph[i].p_type == PT_LOAD) {
            if (ph[i].p_filesz > ph[i].p_memsz || !in_file(ph[i].p_offset, ph[i].p_filesz, len) ||
                ph[i].p_vaddr + ph[i].p_memsz < ph[i].p_vaddr || ph[i].p_vaddr + ph[i].p_memsz > (1ull << 32))
                IMG_FAIL("a segment lies outside the file");
            /* segments in file order, disjoint */
            if (ph[i].p_filesz && ph[i].p_offset < prev_end) IMG_FAIL("overlapping segments");
            if (ph[i].p_filesz) prev_end = ph[i].p_offset + ph[i].p_filesz;
            size_t end = (ph[i].p_vaddr + ph[i].p_memsz + page - 1) & ~(page - 1);
            if (end > im->span) im->span = end;
        } else if (ph[i].p_type == PT_DYNAMIC) {
            has_dynamic = 1;
        } else if (ph[i].p_type == PT_TLS || ph[i].p_type == PT_INTERP) {
            IMG_FAIL("unsupported program header %u", ph[i].p_type);
        }
    }
    if (!im->span || !has_dynamic) IMG_FAIL("no loadable segments or no dynamic section");
    /* a copy is laid out when it is linked: a load that finds its content mapped already (the loader
     * links each content once) never pays for it; a file mapping is laid out now, while its file is open */
    if (im->view_mapped && layout(im, fd, err, errlen) != 0) goto fail;
    if (fd >= 0) close(fd);
    fd = -1;
    st->checksum = wa_checksum(view, len - unchecked, seed);  /* of file bytes [0, len - unchecked) as read */
    st->file_len = len;
    st->view = (const char *)view;
    return im;
fail:
    if (fd >= 0) close(fd);
    wa_image_free(im);
    return NULL;
}

/* Lays out, relocates, protects and registers an image (which must have passed every check) and
 * returns the address of its symbol `name` (NULL with a message in err on failure).  From here on
 * the mapping belongs to the caller: wa_unmap_image(st->base, st->span). */
void *wa_image_link(wa_image *im, const char *name, wa_image_status *st) {
    char *err = st->err;
    size_t errlen = sizeof st->err;
    const Elf64_Ehdr *eh = &im->eh;
    const Elf64_Phdr *ph = im->ph, *dyn = NULL;
    uint8_t *base = NULL, *rw;
    size_t span = im->span, page = (size_t)sysconf(_SC_PAGESIZE);
    void *result = NULL;
    if (__atomic_exchange_n(&im->claimed, 1, __ATOMIC_ACQ_REL)) IMG_FAIL("image already linked");
    if (!im->base && layout(im, -1, err, errlen) != 0) goto fail;
    base = im->base;
    rw = im->rw;
    for (int i = 0; i < eh->e_phnum; i++)
        if (ph[i].p_type == PT_DYNAMIC) dyn = &ph[i];
    /* the dynamic section: relocation tables and the symbol table */
    if (!dyn || dyn->p_vaddr + dyn->p_memsz > span || dyn->p_vaddr + dyn->p_memsz < dyn->p_vaddr)
        IMG_FAIL("dynamic section outside the image");
    const Elf64_Dyn *d = (const Elf64_Dyn *)(rw + dyn->p_vaddr);
    size_t ndyn = dyn->p_memsz / sizeof *d;
    uint64_t rela = 0, relasz = 0, jmprel = 0, pltrelsz = 0, symtab = 0, strtab = 0, strsz = 0;
    for (size_t i = 0; i < ndyn && d[i].d_tag != DT_NULL; i++) {
        uint64_t v = d[i].d_un.d_val;
        switch (d[i].d_tag) {
        case DT_RELA: rela = v; break;
        case DT_RELASZ: relasz = v; break;
        case DT_JMPREL: jmprel = v; break;
        case DT_PLTRELSZ: pltrelsz = v; break;
        case DT_SYMTAB: symtab = v; break;
        case DT_STRTAB: strtab = v; break;
        case DT_STRSZ: strsz = v; break;
        case DT_PLTREL: if (v != DT_RELA) IMG_FAIL("REL relocations"); break;
        case DT_INIT: case DT_INIT_ARRAY: case DT_PREINIT_ARRAY: case DT_NEEDED: case DT_TEXTREL:
            IMG_FAIL("unsupported dynamic entry %lld", (long long)d[i].d_tag);
        default: break;
        }
    }
    if (!symtab || !strtab || strtab <= symtab || strtab > span || strsz > span - strtab || rela > span ||
        relasz > span - rela || jmprel > span || pltrelsz > span - jmprel)
        IMG_FAIL("malformed dynamic section");
    const Elf64_Sym *syms = (const Elf64_Sym *)(rw + symtab);
    size_t nsyms = (strtab - symtab) / sizeof *syms; /* our linker puts .dynstr right after .dynsym */
    const char *strs = (const char *)(rw + strtab);

    const uint64_t tables[2][2] = {{rela, relasz}, {jmprel, pltrelsz}};
    for (int t = 0; t < 2; t++) {
        const Elf64_Rela *r = (const Elf64_Rela *)(rw + tables[t][0]);
        for (size_t i = 0; i < tables[t][1] / sizeof *r; i++) {
            uint32_t type = ELF64_R_TYPE(r[i].r_info), si = ELF64_R_SYM(r[i].r_info);
            if (type == WA_R_NONE) continue;
            if (r[i].r_offset > span - 8) IMG_FAIL("relocation outside the image");
            uint64_t *where = (uint64_t *)(rw + r[i].r_offset);
            if (type == WA_R_RELATIVE) { *where = (uint64_t)base + r[i].r_addend; continue; }
            if (type != WA_R_ABS64 && type != WA_R_GLOB_DAT && type != WA_R_JUMP_SLOT)
                IMG_FAIL("unsupported relocation type %u", type);
            if (si >= nsyms || syms[si].st_name >= strsz) IMG_FAIL("relocation against a bad symbol");
            uint64_t s;
            if (syms[si].st_shndx != SHN_UNDEF) {
                s = (uint64_t)base + syms[si].st_value;
            } else {
                void *p = dlsym(RTLD_DEFAULT, strs + syms[si].st_name);
                if (!p && ELF64_ST_BIND(syms[si].st_info) != STB_WEAK)
                    IMG_FAIL("unresolved symbol %s", strs + syms[si].st_name);
                s = (uint64_t)p;
            }
            *where = s + (type == WA_R_ABS64 ? (uint64_t)r[i].r_addend : 0);
        }
    }
    for (size_t i = 0; i < nsyms; i++)
        if (syms[i].st_name < strsz && syms[i].st_shndx != SHN_UNDEF && syms[i].st_value < span &&
            strnlen(strs + syms[i].st_name, strsz - syms[i].st_name) < strsz - syms[i].st_name &&
            !strcmp(strs + syms[i].st_name, name))
            result = base + syms[i].st_value;
    if (!result) IMG_FAIL("no symbol %s", name);

    /* final protections: one mprotect per run of pages that end up alike (none in the arena, whose
     * regions have them already) */
    size_t npages = span / page;
    signed char *prot = malloc(npages);
    if (!prot) IMG_FAIL("out of memory");
    page_prots(eh, ph, page, npages, prot);
    for (size_t k = 0, run; k < npages; k = run) {
        for (run = k + 1; run < npages && prot[run] == prot[k]; run++) {}
        if (prot[k] == (PROT_READ | PROT_WRITE)) continue;
        uint8_t *lo = base + k * page, *hi = base + run * page;
        if (!im->in_arena && mprotect(lo, (size_t)(hi - lo), prot[k]) != 0) {
            free(prot);
            IMG_FAIL("mprotect failed");
        }
        if (prot[k] & PROT_EXEC) {
            __builtin___clear_cache((char *)lo, (char *)hi);
            if (add_code_range((uintptr_t)lo, (uintptr_t)hi) != 0) {
                free(prot);
                IMG_FAIL("too many code ranges");
            }
        }
    }
    free(prot);
    im->linked = 1;
    st->base = base;
    st->alias = rw;
    st->span = span;
    return result;
fail:
    /* a half-linked image never runs: forget it whole */
    if (base && !im->linked) {
        release_pages(base, span, im->in_arena);
        im->base = NULL;
    }
    return NULL;
}


/* Undoes wa_image_link, once nothing refers to the artifact's code or data any more. */
void wa_unmap_image(void *base, size_t span) {
    release_pages(base, span, 1);
}

/* wa_image_link for the loader: links the image, checks its module descriptor (wa_module) against
 * this runtime's ABI and the load record's counts, and resolves what it refers to into out (see
 * wa_module_addresses), all in one foreign call.  0, or: -1 the image cannot be linked (st->err),
 * -2 another ABI (st->abi), -3 the descriptor does not match the record; on failure nothing stays
 * mapped.  The descriptor is read through the alias, so loading touches no run-view page but code. */
int wa_image_link_module(wa_image *im, uint32_t abi, uint32_t nfuncs, uint32_t ntypes, uint32_t nshims,
                         uint32_t ndatas, uintptr_t *out, wa_image_status *st) {
    uint8_t *sym = wa_image_link(im, "wa_module", st);
    if (!sym) return -1;
    const wa_module_desc *d = (const wa_module_desc *)((uint8_t *)st->alias + (sym - (uint8_t *)st->base));
    int rc = 0;
    if (d->abi_version != abi) {
        st->abi = d->abi_version;
        rc = -2;
    } else if (wa_module_addresses(d, st->alias, st->span, st->base, nfuncs, ntypes, nshims, ndatas, out) != 0) {
        rc = -3;
    }
    if (rc) wa_unmap_image(st->base, st->span);
    return rc;
}
