/**
 * Deleting a write-protected cartridge that holds data: the operator's write protect holds it
 * back; a DR replica (read-only, its write protect cannot be cleared: its data lives on its
 * source) may still be deleted. Two real servers and a `file://` target.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { backupLikeBytes } from '../helpers/data.js';
import { call, ok, putFile, startTestServer, type TestServer } from '../api/helpers.js';

const PASSPHRASE = 'delete replica passphrase';
const BARCODE = 'VT0001L7';
const data = backupLikeBytes(512 * 1024, 77);

let a: TestServer;
let b: TestServer;
let tierDir: string;

beforeAll(async () => {
  tierDir = await mkdtemp(join(tmpdir(), 'vtl-del-replica-'));
  a = await startTestServer({ demo: true });
  b = await startTestServer();
});
afterAll(async () => {
  await a?.stop();
  await b?.stop();
  await rm(tierDir, { recursive: true, force: true });
});

it('a read-only DR replica holding data may be deleted; an ordinary write-protected cartridge holding data may not', async () => {
  // Region A: a cartridge with data, replicated to the file:// target.
  await ok(a, 'POST', '/api/v1/replication/targets', { name: 'vault', url: `file://${join(tierDir, 'tier')}`, createBucket: true });
  await ok(a, 'POST', '/api/v1/libraries/lib1/drives/0/load', { barcode: BARCODE });
  expect((await putFile(a, 'lib1', 0, data)).status).toBe(200);
  const job = await ok(a, 'POST', `/api/v1/cartridges/${BARCODE}/replicate`, { target: 'vault', wait: true });
  expect(job.state, JSON.stringify(job)).toBe('done');
  await ok(a, 'POST', '/api/v1/libraries/lib1/drives/0/unload', {});

  // The operator's write protect on region A's cartridge holds it back while it holds data.
  await ok(a, 'PATCH', `/api/v1/cartridges/${BARCODE}`, { writeProtected: true });
  const own = await call(a, 'DELETE', `/api/v1/cartridges/${BARCODE}`);
  expect(own.status).toBe(409);
  expect(own.body).toMatchObject({ error: 'DATA_PROTECT' });
  expect(own.body.message).toMatch(/write protected and holds data/);
  expect(await ok(a, 'GET', `/api/v1/cartridges/${BARCODE}`)).toMatchObject({ writeProtected: true, logicalBytes: data.length });

  // Region B attaches: the replica holds the data, is write protected and read-only.
  const { keyFile } = await ok(a, 'POST', '/api/v1/dr/export-key', { passphrase: PASSPHRASE });
  const attached = await ok(b, 'POST', '/api/v1/dr/sources', { url: `file://${join(tierDir, 'tier')}`, keyFile, passphrase: PASSPHRASE });
  expect(attached.imported).toEqual([{ barcode: BARCODE, seq: 1, logicalBytes: data.length }]);
  expect(await ok(b, 'GET', `/api/v1/cartridges/${BARCODE}`)).toMatchObject({ writeProtected: true, logicalBytes: data.length, files: 1 });
  await expect(b.server.libraries.tapes.config(BARCODE)).resolves.toMatchObject({ writeProtected: true, readOnly: expect.stringContaining(BARCODE) });
  // Its write protect cannot be cleared...
  expect((await call(b, 'PATCH', `/api/v1/cartridges/${BARCODE}`, { writeProtected: false })).status).toBe(400);
  // ...and it may still be deleted.
  const replica = await call(b, 'DELETE', `/api/v1/cartridges/${BARCODE}`);
  expect(replica.status, JSON.stringify(replica.body)).toBe(200);
  expect(replica.body).toEqual({ ok: true });
  expect((await call(b, 'GET', `/api/v1/cartridges/${BARCODE}`)).status).toBe(404);
}, 60_000);
