/**
 * Streaming per-tape-file checksum.
 *
 * `@node-rs/xxhash` 1.7 streams only the 64-bit XXH3 (its `Xxh3` class has no 128-bit digest),
 * so the 128-bit check is two independent streaming XXH3-64 states with different seeds,
 * concatenated (about 10 GB/s here). The algorithm name is stored with the tape map so a later
 * switch to a true streaming XXH3-128 can tell old values apart.
 */
import { xxh3 } from '@node-rs/xxhash';

export const CHECKSUM_ALGORITHM = 'xxh3-64x2';

const SEED_A = 0n;
const SEED_B = 0x9e3779b97f4a7c15n;

export class FileChecksum {
  private readonly a = xxh3.Xxh3.withSeed(SEED_A);
  private readonly b = xxh3.Xxh3.withSeed(SEED_B);
  /** Bytes hashed so far. */
  bytes = 0;

  update(data: Uint8Array): void {
    this.a.update(data);
    this.b.update(data);
    this.bytes += data.length;
  }

  /** 32 hex digits; does not end the stream (more updates may follow). */
  digest(): string {
    return this.a.digest().toString(16).padStart(16, '0') + this.b.digest().toString(16).padStart(16, '0');
  }
}

/** Checksum of an empty tape file. */
export const EMPTY_CHECKSUM = new FileChecksum().digest();
