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
 * - GC (`beginGc`, `collectContainer`, `endGc`): while it runs, every chunk `putChunks` hands
 *   out is added to the live set, so nothing written during GC is lost. A container is
 *   compacted in the crash-safe order: the new container sealed and durable, then the index
 *   entries moved in one synced batch, then the old file deleted. The open container and
 *   containers being sealed are never touched. Recipes keep stale location hints; reads of a
 *   deleted container fall back to the index.
 */
import { mkdir, readFile, writeFile, stat, unlink, open as openFile } from 'node:fs/promises';
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
  exists,
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

/** What GC did to one container. */
export interface GcContainerResult {
  container: number;
  action: 'kept' | 'deleted' | 'compacted' | 'skipped';
  /** Chunks in its footer, and those of them the index points at and the live set holds. */
  chunks: number;
  liveChunks: number;
  /** Bytes of container files removed minus bytes written. */
  freedBytes: number;
  movedChunks: number;
  movedBytes: number;
  /** The container the live chunks moved into. */
  into: number | null;
  /** Why it was skipped (open, being sealed, gone, damaged). */
  reason: string | null;
}

/** What scrub found in one container. */
export interface ScrubContainerResult {
  container: number;
  /** Chunks read and checked (GCM tag, decompression, fingerprint of the plaintext). */
  chunksChecked: number;
  bytesRead: number;
  damaged: Array<{ fingerprint: string; offset: number; reason: string }>;
  /** The footer itself failed: no chunk of the container can be listed. */
  footerDamaged: string | null;
  /** Footer chunks for which the index names this container but another offset. */
  indexMismatches: number;
  /** The container disappeared while scrub ran (GC). */
  gone: boolean;
}

/** The live set GC marks: a Bloom filter (false positives only keep some garbage). */
export interface LiveSet {
  add(fingerprint: Uint8Array): void;
  mayContain(fingerprint: Uint8Array): boolean;
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
  /** Chunks found in the open container's map and in the locality cache. */
  private readonly cacheHits = { recent: 0, locality: 0 };
  /** While GC runs: every chunk handed out by putChunks is live. */
  private gcLive: LiveSet | undefined;

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

  /** Chunk lookups by the level that answered: open container, locality cache, Bloom filter (new chunk), LevelDB. */
  lookupCounts(): { recent: number; locality: number; bloom: number; leveldb: number } {
    return { ...this.cacheHits, ...this.index.counts };
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
      let ref = this.recent.get(key);
      if (ref) this.cacheHits.recent++;
      else if ((ref = this.locality.get(key))) this.cacheHits.locality++;
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
    if (this.gcLive) for (const fp of fps) this.gcLive.add(fp);
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
    this.writer = await this.newContainer();
    this.stats.containers++;
    return this.writer;
  }

  /** A new container: the id is consumed and the key durable before its first byte exists. */
  private async newContainer(): Promise<ContainerWriter> {
    const next = ((await this.meta.get('nextContainer')) as number | undefined) ?? 1;
    const { key, wrapped } = this.keyring.newDataKey(next);
    const batch = this.db.batch() as CommitBatch;
    batch.put('nextContainer', next + 1, { sublevel: this.meta });
    batch.put(containerKey(next), wrapped, { sublevel: this.keyTable });
    await batch.write(SYNC);
    this.dataKeys.set(next, key);
    return ContainerWriter.create(this.containersDir, next, key);
  }

  // ---- scrub -----------------------------------------------------------------------------------

  /** Sealed containers scrub reads, oldest first. */
  async sealedContainers(): Promise<number[]> {
    return (await listContainers(this.containersDir)).filter((c) => c.sealed).map((c) => c.id);
  }

