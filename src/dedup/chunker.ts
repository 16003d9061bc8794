/**
 * Content-defined chunking: FastCDC 2020 (gear hash, normalized chunking level 2).
 *
 * Guarantees:
 * - The native addon and the TypeScript reference return identical cut points for the same
 *   parameters, gear seed and input.
 * - Cut points depend only on the bytes since the previous cut point, so a writer that carries
 *   the unfinished tail into the next call gets the same chunks for any slicing of the input.
 * - The gear table is derived from the store's secret seed, so cut points differ per store.
 */
import { gearTable } from './gear.js';
import { loadChunkerAddon, NativeChunker } from './chunker-native.js';
import { TsChunker, validateChunkParams } from './chunker-ts.js';

export interface ChunkParams {
  /** Minimum chunk size in bytes (no cut before it, except the final chunk). */
  min: number;
  /** Average (target) chunk size in bytes; a power of two. */
  avg: number;
  /** Maximum chunk size in bytes (a cut is forced there). */
  max: number;
}

export const DEFAULT_CHUNK_PARAMS: ChunkParams = { min: 2048, avg: 8192, max: 65536 };

export interface Chunker {
  readonly params: ChunkParams;
  /** True when the C addon does the work. */
  readonly native: boolean;
  /**
   * Chunk ends (exclusive byte offsets into `buf`, ascending) of the chunks that start at
   * offset 0. With `final` false, bytes after the last returned end are an unfinished chunk
   * whose cut point is not known yet: the caller carries them into the next call. With `final`
   * true the remaining bytes form the last chunk and the last end equals `buf.length`.
   */
  cutPoints(buf: Uint8Array, final: boolean): Uint32Array;
}


export { validateChunkParams };
export { GEAR_SEED_BYTES, gearTable } from './gear.js';

export interface CreateChunkerOptions {
  /**
   * true: require the C addon (throws when it cannot be loaded); false: use the TypeScript
   * reference; unset: the addon when it loads, else the reference with one warning per process.
   */
  native?: boolean;
}

let fallbackWarned = false;

/** True when the C chunker addon loads in this process. */
export function nativeChunkerAvailable(): boolean {
  return 'addon' in loadChunkerAddon();
}

/** A chunker for `params` whose gear table is derived from the store's 32-byte `gearSeed`. */
export function createChunker(params: ChunkParams, gearSeed: Uint8Array, opts: CreateChunkerOptions = {}): Chunker {
  validateChunkParams(params);
  const gear = gearTable(gearSeed);
  if (opts.native === false) return new TsChunker(params, gear);
  const loaded = loadChunkerAddon();
  if ('addon' in loaded) return new NativeChunker(loaded.addon, params, gear);
  if (opts.native === true) throw new Error(`vtl: native chunker unavailable (${loaded.error})`);
  if (!fallbackWarned) {
    fallbackWarned = true;
    process.stderr.write(`vtl: native chunker unavailable (${loaded.error}); using the TypeScript chunker\n`);
  }
  return new TsChunker(params, gear);
}
