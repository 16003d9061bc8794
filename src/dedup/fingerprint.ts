/**
 * Chunk fingerprints: XXH3-128 keyed with the store's 192-byte secret (DESIGN.md section 2).
 * The secret makes fingerprints unguessable across stores; `xxh128WithSecret` is 5-11x faster
 * than the seeded variant. The keyring validates the secret's length (a short one aborts the
 * process inside the hash library).
 */
import { createRequire } from 'node:module';

// Loaded with require, not import: importing a CommonJS package from ESM makes Node scan its
// source for export names, and every codec worker paid about 0.1 CPU-s for that scan of this
// package and lz4-napi (cjs-module-lexer, optimized anew in each thread).
const { xxh3 } = createRequire(import.meta.url)('@node-rs/xxhash') as typeof import('@node-rs/xxhash');

export const FINGERPRINT_BYTES = 16;
const LOW = (1n << 64n) - 1n;

/** The fingerprint as a bigint (a cheap Map key). */
export function fingerprintKey(secret: Buffer, chunk: Uint8Array): bigint {
  return xxh3.xxh128WithSecret(chunk, secret);
}

/** The 16-byte big-endian form stored in the index, recipes and containers. */
export function fingerprintBytes(key: bigint, out: Buffer = Buffer.allocUnsafe(FINGERPRINT_BYTES), at = 0): Buffer {
  out.writeBigUInt64BE(key >> 64n, at);
  out.writeBigUInt64BE(key & LOW, at + 8);
  return out;
}
