/**
 * Replication and DR end to end: two vtl servers (regions A and B, each with its own data
 * directory), s3rver instances as the object tier (and Azurite), everything real on 127.0.0.1.
 * Region A writes three generations of a backup onto one cartridge (three tape files) and
 * replicates after each; region B attaches the target with the recovery key and restores every
 * generation bit for bit through the HTTP tape stream; a target killed mid-replication catches
 * up after it returns without shipping anything twice.
 */
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it, type TestContext } from 'vitest';
import { openTier } from '../../src/tier/index.js';
import { backupLikeBytes, randomBytes } from '../helpers/data.js';
import { call, ok, getFile, putFile, startTestServer, type TestServer } from '../api/helpers.js';
import { runCli } from '../cli/run-cli.js';
import { ERRNO } from '../../src/protocols/rmt/index.js';
import { err as rmtRefused, RawClient } from '../protocols/rmt/harness.js';
import { AZURITE_ACCOUNT, AZURITE_KEY, startAzurite, startS3rver, type LocalServer, type RestartableServer } from '../tier/servers.js';

process.env.AWS_ACCESS_KEY_ID = 'S3RVER';
process.env.AWS_SECRET_ACCESS_KEY = 'S3RVER';
process.env.AZURE_STORAGE_ACCOUNT = AZURITE_ACCOUNT;
process.env.AZURE_STORAGE_KEY = AZURITE_KEY;
process.env.VTL_REPLICATION_RETRY_MAX_MS = '500';

const MiB = 1024 * 1024;
const PASSPHRASE = 'correct horse battery staple';
const BARCODE = 'VT0001L7';
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** gen N+1: gen N with a few regions rewritten and 1 MiB appended (what a nightly backup looks like). */
function nextGeneration(prev: Buffer, seed: number): Buffer {
  const next = Buffer.concat([prev, randomBytes(MiB, seed)]);
  for (let k = 0; k < 3; k++) randomBytes(64 * 1024, seed * 10 + k).copy(next, Math.floor(((k + 1) * prev.length) / 4));
  return next;
}

const gens: Buffer[] = [];
gens.push(backupLikeBytes(12 * MiB, 1));
gens.push(nextGeneration(gens[0], 2));
gens.push(nextGeneration(gens[1], 3));
/** The tape files of the cartridge in region A, in order. */
const tape: Buffer[] = [];
const tapeBytes = () => tape.reduce((n, f) => n + f.length, 0);

async function replicateAndWait(a: TestServer, target: string) {
  const job = await ok(a, 'POST', `/api/v1/cartridges/${BARCODE}/replicate`, { target, wait: true });
  expect(job.state, JSON.stringify(job)).toBe('done');
  return job;
}

/** Region B: a library to restore into; the replica goes from the vault into drive 0. */
async function loadReplica(b: TestServer, lib = 'dr'): Promise<void> {
  if ((await call(b, 'GET', `/api/v1/libraries/${lib}`)).status === 404) await ok(b, 'POST', '/api/v1/libraries', { name: lib, drives: 2, slots: 8, mailslots: 2 });
  await ok(b, 'POST', `/api/v1/libraries/${lib}/insert`, { barcode: BARCODE });
  await ok(b, 'POST', `/api/v1/libraries/${lib}/import`, { barcode: BARCODE });
  await ok(b, 'POST', `/api/v1/libraries/${lib}/drives/0/load`, { barcode: BARCODE });
}

async function readAll(b: TestServer, files: number, lib = 'dr'): Promise<Buffer[]> {
  await ok(b, 'POST', `/api/v1/libraries/${lib}/drives/0/rewind`, {});
  const out: Buffer[] = [];
  for (let i = 0; i < files; i++) {
    const r = await getFile(b, lib, 0);
    expect(r.status).toBe(200);
    out.push(r.data);
  }
  return out;
}

