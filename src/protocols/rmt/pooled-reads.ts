/**
 * Socket reads into pooled segments, instead of a new 64 KiB buffer per read.
 *
 * Node reads a socket into a fresh ArrayBuffer each time. For a client writing a tape at
 * hundreds of MB/s, those buffers cost the rmt server more than the bytes do: fresh pages to
 * fault in, external memory that drives scavenges, and a copy into a record buffer for every
 * record that spans two reads. Here a socket reads into 1 MiB segments from the record
 * buffer pool (stream/buffers.ts), one read after another, and a segment goes back to the pool
 * once nothing refers to it: not the reader, no buffered chunk, no lent view. A connection
 * starts on 16 KiB segments and moves to 1 MiB ones at its first large read (records
 * streaming in): one that only sends commands, or sits idle, pins 16 KiB, not 1 MiB (with
 * up to 256 connections, that is 4 MiB rather than 256 MiB).
 *
 * Guarantee: a segment is reused only after every view of it was given back; a view that is
 * never given back keeps its segment out of the pool (new memory, never overwritten bytes).
 *
 * Node offers reads into the caller's memory (the `onread` option) only to sockets a program
 * creates itself (`net.connect`, `new net.Socket`). A server's accepted socket has the same
 * machinery, unset: `pooledReads` sets it through the socket's own fields, before the socket
 * reads its first byte. Where those fields are not there (another Node release), it returns
 * undefined and the caller reads 'data' events as before.
 */
import type { Socket } from 'node:net';
import { lendView, recycleBuffer, takeBuffer } from '../../tape/index.js';

/** Reads go into segments this large once records stream in (a power of two, so the pool keeps them). */
export const SEGMENT_BYTES = 1024 * 1024;
/** Until then (commands, replies to wait for, an idle client), segments this large. */
export const SMALL_SEGMENT_BYTES = 16 * 1024;
/** A read this large means records are streaming in: from then on, large segments. */
const STREAMING_READ = 8 * 1024;
/** A large segment with less room than this is left for a new one: reads stay large. */
const MIN_READ = 64 * 1024;
/** A small segment with less room than this is left for a new one (a command line fits). */
const MIN_SMALL_READ = 2 * 1024;

/** A pooled buffer that reads fill in turn; back to the pool when its last holder lets go. */
export class Segment {
  /** The reader's own hold, until it moves on to the next segment. */
  private holds = 1;
  used = 0;

  constructor(readonly buf: Buffer) {}

  hold(): void {
    this.holds++;
  }

  release(): void {
    if (--this.holds === 0) recycleBuffer(this.buf);
  }

  /** A view of `view`'s bytes that holds this segment until `recycleBuffer(view)`. */
  lend(view: Buffer): Buffer {
    this.hold();
    return lendView(view, () => this.release());
  }
}

/** Bytes read into a segment: `view` holds it until `segment.release()` is called once for it. */
export type SegmentRead = (view: Buffer, segment: Segment) => void;

interface OnreadFields {
  buffer: symbol;
  callback: symbol;
  generator: symbol;
}

function onreadFields(socket: Socket): OnreadFields | undefined {
  const named = (name: string) => Object.getOwnPropertySymbols(socket).find((s) => s.description === name);
  const [buffer, callback, generator] = [named('kBuffer'), named('kBufferCb'), named('kBufferGen')];
  return buffer && callback && generator ? { buffer, callback, generator } : undefined;
}

/**
 * Makes `socket` (accepted, paused since connect: `pauseOnConnect`) read into segments and
 * hand each read to `onRead`, instead of emitting 'data'. Returns a function that lets the
 * current segment go once the socket is done, or undefined where Node does not allow it. The
 * socket's pause(), resume(), 'end' and bytesRead work as before.
 */
export function pooledReads(socket: Socket, onRead: SegmentRead): (() => void) | undefined {
  const fields = onreadFields(socket);
  const handle = (socket as unknown as { _handle?: { useUserBuffer?: (b: Uint8Array) => void; reading?: boolean } })._handle;
  const slots = socket as unknown as Record<symbol, unknown>;
  if (!fields || typeof handle?.useUserBuffer !== 'function' || handle.reading || slots[fields.buffer] !== null) return undefined;
  let streaming = false;
  let segment = new Segment(takeBuffer(SMALL_SEGMENT_BYTES));
  const next = (): Buffer => {
    const [size, least] = streaming ? [SEGMENT_BYTES, MIN_READ] : [SMALL_SEGMENT_BYTES, MIN_SMALL_READ];
    // A small segment is also left at once when records start to stream in.
    if (segment.buf.length - segment.used < least || segment.buf.length < size) {
      segment.release();
      segment = new Segment(takeBuffer(size));
    }
    return segment.buf.subarray(segment.used);
  };
  const first = next();
  slots[fields.buffer] = first;
  slots[fields.generator] = next;
  slots[fields.callback] = (nread: number) => {
    const view = segment.buf.subarray(segment.used, segment.used + nread);
    segment.used += nread;
    if (nread >= STREAMING_READ) streaming = true;
    segment.hold();
    onRead(view, segment);
  };
  handle.useUserBuffer(first);
  let done = false;
  return () => {
    if (done) return;
    done = true;
    segment.release();
  };
}
