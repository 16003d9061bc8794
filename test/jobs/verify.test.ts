/**
 * Restore tests through the service: a verify job reads every tape file and checks its
 * checksum; reports are kept as history; a corrupted chunk makes the report name the file.
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { containerPath } from '../../src/dedup/container.js';
import { RECIPE_ENTRY } from '../../src/stream/recipes.js';
import { call, putFile, startTestServer, type TestServer } from '../api/helpers.js';

let t: TestServer;
const files = [randomBytes(3 << 20), randomBytes(2 << 20), randomBytes(1 << 20)];

beforeAll(async () => {
  t = await startTestServer();
  expect((await call(t, 'POST', '/api/v1/libraries', { name: 'lib', drives: 1, slots: 4, mailslots: 1 })).status).toBe(201);
  expect((await call(t, 'POST', '/api/v1/cartridges', { library: 'lib', prefix: 'VE', start: 1, count: 3, mediaType: 'LTO-7' })).status).toBe(201);
  expect((await call(t, 'POST', '/api/v1/libraries/lib/drives/0/load', { barcode: 'VE0001L7' })).status).toBe(200);
  for (const f of files) expect((await putFile(t, 'lib', 0, f)).status).toBe(200);
  expect((await call(t, 'POST', '/api/v1/libraries/lib/drives/0/unload', {})).status).toBe(200);
});
afterAll(async () => {
  await t?.stop();
});

async function waitJob(id: string) {
  for (;;) {
    const j = (await call(t, 'GET', `/api/v1/jobs/${id}`)).body;
    if (j.state !== 'running') return j;
    await new Promise((r) => setTimeout(r, 20));
  }
}

test('verify reads every tape file, passes, and keeps a report as history', async () => {
  const start = await call(t, 'POST', '/api/v1/cartridges/VE0001L7/verify');
  expect(start.status).toBe(202);
  expect(start.body).toMatchObject({ kind: 'verify', target: 'VE0001L7', requestedBy: 'admin' });
  const job = await waitJob(start.body.id);
  expect(job.state).toBe('succeeded');
  const bytes = files.reduce((n, f) => n + f.length, 0);
  expect(job.result).toMatchObject({ barcode: 'VE0001L7', files: 3, bytes, result: 'passed', failedFiles: [] });
  expect(job.result.mbPerSecond).toBeGreaterThan(0);
  expect(job.progress).toMatchObject({ done: bytes, total: bytes, unit: 'bytes' });
  // a blank cartridge passes with nothing to read; a second run makes history
  const blank = await waitJob((await call(t, 'POST', '/api/v1/cartridges/VE0002L7/verify')).body.id);
  expect(blank.result).toMatchObject({ files: 0, bytes: 0, result: 'passed' });
  await waitJob((await call(t, 'POST', '/api/v1/cartridges/VE0001L7/verify')).body.id);
  const hist = (await call(t, 'GET', '/api/v1/cartridges/VE0001L7/verifications')).body.items;
  expect(hist).toHaveLength(2);
  expect(hist[1].jobId).toBe(start.body.id); // newest first
  expect(hist.every((h: { result: string }) => h.result === 'passed')).toBe(true);
  expect((await call(t, 'GET', '/api/v1/cartridges/VE0002L7/verifications')).body.items).toHaveLength(1);
  expect((await call(t, 'GET', '/api/v1/cartridges/VE0003L7/verifications')).body.items).toEqual([]);
  expect((await call(t, 'GET', '/api/v1/jobs?kind=verify&target=VE0001L7')).body.total).toBe(2);
});

test('the schedule picks a cartridge that holds data', async () => {
  const { Verifications, Jobs } = await import('../../src/jobs/index.js');
  const jobs = new Jobs(t.server.store.db);
  const v = new Verifications(t.server.store.db, jobs, t.server.libraries, t.server.store.streams);
  const rec = (await v.startRandom())!;
  expect(rec).toMatchObject({ kind: 'verify', target: 'VE0001L7', requestedBy: 'schedule' }); // the only one with data
  expect((await jobs.wait(rec.id)).state).toBe('succeeded');
});

test('unknown cartridges and jobs are 404, bad ids 400', async () => {
  expect((await call(t, 'POST', '/api/v1/cartridges/NOPE01/verify')).status).toBe(404);
  expect((await call(t, 'GET', '/api/v1/cartridges/NOPE01/verifications')).status).toBe(404);
  expect((await call(t, 'GET', '/api/v1/jobs/zzzzzzzzzzzzz')).body.error).toBe('NOT_FOUND');
  expect((await call(t, 'GET', '/api/v1/jobs/BAD!ID')).status).toBe(400);
  expect((await call(t, 'POST', '/api/v1/jobs/zzzzzzzzzzzzz/cancel')).status).toBe(404);
});

test('a corrupted chunk makes the report name the tape file that failed', async () => {
  // a chunk in the middle of tape file 1 (file 0's bytes come first)
  const info = await t.server.libraries.tapes.info('VE0001L7');
  const at = files[0].length + (1 << 20);
  const p = (await t.server.store.streams.pageAt(info.streamId!, at))!;
  let off = p.start;
  let e = 0;
  for (; ; e += RECIPE_ENTRY) {
    const used = p.page.readUInt32BE(e + 32);
    if (off + used > at) break;
    off += used;
  }
  const container = p.page.readUInt32BE(e + 16);
  const frame = p.page.readUInt32BE(e + 20);
  await t.restart(); // seals the open container and drops every cache
  const dir = t.server.store.chunks.containersDir;
  const path = existsSync(containerPath(dir, container, true)) ? containerPath(dir, container, true) : containerPath(dir, container, false);
  const fh = await open(path, 'r+');
  const b = Buffer.alloc(1);
  await fh.read(b, 0, 1, frame + 40);
  b[0] ^= 0x5a;
  await fh.write(b, 0, 1, frame + 40);
  await fh.close();

  const job = await waitJob((await call(t, 'POST', '/api/v1/cartridges/VE0001L7/verify')).body.id);
  expect(job.state).toBe('failed');
  expect(job.error).toMatch(/1 of 3 tape files failed/);
  expect(job.result.result).toBe('failed');
  expect(job.result.failedFiles.map((f: { file: number }) => f.file)).toEqual([1]);
  expect(job.result.failedFiles[0].error).toMatch(/read failed/);
  const hist = (await call(t, 'GET', '/api/v1/cartridges/VE0001L7/verifications')).body.items;
  expect(hist.map((h: { result: string }) => h.result)).toEqual(['failed', 'passed', 'passed', 'passed']); // the schedule's pick ran one too
});

test('cancel through the API; a second verify of the same cartridge waits its turn', async () => {
  const started = await call(t, 'POST', '/api/v1/cartridges/VE0001L7/verify');
  const again = await call(t, 'POST', '/api/v1/cartridges/VE0001L7/verify');
  expect([202, 409]).toContain(again.status); // 409 JOB_RUNNING while the first still runs
  await call(t, 'POST', `/api/v1/jobs/${started.body.id}/cancel`);
  const end = await waitJob(started.body.id);
  expect(['cancelled', 'failed']).toContain(end.state); // it may have finished (the corrupt file) first
  if (again.status === 202) await waitJob(again.body.id);
});

test('a cartridge whose drive session a client holds is not read behind its back', async () => {
  expect((await call(t, 'POST', '/api/v1/libraries/lib/drives/0/load', { barcode: 'VE0003L7' })).status).toBe(200);
  const drive = await t.server.libraries.drive('lib', 0);
  await drive.open();
  try {
    const job = await waitJob((await call(t, 'POST', '/api/v1/cartridges/VE0003L7/verify')).body.id);
    expect(job).toMatchObject({ state: 'failed', error: expect.stringMatching(/open session/) });
  } finally {
    await drive.close();
  }
  // with the session closed, the verify goes through the drive
  const again = await call(t, 'POST', '/api/v1/cartridges/VE0003L7/verify');
  expect(again.status, JSON.stringify(again.body)).toBe(202);
  const ok = await waitJob(again.body.id);
  expect(ok.state).toBe('succeeded');
});
