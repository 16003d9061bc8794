/**
 * What a cartridge costs in the chunk store (its stream's distinct chunks, raw and stored),
 * cached per (stream, length): walking a recipe is O(chunks). Chunks shared with other
 * cartridges count for each of them, so these figures do not add up across cartridges; the
 * store-wide figures are in /stats.
 */
import type { Streams } from '../stream/index.js';

export interface Usage {
  chunks: number;
  uniqueBytes: number;
  storedBytes: number;
  exact: boolean;
}

const CACHE = 256;

export class UsageCounter {
  private readonly cache = new Map<string, Usage>();

  constructor(private readonly streams: Streams) {}

  async of(streamId: string | null, length: number): Promise<Usage> {
    if (streamId === null || length === 0) return { chunks: 0, uniqueBytes: 0, storedBytes: 0, exact: true };
    const key = `${streamId}@${length}`;
    const hit = this.cache.get(key);
    if (hit) return hit;
    const { chunks, uniqueBytes, storedBytes, exact } = await this.streams.stats(streamId);
    const u = { chunks, uniqueBytes, storedBytes, exact };
    if (this.cache.size >= CACHE) this.cache.delete(this.cache.keys().next().value!);
    this.cache.set(key, u);
    return u;
  }
}