describe('replication to S3 (s3rver) and restore in a second region', () => {
  let s3: RestartableServer | undefined;
  let slow: RestartableServer | undefined;
  let a: TestServer;
  let b: TestServer;
  let reason = '';
  const url = () => `s3://vtl-dr/region-a?endpoint=${s3!.endpoint}&region=us-east-1&pathStyle=true`;

  beforeAll(async () => {
    try {
      s3 = await startS3rver('vtl-dr');
      slow = await startS3rver('vtl-dr2');
    } catch (err) {
      reason = `s3rver unavailable: ${(err as Error).message}`;
      console.warn(`SKIPPED ${reason}`);
      return;
    }
    a = await startTestServer({ demo: true });
    b = await startTestServer();
  }, 60_000);
  afterAll(async () => {
    await a?.stop();
    await b?.stop();
    await s3?.stop();
    await slow?.stop();
  });

  const shipped: number[] = [];
  it('ships only new containers for generations 2 and 3', async (ctx: TestContext) => {
    if (!s3) ctx.skip(reason);
    await ok(a, 'POST', '/api/v1/replication/targets', { name: 'east', url: url() });
    await ok(a, 'POST', `/api/v1/libraries/lib1/drives/0/load`, { barcode: BARCODE });
    for (const g of gens) {
      expect((await putFile(a, 'lib1', 0, g)).status).toBe(200);
      tape.push(g);
      const job = await replicateAndWait(a, 'east');
      shipped.push(job.result.bytesShipped);
    }
    console.log(`bytes shipped per generation: ${gens.map((g, i) => `gen ${i + 1}: ${(shipped[i] / MiB).toFixed(2)} MiB of ${(g.length / MiB).toFixed(2)} MiB logical`).join('; ')}`);
    expect(shipped[0]).toBeGreaterThan(0);
    // Every container on the target was shipped by these jobs, and counted (puts run in parallel).
    const tier = await openTier(url());
    let containers = 0;
    let onTarget = 0;
    for await (const o of tier.list('containers/')) (containers++, (onTarget += o.size));
    await tier.close();
    expect(containers).toBeGreaterThan(1);
    expect(shipped.reduce((x, y) => x + y, 0)).toBeGreaterThanOrEqual(onTarget);
    // Generations 2 and 3 add ~1.2 MiB of new data each: far below their 13-14 MiB.
    for (const i of [1, 2]) expect(shipped[i]).toBeLessThan(gens[i].length * 0.25);
    const detail = await ok(a, 'GET', `/api/v1/cartridges/${BARCODE}`);
    expect(detail.replication).toHaveLength(1);
    expect(detail.replication[0]).toMatchObject({ target: 'east', state: 'replicated', seq: 3 });
    expect(detail.replication[0].lagSeconds).toBeGreaterThanOrEqual(0);
    expect(detail.replication[0].bytesShipped).toBe(shipped.reduce((x, y) => x + y, 0));
    const status = await ok(a, 'GET', '/api/v1/replication/status');
    expect(status.targets[0]).toMatchObject({ name: 'east', cartridges: 1, replicated: 1, pending: 0, maxLagSeconds: 0 });
    // A write after the replication makes the replica stale; replicating again makes it current.
    tape.push(randomBytes(4096, 9));
    expect((await putFile(a, 'lib1', 0, tape[3])).status).toBe(200);
    const stale = (await ok(a, 'GET', `/api/v1/cartridges/${BARCODE}/replication`)).items[0];
    expect(stale.state).toBe('stale');
    expect(stale.lagSeconds).toBeGreaterThanOrEqual(0);
    await replicateAndWait(a, 'east');
    expect((await ok(a, 'GET', `/api/v1/cartridges/${BARCODE}/replication`)).items[0].state).toBe('replicated');
  }, 120_000);

  it('region B attaches with the recovery key and restores every generation bit for bit', async (ctx: TestContext) => {
    if (!s3) ctx.skip(reason);
    const { keyFile } = await ok(a, 'POST', '/api/v1/dr/export-key', { passphrase: PASSPHRASE });
    expect(keyFile).not.toContain(PASSPHRASE);
    const wrong = await call(b, 'POST', '/api/v1/dr/sources', { url: url(), keyFile, passphrase: 'not the passphrase' });
    expect(wrong.status).toBe(400);
    const attached = await ok(b, 'POST', '/api/v1/dr/sources', { url: url(), keyFile, passphrase: PASSPHRASE });
    expect(attached.imported).toEqual([{ barcode: BARCODE, seq: 4, logicalBytes: tapeBytes() }]);
    const list = await ok(b, 'GET', '/api/v1/dr/cartridges');
    expect(list.items[0]).toMatchObject({ barcode: BARCODE, state: 'replica', seq: 4 });
    const cart = await ok(b, 'GET', `/api/v1/cartridges/${BARCODE}`);
    expect(cart).toMatchObject({ location: { kind: 'vault' }, writeProtected: true, files: 4 });
    expect(cart.replica).toMatchObject({ barcode: BARCODE, state: 'replica' });
    await loadReplica(b);
    let t0 = Date.now();
    const cold = await readAll(b, 4);
    const coldS = (Date.now() - t0) / 1000;
    cold.forEach((f, i) => expect(sha(f), `tape file ${i + 1}`).toBe(sha(tape[i])));
    t0 = Date.now();
    const warm = await readAll(b, 4);
    const warmS = (Date.now() - t0) / 1000;
    warm.forEach((f, i) => expect(sha(f)).toBe(sha(tape[i])));
    const total = tapeBytes() / 1e6;
    console.log(`region B restore of ${total.toFixed(1)} MB: cold ${(total / coldS).toFixed(1)} MB/s (fetching from s3rver), warm ${(total / warmS).toFixed(1)} MB/s (cache)`);
    // A replica is read-only: writing is refused, and so is clearing its write protect.
    expect((await putFile(b, 'dr', 0, Buffer.alloc(1024))).status).toBe(409);
    expect((await call(b, 'PATCH', `/api/v1/cartridges/${BARCODE}`, { writeProtected: false })).status).toBe(400);
    // tar through rmt is refused at open with why, and how to promote it
    const rmt = await RawClient.connect(Number(b.server.rmtAddress.split(':').pop()));
    try {
      rmtRefused(await rmt.open('/dr/nst0', '2 O_RDWR'), ERRNO.EROFS[0], new RegExp(`read-only: .*promote it to write \\(vtl dr promote ${BARCODE}\\)`));
    } finally {
      rmt.socket.destroy();
    }
    // A restore test (verify job) reads it through the replica too.
    const v = await ok(b, 'POST', `/api/v1/cartridges/${BARCODE}/verify`, {});
    let job = v;
    while (job.state === 'running') job = await ok(b, 'GET', `/api/v1/jobs/${v.id}`);
    expect(job.state, JSON.stringify(job)).toBe('succeeded');
    await ok(b, 'POST', '/api/v1/libraries/dr/drives/0/unload', {});
  }, 120_000);

  it('a newer generation arrives by refresh; promote makes the replica writable in region B', async (ctx: TestContext) => {
    if (!s3) ctx.skip(reason);
    const gen4 = nextGeneration(gens[2], 4);
    await ok(a, 'POST', '/api/v1/libraries/lib1/drives/0/rewind', {});
    await ok(a, 'POST', '/api/v1/libraries/lib1/drives/0/space', { kind: 'eod', count: 0 });
    expect((await putFile(a, 'lib1', 0, gen4)).status).toBe(200);
    tape.push(gen4);
    await replicateAndWait(a, 'east');
    const r = await ok(b, 'POST', '/api/v1/dr/refresh', {});
    expect(r.results[0].imported).toEqual([{ barcode: BARCODE, seq: 5, logicalBytes: tapeBytes() }]);
    await ok(b, 'POST', '/api/v1/libraries/dr/drives/0/load', { barcode: BARCODE });
    const files = await readAll(b, 5);
    expect(sha(files[4])).toBe(sha(gen4));
    await ok(b, 'POST', '/api/v1/libraries/dr/drives/0/unload', {});
    const promoted = await ok(b, 'POST', `/api/v1/dr/cartridges/${BARCODE}/promote`);
    expect(promoted).toMatchObject({ barcode: BARCODE, writeProtected: false, files: 5 });
    await ok(b, 'POST', '/api/v1/libraries/dr/drives/0/load', { barcode: BARCODE });
    const after = await readAll(b, 5);
    after.forEach((f, i) => expect(sha(f)).toBe(sha(tape[i])));
    await ok(b, 'POST', '/api/v1/libraries/dr/drives/0/space', { kind: 'eod', count: 0 });
    expect((await putFile(b, 'dr', 0, randomBytes(100_000, 5))).status).toBe(200);
    // The promoted cartridge survives a restart of region B as a local one.
    await b.restart();
    expect((await ok(b, 'GET', '/api/v1/dr/cartridges')).items[0]).toMatchObject({ state: 'promoted' });
    expect(await ok(b, 'GET', `/api/v1/cartridges/${BARCODE}`)).toMatchObject({ files: 6, writeProtected: false });
  }, 120_000);

  it('a target killed mid-replication catches up when it returns, shipping nothing twice', async (ctx: TestContext) => {
    if (!slow) ctx.skip(reason);
    const slowUrl = `s3://vtl-dr2/a?endpoint=${slow.endpoint}&region=us-east-1&pathStyle=true`;
    // Slow enough (4 MiB/s) to be caught in the middle.
    await ok(a, 'POST', '/api/v1/replication/targets', { name: 'west', url: slowUrl, bandwidthLimit: 4 * MiB });
    const job = await ok(a, 'POST', `/api/v1/cartridges/${BARCODE}/replicate`, { target: 'west' });
    let j = job;
    while (!(j.state === 'running' && j.progress.done >= 2)) {
      expect(j.state).not.toBe('done');
      await new Promise((r) => setTimeout(r, 20));
      j = await ok(a, 'GET', `/api/v1/replication/jobs/${job.id}`);
    }
    await slow.kill();
    // The puts in flight fail (after the tier's own retries): the job goes back to the queue.
    for (let i = 0; i < 300 && j.state === 'running'; i++) {
      await new Promise((r) => setTimeout(r, 100));
      j = await ok(a, 'GET', `/api/v1/replication/jobs/${job.id}`);
    }
    expect(j.state).toBe('queued'); // waiting for the target, not failed
    // `vtl replicate --wait` meanwhile (its request joins the queued job): a log line per failed attempt
    const waiting = runCli(['replicate', BARCODE, '--target', 'west', '--wait', '--json', '--url', a.url, '--token-file', a.server.adminTokenFile]);
    await new Promise((r) => setTimeout(r, 1500)); // a few attempts against the dead target
    j = await ok(a, 'GET', `/api/v1/replication/jobs/${job.id}`);
    expect(j.state).not.toBe('failed');
    expect(j.lastError).toBeTruthy();
    await slow.restart();
    const waited = await waiting;
    expect(waited.stderr).toMatch(new RegExp(`^vtl: replicating ${BARCODE} to west: attempt \\d+ failed \\(.+\\); retrying at .*, as long as it takes`, 'm'));
    expect(waited.exitCode).toBe(0);
    j = JSON.parse(waited.out);
    expect(j.id).toBe(job.id);
    expect(j.state, JSON.stringify(j)).toBe('done');
    expect(j.attempts).toBeGreaterThan(1);
    const stats = a.server.store.chunks.getStats();
    // The resumed attempt shipped only what the first one had not.
    expect(j.result.containersShipped).toBeLessThan(stats.containers);
    const tier = await openTier(slowUrl);
    const containers: number[] = [];
    const catalogs: string[] = [];
    for await (const e of tier.list('')) {
      if (e.key.startsWith('containers/')) containers.push(e.size);
      if (e.key.startsWith('catalogs/')) catalogs.push(e.key);
    }
    await tier.close();
    // Every container exactly once, and one catalog for the one job.
    expect(containers.length).toBe(stats.containers);
    expect(catalogs).toEqual([`catalogs/${BARCODE}/000000000001`]);
    // And it restores in a third region.
    const c = await startTestServer();
    try {
      const { keyFile } = await ok(a, 'POST', '/api/v1/dr/export-key', { passphrase: PASSPHRASE });
      await ok(c, 'POST', '/api/v1/dr/sources', { url: slowUrl, keyFile, passphrase: PASSPHRASE });
      await loadReplica(c);
      const files = await readAll(c, tape.length);
      files.forEach((f, i) => expect(sha(f)).toBe(sha(tape[i])));
    } finally {
      await c.stop();
    }
  }, 180_000);

  it('a library policy replicates cartridges when they are unloaded', async (ctx: TestContext) => {
    if (!s3) ctx.skip(reason);
    await ok(a, 'PUT', '/api/v1/libraries/lib1/replication', { target: 'east', on: ['unloaded'] });
    await ok(a, 'POST', '/api/v1/libraries/lib1/drives/1/load', { barcode: 'VT0002L7' });
    expect((await putFile(a, 'lib1', 1, randomBytes(300_000, 7))).status).toBe(200);
    await ok(a, 'POST', '/api/v1/libraries/lib1/drives/1/unload', {});
    let jobs = await ok(a, 'GET', '/api/v1/replication/jobs?barcode=VT0002L7');
    for (let i = 0; i < 100 && jobs.items.length === 0; i++) {
      await new Promise((r) => setTimeout(r, 20)); // the unload's event is handled right after it
      jobs = await ok(a, 'GET', '/api/v1/replication/jobs?barcode=VT0002L7');
    }
    expect(jobs.items[0]).toMatchObject({ reason: 'unloaded', target: 'east' });
    for (let i = 0; i < 200 && jobs.items[0].state !== 'done'; i++) {
      await new Promise((r) => setTimeout(r, 50));
      jobs = await ok(a, 'GET', '/api/v1/replication/jobs?barcode=VT0002L7');
    }
    expect(jobs.items[0].state).toBe('done');
    const metrics = await call(a, 'GET', '/metrics');
    expect(String(metrics.body)).toMatch(/vtl_replication_shipped_bytes\{target="east"\} \d+/);
  }, 60_000);
});

