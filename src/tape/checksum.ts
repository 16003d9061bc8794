/**
 * Streaming per-tape-file checksum: XXH3-128 of the file's bytes (DESIGN.md section 2).
 *
 * `@node-rs/xxhash` has no streaming 128-bit XXH3, so this uses hash-wasm's (about 6 GB/s
 * here, identical digests to `xxh3.xxh128`). One WebAssembly hasher serves every open file:
 * each FileChecksum keeps its own saved state and loads it around an update, which costs a
 * few hundred bytes of copying per record.
 */
import { createXXHash128 } from 'hash-wasm';

export const CHECKSUM_ALGORITHM = 'xxh3-128';

const hasher = await createXXHash128();
hasher.init();
const INITIAL_STATE = hasher.save();

export class FileChecksum {
  private state: Uint8Array = INITIAL_STATE;
  /** Bytes hashed so far. */
  bytes = 0;

  update(data: Uint8Array): void {
    hasher.load(this.state);
    hasher.update(data);
    this.state = hasher.save();
    this.bytes += data.length;
  }

  /** 32 hex digits; does not end the stream (more updates may follow). */
  digest(): string {
    hasher.load(this.state);
    return hasher.digest('hex');
  }
}

/** Checksum of an empty tape file. */
export const EMPTY_CHECKSUM = new FileChecksum().digest();
