/* Chunk frames in C; see frames.h for what and why, docs/FORMATS.md 2.2 for the layout. */
#include "frames.h"

#include <dlfcn.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define FRAME_TYPE 1
#define FLAG_LZ4 1
#define NONCE_FRAME 1
#define MIN_COMPRESS 16 /* below this LZ4 cannot shrink a chunk (as in the TypeScript codec) */
#define FILE_HEADER 32
#define FORMAT_VERSION 1

/* The few liblz4 entry points vtl uses; their ABI has been stable since liblz4 1.7. */
static struct {
  int (*size_of_state)(void);
  int (*compress_ext_state)(void* state, const char* src, char* dst, int src_size, int dst_capacity, int acceleration);
  int (*decompress_safe)(const char* src, char* dst, int compressed_size, int dst_capacity);
} lz4;
static const char* lz4_error = "not loaded";
static pthread_once_t lz4_once = PTHREAD_ONCE_INIT;

static void load_lz4(void) {
  void* lib = dlopen("liblz4.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    lz4_error = "liblz4.so.1 not found (Debian: apt-get install liblz4-1)";
    return;
  }
  *(void**)&lz4.size_of_state = dlsym(lib, "LZ4_sizeofState");
  *(void**)&lz4.compress_ext_state = dlsym(lib, "LZ4_compress_fast_extState");
  *(void**)&lz4.decompress_safe = dlsym(lib, "LZ4_decompress_safe");
  if (!lz4.size_of_state || !lz4.compress_ext_state || !lz4.decompress_safe) {
    lz4_error = "liblz4.so.1 lacks LZ4_compress_fast_extState or LZ4_decompress_safe (too old)";
    return;
  }
  lz4_error = NULL;
}

const char* vtl_frames_init(void) {
  pthread_once(&lz4_once, load_lz4);
  return lz4_error;
}

struct vtl_frame_ctx {
  uint8_t key[32];
  EVP_CIPHER_CTX* enc; /* made at first use, key set once: a frame only changes the nonce */
  EVP_CIPHER_CTX* dec;
  void* lz4_state;
  uint8_t* scratch; /* an lz4 payload's plaintext, before it is decompressed */
  size_t scratch_cap;
};

vtl_frame_ctx* vtl_frame_ctx_new(const uint8_t key[32]) {
  vtl_frame_ctx* ctx = calloc(1, sizeof *ctx);
  if (!ctx) return NULL;
  memcpy(ctx->key, key, 32);
  return ctx;
}

void vtl_frame_ctx_free(vtl_frame_ctx* ctx) {
  if (!ctx) return;
  EVP_CIPHER_CTX_free(ctx->enc);
  EVP_CIPHER_CTX_free(ctx->dec);
  free(ctx->lz4_state);
  free(ctx->scratch);
  OPENSSL_cleanse(ctx->key, sizeof ctx->key);
  free(ctx);
}

static void put32(uint8_t* p, uint32_t v) {
  p[0] = (uint8_t)v;
  p[1] = (uint8_t)(v >> 8);
  p[2] = (uint8_t)(v >> 16);
  p[3] = (uint8_t)(v >> 24);
}

