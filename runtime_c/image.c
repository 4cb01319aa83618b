/* Mapping an artifact (an ELF shared object made by our linker) from verified bytes in memory.
 *
 * Why not dlopen: dlopen needs a file (so a copy into a memfd), takes ~100 us even for a tiny
 * object, and can never forget a path it has seen.  Our artifacts are simple: PT_LOAD segments,
 * a dynamic section, RELATIVE relocations and, for the odd libcall (memcpy, floorf, ...), symbol
 * relocations resolved in the process's global scope.  Anything else is refused, loudly.
 * The bytes were checked (digest, signature) before they get here; the checks below keep a
 * malformed image from making us write outside the region we mapped.
 */
#include <elf.h>
#include <stdio.h>

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

#define IMG_FAIL(...) do { snprintf(err, errlen, __VA_ARGS__); goto fail; } while (0)

static int in_file(size_t off, size_t n, size_t len) { return off <= len && n <= len - off; }

/* Maps the shared object in `file` and returns the address of its symbol `name` (NULL with a
 * message in err on failure); *base_out and *span_out receive the mapping, for wa_unmap_image. */
void *wa_map_image(const char *file, size_t len, const char *name, void **base_out, size_t *span_out,
                   char *err, size_t errlen) {
    const Elf64_Ehdr *eh = (const Elf64_Ehdr *)file;
    const uint8_t *bytes = (const uint8_t *)file;
    uint8_t *base = MAP_FAILED;
    size_t span = 0, page = (size_t)sysconf(_SC_PAGESIZE);
    void *result = NULL;
    if (len < sizeof *eh || memcmp(eh->e_ident, ELFMAG, SELFMAG) || eh->e_ident[EI_CLASS] != ELFCLASS64 ||
        eh->e_ident[EI_DATA] != ELFDATA2LSB ||
        eh->e_type != ET_DYN || eh->e_machine != WA_EM || eh->e_phentsize != sizeof(Elf64_Phdr) ||
        !in_file(eh->e_phoff, (size_t)eh->e_phnum * sizeof(Elf64_Phdr), len))
        IMG_FAIL("not a shared object for this machine");
    const Elf64_Phdr *ph = (const Elf64_Phdr *)(bytes + eh->e_phoff);
    const Elf64_Phdr *dyn = NULL;
    for (int i = 0; i < eh->e_phnum; i++) {
        if (ph[i].p_type == PT_LOAD) {
            if (ph[i].p_filesz > ph[i].p_memsz || !in_file(ph[i].p_offset, ph[i].p_filesz, len) ||
                ph[i].p_vaddr + ph[i].p_memsz < ph[i].p_vaddr)
                IMG_FAIL("a segment lies outside the file");
            size_t end = (ph[i].p_vaddr + ph[i].p_memsz + page - 1) & ~(page - 1);
            if (end > span) span = end;
        } else if (ph[i].p_type == PT_DYNAMIC) {
            dyn = &ph[i];
        } else if (ph[i].p_type == PT_TLS || ph[i].p_type == PT_INTERP) {
            IMG_FAIL("unsupported program header %u", ph[i].p_type);
        }
    }
    if (!span || span > (1ull << 32) || !dyn) IMG_FAIL("no loadable segments or no dynamic section");
    base = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED) IMG_FAIL("cannot map %zu bytes", span);
    for (int i = 0; i < eh->e_phnum; i++)
        if (ph[i].p_type == PT_LOAD) memcpy(base + ph[i].p_vaddr, bytes + ph[i].p_offset, ph[i].p_filesz);

    /* the dynamic section: relocation tables and the symbol table */
    if (dyn->p_vaddr + dyn->p_memsz > span) IMG_FAIL("dynamic section outside the image");
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
    if (!symtab || !strtab || strtab <= symtab || strtab + strsz > span || rela + relasz > span ||
        jmprel + pltrelsz > span)
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
        if (syms[i].st_name < strsz && syms[i].st_shndx != SHN_UNDEF && !strcmp(strs + syms[i].st_name, name))
            result = base + syms[i].st_value;
    if (!result) IMG_FAIL("no symbol %s", name);

    /* final protections, as ld.so would set them: each segment's own, then RELRO read-only */
    for (int i = 0; i < eh->e_phnum; i++) {
        if (ph[i].p_type != PT_LOAD && ph[i].p_type != PT_GNU_RELRO) continue;
        uintptr_t lo = ph[i].p_vaddr & ~(page - 1), hi = (ph[i].p_vaddr + ph[i].p_memsz + page - 1) & ~(page - 1);
        if (ph[i].p_type == PT_GNU_RELRO) hi = (ph[i].p_vaddr + ph[i].p_memsz) & ~(page - 1);
        if (hi > span || lo >= hi) continue;
        int prot = ph[i].p_type == PT_GNU_RELRO ? PROT_READ
                   : ((ph[i].p_flags & PF_R) ? PROT_READ : 0) | ((ph[i].p_flags & PF_W) ? PROT_WRITE : 0) |
                     ((ph[i].p_flags & PF_X) ? PROT_EXEC : 0);
        if (mprotect(base + lo, hi - lo, prot) != 0) IMG_FAIL("mprotect failed");
        if (ph[i].p_type == PT_LOAD && (ph[i].p_flags & PF_X)) {
            __builtin___clear_cache((char *)base + lo, (char *)base + hi);
            if (add_code_range((uintptr_t)base + lo, (uintptr_t)base + hi) != 0) IMG_FAIL("too many code ranges");
        }
    }
    *base_out = base;
    *span_out = span;
    return result;
fail:
    if (base != MAP_FAILED) {
        remove_code_ranges((uintptr_t)base, (uintptr_t)base + span);
        munmap(base, span);
    }
    return NULL;
}

/* Undoes wa_map_image, once nothing refers to the artifact's code or data any more. */
void wa_unmap_image(void *base, size_t span) {
    remove_code_ranges((uintptr_t)base, (uintptr_t)base + span);
    munmap(base, span);
}