describe('replication through Azurite', () => {
  let az: LocalServer | undefined;
  let a: TestServer;
  let b: TestServer;
  let reason = '';

  beforeAll(async () => {
    try {
      az = await startAzurite();
    } catch (err) {
      reason = `Azurite unavailable: ${(err as Error).message}`;
      console.warn(`SKIPPED ${reason}`);
      return;
    }
    a = await startTestServer({ demo: true });
    b = await startTestServer();
  }, 60_000);
  afterAll(async () => {
    await a?.stop();
    await b?.stop();
    await az?.stop();
  });

  it('replicates two generations and restores them in region B', async (ctx: TestContext) => {
    if (!az) ctx.skip(reason);
    const url = `azure://vtl-dr/region-a?account=${AZURITE_ACCOUNT}&endpoint=${az.endpoint}`;
    await ok(a, 'POST', '/api/v1/replication/targets', { name: 'blob', url, createBucket: true });
    await ok(a, 'POST', '/api/v1/libraries/lib1/drives/0/load', { barcode: BARCODE });
    const shipped: number[] = [];
    for (const g of gens.slice(0, 2)) {
      expect((await putFile(a, 'lib1', 0, g)).status).toBe(200);
      shipped.push((await replicateAndWait(a, 'blob')).result.bytesShipped);
    }
    expect(shipped[1]).toBeLessThan(gens[1].length * 0.25);
    const { keyFile } = await ok(a, 'POST', '/api/v1/dr/export-key', { passphrase: PASSPHRASE });
    await ok(b, 'POST', '/api/v1/dr/sources', { url, keyFile, passphrase: PASSPHRASE, name: 'site-a' });
    await loadReplica(b);
    const files = await readAll(b, 2);
    files.forEach((f, i) => expect(sha(f)).toBe(sha(gens[i])));
  }, 120_000);
});
