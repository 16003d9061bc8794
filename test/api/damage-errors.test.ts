/**
 * Damaged data reaches the user as what it is: a tape read over HTTP, an image export, and a
 * promote of a replica whose stored data is damaged answer DATA_DAMAGED with a message that names
 * the cartridge (and tape file) and points to `vtl scrub`, never "internal error". Damage met
 * after the first byte still cuts the transfer (never silently wrong data).
 * A real server, containers damaged on disk with flip(); a `file://` replication target.
 */
import { readdir, mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { containerPath } from '../../src/dedup/container.js';
import { RECIPE_ENTRY } from '../../src/stream/recipes.js';
import { flip, randomBytes } from '../helpers/data.js';
import { runCli } from '../cli/run-cli.js';
import { call, ok, putFile, startTestServer, type TestServer } from './helpers.js';

const MiB = 1 << 20;
let a: TestServer;
let b: TestServer;
let work: string;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'vtl-damage-'));
  a = await startTestServer({ demo: true });
  b = await startTestServer();
}, 60_000);
afterAll(async () => {
  await a?.stop();
  await b?.stop();
  await rm(work, { recursive: true, force: true });
});

/** Frames (container, offset, length) of a cartridge's chunks, in stream order. */
async function frames(barcode: string): Promise<Array<{ container: number; offset: number; length: number }>> {
  const sid = (await a.server.libraries.tapes.info(barcode)).streamId!;
  const out = [];
  for await (const [, page] of a.server.store.streams.pageRange(sid, 0)) {
    for (let e = 0; e < page.length; e += RECIPE_ENTRY) out.push({ container: page.readUInt32BE(e + 16), offset: page.readUInt32BE(e + 20), length: page.readUInt32BE(e + 24) });
  }
  return out;
}

/** Writes `data` as tape file 0 of `barcode` (drive 0 of lib1), seals it and unloads. */
async function written(barcode: string, data: Buffer): Promise<void> {
  await call(a, 'POST', '/api/v1/libraries/lib1/drives/0/unload', {}); // whatever an earlier test left there
  await ok(a, 'POST', '/api/v1/libraries/lib1/drives/0/load', { barcode });
  expect((await putFile(a, 'lib1', 0, data)).status).toBe(200);
  await ok(a, 'POST', '/api/v1/libraries/lib1/drives/0/unload', {});
  await a.server.store.chunks.sealOpenContainer();
}

async function damage(f: { container: number; offset: number; length: number }): Promise<void> {
  await flip(containerPath(join(a.dir, 'containers'), f.container, true), f.offset + (f.length >> 1));
}

/** A GET whose body is read to the end: the status, the body, or how the transfer broke off. */
async function get(t: TestServer, path: string): Promise<{ status: number; body?: any; broke?: string }> {
  const res = await fetch(t.url + path, { headers: { authorization: `Bearer ${t.admin}` } });
  try {
    const buf = Buffer.from(await res.arrayBuffer());
    const text = buf.toString('utf8');
    let body: unknown = buf;
    if ((res.headers.get('content-type') ?? '').includes('json')) body = JSON.parse(text);
    return { status: res.status, body };
  } catch (err) {
    return { status: res.status, broke: (err as Error).message };
  }
}

function expectDamaged(r: { status: number; body?: any }, ...names: string[]): void {
  expect(r.status, JSON.stringify(r.body)).toBe(500);
  expect(r.body.error).toBe('DATA_DAMAGED');
  expect(r.body.message).not.toMatch(/internal/i);
  expect(r.body.message).toMatch(/damaged/);
  expect(r.body.message).toMatch(/vtl scrub/);
  for (const n of names) expect(r.body.message).toContain(n);
}

it('GET .../file: damage before the first byte answers DATA_DAMAGED naming the cartridge and tape file', async () => {
  await written('VT0001L7', randomBytes(3 * MiB, 1));
  await damage((await frames('VT0001L7'))[0]);
  await ok(a, 'POST', '/api/v1/libraries/lib1/drives/0/load', { barcode: 'VT0001L7' });
  const r = await get(a, '/api/v1/libraries/lib1/drives/0/file');
  expectDamaged(r, 'VT0001L7', 'tape file 0');
  await ok(a, 'POST', '/api/v1/libraries/lib1/drives/0/unload', {});
}, 60_000);

it('GET .../file: damage met after streaming started still cuts the transfer', async () => {
  await written('VT0002L7', randomBytes(12 * MiB, 2));
  const f = await frames('VT0002L7');
  await damage(f[f.length - 2]);
  await ok(a, 'POST', '/api/v1/libraries/lib1/drives/0/load', { barcode: 'VT0002L7' });
  const r = await get(a, '/api/v1/libraries/lib1/drives/0/file');
  expect(r.status).toBe(200);
  expect(r.broke, 'the transfer must break off').toBeDefined();
  await ok(a, 'POST', '/api/v1/libraries/lib1/drives/0/unload', {}).catch(() => undefined);
}, 60_000);

