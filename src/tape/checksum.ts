/**
 * Streaming per-tape-file checksum: XXH3-128 of the file's bytes (DESIGN.md section 2).
 *
 * `@node-rs/xxhash` has no streaming 128-bit XXH3. Two implementations give identical digests
 * (one conformance suite runs both):
 * - `native`: the system's libxxhash through our addon (native/src/checksum-addon.cc), hashing
 *   each record where it lies; used when it loads, unless VTL_NATIVE_CHECKSUM=0.
 * - `wasm`: hash-wasm's (about 6 GB/s here). One WebAssembly hasher serves every open file: the
 *   file that updated last keeps its state in the hasher, and only a switch to another file
 *   saves one state and loads the other (a few hundred bytes).
 */
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { isMainThread } from 'node:worker_threads';
import { createXXHash128 } from 'hash-wasm';

export const CHECKSUM_ALGORITHM = 'xxh3-128';

/** One file's running hash. */
export interface ChecksumState {
  update(data: Uint8Array): void;
  /** 32 hex digits; does not end the stream (more updates may follow). */
  digest(): string;
}

const hasher = await createXXHash128();
hasher.init();
const INITIAL_STATE = hasher.save();
/** The wasm state whose bytes are in the hasher now (its saved `state` is stale). */
let owner: WasmXxh3 | undefined;

class WasmXxh3 implements ChecksumState {
  private state: Uint8Array = INITIAL_STATE;

  update(data: Uint8Array): void {
    if (owner !== this) {
      if (owner) owner.state = hasher.save();
      hasher.load(this.state);
      owner = this;
    }
    hasher.update(data);
  }

  digest(): string {
    // Digesting finishes the hasher's state: the owner's is saved first, then it holds nobody's.
    if (owner) owner.state = hasher.save();
    owner = undefined;
    hasher.load(this.state);
    return hasher.digest('hex');
  }
}

// src/tape and dist/tape are both two levels below the repository root.
const ADDON_PATH = fileURLToPath(new URL('../../native/build/Release/vtl_checksum.node', import.meta.url));

/** The addon's class, or why it is not used (decided once per process). */
function loadNative(): { Xxh3: new () => ChecksumState } | { error: string } {
  if (process.env.VTL_NATIVE_CHECKSUM === '0') return { error: 'VTL_NATIVE_CHECKSUM=0' };
  try {
    const addon = createRequire(import.meta.url)(ADDON_PATH) as { Xxh3: new () => ChecksumState; unavailable: string | null };
    if (typeof addon?.Xxh3 !== 'function') throw new Error('addon does not export Xxh3');
    return addon.unavailable ? { error: addon.unavailable } : { Xxh3: addon.Xxh3 };
  } catch (err) {
    return { error: (err instanceof Error ? err.message : String(err)).split('\n')[0] };
  }
}

const native = loadNative();

/** The implementations that load here, by name (the conformance suite runs each). */
export const CHECKSUM_IMPLEMENTATIONS: Partial<Record<'native' | 'wasm', () => ChecksumState>> = {
  wasm: () => new WasmXxh3(),
  ...('Xxh3' in native ? { native: () => new native.Xxh3() } : {}),
};
/** Why the native checksum is not used, if it is not. */
export const NATIVE_CHECKSUM_UNAVAILABLE = 'error' in native ? native.error : undefined;

let warned = false;

/** The native state when it loads, else the wasm one after saying once why (the main thread says it). */
function makeDefault(): ChecksumState {
  if (CHECKSUM_IMPLEMENTATIONS.native) return CHECKSUM_IMPLEMENTATIONS.native();
  if (!warned && isMainThread && NATIVE_CHECKSUM_UNAVAILABLE !== 'VTL_NATIVE_CHECKSUM=0') {
    warned = true;
    process.stderr.write(`vtl: native checksum unavailable (${NATIVE_CHECKSUM_UNAVAILABLE}); using hash-wasm\n`);
  }
  return new WasmXxh3();
}

export class FileChecksum {
  private readonly state: ChecksumState;
  /** Bytes hashed so far. */
  bytes = 0;

  constructor(make: () => ChecksumState = makeDefault) {
    this.state = make();
  }

  update(data: Uint8Array): void {
    this.state.update(data);
    this.bytes += data.length;
  }

  /** 32 hex digits; does not end the stream (more updates may follow). */
  digest(): string {
    return this.state.digest();
  }
}

/** Checksum of an empty tape file. */
export const EMPTY_CHECKSUM = new WasmXxh3().digest();
