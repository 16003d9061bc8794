/**
 * One `Streams` over several recipe stores: the local one, and mounted ones (replicas of other
 * regions' stores, read through their own chunk sources). A stream of a mounted store is named
 * `<mount>:<id>`; local ids never contain ':'. New streams are always local. The tape layer
 * keeps stream ids opaque, so a medium whose stream is mounted reads like any other.
 */
import type { ChunkStore } from '../dedup/store.js';
import type { ChunkSource, RecipeStreams } from './recipes.js';
import type { StreamId, StreamReader, StreamStats, StreamWriter, Streams, SyncBatch } from './index.js';

const MOUNT = /^[a-z0-9][a-z0-9-]{0,31}$/;

export class StreamRouter implements Streams {
  private readonly mounts = new Map<string, RecipeStreams<ChunkSource>>();

  constructor(readonly local: RecipeStreams<ChunkStore>) {}

  mount(name: string, streams: RecipeStreams<ChunkSource>): void {
    if (!MOUNT.test(name)) throw new Error(`invalid stream mount name ${JSON.stringify(name)}`);
    this.mounts.set(name, streams);
  }

  /** The recipe store a stream id lives in, and its id there. */
  resolve(id: StreamId): { streams: RecipeStreams<ChunkSource>; id: StreamId } {
    const at = id.indexOf(':');
    if (at < 0) return { streams: this.local, id };
    const streams = this.mounts.get(id.slice(0, at));
    if (!streams) throw new Error(`stream ${id} belongs to ${id.slice(0, at)}, which is not attached`);
    return { streams, id: id.slice(at + 1) };
  }

  /** The chunk source a stream's recipe refers to. */
  sourceOf(id: StreamId): ChunkSource {
    return this.resolve(id).streams.store;
  }

  create(): Promise<StreamId> {
    return this.local.create();
  }

  async exists(id: StreamId): Promise<boolean> {
    const at = id.indexOf(':');
    if (at >= 0 && !this.mounts.has(id.slice(0, at))) return false;
    const r = this.resolve(id);
    return r.streams.exists(r.id);
  }

  length(id: StreamId): Promise<number> {
    const r = this.resolve(id);
    return r.streams.length(r.id);
  }

  stats(id: StreamId): Promise<StreamStats> {
    const r = this.resolve(id);
    return r.streams.stats(r.id);
  }

  openWriter(id: StreamId, offset?: number): Promise<StreamWriter> {
    const r = this.resolve(id);
    if (r.streams !== this.local) return Promise.reject(new Error(`stream ${id} is a read-only replica`));
    return r.streams.openWriter(r.id, offset);
  }

  openReader(id: StreamId, offset?: number): Promise<StreamReader> {
    const r = this.resolve(id);
    return r.streams.openReader(r.id, offset);
  }

  truncate(id: StreamId, length: number, extra?: (batch: SyncBatch) => void): Promise<void> {
    const r = this.resolve(id);
    return r.streams.truncate(r.id, length, extra);
  }

  delete(id: StreamId, extra?: (batch: SyncBatch) => void): Promise<void> {
    const r = this.resolve(id);
    return r.streams.delete(r.id, extra);
  }

  async *list(): AsyncIterable<StreamId> {
    yield* this.local.list();
    for (const [name, s] of this.mounts) for await (const id of s.list()) yield `${name}:${id}`;
  }

  pageAt(id: StreamId, offset: number): Promise<{ start: number; page: Buffer } | undefined> {
    const r = this.resolve(id);
    return r.streams.pageAt(r.id, offset);
  }

  pageRange(id: StreamId, from: number) {
    const r = this.resolve(id);
    return r.streams.pageRange(r.id, from);
  }
}
