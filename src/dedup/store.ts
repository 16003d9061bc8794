/**
 * The chunk store: keeps each unique chunk once, compressed and encrypted in append-only
 * containers, found through the fingerprint index.
 *
 * Guarantees:
 * - `putChunks` (or `putHashed`, after `cutAndHash` cut and fingerprinted a batch off the event
 *   loop) returns, in order, where every chunk lives; a chunk seen before (in the open
 *   container, the locality cache, or the index) is not stored again.
 * - Puts overlap: one plans (lookups, container and seq of each new chunk) under the store lock
 *   while earlier ones' frames are sealed and appended, in put order; each resolves once its
 *   chunks are appended. Every other operation runs after all earlier puts are complete.
 * - Nothing `putChunks` returns is durable until `commit()`: that flushes the open container
 *   (fdatasync), then writes the staged index entries and the caller's own LevelDB operations in
 *   one synced batch. A crash before `commit()` resolves leaves the store as at the last commit,
 *   plus unreferenced chunks (garbage) in containers.
 * - Container ids are never reused; a container's data key is stored (wrapped by the master key)
 *   before its first byte is written.
 * - `readChunks` returns exactly the bytes that were stored or throws `IntegrityError`.
 * - After a crash, `open` seals every unsealed container, keeping its valid frames.
 * - GC (`beginGc`, `collectContainer`, `endGc`): while it runs, every chunk `putChunks` hands
 *   out is added to the live set, so nothing written during GC is lost. Recipe pages are
 *   committed through `commitPages`, which keeps a reverse map (container -> pages) and a set
 *   of candidate containers in the same batch, so GC examines only candidates and reads only
 *   the pages that refer to them (see the GC section). A container is compacted in the
 *   crash-safe order: the new container sealed and durable, map entries for it, then the index
 *   entries moved and the pages' hints rewritten in one synced batch, then the old file
 *   deleted. The open container and containers being sealed are never touched. A hint left
 *   naming a deleted container falls back to the index.
 */
import { mkdir, readFile, rename, writeFile, stat, unlink, open as openFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { AbstractSublevel } from 'abstract-level';
import type { Level } from 'level';
import { createHmac } from 'node:crypto';
import { Keyring, type DataKeyTable } from '../crypto/keyring.js';
import { ReplicaCipher, type RecoveryMaterial } from '../crypto/recovery.js';
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
import { CodecPool, type SealItem } from './codec-pool.js';
import { CommitBatch } from './commit-batch.js';
import { readInRuns } from './runs.js';
import {
  FingerprintIndex,
  FingerprintTable,
  LocalityCache,
  REF_WORDS,
  fingerprintWords,
  footerWords,
  type BinarySublevel,
  type ChunkRefs,
} from './fingerprint-index.js';
import { fingerprintBatch, fingerprintBytes, fingerprintKey } from './fingerprint.js';

export { IntegrityError, type ChunkRef } from './container.js';
export { CommitBatch } from './commit-batch.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type RootDb = Level<any, any>;
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type JsonSublevel = AbstractSublevel<RootDb, any, string, any>;
/** classic-level honours `sync` (fsync of the LevelDB log); abstract-level's types omit it. */
const SYNC = { sync: true };

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
  /** Why it was skipped (open, being sealed, damaged). */
  reason: string | null;
  /** Recipe pages the reverse map named for it that GC read, and the chunk references in them. */
  pagesRead: number;
  references: number;
}

/**
 * Recipe pages as GC and the reverse map see them (the stream layer owns the format): a page is
 * a list of chunk references, each a fingerprint and a location hint.
 */
export interface RecipePages {
  /** The sublevel of the root LevelDB holding the pages, by opaque page key. */
  readonly db: BinarySublevel;
  count(page: Buffer): number;
  fingerprint(page: Buffer, i: number): Buffer;
  /** The container of the i-th reference's location hint. */
  hint(page: Buffer, i: number): number;
  /** Points the i-th reference's location hint at `ref` (the same chunk, elsewhere). */
  setHint(page: Buffer, i: number, ref: ChunkRef): void;
}

/** Pages a commit writes and deletes; `hints`: the distinct hint containers of the page deleted. */
export interface PageChange {
  put?: Array<{ key: Buffer; page: Buffer }>;
  del?: Array<{ key: Buffer; hints: number[] }>;
}

/** What GC learned from the pages that refer to one container. */
interface PageScan {
  /** Own chunks (fingerprint as latin1) some page refers to. */
  referenced: Set<string>;
  rewrite: Array<{ key: Buffer; page: Buffer }>;
  /** Pages whose hints name the container for chunks it does not own. */
  foreign: Array<{ key: Buffer; fps: Buffer[] }>;
  /** Page keys the container's map names that no longer refer to it. */
  stale: Buffer[];
  pagesRead: number;
  references: number;
}

const EMPTY = Buffer.alloc(0);
/** Bytes of pages GC keeps in memory to rewrite their hints when it compacts one container. */
const PAGE_REWRITE_BUDGET = 32 * 1024 * 1024;

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
/**
 * Containers being sealed at once (each holds its frames until written). Two held ingest back:
 * a seal (write, two fsyncs, rename) took 50-90 ms here, as long as filling a container.
 */
const MAX_SEALING = 4;
/** Runs shorter than this are decoded on the event loop: a worker round trip costs more. */
const INLINE_OPEN_CHUNKS = 8;

/** A new chunk of an earlier put: its location once that put's frames are appended. */
interface PendingChunk {
  ref?: ChunkRef;
}

/**
 * The chunks of one put, by index. Classes rather than closures: a closure made per put is a new
 * function that V8 optimizes again after each garbage collection (measured: 86 recompilations
 * of one such callback in an ingest of 1.64 GB), where a method is optimized once.
 */
interface PutChunks {
  at(i: number): Uint8Array;
}

class ListedChunks implements PutChunks {
  constructor(private readonly chunks: Uint8Array[]) {}
  at(i: number): Uint8Array {
    return this.chunks[i];
  }
}

