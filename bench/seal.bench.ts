/**
 * Seal/open throughput of container frames for 8 KiB chunks, one core (DESIGN section 6 budget:
 * lz4 0.7 GB/s, AES-256-GCM 1.3 GB/s per core), for each frame codec that loads here: the C
 * one (a frame per call, and a batch of 64 per call as the codec workers use it) and the
 * TypeScript one.  Run: npx tsx bench/seal.bench.ts [--json]
 */
import { createCipheriv, createHash, randomBytes } from 'node:crypto';
import { compress } from 'lz4-napi';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Bench } from 'tinybench';
import { ContainerReader, ContainerWriter, FRAME_OVERHEAD, frameCodecs, sealChunk, type FooterEntry } from '../src/dedup/container.js';
import { loadFramesAddon, type FramesAddon } from '../src/dedup/frames-native.js';

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

  const here = { file: 'bench', offset: 0 };
  const loaded = loadFramesAddon();
  for (const [kind, chunks] of Object.entries(kinds)) {
    const fp = fps(chunks);
    let i = 0;
    for (const codec of frameCodecs()) {
      const seal = (k: number) => codec.seal(key, 1, k, fp[k], chunks[k]);
      const one = `${codec.name}: seal ${kind}, 1 in flight`;
      bytesPerOp.set(one, CHUNK);
      bench.add(one, async () => {
        await seal(i++ % POOL);
      });
      if (codec.name === 'typescript') {
        // lz4-napi's async compress needs many chunks in flight to use its threads.
        const many = `${codec.name}: seal ${kind}, 64 in flight`;
        bytesPerOp.set(many, CHUNK * 64);
        bench.add(many, async () => {
          const base = i;
          i += 64;
          await Promise.all(Array.from({ length: 64 }, (_, j) => seal((base + j) % POOL)));
        });
      }
      const frames = await Promise.all(chunks.map((_, k) => seal(k)));
      const stored = frames.reduce((n, f) => n + f.length, 0) / (POOL * CHUNK);
      const open = `${codec.name}: open ${kind} (stored ${(stored * 100).toFixed(0)}%)`;
      bytesPerOp.set(open, CHUNK);
      bench.add(open, () => {
        const k = i++ % POOL;
        codec.open(key, 1, fp[k], frames[k], here);
      });
    }
    if ('addon' in loaded) addBatches(bench, bytesPerOp, loaded.addon, kind, chunks, fp);

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

/** The C codec as the codec workers call it: 64 frames per call, into and from one buffer. */
function addBatches(bench: Bench, bytesPerOp: Map<string, number>, addon: FramesAddon, kind: string, chunks: Buffer[], fp: Buffer[]): void {
  const n = 64;
  const data = Buffer.concat(chunks.slice(0, n));
  const starts = Uint32Array.from({ length: n }, (_, j) => j * CHUNK);
  const lengths = new Uint32Array(n).fill(CHUNK);
  const fingerprints = Buffer.concat(fp.slice(0, n));
  const out = new Uint8Array(n * (CHUNK + FRAME_OVERHEAD));
  const bounds = new Uint32Array(n + 1);
  const containers = new Uint32Array(n).fill(1);
  const seqs = Uint32Array.from({ length: n }, (_, j) => j);
  const seal = () => addon.sealFrames(key, containers, seqs, fingerprints, data, starts, lengths, out, bounds);
  const name = `native: seal ${kind}, 64 per call`;
  bytesPerOp.set(name, n * CHUNK);
  bench.add(name, seal);
  seal();
  const offsets = bounds.slice(0, n);
  const frameLengths = Uint32Array.from({ length: n }, (_, j) => bounds[j + 1] - bounds[j]);
  const raw = new Uint8Array(n * CHUNK);
  const open = `native: open ${kind}, 64 per call`;
  bytesPerOp.set(open, n * CHUNK);
  bench.add(open, () => {
    const bad = addon.openFrames(key, 1, fingerprints, out, offsets, frameLengths, lengths, raw, starts);
    if (bad) throw new Error(bad.reason);
  });
}

await main();
