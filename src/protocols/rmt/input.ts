/**
 * The bytes of one side of an rmt conversation, read as rmt needs them: single command (or
 * reply) bytes, lines and exact-length payloads. The buffer is bounded: past `highWater` bytes
 * the source is paused until they are consumed, so a fast or hostile peer cannot grow memory.
 * The server reads its clients' sockets with it; the bridge reads tar's stdin and the replies.
 */
import type { Readable } from 'node:stream';

/** The client broke the protocol beyond recovery (an argument line too long). */
export class ProtocolError extends Error {}

export class Input {
  private chunks: Buffer[] = [];
  /** Bytes of chunks[0] already consumed. */
  private head = 0;
  private size = 0;
  private ended = false;
  private wake: (() => void) | undefined;

  /**
   * `alloc` makes the buffer for bytes that span received chunks (the rmt server takes them
   * from the record buffer pool and gives them back once stored); by default a new one.
   */
  constructor(
    private readonly source: Readable,
    private readonly highWater: number,
    private readonly alloc: (n: number) => Buffer = Buffer.allocUnsafe,
  ) {
    source.on('data', (c: Buffer) => {
      this.chunks.push(c);
      this.size += c.length;
      if (this.size >= this.highWater) source.pause();
      this.notify();
    });
    const end = () => {
      this.ended = true;
      this.notify();
    };
    source.on('end', end);
    source.on('close', end);
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
        const text = this.take(at).toString('latin1');
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
      parts.push(c.subarray(this.head, this.head + k));
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

  /** Removes and returns `n` buffered bytes (a view when they lie in one chunk). */
  private take(n: number): Buffer {
    const first = this.chunks[0];
    if (first && first.length - this.head >= n) {
      const out = first.subarray(this.head, this.head + n);
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
    }
    if (this.size < this.highWater / 2 && this.source.isPaused() && !this.source.destroyed && !this.ended) this.source.resume();
  }
}
