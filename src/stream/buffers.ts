/**
 * Record buffers that go round instead of to the garbage collector.
 *
 * A reader streaming a tape hands out one fresh buffer per record (64 KiB for tar -b 128), and
 * those buffers cost the server more in GC than the bytes cost to copy. A consumer that knows
 * when it is done with a buffer (the rmt session, once the socket has taken the bytes) gives it
 * back with `recycleBuffer`, and the next read takes it again. A consumer that does not simply
 * drops it, as before. Writes use them too: the rmt session joins a record that spans socket
 * reads in one, and gives it back once the medium has the record.
 *
 * Only buffers this module made, whole and not already given back, are taken back; anything
 * else is ignored, so a wrong call can waste a buffer but never hand one out twice.
 *
 * A stream reader can also lend a view of its own memory (`lendView`) instead of copying into a
 * new buffer; `recycleBuffer` gives that back to its lender. A lent view that is never given
 * back is harmless: its lender does not reuse that memory (it takes new memory instead).
 */

/** Size classes are powers of two above 4 KiB up to 4 MiB. */
const MIN_SHIFT = 12;
const MAX_SHIFT = 22;
/** Bytes kept free in all classes together: beyond it, given-back buffers are dropped. */
const KEEP_BYTES = 32 * 1024 * 1024;

const free: ArrayBuffer[][] = Array.from({ length: MAX_SHIFT + 1 }, () => []);
/** Buffers out with a consumer: only these can come back. */
const out = new WeakSet<ArrayBuffer>();
let freeBytes = 0;

/** The exponent of the power of two that holds n bytes (2^MIN_SHIFT < n <= 2^MAX_SHIFT). */
function sizeClass(n: number): number {
  return 32 - Math.clz32(n - 1);
}

/**
 * A buffer of `n` bytes (contents undefined), from the free ones when one fits. Small ones
 * come from Node's own pool, as before: rounding them up would waste more than GC costs.
 */
export function takeBuffer(n: number): Buffer {
  if (n <= 2 ** MIN_SHIFT || n > 2 ** MAX_SHIFT) return Buffer.allocUnsafe(Math.max(0, n));
  const shift = sizeClass(n);
  let ab = free[shift].pop();
  if (ab) freeBytes -= ab.byteLength;
  else ab = Buffer.allocUnsafeSlow(2 ** shift).buffer as ArrayBuffer; // not zero-filled, as `new ArrayBuffer` would be
  out.add(ab);
  return Buffer.from(ab, 0, n);
}

/** Lent views and how each goes back to its lender. */
const lent = new WeakMap<Uint8Array, () => void>();

/** Registers `view` as lent: `recycleBuffer(view)` calls `giveBack` once. */
export function lendView(view: Buffer, giveBack: () => void): Buffer {
  lent.set(view, giveBack);
  return view;
}

/** Gives back a buffer from `takeBuffer`, or a lent view, whose bytes nobody will look at again. */
export function recycleBuffer(b: Uint8Array): void {
  const giveBack = lent.get(b);
  if (giveBack) {
    lent.delete(b);
    giveBack();
    return;
  }
  const ab = b.buffer;
  if (!(ab instanceof ArrayBuffer) || b.byteOffset !== 0 || !out.has(ab)) return;
  out.delete(ab);
  if (freeBytes + ab.byteLength > KEEP_BYTES) return;
  free[sizeClass(ab.byteLength)].push(ab);
  freeBytes += ab.byteLength;
}

/** Pieces of an out-of-step copy (a multiple of 8). */
const STAGE_BYTES = 64 * 1024;
const stage = Buffer.allocUnsafeSlow(STAGE_BYTES + 8);

const shared = (b: Uint8Array) => b.buffer instanceof SharedArrayBuffer;

/**
 * Copies `source` into `target` at `at`, as `target.set(source, at)`. V8 copies to or from
 * shared memory (a SharedArrayBuffer: stream writers' batches, readers' slabs) word by word
 * where the two addresses agree modulo 8, and byte by byte where they do not: 3.1-3.2 GB/s
 * against 15-24 here, either way. Chunks start anywhere, so most copies out of a slab are out
 * of step, and so is an rmt record after its command line in a socket read. Those go through
 * a staging buffer put in step with the shared side, which costs one more copy at memory speed.
 */
export function copyBytes(target: Uint8Array, at: number, source: Uint8Array): void {
  const toShared = shared(target);
  const gap = (target.byteOffset + at - source.byteOffset) % 8;
  if (gap === 0 || source.length < 64 || (!toShared && !shared(source))) {
    target.set(source, at);
    return;
  }
  const shift = toShared ? (target.byteOffset + at) % 8 : source.byteOffset % 8;
  for (let i = 0; i < source.length; i += STAGE_BYTES) {
    const part = source.subarray(i, i + STAGE_BYTES);
    stage.set(part, shift);
    target.set(stage.subarray(shift, shift + part.length), at + i);
  }
}
