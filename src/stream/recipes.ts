/**
 * Streams stored as recipes over the chunk store (see ./index.ts for the guarantees).
 *
 * On disk (LevelDB):
 * - `streams` sublevel: stream id -> { length, chunks, createdAt } as of the last sync point.
 * - `recipes` sublevel: (stream id, start offset) -> a page of up to PAGE_ENTRIES entries of
 *   RECIPE_ENTRY bytes each: fingerprint (16), chunk location hint (16: container, frame offset,
 *   frame length, raw length, all u32 BE) and the number of the chunk's bytes used (u32 BE; less
 *   than the raw length only where a truncation cut a chunk).
 * - `spilled` sublevel: stream id -> 1 while pages a writer spilled ahead of its sync point
 *   may lie past the synced length (written in the same batch as the first such page, deleted
 *   in the batch that makes them synced or drops them).
 *
 * Pages past the synced length (spilled by a writer that a crash or an abort cut short) are
 * invisible to readers, but they name chunks, and GC counts every page the reverse map names:
 * left there they would keep those chunks, and the containers holding them, forever (the
 * stream of a blank cartridge whose first file never reached a filemark is never opened
 * again). So they are dead, and dropped: by `abort`, and after a crash by `recover` as the
 * store opens, which visits only the streams with a `spilled` mark (not every page). Dropping
 * them goes through `commitPages`, which makes the containers they named GC candidates again.
 */
import type { Level } from 'level';
import type { ChunkRef, ChunkStore, CommitBatch, LiveSet, PageChange, RecipePages, StoredChunk } from '../dedup/store.js';
import type { BinarySublevel, ChunkRefs } from '../dedup/fingerprint-index.js';
import { REF_WORDS, decodeRef, encodeRef, fingerprintWords } from '../dedup/fingerprint-index.js';
import { copyBytes, lendView, takeBuffer } from './buffers.js';
import type { StreamId, StreamReader, StreamStats, StreamWriter, Streams, SyncBatch } from './index.js';

export const RECIPE_ENTRY = 36;
export const PAGE_ENTRIES = 1024;
/** Bytes gathered before chunking, so that small writes cost a copy and nothing else. */
const BATCH_BYTES = 4 * 1024 * 1024;
/** Batch buffers per stream writer: one filling, two being stored. */
const BATCH_BUFFERS = 3;
const MAX_FREE_BATCH_BUFFERS = 8;
const MAX_DISTINCT_TRACKED = 1_000_000;
/** Pages dropped past a sync point per batch: a crash between batches leaves the rest marked. */
const DROP_PAGES = 256;

interface StreamMeta {
  length: number;
  createdAt: string;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type RootDb = Level<any, any>;

/**
 * What RecipeStreams needs of a chunk store. The local ChunkStore provides all of it; a replica
 * of another store (read only) provides reads and commits and refuses the rest.
 */
export interface ChunkSource {
  readonly chunker: { readonly params: { readonly max: number } };
  readChunks(items: StoredChunk[], into?: Buffer): Promise<Buffer[]>;
  commit(extra?: (batch: CommitBatch) => void): Promise<void>;
  /**
   * Commits pages with the reverse map from containers to pages that GC needs (the local
   * ChunkStore); a source without it (a read-only replica) gets the pages through `commit`.
   */
  commitPages?(pages: RecipePages, change: PageChange, extra?: (batch: CommitBatch) => void, sync?: boolean): Promise<void>;
  cutAndHash(view: Buffer, final: boolean): Promise<{ cuts: Uint32Array; fingerprints: Buffer }>;
  putHashed(chunks: Uint8Array[], fingerprints: Buffer): Promise<StoredChunk[]>;
  /**
   * `putHashed` for a batch as `cutAndHash` cut it, answering with references only (REF_WORDS
   * u32 per chunk), which spares an object per chunk. Writers use it where the source has it.
   */
  putCut?(view: Uint8Array, cuts: Uint32Array, fingerprints: Buffer): Promise<ChunkRefs>;
}

export class RecipeStreams<S extends ChunkSource = ChunkStore> implements Streams {
  private readonly meta;
  readonly pages;
  private readonly counter;
  /** Streams whose pages may reach past their synced length (see the header). */
  private readonly spilled;
  /** `spillMarks`: every stream with such pages has its mark (set once the store was checked). */
  private readonly state;
  private readonly writers = new Map<StreamId, RecipeWriter>();
  /** Writers' batch buffers, recycled: opening and closing many writers must not leave 8 MiB
   * of shared memory each for the garbage collector (the codec workers hold references too). */
  private readonly batchBuffers: Buffer[] = [];
  private readonly metaCache = new Map<StreamId, StreamMeta>();

  constructor(
    private readonly db: RootDb,
    readonly store: S,
  ) {
    this.meta = db.sublevel<string, StreamMeta>('streams', { valueEncoding: 'json' });
    this.pages = db.sublevel<Buffer, Buffer>('recipes', { keyEncoding: 'buffer', valueEncoding: 'buffer' });
    this.counter = db.sublevel<string, number>('streamcounter', { valueEncoding: 'json' });
    this.spilled = db.sublevel<string, number>('spilled', { valueEncoding: 'json' });
    this.state = db.sublevel<string, number>('streamstate', { valueEncoding: 'json' });
  }

