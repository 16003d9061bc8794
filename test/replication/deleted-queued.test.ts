/**
 * Deleting a cartridge ends its replication jobs as cancelled, saying why: those queued (behind
 * a slow job, on any target) at once, waiters included, and the one being shipped right now
 * (the library deletes a cartridge that sits in a slot) at its next step. A new cartridge of
 * the same barcode then replicates as any other. One real server and `file://` targets; the
 * slow one is a target with the lowest bandwidth limit, so that jobs wait behind its job.
 */
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { randomBytes } from '../helpers/data.js';
import { call, ok, putFile, startTestServer, type TestServer } from '../api/helpers.js';

let a: TestServer;
let work: string;

beforeAll(async () => {
  a = await startTestServer({ demo: true });
  work = await mkdtemp(join(tmpdir(), 'vtl-repl-deleted-'));
});
afterAll(async () => {
  await a?.stop();
  // Puts of the cut-off job that were already waiting for bandwidth may still land meanwhile.
  await rm(work, { recursive: true, force: true, maxRetries: 10, retryDelay: 500 });
});

type Job = { id: string; state: string; lastError: string | null; barcode: string; target: string; result: { seq: number } | null };

async function addTarget(name: string, bandwidthLimit: number | null = null): Promise<void> {
  const dir = join(work, name);
  await mkdir(dir, { recursive: true });
  await ok(a, 'POST', '/api/v1/replication/targets', { name, url: `file://${dir}`, bandwidthLimit });
}

async function job(id: string): Promise<Job> {
  return ok(a, 'GET', `/api/v1/replication/jobs/${id}`);
}

async function until<T>(what: string, read: () => Promise<T>, done: (v: T) => boolean, ms = 30_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await read();
    if (done(v)) return v;
    if (Date.now() > end) throw new Error(`${what}: still ${JSON.stringify(v)} after ${ms} ms`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

const replicate = (barcode: string, target: string, wait = false): Promise<Job> => ok(a, 'POST', `/api/v1/cartridges/${barcode}/replicate`, { target, wait });
const deletedBecause = (barcode: string) => ({ state: 'cancelled', lastError: `cartridge ${barcode} was deleted` });

it('cancels the queued and the running jobs of a deleted cartridge; a new one of its barcode replicates', async () => {
  await addTarget('fast');
  await addTarget('slow', 4096); // bytes per second: seconds per container below
  // VT0001L7 in five containers (each replication seals the open one), none of them on slow.
  await ok(a, 'POST', '/api/v1/libraries/lib1/drives/0/load', { barcode: 'VT0001L7' });
  for (let i = 0; i < 5; i++) {
    expect((await putFile(a, 'lib1', 0, randomBytes(8192, 100 + i))).status).toBe(200);
    expect((await replicate('VT0001L7', 'fast', true)).state).toBe('done');
  }
  await ok(a, 'POST', '/api/v1/libraries/lib1/drives/0/unload', {});
  await ok(a, 'POST', '/api/v1/libraries/lib1/drives/1/load', { barcode: 'VT0002L7' });
  expect((await putFile(a, 'lib1', 1, randomBytes(64 * 1024, 7))).status).toBe(200);
  await ok(a, 'POST', '/api/v1/libraries/lib1/drives/1/unload', {});

  // VT0001L7 to slow runs for about ten seconds; VT0002L7's jobs (both targets) queue behind it.
  const shipping = await replicate('VT0001L7', 'slow');
  await until('the slow job', () => job(shipping.id), (j) => j.state === 'running');
  const waiting = replicate('VT0002L7', 'fast', true); // as `vtl replicate --wait` asks
  const toSlow = await replicate('VT0002L7', 'slow');
  const listed = async () => (await ok(a, 'GET', '/api/v1/replication/jobs?barcode=VT0002L7&target=fast')).items as Job[];
  const [toFast] = await until('the waited-for job', listed, (items) => items.length === 1);
  expect([toFast.state, toSlow.state]).toEqual(['queued', 'queued']);

  // Deleted while its jobs wait: both end at once, and the waiter returns.
  expect((await call(a, 'DELETE', '/api/v1/cartridges/VT0002L7')).status).toBe(200);
  expect(await waiting).toMatchObject({ id: toFast.id, ...deletedBecause('VT0002L7') });
  expect(await job(toSlow.id)).toMatchObject(deletedBecause('VT0002L7'));
  expect((await job(shipping.id)).state).toBe('running'); // the other cartridge's job goes on

  // Deleted while it is being shipped (it sits in a slot): cut off at its next container.
  expect((await call(a, 'DELETE', '/api/v1/cartridges/VT0001L7')).status).toBe(200);
  const cut = await until('the cut-off job', () => job(shipping.id), (j) => j.state !== 'running' && j.state !== 'queued', 20_000);
  expect(cut).toMatchObject({ ...deletedBecause('VT0001L7'), result: null });

  // A new cartridge of the same barcode: its own job, done, and shown as replicated.
  await ok(a, 'POST', '/api/v1/cartridges', { library: 'lib1', barcodes: ['VT0002L7'] });
  await ok(a, 'POST', '/api/v1/libraries/lib1/drives/1/load', { barcode: 'VT0002L7' });
  expect((await putFile(a, 'lib1', 1, randomBytes(32 * 1024, 8))).status).toBe(200);
  await ok(a, 'POST', '/api/v1/libraries/lib1/drives/1/unload', {});
  const fresh = await replicate('VT0002L7', 'fast', true);
  expect(fresh).toMatchObject({ state: 'done', lastError: null });
  expect([toFast.id, toSlow.id]).not.toContain(fresh.id);
  const replication = (await ok(a, 'GET', '/api/v1/cartridges/VT0002L7/replication')).items as Array<{ target: string; state: string; job: { id: string } | null }>;
  expect(replication).toEqual([expect.objectContaining({ target: 'fast', state: 'replicated', job: expect.objectContaining({ id: fresh.id }) })]);
}, 90_000);
