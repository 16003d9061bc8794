/**
 * DR attach and refresh when the target holds damaged catalogs or packs, when region B's own
 * cartridges hold the barcodes, and what a write to a replica is told. Two real servers (a third
 * with the demo library, as a first `vtl serve` without --no-demo makes it) and a `file://`
 * target; the damage is done to the target's files.
 */
import { copyFile, mkdtemp, readFile, rm, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { runCli } from '../cli/run-cli.js';
import { backupLikeBytes } from '../helpers/data.js';
import { call, ok, putFile, startTestServer, type TestServer } from '../api/helpers.js';

const PASSPHRASE = 'dr fallback passphrase';
const SIZE = 64 * 1024;
const file = (n: number) => backupLikeBytes(SIZE, 100 + n);

let a: TestServer;
let b: TestServer;
let work: string;
let url: string;
let keyFile: string;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'vtl-dr-fallback-'));
  url = `file://${join(work, 'tier')}`;
  a = await startTestServer({ demo: true });
  b = await startTestServer();
  await ok(a, 'POST', '/api/v1/replication/targets', { name: 'vault', url, createBucket: true });
  // VT0001L7: catalogs 1..5, VT0002L7: 1..2, VT0003L7: 1 (one more tape file each time).
  const plan: Array<[string, number, number]> = [['VT0001L7', 0, 5], ['VT0002L7', 1, 2], ['VT0003L7', 2, 1]];
  for (const [barcode, drive, times] of plan) {
    await ok(a, 'POST', `/api/v1/libraries/lib1/drives/${drive}/load`, { barcode });
    for (let i = 1; i <= times; i++) {
      expect((await putFile(a, 'lib1', drive, file(i))).status).toBe(200);
      const job = await ok(a, 'POST', `/api/v1/cartridges/${barcode}/replicate`, { target: 'vault', wait: true });
      expect(job, JSON.stringify(job)).toMatchObject({ state: 'done', result: { seq: i } });
    }
  }
  keyFile = join(work, 'site-a.vtlkey');
  await writeFile(keyFile, (await ok(a, 'POST', '/api/v1/dr/export-key', { passphrase: PASSPHRASE })).keyFile);
}, 120_000);
afterAll(async () => {
  await a?.stop();
  await b?.stop();
  await rm(work, { recursive: true, force: true });
});

/** `vtl ARGS` against `t`: its output, the error it threw and the exit code it set. */
async function vtl(t: TestServer, args: string[]): Promise<{ out: string; error?: string; code: number }> {
  process.env.VTL_DR_PASSPHRASE = PASSPHRASE;
  try {
    const r = await runCli([...args, '--url', t.url, '--token-file', t.server.adminTokenFile]);
    return { out: r.out, error: r.error, code: r.exitCode };
  } finally {
    delete process.env.VTL_DR_PASSPHRASE;
  }
}

const tierFile = (key: string) => join(work, 'tier', ...key.split('/'));

