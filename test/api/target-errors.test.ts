/**
 * An object store that cannot be used reaches the user as what is wrong with it: `vtl dr attach`
 * of an S3 endpoint nothing listens on says the target cannot be reached (which URL, the
 * cause), with 502; an S3 server that refuses the access key says access was denied, naming the
 * target (not "Unknown (HTTP 403): UnknownError"). Never "internal error". Adding a replication
 * target answers the same way (not 400 INVALID: the request was fine, the store was not).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, type TestContext } from 'vitest';
import { openTier } from '../../src/tier/index.js';
import { runCli } from '../cli/run-cli.js';
import { startS3rver, type RestartableServer } from '../tier/servers.js';
import { call, startTestServer, type TestServer } from './helpers.js';

const PASSPHRASE = 'target errors passphrase';
let a: TestServer;
let b: TestServer;
let work: string;
let keyFile: string;
const saved = { id: process.env.AWS_ACCESS_KEY_ID, secret: process.env.AWS_SECRET_ACCESS_KEY };

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'vtl-target-errors-'));
  a = await startTestServer();
  b = await startTestServer();
  keyFile = (await call(a, 'POST', '/api/v1/dr/export-key', { passphrase: PASSPHRASE })).body.keyFile;
  process.env.AWS_ACCESS_KEY_ID = 'S3RVER';
  process.env.AWS_SECRET_ACCESS_KEY = 'S3RVER';
}, 60_000);
afterAll(async () => {
  process.env.AWS_ACCESS_KEY_ID = saved.id;
  process.env.AWS_SECRET_ACCESS_KEY = saved.secret;
  if (saved.id === undefined) delete process.env.AWS_ACCESS_KEY_ID;
  if (saved.secret === undefined) delete process.env.AWS_SECRET_ACCESS_KEY;
  await a?.stop();
  await b?.stop();
  await rm(work, { recursive: true, force: true });
});

/** A port on 127.0.0.1 that nothing listens on (connecting to it is ECONNREFUSED). */
async function closedPort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const port = (srv.address() as { port: number }).port;
  await new Promise((resolve) => srv.close(resolve));
  return port;
}

it('vtl dr attach of an S3 endpoint that is down: 502 TARGET_UNREACHABLE naming the URL and the cause', async () => {
  const port = await closedPort();
  const url = `s3://vtl-dr/site-a?endpoint=http://127.0.0.1:${port}&region=us-east-1&pathStyle=true`;
  const r = await call(b, 'POST', '/api/v1/dr/sources', { url, keyFile, passphrase: PASSPHRASE });
  expect(r.status, JSON.stringify(r.body)).toBe(502);
  expect(r.body.error).toBe('TARGET_UNREACHABLE');
  expect(r.body.message).toMatch(/cannot be reached/);
  expect(r.body.message).toContain('s3://vtl-dr/site-a');
  expect(r.body.message).toContain(`127.0.0.1:${port}`);
  expect(r.body.message).toContain('ECONNREFUSED');
  expect(r.body.message).not.toMatch(/ {2}/);

  const file = join(work, 'site-a.vtlkey');
  const { writeFile } = await import('node:fs/promises');
  await writeFile(file, keyFile, { mode: 0o600 });
  process.env.VTL_DR_PASSPHRASE = PASSPHRASE;
  try {
    const cli = await runCli(['dr', 'attach', url, '--key-file', file, '--url', b.url, '--token-file', b.server.adminTokenFile]);
    expect(cli.error ?? '').toMatch(/cannot be reached.*ECONNREFUSED/);
    expect(cli.error ?? '').not.toMatch(/internal/i);
  } finally {
    delete process.env.VTL_DR_PASSPHRASE;
  }
  expect((await call(b, 'GET', '/api/v1/dr/sources')).body.items).toEqual([]);
}, 60_000);

