/**
 * The scheduled target check (VTL_TARGET_CHECK_EVERY_MS, here 300 ms): a container deleted on a
 * `file://` target is found and shipped again without anyone asking, a target that cannot be
 * written is reported, both on stderr, to the replicator's check listeners and as the target's
 * `lastCheck` in the replication status; the schedule stops with the server, and 0 turns it off.
 * Real servers, real target directories.
 */
import { mkdir, mkdtemp, readdir, rename, rm, stat, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, expect, it, vi } from 'vitest';
import { checkAlert, type TargetCheckRecord } from '../../src/replication/index.js';
import { randomBytes } from '../helpers/data.js';
import { ok, putFile, startTestServer, type TestServer } from '../api/helpers.js';

let a: TestServer;
let work: string;
const seen: TargetCheckRecord[] = [];

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'vtl-check-schedule-'));
  process.env.VTL_TARGET_CHECK_EVERY_MS = '300';
  try {
    a = await startTestServer({ demo: true });
  } finally {
    delete process.env.VTL_TARGET_CHECK_EVERY_MS;
  }
  a.server.replicator.onCheck((c) => seen.push(c));
});
afterAll(async () => {
  await a?.stop();
  await rm(work, { recursive: true, force: true });
});
afterEach(() => {
  vi.restoreAllMocks();
});

async function until<T>(what: string, read: () => T | Promise<T>, done: (v: T) => boolean, ms = 20_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await read();
    if (done(v)) return v;
    if (Date.now() > end) throw new Error(`${what}: still ${JSON.stringify(v)} after ${ms} ms`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** The first scheduled check of vault recorded from now on that `match`es. */
async function nextCheck(what: string, match: (c: TargetCheckRecord) => boolean): Promise<TargetCheckRecord> {
  const from = seen.length;
  const found = () => seen.slice(from).find((c) => c.target === 'vault' && c.scheduled && match(c));
  return (await until(what, found, (c) => c !== undefined))!;
}

async function lastCheck(t: TestServer, target: string): Promise<TargetCheckRecord | null> {
  const targets = (await ok(t, 'GET', '/api/v1/replication/status')).targets as Array<{ name: string; lastCheck: TargetCheckRecord | null }>;
  return targets.find((s) => s.name === target)!.lastCheck;
}

it('finds a container deleted on the target and ships it again on its own; a target that cannot be written is reported', async () => {
  const stderr = vi.spyOn(console, 'error'); // spied on, still written
  const tier = join(work, 'tier');
  await mkdir(tier);
  await ok(a, 'POST', '/api/v1/replication/targets', { name: 'vault', url: `file://${tier}` });
  await ok(a, 'POST', '/api/v1/libraries/lib1/drives/0/load', { barcode: 'VT0001L7' });
  expect((await putFile(a, 'lib1', 0, randomBytes(1 << 20, 3))).status).toBe(200);
  await ok(a, 'POST', '/api/v1/libraries/lib1/drives/0/unload', {});
  expect((await ok(a, 'POST', '/api/v1/cartridges/VT0001L7/replicate', { target: 'vault', wait: true })).state).toBe('done');
  const clean = await nextCheck('a clean check', (c) => c.ok);
  expect(clean).toMatchObject({ deep: false, missing: 0, error: null });
  expect(checkAlert(clean)).toBeUndefined();

  // A container goes missing on the target: the next scheduled check ships it again.
  const [name] = (await readdir(join(tier, 'containers'))).filter((n) => /^[0-9a-f]{8}$/.test(n));
  const file = join(tier, 'containers', name);
  const size = (await stat(file)).size;
  await unlink(file);
  const found = await nextCheck('a check that finds it', (c) => !c.ok);
  expect(found).toMatchObject({ deep: false, ok: false, missing: 1, damaged: 0, reshipped: 1, lost: 0, brokenReplicas: 0, error: null });
  expect((await stat(file)).size).toBe(size);
  const message = checkAlert(found)!;
  expect(message).toBe('scheduled check of replication target vault found 1 container missing: 1 shipped again, 0 no longer here to ship');
  expect(stderr).toHaveBeenCalledWith(`vtl: ${message}`);
  // and it reaches operators as an alert (webhooks, audit log)
  const alerts = async () => ((await ok(a, 'GET', '/api/v1/alerts')).items as Array<{ kind: string; message: string }>).filter((x) => x.kind === 'target_check');
  expect((await until('the alert', alerts, (l) => l.some((x) => x.message === message))).length).toBeGreaterThan(0);
  // The status shows the newest check: this one, or a clean one after it.
  expect(await lastCheck(a, 'vault')).toMatchObject({ target: 'vault', scheduled: true, deep: false, at: expect.any(String) });
  expect(Date.parse((await lastCheck(a, 'vault'))!.at)).toBeGreaterThanOrEqual(Date.parse(found.at));

  // The target's directory replaced by a file: the check cannot ship there and says so.
  await rename(tier, `${tier}.away`);
  await writeFile(tier, 'not a directory');
  try {
    const failed = await nextCheck('a failed check', (c) => c.error !== null);
    expect(failed).toMatchObject({ ok: false, reshipped: 0, error: expect.stringMatching(/not a directory/i) });
    expect(stderr).toHaveBeenCalledWith(`vtl: scheduled check of replication target vault failed: ${failed.error}`);
    expect(await lastCheck(a, 'vault')).toMatchObject({ ok: false, error: expect.stringMatching(/not a directory/i) });
    await until('the failure alert', alerts, (l) => l.some((x) => x.message === checkAlert(failed)));
  } finally {
    await rm(tier);
    await rename(`${tier}.away`, tier);
  }
  await nextCheck('a clean check again', (c) => c.ok);
  expect(await lastCheck(a, 'vault')).toMatchObject({ ok: true, error: null });

  // No check after the server has closed.
  await a.server.close();
  const count = seen.length;
  await new Promise((r) => setTimeout(r, 1000));
  expect(seen.length).toBe(count);
}, 60_000);

it('checks nothing when VTL_TARGET_CHECK_EVERY_MS is 0', async () => {
  process.env.VTL_TARGET_CHECK_EVERY_MS = '0';
  let b: TestServer;
  try {
    b = await startTestServer();
  } finally {
    delete process.env.VTL_TARGET_CHECK_EVERY_MS;
  }
  try {
    const off: TargetCheckRecord[] = [];
    b.server.replicator.onCheck((c) => off.push(c));
    const tier = join(work, 'off');
    await mkdir(tier);
    await ok(b, 'POST', '/api/v1/replication/targets', { name: 'off', url: `file://${tier}` });
    await new Promise((r) => setTimeout(r, 1000));
    expect(off).toEqual([]);
    expect(await lastCheck(b, 'off')).toBeNull();
    // A manual check is recorded all the same.
    await ok(b, 'POST', '/api/v1/replication/targets/off/check', {});
    expect(await lastCheck(b, 'off')).toMatchObject({ target: 'off', scheduled: false, ok: true, error: null });
  } finally {
    await b.stop();
  }
}, 30_000);