static uint32_t get32(const uint8_t* p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Nonce: u32 domain, then seq as u64 (its high half is 0 for a u32 seq). */
static void frame_nonce(uint8_t iv[12], uint32_t seq) {
  put32(iv, NONCE_FRAME);
  put32(iv + 4, seq);
  put32(iv + 8, 0);
}

/* AAD: the file header as the container id implies it, then the frame header. */
static void frame_aad(uint8_t aad[FILE_HEADER + VTL_FRAME_HEADER], uint32_t container, const uint8_t* frame_header) {
  memset(aad, 0, FILE_HEADER);
  memcpy(aad, "VTLCONTR", 8);
  aad[8] = FORMAT_VERSION;
  aad[10] = FILE_HEADER;
  put32(aad + 12, container);
  memcpy(aad + FILE_HEADER, frame_header, VTL_FRAME_HEADER);
}

static EVP_CIPHER_CTX* cipher(vtl_frame_ctx* ctx, int encrypt) {
  EVP_CIPHER_CTX** slot = encrypt ? &ctx->enc : &ctx->dec;
  if (*slot) return *slot;
  EVP_CIPHER_CTX* c = EVP_CIPHER_CTX_new();
  if (!c) return NULL;
  if (EVP_CipherInit_ex(c, EVP_aes_256_gcm(), NULL, ctx->key, NULL, encrypt) != 1) {
    EVP_CIPHER_CTX_free(c);
    return NULL;
  }
  *slot = c;
  return c;
}

/* Compresses into dst only if the result is strictly smaller; returns its length or 0. */
static uint32_t compress_smaller(vtl_frame_ctx* ctx, const uint8_t* raw, uint32_t raw_len, uint8_t* dst) {
  if (raw_len < MIN_COMPRESS || lz4_error) return 0;
  if (!ctx->lz4_state && !(ctx->lz4_state = malloc((size_t)lz4.size_of_state()))) return 0;
  int n = lz4.compress_ext_state(ctx->lz4_state, (const char*)raw, (char*)dst, (int)raw_len, (int)raw_len - 1, 1);
  return n > 0 ? (uint32_t)n : 0;
}

size_t vtl_seal_frame(vtl_frame_ctx* ctx, uint32_t container, uint32_t seq, const uint8_t fp[16],
                      const uint8_t* raw, uint32_t raw_len, uint8_t* out) {
  EVP_CIPHER_CTX* c = cipher(ctx, 1);
  if (!c || raw_len > VTL_MAX_CHUNK) return 0;
  uint8_t* payload = out + VTL_FRAME_HEADER + 16;
  uint32_t p = compress_smaller(ctx, raw, raw_len, payload);
  const uint8_t* plain = p ? payload : raw; /* compressed: encrypted in place */
  if (!p) p = raw_len;
  put32(out, seq);
  put32(out + 4, p);
  put32(out + 8, raw_len);
  out[12] = plain == payload ? FLAG_LZ4 : 0;
  out[13] = FRAME_TYPE;
  out[14] = out[15] = 0;
  uint8_t iv[12], aad[FILE_HEADER + VTL_FRAME_HEADER];
  frame_nonce(iv, seq);
  frame_aad(aad, container, out);
  int n;
  /* An empty payload skips its update: OpenSSL takes an update without output as AAD. */
  if (EVP_EncryptInit_ex(c, NULL, NULL, NULL, iv) != 1 || EVP_EncryptUpdate(c, NULL, &n, aad, sizeof aad) != 1 ||
      EVP_EncryptUpdate(c, out + VTL_FRAME_HEADER, &n, fp, 16) != 1 ||
      (p && EVP_EncryptUpdate(c, payload, &n, plain, (int)p) != 1) || EVP_EncryptFinal_ex(c, payload + p, &n) != 1 ||
      EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, 16, payload + p) != 1) {
    return 0;
  }
  return (size_t)p + VTL_FRAME_OVERHEAD;
}

/* The header checks of the TypeScript codec's parseFrameHeader, in the same order. */
static vtl_frame_status check_header(const uint8_t* h, uint32_t* payload_len, uint32_t* raw_len, int* lz4_flag) {
  uint32_t p = get32(h + 4), r = get32(h + 8);
  uint8_t flags = h[12];
  if (h[13] != FRAME_TYPE || h[14] || h[15]) return VTL_FRAME_BAD_TYPE;
  if (flags != 0 && flags != FLAG_LZ4) return VTL_FRAME_BAD_FLAGS;
  if (r > VTL_MAX_CHUNK) return VTL_FRAME_BAD_RAW_LENGTH;
  if (flags == FLAG_LZ4 ? (p >= r || p == 0) : p != r) return VTL_FRAME_LENGTHS_DISAGREE;
  *payload_len = p;
  *raw_len = r;
  *lz4_flag = flags == FLAG_LZ4;
  return VTL_FRAME_OK;
}

static uint8_t* scratch(vtl_frame_ctx* ctx, size_t n) {
  if (n == 0) n = 1;
  if (ctx->scratch_cap < n) {
    free(ctx->scratch);
    ctx->scratch_cap = 0;
    if (!(ctx->scratch = malloc(n))) return NULL;
    ctx->scratch_cap = n;
  }
  return ctx->scratch;
}

