/**
 * TypeScript reference of the FastCDC 2020 chunker. It defines the cut-point rule; the C addon
 * (native/src/fastcdc.c) must return exactly the same cut points:
 *
 * - h is a 32-bit gear hash restarted at 0 at each chunk start: h = (h << 1) + gear[byte]
 *   mod 2^32. A byte's contribution shifts out after 32 bytes.
 * - A chunk of length j (min <= j < max) ends when h after its last byte has none of the mask
 *   bits set: the harder mask (log2(avg)+2 high bits) while j < avg, the easier mask
 *   (log2(avg)-2 high bits) from j = avg on (normalized chunking level 2). High bits, because
 *   bit k of h depends on the last k+1 bytes only. The first such j wins; j = max is forced.
 * - Rolling starts at chunk offset min-32 (cut-point skipping): thanks to the 32-byte window
 *   this gives the same hashes as rolling from the chunk start.
 */
import type { Chunker, ChunkParams } from './chunker.js';

/** Bytes after which a byte no longer affects the 32-bit gear hash. */
export const GEAR_WINDOW = 32;
export const MIN_CHUNK_MIN = 64;
export const MAX_CHUNK_MAX = 4 * 1024 * 1024;
export const AVG_RANGE = { lowest: 256, highest: 1024 * 1024 } as const;

/** Throws a RangeError naming the first bad parameter. */
export function validateChunkParams(p: ChunkParams): void {
  const bad = (why: string): never => {
    throw new RangeError(`invalid chunk params ${JSON.stringify(p)}: ${why}`);
  };
  if (p === null || typeof p !== 'object') bad('expected an object { min, avg, max }');
  for (const key of ['min', 'avg', 'max'] as const) {
    if (!Number.isSafeInteger(p[key])) bad(`${key} must be an integer`);
  }
  if (p.min < MIN_CHUNK_MIN) bad(`min must be at least ${MIN_CHUNK_MIN}`);
  if (!(p.min < p.avg && p.avg < p.max)) bad('must satisfy min < avg < max');
  if ((p.avg & (p.avg - 1)) !== 0) bad('avg must be a power of two');
  if (p.avg < AVG_RANGE.lowest || p.avg > AVG_RANGE.highest) {
    bad(`avg must be between ${AVG_RANGE.lowest} and ${AVG_RANGE.highest}`);
  }
  if (p.max > MAX_CHUNK_MAX) bad(`max must be at most ${MAX_CHUNK_MAX}`);
}

/** Mask of the n high bits of a 32-bit hash, as an int32. */
function highBits(n: number): number {
  return ~(0xffffffff >>> n) | 0;
}

export function chunkMasks(avg: number): { hard: number; easy: number } {
  const bits = Math.log2(avg);
  return { hard: highBits(bits + 2), easy: highBits(bits - 2) };
}

/** Throws unless buf is a Uint8Array whose offsets fit the uint32 cut points. */
export function checkChunkInput(buf: Uint8Array): void {
  if (!(buf instanceof Uint8Array)) throw new TypeError('cutPoints: buf must be a Uint8Array');
  if (buf.length > 0xffffffff) throw new RangeError('cutPoints: buf must be shorter than 4 GiB');
}

export class TsChunker implements Chunker {
  readonly params: ChunkParams;
  readonly native = false;
  readonly #gear: Int32Array; // int32 view: keeps the hot loop in small integers
  readonly #hard: number;
  readonly #easy: number;

  constructor(params: ChunkParams, gear: Uint32Array) {
    validateChunkParams(params);
    if (!(gear instanceof Uint32Array) || gear.length !== 256) {
      throw new TypeError('gear must be a Uint32Array of 256 entries');
    }
    this.params = Object.freeze({ min: params.min, avg: params.avg, max: params.max });
    this.#gear = new Int32Array(gear);
    ({ hard: this.#hard, easy: this.#easy } = chunkMasks(params.avg));
  }

  cutPoints(buf: Uint8Array, final: boolean): Uint32Array {
    checkChunkInput(buf);
    const out = new Uint32Array(Math.floor(buf.length / this.params.min) + 1);
    let count = 0;
    let start = 0;
    while (start < buf.length) {
      const len = this.#chunkLength(buf, start, buf.length - start, final === true);
      if (len === 0) break;
      start += len;
      out[count++] = start;
    }
    return out.slice(0, count);
  }

  /** Length of the chunk at start (n bytes available), or 0 when not decided yet. */
  #chunkLength(buf: Uint8Array, start: number, n: number, final: boolean): number {
    const { min, avg, max } = this.params;
    if (n < min) return final ? n : 0;
    const g = this.#gear;
    const limit = n < max ? n : max;
    let h = 0;
    let k = start + min - GEAR_WINDOW;
    for (const warmEnd = start + min - 1; k < warmEnd; k++) h = ((h << 1) + g[buf[k]]) | 0;
    const hard = this.#hard;
    for (const normalEnd = start + Math.min(avg - 1, limit); k < normalEnd; k++) {
      h = ((h << 1) + g[buf[k]]) | 0;
      if ((h & hard) === 0) return k + 1 - start;
    }
    const easy = this.#easy;
    for (const end = start + limit; k < end; k++) {
      h = ((h << 1) + g[buf[k]]) | 0;
      if ((h & easy) === 0) return k + 1 - start;
    }
    if (n >= max) return max;
    return final ? n : 0;
  }
}
