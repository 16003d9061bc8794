/**
 * Chunker throughput: the C addon against the TypeScript reference on 64 MiB of random data,
 * default params (2/8/64 KiB). Run: npx tsx bench/chunker.bench.ts
 */
import { randomBytes } from 'node:crypto';
import { Bench } from 'tinybench';
import { createChunker, DEFAULT_CHUNK_PARAMS, nativeChunkerAvailable, type Chunker } from '../src/dedup/chunker.js';

const SIZE = 64 * 1024 * 1024;
const data = randomBytes(SIZE);
const seed = randomBytes(32);

const chunkers: [string, Chunker][] = [['typescript', createChunker(DEFAULT_CHUNK_PARAMS, seed, { native: false })]];
if (nativeChunkerAvailable()) chunkers.unshift(['native', createChunker(DEFAULT_CHUNK_PARAMS, seed, { native: true })]);
else console.log('native chunker unavailable: only the TypeScript chunker is measured');

const bench = new Bench({ time: 3000, warmupTime: 500 });
let chunks = 0;
for (const [name, chunker] of chunkers) {
  bench.add(name, () => {
    chunks = chunker.cutPoints(data, true).length;
  });
}
await bench.run();

for (const task of bench.tasks) {
  const r = task.result;
  if (r.state !== 'completed') {
    console.log(`${task.name}: ${r.state}${'error' in r ? ` (${r.error.message})` : ''}`);
    continue;
  }
  const gbps = (mean: number) => (SIZE / (mean / 1000) / 1e9).toFixed(2);
  console.log(
    `${task.name.padEnd(10)} ${gbps(r.latency.mean)} GB/s mean, ${gbps(r.latency.min)} GB/s best ` +
      `(${r.latency.mean.toFixed(1)} ms per 64 MiB, ${r.latency.samplesCount} runs, ±${r.latency.rme.toFixed(1)}%)`,
  );
}
console.log(`chunks per 64 MiB: ${chunks} (mean ${Math.round(SIZE / chunks)} bytes)`);
