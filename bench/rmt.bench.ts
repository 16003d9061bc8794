/**
 * GNU tar through rmt into vtl against `vtl bench dedup` on the same tar file.
 *
 * Run: npx tsx bench/rmt.bench.ts [TARFILE]
 *   TARFILE defaults to a sample tar of /usr (src/cli/sample.ts), VTL_BENCH_RMT_BYTES bytes
 *   (default 256 MiB), written to a temporary directory. VTL_BENCH_RMT_RUNS (default 2) runs of
 *   each side, alternating; the best of each is reported. VTL_BENCH_RMT_BLOCKING (default 128)
 *   sets tar's blocking factor.
 *
 * rmt side: an RmtServer in this process over a fresh data store, a library with one drive;
 * `tar -b 128 -cf localhost:/bench/st0 FILE` through an rsh wrapper that runs `vtl rmt`
 * (dist/cli/main.js when its rmt bridge is built from the current source, else src/cli/main.ts
 * through tsx), then
 * `tar -b 128 -xOf localhost:/bench/st0 > /dev/null`. MB/s = the tar file's bytes / wall time.
 * dedup side: `vtl bench dedup --json FILE` (ingest and restore of the same bytes, no network).
 *
 * Noise: the machine has 2 cores that other processes may share. tar, the bridge and the
 * server are three processes on those 2 cores; `uptime` is printed with the results. MB = 10^6.
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { generateSample } from '../src/cli/sample.js';
import { Libraries } from '../src/library/index.js';
import { RmtServer } from '../src/protocols/rmt/index.js';
import { initDataStore, openDataStore } from '../src/stream/store.js';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const RUNS = Number(process.env.VTL_BENCH_RMT_RUNS ?? 2);
/** tar's blocking factor: records of 512 x N bytes (the target is stated for -b 128). */
const BLOCKING = Number(process.env.VTL_BENCH_RMT_BLOCKING ?? 128);

/** The built CLI when dist holds an rmt bridge at least as new as the source, else tsx. */
function vtlCommand(): string[] {
  const dist = join(REPO, 'dist', 'cli', 'main.js');
  const built = join(REPO, 'dist', 'protocols', 'rmt', 'bridge.js');
  const fresh = existsSync(built) && existsSync(dist) && statSync(built).mtimeMs >= statSync(join(REPO, 'src', 'protocols', 'rmt', 'bridge.ts')).mtimeMs;
  if (fresh) return [process.execPath, dist];
  return [process.execPath, '--import', 'tsx', join(REPO, 'src', 'cli', 'main.ts')];
}

function sh(command: string): Promise<void> {
  return new Promise((res, rej) => {
    const child = spawn('sh', ['-c', command], { stdio: ['ignore', 'ignore', 'inherit'] });
    child.on('error', rej);
    child.on('close', (code) => (code === 0 ? res() : rej(new Error(`${command} exited ${code}`))));
  });
}

const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

async function rmtRun(file: string, work: string): Promise<{ write: number; read: number }> {
  const dir = await mkdtemp(join(work, 'rmt-'));
  try {
    await initDataStore(join(dir, 'data'));
    const store = await openDataStore(join(dir, 'data'));
    const libs = new Libraries({ db: store.db, streams: store.streams });
    await libs.createLibrary({ name: 'bench', drives: 1, slots: 2, mailslots: 0 });
    await libs.createCartridges({ library: 'bench', barcodes: ['BN0001L7'] });
    await libs.load('bench', 0, 'BN0001L7');
    const server = new RmtServer({ libraries: libs, port: 0 });
    const { port } = await server.listen();
    const rsh = join(dir, 'rsh');
    await writeFile(rsh, `#!/bin/sh\ncd ${quote(REPO)} && exec ${vtlCommand().map(quote).join(' ')} rmt --server 127.0.0.1:${port}\n`);
    await chmod(rsh, 0o755);
    const tar = `tar --rsh-command=${quote(rsh)} -b ${BLOCKING}`;
    const bytes = statSync(file).size;
    try {
      let t = performance.now();
      await sh(`${tar} -cf localhost:/bench/st0 -C ${quote(dirname(file))} ${quote(basename(file))}`);
      const write = bytes / 1e6 / ((performance.now() - t) / 1000);
      t = performance.now();
      await sh(`${tar} -xOf localhost:/bench/st0 > /dev/null`);
      const read = bytes / 1e6 / ((performance.now() - t) / 1000);
      return { write, read };
    } finally {
      await server.close();
      await libs.close();
      await store.close();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

function dedupRun(file: string, work: string): { ingest: number; restore: number } {
  const [cmd, ...args] = vtlCommand();
  const out = execFileSync(cmd, [...args, 'bench', 'dedup', '--json', '--work', work, file], { cwd: REPO, encoding: 'utf8' });
  const g = JSON.parse(out).generations[0];
  return { ingest: g.ingestMBps, restore: g.restoreMBps };
}

const work = await mkdtemp(join(tmpdir(), 'vtl-bench-rmt-'));
try {
  let file = process.argv[2];
  if (!file) {
    const maxBytes = Number(process.env.VTL_BENCH_RMT_BYTES ?? 256 * 2 ** 20);
    console.error(`generating a ${(maxBytes / 2 ** 20).toFixed(0)} MiB sample tar of /usr ...`);
    [file] = await generateSample({ root: '/usr', generations: 1, outDir: work, maxBytes });
  }
  const size = statSync(file).size;
  const best = { write: 0, read: 0, ingest: 0, restore: 0 };
  for (let i = 0; i < RUNS; i++) {
    const d = dedupRun(file, work);
    const r = await rmtRun(file, work);
    console.error(`run ${i + 1}: rmt write ${r.write.toFixed(1)} read ${r.read.toFixed(1)} MB/s; dedup ingest ${d.ingest.toFixed(1)} restore ${d.restore.toFixed(1)} MB/s`);
    best.write = Math.max(best.write, r.write);
    best.read = Math.max(best.read, r.read);
    best.ingest = Math.max(best.ingest, d.ingest);
    best.restore = Math.max(best.restore, d.restore);
  }
  const pct = (a: number, b: number) => `${((100 * a) / b).toFixed(0)}%`;
  console.log(`tar file: ${file} (${(size / 1e6).toFixed(1)} MB), best of ${RUNS}; vtl: ${vtlCommand().slice(1).join(' ')}`);
  console.log(`ingest:  tar -b ${BLOCKING} through rmt ${best.write.toFixed(1)} MB/s, vtl bench dedup ${best.ingest.toFixed(1)} MB/s (${pct(best.write, best.ingest)}; target >= 80%)`);
  console.log(`restore: tar -b ${BLOCKING} through rmt ${best.read.toFixed(1)} MB/s, vtl bench dedup ${best.restore.toFixed(1)} MB/s (${pct(best.read, best.restore)}; target >= 80%)`);
  console.log(`load: ${execFileSync('uptime', { encoding: 'utf8' }).trim()} (2 shared cores: the figures are noisy)`);
} finally {
  await rm(work, { recursive: true, force: true });
}
