/**
 * Chunk fingerprints: XXH3-128 keyed with the store's 192-byte secret (what vtl uses) against
 * the seeded XXH3-128, per 8 KiB chunk, plus the conversion to the 16-byte stored form, and
 * the batch of 1024 chunks in one C call (what a cut batch uses; figures per chunk).
 * Run: npx tsx bench/fingerprint.bench.ts
 */
import { randomBytes } from 'node:crypto';
import { xxh3 } from '@node-rs/xxhash';
import { Bench } from 'tinybench';
import { fingerprintBatch, fingerprintBytes, fingerprintKey, NATIVE_FINGERPRINTS_UNAVAILABLE } from '../src/dedup/fingerprint.js';

const CHUNK = 8192;
const chunks = Array.from({ length: 1024 }, () => randomBytes(CHUNK));
const secret = randomBytes(192);
const out = Buffer.alloc(16);
let i = 0;
const batch = Buffer.concat(chunks);
const cuts = Uint32Array.from(chunks, (_, k) => (k + 1) * CHUNK);
const batchOut = Buffer.alloc(cuts.length * 16);

const bench = new Bench({ time: 1500 });
bench
  .add('xxh128WithSecret (vtl)', () => {
    fingerprintKey(secret, chunks[i++ & 1023]);
  })
  .add('xxh128 seeded', () => {
    xxh3.xxh128(chunks[i++ & 1023], 42n);
  })
  .add('xxh128WithSecret + 16-byte form', () => {
    fingerprintBytes(fingerprintKey(secret, chunks[i++ & 1023]), out);
  })
  .add(`batch of 1024 (${NATIVE_FINGERPRINTS_UNAVAILABLE ? 'per chunk: ' + NATIVE_FINGERPRINTS_UNAVAILABLE : 'C'})`, () => {
    fingerprintBatch(secret, batch, cuts, batchOut);
  });
await bench.run();
for (const t of bench.tasks) {
  const r = t.result as { throughput?: { mean: number }; hz?: number };
  const per = t.name.startsWith('batch') ? cuts.length : 1;
  const hz = (r.throughput?.mean ?? r.hz ?? 0) * per;
  console.log(`${t.name.padEnd(34)} ${((hz * CHUNK) / 1e9).toFixed(2)} GB/s  (${(1e6 / hz).toFixed(2)} us per 8 KiB chunk)`);
}
