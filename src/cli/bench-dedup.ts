/**
 * `vtl bench dedup`: ingests each file as one backup generation into a fresh temporary store,
 * restores it, and reports sizes and speeds. The SHA-256 check of each restore is a separate,
 * untimed pass, so the rates measure ingest and restore alone (as the peers' are measured).
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdtemp, open, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import cliProgress from 'cli-progress';
import { DEFAULT_CHUNK_PARAMS, type ChunkParams } from '../dedup/chunker.js';
import { frameCodecs, type FrameCodec } from '../dedup/container.js';
import { initDataStore, openDataStore, type DataStore } from '../stream/store.js';

const IO_BYTES = 1024 * 1024;

export interface GenerationResult {
  file: string;
  logicalBytes: number;
  storedBytes: number;
  ingestMBps: number;
  restoreMBps: number;
  verified: boolean;
}

export interface BenchResult {
  generations: GenerationResult[];
  totals: { logicalBytes: number; storedBytes: number; dedupRatio: number; compressionRatio: number; reductionPct: number };
  chunking: { min: number; avg: number; max: number; native: boolean };
  /** The frame codec that sealed and opened the chunks (native: liblz4 + OpenSSL in C). */
  frameCodec: FrameCodec['name'];
  peakRssBytes: number;
}

export interface BenchOptions {
  chunking?: ChunkParams;
  native?: boolean;
  workDir?: string;
  progress?: boolean;
}

export async function benchDedup(files: string[], opts: BenchOptions = {}): Promise<BenchResult> {
  const total = (await Promise.all(files.map((f) => stat(f).then((s) => s.size)))).reduce((a, b) => a + b, 0);
  const dir = await mkdtemp(join(opts.workDir ?? tmpdir(), 'vtl-bench-'));
  const bar = opts.progress ? new cliProgress.SingleBar({ stream: process.stderr, format: 'bench dedup [{bar}] {percentage}% {phase} {file}' }, cliProgress.Presets.shades_classic) : undefined;
  bar?.start(total * 2, 0, { phase: 'ingest', file: '' });
  let done = 0;
  let peakRss = process.memoryUsage().rss;
  let ticks = 0;
  const tick = (n: number, phase: string, file: string) => {
    done += n;
    if (ticks++ % 16 === 0) {
      peakRss = Math.max(peakRss, process.memoryUsage.rss());
      bar?.update(done, { phase, file: basename(file) });
    }
  };
  let store: DataStore | undefined;
  try {
    await initDataStore(dir, opts.chunking ?? DEFAULT_CHUNK_PARAMS);
    store = await openDataStore(dir, { native: opts.native });
    const generations: GenerationResult[] = [];
    let uniqueBytes = 0;
    for (const file of files) {
      const before = store.chunks.getStats();
      const ingest = await ingestFile(store, file, (n) => tick(n, 'ingest', file));
      const after = store.chunks.getStats();
      const restore = await restoreStream(store, ingest.id, (n) => tick(n, 'restore', file));
      uniqueBytes += after.uniqueBytes - before.uniqueBytes;
      generations.push({
        file,
        logicalBytes: ingest.bytes,
        storedBytes: after.storedBytes - before.storedBytes,
        ingestMBps: mbps(ingest.bytes, ingest.seconds),
        restoreMBps: mbps(ingest.bytes, restore.seconds),
        verified: restore.bytes === ingest.bytes && (await verify(store, ingest.id, file)),
      });
    }
    bar?.stop();
    const logicalBytes = generations.reduce((a, g) => a + g.logicalBytes, 0);
    const storedBytes = generations.reduce((a, g) => a + g.storedBytes, 0);
    const params = store.chunks.chunker.params;
    return {
      generations,
      totals: {
        logicalBytes,
        storedBytes,
        dedupRatio: ratio(logicalBytes, uniqueBytes),
        compressionRatio: ratio(uniqueBytes, storedBytes),
        reductionPct: logicalBytes > 0 ? round(100 * (1 - storedBytes / logicalBytes), 2) : 0,
      },
      chunking: { min: params.min, avg: params.avg, max: params.max, native: store.chunks.chunker.native },
      frameCodec: frameCodecs()[0].name,
      peakRssBytes: peakRss,
    };
  } finally {
    bar?.stop();
    await store?.close();
    await rm(dir, { recursive: true, force: true });
  }
}

