/**
 * Seal/open throughput of container frames for 8 KiB chunks (DESIGN section 6 budget:
 * lz4 0.7 GB/s, AES-256-GCM 1.3 GB/s per core).  Run: npx tsx bench/seal.bench.ts [--json]
 */
import { createCipheriv, createHash, randomBytes } from 'node:crypto';
import { compress } from 'lz4-napi';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Bench } from 'tinybench';
import { ContainerReader, ContainerWriter, openChunk, sealChunk, type FooterEntry } from '../src/dedup/container.js';

const CHUNK = 8192;
const POOL = 256;
const key = randomBytes(32);

/** Half random, half a repeat of it: lz4 stores about 55%, like mixed backup data. */
function compressible(): Buffer {
  const b = randomBytes(CHUNK);
  b.copy(b, CHUNK / 2, 0, CHUNK / 2);
  return b;
}

const kinds = {
  compressible: Array.from({ length: POOL }, compressible),
  random: Array.from({ length: POOL }, () => randomBytes(CHUNK)),
};
const fps = (chunks: Buffer[]) => chunks.map((c) => createHash('md5').update(c).digest());

async function main(): Promise<void> {
  const json = process.argv.includes('--json');
  const bench = new Bench({ time: 1500, warmup: true });
  const bytesPerOp = new Map<string, number>();
  const dir = await mkdtemp(join(tmpdir(), 'vtl-seal-bench-'));
  const readers: ContainerReader[] = [];

  // Baselines on the same machine and load: what the frame code adds shows against these.
  const iv = randomBytes(12);
  bytesPerOp.set('baseline: AES-256-GCM only', CHUNK);
  bench.add('baseline: AES-256-GCM only', () => {
    const c = createCipheriv('aes-256-gcm', key, iv);
    c.update(kinds.random[0]);
    c.final();
  });
  bytesPerOp.set('baseline: lz4 compress only, 64 in flight', CHUNK * 64);
  bench.add('baseline: lz4 compress only, 64 in flight', async () => {
    await Promise.all(kinds.compressible.slice(0, 64).map((c) => compress(c)));
  });

  for (const [kind, chunks] of Object.entries(kinds)) {
    const fp = fps(chunks);
    let i = 0;
    const seq = `seal ${kind}, 1 in flight`;
    bytesPerOp.set(seq, CHUNK);
    bench.add(seq, async () => {
      const k = i++ % POOL;
      await sealChunk(key, 1, k, fp[k], chunks[k]);
    });
    for (const inFlight of [8, 64]) {
      const name = `seal ${kind}, ${inFlight} in flight`;
      bytesPerOp.set(name, CHUNK * inFlight);
      bench.add(name, async () => {
        const base = i;
        i += inFlight;
        await Promise.all(
          Array.from({ length: inFlight }, (_, j) => {
            const k = (base + j) % POOL;
            return sealChunk(key, 1, k, fp[k], chunks[k]);
          }),
        );
      });
    }
    const frames = await Promise.all(chunks.map((c, k) => sealChunk(key, 1, k, fp[k], c)));
    const stored = frames.reduce((n, f) => n + f.length, 0) / (POOL * CHUNK);
    const open = `open ${kind} (stored ${(stored * 100).toFixed(0)}%)`;
    bytesPerOp.set(open, CHUNK);
    bench.add(open, () => {
      const k = i++ % POOL;
      openChunk(key, 1, fp[k], frames[k]);
    });

    // A full container read back with readMany (restore path: coalesced positioned reads).
    const id = kind === 'random' ? 2 : 1;
    const writer = await ContainerWriter.create(dir, id, key);
    const refs: FooterEntry[] = [];
    for (let n = 0; writer.size < 8 * 1024 * 1024; n++) {
      const k = n % POOL;
      const frame = await sealChunk(key, id, writer.nextSeq(), fp[k], chunks[k]);
      refs.push({ ...writer.append(fp[k], frame, CHUNK), fingerprint: fp[k] });
    }
    await writer.seal();
    const reader = await ContainerReader.open(dir, id, key);
    readers.push(reader);
    const many = `readMany ${kind}, whole 8 MiB container`;
    bytesPerOp.set(many, refs.length * CHUNK);
    bench.add(many, async () => {
      await reader.readMany(refs.map((e) => ({ ref: e, fingerprint: e.fingerprint })));
    });
  }

  await bench.run();
  const rows = bench.tasks.map((t) => {
    const r = t.result as { period?: number; latency?: { mean: number } } | undefined;
    const ms = r?.period ?? r?.latency?.mean ?? NaN;
    return { task: t.name, 'MB/s': Math.round(bytesPerOp.get(t.name)! / (ms / 1000) / 1e6), 'us/op': +(ms * 1000).toFixed(1) };
  });
  if (json) console.log(JSON.stringify(rows));
  else console.table(rows);
  await Promise.all(readers.map((r) => r.close()));
  await rm(dir, { recursive: true, force: true });
}

await main();