vtl_frame_status vtl_open_frame(vtl_frame_ctx* ctx, uint32_t container, const uint8_t fp[16],
                                const uint8_t* frame, size_t frame_len, uint8_t* out, uint32_t raw_len) {
  if (frame_len < VTL_FRAME_OVERHEAD) return VTL_FRAME_SHORT;
  uint32_t p, r;
  int lz4_flag;
  vtl_frame_status st = check_header(frame, &p, &r, &lz4_flag);
  if (st != VTL_FRAME_OK) return st;
  if ((size_t)p + VTL_FRAME_OVERHEAD != frame_len) return VTL_FRAME_LENGTH_VS_HEADER;
  if (lz4_flag && lz4_error) return VTL_FRAME_LZ4_FAILED;
  EVP_CIPHER_CTX* c = cipher(ctx, 0);
  /* out has room for raw_len bytes only: a frame that disagrees decrypts aside. */
  int aside = lz4_flag || r != raw_len;
  uint8_t* plain = aside ? scratch(ctx, p) : out;
  if (!c || (aside && !plain)) return VTL_FRAME_NO_MEMORY;
  uint8_t iv[12], aad[FILE_HEADER + VTL_FRAME_HEADER], inner_fp[16];
  frame_nonce(iv, get32(frame));
  frame_aad(aad, container, frame);
  const uint8_t* ct = frame + VTL_FRAME_HEADER;
  int n;
  /* An empty payload skips its update: OpenSSL takes an update without output as AAD. */
  if (EVP_DecryptInit_ex(c, NULL, NULL, NULL, iv) != 1 || EVP_DecryptUpdate(c, NULL, &n, aad, sizeof aad) != 1 ||
      EVP_DecryptUpdate(c, inner_fp, &n, ct, 16) != 1 || (p && EVP_DecryptUpdate(c, plain, &n, ct + 16, (int)p) != 1) ||
      EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, 16, (void*)(ct + 16 + p)) != 1 ||
      EVP_DecryptFinal_ex(c, plain + p, &n) != 1) {
    return VTL_FRAME_AUTH_FAILED;
  }
  if (CRYPTO_memcmp(inner_fp, fp, 16) != 0) return VTL_FRAME_WRONG_CHUNK;
  if (r != raw_len) return VTL_FRAME_RAW_VS_INDEX;
  if (!lz4_flag) return VTL_FRAME_OK;
  int got = lz4.decompress_safe((const char*)plain, (char*)out, (int)p, (int)r);
  if (got < 0) return VTL_FRAME_LZ4_FAILED;
  return (uint32_t)got == r ? VTL_FRAME_OK : VTL_FRAME_LZ4_WRONG_LENGTH;
}

const char* vtl_frame_reason(vtl_frame_status status) {
  switch (status) {
    case VTL_FRAME_OK: return "ok";
    case VTL_FRAME_SHORT: return "frame too short";
    case VTL_FRAME_BAD_TYPE: return "bad frame header (type or reserved bits)";
    case VTL_FRAME_BAD_FLAGS: return "bad frame header (unknown flags)";
    case VTL_FRAME_BAD_RAW_LENGTH: return "bad frame header (raw length out of range)";
    case VTL_FRAME_LENGTHS_DISAGREE: return "bad frame header (payload and raw lengths disagree)";
    case VTL_FRAME_LENGTH_VS_HEADER: return "frame length disagrees with its header";
    case VTL_FRAME_AUTH_FAILED: return "authentication failed (GCM tag mismatch)";
    case VTL_FRAME_WRONG_CHUNK: return "the frame holds a different chunk (fingerprint mismatch)";
    case VTL_FRAME_LZ4_FAILED: return "lz4 payload does not decompress";
    case VTL_FRAME_LZ4_WRONG_LENGTH: return "lz4 payload decompresses to the wrong length";
    case VTL_FRAME_RAW_VS_INDEX: return "frame raw length disagrees with the index";
    case VTL_FRAME_NO_MEMORY: return "out of memory while opening the frame";
  }
  return "unknown frame error";
}
