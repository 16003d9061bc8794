/**
 * The replication and DR commands of `vtl` (as tools call them) against two real servers and a
 * `file://` target, and the replication-lag alert.
 */
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { runCli } from '../cli/run-cli.js';
import { backupLikeBytes } from '../helpers/data.js';
import { call, getFile, putFile, startTestServer, type TestServer } from '../api/helpers.js';

let a: TestServer;
let b: TestServer;
let work: string;
const data = backupLikeBytes(3 * 1024 * 1024, 41);

beforeAll(async () => {
  process.env.VTL_REPLICATION_LAG_ALERT_S = '0';
  process.env.VTL_REPLICATION_LAG_CHECK_MS = '200';
  a = await startTestServer({ demo: true });
  b = await startTestServer();
  work = await mkdtemp(join(tmpdir(), 'vtl-repl-cli-'));
});
afterAll(async () => {
  delete process.env.VTL_REPLICATION_LAG_ALERT_S;
  delete process.env.VTL_REPLICATION_LAG_CHECK_MS;
  await a?.stop();
  await b?.stop();
  await rm(work, { recursive: true, force: true });
});

const vtl = (t: TestServer, args: string[]) => runCli([...args, '--url', t.url, '--token-file', t.server.adminTokenFile]);

it('replicates, exports the recovery key, attaches, lists and promotes through the CLI', async () => {
  const url = `file://${join(work, 'tier')}`;
  expect((await vtl(a, ['replicate', 'target', 'add', 'vault', url, '--create-bucket'])).out).toContain('target vault');
  expect(JSON.parse((await vtl(a, ['replicate', 'target', 'list', '--json'])).out)).toEqual([expect.objectContaining({ name: 'vault', bandwidthLimit: null })]);
  expect((await call(a, 'POST', '/api/v1/libraries/lib1/drives/0/load', { barcode: 'VT0003L7' })).status).toBe(200);
  expect((await putFile(a, 'lib1', 0, data)).status).toBe(200);
  const job = JSON.parse((await vtl(a, ['replicate', 'VT0003L7', '--target', 'vault', '--wait', '--json'])).out);
  expect(job).toMatchObject({ state: 'done', barcode: 'VT0003L7', result: { seq: 1 } });
  const missing = await vtl(a, ['replicate', 'VT0003L7']);
  expect(missing.error).toMatch(/--target/);
  expect((await vtl(a, ['replicate', 'status'])).out).toMatch(/vault\s+1\s+1\s+0/);
  // a library's policy (its --target is also an option of `replicate` itself)
  expect((await vtl(a, ['replicate', 'policy', 'set', 'lib1', '--target', 'vault', '--on', 'exported'])).out).toContain('library lib1: replicate to vault when exported');
  expect((await vtl(a, ['replicate', 'policy', 'set', 'lib1'])).error).toMatch(/--target NAME is required/);
  expect((await vtl(a, ['replicate', 'policy', 'remove', 'lib1'])).out).toContain('no automatic replication');

  process.env.VTL_DR_PASSPHRASE = 'cli passphrase 1';
  try {
    const keyFile = join(work, 'site-a.vtlkey');
    expect((await vtl(a, ['dr', 'export-key', '--out', keyFile])).out).toContain('written to');
    expect((await stat(keyFile)).mode & 0o777).toBe(0o600);
    expect((await vtl(a, ['dr', 'export-key', '--out', keyFile])).error).toMatch(/exists/);
    expect(JSON.parse(await readFile(keyFile, 'utf8')).format).toBe('vtl-recovery-key');
    const attached = JSON.parse((await vtl(b, ['dr', 'attach', url, '--key-file', keyFile, '--json'])).out);
    expect(attached.imported).toEqual([{ barcode: 'VT0003L7', seq: 1, logicalBytes: data.length }]);
  } finally {
    delete process.env.VTL_DR_PASSPHRASE;
  }
  expect(JSON.parse((await vtl(b, ['dr', 'list', '--json'])).out)).toEqual([expect.objectContaining({ barcode: 'VT0003L7', state: 'replica' })]);
  expect((await vtl(b, ['dr', 'promote', 'VT0003L7'])).out).toContain('writable');
  expect(await (await call(b, 'POST', '/api/v1/libraries', { name: 'dr', drives: 1, slots: 2, mailslots: 1 })).status).toBe(201);
  for (const step of [['insert', { barcode: 'VT0003L7' }], ['import', { barcode: 'VT0003L7' }], ['drives/0/load', { barcode: 'VT0003L7' }]] as const) {
    expect((await call(b, 'POST', `/api/v1/libraries/dr/${step[0]}`, step[1])).status).toBe(200);
  }
  expect((await getFile(b, 'dr', 0)).data.equals(data)).toBe(true);
}, 60_000);

it('raises a replication_lag alert when a replica falls behind', async () => {
  // With a 0 s threshold, VT0003L7 may already have lagged while its first job was queued: only
  // alerts raised from here on count.
  type Alert = { id: string; kind: string; message: string };
  const lagAlerts = async () => ((await call(a, 'GET', '/api/v1/alerts')).body.items as Alert[]).filter((x) => x.kind === 'replication_lag');
  const before = new Set((await lagAlerts()).map((x) => x.id));
  const fresh = async () => (await lagAlerts()).filter((x) => !before.has(x.id));
  // VT0003L7 was replicated; new data makes its replica stale, with a lag above the threshold (0 s here).
  expect((await putFile(a, 'lib1', 0, Buffer.alloc(10_000, 1))).status).toBe(200);
  let alerts: Alert[] = [];
  for (let i = 0; i < 100 && alerts.length === 0; i++) {
    await new Promise((r) => setTimeout(r, 100));
    alerts = await fresh();
  }
  expect(alerts[0]?.message).toMatch(/VT0003L7.*vault/);
  // Once per lag episode, not at every check.
  await new Promise((r) => setTimeout(r, 600));
  expect(await fresh()).toHaveLength(1);
  // More data while the target still lacks the first: the same episode, no second alert.
  expect((await putFile(a, 'lib1', 0, Buffer.alloc(10_000, 2))).status).toBe(200);
  await new Promise((r) => setTimeout(r, 600));
  expect(await fresh()).toHaveLength(1);
  const metrics = String((await call(a, 'GET', '/metrics')).body);
  expect(metrics).toMatch(/vtl_replication_lag_seconds\{target="vault"\} \d/);
}, 30_000);