  /**
   * Reads every chunk of a sealed container and checks it: the frame's GCM tag (with the
   * fingerprint as associated data), decompression, and the fingerprint of the plaintext; and
   * cross-checks the footer against the index. Never changes anything.
   */
  async scrubContainer(id: number): Promise<ScrubContainerResult> {
    const res: ScrubContainerResult = { container: id, chunksChecked: 0, bytesRead: 0, damaged: [], footerDamaged: null, indexMismatches: 0, gone: false };
    const path = containerPath(this.containersDir, id, true);
    const gone = async () => !(await exists(path));
    let footer: FooterEntry[];
    let reader: ContainerReader;
    try {
      reader = await ContainerReader.open(this.containersDir, id, await this.dataKey(id));
    } catch (err) {
      if (await gone()) return { ...res, gone: true };
      return { ...res, footerDamaged: (err as Error).message };
    }
    try {
      try {
        footer = await reader.footer();
      } catch (err) {
        if (await gone()) return { ...res, gone: true };
        return { ...res, footerDamaged: (err as Error).message };
      }
      const refs = await this.index.lookupMany(footer.map((e) => e.fingerprint));
      // The index may point to a newer copy elsewhere (compaction), never to another frame here.
      footer.forEach((e, i) => {
        if (refs[i]?.container === id && refs[i]?.offset !== e.offset) res.indexMismatches++;
      });
      for (const e of footer) {
        res.chunksChecked++;
        res.bytesRead += e.frameLength;
        const why = await this.checkChunk(reader, e);
        if (why) res.damaged.push({ fingerprint: e.fingerprint.toString('hex'), offset: e.offset, reason: why });
      }
      return res;
    } finally {
      await reader.close().catch(() => undefined);
    }
  }

  /**
   * Index entries that point at a container that does not exist (or at a frame beyond its
   * footer's chunks): the chunk is lost even though the index knows it. One pass, memory
   * bounded by the number of containers.
   */
  async scrubIndex(): Promise<{ entries: number; dangling: number; sample: Array<{ fingerprint: string; container: number }> }> {
    const present = new Set((await listContainers(this.containersDir)).map((c) => c.id));
    if (this.writer) present.add(this.writer.id);
    for (const id of this.sealing.keys()) present.add(id);
    const out = { entries: 0, dangling: 0, sample: [] as Array<{ fingerprint: string; container: number }> };
    for await (const [fp, ref] of this.index.entries()) {
      out.entries++;
      if (present.has(ref.container)) continue;
      // GC may have moved it since the listing: the index is asked again before it counts.
      const now = await this.index.lookup(fp);
      if (!now || present.has(now.container) || (await exists(containerPath(this.containersDir, now.container, true)))) continue;
      out.dangling++;
      if (out.sample.length < 100) out.sample.push({ fingerprint: fp.toString('hex'), container: ref.container });
    }
    return out;
  }

  /** Why a chunk is damaged, or null when it reads back and hashes to its fingerprint. */
  private async checkChunk(reader: ContainerReader, e: FooterEntry): Promise<string | null> {
    let raw: Buffer;
    try {
      raw = await reader.read(e, e.fingerprint);
    } catch (err) {
      return (err as Error).message;
    }
    if (raw.length !== e.rawLength) return `raw length ${raw.length}, the footer says ${e.rawLength}`;
    const fp = Buffer.allocUnsafe(16);
    fingerprintBytes(fingerprintKey(this.keyring.fingerprintSecret, raw), fp, 0);
    return fp.equals(e.fingerprint) ? null : 'the plaintext does not hash to its fingerprint';
  }

  // ---- garbage collection ---------------------------------------------------------------------

  /**
   * Starts recording: from now on every chunk putChunks hands out joins `live`. `canStart` is
   * asked under the store lock (e.g. "no stream writer holds unsynced references"); when it
   * says no, nothing starts and this resolves false.
   */
  beginGc(live: LiveSet, canStart: () => boolean = () => true): Promise<boolean> {
    return this.exclusive(async () => {
      if (this.gcLive) throw new Error('a GC is already running on this store');
      if (!canStart()) return false;
      this.gcLive = live;
      return true;
    });
  }

  endGc(): void {
    this.gcLive = undefined;
  }

  /** Ids of sealed containers GC may look at, oldest first. */
  async gcCandidates(): Promise<number[]> {
    return (await listContainers(this.containersDir)).filter((c) => c.sealed && c.id !== this.writer?.id && !this.sealing.has(c.id)).map((c) => c.id);
  }

