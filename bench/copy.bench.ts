/**
 * Copies to and from shared memory (stream writers' batches, readers' slabs are
 * SharedArrayBuffers): `set()` against `copyBytes` (src/stream/buffers.ts), with source and
 * target in step (their addresses agree modulo 8) and out of step. An rmt record after its
 * command line is out of step with a writer's batch; a chunk copied out of a slab mostly is.
 * Run: npx tsx bench/copy.bench.ts
 */
import { Bench } from 'tinybench';
import { copyBytes } from '../src/stream/buffers.js';

const PIECE = 64 * 1024;
const SLOTS = 64;
const shared = Buffer.from(new SharedArrayBuffer((SLOTS + 1) * PIECE));
const plain = Buffer.allocUnsafeSlow((SLOTS + 1) * PIECE);
plain.fill(0x5a);
shared.fill(0xa5);
let i = 0;
/** Piece i of `b`, starting `skew` bytes into its slot. */
const piece = (b: Buffer, skew: number) => b.subarray((i & (SLOTS - 1)) * PIECE + skew, (i & (SLOTS - 1)) * PIECE + skew + PIECE);
const at = () => ((i++ * 7) & (SLOTS - 1)) * PIECE;

const bench = new Bench({ time: 1000 });
bench
  .add('to shared, in step, set()', () => shared.set(piece(plain, 0), at()))
  .add('to shared, out of step, set()', () => shared.set(piece(plain, 7), at()))
  .add('to shared, out of step, copyBytes', () => copyBytes(shared, at(), piece(plain, 7)))
  .add('from shared, in step, set()', () => plain.set(piece(shared, 0), at()))
  .add('from shared, out of step, set()', () => plain.set(piece(shared, 5), at()))
  .add('from shared, out of step, copyBytes', () => copyBytes(plain, at(), piece(shared, 5)))
  .add('plain to plain, out of step, set()', () => plain.set(piece(plain, 7), at()));
await bench.run();
for (const t of bench.tasks) {
  const r = t.result as { throughput?: { mean: number }; hz?: number };
  const hz = r.throughput?.mean ?? r.hz ?? 0;
  console.log(`${t.name.padEnd(40)} ${((hz * PIECE) / 1e9).toFixed(2)} GB/s  (${(1e6 / hz).toFixed(2)} us per 64 KiB)`);
}
