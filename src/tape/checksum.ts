/**
 * Streaming per-tape-file checksum: XXH3-128 of the file's bytes (DESIGN.md section 2).
 *
 * `@node-rs/xxhash` has no streaming 128-bit XXH3, so this uses hash-wasm's (about 6 GB/s
 * here, identical digests to `xxh3.xxh128`). One WebAssembly hasher serves every open file:
 * the file that updated last keeps its state in the hasher, and only a switch to another file
 * saves one state and loads the other (a few hundred bytes), so a tape read or written record
 * by record pays for no copy of the state per record.
 */
import { createXXHash128 } from 'hash-wasm';

export const CHECKSUM_ALGORITHM = 'xxh3-128';

const hasher = await createXXHash128();
hasher.init();
const INITIAL_STATE = hasher.save();
/** The checksum whose state is in the hasher now (its saved `state` is stale). */
let owner: FileChecksum | undefined;

export class FileChecksum {
  private state: Uint8Array = INITIAL_STATE;
  /** Bytes hashed so far. */
  bytes = 0;

  update(data: Uint8Array): void {
    if (owner !== this) {
      if (owner) owner.state = hasher.save();
      hasher.load(this.state);
      owner = this;
    }
    hasher.update(data);
    this.bytes += data.length;
  }

  /** 32 hex digits; does not end the stream (more updates may follow). */
  digest(): string {
    // Digesting finishes the hasher's state: the owner's is saved first, then it holds nobody's.
    if (owner) owner.state = hasher.save();
    owner = undefined;
    hasher.load(this.state);
    return hasher.digest('hex');
  }
}

/** Checksum of an empty tape file. */
export const EMPTY_CHECKSUM = new FileChecksum().digest();