  /**
   * Crash recovery, before any writer opens (the store's open calls it): drops what lies past
   * each marked stream's sync point, making the containers it named GC candidates again.
   * Costs one visit per marked stream; a store from before the marks existed is checked once,
   * one seek or two per stream. Each step is a batch that leaves the mark until the last one,
   * so a crash during recovery leaves the rest to the next open. Returns the pages dropped.
   */
  async recover(): Promise<number> {
    if ((await this.state.get('spillMarks')) === undefined) {
      let marks: string[] = [];
      const flush = async (): Promise<void> => {
        if (marks.length > 0) await this.spilled.batch(marks.map((key) => ({ type: 'put' as const, key, value: 1 })));
        marks = [];
      };
      for await (const [id, meta] of this.meta.iterator()) {
        if (await this.reachesPast(id, meta.length)) marks.push(id);
        if (marks.length >= 256) await flush();
      }
      await flush();
      await this.store.commit((b) => b.put('spillMarks', 1, { sublevel: this.state }));
    }
    let dropped = 0;
    for await (const id of this.spilled.keys()) dropped += await this.dropUnsynced(id);
    return dropped;
  }

  /**
   * Whether the stream has recipe entries past `length`: a page starting there or later, or
   * one that starts before it and reaches past it (a spill extends the page it continues).
   */
  private async reachesPast(id: StreamId, length: number): Promise<boolean> {
    for await (const _ of this.pages.keys({ gte: pageKey(id, length), lte: pageKey(id, Number.MAX_SAFE_INTEGER), limit: 1 })) return true;
    const holder = length > 0 ? await this.pageAt(id, length - 1) : undefined;
    return holder !== undefined && holder.start + pageBytes(holder.page) > length;
  }

  /**
   * Drops a stream's pages past its synced length (as stored, not as a writer sees it: never
   * while one is open on it), in unsynced batches of DROP_PAGES pages; the last batch, synced
   * (so the earlier ones are durable too: the LevelDB log is written in order), cuts the page
   * holding the synced end back to it and deletes the `spilled` mark. Returns the pages dropped.
   */
  async dropUnsynced(id: StreamId): Promise<number> {
    const meta = await this.getMeta(id, false);
    const from = meta?.length ?? 0;
    let dropped = 0;
    for (;;) {
      const del: PageChange['del'] = [];
      for await (const [key, page] of this.pages.iterator({ gte: pageKey(id, from), lte: pageKey(id, Number.MAX_SAFE_INTEGER), limit: DROP_PAGES })) del.push({ key, hints: pageHints(page) });
      if (del.length === 0) break;
      await this.commitPages({ del }, undefined, false);
      dropped += del.length;
    }
    if (meta) await this.truncate(id, from);
    else await this.store.commit((b) => b.del(id, { sublevel: this.spilled })); // no stream: nothing else to cut
    return dropped;
  }

  /**
   * Adds to `live` every chunk an open writer refers to that no recipe page in the database
   * names yet: batches handed to the chunk store, pages in memory, pages being written. GC
   * calls it under the chunk store's lock as it starts (from then on the store records what it
   * hands out itself), so a tape between filemarks keeps its chunks without holding GC back.
   */
  markHeld(live: Pick<LiveSet, 'add'>): void {
    for (const w of this.writers.values()) w.markHeld(live);
  }

  /** Creations one at a time: two at once would read the same counter and share an id. */
  private creating: Promise<unknown> = Promise.resolve();

  create(): Promise<StreamId> {
    const run = this.creating.then(() => this.createOne());
    this.creating = run.catch(() => undefined);
    return run;
  }

  private async createOne(): Promise<StreamId> {
    const next = ((await this.counter.get('next')) ?? 1) as number;
    const id = next.toString(16).padStart(16, '0');
    const meta: StreamMeta = { length: 0, createdAt: new Date().toISOString() };
    await this.store.commit((b) => {
      b.put('next', next + 1, { sublevel: this.counter });
      b.put(id, meta, { sublevel: this.meta });
    });
    this.metaCache.set(id, meta);
    return id;
  }

  async exists(id: StreamId): Promise<boolean> {
    return (await this.getMeta(id, false)) !== undefined;
  }

  async length(id: StreamId): Promise<number> {
    return (await this.requireMeta(id)).length;
  }

  /**
   * Walks the recipe: O(chunks), meant for reports, not the data path. Distinct chunks are
   * tracked up to a bound (about 100 MB of memory); past it the byte figures are approximate.
   */
  async stats(id: StreamId): Promise<StreamStats> {
    const m = await this.requireMeta(id);
    const seen = new Set<string>();
    const s: StreamStats = { logicalBytes: m.length, chunks: 0, uniqueBytes: 0, storedBytes: 0, exact: true };
    let pos = 0;
    for await (const page of this.pages.values({ gte: pageKey(id, 0), lt: pageKey(id, m.length) })) {
      for (let at = 0; at < page.length && pos < m.length; at += RECIPE_ENTRY) {
        pos += page.readUInt32BE(at + 32);
        s.chunks++;
        const fp = page.toString('latin1', at, at + 16);
        if (seen.has(fp)) continue;
        if (seen.size < MAX_DISTINCT_TRACKED) seen.add(fp);
        else s.exact = false;
        const ref = decodeRef(page, at + 16);
        s.uniqueBytes += ref.rawLength;
        s.storedBytes += ref.frameLength;
      }
    }
    return s;
  }

  async *list(): AsyncIterable<StreamId> {
    for await (const key of this.meta.keys()) yield key;
  }

  async openWriter(id: StreamId, offset?: number): Promise<StreamWriter> {
    if (this.writers.has(id)) throw new Error(`stream ${id} already has a writer`);
    const meta = await this.requireMeta(id);
    const at = offset ?? meta.length;
    if (!Number.isSafeInteger(at) || at < 0 || at > meta.length) {
      throw new RangeError(`cannot write stream ${id} at ${offset}: its length is ${meta.length}`);
    }
    // Also clears pages a crash left past the synced length.
    await this.truncate(id, at);
    const tail = await this.lastPage(id, at);
    const writer = new RecipeWriter(this, id, at, tail);
    this.writers.set(id, writer);
    return writer;
  }

