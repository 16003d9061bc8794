/**
 * A plain `Streams` implementation for tests of the layers above the stream layer: no chunking,
 * no dedup. Unsynced bytes stay in the writer's memory; each sync point writes them as one
 * segment into a real LevelDB, in the same batch as the caller's extra operations, so the
 * sync-point contract (atomic, survives SIGKILL) holds exactly as in the real stream layer.
 *
 * Layout in sublevels: `mstream-len` id -> synced length; `mstream-seg` `<id>!<offset hex>` ->
 * the bytes from that offset (segments tile the stream without gaps).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Level } from 'level';
import type { StreamId, StreamReader, StreamStats, StreamWriter, Streams, SyncBatch } from '../../src/stream/index.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type RootDb = Level<any, any>;

const segKey = (id: string, off: number) => `${id}!${off.toString(16).padStart(14, '0')}`;
const segEnd = (id: string) => `${id}"`;
const SEGMENT = 1 << 20;

export class MemoryStreams implements Streams {
  private readonly lens;
  private readonly segs;
  private readonly writers = new Set<StreamId>();
  private next = 0;

  constructor(private readonly db: RootDb) {
    this.lens = db.sublevel<string, number>('mstream-len', { valueEncoding: 'json' });
    this.segs = db.sublevel<string, Buffer>('mstream-seg', { valueEncoding: 'buffer' });
  }

  async create(): Promise<StreamId> {
    const id = `${Date.now().toString(36)}-${process.pid.toString(36)}-${(this.next++).toString(36)}`;
    await this.lens.put(id, 0);
    return id;
  }

  async exists(id: StreamId): Promise<boolean> {
    return (await this.lens.get(id)) !== undefined;
  }

  async length(id: StreamId): Promise<number> {
    const n = await this.lens.get(id);
    if (n === undefined) throw new Error(`no stream ${id}`);
    return n;
  }

  async stats(id: StreamId): Promise<StreamStats> {
    let chunks = 0;
    for await (const _ of this.segs.keys({ gte: segKey(id, 0), lt: segEnd(id) })) chunks++;
    // Memory streams keep bytes as written: no dedup, no compression.
    const logicalBytes = await this.length(id);
    return { logicalBytes, chunks, uniqueBytes: logicalBytes, storedBytes: logicalBytes, exact: true };
  }

  async openWriter(id: StreamId, offset?: number): Promise<StreamWriter> {
    if (this.writers.has(id)) throw new Error(`stream ${id} already has a writer`);
    const len = await this.length(id);
    const at = offset ?? len;
    if (at !== len) await this.truncate(id, at);
    this.writers.add(id);
    return new MemoryWriter(this, id, at);
  }

  async openReader(id: StreamId, offset = 0): Promise<StreamReader> {
    const len = await this.length(id);
    if (offset < 0 || offset > len) throw new RangeError(`cannot read stream ${id} at ${offset}: its length is ${len}`);
    return new MemoryReader(this, id, offset);
  }

  async truncate(id: StreamId, length: number, extra?: (batch: SyncBatch) => void): Promise<void> {
    const len = await this.length(id);
    if (!Number.isSafeInteger(length) || length < 0 || length > len) {
      throw new RangeError(`cannot truncate stream ${id} to ${length}: its length is ${len}`);
    }
    const b = this.db.batch();
    for await (const k of this.segs.keys({ gte: segKey(id, length), lt: segEnd(id) })) b.del(k, { sublevel: this.segs });
    const cut = await this.segmentAt(id, length);
    if (cut && cut.offset < length) b.put(segKey(id, cut.offset), cut.data.subarray(0, length - cut.offset), { sublevel: this.segs });
    b.put(id, length, { sublevel: this.lens });
    extra?.(b);
    await b.write();
  }

  async delete(id: StreamId, extra?: (batch: SyncBatch) => void): Promise<void> {
    if (this.writers.has(id)) throw new Error(`stream ${id} is open for writing`);
    const b = this.db.batch();
    for await (const k of this.segs.keys({ gte: segKey(id, 0), lt: segEnd(id) })) b.del(k, { sublevel: this.segs });
    b.del(id, { sublevel: this.lens });
    extra?.(b);
    await b.write();
  }

  async *list(): AsyncIterable<StreamId> {
    for await (const k of this.lens.keys()) yield k;
  }

  /** The segment holding byte `offset` (or ending right before it). */
  async segmentAt(id: StreamId, offset: number): Promise<{ offset: number; data: Buffer } | undefined> {
    for await (const [k, v] of this.segs.iterator({ lte: segKey(id, offset), gte: segKey(id, 0), reverse: true, limit: 1 })) {
      return { offset: parseInt(k.slice(k.lastIndexOf('!') + 1), 16), data: v };
    }
    return undefined;
  }

  /** @internal */
  async commit(id: StreamId, offset: number, data: Buffer, extra?: (batch: SyncBatch) => void): Promise<void> {
    const b = this.db.batch();
    // Bounded segments: LevelDB's reverse seeks copy the neighbouring value, so huge ones hurt.
    for (let at = 0; at < data.length; at += SEGMENT) {
      b.put(segKey(id, offset + at), data.subarray(at, at + SEGMENT), { sublevel: this.segs });
    }
    b.put(id, offset + data.length, { sublevel: this.lens });
    extra?.(b);
    await b.write();
  }

  /** @internal */
  release(id: StreamId): void {
    this.writers.delete(id);
  }
}

