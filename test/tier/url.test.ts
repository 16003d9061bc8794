import { describe, expect, it } from 'vitest';
import { TierConfigError, openTier, parseTierUrl, validateKey, validatePrefix } from '../../src/tier/index.js';

describe('parseTierUrl', () => {
  it('parses file URLs', () => {
    expect(parseTierUrl('file:///var/lib/vtl/tier/')).toEqual({ kind: 'fs', root: '/var/lib/vtl/tier', redacted: 'file:///var/lib/vtl/tier' });
    expect(() => parseTierUrl('file://host/x')).toThrow(TierConfigError);
    expect(() => parseTierUrl('file:///x?create=1')).toThrow(TierConfigError);
  });

  it('parses s3 URLs with endpoint, region, path style and sizes', () => {
    const t = parseTierUrl('s3://my-bucket/vtl/replica?endpoint=http://127.0.0.1:9000/&region=eu-west-1&pathStyle=true&partSizeMiB=16&multipartThresholdMiB=64&lockMode=governance');
    expect(t).toMatchObject({
      kind: 's3', bucket: 'my-bucket', prefix: 'vtl/replica/', endpoint: 'http://127.0.0.1:9000', region: 'eu-west-1',
      pathStyle: true, partSize: 16 * 1024 * 1024, multipartThreshold: 64 * 1024 * 1024, lockMode: 'GOVERNANCE',
    });
    expect(t.redacted).toBe('s3://my-bucket/vtl/replica/?endpoint=http%3A%2F%2F127.0.0.1%3A9000&region=eu-west-1&pathStyle=true&multipartThresholdMiB=64&partSizeMiB=16&lockMode=GOVERNANCE');
    expect(parseTierUrl('s3://bucket')).toMatchObject({ prefix: '', pathStyle: false, endpoint: undefined });
    expect(parseTierUrl('s3://bucket?endpoint=https://minio.local')).toMatchObject({ pathStyle: true });
    expect(parseTierUrl('s3://bucket?endpoint=https://minio.local&forcePathStyle=false')).toMatchObject({ pathStyle: false });
  });

  it('parses azure URLs', () => {
    const t = parseTierUrl('azure://vtl-dr/site-a?account=myaccount');
    expect(t).toMatchObject({ kind: 'azure', container: 'vtl-dr', prefix: 'site-a/', account: 'myaccount' });
    expect(t.redacted).toBe('azure://vtl-dr/site-a/?account=myaccount');
  });

  it('refuses credentials anywhere in the URL without repeating them', () => {
    const secret = 'wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY';
    const inputs = [
      `s3://AKIAEXAMPLE:${secret}@bucket/x`,
      `s3://bucket/x?secretAccessKey=${secret}`,
      `s3://bucket/x?endpoint=http://user:${secret}@127.0.0.1:9000`,
      `azure://container/x?sig=${secret}`,
      `azure://container/x?account=acct&endpoint=https://acct.blob.core.windows.net/?sv=2020&sig=${secret}`,
      `azure://container/x?accountKey=${secret}`,
      `not a url ${secret}`,
    ];
    for (const input of inputs) {
      let error: unknown;
      try {
        parseTierUrl(input);
      } catch (err) {
        error = err;
      }
      expect(error, input).toBeInstanceOf(TierConfigError);
      expect((error as Error).message).not.toContain(secret);
    }
  });

  it('refuses unknown schemes, unknown parameters, bad names and bad prefixes', () => {
    for (const input of [
      'ftp://x/y', 's3://Bad_Bucket/x', 's3://bucket/x?regoin=eu-west-1', 's3://bucket/../x', 's3://bucket/a/./b', 'file:///srv/../etc', 's3://bucket/a//b',
      's3://bucket/x?partSizeMiB=1', 's3://bucket/x?pathStyle=maybe', 's3://bucket/x?lockMode=soft',
      'azure://UPPER/x', 'azure://c/x?account=Not_Valid', 'azure://container/x?endpoint=ftp://h',
    ]) {
      expect(() => parseTierUrl(input), input).toThrow(TierConfigError);
    }
  });
});

describe('openTier', () => {
  it('keeps env credentials out of url and errors', async () => {
    const env = { AZURE_STORAGE_ACCOUNT: 'acct', AZURE_STORAGE_KEY: Buffer.alloc(64, 1).toString('base64') };
    // Port 9 on loopback has no listener: the open fails fast, and must not echo the key.
    const err = await openTier('azure://c1x/p?endpoint=http://127.0.0.1:9/acct', { env }).then(() => new Error('opened'), (e: unknown) => e as Error);
    expect(err).toBeInstanceOf(Error);
    expect(err.message).not.toContain(env.AZURE_STORAGE_KEY);
    expect(err.message).toContain('azure://c1x/p/');
  });

  it('needs credentials or a region before talking to a cloud store', async () => {
    await expect(openTier('azure://c1x/p?account=acct', { env: {} })).rejects.toThrow(/no Azure credentials/);
    await expect(openTier('s3://bucket/p', { env: {} })).rejects.toThrow(/region/);
  });
});

describe('key rules', () => {
  it('accepts tape-style keys and refuses escapes', () => {
    for (const key of ['containers/0000002a.ctr', 'catalogs/VT0001L7/map.json', 'a', 'a-b_c~d=e+f@g,h']) expect(validateKey(key)).toBe(key);
    for (const key of ['', '/a', 'a/', 'a//b', '..', 'a/../b', '.a', 'a/.b', 'a b', 'a\u0000b']) expect(() => validateKey(key), key).toThrow();
    for (const prefix of ['', 'containers/', 'containers/00', 'a/b']) expect(validatePrefix(prefix)).toBe(prefix);
    for (const prefix of ['/', '../', 'a//', 'a/.', '.x']) expect(() => validatePrefix(prefix), prefix).toThrow();
  });
});
