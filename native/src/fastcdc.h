/*
 * FastCDC 2020 cut points (gear hash, normalized chunking level 2) for vtl.
 *
 * The exact rule, shared with the TypeScript reference (src/dedup/chunker-ts.ts):
 * - h is a 32-bit gear hash that restarts at 0 at every chunk start:
 *   h = (h << 1) + gear[byte]  (mod 2^32). After 32 bytes a byte's contribution has shifted out,
 *   so h after chunk byte k depends only on bytes k-31..k.
 * - A chunk of length j (min <= j < max) ends when h after its last byte has no bit of the mask
 *   set: mask_s (harder, log2(avg)+2 high bits) for j < avg, mask_l (easier, log2(avg)-2 high
 *   bits) for j >= avg. The first such j wins; at j == max the cut is forced.
 * - Because of the 32-byte window, rolling may start at chunk offset min-32 with h = 0 and give
 *   the same hashes as rolling from the chunk start: bytes before min-32 are skipped.
 */
#ifndef VTL_FASTCDC_H
#define VTL_FASTCDC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct vtl_cdc {
  uint32_t min, avg, max;
  uint32_t mask_s, mask_l;
  uint32_t gear[256];
} vtl_cdc;

/* Returns NULL on success, else a static message naming the bad parameter. */
const char *vtl_cdc_init(vtl_cdc *c, uint32_t min, uint32_t avg, uint32_t max, const uint32_t gear[256]);

/* Most cut points vtl_cdc_cut_points can return for a buffer of len bytes. */
size_t vtl_cdc_max_cuts(const vtl_cdc *c, size_t len);

/*
 * Writes the ends of the chunks of buf (exclusive offsets, ascending) to out, which holds
 * vtl_cdc_max_cuts(c, len) entries; returns their count. Without final, the bytes after the
 * last end are an unfinished chunk. len must be below 2^32.
 */
size_t vtl_cdc_cut_points(const vtl_cdc *c, const uint8_t *buf, size_t len, int final, uint32_t *out);

#ifdef __cplusplus
}
#endif

#endif
