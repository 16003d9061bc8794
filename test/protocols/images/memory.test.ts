/**
 * Bounded memory: after a warm-up import (the store's caches, LevelDB and worker buffers settle
 * at a fixed size), a 384 MiB image streams into a cartridge and back out while the process's
 * resident memory grows by far less than the image: the decoder holds at most one record and
 * the export stream at most one record plus 1 MiB.
 */
import { afterAll, beforeAll, expect, test } from 'vitest';
import { CODECS, exportCartridgeImage, importCartridgeImage } from '../../../src/protocols/images/index.js';
import { randomBytes } from '../../helpers/data.js';
import { openStore, type StoreEnv } from './util.js';

const MiB = 2 ** 20;
const RECORD = 256 * 1024;
/** A pool of distinct records, so the store dedups most of the image and the test stays fast. */
const POOL = Array.from({ length: 16 }, (_, i) => randomBytes(RECORD, i + 1));

let env: StoreEnv;
beforeAll(async () => {
  env = await openStore();
});
afterAll(async () => {
  await env?.close();
});

async function* image(total: number): AsyncGenerator<Buffer> {
  const enc = CODECS.aws.encoder();
  for (let i = 0; i * RECORD < total; i++) {
    yield Buffer.concat(enc.record(POOL[(i * 7) % POOL.length]));
    if (i % 100 === 99) yield Buffer.concat(enc.tapemark());
  }
  yield Buffer.concat(enc.tapemark());
}

test('a 384 MiB image imports and exports with bounded memory', async () => {
  await importCartridgeImage(env, await env.cartridge(), 'aws', image(64 * MiB));
  const base = process.memoryUsage().rss;
  let peak = base;
  const sample = () => (peak = Math.max(peak, process.memoryUsage().rss));
  const total = 384 * MiB;
  const code = await env.cartridge();
  const t0 = performance.now();
  const sum = await importCartridgeImage(env, code, 'aws', image(total), { onProgress: sample });
  const t1 = performance.now();
  const importGrowth = (peak - base) / MiB;
  expect(sum.logicalBytes).toBe(total);
  let bytes = 0;
  for await (const c of await exportCartridgeImage(env, code, 'aws')) {
    bytes += (c as Buffer).length;
    sample();
  }
  const t2 = performance.now();
  expect(bytes).toBe(sum.bytes);
  const growth = (peak - base) / MiB;
  const rate = (ms: number) => (total / MiB / (ms / 1000)).toFixed(0);
  console.log(`384 MiB aws image: import ${rate(t1 - t0)} MiB/s, export ${rate(t2 - t1)} MiB/s; RSS growth over the warm-up: import ${importGrowth.toFixed(0)} MiB, import+export ${growth.toFixed(0)} MiB`);
  expect(growth).toBeLessThan(128);
});
