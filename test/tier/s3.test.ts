import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it, type TestContext } from 'vitest';
import { ListBucketsCommand, S3Client } from '@aws-sdk/client-s3';
import { BucketNotFoundError, ObjectNotFoundError, openTier, type ObjectTier } from '../../src/tier/index.js';
import { S3Tier } from '../../src/tier/s3.js';
import { describeConformance } from './conformance.js';
import { startS3rver, type LocalServer } from './servers.js';

// s3rver's fixed development credentials; the url test proves they do not leak into `url`.
const ENV = { AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER' };
const BUCKET = 'vtl-conformance';

describeConformance('s3 (s3rver)', async () => {
  const server = await startS3rver(BUCKET);
  try {
    const tier = await openTier(`s3://${BUCKET}/replica/a?endpoint=${server.endpoint}&region=us-east-1&pathStyle=true`, { env: ENV });
    const quirks = {
      listOrder: 's3rver 3.7 lists by walking its directories, not in S3\'s byte order',
      atomicOverwrite: 's3rver 3.7 writes an overwritten object in place, so readers can see it partly written',
    };
    return { tier, secrets: [ENV.AWS_SECRET_ACCESS_KEY], teardown: () => server.stop(), quirks };
  } catch (err) {
    await server.stop();
    throw err;
  }
});

describe('s3 tier specifics (s3rver)', () => {
  let server: LocalServer | undefined;
  let tier: ObjectTier | undefined;
  let reason = '';

  beforeAll(async () => {
    try {
      server = await startS3rver(BUCKET);
      tier = await openTier(`s3://${BUCKET}/specifics?endpoint=${server.endpoint}&partSizeMiB=5&multipartThresholdMiB=5`, { env: ENV });
    } catch (err) {
      reason = `s3rver unavailable: ${(err as Error).message}`;
      console.warn(`SKIPPED ${reason}`);
    }
  });
  afterAll(async () => {
    await tier?.close();
    await server?.stop();
  });

  it('uploads bodies over the threshold in parts, small ones in one request', async (ctx: TestContext) => {
    if (!tier) ctx.skip(reason);
    const body = randomBytes(12 * 1024 * 1024);
    const requests = (tier as S3Tier).requests;
    const before = { ...requests };
    await tier!.put('mp/k', body);
    const sent = (name: string): number => (requests[name] ?? 0) - (before[name] ?? 0);
    expect(sent('CreateMultipartUploadCommand')).toBe(1);
    expect(sent('UploadPartCommand')).toBe(3);
    expect(sent('CompleteMultipartUploadCommand')).toBe(1);
    expect(sent('PutObjectCommand')).toBe(0);
    expect((await tier!.get('mp/k')).equals(body)).toBe(true);
    await tier!.put('mp/small', randomBytes(1000));
    expect(sent('PutObjectCommand')).toBe(1);
  });

  it('reports no retention on a bucket without Object Lock', async (ctx: TestContext) => {
    if (!tier) ctx.skip(reason);
    expect(await tier!.supportsRetention()).toBe(false);
  });

  it('keeps the prefix: keys of another prefix are not visible', async (ctx: TestContext) => {
    if (!tier) ctx.skip(reason);
    const other = await openTier(`s3://${BUCKET}/elsewhere?endpoint=${server!.endpoint}`, { env: ENV });
    await other.put('p/k', Buffer.from('x'));
    await expect(tier!.get('p/k')).rejects.toBeInstanceOf(ObjectNotFoundError);
    await other.close();
  });

  it('refuses a bucket that does not exist unless asked to create it, naming bucket and endpoint', async (ctx: TestContext) => {
    if (!tier) ctx.skip(reason);
    const url = `s3://vtl-new-bucket/x?endpoint=${server!.endpoint}`;
    const err = await openTier(url, { env: ENV }).then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(BucketNotFoundError);
    expect(err).toMatchObject({ kind: 'bucket', bucket: 'vtl-new-bucket' });
    expect((err as Error).message).toBe(`s3 bucket "vtl-new-bucket" does not exist at ${server!.endpoint}`);
    expect(await bucketNames(server!.endpoint)).toEqual([BUCKET]); // refusing created nothing
    const created = await openTier(url, { env: ENV, create: true });
    expect(await bucketNames(server!.endpoint)).toEqual([BUCKET, 'vtl-new-bucket'].sort());
    await created.put('k', Buffer.from('x'));
    expect((await created.get('k')).toString()).toBe('x');
    await created.close();
  });
});

/** The buckets the server holds, asked of it directly (not through the tier under test). */
async function bucketNames(endpoint: string): Promise<string[]> {
  const client = new S3Client({ endpoint, region: 'us-east-1', forcePathStyle: true, credentials: { accessKeyId: ENV.AWS_ACCESS_KEY_ID, secretAccessKey: ENV.AWS_SECRET_ACCESS_KEY } });
  try {
    return ((await client.send(new ListBucketsCommand({}))).Buckets ?? []).map((b) => b.Name!).sort();
  } finally {
    client.destroy();
  }
}