it('GET .../image: damage before the first byte answers DATA_DAMAGED (JSON, not a payload type error)', async () => {
  await written('VT0003L7', randomBytes(2 * MiB, 3));
  await damage((await frames('VT0003L7'))[0]);
  const r = await get(a, '/api/v1/cartridges/VT0003L7/image?format=aws');
  expectDamaged(r, 'VT0003L7');
  // the cartridge was let go: a second try answers the same, not IN_USE
  expectDamaged(await get(a, '/api/v1/cartridges/VT0003L7/image?format=aws'), 'VT0003L7');
  // and through the CLI
  const cli = await runCli(['export', 'VT0003L7', '--format', 'aws', '-o', join(work, 'x.aws'), '--url', a.url, '--token-file', a.server.adminTokenFile]);
  expect(cli.error ?? '').toMatch(/damaged/);
  expect(cli.error ?? '').not.toMatch(/payload|internal/i);
}, 60_000);

it('GET .../image: damage after streaming started cuts the transfer', async () => {
  await written('VT0004L7', randomBytes(12 * MiB, 4));
  const f = await frames('VT0004L7');
  await damage(f[f.length - 2]);
  const r = await get(a, '/api/v1/cartridges/VT0004L7/image?format=aws');
  expect(r.status).toBe(200);
  expect(r.broke, 'the transfer must break off').toBeDefined();
}, 60_000);

it('a damaged replica: promote and image export say the data is damaged; the replica stays', async () => {
  const tier = join(work, 'tier');
  await ok(a, 'POST', '/api/v1/replication/targets', { name: 'vault', url: `file://${tier}`, createBucket: true });
  await written('VT0005L7', randomBytes(3 * MiB, 5));
  expect((await ok(a, 'POST', '/api/v1/cartridges/VT0005L7/replicate', { target: 'vault', wait: true })).state).toBe('done');
  const { keyFile } = await ok(a, 'POST', '/api/v1/dr/export-key', { passphrase: 'damage test passphrase' });
  // every replicated container damaged in its middle (past the 128-byte object header)
  const dir = join(tier, 'containers');
  const objects = (await readdir(dir, { recursive: true })).map((n) => join(dir, String(n)));
  let damaged = 0;
  for (const p of objects) {
    const s = await stat(p);
    if (!s.isFile() || s.size < 4096) continue;
    await flip(p, Math.floor(s.size / 2));
    damaged++;
  }
  expect(damaged).toBeGreaterThan(0);
  await ok(b, 'POST', '/api/v1/dr/sources', { url: `file://${tier}`, keyFile, passphrase: 'damage test passphrase' });

  const promote = await call(b, 'POST', '/api/v1/dr/cartridges/VT0005L7/promote');
  expect(promote.status, JSON.stringify(promote.body)).toBe(500);
  expect(promote.body.error).toBe('DATA_DAMAGED');
  expect(promote.body.message).toMatch(/replica VT0005L7 cannot be promoted: .*damaged.*stays as it was/);
  const cli = await runCli(['dr', 'promote', 'VT0005L7', '--url', b.url, '--token-file', b.server.adminTokenFile]);
  expect(cli.error ?? '').toMatch(/VT0005L7 cannot be promoted: .*damaged/);
  expect(cli.error ?? '').not.toMatch(/internal/i);
  expect((await ok(b, 'GET', '/api/v1/dr/cartridges')).items).toEqual([expect.objectContaining({ barcode: 'VT0005L7', state: 'replica' })]);

  // region B cannot scrub a replica: the hint sends the operator to the store that shipped it
  const exported = await get(b, '/api/v1/cartridges/VT0005L7/image?format=aws');
  expect(exported.status, JSON.stringify(exported.body)).toBe(500);
  expect(exported.body.error).toBe('DATA_DAMAGED');
  expect(exported.body.message).toContain('VT0005L7');
  expect(exported.body.message).toMatch(/replica object containers\/[0-9a-f]{8} is damaged.*'vtl replicate target check TARGET --deep'/);
  expect(exported.body.message).not.toMatch(/vtl scrub/);
}, 90_000);

it('a replica whose container object went missing on the target: the export names the object (not an internal error)', async () => {
  await written('VT0006L7', randomBytes(2 * MiB, 6));
  expect((await ok(a, 'POST', '/api/v1/cartridges/VT0006L7/replicate', { target: 'vault', wait: true })).state).toBe('done');
  await ok(b, 'POST', '/api/v1/dr/refresh', {});
  const name = (await frames('VT0006L7'))[0].container.toString(16).padStart(8, '0');
  await rm(join(work, 'tier', 'containers', name));
  const r = await get(b, '/api/v1/cartridges/VT0006L7/image?format=aws');
  expect(r.status, JSON.stringify(r.body)).toBe(500);
  expect(r.body.error).toBe('DATA_DAMAGED');
  expect(r.body.message).toContain(`replica object containers/${name} is missing on the object store`);
  expect(r.body.message).toMatch(/'vtl replicate target check TARGET --deep'/);
}, 90_000);