class MemoryWriter implements StreamWriter {
  private parts: Buffer[] = [];
  private pending = 0;
  private done = false;

  constructor(
    private readonly owner: MemoryStreams,
    readonly id: StreamId,
    private synced: number,
  ) {}

  get position(): number {
    return this.synced + this.pending;
  }

  async write(data: Uint8Array): Promise<void> {
    if (this.done) throw new Error('stream writer is closed');
    this.parts.push(Buffer.from(data)); // copy: the caller may reuse its buffer
    this.pending += data.length;
  }

  async sync(extra?: (batch: SyncBatch) => void): Promise<void> {
    if (this.done) throw new Error('stream writer is closed');
    const data = Buffer.concat(this.parts, this.pending);
    await this.owner.commit(this.id, this.synced, data, extra);
    this.synced += data.length;
    this.parts = [];
    this.pending = 0;
  }

  async close(extra?: (batch: SyncBatch) => void): Promise<void> {
    await this.sync(extra);
    this.done = true;
    this.owner.release(this.id);
  }

  async abort(): Promise<void> {
    this.done = true;
    this.parts = [];
    this.owner.release(this.id);
  }
}

class MemoryReader implements StreamReader {
  constructor(
    private readonly owner: MemoryStreams,
    private readonly id: StreamId,
    public position: number,
  ) {}

  async read(max: number): Promise<Buffer> {
    const len = await this.owner.length(this.id);
    if (this.position >= len || max <= 0) return Buffer.alloc(0);
    const seg = await this.owner.segmentAt(this.id, this.position);
    if (!seg) throw new Error(`stream ${this.id}: no segment at ${this.position}`);
    const from = this.position - seg.offset;
    const n = Math.min(max, seg.data.length - from, len - this.position);
    if (n <= 0) throw new Error(`stream ${this.id}: gap at ${this.position}`);
    this.position += n;
    return seg.data.subarray(from, from + n);
  }

  /** `read` already returns a view of a segment, which is never modified. */
  readLent(max: number): Promise<Buffer> {
    return this.read(max);
  }

  async readInto(buf: Uint8Array, offset = 0, length = buf.length - offset): Promise<number> {
    const got = await this.read(length);
    buf.set(got, offset);
    return got.length;
  }

  seek(offset: number): void {
    this.position = offset;
  }
}

/** A temp-dir LevelDB with memory streams over it, shaped like `openDataStore`. */
export async function openMemoryDataStore(dir?: string): Promise<{ dir: string; db: RootDb; streams: MemoryStreams; close(): Promise<void>; destroy(): Promise<void> }> {
  const where = dir ?? (await mkdtemp(join(tmpdir(), 'vtl-mem-')));
  const db: RootDb = new Level(where, { keyEncoding: 'utf8', valueEncoding: 'json' });
  await db.open();
  const streams = new MemoryStreams(db);
  return {
    dir: where,
    db,
    streams,
    close: () => db.close(),
    async destroy() {
      await db.close();
      await rm(where, { recursive: true, force: true });
    },
  };
}
