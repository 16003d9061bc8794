/**
 * Fingerprint index lookups: batched (getMany through the Bloom filter) for hits and misses.
 * Run: npx tsx bench/index.bench.ts [keys]
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Level } from 'level';
import { Bench } from 'tinybench';
import { FingerprintIndex, encodeRef } from '../src/dedup/fingerprint-index.js';

const KEYS = Number(process.argv[2] ?? 500_000);
const BATCH = 256;

const dir = await mkdtemp(join(tmpdir(), 'vtl-index-bench-'));
const db = new Level(join(dir, 'index'));
const sub = db.sublevel<Buffer, Buffer>('fingerprints', { keyEncoding: 'buffer', valueEncoding: 'buffer' });
const present: Buffer[] = [];
for (let i = 0; i < KEYS; i += 10_000) {
  const ops = [];
  for (let j = 0; j < 10_000; j++) {
    const fp = randomBytes(16);
    if (present.length < 100_000) present.push(fp);
    ops.push({ type: 'put' as const, key: fp, value: encodeRef({ container: i, offset: j, frameLength: 8000, rawLength: 8192 }) });
  }
  await sub.batch(ops);
}
const index = await FingerprintIndex.open(sub);
const absent = Array.from({ length: 100_000 }, () => randomBytes(16));

let h = 0;
let m = 0;
const bench = new Bench({ time: 2000 });
bench
  .add(`getMany(${BATCH}) hits`, async () => {
    const batch = present.slice(h, h + BATCH);
    h = (h + BATCH) % (present.length - BATCH);
    await index.lookupMany(batch);
  })
  .add(`getMany(${BATCH}) misses (Bloom filter)`, async () => {
    const batch = absent.slice(m, m + BATCH);
    m = (m + BATCH) % (absent.length - BATCH);
    await index.lookupMany(batch);
  })
  .add('getSync hit', () => {
    sub.getSync(present[h++ % present.length]);
  });
await bench.run();
for (const t of bench.tasks) {
  const perOp = t.name.includes('getMany') ? BATCH : 1;
  const hz = (t.result as { throughput?: { mean: number }; hz?: number }).throughput?.mean ?? (t.result as { hz?: number }).hz ?? 0;
  console.log(`${t.name.padEnd(36)} ${((hz * perOp) / 1000).toFixed(0)}k lookups/s`);
}
await db.close();
await rm(dir, { recursive: true, force: true });
