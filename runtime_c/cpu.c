/* The host CPU's feature words, as CPUID reports them, and XCR0 (which register states the OS saves
 * across context switches): the loader checks an artifact's required features against them.
 *
 * Under a hypervisor every CPUID instruction exits to it (~6 us each measured here, ~80 us for the
 * leaves below: as slow as reading /proc/cpuinfo), so the words are taken from glibc, which ran
 * CPUID once at process start and keeps the raw registers (__x86_get_cpuid_feature_leaf, glibc
 * 2.33+, <sys/platform/x86.h>); CPUID itself serves only where glibc does not have them. XGETBV
 * does not exit.
 *
 * Features are named as LLVM names them, read from the words (and gated on XCR0) as LLVM's own host
 * detection does (getHostCPUFeatures, llvm/lib/TargetParser/Host.cpp); a leaf the CPU does not have
 * reads as zeros.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

enum {
    WA_CPU_1_ECX, WA_CPU_1_EDX, WA_CPU_7_EBX, WA_CPU_7_ECX, WA_CPU_7_EDX, WA_CPU_7_1_EAX, WA_CPU_7_1_EDX,
    WA_CPU_D_1_EAX, WA_CPU_X1_ECX, WA_CPU_X1_EDX, WA_CPU_X8_EBX, WA_CPU_14_EBX, WA_CPU_19_EBX, WA_CPU_24_EBX,
    WA_CPU_XCR0, WA_CPU_SIGNATURE, WA_CPU_WORDS
};

#if defined(__x86_64__) || defined(__i386__)
enum { EAX, EBX, ECX, EDX };

/* glibc's cache: struct cpuid_feature, and its enum cpuid_index */
typedef struct { uint32_t cpuid[4]; uint32_t active[4]; } glibc_leaf;
/* weak: where the C library has no such function (musl, glibc before 2.33) it is NULL */
extern const glibc_leaf *__x86_get_cpuid_feature_leaf(unsigned int) __attribute__((weak));
enum { G_1, G_7, G_X1, G_D_1, G_X7, G_X8, G_7_1, G_19, G_14, G_COUNT };

/* The registers of CPUID (leaf, sub), zeros past the CPU's highest leaf of that range. */
static void cpuid(uint32_t l, uint32_t sub, uint32_t r[4]) {
    r[0] = r[1] = r[2] = r[3] = 0;
    uint32_t max = __get_cpuid_max(l & 0x80000000u, 0);
    if (l <= max)
        __cpuid_count(l, sub, r[EAX], r[EBX], r[ECX], r[EDX]);
}

static void leaves(uint32_t r[G_COUNT][4]) {
    if (__x86_get_cpuid_feature_leaf) {
        for (unsigned i = 0; i < G_COUNT; i++)
            memcpy(r[i], __x86_get_cpuid_feature_leaf(i)->cpuid, sizeof r[i]);
        return;
    }
    static const uint32_t which[G_COUNT][2] = {
        {1, 0}, {7, 0}, {0x80000001u, 0}, {0xD, 1}, {0x80000007u, 0}, {0x80000008u, 0}, {7, 1}, {0x19, 0}, {0x14, 0}};
    for (unsigned i = 0; i < G_COUNT; i++)
        cpuid(which[i][0], which[i][1], r[i]);
}
#endif

static uint32_t words[WA_CPU_WORDS];
static int have_words;  /* words is filled */

