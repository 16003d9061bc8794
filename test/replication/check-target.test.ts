/**
 * `vtl replicate target check`: containers deleted or damaged on the target, and a pack deleted
 * there, are found; what this store still has is shipped again and a broken replica is
 * replicated in full at its next job; region B then restores bit for bit. Two real servers and
 * a `file://` target.
 */
import { readdir, rm, unlink, mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { runCli } from '../cli/run-cli.js';
import { flip, randomBytes } from '../helpers/data.js';
import { ok, getFile, putFile, startTestServer, type TestServer } from '../api/helpers.js';

const MiB = 1 << 20;
const PASSPHRASE = 'check target passphrase';
let a: TestServer;
let b: TestServer;
let tierDir: string;

beforeAll(async () => {
  tierDir = await mkdtemp(join(tmpdir(), 'vtl-check-tier-'));
  a = await startTestServer({ demo: true });
  b = await startTestServer();
});
afterAll(async () => {
  await a?.stop();
  await b?.stop();
  await rm(tierDir, { recursive: true, force: true });
});

async function write(barcode: string, drive: number, data: Buffer): Promise<void> {
  await ok(a, 'POST', `/api/v1/libraries/lib1/drives/${drive}/load`, { barcode });
  expect((await putFile(a, 'lib1', drive, data)).status).toBe(200);
  await ok(a, 'POST', `/api/v1/libraries/lib1/drives/${drive}/unload`, {});
  expect((await ok(a, 'POST', `/api/v1/cartridges/${barcode}/replicate`, { target: 'vault', wait: true })).state).toBe('done');
}

/** The check over the API (as `vtl replicate target check` calls it). */
async function check(deep: boolean) {
  return ok(a, 'POST', '/api/v1/replication/targets/vault/check', { deep });
}

it('finds what went missing or bad on the target, ships it again, and region B restores bit for bit', async () => {
  const tier = join(tierDir, 'tier');
  await ok(a, 'POST', '/api/v1/replication/targets', { name: 'vault', url: `file://${tier}`, createBucket: true });
  const one = randomBytes(20 * MiB, 1);
  const two = randomBytes(6 * MiB, 2);
  await write('VT0001L7', 0, one);
  await write('VT0002L7', 1, two);

  // a clean target checks clean
  const clean = await check(true);
  expect(clean).toMatchObject({ missing: [], damaged: [], reshipped: [], lost: [], brokenReplicas: [], cartridgesChecked: 2 });
  expect(clean.containersRecorded).toBeGreaterThanOrEqual(3);

  // on the target: a container deleted, another damaged, and VT0002L7's pack deleted
  const containers = (await readdir(join(tier, 'containers'))).filter((n) => /^[0-9a-f]{8}$/.test(n)).sort();
  const [gone, bad] = [containers[0], containers[1]];
  await unlink(join(tier, 'containers', gone));
  await flip(join(tier, 'containers', bad), 4096);
  const packs = await readdir(join(tier, 'packs', 'VT0002L7'));
  await unlink(join(tier, 'packs', 'VT0002L7', packs[0]));

  // a quick check sees the missing container (by listing) and the missing pack, not the damage
  const quick = await check(false);
  expect(quick.missing).toEqual([parseInt(gone, 16)]);
  expect(quick.reshipped).toEqual([parseInt(gone, 16)]);
  expect(quick.damaged).toEqual([]);
  expect(quick.brokenReplicas).toEqual([expect.objectContaining({ barcode: 'VT0002L7', reason: expect.stringMatching(/^pack packs\/VT0002L7\/.* missing$/) })]);
  // a deep check compares every byte: the damaged one is shipped again (here through the CLI)
  const cli = await runCli(['replicate', 'target', 'check', 'vault', '--deep', '--json', '--url', a.url, '--token-file', a.server.adminTokenFile]);
  const deep = JSON.parse(cli.out);
  expect(cli.exitCode).toBe(1); // something was found
  expect(deep.damaged).toEqual([parseInt(bad, 16)]);
  expect(deep.reshipped).toEqual([parseInt(bad, 16)]);
  expect(deep.missing).toEqual([]);

  // VT0002L7 was struck from the record: its next job ships its pages again, as a new generation
  const again = await ok(a, 'POST', '/api/v1/cartridges/VT0002L7/replicate', { target: 'vault', wait: true });
  expect(again).toMatchObject({ state: 'done', result: { seq: 2 } });
  expect(again.result.pagesShipped).toBeGreaterThan(0);
  const whole = await runCli(['replicate', 'target', 'check', 'vault', '--deep', '--url', a.url, '--token-file', a.server.adminTokenFile]);
  expect([whole.error, whole.exitCode]).toEqual([undefined, 0]);
  expect(whole.out).toMatch(/^target vault: \d+ containers compared byte for byte, 2 replicas checked: whole\n$/);

  // region B restores both
  const { keyFile } = await ok(a, 'POST', '/api/v1/dr/export-key', { passphrase: PASSPHRASE });
  const attached = await ok(b, 'POST', '/api/v1/dr/sources', { url: `file://${tier}`, keyFile, passphrase: PASSPHRASE });
  expect(attached.imported.map((c: { barcode: string }) => c.barcode).sort()).toEqual(['VT0001L7', 'VT0002L7']);
  await ok(b, 'POST', '/api/v1/libraries', { name: 'dr', drives: 1, slots: 4, mailslots: 1 });
  for (const [barcode, data] of [['VT0001L7', one], ['VT0002L7', two]] as const) {
    await ok(b, 'POST', '/api/v1/libraries/dr/insert', { barcode });
    await ok(b, 'POST', '/api/v1/libraries/dr/import', { barcode });
    await ok(b, 'POST', '/api/v1/libraries/dr/drives/0/load', { barcode });
    const got = await getFile(b, 'dr', 0);
    expect(got.status).toBe(200);
    expect(got.data.equals(data), barcode).toBe(true);
    await ok(b, 'POST', '/api/v1/libraries/dr/drives/0/unload', {});
  }
}, 120_000);
