/**
 * Replication end to end: region A (a vtl server) writes generations of a backup onto one
 * cartridge through the HTTP tape stream and replicates each to s3rver on loopback; region B
 * (another vtl server) attaches the target with the recovery key and restores the cartridge,
 * cold (every container fetched from s3rver) and warm (from its cache). Region A's own restore
 * of the same tape files through the same HTTP route is measured in the same run, as the yardstick.
 *
 * Run: npx tsx bench/replication.bench.ts
 *   VTL_BENCH_REPL_BYTES (default 256 MiB): size of each generation: three generations of a
 *   sample tar of /usr, as `vtl bench dedup --sample system --generations 3` makes them (files
 *   changed, added and deleted between them). MB = 10^6. The machine has 2 cores; `uptime` is
 *   printed.
 */
import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateSample } from '../src/cli/sample.js';
import { startServer, type VtlServer } from '../src/server.js';
import { startS3rver } from '../test/tier/servers.js';

const MiB = 1024 * 1024;
const BYTES = Number(process.env.VTL_BENCH_REPL_BYTES ?? 256 * MiB);
const PASS = 'bench passphrase';

async function api(s: VtlServer, token: string, method: string, path: string, body?: unknown): Promise<any> { // eslint-disable-line @typescript-eslint/no-explicit-any
  const res = await fetch(s.url + path, { method, headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) }, body: body ? JSON.stringify(body) : undefined });
  const text = await res.text();
  if (res.status >= 300) throw new Error(`${method} ${path}: ${res.status} ${text}`);
  return text ? JSON.parse(text) : undefined;
}

async function putFile(s: VtlServer, token: string, lib: string, data: Buffer): Promise<void> {
  const res = await fetch(`${s.url}/api/v1/libraries/${lib}/drives/0/file?blockSize=262144`, { method: 'PUT', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/octet-stream' }, body: data });
  if (res.status !== 200) throw new Error(`PUT file: ${res.status} ${await res.text()}`);
}

/** Reads every tape file from BOT; returns bytes and seconds. */
async function readTape(s: VtlServer, token: string, lib: string, files: number): Promise<{ bytes: number; seconds: number }> {
  await api(s, token, 'POST', `/api/v1/libraries/${lib}/drives/0/rewind`, {});
  const t0 = performance.now();
  let bytes = 0;
  for (let i = 0; i < files; i++) {
    const res = await fetch(`${s.url}/api/v1/libraries/${lib}/drives/0/file`, { headers: { authorization: `Bearer ${token}` } });
    for await (const chunk of res.body!) bytes += (chunk as Uint8Array).length;
  }
  return { bytes, seconds: (performance.now() - t0) / 1000 };
}

async function main(): Promise<void> {
  process.env.AWS_ACCESS_KEY_ID = 'S3RVER';
  process.env.AWS_SECRET_ACCESS_KEY = 'S3RVER';
  const work = await mkdtemp(join(tmpdir(), 'vtl-bench-repl-'));
  const s3 = await startS3rver('bench');
  let a: VtlServer | undefined;
  let b: VtlServer | undefined;
  try {
    const files = await generateSample({ root: '/usr', generations: 3, outDir: work, maxBytes: BYTES });
    const gens = await Promise.all(files.map((f) => readFile(f)));
    a = await startServer({ data: join(work, 'a'), port: 0, rmtPort: 0, demo: true });
    b = await startServer({ data: join(work, 'b'), port: 0, rmtPort: 0, demo: false });
    const ta = (await readFile(a.adminTokenFile, 'utf8')).trim();
    const tb = (await readFile(b.adminTokenFile, 'utf8')).trim();
    const url = `s3://bench/site-a?endpoint=${s3.endpoint}&region=us-east-1&pathStyle=true`;
    await api(a, ta, 'POST', '/api/v1/replication/targets', { name: 'east', url });
    await api(a, ta, 'POST', '/api/v1/libraries/lib1/drives/0/load', { barcode: 'VT0001L7' });
    console.log(`uptime: ${execFileSync('uptime').toString().trim()}`);
    for (const [i, g] of gens.entries()) {
      await putFile(a, ta, 'lib1', g);
      const job = await api(a, ta, 'POST', '/api/v1/cartridges/VT0001L7/replicate', { target: 'east', wait: true });
      const r = job.result;
      console.log(`generation ${i + 1}: ${(g.length / 1e6).toFixed(1)} MB logical, ${(r.bytesShipped / 1e6).toFixed(2)} MB shipped (${((100 * r.bytesShipped) / g.length).toFixed(1)}%), ${r.containersShipped} containers, ${r.seconds.toFixed(2)} s = ${(r.bytesShipped / 1e6 / r.seconds).toFixed(1)} MB/s shipped`);
    }
    const total = gens.reduce((n, g) => n + g.length, 0);
    const local = await readTape(a, ta, 'lib1', 3);
    const { keyFile } = await api(a, ta, 'POST', '/api/v1/dr/export-key', { passphrase: PASS });
    await api(b, tb, 'POST', '/api/v1/dr/sources', { url, keyFile, passphrase: PASS });
    await api(b, tb, 'POST', '/api/v1/libraries', { name: 'dr', drives: 1, slots: 4, mailslots: 1 });
    await api(b, tb, 'POST', '/api/v1/libraries/dr/insert', { barcode: 'VT0001L7' });
    await api(b, tb, 'POST', '/api/v1/libraries/dr/import', { barcode: 'VT0001L7' });
    await api(b, tb, 'POST', '/api/v1/libraries/dr/drives/0/load', { barcode: 'VT0001L7' });
    const cold = await readTape(b, tb, 'dr', 3);
    const warm = await readTape(b, tb, 'dr', 3);
    if (cold.bytes !== total || warm.bytes !== total || local.bytes !== total) throw new Error('a restore read the wrong number of bytes');
    const mbs = (x: { bytes: number; seconds: number }) => x.bytes / 1e6 / x.seconds;
    console.log(`restore of ${(total / 1e6).toFixed(1)} MB through GET .../drives/0/file: region A local ${mbs(local).toFixed(1)} MB/s; region B cold ${mbs(cold).toFixed(1)} MB/s (${((100 * mbs(cold)) / mbs(local)).toFixed(0)}% of local), warm ${mbs(warm).toFixed(1)} MB/s (${((100 * mbs(warm)) / mbs(local)).toFixed(0)}%)`);
    console.log(`uptime: ${execFileSync('uptime').toString().trim()}`);
  } finally {
    await a?.close();
    await b?.close();
    await s3.stop();
    await rm(work, { recursive: true, force: true });
  }
}

await main();