/* The WA_CPU_WORDS words (read on the first call), or NULL where there is no CPUID (other architectures). */
const uint32_t *wa_cpu_words(void) {
#if defined(__x86_64__) || defined(__i386__)
    if (have_words)
        return words;
    uint32_t r[G_COUNT][4];
    leaves(r);
    words[WA_CPU_SIGNATURE] = r[G_1][EAX];
    words[WA_CPU_1_ECX] = r[G_1][ECX]; words[WA_CPU_1_EDX] = r[G_1][EDX];
    words[WA_CPU_7_EBX] = r[G_7][EBX]; words[WA_CPU_7_ECX] = r[G_7][ECX]; words[WA_CPU_7_EDX] = r[G_7][EDX];
    words[WA_CPU_7_1_EAX] = r[G_7_1][EAX]; words[WA_CPU_7_1_EDX] = r[G_7_1][EDX];
    words[WA_CPU_D_1_EAX] = r[G_D_1][EAX];
    words[WA_CPU_X1_ECX] = r[G_X1][ECX]; words[WA_CPU_X1_EDX] = r[G_X1][EDX];
    words[WA_CPU_X8_EBX] = r[G_X8][EBX];
    words[WA_CPU_14_EBX] = r[G_14][EBX];
    words[WA_CPU_19_EBX] = r[G_19][EBX];
    if (r[G_7_1][EDX] & (1u << 19)) {  /* AVX10: its version is in leaf 0x24, which glibc may not keep */
        uint32_t v[4];
        cpuid(0x24, 0, v);
        words[WA_CPU_24_EBX] = v[EBX];
    }
    if (r[G_1][ECX] & (1u << 27)) {  /* OSXSAVE: XGETBV is allowed */
        uint32_t lo, hi;
        __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
        words[WA_CPU_XCR0] = lo;
    }
    have_words = 1;  /* racing first callers write the same words */
    return words;
#else
    return NULL;
#endif
}

/* What a feature needs the OS to save besides its CPUID bit: LLVM's HasAVXSave, HasAVX512Save, HasAMXSave. */
enum { ANY, AVX, AVX512, AMX };

typedef struct {
    const char *name;
    uint8_t word, bit, state;
} feature;

