/* The artifact checksum: XXH64 (Yann Collet's xxHash, 64-bit variant, written here from its
 * specification), streamed over byte ranges that need not be contiguous.
 *
 * Why not sha256: the checksum is read over every byte of every load, and sha256 (even with the
 * SHA extensions) runs at ~1.5 GB/s where XXH64 runs at ~10 GB/s.  It guards against corruption,
 * not against an adversary: a signed artifact's HMAC covers a sha256 of its bytes as well.
 */
#include <stdint.h>
#include <string.h>

#define XP1 0x9E3779B185EBCA87ull
#define XP2 0xC2B2AE3D27D4EB4Full
#define XP3 0x165667B19E3779F9ull
#define XP4 0x85EBCA77C2B2AE63ull
#define XP5 0x27D4EB2F165667C5ull

static inline uint64_t xrotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }
static inline uint64_t xread64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static inline uint32_t xread32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static inline uint64_t xround(uint64_t acc, uint64_t in) { return xrotl(acc + in * XP2, 31) * XP1; }
static inline uint64_t xmerge(uint64_t h, uint64_t acc) { return (h ^ xround(0, acc)) * XP1 + XP4; }

typedef struct {
    uint64_t acc[4];
    uint64_t total;
    uint8_t buf[32];
    uint32_t nbuf;
} wa_xxh64;

static void xxh64_init(wa_xxh64 *s, uint64_t seed) {
    s->acc[0] = seed + XP1 + XP2;
    s->acc[1] = seed + XP2;
    s->acc[2] = seed;
    s->acc[3] = seed - XP1;
    s->total = 0;
    s->nbuf = 0;
}

static const uint8_t *xxh64_stripes(uint64_t *acc, const uint8_t *p, const uint8_t *end) {
    uint64_t a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
    for (; end - p >= 32; p += 32) {
        a0 = xround(a0, xread64(p));
        a1 = xround(a1, xread64(p + 8));
        a2 = xround(a2, xread64(p + 16));
        a3 = xround(a3, xread64(p + 24));
    }
    acc[0] = a0, acc[1] = a1, acc[2] = a2, acc[3] = a3;
    return p;
}

static void xxh64_update(wa_xxh64 *s, const uint8_t *p, size_t n) {
    const uint8_t *end = p + n;
    s->total += n;
    if (s->nbuf) {
        size_t take = 32 - s->nbuf < n ? 32 - s->nbuf : n;
        memcpy(s->buf + s->nbuf, p, take);
        s->nbuf += (uint32_t)take;
        p += take;
        if (s->nbuf < 32) return;
        xxh64_stripes(s->acc, s->buf, s->buf + 32);
        s->nbuf = 0;
    }
    p = xxh64_stripes(s->acc, p, end);
    memcpy(s->buf, p, (size_t)(end - p));
    s->nbuf = (uint32_t)(end - p);
}

static uint64_t xxh64_digest(const wa_xxh64 *s, uint64_t seed) {
    uint64_t h;
    if (s->total >= 32) {
        h = xrotl(s->acc[0], 1) + xrotl(s->acc[1], 7) + xrotl(s->acc[2], 12) + xrotl(s->acc[3], 18);
        for (int i = 0; i < 4; i++) h = xmerge(h, s->acc[i]);
    } else {
        h = seed + XP5;
    }
    h += s->total;
    const uint8_t *p = s->buf, *end = s->buf + s->nbuf;
    for (; end - p >= 8; p += 8) h = xrotl(h ^ xround(0, xread64(p)), 27) * XP1 + XP4;
    if (end - p >= 4) {
        h = xrotl(h ^ (uint64_t)xread32(p) * XP1, 23) * XP2 + XP3;
        p += 4;
    }
    for (; p < end; p++) h = xrotl(h ^ *p * XP5, 11) * XP1;
    h ^= h >> 33;
    h *= XP2;
    h ^= h >> 29;
    h *= XP3;
    h ^= h >> 32;
    return h;
}

/* XXH64 of one buffer (the compiler seals artifacts with it; the loader diagnoses with it). */
uint64_t wa_checksum(const void *data, size_t n, uint64_t seed) {
    wa_xxh64 s;
    xxh64_init(&s, seed);
    xxh64_update(&s, (const uint8_t *)data, n);
    return xxh64_digest(&s, seed);
}