  async openReader(id: StreamId, offset = 0): Promise<StreamReader> {
    const meta = await this.requireMeta(id);
    if (!Number.isSafeInteger(offset) || offset < 0 || offset > meta.length) {
      throw new RangeError(`cannot read stream ${id} at ${offset}: its length is ${meta.length}`);
    }
    return new RecipeReader(this, id, offset);
  }

  async truncate(id: StreamId, length: number, extra?: (batch: SyncBatch) => void): Promise<void> {
    const meta = await this.requireMeta(id);
    if (!Number.isSafeInteger(length) || length < 0 || length > meta.length) {
      throw new RangeError(`cannot truncate stream ${id} to ${length}: its length is ${meta.length}`);
    }
    const del: PageChange['del'] = [];
    for await (const [key, page] of this.pages.iterator({ gte: pageKey(id, length), lte: pageKey(id, Number.MAX_SAFE_INTEGER) })) del.push({ key, hints: pageHints(page) });
    // The page holding the new end is cut there: replaced (deleted and put) when that changes it.
    const put: Array<{ key: Buffer; page: Buffer }> = [];
    const holder = length > 0 ? await this.pageAt(id, length - 1) : undefined;
    if (holder) {
      const key = pageKey(id, holder.start);
      const cut = clipPage(holder.page, length - holder.start);
      if (!cut.equals(holder.page)) del.push({ key, hints: pageHints(holder.page) });
      put.push({ key, page: cut });
    }
    const next: StreamMeta = { ...meta, length };
    await this.commitPages({ put, del }, (b) => {
      b.put(id, next, { sublevel: this.meta });
      // Nothing lies past the new length any more.
      b.del(id, { sublevel: this.spilled });
      extra?.(b);
    });
    this.metaCache.set(id, next);
  }

  async delete(id: StreamId, extra?: (batch: SyncBatch) => void): Promise<void> {
    if (this.writers.has(id)) throw new Error(`stream ${id} is open for writing`);
    await this.requireMeta(id);
    const del: PageChange['del'] = [];
    for await (const [key, page] of this.pages.iterator({ gte: pageKey(id, 0), lte: pageKey(id, Number.MAX_SAFE_INTEGER) })) del.push({ key, hints: pageHints(page) });
    await this.commitPages({ del }, (b) => {
      b.del(id, { sublevel: this.meta });
      b.del(id, { sublevel: this.spilled });
      extra?.(b);
    });
    this.metaCache.delete(id);
  }

  /**
   * A stream's synced length and recipe pages as of `snapshot` (a snapshot of the root
   * LevelDB), for replication: pages spilled past the sync point are cut off.
   */
  async snapshotLength(id: StreamId, snapshot: unknown): Promise<number | undefined> {
    return (await this.meta.get(id, { snapshot } as object))?.length;
  }

  async *snapshotPages(id: StreamId, length: number, snapshot: unknown): AsyncGenerator<{ start: number; page: Buffer }> {
    if (length === 0) return;
    for await (const [key, page] of this.pages.iterator({ snapshot, gte: pageKey(id, 0), lt: pageKey(id, length) } as object)) {
      const start = Number((key as Buffer).readBigUInt64BE(8));
      yield { start, page: clipPage(page as Buffer, length - start) };
    }
  }

  /**
   * Fills a stream (made by create(), never written) with pages from elsewhere (a replica):
   * the pages first, in batches, then the length with the caller's operations in one commit,
   * so the stream shows nothing before that commit and everything after it.
   */
  async importPages(id: StreamId, pages: AsyncIterable<{ start: number; page: Buffer }>, length: number, extra?: (batch: SyncBatch) => void): Promise<void> {
    const meta = await this.requireMeta(id);
    if (meta.length !== 0 || this.writers.has(id)) throw new Error(`stream ${id} is not empty`);
    let batch: Array<{ type: 'put'; key: Buffer; value: Buffer }> = [];
    for await (const { start, page } of pages) {
      batch.push({ type: 'put', key: pageKey(id, start), value: page });
      if (batch.length >= 256) {
        await this.pages.batch(batch);
        batch = [];
      }
    }
    if (batch.length > 0) await this.pages.batch(batch);
    const next: StreamMeta = { ...meta, length };
    await this.store.commit((b) => {
      b.put(id, next, { sublevel: this.meta });
      extra?.(b);
    });
    this.metaCache.set(id, next);
  }

  /** The chunk source a stream's recipe refers to (the same for every stream here). */
  sourceOf(_id: StreamId): S {
    return this.store;
  }

  /** Synced length as readers see it. */
  syncedLength(id: StreamId): number {
    return this.metaCache.get(id)?.length ?? 0;
  }

  /**
   * @internal Commits a writer's sync point: pages, metadata and the caller's operations.
   * `caughtUp`: no spill of the writer is on its way, so after this batch no page lies past
   * the synced length and the stream's `spilled` mark goes with it.
   */
  async commitWriter(id: StreamId, pages: Array<[number, Buffer]>, meta: StreamMeta, extra?: (batch: SyncBatch) => void, caughtUp = false): Promise<void> {
    // A writer's pages only ever extend what is stored under their keys: nothing is dropped.
    const put = pages.map(([start, page]) => ({ key: pageKey(id, start), page }));
    await this.commitPages({ put }, (b) => {
      b.put(id, meta, { sublevel: this.meta });
      if (caughtUp) b.del(id, { sublevel: this.spilled });
      extra?.(b);
    });
    this.metaCache.set(id, meta);
  }