/* sorted by name (strcmp), for bsearch */
static const feature k_features[] = {
    {"64bit", WA_CPU_X1_EDX, 29, ANY}, {"adx", WA_CPU_7_EBX, 19, ANY}, {"aes", WA_CPU_1_ECX, 25, ANY},
    {"amx-bf16", WA_CPU_7_EDX, 22, AMX}, {"amx-complex", WA_CPU_7_1_EDX, 8, AMX},
    {"amx-fp16", WA_CPU_7_1_EAX, 21, AMX}, {"amx-int8", WA_CPU_7_EDX, 25, AMX},
    {"amx-tile", WA_CPU_7_EDX, 24, AMX}, {"avx", WA_CPU_1_ECX, 28, AVX}, {"avx2", WA_CPU_7_EBX, 5, AVX},
    {"avx512bf16", WA_CPU_7_1_EAX, 5, AVX512}, {"avx512bitalg", WA_CPU_7_ECX, 12, AVX512},
    {"avx512bw", WA_CPU_7_EBX, 30, AVX512}, {"avx512cd", WA_CPU_7_EBX, 28, AVX512},
    {"avx512dq", WA_CPU_7_EBX, 17, AVX512}, {"avx512f", WA_CPU_7_EBX, 16, AVX512},
    {"avx512fp16", WA_CPU_7_EDX, 23, AVX512}, {"avx512ifma", WA_CPU_7_EBX, 21, AVX512},
    {"avx512vbmi", WA_CPU_7_ECX, 1, AVX512}, {"avx512vbmi2", WA_CPU_7_ECX, 6, AVX512},
    {"avx512vl", WA_CPU_7_EBX, 31, AVX512}, {"avx512vnni", WA_CPU_7_ECX, 11, AVX512},
    {"avx512vp2intersect", WA_CPU_7_EDX, 8, AVX512}, {"avx512vpopcntdq", WA_CPU_7_ECX, 14, AVX512},
    {"avxifma", WA_CPU_7_1_EAX, 23, AVX}, {"avxneconvert", WA_CPU_7_1_EDX, 5, AVX},
    {"avxvnni", WA_CPU_7_1_EAX, 4, AVX}, {"avxvnniint16", WA_CPU_7_1_EDX, 10, AVX},
    {"avxvnniint8", WA_CPU_7_1_EDX, 4, AVX}, {"bmi", WA_CPU_7_EBX, 3, ANY}, {"bmi2", WA_CPU_7_EBX, 8, ANY},
    {"cldemote", WA_CPU_7_ECX, 25, ANY}, {"clflushopt", WA_CPU_7_EBX, 23, ANY}, {"clwb", WA_CPU_7_EBX, 24, ANY},
    {"clzero", WA_CPU_X8_EBX, 0, ANY}, {"cmov", WA_CPU_1_EDX, 15, ANY}, {"cmpccxadd", WA_CPU_7_1_EAX, 7, ANY},
    {"crc32", WA_CPU_1_ECX, 20, ANY}, {"cx16", WA_CPU_1_ECX, 13, ANY}, {"cx8", WA_CPU_1_EDX, 8, ANY},
    {"enqcmd", WA_CPU_7_ECX, 29, ANY}, {"evex512", WA_CPU_7_EBX, 16, AVX512}, {"f16c", WA_CPU_1_ECX, 29, AVX},
    {"fma", WA_CPU_1_ECX, 12, AVX}, {"fma4", WA_CPU_X1_ECX, 16, AVX}, {"fsgsbase", WA_CPU_7_EBX, 0, ANY},
    {"fxsr", WA_CPU_1_EDX, 24, ANY}, {"gfni", WA_CPU_7_ECX, 8, ANY}, {"hreset", WA_CPU_7_1_EAX, 22, ANY},
    {"invpcid", WA_CPU_7_EBX, 10, ANY}, {"kl", WA_CPU_7_ECX, 23, ANY}, {"lwp", WA_CPU_X1_ECX, 15, ANY},
    {"lzcnt", WA_CPU_X1_ECX, 5, ANY}, {"mmx", WA_CPU_1_EDX, 23, ANY}, {"movbe", WA_CPU_1_ECX, 22, ANY},
    {"movdir64b", WA_CPU_7_ECX, 28, ANY}, {"movdiri", WA_CPU_7_ECX, 27, ANY},
    {"mwaitx", WA_CPU_X1_ECX, 29, ANY}, {"pclmul", WA_CPU_1_ECX, 1, ANY}, {"pconfig", WA_CPU_7_EDX, 18, ANY},
    {"pku", WA_CPU_7_ECX, 4, ANY}, {"popcnt", WA_CPU_1_ECX, 23, ANY}, {"prefetchi", WA_CPU_7_1_EDX, 14, ANY},
    {"prfchw", WA_CPU_X1_ECX, 8, ANY}, {"ptwrite", WA_CPU_14_EBX, 4, ANY}, {"raoint", WA_CPU_7_1_EAX, 3, ANY},
    {"rdpid", WA_CPU_7_ECX, 22, ANY}, {"rdpru", WA_CPU_X8_EBX, 4, ANY}, {"rdrnd", WA_CPU_1_ECX, 30, ANY},
    {"rdseed", WA_CPU_7_EBX, 18, ANY}, {"rtm", WA_CPU_7_EBX, 11, ANY}, {"sahf", WA_CPU_X1_ECX, 0, ANY},
    {"serialize", WA_CPU_7_EDX, 14, ANY}, {"sgx", WA_CPU_7_EBX, 2, ANY}, {"sha", WA_CPU_7_EBX, 29, ANY},
    {"shstk", WA_CPU_7_ECX, 7, ANY}, {"sse", WA_CPU_1_EDX, 25, ANY}, {"sse2", WA_CPU_1_EDX, 26, ANY},
    {"sse3", WA_CPU_1_ECX, 0, ANY}, {"sse4.1", WA_CPU_1_ECX, 19, ANY}, {"sse4.2", WA_CPU_1_ECX, 20, ANY},
    {"sse4a", WA_CPU_X1_ECX, 6, ANY}, {"ssse3", WA_CPU_1_ECX, 9, ANY}, {"tbm", WA_CPU_X1_ECX, 21, ANY},
    {"tsxldtrk", WA_CPU_7_EDX, 16, ANY}, {"uintr", WA_CPU_7_EDX, 5, ANY}, {"usermsr", WA_CPU_7_1_EDX, 15, ANY},
    {"vaes", WA_CPU_7_ECX, 9, AVX}, {"vpclmulqdq", WA_CPU_7_ECX, 10, AVX}, {"waitpkg", WA_CPU_7_ECX, 5, ANY},
    {"wbnoinvd", WA_CPU_X8_EBX, 9, ANY}, {"widekl", WA_CPU_19_EBX, 2, ANY}, {"x87", WA_CPU_1_EDX, 0, ANY},
    {"xop", WA_CPU_X1_ECX, 11, AVX}, {"xsave", WA_CPU_1_ECX, 26, AVX}, {"xsavec", WA_CPU_D_1_EAX, 1, AVX},
    {"xsaveopt", WA_CPU_D_1_EAX, 0, AVX}, {"xsaves", WA_CPU_D_1_EAX, 3, AVX},
};

