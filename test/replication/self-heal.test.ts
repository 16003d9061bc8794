/**
 * Scrub heals from the replica: random bytes flipped in containers; those containers that a
 * replication target holds come back whole from it, the others are reported with the
 * cartridges and tape files that depend on them. A real server, a `file://` target.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { containerPath } from '../../src/dedup/container.js';
import { RECIPE_ENTRY } from '../../src/stream/recipes.js';
import { flip, randomBytes } from '../helpers/data.js';
import { call, getFile, putFile, startTestServer, type TestServer } from '../api/helpers.js';

const MiB = 1 << 20;
let a: TestServer;
let tierDir: string;

beforeAll(async () => {
  tierDir = await mkdtemp(join(tmpdir(), 'vtl-heal-tier-'));
  a = await startTestServer({ demo: true });
});
afterAll(async () => {
  await a?.stop();
  await rm(tierDir, { recursive: true, force: true });
});

async function ok(method: string, path: string, body?: unknown) {
  const r = await call(a, method, path, body);
  if (r.status >= 300) throw new Error(`${method} ${path}: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body;
}

/** Frames (container, offset, length) of a cartridge's chunks. */
async function frames(barcode: string): Promise<Array<{ container: number; offset: number; length: number }>> {
  const sid = (await a.server.libraries.tapes.info(barcode)).streamId!;
  const out = [];
  for await (const [, page] of a.server.store.streams.pageRange(sid, 0)) {
    for (let e = 0; e < page.length; e += RECIPE_ENTRY) out.push({ container: page.readUInt32BE(e + 16), offset: page.readUInt32BE(e + 20), length: page.readUInt32BE(e + 24) });
  }
  return out;
}

async function scrub() {
  const job = await ok('POST', '/api/v1/scrub', { maxMBps: 0 });
  let j = job;
  while (j.state === 'running') j = await ok('GET', `/api/v1/jobs/${job.id}`);
  return j;
}

it('heals every damaged chunk that has a replica and reports the rest', async () => {
  await ok('POST', '/api/v1/replication/targets', { name: 'vault', url: `file://${tierDir}` });
  // VT0001L7: written, then replicated (its containers are sealed and shipped).
  await ok('POST', '/api/v1/libraries/lib1/drives/0/load', { barcode: 'VT0001L7' });
  for (let i = 0; i < 2; i++) expect((await putFile(a, 'lib1', 0, randomBytes(10 * MiB, 10 + i))).status).toBe(200);
  const job = await ok('POST', '/api/v1/cartridges/VT0001L7/replicate', { target: 'vault', wait: true });
  expect(job.state).toBe('done');
  // VT0002L7: written after, never replicated.
  await ok('POST', '/api/v1/libraries/lib1/drives/1/load', { barcode: 'VT0002L7' });
  expect((await putFile(a, 'lib1', 1, randomBytes(6 * MiB, 20))).status).toBe(200);
  await ok('POST', '/api/v1/libraries/lib1/drives/1/unload', {}); // its open container gets sealed at the next replication or close only: seal it now
  await a.server.store.chunks.sealOpenContainer();

  const shipped = new Set((await frames('VT0001L7')).map((f) => f.container));
  const dir = join(a.dir, 'containers');
  const pick = <T>(xs: T[], n: number) => [...xs].sort(() => Math.random() - 0.5).slice(0, n);
  const replicated = pick(await frames('VT0001L7'), 8);
  const lonely = pick((await frames('VT0002L7')).filter((f) => !shipped.has(f.container)), 4);
  expect(lonely.length).toBe(4);
  const key = (f: { container: number; offset: number }) => `${f.container}:${f.offset}`;
  const damagedReplicated = new Set(replicated.map(key));
  for (const f of [...replicated, ...lonely]) await flip(containerPath(dir, f.container, true), f.offset + Math.floor(Math.random() * f.length));

  const first = await scrub();
  expect(first.state).toBe('succeeded');
  const r = first.result;
  // Every damaged chunk is found; those with a replica are healed, the others reported.
  expect(r.damagedChunks).toBe(damagedReplicated.size + new Set(lonely.map(key)).size);
  expect(r.repairedChunks).toBe(damagedReplicated.size);
  expect(r.damaged.map((d: { container: number; offset: number }) => key(d)).sort()).toEqual([...new Set(lonely.map(key))].sort());
  expect(r.affectedCartridges.map((c: { barcode: string }) => c.barcode)).toEqual(['VT0002L7']);

  // A second scrub finds only what had no replica; the healed cartridge verifies.
  const second = (await scrub()).result;
  expect(second.repairedChunks).toBe(0);
  expect(second.damagedChunks).toBe(new Set(lonely.map(key)).size);
  await ok('POST', '/api/v1/libraries/lib1/drives/0/unload', {});
  const v = await ok('POST', '/api/v1/cartridges/VT0001L7/verify', {});
  let vj = v;
  while (vj.state === 'running') vj = await ok('GET', `/api/v1/jobs/${v.id}`);
  expect(vj.state, JSON.stringify(vj.result)).toBe('succeeded');
}, 120_000);

it('a tape read before the damage reads back whole after the repair: no reader keeps the replaced file', async () => {
  // written, replicated, and read once: the codec workers now hold its containers open
  await ok('POST', '/api/v1/libraries/lib1/drives/0/load', { barcode: 'VT0003L7' });
  const data = randomBytes(12 * MiB, 30);
  expect((await putFile(a, 'lib1', 0, data)).status).toBe(200);
  expect((await ok('POST', '/api/v1/cartridges/VT0003L7/replicate', { target: 'vault', wait: true })).state).toBe('done');
  const readBack = async (): Promise<Buffer> => {
    await ok('POST', '/api/v1/libraries/lib1/drives/0/rewind');
    const got = await getFile(a, 'lib1', 0);
    expect(got.status).toBe(200);
    return got.data;
  };
  expect((await readBack()).equals(data)).toBe(true);

  // damage in place, then the scrub puts whole copies in the files' place
  const dir = join(a.dir, 'containers');
  const hit = (await frames('VT0003L7')).filter((_, i) => i % 97 === 5);
  for (const f of hit) await flip(containerPath(dir, f.container, true), f.offset + (f.length >> 1));
  const healed = await scrub();
  expect(healed.result.repairedChunks).toBeGreaterThanOrEqual(hit.length);
  expect(healed.result.affectedCartridges.map((c: { barcode: string }) => c.barcode)).not.toContain('VT0003L7');
  expect((await readBack()).equals(data)).toBe(true);
  await ok('POST', '/api/v1/libraries/lib1/drives/0/unload', {});
}, 60_000);