  /**
   * @internal Writes full pages early (unsynced) so memory stays bounded on long writes, with
   * the stream's `spilled` mark in the same batch: no such page is ever stored without it.
   */
  async spillPages(id: StreamId, pages: Array<[number, Buffer]>): Promise<void> {
    const put = pages.map(([start, page]) => ({ key: pageKey(id, start), page }));
    if (this.store.commitPages) {
      await this.store.commitPages(this.pageAccess, { put }, (b) => b.put(id, 1, { sublevel: this.spilled }), false);
      return;
    }
    await this.db.batch([
      ...put.map((p) => ({ type: 'put' as const, key: p.key, value: p.page, sublevel: this.pages })),
      { type: 'put' as const, key: id, value: 1, sublevel: this.spilled },
    ]);
  }

  /**
   * Page writes and deletes with their reverse-map entries (when the chunk source keeps one).
   * Unsynced (`sync` false) only where what a lost batch leaves is cleaned up again anyway.
   */
  private commitPages(change: PageChange, extra?: (batch: CommitBatch) => void, sync = true): Promise<void> {
    if (this.store.commitPages) return this.store.commitPages(this.pageAccess, change, extra, sync);
    return this.store.commit((b) => {
      for (const d of change.del ?? []) b.del(d.key, { sublevel: this.pages });
      for (const p of change.put ?? []) b.put(p.key, p.page, { sublevel: this.pages });
      extra?.(b);
    });
  }

  private pageAccessCache: RecipePages | undefined;
  private get pageAccess(): RecipePages {
    return (this.pageAccessCache ??= recipePageAccess(this.pages as BinarySublevel));
  }

  /** @internal */
  releaseWriter(id: StreamId, buffers: Buffer[]): void {
    this.writers.delete(id);
    for (const b of buffers) if (this.batchBuffers.length < MAX_FREE_BATCH_BUFFERS) this.batchBuffers.push(b);
  }

  /** @internal A shared-memory batch buffer of `bytes` (recycled when one of that size is free). */
  takeBatchBuffer(bytes: number): Buffer {
    const i = this.batchBuffers.findIndex((b) => b.length === bytes);
    return i >= 0 ? this.batchBuffers.splice(i, 1)[0] : Buffer.from(new SharedArrayBuffer(bytes));
  }

  async getMeta(id: StreamId, cached = true): Promise<StreamMeta | undefined> {
    if (cached && this.metaCache.has(id)) return this.metaCache.get(id);
    const m = await this.meta.get(id);
    if (m) this.metaCache.set(id, m);
    return m;
  }

  private async requireMeta(id: StreamId): Promise<StreamMeta> {
    const m = await this.getMeta(id);
    if (!m) throw new Error(`no stream ${id}`);
    return m;
  }

  /** The page holding byte `offset` (the last page starting at or before it). */
  async pageAt(id: StreamId, offset: number): Promise<{ start: number; page: Buffer } | undefined> {
    for await (const [key, page] of this.pages.iterator({ gte: pageKey(id, 0), lte: pageKey(id, offset), reverse: true, limit: 1 })) {
      return { start: Number(key.readBigUInt64BE(8)), page };
    }
    return undefined;
  }

  /**
   * The last page that starts before `offset` (the one a writer at `offset` keeps appending to),
   * clipped to end at `offset`.
   */
  private async lastPage(id: StreamId, offset: number): Promise<{ start: number; page: Buffer } | undefined> {
    if (offset === 0) return undefined;
    const p = await this.pageAt(id, offset - 1);
    if (!p) return undefined;
    return { start: p.start, page: clipPage(p.page, offset - p.start) };
  }

  pageRange(id: StreamId, from: number) {
    return this.pages.iterator({ gte: pageKey(id, from), lte: pageKey(id, Number.MAX_SAFE_INTEGER) });
  }
}

export function pageKey(id: StreamId, start: number): Buffer {
  const k = Buffer.allocUnsafe(16);
  k.write(id, 0, 8, 'hex');
  k.writeBigUInt64BE(BigInt(start), 8);
  return k;
}

/** The recipe page format as the chunk store's reverse map and GC see it. */
export function recipePageAccess(db: BinarySublevel): RecipePages {
  return {
    db,
    count: (page) => Math.floor(page.length / RECIPE_ENTRY),
    fingerprint: (page, i) => page.subarray(i * RECIPE_ENTRY, i * RECIPE_ENTRY + 16),
    hint: (page, i) => page.readUInt32BE(i * RECIPE_ENTRY + 16),
    setHint: (page: Buffer, i: number, ref: ChunkRef) => void encodeRef(ref, page, i * RECIPE_ENTRY + 16),
  };
}

/** The distinct containers a page's location hints name. */
function pageHints(page: Buffer): number[] {
  const out = new Set<number>();
  for (let at = 16; at + 20 <= page.length; at += RECIPE_ENTRY) out.add(page.readUInt32BE(at));
  return [...out];
}

/** The entries of a page that cover bytes [0, length) relative to the page's start. */
function clipPage(page: Buffer, length: number): Buffer {
  let pos = 0;
  for (let at = 0; at < page.length; at += RECIPE_ENTRY) {
    const used = page.readUInt32BE(at + 32);
    if (pos + used >= length) {
      const out = Buffer.from(page.subarray(0, at + RECIPE_ENTRY));
      out.writeUInt32BE(length - pos, at + 32);
      return length - pos === 0 ? out.subarray(0, at) : out;
    }
    pos += used;
  }
  return page;
}

class RecipeWriter implements StreamWriter {
  private syncedLength: number;
  private pos: number;
  /**
   * Gathered input. BATCH_BUFFERS shared-memory buffers take turns: while one fills, the
   * batches before it are cut, fingerprinted, sealed and appended on other threads and in the
   * store's pipeline (with two in flight, one batch's cut and plan overlap the seals and
   * appends of the one before). New bytes start at `reserve`; the unfinished chunk of the
   * previous batch, known only once that batch is cut, is copied in front of them.
   */
  private readonly batches: Batch[];
  /** The batch filling now, and per buffer the storing of the batch that used it last. */
  private turn = 0;
  private readonly storing: Array<Promise<void> | undefined>;
  private readonly reserve: number;
  /** Where the previous batch's unfinished chunk lies, once it is cut. */
  private carried: Promise<{ buf: Buffer; start: number; end: number }> | undefined;
  /** The batches being stored; their entries are added in order as they complete. */
  private inflight: Promise<void> | undefined;
  /** Current recipe page: its start offset, entries and the stream bytes they cover. */
  private pageStart: number;
  private readonly page: Buffer;
  private readonly pageWords: Int32Array;
  private readonly pageView: DataView;
  private pageFill: number;
  private pageLength: number;
  /** Completed pages not yet written. */
  private done: Array<[number, Buffer]> = [];
  /**
   * What GC must count as live besides the pages in the database (see `markHeld`): the
   * fingerprints of batches handed to the store whose entries are not in a page yet, and the
   * pages on their way into the database.
   */
  private readonly handedOut = new Set<Buffer>();
  private readonly writing = new Set<Array<[number, Buffer]>>();
  private failed: Error | undefined;
  private released = false;
  /** Spills since the last sync point began: pages past it may be in the database. */
  private spills = 0;

