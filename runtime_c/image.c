/* Loading an artifact (an ELF shared object made by our linker): copy, check, then link.
 *
 * Why not dlopen: dlopen needs a file it may reread at any time, takes ~100 us even for a tiny
 * object, and can never forget a path it has seen.  Our artifacts are simple: PT_LOAD segments,
 * a dynamic section, RELATIVE relocations and, for the odd libcall (memcpy, floorf, ...), symbol
 * relocations resolved in the process's global scope.  Anything else is refused, loudly.
 *
 * The source (the file, or bytes in memory) is read exactly once: each
 * segment is copied to its place in a fresh private mapping, every other byte of the file (headers,
 * symbols, metadata, trailer) into a side buffer.  The checksum is then computed over those copies,
 * in file order, so what is checked is what will run, even if the file changes meanwhile.  Linking
 * (relocations, protections, registering the code) happens only once the loader has checked
 * everything; the original bytes of the writable segments are kept aside first, so the file's exact
 * bytes can still be read back (Module.serialize) from a linked image.
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
#define IMG_MAX_RANGES (2 * IMG_MAX_PHDRS + 1)
#define IMG_FAIL(...) do { snprintf(err, errlen, __VA_ARGS__); goto fail; } while (0)

/* Where the bytes [off, off + len) of the file live now: in the image (at base + where) or in
 * the side buffer (at saved + where). */
typedef struct {
    uint64_t off, len, where;
    int saved;
} img_range;

typedef struct wa_image wa_image;
struct wa_image {
    uint8_t *base;        /* the private mapping of the segments (owned until unmapped) */
    size_t span;
    uint8_t *saved;       /* file bytes outside the segments, then the writable segments' originals */
    size_t nsaved;
    uint64_t file_len;
    uint64_t checksum;    /* XXH64 of file bytes [0, checked_len) as copied */
    uint8_t *view;        /* the whole file, when read whole or mapped (see wa_image_open) */
    int view_mapped;      /* the view is a mapping of the file, not a private copy */
    Elf64_Ehdr eh;        /* the headers the copy was laid out by */
    Elf64_Phdr ph[IMG_MAX_PHDRS];
    int nranges, linked;
    img_range ranges[IMG_MAX_RANGES];
};

static int in_file(uint64_t off, uint64_t n, uint64_t len) { return off <= len && n <= len - off; }

static const uint8_t *range_ptr(const wa_image *im, const img_range *r) {
    return (r->saved ? im->saved : im->base) + r->where;
}

/* The file's bytes [off, off + n) as copied; 0 when they lie outside the file. */
int wa_image_read(const wa_image *im, uint64_t off, uint64_t n, void *dst) {
    if (!in_file(off, n, im->file_len)) return 0;
    if (im->view) {
        memcpy(dst, im->view + off, n);
        return 1;
    }
    uint8_t *out = (uint8_t *)dst;
    for (int i = 0; i < im->nranges && n; i++) {
        const img_range *r = &im->ranges[i];
        if (off >= r->off + r->len || off < r->off) continue;
        uint64_t k = r->off + r->len - off < n ? r->off + r->len - off : n;
        memcpy(out, range_ptr(im, r) + (off - r->off), k);
        out += k, off += k, n -= k;
    }
    return n == 0;
}

uint64_t wa_image_checksum(const wa_image *im) { return im->checksum; }
uint64_t wa_image_file_len(const wa_image *im) { return im->file_len; }

void wa_image_free(wa_image *im) {
    if (!im) return;
    if (im->base && !im->linked) munmap(im->base, im->span);
    if (im->view && im->view_mapped) munmap(im->view, im->file_len);
    else free(im->view);
    free(im->saved);
    free(im);
}

/* Where the artifact's bytes come from: a file (read with pread, so a file that shrinks while it is
 * read gives a short read, not a SIGBUS) or bytes in memory. */
typedef struct {
    int fd;
    const uint8_t *mem;
    uint64_t len;
} img_source;

static int src_read(const img_source *s, uint64_t off, void *dst, uint64_t n) {
    if (!in_file(off, n, s->len)) return -1;
    if (s->mem) {
        memcpy(dst, s->mem + off, n);
        return 0;
    }
    uint8_t *p = (uint8_t *)dst;
    while (n) {
        ssize_t k = pread(s->fd, p, n > (1u << 30) ? (1u << 30) : n, (off_t)off);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return -1;
        p += k, off += (uint64_t)k, n -= (uint64_t)k;
    }
    return 0;
}

