/**
 * Stream layer: a seekable byte stream stored as a recipe (ordered chunk references).
 *
 * Guarantees:
 * - A stream reads back bit for bit what was written to it, from any byte offset.
 * - Only one writer per stream at a time. Writes of any size produce the same chunks as long as
 *   no sync point falls in between (the writer carries the unfinished chunk across writes).
 * - `sync()` is a sync point: every byte written before it, and the caller's extra LevelDB
 *   operations, become durable together in one atomic LevelDB batch. After a crash (SIGKILL)
 *   a stream reopens at exactly its last synced length; nothing unsynced is visible.
 * - What lies past a stream's last sync point is garbage, as soon as no writer holds it: recipe
 *   pages a writer wrote ahead of it (to bound its memory) are dropped by `abort`, and after a
 *   crash as the data store opens (stream/store.ts), also for streams nothing opens again (a
 *   blank cartridge's first file that never reached a filemark). Their chunks go to GC.
 * - Opening a writer at an offset below the length truncates the stream there (tape overwrite
 *   semantics); the chunks past it become garbage for GC.
 * - Recipes live in LevelDB in pages keyed by their starting offset, so append, truncate and
 *   seek cost O(log n) for streams of terabytes.
 */
import type { AbstractSublevel } from 'abstract-level';

export type StreamId = string;

/**
 * Extra LevelDB operations committed atomically with a stream's sync point: puts and deletes in
 * sublevels of the store's database.
 */
export interface SyncBatch {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  put(key: any, value: any, options: { sublevel: AbstractSublevel<any, any, any, any> }): unknown;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  del(key: any, options: { sublevel: AbstractSublevel<any, any, any, any> }): unknown;
}

export interface StreamWriter {
  readonly id: StreamId;
  /** Logical length including bytes written but not yet synced. */
  readonly position: number;
  /** Appends bytes; resolves when they are accepted (buffered), which provides backpressure. */
  write(data: Uint8Array): Promise<void>;
  /** Sync point: makes all written bytes durable; `extra` adds the caller's own operations. */
  sync(extra?: (batch: SyncBatch) => void): Promise<void>;
  /** Sync and release the stream for another writer. */
  close(extra?: (batch: SyncBatch) => void): Promise<void>;
  /** Drops everything written since the last sync point and releases the stream. */
  abort(): Promise<void>;
}

export interface StreamReader {
  readonly position: number;
  /** Reads up to `max` bytes; returns an empty buffer at end of stream. */
  read(max: number): Promise<Buffer>;
  /**
   * Reads up to `length` bytes into `buf` from `offset` on; resolves to the count, 0 at end of
   * stream. Lets a caller reuse one buffer (no allocation per read).
   */
  readInto(buf: Uint8Array, offset?: number, length?: number): Promise<number>;
  /**
   * As `read`, but the bytes may be a view of the reader's own memory, lent (stream/buffers.ts)
   * rather than copied: the caller must not modify them, and gives them back with
   * `recycleBuffer` once nobody looks at them (one that is dropped instead costs the reader new
   * memory, never wrong bytes).
   */
  readLent(max: number): Promise<Buffer>;
  /** Moves to an absolute byte offset (0..length). */
  seek(offset: number): void;
}

export interface StreamStats {
  /** Logical (synced) length in bytes. */
  logicalBytes: number;
  /** Chunk references in the recipe. */
  chunks: number;
  /**
   * Raw and stored (compressed, encrypted) bytes of the distinct chunks the stream refers to.
   * Chunks shared with other streams count for each of them.
   */
  uniqueBytes: number;
  storedBytes: number;
  /** False when the recipe had too many distinct chunks to track them all (then approximate). */
  exact: boolean;
}

export interface Streams {
  create(): Promise<StreamId>;
  exists(id: StreamId): Promise<boolean>;
  /** Synced length of the stream. */
  length(id: StreamId): Promise<number>;
  stats(id: StreamId): Promise<StreamStats>;
  /** The single writer of a stream, positioned at `offset` (default: the end); truncates past it. */
  openWriter(id: StreamId, offset?: number): Promise<StreamWriter>;
  openReader(id: StreamId, offset?: number): Promise<StreamReader>;
  /** Truncates to `length` bytes as one durable operation. */
  truncate(id: StreamId, length: number, extra?: (batch: SyncBatch) => void): Promise<void>;
  /** Removes the stream; its chunks become garbage. */
  delete(id: StreamId, extra?: (batch: SyncBatch) => void): Promise<void>;
  list(): AsyncIterable<StreamId>;
}
