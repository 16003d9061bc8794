/**
 * A queue of input chunks for the decoders: they wait until a whole header or record is
 * present, then take it. Memory is bounded by what a decoder waits for (at most one record)
 * plus the last chunk pushed. Bytes taken from within one chunk are returned as views of it,
 * so callers must not reuse a buffer they pushed.
 */
export class ByteQueue {
  private chunks: Buffer[] = [];
  /** Read position inside chunks[0]. */
  private head = 0;
  private size = 0;
  /** Image offset of the next byte to take. */
  offset = 0;

  push(b: Uint8Array): void {
    if (b.length === 0) return;
    this.chunks.push(Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.length));
    this.size += b.length;
  }

  get available(): number {
    return this.size;
  }

  /** Takes exactly `n` bytes (the caller checked `available`). */
  take(n: number): Buffer {
    if (n > this.size) throw new RangeError(`take(${n}) with ${this.size} bytes queued`);
    const first = this.chunks[0];
    if (n === 0) return Buffer.alloc(0);
    if (first.length - this.head >= n) {
      const out = first.subarray(this.head, this.head + n);
      this.advance(n);
      return out;
    }
    const out = Buffer.allocUnsafe(n);
    let got = 0;
    while (got < n) {
      const c = this.chunks[0];
      const k = Math.min(n - got, c.length - this.head);
      c.copy(out, got, this.head, this.head + k);
      got += k;
      this.advance(k);
    }
    return out;
  }

  private advance(k: number): void {
    this.head += k;
    this.size -= k;
    this.offset += k;
    if (this.head === this.chunks[0].length) {
      this.chunks.shift();
      this.head = 0;
    }
  }
}
