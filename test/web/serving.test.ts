/**
 * The server side of the dashboard without a browser: the static handler (files, types, CSP,
 * no escape from the build directory, a clear answer when the app is not built) and the
 * cartridge list's search and sort parameters the cartridges page pages with.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Fastify from 'fastify';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { dashboardRoutes } from '../../src/api/dashboard.js';
import { call, startTestServer, type TestServer } from '../api/helpers.js';

describe('dashboard files', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'vtl-web-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test('serves index.html and hashed assets with their types; nothing outside the build', async () => {
    await mkdir(join(dir, 'web', 'assets'), { recursive: true });
    await writeFile(join(dir, 'web', 'index.html'), '<!doctype html><title>t</title>');
    await writeFile(join(dir, 'web', 'assets', 'index-abc.js'), 'console.log(1)');
    await writeFile(join(dir, 'web', 'assets', '.hidden'), 'x');
    await writeFile(join(dir, 'secret.txt'), 'TOP-SECRET-CONTENT');
    const app = Fastify();
    await dashboardRoutes(app, join(dir, 'web'));
    const root = await app.inject({ url: '/' });
    expect(root.statusCode).toBe(200);
    expect(root.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(root.headers['cache-control']).toBe('no-cache');
    expect(root.headers['content-security-policy']).toContain("default-src 'self'");
    const js = await app.inject({ url: '/assets/index-abc.js' });
    expect(js.statusCode).toBe(200);
    expect(js.headers['content-type']).toBe('text/javascript; charset=utf-8');
    expect(js.headers['cache-control']).toContain('immutable');
    expect(js.body).toBe('console.log(1)');
    for (const url of ['/assets/../../secret.txt', '/assets/%2e%2e/%2e%2e/secret.txt', '/assets/..%2f..%2fsecret.txt', '/assets/.hidden', '/assets/nope.js']) {
      const r = await app.inject({ url });
      expect(r.statusCode, url).toBe(404);
      expect(r.body).not.toContain('TOP-SECRET-CONTENT');
    }
    await app.close();
  });

  test('answers 503 with what to run when the app is not built', async () => {
    const app = Fastify();
    await dashboardRoutes(app, join(dir, 'missing'));
    const r = await app.inject({ url: '/' });
    expect(r.statusCode).toBe(503);
    expect(r.body).toContain('npm run build:web');
    await app.close();
  });
});

describe('cartridge list: q, sort and order', () => {
  let t: TestServer;
  const barcodes = (r: { body: { items: { barcode: string }[] } }) => r.body.items.map((c) => c.barcode);
  beforeAll(async () => {
    t = await startTestServer();
    await call(t, 'POST', '/api/v1/libraries', { name: 'lib1', drives: 2, slots: 10, mailslots: 2 });
    await call(t, 'POST', '/api/v1/cartridges', { library: 'lib1', prefix: 'VT', start: 1, count: 5, mediaType: 'LTO-7' });
    await call(t, 'POST', '/api/v1/cartridges', { library: 'lib1', barcodes: ['AA0001L8'], mediaType: 'LTO-8' });
    expect((await call(t, 'POST', '/api/v1/libraries/lib1/drives/1/load', { barcode: 'VT0003L7' })).status).toBe(200);
    expect((await call(t, 'POST', '/api/v1/libraries/lib1/export', { barcode: 'VT0005L7' })).status).toBe(200);
    expect((await call(t, 'POST', '/api/v1/libraries/lib1/remove', { barcode: 'VT0005L7' })).status).toBe(200); // to the vault
  });
  afterAll(async () => {
    await t?.stop();
  });

  test('q matches any part of the barcode, in any case', async () => {
    expect(barcodes(await call(t, 'GET', '/api/v1/cartridges?q=0001'))).toEqual(['AA0001L8', 'VT0001L7']);
    expect(barcodes(await call(t, 'GET', '/api/v1/cartridges?q=t0004l'))).toEqual(['VT0004L7']);
    expect((await call(t, 'GET', '/api/v1/cartridges?q=nothing')).body).toMatchObject({ items: [], total: 0 });
    // a page of the filtered list, with the filtered total
    const page = await call(t, 'GET', '/api/v1/cartridges?q=0001&offset=1&limit=1');
    expect(barcodes(page)).toEqual(['VT0001L7']);
    expect(page.body).toMatchObject({ total: 2, offset: 1, limit: 1 });
    expect(barcodes(await call(t, 'GET', '/api/v1/cartridges?q=0001&order=desc'))).toEqual(['VT0001L7', 'AA0001L8']);
    const bad = await call(t, 'GET', '/api/v1/cartridges?q=a%20b');
    expect(bad.status).toBe(400);
    expect(bad.body.error).toBe('INVALID');
  });

  test('sort by a column, either way, ties broken by barcode; paging follows the order', async () => {
    expect(barcodes(await call(t, 'GET', '/api/v1/cartridges?order=desc&limit=3'))).toEqual(['VT0005L7', 'VT0004L7', 'VT0003L7']);
    expect(barcodes(await call(t, 'GET', '/api/v1/cartridges?sort=mediaType&order=desc&limit=2'))).toEqual(['AA0001L8', 'VT0005L7']);
    // Drives have the lowest element addresses; the vault comes last.
    const byPlace = barcodes(await call(t, 'GET', '/api/v1/cartridges?sort=location'));
    expect(byPlace[0]).toBe('VT0003L7');
    expect(byPlace.at(-1)).toBe('VT0005L7');
    const pages = [0, 2, 4].map((o) => call(t, 'GET', `/api/v1/cartridges?sort=state&order=desc&offset=${o}&limit=2`));
    const joined = (await Promise.all(pages)).flatMap(barcodes);
    expect(joined).toHaveLength(6);
    expect(new Set(joined).size).toBe(6);
    const bad = await call(t, 'GET', '/api/v1/cartridges?sort=password');
    expect(bad.status).toBe(400);
  });
});
