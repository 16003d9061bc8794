/**
 * The chunk store: keeps each unique chunk once, compressed and encrypted in append-only
 * containers, found through the fingerprint index.
 *
 * Guarantees:
 * - `putChunks` (or `putHashed`, after `cutAndHash` cut and fingerprinted a batch off the event
 *   loop) returns, in order, where every chunk lives; a chunk seen before (in the open
 *   container, the locality cache, or the index) is not stored again.
 * - Nothing `putChunks` returns is durable until `commit()`: that flushes the open container
 *   (fdatasync), then writes the staged index entries and the caller's own LevelDB operations in
 *   one synced batch. A crash before `commit()` resolves leaves the store as at the last commit,
 *   plus unreferenced chunks (garbage) in containers.
 * - Container ids are never reused; a container's data key is stored (wrapped by the master key)
 *   before its first byte is written.
 * - `readChunks` returns exactly the bytes that were stored or throws `IntegrityError`.
 * - After a crash, `open` seals every unsealed container, keeping its valid frames.
 */
import { mkdir, readFile, writeFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { AbstractSublevel } from 'abstract-level';
import type { Level } from 'level';
import { Keyring, type DataKeyTable } from '../crypto/keyring.js';
import { createChunker, DEFAULT_CHUNK_PARAMS, validateChunkParams, type ChunkParams, type Chunker } from './chunker.js';
import {
  CONTAINER_TARGET_SIZE,
  ContainerReader,
  ContainerWriter,
  containerPath,
  listContainers,
  recoverContainer,
  type ChunkRef,
  type FooterEntry,
} from './container.js';
import { CodecPool } from './codec-pool.js';
import { FingerprintIndex, LocalityCache, type BinarySublevel } from './fingerprint-index.js';
import { fingerprintBytes, fingerprintFromBytes, fingerprintKey } from './fingerprint.js';

export { IntegrityError, type ChunkRef } from './container.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type RootDb = Level<any, any>;
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type JsonSublevel = AbstractSublevel<RootDb, any, string, any>;
/** classic-level honours `sync` (fsync of the LevelDB log); abstract-level's types omit it. */
const SYNC: object = { sync: true };
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type CommitBatch = ReturnType<RootDb['batch']> & { put: (k: any, v: any, o?: any) => any };

export const STORE_FORMAT = 'vtl-store';
export const STORE_VERSION = 1;

export interface StoreConfig {
  format: typeof STORE_FORMAT;
  version: number;
  chunking: ChunkParams;
  createdAt: string;
}

/** A chunk as a recipe refers to it. */
export interface StoredChunk {
  fingerprint: Buffer;
  ref: ChunkRef;
}

export interface StoreStats {
  /** Bytes of container files (frames, headers, footers). */
  storedBytes: number;
  /** Raw bytes of the unique chunks. */
  uniqueBytes: number;
  chunks: number;
  containers: number;
}

const FRAME_OVERHEAD_ESTIMATE = 64;
const MAX_OPEN_READERS = 64;
const MAX_SEALING = 2;
/** Runs shorter than this are decoded on the event loop: a worker round trip costs more. */
const INLINE_OPEN_CHUNKS = 8;

export class ChunkStore {
  readonly chunker: Chunker;
  private readonly index: FingerprintIndex;
  private readonly locality = new LocalityCache();
  /** Chunks of the open container and of containers being sealed (not in the locality cache). */
  private readonly recent = new Map<bigint, ChunkRef>();
  /** Index entries of the open container not yet written to LevelDB. */
  private staged: Array<[Buffer, ChunkRef]> = [];
  private writer: ContainerWriter | undefined;
  /** Containers being sealed in the background (footer, fsync, rename, index entries). */
  private readonly sealing = new Map<number, Promise<void>>();
  private sealFailure: Error | undefined;
  private readonly dataKeys = new Map<number, Buffer>();
  private readonly readers = new Map<number, Promise<ContainerReader>>();
  private compressRatio = 0.6;
  private lock: Promise<unknown> = Promise.resolve();
  private readonly codec = CodecPool.shared();
  private closed = false;

  private constructor(
    readonly dir: string,
    readonly config: StoreConfig,
    private readonly db: RootDb,
    private readonly keyring: Keyring,
    private readonly meta: JsonSublevel,
    private readonly keyTable: BinarySublevel,
    index: FingerprintIndex,
    private stats: StoreStats,
    chunkerOptions: { native?: boolean },
  ) {
    this.index = index;
    this.chunker = createChunker(config.chunking, keyring.gearSeed, chunkerOptions);
  }

  get containersDir(): string {
    return join(this.dir, 'containers');
  }

  /** Creates the on-disk layout and keys of a new store in `dir`. */
  static async init(dir: string, chunking: ChunkParams = DEFAULT_CHUNK_PARAMS): Promise<StoreConfig> {
    validateChunkParams(chunking);
    await mkdir(join(dir, 'containers'), { recursive: true });
    await mkdir(join(dir, 'keys'), { recursive: true, mode: 0o700 });
    const configPath = join(dir, 'config.json');
    if (await exists(configPath)) throw new Error(`${dir} already holds a vtl store (config.json exists)`);
    await Keyring.create(join(dir, 'keys'));
    const config: StoreConfig = { format: STORE_FORMAT, version: STORE_VERSION, chunking, createdAt: new Date().toISOString() };
    await writeFile(configPath, JSON.stringify(config, null, 2) + '\n', { flag: 'wx' });
    return config;
  }

  static async readConfig(dir: string): Promise<StoreConfig> {
    const path = join(dir, 'config.json');
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (err) {
      throw new Error(`no vtl store in ${dir} (${path} missing): run 'vtl init --data ${dir}' first`, { cause: err });
    }
    const config = JSON.parse(text) as StoreConfig;
    if (config.format !== STORE_FORMAT || config.version !== STORE_VERSION) {
      throw new Error(`${path}: not a vtl store of version ${STORE_VERSION}`);
    }
    return config;
  }

  /** Opens the store over an already opened LevelDB (shared with the upper layers). */
  static async open(dir: string, db: RootDb, opts: { native?: boolean } = {}): Promise<ChunkStore> {
    const config = await ChunkStore.readConfig(dir);
    const keyring = await Keyring.open(join(dir, 'keys'));
    const meta: JsonSublevel = db.sublevel<string, unknown>('chunkstore', { valueEncoding: 'json' });
    const keyTable = db.sublevel<Buffer, Buffer>('datakeys', { keyEncoding: 'buffer', valueEncoding: 'buffer' });
    const fpDb = db.sublevel<Buffer, Buffer>('fingerprints', { keyEncoding: 'buffer', valueEncoding: 'buffer' });
    const index = await FingerprintIndex.open(fpDb);
    const stats = ((await meta.get('stats')) as StoreStats | undefined) ?? { storedBytes: 0, uniqueBytes: 0, chunks: 0, containers: 0 };
    const store = new ChunkStore(dir, config, db, keyring, meta, keyTable, index, stats, opts);
    await store.recover();
    return store;
  }

  /** The wrapped data keys, as the keyring's rotation sees them. */
  dataKeyTable(): DataKeyTable {
    const table = this.keyTable;
    return {
      get: (id) => table.get(containerKey(id)),
      putMany: (entries) =>
        table.batch(entries.map(([id, wrapped]) => ({ type: 'put' as const, key: containerKey(id), value: wrapped })), SYNC),
      entries: async function* () {
        for await (const [k, v] of table.iterator()) yield [k.readUInt32BE(0), v] as [number, Buffer];
      },
    };
  }

  /** No container is created while the rotation runs (the keyring requires it). */
  rotateMasterKey(): Promise<{ rewrapped: number }> {
    return this.exclusive(() => this.keyring.rotateMasterKey(this.dataKeyTable()));
  }

  /** Store-wide figures; stored bytes include the open container. */
  getStats(): StoreStats {
    return { ...this.stats, storedBytes: this.stats.storedBytes + (this.writer?.size ?? 0) };
  }

  /**
   * Stores chunks given in stream order; returns their fingerprints and locations in the same
   * order. Only `commit()` makes new chunks durable.
   */
  putChunks(chunks: Uint8Array[]): Promise<StoredChunk[]> {
    const secret = this.keyring.fingerprintSecret;
    const block = Buffer.allocUnsafe(chunks.length * 16);
    chunks.forEach((c, i) => fingerprintBytes(fingerprintKey(secret, c), block, i * 16));
    return this.putHashed(chunks, block);
  }

  /** Like `putChunks` with the fingerprints (16 bytes each, in order) already computed. */
  putHashed(chunks: Uint8Array[], fingerprints: Buffer): Promise<StoredChunk[]> {
    const n = chunks.length;
    const keys = new Array<bigint>(n);
    const fps = new Array<Buffer>(n);
    for (let i = 0; i < n; i++) {
      fps[i] = fingerprints.subarray(i * 16, i * 16 + 16);
      keys[i] = fingerprintFromBytes(fps[i]);
    }
    return this.exclusive(() => this.putChunksLocked(chunks, keys, fps));
  }

  /**
   * Cut points (as `Chunker.cutPoints`) and fingerprints of a batch of stream bytes. A view of
   * a SharedArrayBuffer is cut on the codec pool's own thread, off the event loop.
   */
  async cutAndHash(view: Buffer, final: boolean): Promise<{ cuts: Uint32Array; fingerprints: Buffer }> {
    if (view.buffer instanceof SharedArrayBuffer) {
      return this.codec.cut(view, final, {
        params: this.chunker.params,
        native: this.chunker.native,
        gearSeed: this.keyring.gearSeed,
        secret: this.keyring.fingerprintSecret,
      });
    }
    const cuts = this.chunker.cutPoints(view, final);
    const fingerprints = Buffer.allocUnsafe(cuts.length * 16);
    for (let i = 0, start = 0; i < cuts.length; start = cuts[i++]) {
      fingerprintBytes(fingerprintKey(this.keyring.fingerprintSecret, view.subarray(start, cuts[i])), fingerprints, i * 16);
    }
    return { cuts, fingerprints };
  }

  private async putChunksLocked(chunks: Uint8Array[], keys: bigint[], fps: Buffer[]): Promise<StoredChunk[]> {
    if (this.sealFailure) throw this.sealFailure;
    const n = chunks.length;
    const refs = new Array<ChunkRef | undefined>(n);
    const unknown: number[] = [];
    for (let i = 0; i < n; i++) {
      const key = keys[i];
      const ref = this.recent.get(key) ?? this.locality.get(key);
      if (ref) {
        refs[i] = ref;
      } else {
        unknown.push(i);
      }
    }
    if (unknown.length > 0) await this.lookupUnknown(unknown, fps, refs);

    const fresh: number[] = [];
    const firstInBatch = new Map<bigint, number>();
    for (const i of unknown) {
      if (refs[i]) continue;
      if (!firstInBatch.has(keys[i])) {
        firstInBatch.set(keys[i], i);
        fresh.push(i);
      }
    }
    if (fresh.length > 0) await this.storeFresh(fresh, chunks, keys, fps, refs);
    for (const i of unknown) if (!refs[i]) refs[i] = refs[firstInBatch.get(keys[i])!];

    const out = new Array<StoredChunk>(n);
    for (let i = 0; i < n; i++) out[i] = { fingerprint: fps[i], ref: refs[i]! };
    return out;
  }

  /** Index lookups for chunks missed by the caches; loads the hit containers' footers. */
  private async lookupUnknown(unknown: number[], fps: Buffer[], refs: (ChunkRef | undefined)[]): Promise<void> {
    const found = await this.index.lookupMany(unknown.map((i) => fps[i]));
    const load = new Set<number>();
    unknown.forEach((i, j) => {
      const ref = found[j];
      if (!ref) return;
      refs[i] = ref;
      if (!this.locality.has(ref.container)) load.add(ref.container);
      else this.locality.touch(ref.container);
    });
    await Promise.all([...load].map((id) => this.loadLocality(id)));
  }

  private async loadLocality(id: number): Promise<void> {
    if (this.writer?.id === id || this.sealing.has(id)) return;
    try {
      const reader = await this.reader(id);
      const footer = await reader.footer();
      this.locality.addContainer(id, footer.map((e) => [fingerprintFromBytes(e.fingerprint), stripFp(e)]));
    } catch {
      // The cache is an optimisation only: a container whose footer cannot be read (being
      // compacted, damaged) is still served through the index, and scrub reports the damage.
    }
  }

  /** Seals new chunks into containers, in stream order, rolling to a new container when full. */
  private async storeFresh(
    fresh: number[],
    chunks: Uint8Array[],
    keys: bigint[],
    fps: Buffer[],
    refs: (ChunkRef | undefined)[],
  ): Promise<void> {
    let start = 0;
    while (start < fresh.length) {
      const writer = await this.openWriter();
      let budget = CONTAINER_TARGET_SIZE - writer.size;
      let end = start;
      do {
        budget -= chunks[fresh[end]].length * this.compressRatio + FRAME_OVERHEAD_ESTIMATE;
        end++;
      } while (end < fresh.length && budget > 0);
      const part = fresh.slice(start, end);
      const key = await this.dataKey(writer.id);
      const firstSeq = writer.nextSeq();
      const frames = await this.codec.seal(
        key,
        part.map((i, j) => ({ containerId: writer.id, seq: firstSeq + j, fingerprint: fps[i], raw: chunks[i] })),
      );
      let raw = 0;
      let stored = 0;
      part.forEach((i, j) => {
        const ref = writer.append(fps[i], frames[j], chunks[i].length);
        refs[i] = ref;
        this.recent.set(keys[i], ref);
        this.staged.push([fps[i], ref]);
        raw += chunks[i].length;
        stored += frames[j].length;
      });
      this.stats.chunks += part.length;
      this.stats.uniqueBytes += raw;
      if (raw > 0) this.compressRatio = 0.7 * this.compressRatio + 0.3 * Math.min(1.05, stored / raw);
      if (writer.size >= CONTAINER_TARGET_SIZE) {
        // Backpressure: a slow disk must not let sealed-but-unwritten containers pile up.
        while (this.sealing.size >= MAX_SEALING) await Promise.race(this.sealing.values());
        this.sealInBackground();
      }
      start = end;
    }
  }

  private async openWriter(): Promise<ContainerWriter> {
    if (this.writer) return this.writer;
    const next = ((await this.meta.get('nextContainer')) as number | undefined) ?? 1;
    const { key, wrapped } = this.keyring.newDataKey(next);
    // The id is consumed and the key durable before the container's first byte exists.
    const batch = this.db.batch() as CommitBatch;
    batch.put('nextContainer', next + 1, { sublevel: this.meta });
    batch.put(containerKey(next), wrapped, { sublevel: this.keyTable });
    await batch.write(SYNC);
    this.dataKeys.set(next, key);
    this.writer = await ContainerWriter.create(this.containersDir, next, key);
    this.stats.containers++;
    return this.writer;
  }

  /**
   * Seals the open container while ingest goes on into a new one: the fsyncs of a full
   * container must not stall the stream. Its index entries are written once it is durable;
   * until then its chunks are found in `recent`.
   */
  private sealInBackground(): void {
    const writer = this.writer;
    if (!writer) return;
    this.writer = undefined;
    const entries = this.staged;
    this.staged = [];
    const done = this.finishSeal(writer, entries)
      .catch((err: Error) => {
        this.sealFailure ??= new Error(`sealing container ${writer.id} failed: ${err.message}`, { cause: err });
      })
      .finally(() => this.sealing.delete(writer.id));
    this.sealing.set(writer.id, done);
  }

  private async finishSeal(writer: ContainerWriter, entries: Array<[Buffer, ChunkRef]>): Promise<void> {
    const footer = await writer.seal();
    this.stats.storedBytes += (await stat(containerPath(this.containersDir, writer.id, true))).size;
    await this.writeEntries(entries, false);
    this.locality.addContainer(writer.id, footer.map((e) => [fingerprintFromBytes(e.fingerprint), stripFp(e)]));
    for (const [fp] of entries) {
      const key = fingerprintFromBytes(fp);
      if (this.recent.get(key)?.container === writer.id) this.recent.delete(key);
    }
    // A reader opened on the unsealed file would not see the footer: drop it.
    const stale = this.readers.get(writer.id);
    this.readers.delete(writer.id);
    await (await stale?.catch(() => undefined))?.close();
  }

  /** Waits for background seals; a failed one fails the caller (the store needs reopening). */
  private async settleSeals(): Promise<void> {
    await Promise.all(this.sealing.values());
    if (this.sealFailure) throw this.sealFailure;
  }

  private async writeEntries(entries: Array<[Buffer, ChunkRef]>, sync: boolean, extra?: (batch: CommitBatch) => void): Promise<void> {
    const batch = this.db.batch() as CommitBatch;
    this.index.stage(batch, entries);
    batch.put('stats', this.stats, { sublevel: this.meta });
    extra?.(batch);
    await batch.write(sync ? SYNC : {});
  }

  private async writeStaged(sync: boolean, extra?: (batch: CommitBatch) => void): Promise<void> {
    const entries = this.staged;
    this.staged = [];
    await this.writeEntries(entries, sync, extra);
  }

  /**
   * Sync point: everything stored so far, plus the caller's operations, becomes durable
   * atomically.
   */
  commit(extra?: (batch: CommitBatch) => void): Promise<void> {
    return this.exclusive(async () => {
      await this.settleSeals();
      await this.writer?.flush();
      await this.writeStaged(true, extra);
    });
  }

  /**
   * Reads chunks (in any order); coalesces reads within a container. With `into`, a view of a
   * SharedArrayBuffer with room for all their raw lengths, most chunks are returned as views of
   * it (the caller owns it until it has used them), which spares allocation and copies.
   */
  async readChunks(items: StoredChunk[], into?: Buffer): Promise<Buffer[]> {
    const out = new Array<Buffer>(items.length);
    let i = 0;
    let at = 0;
    const jobs: Promise<void>[] = [];
    while (i < items.length) {
      const container = items[i].ref.container;
      let j = i + 1;
      let bytes = items[i].ref.rawLength;
      while (j < items.length && items[j].ref.container === container) bytes += items[j++].ref.rawLength;
      const from = i;
      const run = items.slice(i, j);
      jobs.push(
        this.readRun(container, run, into && { buf: into, at }).then((bufs) => {
          bufs.forEach((b, k) => (out[from + k] = b));
        }),
      );
      at += bytes;
      i = j;
    }
    // Every job settles before this does: the caller reuses `into` right after, even on failure.
    const failed = (await Promise.allSettled(jobs)).find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
    return out;
  }

  private async readRun(container: number, run: StoredChunk[], target?: { buf: Buffer; at: number }): Promise<Buffer[]> {
    const writer = this.writer;
    if (writer?.id === container) {
      // The open container may still hold these frames in memory only.
      return Promise.all(run.map((c) => writer.read(c.ref, c.fingerprint)));
    }
    try {
      if (run.length >= INLINE_OPEN_CHUNKS) {
        return await this.codec.read(await this.dataKey(container), this.containersDir, container, run, target);
      }
      const reader = await this.reader(container);
      return await reader.readMany(run.map((c) => ({ ref: c.ref, fingerprint: c.fingerprint })));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      return this.readRelocated(run);
    }
  }

  /** A recipe's location hint is stale (its container was compacted): ask the index. */
  private async readRelocated(run: StoredChunk[]): Promise<Buffer[]> {
    const refs = await this.index.lookupMany(run.map((c) => c.fingerprint));
    return Promise.all(
      run.map(async (c, k) => {
        const ref = refs[k];
        if (!ref) throw new Error(`chunk ${c.fingerprint.toString('hex')} is missing from the store: its container ${c.ref.container} is gone and the index has no other copy; run 'vtl scrub'`);
        const reader = await this.reader(ref.container);
        return reader.read(ref, c.fingerprint);
      }),
    );
  }

  private reader(id: number): Promise<ContainerReader> {
    let r = this.readers.get(id);
    if (!r) {
      if (this.readers.size >= MAX_OPEN_READERS) {
        const oldest = this.readers.keys().next().value!;
        const evicted = this.readers.get(oldest)!;
        this.readers.delete(oldest);
        evicted.then((rd) => rd.close()).catch(() => undefined);
      }
      r = this.dataKey(id).then((key) => ContainerReader.open(this.containersDir, id, key));
      r.catch(() => this.readers.delete(id));
      this.readers.set(id, r);
    }
    return r;
  }

  private async dataKey(id: number): Promise<Buffer> {
    const cached = this.dataKeys.get(id);
    if (cached) return cached;
    const wrapped = await this.keyTable.get(containerKey(id));
    if (!wrapped) {
      const err = new Error(`no data key for container ${id}: the container does not exist`) as NodeJS.ErrnoException;
      err.code = 'ENOENT';
      throw err;
    }
    const key = this.keyring.unwrapDataKey(id, wrapped);
    this.dataKeys.set(id, key);
    return key;
  }

  /** Seals containers left open by a crash and indexes what they hold. */
  private async recover(): Promise<void> {
    for (const c of await listContainers(this.containersDir)) {
      if (c.sealed) continue;
      const key = await this.dataKey(c.id);
      const footer = await recoverContainer(this.containersDir, c.id, key);
      this.stats.storedBytes += (await stat(containerPath(this.containersDir, c.id, true))).size;
      await this.indexMissing(footer);
    }
  }

  private async indexMissing(entries: FooterEntry[]): Promise<void> {
    const known = await this.index.lookupMany(entries.map((e) => e.fingerprint));
    this.staged = entries.filter((_, i) => !known[i]).map((e) => [e.fingerprint, stripFp(e)]);
    await this.writeStaged(true);
  }

  /** Rebuilds the fingerprint index from the footers of all sealed containers. */
  rebuildIndex(): Promise<{ containers: number; chunks: number }> {
    return this.exclusive(async () => {
      this.sealInBackground();
      await this.settleSeals();
      await this.index.clear();
      let containers = 0;
      let chunks = 0;
      for (const c of await listContainers(this.containersDir)) {
        const reader = await this.reader(c.id);
        const footer = await reader.footer();
        await this.indexMissing(footer);
        containers++;
        chunks += footer.length;
      }
      return { containers, chunks };
    });
  }

  /** Seals the open container, commits, and closes file handles (not the LevelDB). */
  async close(): Promise<void> {
    if (this.closed) return;
    await this.exclusive(async () => {
      this.sealInBackground();
      await this.settleSeals();
      await this.writeStaged(true);
      for (const r of this.readers.values()) await (await r.catch(() => undefined))?.close();
      this.readers.clear();
      this.closed = true;
    });
  }

  /** Runs store mutations one at a time (several drives may write at once). */
  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    if (this.closed) return Promise.reject(new Error('chunk store is closed'));
    const run = this.lock.then(fn, fn).catch((err: Error) => {
      throw explainStorageError(err, this.dir);
    });
    this.lock = run.catch(() => undefined);
    return run;
  }
}

/** A full disk says so, naming the store and what to do; other errors pass unchanged. */
export function explainStorageError(err: Error, dir: string): Error {
  let full = false;
  for (let e: unknown = err; e instanceof Error && !full; e = e.cause) {
    full = (e as NodeJS.ErrnoException).code === 'ENOSPC' || /no space left on device/i.test(e.message);
  }
  if (!full || err.message.startsWith('disk full')) return err;
  const e = new Error(
    `disk full: no space left on the device holding the vtl store ${dir} (${err.message}). ` +
      'Free space or grow the file system, then retry: everything synced before this point is intact; ' +
      'unsynced data of open streams is lost and the writer must reopen at its last sync point.',
    { cause: err },
  ) as NodeJS.ErrnoException;
  e.code = 'ENOSPC';
  return e;
}

function stripFp(e: FooterEntry): ChunkRef {
  return { container: e.container, offset: e.offset, frameLength: e.frameLength, rawLength: e.rawLength };
}

function containerKey(id: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32BE(id, 0);
  return b;
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}
