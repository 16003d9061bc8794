/**
 * Replication bookkeeping on one real server with `file://` targets: lag runs from the oldest
 * sync point a target lacks (not the newest), cartridges a policy or a job assigns to a target
 * count before their first replication, `failed` counts cartridges whose newest job failed, and
 * a deleted cartridge's replication state goes with it.
 */
import { mkdtemp, readdir, rename, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backupLikeBytes, randomBytes } from '../helpers/data.js';
import { call, putFile, startTestServer, type TestServer } from '../api/helpers.js';

let a: TestServer;
let work: string;

beforeAll(async () => {
  a = await startTestServer({ demo: true });
  work = await mkdtemp(join(tmpdir(), 'vtl-repl-book-'));
});
afterAll(async () => {
  await a?.stop();
  await rm(work, { recursive: true, force: true });
});

async function ok(method: string, path: string, body?: unknown) {
  const r = await call(a, method, path, body);
  if (r.status >= 300) throw new Error(`${method} ${path}: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body;
}

/** Loads the cartridge into a drive of lib1, appends a tape file, unloads it (a sync point). */
async function write(barcode: string, data: Buffer, drive = 0): Promise<void> {
  await ok('POST', `/api/v1/libraries/lib1/drives/${drive}/load`, { barcode });
  await ok('POST', `/api/v1/libraries/lib1/drives/${drive}/space`, { kind: 'eod' });
  expect((await putFile(a, 'lib1', drive, data)).status).toBe(200);
  await ok('POST', `/api/v1/libraries/lib1/drives/${drive}/unload`, {});
}

async function replicate(barcode: string, target: string) {
  return ok('POST', `/api/v1/cartridges/${barcode}/replicate`, { target, wait: true });
}

async function replication(barcode: string, target: string) {
  const c = await ok('GET', `/api/v1/cartridges/${barcode}`);
  return (c.replication as Array<{ target: string; state: string; lagSeconds: number | null; bytesShipped: number; seq: number | null; job: { id: string } | null }>).find((r) => r.target === target);
}

async function status(target: string) {
  const items = (await ok('GET', '/api/v1/replication/status')).targets as Array<{ name: string; cartridges: number; replicated: number; pending: number; failed: number; maxLagSeconds: number | null; bytesShipped: number }>;
  return items.find((s) => s.name === target)!;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('replication bookkeeping', () => {
  it('measures lag from the oldest sync point the target lacks, not the newest', async () => {
    await ok('POST', '/api/v1/replication/targets', { name: 'east', url: `file://${join(work, 'east')}`, createBucket: true });
    await write('VT0001L7', backupLikeBytes(1024 * 1024, 7));
    expect((await replicate('VT0001L7', 'east')).state).toBe('done');
    expect(await replication('VT0001L7', 'east')).toMatchObject({ state: 'replicated' });

    await write('VT0001L7', randomBytes(1000, 1)); // the target lacks this from now on
    await sleep(1500);
    await write('VT0001L7', randomBytes(1000, 2)); // and this too: the lag does not start again
    const r = await replication('VT0001L7', 'east');
    expect(r?.state).toBe('stale');
    expect(r!.lagSeconds!).toBeGreaterThanOrEqual(1.4);
    expect((await status('east')).maxLagSeconds!).toBeGreaterThanOrEqual(1.4);
    // What the lag alert sees: one entry from the first unreplicated sync point.
    const lagging = await a.server.replicator.lagging(1);
    expect(lagging).toEqual([expect.objectContaining({ barcode: 'VT0001L7', target: 'east' })]);
    expect(Date.parse(lagging[0].since!)).toBeLessThan(Date.parse(lagging[0].syncedAt!) - 1000);

    // A replication covers it: the next write's lag starts at that write.
    expect((await replicate('VT0001L7', 'east')).state).toBe('done');
    expect((await status('east')).maxLagSeconds).toBe(0);
    await sleep(1100);
    await write('VT0001L7', randomBytes(1000, 3));
    const again = await replication('VT0001L7', 'east');
    expect(again?.state).toBe('stale');
    expect(again!.lagSeconds!).toBeLessThan(1);
  }, 60_000);

  it('counts a cartridge a job or a policy assigns to a target before its first replication, and failed by newest job', async () => {
    const dir = join(work, 'west');
    await ok('POST', '/api/v1/replication/targets', { name: 'west', url: `file://${dir}`, createBucket: true });
    expect(await status('west')).toMatchObject({ cartridges: 0, pending: 0, failed: 0 });
    await write('VT0005L7', backupLikeBytes(512 * 1024, 9), 1);
    await sleep(1100);
    // The target is down: the job fails, and the cartridge, never on west, is pending there.
    await rename(dir, `${dir}.away`);
    try {
      expect((await replicate('VT0005L7', 'west')).state).toBe('failed');
      const down = await status('west');
      expect(down).toMatchObject({ cartridges: 1, replicated: 0, pending: 1, failed: 1 });
      expect(down.maxLagSeconds!).toBeGreaterThanOrEqual(1);
      expect(await replication('VT0005L7', 'west')).toMatchObject({ state: 'never', seq: null });
      expect((await replication('VT0005L7', 'west'))!.lagSeconds!).toBeGreaterThanOrEqual(1);
      const metrics = String((await call(a, 'GET', '/metrics')).body);
      const m = /vtl_replication_lag_seconds\{target="west"\} ([\d.]+)/.exec(metrics);
      expect(Number(m?.[1])).toBeGreaterThanOrEqual(1);
    } finally {
      await rename(`${dir}.away`, dir); // back up
    }

    // A later job succeeds, so nothing needs attention any more.
    expect((await replicate('VT0005L7', 'west')).state).toBe('done');
    expect(await status('west')).toMatchObject({ cartridges: 1, replicated: 1, pending: 0, failed: 0, maxLagSeconds: 0 });
    expect((await ok('GET', '/api/v1/replication/jobs?target=west&state=failed')).items).toHaveLength(1); // history stays

    // A policy assigns every cartridge of lib1 to west: VT0001L7 (data, never on west) waits.
    await ok('PUT', '/api/v1/libraries/lib1/replication', { target: 'west', on: ['exported'] });
    try {
      const policy = await status('west');
      expect(policy).toMatchObject({ cartridges: 2, replicated: 1, pending: 1, failed: 0 });
      expect(policy.maxLagSeconds!).toBeGreaterThan(0);
      expect(await replication('VT0001L7', 'west')).toMatchObject({ state: 'never', job: null });
      expect(await a.server.replicator.lagging(0)).toEqual(expect.arrayContaining([expect.objectContaining({ barcode: 'VT0001L7', target: 'west' })]));
    } finally {
      await ok('DELETE', '/api/v1/libraries/lib1/replication');
    }
  }, 60_000);

  it('counts as failed only cartridges whose newest job for the target failed', async () => {
    const dir = join(work, 'flaky');
    await ok('POST', '/api/v1/replication/targets', { name: 'flaky', url: `file://${dir}`, createBucket: true });
    await write('VT0009L7', randomBytes(64 * 1024, 21), 3);
    await rename(dir, `${dir}.away`);
    try {
      expect((await replicate('VT0009L7', 'flaky')).state).toBe('failed');
      expect((await replicate('VT0009L7', 'flaky')).state).toBe('failed');
      expect((await status('flaky')).failed).toBe(1); // one cartridge, however many jobs
    } finally {
      await rename(`${dir}.away`, dir);
    }
    expect((await replicate('VT0009L7', 'flaky')).state).toBe('done');
    expect((await status('flaky')).failed).toBe(0);
  }, 60_000);

  it('forgets a deleted cartridge: a new one of the same barcode starts afresh on every target', async () => {
    await ok('POST', '/api/v1/replication/targets', { name: 'north', url: `file://${join(work, 'north')}`, createBucket: true });
    await write('VT0003L7', backupLikeBytes(1024 * 1024, 11), 2);
    const old = await replicate('VT0003L7', 'east');
    expect(old.state).toBe('done');
    expect((await replicate('VT0003L7', 'north')).state).toBe('done');
    const eastBefore = (await status('east')).bytesShipped;

    expect((await call(a, 'DELETE', '/api/v1/cartridges/VT0003L7')).status).toBe(200);
    expect(await status('east')).toMatchObject({ bytesShipped: eastBefore - old.result.bytesShipped });
    await ok('POST', '/api/v1/cartridges', { library: 'lib1', barcodes: ['VT0003L7'] });
    await write('VT0003L7', backupLikeBytes(256 * 1024, 12), 2);
    const fresh = await replicate('VT0003L7', 'east');
    expect(fresh.state).toBe('done');
    const east = await replication('VT0003L7', 'east');
    expect(east).toMatchObject({ state: 'replicated', bytesShipped: fresh.result.bytesShipped, job: { id: fresh.id } });
    // Its catalogs come after the old cartridge's on the target (readers take the newest).
    expect(east!.seq).toBeGreaterThan(old.result.seq);
    // North never held this cartridge: no state, old seq or old job shown for it.
    expect(await replication('VT0003L7', 'north')).toBeUndefined();
    expect(await status('north')).toMatchObject({ cartridges: 0, bytesShipped: 0 });
  }, 60_000);

  it('drops the state a cartridge deleted behind the replicator\'s back left', async () => {
    await ok('POST', '/api/v1/replication/targets', { name: 'south', url: `file://${join(work, 'south')}`, createBucket: true });
    await write('VT0007L7', backupLikeBytes(512 * 1024, 13), 3);
    expect((await replicate('VT0007L7', 'south')).state).toBe('done');
    // Deleted with nobody listening (as after a crash between the delete and the replicator
    // hearing of it): the library's listeners are held back for this one call.
    const libs = a.server.libraries as unknown as { listeners: unknown[] };
    const listeners = libs.listeners.splice(0);
    try {
      await a.server.libraries.deleteCartridge('VT0007L7');
    } finally {
      libs.listeners.push(...listeners);
    }
    await ok('POST', '/api/v1/cartridges', { library: 'lib1', barcodes: ['VT0007L7'] });
    await write('VT0007L7', randomBytes(4096, 14), 3);
    expect(await replication('VT0007L7', 'south')).toBeUndefined();
    const fresh = await replicate('VT0007L7', 'south');
    expect(fresh.state).toBe('done');
    expect(await replication('VT0007L7', 'south')).toMatchObject({ state: 'replicated', bytesShipped: fresh.result.bytesShipped });
  }, 60_000);
});

it('a job counts every container it ships, also those its parallel puts send at once', async () => {
  const dir = join(work, 'count');
  await ok('POST', '/api/v1/replication/targets', { name: 'count', url: `file://${dir}`, createBucket: true });
  await write('VT0009L7', randomBytes(24 * 1024 * 1024, 99));
  const job = await replicate('VT0009L7', 'count');
  expect(job.state).toBe('done');
  const names = (await readdir(join(dir, 'containers'))).filter((n) => /^[0-9a-f]{8}$/.test(n));
  let onTarget = 0;
  for (const n of names) onTarget += (await stat(join(dir, 'containers', n))).size;
  expect(names.length).toBeGreaterThan(2);
  expect(job.result.containersShipped).toBe(names.length);
  expect(job.result.bytesShipped).toBeGreaterThanOrEqual(onTarget);
}, 60_000);
