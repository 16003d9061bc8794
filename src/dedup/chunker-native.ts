/**
 * Loader of the C chunker addon (native/, built by `npm ci` through node-gyp). Loading never
 * throws: the failure reason is kept so callers can fall back to the TypeScript chunker.
 */
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import type { Chunker, ChunkParams } from './chunker.js';
import { checkChunkInput, validateChunkParams } from './chunker-ts.js';

interface AddonChunker {
  cutPoints(buf: Uint8Array, final: boolean): Uint32Array;
}
export interface ChunkerAddon {
  Chunker: new (gear: Uint32Array, min: number, avg: number, max: number) => AddonChunker;
}

// src/dedup and dist/dedup are both two levels below the repository root.
const ADDON_PATH = fileURLToPath(new URL('../../native/build/Release/vtl_chunker.node', import.meta.url));

let loaded: { addon: ChunkerAddon } | { error: string } | undefined;

/** The addon, or the reason it cannot be loaded (tried once per process). */
export function loadChunkerAddon(): { addon: ChunkerAddon } | { error: string } {
  if (loaded) return loaded;
  try {
    const addon = createRequire(import.meta.url)(ADDON_PATH) as ChunkerAddon;
    if (typeof addon?.Chunker !== 'function') throw new Error('addon does not export Chunker');
    loaded = { addon };
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    loaded = { error: message.split('\n')[0] };
  }
  return loaded;
}

export class NativeChunker implements Chunker {
  readonly params: ChunkParams;
  readonly native = true;
  readonly #impl: AddonChunker;

  constructor(addon: ChunkerAddon, params: ChunkParams, gear: Uint32Array) {
    validateChunkParams(params);
    this.params = Object.freeze({ min: params.min, avg: params.avg, max: params.max });
    this.#impl = new addon.Chunker(gear, params.min, params.avg, params.max);
  }

  cutPoints(buf: Uint8Array, final: boolean): Uint32Array {
    checkChunkInput(buf);
    return this.#impl.cutPoints(buf, final === true);
  }
}
