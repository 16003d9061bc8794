/**
 * Retention through the service: a cartridge under retention cannot be erased, overwritten,
 * deleted or have its date shortened, even by admin; library policies date cartridges; the
 * expire job returns expired cartridges to scratch.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { call, getFile, putFile, startTestServer, type TestServer } from '../api/helpers.js';

let t: TestServer;
const DAY = 86_400_000;

beforeAll(async () => {
  t = await startTestServer();
  expect((await call(t, 'POST', '/api/v1/libraries', { name: 'rl', drives: 2, slots: 8, mailslots: 1 })).status).toBe(201);
  expect((await call(t, 'POST', '/api/v1/cartridges', { library: 'rl', prefix: 'RT', start: 1, count: 5, mediaType: 'LTO-7' })).status).toBe(201);
  for (const bc of ['RT0001L7', 'RT0002L7', 'RT0003L7', 'RT0004L7']) {
    expect((await call(t, 'POST', '/api/v1/libraries/rl/drives/0/load', { barcode: bc })).status).toBe(200);
    expect((await putFile(t, 'rl', 0, randomBytes(200_000))).status).toBe(200);
    expect((await call(t, 'POST', '/api/v1/libraries/rl/drives/0/unload', {})).status).toBe(200);
  }
});
afterAll(async () => {
  await t?.stop();
});

async function runExpire(body: object = {}) {
  const r = await call(t, 'POST', '/api/v1/retention/expire', body);
  expect(r.status).toBe(202);
  for (;;) {
    const j = (await call(t, 'GET', `/api/v1/jobs/${r.body.id}`)).body;
    if (j.state !== 'running') return j;
    await new Promise((res) => setTimeout(res, 20));
  }
}

test('a rewritable cartridge under retention refuses erase, overwrite, delete and shortening, to admin too', async () => {
  const until = new Date(Date.now() + 10 * DAY).toISOString();
  expect((await call(t, 'PATCH', '/api/v1/cartridges/RT0001L7', { retentionUntil: until })).status).toBe(200);
  const before = (await call(t, 'GET', '/api/v1/cartridges/RT0001L7')).body;

  const erase = await call(t, 'POST', '/api/v1/cartridges/RT0001L7/erase');
  expect(erase.status).toBe(409);
  expect(erase.body).toMatchObject({ error: 'DATA_PROTECT', message: expect.stringMatching(/retention until/) });
  expect((await call(t, 'DELETE', '/api/v1/cartridges/RT0001L7')).status).toBe(409);
  for (const shorter of [null, new Date(Date.now() + DAY).toISOString()]) {
    const r = await call(t, 'PATCH', '/api/v1/cartridges/RT0001L7', { retentionUntil: shorter });
    expect(r.status).toBe(400);
    expect(r.body.message).toMatch(/extended but not shortened/);
  }
  // overwriting from BOT (a new label, a new backup) is refused; the old data reads back
  expect((await call(t, 'POST', '/api/v1/libraries/rl/drives/1/load', { barcode: 'RT0001L7' })).status).toBe(200);
  expect((await putFile(t, 'rl', 1, Buffer.from('VOL1NEWLABEL'))).body.error).toBe('WOULD_OVERWRITE'); // not asked for
  const over = await putFile(t, 'rl', 1, Buffer.from('VOL1NEWLABEL'), undefined, true);
  expect(over.status).toBe(409);
  expect(over.body.error).toBe('DATA_PROTECT');
  expect((await getFile(t, 'rl', 1)).data.length).toBe(200_000);
  // appending at end of data stays allowed
  expect((await putFile(t, 'rl', 1, randomBytes(1000))).status).toBe(200);
  // a refused erase of the loaded cartridge leaves the tape where it was (it used to rewind it)
  const at = (await call(t, 'GET', '/api/v1/libraries/rl/drives/1')).body.position;
  expect(at.lba, JSON.stringify(at)).toBeGreaterThan(0);
  expect((await call(t, 'POST', '/api/v1/cartridges/RT0001L7/erase')).status).toBe(409);
  expect((await call(t, 'GET', '/api/v1/libraries/rl/drives/1')).body.position).toEqual(at);
  expect((await call(t, 'POST', '/api/v1/libraries/rl/drives/1/unload', {})).status).toBe(200);
  const after = (await call(t, 'GET', '/api/v1/cartridges/RT0001L7')).body;
  expect(after.logicalBytes).toBe(before.logicalBytes + 1000);
  // extending is fine
  const later = new Date(Date.now() + 20 * DAY).toISOString();
  expect((await call(t, 'PATCH', '/api/v1/cartridges/RT0001L7', { retentionUntil: later })).body.retentionUntil).toBe(later);
});

test('library policy: set and read back, bad values refused', async () => {
  expect((await call(t, 'GET', '/api/v1/libraries/rl/retention')).body).toEqual({ scratchAfterDays: null });
  expect((await call(t, 'PUT', '/api/v1/libraries/rl/retention', { scratchAfterDays: 30 })).body).toEqual({ scratchAfterDays: 30 });
  expect((await call(t, 'GET', '/api/v1/libraries/rl/retention')).body).toEqual({ scratchAfterDays: 30 });
  expect((await call(t, 'PUT', '/api/v1/libraries/rl/retention', { scratchAfterDays: 0 })).status).toBe(400);
  expect((await call(t, 'PUT', '/api/v1/libraries/rl/retention', { scratchAfterDays: 1.5 })).status).toBe(400);
  expect((await call(t, 'PUT', '/api/v1/libraries/nolib/retention', { scratchAfterDays: 3 })).status).toBe(404);
});

test('the expire job dates cartridges by policy and returns expired ones to scratch', async () => {
  // RT0002L7 expired yesterday; RT0003L7 too, but a client holds it in a drive session
  const past = new Date(Date.now() - DAY).toISOString();
  for (const bc of ['RT0002L7', 'RT0003L7']) expect((await call(t, 'PATCH', `/api/v1/cartridges/${bc}`, { retentionUntil: past })).status).toBe(200);
  expect((await call(t, 'GET', '/api/v1/cartridges/RT0002L7')).body.state).toBe('expired');
  expect((await call(t, 'POST', '/api/v1/libraries/rl/drives/0/load', { barcode: 'RT0003L7' })).status).toBe(200);
  const drive = await t.server.libraries.drive('rl', 0);
  await drive.open();

  const dry = await runExpire({ dryRun: true });
  expect(dry.result).toMatchObject({ dryRun: true, scratched: ['RT0002L7', 'RT0003L7'] });
  expect((await call(t, 'GET', '/api/v1/cartridges/RT0002L7')).body.state).toBe('expired');
  expect((await call(t, 'GET', '/api/v1/cartridges/RT0004L7')).body.retentionUntil).toBeNull();

  const t0 = Date.now();
  const job = await runExpire();
  await drive.close();
  expect(job.state).toBe('succeeded');
  expect(job.result.examined).toBe(5);
  expect(job.result.scratched).toEqual(['RT0002L7']);
  expect(job.result.skipped).toEqual([{ barcode: 'RT0003L7', reason: expect.stringMatching(/open session/) }]);
  // RT0004L7 (data, no date) got one 30 days out; RT0001L7 keeps its own; the blank RT0005L7 none
  expect(job.result.dated.map((d: { barcode: string }) => d.barcode)).toEqual(['RT0004L7']);
  const dated = Date.parse((await call(t, 'GET', '/api/v1/cartridges/RT0004L7')).body.retentionUntil);
  expect(dated).toBeGreaterThanOrEqual(t0 + 30 * DAY - 1000);
  expect(dated).toBeLessThanOrEqual(Date.now() + 30 * DAY);
  expect((await call(t, 'GET', '/api/v1/cartridges/RT0005L7')).body.retentionUntil).toBeNull();
  const scratched = (await call(t, 'GET', '/api/v1/cartridges/RT0002L7')).body;
  expect(scratched).toMatchObject({ state: 'scratch', logicalBytes: 0, retentionUntil: null });
  // a dated cartridge is now protected like any other
  expect((await call(t, 'POST', '/api/v1/cartridges/RT0004L7/erase')).status).toBe(409);
  // the next run (no session now) scratches the one it skipped, and leaves the rest
  const again = await runExpire();
  expect(again.result).toMatchObject({ scratched: ['RT0003L7'], skipped: [], dated: [] });
  const listed = (await call(t, 'GET', '/api/v1/jobs?kind=expire')).body;
  expect(listed.total).toBe(3);
  expect(listed.items[0].requestedBy).toBe('admin');
});

test('a manual erase clears a date that has passed, as the expire job does, and keeps one still to come', async () => {
  expect((await call(t, 'POST', '/api/v1/libraries/rl/drives/1/load', { barcode: 'RT0005L7' })).status).toBe(200);
  expect((await putFile(t, 'rl', 1, randomBytes(50_000))).status).toBe(200);
  expect((await call(t, 'POST', '/api/v1/libraries/rl/drives/1/unload', {})).status).toBe(200);
  const past = new Date(Date.now() - DAY).toISOString();
  expect((await call(t, 'PATCH', '/api/v1/cartridges/RT0005L7', { retentionUntil: past })).status).toBe(200);
  const erased = await call(t, 'POST', '/api/v1/cartridges/RT0005L7/erase');
  expect(erased.status).toBe(200);
  expect(erased.body).toMatchObject({ state: 'scratch', logicalBytes: 0, retentionUntil: null });
  // a blank cartridge may be erased under a date still to come: the operator's date stays
  const future = new Date(Date.now() + 5 * DAY).toISOString();
  expect((await call(t, 'PATCH', '/api/v1/cartridges/RT0005L7', { retentionUntil: future })).status).toBe(200);
  const again = await call(t, 'POST', '/api/v1/cartridges/RT0005L7/erase');
  expect(again.status).toBe(200);
  expect(again.body.retentionUntil).toBe(future);
});