  constructor(
    private readonly streams: RecipeStreams<ChunkSource>,
    readonly id: StreamId,
    offset: number,
    tail: { start: number; page: Buffer } | undefined,
  ) {
    this.syncedLength = offset;
    this.pos = offset;
    this.reserve = streams.store.chunker.params.max;
    const newBatch = (): Batch => {
      const buf = streams.takeBatchBuffer(this.reserve + BATCH_BYTES);
      return { buf, start: this.reserve, fill: this.reserve };
    };
    this.batches = Array.from({ length: BATCH_BUFFERS }, newBatch);
    this.storing = new Array(BATCH_BUFFERS).fill(undefined);
    // Its own ArrayBuffer: 4-aligned for the word view (entries are 9 words).
    this.page = Buffer.from(new ArrayBuffer(PAGE_ENTRIES * RECIPE_ENTRY));
    this.pageWords = new Int32Array(this.page.buffer);
    this.pageView = new DataView(this.page.buffer);
    if (tail && tail.page.length < this.page.length) {
      this.pageStart = tail.start;
      tail.page.copy(this.page);
      this.pageFill = tail.page.length;
      this.pageLength = pageBytes(tail.page);
    } else {
      this.pageStart = offset;
      this.pageFill = 0;
      this.pageLength = 0;
    }
  }

  get position(): number {
    return this.pos;
  }

  /**
   * Adds the chunks this writer refers to that no page in the database names yet. Each moves
   * from one holder to the next in a single turn of the event loop (handed out, in a page in
   * memory, being written, written), so a call between turns misses none.
   */
  markHeld(live: Pick<LiveSet, 'add'>): void {
    for (const fps of this.handedOut) for (let at = 0; at < fps.length; at += 16) live.add(fps.subarray(at, at + 16));
    const mark = (page: Buffer, end: number): void => {
      for (let at = 0; at < end; at += RECIPE_ENTRY) live.add(page.subarray(at, at + 16));
    };
    for (const [, page] of this.done) mark(page, page.length);
    for (const pages of this.writing) for (const [, page] of pages) mark(page, page.length);
    mark(this.page, this.pageFill);
  }

  async write(data: Uint8Array): Promise<void> {
    this.check();
    const end = this.reserve + BATCH_BYTES;
    let at = 0;
    while (at < data.length) {
      const b = this.batches[this.turn];
      const n = Math.min(data.length - at, end - b.fill);
      copyBytes(b.buf, b.fill, data.subarray(at, at + n));
      b.fill += n;
      at += n;
      this.pos += n;
      if (b.fill === end) await this.guard(() => this.submit(false));
    }
  }

  /**
   * Hands the gathered batch to the store: it is cut and fingerprinted on the codec pool's
   * thread, then stored; its entries join the recipe in order. Returns once the next buffer
   * is free to fill, so at most BATCH_BUFFERS - 1 batches are in flight while one fills.
   */
  private async submit(final: boolean): Promise<void> {
    const b = this.batches[this.turn];
    const carried = this.carried;
    this.carried = undefined;
    if (carried) {
      const t = await carried;
      b.start = this.reserve - (t.end - t.start);
      t.buf.copy(b.buf, b.start, t.start, t.end);
    }
    const previous = this.inflight;
    if (b.fill > b.start) {
      const store = this.streams.store;
      const view = b.buf.subarray(b.start, b.fill);
      const cut = store.cutAndHash(view, final);
      // Registered before `carried`, so batches reach the store in stream order.
      const stored = cut.then(async ({ cuts, fingerprints }) => {
        const fps = fingerprints.subarray(0, cuts.length * 16);
        this.handedOut.add(fps); // in the same turn as the store is asked (GC may start at any await)
        return { fingerprints: fps, refs: await putBatch(store, view, cuts, fps) };
      });
      if (!final) {
        this.carried = cut.then(({ cuts }) => ({ buf: b.buf, start: b.start + (cuts.length ? cuts[cuts.length - 1] : 0), end: b.fill }));
        this.carried.catch(() => undefined);
      }
      // Settles only once both have: the buffers are reused (or pooled) right after.
      this.inflight = Promise.allSettled([previous, stored]).then(async ([before, now]) => {
        if (before.status === 'rejected') throw before.reason;
        if (now.status === 'rejected') throw now.reason;
        this.handedOut.delete(now.value.fingerprints);
        this.addEntries(now.value.fingerprints, now.value.refs);
        if (this.done.length >= 16) {
          this.spills++;
          await this.writePages(this.done.splice(0), (pages) => this.streams.spillPages(this.id, pages));
        }
      });
      // Errors surface at a later write or the sync; keep them from being reported as unhandled.
      this.inflight.catch(() => undefined);
      this.storing[this.turn] = this.inflight;
    }
    // The next buffer is free once the batch that used it is stored.
    this.turn = (this.turn + 1) % this.batches.length;
    await this.storing[this.turn];
    const next = this.batches[this.turn];
    next.start = next.fill = this.reserve;
  }

