/**
 * Reads another store's chunks from a replication target (region B): a read-only ChunkSource
 * for the recipe streams of replicas.
 *
 * - A container is fetched whole from the target the first time a read needs it, its data key
 *   unwrapped with the recovery key, and kept in a local cache directory (a file per container,
 *   written to a temporary name and renamed, so a crash never leaves half a container there).
 *   The cache is bounded (least recently used containers are dropped).
 * - Every chunk read is checked as in the local store: GCM tag, fingerprint and length; damage
 *   on the target or in the cache is a ReplicaIntegrityError naming the object, never wrong
 *   bytes. A cached container that fails is dropped, so the next read fetches it again.
 * - While a restore reads one container, the next ones (in the order the catalogs list them)
 *   are fetched ahead.
 */
import { mkdir, readdir, rename, stat, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ReplicaIntegrityError, type ReplicaCipher } from '../crypto/index.js';
import { CodecPool } from '../dedup/codec-pool.js';
import { containerPath, IntegrityError } from '../dedup/container.js';
import { readInRuns } from '../dedup/runs.js';
import { CommitBatch, type StoredChunk } from '../dedup/store.js';
import type { ChunkSource } from '../stream/recipes.js';
import type { DataDb } from '../stream/store.js';
import { ObjectNotFoundError, type ObjectTier } from '../tier/index.js';
import { CONTAINER_HEADER, containerObject, parseContainerHeader } from './layout.js';

const PREFETCH = 2;

export class ReplicaChunks implements ChunkSource {
  readonly chunker: { params: { max: number } };
  private readonly keys = new Map<number, Buffer>();
  /** Cached containers and their sizes, least recently used first. */
  private readonly cached = new Map<number, number>();
  private cachedBytes = 0;
  private readonly fetching = new Map<number, Promise<void>>();
  private readonly pinned = new Map<number, number>();
  /** The container a full read meets after each one (from the catalogs). */
  private readonly next = new Map<number, number>();
  private readonly codec = CodecPool.shared();
  readonly counters = { fetched: 0, fetchedBytes: 0, cacheHits: 0 };

  constructor(
    private readonly db: DataDb,
    private readonly tier: ObjectTier,
    private readonly cipher: ReplicaCipher,
    readonly cacheDir: string,
    private readonly cacheLimit: number,
    chunkMax: number,
  ) {
    this.chunker = { params: { max: chunkMax } };
  }

  /** Takes stock of the cache directory (containers fetched before a restart). */
  async open(): Promise<void> {
    await mkdir(this.cacheDir, { recursive: true });
    for (const name of await readdir(this.cacheDir)) {
      const m = /^([0-9a-f]{8})\.ctr$/.exec(name);
      if (!m) {
        if (name.includes('.tmp-')) await unlink(join(this.cacheDir, name)).catch(() => undefined);
        continue;
      }
      const size = (await stat(join(this.cacheDir, name))).size;
      this.cached.set(parseInt(m[1], 16), size);
      this.cachedBytes += size;
    }
  }

  /** Learns the order in which a replica's containers are read (for reading ahead). */
  learnOrder(containers: number[]): void {
    for (let i = 0; i + 1 < containers.length; i++) this.next.set(containers[i], containers[i + 1]);
  }

  setChunkMax(max: number): void {
    this.chunker.params.max = Math.max(this.chunker.params.max, max);
  }

  readChunks(items: StoredChunk[], into?: Buffer): Promise<Buffer[]> {
    return readInRuns(items, into, (id, run, target) => this.readRun(id, run, target));
  }

  private async readRun(id: number, run: StoredChunk[], target?: { buf: Buffer; at: number }): Promise<Buffer[]> {
    this.pinned.set(id, (this.pinned.get(id) ?? 0) + 1);
    try {
      await this.ensure(id);
      this.readAhead(id);
      try {
        return await this.codec.read(await this.keyOf(id), this.cacheDir, id, run, target);
      } catch (err) {
        if (!(err instanceof IntegrityError || (err as Error).name === 'IntegrityError')) throw err;
        // A damaged cache file must not stay: the next read fetches the container again.
        await this.drop(id);
        throw replicaDamage(id, err as IntegrityError);
      }
    } finally {
      const n = (this.pinned.get(id) ?? 1) - 1;
      if (n === 0) this.pinned.delete(id);
      else this.pinned.set(id, n);
    }
  }