/** Chunk i is `view` from `cuts[i - 1]` (0 for the first) to `cuts[i]`. */
class CutChunks implements PutChunks {
  constructor(
    private readonly view: Uint8Array,
    private readonly cuts: Uint32Array,
  ) {}
  at(i: number): Uint8Array {
    return this.view.subarray(i === 0 ? 0 : this.cuts[i - 1], this.cuts[i]);
  }
}

const ignore = (): undefined => undefined;

/** A put between its plan (under the store lock) and its appends (in put order, after the seals). */
interface PlannedPut {
  fingerprints: Buffer;
  words: Int32Array;
  refs: ChunkRefs;
  /** Frames to append, in order: chunk indices, their raw lengths, the frames being sealed. */
  parts: Array<{ writer: ContainerWriter; idx: number[]; rawLengths: number[]; estimate: number; frames: Promise<Buffer[]>; last: boolean }>;
  /** Chunks equal to a new chunk not appended when this put was planned (of this put or an earlier one). */
  waits: Array<[number, PendingChunk]>;
  /** This put's new chunks, as later puts may meet them. */
  mine: Array<[number, string, PendingChunk]>;
}

export class ChunkStore {
  readonly chunker: Chunker;
  private readonly index: FingerprintIndex;
  private readonly locality = new LocalityCache();
  /** Chunks of the open container and of containers being sealed (not in the locality cache). */
  private readonly recent = new FingerprintTable();
  /** Index entries of the open container not yet written to LevelDB. */
  private staged: Array<[Buffer, ChunkRef]> = [];
  /** The container new chunks are planned into (see planPut). */
  private writer: ContainerWriter | undefined;
  /** Containers that received plans and are not being sealed yet: the open one and rolled ones. */
  private readonly filling = new Map<number, ContainerWriter>();
  /** Per filling container: the next seq to plan and its planned size (estimated until appended). */
  private readonly planned = new WeakMap<ContainerWriter, { seq: number; bytes: number }>();
  /** New chunks of puts whose frames are not appended yet, by fingerprint: later puts wait for them. */
  private readonly pending = new Map<string, PendingChunk>();
  /** The puts' appends, in put order. */
  private appends: Promise<unknown> = Promise.resolve();
  /** The next container id (read once; this process alone writes it), and the queue of their synced writes. */
  private nextContainerId: number | undefined;
  private containerKeysWritten: Promise<unknown> = Promise.resolve();
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
        table.batch(entries.map(([id, wrapped]) => ({ type: 'put' as const, key: containerKey(id), value: wrapped })), SYNC as object),
      entries: async function* () {
        for await (const [k, v] of table.iterator()) yield [k.readUInt32BE(0), v] as [number, Buffer];
      },
    };
  }

  /** No container is created while the rotation runs (the keyring requires it). */
  rotateMasterKey(): Promise<{ rewrapped: number }> {
    return this.exclusive(async () => {
      await this.containerKeysWritten; // a new container's key, wrapped before, must be in the table
      return this.keyring.rotateMasterKey(this.dataKeyTable());
    });
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
    for (let i = 0; i < chunks.length; i++) fingerprintBytes(fingerprintKey(secret, chunks[i]), block, i * 16);
    return this.putHashed(chunks, block);
  }

  /** Like `putChunks` with the fingerprints (16 bytes each, in order) already computed. */
  async putHashed(chunks: Uint8Array[], fingerprints: Buffer): Promise<StoredChunk[]> {
    const refs = await this.put(chunks.length, new ListedChunks(chunks), fingerprints);
    const stored: StoredChunk[] = new Array(chunks.length);
    for (let i = 0; i < chunks.length; i++) stored[i] = { fingerprint: fingerprints.subarray(i * 16, i * 16 + 16), ref: refAt(refs, i) };
    return stored;
  }

  /**
   * Like `putHashed` for a batch cut by `cutAndHash`: chunk i is `view` from `cuts[i - 1]` (0
   * for the first) to `cuts[i]`. Returns the chunks' references (ChunkRefs layout, in order);
   * the fingerprints are the caller's. Costs no object per duplicate chunk.
   */
  putCut(view: Uint8Array, cuts: Uint32Array, fingerprints: Buffer): Promise<ChunkRefs> {
    return this.put(cuts.length, new CutChunks(view, cuts), fingerprints);
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
    return { cuts, fingerprints: fingerprintBatch(this.keyring.fingerprintSecret, view, cuts) };
  }

  /**
   * Stores `n` chunks (`chunk(i)`, fingerprint i of `fingerprints`), in two steps so that puts
   * overlap: the plan (lookups, and a container and seq for each new chunk, whose sealing it
   * starts) runs under the store lock; the appends run after the seals, in put order, while the
   * next put plans. Before this the seal workers waited for each put's appends and the next
   * plan, and the event loop for the seals. Resolves when the chunks are appended: `chunks.at(i)`
   * is not called after that.
   */
  private async put(n: number, chunks: PutChunks, fingerprints: Buffer): Promise<ChunkRefs> {
    const plan = await this.exclusive(() => this.planPut(n, chunks, fingerprints), { drain: false });
    const done = this.appends.then(() => this.appendPut(plan));
    this.appends = done.catch(ignore);
    return done;
  }

  private async planPut(n: number, chunks: PutChunks, fingerprints: Buffer): Promise<PlannedPut> {
    if (this.sealFailure) throw this.sealFailure;
    if (fingerprints.length < n * 16) throw new RangeError(`${n} chunks need ${n * 16} bytes of fingerprints, got ${fingerprints.length}`);
    const words = fingerprintWords(fingerprints.subarray(0, n * 16));
    const plan: PlannedPut = { fingerprints, words, refs: new Uint32Array(n * REF_WORDS), parts: [], waits: [], mine: [] };
    const unknown: number[] = [];
    const recent = this.recent;
    const locality = this.locality.table;
    for (let i = 0; i < n; i++) {
      let slot = recent.find(words, i);
      if (slot >= 0) {
        this.cacheHits.recent++;
        recent.copyRef(slot, plan.refs, i);
      } else if ((slot = locality.find(words, i)) >= 0) {
        this.cacheHits.locality++;
        locality.copyRef(slot, plan.refs, i);
      } else {
        unknown.push(i);
      }
    }
    // In the same turn as the cache lookups: an earlier put's new chunk is in the caches once
    // appended, and in `pending` until then.
    const asked: number[] = [];
    const keys: string[] = [];
    for (const i of unknown) {
      const key = fingerprints.toString('latin1', i * 16, i * 16 + 16);
      const waited = this.pending.get(key);
      if (waited) {
        plan.waits.push([i, waited]);
      } else {
        asked.push(i);
        keys.push(key);
      }
    }
    try {
      if (asked.length > 0) await this.placeUnknown(plan, asked, keys, chunks);
    } catch (err) {
      // Seqs handed to parts whose frames will never be appended: the container cannot go on.
      this.abandonPut(plan, err as Error, plan.parts.length > 0);
      throw err;
    }
    if (this.gcLive) for (let i = 0; i < n; i++) this.gcLive.add(fingerprints.subarray(i * 16, i * 16 + 16));
    return plan;
  }

  /**
   * Chunks nothing in memory knows: the index, else new. The first of equal ones in the put is
   * new; the others wait for it in `pending`, as chunks of later puts do.
   */
  private async placeUnknown(plan: PlannedPut, unknown: number[], keys: string[], chunks: PutChunks): Promise<void> {
    const fps: Buffer[] = new Array(unknown.length);
    for (let j = 0; j < unknown.length; j++) fps[j] = plan.fingerprints.subarray(unknown[j] * 16, unknown[j] * 16 + 16);
    const found = await this.lookupUnknown(fps);
    const fresh: number[] = [];
    for (let j = 0; j < unknown.length; j++) {
      const i = unknown[j];
      const ref = found[j];
      if (ref) {
        setRef(plan.refs, i, ref);
        continue;
      }
      const key = keys[j];
      const first = this.pending.get(key);
      if (first) {
        plan.waits.push([i, first]);
        continue;
      }
      fresh.push(i);
      const entry: PendingChunk = {};
      this.pending.set(key, entry);
      plan.mine.push([i, key, entry]);
    }
    if (fresh.length > 0) await this.planFresh(plan, fresh, chunks);
  }

  /** Index lookups for chunks missed by the caches; loads the hit containers' footers. */
  private async lookupUnknown(fps: Buffer[]): Promise<(ChunkRef | undefined)[]> {
    const found = await this.index.lookupMany(fps);
    const load = new Set<number>();
    for (const ref of found) {
      if (!ref) continue;
      if (!this.locality.has(ref.container)) load.add(ref.container);
      else this.locality.touch(ref.container);
    }
    if (load.size > 0) {
      const loads: Promise<void>[] = [];
      for (const id of load) loads.push(this.loadLocality(id));
      await Promise.all(loads);
    }
    return found;
  }

  private async loadLocality(id: number): Promise<void> {
    if (this.filling.has(id) || this.sealing.has(id)) return;
    try {
      const reader = await this.reader(id);
      const footer = await reader.footer();
      this.locality.addContainer(id, footer);
    } catch {
      // The cache is an optimisation only: a container whose footer cannot be read (being
      // compacted, damaged) is still served through the index, and scrub reports the damage.
    }
  }

  /**
   * Plans new chunks into containers in stream order, rolling to a new container when the
   * planned size (estimated from the recent compression ratio until appended) reaches the
   * target, and starts sealing each part.
   */
  private async planFresh(plan: PlannedPut, fresh: number[], chunks: PutChunks): Promise<void> {
    const all: Uint8Array[] = new Array(fresh.length);
    for (let j = 0; j < fresh.length; j++) all[j] = chunks.at(fresh[j]);
    let start = 0;
    while (start < fresh.length) {
      const writer = await this.openWriter();
      const state = this.planned.get(writer)!;
      let estimate = 0;
      let end = start;
      do {
        estimate += all[end].length * this.compressRatio + FRAME_OVERHEAD_ESTIMATE;
        end++;
      } while (end < fresh.length && state.bytes + estimate < CONTAINER_TARGET_SIZE);
      const idx = fresh.slice(start, end);
      const raws = all.slice(start, end);
      const key = await this.dataKey(writer.id);
      const firstSeq = state.seq;
      state.seq += idx.length;
      state.bytes += estimate;
      const items: SealItem[] = new Array(idx.length);
      const rawLengths: number[] = new Array(idx.length);
      for (let j = 0; j < idx.length; j++) {
        const fingerprint = plan.fingerprints.subarray(idx[j] * 16, idx[j] * 16 + 16);
        items[j] = { containerId: writer.id, seq: firstSeq + j, fingerprint, raw: raws[j] };
        rawLengths[j] = raws[j].length;
      }
      const frames = this.codec.seal(key, items);
      frames.catch(ignore); // appendPut reports it
      const last = state.bytes >= CONTAINER_TARGET_SIZE;
      if (last) this.writer = undefined; // the next part opens the next container
      plan.parts.push({ writer, idx, rawLengths, estimate, frames, last });
      start = end;
    }
  }

  /**
   * Appends a planned put's frames once sealed, in put order; a container whose last planned
   * part this is starts sealing. A failure here leaves containers with planned seqs that never
   * come, so the store fails every later write until it is reopened (as a failed seal does).
   */
  private async appendPut(plan: PlannedPut): Promise<ChunkRefs> {
    try {
      const { refs, words, fingerprints } = plan;
      for (const part of plan.parts) {
        const frames = await part.frames;
        const { idx, rawLengths, writer } = part;
        let raw = 0;
        let stored = 0;
        for (let j = 0; j < idx.length; j++) {
          const i = idx[j];
          const f = fingerprints.subarray(i * 16, i * 16 + 16);
          const ref = writer.append(f, frames[j], rawLengths[j]);
          setRef(refs, i, ref);
          this.recent.set(words, i, ref);
          this.staged.push([f, ref]);
          raw += rawLengths[j];
          stored += frames[j].length;
        }
        this.planned.get(part.writer)!.bytes += stored - part.estimate;
        this.stats.chunks += part.idx.length;
        this.stats.uniqueBytes += raw;
        if (raw > 0) this.compressRatio = 0.7 * this.compressRatio + 0.3 * Math.min(1.05, stored / raw);
        if (part.last) {
          // Backpressure: a slow disk must not let sealed-but-unwritten containers pile up.
          while (this.sealing.size >= MAX_SEALING) await Promise.race(this.sealing.values());
          this.sealInBackground(part.writer);
        }
      }
      for (const [i, key, entry] of plan.mine) {
        entry.ref = refAt(refs, i);
        if (this.pending.get(key) === entry) this.pending.delete(key);
      }
      for (const [i, entry] of plan.waits) {
        if (!entry.ref) throw new Error('a chunk this write shares with an earlier one was not stored (that write failed)');
        setRef(refs, i, entry.ref);
      }
      return refs;
    } catch (err) {
      this.abandonPut(plan, err as Error, true);
      throw err;
    }
  }

  /** A put that failed: later puts stop waiting for its chunks; with `fatal` the store stops storing. */
  private abandonPut(plan: PlannedPut, err: Error, fatal: boolean): void {
    for (const [, key, entry] of plan.mine) if (this.pending.get(key) === entry) this.pending.delete(key);
    if (fatal) this.sealFailure ??= new Error(`storing new chunks failed: ${err.message}; reopen the store`, { cause: err });
  }

  private async openWriter(): Promise<ContainerWriter> {
    if (this.writer) return this.writer;
    const writer = await this.newContainer();
    this.writer = writer;
    this.filling.set(writer.id, writer);
    this.planned.set(writer, { seq: writer.nextSeq(), bytes: writer.size });
    this.stats.containers++;
    return writer;
  }

  /**
   * A new container: the id is consumed and the key durable before its first byte exists. The
   * writer creates its file only after that synced write (ContainerWriter.deferred), so a roll
   * does not wait for it: that wait (about 9 ms here, behind fsyncs in the threadpool, about 90
   * rolls per GB) was on the ingest's critical path. Writes go one at a time, in id order, so
   * `nextContainer` only grows; a failed one fails that container's first flush.
   */
  private async newContainer(): Promise<ContainerWriter> {
    this.nextContainerId ??= ((await this.meta.get('nextContainer')) as number | undefined) ?? 1;
    const next = this.nextContainerId++;
    const { key, wrapped } = this.keyring.newDataKey(next);
    const batch = new CommitBatch(this.db);
    batch.put('nextContainer', next + 1, { sublevel: this.meta });
    batch.put(containerKey(next), wrapped, { sublevel: this.keyTable });
    // A GC candidate from birth: chunks of aborted or crashed writes in it are referenced by no page.
    batch.put(containerKey(next), EMPTY, { sublevel: this.gcTables.candidates });
    if (next === 1) batch.put('pageRefs', 'built', { sublevel: this.meta });
    const durable = this.containerKeysWritten.then(() => batch.write(SYNC));
    this.containerKeysWritten = durable.catch(() => undefined);
    this.dataKeys.set(next, key);
    return ContainerWriter.deferred(this.containersDir, next, key, durable);
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
    for (const id of this.filling.keys()) present.add(id);
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
  //
  // GC examines candidates only: containers that may hold garbage. A container becomes one when
  // it is created (chunks of writes that were aborted or cut by a crash are unreferenced) and
  // whenever a recipe page that referred to it is deleted or rewritten. For a candidate C, the
  // reverse map names the pages that refer to C's chunks; GC reads just those. So a run costs
  // what was written, deleted and moved since the last one, never a pass over the whole store.
  //
  // Invariant of the reverse map (table `containerpages`): for every stored recipe page P and
  // every chunk P refers to, there is an entry (C, P) where C is the container the chunk lives
  // in: its location hint's container while that exists (a data key is present), else the one
  // the index names. Extra entries are harmless: GC drops them when it finds P no longer refers
  // to C. Entries are written in the same LevelDB batch as the page, under the store lock, so
  // GC never sees one without the other.

  private gcTablesCache: { refs: BinarySublevel; candidates: BinarySublevel } | undefined;
  /** Whether the reverse map covers every page (stores made before it existed need one pass). */
  private pageRefsBuilt: boolean | undefined;

  private get gcTables(): { refs: BinarySublevel; candidates: BinarySublevel } {
    return (this.gcTablesCache ??= {
      refs: this.db.sublevel<Buffer, Buffer>('containerpages', { keyEncoding: 'buffer', valueEncoding: 'buffer' }) as BinarySublevel,
      candidates: this.db.sublevel<Buffer, Buffer>('gccandidates', { keyEncoding: 'buffer', valueEncoding: 'buffer' }) as BinarySublevel,
    });
  }

  private async refsBuilt(): Promise<boolean> {
    if (this.pageRefsBuilt === undefined) {
      const state = await this.meta.get('pageRefs');
      // No container ever made: no page can refer to anything, the (empty) map is complete.
      this.pageRefsBuilt = state === 'built' || (state === undefined && (await this.meta.get('nextContainer')) === undefined);
    }
    return this.pageRefsBuilt;
  }

  /**
   * Commits recipe pages with their reverse-map entries in one batch: like `commit` (synced,
   * with the staged index entries and the caller's operations), or, with `sync` false, a plain
   * unsynced batch (pages a writer spills ahead of its sync point). Pages in `del` are deleted
   * (a page both deleted and put is replaced); the containers they referred to become GC
   * candidates. `del` carries the hint containers the caller read outside the lock: a page is
   * read again here only when one of them is gone (GC moved it meanwhile).
   */
  commitPages(pages: RecipePages, change: PageChange, extra?: (batch: CommitBatch) => void, sync = true): Promise<void> {
    return this.exclusive(async () => {
      if (sync) {
        await this.settleSeals();
        await this.writer?.flush();
      }
      const refs = await this.stagePageRefs(pages, change);
      const stage = (b: CommitBatch): void => {
        refs(b);
        extra?.(b);
      };
      if (sync) return this.writeStaged(true, stage);
      const batch = new CommitBatch(this.db);
      stage(batch);
      await batch.write();
    });
  }

  private async stagePageRefs(pages: RecipePages, change: PageChange): Promise<(b: CommitBatch) => void> {
    const known = new Map<number, boolean>();
    const exact = !(await this.refsBuilt());
    const drop: Buffer[] = [];
    const add: Buffer[] = [];
    const candidates = new Set<number>();
    const dropPage = (key: Buffer, containers: Iterable<number>): void => {
      for (const c of containers) {
        drop.push(refKey(c, key));
        candidates.add(c);
      }
    };
    const reread: Buffer[] = [];
    for (const d of change.del ?? []) {
      let current = true;
      for (const c of d.hints) if (!(await this.containerExists(c, known))) current = false;
      if (current) dropPage(d.key, d.hints);
      else reread.push(d.key);
    }
    for (let i = 0; i < reread.length; i += 256) {
      const keys = reread.slice(i, i + 256);
      const bodies = await pages.db.getMany(keys);
      for (const [j, page] of bodies.entries()) if (page) dropPage(keys[j], await this.pageContainers(pages, page, false, known));
    }
    for (const p of change.put ?? []) for (const c of await this.pageContainers(pages, p.page, exact, known)) add.push(refKey(c, p.key));
    const { refs, candidates: table } = this.gcTables;
    return (b) => {
      for (const d of change.del ?? []) b.del(d.key, { sublevel: pages.db });
      for (const k of drop) b.del(k, { sublevel: refs });
      for (const c of candidates) b.put(containerKey(c), EMPTY, { sublevel: table });
      for (const p of change.put ?? []) b.put(p.key, p.page, { sublevel: pages.db });
      for (const k of add) b.put(k, EMPTY, { sublevel: refs });
    };
  }

  /**
   * The containers a page's chunks live in: each hint's container while it exists; for hints
   * whose container is gone (compacted), or every chunk when `exact`, the index's answer.
   */
  private async pageContainers(pages: RecipePages, page: Buffer, exact: boolean, known: Map<number, boolean>): Promise<Set<number>> {
    const n = pages.count(page);
    const hints = new Set<number>();
    for (let i = 0; i < n; i++) hints.add(pages.hint(page, i));
    const out = new Set<number>();
    const gone = new Set<number>();
    for (const c of hints) {
      if (await this.containerExists(c, known)) out.add(c);
      else gone.add(c);
    }
    if (gone.size === 0 && !exact) return out;
    const fps: Buffer[] = [];
    for (let i = 0; i < n; i++) if (exact || gone.has(pages.hint(page, i))) fps.push(pages.fingerprint(page, i));
    for (const ref of await this.index.lookupMany(fps)) if (ref) out.add(ref.container);
    return out;
  }

  /** A container exists while its data key does (GC deletes the key in its index batch). */
  private async containerExists(id: number, known?: Map<number, boolean>): Promise<boolean> {
    const cached = known?.get(id);
    if (cached !== undefined) return cached;
    const yes = this.dataKeys.has(id) || (await this.keyTable.get(containerKey(id))) !== undefined;
    known?.set(id, yes);
    return yes;
  }

  /** Whether the reverse map covers every recipe page (else `buildPageRefs` must run first). */
  pageRefsReady(): Promise<boolean> {
    return this.refsBuilt();
  }

  /**
   * Builds the reverse map of a store made before it existed: one pass over every recipe page,
   * in batches of 256 pages that also record where the pass stands (a crash or a cancel resumes
   * there). Chunks are placed by the index (exact). Then every container becomes a candidate
   * (the garbage made before is unknown) and the map is marked complete. Returns pages read.
   */
  async buildPageRefs(pages: RecipePages, progress?: (pagesDone: number) => void): Promise<number> {
    if (await this.refsBuilt()) return 0;
    const state = (await this.meta.get('pageRefs')) as { after?: string } | undefined;
    let after: Buffer | undefined = state?.after ? Buffer.from(state.after, 'hex') : undefined;
    let done = 0;
    for (;;) {
      const group: Array<[Buffer, Buffer]> = [];
      for await (const e of pages.db.iterator(after ? { gt: after, limit: 256 } : { limit: 256 })) group.push(e);
      if (group.length === 0) break;
      await this.exclusive(async () => {
        const known = new Map<number, boolean>();
        const batch = new CommitBatch(this.db);
        for (const [key, page] of group) {
          for (const c of await this.pageContainers(pages, page, true, known)) batch.put(refKey(c, key), EMPTY, { sublevel: this.gcTables.refs });
        }
        const last = group[group.length - 1][0];
        batch.put('pageRefs', { after: last.toString('hex') }, { sublevel: this.meta });
        after = last;
        await batch.write();
      });
      done += group.length;
      progress?.(done);
    }
    const ids = (await listContainers(this.containersDir)).map((c) => c.id);
    for (let i = 0; i < ids.length; i += 4096) {
      const batch = new CommitBatch(this.db);
      for (const id of ids.slice(i, i + 4096)) batch.put(containerKey(id), EMPTY, { sublevel: this.gcTables.candidates });
      await batch.write();
    }
    await this.exclusive(async () => {
      const batch = new CommitBatch(this.db);
      batch.put('pageRefs', 'built', { sublevel: this.meta });
      await batch.write(SYNC);
      this.pageRefsBuilt = true;
    });
    return done;
  }

  /**
   * Starts recording: from now on every chunk putChunks hands out joins `live`. `markHeld`
   * runs first, in the same turn under the store lock: it adds the chunks handed out before
   * that no committed recipe page names yet (those stream writers hold in memory).
   */
  beginGc(live: LiveSet, markHeld: (live: LiveSet) => void = () => undefined): Promise<void> {
    return this.exclusive(async () => {
      if (this.gcLive) throw new Error('a GC is already running on this store');
      markHeld(live);
      this.gcLive = live;
    });
  }

  endGc(): void {
    this.gcLive = undefined;
  }

  /**
   * GC candidates (containers that may hold garbage) after container `after`, by id, up to
   * `limit` of them; the open container and those being sealed wait for a later run.
   */
  async gcCandidates(after = -1, limit = 1024): Promise<number[]> {
    const out: number[] = [];
    const range = after >= 0 ? { gt: containerKey(after) } : {};
    for await (const k of this.gcTables.candidates.keys(range)) {
      const id = k.readUInt32BE(0);
      if (!this.filling.has(id) && !this.sealing.has(id)) out.push(id);
      if (out.length >= limit) break;
    }
    return out;
  }

  /**
   * Collects one candidate under the store lock. Its chunks that count are those the index
   * points at in this very frame (copies left by an interrupted compaction are garbage); one is
   * live when a page the reverse map names refers to it, or it was handed out during this GC.
   * No live chunk: deleted; live share (of stored bytes) below `threshold`: compacted; else
   * kept. Crash-safe order: the new container sealed and durable; the map entries for it added;
   * one synced batch moves the index entries, rewrites the pages' location hints (as many as
   * PAGE_REWRITE_BUDGET allows; the others are resolved through the index) and deletes the old
   * data key; then the old file, its map entries and its candidate mark go.
   */
  collectContainer(id: number, threshold: number, pages: RecipePages): Promise<GcContainerResult> {
    return this.exclusive(async () => {
      const res: GcContainerResult = { container: id, action: 'skipped', chunks: 0, liveChunks: 0, freedBytes: 0, movedChunks: 0, movedBytes: 0, into: null, reason: null, pagesRead: 0, references: 0 };
      const live = this.gcLive;
      if (!live) throw new Error('collectContainer needs beginGc first');
      if (this.filling.has(id) || this.sealing.has(id)) return { ...res, reason: 'open or being sealed' };
      const path = containerPath(this.containersDir, id, true);
      const size = await stat(path).then((st) => st.size, () => -1);
      if (!(await this.containerExists(id))) {
        // Collected already; a crash cut the clean-up short (or its creation: no file at all).
        await this.forgetContainer(id, path);
        await this.dropContainerRefs(id);
        return { ...res, action: 'deleted' };
      }
      if (size < 0 && (await exists(containerPath(this.containersDir, id, false)))) return { ...res, reason: 'not sealed' };
      let footer: FooterEntry[] = [];
      try {
        if (size >= 0) footer = await (await this.reader(id)).footer();
      } catch (err) {
        return { ...res, reason: `unreadable footer: ${(err as Error).message}` };
      }
      const indexed = await this.index.lookupMany(footer.map((e) => e.fingerprint));
      const owned = new Map<string, FooterEntry>();
      footer.forEach((e, i) => {
        if (indexed[i]?.container === id && indexed[i]?.offset === e.offset) owned.set(fpKey(e.fingerprint), e);
      });
      const total = footer.reduce((n, e) => n + e.frameLength, 0);
      let ownedBytes = 0;
      for (const e of owned.values()) ownedBytes += e.frameLength;
      // Once every own chunk is found referenced and that keeps the container, no more pages are needed.
      const scan = await this.scanPages(id, pages, owned, (s) => s.referenced.size === owned.size && owned.size > 0 && ownedBytes >= threshold * total);
      res.pagesRead = scan.pagesRead;
      res.references = scan.references;
      const alive: FooterEntry[] = [];
      const dead: FooterEntry[] = [];
      let guarded = false; // live only because handed out during this GC: look again next time
      for (const [k, e] of owned) {
        if (scan.referenced.has(k)) alive.push(e);
        else if (live.mayContain(e.fingerprint)) (guarded = true), alive.push(e);
        else dead.push(e);
      }
      res.chunks = footer.length;
      res.liveChunks = alive.length;
      const liveBytes = alive.reduce((n, e) => n + e.frameLength, 0);
      if (alive.length > 0 && liveBytes >= threshold * total) {
        const batch = new CommitBatch(this.db);
        for (const k of scan.stale) batch.del(refKey(id, k), { sublevel: this.gcTables.refs });
        if (!guarded) batch.del(containerKey(id), { sublevel: this.gcTables.candidates });
        await batch.write();
        return { ...res, action: 'kept' };
      }
      // Hints naming this container for chunks it does not own: where the index says they are.
      const foreignFps = scan.foreign.flatMap((f) => f.fps);
      const owners = await this.index.lookupMany(foreignFps);
      if (owners.some((r) => r?.container === id)) {
        return { ...res, reason: `${size < 0 ? 'file missing' : 'the index names frames its footer lacks'}: chunks recipes refer to are unreadable; run 'vtl scrub'` };
      }
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
      // Map entries first: a crash before the index batch leaves only extra ones.
      await this.addMovedRefs(id, res.into, scan, owners);
      const movedTo = new Map(moved.map(([fp, ref]) => [fpKey(fp), ref]));
      const owner = new Map<string, ChunkRef>();
      foreignFps.forEach((fp, i) => owners[i] && owner.set(fpKey(fp), owners[i]!));
      if (size >= 0) {
        this.stats.chunks -= dead.length;
        this.stats.uniqueBytes -= dead.reduce((n, e) => n + e.rawLength, 0);
        this.stats.storedBytes -= size;
        this.stats.containers--;
      }
      // Then the index (synced): the chunks live on in the new container or are gone for good.
      const batch = new CommitBatch(this.db);
      this.index.stage(batch, moved);
      this.index.stageDelete(batch, dead.map((e) => e.fingerprint));
      for (const { key, page } of scan.rewrite) if (rewriteHints(pages, page, id, movedTo, owner)) batch.put(key, page, { sublevel: pages.db });
      batch.del(containerKey(id), { sublevel: this.keyTable });
      if (res.into !== null && !guarded) batch.del(containerKey(res.into), { sublevel: this.gcTables.candidates });
      batch.put('stats', this.stats, { sublevel: this.meta });
      await batch.write(SYNC);
      this.dataKeys.delete(id);
      await this.forgetContainer(id, path);
      await this.dropContainerRefs(id);
      res.freedBytes = Math.max(0, size) - res.movedBytes;
      res.action = alive.length > 0 ? 'compacted' : 'deleted';
      return res;
    });
  }

  /**
   * Reads the pages the reverse map names for container `id`, in groups: which of its own
   * chunks they refer to, pages to rewrite (up to PAGE_REWRITE_BUDGET bytes of them), hints to
   * `id` for chunks it does not own, and map entries that are stale. Stops once `enough` says so.
   */
  private async scanPages(id: number, pages: RecipePages, owned: Map<string, FooterEntry>, enough: (s: PageScan) => boolean): Promise<PageScan> {
    const scan: PageScan = { referenced: new Set(), rewrite: [], foreign: [], stale: [], pagesRead: 0, references: 0 };
    let kept = 0;
    let group: Buffer[] = [];
    const visit = async (): Promise<void> => {
      const bodies = await pages.db.getMany(group);
      bodies.forEach((page, j) => {
        const key = group[j];
        if (!page) return void scan.stale.push(key);
        scan.pagesRead++;
        const n = pages.count(page);
        scan.references += n;
        let touches = false;
        const foreign: Buffer[] = [];
        for (let i = 0; i < n; i++) {
          const fp = pages.fingerprint(page, i);
          const k = fpKey(fp);
          if (owned.has(k)) (touches = true), scan.referenced.add(k);
          else if (pages.hint(page, i) === id) foreign.push(Buffer.from(fp));
        }
        if (!touches && foreign.length === 0) return void scan.stale.push(key);
        if (foreign.length > 0) scan.foreign.push({ key, fps: foreign });
        if (kept + page.length <= PAGE_REWRITE_BUDGET) {
          scan.rewrite.push({ key, page });
          kept += page.length;
        }
      });
      group = [];
    };
    for await (const k of this.gcTables.refs.keys(refRange(id))) {
      group.push(k.subarray(4));
      if (group.length === 128) {
        await visit();
        if (enough(scan)) return scan;
      }
    }
    if (group.length > 0) await visit();
    return scan;
  }

  /** Map entries for where the chunks of `from` go: every page of its map to `into`, foreign hints to their owners. */
  private async addMovedRefs(from: number, into: number | null, scan: PageScan, owners: Array<ChunkRef | undefined>): Promise<void> {
    const { refs } = this.gcTables;
    const stale = new Set(scan.stale.map((k) => k.toString('hex')));
    let batch = new CommitBatch(this.db);
    let n = 0;
    if (into !== null) {
      for await (const k of refs.keys(refRange(from))) {
        const page = k.subarray(4);
        if (stale.has(page.toString('hex'))) continue;
        batch.put(refKey(into, page), EMPTY, { sublevel: refs });
        if (++n % 1024 === 0) {
          await batch.write();
          batch = new CommitBatch(this.db);
        }
      }
    }
    let i = 0;
    for (const f of scan.foreign) {
      for (let j = 0; j < f.fps.length; j++, i++) {
        const r = owners[i];
        if (r) batch.put(refKey(r.container, f.key), EMPTY, { sublevel: refs });
      }
    }
    await batch.write();
  }

  /** Deletes a collected container's map entries, then its candidate mark (the last trace of it). */
  private async dropContainerRefs(id: number): Promise<void> {
    const { refs, candidates } = this.gcTables;
    let batch = new CommitBatch(this.db);
    let n = 0;
    for await (const k of refs.keys(refRange(id))) {
      batch.del(k, { sublevel: refs });
      if (++n % 1024 === 0) {
        await batch.write();
        batch = new CommitBatch(this.db);
      }
    }
    batch.del(containerKey(id), { sublevel: candidates });
    await batch.write();
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

  /** Drops every cached trace of a collected container and deletes its file (its key is gone already). */
  private async forgetContainer(id: number, path: string): Promise<void> {
    this.locality.drop(id);
    this.dataKeys.delete(id);
    const r = this.readers.get(id);
    this.readers.delete(id);
    await (await r?.catch(() => undefined))?.close();
    await unlink(path).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw err;
    });
    await this.codec.forget(this.containersDir, id);
    await syncDir(this.containersDir);
  }

  /**
   * Seals a filling container (the open one by default) while ingest goes on into a new one:
   * the fsyncs of a full container must not stall the stream. Its index entries are written
   * once it is durable; until then its chunks are found in `recent`.
   */
  private sealInBackground(writer = this.writer): void {
    if (!writer) return;
    if (writer === this.writer) this.writer = undefined;
    this.filling.delete(writer.id);
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
    this.locality.addContainer(writer.id, footer);
    // Every chunk of the container, also those whose index entries an earlier commit wrote:
    // a stale entry here would outlive the container (GC) and hand out a reference into nothing.
    const words = footerWords(footer);
    for (let i = 0; i < footer.length; i++) this.recent.deleteIn(words, i, writer.id);
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
    const batch = new CommitBatch(this.db);
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
    return readInRuns(items, into, (container, run, target) => this.readRun(container, run, target));
  }

  private async readRun(container: number, run: StoredChunk[], target?: { buf: Buffer; at: number }): Promise<Buffer[]> {
    const writer = this.filling.get(container);
    if (writer) {
      // A filling container may still hold these frames in memory only.
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

  /** Seals containers left open by a crash, indexes what they hold, and counts the space again. */
  private async recover(): Promise<void> {
    const ids: number[] = [];
    for (const c of await listContainers(this.containersDir)) {
      ids.push(c.id);
      if (c.sealed) continue;
      const key = await this.dataKey(c.id);
      const footer = await recoverContainer(this.containersDir, c.id, key);
      await this.indexMissing(footer);
    }
    await this.recountSpace(ids);
  }

  /**
   * Stored bytes and the container count follow containers as they are sealed and collected,
   * and are saved with a later batch: a crash in between left them off by a container or more
   * for good (ratios and capacity alerts then wrong). At open, with no container being written,
   * they are counted again from the files, and a correction is said.
   */
  private async recountSpace(ids: number[]): Promise<void> {
    let bytes = 0;
    for (let i = 0; i < ids.length; i += 64) {
      const sizes = await Promise.all(ids.slice(i, i + 64).map((id) => stat(containerPath(this.containersDir, id, true)).then((st) => st.size)));
      for (const n of sizes) bytes += n;
    }
    const was = { storedBytes: this.stats.storedBytes, containers: this.stats.containers };
    if (was.storedBytes === bytes && was.containers === ids.length) return;
    this.stats.storedBytes = bytes;
    this.stats.containers = ids.length;
    await this.meta.put('stats', this.stats, SYNC as object);
    console.error(`vtl: chunk store: stored bytes ${was.storedBytes} -> ${bytes}, containers ${was.containers} -> ${ids.length}: counted again from the container files (a crash had left the saved figures behind)`);
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
      // Chunks may now be indexed at other copies: the next GC rebuilds the reverse map by the index.
      await this.meta.del('pageRefs');
      this.pageRefsBuilt = false;
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
      await this.containerKeysWritten;
      for (const r of this.readers.values()) await (await r.catch(() => undefined))?.close();
      this.readers.clear();
      this.closed = true;
    });
  }

  // ---- replication ------------------------------------------------------------------------------

  /** This store's id: derived one-way from its fingerprint secret, stable and safe to show. */
  get storeId(): string {
    return createHmac('sha256', this.keyring.fingerprintSecret).update('vtl/store-id/v1').digest().subarray(0, 8).toString('hex');
  }

  /** What a second region needs to read this store's replicas (for `vtl dr export-key`). */
  async recoveryMaterial(): Promise<RecoveryMaterial> {
    return { storeId: this.storeId, replicationKey: await this.keyring.replicationKey(), fingerprintSecret: this.keyring.fingerprintSecret, gearSeed: this.keyring.gearSeed };
  }

  /** Seals and opens what this store ships to object tiers. */
  async replicaCipher(): Promise<ReplicaCipher> {
    return new ReplicaCipher(await this.keyring.replicationKey());
  }

  /**
   * Seals the open container and waits for every seal in progress: afterwards every chunk
   * handed out before the call lives in a sealed container (replication ships sealed ones only).
   */
  sealOpenContainer(): Promise<void> {
    return this.exclusive(async () => {
      this.sealInBackground();
      await this.settleSeals();
    });
  }

  /** A sealed container's bytes and data key, to ship it as it is; undefined when it is gone. */
  async sealedContainer(id: number): Promise<{ bytes: Buffer; dataKey: Buffer } | undefined> {
    try {
      const dataKey = await this.dataKey(id);
      return { bytes: await readFile(containerPath(this.containersDir, id, true)), dataKey };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
  }

  /** Where chunks live now (index lookups), for location hints whose container is gone. */
  locate(fingerprints: Buffer[]): Promise<Array<ChunkRef | undefined>> {
    return this.index.lookupMany(fingerprints);
  }

  /**
   * Replaces a damaged sealed container with a copy of it from elsewhere (a replica): the copy
   * must open with this store's data key for that container, and every frame and the footer
   * must check out, before it atomically takes the damaged file's place (temporary file,
   * fsync, rename, directory fsync). Returns the number of chunks in it.
   */
  restoreContainer(id: number, bytes: Buffer): Promise<number> {
    return this.exclusive(async () => {
      const key = await this.dataKey(id);
      const dir = join(this.dir, 'repair');
      await mkdir(dir, { recursive: true });
      const tmp = containerPath(dir, id, true);
      const fh = await openFile(tmp, 'w', 0o600);
      try {
        await fh.writeFile(bytes);
        await fh.sync();
      } finally {
        await fh.close();
      }
      let chunks: number;
      try {
        const reader = await ContainerReader.open(dir, id, key);
        try {
          const footer = await reader.footer();
          await reader.readMany(footer.map((e) => ({ ref: e, fingerprint: e.fingerprint })));
          chunks = footer.length;
        } finally {
          await reader.close();
        }
      } catch (err) {
        await unlink(tmp).catch(() => undefined);
        throw new Error(`the copy of container ${id} is damaged too: ${(err as Error).message}`, { cause: err });
      }
      const stale = this.readers.get(id);
      this.readers.delete(id);
      await (await stale?.catch(() => undefined))?.close();
      await rename(tmp, containerPath(this.containersDir, id, true));
      await this.codec.forget(this.containersDir, id);
      await syncDir(this.containersDir);
      return chunks;
    });
  }

  /**
   * Runs store mutations one at a time (several drives may write at once). With `drain` (all
   * but a put's plan) the puts' appends have all run first, so `fn` sees every planned chunk
   * stored.
   */
  private exclusive<T>(fn: () => Promise<T>, { drain = true } = {}): Promise<T> {
    if (this.closed) return Promise.reject(new Error('chunk store is closed'));
    const body = drain
      ? async () => {
          await this.appends;
          return fn();
        }
      : fn;
    const run = this.lock.then(body, body).catch((err: Error) => {
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

/** Reference `i` of a ChunkRefs array as an object. */
function refAt(refs: ChunkRefs, i: number): ChunkRef {
  const at = i * REF_WORDS;
  return { container: refs[at], offset: refs[at + 1], frameLength: refs[at + 2], rawLength: refs[at + 3] };
}

function setRef(refs: ChunkRefs, i: number, ref: ChunkRef): void {
  const at = i * REF_WORDS;
  refs[at] = ref.container;
  refs[at + 1] = ref.offset;
  refs[at + 2] = ref.frameLength;
  refs[at + 3] = ref.rawLength;
}

function stripFp(e: FooterEntry): ChunkRef {
  return { container: e.container, offset: e.offset, frameLength: e.frameLength, rawLength: e.rawLength };
}

/** Reverse-map key: container (u32 BE) then the page key. */
function refKey(container: number, page: Buffer): Buffer {
  const k = Buffer.allocUnsafe(4 + page.length);
  k.writeUInt32BE(container, 0);
  page.copy(k, 4);
  return k;
}

function refRange(container: number): { gt: Buffer; lt: Buffer } {
  const k = containerKey(container);
  return { gt: k, lt: Buffer.concat([k, Buffer.alloc(64, 0xff)]) };
}

function fpKey(fp: Buffer): string {
  return fp.toString('latin1', 0, 16);
}

/** Points a page's references at the chunks' new places; true when anything changed. */
function rewriteHints(pages: RecipePages, page: Buffer, from: number, movedTo: Map<string, ChunkRef>, owner: Map<string, ChunkRef>): boolean {
  let changed = false;
  for (let i = 0, n = pages.count(page); i < n; i++) {
    const k = fpKey(pages.fingerprint(page, i));
    const to = movedTo.get(k) ?? (pages.hint(page, i) === from ? owner.get(k) : undefined);
    if (to) (changed = true), pages.setHint(page, i, to);
  }
  return changed;
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