  /** Waits for every batch in flight (before a sync point). */
  private async drain(): Promise<void> {
    await this.inflight;
    this.inflight = undefined;
  }

  /**
   * Appends a stored batch's entries to the recipe (fingerprint, location hint, bytes used: all
   * of the chunk). Word copies and DataView writes: no allocation per chunk.
   */
  private addEntries(fingerprints: Buffer, refs: ChunkRefs): void {
    const n = refs.length / REF_WORDS;
    const fw = fingerprintWords(fingerprints.subarray(0, n * 16));
    const pw = this.pageWords;
    const dv = this.pageView;
    for (let i = 0; i < n; i++) {
      if (this.pageFill === this.page.length) this.closePage();
      const at = this.pageFill;
      const w = at >>> 2;
      const f = i * 4;
      pw[w] = fw[f];
      pw[w + 1] = fw[f + 1];
      pw[w + 2] = fw[f + 2];
      pw[w + 3] = fw[f + 3];
      const r = i * REF_WORDS;
      const rawLength = refs[r + 3];
      dv.setUint32(at + 16, refs[r]);
      dv.setUint32(at + 20, refs[r + 1]);
      dv.setUint32(at + 24, refs[r + 2]);
      dv.setUint32(at + 28, rawLength);
      dv.setUint32(at + 32, rawLength);
      this.pageFill += RECIPE_ENTRY;
      this.pageLength += rawLength;
    }
  }

  /** The full current page joins those to write; a new one starts where it ends. */
  private closePage(): void {
    this.done.push([this.pageStart, Buffer.from(this.page)]);
    this.pageStart += this.pageLength;
    this.pageFill = 0;
    this.pageLength = 0;
  }

  async sync(extra?: (batch: SyncBatch) => void): Promise<void> {
    this.check();
    await this.guard(async () => {
      await this.submit(true);
      await this.drain();
      const meta = { ...(await this.streams.getMeta(this.id))!, length: this.pos };
      const pages = this.done.splice(0);
      if (this.pageFill > 0) pages.push([this.pageStart, Buffer.from(this.page.subarray(0, this.pageFill))]);
      // Every spill so far is in the database (drained) and none is on its way: after this
      // batch nothing lies past the sync point, and the `spilled` mark can go with it.
      const spills = this.spills;
      const caughtUp = this.writing.size === 0;
      await this.writePages(pages, (p) => this.streams.commitWriter(this.id, p, meta, extra, caughtUp && spills > 0));
      if (caughtUp) this.spills -= spills;
      this.syncedLength = this.pos;
    });
  }

  /** Pages stay visible to `markHeld` until the database has them. */
  private async writePages(pages: Array<[number, Buffer]>, write: (pages: Array<[number, Buffer]>) => Promise<void>): Promise<void> {
    this.writing.add(pages);
    try {
      await write(pages);
    } finally {
      this.writing.delete(pages);
    }
  }

  async close(extra?: (batch: SyncBatch) => void): Promise<void> {
    await this.sync(extra);
    this.release();
  }

  /**
   * Pages spilled since the last sync point are dropped before the stream is released (no other
   * writer can have spilled there yet); if that fails, the `spilled` mark stays and the next
   * open of the store drops them. Left there, they would keep their chunks live for GC.
   */
  async abort(): Promise<void> {
    await this.inflight?.catch(() => undefined);
    if (this.spills > 0 && !this.released) await this.streams.dropUnsynced(this.id).catch(() => undefined);
    this.release();
  }

  private release(): void {
    if (this.released) return;
    this.released = true;
    this.streams.releaseWriter(this.id, this.batches.map((b) => b.buf));
  }

  private check(): void {
    if (this.released) throw new Error(`stream ${this.id}: writer is closed`);
    if (this.failed) throw new Error(`stream ${this.id}: an earlier write failed (${this.failed.message}); reopen the stream, it stands at its last sync point ${this.syncedLength}`);
  }