it('imports the newest whole catalog when newer ones are damaged, reports the damage apart from conflicts, and exits 1', async () => {
  const cat5 = tierFile('catalogs/VT0001L7/000000000005');
  await copyFile(cat5, join(work, 'catalog-5.good'));
  const bad = await readFile(cat5);
  bad[bad.length - 20] ^= 0xff;
  await writeFile(cat5, bad);
  await unlink(tierFile('packs/VT0002L7/000000000002-0'));
  await copyFile(tierFile('packs/VT0003L7/000000000001-0'), join(work, 'pack-3-1.good'));
  await unlink(tierFile('packs/VT0003L7/000000000001-0'));

  const r = await vtl(b, ['dr', 'attach', url, '--key-file', keyFile, '--name', 'site-a']);
  expect(r.error).toBeUndefined();
  expect(r.out).toContain('source site-a: 2 imported, 0 unchanged, 0 conflicts, 3 damaged');
  expect(r.out).toMatch(/VT0001L7 catalog 4 /);
  expect(r.out).toMatch(/VT0002L7 catalog 1 /);
  expect(r.out).toMatch(/VT0001L7: damaged: catalog 5 on the target is damaged \(.*catalogs\/VT0001L7\/000000000005.*\); catalog 4 was imported instead: this replica is older than the source's latest \(catalog 5\)/);
  expect(r.out).toMatch(/VT0002L7: damaged: catalog 2 on the target is damaged \(object not found: packs\/VT0002L7\/000000000002-0\); catalog 1 was imported instead/);
  expect(r.out).toMatch(/VT0003L7: damaged: catalog 1 on the target is damaged \(object not found: packs\/VT0003L7\/000000000001-0\); no catalog of this cartridge is whole: it was not imported/);
  expect(r.code).toBe(1);

  // The replicas are the older catalogs, whole.
  expect(await ok(b, 'GET', '/api/v1/cartridges/VT0001L7')).toMatchObject({ files: 4, logicalBytes: 4 * SIZE });
  expect(await ok(b, 'GET', '/api/v1/cartridges/VT0002L7')).toMatchObject({ files: 1, logicalBytes: SIZE });
  expect((await call(b, 'GET', '/api/v1/cartridges/VT0003L7')).status).toBe(404);
  expect((await ok(b, 'GET', '/api/v1/dr/cartridges')).items.map((x: { barcode: string; seq: number }) => [x.barcode, x.seq])).toEqual([['VT0001L7', 4], ['VT0002L7', 1]]);

  // The API says the same, in fields of their own.
  const again = await ok(b, 'POST', '/api/v1/dr/refresh', {});
  expect(again.results).toEqual([
    {
      source: 'site-a',
      imported: [],
      unchanged: 0,
      conflicts: [],
      damaged: [
        { barcode: 'VT0001L7', catalogs: [5], fallback: 4, reason: expect.stringContaining('the replica here stays at catalog 4, older than the source\'s latest (catalog 5)') },
        { barcode: 'VT0002L7', catalogs: [2], fallback: 1, reason: expect.stringContaining('the replica here stays at catalog 1') },
        { barcode: 'VT0003L7', catalogs: [1], fallback: null, reason: expect.stringContaining('it was not imported') },
      ],
      failed: [],
    },
  ]);

  // Repaired on the target: the next refresh takes catalog 5 and VT0003L7; VT0002L7 stays behind.
  await copyFile(join(work, 'catalog-5.good'), cat5);
  await copyFile(join(work, 'pack-3-1.good'), tierFile('packs/VT0003L7/000000000001-0'));
  const fixed = await vtl(b, ['dr', 'refresh']);
  expect(fixed.code).toBe(1);
  expect(fixed.out).toContain('source site-a: 2 imported, 0 unchanged, 0 conflicts, 1 damaged');
  expect(fixed.out).toMatch(/VT0001L7 catalog 5 /);
  expect(fixed.out).toMatch(/VT0003L7 catalog 1 /);
  expect(await ok(b, 'GET', '/api/v1/cartridges/VT0001L7')).toMatchObject({ files: 5, logicalBytes: 5 * SIZE });
}, 60_000);

it('a barcode held by a blank cartridge of region B is a conflict that says what to do; doing it imports the replica', async () => {
  const c = await startTestServer({ demo: true }); // a first `vtl serve` without --no-demo
  try {
    const r = await vtl(c, ['dr', 'attach', url, '--key-file', keyFile]);
    expect(r.out).toContain('VT0001L7: conflict: barcode VT0001L7 is already in use by a blank cartridge of this store (in lib1 slot');
    expect(r.out).toContain('delete it (vtl cartridge delete VT0001L7), then run vtl dr refresh');
    expect(r.out).toMatch(/: 0 imported, 0 unchanged, 3 conflicts, 1 damaged/);
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/VT0002L7: damaged: catalog 2 on the target is damaged .*; no older catalog was imported/);

    expect((await vtl(c, ['cartridge', 'delete', 'VT0001L7'])).out).toContain('VT0001L7: deleted');
    const again = await vtl(c, ['dr', 'refresh']);
    expect(again.out).toMatch(/: 1 imported, 0 unchanged, 2 conflicts, 1 damaged/);
    expect(again.out).toMatch(/VT0001L7 catalog 5 /);
  } finally {
    await c.stop();
  }
}, 60_000);

it('a write to a replica says to promote it, not to clear write protect', async () => {
  // Through a drive (HTTP tape file)...
  await ok(b, 'POST', '/api/v1/libraries', { name: 'dr', drives: 1, slots: 2, mailslots: 1 });
  await ok(b, 'POST', '/api/v1/libraries/dr/insert', { barcode: 'VT0001L7' });
  await ok(b, 'POST', '/api/v1/libraries/dr/import', { barcode: 'VT0001L7' });
  await ok(b, 'POST', '/api/v1/libraries/dr/drives/0/load', { barcode: 'VT0001L7' });
  const w = await putFile(b, 'dr', 0, file(9), undefined, true);
  expect(w.status).toBe(409);
  expect(w.body.message).toMatch(/read-only: replica of VT0001L7 .*promote it to write \(vtl dr promote VT0001L7\)/);
  expect(w.body.message).not.toMatch(/--off/);
  await ok(b, 'POST', '/api/v1/libraries/dr/drives/0/unload', {});
  // ...and an image import.
  const res = await fetch(`${b.url}/api/v1/cartridges/VT0001L7/image?format=raw`, {
    method: 'PUT',
    headers: { authorization: `Bearer ${b.admin}`, 'content-type': 'application/octet-stream' },
    body: file(10),
  });
  const body = (await res.json()) as { message: string };
  expect(res.status).toBe(409);
  expect(body.message).toMatch(/VT0001L7 is read-only: replica of VT0001L7 .*\(vtl dr promote VT0001L7\)/);
  expect(body.message).not.toMatch(/--off/);
}, 60_000);
