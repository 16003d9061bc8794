/**
 * The bytes of one side of an rmt conversation, read as rmt needs them: single command (or
 * reply) bytes, lines and exact-length payloads. The buffer is bounded: past `highWater` bytes
 * the source is paused until they are consumed, so a fast or hostile peer cannot grow memory.
 * The server reads its clients' sockets with it, into pooled segments (pooled-reads.ts); the
 * bridge reads tar's stdin and the replies.
 */
import type { Socket } from 'node:net';
import type { Readable } from 'node:stream';
import { pooledReads, type Segment } from './pooled-reads.js';

/** The client broke the protocol beyond recovery (an argument line too long). */
export class ProtocolError extends Error {}

export class Input {
  private chunks: Buffer[] = [];
  /** With pooled reads, the segment of each chunk (each chunk holds its segment once). */
  private segments: Segment[] | undefined;
  /** Bytes of chunks[0] already consumed. */
  private head = 0;
  private size = 0;
  private ended = false;
  private wake: (() => void) | undefined;

  /**
   * `alloc` makes the buffer for bytes that span received chunks (the rmt server takes them
   * from the record buffer pool and gives them back once stored); by default a new one.
   *
   * With `pooled` (a socket accepted with pauseOnConnect) the socket reads into pooled
   * segments where Node allows it. Then what `exact`, `exactParts` and `some` return are lent
   * views: give them back with recycleBuffer (tape/index.ts) once nobody looks at them.
   */
  constructor(
    private readonly source: Readable,
    private readonly highWater: number,
    private readonly alloc: (n: number) => Buffer = Buffer.allocUnsafe,
    pooled = false,
  ) {
    const letGo = pooled ? pooledReads(source as Socket, (view, segment) => this.received(view, segment)) : undefined;
    if (letGo) this.segments = [];
    else source.on('data', (c: Buffer) => this.received(c));
    const end = () => {
      this.ended = true;
      this.notify();
    };
    source.on('end', end);
    source.on('close', () => {
      letGo?.();
      end();
    });
    if (pooled) source.resume();
  }

  private received(c: Buffer, segment?: Segment): void {
    this.chunks.push(c);
    if (segment) this.segments!.push(segment);
    this.size += c.length;
    if (this.size >= this.highWater) this.source.pause();
    this.notify();
  }

  /** The socket reads into pooled segments (what `exact` returns is lent). */
  get pooled(): boolean {
    return this.segments !== undefined;
  }

  /** The input has ended and every byte of it was consumed. */
  get finished(): boolean {
    return this.ended && this.size === 0;
  }

  /** Bytes received and not yet consumed. */
  get buffered(): number {
    return this.size;
  }

  /** Stops reading: what is buffered stays, nothing more arrives. */
  stop(): void {
    this.ended = true;
    this.notify();
  }

  /** The next byte, or null at end of input. */
  async byte(): Promise<number | null> {
    if (!(await this.want(1))) return null;
    const b = this.chunks[0][this.head];
    this.consume(1);
    return b;
  }

  /** Bytes up to a newline (dropped), or null at end of input; a longer line is an error. */
  async line(max: number): Promise<string | null> {
    for (;;) {
      const at = this.indexOfNewline(max + 1);
      if (at >= 0) {
        const text = this.text(at);
        this.consume(1);
        return text;
      }
      if (this.size > max) throw new ProtocolError(`argument longer than ${max} bytes`);
      if (!(await this.want(this.size + 1))) return null;
    }
  }

  /** Exactly `n` bytes as views of what was received (no copy), or null if the input ends first. */
  async exactParts(n: number): Promise<Buffer[] | null> {
    if (!(await this.want(n))) return null;
    const parts: Buffer[] = [];
    for (let left = n; left > 0; ) {
      const c = this.chunks[0];
      const k = Math.min(left, c.length - this.head);
      parts.push(this.lent(c.subarray(this.head, this.head + k)));
      this.consume(k);
      left -= k;
    }
    return parts;
  }

  /** Whatever is buffered (at least one byte), or null at end of input. */
  async some(): Promise<Buffer | null> {
    if (!(await this.want(1))) return null;
    return this.take(this.chunks[0].length - this.head);
  }

  /** Exactly `n` bytes, or null if the input ends first. The caller has bounded `n`. */
  async exact(n: number): Promise<Buffer | null> {
    if (!(await this.want(n))) return null;
    return this.take(n);
  }

  private notify(): void {
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }

  /** Waits until `n` bytes are buffered; false if the input ended before. */
  private async want(n: number): Promise<boolean> {
    while (this.size < n) {
      if (this.ended) return false;
      if (this.source.isPaused() && !this.source.destroyed) this.source.resume();
      await new Promise<void>((resolve) => (this.wake = resolve));
    }
    return true;
  }

  /** Position of the first newline among the first `limit` buffered bytes, or -1. */
  private indexOfNewline(limit: number): number {
    let offset = 0;
    for (let i = 0; i < this.chunks.length && offset < limit; i++) {
      const c = this.chunks[i];
      const start = i === 0 ? this.head : 0;
      const end = Math.min(c.length, start + (limit - offset));
      const at = c.indexOf(0x0a, start);
      if (at >= 0 && at < end) return offset + (at - start);
      offset += end - start;
    }
    return -1;
  }

  /** A view of chunks[0], lent from its segment with pooled reads (before it is consumed). */
  private lent(view: Buffer): Buffer {
    return this.segments && view.length > 0 ? this.segments[0].lend(view) : view;
  }

  /** Removes `n` buffered bytes and returns them as text. */
  private text(n: number): string {
    const first = this.chunks[0];
    if (!first || first.length - this.head < n) return this.take(n).toString('latin1');
    const text = first.toString('latin1', this.head, this.head + n);
    this.consume(n);
    return text;
  }

  /** Removes and returns `n` buffered bytes (a view when they lie in one chunk). */
  private take(n: number): Buffer {
    const first = this.chunks[0];
    if (first && first.length - this.head >= n) {
      const out = this.lent(first.subarray(this.head, this.head + n));
      this.consume(n);
      return out;
    }
    const out = this.alloc(n);
    let filled = 0;
    while (filled < n) {
      const c = this.chunks[0];
      const k = Math.min(n - filled, c.length - this.head);
      c.copy(out, filled, this.head, this.head + k);
      filled += k;
      this.consume(k);
    }
    return out;
  }

  private consume(n: number): void {
    this.head += n;
    this.size -= n;
    while (this.chunks.length > 0 && this.head >= this.chunks[0].length) {
      this.head -= this.chunks[0].length;
      this.chunks.shift();
      this.segments?.shift()!.release();
    }
    if (this.size < this.highWater / 2 && this.source.isPaused() && !this.source.destroyed && !this.ended) this.source.resume();
  }
}
