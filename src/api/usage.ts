/**
 * What a cartridge costs in the chunk store: the unique chunks its recipe refers to, their raw
 * and stored (compressed, encrypted) sizes. Chunks shared with other cartridges count for each
 * of them, so these figures do not add up across cartridges; the store-wide figures are in
 * /stats. Walking a recipe costs O(chunks): results are cached per (stream, length), and very
 * large recipes stop counting distinct chunks past a bound (then `exact` is false).
 */
import { decodeRef } from '../dedup/fingerprint-index.js';
import { RECIPE_ENTRY, type RecipeStreams } from '../stream/recipes.js';

export interface Usage {
  chunks: number;
  uniqueBytes: number;
  storedBytes: number;
  exact: boolean;
}

/** Distinct fingerprints tracked per walk (about 100 MB of memory at the bound). */
const MAX_DISTINCT = 1_000_000;
const CACHE = 256;

export class UsageCounter {
  private readonly cache = new Map<string, Usage>();

  constructor(private readonly streams: RecipeStreams) {}

  async of(streamId: string | null, length: number): Promise<Usage> {
    if (streamId === null || length === 0) return { chunks: 0, uniqueBytes: 0, storedBytes: 0, exact: true };
    const key = `${streamId}@${length}`;
    const hit = this.cache.get(key);
    if (hit) return hit;
    const u = await this.walk(streamId, length);
    if (this.cache.size >= CACHE) this.cache.delete(this.cache.keys().next().value!);
    this.cache.set(key, u);
    return u;
  }

  private async walk(streamId: string, length: number): Promise<Usage> {
    const seen = new Set<string>();
    const u: Usage = { chunks: 0, uniqueBytes: 0, storedBytes: 0, exact: true };
    let pos = 0;
    for await (const [, page] of this.streams.pageRange(streamId, 0)) {
      for (let at = 0; at < page.length && pos < length; at += RECIPE_ENTRY) {
        const used = page.readUInt32BE(at + 32);
        pos += used;
        u.chunks++;
        const fp = page.toString('latin1', at, at + 16);
        if (seen.has(fp)) continue;
        if (seen.size < MAX_DISTINCT) seen.add(fp);
        else u.exact = false;
        const ref = decodeRef(page, at + 16);
        u.uniqueBytes += ref.rawLength;
        u.storedBytes += ref.frameLength;
      }
      if (pos >= length) break;
    }
    return u;
  }
}