static int by_name(const void *key, const void *f) { return strcmp((const char *)key, ((const feature *)f)->name); }

static int state_saved(const uint32_t *w, int state) {
    uint32_t xcr0 = w[WA_CPU_XCR0], osxsave = w[WA_CPU_1_ECX] >> 27 & 1;
    int avx = osxsave && (w[WA_CPU_1_ECX] >> 28 & 1) && (xcr0 & 0x6) == 0x6;
    switch (state) {
    case AVX: return avx;
    case AVX512: return avx && (xcr0 & 0xE0) == 0xE0;
    case AMX: return osxsave && (xcr0 & 0x60000) == 0x60000;
    default: return 1;
    }
}

/* 1 if this CPU has the LLVM feature `name`, 0 if not, -1 if CPUID cannot tell (no CPUID, or a name
 * the table does not know). */
int wa_cpu_has(const char *name) {
    const uint32_t *w = wa_cpu_words();
    if (!w)
        return -1;
    if (!strcmp(name, "avx10.1") || !strcmp(name, "avx10.2"))  /* a version (leaf 0x24) on top of a bit */
        return (w[WA_CPU_7_1_EDX] >> 19 & 1) && state_saved(w, AVX512) &&
               (int)(w[WA_CPU_24_EBX] & 0xFF) >= name[6] - '0';
    const feature *f = bsearch(name, k_features, sizeof k_features / sizeof *k_features, sizeof *k_features, by_name);
    if (!f)
        return -1;
    return (w[f->word] >> f->bit & 1) && state_saved(w, f->state);
}

/* The `+` features of an LLVM feature string ("+avx2,-avx512f,...") that CPUID does not show on this
 * CPU, written to out (at most cap bytes, NUL-terminated) comma-separated, each one CPUID cannot tell
 * about prefixed with '?'; returns how many (-1 if out is too small). */
int wa_cpu_lacks(const char *features, char *out, size_t cap) {
    char name[64];
    size_t used = 0;
    int n = 0;
    if (cap)
        out[0] = 0;
    for (const char *p = features; *p;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len > 1 && p[0] == '+') {
            int has = -1;
            if (len - 1 < sizeof name) {
                memcpy(name, p + 1, len - 1);
                name[len - 1] = 0;
                has = wa_cpu_has(name);
            }
            if (has != 1) {
                size_t need = (has < 0) + len - 1 + (n > 0);
                if (used + need + 1 > cap)
                    return -1;
                if (n > 0)
                    out[used++] = ',';
                if (has < 0)
                    out[used++] = '?';
                memcpy(out + used, p + 1, len - 1);
                used += len - 1;
                out[used] = 0;
                n++;
            }
        }
        p += len + (end != NULL);
    }
    return n;
}