  /** A failed store write poisons the writer: the stream stays at its last sync point. */
  private async guard(fn: () => Promise<void>): Promise<void> {
    try {
      await fn();
    } catch (err) {
      this.failed = err as Error;
      throw err;
    }
  }
}

/** A batch stored through `putCut`, or through `putHashed` where the source has no `putCut`. */
async function putBatch(store: ChunkSource, view: Buffer, cuts: Uint32Array, fingerprints: Buffer): Promise<ChunkRefs> {
  if (store.putCut) return store.putCut(view, cuts, fingerprints);
  const pieces: Buffer[] = new Array(cuts.length);
  for (let i = 0, start = 0; i < cuts.length; start = cuts[i++]) pieces[i] = view.subarray(start, cuts[i]);
  const stored = await store.putHashed(pieces, fingerprints);
  const refs: ChunkRefs = new Uint32Array(stored.length * REF_WORDS);
  stored.forEach(({ ref }, i) => refs.set([ref.container, ref.offset, ref.frameLength, ref.rawLength], i * REF_WORDS));
  return refs;
}

interface Batch {
  buf: Buffer;
  /** First byte of the batch (the carried chunk, then the new bytes up to `fill`). */
  start: number;
  fill: number;
}

function pageBytes(page: Buffer): number {
  let n = 0;
  for (let at = 0; at < page.length; at += RECIPE_ENTRY) n += page.readUInt32BE(at + 32);
  return n;
}

interface Window {
  start: number;
  chunks: Buffer[];
  /** Stream offset where each chunk ends. */
  ends: number[];
  bytes: number;
  /** The slab the chunks are in, as far as they are (undefined: none is). */
  slab: Slab | undefined;
}

/** Shared memory the codec workers write a window's chunks into; reused unless views of it are lent out. */
interface Slab {
  buf: Buffer;
  /** Views of it lent out (readLent) and not yet given back. */
  lent: number;
}

/** Bytes of chunks a reader fetches ahead at a time. */
const WINDOW_BYTES = 4 * 1024 * 1024;
/** Windows fetched ahead of the one being read. */
const WINDOWS_AHEAD = 2;
/** Slabs a reader keeps waiting for lent views of them to come back. */
const MAX_PARKED_SLABS = 2;

/** A window's chunks, chosen before they are read. */
interface Taken {
  start: number;
  entries: Array<{ chunk: StoredChunk; used: number }>;
  /** Stream offset where each chunk ends. */
  ends: number[];
  /** Where the codec workers put the chunks (undefined: too large for a slab). */
  slab: Slab | undefined;
}

class RecipeReader implements StreamReader {
  private pos: number;
  /** Entries from `entriesStart` on, not yet fetched. */
  private entries: Array<{ chunk: StoredChunk; used: number }> = [];
  private entriesStart = 0;
  private pages: AsyncIterator<[Buffer, Buffer]> | undefined;
  private current: Window | undefined;
  /** Windows being fetched, in stream order (at most WINDOWS_AHEAD). */
  private ahead: Array<Promise<Window | undefined>> = [];
  /** The last fetch's choice of chunks: the next one takes those after them. */
  private taking: Promise<unknown> = Promise.resolve();
  /** Fetches dropped by a seek: their slabs are not reused before they settle. */
  private abandoned: Promise<unknown> | undefined;
  /**
   * Shared memory that the codec workers write chunks into: one slab per window, turn by turn
   * (the one being read and those being fetched).
   */
  private slabs: Slab[] | undefined;
  /** Slabs taken out of turn while views of them were lent, until they are free again. */
  private parked: Slab[] = [];
  private turn = 0;

  constructor(
    private readonly streams: RecipeStreams<ChunkSource>,
    readonly id: StreamId,
    offset: number,
  ) {
    this.pos = offset;
  }

  get position(): number {
    return this.pos;
  }

  seek(offset: number): void {
    if (!Number.isSafeInteger(offset) || offset < 0 || offset > this.streams.syncedLength(this.id)) {
      throw new RangeError(`cannot seek stream ${this.id} to ${offset}`);
    }
    this.pos = offset;
    const w = this.current;
    if (!w || offset < w.start || offset >= w.start + w.bytes) this.reset();
  }

  private reset(): void {
    if (this.ahead.length > 0) this.abandoned = Promise.allSettled([this.abandoned, ...this.ahead]);
    this.entries = [];
    this.pages = undefined;
    this.current = undefined;
    this.ahead = [];
  }

  async read(max: number): Promise<Buffer> {
    const want = Math.max(0, Math.min(max, this.streams.syncedLength(this.id) - this.pos));
    const out = takeBuffer(want);
    await this.readInto(out, 0, want);
    return out;
  }

  /**
   * Where the bytes wanted lie in one window, one after another in its slab (chunks used
   * whole, as most are), lends a view of the slab: the copy into a record buffer cost a
   * tape-reading rmt server a sixth of its event loop. Otherwise copies, as `read`.
   */
  async readLent(max: number): Promise<Buffer> {
    const want = Math.max(0, Math.min(max, this.streams.syncedLength(this.id) - this.pos));
    const w = want > 0 ? await this.windowAt(this.pos) : undefined;
    const slab = w?.slab;
    if (!w || !slab || this.pos + want > w.start + w.bytes) return this.read(max);
    const first = firstEndingAfter(w.ends, this.pos);
    const last = firstEndingAfter(w.ends, this.pos + want - 1);
    for (let k = first; k <= last; k++) {
      const c = w.chunks[k];
      if (c.buffer !== slab.buf.buffer) return this.read(max);
      if (k > first && c.byteOffset !== w.chunks[k - 1].byteOffset + w.chunks[k - 1].length) return this.read(max);
    }
    const c = w.chunks[first];
    const at = c.byteOffset + (this.pos - (w.ends[first] - c.length));
    this.pos += want;
    slab.lent++;
    return lendView(Buffer.from(c.buffer, at, want), () => slab.lent--);
  }

  async readInto(buf: Uint8Array, offset = 0, length = buf.length - offset): Promise<number> {
    const limit = this.streams.syncedLength(this.id);
    const want = Math.min(length, limit - this.pos);
    let filled = 0;
    while (filled < want) {
      const w = await this.windowAt(this.pos);
      if (!w) throw new Error(`stream ${this.id}: recipe ends before byte ${this.pos} of ${limit}`);
      for (let k = firstEndingAfter(w.ends, this.pos); k < w.chunks.length && filled < want; k++) {
        const c = w.chunks[k];
        const from = this.pos - (w.ends[k] - c.length);
        const n = Math.min(c.length - from, want - filled);
        copyBytes(buf, offset + filled, c.subarray(from, from + n));
        filled += n;
        this.pos += n;
      }
    }
    return Math.max(0, filled);
  }