  private readAhead(id: number): void {
    let next = this.next.get(id);
    for (let k = 0; k < PREFETCH && next !== undefined; k++, next = this.next.get(next)) {
      const n = next;
      if (!this.cached.has(n) && !this.fetching.has(n)) this.ensure(n).catch(() => undefined);
    }
  }

  /** The container is in the cache (fetched now if it was not). */
  private ensure(id: number): Promise<void> {
    if (this.cached.has(id)) {
      const size = this.cached.get(id)!;
      this.cached.delete(id);
      this.cached.set(id, size); // most recently used
      this.counters.cacheHits++;
      return Promise.resolve();
    }
    let f = this.fetching.get(id);
    if (!f) {
      f = this.fetch(id).finally(() => this.fetching.delete(id));
      this.fetching.set(id, f);
    }
    return f;
  }

  private async fetch(id: number): Promise<void> {
    const name = containerObject(id);
    const body = await this.tier.get(name).catch((err: unknown) => rethrowMissing(name, err));
    this.keys.set(id, this.cipher.unwrapDataKey(id, parseContainerHeader(body, name)));
    const path = containerPath(this.cacheDir, id, true);
    const tmp = `${path}.tmp-${process.pid}`;
    await writeFile(tmp, body.subarray(CONTAINER_HEADER));
    await rename(tmp, path);
    const size = body.length - CONTAINER_HEADER;
    this.cached.set(id, size);
    this.cachedBytes += size;
    this.counters.fetched++;
    this.counters.fetchedBytes += body.length;
    await this.evict();
  }

  private async keyOf(id: number): Promise<Buffer> {
    let key = this.keys.get(id);
    if (!key) {
      const name = containerObject(id);
      const head = await this.tier.get(name, { offset: 0, length: CONTAINER_HEADER }).catch((err: unknown) => rethrowMissing(name, err));
      key = this.cipher.unwrapDataKey(id, parseContainerHeader(head, name));
      this.keys.set(id, key);
    }
    return key;
  }

  private async evict(): Promise<void> {
    for (const [id] of this.cached) {
      if (this.cachedBytes <= this.cacheLimit) return;
      if (this.pinned.has(id)) continue;
      await this.drop(id);
    }
  }

  private async drop(id: number): Promise<void> {
    const size = this.cached.get(id);
    if (size === undefined) return;
    this.cached.delete(id);
    this.cachedBytes -= size;
    await unlink(containerPath(this.cacheDir, id, true)).catch(() => undefined);
    await this.codec.forget(this.cacheDir, id);
  }

  /** Empties the cache (tests measure cold reads this way; operators free space). */
  async clearCache(): Promise<void> {
    for (const id of [...this.cached.keys()]) if (!this.pinned.has(id)) await this.drop(id);
  }

  get cacheBytes(): number {
    return this.cachedBytes;
  }

  async commit(extra?: (batch: CommitBatch) => void): Promise<void> {
    const b = new CommitBatch(this.db);
    extra?.(b);
    await b.write({ sync: true });
  }

  cutAndHash(): Promise<{ cuts: Uint32Array; fingerprints: Buffer }> {
    return Promise.reject(new Error('a replica is read-only'));
  }

  putHashed(): Promise<StoredChunk[]> {
    return Promise.reject(new Error('a replica is read-only'));
  }
}

/**
 * Damage met in a fetched container, told as the replica's: `vtl scrub` in this region cannot
 * mend it (the IntegrityError's own advice); the store that shipped it can ship it again.
 */
function replicaDamage(id: number, err: IntegrityError): ReplicaIntegrityError {
  const reason = err.reason ?? err.message;
  return new ReplicaIntegrityError(`replica object ${containerObject(id)} is damaged at byte ${err.offset}: ${reason}`);
}

/** A container object the catalogs name that is not on the object store: the replica is damaged there. */
function rethrowMissing(name: string, err: unknown): never {
  if (err instanceof ObjectNotFoundError) throw new ReplicaIntegrityError(`replica object ${name} is missing on the object store`);
  throw err;
}
