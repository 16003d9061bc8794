#include "fastcdc.h"

/* Window of the 32-bit gear hash: a byte's contribution is shifted out after this many bytes. */
#define WINDOW 32u

/* Keeps the compiler from re-associating x into the hash chain (that lengthens the chain). */
#if defined(__GNUC__)
#define OPAQUE(x) __asm__("" : "+r"(x))
#define UNLIKELY(x) __builtin_expect(!!(x), 0)
/* A prefetch never faults, so it may point past the buffer; uintptr_t keeps the C defined. */
#define PREFETCH(base, off) __builtin_prefetch((const void *)((uintptr_t)(base) + (off)))
#else
#define OPAQUE(x) (void)0
#define UNLIKELY(x) (x)
#define PREFETCH(base, off) (void)0
#endif

static int log2_exact(uint32_t v) {
  int b = 0;
  if (v == 0 || (v & (v - 1)) != 0) return -1;
  while ((1u << b) != v) b++;
  return b;
}

static uint32_t high_bits(int n) { return n >= 32 ? 0xFFFFFFFFu : ~(0xFFFFFFFFu >> n); }

const char *vtl_cdc_init(vtl_cdc *c, uint32_t min, uint32_t avg, uint32_t max, const uint32_t gear[256]) {
  int bits = log2_exact(avg);
  if (bits < 0) return "avg must be a power of two";
  if (min < 64) return "min must be at least 64";
  if (!(min < avg && avg < max)) return "params must satisfy min < avg < max";
  if (avg < 256 || avg > (1u << 20)) return "avg must be between 256 and 1 MiB";
  if (max > (4u << 20)) return "max must be at most 4 MiB";
  c->min = min;
  c->avg = avg;
  c->max = max;
  c->mask_s = high_bits(bits + 2);
  c->mask_l = high_bits(bits - 2);
  for (int i = 0; i < 256; i++) c->gear[i] = gear[i];
  return 0;
}

size_t vtl_cdc_max_cuts(const vtl_cdc *c, size_t len) { return len / c->min + 1; }

/*
 * Rolls bytes p[i..to) into *hp; returns k + 1 for the first byte k after which (h & mask) == 0,
 * else 0. Four bytes per step: h4 = (h << 4) + e, where e and the intermediate hashes do not
 * depend on h's chain, so the serial chain is two instructions per four bytes.
 */
#define ROLL4(OFF)                                                                          \
  do {                                                                                      \
    uint32_t g1 = g[p[i + OFF]], g2 = g[p[i + OFF + 1]];                                    \
    uint32_t g3 = g[p[i + OFF + 2]], g4 = g[p[i + OFF + 3]];                                \
    uint32_t a = (g1 << 1) + g2, b = (g3 << 1) + g4;                                        \
    uint32_t e = (a << 2) + b;                                                              \
    OPAQUE(e);                                                                              \
    uint32_t h1 = (h << 1) + g1, h2 = (h << 2) + a;                                         \
    uint32_t h3 = (h2 << 1) + g3, h4 = (h << 4) + e;                                        \
    if (UNLIKELY(!(h1 & mask))) { *hp = h1; return i + OFF + 1; }                           \
    if (UNLIKELY(!(h2 & mask))) { *hp = h2; return i + OFF + 2; }                           \
    if (UNLIKELY(!(h3 & mask))) { *hp = h3; return i + OFF + 3; }                           \
    h = h4;                                                                                 \
    if (UNLIKELY(!(h & mask))) { *hp = h; return i + OFF + 4; }                             \
  } while (0)

/*
 * Prefetch distances, measured on a 64 MiB buffer: the hardware prefetcher loses the stream at
 * every skipped region, so fetch ahead of the scan and ahead of where the next chunk's rolling
 * would start if the cut came now (min bytes further).
 */
#define PREFETCH_AHEAD 512u

static size_t scan(const uint32_t *g, const uint8_t *p, size_t i, size_t to, uint32_t *hp,
                   uint32_t mask, size_t next_start) {
  uint32_t h = *hp;
  for (; i + 16 <= to; i += 16) {
    PREFETCH(p, i + PREFETCH_AHEAD);
    PREFETCH(p, i + next_start + PREFETCH_AHEAD);
    ROLL4(0);
    ROLL4(4);
    ROLL4(8);
    ROLL4(12);
  }
  for (; i < to; i++) {
    h = (h << 1) + g[p[i]];
    if (!(h & mask)) { *hp = h; return i + 1; }
  }
  *hp = h;
  return 0;
}

/* Length of the chunk at p (n bytes available), or 0 when it is not decided yet (!final). */
static size_t chunk_length(const vtl_cdc *c, const uint8_t *p, size_t n, int final) {
  if (n < c->min) return final ? n : 0;
  size_t limit = n < c->max ? n : c->max;
  uint32_t h = 0;
  for (size_t k = c->min - WINDOW; k < c->min - 1; k++) h = (h << 1) + c->gear[p[k]];
  size_t normal = c->avg - 1 < limit ? c->avg - 1 : limit;
  size_t len = scan(c->gear, p, c->min - 1, normal, &h, c->mask_s, c->min);
  if (!len && normal < limit) len = scan(c->gear, p, normal, limit, &h, c->mask_l, c->min);
  if (len) return len;
  if (n >= c->max) return c->max;
  return final ? n : 0;
}

size_t vtl_cdc_cut_points(const vtl_cdc *c, const uint8_t *buf, size_t len, int final, uint32_t *out) {
  size_t start = 0, count = 0;
  while (start < len) {
    size_t l = chunk_length(c, buf + start, len - start, final);
    if (!l) break;
    start += l;
    out[count++] = (uint32_t)start;
  }
  return count;
}
