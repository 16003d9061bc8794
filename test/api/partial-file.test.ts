/**
 * A tape file written over HTTP that does not fit: the answer says what became of the part that
 * was written. On a rewritable cartridge it is rolled back; a WORM cartridge, or one under
 * retention, keeps it, and the message must say so rather than claim a rollback.
 */
import { afterAll, beforeAll, expect, test } from 'vitest';
import { randomBytes } from '../helpers/data.js';
import { call, getFile, putFile, startTestServer, type TestServer } from './helpers.js';

let t: TestServer;

beforeAll(async () => {
  t = await startTestServer();
  expect((await call(t, 'POST', '/api/v1/libraries', { name: 'pf', drives: 1, slots: 6, mailslots: 1 })).status).toBe(201);
});
afterAll(async () => {
  await t?.stop();
});

/** A small cartridge holding one file that fits, loaded in drive 0 and spaced to its end. */
async function smallCartridge(barcode: string, spec: Record<string, unknown>): Promise<Buffer> {
  const made = await call(t, 'POST', '/api/v1/cartridges', { library: 'pf', barcodes: [barcode], mediaType: 'custom', capacity: 100_000, ...spec });
  expect(made.status).toBe(201);
  expect((await call(t, 'POST', '/api/v1/libraries/pf/drives/0/load', { barcode })).status).toBe(200);
  const first = randomBytes(10_000, 61);
  expect((await putFile(t, 'pf', 0, first)).status).toBe(200);
  return first;
}

async function cartridge(barcode: string): Promise<{ logicalBytes: number; files: number }> {
  return (await call(t, 'GET', `/api/v1/cartridges/${barcode}`)).body;
}

test('a rewritable cartridge: the partial file is rolled back, and the message says so', async () => {
  const first = await smallCartridge('PFA001', {});
  const full = await putFile(t, 'pf', 0, randomBytes(200_000, 62));
  expect(full.status).toBe(507);
  expect(full.body.message).toMatch(/ran out of room after \d+ bytes, and the partial file was rolled back; write it to another cartridge/);
  expect(await cartridge('PFA001')).toMatchObject({ logicalBytes: first.length, files: 1 });
  expect((await call(t, 'POST', '/api/v1/libraries/pf/drives/0/unload')).status).toBe(200);
});

test('a WORM cartridge keeps the partial file, and the message says so and why', async () => {
  const first = await smallCartridge('PFB001', { worm: true });
  const full = await putFile(t, 'pf', 0, randomBytes(200_000, 63));
  expect(full.status).toBe(507);
  expect(full.body.message).toMatch(/ran out of room after \d+ bytes, and the partial file stays on the cartridge \(WORM medium: erase refused/);
  expect(full.body.message).not.toMatch(/rolled back/);
  const after = await cartridge('PFB001');
  expect(after.logicalBytes).toBeGreaterThan(first.length);
  // the first file is intact
  expect((await call(t, 'POST', '/api/v1/libraries/pf/drives/0/rewind')).status).toBe(200);
  expect((await getFile(t, 'pf', 0)).data.equals(first)).toBe(true);
  expect((await call(t, 'POST', '/api/v1/libraries/pf/drives/0/unload')).status).toBe(200);
});

test('a rewritable cartridge under retention keeps the partial file, and names the date', async () => {
  const until = new Date(Date.now() + 30 * 86_400_000).toISOString();
  const first = await smallCartridge('PFC001', {});
  expect((await call(t, 'POST', '/api/v1/libraries/pf/drives/0/unload')).status).toBe(200);
  const patched = await call(t, 'PATCH', '/api/v1/cartridges/PFC001', { retentionUntil: until });
  expect(patched.status).toBe(200);
  expect((await call(t, 'POST', '/api/v1/libraries/pf/drives/0/load', { barcode: 'PFC001' })).status).toBe(200);
  expect((await call(t, 'POST', '/api/v1/libraries/pf/drives/0/space', { kind: 'eod' })).status).toBe(200);
  const full = await putFile(t, 'pf', 0, randomBytes(200_000, 64));
  expect(full.status).toBe(507);
  expect(full.body.message).toMatch(/the partial file stays on the cartridge \(the cartridge is under retention until /);
  expect((await cartridge('PFC001')).logicalBytes).toBeGreaterThan(first.length);
  expect((await call(t, 'POST', '/api/v1/libraries/pf/drives/0/unload')).status).toBe(200);
});
