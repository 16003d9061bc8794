/** Small helpers for object bodies shared by the backends. */
import { Readable, Transform, type TransformCallback } from 'node:stream';
import { LengthMismatchError } from './errors.js';

export async function readAll(stream: AsyncIterable<Uint8Array | string>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const part of stream) parts.push(typeof part === 'string' ? Buffer.from(part) : Buffer.from(part.buffer, part.byteOffset, part.byteLength));
  return parts.length === 1 ? parts[0] : Buffer.concat(parts);
}

export function emptyStream(): Readable {
  return Readable.from([]);
}

export function checkLength(key: string, expected: number | undefined, actual: number): void {
  if (expected !== undefined && expected !== actual) {
    throw new LengthMismatchError(`put ${key}: body has ${actual} bytes, contentLength says ${expected}; nothing stored`);
  }
}

/**
 * Passes a stream through while counting bytes; fails the stream as soon as it exceeds
 * `expected`, or at its end when it fell short, so the store never commits a wrong-sized body.
 */
export class LengthGuard extends Transform {
  bytes = 0;

  constructor(private readonly key: string, private readonly expected: number | undefined) {
    super();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.bytes += chunk.length;
    if (this.expected !== undefined && this.bytes > this.expected) {
      done(new LengthMismatchError(`put ${this.key}: body longer than contentLength ${this.expected}; nothing stored`));
      return;
    }
    done(null, chunk);
  }

  override _flush(done: TransformCallback): void {
    try {
      checkLength(this.key, this.expected, this.bytes);
      done();
    } catch (err) {
      done(err as Error);
    }
  }
}

export function checkRetainDate(date: Date | undefined): void {
  if (date !== undefined && (!(date instanceof Date) || Number.isNaN(date.getTime()))) {
    throw new TypeError('retainUntil must be a valid Date');
  }
}