/** Timed: reads the file and writes it into a new stream (nothing else on the clock). */
async function ingestFile(store: DataStore, file: string, progress: (n: number) => void) {
  let fh;
  try {
    fh = await open(file, 'r');
  } catch (err) {
    throw new Error(`cannot read ${file}: ${(err as Error).message}`, { cause: err });
  }
  const id = await store.streams.create();
  const writer = await store.streams.openWriter(id);
  let bytes = 0;
  const t0 = process.hrtime.bigint();
  // The next read is in flight while the writer takes this one, so a file that is not in the
  // page cache costs disk waits only where the disk is slower than the ingest.
  const bufs = [Buffer.allocUnsafe(IO_BYTES), Buffer.allocUnsafe(IO_BYTES)];
  let next = fh.read(bufs[0], 0, IO_BYTES, 0);
  try {
    for (let turn = 1; ; turn ^= 1) {
      const { bytesRead, buffer } = await next;
      if (bytesRead === 0) break;
      next = fh.read(bufs[turn], 0, IO_BYTES, bytes + bytesRead);
      await writer.write(buffer.subarray(0, bytesRead));
      bytes += bytesRead;
      progress(bytesRead);
    }
    await writer.close();
  } catch (err) {
    await next.catch(() => undefined);
    await writer.abort();
    throw new Error(`ingest of ${file} failed: ${(err as Error).message}`, { cause: err });
  } finally {
    await fh.close();
  }
  return { id, bytes, seconds: elapsed(t0) };
}

/** Timed: reads the whole stream back and drops it, as `borg extract --stdout > /dev/null` does. */
async function restoreStream(store: DataStore, id: string, progress: (n: number) => void) {
  const reader = await store.streams.openReader(id, 0);
  const buf = Buffer.allocUnsafe(IO_BYTES);
  let bytes = 0;
  const t0 = process.hrtime.bigint();
  for (let n = await reader.readInto(buf); n > 0; n = await reader.readInto(buf)) {
    bytes += n;
    progress(n);
  }
  return { bytes, seconds: elapsed(t0) };
}

/** Untimed: the restored stream's SHA-256 equals the file's. */
async function verify(store: DataStore, id: string, file: string): Promise<boolean> {
  const fileHash = createHash('sha256');
  for await (const part of createReadStream(file, { highWaterMark: IO_BYTES })) fileHash.update(part as Buffer);
  const streamHash = createHash('sha256');
  const reader = await store.streams.openReader(id, 0);
  for (let buf = await reader.read(IO_BYTES); buf.length > 0; buf = await reader.read(IO_BYTES)) streamHash.update(buf);
  return fileHash.digest('hex') === streamHash.digest('hex');
}

function elapsed(t0: bigint): number {
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

function mbps(bytes: number, seconds: number): number {
  return round(bytes / 1e6 / Math.max(seconds, 1e-9), 1);
}

function ratio(a: number, b: number): number {
  return b > 0 ? round(a / b, 3) : 0;
}

function round(x: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

export function formatBench(r: BenchResult): string {
  const mb = (n: number) => (n / 1e6).toFixed(1);
  const lines = [
    `chunking: min ${r.chunking.min} avg ${r.chunking.avg} max ${r.chunking.max} (${r.chunking.native ? 'native' : 'TypeScript'}); frames: ${r.frameCodec === 'native' ? 'native (liblz4 + OpenSSL)' : 'TypeScript (lz4-napi + node:crypto)'}`,
    'generation                     logical MB   new stored MB   ingest MB/s   restore MB/s   verified',
  ];
  for (const g of r.generations) {
    lines.push(
      `${basename(g.file).padEnd(30)} ${mb(g.logicalBytes).padStart(10)}   ${mb(g.storedBytes).padStart(13)}   ${g.ingestMBps.toFixed(1).padStart(11)}   ${g.restoreMBps.toFixed(1).padStart(12)}   ${g.verified ? 'yes' : 'NO'}`,
    );
  }
  const t = r.totals;
  lines.push(
    `total: ${mb(t.logicalBytes)} MB logical, ${mb(t.storedBytes)} MB stored; dedup ${t.dedupRatio}x, compression ${t.compressionRatio}x, reduction ${t.reductionPct}%`,
    `peak RSS: ${(r.peakRssBytes / 2 ** 20).toFixed(0)} MiB`,
  );
  return lines.join('\n');
}