  /**
   * Collects one container under the store lock: deletes it when no chunk of it is live,
   * compacts it when its live share (by stored bytes) is below `threshold`, else keeps it.
   * A chunk counts only where the index points at this very frame (copies left by an
   * interrupted compaction are garbage).
   */
  collectContainer(id: number, threshold: number): Promise<GcContainerResult> {
    return this.exclusive(async () => {
      const res: GcContainerResult = { container: id, action: 'skipped', chunks: 0, liveChunks: 0, freedBytes: 0, movedChunks: 0, movedBytes: 0, into: null, reason: null };
      const live = this.gcLive;
      if (!live) throw new Error('collectContainer needs beginGc first');
      if (this.writer?.id === id || this.sealing.has(id)) return { ...res, reason: 'open or being sealed' };
      const path = containerPath(this.containersDir, id, true);
      const size = await stat(path).then((st) => st.size, () => -1);
      if (size < 0) return { ...res, reason: 'gone' };
      let footer: FooterEntry[];
      try {
        footer = await (await this.reader(id)).footer();
      } catch (err) {
        return { ...res, reason: `unreadable footer: ${(err as Error).message}` };
      }
      const refs = await this.index.lookupMany(footer.map((e) => e.fingerprint));
      const owned = footer.filter((e, i) => refs[i]?.container === id && refs[i]?.offset === e.offset);
      const alive = owned.filter((e) => live.mayContain(e.fingerprint));
      const dead = owned.filter((e) => !live.mayContain(e.fingerprint));
      res.chunks = footer.length;
      res.liveChunks = alive.length;
      const total = footer.reduce((n, e) => n + e.frameLength, 0);
      const liveBytes = alive.reduce((n, e) => n + e.frameLength, 0);
      if (alive.length > 0 && liveBytes >= threshold * total) return { ...res, action: 'kept' };
      let moved: Array<[Buffer, ChunkRef]> = [];
      if (alive.length > 0) {
        try {
          const copy = await this.copyForward(id, alive);
          moved = copy.moved;
          res.into = copy.into;
          res.movedChunks = alive.length;
          res.movedBytes = copy.size;
          this.stats.storedBytes += copy.size;
        } catch (err) {
          return { ...res, reason: `compaction failed, container kept: ${(err as Error).message}` };
        }
      }
      // Index first (synced): the chunks live on in the new container or are gone for good.
      this.stats.chunks -= dead.length;
      this.stats.uniqueBytes -= dead.reduce((n, e) => n + e.rawLength, 0);
      this.stats.storedBytes -= size;
      this.stats.containers--;
      const batch = this.db.batch() as CommitBatch;
      this.index.stage(batch, moved);
      this.index.stageDelete(batch, dead.map((e) => e.fingerprint));
      batch.put('stats', this.stats, { sublevel: this.meta });
      await batch.write(SYNC);
      await this.forgetContainer(id, path);
      res.freedBytes = size - res.movedBytes;
      res.action = alive.length > 0 ? 'compacted' : 'deleted';
      return res;
    });
  }

  /** Copies live chunks into a new container, sealed and durable before this resolves. */
  private async copyForward(from: number, alive: FooterEntry[]): Promise<{ moved: Array<[Buffer, ChunkRef]>; into: number; size: number }> {
    const reader = await this.reader(from);
    const raws = await reader.readMany(alive.map((e) => ({ ref: e, fingerprint: e.fingerprint })));
    const w = await this.newContainer();
    this.stats.containers++;
    try {
      const key = await this.dataKey(w.id);
      const first = w.nextSeq();
      const frames = await this.codec.seal(key, alive.map((e, j) => ({ containerId: w.id, seq: first + j, fingerprint: e.fingerprint, raw: raws[j] })));
      const moved = alive.map((e, j): [Buffer, ChunkRef] => [e.fingerprint, w.append(e.fingerprint, frames[j], raws[j].length)]);
      await w.seal();
      const size = (await stat(containerPath(this.containersDir, w.id, true))).size;
      return { moved, into: w.id, size };
    } catch (err) {
      this.stats.containers--;
      await w.abandon().catch(() => undefined);
      throw err;
    }
  }

  /** Drops every cached trace of a container, deletes its file, then its data key. */
  private async forgetContainer(id: number, path: string): Promise<void> {
    this.locality.drop(id);
    const r = this.readers.get(id);
    this.readers.delete(id);
    await (await r?.catch(() => undefined))?.close();
    await unlink(path).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw err;
    });
    await syncDir(this.containersDir);
    // A reader that finds no key falls back to the index (readRelocated).
    await this.keyTable.del(containerKey(id));
    this.dataKeys.delete(id);
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

async function syncDir(dir: string): Promise<void> {
  const fh = await openFile(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}