it('vtl replicate target add of an S3 endpoint that is down: 502 TARGET_UNREACHABLE, nothing added', async () => {
  const port = await closedPort();
  const url = `s3://vtl-dr/site-a?endpoint=http://127.0.0.1:${port}&region=us-east-1&pathStyle=true`;
  const r = await call(a, 'POST', '/api/v1/replication/targets', { name: 'down', url });
  expect(r.status, JSON.stringify(r.body)).toBe(502);
  expect(r.body.error).toBe('TARGET_UNREACHABLE');
  expect(r.body.message).toMatch(/^target down \(s3:\/\/vtl-dr\/site-a.*\) not added: .*cannot be reached.*ECONNREFUSED/);
  const cli = await runCli(['replicate', 'target', 'add', 'down', url, '--url', a.url, '--token-file', a.server.adminTokenFile]);
  expect(cli.error ?? '').toMatch(/not added: .*cannot be reached/);
  expect((await call(a, 'GET', '/api/v1/replication/targets')).body.items).toEqual([]);
}, 60_000);

describe('an S3 server that refuses the access key', () => {
  let s3: RestartableServer | undefined;
  let reason = '';
  beforeAll(async () => {
    try {
      s3 = await startS3rver('vtl-dr');
    } catch (err) {
      reason = `s3rver unavailable: ${(err as Error).message}`;
      console.warn(`SKIPPED ${reason}`);
    }
  }, 60_000);
  afterAll(async () => {
    await s3?.stop();
  });
  const url = () => `s3://vtl-dr/site-a?endpoint=${s3!.endpoint}&region=us-east-1&pathStyle=true`;
  const wrong = { AWS_ACCESS_KEY_ID: 'NOT-THE-KEY', AWS_SECRET_ACCESS_KEY: 'NOT-THE-SECRET' };

  it('opening the tier says access was denied and names the target', async (ctx: TestContext) => {
    if (!s3) ctx.skip(reason);
    const err = await openTier(url(), { env: wrong }).then(
      () => undefined,
      (e: Error) => e,
    );
    expect(err).toBeInstanceOf(Error);
    expect(err!.message).toMatch(/access denied/);
    expect(err!.message).toMatch(/credentials were refused/);
    expect(err!.message).toContain('s3://vtl-dr/site-a');
    expect(err!.message).toContain('403');
    expect(err!.message).not.toMatch(/UnknownError| {2}/);
    expect(err!.message).not.toContain('NOT-THE-SECRET');
  });

  it('target add with the wrong key: 502 TARGET_ACCESS_DENIED naming the target, nothing added', async (ctx: TestContext) => {
    if (!s3) ctx.skip(reason);
    process.env.AWS_ACCESS_KEY_ID = wrong.AWS_ACCESS_KEY_ID;
    process.env.AWS_SECRET_ACCESS_KEY = wrong.AWS_SECRET_ACCESS_KEY;
    try {
      const r = await call(a, 'POST', '/api/v1/replication/targets', { name: 'denied', url: url() });
      expect(r.status, JSON.stringify(r.body)).toBe(502);
      expect(r.body.error).toBe('TARGET_ACCESS_DENIED');
      expect(r.body.message).toMatch(/^target denied .* not added: access denied by s3:\/\/vtl-dr\/site-a.*credentials were refused/);
      expect(r.body.message).not.toContain('NOT-THE-SECRET');
    } finally {
      process.env.AWS_ACCESS_KEY_ID = 'S3RVER';
      process.env.AWS_SECRET_ACCESS_KEY = 'S3RVER';
    }
    expect((await call(a, 'GET', '/api/v1/replication/targets')).body.items).toEqual([]);
  });

  it('dr attach with the wrong key: 502 TARGET_ACCESS_DENIED, not internal', async (ctx: TestContext) => {
    if (!s3) ctx.skip(reason);
    process.env.AWS_ACCESS_KEY_ID = wrong.AWS_ACCESS_KEY_ID;
    process.env.AWS_SECRET_ACCESS_KEY = wrong.AWS_SECRET_ACCESS_KEY;
    try {
      const r = await call(b, 'POST', '/api/v1/dr/sources', { url: url(), keyFile, passphrase: PASSPHRASE });
      expect(r.status, JSON.stringify(r.body)).toBe(502);
      expect(r.body.error).toBe('TARGET_ACCESS_DENIED');
      expect(r.body.message).toMatch(/access denied by s3:\/\/vtl-dr\/site-a.*credentials were refused/);
    } finally {
      process.env.AWS_ACCESS_KEY_ID = 'S3RVER';
      process.env.AWS_SECRET_ACCESS_KEY = 'S3RVER';
    }
  });
});
