/*
 * Container chunk frames (docs/FORMATS.md 2.2) sealed and opened in C: LZ4 then AES-256-GCM,
 * byte for byte the layout the TypeScript codec in src/dedup/container.ts reads and writes.
 *
 * Why C: per chunk, Node's cipher objects cost several microseconds to set up and lz4-napi
 * compresses at under half of liblz4's rate here; on 8 KiB chunks those two were most of the
 * ingest CPU. Here one GCM context serves a whole batch (only the nonce changes per frame).
 *
 * LZ4 is the system's liblz4 (liblz4.so.1, present wherever apt or systemd is), loaded at run
 * time so that building vtl needs no LZ4 headers; AES-GCM is OpenSSL's EVP interface, whose
 * symbols every Node binary exports. Both produce the standard formats, so frames sealed here
 * open in the TypeScript codec and the other way round.
 */
#ifndef VTL_FRAMES_H
#define VTL_FRAMES_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define VTL_FRAME_HEADER 16
#define VTL_FRAME_OVERHEAD 48 /* header, encrypted fingerprint, GCM tag */
#define VTL_MAX_CHUNK (16u * 1024 * 1024)

/* Loads liblz4 once per process; returns NULL when usable, else why not (a static string). */
const char* vtl_frames_init(void);

typedef struct vtl_frame_ctx vtl_frame_ctx;

/* A context for frames under one 32-byte container data key; NULL when out of memory. */
vtl_frame_ctx* vtl_frame_ctx_new(const uint8_t key[32]);
void vtl_frame_ctx_free(vtl_frame_ctx* ctx);

/*
 * Seals `raw` as frame `seq` of container `container` into `out`, which has room for
 * raw_len + VTL_FRAME_OVERHEAD bytes. Returns the frame's length, or 0 when OpenSSL fails.
 */
size_t vtl_seal_frame(vtl_frame_ctx* ctx, uint32_t container, uint32_t seq, const uint8_t fp[16],
                      const uint8_t* raw, uint32_t raw_len, uint8_t* out);

/* Why a frame does not open; the strings are the TypeScript codec's reasons. */
typedef enum {
  VTL_FRAME_OK = 0,
  VTL_FRAME_SHORT,
  VTL_FRAME_BAD_TYPE,
  VTL_FRAME_BAD_FLAGS,
  VTL_FRAME_BAD_RAW_LENGTH,
  VTL_FRAME_LENGTHS_DISAGREE,
  VTL_FRAME_LENGTH_VS_HEADER,
  VTL_FRAME_AUTH_FAILED,
  VTL_FRAME_WRONG_CHUNK,
  VTL_FRAME_LZ4_FAILED,
  VTL_FRAME_LZ4_WRONG_LENGTH,
  VTL_FRAME_RAW_VS_INDEX,
  VTL_FRAME_NO_MEMORY,
} vtl_frame_status;

const char* vtl_frame_reason(vtl_frame_status status);

/*
 * Verifies, decrypts and decompresses `frame` (frame_len bytes) of container `container` into
 * `out`, which has room for `raw_len` bytes: the chunk's raw length the index gives, which the
 * frame must agree with. Nothing unauthenticated is decompressed. On failure `out` may hold
 * garbage, which the caller must not use.
 */
vtl_frame_status vtl_open_frame(vtl_frame_ctx* ctx, uint32_t container, const uint8_t fp[16],
                                const uint8_t* frame, size_t frame_len, uint8_t* out, uint32_t raw_len);

#ifdef __cplusplus
}
#endif

#endif
