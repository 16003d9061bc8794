/**
 * Adding a replication target never creates a missing bucket, container or directory unless the
 * operator asks: a mistyped name is refused (404 BUCKET_NOT_FOUND, naming it and the endpoint,
 * saying how to proceed) and nothing is created, as the store's own listing shows; with
 * `--create-bucket` (API `createBucket: true`) it is created and replication into it works; an
 * existing one needs no flag. DR attach never creates one either. Real s3rver and Azurite on
 * 127.0.0.1, a real vtl server, and the `vtl` command.
 */
import { mkdir, mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ListBucketsCommand, S3Client } from '@aws-sdk/client-s3';
import { BlobServiceClient, StorageSharedKeyCredential } from '@azure/storage-blob';
import { afterAll, beforeAll, describe, expect, it, type TestContext } from 'vitest';
import { openTier } from '../../src/tier/index.js';
import { call, ok, putFile, startTestServer, type TestServer } from '../api/helpers.js';
import { runCli } from '../cli/run-cli.js';
import { backupLikeBytes } from '../helpers/data.js';
import { AZURITE_ACCOUNT, AZURITE_KEY, startAzurite, startS3rver, type LocalServer } from '../tier/servers.js';

const S3_ENV = { AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER' };
const AZURE_ENV = { AZURE_STORAGE_ACCOUNT: AZURITE_ACCOUNT, AZURE_STORAGE_KEY: AZURITE_KEY };
const ENV_NAMES = [...Object.keys(S3_ENV), ...Object.keys(AZURE_ENV)];
const saved = Object.fromEntries(ENV_NAMES.map((k) => [k, process.env[k]]));
const TARGETS = '/api/v1/replication/targets';
const BARCODE = 'VT0004L7';
const PASSPHRASE = 'target bucket passphrase';

let a: TestServer;
let b: TestServer;
let work: string;

beforeAll(async () => {
  Object.assign(process.env, S3_ENV, AZURE_ENV); // the server reads credentials from here
  work = await mkdtemp(join(tmpdir(), 'vtl-target-bucket-'));
  a = await startTestServer({ demo: true });
  b = await startTestServer();
  // One cartridge with data, replicated to each target that was added.
  await ok(a, 'POST', '/api/v1/libraries/lib1/drives/0/load', { barcode: BARCODE });
  expect((await putFile(a, 'lib1', 0, backupLikeBytes(512 * 1024, 5))).status).toBe(200);
}, 60_000);
afterAll(async () => {
  await a?.stop();
  await b?.stop();
  await rm(work, { recursive: true, force: true });
  for (const k of ENV_NAMES) {
    if (saved[k] === undefined) delete process.env[k];
    else process.env[k] = saved[k];
  }
});

const targetNames = async (): Promise<string[]> => (await ok(a, 'GET', TARGETS)).items.map((t: { name: string }) => t.name);
const vtl = (args: string[]) => runCli([...args, '--url', a.url, '--token-file', a.server.adminTokenFile]);

/** The target really takes replicas: a job to it ends done. */
async function replicatesTo(target: string): Promise<void> {
  const job = await ok(a, 'POST', `/api/v1/cartridges/${BARCODE}/replicate`, { target, wait: true });
  expect(job.state, JSON.stringify(job)).toBe('done');
}

/** The refusal as an admin should see it: code, status, what is missing where, and what to do. */
function expectRefused(r: { status: number; body: { error: string; message: string } }, what: string, where: string): void {
  expect(r.status, JSON.stringify(r.body)).toBe(404);
  expect(r.body.error).toBe('BUCKET_NOT_FOUND');
  expect(r.body.message).toContain(`${what} does not exist ${where}`);
  expect(r.body.message).toMatch(/check the (bucket|container|directory) name in the URL/i);
  expect(r.body.message).toContain('--create-bucket');
  expect(r.body.message).toContain('"createBucket": true');
}

describe('S3 targets (s3rver)', () => {
  let s3: LocalServer | undefined;
  let reason = '';
  const url = (bucket: string) => `s3://${bucket}/site-a?endpoint=${s3!.endpoint}&region=us-east-1&pathStyle=true`;
  /** The buckets s3rver holds, asked of it directly. */
  const buckets = async (): Promise<string[]> => {
    const client = new S3Client({ endpoint: s3!.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: { accessKeyId: S3_ENV.AWS_ACCESS_KEY_ID, secretAccessKey: S3_ENV.AWS_SECRET_ACCESS_KEY } });
    try {
      return ((await client.send(new ListBucketsCommand({}))).Buckets ?? []).map((x) => x.Name!).sort();
    } finally {
      client.destroy();
    }
  };

  beforeAll(async () => {
    try {
      s3 = await startS3rver('vtl-existing');
    } catch (err) {
      reason = `s3rver unavailable: ${(err as Error).message}`;
      console.warn(`SKIPPED ${reason}`);
    }
  }, 60_000);
  afterAll(async () => {
    await s3?.stop();
  });

  it('a missing bucket is refused with BUCKET_NOT_FOUND naming bucket and endpoint, and no bucket is created', async (ctx: TestContext) => {
    if (!s3) ctx.skip(reason);
    const r = await call(a, 'POST', TARGETS, { name: 'typo', url: url('vtl-exsiting') });
    expectRefused(r, 's3 bucket "vtl-exsiting"', `at ${s3!.endpoint}`);
    expect(r.body.message).toContain('target typo (s3://vtl-exsiting/site-a');
    expect(await buckets()).toEqual(['vtl-existing']);
    expect(await targetNames()).not.toContain('typo');
    // createBucket: false says the same as leaving it out
    expect((await call(a, 'POST', TARGETS, { name: 'typo', url: url('vtl-exsiting'), createBucket: false })).body.error).toBe('BUCKET_NOT_FOUND');
    expect(await buckets()).toEqual(['vtl-existing']);
  });

  it('with createBucket the bucket is created and replication into it works', async (ctx: TestContext) => {
    if (!s3) ctx.skip(reason);
    expect((await call(a, 'POST', TARGETS, { name: 'made', url: url('vtl-made'), createBucket: true })).status).toBe(201);
    expect(await buckets()).toEqual(['vtl-existing', 'vtl-made']);
    await replicatesTo('made');
    const tier = await openTier(url('vtl-made'), { env: S3_ENV });
    const keys: string[] = [];
    for await (const e of tier.list('catalogs/')) keys.push(e.key);
    await tier.close();
    expect(keys).toEqual([`catalogs/${BARCODE}/000000000001`]);
  }, 60_000);

  it('an existing bucket needs no flag', async (ctx: TestContext) => {
    if (!s3) ctx.skip(reason);
    expect((await call(a, 'POST', TARGETS, { name: 'existing', url: url('vtl-existing') })).status).toBe(201);
    await replicatesTo('existing');
    expect(await buckets()).toEqual(['vtl-existing', 'vtl-made']);
  }, 60_000);

  it('vtl replicate target add: refused without --create-bucket (exit 1, the message), created with it', async (ctx: TestContext) => {
    if (!s3) ctx.skip(reason);
    const refused = await vtl(['replicate', 'target', 'add', 'cli', url('vtl-cli')]);
    expect(refused.exitCode).toBe(1);
    expect(refused.error).toContain(`s3 bucket "vtl-cli" does not exist at ${s3!.endpoint}`);
    expect(refused.error).toMatch(/--create-bucket/);
    expect(refused.out).toBe('');
    expect(await buckets()).not.toContain('vtl-cli');
    expect(await targetNames()).not.toContain('cli');

    const added = await vtl(['replicate', 'target', 'add', 'cli', url('vtl-cli'), '--create-bucket']);
    expect(added.error).toBeUndefined();
    expect(added.out).toContain('target cli: s3://vtl-cli/site-a');
    expect(await buckets()).toContain('vtl-cli');
    await replicatesTo('cli');
  }, 60_000);

  it('DR attach of a missing bucket: BUCKET_NOT_FOUND naming it, and it is not created', async (ctx: TestContext) => {
    if (!s3) ctx.skip(reason);
    const { keyFile } = await ok(a, 'POST', '/api/v1/dr/export-key', { passphrase: PASSPHRASE });
    const before = await buckets();
    const r = await call(b, 'POST', '/api/v1/dr/sources', { url: url('vtl-gone'), keyFile, passphrase: PASSPHRASE });
    expect(r.status, JSON.stringify(r.body)).toBe(404);
    expect(r.body.error).toBe('BUCKET_NOT_FOUND');
    expect(r.body.message).toContain(`s3 bucket "vtl-gone" does not exist at ${s3!.endpoint}`);
    expect(r.body.message).not.toContain('--create-bucket'); // region B reads, it never creates
    expect(await buckets()).toEqual(before);
  });
});

describe('Azure targets (Azurite)', () => {
  let az: LocalServer | undefined;
  let reason = '';
  const url = (container: string) => `azure://${container}/site-a?account=${AZURITE_ACCOUNT}&endpoint=${az!.endpoint}`;
  const service = () => new BlobServiceClient(az!.endpoint, new StorageSharedKeyCredential(AZURITE_ACCOUNT, AZURITE_KEY));
  /** The containers Azurite holds, asked of it directly. */
  const containers = async (): Promise<string[]> => {
    const names: string[] = [];
    for await (const c of service().listContainers()) names.push(c.name);
    return names.sort();
  };

  beforeAll(async () => {
    try {
      az = await startAzurite();
      await service().getContainerClient('vtl-existing').create();
    } catch (err) {
      reason = `Azurite unavailable: ${(err as Error).message}`;
      console.warn(`SKIPPED ${reason}`);
    }
  }, 60_000);
  afterAll(async () => {
    await az?.stop();
  });

  it('a missing container is refused with BUCKET_NOT_FOUND naming container and endpoint, and none is created', async (ctx: TestContext) => {
    if (!az) ctx.skip(reason);
    const r = await call(a, 'POST', TARGETS, { name: 'blob-typo', url: url('vtl-exsiting') });
    expectRefused(r, 'azure container "vtl-exsiting"', `at ${az!.endpoint}`);
    expect(r.body.message).not.toContain(AZURITE_KEY);
    expect(await containers()).toEqual(['vtl-existing']);
    expect(await targetNames()).not.toContain('blob-typo');
  });

  it('with createBucket the container is created and replication into it works; an existing one needs no flag', async (ctx: TestContext) => {
    if (!az) ctx.skip(reason);
    expect((await call(a, 'POST', TARGETS, { name: 'blob-made', url: url('vtl-made'), createBucket: true })).status).toBe(201);
    expect(await containers()).toEqual(['vtl-existing', 'vtl-made']);
    await replicatesTo('blob-made');
    expect((await call(a, 'POST', TARGETS, { name: 'blob-existing', url: url('vtl-existing') })).status).toBe(201);
    await replicatesTo('blob-existing');
    expect(await containers()).toEqual(['vtl-existing', 'vtl-made']);
  }, 60_000);
});

describe('file:// targets', () => {
  it('a missing directory is refused with BUCKET_NOT_FOUND and not created; createBucket creates it; an existing one needs no flag', async () => {
    const missing = join(work, 'tier-typo');
    const r = await call(a, 'POST', TARGETS, { name: 'dir-typo', url: `file://${missing}` });
    expectRefused(r, `fs tier directory "${missing}"`, 'on this server');
    await expect(stat(missing)).rejects.toMatchObject({ code: 'ENOENT' });

    const made = join(work, 'made', 'tier');
    expect((await call(a, 'POST', TARGETS, { name: 'dir-made', url: `file://${made}`, createBucket: true })).status).toBe(201);
    expect((await stat(made)).isDirectory()).toBe(true);
    await replicatesTo('dir-made');

    const existing = join(work, 'existing');
    await mkdir(existing);
    expect((await call(a, 'POST', TARGETS, { name: 'dir-existing', url: `file://${existing}` })).status).toBe(201);
  }, 60_000);
});

it('OpenAPI documents createBucket and the refusal', async () => {
  const spec = await ok(a, 'GET', '/api/v1/openapi.json');
  const post = spec.paths['/api/v1/replication/targets'].post;
  const body = post.requestBody.content['application/json'].schema;
  expect(body.properties.createBucket).toMatchObject({ type: 'boolean', default: false });
  expect(post.description).toMatch(/BUCKET_NOT_FOUND.*createBucket/);
});
