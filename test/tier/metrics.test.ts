import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pathToFileURL } from 'node:url';
import { afterEach, expect, it } from 'vitest';
import { ObjectNotFoundError, openTier, withMetrics } from '../../src/tier/index.js';
import { collect } from './conformance.js';

let dir: string | undefined;
afterEach(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

it('counts requests, errors and body bytes per operation', async () => {
  dir = await mkdtemp(join(tmpdir(), 'vtl-tier-metrics-'));
  const tier = withMetrics(await openTier(pathToFileURL(dir).href));
  await tier.put('a', Buffer.alloc(1_000));
  await tier.put('b', Readable.from([Buffer.alloc(300), Buffer.alloc(200)]), { contentLength: 500 });
  await tier.get('a');
  await tier.get('a', { offset: 10, length: 90 });
  for await (const chunk of await tier.getStream('b')) void chunk;
  await expect(tier.get('missing')).rejects.toBeInstanceOf(ObjectNotFoundError);
  await expect(tier.put('bad//key', Buffer.alloc(1))).rejects.toThrow();
  await tier.head('a');
  await tier.head('missing');
  await collect(tier.list(''));
  await tier.delete('a');

  const m = tier.metrics;
  expect(m.put).toMatchObject({ requests: 3, errors: 1, bytes: 1_500 });
  expect(m.get).toMatchObject({ requests: 4, errors: 0, bytes: 1_000 + 90 + 500 });
  expect(m.head).toMatchObject({ requests: 2, errors: 0, bytes: 0 });
  expect(m.list).toMatchObject({ requests: 1, errors: 0 });
  expect(m.delete).toMatchObject({ requests: 1, errors: 0 });
  expect(m.put.seconds).toBeGreaterThan(0);
  expect(tier.url).toBe(pathToFileURL(dir).href.replace(/\/$/, ''));
});