static int add_saved(wa_image *im, const img_source *src, uint64_t off, uint64_t n) {
    if (!n) return 0;
    uint8_t *p = realloc(im->saved, im->nsaved + n);
    if (!p) return -1;
    im->saved = p;
    if (src_read(src, off, p + im->nsaved, n)) return -2;
    im->ranges[im->nranges++] = (img_range){off, n, im->nsaved, 1};
    im->nsaved += n;
    return 0;
}

/* Copies the artifact at `path` (or, path being NULL, in mem[0, mem_len)) as described above and
 * checksums its bytes but the last `unchecked` ones.  NULL on failure: *err_no is an errno value
 * when the file cannot be read; otherwise err says why the bytes are not an image this loader can
 * lay out (the caller diagnoses further: most such files are corrupt or not ours).
 *
 * With `map_file`, the file is mapped instead of copied, as ld.so maps a library: its pages are
 * shared with the page cache (and every other process using the artifact), nothing is copied or
 * zeroed, and the checksum reads the same pages the code runs from.  What that gives up is the
 * guarantee against a file rewritten in place after the check, so the loader uses it only when
 * no signing key is in force: without one, whoever can write the file can as well write a
 * self-consistent artifact, and the checksum is there for accidental damage. */
wa_image *wa_image_open(const char *path, const void *mem, uint64_t mem_len, uint64_t unchecked, uint64_t seed,
                        int map_file, int *err_no, char *err, size_t errlen) {
    img_source src = {-1, (const uint8_t *)mem, mem_len};
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    *err_no = 0;
    wa_image *im = calloc(1, sizeof *im);
    if (!im) IMG_FAIL("out of memory");
    if (path) {
        struct stat st;
        src.fd = open(path, O_RDONLY | O_CLOEXEC);
        if (src.fd < 0 || fstat(src.fd, &st) != 0) {
            *err_no = errno;
            IMG_FAIL("cannot read");
        }
        if (!S_ISREG(st.st_mode)) {
            *err_no = S_ISDIR(st.st_mode) ? EISDIR : EINVAL;
            IMG_FAIL("cannot read");
        }
        src.mem = NULL;
        src.len = (uint64_t)st.st_size;
        if (map_file && src.len > IMG_READ_WHOLE) {
            void *v = mmap(NULL, src.len, PROT_READ, MAP_PRIVATE | MAP_POPULATE, src.fd, 0);
            if (v == MAP_FAILED) {
                *err_no = errno;
                IMG_FAIL("cannot read");
            }
            im->view = v;
            im->view_mapped = 1;
            src.mem = im->view;
        }
    }
    if (!im->view && src.len <= IMG_READ_WHOLE) {
        /* small: one read into a private copy, the segments are copied from there */
        if (!(im->view = malloc(src.len ? src.len : 1))) IMG_FAIL("out of memory");
        if (src_read(&src, 0, im->view, src.len)) IMG_FAIL("the file changed while it was read");
        src.mem = im->view;
    }
    uint64_t len = im->file_len = src.len;
    if (unchecked > len || src_read(&src, 0, &im->eh, sizeof im->eh)) IMG_FAIL("not a shared object for this machine");
    const Elf64_Ehdr *eh = &im->eh;
    if (memcmp(eh->e_ident, ELFMAG, SELFMAG) || eh->e_ident[EI_CLASS] != ELFCLASS64 ||
        eh->e_ident[EI_DATA] != ELFDATA2LSB || eh->e_type != ET_DYN || eh->e_machine != WA_EM ||
        eh->e_phentsize != sizeof(Elf64_Phdr) || eh->e_phnum > IMG_MAX_PHDRS ||
        src_read(&src, eh->e_phoff, im->ph, (uint64_t)eh->e_phnum * sizeof(Elf64_Phdr)))
        IMG_FAIL("not a shared object for this machine");
    const Elf64_Phdr *ph = im->ph;
    int has_dynamic = 0;
    uint64_t prev_end = 0;
    for (int i = 0; i < eh->e_phnum; i++) {
        if (ph[i].p_type == PT_LOAD) {
            if (ph[i].p_filesz > ph[i].p_memsz || !in_file(ph[i].p_offset, ph[i].p_filesz, len) ||
                ph[i].p_vaddr + ph[i].p_memsz < ph[i].p_vaddr || ph[i].p_vaddr + ph[i].p_memsz > (1ull << 32))
                IMG_FAIL("a segment lies outside the file");
            /* each byte of the file has one place in the copy: segments in file order, disjoint */
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
    /* copies are populated up front: one call instead of a page fault per page */
    im->base = mmap(NULL, im->span, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS | (im->view_mapped ? MAP_NORESERVE : MAP_POPULATE), -1, 0);
    if (im->base == MAP_FAILED) {
        im->base = NULL;
        IMG_FAIL("cannot map %zu bytes", im->span);
    }
    if (im->view) {
        for (int i = 0; i < eh->e_phnum; i++) {
            if (ph[i].p_type != PT_LOAD || !ph[i].p_filesz) continue;
            uint64_t lo = ph[i].p_vaddr & ~(uint64_t)(page - 1), skew = ph[i].p_vaddr - lo;
            if (!im->view_mapped || ph[i].p_offset % page != skew) {  /* a private copy, or not mappable as is */
                memcpy(im->base + ph[i].p_vaddr, im->view + ph[i].p_offset, ph[i].p_filesz);
                continue;
            }
            void *at = mmap(im->base + lo, ph[i].p_filesz + skew, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED,
                            src.fd, (off_t)(ph[i].p_offset - skew));
            if (at == MAP_FAILED) IMG_FAIL("cannot map a segment");
            /* past the segment's file bytes, in its last page: zeros (its .bss), not the next section */
            uint64_t end = ph[i].p_vaddr + ph[i].p_filesz, page_end = (end + page - 1) & ~(uint64_t)(page - 1);
            if (ph[i].p_memsz > ph[i].p_filesz) memset(im->base + end, 0, page_end - end);
        }
        if (src.fd >= 0) close(src.fd);
        src.fd = -1;
        im->checksum = wa_checksum(im->view, len - unchecked, seed);
        return im;
    }
    uint64_t pos = 0;
    for (int i = 0; i <= eh->e_phnum; i++) {
        int last = i == eh->e_phnum;
        if (!last && (ph[i].p_type != PT_LOAD || !ph[i].p_filesz)) continue;
        uint64_t next = last ? len : ph[i].p_offset;
        int rc = add_saved(im, &src, pos, next - pos);
        if (rc == -1) IMG_FAIL("out of memory");
        if (rc || (!last && src_read(&src, ph[i].p_offset, im->base + ph[i].p_vaddr, ph[i].p_filesz)))
            IMG_FAIL("the file changed while it was read");
        if (!last) {
            im->ranges[im->nranges++] = (img_range){ph[i].p_offset, ph[i].p_filesz, ph[i].p_vaddr, 0};
            pos = ph[i].p_offset + ph[i].p_filesz;
        }
    }
    if (src.fd >= 0) close(src.fd);
    src.fd = -1;
    uint64_t checked_len = len - unchecked;

    wa_xxh64 s;
    xxh64_init(&s, seed);
    for (int i = 0; i < im->nranges; i++) {
        const img_range *r = &im->ranges[i];
        if (r->off >= checked_len) break;
        uint64_t n = r->off + r->len <= checked_len ? r->len : checked_len - r->off;
        xxh64_update(&s, range_ptr(im, r), n);
    }
    im->checksum = xxh64_digest(&s, seed);
    /* the layout was read from the source before copying: it must be the layout of the copy */
    uint8_t hdr[sizeof im->eh + sizeof im->ph];
    size_t nph = eh->e_phnum * sizeof(Elf64_Phdr);
    if (!wa_image_read(im, 0, sizeof im->eh, hdr) || memcmp(hdr, &im->eh, sizeof im->eh) ||
        !wa_image_read(im, eh->e_phoff, nph, hdr) || memcmp(hdr, im->ph, nph))
        IMG_FAIL("the file changed while it was read");
    return im;
fail:
    if (src.fd >= 0) close(src.fd);
    wa_image_free(im);
    return NULL;
}

/* Relocates, protects and registers a copied image (which must have passed every check) and
 * returns the address of its symbol `name` (NULL with a message in err on failure).  From here on
 * the mapping belongs to the caller: wa_unmap_image(wa_image_base(im), wa_image_span(im)). */
void *wa_image_link(wa_image *im, const char *name, char *err, size_t errlen) {
    const Elf64_Ehdr *eh = &im->eh;
    const Elf64_Phdr *ph = im->ph, *dyn = NULL;
    uint8_t *base = im->base;
    size_t span = im->span, page = (size_t)sysconf(_SC_PAGESIZE);
    void *result = NULL;
    if (im->linked || !base) IMG_FAIL("image already linked");
    for (int i = 0; i < eh->e_phnum; i++)
        if (ph[i].p_type == PT_DYNAMIC) dyn = &ph[i];
    /* keep the writable segments' bytes as they are in the file, before relocations change them
     * (a mapped file keeps them in its view) */
    for (int r = 0; r < im->nranges && !im->view; r++) {
        img_range *rg = &im->ranges[r];
        if (rg->saved) continue;
        for (int i = 0; i < eh->e_phnum; i++) {
            if (ph[i].p_type != PT_LOAD || ph[i].p_offset != rg->off || !(ph[i].p_flags & PF_W)) continue;
            uint8_t *p = realloc(im->saved, im->nsaved + rg->len);
            if (!p) IMG_FAIL("out of memory");
            im->saved = p;
            memcpy(p + im->nsaved, base + rg->where, rg->len);
            rg->where = im->nsaved, rg->saved = 1;
            im->nsaved += rg->len;
            break;
        }
    }

    /* the dynamic section: relocation tables and the symbol table */
    if (!dyn || dyn->p_vaddr + dyn->p_memsz > span || dyn->p_vaddr + dyn->p_memsz < dyn->p_vaddr)
        IMG_FAIL("dynamic section outside the image");
    const Elf64_Dyn *d = (const Elf64_Dyn *)(base + dyn->p_vaddr);
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
    const Elf64_Sym *syms = (const Elf64_Sym *)(base + symtab);
    size_t nsyms = (strtab - symtab) / sizeof *syms; /* our linker puts .dynstr right after .dynsym */
    const char *strs = (const char *)(base + strtab);

    const uint64_t tables[2][2] = {{rela, relasz}, {jmprel, pltrelsz}};
    for (int t = 0; t < 2; t++) {
        const Elf64_Rela *r = (const Elf64_Rela *)(base + tables[t][0]);
        for (size_t i = 0; i < tables[t][1] / sizeof *r; i++) {
            uint32_t type = ELF64_R_TYPE(r[i].r_info), si = ELF64_R_SYM(r[i].r_info);
            if (type == WA_R_NONE) continue;
            if (r[i].r_offset > span - 8) IMG_FAIL("relocation outside the image");
            uint64_t *where = (uint64_t *)(base + r[i].r_offset);
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

    /* final protections, as ld.so would set them: each segment's own, then RELRO read-only; one
     * mprotect per run of pages that end up alike (pages of no segment keep what they have) */
    size_t npages = span / page;
    signed char *prot = malloc(npages);
    if (!prot) IMG_FAIL("out of memory");
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
    for (size_t k = 1; k < npages; k++)
        if (prot[k] < 0) prot[k] = prot[k - 1];
    for (size_t k = 0, run; k < npages; k = run) {
        for (run = k + 1; run < npages && prot[run] == prot[k]; run++) {}
        if (prot[k] < 0 || prot[k] == (PROT_READ | PROT_WRITE)) continue;
        uint8_t *lo = base + k * page, *hi = base + run * page;
        if (mprotect(lo, (size_t)(hi - lo), prot[k]) != 0) {
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
    return result;
fail:
    /* a half-linked image never runs: forget it whole */
    if (base && !im->linked) {
        remove_code_ranges((uintptr_t)base, (uintptr_t)base + span);
        munmap(base, span);
        im->base = NULL;
    }
    return NULL;
}

void *wa_image_base(const wa_image *im) { return im->base; }
size_t wa_image_span(const wa_image *im) { return im->span; }

/* Undoes wa_image_link, once nothing refers to the artifact's code or data any more. */
void wa_unmap_image(void *base, size_t span) {
    remove_code_ranges((uintptr_t)base, (uintptr_t)base + span);
    munmap(base, span);
}
