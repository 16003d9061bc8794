/**
 * Key wrapping with AES-256-GCM under a master key (used by the keyring only).
 *
 * Guarantees:
 * - A wrapped blob names the master key that wrapped it (its key id), so during a master key
 *   rotation every blob can be unwrapped with whichever master key it names.
 * - The caller's context (e.g. "data key of container 42") is bound in as associated data with
 *   the blob's own header, so a blob moved to another context, or edited anywhere, fails to
 *   unwrap. Nonces are 96 random bits per wrap (fine for far fewer than 2^32 wraps per key).
 * - Errors never contain key material.
 *
 * Blob layout (all offsets in bytes):
 *   0   u8     version (1)
 *   1   8      master key id (first 8 bytes of HMAC-SHA256(masterKey, "vtl/master-key-id/v1"))
 *   9   12     nonce
 *   21  n      ciphertext (same length as the plaintext)
 *   21+n 16    GCM tag
 * Associated data: context bytes || blob bytes 0..9.
 */
import { createCipheriv, createDecipheriv, createHmac, randomBytes } from 'node:crypto';

export const WRAP_VERSION = 1;
export const WRAP_OVERHEAD = 1 + 8 + 12 + 16;
export const MASTER_KEY_BYTES = 32;
const HEAD = 9;

/** Hex id of a master key: stable, one-way (it reveals nothing about the key). */
export function masterKeyIdOf(masterKey: Buffer): string {
  return createHmac('sha256', masterKey).update('vtl/master-key-id/v1').digest().subarray(0, 8).toString('hex');
}

export function wrap(masterKey: Buffer, keyId: string, context: Buffer, plaintext: Buffer): Buffer {
  const out = Buffer.alloc(WRAP_OVERHEAD + plaintext.length);
  out[0] = WRAP_VERSION;
  out.write(keyId, 1, 8, 'hex');
  randomBytes(12).copy(out, HEAD);
  const cipher = createCipheriv('aes-256-gcm', masterKey, out.subarray(HEAD, HEAD + 12));
  cipher.setAAD(Buffer.concat([context, out.subarray(0, HEAD)]));
  const body = cipher.update(plaintext);
  cipher.final();
  body.copy(out, HEAD + 12);
  cipher.getAuthTag().copy(out, HEAD + 12 + plaintext.length);
  return out;
}

/** The master key id a blob names, or undefined if the blob is malformed. */
export function wrappedKeyId(blob: Buffer): string | undefined {
  if (blob.length < WRAP_OVERHEAD || blob[0] !== WRAP_VERSION) return undefined;
  return blob.subarray(1, HEAD).toString('hex');
}

/** Unwraps or returns undefined when the blob does not authenticate under this key/context. */
export function unwrap(masterKey: Buffer, context: Buffer, blob: Buffer): Buffer | undefined {
  if (wrappedKeyId(blob) === undefined) return undefined;
  const n = blob.length - WRAP_OVERHEAD;
  const decipher = createDecipheriv('aes-256-gcm', masterKey, blob.subarray(HEAD, HEAD + 12));
  decipher.setAAD(Buffer.concat([context, blob.subarray(0, HEAD)]));
  decipher.setAuthTag(blob.subarray(HEAD + 12 + n));
  const plain = decipher.update(blob.subarray(HEAD + 12, HEAD + 12 + n));
  try {
    decipher.final();
  } catch {
    plain.fill(0); // never hand out unauthenticated bytes
    return undefined;
  }
  return plain;
}