  /** The fetched window holding byte `pos`, moving forward and fetching ahead as needed. */
  private async windowAt(pos: number): Promise<Window | undefined> {
    let lookedAgain = false;
    while (true) {
      const w = this.current;
      if (w && pos >= w.start && pos < w.start + w.bytes) return w;
      if (w && pos < w.start) this.reset();
      if (!this.current && this.ahead.length === 0) {
        await this.abandoned;
        this.abandoned = undefined;
        await this.startAt(pos);
        if (this.ahead.length === 0) return undefined;
      }
      this.current = await this.ahead.shift();
      if (!this.current) {
        // The windows ahead were taken when the recipe ended here; a sync may have added more
        // since (a tape appended to after it was read to its end): look once more from `pos`.
        this.reset();
        if (lookedAgain) return undefined;
        lookedAgain = true;
        continue;
      }
      this.fetchAhead();
    }
  }

  private async startAt(pos: number): Promise<void> {
    const page = await this.streams.pageAt(this.id, pos);
    if (!page) return;
    this.entries = [];
    this.entriesStart = page.start;
    this.pages = this.streams.pageRange(this.id, page.start)[Symbol.asyncIterator]();
    this.fetchAhead();
  }

  /**
   * Keeps WINDOWS_AHEAD windows being fetched, so the codec workers do not wait between
   * windows. Each fetch takes its chunks after the previous fetch took its own; the reads
   * run side by side.
   */
  private fetchAhead(): void {
    while (this.ahead.length < WINDOWS_AHEAD) {
      const taken = this.taking.then(() => this.takeNext());
      this.taking = taken.catch(() => undefined);
      const window = taken.then((t) => t && this.fetch(t));
      window.catch(() => undefined); // reported where it is awaited, or dropped with a seek
      this.ahead.push(window);
    }
  }

  /** Takes the next WINDOW_BYTES of chunks of the recipe and the next slab for them. */
  private async takeNext(): Promise<Taken | undefined> {
    const max = this.streams.store.chunker.params.max;
    const newSlab = (): Slab => ({ buf: Buffer.from(new SharedArrayBuffer(WINDOW_BYTES + max)), lent: 0 });
    this.slabs ??= Array.from({ length: WINDOWS_AHEAD + 1 }, newSlab);
    const turn = this.turn++ % this.slabs.length;
    if (this.slabs[turn].lent > 0) {
      // Views of it are still lent out (the last records of its window, on their way to a
      // client): it waits with the parked ones, and one that is free again, or a new one,
      // takes its turn. Few wait at a time; beyond that they are left to their views.
      const free = this.parked.findIndex((p) => p.lent === 0);
      const next = free >= 0 ? this.parked.splice(free, 1)[0] : newSlab();
      this.parked.push(this.slabs[turn]);
      if (this.parked.length > MAX_PARKED_SLABS) this.parked.shift();
      this.slabs[turn] = next;
    }
    const slab = this.slabs[turn];
    let take = 0;
    let raw = 0;
    for (;;) {
      if (take === this.entries.length) {
        if (!this.pages || !(await this.loadPage())) break;
        continue;
      }
      const next = this.entries[take].chunk.ref.rawLength;
      if (take > 0 && (raw >= WINDOW_BYTES || raw + next > slab.buf.length)) break;
      raw += next;
      take++;
    }
    if (take === 0) return undefined;
    const entries = this.entries.splice(0, take);
    const start = this.entriesStart;
    // The bytes each chunk gives the stream: all of it, or the part the recipe uses.
    const ends: number[] = new Array(take);
    for (let i = 0; i < take; i++) {
      this.entriesStart += Math.min(entries[i].used, entries[i].chunk.ref.rawLength);
      ends[i] = this.entriesStart;
    }
    return { start, entries, ends, slab: raw <= slab.buf.length ? slab : undefined };
  }

  /** Reads a taken window's chunks (into its slab when they fit). */
  private async fetch(t: Taken): Promise<Window> {
    const data = await this.streams.store.readChunks(
      t.entries.map((e) => e.chunk),
      t.slab?.buf,
    );
    const chunks = data.map((d, i) => {
      const c = t.entries[i].used < d.length ? d.subarray(0, t.entries[i].used) : d;
      const want = t.ends[i] - (i === 0 ? t.start : t.ends[i - 1]);
      if (c.length !== want) throw new Error(`stream ${this.id}: a chunk at byte ${t.ends[i] - want} gave ${c.length} bytes where the recipe has ${want}`);
      return c;
    });
    return { start: t.start, chunks, ends: t.ends, bytes: t.ends[t.ends.length - 1] - t.start, slab: t.slab };
  }

  /** Appends the next recipe page's entries; false at the end of the recipe. */
  private async loadPage(): Promise<boolean> {
    const next = await this.pages!.next();
    if (next.done) {
      this.pages = undefined;
      return false;
    }
    const page = next.value[1];
    for (let at = 0; at < page.length; at += RECIPE_ENTRY) {
      this.entries.push({
        chunk: { fingerprint: page.subarray(at, at + 16), ref: decodeRef(page, at + 16) },
        used: page.readUInt32BE(at + 32),
      });
    }
    return true;
  }
}

/** Index of the first chunk whose end lies after `pos` (binary search). */
function firstEndingAfter(ends: number[], pos: number): number {
  let lo = 0;
  let hi = ends.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (ends[mid] <= pos) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
