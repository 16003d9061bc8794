/**
 * The fingerprint index: fingerprint (16 bytes) -> where the chunk lives (container id, frame
 * offset, frame length, raw length), in a LevelDB sublevel.
 *
 * Guarantees:
 * - Lookups come in batches (`getMany`), filtered first by a Bloom filter summary that holds
 *   every indexed fingerprint, so a new chunk costs no LevelDB read.
 * - Entries are only ever written in the store's commit batches, after the container bytes they
 *   point to are durable, so an entry never points at bytes that a crash can take away.
 * - The index can be rebuilt from container footers alone.
 */
import type { AbstractSublevel } from 'abstract-level';
import { BloomFilter } from './bloom.js';
import type { ChunkRef } from './container.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type BinarySublevel = AbstractSublevel<any, any, Buffer, Buffer>;

export const REF_BYTES = 16;

export function encodeRef(ref: ChunkRef, out: Buffer = Buffer.allocUnsafe(REF_BYTES), at = 0): Buffer {
  out.writeUInt32BE(ref.container, at);
  out.writeUInt32BE(ref.offset, at + 4);
  out.writeUInt32BE(ref.frameLength, at + 8);
  out.writeUInt32BE(ref.rawLength, at + 12);
  return out;
}

export function decodeRef(buf: Uint8Array, at = 0): ChunkRef {
  const v = new DataView(buf.buffer, buf.byteOffset + at, REF_BYTES);
  return {
    container: v.getUint32(0),
    offset: v.getUint32(4),
    frameLength: v.getUint32(8),
    rawLength: v.getUint32(12),
  };
}

const RAW_BUFFERS = { keyEncoding: 'buffer', valueEncoding: 'buffer' };

export class FingerprintIndex {
  private bloom = new BloomFilter();
  /** The sublevel's key prefix: entries are staged on the root batch with prefixed keys. */
  private readonly prefix: Buffer;

  private constructor(readonly db: BinarySublevel) {
    this.prefix = Buffer.from(db.prefix);
  }

  /** Opens the index and loads the Bloom summary from its keys. */
  static async open(db: BinarySublevel): Promise<FingerprintIndex> {
    const index = new FingerprintIndex(db);
    await index.reloadBloom();
    return index;
  }

  get size(): number {
    return this.bloom.count;
  }

  private async reloadBloom(): Promise<void> {
    this.bloom = new BloomFilter();
    for await (const key of this.db.keys()) this.bloom.add(key);
  }

  /** Lookups the Bloom filter answered (not indexed) and those that went to LevelDB. */
  readonly counts = { bloom: 0, leveldb: 0 };

  /** Batched lookup; `undefined` where the fingerprint is not indexed. */
  async lookupMany(fingerprints: Buffer[]): Promise<(ChunkRef | undefined)[]> {
    const result: (ChunkRef | undefined)[] = new Array(fingerprints.length).fill(undefined);
    const ask: Buffer[] = [];
    const where: number[] = [];
    fingerprints.forEach((fp, i) => {
      if (this.bloom.mayContain(fp)) {
        ask.push(fp);
        where.push(i);
      }
    });
    this.counts.bloom += fingerprints.length - ask.length;
    this.counts.leveldb += ask.length;
    if (ask.length === 0) return result;
    const values = await this.db.getMany(ask);
    values.forEach((v, j) => {
      if (v) result[where[j]] = decodeRef(v);
    });
    return result;
  }

  async lookup(fingerprint: Buffer): Promise<ChunkRef | undefined> {
    return (await this.lookupMany([fingerprint]))[0];
  }

  /**
   * Adds entries to a commit batch of the root database; the Bloom filter learns them at once.
   * Keys carry the sublevel's prefix already: a `{ sublevel }` option per entry costs several
   * times more on the hot path (one entry per new chunk).
   */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  stage(batch: { put: (k: any, v: any, o?: any) => unknown }, entries: Array<[Buffer, ChunkRef]>): void {
    const p = this.prefix.length;
    const keys = Buffer.allocUnsafe(entries.length * (p + 16));
    const values = Buffer.allocUnsafe(entries.length * REF_BYTES);
    entries.forEach(([fp, ref], i) => {
      const k = keys.subarray(i * (p + 16), (i + 1) * (p + 16));
      this.prefix.copy(k, 0);
      fp.copy(k, p);
      batch.put(k, encodeRef(ref, values, i * REF_BYTES).subarray(i * REF_BYTES, (i + 1) * REF_BYTES), RAW_BUFFERS);
      this.bloom.add(fp);
    });
  }

  /** Every entry, in key order (scrub's cross-check); streams, holds nothing. */
  async *entries(): AsyncGenerator<[Buffer, ChunkRef]> {
    for await (const [k, v] of this.db.iterator()) yield [k, decodeRef(v)];
  }

  /** Adds deletions of entries to a commit batch (GC). The Bloom filter keeps them: a false positive costs a lookup. */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  stageDelete(batch: { del: (k: any, o?: any) => unknown }, fingerprints: Buffer[]): void {
    for (const fp of fingerprints) batch.del(Buffer.concat([this.prefix, fp]), RAW_BUFFERS);
  }

  /** Deletes every entry (used before a rebuild). */
  async clear(): Promise<void> {
    await this.db.clear();
    this.bloom = new BloomFilter();
  }
}

/**
 * Locality-preserved caching: when a chunk is found in container C, all of C's fingerprints are
 * loaded, because the next chunks of a repeated stream most likely sit right after it in C.
 * Keeps the footers of the most recently used containers (LRU by container).
 */
export class LocalityCache {
  private readonly refs = new Map<bigint, ChunkRef>();
  private readonly containers = new Map<number, bigint[]>();

  constructor(private readonly maxContainers = 128) {}

  get(key: bigint): ChunkRef | undefined {
    return this.refs.get(key);
  }

  has(container: number): boolean {
    return this.containers.has(container);
  }

  /** Marks a container as recently used. */
  touch(container: number): void {
    const keys = this.containers.get(container);
    if (!keys) return;
    this.containers.delete(container);
    this.containers.set(container, keys);
  }

  addContainer(container: number, entries: Array<[bigint, ChunkRef]>): void {
    if (this.containers.has(container)) return this.touch(container);
    while (this.containers.size >= this.maxContainers) this.evictOldest();
    const keys: bigint[] = [];
    for (const [key, ref] of entries) {
      this.refs.set(key, ref);
      keys.push(key);
    }
    this.containers.set(container, keys);
  }

  /** Forgets a container (compacted or deleted). */
  drop(container: number): void {
    const keys = this.containers.get(container);
    if (!keys) return;
    for (const k of keys) if (this.refs.get(k)?.container === container) this.refs.delete(k);
    this.containers.delete(container);
  }

  private evictOldest(): void {
    const first = this.containers.keys().next();
    if (!first.done) this.drop(first.value);
  }
}
