/**
 * Gear table of the chunker: 256 pseudo-random 32-bit values derived from the store's 32-byte
 * chunking seed, so cut points differ between stores.
 *
 * Format (fixed once a store exists: changing it moves every cut point): entry 8*i+j is the
 * little-endian uint32 at byte 4*j of SHA-256("vtl-gear-v1" || seed || byte i), i in 0..31.
 */
import { createHash } from 'node:crypto';

export const GEAR_SEED_BYTES = 32;

const DOMAIN = Buffer.from('vtl-gear-v1', 'ascii');

export function gearTable(seed: Uint8Array): Uint32Array {
  if (!(seed instanceof Uint8Array) || seed.length !== GEAR_SEED_BYTES) {
    throw new TypeError(`gear seed must be ${GEAR_SEED_BYTES} bytes`);
  }
  const table = new Uint32Array(256);
  for (let i = 0; i < 32; i++) {
    const digest = createHash('sha256').update(DOMAIN).update(seed).update(Uint8Array.of(i)).digest();
    for (let j = 0; j < 8; j++) table[i * 8 + j] = digest.readUInt32LE(j * 4);
  }
  return table;
}
