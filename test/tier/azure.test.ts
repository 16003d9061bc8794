import { randomBytes } from 'node:crypto';
import { BlobServiceClient, StorageSharedKeyCredential } from '@azure/storage-blob';
import { afterAll, beforeAll, describe, expect, it, type TestContext } from 'vitest';
import { BucketNotFoundError, openTier, type ObjectTier } from '../../src/tier/index.js';
import { describeConformance } from './conformance.js';
import { AZURITE_ACCOUNT, AZURITE_KEY, startAzurite, type LocalServer } from './servers.js';

const ENV = { AZURE_STORAGE_ACCOUNT: AZURITE_ACCOUNT, AZURE_STORAGE_KEY: AZURITE_KEY };

describeConformance('azure (Azurite)', async () => {
  const server = await startAzurite();
  try {
    const url = `azure://vtl-conformance/replica/a?account=${AZURITE_ACCOUNT}&endpoint=${server.endpoint}`;
    const tier = await openTier(url, { env: ENV, create: true });
    return { tier, secrets: [AZURITE_KEY], teardown: () => server.stop() };
  } catch (err) {
    await server.stop();
    throw err;
  }
});

describe('azure tier specifics (Azurite)', () => {
  let server: LocalServer | undefined;
  let reason = '';

  beforeAll(async () => {
    try {
      server = await startAzurite();
    } catch (err) {
      reason = `Azurite unavailable: ${(err as Error).message}`;
      console.warn(`SKIPPED ${reason}`);
    }
  });
  afterAll(async () => {
    await server?.stop();
  });

  const open = async (ctx: TestContext, url: string, env: NodeJS.ProcessEnv, create = false): Promise<ObjectTier> => {
    if (!server) ctx.skip(reason);
    return openTier(url.replace('ENDPOINT', server!.endpoint), { env, create });
  };

  it('authenticates with a connection string and never echoes it', async (ctx: TestContext) => {
    if (!server) ctx.skip(reason);
    const connection = `DefaultEndpointsProtocol=http;AccountName=${AZURITE_ACCOUNT};AccountKey=${AZURITE_KEY};BlobEndpoint=${server!.endpoint};`;
    const tier = await open(ctx, 'azure://vtl-conn/p', { AZURE_STORAGE_CONNECTION_STRING: connection }, true);
    await tier.put('k', Buffer.from('via connection string'));
    expect((await tier.get('k')).toString()).toBe('via connection string');
    expect(tier.url).toBe('azure://vtl-conn/p/');
    expect(tier.url).not.toContain(AZURITE_KEY);
  });

  it('refuses a missing container unless asked to create it, naming container and endpoint, and missing credentials', async (ctx: TestContext) => {
    const err = await open(ctx, `azure://vtl-none/x?account=${AZURITE_ACCOUNT}&endpoint=ENDPOINT`, ENV).then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(BucketNotFoundError);
    expect(err).toMatchObject({ kind: 'container', bucket: 'vtl-none' });
    expect((err as Error).message).toBe(`azure container "vtl-none" does not exist at ${server!.endpoint}`);
    expect(await containerNames()).not.toContain('vtl-none'); // refusing created nothing
    await expect(open(ctx, `azure://vtl-none/x?account=${AZURITE_ACCOUNT}&endpoint=ENDPOINT`, {})).rejects.toThrow(/no Azure credentials/);
    const tier = await open(ctx, `azure://vtl-none/x?account=${AZURITE_ACCOUNT}&endpoint=ENDPOINT`, ENV, true);
    expect(await containerNames()).toContain('vtl-none');
    expect(await tier.supportsRetention()).toBe(false);
  });

  /** The containers the emulator holds, asked of it directly (not through the tier under test). */
  const containerNames = async (): Promise<string[]> => {
    const names: string[] = [];
    const service = new BlobServiceClient(server!.endpoint, new StorageSharedKeyCredential(AZURITE_ACCOUNT, AZURITE_KEY));
    for await (const c of service.listContainers()) names.push(c.name);
    return names;
  };

  it('publishes a large body as staged blocks in one commit', async (ctx: TestContext) => {
    const tier = await open(ctx, `azure://vtl-blocks/p?account=${AZURITE_ACCOUNT}&endpoint=ENDPOINT`, ENV, true);
    const body = randomBytes(20 * 1024 * 1024);
    await tier.put('big', body);
    await tier.put('small', randomBytes(1000));
    const container = new BlobServiceClient(server!.endpoint, new StorageSharedKeyCredential(AZURITE_ACCOUNT, AZURITE_KEY)).getContainerClient('vtl-blocks');
    const big = await container.getBlockBlobClient('p/big').getBlockList('all');
    expect(big.committedBlocks?.map((b) => b.size)).toEqual([8, 8, 4].map((n) => n * 1024 * 1024));
    expect(big.uncommittedBlocks ?? []).toEqual([]);
    expect((await container.getBlockBlobClient('p/small').getBlockList('all')).committedBlocks ?? []).toEqual([]);
    expect((await tier.get('big')).equals(body)).toBe(true);
  });

  it('a wrong key is a clear, non-transient error without the key in it', async (ctx: TestContext) => {
    const wrong = Buffer.alloc(64, 7).toString('base64');
    const err = await open(ctx, `azure://vtl-conformance/x?account=${AZURITE_ACCOUNT}&endpoint=ENDPOINT`, { AZURE_STORAGE_KEY: wrong }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Error);
    expect((err as { transient?: boolean }).transient).toBe(false);
    expect(String((err as Error).message)).not.toContain(wrong);
  });
});
